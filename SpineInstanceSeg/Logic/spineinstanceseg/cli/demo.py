"""Segment the built-in example (a synthetic lumbar CT phantom) with the bundled models on the CPU.

Writes every output (label maps, .seg.nrrd, markups, CSV, STL, preview PNG, report) to OUT_DIR/<case>/,
scores the result against the phantom's ground truth and prints where the preview PNG is.
"""

from __future__ import annotations

import argparse
import sys

from .progress_bar import ProgressBar
from .segment_options import MIRRORING, add_device_option, add_mirroring_option

NAME = "demo"
HELP = "segment the built-in phantom example and print where the outputs are"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out_dir", nargs="?", default="demo-output", help="output folder (default: demo-output)")
    add_device_option(parser, default="cpu")
    add_mirroring_option(parser)


def run(args: argparse.Namespace) -> int:
    # lazy: the pipeline (and torch) loads when this command runs, not when the parser is built
    from ..examples import EXAMPLE_NAME, example_case
    from ..io import read_label_map
    from ..metrics import evaluate_instances
    from ..output_kinds import OUTPUT_KINDS
    from ..pipeline.options import SegmentOptions
    from ..pipeline.segment_file import segment_file
    from ..stage1.sources import bundled_stage1_available

    case = example_case()
    if bundled_stage1_available():
        options = SegmentOptions(device=args.device, exports=OUTPUT_KINDS, stage1_mirroring=MIRRORING[args.mirroring])
        print("stage 1: bundled nnU-Net model", file=sys.stderr)
    else:
        options = SegmentOptions(device=args.device, exports=OUTPUT_KINDS, mask=str(case.semantic))
        print(
            "stage 1: no bundled nnU-Net model is installed, so the example's own semantic mask is used as the "
            "stage-1 result (as with --mask); stage 2, fusion and naming run for real",
            file=sys.stderr,
        )
    with ProgressBar("demo") as bar:
        paths = segment_file(case.image, args.out_dir, options, case_name=EXAMPLE_NAME, progress=bar)
    predicted = read_label_map(paths["instances"])
    scores = evaluate_instances(predicted, read_label_map(case.instances))
    print(f"outputs:  {paths['report'].parent}")
    print(f"preview:  {paths['preview']}")
    print(
        f"accuracy against the phantom's ground truth: {scores.tp} of {scores.tp + scores.fn} vertebrae found "
        f"({scores.fp} false), instance F1 (IoU >= 0.5) = {scores.f1:.3f}, mean instance Dice = "
        f"{scores.mean_dice:.3f} ({scores.mean_dice_matched:.3f} over the found vertebrae)"
    )
    return 0
