"""Relative-rotation benchmark: geodesic error of a model's rotation head on same-object pairs.

Pairs are ordered pairs ``(a, b)`` of test NeRFs of the same object and architecture with
different rotations; the target is ``q_b q_a^-1`` (the rotation taking view a to view b, the
convention of the rotation heads and the manifest's ``wxyz`` quaternions). At most ``max_pairs``
pairs, drawn with ``seed`` when there are more.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..scenes.rotations import quat_conjugate, quat_multiply
from .embed import Encoder, _load_field, _wants_graphs
from .metrics import geodesic_error_deg

__all__ = ["rotation_pairs", "rotation_errors", "summarize_errors"]


def rotation_pairs(
    records: Sequence[Mapping[str, Any]], max_pairs: int = 512, seed: int = 0
) -> list[tuple[int, int]]:
    """Index pairs ``(a, b)``: same object and arch, different rotation; at most ``max_pairs``."""
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, r in enumerate(records):
        groups[(str(r["object"]), str(r["arch"]))].append(i)
    pairs = [
        (a, b)
        for idx in groups.values()
        for a in idx
        for b in idx
        if a != b and list(records[a]["rotation"]) != list(records[b]["rotation"])
    ]
    if len(pairs) > max_pairs:
        keep = np.random.default_rng(seed).choice(len(pairs), size=max_pairs, replace=False)
        pairs = [pairs[i] for i in sorted(keep)]
    return pairs


def true_relative(
    records: Sequence[Mapping[str, Any]], pairs: Sequence[tuple[int, int]]
) -> torch.Tensor:
    """``[P, 4]`` targets ``q_b q_a^-1`` (wxyz) of the pairs."""
    qa = torch.tensor([records[a]["rotation"] for a, _ in pairs], dtype=torch.float64)
    qb = torch.tensor([records[b]["rotation"] for _, b in pairs], dtype=torch.float64)
    return quat_multiply(qb, quat_conjugate(qa))


def rotation_errors(
    encoder: Encoder,
    zoo: str | os.PathLike[str],
    records: Sequence[Mapping[str, Any]],
    pairs: Sequence[tuple[int, int]],
    batch_size: int = 8,
    cache_dir: str | os.PathLike[str] | None = None,
) -> np.ndarray | None:
    """Geodesic errors ``[P]`` (degrees) of ``encoder.relative_rotation`` on ``pairs``; None when
    the model has no rotation head (``relative_rotation`` returns None)."""
    if not pairs or not hasattr(encoder, "relative_rotation"):
        return None
    root = Path(zoo)
    ds = None
    if _wants_graphs(encoder):  # a GMN reads the cached parameter graphs
        from ..graph.dataset import GraphZooDataset

        ds = GraphZooDataset(root, cache_dir=cache_dir)
    fields: dict[int, Any] = {}

    def field(i: int) -> Any:
        if i not in fields:
            rec = dict(records[i])
            fields[i] = ds.graph(rec) if ds is not None else _load_field(root, rec)
        return fields[i]

    preds = []
    for s in range(0, len(pairs), batch_size):
        chunk = pairs[s : s + batch_size]
        with torch.no_grad():
            q = encoder.relative_rotation(
                [field(a) for a, _ in chunk], [field(b) for _, b in chunk]
            )
        if q is None:
            return None
        preds.append(torch.as_tensor(q).detach().cpu().double().reshape(len(chunk), 4))
    pred = torch.cat(preds)
    return geodesic_error_deg(pred, true_relative(records, pairs)).numpy()


def summarize_errors(
    errors: np.ndarray | None, identity_errors: np.ndarray | None
) -> dict[str, Any]:
    """``rotation`` results: median / mean error (degrees), pair count, and the same for always
    predicting the identity (the error a model with no idea scores on these pairs)."""
    out: dict[str, Any] = {
        "median_deg": None,
        "mean_deg": None,
        "n_pairs": 0,
        "available": errors is not None,
    }
    if errors is not None and len(errors):
        out.update(
            median_deg=float(np.median(errors)),
            mean_deg=float(np.mean(errors)),
            n_pairs=int(len(errors)),
        )
    if identity_errors is not None and len(identity_errors):
        out["identity_median_deg"] = float(np.median(identity_errors))
        out["identity_mean_deg"] = float(np.mean(identity_errors))
    return out
