"""Plain MLPs (``nn.Sequential`` or a list of ``nn.Linear`` + activation modules) as graphs.

Neurons are laid out like a field's MLP head (inputs ``INPUT`` with order, hidden ``HIDDEN``
without, outputs ``OUTPUT`` with order). Biases follow Graph Metanetworks (Lim et al.): each
``nn.Linear`` that has a bias gets one ``BIAS`` node (``node_layer`` = the layer of its inputs)
with one ``BIAS`` edge per bias value to that layer's output neurons. The architecture — the
module sequence with the constructor arguments needed to rebuild it — travels in ``g.spec`` as a
:class:`SequentialSpec`, so :func:`graphnerf.from_graph` returns an equivalent ``nn.Sequential``.

Supported modules: ``nn.Linear`` and the parameter-free activations in :data:`ACTIVATIONS`
(nested ``nn.Sequential`` / ``nn.ModuleList`` are flattened). Anything else is rejected: a graph
must hold every parameter and be rebuildable.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from .builder import EdgeBlock, NodeBlock
from .mlp import Segment, neuron_blocks, weight_blocks
from .rebuild import GraphView, bias_positions, place, weight_positions
from .schema import EdgeType, GraphError, NodeType

#: parameter-free modules accepted between linear layers -> the constructor arguments kept
ACTIVATIONS: dict[str, tuple[str, ...]] = {
    "ReLU": (),
    "ReLU6": (),
    "LeakyReLU": ("negative_slope",),
    "ELU": ("alpha",),
    "CELU": ("alpha",),
    "SELU": (),
    "GELU": ("approximate",),
    "SiLU": (),
    "Mish": (),
    "Sigmoid": (),
    "Tanh": (),
    "Softplus": ("beta", "threshold"),
    "Softsign": (),
    "Hardtanh": ("min_val", "max_val"),
    "Hardswish": (),
    "Hardsigmoid": (),
    "Tanhshrink": (),
    "Identity": (),
    "Dropout": ("p",),
}


@dataclass(frozen=True)
class SequentialSpec:
    """Architecture of a plain MLP: ``modules`` = ((class name, JSON constructor kwargs), ...)."""

    family: ClassVar[str] = "sequential"
    modules: tuple[tuple[str, str], ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "modules", tuple((str(n), str(k)) for n, k in self.modules))
        lin = self.linears
        if not lin:
            raise GraphError("a Sequential needs at least one nn.Linear")
        for (name, _), _k in self.modules_kwargs():
            if name != "Linear" and name not in ACTIVATIONS:
                raise GraphError(f"unsupported module {name!r} in a Sequential spec")
        for i, (a, b) in enumerate(zip(lin[:-1], lin[1:], strict=True)):
            if a[1] != b[0]:
                raise GraphError(
                    f"Linear {i} has {a[1]} outputs but Linear {i + 1} has {b[0]} inputs"
                )

    def modules_kwargs(self) -> list[tuple[tuple[str, str], dict[str, Any]]]:
        return [((n, k), json.loads(k)) for n, k in self.modules]

    @property
    def linears(self) -> list[tuple[int, int, bool]]:
        """(in_features, out_features, bias) of each nn.Linear, in order."""
        return [
            (int(kw["in_features"]), int(kw["out_features"]), bool(kw["bias"]))
            for (n, _), kw in self.modules_kwargs()
            if n == "Linear"
        ]

    @property
    def widths(self) -> tuple[int, ...]:
        lin = self.linears
        return (lin[0][0], *(o for _, o, _ in lin))

    @property
    def has_bias(self) -> tuple[bool, ...]:
        return tuple(b for *_, b in self.linears)

    @property
    def weight_count(self) -> int:
        return sum(i * o for i, o, _ in self.linears)

    @property
    def bias_count(self) -> int:
        return sum(o for _, o, b in self.linears if b)

    def to_dict(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "modules": [{"type": n, **json.loads(k)} for n, k in self.modules],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @staticmethod
    def from_dict(d: dict[str, Any]) -> SequentialSpec:
        if d.get("family") != SequentialSpec.family:
            raise GraphError(f"not a Sequential spec: family {d.get('family')!r}")
        mods = []
        for m in d["modules"]:
            m = dict(m)
            name = m.pop("type")
            mods.append((name, json.dumps(m, sort_keys=True)))
        return SequentialSpec(tuple(mods))

    def build(self) -> nn.Sequential:
        """A fresh (uninitialised-weights) nn.Sequential of this architecture."""
        mods: list[nn.Module] = []
        for (name, _), kw in self.modules_kwargs():
            if name == "Linear":
                mods.append(nn.Linear(kw["in_features"], kw["out_features"], bias=kw["bias"]))
            else:
                mods.append(getattr(nn, name)(**kw))
        return nn.Sequential(*mods)


def _flatten(modules: Iterable[Any]) -> list[nn.Module]:
    out: list[nn.Module] = []
    for m in modules:
        if type(m) in (nn.Sequential, nn.ModuleList):
            out.extend(_flatten(m))
        elif isinstance(m, nn.Module):
            out.append(m)
        else:
            raise GraphError(f"a Sequential/list may only hold nn.Modules, got {type(m).__name__}")
    return out


def sequential_modules(model: Any) -> tuple[SequentialSpec, list[nn.Linear]]:
    """Validate a Sequential / list of modules and describe it."""
    mods = _flatten(model)
    desc: list[tuple[str, str]] = []
    linears: list[nn.Linear] = []
    for i, m in enumerate(mods):
        name = type(m).__name__
        if type(m) is nn.Linear:
            kw = {
                "in_features": m.in_features,
                "out_features": m.out_features,
                "bias": m.bias is not None,
            }
            linears.append(m)
        elif name in ACTIVATIONS and type(m) is getattr(nn, name):
            kw = {k: getattr(m, k) for k in ACTIVATIONS[name]}
        else:
            raise GraphError(
                f"module {i} ({name}) is not supported in a Sequential: to_graph takes "
                f"nn.Linear and the parameter-free activations {sorted(ACTIVATIONS)}"
            )
        desc.append((name, json.dumps(kw, sort_keys=True)))
    return SequentialSpec(tuple(desc)), linears


def sequential_blocks(model: Any) -> tuple[SequentialSpec, list[NodeBlock], list[EdgeBlock]]:
    spec, linears = sequential_modules(model)
    widths = spec.widths
    n_layers = len(widths) - 1
    # a plain MLP's inputs and outputs are identified by their index alone
    nodes, starts = neuron_blocks(
        widths,
        [Segment(NodeType.INPUT, widths[0], order_norm=max(widths[0] - 1, 1))],
        [Segment(NodeType.OUTPUT, widths[-1], order_norm=max(widths[-1] - 1, 1))],
    )
    for i, m in enumerate(linears):
        for name, p in m.named_parameters():
            if p.numel() and not bool(torch.isfinite(p).all()):
                raise GraphError(f"Linear {i} {name} holds non-finite value(s) (NaN/inf)")
    weights: list[Tensor] = [m.weight.detach() for m in linears]
    edges = weight_blocks(weights, starts)
    nid = sum(widths)
    for i, m in enumerate(linears):
        if m.bias is None:
            continue
        nodes.append(NodeBlock(n=1, type=NodeType.BIAS, layer=i, layer_x=i / n_layers))
        edges.append(
            EdgeBlock(
                type=EdgeType.BIAS,
                rows_start=starts[i + 1],
                n_rows=widths[i + 1],
                cols=torch.tensor([nid]),
                values=m.bias.detach()[:, None],
                rows_are_src=False,
            )
        )
        nid += 1
    return spec, nodes, edges


def sequential_from_view(view: GraphView, spec: SequentialSpec) -> nn.Sequential:
    view.expect_edges(spec, {EdgeType.WEIGHT: spec.weight_count, EdgeType.BIAS: spec.bias_count})
    widths, nw = spec.widths, spec.weight_count
    parts = [weight_positions(view, widths)]
    if spec.bias_count:
        parts.append(bias_positions(view, widths, spec.has_bias, base=nw))
    flat = place(view, nw + spec.bias_count, parts)
    model = spec.build()
    a, b = 0, nw
    with torch.no_grad():
        for m in model:
            if type(m) is not nn.Linear:
                continue
            m.weight.copy_(flat[a : a + m.weight.numel()].view_as(m.weight))
            a += m.weight.numel()
            if m.bias is not None:
                m.bias.copy_(flat[b : b + m.bias.numel()])
                b += m.bias.numel()
    return model
