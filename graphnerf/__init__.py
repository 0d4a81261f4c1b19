"""graphnerf: weight-space learning on neural radiance fields of many architectures."""

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

__version__ = "0.1.0"

__all__ = [
    "ZOO", "FieldSpec", "HashGridField", "HashGridSpec", "MLPField", "MLPSpec", "RadianceField",
    "TriplaneField", "TriplaneSpec", "build_field",
]
