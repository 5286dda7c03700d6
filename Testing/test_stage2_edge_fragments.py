"""Vertebrae cut by the field of view: detached pieces at the volume edge beyond the end vertebrae get a label."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import oblique_direction
from stage2_helpers import OracleModel, box_spine
from test_stage2_predict import check_contract

from spineinstanceseg.stage2.edge_fragments import split_edge_fragments
from spineinstanceseg.stage2.predict import split_instances
from spineinstanceseg.volume import Volume

# Three box vertebrae along axis 2 (top = highest index), 1 mm voxels, pitch 15 mm; the map ends at z = 52.
SHAPE = (16, 16, 52)
BODIES = {1: (34, 46), 2: (19, 31), 3: (4, 16)}


def stack() -> np.ndarray:
    labels = np.zeros(SHAPE, np.int32)
    for label, (z0, z1) in BODIES.items():
        labels[2:14, 2:14, z0:z1] = label
    return labels


def with_remains(labels: np.ndarray, *, z=(49, 52), xs=((2, 7), (9, 14)), value: int = 1) -> np.ndarray:
    """Two slabs of a vertebra above the top one, cut by the top face, handed to ``value`` by fusion."""
    out = labels.copy()
    for x0, x1 in xs:
        out[x0:x1, 2:14, z[0] : z[1]] = value
    return out


def geometry(shape=SHAPE, spacing=(1.0, 1.0, 1.0), direction=None) -> Volume:
    return Volume(np.zeros(shape, np.uint8), spacing, (0.0, 0.0, 0.0), np.eye(3) if direction is None else direction)


def test_pieces_at_the_top_face_beyond_the_top_vertebra_become_a_vertebra():
    labels = with_remains(stack())
    out, added = split_edge_fragments(labels, geometry())
    assert added == 1
    np.testing.assert_array_equal(out[labels != 1], labels[labels != 1])
    new = out == 4
    assert new.sum() == 2 * 5 * 12 * 3  # both slabs, nothing of the top vertebra's body
    assert np.all(out[2:14, 2:14, 34:46] == 1)


def test_pieces_below_the_bottom_vertebra_at_the_bottom_face_become_a_vertebra():
    labels = np.flip(with_remains(stack()), axis=2).copy()  # top vertebra now at the bottom, label stays 1
    relabel = np.array([0, 3, 2, 1], np.int32)  # numbered top to bottom again: the cut one is under label 3
    labels = relabel[labels]
    out, added = split_edge_fragments(labels, geometry())
    assert added == 1
    assert (out == 4).sum() == 2 * 5 * 12 * 3
    assert np.all(out[2:14, 2:14, 6:18] == 3)


@pytest.mark.parametrize(
    "case",
    ["inside the field of view", "level with the vertebra", "too small", "too far out", "one vertebra only"],
)
def test_pieces_that_are_not_a_cut_vertebra_stay_where_fusion_put_them(case):
    labels = stack()
    if case == "inside the field of view":  # beyond the top vertebra but not cut by the edge: stage-1 noise
        labels = with_remains(labels, z=(48, 50))
    elif case == "level with the vertebra":  # a detached piece of the top vertebra itself, at a side face
        labels[15:16, 4:10, 36:44] = 1
    elif case == "too small":  # 1 x 12 x 3 voxels: 36 mm^3
        labels = with_remains(labels, xs=((2, 3),))
    elif case == "too far out":  # 2.6 pitches above vertebra 1: not the remains of the next vertebra
        labels = np.concatenate([labels, np.zeros((16, 16, 28), np.int32)], axis=2)
        labels = with_remains(labels, z=(77, 80))
    else:
        labels = with_remains(np.where(stack() == 1, 1, 0))
    out, added = split_edge_fragments(labels, geometry(labels.shape))
    assert added == 0
    np.testing.assert_array_equal(out, labels)


def test_piece_only_slightly_beyond_joins_only_when_another_is_clearly_beyond():
    # a bar behind the top of vertebra 1 (touching the back and top faces), centroid 0.4 pitches out: an
    # articular process of a cut vertebra, or of vertebra 1 itself; alone it does not make a vertebra
    weak = stack()
    weak[2:14, 15:16, 40:52] = 1
    out, added = split_edge_fragments(weak, geometry())
    assert added == 0
    both = weak.copy()
    both[9:14, 2:14, 49:52] = 1  # plus a slab clearly beyond (0.73 pitches)
    out, added = split_edge_fragments(both, geometry())
    assert added == 1
    assert np.all(out[2:14, 15:16, 40:52] == 4) and np.all(out[9:14, 2:14, 49:52] == 4)


def test_oblique_anisotropic_permuted_grid_gives_the_same_split():
    labels = with_remains(stack())
    # store with axes permuted and flipped (array axis 0 now runs downwards), 2 x 1 x 1 mm voxels, tilted
    arr = np.ascontiguousarray(np.flip(np.transpose(labels, (2, 0, 1)), 0))
    direction = oblique_direction(7.0, seed=3) @ np.array([[0, 1, 0], [0, 0, 1], [1, 0, 0]], float)
    arr2 = np.repeat(arr, 2, axis=1)  # anisotropy by repetition keeps the anatomy, spacing halves on that axis
    geo = geometry(arr2.shape, (1.0, 0.5, 1.0), direction)
    out, added = split_edge_fragments(arr2, geo)
    assert added == 1
    expected = np.ascontiguousarray(np.flip(np.transpose(split_edge_fragments(labels, geometry())[0], (2, 0, 1)), 0))
    np.testing.assert_array_equal(out, np.repeat(expected, 2, axis=1))


def test_stage2_gives_a_thin_slab_cut_by_the_field_of_view_its_own_label():
    """The top vertebra of a box spine is cut down to a 1-voxel slab at the top face of the scan: too thin for
    a window of its own, it still comes back as a vertebra (and the one below it keeps its own voxels)."""
    height, gap, margin = 12, 3, 4
    sem, inst = box_spine(5, height=height, gap=gap, arch=False, margin=margin, cut_top=gap + height - 1)
    top = sem.shape[2] - margin - (gap + height - 1)
    sem, inst = np.ascontiguousarray(sem[:, :, :top]), np.ascontiguousarray(inst[:, :, :top])
    semantic = Volume(sem, (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), oblique_direction(4.0, seed=1), is_label=True)
    instances = semantic.with_array(inst)
    result = split_instances(semantic, model=OracleModel(semantic, instances))
    check_contract(result, semantic)
    labels = np.asarray(result.instances.array)
    assert labels.max() == 5
    np.testing.assert_array_equal(labels == 1, inst == 1)
    assert result.confidence[0] == 0.0 and np.all(result.confidence[1:] > 0.5)  # the cut one: no window's word
    for k in range(2, 6):
        dice = 2 * np.sum((labels == k) & (inst == k)) / (np.sum(labels == k) + np.sum(inst == k))
        assert dice > 0.95, (k, dice)


def test_no_cut_vertebra_is_looked_for_between_the_last_vertebra_and_the_sacrum():
    """Stage-1 sacrum voxels called vertebra below L5 are not the remains of another vertebra; at the other end
    the rule still works."""
    labels = np.concatenate([np.zeros((16, 16, 8), np.int32), with_remains(stack())], axis=2)  # bottom body 12-24
    labels[2:7, 2:14, 0:3] = 3  # detached pieces at the bottom face, 1.07 pitches below the bottom vertebra
    labels[9:14, 2:14, 0:3] = 3
    sacrum = np.zeros(labels.shape, bool)
    sacrum[2:14, 2:14, 4:10] = True  # the sacrum lies below the bottom vertebra
    out, added = split_edge_fragments(labels, geometry(labels.shape), sacrum=sacrum)
    assert added == 1  # the top end only
    assert np.all(out[2:7, 2:14, 0:3] == 3) and np.all(out[2:7, 2:14, 57:60] == 4)
    out, added = split_edge_fragments(labels, geometry(labels.shape))
    assert added == 2  # without a sacrum class both ends have a cut vertebra


def test_a_stray_sacrum_speck_higher_up_does_not_hide_the_sacrum_below():
    """Stage 1 leaves specks of "sacrum" higher up the column; with them the centroid of all sacrum voxels rose above
    the bottom vertebra, and S1 pieces below L5 became a false cut vertebra (an unseen CT phantom cut 10 mm below
    L5: every level then counted one too high)."""
    labels = np.concatenate([np.zeros((16, 16, 8), np.int32), stack()], axis=2)  # bottom body 12-24
    labels[2:7, 2:14, 0:3] = 3  # detached pieces at the bottom face, below the bottom vertebra
    labels[9:14, 2:14, 0:3] = 3
    sacrum = np.zeros(labels.shape, bool)
    sacrum[2:14, 2:14, 4:10] = True  # the sacrum below the bottom vertebra (864 voxels)
    sacrum[0:2, 0:16, 40:60] = True  # specks beside the upper vertebrae (640 voxels): all-voxel centroid z 24.9
    out, added = split_edge_fragments(labels, geometry(labels.shape), sacrum=sacrum)
    assert added == 0 and np.array_equal(out, labels)
