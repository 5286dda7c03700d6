"""`spineseg batch` on a local Dask cluster of 2 workers: killed midway, rerun, everything there exactly once; a
file that is not an image is recorded as failed while the other cases go on (one killed run and one rerun, the
two real batch processes the suite can afford)."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from spineinstanceseg.io import read_label_map, write_volume
from spineinstanceseg.phantom import generate_phantom
from spineinstanceseg.pipeline.batch import SUMMARY_NAME, find_inputs

N_CASES = 4
RAW_CT_CASE = 3


@pytest.fixture(scope="module")
def batch_folders(tmp_path_factory) -> tuple[Path, Path]:
    """Four lumbar phantoms with their semantic masks (stage 1 given: only stage 2 runs) and one broken file."""
    root = tmp_path_factory.mktemp("batch")
    images, masks = root / "images", root / "masks"
    for i in range(N_CASES):
        case = generate_phantom(100 + i, modality="ct", region="lumbar", spacing=2.0)
        image = case.image
        if i == RAW_CT_CASE:  # stored as raw scanner values (HU + 1024): its report and summary row carry a warning
            image = image.with_array(np.clip(np.round(np.asarray(image.array) + 1024), 0, None).astype(np.uint16))
        write_volume(image, images / f"case{i}.nii.gz")
        write_volume(case.semantic, masks / f"case{i}.nii.gz")
    (images / "broken.nii.gz").write_bytes(b"not an image")
    return images, masks


def _batch_command(images: Path, masks: Path, out: Path) -> list[str]:
    return [
        sys.executable, "-m", "spineinstanceseg.cli.main", "batch", str(images), str(out),
        "--mask", str(masks), "--workers", "2", "--device", "cpu",
    ]  # fmt: skip


def _reports(out: Path) -> list[Path]:
    return sorted(out.glob("*/*_report.json"))


def test_batch_killed_midway_resumes_without_duplicates_and_records_a_failing_case(batch_folders, tmp_path):
    images, masks = batch_folders
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    first = subprocess.Popen(
        _batch_command(images, masks, out), env=env, start_new_session=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while not _reports(out) and time.monotonic() < deadline and first.poll() is None:
        time.sleep(0.2)
    os.killpg(first.pid, signal.SIGKILL)  # the whole process group: client, scheduler and workers
    first.wait(timeout=60)
    finished_before = {p.parent.name for p in _reports(out)}
    assert 1 <= len(finished_before) < N_CASES, "the kill should land after the first case and before the last"

    second = subprocess.run(_batch_command(images, masks, out), env=env, capture_output=True, text=True, timeout=600)
    # The broken file fails the batch (exit code 1), after every other case was segmented or skipped.
    assert second.returncode == 1, second.stdout + second.stderr
    assert "broken" in second.stdout and "failed" in second.stdout and "could not be read" in second.stdout
    case_dirs = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert case_dirs == [f"case{i}" for i in range(N_CASES)]  # no partial or duplicated folders, none for "broken"
    assert not list(out.glob(".*"))
    with open(out / SUMMARY_NAME, newline="") as handle:
        rows = {row["case"]: row for row in csv.DictReader(handle)}
    for i in range(N_CASES):
        folder = out / f"case{i}"
        assert len(list(folder.glob("*_report.json"))) == 1
        report = json.loads((folder / f"case{i}_report.json").read_text())
        assert report["complete"] is True and len(report["vertebrae"]) >= 5
        assert read_label_map(folder / f"case{i}_instances.nii.gz").same_grid(read_label_map(masks / f"case{i}.nii.gz"))
        # skipped or done, a finished case's row counts its report's vertebrae and warnings
        row = rows[f"case{i}"]
        assert (int(row["n_vertebrae"]), int(row["n_warnings"])) == (len(report["vertebrae"]), len(report["warnings"]))
        if i == RAW_CT_CASE:
            assert any("CT stored without its rescale" in w for w in report["warnings"])
    statuses = {case: row["status"] for case, row in rows.items()}
    assert {statuses[c] for c in finished_before} == {"skipped"}
    assert {statuses[f"case{i}"] for i in range(N_CASES)} <= {"skipped", "done"}
    assert statuses["broken"] == "failed"
    assert "skipped" in second.stderr and "1 failed" in second.stderr


def test_find_inputs_rejects_empty_and_clashing_folders(tmp_path):
    from spineinstanceseg.errors import InputError

    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="holds no images"):
        find_inputs(tmp_path / "empty")
    clash = tmp_path / "clash"
    clash.mkdir()
    (clash / "a.nii.gz").write_bytes(b"x")
    (clash / "a.nrrd").write_bytes(b"x")
    with pytest.raises(InputError, match="same case name"):
        find_inputs(clash)
