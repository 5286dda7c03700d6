"""Prepare training datasets. `spineseg dataset nnunet` writes an nnU-Net v2 raw dataset from a spine dataset.

  spineseg dataset nnunet --from spider|verse|phantom|generic SRC --id NNN --name NAME [--out RAW_DIR]

writes RAW_DIR/DatasetNNN_NAME/{imagesTr,labelsTr,dataset.json} (RAW_DIR defaults to $nnUNet_raw) with the
semantic classes the source has (vertebra, disc, canal, sacrum; renumbered consecutively as nnU-Net requires),
every case in canonical axis order, then reads everything back to verify it (same grid for image and label,
labels within the declared set). Sources: SPIDER (images/*.mha + masks/*.mha), VerSe (rawdata/**/*_ct.nii.gz +
derivatives/**/*_seg-vert_msk.nii.gz), phantom (a folder written by `spineseg phantom`) and generic
(images/ + labels/ with semantic labels 1 vertebra, 2 disc, 3 canal, 4 sacrum).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..errors import InputError
from ..progress import Progress
from .progress_bar import ProgressBar

NAME = "dataset"
HELP = "convert a spine dataset (SPIDER, VerSe, phantoms, generic) into an nnU-Net v2 raw dataset"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="dataset_format", metavar="FORMAT", required=True)
    nn = sub.add_parser("nnunet", help="write an nnU-Net v2 raw dataset", description=__doc__)
    nn.add_argument("src", type=Path, metavar="SRC", help="source dataset folder")
    nn.add_argument("--from", dest="source", required=True, choices=("spider", "verse", "phantom", "generic"))
    nn.add_argument("--id", dest="dataset_id", type=int, required=True, help="nnU-Net dataset id (1-999, e.g. 501)")
    nn.add_argument("--name", required=True, help="dataset name (letters, digits, _ and -)")
    nn.add_argument("--out", type=Path, metavar="RAW_DIR", help="nnU-Net raw folder (default: $nnUNet_raw)")
    nn.add_argument("--channel-name", help='nnU-Net channel name ("CT" = CT normalisation; default: CT if all CT)')
    nn.add_argument("--overwrite", action="store_true", help="replace an existing dataset folder of that name")


def run(args: argparse.Namespace) -> int:
    # lazy: dataset conversion loads only for this command, never for `spineseg segment`
    from ..stage1.dataset import convert_dataset

    raw = args.out or (Path(os.environ["nnUNet_raw"]) if os.environ.get("nnUNet_raw") else None)
    if raw is None:
        raise InputError("no output folder", fix="pass --out RAW_DIR or export nnUNet_raw=/path/to/nnUNet_raw")
    with ProgressBar("dataset") as bar:
        result = convert_dataset(
            args.source,
            args.src,
            dataset_id=args.dataset_id,
            name=args.name,
            raw_dir=raw,
            channel_name=args.channel_name,
            overwrite=args.overwrite,
            progress=Progress(bar, step="dataset"),
        )
    print(f"wrote {len(result.cases)} cases to {result.folder} (verified)")
    print(f"labels: {result.labels}")
    for warning in result.warnings:
        print(f"warning: {warning}")
    print(
        f"next: spineseg train stage1 --dataset {args.dataset_id} --nnunet-dir {raw.parent}  (add --quick for a test)"
    )
    return 0
