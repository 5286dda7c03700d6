"""Install an exported stage-1 fold as the bundled model, with its card and the scores measured on it.

Usage:
    python scripts/install_stage1.py WORK/export/fold_all --name stage1_v5 --mirroring off \\
        --scores real_ct_leave_one_out=ct.json --scores phantoms_whole_pipeline=phantoms.json \\
        --table "Real CT, leave-one-out=ct.md" --table "Held-out phantoms=phantoms.md"

``WORK/export/fold_<f>`` is what ``scripts/train_bundled_stage1.py`` exports: a weights-only nnU-Net folder whose
card says what the fold trained on. This copies it to ``spineinstanceseg/models/<name>`` (written beside it, then
renamed), sets the card's name and test-time mirroring, records the given benchmark numbers under ``scores`` (from
the JSON files of ``benchmarks/bench_real_scans.py`` and ``benchmarks/bench_pipeline.py``: their totals), and
writes ``MODEL_CARD.md`` with the given Markdown tables. The package loads the folder named by
``spineinstanceseg.stage1.sources.BUNDLED_STAGE1_NAME``; change it with the install.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from spineinstanceseg.atomic import atomic_directory
from spineinstanceseg.stage1.model_card import ModelCard, read_card, write_card
from spineinstanceseg.stage1.nnunet_adapter import check_weights_only

PACKAGE_MODELS = Path(__file__).resolve().parents[1] / "SpineInstanceSeg" / "Logic" / "spineinstanceseg" / "models"
CHECKPOINT = "fold_all/checkpoint_final.pth"


def summary(numbers: dict) -> dict:
    """The totals of a benchmark JSON (per-case rows stay in the benchmark's own output)."""
    if "accuracy" in numbers:  # bench_pipeline.py
        rows = numbers["accuracy"]
        keys = ("vertebrae", "whole", "whole_found", "cut", "cut_found", "cut_large", "cut_large_found")
        out = {key: sum(int(r[key]) for r in rows) for key in keys if all(key in r for r in rows)}
        means = ("f1", "dice", "bone_f1", "bone_dice")  # bone_*: with the CT bone boundary step
        present = [k for k in means if all(k in r for r in rows)]
        out.update({f"mean_{k}": sum(float(r[k]) for r in rows) / len(rows) for k in present})
        out["cases"] = len(rows)
        return out
    return {key: value for key, value in numbers.items() if key.endswith("_total")}  # bench_real_scans.py


def card_markdown(card: ModelCard, tables: list[tuple[str, str]]) -> str:
    """The human-readable card (the JSON card next to it is what the code reads)."""
    lines = [
        f"# Model card: {card.name} (stage-1 nnU-Net v2 semantic spine model)",
        "",
        "**Not for clinical use.** Trained on synthetic phantoms, four real CTs and 19 real MRI scans (details "
        "below); train on real data at scale (e.g. SPIDER, see the README) before relying on it.",
        "",
        "## What it does",
        "Input: one CT or MRI volume (any orientation; reoriented to LPS, z-score normalised, resampled to 2 mm "
        "isotropic). Output: background 0, vertebra 1, disc 2, spinal canal 3, sacrum 4 on the input grid.",
        f"Network: nnU-Net v2 `{card.configuration or '3d_fullres'}` with reduced plans `{card.plans}` (patch 48^3, "
        f"4 stages, 16-128 features), trainer `{card.trainer}`. Prediction defaults: {card.inference}.",
        "",
        "## Training",
        f"- Data: {card.training_data}.",
        *[f"- {note}" for note in card.notes],
        "- Rerun: `python scripts/train_bundled_stage1.py --work DIR` (then `--extend-to TOTAL` for longer "
        "training), `python scripts/install_stage1.py DIR/export/fold_all ...`.",
        "",
        "## Measured scores",
        "",
    ]
    for title, text in tables:
        lines += [f"### {title}", "", text.strip(), ""]
    lines += [
        "## Files",
        f"`{CHECKPOINT}`: weights only (loads with `torch.load(weights_only=True)`); its SHA-256 is in "
        "`spineseg_card.json` and is verified on every load.",
        "",
    ]
    return "\n".join(lines)


def install(export: Path, *, name: str, mirroring: bool, scores: dict, tables: list[tuple[str, str]]) -> Path:
    card = read_card(export)
    if card is None or not (export / CHECKPOINT).is_file():
        raise SystemExit(f"{export} is not an exported stage-1 fold (no card or no {CHECKPOINT})")
    check_weights_only(export / CHECKPOINT)
    target = PACKAGE_MODELS / name
    card.name = name
    card.inference = {"use_mirroring": bool(mirroring), "tile_step_size": 0.5}
    card.scores = scores
    with atomic_directory(target) as tmp:
        shutil.copytree(export, tmp, dirs_exist_ok=True)
        write_card(card, tmp, checksum_files=[CHECKPOINT])
        (tmp / "MODEL_CARD.md").write_text(card_markdown(card, tables), encoding="utf-8")
    return target


def _pair(text: str) -> tuple[str, Path]:
    key, sep, path = text.partition("=")
    if not sep or not key or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=FILE, got {text!r}")
    return key, Path(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("export", type=Path, help="exported fold folder (WORK/export/fold_<f>)")
    parser.add_argument("--name", required=True, help="model name and package folder, e.g. stage1_v5")
    parser.add_argument("--mirroring", choices=("on", "off"), required=True, help="test-time mirroring default")
    parser.add_argument("--scores", type=_pair, action="append", default=[], metavar="NAME=FILE.json")
    parser.add_argument("--table", type=_pair, action="append", default=[], metavar="TITLE=FILE.md")
    args = parser.parse_args(argv)
    scores = {key: summary(json.loads(path.read_text(encoding="utf-8"))) for key, path in args.scores}
    tables = [(title, path.read_text(encoding="utf-8")) for title, path in args.table]
    target = install(args.export, name=args.name, mirroring=args.mirroring == "on", scores=scores, tables=tables)
    sys.stderr.write(f"installed {target}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
