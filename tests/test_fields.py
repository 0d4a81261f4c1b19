"""Fields: parameter counts, tcnn-exact encodings against independent references, specs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import graphnerf
from graphnerf.fields import (
    ZOO,
    FieldSpec,
    HashGridSpec,
    MLPSpec,
    SpecError,
    TriplaneSpec,
    build_field,
    frequency_encoding,
    triplane_features,
)


def pad16(n: int) -> int:
    return -(-n // 16) * 16


def mlp_count(n_in: int, width: int, hidden: int) -> int:
    """tcnn FullyFusedMLP without biases: in->w, (hidden-1) x w->w, w->out, in/out padded to 16."""
    return pad16(n_in) * width + (hidden - 1) * width * width + width * pad16(4)


# ------------------------------------------------------------------------- parameter counts
def test_training_specs_match_gmnerf_checkpoints():
    assert ZOO["mlp"].param_counts() == {"mlp_base.params": 18_432}
    assert ZOO["triplane"].param_counts() == {
        "triplane": 3 * 32 * 32 * 16,
        "mlp_base.params": 28_672,
    }
    assert ZOO["hash"].param_counts() == {"encoding.params": 32_768, "mlp_base.params": 10_240}


@pytest.mark.parametrize("name", sorted(ZOO))
def test_param_counts_closed_form(name):
    spec = ZOO[name]
    if spec.family == "mlp":
        expected = mlp_count(6 * spec.n_frequencies, spec.n_neurons, spec.n_hidden_layers)
    elif spec.family == "triplane":
        r, c = spec.resolution, spec.channels
        expected = 3 * r * r * c + mlp_count(
            6 * spec.n_frequencies + c, spec.n_neurons, spec.n_hidden_layers
        )
    else:
        entries = 0
        b = math.exp(
            (math.log(spec.max_resolution) - math.log(spec.base_resolution)) / (spec.n_levels - 1)
        )
        for lvl in range(spec.n_levels):
            # tcnn: resolution = ceil(scale) + 1 with scale = b^l * base - 1 (integral here at the
            # finest level, hence the tolerance), entries = min(next multiple of 8 of res^3, 2^T)
            res = math.ceil(b**lvl * spec.base_resolution - 1 - 1e-4) + 1
            entries += min(-(-(res**3) // 8) * 8, 2**spec.log2_table_size)
        expected = entries * spec.n_features_per_level + mlp_count(
            spec.n_levels * spec.n_features_per_level, spec.n_neurons, spec.n_hidden_layers
        )
    field = build_field(name)
    assert sum(p.numel() for p in field.parameters()) == expected == spec.n_params


def test_zoo_has_13_distinct_specs_each_changing_one_hyperparameter():
    assert len(ZOO) == 13 and len(set(ZOO.values())) == 13
    for name, spec in ZOO.items():
        base = ZOO[spec.family]
        diff = [k for k, v in base.to_dict().items() if spec.to_dict()[k] != v]
        assert len(diff) == (0 if name == spec.family else 1), (name, diff)


# ------------------------------------------------------------------------- hash grid vs tcnn
def tcnn_hash_reference(x01: np.ndarray, table: np.ndarray, spec: HashGridSpec) -> np.ndarray:
    """Scalar re-implementation of tiny-cuda-nn's HashGrid (grid.h) forward, one point at a time."""
    f32 = np.float32
    n_levels, n_feat = spec.n_levels, table.shape[1]
    b = np.exp((np.log(spec.max_resolution) - np.log(spec.base_resolution)) / (n_levels - 1))
    log2_scale = np.log2(f32(b))
    out = np.zeros((len(x01), n_levels * n_feat), np.float32)
    offset = 0
    primes = (1, 2654435761, 805459861)
    for lvl in range(n_levels):
        scale = np.exp2(f32(lvl) * log2_scale) * f32(spec.base_resolution) - f32(1.0)
        res = int(math.ceil(scale)) + 1
        size = min(-(-(res**3) // 8) * 8, 2**spec.log2_table_size)
        for i, x in enumerate(x01):
            pos = [f32(float(x[d]) * float(scale) + 0.5) for d in range(3)]  # fmaf
            grid = [int(math.floor(p)) for p in pos]
            frac = [f32(p - f32(g)) for p, g in zip(pos, grid, strict=True)]
            acc = np.zeros(n_feat, np.float32)
            for c in range(8):
                corner = [(grid[d] + ((c >> d) & 1)) & 0xFFFFFFFF for d in range(3)]
                w = f32(1.0)
                for d in range(3):
                    w = f32(w * (frac[d] if (c >> d) & 1 else f32(1.0) - frac[d]))
                stride, index = 1, 0
                for d in range(3):
                    if stride > size:
                        break
                    index += corner[d] * stride
                    stride *= res
                if stride > size:
                    index = 0
                    for d in range(3):
                        index ^= corner[d] * primes[d]
                index = (index & 0xFFFFFFFF) % size
                acc += w * table[offset + index]
            out[i, lvl * n_feat : (lvl + 1) * n_feat] = acc
        offset += size
    return out


@pytest.mark.parametrize(
    "spec",
    [
        ZOO["hash"],
        ZOO["hash_8_levels"],
        ZOO["hash_13_table_size"],
        HashGridSpec(
            n_levels=3,
            n_features_per_level=4,
            log2_table_size=10,
            base_resolution=3,
            max_resolution=40,
        ),
    ],
    ids=["hash", "hash_8_levels", "hash_13_table_size", "odd"],
)
def test_hash_grid_matches_tcnn_reference(spec):
    field = build_field(spec, seed=3)
    with torch.no_grad():  # larger values than tcnn's init so that mistakes show
        field.table.uniform_(-1, 1, generator=torch.Generator().manual_seed(0))
    assert field.spec.level_is_dense[0] and not field.spec.level_is_dense[-1]
    g = torch.Generator().manual_seed(1)
    pts = [torch.rand(40, 3, generator=g)]
    # points on cell borders of level 1 (scale * x + 0.5 integral), the box faces, and outside
    s1 = float(spec.level_scales[1])
    pts.append(((torch.randint(0, int(s1), (10, 3), generator=g) + 0.5) / s1).clamp(0, 1))
    pts.append(torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [1.0, 0.0, 0.5], [0.5, 1.0, 0.0]]))
    pts.append(torch.rand(6, 3, generator=g) * 1.4 - 0.2)
    x01 = torch.cat(pts)
    ours = field.features(x01).detach().numpy()
    ref = tcnn_hash_reference(x01.numpy(), field.table.detach().numpy(), spec)
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-6)


def test_hash_levels_follow_tcnn_resolution_rule():
    spec = ZOO["hash"]
    assert list(spec.level_resolutions) == [16, 32, 64, 128]
    assert list(spec.level_is_dense) == [True, False, False, False]
    assert list(spec.level_table_sizes) == [4096] * 4
    ngp = HashGridSpec(n_levels=16, log2_table_size=19, base_resolution=16, max_resolution=2048)
    res = ngp.level_resolutions
    assert res[0] == 16 and res[-1] == 2048 and all(np.diff(res) > 0)
    # dense exactly while res^3 <= 2^19 (res <= 80)
    assert list(ngp.level_is_dense) == [int(r) ** 3 <= 2**19 for r in res]


def test_hash_grid_gradient_reaches_only_touched_entries():
    field = build_field("hash", seed=0)
    x = torch.full((1, 3), 0.123)
    field.encoding(x).sum().backward()
    touched = (field.table.grad != 0).any(1).sum().item()
    assert 1 <= touched <= 8 * field.spec.n_levels
    # gradient of a sum of features equals the sum of the trilinear weights: 1 per level/feature
    assert torch.allclose(field.table.grad.sum(0), torch.full((2,), 4.0), atol=1e-5)


def test_hash_grid_input_gradient_matches_finite_differences():
    field = build_field("hash_13_table_size", seed=0).double()
    with torch.no_grad():
        field.table.uniform_(-1, 1, generator=torch.Generator().manual_seed(0))
    x = (
        torch.rand(5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2)) * 0.8
        + 0.1
    )
    x.requires_grad_(True)
    feats = field.features(x)
    (grad,) = torch.autograd.grad(feats.sum(), x)
    eps = 1e-7
    for d in range(3):
        e = torch.zeros_like(x)
        e[:, d] = eps
        fd = (field.features(x + e).sum(1) - field.features(x - e).sum(1)) / (2 * eps)
        np.testing.assert_allclose(grad[:, d].detach(), fd.detach(), rtol=1e-4, atol=1e-6)


# ------------------------------------------------------------------------- frequency / planes
def test_frequency_encoding_is_tcnn_layout():
    x = torch.rand(7, 3)
    n_freq = 5
    enc = frequency_encoding(x, n_freq)
    assert enc.shape == (7, 3 * n_freq * 2)
    for j in range(enc.shape[1]):
        d, k, s = j // (2 * n_freq), (j // 2) % n_freq, j % 2
        ref = torch.sin(x[:, d] * (2.0**k) * math.pi + s * math.pi / 2)
        torch.testing.assert_close(enc[:, j], ref, rtol=1e-5, atol=1e-5)


def test_triplane_features_bilinear_sum():
    g = torch.Generator().manual_seed(0)
    r, c = 5, 3
    planes = torch.randn(3, r, r, c, generator=g)
    xm11 = torch.rand(20, 3, generator=g) * 2 - 1
    ours = triplane_features(xm11, planes)
    ref = torch.zeros(20, c)
    for k, (a, b) in enumerate([(0, 1), (0, 2), (1, 2)]):
        u = (xm11[:, a] + 1) / 2 * (r - 1)  # align_corners=True
        v = (xm11[:, b] + 1) / 2 * (r - 1)
        u0, v0 = u.floor().long().clamp(max=r - 2), v.floor().long().clamp(max=r - 2)
        fu, fv = (u - u0)[:, None], (v - v0)[:, None]
        p = planes[k]
        ref += (
            p[v0, u0] * (1 - fu) * (1 - fv)
            + p[v0, u0 + 1] * fu * (1 - fv)
            + p[v0 + 1, u0] * (1 - fu) * fv
            + p[v0 + 1, u0 + 1] * fu * fv
        )
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["mlp", "triplane_8_channels", "hash"])
def test_encoding_layout_and_padding(name):
    field = build_field(name)
    x = torch.rand(9, 3) * 1.4 - 0.7
    enc = field.encoding(x)
    spec = field.spec
    assert enc.shape == (9, spec.mlp_widths[0])
    assert torch.all(enc[:, spec.mlp_input_dim :] == 1.0)  # tcnn Identity/Frequency pad with 1
    if spec.family != "hash":
        torch.testing.assert_close(
            enc[:, : 6 * spec.n_frequencies],
            frequency_encoding(field.normalize(x), spec.n_frequencies),
        )


# ------------------------------------------------------------------------- fields
@pytest.mark.parametrize("name", sorted(ZOO))
def test_forward_contract_and_gradients(name):
    field = build_field(name, seed=1)
    x = torch.rand(256, 3) * 1.4 - 0.7
    x[:8] *= 2.0  # some points outside the AABB
    sigma, rgb = field(x)
    assert sigma.shape == (256,) and rgb.shape == (256, 3)
    assert torch.all(sigma >= 0) and torch.all((rgb > 0) & (rgb < 1))
    outside = (x.abs() >= 0.7).any(1)
    assert outside.any() and torch.all(sigma[outside] == 0)
    (sigma.sum() + rgb.sum()).backward()
    for pname, p in field.named_parameters():
        if pname == f"mlp.weights.{len(field.mlp.weights) - 1}":
            assert p.grad[:4].abs().sum() > 0 and torch.all(p.grad[4:] == 0)  # padded outputs
        else:
            assert p.grad is not None and p.grad.abs().sum() > 0, pname


def test_density_and_colour_activations():
    field = build_field("mlp", seed=0)
    x = torch.rand(32, 3) * 1.0 - 0.5
    raw = field.mlp(field.encoding(x))
    sigma, rgb = field(x)
    torch.testing.assert_close(sigma, torch.exp(raw[:, 3] - 1))
    torch.testing.assert_close(rgb, torch.sigmoid(raw[:, :3]))


def test_seeded_build_is_deterministic():
    a, b, c = build_field("hash", seed=5), build_field("hash", seed=5), build_field("hash", seed=6)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    assert not torch.equal(a.table, c.table)
    assert graphnerf.build_field(ZOO["mlp"]).spec == ZOO["mlp"]


# ------------------------------------------------------------------------- specs
@pytest.mark.parametrize("name", sorted(ZOO))
def test_spec_json_round_trip(name):
    spec = ZOO[name]
    again = FieldSpec.from_json(spec.to_json())
    assert again == spec and type(again) is type(spec)


@pytest.mark.parametrize(
    "make, message",
    [
        (
            lambda: HashGridSpec(log2_table_size=30),
            "hash: log2_table_size must be in [8, 24], got 30",
        ),
        (lambda: HashGridSpec(base_resolution=64, max_resolution=32), "max_resolution must be >="),
        (lambda: MLPSpec(activation="tanh"), "mlp: activation must be one of"),
        (lambda: TriplaneSpec(resolution=1), "triplane: resolution must be in [2, 1024], got 1"),
        (lambda: MLPSpec(n_neurons=2.5), "mlp: n_neurons must be an integer"),
        (lambda: MLPSpec(aabb=(0, 0, 0, 0, 1, 1)), "aabb min must be < max"),
        (lambda: FieldSpec.from_dict({"family": "voxels"}), "unknown field family 'voxels'"),
        (
            lambda: FieldSpec.from_dict({"family": "mlp", "widht": 3}),
            "unknown spec field(s) ['widht']",
        ),
        (lambda: FieldSpec.from_json("{nope"), "not valid JSON"),
        (lambda: build_field("mlp_3_layers"), "unknown architecture 'mlp_3_layers'"),
    ],
)
def test_spec_validation_errors(make, message):
    with pytest.raises(SpecError) as err:
        make()
    assert message in str(err.value)
