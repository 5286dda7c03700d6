"""Loading the models a run needs, once per process (the batch runner's workers reuse them)."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from ..devices import resolve_device
from ..errors import InputError
from ..stage1 import sources as nnunet_source
from ..stage1.sources import MaskSource, Stage1Source, TotalSegmentatorSource
from ..stage1.totalseg_adapter import choose_task, require_totalsegmentator
from ..stage2.sanity import image_is_ct
from ..volume import Volume
from .options import SegmentOptions

__all__ = ["load_stage1", "load_stage2", "clear_model_cache", "totalsegmentator_source"]

log = logging.getLogger(__name__)

_CACHE: dict[tuple, object] = {}
_LOCK = threading.Lock()


def clear_model_cache() -> None:
    with _LOCK:
        _CACHE.clear()


def _cached(key: tuple, factory):
    with _LOCK:
        if key not in _CACHE:
            log.info("loading %s", key[0])
            _CACHE[key] = factory()
        return _CACHE[key]


def load_stage2(options: SegmentOptions):
    """The stage-2 model of ``options`` (bundled when none is given), loaded once per process and device.

    The cache key is the resolved device ("cuda:0", "cpu"), never "auto", so "auto" and "cuda" share one model.

    Raises:
        InputError: a device this machine cannot use (see :mod:`spineinstanceseg.devices`).
    """
    # lazy: torch loads when a model is loaded, so that the run options import without it
    from ..stage2.model import Stage2Model, load_bundled_model

    device = resolve_device(options.device)
    if options.stage2_model is None:
        return _cached(("stage2", "bundled", device.name), lambda: load_bundled_model(device=device))
    path = str(Path(options.stage2_model).resolve())
    return _cached(("stage2", path, device.name), lambda: Stage2Model.load(path, device=device))


def totalsegmentator_source(options: SegmentOptions, image: Volume) -> TotalSegmentatorSource:
    """TotalSegmentator as stage 1 for ``image``: task ``total`` for a CT, ``total_mr`` for an MRI (or as asked).

    Raises:
        InputError: the TotalSegmentator package is not installed, or task ``total`` was asked for an MRI.
    """
    require_totalsegmentator()  # before the image is judged: a missing package is the first thing to fix
    task = choose_task(options.totalseg_task, image_is_ct=image_is_ct(image))
    return TotalSegmentatorSource(task, device=options.device, fast=options.totalseg_fast)


def load_stage1(options: SegmentOptions, *, mask_path: str | None = None, image: Volume | None = None) -> Stage1Source:
    """The stage-1 source of ``options``: a given mask, TotalSegmentator, a user's nnU-Net model, or the bundled one.

    Models are cached per resolved device (see :func:`load_stage2`). TotalSegmentator loads its model on every call
    (in its own code), so its source is not cached; it needs the ``image`` to choose its task.
    """
    if mask_path is not None:
        return MaskSource(mask_path, convention=options.mask_convention)
    if options.stage1 == "totalsegmentator":
        if image is None:
            raise ValueError("TotalSegmentator as stage 1 needs the image to choose its task (CT or MRI)")
        return totalsegmentator_source(options, image)
    device = resolve_device(options.device)
    mirroring = options.stage1_mirroring
    if options.stage1_model is None:
        return _cached(
            ("stage1", "bundled", device.name, mirroring),
            lambda: nnunet_source.bundled_source(device=device.name, use_mirroring=mirroring),
        )
    path = Path(options.stage1_model)
    if not path.exists():
        raise InputError("no such stage-1 model folder", fix="pass an nnU-Net v2 model folder", path=path)
    key = ("stage1", str(path.resolve()), device.name, options.folds, options.checkpoint, mirroring)
    return _cached(
        key,
        lambda: nnunet_source.NnUNetSource(
            path, folds=options.folds, checkpoint=options.checkpoint, device=device.name, use_mirroring=mirroring
        ),
    )
