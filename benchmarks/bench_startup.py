"""Benchmark the fixed cost of one ``spineseg segment --mask`` run: imports, model loads, writing, vs the pipeline.

Prints, for the built-in example (a lumbar CT phantom and its semantic mask, ``spineinstanceseg.examples``):

1. **Import time** in fresh interpreters (median of ``--repeat``): the CLI module alone (what ``spineseg --help``
   and building the parser cost) and everything a ``segment --mask`` run imports, summed from ``-X importtime``
   by top-level package (torch, scipy, SimpleITK, ...), with the biggest single modules.
2. **Wall time** of ``spineseg segment EXAMPLE OUT --mask MASK --device cpu`` (a fresh process running
   ``python -m spineinstanceseg.cli.main``, what the ``spineseg`` script runs; median of
   ``--repeat``) against the pipeline seconds the run itself reports (``timings_s.total`` of its report), and the
   ratio ``wall / pipeline`` (1.0 would mean no fixed cost at all); also the process's CPU time, which a loaded
   machine inflates much less than wall time. With ``--baseline CHECKOUT`` the runs alternate between that
   checkout's library and this one's, so that a before/after comparison sees the same machine load.
3. **Where the rest goes**: one more run in a driver that times the phases of ``segment_file`` (device check,
   reading, mask source, stage-2 model load, pipeline, writing outputs) and lists the files written.

Usage::

    python benchmarks/bench_startup.py                   # defaults: the built-in example, 3 repeats
    python benchmarks/bench_startup.py --repeat 5 --top 15
    python benchmarks/bench_startup.py --python /path/to/venv/bin/python
    git worktree add /tmp/before HEAD~5 && python benchmarks/bench_startup.py --baseline /tmp/before

Numbers depend on the machine and on its load; compare ratios measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LOGIC = REPO / "SpineInstanceSeg" / "Logic"
CLI = "spineinstanceseg.cli.main"

# Run in the driver process: time the phases of segment_file by wrapping the names it calls.
DRIVER = r"""
import json, sys, time
t0 = time.perf_counter()
from spineinstanceseg.cli.main import main
import spineinstanceseg.pipeline.segment_file as sf
phases = {"import cli.main + pipeline.segment_file": time.perf_counter() - t0}

def timed(label, fn):
    def wrapper(*args, **kwargs):
        t = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            phases[label] = phases.get(label, 0.0) + time.perf_counter() - t
    return wrapper

for name, label in [("resolve_device", "resolve device"), ("read_volume", "read image"),
                    ("check_image", "check image"), ("load_stage1", "stage-1 source (mask read lazily)"),
                    ("load_stage2", "load stage-2 model"), ("segment", "segment() (pipeline)"),
                    ("write_all", "write outputs")]:
    if hasattr(sf, name):
        setattr(sf, name, timed(label, getattr(sf, name)))
t = time.perf_counter()
code = main(sys.argv[1:])
phases["main() in all"] = time.perf_counter() - t
phases["process in all (after interpreter start)"] = time.perf_counter() - t0
heavy = ["torch", "nnunetv2", "skimage", "scipy.ndimage", "scipy.signal", "scipy.stats", "dask", "distributed",
         "vtk", "slicerio", "matplotlib", "PIL", "SimpleITK", "pandas", "tqdm"]
print("BENCH-JSON", json.dumps({"phases": phases, "loaded": [m for m in heavy if m in sys.modules]}))
sys.exit(code)
"""


def _env(logic: Path = LOGIC) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(logic), *filter(None, [env.get("PYTHONPATH")])])
    return env


def _run(cmd: list[str], *, logic: Path = LOGIC, timeout: float = 900) -> tuple[float, subprocess.CompletedProcess]:
    wall, _, proc = _run_timed(cmd, logic=logic, timeout=timeout)
    return wall, proc


def _run_timed(
    cmd: list[str], *, logic: Path = LOGIC, timeout: float = 900
) -> tuple[float, float, subprocess.CompletedProcess]:
    """Wall seconds, CPU seconds (user + system, all threads) and the finished process of ``cmd``.

    CPU time suffers much less than wall time when other jobs load the machine.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(logic), timeout=timeout)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    return wall, cpu, proc


def _import_seconds(python: str, module: str, repeat: int, *, logic: Path = LOGIC) -> float:
    """Median time to import ``module`` in a fresh interpreter (measured inside it, interpreter start excluded)."""
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    runs = (_run([python, "-c", code], logic=logic)[1].stdout.split()[-1] for _ in range(repeat))
    return statistics.median(float(seconds) for seconds in runs)


def _interpreter_seconds(python: str, repeat: int) -> float:
    return statistics.median(_run([python, "-c", "pass"])[0] for _ in range(repeat))


def _parse_importtime(stderr: str) -> list[tuple[str, int, int]]:
    """``(module, self_us, cumulative_us)`` from the ``-X importtime`` lines of a run."""
    rows = []
    for line in stderr.splitlines():
        if line.startswith("import time:") and "self [us]" not in line:
            self_us, cum_us, name = line.removeprefix("import time:").split("|", 2)
            rows.append((name.strip(), int(self_us), int(cum_us)))
    return rows


def _by_package(rows: list[tuple[str, int, int]]) -> list[tuple[str, int, str, int]]:
    """Per top-level package: its modules' self times summed, and its biggest import (module, cumulative)."""
    total: dict[str, int] = defaultdict(int)
    biggest: dict[str, tuple[str, int]] = {}
    for name, self_us, cum_us in rows:
        package = name.split(".")[0]
        total[package] += self_us
        if cum_us > biggest.get(package, ("", -1))[1]:
            biggest[package] = (name, cum_us)
    return sorted(((p, us, *biggest[p]) for p, us in total.items()), key=lambda row: -row[1])


def _segment_cmd(python: str, case, out: Path, extra: list[str]) -> list[str]:
    return [
        python,
        "-m",
        "spineinstanceseg.cli.main",
        "segment",
        str(case.image),
        str(out),
        "--mask",
        str(case.semantic),
        "--device",
        "cpu",
        *extra,
    ]


def _report(out: Path) -> dict:
    return json.loads(next(out.rglob("*_report.json")).read_text(encoding="utf-8"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", default=sys.executable, help="interpreter to run (default: this one)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement, median reported (default: 3)")
    parser.add_argument("--top", type=int, default=12, help="how many packages/modules to list (default: 12)")
    parser.add_argument("--export", help="passed on as segment --export (default: the default outputs)")
    parser.add_argument("--keep", metavar="DIR", help="keep the outputs in DIR (default: a temporary folder)")
    parser.add_argument(
        "--baseline",
        metavar="CHECKOUT",
        help="another checkout of the repository (e.g. 'git worktree add /tmp/base HEAD~3'): its wall time is "
        "measured in alternation with this one's, so that both see the same machine load",
    )
    args = parser.parse_args(argv)

    sys.path.insert(0, str(LOGIC))
    from spineinstanceseg.examples import example_case

    case = example_case()
    extra = ["--export", args.export] if args.export else []
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench_startup_"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"python {args.python}; example {case.image.name} + {case.semantic.name}; repeat {args.repeat}")
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs (timings scale with the load)\n")

    # 1. Imports.
    python_start = _interpreter_seconds(args.python, args.repeat)
    cli_import = _import_seconds(args.python, CLI, args.repeat)
    python, *segment_args = _segment_cmd(args.python, case, work / "importtime", extra)
    _, traced = _run([python, "-X", "importtime", *segment_args])
    rows = _parse_importtime(traced.stderr)
    total_us = sum(self_us for _, self_us, _ in rows)
    print("1. imports (fresh interpreters)")
    print(f"   interpreter start ('python -c pass', wall)    {python_start:7.2f} s")
    print(f"   import spineinstanceseg.cli.main              {cli_import:7.2f} s")
    print(f"   all imports of a segment --mask run           {total_us / 1e6:7.2f} s   ({len(rows)} modules)")
    print("   by top-level package: self times summed; its biggest import (cumulative, includes what it pulls in)")
    for package, us, module, cum_us in _by_package(rows)[: args.top]:
        print(f"     {package:20s} {us / 1e6:6.2f} s   {module:44s} {cum_us / 1e6:6.2f} s")

    # 2. Wall time vs the pipeline's own seconds (alternating with the baseline checkout, if one is given).
    checkouts = {"this checkout": LOGIC}
    if args.baseline:
        baseline = Path(args.baseline).resolve()
        checkouts = {"baseline": baseline / "SpineInstanceSeg" / "Logic", **checkouts}
    measured: dict[str, dict[str, list[float]]] = {name: defaultdict(list) for name in checkouts}
    for k in range(args.repeat):
        for name, logic in checkouts.items():
            out = work / f"run{k}-{name.replace(' ', '_')}"
            shutil.rmtree(out, ignore_errors=True)
            wall, cpu, _ = _run_timed(_segment_cmd(args.python, case, out, extra), logic=logic)
            for key, value in (("wall", wall), ("cpu", cpu), ("pipeline", _report(out)["timings_s"]["total"])):
                measured[name][key].append(float(value))
    print("\n2. spineseg segment EXAMPLE OUT --mask MASK --device cpu")
    runs = lambda values: ", ".join(f"{v:.2f}" for v in values)  # noqa: E731
    for name, values in measured.items():
        wall, cpu, pipe = (statistics.median(values[key]) for key in ("wall", "cpu", "pipeline"))
        if len(checkouts) > 1:
            cli = (
                cli_import
                if name == "this checkout"
                else _import_seconds(args.python, CLI, args.repeat, logic=checkouts[name])
            )
            print(f"   {name} ({checkouts[name].parent.parent}): import {CLI} {cli:.2f} s")
        print(f"   wall time (fresh process)                     {wall:7.2f} s   runs: {runs(values['wall'])}")
        print(f"   CPU time of the process (user + system)       {cpu:7.2f} s   runs: {runs(values['cpu'])}")
        print(f"   pipeline (report timings_s.total)             {pipe:7.2f} s   runs: {runs(values['pipeline'])}")
        print(f"   fixed cost (wall - pipeline)                  {wall - pipe:7.2f} s")
        print(f"   ratio wall / pipeline                         {wall / pipe:7.2f}")
    wall, pipe = (statistics.median(measured["this checkout"][key]) for key in ("wall", "pipeline"))

    # 3. Phases of one run.
    out = work / "phases"
    shutil.rmtree(out, ignore_errors=True)
    driver_cmd = [args.python, "-c", DRIVER, *_segment_cmd(args.python, case, out, extra)[3:]]
    driver_wall, proc = _run(driver_cmd)
    data = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("BENCH-JSON"))[11:])
    print(f"\n3. phases of one run (driver process, wall {driver_wall:.2f} s)")
    for label, seconds in data["phases"].items():
        print(f"   {label:46s} {seconds:7.2f} s")
    print(f"   heavy packages loaded: {', '.join(data['loaded']) or 'none'}")
    files = sorted(p for p in out.rglob("*") if p.is_file())
    print(f"   files written ({len(files)}, {sum(p.stat().st_size for p in files) / 1024:.0f} KiB):")
    for path in files:
        print(f"     {path.relative_to(out)}  ({path.stat().st_size / 1024:.0f} KiB)")

    print(f"\nsummary: wall {wall:.2f} s, pipeline {pipe:.2f} s, ratio {wall / pipe:.2f};")
    print(f"         import cli.main {cli_import:.2f} s, all imports {total_us / 1e6:.2f} s")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
