"""Write synthetic spine phantoms: image, vertebra instance labels (VerSe codes), semantic labels and centroids.

Case k uses seed S+k, so the same command always writes the same files. Each case gets
NAME_image.nii.gz, NAME_instances.nii.gz, NAME_semantic.nii.gz, NAME_centroids.json and NAME_meta.json
(plus NAME_preview.png with --preview).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import InputError
from .progress_bar import ProgressBar

NAME = "phantom"
HELP = "write synthetic spine phantoms (CT/T1/T2 image + instance/semantic labels + centroids)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # lazy: the phantom generator loads only for this command, never for `spineseg segment`
    from ..phantom import EXTRA_LEVELS, HARD_CASES, MODALITIES, REGIONS

    parser.add_argument("out", help="output folder (created if missing)")
    parser.add_argument("--n", type=int, default=1, help="number of cases (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first case (default 0)")
    parser.add_argument("--modality", choices=MODALITIES, default="ct", help="image contrast (default ct)")
    parser.add_argument("--region", choices=REGIONS, default="lumbar", help="field of view (default lumbar)")
    parser.add_argument(
        "--spacing",
        type=float,
        nargs="+",
        metavar="MM",
        help="voxel size in mm: one value (isotropic) or three (array axes); default per modality",
    )
    parser.add_argument("--oblique", type=float, default=0.0, metavar="DEG", help="tilt the grid by up to DEG degrees")
    parser.add_argument("--hard-case", choices=HARD_CASES, default=None, help="collapsed disc, fused pair or fracture")
    parser.add_argument("--extra-level", choices=EXTRA_LEVELS, default=None, help="add an L6 or a T13")
    parser.add_argument("--straight", action="store_true", help="no lordosis/kyphosis/scoliosis/rotation")
    parser.add_argument("--prefix", default="phantom", help="file name prefix (default 'phantom')")
    parser.add_argument("--preview", action="store_true", help="also write a PNG preview per case")


def run(args: argparse.Namespace) -> int:
    # lazy: the phantom generator loads only for this command, never for `spineseg segment`
    from ..phantom import generate_phantom, save_preview_png, write_phantom_case

    if args.n < 1:
        raise InputError(f"--n must be at least 1, got {args.n}", fix="pass e.g. --n 10")
    if args.seed < 0:
        raise InputError(f"--seed must be >= 0, got {args.seed}", fix="pass a non-negative seed")
    if args.spacing is not None and len(args.spacing) not in (1, 3):
        raise InputError(f"--spacing takes 1 or 3 values, got {len(args.spacing)}", fix="e.g. --spacing 1.5")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InputError("the output path exists and is not a folder", fix="pass a folder", path=out)
    spacing = None if args.spacing is None else (args.spacing * 3 if len(args.spacing) == 1 else args.spacing)
    written = []
    with ProgressBar("phantom") as bar:
        for k in range(args.n):
            seed = args.seed + k
            name = f"{args.prefix}_{args.modality}_{seed:05d}"
            bar("phantom", k / args.n, name)
            case = generate_phantom(
                seed,
                modality=args.modality,
                region=args.region,
                spacing=spacing,
                oblique_deg=args.oblique,
                hard_case=args.hard_case,
                extra_level=args.extra_level,
                curvature=not args.straight,
            )
            paths = write_phantom_case(case, out, name)
            if args.preview:
                save_preview_png(case, out / f"{name}_preview.png")
            written.append((name, case, paths))
        bar("phantom", 1.0, "done")
    for name, case, _ in written:
        levels = "-".join((case.meta["level_names"][0], case.meta["level_names"][-1])) if case.centroids else "none"
        print(f"{name}: {case.image.shape[0]}x{case.image.shape[1]}x{case.image.shape[2]} voxels, levels {levels}")
    print(f"wrote {len(written)} case(s) to {out.resolve()}")
    return 0
