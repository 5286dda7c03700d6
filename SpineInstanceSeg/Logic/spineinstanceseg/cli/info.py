"""Read an image or label map (file or DICOM folder) and describe its geometry and values."""

from __future__ import annotations

import argparse

NAME = "info"
HELP = "describe an image or label map: size, spacing, orientation, value range"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", help="NIfTI/NRRD/MHA file or DICOM series folder")
    parser.add_argument("--label", action="store_true", help="read as a label map and list its labels")


def run(args: argparse.Namespace) -> int:
    # lazy: SimpleITK loads when an image is read, not when the parser of every command is built
    from ..io import read_volume

    volume = read_volume(args.path, is_label=args.label)
    print(args.path)
    print(volume.describe())
    return 0
