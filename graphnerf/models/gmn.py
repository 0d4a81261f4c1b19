"""`GMNEncoder`: a graph metanetwork that embeds parameter graphs of any NeRF architecture.

Input: a parameter graph from :func:`graphnerf.to_graph` (or a ``Batch`` of them); output: one
embedding per graph, ``[B, embedding_dim]``. ``h`` are node states (width ``hidden``), ``e`` edge
states (width ``edge_hidden``), ``j -> i`` an edge from source ``j`` to target ``i``.

1. **Lifting** (:mod:`graphnerf.models.features`). Edges: ``e_ij = Linear(lift(v)) * (1 +
   gamma_j) + beta_j + Emb(edge_type)`` with ``[gamma_j, beta_j] = Linear(h_j)`` of the source's
   lifted state (FiLM, ``edge_film``), where ``lift`` divides the parameter value ``v`` by the
   root mean square of its (graph, edge type) group and appends Fourier features and
   ``log10(rms)``: freshly initialised hash tables (~6e-5), tri-planes (~1e-3) and MLP weights
   (~0.1) all reach the network at unit scale, with their absolute scale kept as one feature.
   Nodes: ``h = MLP([x, Fourier(node_pos)]) + Emb(node_type)``. The weights into tcnn's padded
   outputs (``EdgeType.PAD_WEIGHT``: never trained, read by nothing) are dropped
   (``drop_pad_weights``).

   Why FiLM and small type embeddings (issue 13, measured with :mod:`graphnerf.probes`): what a
   grid says about geometry is a *product*, value x position (the value-weighted mean position
   of a blob's entries gives its centre, R^2 0.997). Without FiLM the value (on the edge) and
   the position (on the source node) first meet in the block's ``silu(a_j + C LN(e))``, through
   the curvature of SiLU only, and both sides were dominated by constant type embeddings
   (``nn.Embedding``'s N(0, 1): norm 6.4 against 1.3 for the value part of a hash edge, 11
   against ~5 for a node's attributes), so LayerNorm saw mostly the type. Untrained, a ridge
   regression of the blob centre on the 16-d mean edge state then reached held-out R^2 -0.17
   (0.48 with type embeddings of std 0.05, 0.81 with FiLM as well), and the trained encoder
   stayed at R^2 ~0 on the dense-hash probe. FiLM makes the product a feature of every edge
   from the start, and the type embeddings start at std ``type_embedding_std`` (0.05).
2. **K residual pre-LayerNorm blocks** (:class:`GMNBlock`, a PyG ``MessagePassing``; K =
   ``n_blocks``, 1 by default, and edge states ``edge_hidden`` = 32 wide: :class:`GMNConfig`
   says why)::

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
     block (their lifting is already an MLP of those attributes). They are only ever sources:
     their edge-MLP projections ``A LN(h)`` for all K blocks come from one matrix product
     (:meth:`GMNBlock.static_projection`). With ``reverse_edges`` every node receives messages
     and is updated.
   * The last layer of every branch (``W2`` and the node MLP's output layer) starts at zero
     (``residual_init="zero"``; ReZero / Fixup style): untrained, the encoder is its lifting
     and readout alone, a DeepSets over the FiLM-lifted edges, and message passing grows from
     there. Why (issue 13, :mod:`graphnerf.probes`, 64 training fields): with branches at
     ``1 / sqrt(2K)`` of PyTorch's default the blocks start by mixing random functions of every
     neighbour into each edge, and the GMN fitted the training fields but generalised worse
     than with no blocks at all (hashed-level probe, seed 1: held-out R^2 0.951 with 4 blocks,
     0.968 with the blocks skipped by a one-off patch; train 0.98 both). Zero branches: 0.970 / 0.966 / 0.966 on seeds 0-2
     against 0.962 / 0.951 / 0.962 (dense hash level: 0.986 / 0.987 / 0.984 against 0.986 /
     0.986 / 0.981). After the first optimiser step the branches are non-zero and every
     parameter gets gradients.
3. **DeepSets readout**: ``z = rho([mean_i phi_n(h_i), mean_t mean_{ij of type t} phi_e(e_ij)])``
   per graph, the node mean over the updated nodes (the states of the others depend on the
   architecture only, not on the parameters), the edge part a mean over the edge types ``t``
   present in the graph of each type's mean (``edge_readout="type"``; ``"edge"``: one mean over
   all edges); ``phi`` = LN, Linear, SiLU; ``rho`` = LN, Linear, SiLU, Linear; means with
   ``torch_geometric.utils.scatter`` over the batch vector (``batch[edge_index[0]]`` for edges).

   Why per type (issue 13, measured with :mod:`graphnerf.probes`): with one mean over all edges
   a kind of parameter weighs by its count, and the counts are set by the architecture, not by
   what the parameters say: on the hashed-level probe the 4,096 ``HASH`` edges of unplaced
   entries outweighed the 1,024 ``PROBE`` edges that carry the geometry 4:1 (on a tri-plane
   field, 12k-225k plane edges against ~5k MLP weights). The GMN under-fitted there (train R^2
   0.93-0.98, one seed in three at held-out 0.85); averaging per type first took held-out R^2
   from 0.96 / 0.85 / 0.96 to 0.96 / 0.95 / 0.96 (seeds 0-2), and every kind of parameter now
   reaches the embedding at the same weight on every architecture.

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

Compact node tables: the lifted state of a node is a function of its attributes ``(x,
node_pos, node_type)`` only, and most nodes share theirs with others (every entry of a hashed
level, the hidden neurons of a layer, every node of two graphs of the same architecture: 20k
distinct rows among the 58k nodes of the benchmark batch). The lifting runs once per distinct
row (:func:`~graphnerf.models.edge_ops.unique_rows`). The blocks then index two small tables
instead of all ``N`` nodes: edge sources point into ``[distinct lifted rows (U), receivers
(R)]``, targets into ``[receivers]`` (every target is a receiver). The functions computed are
unchanged; :meth:`GMNEncoder.states` still reports all ``N`` node states.

Cost: edges outnumber nodes 5-60x and the ``[E, edge_hidden]`` edge stream dominates time and
memory; see :class:`GMNConfig` for the choice of ``edge_hidden`` and ``graphnerf.perf.encoders``
for measurements. In float32 the edge lifting, each block's edge update and the edge readout are
fused autograd functions over cache-sized chunks of edges, and every sum over edges (the
aggregation, the gradients of gathers) is a sparse CSR product: see
:mod:`graphnerf.models.edge_ops` for why and by how much. Memory options: ``edge_chunk`` evaluates the edge updates and the edge readout
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
from .edge_ops import EdgeMLP, EdgePool, Incidence, unique_rows
from .features import EdgeValueLifting, NodeLifting

__all__ = [
    "EDGE_READOUTS",
    "RESIDUAL_INITS",
    "DeepSetsReadout",
    "GMNBlock",
    "GMNConfig",
    "GMNEncoder",
    "GraphStates",
]

EdgeIncidences = tuple[Incidence, Incidence]  # of the sources and of the targets of the edges

#: the never-trained weights into tcnn's padded outputs (dropped with ``drop_pad_weights``)
_PAD_WEIGHT = int(getattr(EdgeType, "PAD_WEIGHT", -1))

_AGGRS = ("mean", "sum", "add", "max", "min", "std", "var")
#: how the readout averages a graph's edges (:class:`GMNConfig`)
EDGE_READOUTS = ("type", "edge")
#: how the last layer of every residual branch starts (:class:`GMNConfig`)
RESIDUAL_INITS = ("zero", "scaled")


@dataclass(frozen=True)
class GMNConfig:
    """Hyperparameters of :class:`GMNEncoder`; defaults equal ``configs/model/gmn.yaml``.

    Attributes:
        hidden: node state width (and width of the node MLPs and of the readout).
        edge_hidden: edge state width (and width of the edge MLP and of the FiLM of the
            lifting). Edges outnumber nodes 5-60x (a hash field: 43k edges, a 64^2 tri-plane:
            225k), so the edge stream dominates time and memory. 32 by default, with one block
            (``n_blocks``): the width of the FiLM-lifted edge, where value and position meet, is
            what the geometry probes (:mod:`graphnerf.probes`, held-out R^2 on seeds 0 / 1 / 2,
            DeepSets 0.981 / 0.975 / 0.980 on the hashed level, 0.991 / 0.993 / 0.989 on the
            dense one) respond to: at 16 with 4 blocks 0.970 / 0.966 / 0.966 (hashed) and 0.986
            / 0.987 / 0.984 (dense); at 32 with 4 blocks 0.980 / 0.974 / 0.982 (hashed), with 2
            0.979 / 0.970, with 1 0.977 / 0.972 / 0.977 (dense 0.991 / 0.992 / 0.990); at 24 with
            2 blocks 0.970 / 0.955 / 0.972. A readout 8x wider at 16 gave 0.967 / 0.970 / 0.969:
            the width that matters is the edge state's, not the readout's. Training-step cost on
            the 8-graph benchmark batch relative to 16 with 4 blocks (one thread, ``python
            scripts/bench.py encoders``, one run each on a loaded machine): 32 with 4 blocks
            2.4x, with 2 1.45x, with 1 1.1x; 24 with 2 blocks 0.93x. 32 with 1 block against 16
            with 4 in paired runs on a quiet machine: 1.05-1.44x on one thread, 0.61 / 0.71 s
            against 0.78 / 0.71 s per step on two.
        n_blocks: number of residual message-passing blocks K (1 by default: see
            ``edge_hidden``; on 64 training fields 4 blocks instead of 1 bought 0.003 of mean
            held-out R^2 on the hashed level at 2.2x the cost).
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
        edge_film: modulate each lifted edge value by its source node's lifted state, ``e *
            (1 + gamma_j) + beta_j`` (module docstring); False: ``e`` unmodulated.
        type_embedding_std: initial standard deviation of the node- and edge-type embeddings
            (1.0 is ``nn.Embedding``'s default, which made them dominate every LayerNorm).
        drop_pad_weights: leave the ``PAD_WEIGHT`` edges (the never-trained weights into tcnn's
            padded outputs) out of the encoder: no value normalisation, message or readout.
        edge_readout: how the readout averages the edges of a graph: ``"type"`` — the mean over
            the edge types present of each type's mean (every kind of parameter weighs the
            same, whatever its count); ``"edge"`` — one mean over all edges (a kind weighs by
            its count: the 225k plane edges of a tri-plane drown its 5k MLP weights).
        residual_init: how the last layer of each block's edge and node branch starts:
            ``"zero"`` — at zero, so the untrained encoder is its lifting and readout alone (a
            DeepSets over the FiLM-lifted edges) and message passing grows from there;
            ``"scaled"`` — at PyTorch's default scaled by ``1 / sqrt(2 n_blocks)`` (GPT-2
            style). Weights loaded from a checkpoint replace either.
    """

    hidden: int = 128
    edge_hidden: int = 32
    n_blocks: int = 1
    embedding_dim: int = 1024
    n_fourier: int = 8
    n_pos_fourier: int = 4
    normalize_values: bool = True
    aggr: str | tuple[str, ...] = "mean"
    reverse_edges: bool = False
    edge_chunk: int | None = None
    checkpoint: bool = False
    bf16: bool = False
    edge_film: bool = True
    type_embedding_std: float = 0.05
    drop_pad_weights: bool = True
    edge_readout: str = "type"
    residual_init: str = "zero"

    def __post_init__(self) -> None:
        if isinstance(self.aggr, list | tuple):
            object.__setattr__(self, "aggr", tuple(str(a) for a in self.aggr))
        for name in ("hidden", "edge_hidden", "n_blocks", "embedding_dim"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"GMNConfig.{name} must be a positive integer, got {v!r}")
        for name in (
            "normalize_values",
            "reverse_edges",
            "checkpoint",
            "bf16",
            "edge_film",
            "drop_pad_weights",
        ):
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
        t = self.type_embedding_std
        if isinstance(t, bool) or not isinstance(t, int | float) or not t >= 0:
            raise ValueError(f"GMNConfig.type_embedding_std must be a number >= 0, got {t!r}")
        if self.edge_readout not in EDGE_READOUTS:
            raise ValueError(
                f"GMNConfig.edge_readout must be one of {EDGE_READOUTS}, got {self.edge_readout!r}"
            )
        if self.residual_init not in RESIDUAL_INITS:
            raise ValueError(
                f"GMNConfig.residual_init must be one of {RESIDUAL_INITS}, "
                f"got {self.residual_init!r}"
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

    Works on the compact node indexing of :class:`GMNEncoder`: edges run from a row of the
    source table (the ``T`` rows: distinct lifted states of the nodes that are never updated,
    then the ``R`` receivers) to a receiver (one of ``R`` rows). ``forward(hr [R, hidden], e [E,
    edge_hidden], edge_index [2, E] (compact), a_static [T - R, edge_hidden] | None, incidences)
    -> (hr', e')``.
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
        self.aggr_name = aggr if isinstance(aggr, str) else None
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
    def edge_update(
        self,
        a: Tensor,
        b: Tensor,
        e: Tensor,
        edge_index_j: Tensor,
        edge_index_i: Tensor,
        incidences: EdgeIncidences | None,
    ) -> Tensor:
        """New states ``e + W2 silu(a_j + b_i + C LN(e))`` of a set of edges, where ``a = A LN(h)``
        and ``b = B LN(h) + b1`` are per-node projections, gathered at the source ``j`` / target
        ``i``.

        In float32 this is :class:`~graphnerf.models.edge_ops.EdgeMLP` (LayerNorm's affine folded
        into ``C`` and ``b``; the gradients of ``a`` and ``b`` as CSR products when
        ``incidences`` are given, i.e. for the whole edge set). Under autocast it is written out
        with plain autograd ops, the residual stream staying float32.
        """
        norm = self.edge_norm_e
        if torch.is_autocast_enabled(e.device.type):
            ab = a.index_select(0, edge_index_j) + b.index_select(0, edge_index_i)
            act = F.silu(torch.addmm(ab, norm(e), self.edge_self.weight.t()))
            return e + F.linear(act, self.edge_out.weight).to(e.dtype)
        w_self = self.edge_self.weight
        src_inc, dst_inc = incidences if incidences is not None else (None, None)
        return EdgeMLP.apply(
            e,
            a,
            b + w_self @ norm.bias,
            w_self * norm.weight,
            self.edge_out.weight,
            edge_index_j,
            edge_index_i,
            src_inc,
            dst_inc,
            norm.eps,
        )

    def _edge_branch(
        self,
        a: Tensor,
        b: Tensor,
        e: Tensor,
        edge_index: Tensor,
        incidences: EdgeIncidences | None = None,
    ) -> Tensor:
        size = (a.size(0), b.size(0))
        return self.edge_updater(edge_index, a=a, b=b, e=e, incidences=incidences, size=size)

    def _edge_new(
        self, a: Tensor, b: Tensor, e: Tensor, edge_index: Tensor, incidences: EdgeIncidences
    ) -> Tensor:
        n_edges, c = e.size(0), self.edge_chunk
        if c is None or n_edges <= c:
            return self._edge_branch(a, b, e, edge_index, incidences)
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
        """``(W [edge_hidden, hidden], c [edge_hidden])`` with ``A LN(h) = n W^T + c``, ``n``
        being ``h`` normalised without the affine part (LayerNorm's ``gamma`` and ``beta``
        folded into ``W`` and ``c``).

        Nodes without incoming edges never change, so ``n`` is the same in every block for
        them: the encoder projects them for all blocks with one matrix product. (They are only
        ever sources, so only their ``A`` projection is needed.)
        """
        w = self.edge_src.weight
        return w * self.edge_norm_h.weight, w @ self.edge_norm_h.bias

    # ------------------------------------------------------------------ nodes
    def message(self, e: Tensor) -> Tensor:
        # the (float32) edge states themselves; normalised after aggregation, per receiving node,
        # which costs R instead of E rows of LayerNorm
        return e

    def aggregate(
        self,
        inputs: Tensor,
        index: Tensor,
        ptr: Tensor | None = None,
        dim_size: int | None = None,
        incidences: EdgeIncidences | None = None,
    ) -> Tensor:
        """Mean (or sum) of the incoming edge states as a CSR product when the incidence of
        the targets is known; any other aggregation through PyG."""
        if incidences is not None and self.aggr_name in ("mean", "sum", "add"):
            dst = incidences[1]
            return dst.mean(inputs) if self.aggr_name == "mean" else dst.sum(inputs)
        return super().aggregate(inputs, index, ptr, dim_size)

    def update(self, inputs: Tensor, hr: Tensor) -> Tensor:
        """``h_i + MLP([LN(h_i), m_i])`` for the receiving nodes ``i`` (rows of ``hr``)."""
        delta = self.node_mlp(torch.cat([self.node_norm(hr), self.msg_norm(inputs)], dim=-1))
        return hr + delta.to(hr.dtype)

    def forward(
        self,
        hr: Tensor,
        e: Tensor,
        edge_index: Tensor,
        a_static: Tensor | None,
        incidences: EdgeIncidences | None = None,
    ) -> tuple[Tensor, Tensor]:
        """One block.

        Args:
            hr: ``[R, hidden]`` states of the receivers.
            e: ``[E, edge_hidden]`` edge states.
            edge_index: ``[2, E]`` in the compact indexing: sources index ``cat([a_static,
                A LN(hr)])``, targets index ``hr``.
            a_static: ``[T - R, edge_hidden]``, ``A LN(h)`` of the distinct lifted states of
                the nodes that are never updated, or None if every source is a receiver.
            incidences: the :class:`~graphnerf.models.edge_ops.Incidence` of the sources and of
                the targets (None: plain gathers and PyG aggregation).
        Returns:
            the new ``(hr, e)``.
        """
        hn = self.edge_norm_h(hr)
        a, b = self.edge_src(hn), self.edge_dst(hn)
        if a_static is not None:
            a = torch.cat([a_static, a.to(a_static.dtype)])
        e = self._edge_new(a, b, e, edge_index, incidences)
        size = (a.size(0), hr.size(0))
        hr = self.propagate(edge_index, e=e, hr=hr, incidences=incidences, size=size)
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

    def edge_mean(
        self,
        e: Tensor,
        edge_graph: Tensor,
        n_graphs: int,
        edge_chunk: int | None = None,
        checkpoint_chunks: bool = False,
        graph_incidence: Incidence | None = None,
    ) -> Tensor:
        """``mean_edges phi_e(e)`` per graph ``[B, 2 edge_hidden]``: with ``graph_incidence``
        (and in float32) by :class:`~graphnerf.models.edge_ops.EdgePool`, else chunk-wise."""
        if graph_incidence is not None and not torch.is_autocast_enabled(e.device.type):
            norm, lin = self.edge_phi[0], self.edge_phi[1]
            c, c0 = lin.weight * norm.weight, lin.weight @ norm.bias + lin.bias
            return EdgePool.apply(e, c, c0, graph_incidence, norm.eps)
        return _chunked_mean(self.edge_phi, e, edge_graph, n_graphs, edge_chunk, checkpoint_chunks)

    def forward(
        self,
        h: Tensor,
        e: Tensor,
        node_graph: Tensor,
        edge_graph: Tensor,
        n_graphs: int,
        edge_chunk: int | None = None,
        checkpoint_chunks: bool = False,
        graph_incidence: Incidence | None = None,
        edge_type: Tensor | None = None,
        n_edge_types: int = 0,
    ) -> Tensor:
        """``[B, out_dim]``. With ``edge_type [E]`` (values below ``n_edge_types``) the edge
        part is the mean over the types present in a graph of each type's mean (then
        ``graph_incidence``, if given, must index the ``(graph, type)`` groups ``edge_graph *
        n_edge_types + edge_type``); without, one mean over the graph's edges."""
        zn = scatter(
            self.node_phi(h).to(h.dtype), node_graph, dim=0, dim_size=n_graphs, reduce="mean"
        )
        if edge_type is None:
            ze = self.edge_mean(
                e, edge_graph, n_graphs, edge_chunk, checkpoint_chunks, graph_incidence
            )
        else:
            group = edge_graph * n_edge_types + edge_type
            n_groups = n_graphs * n_edge_types
            zg = self.edge_mean(e, group, n_groups, edge_chunk, checkpoint_chunks, graph_incidence)
            counts = torch.bincount(group, minlength=n_groups).view(n_graphs, n_edge_types)
            present = (counts > 0).to(zg.dtype)
            zg = zg.view(n_graphs, n_edge_types, -1) * present[:, :, None]
            ze = zg.sum(1) / present.sum(1, keepdim=True).clamp_min(1.0)
        return self.rho(torch.cat([zn, ze.to(h.dtype)], dim=-1))


class GraphStates(NamedTuple):
    """Node and edge states after the blocks, with the (possibly reversed-edge) structure."""

    h_unique: Tensor  # [U, hidden] lifted states of the distinct node attribute rows
    node_inverse: Tensor  # [N] row of h_unique holding each node's lifted state
    hr: Tensor  # [R, hidden] final states of the receivers
    e: Tensor  # [E', edge_hidden] (E' = 2E with reverse_edges)
    edge_index: Tensor  # [2, E'] node ids
    node_graph: Tensor  # [N] graph id of each node
    edge_graph: Tensor  # [E'] graph id of each edge
    n_graphs: int
    receivers: Tensor  # [R] ids of the nodes with an incoming edge (updated, pooled)
    edge_type: Tensor  # [E'] type of each edge (T + t for the reverse of a type-t edge)

    @property
    def h_lifted(self) -> Tensor:
        """``[N, hidden]`` lifted node states (final for the nodes that are not receivers)."""
        return self.h_unique.index_select(0, self.node_inverse)

    @property
    def h(self) -> Tensor:
        """``[N, hidden]`` final states of all nodes."""
        return self.h_lifted.index_copy(0, self.receivers, self.hr.to(self.h_unique.dtype))


class _Compact(NamedTuple):
    """The compact node indexing of one forward pass (see :meth:`GMNEncoder.states`)."""

    edge_index: Tensor  # [2, E'] sources in [0, T), targets in [0, R)
    first: Tensor  # [U] a node carrying each distinct attribute row
    inverse: Tensor  # [N] distinct row of each node
    receivers: Tensor  # [R]
    static_sources: bool  # whether some source is not a receiver (then T = U + R, else T = R)


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
        # FiLM of the lifted edge value by its source node's lifted state (value x position)
        self.edge_film = nn.Linear(cfg.hidden, 2 * cfg.edge_hidden) if cfg.edge_film else None
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
        with torch.no_grad():
            for emb in (self.edge_type_embedding, self.node_lift.type_embedding):
                emb.weight.normal_(0.0, cfg.type_embedding_std)
        self._init_residual_outputs()

    def _init_residual_outputs(self) -> None:
        """Start each residual branch's last layer at zero (``residual_init="zero"``: every
        block is the identity at initialisation) or shrink it by ``1 / sqrt(2K)`` (``"scaled"``,
        GPT-2 style: the residual streams keep unit scale whatever the depth)."""
        s = 1.0 / math.sqrt(2 * len(self.blocks))
        with torch.no_grad():
            for blk in self.blocks:
                if self.cfg.residual_init == "zero":
                    for t in (blk.edge_out.weight, blk.node_mlp[-1].weight, blk.node_mlp[-1].bias):
                        t.zero_()
                else:
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
        n_nodes = data.x.size(0)
        node_graph, n_graphs = _graph_ids(data, n_nodes, data.x.device)
        edge_type = data.edge_type.long()
        node_type = data.node_type.long()
        value = data.edge_attr.reshape(-1).to(dtype)
        if cfg.drop_pad_weights:
            keep = edge_type != _PAD_WEIGHT
            if not bool(keep.all()):
                edge_index, edge_type, value = edge_index[:, keep], edge_type[keep], value[keep]
        edge_graph = node_graph[edge_index[0]]
        with torch.autocast(data.x.device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
            x = self.node_lift.attributes(data.x.to(dtype), node_type)
            pos = data.node_pos.to(dtype)
            cp = _compact(edge_index, x, pos, node_type, n_nodes)
            h_u = self.node_lift(x[cp.first], pos[cp.first], node_type[cp.first]).to(dtype)
            if self.edge_film is not None:  # FiLM by the source's lifted state
                film = self.edge_film(h_u)
                src_row = cp.inverse[edge_index[0]]
                e = self.edge_lift(value, edge_type, edge_graph, n_graphs, film, src_row)
            else:
                e = self.edge_lift(value, edge_type, edge_graph, n_graphs)
            if cfg.reverse_edges:
                edge_index = torch.cat([edge_index, edge_index.flip(0)], dim=1)
                edge_type = torch.cat([edge_type, edge_type + self.n_edge_types])
                edge_graph = torch.cat([edge_graph, edge_graph])
                e = torch.cat([e, e], dim=0)
                cp = _compact(edge_index, x, pos, node_type, n_nodes)
            # residual streams stay in the parameter dtype (float32) under bf16 autocast
            # the embedding's gradient as a CSR product (embedding_dense_backward: 23 ms)
            types = Incidence(edge_type, self.edge_type_embedding.num_embeddings)
            e = (e + types.gather(self.edge_type_embedding.weight)).to(dtype)
            hr = h_u.index_select(0, cp.inverse[cp.receivers])
            n_static = cp.first.numel() if cp.static_sources else 0
            if n_static:
                statics = self._static_projections(h_u)
            else:
                statics = [None] * len(self.blocks)
            incidences = (
                Incidence(cp.edge_index[0], n_static + hr.size(0)),
                Incidence(cp.edge_index[1], hr.size(0)),
            )
            for blk, a_static in zip(self.blocks, statics, strict=True):
                args = (hr, e, cp.edge_index, a_static, incidences)
                # with edge_chunk the chunks are checkpointed instead (no nested recomputation)
                if cfg.checkpoint and cfg.edge_chunk is None and torch.is_grad_enabled():
                    hr, e = checkpoint(blk, *args, use_reentrant=False)
                else:
                    hr, e = blk(*args)
        return GraphStates(
            h_u,
            cp.inverse,
            hr,
            e,
            edge_index,
            node_graph,
            edge_graph,
            n_graphs,
            cp.receivers,
            edge_type,
        )

    def _static_projections(self, h: Tensor) -> list[Tensor]:
        """Per block, the edge-MLP source projections ``A LN(h)`` of lifted states ``h`` (used
        for the nodes that are never updated), all blocks in one matrix product."""
        norm = self.blocks[0].edge_norm_h
        n0 = F.layer_norm(h, norm.normalized_shape, eps=norm.eps)
        ws, cs = zip(*(blk.static_projection() for blk in self.blocks), strict=True)
        p = F.linear(n0, torch.cat(ws), torch.cat(cs))
        return list(p.split(self.cfg.edge_hidden, dim=1))

    def forward(self, data: Data | Batch) -> Tensor:
        """Embeddings ``[B, embedding_dim]`` (in the parameters' dtype, float32 by default)."""
        s = self.states(data)
        by_type = self.cfg.edge_readout == "type"
        n_types = self.edge_type_embedding.num_embeddings if by_type else 0
        edge_type = s.edge_type if by_type else None
        graphs = None
        if self.cfg.edge_chunk is None:  # the readout's group incidence (graphs or (graph, type))
            if by_type:
                graphs = Incidence(s.edge_graph * n_types + s.edge_type, s.n_graphs * n_types)
            else:
                graphs = Incidence(s.edge_graph, s.n_graphs)
        with torch.autocast(s.hr.device.type, dtype=torch.bfloat16, enabled=self.cfg.bf16):
            z = self.readout(
                s.hr,
                s.e,
                s.node_graph[s.receivers],
                s.edge_graph,
                s.n_graphs,
                self.cfg.edge_chunk,
                self.cfg.checkpoint,
                graph_incidence=graphs,
                edge_type=edge_type,
                n_edge_types=n_types,
            )
        return z.to(s.h_unique.dtype)


def _compact(
    edge_index: Tensor, x: Tensor, pos: Tensor, node_type: Tensor, n_nodes: int
) -> _Compact:
    """The compact indexing of the blocks (module docstring, "Compact node tables").

    Nodes with the same attributes ``(x, pos, node_type)`` get the same lifted state; those
    without incoming edges keep it. Sources are numbered ``[distinct attribute rows (U),
    receivers (R)]`` (only ``[receivers]`` if every source is a receiver), targets ``[receivers]``.
    """
    src, dst = edge_index
    first, inverse = unique_rows([*x.unbind(1), *pos.unbind(1), node_type])
    is_recv = torch.bincount(dst, minlength=n_nodes) > 0
    receivers = is_recv.nonzero().squeeze(1)
    rank = torch.cumsum(is_recv, 0) - 1  # receiver i is row rank[i]
    src_recv = is_recv[src]
    static = not bool(src_recv.all())
    src_c = torch.where(src_recv, first.numel() + rank[src], inverse[src]) if static else rank[src]
    return _Compact(torch.stack([src_c, rank[dst]]), first, inverse, receivers, static)
