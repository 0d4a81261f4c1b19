"""Latent L2: squared distance between two latents, or squared norm of one (regulariser)."""

from __future__ import annotations

from torch import Tensor

from .rotation import _reduce

__all__ = ["latent_l2_loss"]


def latent_l2_loss(z_a: Tensor, z_b: Tensor | None = None, reduction: str = "mean") -> Tensor:
    """Squared L2 distance ``||z_a - z_b||^2`` per sample, reduced over the batch.

    The squared differences are **summed** over all non-batch dims (a ``[B, D]`` embedding or a
    ``[B, C, d]`` SANE latent matrix) and then averaged (``"mean"``) or summed (``"sum"``) over
    the batch dim 0; ``"none"`` returns the ``[B]`` per-sample values. This is not
    ``F.mse_loss``, which also averages over the features: divide by ``z_a[0].numel()`` for that.

    With ``z_b=None`` the distance is taken to zero, i.e. the ``||Z||^2`` latent regulariser of
    SANE-on-Instant-NGP.

    Args:
        z_a: ``[B, ...]`` latents.
        z_b: ``[B, ...]`` latents of the same shape, or ``None``.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.

    Returns:
        Scalar, or ``[B]`` for ``reduction="none"``, in squared latent units.
    """
    if z_a.ndim < 1:
        raise ValueError("z_a must have a batch dim")
    if z_b is None:
        diff = z_a
    else:
        if z_b.shape != z_a.shape:
            raise ValueError(
                f"z_a and z_b must have the same shape, got {tuple(z_a.shape)} and {tuple(z_b.shape)}"
            )
        diff = z_a - z_b
    per_sample = diff.square().reshape(diff.shape[0], -1).sum(dim=1)
    return _reduce(per_sample, reduction)
