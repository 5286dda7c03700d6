"""write_all: a complete case folder with the documented file names, or nothing at all."""

from __future__ import annotations

import json

import numpy as np
import pytest
from outputs_cases import make_image, make_result

from spineinstanceseg.errors import CancelledError, InputError
from spineinstanceseg.io import read_label_map
from spineinstanceseg.outputs import OUTPUT_KINDS, write_all
from spineinstanceseg.outputs import writer as writer_module
from spineinstanceseg.progress import CancelToken


def test_default_outputs(tmp_path):
    result = make_result()
    paths = write_all(result, tmp_path, case_name="sub-01", image=make_image(result), inputs={"image": "in.nii.gz"})
    case = tmp_path / "sub-01"
    expected = {
        "instances": case / "sub-01_instances.nii.gz",
        "semantic": case / "sub-01_semantic.nii.gz",
        "seg.nrrd": case / "sub-01.seg.nrrd",
        "markups": case / "sub-01_centroids.mrk.json",
        "csv": case / "sub-01_centroids.csv",
        "preview": case / "sub-01_preview.png",
        "report": case / "sub-01_report.json",
    }
    assert paths == expected
    assert all(p.is_file() and p.stat().st_size > 0 for p in paths.values())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sub-01"]  # no temporary folder left
    for kind, volume in (("instances", result.instances), ("semantic", result.semantic)):
        back = read_label_map(paths[kind])
        assert back.same_grid(volume, tol=1e-6), back.geometry_differences(volume)
        np.testing.assert_array_equal(back.array, volume.array)

    report = json.loads(paths["report"].read_text())
    assert report["complete"] is True
    assert report["inputs"] == {"image": "in.nii.gz"}
    assert report["naming_rule"] == result.naming_rule and report["stage1_source"] == result.stage1_source
    assert report["models"]["stage2"]["sha256"] == "0" * 64
    assert set(report["versions"]) >= {"spineinstanceseg", "torch", "nnunetv2", "SimpleITK", "numpy", "python"}
    assert report["timings_s"] == result.timings and report["warnings"] == list(result.warnings)
    assert [v["name"] for v in report["vertebrae"]] == ["L3", "L4", "L5"]
    assert [v["confidence"] for v in report["vertebrae"]] == [0.97, 0.91, 0.83]
    listed = {kind: case / rel for kind, rel in report["outputs"].items()}
    assert listed == {k: p for k, p in expected.items() if k != "report"}


def test_all_outputs_including_stl_and_nrrd(tmp_path):
    result = make_result(levels_known=False)
    paths = write_all(result, tmp_path, case_name="c", exports=OUTPUT_KINDS, label_format=".nii.gz")
    case = tmp_path / "c"
    assert paths["instances_nrrd"] == case / "c_instances.nrrd"
    assert read_label_map(paths["instances_nrrd"]).same_grid(result.instances, tol=1e-6)
    assert paths["stl"] == case / "stl"
    assert sorted(p.name for p in (case / "stl").iterdir()) == ["Vertebra_1.stl", "Vertebra_2.stl", "Vertebra_3.stl"]
    assert all(paths[f"stl:Vertebra {k}"].stat().st_size > 84 for k in (1, 2, 3))


def test_nrrd_label_format(tmp_path):
    result = make_result()
    paths = write_all(result, tmp_path, case_name="c", exports=("nifti", "nrrd", "report"), label_format=".nrrd")
    assert paths["instances"] == tmp_path / "c" / "c_instances.nrrd"
    assert "instances_nrrd" not in paths  # the label maps are NRRD already: no duplicate
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["c_instances.nrrd", "c_report.json",
                                                                  "c_semantic.nrrd"]  # fmt: skip


def test_failure_midway_leaves_nothing_and_keeps_the_old_case(tmp_path, monkeypatch):
    result = make_result()
    first = write_all(result, tmp_path, case_name="c", exports=("nifti", "report"))
    before = {p.name: p.read_bytes() for p in (tmp_path / "c").iterdir()}

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(writer_module, "save_preview", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        write_all(result, tmp_path, case_name="c")
    with pytest.raises(RuntimeError):
        write_all(result, tmp_path, case_name="new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]  # no "new", no hidden partial folders
    assert {p.name: p.read_bytes() for p in (tmp_path / "c").iterdir()} == before
    assert first["report"].exists()


def test_cancel_leaves_nothing(tmp_path):
    token = CancelToken()
    seen = []

    def progress(step, fraction, message):
        seen.append(message)
        if "seg.nrrd" in message:
            token.cancel()

    with pytest.raises(CancelledError):
        write_all(make_result(), tmp_path, case_name="c", progress=progress, cancel=token)
    assert list(tmp_path.iterdir()) == []
    assert any("seg.nrrd" in m for m in seen)


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"exports": ("nifti", "vtk")}, "unknown output kind"),
        ({"label_format": ".png"}, "unsupported label map format"),
        ({"case_name": "../x"}, "invalid case name"),
    ],
)
def test_bad_options_are_input_errors(tmp_path, kwargs, problem):
    options = {"case_name": "c", **kwargs}
    with pytest.raises(InputError, match=problem):
        write_all(make_result(), tmp_path, **options)
    assert list(tmp_path.iterdir()) == []


def test_report_is_written_after_every_other_file(tmp_path, monkeypatch):
    real = writer_module.write_report
    seen = {}

    def spy(result, path, **kwargs):
        seen["others"] = sorted(p.name for p in path.parent.iterdir())
        return real(result, path, **kwargs)

    monkeypatch.setattr(writer_module, "write_report", spy)
    paths = write_all(make_result(), tmp_path, case_name="c", exports=OUTPUT_KINDS)
    expected = sorted(p.name for kind, p in paths.items() if kind != "report" and not kind.startswith("stl:"))
    assert seen["others"] == expected


def test_empty_result_still_gives_a_complete_case(tmp_path):
    full = make_result()
    empty = full.__class__(
        instances=full.instances.with_array(np.zeros(full.instances.shape, np.uint8)),
        semantic=full.semantic.with_array(np.zeros(full.instances.shape, np.uint8)),
        vertebrae=(),
        naming_rule="levels not determined",
        stage1_source="test",
        warnings=("no spine found",),
    )
    paths = write_all(empty, tmp_path, case_name="c", exports=OUTPUT_KINDS)
    report = json.loads(paths["report"].read_text())
    assert report["complete"] is True and report["vertebrae"] == [] and report["warnings"] == ["no spine found"]
    assert json.loads(paths["markups"].read_text())["markups"][0]["controlPoints"] == []
    assert list(paths["stl"].iterdir()) == []


def test_library_outputs_do_not_import_slicer_vtk_or_torch():
    import subprocess
    import sys

    code = (
        "import sys, spineinstanceseg.outputs; "
        "print(sorted(m for m in ('slicer', 'vtk', 'torch', 'qt') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
