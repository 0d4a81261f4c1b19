"""Heads trained on top of an encoder embedding: the contrastive projection and the GMN's
relative-rotation head.

* :class:`ProjectionHead` — ``LN, Linear, SiLU, ..., Linear``: ``[B, D] -> [B, dims[-1]]``; the
  contrastive loss (SigLIP / NT-Xent) acts on its output, the embedding itself stays free for the
  rendering decoder (SimCLR's reason for a projection).
* :class:`PairRotationHead` — the relative rotation ``q_b q_a^-1`` of two NeRFs of one object
  from their embeddings ``z_a, z_b [B, D]``: an MLP over ``[LN(z_a), LN(z_b), LN(z_a) *
  LN(z_b)]`` -> 4 -> unit quaternion (wxyz). The product feature gives the MLP bilinear
  interactions between the two views directly (a relative rotation is a comparison, not a
  property of either view); the order of the views matters (swapping them inverts the
  rotation), so the concatenation is not symmetrised. SANE uses its own head over the [POS]
  latents of the two views (:class:`graphnerf.models.RotationHead`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["EmbeddingCentering", "PairRotationHead", "ProjectionHead"]


class EmbeddingCentering(nn.Module):
    """``z - mean``: subtracts the embeddings' mean before the heads (the centring half of a
    BatchNorm, without scaling or affine).

    Why: at initialisation the GMN's mean readouts give NeRFs of one architecture almost the
    same embedding (on the tiny zoo the rows differ by 0.3-0.5% of their norm and have cosine
    similarity 1.0000: means over thousands of edges of similarly distributed weights agree).
    A head that normalises ``z`` then sees identical rows, and the contrastive and rotation
    heads collapse onto the stationary point "all rows equal". Subtracting the common part
    leaves the differences, which the heads' LayerNorm brings to unit scale.

    In training mode the mean is that of the current batch (over *all* processes under DDP, so a
    DDP run equals a one-process run of the global batch; a running mean lags behind the drift
    of the common part while the encoder trains, and the drift, the same for every row, then
    dominates again). The batch mean is a constant for autograd. A running mean (``momentum``)
    is kept for eval mode. The embedding itself is not changed.
    """

    def __init__(self, dim: int, momentum: float = 0.9) -> None:
        super().__init__()
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"centering momentum must be in [0, 1), got {momentum}")
        self.momentum = float(momentum)
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("ready", torch.zeros((), dtype=torch.bool))

    def forward(self, z: Tensor) -> Tensor:
        if not self.training:
            return z - self.mean
        with torch.no_grad():
            # float64 sums: the mean is then the same float32 vector however the batch is split
            # over processes (the centred rows amplify any rounding difference of the mean by
            # |z| / |z - mean|, ~300x at initialisation)
            import torch.distributed as dist

            m = z.detach().double().sum(0)
            n = torch.tensor(float(z.shape[0]), dtype=torch.float64, device=z.device)
            if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
                dist.all_reduce(m)
                dist.all_reduce(n)
            m = (m / n).to(z.dtype)
            new = torch.where(self.ready, self.momentum * self.mean + (1 - self.momentum) * m, m)
            self.mean.copy_(new)
            self.ready.fill_(True)
        return z - m


class ProjectionHead(nn.Module):
    """``[B, in_dim] -> [B, dims[-1]]``: LayerNorm then Linear/SiLU layers (no activation last)."""

    def __init__(self, in_dim: int, dims: Sequence[int] = (256, 128)) -> None:
        super().__init__()
        dims = [int(d) for d in dims]
        if not dims or any(d < 1 for d in dims):
            raise ValueError(f"projection dims must be positive integers, got {dims}")
        layers: list[nn.Module] = [nn.LayerNorm(in_dim)]
        for i, (a, b) in enumerate(zip([in_dim, *dims[:-1]], dims, strict=True)):
            last = i == len(dims) - 1
            # no bias on the output: a shared offset would align every row (the collapse the
            # centring removes from the input)
            layers.append(nn.Linear(a, b, bias=not last))
            if not last:
                layers.append(nn.SiLU())
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)


class PairRotationHead(nn.Module):
    """``(z_a [B, D], z_b [B, D]) -> q [B, 4]`` unit quaternions (wxyz), ``q ~ q_b q_a^-1``.

    Args:
        in_dim: embedding size ``D``.
        hidden: MLP width.
        n_layers: hidden layers (>= 1).
    """

    def __init__(self, in_dim: int, hidden: int = 256, n_layers: int = 2) -> None:
        super().__init__()
        if n_layers < 1 or hidden < 1:
            raise ValueError(f"rotation head needs n_layers >= 1 and hidden >= 1, got {n_layers}")
        self.norm = nn.LayerNorm(in_dim)
        layers: list[nn.Module] = []
        d = 3 * in_dim
        for _ in range(n_layers):
            layers += [nn.Linear(d, hidden), nn.SiLU()]
            d = hidden
        self.mlp = nn.Sequential(*layers)
        self.out = nn.Linear(hidden, 4)
        with torch.no_grad():  # start near the identity rotation (most pairs share a pose)
            self.out.weight.mul_(0.1)
            self.out.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0]))

    def forward(self, z_a: Tensor, z_b: Tensor) -> Tensor:
        if z_a.shape != z_b.shape or z_a.dim() != 2:
            raise ValueError(
                f"rotation head takes two [B, D] embeddings, got {tuple(z_a.shape)} and "
                f"{tuple(z_b.shape)}"
            )
        a, b = self.norm(z_a), self.norm(z_b)
        return F.normalize(self.out(self.mlp(torch.cat([a, b, a * b], -1))), dim=-1)
