"""SANE tokenizer for the three field families (after the SANE-on-Instant-NGP study).

A field becomes a sequence of ``C`` tokens of ``token_dim`` (256) values, in this order:

1. **grid tokens**, one per sampled point ``p`` in [0, 1]^3 (normalised over the AABB):

   * hash grids: the raw table entries at the 8 corners of the point's cell on each of the ``L``
     levels, exactly the entries tiny-cuda-nn interpolates (same ``scale * x + 0.5`` position,
     same corner order :data:`~graphnerf.fields.encodings.CORNER_OFFSETS`, same dense / hashed
     index). Layout level-major: value ``(l * 8 + c) * F + f`` is feature ``f`` of corner ``c`` on
     level ``l`` (8 L F values; 64 for the ``hash`` spec, 256 for Instant-NGP's 16 x 2).
   * tri-planes: the 4 texels of the bilinear cell on each of the 3 planes (``align_corners=True``
     over [-1, 1], i.e. texel coordinate ``x01 * (R - 1)``). Layout plane-major: value
     ``(k * 4 + c) * C + ch`` is channel ``ch`` of corner ``c = du + 2 dv`` on plane ``k`` (texel
     row ``v0 + dv``, column ``u0 + du``, where the plane's ``(u, v)`` are the world axes
     ``TRIPLANE_AXES[k]``); 12 C values, 192 for the ``triplane`` spec.
   * plain MLP fields have no grid tokens.

   A point whose values exceed ``token_dim`` is split over several tokens (``l`` = chunk index).
2. **MLP tokens**: each weight matrix ``W [out, in]`` (tcnn layout, row = output neuron) is cut
   into blocks of ``neurons_per_token`` (4) rows x ``token_dim / neurons_per_token`` (64) input
   columns, zero-padded at the bottom / right; every block, flattened row-major, is one token.
   When every layer has at most 64 inputs this is exactly the study's rule (pad each layer to
   64 columns and a multiple of 4 rows, 4 neurons per token), which gives its 53 tokens for
   Instant-NGP's MLPs; wider layers (our frequency-encoded inputs: 144, 304) take several column
   blocks instead of overflowing the token. Only the real outputs of the last layer (rgb +
   density = 4 rows) are kept: tcnn's padded output rows never influence the field.
3. ``n_pos`` (10) **[POS] tokens**: zero content, filled by learned embeddings in the model.

Per token: ``mask`` (True = real token, False = padding added by :func:`collate`), ``kind``
(:data:`GRID`, :data:`MLP`, :data:`POS`, :data:`PAD`), ``xyz`` (the sample point for grid tokens,
else 0), ``nlk`` = SANE's ``[n, l, k]`` (global position in the sequence; layer / level-chunk;
position within that layer: point index for grid tokens, block index for MLP tokens, [POS] index),
and the element mask ``valid [C, token_dim]`` (True where a value is real content, False on zero
padding and on [POS] tokens): reconstruction losses average over ``valid`` elements only.

Everything is vectorised over points, corners, neurons and entries; Python loops only run over
layers, planes and views.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import torch
from torch import Tensor

from ..fields import HashGridField, RadianceField, TriplaneField
from ..fields.encodings import CORNER_OFFSETS, TRIPLANE_AXES, hash_grid_indices
from ..fields.spec import MLP_OUTPUTS, FieldSpec, HashGridSpec, TriplaneSpec

__all__ = [
    "GRID",
    "MLP",
    "PAD",
    "POS",
    "SAMPLING_MODES",
    "TokenSequence",
    "Tokenizer",
    "collate",
    "grid_token_values",
    "hash_corner_values",
    "mlp_token_count",
    "sample_points",
    "tokenize_weights",
    "triplane_corner_values",
]

GRID, MLP, POS, PAD = 0, 1, 2, 3
"""Token kinds (``PAD`` only appears in batches padded by :func:`collate`)."""

SAMPLING_MODES = ("same", "subsample")


# --------------------------------------------------------------------------- the sequence
@dataclass
class TokenSequence:
    """A tokenised field, or a batch of them (then every tensor has a leading ``B``).

    Attributes:
        tokens: ``[C, T]`` float token values (T = ``token_dim``).
        mask: ``[C]`` bool, True for real tokens (grid, MLP, [POS]), False for batch padding.
        kind: ``[C]`` long, :data:`GRID` / :data:`MLP` / :data:`POS` / :data:`PAD`.
        xyz: ``[C, 3]`` sample point in [0, 1]^3 for grid tokens, 0 otherwise.
        nlk: ``[C, 3]`` long SANE position ``[n, l, k]`` (see the module docstring).
        valid: ``[C, T]`` bool, True where ``tokens`` holds real content.
    """

    tokens: Tensor
    mask: Tensor
    kind: Tensor
    xyz: Tensor
    nlk: Tensor
    valid: Tensor

    @property
    def batched(self) -> bool:
        return self.tokens.dim() == 3

    def __len__(self) -> int:
        """Sequence length ``C``."""
        return self.tokens.shape[-2]

    def to(self, device: torch.device | str) -> TokenSequence:
        """A copy with every tensor on ``device``."""
        return TokenSequence(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    def replace(self, **changes: Tensor) -> TokenSequence:
        return replace(self, **changes)

    def counts(self) -> dict[str, int]:
        """Number of tokens per kind (unbatched sequences)."""
        if self.batched:
            raise ValueError("counts() is defined for one sequence, not a batch")
        return {
            name: int((self.kind == k).sum())
            for name, k in (("grid", GRID), ("mlp", MLP), ("pos", POS))
        }


def collate(seqs: Sequence[TokenSequence]) -> TokenSequence:
    """Stack sequences into a batch ``[B, C_max, ...]``, padding shorter ones at the end
    (tokens 0, ``mask`` False, ``kind`` :data:`PAD`, ``valid`` False, ``xyz`` / ``nlk`` 0).
    """
    if not seqs:
        raise ValueError("collate needs at least one TokenSequence")
    if any(s.batched for s in seqs):
        raise ValueError("collate takes unbatched sequences ([C, ...] tensors)")
    c_max = max(len(s) for s in seqs)
    fill = {"tokens": 0, "mask": False, "kind": PAD, "xyz": 0, "nlk": 0, "valid": False}
    out = {}
    for name, value in fill.items():
        parts = []
        for s in seqs:
            t = getattr(s, name)
            pad = c_max - t.shape[0]
            if pad:
                t = torch.cat([t, t.new_full((pad, *t.shape[1:]), value)], 0)
            parts.append(t)
        out[name] = torch.stack(parts)
    return TokenSequence(**out)


# --------------------------------------------------------------------------- point sampling
def sample_points(
    n_points: int,
    generator: torch.Generator | None = None,
    n_views: int = 1,
    sampling: str = "same",
    oversample: int = 4,
) -> Tensor:
    """Points uniform in [0, 1]^3 for the grid tokens of ``n_views`` views of one object.

    Args:
        n_points: points per view ``P``.
        generator: torch generator; the same seed gives the same points.
        n_views: number of views (e.g. 2: original and rotated NeRF).
        sampling: ``"same"``: one draw shared by every view (the study's easy setting);
            ``"subsample"``: one pool of ``oversample * P`` points, each view takes its own random
            ``P`` of them, so two views share ``P / oversample`` points on average.
        oversample: pool size factor for ``"subsample"`` (the study shared about 1/4: 4).
    Returns:
        ``[n_views, P, 3]``.
    """
    if sampling not in SAMPLING_MODES:
        raise ValueError(f"sampling must be one of {SAMPLING_MODES}, got {sampling!r}")
    if n_points < 0 or n_views < 1:
        raise ValueError(f"need n_points >= 0 and n_views >= 1, got {n_points}, {n_views}")
    if sampling == "same":
        pts = torch.rand(n_points, 3, generator=generator)
        return pts[None].expand(n_views, n_points, 3).clone()
    if oversample < 1:
        raise ValueError(f"oversample must be >= 1, got {oversample}")
    pool = torch.rand(oversample * n_points, 3, generator=generator)
    keys = torch.rand(n_views, pool.shape[0], generator=generator)
    pick = keys.argsort(dim=1)[:, :n_points]  # a random P-subset per view
    return pool[pick]


# --------------------------------------------------------------------------- grid values
def hash_corner_values(field: HashGridField, x01: Tensor) -> Tensor:
    """Table entries at the 8 cell corners of every level, tcnn-exact: ``[P, L, 8, F]``.

    Entry ``[p, l, c]`` is ``table[offsets[l] + hash_grid_indices(corner)]`` for corner
    ``floor(scale_l * x + 0.5) + CORNER_OFFSETS[c]`` (float32 ``fmaf`` position, as tcnn).
    """
    # same position arithmetic as hash_grid_encoding: x * scale exact in float64, one rounding
    pos = x01.double()[:, None, :] * field.scales.double()[None, :, None] + 0.5
    pos = pos.float() if x01.dtype != torch.float64 else pos  # [P, L, 3]
    corners = torch.floor(pos).long()[:, :, None, :] + CORNER_OFFSETS.to(x01.device)  # [P,L,8,3]
    idx = hash_grid_indices(
        corners.transpose(1, 2), field.resolutions, field.table_sizes, field.dense
    )  # [P, 8, L]
    rows = (idx + field.offsets).transpose(1, 2)  # [P, L, 8]
    return field.table.detach()[rows]  # [P, L, 8, F]


def triplane_corner_values(field: TriplaneField, x01: Tensor) -> Tensor:
    """Texels of the bilinear cell on each plane: ``[P, 3, 4, C]``, corner ``c = du + 2 dv``.

    With ``align_corners=True`` over [-1, 1] the texel coordinate of ``x01`` is ``x01 (R - 1)``;
    the cell's lower corner is clamped to ``R - 2`` so a point on the far face still has a cell.
    """
    planes = field.triplane.detach()  # [3, R, R, C]
    res = planes.shape[1]
    pix = x01.to(planes.dtype) * (res - 1)  # [P, 3]
    lo = torch.floor(pix).long().clamp(0, max(res - 2, 0))  # [P, 3]
    du = torch.tensor([0, 1, 0, 1], device=x01.device)
    dv = torch.tensor([0, 0, 1, 1], device=x01.device)
    out = []
    for k, (a, b) in enumerate(TRIPLANE_AXES):  # u = axis a (column), v = axis b (row)
        cols = lo[:, a, None] + du  # [P, 4]
        rows = lo[:, b, None] + dv
        out.append(planes[k][rows, cols])  # [P, 4, C]
    return torch.stack(out, 1)


def grid_token_values(field: RadianceField, x01: Tensor) -> Tensor:
    """Raw (unpadded) grid values per point: ``[P, 8 L F]`` (hash), ``[P, 12 C]`` (tri-plane),
    ``[P, 0]`` (MLP)."""
    if isinstance(field, HashGridField):
        return hash_corner_values(field, x01).reshape(x01.shape[0], -1)
    if isinstance(field, TriplaneField):
        return triplane_corner_values(field, x01).reshape(x01.shape[0], -1)
    return x01.new_zeros(x01.shape[0], 0)


def grid_values_per_point(spec: FieldSpec) -> int:
    """Length of :func:`grid_token_values` rows for a spec."""
    if isinstance(spec, HashGridSpec):
        return 8 * spec.n_levels * spec.n_features_per_level
    if isinstance(spec, TriplaneSpec):
        return 12 * spec.channels
    return 0


# --------------------------------------------------------------------------- MLP tokens
def _blocks(rows: int, cols: int, neurons_per_token: int, token_dim: int) -> tuple[int, int]:
    col_width = token_dim // neurons_per_token
    return math.ceil(rows / neurons_per_token), math.ceil(cols / col_width)


def mlp_token_count(
    shapes: Sequence[tuple[int, int]], neurons_per_token: int = 4, token_dim: int = 256
) -> int:
    """Number of MLP tokens for weight matrices of ``shapes`` ``(out, in)``:
    ``sum ceil(out / 4) * ceil(in / 64)`` (the study's ``sum ceil(out / 4)`` when ``in <= 64``).
    """
    return sum(math.prod(_blocks(o, i, neurons_per_token, token_dim)) for o, i in shapes if o and i)


def tokenize_weights(
    weights: Sequence[Tensor], neurons_per_token: int = 4, token_dim: int = 256
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Cut weight matrices ``[out, in]`` into ``neurons_per_token`` x ``token_dim /
    neurons_per_token`` blocks (row = output neuron), zero-padded, one token per block.

    Returns:
        ``tokens [M, T]``, ``valid [M, T]`` (False on padding), ``layer [M]`` (matrix index) and
        ``index [M]`` (block index within its matrix, row-block-major).
    """
    if token_dim % neurons_per_token:
        raise ValueError(
            f"token_dim ({token_dim}) must be a multiple of neurons_per_token ({neurons_per_token})"
        )
    cw = token_dim // neurons_per_token
    toks, valid, layer, index = [], [], [], []
    for i, w in enumerate(weights):
        w = w.detach()
        o, n_in = w.shape
        rb, cb = _blocks(o, n_in, neurons_per_token, token_dim)
        padded = w.new_zeros(rb * neurons_per_token, cb * cw)
        padded[:o, :n_in] = w
        ok = torch.zeros(padded.shape, dtype=torch.bool, device=w.device)
        ok[:o, :n_in] = True
        # [rb, npt, cb, cw] -> [rb, cb, npt, cw] -> one row per (row block, column block)
        toks.append(
            padded.reshape(rb, neurons_per_token, cb, cw).transpose(1, 2).reshape(-1, token_dim)
        )
        valid.append(
            ok.reshape(rb, neurons_per_token, cb, cw).transpose(1, 2).reshape(-1, token_dim)
        )
        layer.append(torch.full((rb * cb,), i, dtype=torch.long, device=w.device))
        index.append(torch.arange(rb * cb, device=w.device))
    if not toks:
        empty = torch.zeros(0, token_dim)
        return empty, empty.bool(), empty[:, 0].long(), empty[:, 0].long()
    return torch.cat(toks), torch.cat(valid), torch.cat(layer), torch.cat(index)


# --------------------------------------------------------------------------- the tokenizer
@dataclass(frozen=True)
class Tokenizer:
    """Field -> :class:`TokenSequence` (see the module docstring for the layout).

    Attributes:
        n_points: sampled points = grid tokens per grid field (the study: 380).
        token_dim: token width ``T`` (256).
        n_pos: number of [POS] tokens (10).
        neurons_per_token: MLP output neurons per token (4).
        sampling: ``"same"`` or ``"subsample"`` (see :func:`sample_points`), for
            :meth:`tokenize_views`.
        oversample: pool factor of ``"subsample"``.
        include_padded_outputs: also tokenise tcnn's padded output rows (default False: they
            never influence the field).
        resample: a flag for the training loops that use this tokenizer: draw fresh points
            for every training batch (an augmentation: the model never sees one point set
            twice, so it cannot tie a token's index to a place or memorise a field by the
            values at fixed points) and read fixed points only for evaluation. See
            :mod:`graphnerf.models.sane` for the measurement behind the default (True).
    """

    n_points: int = 380
    token_dim: int = 256
    n_pos: int = 10
    neurons_per_token: int = 4
    sampling: str = "same"
    oversample: int = 4
    include_padded_outputs: bool = False
    resample: bool = True

    def __post_init__(self) -> None:
        if self.sampling not in SAMPLING_MODES:
            raise ValueError(f"sampling must be one of {SAMPLING_MODES}, got {self.sampling!r}")
        if self.token_dim % self.neurons_per_token:
            raise ValueError("token_dim must be a multiple of neurons_per_token")
        if self.n_points < 0 or self.n_pos < 0:
            raise ValueError("n_points and n_pos must be >= 0")

    # ------------------------------------------------------------------ layout
    def mlp_shapes(self, spec: FieldSpec) -> list[tuple[int, int]]:
        """Shapes ``(out, in)`` of the tokenised matrices (output rows cut to the real 4)."""
        w = spec.mlp_widths
        shapes = list(zip(w[1:], w[:-1], strict=True))
        if not self.include_padded_outputs:
            shapes[-1] = (MLP_OUTPUTS, shapes[-1][1])
        return shapes

    def layout(self, spec: FieldSpec) -> dict[str, int]:
        """Token counts of a spec: grid, mlp, pos, total, and values per grid point."""
        per_point = grid_values_per_point(spec)
        grid = self.n_points * math.ceil(per_point / self.token_dim) if per_point else 0
        mlp = mlp_token_count(self.mlp_shapes(spec), self.neurons_per_token, self.token_dim)
        return {
            "grid": grid,
            "mlp": mlp,
            "pos": self.n_pos,
            "total": grid + mlp + self.n_pos,
            "grid_values": per_point,
        }

    def sample(self, generator: torch.Generator | None = None, n_views: int = 1) -> Tensor:
        """``[n_views, n_points, 3]`` points with this tokenizer's sampling mode."""
        return sample_points(self.n_points, generator, n_views, self.sampling, self.oversample)

    # ------------------------------------------------------------------ tokenising
    @torch.no_grad()
    def __call__(
        self,
        field: RadianceField,
        points: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> TokenSequence:
        """Tokenise one field.

        Args:
            field: any :class:`RadianceField`.
            points: ``[P, 3]`` sample points in [0, 1]^3 (normalised coordinates); default
                ``n_points`` uniform points drawn from ``generator``.
            generator: used when ``points`` is None.
        """
        dev = field.aabb.device
        T = self.token_dim
        parts: list[dict[str, Tensor]] = []
        values = x01 = None
        if isinstance(field, HashGridField | TriplaneField):
            x01 = self.sample(generator)[0] if points is None else points
            x01 = x01.to(device=dev, dtype=torch.float32)
            values = grid_token_values(field, x01).float()  # [P, V]
        if values is not None and values.shape[0]:
            P, V = values.shape
            m = math.ceil(V / T)
            padded = values.new_zeros(P, m * T)
            padded[:, :V] = values
            ok = torch.zeros(P, m * T, dtype=torch.bool, device=dev)
            ok[:, :V] = True
            parts.append(
                {
                    "tokens": padded.reshape(P * m, T),
                    "valid": ok.reshape(P * m, T),
                    "kind": torch.full((P * m,), GRID, dtype=torch.long, device=dev),
                    "xyz": x01.repeat_interleave(m, 0),
                    "l": torch.arange(m, device=dev).repeat(P),
                    "k": torch.arange(P, device=dev).repeat_interleave(m),
                }
            )
        weights = list(field.mlp.weights)
        if not self.include_padded_outputs:
            weights[-1] = weights[-1][:MLP_OUTPUTS]
        toks, ok, layer, index = tokenize_weights(weights, self.neurons_per_token, T)
        M = toks.shape[0]
        parts.append(
            {
                "tokens": toks.float(),
                "valid": ok,
                "kind": torch.full((M,), MLP, dtype=torch.long, device=dev),
                "xyz": toks.new_zeros(M, 3).float(),
                "l": layer,
                "k": index,
            }
        )
        parts.append(
            {
                "tokens": torch.zeros(self.n_pos, T, device=dev),
                "valid": torch.zeros(self.n_pos, T, dtype=torch.bool, device=dev),
                "kind": torch.full((self.n_pos,), POS, dtype=torch.long, device=dev),
                "xyz": torch.zeros(self.n_pos, 3, device=dev),
                "l": torch.zeros(self.n_pos, dtype=torch.long, device=dev),
                "k": torch.arange(self.n_pos, device=dev),
            }
        )
        cat = {key: torch.cat([p[key] for p in parts]) for key in parts[0]}
        C = cat["tokens"].shape[0]
        nlk = torch.stack([torch.arange(C, device=dev), cat["l"], cat["k"]], 1)
        return TokenSequence(
            tokens=cat["tokens"],
            mask=torch.ones(C, dtype=torch.bool, device=dev),
            kind=cat["kind"],
            xyz=cat["xyz"],
            nlk=nlk,
            valid=cat["valid"],
        )

    def tokenize_views(
        self,
        fields_: Sequence[RadianceField],
        generator: torch.Generator | None = None,
    ) -> list[TokenSequence]:
        """Tokenise several views of one object (e.g. original and rotated NeRF) with points
        drawn once by :meth:`sample` (``"same"``: identical points; ``"subsample"``: per-view
        subsets of a shared pool)."""
        pts = self.sample(generator, n_views=len(fields_))
        return [self(f, pts[i]) for i, f in enumerate(fields_)]

    @classmethod
    def from_config(cls, cfg: Any) -> Tokenizer:
        """Build from a mapping (e.g. ``load_config("model/sane").model.tokens``)."""
        return cls(**{k: cfg[k] for k in cfg})
