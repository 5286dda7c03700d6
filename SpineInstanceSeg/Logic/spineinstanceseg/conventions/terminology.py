"""DICOM / SNOMED-CT terminology of the segments, as Slicer's ``TerminologyEntry`` strings.

Format (Slicer segmentation terminology tag; fields separated by ``~``, codes as ``scheme^value^meaning``)::

    <category-and-type context>~<category>~<type>~<type modifier>~<anatomic context>~<region>~<region modifier>

Codes: vertebrae C1-L5 from DICOM CID 7603 ("Vertebra"), level-specific discs from CID 7604 ("Intervertebral
Disc"), the sacrum, the generic intervertebral disc and the spinal cord from SNOMED-CT. Levels without a SNOMED
code (L6, T13) and vertebrae whose level is unknown are coded as tissue "Bone" so that no level is implied.
The spinal canal class (CSF + cord) has no code of its own in the lists Slicer ships; it is coded as "Spinal cord",
the closest standard structure (the segment name still says "Spinal canal").
"""

from __future__ import annotations

from ..levels import CODE_TO_LEVEL, SACRUM_CODE

__all__ = [
    "CONTEXT",
    "ANATOMIC_CONTEXT",
    "vertebra_terminology",
    "disc_terminology",
    "canal_terminology",
    "sacrum_terminology",
]

CONTEXT = "Segmentation category and type - DICOM master list"
ANATOMIC_CONTEXT = "Anatomic codes - DICOM master list"

_ANATOMICAL_STRUCTURE = "SCT^123037004^Anatomical Structure"
_TISSUE = "SCT^85756007^Tissue"
_BONE = "SCT^272673000^Bone"
_EMPTY = "^^"

# DICOM CID 7603, keyed by VerSe code (1-7 C1-C7, 8-19 T1-T12, 20-24 L1-L5).
_VERTEBRA_SCT: dict[int, str] = {
    1: "14806007",
    2: "39976000",
    3: "113205007",
    4: "5329002",
    5: "36978003",
    6: "36054005",
    7: "87391001",
    8: "64864005",
    9: "53733008",
    10: "1626008",
    11: "73071006",
    12: "56401006",
    13: "45296009",
    14: "62487009",
    15: "11068009",
    16: "82687006",
    17: "7610001",
    18: "12989004",
    19: "23215003",
    20: "66794005",
    21: "14293000",
    22: "36470004",
    23: "11994002",
    24: "49668003",
}
_SACRUM_SCT = "54735007"

# DICOM CID 7604, keyed by the VerSe code of the vertebra above the disc (the one below is the next level).
_DISC_SCT: dict[int, str] = {
    2: "1078209008",
    3: "58820006",
    4: "49400002",
    5: "73959003",
    6: "75095006",
    7: "37414007",
    8: "40908007",
    9: "6004007",
    10: "2620004",
    11: "82965004",
    12: "72692000",
    13: "74401007",
    14: "28693002",
    15: "9188009",
    16: "113209001",
    17: "34959001",
    18: "1537001",
    19: "76206002",
    20: "80064006",
    21: "67459009",
    22: "62551000",
    23: "84020006",
    24: "715056000",  # L5/S1
}
_DISC_GENERIC = "SCT^360499006^Intervertebral disc"
_SPINAL_CORD = "SCT^2748008^Spinal cord"


def _entry(category: str, type_: str) -> str:
    return "~".join((CONTEXT, category, type_, _EMPTY, ANATOMIC_CONTEXT, _EMPTY, _EMPTY))


def vertebra_terminology(level_code: int | None) -> str:
    """Terminology of one vertebra (its level's SNOMED code when the level is known and coded)."""
    if level_code is not None and int(level_code) == SACRUM_CODE:
        return sacrum_terminology()
    if level_code is not None and int(level_code) in _VERTEBRA_SCT:
        code = int(level_code)
        return _entry(_ANATOMICAL_STRUCTURE, f"SCT^{_VERTEBRA_SCT[code]}^{CODE_TO_LEVEL[code]} vertebra")
    return _entry(_TISSUE, _BONE)


def disc_terminology(above_code: int | None, below_code: int | None) -> str:
    """Terminology of the disc between two vertebrae (level-specific when both levels are known and adjacent)."""
    if above_code is not None and below_code is not None and int(above_code) in _DISC_SCT:
        above, below = int(above_code), int(below_code)
        expected_below = SACRUM_CODE if above == 24 else above + 1
        if below == expected_below:
            below_name = "S1" if below == SACRUM_CODE else CODE_TO_LEVEL[below]
            return _entry(_ANATOMICAL_STRUCTURE, f"SCT^{_DISC_SCT[above]}^{CODE_TO_LEVEL[above]}/{below_name} disc")
    return _entry(_ANATOMICAL_STRUCTURE, _DISC_GENERIC)


def canal_terminology() -> str:
    return _entry(_ANATOMICAL_STRUCTURE, _SPINAL_CORD)


def sacrum_terminology() -> str:
    return _entry(_ANATOMICAL_STRUCTURE, f"SCT^{_SACRUM_SCT}^Sacrum")
