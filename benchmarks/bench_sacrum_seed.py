"""How right the sacrum seed is (``spineinstanceseg.conventions.sacrum_seed``) on CT phantoms whose sacrum and L5-S1
disc are known, and what it finds under the real VerSe masks (where ``../shared/data/real-ct`` is present).

Prints per phantom (seeds 1000..1000+N-1, lumbar and thoracolumbar in turn, 1.0-2.0 mm in-plane, 1.0-3.0 mm slices,
tilt 0-15 deg; the true sacrum removed from the mask): found S1 voxels, their precision and the fraction of the
sacrum they cover; derived L5-S1 disc voxels, precision and recall against the true disc; seconds.

Usage:
    python benchmarks/bench_sacrum_seed.py [--cases 8]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

from spineinstanceseg.conventions.sacrum_seed import derive_sacrum_seed
from spineinstanceseg.io import read_label_map, read_volume
from spineinstanceseg.phantom import generate_phantom
from spineinstanceseg.semantic import DISC

REAL_CT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real-ct"


def phantom_row(k: int) -> str:
    rng = np.random.default_rng([k, 11])
    spacing = (float(rng.uniform(1.0, 2.0)),) * 2 + (float(rng.uniform(1.0, 3.0)),)
    case = generate_phantom(1000 + k, modality="ct", region=("lumbar", "thoracolumbar")[k % 2], spacing=spacing,
                            oblique_deg=float(rng.uniform(0, 15)))  # fmt: skip
    labels, semantic = np.asarray(case.instances.array), np.asarray(case.semantic.array)
    sacrum = labels == 26
    t = time.perf_counter()
    found = derive_sacrum_seed(case.image, case.instances.with_array(np.where(sacrum, 0, labels).astype(np.int16)))
    seconds = time.perf_counter() - t
    sp = np.asarray(case.image.spacing)
    nearer_sacrum = ndimage.distance_transform_edt(~sacrum, sampling=sp) < ndimage.distance_transform_edt(
        labels != 23, sampling=sp
    )
    disc = (semantic == DISC) & nearer_sacrum
    hit_s, hit_d = np.count_nonzero(found.sacrum & sacrum), np.count_nonzero(found.disc & disc)
    return (f"| {1000 + k} | {np.round(spacing, 1).tolist()} | {found.sacrum.sum()} | "
            f"{hit_s / max(1, found.sacrum.sum()):.3f} | {hit_s / sacrum.sum():.3f} | {found.disc.sum()} | "
            f"{hit_d / max(1, found.disc.sum()):.3f} | {hit_d / max(1, disc.sum()):.3f} | {seconds:.1f} |")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=8)
    args = parser.parse_args()
    print("| seed | spacing mm | S1 voxels | precision | sacrum covered | disc voxels | precision | recall | s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for k in range(args.cases):
        print(phantom_row(k), flush=True)
    for case in ("sub-verse005", "sub-verse006", "sub-verse008", "sub-verse012"):
        if (REAL_CT / f"{case}_ct.nii.gz").is_file():
            found = derive_sacrum_seed(read_volume(REAL_CT / f"{case}_ct.nii.gz"),
                                       read_label_map(REAL_CT / f"{case}_seg-vert_msk.nii.gz"))  # fmt: skip
            print(f"{case}: mask ends at {found.lowest or 'not L5/L6'}; S1 voxels {found.sacrum.sum()}, "
                  f"L5-S1 disc voxels {found.disc.sum()}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
