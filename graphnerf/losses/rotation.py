"""Rotation losses and metrics on unit quaternions, stored ``wxyz`` (scalar first, as the manifest).

The rotation angle between ``q1`` and ``q2`` is ``2 acos |<q1, q2>|`` (``q`` and ``-q`` are the
same rotation). ``acos`` has an infinite derivative at 1, i.e. exactly where training converges,
so the angle is computed as ``2 atan2(|imag(q1* q2)|, |real(q1* q2)|)`` instead: the same value
for unit quaternions, accurate for small angles, and with a finite gradient everywhere except
where the angle is undefined.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = [
    "quaternion_angle",
    "quaternion_angle_deg",
    "quaternion_geodesic_loss",
]

#: Quaternions with a norm below this are treated as undefined (angle ``pi``, see below).
NORM_EPS = 1e-8


def _safe_norm(x: Tensor) -> Tensor:
    """Euclidean norm over the last dim with a zero (not NaN) gradient at ``x = 0``."""
    sq = (x * x).sum(dim=-1)
    nonzero = sq > 0
    return torch.where(nonzero, torch.where(nonzero, sq, torch.ones_like(sq)).sqrt(), 0.0)


def _check_quaternions(q1: Tensor, q2: Tensor) -> None:
    if q1.shape[-1] != 4 or q2.shape[-1] != 4:
        raise ValueError(
            f"quaternions must have a last dim of 4 (wxyz), got {tuple(q1.shape)} and {tuple(q2.shape)}"
        )


def quaternion_angle(q1: Tensor, q2: Tensor, eps: float = NORM_EPS) -> Tensor:
    """Angle in radians, in ``[0, pi]``, of the rotation taking ``q1`` to ``q2``.

    Args:
        q1, q2: ``[..., 4]`` quaternions ``wxyz`` (broadcastable); any non-zero scale is accepted,
            the angle is invariant to the scale and to the sign of either quaternion.
        eps: a quaternion with norm ``< eps`` has no rotation; its angle is defined as ``pi`` (the
            largest possible error) with zero gradient, rather than NaN.

    Returns:
        ``[...]`` angles in radians (``2 acos |<q1, q2>|`` for unit quaternions).
    """
    _check_quaternions(q1, q2)
    q1, q2 = torch.broadcast_tensors(q1, q2)
    n1 = _safe_norm(q1)[..., None]
    n2 = _safe_norm(q2)[..., None]
    degenerate = ((n1 < eps) | (n2 < eps)).squeeze(-1)
    # Degenerate rows compute the angle of a harmless stand-in so no NaN reaches the gradient.
    identity = torch.zeros_like(q1)
    identity[..., 0] = 1.0
    bad = degenerate[..., None]
    u1 = torch.where(bad, identity, q1 / n1.clamp_min(eps))
    u2 = torch.where(bad, identity, q2 / n2.clamp_min(eps))
    w1, v1 = u1[..., :1], u1[..., 1:]
    w2, v2 = u2[..., :1], u2[..., 1:]
    # q1* q2 with q1* = (w1, -v1): real = w1 w2 + v1.v2, imag = w1 v2 - w2 v1 - v1 x v2.
    real = (u1 * u2).sum(dim=-1)
    imag = w1 * v2 - w2 * v1 - torch.linalg.cross(v1, v2, dim=-1)
    angle = 2.0 * torch.atan2(_safe_norm(imag), real.abs())
    return torch.where(degenerate, torch.full_like(angle, math.pi), angle)


def quaternion_angle_deg(q1: Tensor, q2: Tensor, eps: float = NORM_EPS) -> Tensor:
    """:func:`quaternion_angle` in degrees, ``[...]`` in ``[0, 180]``."""
    return torch.rad2deg(quaternion_angle(q1, q2, eps=eps))


def quaternion_geodesic_loss(
    q_pred: Tensor, q_true: Tensor, reduction: str = "mean", eps: float = NORM_EPS
) -> Tensor:
    """Squared geodesic rotation error ``(2 acos |<q_true, q_pred / |q_pred|>|)^2`` in radians^2.

    ``q_pred`` is normalised inside (a rotation head outputs unnormalised 4-vectors; the loss is
    invariant to their scale and sign). ``q_true`` should be a unit quaternion; it is normalised as
    well, so a small drift from unit norm is harmless. Computed stably via :func:`quaternion_angle`;
    the gradient is finite (zero) at ``q_pred = +-q_true``. A prediction with norm ``< eps`` is
    scored as the largest error, ``pi^2``, with zero gradient (see :func:`quaternion_angle`).

    Args:
        q_pred: ``[B, 4]`` (or ``[..., 4]``) predicted quaternions ``wxyz``, any non-zero scale.
        q_true: ``[B, 4]`` target unit quaternions ``wxyz``.
        reduction: ``"mean"`` (scalar), ``"sum"`` (scalar) or ``"none"`` (``[B]``).
        eps: norm below which a quaternion counts as undefined.

    Returns:
        Loss in radians^2: 0 for the exact rotation, ``(pi/2)^2`` for 90 degrees off, ``pi^2`` for
        180 degrees.
    """
    loss = quaternion_angle(q_true, q_pred, eps=eps).square()
    return _reduce(loss, reduction)


def _reduce(x: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return x.mean()
    if reduction == "sum":
        return x.sum()
    if reduction == "none":
        return x
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
