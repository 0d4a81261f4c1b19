"""Hash-grid fields as graphs: one node per table entry of each level, F feature nodes per level.

The feature nodes *are* the MLP's input neurons ``l * F + f`` (tcnn concatenates the levels'
interpolated features, level-major, features innermost), so the table feeds the MLP directly and
no node is isolated. The edge from entry ``e`` of level ``l`` to feature node ``l * F + f`` carries
``table[level_offsets[l] + e, f]``; edges are listed level by level, entry-major, feature innermost,
which is exactly the flat tcnn layout ``table.reshape(-1)``.

Entries of a dense level (``res^3 <= table size``, index ``x + y res + z res^2``) get the position
where the field reads vertex (x, y, z) with weight 1, ``((x, y, z) - 0.5) / scale`` in AABB-normalised
coordinates (tcnn's ``pos = scale * x + 0.5``); the up-to-7 padding entries past ``res^3`` and every entry of a hashed
level have none (a hashed entry is shared by many vertices).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..fields import HashGridField, HashGridSpec
from .builder import CustomEdges, CustomNodes, x_row
from .mlp import Segment, head_edge_counts, head_structure, head_weight_blocks, load_head
from .rebuild import GraphView, place, take, weight_positions
from .schema import LEVEL_NORM, X_COLUMNS, EdgeType, GraphError, NodeType, log_res_feature

_COL_HAS_POS = X_COLUMNS.index("has_pos")


def _level_x(level: int) -> float:
    """``x[:, level]`` of hash level ``level``: a fixed normaliser, equal across specs."""
    return level / LEVEL_NORM


def dense_positions(res: int, scale: float) -> Tensor:
    """[res^3, 3] float32 positions of entries ``x + y res + z res^2`` of a dense level: where the
    field reads vertex ``i`` with weight 1, in AABB-normalised coordinates. tcnn samples at
    ``pos = scale * x + 0.5``, so vertex i sits at ``(i - 0.5) / scale``, which spans about
    [-0.5 / scale, 1 + 0.5 / scale] (the outermost vertices lie half a cell outside the box)."""
    i = (torch.arange(res, dtype=torch.float64) - 0.5) / scale
    i = i.float()
    z, y, x = torch.meshgrid(i, i, i, indexing="ij")
    return torch.stack([x.reshape(-1), y.reshape(-1), z.reshape(-1)], 1)


class _HashEntries:
    """All levels' entry nodes and entry -> feature edges, written straight into the output
    tensors: no temporary as large as the table (each fresh page costs a fault, which dominates
    at Instant-NGP scale), and few tensor operations per level."""

    def __init__(self, field: HashGridField, entry_start: int, feat_start: int) -> None:
        spec = field.spec
        self.spec, self.table = spec, field.table
        self.entry_start, self.feat_start = entry_start, feat_start
        self.n = spec.n_entries
        self.sizes = [int(t) for t in spec.level_table_sizes]
        self.offsets = [int(o) for o in spec.level_offsets]
        self.res = [int(r) for r in spec.level_resolutions]
        self.scales = [float(s) for s in spec.level_scales]
        # entries with a position: the first res^3 of a dense level, none of a hashed one
        self.n_pos = [r**3 if d else 0 for r, d in zip(self.res, spec.level_is_dense, strict=True)]

    def fill_nodes(self, v: dict[str, Tensor]) -> None:
        n_lev = self.spec.n_levels
        v["node_type"].fill_(int(NodeType.HASH_ENTRY))
        v["node_layer"].fill_(-1)
        level, order, x, pos = v["node_level"], v["node_order"], v["x"], v["node_pos"]
        pos.zero_()
        for lv in range(n_lev):
            a, b = self.offsets[lv], self.offsets[lv + 1]
            level[a:b].fill_(lv)
            torch.arange(0, b - a, out=order[a:b])
            if self.n_pos[lv]:
                pos[a : a + self.n_pos[lv]] = dense_positions(self.res[lv], self.scales[lv])
        # x: one row per level gathered by node_level (the entry index is not a feature: a
        # dense entry's meaning is its node_pos, a hashed entry's index is a hash bucket)
        rows = torch.stack(
            [
                x_row(-1.0, _level_x(lv), log_res_feature(self.res[lv]), self.n_pos[lv] > 0)
                for lv in range(n_lev)
            ]
        )
        torch.index_select(rows, 0, level, out=x)
        for lv in range(n_lev):
            a, b = self.offsets[lv], self.offsets[lv + 1]
            if self.n_pos[lv]:  # table padding past res^3 has no position
                x[a + self.n_pos[lv] : b, _COL_HAS_POS] = 0.0

    def fill_edges(self, v: dict[str, Tensor]) -> None:
        n, n_feat = self.n, self.spec.n_features_per_level
        src, dst = v["edge_index"][0], v["edge_index"][1]
        # edge e * F + f leaves entry node entry_start + e: (entry_start * F + k) // F
        torch.arange(self.entry_start * n_feat, (self.entry_start + n) * n_feat, out=src)
        if n_feat & (n_feat - 1) == 0:
            src.bitwise_right_shift_(n_feat.bit_length() - 1)
        else:
            src.floor_divide_(n_feat)
        # ... and enters feature node feat_start + l * F + f
        dst2 = dst.view(n, n_feat)
        for lv in range(self.spec.n_levels):
            a, b = self.offsets[lv], self.offsets[lv + 1]
            for f in range(n_feat):
                dst2[a:b, f].fill_(self.feat_start + lv * n_feat + f)
        v["edge_attr"].view(n, n_feat).copy_(self.table)
        v["edge_type"].fill_(int(EdgeType.HASH))


def hash_field_blocks(field: HashGridField) -> tuple[list, list]:
    spec = field.spec
    n_lev, n_feat = spec.n_levels, spec.n_features_per_level
    res = [int(r) for r in spec.level_resolutions]
    inputs = [
        Segment(
            NodeType.GRID_FEATURE,
            n_feat,
            level=lv,
            level_x=_level_x(lv),
            log_res_x=log_res_feature(res[lv]),
        )
        for lv in range(n_lev)
    ]
    nodes, starts = head_structure(spec, inputs)
    edges: list = head_weight_blocks(field, starts)
    # the feature nodes of level l are the MLP inputs l*F .. l*F+F-1 (node ids from starts[0])
    entries = _HashEntries(field, entry_start=sum(b.n for b in nodes), feat_start=starts[0])
    nodes.append(CustomNodes(entries.n, entries.fill_nodes))
    edges.append(CustomEdges(entries.n * n_feat, entries.fill_edges))
    return nodes, edges


def hash_field_from_view(view: GraphView, spec: HashGridSpec) -> HashGridField:
    n_feat = spec.n_features_per_level
    n_table = spec.n_entries * n_feat
    view.expect_edges(spec, {**head_edge_counts(spec), EdgeType.HASH: n_table})
    w_pos, w_val = weight_positions(view, spec.mlp_widths)
    src, dst, val = view.edges(EdgeType.HASH)
    base, src_level, code, dst_level = view.grid_codes(
        NodeType.HASH_ENTRY,
        spec.n_levels,
        torch.from_numpy(spec.level_table_sizes),
        n_feat,
        first_input=0,
        n_inputs=spec.n_levels * n_feat,
        inputs_per_group=n_feat,
    )
    ok = take(src_level, src) == take(dst_level, dst)
    if not bool(ok.all()):
        raise GraphError(
            "graph does not match the spec: a HASH edge not from a hash entry of "
            "its level's table (node_level, node_order) to a grid-feature node of "
            "the same level"
        )
    t_pos = take(base, src).add_(take(code, dst)).add_(spec.mlp_param_count)
    flat = place(view, spec.mlp_param_count + n_table, [(w_pos, w_val), (t_pos, val)])
    field = HashGridField(spec)
    load_head(field, flat)
    with torch.no_grad():
        field.table.copy_(flat[spec.mlp_param_count :].view_as(field.table))
    return field
