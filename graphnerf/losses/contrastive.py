"""Contrastive losses on batches of embeddings: SigLIP (GMN on NeRFs) and NT-Xent (SANE).

Both accept integer object labels instead of assuming "row i of u pairs with row i of v", so a
batch may hold any number of views (architectures, rotations) of the same object: every pair of
embeddings with equal labels is a positive, every other pair a negative.
"""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["NTXentLoss", "SigLIPLoss", "ntxent_loss", "siglip_loss"]


def _check_embeddings(name: str, x: Tensor, labels: Tensor) -> None:
    if x.ndim != 2:
        raise ValueError(f"{name} must be [N, D] embeddings, got shape {tuple(x.shape)}")
    if x.shape[0] < 1:
        raise ValueError(f"{name} is an empty batch")
    if labels.shape != (x.shape[0],):
        raise ValueError(
            f"labels for {name} must have shape ({x.shape[0]},), got {tuple(labels.shape)}"
        )
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise TypeError(f"labels for {name} must be an integer tensor, got {labels.dtype}")


def siglip_loss(
    u: Tensor,
    v: Tensor,
    labels_u: Tensor,
    labels_v: Tensor,
    t: Tensor | float,
    b: Tensor | float,
    normalize: bool = True,
) -> Tensor:
    """Sigmoid contrastive loss of SigLIP (Zhai et al. 2023), as used for GMNs on NeRFs.

    ``logits[j, k] = exp(t) * <u_j, v_k> + b`` (``u``, ``v`` L2-normalised first when
    ``normalize``), ``l[j, k] = +1`` if ``labels_u[j] == labels_v[k]`` (same object) else ``-1``,
    and

        loss = -(1 / B) * sum_{j, k} log sigmoid(l[j, k] * logits[j, k])

    where ``B = u.shape[0]`` is the number of rows of ``u``: the sum runs over all ``B * B'`` pairs
    but is divided by ``B`` only, as in SigLIP and the GMN-on-NeRF paper (not by ``B * B'``). With
    ``B == B'`` the loss is symmetric in swapping ``(u, labels_u)`` and ``(v, labels_v)``; with a
    short batch (``B != B'``) the value depends on which side is ``u``.

    Args:
        u: ``[B, D]`` embeddings (e.g. of one architecture), ``B >= 1``.
        v: ``[B', D]`` embeddings (e.g. of another architecture), ``B' >= 1``.
        labels_u: ``[B]`` integer object ids of the rows of ``u``.
        labels_v: ``[B']`` integer object ids of the rows of ``v``; several rows of ``v`` (and of
            ``u``) may share an id, giving several positives per object.
        t: log-temperature (scalar, the scale is ``exp(t)``; SigLIP initialises ``log 10``).
        b: bias (scalar; SigLIP initialises ``-10``).
        normalize: L2-normalise ``u`` and ``v`` along ``D`` (cosine similarities).

    Returns:
        Scalar loss tensor (nats per row of ``u``).
    """
    _check_embeddings("u", u, labels_u)
    _check_embeddings("v", v, labels_v)
    if u.shape[1] != v.shape[1]:
        raise ValueError(
            f"u and v must share the embedding size, got {u.shape[1]} and {v.shape[1]}"
        )
    t = torch.as_tensor(t, dtype=u.dtype, device=u.device)
    b = torch.as_tensor(b, dtype=u.dtype, device=u.device)
    if t.numel() != 1 or b.numel() != 1:
        raise ValueError("t and b must be scalars")
    if normalize:
        u = F.normalize(u, dim=-1)
        v = F.normalize(v, dim=-1)
    logits = t.exp() * (u @ v.T) + b
    same = labels_u[:, None] == labels_v[None, :]
    signs = same.to(logits.dtype) * 2.0 - 1.0
    return -F.logsigmoid(signs * logits).sum() / u.shape[0]


class SigLIPLoss(nn.Module):
    """:func:`siglip_loss` with a learnable log-temperature ``t`` and bias ``b``.

    Args:
        t_init: initial log-temperature (default ``log 10``, scale 10, as SigLIP).
        b_init: initial bias (default ``-10``, as SigLIP: starts near the prior that almost all
            pairs are negatives).
        normalize: L2-normalise the embeddings before the dot product.
    """

    def __init__(
        self, t_init: float = math.log(10.0), b_init: float = -10.0, normalize: bool = True
    ) -> None:
        super().__init__()
        self.t = nn.Parameter(torch.tensor(float(t_init)))
        self.b = nn.Parameter(torch.tensor(float(b_init)))
        self.normalize = normalize

    def forward(self, u: Tensor, v: Tensor, labels_u: Tensor, labels_v: Tensor) -> Tensor:
        """Scalar loss for ``u [B, D]``, ``v [B', D]`` with object ids ``labels_u [B]``, ``labels_v [B']``."""
        return siglip_loss(u, v, labels_u, labels_v, self.t, self.b, normalize=self.normalize)

    def extra_repr(self) -> str:
        return f"t={self.t.item():.4g}, b={self.b.item():.4g}, normalize={self.normalize}"


def ntxent_loss(z: Tensor, labels: Tensor, tau: float = 0.1) -> Tensor:
    """NT-Xent with any number of positives per object (SupCon "outside" form, Khosla et al. 2020).

    ``s[i, a] = cos(z_i, z_a) / tau``; the self-similarity ``s[i, i]`` is masked out (set to
    ``-inf``, not subtracted). For every anchor ``i`` with at least one positive
    ``P(i) = {p != i : labels[p] == labels[i]}``:

        loss_i = -(1 / |P(i)|) * sum_{p in P(i)} log( exp(s[i, p]) / sum_{a != i} exp(s[i, a]) )

    and the loss is the mean of ``loss_i`` over those anchors. Anchors without a positive (an
    object with a single view in the batch) still act as negatives for the others but contribute
    no term of their own. For the two-view batch ``z = cat([z1, z2])``, ``labels = cat([ids, ids])``
    with distinct ``ids`` this is exactly SimCLR's NT-Xent (mean over the ``2B`` anchors).

    If no anchor has a positive the loss is undefined; a zero connected to ``z``'s graph is
    returned (``backward`` works and gives zero gradients) and a ``RuntimeWarning`` is issued,
    since with a correct pair sampler this only happens by mistake.

    Args:
        z: ``[N, D]`` embeddings (need not be normalised; cosine similarity is used).
        labels: ``[N]`` integer object ids.
        tau: temperature (> 0; SANE uses 0.1).

    Returns:
        Scalar loss tensor (nats per anchor).
    """
    _check_embeddings("z", z, labels)
    if not tau > 0:
        raise ValueError(f"tau must be positive, got {tau}")
    n = z.shape[0]
    zn = F.normalize(z, dim=-1)
    eye = torch.eye(n, dtype=torch.bool, device=z.device)
    pos = (labels[:, None] == labels[None, :]) & ~eye
    valid = pos.any(dim=1)
    if not bool(valid.any()):
        warnings.warn(
            "ntxent_loss: no embedding in the batch has a positive (every label occurs once); "
            "returning a zero loss",
            RuntimeWarning,
            stacklevel=2,
        )
        return z.sum() * 0.0
    # Only anchors with a positive: their rows have >= 1 finite entry, so logsumexp stays finite.
    sim = (zn[valid] @ zn.T) / tau
    sim = sim.masked_fill(eye[valid], float("-inf"))
    log_prob = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    pos = pos[valid]
    # masked_fill (not a product with the mask): the -inf on the diagonal must not become NaN.
    per_anchor = -log_prob.masked_fill(~pos, 0.0).sum(dim=1) / pos.sum(dim=1)
    return per_anchor.mean()


class NTXentLoss(nn.Module):
    """:func:`ntxent_loss` as a module with a fixed temperature ``tau`` (default 0.1, as SANE)."""

    def __init__(self, tau: float = 0.1) -> None:
        super().__init__()
        if not tau > 0:
            raise ValueError(f"tau must be positive, got {tau}")
        self.tau = float(tau)

    def forward(self, z: Tensor, labels: Tensor) -> Tensor:
        """Scalar loss for embeddings ``z [N, D]`` with object ids ``labels [N]``."""
        return ntxent_loss(z, labels, tau=self.tau)

    def extra_repr(self) -> str:
        return f"tau={self.tau}"
