"""What a named segment is: its semantic class (and level) from its terminology or its name.

A label map carries numbers whose meaning depends on its convention (:mod:`.decode`); a Slicer segmentation carries
names and terminology instead. This module reads those, for every convention the library supports:

* **terminology** (Slicer ``TerminologyEntry`` strings, SNOMED-CT type codes): the codes this library writes
  (:mod:`spineinstanceseg.conventions.terminology`: C1-L5 vertebrae, sacrum, level discs, intervertebral disc, spinal
  cord) plus those SlicerTotalSegmentator sets (its ``totalsegmentator_snomed_mapping.csv``): "S1 vertebra"
  (SCT 65985001, TotalSegmentator's ``vertebrae_S1``), "Vertebra" (SCT 51282000, ``vertebrae`` of ``total_mr``)
  and "Vertebral body" (SCT 3572006, ``vertebrae_body``);
* **names** (segment name or ID): TotalSegmentator / TotalSpineSeg class names (``vertebrae_L1``,
  ``sacrum``, ``vertebrae_S1``, ``spinal_cord``, ``spinal_canal``, ``intervertebral_discs``, ``disc_L4_L5``),
  SlicerTotalSegmentator's standard names ("L1 vertebra", "Sacrum", "Spinal cord", "Intervertebral disc"),
  level names as this library and SPINEPS use them ("L1", "T13", "L6", "S1"), this library's own names
  ("Vertebra 3", "L3-L4 disc", "Spinal canal") and its semantic class names ("vertebra", "disc", "canal",
  "sacrum").

A segment whose terminology names another anatomical structure (TotalSegmentator's organs, for example) is not
part of the spine: it is reported with class :data:`NOT_SPINE`. Anything else gives ``None``: the caller must refuse
it rather than guess.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from ..levels import LEVEL_TO_CODE, SACRUM_CODE
from ..semantic import CANAL, DISC, SACRUM, SEMANTIC_NAMES, VERTEBRA
from .terminology import canal_terminology, disc_terminology, sacrum_terminology, vertebra_terminology

__all__ = ["NOT_SPINE", "SegmentClass", "classify_segment", "class_from_terminology", "class_from_name"]

NOT_SPINE = 0  # semantic "class" of a segment that names another structure (ignored, not refused)

# SNOMED-CT codes SlicerTotalSegmentator sets that this library does not write itself.
_S1_VERTEBRA = "65985001"
_VERTEBRA = "51282000"
_VERTEBRAL_BODY = "3572006"
_ANATOMICAL_STRUCTURE = "123037004"

_CANAL_NAMES = frozenset({"canal", "cord", "spinal canal", "spinal cord", "vertebral canal"})
_SACRUM_NAMES = frozenset({"sacrum", "os sacrum", "s", "s1", "vertebrae s1", "vertebra s1", "s1 vertebra"})
_VERTEBRA_NAMES = re.compile(r"^(vertebra|vertebrae|vertebral body|vertebrae body|vertebra body)( \d+)?$")
_LEVEL = r"(c[1-7]|t1[0-3]|t[1-9]|l[1-6])"
_LEVEL_NAMES = (
    re.compile(rf"^{_LEVEL}$"),
    re.compile(rf"^(?:vertebrae|vertebra) {_LEVEL}$"),
    re.compile(rf"^{_LEVEL} vertebra$"),
)


@dataclass(frozen=True)
class SegmentClass:
    """What a segment is.

    Attributes:
        semantic: A :mod:`spineinstanceseg.semantic` class, or :data:`NOT_SPINE` for another structure.
        level_code: VerSe code of a vertebra whose level the segment names, else ``None``.
        reason: How it was recognised, for logs and messages (e.g. "terminology 'L1 vertebra'").
    """

    semantic: int
    level_code: int | None = None
    reason: str = ""


def _type_code(terminology: str) -> tuple[str, str, str] | None:
    """``(scheme, value, meaning)`` of the type field of a ``TerminologyEntry`` string, if it has one."""
    fields = terminology.strip().rstrip("|").split("~")
    if len(fields) < 3:
        return None
    parts = fields[2].split("^")
    if len(parts) < 3 or not parts[1]:
        return None
    return parts[0], parts[1], parts[2]


def _code_value(terminology: str) -> str:
    found = _type_code(terminology)
    if found is None:
        raise ValueError(f"no type code in terminology {terminology!r}")
    return found[1]


def _category_value(terminology: str) -> str | None:
    fields = terminology.strip().rstrip("|").split("~")
    parts = fields[1].split("^") if len(fields) > 1 else []
    return parts[1] if len(parts) > 1 else None


@lru_cache(maxsize=1)
def _spine_codes() -> dict[str, tuple[int, int | None]]:
    """SNOMED-CT type code -> (semantic class, level code), from the terminology this library writes."""
    codes: dict[str, tuple[int, int | None]] = {}
    for level in range(1, 25):  # C1-L5: the levels with a code of their own
        found = _type_code(vertebra_terminology(level))
        if found is not None:
            codes[found[1]] = (VERTEBRA, level)
    for above in range(1, 25):
        below = SACRUM_CODE if above == 24 else above + 1
        found = _type_code(disc_terminology(above, below))
        if found is not None:
            codes[found[1]] = (DISC, None)
    for entry, semantic in ((disc_terminology(None, None), DISC), (canal_terminology(), CANAL)):
        codes[_code_value(entry)] = (semantic, None)
    codes[_code_value(sacrum_terminology())] = (SACRUM, None)
    codes[_S1_VERTEBRA] = (SACRUM, None)
    codes[_VERTEBRA] = (VERTEBRA, None)
    codes[_VERTEBRAL_BODY] = (VERTEBRA, None)
    return codes


def class_from_terminology(terminology: str | None) -> SegmentClass | None:
    """The class a ``TerminologyEntry`` string names; :data:`NOT_SPINE` for another anatomical structure;
    ``None`` when the entry does not tell (no type, or a generic tissue type such as "Bone")."""
    if not terminology:
        return None
    found = _type_code(terminology)
    if found is None or found[0].upper() not in ("SCT", "SRT"):
        return None
    _, value, meaning = found
    known = _spine_codes().get(value)
    if known is not None:
        return SegmentClass(known[0], known[1], f"terminology {meaning!r}")
    if _category_value(terminology) == _ANATOMICAL_STRUCTURE:
        return SegmentClass(NOT_SPINE, None, f"terminology {meaning!r} (not part of the spine)")
    return None


def _normalise(name: str) -> str:
    text = re.sub(r"[_\-/.]+", " ", name.strip().lower())
    return re.sub(r"\s+", " ", text).strip()


def _level_of(text: str) -> int | None:
    for pattern in _LEVEL_NAMES:
        match = pattern.match(text)
        if match:
            return LEVEL_TO_CODE[match.group(1).upper()]
    return None


def class_from_name(name: str | None) -> SegmentClass | None:
    """The class a segment name (or ID) names, or ``None`` when it names nothing this module knows."""
    if not name or not name.strip():
        return None
    text = _normalise(name)
    why = f"name {name.strip()!r}"
    if text in _SACRUM_NAMES:
        return SegmentClass(SACRUM, None, why)
    level = _level_of(text)
    if level is not None:
        return SegmentClass(VERTEBRA, level, why)
    if text in _CANAL_NAMES:
        return SegmentClass(CANAL, None, why)
    if _VERTEBRA_NAMES.match(text):
        return SegmentClass(VERTEBRA, None, why)
    tokens = text.split(" ")
    if "disc" in tokens or "discs" in tokens:
        return SegmentClass(DISC, None, why)
    by_semantic_name = {value: key for key, value in SEMANTIC_NAMES.items()}
    if text in by_semantic_name:
        return SegmentClass(by_semantic_name[text], None, why)
    return None


def classify_segment(*, name: str, segment_id: str = "", terminology: str | None = None) -> SegmentClass | None:
    """What a segment is: a spine code in its terminology first, then its name, then its ID; a terminology that
    names another anatomical structure gives :data:`NOT_SPINE`; ``None`` when nothing tells (refuse it)."""
    by_terminology = class_from_terminology(terminology)
    if by_terminology is not None and by_terminology.semantic != NOT_SPINE:
        return by_terminology
    for text in (name, segment_id):
        by_name = class_from_name(text)
        if by_name is not None:
            return by_name
    return by_terminology
