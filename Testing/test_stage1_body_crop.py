"""Stage 1 skips the air around the body: the body box of CT- and MRI-like scans padded with background."""

from __future__ import annotations

import numpy as np
import pytest

from spineinstanceseg.phantom import generate_phantom
from spineinstanceseg.semantic import VERTEBRA
from spineinstanceseg.stage1.body_crop import body_box
from spineinstanceseg.volume import Volume


def padded_in_plane(image: Volume, *, factor: float, background: float, noise: float, seed: int = 0):
    """``image`` in the middle of a grid ``factor`` times wider in x and y, filled with noisy background."""
    shape = np.asarray(image.shape)
    target = np.array([int(shape[0] * factor), int(shape[1] * factor), shape[2]])
    lo = (target - shape) // 2
    rng = np.random.default_rng(seed)
    array = (background + rng.normal(0.0, noise, tuple(target))).astype(np.float32)
    inner = tuple(slice(int(a), int(a + s)) for a, s in zip(lo, shape, strict=True))
    array[inner] = image.array
    return Volume(array, image.spacing, tuple(image.index_to_world(-lo.astype(float))), image.direction), inner


def outside_circle(shape) -> np.ndarray:
    """(nx, ny) mask of the in-plane voxels outside the circle inscribed in a grid of ``shape`` (a CT's
    reconstruction circle)."""
    x, y = np.meshgrid(np.linspace(-1.0, 1.0, shape[0]), np.linspace(-1.0, 1.0, shape[1]), indexing="ij")
    return x**2 + y**2 > 1.0


def _contains(box, indices) -> bool:
    """Whether every voxel index (one array per axis) lies inside ``box``."""
    return all(s.start <= int(i.min()) and int(i.max()) < s.stop for s, i in zip(box, indices, strict=True))


@pytest.mark.parametrize(
    ("modality", "spacing", "tilt", "background", "noise"),
    [("ct", (1.5, 1.5, 2.5), 12.0, -1000.0, 20.0), ("t2", (3.5, 1.2, 1.2), 0.0, 0.0, 3.0)],
)
def test_box_holds_the_spine_and_leaves_out_the_air(modality, spacing, tilt, background, noise):
    case = generate_phantom(5151, modality=modality, region="lumbar", spacing=spacing, oblique_deg=tilt)
    padded, inner = padded_in_plane(case.image, factor=2.5, background=background, noise=noise)
    box = body_box(padded, margin_mm=20.0)
    assert box is not None
    spine = np.nonzero(np.asarray(case.semantic.array) == VERTEBRA)
    offsets = [s.start for s in inner]
    assert _contains(box, [idx + off for idx, off in zip(spine, offsets, strict=True)])
    kept = np.prod([s.stop - s.start for s in box]) / np.prod(padded.shape)
    assert kept < 0.35, kept  # the phantom itself is 1 / 2.5^2 = 16 % of the padded grid, plus the margin


def test_a_scan_framed_on_the_body_is_left_alone():
    case = generate_phantom(5152, modality="ct", region="lumbar", spacing=(1.5, 1.5, 2.5))
    assert body_box(case.image) is None
    assert body_box(case.image.with_array(np.full(case.image.shape, 40.0, np.float32))) is None


def test_margin_is_in_millimetres():
    array = np.full((200, 200, 40), -1000.0, np.float32)
    array[80:120, 80:120, :] = 50.0  # 20 x 40 mm
    image = Volume(array, (0.5, 1.0, 2.0))
    box = body_box(image, margin_mm=10.0)
    assert box is not None
    # 10 mm = 20 voxels at 0.5 mm and 10 voxels at 1 mm; the 4 mm search grid may add up to one coarse voxel.
    assert 80 - 20 - 8 <= box[0].start <= 80 - 20 and 120 + 20 <= box[0].stop <= 120 + 20 + 8
    assert 80 - 10 - 4 <= box[1].start <= 80 - 10 and 120 + 10 <= box[1].stop <= 120 + 10 + 4
    assert (box[2].start, box[2].stop) == (0, 40)


def test_scanner_padding_outside_the_reconstruction_circle_is_air_to_the_body_box():
    """-3024 HU outside the circle must not make the air inside it look like body (no crop, 4-5x slower)."""
    case = generate_phantom(5153, modality="ct", region="lumbar", spacing=(1.5, 1.5, 2.5))
    padded, _ = padded_in_plane(case.image, factor=2.5, background=-1000.0, noise=20.0)
    array = np.asarray(padded.array).copy()
    array[outside_circle(array.shape)] = -3024.0
    box = body_box(padded.with_array(array))
    assert box is not None and box == body_box(padded)
