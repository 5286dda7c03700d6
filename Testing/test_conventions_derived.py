"""Training labels derived from vertebra-only and body-only masks, checked on phantoms whose true discs are known."""

from __future__ import annotations

import numpy as np
import pytest

from spineinstanceseg.conventions.derived import (
    DerivationParams,
    body_cores,
    derive_body_training_labels,
    derive_training_labels,
)
from spineinstanceseg.phantom import generate_phantom
from spineinstanceseg.semantic import CANAL, DISC, VERTEBRA


def _scores(true: np.ndarray, derived: np.ndarray) -> tuple[float, float, float]:
    inter = np.count_nonzero(true & derived)
    return (
        2 * inter / max(np.count_nonzero(true) + np.count_nonzero(derived), 1),
        inter / max(np.count_nonzero(derived), 1),
        inter / max(np.count_nonzero(true), 1),
    )


@pytest.fixture(scope="module")
def lumbar():
    return generate_phantom(1, modality="ct", region="lumbar", spacing=(1.5, 1.5, 2.0))


@pytest.mark.parametrize(
    ("seed", "region", "spacing", "tilt", "hard"),
    [
        (1, "lumbar", (1.5, 1.5, 2.0), 0.0, None),
        (3, "cervical", (1.0, 1.0, 1.0), 0.0, None),  # thin cervical discs
        (4, "lumbar", (3.5, 1.5, 1.5), 12.0, "collapsed_disc"),  # thick sagittal slices, oblique grid
    ],
)
def test_derived_discs_match_the_true_phantom_discs(seed, region, spacing, tilt, hard):
    case = generate_phantom(seed, modality="ct", region=region, spacing=spacing, oblique_deg=tilt, hard_case=hard)
    vertebrae_only = case.instances.with_array(np.where(case.instances.array == 26, 0, case.instances.array))
    derived = derive_training_labels(vertebrae_only)
    semantic, true = np.asarray(derived.semantic.array), np.asarray(case.semantic.array)
    labelled_span = ~derived.unknown
    dice, precision, _ = _scores((true == DISC) & labelled_span, semantic == DISC)
    # measured: Dice 0.85 / 0.80 / 0.72, precision 0.96 / 0.93 / 0.96 (the phantom discs bulge past the body rims)
    assert dice >= 0.65 and precision >= 0.9
    n_vertebrae = len([v for v in np.unique(vertebrae_only.array) if v])
    assert len(derived.disc_pairs) == n_vertebrae - 1  # one disc between every adjacent labelled pair
    # vertebra voxels are kept exactly and never marked unknown
    assert np.array_equal(semantic == VERTEBRA, np.asarray(vertebrae_only.array) > 0)
    assert not np.any(derived.unknown & (semantic > 0))


def test_derived_canal_lies_in_the_true_canal_and_the_sacrum_bounds_the_last_disc(lumbar):
    derived = derive_training_labels(lumbar.instances)  # with the sacrum labelled (VerSe 26)
    semantic, true = np.asarray(derived.semantic.array), np.asarray(lumbar.semantic.array)
    assert (24, 26) in derived.disc_pairs  # L5-S1 disc derived against the sacrum
    assert not np.any(semantic[np.asarray(lumbar.instances.array) == 26])  # the sacrum is left to the caller
    _, _, recall = _scores((true == CANAL) & ~derived.unknown, semantic == CANAL)
    assert recall >= 0.75  # measured 0.80: the sacral canal is not derived; elsewhere the foramen holds the sac
    assert np.count_nonzero(semantic == CANAL) > 0


def test_beyond_the_labelled_span_is_unknown(lumbar):
    only_l2_l4 = np.where(np.isin(lumbar.instances.array, (21, 22, 23)), lumbar.instances.array, 0)
    derived = derive_training_labels(lumbar.instances.with_array(only_l2_l4))
    true = np.asarray(lumbar.instances.array)
    # the unlabelled L1, L5 and sacrum lie mostly in the unknown region: training will not call them background
    for code in (20, 24, 26):
        assert derived.unknown[true == code].mean() > 0.5
    assert derived.disc_pairs == ((21, 22), (22, 23))


def test_body_cores_drop_the_posterior_elements(lumbar):
    l3 = np.asarray(lumbar.instances.array) == 22
    core = body_cores(l3, np.asarray(lumbar.instances.spacing))
    assert 0.4 < core.sum() / l3.sum() < 0.9 and not np.any(core & ~l3)
    # the body is anterior (LPS -y) of the vertebra's centroid
    y_core = lumbar.instances.index_to_world(np.argwhere(core).mean(axis=0))[1]
    y_all = lumbar.instances.index_to_world(np.argwhere(l3).mean(axis=0))[1]
    assert y_core < y_all - 5.0


def test_body_only_labels_ignore_the_posterior_elements_and_find_the_discs(lumbar):
    spacing = np.asarray(lumbar.instances.spacing)
    inst = np.asarray(lumbar.instances.array)
    bodies = np.zeros(inst.shape, np.int16)
    for rank, code in enumerate((20, 21, 22, 23, 24), start=1):
        bodies[body_cores(inst == code, spacing, fraction=DerivationParams().body_opening_fraction)] = rank
    derived = derive_body_training_labels(lumbar.instances.with_array(bodies))
    semantic, true = np.asarray(derived.semantic.array), np.asarray(lumbar.semantic.array)
    y = lumbar.instances.index_to_world(np.argwhere(np.ones(inst.shape, bool)))[:, 1].reshape(inst.shape)
    body_y = lumbar.instances.index_to_world(np.argwhere(bodies > 0))[:, 1]
    posterior = (inst > 0) & (inst != 26) & (bodies == 0) & (y > np.percentile(body_y, 99))
    assert derived.unknown[posterior].mean() > 0.85  # posterior elements are unlabelled, not background
    assert derived.unknown[true == CANAL].mean() > 0.85
    assert len(derived.disc_pairs) == 4 and np.count_nonzero(semantic == DISC) > 0
    assert _scores(true == DISC, semantic == DISC)[1] > 0.8  # what is called disc is disc
    lowest = derive_body_training_labels(lumbar.instances.with_array(bodies), unlabel_lowest=True)
    assert lowest.unknown[bodies == 5].all()  # a set whose lowest label may be S1 leaves it out
