"""graphnerf train: presets run and overfit a fixed batch, resume == uninterrupted, DDP == one
process, bad input fails cleanly, checkpoints load with weights_only (one thread, tiny zoo)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from _tiny import TINY_GMN, TINY_HEADS

from graphnerf.cli import main as cli_main
from graphnerf.data import generate, load_zoo_config
from graphnerf.train import load_encoder
from graphnerf.train.data import StepDataset
from graphnerf.train.loop import TrainError, _Run, load_train_config, recall_at_1, train

torch.set_num_threads(1)

# the smallest MLP and hash graphs of the zoo (7k and 27k edges), so that GMN steps are cheap
MLP, HASH = "mlp_32_width", "hash_11_table_size"
ZOO_OVERRIDES = [
    "splits={train: 0.5, val: 0.5, test: 0.0}",
    f"archs={{train: [{MLP}, {HASH}], val: [{MLP}, {HASH}], test: [{MLP}]}}",
    "eval={size: 8, n_samples: 8, iou_res: 8}",
]

COMMON = [
    "wandb.mode=disabled",
    "train.threads=1",
    "data.objects_per_batch=2",
    *TINY_HEADS,
    "val.batches=1",
    "train.log_every=1",
]
SMALL = {
    "gmn": ["model=gmn", *TINY_GMN],
    "sane": [
        "model=sane",
        "model.net.d_model=32",
        "model.net.d_latent=16",
        "model.net.n_heads=2",
        "model.net.n_layers=1",
        "model.net.proj_dims=[16,8]",
        "model.tokens.n_points=16",
    ],
}
PRESETS = [
    ("gmn", "rec"),
    ("gmn", "con"),
    ("gmn", "rec_con"),
    ("gmn", "rec_con_rot"),
    ("sane", "sane_ngp"),
    ("sane", "rec_con_rot"),
]


@pytest.fixture(scope="session")
def zoo(tmp_path_factory) -> Path:
    """2 classes x 2 objects (train / val) x 2 rotations x {MLP, HASH} = 16 NeRFs, the tiny
    config's 20 fitting steps (with 6 the NeRFs are so close to their random initialisation that
    the small GMN cannot tell them apart within 50 steps)."""
    root = tmp_path_factory.mktemp("train_zoo") / "zoo"
    generate(load_zoo_config([f"out_dir={root}", *ZOO_OVERRIDES], "tiny"), progress=False)
    return root


def overrides(zoo: Path, out: Path, model: str, loss: str, *extra: str) -> list[str]:
    return [f"zoo={zoo}", f"out_dir={out}", f"loss={loss}", *SMALL[model], *COMMON, *extra]


def run(zoo: Path, out: Path, model: str, loss: str, *extra: str) -> dict:
    return train(load_train_config(overrides(zoo, out, model, loss, *extra)), show_progress=False)


def state(path: Path) -> dict:
    return torch.load(path, weights_only=True)


# ----------------------------------------------------------------------------- presets
@pytest.mark.parametrize("model,loss", PRESETS)
def test_preset_runs_and_writes_loadable_checkpoints(zoo, tmp_path, model, loss):
    out = tmp_path / "run"
    summary = run(zoo, out, model, loss, "train.steps=2", "val.every=1")
    assert summary["step"] == 2
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if "loss" in r]
    assert [r["step"] for r in train_rows] == [1, 2]
    assert all(r["nerfs_per_s"] > 0 and r["lr"] > 0 for r in train_rows)
    assert any("val/recall_at_1" in r for r in rows)
    last = state(out / "checkpoints" / "last.pt")  # weights_only
    assert last["format"] == "graphnerf-encoder/1" and last["model"]["name"] == model
    assert set(last["state"]) >= {"optimizer", "scheduler", "sampler", "rng"}
    assert last["train"]["archs"] == [HASH, MLP] and last["train"]["step"] == 2
    best = state(out / "checkpoints" / "best.pt")
    assert "state" not in best and "val/recall_at_1" in best["val"]
    enc = load_encoder(out / "checkpoints" / "last.pt")
    assert enc.name == model and enc.train_archs == [HASH, MLP]


def _fixed_batch_losses(zoo: Path, tmp_path: Path, model: str, loss: str, steps: int) -> list:
    # SANE without dropout (a fixed function to fit); GMN on the mlp NeRFs (its cheapest graphs)
    extra = "model.net.dropout=0.0" if model == "sane" else f"data.train_archs=[{MLP}]"
    cfg = load_train_config(overrides(zoo, tmp_path / "unused", model, loss, extra))
    r = _Run(cfg, show_progress=False)
    r.check_inputs()
    r.setup()
    r.batches.prepare(r.sampler.records)
    batch = StepDataset(r.batches, r.sampler, 0, 1).batch(0)
    opt = torch.optim.AdamW(r.module.parameters(), lr=2e-3)
    r.module.train()
    out = []
    for _ in range(steps):
        terms = r.module(batch)
        opt.zero_grad()
        terms["total"].backward()
        opt.step()
        out.append({k: float(v.detach()) for k, v in terms.items()})
    return out


@pytest.mark.parametrize("model,loss", PRESETS)
def test_preset_overfits_a_fixed_batch(zoo, tmp_path, model, loss):
    """50 steps on one batch: the total loss falls to under half its start, and so does every
    term it weights (each is learnable on 4 NeRFs)."""
    hist = _fixed_batch_losses(zoo, tmp_path, model, loss, 50)
    first, last = hist[0], {k: sum(h[k] for h in hist[-5:]) / 5 for k in hist[0]}
    assert last["total"] < 0.5 * first["total"], (first, last)
    for k in first:
        if k not in ("total", "latent_l2"):
            assert last[k] < first[k], (k, first[k], last[k])


# ----------------------------------------------------------------------------- resume
@pytest.mark.parametrize("model,loss", [("gmn", "rec_con_rot"), ("sane", "sane_ngp")])
def test_resume_equals_uninterrupted(zoo, tmp_path, model, loss):
    extra = ("train.steps=4", "train.checkpoint_every=100", "val.every=2")
    run(zoo, tmp_path / "a", model, loss, *extra)
    run(zoo, tmp_path / "b", model, loss, *extra, "train.stop_after=2")
    assert state(tmp_path / "b/checkpoints/last.pt")["train"]["step"] == 2
    run(zoo, tmp_path / "b", model, loss, *extra, "resume=true")
    a = state(tmp_path / "a/checkpoints/last.pt")
    b = state(tmp_path / "b/checkpoints/last.pt")
    assert a["train"]["step"] == b["train"]["step"] == 4
    for k, v in a["state_dict"].items():
        assert torch.equal(v, b["state_dict"][k]), k
    for sa, sb in zip(
        a["state"]["optimizer"]["state"].values(),
        b["state"]["optimizer"]["state"].values(),
        strict=True,
    ):
        assert torch.equal(sa["exp_avg_sq"], sb["exp_avg_sq"])
    log_a = [json.loads(x) for x in (tmp_path / "a/log.jsonl").read_text().splitlines()]
    log_b = [json.loads(x) for x in (tmp_path / "b/log.jsonl").read_text().splitlines()]
    key = "loss"
    assert [r[key] for r in log_a if key in r] == [r[key] for r in log_b if key in r]


# ----------------------------------------------------------------------------- DDP
def test_ddp_two_processes_equal_one(zoo, tmp_path):
    """torchrun, 2 CPU processes (gloo), K = 2 objects split 1 + 1 == one process with K = 2,
    after 3 steps of every GMN term (rendering, contrastive over the gathered batch, rotation).

    AdamW with ``eps`` 1e-4: Adam divides each gradient by its own magnitude, so a parameter
    whose exact gradient is zero (a direction the GMN is invariant to) moves by +-lr on the sign
    of rounding noise, which differs between any two summation orders; eps far above that noise
    damps those updates and leaves the real ones (with the default 1e-8 the runs differed by up
    to 5e-4 after 3 steps, by 1.6e-6 with 1e-4).
    """
    loss, atol = "rec_con_rot", 1e-5
    extra = ("train.steps=3", "val.every=0", "train.lr=1e-3", "train.adam_eps=1e-4")
    run(zoo, tmp_path / "one", "gmn", loss, *extra)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GRAPHNERF_PROGRESS": "off"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        str(29500 + os.getpid() % 1000),
        "-m",
        "graphnerf",
        "train",
        *overrides(zoo, tmp_path / "two", "gmn", loss, *extra),
    ]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    one = state(tmp_path / "one/checkpoints/last.pt")
    two = state(tmp_path / "two/checkpoints/last.pt")
    assert one["train"]["step"] == two["train"]["step"]
    for k, v in one["state_dict"].items():
        assert torch.allclose(v, two["state_dict"][k], atol=atol, rtol=0), (
            k,
            (v - two["state_dict"][k]).abs().max(),
        )
    first = [json.loads(x) for x in (tmp_path / "one/log.jsonl").read_text().splitlines()]
    assert first[0]["grad_norm"] > 0  # the steps did change the parameters


# ----------------------------------------------------------------------------- bad input
def _cli_error(capsys, args: list[str]) -> str:
    assert cli_main(["train", "--no-progress", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_bad_input_one_line_and_nothing_written(zoo, tmp_path, capsys):
    out = tmp_path / "run"
    base = [f"out_dir={out}", *SMALL["gmn"], *COMMON]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no manifest.jsonl" in _cli_error(capsys, [f"zoo={empty}", *base])
    # mlp only, pairs across architectures: nothing to pair
    err = _cli_error(
        capsys, [f"zoo={zoo}", *base, f"data.train_archs=[{MLP}]", "data.pair=cross_arch"]
    )
    assert "no object has 2 NeRFs to pair" in err
    assert "model/nope" in _cli_error(capsys, [f"zoo={zoo}", *base, "model=nope"])
    assert "loss/nope" in _cli_error(capsys, [f"zoo={zoo}", *base, "loss=nope"])
    assert "token_recon" in _cli_error(capsys, [f"zoo={zoo}", *base, "loss=sane_ngp"])
    assert not out.exists()
    afile = tmp_path / "afile"
    afile.write_text("x")
    err = _cli_error(capsys, [f"zoo={zoo}", f"out_dir={afile}", *base[1:]])
    assert "is a file" in err and afile.read_text() == "x"
    # a finished run, then resume with another model config
    run(zoo, out, "gmn", "rec", "train.steps=1")
    before = (out / "checkpoints/last.pt").read_bytes()
    err = _cli_error(
        capsys, [f"zoo={zoo}", *base, "loss=rec", "train.steps=1", "resume=true", "model.hidden=32"]
    )
    assert "another model config" in err and "model.config.hidden" in err
    assert "already holds a run" in _cli_error(capsys, [f"zoo={zoo}", *base, "loss=rec"])
    assert (out / "checkpoints/last.pt").read_bytes() == before
    with pytest.raises(TrainError, match="required"):
        load_train_config([f"out_dir={out}"])


def test_leave_one_family_out_is_one_override(zoo, tmp_path):
    cfg = load_train_config(
        overrides(zoo, tmp_path / "r", "gmn", "rec", f"data.train_archs=[{HASH}]")
    )
    r = _Run(cfg, show_progress=False)
    r.check_inputs()
    assert {x["arch"] for x in r.sampler.records} == {HASH}
    assert r.sampler.pair_types == [(HASH, HASH)]
    assert {x["arch"] for x in r.val_records} == {HASH, MLP}


def test_recall_at_1_by_hand():
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.9, 0.1], [0.2, 0.8]])
    objects = ["a", "b", "a", "b"]
    archs = ["mlp", "mlp", "hash", "hash"]
    assert recall_at_1(z, objects, archs)["recall_at_1"] == 1.0
    # b's hash NeRF moves nearer a's mlp NeRF than b's: query 3 misses, the others still hit
    z[3] = torch.tensor([0.9, 0.3])
    r = recall_at_1(z, objects, archs)
    assert r["recall_at_1"] == 0.75 and r["queries"] == 4 and r["chance"] == 0.5


def test_wandb_offline_importable(tmp_path):
    wandb = pytest.importorskip("wandb")
    assert hasattr(wandb, "init")
    shutil.rmtree(tmp_path, ignore_errors=True)
