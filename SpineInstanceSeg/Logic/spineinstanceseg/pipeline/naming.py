"""Naming vertebrae by level, only when a rule determines the level.

Rules, in order of precedence:

1. the user names the lowest vertebra in view (``lowest="L5"``);
2. the user names the highest vertebra in view (``anchor="C2"``);
3. the sacrum is in view directly below the lowest vertebra: that vertebra is L5 (L6 when the user says the
   patient has six lumbar vertebrae) -- unless the column has doubts (an instance that probably holds two
   vertebrae, a gap where one is probably missing; see :mod:`spineinstanceseg.stage2.sanity`): counting across
   them would misname every level above, so the levels are then not named and the rule says why;
4. otherwise nothing is guessed: vertebrae are "Vertebra 1" .. "Vertebra N" from the top.

Counting passes T12 -> T13 -> L1 only when the user says the patient has a T13, and L5 -> L6 -> sacrum only with L6.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import InputError
from ..levels import L6_CODE, level_code, level_name, level_sequence

__all__ = ["LevelNaming", "name_vertebrae"]


@dataclass(frozen=True)
class LevelNaming:
    """Names for N vertebrae ordered top to bottom."""

    codes: tuple[int | None, ...]
    names: tuple[str, ...]
    rule: str

    @property
    def known(self) -> bool:
        return all(code is not None for code in self.codes)


# Said with every rule that leaves levels unnamed: what the user can do about it (CLI --anchor / --lowest, the
# Slicer module's "Top / Bottom vertebra level" fields, segment(anchor=, lowest=)).
NAME_THEM_HINT = "give the level of the top or the bottom vertebra in view to name them"


def _unnamed(n: int, rule: str) -> LevelNaming:
    if n:
        rule = f"{rule} ({NAME_THEM_HINT})"
    return LevelNaming((None,) * n, tuple(f"Vertebra {k}" for k in range(1, n + 1)), rule)


def _named_from(sequence: list[int], *, start: int, n: int, rule: str) -> LevelNaming | None:
    if start < 0 or start + n > len(sequence):
        return None
    codes = tuple(sequence[start : start + n])
    return LevelNaming(codes, tuple(level_name(c) for c in codes), rule)


def name_vertebrae(
    n: int,
    *,
    sacrum_below: bool = False,
    lowest: str | None = None,
    anchor: str | None = None,
    with_t13: bool = False,
    with_l6: bool = False,
    doubts: Sequence[str] = (),
) -> LevelNaming:
    """Decide level names for ``n`` vertebrae ordered top to bottom.

    Args:
        n: Number of vertebrae found.
        sacrum_below: The sacrum is in view and touches/lies directly below the lowest vertebra.
        lowest: User-given level of the lowest vertebra in view (e.g. "L5").
        anchor: User-given level of the highest vertebra in view (e.g. "C2").
        with_t13: The patient has a 13th thoracic vertebra.
        with_l6: The patient has a 6th lumbar vertebra.
        doubts: Anomalies of the column that forbid counting from the sacrum (sentence fragments); a level given
            by the user is still honoured (the caller should warn).

    Raises:
        InputError: both ``lowest`` and ``anchor`` given, a level that does not exist for this patient
            (e.g. "L6" without ``with_l6``), or names that would run past C1.
    """
    if lowest and anchor:
        raise InputError("both a lowest level and a top anchor were given", fix="give only one of them")
    sequence = level_sequence(with_t13=with_t13, with_l6=with_l6)
    for given, flag in ((lowest, "lowest"), (anchor, "anchor")):
        if given is None:
            continue
        code = level_code(given)
        if code not in sequence:
            hint = " (add --with-l6 / --with-t13 for a patient with that extra vertebra)" if code in (25, 28) else ""
            raise InputError(
                f"the {flag} level {given!r} is not a mobile vertebra of this patient{hint}",
                fix="give a level from C1 to L5",
            )
        if flag == "lowest":
            start = sequence.index(code) - (n - 1)
            rule = f"counted up from the lowest vertebra, given by the user as {level_name(code)}"
        else:
            start = sequence.index(code)
            rule = f"counted down from the highest vertebra, given by the user as {level_name(code)}"
        naming = _named_from(sequence, start=start, n=n, rule=rule)
        if naming is None:
            raise InputError(
                f"{n} vertebrae cannot be named with the {flag} level {level_name(code)}: the names would run "
                "past C1 or below the sacrum",
                fix="check the level you gave",
            )
        return naming
    if sacrum_below and n > 0 and doubts:
        return _unnamed(n, f"levels not named: {'; '.join(doubts)}: counting up from the sacrum would misname them")
    if sacrum_below and n > 0:
        lowest_code = L6_CODE if with_l6 else 24
        start = sequence.index(lowest_code) - (n - 1)
        naming = _named_from(
            sequence, start=start, n=n, rule=f"counted up from the sacrum (lowest vertebra = {level_name(lowest_code)})"
        )
        if naming is not None:
            return naming
        return _unnamed(n, "levels not determined: more vertebrae above the sacrum than a spine has")
    return _unnamed(n, "levels not determined (no sacrum in view and no level given): numbered from the top")
