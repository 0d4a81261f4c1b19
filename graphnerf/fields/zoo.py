"""The 13 zoo architectures and `build_field`.

Training specs follow gmnerf / nf2vec; each of the 10 unseen variants changes one hyperparameter.
"""

from __future__ import annotations

import torch

from .base import RadianceField
from .hashgrid import HashGridField
from .mlp import MLPField
from .spec import FieldSpec, HashGridSpec, MLPSpec, SpecError, TriplaneSpec
from .triplane import TriplaneField

_MLP = MLPSpec()
_TRI = TriplaneSpec()
_HASH = HashGridSpec()

ZOO: dict[str, FieldSpec] = {
    "mlp": _MLP,
    "triplane": _TRI,
    "hash": _HASH,
    "mlp_2_layers": _MLP.replace(n_hidden_layers=2),
    "mlp_4_layers": _MLP.replace(n_hidden_layers=4),
    "mlp_32_width": _MLP.replace(n_neurons=32),
    "mlp_128_width": _MLP.replace(n_neurons=128),
    "triplane_16_resolution": _TRI.replace(resolution=16),
    "triplane_64_resolution": _TRI.replace(resolution=64),
    "triplane_8_channels": _TRI.replace(channels=8),
    "hash_11_table_size": _HASH.replace(log2_table_size=11),
    "hash_13_table_size": _HASH.replace(log2_table_size=13),
    "hash_8_levels": _HASH.replace(n_levels=8),
}
TRAINING_ARCHS: tuple[str, ...] = ("mlp", "triplane", "hash")
UNSEEN_ARCHS: tuple[str, ...] = tuple(k for k in ZOO if k not in TRAINING_ARCHS)

FIELD_CLASSES: dict[str, type[RadianceField]] = {
    "mlp": MLPField,
    "triplane": TriplaneField,
    "hash": HashGridField,
}


def resolve_spec(name_or_spec: str | FieldSpec) -> FieldSpec:
    """A zoo name or a spec -> the spec (clear error for unknown names)."""
    if isinstance(name_or_spec, FieldSpec):
        return name_or_spec
    if name_or_spec not in ZOO:
        raise SpecError(f"unknown architecture {name_or_spec!r}; the zoo has {sorted(ZOO)}")
    return ZOO[name_or_spec]


def arch_name(spec: FieldSpec) -> str | None:
    """The zoo name of a spec, or None when it is not one of the 13."""
    return next((k for k, v in ZOO.items() if v == spec), None)


def build_field(name_or_spec: str | FieldSpec, seed: int | None = 0) -> RadianceField:
    """Build a freshly initialised field (tcnn-style init) of a zoo name or any valid spec.

    Args:
        name_or_spec: one of ``ZOO``'s names, or a :class:`FieldSpec`.
        seed: initialisation seed (None: torch's global RNG).
    """
    spec = resolve_spec(name_or_spec)
    field = FIELD_CLASSES[spec.family](spec)
    gen = None if seed is None else torch.Generator().manual_seed(int(seed))
    field.reset_parameters(gen)
    return field
