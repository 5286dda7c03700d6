"""Segment colours: the same level always gets the same colour, and touching vertebrae never look alike."""

from __future__ import annotations

import itertools

import numpy as np

from spineinstanceseg.levels import LEVEL_TO_CODE, cranio_caudal_order
from spineinstanceseg.outputs import level_color, vertebra_color


def _distance(a, b) -> float:
    return float(np.linalg.norm(np.subtract(a, b)))


def test_neighbouring_levels_have_clearly_different_colours():
    codes = sorted(LEVEL_TO_CODE.values(), key=cranio_caudal_order)
    for upper, lower in itertools.pairwise(codes):
        assert _distance(level_color(upper), level_color(lower)) > 0.3, (upper, lower)
    for upper, lower in zip(codes, codes[2:], strict=False):  # two apart also share a disc's neighbourhood
        assert _distance(level_color(upper), level_color(lower)) > 0.15, (upper, lower)
    assert all(0.0 <= c <= 1.0 for code in codes for c in level_color(code))


def test_colour_depends_on_the_level_not_on_the_position_in_the_result():
    # L4 is the 2nd vertebra of an L3-L5 result and the 4th of an L1-L5 result: same colour both times.
    assert vertebra_color(23, 2) == vertebra_color(23, 4) == level_color(23)
    # Without levels, colours follow the position and neighbours still differ.
    unnamed = [vertebra_color(None, k) for k in range(1, 25)]
    assert all(_distance(a, b) > 0.3 for a, b in itertools.pairwise(unnamed))
