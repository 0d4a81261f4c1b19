"""Augmentations of the SANE training pipeline (SANE-on-Instant-NGP, section 4.4).

* :func:`permute_hidden_neurons` — a random, consistent permutation of every hidden layer of a
  field's MLP (rows of ``W_k`` and columns of ``W_{k+1}``): the field computes the same function,
  its tokens differ. Applied to the field before tokenising.
* :func:`multiplicative_noise` — ``tokens * (1 + std * N(0, 1))`` (study: std 0.1).
* :func:`jitter_rotation` — composes a rotation label with a small random rotation (study: Euler
  angles with std 0.1 degrees).
"""

from __future__ import annotations

import copy
import math

import torch
from torch import Tensor

from ..fields import RadianceField
from ..scenes.rotations import canonical_quat, quat_multiply
from .tokenizer import TokenSequence

__all__ = ["jitter_rotation", "multiplicative_noise", "permute_hidden_neurons"]


@torch.no_grad()
def permute_hidden_neurons(
    field: RadianceField, generator: torch.Generator | None = None
) -> RadianceField:
    """A copy of ``field`` whose hidden neurons are randomly permuted, layer by layer.

    For hidden layer ``k`` with permutation ``p``: ``W_k <- W_k[p]`` and ``W_{k+1} <-
    W_{k+1}[:, p]``. Activations are element-wise (ReLU, sine) and there are no biases, so the
    output is unchanged (up to float summation order). Inputs and outputs keep their order.
    """
    out = copy.deepcopy(field)
    ws = out.mlp.weights
    for k in range(len(ws) - 1):
        perm = torch.randperm(ws[k].shape[0], generator=generator).to(ws[k].device)
        ws[k].copy_(ws[k][perm])
        ws[k + 1].copy_(ws[k + 1][:, perm])
    return out


def multiplicative_noise(
    seq: TokenSequence, std: float = 0.1, generator: torch.Generator | None = None
) -> TokenSequence:
    """``tokens * (1 + std * eps)``, ``eps ~ N(0, 1)`` per value; zero padding stays zero."""
    eps = torch.randn(seq.tokens.shape, generator=generator).to(seq.tokens)
    return seq.replace(tokens=seq.tokens * (1.0 + std * eps))


def _euler_xyz_to_quat(angles: Tensor) -> Tensor:
    """Rotation ``R_z R_y R_x`` (x applied first) of angles ``[..., 3]`` in radians -> wxyz."""
    half = angles / 2
    c, s = torch.cos(half), torch.sin(half)
    zero = torch.zeros_like(c[..., 0])
    qx = torch.stack([c[..., 0], s[..., 0], zero, zero], -1)
    qy = torch.stack([c[..., 1], zero, s[..., 1], zero], -1)
    qz = torch.stack([c[..., 2], zero, zero, s[..., 2]], -1)
    return quat_multiply(qz, quat_multiply(qy, qx))


def jitter_rotation(
    q: Tensor, std_deg: float = 0.1, generator: torch.Generator | None = None
) -> Tensor:
    """Rotation labels ``q [..., 4]`` (wxyz) composed with a random rotation whose Euler angles
    (x, y, z, applied in that order) are ``N(0, std_deg)`` degrees. Returns unit, ``w >= 0``."""
    angles = torch.randn((*q.shape[:-1], 3), generator=generator).to(q) * math.radians(std_deg)
    return canonical_quat(quat_multiply(_euler_xyz_to_quat(angles), q))
