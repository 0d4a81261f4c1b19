"""The encoder-loading contract of graphnerf.train.checkpoint (used by embed / benchmark)."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

import graphnerf
from graphnerf.config import load_config
from graphnerf.train import (
    FORMAT,
    CheckpointFormatError,
    build_encoder,
    load_encoder,
    save_checkpoint,
)
from graphnerf.train.checkpoint import checkpoint_dict

torch.set_num_threads(1)

SMALL = {
    "gmn": {"hidden": 16, "edge_hidden": 8, "n_blocks": 1, "embedding_dim": 32},
    "sane": {"d_model": 32, "d_latent": 16, "n_heads": 2, "n_layers": 1, "proj_dims": [16, 8]},
}


def small_cfg(name: str) -> dict:
    cfg = OmegaConf.to_container(load_config(f"model/{name}").model)
    if name == "gmn":
        cfg.update(SMALL["gmn"])
    else:
        cfg["net"].update(SMALL["sane"])
        cfg["tokens"]["n_points"] = 16
    return cfg


@pytest.mark.parametrize("name", ["gmn", "sane"])
def test_save_load_roundtrip_weights_only(tmp_path, name):
    enc = build_encoder(small_cfg(name), seed=3, name=name)
    assert enc.name == name and enc.checkpoint_hash is None and enc.train_archs is None
    fields = [graphnerf.build_field(a, seed=i) for i, a in enumerate(["mlp", "hash", "triplane"])]
    z = enc.embed(fields)
    assert z.shape == (3, enc.embedding_dim) and torch.isfinite(z).all()
    # batching inside embed does not change the embeddings
    enc.batch_size = 1
    assert torch.allclose(enc.embed(fields), z, atol=1e-5)
    q = enc.relative_rotation(fields[:2], fields[1:])
    assert q.shape == (2, 4) and torch.allclose(q.norm(dim=-1), torch.ones(2), atol=1e-5)

    path = tmp_path / "ck.pt"
    save_checkpoint(
        checkpoint_dict(enc.module, archs=["mlp", "hash"], zoo="zoo", step=7, config={"a": 1}),
        path,
    )
    raw = torch.load(path, weights_only=True)  # tensors and plain containers only
    assert raw["format"] == FORMAT and raw["model"]["name"] == name
    assert raw["train"]["step"] == 7 and "state" not in raw
    loaded = load_encoder(path)
    assert loaded.train_archs == ["mlp", "hash"] and len(loaded.checkpoint_hash) == 64
    assert torch.equal(loaded.embed(fields), z)
    # same seed, same initialisation; another seed differs
    assert torch.equal(build_encoder(small_cfg(name), seed=3, name=name).embed(fields), z)
    assert not torch.equal(build_encoder(small_cfg(name), seed=4, name=name).embed(fields), z)


def test_gmn_embeds_cached_graphs_like_fields():
    enc = build_encoder(small_cfg("gmn"), name="gmn")
    f = graphnerf.build_field("hash", seed=1)
    g = graphnerf.to_graph(f)
    g.y = torch.tensor([0])
    g.id = "x"
    assert torch.allclose(enc.embed([g]), enc.embed([f]))


def test_checkpoint_older_than_a_config_key_keeps_its_function(tmp_path):
    """A GMN checkpoint written before ``edge_readout`` existed (one mean over all edges) loads
    with that readout, and computes what it did; a new one keeps the default (type-balanced)."""
    enc = build_encoder(small_cfg("gmn"), seed=1, name="gmn")
    assert enc.config["edge_readout"] == "type"
    ck = checkpoint_dict(enc.module, archs=None, zoo="zoo", step=1, config={})
    save_checkpoint(ck, tmp_path / "new.pt")
    assert load_encoder(tmp_path / "new.pt").config["edge_readout"] == "type"
    del ck["model"]["config"]["edge_readout"]  # as written before the key existed
    save_checkpoint(ck, tmp_path / "old.pt")
    old = load_encoder(tmp_path / "old.pt")
    assert old.config["edge_readout"] == "edge"
    legacy = dict(small_cfg("gmn"), edge_readout="edge")
    fields = [graphnerf.build_field(a, seed=0) for a in ("hash", "triplane")]
    with torch.no_grad():
        ref = build_encoder(legacy, seed=1, name="gmn").embed(fields)
    assert torch.equal(old.embed(fields), ref)
    assert not torch.allclose(enc.embed(fields), ref)


def test_not_a_checkpoint(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a zip")
    with pytest.raises(CheckpointFormatError, match="not a graphnerf encoder checkpoint"):
        load_encoder(junk)
    other = tmp_path / "other.pt"
    torch.save({"format": "something/else"}, other)
    with pytest.raises(CheckpointFormatError, match="format 'something/else'"):
        load_encoder(other)
    with pytest.raises(FileNotFoundError, match="no such encoder checkpoint"):
        load_encoder(tmp_path / "missing.pt")
