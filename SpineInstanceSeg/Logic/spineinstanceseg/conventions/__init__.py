"""Label conventions: reading any supported spine label map into the internal convention and writing it back.

Supported conventions (tables and their sources in :mod:`.tables`):

=======================  ==============================================================  ============
name                     labels                                                           levels
=======================  ==============================================================  ============
``internal``/``verse``   VerSe codes 1-25, 28 (T13); 26 sacrum                            known
``instances``            any positive value is one vertebra                               unknown
``semantic``             1 vertebra, 2 disc, 3 canal, 4 sacrum                            (none)
``spider``               1-25 from the bottom, 101-125 partial, 100 canal, 201-225 discs  unknown *
``totalseg_total``       CT total: 25/26 sacrum+S1, 27 L5 ... 50 C1, 79 cord              known
``totalseg_vertebrae_mr`` MR vertebrae_mr: 1 sacrum, 2 L5 ... 25 C1                        known
``totalseg_total_mr``    MR total_mr: 18 sacrum, 19 vertebrae (one class), 20 discs, 21   unknown
``totalspineseg``        11-17 C, 21-32 T, 41-46 L, 50 sacrum, 1/2 cord/canal, discs      known
``spineps``              VerSe codes, 100+X disc below X, 200+X endplate of X             known
``spineps_subregions``   41-50 vertebra parts, 60/61 cord/canal, 62 endplate, 100 disc    (none)
=======================  ==============================================================  ============

\\* known when the user names the level of SPIDER label 1 (``lowest_level="L5"``).
"""

from __future__ import annotations

from .decode import CONVENTIONS, ConvertedLabels, to_internal
from .detect import detect_convention
from .encode import from_internal

__all__ = ["CONVENTIONS", "ConvertedLabels", "to_internal", "from_internal", "detect_convention"]
