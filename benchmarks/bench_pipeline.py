"""Benchmark the whole pipeline on CPU: where the time goes, how it scales, peak memory, and what stage 2 adds.

Prints, for the bundled models (or the ones given):

1. **Time per step** on a lumbar CT phantom: stage 1, stage 2 (per vertebra), fusion, the whole ``segment`` call,
   and the overhead ratio ``whole pipeline / stage 1`` (goal <= 1.25: the instance step should cost little next
   to the semantic segmentation it builds on). Then stage 2 again on the same mask, upright windows only and with
   the pitch search (``stage2.window_pitch``), and the factor the search adds to the whole pipeline.
2. **Scaling**: a whole spine (24 vertebrae) against the lowest 8 vertebrae cropped out of the same image; the
   ratio of the whole-pipeline times (goal: linear, <= 3.3).
3. **Peak memory** (maximum resident set size of a fresh process) for one large CT-sized volume: a whole-spine
   phantom at 0.8 x 0.8 x 1.0 mm padded with air to 512 x 512 voxels per slice.
4. **Accuracy** on held-out phantom seeds (CT and MRI, oblique, anisotropic): stage 1 followed by connected
   components of its vertebra mask, against the two-stage pipeline on the same stage-1 output. The stage-1 Dice
   of the vertebra and sacrum classes shows what the instances are built from (a model that loses the sacrum
   class hands stage 2 a sacrum called vertebra, which becomes false vertebrae). Two more columns
   split the reference vertebrae: *whole* ones (inside the field of view: found / mean Dice) and the ones *cut* by
   an edge of the volume (found / in view, and in brackets the same for those with at least a quarter of a
   vertebra in view), which is where the phantoms lose most. The last column gives each false positive and false
   negative of the pipeline as ``segment`` runs it (with the CT bone boundary step) with its cause
   (``spineinstanceseg.metrics.error_causes``: split, merged, not spine, cut at the edge, missed by stage 1).

Usage::

    python benchmarks/bench_pipeline.py [--stage1-model DIR] [--stage2-model DIR] [--mirroring auto|on|off]
        [--threads 2] [--cases 6] [--skip large,accuracy] [--first-seed 920000]

Numbers depend on the machine; compare ratios measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

GOAL_OVERHEAD = 1.25
GOAL_SCALING = 3.3
PARTS = ("timing", "scaling", "large", "accuracy")
LARGE_CUT_SHARE = 0.25  # a cut vertebra with at least this share of the whole one beside it in view is counted apart


_MIRRORING = {"auto": None, "on": True, "off": False}


def _load_models(stage1_model: str | None, device: str, mirroring: str = "auto", stage2_model: str | None = None):
    from spineinstanceseg.stage1.sources import NnUNetSource, bundled_source
    from spineinstanceseg.stage2.model import Stage2Model, load_bundled_model

    mirror = _MIRRORING[mirroring]
    if stage1_model is None:
        stage1 = bundled_source(device=device, use_mirroring=mirror)
    else:
        stage1 = NnUNetSource(stage1_model, device=device, use_mirroring=mirror)
    if stage2_model is None:
        return stage1, load_bundled_model(device=device)
    return stage1, Stage2Model.load(stage2_model, device=device)


def _run(image, stage1, stage2, *, bone_boundary: bool | None = None):
    from spineinstanceseg.pipeline import segment

    t = time.perf_counter()
    result = segment(image, stage1=stage1, stage2=stage2, device="cpu", bone_boundary=bone_boundary)
    return result, time.perf_counter() - t


def _crop_to_lowest(image, instances, n_keep: int):
    """``image`` cut along its superior axis to its lowest ``n_keep`` vertebrae (5 mm margin), the in-plane field
    of view unchanged: the two cases then differ in spine length only, as a lumbar scan differs from a whole-spine
    scan of the same patient."""
    from scipy import ndimage

    from spineinstanceseg.volume import Volume

    inst = np.asarray(instances.array)
    labels = [int(v) for v in np.unique(inst) if 0 < v < 26]
    cents = np.asarray(ndimage.center_of_mass(np.ones(inst.shape), inst, labels)).reshape(-1, 3)
    keep = [labels[i] for i in np.argsort(image.index_to_world(cents)[:, 2])[:n_keep]]
    axis = int(np.argmax(np.abs(np.asarray(image.direction)[2])))  # array axis closest to superior
    along = np.nonzero(np.isin(inst, keep).any(axis=tuple(a for a in range(3) if a != axis)))[0]
    margin = int(np.ceil(5.0 / image.spacing[axis]))
    lo, hi = max(int(along.min()) - margin, 0), min(int(along.max()) + margin + 1, inst.shape[axis])
    box = tuple(slice(lo, hi) if a == axis else slice(None) for a in range(3))
    corner = np.zeros(3)
    corner[axis] = lo
    return Volume(
        np.ascontiguousarray(np.asarray(image.array)[box]), image.spacing, image.index_to_world(corner), image.direction
    )


def timing(stage1, stage2) -> dict:
    from spineinstanceseg.phantom import generate_phantom

    case = generate_phantom(910000, modality="ct", region="lumbar")
    _run(case.image, stage1, stage2)  # warm-up: first calls pay for lazy imports and allocator growth
    result, total = _run(case.image, stage1, stage2)
    t = result.timings
    n = len(result.vertebrae)
    row = {
        "case": f"lumbar CT phantom {case.image.shape} at {tuple(round(s, 2) for s in case.image.spacing)} mm",
        "vertebrae": n,
        "stage1_s": t["stage1"],
        "stage2_s": t["stage2"],
        "stage2_per_vertebra_ms": 1000 * t["stage2"] / max(n, 1),
        "stage2_network_per_window_ms": 1000 * t.get("stage2_network", 0.0) / max(n, 1),
        "fusion_ms": 1000 * t.get("stage2_fusion", 0.0),
        "bone_boundary_ms": 1000 * t.get("bone_boundary", 0.0),
        "total_s": total,
        "overhead_ratio": total / t["stage1"],
    }
    print(f"1. time per step: {row['case']}, {n} vertebrae")
    print(f"   stage 1 {row['stage1_s']:.2f} s | stage 2 {row['stage2_s']:.2f} s "
          f"({row['stage2_per_vertebra_ms']:.0f} ms/vertebra, network {row['stage2_network_per_window_ms']:.0f} "
          f"ms/window) | fusion {row['fusion_ms']:.0f} ms | bone boundary {row['bone_boundary_ms']:.0f} ms | "
          f"whole {total:.2f} s")  # fmt: skip
    verdict = "meets" if row["overhead_ratio"] <= GOAL_OVERHEAD else "misses"
    print(f"   overhead ratio (whole / stage 1): {row['overhead_ratio']:.2f} ({verdict} the goal <= {GOAL_OVERHEAD})")
    row.update(_pitch_search_cost(result.semantic, stage2, total))
    return row


def _pitch_search_cost(semantic, stage2, total_s: float) -> dict:
    """Stage 2 on the same mask with and without the pitch search (stage2.window_pitch), and what the search adds
    to the whole pipeline: ``total / (total - stage 2 with + stage 2 without)``."""
    from spineinstanceseg.stage2.predict import split_instances
    from spineinstanceseg.stage2.window_pitch import DEFAULT_PITCH_SEARCH, UPRIGHT_ONLY

    seconds = {}
    for name, pitch in (("upright", UPRIGHT_ONLY), ("pitch", DEFAULT_PITCH_SEARCH)):
        t = time.perf_counter()
        split_instances(semantic, model=stage2, pitch=pitch)
        seconds[name] = time.perf_counter() - t
    ratio = total_s / (total_s - seconds["pitch"] + seconds["upright"])
    print(f"   stage 2 upright only {seconds['upright']:.2f} s, with the pitch search {seconds['pitch']:.2f} s: "
          f"whole pipeline x{ratio:.2f} for the search")  # fmt: skip
    return {"stage2_upright_s": seconds["upright"], "stage2_pitch_s": seconds["pitch"], "pitch_search_ratio": ratio}


def scaling(stage1, stage2) -> dict:
    from spineinstanceseg.phantom import generate_phantom

    case = generate_phantom(910001, modality="ct", region="whole", spacing=(1.5, 1.5, 2.0))
    small = _crop_to_lowest(case.image, case.instances, 8)
    _, t8 = _run(small, stage1, stage2)
    big_result, t24 = _run(case.image, stage1, stage2)
    small_result, t8 = _run(small, stage1, stage2)
    row = {
        "n_big": len(big_result.vertebrae),
        "n_small": len(small_result.vertebrae),
        "voxel_ratio": float(np.prod(case.image.shape)) / float(np.prod(small.shape)),
        "seconds_big": t24,
        "seconds_small": t8,
        "ratio": t24 / t8,
        "stage2_ratio": big_result.timings["stage2"] / small_result.timings["stage2"],
    }
    verdict = "meets" if row["ratio"] <= GOAL_SCALING else "misses"
    print(f"2. scaling: whole spine {case.image.shape} ({row['n_big']} vertebrae found) {t24:.1f} s vs lowest 8 "
          f"{small.shape} ({row['n_small']} found) {t8:.1f} s")  # fmt: skip
    print(f"   ratio {row['ratio']:.2f} ({verdict} the goal <= {GOAL_SCALING}); voxels {row['voxel_ratio']:.2f}x, "
          f"vertebrae {row['n_big'] / max(row['n_small'], 1):.2f}x; stage 2 alone "
          f"{row['stage2_ratio']:.2f}")  # fmt: skip
    return row


def _large_child(stage1_model: str | None, threads: int, mirroring: str, stage2_model: str | None) -> None:
    """Runs in a fresh process: build the large volume, segment it, print JSON with times and peak RSS."""
    import torch

    from spineinstanceseg.phantom import generate_phantom
    from spineinstanceseg.volume import Volume

    torch.set_num_threads(threads)
    case = generate_phantom(910002, modality="ct", region="whole", spacing=(0.8, 0.8, 1.0), curvature=False)
    image = case.image
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    shape = np.asarray(image.shape)
    target = np.array([max(512, shape[0]), max(512, shape[1]), shape[2]])
    pad_lo = (target - shape) // 2
    array = np.full(tuple(int(v) for v in target), -1000.0, np.float32)  # air around the body
    array[tuple(slice(int(a), int(a + s)) for a, s in zip(pad_lo, shape, strict=True))] = image.array
    large = Volume(array, image.spacing, image.index_to_world(-pad_lo.astype(float)), image.direction)
    del case, image
    stage1, stage2 = _load_models(stage1_model, "cpu", mirroring, stage2_model)
    result, seconds = _run(large, stage1, stage2)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    out = {
        "shape": list(large.shape),
        "voxels_million": float(np.prod(large.shape)) / 1e6,
        "input_mib": large.array.nbytes / 2**20,
        "seconds": seconds,
        "stage1_s": result.timings["stage1"],
        "vertebrae": len(result.vertebrae),
        "peak_rss_mib": rss / 1024,
        "rss_before_pipeline_mib": rss_before / 1024,
    }
    sys.stdout.write("RESULT " + json.dumps(out) + "\n")


def large(stage1_model: str | None, threads: int, mirroring: str, stage2_model: str | None = None) -> dict:
    cmd = [sys.executable, __file__, "--large-child", "--threads", str(threads), "--mirroring", mirroring]
    if stage1_model:
        cmd += ["--stage1-model", stage1_model]
    if stage2_model:
        cmd += ["--stage2-model", stage2_model]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not lines:
        print(f"3. large volume: the child process failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
        return {"failed": done.returncode}
    row = json.loads(lines[-1][len("RESULT ") :])
    print(f"3. large CT-sized volume {tuple(row['shape'])} ({row['voxels_million']:.0f} M voxels, input "
          f"{row['input_mib']:.0f} MiB float32): {row['seconds']:.0f} s (stage 1 {row['stage1_s']:.0f} s), "
          f"{row['vertebrae']} vertebrae, peak RSS {row['peak_rss_mib']:.0f} MiB")  # fmt: skip
    return row


def accuracy(stage1, stage2, n_cases: int, first_seed: int = 920000) -> list[dict]:
    from scipy import ndimage

    from spineinstanceseg.levels import SACRUM_CODE
    from spineinstanceseg.metrics import evaluate_instances
    from spineinstanceseg.metrics.overlap import dice
    from spineinstanceseg.phantom import generate_phantom
    from spineinstanceseg.progress import Progress
    from spineinstanceseg.semantic import SACRUM, VERTEBRA
    from spineinstanceseg.stage1.sources import MaskSource

    rows = []
    print("4. accuracy on held-out phantoms (stage 1 = the model under test):")
    print("| case | vertebrae | stage-1 Dice: vertebra, sacrum | stage 1 + CC F1 | CC mean Dice | two-stage F1 "
          "| two-stage mean Dice | whole: found, Dice | cut by the edge: found (with >= 1/4 in view) "
          "| + bone boundary: F1, mean Dice | its errors (cause) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    settings = [
        ("ct", "lumbar", (0.8, 0.8, 1.5), 0.0),
        ("t2", "lumbar", (3.5, 0.6, 0.6), 10.0),
        ("ct", "thoracolumbar", (1.0, 1.0, 3.0), 12.0),
        ("t1", "thoracolumbar", (3.5, 0.7, 0.7), 0.0),
    ]
    for k in range(n_cases):
        modality, region, spacing, tilt = settings[k % len(settings)]
        seed = first_seed + k
        case = generate_phantom(seed, modality=modality, region=region, spacing=spacing, oblique_deg=tilt)
        ref = np.asarray(case.instances.array)
        ref = np.where(ref == SACRUM_CODE, 0, ref)
        semantic, _ = stage1.predict(case.image, progress=Progress(None))
        labels, truth = np.asarray(semantic.array), np.asarray(case.semantic.array)
        cc, _ = ndimage.label(labels == VERTEBRA)
        # the same stage-1 map twice: the split as stage 2 leaves it, and with the CT bone boundary step (as
        # `segment` runs with a stage-1 model; MRI is left unchanged)
        replay = MaskSource(semantic, from_model=True)
        two, bone_result = (_run(case.image, replay, stage2, bone_boundary=b)[0] for b in (False, True))
        s_two, s_bone = (_instance_scores(result, ref, case.image) for result in (two, bone_result))
        s_cc = evaluate_instances(cc, ref, case.image.spacing)
        row = {
            "case": f"{seed} {modality} {region} {spacing} tilt {tilt:.0f}",
            "vertebrae": s_two.tp + s_two.fn,
            # the stage-1 classes the instances are built from; nan: no such class in either map
            "stage1_vertebra_dice": dice(labels == VERTEBRA, truth == VERTEBRA),
            "stage1_sacrum_dice": dice(labels == SACRUM, truth == SACRUM),
            "cc_f1": s_cc.f1,
            "cc_dice": s_cc.mean_dice,
            "f1": s_two.f1,
            "dice": s_two.mean_dice,
            "bone_f1": s_bone.f1,
            "bone_dice": s_bone.mean_dice,
            **_whole_and_cut(s_two, ref),
            "errors": _error_causes(bone_result, ref),
        }
        rows.append(row)
        print(f"| {row['case']} | {row['vertebrae']} | {_stage1_text(row)} | {s_cc.f1:.3f} | {s_cc.mean_dice:.3f} | "
              f"{s_two.f1:.3f} | {s_two.mean_dice:.3f} | {_split_text(row)} | {s_bone.f1:.3f}, "
              f"{s_bone.mean_dice:.3f} | {_errors_text(row['errors'])} |")  # fmt: skip
    keys = ("stage1_vertebra_dice", "stage1_sacrum_dice", "cc_f1", "cc_dice", "f1", "dice", "bone_f1", "bone_dice")
    means = {key: float(np.nanmean([r[key] for r in rows])) for key in keys}
    counts = ("whole", "whole_found", "cut", "cut_found", "cut_large", "cut_large_found")
    total = {key: sum(r[key] for r in rows) for key in counts}
    total["whole_dices"] = [d for r in rows for d in r["whole_dices"]]
    print(f"| mean | {sum(r['vertebrae'] for r in rows)} | {_stage1_text(means)} | {means['cc_f1']:.3f} | "
          f"{means['cc_dice']:.3f} | "
          f"{means['f1']:.3f} | {means['dice']:.3f} | {_split_text(total)} | {means['bone_f1']:.3f}, "
          f"{means['bone_dice']:.3f} | {_errors_text([e for r in rows for e in r['errors']])} |")  # fmt: skip
    return rows


def _vertebrae(result) -> np.ndarray:
    """A result's instance map with the sacrum left out (the reference vertebrae leave it out too)."""
    from spineinstanceseg.levels import SACRUM_CODE

    pred = np.asarray(result.instances.array)
    return np.where(pred == SACRUM_CODE, 0, pred)


def _instance_scores(result, ref: np.ndarray, image):
    """Instance scores of a result against the reference vertebrae (the sacrum left out of both)."""
    from spineinstanceseg.metrics import evaluate_instances

    return evaluate_instances(_vertebrae(result), ref, image.spacing)


def _error_causes(result, ref: np.ndarray) -> list[str]:
    """Each false positive and false negative of a result, as "FP <cause>" / "FN <cause>"
    (:func:`spineinstanceseg.metrics.error_causes.classify_errors`; the sacrum left out of both)."""
    from spineinstanceseg.metrics.error_causes import classify_errors

    return [f"{e.kind} {e.cause}" for e in classify_errors(_vertebrae(result), ref)]


def _errors_text(errors: list[str]) -> str:
    """``["FP cut at the edge", "FP cut at the edge", "FN missed by stage 1"]`` -> "2 FP cut at the edge, 1 FN ..."."""
    counts = {e: errors.count(e) for e in sorted(set(errors))}
    return ", ".join(f"{n} {e}" for e, n in counts.items()) or "-"


def _whole_and_cut(scores, ref: np.ndarray) -> dict:
    """Reference vertebrae inside the field of view vs. those an edge of the volume cuts (touching a face); the cut
    ones also counted apart when at least ``LARGE_CUT_SHARE`` of a vertebra is in view (their volume against the
    nearest whole vertebra): slivers of a few percent are what stage 1 barely sees."""
    from scipy import ndimage

    from spineinstanceseg.volume import box_touches_face

    boxes = ndimage.find_objects(ref)
    cut = {label for label, box in enumerate(boxes, start=1) if box is not None and box_touches_face(box, ref.shape)}
    sizes = np.bincount(ref.ravel())
    refs = [r for r in scores.rows if r.ref_label is not None]
    whole = [r for r in refs if r.ref_label not in cut]
    whole_labels = {r.ref_label for r in whole}

    def share_in_view(label: int) -> float:  # against the nearest whole vertebra (two may be cut at one end)
        nearest = min(whole_labels, key=lambda n: (abs(n - label), n), default=None)
        return float(sizes[label]) / float(sizes[nearest]) if nearest is not None else 1.0

    large = [r for r in refs if r.ref_label in cut and share_in_view(r.ref_label) >= LARGE_CUT_SHARE]
    return {
        "whole": len(whole),
        "whole_found": sum(r.status == "TP" for r in whole),
        "whole_dices": [float(r.dice) for r in whole],
        "cut": len(refs) - len(whole),
        "cut_found": sum(r.status == "TP" for r in refs if r.ref_label in cut),
        "cut_large": len(large),
        "cut_large_found": sum(r.status == "TP" for r in large),
    }


def _stage1_text(row: dict) -> str:
    return f"{row['stage1_vertebra_dice']:.3f}, {row['stage1_sacrum_dice']:.3f}"


def _split_text(row: dict) -> str:
    whole_dice = float(np.mean(row["whole_dices"])) if row["whole_dices"] else float("nan")
    return (f"{row['whole_found']}/{row['whole']}, {whole_dice:.3f} | {row['cut_found']}/{row['cut']} "
            f"({row['cut_large_found']}/{row['cut_large']})")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage1-model", default=None, help="nnU-Net model folder (default: the bundled model)")
    parser.add_argument("--stage2-model", default=None, help="stage-2 model folder (default: the bundled model)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--cases", type=int, default=6, help="held-out phantoms for the accuracy table")
    parser.add_argument(
        "--first-seed",
        type=int,
        default=920000,
        help="seed of the first held-out phantom (training uses seeds < 800000; 930000 gives a second unseen set)",
    )
    parser.add_argument("--skip", default="", help=f"comma-separated parts to skip: {', '.join(PARTS)}")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers as JSON here")
    parser.add_argument(
        "--mirroring",
        choices=tuple(_MIRRORING),
        default="auto",
        help="stage-1 test-time mirroring (default auto: the model card's choice)",
    )
    parser.add_argument("--large-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch

    torch.set_num_threads(max(1, args.threads))
    if args.large_child:
        _large_child(args.stage1_model, args.threads, args.mirroring, args.stage2_model)
        return 0
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    unknown = skip - set(PARTS)
    if unknown:
        parser.error(f"unknown part(s) {sorted(unknown)}; choose from {', '.join(PARTS)}")
    print(f"CPU, torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores")
    stage1, stage2 = _load_models(args.stage1_model, "cpu", args.mirroring, args.stage2_model)
    print(f"stage 1: {stage1.description}")
    print(f"stage 2: {stage2.config.name} ({args.stage2_model or 'bundled'})")
    results: dict = {}
    if "timing" not in skip:
        results["timing"] = timing(stage1, stage2)
    if "scaling" not in skip:
        results["scaling"] = scaling(stage1, stage2)
    if "large" not in skip:
        results["large"] = large(args.stage1_model, args.threads, args.mirroring, args.stage2_model)
    if "accuracy" not in skip:
        results["accuracy"] = accuracy(stage1, stage2, args.cases, args.first_seed)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
