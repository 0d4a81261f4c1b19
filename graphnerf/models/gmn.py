"""`GMNEncoder`: a graph metanetwork that embeds parameter graphs of any NeRF architecture.

Input: a parameter graph from :func:`graphnerf.to_graph` (or a ``Batch`` of them); output: one
embedding per graph, ``[B, embedding_dim]``. ``h`` are node states (width ``hidden``), ``e`` edge
states (width ``edge_hidden``), ``j -> i`` an edge from source ``j`` to target ``i``.

1. **Lifting** (:mod:`graphnerf.models.features`). Edges: ``e = Linear(lift(v)) +
   Emb(edge_type)``, where ``lift`` divides the parameter value ``v`` by the root mean square
   of its (graph, edge type) group and appends Fourier features and ``log10(rms)``: freshly
   initialised hash tables (~6e-5), tri-planes (~1e-3) and MLP weights (~0.1) all reach the
   network at unit scale, with their absolute scale kept as one feature. Nodes: ``h =
   MLP([x, Fourier(node_pos)]) + Emb(node_type)``.
2. **K residual pre-LayerNorm blocks** (:class:`GMNBlock`, a PyG ``MessagePassing``)::

       e_ij <- e_ij + W2 silu(W1 [LN(h_j), LN(h_i), LN(e_ij)] + b1)    edge_updater/edge_update
       m_i   = LN_m(mean_{j -> i} e_ij)                                 propagate: message,
       h_i  <- h_i + MLP([LN(h_i), m_i])      (i with incoming edges)      aggregate, update

   * ``W1`` is linear in the concatenation, so it is evaluated as ``A LN(h)`` and ``B LN(h) +
     b1`` once per *node*, gathered at ``j`` and ``i``, plus ``C LN(e_ij)``: the same function
     as an MLP on the concatenated ``[E, 2 hidden + edge_hidden]`` input, without building it.
   * Aggregation is a mean by default: in-degrees range from 16 (hidden neurons of a small MLP)
     to 12,288 (channel nodes of a 64x64 tri-plane), so a sum would change scale by three
     orders of magnitude between architectures. ``aggr`` takes any PyG aggregation name or a
     list (concatenated), e.g. ``["mean", "max"]``. The LayerNorm of the messages is applied
     after aggregation, to R node rows instead of E edge rows.
   * Only nodes with at least one incoming edge are updated. In the directed graph the others
     are hash entries, plane cells and MLP inputs (85-97% of all nodes): they never receive a
     message, so ``MLP([LN(h), 0])`` would only re-encode their fixed attributes again in every
     block (their lifting is already an MLP of those attributes). Their edge-MLP projections
     ``A LN(h)``, ``B LN(h)`` for all K blocks come from one matrix product
     (:meth:`GMNBlock.static_projection`). With ``reverse_edges`` every node receives messages
     and is updated.
3. **DeepSets readout**: ``z = rho([mean_i phi_n(h_i), mean_ij phi_e(e_ij)])`` per graph, the
   node mean over the updated nodes (the states of the others depend on the architecture only,
   not on the parameters), the edge mean over all edges; ``phi`` = LN, Linear, SiLU; ``rho`` =
   LN, Linear, SiLU, Linear; means with ``torch_geometric.utils.scatter`` over the batch vector
   (``batch[edge_index[0]]`` for edges).

Invariances, by construction: every per-node and per-edge operation is row-wise, every reduction
(group rms, aggregation, readout) is a mean over a set, the set of updated nodes is defined by
in-degree, and no input depends on the index of a hidden neuron (the schema gives hidden neurons
``node_order`` -1, no position and identical ``x`` rows within a layer). Hence the embedding does
not change when hidden neurons are permuted, when nodes are renumbered, when edges are listed in
another order, or when a graph is batched with others (up to float rounding of the reductions,
~1e-7 relative). ``tests/test_gmn.py`` checks each, together with a non-invariant probe that
does move.

Directed by default: information flows from hash entries / plane cells / inputs towards the
outputs; every edge state sees both endpoints, so the edge readout covers the whole graph.
``reverse_edges=True`` adds each edge reversed with its own type embedding (types ``T + t``),
doubling the edge work.

Cost: edges outnumber nodes 5-60x and the ``[E, edge_hidden]`` edge stream dominates time and
memory; see :class:`GMNConfig` for the choice of ``edge_hidden`` and ``graphnerf.perf.encoders``
for measurements. Memory options: ``edge_chunk`` evaluates the edge updates and the edge readout
on chunks of that many edges (bounding the temporaries); with ``checkpoint`` as well, each chunk
is recomputed in the backward pass, so per block only the edge states themselves are kept;
``checkpoint`` alone recomputes whole blocks (keeps block inputs only). ``bf16`` runs under
autocast to bfloat16 (matmuls in bf16; the residual streams, the value normalisation and the
aggregations stay float32); the output is float32.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint
from torch_geometric.data import Batch, Data
from torch_geometric.nn import MessagePassing
from torch_geometric.utils import scatter

from ..config import dataclass_from_mapping
from ..graph.schema import X_COLUMNS, EdgeType, NodeType
from .features import EdgeValueLifting, NodeLifting

__all__ = ["DeepSetsReadout", "GMNBlock", "GMNConfig", "GMNEncoder", "GraphStates"]

_AGGRS = ("mean", "sum", "add", "max", "min", "std", "var")


@dataclass(frozen=True)
class GMNConfig:
    """Hyperparameters of :class:`GMNEncoder`; defaults equal ``configs/model/gmn.yaml``.

    Attributes:
        hidden: node state width (and width of the node MLPs and of the readout).
        edge_hidden: edge state width (and width of the edge MLP). Edges outnumber nodes 5-60x
            (a hash field: 43k edges, a 64^2 tri-plane: 225k), so the edge stream dominates
            time and memory. 16 by default: on the 8-graph benchmark batch (340k edges) a
            training step took 3x longer at 32 than at 16 (4.3 vs 1.4 s on one thread,
            ``python -m graphnerf.perf.encoders``), more than the 2x in bytes: one ``[E, 16]``
            float32 tensor (22 MB) fits the 32 MB L3 cache of the benchmark CPU, ``[E, 32]``
            does not.
        n_blocks: number of residual message-passing blocks K.
        embedding_dim: output embedding size D.
        n_fourier: Fourier frequencies of the (normalised) edge values.
        n_pos_fourier: Fourier frequencies of ``node_pos``.
        normalize_values: divide edge values by their per-(graph, edge type) rms (and feed the
            log-rms as a feature); False feeds raw values.
        aggr: node aggregation of incoming edge messages: a PyG aggregation name or a list of
            names (outputs concatenated).
        reverse_edges: add every edge reversed with its own type embedding.
        edge_chunk: process edge updates and the edge readout in chunks of this many edges;
            None processes all edges at once.
        checkpoint: recompute in the backward pass (``torch.utils.checkpoint``): each edge
            chunk when ``edge_chunk`` is set, else each block.
        bf16: run under autocast to bfloat16.
    """

    hidden: int = 128
    edge_hidden: int = 16
    n_blocks: int = 4
    embedding_dim: int = 1024
    n_fourier: int = 8
    n_pos_fourier: int = 4
    normalize_values: bool = True
    aggr: str | tuple[str, ...] = "mean"
    reverse_edges: bool = False
    edge_chunk: int | None = None
    checkpoint: bool = False
    bf16: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.aggr, list | tuple):
            object.__setattr__(self, "aggr", tuple(str(a) for a in self.aggr))
        for name in ("hidden", "edge_hidden", "n_blocks", "embedding_dim"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"GMNConfig.{name} must be a positive integer, got {v!r}")
        for name in ("normalize_values", "reverse_edges", "checkpoint", "bf16"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(
                    f"GMNConfig.{name} must be true or false, got {getattr(self, name)!r}"
                )
        for name in ("n_fourier", "n_pos_fourier"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"GMNConfig.{name} must be an integer >= 0, got {v!r}")
        if self.edge_chunk is not None and (
            isinstance(self.edge_chunk, bool)
            or not isinstance(self.edge_chunk, int)
            or self.edge_chunk < 1
        ):
            raise ValueError(
                f"GMNConfig.edge_chunk must be None or a positive integer, got {self.edge_chunk!r}"
            )
        aggrs = self.aggr_list
        if not aggrs or any(a not in _AGGRS for a in aggrs):
            raise ValueError(f"GMNConfig.aggr must be one or more of {_AGGRS}, got {self.aggr!r}")

    @property
    def aggr_list(self) -> tuple[str, ...]:
        return (self.aggr,) if isinstance(self.aggr, str) else tuple(self.aggr)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if isinstance(d["aggr"], tuple):
            d["aggr"] = list(d["aggr"])
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> GMNConfig:
        """Build from a mapping of field names (an optional ``name: gmn`` key is accepted)."""
        if not isinstance(d, Mapping):
            raise TypeError(f"GMNConfig.from_dict takes a mapping, got {type(d).__name__}")
        d = dict(d)
        name = d.pop("name", "gmn")
        if name != "gmn":
            raise ValueError(f"config is for model {name!r}, not 'gmn'")
        return dataclass_from_mapping(cls, d, "GMNConfig")

    @classmethod
    def from_omegaconf(cls, cfg: Any) -> GMNConfig:
        """Build from an OmegaConf node, e.g. ``load_config("model/gmn").model``."""
        from omegaconf import OmegaConf

        d = OmegaConf.to_container(cfg, resolve=True)
        if not isinstance(d, Mapping):
            raise TypeError(f"expected a mapping config node, got {type(d).__name__}")
        return cls.from_dict(d)


def _mlp(d_in: int, d_hidden: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, d_hidden), nn.SiLU(), nn.Linear(d_hidden, d_out))


class GMNBlock(MessagePassing):
    """One residual pre-LayerNorm edge + node update (equations in the module docstring).

    Node states are passed as ``hr``, the states of the R nodes that receive messages (the
    others keep their lifted states, see :meth:`static_projection`);
    ``forward(hr [R, hidden], e [E, edge_hidden], edge_index, receivers [R], ab_static) ->
    (hr', e')``.
    """

    def __init__(
        self,
        hidden: int,
        edge_hidden: int,
        aggr: str | Sequence[str] = "mean",
        edge_chunk: int | None = None,
        checkpoint_chunks: bool = False,
    ) -> None:
        aggr_arg = aggr if isinstance(aggr, str) else list(aggr)
        super().__init__(aggr=aggr_arg, flow="source_to_target", node_dim=0)
        n_aggr = 1 if isinstance(aggr, str) else len(aggr)
        self.edge_hidden = edge_hidden
        self.edge_chunk = edge_chunk
        self.checkpoint_chunks = checkpoint_chunks
        # edge MLP: W1 [LN(h_src), LN(h_dst), LN(e)] split into per-endpoint projections
        self.edge_norm_h = nn.LayerNorm(hidden)
        self.edge_norm_e = nn.LayerNorm(edge_hidden)
        self.edge_src = nn.Linear(hidden, edge_hidden, bias=False)
        self.edge_dst = nn.Linear(hidden, edge_hidden)  # carries b1
        self.edge_self = nn.Linear(edge_hidden, edge_hidden, bias=False)
        self.edge_out = nn.Linear(edge_hidden, edge_hidden, bias=False)
        # node update
        self.msg_norm = nn.LayerNorm(n_aggr * edge_hidden)
        self.node_norm = nn.LayerNorm(hidden)
        self.node_mlp = _mlp(hidden + n_aggr * edge_hidden, hidden, hidden)

    # ------------------------------------------------------------------ edges
    def edge_update(self, a_j: Tensor, b_i: Tensor, e: Tensor) -> Tensor:
        """New states ``e + W2 silu(a_j + b_i + C LN(e))`` of a set of edges, where ``a = A LN(h)``
        and ``b = B LN(h) + b1`` are per-node projections gathered at the source / target.

        The additions are fused into the matrix products (``addmm``): the edge stream is the
        largest tensor of the model and every separate elementwise pass over it costs time.
        """
        pre = torch.addmm(a_j + b_i, self.edge_norm_e(e), self.edge_self.weight.t())
        act = F.silu(pre)
        if torch.is_autocast_enabled(e.device.type):  # keep the residual stream in float32
            return e + F.linear(act, self.edge_out.weight).to(e.dtype)
        return torch.addmm(e, act, self.edge_out.weight.t())

    def _edge_branch(self, a: Tensor, b: Tensor, e: Tensor, edge_index: Tensor) -> Tensor:
        return self.edge_updater(edge_index, a=a, b=b, e=e, size=(a.size(0), b.size(0)))

    def _edge_new(self, a: Tensor, b: Tensor, e: Tensor, edge_index: Tensor) -> Tensor:
        n_edges, c = e.size(0), self.edge_chunk
        if c is None or n_edges <= c:
            return self._edge_branch(a, b, e, edge_index)
        use_ckpt = self.checkpoint_chunks and torch.is_grad_enabled()
        out = []
        for s in range(0, n_edges, c):
            args = (a, b, e[s : s + c], edge_index[:, s : s + c])
            if use_ckpt:
                out.append(checkpoint(self._edge_branch, *args, use_reentrant=False))
            else:
                out.append(self._edge_branch(*args))
        return torch.cat(out, dim=0)

    def static_projection(self) -> tuple[Tensor, Tensor]:
        """``(W [2 edge_hidden, hidden], c [2 edge_hidden])`` with ``[A LN(h), B LN(h) + b1] =
        n W^T + c``, ``n`` being ``h`` normalised without the affine part (LayerNorm's ``gamma``
        and ``beta`` folded into ``W`` and ``c``).

        Nodes without incoming edges never change, so ``n`` is the same in every block for
        them: the encoder projects them for all blocks with one matrix product.
        """
        w = torch.cat([self.edge_src.weight, self.edge_dst.weight])
        c = w @ self.edge_norm_h.bias
        c = c + torch.cat([torch.zeros_like(self.edge_dst.bias), self.edge_dst.bias])
        return w * self.edge_norm_h.weight, c

    # ------------------------------------------------------------------ nodes
    def message(self, e: Tensor) -> Tensor:
        # the (float32) edge states themselves; normalised after aggregation, per receiving node,
        # which costs R instead of E rows of LayerNorm
        return e

    def update(self, inputs: Tensor, hr: Tensor, receivers: Tensor) -> Tensor:
        """``h_i + MLP([LN(h_i), m_i])`` for the receiving nodes ``i`` (rows of ``hr``)."""
        mr = self.msg_norm(inputs.index_select(0, receivers))
        delta = self.node_mlp(torch.cat([self.node_norm(hr), mr], dim=-1))
        return hr + delta.to(hr.dtype)

    def forward(
        self,
        hr: Tensor,
        e: Tensor,
        edge_index: Tensor,
        receivers: Tensor,
        ab_static: Tensor | None,
    ) -> tuple[Tensor, Tensor]:
        """One block.

        Args:
            hr: ``[R, hidden]`` states of the nodes ``receivers`` (ids of the nodes with at
                least one incoming edge).
            e: ``[E, edge_hidden]`` edge states.
            edge_index: ``[2, E]``.
            receivers: ``[R]`` node ids.
            ab_static: ``[N, 2 edge_hidden]``, ``[A LN(h), B LN(h) + b1]`` of every node's
                lifted state (only the rows of non-receivers are used), or None when every node
                is a receiver (then ``receivers`` must be ``0..N-1``).
        Returns:
            the new ``(hr, e)``.
        """
        hn = self.edge_norm_h(hr)
        a_r, b_r = self.edge_src(hn), self.edge_dst(hn)
        if ab_static is None:
            a, b = a_r, b_r
        else:
            d = self.edge_hidden
            a = ab_static[:, :d].index_copy(0, receivers, a_r.to(ab_static.dtype))
            b = ab_static[:, d:].index_copy(0, receivers, b_r.to(ab_static.dtype))
        e = self._edge_new(a, b, e, edge_index)
        n = a.size(0)
        hr = self.propagate(edge_index, e=e, hr=hr, receivers=receivers, size=(n, n))
        return hr, e


def _chunked_mean(
    fn: nn.Module,
    x: Tensor,
    index: Tensor,
    n_groups: int,
    chunk: int | None,
    checkpoint_chunks: bool = False,
) -> Tensor:
    """``scatter(fn(x), index, reduce="mean")``, evaluating ``fn`` on chunks of rows if asked
    (each chunk recomputed in the backward pass if ``checkpoint_chunks``)."""
    if chunk is None or x.size(0) <= chunk:
        return scatter(fn(x), index, dim=0, dim_size=n_groups, reduce="mean")
    use_ckpt = checkpoint_chunks and torch.is_grad_enabled()
    total = None
    for s in range(0, x.size(0), chunk):
        xs, ix = x[s : s + chunk], index[s : s + chunk]
        ys = checkpoint(fn, xs, use_reentrant=False) if use_ckpt else fn(xs)
        part = scatter(ys.to(x.dtype), ix, dim=0, dim_size=n_groups, reduce="sum")
        total = part if total is None else total + part
    count = torch.bincount(index, minlength=n_groups).clamp_min(1).to(total.dtype)
    return total / count[:, None]


class DeepSetsReadout(nn.Module):
    """Per-graph ``rho([mean_nodes phi_n(h), mean_edges phi_e(e)])`` -> ``[B, out_dim]``."""

    def __init__(self, hidden: int, edge_hidden: int, out_dim: int) -> None:
        super().__init__()
        self.node_phi = nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, hidden), nn.SiLU())
        # edges outnumber nodes: their phi is kept narrow (2 x edge width)
        edge_width = 2 * edge_hidden
        self.edge_phi = nn.Sequential(
            nn.LayerNorm(edge_hidden), nn.Linear(edge_hidden, edge_width), nn.SiLU()
        )
        width = hidden + edge_width
        self.rho = nn.Sequential(
            nn.LayerNorm(width),
            nn.Linear(width, 2 * hidden),
            nn.SiLU(),
            nn.Linear(2 * hidden, out_dim),
        )

    def forward(
        self,
        h: Tensor,
        e: Tensor,
        node_graph: Tensor,
        edge_graph: Tensor,
        n_graphs: int,
        edge_chunk: int | None = None,
        checkpoint_chunks: bool = False,
    ) -> Tensor:
        zn = scatter(
            self.node_phi(h).to(h.dtype), node_graph, dim=0, dim_size=n_graphs, reduce="mean"
        )
        ze = _chunked_mean(self.edge_phi, e, edge_graph, n_graphs, edge_chunk, checkpoint_chunks)
        ze = ze.to(h.dtype)
        return self.rho(torch.cat([zn, ze], dim=-1))


class GraphStates(NamedTuple):
    """Node and edge states after the blocks, with the (possibly reversed-edge) structure."""

    h_lifted: Tensor  # [N, hidden] lifted node states (final for nodes that are not receivers)
    hr: Tensor  # [R, hidden] final states of the receivers
    e: Tensor  # [E', edge_hidden] (E' = 2E with reverse_edges)
    edge_index: Tensor  # [2, E']
    node_graph: Tensor  # [N] graph id of each node
    edge_graph: Tensor  # [E'] graph id of each edge
    n_graphs: int
    receivers: Tensor  # [R] ids of the nodes with an incoming edge (updated, pooled)

    @property
    def h(self) -> Tensor:
        """``[N, hidden]`` final states of all nodes."""
        return self.h_lifted.index_copy(0, self.receivers, self.hr.to(self.h_lifted.dtype))


def _graph_ids(data: Data | Batch, n_nodes: int, device: torch.device) -> tuple[Tensor, int]:
    """The graph id of every node and the number of graphs (a lone ``Data`` is one graph)."""
    batch = getattr(data, "batch", None)
    if batch is None:
        return torch.zeros(n_nodes, dtype=torch.long, device=device), 1
    n_graphs = getattr(data, "num_graphs", None)
    if n_graphs is None:
        n_graphs = int(batch.max()) + 1 if batch.numel() else 0
    return batch, int(n_graphs)


class GMNEncoder(nn.Module):
    """Graph metanetwork encoder: parameter graph(s) -> embeddings ``[B, embedding_dim]``.

    See the module docstring for the architecture. ``forward`` takes a ``Batch`` (from
    ``Batch.from_data_list``) or a single ``Data`` (one graph) with the schema attributes
    ``edge_index, edge_attr, edge_type, node_type, node_pos, x``.
    """

    def __init__(self, cfg: GMNConfig | None = None) -> None:
        super().__init__()
        cfg = cfg or GMNConfig()
        self.cfg = cfg
        self.n_edge_types = len(EdgeType)
        self.n_node_types = len(NodeType)
        self.x_dim = len(X_COLUMNS)
        self.edge_lift = EdgeValueLifting(
            self.n_edge_types, cfg.n_fourier, cfg.edge_hidden, normalize=cfg.normalize_values
        )
        n_dir = 2 if cfg.reverse_edges else 1
        self.edge_type_embedding = nn.Embedding(n_dir * self.n_edge_types, cfg.edge_hidden)
        self.node_lift = NodeLifting(self.x_dim, cfg.n_pos_fourier, self.n_node_types, cfg.hidden)
        self.blocks = nn.ModuleList(
            GMNBlock(
                cfg.hidden,
                cfg.edge_hidden,
                cfg.aggr_list if len(cfg.aggr_list) > 1 else cfg.aggr_list[0],
                cfg.edge_chunk,
                checkpoint_chunks=cfg.checkpoint,
            )
            for _ in range(cfg.n_blocks)
        )
        self.readout = DeepSetsReadout(cfg.hidden, cfg.edge_hidden, cfg.embedding_dim)
        self._scale_residual_outputs()

    def _scale_residual_outputs(self) -> None:
        """Shrink each residual branch's last layer by ``1 / sqrt(2K)`` (GPT-2 style): the
        residual streams then keep unit scale at initialisation whatever the depth."""
        s = 1.0 / math.sqrt(2 * len(self.blocks))
        with torch.no_grad():
            for blk in self.blocks:
                blk.edge_out.weight.mul_(s)
                blk.node_mlp[-1].weight.mul_(s)

    def _check(self, data: Data | Batch) -> None:
        for name in ("edge_index", "edge_attr", "edge_type", "node_type", "node_pos", "x"):
            if getattr(data, name, None) is None:
                raise ValueError(f"GMNEncoder: the graph has no {name!r} (make it with to_graph)")
        if data.x.dim() != 2 or data.x.size(1) != self.x_dim:
            raise ValueError(
                f"GMNEncoder: x must be [N, {self.x_dim}] (columns {X_COLUMNS}), got "
                f"{tuple(data.x.shape)}"
            )
        if data.edge_type.numel() and int(data.edge_type.max()) >= self.n_edge_types:
            raise ValueError(f"GMNEncoder: edge_type beyond the {self.n_edge_types} known types")
        if data.node_type.numel() and int(data.node_type.max()) >= self.n_node_types:
            raise ValueError(f"GMNEncoder: node_type beyond the {self.n_node_types} known types")

    def states(self, data: Data | Batch) -> GraphStates:
        """Lifting and the K blocks: the final node and edge states (before the readout)."""
        self._check(data)
        cfg = self.cfg
        dtype = self.edge_lift.proj.weight.dtype
        edge_index = data.edge_index
        node_graph, n_graphs = _graph_ids(data, data.x.size(0), data.x.device)
        edge_graph = node_graph[edge_index[0]]
        edge_type = data.edge_type.long()
        value = data.edge_attr.reshape(-1).to(dtype)
        with torch.autocast(data.x.device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
            e = self.edge_lift(value, edge_type, edge_graph, n_graphs)
            if cfg.reverse_edges:
                edge_index = torch.cat([edge_index, edge_index.flip(0)], dim=1)
                edge_type = torch.cat([edge_type, edge_type + self.n_edge_types])
                edge_graph = torch.cat([edge_graph, edge_graph])
                e = torch.cat([e, e], dim=0)
            # residual streams stay in the parameter dtype (float32) under bf16 autocast
            e = (e + self.edge_type_embedding(edge_type)).to(dtype)
            h = self.node_lift(data.x.to(dtype), data.node_pos.to(dtype), data.node_type.long())
            h = h.to(dtype)
            n_in = torch.bincount(edge_index[1], minlength=h.size(0))
            receivers = (n_in > 0).nonzero().squeeze(1)
            statics = self._static_projections(h, receivers)
            hr = h.index_select(0, receivers)
            for blk, ab in zip(self.blocks, statics, strict=True):
                # with edge_chunk the chunks are checkpointed instead (no nested recomputation)
                if cfg.checkpoint and cfg.edge_chunk is None and torch.is_grad_enabled():
                    hr, e = checkpoint(blk, hr, e, edge_index, receivers, ab, use_reentrant=False)
                else:
                    hr, e = blk(hr, e, edge_index, receivers, ab)
        return GraphStates(h, hr, e, edge_index, node_graph, edge_graph, n_graphs, receivers)

    def _static_projections(self, h: Tensor, receivers: Tensor) -> list[Tensor | None]:
        """Per block, the edge-MLP node projections of the lifted states ``h`` (used for the
        nodes that are never updated), all blocks in one matrix product."""
        if receivers.numel() == h.size(0):  # every node is updated (reverse_edges)
            return [None] * len(self.blocks)
        norm = self.blocks[0].edge_norm_h
        n0 = F.layer_norm(h, norm.normalized_shape, eps=norm.eps)
        ws, cs = zip(*(blk.static_projection() for blk in self.blocks), strict=True)
        p = F.linear(n0, torch.cat(ws), torch.cat(cs))
        return list(p.split(2 * self.cfg.edge_hidden, dim=1))

    def forward(self, data: Data | Batch) -> Tensor:
        """Embeddings ``[B, embedding_dim]`` (in the parameters' dtype, float32 by default)."""
        s = self.states(data)
        with torch.autocast(s.hr.device.type, dtype=torch.bfloat16, enabled=self.cfg.bf16):
            z = self.readout(
                s.hr,
                s.e,
                s.node_graph[s.receivers],
                s.edge_graph,
                s.n_graphs,
                self.cfg.edge_chunk,
                self.cfg.checkpoint,
            )
        return z.to(s.h_lifted.dtype)
