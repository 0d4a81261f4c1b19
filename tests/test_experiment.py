"""`graphnerf experiment`: every stage runs, resumes where it stopped, and a finished stage is a
no-op (configs/experiment/tiny.yaml: a 20-NeRF zoo at the tiny budgets, two short GMN runs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from graphnerf.experiment import ExperimentError, load_experiment_config, run_experiment
from graphnerf.experiment.stages import plan_stages


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("exp") / "run"
    cfg = load_experiment_config(["experiment=tiny", f"out_dir={root}"])
    cfg.runs.gmn.append("train.stop_after=2")  # the first sitting stops at step 2 of 4
    first = run_experiment(cfg)
    logs = [json.dumps(first)]
    second = run_experiment(["experiment=tiny", f"out_dir={root}"])
    logs.append(json.dumps(second))
    return root, logs


def test_every_stage_ran_and_wrote_its_output(run_dir) -> None:
    root, _ = run_dir
    ledger = json.loads((root / "stages.json").read_text())
    assert set(ledger) == {"zoo", "train/gmn", "train/lofo_hash", "bench/gmn", "bench/lofo_hash",
                           "report"}
    for entry in ledger.values():
        assert entry["wall_s"] >= 0 and entry["cpu_s"] >= 0 and entry["threads"] >= 1
    manifest = (root / "zoo" / "manifest.jsonl").read_text().splitlines()
    assert len(manifest) == 20
    for run in ("gmn", "lofo_hash"):
        assert (root / "train" / run / "checkpoints" / "last.pt").is_file()
        res = json.loads((root / "bench" / run / "results.json").read_text())
        assert 0.0 <= res["classification"]["seen"] <= 1.0
    results = json.loads((root / "results.json").read_text())
    assert set(results["runs"]) == {"gmn"} and results["missing"] == []
    assert results["lofo"]["lofo_hash"]["held_out_family"] == "hash"
    names = list(results["baselines"])
    assert "gmn (random init)" in names and any(n.startswith("functional probe (PCA ") for n in names)
    report = (root / "report.md").read_text()
    assert "## Leave one family out" in report and "## Compute" in report
    assert (root / "experiment.png").stat().st_size > 5000


def test_interrupted_training_resumed_in_a_second_sitting(run_dir) -> None:
    root, _ = run_dir
    from graphnerf.train.checkpoint import read_checkpoint

    ck = read_checkpoint(root / "train" / "gmn" / "checkpoints" / "last.pt")
    assert ck["state"]["sampler"]["step"] == 4  # 2 steps, stop, then 2 more
    entry = json.loads((root / "stages.json").read_text())["train/gmn"]
    assert entry["sittings"] == 2 and entry["steps"] == 4 and not entry["partial"]
    steps = [json.loads(line).get("step") for line in
             (root / "train" / "gmn" / "log.jsonl").read_text().splitlines()]
    assert max(s for s in steps if s is not None) == 4


def test_rerun_is_a_no_op_and_a_lost_result_is_recomputed(run_dir, capsys) -> None:
    root, _ = run_dir
    ckpt = root / "train" / "gmn" / "checkpoints" / "last.pt"
    mtime = ckpt.stat().st_mtime_ns
    before = json.loads((root / "stages.json").read_text())
    run_experiment(["experiment=tiny", f"out_dir={root}"])
    out = capsys.readouterr().out
    assert "train/gmn: done before" in out and "report: up to date" in out
    assert json.loads((root / "stages.json").read_text()) == before
    assert ckpt.stat().st_mtime_ns == mtime
    # a lost benchmark result: only that benchmark and the report run again
    (root / "bench" / "lofo_hash" / "results.json").unlink()
    run_experiment(["experiment=tiny", f"out_dir={root}"])
    out = capsys.readouterr().out
    assert "bench/gmn: done before" in out and "bench/lofo_hash: done before" not in out
    assert (root / "bench" / "lofo_hash" / "results.json").is_file()
    assert ckpt.stat().st_mtime_ns == mtime


def test_config_errors_are_one_line(tmp_path) -> None:
    with pytest.raises(ExperimentError, match="out_dir=RUN is required"):
        load_experiment_config(["experiment=tiny"])
    with pytest.raises(ExperimentError, match="unknown key 'scael"):
        load_experiment_config(["experiment=tiny", f"out_dir={tmp_path}", "scael.steps=2"])
    with pytest.raises(ExperimentError, match="scale.steps must be an integer >= 1"):
        load_experiment_config(["experiment=tiny", f"out_dir={tmp_path}", "scale.steps=0"])
    cfg = load_experiment_config(["experiment=tiny", f"out_dir={tmp_path}", "only=[train/sane]"])
    with pytest.raises(ExperimentError, match="unknown stages"):
        plan_stages(cfg)
    with pytest.raises(ExperimentError):
        load_experiment_config(["experiment=nonexistent", f"out_dir={tmp_path}"])


def test_procedural13_plan_and_scale() -> None:
    from graphnerf.data.plan import make_plan
    from graphnerf.experiment.stages import train_config, zoo_config

    cfg = load_experiment_config(["out_dir=/tmp/x"])
    assert [s.name for s in plan_stages(cfg)][:3] == ["zoo", "train/gmn", "train/sane"]
    plan = make_plan(zoo_config(cfg))
    counts = {s: sum(j.split == s for j in plan.jobs) for s in ("train", "val", "test")}
    assert counts == {"train": 390, "val": 78, "test": 676}
    assert {j.arch for j in plan.jobs if j.split == "test"} >= {"mlp_2_layers", "hash_8_levels"}
    big = load_experiment_config(["out_dir=/tmp/x", "scale.objects=2", "scale.steps=3"])
    assert len(make_plan(zoo_config(big)).jobs) == 2 * len(plan.jobs)
    assert int(train_config(big, "gmn").train.steps) == 3 * int(train_config(cfg, "gmn").train.steps)
    assert list(train_config(cfg, "lofo_hash").data.train_archs) == ["mlp", "triplane"]
    from graphnerf.train.loop import model_name_of

    assert model_name_of(train_config(cfg, "sane").model) == "sane"  # its config has no name
