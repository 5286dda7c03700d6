"""PNG preview of phantom cases: mid-sagittal and coronal slices with coloured instance labels and level names.

Volumes are first put in canonical orientation (array axes ~ L, P, S; exact permutation/flip, no interpolation),
so the sagittal slice shows anterior on the left and superior up, and the coronal slice is in radiological view
(patient's right on the left).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from ..atomic import atomic_path
from ..levels import level_name
from ..orientation import to_canonical
from .generator import PhantomCase

__all__ = ["save_preview_png", "label_colour"]


def label_colour(code: int) -> tuple[float, float, float]:
    """A stable colour per VerSe code (neighbouring levels get clearly different colours)."""
    import matplotlib

    cmap = matplotlib.colormaps["tab20"]
    return tuple(cmap((int(code) * 7) % 20)[:3])  # type: ignore[return-value]


def _window(image: NDArray, modality: str) -> tuple[float, float]:
    if modality == "ct":
        return -250.0, 1100.0
    lo, hi = np.percentile(image, [1.0, 99.5])
    return float(lo), float(hi)


def _overlay(ax, image: NDArray, labels: NDArray, extent, window, names: dict[int, tuple[float, float]]) -> None:
    ax.imshow(
        image.T, cmap="gray", origin="lower", extent=extent, vmin=window[0], vmax=window[1], interpolation="nearest"
    )
    rgba = np.zeros((*labels.T.shape, 4), np.float32)
    for code in np.unique(labels):
        if code == 0:
            continue
        rgba[labels.T == code] = (*label_colour(int(code)), 0.38)
    ax.imshow(rgba, origin="lower", extent=extent, interpolation="nearest")
    for code, (x, y) in names.items():
        ax.text(
            x,
            y,
            level_name(code),
            color="white",
            fontsize=7,
            ha="center",
            va="center",
            bbox=dict(boxstyle="round,pad=0.15", fc=(*label_colour(code), 0.85), ec="none"),
        )
    ax.set_xticks([])
    ax.set_yticks([])


def _panels(case: PhantomCase, axes) -> None:
    img, _ = to_canonical(case.image)
    lab, _ = to_canonical(case.instances)
    arr, labels = img.array, lab.array
    sp = np.asarray(img.spacing)
    vox = np.argwhere(labels > 0)
    if vox.size == 0:
        vox = np.argwhere(np.ones((1, 1, 1))) + np.array(labels.shape) // 2
    # Mid-sagittal: the left-right median of the labelled voxels; coronal: through the vertebral bodies.
    xi = int(np.median(vox[:, 0]))
    yi = int(np.percentile(vox[:, 1], 30))
    window = _window(arr, case.meta.get("modality", "ct"))
    cents = {c: lab.world_to_index(np.asarray(p)) for c, p in case.centroids.items()}
    shape = arr.shape
    sag_extent = (-0.5 * sp[1], (shape[1] - 0.5) * sp[1], -0.5 * sp[2], (shape[2] - 0.5) * sp[2])
    cor_extent = (-0.5 * sp[0], (shape[0] - 0.5) * sp[0], -0.5 * sp[2], (shape[2] - 0.5) * sp[2])
    sag_names = {c: (ijk[1] * sp[1] - 12.0, ijk[2] * sp[2]) for c, ijk in cents.items() if (labels[xi] == c).any()}
    cor_names = {c: (ijk[0] * sp[0], ijk[2] * sp[2]) for c, ijk in cents.items() if (labels[:, yi] == c).any()}
    _overlay(axes[0], arr[xi], labels[xi], sag_extent, window, sag_names)
    _overlay(axes[1], arr[:, yi], labels[:, yi], cor_extent, window, cor_names)
    m = case.meta
    tag = f"{m.get('modality', '?').upper()} seed {m.get('seed', '?')}"
    if m.get("hard_case"):
        tag += f", {m['hard_case']}"
    axes[0].set_title(f"{tag}: sagittal", fontsize=9)
    axes[1].set_title(f"{tag}: coronal", fontsize=9)


def save_preview_png(
    case: PhantomCase | Sequence[PhantomCase], path: str | os.PathLike[str], *, dpi: int = 110
) -> Path:
    """Write a PNG with a mid-sagittal and a coronal slice per case (several cases side by side).

    Returns:
        The path written.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    cases = [case] if isinstance(case, PhantomCase) else list(case)
    fig, axes = plt.subplots(
        1, 2 * len(cases), figsize=(3.2 * 2 * len(cases), 6.0), squeeze=False, layout="constrained"
    )
    for i, c in enumerate(cases):
        _panels(c, axes[0, 2 * i : 2 * i + 2])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    plt.close(fig)
    return path
