"""tiny-cuda-nn flat parameters and gmnerf / nf2vec ``nerf_weights.pth`` checkpoints.

A tcnn module owns one flat ``params`` vector; a NeRF checkpoint is the ``state_dict`` of a module
holding such tcnn modules, so its keys are:

* MLP (nf2vec ``MlpRadianceField``: one ``tcnn.NetworkWithInputEncoding`` named ``mlp_base``):
  ``mlp_base.params``. The Frequency encoding has no parameters.
* tri-plane (gmnerf ``TriplaneRadianceField``): ``triplane`` [3, R, R, C] (a plain
  ``nn.Parameter``), ``encoding.params`` (a Frequency ``tcnn.Encoding``: zero values) and
  ``mlp_base.params`` (a ``tcnn.Network``).
* hash grid (gmnerf ``HashGridRadianceField``): ``encoding.params`` (a HashGrid
  ``tcnn.Encoding``) and ``mlp_base.params``.

Layouts: ``mlp_base.params`` is every [out, in] matrix of the FullyFusedMLP, in layer
order, each flattened row-major (row = output neuron), at the padded widths of
:attr:`FieldSpec.mlp_widths`; a hash grid's ``encoding.params`` is level-major, then entry, then
feature (``HashGridField.table.reshape(-1)``).

Empty ``encoding.params``: accepted on import for every family (gmnerf's tri-plane files hold a
zero-length one, and gmnerf's MLP dataset adds one in memory) and ignored. :func:`export_tcnn`
writes one for tri-planes only, so that its output has exactly the keys of gmnerf's
``TriplaneRadianceField.state_dict()`` (MLP: nf2vec's; hash: gmnerf's).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..fields import (
    FIELD_CLASSES,
    ZOO,
    FieldSpec,
    HashGridField,
    RadianceField,
    TriplaneField,
    TriplaneSpec,
    arch_name,
    resolve_spec,
)
from .errors import CheckpointError, check_finite

MLP_KEY = "mlp_base.params"
ENCODING_KEY = "encoding.params"
TRIPLANE_KEY = "triplane"
TCNN_KEYS: tuple[str, ...] = (TRIPLANE_KEY, ENCODING_KEY, MLP_KEY)
# dict keys under which training scripts commonly nest a state dict
WRAPPER_KEYS: tuple[str, ...] = (
    "state_dict",
    "model_state_dict",
    "model",
    "radiance_field",
    "nerf",
)
IN_MEMORY = "<in-memory params>"


# ------------------------------------------------------------------------------------ export
def export_tcnn(field: RadianceField) -> dict[str, Tensor]:
    """A field's parameters in the tiny-cuda-nn / gmnerf checkpoint layout.

    Returns:
        new float32 tensors (not views of the field), keyed and ordered like the gmnerf/nf2vec
        ``state_dict``: MLP ``{"mlp_base.params"}``; hash ``{"encoding.params",
        "mlp_base.params"}``; tri-plane ``{"triplane" [3, R, R, C], "encoding.params" (empty),
        "mlp_base.params"}``. ``torch.save`` of it is a valid ``nerf_weights.pth``.
    """
    if not isinstance(field, RadianceField):
        raise TypeError(f"export_tcnn expects a RadianceField, got {type(field).__name__}")
    mlp = torch.cat([w.detach().reshape(-1) for w in field.mlp.weights]).to(torch.float32)
    out: dict[str, Tensor] = {}
    if isinstance(field, TriplaneField):
        out[TRIPLANE_KEY] = field.triplane.detach().to(torch.float32).clone()
        out[ENCODING_KEY] = mlp.new_zeros(0)
    elif isinstance(field, HashGridField):
        out[ENCODING_KEY] = field.table.detach().to(torch.float32).reshape(-1).clone()
    out[MLP_KEY] = mlp
    return out


# ------------------------------------------------------------------------------------ import
def import_tcnn(
    params: Mapping[str, Any] | str | os.PathLike[str],
    spec: FieldSpec | str | None = None,
    *,
    allow_nonfinite: bool = False,
) -> RadianceField:
    """Build a field from tcnn flat parameters (a dict, or a gmnerf/nf2vec ``.pth`` file).

    Args:
        params: ``{"mlp_base.params", "encoding.params" | "triplane"}`` tensors, or the path of a
            ``.pth``/``.pt`` holding them (read with ``torch.load(weights_only=True)``: nothing
            is unpickled). The dict may be nested under ``state_dict``/``model``/... and its keys
            may share one prefix (``nerf.``, ``module.``); non-tensor entries (gmnerf's
            ``is_hash`` flags) are ignored; half/bfloat16/float64 values are cast to float32.
        spec: the architecture (a :class:`FieldSpec` or a zoo name). None: the one zoo spec
            whose parameter sizes match exactly.
        allow_nonfinite: accept NaN/inf values instead of raising.
    Raises:
        CheckpointError: unreadable file, unexpected/missing tensor, wrong size, no or several
            matching zoo specs, non-finite values. The message names the file.
    """
    source, raw = _read_params(params)
    tensors = _collect_tensors(_unwrap(raw, source), source)
    spec = _infer_spec(tensors, source) if spec is None else resolve_spec(spec)
    _check_against_spec(tensors, spec, source)
    check_finite(tensors, source, allow_nonfinite)
    return _build(spec, tensors)


def expected_shapes(spec: FieldSpec) -> dict[str, tuple[int, ...]]:
    """Shapes of the tcnn tensors of ``spec`` (flat params are 1-D; the tri-plane 4-D)."""
    shapes = {k: (n,) for k, n in spec.param_counts().items()}
    if isinstance(spec, TriplaneSpec):
        shapes[TRIPLANE_KEY] = spec.plane_shape
    return shapes


def _read_params(params: Any) -> tuple[str, Any]:
    if isinstance(params, str | os.PathLike):
        path = Path(params)
        if not path.is_file():
            raise CheckpointError(path, "file not found" if not path.exists() else "not a file")
        try:
            raw = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # torch.load raises many types for foreign or broken files
            first_line = str(e).strip().splitlines()[0] if str(e).strip() else ""
            raise CheckpointError(
                path,
                "cannot be read as a torch checkpoint with torch.load(weights_only=True): "
                f"{type(e).__name__}: {first_line}",
            ) from e
        return str(path), raw
    if isinstance(params, Mapping):
        return IN_MEMORY, params
    raise TypeError(f"import_tcnn expects a dict of tensors or a path, got {type(params).__name__}")


def _canonical(key: Any) -> tuple[str, str] | None:
    """``"nerf.mlp_base.params"`` -> ``("nerf.", "mlp_base.params")``; None for other keys."""
    if not isinstance(key, str):
        return None
    for name in TCNN_KEYS:
        if key == name:
            return "", name
        if key.endswith("." + name):
            return key[: -len(name)], name
    return None


def _as_tensor(value: Any) -> Tensor | None:
    if isinstance(value, Tensor):
        return value
    # nf2vec wraps mlp_base.params in a one-element list for nerfacc rendering
    if isinstance(value, list | tuple) and len(value) == 1 and isinstance(value[0], Tensor):
        return value[0]
    return None


def _unwrap(obj: Any, source: str) -> Mapping[str, Any]:
    """Descend into ``{"state_dict": {...}}``-style wrappers until tcnn keys appear."""
    for _ in range(4):
        if not isinstance(obj, Mapping):
            raise CheckpointError(source, f"holds a {type(obj).__name__}, not a dict of tensors")
        if any(_canonical(k) and _as_tensor(v) is not None for k, v in obj.items()):
            return obj
        inner = next((obj[k] for k in WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            return obj
        obj = inner
    return obj


def _collect_tensors(obj: Mapping[str, Any], source: str) -> dict[str, Tensor]:
    """Canonical key -> float32 CPU tensor; a zero-length ``encoding.params`` is dropped."""
    found: dict[str, Tensor] = {}
    prefixes: dict[str, list[str]] = {}
    unexpected: list[str] = []
    for key, value in obj.items():
        t = _as_tensor(value)
        if t is None:
            continue  # non-tensor entries: flags, epochs, configs
        parsed = _canonical(key)
        if parsed is None:
            unexpected.append(str(key))
            continue
        prefix, name = parsed
        if name in found:
            raise CheckpointError(source, f"two tensors map to {name!r} (keys {list(obj)})")
        prefixes.setdefault(prefix, []).append(str(key))
        if not t.is_floating_point():
            raise CheckpointError(
                source, f"tensor {key!r} has dtype {t.dtype}; weights must be floating point"
            )
        found[name] = t.detach().to("cpu", torch.float32)
    if unexpected:
        raise CheckpointError(
            source,
            f"unexpected tensor(s) {unexpected}; a tiny-cuda-nn / gmnerf NeRF checkpoint holds "
            f"only {list(TCNN_KEYS)} (optionally under one common prefix such as 'nerf.'). "
            "graphnerf's own files are .safetensors (load_field).",
        )
    if len(prefixes) > 1:
        raise CheckpointError(source, f"tensor keys have different prefixes: {prefixes}")
    if not found:
        keys = [str(k) for k in obj][:20]
        raise CheckpointError(
            source, f"no tcnn tensors ({list(TCNN_KEYS)}) found; top-level keys: {keys}"
        )
    if ENCODING_KEY in found and found[ENCODING_KEY].numel() == 0:
        del found[ENCODING_KEY]  # Frequency tcnn.Encoding: no parameters
    return found


def _shape_fits(key: str, t: Tensor, shape: tuple[int, ...]) -> bool:
    n = math.prod(shape)
    if key == TRIPLANE_KEY:
        return tuple(t.shape) == shape or (t.dim() == 1 and t.numel() == n)
    return t.numel() == n


def _fits(tensors: Mapping[str, Tensor], spec: FieldSpec) -> bool:
    shapes = expected_shapes(spec)
    return set(tensors) == set(shapes) and all(
        _shape_fits(k, t, shapes[k]) for k, t in tensors.items()
    )


def _describe(tensors: Mapping[str, Tensor]) -> str:
    return ", ".join(f"{k} {list(t.shape)}" for k, t in tensors.items())


def _spec_label(spec: FieldSpec) -> str:
    name = arch_name(spec)
    return repr(name) if name else spec.to_json()


def _infer_spec(tensors: Mapping[str, Tensor], source: str) -> FieldSpec:
    matches = [name for name, spec in ZOO.items() if _fits(tensors, spec)]
    if len(matches) == 1:
        return ZOO[matches[0]]
    expected = "\n".join(
        f"  {name} ({spec.family}): "
        + ", ".join(f"{k} {list(s)}" for k, s in expected_shapes(spec).items())
        for name, spec in ZOO.items()
    )
    what = "no zoo spec matches" if not matches else f"several zoo specs match {matches}"
    raise CheckpointError(
        source,
        f"cannot infer the architecture: {what} the tensors {_describe(tensors)}; "
        f"pass spec= explicitly. The zoo specs expect:\n{expected}",
    )


def _check_against_spec(tensors: Mapping[str, Tensor], spec: FieldSpec, source: str) -> None:
    shapes = expected_shapes(spec)
    label = _spec_label(spec)
    for key, shape in shapes.items():
        if key not in tensors:
            raise CheckpointError(
                source,
                f"missing tensor {key!r}: spec {label} expects {key} {list(shape)} "
                f"({math.prod(shape)} values); the file has {_describe(tensors)}",
            )
    for key, t in tensors.items():
        if key not in shapes:
            raise CheckpointError(
                source,
                f"unexpected tensor {key!r} {list(t.shape)}: spec {label} has no such parameters "
                f"(expects {list(shapes)})",
            )
        if not _shape_fits(key, t, shapes[key]):
            raise CheckpointError(
                source,
                f"tensor {key!r} has shape {list(t.shape)} ({t.numel()} values); spec {label} "
                f"expects {list(shapes[key])} ({math.prod(shapes[key])} values)",
            )


def _build(spec: FieldSpec, tensors: Mapping[str, Tensor]) -> RadianceField:
    field = FIELD_CLASSES[spec.family](spec)
    with torch.no_grad():
        flat = tensors[MLP_KEY].reshape(-1)
        start = 0
        for w in field.mlp.weights:  # row-major [out, in] blocks, in layer order
            w.copy_(flat[start : start + w.numel()].view(w.shape))
            start += w.numel()
        if isinstance(field, HashGridField):
            field.table.copy_(tensors[ENCODING_KEY].reshape(field.table.shape))
        elif isinstance(field, TriplaneField):
            field.triplane.copy_(tensors[TRIPLANE_KEY].reshape(field.triplane.shape))
    return field
