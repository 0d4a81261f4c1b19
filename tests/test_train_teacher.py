"""Teacher-ray cache and cached rendering loss: the same loss as rendering_loss, invalidated when
the NeRF file changes."""

from __future__ import annotations

import torch

import graphnerf
from graphnerf.losses import rendering_loss
from graphnerf.models import DecoderConfig
from graphnerf.render.volume import render_rays
from graphnerf.train import TeacherRayCache, cached_rendering_loss, render_decoder

torch.set_num_threads(1)


def _nerf(path, seed):
    field = graphnerf.build_field("mlp_32_width", seed=seed)
    graphnerf.save_field(field, path, object_id="o")
    return field


def test_cached_loss_equals_rendering_loss(tmp_path):
    nerf = tmp_path / "a.safetensors"
    field = _nerf(nerf, 0)
    cache = TeacherRayCache(tmp_path / "cache", n_rays=64, n_samples=16)
    rays = cache.get({"id": "a", "file": "a.safetensors"}, nerf)
    assert rays["rgb"].shape == (64, 3) and rays["opacity"].shape == (64,)
    torch.manual_seed(0)
    dec = DecoderConfig(embed_dim=8, hidden_dim=16, n_frequencies=4).build()
    z = torch.randn(2, 8)
    o, d = rays["origins"][None].expand(2, -1, -1), rays["directions"][None].expand(2, -1, -1)
    # the decoder render is render_rays, field by field
    out = render_decoder(dec, z, o, d, n_samples=16, perturb=False)
    for i in range(2):
        ref = render_rays(dec.bind(z[i]), o[i], d[i], n_samples=16)
        assert torch.allclose(out["rgb"][i], ref["rgb"], atol=1e-6)
    # the teacher's cached renders are its renders on those rays, and the loss is nf2vec's
    teacher = render_rays(field, rays["origins"], rays["directions"], n_samples=16)
    assert torch.allclose(teacher["rgb"], rays["rgb"], atol=1e-6)
    fg_t = torch.tensor([0.0, 0.3, 0.6])  # also a threshold that splits the rays
    for thr in fg_t.tolist():
        ref = rendering_loss(
            field,
            dec.bind(z[0]),
            rays["origins"],
            rays["directions"],
            n_samples=16,
            fg_threshold=thr,
        )
        got = cached_rendering_loss(
            out["rgb"][:1], rays["rgb"][None], rays["opacity"][None], fg_threshold=thr
        )
        assert torch.allclose(got, ref, atol=1e-6), (thr, got, ref)


def test_cache_reused_then_invalidated(tmp_path, monkeypatch):
    nerf = tmp_path / "a.safetensors"
    _nerf(nerf, 0)
    rec = {"id": "a", "file": "a.safetensors"}
    cache = TeacherRayCache(tmp_path / "cache", n_rays=32, n_samples=8)
    first = cache.get(rec, nerf)
    assert cache.path(rec).is_file()

    def no_render(*a, **k):
        raise AssertionError("rendered although the cache entry is valid")

    monkeypatch.setattr(cache, "render", no_render)
    again = cache.get(rec, nerf)
    assert torch.equal(again["rgb"], first["rgb"])
    monkeypatch.undo()
    _nerf(nerf, 1)  # the NeRF file is replaced: other weights
    changed = cache.get(rec, nerf)
    assert torch.equal(changed["origins"], first["origins"])  # same rays (seeded by id)
    assert not torch.equal(changed["rgb"], first["rgb"])
    # other settings are another cache entry's business: rendered again
    other = TeacherRayCache(tmp_path / "cache", n_rays=32, n_samples=12).get(rec, nerf)
    assert not torch.equal(other["rgb"], changed["rgb"])
