"""The functional probe: what a NeRF *computes*, sampled on a fixed grid, then PCA.

Every NeRF is queried at the same ``R^3`` points (cell centres of a regular grid over its AABB,
``R = 16`` by default). Its feature vector ``[4 R^3]`` holds, per point, the opacity of one grid
step ``alpha = 1 - exp(-sigma * h)`` (``h`` = cell size in world units; raw densities span orders
of magnitude, the opacity is what a renderer sees) and the colour weighted by it, ``alpha * rgb``
(colour in empty space never shows). PCA fitted on the train split's NeRFs reduces the vectors
to the encoder's embedding size ``D`` (at most the number of train NeRFs).

It needs no training and reads every architecture alike, since it only calls the field: the bar a
weight-space encoder must beat. Like the NeRFs themselves, it is not rotation invariant.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

__all__ = ["FunctionalProbe", "grid_points", "sample_field"]


def grid_points(aabb: Sequence[float], resolution: int = 16) -> tuple[Tensor, float]:
    """Cell centres ``[R^3, 3]`` (world units) of an ``R^3`` grid over ``aabb`` and the mean
    cell size ``h`` (world units)."""
    lo = torch.tensor(list(aabb[:3]), dtype=torch.float32)
    hi = torch.tensor(list(aabb[3:]), dtype=torch.float32)
    t = (torch.arange(resolution, dtype=torch.float32) + 0.5) / resolution
    g = torch.stack(torch.meshgrid(t, t, t, indexing="ij"), dim=-1).reshape(-1, 3)
    return lo + g * (hi - lo), float(((hi - lo) / resolution).mean())


def sample_field(field: torch.nn.Module, resolution: int = 16) -> Tensor:
    """Functional features ``[4 R^3]`` of one field: opacity per grid step, then opacity x rgb."""
    aabb = getattr(field, "aabb", None)
    if aabb is None:
        aabb = field.spec.aabb  # type: ignore[union-attr]
    pts, h = grid_points([float(v) for v in torch.as_tensor(aabb).tolist()], resolution)
    with torch.no_grad():
        sigma, rgb = field(pts)
    alpha = 1.0 - torch.exp(-sigma.float().clamp_min(0) * h)
    return torch.cat([alpha, (alpha[:, None] * rgb.float()).reshape(-1)])


class FunctionalProbe:
    """PCA of functional features, fitted on one set of NeRFs (``fit``) and applied to others."""

    def __init__(self, dims: int, seed: int = 0) -> None:
        self.dims = int(dims)
        self.seed = int(seed)
        self.pca = None

    def fit(self, features: np.ndarray) -> FunctionalProbe:
        from sklearn.decomposition import PCA

        n = min(self.dims, features.shape[0], features.shape[1])
        self.pca = PCA(n_components=n, random_state=self.seed).fit(features)
        return self

    @property
    def n_components(self) -> int:
        return 0 if self.pca is None else int(self.pca.n_components_)

    def transform(self, features: np.ndarray) -> np.ndarray:
        if self.pca is None:
            raise RuntimeError("FunctionalProbe.transform before fit")
        return self.pca.transform(features).astype(np.float32)
