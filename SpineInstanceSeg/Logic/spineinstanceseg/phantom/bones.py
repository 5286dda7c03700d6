"""Bones next to the spine that are *not* labelled: ribs (thoracic levels, T13) and the iliac bones beside the
sacrum. They appear in the image as bone (cortical shell, trabecular core) so that a model trained on phantoms
learns to leave them out; their voxels keep instance label 0.
"""

from __future__ import annotations

import numpy as np

from ..levels import SACRUM_CODE
from .curve import SpineLayout
from .raster import Canvas, T
from .shapes import capsule_sd

__all__ = ["paint_other_bones"]


def _paint(canvas: Canvas, slices, sd: np.ndarray, cortex: float) -> None:
    inside = (sd < 0) & (canvas.labels[slices] == 0)
    tissue = canvas.tissue[slices]
    tissue[inside] = np.where(sd[inside] > -cortex, T["cortical"], T["trabecular"]).astype(np.uint8)


def _rib_sd(s, u: np.ndarray, v: np.ndarray, w: np.ndarray) -> np.ndarray:
    """One rib each side (mirrored through |u|): head at the body, neck in front of the transverse process, then
    the shaft running laterally, backwards and down before it turns forwards."""
    au = np.abs(u)
    back, up = np.radians(s.tp_back), np.radians(s.tp_up)
    vc = s.canal_centre_v
    tip = (
        s.canal_u + s.ped_w - 1.0 + s.tp_len * np.cos(back) * np.cos(up),
        vc + s.tp_len * np.sin(back) * np.cos(up),
        0.15 * s.height + s.tp_len * np.sin(up),
    )
    r = 0.2 * s.height
    head = (s.width / 2.0 + r + 1.5, 0.2 * s.depth, s.height / 2.0 - 1.0)
    tubercle = (tip[0] + 1.0, tip[1] - s.tp_r - r - 1.0, tip[2] - 2.0)
    angle = (tubercle[0] + 30.0, tubercle[1] + 6.0, tubercle[2] - 10.0)
    front = (angle[0] + 28.0, angle[1] - 30.0, angle[2] - 10.0)
    out = capsule_sd(au, v, w, head, tubercle, r)
    out = np.minimum(out, capsule_sd(au, v, w, tubercle, angle, r))
    return np.minimum(out, capsule_sd(au, v, w, angle, front, r))


def _ilium_sd(sac, u: np.ndarray, v: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Iliac bone beside each ala: a thick plate lateral to the sacroiliac joint, flaring outwards and forwards."""
    au = np.abs(u)
    t = np.clip(-w / sac.length, 0.0, 1.0)
    joint = np.float32(sac.ala_half_width) * (1.0 - 0.72 * t) + np.float32(2.5)  # 2.5 mm joint space
    flare = np.float32(0.5) * np.maximum(-v, 0)  # the wing sweeps laterally towards the front
    inner = joint - au
    outer = au - (joint + np.float32(16.0) + flare)
    ap = np.abs(v - np.float32(0.2 * sac.depth)) - np.float32(0.75 * sac.depth)
    height = np.maximum(w + np.float32(2.0), -w - np.float32(0.6 * sac.length))
    return np.maximum(np.maximum(inner, outer), np.maximum(ap, height))


def paint_other_bones(canvas: Canvas, layout: SpineLayout, *, cortex: float) -> None:
    """Ribs on every thoracic level (and T13) and the iliac bones, as tissue only (labels untouched)."""
    for code in layout.order:
        if code == SACRUM_CODE:
            sac = layout.sacrum
            reach = sac.ala_half_width + 60.0
            lo = (-reach, -sac.depth - 30.0, -0.6 * sac.length - 2.0)
            hi = (reach, sac.depth + 20.0, 0.0)
            found = canvas.local(layout.poses[code], lo, hi)
            if found is not None:
                slices, (u, v, w) = found
                _paint(canvas, slices, _ilium_sd(sac, u, v, w), cortex)
            continue
        s = layout.shapes[code]
        if s.kind != "thoracic":
            continue
        reach = s.width / 2.0 + s.tp_len + 80.0
        lo = (-reach, -s.depth - 40.0, -s.height - 30.0)
        hi = (reach, s.canal_centre_v + s.tp_len + 30.0, s.height)
        found = canvas.local(layout.poses[code], lo, hi)
        if found is not None:
            slices, (u, v, w) = found
            _paint(canvas, slices, _rib_sd(s, u, v, w), cortex)
