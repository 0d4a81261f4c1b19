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
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

HASH_PRIMES = (1, 2654435761, 805459861)  # tcnn coherent_prime_hash (first three)
_U32 = 0xFFFFFFFF

# corner c (0..7) takes pos_grid + bit d of c on axis d, as tcnn's loop over 2^D corners
CORNER_OFFSETS = torch.tensor([[(c >> d) & 1 for d in range(3)] for c in range(8)])


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


def hash_grid_indices(
    pos_grid: Tensor, resolutions: Tensor, table_sizes: Tensor, dense: Tensor
) -> Tensor:
    """Index of each corner inside its level's table, exactly as tcnn's ``grid_index``.

    Dense levels: ``(x + y res + z res^2) mod 2^32 mod size``. Hashed levels: ``(x ^ y p1 ^ z p2)
    mod 2^32 mod size``; a hashed level's size is always ``2^log2_table_size`` (a power of two), so
    the modulo is a mask, and int64 arithmetic keeps the low 32 bits of every product exact (two's
    complement wrap-around is the arithmetic mod 2^64, which preserves everything mod 2^32).

    Args:
        pos_grid: [..., L, 3] int64 integer corner coordinates (negative ones wrap as uint32).
        resolutions, table_sizes: [L] int64; dense: [L] bool (a prefix: levels grow in resolution).
    Returns:
        [..., L] int64 in [0, table_size of the level).
    """
    n_dense = int(dense.sum())
    out = []
    if n_dense:
        p = pos_grid[..., :n_dense, :]
        res = resolutions[:n_dense]
        lin = p[..., 0] + p[..., 1] * res + p[..., 2] * (res * res)
        out.append((lin & _U32) % table_sizes[:n_dense])
    if n_dense < dense.numel():
        p = pos_grid[..., n_dense:, :]
        h = p[..., 0] ^ (p[..., 1] * HASH_PRIMES[1]) ^ (p[..., 2] * HASH_PRIMES[2])
        out.append(h & (table_sizes[n_dense:] - 1))
    return out[0] if len(out) == 1 else torch.cat(out, -1)


class _GatherInterp(torch.autograd.Function):
    """``out[m] = sum_c w[m, c] * table[idx[m, c]]`` with an index_add backward.

    torch's generic embedding backward is ~3x slower on the CPU than one ``index_add_``.
    """

    @staticmethod
    def forward(ctx: Any, table: Tensor, idx: Tensor, w: Tensor) -> Tensor:
        feats = table[idx]  # [M, C, F]
        ctx.save_for_backward(idx, w, feats if ctx.needs_input_grad[2] else None)
        ctx.n_entries = table.shape[0]
        return torch.bmm(w[:, None, :], feats)[:, 0]

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Tensor | None, None, Tensor | None]:
        idx, w, feats = ctx.saved_tensors
        g_table = g_w = None
        if ctx.needs_input_grad[0]:
            contrib = (w[..., None] * g[:, None, :]).reshape(-1, g.shape[1])
            g_table = g.new_zeros(ctx.n_entries, g.shape[1]).index_add_(0, idx.reshape(-1), contrib)
        if ctx.needs_input_grad[2]:
            g_w = torch.bmm(feats, g[:, :, None])[..., 0]
        return g_table, None, g_w


def hash_grid_encoding(
    x01: Tensor,
    table: Tensor,
    scales: Tensor,
    resolutions: Tensor,
    table_sizes: Tensor,
    offsets: Tensor,
    dense: Tensor,
) -> Tensor:
    """tcnn HashGrid (linear interpolation) in pure PyTorch, differentiable w.r.t. ``table``
    (and ``x01``).

    Args:
        x01: [N, 3] positions normalised to [0, 1] (values outside are processed as tcnn does).
        table: [E, F] all levels' entries, level-major (tcnn flat layout is ``table.reshape(-1)``).
        scales: [L] float32 tcnn grid scales; resolutions, table_sizes: [L] int64; offsets:
            row of each level's first entry in ``table``, [L] int64 or anything broadcastable to
            [N, 8, L] (batched fitting passes per-point offsets into concatenated tables);
            dense: [L] bool.
    Returns:
        [N, L * F] features, level-major, features innermost.
    """
    n = x01.shape[0]
    n_levels, n_feat = scales.shape[0], table.shape[1]
    # tcnn: pos = fmaf(scale, x, 0.5) in float32. x * scale is exact in float64, so rounding the
    # float64 sum once to float32 reproduces the fused multiply-add.
    pos = x01.double()[:, None, :] * scales.double()[None, :, None] + 0.5
    pos = pos.float() if x01.dtype != torch.float64 else pos  # [N, L, 3]
    floor = torch.floor(pos.detach())
    frac = pos - floor  # [N, L, 3]
    offs = CORNER_OFFSETS.to(x01.device)
    corners = floor.long()[:, :, None, :] + offs  # [N, L, 8, 3]
    idx = hash_grid_indices(corners.transpose(1, 2), resolutions, table_sizes, dense)  # [N, 8, L]
    idx = (idx + offsets).permute(0, 2, 1).reshape(n * n_levels, 8)
    fr = frac[:, :, None, :]  # [N, L, 1, 3]
    w = torch.where(offs.bool(), fr, 1.0 - fr).prod(-1).to(table.dtype)  # [N, L, 8]
    out = _GatherInterp.apply(table, idx, w.reshape(n * n_levels, 8))  # [N*L, F]
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
