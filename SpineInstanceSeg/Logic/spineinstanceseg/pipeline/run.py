"""The main job: image -> stage 1 (or a given mask) -> centroids -> stage 2 windows -> fusion -> anatomical sanity
-> named instances.

A "vertebra" that lies inside the sacrum (below its middle) first becomes sacrum
(:mod:`spineinstanceseg.stage2.sacrum`). The sanity step (:mod:`spineinstanceseg.stage2.sanity`) then drops what
stage 1 called vertebra but is not part of the spinal column (a rib, the pelvis, a blob in the abdomen), merges
small fragments into the vertebra they touch, flags instances that probably hold two vertebrae and gaps where one is
probably missing (then levels are not counted from the sacrum), and ends the run with :class:`NoSpineFoundError`
when nothing plausible is left. Then the sacrum is set right at both ends: stray "sacrum" higher up goes back to its
vertebra (:mod:`spineinstanceseg.stage2.sacrum`), what the lowest vertebra holds beyond the disc under it, next to
the sacrum, becomes sacrum, and a large part of the top vertebra beyond the disc above it becomes a vertebra of its
own (:mod:`spineinstanceseg.stage2.end_discs`). On CT the vertebra surfaces finally move to the bone edge
(:mod:`spineinstanceseg.stage2.bone_boundary`) and sacral bone in the lowest vertebra goes back to the sacrum
(:mod:`spineinstanceseg.stage2.sacral_bone`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

from ..errors import NoSpineFoundError
from ..levels import SACRUM_CODE
from ..progress import CancelToken, Progress
from ..results import SegmentationResult, VertebraRecord
from ..semantic import SACRUM, VERTEBRA
from ..stage1.sources import MaskSource, Stage1Source
from ..volume import Volume, label_bounding_box
from .naming import LevelNaming, name_vertebrae
from .raw_ct import unrescaled_ct_warning
from .validate import check_image

if TYPE_CHECKING:
    from ..stage2.model import Stage2Model
    from ..stage2.predict import Stage2Result
    from ..stage2.sacrum import VertebraeInSacrum
    from ..stage2.sanity import SanityParameters, SanityResult

__all__ = ["segment", "SACRUM_GAP_MM", "SACRUM_MIN_SHARE"]

log = logging.getLogger(__name__)

# The sacrum counts as "directly below" the lowest vertebra when they are at most this far apart (one disc).
SACRUM_GAP_MM = 20.0
# ... and levels are counted up from it only when those sacrum pieces hold at least this share of a median
# vertebra's volume. Stage 1 at times calls a piece of a poorly seen L5 "sacrum" (real CT, 2 mL beside 33 mL
# vertebrae): counting from it names every vertebra one level too low. A whole sacrum holds 2-6 vertebra volumes
# (phantoms; Testing/test_pipeline_naming.py checks it); one cut by the field of view to less than this share
# leaves the levels unnamed. benchmarks/bench_level_naming.py: on three unseen sets of phantoms cut below L5 no bar
# from 0.1 to 0.5 named a level wrongly; the largest share of a false "sacrum" seen before the fixes of
# stage2/sacrum.py and _small_lowest was 0.355, and the real CTs whose sacrum is cut at S1 hold 0.45 and 0.47.
SACRUM_MIN_SHARE = 0.4

# Share of the progress bar per step (stage 1 dominates on real models).
_STAGE1_SHARE = (0.0, 0.6)
_STAGE2_SHARE = (0.6, 0.97)


def _sacrum_below_ml(semantic: Volume, instances: Volume, lowest_label: int) -> float | None:
    """Volume (mL) of the sacrum pieces that reach within SACRUM_GAP_MM of the lowest vertebra from below.

    ``None`` when no sacrum lies there (none at all, or its centre is not lower than the vertebra's).
    """
    box = label_bounding_box(semantic.array, SACRUM)
    if box is None:
        return None
    sacrum = semantic.array[box] == SACRUM
    lowest_box = label_bounding_box(instances.array, lowest_label)
    lowest_idx = np.argwhere(instances.array[lowest_box] == lowest_label) + [s.start for s in lowest_box]
    lowest_world = semantic.index_to_world(lowest_idx.mean(axis=0))
    sacrum_centre = np.argwhere(sacrum).mean(axis=0) + [s.start for s in box]
    if semantic.index_to_world(sacrum_centre)[2] >= lowest_world[2]:
        return None  # LPS z is superior: the sacrum's centre must be lower
    # Sacrum pieces on the sacrum's bounding box, distances on a crop around the vertebra (never the whole grid).
    pieces, _ = ndimage.label(sacrum)
    margin = np.ceil(SACRUM_GAP_MM / np.asarray(semantic.spacing)).astype(int) + 1
    lo = np.maximum(lowest_idx.min(axis=0) - margin, 0)
    hi = np.minimum(lowest_idx.max(axis=0) + margin + 1, semantic.shape)
    crop = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
    both = tuple(slice(max(c.start, b.start), min(c.stop, b.stop)) for c, b in zip(crop, box, strict=True))
    if any(s.start >= s.stop for s in both):
        return None
    reach = ndimage.distance_transform_edt(instances.array[crop] != lowest_label, sampling=semantic.spacing)
    reach = reach <= SACRUM_GAP_MM
    in_crop = tuple(slice(s.start - c.start, s.stop - c.start) for s, c in zip(both, crop, strict=True))
    in_box = tuple(slice(s.start - b.start, s.stop - b.start) for s, b in zip(both, box, strict=True))
    touching = np.unique(pieces[in_box][reach[in_crop]])
    touching = touching[touching > 0]
    if touching.size == 0:
        return None
    return float(np.isin(pieces, touching).sum()) * semantic.voxel_volume_mm3 / 1000.0


def _apply_naming(instances: np.ndarray, semantic: Volume, naming: LevelNaming) -> tuple[np.ndarray, list[int]]:
    """Relabel 1..N (top to bottom) to VerSe codes when levels are known; add the sacrum as code 26."""
    if not naming.known:
        return instances, list(range(1, len(naming.codes) + 1))
    lut = np.zeros(int(instances.max()) + 1, dtype=np.int32)
    for k, code in enumerate(naming.codes, start=1):
        lut[k] = int(code)  # type: ignore[arg-type]
    out = lut[instances]
    out[(semantic.array == SACRUM) & (out == 0)] = SACRUM_CODE
    return out, [int(c) for c in naming.codes]  # type: ignore[arg-type]


def segment(
    image: Volume,
    *,
    stage1: Stage1Source | Volume,
    stage2: Stage2Model | None = None,
    device: str = "auto",
    lowest: str | None = None,
    anchor: str | None = None,
    with_t13: bool = False,
    with_l6: bool = False,
    bone_boundary: bool | None = None,
    batch_size: int = 4,
    pitch_search: bool = True,
    progress: Callable[[str, float, str], None] | None = None,
    cancel: CancelToken | None = None,
    source: str | None = None,
) -> SegmentationResult:
    """Segment every vertebra of ``image`` as its own instance.

    Args:
        image: CT or MRI volume (any orientation and spacing); the result is on exactly this grid.
        stage1: A stage-1 source (e.g. an nnU-Net model adapter) or an existing semantic mask
            (:mod:`spineinstanceseg.semantic` classes) to use instead of stage 1.
        stage2: Loaded stage-2 model; ``None`` loads the bundled one on ``device``.
        device: "auto" (CUDA when available), "cpu" or "cuda"; used when a model has to be loaded here.
        lowest / anchor / with_t13 / with_l6: Level naming options (see :mod:`.naming`).
        bone_boundary: On CT, move the vertebra surfaces to the bone edge seen at the image's own resolution
            (:mod:`spineinstanceseg.stage2.bone_boundary`) and give the sacral bone that the lowest vertebra holds
            to the sacrum (:mod:`spineinstanceseg.stage2.sacral_bone`); never on other images. ``None``: on when
            stage 1 is a model, off for a given mask (it is kept as given).
        batch_size: Windows per network call in stage 2.
        pitch_search: Also try the stage-2 windows the network is unsure of turned about the left-right axis and
            keep a turn it is clearly more certain of (:mod:`spineinstanceseg.stage2.window_pitch`; about 1.02x
            the CPU time).
        progress: Callback ``(step, fraction, message)``.
        cancel: Polled between windows and patches; cancelling raises ``CancelledError``.
        source: Name of the input (file path) for error messages.

    Every stage-1 vertebra voxel carries a vertebra label in the result, except the components that the sanity
    step drops as not spine (off the spinal column, small detached pieces of a vertebra that the field of view did
    not cut, small detached fragments touching no vertebra, or, unless stage 1 is a mask you give, a sliver that the
    field of view leaves of a vertebra beyond the end one), the part of the lowest vertebra beyond the disc
    under it that touches the sacrum (made sacrum), a "vertebra" inside the sacrum below its middle (made sacrum,
    :mod:`spineinstanceseg.stage2.sacrum`) and, on CT with the bone boundary step, the dark voxels trimmed off the
    surface (bright bone next to it joins instead) and the sacral bone the lowest vertebra held (made
    sacrum, :mod:`spineinstanceseg.stage2.sacral_bone`); the warnings say what was dropped, merged and flagged,
    and name an image that looks like a CT stored without its rescale to HU (:mod:`.raw_ct`).

    Raises:
        InputError: unusable image or mask. NoSpineFoundError: no vertebra in the semantic mask, or nothing that
            stage 2 made of it is a plausible vertebra of a spinal column (e.g. an image without a spine).
        ModelError: missing or tampered model files. CancelledError: cancelled by the user.
    """
    timings: dict[str, float] = {}
    warnings: list[str] = []
    bar = Progress(progress, cancel, step="segment")
    t0 = time.perf_counter()
    check_image(image, source=source)
    bar.update(0.0, "input checked")
    stage1 = MaskSource(stage1) if isinstance(stage1, Volume) else stage1
    semantic = _run_stage1(stage1, image, bar, timings, warnings, source=source)
    raw_ct = unrescaled_ct_warning(image, semantic)
    if raw_ct:
        warnings.append(raw_ct)
    stage2, split = _run_stage2(
        semantic, image, stage2, device, batch_size, bar, timings, warnings, pitch_search=pitch_search
    )

    t = time.perf_counter()
    # lazy: see _run_stage2
    from ..stage2.sanity import check_column

    semantic, in_sacrum = _vertebrae_in_sacrum(semantic, split, warnings)
    sanity = check_column(
        in_sacrum.instances,
        semantic,
        in_sacrum.confidence,
        image=image if image.same_grid(semantic) else None,
        parameters=_sanity_parameters(stage1),
        source=source,
    )
    warnings.extend(sanity.messages())
    semantic, sanity = _absorb_stray_sacrum(semantic, sanity, warnings)
    semantic, sanity = _below_last_disc_to_sacrum(semantic, sanity, warnings)
    sanity = _split_beyond_top_disc(semantic, sanity, warnings)
    timings["sanity"] = time.perf_counter() - t
    if bone_boundary or (bone_boundary is None and not _given_mask(stage1)):
        t = time.perf_counter()
        semantic, sanity = _refine_bone_boundary(semantic, sanity, image)
        semantic, sanity = _give_sacral_bone(semantic, sanity, image, warnings)
        timings["bone_boundary"] = time.perf_counter() - t

    t = time.perf_counter()
    # voxels per vertebra 1..N (index 0: background), counted once: on a CT-sized grid one count takes seconds
    voxel_counts = np.bincount(np.asarray(sanity.instances).reshape(-1), minlength=len(sanity.confidence) + 1)
    naming = _name_levels(
        sanity, semantic, voxel_counts, lowest=lowest, anchor=anchor, with_t13=with_t13, with_l6=with_l6
    )
    if sanity.anomalies and (lowest or anchor):
        warnings.append(
            f"levels named from the level you gave ({lowest or anchor}) although the column has anomalies "
            f"({'; '.join(sanity.anomalies)}): a vertebra too many or too few shifts every name; check them"
        )
    instances, records = _vertebra_records(image, semantic, sanity, naming, voxel_counts)
    low_conf = [r.name for r in records if r.confidence < 0.5]
    if low_conf:
        warnings.append(f"low stage-2 agreement (confidence < 0.5) for {', '.join(low_conf)}: check these")
    timings["naming"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t0
    bar.update(1.0, f"{len(records)} vertebrae")
    return SegmentationResult(
        instances=instances,
        semantic=semantic.with_array(semantic.array.astype(np.uint8), is_label=True),
        vertebrae=records,
        naming_rule=naming.rule,
        stage1_source=stage1.description,
        models={"stage1": stage1.model_info(), "stage2": _stage2_info(stage2)},
        timings=timings,
        warnings=tuple(warnings),
    )


def _run_stage1(
    stage1: Stage1Source, image: Volume, bar: Progress, timings: dict, warnings: list[str], *, source: str | None
) -> Volume:
    """The semantic mask on the image grid (its warnings and time recorded).

    Raises:
        NoSpineFoundError: the mask has no vertebra voxel.
    """
    t = time.perf_counter()
    semantic, stage1_warnings = stage1.predict(image, progress=bar.sub(*_STAGE1_SHARE, step="stage1"))
    warnings.extend(stage1_warnings)
    timings["stage1"] = time.perf_counter() - t
    log.info("stage 1 (%s) took %.1f s", stage1.description, timings["stage1"])
    if not np.any(semantic.array == VERTEBRA):
        raise NoSpineFoundError(
            "no spine found: stage 1 found no vertebra in the image",
            fix="check that the image shows the spine and that the stage-1 model suits this modality",
            path=source,
        )
    return semantic


def _run_stage2(
    semantic: Volume,
    image: Volume,
    stage2: Stage2Model | None,
    device: str,
    batch_size: int,
    bar: Progress,
    timings: dict,
    warnings: list[str],
    *,
    pitch_search: bool = True,
) -> tuple[Stage2Model, Stage2Result]:
    """The stage-2 model (the bundled one when none is given) and its split of the semantic mask into instances
    (with the pitch search of :mod:`..stage2.window_pitch` unless ``pitch_search`` is false)."""
    # lazy: stage 2 (scikit-image, torch) loads when a segmentation runs, so that `spineinstanceseg.pipeline` and
    # its run options import with the packages Slicer bundles, before the module has installed the others
    from ..stage2.model import load_bundled_model
    from ..stage2.predict import split_instances
    from ..stage2.window_pitch import DEFAULT_PITCH_SEARCH, UPRIGHT_ONLY

    if stage2 is None:
        t = time.perf_counter()
        stage2 = load_bundled_model(device=device)
        timings["load_stage2"] = time.perf_counter() - t
    t = time.perf_counter()
    stage2_warnings = getattr(stage2, "warnings", [])  # e.g. a GPU out of memory: windows ran on the CPU
    seen = len(stage2_warnings)
    split = split_instances(
        semantic,
        model=stage2,
        image=image,
        batch_size=batch_size,
        pitch=DEFAULT_PITCH_SEARCH if pitch_search else UPRIGHT_ONLY,
        progress=bar.sub(*_STAGE2_SHARE, step="stage2"),
    )
    warnings.extend(stage2_warnings[seen:])
    timings["stage2"] = time.perf_counter() - t
    timings.update({f"stage2_{k}": v for k, v in getattr(split, "timings", {}).items()})
    return stage2, split


def _vertebrae_in_sacrum(
    semantic: Volume, split: Stage2Result, warnings: list[str]
) -> tuple[Volume, VertebraeInSacrum]:
    """The lowest vertebrae that lie inside the sacrum become sacrum (:mod:`..stage2.sacrum`); returns the
    semantic map and the step's outcome (its ``instances`` and ``confidence`` for the sanity check)."""
    # lazy: see _run_stage2
    from ..stage2.sacrum import vertebrae_in_sacrum_to_sacrum

    moved = vertebrae_in_sacrum_to_sacrum(semantic, np.asarray(split.instances.array), split.confidence)
    message = moved.message(len(split.confidence))
    if message is not None:
        warnings.append(message)
    return moved.semantic, moved


def _given_mask(stage1: Stage1Source) -> bool:
    """Whether stage 1 is a mask the user gave (not a model's prediction, run now or replayed)."""
    return isinstance(stage1, MaskSource) and not stage1.from_model


def _sanity_parameters(stage1: Stage1Source) -> SanityParameters:
    """The sanity step's numbers for this stage-1 source: a mask you give keeps the slivers of vertebrae cut by
    the field of view (they are what the mask says; :attr:`SanityParameters.min_edge_share`)."""
    # lazy: see _run_stage2
    from ..stage2.sanity import DEFAULT_PARAMETERS

    if _given_mask(stage1):
        return replace(DEFAULT_PARAMETERS, min_edge_share=0.0)
    return DEFAULT_PARAMETERS


def _absorb_stray_sacrum(semantic: Volume, sanity: SanityResult, warnings: list[str]) -> tuple[Volume, SanityResult]:
    """Sacrum pieces above the two lowest vertebrae's disc go to the vertebrae they touch (:mod:`..stage2.sacrum`)."""
    if len(sanity.confidence) < 2:
        return semantic, sanity
    # lazy: see _run_stage2
    from ..stage2.sacrum import absorb_stray_sacrum

    disc_z = float(sanity.centroids_lps[-2][2] + sanity.centroids_lps[-1][2]) / 2.0
    stray = absorb_stray_sacrum(semantic, np.asarray(sanity.instances), above_z_mm=disc_z)
    message = stray.message()
    if message is None:
        return semantic, sanity
    warnings.append(message)
    return stray.semantic, replace(sanity, instances=stray.instances)


def _below_last_disc_to_sacrum(
    semantic: Volume, sanity: SanityResult, warnings: list[str]
) -> tuple[Volume, SanityResult]:
    """The lowest vertebra's part beyond the disc under it, next to the sacrum, becomes sacrum
    (:mod:`..stage2.end_discs`); the lowest centroid follows."""
    # lazy: see _run_stage2
    from ..stage2.end_discs import give_below_last_disc_to_sacrum

    moved = give_below_last_disc_to_sacrum(np.asarray(sanity.instances), semantic, sanity.centroids_lps)
    return _lowest_gave_to_sacrum(moved, semantic, sanity, warnings)


def _lowest_gave_to_sacrum(moved, semantic: Volume, sanity: SanityResult, warnings: list[str]):
    """Take the outcome of a step that gave part of the lowest vertebra to the sacrum (``instances``, ``semantic``,
    ``message()``): its warning, its maps, and the lowest vertebra's new centroid; unchanged when nothing moved."""
    message = moved.message()
    if message is None:
        return semantic, sanity
    warnings.append(message)
    centroids = np.array(sanity.centroids_lps, dtype=float, copy=True)
    n = len(centroids)
    centroids[n - 1] = _centroid_lps(moved.instances, n, semantic, fallback=centroids[n - 1])
    return moved.semantic, replace(sanity, instances=moved.instances, centroids_lps=centroids)


def _split_beyond_top_disc(semantic: Volume, sanity: SanityResult, warnings: list[str]) -> SanityResult:
    """The top vertebra's part past the stage-1 disc above it becomes a vertebra of its own
    (:mod:`..stage2.end_discs`), with the top vertebra's confidence."""
    # lazy: see _run_stage2
    from ..stage2.end_discs import split_beyond_top_disc

    split = split_beyond_top_disc(np.asarray(sanity.instances), semantic, sanity.centroids_lps)
    message = split.message()
    if message is None:
        return sanity
    warnings.append(message)
    old = np.asarray(sanity.centroids_lps, dtype=float)
    tops = [_centroid_lps(split.instances, k, semantic, fallback=old[0]) for k in (1, 2)]
    centroids = np.concatenate([np.array(tops), old[1:]])
    confidence = np.concatenate([[sanity.confidence[0]], np.asarray(sanity.confidence, dtype=float)])
    return replace(sanity, instances=split.instances, confidence=confidence, centroids_lps=centroids)


def _centroid_lps(instances: np.ndarray, label: int, grid: Volume, *, fallback: np.ndarray) -> np.ndarray:
    """LPS centroid (mm) of ``label`` in ``instances`` on ``grid``'s geometry (``fallback`` when it is gone)."""
    box = label_bounding_box(instances, label)
    if box is None:
        return fallback
    inside = np.argwhere(instances[box] == label) + [s.start for s in box]
    return grid.index_to_world(inside.mean(axis=0))


def _refine_bone_boundary(semantic: Volume, sanity: SanityResult, image: Volume) -> tuple[Volume, SanityResult]:
    """On CT, the vertebra surfaces at the bone edge (:mod:`..stage2.bone_boundary`); other images unchanged."""
    # lazy: see _run_stage2
    from ..stage2.bone_boundary import refine_bone_boundary
    from ..stage2.sanity import image_is_ct

    if not len(sanity.confidence) or not image.same_grid(semantic) or not image_is_ct(image):
        return semantic, sanity
    refined = refine_bone_boundary(np.asarray(sanity.instances), semantic, image)
    log.info("bone boundary: %d voxels grown, %d trimmed", refined.grown, refined.trimmed)
    return refined.semantic, replace(sanity, instances=refined.instances)


def _give_sacral_bone(
    semantic: Volume, sanity: SanityResult, image: Volume, warnings: list[str]
) -> tuple[Volume, SanityResult]:
    """On CT, the sacral bone that the lowest vertebra holds goes to the sacrum (:mod:`..stage2.sacral_bone`);
    its centroid follows."""
    # lazy: see _run_stage2
    from ..stage2.sacral_bone import give_sacral_bone_to_sacrum
    from ..stage2.sanity import image_is_ct

    if not len(sanity.confidence) or not image.same_grid(semantic) or not image_is_ct(image):
        return semantic, sanity
    n = len(sanity.confidence)  # labels run top to bottom: n is the lowest vertebra
    moved = give_sacral_bone_to_sacrum(np.asarray(sanity.instances), semantic, image, n)
    return _lowest_gave_to_sacrum(moved, semantic, sanity, warnings)


def _name_levels(sanity: SanityResult, semantic: Volume, voxel_counts: np.ndarray, **options) -> LevelNaming:
    """Level names for the instances the sanity check kept (counted from the sacrum only when enough of it lies
    below); ``voxel_counts[k]`` is the size of vertebra k (1..N)."""
    n = len(sanity.confidence)
    if n == 0:
        return name_vertebrae(0, sacrum_below=False, doubts=sanity.anomalies, **options)
    instances = semantic.with_array(np.asarray(sanity.instances))
    sacrum_ml = _sacrum_below_ml(semantic, instances, lowest_label=n)
    doubts = list(sanity.anomalies)
    vertebra_ml = float(np.median(voxel_counts[1:])) * semantic.voxel_volume_mm3 / 1000.0
    if sacrum_ml is not None and sacrum_ml < SACRUM_MIN_SHARE * vertebra_ml:
        doubts.append(
            f"the sacrum seen below the lowest vertebra is {sacrum_ml:.1f} mL, less than {SACRUM_MIN_SHARE:g} of a "
            f"vertebra ({vertebra_ml:.0f} mL): too little to count levels from"
        )
    if sacrum_ml is not None and (small := _small_lowest(voxel_counts, semantic.voxel_volume_mm3)) is not None:
        doubts.append(small)
    return name_vertebrae(n, sacrum_below=sacrum_ml is not None, doubts=doubts, **options)


def _small_lowest(voxel_counts: np.ndarray, voxel_mm3: float) -> str | None:
    """A doubt when the lowest vertebra is much smaller than the two above it (below the sanity check's
    ``small_ratio``), else ``None``. Above the sacrum such an instance is a piece of S1 that stage 1 called vertebra
    and fusion could not merge (an unseen CT phantom: 8 mL of S1 under a 60 mL L5; counted from it, every level was
    one too high), or the remains of a poorly seen L5: neither is ground for counting levels."""
    # lazy: see _run_stage2
    from ..stage2.sanity import DEFAULT_PARAMETERS, reference_values

    sizes = voxel_counts[1:].astype(float)
    if len(sizes) < 3:
        return None
    # the sanity check's own reference: the median of up to `neighbours` (2) vertebrae on each side, here above
    reference = reference_values(sizes, np.ones(len(sizes), bool), len(sizes) - 1, DEFAULT_PARAMETERS.neighbours)
    ratio = float(sizes[-1]) / reference
    if ratio >= DEFAULT_PARAMETERS.small_ratio:
        return None
    return (
        f"the lowest vertebra holds {sizes[-1] * voxel_mm3 / 1000.0:.1f} mL, {ratio:.0%} of the two above it: it may "
        "be a piece of the sacrum"
    )


def _vertebra_records(
    image: Volume, semantic: Volume, sanity: SanityResult, naming: LevelNaming, voxel_counts: np.ndarray
) -> tuple[Volume, tuple[VertebraRecord, ...]]:
    """The instance map on the image grid (VerSe codes when the levels are known) and one record per vertebra
    (``voxel_counts[k]``: the size of vertebra k, 1..N)."""
    instances_1n = np.asarray(sanity.instances)
    n = len(sanity.confidence)
    relabelled, labels = _apply_naming(instances_1n, semantic, naming)
    instances = image.with_array(relabelled.astype(np.int16), is_label=True)
    records = tuple(
        VertebraRecord(
            label=labels[k],
            name=naming.names[k],
            level_code=naming.codes[k],
            centroid_lps=tuple(float(c) for c in sanity.centroids_lps[k]),  # type: ignore[arg-type]
            confidence=float(sanity.confidence[k]),
            voxel_count=int(voxel_counts[k + 1]),
            volume_ml=float(voxel_counts[k + 1] * image.voxel_volume_mm3 / 1000.0),
        )
        for k in range(n)
    )
    return instances, records


def _stage2_info(model: object) -> dict:
    info = getattr(model, "info", None)
    if callable(info):
        return dict(info())
    return {"name": type(model).__name__, "path": None, "sha256": None}
