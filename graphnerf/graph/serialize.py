"""Graphs on disk (``.pt`` holding only tensors, strings and numbers) and a text summary.

The file is ``torch.save`` of a plain dict::

    {"format": "graphnerf.graph", "schema_version": 1, "num_nodes": N,
     "spec": "<spec JSON>", "tensors": {name: Tensor}, "extra": {name: str | int | float | bool}}

so it loads with ``torch.load(path, weights_only=True)``: nothing is unpickled. Writes go to a
temporary file in the same folder, then ``os.replace`` (atomic on POSIX and Windows).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch_geometric.data import Batch, Data

from ..atomic import atomic_write
from ..fields import FieldSpec, arch_name
from .convert import spec_from_json
from .schema import SCHEMA_VERSION, EdgeType, GraphError, NodeType

FORMAT = "graphnerf.graph"
_SCALARS = (str, int, float, bool)


def graph_to_dict(g: Data) -> dict[str, Any]:
    """A graph as a dict of tensors, the spec JSON and scalar extras (weights_only-loadable)."""
    if isinstance(g, Batch):
        raise GraphError("save one graph at a time (batch.to_data_list())")
    tensors: dict[str, Tensor] = {}
    extra: dict[str, Any] = {}
    spec = None
    for key, value in g.items():
        if key == "spec":
            spec = value.to_json()
        elif isinstance(value, Tensor):
            tensors[key] = value
        elif isinstance(value, _SCALARS) and key != "num_nodes":
            extra[key] = value
    return {
        "format": FORMAT,
        "schema_version": SCHEMA_VERSION,
        "num_nodes": int(g.num_nodes),
        "spec": spec,
        "tensors": tensors,
        "extra": extra,
    }


def graph_from_dict(d: Any, source: str = "<dict>") -> Data:
    """Inverse of :func:`graph_to_dict` (validates the container, not the graph)."""
    if not isinstance(d, dict) or d.get("format") != FORMAT:
        raise GraphError(f"{source}: not a graphnerf graph file")
    if d.get("schema_version") != SCHEMA_VERSION:
        raise GraphError(
            f"{source}: graph schema version {d.get('schema_version')} (this graphnerf reads "
            f"{SCHEMA_VERSION}); convert the NeRF again"
        )
    g = Data(**d["tensors"], **d.get("extra", {}))
    if d.get("spec") is not None:
        g.spec = spec_from_json(d["spec"])
    g.num_nodes = int(d["num_nodes"])
    return g


def atomic_torch_save(obj: Any, path: str | os.PathLike[str]) -> Path:
    """``torch.save`` atomically (:func:`graphnerf.atomic.atomic_write`); creates the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


def save_graph(g: Data, path: str | os.PathLike[str]) -> Path:
    """Write one graph to ``path`` (``.pt``; loadable with ``torch.load(weights_only=True)``)."""
    return atomic_torch_save(graph_to_dict(g), path)


def load_graph(path: str | os.PathLike[str]) -> Data:
    """Read a graph written by :func:`save_graph` (``weights_only=True``: no code is run)."""
    try:
        d = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as e:  # pickle/zip errors of a foreign or corrupt file
        raise GraphError(f"{os.fspath(path)}: cannot read graph: {type(e).__name__}: {e}") from e
    return graph_from_dict(d, os.fspath(path))


def graph_bytes(g: Data) -> int:
    """Bytes held by the graph's tensors."""
    return sum(v.numel() * v.element_size() for _, v in g.items() if isinstance(v, Tensor))


def _spec_label(spec: Any) -> str:
    if isinstance(spec, FieldSpec):
        name = arch_name(spec)
        return f"{name} ({spec.to_json()})" if name else spec.to_json()
    return spec.to_json() if spec is not None else "none"


def graph_summary(g: Data) -> str:
    """Node and edge counts by type (markdown tables), sizes, value ranges and the spec."""
    lines = [
        f"spec: {_spec_label(getattr(g, 'spec', None))}",
        f"nodes: {int(g.num_nodes):,}  edges: {int(g.edge_index.shape[1]):,}  "
        f"tensor bytes: {graph_bytes(g):,}",
        "",
        "| node type | count | layers |",
        "|---|---:|---|",
    ]
    counts = torch.bincount(g.node_type, minlength=len(NodeType))
    for t in NodeType:
        n = int(counts[t])
        if not n:
            continue
        lay = g.node_layer[g.node_type == t]
        lo, hi = int(lay.min()), int(lay.max())
        lines.append(f"| {t.name} | {n:,} | {lo if lo == hi else f'{lo}..{hi}'} |")
    lines += ["", "| edge type | count | min | max | mean abs |", "|---|---:|---:|---:|---:|"]
    ecounts = torch.bincount(g.edge_type, minlength=len(EdgeType))
    values = g.edge_attr.reshape(-1)
    for t in EdgeType:
        n = int(ecounts[t])
        if not n:
            continue
        v = values[g.edge_type == t]
        lines.append(
            f"| {t.name} | {n:,} | {float(v.min()):.4g} | {float(v.max()):.4g} | "
            f"{float(v.abs().mean()):.4g} |"
        )
    return "\n".join(lines)
