"""`RadianceField`: the common base of every NeRF architecture in graphnerf."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from .spec import FieldSpec


class _TruncExp(torch.autograd.Function):
    """exp(x) whose gradient is computed with exp(min(x, 15)) (torch-ngp / nf2vec density)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        ctx.save_for_backward(x)
        return torch.exp(x)

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> Tensor:
        (x,) = ctx.saved_tensors
        return g * torch.exp(x.clamp(max=15.0))


def trunc_exp(x: Tensor) -> Tensor:
    return _TruncExp.apply(x)


class FusedMLP(nn.Module):
    """tiny-cuda-nn FullyFusedMLP/CutlassMLP without biases.

    ``weights[i]`` is the [out, in] matrix of layer i (row = output neuron, tcnn's row-major
    layout); hidden layers use ``activation`` (relu or sine), the output layer none.

    Args:
        widths: padded widths (in, hidden..., out), e.g. (144, 64, 64, 64, 16).
    """

    def __init__(self, widths: tuple[int, ...], activation: str) -> None:
        super().__init__()
        self.widths = tuple(int(w) for w in widths)
        self.activation = activation
        self.weights = nn.ParameterList(
            [
                nn.Parameter(torch.empty(o, i))
                for i, o in zip(self.widths[:-1], self.widths[1:], strict=True)
            ]
        )

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Xavier-uniform per matrix, as tcnn initialises its networks."""
        with torch.no_grad():
            for w in self.weights:
                bound = math.sqrt(6.0 / (w.shape[0] + w.shape[1]))
                w.uniform_(-bound, bound, generator=generator)

    def act(self, h: Tensor) -> Tensor:
        return torch.relu(h) if self.activation == "relu" else torch.sin(h)

    def forward(self, x: Tensor) -> Tensor:
        """[N, widths[0]] -> [N, widths[-1]]."""
        h = x
        for w in self.weights[:-1]:
            h = self.act(h @ w.t())
        return h @ self.weights[-1].t()


class RadianceField(nn.Module):
    """A NeRF: ``forward(x [N, 3] world coords) -> (sigma [N], rgb [N, 3])``.

    Positions are normalised to [0, 1]^3 over ``aabb`` before encoding (nf2vec / gmnerf);
    density is ``trunc_exp(raw - 1)`` (1 / world unit), zero outside the AABB; colour is
    ``sigmoid(raw)``. Subclasses define :meth:`features`; the MLP head is shared.

    Attributes:
        spec: the frozen :class:`FieldSpec` that determines every parameter shape.
        aabb: [6] buffer (min xyz, max xyz).
        mlp: :class:`FusedMLP` head.
        meta: free-form metadata (object id, class, rotation, fit metrics), saved with the field.
    """

    spec: FieldSpec

    def __init__(self, spec: FieldSpec) -> None:
        super().__init__()
        self.spec = spec
        self.register_buffer("aabb", torch.tensor(spec.aabb, dtype=torch.float32), persistent=False)
        self.mlp = FusedMLP(spec.mlp_widths, spec.activation)
        self.meta: dict[str, Any] = {}

    # -------------------------------------------------------------- to be defined by families
    def features(self, x01: Tensor) -> Tensor:
        """Encoded MLP inputs before padding: [N, 3] in [0,1] -> [N, spec.mlp_input_dim]."""
        raise NotImplementedError

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        self.mlp.reset_parameters(generator)

    # -------------------------------------------------------------- shared
    def normalize(self, x: Tensor) -> Tensor:
        """World coordinates [N, 3] -> [0, 1]^3 over the AABB."""
        lo, hi = self.aabb[:3], self.aabb[3:]
        return (x - lo) / (hi - lo)

    def encoding(self, x: Tensor) -> Tensor:
        """MLP input features in tcnn order, padded: [N, 3] world -> [N, spec.mlp_widths[0]]."""
        feats = self.features(self.normalize(x))
        pad = self.spec.mlp_widths[0] - feats.shape[1]
        if pad:
            feats = torch.cat(
                [feats, feats.new_full((feats.shape[0], pad), self.spec.pad_value)], 1
            )
        return feats

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if x.dim() != 2 or x.shape[1] != 3:
            raise ValueError(f"field input must be [N, 3] world positions, got {tuple(x.shape)}")
        x01 = self.normalize(x)
        inside = ((x01 > 0.0) & (x01 < 1.0)).all(-1)
        raw = self.mlp(self.encoding(x))
        sigma = trunc_exp(raw[:, 3] - 1.0) * inside
        return sigma, torch.sigmoid(raw[:, :3])

    def extra_repr(self) -> str:
        return f"spec={self.spec.to_json()}"
