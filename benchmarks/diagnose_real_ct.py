"""Where the real-CT loss comes from: stage-1 mask, its resolution, its alignment, or stage 2's split of it.

Reads the outputs that ``benchmarks/bench_real_scans.py --save DIR`` wrote (``<case>_semantic.nii.gz``,
``<case>_instances.nii.gz``) and the manual masks in ``../shared/data/real-ct``, and prints per case:

* **stage-1 Dice** of the vertebra class against the union of the manual vertebrae (whole grid);
* **best shift**: the highest Dice of the same mask rolled by +-1 or +-2 voxels along one axis (a geometry offset
  would show here as a shift that beats 0);
* **2 mm ceiling**: Dice of the manual union after resampling to 2 mm isotropic and back (linear, threshold 0.5):
  what stage 1's working spacing allows at best;
* per vertebra, **ideal / got**: Dice of "every stage-1 vertebra voxel given to the nearest manual vertebra" (the
  best any split of this stage-1 mask can do) against the Dice of the stage-2 instance that overlaps it most.

Usage:
    python benchmarks/diagnose_real_ct.py SAVE_DIR [--cases sub-verse005,...]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from spineinstanceseg.io import read_label_map, volume_to_sitk
from spineinstanceseg.semantic import VERTEBRA

REAL_CT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real-ct"
CASES = ("sub-verse005", "sub-verse006", "sub-verse008", "sub-verse012")


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * np.count_nonzero(a & b) / max(1, np.count_nonzero(a) + np.count_nonzero(b)))


def best_shift(pred: np.ndarray, truth: np.ndarray) -> tuple[float, str]:
    shifted = {(axis, s): dice(np.roll(pred, s, axis=axis), truth) for axis in range(3) for s in (-2, -1, 1, 2)}
    (axis, s), value = max(shifted.items(), key=lambda item: item[1])
    return value, f"axis {axis} {s:+d}"


def resampling_ceiling(truth_volume, spacing_mm: float = 2.0) -> float:
    image = sitk.Cast(
        volume_to_sitk(truth_volume.with_array((truth_volume.array > 0).astype(np.uint8))), sitk.sitkFloat32
    )
    size = [int(round(n * s / spacing_mm)) + 1 for n, s in zip(image.GetSize(), image.GetSpacing(), strict=True)]
    low = sitk.Resample(image, size, sitk.Transform(), sitk.sitkLinear, image.GetOrigin(), (spacing_mm,) * 3,
                        image.GetDirection(), 0.0)  # fmt: skip
    back = sitk.GetArrayFromImage(sitk.Resample(low, image, sitk.Transform(), sitk.sitkLinear, 0.0)) > 0.5
    return dice(back, sitk.GetArrayFromImage(image) > 0.5)


def ideal_and_got(truth: np.ndarray, stage1: np.ndarray, instances: np.ndarray) -> list[str]:
    nearest = truth[tuple(ndimage.distance_transform_edt(truth == 0, return_distances=False, return_indices=True))]
    out = []
    for label in np.unique(truth[truth > 0]):
        mine = truth == label
        labels, counts = np.unique(instances[mine & (instances > 0)], return_counts=True)
        got = dice(instances == labels[np.argmax(counts)], mine) if len(labels) else 0.0
        out.append(f"{label}: {dice(stage1 & (nearest == label), mine):.2f}/{got:.2f}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("save", type=Path, help="the --save folder of bench_real_scans.py")
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated case names")
    args = parser.parse_args(argv)
    if not REAL_CT.is_dir():
        parser.error(f"{REAL_CT} is missing: this diagnosis needs the shared real CTs")
    print("| case | stage-1 Dice | best shift | 2 mm ceiling | per vertebra: ideal split / stage 2 |")
    print("|---|---|---|---|---|")
    for case in args.cases.split(","):
        truth_volume = read_label_map(REAL_CT / f"{case}_seg-vert_msk.nii.gz")
        truth = np.asarray(truth_volume.array)
        stage1 = np.asarray(read_label_map(args.save / f"{case}_semantic.nii.gz").array) == VERTEBRA
        instances = np.asarray(read_label_map(args.save / f"{case}_instances.nii.gz").array)
        shift, where = best_shift(stage1, truth > 0)
        split = "; ".join(ideal_and_got(truth, stage1, instances))
        print(f"| {case} | {dice(stage1, truth > 0):.3f} | {shift:.3f} ({where}) | "
              f"{resampling_ceiling(truth_volume):.3f} | {split} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
