"""Image metrics: mean squared error and PSNR."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["mse", "psnr", "psnr_per_image"]


def _check_pair(a: Tensor, b: Tensor, name_a: str, name_b: str) -> None:
    if a.shape != b.shape:
        raise ValueError(
            f"{name_a} and {name_b} must have the same shape, "
            f"got {list(a.shape)} and {list(b.shape)}"
        )
    if a.numel() == 0:
        raise ValueError(f"{name_a} and {name_b} must not be empty")


def _check_max_val(max_val: float) -> None:
    if not max_val > 0:
        raise ValueError(f"max_val must be positive (the peak signal value), got {max_val!r}")


def mse(a: Tensor, b: Tensor) -> Tensor:
    """Mean squared error over all elements of two same-shape tensors; a 0-dim tensor."""
    _check_pair(a, b, "a", "b")
    return torch.mean((a - b) ** 2)


def psnr(pred: Tensor, target: Tensor, max_val: float = 1.0) -> Tensor:
    """Peak signal-to-noise ratio ``10 log10(max_val^2 / mse)`` in dB over all elements.

    Args:
        pred, target: same-shape tensors, e.g. images ``[..., 3]`` with values in [0, max_val].
        max_val: peak signal value (1 for images in [0, 1]).

    Returns:
        0-dim tensor; ``+inf`` for identical inputs.
    """
    _check_pair(pred, target, "pred", "target")
    _check_max_val(max_val)
    return 10.0 * torch.log10(max_val**2 / mse(pred, target))


def psnr_per_image(pred: Tensor, target: Tensor, max_val: float = 1.0) -> Tensor:
    """PSNR of each item of a batch: inputs ``[B, ...]`` (e.g. ``[B, H, W, 3]``) -> ``[B]`` dB."""
    _check_pair(pred, target, "pred", "target")
    _check_max_val(max_val)
    if pred.ndim < 2:
        raise ValueError(
            f"pred must have a leading batch dimension [B, ...], got shape {list(pred.shape)}"
        )
    err = ((pred - target) ** 2).reshape(pred.shape[0], -1).mean(dim=1)
    return 10.0 * torch.log10(max_val**2 / err)
