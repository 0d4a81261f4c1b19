"""graphnerf: weight-space learning on neural radiance fields of many architectures.

Public API (data flow and layout: docs/design.md): ``ZOO``, ``build_field``, ``save_field``, ``load_field``, ``io``,
``to_graph``, ``from_graph``, and the field / spec classes; ``pretrained(name)`` /
``list_pretrained()``: the shipped trained encoders (:mod:`graphnerf.train.pretrained`).
"""

from . import graph, io, losses, models
from .fields import (
    ZOO,
    FieldSpec,
    HashGridField,
    HashGridSpec,
    MLPField,
    MLPSpec,
    RadianceField,
    TriplaneField,
    TriplaneSpec,
    build_field,
)
from .graph import from_graph, to_graph
from .io import load_field, save_field

__version__ = "0.1.0"


def pretrained(name: str, device: str = "cpu", weights_dir: str | None = None):
    """The shipped pretrained encoder ``name`` (a :class:`graphnerf.train.TrainedEncoder`:
    ``.embed(fields) -> [B, D]``, ``.relative_rotation(a, b) -> [B, 4]``); see
    :func:`graphnerf.train.pretrained.pretrained`. Names: :func:`list_pretrained`."""
    from .train.pretrained import pretrained as _pretrained

    return _pretrained(name, device=device, weights_dir=weights_dir)


def list_pretrained(weights_dir: str | None = None) -> dict:
    """``{name: model card}`` of the shipped pretrained encoders (graphnerf/weights/, or
    ``$GRAPHNERF_WEIGHTS_DIR``); see :func:`graphnerf.train.pretrained.list_pretrained`."""
    from .train.pretrained import list_pretrained as _list

    return _list(weights_dir)


__all__ = [
    "ZOO",
    "FieldSpec",
    "HashGridField",
    "HashGridSpec",
    "MLPField",
    "MLPSpec",
    "RadianceField",
    "TriplaneField",
    "TriplaneSpec",
    "build_field",
    "from_graph",
    "graph",
    "io",
    "list_pretrained",
    "losses",
    "models",
    "load_field",
    "pretrained",
    "save_field",
    "to_graph",
]
