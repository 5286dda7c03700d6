"""Regenerate the built-in example (package data) used by `spineseg demo` and the README quick start.

A lumbar CT phantom (seed 2025, 1.5 mm, tilted 10 degrees) stored as int16 HU plus its ground truth.
"""

from __future__ import annotations

import numpy as np

from spineinstanceseg.examples import EXAMPLE_DIR, EXAMPLE_NAME
from spineinstanceseg.io import write_volume
from spineinstanceseg.phantom import generate_phantom


def main() -> None:
    case = generate_phantom(2025, modality="ct", region="lumbar", spacing=1.5, oblique_deg=10.0)
    image = case.image.with_array(np.clip(np.rint(case.image.array), -1024, 3071).astype(np.int16))
    write_volume(image, EXAMPLE_DIR / f"{EXAMPLE_NAME}_image.nii.gz")
    write_volume(case.instances, EXAMPLE_DIR / f"{EXAMPLE_NAME}_instances.nii.gz")
    write_volume(case.semantic, EXAMPLE_DIR / f"{EXAMPLE_NAME}_semantic.nii.gz")
    levels = [int(v) for v in np.unique(case.instances.array)[1:]]
    print(f"wrote {EXAMPLE_NAME} ({image.shape}, levels {levels}) to {EXAMPLE_DIR}")


if __name__ == "__main__":
    main()
