"""What a segmentation run returns: the instance map, the semantic map and one record per vertebra.

The pipeline (:func:`spineinstanceseg.pipeline.segment`) makes it; the output writers (:mod:`spineinstanceseg.outputs`)
and the Slicer adapter (:mod:`spineinstanceseg.slicer`) read it. It lives below all of them so that none has to
import the pipeline to know its result.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .volume import Volume

__all__ = ["VertebraRecord", "SegmentationResult"]


@dataclass(frozen=True)
class VertebraRecord:
    """One vertebra of a result.

    Attributes:
        label: Value of this vertebra in ``SegmentationResult.instances``.
        name: Level name ("L5") when the level is known, else "Vertebra k" (k counted from the top).
        level_code: VerSe code when the level is known, else ``None``.
        centroid_lps: Physical centroid in LPS mm.
        confidence: Stage-2 agreement score in [0, 1] (see :mod:`spineinstanceseg.stage2.fusion`).
        voxel_count: Number of voxels of the vertebra on the input grid.
        volume_ml: Its volume in millilitres.
    """

    label: int
    name: str
    level_code: int | None
    centroid_lps: tuple[float, float, float]
    confidence: float
    voxel_count: int
    volume_ml: float


@dataclass(frozen=True)
class SegmentationResult:
    """The outcome of :func:`spineinstanceseg.pipeline.segment`; every volume is on the input grid.

    Attributes:
        instances: Label map, VerSe codes when levels are known, else 1..N from top to bottom.
        semantic: Label map of :mod:`spineinstanceseg.semantic` classes (vertebra, disc, canal, sacrum).
        vertebrae: One record per vertebra, top to bottom.
        naming_rule: Sentence saying how the vertebrae were named.
        stage1_source: What produced the semantic map (a model, or an existing mask).
        models: ``{"stage1": {...}, "stage2": {...}}`` with name, path and sha256 of each model used.
        timings: Seconds per step.
        warnings: Things the user should know about this result.
    """

    instances: Volume
    semantic: Volume
    vertebrae: tuple[VertebraRecord, ...]
    naming_rule: str
    stage1_source: str
    models: dict[str, dict] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    @property
    def levels_known(self) -> bool:
        return bool(self.vertebrae) and all(v.level_code is not None for v in self.vertebrae)
