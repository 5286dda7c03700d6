"""A "Segment spine" job end to end with slicer-core and a fake pipeline process (the real one is the CLI).

The fake child reads the input the job wrote, checks it is the volume's world grid, prints progress lines and
writes a case folder with the real output writer; the job must then put segments, centroids and confidences
into the scene and remove its temporary folder, whatever the outcome.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from outputs_cases import make_image, make_result, rotation

from spineinstanceseg.pipeline.options import SegmentOptions

slicer = pytest.importorskip("slicer", reason="slicer-core (MRML without the application) is not installed")
if not hasattr(slicer, "vtkMRMLScene"):
    pytest.skip("the installed 'slicer' package is not slicer-core", allow_module_level=True)

from spineinstanceseg.slicer.job import SegmentJob, child_environment, read_case_result, segment_argv  # noqa: E402
from spineinstanceseg.slicer.volume_nodes import numpy_to_vtk_matrix, volume_to_node  # noqa: E402

TESTING = Path(__file__).resolve().parent

FAKE = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {testing!r})
    from outputs_cases import make_result
    from spineinstanceseg.io import read_volume
    from spineinstanceseg.outputs import write_all
    from spineinstanceseg.progress import format_progress_line

    input_path, out_dir, case, mode = sys.argv[1:5]
    result = make_result()
    image = read_volume(input_path)
    if not image.same_grid(result.instances):
        print("error: the input is not on the expected world grid", flush=True)
        sys.exit(2)
    print(format_progress_line("stage1", 0.3, "stage 1"), flush=True)
    if mode == "hang":
        import time
        time.sleep(120)
    if mode == "fail":
        print("spineseg: error: no spine found: stage 1 found no vertebra", file=sys.stderr, flush=True)
        sys.exit(1)
    print(format_progress_line("stage2", 0.9, "stage 2"), flush=True)
    write_all(result, out_dir, case_name=case, exports=("nifti", "markups", "csv", "report"), label_format=".nrrd")
    print("done", flush=True)
    """
)


@pytest.mark.parametrize(
    ("mirroring", "bone_boundary", "pitch_search"), [(None, True, True), (True, False, True), (False, True, False)]
)
def test_argv_is_understood_by_the_segment_cli(tmp_path, mirroring, bone_boundary, pitch_search):
    from spineinstanceseg.cli import segment as segment_cli
    from spineinstanceseg.cli.segment_options import options_from_args

    options = SegmentOptions(
        stage1_model="/models/nnunet",
        folds=(0, 2),
        stage1_mirroring=mirroring,
        bone_boundary=bone_boundary,
        pitch_search=pitch_search,
        stage2_model="/models/stage2",
        device="cpu",
        anchor="C2",
        with_t13=True,
        exports=("nifti", "seg.nrrd", "markups", "csv", "preview", "report", "stl"),
        label_format=".nrrd",
        batch_size=2,
    )
    argv = segment_argv(tmp_path / "in.nrrd", tmp_path / "out", options, case_name="case1", python="py")
    assert argv[:4] == ["py", "-m", "spineinstanceseg.cli.main", "segment"]
    parser = argparse.ArgumentParser()
    segment_cli.add_arguments(parser)
    args = parser.parse_args(argv[4:])
    assert args.progress_lines and args.case_name == "case1" and args.input == str(tmp_path / "in.nrrd")
    assert options_from_args(args) == options


@pytest.mark.parametrize("task", ["auto", "total_mr"])
def test_totalsegmentator_argv_is_understood_by_the_segment_cli(tmp_path, task):
    from spineinstanceseg.cli import segment as segment_cli
    from spineinstanceseg.cli.segment_options import options_from_args

    options = SegmentOptions(stage1="totalsegmentator", totalseg_task=task, totalseg_fast=True, device="cpu")
    argv = segment_argv(tmp_path / "in.nrrd", tmp_path / "out", options, case_name="case1", python="py")
    parser = argparse.ArgumentParser()
    segment_cli.add_arguments(parser)
    assert options_from_args(parser.parse_args(argv[4:])) == options


def test_child_environment_puts_the_library_first():
    env = child_environment({"PYTHONPATH": "/elsewhere"})
    first = env["PYTHONPATH"].split(":")[0]
    assert (Path(first) / "spineinstanceseg" / "__init__.py").is_file()
    assert env["PYTHONPATH"].endswith("/elsewhere")


@pytest.fixture
def scene_and_volume():
    result = make_result()
    scene = slicer.vtkMRMLScene()
    matrix = np.eye(4)
    matrix[:3, :3] = rotation((0.0, 1.0, 0.0), 15.0)
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "T")
    transform.SetMatrixTransformToParent(numpy_to_vtk_matrix(matrix))
    # The node stores local coordinates; its world grid (what the job exports) is make_result()'s grid.
    volume_node = volume_to_node(make_image(result), scene, name="patient", parent_transform_id=transform.GetID())
    yield scene, volume_node, result


def _fake_factory(tmp_path: Path, mode: str, seen: dict):
    script = tmp_path / "fake_segment.py"
    script.write_text(FAKE.format(testing=str(TESTING)))

    def factory(input_path, out_dir, options, *, case_name):
        seen["options"] = options
        seen["temp_dir"] = Path(input_path).parent
        seen["mask_exists"] = bool(options.mask) and Path(options.mask).is_file()
        return [sys.executable, str(script), str(input_path), str(out_dir), case_name, mode]

    return factory


def test_job_puts_results_into_the_scene_and_cleans_up(tmp_path, scene_and_volume):
    scene, volume_node, result = scene_and_volume
    seen: dict = {}
    progress, done = [], []
    job = SegmentJob(
        volume_node,
        SegmentOptions(device="cpu"),
        on_progress=lambda step, fraction, message: progress.append((step, fraction)),
        on_done=lambda nodes, error: done.append((nodes, error)),
        argv_factory=_fake_factory(tmp_path, "ok", seen),
    )
    job.start()
    assert job.wait(timeout=120) == 0
    assert progress == [("stage1", 0.3), ("stage2", 0.9)]
    assert len(done) == 1 and done[0][1] is None, done
    nodes = done[0][0]
    segmentation = nodes.segmentation.GetSegmentation()
    names = [segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())]
    assert names[:3] == ["L3", "L4", "L5"] and "Spinal canal" in names
    assert nodes.markups.GetNumberOfControlPoints() == 3
    assert nodes.segmentation.GetTransformNodeID() == volume_node.GetTransformNodeID()
    assert not seen["temp_dir"].exists()
    assert nodes.table.GetTable().GetNumberOfRows() == 3


def test_failed_run_reports_the_error_and_cleans_up(tmp_path, scene_and_volume):
    scene, volume_node, _ = scene_and_volume
    seen: dict = {}
    done = []
    n_before = scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode")
    job = SegmentJob(
        volume_node,
        SegmentOptions(),
        on_done=lambda nodes, error: done.append((nodes, error)),
        argv_factory=_fake_factory(tmp_path, "fail", seen),
    )
    job.start()
    assert job.wait(timeout=120) == 1
    assert done == [(None, "spineseg: error: no spine found: stage 1 found no vertebra")]
    assert scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode") == n_before
    assert not seen["temp_dir"].exists()


def test_cancel_ends_the_job_without_results(tmp_path, scene_and_volume):
    import time

    scene, volume_node, _ = scene_and_volume
    seen: dict = {}
    progress, done = [], []
    job = SegmentJob(
        volume_node,
        SegmentOptions(),
        on_progress=lambda step, fraction, message: progress.append(step),
        on_done=lambda nodes, error: done.append((nodes, error)),
        argv_factory=_fake_factory(tmp_path, "hang", seen),
    )
    job.start()
    deadline = time.monotonic() + 60
    while not progress and time.monotonic() < deadline:
        job.poll()
        time.sleep(0.05)
    assert progress == ["stage1"] and job.running
    job.cancel()
    assert job.wait(timeout=30) not in (None, 0)
    assert done == [(None, "cancelled")]
    assert not job.running and not seen["temp_dir"].exists()


def test_existing_labelmap_is_passed_as_the_stage1_mask(tmp_path, scene_and_volume):
    scene, volume_node, result = scene_and_volume
    mask_node = volume_to_node(result.semantic, scene, name="semantic mask")
    seen: dict = {}
    captured = {}

    def factory(input_path, out_dir, options, *, case_name):
        from spineinstanceseg.io import read_label_map

        captured["mask"] = read_label_map(options.mask)
        return _fake_factory(tmp_path, "ok", seen)(input_path, out_dir, options, case_name=case_name)

    job = SegmentJob(volume_node, SegmentOptions(), mask_node=mask_node, argv_factory=factory)
    job.start()
    assert job.wait(timeout=120) == 0
    assert seen["mask_exists"] and seen["options"].mask_convention == "semantic"
    np.testing.assert_array_equal(captured["mask"].array, result.semantic.array)
    assert not seen["temp_dir"].exists()


def test_read_case_result_round_trip(tmp_path):
    from spineinstanceseg.outputs import write_all

    result = make_result()
    write_all(result, tmp_path, case_name="c", exports=("nifti", "csv", "report"), label_format=".nrrd")
    back = read_case_result(tmp_path / "c")
    assert [v.name for v in back.vertebrae] == [v.name for v in result.vertebrae]
    np.testing.assert_allclose(
        [v.centroid_lps for v in back.vertebrae], [v.centroid_lps for v in result.vertebrae], atol=1e-3
    )
    assert back.instances.same_grid(result.instances)
    np.testing.assert_array_equal(back.instances.array, result.instances.array)


# ------------------------------------------------------------------ the child's Python
def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n")
    return path


def test_python_of_the_running_slicer_is_preferred(tmp_path, monkeypatch):
    from spineinstanceseg.slicer import job as job_module
    from spineinstanceseg.slicer.job import python_executable

    name = "PythonSlicer.exe" if sys.platform == "win32" else "PythonSlicer"
    own = _touch(tmp_path / "Slicer-5.12" / "bin" / name)
    on_path = str(_touch(tmp_path / "Slicer-5.6" / "bin" / name))  # another installation, first on PATH
    which = {"PythonSlicer": on_path}.get
    # Inside Slicer: the running application's own PythonSlicer, not the one on PATH.
    assert python_executable(slicer_home=own.parents[1], executable="/x/bin/Slicer", which=which) == str(own)
    monkeypatch.setattr(job_module, "running_slicer_home", lambda: str(own.parents[1]))
    assert python_executable(which=which) == str(own)  # default: asks slicer.app.slicerHome
    # sys.executable's own PythonSlicer (Slicer sets sys.executable to it; PythonSlicer's interpreter sits beside)
    beside = _touch(tmp_path / "app" / "bin" / name)
    real = str(beside.with_name("python-real"))
    assert python_executable(slicer_home=None, executable=real, which=which) == str(beside)
    # Outside Slicer: this interpreter (it has the library), never a PythonSlicer found on PATH.
    assert python_executable(slicer_home=None, executable="/venv/bin/python", which=which) == "/venv/bin/python"
    # Inside Slicer when neither exists: PATH is the last resort.
    assert python_executable(slicer_home=tmp_path / "empty", executable="/x/Slicer", which=which) == on_path


# ------------------------------------------------------------------ cancel while the case is being written
FAKE_WRITER = textwrap.dedent(
    """
    import signal, sys, time
    sys.path.insert(0, {testing!r})
    from outputs_cases import make_result
    from spineinstanceseg.outputs import write_all
    from spineinstanceseg.progress import format_progress_line

    out_dir, case, mode = sys.argv[1:4]
    if mode == "graceful":  # like the CLI: SIGTERM unwinds, the atomic writer removes its temporary folder
        def unwind(signum, frame):
            raise KeyboardInterrupt
        signal.signal(signal.SIGTERM, unwind)

    def progress(step, fraction, message):
        print(format_progress_line(step, fraction, message), flush=True)
        if "csv" in message:  # half-way through the files
            if mode == "stuck":  # busy in native code: SIGTERM has no effect until it returns
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
            time.sleep(120)

    write_all(make_result(), out_dir, case_name=case, exports=("nifti", "markups", "csv", "report"),
              label_format=".nrrd", progress=progress)
    """
)


@pytest.mark.parametrize("mode", ["graceful", "stuck"])
def test_cancel_while_writing_leaves_no_case_and_no_partial_folder(tmp_path, scene_and_volume, mode):
    """Cancel during the writing step: the progress showed it, and ``out_dir`` holds neither the case folder nor a
    hidden partial one, also when the child had to be killed (before, the partial folder stayed in out_dir)."""
    import time

    _, volume_node, _ = scene_and_volume
    script = tmp_path / "fake_writer.py"
    script.write_text(FAKE_WRITER.format(testing=str(TESTING)))
    out_dir = tmp_path / "out"
    (out_dir / "earlier_case").mkdir(parents=True)  # someone else's results stay
    progress, done = [], []
    job = SegmentJob(
        volume_node,
        SegmentOptions(),
        out_dir=out_dir,
        case_name="patient",
        on_progress=lambda step, fraction, message: progress.append((step, message)),
        on_done=lambda nodes, error: done.append(error),
        argv_factory=lambda i, o, options, *, case_name: [sys.executable, str(script), str(o), case_name, mode],
        cancel_grace_s=1.0,
    )
    job.start()
    deadline = time.monotonic() + 60
    while not any("csv" in message for _, message in progress) and time.monotonic() < deadline:
        job.poll()
        time.sleep(0.05)
    assert ("writing outputs", "writing nifti") in progress
    assert any(p.name.startswith(".patient.partial-") for p in out_dir.iterdir()), "not writing yet?"
    job.cancel()
    assert job.wait(timeout=30) not in (None, 0)
    assert done == ["cancelled"]
    assert sorted(p.name for p in out_dir.iterdir()) == ["earlier_case"]
