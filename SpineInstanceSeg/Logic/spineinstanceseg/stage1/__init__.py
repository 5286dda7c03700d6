"""Stage 1: nnU-Net v2 semantic segmentation of the spine (vertebra, disc, canal, sacrum).

Modules: :mod:`.nnunet_adapter` (the only module that imports nnunetv2), :mod:`.model` (a loaded model that
predicts a :class:`~spineinstanceseg.volume.Volume` on its own grid), :mod:`.model_card` (label meaning, training
notes, checksums), :mod:`.dataset` / :mod:`.dataset_sources` (raw nnU-Net datasets from phantom, SPIDER, VerSe or
generic folders), :mod:`.training` (plan, preprocess, train), :mod:`.sources` (stage-1 sources for the pipeline:
an nnU-Net model, an existing mask, TotalSegmentator), :mod:`.environment` (nnU-Net folders and trainer path)
and ``trainers/`` (short-schedule nnU-Net trainers found through ``nnUNet_extTrainer``).

Nothing heavy is imported here: importing :mod:`spineinstanceseg.stage1` does not import torch or nnunetv2.
"""
