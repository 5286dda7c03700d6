"""The main job: image -> stage 1 (or a given mask) -> stage-2 windows -> fusion -> named vertebrae -> outputs."""

from __future__ import annotations

from ..results import SegmentationResult, VertebraRecord
from .run import segment

__all__ = ["segment", "SegmentationResult", "VertebraRecord"]
