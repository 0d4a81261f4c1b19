"""NeRF architectures: specs, the three field families and the 13-architecture zoo."""

from .base import FusedMLP, RadianceField, trunc_exp
from .encodings import frequency_encoding, hash_grid_encoding, hash_grid_indices, triplane_features
from .hashgrid import HashGridField
from .mlp import MLPField
from .spec import (
    DEFAULT_AABB,
    FieldSpec,
    HashGridSpec,
    MLPSpec,
    SpecError,
    TriplaneSpec,
)
from .triplane import TriplaneField
from .zoo import (
    FIELD_CLASSES,
    TRAINING_ARCHS,
    UNSEEN_ARCHS,
    ZOO,
    arch_name,
    build_field,
    resolve_spec,
)

__all__ = [
    "DEFAULT_AABB",
    "FIELD_CLASSES",
    "FieldSpec",
    "FusedMLP",
    "HashGridField",
    "HashGridSpec",
    "MLPField",
    "MLPSpec",
    "RadianceField",
    "SpecError",
    "TRAINING_ARCHS",
    "TriplaneField",
    "TriplaneSpec",
    "UNSEEN_ARCHS",
    "ZOO",
    "arch_name",
    "build_field",
    "frequency_encoding",
    "hash_grid_encoding",
    "hash_grid_indices",
    "resolve_spec",
    "trunc_exp",
    "triplane_features",
]
