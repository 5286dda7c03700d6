"""Stage-2 inference end to end with fake models: geometry, invariants, errors, progress and cancellation."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from conftest import oblique_direction, require_shared_data
from stage2_helpers import FakeConfig, GarbageModel, OracleModel, box_spine

from spineinstanceseg.errors import CancelledError, InputError, ModelError, NoSpineFoundError
from spineinstanceseg.progress import CancelToken, Progress
from spineinstanceseg.semantic import VERTEBRA
from spineinstanceseg.stage2.encoding import MASK_CHANNELS
from spineinstanceseg.stage2.predict import split_instances
from spineinstanceseg.stage2.window_pitch import DEFAULT_PITCH_SEARCH, UPRIGHT_ONLY
from spineinstanceseg.stage2.working_grid import to_working_grid
from spineinstanceseg.volume import Volume


def best_dice(pred: np.ndarray, truth: np.ndarray) -> dict[int, float]:
    """For every true vertebra the Dice of the best-overlapping predicted instance."""
    out = {}
    for label in (v for v in np.unique(truth) if v > 0):
        t = truth == label
        cands = [p for p in np.unique(pred[t]) if p > 0]
        out[int(label)] = max((2 * (t & (pred == p)).sum() / (t.sum() + (pred == p).sum()) for p in cands), default=0)
    return out


def oblique_box_case(**options) -> tuple[Volume, Volume]:
    """A box spine stored with permuted, flipped axes, 1 x 2 x 2 mm voxels and a 5-degree tilt."""
    sem, inst = box_spine(**options)
    sem, inst = np.repeat(sem, 2, axis=0), np.repeat(inst, 2, axis=0)
    perm = (1, 2, 0)
    axes = np.eye(3)[:, list(perm)]
    axes[:, 1] *= -1
    arr_s = np.ascontiguousarray(np.flip(np.transpose(sem, perm), 1))
    arr_i = np.ascontiguousarray(np.flip(np.transpose(inst, perm), 1))
    direction = oblique_direction(5.0, seed=4) @ axes
    sem_v = Volume(arr_s, (2.0, 2.0, 1.0), (-3.0, 8.0, 120.0), direction, is_label=True)
    return sem_v, sem_v.with_array(arr_i)


def check_contract(result, semantic: Volume) -> None:
    """Stage 2's promises on the input grid."""
    labels = np.asarray(result.instances.array)
    vert = np.asarray(semantic.array) == VERTEBRA
    assert result.instances.same_grid(semantic)
    assert np.issubdtype(labels.dtype, np.integer)
    assert np.all(labels[vert] > 0), "a stage-1 vertebra voxel was left without an instance"
    assert np.all(labels[~vert] == 0), "a voxel outside the stage-1 vertebra mask got an instance"
    n = int(labels.max())
    np.testing.assert_array_equal(np.unique(labels[labels > 0]), np.arange(1, n + 1))
    assert result.centroids_lps.shape == (n, 3) and result.confidence.shape == (n,)
    assert np.all((result.confidence >= 0) & (result.confidence <= 1))
    # labels are numbered top to bottom: LPS z (superior) of the centroids decreases
    assert np.all(np.diff(result.centroids_lps[:, 2]) < 0)


def test_oracle_on_oblique_touching_boxes_recovers_every_vertebra_on_the_input_grid():
    semantic, instances = oblique_box_case(n=5, touching=(1,), discs=False)
    result = split_instances(semantic, model=OracleModel(semantic, instances), batch_size=2)
    check_contract(result, semantic)
    assert int(np.asarray(result.instances.array).max()) == 5
    # one window per vertebra, and the window iteration moves each one at most once (then it sits on the vertebra)
    assert 5 <= result.n_windows <= 10
    dice = best_dice(np.asarray(result.instances.array), np.asarray(instances.array))
    assert min(dice.values()) > 0.95, dice
    # the reported centroid is the physical centroid of the instance, top first = true label 1
    truth = np.asarray(instances.array)
    for k in range(5):
        idx = np.argwhere(np.asarray(result.instances.array) == k + 1).mean(axis=0)
        np.testing.assert_allclose(result.centroids_lps[k], semantic.index_to_world(idx), atol=1e-6)
    top_true = semantic.index_to_world(np.argwhere(truth == 1).mean(axis=0))
    assert np.linalg.norm(result.centroids_lps[0] - top_true) < 3.0
    assert np.all(result.confidence > 0.9)
    for key in ("working_grid", "centroids", "network", "fusion", "to_input_grid", "total"):
        assert key in result.timings


def test_oracle_on_a_fused_phantom_beats_connected_components():
    from scipy import ndimage

    from spineinstanceseg.phantom import generate_phantom

    case = generate_phantom(3, modality="ct", region="lumbar", spacing=(1.5, 1.5, 2.5), hard_case="fused")
    truth = np.asarray(case.instances.array).astype(np.int32)
    truth[truth == 26] = 0  # the sacrum is not a vertebra instance
    instances = case.instances.with_array(truth)
    result = split_instances(case.semantic, model=OracleModel(case.semantic, instances))
    check_contract(result, case.semantic)
    sizes = np.bincount(truth.ravel())
    big = [v for v in np.unique(truth) if v > 0 and sizes[v] > 0.2 * np.median(sizes[sizes > 0])]
    dice = best_dice(np.asarray(result.instances.array), truth)
    assert all(dice[v] > 0.9 for v in big), dice
    cc = ndimage.label(np.asarray(case.semantic.array) == VERTEBRA)[0]
    cc_dice = best_dice(cc, truth)
    assert np.mean([dice[v] for v in big]) > np.mean([cc_dice[v] for v in big])


def test_garbage_model_still_labels_every_vertebra_voxel_once():
    semantic, _ = oblique_box_case(n=4)
    result = split_instances(semantic, model=GarbageModel(seed=1))
    check_contract(result, semantic)
    assert result.confidence.max() < 0.6  # random answers do not agree with each other


def test_mask_without_vertebra_raises_no_spine_found():
    semantic = Volume(np.zeros((20, 20, 20), np.uint8), (2.0, 2.0, 2.0), is_label=True)
    with pytest.raises(NoSpineFoundError, match="no vertebra voxel") as info:
        split_instances(semantic, model=GarbageModel())
    assert "Fix:" in str(info.value)


def test_progress_is_reported_per_batch_and_cancel_stops_between_batches():
    semantic, instances = oblique_box_case(n=5)
    seen: list[tuple[str, float, str]] = []
    oracle = OracleModel(semantic, instances)
    progress = Progress(lambda *a: seen.append(a), step="s2")
    split_instances(semantic, model=oracle, batch_size=2, iterations=1, progress=progress, pitch=UPRIGHT_ONLY)
    assert oracle.batches == [2, 2, 1] and oracle.unplaced == 0
    window_msgs = [m for _, _, m in seen if m.startswith("stage-2 windows")]
    assert len(window_msgs) == 3
    fractions = [f for _, f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0

    token = CancelToken()
    oracle = OracleModel(semantic, instances)

    def cancel_after_first_batch(step, fraction, message):
        if message.startswith("stage-2 windows"):
            token.cancel()

    with pytest.raises(CancelledError):
        split_instances(
            semantic, model=oracle, batch_size=2, progress=Progress(cancel_after_first_batch, token), pitch=UPRIGHT_ONLY
        )
    assert oracle.batches == [2]


def test_pitch_search_tries_unsure_windows_turned_and_keeps_the_upright_answer_it_trusts():
    """A window whose upright answer is less certain than the search's gate goes through the network again, turned
    by each angle in one call; the oracle is sure upright only, so the result equals the upright split. A sure
    upright answer is not searched at all."""
    semantic, instances = oblique_box_case(n=5)
    seen: list[tuple[str, float, str]] = []
    unsure = OracleModel(semantic, instances, sure=0.9)
    assert 0.9 < DEFAULT_PITCH_SEARCH.search_below
    result = split_instances(semantic, model=unsure, iterations=1, progress=Progress(lambda *a: seen.append(a)))
    turns = len(DEFAULT_PITCH_SEARCH.angles_deg)
    assert unsure.batches == [4, turns, turns, turns, turns, 1, turns] and unsure.unplaced == turns * 5
    assert len([m for _, _, m in seen if m.startswith("stage-2 windows")]) == 2  # per batch of upright windows
    upright = split_instances(semantic, model=OracleModel(semantic, instances), iterations=1, pitch=UPRIGHT_ONLY)
    np.testing.assert_array_equal(np.asarray(result.instances.array), np.asarray(upright.instances.array))

    sure = OracleModel(semantic, instances)
    split_instances(semantic, model=sure, iterations=1)
    assert sure.batches == [4, 1] and sure.unplaced == 0


def test_window_iteration_moves_misplaced_windows_onto_the_vertebrae(monkeypatch):
    """Centroid finding places every window 5 voxels too high; the next pass centres them on the vertebrae."""
    import spineinstanceseg.stage2.predict as predict
    from spineinstanceseg.stage2.windows import window_corner

    semantic, instances = oblique_box_case(n=5, touching=(1,), discs=False)
    locate = predict.locate_vertebrae
    placed = []

    def too_high(*args, **kwargs):
        layout = locate(*args, **kwargs)
        placed.append(layout.centroids + np.array([0.0, 0.0, 5.0]))
        return replace(layout, centroids=placed[-1])

    monkeypatch.setattr(predict, "locate_vertebrae", too_high)
    size = FakeConfig().window.size
    spec = FakeConfig().window
    too_high(to_working_grid(semantic, spec.spacing_mm).array == VERTEBRA, spacing_mm=spec.spacing_mm)
    for iterations, on_target in ((1, False), (3, True)):
        oracle = OracleModel(semantic, instances, extra_centres=placed[0])
        result = split_instances(semantic, model=oracle, iterations=iterations)
        check_contract(result, semantic)
        # Windows already run are reused, so the last pass may answer only some windows: look at all of them.
        answered = np.asarray(oracle.corners)
        wanted = np.asarray([window_corner(c, size) for c in oracle.true_centroids])
        reached = [bool(np.any(np.all(np.abs(answered - w) <= 1, axis=1))) for w in wanted]
        assert all(reached) == on_target, (iterations, answered, wanted)


def test_model_needing_an_image_without_one_says_so():
    semantic, _ = oblique_box_case(n=3)
    model = GarbageModel(config=replace(FakeConfig(), channels=(*MASK_CHANNELS, "image")))
    with pytest.raises(InputError, match="image"):
        split_instances(semantic, model=model)


def test_image_channel_is_fed_when_the_model_asks_for_it():
    semantic, instances = oblique_box_case(n=3)
    image = semantic.with_array(np.asarray(semantic.array).astype(np.float32) * 100.0, is_label=False)
    seen = []

    class ImageModel(GarbageModel):
        def predict_windows(self, inputs):
            seen.append(inputs.shape[1])
            return super().predict_windows(inputs)

    model = ImageModel(config=replace(FakeConfig(), channels=(*MASK_CHANNELS, "image")))
    check_contract(split_instances(semantic, model=model, image=image), semantic)
    assert seen and all(c == 5 for c in seen)


def test_object_without_the_stage2_interface_is_rejected():
    semantic, _ = oblique_box_case(n=3)
    with pytest.raises(ModelError, match="not a stage-2 model"):
        split_instances(semantic, model=object())


def test_real_mask_with_oracle_finds_every_vertebra():
    from spineinstanceseg.io import read_label_map

    truth = read_label_map(require_shared_data("real-vertebra-masks", "sub-verse004_seg-vert_msk.nii.gz"))
    semantic = truth.with_array((np.asarray(truth.array) > 0).astype(np.uint8))
    result = split_instances(semantic, model=OracleModel(semantic, truth, FakeConfig()))
    check_contract(result, semantic)
    dice = best_dice(np.asarray(result.instances.array), np.asarray(truth.array))
    assert len(dice) == int(np.asarray(result.instances.array).max())
    assert min(dice.values()) > 0.9, dice


def test_bundled_model_finds_every_vertebra_of_a_real_cervicothoracic_mask():
    """The manual VerSe mask gl003 (C1-T5, vertebrae only): its union as the stage-1 mask comes back as 12
    vertebrae, each matched at IoU >= 0.5 (with a 2.5 mm centroid grid C5 went unfound here)."""
    import torch

    from spineinstanceseg.io import read_label_map
    from spineinstanceseg.metrics import evaluate_instances
    from spineinstanceseg.stage2.model import load_bundled_model

    torch.set_num_threads(2)
    truth = read_label_map(require_shared_data("real-vertebra-masks", "sub-gl003_dir-ax_seg-vert_msk.nii.gz"))
    semantic = truth.with_array((np.asarray(truth.array) > 0).astype(np.uint8))
    result = split_instances(semantic, model=load_bundled_model(device="cpu"))
    check_contract(result, semantic)
    scores = evaluate_instances(np.asarray(result.instances.array), np.asarray(truth.array), truth.spacing)
    assert (scores.tp, scores.fp, scores.fn) == (12, 0, 0), scores
