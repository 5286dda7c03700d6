"""Tiny hand-made spine-like cases for the stage-1 tests (no generator, a few thousand voxels each)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from spineinstanceseg.io import write_volume
from spineinstanceseg.volume import Volume


def toy_semantic(shape=(16, 14, 30), *, sacrum: bool = True) -> np.ndarray:
    """Stacked vertebra boxes with discs between them, a canal behind and a sacrum block at the bottom."""
    labels = np.zeros(shape, dtype=np.uint8)
    nz = shape[2]
    for z0 in range(4, nz - 4, 6):
        labels[4:12, 3:9, z0 : z0 + 4] = 1  # vertebra
        labels[4:12, 3:9, z0 + 4 : z0 + 6] = 2  # disc
    labels[6:10, 10:13, 2:-2] = 3  # canal
    if sacrum:
        labels[4:12, 3:9, 0:3] = 4
    return labels


def toy_case(seed: int, *, direction=None, spacing=(2.0, 2.0, 3.0), shape=(16, 14, 30)) -> tuple[Volume, Volume]:
    """(image, semantic labels) on the same grid; image = class-dependent intensity + noise."""
    rng = np.random.default_rng(seed)
    labels = toy_semantic(shape)
    image = np.array([0.0, 300.0, 80.0, 10.0, 250.0], dtype=np.float32)[labels] + rng.normal(0, 5, shape)
    geometry = dict(
        spacing=spacing, origin=(10.0 * seed, -5.0, 3.0), direction=np.eye(3) if direction is None else direction
    )
    return Volume(image.astype(np.float32), **geometry), Volume(labels, is_label=True, **geometry)


def write_phantom_layout(folder: Path, n: int, *, modality: str = "ct", direction=None) -> list[str]:
    """Write n toy cases in the phantom file layout ({name}_image/_semantic.nii.gz + _meta.json)."""
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for k in range(n):
        image, labels = toy_case(k, direction=direction)
        name = f"toy{k}"
        write_volume(image, folder / f"{name}_image.nii.gz")
        write_volume(labels, folder / f"{name}_semantic.nii.gz")
        (folder / f"{name}_meta.json").write_text(f'{{"modality": "{modality}"}}', encoding="utf-8")
        names.append(name)
    return names
