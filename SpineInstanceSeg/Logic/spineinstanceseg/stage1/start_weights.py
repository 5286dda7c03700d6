"""Start a stage-1 training from another checkpoint's weights, read safely, output layers included when they fit.

nnU-Net's own ``load_pretrained_weights`` unpickles the checkpoint with ``weights_only=False`` (any object, code
included) and never transfers the output layers (``.seg_layers.``): it is made for moving an encoder to a dataset
with other labels. Our fine-tunes and extensions start from a checkpoint with the *same* labels (the phantom-only
base, or a fold trained on), and a fresh output layer there must learn every class again; the rare sacrum class was
once lost for a whole 50-epoch fine-tune that way (``training-state/stage1/PROGRESS.md``). So:

* the checkpoint is read with ``torch.load(weights_only=True)``, allowing only the numpy number types nnU-Net
  writes into a checkpoint's training log (``numpy._core.multiarray.scalar``, ``numpy.dtype`` and its numeric
  dtype classes);
* every tensor except the output layers must exist with the same shape (else the architectures differ);
* the output layers are copied too when ``output_layers`` is set and all of them have the same shapes (same number
  of classes); otherwise they stay freshly initialised, as nnU-Net leaves them.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch

from ..errors import ModelError

__all__ = [
    "OUTPUT_LAYER_KEY",
    "START_RECORD",
    "load_start_weights",
    "read_checkpoint",
    "read_start_record",
    "write_start_record",
]

log = logging.getLogger(__name__)

OUTPUT_LAYER_KEY = ".seg_layers."  # nnU-Net's name for the 1x1x1 convolutions that give the class scores
# Written into a fold's folder when its training starts from weights, so a run that resumes it (another session)
# can still say on the card where it started: resuming loads the fold's own checkpoint, not the start weights.
START_RECORD = "start_weights.json"


def _numpy_log_types() -> list:
    """The numpy globals nnU-Net's checkpoints hold (numbers in their training log): scalars and their dtypes."""
    core = getattr(np, "_core", None) or np.core  # numpy 2 moved ``core`` to ``_core``
    dtype_classes = {type(np.dtype(t)) for t in (np.float16, np.float32, np.float64, np.int32, np.int64, np.bool_)}
    return [core.multiarray.scalar, np.dtype, *dtype_classes]


def read_checkpoint(path: Path) -> dict:
    """An nnU-Net checkpoint (``network_weights``, ``current_epoch``, its training log, ...) read as plain data.

    Raises:
        ModelError: it holds other objects (named) or is no torch checkpoint, or has no ``network_weights``.
    """
    try:
        with torch.serialization.safe_globals(_numpy_log_types()):
            saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 (UnpicklingError, RuntimeError, ...: all mean "not plain data")
        raise ModelError(
            f"the start checkpoint could not be read as plain data: {_what_is_inside(path, err)}",
            fix="start from a checkpoint written by nnU-Net or by this project (tensors and plain data only)",
            path=path,
        ) from err
    if not isinstance(saved, dict) or not isinstance(saved.get("network_weights"), dict):
        raise ModelError("the start checkpoint has no 'network_weights'", fix="pass an nnU-Net checkpoint_*.pth",
                         path=path)  # fmt: skip
    return saved


def _what_is_inside(path: Path, err: Exception) -> str:
    """The objects that kept a checkpoint from loading as plain data (listed without unpickling them)."""
    try:
        allowed = {f"{t.__module__}.{t.__qualname__}" for t in _numpy_log_types()}
        found = [name for name in torch.serialization.get_unsafe_globals_in_checkpoint(path) if name not in allowed]
    except Exception:  # noqa: BLE001 (not a torch zip file at all)
        found = []
    return f"it holds {', '.join(found)}" if found else f"{type(err).__name__}, not a torch checkpoint of tensors"


def load_start_weights(network: torch.nn.Module, path: Path, *, output_layers: bool = True) -> list[str]:
    """Copy the weights of the checkpoint at ``path`` into ``network`` (in place).

    Args:
        network: The freshly initialised nnU-Net network (unwrapped: no DDP, no ``torch.compile``).
        path: An nnU-Net ``checkpoint_*.pth``.
        output_layers: Also copy the output layers when their shapes match (same classes).

    Returns:
        The names of the output-layer tensors copied (empty: they stay freshly initialised).

    Raises:
        ModelError: unreadable as plain data, or a tensor other than the output layers is missing or has another
            shape (a different architecture).
    """
    start = read_checkpoint(Path(path))["network_weights"]
    own = network.state_dict()
    body = [key for key in own if OUTPUT_LAYER_KEY not in key]
    wrong = [key for key in body if key not in start or tuple(start[key].shape) != tuple(own[key].shape)]
    if wrong:
        raise ModelError(
            f"the start checkpoint does not fit this network: {len(wrong)} tensors differ (first: {wrong[0]})",
            fix="start from a checkpoint trained with the same plans and configuration",
            path=path,
        )
    heads = [key for key in own if OUTPUT_LAYER_KEY in key]
    heads_fit = all(key in start and tuple(start[key].shape) == tuple(own[key].shape) for key in heads)
    carried = heads if output_layers and heads_fit else []
    network.load_state_dict({**own, **{key: start[key] for key in body + carried}})
    if output_layers and not heads_fit:
        log.info("start weights %s: other classes, output layers start afresh", path)
    return carried


def write_start_record(fold_folder: Path, start: Path, *, output_layers_kept: bool) -> Path:
    """Record in ``fold_folder`` which checkpoint a training started from (``fold_4/checkpoint_final.pth``: the
    name says nothing without its folder) and whether its output layers were kept."""
    fold_folder.mkdir(parents=True, exist_ok=True)
    record = {"start_weights": f"{start.parent.name}/{start.name}", "output_layers_kept": bool(output_layers_kept)}
    target = fold_folder / START_RECORD
    target.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return target


def read_start_record(fold_folder: Path) -> tuple[str, bool] | None:
    """``(start weights, output layers kept)`` recorded in ``fold_folder``; None when it trained from scratch."""
    path = fold_folder / START_RECORD
    if not path.is_file():
        return None
    record = json.loads(path.read_text(encoding="utf-8"))
    return str(record["start_weights"]), bool(record["output_layers_kept"])
