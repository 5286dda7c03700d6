"""Compare predicted vertebra label maps with reference ones (two files, or two folders paired by case name).

Writes OUT/cases.csv (one row per case), OUT/vertebrae.csv (one row per vertebra: TP, FN or FP) and
OUT/evaluation.json (settings, summary, cases, vertebrae, unpaired files), and prints mean +/- std per metric.
A vertebra counts as found when IoU >= 0.5 (greedy one-to-one matching); mean instance Dice counts missed
vertebrae as 0; ASSD and HD95 are in mm over matched vertebrae. Maps on different grids are an error (naming each
field that differs, both values and the difference in voxels) unless --resample is given; grids that differ by
less than 1 % of a voxel (float jitter between tools) are compared as they are, with a note. Exit codes: 0 success,
2 bad input, 1 other failure.
"""

from __future__ import annotations

import argparse
import math
import sys

from ..convention_names import CONVENTIONS
from ..progress import Progress
from ..volume import GRID_JITTER_VOXELS
from .progress_bar import ProgressBar
from .segment_options import convention_name

NAME = "evaluate"
HELP = "score predicted vertebra label maps against references (Dice, ASSD, F1/PQ, SPIDER mode)"

_SETTINGS = ("pred", "ref", "pred_convention", "ref_convention", "resample", "spider", "iou_threshold",
             "pred_lowest_level", "ref_lowest_level")  # fmt: skip
# (column, label, unit) shown in the terminal summary, in this order.
_SHOWN = (
    ("f1", "F1 (RQ), IoU>=0.5", ""),
    ("sq", "SQ (mean IoU of matches)", ""),
    ("pq", "PQ", ""),
    ("mean_dice", "instance Dice (missed = 0)", ""),
    ("mean_dice_matched", "instance Dice (matched only)", ""),
    ("mean_assd_mm", "ASSD (matched)", " mm"),
    ("mean_hd95_mm", "HD95 (matched)", " mm"),
    ("level_identification_rate", "level identification rate", ""),
    ("semantic_dice_vertebra", "semantic Dice, vertebra", ""),
    ("spider_DiceScoreVertebrae", "SPIDER Dice vertebrae", ""),
    ("spider_DetectionRateVertebrae", "SPIDER detection rate vertebrae", ""),
    ("spider_ASDVertebrae", "SPIDER ASD vertebrae", " mm"),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pred", help="predicted label map, or a folder of them")
    parser.add_argument("ref", help="reference label map, or a folder of them (paired with PRED by case name)")
    parser.add_argument(
        "--out", required=True, metavar="DIR", help="folder for cases.csv, vertebrae.csv, evaluation.json"
    )
    parser.add_argument(
        "--pred-convention",
        default="internal",
        type=convention_name,
        choices=CONVENTIONS,
        help="label convention of PRED (default: internal = VerSe codes; use 'instances' for maps numbered 1..N "
        "without levels)",
    )
    parser.add_argument(
        "--ref-convention",
        default="internal",
        type=convention_name,
        choices=CONVENTIONS,
        help="label convention of REF (default: internal)",
    )
    parser.add_argument(
        "--resample",
        action="store_true",
        help="resample predictions onto the reference grid (nearest neighbour) when the grids differ; without it "
        f"such a pair is refused, except for differences below {GRID_JITTER_VOXELS:.0%} of a voxel (float jitter "
        "between tools), which are compared as they are and noted",
    )
    for side in ("pred", "ref"):
        parser.add_argument(
            f"--{side}-lowest-level",
            metavar="LEVEL",
            help=f"SPIDER {side.upper()} maps only: level of SPIDER label 1 (e.g. L5); without it levels stay unknown",
        )
    parser.add_argument("--spider", action="store_true", help="also compute the official SPIDER challenge metrics")
    parser.add_argument("--iou-threshold", type=float, default=0.5, help="IoU for a vertebra to count as found")


def _format(stats: dict[str, float], unit: str) -> str:
    mean, std = stats["mean"], stats["std"]
    if math.isnan(mean):
        return "n/a"
    text = f"{mean:.4f}" + (f" +/- {std:.4f}" if not math.isnan(std) else "")
    return f"{text}{unit}  (n={stats['n']})"


def run(args: argparse.Namespace) -> int:
    # lazy: the metrics load when this command runs, not when the parser is built
    from ..evaluate import evaluate_paths, summarize, write_outputs

    with ProgressBar("evaluate") as bar:
        results, lone_pred, lone_ref = evaluate_paths(
            args.pred,
            args.ref,
            pred_convention=args.pred_convention,
            ref_convention=args.ref_convention,
            resample=args.resample,
            spider=args.spider,
            iou_threshold=args.iou_threshold,
            pred_lowest_level=args.pred_lowest_level,
            ref_lowest_level=args.ref_lowest_level,
            progress=Progress(bar, step="evaluate"),
        )
    settings = {k: v for k, v in vars(args).items() if k in _SETTINGS}
    paths = write_outputs(
        results, args.out, unpaired_predictions=lone_pred, unpaired_references=lone_ref, settings=settings
    )
    summary = summarize(results)
    print(f"{len(results)} case(s) evaluated")
    width = max(len(label) for _, label, _ in _SHOWN)
    for key, label, unit in _SHOWN:
        if key in summary:
            print(f"  {label:{width}s}  {_format(summary[key], unit)}")
    for result in results:
        if result.grid_note:
            print(f"note: {result.case}: {result.grid_note.removeprefix('grid: ')}", file=sys.stderr)
    for kind, files in (("prediction", lone_pred), ("reference", lone_ref)):
        if files:
            print(f"warning: {len(files)} {kind} file(s) without a partner: "
                  f"{', '.join(p.name for p in files[:10])}", file=sys.stderr)  # fmt: skip
    for kind, path in paths.items():
        print(f"  {kind:9s} {path}", file=sys.stderr)
    return 0
