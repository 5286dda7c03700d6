"""Air in a CT around stage 1: scanner padding below air becomes air; no spine class is left in the air beyond a
field-of-view edge that cuts the body or in the lungs; a small gas pocket inside the spine keeps its labels, and an
MRI is never touched."""

from __future__ import annotations

import numpy as np
import pytest

from spineinstanceseg.stage1.air import AirParameters, clear_labels_in_air, fill_padding_with_air
from spineinstanceseg.volume import Volume

_DIRECTION = (0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0)  # a rotated grid: the rule works in voxels


def _ct_cut_by_its_edge() -> tuple[Volume, Volume]:
    """A 1.5 mm CT whose body (40 HU) ends at x = 40 like a reconstruction circle, air (-1000 HU) beyond, and labels
    that run 4 voxels past that edge; returns (image, labels)."""
    rng = np.random.default_rng(0)
    array = (40.0 + rng.normal(0.0, 15.0, (80, 60, 30))).astype(np.float32)
    array[40:] = -1000.0 + rng.normal(0.0, 20.0, (40, 60, 30))
    labels = np.zeros(array.shape, np.uint8)
    labels[20:44, 20:40, 5:25] = 1
    image = Volume(array, (1.5, 1.5, 2.0), (10.0, -5.0, 3.0), _DIRECTION)
    return image, image.with_array(labels, is_label=True)


def test_labels_beyond_a_cut_body_edge_are_cleared_and_the_rest_kept():
    image, labels = _ct_cut_by_its_edge()
    cleaned, count = clear_labels_in_air(labels, image)
    out = np.asarray(cleaned.array)
    assert count == 4 * 20 * 20 and not out[40:].any()
    np.testing.assert_array_equal(out[:40], np.asarray(labels.array)[:40])
    assert cleaned.same_grid(image, tol=0.0) and cleaned.is_label


def test_lung_is_cleared_but_a_small_gas_pocket_in_the_spine_keeps_its_labels():
    array = np.full((90, 90, 40), 40.0, np.float32)
    array[50:85, 10:80, :] = -850.0  # a lung, 35 x 70 x 40 voxels of 1 mm^3 = 98 mL
    array[20:24, 40:44, 18:21] = -950.0  # a vacuum disc: 48 voxels, under 0.05 mL
    labels = np.zeros(array.shape, np.uint8)
    labels[15:30, 35:50, 10:30] = 2  # the disc around the gas
    labels[46:53, 35:50, 10:30] = 1  # a vertebra that bled 3 voxels into the lung
    image = Volume(array, (1.0, 1.0, 1.0))
    cleaned, count = clear_labels_in_air(image.with_array(labels, is_label=True), image)
    out = np.asarray(cleaned.array)
    assert count == 3 * 15 * 20
    assert (out[20:24, 40:44, 18:21] == 2).all(), "the gas inside the disc lost its label"
    assert (out[46:50, 35:50, 10:30] == 1).all() and not out[50:53].any()


def test_pocket_size_is_a_parameter_in_millilitres():
    array = np.full((60, 60, 60), 40.0, np.float32)
    array[20:40, 20:40, 20:40] = -900.0  # 8000 voxels of 1 mm^3 = 8 mL
    labels = np.zeros(array.shape, np.uint8)
    labels[25:35, 25:35, 25:35] = 1
    image = Volume(array, (1.0, 1.0, 1.0))
    mask = image.with_array(labels, is_label=True)
    assert clear_labels_in_air(mask, image)[1] == 1000  # more air than the default 5 mL pocket: cleared
    assert clear_labels_in_air(mask, image, parameters=AirParameters(pocket_max_ml=10.0))[1] == 0


def test_an_mri_is_never_touched():
    rng = np.random.default_rng(1)
    array = np.abs(rng.normal(0.0, 5.0, (50, 50, 20))).astype(np.float32)  # background noise around 0
    array[10:40, 10:40] = 600.0
    labels = np.zeros(array.shape, np.uint8)
    labels[5:45, 20:30, 5:15] = 1  # also over the dark background
    image = Volume(array, (1.2, 1.2, 3.5))
    mask = image.with_array(labels, is_label=True)
    cleaned, count = clear_labels_in_air(mask, image)
    assert count == 0 and cleaned is mask


def test_labels_on_another_grid_are_refused():
    image, labels = _ct_cut_by_its_edge()
    shifted = Volume(np.asarray(labels.array), labels.spacing, (11.0, -5.0, 3.0), _DIRECTION, is_label=True)
    with pytest.raises(ValueError, match="one grid"):
        clear_labels_in_air(shifted, image)


def test_scanner_padding_below_air_becomes_air_and_nothing_else_changes():
    image, _ = _ct_cut_by_its_edge()
    array = np.asarray(image.array).copy()
    array[:5, :5] = -3024.0  # a corner outside the reconstruction circle
    filled = fill_padding_with_air(image.with_array(array))
    out = np.asarray(filled.array)
    assert (out[:5, :5] == -1024.0).all() and out.min() > -1500.0  # the noise of the air stays
    np.testing.assert_array_equal(out[5:], array[5:])
    assert filled.same_grid(image, tol=0.0)
    assert fill_padding_with_air(image) is image  # air at -1000 with noise, nothing below -1024
    mri = Volume(np.zeros((4, 4, 4), np.float32), (1.0, 1.0, 1.0))
    assert fill_padding_with_air(mri) is mri
