"""Synthetic spine phantoms: CT/T1/T2 images with vertebra instance labels, semantic labels and centroids.

>>> from spineinstanceseg.phantom import generate_phantom, write_phantom_case
>>> case = generate_phantom(3, modality="t2", spacing=1.5)          # doctest: +SKIP
>>> write_phantom_case(case, "out", "case003")                       # doctest: +SKIP

Modules: :mod:`.anatomy` (level dimensions), :mod:`.shapes` (implicit vertebra/sacrum shapes), :mod:`.curve`
(centre line, curvature, poses), :mod:`.grid` (orientation, oblique grids), :mod:`.raster` and :mod:`.context`
(labels and tissue on the voxel grid), :mod:`.acquisition` (CT/MRI contrast, noise, bias), :mod:`.generator`
(:func:`generate_phantom`), :mod:`.io` (files) and :mod:`.preview` (PNG).
"""

from __future__ import annotations

from .curve import SteepLordosis
from .generator import EXTRA_LEVELS, HARD_CASES, MODALITIES, REGIONS, PhantomCase, generate_phantom
from .io import phantom_paths, read_phantom_case, write_phantom_case
from .preview import save_preview_png

__all__ = [
    "PhantomCase",
    "generate_phantom",
    "SteepLordosis",
    "write_phantom_case",
    "read_phantom_case",
    "phantom_paths",
    "save_preview_png",
    "MODALITIES",
    "REGIONS",
    "HARD_CASES",
    "EXTRA_LEVELS",
]
