"""Windows turned about the left-right axis (stage2.window_pitch): sampling, the choice, and the turn back."""

from __future__ import annotations

import numpy as np

from spineinstanceseg.stage2.window_pitch import PitchSearch, certainty, pick_pitch, pitched_inputs
from spineinstanceseg.stage2.windows import crop_window

SIZE = (24, 24, 24)


def leaning_bar(shape=(40, 40, 40), lean_deg=20.0) -> np.ndarray:
    """A bar through the volume centre whose top leans towards anterior (lower index of axis 1, P) by
    ``lean_deg`` from axis 2 (S): the working grid's picture of a vertebra leaning forwards."""
    grid = np.indices(shape).astype(float) - (np.asarray(shape, dtype=float)[:, None, None, None] - 1) / 2
    a = np.deg2rad(lean_deg)
    across = grid[1] * np.cos(a) + grid[2] * np.sin(a)  # distance from the bar's axis in the sagittal plane
    return ((np.abs(across) <= 1.5) & (np.abs(grid[0]) <= 1.5)).astype(np.uint8)


def test_upright_turn_is_exactly_the_cropped_window_also_past_the_volume_edge():
    volume = np.random.default_rng(0).integers(0, 4, (30, 30, 30)).astype(np.uint8)
    for corner in ((3, 3, 3), (-5, 10, 20)):
        turned = pitched_inputs(volume, corner, SIZE, (0.0,), order=0)
        np.testing.assert_array_equal(turned[0], crop_window(volume, corner, SIZE))


def test_a_positive_turn_stands_a_forward_leaning_bar_upright():
    bar = leaning_bar(lean_deg=20.0)
    corner = tuple(int(v) for v in (np.asarray(bar.shape) - SIZE) // 2)
    upright, plus, minus = pitched_inputs(bar, corner, SIZE, (0.0, 20.0, -20.0), order=0)

    def spread_across(window):  # how far the bar's voxels stray from the window's own superior axis
        idx = np.argwhere(window > 0).astype(float) - (np.asarray(SIZE) - 1) / 2
        return float(np.abs(idx[:, 1]).max())

    assert spread_across(plus) <= 2.0
    assert spread_across(upright) > 3.0 and spread_across(minus) > spread_across(upright)


def _confident(labels: np.ndarray, certainty_of_top: float) -> np.ndarray:
    """(4, *size) probabilities whose top class is ``labels`` with probability ``certainty_of_top``."""
    rest = (1.0 - certainty_of_top) / 3.0
    return np.where(np.eye(4, dtype=bool)[labels].transpose(3, 0, 1, 2), certainty_of_top, rest).astype(np.float32)


def test_the_upright_answer_stays_unless_a_turn_is_clearly_more_certain():
    vertebra = np.zeros(SIZE, bool)
    vertebra[8:16, 8:16, 8:16] = True
    labels = np.where(vertebra, 2, 0)
    search = PitchSearch(angles_deg=(20.0,), min_gain=0.05)
    upright = _confident(labels, 0.90)
    assert abs(certainty(vertebra, upright) - 0.90) < 1e-6
    slightly = np.stack([upright, _confident(np.where(vertebra, 1, 0), 0.93)])
    chosen, angle = pick_pitch(slightly, np.stack([vertebra, vertebra]), (0.0, 20.0), search)
    assert angle == 0.0 and np.array_equal(chosen, labels)
    clearly = np.stack([upright, _confident(np.where(vertebra, 1, 0), 0.99)])
    chosen, angle = pick_pitch(clearly, np.stack([vertebra, vertebra]), (0.0, 20.0), search)
    assert angle == 20.0 and np.mean(chosen[vertebra] == 1) > 0.7  # the turned answer, turned back


def test_a_turned_answer_is_turned_back_onto_the_grid():
    """The network's answer in the turned window (the upright bar there is 'centre') lands on the leaning bar."""
    bar = leaning_bar(shape=SIZE, lean_deg=20.0).astype(bool)
    turned_input = pitched_inputs(bar.astype(np.uint8), (0, 0, 0), SIZE, (20.0,), order=0)[0] > 0
    answers = np.stack([_confident(np.zeros(SIZE, int), 0.5), _confident(np.where(turned_input, 2, 0), 0.99)])
    chosen, angle = pick_pitch(answers, np.stack([bar, turned_input]), (0.0, 20.0), PitchSearch())
    assert angle == 20.0
    inner = np.zeros(SIZE, bool)
    inner[4:-4, 4:-4, 4:-4] = True  # the turned window's corners read outside the grid
    on_bar = (chosen == 2) & inner
    assert (on_bar & bar).sum() / max(on_bar.sum(), 1) > 0.8
    assert (on_bar & bar).sum() / (bar & inner).sum() > 0.8


def test_segment_and_the_cli_can_run_stage_2_upright_only():
    """``--no-pitch-search`` reaches the options, and ``segment(pitch_search=False)`` sends each window through the
    network once (the default sends the windows it is unsure of again, turned)."""
    import argparse

    from spineinstanceseg.cli.segment_options import add_segment_options, options_from_args
    from spineinstanceseg.phantom import generate_phantom
    from spineinstanceseg.pipeline import segment
    from spineinstanceseg.stage2.model import load_bundled_model
    from spineinstanceseg.stage2.window_pitch import DEFAULT_PITCH_SEARCH

    parser = argparse.ArgumentParser()
    add_segment_options(parser)
    assert options_from_args(parser.parse_args(["--device", "cpu"])).pitch_search is True
    assert options_from_args(parser.parse_args(["--device", "cpu", "--no-pitch-search"])).pitch_search is False

    class CountingModel:  # the bundled network, made less sure of itself: every window is below the search's gate
        def __init__(self):
            self.inner = load_bundled_model(device="cpu")
            self.config, self.batches = self.inner.config, []

        def predict_windows(self, inputs):
            self.batches.append(len(inputs))
            return 0.9 * np.asarray(self.inner.predict_windows(inputs)) + 0.025

    case = generate_phantom(4244, modality="ct", region="lumbar", spacing=(1.5, 1.5, 2.0))
    runs = {}
    for pitch_search in (True, False):
        model = CountingModel()
        result = segment(case.image, stage1=case.semantic, stage2=model, device="cpu", pitch_search=pitch_search)
        runs[pitch_search] = (model.batches, len(result.vertebrae))
    searched, upright = runs[True][0], runs[False][0]
    turns = len(DEFAULT_PITCH_SEARCH.angles_deg)
    assert DEFAULT_PITCH_SEARCH.search_below > 0.9 + 0.025
    # the same upright batches, and after each window one more call with its turns
    assert len(searched) == len(upright) + sum(upright) and sum(searched) == (1 + turns) * sum(upright)
    assert runs[True][1] == runs[False][1] >= 5
