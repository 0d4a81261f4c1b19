"""Tests for graphnerf.tokens: layout per zoo spec, grid tokens against the fields' own lookups,
the MLP token rule of SANE-on-Instant-NGP (53 tokens), point sampling and augmentations."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from graphnerf.fields import ZOO, HashGridSpec, build_field, hash_grid_encoding, triplane_features
from graphnerf.fields.encodings import CORNER_OFFSETS, TRIPLANE_AXES, hash_grid_indices
from graphnerf.fields.spec import MLP_OUTPUTS
from graphnerf.scenes.rotations import quat_conjugate, quat_multiply
from graphnerf.tokens.augment import (
    jitter_rotation,
    multiplicative_noise,
    permute_hidden_neurons,
)
from graphnerf.tokens.tokenizer import (
    GRID,
    MLP,
    PAD,
    POS,
    Tokenizer,
    collate,
    mlp_token_count,
    sample_points,
    tokenize_weights,
)

P = 12  # sampled points in most tests


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def closed_form_mlp_tokens(spec) -> int:
    """sum over layers of ceil(out / 4) * ceil(in / 64), output layer cut to its 4 real rows."""
    w = spec.mlp_widths
    outs = [*w[1:-1], MLP_OUTPUTS]
    return sum(math.ceil(o / 4) * math.ceil(i / 64) for o, i in zip(outs, w[:-1], strict=True))


# --------------------------------------------------------------------------- layout
@pytest.mark.parametrize("name", list(ZOO))
def test_layout_shapes_and_masks_for_every_zoo_spec(name):
    spec = ZOO[name]
    field = build_field(name, seed=1)
    tk = Tokenizer(n_points=P)
    seq = tk(field, generator=gen(0))
    fam = spec.family
    n_grid = 0 if fam == "mlp" else P
    n_mlp = closed_form_mlp_tokens(spec)
    C = n_grid + n_mlp + 10
    assert seq.tokens.shape == (C, 256) and seq.valid.shape == (C, 256)
    assert seq.mask.shape == (C,) and bool(seq.mask.all())
    assert seq.xyz.shape == (C, 3) and seq.nlk.shape == (C, 3)
    assert seq.nlk.dtype == torch.long and seq.kind.dtype == torch.long
    assert tk.layout(spec) == {
        "grid": n_grid,
        "mlp": n_mlp,
        "pos": 10,
        "total": C,
        "grid_values": {"mlp": 0, "triplane": 12 * getattr(spec, "channels", 0)}.get(
            fam, 8 * getattr(spec, "n_levels", 0) * getattr(spec, "n_features_per_level", 0)
        ),
    }
    # order [grid; mlp; pos], nlk[:, 0] is the global position
    expect_kind = torch.tensor([GRID] * n_grid + [MLP] * n_mlp + [POS] * 10)
    assert torch.equal(seq.kind, expect_kind)
    assert torch.equal(seq.nlk[:, 0], torch.arange(C))
    grid, mlp, pos = seq.kind == GRID, seq.kind == MLP, seq.kind == POS
    # grid tokens: one per point, values filled up to 8LF / 12C, xyz in [0, 1), k = point index
    if n_grid:
        n_vals = tk.layout(spec)["grid_values"]
        assert bool(seq.valid[grid, :n_vals].all()) and not bool(seq.valid[grid, n_vals:].any())
        assert bool((seq.tokens[grid, n_vals:] == 0).all())
        assert bool((seq.xyz[grid] >= 0).all() and (seq.xyz[grid] < 1).all())
        assert torch.equal(seq.nlk[grid, 2], torch.arange(P))
    assert bool((seq.xyz[~grid] == 0).all())
    # [POS]: zero content, no valid value, k = 0..9
    assert bool((seq.tokens[pos] == 0).all()) and not bool(seq.valid[pos].any())
    assert torch.equal(seq.nlk[pos, 2], torch.arange(10))
    # MLP tokens hold exactly the real weights (multiset), padding is zero
    ws = list(field.mlp.weights)
    ws[-1] = ws[-1][:MLP_OUTPUTS]
    real = torch.cat([w.detach().reshape(-1) for w in ws])
    got = seq.tokens[mlp][seq.valid[mlp]]
    assert torch.equal(got.sort().values, real.sort().values)
    assert bool((seq.tokens[mlp][~seq.valid[mlp]] == 0).all())
    assert torch.equal(seq.nlk[mlp, 1].unique(), torch.arange(len(ws)))


def test_collate_pads_with_mask_false_and_pad_kind():
    tk = Tokenizer(n_points=4)
    a = tk(build_field("hash"), generator=gen(0))
    b = tk(build_field("mlp_32_width"), generator=gen(0))
    batch = collate([a, b])
    C = max(len(a), len(b))
    assert batch.tokens.shape == (2, C, 256) and batch.valid.shape == (2, C, 256)
    assert batch.mask.shape == (2, C) and batch.batched
    short = 1 if len(b) < len(a) else 0
    n = min(len(a), len(b))
    assert bool(batch.mask[short, :n].all()) and not bool(batch.mask[short, n:].any())
    assert bool((batch.kind[short, n:] == PAD).all())
    assert not bool(batch.valid[short, n:].any()) and bool((batch.tokens[short, n:] == 0).all())
    assert torch.equal(batch.tokens[1 - short], (a, b)[1 - short].tokens)


# --------------------------------------------------------------------------- grid tokens
HASH_SPECS = {
    "hash": ZOO["hash"],  # every level hashed
    "dense+hashed": HashGridSpec(n_levels=3, base_resolution=4, max_resolution=32),
}


@pytest.mark.parametrize("key", list(HASH_SPECS))
def test_hash_tokens_are_the_table_entries_at_the_hashed_corners(key):
    spec = HASH_SPECS[key]
    field = build_field(spec, seed=3)
    x01 = torch.rand(P, 3, generator=gen(5))
    seq = Tokenizer(n_points=P)(field, x01)
    L, F = spec.n_levels, spec.n_features_per_level
    got = seq.tokens[seq.kind == GRID, : 8 * L * F].reshape(P, L, 8, F)
    if key == "dense+hashed":
        assert bool(field.dense.any()) and not bool(field.dense.all())
    # expected: table[offset_l + idx] at corner floor(scale_l x + 1/2) + CORNER_OFFSETS[c]
    pos = x01.double()[:, None, :] * field.scales.double()[:, None] + 0.5  # [P, L, 3]
    for c in range(8):
        corner = torch.floor(pos).long() + CORNER_OFFSETS[c]
        idx = hash_grid_indices(corner, field.resolutions, field.table_sizes, field.dense)
        expect = field.table.detach()[field.offsets + idx]  # [P, L, F]
        assert torch.equal(got[:, :, c], expect)
    # and trilinear weights over those corners reproduce the field's own encoding
    frac = pos.float() - torch.floor(pos.float())
    w = torch.where(CORNER_OFFSETS.bool(), frac[:, :, None, :], 1 - frac[:, :, None, :]).prod(-1)
    interp = (w[..., None] * got).sum(2).reshape(P, L * F)
    enc = hash_grid_encoding(
        x01,
        field.table.detach(),
        field.scales,
        field.resolutions,
        field.table_sizes,
        field.offsets,
        field.dense,
    )
    torch.testing.assert_close(interp, enc, rtol=1e-5, atol=1e-9)


def test_instant_ngp_hash_token_is_exactly_256_values():
    """The study's 16 levels x 2 features: 8 x 16 x 2 = 256, one unpadded token per point."""
    spec = HashGridSpec(n_levels=16, n_features_per_level=2, log2_table_size=12)
    seq = Tokenizer(n_points=5)(build_field(spec), generator=gen(0))
    assert Tokenizer().layout(spec)["grid_values"] == 256
    assert bool(seq.valid[seq.kind == GRID].all()) and int((seq.kind == GRID).sum()) == 5


@pytest.mark.parametrize("name", ["triplane", "triplane_16_resolution", "triplane_8_channels"])
def test_triplane_tokens_are_the_texels_of_the_bilinear_cells(name):
    field = build_field(name, seed=2)
    with torch.no_grad():
        field.triplane.normal_(generator=gen(9))
    planes = field.triplane.detach()
    R, Ch = planes.shape[1], planes.shape[3]
    x01 = torch.rand(P, 3, generator=gen(4))
    seq = Tokenizer(n_points=P)(field, x01)
    got = seq.tokens[seq.kind == GRID, : 12 * Ch].reshape(P, 3, 4, Ch)
    interp = torch.zeros(P, Ch)
    for k, (a, b) in enumerate(TRIPLANE_AXES):
        u, v = x01[:, a].double() * (R - 1), x01[:, b].double() * (R - 1)
        u0, v0 = u.floor().long(), v.floor().long()
        for c, (du, dv) in enumerate([(0, 0), (1, 0), (0, 1), (1, 1)]):
            assert torch.equal(got[:, k, c], planes[k, v0 + dv, u0 + du])
            wu = (u - u0) if du else (1 - (u - u0))
            wv = (v - v0) if dv else (1 - (v - v0))
            interp += (wu * wv).float()[:, None] * got[:, k, c]
    # bilinear over the 4 texels, summed over planes == the field's grid_sample lookup
    torch.testing.assert_close(interp, triplane_features(2 * x01 - 1, planes), rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------- MLP tokens
def test_instant_ngp_mlp_gives_the_studys_53_tokens():
    """Instant-NGP's MLPs (hash 32 -> 64 -> 16 density net; SH 16 + 16 -> 64 -> 64 -> 3 colour
    net), each layer padded to 64 inputs and to a multiple of 4 rows, 4 neurons per token:
    16 + 4 + 16 + 16 + 1 = 53 tokens; with 380 points and 10 [POS] the sequence is 443 long."""
    shapes = [(64, 32), (16, 64), (64, 32), (64, 64), (3, 64)]
    assert mlp_token_count(shapes) == 53
    ws = [torch.randn(o, i, generator=gen(o + i)) for o, i in shapes]
    toks, valid, layer, index = tokenize_weights(ws)
    assert toks.shape == (53, 256) and 380 + 53 + 10 == 443
    assert torch.equal(torch.bincount(layer), torch.tensor([16, 4, 16, 16, 1]))
    assert int(valid.sum()) == sum(o * i for o, i in shapes)
    # token 1 of layer 0 = neurons 4..7, the 32 inputs, zero-padded to 64 columns
    block = toks[1].reshape(4, 64)
    assert torch.equal(block[:, :32], ws[0][4:8]) and bool((block[:, 32:] == 0).all())
    # the last token holds the 3 colour rows and one zero row
    last = toks[-1].reshape(4, 64)
    assert torch.equal(last[:3], ws[4]) and bool((last[3] == 0).all())
    assert torch.equal(index[layer == 3], torch.arange(16))


def test_wide_layers_take_column_blocks():
    """A 144-input layer (frequency encoding) is cut into 3 column blocks of 64 per 4 rows."""
    w = torch.randn(8, 144, generator=gen(1))
    toks, valid, _, index = tokenize_weights([w])
    assert toks.shape == (2 * 3, 256) and mlp_token_count([(8, 144)]) == 6
    assert torch.equal(toks[0].reshape(4, 64), w[:4, :64])
    assert torch.equal(toks[2].reshape(4, 64)[:, :16], w[:4, 128:])
    assert torch.equal(toks[4].reshape(4, 64), w[4:, 64:128])
    assert int(valid[2].sum()) == 4 * 16 and torch.equal(index, torch.arange(6))


# --------------------------------------------------------------------------- sampling
def test_same_seed_gives_identical_points_for_two_fields():
    tk = Tokenizer(n_points=P)
    a = tk(build_field("hash", seed=0), generator=gen(7))
    b = tk(build_field("triplane", seed=1), generator=gen(7))
    c = tk(build_field("hash", seed=0), generator=gen(8))
    xa, xb, xc = (s.xyz[s.kind == GRID] for s in (a, b, c))
    assert torch.equal(xa, xb)
    assert not torch.equal(xa, xc)
    views = tk.tokenize_views([build_field("hash"), build_field("hash_8_levels")], gen(3))
    assert torch.equal(views[0].xyz[views[0].kind == GRID], views[1].xyz[views[1].kind == GRID])


def test_subsample_mode_draws_per_view_subsets_of_one_pool():
    pts = sample_points(64, gen(0), n_views=2, sampling="subsample", oversample=4)
    assert pts.shape == (2, 64, 3)
    pool = torch.rand(256, 3, generator=gen(0))  # the pool is the generator's first draw
    for v in range(2):
        assert bool((pts[v][:, None] == pool[None]).all(-1).any(-1).all())
        assert len({tuple(p) for p in pts[v].tolist()}) == 64  # without replacement
    shared = (pts[0][:, None] == pts[1][None]).all(-1).any(-1).sum()
    assert 0 < int(shared) < 64  # ~64 / 4 on average
    same = sample_points(64, gen(0), n_views=2, sampling="same")
    assert torch.equal(same[0], same[1])
    tk = Tokenizer(n_points=16, sampling="subsample")
    va, vb = tk.tokenize_views([build_field("hash"), build_field("hash")], gen(2))
    assert not torch.equal(va.xyz, vb.xyz)


# --------------------------------------------------------------------------- augmentations
@pytest.mark.parametrize("name", ["mlp", "triplane", "hash"])
def test_hidden_neuron_permutation_preserves_the_field(name):
    field = build_field(name, seed=4)
    perm = permute_hidden_neurons(field, gen(1))
    x = (torch.rand(256, 3, generator=gen(2)) - 0.5) * 1.3
    s0, c0 = field(x)
    s1, c1 = perm(x)
    torch.testing.assert_close(s1, s0, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(c1, c0, rtol=1e-4, atol=1e-6)
    # the weights (and so the MLP tokens) did change; the original field is untouched
    assert not torch.equal(perm.mlp.weights[0], field.mlp.weights[0])
    assert torch.equal(perm.mlp.weights[0].sort(0).values, field.mlp.weights[0].sort(0).values)
    tk = Tokenizer(n_points=4)
    ta, tb = tk(field, generator=gen(0)), tk(perm, generator=gen(0))
    assert torch.equal(ta.tokens[ta.kind == GRID], tb.tokens[tb.kind == GRID])
    assert not torch.equal(ta.tokens[ta.kind == MLP], tb.tokens[tb.kind == MLP])
    # control: permuting the rows of W_0 alone (no matching columns of W_1) breaks the function
    broken = copy.deepcopy(field)
    with torch.no_grad():
        broken.mlp.weights[0].copy_(field.mlp.weights[0][torch.randperm(64, generator=gen(1))])
    assert not torch.allclose(broken(x)[1], c0, atol=1e-4)


def test_multiplicative_noise_keeps_padding_zero():
    seq = Tokenizer(n_points=6)(build_field("hash", seed=0), generator=gen(0))
    noisy = multiplicative_noise(seq, std=0.1, generator=gen(1))
    assert bool((noisy.tokens[~seq.valid] == 0).all())
    ratio = noisy.tokens[seq.valid] / seq.tokens[seq.valid]
    assert 0.05 < float(ratio.std()) < 0.15 and abs(float(ratio.mean()) - 1) < 0.02
    assert torch.equal(noisy.valid, seq.valid) and torch.equal(noisy.xyz, seq.xyz)


def test_rotation_label_jitter_is_small_and_nonzero():
    q = torch.nn.functional.normalize(torch.randn(200, 4, generator=gen(0)), dim=-1)
    j = jitter_rotation(q, std_deg=0.1, generator=gen(1))
    rel = quat_multiply(j, quat_conjugate(q))
    angle = torch.rad2deg(2 * torch.atan2(rel[:, 1:].norm(dim=-1), rel[:, 0].abs()))
    assert float(angle.max()) < 1.0 and float(angle.mean()) > 0.02
    assert torch.allclose(j.norm(dim=-1), torch.ones(200)) and bool((j[:, 0] >= 0).all())
