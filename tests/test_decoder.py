"""Tests for graphnerf.models.decoder (FieldDecoder) and graphnerf.losses.rendering."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from graphnerf.fields import build_field
from graphnerf.losses.rendering import random_rays, rendering_loss
from graphnerf.models.decoder import FieldDecoder
from graphnerf.render import render_rays

D = 8


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def small_decoder(seed: int = 0) -> FieldDecoder:
    torch.manual_seed(seed)
    return FieldDecoder(embed_dim=D, hidden_dim=32, n_frequencies=4)


def ball(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Analytic teacher: an opaque reddish ball of radius 0.35 at the origin."""
    inside = (x.norm(dim=-1) < 0.35).to(x.dtype)
    rgb = torch.stack([0.9 * torch.ones_like(inside), 0.2 + 0.5 * inside, 0.1 + 0 * inside], -1)
    return 60.0 * inside, rgb


def test_batched_forward_shapes_ranges_and_bind():
    dec = small_decoder()
    z = torch.randn(3, D, generator=gen(0))
    x = (torch.rand(3, 50, 3, generator=gen(1)) - 0.5) * 2.0  # some points outside the AABB
    sigma, rgb = dec(z, x)
    assert sigma.shape == (3, 50) and rgb.shape == (3, 50, 3)
    assert bool((sigma >= 0).all()) and bool(((rgb > 0) & (rgb < 1)).all())
    outside = (x.abs() >= 0.7).any(-1)
    assert bool(outside.any()) and bool((sigma[outside] == 0).all())
    assert bool((sigma[~outside] > 0).all())
    s1, c1 = dec.bind(z[1])(x[1])
    torch.testing.assert_close(s1, sigma[1])
    torch.testing.assert_close(c1, rgb[1])
    # the embedding matters
    assert not torch.allclose(dec.bind(z[0])(x[1])[1], c1)


def test_split_first_layer_is_a_linear_layer_on_the_concatenation():
    """nf2vec feeds [z, enc(x)] to one linear layer; the split form is the same function."""
    dec = small_decoder()
    z = torch.randn(2, D, generator=gen(0))
    e = torch.randn(2, 5, 24, generator=gen(1))
    lin = nn.Linear(D + 24, 32)
    with torch.no_grad():
        lin.weight.copy_(torch.cat([dec.in_layer.z.weight, dec.in_layer.e.weight], 1))
        lin.bias.copy_(dec.in_layer.z.bias)
    cat = torch.cat([z[:, None].expand(2, 5, D), e], -1)
    torch.testing.assert_close(dec.in_layer(z, e), lin(cat))


def test_decoder_renders_and_gradients_reach_every_parameter():
    dec = small_decoder()
    z = torch.randn(D, generator=gen(2), requires_grad=True)
    o, d = random_rays(16, gen(3))
    out = render_rays(dec.bind(z), o, d, n_samples=16, chunk=100)
    assert out["rgb"].shape == (16, 3) and out["opacity"].shape == (16,)
    assert bool(out["hit"].any())
    loss = rendering_loss(ball, dec.bind(z), o, d, n_samples=16, chunk=100)
    loss.backward()
    missing = [n for n, p in dec.named_parameters() if p.grad is None or not bool(p.grad.any())]
    assert not missing, f"no gradient reached {missing}"
    assert z.grad is not None and bool(z.grad.any())


def test_random_rays_orbit_the_scene():
    o, d = random_rays(500, gen(0), radius=3.0, max_elevation_deg=60.0)
    assert o.shape == d.shape == (500, 3)
    torch.testing.assert_close(o.norm(dim=-1), torch.full((500,), 3.0))
    torch.testing.assert_close(d.norm(dim=-1), torch.ones(500))
    elevation = torch.rad2deg(torch.asin(o[:, 2] / 3.0))
    assert float(elevation.abs().max()) <= 60.0 + 1e-4
    # every ray points into the camera's 50 degree cone around the look-at direction
    cos = (d * (-o / 3.0)).sum(-1)
    assert float(cos.min()) >= torch.cos(torch.deg2rad(torch.tensor(25.0 * 2**0.5))) - 1e-5
    out = render_rays(ball, o, d, n_samples=8)
    assert 0.01 < float((out["opacity"] > 0.5).float().mean()) < 0.5  # ball ~5% of the view
    assert torch.equal(random_rays(5, gen(1))[1], random_rays(5, gen(1))[1])


@pytest.mark.parametrize("perturb", [False, True])
def test_rendering_loss_is_zero_for_the_teacher_itself(perturb):
    field = build_field("hash", seed=0)
    o, d = random_rays(24, gen(0))
    loss = rendering_loss(field, field, o, d, n_samples=12, perturb=perturb, generator=gen(1))
    assert float(loss.detach()) == 0.0
    dec = small_decoder()
    z = torch.randn(D, generator=gen(4))
    assert float(rendering_loss(ball, ball, o, d, n_samples=12, perturb=perturb)) == 0.0
    with torch.no_grad():
        assert float(rendering_loss(ball, dec.bind(z), o, d, n_samples=12, perturb=perturb)) > 0
        assert float(rendering_loss(field, dec.bind(z), o, d, n_samples=12)) > 0.0


@torch.no_grad()
def test_rendering_loss_matches_a_hand_computation():
    # rays along -x at heights y: through the ball (fg), beside it (bg), missing the box
    ys = [0.0, 0.1, -0.2, 0.5, 0.6, 1.5]
    o = torch.tensor([[3.0, y, 0.0] for y in ys])
    d = torch.tensor([[-1.0, 0.0, 0.0]] * len(ys))
    dec = small_decoder(1)
    z = torch.randn(D, generator=gen(5))
    student = dec.bind(z)
    loss, renders = rendering_loss(
        ball,
        student,
        o,
        d,
        n_samples=32,
        fg_weight=0.7,
        bg_weight=0.3,
        beta=0.15,
        return_renders=True,
    )
    t = render_rays(ball, o, d, n_samples=32)
    s = render_rays(student, o, d, n_samples=32)
    torch.testing.assert_close(renders["student"]["rgb"], s["rgb"])
    fg_rays = [i for i in range(len(ys)) if t["hit"][i] and t["opacity"][i] > 0.5]
    bg_rays = [i for i in range(len(ys)) if t["hit"][i] and not t["opacity"][i] > 0.5]
    assert fg_rays == [0, 1, 2] and bg_rays == [3, 4]  # ray 5 misses the box

    def smooth_l1(a: float, b: float, beta: float = 0.15) -> float:
        diff = abs(a - b)
        return 0.5 * diff * diff / beta if diff < beta else diff - 0.5 * beta

    def mean_over(rays: list[int]) -> float:
        vals = [
            smooth_l1(float(s["rgb"][i, c]), float(t["rgb"][i, c])) for i in rays for c in range(3)
        ]
        return sum(vals) / len(vals)

    diffs = (s["rgb"] - t["rgb"])[fg_rays + bg_rays].abs()
    assert bool((diffs < 0.15).any()) and bool((diffs >= 0.15).any())  # both SmoothL1 branches
    expect = 0.7 * mean_over(fg_rays) + 0.3 * mean_over(bg_rays)
    assert float(loss) == pytest.approx(expect, rel=1e-5)
    # the weighting matters: swapping it changes the value
    swapped = rendering_loss(
        ball, student, o, d, n_samples=32, fg_weight=0.3, bg_weight=0.7, beta=0.15
    )
    assert float(swapped) == pytest.approx(
        0.3 * mean_over(fg_rays) + 0.7 * mean_over(bg_rays), rel=1e-5
    )
    assert abs(float(swapped) - float(loss)) > 1e-6


def test_config_file_builds_the_decoder():
    from graphnerf.config import load_config

    cfg = load_config("model/decoder")
    dec = FieldDecoder.from_config(cfg.model.net)
    assert dec.embed_dim == cfg.model.net.embed_dim
    assert cfg.model.render_loss.fg_weight == 0.8 and cfg.model.render_loss.bg_weight == 0.2
