"""Vectorised assembly of a parameter graph from blocks of nodes and edges.

A family converter describes its graph as a short list of :class:`NodeBlock` (a run of consecutive
node ids sharing type, layer and level) and :class:`EdgeBlock` (an outer product of a run of node
ids with a small set of node ids, one parameter per pair), or, for the big grid parts, one
:class:`CustomNodes` / :class:`CustomEdges` that writes all levels with whole-slice operations.
:func:`assemble` allocates every output tensor once and fills it slice by slice: the number of
Python steps is the number of blocks (layers, levels, planes), never the number of nodes or edges,
and no temporary is as large as an output (positions of dense levels / planes and one ``arange``
per block are the largest).

Why the structure is not cached per spec: every node attribute and ``edge_index`` depends on the
spec alone, but a cached copy would still have to be cloned for each graph (graphs sharing
tensors would let one in-place transform corrupt every later graph), and the clone of ~95% of the
graph's bytes is what ``python -m graphnerf.perf.graph`` reports as the floor: for Instant-NGP,
to_graph takes 0.92 s vs 0.76 s for a clone of its output (2-core VM shared with other jobs), so
a cache would save at most ~15% while holding ~700 MB per cached spec.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor

from .schema import X_COLUMNS, EdgeType, NodeType

_COL_ORDER = X_COLUMNS.index("order")
_COL_AXIS = X_COLUMNS.index("axis")
assert X_COLUMNS[_COL_AXIS : _COL_AXIS + 3] == ("axis", "log_freq", "phase")


def x_row(layer_x: float, level_x: float, log_res_x: float, has_pos: bool) -> Tensor:
    """[len(X_COLUMNS)] float32 ``x`` row with ``order``, ``axis``, ``log_freq``, ``phase`` -1."""
    row = torch.full((len(X_COLUMNS),), -1.0)
    row[X_COLUMNS.index("layer")] = layer_x
    row[X_COLUMNS.index("level")] = level_x
    row[X_COLUMNS.index("log_res")] = log_res_x
    row[X_COLUMNS.index("has_pos")] = float(has_pos)
    return row


#: intra-op threads used while filling a large graph (None: leave torch's setting alone).
#: The fills are bound by memory writes and first-touch page faults, not arithmetic, and an
#: Instant-NGP graph takes about a hundred of them; with 2 threads every one is a parallel region
#: that must wake the second worker, which, when the CPUs are shared with other processes, waits
#: for a scheduler slice. Measured on the 2-core development VM next to one busy process:
#: 0.5-0.7 s with 1 thread vs 1.1-2.3 s with 2 (clone() of the output: 0.4-0.9 s). We could not
#: measure an idle machine; set this to None there to compare. DataLoader workers use 1 thread.
CONVERT_THREADS: int | None = 1
#: graphs with fewer edges keep torch's setting: changing the thread count costs a few ms (the
#: OpenMP pool is resized), more than a zoo-sized graph takes to fill
THREADS_MIN_EDGES = 1 << 18


@contextmanager
def intra_op_threads(n: int | None) -> Iterator[None]:
    """Temporarily cap torch's intra-op thread count (process-wide; restored on exit)."""
    old = torch.get_num_threads()
    if n is None or n >= old:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


@dataclass
class NodeBlock:
    """``n`` consecutive nodes.

    Attributes:
        n: node count.
        type: node type.
        layer: ``node_layer`` (-1 for grid nodes).
        layer_x: ``x[:, layer]`` value.
        order_start: ``node_order`` of the first node (consecutive after it); None -> -1 for all.
        order_norm: ``x[:, order] = node_order / order_norm`` where the index has a meaning;
            None -> -1 (``node_order`` is still written: ``from_graph`` needs it).
        level: ``node_level``; level_x: ``x[:, level]``; log_res_x: ``x[:, log_res]``.
        pos: [n, 3] float32 positions (``has_pos`` = 1), or None (zeros, ``has_pos`` = 0).
        meaning: [n, 3] float32 ``x[:, axis], x[:, log_freq], x[:, phase]`` (None: -1).
    """

    n: int
    type: NodeType
    layer: int = -1
    layer_x: float = -1.0
    order_start: int | None = None
    order_norm: float | None = None
    level: int = -1
    level_x: float = -1.0
    log_res_x: float = -1.0
    pos: Tensor | None = None
    meaning: Tensor | None = None


@dataclass
class EdgeBlock:
    """``n_rows * len(cols)`` edges: row node ``rows_start + r`` paired with node ``cols[k]``.

    Edge ``r * len(cols) + k`` of the block carries ``values[r, k]``; rows are the sources when
    ``rows_are_src`` (grid entry/cell -> features), else the targets (a weight matrix [out, in]
    has rows = output neurons, cols = input neurons).
    """

    type: EdgeType
    rows_start: int
    n_rows: int
    cols: Tensor
    values: Tensor
    rows_are_src: bool

    @property
    def n(self) -> int:
        return self.n_rows * int(self.cols.numel())


@dataclass
class CustomNodes:
    """``n`` consecutive nodes written by ``fill(views)``, where ``views`` maps every node
    attribute name to its [n, ...] slice; ``fill`` must write every element of every view."""

    n: int
    fill: Callable[[dict[str, Tensor]], None]


@dataclass
class CustomEdges:
    """``n`` consecutive edges written by ``fill(views)`` (``edge_index`` [2, n], ``edge_attr``
    [n, 1], ``edge_type`` [n] slices); ``fill`` must write every element."""

    n: int
    fill: Callable[[dict[str, Tensor]], None]


NODE_KEYS = ("node_type", "node_layer", "node_order", "node_level", "node_pos", "x")


def assemble(
    nodes: list[NodeBlock | CustomNodes], edges: list[EdgeBlock | CustomEdges]
) -> dict[str, Tensor]:
    """Fill the graph tensors (see :mod:`graphnerf.graph.schema`) from blocks, in block order.

    Every big tensor operation here runs as one parallel region; under CPU contention each such
    region can cost a scheduler time slice, so large families (hash entries) use one
    :class:`CustomNodes` / :class:`CustomEdges` for all levels instead of one block per level.
    """
    n_nodes = sum(b.n for b in nodes)
    n_edges = sum(e.n for e in edges)
    threads = CONVERT_THREADS if n_edges >= THREADS_MIN_EDGES else None
    with intra_op_threads(threads):
        return _fill(nodes, edges, n_nodes, n_edges)


def _fill(
    nodes: list[NodeBlock | CustomNodes],
    edges: list[EdgeBlock | CustomEdges],
    n_nodes: int,
    n_edges: int,
) -> dict[str, Tensor]:
    node_type = torch.empty(n_nodes, dtype=torch.long)
    node_layer = torch.empty(n_nodes, dtype=torch.long)
    node_order = torch.empty(n_nodes, dtype=torch.long)
    node_level = torch.empty(n_nodes, dtype=torch.long)
    node_pos = torch.empty(n_nodes, 3, dtype=torch.float32)
    x = torch.empty(n_nodes, len(X_COLUMNS), dtype=torch.float32)
    a = 0
    for b in nodes:
        if b.n == 0:
            continue
        s = slice(a, a + b.n)
        if isinstance(b, CustomNodes):
            b.fill(
                {
                    k: v[s]
                    for k, v in zip(
                        NODE_KEYS,
                        (node_type, node_layer, node_order, node_level, node_pos, x),
                        strict=True,
                    )
                }
            )
            a += b.n
            continue
        node_type[s].fill_(int(b.type))
        node_layer[s].fill_(b.layer)
        node_level[s].fill_(b.level)
        x[s] = x_row(b.layer_x, b.level_x, b.log_res_x, b.pos is not None)
        if b.order_start is None:
            node_order[s].fill_(-1)
        else:
            torch.arange(b.order_start, b.order_start + b.n, out=node_order[s])
            if b.order_norm is not None:
                x[s, _COL_ORDER] = torch.div(node_order[s], float(b.order_norm))
        if b.meaning is not None:
            x[s, _COL_AXIS : _COL_AXIS + 3] = b.meaning
        if b.pos is None:
            node_pos[s].zero_()
        else:
            node_pos[s] = b.pos
        a += b.n

    edge_index = torch.empty(2, n_edges, dtype=torch.long)
    edge_attr = torch.empty(n_edges, 1, dtype=torch.float32)
    edge_type = torch.empty(n_edges, dtype=torch.long)
    a = 0
    for e in edges:
        if e.n == 0:
            continue
        s = slice(a, a + e.n)
        if isinstance(e, CustomEdges):
            e.fill(
                {
                    "edge_index": edge_index[:, s],
                    "edge_attr": edge_attr[s],
                    "edge_type": edge_type[s],
                }
            )
            a += e.n
            continue
        k = int(e.cols.numel())
        row_ids = edge_index[0 if e.rows_are_src else 1, s].view(e.n_rows, k)
        col_ids = edge_index[1 if e.rows_are_src else 0, s].view(e.n_rows, k)
        ar = torch.arange(e.rows_start, e.rows_start + e.n_rows)
        row_ids.copy_(ar[:, None].expand(e.n_rows, k))
        col_ids.copy_(e.cols.view(1, k).expand(e.n_rows, k))
        edge_attr[s, 0].view(e.n_rows, k).copy_(e.values.reshape(e.n_rows, k))
        edge_type[s].fill_(int(e.type))
        a += e.n

    return {
        "edge_index": edge_index,
        "edge_attr": edge_attr,
        "edge_type": edge_type,
        "node_type": node_type,
        "node_layer": node_layer,
        "node_order": node_order,
        "node_level": node_level,
        "node_pos": node_pos,
        "x": x,
    }
