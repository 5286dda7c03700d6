"""`spineseg train stage1`: plan, preprocess and train the nnU-Net v2 semantic model on a converted dataset.

Paper setting (default): nnU-Net's default plans, 3d_fullres, the standard nnUNetTrainer (1000 epochs), then
nnU-Net's validation. --quick: smaller plans (patch 32^3, fewer features) and nnUNetTrainer_SpineSegQuick
(5 epochs x 10 iterations) to check a setup in minutes on a CPU. nnU-Net folders: --nnunet-dir BASE
(BASE/nnUNet_raw, BASE/nnUNet_preprocessed, BASE/nnUNet_results) or the nnUNet_raw / nnUNet_preprocessed /
nnUNet_results environment variables. The model folder to pass to `spineseg segment --stage1-model` is printed
at the end; it holds spineseg_card.json (labels, training notes, checksums).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from ..errors import InputError
from .segment_options import add_device_option

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", type=int, required=True, metavar="NNN", help="nnU-Net dataset id")
    parser.add_argument("--fold", default="all", help="'all' (train on every case, default) or 0-4")
    parser.add_argument("--quick", action="store_true", help="short schedule with small plans (minutes on a CPU)")
    parser.add_argument("--epochs", type=int, help="with --quick: epochs (default 5)")
    parser.add_argument("--iterations", type=int, help="with --quick: steps per epoch (default 10)")
    add_device_option(parser, default="auto")
    parser.add_argument("--nnunet-dir", type=Path, metavar="BASE", help="base of the three nnU-Net folders")
    parser.add_argument("--resume", action="store_true", help="continue from the fold's latest checkpoint")
    parser.add_argument("--skip-preprocessing", action="store_true", help="reuse existing plans and preprocessed data")
    parser.add_argument("--processes", type=int, default=2, help="processes for preprocessing (default 2)")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0: torch's default)")


def run(args: argparse.Namespace) -> int:
    # lazy: the training recipe is loaded only by this command, never by `spineseg segment`
    from ..stage1.environment import resolve_folders
    from ..stage1.training import QUICK_SCHEDULE, train_stage1

    if args.threads:
        import torch

        torch.set_num_threads(int(args.threads))
    if (args.epochs or args.iterations) and not args.quick:
        raise InputError("--epochs/--iterations apply to --quick only", fix="add --quick, or drop them (paper setting)")
    schedule = None
    if args.quick:
        schedule = replace(
            QUICK_SCHEDULE,
            epochs=args.epochs or QUICK_SCHEDULE.epochs,
            iterations=args.iterations or QUICK_SCHEDULE.iterations,
        )
    fold = args.fold if args.fold == "all" else int(args.fold)
    result = train_stage1(
        args.dataset,
        folders=resolve_folders(args.nnunet_dir),
        fold=fold,
        schedule=schedule,
        device=args.device,
        resume=args.resume,
        skip_preprocessing=args.skip_preprocessing,
        num_processes=max(1, args.processes),
    )
    sys.stdout.write(f"model: {result.model_folder}\ncard:  {result.card}\n")
    return 0
