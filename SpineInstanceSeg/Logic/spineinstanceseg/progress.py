"""Progress reporting and cancellation, shared by every long-running step.

The protocol is deliberately small:

* a *progress callback* is any callable ``callback(step, fraction, message)`` where ``step`` is a short
  machine-friendly name ("stage1", "stage2", ...), ``fraction`` is the overall completion in ``[0, 1]`` and
  ``message`` a human-readable detail;
* a :class:`CancelToken` is polled between units of work (one window, one patch, one case) and
  :meth:`CancelToken.raise_if_cancelled` raises :class:`~spineinstanceseg.errors.CancelledError`.

:class:`Progress` wraps both so library code can hand sub-ranges of the bar to sub-steps without knowing
where in the whole job it runs. The CLI renders callbacks as a terminal progress bar; the Slicer module runs
the job in a child process that prints :func:`format_progress_line` lines, which :func:`parse_progress_line`
turns back into callback arguments.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from .errors import CancelledError

__all__ = [
    "ProgressCallback",
    "CancelToken",
    "Progress",
    "format_progress_line",
    "parse_progress_line",
    "PROGRESS_PREFIX",
]

log = logging.getLogger(__name__)

PROGRESS_PREFIX = "SPINESEG-PROGRESS"


class ProgressCallback(Protocol):
    def __call__(self, step: str, fraction: float, message: str) -> None: ...


class CancelToken:
    """A thread-safe flag that a user interface sets and the library polls."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise CancelledError()


def _ignore(step: str, fraction: float, message: str) -> None:
    return None


class Progress:
    """Maps the progress of a sub-step onto a slice ``[start, end]`` of the overall bar.

    Args:
        callback: Receives ``(step, overall_fraction, message)``; ``None`` discards reports.
        cancel: Polled by :meth:`check` and every :meth:`update`; ``None`` means "never cancelled".
        start: Overall fraction at which this reporter's 0 lies.
        end: Overall fraction at which this reporter's 1 lies.
        step: Step name reported with every update.
    """

    def __init__(
        self,
        callback: ProgressCallback | Callable[[str, float, str], None] | None = None,
        cancel: CancelToken | None = None,
        *,
        start: float = 0.0,
        end: float = 1.0,
        step: str = "",
    ) -> None:
        self.callback = callback if callback is not None else _ignore
        self.cancel = cancel
        self.start = float(start)
        self.end = float(end)
        self.step = step

    def check(self) -> None:
        """Raise :class:`CancelledError` if the user asked to cancel."""
        if self.cancel is not None:
            self.cancel.raise_if_cancelled()

    def update(self, fraction: float, message: str = "") -> None:
        """Report that this (sub-)step is ``fraction`` done, then honour a pending cancellation."""
        fraction = min(max(float(fraction), 0.0), 1.0)
        overall = self.start + (self.end - self.start) * fraction
        try:
            self.callback(self.step, overall, message)
        except CancelledError:
            raise
        except Exception:  # a broken progress display must never break the computation
            log.exception("progress callback failed; continuing")
        self.check()

    def sub(self, start: float, end: float, step: str | None = None) -> Progress:
        """A reporter for the part ``[start, end]`` (fractions of *this* reporter's range)."""
        width = self.end - self.start
        return Progress(
            self.callback,
            self.cancel,
            start=self.start + width * start,
            end=self.start + width * end,
            step=self.step if step is None else step,
        )


def format_progress_line(step: str, fraction: float, message: str = "") -> str:
    """One machine-readable line for a parent process (Slicer) to parse."""
    clean = message.replace("\n", " ").replace("\t", " ")
    return f"{PROGRESS_PREFIX}\t{step}\t{fraction:.4f}\t{clean}"


@dataclass(frozen=True)
class ProgressLine:
    step: str
    fraction: float
    message: str


def parse_progress_line(line: str) -> ProgressLine | None:
    """Parse a line written by :func:`format_progress_line`; any other line gives ``None``."""
    parts = line.rstrip("\r\n").split("\t")
    if len(parts) != 4 or parts[0] != PROGRESS_PREFIX:
        return None
    try:
        fraction = float(parts[2])
    except ValueError:
        return None
    return ProgressLine(step=parts[1], fraction=fraction, message=parts[3])
