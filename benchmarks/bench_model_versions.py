"""Whole-pipeline CPU time of two model versions, measured in the same run: is the new one slower?

Usage::

    python benchmarks/bench_model_versions.py --baseline-stage1 OLD1 --baseline-stage2 OLD2 \\
        [--candidate-stage1 NEW1 --candidate-stage2 NEW2] [--cases 4] [--repeats 2] [--threads 2]
        [--mirroring auto|on|off]

The candidate defaults to the bundled models. Each case (lumbar and thoracolumbar CT and MRI phantoms, plus the real
CTs of ../shared/data/real-ct when present) is segmented by both versions in turn, ``--repeats`` times, after one
warm-up run each; the script prints the median seconds per case and version and the ratio candidate / baseline of
the summed medians (the issue's budget: at most 1.25). Each model's own inference defaults apply (test-time
mirroring as its card says), since that is what a user gets.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
REAL_CT = REPO.parent / "shared" / "data" / "real-ct"
GOAL_RATIO = 1.25


def _cases(n: int):
    from spineinstanceseg.io import read_volume
    from spineinstanceseg.phantom import generate_phantom

    kinds = [("ct", "lumbar", (1.5, 1.5, 2.0)), ("t2", "lumbar", (3.5, 1.2, 1.2)),
             ("ct", "thoracolumbar", (1.2, 1.2, 1.5)), ("t1", "thoracolumbar", (3.5, 1.2, 1.2))]  # fmt: skip
    out = []
    for k, (modality, region, spacing) in enumerate(kinds[:n]):
        case = generate_phantom(960000 + k, modality=modality, region=region, spacing=spacing)
        out.append((f"phantom {modality} {region}", case.image))
    for path in sorted(REAL_CT.glob("*_ct.nii.gz")):
        out.append((path.name[: -len("_ct.nii.gz")], read_volume(path)))
    return out


_MIRRORING = {"auto": None, "on": True, "off": False}


def _models(stage1: Path | None, stage2: Path | None, *, mirroring: str = "auto"):
    from spineinstanceseg.stage1.sources import NnUNetSource, bundled_source
    from spineinstanceseg.stage2.model import Stage2Model, load_bundled_model

    mirror = _MIRRORING[mirroring]
    source = (
        NnUNetSource(stage1, device="cpu", use_mirroring=mirror)
        if stage1
        else bundled_source(device="cpu", use_mirroring=mirror)
    )
    model = Stage2Model.load(stage2, device="cpu") if stage2 else load_bundled_model(device="cpu")
    return source, model


def _seconds(image, models) -> float:
    from spineinstanceseg.errors import NoSpineFoundError
    from spineinstanceseg.pipeline import segment

    t = time.perf_counter()
    try:
        segment(image, stage1=models[0], stage2=models[1], device="cpu")
    except NoSpineFoundError:
        pass  # a version that finds no spine still spent its time
    return time.perf_counter() - t


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline-stage1", type=Path, required=True)
    parser.add_argument("--baseline-stage2", type=Path, required=True)
    parser.add_argument("--candidate-stage1", type=Path, help="default: the bundled stage-1 model")
    parser.add_argument("--candidate-stage2", type=Path, help="default: the bundled stage-2 model")
    parser.add_argument("--cases", type=int, default=4, help="phantom cases (up to 4), plus the real CTs")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--mirroring", choices=sorted(_MIRRORING), default="auto", help="stage-1 test-time mirroring of both versions"
    )
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(max(1, args.threads))
    versions = {
        "baseline": _models(args.baseline_stage1, args.baseline_stage2, mirroring=args.mirroring),
        "candidate": _models(args.candidate_stage1, args.candidate_stage2, mirroring=args.mirroring),
    }
    cases = _cases(args.cases)
    totals = dict.fromkeys(versions, 0.0)
    print(f"{'case':<28} {'baseline s':>11} {'candidate s':>12} {'ratio':>6}")
    for name, image in cases:
        medians = {}
        for version, models in versions.items():
            _seconds(image, models)  # warm-up
            medians[version] = float(np.median([_seconds(image, models) for _ in range(args.repeats)]))
            totals[version] += medians[version]
        print(f"{name:<28} {medians['baseline']:>11.1f} {medians['candidate']:>12.1f} "
              f"{medians['candidate'] / medians['baseline']:>6.2f}", flush=True)  # fmt: skip
    ratio = totals["candidate"] / totals["baseline"]
    verdict = "within" if ratio <= GOAL_RATIO else "over"
    print(f"{'total':<28} {totals['baseline']:>11.1f} {totals['candidate']:>12.1f} {ratio:>6.2f} "
          f"({verdict} the budget of {GOAL_RATIO})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
