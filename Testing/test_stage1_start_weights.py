"""Starting a stage-1 training from a checkpoint: read as plain data, output layers kept when the classes match."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from spineinstanceseg.errors import ModelError
from spineinstanceseg.stage1.start_weights import load_start_weights


class _TinyNet(torch.nn.Module):
    """The two parts that matter: a body and nnU-Net-style output layers (``decoder.seg_layers.N``)."""

    def __init__(self, classes: int, width: int = 4):
        super().__init__()
        self.encoder = torch.nn.Conv3d(1, width, 3)
        self.decoder = torch.nn.Module()
        self.decoder.seg_layers = torch.nn.ModuleList([torch.nn.Conv3d(width, classes, 1) for _ in range(2)])


def _checkpoint(path, net: torch.nn.Module, **extra) -> None:
    """An nnU-Net-like checkpoint: network weights plus a training log with numpy floats in it."""
    log = {"train_losses": [np.float32(0.5), np.float64(0.25)], "dtype": np.dtype("float32")}
    torch.save({"network_weights": net.state_dict(), "logging": log, "current_epoch": 3, **extra}, path)


def _same(a: torch.nn.Module, b: torch.nn.Module, prefix: str) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return all(torch.equal(sa[k], sb[k]) for k in sa if k.startswith(prefix))


def test_same_classes_keep_the_output_layers(tmp_path):
    torch.manual_seed(0)
    start, fresh = _TinyNet(5), _TinyNet(5)
    _checkpoint(tmp_path / "start.pth", start)
    carried = load_start_weights(fresh, tmp_path / "start.pth")
    assert sorted(carried) == sorted(k for k in fresh.state_dict() if ".seg_layers." in k)
    assert _same(fresh, start, "encoder.") and _same(fresh, start, "decoder.seg_layers.")


def test_output_layers_afresh_when_asked_or_when_the_classes_differ(tmp_path):
    torch.manual_seed(0)
    start = _TinyNet(5)
    _checkpoint(tmp_path / "start.pth", start)
    asked = _TinyNet(5)
    before = {k: v.clone() for k, v in asked.state_dict().items()}
    assert load_start_weights(asked, tmp_path / "start.pth", output_layers=False) == []
    assert _same(asked, start, "encoder.")
    assert all(torch.equal(asked.state_dict()[k], before[k]) for k in before if ".seg_layers." in k)
    other = _TinyNet(3)  # another label set: the body moves over, the output layers cannot
    assert load_start_weights(other, tmp_path / "start.pth") == []
    assert _same(other, start, "encoder.")


def test_another_architecture_is_refused_by_name(tmp_path):
    _checkpoint(tmp_path / "start.pth", _TinyNet(5, width=4))
    with pytest.raises(ModelError, match="does not fit this network.*encoder"):
        load_start_weights(_TinyNet(5, width=8), tmp_path / "start.pth")


class _Payload:
    def __reduce__(self):  # what an unsafe pickle would run on loading
        return (print, ("code ran",))


def test_a_checkpoint_with_arbitrary_objects_is_not_unpickled(tmp_path, capsys):
    _checkpoint(tmp_path / "start.pth", _TinyNet(5), extra=_Payload())
    with pytest.raises(ModelError, match="could not be read as plain data: it holds builtins.print"):
        load_start_weights(_TinyNet(5), tmp_path / "start.pth")
    assert "code ran" not in capsys.readouterr().out
    (tmp_path / "junk.pth").write_bytes(pickle.dumps({"no": "weights"}))
    with pytest.raises(ModelError, match="not a torch checkpoint"):
        load_start_weights(_TinyNet(5), tmp_path / "junk.pth")
    torch.save({"no": "weights"}, tmp_path / "plain.pth")
    with pytest.raises(ModelError, match="has no 'network_weights'"):
        load_start_weights(_TinyNet(5), tmp_path / "plain.pth")
