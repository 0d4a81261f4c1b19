"""The MLP part of every parameter graph (neurons and weight edges), and the MLP family.

Neurons are numbered layer by layer (inputs, hidden layers, outputs), each layer in neuron order,
so that neuron ``i`` of layer ``l`` has node id ``layer_starts[l] + i``. A layer is described by
:class:`Segment` runs (e.g. the input layer of a hash-grid field is L runs of F grid-feature
neurons, one per level, then the padded inputs).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ..fields import MLPField, MLPSpec
from ..fields.spec import MLP_OUTPUTS
from .builder import EdgeBlock, NodeBlock
from .rebuild import GraphView, place, weight_positions
from .schema import LOG_FREQ_NORM, EdgeType, NodeType


@dataclass(frozen=True, eq=False)
class Segment:
    """A run of ``n`` neurons of one type inside a layer (grid-feature runs carry their level).

    ``order_norm``: ``x[:, order] = index in the layer / order_norm`` for neurons whose index
    means the same in every architecture (None: -1); ``meaning``: [n, 3] ``axis, log_freq,
    phase`` columns of ``x`` (None: -1).
    """

    type: NodeType
    n: int
    level: int = -1
    level_x: float = -1.0
    log_res_x: float = -1.0
    order_norm: float | None = None
    meaning: Tensor | None = None


def frequency_meaning(n_frequencies: int) -> Tensor:
    """[6 F, 3] ``x`` columns ``axis, log_freq, phase`` of tcnn Frequency inputs: input ``d * 2F
    + 2k + s`` is ``sin(2^k pi x_d + s pi / 2)`` (:func:`~graphnerf.fields.frequency_encoding`),
    so axis ``d / 2``, log2 frequency ``k / LOG_FREQ_NORM``, phase ``s`` (0 sin, 1 cos)."""
    i = torch.arange(6 * n_frequencies)
    d, k, s = i // (2 * n_frequencies), (i % (2 * n_frequencies)) // 2, i % 2
    return torch.stack([d / 2.0, k / LOG_FREQ_NORM, s.float()], 1).float()


def neuron_blocks(
    widths: Sequence[int],
    inputs: Sequence[Segment],
    outputs: Sequence[Segment],
) -> tuple[list[NodeBlock], list[int]]:
    """Node blocks of all neurons and the first node id of each layer.

    Input and output neurons are ordered (``node_order`` = index in the layer), hidden ones are not;
    the ``order`` column of ``x`` is set only for segments with an ``order_norm``.
    """
    n_layers = len(widths) - 1
    for name, segs, w in (("input", inputs, widths[0]), ("output", outputs, widths[-1])):
        if sum(s.n for s in segs) != w:
            raise AssertionError(f"{name} segments {segs} do not add up to width {w}")
    blocks: list[NodeBlock] = []
    starts: list[int] = []
    nid = 0
    for layer, width in enumerate(widths):
        starts.append(nid)
        layer_x = layer / n_layers
        if layer in (0, n_layers):
            order = 0
            for s in inputs if layer == 0 else outputs:
                blocks.append(
                    NodeBlock(
                        n=s.n,
                        type=s.type,
                        layer=layer,
                        layer_x=layer_x,
                        order_start=order,
                        order_norm=s.order_norm,
                        level=s.level,
                        level_x=s.level_x,
                        log_res_x=s.log_res_x,
                        meaning=s.meaning,
                    )
                )
                order += s.n
        else:
            blocks.append(NodeBlock(n=width, type=NodeType.HIDDEN, layer=layer, layer_x=layer_x))
        nid += width
    return blocks, starts


def weight_blocks(
    weights: Sequence[Tensor], starts: Sequence[int], real_outputs: int | None = None
) -> list[EdgeBlock]:
    """One block per matrix: row o (output neuron) x column i (input neuron) -> ``W[o, i]``.

    With ``real_outputs``, rows ``>= real_outputs`` of the last matrix (the weights into tcnn's
    padded outputs, never trained) become a second block of type ``PAD_WEIGHT``; the edges keep
    the row-major order of the matrix either way.
    """
    blocks = []
    last = len(weights) - 1
    for layer, w in enumerate(weights):
        n_out, n_in = w.shape
        cols = torch.arange(starts[layer], starts[layer] + n_in)
        split = n_out if real_outputs is None or layer != last else min(real_outputs, n_out)
        for a, b, t in ((0, split, EdgeType.WEIGHT), (split, n_out, EdgeType.PAD_WEIGHT)):
            if b > a:
                blocks.append(
                    EdgeBlock(
                        type=t,
                        rows_start=starts[layer + 1] + a,
                        n_rows=b - a,
                        cols=cols,
                        values=w[a:b],
                        rows_are_src=False,
                    )
                )
    return blocks


def head_weight_blocks(field, starts: Sequence[int]) -> list[EdgeBlock]:
    """Weight blocks of a field's tcnn MLP head: rows past the 4 real outputs are ``PAD_WEIGHT``."""
    return weight_blocks(list(field.mlp.weights), starts, MLP_OUTPUTS)


def head_edge_counts(spec) -> dict[EdgeType, int]:
    """WEIGHT and PAD_WEIGHT edge counts of a field's MLP head."""
    pad = (spec.mlp_widths[-1] - MLP_OUTPUTS) * spec.mlp_widths[-2]
    return {EdgeType.WEIGHT: spec.mlp_param_count - pad, EdgeType.PAD_WEIGHT: pad}


def frequency_segment(n_frequencies: int) -> Segment:
    """The 6 F tcnn Frequency inputs of a field (order-free: axis, frequency, phase say it all)."""
    return Segment(NodeType.INPUT, 6 * n_frequencies, meaning=frequency_meaning(n_frequencies))


def output_segments(width: int) -> list[Segment]:
    """The tcnn output layer: 4 real outputs (rgb, density), then padded ones."""
    return [
        Segment(NodeType.OUTPUT, MLP_OUTPUTS, order_norm=MLP_OUTPUTS - 1),  # r, g, b, density
        Segment(NodeType.PAD_OUTPUT, width - MLP_OUTPUTS),
    ]


def head_structure(spec, inputs: Sequence[Segment]) -> tuple[list[NodeBlock], list[int]]:
    """Neuron blocks of a field's tcnn MLP head given its input-layer segments."""
    widths = spec.mlp_widths
    pad = widths[0] - sum(s.n for s in inputs)
    segs = [s for s in inputs if s.n] + ([Segment(NodeType.PAD_INPUT, pad)] if pad else [])
    return neuron_blocks(widths, segs, output_segments(widths[-1]))


# ------------------------------------------------------------------ the MLP family
def mlp_field_blocks(field: MLPField) -> tuple[list[NodeBlock], list[EdgeBlock]]:
    spec = field.spec
    inputs = [frequency_segment(spec.n_frequencies)]
    nodes, starts = head_structure(spec, inputs)
    return nodes, head_weight_blocks(field, starts)


def load_head(field, flat: Tensor) -> None:
    """Copy the first ``mlp_param_count`` values of ``flat`` into the field's MLP matrices."""
    a = 0
    with torch.no_grad():
        for w in field.mlp.weights:
            w.copy_(flat[a : a + w.numel()].view_as(w))
            a += w.numel()


def mlp_field_from_view(view: GraphView, spec: MLPSpec) -> MLPField:
    view.expect_edges(spec, head_edge_counts(spec))
    pos, val = weight_positions(view, spec.mlp_widths)
    flat = place(view, spec.mlp_param_count, [(pos, val)])
    field = MLPField(spec)
    load_head(field, flat)
    return field
