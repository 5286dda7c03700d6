"""Soft tissue around the spine (tissue map only, never labels): fat/organ background, muscles, vessels, lungs,
trachea, skin and air.

Painted per spine segment in the local frame of its vertebra, before the spine itself (which overwrites it).
Structures follow real topography loosely: psoas beside the lumbar bodies, paraspinal muscles behind the laminae,
aorta left-anterior and vena cava right-anterior of the bodies, lungs beside the thoracic spine, trachea in
front of the lower cervical spine, skin and air behind the back (and around the neck).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from ..levels import SACRUM_CODE
from .curve import SpineLayout
from .grid import Grid
from .raster import Canvas, T, slab_range

__all__ = ["background_tissue", "paint_context"]


def _interp_matrix(n: int, c: int) -> NDArray:
    """(n, c) linear-interpolation weights from ``c`` coarse samples to ``n`` fine ones spanning the same range."""
    x = np.linspace(0.0, c - 1.0, n)
    i0 = np.minimum(np.floor(x).astype(int), c - 2)
    f = (x - i0).astype(np.float32)
    w = np.zeros((n, c), np.float32)
    w[np.arange(n), i0] = 1.0 - f
    w[np.arange(n), i0 + 1] = f
    return w


def background_tissue(grid: Grid, rng: np.random.Generator, *, blob_mm: float = 18.0) -> NDArray:
    """Fat and soft-tissue (organ/bowel) blobs of about ``blob_mm`` size filling the grid (uint8 tissue codes)."""
    coarse = tuple(int(np.ceil(n * s / blob_mm)) + 2 for n, s in zip(grid.shape, grid.spacing, strict=True))
    noise = rng.standard_normal(coarse).astype(np.float32)
    # Separable linear upsampling as three small matrix products (much cheaper than ndimage.zoom).
    field = np.tensordot(_interp_matrix(grid.shape[0], coarse[0]), noise, axes=(1, 0))
    field = np.tensordot(field, _interp_matrix(grid.shape[1], coarse[1]), axes=(1, 1))
    field = np.tensordot(field, _interp_matrix(grid.shape[2], coarse[2]), axes=(1, 1))
    return np.where(field > 0.2, T["soft"], T["fat"]).astype(np.uint8)


def _ellipse(u: NDArray, v: NDArray, cu: float, cv: float, au: float, av: float) -> NDArray:
    return ((u - np.float32(cu)) * np.float32(1 / au)) ** 2 + ((v - np.float32(cv)) * np.float32(1 / av)) ** 2 < 1


def paint_context(canvas: Canvas, layout: SpineLayout, *, skin_margin: float) -> None:
    """Muscles, vessels, lungs, airway, skin/air for every vertebra segment whose box meets the grid."""
    for code in layout.order:
        if code == SACRUM_CODE:
            _paint_sacral_context(canvas, layout, skin_margin)
            continue
        shp = layout.shapes[code]
        w0, w1 = slab_range(layout, code)
        back = shp.posterior_reach + skin_margin
        found = canvas.local(layout.poses[code], (-80.0, -shp.depth / 2 - 60.0, w0), (80.0, back + 20.0, w1))
        if found is None:
            continue
        slices, (u, v, w) = found
        slab = (w >= w0) & (w <= w1)
        tissue = canvas.tissue[slices]
        au = np.abs(u)
        b = shp.depth / 2
        if shp.kind == "thoracic":
            lung = _ellipse(au, v, shp.width / 2 + 52.0, -2.0, 46.0, 62.0)
            # Dome of the diaphragm: low down only the posterior recesses of the lungs remain.
            recess = {17: -b - 25.0, 18: -b + 5.0, 28: b, 19: b + 15.0}.get(code)
            if recess is not None:
                lung &= v > recess
            tissue[lung & slab] = T["lung"]
        size = {"cervical": 0.55, "atlas": 0.55, "axis": 0.55, "thoracic": 0.8}.get(shp.kind, 1.0)
        vc = shp.canal_centre_v
        erector = _ellipse(
            au, v, shp.canal_u + shp.ped_w + 12 * size, vc + shp.canal_v + 22 * size, 20 * size, 22 * size
        )
        tissue[erector & slab] = T["muscle"]
        if shp.kind == "lumbar" or code == 19:
            rank = {19: 0.0, 28: 0.1, 20: 0.2, 21: 0.4, 22: 0.6, 23: 0.8, 24: 1.0, 25: 1.0}.get(code, 0.5)
            radius = 6.0 + 15.0 * rank
            psoas = _ellipse(au, v, shp.width / 2 + 0.8 * radius, -3.0, radius, radius * 1.1)
            tissue[psoas & slab] = T["muscle"]
        if shp.kind in ("thoracic", "lumbar") and code not in (24, 25):
            aorta = _ellipse(u, v, 0.25 * shp.width + 4.0, -b - 13.0, 10.5, 10.5)
            tissue[aorta & slab] = T["vessel"]
        if shp.kind == "lumbar" or code in (19, 28):
            cava = _ellipse(u, v, -0.35 * shp.width - 6.0, -b - 11.0, 12.0, 8.0)
            tissue[cava & slab] = T["vessel"]
        if shp.kind in ("cervical", "atlas", "axis") or code == 8:
            neck = ~_ellipse(u, v, 0.0, 12.0, 62.0, 62.0)
            tissue[neck & slab] = T["air"]
            if code >= 5:
                trachea = _ellipse(u, v, 0.0, -b - 18.0, 8.0, 7.5)
                tissue[trachea & slab] = T["air"]
        tissue[(v > back) & slab] = T["air"]


def _paint_sacral_context(canvas: Canvas, layout: SpineLayout, skin_margin: float) -> None:
    sac = layout.sacrum
    lo = (-80.0, -sac.depth / 2 - sac.curve - 40.0, -sac.length - 60.0)
    hi = (80.0, sac.depth + 90.0, 0.0)
    found = canvas.local(layout.poses[SACRUM_CODE], lo, hi)
    if found is None:
        return
    slices, (u, v, w) = found
    tissue = canvas.tissue[slices]
    t = np.clip(-w / sac.length, 0, 1)
    back = sac.depth / 2 + 22.0 + skin_margin - 15.0 * t
    # Iliopsoas and gluteal muscle masses in front of and behind the alae.
    tissue[_ellipse(np.abs(u), v, sac.ala_half_width * 0.8, -sac.depth * 0.6, 18.0, 14.0) & (w < 0)] = T["muscle"]
    tissue[_ellipse(np.abs(u), v, 20.0, sac.depth / 2 + 12.0, 18.0, 10.0) & (w < 0)] = T["muscle"]
    tissue[(v > back) & (w < 0)] = T["air"]
