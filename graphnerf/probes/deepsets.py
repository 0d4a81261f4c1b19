"""DeepSets baseline over a parameter graph's edges: what a model sees without message passing.

Each edge ``j -> i`` becomes the feature vector ``[u, onehot(edge_type), has_pos(j),
sin/cos(pi 2^k node_pos(j)) for k < n_freq]`` where ``u`` is the edge value divided by the root
mean square of its (graph, edge type) group, ``has_pos`` the source's ``x`` column ``has_pos``
and ``node_pos`` the source node's position (zeros where it has none: hidden and output neurons,
hashed-level entries). That is all it sees: no node types besides the edge type, no
connectivity. The model is ``z = rho(mean_edges phi(edge feature))`` with ``phi`` an MLP of
``depth`` SiLU layers of width ``width`` and ``rho`` one Linear to ``embedding_dim``. It cannot
multiply value and position unless ``phi`` learns to; ``products=True`` appends ``u *
Fourier(pos)`` explicitly (the variant the issue contrasts).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch_geometric.utils import scatter

from ..fields import RadianceField
from ..graph import to_graph
from ..graph.schema import X_COLUMNS, EdgeType

__all__ = ["DeepSetsProbe", "edge_set_features"]

_HAS_POS = X_COLUMNS.index("has_pos")


def edge_set_features(data, n_freq: int = 4, products: bool = False) -> Tensor:
    """The per-edge features of the module docstring for one graph: ``[E, d]``."""
    src = data.edge_index[0]
    value = data.edge_attr.reshape(-1).float()
    etype = data.edge_type.long()
    n_types = len(EdgeType)
    ms = scatter(value.square(), etype, dim=0, dim_size=n_types, reduce="mean")
    u = value / ms.sqrt().clamp_min(1e-12)[etype]
    freqs = math.pi * 2.0 ** torch.arange(n_freq, dtype=torch.float32)
    pos = data.node_pos[src].float()
    arg = (pos[:, :, None] * freqs).flatten(1)
    four = torch.cat([torch.sin(arg), torch.cos(arg)], 1)
    parts = [
        u[:, None],
        torch.nn.functional.one_hot(etype, n_types).float(),
        data.x[src, _HAS_POS : _HAS_POS + 1].float(),
        four,
    ]
    if products:
        parts.append(u[:, None] * four)
    return torch.cat(parts, 1)


class DeepSetsProbe:
    """:class:`~graphnerf.probes.runner.ProbeModel` of the DeepSets baseline (module docstring)."""

    def __init__(
        self,
        width: int = 128,
        depth: int = 3,
        embedding_dim: int = 128,
        n_freq: int = 4,
        products: bool = False,
    ) -> None:
        self.n_freq, self.products = n_freq, products
        d_in = 1 + len(EdgeType) + 1 + 6 * n_freq + (6 * n_freq if products else 0)
        layers: list[nn.Module] = []
        for i in range(depth):
            layers += [nn.Linear(d_in if i == 0 else width, width), nn.SiLU()]
        self.phi = nn.Sequential(*layers)
        self.rho = nn.Linear(width, embedding_dim)
        self.module = nn.ModuleDict({"phi": self.phi, "rho": self.rho})
        self.embedding_dim = embedding_dim

    def prepare(self, fields: Sequence[RadianceField]) -> list[Tensor]:
        return [edge_set_features(to_graph(f), self.n_freq, self.products) for f in fields]

    def embed(self, items: Sequence[Tensor]) -> Tensor:
        feats = torch.cat(list(items))
        graph = torch.repeat_interleave(
            torch.arange(len(items)), torch.tensor([t.size(0) for t in items])
        )
        pooled = scatter(self.phi(feats), graph, dim=0, dim_size=len(items), reduce="mean")
        return self.rho(pooled)
