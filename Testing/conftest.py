"""Shared pytest fixtures: small volumes with oblique, anisotropic geometry, the shared real data, and the
expensive runs that several test modules assert on (each done once per session)."""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from spineinstanceseg.volume import Volume

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


def oblique_direction(degrees: float = 20.0, *, seed: int = 0) -> np.ndarray:
    """An orthonormal direction matrix rotated by ``degrees`` about a random axis."""
    rng = np.random.default_rng(seed)
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    return Rotation.from_rotvec(np.deg2rad(degrees) * axis).as_matrix()


@pytest.fixture
def oblique_label_volume() -> Volume:
    """A 0.6 x 0.6 x 4 mm oblique label map with three blocky labels (uint8)."""
    array = np.zeros((50, 40, 12), dtype=np.uint8)
    array[5:25, 5:30, 2:6] = 1
    array[25:45, 5:30, 2:6] = 2
    array[10:40, 10:35, 7:11] = 3
    return Volume(array, (0.6, 0.6, 4.0), (12.5, -30.25, 101.0), oblique_direction(25.0), is_label=True)


@pytest.fixture
def oblique_image_volume() -> Volume:
    rng = np.random.default_rng(1)
    array = rng.normal(100.0, 20.0, size=(30, 26, 10)).astype(np.float32)
    return Volume(array, (0.7, 0.9, 3.5), (-5.0, 7.5, 42.0), oblique_direction(15.0, seed=3))


def vertebrae_top_to_bottom(case):
    """A phantom case's vertebrae numbered 1..N top to bottom (sacrum left out) and their centroids (LPS mm)."""
    from spineinstanceseg.levels import SACRUM_CODE

    codes = np.asarray(case.instances.array)
    levels = [c for c in np.unique(codes) if 0 < c < SACRUM_CODE]
    ordinal = np.zeros(codes.shape, np.int16)
    for k, code in enumerate(levels, start=1):
        ordinal[codes == code] = k
    centroids = np.array(
        [case.instances.index_to_world(np.argwhere(ordinal == k).mean(0)) for k in range(1, len(levels) + 1)]
    )
    return ordinal, centroids


def glue_top_of_sacrum(case, ordinal, depth_mm: float):
    """The sacrum voxels within ``depth_mm`` of the lowest vertebra become part of it (semantic: vertebra)."""
    from scipy import ndimage

    from spineinstanceseg.semantic import SACRUM, VERTEBRA

    n = int(ordinal.max())
    sacrum = np.asarray(case.semantic.array) == SACRUM
    to_lowest = ndimage.distance_transform_edt(ordinal != n, sampling=case.image.spacing)
    glued = sacrum & (to_lowest <= depth_mm)
    instances = ordinal.copy()
    instances[glued] = n
    semantic = np.asarray(case.semantic.array).copy()
    semantic[glued] = VERTEBRA
    return instances, case.semantic.with_array(semantic, is_label=True), glued


def returned_to_sacrum(result, glued: np.ndarray, ordinal: np.ndarray) -> tuple[float, float]:
    """(share of the ``glued`` voxels that are background and sacrum in ``result``, share of the true lowest
    vertebra's own voxels it lost): how a step that gives glued sacrum back did."""
    from spineinstanceseg.semantic import SACRUM

    n = int(ordinal.max())
    back = glued & (result.instances == 0) & (np.asarray(result.semantic.array) == SACRUM)
    true_lowest = ordinal == n
    lost = np.count_nonzero(true_lowest & (result.instances != n)) / np.count_nonzero(true_lowest)
    print(f"\nglued {glued.sum()} voxels, {back.sum()} back to the sacrum; L5 lost {lost:.3f} of its own voxels")
    return float(back.sum()) / float(glued.sum()), lost


def require_shared_data(*parts: str) -> Path:
    """Path under ../shared/data, or skip the test with a reason saying what is missing."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared test data not available: {path} is absent (it lives beside the repo in ../shared/data)")
    return path


@dataclass(frozen=True)
class DemoRun:
    """``spineseg demo`` as a user runs it: the exit code, the case folder and what it printed on stdout."""

    code: int
    case_dir: Path
    stdout: str

    def paths(self) -> dict[str, Path]:
        from spineinstanceseg.outputs.writer import case_paths

        return case_paths(self.case_dir, self.case_dir.name)


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory) -> DemoRun:
    """The built-in example through both bundled models, every output written: the most expensive job of the suite,
    run once (``test_cli_demo`` and ``test_pipeline_end_to_end`` assert on it). Stage-1 mirroring is off (8x fewer
    network calls; the only difference to the shipped default, which `make demo` runs)."""
    from spineinstanceseg.cli.main import main
    from spineinstanceseg.examples import EXAMPLE_NAME

    out = tmp_path_factory.mktemp("demo") / "demo-output"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(["demo", str(out), "--mirroring", "off"])
    return DemoRun(code, out / EXAMPLE_NAME, printed.getvalue())


@dataclass(frozen=True)
class SmallCase:
    """Files of a small spine CT: image, semantic map (stage 1 given with ``--mask``) and instance ground truth."""

    image: Path
    semantic: Path
    instances: Path
    complete_levels: frozenset[int]  # vertebrae entirely in view (VerSe codes)
    cut_levels: frozenset[int]  # vertebrae cut by the top edge of the view


@pytest.fixture(scope="session")
def small_example(tmp_path_factory) -> SmallCase:
    """The built-in example cut to its lower 100 of 198 slices: sacrum, L5, L4 and the lower edge of L3.

    For tests of what happens around a run (interrupts, cancels, fallbacks) where the size of the spine does not
    matter: stage 2 has 3 vertebrae to do instead of 7."""
    from spineinstanceseg.examples import example_case
    from spineinstanceseg.io import read_label_map, read_volume, write_volume

    example, folder = example_case(), tmp_path_factory.mktemp("small-example")
    box = (slice(None), slice(None), slice(0, 100))
    files = {}
    for kind, path, reader in (
        ("image", example.image, read_volume),
        ("semantic", example.semantic, read_label_map),
        ("instances", example.instances, read_label_map),
    ):
        files[kind] = write_volume(reader(path).crop(box), folder / f"small_{kind}.nii.gz")
    instances = np.asarray(read_label_map(files["instances"]).array)
    levels = {int(v) for v in np.unique(instances)} - {0, 26}  # 26: sacrum
    cut = {v for v in levels if (instances[..., -1] == v).any()}
    return SmallCase(files["image"], files["semantic"], files["instances"], frozenset(levels - cut), frozenset(cut))
