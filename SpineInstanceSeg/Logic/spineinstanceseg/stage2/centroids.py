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
from scipy.spatial import cKDTree
from skimage.segmentation import watershed

from ..errors import InputError
from ..semantic import DISC, VERTEBRA
from ..volume import Volume
from .peaks import find_peaks_by_prominence
from .working_grid import to_working_grid

__all__ = [
    "Centroid",
    "CentroidParameters",
    "DEFAULT_PARAMETERS",
    "VertebraLayout",
    "find_centroids",
    "locate_vertebrae",
    "DEFAULT_WORKING_SPACING_MM",
]

log = logging.getLogger(__name__)

DEFAULT_WORKING_SPACING_MM = 2.0


@dataclass(frozen=True)
class CentroidParameters:
    """The tuned numbers of centroid finding, in one place.

    They were set by hand on synthetic phantoms (every region, the hard cases: collapsed discs, fused pairs, wedge
    fractures, vertebra-only masks; 2 mm working grids) and checked on the four real VerSe vertebra masks of
    ``../shared/data`` (``Testing/test_stage2_centroids.py``); the comments give the anatomy behind them.
    "Pitch" is the centroid-to-centroid distance of neighbouring vertebrae (one vertebra plus one disc).

    Attributes:
        min_pitch_mm / max_pitch_mm: Plausible pitches in mm, C3 (12) to L5 (48); every pitch estimate is clipped
            to them.
        pitch_per_body_radius: Expected pitch as a multiple of the vertebral body's inscribed radius, where no
            neighbouring segment shows it (cervical ~7 mm radius -> 18 mm pitch, lumbar ~14 mm -> 36 mm).
        split_ratio: A segment between two disc spaces this many local pitches long holds more than one vertebra
            (a fused pair measures ~1.7).
        end_extra: Pitches added to an end segment, which starts at a body's edge rather than mid-disc (about half
            a disc).
        merge_ratio: An internal segment shorter than this many local pitches is a dip inside one vertebra, not a
            vertebra of its own.
        clear_cut_level / clear_cut_prominence: A minimum of the vertebra-minus-disc profile at most this low and at
            least this prominent (fractions of the body cylinder) is a certain disc space (thin cervical discs reach
            ~0.4).
        clear_cut_spacing: Certain disc spaces lie at least this many minimum pitches apart (one cut per disc).
        body_core_fraction: In one axial slice the body is where the distance to the mask's edge is at least this
            fraction of the slice's maximum (the thickest part of the mask).
        centre_line_sigma_slices: Gaussian smoothing of the centre line along the superior axis, in slices.
        radius_window_slices: The body radius is the running maximum over this many slices (about half a lumbar
            vertebra at 2 mm), so disc-level slices, which hold only thin posterior elements, do not shrink it.
        cylinder_radius_fraction / min_cylinder_radius_vox: The body cylinder around the centre line has this
            fraction of the body radius (at least this many voxels); centre-line points farther than that from the
            first fit are outliers (a slice whose thickest part is a spinous process).
        min_region_fraction: Seeded regions smaller than this fraction of the median region are fragments.
        min_component_fraction / min_component_mm3: A mask component that no seed reached (no body in view, e.g. a
            spinous process cut by the field of view) is a vertebra of its own when it is at least this fraction of
            the median vertebra and this many mm^3; smaller ones are stage-1 noise.
    """

    min_pitch_mm: float = 12.0
    max_pitch_mm: float = 48.0
    pitch_per_body_radius: float = 2.6
    split_ratio: float = 1.5
    end_extra: float = 0.15
    merge_ratio: float = 0.45
    clear_cut_level: float = 0.7
    clear_cut_prominence: float = 0.3
    clear_cut_spacing: float = 0.75
    body_core_fraction: float = 0.7
    centre_line_sigma_slices: float = 4.0
    radius_window_slices: int = 9
    cylinder_radius_fraction: float = 0.8
    min_cylinder_radius_vox: float = 1.5
    min_region_fraction: float = 0.08
    min_component_fraction: float = 0.03
    min_component_mm3: float = 1000.0


DEFAULT_PARAMETERS = CentroidParameters()


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


# ----------------------------------------------------------------------------------------- the body column
@dataclass(frozen=True)
class _Projection:
    """Voxels projected onto the nearest centre-line point."""

    s_mm: NDArray  # arc length of the nearest centre-line point of each voxel (mm)
    inside: NDArray[np.bool_]  # within the body cylinder


@dataclass(frozen=True)
class _BodyColumn:
    """The column of vertebral bodies on the (cropped) working grid: a dense centre line through the bodies and the
    body cylinder around it. Lengths in voxels; the line runs from the lowest slice upwards."""

    points: NDArray  # (M, 3) centre-line points
    arc: NDArray  # (M,) arc length of each point
    radius: NDArray  # (M,) body radius (inscribed) at each point
    cylinder: NDArray  # (M,) radius of the body cylinder at each point
    tree: cKDTree

    def project(self, coords: NDArray, spacing_mm: float) -> _Projection:
        """Where along the column the voxels ``coords`` (K, 3) lie, and whether they lie in the body cylinder."""
        dist, k = self.tree.query(coords)
        # Voxels beyond the ends of the line project onto its end points; keep only those next to them.
        tangent = np.gradient(self.points, axis=0)
        tangent /= np.linalg.norm(tangent, axis=1, keepdims=True)
        along = np.abs(((coords - self.points[k]) * tangent[k]).sum(axis=1))
        inside = (dist <= self.cylinder[k]) & (along <= 1.0)
        return _Projection(s_mm=self.arc[k] * spacing_mm, inside=inside)


def _trace_body_column(vert: NDArray[np.bool_], params: CentroidParameters) -> _BodyColumn:
    """The centre line through the vertebral bodies of the mask ``vert`` and the body cylinder around it."""
    edt = ndimage.distance_transform_edt(vert)
    xy, radius, z0 = _centre_line(vert, edt, params)
    points, arc = _dense_line(xy, z0)
    radius_at_points = np.interp(points[:, 2] - z0, np.arange(len(radius)), radius)
    cylinder = np.maximum(params.min_cylinder_radius_vox, params.cylinder_radius_fraction * radius_at_points)
    return _BodyColumn(points, arc, radius_at_points, cylinder, cKDTree(points))


def _centre_line(vert: NDArray[np.bool_], edt: NDArray, params: CentroidParameters) -> tuple[NDArray, NDArray, int]:
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
        core = e >= params.body_core_fraction * top  # the thickest part of the slice: its body
        ii, jj = np.nonzero(core)
        w = e[core]
        xy[k] = ((ii * w).sum() / w.sum(), (jj * w).sum() / w.sum())
        peak[k] = top
    # Body slices have the thickest cross-sections; weight them much more than disc-level slices.
    weight = peak**3
    radius = ndimage.gaussian_filter1d(
        ndimage.maximum_filter1d(peak, size=params.radius_window_slices, mode="nearest"), 2.0, mode="nearest"
    )
    sigma = params.centre_line_sigma_slices
    smooth = _weighted_smooth(xy, weight, sigma=sigma)
    # Drop points off the body cylinder of the first fit (e.g. a slice whose thickest part is a spinous process).
    cylinder = np.maximum(params.min_cylinder_radius_vox, params.cylinder_radius_fraction * radius)
    weight = np.where(np.linalg.norm(xy - smooth, axis=1) > cylinder, 0.0, weight)
    smooth = _weighted_smooth(xy, weight, sigma=sigma) if weight.any() else smooth
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


def _dense_line(xy: NDArray, z0: int, step: float = 0.25) -> tuple[NDArray, NDArray]:
    """Line points (M, 3) every ``step`` slices, in voxels, and their arc length (voxels)."""
    zz = np.arange(0.0, len(xy) - 1 + 1e-9, step)
    pts = np.stack([np.interp(zz, np.arange(len(xy)), xy[:, 0]), np.interp(zz, np.arange(len(xy)), xy[:, 1])], 1)
    pts = np.column_stack([pts, zz + z0])
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=1))])
    return pts, arc


# ----------------------------------------------------------------------------------------- the profile
@dataclass(frozen=True)
class _Profile:
    """Vertebra fraction minus disc fraction of the body cylinder along the column (disc spaces are its minima)."""

    values: NDArray  # per arc-length bin
    positions: NDArray  # bin centres, mm along the column
    start_mm: float  # the ends of the body column (mm along the column)
    end_mm: float
    pitch_mm: NDArray  # expected pitch at each position, where no neighbouring segment shows it


def _profile_along_column(
    column: _BodyColumn,
    vertebra: _Projection,
    disc: _Projection | None,
    spacing_mm: float,
    *,
    expected_height_mm: float | None,
    params: CentroidParameters,
) -> _Profile:
    """The profile of the vertebra and disc voxels along the body column, in half-voxel bins."""
    half_voxel = spacing_mm / 2.0
    # Segment lengths are measured on the body column; posterior elements overhang its ends.
    body_s = vertebra.s_mm[vertebra.inside] if vertebra.inside.any() else vertebra.s_mm
    start, end = float(body_s.min()), float(body_s.max())
    bins = np.arange(start - half_voxel, end + 2 * half_voxel, half_voxel)
    positions = (bins[:-1] + bins[1:]) / 2
    width = bins[1] - bins[0]
    arc_mm = column.arc * spacing_mm
    cylinder_mm = np.interp(positions, arc_mm, column.cylinder * spacing_mm)
    expected = np.pi * (cylinder_mm / spacing_mm) ** 2 * (width / spacing_mm)  # voxels of a full cylinder slab
    sigma = max(1.0, 1.0 * spacing_mm / width)  # one voxel
    filled = {}
    for name, projection in (("vertebra", vertebra), ("disc", disc)):
        counts = np.zeros(len(positions))
        if projection is not None:
            counts = np.histogram(projection.s_mm[projection.inside], bins=bins)[0].astype(float)
        filled[name] = np.clip(ndimage.gaussian_filter1d(counts, sigma, mode="constant") / expected, 0, 1)
    if expected_height_mm is not None:
        pitch = np.full(len(positions), float(expected_height_mm))
    else:
        radius_mm = np.interp(positions, arc_mm, column.radius * spacing_mm)
        pitch = np.clip(params.pitch_per_body_radius * radius_mm, params.min_pitch_mm, params.max_pitch_mm)
    return _Profile(filled["vertebra"] - filled["disc"], positions, start, end, pitch)


# ----------------------------------------------------------------------------------------- disc spaces
def _disc_spaces(profile: _Profile, params: CentroidParameters) -> list[float]:
    """Positions (mm along the column) of the disc spaces: the certain ones, then merged and split by pitch."""
    cuts = _clear_cuts(profile, params)
    cuts = _merge_short_segments(cuts, profile, params)
    return _split_long_segments(cuts, profile, params)


def _clear_cuts(profile: _Profile, params: CentroidParameters) -> list[float]:
    """Positions of deep, prominent minima (certain disc spaces), at least ``clear_cut_spacing`` pitches apart."""
    idx = find_peaks_by_prominence(-profile.values, prominence=params.clear_cut_prominence)
    good = [(profile.values[i], profile.positions[i]) for i in idx if profile.values[i] <= params.clear_cut_level]
    min_gap = params.min_pitch_mm * params.clear_cut_spacing
    chosen: list[float] = []
    for _, s in sorted(good):  # deepest first; keep one cut per disc space
        if all(abs(s - c) >= min_gap for c in chosen):
            chosen.append(float(s))
    return sorted(chosen)


def _segments(cuts: list[float], profile: _Profile) -> tuple[list[float], list[float]]:
    """Edges and lengths (mm) of the segments between the column's ends and the cuts."""
    edges = [profile.start_mm, *cuts, profile.end_mm]
    return edges, [b - a for a, b in zip(edges[:-1], edges[1:], strict=True)]


def _reference_pitch(lengths: list[float], i: int, fallback: float, params: CentroidParameters) -> float:
    """Local pitch for segment ``i``: median length of the (up to) four nearest other segments.

    End segments take part with their length plus about half a disc (they start at a body's edge, not in the
    middle of a disc space), so that short scans and stacks of fused pairs still have a reference.
    """
    typical = float(np.median(lengths[1:-1])) if len(lengths) > 2 else fallback
    last = len(lengths) - 1
    near = sorted(
        (abs(j - i), lengths[j] + (params.end_extra * typical if j in (0, last) else 0.0))
        for j in range(len(lengths))
        if j != i
    )[:4]
    if not near:
        return fallback
    return float(np.clip(np.median([length for _, length in near]), params.min_pitch_mm, params.max_pitch_mm))


def _merge_short_segments(cuts: list[float], profile: _Profile, params: CentroidParameters) -> list[float]:
    """Drop a cut until no internal segment is much shorter than its neighbours (a dip inside one vertebra)."""

    def fallback_at(s: float) -> float:
        return float(np.interp(s, profile.positions, profile.pitch_mm))

    def value_at(s: float) -> float:
        return float(np.interp(s, profile.positions, profile.values))

    cuts = sorted(cuts)
    while True:
        edges, lengths = _segments(cuts, profile)
        short = [
            i
            for i in range(1, len(lengths) - 1)
            if lengths[i]
            < params.merge_ratio * _reference_pitch(lengths, i, fallback_at((edges[i] + edges[i + 1]) / 2), params)
        ]
        if not short:
            return cuts
        i = min(short, key=lambda j: lengths[j])
        cuts.remove(max((edges[i], edges[i + 1]), key=value_at))  # drop the weaker of its two cuts


def _split_long_segments(cuts: list[float], profile: _Profile, params: CentroidParameters) -> list[float]:
    """Split a segment about k local pitches long (fused pair, collapsed disc) at its k - 1 weakest points.

    The pitch references come from the segments between clear cuts only (after merging) and are not updated by
    the splits, so one doubtful split can never shrink the reference of its neighbours and cascade.
    """
    edges, lengths = _segments(cuts, profile)
    positions, values = profile.positions, profile.values
    out = list(cuts)
    for i, length in enumerate(lengths):
        fallback = float(np.interp((edges[i] + edges[i + 1]) / 2, positions, profile.pitch_mm))
        ref = _reference_pitch(lengths, i, fallback, params)
        effective = length + (params.end_extra * ref if i in (0, len(lengths) - 1) else 0.0)
        if effective < params.split_ratio * ref:
            continue
        n = max(2, int(round(effective / ref)))
        part = length / n
        for j in range(1, n):
            target = edges[i] + j * part
            near = np.abs(positions - target) <= 0.25 * part
            if near.any():  # the weakest point near the even split (ties: the one nearest to it)
                cand = np.nonzero(near)[0]
                out.append(float(positions[cand[np.argmin(values[cand] + 1e-3 * np.abs(positions[cand] - target))]]))
            else:
                out.append(float(target))
    return sorted(out)


# ----------------------------------------------------------------------------------------- regions and centroids
def _grow_vertebra_regions(
    vert: NDArray[np.bool_], coords: NDArray, on_column: _Projection, cuts: list[float], spacing_mm: float
) -> NDArray[np.int32]:
    """One region per segment between disc spaces, grown through the mask from the segment's body.

    Seeds: the body-cylinder voxels of each segment, a little away from the cuts. A flat landscape makes the
    growth geodesic inside the mask: an arch is reached first through its own pedicles. (Flooding -EDT instead
    lets thick posterior elements of one vertebra swallow thin ones of the next.)
    """
    s = on_column.s_mm
    edges = np.array([s.min() - 1.0, *cuts, s.max() + 1.0])
    segment = np.searchsorted(edges, s, side="right")  # 1 .. len(edges)-1
    margin = np.minimum(spacing_mm, 0.2 * np.diff(edges))
    core = (s > edges[segment - 1] + margin[segment - 1]) & (s < edges[segment] - margin[segment - 1])
    markers = np.zeros(vert.shape, np.int32)
    for select in (on_column.inside & core, core):
        # Segments whose body is not in the cylinder (cut at the field of view) seed from any of their voxels.
        missing = np.setdiff1d(np.arange(1, len(edges)), np.unique(markers[markers > 0]))
        take = select & np.isin(segment, missing)
        c = coords[take].astype(int)
        markers[c[:, 0], c[:, 1], c[:, 2]] = segment[take]
    return watershed(np.zeros(vert.shape, np.uint8), markers, mask=vert).astype(np.int32)


def _add_unseeded_components(
    vert: NDArray[np.bool_], regions: NDArray[np.int32], spacing_mm: float, params: CentroidParameters
) -> tuple[NDArray[np.int32], int, float]:
    """Mask components that no seed reached become vertebrae of their own when large enough.

    Returns the regions, how many of them were seeded, and the median seeded region size (voxels).
    """
    comp, n_comp = ndimage.label(vert & (regions == 0))
    n_seeded = int(regions.max())
    sizes = np.bincount(regions.ravel())[1:]
    median = float(np.median(sizes[sizes > 0])) if np.any(sizes > 0) else 0.0
    if n_comp:
        comp_sizes = np.bincount(comp.ravel())[1:]
        big = max(params.min_component_fraction * median, params.min_component_mm3 / spacing_mm**3, 1.0)
        for label, c_label in enumerate(np.nonzero(comp_sizes >= big)[0] + 1, start=n_seeded + 1):
            regions[comp == c_label] = label
    return regions, n_seeded, median


def _centroids_top_to_bottom(
    regions: NDArray[np.int32], n_seeded: int, median: float, column: _BodyColumn, params: CentroidParameters
) -> tuple[NDArray, NDArray[np.int32]]:
    """Centroids of the regions that are vertebrae, top to bottom, and the regions renumbered in that order
    (seeded fragments smaller than ``min_region_fraction`` of the median are dropped)."""
    labels = np.arange(1, int(regions.max()) + 1)
    sizes = ndimage.sum_labels(np.ones_like(regions), regions, labels)
    seeded = labels <= n_seeded
    keep = labels[(sizes >= max(params.min_region_fraction * median, 1)) | ~seeded]
    cents = np.asarray(ndimage.center_of_mass(np.ones(regions.shape), regions, keep), float).reshape(-1, 3)
    # Order along the centre line (arc length grows upwards); ties by height.
    s_of = column.arc[column.tree.query(cents)[1]] if len(cents) else np.zeros(0)
    order = np.lexsort((-cents[:, 2], -s_of)) if len(cents) else np.zeros(0, int)
    lut = np.zeros(int(regions.max()) + 1, np.int32)
    for new, k in enumerate(order, start=1):
        lut[keep[k]] = new
    return cents[order], lut[regions]


# ----------------------------------------------------------------------------------------- main
def locate_vertebrae(
    vertebra: NDArray[np.bool_],
    *,
    spacing_mm: float,
    disc: NDArray[np.bool_] | None = None,
    expected_height_mm: float | None = None,
    parameters: CentroidParameters = DEFAULT_PARAMETERS,
) -> VertebraLayout:
    """Split a vertebra mask on an isotropic canonical grid into one region per vertebra.

    Args:
        vertebra: Boolean (X, Y, Z) mask of all vertebrae; axis 2 points superior.
        spacing_mm: Isotropic voxel size in mm.
        disc: Optional boolean mask of intervertebral discs on the same grid.
        expected_height_mm: Expected centroid-to-centroid distance of neighbouring vertebrae in mm (vertebra
            plus one disc), used where the mask itself does not show it (no neighbouring segment between two
            clear disc spaces to compare with); ``None`` estimates it from the size of the vertebral bodies.
        parameters: The tuned numbers (:class:`CentroidParameters`).

    Returns:
        A :class:`VertebraLayout`; empty (0 centroids) when ``vertebra`` has no voxel.
    """
    vertebra = np.asarray(vertebra, dtype=bool)
    if not vertebra.any():
        return VertebraLayout(np.zeros((0, 3)), np.zeros(vertebra.shape, np.int32))
    # Crop to the mask (plus a margin) so every array below is small.
    idx = np.argwhere(vertebra)
    lo = np.maximum(idx.min(axis=0) - 2, 0)
    hi = np.minimum(idx.max(axis=0) + 3, vertebra.shape)
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
    vert = vertebra[box]
    spacing = float(spacing_mm)

    column = _trace_body_column(vert, parameters)
    coords = np.argwhere(vert).astype(float)
    on_column = column.project(coords, spacing)
    disc_voxels = None if disc is None else np.asarray(disc, dtype=bool)[box] & ~vert
    disc_on_column = None
    if disc_voxels is not None and disc_voxels.any():
        disc_on_column = column.project(np.argwhere(disc_voxels).astype(float), spacing)
    profile = _profile_along_column(
        column, on_column, disc_on_column, spacing, expected_height_mm=expected_height_mm, params=parameters
    )
    cuts = _disc_spaces(profile, parameters)
    log.debug("centroid cuts (mm along the centre line): %s", np.round(cuts, 1).tolist())

    regions = _grow_vertebra_regions(vert, coords, on_column, cuts, spacing)
    regions, n_seeded, median = _add_unseeded_components(vert, regions, spacing, parameters)
    centroids, regions = _centroids_top_to_bottom(regions, n_seeded, median, column, parameters)
    out = np.zeros(vertebra.shape, np.int32)
    out[box] = regions
    return VertebraLayout(centroids=centroids + lo[None, :], regions=out, cuts_mm=tuple(float(c) for c in cuts))


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
