"""Unit quaternions in ``(w, x, y, z)`` order and the rotation matrices they stand for.

Conventions:

- A quaternion ``q = (w, x, y, z)`` with ``|q| = 1`` acts on column vectors by
  ``quat_to_matrix(q) @ v``; ``q`` and ``-q`` are the same rotation.
- Canonical sign: functions that *produce* quaternions (:func:`matrix_to_quat`,
  :func:`random_rotation`) return ``w >= 0``.
- ``quat_multiply(a, b)`` is the Hamilton product: ``R(a b) = R(a) R(b)`` (apply ``b`` first).
- Every function is batched over leading dimensions and keeps the input dtype and device.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "axis_angle",
    "canonical_quat",
    "describe_rotation",
    "identity_quat",
    "matrix_to_quat",
    "quat_conjugate",
    "quat_multiply",
    "quat_to_matrix",
    "random_rotation",
]


def _as_quat(q: Tensor | np.ndarray | list[float] | tuple[float, ...], name: str = "q") -> Tensor:
    q = torch.as_tensor(q)
    if not torch.is_floating_point(q):
        q = q.to(torch.get_default_dtype())
    if q.shape[-1:] != (4,):
        raise ValueError(f"{name} must have shape [..., 4] (w, x, y, z), got {tuple(q.shape)}")
    return q


def identity_quat(dtype: torch.dtype = torch.float32) -> Tensor:
    """The identity rotation ``(1, 0, 0, 0)``."""
    return torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=dtype)


def canonical_quat(q: Tensor) -> Tensor:
    """Normalise ``q`` to unit length and flip its sign so that ``w >= 0``."""
    q = _as_quat(q)
    q = q / q.norm(dim=-1, keepdim=True)
    return torch.where(q[..., :1] < 0, -q, q)


def axis_angle(q: Tensor | list[float] | tuple[float, ...]) -> tuple[float, tuple[float, ...]]:
    """``(angle in degrees [0, 180], unit axis (x, y, z))`` of one rotation ``q [4]``; the axis of
    the identity is reported as ``(0, 0, 1)``. ``q`` and ``-q`` give the same answer."""
    c = canonical_quat(torch.as_tensor(q, dtype=torch.float64))
    if c.shape != (4,):
        raise ValueError(f"axis_angle: one quaternion [4] expected, got {tuple(c.shape)}")
    s = float(c[1:].norm())
    angle = math.degrees(2.0 * math.atan2(s, float(c[0])))
    axis = tuple(float(v) / s for v in c[1:]) if s > 1e-12 else (0.0, 0.0, 1.0)
    return angle, axis


def describe_rotation(q: Tensor | list[float] | tuple[float, ...]) -> str:
    """A short label of a rotation for plots and logs: ``"identity"`` (under 0.05 degrees) or e.g.
    ``"127° about (0.31,-0.52,0.80)"`` (angle in degrees, unit axis)."""
    angle, axis = axis_angle(q)
    if angle < 0.05:
        return "identity"
    return f"{angle:.0f}° about ({','.join(f'{round(v, 2) + 0.0:.2f}' for v in axis)})"


def quat_conjugate(q: Tensor) -> Tensor:
    """``(w, -x, -y, -z)``: the inverse rotation of a unit quaternion."""
    q = _as_quat(q)
    return q * q.new_tensor([1.0, -1.0, -1.0, -1.0])


def quat_multiply(a: Tensor, b: Tensor) -> Tensor:
    """Hamilton product ``a b`` (rotation ``b`` followed by ``a``); broadcasts leading dims."""
    a = _as_quat(a, "a")
    b = _as_quat(b, "b")
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack(
        (
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ),
        dim=-1,
    )


def quat_to_matrix(q: Tensor) -> Tensor:
    """Rotation matrices ``[..., 3, 3]`` of quaternions ``[..., 4]`` (normalised first).

    The formula is quadratic in ``q``, so ``q`` and ``-q`` give the same matrix.
    """
    q = _as_quat(q)
    q = q / q.norm(dim=-1, keepdim=True)
    w, x, y, z = q.unbind(-1)
    xx, yy, zz = x * x, y * y, z * z
    xy, xz, yz = x * y, x * z, y * z
    wx, wy, wz = w * x, w * y, w * z
    rows = (
        (1 - 2 * (yy + zz), 2 * (xy - wz), 2 * (xz + wy)),
        (2 * (xy + wz), 1 - 2 * (xx + zz), 2 * (yz - wx)),
        (2 * (xz - wy), 2 * (yz + wx), 1 - 2 * (xx + yy)),
    )
    return torch.stack([torch.stack(r, dim=-1) for r in rows], dim=-2)


def matrix_to_quat(R: Tensor) -> Tensor:
    """Unit quaternions ``[..., 4]`` (``w >= 0``) of rotation matrices ``[..., 3, 3]``.

    Numerically stable everywhere: each of the four classical formulas divides by one of
    ``4w, 4x, 4y, 4z``; per matrix the one with the largest denominator is used.
    """
    R = torch.as_tensor(R)
    if not torch.is_floating_point(R):
        R = R.to(torch.get_default_dtype())
    if R.shape[-2:] != (3, 3):
        raise ValueError(f"R must have shape [..., 3, 3], got {tuple(R.shape)}")
    m00, m01, m02 = R[..., 0, 0], R[..., 0, 1], R[..., 0, 2]
    m10, m11, m12 = R[..., 1, 0], R[..., 1, 1], R[..., 1, 2]
    m20, m21, m22 = R[..., 2, 0], R[..., 2, 1], R[..., 2, 2]
    # 4 * (w^2, x^2, y^2, z^2), from the diagonal
    sq = torch.stack(
        (
            1 + m00 + m11 + m22,
            1 + m00 - m11 - m22,
            1 - m00 + m11 - m22,
            1 - m00 - m11 + m22,
        ),
        dim=-1,
    )
    # candidate k holds 4 * q_k * q (every component), from the off-diagonal sums/differences
    cand = torch.stack(
        (
            torch.stack((sq[..., 0], m21 - m12, m02 - m20, m10 - m01), dim=-1),
            torch.stack((m21 - m12, sq[..., 1], m01 + m10, m02 + m20), dim=-1),
            torch.stack((m02 - m20, m01 + m10, sq[..., 2], m12 + m21), dim=-1),
            torch.stack((m10 - m01, m02 + m20, m12 + m21, sq[..., 3]), dim=-1),
        ),
        dim=-2,
    )
    best = sq.argmax(dim=-1)
    q = torch.gather(cand, -2, best[..., None, None].expand(*best.shape, 1, 4)).squeeze(-2)
    return canonical_quat(q)


def random_rotation(
    seed: int | np.random.Generator | None = None,
    upright: bool = False,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """A random rotation as a unit quaternion ``[4]`` with ``w >= 0``.

    ``upright=False``: uniform (Haar) on SO(3), by normalising a 4D standard Gaussian.
    ``upright=True``: a rotation about the z axis (x = y = 0) by an angle uniform in [0, 2 pi).
    Deterministic for an integer ``seed`` (numpy ``default_rng``); a ``Generator`` is used as is.
    """
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    if upright:
        angle = rng.uniform(0.0, 2.0 * math.pi)
        q = np.array([math.cos(angle / 2), 0.0, 0.0, math.sin(angle / 2)])
    else:
        q = rng.standard_normal(4)
        while np.linalg.norm(q) < 1e-8:  # measure zero; keeps the division safe
            q = rng.standard_normal(4)
    q = q / np.linalg.norm(q)
    if q[0] < 0:
        q = -q
    return torch.as_tensor(q, dtype=dtype)
