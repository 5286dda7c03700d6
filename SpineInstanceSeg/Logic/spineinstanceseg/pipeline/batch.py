"""Distributed, resumable batch segmentation of a folder, on Dask.

Each input (image file or DICOM series folder) becomes one Dask task that runs
:func:`~spineinstanceseg.pipeline.segment_file.segment_file` in a worker process. Models are loaded once per
worker (the process-wide cache of :mod:`.models`). A case whose report exists is finished and skipped, so a
killed batch resumes where it stopped; a failing case is recorded and the others go on.

By default a local cluster is started (one worker per CPU core, or per GPU when CUDA is used); pass the address
of an existing scheduler (e.g. one started by dask-jobqueue on SLURM) to run there instead.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from ..atomic import atomic_path
from ..errors import CancelledError, InputError, SpineSegError
from ..io import is_volume_path
from ..progress import CancelToken, Progress
from .options import SegmentOptions, case_name_of
from .segment_file import report_path_of, segment_file

__all__ = ["CaseOutcome", "find_inputs", "run_batch", "default_worker_count", "SUMMARY_NAME"]

log = logging.getLogger(__name__)

SUMMARY_NAME = "batch_summary.csv"


@dataclass(frozen=True)
class CaseOutcome:
    """What happened to one case: status is "done", "skipped" (already finished) or "failed"."""

    case: str
    input: str
    status: str
    seconds: float = 0.0
    n_vertebrae: int = 0
    error: str = ""


def find_inputs(input_dir: str | Path) -> list[Path]:
    """Image files and DICOM series folders directly inside ``input_dir``, sorted by name."""
    folder = Path(input_dir)
    if not folder.is_dir():
        raise InputError("not a folder", fix="pass the folder that holds the images to segment", path=folder)
    inputs = [
        p
        for p in sorted(folder.iterdir())
        if not p.name.startswith(".") and (is_volume_path(p) and p.is_file() or p.is_dir())
    ]
    if not inputs:
        raise InputError(
            "the folder holds no images (.nii.gz, .nii, .nrrd, .mha, .mhd) and no DICOM series folders",
            fix="put the images to segment into the folder",
            path=folder,
        )
    names = [case_name_of(p) for p in inputs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise InputError(
            f"several inputs map to the same case name(s) {duplicates}",
            fix="rename them so every case has its own name",
            path=folder,
        )
    return inputs


def default_worker_count(device: str) -> int:
    """One worker per GPU when running on CUDA, else one per CPU core available to this process."""
    if device in ("cuda", "auto"):
        try:
            import torch

            if torch.cuda.is_available():
                return max(1, torch.cuda.device_count())
        except ImportError:  # pragma: no cover - torch is a dependency
            pass
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


def _remove_stale_partials(out_dir: Path) -> None:
    """Temporary folders of a batch that was killed mid-case (they never became outputs)."""
    for stale in out_dir.glob(".*.partial-*"):
        log.info("removing unfinished output %s from an earlier run", stale)
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)


def _run_case(input_path: str, out_dir: str, options: SegmentOptions, threads: int) -> CaseOutcome:
    """Runs inside a Dask worker: never raises, so one bad case does not stop the batch."""
    import torch

    torch.set_num_threads(max(1, threads))
    case = case_name_of(input_path)
    started = time.perf_counter()
    try:
        paths = segment_file(input_path, out_dir, options, case_name=case)
    except SpineSegError as err:
        return CaseOutcome(case, input_path, "failed", time.perf_counter() - started, error=str(err))
    except Exception as err:  # noqa: BLE001 - record unexpected failures per case and carry on
        log.exception("case %s failed", case)
        return CaseOutcome(
            case, input_path, "failed", time.perf_counter() - started, error=f"{type(err).__name__}: {err}"
        )
    report = json.loads(Path(paths["report"]).read_text())
    return CaseOutcome(case, input_path, "done", time.perf_counter() - started, len(report.get("vertebrae", [])))


def _write_summary(out_dir: Path, outcomes: list[CaseOutcome]) -> Path:
    path = out_dir / SUMMARY_NAME
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(asdict(outcomes[0]).keys()) if outcomes else ["case"])
        writer.writeheader()
        for outcome in sorted(outcomes, key=lambda o: o.case):
            writer.writerow(asdict(outcome))
    return path


def run_batch(
    input_dir: str | Path,
    out_dir: str | Path,
    options: SegmentOptions,
    *,
    scheduler: str | None = None,
    n_workers: int | None = None,
    progress: Callable[[str, float, str], None] | None = None,
    cancel: CancelToken | None = None,
) -> list[CaseOutcome]:
    """Segment every input of ``input_dir`` into ``out_dir/<case>/``, skipping finished cases.

    Args:
        scheduler: Address of an existing Dask scheduler ("tcp://host:8786"); ``None`` starts a local cluster.
        n_workers: Local cluster size (default: :func:`default_worker_count`).

    Returns:
        One outcome per input; also written to ``out_dir/batch_summary.csv``.
    """
    from dask.distributed import Client, LocalCluster, as_completed

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _remove_stale_partials(out)
    inputs = find_inputs(input_dir)
    bar = Progress(progress, cancel, step="batch")
    outcomes: list[CaseOutcome] = []
    todo: list[Path] = []
    for path in inputs:
        case = case_name_of(path)
        if report_path_of(out, case).exists():
            outcomes.append(CaseOutcome(case, str(path), "skipped"))
        else:
            todo.append(path)
    log.info("%d case(s) to run, %d already finished", len(todo), len(outcomes))
    if todo:
        workers = n_workers or default_worker_count(options.device)
        cluster = None
        if scheduler is None:
            cluster = LocalCluster(
                n_workers=min(workers, len(todo)), threads_per_worker=1, processes=True, dashboard_address=None
            )
        client = Client(scheduler or cluster)
        try:
            n_running = max(1, len(client.scheduler_info().get("workers", {})))
            threads = max(1, (os.cpu_count() or 1) // n_running)
            futures = [
                client.submit(
                    _run_case, str(p), str(out), options, threads, key=f"spineseg-{case_name_of(p)}", pure=False
                )
                for p in todo
            ]
            done = 0
            bar.update(0.0, f"0/{len(todo)} cases")
            for future in as_completed(futures):
                outcome = future.result()
                outcomes.append(outcome)
                done += 1
                log.info("%s: %s", outcome.case, outcome.status if not outcome.error else outcome.error)
                try:
                    bar.update(done / len(todo), f"{done}/{len(todo)} cases")
                except CancelledError:
                    client.cancel(futures)
                    raise
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
    _write_summary(out, outcomes)
    return sorted(outcomes, key=lambda o: o.case)
