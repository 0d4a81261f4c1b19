"""SANE transformer autoencoder on field tokens (SANE-on-Instant-NGP study, section 4 / appendix).

Pipeline for a batch of :class:`~graphnerf.tokens.TokenSequence` ``[B, C, 256]``:

1. content: grid and MLP tokens get separate learned projections 256 -> d (the study's two
   linear tokenisers); [POS] tokens get learned embeddings; tokens hidden by the masked
   objective get a learned [MASK] embedding instead of their content.
2. positional encodings, summed: ``xyz`` (linear, grid tokens only), SANE's ``[n, l, k]``
   (three learned tables) and the token kind (learned).
3. transformer encoder (pre-LayerNorm, GELU) -> linear -> latents ``Z [B, C, d_latent]``.
4. decoder: linear ``d_latent -> d`` + its own positional encodings -> transformer -> linear
   -> reconstructed tokens ``[B, C, 256]``; the loss is an MSE over the real values of the
   selected tokens (zero padding, [POS] and batch padding are excluded from the sum and from the
   denominator).
5. heads: attention pooling over the content latents (no [POS], no padding) -> ``embedding [B,
   d_latent]`` -> MLP projection for NT-Xent; rotation head over the [POS] latents of two views
   (concatenated, learned position embedding, one transformer layer, first token -> quaternion).

Batches without padding work
----------------------------
Sequences of a batch have different lengths (91 tokens for a plain MLP field, 439 for ``hash``,
503 for ``triplane``), and the padding added by :func:`~graphnerf.tokens.collate` is a third of
a mixed batch. The transformers therefore never see it: :class:`Packing` gathers the real tokens
of ``[B, C]`` into rows ``[N, d]``, grouped by sequence length. Every row-wise operation
(projections, LayerNorm, feed-forward, positional encodings) runs on the ``N`` rows only, and
:class:`TransformerLayer` runs attention once per distinct length, on ``[n_seq, heads, L,
d_head]`` views of the rows, with :func:`torch.nn.functional.scaled_dot_product_attention` and
no mask (the fused flash kernel on CPU). Attention within a sequence over its own tokens is
exactly attention with a key-padding mask, so the outputs for the real tokens are those of the
padded computation; outputs at padding positions are 0.

Dropout on the attention probabilities (``attn_dropout``) is off by default: with it SDPA falls
back to the unfused kernel that materialises and stores the ``[B, heads, C, C]`` probabilities
and their dropout mask (on the 8-sequence benchmark batch the attention took 2.6x longer and
most of the 1.1 GB of saved activations). ``dropout`` still regularises the residual branches
and the feed-forward hidden layer. ``bf16=True`` runs the transformers under bfloat16 autocast
(the residual streams and the losses stay float32).

Why SANE memorised the geometry probes (issue #13, item 7)
----------------------------------------------------------
On the blob-centre probes of :mod:`graphnerf.probes` (64 training and 32 held-out fields, the
blob in the grid, the fields' small MLP heads left at their random initialisation) the default
encoder + a linear head fitted the training centres and not the held-out ones. Measured with
``graphnerf.probes.runner.run_probe`` (Adam, lr 1e-3, batch 16, seed 0, one thread; ``P`` points
per field; "fixed": one point set for every field and step, no augmentation, the old use):

=========================================================  =====  =====  ========  ========
setting (dense_hash unless said)                            P      steps  train R2  held-out
=========================================================  =====  =====  ========  ========
default net, fixed points                                   64     200    0.838     -0.324
default net, fixed points                                   128    400    0.995     0.849
default net, fixed points, MLP tokens removed               128    400    0.998     0.966
embed_std 0.02 + Fourier xyz (4 octaves) + no n/k index     128    400    0.994     -0.614
embeddings on grid tokens, fresh points every step
the same, MLP tokens removed                                128    400    0.918     0.875
default net, fresh points + the YAML's augmentations        128    400    0.916     0.913
triplane: the same                                          128    400    0.955     0.937
triplane: default net, fixed points                         128    400    0.998     0.984
SANEProbe (default pipeline), dense_hash                    128    1000   0.944     0.913
SANEProbe (default pipeline), triplane                      128    1000   0.967     0.954
=========================================================  =====  =====  ========  ========

The cause is the MLP tokens: each field's MLP head is a different random draw, so its few MLP
tokens (5 for the probe's 16-neuron head) are a per-field fingerprint, and attention reads it
to recall the training targets. Removing them alone turns memorisation (held-out 0.849,
-0.324 with 64 points) into generalisation (0.966) with the fixed point set, the linear xyz
encoding, the n / l / k tables and 1.1 M parameters for 64 fields all unchanged, so none of those
is the cause; changing them (small embedding init, Fourier xyz, no index embeddings on grid
tokens) did not help (0.875 vs 0.966 without MLP tokens) and with MLP tokens present still
memorised (-0.614) even with fresh points every step. The network is therefore left as the study
built it. The fix is in the default pipeline (``configs/model/sane.yaml``): every training batch
draws fresh points (``tokens.resample: true``) and applies the study's augmentations
(``augment``: a random permutation of the hidden neurons, which reshuffles the MLP rows between
tokens, and 10 % multiplicative token noise), so the MLP tokens stop being a fingerprint; train
and held-out R^2 then agree (dense hash 0.916 / 0.913, tri-plane 0.955 / 0.937 at 400 steps).
With the probe's small heads (5 MLP tokens) the fingerprint does not always win: on the
tri-plane (seed 0) the old path generalised (0.984) and the augmented one, slower to fit, is
lower at 400 steps (0.937); the fix trades that for the absence of a train / held-out gap.
Not measured: the default network with fresh points but no augmentation (fresh points alone,
with the modified network above, still memorised, so the augmentations are the likely remedy). :class:`graphnerf.probes.sane.SANEProbe`
trains this way.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import dataclass_from_mapping
from ..tokens.tokenizer import GRID, MLP, POS, TokenSequence

__all__ = [
    "AttentionPooling",
    "Packing",
    "PositionalEncoding",
    "RotationHead",
    "SANEAutoencoder",
    "SANEConfig",
    "SANEDecoder",
    "SANEEncoder",
    "Transformer",
    "TransformerLayer",
    "content_tokens",
    "masked_reconstruction_loss",
    "pos_latents",
    "select_masked_tokens",
]

POSITIONAL_COMPONENTS = ("xyz", "n", "l", "k", "kind")
N_KINDS = 3  # GRID, MLP, POS


@dataclass(frozen=True)
class SANEConfig:
    """Hyperparameters of :class:`SANEAutoencoder` (``configs/model/sane.yaml``, key ``net``).

    The study used d_model 1024, d_latent 128, 4 layers x 4 heads, dropout 0.3, projection
    128 -> 64 -> 32, a 2-head rotation layer; the defaults here are small CPU-friendly ones.
    ``dropout`` acts on the residual branches and the feed-forward hidden layer,
    ``attn_dropout`` on the attention probabilities (0 by default: see the module docstring);
    ``bf16`` runs the transformers under bfloat16 autocast.
    """

    token_dim: int = 256
    d_model: int = 128
    d_latent: int = 64
    n_heads: int = 4
    n_layers: int = 4
    ff_mult: int = 4
    dropout: float = 0.1
    attn_dropout: float = 0.0
    n_pos: int = 10
    max_positions: int = 1024  # n: global position in the sequence
    max_layers: int = 64  # l: layer / level chunk
    max_index: int = 1024  # k: index within the layer
    positional: tuple[str, ...] = POSITIONAL_COMPONENTS
    mask_ratio: float = 0.25  # share of content tokens hidden while training
    recon_target: str = "masked"  # "masked": loss on hidden tokens; "all": every content token
    proj_dims: tuple[int, ...] = (64, 32)
    rot_heads: int = 2
    rot_ff_mult: int = 4
    bf16: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "positional", tuple(self.positional))
        object.__setattr__(self, "proj_dims", tuple(self.proj_dims))
        unknown = set(self.positional) - set(POSITIONAL_COMPONENTS)
        if unknown:
            raise ValueError(f"unknown positional components {sorted(unknown)}")
        if self.d_model % self.n_heads or self.d_latent % self.rot_heads:
            raise ValueError("d_model / d_latent must be divisible by n_heads / rot_heads")
        if self.recon_target not in ("masked", "all"):
            raise ValueError(f"recon_target must be 'masked' or 'all', got {self.recon_target!r}")
        if not 0.0 <= self.mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in [0, 1), got {self.mask_ratio}")
        for name in ("dropout", "attn_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if not isinstance(self.bf16, bool):
            raise ValueError(f"bf16 must be true or false, got {self.bf16!r}")

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> SANEConfig:
        return dataclass_from_mapping(cls, cfg, "SANE config")

    def build(self) -> SANEAutoencoder:
        return SANEAutoencoder(self)


# --------------------------------------------------------------------------- token helpers
def content_tokens(seq: TokenSequence) -> Tensor:
    """``[..., C]`` bool: real grid / MLP tokens (no [POS], no batch padding)."""
    return seq.mask & ((seq.kind == GRID) | (seq.kind == MLP))


def select_masked_tokens(
    seq: TokenSequence, ratio: float, generator: torch.Generator | None = None
) -> Tensor:
    """Random content tokens to hide, each with probability ``ratio``: ``[B, C]`` bool."""
    r = torch.rand(seq.mask.shape, generator=generator).to(seq.mask.device)
    return (r < ratio) & content_tokens(seq)


def masked_reconstruction_loss(pred: Tensor, target: Tensor, weight: Tensor) -> Tensor:
    """``sum(weight * (pred - target)^2) / sum(weight)``: MSE over the selected values only.

    Args:
        pred, target: ``[..., T]`` token values.
        weight: bool (or 0/1) of the same shape: which values count. Padding and [POS] values
            must be False here, so they are neither in the sum nor in the denominator.
    Returns:
        Scalar; 0 (connected to ``pred``) when nothing is selected.
    """
    w = weight.to(pred.dtype)
    return ((pred - target).square() * w).sum() / w.sum().clamp_min(1.0)


def pos_latents(z: Tensor, seq: TokenSequence) -> Tensor:
    """The [POS] rows of ``z [B, C, d]`` -> ``[B, P, d]`` (every sequence has the same P)."""
    is_pos = seq.mask & (seq.kind == POS)
    n = int(is_pos.sum())
    if n % z.shape[0]:
        raise ValueError("every sequence of a batch must have the same number of [POS] tokens")
    return z[is_pos].reshape(z.shape[0], n // z.shape[0], z.shape[-1])


def _batched(seq: TokenSequence) -> TokenSequence:
    if seq.batched:
        return seq
    return TokenSequence(**{f.name: getattr(seq, f.name)[None] for f in fields(seq)})


# --------------------------------------------------------------------------- dropout
def dropout_mask(shape: torch.Size, p: float, device: torch.device) -> tuple[Tensor, float]:
    """Keep decisions for dropout with probability ``p``: ``(keep [shape] bool, scale)``.

    Each element is kept with probability ``q = t / 65536``, ``t = round((1 - p) 65536)``
    (``|q - (1 - p)| <= 2^-17``); ``scale = 1 / q`` keeps the expectation. The decisions are
    16-bit uniforms, four cut from every 64-bit draw of the global generator: ``bernoulli_``
    draws once per element and made ``F.dropout`` cost 17 ms forward + backward on a ``[2596,
    512]`` activation (one thread), the mask here 3 ms.
    """
    t = round((1.0 - p) * 65536)
    n = math.prod(shape)
    if t <= 0:
        return torch.zeros(shape, dtype=torch.bool, device=device), 0.0
    if t >= 65536:  # p < 2^-17 (the threshold would not fit in int16)
        return torch.ones(shape, dtype=torch.bool, device=device), 1.0
    bits = torch.empty((n + 3) // 4, dtype=torch.int64, device=device)
    bits.random_(-(2**63), None)  # the full 64-bit range: four uniform int16 each
    return bits.view(torch.int16)[:n].view(shape) < t - 32768, 65536.0 / t


def dropout(x: Tensor, p: float, training: bool = True) -> Tensor:
    """``F.dropout`` with the mask of :func:`dropout_mask`."""
    if not training or p == 0.0:
        return x
    keep, scale = dropout_mask(x.shape, p, x.device)
    return torch.where(keep, x, 0.0) * scale


def residual_dropout(x: Tensor, y: Tensor, p: float, training: bool = True) -> Tensor:
    """``x + dropout(y)``, the scale folded into the addition (one pass fewer)."""
    if not training or p == 0.0:
        return x + y
    keep, scale = dropout_mask(y.shape, p, y.device)
    return torch.add(x, torch.where(keep, y, 0.0), alpha=scale)


# --------------------------------------------------------------------------- packing
class Packing(NamedTuple):
    """The real tokens of a padded batch ``[B, C]`` as ``N`` rows, grouped by sequence length.

    ``rows [N]`` are flat indices ``b * C + c`` of the tokens with ``mask`` True: first every
    token of the shortest sequence, in sequence order, then the next sequence, ... (sequences
    sorted by length, ties in batch order). ``groups`` lists ``(n_sequences, length)`` of the
    consecutive blocks of rows whose sequences have the same length, so that each block is a
    ``[n_sequences, length, ...]`` view. See the module docstring.
    """

    rows: Tensor
    groups: tuple[tuple[int, int], ...]
    shape: tuple[int, int]

    @classmethod
    def from_mask(cls, mask: Tensor) -> Packing:
        """From ``mask [B, C]`` (True = real token); the real tokens need not be a prefix."""
        n_seq, c = mask.shape
        lengths = mask.sum(1)
        order = torch.sort(lengths, stable=True).indices
        seq_i, pos = mask.index_select(0, order).nonzero(as_tuple=True)
        rows = order[seq_i] * c + pos
        length_list = lengths[order].tolist()
        groups: list[tuple[int, int]] = []
        for length in length_list:
            if length == 0:
                continue
            if groups and groups[-1][1] == length:
                groups[-1] = (groups[-1][0] + 1, length)
            else:
                groups.append((1, length))
        return cls(rows, tuple(groups), (n_seq, c))

    @classmethod
    def dense(cls, n_seq: int, length: int, device: torch.device | None = None) -> Packing:
        """``n_seq`` sequences of ``length`` tokens, no padding (rows in their natural order)."""
        rows = torch.arange(n_seq * length, device=device)
        return cls(rows, ((n_seq, length),) if n_seq and length else (), (n_seq, length))

    def pack(self, x: Tensor) -> Tensor:
        """``[B, C, ...]`` -> ``[N, ...]`` (the real tokens, in packed order)."""
        return x.flatten(0, 1).index_select(0, self.rows)

    def unpack(self, x: Tensor) -> Tensor:
        """``[N, ...]`` -> ``[B, C, ...]``, zero at the padding."""
        out = x.new_zeros(self.shape[0] * self.shape[1], *x.shape[1:])
        return out.index_copy(0, self.rows, x).unflatten(0, self.shape)


class TransformerLayer(nn.Module):
    """Pre-LayerNorm transformer encoder layer (GELU) on packed rows ``[N, d]``::

        x <- x + drop(Out(attention(QKV(LN(x)))))
        x <- x + drop(W2 drop(gelu(W1 LN(x))))

    Attention runs separately within each block of ``groups`` (module docstring), through
    :func:`torch.nn.functional.scaled_dot_product_attention`. Same function and initialisation
    as ``nn.TransformerEncoderLayer(norm_first=True, activation="gelu")`` with a key-padding
    mask.
    """

    def __init__(
        self, d: int, heads: int, ff: int, dropout: float = 0.0, attn_dropout: float = 0.0
    ) -> None:
        super().__init__()
        if d % heads:
            raise ValueError(f"d ({d}) must be divisible by heads ({heads})")
        self.heads, self.dropout, self.attn_dropout = heads, dropout, attn_dropout
        self.norm1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)
        self.norm2 = nn.LayerNorm(d)
        self.ff1 = nn.Linear(d, ff)
        self.ff2 = nn.Linear(ff, d)
        nn.init.xavier_uniform_(self.qkv.weight)  # as nn.MultiheadAttention
        nn.init.zeros_(self.qkv.bias)
        nn.init.zeros_(self.out.bias)

    def attention(self, x: Tensor, groups: Sequence[tuple[int, int]]) -> Tensor:
        """Multi-head self-attention within each group's sequences: ``[N, d] -> [N, d]``."""
        n_rows, d = x.shape
        qkv = self.qkv(x)
        p = self.attn_dropout if self.training else 0.0
        outs, start = [], 0
        for n_seq, length in groups:
            block = qkv[start : start + n_seq * length]
            q, k, v = block.view(n_seq, length, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
            o = F.scaled_dot_product_attention(q, k, v, dropout_p=p)  # [n, heads, L, d_head]
            outs.append(o.transpose(1, 2).reshape(n_seq * length, d))
            start += n_seq * length
        if start != n_rows:
            raise ValueError(f"groups cover {start} rows, the input has {n_rows}")
        return self.out(torch.cat(outs) if len(outs) != 1 else outs[0])

    def forward(self, x: Tensor, groups: Sequence[tuple[int, int]]) -> Tensor:
        p, train = self.dropout, self.training
        x = residual_dropout(x, self.attention(self.norm1(x), groups), p, train)
        ff = F.gelu(self.ff1(self.norm2(x)))
        if train and p > 0.0:  # dropout on the hidden layer, its scale folded into W2
            keep, scale = dropout_mask(ff.shape, p, ff.device)
            y = torch.addmm(
                self.ff2.bias, torch.where(keep, ff, 0.0), self.ff2.weight.t(), alpha=scale
            )
        else:
            y = self.ff2(ff)
        return residual_dropout(x, y, p, train)


class Transformer(nn.Module):
    """``n_layers`` :class:`TransformerLayer` + final LayerNorm, on packed rows; under
    bfloat16 autocast if ``bf16`` (the output is float32)."""

    def __init__(self, cfg: SANEConfig) -> None:
        super().__init__()
        d = cfg.d_model
        self.layers = nn.ModuleList(
            TransformerLayer(d, cfg.n_heads, cfg.ff_mult * d, cfg.dropout, cfg.attn_dropout)
            for _ in range(cfg.n_layers)
        )
        self.norm = nn.LayerNorm(d)
        self.bf16 = cfg.bf16

    def forward(self, x: Tensor, groups: Sequence[tuple[int, int]]) -> Tensor:
        dtype = x.dtype
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            for layer in self.layers:
                x = layer(x, groups)
            # LayerNorm is a float32 op under autocast
            return self.norm(x).to(dtype)


# --------------------------------------------------------------------------- modules
class PositionalEncoding(nn.Module):
    """Sum of the enabled encodings: xyz (linear, grid tokens), [n, l, k] tables, kind table.

    Takes the per-token fields of real tokens (any leading shape, no batch padding).
    """

    def __init__(self, cfg: SANEConfig) -> None:
        super().__init__()
        d, comps = cfg.d_model, cfg.positional
        self.components = comps
        self.xyz = nn.Linear(3, d, bias=False) if "xyz" in comps else None
        self.n = nn.Embedding(cfg.max_positions, d) if "n" in comps else None
        self.l = nn.Embedding(cfg.max_layers, d) if "l" in comps else None
        self.k = nn.Embedding(cfg.max_index, d) if "k" in comps else None
        self.kind = nn.Embedding(N_KINDS, d) if "kind" in comps else None
        self.d = d

    def forward(self, kind: Tensor, xyz: Tensor, nlk: Tensor) -> Tensor:
        """Args: ``kind [...]``, ``xyz [..., 3]``, ``nlk [..., 3]`` -> ``[..., d]``."""
        terms = []
        if self.xyz is not None:
            xyz = torch.where((kind == GRID)[..., None], 2.0 * xyz - 1.0, 0.0)
            terms.append(self.xyz(xyz.to(self.xyz.weight.dtype)))
        for j, table in enumerate((self.n, self.l, self.k)):
            if table is None:
                continue
            idx = nlk[..., j]
            if idx.numel() and int(idx.max()) >= table.num_embeddings:
                raise ValueError(
                    f"token position index {'nlk'[j]}={int(idx.max())} exceeds the model's table "
                    f"({table.num_embeddings}); raise max_positions / max_layers / max_index"
                )
            terms.append(table(idx))
        if self.kind is not None:
            terms.append(self.kind(kind))
        if not terms:
            return xyz.new_zeros(*kind.shape, self.d)
        return torch.stack(terms).sum(0) if len(terms) > 1 else terms[0]


class SANEEncoder(nn.Module):
    """Tokens -> latents ``Z [B, C, d_latent]`` (zero on batch padding)."""

    def __init__(self, cfg: SANEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        self.proj_grid = nn.Linear(cfg.token_dim, d)
        self.proj_mlp = nn.Linear(cfg.token_dim, d)
        self.pos_tokens = nn.Parameter(torch.randn(cfg.n_pos, d) * 0.02)
        self.mask_token = nn.Parameter(torch.randn(d) * 0.02)
        self.pe = PositionalEncoding(cfg)
        self.transformer = Transformer(cfg)
        self.to_latent = nn.Linear(d, cfg.d_latent)

    def forward(self, seq: TokenSequence, hidden: Tensor | None = None) -> Tensor:
        """Args: seq (batched or not); hidden: ``[B, C]`` bool tokens replaced by [MASK]."""
        seq = _batched(seq)
        pk = Packing.from_mask(seq.mask)
        kind, nlk = pk.pack(seq.kind), pk.pack(seq.nlk)
        is_pos = kind == POS
        if bool(is_pos.any()) and int(nlk[is_pos, 2].max()) >= self.cfg.n_pos:
            raise ValueError(f"more [POS] tokens than the model's n_pos={self.cfg.n_pos}")
        tok = pk.pack(seq.tokens).to(self.proj_grid.weight.dtype)
        h = tok.new_zeros(tok.shape[0], self.cfg.d_model)
        for k, fn in (
            (GRID, self.proj_grid),
            (MLP, self.proj_mlp),
            (POS, lambda t: self.pos_tokens[t]),
        ):
            rows = (kind == k).nonzero().squeeze(1)
            arg = nlk[rows, 2] if k == POS else tok.index_select(0, rows)
            h = h.index_copy(0, rows, fn(arg))
        if hidden is not None:
            h = torch.where(pk.pack(hidden)[:, None], self.mask_token, h)
        h = self.transformer(h + self.pe(kind, pk.pack(seq.xyz), nlk), pk.groups)
        return pk.unpack(self.to_latent(h))


class SANEDecoder(nn.Module):
    """Latents ``[B, C, d_latent]`` -> reconstructed tokens ``[B, C, token_dim]`` (zero on batch
    padding)."""

    def __init__(self, cfg: SANEConfig) -> None:
        super().__init__()
        d = cfg.d_model
        self.from_latent = nn.Linear(cfg.d_latent, d)
        self.pe = PositionalEncoding(cfg)
        self.transformer = Transformer(cfg)
        self.to_tokens = nn.Linear(d, cfg.token_dim)

    def forward(self, z: Tensor, seq: TokenSequence) -> Tensor:
        seq = _batched(seq)
        pk = Packing.from_mask(seq.mask)
        pe = self.pe(pk.pack(seq.kind), pk.pack(seq.xyz), pk.pack(seq.nlk))
        h = self.transformer(self.from_latent(pk.pack(z)) + pe, pk.groups)
        return pk.unpack(self.to_tokens(h))


class AttentionPooling(nn.Module):
    """Learned-score softmax pooling over the selected rows: ``[B, C, d]`` -> ``[B, d]``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.score = nn.Linear(dim, 1)

    def forward(self, z: Tensor, select: Tensor) -> Tensor:
        s = self.score(z).squeeze(-1).masked_fill(~select, float("-inf"))
        return (torch.softmax(s, dim=-1)[..., None] * z).sum(-2)


class RotationHead(nn.Module):
    """[POS] latents of two views ``[B, P, d]`` x 2 -> unit quaternion ``[B, 4]`` (wxyz)."""

    def __init__(
        self,
        dim: int,
        n_pos: int,
        heads: int = 2,
        ff_mult: int = 4,
        dropout: float = 0.0,
        attn_dropout: float = 0.0,
    ):
        super().__init__()
        self.position = nn.Parameter(torch.randn(2 * n_pos, dim) * 0.02)
        self.layer = TransformerLayer(dim, heads, ff_mult * dim, dropout, attn_dropout)
        self.out = nn.Linear(dim, 4)

    def forward(self, z_pos_a: Tensor, z_pos_b: Tensor) -> Tensor:
        h = torch.cat([z_pos_a, z_pos_b], 1)
        if h.shape[1] != self.position.shape[0]:
            raise ValueError(
                f"expected 2 x {self.position.shape[0] // 2} [POS] latents, got {h.shape[1]}"
            )
        n, length, d = h.shape
        rows = self.layer((h + self.position).reshape(n * length, d), ((n, length),))
        return F.normalize(self.out(rows.view(n, length, d)[:, 0]), dim=-1)


class SANEAutoencoder(nn.Module):
    """Encoder + decoder + NT-Xent projection + rotation head (see the module docstring)."""

    def __init__(self, cfg: SANEConfig | None = None) -> None:
        super().__init__()
        cfg = cfg or SANEConfig()
        self.cfg = cfg
        self.encoder = SANEEncoder(cfg)
        self.decoder = SANEDecoder(cfg)
        self.pool = AttentionPooling(cfg.d_latent)
        dims = (cfg.d_latent, *cfg.proj_dims)
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
            layers += [nn.Linear(a, b)] + ([nn.ReLU()] if i < len(dims) - 2 else [])
        self.projector = nn.Sequential(*layers)
        self.rotation_head = RotationHead(
            cfg.d_latent, cfg.n_pos, cfg.rot_heads, cfg.rot_ff_mult, cfg.dropout, cfg.attn_dropout
        )

    @property
    def embedding_dim(self) -> int:
        return self.cfg.d_latent

    def encode(self, seq: TokenSequence, hidden: Tensor | None = None) -> Tensor:
        return self.encoder(seq, hidden)

    def embed(self, seq: TokenSequence) -> Tensor:
        """Embedding ``[B, d_latent]``: attention pooling of the content latents (no masking)."""
        seq = _batched(seq)
        return self.pool(self.encoder(seq), content_tokens(seq))

    def forward(
        self,
        seq: TokenSequence,
        target: Tensor | None = None,
        mask_ratio: float | None = None,
        generator: torch.Generator | None = None,
    ) -> dict[str, Tensor]:
        """Encode, decode and pool one batch.

        Args:
            seq: batched (or single) token sequence, possibly augmented.
            target: clean tokens to reconstruct ``[B, C, T]`` (default ``seq.tokens``).
            mask_ratio: share of content tokens hidden behind [MASK] (default ``cfg.mask_ratio``
                in training mode, 0 in eval mode).
            generator: for the token masking.
        Returns:
            dict with ``z [B, C, d_latent]``, ``recon [B, C, T]``, ``hidden [B, C]`` (masked
            tokens), ``loss_recon`` (scalar), ``embedding [B, d_latent]``, ``projection [B,
            proj_dims[-1]]`` and ``z_pos [B, n_pos, d_latent]``.
        """
        seq = _batched(seq)
        ratio = (
            (self.cfg.mask_ratio if self.training else 0.0) if mask_ratio is None else mask_ratio
        )
        hidden = select_masked_tokens(seq, ratio, generator) if ratio > 0 else None
        z = self.encoder(seq, hidden)
        recon = self.decoder(z, seq)
        content = content_tokens(seq)
        scored = content
        if self.cfg.recon_target == "masked" and hidden is not None and bool(hidden.any()):
            scored = hidden
        target = seq.tokens if target is None else target
        loss = masked_reconstruction_loss(recon, target, seq.valid & scored[..., None])
        embedding = self.pool(z, content)
        return {
            "z": z,
            "recon": recon,
            "hidden": hidden if hidden is not None else torch.zeros_like(seq.mask),
            "loss_recon": loss,
            "embedding": embedding,
            "projection": self.projector(embedding),
            "z_pos": pos_latents(z, seq),
        }

    def predict_rotation(self, z_pos_a: Tensor, z_pos_b: Tensor) -> Tensor:
        """Relative rotation from view a to view b (``q_b q_a^-1``) as unit quaternions [B, 4]."""
        return self.rotation_head(z_pos_a, z_pos_b)
