"""Implicit (approximate signed-distance) shapes of vertebrae, discs and the sacrum, evaluated on coordinates.

Every function takes local coordinates ``u, v, w`` (mm; float32 arrays of one shape, or broadcastable) in the
frame described in :mod:`.anatomy` and returns an array of the same shape: negative inside the shape, about the
distance to the surface in mm (exact for spheres and capsules, approximate for ellipses and unions). Nothing is
rasterised here; :mod:`.raster` evaluates these on the voxel centres of the output grid.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from .anatomy import SacrumShape, VertebraShape

__all__ = ["body_surfaces", "body_radial", "vertebra_sd", "vertebra_extremes", "sacrum_sd", "capsule_sd"]

Array = NDArray[np.float32]


def _f(x: float) -> np.float32:
    return np.float32(x)


def capsule_sd(
    u: Array,
    v: Array,
    w: Array,
    p0: tuple[float, float, float],
    p1: tuple[float, float, float],
    r0: float,
    r1: float | None = None,
    *,
    u_scale: float = 1.0,
) -> Array:
    """Distance to a capsule (segment ``p0``-``p1`` with radius tapering ``r0`` -> ``r1``) minus the radius.

    ``u_scale > 1`` flattens the capsule along ``u`` (thin spinous processes): ``u`` is stretched before the
    distance is taken.
    """
    r1 = r0 if r1 is None else r1
    d = np.subtract(p1, p0, dtype=float)
    length2 = float(d @ d)
    du = (u - _f(p0[0])) * _f(u_scale) if u_scale != 1.0 else u - _f(p0[0])
    dv = v - _f(p0[1])
    dw = w - _f(p0[2])
    t = du * _f(d[0] * u_scale / length2) if u_scale != 1.0 else du * _f(d[0] / length2)
    t += dv * _f(d[1] / length2)
    t += dw * _f(d[2] / length2)
    np.clip(t, 0.0, 1.0, out=t)
    du -= t * _f(d[0] * u_scale)
    dv -= t * _f(d[1])
    dw -= t * _f(d[2])
    dist = np.sqrt(du * du + dv * dv + dw * dw)
    dist -= _f(r0) + t * _f(r1 - r0)
    return dist


def _ellipse_sd(x: Array, y: Array, a: float, b: float) -> Array:
    """Approximate signed distance to the ellipse ``(x/a)^2 + (y/b)^2 = 1`` (exact on the short axis)."""
    r = np.sqrt((x * _f(1.0 / a)) ** 2 + (y * _f(1.0 / b)) ** 2)
    r -= 1.0
    r *= _f(min(a, b))
    return r


def body_radial(s: VertebraShape, u: Array, v: Array, *, grow: float = 0.0) -> Array:
    """Signed distance to the outline of the vertebral body in the axial plane (kidney-like, flat at the back).

    ``grow`` enlarges the outline by that many mm (discs bulge a little beyond the bodies).
    """
    a = s.width / 2.0 + grow
    b = s.depth / 2.0 + grow
    # Round at the front; at the back a wider ellipse cut by a posterior wall that is concave at the midline,
    # which gives the flat, slightly kidney-shaped posterior border of real bodies.
    vb = np.where(v > 0, v * _f(0.85), v)
    radial = _ellipse_sd(u, vb, a, b)
    un2 = (u * _f(1.0 / a)) ** 2
    wall = v - (_f(b - 2.0) + _f(3.0) * np.minimum(un2, 1.0))
    return np.maximum(radial, wall)


def body_surfaces(s: VertebraShape, u: Array, v: Array) -> tuple[Array, Array]:
    """``(top, bottom)``: the ``w`` of the superior and inferior endplate above each ``(u, v)`` (concave dish)."""
    a, b = s.width / 2.0, s.depth / 2.0
    vn = np.clip(v * _f(1.0 / b), -1.0, 1.0)
    half = _f((s.height + s.height_ant) / 4.0) + vn * _f((s.height - s.height_ant) / 4.0)
    rho2 = (u * _f(1.0 / a)) ** 2 + vn * vn
    dish = np.clip(1.0 - rho2, 0.0, 1.0) * _f(s.concavity)
    return half - dish, -half + dish


def _body_sd(s: VertebraShape, u: Array, v: Array, w: Array) -> Array:
    # The sides are slightly waisted: the outline shrinks by up to 6 % at mid-height.
    hw = _f(2.0 / s.height)
    waist = 1.0 - 0.06 * np.clip(1.0 - (w * hw) ** 2, 0.0, 1.0)
    radial = body_radial(s, u / waist, v / waist)
    top, bottom = body_surfaces(s, u, v)
    return np.maximum(radial, np.maximum(w - top, bottom - w))


def _canal_half_width(s: VertebraShape, dvn: Array, extra: float = 0.0) -> Array:
    """Left-right half width of the (rounded-triangular) canal at normalised depth ``dvn`` in [-1, 1]."""
    return (_f(s.canal_u + extra)) * (1.0 - _f(0.3) * dvn)


def _arch_sd(s: VertebraShape, u: Array, v: Array, w: Array) -> Array:
    """Pedicles + laminae: a rounded-triangular ring around the canal whose height changes from pedicle to lamina."""
    vc = s.canal_centre_v
    ov = s.canal_v + s.lam_t
    dv = v - _f(vc)
    dvn_in = np.clip(dv * _f(1.0 / s.canal_v), -1.0, 1.0)
    dvn_out = np.clip(dv * _f(1.0 / ov), -1.0, 1.0)
    inner_u = _canal_half_width(s, dvn_in)
    outer_u = _canal_half_width(s, dvn_out, s.ped_w)
    outer = (np.sqrt((u / outer_u) ** 2 + (dv * _f(1.0 / ov)) ** 2) - 1.0) * _f(min(s.ped_w, s.lam_t) + 4.0)
    inner = (1.0 - np.sqrt((u / inner_u) ** 2 + (dv * _f(1.0 / s.canal_v)) ** 2)) * _f(s.canal_v)
    ring = np.maximum(outer, inner)
    ring = np.maximum(ring, _f(s.depth / 2.0 - 6.0) - v)  # the front of the ring merges into the body
    t = np.clip(dv * _f(1.0 / ov), 0.0, 1.0)
    ped_c, lam_c = 0.15 * s.height, -0.05 * s.height
    centre = _f(ped_c) + t * _f(lam_c - ped_c)
    half = _f(s.ped_h / 2.0) + t * _f((s.lam_h - s.ped_h) / 2.0)
    ring = np.maximum(ring, np.abs(w - centre) - half)
    # Pedicles: short thick struts from the posterolateral corners of the body to the ring (flat left-right).
    pu = s.canal_u * 1.1 + 0.5 * s.ped_w
    flat = max(s.ped_h / s.ped_w, 1.0)
    ped = capsule_sd(np.abs(u), v, w, (pu, s.depth / 2.0 - 7.0, ped_c), (pu, vc, ped_c), s.ped_h / 2.0, u_scale=flat)
    return np.minimum(ring, ped / _f(flat))


def _processes_sd(s: VertebraShape, u: Array, v: Array, w: Array) -> Array:
    vc = s.canal_centre_v
    ped_top = 0.15 * s.height + s.ped_h / 2.0
    lam_c, lam_bottom = -0.05 * s.height, -0.05 * s.height - s.lam_h / 2.0
    # Spinous process: a flat plate from the back of the lamina, backwards and downwards, tapering in height
    # (a hatchet in lumbar levels, a slender spike in thoracic ones) and a little thicker at its tip.
    ang = np.radians(s.sp_ang)
    ca, sa = np.float32(np.cos(ang)), np.float32(np.sin(ang))
    dv = v - _f(vc + s.canal_v + 0.3 * s.lam_t)
    dw = w - _f(lam_c)
    t = dv * ca - dw * sa  # along the process
    n = dv * sa + dw * ca  # across it, in the sagittal plane
    frac = np.clip(t * _f(1.0 / s.sp_len), 0.0, 1.0)
    tip = 0.85 if s.kind == "lumbar" else 0.45
    half_h = _f(s.sp_h) * (1.0 + _f(tip - 1.0) * frac)
    half_t = _f(s.sp_th) * (0.8 + 0.4 * frac)
    out = np.maximum(np.maximum(np.abs(n) - half_h, np.abs(u) - half_t), np.maximum(t - _f(s.sp_len), -t - 2.0))
    # Mirror-symmetric processes: evaluate on |u| once for both sides.
    au = np.abs(u)
    back, up = np.radians(s.tp_back), np.radians(s.tp_up)
    t0 = (s.canal_u + s.ped_w - 1.0, vc - 0.3 * s.canal_v if s.kind == "lumbar" else vc, 0.15 * s.height)
    direction = (np.cos(back) * np.cos(up), np.sin(back) * np.cos(up), np.sin(up))
    t1 = tuple(t0[i] + s.tp_len * direction[i] for i in range(3))
    out = np.minimum(out, capsule_sd(au, v, w, t0, t1, s.tp_r, 0.8 * s.tp_r))
    # Superior articular processes point up (lateral), inferior ones down (medial and further back).
    sup0 = (s.canal_u + 0.7 * s.ped_w, vc + 0.1 * s.canal_v, ped_top - 2.0)
    sup1 = (sup0[0], sup0[1] + 2.0, sup0[2] + s.art_len)
    out = np.minimum(out, capsule_sd(au, v, w, sup0, sup1, s.art_r))
    inf0 = (s.canal_u + 0.3 * s.ped_w, vc + 0.8 * s.canal_v, lam_bottom + 3.0)
    inf1 = (inf0[0], inf0[1] + 2.0, inf0[2] - s.art_len)
    out = np.minimum(out, capsule_sd(au, v, w, inf0, inf1, s.art_r))
    return out


def _atlas_sd(s: VertebraShape, u: Array, v: Array, w: Array) -> Array:
    """C1: anterior and posterior arches around dens and canal, two lateral masses, transverse processes."""
    ring_c = s.canal_v * 0.6
    dv = v - _f(ring_c)
    a_out, b_out = s.canal_u + 8.0, s.canal_v + 18.0
    ring = np.maximum(_ellipse_sd(u, dv, a_out, b_out), -_ellipse_sd(u, dv, a_out - 5.0, b_out - 5.0))
    ring = np.maximum(ring, np.abs(w) - _f(4.5))
    au = np.abs(u)
    masses = capsule_sd(au, v, w, (s.canal_u + 2.0, ring_c - 4.0, -3.0), (s.canal_u + 2.0, ring_c - 4.0, 3.0), 7.0)
    tp = capsule_sd(
        au, v, w, (s.canal_u + 6.0, ring_c - 4.0, 0.0), (s.canal_u + 6.0 + s.tp_len, ring_c - 2.0, 0.0), s.tp_r
    )
    return np.minimum(np.minimum(ring, masses), tp)


def vertebra_sd(s: VertebraShape, u: Array, v: Array, w: Array) -> Array:
    """Signed distance (mm, negative inside) to the whole vertebra ``s`` at local coordinates ``(u, v, w)``."""
    if s.kind == "atlas":
        return _atlas_sd(s, u, v, w)
    out = np.minimum(_body_sd(s, u, v, w), _arch_sd(s, u, v, w))
    out = np.minimum(out, _processes_sd(s, u, v, w))
    if s.kind == "axis":  # the dens rises from the body of C2 into the ring of the atlas
        top = s.height / 2.0
        out = np.minimum(out, capsule_sd(u, v, w, (0.0, -1.0, top - 2.0), (0.0, 0.0, top + 8.0), 5.5, 4.0))
    return out


def sacrum_sd(s: SacrumShape, u: Array, v: Array, w: Array) -> Array:
    """Signed distance to the sacrum in the S1 endplate frame (``w = 0`` at the endplate, sacrum below)."""
    t = np.clip(-w * _f(1.0 / s.length), 0.0, 1.0)
    bend = -t * t * _f(s.curve)  # the lower sacrum curves forwards (concave anteriorly)
    vv = v - bend
    a_body = _f(s.width / 2.0) * (1.0 - 0.5 * t)
    b_body = _f(s.depth / 2.0) * (1.0 - 0.7 * t)
    body = np.sqrt((u / a_body) ** 2 + (vv / b_body) ** 2) - 1.0
    body *= b_body
    # Alae and lateral parts: a wide, flatter plate behind the body centre, narrowing downwards.
    a_wing = _f(s.ala_half_width) * (1.0 - 0.72 * t)
    b_wing = _f(0.42 * s.depth) * (1.0 - 0.6 * t)
    wing_v = vv - _f(0.3 * s.depth)
    wing = np.sqrt((u / a_wing) ** 2 + (wing_v / b_wing) ** 2) - 1.0
    wing *= b_wing
    wing = np.maximum(wing, w + _f(5.0) + _f(6.0) * np.minimum((u / a_wing) ** 2, 1.0))
    rho2 = np.clip((u * _f(2.0 / s.width)) ** 2 + (v * _f(2.0 / s.depth)) ** 2, 0.0, 1.0)
    top = -_f(s.concavity) * (1.0 - rho2)
    out = np.maximum(np.minimum(body, wing), w - top)
    out = np.maximum(out, -_f(s.length) - w)
    # Sacral canal (hole) behind the body, tapering; the dorsal wall stays bone.
    cu = _f(s.canal_u) * (1.0 - 0.6 * t)
    cv = _f(s.canal_v) * (1.0 - 0.5 * t)
    canal_v = vv - (b_body + cv + _f(1.5))
    canal = 1.0 - np.sqrt((u / cu) ** 2 + (canal_v / cv) ** 2)
    out = np.maximum(out, canal * cv)
    # Four pairs of sacral foramina through the lateral parts.
    au = np.abs(u)
    for frac in (0.2, 0.38, 0.55, 0.71):
        wf = -frac * s.length
        uf = (s.width / 2.0) * (1.0 - 0.5 * frac) * 0.95
        hole = 3.5 * (1.0 - 0.4 * frac) - np.sqrt((au - _f(uf)) ** 2 + (w - _f(wf)) ** 2)
        out = np.maximum(out, hole)
    # Superior articular processes of S1 meet the inferior ones of L5.
    sup0 = (s.canal_u + 5.0, s.depth / 2.0 + 4.0, -6.0)
    out = np.minimum(out, capsule_sd(au, v, w, sup0, (sup0[0], sup0[1] + 2.0, 8.0), 5.5))
    return out


def sacrum_canal(s: SacrumShape, u: Array, v: Array, w: Array) -> Array:
    """Signed distance to the dural sac in the upper sacrum (ends near S2)."""
    t = np.clip(-w * _f(1.0 / s.length), 0.0, 1.0)
    vv = v + t * t * _f(s.curve)
    b_body = _f(s.depth / 2.0) * (1.0 - 0.7 * t)
    cu = _f(s.canal_u * 0.75) * (1.0 - 0.6 * t)
    cv = _f(s.canal_v * 0.75) * (1.0 - 0.5 * t)
    d = np.sqrt((u / cu) ** 2 + ((vv - b_body - cv / 0.75 - 1.5) / cv) ** 2) - 1.0
    d *= cv
    return np.maximum(d, -w - _f(0.3 * s.length))


def vertebra_extremes(s: VertebraShape) -> np.ndarray:
    """Local points ``(n, 3)`` on the outermost parts of the vertebra (body corners, process tips), used to keep
    whole vertebrae inside a field of view."""
    if s.kind == "atlas":
        r, b = s.canal_u + 8.0 + s.tp_len + s.tp_r, s.canal_v + 18.0
        return np.array([[x, y, z] for x in (-r, r) for y in (-b, b) for z in (-10.0, 10.0)])
    vc = s.canal_centre_v
    ped_top = 0.15 * s.height + s.ped_h / 2.0
    lam_bottom = -0.05 * s.height - s.lam_h / 2.0
    ang = np.radians(s.sp_ang)
    sp0 = np.array([0.0, vc + s.canal_v + 0.3 * s.lam_t, -0.05 * s.height])
    sp_tip = sp0 + s.sp_len * np.array([0.0, np.cos(ang), -np.sin(ang)])
    pts = [
        [x, y, z]
        for x in (-s.width / 2, s.width / 2)
        for y in (-s.depth / 2, s.depth / 2)
        for z in (-s.height / 2, s.height / 2)
    ]
    for side in (-1.0, 1.0):
        pts.append(
            [side * (s.canal_u + 0.7 * s.ped_w), vc + 0.1 * s.canal_v + 2.0, ped_top - 2.0 + s.art_len + s.art_r]
        )
        pts.append(
            [side * (s.canal_u + 0.3 * s.ped_w), vc + 0.8 * s.canal_v + 2.0, lam_bottom + 3.0 - s.art_len - s.art_r]
        )
        pts.append([side * s.lateral_reach, vc, 0.15 * s.height])
    pts.append(list(sp_tip + [0.0, 0.0, -s.sp_h]))
    pts.append(list(sp_tip + [0.0, 0.0, s.sp_h]))
    if s.kind == "axis":
        pts.append([0.0, 0.0, s.height / 2.0 + 12.0])
    return np.asarray(pts, dtype=float)
