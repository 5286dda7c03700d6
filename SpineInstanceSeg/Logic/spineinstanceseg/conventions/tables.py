"""Label tables of the external conventions, with where each fact comes from.

Every table maps a label value of the external convention to what it means internally:
a VerSe vertebra code (:mod:`spineinstanceseg.levels`), a semantic class (:mod:`spineinstanceseg.semantic`),
or nothing (a structure the spine tools do not use, e.g. an organ of TotalSegmentator's ``total`` task).

Sources (checked against the public code and documentation, not guessed):

* **VerSe** (VerSe 2020 data README, osf.io/b2wxj): 1-7 C1-C7, 8-19 T1-T12, 20-25 L1-L6, 26 sacrum,
  27 coccyx (not labelled in VerSe), 28 T13.
* **SPIDER** (grand-challenge SPIDER baseline algorithm page and the official DIAGNijmegen/SPIDER-Evaluation
  ``evaluation.py``): 1-25 vertebrae numbered from the bottom ("L5 = 1"), 100 spinal canal, 101-125 partially
  visible vertebrae (same numbering + 100), 201-225 intervertebral discs numbered from the bottom
  ("L5/S1 = 201", i.e. disc 200+k lies below vertebra k). The sacrum is not segmented. The official evaluation
  treats 0 < label < 100 as vertebrae, label > 200 as discs and 100 as the canal.
* **TotalSegmentator** (wasserth/TotalSegmentator ``totalsegmentator/map_to_binary.py``, class_map):
  ``total`` (117 classes): 25 sacrum, 26 vertebrae_S1, 27 vertebrae_L5 ... 50 vertebrae_C1, 79 spinal_cord;
  ``vertebrae_mr`` (25 classes): 1 sacrum, 2 vertebrae_L5 ... 25 vertebrae_C1;
  ``total_mr`` (50 classes): 18 sacrum, 19 vertebrae (one class for all), 20 intervertebral_discs, 21 spinal_cord.
* **TotalSpineSeg** (neuropoly/totalspineseg README "List of Classes" and ``resources/labels_maps/tss_map.json``):
  1 spinal_cord, 2 spinal_canal, 11-17 C1-C7, 21-32 T1-T12, 41-45 L1-L5 (46 L6 in tss_map), 50 sacrum,
  discs 63-67 (C2/C3-C6/C7), 71-82 (C7/T1-T11/T12), 91-95 (T12/L1-L4/L5), 100 (L5/S).
* **SPINEPS / TPTBox** (Hendrik-code/spineps README "Labels"): instance mask (``seg-vert``): vertebra X in 1-25
  (VerSe codes, 26 sacrum, 28 T13), 100+X its intervertebral disc (below X), 200+X its endplate; subregion mask
  (``seg-spine``): 41-49 vertebra parts, 50 vertebral body, 60 spinal cord, 61 spinal canal, 62 endplate,
  100 disc, 26 sacrum.
"""

from __future__ import annotations

from ..levels import L6_CODE, SACRUM_CODE, T13_CODE
from ..semantic import CANAL, DISC, SACRUM, VERTEBRA

__all__ = [
    "VERSE_VERTEBRA_CODES",
    "TOTALSEG_TOTAL_VERTEBRAE",
    "TOTALSEG_VERTEBRAE_MR",
    "TOTALSPINESEG_VERTEBRAE",
    "TOTALSPINESEG_DISCS",
    "SPINEPS_SUBREGIONS",
    "TOTALSEG_TOTAL_N_CLASSES",
    "TOTALSEG_TOTAL_MR_N_CLASSES",
]

# VerSe codes of vertebrae that get an instance (the sacrum is a semantic class, not an instance).
VERSE_VERTEBRA_CODES: tuple[int, ...] = (*range(1, 26), T13_CODE)

TOTALSEG_TOTAL_N_CLASSES = 117
TOTALSEG_TOTAL_MR_N_CLASSES = 50

# TotalSegmentator CT "total": 27 L5 ... 50 C1  ->  VerSe code = 51 - value (50 -> 1 C1, 27 -> 24 L5).
TOTALSEG_TOTAL_VERTEBRAE: dict[int, int] = {value: 51 - value for value in range(27, 51)}
TOTALSEG_TOTAL_SACRUM = (25, 26)  # "sacrum" and "vertebrae_S1"
TOTALSEG_TOTAL_CORD = 79

# TotalSegmentator MR "vertebrae_mr": 1 sacrum, 2 L5 ... 25 C1  ->  VerSe code = 26 - value.
TOTALSEG_VERTEBRAE_MR: dict[int, int] = {value: 26 - value for value in range(2, 26)}
TOTALSEG_VERTEBRAE_MR_SACRUM = 1

# TotalSegmentator MR "total_mr".
TOTALSEG_TOTAL_MR_SACRUM = 18
TOTALSEG_TOTAL_MR_VERTEBRAE = 19
TOTALSEG_TOTAL_MR_DISCS = 20
TOTALSEG_TOTAL_MR_CORD = 21

# TotalSpineSeg.
TOTALSPINESEG_VERTEBRAE: dict[int, int] = {
    **{10 + i: i for i in range(1, 8)},  # 11-17 C1-C7
    **{20 + i: 7 + i for i in range(1, 13)},  # 21-32 T1-T12
    **{40 + i: 19 + i for i in range(1, 6)},  # 41-45 L1-L5
    46: L6_CODE,
}
TOTALSPINESEG_SACRUM = 50
TOTALSPINESEG_CANAL = (1, 2)  # spinal cord + the CSF part of the canal = our canal class
# Disc value -> VerSe code of the vertebra above it.
TOTALSPINESEG_DISCS: dict[int, int] = {
    **{60 + i: i - 1 for i in range(3, 8)},  # 63 C2/C3 ... 67 C6/C7
    71: 7,  # C7/T1
    **{70 + i: 6 + i for i in range(2, 13)},  # 72 T1/T2 ... 82 T11/T12
    91: 19,  # T12/L1
    **{90 + i: 18 + i for i in range(2, 6)},  # 92 L1/L2 ... 95 L4/L5
    100: 24,  # L5/S
}

# SPINEPS subregion ("seg-spine") classes -> internal semantic classes.
SPINEPS_SUBREGIONS: dict[int, int] = {
    **{value: VERTEBRA for value in range(41, 51)},
    62: VERTEBRA,  # bony endplate belongs to the vertebra
    60: CANAL,
    61: CANAL,
    100: DISC,
    SACRUM_CODE: SACRUM,
}
