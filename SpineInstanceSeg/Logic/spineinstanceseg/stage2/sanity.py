"""Anatomical sanity of the fused stage-2 instances: what is not spine is dropped, fragments merged, doubts flagged.

Stage 2 labels every stage-1 vertebra voxel, so whatever stage 1 called vertebra ends up in some instance: a rib
or a piece of pelvis next to the spine, a blob in the abdomen, the speckles that a noise image produces. And
fusion can leave half a vertebra as an instance of its own, or two vertebrae in one. This step looks at the
instances as a column of bones and applies four rules, in this order (every number is in
:class:`SanityParameters`):

1. **Off-column components are dropped.** The spinal column is the longest chain of *plausible vertebrae*
   (:meth:`InstanceMeasures.plausible`: the volume of a vertebra, one compact piece, bone in a CT), ordered by
   height (LPS z), where each one lies a vertebra's step below the previous one with a small sideways step. Its
   centre line runs through their centroids and goes on beyond its ends through the instances that continue it.
   An instance whose centroid lies further from that line than ``off_column`` local vertebra sizes is not spine
   (a rib, the pelvis, a femur, a stage-1 false positive in the abdomen): its voxels become background. So does
   a detached piece (of at least ``min_piece_ml``) of a kept instance that lies that far out: fusion hands
   disconnected stage-1 blobs to the nearest vertebra. Closer in, a detached piece that touches no face of the
   volume and holds less than ``detached_share`` of its instance is dropped too: a whole vertebra is one
   26-connected piece (only the remains of a vertebra cut by the field of view break up), so such a piece is a
   stage-1 blob next to the spine (a calcified aorta, a rib end) that fusion gave to the nearest vertebra.
2. **Size outliers.** An instance much smaller than its neighbours (below ``small_ratio`` times the median volume
   of up to ``neighbours`` instances on each side) that is not cut by the field of view (it touches no face of
   the volume) is part of a vertebra: it is merged into the one of its two neighbours in the column that it shares
   the most voxel faces with (into any instance it touches when it touches neither), or dropped when it touches
   none. An instance much larger than its neighbours (``large_ratio``) whose neighbours also lie further away
   than the vertebrae beyond them (``two_in_one_score``) holds two vertebrae: its confidence drops to at most
   ``oversized_confidence`` and it is an anomaly. A vertebra cut by the field of view may be small and is kept
   as it is, unless it is an end instance holding less than ``min_edge_share`` of its neighbours' volume: such a
   sliver of a vertebra beyond the field of view is too thin to segment (it is one or two voxels thick on stage
   2's grid, and stage 1 marks only part of it), so it is dropped.
3. **Gaps.** A step between consecutive vertebrae longer than ``gap_ratio`` times the neighbouring steps means a
   vertebra is probably missing there: an anomaly.
4. **No spine.** No plausible vertebra at all, or plausible pieces that do not stack into a column (no two of
   them lie one above the other like vertebrae while other blobs lie around): the image holds no spine that this
   tool can segment, :class:`~spineinstanceseg.errors.NoSpineFoundError`.

Anomalies (oversized instances, gaps) forbid naming levels by counting: one vertebra too many or too few shifts
every name, and a wrong level name is the worst error this tool can make.

Vertebra sizes are equivalent-sphere diameters (a lumbar vertebra of 60 mL: 49 mm; a cervical one of 8 mL:
25 mm). Everything is measured in physical units on the instance map's own grid (any orientation and spacing).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage

from ..errors import NoSpineFoundError
from ..volume import Volume, box_touches_face

__all__ = [
    "SanityParameters",
    "DEFAULT_PARAMETERS",
    "Decision",
    "SanityResult",
    "InstanceMeasures",
    "Piece",
    "check_column",
    "measure_instances",
    "column_chain",
    "off_column_distance",
    "extend_column",
    "face_contacts",
    "value_sample",
]

log = logging.getLogger(__name__)

Action = Literal["kept", "dropped", "merged", "flagged"]


@dataclass(frozen=True)
class SanityParameters:
    """The tuned numbers of the sanity rules (module docstring). Sizes are equivalent-sphere diameters.

    Tuned on (measured 2026-12-03): the ground-truth vertebrae (at 2 mm) of the held-out phantoms of
    ``benchmarks/eval_stage2_accuracy.py`` (seeds 900000-900015, all regions and hard cases; confirmed on
    950000-950015) and of the four real VerSe masks (C1-L5) and four real CT masks in ``../shared/data``; the same
    with two neighbouring vertebrae merged into one (384 pairs), one vertebra removed (342) or its top fifth split
    off (436); the stage-2 output of the bundled models from the held-out phantoms' masks, on the four real CTs,
    the 19 real MRI of ``real-mri-bodies`` (mirroring off), 7 Gaussian-noise images (64-96 voxels a side, 1.5-2
    mm, sd 1 to 1000) and lumbar and thoracolumbar CT phantoms with the spine replaced by soft tissue.

    Attributes:
        min_vertebra_ml: Smallest plausible vertebra, mL (C1 holds 3-15 mL in the masks; noise specks less).
        max_vertebra_ml: Largest plausible vertebra, mL (lumbar 40-90 mL; the largest real-CT stage-2 one, 83 mL;
            on real MRI stage 1 swells some to 150-270 mL with soft tissue).
        min_largest_part: Share of an uncut instance's voxels in its largest 26-connected piece. Every uncut
            true or real-CT stage-2 vertebra holds >= 0.93; stage-1 speckles in noise 0.18-0.96, most < 0.8.
        max_spread: Root-mean-square distance of the voxels from the centroid over the radius of a ball of the
            same volume (a ball: 0.77). True vertebrae 0.92-1.37, real-CT stage-2 vertebrae <= 1.1; noise webs
            1.0-2.7, most above 1.5. The ring of C1 (1.5-1.65) is not plausible by this measure; that is harmless:
            plausibility only chooses the column's members, and C1 stays as the instance on top of it.
        ct_below_hu: An image is CT (Hounsfield units) when its 1st percentile lies at or below this (air, lung
            or fat in view); MRI magnitudes are never negative.
        min_bone_hu: In a CT, the 75th percentile of a plausible vertebra's voxels reaches this, HU (real-CT
            stage-2 vertebrae 199-603, phantom vertebrae >= 318; stage-2 instances where a phantom's spine was
            painted over with soft tissue 67-126, with partial-volume rims of the removed bone).
        column_slope: Largest sideways step (perpendicular to LPS z) per height step between two vertebrae
            that follow each other in the column (true vertebrae: <= 0.73).
        column_slack: Sideways step allowed on top of that, in vertebra sizes.
        column_steps: Smallest and largest height step between two vertebrae that follow each other in the
            column, in vertebra sizes (true neighbours 0.45-0.83; up to 2 lets one missed vertebra pass).
        column_volume_ratio: Largest volume ratio of two uncut vertebrae that follow each other in the column.
        off_column: Largest distance of a spine instance from the column's centre line, in local vertebra sizes
            (a transverse or spinous process reaches about 1; a rib, the pelvis or an abdominal blob lies further).
        min_piece_ml: Detached pieces of an instance smaller than this (mL) are not judged: specks do not matter,
            and the remains of a vertebra cut by the field of view break into small pieces that may lie beyond
            the column's end (on the held-out phantoms, 0.04 mL tips of a cut vertebra's processes).
        detached_share: A detached piece (any 26-connected part of an instance but its largest) that touches no
            face of the volume and holds less than this share of its instance's voxels is dropped. In the true
            maps (the eight real masks in ``../shared/data``, the held-out phantoms 920000-920007) every detached
            piece of 30 uL or more touches a face (remains of a vertebra cut by the field of view). In the
            pipeline's output on the four real CTs (leave-one-out stage 1) 41 of the 43 detached pieces of 30 uL
            or more were not part of the vertebra (0.03-2.5 mL, up to 8 % of their instance: aortic
            calcification, rib ends); of the two that were, one touched a face and one (0.37 mL) did not. A
            larger detached part stays: the arch of a vertebra with a pars defect (spondylolysis) is about a
            third of it.
        neighbours: Instances on each side that give an instance's reference volume and a step's reference
            length (an end instance cut by the field of view is no reference).
        small_ratio: Below this share of its neighbours' median volume an uncut instance is a fragment (true
            uncut vertebrae: 0.74-1.46 of their neighbours; a split-off top fifth goes back to its vertebra in 424
            of 436 cases, else to the one above, which its processes touch more, or stays where the merge would
            make an instance larger than ``large_ratio`` times its neighbours).
        min_edge_share: Below this share of its neighbours' median volume an end instance cut by the field of view
            is dropped. On the held-out phantoms 920000-920007 (round-5 stage 1, 2026-12-06) the four such instances
            held 1-3 % of their neighbours' volume and matched their cut vertebra at IoU 0.14-0.43 (false
            instances), while the smallest one found right (IoU 0.63) held 13 %; the cut vertebrae in those images
            hold 3-14 % of a vertebra in view.
            A true mask's slivers are what they are (the built-in example's mask holds a 1.4 mL sliver of T11,
            about 3 %): the pipeline sets this to 0 for a mask you give (``--mask``).
        large_ratio: From this multiple of its neighbours' median volume on, an instance may hold two vertebrae.
        two_in_one_score: ... and it does when that volume ratio times its span (the mean centroid step to its
            neighbours over the median step beyond them; 1 when unknown) reaches this. Two vertebrae in one:
            about 2 x 1.5; 383 of 384 merged pairs score >= 2.0; true single vertebrae score <= 1.89 (C2 with
            its dens, next to C1's ring). Stage 2 at times gives a quarter of C1 to C2: C2 then scores ~2.3 and is
            flagged too (2 of the 16 held-out phantoms).
        step_per_size: Expected centroid step between neighbouring vertebrae, in vertebra sizes, where no step
            beyond the neighbours gives a reference (true vertebrae 0.51-0.84).
        oversized_confidence: Confidence cap of an oversized instance.
        gap_ratio: Above this multiple of the neighbouring steps' median, a step between consecutive vertebrae
            (centroid distance) is a gap where a vertebra is probably missing (true steps: <= 1.30; 340 of 342
            removed vertebrae found).
    """

    min_vertebra_ml: float = 2.0
    max_vertebra_ml: float = 160.0
    min_largest_part: float = 0.8
    max_spread: float = 1.5
    ct_below_hu: float = -50.0
    min_bone_hu: float = 150.0
    column_slope: float = 0.8
    column_slack: float = 0.15
    column_steps: tuple[float, float] = (0.25, 2.0)
    column_volume_ratio: float = 2.5
    off_column: float = 1.1
    min_piece_ml: float = 0.5
    detached_share: float = 0.1
    neighbours: int = 2
    small_ratio: float = 0.35
    min_edge_share: float = 0.05
    large_ratio: float = 1.4
    two_in_one_score: float = 2.0
    step_per_size: float = 0.68
    oversized_confidence: float = 0.2
    gap_ratio: float = 1.6


DEFAULT_PARAMETERS = SanityParameters()


@dataclass(frozen=True)
class Decision:
    """What the sanity step did with one instance of its input.

    Attributes:
        label: The instance's label in the input map (1..N, top to bottom).
        action: "kept", "dropped" (voxels set to background), "merged" (into ``into``) or "flagged" (kept, but an
            anomaly: lower confidence, no level naming).
        reason: One sentence fragment saying why.
        into: For "merged", the input label of the instance that received the voxels.
        new_label: Label in the cleaned map (``None`` when dropped; the receiver's label when merged).
    """

    label: int
    action: Action
    reason: str
    into: int | None = None
    new_label: int | None = None


@dataclass(frozen=True, eq=False)
class Piece:
    """A detached piece of an instance (any 26-connected part but its largest).

    Attributes:
        label: The instance it belongs to.
        volume_ml: Its volume, mL.
        centroid_lps: (3,) its centroid, LPS mm.
        box: Its bounding box in the label map.
        mask: Its voxels within ``box``.
    """

    label: int
    volume_ml: float
    centroid_lps: NDArray[np.float64]
    box: tuple[slice, ...]
    mask: NDArray[np.bool_]


@dataclass(frozen=True)
class InstanceMeasures:
    """Per-instance measurements of a label map with labels 1..N (index k holds label k + 1).

    Attributes:
        volume_ml: (N,) volume in mL (0 for a label without voxels).
        centroid_lps: (N, 3) centroid, LPS mm (NaN for a label without voxels).
        cut: (N,) the instance touches a face of the volume (the field of view cuts it).
        largest_part: (N,) share of its voxels in its largest 26-connected piece.
        spread: (N,) RMS distance of its voxels from the centroid over the radius of a ball of its volume.
        bone_hu: (N,) 75th percentile of the image inside it when the image is CT (HU), else NaN.
        pieces: The detached pieces of all instances (a piece of rib or pelvis that fusion handed to the
            nearest vertebra is one).
    """

    volume_ml: NDArray[np.float64]
    centroid_lps: NDArray[np.float64]
    cut: NDArray[np.bool_]
    largest_part: NDArray[np.float64]
    spread: NDArray[np.float64]
    bone_hu: NDArray[np.float64]
    pieces: tuple[Piece, ...] = ()

    @property
    def size_mm(self) -> NDArray[np.float64]:
        """(N,) equivalent-sphere diameter in mm: the "vertebra size" that distances are measured in."""
        return np.cbrt(6.0 * self.volume_ml * 1000.0 / np.pi)

    def plausible(self, p: SanityParameters) -> NDArray[np.bool_]:
        """(N,) could be a vertebra: its volume in range, compact, one piece (unless cut), bone (in a CT)."""
        v = self.volume_ml
        ok = (v >= p.min_vertebra_ml) & (v <= p.max_vertebra_ml) & (self.spread <= p.max_spread)
        ok &= self.cut | (self.largest_part >= p.min_largest_part)
        return ok & ~(self.bone_hu < p.min_bone_hu)  # NaN (not a CT) passes


@dataclass(frozen=True)
class SanityResult:
    """The cleaned instance map and what was done to get it.

    Attributes:
        instances: (X, Y, Z) integer map on the input grid, labels 1..M top to bottom (by centroid height); the
            input array itself when nothing changed.
        confidence: (M,) adjusted confidence per vertebra.
        centroids_lps: (M, 3) centroid per vertebra, LPS mm.
        decisions: One per input instance, in input label order.
        anomalies: Findings that forbid counting levels (oversized instances, gaps), as sentence fragments.
        dropped_pieces: Why each detached piece of a kept instance was dropped (it lay off the column).
        measures: The measurements of the input instances.
    """

    instances: NDArray
    confidence: NDArray[np.float64]
    centroids_lps: NDArray[np.float64]
    decisions: tuple[Decision, ...]
    anomalies: tuple[str, ...] = ()
    dropped_pieces: tuple[str, ...] = ()
    measures: InstanceMeasures | None = field(default=None, repr=False)

    def count(self, action: Action) -> int:
        """How many input instances got ``action``."""
        return sum(d.action == action for d in self.decisions)

    def messages(self) -> list[str]:
        """Lines for the result's warnings: what was dropped, merged and flagged."""
        out = []
        dropped = [d.reason for d in self.decisions if d.action == "dropped"] + list(self.dropped_pieces)
        if dropped:
            reasons = "; ".join(dict.fromkeys(dropped))  # the small detached pieces share one reason
            out.append(f"dropped {len(dropped)} non-spine component(s) that stage 1 called vertebra ({reasons})")
        merged = [d for d in self.decisions if d.action == "merged"]
        for d in merged:
            out.append(f"merged a piece into vertebra {d.new_label}: {d.reason}")
        out.extend(f"check the result: {a}" for a in self.anomalies)
        return out


# ----------------------------------------------------------------------------------------------- measuring
def value_sample(image: Volume) -> NDArray:
    """Every k-th voxel along each axis of ``image``, about 2 million values: enough for its value statistics."""
    array = np.asarray(image.array)
    step = max(1, int(round((array.size / 2e6) ** (1 / 3))))
    return array[::step, ::step, ::step]


def image_is_ct(image: Volume, *, below_hu: float = DEFAULT_PARAMETERS.ct_below_hu) -> bool:
    """True when the image's values look like Hounsfield units (1st percentile <= ``below_hu``; subsampled)."""
    return bool(np.percentile(value_sample(image), 1) <= below_hu)


def _pieces(label: int, mask: NDArray[np.bool_], start: NDArray, geometry: Volume) -> tuple[float, list[Piece]]:
    """(share of the largest 26-connected part, the other parts as pieces) of one instance's crop ``mask``."""
    parts, n = ndimage.label(mask, structure=np.ones((3, 3, 3), dtype=bool))
    if n < 2:
        return 1.0, []
    sizes = np.bincount(parts.ravel())
    sizes[0] = 0
    largest = int(np.argmax(sizes))
    pieces = []
    for k, box in enumerate(ndimage.find_objects(parts), start=1):
        if k == largest or box is None:
            continue
        piece = parts[box] == k
        centroid = geometry.index_to_world(np.argwhere(piece).mean(axis=0) + start + [s.start for s in box])
        where = tuple(slice(s.start + int(o), s.stop + int(o)) for s, o in zip(box, start, strict=True))
        volume = float(sizes[k]) * geometry.voxel_volume_mm3 / 1000.0
        pieces.append(Piece(label, volume, centroid, where, piece))
    return float(sizes[largest]) / float(sizes.sum()), pieces


def _spread(mask: NDArray[np.bool_], spacing: NDArray[np.float64]) -> float:
    """RMS distance of the voxels of ``mask`` from their centroid over the radius of a ball of their volume."""
    points = np.argwhere(mask) * spacing
    rms = float(np.sqrt(((points - points.mean(axis=0)) ** 2).sum(axis=1).mean()))
    return rms / float(np.cbrt(3.0 * len(points) * np.prod(spacing) / (4.0 * np.pi)))


def measure_instances(labels: NDArray, geometry: Volume, *, image: Volume | None = None) -> InstanceMeasures:
    """Measure labels 1..N of ``labels`` ((X, Y, Z) on ``geometry``'s grid).

    Args:
        labels: Integer instance map.
        geometry: Any volume on the same grid (only its geometry is used).
        image: The image on the same grid; when it is CT (:func:`image_is_ct`) the bone content is measured.
    """
    labels = np.asarray(labels)
    n = int(labels.max()) if labels.size else 0
    volume, cut = np.zeros(n), np.zeros(n, dtype=bool)
    centroid = np.full((n, 3), np.nan)
    largest, spread, bone = np.zeros(n), np.full(n, np.inf), np.full(n, np.nan)
    pieces: list[Piece] = []
    ct = image is not None and image_is_ct(image)
    spacing = np.asarray(geometry.spacing)
    for k, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        mask = labels[box] == k
        start = np.array([s.start for s in box], dtype=float)
        volume[k - 1] = np.count_nonzero(mask) * geometry.voxel_volume_mm3 / 1000.0
        centroid[k - 1] = geometry.index_to_world(np.argwhere(mask).mean(axis=0) + start)
        cut[k - 1] = box_touches_face(box, labels.shape)
        largest[k - 1], found = _pieces(k, mask, start, geometry)
        pieces.extend(found)
        spread[k - 1] = _spread(mask, spacing)
        if ct:
            bone[k - 1] = float(np.percentile(np.asarray(image.array)[box][mask], 75))  # type: ignore[union-attr]
    return InstanceMeasures(volume, centroid, cut, largest, spread, bone, tuple(pieces))


# ----------------------------------------------------------------------------------------------- rule 1: column
def _follows(m: InstanceMeasures, upper: int, lower: int, p: SanityParameters, *, volumes: bool = True) -> bool:
    """Instance ``lower`` can follow instance ``upper`` in a column (:func:`column_chain`)."""
    scale = 0.5 * float(m.size_mm[upper] + m.size_mm[lower])
    dz = float(m.centroid_lps[upper, 2] - m.centroid_lps[lower, 2])
    if not p.column_steps[0] * scale <= dz <= p.column_steps[1] * scale:
        return False
    sideways = float(np.linalg.norm(m.centroid_lps[upper, :2] - m.centroid_lps[lower, :2]))
    if sideways > p.column_slope * min(dz, scale) + p.column_slack * scale:
        return False
    small, large = sorted((float(m.volume_ml[upper]), float(m.volume_ml[lower])))
    return not volumes or bool(m.cut[upper] or m.cut[lower]) or large <= p.column_volume_ratio * small


def column_chain(
    measures: InstanceMeasures, candidates: NDArray[np.bool_], *, parameters: SanityParameters = DEFAULT_PARAMETERS
) -> NDArray[np.intp]:
    """Indices (0-based) of the longest column among the ``candidates`` ((N,) bool), top to bottom.

    Two candidates follow each other in a column when the lower one lies ``column_steps`` vertebra sizes below
    the upper one, with a sideways step of at most ``column_slope`` times the height step (counted up to one
    size: a jump over a missed vertebra buys no more sideways room, or the column could detour to blobs beside
    it) plus ``column_slack`` sizes, and (both uncut) their volumes differ by at most ``column_volume_ratio``.
    The longest column wins (ties: the larger total volume): dynamic programming over the candidates sorted by
    height, O(n^2).
    """
    idx = np.flatnonzero(candidates)
    if len(idx) == 0:
        return idx
    order = idx[np.argsort(-measures.centroid_lps[idx, 2], kind="stable")]
    best = [(1, float(measures.volume_ml[i])) for i in order]
    previous = [-1] * len(order)
    for i in range(len(order)):
        for j in range(i):
            if not _follows(measures, int(order[j]), int(order[i]), parameters):
                continue
            candidate = (best[j][0] + 1, best[j][1] + float(measures.volume_ml[order[i]]))
            if candidate > best[i]:
                best[i], previous[i] = candidate, j
    k = max(range(len(order)), key=lambda i: best[i])
    chain = []
    while k >= 0:
        chain.append(int(order[k]))
        k = previous[k]
    return np.asarray(chain[::-1], dtype=np.intp)


def extend_column(
    measures: InstanceMeasures, chain: NDArray[np.intp], *, parameters: SanityParameters = DEFAULT_PARAMETERS
) -> NDArray[np.intp]:
    """The chain grown beyond its ends by the instances that follow on from them as vertebrae follow each other
    in a column (:func:`column_chain`, volumes aside), the nearest first, plausible or not.

    So the centre line follows the column through vertebrae too large or too broken to be plausible (lumbar
    MRI: 150-170 mL instances of body, posterior elements and soft tissue) instead of stopping short and calling
    everything beyond not spine; a blob beside the column does not follow on and leaves the line alone.
    """
    line = [int(i) for i in chain]
    z = measures.centroid_lps[:, 2]
    rest = set(range(len(z))) - set(line)
    while True:
        up = [i for i in rest if _follows(measures, i, line[0], parameters, volumes=False)]
        down = [i for i in rest if _follows(measures, line[-1], i, parameters, volumes=False)]
        if not up and not down:
            return np.asarray(line, dtype=np.intp)
        if up:
            line.insert(0, min(up, key=lambda i: z[i]))
            rest.discard(line[0])
        if down:
            line.append(max(down, key=lambda i: z[i]))
            rest.discard(line[-1])


def off_column_distance(
    measures: InstanceMeasures, chain: NDArray[np.intp], points: NDArray[np.float64] | None = None
) -> NDArray[np.float64]:
    """Distance from the column's centre line, in local vertebra sizes, of every instance's centroid (or of
    ``points``, (K, 3) LPS mm).

    The centre line runs through the chain's centroids, piecewise linear in height (LPS z); within the chain's
    height range the distance is sideways (perpendicular to z). Beyond its ends the line goes on straight up or
    down for one local size (about where the next vertebra would be) and stops: further out, the height beyond
    that is added. The local size is the median size of the three chain members nearest in height.
    """
    centre = measures.centroid_lps if points is None else np.asarray(points, dtype=float).reshape(-1, 3)
    line = measures.centroid_lps[chain][::-1]  # increasing z for np.interp
    sizes = measures.size_mm[chain][::-1]
    out = np.full(len(centre), np.inf)
    for k, c in enumerate(centre):
        if not np.all(np.isfinite(c)):
            continue
        at = np.array([np.interp(c[2], line[:, 2], line[:, a]) for a in (0, 1)])
        size = float(np.median(sizes[np.argsort(np.abs(line[:, 2] - c[2]))[:3]]))
        beyond = max(line[0, 2] - c[2], c[2] - line[-1, 2], 0.0)
        out[k] = (float(np.linalg.norm(c[:2] - at)) + max(0.0, beyond - size)) / max(size, 1e-6)
    return out


# ----------------------------------------------------------------------------------------------- rule 2: size
def face_contacts(labels: NDArray, label: int, box: tuple[slice, ...], *, lut: NDArray | None = None) -> dict[int, int]:
    """Number of voxel faces that ``label`` shares with every other non-zero label of ``labels``.

    Args:
        labels: (X, Y, Z) integer map.
        label: The label whose neighbours are counted (after ``lut``).
        box: Bounding box of ``label`` in ``labels`` (after ``lut``).
        lut: Optional relabelling applied to ``labels`` first (merged labels map to their receiver, dropped to 0).
    """
    grown = tuple(slice(max(s.start - 1, 0), min(s.stop + 1, n)) for s, n in zip(box, labels.shape, strict=True))
    crop = labels[grown] if lut is None else lut[labels[grown]]
    mine = crop == label
    counts: dict[int, int] = {}
    for axis in range(3):
        lo, hi = [slice(None)] * 3, [slice(None)] * 3
        lo[axis], hi[axis] = slice(None, -1), slice(1, None)
        for a, b in ((tuple(lo), tuple(hi)), (tuple(hi), tuple(lo))):
            other = crop[b][mine[a]]
            values, count = np.unique(other[(other != label) & (other != 0)], return_counts=True)
            for value, c in zip(values.tolist(), count.tolist(), strict=True):
                counts[value] = counts.get(value, 0) + c
    return counts


def reference_values(values: NDArray[np.float64], usable: NDArray[np.bool_], k: int, neighbours: int) -> float:
    """Median of ``values`` over up to ``neighbours`` usable entries on each side of position ``k`` (NaN if none)."""
    above = [i for i in range(k - 1, -1, -1) if usable[i]][:neighbours]
    below = [i for i in range(k + 1, len(values)) if usable[i]][:neighbours]
    picked = above + below
    return float(np.median(values[picked])) if picked else float("nan")


# ----------------------------------------------------------------------------------------------- bookkeeping
@dataclass
class _Work:
    """Mutable state of one run. The label map is never copied: ``lut`` says where each input label goes now
    (itself, the label it was merged into, or 0 when dropped); volumes, centroids and boxes follow merges."""

    labels: NDArray
    lut: NDArray[np.int64]
    volume: NDArray[np.float64]
    centroid: NDArray[np.float64]
    cut: NDArray[np.bool_]
    boxes: list
    decisions: dict[int, Decision] = field(default_factory=dict)
    pieces_dropped: list[tuple[Piece, str]] = field(default_factory=list)

    @classmethod
    def start(cls, labels: NDArray, m: InstanceMeasures) -> _Work:
        n = len(m.volume_ml)
        boxes = list(ndimage.find_objects(labels, max_label=n)) if n else []
        return cls(labels, np.arange(n + 1), m.volume_ml.copy(), m.centroid_lps.copy(), m.cut.copy(), boxes)

    def alive(self) -> list[int]:
        """0-based indices of the instances still standing on their own, top to bottom (LPS z)."""
        idx = [i for i in range(len(self.volume)) if self.lut[i + 1] == i + 1 and self.volume[i] > 0]
        return sorted(idx, key=lambda i: -self.centroid[i, 2])

    def drop(self, i: int, reason: str) -> None:
        self.lut[self.lut == i + 1] = 0
        self.decisions[i + 1] = Decision(i + 1, "dropped", reason)
        log.info("sanity: instance %d dropped: %s", i + 1, reason)

    def drop_piece(self, piece: Piece, reason: str, *, logged: bool = True) -> None:
        """A detached piece of a standing instance becomes background (``logged``: one log line for it)."""
        i = piece.label - 1
        rest = self.volume[i] - piece.volume_ml
        self.centroid[i] = (self.centroid[i] * self.volume[i] - piece.centroid_lps * piece.volume_ml) / rest
        self.volume[i] = rest
        self.pieces_dropped.append((piece, reason))
        if logged:
            log.info("sanity: a piece of instance %d dropped: %s", piece.label, reason)

    def merge(self, i: int, j: int, reason: str) -> None:
        """Instance ``i`` (and whatever was merged into it) becomes part of ``j``."""
        self.lut[self.lut == i + 1] = j + 1
        total = self.volume[i] + self.volume[j]
        self.centroid[j] = (self.centroid[i] * self.volume[i] + self.centroid[j] * self.volume[j]) / total
        self.volume[j], self.volume[i] = total, 0.0
        self.cut[j] |= self.cut[i]
        a, b = self.boxes[i], self.boxes[j]
        self.boxes[j] = tuple(slice(min(s.start, t.start), max(s.stop, t.stop)) for s, t in zip(a, b, strict=True))
        self.decisions[i + 1] = Decision(i + 1, "merged", reason, into=j + 1)
        log.info("sanity: instance %d merged into %d: %s", i + 1, j + 1, reason)


def _why_implausible(m: InstanceMeasures, p: SanityParameters) -> str:
    """How many instances fail which test of :meth:`InstanceMeasures.plausible`, as a sentence fragment."""
    v = m.volume_ml
    in_range = (v >= p.min_vertebra_ml) & (v <= p.max_vertebra_ml)
    specks = in_range & ((m.spread > p.max_spread) | (~m.cut & (m.largest_part < p.min_largest_part)))
    soft = in_range & ~specks & (m.bone_hu < p.min_bone_hu)
    counts = [
        (int(np.count_nonzero(v < p.min_vertebra_ml)), f"smaller than {p.min_vertebra_ml:g} mL"),
        (int(np.count_nonzero(v > p.max_vertebra_ml)), f"larger than {p.max_vertebra_ml:g} mL"),
        (int(np.count_nonzero(specks)), "scattered specks rather than one compact bone"),
        (int(np.count_nonzero(soft)), f"soft tissue in this CT (75th percentile below {p.min_bone_hu:g} HU)"),
    ]
    return ", ".join(f"{count} {text}" for count, text in counts if count)


def _column(m: InstanceMeasures, p: SanityParameters, source: str | None) -> NDArray[np.intp]:
    """Rule 4 and the start of rule 1: the column of plausible vertebrae, or NoSpineFoundError."""
    plausible = m.plausible(p)
    n = len(m.volume_ml)
    if not plausible.any():
        raise _no_spine(
            f"none of the {n} pieces that stage 1 and 2 called vertebra can be one ({_why_implausible(m, p)})",
            source,
        )
    chain = column_chain(m, plausible, parameters=p)
    blobs = int(np.count_nonzero(m.volume_ml >= p.min_vertebra_ml))
    if len(chain) == 1 and blobs > 1:
        raise _no_spine(
            f"the {blobs} pieces of vertebra size that stage 1 and 2 found do not stack into a spinal column "
            "(no two of them lie one above the other like neighbouring vertebrae)",
            source,
        )
    return chain


def _drop_off_column(work: _Work, m: InstanceMeasures, chain: NDArray[np.intp], p: SanityParameters) -> None:
    """Rule 1: drop the instances, and the detached pieces of the others, far from the column's centre line."""
    where = "vertebra sizes from the spinal column's centre line"
    chain = extend_column(m, chain, parameters=p)
    distance = off_column_distance(m, chain)
    for i in np.flatnonzero(distance > p.off_column):
        work.drop(int(i), f"{m.volume_ml[i]:.1f} mL, {distance[i]:.1f} {where}")
    standing = [pc for pc in m.pieces if work.lut[pc.label] == pc.label and pc.volume_ml >= p.min_piece_ml]
    if not standing:
        return
    far = off_column_distance(m, chain, np.array([piece.centroid_lps for piece in standing]))
    for piece, d in zip(standing, far, strict=True):
        if d > p.off_column:
            reason = f"{piece.volume_ml:.1f} mL, {d:.1f} {where} (a detached piece of stage-2 instance {piece.label})"
            work.drop_piece(piece, reason)


def _drop_detached(work: _Work, m: InstanceMeasures, p: SanityParameters) -> None:
    """Rule 1, near the column: drop the small detached pieces of standing instances that the field of view
    did not cut (``detached_share``); one line in the messages for all of them."""
    gone = {id(piece) for piece, _ in work.pieces_dropped}
    shape = work.labels.shape
    small = [
        piece
        for piece in m.pieces
        if id(piece) not in gone
        and work.lut[piece.label] == piece.label
        and piece.volume_ml < p.detached_share * m.volume_ml[piece.label - 1]
        and not box_touches_face(piece.box, shape)
    ]
    if not small:
        return
    total = sum(piece.volume_ml for piece in small)
    reason = (
        f"{len(small)} detached piece(s) of vertebrae, {total:.2f} mL in all, touching neither the rest of their "
        "vertebra nor the edge of the image"
    )
    log.info("sanity: dropped %s", reason)
    for piece in small:
        work.drop_piece(piece, reason, logged=False)


def _references(work: _Work, order: list[int]) -> NDArray[np.bool_]:
    """Which instances of ``order`` can be a reference for their neighbours' volume and steps: all but an end
    instance cut by the field of view (what is left of it is a slab). Instances cut further in are cut sideways
    and keep most of their volume (on the real masks, lumbar vertebrae whose processes touch the side faces)."""
    usable = np.ones(len(order), dtype=bool)
    if len(order):
        usable[0] &= not work.cut[order[0]]
        usable[-1] &= not work.cut[order[-1]]
    return usable


def _smallest_fragment(work: _Work, order: list[int], skip: set[int], p: SanityParameters) -> tuple[int, float] | None:
    """(index, volume ratio) of the smallest uncut instance below ``small_ratio`` of its neighbours, or None."""
    volume, usable = work.volume[order], _references(work, order)
    found = None
    for k, i in enumerate(order):
        ratio = volume[k] / reference_values(volume, usable, k, p.neighbours)
        if i in skip or work.cut[i] or not ratio < p.small_ratio:
            continue
        if found is None or volume[k] < work.volume[found[0]]:
            found = (i, float(ratio))
    return found


def _merge_target(i: int, order: list[int], contacts: dict[int, int]) -> int:
    """0-based index of the instance that fragment ``i`` joins: of its neighbours in the column (``order``, top to
    bottom) the one it shares the most voxel faces with; only when it touches neither, any instance it touches.

    A fragment is part of the vertebra just above or below it. An instance two levels away can touch it more
    when it wraps around the one between (on real MRI, stage 2 gave a vertebra a posterior part reaching down
    behind the next one, and the piece of S1 below touched it more than the vertebra right above).
    """
    k = order.index(i)
    beside = {order[n] + 1 for n in (k - 1, k + 1) if 0 <= n < len(order)}
    candidates = {label: c for label, c in contacts.items() if label in beside} or contacts
    j = max(candidates, key=lambda label: candidates[label]) - 1
    most = max(contacts, key=lambda label: contacts[label]) - 1
    if j != most:
        log.info(
            "sanity: instance %d goes to its column neighbour %d, not to %d that it touches more (%d vs %d faces)",
            i + 1,
            j + 1,
            most + 1,
            contacts[j + 1],
            contacts[most + 1],
        )
    return j


def _merge_fragments(work: _Work, p: SanityParameters) -> None:
    """Rule 2a: merge the smallest uncut fragment into its column neighbour (:func:`_merge_target`), until none
    is left.

    A fragment stays as it is when the merge would make an instance larger than ``large_ratio`` times its
    neighbours: then the fragment's own neighbours are what is too large (on real MRI, stage 1 swells some
    vertebrae with soft tissue, and a whole vertebra between them looks like a fragment).
    """
    skip: set[int] = set()
    while (found := _smallest_fragment(work, order := work.alive(), skip, p)) is not None:
        i, ratio = found
        contacts = face_contacts(work.labels, i + 1, work.boxes[i], lut=work.lut)
        contacts = {label: c for label, c in contacts.items() if label - 1 in order}
        what = f"{work.volume[i]:.1f} mL, {ratio:.0%} of its neighbours' volume, not cut by the field of view"
        if not contacts:
            work.drop(i, f"a detached fragment ({what}) touching no vertebra")
            continue
        j = _merge_target(i, order, contacts)
        rest = [x for x in order if x != i]
        reference = reference_values(work.volume[rest], _references(work, rest), rest.index(j), p.neighbours)
        if work.volume[i] + work.volume[j] > p.large_ratio * reference:
            skip.add(i)
            continue
        work.merge(i, j, f"a fragment ({what})")


def _drop_edge_remains(work: _Work, p: SanityParameters) -> None:
    """Rule 2b: drop an end instance cut by the field of view that holds less than ``min_edge_share`` of its
    neighbours' volume; again at the new end while one qualifies."""
    while len(order := work.alive()) >= 2:
        volume, usable = work.volume[order], _references(work, order)
        ends = [k for k in (0, len(order) - 1) if work.cut[order[k]]]
        ratios = {k: volume[k] / reference_values(volume, usable, k, p.neighbours) for k in ends}
        small = [k for k, ratio in ratios.items() if ratio < p.min_edge_share]
        if not small:
            return
        k = small[0]
        work.drop(
            order[k],
            f"what the field of view leaves of a vertebra ({volume[k]:.2f} mL, {ratios[k]:.0%} of its neighbours' "
            "volume) is too little to segment",
        )


# ----------------------------------------------------------------------------------------------- rules 2c and 3
def _steps(work: _Work, order: list[int]) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """Centroid distances (mm) between consecutive instances of ``order``, and which of them can be a reference:
    not those to a cut end instance (its centroid sits off its true place along the column)."""
    steps = np.linalg.norm(np.diff(work.centroid[order], axis=0), axis=1)
    usable = _references(work, order)
    return steps, usable[:-1] & usable[1:]


def _span(steps: NDArray[np.float64], usable: NDArray[np.bool_], k: int, neighbours: int, expected: float) -> float:
    """Mean step from instance ``k`` to its neighbours over the median of the steps beyond them (``expected``
    when there are none; inf when its own steps are unknown)."""
    own = [i for i in (k - 1, k) if 0 <= i < len(steps) and usable[i]]
    above = [i for i in range(k - 2, -1, -1) if usable[i]][:neighbours]
    below = [i for i in range(k + 1, len(steps)) if usable[i]][:neighbours]
    if not own:
        return float("inf")
    reference = float(np.median(steps[above + below])) if above + below else expected
    return float(np.mean(steps[own])) / reference


def _oversized(work: _Work, order: list[int], p: SanityParameters) -> list[tuple[int, str]]:
    """Rule 2c: (index, anomaly) for each instance that probably holds two vertebrae: larger than its neighbours
    and further from them than they are from the vertebrae beyond (:attr:`SanityParameters.two_in_one_score`),
    or larger than any vertebra when it has no neighbour to compare with."""
    volume, usable = work.volume[order], _references(work, order)
    steps, usable_steps = _steps(work, order)
    size = np.cbrt(6.0 * volume * 1000.0 / np.pi)
    found = []
    for k, i in enumerate(order):
        reference = reference_values(volume, usable, k, p.neighbours)
        beside = [j for j in (k - 1, k + 1) if 0 <= j < len(order)]
        expected = p.step_per_size * float(np.median(size[beside])) if beside else float("nan")
        span = _span(steps, usable_steps, k, p.neighbours, expected)
        ratio = volume[k] / reference
        score = ratio * (span if np.isfinite(span) else 1.0)
        if ratio >= p.large_ratio and score >= p.two_in_one_score:
            found.append((i, f"vertebra {k + 1} is {ratio:.1f} times the volume of its neighbours"))
        elif np.isnan(reference) and volume[k] > p.max_vertebra_ml:
            found.append((i, f"vertebra {k + 1} holds {volume[k]:.0f} mL, more than any single vertebra"))
    return [(i, f"{text}: probably two vertebrae in one (or a boundary between two misplaced)") for i, text in found]


def _gaps(work: _Work, order: list[int], p: SanityParameters) -> list[str]:
    """Rule 3: an anomaly for each step between consecutive vertebrae much longer than the steps next to it."""
    if len(order) < 3:
        return []
    steps, usable = _steps(work, order)
    found = []
    for k, step in enumerate(steps):
        reference = reference_values(steps, usable, k, p.neighbours)
        if step > p.gap_ratio * reference:
            found.append(
                f"the step from vertebra {k + 1} to {k + 2} is {step:.0f} mm, {step / reference:.1f} times the steps "
                "next to it: a vertebra is probably missing there"
            )
    return found


# ----------------------------------------------------------------------------------------------- the step
def _no_spine(problem: str, source: str | None) -> NoSpineFoundError:
    return NoSpineFoundError(
        f"no spine found: {problem}",
        fix="check that the image shows the spine and that the stage-1 model suits this modality (or give a "
        "semantic mask of the spine with --mask)",
        path=source,
    )


def _finish(work: _Work, confidence: NDArray[np.float64], flagged: dict[int, str], p: SanityParameters):
    """Cleaned map (labels 1..M top to bottom), confidences, centroids and the decisions for every input label."""
    order = work.alive()
    final = np.zeros(len(work.lut), dtype=np.int64)
    for new, i in enumerate(order, start=1):
        final[work.lut == i + 1] = new
    confidence = confidence[order].copy()
    for new, i in enumerate(order, start=1):
        if i in flagged:
            confidence[new - 1] = min(confidence[new - 1], p.oversized_confidence)
            work.decisions[i + 1] = Decision(i + 1, "flagged", flagged[i], new_label=new)
        else:
            work.decisions.setdefault(i + 1, Decision(i + 1, "kept", "a vertebra of the column", new_label=new))
    for label, d in list(work.decisions.items()):
        if d.action == "merged":
            work.decisions[label] = replace(d, new_label=int(final[label]))
    if np.array_equal(final, np.arange(len(final))) and not work.pieces_dropped:
        instances = work.labels  # nothing changed: no copy of a possibly CT-sized map
    else:
        dtype = np.int16 if len(order) < np.iinfo(np.int16).max else np.int32
        instances = final.astype(dtype)[work.labels]
        for piece, _ in work.pieces_dropped:
            instances[piece.box][piece.mask] = 0
    decisions = tuple(work.decisions[k] for k in sorted(work.decisions))
    return instances, confidence, work.centroid[order].copy(), decisions


def check_column(
    instances: ArrayLike,
    semantic: Volume,
    confidence: ArrayLike,
    *,
    image: Volume | None = None,
    parameters: SanityParameters = DEFAULT_PARAMETERS,
    source: str | None = None,
) -> SanityResult:
    """Apply the sanity rules (module docstring) to the fused stage-2 instances.

    Args:
        instances: (X, Y, Z) integer map on ``semantic``'s grid, vertebrae 1..N top to bottom, 0 elsewhere.
            Not modified.
        semantic: The stage-1 semantic mask; only its geometry (spacing, origin, direction) is used.
        confidence: (N,) stage-2 agreement per vertebra in [0, 1].
        image: The input image on the same grid, if at hand: in a CT (HU) a vertebra must hold bone.
        parameters: The tuned numbers.
        source: Name of the input for error messages.

    Returns:
        The cleaned map and what was done.

    Raises:
        NoSpineFoundError: no instance is a plausible vertebra (:meth:`InstanceMeasures.plausible`), or the
            plausible ones do not stack into a column while other blobs lie around.
    """
    p = parameters
    labels = np.asarray(instances)
    m = measure_instances(labels, semantic, image=image)
    n = len(m.volume_ml)
    conf = np.zeros(n)
    given = np.asarray(confidence, dtype=float).reshape(-1)[:n]
    conf[: len(given)] = given
    chain = _column(m, p, source)
    work = _Work.start(labels, m)
    _drop_off_column(work, m, chain, p)
    _drop_detached(work, m, p)
    _merge_fragments(work, p)
    _drop_edge_remains(work, p)
    order = work.alive()
    oversized = _oversized(work, order, p)
    anomalies = [text for _, text in oversized] + _gaps(work, order, p)
    result, conf, centroids, decisions = _finish(work, conf, dict(oversized), p)
    for text in anomalies:
        log.warning("sanity: %s", text)
    pieces = tuple(reason for _, reason in work.pieces_dropped)
    return SanityResult(result, conf, centroids, decisions, tuple(anomalies), pieces, m)
