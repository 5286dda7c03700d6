"""Air in a CT, before and after stage 1: padding below air becomes air, and no spine class stays in the air.

Before: scanners write a padding value far below air (-2048, -3024 HU) outside the reconstruction circle. To a
z-score-normalised network and to the body box (:mod:`.body_crop`) those corners are a second, darker kind of
"air" that training never showed: measured on a held-out CT phantom in a 2x wider field of view, padding the
outside of the circle with -3024 HU dropped stage 1's vertebra Dice from 0.948 to 0.922 and, since the body box no
longer told the body from the air inside the circle, took 4.3x the time (the real CTs: 0.005-0.019 less, 3.9-5.6x
the time; ``benchmarks/bench_ct_padding.py``). :func:`fill_padding_with_air` sets those values to air.

After: a reconstruction circle (or a crop) can cut through the body, and beyond that edge the image holds air.
Stage 1 can label spine there: disc voxels up to 5 mm into the air beyond such an edge of a phantom, and 1659-2951
voxels on three of the four real CTs put in a field of air twice as wide.
:func:`clear_labels_in_air` clears stage-1 labels on air voxels of a large air region.

Air is unambiguous in Hounsfield units, and MRI values never reach -500 (let alone -1500), so neither step needs a
modality flag: an MRI passes through both untouched.

Small enclosed gas (a vacuum disc, gas in a collapsed vertebra) is part of the spine and keeps its labels: only air
in a region larger than :attr:`AirParameters.pocket_max_ml` is cleared (lungs, the air around the body, padding).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from ..volume import Volume, bounding_box, grow_box

__all__ = ["DEFAULT_AIR_PARAMETERS", "AirParameters", "clear_labels_in_air", "fill_padding_with_air", "padding_filled"]


@dataclass(frozen=True)
class AirParameters:
    """Tuned numbers of :func:`fill_padding_with_air` and :func:`clear_labels_in_air`.

    Attributes:
        padding_below_hu: Values below this (HU) are scanner padding, not tissue (air is about -1000 HU; the
            lowest noise of the four real CTs here reaches -1290; padding is -2000, -2048, -3024 or lower).
        padding_as_hu: ... and become this: the bottom of the usual CT range, what converters write for air
            outside the field of view.
        air_below_hu: A voxel is air below this value (HU). Fat is about -100, lung -700 to -900, air -1000;
            MRI intensities are never this negative.
        pocket_max_ml: Air regions up to this volume (mL) are enclosed gas and keep their labels (a vacuum disc
            holds well under 2 mL).
        window_mm: Air regions are measured within this distance (mm) of the labelled air voxels: enough to hold a
            whole pocket of ``pocket_max_ml``, small enough to stay fast on a whole CT.
    """

    padding_below_hu: float = -1500.0
    padding_as_hu: float = -1024.0
    air_below_hu: float = -500.0
    pocket_max_ml: float = 5.0
    window_mm: float = 20.0


DEFAULT_AIR_PARAMETERS = AirParameters()


def fill_padding_with_air(image: Volume, *, parameters: AirParameters = DEFAULT_AIR_PARAMETERS) -> Volume:
    """``image`` with its scanner padding (below ``parameters.padding_below_hu``) set to air
    (``parameters.padding_as_hu``); ``image`` itself when it holds none.

    Args:
        image: Any scan, shape ``(nx, ny, nz)``; an MRI never holds such values and comes back unchanged.
    """
    values = np.asarray(image.array)
    filled = padding_filled(values, parameters=parameters)
    return image if filled is values else image.with_array(filled)


def padding_filled(values: NDArray, *, parameters: AirParameters = DEFAULT_AIR_PARAMETERS) -> NDArray:
    """:func:`fill_padding_with_air` for a bare array (any shape): a copy, or ``values`` itself when unchanged."""
    if not values.size or float(values.min()) >= parameters.padding_below_hu:
        return values
    return np.where(values < parameters.padding_below_hu, np.asarray(parameters.padding_as_hu, values.dtype), values)


def clear_labels_in_air(
    labels: Volume, image: Volume, *, parameters: AirParameters = DEFAULT_AIR_PARAMETERS
) -> tuple[Volume, int]:
    """``labels`` with every non-zero label on air of a large air region of ``image`` set to 0.

    Args:
        labels: Label map (any integer classes, 0 = background), shape ``(nx, ny, nz)``.
        image: The scan on the same grid (CT in HU; other images pass untouched).
        parameters: See :class:`AirParameters`.

    Returns:
        (the cleaned label map on the same grid, how many voxels were cleared). Without a change, ``labels`` itself.

    Raises:
        ValueError: ``labels`` and ``image`` are on different grids.
    """
    if not labels.same_grid(image):
        raise ValueError("labels and image must share one grid: " + "; ".join(labels.geometry_differences(image)))
    values = np.asarray(labels.array)
    air = np.asarray(image.array) < parameters.air_below_hu
    labelled_air = air & (values != 0)
    window = grow_box(bounding_box(labelled_air), image.shape, image.spacing, parameters.window_mm)
    if window is None:
        return labels, 0
    cleared = labelled_air[window] & _in_large_air(air[window], image.voxel_volume_mm3, parameters.pocket_max_ml)
    count = int(np.count_nonzero(cleared))
    if not count:
        return labels, 0
    out = values.copy()
    out[window][cleared] = 0
    return labels.with_array(out, is_label=True), count


def _in_large_air(air: NDArray[np.bool_], voxel_mm3: float, pocket_max_ml: float) -> NDArray[np.bool_]:
    """Voxels of ``air`` whose 26-connected air region holds more than ``pocket_max_ml``."""
    regions, _ = ndimage.label(air, structure=np.ones((3, 3, 3), dtype=bool))
    sizes_ml = np.bincount(regions.ravel()) * (voxel_mm3 / 1000.0)
    large = sizes_ml > pocket_max_ml
    large[0] = False
    return large[regions]
