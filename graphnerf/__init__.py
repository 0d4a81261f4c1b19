"""graphnerf: weight-space learning on neural radiance fields of many architectures.

Public API (data flow and layout: docs/design.md): ``ZOO``, ``build_field``, ``save_field``, ``load_field``, ``io``,
``to_graph``, ``from_graph``, and the field / spec classes.
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
    "losses",
    "models",
    "load_field",
    "save_field",
    "to_graph",
]
