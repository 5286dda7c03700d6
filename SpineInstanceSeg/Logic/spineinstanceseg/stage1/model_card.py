"""The model card kept next to a stage-1 nnU-Net model: what its labels mean, how it was trained, checksums.

A trained nnU-Net v2 model folder (``.../DatasetNNN_Name/nnUNetTrainer__nnUNetPlans__3d_fullres``) holds
``dataset.json``, ``plans.json`` and ``fold_X/checkpoint_*.pth``. We add one JSON file, ``spineseg_card.json``::

    {
      "format": "spineinstanceseg-stage1-card", "version": 1,
      "name": "stage1_v5",
      "classes": {"vertebra": [1], "disc": [2], "canal": [3], "sacrum": [4]},   # model label values per class
      "convention": null,            # or a spineinstanceseg.conventions name (e.g. "totalseg_total") instead
      "ignore_labels": [],           # model label values that are deliberately dropped (organs, ...)
      "input_orientation": "lps",    # "lps": images are reoriented to our canonical axes first; "as_is": not
      "training_data": "...", "scores": {...}, "trainer": "...", "plans": "...", "configuration": "...",
      "checksums": {"fold_all/checkpoint_final.pth": "<sha256>", ...},
      "inference": {"use_mirroring": false, "tile_step_size": 0.5},  # optional defaults for prediction
      "weights_only": true           # checkpoints hold only tensors and plain data: loaded with weights_only=True
    }

A model without a card still works: its labels are mapped by their ``dataset.json`` names (see
:func:`classes_from_label_names`) and no checksum can be verified (the log says so).
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..atomic import atomic_path
from ..errors import ModelError
from ..hashing import sha256_file
from ..semantic import SEMANTIC_LABELS

__all__ = [
    "CARD_FILE",
    "CARD_FORMAT",
    "ModelCard",
    "sha256_file",
    "read_card",
    "write_card",
    "verify_checksums",
    "classes_from_label_names",
]

log = logging.getLogger(__name__)

CARD_FILE = "spineseg_card.json"
CARD_FORMAT = "spineinstanceseg-stage1-card"
ORIENTATIONS = ("lps", "as_is")
# Prediction defaults a card may set (a caller's explicit choice wins): nnU-Net's test-time mirroring (8x the
# network calls for 3D) and the sliding-window step as a fraction of the patch.
INFERENCE_SETTINGS = ("use_mirroring", "tile_step_size")

# dataset.json label names (lower case) -> internal class name. Per-level names ("L5", "vertebrae_T12",
# "vertebra_c1") are vertebrae too. Anything else must be declared in a card.
_NAME_RULES: tuple[tuple[str, str], ...] = (
    (r"^(sacrum|s1|vertebrae?_s1)$", "sacrum"),  # first: "vertebrae_S1" is sacrum, not a vertebra
    (r"^(vertebra|vertebrae|vertebral[_ ]body|bone|spine)(s)?([_ ].*)?$", "vertebra"),
    (r"^[ctl]\d{1,2}$", "vertebra"),
    (r"^(disc|discs|ivd|intervertebral[_ ]discs?)([_ ].*)?$", "disc"),
    (r"^(canal|spinal[_ ]canal|spinal[_ ]cord|cord|csf)([_ ].*)?$", "canal"),
)


@dataclass
class ModelCard:
    """Our description of a stage-1 model (see the module docstring for the JSON layout)."""

    name: str = "stage1"
    classes: dict[str, list[int]] = field(default_factory=dict)
    convention: str | None = None
    ignore_labels: list[int] = field(default_factory=list)
    input_orientation: str = "as_is"
    training_data: str = ""
    scores: dict[str, Any] = field(default_factory=dict)
    trainer: str = ""
    plans: str = ""
    configuration: str = ""
    checksums: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    inference: dict[str, Any] = field(default_factory=dict)
    weights_only: bool = False

    def __post_init__(self) -> None:
        unknown = sorted(set(self.classes) - set(SEMANTIC_LABELS))
        if unknown:
            raise ModelError(
                f"the model card names unknown classes {unknown}",
                fix=f"use only {', '.join(SEMANTIC_LABELS)} as keys of 'classes'",
            )
        if self.input_orientation not in ORIENTATIONS:
            raise ModelError(
                f"unknown input_orientation {self.input_orientation!r} in the model card",
                fix=f"use one of {', '.join(ORIENTATIONS)}",
            )
        unknown_settings = sorted(set(self.inference) - set(INFERENCE_SETTINGS))
        if unknown_settings:
            raise ModelError(
                f"the model card has unknown inference settings {unknown_settings}",
                fix=f"use only {', '.join(INFERENCE_SETTINGS)} under 'inference'",
            )
        self.classes = {k: [int(v) for v in vals] for k, vals in self.classes.items()}
        self.ignore_labels = [int(v) for v in self.ignore_labels]

    def to_dict(self) -> dict[str, Any]:
        return {"format": CARD_FORMAT, "version": 1, **asdict(self)}


def read_card(folder: str | Path) -> ModelCard | None:
    """The card in ``folder``, or ``None`` when there is none.

    Raises:
        ModelError: the card exists but is not valid JSON or not a stage-1 card.
    """
    path = Path(folder) / CARD_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ModelError(
            f"the model card cannot be read ({err})", fix="restore the file or delete it", path=path
        ) from err
    if not isinstance(data, dict) or data.get("format") != CARD_FORMAT:
        raise ModelError(
            f"this is not a stage-1 model card (format {data.get('format') if isinstance(data, dict) else None!r})",
            fix=f'the card must have "format": "{CARD_FORMAT}"',
            path=path,
        )
    fields = {k: v for k, v in data.items() if k in ModelCard.__dataclass_fields__}
    try:
        return ModelCard(**fields)
    except (TypeError, ValueError) as err:
        raise ModelError(f"the model card is malformed ({err})", fix="fix or delete the card", path=path) from err


def write_card(card: ModelCard, folder: str | Path, *, checksum_files: list[str] | None = None) -> Path:
    """Write ``card`` into ``folder``; ``checksum_files`` (paths relative to ``folder``) get fresh SHA-256 sums."""
    folder = Path(folder)
    if checksum_files is not None:
        card.checksums = {rel: sha256_file(folder / rel) for rel in sorted(checksum_files)}
    path = folder / CARD_FILE
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(card.to_dict(), indent=2) + "\n", encoding="utf-8")
    return path


def verify_checksums(card: ModelCard, folder: str | Path, *, files: list[str]) -> list[str]:
    """Check the SHA-256 of every file of ``files`` (relative to ``folder``) that the card lists.

    Returns:
        The files that the card does not list (used, but unverified).

    Raises:
        ModelError: a listed file differs from its recorded checksum (naming the file).
    """
    folder = Path(folder)
    unverified = []
    for rel in files:
        expected = card.checksums.get(rel)
        if expected is None:
            unverified.append(rel)
            continue
        actual = sha256_file(folder / rel)
        if actual != expected:
            raise ModelError(
                f"checksum mismatch: SHA-256 {actual[:12]}... but the model card records {expected[:12]}...",
                fix="the file is corrupt or was changed: download/copy the model again (or retrain it)",
                path=folder / rel,
            )
    return unverified


def classes_from_label_names(labels: dict[str, Any]) -> tuple[dict[str, list[int]], list[tuple[str, int]]]:
    """Map ``dataset.json`` labels (name -> value) to internal classes by name.

    Returns:
        ``(classes, unmapped)``: class name -> model label values, and the ``(name, value)`` pairs no rule matched.

    Raises:
        ModelError: a region-based model (label values are lists), which stage 1 does not support.
    """
    classes: dict[str, list[int]] = {}
    unmapped: list[tuple[str, int]] = []
    for name, value in labels.items():
        if isinstance(value, (list, tuple)):
            raise ModelError(
                f"label {name!r} is a region ({value}): region-based nnU-Net models are not supported for stage 1",
                fix="train stage 1 with plain integer labels (spineseg dataset nnunet writes them)",
            )
        value = int(value)
        if value == 0 or name.lower() in ("background", "ignore"):
            continue
        key = name.strip().lower()
        target = next((cls for pattern, cls in _NAME_RULES if re.match(pattern, key)), None)
        if target is None:
            unmapped.append((name, value))
        else:
            classes.setdefault(target, []).append(value)
    return classes, unmapped
