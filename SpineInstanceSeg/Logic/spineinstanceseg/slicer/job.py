"""One "Segment spine" run of the Slicer module: input to a temp folder, pipeline in a child process, results back.

Flow (all in the caller's thread except the child process itself):

1. :meth:`SegmentJob.start` copies the input volume (world geometry, see :mod:`.volume_nodes`) and an optional
   existing stage-1 mask into a fresh temporary folder and starts
   ``python -m spineinstanceseg.cli.main segment IN OUT --progress-lines ...`` through
   :class:`~.process_runner.ProcessRunner`;
2. the owner calls :meth:`SegmentJob.poll` from a timer; progress and log lines reach its callbacks;
3. when the child ends, the case folder is read back (:func:`read_case_result`) and put into the scene with
   :func:`~.mrml_adapter.add_result_to_scene`; ``on_done(nodes, error)`` reports the outcome; the temporary
   folder is removed in every outcome (success, failure, cancel).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import tempfile
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from ..errors import InputError
from ..io import read_label_map, write_volume
from ..pipeline.options import SegmentOptions
from ..results import SegmentationResult, VertebraRecord
from .mrml_adapter import add_result_to_scene
from .process_runner import ProcessRunner
from .segment_mask import mask_from_segmentation
from .volume_nodes import volume_from_node

__all__ = [
    "SegmentJob",
    "segment_argv",
    "option_args",
    "child_environment",
    "python_executable",
    "running_slicer_home",
    "read_case_result",
    "CASE_NAME",
]

log = logging.getLogger(__name__)

CASE_NAME = "input"
_LOG_TAIL = 30


_PYTHON_SLICER = "PythonSlicer.exe" if sys.platform == "win32" else "PythonSlicer"


def running_slicer_home() -> str | None:
    """``slicer.app.slicerHome`` of the running Slicer application (``None`` outside it, e.g. with slicer-core)."""
    try:
        import slicer

        app = getattr(slicer, "app", None)
        return str(app.slicerHome) if app is not None and app.slicerHome else None
    except Exception:  # no Slicer, or an application without a home (never expected)
        return None


def python_executable(
    *,
    slicer_home: str | os.PathLike[str] | None | bool = True,
    executable: str | None = None,
    which: Callable[[str], str | None] = shutil.which,
) -> str:
    """The Python that runs the child: the ``PythonSlicer`` of the *running* Slicer (its packages, its version).

    Order:

    1. ``<slicer_home>/bin/PythonSlicer`` of the running application;
    2. ``PythonSlicer`` beside ``executable`` (Slicer sets ``sys.executable`` to its own PythonSlicer, and in
       ``PythonSlicer`` the interpreter lies in the same folder);
    3. outside Slicer: ``executable`` itself, the interpreter that imported this library;
    4. inside Slicer, when neither 1 nor 2 exists: a ``PythonSlicer`` on ``PATH``, else ``executable``.

    A ``PythonSlicer`` on ``PATH`` belongs to whichever Slicer installation comes first there (another version,
    other packages), so it is only the last resort inside the application and never used outside it.

    Args:
        slicer_home: Home folder of the running Slicer; ``True`` (default) asks ``slicer.app``; ``None``/``False``
            means "not inside Slicer".
        executable: Default ``sys.executable``.
        which: ``shutil.which`` (tests substitute their own).
    """
    home = running_slicer_home() if slicer_home is True else (slicer_home or None)
    executable = executable or sys.executable
    candidates = [Path(home) / "bin" / _PYTHON_SLICER] if home else []
    candidates.append(Path(executable).with_name(_PYTHON_SLICER))
    for candidate in candidates:
        if candidate.is_file():
            return str(candidate)
    if home:
        return which("PythonSlicer") or executable
    return executable


def child_environment(base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for the child: this library's folder first on ``PYTHONPATH`` (Slicer adds it only in-process)."""
    env = dict(os.environ if base is None else base)
    library_root = str(Path(__file__).resolve().parents[2])  # the folder that holds the spineinstanceseg package
    parts = [library_root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != library_root]
    env["PYTHONPATH"] = os.pathsep.join(parts)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def option_args(options: SegmentOptions) -> list[str]:
    """The ``spineseg segment`` / ``spineseg batch`` options that reproduce ``options``."""
    argv = ["--device", options.device]
    if options.stage1 != SegmentOptions.stage1:
        argv += ["--stage1", options.stage1, "--totalseg-task", options.totalseg_task]
    if options.totalseg_fast:
        argv.append("--totalseg-fast")
    if options.stage1_model:
        argv += ["--stage1-model", str(options.stage1_model)]
    if options.folds:
        argv += ["--folds", ",".join(str(f) for f in options.folds)]
    if options.checkpoint != SegmentOptions.checkpoint:
        argv += ["--checkpoint", options.checkpoint]
    if options.stage1_mirroring is not None:
        argv += ["--mirroring", "on" if options.stage1_mirroring else "off"]
    if not options.bone_boundary:
        argv.append("--no-bone-boundary")
    if not options.pitch_search:
        argv.append("--no-pitch-search")
    if options.mask:
        argv += ["--mask", str(options.mask), "--mask-convention", options.mask_convention]
    if options.stage2_model:
        argv += ["--stage2-model", str(options.stage2_model)]
    argv += ["--batch-size", str(int(options.batch_size))]
    if options.lowest:
        argv += ["--lowest", options.lowest]
    if options.anchor:
        argv += ["--anchor", options.anchor]
    if options.with_l6:
        argv.append("--with-l6")
    if options.with_t13:
        argv.append("--with-t13")
    argv += ["--export", ",".join(options.exports), "--label-format", options.label_format]
    return argv


def segment_argv(
    input_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    options: SegmentOptions,
    *,
    case_name: str = CASE_NAME,
    python: str | None = None,
) -> list[str]:
    """Command line of ``spineseg segment`` for ``options`` (parsed back into the same options by the CLI)."""
    argv = [python or python_executable(), "-m", "spineinstanceseg.cli.main", "segment", str(input_path)]
    return argv + [str(out_dir), "--case-name", case_name, "--progress-lines", *option_args(options)]


def read_case_result(case_dir: str | os.PathLike[str]) -> SegmentationResult:
    """Read a finished case folder (written by :func:`spineinstanceseg.outputs.write_all`) back into a result.

    Uses the report (its ``outputs`` and ``vertebrae`` entries) and the instance / semantic label maps.

    Raises:
        InputError: the folder has no complete report or misses a label map.
    """
    case_dir = Path(case_dir)
    reports = sorted(case_dir.glob("*_report.json"))
    if not reports:
        raise InputError("the case folder has no report (the run did not finish)", fix="run again", path=case_dir)
    report = json.loads(reports[0].read_text(encoding="utf-8"))
    outputs = report.get("outputs", {})
    missing = [kind for kind in ("instances", "semantic") if kind not in outputs]
    if not report.get("complete") or missing:
        raise InputError(f"the case report lists no {', '.join(missing) or 'complete result'}", fix="run again",
                         path=reports[0])  # fmt: skip
    instances = read_label_map(case_dir / outputs["instances"])
    semantic = read_label_map(case_dir / outputs["semantic"])
    records = tuple(
        VertebraRecord(
            label=int(v["label"]),
            name=str(v["name"]),
            level_code=None if v.get("level_code") is None else int(v["level_code"]),
            centroid_lps=tuple(float(c) for c in v["centroid_lps_mm"]),  # type: ignore[arg-type]
            confidence=float(v["confidence"]),
            voxel_count=int(v.get("voxel_count", 0)),
            volume_ml=float(v.get("volume_ml", 0.0)),
        )
        for v in report.get("vertebrae", [])
    )
    return SegmentationResult(
        instances=instances,
        semantic=semantic,
        vertebrae=records,
        naming_rule=str(report.get("naming_rule", "")),
        stage1_source=str(report.get("stage1_source", "")),
        models=dict(report.get("models", {})),
        timings={k: float(v) for k, v in report.get("timings_s", {}).items()},
        warnings=tuple(report.get("warnings", [])),
    )


class SegmentJob:
    """A background segmentation of one volume node (see module docstring).

    Args:
        volume_node: Input volume (scalar volume node).
        options: Run options (models, device, naming); ``exports`` and ``label_format`` are chosen here.
        mask_node: Existing segmentation (labelmap or segmentation node) to use as stage 1; its values are in
            ``options.mask_convention``.
        segmentation_node / markups_node / table_node: Output nodes to overwrite (``None``: new nodes).
        include_semantic: Also add discs, canal and sacrum as segments.
        on_progress(step, fraction, message), on_log(line): Called from :meth:`poll`.
        on_done(nodes, error): ``nodes`` is a :class:`~.mrml_adapter.ResultNodes` on success; ``error`` a
            message on failure or cancel.
        out_dir: Also keep the files of the run: the child writes the CLI's outputs (``options.exports``) to
            ``out_dir/<case_name>/``; without it only what the scene needs is written, into the temp folder.
        case_name: Case folder / file prefix in ``out_dir``.
        argv_factory: Builds the child's command line (tests substitute a fake pipeline).
        cancel_grace_s: How long Cancel lets the child clean up after SIGTERM before it is killed (its unfinished
            case folder is then removed here).
    """

    def __init__(
        self,
        volume_node,
        options: SegmentOptions,
        *,
        mask_node=None,
        segmentation_node=None,
        markups_node=None,
        table_node=None,
        include_semantic: bool = True,
        on_progress: Callable[[str, float, str], None] | None = None,
        on_log: Callable[[str], None] | None = None,
        on_done: Callable[[object | None, str | None], None] | None = None,
        out_dir: str | os.PathLike[str] | None = None,
        case_name: str = CASE_NAME,
        argv_factory: Callable[..., list[str]] = segment_argv,
        cancel_grace_s: float = 5.0,
    ) -> None:
        self.volume_node = volume_node
        if out_dir is None:  # only what the scene needs
            options = replace(options, exports=("nifti", "markups", "csv", "report"), label_format=".nrrd")
        self.options = options
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.case_name = case_name
        self.mask_node = mask_node
        self.segmentation_node = segmentation_node
        self.markups_node = markups_node
        self.table_node = table_node
        self.include_semantic = include_semantic
        self.on_progress = on_progress
        self.on_log = on_log
        self.on_done = on_done
        self.argv_factory = argv_factory
        self.cancel_grace_s = float(cancel_grace_s)
        self.runner: ProcessRunner | None = None
        self.temp_dir: Path | None = None
        self.nodes = None
        self.error: str | None = None
        self._log_tail: deque[str] = deque(maxlen=_LOG_TAIL)
        self._partials_before: set[Path] = set()

    def start(self) -> None:
        """Write the inputs and start the child process; returns at once."""
        image = volume_from_node(self.volume_node, world=True)
        self.temp_dir = Path(tempfile.mkdtemp(prefix="SpineInstanceSeg-"))
        try:
            input_path = write_volume(image, self.temp_dir / f"{self.case_name}.nrrd")
            options = self.options
            if self.mask_node is not None:
                mask, convention = self._mask_volume()
                path = write_volume(mask, self.temp_dir / "mask.nrrd")
                options = replace(options, mask=str(path), mask_convention=convention)
            argv = self.argv_factory(input_path, self._results_root(), options, case_name=self.case_name)
            self._partials_before = self._partial_outputs()
            self.runner = ProcessRunner(
                argv,
                env=child_environment(),
                temp_dir=self.temp_dir,
                on_progress=self.on_progress,
                on_log=self._on_log,
                on_finished=self._on_finished,
                cancel_grace_s=self.cancel_grace_s,
            )
        except BaseException:
            shutil.rmtree(self.temp_dir, ignore_errors=True)
            raise
        self.runner.start()  # removes the temp folder itself if the child cannot start

    def _mask_volume(self):
        """The existing stage-1 mask as ``(label volume on the input's world grid, its label convention)``.

        A labelmap node keeps ``options.mask_convention``; a segmentation node is read segment by segment by
        name and terminology (:mod:`.segment_mask`) into semantic classes, and the mapping is logged.
        """
        if not self.mask_node.IsA("vtkMRMLSegmentationNode"):
            mask = volume_from_node(self.mask_node, world=True, is_label=True)
            return mask, self.options.mask_convention
        read = mask_from_segmentation(self.mask_node, reference_volume_node=self.volume_node, world=True)
        self._on_log(f"stage 1 from segmentation {self.mask_node.GetName()!r}:")
        for mapped in (*read.segments, *read.ignored):
            self._on_log(f"  {mapped.describe()}")
        return read.semantic, "semantic"

    def _partial_outputs(self) -> set[Path]:
        """Hidden temporary case folders of this case in the results folder (see :mod:`spineinstanceseg.atomic`)."""
        root = self._results_root()
        return set(root.glob(f".{self.case_name}.partial-*")) if root.is_dir() else set()

    def _remove_partial_outputs(self) -> None:
        """After a cancel: remove the temporary case folder a killed child could not remove itself.

        The child removes it on SIGTERM (the CLI unwinds and its atomic writers clean up); a child stuck in native
        code for longer than the runner's grace time is killed, and its half-written folder would stay in
        ``out_dir``. Folders that existed before this job started are left alone.
        """
        for folder in self._partial_outputs() - self._partials_before:
            log.info("removing the unfinished outputs of the cancelled run: %s", folder)
            shutil.rmtree(folder, ignore_errors=True)

    def _results_root(self) -> Path:
        assert self.temp_dir is not None
        return self.out_dir if self.out_dir is not None else self.temp_dir / "out"

    @property
    def running(self) -> bool:
        return self.runner is not None and self.runner.running

    def poll(self) -> bool:
        """Deliver progress, log and the final result; True while the job runs."""
        return self.runner.poll() if self.runner is not None else False

    def wait(self, timeout: float | None = None) -> int | None:
        return self.runner.wait(timeout) if self.runner is not None else None

    def cancel(self) -> None:
        if self.runner is not None:
            self.runner.cancel()

    def _on_log(self, line: str) -> None:
        self._log_tail.append(line)
        if self.on_log is not None:
            self.on_log(line)

    def _on_finished(self, code: int) -> None:
        assert self.temp_dir is not None and self.runner is not None
        if self.runner.cancelled:
            self.error = "cancelled"
            self._remove_partial_outputs()
        elif code != 0:
            lines = [ln for ln in self._log_tail if ln.strip()]
            errors = [ln for ln in lines if "error" in ln.lower()]
            self.error = (errors or lines or [f"the segmentation process ended with code {code}"])[-1]
        else:
            try:
                result = read_case_result(self._results_root() / self.case_name)
                self.nodes = add_result_to_scene(
                    result,
                    self.volume_node,
                    segmentation_node=self.segmentation_node,
                    markups_node=self.markups_node,
                    table_node=self.table_node,
                    include_semantic=self.include_semantic,
                )
                for warning in result.warnings:
                    self._on_log(f"warning: {warning}")
            except Exception as err:  # report to the user instead of losing the error in a timer callback
                log.exception("loading the result failed")
                self.error = f"the result could not be loaded: {err}"
        if self.on_done is not None:
            self.on_done(self.nodes, self.error)
