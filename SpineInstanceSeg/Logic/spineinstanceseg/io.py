"""Reading and writing volumes: the one place that converts between SimpleITK and :class:`Volume`.

Supported inputs: NIfTI (``.nii``, ``.nii.gz``), NRRD (``.nrrd``, ``.nhdr``), MetaImage (``.mha``, ``.mhd``)
and a folder holding one DICOM series. Supported outputs: NIfTI, NRRD and MetaImage, always with the exact
geometry of the volume written. Writes go to a temporary name and are renamed when complete.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .atomic import atomic_path, full_suffix
from .errors import InputError
from .volume import Volume

__all__ = [
    "READABLE_SUFFIXES",
    "WRITABLE_SUFFIXES",
    "read_volume",
    "read_label_map",
    "write_volume",
    "volume_to_sitk",
    "volume_from_sitk",
    "is_volume_path",
]

log = logging.getLogger(__name__)

READABLE_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")
WRITABLE_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".seg.nrrd", ".mha", ".mhd")


def is_volume_path(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` has one of the readable file extensions (no check that it exists)."""
    return full_suffix(path).lower() in READABLE_SUFFIXES


def volume_to_sitk(volume: Volume) -> sitk.Image:
    """Convert to a SimpleITK image with identical geometry (array transposed to SimpleITK's z, y, x)."""
    array = np.ascontiguousarray(np.transpose(volume.array, (2, 1, 0)))
    if array.dtype == bool:
        array = array.astype(np.uint8)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(volume.spacing)
    image.SetOrigin(volume.origin)
    image.SetDirection(tuple(float(v) for v in np.asarray(volume.direction).reshape(-1)))
    return image


def volume_from_sitk(image: sitk.Image, *, is_label: bool = False, source: str | None = None) -> Volume:
    """Convert a 3D scalar SimpleITK image to a :class:`Volume` (errors name ``source`` when given)."""
    dim = image.GetDimension()
    if dim != 3:
        kind = "2D image" if dim == 2 else f"{dim}D image"
        fix = (
            "pass a single 3D volume (split the 4D series, e.g. take one time point or echo)"
            if dim > 3
            else "pass a 3D volume, not a single slice"
        )
        raise InputError(f"this is a {kind} (size {image.GetSize()}); a 3D volume is needed", fix=fix, path=source)
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(
            f"the image has {image.GetNumberOfComponentsPerPixel()} components per voxel (colour or vector image)",
            fix="pass a single-channel (grey-value) 3D image",
            path=source,
        )
    size = image.GetSize()
    if min(size) < 2:
        raise InputError(
            f"the image has size {size}: a single slice is a 2D image, not a volume",
            fix="pass a 3D volume with at least two slices in every direction",
            path=source,
        )
    array = np.transpose(sitk.GetArrayFromImage(image), (2, 1, 0))
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    try:
        return Volume(array, image.GetSpacing(), image.GetOrigin(), direction, is_label=is_label)
    except InputError as err:
        raise InputError(err.problem, fix=err.fix, path=source) from err


def _check_exists(path: Path) -> None:
    if not path.exists():
        raise InputError("no such file or folder", fix="check the path and its spelling", path=path)


def _read_dicom_folder(folder: Path) -> sitk.Image:
    try:
        series_ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    except RuntimeError:
        series_ids = ()
    if not series_ids:
        entries = [p for p in folder.iterdir() if not p.name.startswith(".")]
        problem = "the folder is empty" if not entries else "the folder holds no DICOM series"
        raise InputError(
            problem,
            fix="pass a folder with the DICOM files of one series, or an image file (.nii.gz, .nrrd, .mha)",
            path=folder,
        )
    if len(series_ids) > 1:
        log.warning("%s holds %d DICOM series; reading the largest one", folder, len(series_ids))
    best = max(series_ids, key=lambda sid: len(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), sid)))
    files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), best)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    try:
        return reader.Execute()
    except RuntimeError as err:
        raise InputError(
            f"the DICOM series could not be read ({str(err).strip().splitlines()[-1]})",
            fix="check that the folder holds one complete series of readable DICOM files",
            path=folder,
        ) from err


def _read_sitk(path: Path) -> sitk.Image:
    _check_exists(path)
    if path.is_dir():
        return _read_dicom_folder(path)
    if path.stat().st_size == 0:
        raise InputError("the file is empty (0 bytes)", fix="re-export or re-download the image", path=path)
    try:
        return sitk.ReadImage(str(path))
    except RuntimeError as err:
        detail = str(err).strip().splitlines()[-1] if str(err).strip() else "unknown reason"
        raise InputError(
            f"the file could not be read as an image ({detail})",
            fix="pass a readable NIfTI (.nii/.nii.gz), NRRD, MHA/MHD file or a DICOM folder; the file may be corrupt",
            path=path,
        ) from err


def read_volume(path: str | os.PathLike[str], *, is_label: bool = False) -> Volume:
    """Read a 3D image from a file or a DICOM series folder.

    Args:
        path: NIfTI, NRRD, MHA/MHD file or a folder holding one DICOM series.
        is_label: Read as a label map (values must be integers; floats that are whole numbers are accepted).

    Raises:
        InputError: the path is missing, empty, unreadable, not 3D, or not single-channel.
    """
    path = Path(path)
    image = _read_sitk(path)
    if is_label:
        pixel = image.GetPixelID()
        if pixel in (sitk.sitkFloat32, sitk.sitkFloat64):
            arr = sitk.GetArrayViewFromImage(image)
            if not np.all(np.isfinite(arr)) or not np.all(np.equal(np.mod(arr, 1), 0)):
                raise InputError(
                    "the label map holds non-integer values",
                    fix="pass a label map with integer labels (not a probability map or an image)",
                    path=path,
                )
            image = sitk.Cast(image, sitk.sitkInt32)
    return volume_from_sitk(image, is_label=is_label, source=str(path))


def read_label_map(path: str | os.PathLike[str]) -> Volume:
    """Read a label map (see :func:`read_volume`)."""
    return read_volume(path, is_label=True)


def write_volume(volume: Volume, path: str | os.PathLike[str], *, compress: bool = True) -> Path:
    """Write ``volume`` with its exact geometry; the file appears only once complete.

    Returns:
        The path written.
    """
    path = Path(path)
    suffix = full_suffix(path).lower()
    if suffix not in WRITABLE_SUFFIXES:
        raise InputError(
            f"cannot write files ending in '{suffix or '(no extension)'}'",
            fix=f"use one of {', '.join(WRITABLE_SUFFIXES)}",
            path=path,
        )
    image = volume_to_sitk(volume)
    if suffix == ".mhd":
        # A .mhd has a separate .raw/.zraw that a single rename cannot move; write it directly.
        path.parent.mkdir(parents=True, exist_ok=True)
        sitk.WriteImage(image, str(path), compress)
        return path
    with atomic_path(path) as tmp:
        sitk.WriteImage(image, str(tmp), compress)
    return path
