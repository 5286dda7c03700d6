"""One device policy: names, resolution, the message and exit code of an unusable device, model caches keyed on
the resolved device, and a per-call CPU fallback when a GPU runs out of memory (both stages).

This machine has no GPU: every CUDA path here runs against a mocked ``torch.cuda`` (or a model that pretends
its device is ``cuda`` while its weights are on the CPU).
"""

from __future__ import annotations

import json
import subprocess
import sys
import types

import numpy as np
import pytest
import torch

from spineinstanceseg.cli.main import main
from spineinstanceseg.devices import ResolvedDevice, is_out_of_memory, parse_device, resolve_device
from spineinstanceseg.errors import InputError
from spineinstanceseg.examples import example_case
from spineinstanceseg.pipeline import models as pipeline_models
from spineinstanceseg.pipeline.options import SegmentOptions
from spineinstanceseg.stage2 import model as stage2_model
from spineinstanceseg.volume import Volume

OOM = "CUDA out of memory. Tried to allocate 2.00 GiB"


@pytest.fixture
def fake_gpus(monkeypatch):
    """Two pretend CUDA GPUs (torch.cuda mocked; nothing runs on them)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=None: f"Fake GPU {index}")


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def test_device_names_are_checked_without_importing_torch():
    code = (
        "import sys\n"
        "from spineinstanceseg.devices import parse_device\n"
        "assert parse_device('CUDA:1') == ('cuda', 1) and parse_device('auto') == ('auto', None)\n"
        "from spineinstanceseg.cli.main import main\n"
        "try:\n    main(['--version'])\nexcept SystemExit:\n    pass\n"
        "assert 'torch' not in sys.modules, 'spineseg --version imported torch'\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    for bad in ("gpu", "cuda:x", "cpu:0", "mps:1", ""):
        with pytest.raises(InputError, match="use auto, cpu, cuda, cuda:N"):
            parse_device(bad)
    assert SegmentOptions(device="cuda:1").device == "cuda:1"
    with pytest.raises(InputError, match="unknown device 'gpu'"):
        SegmentOptions(device="gpu")


def test_auto_and_cuda_resolve_to_one_numbered_gpu(fake_gpus):
    auto, cuda, second = resolve_device("auto"), resolve_device("cuda"), resolve_device("cuda:1")
    assert auto.name == cuda.name == "cuda:0" and second.name == "cuda:1"
    assert auto.describe() == "cuda:0 (Fake GPU 0; chosen by auto)"
    assert resolve_device(auto) is auto and resolve_device(torch.device("cuda:1")).name == "cuda:1"
    with pytest.raises(InputError) as err:
        resolve_device("cuda:2")
    assert "device 'cuda:2' is not available" in str(err.value) and "cuda:0 to cuda:1" in str(err.value)


def test_unusable_devices_say_why_and_what_to_do(no_gpu, monkeypatch):
    assert resolve_device("auto").name == "cpu" and resolve_device("cpu") == ResolvedDevice("cpu", requested="cpu")
    with pytest.raises(InputError) as err:
        resolve_device("cuda")
    text = str(err.value)
    assert text.startswith("device 'cuda' is not available: ") and "Fix: run on the CPU with --device cpu" in text
    monkeypatch.setattr(torch.version, "cuda", None)
    with pytest.raises(InputError, match="built without CUDA support"):
        resolve_device("cuda:0")
    fake_mps = types.SimpleNamespace(is_built=lambda: True, is_available=lambda: False)
    monkeypatch.setattr(torch.backends, "mps", fake_mps)
    with pytest.raises(InputError, match="device 'mps' is not available: MPS needs an Apple-silicon Mac"):
        resolve_device("mps")


def test_cuda_without_a_gpu_is_the_same_error_and_exit_2_with_and_without_mask(no_gpu, tmp_path, capsys):
    case = example_case()
    out = tmp_path / "out"
    messages = []
    for extra in ([], ["--mask", str(case.semantic)]):
        assert main(["segment", str(case.image), str(out), "--device", "cuda", *extra]) == 2
        messages.append(capsys.readouterr().err.strip())
    assert messages[0] == messages[1]
    assert messages[0].startswith("spineseg: error: device 'cuda' is not available: ")
    assert not out.exists()  # nothing was read or written
    with pytest.raises(SystemExit) as usage:
        main(["segment", str(case.image), str(out), "--device", "gpu"])
    assert usage.value.code == 2 and "unknown device 'gpu'" in capsys.readouterr().err


def test_model_cache_keys_on_the_resolved_device(fake_gpus, monkeypatch):
    loaded = []

    def fake_bundled(device):
        loaded.append(resolve_device(device).name)
        return object()

    monkeypatch.setattr(stage2_model, "load_bundled_model", fake_bundled)
    pipeline_models.clear_model_cache()
    try:
        first = pipeline_models.load_stage2(SegmentOptions(device="auto"))
        assert pipeline_models.load_stage2(SegmentOptions(device="cuda")) is first
        assert pipeline_models.load_stage2(SegmentOptions(device="cuda:0")) is first
        assert pipeline_models.load_stage2(SegmentOptions(device="cuda:1")) is not first
        assert pipeline_models.load_stage2(SegmentOptions(device="cpu")) is not first
        assert loaded == ["cuda:0", "cuda:1", "cpu"]
    finally:
        pipeline_models.clear_model_cache()


def test_out_of_memory_is_recognised():
    assert is_out_of_memory(torch.OutOfMemoryError(OOM))
    assert is_out_of_memory(RuntimeError("MPS backend out of memory (MPS allocated: 8 GB)"))
    assert not is_out_of_memory(RuntimeError("shape mismatch")) and not is_out_of_memory(ValueError(OOM))


def _pretend_gpu_stage2(model, monkeypatch, calls: list[str]) -> None:
    """The model says it is on cuda; its first GPU call runs out of memory, later GPU calls run on the CPU."""
    model.device = torch.device("cuda")
    real = stage2_model.Stage2Model._forward

    def flaky(network, chunk, device):
        calls.append(device.type)
        if device.type == "cuda":
            if calls.count("cuda") == 1:
                raise torch.OutOfMemoryError(OOM)
            device = torch.device("cpu")  # the pretend GPU computes on the CPU
        return real(network, chunk, device)

    monkeypatch.setattr(model, "_forward", flaky)


def test_stage2_out_of_memory_falls_back_for_one_call_and_reaches_the_report(small_example, tmp_path, monkeypatch):
    from spineinstanceseg.pipeline import segment_file as segment_file_module

    model = stage2_model.load_bundled_model(device="cpu")
    network = model.network
    calls: list[str] = []
    _pretend_gpu_stage2(model, monkeypatch, calls)
    monkeypatch.setattr(segment_file_module, "load_stage2", lambda options: model)
    case = small_example  # the size of the spine does not matter here: stage 2 on 3 vertebrae
    options = SegmentOptions(device="cpu", mask=str(case.semantic), exports=("report",))
    paths = segment_file_module.segment_file(case.image, tmp_path, options, case_name="oom")
    report = json.loads(paths["report"].read_text())
    fallback = [w for w in report["warnings"] if w.startswith("stage 2: cuda ran out of memory")]
    assert len(fallback) == 1 and "ran on the CPU instead" in fallback[0], report["warnings"]
    found = {v["label"] for v in report["vertebrae"]}
    # every vertebra, as without the fallback (the one cut by the top edge of the view may or may not count)
    assert case.complete_levels <= found <= case.complete_levels | case.cut_levels, found
    assert calls[:2] == ["cuda", "cpu"]
    # not sticky: the model is still on its GPU with its own network, and the next call uses the GPU
    assert model.device.type == "cuda" and model.network is network
    before = len(calls)
    model.predict_windows(np.zeros((1, len(model.config.channels), 8, 8, 8), np.float32))
    assert calls[before:] == ["cuda"] and len(model.warnings) == 1


def test_stage1_out_of_memory_runs_that_prediction_on_the_cpu_only(tmp_path, monkeypatch):
    from spineinstanceseg.stage1 import nnunet_adapter
    from spineinstanceseg.stage1.model import Stage1Model

    folder = tmp_path / "Dataset001_X" / "nnUNetTrainer__nnUNetPlans__3d_fullres"
    (folder / "fold_all").mkdir(parents=True)
    (folder / "dataset.json").write_text(json.dumps({"channel_names": {"0": "CT"}, "labels": {"background": 0,
                                                     "vertebra": 1}}))  # fmt: skip
    (folder / "plans.json").write_text("{}")
    (folder / "fold_all" / "checkpoint_final.pth").write_bytes(b"weights")
    predictor = types.SimpleNamespace(device=torch.device("cuda"), perform_everything_on_device=True,
                                      network=torch.nn.Conv3d(1, 1, 1))  # fmt: skip
    monkeypatch.setattr(Stage1Model, "_load", lambda self, device: predictor)
    calls: list[tuple[str, bool]] = []

    def predict_array(pred, data, spacing, *, on_patch=None):
        calls.append((pred.device.type, pred.perform_everything_on_device))
        if len(calls) == 1:
            raise torch.OutOfMemoryError(OOM)
        labels = np.zeros(data.shape[1:], np.uint8)
        labels[2:6, 2:6, 2:6] = 1
        return labels

    monkeypatch.setattr(nnunet_adapter, "predict_array", predict_array)
    model = Stage1Model(folder, device="cpu", crop_to_body=False)
    image = Volume(np.zeros((8, 8, 8), np.float32))
    first = model.predict(image)
    assert calls == [("cuda", True), ("cpu", False)] and int(first.array.sum()) == 64
    assert len(model.warnings) == 1 and model.warnings[0].startswith("stage 1: cuda ran out of memory")
    assert predictor.device.type == "cuda" and predictor.perform_everything_on_device  # back on its GPU
    model.predict(image)
    assert calls[-1] == ("cuda", True) and len(model.warnings) == 1
