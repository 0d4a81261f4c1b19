"""`HashGridField`: multi-resolution hash grid (tiny-cuda-nn HashGrid, exact) + tcnn MLP.

The table holds every level's entries, level-major, features innermost, so the tcnn flat
``encoding.params`` vector is ``table.reshape(-1)``. gmnerf builds this field as a separate
``tcnn.Encoding`` and ``tcnn.Network``; the latter wraps an Identity encoding, so the MLP inputs
beyond L*F are padded with ones (not zeros).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .base import RadianceField
from .encodings import hash_grid_encoding
from .spec import HashGridSpec

HASH_INIT_RANGE = 1e-4  # tcnn: uniform(-1e-4, 1e-4)


class HashGridField(RadianceField):
    spec: HashGridSpec

    def __init__(self, spec: HashGridSpec) -> None:
        super().__init__(spec)
        self.table = nn.Parameter(torch.empty(spec.n_entries, spec.n_features_per_level))
        self.register_buffer("scales", torch.from_numpy(spec.level_scales), persistent=False)
        self.register_buffer(
            "resolutions", torch.from_numpy(spec.level_resolutions), persistent=False
        )
        self.register_buffer(
            "table_sizes", torch.from_numpy(spec.level_table_sizes), persistent=False
        )
        self.register_buffer(
            "offsets", torch.from_numpy(spec.level_offsets[:-1].copy()), persistent=False
        )
        self.register_buffer("dense", torch.from_numpy(spec.level_is_dense), persistent=False)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        super().reset_parameters(generator)
        with torch.no_grad():
            self.table.uniform_(-HASH_INIT_RANGE, HASH_INIT_RANGE, generator=generator)

    def level_table(self, level: int) -> Tensor:
        """Entries of one level: [table_size_l, F] (a view of ``table``)."""
        a, b = self.spec.level_offsets[level], self.spec.level_offsets[level + 1]
        return self.table[a:b]

    def features(self, x01: Tensor) -> Tensor:
        return hash_grid_encoding(
            x01,
            self.table,
            self.scales,
            self.resolutions,
            self.table_sizes,
            self.offsets,
            self.dense,
        )
