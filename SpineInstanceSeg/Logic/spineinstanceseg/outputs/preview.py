"""PNG preview of a result: a sagittal and a coronal slice through the spine with coloured labels and level names.

Slices are cut on world-aligned planes (LPS axes), whatever the orientation of the input grid, so superior is
always up, the sagittal panel shows anterior on the left and the coronal panel is in radiological view (patient's
right on the left). The sagittal plane passes through the median left-right position of the vertebra centroids,
the coronal plane through their median anterior-posterior position. Pixels are square in millimetres; the view is
cropped to the segmented region plus a margin.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from ..atomic import atomic_path
from ..resample import resample_to_grid
from ..results import SegmentationResult
from ..volume import Volume
from .colors import RGB
from .segments import SegmentTable, segment_table

__all__ = ["save_preview"]

_MARGIN_MM = 25.0
_MAX_PIXELS = 480  # longest side of a panel in display pixels (keeps huge CTs fast)


def _corners(volume: Volume, lo: NDArray, hi: NDArray) -> NDArray:
    """World positions (8, 3) of the corners of the index box [lo, hi] (voxel centres)."""
    grid = np.array([[a, b, c] for a in (lo[0], hi[0]) for b in (lo[1], hi[1]) for c in (lo[2], hi[2])], float)
    return volume.index_to_world(grid)


def _region(result: SegmentationResult) -> tuple[NDArray, NDArray]:
    """World AABB (min, max) of the segmented voxels plus a margin, clipped to the AABB of the whole grid."""
    inst = result.instances
    full = _corners(inst, np.zeros(3), np.asarray(inst.shape) - 1)
    full_lo, full_hi = full.min(axis=0), full.max(axis=0)
    mask = (np.asarray(inst.array) > 0) | (np.asarray(result.semantic.array) > 0)
    if not mask.any():
        return full_lo, full_hi
    idx_lo = [int(np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != ax)))[0]) for ax in range(3)]
    idx_hi = [int(np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != ax)))[-1]) for ax in range(3)]
    box = _corners(inst, np.asarray(idx_lo), np.asarray(idx_hi))
    lo = np.maximum(box.min(axis=0) - _MARGIN_MM, full_lo)
    hi = np.minimum(box.max(axis=0) + _MARGIN_MM, full_hi)
    return lo, hi


def _crop(volume: Volume, world_lo: NDArray, world_hi: NDArray) -> Volume | None:
    """The part of ``volume`` whose voxels can influence the world box [lo, hi] (None when they do not overlap).

    Resampling only this sub-volume avoids copying a whole CT for every thin display plane.
    """
    corners = np.array([[x, y, z] for x in (world_lo[0], world_hi[0]) for y in (world_lo[1], world_hi[1])
                        for z in (world_lo[2], world_hi[2])])  # fmt: skip
    ijk = volume.world_to_index(corners)
    lo = np.maximum(np.floor(ijk.min(axis=0)).astype(int) - 1, 0)
    hi = np.minimum(np.ceil(ijk.max(axis=0)).astype(int) + 2, np.asarray(volume.shape))
    if np.any(hi - lo < 2):
        return None
    box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    origin = volume.index_to_world(lo.astype(float))
    return Volume(volume.array[box], volume.spacing, tuple(origin), volume.direction, is_label=volume.is_label)


def _plane(volume: Volume, origin: NDArray, size: tuple[int, int, int], step: float, axis: int) -> NDArray:
    """Resample ``volume`` onto a world-aligned slab (thickness 2 along ``axis``) and return its first 2D slice."""
    shape = list(size)
    shape[axis] = 2  # a Volume needs >= 2 voxels per axis; the second slice is discarded
    reference = Volume(np.zeros(shape, np.uint8), (step, step, step), tuple(origin), np.eye(3), is_label=True)
    far = np.asarray(origin) + (np.asarray(shape) - 1) * step
    part = _crop(volume, np.asarray(origin), far)
    if part is None:
        return np.zeros(np.delete(np.asarray(shape), axis), dtype=volume.dtype)
    plane = resample_to_grid(part, reference)
    return np.take(np.asarray(plane.array), 0, axis=axis)


def _overlay(labels: NDArray, semantic: NDArray, colours: dict[int, RGB], semantic_colours: dict[int, RGB]) -> NDArray:
    rgba = np.zeros((*labels.shape, 4), np.float32)
    for value, colour in semantic_colours.items():
        rgba[semantic == value] = (*colour, 0.45)
    for value, colour in colours.items():
        rgba[labels == value] = (*colour, 0.55)
    return rgba


def _window(planes: list[NDArray]) -> tuple[float, float]:
    values = np.concatenate([p.ravel() for p in planes])
    lo, hi = np.percentile(values, [1.0, 99.5]) if values.size else (0.0, 1.0)
    return float(lo), float(hi if hi > lo else lo + 1.0)


def save_preview(
    result: SegmentationResult,
    path: str | os.PathLike[str],
    *,
    image: Volume | None = None,
    title: str | None = None,
    dpi: int = 110,
    table: SegmentTable | None = None,
) -> Path:
    """Write a PNG with a sagittal and a coronal slice, coloured vertebrae/discs/canal and level names.

    Args:
        result: Segmentation result.
        path: Output ``.png``.
        image: The input image (any grid; drawn in grey under the labels). Without it the background is black.
        title: Figure title (default: the number of vertebrae and the naming rule).
        dpi: Resolution of the PNG.
        table: ``segment_table(result)`` when the caller has it already (saves recomputing it).

    Returns:
        The path written.
    """
    # lazy: matplotlib takes about a second to import; only the preview draws with it
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    lo, hi = _region(result)
    step = max(min(result.instances.spacing), float(np.max(hi - lo)) / _MAX_PIXELS, 0.25)
    size = tuple(int(max(2, np.floor((b - a) / step) + 1)) for a, b in zip(lo, hi, strict=True))
    centroids = np.array([v.centroid_lps for v in result.vertebrae], float).reshape(-1, 3)
    centre = np.median(centroids, axis=0) if len(centroids) else (lo + hi) / 2.0

    if table is None:
        table = segment_table(result, include_semantic=True)
    colours, sem_colours, extra_vol = _colour_maps(result, table)
    panels = _cut_panels(result, extra_vol, image, lo, centre, size, step)
    window = _window([p.grey for p in panels if p.grey is not None]) if image is not None else (0.0, 1.0)

    widths = [size[1] if p.axis == 0 else size[0] for p in panels]
    height_in = 7.0
    fig = Figure(figsize=(height_in * sum(widths) / size[2] + 0.6, height_in + 0.8), dpi=dpi)
    fig.patch.set_facecolor("black")
    axes = fig.subplots(1, 2, gridspec_kw={"width_ratios": widths})
    for ax, panel in zip(axes, panels, strict=True):
        _draw_panel(ax, panel, result, colours, sem_colours, lo=lo, step=step, window=window)
    if title is None:
        title = f"{len(result.vertebrae)} vertebrae - {result.naming_rule}"
    fig.suptitle(title, color="white", fontsize=10)
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=0.92, wspace=0.04)
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", facecolor=fig.get_facecolor())
    return path


@dataclass(frozen=True)
class _Panel:
    """One slice of the preview: ``axis`` 0 sagittal, 1 coronal; the planes are (horizontal, superior) arrays."""

    axis: int
    name: str
    origin: NDArray
    labels: NDArray
    semantic: NDArray
    grey: NDArray | None


def _colour_maps(result: SegmentationResult, table: SegmentTable) -> tuple[dict[int, RGB], dict[int, RGB], Volume]:
    """Colours of the vertebrae and of the other segments by label value, and the volume holding the others."""
    vert_values = {int(v.label) for v in result.vertebrae}
    colours = {s.label_value: s.color for s in table.segments if s.label_value in vert_values}
    sem_colours: dict[int, RGB] = {}
    for spec in table.segments:
        if spec.kind != "vertebra" and spec.label_value not in vert_values:
            sem_colours[spec.label_value] = spec.color
    extra = table.layers[-1]  # layer holding the semantic segments (layer 0 when nothing overlaps)
    return colours, sem_colours, result.instances.with_array(extra, is_label=True)


def _cut_panels(
    result: SegmentationResult,
    extra_vol: Volume,
    image: Volume | None,
    lo: NDArray,
    centre: NDArray,
    size: tuple[int, int, int],
    step: float,
) -> list[_Panel]:
    """The sagittal and coronal planes through ``centre``: instances, semantic segments and the image (if any)."""
    panels = []
    for axis, name in ((0, "sagittal"), (1, "coronal")):
        origin = lo.copy()
        origin[axis] = centre[axis]
        labels = _plane(result.instances, origin, size, step, axis)
        semantic = _plane(extra_vol, origin, size, step, axis)
        grey = _plane(image.as_image(np.float32), origin, size, step, axis) if image is not None else None
        panels.append(_Panel(axis, name, origin, labels, semantic, grey))
    return panels


def _draw_panel(
    ax,
    panel: _Panel,
    result: SegmentationResult,
    colours: dict[int, RGB],
    sem_colours: dict[int, RGB],
    *,
    lo: NDArray,
    step: float,
    window: tuple[float, float],
) -> None:
    """One panel: grey image, coloured labels, a name box per vertebra, orientation letters and a title."""
    axis, labels = panel.axis, panel.labels
    horiz = 1 if axis == 0 else 0  # world axis shown left-to-right: P for sagittal, L for coronal
    extent = (
        lo[horiz] - step / 2,
        lo[horiz] + (labels.shape[0] - 0.5) * step,
        lo[2] - step / 2,
        lo[2] + (labels.shape[1] - 0.5) * step,
    )
    background = panel.grey if panel.grey is not None else np.zeros(labels.shape, np.float32)
    ax.imshow(background.T, cmap="gray", origin="lower", extent=extent, vmin=window[0], vmax=window[1])
    overlay = _overlay(labels, panel.semantic, colours, sem_colours)
    ax.imshow(overlay.transpose(1, 0, 2), origin="lower", extent=extent)
    ax.set_facecolor("black")
    for record in result.vertebrae:
        colour = colours.get(record.label, (1.0, 1.0, 1.0))
        x_text, y_text, align = _label_position(labels, record, lo, step, horiz, sagittal=(axis == 0))
        # Keep the name inside the panel (a rough width estimate: ~2.2 % of the panel per character).
        width = (extent[1] - extent[0]) * 0.022 * (len(record.name) + 1)
        if align == "right" and x_text - width < extent[0]:
            x_text, align = extent[0] + step, "left"
        elif align == "left" and x_text + width > extent[1]:
            x_text, align = extent[1] - step, "right"
        ink = "black" if 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2] > 0.5 else "white"
        ax.text(x_text, y_text, record.name, color=ink, fontsize=8, ha=align, va="center",
                bbox={"boxstyle": "round,pad=0.2", "fc": (*colour, 0.9), "ec": "none"})  # fmt: skip
    left, right = ("A", "P") if axis == 0 else ("R", "L")
    for x, y, letter, ha in ((0.01, 0.5, left, "left"), (0.99, 0.5, right, "right")):
        ax.text(x, y, letter, color="white", transform=ax.transAxes, ha=ha, va="center", fontsize=9)
    ax.text(0.5, 0.99, "S", color="white", transform=ax.transAxes, ha="center", va="top", fontsize=9)
    ax.text(0.5, 0.01, "I", color="white", transform=ax.transAxes, ha="center", va="bottom", fontsize=9)
    ax.set_title(f"{panel.name} (LPS {'x' if axis == 0 else 'y'} = {panel.origin[axis]:.1f} mm)", color="white",
                 fontsize=9)  # fmt: skip
    ax.set_xticks([])
    ax.set_yticks([])


def _label_position(labels: NDArray, record, lo: NDArray, step: float, horiz: int, *, sagittal: bool):
    """Where to write a vertebra's name: beside its slice profile (anterior side / patient's left side)."""
    cx, cz = float(record.centroid_lps[horiz]), float(record.centroid_lps[2])
    row = int(np.clip(round((cz - lo[2]) / step), 0, labels.shape[1] - 1))
    cols = np.flatnonzero(labels[:, row] == record.label)
    if cols.size == 0:
        return cx, cz, "center"
    if sagittal:  # anterior is the low-P side, i.e. the left of the panel
        return lo[horiz] + cols.min() * step - 2.0, cz, "right"
    return lo[horiz] + cols.max() * step + 2.0, cz, "left"
