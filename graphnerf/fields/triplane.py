"""`TriplaneField`: gmnerf's tri-plane NeRF.

MLP input = [Frequency(x in [0,1]) (6F), sum of the 3 planes' bilinear features (C)], padded with
ones to a multiple of 16 (tcnn.Network wraps an Identity encoding, which pads with 1).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .base import RadianceField
from .encodings import frequency_encoding, triplane_features
from .spec import TriplaneSpec

TRIPLANE_INIT_STD = 1e-3  # gmnerf: normal(0, 0.001)


class TriplaneField(RadianceField):
    spec: TriplaneSpec

    def __init__(self, spec: TriplaneSpec) -> None:
        super().__init__(spec)
        self.triplane = nn.Parameter(torch.empty(spec.plane_shape))

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        super().reset_parameters(generator)
        with torch.no_grad():
            self.triplane.normal_(0.0, TRIPLANE_INIT_STD, generator=generator)

    def features(self, x01: Tensor) -> Tensor:
        planes = triplane_features(2.0 * x01 - 1.0, self.triplane)
        if self.spec.n_frequencies == 0:
            return planes
        return torch.cat([frequency_encoding(x01, self.spec.n_frequencies), planes], 1)
