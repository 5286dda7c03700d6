"""Stage-2 inference: semantic mask -> centroids -> windows -> network (batched) -> DiceFusion -> instances.

Windows iterate (the paper's local window iteration): each fused vertebra's *consensus* centroid (where all the
windows that predicted it see it, :attr:`.fusion.FusionResult.consensus_centroids`) places the next pass's windows
until no window moves. A centroid that the first pass put between two vertebrae (the atlas above the axis, a
vertebra cut by the field of view) then gets a window centred on the vertebra the network found. Re-centring on
the fused region alone could stall: a window sitting on the upper half of the atlas calls that half a vertebra,
fusion keeps it, and its centroid keeps the window where it is; the axis's window, which sees the whole atlas as
its top neighbour, pulls the consensus down onto it.

After the last pass, on the input grid, the remains of vertebrae cut by the field of view beyond the end
vertebrae get a label of their own (:mod:`.edge_fragments`).

Everything between the first and the last step happens on the working grid (:mod:`.working_grid`); the result
is on exactly the input grid, where every stage-1 vertebra voxel carries a label 1..N (top to bottom) and no
other voxel does.

The model is duck-typed (see :class:`spineinstanceseg.stage2.model.Stage2Model`): it needs ``config.window``
(:class:`.windows.WindowSpec`), ``config.channels`` (input channel names) and
``predict_windows(inputs (B, C, *size) float32) -> (B, 4, *size)`` class probabilities.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from ..errors import ModelError, NoSpineFoundError
from ..progress import Progress
from ..resample import resample_to_grid
from ..semantic import DISC, SACRUM, VERTEBRA
from ..volume import Volume
from .centroids import locate_vertebrae
from .edge_fragments import split_edge_fragments
from .encoding import IMAGE_CHANNEL, encode_input, normalise_image
from .fusion import WindowPrediction, dice_fusion
from .window_pitch import DEFAULT_PITCH_SEARCH, PitchSearch, pick_pitch, pitched_inputs, wants_search
from .windows import WindowSpec, crop_window, window_corner
from .working_grid import WorkingGrid, labels_to_input_grid, to_working_grid

if TYPE_CHECKING:
    from .model import Stage2Model

__all__ = ["Stage2Result", "split_instances", "DEFAULT_ITERATIONS"]

log = logging.getLogger(__name__)

DEFAULT_ITERATIONS = 3
CENTROID_SPACING_MM = 2.0


@dataclass(frozen=True)
class Stage2Result:
    """What stage 2 returns; every volume is on the input grid.

    Attributes:
        instances: Label map, vertebrae 1..N from top to bottom, 0 elsewhere (int16, int32 beyond 32767).
        centroids_lps: (N, 3) physical centroid (LPS mm) of each final instance, computed on the input grid.
        confidence: (N,) DiceFusion agreement per vertebra in [0, 1] (see :mod:`.fusion`); 0 for the remains
            of a vertebra cut by the field of view that :mod:`.edge_fragments` split off (no window confirms them).
        n_windows: Number of windows that went through the network.
        timings: Seconds per step ("working_grid", "centroids", "network", "fusion", "to_input_grid", "total").
    """

    instances: Volume
    centroids_lps: NDArray[np.float64]
    confidence: NDArray[np.float64]
    n_windows: int
    timings: dict[str, float] = field(default_factory=dict)


def _numbered_top_to_bottom(values: NDArray, confidence: NDArray, geometry: Volume):
    """Labels renumbered 1..N densely (a vertebra thinner than the input grid may have vanished) and from top to
    bottom by the height (LPS z) of their centroids on the input grid; returns (values, confidence, centroids)."""
    present = np.nonzero(np.bincount(values.ravel()))[0]
    present = present[present > 0]
    if not len(present):
        return values, np.zeros(0), np.zeros((0, 3))
    world = geometry.index_to_world(_label_centroids(values, int(values.max()))[present - 1])
    order = np.argsort(-world[:, 2], kind="stable")
    lut = np.zeros(int(values.max()) + 1, dtype=np.int32)
    lut[present[order]] = np.arange(1, len(present) + 1)
    return lut[values], confidence[present[order] - 1], world[order]


def _model_spec(model: Any) -> tuple[WindowSpec, tuple[str, ...]]:
    config = getattr(model, "config", None)
    spec = getattr(config, "window", None)
    channels = getattr(config, "channels", None)
    if not isinstance(spec, WindowSpec) or not channels or not callable(getattr(model, "predict_windows", None)):
        raise ModelError(
            f"{type(model).__name__} is not a stage-2 model (needs config.window, config.channels, predict_windows)",
            fix="load one with spineinstanceseg.stage2.model.Stage2Model.load or load_bundled_model",
        )
    return spec, tuple(channels)


def _label_centroids(labels: NDArray, n: int) -> NDArray[np.float64]:
    """(n, 3) continuous-index centroids of labels 1..n, computed in the labels' bounding box (fast on big grids)."""
    if n == 0:
        return np.zeros((0, 3))
    box = ndimage.find_objects((labels > 0).astype(np.uint8))[0]
    sub = labels[box]
    idx = ndimage.center_of_mass(np.ones(sub.shape, dtype=np.uint8), sub, np.arange(1, n + 1))
    return np.asarray(idx, dtype=float).reshape(n, 3) + np.array([b.start for b in box], dtype=float)


class _WindowRunner:
    """Runs the network on windows of one working-grid mask; a window whose corner was seen before is reused."""

    def __init__(
        self,
        model: Any,
        spec: WindowSpec,
        channels: tuple[str, ...],
        work: NDArray,
        image_w,
        *,
        batch_size: int,
        pitch: PitchSearch = DEFAULT_PITCH_SEARCH,
    ):
        self.model, self.spec, self.channels = model, spec, channels
        self.work, self.image_w = work, image_w
        self.step = max(1, int(batch_size))
        self.pitch = pitch
        self._cache: dict[tuple[int, ...], NDArray[np.int8]] = {}
        # corner -> the turn (degrees, 0: upright kept) of each window the pitch search tried turned
        self.turned: dict[tuple[int, ...], float] = {}

    @property
    def n_windows(self) -> int:
        """Windows that went through the network so far."""
        return len(self._cache)

    def run(self, centroids: NDArray, progress: Progress, *, label: str = "") -> list[WindowPrediction]:
        """One prediction per centroid (window ``k`` is centred on ``centroids[k]``)."""
        corners = [tuple(int(v) for v in window_corner(c, self.spec.size)) for c in centroids]
        todo = list(dict.fromkeys(c for c in corners if c not in self._cache))
        self._run_batched(todo, progress, label)
        return [WindowPrediction(k, corner, self._cache[corner]) for k, corner in enumerate(corners)]

    def _run_batched(self, todo: list[tuple[int, ...]], progress: Progress, label: str) -> None:
        """Upright windows at the corners ``todo``, ``self.step`` per network call; a window the pitch search
        wants is then tried turned (one more call for its turns)."""
        size = self.spec.size
        n_batches = max(1, -(-len(todo) // self.step))
        for b, start in enumerate(range(0, len(todo), self.step)):
            progress.check()
            chunk = todo[start : start + self.step]
            sem_windows = np.stack([crop_window(self.work, c, size) for c in chunk])
            img_windows = None
            if self.image_w is not None:
                img_windows = np.stack([crop_window(self.image_w, c, size) for c in chunk])
            outputs = self._predict(sem_windows, img_windows)
            for corner, sem_window, output in zip(chunk, sem_windows, outputs, strict=True):
                if wants_search(sem_window == VERTEBRA, output, self.pitch):
                    self._cache[corner] = self._pitch_searched(corner, sem_window, output)
                else:
                    self._cache[corner] = WindowPrediction.from_output(0, corner, output).labels
            done = min(start + self.step, len(todo))
            progress.update((b + 1) / n_batches, f"stage-2 windows {done}/{len(todo)} {label}".rstrip())

    def _predict(self, sem_windows: NDArray, img_windows: NDArray | None) -> NDArray:
        """(B, 4, *size) class probabilities of (B, *size) mask windows (and image windows, if the model reads them)."""
        inputs = np.ascontiguousarray(encode_input(sem_windows, channels=self.channels, image=img_windows))
        outputs = np.asarray(self.model.predict_windows(inputs))
        expected = (len(sem_windows), 4, *self.spec.size)
        if outputs.shape != expected:
            raise ModelError(
                f"the stage-2 model returned shape {outputs.shape}, expected {expected}",
                fix="use a stage-2 model with 4 output classes (background, top, centre, bottom)",
            )
        return outputs

    def _pitch_searched(self, corner: tuple[int, ...], sem_window: NDArray, upright: NDArray) -> NDArray[np.int8]:
        """The labels of the window at ``corner``: its upright answer ``upright`` (4, *size) or the answer of the
        most certain turn (:mod:`.window_pitch`)."""
        size, angles = self.spec.size, self.pitch.angles_deg
        sem_turned = pitched_inputs(self.work, corner, size, angles, order=0)
        img_turned = None
        if self.image_w is not None:
            img_turned = pitched_inputs(self.image_w, corner, size, angles, order=1)
        outputs = np.concatenate([upright[None], self._predict(sem_turned, img_turned)])
        vertebra = np.concatenate([sem_window[None], sem_turned]) == VERTEBRA
        labels, self.turned[corner] = pick_pitch(outputs, vertebra, (0.0, *angles), self.pitch)
        return labels


def _find_centroids(semantic: Volume, grid: WorkingGrid, vert: NDArray, disc: NDArray) -> NDArray[np.float64]:
    """(N, 3) centroids, top to bottom, as continuous indices of the working grid ``grid``.

    Centroid finding runs on a grid of at most ``CENTROID_SPACING_MM``: thin cervical disc spaces close on a
    coarser grid (on the real VerSe mask gl003 C5 went unfound at 2.5 mm and was found at 2 mm).
    """
    if grid.spacing_mm <= CENTROID_SPACING_MM:
        return locate_vertebrae(vert, spacing_mm=grid.spacing_mm, disc=disc).centroids
    fine = to_working_grid(semantic, CENTROID_SPACING_MM)
    array = np.asarray(fine.array)
    found = locate_vertebrae(array == VERTEBRA, spacing_mm=CENTROID_SPACING_MM, disc=array == DISC).centroids
    if not len(found):
        return found
    return grid.volume.world_to_index(fine.volume.index_to_world(found)).reshape(-1, 3)


def _recentred(new: NDArray[np.float64], centroids: NDArray) -> NDArray[np.float64] | None:
    """``new`` (the fused vertebrae's consensus centroids, working-grid index), or ``None`` when the windows
    already sit on them: fusion kept the number of vertebrae and every window would keep its corner (no
    centroid moved by half a voxel or more along any axis).
    """
    n = len(new)
    if n == 0:
        return None
    if n == len(centroids) and np.array_equal(np.round(new), np.round(np.asarray(centroids))):
        return None
    return new


def split_instances(
    semantic: Volume,
    *,
    model: Stage2Model,
    image: Volume | None = None,
    batch_size: int = 4,
    iterations: int = DEFAULT_ITERATIONS,
    pitch: PitchSearch = DEFAULT_PITCH_SEARCH,
    progress: Progress | None = None,
) -> Stage2Result:
    """Split the vertebra class of a stage-1 semantic mask into one instance per vertebra.

    Args:
        semantic: Label map of :mod:`spineinstanceseg.semantic` classes, any grid (oblique, anisotropic).
        model: A stage-2 model (duck-typed, see module docstring).
        image: The image on any grid covering the mask; used only if the model has an image input channel.
        batch_size: Upright windows per network call; a window the pitch search tries turned sends its turns in
            one more call.
        iterations: Most passes of windows + fusion (the paper's local window iteration): after each pass the
            windows move onto the consensus centroids of the fused vertebrae, and a new pass runs when any window
            moved or the number of vertebrae changed. 1 = centroid finding only places the windows.
        pitch: Which windows are also tried turned about the left-right axis, and when a turn wins
            (:mod:`.window_pitch`); ``UPRIGHT_ONLY`` turns the search off.
        progress: Reports per batch of windows; cancellation is checked per batch.

    Raises:
        NoSpineFoundError: the mask has no vertebra voxel.
        ModelError: ``model`` lacks the stage-2 interface or returns the wrong shape.
        InputError: the model needs an image and none was given.
        CancelledError: cancelled through ``progress``.
    """
    progress = progress or Progress()
    spec, channels = _model_spec(model)
    timings: dict[str, float] = {}
    t_start = t = time.perf_counter()
    semantic = semantic if semantic.is_label else semantic.as_label()
    if not np.any(semantic.array == VERTEBRA):
        raise NoSpineFoundError(
            "no spine found: the semantic mask has no vertebra voxel, so there is nothing to split",
            fix="check the stage-1 result (or the mask you passed): vertebrae must have the value "
            f"{VERTEBRA}; convert other conventions with spineinstanceseg.conventions first",
        )
    grid = to_working_grid(semantic, spec.spacing_mm)
    work = np.asarray(grid.array)
    progress.update(0.02, "working grid ready")
    timings["working_grid"] = time.perf_counter() - t

    t = time.perf_counter()
    centroids = _find_centroids(semantic, grid, work == VERTEBRA, work == DISC)
    timings["centroids"] = time.perf_counter() - t
    log.info("stage 2: %d vertebra centroids", len(centroids))
    progress.update(0.08, f"{len(centroids)} vertebra centroids")

    t = time.perf_counter()
    image_w = None
    if IMAGE_CHANNEL in channels and image is not None:
        image_w = normalise_image(np.asarray(resample_to_grid(image, grid.volume, interpolation="linear").array))
    runner = _WindowRunner(model, spec, channels, work, image_w, batch_size=batch_size, pitch=pitch)
    labels_w, confidence, timings["fusion"] = _iterate_windows(
        runner, centroids, work == VERTEBRA, iterations, progress
    )
    timings["network"] = time.perf_counter() - t - timings["fusion"]
    turned = {corner: angle for corner, angle in runner.turned.items() if angle}
    if turned:
        log.info("stage 2: %d of %d searched windows predicted turned (%s degrees)", len(turned),
                 len(runner.turned), ", ".join(f"{a:+.0f}" for a in turned.values()))  # fmt: skip
    progress.update(0.92, "windows fused")

    t = time.perf_counter()
    values, confidence, centroids = _instances_on_input_grid(labels_w, confidence, grid, semantic)
    dtype = np.int16 if len(centroids) < np.iinfo(np.int16).max else np.int32
    instances = semantic.with_array(values.astype(dtype), is_label=True)
    timings["to_input_grid"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t_start
    progress.update(1.0, f"{len(centroids)} vertebrae")
    return Stage2Result(
        instances=instances,
        centroids_lps=centroids,
        confidence=confidence,
        n_windows=runner.n_windows,
        timings=timings,
    )


def _iterate_windows(
    runner: _WindowRunner, centroids: NDArray, vert: NDArray[np.bool_], iterations: int, progress: Progress
) -> tuple[NDArray[np.int32], NDArray[np.float64], float]:
    """The local window iteration: windows on the centroids, fusion, windows moved onto the fused vertebrae's
    consensus centroids, until none moves or ``iterations`` passes ran.

    Returns the fused labels on the working grid, their confidence, and the seconds spent in fusion.
    """
    labels_w, confidence = np.zeros(vert.shape, np.int32), np.zeros(1)
    fusion_s = 0.0
    passes = max(1, int(iterations))
    for k in range(passes):
        if not len(centroids):  # the vertebra voxels vanished on the working grid (a sliver): one vertebra
            break
        pass_progress = progress.sub(0.08 + 0.84 * k / passes, 0.08 + 0.84 * (k + 1) / passes)
        preds = runner.run(centroids, pass_progress, label=f"pass {k + 1}/{passes}" if passes > 1 else "")
        t_fusion = time.perf_counter()
        fused = dice_fusion(preds, n_vertebrae=len(centroids), vertebra_mask=vert)
        fusion_s += time.perf_counter() - t_fusion
        labels_w, confidence = fused.labels, fused.confidence
        moved = _recentred(fused.consensus_centroids, centroids)
        if moved is None:
            break
        log.info("stage 2: pass %d moved windows (%d -> %d vertebrae); iterating", k + 1, len(centroids), len(moved))
        centroids = moved
    return labels_w, confidence, fusion_s


def _instances_on_input_grid(
    labels_w: NDArray[np.int32], confidence: NDArray, grid: WorkingGrid, semantic: Volume
) -> tuple[NDArray, NDArray[np.float64], NDArray[np.float64]]:
    """The fused labels on the input grid, the edge fragments split off, numbered top to bottom.

    Returns ``(labels, confidence, centroids_lps)``; every stage-1 vertebra voxel has a label.
    """
    values = np.asarray(labels_to_input_grid(labels_w, grid, np.asarray(grid.canonical.array) == VERTEBRA).array)
    confidence = np.asarray(confidence, dtype=float)
    if not values.any():  # the vertebra voxels vanished on the working grid (a sliver): one vertebra
        values = (np.asarray(semantic.array) == VERTEBRA).astype(np.int32)
        confidence = np.zeros(1)
    n_fused = int(values.max())
    values, added = split_edge_fragments(values, semantic, sacrum=np.asarray(semantic.array) == SACRUM)
    confidence = np.concatenate([confidence[:n_fused], np.zeros(added)])
    return _numbered_top_to_bottom(values, confidence, semantic)
