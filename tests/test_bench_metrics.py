"""graphnerf.bench.metrics and the scoring protocol against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from graphnerf.bench.evaluate import evaluate_embeddings
from graphnerf.bench.metrics import (
    accuracy,
    confusion_matrix,
    geodesic_error_deg,
    recall_at_k,
    retrieval_hits,
)

torch.set_num_threads(1)


def test_recall_at_k_hand_computed() -> None:
    # query 0 is (1, 0): cosine ranking of the gallery = g0 (1.0), g2 (0.8), g1 (0.0)
    # query 1 is (0, 1): ranking = g1 (1.0), g2 (0.6), g0 (0.0)
    q = np.array([[1.0, 0.0], [0.0, 2.0]])  # the scale must not matter (cosine)
    g = np.array([[3.0, 0.0], [0.0, 1.0], [0.8, 0.6]])
    gl = ["a", "b", "c"]
    # query 0 looks for c (rank 2), query 1 for b (rank 1)
    ql = ["c", "b"]
    assert recall_at_k(q, g, ql, gl, k=1) == pytest.approx(0.5)
    assert recall_at_k(q, g, ql, gl, k=2) == pytest.approx(1.0)
    # query 0 looks for b (rank 3), query 1 for a (rank 3)
    assert recall_at_k(q, g, ["b", "a"], gl, k=2) == 0.0
    assert recall_at_k(q, g, ["b", "a"], gl, k=3) == 1.0


def test_recall_excludes_the_query_itself_and_skips_queries_without_positive() -> None:
    z = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    obj = ["x", "x", "y", "z"]
    ids = ["0", "1", "2", "3"]
    # without exclusion every query finds itself
    assert recall_at_k(z, z, obj, obj, k=1) == 1.0
    hits, valid = retrieval_hits(z, z, obj, obj, (1,), ids, ids)
    # y and z have no other NeRF: not valid; x's two find each other
    assert valid.tolist() == [True, True, False, False]
    assert hits[1].tolist() == [True, True, False, False]
    assert recall_at_k(z, z, obj, obj, k=1, query_ids=ids, gallery_ids=ids) == 1.0
    assert math.isnan(recall_at_k(z[2:], z[2:], obj[2:], obj[2:], 1, ids[2:], ids[2:]))


def test_recall_ties_count_against_the_query() -> None:
    z = np.ones((4, 3))  # identical embeddings retrieve nothing
    obj = ["a", "a", "b", "b"]
    ids = list("0123")
    assert recall_at_k(z, z, obj, obj, 1, ids, ids) == 0.0
    assert recall_at_k(z, z, obj, obj, 3, ids, ids) == 1.0  # 2 negatives tie above: rank 2 < 3


def test_accuracy_and_confusion() -> None:
    assert accuracy([0, 1, 2, 2], [0, 1, 1, 2]) == 0.75
    cm = confusion_matrix([0, 1, 2, 2], [0, 1, 1, 2], 3)
    assert cm.tolist() == [[1, 0, 0], [0, 1, 1], [0, 0, 1]]  # row = true class
    assert cm.sum() == 4


def test_geodesic_error_degrees_and_sign() -> None:
    c, s = math.cos(math.pi / 4), math.sin(math.pi / 4)
    ident = torch.tensor([[1.0, 0, 0, 0]])
    z90 = torch.tensor([[c, 0, 0, s]])  # 90 degrees about z
    assert geodesic_error_deg(z90, ident).item() == pytest.approx(90.0, abs=1e-6)
    assert geodesic_error_deg(-z90, z90).item() == pytest.approx(0.0, abs=1e-6)
    x180 = torch.tensor([[0.0, 1, 0, 0]])
    assert geodesic_error_deg(x180, ident).item() == pytest.approx(180.0, abs=1e-6)


def _records(n_obj: int, archs: list[str], split: str, classes: list[str], rot: int = 2) -> list:
    out = []
    for o in range(n_obj):
        for r in range(rot):
            for a in archs:
                c = classes[o % len(classes)]
                out.append(
                    {
                        "id": f"{split}{o}_{r}_{a}",
                        "object": f"{split}{o}",
                        "class": c,
                        "arch": a,
                        "split": split,
                        "rotation": [1.0, 0, 0, 0],
                    }
                )
    return out


CFG = {"classification": {"mlp": {"epochs": 60, "hidden": [64, 32]}}, "retrieval": {"ks": [1, 5]}}


def test_protocol_scores_an_informative_representation_high_and_noise_at_chance() -> None:
    """An embedding that encodes the object (and hence the class) must reach recall@1 = 1 and
    accuracy 1 on every architecture, seen or not; pure noise stays near chance."""
    classes = ["c0", "c1", "c2"]
    recs = _records(12, ["mlp", "hash"], "train", classes) + _records(
        9, ["mlp", "hash", "mlp_2_layers"], "test", classes
    )
    rng = np.random.default_rng(0)
    objs = sorted({r["object"] for r in recs})
    class_code = {c: rng.normal(size=16) * 3 for c in classes}
    obj_code = {o: rng.normal(size=16) for o in objs}
    good = np.stack(
        [class_code[r["class"]] + obj_code[r["object"]] + 0.05 * rng.normal(size=16) for r in recs]
    )
    res, extras = evaluate_embeddings(recs, good, seen_archs=["mlp", "hash"], cfg=CFG, seed=0)
    c, rt = res["classification"], res["retrieval"]
    assert c["seen"] == 1.0 and c["unseen"] == 1.0
    assert set(c["per_arch"]) == {"mlp", "hash", "mlp_2_layers"}
    assert c["seen_archs"] == ["mlp", "hash"] and c["unseen_archs"] == ["mlp_2_layers"]
    assert rt["recall_at_1"]["mlp->hash"] == 1.0 and rt["mean_recall_at_1"] == 1.0
    assert rt["recall_at_1"]["hash->hash"] == 1.0  # across rotations
    assert res["held_out_family"] is None  # mlp and hash families were both trained on
    assert extras["confusion"].trace() == extras["confusion"].sum()
    noise = rng.normal(size=good.shape)
    res_n, _ = evaluate_embeddings(recs, noise, seen_archs=["mlp", "hash"], cfg=CFG, seed=0)
    # chance: accuracy 1/3, cross-arch recall@1 = 2 positives / 18 candidates
    assert rt["chance_mean_recall_at_1"] == pytest.approx(2 / 18)
    assert res_n["classification"]["probes"]["knn1"]["overall"] < 0.7
    assert res_n["retrieval"]["mean_recall_at_1"] < 0.5


def test_other_rotation_recall_separates_pose_from_identity() -> None:
    """An embedding of (object, rotation) — what a functional probe sees — retrieves the same
    pose across archs perfectly but the object's other rotations only by chance."""
    classes = ["c0", "c1"]
    recs = _records(2, ["mlp"], "train", classes) + _records(6, ["mlp", "hash"], "test", classes)
    for r in recs:
        r["rotation"] = [1.0, 0, 0, 0] if "_0_" in r["id"] else [0.0, 1, 0, 0]
    rng = np.random.default_rng(2)
    pose_code: dict = {}
    z = np.stack(
        [
            pose_code.setdefault((r["object"], tuple(r["rotation"])), rng.normal(size=32))
            + 0.01 * rng.normal(size=32)
            for r in recs
        ]
    )
    res, _ = evaluate_embeddings(recs, z, seen_archs=["mlp"], cfg=CFG, seed=0)
    rt = res["retrieval"]
    assert rt["mean_recall_at_1"] == 1.0
    assert rt["recall_at_1_other_rotation"]["mlp->hash"] < 0.5
    # 1 positive (the other rotation) among 11 candidates (12 NeRFs, the query's pose left out)
    assert rt["chance_mean_recall_at_1_other_rotation"] == pytest.approx(1 / 11)
    assert rt["across_rotations"]["mlp"] < 0.5


def test_held_out_family_is_reported() -> None:
    classes = ["c0", "c1"]
    recs = _records(4, ["mlp"], "train", classes) + _records(4, ["mlp", "hash"], "test", classes)
    z = np.random.default_rng(1).normal(size=(len(recs), 8))
    res, _ = evaluate_embeddings(recs, z, seen_archs=["mlp"], cfg=CFG, seed=0)
    held = res["held_out_family"]
    assert list(held) == ["hash"] and held["hash"]["archs"] == ["hash"]
    assert 0.0 <= held["hash"]["accuracy"] <= 1.0
    assert held["hash"]["mean_recall_at_1"] == pytest.approx(
        np.mean([res["retrieval"]["recall_at_1"][k] for k in ("mlp->hash", "hash->mlp")])
    )
