"""``manifest.jsonl``: one JSON line per finished NeRF of a zoo (docs/zoo-format.md).

A line holds the NeRF's identity — ``id``, ``object``, ``class``, ``arch``, ``rotation`` (unit
quaternion ``[w, x, y, z]``), ``split``, ``file`` (path of its ``.safetensors`` relative to the zoo
folder), ``init_seed`` — and its fit results: ``psnr`` (dB, mean of the 4 held-out views),
``psnr_views``, ``psnr_fg`` (dB over the pixels where the scene's or the NeRF's render is opaque,
mean of the views) and ``psnr_fg_views``, ``coverage`` (object fraction of the frames), ``iou``,
``loss`` (final training loss), ``seconds`` (amortised fitting time) and
``steps``. Non-finite numbers are written as ``null`` (strict JSON). The same object is stored in
the NeRF file's header metadata, so a file alone can re-register itself.

Concurrency: every writer (each shard of a generation, on one machine or several sharing a POSIX
file system) appends to the one manifest. :func:`append_record` takes an exclusive ``flock`` on the
manifest itself, writes the complete line with one ``write`` and fsyncs before unlocking, so lines
never interleave. A writer killed in the middle of its write can leave a partial last line without
its newline; readers ignore it (with a warning) and the next append, under the lock, cuts it off
before writing. The manifest is only ever appended to (never replaced), so the lock is always on
the file every writer opens.

:func:`read_manifest` validates every line (errors name the file and line), ignores a trailing
partial line and de-duplicates by ``id`` (the last line of an id wins: a NeRF that was refitted
is registered again).
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import warnings
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

__all__ = [
    "IDENTITY_FIELDS",
    "MANIFEST",
    "METRIC_FIELDS",
    "ManifestError",
    "append_record",
    "check_record",
    "read_manifest",
]

MANIFEST = "manifest.jsonl"
#: Fields every manifest line has.
IDENTITY_FIELDS: tuple[str, ...] = ("id", "object", "class", "arch", "rotation", "split", "file")
#: Fit results written by the generator (optional for readers of other zoos, typed when present).
METRIC_FIELDS: tuple[str, ...] = (
    "psnr",
    "psnr_views",
    "psnr_fg",
    "psnr_fg_views",
    "coverage",
    "iou",
    "loss",
    "seconds",
    "steps",
)
SPLIT_NAMES: tuple[str, ...] = ("train", "val", "test")
_NUMBER_OR_NULL = ("psnr", "psnr_fg", "coverage", "iou", "loss")
_ROTATION_TOL = 1e-3


class ManifestError(ValueError):
    """A malformed manifest or manifest line (the message names the file and the line)."""


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def check_record(rec: Any, where: str) -> dict[str, Any]:
    """Validate one manifest record; ``ManifestError`` prefixed with ``where`` otherwise."""

    def fail(msg: str) -> ManifestError:
        return ManifestError(f"{where}: {msg}")

    if not isinstance(rec, dict):
        raise fail(f"a manifest line must be a JSON object, got {type(rec).__name__}")
    missing = [k for k in IDENTITY_FIELDS if k not in rec]
    if missing:
        raise fail(f"missing field(s) {missing}; every line needs {list(IDENTITY_FIELDS)}")
    for key in ("id", "object", "class", "arch", "file"):
        if not isinstance(rec[key], str) or not rec[key]:
            raise fail(f"field {key!r} must be a non-empty string, got {rec[key]!r}")
    if rec["split"] not in SPLIT_NAMES:
        raise fail(f"field 'split' must be one of {list(SPLIT_NAMES)}, got {rec['split']!r}")
    rot = rec["rotation"]
    if not (
        isinstance(rot, list)
        and len(rot) == 4
        and all(_is_number(v) and math.isfinite(v) for v in rot)
    ):
        raise fail(f"field 'rotation' must be 4 finite numbers [w, x, y, z], got {rot!r}")
    norm = math.sqrt(sum(v * v for v in rot))
    if abs(norm - 1.0) > _ROTATION_TOL:
        raise fail(f"field 'rotation' must be a unit quaternion, got {rot} (norm {norm:.6g})")
    file = PurePosixPath(rec["file"])
    if file.is_absolute() or ".." in file.parts or "\\" in rec["file"]:
        raise fail(f"field 'file' must be a relative path inside the zoo, got {rec['file']!r}")
    for key in _NUMBER_OR_NULL:
        if key in rec and rec[key] is not None and not _is_number(rec[key]):
            raise fail(f"field {key!r} must be a number or null, got {rec[key]!r}")
    for key in ("psnr_views", "psnr_fg_views"):
        if key in rec and not (
            isinstance(rec[key], list) and all(v is None or _is_number(v) for v in rec[key])
        ):
            raise fail(f"field {key!r} must be a list of numbers, got {rec[key]!r}")
    if "seconds" in rec and not (_is_number(rec["seconds"]) and rec["seconds"] >= 0):
        raise fail(f"field 'seconds' must be a number >= 0, got {rec['seconds']!r}")
    for key in ("steps", "init_seed"):
        if key in rec and not (
            isinstance(rec[key], int) and not isinstance(rec[key], bool) and rec[key] >= 0
        ):
            raise fail(f"field {key!r} must be an integer >= 0, got {rec[key]!r}")
    return rec


def _strict_json(value: Any) -> Any:
    """``value`` with non-finite floats replaced by None (so it dumps as strict JSON)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {k: _strict_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_strict_json(v) for v in value]
    return value


def encode_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """The record as it is stored (strict JSON values), validated."""
    rec = _strict_json(dict(record))
    return check_record(rec, "record")


# ----------------------------------------------------------------------------- write
def _repair_tail(fd: int, path: Path) -> None:
    """Cut a partial last line (no trailing newline) off the manifest; caller holds the lock."""
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return
    pos, keep = size, 0
    while pos > 0:
        start = max(0, pos - 65536)
        chunk = os.pread(fd, pos - start, start)
        nl = chunk.rfind(b"\n")
        if nl >= 0:
            keep = start + nl + 1
            break
        pos = start
    os.ftruncate(fd, keep)
    warnings.warn(
        f"{path}: removed a partial last line ({size - keep} bytes) left by an interrupted write",
        RuntimeWarning,
        stacklevel=3,
    )


def append_record(root: str | os.PathLike[str], record: Mapping[str, Any]) -> dict[str, Any]:
    """Append one validated record to ``root/manifest.jsonl`` (created if missing).

    Safe with concurrent writers: exclusive ``flock``, one ``write`` of the whole line, fsync.

    Returns:
        the record as written (non-finite numbers as None).
    """
    rec = encode_record(record)
    line = (json.dumps(rec, sort_keys=True, allow_nan=False) + "\n").encode("utf-8")
    path = Path(root) / MANIFEST
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        _repair_tail(fd, path)
        view = memoryview(line)
        while view:  # one write in practice; a short write is finished before unlocking
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)  # releases the lock
    return rec


# ----------------------------------------------------------------------------- read
def read_manifest(root: str | os.PathLike[str], missing_ok: bool = False) -> list[dict[str, Any]]:
    """The validated records of ``root/manifest.jsonl``, one per id (the last line of an id wins).

    A last line without its newline (an interrupted or in-progress write) is ignored with a
    warning; blank lines are skipped.

    Args:
        root: the zoo folder.
        missing_ok: return ``[]`` when there is no manifest instead of raising.
    Raises:
        FileNotFoundError: no manifest (unless ``missing_ok``).
        ManifestError: a line that is not JSON or not a valid record (names file and line).
    """
    path = Path(root) / MANIFEST
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        if missing_ok:
            return []
        raise FileNotFoundError(
            f"{path}: no zoo manifest (expected {MANIFEST} in {root})"
        ) from None
    lines = data.split(b"\n")
    tail = lines.pop()  # b"" when the file ends with a newline
    if tail.strip():
        warnings.warn(
            f"{path}: ignoring a partial last line ({len(tail)} bytes, no newline): an "
            "interrupted or unfinished write; the next append removes it",
            RuntimeWarning,
            stacklevel=2,
        )
    records: dict[str, dict[str, Any]] = {}
    for n, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        where = f"{path}:{n}"
        try:
            rec = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ManifestError(f"{where}: not a JSON line ({e})") from e
        check_record(rec, where)
        records.pop(rec["id"], None)
        records[rec["id"]] = rec
    return list(records.values())
