"""SpineInstanceSeg: two-stage 3D spine instance segmentation (library behind the Slicer module and CLI).

Import name ``spineinstanceseg``; console command ``spineseg``. See :mod:`spineinstanceseg.volume` for the one
axis-order convention used throughout.
"""

from __future__ import annotations

import logging

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())

from .errors import (  # noqa: E402
    CancelledError,
    ConventionError,
    InputError,
    ModelError,
    NoSpineFoundError,
    SpineSegError,
)
from .volume import Volume  # noqa: E402

__all__ = [
    "__version__",
    "Volume",
    "SpineSegError",
    "InputError",
    "ConventionError",
    "ModelError",
    "NoSpineFoundError",
    "CancelledError",
]
