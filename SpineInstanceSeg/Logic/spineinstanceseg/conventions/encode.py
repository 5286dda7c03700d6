"""Writing internal (instances, semantic) maps in another convention (the inverse of :func:`to_internal`).

Discs are numbered after the vertebra above them (:mod:`.discs`); a disc with no vertebra above in view is named
from the vertebra below it. Structures a convention has no label for (e.g. discs in VerSe) are left out and
logged. Conventions whose labels carry the level need ``levels_known=True``.
"""

from __future__ import annotations

import logging

import numpy as np
from numpy.typing import NDArray

from ..errors import ConventionError, InputError
from ..levels import L6_CODE, SACRUM_CODE, T13_CODE, level_name, level_sequence
from ..semantic import CANAL, DISC, SACRUM, VERTEBRA
from ..volume import Volume
from . import tables as T
from .arrays import apply_lut, present_values
from .decode import CONVENTIONS, _check_name
from .discs import disc_neighbours

__all__ = ["from_internal"]

log = logging.getLogger(__name__)

_NEEDS_LEVELS = {"internal", "verse", "totalseg_total", "totalseg_vertebrae_mr", "totalspineseg", "spineps"}


def _sequence(codes: list[int]) -> list[int]:
    return level_sequence(with_t13=T13_CODE in codes, with_l6=L6_CODE in codes)


def _code_above(code: int, sequence: list[int]) -> int | None:
    index = sequence.index(code) if code in sequence else -1
    return sequence[index - 1] if index > 0 else None


def _numbered_discs(
    instances: Volume, semantic: Volume, value_of: dict[int, int | None], from_below: dict[int, int | None]
) -> NDArray:
    """Disc voxels labelled ``value_of[above]`` (or ``from_below[below]`` when no vertebra above is in view)."""
    components, neighbours = disc_neighbours(instances, semantic)
    lut: dict[int, int] = {}
    for n in neighbours:
        value = value_of.get(n.above) if n.above is not None else None
        if value is None and n.below is not None:
            value = from_below.get(n.below)
        if value is None:
            log.info("a disc with no vertebra next to it was left out")
            continue
        lut[n.component] = value
    return apply_lut(components, lut)


def _put(out: NDArray, mask: NDArray, value: int) -> None:
    out[mask & (out == 0)] = value


def from_internal(instances: Volume, semantic: Volume, convention: str, *, levels_known: bool) -> Volume:
    """Encode internal maps in ``convention`` (same grid); the inverse of :func:`to_internal` where it can be.

    Args:
        instances: Instance map (VerSe codes when ``levels_known``, else 1..N from the top).
        semantic: Semantic map on the same grid.
        convention: Target convention (``spineps_subregions`` can only be read, not written).
        levels_known: Whether ``instances`` holds VerSe codes.

    Raises:
        InputError: grids differ, or the convention needs levels and ``levels_known`` is False.
        ConventionError: a level the target convention has no label for (e.g. L6 in TotalSegmentator).
    """
    name = _check_name(convention)
    _check_encodable(instances, semantic, name, levels_known=levels_known)
    inst = np.asarray(instances.array)
    sem = np.asarray(semantic.array)
    if name == "semantic":
        return semantic
    if name == "instances":
        return instances
    codes = present_values(inst, convention=name)
    if name in ("internal", "verse"):
        out = _encode_verse(inst, sem)
    elif name == "spider":
        out = _encode_spider(instances, semantic, codes, levels_known=levels_known)
    elif name == "totalseg_total_mr":
        out = _encode_totalseg_total_mr(inst, sem)
    else:
        out = _encode_by_level_table(instances, semantic, codes, name)
    dropped = [
        label
        for label, mask in (("discs", sem == DISC), ("canal", sem == CANAL), ("sacrum", sem == SACRUM))
        if np.any(mask & (out == 0))
    ]
    if dropped:
        log.info("the '%s' convention has no label for: %s (left out)", name, ", ".join(dropped))
    return instances.with_array(out, is_label=True)


def _check_encodable(instances: Volume, semantic: Volume, name: str, *, levels_known: bool) -> None:
    """Raise :class:`InputError` when the maps cannot be written in ``name``: other grids, a read-only
    convention, or one that labels vertebrae by level when the levels are unknown."""
    if not instances.same_grid(semantic):
        differences = "; ".join(instances.geometry_differences(semantic))
        raise InputError(
            f"instances and semantic maps are on different grids ({differences})",
            fix="resample one onto the other first",
        )
    if name == "spineps_subregions":
        raise InputError("spineps_subregions can be read but not written", fix=f"write one of {CONVENTIONS}")
    if name in _NEEDS_LEVELS and not levels_known:
        raise InputError(
            f"the '{name}' convention labels vertebrae by level, but the levels of these instances are unknown",
            fix="name the levels first (e.g. give the lowest level in view), or write 'instances' or 'spider'",
        )


def _encode_verse(inst: NDArray, sem: NDArray) -> NDArray:
    """VerSe (and internal): the instance codes as they are, the sacrum class as code 26 where no vertebra is."""
    out = np.zeros(inst.shape, dtype=np.int32)
    out[:] = inst
    _put(out, sem == SACRUM, SACRUM_CODE)
    return out


def _encode_spider(instances: Volume, semantic: Volume, codes: list[int], *, levels_known: bool) -> NDArray:
    """SPIDER: vertebrae numbered from the bottom (1 = lowest), canal 100, the disc below vertebra k 200 + k."""
    inst, sem = np.asarray(instances.array), np.asarray(semantic.array)
    out = np.zeros(inst.shape, dtype=np.int32)
    if levels_known:
        sequence = _sequence(codes)
        rank = {c: len(sequence) - sequence.index(c) for c in codes}
    else:
        top = max(codes, default=0)
        rank = {v: top + 1 - v for v in codes}
    out[:] = apply_lut(inst, rank)
    _put(out, sem == CANAL, 100)
    discs = _numbered_discs(
        instances, semantic, {v: 200 + k for v, k in rank.items()}, {v: 201 + k for v, k in rank.items()}
    )
    return np.where((out == 0) & (discs > 0), discs, out)


def _encode_totalseg_total_mr(inst: NDArray, sem: NDArray) -> NDArray:
    """TotalSegmentator ``total_mr``: one vertebrae class, sacrum 18, discs 20, canal 21."""
    out = np.zeros(inst.shape, dtype=np.int32)
    out[(inst > 0) | (sem == VERTEBRA)] = T.TOTALSEG_TOTAL_MR_VERTEBRAE
    for mask, value in ((sem == SACRUM, 18), (sem == DISC, 20), (sem == CANAL, 21)):
        _put(out, mask, value)
    return out


def _encode_by_level_table(instances: Volume, semantic: Volume, codes: list[int], name: str) -> NDArray:
    """The conventions with a label per level (TotalSegmentator ``total`` and ``vertebrae_mr``, TotalSpineSeg,
    SPINEPS): vertebrae through the convention's table, its sacrum, canal and disc labels where it has them.

    Raises:
        ConventionError: a level the convention has no label for.
    """
    inst, sem = np.asarray(instances.array), np.asarray(semantic.array)
    out = np.zeros(inst.shape, dtype=np.int32)
    canal = sem == CANAL
    inverse = {
        "totalseg_total": {c: v for v, c in T.TOTALSEG_TOTAL_VERTEBRAE.items()},
        "totalseg_vertebrae_mr": {c: v for v, c in T.TOTALSEG_VERTEBRAE_MR.items()},
        "totalspineseg": {c: v for v, c in T.TOTALSPINESEG_VERTEBRAE.items()},
        "spineps": {c: c for c in T.VERSE_VERTEBRA_CODES},
    }[name]
    missing = [c for c in codes if c not in inverse]
    if missing:
        raise ConventionError(
            f"the '{name}' convention has no label for {', '.join(level_name(c) for c in missing)}",
            fix="write the map as 'verse' or 'spineps' (which have L6 and T13), or relabel those vertebrae",
        )
    out[:] = apply_lut(inst, inverse)
    sacrum_value = {"totalseg_total": 25, "totalseg_vertebrae_mr": 1, "totalspineseg": 50, "spineps": 26}[name]
    _put(out, sem == SACRUM, sacrum_value)
    if name == "totalseg_total":
        _put(out, canal, T.TOTALSEG_TOTAL_CORD)
    if name == "totalspineseg":
        _put(out, canal, 2)
    if name in ("totalspineseg", "spineps"):
        sequence = _sequence(codes)
        disc_of = (
            {c: v for v, c in T.TOTALSPINESEG_DISCS.items()}
            if name == "totalspineseg"
            else {c: 100 + c for c in T.VERSE_VERTEBRA_CODES}
        )
        above_of = {c: disc_of.get(c) for c in codes}
        below_of = {c: disc_of.get(a) for c in codes if (a := _code_above(c, sequence)) is not None}
        discs = _numbered_discs(instances, semantic, above_of, below_of)
        out = np.where((out == 0) & (discs > 0), discs, out)
    return out
