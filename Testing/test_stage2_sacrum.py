"""Stage-1 "sacrum" within the column goes back to the vertebra it touches; the real sacrum below stays."""

from __future__ import annotations

import numpy as np

from spineinstanceseg.semantic import SACRUM, VERTEBRA
from spineinstanceseg.stage2.sacrum import absorb_stray_sacrum
from spineinstanceseg.volume import Volume


def _column() -> tuple[Volume, np.ndarray, np.ndarray]:
    """Three 10-voxel-high box vertebrae (2 mm voxels, array axis 2 = LPS z up) over a sacrum block."""
    instances = np.zeros((20, 20, 60), dtype=np.int32)
    semantic = np.zeros(instances.shape, dtype=np.uint8)
    for k, (lo, hi) in enumerate(((46, 56), (32, 42), (18, 28)), start=1):  # top to bottom
        instances[5:15, 5:15, lo:hi] = k
    semantic[instances > 0] = VERTEBRA
    semantic[5:15, 5:15, 2:14] = SACRUM
    centroid_of_lowest = np.array([9.5 * 2, 9.5 * 2, 22.5 * 2])
    return Volume(semantic, (2.0, 2.0, 2.0), is_label=True), instances, centroid_of_lowest


def test_sacrum_piece_inside_a_vertebra_joins_it_and_the_real_sacrum_stays():
    semantic, instances, lowest = _column()
    labels = np.asarray(semantic.array).copy()
    labels[8:11, 8:11, 35:38] = SACRUM  # a "sacrum" blob inside the middle vertebra (27 voxels)
    inst = instances.copy()
    inst[8:11, 8:11, 35:38] = 0

    out = absorb_stray_sacrum(semantic.with_array(labels), inst, lowest)

    assert np.all(out.instances[8:11, 8:11, 35:38] == 2)
    assert np.all(np.asarray(out.semantic.array)[8:11, 8:11, 35:38] == VERTEBRA)
    assert np.all(np.asarray(out.semantic.array)[5:15, 5:15, 2:14] == SACRUM)  # below the lowest: untouched
    assert out.absorbed_ml == 27 * 8 / 1000 and out.dropped_ml == 0
    assert "0.2 mL" in out.message()


def test_stray_piece_touching_no_vertebra_is_dropped():
    semantic, instances, lowest = _column()
    labels = np.asarray(semantic.array).copy()
    labels[0:2, 0:2, 50:52] = SACRUM  # beside the top vertebra, touching nothing

    out = absorb_stray_sacrum(semantic.with_array(labels), instances, lowest)

    assert not np.any(np.asarray(out.semantic.array)[0:2, 0:2, 50:52])
    assert out.dropped_ml > 0 and out.absorbed_ml == 0
    assert np.array_equal(out.instances, instances)


def test_nothing_stray_returns_the_inputs():
    semantic, instances, lowest = _column()
    out = absorb_stray_sacrum(semantic, instances, lowest)
    assert out.semantic is semantic and out.instances is instances and out.message() is None
