"""One representation (embeddings of a zoo's train and test NeRFs) -> the benchmark's numbers.

The same function scores the trained encoder and every baseline, so their numbers are comparable
by construction. Protocols:

* **classification**: probes (:mod:`graphnerf.bench.classify`) fitted on the train split's
  embeddings, accuracy on the test split's, per architecture; ``seen`` = mean over the training
  architectures present in test, ``unseen`` = mean over the others (``None`` when there are none).
  The headline numbers are gmnerf's MLP probe; ``probes`` holds all three.
* **retrieval**: for every ordered pair ``q->g`` of architectures present in test, queries = the
  test NeRFs of ``q``, gallery = the test NeRFs of ``g``, a hit = a NeRF of the query's object
  (:func:`graphnerf.bench.metrics.retrieval_hits`). On the diagonal ``q->q`` the query itself is
  left out of the gallery, so the only positives are the object's other rotations (retrieval
  across rotations). ``mean_recall_at_1`` / ``mean_recall_at_5`` = mean over the ordered pairs
  ``q != g`` of ``mlp``, ``triplane``, ``hash`` present (cross-architecture retrieval).
  ``recall_at_1_other_rotation`` / ``mean_recall_at_1_other_rotation``: the same with every NeRF
  of the query's object *under the query's rotation* left out of the gallery, so only a
  rotation-invariant representation can hit (the functional probe, which compares what the
  fields compute at fixed points, scores high on ``mean_recall_at_1`` and low here).
* **held_out_family**: for each family (mlp, triplane, hash) none of the training architectures
  belongs to, the MLP probe's mean accuracy over its test architectures and the mean recall@1
  over the cross-architecture pairs that involve one of them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..fields import ZOO
from .classify import PROBES, fit_predict
from .metrics import accuracy, confusion_matrix, retrieval_hits

__all__ = ["FAMILIES", "TRAINING_ARCHS", "arch_family", "evaluate_embeddings", "sorted_archs"]

TRAINING_ARCHS: tuple[str, ...] = ("mlp", "triplane", "hash")
FAMILIES: tuple[str, ...] = ("mlp", "triplane", "hash")


def arch_family(arch: str) -> str:
    """Family of a zoo architecture name (``mlp``, ``triplane`` or ``hash``)."""
    if arch in ZOO:
        return str(ZOO[arch].family)
    for f in FAMILIES:
        if arch.startswith(f):
            return f
    raise ValueError(f"unknown architecture {arch!r}; expected one of {list(ZOO)}")


def sorted_archs(archs: Sequence[str]) -> list[str]:
    """Architectures in the zoo's order (training ones first), unknown names last, sorted."""
    order = {a: i for i, a in enumerate(ZOO)}
    return sorted(set(archs), key=lambda a: (order.get(a, len(order)), a))


def _mean(values: Sequence[float]) -> float | None:
    v = [x for x in values if x is not None and np.isfinite(x)]
    return float(np.mean(v)) if v else None


def _nan_to_none(x: float) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)


def evaluate_embeddings(
    records: Sequence[Mapping[str, Any]],
    embeddings: np.ndarray,
    *,
    seen_archs: Sequence[str],
    cfg: Mapping[str, Any],
    seed: int = 0,
    test_split: str = "test",
    train_split: str = "train",
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Score one representation.

    Args:
        records: manifest records of the train and test NeRFs (other splits are ignored).
        embeddings: ``[len(records), D]``, row ``i`` = ``records[i]``.
        seen_archs: the architectures the encoder was trained on.
        cfg: the benchmark config (``classification``, ``retrieval`` nodes).
        seed: probe seed.
    Returns:
        ``(results, extras)``: the JSON-ready numbers (``classification``, ``retrieval``,
        ``held_out_family``) and arrays for the report (confusion matrix, recall matrix, ...).
    """
    emb = np.asarray(embeddings, dtype=np.float64)
    if emb.shape[0] != len(records):
        raise ValueError(f"{emb.shape[0]} embeddings for {len(records)} records")
    classes = sorted({str(r["class"]) for r in records})
    cidx = {c: i for i, c in enumerate(classes)}
    tr = np.array([r["split"] == train_split for r in records])
    te = np.array([r["split"] == test_split for r in records])
    y = np.array([cidx[str(r["class"])] for r in records])
    arch = np.array([str(r["arch"]) for r in records])
    test_archs = sorted_archs(arch[te].tolist())
    seen = [a for a in test_archs if a in set(seen_archs)]
    unseen = [a for a in test_archs if a not in set(seen_archs)]

    # classification --------------------------------------------------------------------
    preds = fit_predict(emb[tr], y[tr], emb[te], len(classes), cfg.get("classification", {}), seed)
    y_te, arch_te = y[te], arch[te]
    probes: dict[str, Any] = {}
    for name in PROBES:
        p = preds[name]
        per_arch = {a: accuracy(p[arch_te == a], y_te[arch_te == a]) for a in test_archs}
        probes[name] = {
            "seen": _mean([per_arch[a] for a in seen]),
            "unseen": _mean([per_arch[a] for a in unseen]),
            "overall": accuracy(p, y_te),
            "per_arch": per_arch,
        }
    classification = {
        **probes["mlp"],
        "probes": probes,
        "seen_archs": seen,
        "unseen_archs": unseen,
        "classes": classes,
        "n_train": int(tr.sum()),
        "n_test": int(te.sum()),
        "chance": 1.0 / len(classes),
    }

    # retrieval ---------------------------------------------------------------------------
    ks = tuple(int(k) for k in cfg.get("retrieval", {}).get("ks", (1, 5, 10)))
    obj = np.array([str(r["object"]) for r in records])
    ids = np.array([str(r["id"]) for r in records])
    recall: dict[int, dict[str, float | None]] = {k: {} for k in ks}
    n_queries: dict[str, int] = {}
    chance: dict[str, float | None] = {}
    other_rot: dict[str, float | None] = {}
    chance_rot: dict[str, float | None] = {}
    # (object, rotation): NeRFs of one object under one rotation, whatever the arch
    pose = np.array([f"{r['object']}|{json.dumps(list(r['rotation']))}" for r in records])
    r1 = np.full((len(test_archs), len(test_archs)), np.nan)
    for i, qa in enumerate(test_archs):
        qm = te & (arch == qa)
        for j, ga in enumerate(test_archs):
            gm = te & (arch == ga)
            hits, valid = retrieval_hits(
                emb[qm],
                emb[gm],
                obj[qm].tolist(),
                obj[gm].tolist(),
                ks,
                ids[qm].tolist(),
                ids[gm].tolist(),
            )
            n = int(valid.sum())
            key = f"{qa}->{ga}"
            # a random ranking's recall@1: positives / candidates, per query
            same = obj[qm][:, None] == obj[gm][None, :]
            cand = ids[qm][:, None] != ids[gm][None, :]
            frac = (same & cand).sum(1) / np.maximum(cand.sum(1), 1)
            chance[key] = float(frac[frac > 0].mean()) if n else None
            n_queries[key] = n
            for k in ks:
                recall[k][key] = float(hits[k].sum()) / n if n else None
            r1[i, j] = recall[ks[0]][key] if recall[ks[0]][key] is not None else np.nan
            # the same pair with the query's own rotation left out of the gallery: positives are
            # the object's NeRFs under other rotations only (rotation-invariant retrieval)
            h_rot, v_rot = retrieval_hits(
                emb[qm],
                emb[gm],
                obj[qm].tolist(),
                obj[gm].tolist(),
                (ks[0],),
                pose[qm].tolist(),
                pose[gm].tolist(),
            )
            n_rot = int(v_rot.sum())
            other_rot[key] = float(h_rot[ks[0]].sum()) / n_rot if n_rot else None
            cand_r = pose[qm][:, None] != pose[gm][None, :]
            frac_r = (same & cand_r).sum(1) / np.maximum(cand_r.sum(1), 1)
            chance_rot[key] = float(frac_r[frac_r > 0].mean()) if n_rot else None

    def mean_pairs(
        k: int, archs: Sequence[str], involve: Sequence[str] | None = None
    ) -> float | None:
        vals = [
            recall[k][f"{q}->{g}"]
            for q in archs
            for g in archs
            if q != g and (involve is None or q in involve or g in involve)
        ]
        return _mean([v for v in vals if v is not None])

    train_present = [a for a in TRAINING_ARCHS if a in test_archs]
    retrieval: dict[str, Any] = {f"recall_at_{k}": recall[k] for k in ks}
    retrieval.update(
        {
            "mean_recall_at_1": mean_pairs(1, train_present) if 1 in recall else None,
            "mean_recall_at_5": mean_pairs(5, train_present) if 5 in recall else None,
            "chance_mean_recall_at_1": _mean(
                [chance[f"{q}->{g}"] for q in train_present for g in train_present if q != g]
            ),
            "recall_at_1_other_rotation": other_rot,
            "mean_recall_at_1_other_rotation": _mean(
                [other_rot[f"{q}->{g}"] for q in train_present for g in train_present if q != g]
            ),
            "chance_mean_recall_at_1_other_rotation": _mean(
                [chance_rot[f"{q}->{g}"] for q in train_present for g in train_present if q != g]
            ),
            "cross_arch_mean_recall_at_1": mean_pairs(1, test_archs) if 1 in recall else None,
            "across_rotations": {a: recall[ks[0]][f"{a}->{a}"] for a in test_archs},
            "across_rotations_mean": _mean([recall[ks[0]][f"{a}->{a}"] for a in test_archs]),
            "n_queries": n_queries,
            "archs": test_archs,
        }
    )

    # held-out family ---------------------------------------------------------------------
    trained_families = {arch_family(a) for a in seen_archs}
    held: dict[str, Any] = {}
    for fam in FAMILIES:
        if fam in trained_families:
            continue
        fam_archs = [a for a in test_archs if arch_family(a) == fam]
        if not fam_archs:
            continue
        held[fam] = {
            "archs": fam_archs,
            "accuracy": _mean([probes["mlp"]["per_arch"][a] for a in fam_archs]),
            "mean_recall_at_1": mean_pairs(1, test_archs, fam_archs) if 1 in recall else None,
        }

    results = {
        "classification": classification,
        "retrieval": retrieval,
        "held_out_family": held or None,
    }
    extras = {
        "classes": classes,
        "archs": test_archs,
        "confusion": confusion_matrix(preds["mlp"], y_te, len(classes)),
        "recall_at_1_matrix": r1,
        "test_mask": te,
    }
    return _clean(results), extras


def _clean(x: Any) -> Any:
    """JSON-ready copy: numpy scalars to Python, NaN to None."""
    if isinstance(x, Mapping):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_clean(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float):
        return _nan_to_none(x)
    return x
