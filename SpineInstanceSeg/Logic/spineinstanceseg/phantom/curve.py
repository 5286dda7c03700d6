"""The spine's centre line and the rigid pose (centre + rotation) of every vertebra, disc and the sacrum.

World frame: LPS mm with the S1 endplate centre at the origin, +z superior. The centre line is parametrised by
arc length ``s`` (mm, 0 at the S1 endplate, growing upwards). Its tangent tilts in the sagittal plane by the angle
``alpha(s)`` (lordosis/kyphosis: piecewise-constant curvature per region, starting from the sacral slope) and in
the coronal plane by ``beta(s)`` (scoliosis: half a sine wave, Cobb angle up to ~30 degrees); each vertebra is
also rotated about the tangent by ``gamma`` (axial rotation, larger at the scoliotic apex). Vertebrae are rigid
bodies stacked along the curve: body heights plus disc heights give their ``s``; discs become wedge-shaped where
the curve bends.

A pose's rotation matrix has columns ``(e_u, e_v, e_w)`` = (left, posterior, superior) of the local frame, so
``world = centre + R @ (u, v, w)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from ..levels import SACRUM_CODE
from .anatomy import SacrumShape, VertebraShape

__all__ = [
    "Pose",
    "SpineLayout",
    "DiscPlacement",
    "build_layout",
    "CurveParams",
    "SteepLordosis",
    "sample_curve_params",
]


@dataclass(frozen=True)
class Pose:
    centre: NDArray  # (3,) LPS mm
    rotation: NDArray  # (3, 3) columns e_u, e_v, e_w

    def to_world(self, local: NDArray) -> NDArray:
        return np.asarray(local) @ self.rotation.T + self.centre


@dataclass(frozen=True)
class CurveParams:
    """Random shape of one spine's centre line (angles in degrees, lengths in mm)."""

    sacral_slope: float = 0.0
    lordosis: float = 0.0
    kyphosis: float = 0.0
    cervical_lordosis: float = 0.0  # final forward tilt at C1 (the lordosis itself follows from the kyphosis)
    cobb: float = 0.0
    scoliosis_centre: float = 0.0  # s of the apex (mm)
    scoliosis_half_wave: float = 250.0  # mm
    scoliosis_sign: float = 1.0
    rotation_gain: float = 0.0  # axial rotation at the apex per degree of Cobb angle
    jitter: tuple[float, ...] = field(default_factory=tuple)  # per-vertebra axial rotation jitter (deg)


@dataclass(frozen=True)
class SteepLordosis:
    """A share of lumbar and thoracolumbar spines drawn with a steeper lumbar lordosis than the default 35-60 degrees.

    The lumbar curve starts at the sacrum tilted forwards by half the lordosis, so by default the lowest lumbar
    vertebra leans 17-30 degrees; on the real CT sub-verse006 L5 leans about 49 degrees, and the stage-2 network
    trained on the default spines gives the arch of such an L5 to L4 (its arch sits at L4's height). With the option
    every curved lumbar or thoracolumbar spine draws one more random number, so it differs from its seed's default
    phantom even where it keeps the default lordosis.

    Attributes:
        share: Probability that a curved lumbar or thoracolumbar spine gets the steeper lordosis (0-1).
        lordosis_deg: Range of that lordosis, degrees (the lowest lumbar vertebra leans half of it).
    """

    share: float = 0.5
    lordosis_deg: tuple[float, float] = (60.0, 95.0)


def sample_curve_params(rng: np.random.Generator, n_vertebrae: int, *, curvature: bool = True) -> CurveParams:
    """Draw a plausible adult spine shape; ``curvature=False`` gives a straight spine along +z."""
    if not curvature:
        return CurveParams(jitter=(0.0,) * n_vertebrae)
    scoliotic = rng.uniform() < 0.5
    return CurveParams(
        sacral_slope=float(rng.uniform(28, 45)),
        lordosis=float(rng.uniform(35, 60)),
        kyphosis=float(rng.uniform(25, 50)),
        cervical_lordosis=float(rng.uniform(-20, 0)),  # tilt of the top of the spine
        cobb=float(rng.uniform(10, 30) if scoliotic else rng.uniform(0, 6)),
        scoliosis_centre=float(rng.uniform(60, 400)),
        scoliosis_half_wave=float(rng.uniform(180, 320)),
        scoliosis_sign=float(rng.choice([-1.0, 1.0])),
        rotation_gain=float(rng.uniform(0.3, 0.6)),
        jitter=tuple(float(x) for x in rng.uniform(-2.5, 2.5, n_vertebrae)),
    )


@dataclass(frozen=True)
class DiscPlacement:
    upper: int  # VerSe code of the vertebra above
    lower: int  # code below (26 for L5/S1)
    pose: Pose
    height: float  # nominal height (mm, negative when the endplates overlap)


@dataclass(frozen=True)
class SpineLayout:
    """Every vertebra's shape and pose, the discs between them and the sacrum (head to feet)."""

    shapes: dict[int, VertebraShape]
    poses: dict[int, Pose]  # vertebra codes and SACRUM_CODE
    discs: list[DiscPlacement]
    sacrum: SacrumShape
    order: list[int]  # codes from head to feet, sacrum last
    arc: dict[int, float]  # s (mm) of each body centre; 0 for the sacrum (its endplate)


def _frame(alpha: float, beta: float, gamma: float) -> NDArray:
    """Rotation whose e_w is the tangent for tilts alpha (anterior) / beta (left), rotated gamma about it."""
    tangent = np.array([np.sin(beta), -np.sin(alpha), np.cos(alpha) * np.cos(beta)])
    tangent /= np.linalg.norm(tangent)
    post = np.array([0.0, 1.0, 0.0]) - tangent[1] * tangent
    post /= np.linalg.norm(post)
    left = np.cross(post, tangent)
    c, s = np.cos(gamma), np.sin(gamma)
    e_u = c * left + s * post
    e_v = -s * left + c * post
    return np.stack([e_u, e_v, tangent], axis=1)


def _arc_lengths(
    shapes: dict[int, VertebraShape], vertebrae: list[int], disc_override: dict[int, float]
) -> tuple[dict[int, float], float]:
    """Arc length (mm) of each body centre, stacking upwards from the S1 endplate at s = 0; and of the top."""
    arc: dict[int, float] = {}
    s = 0.0
    for code in reversed(vertebrae):
        shp = shapes[code]
        disc = disc_override.get(code, shp.disc_below)
        mean_h = 0.5 * (shp.height + shp.height_ant)
        s += disc + mean_h / 2.0
        arc[code] = s
        s += mean_h / 2.0
    return arc, s


@dataclass(frozen=True)
class _CentreLine:
    """The spine's centre line sampled every ``step`` mm of arc length: points, sagittal tilt ``alpha`` and
    coronal tilt ``beta`` (radians), and the curve parameters that set the axial rotation."""

    step: float
    grid: NDArray
    points: NDArray
    alpha: NDArray
    beta: NDArray
    curve: CurveParams

    def pose_at(self, x: float, gamma_deg: float) -> Pose:
        """Position and frame at arc length ``x``, turned by ``gamma_deg`` about the column."""
        i = float(np.clip(x / self.step, 0, len(self.grid) - 1.001))
        i0, f = int(i), i - int(i)
        centre = self.points[i0] * (1 - f) + self.points[i0 + 1] * f
        a = self.alpha[i0] * (1 - f) + self.alpha[i0 + 1] * f
        b = self.beta[i0] * (1 - f) + self.beta[i0 + 1] * f
        return Pose(centre, _frame(a, b, np.radians(gamma_deg)))

    def gamma_at(self, x: float) -> float:
        """Axial rotation (degrees) at arc length ``x``: vertebrae at the scoliotic apex turn most (towards the
        convex side)."""
        curve = self.curve
        ph = (x - curve.scoliosis_centre) / curve.scoliosis_half_wave * np.pi
        return -curve.scoliosis_sign * curve.rotation_gain * curve.cobb * float(np.cos(ph))


def _centre_line(
    shapes: dict[int, VertebraShape], vertebrae: list[int], arc: dict[int, float], s_top: float, curve: CurveParams
) -> _CentreLine:
    """Integrate the curvature of the lumbar lordosis, thoracic kyphosis and cervical lordosis (and the
    scoliotic wave) along the arc length into the centre line."""
    # Region boundaries along s (lumbar: up to the top of the first lumbar-kind level, thoracic: up to T1).
    lumbar_top = max((arc[c] + shapes[c].height / 2 for c in vertebrae if shapes[c].kind == "lumbar"), default=0.0)
    thor_top = max((arc[c] + shapes[c].height / 2 for c in vertebrae if shapes[c].kind == "thoracic"), default=0.0)

    # The neck brings the head back over the trunk: the cervical lordosis undoes the tilt reached at T1 and
    # leaves the top of the spine within about -20..0 degrees of vertical (tilted back).
    alpha_t1 = 0.5 * curve.lordosis - curve.lordosis + curve.kyphosis
    cervical = alpha_t1 - curve.cervical_lordosis

    def kappa(x: NDArray) -> NDArray:
        k = np.where(x < lumbar_top, -curve.lordosis / max(lumbar_top, 1.0), 0.0)
        k = np.where((x >= lumbar_top) & (x < thor_top), curve.kyphosis / max(thor_top - lumbar_top, 1.0), k)
        return np.where(x >= thor_top, -cervical / max(s_top - thor_top, 1.0), k)

    step = 0.5
    grid = np.arange(0.0, s_top + 40.0 + step, step)
    # The lumbar curve is about balanced over the sacrum: it starts tilted forwards by half the lordosis; the
    # sacrum itself is tilted further (sacral slope), the L5/S1 disc taking up the difference as a wedge.
    alpha0 = 0.5 * curve.lordosis
    alpha = np.radians(alpha0 + np.concatenate([[0.0], np.cumsum(kappa(grid[:-1]) * step)]))
    phase = (grid - curve.scoliosis_centre) / curve.scoliosis_half_wave * np.pi
    half_cobb = np.radians(curve.cobb / 2.0) * curve.scoliosis_sign
    beta = half_cobb * np.sin(phase)
    tangent = np.stack([np.sin(beta), -np.sin(alpha), np.cos(alpha) * np.cos(beta)], axis=1)
    tangent /= np.linalg.norm(tangent, axis=1, keepdims=True)
    points = np.concatenate([[np.zeros(3)], np.cumsum(0.5 * (tangent[1:] + tangent[:-1]) * step, axis=0)])
    return _CentreLine(step, grid, points, alpha, beta, curve)


def _sacrum_pose(line: _CentreLine, curve: CurveParams) -> Pose:
    """The sacrum at s = 0, tilted about its left-right axis so that its endplate faces further forwards (the
    sacral slope beyond the lumbar curve's starting tilt)."""
    base = line.pose_at(0.0, line.gamma_at(0.0))
    extra = np.radians(max(curve.sacral_slope - 0.5 * curve.lordosis, 0.0))
    c, s_ = np.cos(extra), np.sin(extra)
    tilt = np.array([[1.0, 0.0, 0.0], [0.0, c, -s_], [0.0, s_, c]])
    return Pose(base.centre, base.rotation @ tilt)


def _disc_placements(
    shapes: dict[int, VertebraShape],
    vertebrae: list[int],
    arc: dict[int, float],
    gammas: dict[int, float],
    line: _CentreLine,
    disc_override: dict[int, float],
) -> list[DiscPlacement]:
    """One disc between each vertebra and the next one below (the sacrum below the last; none below C1),
    midway between the lower endplate above and the upper endplate below, turned like its two vertebrae."""
    discs = []
    below = [*vertebrae[1:], SACRUM_CODE]
    for upper, lower in zip(vertebrae, below, strict=True):
        if shapes[upper].kind == "atlas":
            continue  # no disc between C1 and C2
        up_h = 0.5 * (shapes[upper].height + shapes[upper].height_ant)
        s_bottom = arc[upper] - up_h / 2.0
        if lower == SACRUM_CODE:
            s_top_lower = 0.0
        else:
            s_top_lower = arc[lower] + 0.25 * (shapes[lower].height + shapes[lower].height_ant)
        height = disc_override.get(upper, shapes[upper].disc_below)
        x = 0.5 * (s_bottom + s_top_lower)
        discs.append(DiscPlacement(upper, lower, line.pose_at(x, 0.5 * (gammas[upper] + gammas[lower])), height))
    return discs


def build_layout(
    shapes: dict[int, VertebraShape],
    order: list[int],
    sacrum: SacrumShape,
    curve: CurveParams,
    *,
    disc_override: dict[int, float] | None = None,
) -> SpineLayout:
    """Stack the vertebrae ``order`` (head to feet, sacrum last) on the curve described by ``curve``.

    ``disc_override`` maps the code of the vertebra above a disc to a forced disc height (hard cases).
    """
    disc_override = disc_override or {}
    vertebrae = [c for c in order if c != SACRUM_CODE]
    arc, s_top = _arc_lengths(shapes, vertebrae, disc_override)
    line = _centre_line(shapes, vertebrae, arc, s_top, curve)
    poses: dict[int, Pose] = {}
    gammas: dict[int, float] = {}
    for idx, code in enumerate(vertebrae):
        jitter = curve.jitter[idx] if idx < len(curve.jitter) else 0.0
        gammas[code] = line.gamma_at(arc[code]) + jitter
        poses[code] = line.pose_at(arc[code], gammas[code])
    poses[SACRUM_CODE] = _sacrum_pose(line, curve)
    arc[SACRUM_CODE] = 0.0
    gammas[SACRUM_CODE] = line.gamma_at(0.0)
    discs = _disc_placements(shapes, vertebrae, arc, gammas, line, disc_override)
    return SpineLayout(dict(shapes), poses, discs, sacrum, list(order), arc)
