"""A CT stored without its rescale to Hounsfield units (air near 0, water near 1024) is named in a warning: it is
taken for MRI, so the CT-only steps are skipped, and the user is told how to convert it. An MRI whose numbers
happen to lie in that range is not (its canal does not read as water)."""

from __future__ import annotations

import numpy as np
import pytest

from spineinstanceseg.cli.main import main
from spineinstanceseg.io import write_volume
from spineinstanceseg.phantom import generate_phantom
from spineinstanceseg.pipeline.raw_ct import unrescaled_ct_warning
from spineinstanceseg.stage2.sanity import image_is_ct
from spineinstanceseg.volume import Volume

RAW_CT_WORDS = "CT stored without its rescale"


@pytest.fixture(scope="module")
def ct_case():
    return generate_phantom(4311, modality="ct", region="lumbar", spacing=(1.2, 1.2, 2.0), oblique_deg=6.0)


def _raw(image: Volume, *, dtype=np.uint16) -> Volume:
    """The phantom as a scanner stores it: HU + 1024 in whole numbers (air at about 24)."""
    return image.with_array(np.clip(np.round(np.asarray(image.array) + 1024.0), 0, None).astype(dtype))


def test_a_raw_ct_is_recognised_and_the_hu_ct_is_not(ct_case):
    raw = _raw(ct_case.image)
    assert not image_is_ct(raw)  # the gap the warning speaks of
    message = unrescaled_ct_warning(raw, ct_case.semantic)
    assert message is not None and RAW_CT_WORDS in message and "RescaleIntercept" in message
    assert unrescaled_ct_warning(_raw(ct_case.image, dtype=np.int32), ct_case.semantic) is not None
    assert unrescaled_ct_warning(ct_case.image, ct_case.semantic) is None  # HU already


@pytest.mark.parametrize("modality, spacing", [("t1", (3.5, 0.8, 0.8)), ("t2", (3.5, 0.8, 0.8))])
def test_mri_gets_no_such_warning(modality, spacing):
    case = generate_phantom(4311, modality=modality, region="lumbar", spacing=spacing)
    image, semantic = case.image, case.semantic
    assert unrescaled_ct_warning(image, semantic) is None
    as_uint8 = np.asarray(image.array) * (255.0 / float(np.max(image.array)))
    assert unrescaled_ct_warning(image.with_array(np.round(as_uint8).astype(np.uint8)), semantic) is None
    # whole-number MR magnitudes scaled so that the image's median lands where soft tissue would in a raw CT
    scaled = np.round(np.asarray(image.array) * (1060.0 / float(np.median(image.array)))).astype(np.uint16)
    assert unrescaled_ct_warning(image.with_array(scaled), semantic) is None


def test_fractional_values_are_not_taken_for_raw_scanner_values(ct_case):
    shifted = ct_case.image.with_array(np.asarray(ct_case.image.array, dtype=np.float64) + 1024.25)
    assert unrescaled_ct_warning(shifted, ct_case.semantic) is None


def test_without_a_canal_there_is_no_call(ct_case):
    """Stage 1 found no canal (vertebra-only masks): the values alone decide nothing, so no warning."""
    from spineinstanceseg.semantic import CANAL

    no_canal = np.where(np.asarray(ct_case.semantic.array) == CANAL, 0, ct_case.semantic.array)
    assert unrescaled_ct_warning(_raw(ct_case.image), ct_case.semantic.with_array(no_canal)) is None


def test_the_cli_prints_the_warning_and_keeps_it_in_the_report(tmp_path, capsys, ct_case):
    import json

    image = write_volume(_raw(ct_case.image), tmp_path / "raw_ct.nii.gz")
    mask = write_volume(ct_case.semantic, tmp_path / "raw_ct_mask.nii.gz")
    code = main(["segment", str(image), str(tmp_path / "out"), "--mask", str(mask), "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 0
    assert any(line.startswith("warning: ") and RAW_CT_WORDS in line for line in err.splitlines())
    report = json.loads((tmp_path / "out" / "raw_ct" / "raw_ct_report.json").read_text())
    assert any(RAW_CT_WORDS in w for w in report["warnings"])

    hu_image = write_volume(ct_case.image, tmp_path / "hu_ct.nii.gz")
    assert main(["segment", str(hu_image), str(tmp_path / "out"), "--mask", str(mask), "--device", "cpu"]) == 0
    assert RAW_CT_WORDS not in capsys.readouterr().err
