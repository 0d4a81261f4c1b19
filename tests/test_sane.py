"""Tests for graphnerf.models.sane: the masked reconstruction loss by hand, shapes, padding
invariance, and gradients reaching every parameter in one training step."""

from __future__ import annotations

import pytest
import torch

from graphnerf.fields import build_field
from graphnerf.losses.contrastive import ntxent_loss
from graphnerf.losses.latent import latent_l2_loss
from graphnerf.losses.rotation import quaternion_geodesic_loss
from graphnerf.models.sane import (
    Packing,
    SANEAutoencoder,
    SANEConfig,
    TransformerLayer,
    content_tokens,
    dropout_mask,
    masked_reconstruction_loss,
)
from graphnerf.scenes.rotations import quat_conjugate, quat_multiply
from graphnerf.tokens.augment import multiplicative_noise, permute_hidden_neurons
from graphnerf.tokens.tokenizer import GRID, MLP, POS, Tokenizer, TokenSequence, collate

SMALL = SANEConfig(
    d_model=32, d_latent=16, n_heads=2, n_layers=2, dropout=0.0, mask_ratio=0.3, proj_dims=(16, 8)
)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def tiny_sequence(T: int = 256) -> TokenSequence:
    """2 grid tokens (3 and 5 real values), 1 MLP token (all 256 real), 2 [POS] tokens."""
    g = gen(0)
    kind = torch.tensor([GRID, GRID, MLP, POS, POS])
    valid = torch.zeros(5, T, dtype=torch.bool)
    valid[0, :3] = True
    valid[1, :5] = True
    valid[2] = True
    tokens = torch.randn(5, T, generator=g) * valid
    xyz = torch.zeros(5, 3)
    xyz[:2] = torch.rand(2, 3, generator=g)
    nlk = torch.tensor([[0, 0, 0], [1, 0, 1], [2, 0, 0], [3, 0, 0], [4, 0, 1]])
    return TokenSequence(tokens, torch.ones(5, dtype=torch.bool), kind, xyz, nlk, valid)


def test_masked_loss_hand_example():
    pred = torch.tensor([[[1.0, 2.0, 9.0], [5.0, 5.0, 5.0], [7.0, 7.0, 7.0]]])
    target = torch.tensor([[[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]])
    # token 0: 2 real values (third is padding); token 1: [POS]; token 2: batch padding
    weight = torch.tensor([[[True, True, False], [False] * 3, [False] * 3]])
    loss = masked_reconstruction_loss(pred, target, weight)
    assert float(loss) == pytest.approx((1.0 + 4.0) / 2)  # not / 9, not / 3
    assert float(masked_reconstruction_loss(pred, target, torch.zeros_like(weight))) == 0.0


@pytest.mark.parametrize("train", [False, True])
def test_model_recon_loss_excludes_padding_and_pos_from_sum_and_denominator(train):
    torch.manual_seed(0)
    cfg = SANEConfig(
        d_model=16,
        d_latent=8,
        n_heads=2,
        n_layers=1,
        dropout=0.0,
        n_pos=2,
        mask_ratio=0.5,
        proj_dims=(8,),
    )
    model = SANEAutoencoder(cfg).train(train)
    a = tiny_sequence()
    keep = torch.tensor([0, 1, 3, 4])  # b: the 2 grid tokens and the 2 [POS], padded to 5
    b = TokenSequence(
        *(getattr(a, k)[keep].clone() for k in ("tokens", "mask", "kind", "xyz", "nlk", "valid"))
    )
    b.nlk[:, 0] = torch.arange(4)
    batch = collate([a, b])
    out = model(batch, generator=gen(3))
    recon, tok = out["recon"].detach(), batch.tokens
    hidden = out["hidden"]
    scored = hidden if train else content_tokens(batch)
    if train:
        assert bool(hidden.any()) and not bool((hidden & ~content_tokens(batch)).any())
    num, den = 0.0, 0
    for i in range(2):
        for c in range(batch.tokens.shape[1]):
            if not scored[i, c]:
                continue
            assert int(batch.kind[i, c]) in (GRID, MLP) and bool(batch.mask[i, c])
            for j in range(256):
                if batch.valid[i, c, j]:
                    num += float(recon[i, c, j] - tok[i, c, j]) ** 2
                    den += 1
    assert float(out["loss_recon"].detach()) == pytest.approx(num / den, rel=1e-5)
    naive = float(((recon - tok) ** 2).mean())
    assert abs(naive - num / den) > 1e-3 * (num / den)


def make_views(tk: Tokenizer, names, seed: int):
    """Two augmented views per object (the second hidden-neuron permuted) + clean targets."""
    fields = [build_field(n, seed=i) for i, n in enumerate(names)]
    va, vb = [], []
    for i, f in enumerate(fields):
        a, b = tk.tokenize_views([f, permute_hidden_neurons(f, gen(seed + i))], gen(seed + 10 + i))
        va.append(a)
        vb.append(b)
    return collate(va), collate(vb)


def test_shapes_and_gradients_reach_every_parameter():
    torch.manual_seed(0)
    tk = Tokenizer(n_points=6)
    model = SANEAutoencoder(SMALL).train()
    names = ["hash", "triplane", "mlp_32_width"]
    A, Bv = make_views(tk, names, seed=0)
    B, C = A.tokens.shape[:2]
    q_a = torch.nn.functional.normalize(torch.randn(B, 4, generator=gen(1)), dim=-1)
    q_b = torch.nn.functional.normalize(torch.randn(B, 4, generator=gen(2)), dim=-1)
    out_a = model(multiplicative_noise(A, 0.1, gen(3)), target=A.tokens, generator=gen(4))
    out_b = model(multiplicative_noise(Bv, 0.1, gen(5)), target=Bv.tokens, generator=gen(6))
    dl = SMALL.d_latent
    assert out_a["z"].shape == (B, C, dl) and out_a["recon"].shape == (B, C, 256)
    assert out_a["embedding"].shape == (B, dl) and out_a["projection"].shape == (B, 8)
    assert out_a["z_pos"].shape == (B, 10, dl) and out_a["hidden"].shape == (B, C)
    assert bool(out_a["hidden"].any())
    assert bool((out_a["z"][~A.mask] == 0).all())  # padding latents are zero
    q = model.predict_rotation(out_a["z_pos"], out_b["z_pos"])
    assert q.shape == (B, 4)
    torch.testing.assert_close(q.norm(dim=-1), torch.ones(B))
    labels = torch.arange(B).repeat(2)
    loss = (
        0.4 * (out_a["loss_recon"] + out_b["loss_recon"])
        + 0.05 * ntxent_loss(torch.cat([out_a["projection"], out_b["projection"]]), labels)
        + 0.53 * quaternion_geodesic_loss(q, quat_multiply(q_b, quat_conjugate(q_a)))
        + 0.02 * latent_l2_loss(out_a["z"])
    )
    loss.backward()
    missing = [
        n for n, p in model.named_parameters() if p.grad is None or float(p.grad.abs().sum()) == 0
    ]
    assert not missing, f"no gradient reached {missing}"


def test_embedding_ignores_batch_padding_and_eval_is_deterministic():
    torch.manual_seed(0)
    tk = Tokenizer(n_points=5)
    model = SANEAutoencoder(SMALL).eval()
    short = tk(build_field("mlp_32_width", seed=0), generator=gen(0))
    long = tk(build_field("triplane", seed=1), generator=gen(0))
    with torch.no_grad():
        alone = model.embed(short)
        batched = model.embed(collate([short, long]))
        out = model(collate([short, long]))
    assert alone.shape == (1, SMALL.d_latent)
    torch.testing.assert_close(batched[0], alone[0], rtol=1e-4, atol=1e-5)
    assert not bool(out["hidden"].any())  # no masking in eval mode
    torch.testing.assert_close(out["embedding"], batched)


def test_position_tables_must_cover_the_sequence():
    model = SANEAutoencoder(
        SANEConfig(d_model=16, d_latent=8, n_heads=2, n_layers=1, max_positions=20, proj_dims=(8,))
    )
    seq = Tokenizer(n_points=4)(build_field("hash"), generator=gen(0))  # 63 tokens
    with pytest.raises(ValueError, match="max_positions"):
        model(seq)


def test_config_file_builds_the_model():
    from graphnerf.config import load_config

    cfg = load_config("model/sane")
    model = SANEConfig.from_config(cfg.model.net).build()
    tk = Tokenizer.from_config(cfg.model.tokens)
    assert model.cfg.d_model == 128 and model.cfg.n_layers == 4 and model.cfg.n_heads == 4
    assert tk.n_points == 380 and tk.n_pos == model.cfg.n_pos == 10
    assert model.cfg.attn_dropout == 0.0 and model.cfg.bf16 is False
    # issue #13: fresh points per training batch and the study's augmentations by default
    assert tk.resample is True and Tokenizer().resample is True
    assert cfg.model.augment.permute_mlp is True and cfg.model.augment.noise_std > 0
    assert max(tk.layout(build_field(n).spec)["total"] for n in ("mlp_128_width", "triplane")) <= (
        model.cfg.max_positions
    )


# ---------------------------------------------------------------- packed transformer


def test_packing_round_trip_groups_by_length():
    mask = torch.tensor(
        [
            [True, True, True, False, False],
            [True, False, True, False, True],  # real tokens need not be a prefix
            [False] * 5,  # an empty sequence
            [True] * 5,
            [True, True, True, False, False],
        ]
    )
    pk = Packing.from_mask(mask)
    assert pk.groups == ((3, 3), (1, 5))  # three sequences of 3 tokens, one of 5
    x = torch.randn(5, 5, 4)
    rows = pk.pack(x)
    assert rows.shape == (int(mask.sum()), 4)
    back = pk.unpack(rows)
    torch.testing.assert_close(back[mask], x[mask])
    assert bool((back[~mask] == 0).all())
    # the first block holds sequences 0, 1, 4 (length 3, batch order), then sequence 3
    torch.testing.assert_close(rows[:3], x[0, :3])
    torch.testing.assert_close(rows[3:6], x[1, [0, 2, 4]])
    torch.testing.assert_close(rows[9:], x[3])


def reference_layer(layer: TransformerLayer) -> torch.nn.TransformerEncoderLayer:
    """``nn.TransformerEncoderLayer`` (pre-LN, GELU) holding the weights of ``layer``."""
    d = layer.norm1.normalized_shape[0]
    ref = torch.nn.TransformerEncoderLayer(
        d,
        layer.heads,
        layer.ff1.out_features,
        0.0,
        activation="gelu",
        batch_first=True,
        norm_first=True,
    )
    with torch.no_grad():
        ref.self_attn.in_proj_weight.copy_(layer.qkv.weight)
        ref.self_attn.in_proj_bias.copy_(layer.qkv.bias)
        ref.self_attn.out_proj.weight.copy_(layer.out.weight)
        ref.self_attn.out_proj.bias.copy_(layer.out.bias)
        for a, b in (
            ("linear1", "ff1"),
            ("linear2", "ff2"),
            ("norm1", "norm1"),
            ("norm2", "norm2"),
        ):
            getattr(ref, a).load_state_dict(getattr(layer, b).state_dict())
    return ref.eval()


def test_packed_attention_equals_padded_attention_with_key_padding_mask():
    """Attention per length group on the real tokens = attention over the padded batch with a
    key-padding mask, for every real token (outputs and input gradients)."""
    torch.manual_seed(0)
    layer = TransformerLayer(16, 4, 32).eval()
    with torch.no_grad():  # LayerNorms away from their identity initialisation
        for norm in (layer.norm1, layer.norm2):
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.normal_(0.0, 0.2)
    ref = reference_layer(layer)
    lengths = [7, 3, 7, 5]
    mask = torch.arange(7)[None, :] < torch.tensor(lengths)[:, None]
    x = torch.randn(4, 7, 16, requires_grad=True)
    pk = Packing.from_mask(mask)
    out = pk.unpack(layer(pk.pack(x), pk.groups))
    expected = ref(x, src_key_padding_mask=~mask)
    torch.testing.assert_close(out[mask], expected[mask], rtol=1e-5, atol=1e-5)
    assert bool((out[~mask] == 0).all())
    g = torch.randn(4, 7, 16) * mask[..., None]
    (gx,) = torch.autograd.grad(out, x, g)
    (gx_ref,) = torch.autograd.grad(expected, x, g)
    torch.testing.assert_close(gx, gx_ref, rtol=1e-4, atol=1e-5)


def test_dropout_mask_rate_and_scale():
    torch.manual_seed(0)
    keep, scale = dropout_mask(torch.Size([1000, 1000]), 0.1, torch.device("cpu"))
    rate = float(keep.float().mean())
    assert abs(rate - 0.9) < 2e-3  # 6 standard deviations of a 10^6 Bernoulli mean
    assert abs(scale * rate - 1.0) < 3e-3  # expectation kept
    keep0, scale0 = dropout_mask(torch.Size([7]), 0.0, torch.device("cpu"))
    assert bool(keep0.all()) and scale0 == 1.0


def test_dropout_only_in_training():
    torch.manual_seed(0)
    cfg = SANEConfig(d_model=16, d_latent=8, n_heads=2, n_layers=1, dropout=0.5, proj_dims=(8,))
    model = SANEAutoencoder(cfg)
    seq = Tokenizer(n_points=4)(build_field("hash"), generator=gen(0))
    model.eval()
    with torch.no_grad():
        a, b = model.embed(seq), model.embed(seq)
    torch.testing.assert_close(a, b)
    model.train()
    with torch.no_grad():
        za, zb = model.encoder(seq), model.encoder(seq)
    assert not torch.allclose(za, zb)


@pytest.mark.parametrize("changes", [{"bf16": True}, {"attn_dropout": 0.2}], ids=["bf16", "attn"])
def test_options_train_with_finite_gradients(changes):
    """The bfloat16 autocast option and attention-probability dropout: a training step runs,
    every parameter gets a finite, non-zero gradient; bf16 stays close to float32."""
    torch.manual_seed(0)
    cfg = SANEConfig(
        d_model=32, d_latent=16, n_heads=2, n_layers=2, mask_ratio=0.3, proj_dims=(16, 8)
    )
    tk = Tokenizer(n_points=6)
    A, B = make_views(tk, ["hash", "triplane", "mlp_32_width"], seed=0)
    ref = SANEAutoencoder(cfg)
    model = SANEAutoencoder(SANEConfig(**{**cfg.__dict__, **changes}))
    model.load_state_dict(ref.state_dict())
    if changes.get("bf16"):
        ref.eval(), model.eval()
        with torch.no_grad():
            z32, z16 = ref.embed(A), model.embed(A)
        assert z16.dtype == torch.float32
        cos = torch.nn.functional.cosine_similarity(z16, z32, dim=-1)
        assert bool((cos > 0.98).all()), cos
    model.train()
    out_a, out_b = model(A, generator=gen(1)), model(B, generator=gen(2))
    assert out_a["recon"].dtype == torch.float32 and out_a["loss_recon"].dtype == torch.float32
    q = model.predict_rotation(out_a["z_pos"], out_b["z_pos"])
    labels = torch.arange(A.tokens.shape[0]).repeat(2)
    loss = (
        out_a["loss_recon"]
        + out_b["loss_recon"]
        + ntxent_loss(torch.cat([out_a["projection"], out_b["projection"]]), labels)
        + q.sum()
    )
    assert bool(torch.isfinite(loss))
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, f"no gradient reached {name}"
        assert bool(torch.isfinite(p.grad).all()), f"non-finite gradient in {name}"
        assert float(p.grad.abs().sum()) > 0, f"all-zero gradient in {name}"
