"""The GMN in the probe runner: fields -> ``to_graph`` (defaults) -> :class:`GMNEncoder`."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor
from torch_geometric.data import Batch, Data

from ..fields import RadianceField
from ..graph import to_graph
from ..models.gmn import GMNConfig, GMNEncoder

__all__ = ["GMNProbe"]


class GMNProbe:
    """:class:`~graphnerf.probes.runner.ProbeModel` for a :class:`GMNEncoder` (default config
    unless ``cfg`` is given); items are the fields' parameter graphs from the default
    :func:`~graphnerf.graph.to_graph`."""

    def __init__(self, cfg: GMNConfig | None = None, graph_fn=to_graph) -> None:
        self.module = GMNEncoder(cfg or GMNConfig())
        self.embedding_dim = self.module.cfg.embedding_dim
        self.graph_fn = graph_fn

    def prepare(self, fields: Sequence[RadianceField]) -> list[Data]:
        return [self.graph_fn(f) for f in fields]

    def embed(self, items: Sequence[Data]) -> Tensor:
        return self.module(Batch.from_data_list(list(items)))
