"""nnU-Net trainer classes of this project, found by nnU-Net through ``nnUNet_extTrainer`` (see ``..environment``).

nnU-Net imports the modules of this folder as top-level modules by file name, so they have unique names and
import only nnunetv2, torch and the standard library. Nothing is imported here on purpose.
"""
