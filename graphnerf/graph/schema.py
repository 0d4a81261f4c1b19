"""The parameter-graph schema shared by every architecture (contract; summary in docs/graph-schema.md).

A NeRF becomes one :class:`torch_geometric.data.Data` whose *edges carry the parameters*: every
trainable scalar of the field is exactly one edge, its value the edge feature. Nodes carry only
structure (what kind of neuron or grid element they are, and where), so that all node attributes
are a function of the architecture alone. Optional *derived* structure (probe vertices, below) is
typed apart, appended after the parameter graph, and ignored by ``from_graph``, which rebuilds
the field bit-identically with or without it.

Nodes (``node_type``, :class:`NodeType`):

* ``INPUT`` — a frequency-encoding input of the MLP (or an input of a plain ``nn.Sequential``).
* ``GRID_FEATURE`` — an MLP input fed by a grid: hash level ``l`` feature ``f`` is input neuron
  ``l * F + f``; tri-plane channel ``c`` is input neuron ``6 * n_frequencies + c`` (one node shared
  by the three planes, whose samples are summed).
* ``PAD_INPUT`` — a padded MLP input. tiny-cuda-nn feeds it the constant ``spec.pad_value`` (1), so
  its outgoing weights act exactly like biases of the first layer.
* ``HIDDEN`` — a hidden neuron (permutable: it has no order).
* ``OUTPUT`` — one of the 4 real outputs (rgb, density); ``PAD_OUTPUT`` — the padded outputs 4..15
  whose weights are parameters that nothing reads (kept so that every parameter is an edge).
* ``BIAS`` — ``nn.Sequential`` only: one node per ``nn.Linear`` with a bias, with one edge per
  bias value to that layer's output neurons (the Graph-Metanetworks convention).
* ``HASH_ENTRY`` — one node per hash-table entry of each level.
* ``PLANE_CELL`` — one node per cell of each of the three planes.
* ``PROBE_VERTEX`` — derived, hash grids only (``to_graph(..., probe_vertices=n)``, n = 8 by
  default, 0 for none): one node per point of an ``n x n x n`` lattice of cell centres over the
  AABB (see below).

Edges (``edge_type``, :class:`EdgeType`):

* ``WEIGHT`` in-neuron -> out-neuron, value ``W[out, in]``;
* ``PAD_WEIGHT`` hidden neuron -> ``PAD_OUTPUT`` neuron, value ``W[out, in]`` of the last matrix
  for ``out >= 4``: tiny-cuda-nn pads the 4 outputs to 16 and nothing reads the padded ones, so
  these ``12 * n_neurons`` weights (768 for 64 neurons, in every family) get no gradient and stay
  at their initial values. They are edges like every parameter (the lossless contract), typed
  apart so that an encoder can leave them out of value statistics and readouts (noise, not
  signal);
* ``BIAS`` bias node -> out-neuron, value ``bias[out]``;
* ``HASH`` entry ``e`` of level ``l`` -> feature node ``l * F + f``, value
  ``table[level_offsets[l] + e, f]``;
* ``PLANE`` cell ``(k, v, u)`` -> channel node ``c``, value ``triplane[k, v, u, c]``;
* ``PROBE`` (derived) probe vertex at ``p`` -> feature node ``l * F + f``, value
  ``field.features(p)[l * F + f]``: the feature the field interpolates at ``p`` from level ``l``,
  exactly what its MLP reads there.

There are no isolated nodes: every node has at least one edge. Node ids: MLP neurons layer by
layer, then bias nodes / grid nodes, then probe vertices; edges: weights (``PAD_WEIGHT`` rows
last), then bias / grid edges in the flat layout of their tensor, then probe edges.

Probe vertices (derived; :mod:`graphnerf.graph.probes`). An entry of a hashed level is read at
many vertices, so it has no position: 75 % of the ``hash`` spec's entries and all of
``hash_11_table_size``'s are unplaced, and an encoder cannot tell where their values sit. Probe
vertex ``i + j n + k n^2`` sits at ``node_pos = ((i, j, k) + 0.5) / n`` and has one ``PROBE``
edge to each of the ``L * F`` grid-feature nodes, so a graph gains ``n^3`` nodes and ``n^3 L F``
edges (n = 8: 512 and 4,096 for ``hash``, 16,384 for Instant-NGP's 16 x 2). Two designs were
weighed:

(a) probe -> the 8 corner entries it reads on every level, the trilinear weight as the edge
    value: ``8 L n^3`` edges (16,384 for ``hash``) whose values depend on the spec alone, never on
    the NeRF. The NeRF's values stay on the ``HASH`` edges, and in a directed GMN entry nodes
    never receive messages, so no value ever reaches a probe vertex unless every edge is also
    sent reversed (twice the edge work on all 12.2M edges of an Instant-NGP graph).
(b) (chosen) probe -> grid-feature node, the interpolated feature as the value: 4x fewer edges,
    and value and position meet on one edge, exactly like a dense level's entry, which the
    encoders already read. It costs one evaluation of the grid encoding at ``n^3`` points
    (7 ms at Instant-NGP scale for n = 8).

Measured on the ``hashed_hash`` probe (:mod:`graphnerf.probes`: a blob in one hashed level,
default ``GMNEncoder`` + linear head, 1,000 Adam steps, seeds 0 / 1): held-out R^2 of the blob
centre -0.33 / -0.18 without probe vertices, 0.96 / 0.85 with n = 8, hence the default.

Because the probe edges summarise the whole grid, the transform
:class:`~graphnerf.graph.probes.HashedLevelsViaProbes` can drop the hashed levels' entries and ``HASH`` edges from an
*encoder's* input (never from the lossless graph), which shrinks an Instant-NGP graph from
12.2M to 0.69M edges and 805 MB to 45 MB (``python -m graphnerf.perf.graph``).

Attributes (names are part of the contract; only ``edge_index`` is offset by PyG when batching):

=================  ============  ==============================================================
``edge_index``     [2, E] long   source, target node ids
``edge_attr``      [E, 1] f32    the parameter value, exactly (``PROBE``: the derived value)
``edge_type``      [E] long      :class:`EdgeType`
``node_type``      [N] long      :class:`NodeType`
``node_layer``     [N] long      MLP layer of a neuron (0 = MLP inputs, n_layers = outputs);
                                 a bias node has the layer of the inputs it sits beside;
                                 hash entries and plane cells -1
``node_order``     [N] long      index within its layer for input / output neurons (padded ones
                                 included); -1 for hidden neurons and bias nodes; entry index
                                 within its level for hash entries; ``v * R + u`` within its plane
                                 for cells; lattice index ``i + j n + k n^2`` for probes
``node_level``     [N] long      hash level of entries and grid-feature nodes; plane index of
                                 cells; -1 otherwise
``node_pos``       [N, 3] f32    where the field reads the node, AABB-normalised: dense hash
                                 vertex ``((x, y, z) - 0.5) / scale`` (about [0, 1]; tcnn's
                                 outermost vertices lie half a cell outside the box); plane
                                 cell: ``u / (R - 1)``, ``v / (R - 1)`` on the plane's two world
                                 axes, 0.5 on the third; probe vertex: its lattice point;
                                 zeros where there is no position
``x``              [N, 8] f32    normalised node features, columns :data:`X_COLUMNS`
``spec``           object        the ``FieldSpec`` (or :class:`SequentialSpec` for plain MLPs)
``num_nodes``      int           N
=================  ============  ==============================================================

``x`` columns (every value in [-1, 1]; -1 means "not applicable"). Every normaliser is a fixed
constant, never a per-spec size, so that a node that means the same thing in two architectures
gets the same row (an input sin(pi y) of ``mlp`` and of ``triplane``, a 16^3 hash level of
``hash`` and of ``hash_8_levels``), and nodes that are interchangeable by a symmetry of the field
get equal rows:

* ``layer`` — ``node_layer / n_layers`` in [0, 1]; -1 for grid nodes and probe vertices;
* ``order`` — an index that means the same in every architecture: output ``o / 3`` (r, g, b,
  density), and, for plain ``nn.Sequential`` MLPs, the input / output index ``i / (width - 1)``;
  -1 everywhere else: hidden neurons and bias nodes (permutable), frequency inputs (their meaning
  is in ``axis``, ``log_freq``, ``phase``), grid-feature nodes (the F features of a hash level, or
  the C channels of a tri-plane, are interchangeable: permuting them with the matching columns of
  the first weight matrix leaves the field unchanged), padded inputs (all fed the constant 1),
  padded outputs (read by nothing), hash entries, plane cells and probe vertices (a dense
  entry's, a cell's or a probe's meaning is its ``node_pos``; a hashed entry's index is a hash
  bucket). ``node_order`` keeps every index (``from_graph`` needs it; a probe vertex's is its
  lattice index);
* ``level`` — hash level ``l / 31`` (31: the largest level a spec allows) for entries and
  grid features, plane ``k / 2`` for cells; -1 otherwise;
* ``log_res`` — ``min(log2(resolution) / 16, 1)`` of the hash level / tri-plane of hash entries,
  plane cells and grid-feature nodes (2^16 is the largest resolution a spec allows), of the
  lattice (``n``) for probe vertices; -1 otherwise;
* ``has_pos`` — 1 where ``node_pos`` is a real position (dense hash vertices, plane cells, probe
  vertices), else 0;
* ``axis``, ``log_freq``, ``phase`` — what a tcnn Frequency input is: input ``d * 2F + 2k + s``
  computes ``sin(2^k pi x_d + s pi / 2)`` (:func:`graphnerf.fields.frequency_encoding`), so axis
  ``d / 2`` (x 0, y 0.5, z 1), log2 frequency ``k / 63`` (63: the largest a spec allows), phase
  ``s`` (0 sin, 1 cos); -1 for every other node.

Hash entries of a dense level beyond ``res^3`` (the table is rounded up to a multiple of 8) and
entries of hashed levels have no position.
"""

from __future__ import annotations

import enum
import math

SCHEMA_VERSION = 3

X_COLUMNS: tuple[str, ...] = (
    "layer",
    "order",
    "level",
    "log_res",
    "has_pos",
    "axis",
    "log_freq",
    "phase",
)
LOG_RES_NORM = 16.0  # log2 of the largest grid resolution (tcnn's limit)
LEVEL_NORM = 31.0  # largest hash level index a spec allows (32 levels)
LOG_FREQ_NORM = 63.0  # largest log2 frequency a spec allows (64 Frequency octaves)

NODE_ATTRS: tuple[str, ...] = (
    "node_type",
    "node_layer",
    "node_order",
    "node_level",
    "node_pos",
    "x",
)
EDGE_ATTRS: tuple[str, ...] = ("edge_index", "edge_attr", "edge_type")
GRAPH_TENSORS: tuple[str, ...] = EDGE_ATTRS + NODE_ATTRS


class NodeType(enum.IntEnum):
    """Kind of a node (``Data.node_type``)."""

    INPUT = 0
    HIDDEN = 1
    OUTPUT = 2
    PAD_INPUT = 3
    PAD_OUTPUT = 4
    BIAS = 5
    GRID_FEATURE = 6
    HASH_ENTRY = 7
    PLANE_CELL = 8
    PROBE_VERTEX = 9


class EdgeType(enum.IntEnum):
    """Kind of an edge (``Data.edge_type``)."""

    WEIGHT = 0
    BIAS = 1
    HASH = 2
    PLANE = 3
    PAD_WEIGHT = 4
    PROBE = 5


#: edge types that are not parameters but computed from them (``from_graph`` ignores them)
DERIVED_EDGE_TYPES: tuple[EdgeType, ...] = (EdgeType.PROBE,)
#: node types of derived structure (``from_graph`` ignores them)
DERIVED_NODE_TYPES: tuple[NodeType, ...] = (NodeType.PROBE_VERTEX,)


#: node types that are MLP neurons (have a layer >= 0 and an index within it)
NEURON_TYPES: tuple[NodeType, ...] = (
    NodeType.INPUT,
    NodeType.HIDDEN,
    NodeType.OUTPUT,
    NodeType.PAD_INPUT,
    NodeType.PAD_OUTPUT,
    NodeType.GRID_FEATURE,
)


class GraphError(ValueError):
    """Input that cannot be converted to a graph, or a graph that cannot be rebuilt."""


def log_res_feature(resolution: int) -> float:
    """The ``log_res`` column of ``x`` for a grid of this resolution."""
    return min(math.log2(resolution) / LOG_RES_NORM, 1.0)
