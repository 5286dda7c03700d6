"""Label conventions: reading every supported convention into internal maps, writing back, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import oblique_direction

from spineinstanceseg.conventions import CONVENTIONS, detect_convention, from_internal, to_internal
from spineinstanceseg.errors import ConventionError, InputError
from spineinstanceseg.semantic import CANAL, DISC, SACRUM, VERTEBRA
from spineinstanceseg.volume import Volume

# A toy lumbar spine along +z (world superior for an identity direction): sacrum at the bottom, then
# L5, L4, L3 with a disc below each, and a canal behind the column.
LEVELS = ("L5", "L4", "L3")
CODES = (24, 23, 22)


def _toy_internal(direction: np.ndarray | None = None) -> tuple[Volume, Volume]:
    inst = np.zeros((12, 14, 46), np.int32)
    sem = np.zeros_like(inst, dtype=np.uint8)
    sem[2:10, 2:8, 0:6] = SACRUM
    for i, code in enumerate(CODES):
        z0 = 9 + 12 * i
        sem[2:10, 2:8, z0 - 3 : z0] = DISC
        inst[2:10, 2:8, z0 : z0 + 9] = code
    sem[inst > 0] = VERTEBRA
    sem[3:9, 10:13, :] = CANAL
    kwargs = {"direction": direction} if direction is not None else {}
    return Volume(inst, (1.0, 1.0, 1.5), is_label=True, **kwargs), Volume(sem, (1.0, 1.0, 1.5), is_label=True, **kwargs)


def _spider_array() -> np.ndarray:
    """The toy spine written by hand in SPIDER labels: L5 = 1, its disc (L5/S1) = 201, canal 100, no sacrum."""
    inst, sem = _toy_internal()
    out = np.zeros(inst.shape, np.int32)
    for k, code in enumerate(CODES, start=1):
        out[inst.array == code] = k
        z0 = 9 + 12 * (k - 1)
        out[2:10, 2:8, z0 - 3 : z0] = 200 + k
    out[sem.array == CANAL] = 100
    return out


def test_spider_is_read_bottom_up_and_levels_stay_unknown_without_an_anchor():
    result = to_internal(_spider_array(), "spider")
    assert result.levels_known is False
    # 1..N from the top: SPIDER 3 (highest) -> 1, SPIDER 1 (lowest) -> 3.
    assert result.source_labels == {1: (3,), 2: (2,), 3: (1,)}
    top_slice = result.instances.array[5, 4, 40]
    assert top_slice == 1
    assert set(np.unique(result.semantic.array)) == {0, VERTEBRA, DISC, CANAL}
    assert any("from the bottom" in note for note in result.notes)


def test_spider_with_named_lowest_level_gives_verse_codes():
    result = to_internal(_spider_array(), "spider", lowest_level="L5")
    assert result.levels_known
    assert sorted(result.source_labels) == [22, 23, 24]  # L3, L4, L5
    inst, _ = _toy_internal()
    np.testing.assert_array_equal(result.instances.array, inst.array)


def test_spider_partial_vertebrae_are_instances_flagged_partial():
    array = _spider_array()
    array[array == 3] = 103  # the top vertebra is cut by the field of view
    result = to_internal(array, "spider", lowest_level="L5")
    assert result.partial == (22,)
    assert result.source_labels[22] == (103,)


@pytest.mark.parametrize("convention", ["verse", "spineps", "totalspineseg", "totalseg_total", "totalseg_vertebrae_mr"])
def test_round_trip_through_level_conventions(convention):
    inst, sem = _toy_internal()
    encoded = from_internal(inst, sem, convention, levels_known=True)
    back = to_internal(encoded, convention)
    assert back.levels_known
    np.testing.assert_array_equal(back.instances.array, inst.array)
    assert np.array_equal(back.semantic.array == SACRUM, sem.array == SACRUM)


def test_spider_round_trip_is_exact_both_ways():
    array = _spider_array()
    read = to_internal(array, "spider")
    np.testing.assert_array_equal(
        from_internal(read.instances, read.semantic, "spider", levels_known=False).array, array
    )
    read = to_internal(array, "spider", lowest_level="L5")
    np.testing.assert_array_equal(
        from_internal(read.instances, read.semantic, "spider", levels_known=True).array, array
    )


def test_disc_numbering_follows_world_superior_not_array_axis():
    upright = from_internal(*_toy_internal(), "spineps", levels_known=True).array
    # Upright (identity direction, +z superior): each disc is named after the vertebra above it (100 + code).
    assert (upright[5, 4, 7], upright[5, 4, 19], upright[5, 4, 31]) == (124, 123, 122)
    # Same arrays, z axis flipped in the direction matrix: index 0 is now the top of the patient. The disc at
    # index 7 has no vertebra above it (only the sacrum class), so it is named from L5 below it (L4's disc, 123);
    # the disc at 19 lies below L5 (124); the disc at 31 below L4 (123).
    flipped = from_internal(*_toy_internal(np.diag([1.0, 1.0, -1.0])), "spineps", levels_known=True).array
    assert (flipped[5, 4, 7], flipped[5, 4, 19], flipped[5, 4, 31]) == (123, 124, 123)


def test_totalseg_total_ignores_organs_and_maps_vertebrae():
    array = np.zeros((6, 6, 6), np.int32)
    array[0, 0, 0] = 5  # liver: a known TotalSegmentator class, not spine
    array[1, 1, 1] = 27  # L5
    array[2, 2, 2] = 50  # C1
    array[3, 3, 3] = 26  # vertebrae_S1 -> sacrum
    array[4, 4, 4] = 79  # spinal cord -> canal (noted)
    result = to_internal(array, "totalseg_total")
    assert result.instances.array[1, 1, 1] == 24 and result.instances.array[2, 2, 2] == 1
    assert result.instances.array[0, 0, 0] == 0 and result.semantic.array[0, 0, 0] == 0
    assert result.semantic.array[3, 3, 3] == SACRUM and result.semantic.array[4, 4, 4] == CANAL
    assert any("spinal_cord" in n for n in result.notes)


def test_total_mr_has_no_levels_and_splits_components_top_to_bottom():
    array = np.zeros((6, 6, 30), np.int32)
    array[1:5, 1:5, 2:8] = 19
    array[1:5, 1:5, 10:16] = 19
    array[1:5, 1:5, 8:10] = 20
    result = to_internal(array, "totalseg_total_mr")
    assert result.levels_known is False
    assert result.instances.array[2, 2, 12] == 1 and result.instances.array[2, 2, 4] == 2
    assert result.semantic.array[2, 2, 9] == DISC


def test_unknown_values_raise_convention_error_listing_them_and_a_hint():
    array = _spider_array()
    with pytest.raises(ConventionError) as info:
        to_internal(array, "verse")
    message = str(info.value)
    assert "100" in message and "201" in message and "'verse'" in message
    assert "spider" in message and "Fix:" in message


def test_unknown_convention_name_and_misplaced_anchor_are_input_errors():
    with pytest.raises(InputError, match="unknown label convention"):
        to_internal(np.zeros((2, 2, 2), np.int32), "nifti")
    with pytest.raises(InputError, match="only to SPIDER"):
        to_internal(np.zeros((2, 2, 2), np.int32), "verse", lowest_level="L5")


def test_writing_levels_without_known_levels_is_refused():
    inst, sem = _toy_internal()
    with pytest.raises(InputError, match="levels of these instances are unknown"):
        from_internal(inst, sem, "totalseg_total", levels_known=False)


def test_l6_cannot_be_written_to_totalsegmentator():
    inst, sem = _toy_internal()
    array = inst.array.copy()
    array[array == 24] = 25  # L6
    with pytest.raises(ConventionError, match="L6"):
        from_internal(inst.with_array(array), sem, "totalseg_vertebrae_mr", levels_known=True)


def test_instances_convention_orders_by_world_superior_for_oblique_volumes():
    array = np.zeros((8, 8, 30), np.int32)
    array[2:6, 2:6, 2:8] = 7
    array[2:6, 2:6, 20:26] = 3
    volume = Volume(array, (1.0, 1.0, 2.0), direction=oblique_direction(10.0), is_label=True)
    result = to_internal(volume, "instances")
    top = result.instances.array[3, 3, 22]  # larger index along +z ~ superior after a small rotation
    assert top == 1 and result.source_labels[1] == (3,)


def test_detect_convention_guesses_common_maps():
    assert detect_convention(_spider_array()) == "spider"
    inst, sem = _toy_internal()
    assert detect_convention(sem.array) == "semantic"
    assert detect_convention(from_internal(inst, sem, "totalspineseg", levels_known=True).array) == "totalspineseg"
    assert detect_convention(inst.array) == "verse"
    subregions = np.zeros((4, 4, 4), np.int32)
    subregions[0, 0, :] = (41, 49, 61, 100)
    assert detect_convention(subregions) == "spineps_subregions"
    assert to_internal(subregions, "spineps_subregions").semantic.array[0, 0].tolist() == [
        VERTEBRA,
        VERTEBRA,
        CANAL,
        DISC,
    ]
    assert set(CONVENTIONS) >= {"internal", "spider", "totalseg_total", "spineps", "totalspineseg"}
