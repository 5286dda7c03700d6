"""The bundled stage-1 nnU-Net model: it ships with a card and checksums, loads weights-only, and segments
held-out CT-like and MRI-like phantoms on tilted, anisotropic grids on the CPU."""

from __future__ import annotations

import numpy as np
import pytest

from spineinstanceseg.phantom import generate_phantom
from spineinstanceseg.semantic import VERTEBRA
from spineinstanceseg.stage1.sources import bundled_source, bundled_stage1_dir


@pytest.fixture(scope="module")
def bundled():
    import torch

    torch.set_num_threads(2)
    return bundled_source(device="cpu")


def _vertebra_dice(predicted, reference) -> float:
    a, b = np.asarray(predicted.array) == VERTEBRA, np.asarray(reference.array) == VERTEBRA
    return 2.0 * float(np.logical_and(a, b).sum()) / float(a.sum() + b.sum())


def test_bundled_model_has_a_card_with_checksums_and_scores(bundled):
    card = bundled.model.card
    assert card is not None and card.weights_only
    assert set(card.checksums) == {"fold_all/checkpoint_final.pth"}
    assert card.classes == {"vertebra": [1], "disc": [2], "canal": [3], "sacrum": [4]}
    assert card.scores["held_out_phantoms_vertebra_dice"] >= 0.9
    size_mb = sum(p.stat().st_size for p in bundled_stage1_dir().rglob("*") if p.is_file()) / 1e6
    assert size_mb <= 30, size_mb
    info = bundled.model_info()
    assert info["use_mirroring"] is False and info["sha256"] == card.checksums


@pytest.mark.parametrize(
    ("modality", "spacing", "tilt"),
    [("ct", (1.6, 1.6, 2.5), 12.0), ("t2", (3.5, 1.5, 1.5), 8.0)],
)
def test_bundled_model_segments_held_out_phantoms(bundled, modality, spacing, tilt):
    from spineinstanceseg.progress import Progress

    case = generate_phantom(930000, modality=modality, region="lumbar", spacing=spacing, oblique_deg=tilt)
    semantic, warnings = bundled.predict(case.image, progress=Progress())
    assert semantic.same_grid(case.image, tol=1e-6) and semantic.is_label
    assert set(np.unique(semantic.array)) <= {0, 1, 2, 3, 4}
    dice = _vertebra_dice(semantic, case.semantic)
    print(f"\nbundled stage 1 on a held-out {modality} phantom {spacing} mm, tilt {tilt}: vertebra Dice {dice:.3f}")
    assert dice >= 0.85
    assert warnings == []
