"""Reading parameters back out of a graph, from its attributes alone (vectorised).

Every edge is placed by the *roles* of its endpoints, never by its position in ``edge_index`` or
by node ids: a neuron is identified by ``(node_layer, index)`` where the index is ``node_order``
for ordered neurons and, for hidden neurons (``node_order == -1``), the rank of the node id among
the unordered neurons of the same layer. Any permutation of hidden node ids therefore rebuilds a
field whose hidden neurons are permuted the same way: the same function. Grid nodes are
identified by ``(node_level, node_order)``.

:func:`place` checks that the edges hit every parameter slot exactly once, so a graph with a
missing, duplicated or misplaced edge is rejected instead of silently rebuilding a wrong field.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from .schema import DERIVED_EDGE_TYPES, EDGE_ATTRS, NODE_ATTRS, EdgeType, GraphError, NodeType

_DERIVED = {int(t) for t in DERIVED_EDGE_TYPES}


def take(t: Tensor, idx: Tensor) -> Tensor:
    """``t[idx]`` for a 1-D index (``index_select``: several times faster than ``t[idx]``)."""
    return torch.index_select(t, 0, idx)


class GraphView:
    """Validated tensors of one graph, with the per-node neuron index computed on demand."""

    def __init__(self, g: Any) -> None:
        missing = [k for k in (*EDGE_ATTRS, *NODE_ATTRS) if getattr(g, k, None) is None]
        if missing:
            raise GraphError(f"graph lacks attribute(s) {missing}; was it made by to_graph?")
        self.edge_index: Tensor = g.edge_index.cpu()
        self.edge_attr: Tensor = g.edge_attr.cpu()
        self.edge_type: Tensor = g.edge_type.cpu()
        self.node_type: Tensor = g.node_type.cpu()
        self.node_layer: Tensor = g.node_layer.cpu()
        self.node_order: Tensor = g.node_order.cpu()
        self.node_level: Tensor = g.node_level.cpu()
        n = int(g.num_nodes) if g.num_nodes is not None else int(self.node_type.numel())
        e = self.edge_type.numel()
        if self.edge_index.dim() != 2 or self.edge_index.shape != (2, e):
            raise GraphError(
                f"edge_index must be [2, {e}] (as edge_type), got {tuple(self.edge_index.shape)}"
            )
        if self.edge_attr.shape not in ((e, 1), (e,)):
            raise GraphError(f"edge_attr must be [{e}, 1], got {tuple(self.edge_attr.shape)}")
        for k in ("node_type", "node_layer", "node_order", "node_level"):
            if getattr(self, k).shape != (n,):
                raise GraphError(
                    f"{k} must be [{n}] (num_nodes), got {tuple(getattr(self, k).shape)}"
                )
        lo, hi = torch.aminmax(self.edge_index) if e else (0, 0)
        if e and (int(lo) < 0 or int(hi) >= n):
            raise GraphError(f"edge_index refers to nodes outside [0, {n})")
        self.num_nodes = n
        self._neuron_index: Tensor | None = None
        self._edge_counts: dict[int, int] | None = None

    # ------------------------------------------------------------------ counts
    def edge_counts(self) -> dict[int, int]:
        if self._edge_counts is None:
            counts = (
                torch.bincount(self.edge_type, minlength=len(EdgeType))
                if self.edge_type.numel()
                else None
            )
            if counts is not None and counts.numel() > len(EdgeType):
                raise GraphError(
                    f"graph has edge types up to {counts.numel() - 1}; this graphnerf knows "
                    f"0..{len(EdgeType) - 1} ({', '.join(t.name for t in EdgeType)})"
                )
            self._edge_counts = {
                int(t): (int(counts[t]) if counts is not None else 0) for t in EdgeType
            }
        return self._edge_counts

    def has_edges(self, t: EdgeType) -> bool:
        return self.edge_counts()[int(t)] > 0

    def expect_edges(self, spec: Any, expected: Mapping[EdgeType, int]) -> None:
        """Raise unless the graph has exactly the expected number of edges of each parameter
        type (derived types, :data:`~graphnerf.graph.schema.DERIVED_EDGE_TYPES`, are ignored)."""
        have = {t: n for t, n in self.edge_counts().items() if t not in _DERIVED}
        want = {t: 0 for t in have} | {int(t): n for t, n in expected.items()}
        if have != want:
            fmt = ", ".join
            raise GraphError(
                "graph does not match the spec: it has "
                + fmt(f"{EdgeType(t).name}={n}" for t, n in have.items() if n or want[t])
                + " edges, the spec needs "
                + fmt(f"{EdgeType(t).name}={n}" for t, n in want.items() if n or have[t])
                + f" (spec: {spec.to_json()})"
            )
        if self.edge_attr.numel() != self.edge_type.numel():
            raise GraphError(
                f"graph has {self.edge_attr.numel()} edge values for {self.edge_type.numel()} edges"
            )

    # ------------------------------------------------------------------ edges and neurons
    def edges(self, t: EdgeType) -> tuple[Tensor, Tensor, Tensor]:
        """(src, dst, value) of the edges of one type: views when they form one contiguous run
        (as in every graph to_graph makes), copies otherwise."""
        m = self.edge_type == int(t)
        n = int(m.sum())
        first = int(m.to(torch.uint8).argmax()) if n else 0
        if n == 0 or bool(m[first : first + n].all()):
            s = slice(first, first + n)
            return self.edge_index[0, s], self.edge_index[1, s], self.edge_attr.reshape(-1)[s]
        return self.edge_index[0][m], self.edge_index[1][m], self.edge_attr.reshape(-1)[m]

    def grid_codes(
        self,
        node_type: NodeType,
        n_groups: int,
        group_sizes: Tensor,
        row: int,
        first_input: int,
        n_inputs: int,
        inputs_per_group: int,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Per-node lookup tables that turn a grid edge into a flat parameter position.

        A grid node of type ``node_type`` in group ``g`` (hash level / plane) with order ``o``
        has ``base = (group_start[g] + o) * row`` and ``src_group = g``; the MLP input neuron
        ``first_input + i`` (``0 <= i < n_inputs``) has ``code = i % inputs_per_group`` and
        ``dst_group = i // inputs_per_group``. An edge's position is ``base[src] + code[dst]``;
        the caller checks the groups. Other nodes get a negative base / code (so their edges
        land out of range) and group -1 (sources) / -3 (targets).

        Returns:
            base [N] long, src_group [N] int8, code [N] long, dst_group [N] int8.
        """
        n = self.num_nodes
        neg = -(1 << 50)
        starts = torch.cumsum(group_sizes, 0) - group_sizes
        lev, order = self.node_level, self.node_order
        is_grid = (self.node_type == int(node_type)) & (lev >= 0) & (lev < n_groups) & (order >= 0)
        lev_c = lev.clamp(0, n_groups - 1)
        is_grid &= order < take(group_sizes, lev_c)
        base = torch.where(is_grid, (take(starts, lev_c) + order) * row, torch.full((n,), neg))
        src_group = torch.where(is_grid, lev_c, -1).to(torch.int8)
        i = self.neuron_index - first_input
        is_in = (
            (self.node_layer == 0) & (self.node_type != NodeType.BIAS) & (i >= 0) & (i < n_inputs)
        )
        code = torch.where(is_in, i % inputs_per_group, torch.full((n,), neg))
        dst_group = torch.where(is_in, i // inputs_per_group, -3).to(torch.int8)
        return base, src_group, code, dst_group

    @property
    def neuron_index(self) -> Tensor:
        """[N] index of each neuron within its layer (order, or rank of id for unordered ones)."""
        if self._neuron_index is None:
            idx = self.node_order.clone()
            is_neuron = self.node_layer >= 0
            free = is_neuron & (self.node_order < 0) & (self.node_type != NodeType.BIAS)
            free = free.nonzero().squeeze(1)  # ascending node ids
            if free.numel():
                lay = self.node_layer[free]
                perm = torch.argsort(lay, stable=True)  # by layer, then by node id
                sl = lay[perm]
                counts = torch.bincount(sl)
                starts = torch.cumsum(counts, 0) - counts
                idx[free[perm]] = torch.arange(sl.numel()) - starts[sl]
            self._neuron_index = idx
        return self._neuron_index


def _check(ok: Tensor, what: str) -> None:
    if not bool(ok.all()):
        n = int((~ok).sum())
        raise GraphError(f"graph does not match the spec: {n} edge(s) with {what}")


def weight_positions(
    view: GraphView, widths: Sequence[int], base: int = 0
) -> tuple[Tensor, Tensor]:
    """Flat positions of the WEIGHT edges in the concatenated row-major matrices (+ ``base``)."""
    src, dst, val = view.edges(EdgeType.WEIGHT)
    if view.has_edges(EdgeType.PAD_WEIGHT):
        ps, pd, pv = view.edges(EdgeType.PAD_WEIGHT)
        nt = view.node_type
        _check(take(nt, pd) == NodeType.PAD_OUTPUT, "a PAD_WEIGHT edge not into a padded output")
        _check(take(nt, dst) != NodeType.PAD_OUTPUT, "a WEIGHT edge into a padded output")
        src, dst, val = torch.cat([src, ps]), torch.cat([dst, pd]), torch.cat([val, pv])
    n_layers = len(widths) - 1
    w = torch.tensor(list(widths), dtype=torch.long)
    off = torch.zeros(n_layers + 1, dtype=torch.long)
    off[1:] = torch.cumsum(w[1:] * w[:-1], 0)
    ls = view.node_layer[src]
    ld = view.node_layer[dst]
    _check((ls >= 0) & (ls < n_layers) & (ld == ls + 1), "endpoints not in consecutive MLP layers")
    _check(view.node_type[src] != NodeType.BIAS, "a bias node as the source of a WEIGHT edge")
    idx = view.neuron_index
    i, o = idx[src], idx[dst]
    _check((i >= 0) & (i < w[ls]) & (o >= 0) & (o < w[ls + 1]), "a neuron index beyond its layer")
    return base + off[ls] + o * w[ls] + i, val


def bias_positions(
    view: GraphView, widths: Sequence[int], has_bias: Sequence[bool], base: int
) -> tuple[Tensor, Tensor]:
    """Flat positions of BIAS edges in the concatenated bias vectors of the layers that have one."""
    src, dst, val = view.edges(EdgeType.BIAS)
    n_layers = len(widths) - 1
    w_out = torch.tensor([widths[i + 1] if has_bias[i] else 0 for i in range(n_layers)])
    off = torch.cumsum(w_out, 0) - w_out
    ld = view.node_layer[dst]
    _check(view.node_type[src] == NodeType.BIAS, "a BIAS edge not leaving a bias node")
    _check((ld >= 1) & (ld <= n_layers), "a BIAS edge not entering a neuron of layers 1..n")
    _check(view.node_layer[src] == ld - 1, "a bias node on another layer than its neurons")
    o = view.neuron_index[dst]
    _check((o >= 0) & (o < w_out[ld - 1]), "a bias for a neuron beyond its layer (or no bias)")
    return base + off[ld - 1] + o, val


def place(view: GraphView, size: int, parts: Sequence[tuple[Tensor, Tensor]]) -> Tensor:
    """Scatter values to flat positions; every slot of [0, size) must be hit exactly once."""
    flat = torch.empty(size, dtype=torch.float32)
    seen = torch.zeros(size, dtype=torch.bool)
    total = 0
    for pos, val in parts:
        if pos.numel() and (int(pos.min()) < 0 or int(pos.max()) >= size):
            raise GraphError("graph does not match the spec: an edge maps outside the parameters")
        flat.index_copy_(0, pos, val.to(torch.float32))
        seen.index_fill_(0, pos, True)
        total += pos.numel()
    if total != size or not bool(seen.all()):
        raise GraphError(
            f"graph does not match the spec: its {total} edges cover "
            f"{int(seen.sum())} of the {size} parameters (each must be covered exactly once)"
        )
    lo, hi = torch.aminmax(flat)  # NaN propagates, inf shows up
    if not (bool(torch.isfinite(lo)) and bool(torch.isfinite(hi))):
        raise GraphError("graph holds non-finite (NaN/inf) parameter values")
    return flat
