"""Feature lifting for parameter graphs: scalar edge values and node attributes -> vectors.

Edge values
-----------
Parameter values span five orders of magnitude across families and training states: MLP weights
have a standard deviation of about 0.1, tri-plane cells about 1e-3 and hash entries about 6e-5 at
tiny-cuda-nn initialisation, while fitted hash tables reach values of order 1. A fixed Fourier
embedding of the raw value would see every freshly initialised hash table as "all zero".
:class:`EdgeValueLifting` therefore normalises each value by the root mean square of its
*group* — the edges of the same graph and the same edge type (``WEIGHT``, ``HASH``, ...) — and
keeps the scale as a separate feature::

    rms_g  = sqrt(mean_{edges of group g} v^2)           (per graph and edge type)
    u      = v / max(rms_g, eps)
    lift(v) = [u, sin(w_k s_t u), cos(w_k s_t u) for k < n_fourier, log10(max(rms_g, eps)) / 4]

with fixed frequencies ``w_k = 2^(k - 2)`` (0.25 ... for ``u`` of order 1) and a learned
per-edge-type log-scale ``log s_t`` (initialised 0) that lets training move the frequency band of
each parameter kind. The group statistics use only per-graph, per-type sums, so they are
invariant to any permutation of nodes, edges or hidden neurons and to how graphs are batched.
With ``normalize=False`` the raw value is used (``u = v``, scale feature 0) and only the learned
scale adapts.

Node attributes
---------------
:class:`NodeLifting` maps the schema's ``x`` columns (layer, order, level, log_res, has_pos; see
:mod:`graphnerf.graph.schema`) and Fourier features of ``node_pos`` through a small MLP and adds
an embedding of ``node_type``. None of these depends on the index of a hidden neuron (hidden
neurons have ``order`` = -1 and no position), which is what makes the encoder invariant to
hidden-neuron permutations.

The schema gives an ``order`` to some neurons whose index carries no meaning either: the
channel nodes of a tri-plane and the feature nodes of a hash level (permuting the channels of
all planes, or the features of a level, together with the matching columns of the first weight
matrix leaves the field unchanged), padded MLP inputs (all fed the same constant) and padded
outputs (read by nothing). :data:`ORDER_FREE_TYPES` lists these node types; their ``order``
column is replaced by -1 ("not applicable") before lifting, so the encoder is invariant to those
permutations as well. ``node_order`` itself is untouched (``from_graph`` needs it).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch_geometric.utils import scatter

from ..graph.schema import X_COLUMNS, NodeType
from .edge_ops import EdgeLift, EdgeLiftFiLM, lift_features

__all__ = [
    "ORDER_FREE_TYPES",
    "EdgeValueLifting",
    "NodeLifting",
    "fourier_features",
    "group_rms",
    "lift_features",
]

#: node types whose index within their layer is not meaningful (module docstring)
ORDER_FREE_TYPES: tuple[NodeType, ...] = (
    NodeType.GRID_FEATURE,
    NodeType.PAD_INPUT,
    NodeType.PAD_OUTPUT,
)
_ORDER_COL = X_COLUMNS.index("order")


def fourier_features(x: Tensor, freqs: Tensor) -> Tensor:
    """``[..., d] -> [..., 2 * d * len(freqs)]``: ``sin`` then ``cos`` of every ``x * freq``."""
    arg = (x.unsqueeze(-1) * freqs).flatten(-2)
    return torch.cat([torch.sin(arg), torch.cos(arg)], dim=-1)


def group_rms(values: Tensor, group: Tensor, n_groups: int) -> Tensor:
    """Root mean square of ``values [E]`` per group id ``group [E]`` (0 for empty groups)."""
    ms = scatter(values.square(), group, dim=0, dim_size=n_groups, reduce="mean")
    return ms.sqrt()


class EdgeValueLifting(nn.Module):
    """Scalar parameter values ``[E]`` -> edge features ``[E, out_dim]`` (module docstring).

    Args:
        n_types: number of edge types (rows of the per-type log-scale).
        n_fourier: number of frequencies ``w_k = 2^(k - 2)``, ``k < n_fourier``.
        out_dim: output width.
        normalize: divide values by their (graph, type) root mean square.
        eps: floor of the group rms (a group of zeros stays zero instead of dividing by 0).
    """

    def __init__(
        self,
        n_types: int,
        n_fourier: int,
        out_dim: int,
        normalize: bool = True,
        eps: float = 1e-12,
    ) -> None:
        super().__init__()
        self.n_types = n_types
        self.normalize = normalize
        self.eps = eps
        self.register_buffer(
            "freqs", 2.0 ** (torch.arange(n_fourier, dtype=torch.float32) - 2.0), persistent=False
        )
        self.log_scale = nn.Parameter(torch.zeros(n_types))
        self.in_dim = 2 + 2 * n_fourier
        self.proj = nn.Linear(self.in_dim, out_dim)

    def normalised(
        self, value: Tensor, edge_type: Tensor, edge_graph: Tensor, n_graphs: int
    ) -> tuple[Tensor, Tensor]:
        """``(u, scale)``: the values divided by their group rms and ``log10(rms) / 4``
        (``(value, 0)`` without normalisation), both ``[E]``."""
        if not self.normalize:
            return value, torch.zeros_like(value)
        group = edge_graph * self.n_types + edge_type
        rms = group_rms(value, group, n_graphs * self.n_types).clamp_min(self.eps)
        return value / rms[group], (torch.log10(rms) / 4.0)[group]

    def features(
        self, value: Tensor, edge_type: Tensor, edge_graph: Tensor, n_graphs: int
    ) -> Tensor:
        """The lifted features ``[E, 2 + 2 n_fourier]`` before the linear projection."""
        u, scale = self.normalised(value, edge_type, edge_graph, n_graphs)
        return lift_features(u, scale, self.log_scale.exp()[edge_type], self.freqs)

    def forward(
        self,
        value: Tensor,
        edge_type: Tensor,
        edge_graph: Tensor,
        n_graphs: int,
        film: Tensor | None = None,
        src: Tensor | None = None,
    ) -> Tensor:
        """Args: ``value [E]``, ``edge_type [E]``, ``edge_graph [E]`` (graph id of each edge);
        optionally a FiLM table ``film [U, 2 out_dim]`` (``[gamma, beta]`` per node row) and
        the row ``src [E]`` of each edge's source: the output is then ``proj(lift(v)) * (1 +
        gamma[src]) + beta[src]``.

        In float32 the features, the projection (and the FiLM) are one autograd function
        (:class:`~graphnerf.models.edge_ops.EdgeLift` / ``EdgeLiftFiLM``) that never builds
        the ``[E, 2 + 2 n_fourier]`` features (nor ``film[src]``) at full size; under
        autocast, plain ops.
        """
        if torch.is_autocast_enabled(value.device.type):
            out = self.proj(self.features(value, edge_type, edge_graph, n_graphs))
            if film is None:
                return out
            gamma, beta = film.index_select(0, src).split(out.size(1), dim=1)
            return out * (1 + gamma) + beta
        u, scale = self.normalised(value, edge_type, edge_graph, n_graphs)
        w, b = self.proj.weight, self.proj.bias
        s = self.log_scale.exp()
        if film is None:
            return EdgeLift.apply(u, scale, edge_type, s, self.freqs, w, b)
        film = film.to(w.dtype).contiguous()
        return EdgeLiftFiLM.apply(u, scale, edge_type, s, self.freqs, w, b, film, src)


class NodeLifting(nn.Module):
    """``x [N, x_dim]``, ``node_pos [N, 3]``, ``node_type [N]`` -> node features ``[N, out_dim]``.

    ``MLP([x, sin/cos(pi 2^k node_pos)]) + Embedding(node_type)``, ``k < n_pos_fourier``, with
    the ``order`` column of ``x`` set to -1 for the node types in ``order_free``.
    """

    def __init__(
        self,
        x_dim: int,
        n_pos_fourier: int,
        n_types: int,
        out_dim: int,
        order_free: tuple[int, ...] = ORDER_FREE_TYPES,
    ) -> None:
        super().__init__()
        mask = torch.zeros(n_types, dtype=torch.bool)
        mask[list(order_free)] = True
        self.register_buffer("order_free", mask, persistent=False)
        self.register_buffer(
            "freqs",
            math.pi * 2.0 ** torch.arange(n_pos_fourier, dtype=torch.float32),
            persistent=False,
        )
        in_dim = x_dim + 6 * n_pos_fourier
        self.mlp = nn.Sequential(nn.Linear(in_dim, out_dim), nn.SiLU(), nn.Linear(out_dim, out_dim))
        self.type_embedding = nn.Embedding(n_types, out_dim)

    def attributes(self, x: Tensor, node_type: Tensor) -> Tensor:
        """``x`` with the ``order`` column set to -1 for the order-free node types: the node
        attributes the lifting actually reads (idempotent)."""
        free = self.order_free[node_type]
        if bool(free.any()):
            x = x.clone()
            x[free, _ORDER_COL] = -1.0
        return x

    def forward(self, x: Tensor, node_pos: Tensor, node_type: Tensor) -> Tensor:
        x = self.attributes(x, node_type)
        feats = torch.cat([x, fourier_features(node_pos, self.freqs)], dim=-1)
        return self.mlp(feats) + self.type_embedding(node_type)
