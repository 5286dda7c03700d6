"""Rasterise the spine layout on a voxel grid: instance labels, semantic flags and a tissue map.

Shapes are evaluated at the voxel centres of the grid itself (no label resampling): for every vertebra the
voxel box that can hold it is found, its voxel centres are mapped into the vertebra's local frame with one affine
map, and the implicit shape of :mod:`.shapes` is evaluated there with vectorised numpy. Where two vertebrae claim
a voxel, the one the voxel is deeper inside wins.

Tissue codes (``TISSUE_*``) drive the image synthesis in :mod:`.acquisition`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ..levels import SACRUM_CODE, cranio_caudal_order
from .curve import Pose, SpineLayout
from .grid import Grid
from .shapes import body_radial, body_surfaces, sacrum_canal, sacrum_sd, vertebra_sd

__all__ = [
    "Canvas",
    "TISSUES",
    "FLAG_DISC",
    "FLAG_CANAL",
    "paint_canal",
    "paint_discs",
    "paint_vertebrae",
    "bone_partial_volume",
]

TISSUES = (
    "fat soft muscle air lung cortical trabecular fracture annulus nucleus nucleus_degenerate csf cord vessel"
).split()
T = {name: i for i, name in enumerate(TISSUES)}
FLAG_DISC = np.uint8(1)
FLAG_CANAL = np.uint8(2)


@dataclass
class Canvas:
    """Arrays on one grid (ITK index order, see :class:`~spineinstanceseg.volume.Volume`)."""

    grid: Grid
    labels: NDArray  # int16 VerSe codes
    depth: NDArray  # float32 signed distance of the winning vertebra (<= 0 inside)
    tissue: NDArray  # uint8 tissue codes
    flags: NDArray  # uint8 FLAG_DISC | FLAG_CANAL
    near: NDArray  # float32 distance (0 < d < half a voxel) to the nearest vertebra just outside it, else inf

    @classmethod
    def empty(cls, grid: Grid, tissue: NDArray) -> Canvas:
        return cls(
            grid,
            np.zeros(grid.shape, np.int16),
            np.zeros(grid.shape, np.float32),
            tissue,
            np.zeros(grid.shape, np.uint8),
            np.full(grid.shape, np.inf, np.float32),
        )

    @property
    def voxel_extent(self) -> float:
        """Voxel size (mm) used for partial volume across a surface: the largest spacing."""
        return float(max(self.grid.spacing))

    def local(self, pose: Pose, lo: tuple[float, float, float], hi: tuple[float, float, float]):
        """Voxel box covering the local box [lo, hi] of ``pose`` and the local coordinates of its voxel centres.

        Returns ``(slices, (u, v, w))`` with float32 arrays of the box shape, or ``None`` when the box misses
        the grid.
        """
        grid = self.grid
        corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
        world = pose.to_world(corners)
        inv = np.linalg.inv(grid.matrix)
        ijk = (world - grid.origin) @ inv.T
        start = np.maximum(np.floor(ijk.min(axis=0)).astype(int), 0)
        stop = np.minimum(np.ceil(ijk.max(axis=0)).astype(int) + 1, grid.shape)
        if np.any(stop <= start):
            return None
        slices = tuple(slice(int(a), int(b)) for a, b in zip(start, stop, strict=True))
        return slices, _reframe(self, pose, slices)


def _paint_bone(canvas: Canvas, code: int, sd: NDArray, slices, *, trabecular: int) -> None:
    """Label voxels inside ``sd`` (unless another vertebra is deeper there) and remember how close the voxels
    just outside are; the cortical shell and partial volume are rendered later (:func:`bone_partial_volume`)."""
    depth = canvas.depth[slices]
    inside = sd < depth
    near = canvas.near[slices]
    close = (sd > 0) & (sd < near) & (sd < np.float32(0.5 * canvas.voxel_extent))
    near[close] = sd[close]
    if not inside.any():
        return
    canvas.labels[slices][inside] = code
    depth[inside] = sd[inside]
    canvas.tissue[slices][inside] = trabecular


def bone_partial_volume(canvas: Canvas, *, thickness: float = 1.0) -> tuple[NDArray, NDArray, NDArray, NDArray]:
    """Partial-volume fractions of the labelled bones near their surfaces.

    Treating the surface as locally planar and a voxel as a box of :attr:`Canvas.voxel_extent` across it, a
    voxel at signed distance ``d`` holds the fraction ``occupancy`` of bone and the fraction ``cortex`` of the
    ``thickness`` mm cortical shell. Sampling a sub-voxel shell at voxel centres instead would draw dashed
    endplates on thick slices.

    Returns:
        ``(index, occupancy, cortex, inside)``: flat indices of the voxels concerned (inside a vertebra, or
        outside within half a voxel of one), their bone and cortex fractions, and whether each is labelled bone.
    """
    h = np.float32(canvas.voxel_extent)
    sd = np.where(canvas.labels > 0, canvas.depth, canvas.near).ravel()
    index = np.flatnonzero(sd < 0.5 * h)
    d = sd[index]
    occupancy = np.clip(0.5 - d / h, 0.0, 1.0)
    cortex = np.clip(np.minimum(d + 0.5 * h, 0.0) - np.maximum(d - 0.5 * h, -np.float32(thickness)), 0.0, None) / h
    return index, occupancy.astype(np.float32), cortex.astype(np.float32), canvas.labels.ravel()[index] > 0


def _vertebra_box(s) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    if s.kind == "atlas":
        r = s.canal_u + 8.0 + s.tp_len + s.tp_r + 10.0
        return (-r, -s.canal_v - 25.0, -14.0), (r, 2 * s.canal_v + 25.0, 14.0)
    r = s.lateral_reach + 3.0
    sp_drop = s.sp_len * np.sin(np.radians(s.sp_ang)) + s.sp_h
    low = min(-s.height / 2, -0.05 * s.height - s.lam_h / 2 + 3.0 - s.art_len - s.art_r, -sp_drop) - 3.0
    high = max(s.height / 2, 0.15 * s.height + s.ped_h / 2 + s.art_len + s.art_r, s.tp_len * 0.5 + s.tp_r) + 3.0
    if s.kind == "axis":
        high = s.height / 2 + 16.0
    return (-r, -s.depth / 2 - 3.0, low), (r, s.posterior_reach + 3.0, high)


def paint_vertebrae(canvas: Canvas, layout: SpineLayout, *, fractured: int | None) -> None:
    """Bone labels and cortical/trabecular tissue of every vertebra and the sacrum."""
    for code in layout.order:
        if code == SACRUM_CODE:
            sac = layout.sacrum
            lo = (-sac.ala_half_width - 3.0, -sac.curve - sac.depth / 2 - 5.0, -sac.length - 3.0)
            hi = (sac.ala_half_width + 3.0, sac.depth / 2 + 30.0, 20.0)
            found = canvas.local(layout.poses[code], lo, hi)
            if found is not None:
                slices, (u, v, w) = found
                _paint_bone(canvas, code, sacrum_sd(sac, u, v, w), slices, trabecular=T["trabecular"])
            continue
        shp = layout.shapes[code]
        found = canvas.local(layout.poses[code], *_vertebra_box(shp))
        if found is None:
            continue
        slices, (u, v, w) = found
        trab = T["fracture"] if code == fractured else T["trabecular"]
        _paint_bone(canvas, code, vertebra_sd(shp, u, v, w), slices, trabecular=trab)


def paint_discs(canvas: Canvas, layout: SpineLayout, *, fused: tuple[int, int] | None, degenerate: set[int]) -> None:
    """Intervertebral discs (annulus + nucleus) filling the space between neighbouring endplates.

    A fused pair gets bone instead of a disc, split between the two labels at the disc's mid-plane.
    """
    for disc in layout.discs:
        up = layout.shapes[disc.upper]
        low_shape = layout.shapes.get(disc.lower, up)
        half_w = max(up.width, low_shape.width) / 2 + 3.0
        half_d = max(up.depth, low_shape.depth) / 2 + 3.0
        reach = abs(disc.height) / 2 + 0.5 * half_d + 6.0  # wedge-shaped discs are taller at one side
        found = canvas.local(disc.pose, (-half_w, -half_d, -reach), (half_w, half_d, reach))
        if found is None:
            continue
        slices, (u, v, w) = found
        radial = body_radial(up, u, v, grow=0.8)
        inside = radial < 0
        # Above the lower endplate and below the upper one, each in its own vertebra's frame.
        uu, vu, wu = _reframe(canvas, layout.poses[disc.upper], slices)
        inside &= wu < body_surfaces(up, uu, vu)[1] + 0.5
        ul, vl, wl = _reframe(canvas, layout.poses[disc.lower], slices)
        if disc.lower == SACRUM_CODE:
            sac = layout.sacrum
            rho2 = np.clip((ul * (2 / sac.width)) ** 2 + (vl * (2 / sac.depth)) ** 2, 0, 1)
            top = -sac.concavity * (1 - rho2)
        else:
            top = body_surfaces(low_shape, ul, vl)[0]
        inside &= wl > top - 0.5
        free = inside & (canvas.labels[slices] == 0)
        if fused == (disc.upper, disc.lower):
            code = np.where(w > 0, disc.upper, disc.lower).astype(np.int16)
            canvas.labels[slices][free] = code[free]
            canvas.depth[slices][free] = -10.0  # cancellous bone inside the block, no cortical shell
            canvas.tissue[slices][free] = T["trabecular"]
            continue
        nucleus = body_radial(up, u * 1.0, v - 2.0) < -0.38 * up.depth / 2
        kind = T["nucleus_degenerate"] if disc.upper in degenerate else T["nucleus"]
        tissue = np.where(nucleus, kind, T["annulus"]).astype(np.uint8)
        canvas.tissue[slices][free] = tissue[free]
        canvas.flags[slices][inside] |= FLAG_DISC


def _reframe(canvas: Canvas, pose: Pose, slices) -> tuple[NDArray, NDArray, NDArray]:
    """Local coordinates in ``pose`` of the voxel box ``slices`` (same shape as the box)."""
    # local = R^T (origin + M ijk - centre) = offset + A ijk, built from three broadcast 1D ramps.
    grid = canvas.grid
    a = pose.rotation.T @ grid.matrix
    offset = pose.rotation.T @ (grid.origin - pose.centre)
    axes = [np.arange(s.start, s.stop, dtype=np.float32) for s in slices]
    out = []
    for row in range(3):
        c = (np.float32(offset[row]) + np.float32(a[row, 0]) * axes[0])[:, None, None]
        c = c + (np.float32(a[row, 1]) * axes[1])[None, :, None]
        out.append(c + (np.float32(a[row, 2]) * axes[2])[None, None, :])
    return out[0], out[1], out[2]


def slab_range(layout: SpineLayout, code: int) -> tuple[float, float]:
    """``w`` range of the spine segment owned by vertebra ``code`` (half-way into the discs around it)."""
    shp = layout.shapes[code]
    idx = layout.order.index(code)
    above = layout.shapes.get(layout.order[idx - 1]) if idx > 0 else None
    up = (above.disc_below / 2 + 3.0) if above is not None else 40.0
    return -shp.height / 2 - abs(shp.disc_below) / 2 - 3.0, shp.height / 2 + abs(up)


def paint_canal(canvas: Canvas, layout: SpineLayout, *, conus_code: int = 20) -> None:
    """Dural sac (CSF, cord above the conus) inside the bony canal, epidural fat around it."""
    for code in layout.order:
        if code == SACRUM_CODE:
            sac = layout.sacrum
            lo = (-sac.canal_u - 2.0, -5.0, -0.35 * sac.length)
            hi = (sac.canal_u + 2.0, sac.depth + 10.0, 2.0)
            found = canvas.local(layout.poses[code], lo, hi)
            if found is not None:
                slices, (u, v, w) = found
                sac_in = sacrum_canal(sac, u, v, w) < 0
                canvas.tissue[slices][sac_in] = T["csf"]
                canvas.flags[slices][sac_in] |= FLAG_CANAL
            continue
        shp = layout.shapes[code]
        w0, w1 = slab_range(layout, code)
        vc = shp.canal_centre_v
        lo = (-shp.canal_u - 1.0, vc - shp.canal_v - 1.0, w0)
        hi = (shp.canal_u + 1.0, vc + shp.canal_v + 1.0, w1)
        found = canvas.local(layout.poses[code], lo, hi)
        if found is None:
            continue
        slices, (u, v, w) = found
        in_slab = (w >= w0) & (w <= w1)
        dv = v - vc
        bony = ((u / shp.canal_u) ** 2 + (dv / shp.canal_v) ** 2 < 1.0) & in_slab
        sac_u, sac_v = 0.8 * shp.canal_u, 0.75 * shp.canal_v
        dural = ((u / sac_u) ** 2 + ((dv + 0.1 * shp.canal_v) / sac_v) ** 2 < 1.0) & in_slab
        tissue = canvas.tissue[slices]
        tissue[bony] = T["fat"]
        tissue[dural] = T["csf"]
        if cranio_caudal_order(code) <= cranio_caudal_order(conus_code):
            cu, cv = min(0.45 * shp.canal_u, 5.5), min(0.45 * shp.canal_v, 4.0)
            cord = (u / cu) ** 2 + (dv / cv) ** 2 < 1.0
            if code == conus_code:
                cord &= w > 0
            tissue[cord & in_slab] = T["cord"]
        canvas.flags[slices][dural] |= FLAG_CANAL
