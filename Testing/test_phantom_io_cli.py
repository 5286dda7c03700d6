"""Phantom files (write/read round trip), the `spineseg phantom` command and the PNG preview."""

from __future__ import annotations

import json

import numpy as np
import pytest

from spineinstanceseg.cli.main import main
from spineinstanceseg.errors import InputError
from spineinstanceseg.io import read_volume
from spineinstanceseg.phantom import generate_phantom, read_phantom_case, save_preview_png, write_phantom_case


@pytest.fixture(scope="module")
def case():
    return generate_phantom(21, modality="t2", spacing=(2.0, 2.0, 3.0), oblique_deg=10.0)


def test_write_read_round_trip(case, tmp_path):
    paths = write_phantom_case(case, tmp_path / "out", "c021")
    assert set(paths) == {"image", "instances", "semantic", "centroids", "meta"}
    assert all(p.exists() for p in paths.values())
    assert not list((tmp_path / "out").glob(".*partial*"))  # no temporary files left
    back = read_phantom_case(tmp_path / "out", "c021")
    for name in ("image", "instances", "semantic"):
        a, b = getattr(case, name), getattr(back, name)
        assert a.same_grid(b) and a.is_label == b.is_label
        np.testing.assert_array_equal(a.array, b.array)
    assert back.instances.dtype == np.int16 and back.semantic.dtype == np.uint8
    assert back.centroids.keys() == case.centroids.keys()
    for code in case.centroids:
        np.testing.assert_allclose(back.centroids[code], case.centroids[code], atol=1e-9)
    assert back.meta == case.meta
    data = json.loads(paths["centroids"].read_text())
    assert data["coordinate_system"] == "LPS" and data["label_convention"] == "VerSe"
    assert {c["level"] for c in data["centroids"]} >= {"L1", "L5", "S"}


def test_read_missing_case_names_the_files(tmp_path):
    with pytest.raises(InputError, match="missing"):
        read_phantom_case(tmp_path, "nothing")


def test_cli_writes_cases_and_reports(tmp_path, capsys):
    out = tmp_path / "ph"
    rc = main(
        [
            "phantom",
            str(out),
            "--n",
            "2",
            "--seed",
            "7",
            "--spacing",
            "3",
            "--modality",
            "t1",
            "--hard-case",
            "fused",
            "--preview",
        ]
    )
    assert rc == 0
    for seed in (7, 8):
        stem = f"phantom_t1_{seed:05d}"
        for suffix in (
            "_image.nii.gz",
            "_instances.nii.gz",
            "_semantic.nii.gz",
            "_centroids.json",
            "_meta.json",
            "_preview.png",
        ):
            assert (out / f"{stem}{suffix}").exists(), stem + suffix
        img = read_volume(out / f"{stem}_image.nii.gz")
        assert img.spacing == pytest.approx((3.0, 3.0, 3.0))
        meta = json.loads((out / f"{stem}_meta.json").read_text())
        assert meta["seed"] == seed and meta["hard_case"] == "fused" and meta["modality"] == "t1"
    printed = capsys.readouterr().out
    assert "wrote 2 case(s)" in printed and str(out.resolve()) in printed


@pytest.mark.parametrize(
    "argv",
    [
        ["--n", "0"],
        ["--spacing", "1", "2"],
        ["--spacing", "0"],
        ["--oblique", "120"],
        ["--seed", "-1"],
        ["--region", "cervical", "--extra-level", "L6"],
    ],
)
def test_cli_bad_values_exit_2(tmp_path, argv, capsys):
    assert main(["phantom", str(tmp_path / "x"), *argv]) == 2
    assert "Fix:" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["--modality", "xray"], ["--hard-case", "broken"], ["--n", "many"]])
def test_cli_bad_options_exit_2(tmp_path, argv):
    with pytest.raises(SystemExit) as info:
        main(["phantom", str(tmp_path / "x"), *argv])
    assert info.value.code == 2


def test_preview_png_has_two_panels_per_case(case, tmp_path):
    ct = generate_phantom(21, spacing=2.0)
    path = save_preview_png([ct, case], tmp_path / "prev.png", dpi=50)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image as mpimg

    pixels = mpimg.imread(path)
    assert pixels.shape[1] > 2 * pixels.shape[0]  # four panels side by side
    assert pixels[..., :3].std() > 0.05  # not blank
