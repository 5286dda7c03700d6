"""Segment every image (and DICOM series folder) in IN_DIR into OUT_DIR/<case>/, distributed with Dask.

Resumable: cases whose report exists are skipped, so re-running after an interruption finishes the rest.
A failing case is recorded in OUT_DIR/batch_summary.csv and the others go on; the summary is written also when
the batch is stopped (Ctrl-C: exit code 130), listing unfinished cases as "cancelled". Runs on a local Dask
cluster (one worker per core, or per GPU, but no more than fit in the memory available) unless --scheduler gives
the address of an existing one, e.g. a cluster started with dask-jobqueue on SLURM. Exit code 1 when any case
failed.
"""

from __future__ import annotations

import argparse
import sys

from .progress_bar import ProgressBar
from .segment_options import add_segment_options, options_from_args

NAME = "batch"
HELP = "segment a folder of images, resumable, on a local or existing Dask cluster"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input_dir", help="folder of image files and/or DICOM series folders")
    parser.add_argument("out_dir", help="output folder (one sub-folder per case)")
    parser.add_argument("--scheduler", metavar="ADDRESS", help="existing Dask scheduler, e.g. tcp://10.0.0.5:8786")
    parser.add_argument(
        "--workers",
        type=int,
        help="local cluster workers (default: one per CPU core, or per GPU with CUDA, but no more than fit in the "
        "memory available: see WORKER_MEMORY_GB in spineinstanceseg.pipeline.batch)",
    )
    add_segment_options(parser)


def run(args: argparse.Namespace) -> int:
    # lazy: the pipeline (and torch) loads when this command runs, not when the parser is built
    from ..pipeline.batch import SUMMARY_NAME, run_batch

    options = options_from_args(args)
    with ProgressBar("batch") as bar:
        outcomes = run_batch(
            args.input_dir, args.out_dir, options, scheduler=args.scheduler, n_workers=args.workers, progress=bar
        )
    width = max([4, *(len(o.case) for o in outcomes)])
    print(f"{'case':{width}s}  {'status':8s}  {'seconds':>8s}  {'vertebrae':>9s}  {'warnings':>8s}  error")
    for o in outcomes:
        print(f"{o.case:{width}s}  {o.status:8s}  {o.seconds:8.1f}  {o.n_vertebrae:9d}  {o.n_warnings:8d}  {o.error}")
    counts = {s: sum(o.status == s for o in outcomes) for s in ("done", "skipped", "failed")}
    print(
        f"{counts['done']} done, {counts['skipped']} skipped (already finished), {counts['failed']} failed; "
        f"summary in {args.out_dir}/{SUMMARY_NAME}",
        file=sys.stderr,
    )
    return 1 if counts["failed"] else 0
