"""Model inputs from NeRFs: parameter-graph batches (GMN) and token batches (SANE)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torch_geometric.data import Batch, Data

from ..fields import RadianceField
from ..tokens import Tokenizer, TokenSequence, collate

__all__ = ["as_field", "graph_batch", "plain_graph", "token_batch"]

#: Graph attributes that are labels, not structure: dropped before the encoder sees a graph.
_LABEL_KEYS = frozenset({"y", "rotation"})


def plain_graph(g: Data) -> Data:
    """The graph's tensor attributes only (no labels, no strings, no spec): graphs from
    ``to_graph`` and from the zoo's graph cache then batch together."""
    keep = {k: v for k, v in g.items() if isinstance(v, Tensor) and k not in _LABEL_KEYS}
    return Data(**keep, num_nodes=int(g.num_nodes))


def graph_batch(items: Sequence[RadianceField | Data]) -> Batch:
    """A PyG ``Batch`` of parameter graphs of fields (converted with ``to_graph``) or graphs."""
    from ..graph import to_graph

    graphs = [plain_graph(x if isinstance(x, Data) else to_graph(x)) for x in items]
    return Batch.from_data_list(graphs)


def as_field(x: RadianceField | Data) -> RadianceField:
    """A field from a field or a parameter graph (``from_graph``)."""
    if isinstance(x, RadianceField):
        return x
    if isinstance(x, Data):
        from ..graph import from_graph

        f = from_graph(x)
        if not isinstance(f, RadianceField):
            raise ValueError("SANE embeds zoo fields; this graph is not one of a zoo field")
        return f
    raise TypeError(f"expected a RadianceField or a torch_geometric Data, got {type(x).__name__}")


def token_batch(
    fields: Sequence[RadianceField | Data],
    tokenizer: Tokenizer,
    points: Tensor | None = None,
    seed: int = 0,
) -> TokenSequence:
    """A collated ``TokenSequence`` of fields, every field tokenised at the same ``points [P, 3]``
    (default: ``tokenizer.n_points`` points drawn with ``seed``, so embeddings are deterministic)."""
    if points is None:
        points = tokenizer.sample(torch.Generator().manual_seed(seed))[0]
    return collate([tokenizer(as_field(f).cpu(), points) for f in fields])


def move(x: Any, device: torch.device | str) -> Any:
    """``x`` (tensor, Batch, TokenSequence, dict/list of them) on ``device``."""
    if isinstance(x, Tensor | Batch | Data | TokenSequence):
        return x.to(device)
    if isinstance(x, dict):
        return {k: move(v, device) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return type(x)(move(v, device) for v in x)
    return x
