"""`MLPField`: the nf2vec NeRF (tcnn Frequency encoding + FullyFusedMLP, ReLU, no biases)."""

from __future__ import annotations

from torch import Tensor

from .base import RadianceField
from .encodings import frequency_encoding
from .spec import MLPSpec


class MLPField(RadianceField):
    spec: MLPSpec

    def __init__(self, spec: MLPSpec) -> None:
        super().__init__(spec)

    def features(self, x01: Tensor) -> Tensor:
        return frequency_encoding(x01, self.spec.n_frequencies)
