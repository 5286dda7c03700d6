"""Turn a tissue map into a CT-like or MRI-like (T1/T2) image: contrast, texture, partial volume, bias, noise.

CT values are Hounsfield units (cortical bone ~600-1100, trabecular ~130-300, soft tissue 30-60, fat ~-100,
CSF ~10, lung ~-850, air -1000) plus Gaussian noise. MRI values are arbitrary units: a per-sequence contrast
table (T1: fat and fatty marrow bright, CSF dark; T2: CSF and healthy nucleus bright, degenerated discs dark),
a smooth multiplicative bias field with posterior coil sensitivity, and Rician noise (magnitude of complex
Gaussian noise). Partial volume: the tissue map is rendered on sub-voxels along thick axes and averaged, then a
small Gaussian point-spread function blurs the image.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from .grid import Grid
from .raster import TISSUES, T

__all__ = ["synthesise_image", "block_mean", "CONTRAST"]

# name: (CT HU, T1, T2)
CONTRAST: dict[str, tuple[float, float, float]] = {
    "fat": (-95.0, 1.00, 0.75),
    "soft": (38.0, 0.45, 0.40),
    "muscle": (50.0, 0.35, 0.20),
    "air": (-1000.0, 0.0, 0.0),
    "lung": (-850.0, 0.02, 0.02),
    "cortical": (900.0, 0.04, 0.04),
    "trabecular": (220.0, 0.72, 0.50),
    "fracture": (380.0, 0.30, 0.85),
    "annulus": (95.0, 0.32, 0.20),
    "nucleus": (75.0, 0.38, 0.88),
    "nucleus_degenerate": (85.0, 0.33, 0.33),
    "csf": (10.0, 0.12, 1.00),
    "cord": (35.0, 0.42, 0.40),
    "vessel": (45.0, 0.05, 0.05),
}


def block_mean(array: NDArray, factors: tuple[int, int, int]) -> NDArray:
    """Average non-overlapping blocks of ``factors`` voxels (shape must be divisible)."""
    if factors == (1, 1, 1):
        return array
    n = [s // f for s, f in zip(array.shape, factors, strict=True)]
    view = array.reshape(n[0], factors[0], n[1], factors[1], n[2], factors[2])
    return view.mean(axis=(1, 3, 5), dtype=np.float32)


def _table(modality: str, rng: np.random.Generator) -> NDArray:
    column = {"ct": 0, "t1": 1, "t2": 2}[modality]
    values = np.array([CONTRAST[name][column] for name in TISSUES], dtype=np.float32)
    if modality == "ct":
        values[T["trabecular"]] = rng.uniform(130, 300)  # bone density varies a lot between patients
        values[T["cortical"]] = rng.uniform(600, 1100)
        values[T["fat"]] = rng.uniform(-110, -80)
        values[T["muscle"]] = rng.uniform(40, 60)
    else:
        values *= rng.uniform(0.9, 1.1, size=values.shape).astype(np.float32)
    return values


def _bias_field(grid: Grid, rng: np.random.Generator) -> NDArray:
    """Smooth multiplicative field: random low-order terms per axis plus posterior (spine coil) sensitivity."""
    terms = []
    posterior = grid.matrix[1]  # d(world y)/d(index) per axis: signal falls off away from the back
    for axis, n in enumerate(grid.shape):
        x = np.linspace(-1.0, 1.0, n, dtype=np.float32)
        a, b, c = rng.normal(0, 0.12, 3)
        ramp = np.float32(0.006 * posterior[axis]) * np.arange(n, dtype=np.float32)
        terms.append(a * x + b * x * x + c * np.cos(np.pi * x) + ramp)
    log_field = terms[0][:, None, None] + terms[1][None, :, None] + terms[2][None, None, :]
    log_field -= np.float32(log_field.max())  # brightest near the coil
    return np.exp(log_field * np.float32(0.6)).astype(np.float32)


def synthesise_image(
    tissue: NDArray,
    factors: tuple[int, int, int],
    grid: Grid,
    *,
    modality: str,
    rng: np.random.Generator,
    bone_pv: tuple[NDArray, NDArray, NDArray, NDArray] | None = None,
) -> NDArray:
    """Image on ``grid`` (float32) from the tissue map on its ``factors``-refined grid.

    ``bone_pv`` = (flat index, bone fraction, cortex fraction, inside) from
    :func:`~.raster.bone_partial_volume`: those voxels get the fraction-weighted mix of cortical bone,
    cancellous bone and the surrounding tissue.
    """
    table = _table(modality, rng)
    fine = table[tissue]
    if modality == "ct":
        # Trabecular texture: white noise inside cancellous bone, correlated by the blur below.
        bone = (tissue == T["trabecular"]) | (tissue == T["fracture"])
        fine[bone] += rng.normal(0.0, 70.0, int(bone.sum())).astype(np.float32)
    else:
        bone = tissue == T["trabecular"]
        fine[bone] *= (1.0 + rng.normal(0.0, 0.08, int(bone.sum()))).astype(np.float32)
    if bone_pv is not None:
        index, occupancy, cortex, inside = bone_pv
        flat = fine.reshape(-1)
        here = flat[index]
        cancellous = np.where(inside, here, table[T["trabecular"]])
        surround = np.where(inside, table[T["muscle"]], here)
        flat[index] = surround * (1 - occupancy) + cortex * table[T["cortical"]] + (occupancy - cortex) * cancellous
    image = block_mean(fine, factors)
    # Point-spread function: about half a voxel in-plane; thick axes are already averaged over the slice.
    sigma = [0.5 if f == 1 else 0.3 for f in factors]
    image = ndimage.gaussian_filter(image, sigma, mode="nearest", truncate=3.0)
    if modality == "ct":
        noise_sd = rng.uniform(8.0, 30.0)
        image += rng.normal(0.0, noise_sd, image.shape).astype(np.float32)
        return image.astype(np.float32, copy=False)
    scale = np.float32(rng.uniform(300.0, 1500.0))
    image *= _bias_field(grid, rng) * scale
    sd = np.float32(rng.uniform(0.015, 0.045) * scale)
    real = image + rng.normal(0.0, 1.0, image.shape).astype(np.float32) * sd
    imag = rng.normal(0.0, 1.0, image.shape).astype(np.float32) * sd
    return np.sqrt(real * real + imag * imag).astype(np.float32)
