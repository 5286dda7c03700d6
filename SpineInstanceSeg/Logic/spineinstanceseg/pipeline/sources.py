"""Where the stage-1 semantic mask comes from: a trained nnU-Net model, or a mask the user already has."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Protocol

from ..hashing import sha256_file as file_sha256
from ..io import read_label_map
from ..progress import Progress
from ..volume import Volume
from .validate import align_mask

__all__ = ["Stage1Source", "MaskSource", "file_sha256"]


class Stage1Source(Protocol):
    """Anything that turns an image into a semantic mask on the image grid."""

    description: str  # one line for logs and the report

    def model_info(self) -> dict: ...

    def predict(self, image: Volume, *, progress: Progress) -> tuple[Volume, list[str]]:
        """Semantic label map on ``image``'s grid, plus warnings for the report."""
        ...


@dataclass
class MaskSource:
    """A semantic mask given by the user (a file in any supported convention, or a Volume) instead of stage 1.

    Attributes:
        mask: Path of the mask file or a label :class:`Volume`.
        convention: Label convention of the mask ("semantic" = our classes; others are converted).
    """

    mask: str | os.PathLike[str] | Volume
    convention: str = "semantic"
    description: str = field(init=False)

    def __post_init__(self) -> None:
        where = "in-memory mask" if isinstance(self.mask, Volume) else str(self.mask)
        self.description = f"existing mask {where} (convention {self.convention}); stage 1 was not run"

    def model_info(self) -> dict:
        if isinstance(self.mask, Volume):
            return {"name": "existing mask", "path": None, "sha256": None}
        return {"name": "existing mask", "path": str(self.mask), "sha256": file_sha256(self.mask)}

    def predict(self, image: Volume, *, progress: Progress) -> tuple[Volume, list[str]]:
        source = None if isinstance(self.mask, Volume) else str(self.mask)
        mask = self.mask if isinstance(self.mask, Volume) else read_label_map(self.mask)
        if self.convention != "semantic":
            from ..conventions import to_internal

            mask = to_internal(mask, self.convention).semantic
        progress.update(1.0, "mask read")
        return align_mask(mask, image, source=source)
