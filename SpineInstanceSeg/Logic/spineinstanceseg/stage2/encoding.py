"""Stage-2 network input: the stage-1 semantic mask as one-hot channels (optionally plus the image).

The default input is the mask alone (the paper's SSplit(Mask)), which makes stage 2 independent of modality and
trainable from label maps only. Channel order is fixed by ``MASK_CHANNELS``; a model's config stores the list of
channels it was trained with.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from ..errors import InputError
from ..semantic import CANAL, DISC, SACRUM, VERTEBRA

__all__ = ["MASK_CHANNELS", "IMAGE_CHANNEL", "encode_input", "normalise_image"]

MASK_CHANNELS: tuple[str, ...] = ("vertebra", "disc", "canal", "sacrum")
IMAGE_CHANNEL = "image"
_CLASS_OF = {"vertebra": VERTEBRA, "disc": DISC, "canal": CANAL, "sacrum": SACRUM}


def normalise_image(image: NDArray) -> NDArray[np.float32]:
    """Robust z-score (0.5-99.5 percentile clip) so CT and MRI windows share a value range."""
    image = np.asarray(image, dtype=np.float32)
    lo, hi = np.percentile(image, [0.5, 99.5])
    clipped = np.clip(image, lo, hi)
    std = float(clipped.std())
    return ((clipped - float(clipped.mean())) / (std if std > 0 else 1.0)).astype(np.float32)


def encode_input(
    semantic: NDArray, *, channels: tuple[str, ...] = MASK_CHANNELS, image: NDArray | None = None
) -> NDArray[np.float32]:
    """Semantic labels ``(..., X, Y, Z)`` -> float32 channels ``(..., C, X, Y, Z)`` in ``channels`` order.

    Args:
        semantic: Integer array of :mod:`spineinstanceseg.semantic` classes.
        channels: Names from ``MASK_CHANNELS`` plus optionally ``"image"``.
        image: Normalised image on the same grid; required when ``"image"`` is in ``channels``.
    """
    semantic = np.asarray(semantic)
    planes = []
    for name in channels:
        if name == IMAGE_CHANNEL:
            if image is None:
                raise InputError(
                    "this stage-2 model needs the image as an input channel, but none was given",
                    fix="pass the image, or use a mask-only stage-2 model",
                )
            planes.append(np.asarray(image, dtype=np.float32))
        elif name in _CLASS_OF:
            planes.append((semantic == _CLASS_OF[name]).astype(np.float32))
        else:
            raise InputError(f"unknown stage-2 input channel {name!r}", fix=f"use {MASK_CHANNELS} or 'image'")
    return np.stack(planes, axis=-4)
