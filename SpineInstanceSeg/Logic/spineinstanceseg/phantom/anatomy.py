"""Per-level vertebra dimensions of the phantom (mm), from C1 down to L5, T13/L6 and the sacrum.

The numbers are rounded adult averages (body height, width and depth, canal size, pedicle, lamina and process
sizes) chosen so that the rasterised lumbar vertebrae have the volume (about 40-65 mL) and extent of real VerSe
masks. Sizes grow from cervical to lumbar. Each case scales the whole spine and jitters every level a little.

Local frame of a vertebra (used by :mod:`.shapes`): ``u`` to the patient's left, ``v`` posterior, ``w`` superior
along the spine, origin at the centre of the vertebral body, all in mm.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..levels import L6_CODE, SACRUM_CODE, T13_CODE, level_name

__all__ = ["VertebraShape", "SacrumShape", "vertebra_shape", "sacrum_shape", "spine_codes"]


@dataclass(frozen=True)
class VertebraShape:
    """Dimensions of one vertebra in its local frame (mm, degrees). See the module docstring for the frame."""

    code: int
    kind: str  # "atlas", "axis", "cervical", "thoracic", "lumbar"
    height: float  # posterior body height
    height_ant: float  # anterior body height (smaller in a wedge fracture)
    width: float  # body width (left-right)
    depth: float  # body depth (anterior-posterior)
    concavity: float  # depth of the endplate dish
    disc_below: float  # height of the disc under this vertebra
    canal_u: float  # canal semi-axis left-right
    canal_v: float  # canal semi-axis anterior-posterior
    ped_w: float  # pedicle thickness (left-right)
    ped_h: float  # pedicle height
    lam_t: float  # lamina thickness
    lam_h: float  # lamina height
    sp_len: float  # spinous process length
    sp_ang: float  # spinous process angle below the horizontal
    sp_th: float  # spinous process half thickness (left-right)
    sp_h: float  # spinous process half height
    tp_len: float  # transverse process length
    tp_back: float  # transverse process angle backwards (negative: forwards, cervical)
    tp_up: float  # transverse process angle upwards
    tp_r: float  # transverse process radius
    art_len: float  # articular process length
    art_r: float  # articular process radius

    @property
    def name(self) -> str:
        return level_name(self.code)

    @property
    def canal_centre_v(self) -> float:
        """Position of the canal centre on the ``v`` axis (just behind the body)."""
        return self.depth / 2.0 - 2.0 + self.canal_v

    @property
    def lateral_reach(self) -> float:
        """Half the left-right extent of the vertebra (tips of the transverse processes)."""
        return self.canal_u + self.ped_w + self.tp_len + self.tp_r

    @property
    def posterior_reach(self) -> float:
        """Distance from the body centre to the spinous process tip along ``v``."""
        start = self.canal_centre_v + self.canal_v + 0.5 * self.lam_t
        return start + self.sp_len * float(np.cos(np.radians(self.sp_ang))) + self.sp_h


_FIELDS = (
    "height width depth disc_below canal_u canal_v ped_w ped_h lam_t lam_h sp_len sp_ang sp_th sp_h "
    "tp_len tp_back tp_up tp_r art_len art_r"
).split()

# Anchor levels (VerSe code -> values in the order of _FIELDS); other levels are interpolated linearly.
_ANCHORS: dict[int, tuple[float, ...]] = {
    2: (16, 18, 15, 5.0, 12.5, 8.0, 6, 8, 5, 12, 16, 20, 3.0, 5.0, 9, -30, 0, 3.5, 7, 5.0),
    3: (13, 17, 16, 5.0, 12.0, 7.5, 5, 7, 4, 11, 14, 25, 2.5, 4.0, 9, -35, 0, 3.5, 7, 4.5),
    7: (14, 21, 16, 5.5, 12.0, 7.5, 5.5, 7.5, 4.5, 12, 28, 25, 3.0, 5.0, 14, 0, 5, 4.0, 8, 4.5),
    8: (16, 25, 17, 4.5, 10.0, 7.5, 6, 9, 5, 15, 30, 35, 3.0, 4.5, 18, 25, 5, 5.0, 8, 4.0),
    13: (19, 29, 26, 4.5, 8.0, 8.0, 6, 11, 5, 18, 30, 48, 3.0, 4.5, 20, 35, 10, 5.0, 9, 4.0),
    19: (24, 39, 31, 7.0, 10.0, 8.5, 7, 14, 6, 22, 28, 20, 3.5, 6.5, 10, 15, 5, 4.0, 11, 4.5),
    20: (26, 42, 32, 9.0, 11.0, 8.5, 8, 15, 6.5, 24, 29, 10, 3.5, 7.5, 16, 5, 0, 4.5, 12, 5.0),
    22: (28, 47, 34, 10.5, 12.0, 8.0, 9, 15, 7, 25, 29, 5, 3.5, 8.0, 20, 5, 0, 5.0, 12, 5.0),
    24: (27, 51, 34, 11.0, 13.0, 8.0, 10, 14, 7, 22, 24, 0, 3.5, 7.0, 18, 10, 10, 7.0, 12, 5.5),
}


def _kind(code: int) -> str:
    if code == 1:
        return "atlas"
    if code == 2:
        return "axis"
    if code <= 7:
        return "cervical"
    if code <= 19 or code == T13_CODE:
        return "thoracic"
    return "lumbar"


def _interpolated(code: int) -> np.ndarray:
    if code == T13_CODE:  # between T12 and L1
        return 0.5 * (_interpolated(19) + _interpolated(20))
    if code == L6_CODE:  # a sixth lumbar vertebra looks like L5
        return _interpolated(24)
    key = max(code, 2)
    anchors = sorted(_ANCHORS)
    values = np.array([_ANCHORS[a] for a in anchors], dtype=float)
    return np.array([np.interp(key, anchors, values[:, f]) for f in range(values.shape[1])])


def vertebra_shape(code: int, *, scale: float = 1.0, rng: np.random.Generator | None = None) -> VertebraShape:
    """Dimensions of level ``code`` scaled by ``scale`` with optional per-level jitter (about +-4 %)."""
    vals = dict(zip(_FIELDS, _interpolated(code), strict=True))
    jitter = (lambda: 1.0 + 0.04 * float(rng.uniform(-1, 1))) if rng is not None else (lambda: 1.0)
    for name in _FIELDS:
        if name in ("sp_ang", "tp_back", "tp_up"):
            continue
        vals[name] *= scale
    for name in ("height", "width", "depth", "sp_len", "tp_len"):
        vals[name] *= jitter()
    if rng is not None:
        vals["disc_below"] *= float(rng.uniform(0.8, 1.2))
        vals["sp_ang"] += float(rng.uniform(-5, 5))
    if code == 1:  # the atlas: a ring with lateral masses instead of a body; no disc to the axis
        vals.update(height=10.0 * scale, width=14.0 * scale, depth=10.0 * scale, disc_below=1.0 * scale)
        vals.update(sp_len=8.0 * scale, sp_ang=0.0, tp_len=14.0 * scale, tp_back=0.0, tp_r=4.5 * scale)
    shape = VertebraShape(
        code=int(code),
        kind=_kind(code),
        height_ant=vals["height"],
        concavity=0.08 * vals["height"],
        **vals,
    )
    return shape


def with_wedge(shape: VertebraShape, ratio: float) -> VertebraShape:
    """The same vertebra with its anterior height reduced to ``ratio`` of the posterior (wedge fracture)."""
    return replace(shape, height_ant=shape.height * ratio, concavity=shape.concavity * 1.6)


@dataclass(frozen=True)
class SacrumShape:
    """Dimensions of the sacrum in the frame of the S1 endplate (origin at its centre, ``w`` along the spine)."""

    width: float  # S1 body width
    depth: float  # S1 body depth
    length: float  # sacrum length from the S1 endplate down
    ala_half_width: float  # half of the left-right extent of the alae
    curve: float  # anterior bend of the lower sacrum (mm at the tip)
    canal_u: float
    canal_v: float
    concavity: float


def sacrum_shape(*, scale: float = 1.0, rng: np.random.Generator | None = None) -> SacrumShape:
    jit = (lambda: float(rng.uniform(0.94, 1.06))) if rng is not None else (lambda: 1.0)
    return SacrumShape(
        width=50.0 * scale * jit(),
        depth=34.0 * scale * jit(),
        length=100.0 * scale * jit(),
        ala_half_width=52.0 * scale * jit(),
        curve=22.0 * scale * jit(),
        canal_u=13.0 * scale,
        canal_v=6.0 * scale,
        concavity=1.5 * scale,
    )


def spine_codes(*, extra_level: str | None = None) -> list[int]:
    """VerSe codes of the whole modelled spine from head to feet (sacrum last), with T13 or L6 when asked."""
    codes = list(range(1, 20))
    if extra_level == "T13":
        codes.append(T13_CODE)
    codes.extend(range(20, 25))
    if extra_level == "L6":
        codes.append(L6_CODE)
    codes.append(SACRUM_CODE)
    return codes
