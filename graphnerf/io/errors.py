"""The one exception raised for unreadable, malformed or mismatching checkpoint files."""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch
from torch import Tensor


class CheckpointError(ValueError):
    """A checkpoint cannot be read, written or matched to a field spec.

    The message always starts with the file (or ``<in-memory params>`` for a dict), so that a
    failure inside a loop over a zoo names the culprit.

    Attributes:
        path: the file concerned (a string; ``<in-memory params>`` for dict inputs).
        reason: the message without the path.
    """

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


def check_finite(
    tensors: Mapping[str, Tensor], path: str | os.PathLike[str], allow_nonfinite: bool
) -> None:
    """Raise :class:`CheckpointError` naming every tensor holding NaN/inf (unless allowed)."""
    if allow_nonfinite:
        return
    bad = {k: int((~torch.isfinite(t)).sum()) for k, t in tensors.items() if t.is_floating_point()}
    bad = {k: n for k, n in bad.items() if n}
    if bad:
        listing = ", ".join(f"{k!r} has {n} of {tensors[k].numel()}" for k, n in bad.items())
        raise CheckpointError(
            path,
            f"non-finite weights (NaN/inf): {listing}; pass allow_nonfinite=True to load anyway",
        )
