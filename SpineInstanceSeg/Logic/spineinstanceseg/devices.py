"""Where the networks run: one device policy for stage 1, stage 2, training, batch, the CLI and Slicer.

Names a user may give (:data:`DEVICE_NAMES`):

* ``"auto"``: the current CUDA GPU when PyTorch can use one, else the CPU (Apple's MPS is used only when asked
  for: nnU-Net's MPS support is partial);
* ``"cpu"``, ``"cuda"`` (the current CUDA GPU, normally ``cuda:0``), ``"cuda:N"`` (GPU number N), ``"mps"``.

:func:`resolve_device` turns a name into a :class:`ResolvedDevice` (``"cuda"`` becomes ``"cuda:0"``, so model
caches key on the device that is really used). A device that cannot be used raises
:class:`~spineinstanceseg.errors.InputError` (exit code 2 in the CLI) naming the device, why it is unavailable
and the fix. :func:`parse_device` checks only the spelling and never imports torch, so the CLI's ``--help`` and
``--version`` stay fast.

Out of memory on a GPU is not fatal: :func:`is_out_of_memory` recognises it, and each model retries *that one
call* on the CPU (the model itself stays on its GPU, so the next case uses the GPU again) and records
:func:`out_of_memory_warning` in the case's report.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from typing import Any

from .errors import InputError

__all__ = [
    "DEVICE_NAMES",
    "DEVICE_HELP",
    "ResolvedDevice",
    "parse_device",
    "resolve_device",
    "cuda_device_count",
    "is_out_of_memory",
    "out_of_memory_warning",
    "release_cached_memory",
]

log = logging.getLogger(__name__)

DEVICE_NAMES = ("auto", "cpu", "cuda", "cuda:N", "mps")
DEVICE_HELP = "auto (CUDA if available, else CPU), cpu, cuda, cuda:N (GPU number N) or mps (Apple)"
_SPELLING = re.compile(r"^(auto|cpu|mps|cuda)(?::(\d+))?$")
_FIX_UNKNOWN = "use auto, cpu, cuda, cuda:N (N = the GPU's number, e.g. cuda:1) or mps"


@dataclass(frozen=True)
class ResolvedDevice:
    """A device that was checked to be usable.

    Attributes:
        type: "cpu", "cuda" or "mps".
        index: The CUDA device number (``None`` for cpu and mps).
        requested: What the user asked for ("auto", "cuda", ...), for messages and reports.
        label: What the hardware is (e.g. the GPU's name), for messages; may be empty.
    """

    type: str
    index: int | None = None
    requested: str = "auto"
    label: str = ""

    @property
    def name(self) -> str:
        """The canonical name: "cpu", "mps" or "cuda:N" (what torch.device accepts; used as a cache key)."""
        return self.type if self.index is None else f"{self.type}:{self.index}"

    def torch_device(self) -> Any:
        """The ``torch.device`` (imports torch)."""
        import torch

        return torch.device(self.name)

    def describe(self) -> str:
        """E.g. "cuda:0 (NVIDIA H200; chosen by auto)" or "cpu"."""
        notes = [n for n in (self.label, "chosen by auto" if self.requested == "auto" else "") if n]
        return f"{self.name} ({'; '.join(notes)})" if notes else self.name

    def __str__(self) -> str:
        return self.name


def parse_device(device: object) -> tuple[str, int | None]:
    """The spelling of a device name checked without torch: ``"cuda:1"`` -> ``("cuda", 1)``.

    Accepts a :class:`ResolvedDevice` or a ``torch.device`` too (their names).

    Raises:
        InputError: not one of :data:`DEVICE_NAMES`.
    """
    text = str(getattr(device, "name", device) if isinstance(device, ResolvedDevice) else device).strip().lower()
    match = _SPELLING.match(text)
    if match is None or (match.group(2) is not None and match.group(1) != "cuda"):
        raise InputError(f"unknown device {str(device)!r}", fix=_FIX_UNKNOWN)
    return match.group(1), None if match.group(2) is None else int(match.group(2))


def resolve_device(device: object = "auto") -> ResolvedDevice:
    """The device to run on, checked to be usable (imports torch).

    Args:
        device: A name from :data:`DEVICE_NAMES`, a ``torch.device`` or a :class:`ResolvedDevice` (returned as is).

    Raises:
        InputError: an unknown name, or a device this machine cannot use (the message says why and what to do).
    """
    if isinstance(device, ResolvedDevice):
        return device
    kind, index = parse_device(device)
    requested = str(device).strip().lower()
    if kind == "cpu":
        return ResolvedDevice("cpu", requested=requested)
    import torch

    if kind == "auto":
        if torch.cuda.is_available():
            return _cuda(torch, None, requested)
        return ResolvedDevice("cpu", requested=requested, label=f"no usable CUDA GPU: {_why_no_cuda(torch)}")
    if kind == "mps":
        return _mps(torch, requested)
    if not torch.cuda.is_available():
        raise InputError(
            f"device {requested!r} is not available: {_why_no_cuda(torch)}",
            fix="run on the CPU with --device cpu (or --device auto, which uses a GPU only when there is one); "
            "for the GPU, install the PyTorch build that matches your NVIDIA driver",
        )
    return _cuda(torch, index, requested)


def _cuda(torch: Any, index: int | None, requested: str) -> ResolvedDevice:
    count = torch.cuda.device_count()
    number = torch.cuda.current_device() if index is None else index
    if number >= count:
        raise InputError(
            f"device {requested!r} is not available: this machine has {count} CUDA GPU(s), "
            f"numbered cuda:0 to cuda:{count - 1}",
            fix=f"use a GPU number below {count}, --device cuda for the current GPU, or --device cpu",
        )
    return ResolvedDevice("cuda", number, requested, label=str(torch.cuda.get_device_name(number)))


def _mps(torch: Any, requested: str) -> ResolvedDevice:
    backend = getattr(torch.backends, "mps", None)
    if backend is None or not backend.is_built():
        reason = f"this PyTorch {torch.__version__} was built without MPS (Apple GPU) support"
    elif not backend.is_available():
        reason = "MPS needs an Apple-silicon Mac with macOS 12.3 or later"
    else:
        return ResolvedDevice("mps", requested=requested, label="Apple GPU")
    raise InputError(f"device {requested!r} is not available: {reason}",
                     fix="use --device cpu (or --device auto)")  # fmt: skip


def _why_no_cuda(torch: Any) -> str:
    """A short reason why ``torch.cuda.is_available()`` is false."""
    if torch.version.cuda is None:
        return f"this PyTorch {torch.__version__} was built without CUDA support"
    hidden = os.environ.get("CUDA_VISIBLE_DEVICES")
    if hidden is not None and hidden.strip() in ("", "-1"):
        return f"CUDA_VISIBLE_DEVICES={hidden!r} hides every GPU"
    return f"PyTorch {torch.__version__} (CUDA {torch.version.cuda}) finds no usable NVIDIA GPU or driver"


def cuda_device_count() -> int:
    """CUDA GPUs PyTorch can use here (0 without torch or CUDA)."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency of the segmentation
        return 0
    return int(torch.cuda.device_count()) if torch.cuda.is_available() else 0


def is_out_of_memory(error: BaseException) -> bool:
    """True for a GPU out-of-memory error: ``torch.OutOfMemoryError`` or a RuntimeError that says so."""
    import torch

    oom = getattr(torch, "OutOfMemoryError", None) or torch.cuda.OutOfMemoryError  # the former from torch 2.5
    return isinstance(error, oom) or (isinstance(error, RuntimeError) and "out of memory" in str(error).lower())


def out_of_memory_warning(stage: str, device: object, *, what: str) -> str:
    """The report line of a per-call CPU fallback: ``what`` ran on the CPU instead of ``device``."""
    return (
        f"{stage}: {device} ran out of memory, so {what} ran on the CPU instead (slower; the next call uses "
        f"{device} again). Free GPU memory held by other programs, or for stage 2 use a smaller --batch-size"
    )


def release_cached_memory(device: object) -> None:
    """Give the GPU memory torch keeps cached back after an out-of-memory error (no-op on the CPU)."""
    import torch

    kind = getattr(device, "type", str(device).split(":")[0])
    if kind == "cuda" and torch.cuda.is_available():
        torch.cuda.empty_cache()
    elif kind == "mps" and hasattr(torch, "mps"):
        torch.mps.empty_cache()
