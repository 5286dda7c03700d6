"""Benchmark stage 2 on CPU: milliseconds per window, fusion time, and how a 24-vertebra case scales vs 8.

Usage::

    python benchmarks/bench_stage2.py                  # bundled model, else a random-weight network
    python benchmarks/bench_stage2.py --model oracle   # no network: only the non-learned parts
    python benchmarks/bench_stage2.py --threads 2 --repeat 3

The cases come from the phantom generator (a whole spine, C1-L5 = 24 vertebrae, and the lowest 8 vertebrae of
the same spine cropped out of it) at 2 mm, given as the ground-truth semantic mask; box stacks are used when the
phantom generator is not available. Goal: linear scaling, a 24/8 time ratio <= 3.3.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

GOAL_RATIO = 3.3


def _crop_lowest(semantic, instances, n_keep: int):
    """The semantic/instance volumes cut to the lowest ``n_keep`` vertebrae along LPS z (plus a margin)."""
    from scipy import ndimage

    inst = np.asarray(instances.array)
    labels = [v for v in np.unique(inst) if 0 < v < 26]
    cents = np.asarray(ndimage.center_of_mass(np.ones(inst.shape), inst, labels)).reshape(-1, 3)
    world_z = semantic.index_to_world(cents)[:, 2]
    keep = [labels[i] for i in np.argsort(world_z)[:n_keep]]
    idx = np.argwhere(np.isin(inst, keep) | (inst == 26))
    lo = np.maximum(idx.min(axis=0) - 3, 0)
    hi = np.minimum(idx.max(axis=0) + 4, inst.shape)
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
    sem = np.asarray(semantic.array)[box].copy()
    ins = inst[box].copy()
    gone = ~np.isin(ins, keep) & (ins > 0) & (ins != 26)  # vertebrae cut by the crop: remove them entirely
    sem[gone] = 0
    ins[gone] = 0
    from spineinstanceseg.volume import Volume

    origin = semantic.index_to_world(lo.astype(float))
    make = lambda a: Volume(a, semantic.spacing, origin, semantic.direction, is_label=True)  # noqa: E731
    return make(sem), make(ins)


def _cases(seed: int):
    from spineinstanceseg.volume import Volume

    try:
        from spineinstanceseg.phantom import generate_phantom
    except ImportError:
        generate_phantom = None
    if generate_phantom is not None:
        case = generate_phantom(seed, modality="ct", region="whole", spacing=(2.0, 2.0, 2.0), curvature=True)
        whole = (case.semantic, case.instances)
        return {"24": whole, "8": _crop_lowest(*whole, 8)}, f"phantom (whole spine, seed {seed}, 2 mm)"
    sys.path.insert(0, "Testing")
    from stage2_helpers import box_spine

    out = {}
    for n in (24, 8):
        sem, inst = box_spine(n, height=12, gap=4)
        out[str(n)] = (Volume(sem, (2.0, 2.0, 2.0), is_label=True), Volume(inst, (2.0, 2.0, 2.0), is_label=True))
    return out, "box stacks (phantom generator not available)"


def _model(kind: str, cases):
    """The model to time and a sentence saying what it is."""
    if kind in ("auto", "bundled"):
        try:
            from spineinstanceseg.stage2.model import load_bundled_model

            model = load_bundled_model(device="cpu")
            return (lambda sem, inst: model), f"bundled model {model.config.name}"
        except Exception as exc:  # noqa: BLE001 - report why and fall back
            if kind == "bundled":
                raise
            print(f"(bundled stage-2 model not usable: {exc})")
    if kind in ("auto", "random"):
        try:
            from spineinstanceseg.stage2.model import Stage2Config, Stage2Model

            model = Stage2Model(Stage2Config(), device="cpu")
            return (lambda sem, inst: model), f"randomly initialised network ({model.parameter_count} parameters)"
        except ImportError as exc:
            if kind == "random":
                raise
            print(f"(stage-2 network not available: {exc})")
    sys.path.insert(0, "Testing")
    from stage2_helpers import FakeConfig, OracleModel

    from spineinstanceseg.stage2.windows import WindowSpec

    config = FakeConfig(window=WindowSpec())
    return (lambda sem, inst: OracleModel(sem, inst, config)), "ORACLE model (no network: times the non-learned parts)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("auto", "bundled", "random", "oracle"), default="auto")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=1, help="runs per case; the fastest counts")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(max(1, args.threads))
    from spineinstanceseg.stage2.predict import split_instances

    cases, source = _cases(args.seed)
    factory, what = _model(args.model, cases)
    print(f"stage-2 benchmark on CPU ({args.threads} thread(s)); cases: {source}; model: {what}")
    rows = {}
    for name in ("8", "24"):
        sem, inst = cases[name]
        best = None
        for _ in range(max(1, args.repeat)):
            model = factory(sem, inst)
            t = time.perf_counter()
            result = split_instances(sem, model=model, batch_size=args.batch_size)
            wall = time.perf_counter() - t
            if best is None or wall < best[0]:
                best = (wall, result)
        wall, result = best
        tm = result.timings
        n_out = int(np.asarray(result.instances.array).max())
        rows[name] = wall
        per_window = 1000.0 * tm["network"] / max(result.n_windows, 1)
        print(
            f"  {name:>2}-vertebra case: grid {sem.shape}, {result.n_windows} windows -> {n_out} vertebrae; "
            f"total {wall:.2f} s | network {tm['network']:.2f} s ({per_window:.0f} ms/window) | "
            f"centroids {tm['centroids']:.2f} s | fusion {1000 * tm['fusion']:.0f} ms | "
            f"working grid {1000 * tm['working_grid']:.0f} ms | back to input grid {1000 * tm['to_input_grid']:.0f} ms"
        )
    ratio = rows["24"] / rows["8"]
    verdict = "OK" if ratio <= GOAL_RATIO else "ABOVE GOAL"
    print(f"  ratio 24/8 vertebrae: {ratio:.2f}x (goal <= {GOAL_RATIO}x: {verdict})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
