"""Train a model: `spineseg train stage1 ...` (nnU-Net v2 semantic stage) or `spineseg train stage2 ...`.

Each stage's options are documented by `spineseg train STAGE --help`. The stages live in their own packages;
this command only dispatches to them.
"""

from __future__ import annotations

import argparse
import importlib

NAME = "train"
HELP = "train stage 1 (nnU-Net v2 semantic segmentation) or stage 2 (instance network)"

# sub-command -> module with a docstring, add_arguments(parser) and run(args) -> int
STAGES: dict[str, str] = {
    "stage1": "spineinstanceseg.stage1.cli_train",
    "stage2": "spineinstanceseg.stage2.cli_train",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="stage", metavar="STAGE", required=True)
    for name, module_path in STAGES.items():
        try:
            module = importlib.import_module(module_path)
        except ImportError:  # a stage not installed in this build is simply not offered
            continue
        doc = (module.__doc__ or name).strip()
        cmd = sub.add_parser(name, help=doc.splitlines()[0], description=doc)
        module.add_arguments(cmd)
        cmd.set_defaults(_run=module.run)


def run(args: argparse.Namespace) -> int:
    return int(args._run(args) or 0)
