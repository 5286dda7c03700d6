"""Command-line options shared by `spineseg segment` and `spineseg batch`."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from ..convention_names import CONVENTIONS
from ..devices import DEVICE_HELP, parse_device
from ..errors import InputError
from ..output_kinds import DEFAULT_OUTPUTS, LABEL_FORMATS, OUTPUT_KINDS
from ..stage1_names import STAGE1_SOURCES, TOTALSEG_TASKS

if TYPE_CHECKING:
    from ..pipeline.options import SegmentOptions


def device_name(text: str) -> str:
    """argparse type of ``--device``: the spelling checked (no torch import), e.g. "CUDA:1" -> "cuda:1"."""
    try:
        kind, index = parse_device(text)
    except InputError as err:
        raise argparse.ArgumentTypeError(str(err)) from err
    return kind if index is None else f"{kind}:{index}"


def convention_name(text: str) -> str:
    """argparse type of a label convention: spelled as :data:`~spineinstanceseg.conventions.CONVENTIONS` spells it."""
    return text.strip().lower().replace("-", "_")


def add_device_option(parser: argparse._ActionsContainer, *, default: str) -> None:
    """The one ``--device`` option of every command that runs a network (see :mod:`spineinstanceseg.devices`)."""
    parser.add_argument(
        "--device", type=device_name, default=default, metavar="DEVICE", help=f"{DEVICE_HELP} (default: {default})"
    )


MIRRORING = {"auto": None, "on": True, "off": False}


def add_mirroring_option(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    parser.add_argument(
        "--mirroring",
        choices=tuple(MIRRORING),
        default="auto",
        help="stage 1 test-time mirroring: off is about 8x faster on CPU and costs about 0.01 vertebra Dice "
        "(default: auto, the model card's choice; off for the bundled model)",
    )


def add_segment_options(parser: argparse.ArgumentParser) -> None:
    models = parser.add_argument_group("models")
    models.add_argument(
        "--stage1",
        choices=STAGE1_SOURCES,
        default="nnunet",
        help="stage-1 source: nnunet (the bundled model or --stage1-model) or totalsegmentator (the "
        "TotalSegmentator package, installed separately: pip install TotalSegmentator; it downloads its weights on "
        "the first run; CT task total, MRI task total_mr) (default: nnunet)",
    )
    models.add_argument(
        "--stage1-model", metavar="DIR", help="trained nnU-Net v2 model folder for stage 1 (default: bundled model)"
    )
    models.add_argument("--folds", help="nnU-Net folds to use, comma-separated, e.g. 0,1 or all (default: all found)")
    models.add_argument("--checkpoint", default="checkpoint_final.pth", help="nnU-Net checkpoint file name")
    add_mirroring_option(models)
    models.add_argument(
        "--no-bone-boundary",
        dest="bone_boundary",
        action="store_false",
        help="on CT, keep the vertebra surfaces of stage 1's 2 mm grid instead of moving them to the bone edge seen "
        "in the image (dark surface voxels off, bright bone within 2 mm on), and keep the sacral bone stage 2 gave "
        "the lowest vertebra with it; never applied to MRI or a given --mask",
    )
    models.add_argument(
        "--no-pitch-search",
        dest="pitch_search",
        action="store_false",
        help="run each stage-2 window upright only, without also trying the windows the network is unsure of "
        "turned 20 and 30 degrees about the left-right axis (the turns keep a vertebra that leans far forwards in "
        "the lordosis whole; off saves about 2 %% of the CPU time)",
    )
    models.add_argument(
        "--totalseg-task",
        choices=TOTALSEG_TASKS,
        default="auto",
        help="TotalSegmentator's task with --stage1 totalsegmentator: total (CT only), total_mr (MRI, also CT) "
        "(default: auto = total for a CT, total_mr for an MRI)",
    )
    models.add_argument(
        "--totalseg-fast",
        action="store_true",
        help="TotalSegmentator's 3 mm model: one network instead of several at 1.5 mm, much faster, less exact",
    )
    models.add_argument(
        "--mask",
        metavar="PATH",
        help="existing semantic mask to use instead of stage 1 (a file; with batch, a folder of masks named like "
        "the inputs)",
    )
    models.add_argument(
        "--mask-convention",
        default="semantic",
        type=convention_name,
        choices=CONVENTIONS,
        help="label convention of --mask (default: semantic = 1 vertebra, 2 disc, 3 canal, 4 sacrum)",
    )
    models.add_argument("--stage2-model", metavar="DIR", help="stage-2 model folder (default: bundled model)")
    add_device_option(models, default="auto")
    models.add_argument("--batch-size", type=int, default=4, help="stage-2 windows per network call (default: 4)")
    naming = parser.add_argument_group("level naming (levels are named only when determined)")
    naming.add_argument("--lowest", metavar="LEVEL", help="level of the lowest vertebra in view, e.g. L5")
    naming.add_argument("--anchor", metavar="LEVEL", help="level of the highest vertebra in view, e.g. C2")
    naming.add_argument("--with-l6", action="store_true", help="the patient has a sixth lumbar vertebra")
    naming.add_argument("--with-t13", action="store_true", help="the patient has a thirteenth thoracic vertebra")
    outputs = parser.add_argument_group("outputs")
    outputs.add_argument(
        "--export",
        metavar="LIST",
        help=f"extra outputs, comma-separated, from {', '.join(OUTPUT_KINDS)} "
        f"(always written: {', '.join(DEFAULT_OUTPUTS)})",
    )
    outputs.add_argument(
        "--label-format", default=".nii.gz", choices=LABEL_FORMATS, help="file format of the label maps"
    )


def options_from_args(args: argparse.Namespace) -> SegmentOptions:
    # lazy: importing the pipeline package loads SciPy and the steps; building the parser needs none of it
    from ..pipeline.options import SegmentOptions, parse_exports

    folds = None
    if args.folds and args.folds.strip().lower() != "all":
        folds = tuple(int(f) if f.strip().isdigit() else f.strip() for f in args.folds.split(","))
    return SegmentOptions(
        stage1_model=args.stage1_model,
        folds=folds,
        checkpoint=args.checkpoint,
        stage1_mirroring=MIRRORING[args.mirroring],
        mask=args.mask,
        mask_convention=args.mask_convention,
        stage1=args.stage1,
        totalseg_task=args.totalseg_task,
        totalseg_fast=args.totalseg_fast,
        stage2_model=args.stage2_model,
        device=args.device,
        lowest=args.lowest,
        anchor=args.anchor,
        with_t13=args.with_t13,
        with_l6=args.with_l6,
        bone_boundary=args.bone_boundary,
        pitch_search=args.pitch_search,
        exports=parse_exports(args.export),
        label_format=args.label_format,
        batch_size=args.batch_size,
    )
