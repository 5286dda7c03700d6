"""Segment every vertebra of one spine CT or MRI (file or DICOM folder) and write the outputs to OUT_DIR/<case>/.

Outputs: instance and semantic label maps, a Slicer .seg.nrrd, centroid markups (.mrk.json) and CSV, a PNG
preview, a JSON report, and on request per-vertebra STL surfaces and NRRD label maps. The result's warnings (what
was dropped or merged, why levels were not named, an input that looks wrong) are printed at the end and kept in
the report. Exit codes: 0 success, 2 bad input or usage, 1 other failure (including "no spine found").
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..progress import format_progress_line
from .progress_bar import ProgressBar
from .segment_options import add_segment_options, options_from_args

NAME = "segment"
HELP = "segment one image (file or DICOM folder) into one label per vertebra"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", help="image file (.nii.gz, .nii, .nrrd, .mha, .mhd) or DICOM series folder")
    parser.add_argument("out_dir", help="output folder; results go to OUT_DIR/<case name>/")
    parser.add_argument("--case-name", help="name of the case folder and files (default: from the input name)")
    parser.add_argument(
        "--progress-lines",
        action="store_true",
        help="print machine-readable progress lines on stdout instead of a progress bar (used by Slicer)",
    )
    add_segment_options(parser)


def _print_line(step: str, fraction: float, message: str) -> None:
    print(format_progress_line(step, fraction, message), flush=True)


def run(args: argparse.Namespace) -> int:
    # lazy: the pipeline (and torch) loads when this command runs, not when the parser is built
    from ..pipeline.segment_file import segment_file

    options = options_from_args(args)
    if args.progress_lines:
        paths = segment_file(args.input, args.out_dir, options, case_name=args.case_name, progress=_print_line)
    else:
        with ProgressBar("spineseg") as bar:
            paths = segment_file(args.input, args.out_dir, options, case_name=args.case_name, progress=bar)
    report = paths.get("report")
    print(f"done: outputs in {report.parent if report else args.out_dir}", file=sys.stderr)
    for kind, path in sorted(paths.items()):
        print(f"  {kind:12s} {path}")
    if not args.progress_lines:  # Slicer reads the warnings from the report, with the result
        _print_warnings(report)
    return 0


def _print_warnings(report: Path | None) -> None:
    """The warnings of the case's report, one per line on stderr."""
    if report is None:
        return
    for warning in json.loads(Path(report).read_text(encoding="utf-8")).get("warnings", []):
        print(f"warning: {warning}", file=sys.stderr)
