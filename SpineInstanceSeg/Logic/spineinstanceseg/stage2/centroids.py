"""One centroid per vertebra from a semantic mask, ordered top to bottom (the windows of stage 2 sit on them).

Connected components are not enough: neighbouring vertebrae touch (collapsed discs, fusions, facet joints, and in
vertebra-only CT masks the union of all vertebrae is usually one component). The method follows the spine:

1. **Centre line** through the vertebral bodies on the working grid (canonical axes, axis 2 superior): in every
   axial slice the body is the thickest part of the mask, so the slice's point is the centre of the voxels near
   the maximum of the 3D distance transform; points are smoothed along axis 2 with weights that favour body
   slices (disc-level slices hold only thin posterior elements) and outliers are dropped.
2. **Profile** along the line: every mask voxel is projected onto the nearest line point; the profile is the
   fraction of a thin cylinder around the line (radius ~ the body's inscribed radius) filled with vertebra,
   minus the fraction filled with disc. Disc spaces are its minima.
3. **Cuts**: deep minima are certain cuts. Segments between cuts are compared with the local pitch (median of
   the neighbouring segments, else ``expected_height_mm``, else an estimate from the body size); a segment
   about k pitches long holds k vertebrae (fused pair, collapsed disc) and is split at its weakest points,
   a far too short internal segment is merged with a neighbour.
4. **Regions and centroids**: the cylinder part of each segment seeds a geodesic region growing inside the
   mask, so posterior elements join their own body through the pedicles; each region's
   centre of mass is a centroid. Regions at the field-of-view edge are kept (cut vertebrae still get one) unless
   they are tiny; large mask components that no seed reached get a centroid of their own.

All lengths are in mm; arrays are (X, Y, Z) on an isotropic grid.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage
from scipy.signal import find_peaks
from scipy.spatial import cKDTree
from skimage.segmentation import watershed

from ..errors import InputError
from ..semantic import DISC, VERTEBRA
from ..volume import Volume
from .working_grid import to_working_grid

__all__ = ["Centroid", "VertebraLayout", "find_centroids", "locate_vertebrae", "DEFAULT_WORKING_SPACING_MM"]

log = logging.getLogger(__name__)

DEFAULT_WORKING_SPACING_MM = 2.0
# Plausible centroid-to-centroid distances (vertebra + one disc) in mm, C3 ... L5.
MIN_PITCH_MM = 12.0
MAX_PITCH_MM = 48.0
# pitch ~ this factor x the body's inscribed radius (cervical ~7 mm -> 18 mm, lumbar ~14 mm -> 36 mm).
_PITCH_PER_BODY_RADIUS = 2.6
_SPLIT_RATIO = 1.5  # a segment this many pitches long holds more than one vertebra (fused pair: ~1.7)
_END_EXTRA = 0.15  # end segments start at a body's edge, not mid-disc: add about half a disc (in pitches)
_MERGE_RATIO = 0.45  # an internal segment shorter than this many pitches is not a vertebra of its own
_CLEAR_CUT_LEVEL = 0.7  # a minimum this low and this deep is a certain disc space (thin cervical discs ~0.4)
_CLEAR_CUT_PROMINENCE = 0.3
_MIN_REGION_FRACTION = 0.08  # regions smaller than this x the median region are fragments, not vertebrae
# A separate mask component (no body in view, e.g. a spinous process cut by the field of view) is a vertebra
# when it is at least this fraction of the median vertebra and this many mm^3 (smaller: stage-1 noise).
_MIN_COMPONENT_FRACTION = 0.03
_MIN_COMPONENT_MM3 = 1000.0


@dataclass(frozen=True)
class Centroid:
    """One vertebra's centroid.

    Attributes:
        lps: Physical position in LPS mm (for an array input: ``index * spacing``).
        index: Continuous index on the working grid (X, Y, Z).
        voxels: Voxel count of the vertebra's provisional region on the working grid.
    """

    lps: tuple[float, float, float]
    index: tuple[float, float, float]
    voxels: int


@dataclass(frozen=True)
class VertebraLayout:
    """The result of :func:`locate_vertebrae` on a working-grid array.

    Attributes:
        centroids: (N, 3) float continuous indices, ordered top (highest axis 2) to bottom.
        regions: int32 (X, Y, Z) provisional split of the vertebra mask, value k+1 for ``centroids[k]``; voxels
            of discarded fragments are 0.
        cuts_mm: Arc-length positions (mm along the centre line, increasing upwards) of the cuts used.
    """

    centroids: NDArray[np.float64]
    regions: NDArray[np.int32]
    cuts_mm: tuple[float, ...] = ()


# ----------------------------------------------------------------------------------------- centre line
def _centre_line(vert: NDArray[np.bool_], edt: NDArray) -> tuple[NDArray, NDArray, int]:
    """Per axial slice (axis 2) the body centre (x, y) and the body's inscribed radius (voxels).

    Returns ``(xy, radius, z0)`` for slices ``z0 .. z0 + len(xy) - 1``; slices without mask are interpolated.
    """
    zs = np.nonzero(vert.any(axis=(0, 1)))[0]
    z0, z1 = int(zs[0]), int(zs[-1])
    n = z1 - z0 + 1
    xy = np.zeros((n, 2))
    peak = np.zeros(n)
    for k in range(n):
        e = edt[:, :, z0 + k]
        top = float(e.max())
        if top <= 0:
            continue
        sel = e >= 0.7 * top
        ii, jj = np.nonzero(sel)
        w = e[sel]
        xy[k] = ((ii * w).sum() / w.sum(), (jj * w).sum() / w.sum())
        peak[k] = top
    # Body slices have the thickest cross-sections; weight them much more than disc-level slices.
    weight = peak**3
    # Radius of the body column: running maximum over about half a lumbar vertebra, then smoothed.
    radius = ndimage.gaussian_filter1d(ndimage.maximum_filter1d(peak, size=9, mode="nearest"), 2.0, mode="nearest")
    smooth = _weighted_smooth(xy, weight, sigma=4.0)
    # Drop points far from the first fit (e.g. a slice whose thickest part is a spinous process), refit.
    far = np.linalg.norm(xy - smooth, axis=1) > np.maximum(1.5, 0.8 * radius)
    weight = np.where(far, 0.0, weight)
    smooth = _weighted_smooth(xy, weight, sigma=4.0) if weight.any() else smooth
    return smooth, np.maximum(radius, 1.0), z0


def _weighted_smooth(xy: NDArray, weight: NDArray, *, sigma: float) -> NDArray:
    num = ndimage.gaussian_filter1d(xy * weight[:, None], sigma, axis=0, mode="nearest")
    den = ndimage.gaussian_filter1d(weight, sigma, mode="nearest")[:, None]
    out = np.where(den > 1e-9, num / np.maximum(den, 1e-12), np.nan)
    for axis in range(2):  # slices far from any weight: interpolate
        col = out[:, axis]
        good = np.isfinite(col)
        if not good.all():
            col[~good] = np.interp(np.nonzero(~good)[0], np.nonzero(good)[0], col[good]) if good.any() else 0.0
    return out


# ----------------------------------------------------------------------------------------- profile
@dataclass(frozen=True)
class _Projection:
    s_mm: NDArray  # arc length of the nearest line point of each voxel (mm)
    inside: NDArray[np.bool_]  # within the body cylinder


def _curve(xy: NDArray, z0: int, step: float = 0.25) -> tuple[NDArray, NDArray]:
    """Dense line points (M, 3) in voxels and their arc length (voxels)."""
    zz = np.arange(0.0, len(xy) - 1 + 1e-9, step)
    pts = np.stack([np.interp(zz, np.arange(len(xy)), xy[:, 0]), np.interp(zz, np.arange(len(xy)), xy[:, 1])], 1)
    pts = np.column_stack([pts, zz + z0])
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=1))])
    return pts, arc


def _project(coords: NDArray, tree: cKDTree, pts: NDArray, arc: NDArray, radius_at: NDArray, spacing: float):
    dist, k = tree.query(coords)
    # Voxels beyond the ends of the line project onto its end points; keep only those next to them.
    tangent = np.gradient(pts, axis=0)
    tangent /= np.linalg.norm(tangent, axis=1, keepdims=True)
    along = np.abs(((coords - pts[k]) * tangent[k]).sum(axis=1))
    inside = (dist <= radius_at[k]) & (along <= 1.0)
    return _Projection(s_mm=arc[k] * spacing, inside=inside)


def _profile(vert_p: _Projection, disc_p: _Projection | None, radius_mm: NDArray, bins: NDArray, spacing: float):
    """Vertebra fraction minus disc fraction of the body cylinder per arc-length bin (smoothed)."""
    width = bins[1] - bins[0]
    expected = np.pi * (radius_mm / spacing) ** 2 * (width / spacing)  # voxels of a full cylinder slab
    v = np.histogram(vert_p.s_mm[vert_p.inside], bins=bins)[0].astype(float)
    d = np.zeros_like(v)
    if disc_p is not None:
        d = np.histogram(disc_p.s_mm[disc_p.inside], bins=bins)[0].astype(float)
    sigma = max(1.0, 1.0 * spacing / width)
    v = ndimage.gaussian_filter1d(v, sigma, mode="constant")
    d = ndimage.gaussian_filter1d(d, sigma, mode="constant")
    return np.clip(v / expected, 0, 1) - np.clip(d / expected, 0, 1)


# ----------------------------------------------------------------------------------------- cuts
def _clear_cuts(profile: NDArray, centres: NDArray, min_pitch: float) -> list[float]:
    """Arc positions of deep, prominent minima (certain disc spaces), at least ``min_pitch`` mm apart."""
    idx, _ = find_peaks(-profile, prominence=_CLEAR_CUT_PROMINENCE)
    good = [(profile[i], centres[i]) for i in idx if profile[i] <= _CLEAR_CUT_LEVEL]
    chosen: list[float] = []
    for _, s in sorted(good):  # deepest first; keep one cut per disc space
        if all(abs(s - c) >= min_pitch for c in chosen):
            chosen.append(float(s))
    return sorted(chosen)


def _reference_pitch(lengths: list[float], i: int, fallback: float) -> float:
    """Local pitch for segment ``i``: median length of the (up to) four nearest other segments.

    End segments take part with their length plus about half a disc (they start at a body's edge, not in the
    middle of a disc space), so that short scans and stacks of fused pairs still have a reference.
    """
    typical = float(np.median(lengths[1:-1])) if len(lengths) > 2 else fallback
    last = len(lengths) - 1
    near = sorted(
        (abs(j - i), lengths[j] + (_END_EXTRA * typical if j in (0, last) else 0.0))
        for j in range(len(lengths))
        if j != i
    )[:4]
    if not near:
        return fallback
    return float(np.clip(np.median([length for _, length in near]), MIN_PITCH_MM, MAX_PITCH_MM))


def _refine_cuts(
    cuts: list[float], profile: NDArray, centres: NDArray, s_lo: float, s_hi: float, fallback: NDArray
) -> list[float]:
    """Merge too-short internal segments, then split too-long segments at their weakest points.

    The pitch references come from the segments between clear cuts only (after merging) and are not updated by
    the splits, so one doubtful split can never shrink the reference of its neighbours and cascade.
    """

    def fallback_at(s: float) -> float:
        return float(np.interp(s, centres, fallback))

    def value_at(s: float) -> float:
        return float(np.interp(s, centres, profile))

    cuts = sorted(cuts)
    while True:  # merge: an internal segment much shorter than its neighbours is a dip inside one vertebra
        edges = [s_lo, *cuts, s_hi]
        lengths = [b - a for a, b in zip(edges[:-1], edges[1:], strict=True)]
        short = [
            i
            for i in range(1, len(lengths) - 1)
            if lengths[i] < _MERGE_RATIO * _reference_pitch(lengths, i, fallback_at((edges[i] + edges[i + 1]) / 2))
        ]
        if not short:
            break
        i = min(short, key=lambda j: lengths[j])
        cuts.remove(max((edges[i], edges[i + 1]), key=value_at))  # drop the weaker of its two cuts

    edges = [s_lo, *cuts, s_hi]
    lengths = [b - a for a, b in zip(edges[:-1], edges[1:], strict=True)]
    out = list(cuts)
    for i, length in enumerate(lengths):
        ref = _reference_pitch(lengths, i, fallback_at((edges[i] + edges[i + 1]) / 2))
        effective = length + (_END_EXTRA * ref if i in (0, len(lengths) - 1) else 0.0)
        if effective < _SPLIT_RATIO * ref:
            continue
        n = max(2, int(round(effective / ref)))
        part = length / n
        for j in range(1, n):
            target = edges[i] + j * part
            near = np.abs(centres - target) <= 0.25 * part
            if near.any():
                cand = np.nonzero(near)[0]
                out.append(float(centres[cand[np.argmin(profile[cand] + 1e-3 * np.abs(centres[cand] - target))]]))
            else:
                out.append(float(target))
    return sorted(out)


# ----------------------------------------------------------------------------------------- main
def locate_vertebrae(
    vertebra: NDArray[np.bool_],
    *,
    spacing_mm: float,
    disc: NDArray[np.bool_] | None = None,
    expected_height_mm: float | None = None,
) -> VertebraLayout:
    """Split a vertebra mask on an isotropic canonical grid into one region per vertebra.

    Args:
        vertebra: Boolean (X, Y, Z) mask of all vertebrae; axis 2 points superior.
        spacing_mm: Isotropic voxel size in mm.
        disc: Optional boolean mask of intervertebral discs on the same grid.
        expected_height_mm: Expected centroid-to-centroid distance of neighbouring vertebrae in mm (vertebra
            plus one disc), used where the mask itself does not show it (no neighbouring segment between two
            clear disc spaces to compare with); ``None`` estimates it from the size of the vertebral bodies.

    Returns:
        A :class:`VertebraLayout`; empty (0 centroids) when ``vertebra`` has no voxel.
    """
    vertebra = np.asarray(vertebra, dtype=bool)
    empty = VertebraLayout(np.zeros((0, 3)), np.zeros(vertebra.shape, np.int32))
    if not vertebra.any():
        return empty
    # Crop to the mask (plus a margin) so every array below is small.
    idx = np.argwhere(vertebra)
    lo = np.maximum(idx.min(axis=0) - 2, 0)
    hi = np.minimum(idx.max(axis=0) + 3, vertebra.shape)
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
    vert = vertebra[box]
    disc_c = None if disc is None else np.asarray(disc, dtype=bool)[box] & ~vert
    sp = float(spacing_mm)

    edt = ndimage.distance_transform_edt(vert)
    xy, radius, z0 = _centre_line(vert, edt)
    pts, arc = _curve(xy, z0)
    radius_pts = np.interp(pts[:, 2] - z0, np.arange(len(radius)), radius)
    cyl = np.maximum(1.5, 0.8 * radius_pts)  # cylinder radius in voxels
    tree = cKDTree(pts)
    vcoords = np.argwhere(vert).astype(float)
    vproj = _project(vcoords, tree, pts, arc, cyl, sp)
    dproj = None
    if disc_c is not None and disc_c.any():
        dproj = _project(np.argwhere(disc_c).astype(float), tree, pts, arc, cyl, sp)

    width = sp / 2.0
    # Segment lengths are measured on the body column; posterior elements overhang its ends.
    body_s = vproj.s_mm[vproj.inside] if vproj.inside.any() else vproj.s_mm
    s_lo, s_hi = float(body_s.min()), float(body_s.max())
    bins = np.arange(s_lo - width, s_hi + 2 * width, width)
    centres = (bins[:-1] + bins[1:]) / 2
    radius_mm = np.interp(centres, arc * sp, radius_pts * sp)
    profile = _profile(vproj, dproj, np.interp(centres, arc * sp, cyl * sp), bins, sp)
    if expected_height_mm is not None:
        fallback = np.full(len(centres), float(expected_height_mm))
    else:
        fallback = np.clip(_PITCH_PER_BODY_RADIUS * radius_mm, MIN_PITCH_MM, MAX_PITCH_MM)
    cuts = _clear_cuts(profile, centres, MIN_PITCH_MM * 0.75)
    cuts = _refine_cuts(cuts, profile, centres, s_lo, s_hi, fallback)
    log.debug("centroid cuts (mm along the centre line): %s", np.round(cuts, 1).tolist())

    # Seeds: the body-cylinder voxels of each segment, a little away from the cuts.
    edges = np.array([min(s_lo, vproj.s_mm.min()) - 1.0, *cuts, max(s_hi, vproj.s_mm.max()) + 1.0])
    segment = np.searchsorted(edges, vproj.s_mm, side="right")  # 1 .. len(edges)-1
    margin = np.minimum(sp, 0.2 * np.diff(edges))
    seg_lo = edges[segment - 1] + margin[segment - 1]
    seg_hi = edges[segment] - margin[segment - 1]
    core = (vproj.s_mm > seg_lo) & (vproj.s_mm < seg_hi)
    markers = np.zeros(vert.shape, np.int32)
    for select in (vproj.inside & core, core):
        # Segments whose body is not in the cylinder (cut at the field of view) seed from any of their voxels.
        missing = np.setdiff1d(np.arange(1, len(edges)), np.unique(markers[markers > 0]))
        take = select & np.isin(segment, missing)
        c = vcoords[take].astype(int)
        markers[c[:, 0], c[:, 1], c[:, 2]] = segment[take]
    # Flat landscape = geodesic growth inside the mask: an arch is reached first through its own pedicles.
    # (Flooding -EDT instead lets thick posterior elements of one vertebra swallow thin ones of the next.)
    regions = watershed(np.zeros(vert.shape, np.uint8), markers, mask=vert).astype(np.int32)

    # Components of the mask that no seed reached: a vertebra of their own when large enough.
    comp, n_comp = ndimage.label(vert & (regions == 0))
    next_label = int(regions.max()) + 1
    sizes = np.bincount(regions.ravel())[1:]
    median = float(np.median(sizes[sizes > 0])) if np.any(sizes > 0) else 0.0
    n_seeded = next_label - 1
    if n_comp:
        comp_sizes = np.bincount(comp.ravel())[1:]
        big = max(_MIN_COMPONENT_FRACTION * median, _MIN_COMPONENT_MM3 / sp**3, 1.0)
        for c_label in np.nonzero(comp_sizes >= big)[0] + 1:
            regions[comp == c_label] = next_label
            next_label += 1

    labels = np.arange(1, int(regions.max()) + 1)
    sizes = ndimage.sum_labels(np.ones_like(regions), regions, labels)
    seeded = labels <= n_seeded
    keep = labels[(sizes >= max(_MIN_REGION_FRACTION * median, 1)) | ~seeded]
    cents = np.asarray(ndimage.center_of_mass(np.ones(regions.shape), regions, keep), float).reshape(-1, 3)
    # Order top to bottom along the centre line (arc length grows upwards); ties by height.
    s_of = arc[tree.query(cents)[1]] if len(cents) else np.zeros(0)
    order = np.lexsort((-cents[:, 2], -s_of)) if len(cents) else np.zeros(0, int)
    lut = np.zeros(int(regions.max()) + 1, np.int32)
    for new, k in enumerate(order, start=1):
        lut[keep[k]] = new
    out = np.zeros(vertebra.shape, np.int32)
    out[box] = lut[regions]
    return VertebraLayout(
        centroids=cents[order] + lo[None, :],
        regions=out,
        cuts_mm=tuple(float(c) for c in cuts),
    )


def find_centroids(
    semantic: Volume | NDArray,
    *,
    spacing_mm: float | None = None,
    vertebra_label: int = VERTEBRA,
    disc_label: int | None = DISC,
    expected_height_mm: float | None = None,
) -> list[Centroid]:
    """One centroid per vertebra of a semantic mask, ordered top (most superior) to bottom.

    Args:
        semantic: A semantic label map :class:`Volume` (any grid: it is reoriented and resampled to the working
            grid internally), or an integer array already on a working grid (canonical axes, isotropic).
        spacing_mm: Working spacing: for a Volume the grid to work on (default 2 mm); for an array its voxel size
            (required).
        vertebra_label: Value of vertebra voxels (every vertebra shares it).
        disc_label: Value of disc voxels; ``None`` ignores discs.
        expected_height_mm: Expected centroid-to-centroid distance (mm); see :func:`locate_vertebrae`.

    Returns:
        Centroids with LPS mm (a Volume's world frame; ``index * spacing`` for an array) and working-grid indices.
        Empty when there is no vertebra voxel.
    """
    if isinstance(semantic, Volume):
        grid = to_working_grid(semantic, float(spacing_mm or DEFAULT_WORKING_SPACING_MM))
        array = np.asarray(grid.array)
        sp = grid.spacing_mm
        to_world = grid.volume.index_to_world
    else:
        if spacing_mm is None:
            raise InputError(
                "find_centroids needs the voxel size of a bare array",
                fix="pass spacing_mm=..., or pass a Volume that carries its geometry",
            )
        array = np.asarray(semantic)
        if array.ndim != 3:
            raise InputError(f"the semantic mask must be 3D, got shape {array.shape}", fix="pass an (X, Y, Z) array")
        sp = float(spacing_mm)

        def to_world(ijk):
            return np.asarray(ijk, float) * sp

    disc = (array == disc_label) if disc_label is not None else None
    layout = locate_vertebrae(array == vertebra_label, spacing_mm=sp, disc=disc, expected_height_mm=expected_height_mm)
    counts = np.bincount(layout.regions.ravel(), minlength=len(layout.centroids) + 1)
    return [
        Centroid(
            lps=tuple(float(v) for v in to_world(c)),  # type: ignore[arg-type]
            index=tuple(float(v) for v in c),  # type: ignore[arg-type]
            voxels=int(counts[k + 1]),
        )
        for k, c in enumerate(layout.centroids)
    ]
