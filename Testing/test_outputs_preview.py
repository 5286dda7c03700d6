"""PNG preview: both panels drawn, every vertebra visible in its colour, superior up whatever the grid orientation."""

from __future__ import annotations

import matplotlib.image as mpimg
import numpy as np
import pytest
from outputs_cases import make_image, make_result, oblique_direction

from spineinstanceseg.outputs import save_preview, segment_table

DIRECTIONS = {
    "oblique": oblique_direction(),
    # Array axis 2 points to the feet here: the vertebra drawn on top must still be the most superior one.
    "oblique-k-inferior": oblique_direction() @ np.diag([1.0, -1.0, -1.0]),
}


def _pixels_of(png: np.ndarray, colour, alpha: float = 0.55) -> np.ndarray:
    """(row, col) of pixels showing ``colour`` blended at ``alpha`` over black (preview without image)."""
    target = np.asarray(colour) * alpha
    return np.argwhere(np.all(np.abs(png[..., :3] - target) < 0.02, axis=-1))


@pytest.mark.parametrize("kind", list(DIRECTIONS))
def test_vertebrae_visible_and_superior_up(tmp_path, kind):
    result = make_result(direction=DIRECTIONS[kind])
    path = save_preview(result, tmp_path / "p.png")
    png = mpimg.imread(path)
    assert png.ndim == 3 and png.shape[0] > 200 and png.shape[1] > 200
    colours = {s.name: s.color for s in segment_table(result).segments}
    rows = {}
    for record in result.vertebrae:
        hits = _pixels_of(png, colours[record.name])
        assert len(hits) > 50, f"{record.name} is not visible in its colour"
        left_panel = hits[hits[:, 1] < png.shape[1] // 2]  # the sagittal panel
        rows[record.name] = left_panel[:, 0].mean()
    by_height = sorted(result.vertebrae, key=lambda r: -r.centroid_lps[2])  # most superior first
    assert [r.name for r in sorted(result.vertebrae, key=lambda r: rows[r.name])] == [r.name for r in by_height]


def test_preview_with_image_and_no_vertebrae(tmp_path):
    result = make_result()
    path = save_preview(result, tmp_path / "with_image.png", image=make_image(result), title="case 7")
    png = mpimg.imread(path)
    grey = np.abs(png[..., 0] - png[..., 1]) + np.abs(png[..., 1] - png[..., 2]) < 1e-3
    assert (grey & (png[..., 0] > 0.2)).sum() > 1000  # the CT is drawn under the labels
    empty = result.__class__(
        instances=result.instances.with_array(np.zeros(result.instances.shape, np.uint8)),
        semantic=result.semantic.with_array(np.zeros(result.instances.shape, np.uint8)),
        vertebrae=(),
        naming_rule="no spine found",
        stage1_source="test",
    )
    assert save_preview(empty, tmp_path / "empty.png").stat().st_size > 0
