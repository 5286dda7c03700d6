"""Batch helpers for Slicer's Python console: segment a volume node, or a whole folder of files.

Both run the pipeline in a child process (``PythonSlicer -m spineinstanceseg.cli.main ...``) exactly as the
"Segment spine" button and the CLI do, and *block* until it ends (a console call, not a GUI action)::

    from spineinstanceseg.slicer import console
    nodes = console.segment_volume_node(getNode("CTChest"), out_dir="/data/out", on_log=print)
    outcomes = console.segment_folder("/data/images", "/data/out", device="cuda", on_log=print)
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Callable
from pathlib import Path

from ..errors import SpineSegError
from ..pipeline.options import SegmentOptions
from .job import SegmentJob, child_environment, option_args, python_executable
from .process_runner import ProcessRunner

__all__ = ["segment_volume_node", "segment_folder"]

log = logging.getLogger(__name__)


def _options(options: SegmentOptions | None, overrides: dict) -> SegmentOptions:
    from dataclasses import replace

    return replace(options or SegmentOptions(), **overrides) if overrides else (options or SegmentOptions())


def segment_volume_node(
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
    timeout: float | None = None,
    **overrides,
):
    """Segment one volume node and add segments, centroid markups and a confidence table to its scene.

    Args:
        out_dir: Also write the CLI's outputs (label maps, ``.seg.nrrd``, markups, CSV, preview, report) to
            ``out_dir/<case_name>/``.
        case_name: Default: the node's name made file-safe.
        options / overrides: Run options, e.g. ``device="cpu"``, ``anchor="C2"``, ``stage1_model=...``.
        timeout: Seconds before the run is cancelled.

    Returns:
        :class:`~.mrml_adapter.ResultNodes` (segmentation, markups, table).

    Raises:
        SpineSegError: the run failed, was cancelled or timed out (the message is the pipeline's error).
    """
    options = _options(options, overrides)
    name = case_name or "".join(c if c.isalnum() or c in "-_" else "_" for c in volume_node.GetName()) or "case"
    outcome: dict = {}
    job = SegmentJob(
        volume_node,
        options,
        mask_node=mask_node,
        segmentation_node=segmentation_node,
        markups_node=markups_node,
        include_semantic=include_semantic,
        on_progress=on_progress,
        on_log=on_log or log.info,
        on_done=lambda nodes, error: outcome.update(nodes=nodes, error=error),
        out_dir=out_dir,
        case_name=name,
    )
    job.start()
    if job.wait(timeout) is None:
        job.cancel()
        job.wait()
        raise SpineSegError(f"the segmentation took longer than {timeout} s and was cancelled", fix="raise timeout")
    if outcome.get("error") or outcome.get("nodes") is None:
        raise SpineSegError(f"segmentation failed: {outcome.get('error')}", fix="see the log lines above")
    return outcome["nodes"]


def segment_folder(
    input_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    options: SegmentOptions | None = None,
    workers: int | None = None,
    on_log: Callable[[str], None] | None = None,
    **overrides,
) -> list[dict[str, str]]:
    """Segment every image file / DICOM series folder in ``input_dir`` into ``out_dir/<case>/`` (like ``spineseg
    batch``: resumable, one failing case does not stop the others).

    Returns:
        The rows of ``out_dir/batch_summary.csv`` (case, input, status, seconds, n_vertebrae, error).
    """
    from ..pipeline.batch import SUMMARY_NAME

    options = _options(options, overrides)
    argv = [python_executable(), "-m", "spineinstanceseg.cli.main", "batch", str(input_dir), str(out_dir)]
    if workers:
        argv += ["--workers", str(int(workers))]
    argv += option_args(options)
    runner = ProcessRunner(argv, env=child_environment(), on_log=on_log or log.info)
    runner.start()
    code = runner.wait()
    summary = Path(out_dir) / SUMMARY_NAME
    if not summary.is_file():
        raise SpineSegError(f"the batch run ended with code {code} and wrote no summary", fix="see the log lines")
    with open(summary, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))
