"""`graphnerf demo` end to end: the 7 sections on tiny settings, its files, its errors, its help."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys

import pytest
from _tiny import TINY_GMN, TINY_HEADS
from omegaconf import OmegaConf

import graphnerf
import graphnerf.data
from graphnerf.cli import main

# 2 classes x 2 objects (1 train, 1 test) x 2 rotations; train: mlp, test: mlp + hash = 12 NeRFs
TINY_ZOO = [
    "classes=[chair,table]",
    "meshes=[]",
    "objects_per_class=2",
    "splits={train: 0.5, val: 0.0, test: 0.5}",
    "archs={train: [mlp], val: [mlp], test: [mlp, hash]}",
    "batch_size=4",
    "eval={size: 16, n_samples: 16, iou_res: 16}",
    "fit.distill.common.steps=25",
    "fit.distill.common.cache_uniform=4096",
    "fit.distill.common.cache_surface=4096",
    "fit.distill.common.surface_grid=24",
]
TINY_TRAIN = ["data.objects_per_batch=2", *TINY_GMN, *TINY_HEADS]
TINY_BENCH = [
    "classification.mlp.epochs=5",
    "classification.mlp.hidden=[32]",
    "report.render_size=16",
    "report.render_samples=8",
    "baselines.functional_probe.resolution=8",
]
STEPS = 4


def _listed(values: list[str]) -> str:
    return "[" + ",".join(f'"{v}"' for v in values) + "]"


def tiny_args(out) -> list[str]:
    return [
        "demo",
        f"out_dir={out}",
        "archs=[mlp,triplane_8_channels,hash]",
        "scenes=[chair]",
        "image_size=16",
        "n_samples=8",
        "check_points=256",
        f"train_steps={STEPS}",
        f"zoo_overrides={_listed(TINY_ZOO)}",
        f"train_overrides={_listed(TINY_TRAIN)}",
        f"bench_overrides={_listed(TINY_BENCH)}",
    ]


def _fraction(v) -> bool:
    return v is None or (isinstance(v, float) and 0.0 <= v <= 1.0)


def check_contract(r: dict) -> None:
    """The keys of graphnerf/bench/benchmark.py's results.json, values in range."""
    for key in ("classification", "retrieval", "rotation", "baselines", "model", "zoo", "seeds"):
        assert key in r, key
    c, rt, rot = r["classification"], r["retrieval"], r["rotation"]
    for v in (c["seen"], c["overall"], c["chance"], rt["mean_recall_at_1"]):
        assert isinstance(v, float) and 0.0 <= v <= 1.0, v
    assert _fraction(c["unseen"]) and _fraction(rt["mean_recall_at_1_other_rotation"])
    assert all(_fraction(v) for v in rt["recall_at_1"].values())
    if rot["median_deg"] is not None:
        assert 0.0 <= rot["median_deg"] <= 180.0 and rot["n_pairs"] > 0
    assert 0.0 <= rot["identity_median_deg"] <= 180.0


def report_images(path) -> list[str]:
    return re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", path.read_text())


def test_demo_tiny_runs_all_seven_sections(tmp_path, capsys, monkeypatch):
    """Sections 1-7 on tiny settings: round trips, scenes, a fitted zoo split by object, encoders,
    a short training run, its benchmark, and (rerun with a shipped encoder) section 7."""
    weights = tmp_path / "weights"
    weights.mkdir()
    monkeypatch.setenv("GRAPHNERF_WEIGHTS_DIR", str(weights))  # nothing shipped (yet)
    out = tmp_path / "demo"
    assert main(tiny_args(out)) == 0
    captured = capsys.readouterr()
    text = captured.out
    # not a terminal: progress comes as plain lines, never escape codes or carriage returns
    assert "\x1b" not in captured.err and "\r" not in captured.err
    summary = json.loads((out / "summary.json").read_text())

    # 1. lossless round trips
    rows = {r["arch"]: r for r in summary["architectures"]}
    assert set(rows) == {"mlp", "triplane_8_channels", "hash"}
    for r in rows.values():
        assert r["max_diff_safetensors"] == r["max_diff_tcnn"] == r["max_diff_graph"] == 0.0
    assert rows["hash"]["params"] == 43_008

    # 3. the zoo: really fitted, split by object
    records = graphnerf.data.read_manifest(out / "zoo")
    assert len(records) == 12
    split_of = {}
    for r in records:
        assert split_of.setdefault(r["object"], r["split"]) == r["split"]  # one split per object
    assert sorted(split_of.values()) == ["test", "test", "train", "train"]
    assert all(math.isfinite(r["psnr"]) and 0 <= r["iou"] <= 1 for r in records)
    from graphnerf.data import make_plan
    from graphnerf.demo import zoo_config
    from graphnerf.fit import evaluate

    zcfg = zoo_config(OmegaConf.create({"zoo_overrides": TINY_ZOO}), out)
    jobs = {j.id: j for j in make_plan(zcfg).jobs}
    gains = []
    for r in (r for r in records if r["arch"] == "hash"):  # fitted beats unfitted
        # (after 25 steps the hash grid, the fastest learner, has the shape: chair_1001 measured
        # PSNR +2.6 dB. IoU is not compared: at 16^3 a thin table can occupy no voxel centre, and
        # an empty field then scores IoU 1. Quality goals: `scripts/bench.py fit`)
        scene = jobs[r["id"]].scene(zcfg.scene.density, zcfg.scene.edge)
        blank = evaluate(graphnerf.build_field("hash", seed=0), scene, 16, 16, 16)
        gains.append(r["psnr"] - blank["psnr"])
    assert sum(gains) / len(gains) > 1.5, gains

    # 5. training ran on the train split: the run's log and checkpoint
    tr = summary["train"]
    assert tr["steps"] == STEPS and tr["loss"] == "rec_con" and not tr["resumed"]
    assert tr["loss_weights"] == {"render": 1.0, "contrastive": 0.02}
    assert (out / "train" / "checkpoints" / "last.pt").is_file()
    log = [json.loads(x) for x in (out / "train" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "loss" in r] == list(range(1, STEPS + 1))

    # 6. the benchmark contract in out_dir/results.json, the short run at the top level
    res = json.loads((out / "results.json").read_text())
    check_contract(res)
    assert set(res["baselines"]) == {"random_init", "functional_probe"}
    assert res["zoo"]["splits"]["test"]["objects"] == 2
    assert res["checkpoint"].endswith("last.pt") and len(res["checkpoint_hash"]) == 64
    assert res["pretrained"] is None
    bench = json.loads((out / "bench" / "short_run" / "results.json").read_text())
    assert bench["classification"] == res["classification"]
    # the demo's table is the benchmark's numbers, printed
    table = {row["name"]: row for row in res["demo"]["table"]}
    short = table[f"short-run GMN ({STEPS} steps)"]
    assert short["accuracy"] == res["classification"]["overall"]
    assert short["recall_at_1"] == res["retrieval"]["mean_recall_at_1"]
    assert table["chance"]["accuracy"] == res["classification"]["chance"] == 0.5
    fp = res["baselines"]["functional_probe"]["retrieval"]["mean_recall_at_1"]
    assert table["functional probe"]["recall_at_1"] == fp
    line = next(x for x in text.splitlines() if x.startswith("short-run GMN"))
    assert f"{100 * short['accuracy']:.1f}%" in line

    # 7. nothing shipped: one line says so
    assert "no pretrained encoder is shipped" in text
    # timings: every section, wall and CPU
    assert [k.split(".")[0] for k in summary["timing"]] == [str(i) for i in range(1, 8)]
    assert all(v["cpu_s"] >= 0 and v["wall_s"] >= 0 for v in summary["timing"].values())
    assert summary["threads"] == 1 and "s CPU" in text and "load average" in text
    # report.md: every picture it shows exists
    imgs = report_images(out / "report.md")
    assert {"scenes.png", "zoo.png", "bench/short_run/confusion.png"} <= set(imgs)
    assert all((out / p).stat().st_size > 0 for p in imgs), imgs

    # rerun with a shipped encoder (the short run's checkpoint, exported): zoo and training are
    # reused, section 7 benchmarks it by name, and the same weights score the same numbers
    from graphnerf.train.pretrained import export_pretrained

    export_pretrained(out / "train" / "checkpoints" / "last.pt", "demo-test", weights)
    assert main(tiny_args(out)) == 0
    text = capsys.readouterr().out
    assert "fitted 0" in text and "demo-test" in text
    res2 = json.loads((out / "results.json").read_text())
    pre = res2["pretrained"]
    check_contract(pre)
    assert pre["pretrained_name"] == "demo-test" and pre["random_init_same_as_short_run"]
    assert pre["baselines"] == {}  # both baselines are section 6's (same config, same zoo)
    assert pre["classification"] == res2["classification"] == res["classification"]
    assert pre["retrieval"]["mean_recall_at_1"] == res2["retrieval"]["mean_recall_at_1"]
    assert "pretrained demo-test" in {row["name"] for row in res2["demo"]["table"]}
    summary2 = json.loads((out / "summary.json").read_text())
    assert summary2["train"]["resumed"] and summary2["train"]["steps"] == STEPS
    imgs = report_images(out / "report.md")
    assert "bench/pretrained/confusion.png" in imgs
    assert all((out / p).is_file() for p in imgs), imgs


def test_demo_drops_real_meshes_whose_package_is_missing(monkeypatch):
    from graphnerf.demo import split_installed_meshes
    from graphnerf.scenes import real

    monkeypatch.setattr(real, "_package_dir", lambda package: None)
    assert split_installed_meshes(["duck", "my/own.obj"]) == (["my/own.obj"], ["duck"])


def test_demo_zoo_is_split_by_object_and_held_out_from_procedural13():
    """The default mini-zoo: 84 NeRFs, every class in both splits, no object in both, and none of
    the objects of the shipped encoder's training zoo (procedural13)."""
    from graphnerf.data import load_zoo_config, make_plan

    jobs = make_plan(load_zoo_config([], "demo")).jobs
    assert len(jobs) == 84
    split_of: dict[str, str] = {}
    for j in jobs:
        assert split_of.setdefault(j.object, j.split) == j.split
    classes = {j.split: set() for j in jobs}
    for j in jobs:
        classes[j.split].add(j.object.rsplit("_", 1)[0] if "_" in j.object else "mesh")
    assert classes["train"] == classes["test"] and len(classes["test"]) == 5
    p13 = {j.object for j in make_plan(load_zoo_config(["classes=[chair]"], "procedural13")).jobs}
    assert not p13 & set(split_of)


@pytest.mark.slow
def test_demo_full_defaults(tmp_path):
    """`graphnerf demo` exactly as the README runs it (minutes; `pytest -m slow`)."""
    r = subprocess.run(
        [sys.executable, "-m", "graphnerf.cli", "demo", f"out_dir={tmp_path}"],
        capture_output=True,
        text=True,
        timeout=7200,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert len(summary["architectures"]) == 13
    assert all(r[k] == 0.0 for r in summary["architectures"] for k in r if k.startswith("max_"))
    records = graphnerf.data.read_manifest(tmp_path / "zoo")
    assert len(records) == 84
    # really fitted: the object's shape is there; quality goals live in `scripts/bench.py fit`
    assert all(r["iou"] > 0.5 and math.isfinite(r["psnr_fg"]) for r in records), records
    check_contract(json.loads((tmp_path / "results.json").read_text()))
    assert all((tmp_path / p).is_file() for p in report_images(tmp_path / "report.md"))


def test_demo_rejects_unknown_arch(tmp_path, capsys):
    assert main(["demo", f"out_dir={tmp_path}", "archs=[mlp,voxels]"]) == 2
    assert "voxels" in capsys.readouterr().err


@pytest.mark.parametrize(
    "override,match",
    [
        ("image_sise=32", "unknown key 'image_sise'; expected one of ['archs', 'bench_overrides'"),
        ("train_stepz=3", "unknown key 'train_stepz'"),
        ("image_size=abc", "image_size must be an integer >= 8, got 'abc'"),
        ("train_steps=0", "train_steps must be an integer >= 1, got 0"),
        ("threads=0", "threads must be an integer >= 1 or null, got 0"),
        ("zoo=maybe", "zoo must be true or false"),
        ('zoo_overrides=["classes=[chiar]"]', "unknown class(es) ['chiar']"),
        ('zoo_overrides=["fit.distill.common.stepz=3"]', "unknown key 'fit.distill.common.stepz'"),
        ('train_overrides=["model.hiden=3"]', "unknown key 'model.hiden'"),
        ('train_overrides=["loss=rec_cno"]', "rec_cno"),
        ('bench_overrides=["classification.mlp.epochz=3"]', "classification.mlp.epochz"),
        ("train_overrides=[steps]", "train_overrides must be a list of key=value strings"),
        ("pretrained=procedural99", "pretrained='procedural99' is not a shipped encoder"),
    ],
)
def test_demo_bad_override_is_one_line_before_any_work(tmp_path, capsys, override, match):
    out = tmp_path / "d"
    assert main(["demo", f"out_dir={out}", override]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and not out.exists()  # nothing ran, nothing written
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("graphnerf demo: error:"), captured.err
    assert match in lines[0]


def test_demo_help_describes_every_section():
    r = subprocess.run(
        [sys.executable, "-m", "graphnerf.cli", "demo", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    text = r.stdout
    for words in (
        "1. architectures",
        "2. scenes",
        "3. mini-zoo",
        "4. encoders",
        "5. training",
        "6. benchmark",
        "7. pretrained",
        "results.json",
        "report.md",
        "summary.json",
        "threads",
    ):
        assert words in text, words
    assert "load average" in text  # the stated time says what it was measured under
    from graphnerf import demo

    for words in ("Short training run", "Benchmark", "Pretrained", "results.json"):
        assert words in (demo.__doc__ or ""), words
