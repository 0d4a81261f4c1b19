"""`FieldDecoder`: an nf2vec-style conditional radiance field ``(z, x) -> (sigma, rgb)``.

As nf2vec's implicit decoder: positions are normalised to [0, 1]^3 over the AABB and frequency
encoded (tcnn Frequency layout, :func:`~graphnerf.fields.frequency_encoding`), concatenated with
the embedding ``z``, and fed to a ReLU MLP; a skip connection re-injects the input (a ReLU
projection of ``[z, enc(x)]`` added to the hidden state) between the layers before and after the
skip; the output layer gives 4 raw values. Density is ``trunc_exp(raw - 1)`` and zero outside the
AABB, colour ``sigmoid(raw)``, exactly like the fields, so a decoder bound to an embedding renders
through :func:`graphnerf.render.render_rays` like any field.

The linear layers that read ``[z, enc(x)]`` are split into a ``z`` part and an ``x`` part (the
same function as one linear layer on the concatenation): the ``z`` part is computed once per
embedding, not once per point.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import Tensor, nn

from ..config import dataclass_from_mapping
from ..fields.base import trunc_exp
from ..fields.encodings import frequency_encoding
from ..fields.spec import DEFAULT_AABB

__all__ = ["BoundFieldDecoder", "DecoderConfig", "FieldDecoder"]


@dataclass(frozen=True)
class DecoderConfig:
    """Hyperparameters of :class:`FieldDecoder` (``configs/model/decoder.yaml``, key ``net``).

    nf2vec: hidden 1024, 2 layers before and 2 after the skip, 24 frequencies; the defaults here
    are smaller.
    """

    embed_dim: int = 64
    hidden_dim: int = 256
    n_layers_before_skip: int = 2
    n_layers_after_skip: int = 2
    n_frequencies: int = 24
    aabb: tuple[float, ...] = DEFAULT_AABB

    def __post_init__(self) -> None:
        object.__setattr__(self, "aabb", tuple(float(v) for v in self.aabb))
        if len(self.aabb) != 6:
            raise ValueError(f"aabb must have 6 values, got {self.aabb}")

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> DecoderConfig:
        return dataclass_from_mapping(cls, cfg, "decoder config")

    def build(self) -> FieldDecoder:
        return FieldDecoder(**{f.name: getattr(self, f.name) for f in fields(self)})


class _SplitLinear(nn.Module):
    """``Linear([z, e])`` as ``Wz z + We e + b``; ``z [B, D]`` broadcast over ``e [B, N, E]``."""

    def __init__(self, z_dim: int, e_dim: int, out: int) -> None:
        super().__init__()
        self.z = nn.Linear(z_dim, out)
        self.e = nn.Linear(e_dim, out, bias=False)

    def forward(self, z: Tensor, e: Tensor) -> Tensor:
        return self.z(z)[:, None, :] + self.e(e)


class FieldDecoder(nn.Module):
    """Conditional field: ``forward(z [B, D], x [B, N, 3]) -> (sigma [B, N], rgb [B, N, 3])``.

    Args:
        embed_dim: embedding size ``D``.
        hidden_dim: MLP width.
        n_layers_before_skip, n_layers_after_skip: hidden layers on each side of the skip.
        n_frequencies: frequency-encoding octaves of the normalised position (6 F inputs).
        aabb: scene box (min xyz, max xyz); density is zero outside.
    """

    def __init__(
        self,
        embed_dim: int = 64,
        hidden_dim: int = 256,
        n_layers_before_skip: int = 2,
        n_layers_after_skip: int = 2,
        n_frequencies: int = 24,
        aabb: tuple[float, ...] = DEFAULT_AABB,
    ) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.n_frequencies = n_frequencies
        self.register_buffer("aabb", torch.tensor(aabb, dtype=torch.float32), persistent=False)
        enc = 6 * n_frequencies
        self.in_layer = _SplitLinear(embed_dim, enc, hidden_dim)
        self.skip = _SplitLinear(embed_dim, enc, hidden_dim)
        self.before = nn.ModuleList(
            nn.Linear(hidden_dim, hidden_dim) for _ in range(n_layers_before_skip)
        )
        self.after = nn.ModuleList(
            nn.Linear(hidden_dim, hidden_dim) for _ in range(n_layers_after_skip)
        )
        self.out = nn.Linear(hidden_dim, 4)

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> FieldDecoder:
        return DecoderConfig.from_config(cfg).build()

    def forward(self, z: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
        if z.dim() != 2 or z.shape[1] != self.embed_dim:
            raise ValueError(f"z must be [B, {self.embed_dim}], got {tuple(z.shape)}")
        if x.dim() != 3 or x.shape[0] != z.shape[0] or x.shape[2] != 3:
            raise ValueError(f"x must be [B={z.shape[0]}, N, 3], got {tuple(x.shape)}")
        b, n, _ = x.shape
        lo, hi = self.aabb[:3], self.aabb[3:]
        x01 = (x - lo) / (hi - lo)
        inside = ((x01 > 0.0) & (x01 < 1.0)).all(-1)
        e = frequency_encoding(x01.reshape(b * n, 3), self.n_frequencies).reshape(b, n, -1)
        h = torch.relu(self.in_layer(z, e))
        for layer in self.before:
            h = torch.relu(layer(h))
        h = h + torch.relu(self.skip(z, e))
        for layer in self.after:
            h = torch.relu(layer(h))
        raw = self.out(h)
        sigma = trunc_exp(raw[..., 3] - 1.0) * inside
        return sigma, torch.sigmoid(raw[..., :3])

    def bind(self, z: Tensor) -> BoundFieldDecoder:
        """A field ``x [N, 3] -> (sigma [N], rgb [N, 3])`` for one embedding ``z [D]``."""
        return BoundFieldDecoder(self, z)


class BoundFieldDecoder:
    """:class:`FieldDecoder` with a fixed embedding; callable like a field, has ``aabb``.

    Gradients flow to the decoder's parameters and to ``z``.
    """

    def __init__(self, decoder: FieldDecoder, z: Tensor) -> None:
        if z.dim() != 1:
            raise ValueError(f"bind takes one embedding [D], got {tuple(z.shape)}")
        self.decoder = decoder
        self.z = z

    @property
    def aabb(self) -> Tensor:
        return self.decoder.aabb

    def __call__(self, x: Tensor) -> tuple[Tensor, Tensor]:
        sigma, rgb = self.decoder(self.z[None], x[None])
        return sigma[0], rgb[0]
