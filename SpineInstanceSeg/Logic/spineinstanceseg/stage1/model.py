"""A trained stage-1 nnU-Net v2 model, loaded once, that predicts a semantic mask on the input's own grid.

>>> model = Stage1Model("Dataset501_Spine/nnUNetTrainer__nnUNetPlans__3d_fullres", device="auto")  # doctest: +SKIP
>>> semantic = model.predict(image, progress=Progress(callback))  # doctest: +SKIP

The folder must hold ``dataset.json``, ``plans.json`` and ``fold_X/<checkpoint>`` for every fold used; an
optional ``spineseg_card.json`` (:mod:`.model_card`) says what the labels mean and carries checksums that are
verified on load. The output holds our semantic classes (:mod:`spineinstanceseg.semantic`) and has exactly the
geometry of the input. nnU-Net itself does the preprocessing, patching and stitching (:mod:`.nnunet_adapter`);
around it, the network sees only the box around the body (:mod:`.body_crop`), a CT scanner's padding is read as air,
and no spine class is left in a CT's air (:mod:`.air`).
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from ..conventions import to_internal
from ..devices import is_out_of_memory, out_of_memory_warning, release_cached_memory, resolve_device
from ..errors import CancelledError, InputError, ModelError
from ..orientation import from_canonical, to_canonical
from ..progress import Progress
from ..semantic import SEMANTIC_LABELS, SEMANTIC_NAMES, VERTEBRA
from ..volume import Volume
from . import nnunet_adapter
from .air import DEFAULT_AIR_PARAMETERS, clear_labels_in_air, fill_padding_with_air
from .body_crop import body_box
from .model_card import ModelCard, classes_from_label_names, read_card, verify_checksums

__all__ = ["Stage1Model", "resolve_model_folder", "find_folds", "check_channels"]

log = logging.getLogger(__name__)


def resolve_model_folder(folder: str | Path) -> Path:
    """The trained-model folder: ``folder`` itself, or its only sub-folder holding ``plans.json``.

    Raises:
        ModelError: the folder is missing, or lacks ``dataset.json`` / ``plans.json`` (naming the missing file).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelError(
            "the stage-1 model folder does not exist", fix="pass a trained nnU-Net v2 model folder", path=folder
        )
    if not (folder / "plans.json").is_file():
        inner = [p for p in folder.iterdir() if p.is_dir() and (p / "plans.json").is_file()]
        if len(inner) == 1:
            folder = inner[0]
    for name in ("dataset.json", "plans.json"):
        if not (folder / name).is_file():
            raise ModelError(
                f"the model folder is missing {name}",
                fix="pass the nnU-Net results folder TRAINER__PLANS__CONFIGURATION that holds dataset.json, "
                "plans.json and fold_X/ (copy the whole folder)",
                path=folder / name,
            )
    return folder


def find_folds(folder: Path, checkpoint: str, folds: Sequence[int | str] | None) -> list[int | str]:
    """The folds to use: the given ones (each must have its checkpoint) or every ``fold_*`` with one."""
    if folds is None:
        found = sorted(
            (p.name[len("fold_") :] for p in folder.glob("fold_*") if (p / checkpoint).is_file()),
            key=lambda f: (f == "all", int(f) if f.isdigit() else 0),
        )
        numbered = [int(f) for f in found if f.isdigit()]
        chosen: list[int | str] = numbered if numbered else (["all"] if "all" in found else [])
        if not chosen:
            raise ModelError(
                f"the model folder has no fold_*/{checkpoint}",
                fix="train at least one fold, or pass the checkpoint name that exists (e.g. checkpoint_best.pth)",
                path=folder,
            )
        return chosen
    out: list[int | str] = []
    for fold in folds:
        fold = "all" if str(fold) == "all" else int(fold)
        path = folder / f"fold_{fold}" / checkpoint
        if not path.is_file():
            raise ModelError(
                f"the model folder is missing fold_{fold}/{checkpoint}", fix="check --folds and --checkpoint", path=path
            )
        out.append(fold)
    return out


def check_channels(image: Volume | Sequence[Volume], channel_names: Sequence[str]) -> list[Volume]:
    """The input as a list of channel volumes, checked against the model's ``channel_names``.

    Raises:
        InputError: wrong number of channels, or channels on different grids.
    """
    channels = [image] if isinstance(image, Volume) else list(image)
    if len(channels) != len(channel_names):
        raise InputError(
            f"the model expects {len(channel_names)} input channel(s) ({', '.join(channel_names)}) "
            f"but got {len(channels)}",
            fix="pass one image per channel, in the order of the model's dataset.json channel_names",
        )
    for k, channel in enumerate(channels[1:], start=1):
        if not channel.same_grid(channels[0]):
            differences = "; ".join(channel.geometry_differences(channels[0]))
            raise InputError(
                f"input channel {k} is on another grid than channel 0 ({differences})",
                fix="resample every channel onto the first one's grid",
            )
    return channels


def _label_lut(card: ModelCard | None, labels: dict, source: Path) -> np.ndarray | None:
    """Lookup table model label value -> internal class, or ``None`` when a convention converts instead."""
    if card is not None and card.convention:
        return None
    if card is not None and card.classes:
        classes, ignored = card.classes, set(card.ignore_labels)
        # nnU-Net's "ignore" label marks unlabelled training voxels; a model never predicts it.
        declared = {int(v) for n, v in labels.items() if not isinstance(v, (list, tuple)) and n.lower() != "ignore"}
        unknown = sorted({v for vals in classes.values() for v in vals} - declared)
        if unknown:
            raise ModelError(
                f"the model card maps label values {unknown} that dataset.json does not have",
                fix="fix the card",
                path=source,
            )
        unmapped = sorted(declared - {0} - ignored - {v for vals in classes.values() for v in vals})
        unmapped_named = [(n, v) for n, v in labels.items() if v in unmapped]
    else:
        classes, unmapped_named = classes_from_label_names(labels)
        ignored = set(card.ignore_labels) if card is not None else set()
        unmapped_named = [(n, v) for n, v in unmapped_named if v not in ignored]
    if unmapped_named:
        raise ModelError(
            f"the model's labels {unmapped_named} do not map to spine classes ({', '.join(SEMANTIC_LABELS)})",
            fix='add a spineseg_card.json with "classes" (e.g. {"vertebra": [1, 2]}), "ignore_labels", or a '
            '"convention" such as "totalseg_total"',
            path=source,
        )
    if VERTEBRA not in {SEMANTIC_LABELS[k] for k in classes}:
        raise ModelError("the model has no vertebra label", fix="use a model that segments vertebrae", path=source)
    top = max([int(v) for v in labels.values() if not isinstance(v, (list, tuple))] + [0])
    lut = np.zeros(top + 1, dtype=np.uint8)
    for name, values in classes.items():
        lut[values] = SEMANTIC_LABELS[name]
    return lut


@contextlib.contextmanager
def _on_cpu_for_one_call(predictor) -> Iterator[None]:
    """Run an nnU-Net predictor on the CPU inside the block; afterwards it is back on its own device.

    The network's weights go back to where they were (a few MB); the GPU memory of the failed attempt is
    released first, so the next case starts on the GPU with a clean cache.
    """
    device, on_device = predictor.device, predictor.perform_everything_on_device
    weights_on = next(predictor.network.parameters(), torch.empty(0)).device
    release_cached_memory(device)
    predictor.device, predictor.perform_everything_on_device = torch.device("cpu"), False
    predictor.network = predictor.network.to("cpu")
    try:
        yield
    finally:
        predictor.network = predictor.network.to(weights_on)
        predictor.device, predictor.perform_everything_on_device = device, on_device


class Stage1Model:
    """A trained nnU-Net v2 model ready to predict (weights loaded once, on ``device``).

    Args:
        folder: The nnU-Net results folder ``TRAINER__PLANS__CONFIGURATION`` (or its parent if it has one such).
        folds: Folds to ensemble (``None``: every numbered fold with a checkpoint, else ``fold_all``).
        checkpoint: Checkpoint file name in each fold folder.
        device: "auto" (CUDA if available, else CPU), "cpu", "cuda", "cuda:N" or "mps" (see
            :mod:`spineinstanceseg.devices`); ``self.device`` is the resolved name, e.g. "cuda:0".
        tile_step_size: Sliding-window step as a fraction of the patch (``None``: the card's choice, else 0.5).
        use_mirroring: nnU-Net's test-time mirroring, 8 network calls per patch (``None``: the card's choice, else
            on, as nnU-Net does).
        verify: Check the card's SHA-256 checksums of the checkpoints used.
        crop_to_body: Run the network only on the box around the body (see :mod:`.body_crop`; air outside it is
            background), which makes the result independent of how much air was scanned.

    Raises:
        ModelError: missing files (named), checksum mismatch, labels that do not map to spine classes.
        InputError: a device this machine cannot use.

    A GPU that runs out of memory during :meth:`predict` makes that one prediction run on the CPU (recorded in
    :attr:`warnings`); the model stays on its GPU. One instance must not predict from two threads at once.
    """

    def __init__(
        self,
        folder: str | Path,
        *,
        folds: Sequence[int | str] | None = None,
        checkpoint: str = "checkpoint_final.pth",
        device: str = "auto",
        tile_step_size: float | None = None,
        use_mirroring: bool | None = None,
        verify: bool = True,
        crop_to_body: bool = True,
    ) -> None:
        self.folder = resolve_model_folder(folder)
        self.checkpoint = checkpoint
        self.folds = find_folds(self.folder, checkpoint, folds)
        self.card = read_card(self.folder)
        self.dataset_json = json.loads((self.folder / "dataset.json").read_text(encoding="utf-8"))
        self.channels = [str(v) for _, v in sorted(self.dataset_json.get("channel_names", {"0": "image"}).items())]
        self._lut = _label_lut(self.card, self.dataset_json.get("labels", {}), self.folder / "dataset.json")
        self.warnings: list[str] = []
        files = [f"fold_{f}/{checkpoint}" for f in self.folds]
        if self.card is None:
            log.info("%s has no model card: labels mapped by name, checksums not verified", self.folder)
        elif verify:
            for rel in verify_checksums(self.card, self.folder, files=files):
                log.warning("%s: %s is not listed in the model card; not verified", self.folder, rel)
        if self.card is not None and self.card.weights_only:
            for rel in files:
                nnunet_adapter.check_weights_only(self.folder / rel)
        default_orientation = self.dataset_json.get("spineinstanceseg", {}).get("orientation", "as_is")
        self.orientation = self.card.input_orientation if self.card is not None else default_orientation
        self.resolved_device = resolve_device(device)
        self.device = self.resolved_device.name
        preferred = self.card.inference if self.card is not None else {}
        self._tile_step_size = float(
            tile_step_size if tile_step_size is not None else preferred.get("tile_step_size", 0.5)
        )
        self._use_mirroring = bool(use_mirroring if use_mirroring is not None else preferred.get("use_mirroring", True))
        self._crop_to_body = bool(crop_to_body)
        self._predictor = self._load(self.resolved_device.torch_device())

    def _load(self, device):
        return nnunet_adapter.load_predictor(
            self.folder,
            folds=self.folds,
            checkpoint=self.checkpoint,
            device=device,
            tile_step_size=self._tile_step_size,
            use_mirroring=self._use_mirroring,
        )

    @property
    def name(self) -> str:
        return self.card.name if self.card is not None else self.folder.parent.name

    def label_names(self) -> dict[int, str]:
        """Internal class value -> name, for the classes this model can output."""
        if self._lut is None:
            return dict(SEMANTIC_NAMES)
        return {int(v): SEMANTIC_NAMES[int(v)] for v in np.unique(self._lut) if v}

    def info(self) -> dict:
        return {
            "name": self.name,
            "path": str(self.folder),
            "folds": [str(f) for f in self.folds],
            "checkpoint": self.checkpoint,
            "device": self.device,
            "sha256": dict(self.card.checksums) if self.card is not None else None,
            "classes": {v: n for v, n in self.label_names().items()},
            "input_orientation": self.orientation,
            "use_mirroring": self._use_mirroring,
            "tile_step_size": self._tile_step_size,
            "crop_to_body": self._crop_to_body,
        }

    # ------------------------------------------------------------------ prediction
    def predict_labels(self, image: Volume | Sequence[Volume], *, progress: Progress | None = None) -> Volume:
        """The model's own label values on the input grid (before mapping to our classes)."""
        progress = progress or Progress()
        channels = check_channels(image, self.channels)
        reference = channels[0]
        box = body_box(reference) if self._crop_to_body else None
        if box is not None:
            channels = [c.crop(box) for c in channels]
            log.info("stage 1 runs on the body box %s of %s (the air outside is background)", channels[0].shape,
                     reference.shape)  # fmt: skip
        channels = [fill_padding_with_air(c) for c in channels]  # after the crop: copies only the box
        how = None
        if self.orientation == "lps":
            pairs = [to_canonical(c) for c in channels]
            channels, how = [p[0] for p in pairs], pairs[0][1]
        data = np.stack([np.transpose(np.asarray(c.array, dtype=np.float32), (2, 1, 0)) for c in channels])
        spacing_zyx = channels[0].spacing[::-1]
        n_folds = len(self.folds)

        def on_patch(fold: int, folds: int, done: int, total: int) -> None:
            fraction = 0.05 + 0.9 * (fold + done / total) / max(folds, 1)
            progress.update(
                fraction, f"fold {self.folds[min(fold, n_folds - 1)]} ({fold + 1}/{folds}): patch {done}/{total}"
            )

        progress.update(0.0, f"stage 1: nnU-Net {self.name}, {n_folds} fold(s) on {self._predictor.device}")
        try:
            labels = nnunet_adapter.predict_array(self._predictor, data, spacing_zyx, on_patch=on_patch)
        except CancelledError:
            raise
        except RuntimeError as err:
            if self._predictor.device.type == "cpu" or not is_out_of_memory(err):
                raise
            message = out_of_memory_warning("stage 1", self._predictor.device, what="this prediction")
            log.warning(message)
            self.warnings.append(message)
            with _on_cpu_for_one_call(self._predictor):
                labels = nnunet_adapter.predict_array(self._predictor, data, spacing_zyx, on_patch=on_patch)
        result = channels[0].with_array(np.ascontiguousarray(np.transpose(labels, (2, 1, 0))), is_label=True)
        if how is not None:
            result = from_canonical(result, how)
        result = self._cleared_in_air(result, reference.crop(box) if box is not None else reference)
        if box is not None:
            full = np.zeros(reference.shape, dtype=result.array.dtype)
            full[box] = result.array
            result = reference.with_array(full, is_label=True)
        progress.update(1.0, "stage 1 done")
        if not result.same_grid(
            reference
        ):  # cannot happen unless nnU-Net changed its export; never return a shifted mask
            raise ModelError("the prediction came back on another grid", fix="report this as a bug", path=self.folder)
        return result

    @staticmethod
    def _cleared_in_air(labels: Volume, image: Volume) -> Volume:
        """``labels`` without spine classes in a CT's air (:mod:`.air`; MRI untouched)."""
        if not labels.same_grid(image):  # cannot happen unless nnU-Net changed its export (checked below too)
            return labels
        cleaned, count = clear_labels_in_air(labels, image)
        if count:
            log.info("stage 1: %d labelled voxels were air (below %g HU) and are background", count,
                     DEFAULT_AIR_PARAMETERS.air_below_hu)  # fmt: skip
        return cleaned

    def predict(self, image: Volume | Sequence[Volume], *, progress: Progress | None = None) -> Volume:
        """Semantic mask (:mod:`spineinstanceseg.semantic` classes, uint8) on exactly the input's grid.

        Args:
            image: One volume, or one per channel (all on the same grid) for multi-channel models.

        Raises:
            InputError: wrong number of channels or channels on different grids.
        """
        labels = self.predict_labels(image, progress=progress)
        if self._lut is None:
            return to_internal(labels, self.card.convention).semantic  # type: ignore[union-attr]
        values = np.asarray(labels.array)
        if values.size and int(values.max()) >= self._lut.size:
            raise ModelError(
                f"the model predicted label {int(values.max())} that dataset.json does not declare",
                fix="check the model",
            )
        return labels.with_array(self._lut[values], is_label=True)
