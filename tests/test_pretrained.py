"""Shipped pretrained encoders: a slim export embeds and predicts rotations bit for bit like the
run checkpoint it came from, loads with weights_only, resolves by name everywhere a checkpoint path
is taken, carries a model card whose reproduce commands compose the recorded configs exactly, and
refuses what must not ship; every encoder shipped in graphnerf/weights/ matches its card."""

from __future__ import annotations

import hashlib
import json
import shlex
import shutil
from pathlib import Path

import pytest
import torch
from _tiny import TINY_GMN, TINY_HEADS
from safetensors import safe_open

import graphnerf
from graphnerf.bench.benchmark import load_bench_config
from graphnerf.cli import main as cli_main
from graphnerf.data import generate, load_zoo_config, read_manifest
from graphnerf.io import load_field
from graphnerf.train import load_encoder
from graphnerf.train.checkpoint import checkpoint_dict, save_checkpoint
from graphnerf.train.loop import load_train_config, train
from graphnerf.train.module import TrainModule
from graphnerf.train.pretrained import (
    MAX_BYTES,
    PretrainedError,
    export_pretrained,
    list_pretrained,
    pretrained,
)
from graphnerf.train.registry import CARD_FORMAT, WEIGHTS_ENV, discover, package_weights_dir

torch.set_num_threads(1)

# the tiny training setup of tests/test_train.py, smaller still: one class, the zoo's smallest MLP
# (its evaluation dominates the fixture's time: 4 NeRFs, no val split)
MLP = "mlp_32_width"
ZOO_OVERRIDES = [
    "classes=[chair]",
    "splits={train: 1.0, val: 0.0, test: 0.0}",
    f"archs={{train: [{MLP}], val: [{MLP}], test: [{MLP}]}}",
    "eval={size: 8, n_samples: 8, iou_res: 8}",
]
GMN = [
    "model=gmn",
    *TINY_GMN,
    "loss=rec_con_rot",
    "wandb.mode=disabled",
    "train.threads=1",
    "train.steps=3",
    "data.objects_per_batch=2",
    *TINY_HEADS,
]
NAME = "tiny-gmn"


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> dict:
    """A tiny zoo (1 class x 2 objects x 2 rotations x MLP), a tiny GMN trained 3 steps
    with the rendering + contrastive + rotation preset, exported by the CLI into a temporary
    weights folder with a card of metrics."""
    base = tmp_path_factory.mktemp("pretrained")
    zoo, out, weights = base / "zoo", base / "run", base / "weights"
    generate(load_zoo_config([f"out_dir={zoo}", *ZOO_OVERRIDES], "tiny"), progress=False)
    train(load_train_config([f"zoo={zoo}", f"out_dir={out}", *GMN]), show_progress=False)
    last = out / "checkpoints" / "last.pt"
    card = base / "card.json"
    card.write_text(json.dumps({"metrics": {"model": {"accuracy_seen": 0.5}}, "note": "test"}))
    rc = cli_main(
        ["pretrained", "--export", str(last), "--name", NAME, "--card", str(card)]
        + ["--weights-dir", str(weights)]
    )
    assert rc == 0
    records = read_manifest(zoo)
    fields = [load_field(zoo / r["file"]) for r in records[:3]]
    return {"zoo": zoo, "out": out, "last": last, "weights": weights, "fields": fields}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_slim_file_loads_weights_only_and_is_much_smaller(run):
    pt = run["weights"] / f"{NAME}.pt"
    slim = torch.load(pt, weights_only=True)
    full = torch.load(run["last"], weights_only=True)
    assert "state" in full and "state" not in slim  # optimizer, scheduler, sampler, RNG
    assert slim["omitted"] == ["decoder", "siglip"]
    assert not any(k.startswith(("decoder.", "siglip.")) for k in slim["state_dict"])
    kept = {k for k in full["state_dict"] if not k.startswith(("decoder.", "siglip."))}
    assert set(slim["state_dict"]) == kept
    for k in kept:
        assert torch.equal(slim["state_dict"][k], full["state_dict"][k]), k
    assert pt.stat().st_size < 0.5 * run["last"].stat().st_size


def test_exported_encoder_embeds_and_rotates_bit_for_bit(run):
    fields = run["fields"]
    orig = load_encoder(run["last"])
    ship = pretrained(NAME, weights_dir=run["weights"])
    assert ship.module.decoder is None and orig.module.decoder is not None
    z0, z1 = orig.embed(fields), ship.embed(fields)
    assert z0.shape == (3, 32) and torch.isfinite(z0).all()
    assert torch.equal(z0, z1)
    a, b = fields, fields[1:] + fields[:1]
    q0, q1 = orig.relative_rotation(a, b), ship.relative_rotation(a, b)
    assert q0 is not None and q0.shape == (3, 4)
    assert torch.equal(q0, q1)
    assert ship.train_archs == orig.train_archs == [MLP]
    assert ship.meta["card"]["name"] == NAME


def test_sane_export_is_bit_for_bit_too(run, tmp_path):
    """SANE keeps its whole autoencoder (its forward, which predicts rotations, runs the token
    decoder); only the rendering decoder goes."""
    cfg = load_train_config(
        ["zoo=z", "out_dir=o", "model=sane", "model.net.d_model=32", "model.net.d_latent=16"]
        + ["model.net.n_heads=2", "model.net.n_layers=1", "model.net.proj_dims=[16,8]"]
        + ["model.tokens.n_points=16", "decoder.net.hidden_dim=32"]
    )
    torch.manual_seed(0)
    module = TrainModule("sane", dict(cfg.model), dict(cfg.heads))
    ck = checkpoint_dict(module, archs=None, zoo="z", step=0, config={})
    src = save_checkpoint(ck, tmp_path / "sane.pt")
    pt = export_pretrained(src, "tiny-sane", tmp_path / "w", commands=False)
    assert torch.load(pt, weights_only=True)["omitted"] == ["decoder"]
    orig, ship = load_encoder(src), load_encoder(pt)
    fields = run["fields"]
    assert torch.equal(orig.embed(fields), ship.embed(fields))
    a, b = fields, fields[::-1]
    assert torch.equal(orig.relative_rotation(a, b), ship.relative_rotation(a, b))


def test_model_card(run):
    pt = run["weights"] / f"{NAME}.pt"
    card = json.loads((run["weights"] / f"{NAME}.json").read_text())
    assert card["format"] == CARD_FORMAT and card["name"] == NAME and card["file"] == pt.name
    assert card["sha256"] == sha256(pt) and card["size_bytes"] == pt.stat().st_size
    assert card["source"]["sha256"] == sha256(run["last"])
    slim = torch.load(pt, weights_only=True)["state_dict"]
    assert card["encoder"]["params"]["total"] == sum(v.numel() for v in slim.values())
    assert card["encoder"]["kind"] == "gmn" and card["encoder"]["embedding_dim"] == 32
    assert card["encoder"]["omitted_params"]["decoder"] > 0
    tr = card["training"]
    assert (tr["step"], tr["loss"], tr["seed"]) == (3, "rec_con_rot", 0)
    assert tr["train_archs"] == [MLP] and tr["steps_planned"] == 3
    assert card["zoo"]["n_nerfs"] == card["zoo"]["planned"] == 4
    assert card["zoo"]["per_split"] == {"train": 4}
    assert card["zoo"]["classes"] == ["chair"] and card["zoo"]["config"]["rotations"] == 2
    assert card["metrics"] == {"model": {"accuracy_seen": 0.5}} and card["note"] == "test"
    assert card["created"].endswith("Z") and card["commands_notes"] == []
    assert list_pretrained(run["weights"])[NAME]["sha256"] == card["sha256"]


def test_card_commands_compose_the_recorded_configs(run):
    """The generate and train commands of the card, parsed as a shell would and with the
    placeholders filled in, compose exactly the zoo's config.yaml and the run's config."""
    card = json.loads((run["weights"] / f"{NAME}.json").read_text())
    gen, tr, exp = card["commands"]
    words = shlex.split(gen)
    assert words[:4] == ["graphnerf", "generate", "--config", "tiny"]
    ov = [w.replace("ZOO", str(run["zoo"])) for w in words[4:]]
    from omegaconf import OmegaConf

    want = OmegaConf.to_container(OmegaConf.load(run["zoo"] / "config.yaml"), resolve=True)
    assert OmegaConf.to_container(load_zoo_config(ov, "tiny"), resolve=True) == want
    words = shlex.split(tr)
    assert words[:2] == ["graphnerf", "train"]  # one process: last.pt says world_size 1
    subs = {"zoo=ZOO": f"zoo={run['zoo']}", "out_dir=RUN": f"out_dir={run['out']}"}
    ov = [subs.get(w, w) for w in words[2:]]
    recorded = torch.load(run["last"], weights_only=True)["train"]["config"]
    assert OmegaConf.to_container(load_train_config(ov), resolve=True) == recorded
    assert "model.hidden=16" in ov and "loss=rec_con_rot" in ov
    assert exp == f"graphnerf pretrained --export RUN/checkpoints/last.pt --name {NAME}"


def test_name_resolves_wherever_a_checkpoint_is_taken(run, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(WEIGHTS_ENV, str(run["weights"]))
    assert list(graphnerf.list_pretrained()) == [NAME]
    enc = load_encoder(NAME)
    assert enc.checkpoint_hash == sha256(run["weights"] / f"{NAME}.pt")
    assert torch.equal(enc.embed(run["fields"]), graphnerf.pretrained(NAME).embed(run["fields"]))
    from graphnerf.bench.benchmark import load_checkpoint  # graphnerf benchmark's loader

    assert load_checkpoint(NAME).checkpoint_hash == enc.checkpoint_hash

    by_name, by_path = tmp_path / "name.safetensors", tmp_path / "path.safetensors"
    common = [str(run["zoo"]), "--split", "train", "--no-progress", "--out"]
    assert cli_main(["embed", NAME, *common, str(by_name)]) == 0
    assert cli_main(["embed", str(run["last"]), *common, str(by_path)]) == 0
    with safe_open(by_name, "pt") as f, safe_open(by_path, "pt") as g:
        za, zb = f.get_tensor("embeddings"), g.get_tensor("embeddings")
        assert f.metadata()["ids"] == g.metadata()["ids"]
    assert za.shape == (4, 32) and torch.equal(za, zb)

    capsys.readouterr()
    assert cli_main(["pretrained"]) == 0
    listing = capsys.readouterr().out
    line = next(ln for ln in listing.splitlines() if NAME in ln)
    assert "gmn" in line and "MB" in line and "step 3" in line and "acc seen 50.0%" in line
    assert cli_main(["pretrained", NAME]) == 0
    assert json.loads(capsys.readouterr().out)["sha256"] == enc.checkpoint_hash


def test_unknown_name_is_one_line_naming_the_shipped_ones(run, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(WEIGHTS_ENV, str(run["weights"]))
    with pytest.raises(FileNotFoundError) as e:
        load_encoder("procedural13-nope")
    msg = str(e.value)
    assert "procedural13-nope" in msg and NAME in msg and "\n" not in msg
    with pytest.raises(FileNotFoundError, match=NAME):
        pretrained("procedural13-nope")
    rc = cli_main(
        [
            "embed",
            "nope",
            str(run["zoo"]),
            "--split",
            "train",
            "--out",
            str(tmp_path / "z.safetensors"),
        ]
    )
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "nope" in err and NAME in err and len(err.splitlines()) == 1
    monkeypatch.setenv(WEIGHTS_ENV, str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match="no encoders are shipped in"):
        load_encoder("procedural13-nope")


def test_refusals(run, tmp_path):
    """Too large (nothing written), a bad name, metrics of another checkpoint, a tampered file."""
    assert MAX_BYTES == 20_000_000
    out = tmp_path / "w"
    with pytest.raises(PretrainedError, match="not under the 0.001 MB") as e:
        export_pretrained(run["last"], "big", out, max_bytes=1000, commands=False)
    assert "\n" not in str(e.value) and list(out.iterdir()) == []
    with pytest.raises(PretrainedError, match="lower-case"):
        export_pretrained(run["last"], "Bad/Name", out)
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"classification": {"seen": 0.9}, "checkpoint_hash": "0" * 64}))
    with pytest.raises(PretrainedError, match="not of the exported one"):
        export_pretrained(run["last"], "x", out, benchmark=results, commands=False)
    assert list(out.iterdir()) == []
    pt = export_pretrained(run["last"], "tampered", out, commands=False)
    sd = torch.load(pt, weights_only=True)
    key = next(k for k, v in sd["state_dict"].items() if v.is_floating_point())
    sd["state_dict"][key] = sd["state_dict"][key] + 1
    torch.save(sd, pt)
    with pytest.raises(PretrainedError, match="does not match its model card"):
        pretrained("tampered", weights_dir=out)


def test_benchmark_metrics_go_into_the_card(run, tmp_path):
    """The headline numbers of a results.json of this checkpoint are copied, model and baselines
    (a hand-written results file: the benchmark itself is tested in tests/test_bench.py)."""
    res = {
        "classification": {"seen": 0.75, "unseen": 0.25, "overall": 0.4, "chance": 0.5},
        "retrieval": {"mean_recall_at_1": 0.125},
        "rotation": {"median_deg": 42.0, "identity_median_deg": 90.0},
        "baselines": {"random_init": {"classification": {"seen": 0.5}, "rotation": {}}},
        "checkpoint_hash": sha256(run["last"]),
        "seeds": {"benchmark": 0},
        "config": load_bench_config(["seed=3"]),
    }
    results = tmp_path / "results.json"
    results.write_text(json.dumps(res))
    export_pretrained(run["last"], "with-metrics", tmp_path / "w", benchmark=results)
    card = list_pretrained(tmp_path / "w")["with-metrics"]
    m = card["metrics"]["model"]
    assert (m["accuracy_seen"], m["accuracy_unseen"], m["recall_at_1_cross_arch"]) == (
        0.75,
        0.25,
        0.125,
    )
    assert m["rotation_median_deg"] == 42.0
    assert card["metrics"]["baselines"]["random_init"]["accuracy_seen"] == 0.5
    assert card["metrics"]["benchmark"]["results_sha256"] == sha256(results)
    bench = "graphnerf benchmark RUN/checkpoints/last.pt ZOO --out BENCH seed=3"
    assert bench in card["commands"] and card["commands_notes"] == []
    assert card["commands"][-1].endswith("--benchmark BENCH/results.json")
    # the benchmark may also have scored an earlier export (graphnerf benchmark NAME ...)
    w2 = tmp_path / "w2"
    w2.mkdir()
    for suffix in (".pt", ".json"):
        shutil.copy(run["weights"] / f"{NAME}{suffix}", w2)
    res["checkpoint_hash"] = sha256(w2 / f"{NAME}.pt")
    results.write_text(json.dumps(res))
    export_pretrained(run["last"], NAME, w2, benchmark=results, commands=False)
    assert list_pretrained(w2)[NAME]["metrics"]["model"]["accuracy_seen"] == 0.75
    with pytest.raises(PretrainedError, match="not of the exported one"):  # not of another name
        export_pretrained(run["last"], "other", w2, benchmark=results, commands=False)


# ----------------------------------------------------------------------------- shipped ones
SHIPPED_CARDS = sorted(package_weights_dir().glob("*.json"))


def test_registry_is_exactly_the_shipped_cards():
    """Discovery finds every card in graphnerf/weights/ (none is skipped as malformed) and
    nothing else; the .pt files there are exactly the cards' files."""
    found = discover(package_weights_dir())
    assert sorted(found) == [p.stem for p in SHIPPED_CARDS]
    assert sorted(p.name for p in package_weights_dir().glob("*.pt")) == sorted(
        c["file"] for c in found.values()
    )


@pytest.mark.parametrize(
    "card_path",
    [pytest.param(p, id=p.stem) for p in SHIPPED_CARDS]
    or [
        pytest.param(
            None,
            marks=pytest.mark.skip(reason="no encoder ships in graphnerf/weights/ yet"),
            id="none-shipped",
        )
    ],
)
def test_shipped_encoder_matches_its_card_and_embeds(card_path):
    card = json.loads(card_path.read_text())
    pt = card_path.with_name(card["file"])
    assert card["format"] == CARD_FORMAT and card["name"] == card_path.stem
    assert sha256(pt) == card["sha256"] and pt.stat().st_size == card["size_bytes"]
    assert pt.stat().st_size < MAX_BYTES
    enc = graphnerf.pretrained(card["name"], weights_dir=package_weights_dir())
    assert enc.name == card["encoder"]["kind"]
    z = enc.embed([graphnerf.build_field("hash")])
    assert z.shape == (1, card["encoder"]["embedding_dim"]) and torch.isfinite(z).all()
