"""Tri-plane fields as graphs: one node per cell of each plane, one per channel.

The C channel nodes *are* the MLP input neurons ``6 * n_frequencies + c`` and are shared by the
three planes (the planes' bilinear samples are summed before the MLP). Cell ``(k, v, u)`` (plane
``k``, row ``v``, column ``u``) is node ``cells_start + k R^2 + v R + u`` with ``node_order =
v R + u``; its edge to channel ``c`` carries ``triplane[k, v, u, c]``. Edges are listed cell-major,
channel innermost: exactly ``triplane.reshape(-1)`` (gmnerf pairs spatial-major edges with
channel-major values, scrambling the planes; here values and edges share one order).

Plane ``k`` spans the world axes ``TRIPLANE_AXES[k]`` = (u-axis, v-axis); a cell's ``node_pos``
is ``u / (R - 1)`` on the u-axis, ``v / (R - 1)`` on the v-axis and 0.5 on the third axis
(``grid_sample`` with ``align_corners=True`` puts cell centres exactly there in [0, 1]^3).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..fields import TriplaneField, TriplaneSpec
from ..fields.encodings import TRIPLANE_AXES
from .builder import EdgeBlock, NodeBlock
from .mlp import (
    Segment,
    frequency_segment,
    head_edge_counts,
    head_structure,
    head_weight_blocks,
    load_head,
)
from .rebuild import GraphView, place, take, weight_positions
from .schema import EdgeType, GraphError, NodeType, log_res_feature


def plane_positions(k: int, res: int) -> Tensor:
    """[R * R, 3] float32 positions of the cells of plane ``k``, row-major (v, u)."""
    i = torch.arange(res, dtype=torch.float32) / (res - 1)
    v, u = torch.meshgrid(i, i, indexing="ij")
    pos = torch.full((res * res, 3), 0.5)
    a, b = TRIPLANE_AXES[k]
    pos[:, a] = u.reshape(-1)
    pos[:, b] = v.reshape(-1)
    return pos


def triplane_field_blocks(field: TriplaneField) -> tuple[list[NodeBlock], list[EdgeBlock]]:
    spec = field.spec
    r, c = spec.resolution, spec.channels
    n_freq_in = 6 * spec.n_frequencies
    lr = log_res_feature(r)
    inputs = [
        frequency_segment(spec.n_frequencies),
        Segment(NodeType.GRID_FEATURE, c, log_res_x=lr),
    ]
    nodes, starts = head_structure(spec, inputs)
    edges = head_weight_blocks(field, starts)
    cells_start = sum(b.n for b in nodes)
    for k in range(3):
        nodes.append(
            NodeBlock(
                n=r * r,
                type=NodeType.PLANE_CELL,
                order_start=0,
                level=k,
                level_x=k / 2,
                log_res_x=lr,
                pos=plane_positions(k, r),
            )
        )
    chan0 = starts[0] + n_freq_in
    edges.append(
        EdgeBlock(
            type=EdgeType.PLANE,
            rows_start=cells_start,
            n_rows=3 * r * r,
            cols=torch.arange(chan0, chan0 + c),
            values=field.triplane.reshape(3 * r * r, c),
            rows_are_src=True,
        )
    )
    return nodes, edges


def triplane_field_from_view(view: GraphView, spec: TriplaneSpec) -> TriplaneField:
    r, c = spec.resolution, spec.channels
    n_planes = 3 * r * r * c
    view.expect_edges(spec, {**head_edge_counts(spec), EdgeType.PLANE: n_planes})
    w_pos, w_val = weight_positions(view, spec.mlp_widths)
    src, dst, val = view.edges(EdgeType.PLANE)
    base, plane, code, group = view.grid_codes(
        NodeType.PLANE_CELL,
        3,
        torch.full((3,), r * r),
        c,
        first_input=6 * spec.n_frequencies,
        n_inputs=c,
        inputs_per_group=c,
    )
    ok = (take(plane, src) >= 0) & (take(group, dst) == 0)
    if not bool(ok.all()):
        raise GraphError(
            "graph does not match the spec: a PLANE edge not from a cell of planes "
            f"0..2 with {r}x{r} cells to one of the {c} channel nodes"
        )
    p_pos = take(base, src).add_(take(code, dst)).add_(spec.mlp_param_count)
    flat = place(view, spec.mlp_param_count + n_planes, [(w_pos, w_val), (p_pos, val)])
    field = TriplaneField(spec)
    load_head(field, flat)
    with torch.no_grad():
        field.triplane.copy_(flat[spec.mlp_param_count :].view_as(field.triplane))
    return field
