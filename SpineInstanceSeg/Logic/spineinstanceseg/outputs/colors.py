"""Display colours of segments: one stable, clearly distinct colour per vertebral level.

Colours are RGB triples in [0, 1]. A level always gets the same colour (stable per VerSe code across cases, files
and the Slicer scene), and vertebrae that touch each other get clearly different ones: hues advance by the golden
ratio along the spine (so neighbours are ~140 degrees of hue apart) and lightness/saturation alternate between
neighbours. Vertebrae without a known level ("Vertebra k") get colours from the same sequence, indexed by ``k``.
"""

from __future__ import annotations

import colorsys

from ..levels import SACRUM_CODE, cranio_caudal_order

__all__ = [
    "RGB",
    "level_color",
    "vertebra_color",
    "DISC_COLOR",
    "CANAL_COLOR",
    "SACRUM_COLOR",
    "disc_color",
]

RGB = tuple[float, float, float]

_GOLDEN = 0.6180339887498949  # hue step: consecutive ranks are far apart on the colour wheel
_HUE_START = 0.08  # C1 starts at an orange-red; the sequence then wanders around the wheel

SACRUM_COLOR: RGB = (0.87, 0.76, 0.55)  # bone beige: the sacrum is not part of the per-level sequence
CANAL_COLOR: RGB = (1.0, 0.86, 0.35)  # CSF yellow
DISC_COLOR: RGB = (0.55, 0.80, 0.95)  # pale blue, like cartilage in Slicer's tissue colours


def _sequence_color(rank: int) -> RGB:
    """The ``rank``-th colour of the sequence (rank 0 = top of the spine)."""
    hue = (_HUE_START + rank * _GOLDEN) % 1.0
    # Alternate between a saturated darker and a lighter tone so that even hue-neighbours differ.
    if rank % 2 == 0:
        sat, val = 0.75, 0.92
    else:
        sat, val = 0.50, 0.80
    r, g, b = colorsys.hsv_to_rgb(hue, sat, val)
    return (round(r, 4), round(g, 4), round(b, 4))


def level_color(code: int) -> RGB:
    """Colour of the vertebra with VerSe ``code`` (stable for every case)."""
    if int(code) == SACRUM_CODE:
        return SACRUM_COLOR
    return _sequence_color(cranio_caudal_order(int(code)))


def vertebra_color(level_code: int | None, index: int) -> RGB:
    """Colour of a vertebra: by its level when known, else by its position ``index`` (1 = top) in the result."""
    if level_code is not None:
        return level_color(level_code)
    return _sequence_color(int(index) - 1)


def disc_color(index: int) -> RGB:
    """Colour of the ``index``-th disc (top to bottom): two alternating pale blues so neighbouring discs differ."""
    if index % 2 == 0:
        return DISC_COLOR
    return (0.42, 0.68, 0.90)
