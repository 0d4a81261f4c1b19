"""graphnerf's own checkpoint format: one self-describing ``.safetensors`` file per field.

Tensors: the field's ``state_dict()`` (float32). Header metadata (safetensors ``__metadata__``,
str -> str):

* ``graphnerf.format``: format version, ``"1"``;
* ``graphnerf.spec``: the :class:`FieldSpec` JSON (fully determines every tensor shape);
* ``graphnerf.meta``: JSON object of free-form metadata (object id, class, rotation, fit metrics).

Nothing is unpickled on load, and a file is written to a temporary name in the same folder,
fsynced and renamed, so a reader never sees a half-written file.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import safetensors
import safetensors.torch
import torch
from torch import Tensor

from ..atomic import atomic_write_bytes
from ..fields import FIELD_CLASSES, FieldSpec, RadianceField, SpecError, arch_name, resolve_spec
from .errors import CheckpointError, check_finite
from .tcnn import import_tcnn

FORMAT_VERSION = "1"
SPEC_KEY = "graphnerf.spec"
META_KEY = "graphnerf.meta"
FORMAT_KEY = "graphnerf.format"
SAFETENSORS_SUFFIX = ".safetensors"
TORCH_SUFFIXES = (".pth", ".pt")
_MAX_HEADER_BYTES = 100_000_000  # safetensors' own limit
_DTYPE_BYTES = {
    "F64": 8,
    "F32": 4,
    "F16": 2,
    "BF16": 2,
    "I64": 8,
    "I32": 4,
    "I16": 2,
    "I8": 1,
    "U64": 8,
    "U32": 4,
    "U16": 2,
    "U8": 1,
    "BOOL": 1,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
}


# ------------------------------------------------------------------------------------ save
def save_field(field: RadianceField, path: str | os.PathLike[str], **meta: Any) -> Path:
    """Write ``field`` to one ``.safetensors`` file, atomically.

    Args:
        field: any :class:`RadianceField`.
        path: destination ending in ``.safetensors``; its folder must exist. Overwritten if present.
        **meta: merged over ``field.meta`` (``field.meta`` itself is not modified); values must be
            JSON-serialisable: tensors, numpy arrays/scalars and tuples become lists/numbers.
    Returns:
        the path written.
    Raises:
        CheckpointError: wrong suffix, missing folder, meta not JSON-serialisable, write failure.
            No file or temporary file is left behind on failure.
    """
    if not isinstance(field, RadianceField):
        raise TypeError(f"save_field expects a RadianceField, got {type(field).__name__}")
    path = Path(path)
    if path.suffix != SAFETENSORS_SUFFIX:
        raise CheckpointError(path, f"graphnerf checkpoints must end with {SAFETENSORS_SUFFIX}")
    if not path.parent.is_dir():
        raise CheckpointError(path, f"folder {str(path.parent)!r} does not exist")
    merged = {**field.meta, **meta}
    try:
        meta_json = json.dumps(_jsonable(merged, "meta"), sort_keys=True)
    except TypeError as e:
        raise CheckpointError(path, f"metadata is not JSON-serialisable: {e}") from e
    header = {
        FORMAT_KEY: FORMAT_VERSION,
        SPEC_KEY: field.spec.to_json(),
        META_KEY: meta_json,
    }
    tensors = {
        k: v.detach().to("cpu", torch.float32).contiguous() for k, v in field.state_dict().items()
    }
    blob = safetensors.torch.save(tensors, metadata=header)
    _atomic_write(path, blob)
    return path


def _jsonable(value: Any, where: str) -> Any:
    """JSON-ready copy of ``value``; TypeError naming the offending entry otherwise."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Tensor):
        return value.detach().cpu().tolist()
    if isinstance(value, np.ndarray | np.generic):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"{where} has a non-string key {k!r}")
            out[k] = _jsonable(v, f"{where}[{k!r}]")
        return out
    if isinstance(value, list | tuple):
        return [_jsonable(v, f"{where}[{i}]") for i, v in enumerate(value)]
    raise TypeError(f"{where} is a {type(value).__name__}")


def _atomic_write(path: Path, data: bytes) -> None:
    try:
        atomic_write_bytes(path, data)
    except OSError as e:
        raise CheckpointError(path, f"cannot write: {e}") from e


# ------------------------------------------------------------------------------------ load
def read_header(
    path: str | os.PathLike[str],
) -> tuple[FieldSpec, dict[str, Any], dict[str, tuple[int, ...]]]:
    """Spec, metadata and tensor shapes of a graphnerf ``.safetensors`` file, reading only its
    header (no tensor data is loaded).

    Raises:
        CheckpointError: missing, truncated or non-safetensors file; no graphnerf spec; invalid
            spec or metadata JSON; unsupported format version.
    """
    path = Path(path)
    header_meta, shapes, _ = _read_safetensors_header(path)
    if SPEC_KEY not in header_meta:
        raise CheckpointError(
            path,
            f"safetensors file without a graphnerf field spec (header key {SPEC_KEY!r}); it was "
            "not written by graphnerf.save_field. tiny-cuda-nn / gmnerf checkpoints load with "
            "graphnerf.io.import_tcnn.",
        )
    version = header_meta.get(FORMAT_KEY, FORMAT_VERSION)
    if version != FORMAT_VERSION:
        raise CheckpointError(
            path,
            f"unsupported graphnerf format version {version!r} (this library reads "
            f"{FORMAT_VERSION!r})",
        )
    try:
        spec = FieldSpec.from_json(header_meta[SPEC_KEY])
    except SpecError as e:
        raise CheckpointError(path, f"invalid field spec in the header: {e}") from e
    try:
        meta = json.loads(header_meta.get(META_KEY, "{}"))
    except json.JSONDecodeError as e:
        raise CheckpointError(path, f"metadata ({META_KEY}) is not valid JSON: {e}") from e
    if not isinstance(meta, dict):
        raise CheckpointError(path, f"metadata ({META_KEY}) must be a JSON object")
    return spec, meta, shapes


def load_field(path: str | os.PathLike[str], allow_nonfinite: bool = False) -> RadianceField:
    """Rebuild a field from a graphnerf ``.safetensors`` file (needs nothing but the file).

    Args:
        path: written by :func:`save_field`.
        allow_nonfinite: accept NaN/inf weights instead of raising.
    Returns:
        the field (float32, CPU) with ``field.meta`` set from the file.
    Raises:
        CheckpointError: any problem with the file (see :func:`read_header`), a missing or
            unexpected tensor, a shape that does not fit the spec, non-finite weights.
    """
    path = Path(path)
    spec, meta, shapes = read_header(path)
    field = FIELD_CLASSES[spec.family](spec)
    expected = {k: tuple(v.shape) for k, v in field.state_dict().items()}
    label = repr(arch_name(spec) or spec.to_json())
    for key, shape in expected.items():
        if key not in shapes:
            raise CheckpointError(
                path, f"missing tensor {key!r}: spec {label} expects {list(shape)}"
            )
        if shapes[key] != shape:
            raise CheckpointError(
                path,
                f"tensor {key!r} has shape {list(shapes[key])}; spec {label} expects {list(shape)}",
            )
    unexpected = sorted(set(shapes) - set(expected))
    if unexpected:
        raise CheckpointError(path, f"unexpected tensor(s) {unexpected} for spec {label}")
    try:
        tensors = safetensors.torch.load_file(path, device="cpu")
    except (safetensors.SafetensorError, OSError) as e:  # a valid header over broken data
        raise CheckpointError(path, f"cannot read tensors: {type(e).__name__}: {e}") from e
    for key, t in tensors.items():
        if not t.is_floating_point():
            raise CheckpointError(path, f"tensor {key!r} has dtype {t.dtype}; expected float")
    tensors = {k: t.to(torch.float32) for k, t in tensors.items()}
    check_finite(tensors, path, allow_nonfinite)
    field.load_state_dict(tensors, strict=True)
    field.meta = meta
    return field


def _read_safetensors_header(
    path: Path,
) -> tuple[dict[str, str], dict[str, tuple[int, ...]], dict[str, str]]:
    """Parse and validate a safetensors header: (metadata, shapes, dtypes)."""
    if not path.is_file():
        raise CheckpointError(path, "file not found" if not path.exists() else "not a file")
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        n = int.from_bytes(head, "little") if len(head) == 8 else -1
        if n < 2 or n > min(size - 8, _MAX_HEADER_BYTES):
            raise CheckpointError(
                path,
                f"not a safetensors file, or truncated: the {size}-byte file cannot hold the "
                f"header its first 8 bytes announce ({n} bytes)",
            )
        raw = f.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(path, f"not a safetensors file: header is not JSON ({e})") from e
    if not isinstance(header, dict):
        raise CheckpointError(path, "not a safetensors file: header is not a JSON object")
    data_bytes = size - 8 - n
    meta = header.pop("__metadata__", None) or {}
    if not isinstance(meta, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in meta.items()
    ):
        raise CheckpointError(path, "not a safetensors file: __metadata__ is not str -> str")
    shapes: dict[str, tuple[int, ...]] = {}
    dtypes: dict[str, str] = {}
    end = 0
    for name, info in header.items():
        try:
            dtype, shape, (a, b) = info["dtype"], info["shape"], info["data_offsets"]
            shape = tuple(int(s) for s in shape)
            a, b = int(a), int(b)
        except (TypeError, KeyError, ValueError) as e:
            raise CheckpointError(path, f"not a safetensors file: bad entry for {name!r}") from e
        width = _DTYPE_BYTES.get(dtype)
        if width is not None and (b - a != math.prod(shape) * width or a < 0):
            raise CheckpointError(
                path, f"corrupt header: tensor {name!r} {list(shape)} {dtype} spans {b - a} bytes"
            )
        shapes[name], dtypes[name] = shape, dtype
        end = max(end, b)
    if end > data_bytes:
        raise CheckpointError(
            path,
            f"truncated file: the tensors need {end} bytes of data, the file has {data_bytes}",
        )
    return meta, shapes, dtypes


# ------------------------------------------------------------------------------------ any
def load_any(
    path: str | os.PathLike[str],
    spec: FieldSpec | str | None = None,
    allow_nonfinite: bool = False,
) -> RadianceField:
    """Load a field from any supported file, chosen by extension.

    ``.safetensors``: :func:`load_field` (``spec``, if given, must equal the file's);
    ``.pth`` / ``.pt``: :func:`~graphnerf.io.import_tcnn` (tiny-cuda-nn / gmnerf / nf2vec
    checkpoints; ``spec`` None infers it from the zoo).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == SAFETENSORS_SUFFIX:
        field = load_field(path, allow_nonfinite=allow_nonfinite)
        if spec is not None and resolve_spec(spec) != field.spec:
            raise CheckpointError(
                path,
                f"the file holds spec {field.spec.to_json()}, not the requested "
                f"{resolve_spec(spec).to_json()}",
            )
        return field
    if suffix in TORCH_SUFFIXES:
        return import_tcnn(path, spec, allow_nonfinite=allow_nonfinite)
    raise CheckpointError(
        path,
        f"unknown checkpoint type {path.suffix!r}: expected {SAFETENSORS_SUFFIX} (graphnerf) or "
        f"{' / '.join(TORCH_SUFFIXES)} (tiny-cuda-nn / gmnerf / nf2vec)",
    )
