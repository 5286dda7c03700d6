"""The internal semantic classes of a stage-1 mask (what stage 1 predicts and stage 2 reads).

A semantic label map holds one of these integers per voxel. Instance maps (one label per vertebra) use the
level codes of :mod:`spineinstanceseg.levels` instead.
"""

from __future__ import annotations

__all__ = ["BACKGROUND", "VERTEBRA", "DISC", "CANAL", "SACRUM", "UNLABELLED", "SEMANTIC_NAMES", "SEMANTIC_LABELS"]

BACKGROUND = 0
VERTEBRA = 1  # any vertebra (C1 ... L6, T13), sacrum excluded
DISC = 2  # intervertebral disc
CANAL = 3  # spinal canal (CSF + cord)
SACRUM = 4
# Training labels only: the source does not say what this voxel is (a vertebra-only mask beyond its labelled span,
# the unlabelled posterior elements of a body-only MRI mask). nnU-Net datasets declare it as "ignore", so it counts
# neither as background nor as any class. Never in a prediction.
UNLABELLED = 255

SEMANTIC_NAMES: dict[int, str] = {VERTEBRA: "vertebra", DISC: "disc", CANAL: "canal", SACRUM: "sacrum"}
SEMANTIC_LABELS: dict[str, int] = {name: value for value, name in SEMANTIC_NAMES.items()}
