"""A CT stored without its rescale to Hounsfield units: recognised after stage 1, named in a warning.

Scanners store CT values as whole numbers that the DICOM RescaleSlope / RescaleIntercept turn into HU (usually
value - 1024). Readers apply it, but a file written without it (raw scanner values: air near 0, water near 1024)
is not taken for CT (:func:`spineinstanceseg.stage2.sanity.image_is_ct` wants air or fat below -50), so the CT-only
steps are skipped without a word: stored so (values + 1024, whole numbers), the real CTs sub-verse005 and 008 lost
0.896 -> 0.884 and 0.911 -> 0.893 mean vertebra Dice with their leave-one-out stage-1 folds (one-off measurement).

The image's values alone cannot tell such a CT from an MRI whose numbers happen to lie there. The tissue that
stage 1 found can: with the intercept added, the spinal canal (CSF, about water) must read near 0 HU and the
vertebrae well above it, as on every real CT here (canal medians 8-18 HU, vertebrae 196-276 HU, discs 60-86 HU),
while on MRI the canal is either brighter than bone (T2) or nowhere near a fixed number.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..semantic import CANAL, VERTEBRA
from ..volume import Volume

__all__ = ["RawCtCheck", "DEFAULT_RAW_CT_CHECK", "unrescaled_ct_warning"]


@dataclass(frozen=True)
class RawCtCheck:
    """The numbers by which :func:`unrescaled_ct_warning` recognises a CT stored without its rescale.

    Attributes:
        intercept: The rescale intercept that was not applied, HU (-1024 on most scanners).
        canal_hu: Range of the median of the stage-1 canal, HU once ``intercept`` is added (CSF: 0-15 HU).
        vertebra_hu: Range of the median of the stage-1 vertebrae, HU once ``intercept`` is added.
        min_ml: Each of the two classes must hold at least this much, mL.
        max_hu: No value above this, HU once ``intercept`` is added (12-bit scanner values).
    """

    intercept: float = -1024.0
    canal_hu: tuple[float, float] = (-30.0, 60.0)
    vertebra_hu: tuple[float, float] = (120.0, 600.0)
    min_ml: float = 1.0
    max_hu: float = 3071.0


DEFAULT_RAW_CT_CHECK = RawCtCheck()


def unrescaled_ct_warning(image: Volume, semantic: Volume, *, check: RawCtCheck = DEFAULT_RAW_CT_CHECK) -> str | None:
    """A warning when ``image`` looks like a CT whose values were stored without the rescale to HU, else ``None``.

    Args:
        image: The input image.
        semantic: Stage 1's classes (:mod:`spineinstanceseg.semantic`) on the image's grid.
        check: The numbers of the test (:class:`RawCtCheck`).
    """
    from ..stage2.sanity import image_is_ct, value_sample  # lazy: the layer above this one's imports

    if not image.same_grid(semantic) or image_is_ct(image):
        return None
    # the whole-number and range test on a sample first: it turns most MRI away before any full-size mask is made
    sample = value_sample(image)
    if float(sample.max()) + check.intercept > check.max_hu or not np.array_equal(sample, np.round(sample)):
        return None
    values = np.asarray(image.array)
    classes = np.asarray(semantic.array)
    min_voxels = check.min_ml * 1000.0 / image.voxel_volume_mm3
    medians = {}
    for name, label in (("canal", CANAL), ("vertebra", VERTEBRA)):
        inside = values[classes == label]
        if inside.size < min_voxels:
            return None
        medians[name] = float(np.median(inside)) + check.intercept
    if not (_within(medians["canal"], check.canal_hu) and _within(medians["vertebra"], check.vertebra_hu)):
        return None
    return (
        "the image looks like a CT stored without its rescale to Hounsfield units (with "
        f"{check.intercept:.0f} added, the spinal canal would read {medians['canal']:.0f} HU and the vertebrae "
        f"{medians['vertebra']:.0f} HU), so it was treated as MRI and the CT-only steps (bone boundary, sacral bone, "
        "bone checks) were skipped; if it is a CT, convert it to HU (apply the DICOM RescaleSlope and "
        "RescaleIntercept) and run it again"
    )


def _within(value: float, bounds: tuple[float, float]) -> bool:
    return bounds[0] <= value <= bounds[1]
