"""One exception family for everything a user can get wrong or that can go wrong.

Every error says *what* is wrong (naming the file or object when there is one) and *how to fix it*, so a
message printed by the CLI or shown in Slicer is actionable on its own. Callers catch
:class:`SpineSegError`; the CLI maps :class:`InputError` to exit code 2 and anything else to exit code 1.
"""

from __future__ import annotations

from os import PathLike

__all__ = [
    "SpineSegError",
    "InputError",
    "ConventionError",
    "ModelError",
    "NoSpineFoundError",
    "CancelledError",
]


class SpineSegError(Exception):
    """Base class of all errors raised by spineinstanceseg.

    Args:
        problem: What is wrong, as a sentence fragment without a trailing full stop.
        fix: What the user should do about it.
        path: The file or folder concerned, if any; it is put at the front of the message.
    """

    def __init__(self, problem: str, *, fix: str, path: str | PathLike[str] | None = None) -> None:
        self.problem = problem
        self.fix = fix
        self.path = None if path is None else str(path)
        where = f"{self.path}: " if self.path is not None else ""
        super().__init__(f"{where}{problem}. Fix: {fix}")


class InputError(SpineSegError):
    """The input (an image, a mask, a folder, an option) cannot be used as given."""


class ConventionError(InputError):
    """A label map holds values that the chosen label convention does not define."""


class ModelError(SpineSegError):
    """A model folder or checkpoint is missing, incomplete, tampered with or incompatible."""


class NoSpineFoundError(SpineSegError):
    """The image was read and processed, but no vertebra could be found in it."""


class CancelledError(SpineSegError):
    """The user cancelled a running job; nothing was written."""

    def __init__(self, problem: str = "the job was cancelled", *, fix: str = "start it again when ready") -> None:
        super().__init__(problem, fix=fix)
