"""Terminal rendering of the library's progress callbacks (a tqdm bar on stderr)."""

from __future__ import annotations

import sys
from types import TracebackType


class ProgressBar:
    """Context manager whose instance is a progress callback ``(step, fraction, message)``."""

    def __init__(self, description: str = "", *, disable: bool | None = None) -> None:
        # lazy: every sub-command imports this module to build its parser; tqdm loads only when a bar is drawn
        from tqdm import tqdm

        self._bar = tqdm(
            total=1000,
            desc=description,
            file=sys.stderr,
            disable=(not sys.stderr.isatty()) if disable is None else disable,
            bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining} {postfix}",
        )
        self._last = 0

    def __call__(self, step: str, fraction: float, message: str) -> None:
        target = int(round(min(max(fraction, 0.0), 1.0) * 1000))
        if target > self._last:
            self._bar.update(target - self._last)
            self._last = target
        self._bar.set_postfix_str(f"{step} {message}".strip(), refresh=False)

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._bar.close()
