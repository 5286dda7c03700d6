"""Test helpers for stage 2: synthetic box spines and fake stage-2 models (an oracle and a garbage one).

The fake models follow the stage-2 model contract (``config.window``, ``config.channels``,
``predict_windows``); they are test doubles, never shipped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from spineinstanceseg.semantic import DISC, VERTEBRA
from spineinstanceseg.stage2.centroids import locate_vertebrae
from spineinstanceseg.stage2.encoding import MASK_CHANNELS
from spineinstanceseg.stage2.windows import WindowSpec, crop_window, window_corner
from spineinstanceseg.stage2.working_grid import to_working_grid
from spineinstanceseg.volume import Volume


def box_spine(
    n: int = 5,
    *,
    height: int = 12,
    gap: int = 3,
    touching: tuple[int, ...] = (),
    discs: bool = True,
    width: int = 14,
    arch: bool = True,
    margin: int = 4,
    cut_top: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """A straight stack of box "vertebrae" along axis 2 (top = highest index) on an isotropic grid.

    Args:
        n: Number of vertebrae.
        height: Body height in voxels; ``gap`` the disc height between bodies.
        touching: Indices k (counted from the bottom) whose disc to vertebra k+1 is missing and whose bodies
            touch (the disc space is filled with bone: a fused / collapsed-disc pair).
        discs: Paint the disc class in the gaps that are not touching.
        arch: Add a posterior bar per vertebra (like an arch) that touches the next arch (facet contact), so
            that the union of vertebrae is one connected component even with discs.
        cut_top: Remove this many voxels from the top of the stack (the field of view cuts the top vertebra).

    Returns:
        ``(semantic, instances)``: uint8 semantic classes and int32 instances 1..n numbered top to bottom.
    """
    pitch = height + gap
    nz = n * pitch + 2 * margin
    shape = (width + 2 * margin, width + 14 + 2 * margin, nz)
    sem = np.zeros(shape, np.uint8)
    inst = np.zeros(shape, np.int32)
    x0, y0 = margin, margin
    for k in range(n):  # k = 0 is the bottom vertebra
        z0 = margin + k * pitch
        z1 = z0 + height + (gap if k in touching else 0)
        label = n - k
        inst[x0 : x0 + width, y0 : y0 + width, z0:z1] = label
        if arch:
            # arch: a thin bar behind the body reaching into the gap below, touching the arch under it
            inst[
                x0 + width // 2 - 2 : x0 + width // 2 + 2, y0 + width : y0 + width + 10, max(z0 - gap, 0) : z0 + height
            ] = label
        if discs and k < n - 1 and k not in touching:
            sem[x0 : x0 + width, y0 : y0 + width, z0 + height : z0 + pitch] = DISC
    sem[inst > 0] = VERTEBRA
    if cut_top:
        sem[:, :, nz - margin - cut_top :] = 0
        inst[:, :, nz - margin - cut_top :] = 0
    return sem, inst


@dataclass(frozen=True)
class FakeConfig:
    window: WindowSpec = WindowSpec(size=(48, 48, 48), spacing_mm=2.0)
    channels: tuple[str, ...] = MASK_CHANNELS


class OracleModel:
    """Answers every window from ground-truth instances (what a perfect network would say).

    It finds where each window lies by matching the window's vertebra channel against the working-grid mask at
    the corners stage 2 can choose (around centroid finding's centroids, around the true centroids, where later
    passes of the window iteration move to, and around ``extra_centres``), and labels the input's vertebra voxels
    as top/centre/bottom from the true instance map, the centre being the true vertebra nearest the window's centre.
    A window it cannot place (one that stage 2's pitch search turned) gets an unsure answer (every class 0.25),
    so that the upright window wins; ``unplaced`` counts them. ``sure`` is the probability it gives its answer
    (the rest spread over the other classes): below the pitch search's gate, every window is also tried turned.
    """

    def __init__(
        self,
        semantic: Volume,
        instances: Volume,
        config: FakeConfig | None = None,
        *,
        extra_centres=(),
        sure: float = 1.0,
    ) -> None:
        self.config = config or FakeConfig()
        spec = self.config.window
        sem = np.asarray(to_working_grid(semantic, spec.spacing_mm).array)
        self.vertebra = sem == VERTEBRA
        self.truth = np.asarray(to_working_grid(instances, spec.spacing_mm).array).astype(np.int32)
        layout = locate_vertebrae(self.vertebra, spacing_mm=spec.spacing_mm, disc=sem == DISC)
        labels = [int(v) for v in np.unique(self.truth) if v > 0]
        cents = np.asarray(ndimage.center_of_mass(np.ones(self.truth.shape), self.truth, labels)).reshape(-1, 3)
        order = np.argsort(-cents[:, 2])
        self.order = [labels[i] for i in order]  # true labels top to bottom
        self.true_centroids = cents[order]
        centres = (*layout.centroids, *self.true_centroids, *extra_centres)
        self.candidates = [window_corner(c, spec.size) for c in centres]
        self.batches: list[int] = []
        self.corners: list[tuple[int, ...]] = []  # where each answered window was, in call order
        self.unplaced = 0
        self.sure = float(sure)

    def _corner_of(self, window_vertebra: np.ndarray) -> np.ndarray | None:
        size = self.config.window.size
        shifts = np.stack(np.meshgrid(*[np.arange(-3, 4)] * 3, indexing="ij"), -1).reshape(-1, 3)
        shifts = shifts[np.argsort(np.abs(shifts).sum(axis=1), kind="stable")]  # nearest first: most match at 0
        for shift in shifts:
            for base in self.candidates:
                corner = base + shift
                if np.array_equal(crop_window(self.vertebra, corner, size), window_vertebra):
                    return corner
        return None

    def predict_windows(self, inputs: np.ndarray) -> np.ndarray:
        size = self.config.window.size
        out = np.zeros((inputs.shape[0], 4, *size), np.float32)
        self.batches.append(inputs.shape[0])
        for b in range(inputs.shape[0]):
            corner = self._corner_of(inputs[b, 0] > 0)
            if corner is None:
                self.unplaced += 1
                out[b] = 0.25
                continue
            self.corners.append(tuple(int(v) for v in corner))
            truth = crop_window(self.truth, corner, size)
            centre = corner + np.asarray(size) // 2
            c = int(np.argmin(np.linalg.norm(self.true_centroids - centre, axis=1)))
            cls = np.zeros(size, np.int64)
            for offset, klass in ((-1, 1), (0, 2), (1, 3)):
                if 0 <= c + offset < len(self.order):
                    cls[truth == self.order[c + offset]] = klass
            cls[inputs[b, 0] == 0] = 0  # only vertebra voxels of the input are labelled
            one_hot = np.moveaxis(np.eye(4, dtype=np.float32)[cls], -1, 0)
            out[b] = one_hot * self.sure + (1.0 - one_hot) * (1.0 - self.sure) / 3.0
        return out


class GarbageModel:
    """Returns random (but valid) probabilities: stage 2 must still keep its promises."""

    def __init__(self, seed: int = 0, config: FakeConfig | None = None) -> None:
        self.config = config or FakeConfig()
        self.rng = np.random.default_rng(seed)

    def predict_windows(self, inputs: np.ndarray) -> np.ndarray:
        raw = self.rng.random((inputs.shape[0], 4, *inputs.shape[2:])).astype(np.float32)
        return raw / raw.sum(axis=1, keepdims=True)
