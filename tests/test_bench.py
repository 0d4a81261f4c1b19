"""`graphnerf embed` / `graphnerf benchmark` end to end on a small zoo, and their bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import graphnerf
from graphnerf.bench.embed import read_embeddings
from graphnerf.cli import main
from graphnerf.data.manifest import append_record, read_manifest
from graphnerf.scenes.rotations import random_rotation

torch.set_num_threads(1)

CLASSES = ("chair", "table")
# train: 1 object per class; test: 2 per class; 2 rotations each; the test split adds an arch
ARCHS = {"train": ("mlp", "hash"), "test": ("mlp", "hash", "mlp_2_layers")}
FAST = [
    "classification.mlp.epochs=20",
    "classification.mlp.hidden=[64,32]",
    "report.render_size=24",
    "report.render_samples=24",
    "report.n_queries=2",
]


def _write_zoo(
    root: Path,
    plan: dict[str, tuple[str, ...]],
    per_split: dict[str, int],
    classes: tuple[str, ...] = CLASSES,
) -> Path:
    """A zoo of freshly initialised fields written with save_field + manifest lines (no fitting:
    the plumbing and the file contract are under test here, not what the NeRFs show)."""
    root.mkdir(parents=True, exist_ok=True)
    seed = 0
    for split, archs in plan.items():
        for cls in classes:
            for o in range(per_split[split]):
                obj = f"{cls}_{split}{o}"
                for r in range(2):
                    q = [1.0, 0.0, 0.0, 0.0] if r == 0 else random_rotation(seed).tolist()
                    for arch in archs:
                        seed += 1
                        rel = f"nerfs/{obj}_r{r}_{arch}.safetensors"
                        rec = {
                            "id": f"{obj}_r{r}_{arch}",
                            "object": obj,
                            "class": cls,
                            "arch": arch,
                            "rotation": q,
                            "split": split,
                            "file": rel,
                        }
                        (root / "nerfs").mkdir(exist_ok=True)
                        graphnerf.save_field(graphnerf.build_field(arch, seed=seed), root / rel)
                        append_record(root, rec)
    return root


def _gmn_checkpoint(path: Path, train_archs: list[str]) -> Path:
    from graphnerf.train import build_encoder, save_checkpoint
    from graphnerf.train.checkpoint import checkpoint_dict

    cfg = {"name": "gmn", "hidden": 16, "edge_hidden": 8, "n_blocks": 1, "embedding_dim": 16}
    enc = build_encoder(cfg, {"rotation": {"hidden": 16, "n_layers": 1}}, seed=3)
    save_checkpoint(
        checkpoint_dict(enc.module, archs=train_archs, zoo="test", step=0, config={}), path
    )
    return path


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("bench")
    zoo = _write_zoo(tmp / "zoo", ARCHS, {"train": 1, "test": 2})
    ckpt = _gmn_checkpoint(tmp / "gmn.pt", ["mlp"])  # the hash family is held out
    out = tmp / "out"
    # the model itself as --baseline: the same code must give it the same numbers
    rc = main(
        [
            "benchmark",
            str(ckpt),
            str(zoo),
            *FAST,
            "--out",
            str(out),
            "--no-progress",
            "--baseline",
            str(ckpt),
            "--baseline-name",
            "itself",
        ]
    )
    assert rc == 0
    return {"tmp": tmp, "zoo": zoo, "ckpt": ckpt, "out": out}


def _get(d: dict, dotted: str):
    for part in dotted.split("."):
        assert part in d, f"results.json lacks {dotted!r} (at {part!r})"
        d = d[part]
    return d


def test_benchmark_writes_every_contract_key(bench_run: dict) -> None:
    res = json.loads((bench_run["out"] / "results.json").read_text())
    test_archs = list(ARCHS["test"])
    pairs = [f"{q}->{g}" for q in test_archs for g in test_archs]
    for prefix, r in [("", res), *((f"baselines.{n}.", b) for n, b in res["baselines"].items())]:
        keys = [
            "classification.seen",
            "classification.unseen",
            "retrieval.mean_recall_at_1",
            "rotation.median_deg",
            "rotation.mean_deg",
        ]
        keys += [f"classification.per_arch.{a}" for a in test_archs]
        keys += [f"retrieval.recall_at_1.{p}" for p in pairs]
        keys += [f"retrieval.recall_at_5.{p}" for p in pairs]
        keys += [f"retrieval.recall_at_1_other_rotation.{p}" for p in pairs]
        for k in keys:
            _get(r, k)
        for k in ["classification.seen", "classification.unseen", "retrieval.mean_recall_at_1"]:
            v = _get(r, k)
            assert 0.0 <= v <= 1.0, (prefix + k, v)
        assert all(0.0 <= v <= 1.0 for v in r["retrieval"]["recall_at_1"].values())
    assert set(res["baselines"]) == {"random_init", "functional_probe", "itself"}
    same = res["baselines"]["itself"]
    assert same["checkpoint_hash"] == res["checkpoint_hash"]
    for k in ("classification", "retrieval", "rotation", "held_out_family"):
        assert same[k] == res[k], k
    # the GMN has a rotation head: degrees in [0, 180]; the functional probe has none
    assert 0.0 <= res["rotation"]["median_deg"] <= 180.0
    assert res["rotation"]["n_pairs"] == 2 * 2 * 3 * 2  # objects x archs x ordered pairs
    assert res["baselines"]["functional_probe"]["rotation"]["median_deg"] is None
    assert res["classification"]["seen_archs"] == ["mlp"]
    assert res["held_out_family"]["hash"]["archs"] == ["hash"]
    for k in ["config", "seeds", "checkpoint_hash", "zoo", "wall_s"]:
        assert k in res
    assert len(res["checkpoint_hash"]) == 64
    assert res["zoo"]["splits"]["test"]["nerfs"] == 2 * 2 * 2 * 3


def test_benchmark_report_and_plots(bench_run: dict) -> None:
    from PIL import Image

    out = bench_run["out"]
    report = (out / "report.md").read_text()
    pngs = ["tsne.png", "confusion.png", "recall_at_1.png", "rotation_error.png", "retrievals.png"]
    for name in pngs:
        assert f"]({name})" in report
        img = np.asarray(Image.open(out / name).convert("L"))
        assert img.shape[0] > 50 and img.shape[1] > 50
        assert img.std() > 5, f"{name} is blank"
    assert "| functional_probe |" in report and "| random_init |" in report


def test_embed_file_recall_matches_results(bench_run: dict) -> None:
    """recall@1 recomputed with numpy from `graphnerf embed`'s file alone equals results.json."""
    f = bench_run["tmp"] / "emb.safetensors"
    rc = main(
        ["embed", str(bench_run["ckpt"]), str(bench_run["zoo"]), "--out", str(f), "--no-progress"]
    )
    assert rc == 0
    from safetensors import safe_open
    from safetensors.numpy import load_file

    z = load_file(str(f))["embeddings"]
    with safe_open(str(f), framework="np") as h:
        meta = h.metadata()
    ids = json.loads(meta["ids"])
    assert z.dtype == np.float32 and z.shape == (len(ids), 16)
    assert len(meta["checkpoint_hash"]) == 64 and json.loads(meta["model_config"])["name"] == "gmn"
    recs = {r["id"]: r for r in read_manifest(bench_run["zoo"])}
    assert {recs[i]["split"] for i in ids} == {"test"}
    res = json.loads((bench_run["out"] / "results.json").read_text())
    z64 = z.astype(np.float64)  # cosine in float64, as the metric computes it
    zn = z64 / np.linalg.norm(z64, axis=1, keepdims=True)
    obj = np.array([recs[i]["object"] for i in ids])
    arch = np.array([recs[i]["arch"] for i in ids])
    # the same numbers as the benchmark's own embeddings, bit for bit (batch size 1)
    zb = read_embeddings(bench_run["out"] / "embeddings.safetensors")
    assert np.array_equal(zb.rows(ids).numpy(), z)
    for key, want in res["retrieval"]["recall_at_1"].items():
        qa, ga = key.split("->")
        qi, gi = np.flatnonzero(arch == qa), np.flatnonzero(arch == ga)
        hits = []
        for q in qi:
            cand = gi[gi != q]
            pos = obj[cand] == obj[q]
            if not pos.any():
                continue
            sim = zn[cand] @ zn[q]
            # hit: no other object's NeRF at least as similar as the best one of this object
            hits.append(not (sim[~pos] >= sim[pos].max()).any())
        assert np.mean(hits) == pytest.approx(want), key


def test_bad_inputs_are_one_line_errors(bench_run: dict, tmp_path: Path, capsys) -> None:
    zoo, ckpt = bench_run["zoo"], bench_run["ckpt"]

    def err(args: list[str]) -> str:
        assert main(args) == 2
        msg = capsys.readouterr().err.strip()
        assert "\n" not in msg, msg
        return msg

    junk = tmp_path / "junk.pt"
    junk.write_text("not a checkpoint")
    assert "not a graphnerf encoder checkpoint" in err(
        ["embed", str(junk), str(zoo), "--out", str(tmp_path / "e.safetensors")]
    )
    assert "unknown key 'classification.mlp.epoch'" in err(
        ["benchmark", str(ckpt), str(zoo), "classification.mlp.epoch=3", "--out", str(tmp_path)]
    )
    no_test = _write_zoo(tmp_path / "notest", {"train": ("mlp",)}, {"train": 1}, ("lamp",))
    assert "no 'test' split" in err(
        ["benchmark", str(ckpt), str(no_test), "--out", str(tmp_path / "o")]
    )
    # embeddings of another zoo
    other = tmp_path / "other.safetensors"
    assert (
        main(
            [
                "embed",
                str(ckpt),
                str(no_test),
                "--out",
                str(other),
                "--split",
                "train",
                "--no-progress",
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert "ids do not match the zoo: 2 of 2 are not in" in err(
        ["benchmark", str(ckpt), str(zoo), "--embeddings", str(other), "--out", str(tmp_path / "o")]
    )
    # embeddings of this zoo's test split only: the train rows the probes need are missing
    test_only = tmp_path / "test_only.safetensors"
    assert main(["embed", str(ckpt), str(zoo), "--out", str(test_only), "--no-progress"]) == 0
    capsys.readouterr()
    assert "ids do not match the zoo: no row for 8 of" in err(
        ["benchmark", str(ckpt), str(zoo), "--embeddings", str(test_only), "--out", str(tmp_path)]
    )
    with pytest.raises(ValueError, match="not in the zoo's manifest"):
        read_embeddings(other, read_manifest(zoo))


def test_arch_the_model_cannot_read(tmp_path: Path, capsys) -> None:
    """A SANE whose position table is too short for a wide MLP's token sequence."""
    from omegaconf import OmegaConf

    from graphnerf.config import load_config
    from graphnerf.train import build_encoder, save_checkpoint
    from graphnerf.train.checkpoint import checkpoint_dict

    cfg = OmegaConf.to_container(load_config("model/sane").model, resolve=True)
    cfg["net"].update(d_model=16, d_latent=8, n_heads=2, n_layers=1, max_positions=100)
    cfg["tokens"]["n_points"] = 16
    enc = build_encoder(cfg, None, seed=0, name="sane")
    ckpt = save_checkpoint(
        checkpoint_dict(enc.module, archs=None, zoo="z", step=0, config={}), tmp_path / "s.pt"
    )
    zoo = _write_zoo(tmp_path / "zoo", {"test": ("mlp", "mlp_128_width")}, {"test": 1})
    assert (
        main(
            [
                "embed",
                str(ckpt),
                str(zoo),
                "--out",
                str(tmp_path / "e.safetensors"),
                "--no-progress",
            ]
        )
        == 2
    )
    msg = capsys.readouterr().err.strip()
    assert "cannot read arch 'mlp_128_width'" in msg and "\n" not in msg


def test_benchmark_from_an_embeddings_file_gives_the_same_numbers(bench_run: dict) -> None:
    """`graphnerf embed --split all` then `benchmark --embeddings`: the model's numbers are those
    of the run that embedded the zoo itself (the file is read, not recomputed)."""
    tmp, zoo, ckpt = bench_run["tmp"], bench_run["zoo"], bench_run["ckpt"]
    f = tmp / "all.safetensors"
    assert (
        main(["embed", str(ckpt), str(zoo), "--split", "all", "--out", str(f), "--no-progress"])
        == 0
    )
    out = tmp / "from_file"
    off = [
        "baselines.random_init=false",
        "baselines.functional_probe.enabled=false",
        "report.enabled=false",
    ]
    assert (
        main(
            [
                "benchmark",
                str(ckpt),
                str(zoo),
                *FAST,
                *off,
                "--embeddings",
                str(f),
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    a = json.loads((out / "results.json").read_text())
    b = json.loads((bench_run["out"] / "results.json").read_text())
    assert a["baselines"] == {}
    for k in ("classification", "retrieval", "held_out_family"):
        assert a[k] == b[k], k
