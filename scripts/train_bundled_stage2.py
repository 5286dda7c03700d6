"""Train the bundled stage-2 model (stage2_phantom_v2) on synthetic phantoms, on the CPU; rerunnable and resumable.

Usage:
    python scripts/train_bundled_stage2.py --work /tmp/stage2_bundled [--epochs 40] [--threads 2] [--install]

The bundled stage2_phantom_v2 was fine-tuned from stage2_phantom_v1 (kept in training-state/stage2/ with the card
that says how it was trained) with ``--init training-state/stage2/stage2_phantom_v1 --epochs 15
--lr 3e-4 --steep-lordosis 0.3:55:90``; its card says what it scored against v1.

Training data: phantoms from ``spineinstanceseg.phantom.generate_phantom`` with seeds 0..N-1 (held-out evaluation
seeds start at 900000, see benchmarks/eval_stage2_accuracy.py): all four regions, CT, 2 mm grid, with and without
curvature and tilt, and a share of hard cases (collapsed disc, fused pair, wedge fracture). Each case is used both
with its full semantic mask (discs, canal) and as a vertebra-only mask. Windows are augmented with stage-1-like
errors (see spineinstanceseg.stage2.training_data). Run it again with the same --work to resume; ``--install``
copies the best model into the package's models folder and writes its model card.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np
import torch

from spineinstanceseg.phantom import generate_phantom
from spineinstanceseg.stage2.model import Stage2Config, Stage2Model, bundled_model_dir
from spineinstanceseg.stage2.training import TrainSchedule, train_stage2
from spineinstanceseg.stage2.training_data import prepare_case
from spineinstanceseg.stage2.windows import WindowSpec

REGIONS = ("lumbar", "thoracolumbar", "whole", "cervical")
HARD = (None, None, "collapsed_disc", "fused", "wedge_fracture")


def phantom_cases(seeds, spec: WindowSpec, *, with_semantic_share: float = 0.7, regions=REGIONS, steep_lordosis=None):
    """Prepared training cases for ``seeds`` (region, hard case, tilt and curvature vary with the seed).

    ``regions`` is cycled through by seed; repeat a region to weight it (C1/C2 occur only in cervical and whole
    spines, so they are rare windows otherwise). ``steep_lordosis``: see ``generate_phantom``.
    """
    cases = []
    for seed in seeds:
        rng = np.random.default_rng([seed, 77])
        region = regions[seed % len(regions)]
        hard = HARD[(seed // len(regions)) % len(HARD)]
        if region == "cervical" and hard is not None:
            hard = "fused"
        case = generate_phantom(
            seed,
            modality="ct",
            region=region,
            spacing=spec.spacing_mm,
            hard_case=hard,
            oblique_deg=float(rng.uniform(0, 12)),
            curvature=bool(rng.random() < 0.85),
            steep_lordosis=steep_lordosis,
        )
        semantic = case.semantic if rng.random() < with_semantic_share else None
        name = f"phantom{seed}-{region}-{hard}-{'sem' if semantic is not None else 'vert'}"
        cases.append(prepare_case(case.instances, semantic, spec=spec, name=name))
    return cases


def predicted_cases(folder: Path, spec: WindowSpec):
    """Training cases whose input is a real stage-1 prediction and whose target comes from the true vertebrae."""
    from spineinstanceseg.io import read_label_map

    cases = []
    for semantic_path in sorted(folder.glob("*_semantic.nii.gz")):
        name = semantic_path.name[: -len("_semantic.nii.gz")]
        instances = read_label_map(folder / f"{name}_instances.nii.gz")
        cases.append(prepare_case(instances, read_label_map(semantic_path), spec=spec, name=f"{name}-predicted"))
    return cases


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("/tmp/stage2_bundled"))
    parser.add_argument("--train-cases", type=int, default=120)
    parser.add_argument("--val-cases", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--iterations", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--base-width", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--window", type=int, default=48, help="window edge in voxels (multiple of 8)")
    parser.add_argument("--spacing", type=float, default=2.5, help="working grid spacing in mm")
    parser.add_argument(
        "--regions",
        default=",".join(REGIONS),
        help="comma-separated phantom regions cycled by seed; repeat one to weight it (default: each once)",
    )
    parser.add_argument("--init", type=Path, help="start from the weights of this model folder (same width)")
    parser.add_argument(
        "--predicted",
        type=Path,
        help="also train on stage-1 predictions paired with the true vertebrae (scripts/make_stage1_predictions.py)",
    )
    parser.add_argument(
        "--steep-lordosis",
        metavar="SHARE:LO:HI",
        help="give this share of the curved lumbar/thoracolumbar phantoms (training and validation) a lumbar lordosis "
        "of LO-HI degrees (default 35-60; the lowest lumbar vertebra leans half of it), e.g. 0.5:60:95",
    )
    parser.add_argument("--name", default="stage2_phantom_v2", help="model name written into its config and card")
    parser.add_argument("--install", action="store_true", help="copy the best model into the package, with card")
    parser.add_argument("--scores", type=Path, help="with --install: JSON written by eval_stage2_accuracy.py")
    parser.add_argument("--note", default="", help="with --install: how the run went (restarts, init), for the card")
    parser.add_argument(
        "--rescore",
        type=Path,
        help="rewrite only the bundled card's measured scores from this eval_stage2_accuracy.py JSON (after a change "
        "to inference; the weights and checksums stay as they are)",
    )
    parser.add_argument(
        "--confirm",
        type=Path,
        nargs="*",
        default=[],
        help="with --rescore: JSON of fresh confirmation sets (--first-seed); without it the card keeps its old ones",
    )
    parser.add_argument("--measured-with", default="", help="with --rescore: what code/settings measured the scores")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    torch.set_num_threads(args.threads)
    spec = WindowSpec((args.window,) * 3, args.spacing)
    if args.install:
        return install(args.work, args.scores, args.note)
    if args.rescore:
        return rescore(args.rescore, args.confirm, args.measured_with)
    regions = tuple(r.strip() for r in args.regions.split(",") if r.strip())
    unknown = sorted(set(regions) - set(REGIONS))
    if unknown or not regions:
        parser.error(f"unknown region(s) {unknown}; choose from {', '.join(REGIONS)}")
    steep = _steep_lordosis(parser, args.steep_lordosis)
    train = phantom_cases(range(args.train_cases), spec, regions=regions, steep_lordosis=steep)
    predicted = predicted_cases(args.predicted, spec) if args.predicted else []
    train += predicted
    val = phantom_cases(range(800000, 800000 + args.val_cases), spec, regions=regions, steep_lordosis=steep)
    logging.info("%d training cases, %d validation cases", len(train), len(val))
    config = Stage2Config(
        window=spec,
        base_width=args.base_width,
        name=args.name,
        training={
            "data": (
                f"{args.train_cases} synthetic CT phantoms (spineinstanceseg.phantom, seeds 0-{args.train_cases - 1}; "
                f"regions cycled {'/'.join(regions)}; collapsed disc, fused pair, wedge fracture; "
                f"30% as vertebra-only masks); validation: seeds 800000-{800000 + args.val_cases - 1}"
                + (
                    f"; {steep.share:.0%} of the curved lumbar/thoracolumbar spines with a lumbar lordosis of "
                    f"{steep.lordosis_deg[0]:.0f}-{steep.lordosis_deg[1]:.0f} degrees (default 35-60)"
                    if steep
                    else ""
                )
                + (
                    f"; plus {len(predicted)} stage-1 predictions of unseen phantoms paired with their true "
                    f"vertebrae ({args.predicted.name})"
                    if predicted
                    else ""
                )
            ),
            "augmentation": "stage-1-like errors, bodies-only masks (MRI-like), rotation, scaling, thick slices, "
            "centroid jitter",
            "device": "cpu",
        },
    )
    schedule = TrainSchedule(
        epochs=args.epochs,
        iterations=args.iterations,
        batch_size=args.batch_size,
        lr=args.lr,
        lr_decay="poly",
        val_windows=16,
        seed=0,
    )
    train_stage2(train, val, out=args.work, config=config, schedule=schedule, device="cpu", resume=True, init=args.init)
    return 0


def _steep_lordosis(parser: argparse.ArgumentParser, text: str | None):
    """``--steep-lordosis SHARE:LO:HI`` as a :class:`SteepLordosis` (``None`` without it)."""
    from spineinstanceseg.phantom import SteepLordosis

    if not text:
        return None
    try:
        share, lo, hi = (float(v) for v in text.split(":"))
    except ValueError:
        parser.error(f"--steep-lordosis wants SHARE:LO:HI, e.g. 0.5:60:95, got {text!r}")
    if not (0.0 <= share <= 1.0 and 0.0 <= lo <= hi <= 120.0):
        parser.error(f"--steep-lordosis: share 0-1 and 0 <= LO <= HI <= 120 degrees, got {text!r}")
    return SteepLordosis(share=share, lordosis_deg=(lo, hi))


def install(work: Path, scores: Path | None = None, note: str = "") -> int:
    """Copy ``work/model`` into the package and write MODEL_CARD.md + model_card.json next to the weights."""
    model = Stage2Model.load(work / "model", device="cpu")
    target = bundled_model_dir()
    model.save(target)
    training = {k: v for k, v in model.config.training.items() if k != "history"}
    history = model.config.training.get("history", [])
    measured = json.loads(scores.read_text(encoding="utf-8")) if scores else {}
    card = {
        "name": model.config.name,
        "intended_use": (
            "research and demonstration only; not for clinical use: trained on synthetic data "
            "(spineinstanceseg phantoms), never on patient images"
        ),
        "input": {
            "channels": list(model.config.channels),
            "window_voxels": list(model.config.window.size),
            "spacing_mm": model.config.window.spacing_mm,
            "what": "one-hot stage-1 semantic mask window around a vertebra centroid (no image)",
        },
        "output": ["background", "top vertebra", "centre vertebra", "bottom vertebra"],
        "architecture": "multi-scale 3D U-Net with MAFU skips (4 levels), base width "
        f"{model.config.base_width}, {model.parameter_count} parameters",
        "training": training,
        "best_epoch": len(history),
        "run_note": note,
        "weights_sha256": model.sha256,
        "measured": measured,
        "retrain": "python scripts/train_bundled_stage2.py --work DIR; then --install [--scores eval.json]",
    }
    (target / "model_card.json").write_text(json.dumps(card, indent=1, default=float) + "\n", encoding="utf-8")
    (target / "MODEL_CARD.md").write_text(_card_markdown(card, history), encoding="utf-8")
    logging.info("installed %s (%d parameters)", target, model.parameter_count)
    return 0


def rescore(scores: Path, confirm: list[Path], measured_with: str) -> int:
    """Replace the bundled card's measured scores (model_card.json and MODEL_CARD.md); weights untouched."""
    target = bundled_model_dir()
    card = json.loads((target / "model_card.json").read_text(encoding="utf-8"))
    card["measured"] = json.loads(scores.read_text(encoding="utf-8"))
    if confirm:  # otherwise the confirmation sets measured before stay (same weights)
        card["measured_confirmation"] = [json.loads(path.read_text(encoding="utf-8")) for path in confirm]
    card["measured_with"] = measured_with
    history = Stage2Model.load(target, device="cpu").config.training.get("history", [])
    (target / "model_card.json").write_text(json.dumps(card, indent=1, default=float) + "\n", encoding="utf-8")
    (target / "MODEL_CARD.md").write_text(_card_markdown(card, history), encoding="utf-8")
    logging.info("re-scored the card of %s", target)
    return 0


def _card_markdown(card: dict, history: list) -> str:
    lines = [
        f"# Model card: {card['name']} (stage-2 vertebra instance network)",
        "",
        "**Not for clinical use: trained on synthetic data.** This model was trained on CPU on synthetic spine "
        "phantoms generated by `spineinstanceseg.phantom`; it has never seen a patient image or a real label map.",
        "",
        "## What it does",
        f"Input: {card['input']['what']}; window {card['input']['window_voxels']} voxels at "
        f"{card['input']['spacing_mm']} mm, channels {', '.join(card['input']['channels'])}.",
        "Output: per-voxel probabilities of background / top / centre / bottom vertebra.",
        f"Architecture: {card['architecture']}.",
        "",
        "## Training",
        f"- Data: {card['training'].get('data', '')}",
        f"- Augmentation: {card['training'].get('augmentation', '')}",
        f"- Schedule (last run): {json.dumps(card['training'].get('schedule', {}))}; these weights are from "
        f"epoch {card['best_epoch']} (best validation Dice).",
        f"- How it was run: {card['run_note']}",
        f"- Best validation window Dice (top/centre/bottom): {card['training'].get('val_dice_best', float('nan')):.4f}",
        "",
        "## Measured scores",
        "From `benchmarks/eval_stage2_accuracy.py` (held-out phantom seeds 900000-900015, the real VerSe masks and, "
        "where measured, the manual masks of the real CTs with each case's weakest vertebra)"
        + (f"; {card['measured_with']}" if card.get("measured_with") else "")
        + ":",
        "",
        "```",
        json.dumps(_short_scores(card["measured"]), indent=1, default=float),
        "```",
        "",
        *[line for measured in card.get("measured_confirmation") or [] for line in _confirmation_lines(measured)],
        "## Checksum",
        f"weights.safetensors sha256 `{card['weights_sha256']}` (verified on every load via checksums.json).",
        "",
        f"Retrain: `{card['retrain']}`.",
        "",
    ]
    return "\n".join(lines)


def _confirmation_lines(measured: dict) -> list[str]:
    """Card lines for a fresh confirmation set (phantom seeds nobody looked at while tuning inference)."""
    rows = measured.get("phantoms", {}).get("rows", [])
    if not rows:
        return []
    first = rows[0]["case"].split("-")[0].removeprefix("phantom")
    groups = _short_scores({"phantoms": measured["phantoms"]})
    lines = [f"Further held-out set (`--first-seed {first}`, {len(rows)} phantoms):", ""]
    for group in ("touching", "other", "all"):
        s = groups.get(f"phantoms_{group}", {}).get("stage2")
        if s:
            lines.append(f"- {group}: F1 {s['f1']:.3f}, mean Dice {s['mean_dice']:.3f} (TP {s['tp']}, FP {s['fp']}, "
                         f"FN {s['fn']})")  # fmt: skip
    return [*lines, ""]


def _short_scores(measured: dict) -> dict:
    out = {}
    if "windows" in measured:
        out["window_level"] = measured["windows"]
    for group in ("touching", "other", "all"):
        if group in measured.get("phantoms", {}):
            out[f"phantoms_{group}"] = measured["phantoms"][group]
    real_tables = (  # (key in the eval JSON, key on the card, fields kept)
        ("real", "real_verse_masks", ("case", "n_ref", "found", "fp", "f1", "mean_dice", "cc_f1")),
        ("real_ct_masks", "real_ct_masks", ("case", "n_ref", "found", "fp", "f1", "mean_dice", "min_dice")),
    )
    for source, name, fields in real_tables:
        if measured.get(source, {}).get("rows"):
            out[name] = [{k: r[k] for k in fields} for r in measured[source]["rows"]]
    return out


if __name__ == "__main__":
    sys.exit(main())
