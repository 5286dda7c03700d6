"""One closed surface mesh (binary STL) per vertebra, in LPS millimetres.

Coordinate system: **LPS** (the patient coordinates of the input image, as DICOM/ITK and Slicer >= 4.11 use in
files). Each file's 80-byte header starts with ``SPACE=LPS``, the hint Slicer reads to interpret the coordinates;
other tools (3D printing, CAD) ignore the header and see millimetres.

Surfaces: marching cubes (scikit-image) at level 0.5 on the vertebra's binary mask cropped to its bounding box and
padded with background, so every surface is closed; optional Gaussian smoothing of the mask first (``smooth`` =
sigma in mm). Vertices are mapped from voxel indices to LPS with the full direction matrix, so oblique and
anisotropic grids are placed exactly; triangles are wound so that normals point outwards.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from ..atomic import atomic_path
from ..results import SegmentationResult
from ..volume import Volume
from .segments import safe_segment_id

__all__ = ["vertebra_mesh", "write_binary_stl", "write_stl"]

_STL_DTYPE = np.dtype([("normal", "<f4", (3,)), ("vertices", "<f4", (3, 3)), ("attribute", "<u2")])


def vertebra_mesh(
    instances: Volume, label: int, *, smooth: float = 0.0, box: tuple[slice, ...] | None = None
) -> tuple[NDArray, NDArray]:
    """Closed triangle mesh of the voxels ``instances == label``.

    Args:
        instances: Label map (geometry used for the physical placement).
        label: Value of the structure.
        smooth: Gaussian sigma in mm applied to the binary mask before meshing (0 = none).
        box: Bounding box of the label (``scipy.ndimage.find_objects``) when known; saves a full-volume pass.

    Returns:
        ``(vertices, faces)``: float64 ``(V, 3)`` LPS mm and int ``(F, 3)`` indices, outward winding.
        Both empty when the label is absent.
    """
    from skimage.measure import marching_cubes

    array = np.asarray(instances.array)
    if box is None:
        found = ndimage.find_objects((array == label).astype(np.uint8))
        box = found[0] if found else None
    if box is None:
        return np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64)
    spacing = np.asarray(instances.spacing, dtype=float)
    sigma = np.asarray([smooth, smooth, smooth], dtype=float) / spacing if smooth > 0 else np.zeros(3)
    # Pad by enough background that the (possibly blurred) mask falls below 0.5 at the crop border: closed mesh.
    pad = (np.ceil(3 * sigma) + 2).astype(int)
    lo = np.array([s.start for s in box]) - pad
    hi = np.array([s.stop for s in box]) + pad
    mask = np.zeros(tuple(hi - lo), dtype=np.float32)
    src = tuple(slice(s.start, s.stop) for s in box)
    dst = tuple(slice(p, p + s.stop - s.start) for p, s in zip(pad, box, strict=True))
    mask[dst] = array[src] == label
    crop = ndimage.gaussian_filter(mask, sigma=sigma, mode="constant") if smooth > 0 else mask
    if crop.max() <= 0.5:  # a structure thinner than the blur would vanish: mesh it unsmoothed
        crop = mask
    verts, faces, _, _ = marching_cubes(crop, level=0.5, allow_degenerate=False)
    world = instances.index_to_world(verts + lo)
    faces = faces.astype(np.int64)
    if _signed_volume(world, faces) < 0:
        faces = faces[:, ::-1]  # e.g. a left-handed index->LPS mapping (det(direction) < 0) turns normals inwards
    return world, faces


def _signed_volume(vertices: NDArray, faces: NDArray) -> float:
    a, b, c = (vertices[faces[:, i]] for i in range(3))
    return float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6.0)


def write_binary_stl(path: str | os.PathLike[str], vertices: NDArray, faces: NDArray, *, header: str) -> Path:
    """Write a binary STL (little-endian float32); ``header`` (ASCII, <= 80 chars) fills the 80-byte header."""
    text = header.encode("ascii", errors="replace")[:80].ljust(80, b" ")
    tri = np.asarray(vertices, dtype=np.float64)[np.asarray(faces)]
    normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    lengths = np.linalg.norm(normals, axis=1, keepdims=True)
    normals = np.divide(normals, lengths, out=np.zeros_like(normals), where=lengths > 0)
    records = np.zeros(len(tri), dtype=_STL_DTYPE)
    records["normal"] = normals
    records["vertices"] = tri
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        handle.write(text)
        handle.write(np.uint32(len(tri)).tobytes())
        handle.write(records.tobytes())
    return path


def write_stl(
    result: SegmentationResult,
    folder: str | os.PathLike[str],
    *,
    smooth: float = 0.5,
) -> dict[str, Path]:
    """Write ``<folder>/<vertebra name>.stl`` for every vertebra of ``result`` (LPS mm, ``SPACE=LPS`` header).

    Args:
        result: Segmentation result.
        folder: Output folder (created when missing).
        smooth: Gaussian sigma in mm applied to each mask before meshing; 0 keeps the voxel staircase exactly.

    Returns:
        ``{vertebra name: path}`` in top-to-bottom order (vertebrae with no voxels are skipped).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    array = np.asarray(result.instances.array)
    boxes = ndimage.find_objects(array) if np.issubdtype(array.dtype, np.integer) and array.min() >= 0 else None
    for record in result.vertebrae:
        label = int(record.label)
        box = boxes[label - 1] if boxes is not None and 0 < label <= len(boxes) else None
        if boxes is not None and box is None:
            continue  # no voxels
        vertices, faces = vertebra_mesh(result.instances, label, smooth=smooth, box=box)
        if len(faces) == 0:
            continue
        header = f"SPACE=LPS SpineInstanceSeg {record.name} label {record.label} units mm"
        written[record.name] = write_binary_stl(
            folder / f"{safe_segment_id(record.name)}.stl", vertices, faces, header=header
        )
    return written
