"""Anatomical sanity after stage-2 fusion, rule by rule, on hand-made label maps (2 mm box vertebrae).

What a user notices: a piece of rib or pelvis is not called a vertebra, half a vertebra is not a vertebra of its
own, two vertebrae in one or a missed vertebra stop the levels from being counted from the sacrum, a vertebra
cut by the edge of the scan stays, and an image without a spine says so.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import oblique_direction
from scipy import ndimage

from spineinstanceseg.errors import NoSpineFoundError
from spineinstanceseg.pipeline.naming import name_vertebrae
from spineinstanceseg.stage2.sanity import DEFAULT_PARAMETERS, check_column, face_contacts, measure_instances
from spineinstanceseg.volume import Volume

# Box vertebrae of 14 x 14 x 9 voxels (28 x 28 x 18 mm, 14.1 mL) every 12 voxels along axis 2 (= LPS z, up).
SPACING = 2.0
WIDTH, HEIGHT, PITCH, MARGIN = 14, 9, 12, 7
XY = (5, 5)


def column(n: int = 5, *, nx: int = 60, ny: int = 30, top_margin: int = MARGIN) -> np.ndarray:
    """Vertebrae 1..n from the top (highest z) down, none touching a face of the volume."""
    nz = (n - 1) * PITCH + HEIGHT + MARGIN + top_margin
    labels = np.zeros((nx, ny, nz), np.int32)
    for k in range(1, n + 1):
        z1 = nz - top_margin - (k - 1) * PITCH
        labels[XY[0] : XY[0] + WIDTH, XY[1] : XY[1] + WIDTH, z1 - HEIGHT : z1] = k
    return labels


def grid(labels: np.ndarray, direction=None) -> Volume:
    direction = np.eye(3) if direction is None else direction
    return Volume(np.zeros(labels.shape, np.uint8), (SPACING,) * 3, (0.0, 0.0, 0.0), direction, is_label=True)


def numbered_top_to_bottom(labels: np.ndarray) -> np.ndarray:
    """Labels renumbered 1..N by decreasing centroid height, as stage 2 hands them over."""
    m = measure_instances(labels, grid(labels))
    order = np.argsort(-m.centroid_lps[:, 2], kind="stable")
    lut = np.zeros(len(order) + 1, np.int32)
    lut[order + 1] = np.arange(1, len(order) + 1)
    return lut[labels]


def decisions_by_action(result) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for d in result.decisions:
        out.setdefault(d.action, []).append(d.label)
    return out


@pytest.mark.parametrize("direction", [None, oblique_direction(20.0)], ids=["axial", "oblique grid"])
def test_a_clean_column_passes_unchanged(direction):
    labels = column()
    before = labels.copy()
    confidence = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    result = check_column(labels, grid(labels, direction), confidence)
    np.testing.assert_array_equal(result.instances, before)
    np.testing.assert_array_equal(labels, before)  # input untouched
    np.testing.assert_allclose(result.confidence, confidence)
    assert decisions_by_action(result) == {"kept": [1, 2, 3, 4, 5]}
    assert not result.anomalies and result.messages() == []


def test_a_small_fragment_is_merged_into_the_vertebra_it_touches():
    truth = column()
    labels = truth.copy()
    z_top = np.argwhere(truth == 3)[:, 2].max()
    labels[(truth == 3) & (np.arange(truth.shape[2]) >= z_top - 1)[None, None, :]] = 6  # top 2 of 9 slices
    labels = numbered_top_to_bottom(labels)  # 1, 2, fragment = 3, rest of vertebra 3 = 4, 5, 6
    confidence = np.array([0.9, 0.9, 0.1, 0.8, 0.9, 0.9])
    result = check_column(labels, grid(labels), confidence)
    np.testing.assert_array_equal(result.instances, truth)
    merged = next(d for d in result.decisions if d.action == "merged")
    assert (merged.label, merged.into, merged.new_label) == (3, 4, 3)
    assert "3.1 mL, 22% of its neighbours" in merged.reason and "not cut by the field of view" in merged.reason
    np.testing.assert_allclose(result.confidence, [0.9, 0.9, 0.8, 0.9, 0.9])  # the receiver's confidence
    assert not result.anomalies
    assert any(line.startswith("merged a piece into vertebra 3") for line in result.messages())


@pytest.mark.parametrize(("touches_5", "into"), [(True, 5), (False, 4)], ids=["touching 5", "touching only 4"])
def test_a_fragment_joins_its_column_neighbour_not_a_vertebra_two_levels_away_that_wraps_around_it(touches_5, into):
    # As seen on a real MRI: vertebra 4 reaches down behind vertebra 5 (a posterior "arm"), and a piece of bone
    # below 5 touches that arm more than it touches 5. The piece belongs next to 5, not two levels up; only when
    # it touches nothing but the arm does it go to 4.
    truth = column()
    labels = truth.copy()
    x5, y5, z5 = (np.argwhere(truth == 5)[:, a] for a in range(3))
    bottom_5, back_5 = z5.min(), y5.max()
    labels[9:14, back_5 + 1 : back_5 + 5, bottom_5 : bottom_5 + PITCH + 2] = 4  # the arm, 5 x 4 voxels
    fragment = np.zeros_like(labels, dtype=bool)
    fragment[x5.min() : x5.max() + 1, back_5 + (not touches_5) : back_5 + 8, bottom_5 - 3 : bottom_5] = True
    labels[fragment] = 6
    faces = face_contacts(labels, 6, ndimage.find_objects(labels)[5])
    assert faces[4] > faces.get(5, 0) and (5 in faces) == touches_5  # the arm of 4 is what the piece touches most
    expected = labels.copy()
    expected[fragment] = into
    result = check_column(labels, grid(labels), np.ones(6))
    merged = [d for d in result.decisions if d.action == "merged"]
    assert [(d.label, d.into) for d in merged] == [(6, into)]
    np.testing.assert_array_equal(result.instances, expected)
    assert not result.anomalies


def test_a_detached_fragment_touching_no_vertebra_is_dropped():
    truth = column()
    labels = truth.copy()
    z_bottom_of_2 = np.argwhere(truth == 2)[:, 2].min()
    labels[10:13, 10:13, z_bottom_of_2 - 2] = 9  # in the middle of the disc space, touching nothing
    labels = numbered_top_to_bottom(labels)
    result = check_column(labels, grid(labels), np.ones(6))
    np.testing.assert_array_equal(result.instances, truth)
    dropped = [d for d in result.decisions if d.action == "dropped"]
    assert len(dropped) == 1 and "touching no vertebra" in dropped[0].reason


def test_components_off_the_column_are_dropped_as_not_spine():
    truth = column()
    labels = truth.copy()
    z3 = np.argwhere(truth == 3)[:, 2]
    labels[36:48, 8:14, z3.min() : z3.min() + 6] = 7  # a rib next to vertebra 3 (3.5 mL, 2 sizes off the line)
    labels[40:54, 5:19, 1:10] = 8  # a pelvis-like block beside and below the lowest vertebra
    labels = numbered_top_to_bottom(labels)
    result = check_column(labels, grid(labels), np.ones(7))
    np.testing.assert_array_equal(result.instances, truth)  # the dropped voxels are background
    assert result.count("dropped") == 2 and result.count("kept") == 5
    assert all("from the spinal column's centre line" in d.reason for d in result.decisions if d.action == "dropped")
    assert result.messages()[0].startswith("dropped 2 non-spine component(s)")
    assert not result.anomalies  # what is not spine does not disturb counting


def test_a_detached_piece_off_the_column_that_fusion_gave_to_a_vertebra_is_dropped():
    truth = column()
    labels = truth.copy()
    z3 = np.argwhere(truth == 3)[:, 2]
    labels[40:50, 8:16, z3.min() : z3.min() + 6] = 3  # 3.8 mL of pelvis handed to vertebra 3 by fusion
    labels[59:60, 10:12, z3.min()] = 3  # a far speck of 0.02 mL at the edge of the image: too small to judge, kept
    result = check_column(labels, grid(labels), np.ones(5))
    expected = truth.copy()
    expected[59:60, 10:12, z3.min()] = 3
    np.testing.assert_array_equal(result.instances, expected)
    assert result.count("kept") == 5 and len(result.dropped_pieces) == 1
    assert "a detached piece of stage-2 instance 3" in result.dropped_pieces[0]
    assert result.messages()[0].startswith("dropped 1 non-spine component(s)")
    np.testing.assert_allclose(result.centroids_lps[2], measure_instances(expected, grid(expected)).centroid_lps[2])


@pytest.mark.parametrize("direction", [None, oblique_direction(20.0)], ids=["axial", "oblique grid"])
def test_small_detached_pieces_next_to_a_vertebra_are_dropped(direction):
    """A calcified aorta or a rib end that stage 1 called vertebra, a few mm from the body: fusion gives it to the
    nearest vertebra, whose Dice it lowers; a whole vertebra is one connected piece, so it goes."""
    truth = column()
    labels = truth.copy()
    z3 = np.argwhere(truth == 3)[:, 2]
    labels[XY[0] + WIDTH + 2 : XY[0] + WIDTH + 4, 8:12, z3.min() + 2 : z3.min() + 5] = 3  # 0.19 mL, 4 mm away
    labels[8:10, XY[1] + WIDTH + 3, z3.min() + 4] = 3  # a 0.02 mL speck 6 mm away
    result = check_column(labels, grid(labels, direction), np.ones(5))
    np.testing.assert_array_equal(result.instances, truth)
    assert result.count("kept") == 5 and len(result.dropped_pieces) == 2
    assert result.messages() == [
        "dropped 2 non-spine component(s) that stage 1 called vertebra (2 detached piece(s) of vertebrae, 0.21 mL "
        "in all, touching neither the rest of their vertebra nor the edge of the image)"
    ]
    expected_centroid = measure_instances(truth, grid(truth, direction)).centroid_lps[2]
    np.testing.assert_allclose(result.centroids_lps[2], expected_centroid)


def test_detached_parts_at_the_edge_or_of_a_third_of_the_vertebra_stay():
    """The remains of a vertebra cut by the field of view break up; the arch of a vertebra with a pars defect is
    a third of it: both are the vertebra, not noise."""
    labels = column(top_margin=0)  # vertebra 1 touches the top face
    z1 = np.argwhere(labels == 1)[:, 2]
    labels[XY[0] : XY[0] + 4, XY[1] : XY[1] + 4, z1.max() - 1 :] = 0  # cut remains: a corner of it comes apart
    labels[XY[0] + 1 : XY[0] + 3, XY[1] + 1 : XY[1] + 3, z1.max()] = 1
    z3 = np.argwhere(labels == 3)[:, 2]
    arch = (slice(XY[0], XY[0] + WIDTH), slice(XY[1] + WIDTH + 2, XY[1] + WIDTH + 8), slice(z3.min(), z3.max() + 1))
    labels[arch] = 3  # 6 of 20 rows behind the body, detached by a 4 mm gap
    before = labels.copy()
    result = check_column(labels, grid(labels), np.ones(5))
    np.testing.assert_array_equal(result.instances, before)
    assert not result.dropped_pieces and result.messages() == []


def test_an_instance_holding_two_vertebrae_is_flagged_and_levels_are_not_counted_from_the_sacrum():
    labels = column(6)
    z = np.argwhere((labels == 3) | (labels == 4))[:, 2]
    labels[XY[0] : XY[0] + WIDTH, XY[1] : XY[1] + WIDTH, z.min() : z.max() + 1] = 3  # the disc space too
    labels[labels > 4] -= 1
    confidence = np.array([0.9, 0.9, 0.8, 0.9, 0.9])
    result = check_column(labels, grid(labels), confidence)
    assert decisions_by_action(result)["flagged"] == [3]
    assert result.confidence[2] == DEFAULT_PARAMETERS.oversized_confidence
    assert result.anomalies
    assert "probably two vertebrae in one" in result.anomalies[0]
    naming = name_vertebrae(5, sacrum_below=True, doubts=result.anomalies)
    assert not naming.known and naming.names[0] == "Vertebra 1"
    assert naming.rule.startswith("levels not named: vertebra 3 is 2.3 times the volume of its neighbours")
    honoured = name_vertebrae(5, sacrum_below=True, lowest="L5", doubts=result.anomalies)
    assert honoured.names == ("L1", "L2", "L3", "L4", "L5")  # a level the user gives is still used


def test_a_missing_vertebra_leaves_a_gap_that_forbids_counting():
    labels = column(6)
    labels[labels == 3] = 0
    labels[labels > 3] -= 1
    result = check_column(labels, grid(labels), np.ones(5))
    assert result.count("kept") == 5 and len(result.anomalies) == 1
    assert "from vertebra 2 to 3 is 48 mm, 2.0 times the steps next to it" in result.anomalies[0]
    naming = name_vertebrae(5, sacrum_below=True, doubts=result.anomalies)
    assert not naming.known and "a vertebra is probably missing there" in naming.rule


@pytest.mark.parametrize("end", ["top", "bottom"])
def test_a_small_vertebra_cut_by_the_field_of_view_is_kept_as_it_is(end):
    labels = column(top_margin=MARGIN + 4)
    nz = labels.shape[2]
    labels[XY[0] : XY[0] + WIDTH, XY[1] : XY[1] + WIDTH, nz - 3 :] = 9  # a 4.7 mL slab cut by the top face
    if end == "bottom":
        labels = labels[:, :, ::-1].copy()
    labels = numbered_top_to_bottom(labels)
    confidence = np.array([0.0, 0.9, 0.9, 0.9, 0.9, 0.9]) if end == "top" else np.array([0.9] * 5 + [0.0])
    result = check_column(labels, grid(labels), confidence)
    np.testing.assert_array_equal(result.instances, labels)
    assert result.count("kept") == 6 and not result.anomalies
    np.testing.assert_allclose(result.confidence, confidence)


@pytest.mark.parametrize("end", ["top", "bottom"])
def test_a_sliver_of_a_vertebra_cut_by_the_field_of_view_is_dropped(end):
    """What the edge leaves of a vertebra beyond the end one (here 0.2 mL, 1 % of a vertebra) is no instance:
    too thin to segment, so a label for it would be a false vertebra."""
    labels = column(top_margin=MARGIN + 4)
    nz = labels.shape[2]
    labels[XY[0] + 4 : XY[0] + 9, XY[1] + 4 : XY[1] + 9, nz - 1 :] = 9  # 25 voxels in the top face
    if end == "bottom":
        labels = labels[:, :, ::-1].copy()
    labels = numbered_top_to_bottom(labels)
    sliver = 1 if end == "top" else 6
    result = check_column(labels, grid(labels), np.full(6, 0.9))
    assert decisions_by_action(result) == {"dropped": [sliver], "kept": [k for k in range(1, 7) if k != sliver]}
    dropped = next(d for d in result.decisions if d.action == "dropped")
    assert "0.20 mL, 1% of its neighbours' volume" in dropped.reason and "too little to segment" in dropped.reason
    assert not np.any(result.instances[labels == sliver])
    assert len(np.unique(result.instances)) == 6 and not result.anomalies


def test_specks_alone_are_no_spine():
    labels = np.zeros((40, 40, 40), np.int32)
    for k, (x, y, z) in enumerate([(5, 5, 5), (20, 30, 12), (30, 8, 25), (12, 20, 33)], start=1):
        labels[x : x + 3, y : y + 3, z : z + 3] = k  # 0.2 mL each
    labels = numbered_top_to_bottom(labels)
    with pytest.raises(NoSpineFoundError, match="no spine found: none of the 4 pieces") as info:
        check_column(labels, grid(labels), np.ones(4), source="noise.nii.gz")
    assert str(info.value).startswith("noise.nii.gz: ") and "Fix:" in str(info.value)


def test_vertebra_sized_blobs_that_do_not_stack_are_no_spine():
    labels = np.zeros((80, 80, 30), np.int32)
    for k, (x, y) in enumerate([(2, 2), (40, 4), (6, 44), (50, 50)], start=1):
        labels[x : x + 14, y : y + 14, 8 + 2 * k : 17 + 2 * k] = k  # side by side, none above another
    labels = numbered_top_to_bottom(labels)
    with pytest.raises(NoSpineFoundError, match="do not stack into a spinal column"):
        check_column(labels, grid(labels), np.ones(4))


def test_in_a_ct_a_column_without_bone_is_no_spine():
    labels = column()
    air_and_tissue = np.where(labels > 0, 40.0, -1000.0).astype(np.float32)
    geometry = grid(labels)
    with pytest.raises(NoSpineFoundError, match="5 soft tissue in this CT"):
        check_column(labels, geometry, np.ones(5), image=geometry.with_array(air_and_tissue, is_label=False))
    bone = np.where(labels > 0, 400.0, -1000.0).astype(np.float32)
    result = check_column(labels, geometry, np.ones(5), image=geometry.with_array(bone, is_label=False))
    assert result.count("kept") == 5
    mri_like = np.where(labels > 0, 40.0, 0.0).astype(np.float32)  # not HU: no bone test
    assert check_column(labels, geometry, np.ones(5), image=geometry.with_array(mri_like, is_label=False))


# ------------------------------------------------------------------------------------------ through the pipeline
@pytest.fixture(scope="module")
def lumbar_case():
    from spineinstanceseg.phantom import generate_phantom

    return generate_phantom(5, modality="ct", region="lumbar", spacing=(2.0, 2.0, 2.0))


def test_pipeline_with_two_vertebrae_in_one_does_not_count_from_the_sacrum(lumbar_case, monkeypatch):
    from spineinstanceseg.pipeline import segment
    from spineinstanceseg.stage2 import predict
    from spineinstanceseg.stage2.predict import Stage2Result

    truth = np.asarray(lumbar_case.instances.array).astype(np.int32)
    truth[truth == 26] = 0
    truth[truth == 22] = 21  # a stage 2 that sees L2 and L3 as one vertebra ...
    codes = [c for c in np.unique(truth) if c]
    lut = np.zeros(truth.max() + 1, np.int32)
    lut[codes] = np.arange(1, len(codes) + 1)  # ... and numbers them 1..N from the top, as stage 2 does
    split = lumbar_case.semantic.with_array(lut[truth].astype(np.int16))
    centroids = measure_instances(split.array, split).centroid_lps
    fake = Stage2Result(split, centroids, np.full(len(codes), 0.9), n_windows=0)
    monkeypatch.setattr(predict, "split_instances", lambda *args, **kwargs: fake)

    result = segment(lumbar_case.image, stage1=lumbar_case.semantic, stage2=object(), device="cpu")
    assert not result.levels_known
    assert result.naming_rule.startswith("levels not named: vertebra ")
    assert "probably two vertebrae in one" in result.naming_rule
    assert ": counting up from the sacrum would misname them (give the level of" in result.naming_rule
    flagged = [v for v in result.vertebrae if v.confidence <= DEFAULT_PARAMETERS.oversized_confidence]
    assert len(flagged) == 1 and flagged[0].volume_ml > 1.6 * np.median([v.volume_ml for v in result.vertebrae])
    assert any(w.startswith("check the result: vertebra ") for w in result.warnings)

    named = segment(lumbar_case.image, stage1=lumbar_case.semantic, stage2=object(), device="cpu", lowest="L5")
    assert named.levels_known and named.vertebrae[-1].name == "L5"  # the user's level is honoured ...
    assert any(w.startswith("levels named from the level you gave (L5) although") for w in named.warnings)


def test_pipeline_drops_a_bone_beside_the_spine_that_stage_1_called_vertebra(lumbar_case):
    from spineinstanceseg.pipeline import segment
    from spineinstanceseg.semantic import VERTEBRA
    from spineinstanceseg.stage2.model import load_bundled_model

    semantic = np.asarray(lumbar_case.semantic.array).copy()
    instances = np.asarray(lumbar_case.instances.array)
    l3 = np.argwhere(instances == 22)
    lo, hi = l3.min(axis=0), l3.max(axis=0)
    x0 = min(hi[0] + 12, semantic.shape[0] - 10)  # about 6 cm to the side of L3: a piece of pelvis or rib
    blob = (slice(x0, x0 + 8), slice(lo[1], lo[1] + 10), slice(lo[2], lo[2] + 10))
    assert not semantic[blob].any()
    semantic[blob] = VERTEBRA
    mask = lumbar_case.semantic.with_array(semantic)
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    result = segment(lumbar_case.image, stage1=mask, stage2=load_bundled_model(device="cpu"), device="cpu")
    assert not np.asarray(result.instances.array)[blob].any()  # background, not a vertebra
    assert any(w.startswith("dropped 1 non-spine component(s)") for w in result.warnings), result.warnings
    assert [v.name for v in result.vertebrae][-5:] == ["L1", "L2", "L3", "L4", "L5"]


def test_a_small_lowest_vertebra_above_the_sacrum_is_no_ground_for_naming(lumbar_case, monkeypatch):
    """Stage 1 called the top of S1 vertebra and fusion left it as the lowest vertebra (an unseen CT phantom: 8 mL
    under a 60 mL L5); counting up from it named every vertebra one level too high."""
    from scipy import ndimage

    from spineinstanceseg.pipeline import segment
    from spineinstanceseg.semantic import DISC, SACRUM, VERTEBRA
    from spineinstanceseg.stage2 import predict
    from spineinstanceseg.stage2.predict import Stage2Result

    codes = np.asarray(lumbar_case.instances.array).astype(np.int32)
    vertebrae = [c for c in np.unique(codes) if 0 < c < 26]
    ordinal = np.zeros(codes.shape, np.int32)
    for k, code in enumerate(vertebrae, start=1):
        ordinal[codes == code] = k
    below_l5 = (codes == 26) | (np.asarray(lumbar_case.semantic.array) == DISC)  # the sacrum and the discs
    near_l5 = ndimage.distance_transform_edt(ordinal != len(vertebrae), sampling=lumbar_case.image.spacing) <= 12.0
    # the L5-S1 disc and the top of S1, called vertebra by stage 1 and split off as the lowest vertebra: it touches
    # L5, and L5 with it would be too large for a merge
    s1_top = below_l5 & near_l5 & (ordinal == 0)
    z = lumbar_case.image.index_to_world(np.argwhere(s1_top))[:, 2]
    l5_bottom = lumbar_case.image.index_to_world(np.argwhere(ordinal == len(vertebrae)))[:, 2].min()
    s1_top[tuple(np.argwhere(s1_top)[z > l5_bottom + 2.0].T)] = False  # not the discs beside L5 or above it
    ordinal[s1_top] = len(vertebrae) + 1
    semantic = np.asarray(lumbar_case.semantic.array).copy()
    semantic[s1_top] = VERTEBRA
    mask = lumbar_case.semantic.with_array(semantic)
    share = s1_top.sum() / np.median(np.bincount(ordinal.ravel())[1:-1])
    assert share < DEFAULT_PARAMETERS.small_ratio and np.any(semantic == SACRUM)
    split = mask.with_array(ordinal.astype(np.int16))
    fake = Stage2Result(split, measure_instances(split.array, split).centroid_lps, np.full(ordinal.max(), 0.9), 0)
    monkeypatch.setattr(predict, "split_instances", lambda *args, **kwargs: fake)

    result = segment(lumbar_case.image, stage1=mask, stage2=object(), device="cpu", bone_boundary=False)

    assert len(result.vertebrae) == len(vertebrae) + 1  # the piece is kept: merged, L5 would be too large
    assert not result.levels_known
    assert "it may be a piece of the sacrum" in result.naming_rule


@pytest.mark.parametrize("from_model", [False, True], ids=["given mask", "stage-1 prediction"])
def test_pipeline_keeps_a_sliver_at_the_edge_only_in_a_mask_you_give(lumbar_case, monkeypatch, from_model):
    """A 0.2 mL sliver of a vertebra in the top face: from a model it is a false vertebra (dropped); in a mask the
    user gives it is what the mask says (kept)."""
    from spineinstanceseg.pipeline import segment
    from spineinstanceseg.semantic import VERTEBRA
    from spineinstanceseg.stage1.sources import MaskSource
    from spineinstanceseg.stage2 import predict
    from spineinstanceseg.stage2.predict import Stage2Result

    truth = np.asarray(lumbar_case.instances.array).astype(np.int32)
    semantic = np.asarray(lumbar_case.semantic.array).copy()
    semantic[truth == 19] = 0  # without T12 (cut by the top face), L1 is the top vertebra, 6 mm below the face
    truth[(truth == 26) | (truth == 19)] = 0
    codes = [c for c in np.unique(truth) if c]
    lut = np.zeros(truth.max() + 1, np.int32)
    lut[codes] = np.arange(2, len(codes) + 2)  # 1 is the sliver, above them all
    split = lut[truth]
    x, y, _ = np.round(np.argwhere(split == 2).mean(axis=0)).astype(int)
    assert not split[..., -1].any()
    split[x - 2 : x + 3, y - 2 : y + 3, -1] = 1
    semantic[split == 1] = VERTEBRA
    split_volume = lumbar_case.semantic.with_array(split.astype(np.int16))
    centroids = measure_instances(split, split_volume).centroid_lps
    fake = Stage2Result(split_volume, centroids, np.full(len(codes) + 1, 0.9), n_windows=0)
    monkeypatch.setattr(predict, "split_instances", lambda *args, **kwargs: fake)

    stage1 = MaskSource(lumbar_case.semantic.with_array(semantic), from_model=from_model)
    result = segment(lumbar_case.image, stage1=stage1, stage2=object(), device="cpu", bone_boundary=False)
    assert len(result.vertebrae) == len(codes) + (0 if from_model else 1)
    sliver_dropped = any("is too little to segment" in w for w in result.warnings)
    assert sliver_dropped == from_model
    sliver_kept = bool(np.any(np.asarray(result.instances.array)[split == 1]))
    assert sliver_kept == (not from_model)
