"""Train the stage-2 instance network (multi-scale 3D U-Net with MAFU) from vertebra label maps.

Without --labels it trains on synthetic phantoms generated on the fly. With --labels DIR it reads every label
map in DIR (.nii.gz, .nii, .nrrd, .mha, ...) in the given --convention (VerSe, SPIDER, TotalSegmentator, ...; see
`spineinstanceseg.conventions`), or, for --convention phantom, the NAME_instances.nii.gz / NAME_semantic.nii.gz
pairs written by `spineseg phantom`. Only label maps are needed: the network's input is the semantic mask.
The model folder to pass to `spineseg segment --stage2-model` is OUT/model.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import InputError
from .segment_options import add_device_option

if TYPE_CHECKING:  # the training modules (torch) load only when this command runs
    from ..stage2.training import TrainSchedule
    from ..stage2.training_data import TrainingCase
    from ..stage2.windows import WindowSpec

__all__ = ["add_arguments", "run", "phantom_training_cases"]

log = logging.getLogger(__name__)

_REGIONS = ("lumbar", "thoracolumbar", "whole", "cervical")
_HARD = (None, "collapsed_disc", "fused", "wedge_fracture")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--labels", type=Path, help="folder of label maps (default: generate phantoms)")
    parser.add_argument(
        "--convention",
        default="verse",
        help="label convention of --labels: phantom, verse, spider, totalseg_total, totalspineseg, spineps, ...",
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder (model/, checkpoint/, curves.png)")
    parser.add_argument("--epochs", type=int, help="epochs (default 100, the paper's; --quick: 5)")
    parser.add_argument("--iterations", type=int, help="optimiser steps per epoch (default 250; --quick: 10)")
    parser.add_argument("--batch-size", type=int, help="windows per step (default 2)")
    parser.add_argument("--lr", type=float, help="Adam learning rate (default 1e-4, the paper's; --quick: 1e-3)")
    parser.add_argument("--quick", action="store_true", help="short schedule that finishes in minutes on a CPU")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint")
    add_device_option(parser, default="auto")
    parser.add_argument("--base-width", type=int, default=16, help="channels of the first network level")
    parser.add_argument("--spacing", type=float, default=2.0, help="working grid spacing in mm (default 2)")
    parser.add_argument("--window", type=int, nargs=3, default=(64, 64, 64), help="window size in voxels")
    parser.add_argument("--phantoms", type=int, default=40, help="phantom cases to generate without --labels")
    parser.add_argument("--val-fraction", type=float, default=0.15, help="share of cases held out for validation")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0: torch's default)")
    parser.add_argument("--seed", type=int, default=0, help="seed of sampling and of the case split")


def _say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def phantom_training_cases(count: int, *, spec: WindowSpec, first_seed: int = 0) -> list[TrainingCase]:
    """``count`` phantom cases over all regions and hard cases; every third one as a vertebra-only mask."""
    # lazy: phantom generation and the training data load only when this command trains
    from ..phantom import generate_phantom
    from ..stage2.training_data import prepare_case

    cases = []
    for k in range(count):
        seed = first_seed + k
        region, hard = _REGIONS[k % len(_REGIONS)], _HARD[(k // len(_REGIONS)) % len(_HARD)]
        if region == "cervical" and hard is not None:
            hard = "fused"
        case = generate_phantom(seed, region=region, spacing=spec.spacing_mm, hard_case=hard, oblique_deg=8.0)
        semantic = None if k % 3 == 2 else case.semantic
        cases.append(prepare_case(case.instances, semantic, spec=spec, name=f"phantom{seed}-{region}-{hard}"))
    return cases


def _schedule(args: argparse.Namespace) -> TrainSchedule:
    # lazy: the training loop (torch) loads only when this command runs
    from ..stage2.training import QUICK_SCHEDULE, TrainSchedule

    base = QUICK_SCHEDULE if args.quick else TrainSchedule()
    values = base.to_dict()
    for key in ("epochs", "iterations", "batch_size", "lr"):
        if getattr(args, key) is not None:
            values[key] = getattr(args, key)
    values["seed"] = args.seed
    schedule = TrainSchedule(**values)
    if schedule.epochs < 1 or schedule.iterations < 1 or schedule.batch_size < 1 or not schedule.lr > 0:
        raise InputError("epochs, iterations and batch size must be >= 1 and lr > 0", fix="check the options")
    return schedule


def _training_cases(args: argparse.Namespace, spec: WindowSpec) -> tuple[list[TrainingCase], str]:
    """The prepared cases and a line that says what they are."""
    # lazy: the training data module loads only when this command runs
    from ..stage2.training_data import load_label_cases

    if args.labels is None:
        _say(f"no --labels given: generating {args.phantoms} synthetic phantoms")
        cases = phantom_training_cases(max(2, args.phantoms), spec=spec)
        return cases, f"{len(cases)} synthetic phantoms"
    cases = load_label_cases(args.labels, args.convention, spec=spec)
    return cases, f"{len(cases)} label maps from {args.labels} ({args.convention})"


def run(args: argparse.Namespace) -> int:
    # lazy: torch and the training loop load only when this command runs
    import torch

    from ..stage2.model import Stage2Config
    from ..stage2.network import count_parameters
    from ..stage2.training import train_stage2
    from ..stage2.windows import WindowSpec

    if args.threads:
        torch.set_num_threads(int(args.threads))
    spec = WindowSpec(tuple(args.window), float(args.spacing))
    schedule = _schedule(args)
    cases, data = _training_cases(args, spec)
    order = np.random.default_rng(args.seed).permutation(len(cases))
    n_val = min(len(cases) - 1, max(1, round(args.val_fraction * len(cases))))
    val = [cases[i] for i in order[:n_val]]
    train = [cases[i] for i in order[n_val:]]
    config = Stage2Config(window=spec, base_width=args.base_width, name=args.out.name or "stage2",
                          training={"data": data, "train_cases": [c.name for c in train],
                                    "val_cases": [c.name for c in val]})  # fmt: skip
    network = config.build_network()
    _say(f"stage-2 network: {count_parameters(network):,} parameters (base width {args.base_width})")
    _say(f"training on {len(train)} cases, validating on {len(val)}; {schedule.epochs} epochs x "
         f"{schedule.iterations} steps x {schedule.batch_size} windows, Adam lr {schedule.lr:g}")  # fmt: skip

    def report(record: dict[str, float]) -> None:
        _say(f"epoch {record['epoch']:3d}: loss {record['loss']:.4f}  validation Dice {record['val_dice']:.4f}  "
             f"({record['seconds']:.0f} s)")  # fmt: skip

    model_dir = train_stage2(
        train, val, out=args.out, config=config, schedule=schedule, device=args.device, resume=args.resume,
        on_epoch=report,
    )  # fmt: skip
    _say(f"model: {model_dir}\ncurves: {args.out / 'curves.png'}")
    return 0
