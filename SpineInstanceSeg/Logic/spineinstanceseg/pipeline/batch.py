"""Distributed, resumable batch segmentation of a folder, on Dask.

Each input (image file or DICOM series folder) becomes one Dask task that runs
:func:`~spineinstanceseg.pipeline.segment_file.segment_file` in a worker process. Models are loaded once per
worker (the process-wide cache of :mod:`.models`). A case whose report exists is finished and skipped, so a
killed batch resumes where it stopped; a failing case is recorded and the others go on.

By default a local cluster is started: one worker per CPU core, or per GPU when CUDA is used (local worker k uses
GPU k), but no more workers than fit in the memory available (:data:`WORKER_MEMORY_GB` each; see
:func:`plan_workers`). Pass the address of an existing scheduler (e.g. one started by dask-jobqueue on SLURM) to
run there instead. Each case's torch threads are decided on the worker that runs it: the cores that worker may
use, shared among the cases its host runs at once (never the client's core count). The summary
(``batch_summary.csv``) is written also when the batch is cancelled or interrupted.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from ..atomic import atomic_path
from ..devices import cuda_device_count, resolve_device
from ..errors import InputError, SpineSegError
from ..io import is_volume_path
from ..progress import CancelToken, Progress
from ..stage1.totalseg_adapter import require_totalsegmentator
from .options import SegmentOptions, case_name_of
from .segment_file import report_path_of, segment_file

__all__ = [
    "CaseOutcome",
    "WorkerPlan",
    "find_inputs",
    "run_batch",
    "plan_workers",
    "threads_per_task",
    "worker_device",
    "SUMMARY_NAME",
    "WORKER_MEMORY_GB",
]

log = logging.getLogger(__name__)

SUMMARY_NAME = "batch_summary.csv"

# Peak memory of one local worker in GB, used to cap the number of workers by the memory available (the one
# tuned number of this module). An estimate from array sizes, not a measurement: for a 512 x 512 x 700 CT the
# image is 0.7 GB as float32, nnU-Net resamples its 5 class logits back to the CT's grid as float32 (3.7 GB) before
# taking the argmax, and stage 2 keeps CT-sized int32 label maps (0.7 GB each); plus ~1 GB for torch, nnU-Net and
# the models. Smaller scans need less: give --workers to use more workers than this allows.
WORKER_MEMORY_GB = 8.0
_NOT_FINISHED = "the batch stopped before this case finished; run the batch again to finish it"


@dataclass(frozen=True)
class CaseOutcome:
    """What happened to one case: status is "done", "skipped" (already finished), "failed" or "cancelled" (the batch
    stopped before the case finished); a finished case has its vertebrae and warnings counted from its report."""

    case: str
    input: str
    status: str
    seconds: float = 0.0
    n_vertebrae: int = 0
    n_warnings: int = 0
    error: str = ""


def _finished(case: str, input_path: str, status: str, report: Path, seconds: float = 0.0) -> CaseOutcome:
    """The outcome of a case whose report exists, with its counts of vertebrae and warnings (0 and 0 when the
    report cannot be read: the case is finished all the same)."""
    try:
        content = json.loads(Path(report).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        log.warning("the report of case %s could not be read (%s)", case, report)
        return CaseOutcome(case, input_path, status, seconds)
    n_vertebrae, n_warnings = len(content.get("vertebrae", [])), len(content.get("warnings", []))
    return CaseOutcome(case, input_path, status, seconds, n_vertebrae, n_warnings)


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


@dataclass(frozen=True)
class WorkerPlan:
    """How many local Dask workers to start and how many torch threads each one's case may use.

    ``limited_by`` says which resource decided the count: "cores", "memory", "gpus", "cases" or "user".
    """

    workers: int
    threads_per_worker: int
    limited_by: str


def threads_per_task(cores: int, tasks_on_host: int) -> int:
    """Torch threads for one case when ``tasks_on_host`` cases run at once on a host with ``cores`` cores."""
    return max(1, int(cores) // max(1, int(tasks_on_host)))


def plan_workers(
    *,
    cores: int,
    memory_gb: float | None,
    gpus: int = 0,
    cases: int | None = None,
    requested: int | None = None,
    memory_per_worker_gb: float = WORKER_MEMORY_GB,
) -> WorkerPlan:
    """The local cluster for a batch: one worker per GPU (CUDA) or per core (CPU), but no more than fit in memory.

    Args:
        cores: CPU cores this process may use.
        memory_gb: Memory available now in GB (``None``: unknown, not a limit).
        gpus: CUDA GPUs to use (0 on the CPU).
        cases: Cases to run (no more workers than cases).
        requested: The user's ``--workers`` (wins over everything else).
        memory_per_worker_gb: Peak memory of one worker (:data:`WORKER_MEMORY_GB`).
    """
    if requested:
        workers, reason = max(1, int(requested)), "user"
    else:
        limits = {"gpus" if gpus > 0 else "cores": max(1, gpus if gpus > 0 else cores)}
        if memory_gb is not None:
            limits["memory"] = max(1, int(memory_gb // memory_per_worker_gb))
        if cases is not None:
            limits["cases"] = max(1, cases)
        reason = min(limits, key=lambda k: (limits[k], list(limits).index(k)))  # a tie names the hardware first
        workers = limits[reason]
    return WorkerPlan(workers, threads_per_task(cores, workers), reason)


def visible_cores() -> int:
    """CPU cores this process may use (its affinity mask where the system has one, e.g. a SLURM allocation)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def available_memory_gb() -> float | None:
    """Memory available to new processes now, in GB, within a container's limit (``None`` when unknown)."""
    try:
        import psutil  # a dependency of dask.distributed
        from distributed.system import MEMORY_LIMIT
    except ImportError:  # pragma: no cover - both come with dask[distributed]
        return None
    return min(psutil.virtual_memory().available, MEMORY_LIMIT) / 2**30


def worker_device(requested: str, worker_name: object, gpus: int) -> str:
    """The device of one worker: with "cuda"/"auto" and several GPUs, local worker k uses GPU k mod gpus.

    Workers of a local cluster are named 0, 1, ...; other names (an external cluster, which pins GPUs itself,
    e.g. with CUDA_VISIBLE_DEVICES per job) keep the requested device.
    """
    if requested in ("cuda", "auto") and gpus > 1 and isinstance(worker_name, int):
        return f"cuda:{worker_name % gpus}"
    return requested


def _remove_stale_partials(out_dir: Path) -> None:
    """Temporary folders of a batch that was killed mid-case (they never became outputs)."""
    for stale in out_dir.glob(".*.partial-*"):
        log.info("removing unfinished output %s from an earlier run", stale)
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)


def _on_this_worker(options: SegmentOptions, tasks_on_host: dict[str, int]) -> tuple[SegmentOptions, int]:
    """The options (device) and torch threads of a case, decided on the worker that runs it."""
    try:
        from distributed import get_worker
        from distributed.comm.addressing import get_address_host

        worker = get_worker()
        name, host = worker.name, get_address_host(worker.address)
    except (ImportError, ValueError):  # not inside a Dask worker (a direct call)
        name, host = None, ""
    device = worker_device(options.device, name, cuda_device_count() if options.device != "cpu" else 0)
    threads = threads_per_task(visible_cores(), tasks_on_host.get(host, 1))
    return (replace(options, device=device) if device != options.device else options), threads


def _run_case(input_path: str, out_dir: str, options: SegmentOptions, tasks_on_host: dict[str, int]) -> CaseOutcome:
    """Runs inside a Dask worker: never raises, so one bad case does not stop the batch."""
    import torch

    options, threads = _on_this_worker(options, tasks_on_host)
    torch.set_num_threads(threads)
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
    return _finished(case, input_path, "done", paths["report"], time.perf_counter() - started)


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
        n_workers: Local cluster size (default: :func:`plan_workers` from cores, GPUs and memory).

    Returns:
        One outcome per input; also written to ``out_dir/batch_summary.csv``, which is written too when the batch
        stops early (cancel, Ctrl-C, an error): cases that did not finish are listed as "cancelled".

    Raises:
        InputError: no inputs, or (local cluster) a device this machine cannot use or TotalSegmentator as stage 1
            without the package.
        CancelledError / KeyboardInterrupt: the batch was stopped (the summary is written first).
    """
    out = Path(out_dir)
    inputs = find_inputs(input_dir)
    if scheduler is None:
        resolve_device(options.device)  # fail now rather than once per case; an external cluster checks on its workers
        if options.stage1 == "totalsegmentator" and not options.mask:
            require_totalsegmentator()
    out.mkdir(parents=True, exist_ok=True)
    _remove_stale_partials(out)
    outcomes: list[CaseOutcome] = []
    todo: list[Path] = []
    for path in inputs:
        case = case_name_of(path)
        if report_path_of(out, case).exists():
            outcomes.append(_finished(case, str(path), "skipped", report_path_of(out, case)))
        else:
            todo.append(path)
    log.info("%d case(s) to run, %d already finished", len(todo), len(outcomes))
    try:
        if todo:
            bar = Progress(progress, cancel, step="batch")
            _run_on_dask(todo, out, options, outcomes, bar=bar, scheduler=scheduler, n_workers=n_workers)
    finally:
        ended = {o.input for o in outcomes}
        stopped = [CaseOutcome(case_name_of(p), str(p), "cancelled", error=_NOT_FINISHED) for p in todo
                   if str(p) not in ended]  # fmt: skip
        _write_summary(out, outcomes + stopped)
    return sorted(outcomes, key=lambda o: o.case)


def _start_client(scheduler: str | None, options: SegmentOptions, n_cases: int, n_workers: int | None):
    """A Dask client: of the given scheduler, or of a new local cluster sized by :func:`plan_workers`."""
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError as error:
        raise InputError(
            f"batch runs need Dask, which is not installed ({error})",
            fix='install the batch extra: pip install "spineinstanceseg[batch]" (or pip install "dask[distributed]")',
        ) from None

    if scheduler is not None:
        return Client(scheduler), None
    device = resolve_device(options.device)
    gpus = 0
    if device.type == "cuda":  # one worker per GPU; "cuda:N" names one GPU
        gpus = cuda_device_count() if options.device in ("cuda", "auto") else 1
    memory = available_memory_gb()
    plan = plan_workers(cores=visible_cores(), memory_gb=memory, gpus=gpus, cases=n_cases, requested=n_workers)
    log.info("local Dask cluster: %d worker(s) of about %d torch thread(s) (limited by %s; %s GB available, %g GB "
             "per worker assumed)", plan.workers, plan.threads_per_worker, plan.limited_by,
             "?" if memory is None else f"{memory:.0f}", WORKER_MEMORY_GB)  # fmt: skip
    cluster = LocalCluster(n_workers=plan.workers, threads_per_worker=1, processes=True, dashboard_address=None)
    return Client(cluster), cluster


def _tasks_per_host(client) -> dict[str, int]:
    """Cases that can run at once on each host of the cluster (its workers' threads), from the scheduler."""
    counts: dict[str, int] = {}
    for info in client.scheduler_info().get("workers", {}).values():
        counts[info.get("host", "")] = counts.get(info.get("host", ""), 0) + int(info.get("nthreads", 1))
    return counts


def _run_on_dask(
    todo: list[Path],
    out: Path,
    options: SegmentOptions,
    outcomes: list[CaseOutcome],
    *,
    bar: Progress,
    scheduler: str | None,
    n_workers: int | None,
) -> None:
    """Run the cases on Dask, appending each outcome to ``outcomes`` as it arrives (so a stop keeps them)."""
    client, cluster = _start_client(scheduler, options, len(todo), n_workers)
    from dask.distributed import as_completed  # importable: _start_client checked

    futures = []
    try:
        per_host = _tasks_per_host(client)
        keys = [f"spineseg-{case_name_of(p)}" for p in todo]
        futures = [client.submit(_run_case, str(p), str(out), options, per_host, key=k, pure=False)
                   for p, k in zip(todo, keys, strict=True)]  # fmt: skip
        bar.update(0.0, f"0/{len(todo)} cases")
        for done, future in enumerate(as_completed(futures), start=1):
            outcome = future.result()
            outcomes.append(outcome)
            log.info("%s: %s", outcome.case, outcome.status if not outcome.error else outcome.error)
            bar.update(done / len(todo), f"{done}/{len(todo)} cases")
    finally:
        if futures:
            client.cancel(futures)
        client.close()
        if cluster is not None:
            cluster.close()
