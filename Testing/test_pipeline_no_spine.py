"""An image without a spine ends with "no spine found" and no outputs, with the bundled models (CPU).

Before the anatomical sanity step (:mod:`spineinstanceseg.stage2.sanity`) a Gaussian-noise image gave two
"vertebrae" and exit code 0; stage 1 marks specks of noise as vertebra and stage 2 dutifully splits them.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from spineinstanceseg.cli.main import main
from spineinstanceseg.errors import NoSpineFoundError
from spineinstanceseg.io import write_volume
from spineinstanceseg.phantom import generate_phantom
from spineinstanceseg.pipeline import segment
from spineinstanceseg.progress import Progress
from spineinstanceseg.semantic import VERTEBRA
from spineinstanceseg.volume import Volume


@pytest.fixture(scope="module")
def models():
    """Both bundled models (stage 1 without mirroring) from the process-wide model cache: the instances the CLI run
    below (``--mirroring off``) and other test modules use, loaded once."""
    from spineinstanceseg.pipeline.models import load_stage1, load_stage2
    from spineinstanceseg.pipeline.options import SegmentOptions

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    options = SegmentOptions(device="cpu", stage1_mirroring=False)
    yield load_stage1(options), load_stage2(options)
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def noise():
    """64^3 voxels of 2 mm (12.8 cm a side) of Gaussian noise, nothing else."""
    rng = np.random.default_rng(0)
    return Volume(rng.normal(0.0, 1.0, (64, 64, 64)).astype(np.float32), (2.0, 2.0, 2.0))


def test_noise_image_is_no_spine(noise, models):
    stage1, stage2 = models
    semantic, _ = stage1.predict(noise, progress=Progress())
    assert np.any(np.asarray(semantic.array) == VERTEBRA)  # stage 1 does see "vertebra" in the noise
    with pytest.raises(NoSpineFoundError, match="no spine found") as info:
        segment(noise, stage1=semantic, stage2=stage2, device="cpu", source="noise.nii.gz")
    message = str(info.value)
    assert message.startswith("noise.nii.gz: no spine found: ")
    assert "Fix: check that the image shows the spine" in message


def test_cli_on_noise_exits_1_and_writes_no_case_folder(noise, tmp_path, capsys):
    image = write_volume(noise, tmp_path / "noise.nii.gz")
    out = tmp_path / "out"
    code = main(["segment", str(image), str(out), "--device", "cpu", "--mirroring", "off"])
    err = capsys.readouterr().err
    assert code == 1, err  # the README's exit code for "no spine found"
    assert "no spine found" in err and "noise.nii.gz" in err
    assert not out.exists() or not any(out.rglob("*")), sorted(out.rglob("*"))


def spine_removed(seed: int, *, rim: int) -> Volume:
    """A lumbar CT phantom whose vertebrae and sacrum (grown by ``rim`` voxels, which takes their partial-volume
    edge too) are soft tissue: 40 HU plus the image's own noise level. Discs, canal, muscles, ribs and pelvis stay."""
    case = generate_phantom(seed, modality="ct", region="lumbar", spacing=(2.0, 2.0, 2.0))
    image = np.asarray(case.image.array, dtype=np.float32).copy()
    spine = np.asarray(case.instances.array) > 0  # vertebrae and sacrum (VerSe 26)
    if rim:
        spine = ndimage.binary_dilation(spine, iterations=rim)
    tissue = (image > -50) & (image < 120) & ~ndimage.binary_dilation(spine, iterations=2)
    step = (image[1:] - image[:-1])[tissue[1:] & tissue[:-1]]  # neighbour differences: sqrt(2) x the noise
    noise_sd = float(np.median(np.abs(step - np.median(step))) * 1.4826 / np.sqrt(2))
    rng = np.random.default_rng(seed)
    image[spine] = 40.0 + rng.normal(0.0, noise_sd, int(spine.sum()))
    return case.image.with_array(image)


@pytest.mark.parametrize(
    ("seed", "rim"),
    [(7, 0), pytest.param(11, 1, marks=pytest.mark.slow)],  # ~13 s each on one CPU thread
    ids=["labels-only", "with-partial-volume-rim"],
)
def test_phantom_with_its_spine_removed_is_no_spine(seed, rim, models):
    stage1, stage2 = models
    image = spine_removed(seed, rim=rim)
    # Stage 1 still draws a spine between the discs and the canal (7-8 instances of 20-95 mL, confidence up to
    # 0.99): in a CT, its soft-tissue content gives it away.
    with pytest.raises(NoSpineFoundError, match="no spine found"):
        segment(image, stage1=stage1, stage2=stage2, device="cpu", source=f"phantom{seed}-no-spine")
