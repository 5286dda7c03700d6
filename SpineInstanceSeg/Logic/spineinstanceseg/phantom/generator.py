"""``generate_phantom``: one synthetic spine case (image + instance labels + semantic labels + centroids).

Randomness comes from two independent streams derived from the seed: one for the anatomy (shape, curvature, hard
case placement) and one for the acquisition (grid tilt, contrast, noise). So a seed gives the same spine in world
coordinates whatever the modality, spacing or oblique angle. Same seed and options -> identical arrays.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from ..errors import InputError
from ..levels import SACRUM_CODE, cranio_caudal_order, level_name
from ..semantic import CANAL, DISC, SACRUM, VERTEBRA
from ..volume import Volume
from .acquisition import synthesise_image
from .anatomy import sacrum_shape, spine_codes, vertebra_shape, with_wedge
from .bones import paint_other_bones
from .context import background_tissue, paint_context
from .curve import SpineLayout, SteepLordosis, build_layout, sample_curve_params
from .grid import DEFAULT_SPACING, base_direction, grid_covering, random_rotation
from .raster import FLAG_CANAL, FLAG_DISC, Canvas, bone_partial_volume, paint_canal, paint_discs, paint_vertebrae
from .shapes import vertebra_extremes

__all__ = ["PhantomCase", "generate_phantom", "REGIONS", "MODALITIES", "HARD_CASES", "EXTRA_LEVELS"]

log = logging.getLogger(__name__)

MODALITIES = ("ct", "t1", "t2")
REGIONS = ("lumbar", "thoracolumbar", "whole", "cervical")
HARD_CASES = ("collapsed_disc", "fused", "wedge_fracture")
EXTRA_LEVELS = ("L6", "T13")
MIN_FRAGMENT_MM3 = 200.0  # labelled pieces of a vertebra cut by the edge are at least this big (0.2 mL)

# Levels that a region guarantees in view (codes; the sacrum is added for all but cervical).
_REGION_CORE = {
    "lumbar": lambda codes: [c for c in codes if c in (20, 21, 22, 23, 24, 25, 28)],
    "thoracolumbar": lambda codes: [c for c in codes if 16 <= c <= 25 or c == 28],
    "whole": lambda codes: [c for c in codes if c != SACRUM_CODE],
    "cervical": lambda codes: [c for c in codes if c <= 7],
}


@dataclass(frozen=True)
class PhantomCase:
    """One synthetic case; all four outputs share one grid.

    Attributes:
        image: float32 image (CT in HU, MRI in arbitrary units).
        instances: int16 label map, VerSe codes per vertebra (26 sacrum), 0 background.
        semantic: uint8 label map of :mod:`spineinstanceseg.semantic` classes (vertebra, disc, canal, sacrum).
        centroids: VerSe code -> LPS mm centroid of that label's voxels (also for vertebrae cut by the edge).
        meta: JSON-compatible description (seed, modality, region, levels, hard case, spacing, ...).
    """

    image: Volume
    instances: Volume
    semantic: Volume
    centroids: dict[int, tuple[float, float, float]]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def levels(self) -> list[int]:
        """VerSe codes present, head to feet."""
        return sorted(self.centroids, key=cranio_caudal_order)


def _check_options(modality, region, spacing, oblique_deg, hard_case, extra_level) -> tuple[float, float, float]:
    def bad(what: str, value: object, allowed: tuple) -> InputError:
        return InputError(f"unknown phantom {what} {value!r}", fix=f"use one of {', '.join(map(str, allowed))}")

    if modality not in MODALITIES:
        raise bad("modality", modality, MODALITIES)
    if region not in REGIONS:
        raise bad("region", region, REGIONS)
    if hard_case is not None and hard_case not in HARD_CASES:
        raise bad("hard case", hard_case, HARD_CASES)
    if extra_level is not None and extra_level not in EXTRA_LEVELS:
        raise bad("extra level", extra_level, EXTRA_LEVELS)
    if extra_level is not None and region == "cervical":
        raise InputError(
            f"extra level {extra_level} is not in the cervical field of view",
            fix="use region 'lumbar', 'thoracolumbar' or 'whole' with an extra level",
        )
    if not np.isfinite(oblique_deg) or not 0 <= oblique_deg <= 90:
        raise InputError(f"oblique angle must be 0-90 degrees, got {oblique_deg}", fix="pass e.g. --oblique 15")
    sp = DEFAULT_SPACING[modality] if spacing is None else spacing
    arr = np.asarray(sp, dtype=float).reshape(-1)
    if arr.size == 1:
        arr = np.repeat(arr, 3)
    if arr.size != 3 or not np.all(np.isfinite(arr)) or arr.min() < 0.2 or arr.max() > 10:
        raise InputError(f"spacing must be three numbers between 0.2 and 10 mm, got {sp!r}", fix="e.g. 1.5 1.5 1.5")
    return (float(arr[0]), float(arr[1]), float(arr[2]))


def _anatomy(
    rng: np.random.Generator,
    hard_rng: np.random.Generator,
    region: str,
    hard_case: str | None,
    extra_level: str | None,
    curvature: bool,
    steep_lordosis: SteepLordosis | None = None,
):
    codes = spine_codes(extra_level=extra_level)
    scale = float(rng.uniform(0.92, 1.15))
    shapes = {c: vertebra_shape(c, scale=scale, rng=rng) for c in codes if c != SACRUM_CODE}
    sacrum = sacrum_shape(scale=scale, rng=rng)
    curve = sample_curve_params(rng, len(codes) - 1, curvature=curvature)
    # drawn after the curve, so that without the option every phantom stays exactly what it was
    steep = steep_lordosis is not None and curvature and region in ("lumbar", "thoracolumbar")
    if steep and rng.uniform() < steep_lordosis.share:
        curve = replace(curve, lordosis=float(rng.uniform(*steep_lordosis.lordosis_deg)))
    core = _REGION_CORE[region](codes)
    # Hard cases go between two core vertebrae that both carry a disc (not C1/C2).
    pairs = [(a, b) for a, b in zip(core, core[1:], strict=False) if a > 2]
    target: tuple[int, ...] = ()
    disc_override: dict[int, float] = {}
    fractured = fused = None
    if hard_case in ("collapsed_disc", "fused"):
        upper, lower = pairs[int(hard_rng.integers(len(pairs)))]
        target = (upper, lower)
        if hard_case == "collapsed_disc":
            disc_override[upper] = -0.6  # endplate rims overlap: the two bodies touch, the disc is squeezed out
        else:
            disc_override[upper] = 0.35 * shapes[upper].disc_below
            fused = (upper, lower)
    elif hard_case == "wedge_fracture":
        candidates = [c for c in core if shapes[c].kind in ("thoracic", "lumbar")] or core
        code = candidates[int(hard_rng.integers(len(candidates)))]
        shapes[code] = with_wedge(shapes[code], float(hard_rng.uniform(0.5, 0.7)))
        target, fractured = (code,), code
    degenerate = {c for c in codes if rng.uniform() < 0.3}
    skin_margin = float(rng.uniform(15.0, 45.0))
    fov_rng = np.random.default_rng(rng.integers(2**63))
    layout = build_layout(shapes, codes, sacrum, curve, disc_override=disc_override)
    info = {
        "target": target,
        "fractured": fractured,
        "fused": fused,
        "degenerate": degenerate,
        "skin_margin": skin_margin,
        "scale": scale,
        "curve": curve,
    }
    return layout, core, info, fov_rng


def _field_of_view(layout: SpineLayout, core: list[int], region: str, rng: np.random.Generator):
    """World box [lo, hi] (mm) around the core levels, cut through the neighbours above and below."""
    pts = []
    # Now and then a tight field of view that cuts the transverse processes at the sides.
    tight = rng.uniform() < 0.2
    for code in core:
        s, pose = layout.shapes[code], layout.poses[code]
        reach = 0.75 * s.lateral_reach if tight else s.lateral_reach + float(rng.uniform(4.0, 18.0))
        local = [
            (-reach, 0, 0),
            (reach, 0, 0),
            (0, -s.depth / 2 - rng.uniform(15, 35), 0),
            (0, s.posterior_reach + rng.uniform(8, 30), 0),
        ]
        pts.extend(pose.to_world(np.array(local, dtype=float)))
    pts = np.array(pts)
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    order = layout.order
    first, last = core[0], core[-1]
    centre = {c: layout.poses[c].centre for c in order}
    # Top: part of the way into the vertebra above (it ends up partially in view), or above C1.
    idx = order.index(first)
    top_of_first = layout.poses[first].to_world(vertebra_extremes(layout.shapes[first]))[:, 2].max()
    if idx == 0:
        hi[2] = top_of_first + rng.uniform(5.0, 15.0)
    else:
        above = order[idx - 1]
        hi[2] = centre[first][2] + rng.uniform(0.55, 1.0) * (centre[above][2] - centre[first][2])
        hi[2] = max(hi[2], top_of_first + 1.5)  # core levels stay whole
    if region != "cervical":  # sacrum in view, cut somewhere along it
        lo[2] = centre[SACRUM_CODE][2] - rng.uniform(40.0, 75.0)
        sac_reach = layout.sacrum.ala_half_width + rng.uniform(3.0, 15.0)
        lo[0] = min(lo[0], centre[SACRUM_CODE][0] - sac_reach)
        hi[0] = max(hi[0], centre[SACRUM_CODE][0] + sac_reach)
    else:
        below = order[order.index(last) + 1]
        lo[2] = centre[last][2] - rng.uniform(0.55, 1.0) * (centre[last][2] - centre[below][2])
        bottom_of_last = layout.poses[last].to_world(vertebra_extremes(layout.shapes[last]))[:, 2].min()
        lo[2] = min(lo[2], bottom_of_last - 1.5)
    return lo, hi


def _refine_factors(spacing: tuple[float, float, float]) -> tuple[int, int, int]:
    """Odd sub-voxel counts so thick slices are rendered at ~1.25 mm for partial-volume averaging.

    Only thick axes of anisotropic grids (> 2 mm and >= 1.5 x the finest axis, e.g. 3.5 mm sagittal MRI slices)
    are refined; coarse isotropic grids rely on the point-spread blur, which keeps them fast.
    """
    finest = min(spacing)
    return tuple(  # type: ignore[return-value]
        int(2 * np.ceil((s / 1.25 - 1) / 2) + 1) if s > 2.0 and s >= 1.5 * finest else 1 for s in spacing
    )


def _separate(labels: NDArray, allowed: set[frozenset[int]]) -> None:
    """Clear voxels where two different vertebrae touch face-to-face, except for ``allowed`` pairs (in place)."""
    for axis in range(3):
        a = np.moveaxis(labels, axis, 0)
        lo, hi = a[:-1], a[1:]
        contact = (lo != hi) & (lo > 0) & (hi > 0)
        if not contact.any():
            continue
        first, second = lo[contact], hi[contact]
        ok = np.zeros(first.shape, bool)
        for pair in allowed:
            a, b = sorted(pair)
            ok |= ((first == a) & (second == b)) | ((first == b) & (second == a))
        contact[contact] = ~ok
        hi[contact] = 0


def _centroids(labels: NDArray, volume: Volume) -> dict[int, tuple[float, float, float]]:
    flat = labels.ravel()
    nz = np.flatnonzero(flat)
    codes = flat[nz]
    ijk = np.unravel_index(nz, labels.shape)
    counts = np.bincount(codes)
    out = {}
    means = [np.bincount(codes, weights=ijk[a]) for a in range(3)]
    for code in np.flatnonzero(counts):
        idx = np.array([means[a][code] / counts[code] for a in range(3)])
        out[int(code)] = tuple(float(x) for x in volume.index_to_world(idx))
    return out


def _label_maps(
    canvas: Canvas, factors: tuple[int, int, int], allowed: set[frozenset[int]], *, voxel_mm3: float
) -> tuple[NDArray, NDArray, list[int]]:
    """Instance and semantic arrays on the output grid (the centre sub-voxel of each voxel is its centre)."""
    mid = tuple(slice((f - 1) // 2, None, f) for f in factors)
    labels = np.ascontiguousarray(canvas.labels[mid])
    flags = canvas.flags[mid]
    _separate(labels, allowed)
    # Slivers of a neighbour that barely enters the field of view (a process tip, a few voxels) are left
    # unlabelled: they would be spurious instances with meaningless centroids.
    counts = np.bincount(labels.ravel(), minlength=SACRUM_CODE + 3)
    slivers = [int(c) for c in np.flatnonzero(counts) if c and counts[c] * voxel_mm3 < MIN_FRAGMENT_MM3]
    if slivers:
        labels[np.isin(labels, slivers)] = 0
    semantic = np.zeros(labels.shape, np.uint8)
    semantic[(flags & FLAG_CANAL) > 0] = CANAL
    semantic[(flags & FLAG_DISC) > 0] = DISC
    semantic[labels > 0] = VERTEBRA
    semantic[labels == SACRUM_CODE] = SACRUM
    return labels, semantic, slivers


def generate_phantom(
    seed: int,
    *,
    modality: Literal["ct", "t1", "t2"] = "ct",
    region: Literal["lumbar", "thoracolumbar", "whole", "cervical"] = "lumbar",
    spacing: tuple[float, float, float] | float | None = None,
    oblique_deg: float = 0.0,
    hard_case: Literal["collapsed_disc", "fused", "wedge_fracture"] | None = None,
    extra_level: Literal["L6", "T13"] | None = None,
    curvature: bool = True,
    steep_lordosis: SteepLordosis | None = None,
) -> PhantomCase:
    """Generate one synthetic spine case.

    Args:
        seed: Any non-negative integer; same seed + options -> identical arrays.
        modality: "ct" (HU) or MRI "t1"/"t2" (arbitrary units).
        region: Field of view: "lumbar" (L1-L5 + sacrum), "thoracolumbar" (T9-L5 + sacrum), "whole"
            (C1-sacrum) or "cervical" (C1-C7). Neighbours beyond the core levels are cut by the volume edge.
        spacing: Voxel size in mm per array axis (one number = isotropic). Default per modality: CT axial
            0.8 x 0.8 x 1.5; T1/T2 sagittal 0.6 x 0.6 x 3.5 (thick axis left-right).
        oblique_deg: Tilt the grid by a random rotation of up to this angle (the anatomy stays put in world).
        hard_case: "collapsed_disc" (two bodies touch), "fused" (two labels share a bony bridge) or
            "wedge_fracture" (anterior height 50-70 %).
        extra_level: "L6" (sixth lumbar, code 25) or "T13" (thirteenth thoracic, code 28).
        curvature: False gives a straight spine along +z without scoliosis or rotation.
        steep_lordosis: Give a share of curved lumbar / thoracolumbar spines a steeper lumbar lordosis
            (:class:`~.curve.SteepLordosis`; stage-2 training). ``None``: the default shapes.
    """
    spacing3 = _check_options(modality, region, spacing, oblique_deg, hard_case, extra_level)
    if int(seed) < 0:
        raise InputError(f"seed must be >= 0, got {seed}", fix="pass a non-negative integer seed")
    anatomy_rng = np.random.default_rng([int(seed), 0])
    acq_rng = np.random.default_rng([int(seed), 1, MODALITIES.index(modality)])
    hard_rng = np.random.default_rng([int(seed), 2])  # hard cases change nothing else in the anatomy
    layout, core, info, fov_rng = _anatomy(
        anatomy_rng, hard_rng, region, hard_case, extra_level, curvature, steep_lordosis
    )
    lo, hi = _field_of_view(layout, core, region, fov_rng)
    tilt, angle = random_rotation(acq_rng, oblique_deg)
    direction = tilt @ base_direction(modality)
    grid = grid_covering(lo, hi, spacing=spacing3, direction=direction)
    factors = _refine_factors(spacing3)
    fine = grid.refined(factors)
    # The background blobs are ~2 cm: drawing them on the output grid and repeating sub-voxels is enough.
    background = background_tissue(grid, acq_rng)
    for axis, f in enumerate(factors):
        if f > 1:
            background = np.repeat(background, f, axis=axis)
    canvas = Canvas.empty(fine, background)
    paint_context(canvas, layout, skin_margin=info["skin_margin"])
    cortex = max(1.0, 0.75 * max(fine.spacing))
    # Later steps overwrite the tissue of earlier ones: canal, discs, unlabelled bones, then the vertebrae.
    paint_canal(canvas, layout)
    paint_discs(canvas, layout, fused=info["fused"], degenerate=info["degenerate"])
    paint_other_bones(canvas, layout, cortex=cortex)
    paint_vertebrae(canvas, layout, fractured=info["fractured"])
    bone_pv = bone_partial_volume(canvas, thickness=0.8)
    image = synthesise_image(canvas.tissue, factors, grid, modality=modality, rng=acq_rng, bone_pv=bone_pv)
    allowed = {frozenset(info["target"])} if hard_case in ("collapsed_disc", "fused") else set()
    labels, semantic, slivers = _label_maps(canvas, factors, allowed, voxel_mm3=float(np.prod(grid.spacing)))
    geo = dict(spacing=grid.spacing, origin=tuple(grid.origin), direction=grid.direction)
    img_vol = Volume(image, **geo)
    inst_vol = Volume(labels, is_label=True, **geo)
    sem_vol = Volume(semantic, is_label=True, **geo)
    centroids = _centroids(labels, inst_vol)
    levels = sorted(centroids, key=cranio_caudal_order)
    meta = {
        "seed": int(seed),
        "modality": modality,
        "region": region,
        "levels": [int(c) for c in levels],
        "level_names": [level_name(c) for c in levels],
        "core_levels": [int(c) for c in core if c in centroids] + ([SACRUM_CODE] if region != "cervical" else []),
        "hard_case": hard_case,
        "hard_case_levels": [int(c) for c in info["target"]],
        "extra_level": extra_level,
        "curvature": bool(curvature),
        "spacing": [float(s) for s in grid.spacing],
        "shape": [int(n) for n in grid.shape],
        "oblique_deg": float(angle),
        "scale": round(float(info["scale"]), 4),
        "cobb_deg": round(float(info["curve"].cobb), 2),
        "lordosis_deg": round(float(info["curve"].lordosis), 2),
        "unlabelled_slivers": slivers,
        "touching_pairs": [sorted(int(c) for c in p) for p in allowed],
        "units": "HU" if modality == "ct" else "arbitrary",
        "generator": "spineinstanceseg.phantom",
    }
    log.debug("phantom seed %d: %s, grid %s", seed, meta["level_names"], grid.shape)
    return PhantomCase(img_vol, inst_vol, sem_vol, centroids, meta)
