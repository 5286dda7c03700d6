"""Stage 1 on CTs whose corners outside the reconstruction circle hold the scanner's padding value.

Usage::

    python benchmarks/bench_ct_padding.py [--stage1-model DIR] [--threads 2] [--no-real]

Each CT is put in the middle of a field of view twice as wide, filled with air (-1000 HU, noise 20); the reference
run is that image as it is. The same image is then run with everything outside the inscribed circle set to -2048
and to -3024 HU, as scanners write it. The CTs: a held-out lumbar CT phantom (1.6 x 1.6 x 2.5 mm, tilted 12
degrees) and, when ``../shared/data/real-ct`` is there, its four real CTs, whose fields of view cut through the
body (the air beyond such an edge is where a network may reach out). For each the script prints stage 1's
vertebra Dice inside the original field (real CTs: against the manual mask, so an unlabelled vertebra in view
counts against it in every run alike; the bundled model trained on these four CTs, so the Dice compares the runs
and is no score), the voxels labelled outside the original field, the seconds, and their ratio to the reference run
(same process, same model).

Measured 2026-12-06 on the 2-core CPU (one thread, a training beside it), stage1_v4 given as the model, without the
air steps of ``spineinstanceseg.stage1.air`` (the library at commit 17e807f) -> with them: voxels labelled in the
air beyond the cut edge of the real CTs 1763 / 2951 / 1659 / 0 -> 0 / 0 / 0 / 0 (phantom 36 -> 0); with -3024 HU
outside the circle, Dice 0.922 / 0.866 / 0.822 / 0.878 / 0.776 (phantom, 005, 006, 008, 012) -> the reference
run's 0.948 / 0.885 / 0.827 / 0.894 / 0.781, and 4.1-5.6x the reference run's seconds -> 0.74-1.09x.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REAL_CT = Path(__file__).resolve().parents[2] / "shared" / "data" / "real-ct"


def _cases(real: bool):
    """(name, CT, vertebra mask) of the phantom and, with ``real``, the real CTs."""
    from spineinstanceseg.io import read_label_map, read_volume
    from spineinstanceseg.phantom import generate_phantom
    from spineinstanceseg.semantic import VERTEBRA

    case = generate_phantom(930000, modality="ct", region="lumbar", spacing=(1.6, 1.6, 2.5), oblique_deg=12.0)
    yield "phantom 930000", case.image, np.asarray(case.semantic.array) == VERTEBRA
    for path in sorted(REAL_CT.glob("*_ct.nii.gz")) if real else []:
        name = path.name[: -len("_ct.nii.gz")]
        mask = read_label_map(REAL_CT / f"{name}_seg-vert_msk.nii.gz")
        yield name, read_volume(path), np.asarray(mask.array) > 0


def _widened(image):
    """(``image`` in the middle of a field of air twice as wide in x and y, the index box of ``image`` in it)."""
    from spineinstanceseg.volume import Volume

    shape = np.asarray(image.shape)
    lo = np.array([shape[0] // 2, shape[1] // 2, 0])
    rng = np.random.default_rng(0)
    wide = (-1000.0 + rng.normal(0.0, 20.0, (2 * shape[0], 2 * shape[1], shape[2]))).astype(np.float32)
    inner = tuple(slice(int(a), int(a + s)) for a, s in zip(lo, shape, strict=True))
    wide[inner] = image.array
    origin = tuple(image.index_to_world(-lo.astype(float)))
    return Volume(wide, image.spacing, origin, image.direction), inner


def _outside_circle(shape) -> np.ndarray:
    """(nx, ny, 1) mask of the in-plane voxels outside the circle inscribed in the grid."""
    x, y = np.meshgrid(np.linspace(-1.0, 1.0, shape[0]), np.linspace(-1.0, 1.0, shape[1]), indexing="ij")
    return (x**2 + y**2 > 1.0)[:, :, None]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage1-model", type=Path, help="nnU-Net model folder (default: the bundled one)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--no-real", action="store_true", help="the phantom only (not the real CTs)")
    args = parser.parse_args(argv)

    import torch

    from spineinstanceseg.metrics import dice
    from spineinstanceseg.progress import Progress
    from spineinstanceseg.semantic import VERTEBRA
    from spineinstanceseg.stage1.sources import NnUNetSource, bundled_source

    torch.set_num_threads(max(1, args.threads))
    source = NnUNetSource(args.stage1_model, device="cpu") if args.stage1_model else bundled_source(device="cpu")
    print(f"stage 1: {source.description}")
    print(
        f"{'case':<16} {'outside the circle':<18} {'vertebra Dice':>13} {'labelled outside':>16} {'s':>6} {'ratio':>6}"
    )
    for case, image, truth in _cases(not args.no_real):
        wide, inner = _widened(image)
        outside = np.broadcast_to(_outside_circle(wide.shape), wide.shape)
        reference_seconds = None
        for name, value in (("air (reference)", None), ("-2048 HU", -2048.0), ("-3024 HU", -3024.0)):
            array = np.asarray(wide.array, dtype=np.float32).copy()
            if value is not None:
                array[outside] = value
            start = time.perf_counter()
            semantic, _ = source.predict(wide.with_array(array), progress=Progress(None))
            seconds = time.perf_counter() - start
            reference_seconds = reference_seconds or seconds
            labels = np.asarray(semantic.array)
            stray = int(np.count_nonzero(labels)) - int(np.count_nonzero(labels[inner]))
            print(f"{case:<16} {name:<18} {dice(labels[inner] == VERTEBRA, truth):>13.3f} {stray:>16d} "
                  f"{seconds:>6.1f} {seconds / reference_seconds:>6.2f}", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
