"""Field specifications: frozen dataclasses that fully determine a field's parameter shapes.

A spec is the architecture of a NeRF, nothing else: the same spec always builds parameters of the
same shapes, and the spec travels with every saved field (safetensors header) and every parameter
graph, so that a field can be rebuilt from either.

Three families, one spec class each (``MLPSpec``, ``TriplaneSpec``, ``HashGridSpec``), all sharing
the tiny-cuda-nn MLP head described by ``n_hidden_layers``, ``n_neurons`` and ``activation``.
Widths follow tiny-cuda-nn's FullyFusedMLP: the input and output widths are padded to multiples of
16, and padded inputs carry the value given by :attr:`FieldSpec.pad_value`.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

DEFAULT_AABB: tuple[float, ...] = (-0.7, -0.7, -0.7, 0.7, 0.7, 0.7)
ACTIVATIONS = ("relu", "sine")
MLP_OUTPUTS = 4  # rgb (3) + density (1), as in nf2vec / gmnerf
PAD_MULTIPLE = 16  # tiny-cuda-nn FullyFusedMLP granularity


class SpecError(ValueError):
    """A field specification is invalid; the message names the field and the allowed range."""


def next_multiple(n: int, m: int) -> int:
    """Smallest multiple of ``m`` that is ``>= n``."""
    return ((n + m - 1) // m) * m


def _check_range(family: str, name: str, value: Any, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise SpecError(f"{family}: {name} must be an integer, got {value!r}")
    if not lo <= value <= hi:
        raise SpecError(f"{family}: {name} must be in [{lo}, {hi}], got {value}")


@dataclass(frozen=True)
class FieldSpec:
    """Base of the three family specs. Use :meth:`from_dict` / :meth:`from_json` to load any."""

    family: ClassVar[str] = ""
    n_hidden_layers: int = 3
    n_neurons: int = 64
    activation: str = "relu"
    aabb: tuple[float, ...] = DEFAULT_AABB

    # ---------------------------------------------------------------- validation
    def __post_init__(self) -> None:
        object.__setattr__(self, "aabb", tuple(float(v) for v in self.aabb))
        self.validate()

    def validate(self) -> None:
        f = self.family
        _check_range(f, "n_hidden_layers", self.n_hidden_layers, 1, 16)
        _check_range(f, "n_neurons", self.n_neurons, 1, 1024)
        if self.activation not in ACTIVATIONS:
            raise SpecError(
                f"{f}: activation must be one of {ACTIVATIONS}, got {self.activation!r}"
            )
        if len(self.aabb) != 6 or not all(math.isfinite(v) for v in self.aabb):
            raise SpecError(
                f"{f}: aabb must be 6 finite numbers (min xyz, max xyz), got {self.aabb}"
            )
        if not all(self.aabb[i] < self.aabb[i + 3] for i in range(3)):
            raise SpecError(f"{f}: aabb min must be < max on every axis, got {self.aabb}")

    # ---------------------------------------------------------------- MLP head geometry
    @property
    def mlp_input_dim(self) -> int:
        """Number of real (unpadded) MLP inputs produced by the encoding."""
        raise NotImplementedError

    @property
    def pad_value(self) -> float:
        """Value of the padded MLP inputs (tcnn: 1 for Frequency/Identity encodings)."""
        return 1.0

    @property
    def mlp_widths(self) -> tuple[int, ...]:
        """Padded layer widths ``(in, hidden..., out)`` of the tcnn MLP, e.g. (144, 64, 64, 64, 16)."""
        return (
            next_multiple(self.mlp_input_dim, PAD_MULTIPLE),
            *([self.n_neurons] * self.n_hidden_layers),
            next_multiple(MLP_OUTPUTS, PAD_MULTIPLE),
        )

    @property
    def mlp_param_count(self) -> int:
        w = self.mlp_widths
        return sum(a * b for a, b in zip(w[:-1], w[1:], strict=True))

    def param_counts(self) -> dict[str, int]:
        """Parameter counts keyed like the tcnn / gmnerf checkpoint tensors."""
        return {"mlp_base.params": self.mlp_param_count}

    @property
    def n_params(self) -> int:
        return sum(self.param_counts().values())

    # ---------------------------------------------------------------- serialisation
    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"family": self.family}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            d[f.name] = list(v) if isinstance(v, tuple) else v
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def replace(self, **changes: Any) -> FieldSpec:
        return dataclasses.replace(self, **changes)

    @staticmethod
    def from_dict(d: dict[str, Any]) -> FieldSpec:
        if not isinstance(d, dict):
            raise SpecError(f"a field spec must be a JSON object, got {type(d).__name__}")
        family = d.get("family")
        if family not in SPEC_CLASSES:
            raise SpecError(
                f"unknown field family {family!r}; expected one of {sorted(SPEC_CLASSES)}"
            )
        cls = SPEC_CLASSES[family]
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names - {"family"}
        if unknown:
            raise SpecError(
                f"{family}: unknown spec field(s) {sorted(unknown)}; expected {sorted(names)}"
            )
        kwargs = {k: (tuple(v) if k == "aabb" else v) for k, v in d.items() if k != "family"}
        return cls(**kwargs)

    @staticmethod
    def from_json(s: str) -> FieldSpec:
        try:
            d = json.loads(s)
        except json.JSONDecodeError as e:
            raise SpecError(f"field spec is not valid JSON: {e}") from e
        return FieldSpec.from_dict(d)


@dataclass(frozen=True)
class MLPSpec(FieldSpec):
    """Plain NeRF MLP (nf2vec): tcnn Frequency encoding then a FullyFusedMLP.

    Inputs: 3 dims x ``n_frequencies`` x (sin, cos) = 6F features, padded with ones to 16k.
    """

    family: ClassVar[str] = "mlp"
    n_frequencies: int = 24

    def validate(self) -> None:
        super().validate()
        _check_range(self.family, "n_frequencies", self.n_frequencies, 1, 64)

    @property
    def mlp_input_dim(self) -> int:
        return 6 * self.n_frequencies


@dataclass(frozen=True)
class TriplaneSpec(FieldSpec):
    """Tri-plane field (gmnerf): 3 planes [R, R, C] sampled bilinearly and summed, concatenated
    after a Frequency encoding of the position, then a tcnn MLP with sine activations.
    """

    family: ClassVar[str] = "triplane"
    activation: str = "sine"
    n_frequencies: int = 48
    resolution: int = 32
    channels: int = 16

    def validate(self) -> None:
        super().validate()
        _check_range(self.family, "n_frequencies", self.n_frequencies, 0, 64)
        _check_range(self.family, "resolution", self.resolution, 2, 1024)
        _check_range(self.family, "channels", self.channels, 1, 256)

    @property
    def mlp_input_dim(self) -> int:
        return 6 * self.n_frequencies + self.channels

    @property
    def plane_shape(self) -> tuple[int, int, int, int]:
        return (3, self.resolution, self.resolution, self.channels)

    def param_counts(self) -> dict[str, int]:
        return {"triplane": int(np.prod(self.plane_shape)), **super().param_counts()}


@dataclass(frozen=True)
class HashGridSpec(FieldSpec):
    """Multi-resolution hash grid (Instant-NGP / tiny-cuda-nn HashGrid) + tcnn MLP.

    The per-level scale is derived as in gmnerf: ``exp((ln max_res - ln base_res) / (L - 1))``.
    """

    family: ClassVar[str] = "hash"
    n_levels: int = 4
    n_features_per_level: int = 2
    log2_table_size: int = 12
    base_resolution: int = 16
    max_resolution: int = 128

    def validate(self) -> None:
        super().validate()
        f = self.family
        _check_range(f, "n_levels", self.n_levels, 1, 32)
        _check_range(f, "n_features_per_level", self.n_features_per_level, 1, 8)
        _check_range(f, "log2_table_size", self.log2_table_size, 8, 24)
        _check_range(f, "base_resolution", self.base_resolution, 2, 1 << 16)
        _check_range(f, "max_resolution", self.max_resolution, 2, 1 << 16)
        if self.max_resolution < self.base_resolution:
            raise SpecError(
                f"{f}: max_resolution must be >= base_resolution, got "
                f"{self.max_resolution} < {self.base_resolution}"
            )

    @property
    def per_level_scale(self) -> float:
        if self.n_levels == 1:
            return 1.0
        return float(
            np.exp(
                (np.log(self.max_resolution) - np.log(self.base_resolution)) / (self.n_levels - 1)
            )
        )

    @property
    def level_scales(self) -> np.ndarray:
        """tcnn ``grid_scale`` per level, computed in float32 as tcnn does: [L] float32."""
        log2_s = np.log2(np.float32(self.per_level_scale)).astype(np.float32)
        levels = np.arange(self.n_levels, dtype=np.float32)
        return (
            np.exp2(levels * log2_s) * np.float32(self.base_resolution) - np.float32(1.0)
        ).astype(np.float32)

    @property
    def level_resolutions(self) -> np.ndarray:
        """Grid resolution per level, ``ceil(scale) + 1``: [L] int64."""
        return (np.ceil(self.level_scales).astype(np.int64) + 1).astype(np.int64)

    @property
    def level_table_sizes(self) -> np.ndarray:
        """Entries per level: min(next multiple of 8 of res^3, 2^log2_table_size): [L] int64."""
        dense = np.array([next_multiple(int(r) ** 3, 8) for r in self.level_resolutions])
        return np.minimum(dense, 1 << self.log2_table_size).astype(np.int64)

    @property
    def level_is_dense(self) -> np.ndarray:
        """True where a level is stored densely (res^3 <= its table size): [L] bool."""
        return np.array([int(r) ** 3 for r in self.level_resolutions]) <= self.level_table_sizes

    @property
    def level_offsets(self) -> np.ndarray:
        """Start entry of each level in the flat table, plus the total: [L + 1] int64."""
        return np.concatenate([[0], np.cumsum(self.level_table_sizes)]).astype(np.int64)

    @property
    def n_entries(self) -> int:
        return int(self.level_table_sizes.sum())

    @property
    def mlp_input_dim(self) -> int:
        return self.n_levels * self.n_features_per_level

    def param_counts(self) -> dict[str, int]:
        return {
            "encoding.params": self.n_entries * self.n_features_per_level,
            **super().param_counts(),
        }


SPEC_CLASSES: dict[str, type[FieldSpec]] = {
    cls.family: cls for cls in (MLPSpec, TriplaneSpec, HashGridSpec)
}
