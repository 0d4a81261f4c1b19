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
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import dataclass_from_mapping
from ..tokens.tokenizer import GRID, MLP, POS, TokenSequence

__all__ = [
    "AttentionPooling",
    "PositionalEncoding",
    "RotationHead",
    "SANEAutoencoder",
    "SANEConfig",
    "SANEDecoder",
    "SANEEncoder",
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
    """

    token_dim: int = 256
    d_model: int = 128
    d_latent: int = 64
    n_heads: int = 4
    n_layers: int = 4
    ff_mult: int = 4
    dropout: float = 0.1
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


def _transformer(d: int, heads: int, ff: int, dropout: float, layers: int) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(
        d, heads, ff, dropout, activation="gelu", batch_first=True, norm_first=True
    )
    return nn.TransformerEncoder(layer, layers, norm=nn.LayerNorm(d), enable_nested_tensor=False)


# --------------------------------------------------------------------------- modules
class PositionalEncoding(nn.Module):
    """Sum of the enabled encodings: xyz (linear, grid tokens), [n, l, k] tables, kind table."""

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

    def forward(self, seq: TokenSequence) -> Tensor:
        mask = seq.mask
        nlk = torch.where(mask[..., None], seq.nlk, 0)
        kind = torch.where(mask, seq.kind, 0)
        out = seq.tokens.new_zeros(*mask.shape, self.d)
        if self.xyz is not None:
            xyz = torch.where((kind == GRID)[..., None], 2.0 * seq.xyz - 1.0, 0.0)
            out = out + self.xyz(xyz.to(out.dtype))
        for j, table in enumerate((self.n, self.l, self.k)):
            if table is None:
                continue
            idx = nlk[..., j]
            if int(idx.max()) >= table.num_embeddings:
                raise ValueError(
                    f"token position index {'nlk'[j]}={int(idx.max())} exceeds the model's table "
                    f"({table.num_embeddings}); raise max_positions / max_layers / max_index"
                )
            out = out + table(idx)
        if self.kind is not None:
            out = out + self.kind(kind)
        return out


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
        self.transformer = _transformer(d, cfg.n_heads, cfg.ff_mult * d, cfg.dropout, cfg.n_layers)
        self.to_latent = nn.Linear(d, cfg.d_latent)

    def forward(self, seq: TokenSequence, hidden: Tensor | None = None) -> Tensor:
        """Args: seq (batched or not); hidden: ``[B, C]`` bool tokens replaced by [MASK]."""
        seq = _batched(seq)
        is_pos = seq.kind == POS
        if int(torch.where(is_pos, seq.nlk[..., 2], 0).max()) >= self.cfg.n_pos:
            raise ValueError(f"more [POS] tokens than the model's n_pos={self.cfg.n_pos}")
        tok = seq.tokens.to(self.proj_grid.weight.dtype)
        pos = self.pos_tokens[torch.where(is_pos, seq.nlk[..., 2], 0)]
        h = torch.where(
            (seq.kind == GRID)[..., None],
            self.proj_grid(tok),
            torch.where((seq.kind == MLP)[..., None], self.proj_mlp(tok), pos),
        )
        if hidden is not None:
            h = torch.where(hidden[..., None], self.mask_token.expand_as(h), h)
        h = (h + self.pe(seq)) * seq.mask[..., None]
        h = self.transformer(h, src_key_padding_mask=~seq.mask)
        return self.to_latent(h) * seq.mask[..., None]


class SANEDecoder(nn.Module):
    """Latents ``[B, C, d_latent]`` -> reconstructed tokens ``[B, C, token_dim]``."""

    def __init__(self, cfg: SANEConfig) -> None:
        super().__init__()
        d = cfg.d_model
        self.from_latent = nn.Linear(cfg.d_latent, d)
        self.pe = PositionalEncoding(cfg)
        self.transformer = _transformer(d, cfg.n_heads, cfg.ff_mult * d, cfg.dropout, cfg.n_layers)
        self.to_tokens = nn.Linear(d, cfg.token_dim)

    def forward(self, z: Tensor, seq: TokenSequence) -> Tensor:
        seq = _batched(seq)
        h = (self.from_latent(z) + self.pe(seq)) * seq.mask[..., None]
        h = self.transformer(h, src_key_padding_mask=~seq.mask)
        return self.to_tokens(h)


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
        self, dim: int, n_pos: int, heads: int = 2, ff_mult: int = 4, dropout: float = 0.0
    ):
        super().__init__()
        self.position = nn.Parameter(torch.randn(2 * n_pos, dim) * 0.02)
        self.layer = nn.TransformerEncoderLayer(
            dim,
            heads,
            ff_mult * dim,
            dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.out = nn.Linear(dim, 4)

    def forward(self, z_pos_a: Tensor, z_pos_b: Tensor) -> Tensor:
        h = torch.cat([z_pos_a, z_pos_b], 1)
        if h.shape[1] != self.position.shape[0]:
            raise ValueError(
                f"expected 2 x {self.position.shape[0] // 2} [POS] latents, got {h.shape[1]}"
            )
        h = self.layer(h + self.position)
        return F.normalize(self.out(h[:, 0]), dim=-1)


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
            cfg.d_latent, cfg.n_pos, cfg.rot_heads, cfg.rot_ff_mult, cfg.dropout
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
