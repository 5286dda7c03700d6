"""Write and read phantom cases as NIfTI files plus JSON (centroids and a description of the case).

Files for a case called ``name`` in ``out_dir``::

    {name}_image.nii.gz       float32 image (CT HU / MRI a.u.)
    {name}_instances.nii.gz   int16 VerSe-coded vertebra labels
    {name}_semantic.nii.gz    uint8 semantic classes (1 vertebra, 2 disc, 3 canal, 4 sacrum)
    {name}_centroids.json     {"coordinate_system": "LPS", "units": "mm", "label_convention": "VerSe",
                               "centroids": [{"label": 20, "level": "L1", "position": [x, y, z]}, ...]}
    {name}_meta.json          the case's ``meta`` dictionary

Every file is written to a temporary name and renamed when complete.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..atomic import atomic_path
from ..errors import InputError
from ..io import read_volume, write_volume
from ..levels import level_name
from .generator import PhantomCase

__all__ = ["write_phantom_case", "read_phantom_case", "phantom_paths"]


def phantom_paths(out_dir: str | os.PathLike[str], name: str) -> dict[str, Path]:
    """The five file paths of case ``name`` in ``out_dir`` (keys image, instances, semantic, centroids, meta)."""
    out = Path(out_dir)
    return {
        "image": out / f"{name}_image.nii.gz",
        "instances": out / f"{name}_instances.nii.gz",
        "semantic": out / f"{name}_semantic.nii.gz",
        "centroids": out / f"{name}_centroids.json",
        "meta": out / f"{name}_meta.json",
    }


def _write_json(data: object, path: Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")


def write_phantom_case(case: PhantomCase, out_dir: str | os.PathLike[str], name: str) -> dict[str, Path]:
    """Write the case's image, label maps, centroids and meta; returns the paths written (see the module doc)."""
    if not name or any(ch in name for ch in "/\\"):
        raise InputError(f"invalid case name {name!r}", fix="use a plain file name without folders")
    paths = phantom_paths(out_dir, name)
    paths["image"].parent.mkdir(parents=True, exist_ok=True)
    write_volume(case.image, paths["image"])
    write_volume(case.instances, paths["instances"])
    write_volume(case.semantic, paths["semantic"])
    centroids = [
        {"label": int(code), "level": level_name(code), "position": [float(x) for x in pos]}
        for code, pos in sorted(case.centroids.items())
    ]
    _write_json(
        {"coordinate_system": "LPS", "units": "mm", "label_convention": "VerSe", "centroids": centroids},
        paths["centroids"],
    )
    _write_json(case.meta, paths["meta"])
    return paths


def read_phantom_case(out_dir: str | os.PathLike[str], name: str) -> PhantomCase:
    """Read a case written by :func:`write_phantom_case`."""
    paths = phantom_paths(out_dir, name)
    missing = [str(p) for p in paths.values() if not p.exists()]
    if missing:
        raise InputError(
            f"phantom case {name!r} is incomplete: missing {', '.join(missing)}",
            fix="write it again with write_phantom_case or 'spineseg phantom'",
            path=out_dir,
        )
    image = read_volume(paths["image"])
    instances = read_volume(paths["instances"], is_label=True)
    semantic = read_volume(paths["semantic"], is_label=True)
    try:
        cdata = json.loads(paths["centroids"].read_text(encoding="utf-8"))
        centroids = {int(c["label"]): tuple(float(x) for x in c["position"]) for c in cdata["centroids"]}
        meta = json.loads(paths["meta"].read_text(encoding="utf-8"))
    except (ValueError, KeyError, TypeError) as err:
        raise InputError(
            f"the JSON files of case {name!r} are malformed ({err})",
            fix="write the case again",
            path=paths["centroids"],
        ) from err
    return PhantomCase(image, instances, semantic, centroids, meta)  # type: ignore[arg-type]
