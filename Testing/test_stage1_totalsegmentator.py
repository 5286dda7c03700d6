"""TotalSegmentator as stage 1 (``spineseg segment --stage1 totalsegmentator``).

The end-to-end test runs TotalSegmentator's real code (its Python API, resampling to 3 mm, nnU-Net call, label
handling) against a tiny stand-in for the weights of its ``total --fast`` task, laid out where TotalSegmentator
looks for them (``Testing/data/totalsegmentator_home``, made by ``scripts/make_totalseg_fixture.py``): nothing is
downloaded, no usage statistics are sent, and any attempt to open a network connection fails the test.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from stage1_helpers import toy_case

from spineinstanceseg.cli.main import main
from spineinstanceseg.conventions import to_internal
from spineinstanceseg.errors import InputError
from spineinstanceseg.io import read_label_map, write_volume
from spineinstanceseg.metrics import evaluate_instances
from spineinstanceseg.phantom import generate_phantom
from spineinstanceseg.pipeline.options import SegmentOptions
from spineinstanceseg.semantic import CANAL, DISC, SACRUM, VERTEBRA
from spineinstanceseg.stage1 import totalseg_adapter
from spineinstanceseg.volume import Volume

FIXTURE_HOME = Path(__file__).resolve().parent / "data" / "totalsegmentator_home"
NNUNET_VARIABLES = ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")


def _write_toy_image(folder: Path) -> Path:
    image, _ = toy_case(0)
    return write_volume(image, folder / "toy.nii.gz")


# ------------------------------------------------------------------------------------------- without the package
def test_missing_package_stops_segment_with_the_fix(tmp_path, monkeypatch, capsys):
    """Without the TotalSegmentator package `segment --stage1 totalsegmentator` exits 2 with how to install it,
    and writes nothing."""
    monkeypatch.setitem(sys.modules, "totalsegmentator", None)  # find_spec -> None: as if not installed
    assert not totalseg_adapter.totalsegmentator_available()
    image = _write_toy_image(tmp_path)
    code = main(["segment", str(image), str(tmp_path / "out"), "--stage1", "totalsegmentator", "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "TotalSegmentator package is not installed" in err and "pip install TotalSegmentator" in err, err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_missing_package_stops_batch_before_any_case(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "totalsegmentator", None)
    (tmp_path / "in").mkdir()
    _write_toy_image(tmp_path / "in")
    code = main(["batch", str(tmp_path / "in"), str(tmp_path / "out"), "--stage1", "totalsegmentator"])
    assert code == 2
    assert "pip install TotalSegmentator" in capsys.readouterr().err


def test_stage1_sources_are_exclusive():
    with pytest.raises(InputError, match="--stage1 totalsegmentator and --mask"):
        SegmentOptions(stage1="totalsegmentator", mask="mask.nii.gz")
    with pytest.raises(InputError, match="--stage1-model"):
        SegmentOptions(stage1="totalsegmentator", stage1_model="model/")
    with pytest.raises(InputError, match="unknown stage-1 source"):
        SegmentOptions(stage1="spineps")
    with pytest.raises(InputError, match="unknown TotalSegmentator task"):
        SegmentOptions(stage1="totalsegmentator", totalseg_task="vertebrae_mr")
    with pytest.raises(InputError, match="only to TotalSegmentator") as err:
        SegmentOptions(totalseg_fast=True)
    assert "--stage1 totalsegmentator" in err.value.fix


def test_task_follows_the_modality():
    assert totalseg_adapter.choose_task("auto", image_is_ct=True) == "total"
    assert totalseg_adapter.choose_task("auto", image_is_ct=False) == "total_mr"
    assert totalseg_adapter.choose_task("total_mr", image_is_ct=True) == "total_mr"  # total_mr also reads CT
    with pytest.raises(InputError, match="'total' is for CT") as err:
        totalseg_adapter.choose_task("total", image_is_ct=False)
    assert "total_mr" in err.value.fix


def test_device_names_in_totalsegmentator_spelling():
    devices = [("cuda", 0), ("cuda", 2), ("cpu", None), ("mps", None)]
    assert [totalseg_adapter.device_name(t, i) for t, i in devices] == ["gpu", "gpu:2", "cpu", "mps"]


# ------------------------------------------------------------------------------------------- with the package
def test_our_tables_read_totalsegmentators_own_label_names():
    """Every spine label of TotalSegmentator's installed class maps becomes the right semantic class; organs none.
    S1 (``vertebrae_S1``) is the top of the sacrum, not a vertebra of its own for us."""
    class_map = pytest.importorskip("totalsegmentator.map_to_binary").class_map
    expected_of = {"sacrum": SACRUM, "vertebrae_S1": SACRUM, "spinal_cord": CANAL, "vertebrae": VERTEBRA,
                   "intervertebral_discs": DISC}  # fmt: skip
    for task, convention in totalseg_adapter.TASK_CONVENTIONS.items():
        names = class_map[task]
        values = np.array(sorted(names), dtype=np.int16)
        labels = Volume(values.reshape(-1, 1, 1), spacing=(1.0, 1.0, 1.0), is_label=True)
        semantic = to_internal(labels, convention).semantic.array.ravel()
        for value, got in zip(values, semantic, strict=True):
            name = names[int(value)]
            want = expected_of.get(name, VERTEBRA if name.startswith("vertebrae_") else 0)
            assert got == want, (task, value, name, got)


def test_total_for_an_mri_is_refused(tmp_path, capsys):
    pytest.importorskip("totalsegmentator")
    case = generate_phantom(5, modality="t2", region="lumbar", spacing=3.0)
    image = write_volume(case.image, tmp_path / "t2.nii.gz")
    code = main(["segment", str(image), str(tmp_path / "out"), "--stage1", "totalsegmentator", "--totalseg-task",
                 "total", "--device", "cpu"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "'total' is for CT" in err and "--totalseg-task total_mr" in err, err


@pytest.fixture
def totalseg_home(tmp_path, monkeypatch):
    """TotalSegmentator's home folder with the stand-in model, statistics off; the network is closed."""
    pytest.importorskip("totalsegmentator")
    home = tmp_path / "totalseg_home"
    shutil.copytree(FIXTURE_HOME / "nnunet", home / "nnunet")
    config = {"totalseg_id": "totalseg_spineseg_test", "send_usage_stats": False, "prediction_counter": 0,
              "statistics_disclaimer_shown": True}  # fmt: skip
    (home / "config.json").write_text(json.dumps(config), encoding="utf-8")
    monkeypatch.setenv("TOTALSEG_HOME_DIR", str(home))
    monkeypatch.delenv("TOTALSEG_WEIGHTS_PATH", raising=False)
    for name in NNUNET_VARIABLES:
        monkeypatch.delenv(name, raising=False)

    def no_network(self, address, *args, **kwargs):
        if self.family in (socket.AF_INET, socket.AF_INET6):
            raise AssertionError(f"TotalSegmentator tried to reach {address}")
        return real_connect(self, address, *args, **kwargs)

    real_connect = socket.socket.connect
    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket.socket, "connect_ex", no_network)
    return home


@pytest.fixture
def stage1_calls(monkeypatch, tmp_path):
    """Records every TotalSegmentator run of the source: its raw label map and the semantic mask made of it."""
    from spineinstanceseg.stage1 import sources

    calls: list[dict] = []
    real_run, real_predict = sources.run_totalsegmentator, sources.TotalSegmentatorSource.predict

    def run(image, output, **kwargs):
        real_run(image, output, **kwargs)
        kept = tmp_path / f"totalseg_labels_{len(calls)}.nii.gz"
        shutil.copy(output, kept)
        calls.append({"labels": kept, **kwargs})

    def predict(self, image, *, progress):
        mask, warnings = real_predict(self, image, progress=progress)
        calls[-1].update(mask=mask, warnings=warnings)
        return mask, warnings

    monkeypatch.setattr(sources, "run_totalsegmentator", run)
    monkeypatch.setattr(sources.TotalSegmentatorSource, "predict", predict)
    return calls


@pytest.mark.slow
def test_segment_with_totalsegmentator(totalseg_home, stage1_calls, tmp_path, capsys):
    """`spineseg segment --stage1 totalsegmentator --totalseg-fast` on a lumbar CT phantom: TotalSegmentator runs
    offline on the stand-in model, its labels become our classes, and stage 2 splits the vertebrae."""
    case = generate_phantom(31337, modality="ct", region="lumbar", spacing=2.0)
    image = write_volume(case.image, tmp_path / "ct.nii.gz")
    models = totalseg_home / "nnunet" / "results"
    before = sorted(p.relative_to(models) for p in models.rglob("*"))
    start = time.perf_counter()
    code = main(["segment", str(image), str(tmp_path / "out"), "--stage1", "totalsegmentator", "--totalseg-fast",
                 "--device", "cpu"])  # fmt: skip
    seconds = time.perf_counter() - start
    captured = capsys.readouterr()
    assert code == 0, captured.err
    print(f"\nsegment --stage1 totalsegmentator --totalseg-fast: {seconds:.1f} s")

    # TotalSegmentator ran once, with the task for a CT, and wrote labels in its `total` values
    (call,) = stage1_calls
    assert (call["task"], call["fast"], call["device"]) == ("total", True, "cpu")
    raw = read_label_map(call["labels"]).array
    values = {int(v) for v in np.unique(raw)} - {0}
    print(f"TotalSegmentator labels: {sorted(values)}")
    assert 29 in values  # the stand-in's vertebra label (vertebrae_L3)
    # every TotalSegmentator label became the class our `totalseg_total` table gives it, voxel for voxel
    expected = {25: SACRUM, 26: SACRUM, 79: CANAL, **{v: VERTEBRA for v in range(27, 51)}}
    mask = call["mask"].array
    assert call["mask"].shape == raw.shape
    for value in values:
        agree = np.mean(mask[raw == value] == expected.get(value, 0))
        assert agree > 0.99, (value, agree)
    truth = case.semantic.array
    recall = np.count_nonzero((mask == VERTEBRA) & (truth == VERTEBRA)) / np.count_nonzero(truth == VERTEBRA)
    assert recall > 0.8, recall

    out = tmp_path / "out" / "ct"
    report = json.loads((out / "ct_report.json").read_text())
    assert (
        report["stage1_source"].startswith("TotalSegmentator 2.")
        and "task total (fast, 3 mm)" in report["stage1_source"]
    ), report["stage1_source"]
    assert report["models"]["stage1"]["name"] == "TotalSegmentator total fast"
    scores = evaluate_instances(read_label_map(out / "ct_instances.nii.gz"), case.instances)
    print(f"instances: tp {scores.tp} fp {scores.fp} fn {scores.fn}, Dice {scores.mean_dice_matched:.3f}")
    # The stand-in labels the phantom's bone, sacrum included, as vertebra (see its README), so stage 2 also makes
    # instances of the sacrum and no level is counted from it: what is checked is that the lumbar vertebrae come out.
    assert scores.tp >= 4, scores

    # offline: nothing downloaded (the network was closed), the model folder is as it was, statistics stay off
    assert sorted(p.relative_to(models) for p in models.rglob("*")) == before
    assert json.loads((totalseg_home / "config.json").read_text())["send_usage_stats"] is False
    # TotalSegmentator's nnU-Net folder variables were set for the call only
    assert not any(name in os.environ for name in NNUNET_VARIABLES)
