"""Probe vertices: derived structure that ties a hash grid to space (schema: ``PROBE_VERTEX``).

An entry of a hashed level is read at many grid vertices, so it has no position; a
hashed-only grid (``hash_11_table_size``) has no positioned node at all. Probe vertices give the
graph a fixed set of places where the grid is *read*: ``n^3`` nodes at the cell centres of an
``n x n x n`` lattice over the AABB, ``node_pos = ((i, j, k) + 0.5) / n`` (AABB-normalised, x
fastest: probe ``i + j n + k n^2``), each with one ``PROBE`` edge to every grid-feature node
``(l, f)`` whose value is the feature the field interpolates there,
``field.features(node_pos)[:, l * F + f]``. Value and position meet on one edge, as they do on a
dense level's ``HASH`` edges, and the ``P * L * F`` edges are few (512 * 4 * 2 = 4,096 for
``hash`` at n = 8).

These edges are *derived* (computed from the parameters, not parameters): ``from_graph`` ignores
them and the node ids / edges of the parameter graph come first, unchanged, so a graph with
probe vertices is the graph without them plus ``n^3`` nodes and ``P * L * F`` edges at the end.

* :func:`probe_points` — the lattice;
* :func:`probe_blocks` — the blocks :func:`~graphnerf.graph.to_graph` appends
  (``to_graph(field, probe_vertices=n)``);
* :class:`AddProbeVertices` — the same as a PyG transform of an existing graph (reads the table
  back with ``from_graph``);
* :class:`HashedLevelsViaProbes` — an *encoder view*: drops the hashed levels' entry nodes and
  ``HASH`` edges, so that an encoder sees those levels only through the probe vertices (an
  Instant-NGP graph shrinks from 12.2M to 0.69M edges, 805 MB to 45 MB). Not lossless; never
  feed it to ``from_graph``.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch_geometric.data import Batch, Data
from torch_geometric.transforms import BaseTransform

from ..fields import HashGridField, HashGridSpec
from .builder import EdgeBlock, NodeBlock
from .schema import EdgeType, GraphError, NodeType, log_res_feature

#: the largest lattice (per axis) to_graph accepts: 128^3 = 2M probe vertices
MAX_PROBE_LATTICE = 128


def check_lattice(n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_PROBE_LATTICE:
        raise GraphError(
            f"probe_vertices must be an integer lattice size in [1, {MAX_PROBE_LATTICE}] "
            f"(n^3 probe vertices) or 0 for none, got {n!r}"
        )
    return n


def probe_points(n: int) -> Tensor:
    """[n^3, 3] float32 AABB-normalised probe positions ``((i, j, k) + 0.5) / n``, x fastest."""
    c = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    z, y, x = torch.meshgrid(c, c, c, indexing="ij")
    return torch.stack([x.reshape(-1), y.reshape(-1), z.reshape(-1)], 1).float()


def probe_values(field: HashGridField, points: Tensor) -> Tensor:
    """[P, L * F] the grid features the field reads at ``points`` (exactly ``field.features``)."""
    with torch.no_grad():
        return field.features(points).float()


def probe_blocks(
    field: HashGridField, n: int, node_start: int, feat_start: int
) -> tuple[NodeBlock, EdgeBlock]:
    """The probe-vertex nodes (ids ``node_start ..``) and their PROBE edges to the grid-feature
    nodes ``feat_start + l * F + f``."""
    spec = field.spec
    pts = probe_points(check_lattice(n))
    n_in = spec.n_levels * spec.n_features_per_level
    nodes = NodeBlock(
        n=pts.shape[0],
        type=NodeType.PROBE_VERTEX,
        order_start=0,
        log_res_x=log_res_feature(n),
        pos=pts,
    )
    edges = EdgeBlock(
        type=EdgeType.PROBE,
        rows_start=node_start,
        n_rows=pts.shape[0],
        cols=torch.arange(feat_start, feat_start + n_in),
        values=probe_values(field, pts),
        rows_are_src=True,
    )
    return nodes, edges


def probe_counts(spec: HashGridSpec, n: int) -> tuple[int, int]:
    """(probe-vertex nodes, PROBE edges) of a lattice of size ``n``: ``n^3`` and ``n^3 L F``."""
    return n**3, n**3 * spec.n_levels * spec.n_features_per_level


def _single_spec(data: Data, transform: BaseTransform) -> object:
    if isinstance(data, Batch):
        raise GraphError(
            f"{type(transform).__name__} transforms one graph (use it as a dataset transform), "
            "not a Batch"
        )
    return getattr(data, "spec", None)


def _has_probes(g: Data) -> bool:
    return bool((g.node_type == NodeType.PROBE_VERTEX).any())


class AddProbeVertices(BaseTransform):
    """Append ``n^3`` probe vertices to a hash-grid graph made without them (module docstring).

    The table is read back with ``from_graph`` (vectorised), so the result equals
    ``to_graph(field, probe_vertices=n)`` exactly. Graphs of other families pass unchanged,
    so the transform can sit on a mixed-architecture dataset.
    """

    def __init__(self, n: int = 8) -> None:
        self.n = check_lattice(n)

    def forward(self, data: Data) -> Data:
        from .builder import assemble
        from .convert import from_graph

        spec = _single_spec(data, self)
        if not isinstance(spec, HashGridSpec):
            return data
        if _has_probes(data):
            raise GraphError("the graph already has probe vertices")
        field = from_graph(data)
        n_nodes = int(data.num_nodes)
        feat = _feature_node_ids(data, spec)
        nodes, edges = probe_blocks(field, self.n, node_start=n_nodes, feat_start=0)
        edges.cols = feat
        t = assemble([nodes], [edges])
        out = data  # BaseTransform passes a shallow copy: the caller's graph is untouched
        for k in ("node_type", "node_layer", "node_order", "node_level", "node_pos", "x"):
            out[k] = torch.cat([data[k], t[k]])
        for k, d in (("edge_index", 1), ("edge_attr", 0), ("edge_type", 0)):
            out[k] = torch.cat([data[k], t[k]], d)
        out.num_nodes = n_nodes + nodes.n
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n={self.n})"


def _feature_node_ids(g: Data, spec: HashGridSpec) -> Tensor:
    """[L * F] node id of MLP input ``l * F + f`` (the grid-feature nodes), by ``node_order``."""
    n_in = spec.n_levels * spec.n_features_per_level
    m = (g.node_type == NodeType.GRID_FEATURE).nonzero().squeeze(1)
    order = g.node_order[m]
    if m.numel() != n_in or not torch.equal(order.sort().values, torch.arange(n_in)):
        raise GraphError(f"graph does not have the {n_in} grid-feature nodes its spec needs")
    ids = torch.empty(n_in, dtype=torch.long)
    ids[order] = m
    return ids


class HashedLevelsViaProbes(BaseTransform):
    """Encoder view: remove the entry nodes and ``HASH`` edges of hashed levels (module
    docstring); dense levels, the MLP and the probe vertices stay. Graphs of other families,
    and hash graphs without hashed levels, pass unchanged. The result is not lossless:
    ``from_graph`` refuses it (its HASH edge count does not match the spec).

    Args:
        min_table_size: only drop hashed levels whose table has at least this many entries
            (0: every hashed level).
    """

    def __init__(self, min_table_size: int = 0) -> None:
        self.min_table_size = int(min_table_size)

    def forward(self, data: Data) -> Data:
        spec = _single_spec(data, self)
        if not isinstance(spec, HashGridSpec):
            return data
        sizes = torch.from_numpy(spec.level_table_sizes)
        drop_level = torch.from_numpy(~spec.level_is_dense) & (sizes >= self.min_table_size)
        if not bool(drop_level.any()):
            return data
        if not _has_probes(data):
            raise GraphError(
                "HashedLevelsViaProbes needs probe vertices (to_graph(..., probe_vertices=n) or "
                "AddProbeVertices): without them the hashed levels would vanish from the graph"
            )
        lut = torch.cat([drop_level, torch.zeros(1, dtype=torch.bool)])  # level -1 -> keep
        is_entry = data.node_type == NodeType.HASH_ENTRY
        lev = torch.where(is_entry, data.node_level, -1)
        drop_node = is_entry & lut[lev]  # lut[-1] is the appended False
        keep = ~drop_node
        new_id = torch.cumsum(keep, 0) - 1
        src = data.edge_index[0]
        keep_e = keep[src]  # a dropped node's edges are exactly the HASH edges leaving it
        out = Data(
            **{
                k: data[k][keep]
                for k in ("node_type", "node_layer", "node_order", "node_level", "node_pos", "x")
            }
        )
        out.edge_index = new_id[data.edge_index[:, keep_e]]
        out.edge_attr = data.edge_attr[keep_e]
        out.edge_type = data.edge_type[keep_e]
        out.spec = spec
        out.num_nodes = int(keep.sum())
        for k, v in data.items():  # manifest fields, labels, ...
            if k not in out:
                out[k] = v
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}(min_table_size={self.min_table_size})"
