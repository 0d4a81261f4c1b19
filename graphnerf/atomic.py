"""Atomic file writes: nothing half-written is ever visible under the final name.

Every file graphnerf writes (checkpoints, images, manifests, caches, summaries) goes through
:func:`atomic_write`: the content is written to a hidden temporary file in the destination folder,
flushed to disk, then renamed over the destination (``os.replace`` is atomic on POSIX and
Windows). On any error the temporary file is removed and an existing destination is untouched.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path


def _fsync_path(path: Path, flags: int) -> None:
    try:
        fd = os.open(path, flags)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` to produce the file at a temporary path, then move it to ``path``.

    Args:
        path: destination; its folder must exist.
        write: writes the complete content to the given temporary path (it may open it by name).
    Returns:
        the destination ``Path``.
    """
    dest = Path(path)
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))  # umask applies
        write(tmp)
        _fsync_path(tmp, os.O_RDONLY)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:  # make the rename durable (best effort: not every platform can fsync a folder)
        _fsync_path(dest.parent, os.O_RDONLY)
    except OSError:
        pass
    return dest


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text))
