"""The names of the output kinds and label-map formats of a case, with no imports of their own.

The command-line parser lists them in its help and checks ``--export`` and ``--label-format`` before anything
heavy is loaded; the writers themselves live in :mod:`spineinstanceseg.outputs.writer`, which re-exports these.
"""

from __future__ import annotations

__all__ = ["OUTPUT_KINDS", "DEFAULT_OUTPUTS", "LABEL_FORMATS"]

# Every output a case can have, in the order they are written (the report, which marks a case complete, last).
OUTPUT_KINDS: tuple[str, ...] = ("nifti", "nrrd", "seg.nrrd", "stl", "markups", "csv", "preview", "report")
# Written whatever --export adds to them.
DEFAULT_OUTPUTS: tuple[str, ...] = ("nifti", "seg.nrrd", "markups", "csv", "preview", "report")
# File formats of the label maps of the "nifti" output.
LABEL_FORMATS: tuple[str, ...] = (".nii.gz", ".nii", ".nrrd", ".mha")
