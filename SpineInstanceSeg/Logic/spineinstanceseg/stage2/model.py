"""Stage-2 model: network + configuration + checkpoint files, and window inference.

A checkpoint is a folder with three files (no pickles, so loading never runs code from the file):

* ``config.json``: :class:`Stage2Config` (window geometry, input channels, network width, training notes).
* ``weights.safetensors``: the network's ``state_dict`` (float32 tensors, BatchNorm statistics included).
* ``checksums.json``: SHA-256 of the two files above; verified on every load, so a truncated download or an
  edited file is reported instead of silently giving wrong segmentations.

>>> model = load_bundled_model(device="cpu")                      # doctest: +SKIP
>>> probs = model.predict_windows(windows)  # (B, C, 64, 64, 64) -> (B, 4, 64, 64, 64)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from ..atomic import atomic_directory
from ..devices import (
    ResolvedDevice,
    is_out_of_memory,
    out_of_memory_warning,
    release_cached_memory,
    resolve_device,
)
from ..errors import ModelError
from ..hashing import sha256_file
from .encoding import IMAGE_CHANNEL, MASK_CHANNELS
from .network import NUM_CLASSES, MultiScaleUNet3D, count_parameters
from .windows import WindowSpec

__all__ = [
    "Stage2Config",
    "Stage2Model",
    "CONFIG_FILE",
    "WEIGHTS_FILE",
    "CHECKSUM_FILE",
    "FORMAT_VERSION",
    "sha256_file",
    "bundled_model_dir",
    "load_bundled_model",
]

log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.safetensors"
CHECKSUM_FILE = "checksums.json"
FORMAT_VERSION = 1
BUNDLED_NAME = "stage2_phantom_v2"


@dataclass(frozen=True)
class Stage2Config:
    """Everything needed to rebuild a stage-2 network and feed it correctly.

    Attributes:
        window: Window size (voxels) and isotropic working spacing (mm).
        channels: Input channel names in order (see :mod:`.encoding`).
        base_width: Feature channels of the network's first level.
        num_classes: Output classes (background, top, centre, bottom).
        name: Short model name shown in reports.
        training: Free-form JSON-compatible notes (data, schedule, scores) kept with the weights.
    """

    window: WindowSpec = field(default_factory=WindowSpec)
    channels: tuple[str, ...] = MASK_CHANNELS
    base_width: int = 16
    num_classes: int = NUM_CLASSES
    name: str = "stage2"
    training: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", tuple(self.channels))
        known = (*MASK_CHANNELS, IMAGE_CHANNEL)
        bad = [c for c in self.channels if c not in known]
        if not self.channels or bad:
            raise ModelError(
                f"stage-2 config has unknown or no input channels {bad or list(self.channels)}",
                fix=f"use channels from {known}",
            )
        if int(self.base_width) < 1:
            raise ModelError(f"stage-2 base width must be >= 1, got {self.base_width}", fix="use e.g. 16")

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "name": self.name,
            "window": self.window.to_dict(),
            "channels": list(self.channels),
            "base_width": int(self.base_width),
            "num_classes": int(self.num_classes),
            "training": self.training,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Stage2Config:
        version = int(data.get("format_version", FORMAT_VERSION))
        if version > FORMAT_VERSION:
            raise ModelError(
                f"stage-2 model format {version} is newer than this version of spineinstanceseg understands",
                fix="update spineinstanceseg",
            )
        return cls(
            window=WindowSpec.from_dict(data["window"]),
            channels=tuple(data["channels"]),
            base_width=int(data["base_width"]),
            num_classes=int(data.get("num_classes", NUM_CLASSES)),
            name=str(data.get("name", "stage2")),
            training=dict(data.get("training", {})),
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Stage2Config:
        return cls.from_dict(json.loads(text))

    def build_network(self) -> MultiScaleUNet3D:
        return MultiScaleUNet3D(len(self.channels), base_width=self.base_width, num_classes=self.num_classes)


class Stage2Model:
    """A stage-2 network ready for inference (eval mode, on ``device``).

    Attributes:
        config: The model's :class:`Stage2Config`.
        network: The torch module.
        device: Where the network runs (a ``torch.device``; "auto" and "cuda" are resolved, see
            :mod:`spineinstanceseg.devices`).
        path: Folder it was loaded from (``None`` for an in-memory model).
        warnings: Messages for the report, appended when a GPU ran out of memory and windows ran on the CPU
            (callers take the entries added during their call, as stage 1 does).

    Raises:
        InputError: a device this machine cannot use.
    """

    def __init__(
        self,
        config: Stage2Config,
        network: MultiScaleUNet3D | None = None,
        *,
        device: str | torch.device | ResolvedDevice = "cpu",
        path: str | Path | None = None,
        sha256: str | None = None,
    ) -> None:
        self.config = config
        self.device = resolve_device(device).torch_device()
        self.network = (network if network is not None else config.build_network()).to(self.device).eval()
        self.path = Path(path) if path is not None else None
        self.sha256 = sha256
        self.warnings: list[str] = []
        log.info("stage-2 model %s: %d parameters on %s", config.name, self.parameter_count, self.device)

    @property
    def parameter_count(self) -> int:
        return count_parameters(self.network)

    def info(self) -> dict[str, Any]:
        """Name, folder and weights checksum (recorded in segmentation reports)."""
        return {
            "name": self.config.name,
            "path": str(self.path) if self.path else None,
            "sha256": self.sha256,
            "parameters": self.parameter_count,
        }

    def predict_windows(self, inputs: NDArray, *, batch_size: int = 4) -> NDArray[np.float32]:
        """Softmax class probabilities for a stack of encoded windows.

        When the GPU runs out of memory, the remaining windows of *this call* run on a CPU copy of the network and
        a warning is added to :attr:`warnings`; the model stays on its GPU for the next call.

        Args:
            inputs: float32 ``(B, C, X, Y, Z)`` from :func:`.encoding.encode_input`, C = ``len(config.channels)``.
            batch_size: Windows per forward pass.

        Returns:
            float32 ``(B, 4, X, Y, Z)``; classes background, top, centre, bottom; sums to 1 over axis 1.
        """
        inputs = np.asarray(inputs, dtype=np.float32)
        if inputs.ndim != 5 or inputs.shape[1] != len(self.config.channels):
            raise ModelError(
                f"stage-2 input must be (B, {len(self.config.channels)}, X, Y, Z), got {inputs.shape}",
                fix="encode windows with encode_input(..., channels=model.config.channels)",
            )
        out = np.empty((inputs.shape[0], self.config.num_classes, *inputs.shape[2:]), dtype=np.float32)
        step = max(1, int(batch_size))
        network, device = self.network, self.device
        with torch.inference_mode():
            for start in range(0, inputs.shape[0], step):
                chunk = inputs[start : start + step]
                try:
                    out[start : start + step] = self._forward(network, chunk, device)
                except RuntimeError as err:
                    if device.type == "cpu" or not is_out_of_memory(err):
                        raise
                    network, device = self._cpu_fallback(start, inputs.shape[0])
                    out[start : start + step] = self._forward(network, chunk, device)
        return out

    @staticmethod
    def _forward(network: torch.nn.Module, chunk: NDArray, device: torch.device) -> NDArray:
        x = torch.from_numpy(np.ascontiguousarray(chunk)).to(device)
        return torch.softmax(network(x), dim=1).float().cpu().numpy()

    def _cpu_fallback(self, first: int, total: int) -> tuple[torch.nn.Module, torch.device]:
        """A CPU copy of the network for the rest of one call, after the GPU ran out of memory (warning recorded)."""
        what = f"windows {first + 1}-{total} of {total} of this pass"
        message = out_of_memory_warning("stage 2", self.device, what=what)
        log.warning(message)
        self.warnings.append(message)
        release_cached_memory(self.device)
        copy = self.config.build_network()
        copy.load_state_dict({k: v.detach().to("cpu") for k, v in self.network.state_dict().items()})
        return copy.eval(), torch.device("cpu")

    def save(self, directory: str | Path) -> Path:
        """Write the checkpoint folder atomically (replacing an existing one); returns its path."""
        from safetensors.torch import save_file

        directory = Path(directory)
        state = {k: v.detach().to("cpu").contiguous() for k, v in self.network.state_dict().items()}
        with atomic_directory(directory) as tmp:
            (tmp / CONFIG_FILE).write_text(self.config.to_json() + "\n", encoding="utf-8")
            save_file(state, str(tmp / WEIGHTS_FILE), metadata={"format": "spineinstanceseg-stage2"})
            sums = {name: sha256_file(tmp / name) for name in (CONFIG_FILE, WEIGHTS_FILE)}
            (tmp / CHECKSUM_FILE).write_text(json.dumps(sums, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        self.sha256 = sums[WEIGHTS_FILE]
        return directory

    @classmethod
    def load(cls, path: str | Path, *, device: str | torch.device | ResolvedDevice = "auto") -> Stage2Model:
        """Load a checkpoint folder after verifying its checksums.

        Raises:
            ModelError: missing folder/file, checksum mismatch, or weights that do not fit the config.
        """
        from safetensors.torch import load_file

        folder = Path(path)
        if folder.is_file():  # accept a path to any file inside the folder
            folder = folder.parent
        if not folder.is_dir():
            raise ModelError("no stage-2 model folder here", fix="pass the folder written by training", path=folder)
        sums = _read_checksums(folder)
        for name in (CONFIG_FILE, WEIGHTS_FILE):
            file = folder / name
            if not file.is_file():
                raise ModelError(
                    f"the stage-2 model is incomplete: {name} is missing",
                    fix="copy the whole model folder again or retrain it",
                    path=file,
                )
            actual = sha256_file(file)
            if actual != sums.get(name):
                raise ModelError(
                    f"checksum mismatch for {name}: the file is damaged or was edited",
                    fix="restore the model folder from its original copy or retrain it",
                    path=file,
                )
        try:
            config = Stage2Config.from_json((folder / CONFIG_FILE).read_text(encoding="utf-8"))
            state = load_file(str(folder / WEIGHTS_FILE))
            network = config.build_network()
            network.load_state_dict(state, strict=True)
        except (KeyError, ValueError, RuntimeError, json.JSONDecodeError) as exc:
            raise ModelError(
                f"the stage-2 model could not be read: {exc}",
                fix="use a folder written by `spineseg train stage2` with this version",
                path=folder,
            ) from exc
        return cls(config, network, device=device, path=folder, sha256=sums[WEIGHTS_FILE])


def _read_checksums(folder: Path) -> dict[str, str]:
    file = folder / CHECKSUM_FILE
    if not file.is_file():
        raise ModelError(
            f"the stage-2 model has no {CHECKSUM_FILE}, so its files cannot be verified",
            fix="copy the whole model folder again or retrain it",
            path=file,
        )
    try:
        sums = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ModelError(f"{CHECKSUM_FILE} is not valid JSON", fix="restore the model folder", path=file) from exc
    if not isinstance(sums, dict):
        raise ModelError(f"{CHECKSUM_FILE} is not a name -> sha256 table", fix="restore the model folder", path=file)
    return sums


def bundled_model_dir() -> Path:
    """Folder of the stage-2 model shipped with the package (trained on synthetic phantoms)."""
    return Path(__file__).resolve().parent.parent / "models" / BUNDLED_NAME


def load_bundled_model(device: str | torch.device | ResolvedDevice = "auto") -> Stage2Model:
    """Load the bundled phantom-trained stage-2 model (checksums verified)."""
    folder = bundled_model_dir()
    if not (folder / WEIGHTS_FILE).is_file():
        raise ModelError(
            "the bundled stage-2 model is missing from this installation",
            fix="reinstall spineinstanceseg, or train one with `spineseg train stage2` and pass --stage2-model",
            path=folder,
        )
    return Stage2Model.load(folder, device=device)
