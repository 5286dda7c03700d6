"""Stage-2 training samples from instance label maps.

A sample is one window around a (jittered) vertebra centroid: the input is :func:`.encoding.encode_input` of a
*degraded* semantic mask, the target labels each input vertebra voxel as top (1), centre (2) or bottom (3)
vertebra, or background (0). "Top" is the vertebra directly above the centre one in cranio-caudal order
(ordered by centroid height along the working grid's superior axis 2), "bottom" the one directly below; vertebrae
further away, the sacrum and everything outside the input's vertebra class are background.

Degradations imitate stage-1 errors so that the network copes with real stage-1 masks: erosion/dilation,
holes, spurious blobs, merged neighbours (bridging voxels across the disc space), missing disc/canal classes
(vertebra-only masks), thick-slice staircasing (spacing changes), plus random rotation and scaling of the window
and centroid jitter. A *bodies-only* sample keeps only the vertebral bodies of the vertebra class (what stage 1
finds on MRI, where the posterior elements are hard to see), centred on the body's centroid as inference centres
it on such a mask. A *field-of-view cut* removes everything above (or below) a plane through the centre vertebra
or one of its neighbours, as the edge of a scan does; a cut centre vertebra's window is centred on what is left
of it, as inference centres it. The target is computed *after* the degradation: each input vertebra voxel takes
the class of the nearest true vertebra (within ``_NEAREST_MAX_VOX``), so the network learns to split whatever mask
it is given.

All arrays here live on the working grid (canonical orientation, isotropic ``WindowSpec.spacing_mm``),
axis order (X, Y, Z) = (L, P, S).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from ..conventions import to_internal
from ..conventions.derived import body_cores
from ..errors import InputError
from ..io import is_volume_path, read_label_map
from ..levels import SACRUM_CODE
from ..orientation import to_canonical
from ..resample import resample_to_spacing
from ..semantic import CANAL, DISC, SACRUM, VERTEBRA
from ..volume import Volume
from .encoding import MASK_CHANNELS, encode_input
from .windows import WindowSpec

__all__ = [
    "TrainingCase",
    "Augmentation",
    "prepare_case",
    "load_label_cases",
    "make_sample",
    "make_batch",
]

_NEAREST_MAX_VOX = 3.0


@dataclass(frozen=True)
class TrainingCase:
    """One label map on the working grid.

    Attributes:
        instances: int32 (X, Y, Z) vertebra labels (sacrum removed), 0 background.
        semantic: uint8 (X, Y, Z) semantic classes.
        labels: Vertebra labels ordered top (most superior) to bottom.
        centroids: float (N, 3) voxel centroids of ``labels`` on the working grid.
        name: Where the case came from (for logs).
        bodies: bool (X, Y, Z) vertebral bodies of the vertebrae (for bodies-only samples), or ``None``.
        body_centroids: float (N, 3) centroids of the bodies of ``labels`` (same order), or ``None``.
    """

    instances: NDArray[np.int32]
    semantic: NDArray[np.uint8]
    labels: tuple[int, ...]
    centroids: NDArray[np.float64]
    name: str = ""
    bodies: NDArray[np.bool_] | None = None
    body_centroids: NDArray[np.float64] | None = None


@dataclass(frozen=True)
class Augmentation:
    """Probabilities and ranges of the training augmentations (all off: ``Augmentation.none()``)."""

    jitter_vox: float = 2.0
    rotate_deg: float = 15.0
    scale: tuple[float, float] = (0.85, 1.15)
    p_erode: float = 0.15
    p_dilate: float = 0.15
    p_holes: float = 0.3
    p_blobs: float = 0.3
    p_bridge: float = 0.5
    p_drop_disc_canal: float = 0.4
    p_thick_slices: float = 0.2
    p_fov_cut: float = 0.25
    p_bodies_only: float = 0.2

    @classmethod
    def none(cls) -> Augmentation:
        return cls(0.0, 0.0, (1.0, 1.0), 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)


def prepare_case(
    instances: Volume,
    semantic: Volume | None = None,
    *,
    spec: WindowSpec | None = None,
    name: str = "",
    sacrum_label: int | None = SACRUM_CODE,
) -> TrainingCase:
    """Bring an instance map and optional semantic mask onto the working grid.

    Args:
        instances: One label per vertebra (VerSe codes, or any positive numbers).
        semantic: Semantic mask on the same grid; without it the mask is derived from the instances (vertebrae
            + sacrum, no discs or canal), which trains the vertebra-only case.
        spec: Working grid / window geometry.
        name: For messages and logs.
        sacrum_label: Instance value of the sacrum (not a vertebra instance); ``None`` when the instance map has
            no sacrum label (e.g. :func:`spineinstanceseg.conventions.to_internal` output).
    """
    spec = spec or WindowSpec()
    inst_c, _ = to_canonical(instances.as_label())
    inst_w = resample_to_spacing(inst_c, spec.spacing_mm)
    inst = np.asarray(inst_w.array).astype(np.int32)
    if semantic is not None:
        sem_c, _ = to_canonical(semantic.as_label())
        sem = np.asarray(resample_to_spacing(sem_c, spec.spacing_mm).array).astype(np.uint8)
        if sem.shape != inst.shape:
            raise InputError(
                f"semantic mask grid {sem.shape} differs from the instance map's {inst.shape}",
                fix="pass label maps on the same grid",
            )
    else:
        sem = np.where(inst > 0, VERTEBRA, 0).astype(np.uint8)
        if sacrum_label is not None:
            sem[inst == sacrum_label] = SACRUM
    if sacrum_label is not None:
        inst = np.where(inst == sacrum_label, 0, inst).astype(np.int32)
    labels = [int(v) for v in np.unique(inst) if v > 0]
    if not labels:
        raise InputError(f"no vertebra labels in {name or 'the label map'}", fix="check the label convention")
    centroids = np.asarray(ndimage.center_of_mass(np.ones(inst.shape), inst, labels), dtype=float).reshape(-1, 3)
    order = np.argsort(-centroids[:, 2], kind="stable")  # axis 2 points superior: top first
    ordered = tuple(labels[i] for i in order)
    bodies, body_centroids = _bodies(inst, ordered, spec.spacing_mm)
    return TrainingCase(
        instances=inst,
        semantic=sem,
        labels=ordered,
        centroids=centroids[order],
        name=name,
        bodies=bodies,
        body_centroids=body_centroids,
    )


def _bodies(inst: NDArray, labels: tuple[int, ...], spacing_mm: float) -> tuple[NDArray[np.bool_], NDArray]:
    """The vertebral body of every label (see :func:`spineinstanceseg.conventions.derived.body_cores`) and the
    bodies' centroids in ``labels`` order (a vertebra without a body keeps its own centroid)."""
    bodies = np.zeros(inst.shape, dtype=bool)
    centres = []
    boxes = ndimage.find_objects(inst)
    spacing = np.full(3, float(spacing_mm))
    for label in labels:
        box = boxes[label - 1]
        core = body_cores(inst[box] == label, spacing)
        bodies[box] |= core
        idx = np.argwhere(core) if core.any() else np.argwhere(inst[box] == label)
        centres.append(idx.mean(axis=0) + np.array([b.start for b in box], dtype=float))
    return bodies, np.asarray(centres, dtype=float).reshape(-1, 3)


def _rotation(rng: np.random.Generator, max_deg: float) -> NDArray:
    if max_deg <= 0:
        return np.eye(3)
    out = np.eye(3)
    for axis in range(3):
        a = np.deg2rad(rng.uniform(-max_deg, max_deg))
        c, s = np.cos(a), np.sin(a)
        i, j = [k for k in range(3) if k != axis]
        r = np.eye(3)
        r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
        out = out @ r
    return out


def _sample_window(arrays: Sequence[NDArray], center: NDArray, matrix: NDArray, size: tuple[int, int, int]):
    """Nearest-neighbour window of each array: window voxel w maps to center + matrix @ (w - size/2)."""
    half = (np.asarray(size, dtype=float) - 1) / 2.0
    offset = np.asarray(center, dtype=float) - matrix @ half
    return [
        ndimage.affine_transform(a, matrix, offset=offset, output_shape=size, order=0, mode="constant", cval=0)
        for a in arrays
    ]


@dataclass(frozen=True)
class _FovCut:
    """Everything above (``keep_below``) or below an axis-2 plane of the case grid is outside the field of view."""

    z: float
    keep_below: bool

    def keep(self, z: NDArray) -> NDArray[np.bool_]:
        return z <= self.z if self.keep_below else z >= self.z


def _fov_cut(case: TrainingCase, k: int, rng: np.random.Generator) -> tuple[_FovCut, NDArray | None]:
    """A random field-of-view cut through vertebra k or a neighbour; with the new centre when k itself is cut.

    A neighbour keeps 5-70 % of its height (the slivers at a scan's edge), the centre vertebra 15-90 %.
    """
    choices = [j for j in (k - 1, k, k + 1) if 0 <= j < len(case.labels)]
    j = choices[int(rng.integers(len(choices)))]
    # The top neighbour is cut from above, the bottom one from below, the centre one from either side.
    keep_below = j < k or (j == k and rng.random() < 0.5)
    region = case.instances == case.labels[j]
    zs = np.nonzero(region.any(axis=(0, 1)))[0]
    lo, hi = float(zs[0]), float(zs[-1]) + 1.0
    kept = rng.uniform(0.15, 0.9) if j == k else rng.uniform(0.05, 0.7)
    cut = _FovCut(lo + kept * (hi - lo) if keep_below else hi - kept * (hi - lo), keep_below)
    if j != k:
        return cut, None
    idx = np.argwhere(region)
    rest = idx[cut.keep(idx[:, 2].astype(float))]
    return cut, (rest.mean(axis=0) if len(rest) else None)


def _case_z(center: NDArray, matrix: NDArray, size: tuple[int, int, int]) -> NDArray:
    """Case-grid axis-2 coordinate of every voxel of a window sampled by :func:`_sample_window`."""
    half = (np.asarray(size, dtype=float) - 1) / 2.0
    z0 = float(center[2] - matrix[2] @ half)
    axes = [np.arange(n, dtype=float) * matrix[2, a] for a, n in enumerate(size)]
    return z0 + axes[0][:, None, None] + axes[1][None, :, None] + axes[2][None, None, :]


def _ball(radius: float) -> NDArray[np.bool_]:
    r = int(np.ceil(radius))
    g = np.mgrid[-r : r + 1, -r : r + 1, -r : r + 1]
    return (g**2).sum(axis=0) <= radius**2


def _stamp(mask: NDArray[np.bool_], center: NDArray, radius: float, value: bool) -> None:
    ball = _ball(radius)
    r = ball.shape[0] // 2
    lo = np.round(center).astype(int) - r
    sl_m, sl_b = [], []
    for axis in range(3):
        a, b = max(lo[axis], 0), min(lo[axis] + ball.shape[axis], mask.shape[axis])
        if a >= b:
            return
        sl_m.append(slice(a, b))
        sl_b.append(slice(a - lo[axis], b - lo[axis]))
    region = mask[tuple(sl_m)]
    region[ball[tuple(sl_b)]] = value


def _degrade(
    sem: NDArray, inst: NDArray, rng: np.random.Generator, aug: Augmentation, bodies: NDArray | None = None
) -> NDArray[np.uint8]:
    """Stage-1-like errors on a semantic window (returns a new array); ``bodies``: keep only these vertebra voxels."""
    sem = sem.copy()
    vert = sem == VERTEBRA
    if bodies is not None:
        vert &= bodies
    if rng.random() < aug.p_bridge:
        # merge neighbours: fill part of the gap between two adjacent vertebrae with vertebra voxels
        grown = [ndimage.binary_dilation(inst == v, iterations=3) for v in np.unique(inst) if v > 0]
        if len(grown) >= 2:
            contact = np.sum(grown, axis=0) >= 2
            points = np.argwhere(contact & ~vert)
            for _ in range(int(rng.integers(1, 4))):
                if len(points):
                    _stamp(vert, points[rng.integers(len(points))], rng.uniform(1.5, 4.0), True)
    if rng.random() < aug.p_dilate:
        vert = ndimage.binary_dilation(vert, iterations=1)
    elif rng.random() < aug.p_erode:
        vert = ndimage.binary_erosion(vert, iterations=1)
    if rng.random() < aug.p_holes:
        inside = np.argwhere(vert)
        for _ in range(int(rng.integers(1, 6))):
            if len(inside):
                _stamp(vert, inside[rng.integers(len(inside))], rng.uniform(1.0, 3.0), False)
    if rng.random() < aug.p_blobs:
        for _ in range(int(rng.integers(1, 4))):
            _stamp(vert, rng.uniform(0, np.asarray(vert.shape) - 1), rng.uniform(1.0, 4.0), True)
    others = np.where(vert, 0, sem)
    others[others == VERTEBRA] = 0
    if rng.random() < aug.p_drop_disc_canal:
        others[(others == DISC) | (others == CANAL)] = 0
    out = np.where(vert, VERTEBRA, others).astype(np.uint8)
    if rng.random() < aug.p_thick_slices:
        # thick slices along one axis: keep every k-th plane and repeat it (nearest-neighbour upsampling)
        axis, k = int(rng.integers(3)), int(rng.integers(2, 4))
        phase = int(rng.integers(k))
        idx = np.clip((np.arange(out.shape[axis]) // k) * k + phase, 0, out.shape[axis] - 1)
        out = np.take(out, idx, axis=axis)
    return out


def _target(sem_in: NDArray, inst: NDArray, classes: dict[int, int]) -> NDArray[np.int64]:
    """Class of the nearest true vertebra for every input vertebra voxel (0 elsewhere or when too far)."""
    target = np.zeros(inst.shape, dtype=np.int64)
    vert_in = sem_in == VERTEBRA
    if not inst.any() or not vert_in.any():
        return target
    dist, idx = ndimage.distance_transform_edt(inst == 0, return_indices=True)
    nearest = inst[tuple(idx)]
    lut = np.zeros(int(inst.max()) + 1, dtype=np.int64)
    for label, cls in classes.items():
        if label <= inst.max():
            lut[label] = cls
    keep = vert_in & (dist <= _NEAREST_MAX_VOX)
    target[keep] = lut[nearest[keep]]
    return target


def make_sample(
    case: TrainingCase,
    rng: np.random.Generator,
    *,
    spec: WindowSpec,
    channels: tuple[str, ...] = MASK_CHANNELS,
    augment: Augmentation | None = None,
    index: int | None = None,
) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """One training window.

    Args:
        case: Prepared label map.
        rng: Random source (all randomness comes from it).
        spec: Window geometry.
        channels: Mask channels to encode (the image channel is not supported for label-only training).
        augment: Degradations; default :class:`Augmentation` (``Augmentation.none()`` for clean windows).
        index: Position in ``case.labels`` of the centre vertebra; random when ``None``.

    Returns:
        ``(input, target)``: float32 ``(C, *spec.size)`` and int64 ``(*spec.size)`` with classes 0-3.
    """
    aug = augment if augment is not None else Augmentation()
    k = int(rng.integers(len(case.labels))) if index is None else int(index)
    bodies_only = case.bodies is not None and rng.random() < aug.p_bodies_only
    cut, cut_center = _fov_cut(case, k, rng) if rng.random() < aug.p_fov_cut else (None, None)
    own_centroids = case.body_centroids if bodies_only else case.centroids
    center = own_centroids[k] if cut_center is None else cut_center
    center = center + np.clip(rng.normal(0.0, aug.jitter_vox, 3), -3 * aug.jitter_vox, 3 * aug.jitter_vox)
    scale = rng.uniform(*aug.scale)
    matrix = _rotation(rng, aug.rotate_deg) * scale
    grids = (case.instances, case.semantic) + ((case.bodies.astype(np.uint8),) if bodies_only else ())
    inst_w, sem_w, *bodies_w = _sample_window(grids, center, matrix, spec.size)
    if cut is not None:
        outside = ~cut.keep(_case_z(center, matrix, spec.size))
        inst_w[outside] = 0
        sem_w[outside] = 0
    classes = {case.labels[k]: 2}
    if k > 0:
        classes[case.labels[k - 1]] = 1
    if k + 1 < len(case.labels):
        classes[case.labels[k + 1]] = 3
    sem_in = _degrade(sem_w, inst_w, rng, aug, bodies=bodies_w[0] > 0 if bodies_w else None)
    return encode_input(sem_in, channels=channels), _target(sem_in, inst_w, classes)


def make_batch(
    cases: Sequence[TrainingCase],
    rng: np.random.Generator,
    batch_size: int,
    *,
    spec: WindowSpec,
    channels: tuple[str, ...] = MASK_CHANNELS,
    augment: Augmentation | None = None,
) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """``batch_size`` samples from random cases: ``(B, C, *size)`` float32 and ``(B, *size)`` int64."""
    pairs = [
        make_sample(cases[int(rng.integers(len(cases)))], rng, spec=spec, channels=channels, augment=augment)
        for _ in range(batch_size)
    ]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


def load_label_cases(folder: str | Path, convention: str, *, spec: WindowSpec) -> list[TrainingCase]:
    """Prepared training cases from a folder of label maps in ``convention``.

    Args:
        folder: Every readable label map in it (``"phantom"``: the ``NAME_instances.nii.gz`` /
            ``NAME_semantic.nii.gz`` pairs that ``spineseg phantom`` writes).
        convention: A label convention of :mod:`spineinstanceseg.conventions`, or ``"phantom"``.
        spec: Working grid of the cases.

    Raises:
        InputError: no such folder, or fewer than two label maps in it (training needs one for validation).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError("the --labels folder does not exist", fix="pass a folder of label maps", path=folder)
    cases = []
    if convention.lower() == "phantom":
        for inst_path in sorted(folder.glob("*_instances.nii.gz")):
            sem_path = inst_path.with_name(inst_path.name.replace("_instances.nii.gz", "_semantic.nii.gz"))
            semantic = read_label_map(sem_path) if sem_path.is_file() else None
            cases.append(prepare_case(read_label_map(inst_path), semantic, spec=spec, name=inst_path.name))
    else:
        for path in sorted(p for p in folder.iterdir() if p.is_file() and is_volume_path(p)):
            converted = to_internal(read_label_map(path), convention)
            cases.append(
                prepare_case(converted.instances, converted.semantic, spec=spec, name=path.name, sacrum_label=None)
            )
    if len(cases) < 2:
        raise InputError(
            f"found {len(cases)} label map(s) in --labels; training needs at least 2 (one for validation)",
            fix="check --labels and --convention (phantom folders need NAME_instances.nii.gz files)",
            path=folder,
        )
    return cases
