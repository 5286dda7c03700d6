"""How many workers a batch starts (cores, GPUs and memory), threads decided on the worker, GPUs per worker, and the
summary of a batch that is stopped midway (a real in-process Dask cluster; the segmentation itself is faked)."""

from __future__ import annotations

import csv
import json
import time

import pytest
import torch

from spineinstanceseg.atomic import atomic_directory
from spineinstanceseg.cli.main import main
from spineinstanceseg.pipeline import batch
from spineinstanceseg.pipeline.batch import (
    SUMMARY_NAME,
    WORKER_MEMORY_GB,
    WorkerPlan,
    plan_workers,
    run_batch,
    threads_per_task,
    worker_device,
)
from spineinstanceseg.pipeline.options import SegmentOptions


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        # a 2-core laptop with plenty of memory: one worker per core
        ({"cores": 2, "memory_gb": 64.0}, WorkerPlan(2, 1, "cores")),
        # a 32-core server with 40 GB free: memory allows only 5 workers, which share the cores
        ({"cores": 32, "memory_gb": 40.0}, WorkerPlan(5, 6, "memory")),
        # too little memory for even one: still one worker, with every core
        ({"cores": 8, "memory_gb": 3.0}, WorkerPlan(1, 8, "memory")),
        # two GPUs: one worker per GPU
        ({"cores": 16, "memory_gb": 64.0, "gpus": 2}, WorkerPlan(2, 8, "gpus")),
        # fewer cases than cores: no idle workers
        ({"cores": 16, "memory_gb": None, "cases": 3}, WorkerPlan(3, 5, "cases")),
        # --workers wins
        ({"cores": 4, "memory_gb": 4.0, "requested": 3}, WorkerPlan(3, 1, "user")),
    ],
)
def test_worker_count_comes_from_cores_gpus_memory_and_cases(kwargs, expected):
    assert plan_workers(**kwargs) == expected


def test_memory_estimate_is_the_one_documented_number():
    assert plan_workers(cores=64, memory_gb=4 * WORKER_MEMORY_GB + 1).workers == 4
    assert plan_workers(cores=64, memory_gb=20.0, memory_per_worker_gb=2.0).workers == 10


def test_threads_and_gpus_per_worker():
    assert threads_per_task(16, 4) == 4 and threads_per_task(2, 4) == 1 and threads_per_task(8, 0) == 8
    assert [worker_device("cuda", k, 2) for k in range(3)] == ["cuda:0", "cuda:1", "cuda:0"]
    assert worker_device("auto", 1, 4) == "cuda:1"
    assert worker_device("cuda", "slurm-job-7", 2) == "cuda"  # an external cluster pins its own GPUs
    assert worker_device("cuda:1", 0, 2) == "cuda:1" and worker_device("cpu", 1, 2) == "cpu"
    assert worker_device("cuda", 1, 1) == "cuda"


@pytest.mark.parametrize("device", ["cuda:x", "gpu"])
def test_batch_refuses_a_misspelt_device_before_starting(tmp_path, device, capsys):
    with pytest.raises(SystemExit) as usage:
        main(["batch", str(tmp_path), str(tmp_path / "out"), "--device", device])
    assert usage.value.code == 2 and "unknown device" in capsys.readouterr().err


@pytest.fixture
def in_process_cluster():
    from dask.distributed import LocalCluster

    threads = torch.get_num_threads()
    cluster = LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None)
    yield cluster
    cluster.close()
    torch.set_num_threads(threads)


def _fake_segment_file(seen_threads: list[int]):
    def segment_file(input_path, out_dir, options, *, case_name):
        seen_threads.append(torch.get_num_threads())
        time.sleep(0.5)
        report = batch.report_path_of(out_dir, case_name)
        with atomic_directory(report.parent) as tmp:  # as the real writer does
            (tmp / report.name).write_text(json.dumps({"complete": True, "vertebrae": [{"label": 20}]}))
        return {"report": report}

    return segment_file


def test_a_stopped_batch_writes_its_summary_and_threads_are_set_on_the_worker(tmp_path, monkeypatch,
                                                                                in_process_cluster):  # fmt: skip
    images = tmp_path / "images"
    images.mkdir()
    for name in ("a", "b", "c"):
        (images / f"{name}.nii.gz").write_bytes(b"x")
    seen_threads: list[int] = []
    monkeypatch.setattr(batch, "segment_file", _fake_segment_file(seen_threads))
    # as if the worker had 6 cores and its host ran a second worker: the case gets 3 threads
    tasks_per_host = batch._tasks_per_host
    monkeypatch.setattr(batch, "_tasks_per_host", lambda client: {h: 2 * n for h, n in tasks_per_host(client).items()})
    monkeypatch.setattr(batch, "visible_cores", lambda: 6)

    def ctrl_c_after_the_first_case(step, fraction, message):
        if fraction > 0:
            raise KeyboardInterrupt

    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        run_batch(images, out, SegmentOptions(device="cpu"), scheduler=in_process_cluster.scheduler_address,
                  progress=ctrl_c_after_the_first_case)  # fmt: skip
    with open(out / SUMMARY_NAME, newline="") as handle:
        statuses = {row["case"]: row["status"] for row in csv.DictReader(handle)}
    assert set(statuses) == {"a", "b", "c"} and statuses["a"] == "done"
    assert "cancelled" in statuses.values()
    assert seen_threads[0] == 3  # decided on the worker: its cores shared by the cases its host runs at once
    # a rerun finishes the rest and skips what was done
    outcomes = run_batch(images, out, SegmentOptions(device="cpu"), scheduler=in_process_cluster.scheduler_address)
    assert {o.case: o.status for o in outcomes}["a"] == "skipped"
    assert {o.status for o in outcomes} <= {"skipped", "done"}, outcomes


def test_batch_without_dask_says_how_to_install_it(tmp_path, monkeypatch, capsys):
    import sys

    from spineinstanceseg.cli.main import main

    images = tmp_path / "images"
    images.mkdir()
    (images / "a.nii.gz").write_bytes(b"never read")
    monkeypatch.setitem(sys.modules, "dask.distributed", None)  # as if the [batch] extra were not installed
    assert main(["batch", str(images), str(tmp_path / "out"), "--device", "cpu"]) == 2
    assert "spineinstanceseg[batch]" in capsys.readouterr().err
