"""The console helpers without freezing Slicer: a timer (here a hand-fired stand-in for ``qt.QTimer``) drives them.

``start_folder`` must return at once while the child runs, report progress from the finished cases, deliver the
summary rows when the child ends, and stop the whole child on ``cancel()``. The child is a fake ``spineseg batch``
(a script given as the child's Python) that writes case reports one by one, so no Qt and no models are needed.
"""

from __future__ import annotations

import stat
import sys
import textwrap
import time

import pytest

from spineinstanceseg.errors import SpineSegError
from spineinstanceseg.slicer import console
from spineinstanceseg.slicer import dependencies as deps

FAKE_BATCH = textwrap.dedent(
    """\
    #!{python}
    import csv, os, sys, time
    args = sys.argv[1:]  # -m spineinstanceseg.cli.main batch IN_DIR OUT_DIR [options]
    in_dir, out_dir = args[args.index("batch") + 1], args[args.index("batch") + 2]
    mode = os.environ.get("FAKE_BATCH_MODE", "ok")
    with open(os.path.join(out_dir, "pid.txt"), "w") as f:
        f.write(str(os.getpid()))
    print("fake batch starting", flush=True)
    if mode == "hang":
        time.sleep(120)
    cases = sorted(name.split(".")[0] for name in os.listdir(in_dir))
    for case in cases:
        time.sleep(0.6)
        os.makedirs(os.path.join(out_dir, case), exist_ok=True)
        with open(os.path.join(out_dir, case, case + "_report.json"), "w") as f:
            f.write("{{}}")
        print("finished " + case, flush=True)
    with open(os.path.join(out_dir, "batch_summary.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["case", "input", "status", "seconds", "n_vertebrae", "n_warnings", "error"])
        for case in cases:
            writer.writerow([case, case + ".nii.gz", "done", "0.6", "5", "0", ""])
    """
)


class FakeTimer:
    """Stand-in for qt.QTimer: records start/stop; the test fires it (Qt's event loop would)."""

    made: list[FakeTimer] = []

    def __init__(self, interval_ms: int, tick) -> None:
        self.interval_ms, self.tick, self.active, self.starts = interval_ms, tick, False, 0
        FakeTimer.made.append(self)

    def start(self) -> None:
        self.active, self.starts = True, self.starts + 1

    def stop(self) -> None:
        self.active = False

    def fire_until_stopped(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while self.active and time.monotonic() < deadline:
            self.tick()
            time.sleep(0.05)
        assert not self.active, "the run did not end"


@pytest.fixture
def folders(tmp_path):
    inputs, out = tmp_path / "images", tmp_path / "out"
    inputs.mkdir()
    out.mkdir()
    for case in ("case_a", "case_b"):
        (inputs / f"{case}.nii.gz").write_bytes(b"")
    fake = tmp_path / "fake_python"
    fake.write_text(FAKE_BATCH.format(python=sys.executable))
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    FakeTimer.made.clear()
    return inputs, out, str(fake)


def test_start_folder_returns_at_once_and_the_timer_drives_it(folders):
    inputs, out, fake = folders
    progress, done = [], []
    began = time.monotonic()
    run = console.start_folder(
        inputs, out, python=fake, timer_factory=FakeTimer, device="cpu",
        on_progress=lambda *p: progress.append(p), on_done=done.append,
    )  # fmt: skip
    assert time.monotonic() - began < 1.0 and not run.done  # the child needs > 1.2 s: nothing waited for it
    (timer,) = FakeTimer.made
    assert timer.active and timer.interval_ms == 200
    timer.fire_until_stopped()
    assert done == [run] and run.error is None
    assert [row["case"] for row in run.result] == ["case_a", "case_b"]
    assert progress[-1] == ("batch", 1.0, "2/2 cases") and run.progress == progress[-1]
    assert progress[0][1] < 1.0  # progress arrived while the child ran, not only at the end
    assert "finished case_b" in run.log_lines


def test_cancel_stops_the_child(folders, monkeypatch):
    import psutil

    inputs, out, fake = folders
    monkeypatch.setenv("FAKE_BATCH_MODE", "hang")
    run = console.start_folder(inputs, out, python=fake, timer_factory=FakeTimer)
    (timer,) = FakeTimer.made
    deadline = time.monotonic() + 30
    while not (out / "pid.txt").is_file() and time.monotonic() < deadline:
        time.sleep(0.05)
    pid = int((out / "pid.txt").read_text())
    run.cancel()
    timer.fire_until_stopped()
    assert run.done and run.error == "cancelled" and run.result is None
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    with pytest.raises(SpineSegError, match="cancelled"):
        run.wait()


def test_blocking_form_still_works_for_scripts(folders):
    inputs, out, fake = folders
    rows = console.segment_folder(inputs, out, python=fake, timeout=60)
    assert [row["status"] for row in rows] == ["done", "done"]


def test_missing_batch_packages_are_named_with_the_fix(folders, monkeypatch):
    inputs, out, fake = folders
    monkeypatch.setattr(
        deps, "check_dependencies", lambda *a, **k: deps.DependencyStatus(missing=deps.BATCH_REQUIREMENTS)
    )
    with pytest.raises(SpineSegError, match=r"dask\[distributed\].*ensure_dependencies"):
        console.start_folder(inputs, out, python=fake, timer_factory=FakeTimer)
    assert FakeTimer.made == [] and not (out / "pid.txt").exists()  # nothing was started


class FakeJob:
    def __init__(self, polls: int) -> None:
        self.polls, self.cancelled = polls, False

    def poll(self) -> bool:
        self.polls -= 1
        return self.polls > 0

    def cancel(self) -> None:
        self.cancelled = True


def test_background_run_reports_failures_and_survives_a_broken_callback():
    def broken(run):
        raise RuntimeError("display gone")

    run = console.BackgroundRun(on_done=broken, timer_factory=FakeTimer)
    run.start(FakeJob(3), finish=lambda: (_ for _ in ()).throw(SpineSegError("no spine found", fix="check")))
    FakeTimer.made[-1].fire_until_stopped()
    assert run.done and run.error.startswith("no spine found")
    assert run.poll() is False  # polling after the end is harmless


def test_start_volume_node_returns_at_once_and_puts_results_into_the_scene(tmp_path, monkeypatch):
    """The volume-node form on slicer-core with a fake pipeline child (the one of test_slicer_job)."""
    import functools

    slicer = pytest.importorskip("slicer", reason="slicer-core is not installed")
    if not hasattr(slicer, "vtkMRMLScene"):
        pytest.skip("the installed 'slicer' package is not slicer-core")
    from outputs_cases import make_image, make_result
    from test_slicer_job import FAKE, TESTING

    from spineinstanceseg.slicer.job import SegmentJob
    from spineinstanceseg.slicer.volume_nodes import volume_to_node

    script = tmp_path / "fake_segment.py"
    script.write_text(FAKE.format(testing=str(TESTING)))

    def argv(input_path, out_dir, options, *, case_name):
        return [sys.executable, str(script), str(input_path), str(out_dir), case_name, "ok"]

    monkeypatch.setattr(console, "SegmentJob", functools.partial(SegmentJob, argv_factory=argv))
    scene = slicer.vtkMRMLScene()
    volume = volume_to_node(make_image(make_result()), scene, name="patient")
    FakeTimer.made.clear()
    run = console.start_volume_node(volume, timer_factory=FakeTimer, device="cpu")
    assert not run.done and FakeTimer.made[0].active
    FakeTimer.made[0].fire_until_stopped()
    assert run.error is None and run.progress[0] == "stage2"
    assert run.result.markups.GetNumberOfControlPoints() == 3
