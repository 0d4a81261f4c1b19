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
    SANEAutoencoder,
    SANEConfig,
    content_tokens,
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
    assert max(tk.layout(build_field(n).spec)["total"] for n in ("mlp_128_width", "triplane")) <= (
        model.cfg.max_positions
    )
