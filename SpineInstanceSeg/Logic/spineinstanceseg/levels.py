"""Vertebral levels and their VerSe codes (the internal instance convention when a level is known).

VerSe codes: 1-7 C1-C7, 8-19 T1-T12, 20-24 L1-L5, 25 L6, 26 sacrum, 28 T13. When no rule determined the
levels, instances are numbered 1..N from top to bottom and named "Vertebra k" instead.
"""

from __future__ import annotations

from .errors import InputError

__all__ = [
    "LEVEL_TO_CODE",
    "CODE_TO_LEVEL",
    "SACRUM_CODE",
    "level_name",
    "level_code",
    "cranio_caudal_order",
    "level_sequence",
]

SACRUM_CODE = 26
T13_CODE = 28
L6_CODE = 25

LEVEL_TO_CODE: dict[str, int] = {}
for _i in range(1, 8):
    LEVEL_TO_CODE[f"C{_i}"] = _i
for _i in range(1, 13):
    LEVEL_TO_CODE[f"T{_i}"] = 7 + _i
for _i in range(1, 6):
    LEVEL_TO_CODE[f"L{_i}"] = 19 + _i
LEVEL_TO_CODE["L6"] = L6_CODE
LEVEL_TO_CODE["S"] = SACRUM_CODE
LEVEL_TO_CODE["T13"] = T13_CODE
CODE_TO_LEVEL: dict[int, str] = {code: name for name, code in LEVEL_TO_CODE.items()}

# Codes from head to feet; T13 sits after T12 and L6 after L5 when present.
_ORDER = [*range(1, 20), T13_CODE, *range(20, 25), L6_CODE, SACRUM_CODE]
_RANK = {code: rank for rank, code in enumerate(_ORDER)}


def level_name(code: int) -> str:
    """VerSe code -> level name ("L5", "S", ...)."""
    try:
        return CODE_TO_LEVEL[int(code)]
    except KeyError:
        raise InputError(
            f"{code} is not a VerSe vertebra code", fix="use 1-7 (C), 8-19 (T), 20-24 (L), 25 L6, 26 sacrum, 28 T13"
        ) from None


def level_code(name: str) -> int:
    """Level name ("l5", "C2", "S", "sacrum") -> VerSe code."""
    key = name.strip().upper()
    if key in ("SACRUM", "S1"):
        key = "S"
    try:
        return LEVEL_TO_CODE[key]
    except KeyError:
        raise InputError(
            f"unknown vertebral level {name!r}", fix="use a level such as C1-C7, T1-T12, T13, L1-L5, L6 or S"
        ) from None


def cranio_caudal_order(code: int) -> int:
    """Rank of a VerSe code from head (0) to feet; sorts T13 between T12 and L1, L6 between L5 and sacrum."""
    try:
        return _RANK[int(code)]
    except KeyError:
        raise InputError(f"{code} is not a VerSe vertebra code", fix="see spineinstanceseg.levels") from None


def level_sequence(*, with_t13: bool = False, with_l6: bool = False) -> list[int]:
    """VerSe codes of the mobile vertebrae from C1 down to the lowest lumbar level of this patient."""
    codes = list(range(1, 20))
    if with_t13:
        codes.append(T13_CODE)
    codes.extend(range(20, 25))
    if with_l6:
        codes.append(L6_CODE)
    return codes
