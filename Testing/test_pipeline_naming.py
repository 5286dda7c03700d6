"""Level naming happens only when a rule determines it."""

from __future__ import annotations

import pytest

from spineinstanceseg.errors import InputError
from spineinstanceseg.pipeline.naming import name_vertebrae


def test_no_rule_means_numbered_from_top():
    naming = name_vertebrae(3)
    assert naming.names == ("Vertebra 1", "Vertebra 2", "Vertebra 3")
    assert not naming.known and "not determined" in naming.rule


def test_unnamed_levels_say_how_to_name_them():
    for naming in (name_vertebrae(3), name_vertebrae(3, sacrum_below=True, doubts=["a gap"])):
        assert naming.rule.endswith("(give the level of the top or the bottom vertebra in view to name them)")
    assert "give the level" not in name_vertebrae(3, sacrum_below=True).rule


def test_sacrum_counts_up_from_l5():
    naming = name_vertebrae(6, sacrum_below=True)
    assert naming.names == ("T12", "L1", "L2", "L3", "L4", "L5")
    assert naming.codes == (19, 20, 21, 22, 23, 24)
    assert "sacrum" in naming.rule


def test_sacrum_with_l6_and_t13():
    naming = name_vertebrae(8, sacrum_below=True, with_l6=True, with_t13=True)
    assert naming.names == ("T12", "T13", "L1", "L2", "L3", "L4", "L5", "L6")
    assert naming.codes[1] == 28 and naming.codes[-1] == 25


def test_user_anchor_and_lowest():
    assert name_vertebrae(3, anchor="C2").names == ("C2", "C3", "C4")
    assert name_vertebrae(2, lowest="l1").names == ("T12", "L1")
    assert "user" in name_vertebrae(2, lowest="L1").rule


def test_user_level_beats_sacrum_rule():
    assert name_vertebrae(2, sacrum_below=True, lowest="L4").names == ("L3", "L4")


def test_impossible_names_are_errors():
    with pytest.raises(InputError, match="run past C1"):
        name_vertebrae(5, lowest="C3")
    with pytest.raises(InputError, match="with-l6"):
        name_vertebrae(2, lowest="L6")
    with pytest.raises(InputError, match="only one"):
        name_vertebrae(2, lowest="L5", anchor="C1")
    with pytest.raises(InputError, match="unknown vertebral level"):
        name_vertebrae(2, lowest="X9")


def test_too_many_above_sacrum_stays_unnamed():
    naming = name_vertebrae(30, sacrum_below=True)
    assert not naming.known and naming.names[0] == "Vertebra 1"


def test_a_sliver_of_sacrum_is_no_ground_for_counting_levels(small_example):
    """Stage 1 at times calls a piece of a poorly seen L5 "sacrum" (seen on real CT: 2 mL below 33 mL vertebrae);
    counting up from it named every vertebra one level too low. Too little sacrum leaves the levels unnamed."""
    import numpy as np

    from spineinstanceseg.io import read_label_map, read_volume
    from spineinstanceseg.pipeline import segment
    from spineinstanceseg.pipeline.models import load_stage2
    from spineinstanceseg.pipeline.options import SegmentOptions
    from spineinstanceseg.semantic import SACRUM

    semantic = read_label_map(small_example.semantic)
    labels = np.asarray(semantic.array).copy()
    sacrum_slices = np.nonzero((labels == SACRUM).any(axis=(0, 1)))[0]
    labels[..., : sacrum_slices.max()][labels[..., : sacrum_slices.max()] == SACRUM] = 0  # its top slice only
    sliver_ml = (labels == SACRUM).sum() * np.prod(semantic.spacing) / 1000
    assert 0 < sliver_ml < 10

    result = segment(read_volume(small_example.image), stage1=semantic.with_array(labels),
                     stage2=load_stage2(SegmentOptions(device="cpu")), device="cpu")  # fmt: skip

    assert len(result.vertebrae) >= 2
    assert all(record.level_code is None for record in result.vertebrae), result.naming_rule
    assert "too little to count levels from" in result.naming_rule


@pytest.mark.parametrize(("seed", "modality", "region"), [(1, "ct", "lumbar"), (2, "t1", "thoracolumbar")])
def test_a_whole_sacrum_is_enough_to_count_levels_from(seed, modality, region):
    """The sliver rule must not stop naming where the sacrum is in view: a phantom's sacrum holds a few vertebra
    volumes, far above SACRUM_MIN_SHARE (0.4 of one) in pipeline.run."""
    import numpy as np

    from spineinstanceseg.phantom import generate_phantom
    from spineinstanceseg.pipeline.run import SACRUM_MIN_SHARE
    from spineinstanceseg.semantic import SACRUM

    case = generate_phantom(seed, modality=modality, region=region, spacing=2.0)
    semantic, instances = np.asarray(case.semantic.array), np.asarray(case.instances.array)
    vertebra_voxels = [np.count_nonzero(instances == v) for v in np.unique(instances) if v not in (0, 26)]
    share = np.count_nonzero(semantic == SACRUM) / np.median(vertebra_voxels)
    assert share >= 4 * SACRUM_MIN_SHARE


def test_a_sacrum_cut_to_less_than_half_a_vertebra_still_names_levels(small_example):
    """The real CTs whose field of view ends in S1 show 0.45-0.47 of a vertebra of sacrum below L5; such a scan is
    named (counted up from the sacrum), while the sliver of the test above is not."""
    import numpy as np

    from spineinstanceseg.io import read_label_map, read_volume
    from spineinstanceseg.pipeline import segment
    from spineinstanceseg.pipeline.models import load_stage2
    from spineinstanceseg.pipeline.options import SegmentOptions
    from spineinstanceseg.semantic import SACRUM

    semantic, reference = read_label_map(small_example.semantic), read_label_map(small_example.instances)
    labels, codes = np.asarray(semantic.array).copy(), np.asarray(reference.array)
    vertebra_voxels = np.median([np.count_nonzero(codes == level) for level in small_example.complete_levels])
    sacrum_slices = np.nonzero((labels == SACRUM).any(axis=(0, 1)))[0]
    per_slice = np.cumsum([np.count_nonzero(labels[..., z] == SACRUM) for z in sacrum_slices[::-1]])
    kept = int(np.searchsorted(per_slice, 0.45 * vertebra_voxels)) + 1  # top slices holding ~0.45 of a vertebra
    cut_at = sacrum_slices[::-1][kept - 1]
    labels[..., :cut_at][labels[..., :cut_at] == SACRUM] = 0
    assert 0.4 < np.count_nonzero(labels == SACRUM) / vertebra_voxels < 0.5

    result = segment(read_volume(small_example.image), stage1=semantic.with_array(labels),
                     stage2=load_stage2(SegmentOptions(device="cpu")), device="cpu")  # fmt: skip

    assert result.levels_known, result.naming_rule
    assert [record.name for record in result.vertebrae][-2:] == ["L4", "L5"]
