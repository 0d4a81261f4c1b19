"""Parameter graphs: every NeRF (MLP, tri-plane, hash grid) or plain MLP as one PyG graph.

The schema (node and edge types, attribute names, ``x`` columns) is documented in
:mod:`graphnerf.graph.schema`; :func:`to_graph` / :func:`from_graph` convert both ways,
:func:`save_graph` / :func:`load_graph` store graphs, :class:`GraphZooDataset` serves a zoo folder.
"""

from .convert import DEFAULT_PROBE_VERTICES, from_graph, spec_from_json, to_graph
from .dataset import GraphZooDataset, read_manifest
from .probes import AddProbeVertices, HashedLevelsViaProbes, probe_points
from .schema import (
    SCHEMA_VERSION,
    X_COLUMNS,
    EdgeType,
    GraphError,
    NodeType,
)
from .sequential import SequentialSpec
from .serialize import graph_bytes, graph_summary, load_graph, save_graph

__all__ = [
    "DEFAULT_PROBE_VERTICES",
    "AddProbeVertices",
    "HashedLevelsViaProbes",
    "probe_points",
    "SCHEMA_VERSION",
    "X_COLUMNS",
    "EdgeType",
    "GraphError",
    "GraphZooDataset",
    "NodeType",
    "SequentialSpec",
    "from_graph",
    "graph_bytes",
    "graph_summary",
    "load_graph",
    "read_manifest",
    "save_graph",
    "spec_from_json",
    "to_graph",
]
