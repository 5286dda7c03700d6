"""Hand-built segmentation results for the output-writer tests (small oblique anisotropic grids, L3-L5)."""

from __future__ import annotations

import numpy as np

from spineinstanceseg.results import SegmentationResult, VertebraRecord
from spineinstanceseg.semantic import CANAL, DISC, SACRUM, VERTEBRA
from spineinstanceseg.volume import Volume

SHAPE = (28, 24, 46)
SPACING = (1.1, 0.8, 1.9)
ORIGIN = (-40.5, 12.25, 300.0)


def rotation(axis, degrees: float) -> np.ndarray:
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    a = np.radians(degrees)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(a) * k + (1 - np.cos(a)) * (k @ k)


def oblique_direction(*, left_handed: bool = False) -> np.ndarray:
    """About 20 degrees off the LPS axes; ``left_handed`` flips array axis 0 (det = -1, like a RAS-stored image)."""
    d = rotation((1.0, 0.4, 0.2), 20.0)
    if left_handed:
        d = d @ np.diag([-1.0, 1.0, 1.0])
    return d


def make_result(
    *,
    direction: np.ndarray | None = None,
    levels_known: bool = True,
    with_sacrum: bool = True,
    overlap: bool = False,
) -> SegmentationResult:
    """Three ellipsoid vertebrae stacked along array axis 2 (~superior), two discs, a canal, a sacrum slab.

    ``overlap`` also marks one vertebra voxel as disc in the semantic map (stage 1/stage 2 disagreement).
    """
    direction = oblique_direction() if direction is None else direction
    i, j, k = np.meshgrid(*(np.arange(n) for n in SHAPE), indexing="ij")
    inst = np.zeros(SHAPE, np.uint8)
    sem = np.zeros(SHAPE, np.uint8)
    centres_k = {22: 35, 23: 23, 24: 11}  # L3 top (larger k = superior), L5 bottom
    for code, ck in centres_k.items():
        body = ((i - 13) / 7.0) ** 2 + ((j - 10) / 5.5) ** 2 + ((k - ck) / 4.2) ** 2 <= 1.0
        inst[body] = code if levels_known else (1 + [22, 23, 24].index(code))
    sem[inst > 0] = VERTEBRA
    for dk in (29, 17):  # discs: thin slabs between the bodies
        disc = (((i - 13) / 6.0) ** 2 + ((j - 10) / 4.5) ** 2 <= 1.0) & (np.abs(k - dk) <= 1)
        sem[disc & (inst == 0)] = DISC
    canal = (((i - 13) / 2.2) ** 2 + ((j - 19) / 2.2) ** 2 <= 1.0) & (k >= 4)
    sem[canal & (inst == 0)] = CANAL
    if with_sacrum:
        sem[(np.abs(i - 13) <= 6) & (np.abs(j - 10) <= 5) & (k <= 3)] = SACRUM
    if overlap:
        sem[13, 10, 27] = DISC  # L4 voxel touching the L3-L4 disc: joins that disc
    geo = dict(spacing=SPACING, origin=ORIGIN, direction=direction)
    instances = Volume(inst, is_label=True, **geo)
    semantic = Volume(sem, is_label=True, **geo)
    records = []
    labels = [22, 23, 24] if levels_known else [1, 2, 3]
    for n, label in enumerate(labels):
        idx = np.argwhere(inst == label)
        centroid = instances.index_to_world(idx.mean(axis=0))
        records.append(
            VertebraRecord(
                label=label,
                name=(["L3", "L4", "L5"][n] if levels_known else f"Vertebra {n + 1}"),
                level_code=label if levels_known else None,
                centroid_lps=tuple(float(c) for c in centroid),
                confidence=[0.97, 0.91, 0.83][n],
                voxel_count=len(idx),
                volume_ml=len(idx) * float(np.prod(SPACING)) / 1000.0,
            )
        )
    return SegmentationResult(
        instances=instances,
        semantic=semantic,
        vertebrae=tuple(records),
        naming_rule="counted up from the sacrum" if levels_known else "levels not determined",
        stage1_source="existing mask test.nii.gz",
        models={"stage2": {"name": "test", "path": "/models/test", "sha256": "0" * 64}},
        timings={"stage1": 0.5, "stage2": 1.25},
        warnings=("a test warning",),
    )


def make_image(result: SegmentationResult) -> Volume:
    """A CT-like image on the result's grid: bone bright, discs and canal medium, noise elsewhere."""
    rng = np.random.default_rng(0)
    sem = np.asarray(result.semantic.array)
    values = np.array([-50.0, 700.0, 90.0, 20.0, 500.0])[sem]
    return result.instances.with_array((values + rng.normal(0, 20, sem.shape)).astype(np.float32), is_label=False)
