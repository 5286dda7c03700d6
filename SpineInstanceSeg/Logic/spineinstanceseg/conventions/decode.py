"""Reading label maps of any supported convention into the internal (instances, semantic) pair.

Internal convention (what :func:`to_internal` returns):

* ``instances``: one value per vertebra. VerSe codes (:mod:`spineinstanceseg.levels`) when the convention
  carries the level; otherwise 1..N numbered from head to feet (world superior = +z LPS) and
  ``levels_known=False``. The sacrum is never an instance: it is the SACRUM class of the semantic map.
* ``semantic``: :mod:`spineinstanceseg.semantic` classes (vertebra, disc, canal, sacrum).

SPIDER numbers vertebrae relative to the bottom of the image (label 1 = the lowest labelled vertebra, which the
challenge documents as L5). Because transitional anatomy (L6, sacralised L5) makes "1 = L5" unsafe, a SPIDER map
is read with ``levels_known=False`` unless the caller names the level of SPIDER label 1 (``lowest_level="L5"``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from ..convention_names import CONVENTIONS
from ..errors import ConventionError, InputError
from ..levels import L6_CODE, T13_CODE, level_code, level_sequence
from ..semantic import CANAL, DISC, SACRUM, SEMANTIC_NAMES, VERTEBRA
from ..volume import Volume
from . import tables as T
from .arrays import apply_lut, order_top_to_bottom, present_values
from .detect import detect_convention

__all__ = ["ConvertedLabels", "CONVENTIONS", "to_internal"]


@dataclass(frozen=True)
class ConvertedLabels:
    """A label map read into the internal convention.

    Attributes:
        instances: Instance label map (VerSe codes if ``levels_known``, else 1..N from the top), int32.
        semantic: Semantic label map (:mod:`spineinstanceseg.semantic` classes), uint8.
        convention: Name of the convention that was read.
        levels_known: True when the instance values are VerSe codes determined by the source labels.
        source_labels: Internal instance value -> the original label values merged into it.
        partial: Instance values of vertebrae marked as only partly in view (SPIDER 101-125).
        notes: Approximations made while converting, for reports.
    """

    instances: Volume
    semantic: Volume
    convention: str
    levels_known: bool
    source_labels: dict[int, tuple[int, ...]] = field(default_factory=dict)
    partial: tuple[int, ...] = ()
    notes: tuple[str, ...] = ()


@dataclass
class _Spec:
    """How one convention's values map: vertebra value -> code/rank, value -> semantic class, ignored values."""

    vertebrae: dict[int, int]
    semantic: dict[int, int]
    ignored: frozenset[int] = frozenset()
    levels_known: bool = True
    notes: dict[int, str] = field(default_factory=dict)  # value -> note added when the value is present


def _verse() -> _Spec:
    return _Spec(
        {c: c for c in T.VERSE_VERTEBRA_CODES},
        {26: SACRUM},
        frozenset({27}),
        notes={27: "coccyx (27) was dropped: no internal class"},
    )


def _totalseg_total() -> _Spec:
    spine = {*T.TOTALSEG_TOTAL_VERTEBRAE, *T.TOTALSEG_TOTAL_SACRUM, T.TOTALSEG_TOTAL_CORD}
    return _Spec(
        dict(T.TOTALSEG_TOTAL_VERTEBRAE),
        {**{v: SACRUM for v in T.TOTALSEG_TOTAL_SACRUM}, T.TOTALSEG_TOTAL_CORD: CANAL},
        frozenset(set(range(1, T.TOTALSEG_TOTAL_N_CLASSES + 1)) - spine),
        notes={T.TOTALSEG_TOTAL_CORD: "spinal_cord (79) was read as the canal class (cord only, thinner than canal)"},
    )


def _totalseg_vertebrae_mr() -> _Spec:
    return _Spec(dict(T.TOTALSEG_VERTEBRAE_MR), {T.TOTALSEG_VERTEBRAE_MR_SACRUM: SACRUM})


def _totalseg_total_mr() -> _Spec:
    spine = {18, 19, 20, 21}
    return _Spec(
        {T.TOTALSEG_TOTAL_MR_VERTEBRAE: 1},
        {
            T.TOTALSEG_TOTAL_MR_SACRUM: SACRUM,
            T.TOTALSEG_TOTAL_MR_DISCS: DISC,
            T.TOTALSEG_TOTAL_MR_CORD: CANAL,
        },
        frozenset(set(range(1, T.TOTALSEG_TOTAL_MR_N_CLASSES + 1)) - spine),
        levels_known=False,
        notes={
            19: "total_mr has one class for all vertebrae: instances are its 6-connected components "
            "(touching vertebrae merge), numbered from the top, levels unknown",
            21: "spinal_cord (21) was read as the canal class (cord only, thinner than canal)",
        },
    )


def _totalspineseg() -> _Spec:
    return _Spec(
        dict(T.TOTALSPINESEG_VERTEBRAE),
        {
            T.TOTALSPINESEG_SACRUM: SACRUM,
            **{v: CANAL for v in T.TOTALSPINESEG_CANAL},
            **{v: DISC for v in T.TOTALSPINESEG_DISCS},
        },
    )


def _spineps() -> _Spec:
    codes = T.VERSE_VERTEBRA_CODES
    return _Spec(
        {**{c: c for c in codes}, **{200 + c: c for c in codes}},  # endplate 200+X is part of vertebra X
        {26: SACRUM, 226: SACRUM, **{100 + c: DISC for c in codes}},
        notes={200 + c: "endplates (200+X) were merged into vertebra X" for c in codes},
    )


def _spineps_subregions() -> _Spec:
    return _Spec({}, dict(T.SPINEPS_SUBREGIONS), levels_known=False)


def _semantic() -> _Spec:
    return _Spec({}, {v: v for v in SEMANTIC_NAMES}, levels_known=False)


def _spider() -> _Spec:
    # Vertebra k (1-25) and partly visible vertebra 100+k share rank k (from the bottom).
    return _Spec(
        {**{k: k for k in range(1, 26)}, **{100 + k: k for k in range(1, 26)}},
        {100: CANAL, **{200 + k: DISC for k in range(1, 26)}},
        levels_known=False,
    )


_SPECS: dict[str, Callable[[], _Spec]] = {
    "internal": _verse,
    "verse": _verse,
    "instances": lambda: _Spec({}, {}, levels_known=False),  # any positive value is one vertebra
    "semantic": _semantic,
    "spider": _spider,
    "totalseg_total": _totalseg_total,
    "totalseg_vertebrae_mr": _totalseg_vertebrae_mr,
    "totalseg_total_mr": _totalseg_total_mr,
    "totalspineseg": _totalspineseg,
    "spineps": _spineps,
    "spineps_subregions": _spineps_subregions,
}

if tuple(_SPECS) != CONVENTIONS:  # the names the Slicer module lists without importing this package
    raise RuntimeError(f"spineinstanceseg.convention_names lists {CONVENTIONS}, the conversions are {tuple(_SPECS)}")


def _check_name(convention: str) -> str:
    name = convention.strip().lower().replace("-", "_")
    if name not in _SPECS:
        raise InputError(f"unknown label convention {convention!r}", fix=f"use one of {', '.join(CONVENTIONS)}")
    return name


def _as_volume(labels: Volume | NDArray) -> Volume:
    if isinstance(labels, Volume):
        return labels if labels.is_label else labels.as_label()
    array = np.asarray(labels)
    if array.dtype == bool:
        array = array.astype(np.uint8)
    return Volume(array, is_label=True)


def _unknown_error(values: list[int], convention: str, array: NDArray) -> ConventionError:
    shown = ", ".join(str(v) for v in values[:20]) + (" ..." if len(values) > 20 else "")
    guess = detect_convention(array)
    hint = f"; these labels look like the '{guess}' convention" if guess and guess != convention else ""
    return ConventionError(
        f"the label map holds values {shown} that the '{convention}' convention does not define",
        fix=f"pass the convention the map was made with (one of {', '.join(CONVENTIONS)}){hint}, or relabel it",
    )


def _spider_codes(ranks: list[int], lowest_level: str) -> dict[int, int]:
    code = level_code(lowest_level)
    sequence = level_sequence(with_t13=code == T13_CODE, with_l6=code == L6_CODE)
    if code not in sequence:
        raise InputError(
            f"SPIDER label 1 cannot be {lowest_level!r}", fix="name a mobile vertebra such as L5, L6 or L4"
        )
    bottom = sequence.index(code)
    out = {}
    for k in ranks:
        if bottom - (k - 1) < 0:
            raise InputError(
                f"SPIDER label {k} would lie above C1 when label 1 is {lowest_level}",
                fix="check the level given for SPIDER label 1",
            )
        out[k] = sequence[bottom - (k - 1)]
    return out


def to_internal(labels: Volume | NDArray, convention: str, *, lowest_level: str | None = None) -> ConvertedLabels:
    """Read a label map of ``convention`` into internal instance and semantic maps on the same grid.

    Args:
        labels: Label map (a plain array is taken as unit spacing, identity direction).
        convention: One of :data:`CONVENTIONS`.
        lowest_level: SPIDER only: the level of SPIDER label 1 (e.g. ``"L5"``); makes the levels known.

    Raises:
        ConventionError: values the convention does not define (listed in the message).
        InputError: unknown convention name, or ``lowest_level`` for a convention other than SPIDER.
    """
    name = _check_name(convention)
    volume = _as_volume(labels)
    if lowest_level is not None and name != "spider":
        raise InputError("lowest_level applies only to SPIDER label maps", fix="leave it out for other conventions")
    array = np.asarray(volume.array)
    spec = _SPECS[name]()
    present = present_values(array, convention=name)
    if name == "instances":
        spec.vertebrae = {v: v for v in present}
    unknown = [v for v in present if v not in spec.vertebrae and v not in spec.semantic and v not in spec.ignored]
    if unknown:
        raise _unknown_error(unknown, name, array)
    notes = sorted({spec.notes[v] for v in present if v in spec.notes})
    semantic = apply_lut(array, {**{v: VERTEBRA for v in spec.vertebrae}, **spec.semantic}, dtype=np.uint8)
    raw = apply_lut(array, spec.vertebrae)  # code (levels known) or rank/marker
    sources: dict[int, list[int]] = {}
    for v in present:
        if v in spec.vertebrae:
            sources.setdefault(spec.vertebrae[v], []).append(v)
    levels_known = spec.levels_known
    partial: tuple[int, ...] = ()
    if name == "totalseg_total_mr":
        raw, count = ndimage.label(raw > 0)
        sources = {k: [T.TOTALSEG_TOTAL_MR_VERTEBRAE] for k in range(1, count + 1)}
    if name == "spider":
        ranks = sorted(sources)
        if lowest_level is not None:
            mapping = _spider_codes(ranks, lowest_level)
            levels_known = True
            notes.append(f"SPIDER label 1 was taken as {lowest_level} (given by the user)")
        else:
            top = max(ranks, default=0)
            mapping = {k: top + 1 - k for k in ranks}  # 1..N from the top
            notes.append("SPIDER numbers vertebrae from the bottom of the image; levels left unknown")
        partial = tuple(sorted(mapping[k] for k in ranks if any(s > 100 for s in sources[k])))
        raw = apply_lut(raw, mapping)
        sources = {mapping[k]: src for k, src in sources.items()}
    if not levels_known and name != "spider" and sources:
        order = order_top_to_bottom(volume, raw)
        mapping = {old: new for new, old in enumerate(order, start=1)}
        raw = apply_lut(raw, mapping)
        sources = {mapping[k]: src for k, src in sources.items() if k in mapping}
    return ConvertedLabels(
        instances=volume.with_array(raw.astype(np.int32), is_label=True),
        semantic=volume.with_array(semantic, is_label=True),
        convention=name,
        levels_known=levels_known and bool(sources),
        source_labels={k: tuple(v) for k, v in sorted(sources.items())},
        partial=partial,
        notes=tuple(notes),
    )
