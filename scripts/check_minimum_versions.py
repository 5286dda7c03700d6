"""Prove the declared lower bounds: install the minimum versions in a fresh venv and run an end-to-end test there.

Every runtime requirement (``SpineInstanceSeg/Logic/spineinstanceseg/requirements/runtime.txt``, the list
pyproject.toml reads) that has a ``>=`` bound is pinned to that
bound with ``==`` (a constraints file written next to the venv), the project is installed with
``pip install -c <pins> -e .[test,batch,slicer]``, the installed versions are checked against the pins, and a
small end-to-end pytest selection runs in that venv (default: :data:`DEFAULT_TESTS`, slow tests included): the
built-in example through both bundled models on the CPU, scored against its ground truth; the bundled stage-1
checkpoint loading weights-only; a cancel inside stage 1's sliding window letting the process exit; and a tiny
stage-1 training with the project's nnU-Net trainer (found through ``nnUNet_extTrainer``) and a prediction with it.

The check follows the file: change a bound in runtime.txt and the check installs the new one. Extras' bounds
(dask, psutil, test tools) are not pinned: they are tools, not what the library runs on.

Usage (about 12 minutes on 2 cores, most of it pip fetching torch 2.1.2 and its CUDA libraries; the venv takes
about 7 GB)::

    python3 scripts/check_minimum_versions.py /tmp/spineseg-min-venv
    python3 scripts/check_minimum_versions.py /tmp/spineseg-min-venv --reuse      # skip the fresh venv
    python3 scripts/check_minimum_versions.py /tmp/v --tests Testing/test_cli_demo.py

Exit code: 0 when the pinned versions installed and every selected test passed; pytest's code when a test failed;
1 when the installed versions differ from the pins; 2 for bad usage.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
EXTRAS = "test,batch,slicer"
DEFAULT_TESTS = (
    "Testing/test_cli_demo.py",
    "Testing/test_stage1_bundled.py::test_bundled_model_has_a_card_with_checksums_and_scores",
    "Testing/test_minimum_versions.py",
    "Testing/test_stage1_integration.py",
)
RUNTIME_REQUIREMENTS = Path("SpineInstanceSeg/Logic/spineinstanceseg/requirements/runtime.txt")
# Printed after the install (the pinned runtime requirements are printed too).
REPORTED = ("torch", "nnunetv2", "numpy", "SimpleITK", "scipy", "scikit-image", "safetensors", "matplotlib")
_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*(.*?)\s*(;.*)?$")


def read_dependencies(requirements: Path) -> list[str]:
    """The requirements of a requirements file (one per line; ``#`` comments on lines of their own)."""
    lines = requirements.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def minimum_pins(requirements: list[str]) -> dict[str, str]:
    """``{name: version}`` of every requirement with a ``>=`` bound (names as written in the file)."""
    pins = {}
    for requirement in requirements:
        match = _REQUIREMENT.match(requirement)
        if not match:
            raise SystemExit(f"check_minimum_versions: cannot read the requirement {requirement!r}")
        name, _extras, spec, _marker = match.groups()
        for clause in (c.strip() for c in spec.split(",")):
            if clause.startswith(">="):
                pins[name] = clause[2:].strip()
    return pins


def _run(command: list[str], *, cwd: Path | None = None, env: dict | None = None) -> int:
    print("$", " ".join(command), flush=True)
    return subprocess.call(command, cwd=cwd, env=env)


def _timed(label: str, started: float, timings: list[tuple[str, float]]) -> None:
    timings.append((label, time.perf_counter() - started))
    print(f"-- {label}: {timings[-1][1]:.0f} s", flush=True)


def installed_versions(python: Path, names: list[str]) -> dict[str, str | None]:
    """Installed distribution versions in the venv of ``python`` (``None`` where a package is missing)."""
    script = (
        "import json, sys\nfrom importlib.metadata import version, PackageNotFoundError\nout = {}\n"
        "for n in sys.argv[1:]:\n"
        "    try: out[n] = version(n)\n"
        "    except PackageNotFoundError: out[n] = None\n"
        "print(json.dumps(out))"
    )
    result = subprocess.run([str(python), "-c", script, *names], capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


def _same_version(installed: str | None, pinned: str) -> bool:
    """``2.1.2+cpu`` satisfies a pin of ``2.1.2``; ``1.0`` and ``1.0.0`` are the same version."""
    if installed is None:
        return False
    base = installed.split("+", 1)[0]

    def parts(v: str) -> list[str]:
        items = v.split(".")
        while items and items[-1] == "0":
            items.pop()
        return items

    return parts(base) == parts(pinned)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("venv", type=Path, help="folder for the venv (an existing venv there is replaced)")
    parser.add_argument("--python", default=sys.executable, help="interpreter that creates the venv (default: this)")
    parser.add_argument("--repo", type=Path, default=REPO_ROOT, help="project root (default: this checkout)")
    parser.add_argument("--reuse", action="store_true", help="install into the existing venv instead of a fresh one")
    parser.add_argument("--tests", nargs="+", default=list(DEFAULT_TESTS), help="pytest node ids, from the root")
    args = parser.parse_args(argv)

    repo = args.repo.resolve()
    venv = args.venv.resolve()
    pins = minimum_pins(read_dependencies(repo / RUNTIME_REQUIREMENTS))
    if not pins:
        print(f"check_minimum_versions: no >= bounds in {RUNTIME_REQUIREMENTS}", file=sys.stderr)
        return 2
    timings: list[tuple[str, float]] = []
    total = time.perf_counter()

    if venv.exists() and not args.reuse:
        if not (venv / "pyvenv.cfg").is_file() and any(venv.iterdir()):
            print(f"check_minimum_versions: {venv} exists and is not a venv; give an empty or new folder",
                  file=sys.stderr)  # fmt: skip
            return 2
        shutil.rmtree(venv)
    python = venv / "bin" / "python"
    if not python.exists():
        started = time.perf_counter()
        if _run([args.python, "-m", "venv", str(venv)]) != 0:
            return 1
        _run([str(python), "-m", "pip", "install", "--quiet", "--upgrade", "pip"])
        _timed("create venv", started, timings)

    constraints = venv / "minimum-constraints.txt"
    constraints.write_text(
        "# The lower bounds of the runtime requirements, pinned (scripts/check_minimum_versions.py)\n"
        + "".join(f"{name}=={version}\n" for name, version in pins.items()),
        encoding="utf-8",
    )
    print("pins:", ", ".join(f"{n}=={v}" for n, v in pins.items()), flush=True)
    print("installing (pip resolves the other packages around the pins; this takes minutes)", flush=True)
    started = time.perf_counter()
    code = _run(
        [str(python), "-m", "pip", "install", "--quiet", "-c", str(constraints), "-e", f".[{EXTRAS}]"],
        cwd=repo,
    )
    _timed("pip install", started, timings)
    if code != 0:
        print("check_minimum_versions: pip could not install the minimum versions (see above)", file=sys.stderr)
        return 1

    names = list(dict.fromkeys([*pins, *REPORTED]))
    versions = installed_versions(python, names)
    print("\ninstalled versions:")
    for name in names:
        print(f"  {name:<14} {versions[name]}")
    wrong = {n: (versions[n], v) for n, v in pins.items() if not _same_version(versions[n], v)}
    if wrong:
        for name, (got, want) in wrong.items():
            print(f"check_minimum_versions: {name} {got} is installed, not the pinned {want}", file=sys.stderr)
        return 1

    started = time.perf_counter()
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    env["SPINESEG_MINIMUM_PINS"] = json.dumps(pins)  # lets a test see which check it runs in
    pytest_command = [str(python), "-m", "pytest", "-p", "no:cacheprovider", "-m", "slow or not slow", *args.tests]
    code = _run(pytest_command, cwd=repo, env=env)
    _timed("pytest", started, timings)

    print("\nsummary")
    print("  python        ", subprocess.check_output([str(python), "--version"], text=True).strip())
    for name in REPORTED:
        print(f"  {name:<14} {versions[name]}")
    for label, seconds in timings:
        print(f"  {label:<14} {seconds:.0f} s")
    print(f"  {'total':<14} {time.perf_counter() - total:.0f} s")
    print(f"  result         {'PASSED' if code == 0 else f'FAILED (pytest exit code {code})'}")
    return code


if __name__ == "__main__":
    sys.exit(main())
