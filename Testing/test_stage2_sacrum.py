"""Stage-1 "sacrum" higher up the column goes back to the vertebra it touches; the sacrum and what lies beside the
lowest vertebra stay."""

from __future__ import annotations

import numpy as np

from spineinstanceseg.semantic import SACRUM, VERTEBRA
from spineinstanceseg.stage2.sacrum import absorb_stray_sacrum
from spineinstanceseg.volume import Volume


def _column() -> tuple[Volume, np.ndarray, float]:
    """Three 10-voxel-high box vertebrae (2 mm voxels, array axis 2 = LPS z up) over a sacrum block."""
    instances = np.zeros((20, 20, 60), dtype=np.int32)
    semantic = np.zeros(instances.shape, dtype=np.uint8)
    for k, (lo, hi) in enumerate(((46, 56), (32, 42), (18, 28)), start=1):  # top to bottom
        instances[5:15, 5:15, lo:hi] = k
    semantic[instances > 0] = VERTEBRA
    semantic[5:15, 5:15, 2:14] = SACRUM
    lowest_disc_z = (22.5 + 36.5) / 2 * 2.0  # half-way between the two lowest vertebrae's centroids, mm
    return Volume(semantic, (2.0, 2.0, 2.0), is_label=True), instances, lowest_disc_z


def test_sacrum_piece_inside_a_vertebra_joins_it_and_the_real_sacrum_stays():
    semantic, instances, disc_z = _column()
    labels = np.asarray(semantic.array).copy()
    labels[8:11, 8:11, 35:38] = SACRUM  # a "sacrum" blob inside the middle vertebra (27 voxels)
    inst = instances.copy()
    inst[8:11, 8:11, 35:38] = 0

    out = absorb_stray_sacrum(semantic.with_array(labels), inst, above_z_mm=disc_z)

    assert np.all(out.instances[8:11, 8:11, 35:38] == 2)
    assert np.all(np.asarray(out.semantic.array)[8:11, 8:11, 35:38] == VERTEBRA)
    assert np.all(np.asarray(out.semantic.array)[5:15, 5:15, 2:14] == SACRUM)  # below the lowest: untouched
    assert out.absorbed_ml == 27 * 8 / 1000 and out.dropped_ml == 0
    assert "0.2 mL" in out.message()


def test_stray_piece_touching_no_vertebra_is_dropped():
    semantic, instances, disc_z = _column()
    labels = np.asarray(semantic.array).copy()
    labels[0:2, 0:2, 50:52] = SACRUM  # beside the top vertebra, touching nothing

    out = absorb_stray_sacrum(semantic.with_array(labels), instances, above_z_mm=disc_z)

    assert not np.any(np.asarray(out.semantic.array)[0:2, 0:2, 50:52])
    assert out.dropped_ml > 0 and out.absorbed_ml == 0
    assert np.array_equal(out.instances, instances)


def test_nothing_stray_returns_the_inputs():
    semantic, instances, disc_z = _column()
    out = absorb_stray_sacrum(semantic, instances, above_z_mm=disc_z)
    assert out.semantic is semantic and out.instances is instances and out.message() is None


def test_sacrum_beside_the_lowest_vertebra_stays():
    semantic, instances, disc_z = _column()
    labels = np.asarray(semantic.array).copy()
    labels[15:18, 5:15, 20:26] = SACRUM  # an ala reaching up beside the lowest vertebra, touching it

    out = absorb_stray_sacrum(semantic.with_array(labels), instances, above_z_mm=disc_z)

    assert out.message() is None and np.array_equal(np.asarray(out.semantic.array), labels)
