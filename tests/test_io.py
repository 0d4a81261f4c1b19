"""graphnerf.io: safetensors checkpoints, the tiny-cuda-nn flat layout and gmnerf-style .pth files."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch

from graphnerf.fields import ZOO, HashGridSpec, MLPSpec, build_field
from graphnerf.io import (
    CheckpointError,
    export_tcnn,
    import_tcnn,
    load_any,
    load_field,
    read_header,
    save_field,
)

ZOO_NAMES = list(ZOO)


def _points(n: int = 64, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 3, generator=g) * 2 - 1) * 0.69  # inside the default AABB


def _assert_same_field(a, b, forward: bool = True) -> None:
    assert a.spec == b.spec
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        assert sa[k].dtype == sb[k].dtype == torch.float32, k
        assert torch.equal(sa[k], sb[k]), k
    if not forward:
        return
    x = _points()
    with torch.no_grad():
        sig_a, rgb_a = a(x)
        sig_b, rgb_b = b(x)
    assert torch.equal(sig_a, sig_b) and torch.equal(rgb_a, rgb_b)


def _raises(match_parts, fn, *args, **kwargs) -> CheckpointError:
    with pytest.raises(CheckpointError) as info:
        fn(*args, **kwargs)
    msg = str(info.value)
    for part in match_parts:
        assert str(part) in msg, f"{part!r} not in error message: {msg}"
    return info.value


# ---------------------------------------------------------------------------- safetensors
@pytest.mark.parametrize("name", ZOO_NAMES)
def test_safetensors_round_trip_bit_identical(name, tmp_path):
    field = build_field(name, seed=3)
    field.meta = {"class": "chair"}
    rotation = [0.9238795325112867, 0.0, 0.3826834323650898, 0.0]
    path = save_field(
        field,
        tmp_path / f"{name}.safetensors",
        object_id="obj-7",
        rotation=rotation,
        psnr=31.123456789,
        steps=np.int64(500),
        bbox=torch.tensor([0.25, 0.5]),
    )
    assert path == tmp_path / f"{name}.safetensors" and path.is_file()
    assert field.meta == {"class": "chair"}  # save does not mutate the field
    loaded = load_field(path)
    _assert_same_field(field, loaded)
    assert loaded.meta == {
        "class": "chair",
        "object_id": "obj-7",
        "rotation": rotation,
        "psnr": 31.123456789,
        "steps": 500,
        "bbox": [0.25, 0.5],
    }
    assert sorted(os.listdir(tmp_path)) == [f"{name}.safetensors"]  # no temp file left


def test_read_header_does_not_load_tensors(tmp_path, monkeypatch):
    field = build_field("hash", seed=0)
    path = save_field(field, tmp_path / "h.safetensors", rotation=[1.0, 0.0, 0.0, 0.0])

    def refuse(*args, **kwargs):
        raise AssertionError("read_header must not load tensors")

    monkeypatch.setattr(safetensors.torch, "load_file", refuse)
    monkeypatch.setattr(safetensors.torch, "load", refuse)
    monkeypatch.setattr(safetensors, "safe_open", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    spec, meta, shapes = read_header(path)
    assert spec == field.spec
    assert meta == {"rotation": [1.0, 0.0, 0.0, 0.0]}
    assert shapes == {k: tuple(v.shape) for k, v in field.state_dict().items()}
    with pytest.raises(AssertionError, match="must not load"):
        load_field(path)  # the guard itself works


def test_header_layout_is_the_documented_one(tmp_path):
    field = build_field("mlp", seed=0)
    path = save_field(field, tmp_path / "m.safetensors", object_id="x")
    with safetensors.safe_open(path, framework="pt") as f:
        meta = f.metadata()
        keys = sorted(f.keys())
    assert meta["graphnerf.format"] == "1"
    assert json.loads(meta["graphnerf.spec"]) == field.spec.to_dict()
    assert json.loads(meta["graphnerf.meta"]) == {"object_id": "x"}
    assert keys == sorted(field.state_dict())


def test_save_overwrites_atomically_and_cleans_up_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "f.safetensors"
    save_field(build_field("mlp", seed=0), path, object_id="old")
    before = path.read_bytes()

    def broken_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    _raises([path.name, "No space left"], save_field, build_field("mlp", seed=1), path)
    monkeypatch.undo()
    assert path.read_bytes() == before  # the old file is untouched
    assert os.listdir(tmp_path) == ["f.safetensors"]  # and no temporary file remains
    save_field(build_field("mlp", seed=1), path, object_id="new")
    assert load_field(path).meta == {"object_id": "new"}


def test_failed_save_leaves_no_file(tmp_path):
    field = build_field("triplane", seed=0)
    path = tmp_path / "t.safetensors"
    err = _raises(
        ["t.safetensors", "not JSON-serialisable", "weird"], save_field, field, path, weird=object()
    )
    assert isinstance(err, ValueError)
    field.meta = {"bad": {1: "int key"}}
    _raises(["t.safetensors", "non-string key"], save_field, field, path)
    assert os.listdir(tmp_path) == []
    _raises(["t.pth", ".safetensors"], save_field, field, tmp_path / "t.pth")
    _raises(["nope", "does not exist"], save_field, field, tmp_path / "nope" / "t.safetensors")
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------------------- tcnn layout
@pytest.mark.parametrize("name", ZOO_NAMES)
def test_tcnn_round_trip_bit_identical_and_spec_inferred(name):
    spec = ZOO[name]
    field = build_field(name, seed=5)
    params = export_tcnn(field)
    for k, n in spec.param_counts().items():
        assert params[k].numel() == n, k
        assert params[k].dtype == torch.float32
    for k, t in params.items():  # export is a copy, not a view of the field
        assert all(t.data_ptr() != p.data_ptr() for p in field.parameters()), k
    inferred = import_tcnn(params)
    assert inferred.spec == spec
    _assert_same_field(field, inferred)
    _assert_same_field(field, import_tcnn(params, name), forward=False)
    _assert_same_field(field, import_tcnn(params, spec), forward=False)
    again = export_tcnn(inferred)
    assert list(again) == list(params)
    assert all(torch.equal(again[k], params[k]) for k in params)


def test_tcnn_sizes_closed_form():
    mlp = export_tcnn(build_field("mlp"))
    assert set(mlp) == {"mlp_base.params"}  # nf2vec: one tcnn.NetworkWithInputEncoding
    assert mlp["mlp_base.params"].shape == (144 * 64 + 64 * 64 * 2 + 64 * 16,) == (18432,)
    tri = export_tcnn(build_field("triplane"))
    assert list(tri) == ["triplane", "encoding.params", "mlp_base.params"]  # gmnerf's keys
    assert tri["triplane"].shape == (3, 32, 32, 16)
    assert tri["encoding.params"].shape == (0,)  # Frequency tcnn.Encoding: no parameters
    assert tri["mlp_base.params"].numel() == 304 * 64 + 64 * 64 * 2 + 64 * 16 == 28672
    hsh = export_tcnn(build_field("hash"))
    assert list(hsh) == ["encoding.params", "mlp_base.params"]
    assert hsh["encoding.params"].numel() == 4 * 4096 * 2 == 32768
    assert hsh["mlp_base.params"].numel() == 16 * 64 + 64 * 64 * 2 + 64 * 16 == 10240


def test_mlp_layout_is_row_major_per_matrix_in_layer_order():
    spec = MLPSpec(n_frequencies=2, n_hidden_layers=2, n_neurons=16)  # widths (16, 16, 16, 16)
    field = build_field(spec, seed=0)
    with torch.no_grad():  # distinct values everywhere, so no equality holds by accident
        start = 0
        for w in field.mlp.weights:
            w.copy_(torch.arange(start, start + w.numel(), dtype=torch.float32).view(w.shape))
            start += w.numel()
        field.mlp.weights[0][3, 5] = -1.5  # a non-symmetric marker
    flat = export_tcnn(field)["mlp_base.params"]
    offset = 0
    for w in field.mlp.weights:
        n_out, n_in = w.shape
        for row in range(n_out):
            for col in range(n_in):
                assert flat[offset + row * n_in + col] == w[row, col]
        offset += n_out * n_in
    assert offset == flat.numel()
    assert flat[3 * 16 + 5] == -1.5


def test_hash_layout_is_level_major_entry_then_feature():
    spec = HashGridSpec(
        n_levels=3, n_features_per_level=2, log2_table_size=8, base_resolution=2, max_resolution=8
    )
    field = build_field(spec, seed=0)
    sizes, offsets = spec.level_table_sizes, spec.level_offsets
    assert field.table.shape == (int(sizes.sum()), 2)
    with torch.no_grad():
        field.table.copy_(
            torch.randn(field.table.shape, generator=torch.Generator().manual_seed(1))
        )
    enc = export_tcnn(field)["encoding.params"]
    n_feat = spec.n_features_per_level
    for level in range(spec.n_levels):
        for e in range(int(sizes[level])):
            for f in range(n_feat):
                k = (int(offsets[level]) + e) * n_feat + f
                assert enc[k] == field.table[int(offsets[level]) + e, f]
    # gmnerf reads level l as the next size_l * F values reshaped to [size_l, F]
    for level in range(spec.n_levels):
        a, b = int(offsets[level]) * n_feat, int(offsets[level + 1]) * n_feat
        assert torch.equal(enc[a:b].view(-1, n_feat), field.level_table(level))


# ---------------------------------------------------------------------------- .pth files
@pytest.mark.parametrize("name", ["mlp", "triplane", "hash", "hash_8_levels"])
def test_pth_files_load_like_gmnerf_nerf_weights(name, tmp_path):
    field = build_field(name, seed=2)
    params = export_tcnn(field)
    path = tmp_path / "nerf_weights.pth"
    torch.save(params, path)
    _assert_same_field(field, import_tcnn(path))
    _assert_same_field(field, import_tcnn(str(path)), forward=False)
    _assert_same_field(field, load_any(path), forward=False)
    pt = tmp_path / "weights.pt"
    torch.save(params, pt)
    _assert_same_field(field, load_any(pt, spec=name))


def test_pth_fp16_nested_and_prefixed(tmp_path):
    field = build_field("hash", seed=4)
    params = export_tcnn(field)
    half = {k: v.half() for k, v in params.items()}
    path = tmp_path / "half.pth"
    torch.save(half, path)
    loaded = import_tcnn(path)
    assert loaded.spec == field.spec
    assert torch.equal(loaded.table, half["encoding.params"].float().view(loaded.table.shape))
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    # wrapped under "state_dict" with a "nerf." prefix, plus non-tensor entries
    wrapped = {
        "state_dict": {f"nerf.{k}": v for k, v in params.items()},
        "epoch": 3,
        "is_hash": True,
    }
    torch.save(wrapped, tmp_path / "wrapped.pth")
    _assert_same_field(field, import_tcnn(tmp_path / "wrapped.pth"))
    torch.save({"model": {f"module.{k}": v for k, v in params.items()}}, tmp_path / "m.pth")
    _assert_same_field(field, load_any(tmp_path / "m.pth"))


def test_gmnerf_in_memory_variants():
    # gmnerf's MlpDataset adds an empty encoding.params; nf2vec wraps mlp_base.params in a list
    mlp = build_field("mlp", seed=1)
    params = export_tcnn(mlp)
    _assert_same_field(mlp, import_tcnn({**params, "encoding.params": torch.tensor([])}))
    _assert_same_field(mlp, import_tcnn({"mlp_base.params": [params["mlp_base.params"]]}))
    # tri-plane without the empty Frequency encoding.params is accepted too
    tri = build_field("triplane_8_channels", seed=1)
    tparams = {k: v for k, v in export_tcnn(tri).items() if k != "encoding.params"}
    _assert_same_field(tri, import_tcnn({**tparams, "is_triplane": True}))
    # a flat tri-plane vector in [3, R, R, C] order is accepted
    tparams["triplane"] = tparams["triplane"].reshape(-1)
    _assert_same_field(tri, import_tcnn(tparams))


# ---------------------------------------------------------------------------- bad inputs
def _write_safetensors(path: Path, tensors, metadata) -> Path:
    safetensors.torch.save_file(tensors, str(path), metadata=metadata)
    return path


def test_bad_safetensors_files(tmp_path):
    good = save_field(build_field("hash", seed=0), tmp_path / "good.safetensors")
    data = good.read_bytes()

    _raises(["missing.safetensors", "not found"], load_field, tmp_path / "missing.safetensors")
    _raises(["missing.safetensors", "not found"], read_header, tmp_path / "missing.safetensors")

    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[: len(data) // 2])
    _raises(["cut.safetensors", "truncated"], load_field, cut)
    tiny = tmp_path / "tiny.safetensors"
    tiny.write_bytes(data[:100])
    _raises(["tiny.safetensors"], load_field, tiny)

    noise = tmp_path / "noise.safetensors"
    noise.write_bytes(np.random.default_rng(0).bytes(4096))
    _raises(["noise.safetensors", "not a safetensors file"], load_field, noise)
    js = tmp_path / "json.safetensors"
    js.write_text(json.dumps({"mlp_base.params": [0.0] * 100}))
    _raises(["json.safetensors", "not a safetensors file"], load_field, js)
    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    _raises(["empty.safetensors"], load_field, empty)

    field = build_field("mlp", seed=0)
    sd = {k: v.detach().contiguous() for k, v in field.state_dict().items()}
    plain = _write_safetensors(tmp_path / "plain.safetensors", sd, None)
    _raises(["plain.safetensors", "graphnerf.spec"], load_field, plain)

    bad_json = _write_safetensors(tmp_path / "badjson.safetensors", sd, {"graphnerf.spec": "{oops"})
    _raises(["badjson.safetensors", "invalid field spec", "not valid JSON"], load_field, bad_json)
    bad_spec = json.dumps({**field.spec.to_dict(), "n_neurons": 0})
    invalid = _write_safetensors(tmp_path / "invalid.safetensors", sd, {"graphnerf.spec": bad_spec})
    _raises(["invalid.safetensors", "n_neurons must be in [1, 1024], got 0"], load_field, invalid)
    _raises(["invalid.safetensors", "n_neurons"], read_header, invalid)
    future = _write_safetensors(
        tmp_path / "future.safetensors",
        sd,
        {"graphnerf.spec": field.spec.to_json(), "graphnerf.format": "99"},
    )
    _raises(["future.safetensors", "version '99'"], load_field, future)
    bad_meta = _write_safetensors(
        tmp_path / "meta.safetensors",
        sd,
        {"graphnerf.spec": field.spec.to_json(), "graphnerf.meta": "[1, 2"},
    )
    _raises(["meta.safetensors", "graphnerf.meta"], load_field, bad_meta)

    header = {"graphnerf.spec": field.spec.to_json(), "graphnerf.format": "1"}
    missing = _write_safetensors(
        tmp_path / "missing_key.safetensors",
        {k: v for k, v in sd.items() if k != "mlp.weights.2"},
        header,
    )
    _raises(["missing_key.safetensors", "missing tensor 'mlp.weights.2'"], load_field, missing)
    wrong = _write_safetensors(
        tmp_path / "wrong_shape.safetensors", {**sd, "mlp.weights.0": torch.zeros(64, 160)}, header
    )
    _raises(
        ["wrong_shape.safetensors", "'mlp.weights.0'", "[64, 160]", "[64, 144]"], load_field, wrong
    )
    extra = _write_safetensors(
        tmp_path / "extra.safetensors", {**sd, "table": torch.zeros(8, 2)}, header
    )
    _raises(["extra.safetensors", "unexpected", "table"], load_field, extra)


def test_nonfinite_weights_safetensors(tmp_path):
    field = build_field("hash", seed=0)
    with torch.no_grad():
        field.table[0, 0] = float("nan")
        field.table[5, 1] = float("inf")
        field.mlp.weights[1][0, 0] = float("-inf")
    path = save_field(field, tmp_path / "nan.safetensors")
    _raises(
        ["nan.safetensors", "'table' has 2 of 32768", "'mlp.weights.1' has 1", "allow_nonfinite"],
        load_field,
        path,
    )
    _raises(["nan.safetensors", "non-finite"], load_any, path)
    loaded = load_field(path, allow_nonfinite=True)
    assert torch.isnan(loaded.table[0, 0]) and torch.isinf(loaded.table[5, 1])
    assert torch.equal(load_any(path, allow_nonfinite=True).mlp.weights[0], field.mlp.weights[0])


def test_bad_tcnn_inputs(tmp_path):
    params = export_tcnn(build_field("hash", seed=0))

    _raises(["gone.pth", "not found"], import_tcnn, tmp_path / "gone.pth")
    _raises(["gone.pth", "not found"], load_any, tmp_path / "gone.pth")

    only_mlp = tmp_path / "only_mlp.pth"
    torch.save({"mlp_base.params": params["mlp_base.params"]}, only_mlp)
    _raises(
        ["only_mlp.pth", "missing tensor 'encoding.params'", "32768"], import_tcnn, only_mlp, "hash"
    )

    short = tmp_path / "short.pth"
    torch.save({**params, "encoding.params": params["encoding.params"][:-2]}, short)
    _raises(["short.pth", "'encoding.params'", "32766", "32768"], import_tcnn, short, "hash")
    err = _raises(
        [
            "short.pth",
            "cannot infer",
            "encoding.params [32766]",
            "hash_11_table_size",
            "encoding.params [16384]",
        ],
        import_tcnn,
        short,
    )
    assert all(name in str(err) for name in ZOO)  # every zoo spec's expectation is listed

    odd_tri = tmp_path / "odd_tri.pth"
    tri = export_tcnn(build_field("triplane", seed=0))
    torch.save({**tri, "triplane": tri["triplane"].reshape(3, 16, 64, 16)}, odd_tri)
    _raises(
        ["odd_tri.pth", "'triplane'", "[3, 16, 64, 16]", "[3, 32, 32, 16]"],
        import_tcnn,
        odd_tri,
        "triplane",
    )
    _raises(["odd_tri.pth", "cannot infer"], import_tcnn, odd_tri)

    extra = tmp_path / "extra.pth"
    torch.save({**params, "decoder.weight": torch.zeros(3)}, extra)
    _raises(["extra.pth", "unexpected", "decoder.weight"], import_tcnn, extra)
    _raises(
        ["<in-memory params>", "unexpected tensor 'encoding.params'"], import_tcnn, params, "mlp"
    )

    nan = tmp_path / "nan.pth"
    bad = params["mlp_base.params"].clone()
    bad[[0, 7, 9]] = float("nan")
    torch.save({**params, "mlp_base.params": bad}, nan)
    _raises(["nan.pth", "'mlp_base.params' has 3 of 10240", "allow_nonfinite"], import_tcnn, nan)
    _raises(["nan.pth", "non-finite"], load_any, nan)
    assert torch.isnan(import_tcnn(nan, allow_nonfinite=True).mlp.weights[0][0, 0])
    assert torch.isnan(load_any(nan, allow_nonfinite=True).mlp.weights[0][0, 0])

    noise = tmp_path / "noise.pth"
    noise.write_bytes(np.random.default_rng(1).bytes(2048))
    _raises(["noise.pth", "torch.load"], import_tcnn, noise)
    cut = tmp_path / "cut.pth"
    torch.save(params, cut)
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])
    _raises(["cut.pth"], import_tcnn, cut)
    not_dict = tmp_path / "tensor.pth"
    torch.save(params["mlp_base.params"], not_dict)
    _raises(["tensor.pth", "not a dict"], import_tcnn, not_dict)
    ints = tmp_path / "ints.pth"
    torch.save({"mlp_base.params": torch.zeros(18432, dtype=torch.int32)}, ints)
    _raises(["ints.pth", "floating point"], import_tcnn, ints)
    nothing = tmp_path / "nothing.pth"
    torch.save({"epoch": 3}, nothing)
    _raises(["nothing.pth", "no tcnn tensors"], import_tcnn, nothing)


class _Payload:
    """Any pickled object: weights_only loading must refuse it."""


def test_pth_is_never_unpickled(tmp_path):
    path = tmp_path / "pickle.pth"
    torch.save({"mlp_base.params": torch.zeros(18432), "payload": _Payload()}, path)
    _raises(["pickle.pth", "weights_only"], import_tcnn, path)


def test_load_any_dispatch(tmp_path):
    field = build_field("mlp_32_width", seed=0)
    st = save_field(field, tmp_path / "a.safetensors", object_id="a")
    assert load_any(st).meta == {"object_id": "a"}
    _assert_same_field(field, load_any(st, spec="mlp_32_width"))
    _raises(["a.safetensors", "requested"], load_any, st, spec="mlp")
    other = tmp_path / "a.npz"
    other.write_bytes(b"x")
    _raises(["a.npz", ".safetensors", ".pth"], load_any, other)
    upper = tmp_path / "B.PTH"
    torch.save(export_tcnn(field), upper)
    _assert_same_field(field, load_any(upper))


def test_closed_form_counts_match_the_layout_of_every_zoo_spec():
    for name, spec in ZOO.items():
        w = spec.mlp_widths
        assert spec.param_counts()["mlp_base.params"] == sum(
            a * b for a, b in zip(w[:-1], w[1:], strict=True)
        ), name
        if spec.family == "hash":
            assert (
                spec.param_counts()["encoding.params"]
                == int(spec.level_table_sizes.sum()) * spec.n_features_per_level
            )
        if spec.family == "triplane":
            assert spec.param_counts()["triplane"] == math.prod(spec.plane_shape)
