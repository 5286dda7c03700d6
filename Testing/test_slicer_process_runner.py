"""The background runner of the Slicer module, driven by a fake pipeline process (no Slicer needed).

The fake prints progress lines like ``spineseg segment --progress-lines``, writes a file into the job's temp
folder, starts a grandchild and then exits or hangs, so progress parsing, Cancel (whole process tree) and the
removal of temporary files are checked on real processes.
"""

from __future__ import annotations

import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from spineinstanceseg.slicer.process_runner import ProcessRunner

FAKE_PIPELINE = textwrap.dedent(
    """
    import os, subprocess, sys, time
    from spineinstanceseg.progress import format_progress_line

    job_dir, mode = sys.argv[1], sys.argv[2]
    grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    with open(os.path.join(job_dir, "pids.txt"), "w") as f:
        f.write(f"{os.getpid()} {grandchild.pid}")
    print("fake pipeline starting", flush=True)
    print(format_progress_line("stage1", 0.25, "stage 1: patch 1/4"), flush=True)
    print("a warning on stderr", file=sys.stderr, flush=True)
    print(format_progress_line("stage2", 0.75, "windows 3/4"), flush=True)
    with open(os.path.join(job_dir, "result.txt"), "w") as f:
        f.write("segments")
    if mode == "hang":
        time.sleep(120)
    grandchild.kill()
    grandchild.wait()
    print("fake pipeline done", flush=True)
    sys.exit(0 if mode == "ok" else 3)
    """
)


class Recorder:
    def __init__(self, job_dir: Path) -> None:
        self.job_dir = job_dir
        self.progress: list[tuple[str, float, str]] = []
        self.logs: list[str] = []
        self.finished: list[int] = []
        self.result_seen_in_on_finished: str | None = None

    def on_progress(self, step: str, fraction: float, message: str) -> None:
        self.progress.append((step, fraction, message))

    def on_log(self, line: str) -> None:
        self.logs.append(line)

    def on_finished(self, code: int) -> None:
        self.finished.append(code)
        result = self.job_dir / "result.txt"
        self.result_seen_in_on_finished = result.read_text() if result.exists() else None


def _runner(tmp_path: Path, mode: str) -> tuple[ProcessRunner, Recorder, Path]:
    script = tmp_path / "fake_pipeline.py"
    script.write_text(FAKE_PIPELINE)
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    recorder = Recorder(job_dir)
    runner = ProcessRunner(
        [sys.executable, str(script), str(job_dir), mode],
        temp_dir=job_dir,
        on_progress=recorder.on_progress,
        on_log=recorder.on_log,
        on_finished=recorder.on_finished,
    )
    return runner, recorder, job_dir


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_progress_lines_become_callbacks_and_temp_dir_is_removed(tmp_path):
    runner, rec, job_dir = _runner(tmp_path, "ok")
    runner.start()
    assert runner.wait(timeout=60) == 0
    assert rec.progress == [("stage1", 0.25, "stage 1: patch 1/4"), ("stage2", 0.75, "windows 3/4")]
    # Other lines (stdout and stderr) go to the log, progress lines do not.
    assert rec.logs == ["fake pipeline starting", "a warning on stderr", "fake pipeline done"]
    assert rec.finished == [0]
    assert rec.result_seen_in_on_finished == "segments"  # outputs are readable in on_finished ...
    assert not job_dir.exists()  # ... and removed right after
    assert not runner.running and not runner.poll()


def test_failure_is_reported_and_temp_dir_is_removed(tmp_path):
    runner, rec, job_dir = _runner(tmp_path, "fail")
    runner.start()
    assert runner.wait(timeout=60) == 3
    assert rec.finished == [3]
    assert not job_dir.exists()


def test_cancel_kills_child_and_grandchild_without_blocking(tmp_path):
    runner, rec, job_dir = _runner(tmp_path, "hang")
    started = time.monotonic()
    runner.start()
    assert time.monotonic() - started < 2.0, "start() must return at once"
    deadline = time.monotonic() + 60
    while len(rec.progress) < 2 and time.monotonic() < deadline:
        runner.poll()
        time.sleep(0.02)
    assert [p[0] for p in rec.progress] == ["stage1", "stage2"]
    assert runner.running
    child_pid, grandchild_pid = (int(p) for p in (job_dir / "pids.txt").read_text().split())
    assert psutil.pid_exists(grandchild_pid)

    runner.cancel()
    code = runner.wait(timeout=30)
    assert code is not None and code != 0
    assert runner.cancelled
    assert rec.finished == [code]
    assert _gone(child_pid) and _gone(grandchild_pid)
    assert not job_dir.exists()
    assert time.monotonic() - started < 30


def test_child_that_cannot_start_leaves_no_temp_dir(tmp_path):
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    (job_dir / "input.nrrd").write_bytes(b"x")
    runner = ProcessRunner([str(tmp_path / "no-such-python")], temp_dir=job_dir)
    with pytest.raises(OSError):
        runner.start()
    assert not job_dir.exists()
