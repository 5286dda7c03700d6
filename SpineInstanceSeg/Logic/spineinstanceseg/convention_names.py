"""The names of the supported label conventions, with no imports of their own.

The Slicer module offers :data:`MASK_CONVENTIONS` in its panel and reads them when it loads, before the library's
packages may be installed; the conversions themselves live in :mod:`spineinstanceseg.conventions`, which implements
exactly :data:`CONVENTIONS` (checked when it is imported).
"""

from __future__ import annotations

__all__ = ["CONVENTIONS", "MASK_CONVENTIONS"]

# Every convention a label map can be read in (see the table in :mod:`spineinstanceseg.conventions`).
CONVENTIONS: tuple[str, ...] = (
    "internal",
    "verse",
    "instances",
    "semantic",
    "spider",
    "totalseg_total",
    "totalseg_vertebrae_mr",
    "totalseg_total_mr",
    "totalspineseg",
    "spineps",
    "spineps_subregions",
)

# The conventions the Slicer module offers for a labelmap used as the stage-1 mask: our semantic classes first,
# then the tools' files a user brings ("internal" is "verse"; "instances" and "spineps_subregions" hold no
# semantic classes of their own a user would pick a labelmap for). The CLI's --mask-convention takes them all.
MASK_CONVENTIONS: tuple[str, ...] = (
    "semantic",
    "verse",
    "spider",
    "totalseg_total",
    "totalseg_vertebrae_mr",
    "totalseg_total_mr",
    "totalspineseg",
    "spineps",
)
