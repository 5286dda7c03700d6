"""Stage-1 predictions paired with the true vertebrae: stage-2 training inputs that look like real stage-1 output.

Usage:
    python scripts/make_stage1_predictions.py --stage1-model DIR --out PAIRS [--seeds 700000:700040] [--threads 2]

For every phantom seed (CT, T1 and T2 in turn; lumbar, thoracolumbar and whole spines; tilted, anisotropic; a share of
hard cases) the stage-1 model's semantic prediction is written as ``PAIRS/<name>_semantic.nii.gz`` next to the
phantom's true instance map ``PAIRS/<name>_instances.nii.gz`` (VerSe codes, sacrum 26), on one grid. The stage-1
model must not have trained on these seeds (the bundled training uses seeds 0..N-1; pick seeds far from them).
``scripts/train_bundled_stage2.py --predicted PAIRS`` trains on them: the input is what stage 1 really produced
(merged bodies, bleeding into discs, missing posterior elements, false bone), the target the true vertebra of each
predicted vertebra voxel. Rerunning skips pairs already written.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REGIONS = ("lumbar", "thoracolumbar", "whole")
HARD = (None, None, "collapsed_disc", "fused", "wedge_fracture")


def phantom(seed: int):
    from spineinstanceseg.phantom import generate_phantom

    rng = np.random.default_rng([seed, 23])
    modality = ("ct", "t1", "t2")[seed % 3]
    region = REGIONS[(seed // 3) % len(REGIONS)]
    hard = HARD[(seed // 9) % len(HARD)]
    if modality == "ct":
        spacing = (float(rng.uniform(0.8, 1.6)),) * 2 + (float(rng.uniform(1.0, 3.0)),)
    else:
        spacing = (float(rng.uniform(3.0, 4.5)), float(rng.uniform(0.8, 1.5)), float(rng.uniform(0.8, 1.5)))
    case = generate_phantom(seed, modality=modality, region=region, spacing=spacing, hard_case=hard,
                            oblique_deg=float(rng.uniform(0, 15)))  # fmt: skip
    return case, f"phantom{seed}-{modality}-{region}-{hard}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage1-model", type=Path, required=True, help="nnU-Net model folder (not trained on seeds)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the (semantic, instances) pairs")
    parser.add_argument("--seeds", default="700000:700040", help="first:last (exclusive) phantom seeds")
    parser.add_argument("--mirroring", action="store_true", help="stage-1 test-time mirroring (8x slower)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)

    import torch

    from spineinstanceseg.io import write_volume
    from spineinstanceseg.progress import Progress
    from spineinstanceseg.stage1.sources import NnUNetSource

    torch.set_num_threads(max(1, args.threads))
    source = NnUNetSource(args.stage1_model, device="cpu", use_mirroring=args.mirroring)
    args.out.mkdir(parents=True, exist_ok=True)
    first, last = (int(v) for v in args.seeds.split(":"))
    for seed in range(first, last):
        case, name = phantom(seed)
        if (args.out / f"{name}_semantic.nii.gz").is_file():
            continue
        t = time.perf_counter()
        predicted, _ = source.predict(case.image, progress=Progress())
        write_volume(case.instances, args.out / f"{name}_instances.nii.gz")
        write_volume(predicted, args.out / f"{name}_semantic.nii.gz")  # written last: marks the pair complete
        sys.stdout.write(f"{name}: {time.perf_counter() - t:.0f} s\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
