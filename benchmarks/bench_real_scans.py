"""The real-scan benchmark: the whole pipeline on the real CTs (leave-one-out) and the real MRI body set.

What it prints (and writes to ``--out`` as ``real_scans.md`` / ``real_scans.json``):

* **CT** (``../shared/data/real-ct``, four VerSe CTs with manual vertebra masks), per case and in total: stage-1
  vertebra precision / recall / Dice (inside the labelled span), instance F1 (IoU >= 0.5), mean vertebra Dice (a
  missed vertebra counts 0), level names right / wrong / not named (a false instance that carries a level name
  counts as wrong), every false negative and false positive with its cause (split vertebra, merged pair, bone that
  is not spine, cut at the edge, missed by stage 1, poor overlap) and the seconds of the ``segment`` call.
  Predictions of visible but unlabelled vertebrae beyond the labelled span are not counted (VerSe 006 has an
  unlabelled partial L3 at its top, 012 an unlabelled L4 below).
* **MRI** (``../shared/data/real-mri-bodies``, sagittal MRI with vertebral BODIES labelled): body detection per
  case (a body is found when one predicted vertebra covers >= 50 % of it, one to one; predictions beyond the
  labelled span ignored) and the F1 over all bodies. The predicted sacrum counts as one more instance, because the
  lowest labelled body of the VB1 scans is probably S1.

Leave-one-out: ``--stage1-loo DIR`` uses ``DIR/<case>/`` (an nnU-Net model folder that did not train on that case)
for each case, falling back to ``--stage1-model`` (default: the bundled model). The same holds for stage 2
(``--stage2-loo``). A case whose model saw it in training (its card names the case) is flagged ``seen`` and left
out of the totals' "unseen" line.

Usage::

    python benchmarks/bench_real_scans.py --out /tmp/real [--stage1-model DIR | --stage1-loo DIR]
        [--stage2-model DIR | --stage2-loo DIR] [--part ct,mri] [--mri-cases vb2_02,vb1_03] [--mirroring auto]
        [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
REAL_CT = SHARED / "real-ct"
REAL_MRI = SHARED / "real-mri-bodies"
_AUTO_ON_OFF = {"auto": None, "on": True, "off": False}


class Models:
    """Loads each model folder once; ``for_case`` picks the leave-one-out folder when there is one."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self._stage1: dict[str, object] = {}
        self._stage2: dict[str, object] = {}

    @staticmethod
    def _pick(case: str, loo: Path | None, default: Path | None) -> Path | None:
        if loo is not None and (loo / case).is_dir():
            return loo / case
        return default

    def stage1(self, case: str):
        from spineinstanceseg.stage1.sources import NnUNetSource, bundled_stage1_dir

        folder = self._pick(case, self.args.stage1_loo, self.args.stage1_model) or bundled_stage1_dir()
        if str(folder) not in self._stage1:
            mirror = _AUTO_ON_OFF[self.args.mirroring]
            self._stage1[str(folder)] = NnUNetSource(folder, device="cpu", use_mirroring=mirror)
        return self._stage1[str(folder)], folder

    def stage2(self, case: str):
        from spineinstanceseg.stage2.model import Stage2Model, bundled_model_dir

        folder = self._pick(case, self.args.stage2_loo, self.args.stage2_model) or bundled_model_dir()
        if str(folder) not in self._stage2:
            self._stage2[str(folder)] = Stage2Model.load(folder, device="cpu")
        return self._stage2[str(folder)], folder


# Card entries that hold measurements: a case scored there (the stage-2 card scores the real CTs' manual masks)
# was not trained on.
_SCORE_KEYS = frozenset({"scores", "measured", "measured_confirmation", "measured_with"})


def _seen_in_training(case: str, *folders: Path) -> bool:
    """True when a model card in one of ``folders`` names ``case`` outside its measured scores."""
    for folder in folders:
        for card in ("spineseg_card.json", "model_card.json"):
            path = folder / card
            if path.is_file() and case in path.read_text(encoding="utf-8"):
                text = json.loads(path.read_text(encoding="utf-8"))
                if case in json.dumps({k: v for k, v in text.items() if k not in _SCORE_KEYS}):
                    return True
    return False


def _span_mask(reference, axis) -> np.ndarray:
    """Voxels whose projection on the spine axis lies within the labelled span of ``reference``."""
    ref = np.asarray(reference.array)
    grid = np.indices(ref.shape).reshape(3, -1).T
    along = (reference.index_to_world(grid) @ axis).reshape(ref.shape)
    span = along[ref > 0]
    return (along >= span.min()) & (along <= span.max())


def _stage1_scores(semantic, reference) -> dict:
    from spineinstanceseg.metrics.error_causes import spine_axis
    from spineinstanceseg.semantic import VERTEBRA

    inside = _span_mask(reference, spine_axis(reference))
    pred = (np.asarray(semantic.array) == VERTEBRA) & inside
    ref = np.asarray(reference.array) > 0
    inter = int(np.count_nonzero(pred & ref))
    return {
        "stage1_precision": inter / max(int(pred.sum()), 1),
        "stage1_recall": inter / max(int(ref.sum()), 1),
        "stage1_dice": 2 * inter / max(int(pred.sum() + ref.sum()), 1),
    }


def _ordinal_instances(result, *, with_sacrum: bool = False) -> tuple[np.ndarray, dict[int, int | None]]:
    """The result's instances numbered 1..N (top to bottom) and each number's level code (None = not named).

    ``with_sacrum``: the sacrum of the semantic map becomes instance N+1 (the MRI body sets label S1 as a body).
    """
    from spineinstanceseg.semantic import SACRUM

    values = np.asarray(result.instances.array)
    lut = np.zeros(int(values.max(initial=0)) + 1, dtype=np.int32)
    codes: dict[int, int | None] = {}
    for k, record in enumerate(result.vertebrae, start=1):
        lut[record.label] = k
        codes[k] = record.level_code
    ordinal = lut[values]
    if with_sacrum:
        sacrum = (np.asarray(result.semantic.array) == SACRUM) & (ordinal == 0)
        ordinal[sacrum] = len(result.vertebrae) + 1
    return ordinal, codes


def score_ct_case(result, reference) -> dict:
    """Instance, level and error-cause scores of one pipeline result against a VerSe-coded reference."""
    from spineinstanceseg.metrics import evaluate_instances
    from spineinstanceseg.metrics.error_causes import classify_errors, drop_labels, outside_labelled_span

    ordinal, codes = _ordinal_instances(result)
    ordinal_volume = reference.with_array(ordinal.astype(np.int32), is_label=True)
    ignored = outside_labelled_span(ordinal_volume, reference)
    pred = drop_labels(ordinal, ignored)
    scores = evaluate_instances(reference.with_array(pred, is_label=True), reference)
    right = wrong = unnamed = 0
    for row in scores.rows:
        code = codes.get(row.pred_label) if row.pred_label is not None else None
        if row.status == "FN":
            continue
        if code is None:
            unnamed += row.status == "TP"
        elif row.status == "TP" and code == row.ref_label:
            right += 1
        else:
            wrong += 1
    causes = classify_errors(pred, np.asarray(reference.array))
    return {
        "vertebrae": scores.tp + scores.fn,
        "tp": scores.tp,
        "fp": scores.fp,
        "fn": scores.fn,
        "f1": scores.f1,
        "mean_dice": scores.mean_dice,
        "levels_right": right,
        "levels_wrong": wrong,
        "levels_unnamed": unnamed,
        "ignored_beyond_span": len(ignored),
        "errors": [f"{c.kind} {c.cause}" for c in causes],
    }


def _load_ct_cases(only: list[str] | None):
    from spineinstanceseg.io import read_label_map, read_volume

    for image_path in sorted(REAL_CT.glob("*_ct.nii.gz")):
        case = image_path.name[: -len("_ct.nii.gz")]
        if only and case not in only:
            continue
        yield case, read_volume(image_path), read_label_map(REAL_CT / f"{case}_seg-vert_msk.nii.gz")


def _save(save: Path | None, case: str, result) -> None:
    """Write the case's instance and semantic maps for a closer look (``--save``)."""
    if save is None:
        return
    from spineinstanceseg.io import write_volume

    save.mkdir(parents=True, exist_ok=True)
    write_volume(result.instances, save / f"{case}_instances.nii.gz")
    write_volume(result.semantic, save / f"{case}_semantic.nii.gz")


def run_ct(
    models: Models, only: list[str] | None, save: Path | None = None, *, bone_boundary: bool | None = None
) -> list[dict]:
    from spineinstanceseg.pipeline import segment

    rows = []
    for case, image, reference in _load_ct_cases(only):
        stage1, folder1 = models.stage1(case)
        stage2, folder2 = models.stage2(case)
        t = time.perf_counter()
        result = segment(image, stage1=stage1, stage2=stage2, device="cpu", source=case, bone_boundary=bone_boundary)
        seconds = time.perf_counter() - t
        _save(save, case, result)
        row = {"case": case, "seconds": seconds, "seen": _seen_in_training(case, folder1, folder2)}
        row.update(_stage1_scores(result.semantic, reference))
        row.update(score_ct_case(result, reference))
        row["naming_rule"] = result.naming_rule
        rows.append(row)
        print(f"  {case}: F1 {row['f1']:.3f} Dice {row['mean_dice']:.3f} levels {row['levels_right']}/"
              f"{row['levels_wrong']}/{row['levels_unnamed']} {row['errors']} {seconds:.0f} s", flush=True)  # fmt: skip
    return rows


def _body_mask(bodies):
    """The true bodies plus the discs derived between them, as a stage-1 mask (what stage 1 should give on MRI)."""
    from spineinstanceseg.conventions.derived import derive_body_training_labels

    return derive_body_training_labels(bodies).semantic


def run_mri(
    models: Models, only: list[str] | None, save: Path | None = None, *, from_true_bodies: bool = False
) -> list[dict]:
    """Body detection on the real MRI set; ``from_true_bodies``: stage 2 from the true bodies + derived discs."""
    from spineinstanceseg.io import read_label_map, read_volume
    from spineinstanceseg.metrics.error_causes import detect_bodies
    from spineinstanceseg.pipeline import segment

    rows = []
    for image_path in sorted(REAL_MRI.glob("*_img.nii.gz")):
        case = image_path.name[: -len("_img.nii.gz")]
        if only and case not in only:
            continue
        image, bodies = read_volume(image_path), read_label_map(REAL_MRI / f"{case}_bodies.nii.gz")
        stage1, folder1 = (_body_mask(bodies), None) if from_true_bodies else models.stage1(case)
        stage2, folder2 = models.stage2(case)
        t = time.perf_counter()
        try:
            result = segment(image, stage1=stage1, stage2=stage2, device="cpu", source=case)
            ordinal, _ = _ordinal_instances(result, with_sacrum=True)
            _save(save, case, result)
        except Exception as error:  # noqa: BLE001 - a benchmark records a failing case and goes on
            print(f"  {case}: failed: {error}", flush=True)
            ordinal = np.zeros(bodies.shape, np.int32)
        seconds = time.perf_counter() - t
        found = detect_bodies(bodies.with_array(ordinal.astype(np.int32), is_label=True), bodies)
        row = {
            "case": case,
            "bodies": found.tp + found.fn,
            "tp": found.tp,
            "fp": found.fp,
            "fn": found.fn,
            "f1": found.f1,
            "errors": [f"FP {c.cause}" for c in found.fp_causes] + ["FN"] * found.fn,
            "seconds": seconds,
            "seen": _seen_in_training(case, *(f for f in (folder1, folder2) if f is not None)),
        }
        rows.append(row)
        print(f"  {case}: bodies {row['tp']}/{row['bodies']} FP {row['fp']} F1 {row['f1']:.3f} {seconds:.0f} s",
              flush=True)  # fmt: skip
    return rows


def _totals(rows: list[dict], *, unit: str) -> dict:
    tp, fp, fn = (sum(r[k] for r in rows) for k in ("tp", "fp", "fn"))
    out = {"cases": len(rows), unit: tp + fn, "tp": tp, "fp": fp, "fn": fn}
    out["f1"] = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else float("nan")
    out["seconds_mean"] = float(np.mean([r["seconds"] for r in rows])) if rows else float("nan")
    if rows and "mean_dice" in rows[0]:
        # Per vertebra, over all cases (a case with 2 vertebrae weighs less than one with 6).
        out["mean_dice"] = float(sum(r["mean_dice"] * r["vertebrae"] for r in rows) / max(out[unit], 1))
        for key in ("levels_right", "levels_wrong", "levels_unnamed"):
            out[key] = sum(r[key] for r in rows)
        for key in ("stage1_precision", "stage1_recall", "stage1_dice"):
            out[key] = float(np.mean([r[key] for r in rows]))
    return out


def _markdown(ct: list[dict], mri: list[dict]) -> str:
    lines = []
    if ct:
        lines += ["| CT case | seen | stage-1 P / R / Dice | vertebrae | F1 | mean Dice | levels right / wrong / "
                  "unnamed | errors (cause) | s |", "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for r in ct:
            lines.append(
                f"| {r['case']} | {'yes' if r['seen'] else 'no'} | {r['stage1_precision']:.2f} / "
                f"{r['stage1_recall']:.2f} / {r['stage1_dice']:.2f} | {r['vertebrae']} | {r['f1']:.3f} | "
                f"{r['mean_dice']:.3f} | {r['levels_right']} / {r['levels_wrong']} / {r['levels_unnamed']} | "
                f"{'; '.join(r['errors']) or '-'} | {r['seconds']:.0f} |"
            )
        for label, subset in (("all", ct), ("unseen", [r for r in ct if not r["seen"]])):
            if not subset:
                continue
            t = _totals(subset, unit="vertebrae")
            lines.append(
                f"| **{label}** | | {t['stage1_precision']:.2f} / {t['stage1_recall']:.2f} / {t['stage1_dice']:.2f} "
                f"| {t['vertebrae']} | **{t['f1']:.3f}** | **{t['mean_dice']:.3f}** | {t['levels_right']} / "
                f"**{t['levels_wrong']}** / {t['levels_unnamed']} | TP {t['tp']} FP {t['fp']} FN {t['fn']} | "
                f"{t['seconds_mean']:.0f} |"
            )
        lines.append("")
    if mri:
        lines += ["| MRI case | seen | bodies | found | false | F1 | errors | s |", "|---|---|---|---|---|---|---|---|"]
        for r in mri:
            lines.append(
                f"| {r['case']} | {'yes' if r['seen'] else 'no'} | {r['bodies']} | {r['tp']} | {r['fp']} | "
                f"{r['f1']:.3f} | {'; '.join(r['errors']) or '-'} | {r['seconds']:.0f} |"
            )
        t = _totals(mri, unit="bodies")
        lines.append(f"| **all** | | {t['bodies']} | {t['tp']} | {t['fp']} | **{t['f1']:.3f}** | | "
                     f"{t['seconds_mean']:.0f} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="folder for real_scans.md and real_scans.json")
    parser.add_argument("--stage1-model", type=Path, help="nnU-Net model folder for every case (default: bundled)")
    parser.add_argument("--stage1-loo", type=Path, help="folder of per-case models: DIR/<case>/ left <case> out")
    parser.add_argument("--stage2-model", type=Path, help="stage-2 model folder (default: bundled)")
    parser.add_argument("--stage2-loo", type=Path, help="folder of per-case stage-2 models, as --stage1-loo")
    parser.add_argument(
        "--part",
        default="ct,mri",
        help="comma-separated: ct, mri, mri-bodies (stage 2 alone, from the true MRI bodies and derived discs); "
        "default ct,mri",
    )
    parser.add_argument("--ct-cases", help="comma-separated CT case names (default all)")
    parser.add_argument("--mri-cases", help="comma-separated MRI case names (default all)")
    parser.add_argument("--mirroring", choices=sorted(_AUTO_ON_OFF), default="auto", help="stage-1 test-time mirroring")
    parser.add_argument(
        "--bone-boundary",
        choices=sorted(_AUTO_ON_OFF),
        default="auto",
        help="the CT bone boundary step (auto: as `segment` runs it, on for a stage-1 model, off for a given mask)",
    )
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--save", type=Path, help="also write each case's instances and semantic map here")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(max(1, args.threads))
    parts = set(args.part.split(","))
    if {"mri", "mri-bodies"} <= parts:
        parser.error("--part mri and mri-bodies write the same table: run them one at a time")
    models = Models(args)
    ct, mri = [], []
    if "ct" in parts:
        if REAL_CT.is_dir():
            print("CT (leave-one-out where per-case models are given):", flush=True)
            ct = run_ct(
                models,
                args.ct_cases.split(",") if args.ct_cases else None,
                args.save,
                bone_boundary=_AUTO_ON_OFF[args.bone_boundary],
            )
        else:
            print(f"CT part skipped: {REAL_CT} is absent")
    if "mri" in parts:
        if REAL_MRI.is_dir():
            print("MRI vertebral-body detection:", flush=True)
            mri = run_mri(models, args.mri_cases.split(",") if args.mri_cases else None, args.save)
        else:
            print(f"MRI part skipped: {REAL_MRI} is absent")
    if "mri-bodies" in parts:
        if REAL_MRI.is_dir():
            print("MRI body detection, stage 2 from the true bodies:", flush=True)
            mri = run_mri(models, args.mri_cases.split(",") if args.mri_cases else None, from_true_bodies=True)
        else:
            print(f"MRI part skipped: {REAL_MRI} is absent")
    args.out.mkdir(parents=True, exist_ok=True)
    text = _markdown(ct, mri)
    (args.out / "real_scans.md").write_text(text, encoding="utf-8")
    summary = {"ct": ct, "mri": mri}
    if ct:
        summary["ct_total"] = _totals(ct, unit="vertebrae")
    if mri:
        summary["mri_total"] = _totals(mri, unit="bodies")
    (args.out / "real_scans.json").write_text(json.dumps(summary, indent=1, default=float) + "\n", encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
