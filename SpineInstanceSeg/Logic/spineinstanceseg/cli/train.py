"""Train a model: `spineseg train stage1 ...` (nnU-Net v2 semantic stage) or `spineseg train stage2 ...`.

Each stage's options are documented by `spineseg train STAGE --help` (:mod:`.train_stage1`, :mod:`.train_stage2`);
this command only dispatches to them. The training code itself loads only when a training runs.
"""

from __future__ import annotations

import argparse

from . import train_stage1, train_stage2

NAME = "train"
HELP = "train stage 1 (nnU-Net v2 semantic segmentation) or stage 2 (instance network)"

# sub-command -> module with a docstring, add_arguments(parser) and run(args) -> int
STAGES = {"stage1": train_stage1, "stage2": train_stage2}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="stage", metavar="STAGE", required=True)
    for name, module in STAGES.items():
        doc = (module.__doc__ or name).strip()
        cmd = sub.add_parser(name, help=doc.splitlines()[0], description=doc)
        module.add_arguments(cmd)
        cmd.set_defaults(_run=module.run)


def run(args: argparse.Namespace) -> int:
    return int(args._run(args) or 0)
