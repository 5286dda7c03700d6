"""Short-schedule nnU-Net v2 trainers for SpineInstanceSeg (everything else is nnU-Net's standard trainer).

The paper trains stage 1 with nnU-Net's standard ``nnUNetTrainer`` (1000 epochs x 250 iterations); that is what
``spineseg train stage1`` uses without ``--quick``. These subclasses only shorten the schedule, for smoke tests,
CPU-only machines and the small bundled model. The schedule comes from environment variables because nnU-Net
instantiates trainers by name with a fixed signature:

* ``SPINESEG_NNUNET_EPOCHS`` (default 5), ``SPINESEG_NNUNET_ITERATIONS`` (optimiser steps per epoch, default 10),
  ``SPINESEG_NNUNET_VAL_ITERATIONS`` (default 2), ``SPINESEG_NNUNET_SAVE_EVERY`` (epochs between
  ``checkpoint_latest.pth`` saves, default 10).

This file is loaded by nnU-Net through ``nnUNet_extTrainer`` as a top-level module, so it imports only nnunetv2,
torch and the standard library.
"""

import os

import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    return max(1, int(value)) if value.isdigit() else default


class nnUNetTrainer_SpineSegQuick(nnUNetTrainer):  # noqa: N801 (nnU-Net's trainer naming convention)
    """nnU-Net's standard trainer with a short, environment-configured schedule (see the module docstring)."""

    def __init__(
        self,
        plans: dict,
        configuration: str,
        fold: int,
        dataset_json: dict,
        device: torch.device = torch.device("cuda"),  # noqa: B008 (same signature as nnUNetTrainer)
    ):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = _env_int("SPINESEG_NNUNET_EPOCHS", 5)
        self.num_iterations_per_epoch = _env_int("SPINESEG_NNUNET_ITERATIONS", 10)
        self.num_val_iterations_per_epoch = _env_int("SPINESEG_NNUNET_VAL_ITERATIONS", 2)
        self.save_every = _env_int("SPINESEG_NNUNET_SAVE_EVERY", 10)
