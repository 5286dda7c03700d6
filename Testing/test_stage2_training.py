"""Stage-2 training: samples from instance label maps, a tiny training run with checkpoint/curves/resume, CLI."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace

import numpy as np
import pytest

from spineinstanceseg.cli.train_stage2 import add_arguments, run
from spineinstanceseg.io import write_volume
from spineinstanceseg.semantic import DISC, SACRUM, VERTEBRA
from spineinstanceseg.stage2.model import Stage2Config, Stage2Model
from spineinstanceseg.stage2.training import TrainSchedule, train_stage2, validation_dice
from spineinstanceseg.stage2.training_data import Augmentation, make_sample, prepare_case
from spineinstanceseg.stage2.windows import WindowSpec
from spineinstanceseg.volume import Volume

SPEC = WindowSpec((16, 16, 24), 4.0)


def _stack(n: int = 5, *, gap: int = 2, sacrum: bool = True) -> tuple[Volume, Volume]:
    """A straight stack of box vertebrae along +z (superior), VerSe codes 20.. from the top, sacrum below.

    Spacing 4 mm isotropic, identity direction (already canonical); discs fill the gaps.
    """
    height = 6
    depth = (n + 1) * (height + gap) + 4
    inst = np.zeros((14, 14, depth), dtype=np.int16)
    sem = np.zeros_like(inst, dtype=np.uint8)
    z = 2
    if sacrum:
        inst[3:11, 3:11, z : z + height] = 26
        sem[3:11, 3:11, z : z + height] = SACRUM
    for k in range(n):  # bottom to top: code 20 + n - 1 ... 20
        z += height + gap
        code = 20 + n - 1 - k
        inst[3:11, 3:11, z : z + height] = code
        sem[3:11, 3:11, z : z + height] = VERTEBRA
        sem[4:10, 4:10, z - gap : z] = DISC
    spacing = (4.0, 4.0, 4.0)
    return Volume(inst, spacing, is_label=True), Volume(sem, spacing, is_label=True)


def test_prepare_case_orders_vertebrae_top_to_bottom_without_sacrum():
    inst, sem = _stack()
    case = prepare_case(inst, sem, spec=SPEC)
    assert case.labels == (20, 21, 22, 23, 24)
    assert np.all(np.diff(case.centroids[:, 2]) < 0)
    assert 26 not in np.unique(case.instances)
    vert_only = prepare_case(inst, None, spec=SPEC)
    assert set(np.unique(vert_only.semantic)) == {0, VERTEBRA, SACRUM}


def test_clean_sample_labels_top_centre_bottom_by_height():
    case = prepare_case(*_stack(), spec=SPEC)
    x, y = make_sample(case, np.random.default_rng(0), spec=SPEC, augment=Augmentation.none(), index=2)
    assert x.shape == (4, *SPEC.size) and y.shape == SPEC.size
    z_of = {c: np.nonzero(y == c)[2].mean() for c in (1, 2, 3)}
    assert z_of[1] > z_of[2] > z_of[3]  # top is superior (+z), bottom inferior
    assert abs(z_of[2] - (SPEC.size[2] - 1) / 2) < 1.0  # centre vertebra at the window centre
    assert np.all((y > 0) == (x[0] > 0))  # every vertebra voxel in the window is one of the three
    # the top-most vertebra has no "top" neighbour
    _, y_top = make_sample(case, np.random.default_rng(0), spec=SPEC, augment=Augmentation.none(), index=0)
    assert not np.any(y_top == 1) and np.any(y_top == 2) and np.any(y_top == 3)


def test_augmented_samples_only_label_input_vertebra_voxels_and_can_drop_discs():
    case = prepare_case(*_stack(), spec=SPEC)
    rng = np.random.default_rng(4)
    aug = Augmentation(p_drop_disc_canal=1.0, p_bridge=1.0, p_blobs=1.0, p_holes=1.0)
    for _ in range(5):
        x, y = make_sample(case, rng, spec=SPEC, augment=aug)
        assert np.all(x[1] == 0)  # disc channel dropped
        assert np.all(x[0][y > 0] == 1)  # targets only on input vertebra voxels
        assert set(np.unique(y)) <= {0, 1, 2, 3}


def test_field_of_view_cut_leaves_partial_vertebrae_labelled_and_nothing_beyond_the_plane():
    """A scan's edge cuts a vertebra: the sample shows what is left of it, with its class, and empty space beyond."""
    case = prepare_case(*_stack(), spec=SPEC)
    whole = 8 * 8 * 6  # voxels of one box vertebra (the stack is on the 4 mm working grid already)
    rng = np.random.default_rng(7)
    aug = replace(Augmentation.none(), p_fov_cut=1.0)
    partial_neighbour = cut_centre = 0
    for _ in range(40):
        x, y = make_sample(case, rng, spec=SPEC, augment=aug, index=2)
        assert np.all(x[0][y > 0] == 1) and set(np.unique(y)) <= {0, 1, 2, 3}
        planes = np.nonzero(x.any(axis=(0, 1, 2)))[0]  # axis-2 planes of the window holding anything
        assert planes[0] > 0 or planes[-1] < SPEC.size[2] - 1, "one end of the window lies beyond the cut"
        counts = np.bincount(y.ravel(), minlength=4)
        partial_neighbour += int(0 < counts[1] < whole or 0 < counts[3] < whole)
        if 0 < counts[2] < whole:  # the centre vertebra itself is cut: the window sits on what is left of it
            cut_centre += 1
            assert abs(np.nonzero(y == 2)[2].mean() - (SPEC.size[2] - 1) / 2) <= 1.0
    assert partial_neighbour >= 5 and cut_centre >= 5


def test_validation_dice():
    a = np.array([0, 1, 1, 2, 2, 3])
    assert validation_dice(a, a) == 1.0
    assert validation_dice(np.zeros(4, int), np.zeros(4, int)) == 1.0
    assert validation_dice(np.array([1, 1, 0, 0]), np.array([1, 0, 0, 0])) == pytest.approx(2 / 3)


def test_tiny_training_writes_checkpoint_and_curves_and_resumes(tmp_path):
    cases = [prepare_case(*_stack(n), spec=SPEC) for n in (4, 5)]
    config = Stage2Config(window=SPEC, base_width=2, name="tiny")
    schedule = TrainSchedule(epochs=1, iterations=2, batch_size=1, lr=1e-3, val_windows=2)
    records = []
    model_dir = train_stage2(cases[:1], cases[1:], out=tmp_path, config=config, schedule=schedule, device="cpu",
                             on_epoch=records.append)  # fmt: skip
    assert model_dir == tmp_path / "model" and len(records) == 1
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "checkpoint" / "optimizer.safetensors").is_file()
    first = json.loads((tmp_path / "history.json").read_text())
    assert [r["epoch"] for r in first] == [1] and np.isfinite(first[0]["loss"])
    assert 0.0 <= first[0]["val_dice"] <= 1.0
    loaded = Stage2Model.load(model_dir, device="cpu")
    assert loaded.config.training["epochs_done"] == 1

    more = TrainSchedule(epochs=2, iterations=2, batch_size=1, lr=1e-3, val_windows=2)
    train_stage2(cases[:1], cases[1:], out=tmp_path, config=config, schedule=more, device="cpu", resume=True)
    history = json.loads((tmp_path / "history.json").read_text())
    assert [r["epoch"] for r in history] == [1, 2]
    assert history[0] == first[0]  # epoch 1 was not redone
    ckpt = Stage2Model.load(tmp_path / "checkpoint" / "model", device="cpu")
    assert ckpt.config.training["epochs_done"] == 2


def test_init_starts_from_given_weights_and_checks_width(tmp_path):
    cases = [prepare_case(*_stack(n), spec=SPEC) for n in (4, 5)]
    start = Stage2Model(Stage2Config(window=SPEC, base_width=2), device="cpu")
    start.save(tmp_path / "start")
    schedule = TrainSchedule(epochs=1, iterations=1, batch_size=1, lr=1e-12, val_windows=1)
    out = train_stage2(cases[:1], cases[1:], out=tmp_path / "a", config=Stage2Config(window=SPEC, base_width=2),
                       schedule=schedule, device="cpu", init=tmp_path / "start")  # fmt: skip
    trained = Stage2Model.load(out, device="cpu").network.state_dict()
    first = "encoders.0.0.0.weight"
    np.testing.assert_allclose(trained[first].numpy(), start.network.state_dict()[first].numpy(), atol=1e-6)
    from spineinstanceseg.errors import InputError

    with pytest.raises(InputError, match="width"):
        train_stage2(cases[:1], cases[1:], out=tmp_path / "b", config=Stage2Config(window=SPEC, base_width=3),
                     schedule=schedule, device="cpu", init=tmp_path / "start")  # fmt: skip


def test_cli_trains_from_verse_label_maps(tmp_path, capsys):
    labels = tmp_path / "labels"
    labels.mkdir()
    for n in (3, 4):
        inst, _ = _stack(n)
        write_volume(inst, labels / f"case{n}_seg-vert_msk.nii.gz")
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(
        ["--labels", str(labels), "--convention", "verse", "--out", str(tmp_path / "out"), "--quick", "--epochs", "1",
         "--iterations", "1", "--batch-size", "1", "--base-width", "2", "--window", "16", "16", "24",
         "--spacing", "4", "--device", "cpu"]
    )  # fmt: skip
    assert run(args) == 0
    printed = capsys.readouterr().out
    assert "parameters" in printed and "epoch   1" in printed
    assert Stage2Model.load(tmp_path / "out" / "model", device="cpu").config.window == SPEC


def test_cli_rejects_a_folder_without_label_maps(tmp_path):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--labels", str(tmp_path), "--convention", "phantom", "--out", str(tmp_path / "o")])
    from spineinstanceseg.errors import InputError

    with pytest.raises(InputError, match="at least 2"):
        run(args)


def test_bodies_only_samples_keep_the_bodies_and_centre_the_window_on_the_body():
    """What stage 1 gives on MRI (bodies, discs, canal, hardly any posterior elements) is a training sample too."""
    from spineinstanceseg.phantom import generate_phantom

    spec = WindowSpec((32, 32, 32), 2.5)
    phantom = generate_phantom(2, modality="ct", region="lumbar", spacing=(2.5, 2.5, 2.5))
    case = prepare_case(phantom.instances, phantom.semantic, spec=spec)
    assert case.bodies is not None and case.body_centroids.shape == case.centroids.shape
    # bodies lie in front of (LPS -y: lower canonical axis-1 index than) the whole vertebrae's centroids
    assert np.all(case.body_centroids[:, 1] < case.centroids[:, 1] - 2)
    clean = make_sample(case, np.random.default_rng(1), spec=spec, augment=Augmentation.none(), index=2)
    bodies = replace(Augmentation.none(), p_bodies_only=1.0)
    x, y = make_sample(case, np.random.default_rng(1), spec=spec, augment=bodies, index=2)
    assert 0.3 < x[0].sum() / clean[0][0].sum() < 0.8  # the posterior elements are gone
    assert np.all(x[0][y > 0] == 1) and {1, 2, 3} <= set(np.unique(y))
    assert np.allclose(np.argwhere(y == 2).mean(axis=0), (np.asarray(spec.size) - 1) / 2, atol=1.5)
    assert x[1].sum() > 0.8 * clean[0][1].sum()  # discs are kept (the window moved forward onto the body)
