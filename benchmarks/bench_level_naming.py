"""How much sacrum must be seen before levels are counted from it: level names on phantoms cut at the bottom.

Levels are counted up from the sacrum only when the sacrum pieces right below the lowest vertebra hold at least
``SACRUM_MIN_SHARE`` of a median vertebra's volume (``spineinstanceseg.pipeline.run``). Too low a bar names every
vertebra wrongly when stage 1 calls a bit of a cut lumbar vertebra "sacrum"; too high a bar leaves scans with a
cut sacrum unnamed. This benchmark measures both sides on unseen phantoms (seeds from 940000; training uses seeds
< 800000), each run whole and cut across at its bottom:

* ``mid-L4`` / ``mid-L5``: through the middle of L4 / L5 (no sacrum in view: any name counted from a "sacrum" is
  wrong);
* ``below-L5``: 4 mm under L5's lowest voxel (the L5-S1 disc; at most a sliver of sacrum);
* ``S-10mm`` / ``S-20mm``: 10 / 20 mm under L5's lowest voxel (the top of the sacrum in view).

Each crop runs through ``segment`` with the bundled models and the share rule switched off
(``SACRUM_MIN_SHARE = 0`` for the run), so that every share is seen; then each bar in ``--bars`` is applied to
the recorded shares: levels named right / wrong / unnamed per bar (a vertebra is named right when the level it
got is the phantom level that holds most of its voxels inside the phantom's bones).

Usage::

    python benchmarks/bench_level_naming.py [--cases 8] [--first-seed 940000] [--bars 0.1,0.2,0.3,0.4,0.5]
        [--json out.json] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

SETTINGS = [
    ("ct", "lumbar", (0.8, 0.8, 1.5), 0.0),
    ("t2", "lumbar", (3.5, 0.6, 0.6), 10.0),
    ("ct", "thoracolumbar", (1.0, 1.0, 3.0), 12.0),
    ("t1", "thoracolumbar", (3.5, 0.7, 0.7), 0.0),
]
L4, L5, SACRUM_CODE = 23, 24, 26


def _crop_below(case, z_mm: float):
    """The image and reference codes cut along the array axis closest to superior, keeping the slices whose
    middle lies above LPS z ``z_mm``."""
    image = case.image
    axis = int(np.argmax(np.abs(np.asarray(image.direction)[2])))
    shape = image.array.shape
    ijk = np.tile((np.asarray(shape, dtype=float) - 1) / 2, (shape[axis], 1))
    ijk[:, axis] = np.arange(shape[axis])
    keep = np.flatnonzero(image.index_to_world(ijk)[:, 2] >= z_mm)
    box = tuple(slice(int(keep.min()), int(keep.max()) + 1) if a == axis else slice(None) for a in range(3))
    return image.crop(box), np.asarray(case.instances.array)[box]


def _crops(case) -> dict:
    """Name -> (image, reference codes) for the whole phantom and the five cuts."""
    codes = np.asarray(case.instances.array)

    def heights(code: int) -> np.ndarray:
        return case.image.index_to_world(np.argwhere(codes == code))[:, 2]

    l4, l5 = heights(L4), heights(L5)
    cuts = {
        "mid-L4": float(np.median(l4)),
        "mid-L5": float(np.median(l5)),
        "below-L5": float(l5.min()) - 4.0,
        "S-10mm": float(l5.min()) - 10.0,
        "S-20mm": float(l5.min()) - 20.0,
    }
    crops = {"whole": (case.image, codes)}
    crops.update({name: _crop_below(case, z) for name, z in cuts.items()})
    return crops


def _score_names(result, reference: np.ndarray) -> tuple[int, int]:
    """(right, wrong) level names of the result's vertebrae against the phantom's codes: a name is right when it
    is the level that holds most of the instance's voxels inside the phantom's bones (the remains of a vertebra cut
    by the edge may be mostly background); an instance on no bone that carries a name is wrong."""
    out = np.asarray(result.instances.array)
    right = wrong = 0
    for record in result.vertebrae:
        if record.level_code is None:
            continue
        on_bone = reference[out == record.label]
        on_bone = on_bone[on_bone > 0]
        level = np.bincount(on_bone).argmax() if on_bone.size else None
        right += int(level == record.level_code)
        wrong += int(level != record.level_code)
    return right, wrong


def run(n_cases: int, first_seed: int) -> list[dict]:
    import spineinstanceseg.pipeline.run as pipeline_run
    from spineinstanceseg.phantom import generate_phantom
    from spineinstanceseg.pipeline import segment
    from spineinstanceseg.stage1.sources import bundled_source
    from spineinstanceseg.stage2.model import load_bundled_model

    stage1, stage2 = bundled_source(device="cpu", use_mirroring=False), load_bundled_model(device="cpu")
    seen: dict[str, float | None] = {}
    measure = pipeline_run._sacrum_below_ml

    def recording(semantic, instances, lowest_label):
        seen["sacrum_ml"] = measure(semantic, instances, lowest_label)
        return seen["sacrum_ml"]

    pipeline_run._sacrum_below_ml, pipeline_run.SACRUM_MIN_SHARE = recording, 0.0
    rows = []
    for k in range(n_cases):
        modality, region, spacing, tilt = SETTINGS[k % len(SETTINGS)]
        case = generate_phantom(first_seed + k, modality=modality, region=region, spacing=spacing, oblique_deg=tilt)
        for crop, (image, reference) in _crops(case).items():
            seen.clear()
            result = segment(image, stage1=stage1, stage2=stage2, device="cpu")
            right, wrong = _score_names(result, reference)
            vertebra_ml = float(np.median([v.volume_ml for v in result.vertebrae])) if result.vertebrae else np.nan
            sacrum_ml = seen.get("sacrum_ml")
            row = {
                "case": f"{first_seed + k} {modality} {region}",
                "crop": crop,
                "vertebrae": len(result.vertebrae),
                "true_sacrum_ml": float(np.count_nonzero(reference == SACRUM_CODE) * image.voxel_volume_mm3 / 1e3),
                "share": None if sacrum_ml is None else sacrum_ml / vertebra_ml,
                "named": result.levels_known,
                "right": right,
                "wrong": wrong,
            }
            rows.append(row)
            share = "-" if row["share"] is None else f"{row['share']:.3f}"
            print(f"| {row['case']} | {crop} | {row['vertebrae']} | {row['true_sacrum_ml']:.1f} | {share} | "
                  f"{right} | {wrong} |", flush=True)  # fmt: skip
    return rows


def summary(rows: list[dict], bars: list[float]) -> list[dict]:
    """Per bar: vertebrae named right / wrong / unnamed, and the crops named wrongly."""
    out = []
    for bar in bars:
        right = wrong = unnamed = 0
        wrong_crops = []
        for row in rows:
            counted = row["named"] and row["share"] is not None and row["share"] >= bar
            right += row["right"] if counted else 0
            wrong += row["wrong"] if counted else 0
            unnamed += row["vertebrae"] - (row["right"] + row["wrong"] if counted else 0)
            if counted and row["wrong"]:
                wrong_crops.append(f"{row['case']} {row['crop']}")
        out.append({"bar": bar, "right": right, "wrong": wrong, "unnamed": unnamed, "wrong_crops": wrong_crops})
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=8, help="phantoms (each run whole and cut five ways)")
    parser.add_argument("--first-seed", type=int, default=940000, help="seed of the first phantom")
    parser.add_argument("--bars", default="0.1,0.2,0.3,0.4,0.5", help="sacrum shares to try, comma-separated")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows and the summary here")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch

    torch.set_num_threads(max(1, args.threads))
    print("| phantom | crop | vertebrae | true sacrum in view, mL | sacrum share below the lowest | named right | "
          "named wrong |\n|---|---|---|---|---|---|---|")  # fmt: skip
    rows = run(args.cases, args.first_seed)
    bars = [float(b) for b in args.bars.split(",")]
    table = summary(rows, bars)
    print("\n| bar (SACRUM_MIN_SHARE) | named right | named wrong | unnamed | crops named wrongly |")
    print("|---|---|---|---|---|")
    for t in table:
        print(f"| {t['bar']:g} | {t['right']} | {t['wrong']} | {t['unnamed']} | {'; '.join(t['wrong_crops']) or '-'} |")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "summary": table}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
