"""Stage 1 on a CT whose corners outside the reconstruction circle hold the scanner's padding value.

Usage::

    python benchmarks/bench_ct_padding.py [--stage1-model DIR] [--threads 2]

A held-out lumbar CT phantom (1.6 x 1.6 x 2.5 mm, tilted 12 degrees) is put in the middle of a field of view twice
as wide, filled with air (-1000 HU, noise 20); the reference run is that image as it is. The same image is then
run with everything outside the inscribed circle set to -2048 and to -3024 HU, as scanners write it. For each the
script prints stage 1's vertebra Dice inside the original field, the voxels labelled outside it, the seconds, and
the ratio of the seconds to the reference run (same process, same model). Without the padding step of
``spineinstanceseg.stage1.air`` (commit 39f3dad, stage1_v4, 2-core CPU, one thread): Dice 0.948 / 0.938 / 0.923
and 22 / 106 / 109 s.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np


def _wide_ct():
    """(phantom, the phantom in a 2x wider field of air, the index box of the original field in it)."""
    from spineinstanceseg.phantom import generate_phantom
    from spineinstanceseg.volume import Volume

    case = generate_phantom(930000, modality="ct", region="lumbar", spacing=(1.6, 1.6, 2.5), oblique_deg=12.0)
    shape = np.asarray(case.image.shape)
    lo = np.array([shape[0] // 2, shape[1] // 2, 0])
    rng = np.random.default_rng(0)
    wide = (-1000.0 + rng.normal(0.0, 20.0, (2 * shape[0], 2 * shape[1], shape[2]))).astype(np.float32)
    inner = tuple(slice(int(a), int(a + s)) for a, s in zip(lo, shape, strict=True))
    wide[inner] = case.image.array
    origin = tuple(case.image.index_to_world(-lo.astype(float)))
    return case, Volume(wide, case.image.spacing, origin, case.image.direction), inner


def _outside_circle(shape) -> np.ndarray:
    """(nx, ny, 1) mask of the in-plane voxels outside the circle inscribed in the grid."""
    x, y = np.meshgrid(np.linspace(-1.0, 1.0, shape[0]), np.linspace(-1.0, 1.0, shape[1]), indexing="ij")
    return (x**2 + y**2 > 1.0)[:, :, None]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage1-model", type=Path, help="nnU-Net model folder (default: the bundled one)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args(argv)

    import torch

    from spineinstanceseg.metrics import dice
    from spineinstanceseg.progress import Progress
    from spineinstanceseg.semantic import VERTEBRA
    from spineinstanceseg.stage1.sources import NnUNetSource, bundled_source

    torch.set_num_threads(max(1, args.threads))
    source = NnUNetSource(args.stage1_model, device="cpu") if args.stage1_model else bundled_source(device="cpu")
    case, wide, inner = _wide_ct()
    truth = np.asarray(case.semantic.array) == VERTEBRA
    outside = _outside_circle(wide.shape)
    print(f"stage 1: {source.description}; {outside.mean():.2f} of each slice lies outside the circle")
    print(f"{'outside the circle':<22} {'vertebra Dice':>13} {'labelled outside':>16} {'s':>6} {'ratio':>6}")
    reference_seconds = None
    for name, value in (("air (reference)", None), ("padding -2048 HU", -2048.0), ("padding -3024 HU", -3024.0)):
        array = np.asarray(wide.array).copy()
        if value is not None:
            array[np.broadcast_to(outside, array.shape)] = value
        start = time.perf_counter()
        semantic, _ = source.predict(wide.with_array(array), progress=Progress(None))
        seconds = time.perf_counter() - start
        reference_seconds = reference_seconds or seconds
        labels = np.asarray(semantic.array)
        stray = int(np.count_nonzero(labels)) - int(np.count_nonzero(labels[inner]))
        print(f"{name:<22} {dice(labels[inner] == VERTEBRA, truth):>13.3f} {stray:>16d} {seconds:>6.1f} "
              f"{seconds / reference_seconds:>6.2f}", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
