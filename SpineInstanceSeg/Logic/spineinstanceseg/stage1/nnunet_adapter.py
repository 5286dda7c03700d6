"""The one module of the project that imports nnunetv2: planning, preprocessing, training and prediction calls.

Everything here is a thin call into nnU-Net v2's own API (tested with 2.8.1); the project-level logic (volumes,
model cards, label mapping, device fallback) lives in :mod:`.model` and :mod:`.training`.

Array convention at this boundary: nnU-Net's SimpleITK reader gives arrays in SimpleITK order ``(z, y, x)``
with spacing reversed to match, i.e. exactly ``numpy.transpose(volume.array, (2, 1, 0))`` and
``volume.spacing[::-1]`` for a :class:`~spineinstanceseg.volume.Volume`. Prediction goes through nnU-Net's own
preprocessing (crop, normalise, resample to the plans' spacing), sliding-window inference with Gaussian
weighting and mirroring, and resampling back to the input shape.

nnU-Net prints progress to stdout, even with its verbose flags off (which we pass): the CPU notice of the
predictor, each trainer-folder search. During our calls those lines go to this module's logger at DEBUG level
instead (:func:`nnunet_prints_to_log`); ``sys.stdout`` is never replaced, so other threads and other callers of
nnU-Net print as before. The ``nnUNet_*`` environment variables a call needs are set for that call only
(:func:`.environment.nnunet_environment`).
"""

from __future__ import annotations

import builtins
import contextlib
import logging
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from pathlib import Path

import numpy as np
import torch
from nnunetv2.experiment_planning.plan_and_preprocess_api import (
    extract_fingerprints,
    plan_experiments,
    preprocess,
)
from nnunetv2.inference.data_iterators import PreprocessAdapterFromNpy
from nnunetv2.inference.export_prediction import convert_predicted_logits_to_segmentation_with_correct_shape
from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

from ..errors import ModelError
from .environment import data_worker_variables, nnunet_environment, trainer_variables
from .start_weights import load_start_weights, write_start_record

__all__ = [
    "NNUNET_VERSION",
    "PatchCallback",
    "check_weights_only",
    "load_predictor",
    "predict_array",
    "plan_and_preprocess",
    "train_fold",
    "prints_to_log",
    "nnunet_prints_to_log",
]

log = logging.getLogger(__name__)

try:
    from importlib.metadata import version as _version

    NNUNET_VERSION = _version("nnunetv2")
except Exception:  # pragma: no cover - metadata missing in odd installs
    NNUNET_VERSION = "unknown"

# (fold_index, n_folds, patches_done, patches_total); may raise CancelledError to stop the prediction.
PatchCallback = Callable[[int, int, int, int], None]

# Whether nnU-Net's prints in the current thread (context) go to the log: set only inside nnunet_prints_to_log().
_PRINTS_TO_LOG: ContextVar[bool] = ContextVar("spineinstanceseg_nnunet_prints_to_log", default=False)

# timm, which nnU-Net's trainer search imports, triggers torch's deprecation notice of torch.jit.interface: noise in
# a user's console that says nothing about their run. Filtered once, for exactly that message; a warnings filter
# switched on and off around a call (catch_warnings) would not be thread-safe.
warnings.filterwarnings("ignore", message=r"`torch\.jit\.interface` is deprecated", category=FutureWarning)


def _print_to_log(label: str) -> Callable[..., None]:
    """A ``print`` for a third-party package: a DEBUG log line inside :func:`prints_to_log`, else ``builtins.print``."""

    def _print(*values: object, sep: str | None = " ", end: str | None = "\n", file=None, flush=False) -> None:
        if _PRINTS_TO_LOG.get() and file in (None, sys.stdout):
            for line in (" " if sep is None else sep).join(str(v) for v in values).splitlines():
                if line.strip():
                    log.debug("%s: %s", label, line.rstrip())
            return
        builtins.print(*values, sep=sep, end=end, file=file, flush=flush)

    return _print


# The print of each package whose prints can go to the log, and the name its log lines start with.
_PRINTS: dict[str, Callable[..., None]] = {
    "nnunetv2": _print_to_log("nnU-Net"),
    "totalsegmentator": _print_to_log("TotalSegmentator"),
}
_nnunet_print = _PRINTS["nnunetv2"]


@contextlib.contextmanager
def prints_to_log(*packages: str) -> Iterator[None]:
    """Inside the block, what these packages (of :data:`_PRINTS`) print to stdout in this thread goes to the DEBUG log.

    The packages' modules (those imported so far) get a ``print`` of their own: it behaves exactly like ``print``
    everywhere except inside this block in this thread, so nothing else in the process changes. A module imported
    inside the block is patched when the next block starts.
    """
    for name, module in list(sys.modules.items()):
        package = name.partition(".")[0]
        if package in packages and module is not None and vars(module).get("print") is None:
            module.print = _PRINTS[package]  # type: ignore[attr-defined]
    token = _PRINTS_TO_LOG.set(True)
    try:
        yield
    finally:
        _PRINTS_TO_LOG.reset(token)


def nnunet_prints_to_log() -> contextlib.AbstractContextManager[None]:
    """Inside the block, what nnU-Net prints to stdout in this thread goes to the DEBUG log (:func:`prints_to_log`)."""
    return prints_to_log("nnunetv2")


class _ProgressPredictor(nnUNetPredictor):
    """nnU-Net's predictor with a per-patch hook (its own loop is unchanged; we only count the patches).

    ``predict_logits_from_preprocessed_data`` runs one sliding window per fold; each computes its patch list
    once (``_internal_get_sliding_window_slicers``) and predicts every patch through
    ``_internal_maybe_mirror_and_predict``. Counting both gives "fold k of n, patch i of m".
    """

    on_patch: PatchCallback | None = None

    def reset_progress(self, callback: PatchCallback | None) -> None:
        self.on_patch = callback
        self._fold = -1
        self._done = 0
        self._total = 1

    def _internal_get_sliding_window_slicers(self, image_size):
        slicers = super()._internal_get_sliding_window_slicers(image_size)
        self._fold = getattr(self, "_fold", -1) + 1
        self._done, self._total = 0, max(1, len(slicers))
        return slicers

    def _internal_maybe_mirror_and_predict(self, x: torch.Tensor) -> torch.Tensor:
        prediction = super()._internal_maybe_mirror_and_predict(x)
        self._done = min(getattr(self, "_done", 0) + 1, getattr(self, "_total", 1))
        if self.on_patch is not None:
            n_folds = len(self.list_of_parameters or [None])
            self.on_patch(max(self._fold, 0), n_folds, self._done, self._total)
        return prediction


def check_weights_only(path: Path) -> None:
    """Unpickle ``path`` with ``torch.load(weights_only=True)``: only tensors and plain data may be inside.

    nnU-Net itself loads checkpoints with ``weights_only=False`` (arbitrary pickles); a model card that promises
    weights-only checkpoints (our bundled model) is held to it here first, so no code can run while loading.

    Raises:
        ModelError: the file holds other objects, naming the file.
    """
    try:
        torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 (UnpicklingError, RuntimeError, ...: all mean "not weights only")
        raise ModelError(
            f"the checkpoint is not weights-only although its model card says so ({type(err).__name__})",
            fix="reinstall the model; never load a checkpoint from an untrusted source",
            path=path,
        ) from err


def load_predictor(
    folder: str | Path,
    *,
    folds: Sequence[int | str],
    checkpoint: str,
    device: torch.device,
    tile_step_size: float = 0.5,
    use_mirroring: bool = True,
) -> nnUNetPredictor:
    """An initialised nnU-Net predictor for a trained model folder (weights of all ``folds`` kept in memory)."""
    # the checkpoint names its trainer class; ours are found through nnUNet_extTrainer
    with nnunet_environment(trainer_variables()), nnunet_prints_to_log():
        predictor = _ProgressPredictor(
            tile_step_size=tile_step_size,
            use_gaussian=True,
            use_mirroring=use_mirroring,
            perform_everything_on_device=device.type == "cuda",
            device=device,
            verbose=False,
            verbose_preprocessing=False,
            allow_tqdm=False,
        )
        predictor.initialize_from_trained_model_folder(str(folder), tuple(folds), checkpoint_name=checkpoint)
    return predictor


def predict_array(
    predictor: nnUNetPredictor,
    data: np.ndarray,
    spacing_zyx: Sequence[float],
    *,
    on_patch: PatchCallback | None = None,
) -> np.ndarray:
    """Predict a label map for one case with nnU-Net's preprocessing, sliding window and export resampling.

    Args:
        data: ``(channels, z, y, x)`` float32 array in SimpleITK axis order.
        spacing_zyx: Voxel spacing in mm in the same (reversed) order.
        on_patch: Called after every patch (see :data:`PatchCallback`).

    Returns:
        ``(z, y, x)`` label map in the model's label values, same shape as ``data[0]``.
    """
    properties = {"spacing": [float(s) for s in spacing_zyx]}
    if isinstance(predictor, _ProgressPredictor):
        predictor.reset_progress(on_patch)
    with nnunet_prints_to_log():
        adapter = PreprocessAdapterFromNpy(
            [np.asarray(data, dtype=np.float32)],
            None,
            [properties],
            None,
            predictor.plans_manager,
            predictor.dataset_json,
            predictor.configuration_manager,
            num_threads_in_multithreaded=1,
            verbose=False,
        )
        item = next(adapter)
        logits = predictor.predict_logits_from_preprocessed_data(item["data"]).cpu()
        labels = convert_predicted_logits_to_segmentation_with_correct_shape(
            logits,
            predictor.plans_manager,
            predictor.configuration_manager,
            predictor.label_manager,
            item["data_properties"],
            return_probabilities=False,
        )
    return np.asarray(labels)


def plan_and_preprocess(
    dataset_id: int,
    *,
    num_processes: int = 1,
    verify_integrity: bool = True,
    edit_plans: Callable[[dict], dict] | None = None,
    configurations: Sequence[str] = ("3d_fullres",),
) -> str:
    """nnU-Net's fingerprint extraction, experiment planning and preprocessing (``nnUNetv2_plan_and_preprocess``).

    Args:
        num_processes: Worker processes for fingerprinting and preprocessing.
        verify_integrity: Run nnU-Net's dataset integrity check first.
        edit_plans: Optional function that receives the default ``nnUNetPlans`` dict and returns a new plans dict
            with another ``plans_name`` (saved next to it and used for preprocessing), e.g. smaller networks.

    Returns:
        The plans identifier to train with.
    """
    import json

    from nnunetv2.paths import nnUNet_preprocessed
    from nnunetv2.utilities.dataset_name_id_conversion import convert_id_to_dataset_name

    with nnunet_environment(data_worker_variables()), nnunet_prints_to_log():
        extract_fingerprints(
            [int(dataset_id)],
            num_processes=num_processes,
            check_dataset_integrity=verify_integrity,
            verbose=False,
            show_progress_bar=False,
        )
        plans_identifier = plan_experiments([int(dataset_id)]) or "nnUNetPlans"
        if edit_plans is not None:
            folder = Path(str(nnUNet_preprocessed)) / convert_id_to_dataset_name(int(dataset_id))
            plans = json.loads((folder / f"{plans_identifier}.json").read_text(encoding="utf-8"))
            new_plans = edit_plans(plans)
            plans_identifier = new_plans["plans_name"]
            (folder / f"{plans_identifier}.json").write_text(json.dumps(new_plans, indent=2), encoding="utf-8")
        preprocess(
            [int(dataset_id)],
            plans_identifier=plans_identifier,
            configurations=tuple(configurations),
            num_processes=[num_processes] * len(configurations),
            verbose=False,
            show_progress_bar=False,
        )
    return plans_identifier


def train_fold(
    dataset_id: int,
    *,
    configuration: str,
    fold: int | str,
    trainer: str,
    plans_identifier: str,
    device: torch.device,
    resume: bool,
    validate: bool,
    pretrained_weights: Path | None = None,
    output_layers: bool = True,
) -> Path:
    """Train one fold with an nnU-Net trainer class (``nnUNetv2_train``) and return the model folder.

    The model folder is ``$nnUNet_results/DatasetNNN_NAME/TRAINER__PLANS__CONFIGURATION`` (the folder to pass
    to the adapter). ``validate`` runs nnU-Net's final validation (it predicts every validation case).
    ``pretrained_weights`` start the training from a checkpoint, read as plain data, with its output layers when
    ``output_layers`` is set and the classes are the same (:mod:`.start_weights`; nnU-Net's own loader would
    unpickle anything and always start the output layers afresh); the fold folder records that start.
    """
    from nnunetv2.run.run_training import get_trainer_from_args, maybe_load_checkpoint

    with nnunet_environment({**trainer_variables(), **data_worker_variables()}):
        nnunet_trainer = get_trainer_from_args(
            str(dataset_id), configuration, fold, trainer, plans_identifier, resume, device=device
        )
        if pretrained_weights is not None and not resume:
            if not nnunet_trainer.was_initialized:
                nnunet_trainer.initialize()
            carried = load_start_weights(nnunet_trainer.network, Path(pretrained_weights), output_layers=output_layers)
            write_start_record(Path(nnunet_trainer.output_folder), Path(pretrained_weights),
                               output_layers_kept=bool(carried))  # fmt: skip
        else:
            maybe_load_checkpoint(nnunet_trainer, resume, False, None)
        nnunet_trainer.run_training()  # nnU-Net's training log stays on stdout: a training's progress report
        if validate:
            nnunet_trainer.perform_actual_validation(False)
        return Path(nnunet_trainer.output_folder_base)
