"""Batch helpers for Slicer's Python console: segment a volume node, or a whole folder of files.

Both run the pipeline in a child process (``PythonSlicer -m spineinstanceseg.cli.main ...``) exactly as the
"Segment spine" button and the CLI do. Each comes in two forms:

* **non-blocking** (use these in the Slicer application): :func:`start_volume_node` and :func:`start_folder` return a
  :class:`BackgroundRun` at once. A Qt timer on the GUI thread polls the child, so Slicer stays responsive; the
  handle shows progress and the log, ``cancel()`` stops the whole process tree, ``on_done(run)`` is called when
  it ends, and ``run.result`` / ``run.error`` hold the outcome::

      from spineinstanceseg.slicer import console
      run = console.start_folder("/data/images", "/data/out", device="cuda", on_done=lambda r: print(r.error or "done"))
      run.progress        # ("batch", 0.4, "4/10 cases")
      run.cancel()        # stops the child and everything it started

* **blocking** (scripts, ``PythonSlicer``, ``Slicer --python-script``, tests): :func:`segment_volume_node` and
  :func:`segment_folder` poll in a loop until the child ends. Called from Slicer's Python console they *block the
  GUI thread*: the window does not repaint or react until the run ends (a folder can take hours).
"""

from __future__ import annotations

import csv
import logging
import os
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from ..errors import SpineSegError
from ..pipeline.options import SegmentOptions
from . import dependencies
from .job import SegmentJob, child_environment, option_args, python_executable
from .process_runner import ProcessRunner

__all__ = [
    "BackgroundRun",
    "start_volume_node",
    "start_folder",
    "segment_volume_node",
    "segment_folder",
    "qt_timer",
]

log = logging.getLogger(__name__)

_POLL_MS = 200
_LOG_LINES = 500


class Timer(Protocol):
    def start(self) -> None: ...

    def stop(self) -> None: ...


TimerFactory = Callable[[int, Callable[[], None]], Timer]


def qt_timer(interval_ms: int, tick: Callable[[], None]) -> Timer:
    """A ``qt.QTimer`` on the GUI thread calling ``tick`` every ``interval_ms`` (only inside Slicer)."""
    import qt

    timer = qt.QTimer()
    timer.setInterval(int(interval_ms))
    timer.timeout.connect(tick)
    return timer


class _Job(Protocol):
    """What :class:`BackgroundRun` drives: a :class:`SegmentJob` or a :class:`ProcessRunner`."""

    def poll(self) -> bool: ...

    def cancel(self) -> None: ...


class BackgroundRun:
    """A console run in a child process, polled by a timer (see module docstring).

    Attributes:
        progress: Last ``(step, fraction, message)``.
        log_lines: The last lines the child printed.
        done: The run ended (success, failure or cancel).
        result: What the blocking form returns (result nodes, or the batch summary rows), once done.
        error: The failure or cancel message, else ``None``.
    """

    def __init__(
        self,
        *,
        on_done: Callable[[BackgroundRun], None] | None = None,
        timer_factory: TimerFactory | None = qt_timer,
        interval_ms: int = _POLL_MS,
    ) -> None:
        self.on_done = on_done
        self.interval_ms = int(interval_ms)
        self.progress: tuple[str, float, str] = ("", 0.0, "")
        self.log_lines: deque[str] = deque(maxlen=_LOG_LINES)
        self.done = False
        self.cancelled = False
        self.result: Any = None
        self.error: str | None = None
        self._timer_factory = timer_factory
        self._timer: Timer | None = None
        self._job: _Job | None = None
        self._finish: Callable[[], Any] = lambda: None
        self._extra_tick: Callable[..., None] | None = None

    def start(self, job: _Job, *, finish: Callable[[], Any], tick: Callable[..., None] | None = None) -> None:
        """Drive ``job`` (already started) from the timer; ``finish()`` gives the result or raises once it ended.

        ``tick()`` runs on every poll (e.g. to count finished cases), ``tick(force=True)`` once at the end.
        """
        self._job, self._finish, self._extra_tick = job, finish, tick
        if self._timer_factory is not None:
            self._timer = self._timer_factory(self.interval_ms, self.poll)
            self._timer.start()

    def record_progress(self, step: str, fraction: float, message: str) -> None:
        self.progress = (step, float(fraction), message)

    def record_log(self, line: str) -> None:
        self.log_lines.append(line)

    def poll(self) -> bool:
        """Deliver what the child printed; finish the run once it ended. True while it runs (the timer's tick)."""
        if self.done or self._job is None:
            return False
        if self._extra_tick is not None:
            self._extra_tick()
        if self._job.poll():
            return True
        self._complete()
        return False

    def cancel(self) -> None:
        """Stop the child and everything it started; ``error`` becomes "cancelled" once the run ended."""
        if not self.done and self._job is not None:
            self.cancelled = True
            self._job.cancel()

    def wait(self, timeout: float | None = None) -> Any:
        """Block until the run ends (polling here), then return :attr:`result`.

        Raises:
            SpineSegError: the run failed, was cancelled, or took longer than ``timeout`` seconds (then it is
                cancelled first).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll():
            if deadline is not None and time.monotonic() > deadline:
                self.cancel()
                while self.poll():
                    time.sleep(self.interval_ms / 1000.0)
                raise SpineSegError(f"the run took longer than {timeout} s and was cancelled", fix="raise timeout")
            time.sleep(self.interval_ms / 1000.0)
        if self.error is not None:
            raise SpineSegError(f"the run did not finish: {self.error}", fix="see the log lines above")
        return self.result

    def _complete(self) -> None:
        self.done = True
        if self._timer is not None:
            self._timer.stop()
        if self._extra_tick is not None:
            self._extra_tick(force=True)  # the final count
        try:
            self.result = self._finish()
        except SpineSegError as err:
            self.error = "cancelled" if self.cancelled else str(err)
        if self.on_done is not None:
            try:
                self.on_done(self)
            except Exception:  # a broken callback must not break the timer
                log.exception("on_done callback failed")


def _options(options: SegmentOptions | None, overrides: dict) -> SegmentOptions:
    from dataclasses import replace

    return replace(options or SegmentOptions(), **overrides) if overrides else (options or SegmentOptions())


def _chain(*callbacks):
    active = [c for c in callbacks if c is not None]

    def call(*args) -> None:
        for callback in active:
            callback(*args)

    return call


def _case_name(volume_node, case_name: str | None) -> str:
    return case_name or "".join(c if c.isalnum() or c in "-_" else "_" for c in volume_node.GetName()) or "case"


def start_volume_node(
    volume_node,
    *,
    out_dir: str | os.PathLike[str] | None = None,
    case_name: str | None = None,
    options: SegmentOptions | None = None,
    mask_node=None,
    segmentation_node=None,
    markups_node=None,
    include_semantic: bool = True,
    on_progress: Callable[[str, float, str], None] | None = None,
    on_log: Callable[[str], None] | None = None,
    on_done: Callable[[BackgroundRun], None] | None = None,
    timer_factory: TimerFactory | None = qt_timer,
    **overrides,
) -> BackgroundRun:
    """Start segmenting one volume node in the background; returns at once (the GUI stays responsive).

    When the run ends, its segments, centroid markups and confidence table are in the scene and
    ``run.result`` is the :class:`~.mrml_adapter.ResultNodes`; ``run.error`` says why not otherwise.

    Args:
        out_dir: Also write the CLI's outputs (label maps, ``.seg.nrrd``, markups, CSV, preview, report) to
            ``out_dir/<case_name>/``.
        case_name: Default: the node's name made file-safe.
        options / overrides: Run options, e.g. ``device="cpu"``, ``anchor="C2"``, ``stage1_model=...``.
        mask_node: An existing segmentation or labelmap node to use instead of stage 1.
        timer_factory: Makes the polling timer (default: a ``qt.QTimer``); ``None``: no timer, the caller
            polls (``run.poll()`` or ``run.wait()``).
    """
    options = _options(options, overrides)
    run = BackgroundRun(on_done=on_done, timer_factory=timer_factory)
    outcome: dict = {}
    job = SegmentJob(
        volume_node,
        options,
        mask_node=mask_node,
        segmentation_node=segmentation_node,
        markups_node=markups_node,
        include_semantic=include_semantic,
        on_progress=_chain(run.record_progress, on_progress),
        on_log=_chain(run.record_log, on_log or log.info),
        on_done=lambda nodes, error: outcome.update(nodes=nodes, error=error),
        out_dir=out_dir,
        case_name=_case_name(volume_node, case_name),
    )

    def finish():
        if outcome.get("error") or outcome.get("nodes") is None:
            raise SpineSegError(f"segmentation failed: {outcome.get('error')}", fix="see the log lines")
        return outcome["nodes"]

    job.start()
    run.start(job, finish=finish)
    return run


def segment_volume_node(volume_node, *, timeout: float | None = None, **kwargs):
    """Segment one volume node and add segments, centroid markups and a confidence table to its scene.

    **Blocks** until the run ends (in Slicer's console the window freezes meanwhile; use
    :func:`start_volume_node` there). Takes the arguments of :func:`start_volume_node` plus ``timeout`` (seconds
    before the run is cancelled).

    Returns:
        :class:`~.mrml_adapter.ResultNodes` (segmentation, markups, table).

    Raises:
        SpineSegError: the run failed, was cancelled or timed out (the message is the pipeline's error).
    """
    kwargs.setdefault("timer_factory", None)
    return start_volume_node(volume_node, **kwargs).wait(timeout)


def _check_batch_packages() -> None:
    missing = dependencies.check_dependencies(dependencies.BATCH_REQUIREMENTS, torch_requirement=None).missing
    if missing:
        raise SpineSegError(
            f"segmenting a folder needs {', '.join(missing)}, which is not installed in this Python",
            fix="install it once: from spineinstanceseg.slicer.dependencies import BATCH_REQUIREMENTS, "
            "ensure_dependencies; ensure_dependencies(confirm=lambda text: True, requirements=BATCH_REQUIREMENTS)",
        )


def _count_finished(input_dir: Path, out_dir: Path, run: BackgroundRun, on_progress) -> Callable[..., None]:
    """A poll hook reporting ``("batch", finished / total, "k/n cases")`` from the case reports in ``out_dir``."""
    # lazy: the pipeline modules (pynrrd, matplotlib) load only for a folder run, and the pipeline itself runs in
    # a child process; Slicer's own process needs them only here
    from ..pipeline.batch import find_inputs
    from ..pipeline.options import case_name_of
    from ..pipeline.segment_file import report_path_of

    cases = [case_name_of(p) for p in find_inputs(input_dir)]
    state = {"next": 0.0, "count": -1}

    def tick(*, force: bool = False) -> None:
        now = time.monotonic()
        if now < state["next"] and not force:
            return
        state["next"] = now + 1.0  # a stat per case, at most once a second
        count = sum(report_path_of(out_dir, case).is_file() for case in cases)
        if count != state["count"]:
            state["count"] = count
            _chain(run.record_progress, on_progress)("batch", count / len(cases), f"{count}/{len(cases)} cases")

    return tick


def start_folder(
    input_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    options: SegmentOptions | None = None,
    workers: int | None = None,
    on_progress: Callable[[str, float, str], None] | None = None,
    on_log: Callable[[str], None] | None = None,
    on_done: Callable[[BackgroundRun], None] | None = None,
    timer_factory: TimerFactory | None = qt_timer,
    python: str | None = None,
    **overrides,
) -> BackgroundRun:
    """Start segmenting every image file / DICOM series folder of ``input_dir`` into ``out_dir/<case>/`` in the
    background (like ``spineseg batch``: resumable, one failing case does not stop the others); returns at once.

    Progress is the share of cases whose report exists. When the run ends, ``run.result`` holds the rows of
    ``out_dir/batch_summary.csv`` (case, input, status, seconds, n_vertebrae, n_warnings, error).

    Args:
        timer_factory: See :func:`start_volume_node`.
        python: The child's Python (default: :func:`~.job.python_executable`).

    Raises:
        InputError: ``input_dir`` holds no images.
        SpineSegError: the batch packages (Dask) are not installed.
    """
    # lazy: see _count_finished
    from ..pipeline.batch import SUMMARY_NAME

    _check_batch_packages()
    options = _options(options, overrides)
    argv = [python or python_executable(), "-m", "spineinstanceseg.cli.main", "batch", str(input_dir), str(out_dir)]
    if workers:
        argv += ["--workers", str(int(workers))]
    argv += option_args(options)
    run = BackgroundRun(on_done=on_done, timer_factory=timer_factory)
    tick = _count_finished(Path(input_dir), Path(out_dir), run, on_progress)
    runner = ProcessRunner(argv, env=child_environment(), on_log=_chain(run.record_log, on_log or log.info))

    def finish() -> list[dict[str, str]]:
        summary = Path(out_dir) / SUMMARY_NAME
        if runner.cancelled or not summary.is_file():
            raise SpineSegError(
                f"the batch run ended with code {runner.returncode} and wrote no summary", fix="see the log lines"
            )
        with open(summary, newline="", encoding="utf-8") as handle:
            return list(csv.DictReader(handle))

    runner.start()
    run.start(runner, finish=finish, tick=tick)
    return run


def segment_folder(
    input_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str], *, timeout: float | None = None, **kwargs
) -> list[dict[str, str]]:
    """Segment every image of ``input_dir`` into ``out_dir/<case>/``; **blocks** until all cases are done.

    In Slicer's console the window freezes meanwhile (possibly for hours): use :func:`start_folder` there. Takes
    the arguments of :func:`start_folder` plus ``timeout``.

    Returns:
        The rows of ``out_dir/batch_summary.csv`` (case, input, status, seconds, n_vertebrae, n_warnings, error).
    """
    kwargs.setdefault("timer_factory", None)
    return start_folder(input_dir, out_dir, **kwargs).wait(timeout)
