"""Input encodings, bit-for-bit in tiny-cuda-nn's layout, in pure (vectorised) PyTorch.

* :func:`frequency_encoding` — tcnn ``Frequency``: per input dim, per frequency k, the pair
  ``sin(2^k pi x), cos(2^k pi x)`` (cos computed as ``sin(. + pi/2)``, as tcnn does).
* :func:`hash_grid_encoding` — tcnn ``HashGrid`` with linear interpolation: per level
  ``pos = scale * x + 0.5``, the 8 corners of the enclosing cell, dense indexing
  ``x + y res + z res^2`` while ``res^3 <= table size`` else the coherent-prime hash
  (XOR of ``pos_i * prime_i`` in uint32), modulo the level's table size; trilinear weights;
  output level-major with features innermost.
* :func:`triplane_features` — gmnerf's tri-plane lookup: planes (x, y), (x, z), (y, z), bilinear
  with ``align_corners=True`` on coordinates in [-1, 1], zero outside, summed over the 3 planes.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

HASH_PRIMES = (1, 2654435761, 805459861)  # tcnn coherent_prime_hash (first three)
_U32 = 0xFFFFFFFF

# corner c (0..7) takes pos_grid + bit d of c on axis d, as tcnn's loop over 2^D corners
CORNER_OFFSETS = torch.tensor([[(c >> d) & 1 for d in range(3)] for c in range(8)], dtype=torch.long)


def frequency_encoding(x01: Tensor, n_frequencies: int) -> Tensor:
    """tcnn Frequency encoding of positions in [0, 1].

    Args:
        x01: [N, D] positions (tcnn applies it to the AABB-normalised position).
        n_frequencies: F.
    Returns:
        [N, D * F * 2], index ``d * 2F + 2k + s`` holds ``sin(2^k pi x_d + s pi / 2)``.
    """
    n, d = x01.shape
    # scalbnf(x, k) * PI in float32 == x * (2^k * PI_f32) exactly (power-of-two scaling)
    freqs = torch.pi * torch.exp2(torch.arange(n_frequencies, dtype=x01.dtype, device=x01.device))
    phase = torch.tensor([0.0, math.pi / 2], dtype=x01.dtype, device=x01.device)
    arg = (x01[:, :, None] * freqs)[..., None] + phase  # [N, D, F, 2]
    return torch.sin(arg).reshape(n, d * n_frequencies * 2)


def _mul_u32(a: Tensor, prime: int) -> Tensor:
    """``(a * prime) mod 2^32`` for int64 ``a`` in [0, 2^32) without int64 overflow."""
    if prime == 1:
        return a
    lo, hi = prime & 0xFFFF, prime >> 16
    return (a * lo + ((a * hi) & 0xFFFF) * 65536) & _U32


def hash_grid_indices(
    pos_grid: Tensor, resolutions: Tensor, table_sizes: Tensor, dense: Tensor
) -> Tensor:
    """Index of each corner inside its level's table, exactly as tcnn's ``grid_index``.

    Args:
        pos_grid: [..., L, 3] int64 integer corner coordinates (may be negative: wraps as uint32).
        resolutions, table_sizes: [L] int64; dense: [L] bool.
    Returns:
        [..., L] int64 in [0, table_size of the level).
    """
    p = pos_grid & _U32
    res = resolutions.view(*([1] * (p.dim() - 2)), -1)
    size = table_sizes.view_as(res)
    dense_idx = (p[..., 0] + p[..., 1] * res + p[..., 2] * (res * res)) & _U32
    hashed = (
        _mul_u32(p[..., 0], HASH_PRIMES[0])
        ^ _mul_u32(p[..., 1], HASH_PRIMES[1])
        ^ _mul_u32(p[..., 2], HASH_PRIMES[2])
    )
    return torch.where(dense.view_as(res), dense_idx, hashed) % size


def hash_grid_encoding(
    x01: Tensor,
    table: Tensor,
    scales: Tensor,
    resolutions: Tensor,
    table_sizes: Tensor,
    offsets: Tensor,
    dense: Tensor,
) -> Tensor:
    """tcnn HashGrid (linear interpolation) in pure PyTorch, differentiable w.r.t. ``table``.

    Args:
        x01: [N, 3] positions normalised to [0, 1] (values outside are processed as tcnn does).
        table: [E, F] all levels' entries, level-major (tcnn flat layout is ``table.reshape(-1)``).
        scales: [L] float32 tcnn grid scales; resolutions, table_sizes, offsets: [L] int64
            (offset of each level's first entry in ``table``); dense: [L] bool.
    Returns:
        [N, L * F] features, level-major, features innermost.
    """
    n = x01.shape[0]
    n_levels, n_feat = scales.shape[0], table.shape[1]
    # tcnn: pos = fmaf(scale, x, 0.5) in float32. x * scale is exact in float64, so rounding the
    # float64 sum once to float32 reproduces the fused multiply-add.
    pos = (x01.double()[:, None, :] * scales.double()[None, :, None] + 0.5).float()  # [N, L, 3]
    floor = torch.floor(pos)
    frac = pos - floor  # [N, L, 3]
    corners = floor.long()[:, :, None, :] + CORNER_OFFSETS.to(x01.device)  # [N, L, 8, 3]
    idx = hash_grid_indices(corners.transpose(1, 2), resolutions, table_sizes, dense)  # [N, 8, L]
    idx = idx + offsets  # global entry index
    bits = CORNER_OFFSETS.to(x01.device).bool()  # [8, 3]
    fr = frac[:, :, None, :]  # [N, L, 1, 3]
    w = torch.where(bits, fr, 1.0 - fr).prod(-1)  # [N, L, 8]
    feats = F.embedding(idx.transpose(1, 2).reshape(n * n_levels, 8), table)  # [N*L, 8, F]
    out = torch.bmm(w.reshape(n * n_levels, 1, 8).to(table.dtype), feats)  # [N*L, 1, F]
    return out.reshape(n, n_levels * n_feat)


TRIPLANE_AXES = ((0, 1), (0, 2), (1, 2))  # plane k samples (u, v) = these world axes


def triplane_features(xm11: Tensor, planes: Tensor) -> Tensor:
    """Sum of bilinear lookups in the three planes.

    Args:
        xm11: [N, 3] positions normalised to [-1, 1] over the AABB.
        planes: [3, R, R, C]; plane k, row v, column u, where (u, v) are the world axes
            ``TRIPLANE_AXES[k]`` (u indexes the last spatial dim, as ``grid_sample`` does).
    Returns:
        [N, C].
    """
    n = xm11.shape[0]
    uv = torch.stack([xm11[:, list(a)] for a in TRIPLANE_AXES])  # [3, N, 2]
    sampled = F.grid_sample(
        planes.permute(0, 3, 1, 2),  # [3, C, R, R]
        uv[:, None, :, :].to(planes.dtype),  # [3, 1, N, 2]
        mode="bilinear",
        padding_mode="zeros",
        align_corners=True,
    )  # [3, C, 1, N]
    return sampled.sum(0).reshape(-1, n).t()
