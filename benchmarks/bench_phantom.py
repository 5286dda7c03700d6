"""Benchmark the phantom generator: N lumbar cases at 1.5 mm (goal: 100 cases in under 120 s on 2 cores).

Usage::

    python benchmarks/bench_phantom.py                 # 100 CT cases, 1 process
    python benchmarks/bench_phantom.py --workers 2     # split over 2 processes (the 2-core goal)
    python benchmarks/bench_phantom.py --n 20 --write  # include writing the NIfTI/JSON files

Prints the wall time for N cases, seconds per case and the ratio to the goal scaled to N (120 s per 100 cases).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor

GOAL_S_PER_100 = 120.0


def _one_chunk(seeds: list[int], modality: str, spacing: float, region: str, out: str | None) -> int:
    # One numpy thread per process: the goal is stated per core.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from spineinstanceseg.phantom import generate_phantom, write_phantom_case

    for seed in seeds:
        case = generate_phantom(seed, modality=modality, region=region, spacing=(spacing,) * 3)
        if out is not None:
            write_phantom_case(case, out, f"bench_{seed:05d}")
    return len(seeds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100, help="number of cases (default 100)")
    parser.add_argument("--spacing", type=float, default=1.5, help="isotropic spacing in mm (default 1.5)")
    parser.add_argument("--modality", choices=("ct", "t1", "t2"), default="ct")
    parser.add_argument("--region", default="lumbar")
    parser.add_argument("--workers", type=int, default=1, help="processes (default 1)")
    parser.add_argument("--write", action="store_true", help="also write each case to a temporary folder")
    args = parser.parse_args(argv)
    seeds = list(range(args.n))
    with tempfile.TemporaryDirectory() as tmp:
        out = tmp if args.write else None
        # Warm-up (imports, first-call overheads) is not part of the measurement.
        _one_chunk([10_000], args.modality, args.spacing, args.region, out)
        start, cpu_start = time.perf_counter(), time.process_time()
        if args.workers <= 1:
            done = _one_chunk(seeds, args.modality, args.spacing, args.region, out)
        else:
            chunks = [seeds[i :: args.workers] for i in range(args.workers)]
            with ProcessPoolExecutor(args.workers) as pool:
                done = sum(
                    pool.map(
                        _one_chunk,
                        chunks,
                        [args.modality] * len(chunks),
                        [args.spacing] * len(chunks),
                        [args.region] * len(chunks),
                        [out] * len(chunks),
                    )
                )
        elapsed = time.perf_counter() - start
        cpu = time.process_time() - cpu_start
    goal = GOAL_S_PER_100 * done / 100.0
    print(
        f"{done} {args.region} {args.modality} phantoms at {args.spacing} mm, {args.workers} process(es)"
        f"{' incl. writing files' if args.write else ''}: {elapsed:.1f} s"
    )
    print(
        f"{elapsed / done:.3f} s per case; {elapsed / goal:.2f} x the goal of {goal:.0f} s "
        f"({'met' if elapsed <= goal else 'NOT met'})"
    )
    if args.workers <= 1:  # CPU time is less sensitive than wall time to other jobs on a shared machine
        print(f"CPU time of this process: {cpu:.1f} s ({cpu / done:.3f} s per case)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
