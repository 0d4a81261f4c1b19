"""Tests for graphnerf.render: volume rendering against closed forms, cameras, metrics, images."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch
from torch import nn

from graphnerf.render import (
    DEFAULT_AABB,
    EVAL_VIEWS,
    Camera,
    camera_rays,
    composite,
    eval_cameras,
    image_grid,
    look_at,
    mse,
    orbit_cameras,
    psnr,
    psnr_per_image,
    ray_aabb,
    render_image,
    render_rays,
    save_labeled_grid,
    save_png,
    stratified_t,
)

BOX = (-0.3, -0.5, -0.2, 0.4, 0.6, 0.5)  # deliberately asymmetric scene box


def inside(x: torch.Tensor, aabb, eps: float = 1e-5) -> torch.Tensor:
    box = torch.as_tensor(aabb, dtype=x.dtype)
    return ((x >= box[:3] - eps) & (x <= box[3:] + eps)).all(dim=-1)


class CountingField:
    """Constant density ``s`` and colour ``c`` inside ``aabb`` (0 outside); records every query."""

    def __init__(self, s: float, colour, aabb=BOX):
        self.s = s
        self.colour = torch.as_tensor(colour, dtype=torch.float32)
        self.box = aabb
        self.calls: list[torch.Tensor] = []

    def __call__(self, x: torch.Tensor):
        self.calls.append(x.detach().clone())
        sigma = self.s * inside(x, self.box).to(x.dtype)
        return sigma, self.colour.to(x).expand(x.shape[0], 3)

    @property
    def n_points(self) -> int:
        return sum(c.shape[0] for c in self.calls)


def rays_towards_box(n: int, aabb, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Oblique unit rays from a sphere of radius 2.5 around the box towards random points in it."""
    g = torch.Generator().manual_seed(seed)
    box = torch.as_tensor(aabb)
    centre = 0.5 * (box[:3] + box[3:])
    origins = torch.randn(n, 3, generator=g)
    origins = centre + 2.5 * origins / origins.norm(dim=-1, keepdim=True)
    targets = box[:3] + (box[3:] - box[:3]) * torch.rand(n, 3, generator=g)
    dirs = targets - origins
    return origins, dirs / dirs.norm(dim=-1, keepdim=True)


def project(camera: Camera, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pinhole projection (OpenGL camera): world points [N, 3] -> pixel coords [N, 2], depth [N]."""
    rot, t = camera.c2w[:3, :3], camera.c2w[:3, 3]
    p_cam = (points - t) @ rot  # = R^T (p - t), row-vector form
    depth = -p_cam[:, 2]  # positive in front of the camera
    u = camera.cx + camera.fx * p_cam[:, 0] / depth
    v = camera.cy - camera.fy * p_cam[:, 1] / depth
    return torch.stack([u, v], dim=-1), depth


def box_corners(aabb) -> torch.Tensor:
    b = torch.as_tensor(aabb, dtype=torch.float32)
    idx = torch.tensor([[i, j, k] for i in (0, 3) for j in (1, 4) for k in (2, 5)])
    return b[idx]


# --------------------------------------------------------------------------------------------
# 1. constant density filling the box: exact closed form for piecewise-constant quadrature


@pytest.mark.parametrize("n_samples", [1, 7, 64])
@pytest.mark.parametrize("perturb", [False, True])
def test_constant_density_box_matches_beer_lambert(n_samples, perturb):
    s, colour, bg = 2.3, torch.tensor([0.9, 0.2, 0.4]), torch.tensor([0.1, 0.7, 1.0])
    field = CountingField(s, colour)
    origins, dirs = rays_towards_box(300, BOX)
    # axis-aligned rays (zero direction components), one starting inside the box, one grazing a face
    extra_o = torch.tensor(
        [[-2.0, 0.1, 0.1], [0.0, 0.0, 3.0], [0.05, 0.05, 0.05], [0.1, -0.5, -2.0]]
    )
    extra_d = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.6, 0.0, 0.8], [0.0, 0.0, 1.0]])
    origins, dirs = torch.cat([origins, extra_o]), torch.cat([dirs, extra_d])
    g = torch.Generator().manual_seed(1)
    out = render_rays(
        field,
        origins,
        dirs,
        aabb=BOX,
        n_samples=n_samples,
        perturb=perturb,
        background=bg,
        generator=g,
    )
    t_near, t_far, hit = ray_aabb(origins, dirs, BOX)
    assert hit.all()
    length = t_far - t_near
    # known chord lengths of the axis-aligned rays
    torch.testing.assert_close(
        length[-4:], torch.tensor([0.7, 0.7, 0.45 / 0.8, 0.7]), atol=1e-6, rtol=0
    )
    trans = torch.exp(-s * length)
    expected = colour * (1 - trans)[:, None] + bg * trans[:, None]
    torch.testing.assert_close(out["rgb"], expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(out["opacity"], 1 - trans, atol=1e-5, rtol=0)
    # Expected termination depth (not normalised): int_{t0}^{t1} t s exp(-s (t - t0)) dt.
    # Within a bin of width delta the exact mean position sits s delta^2 / 12 (to leading order)
    # before the midpoint; perturbed bins are at most 2 L / S wide, hence the tolerance.
    exact_depth = t_near * (1 - trans) + (1 - trans) / s - length * trans
    if n_samples > 1:
        tol = s * length**2 / (2 * n_samples**2) + 1e-5
        assert ((out["depth"] - exact_depth).abs() <= tol).all()


def test_ray_aabb_matches_dense_marching():
    origins, dirs = rays_towards_box(50, BOX, seed=3)
    # add random rays that mostly miss
    g = torch.Generator().manual_seed(4)
    origins = torch.cat([origins, torch.randn(50, 3, generator=g)])
    d = torch.randn(50, 3, generator=g)
    dirs = torch.cat([dirs, d / d.norm(dim=-1, keepdim=True)])
    t_near, t_far, hit = ray_aabb(origins, dirs, BOX)
    step = 1e-3
    t = torch.arange(0, 8, step, dtype=torch.float64)
    pts = origins.double()[:, None] + dirs.double()[:, None] * t[:, None]
    ins = inside(pts, BOX, eps=0.0)  # [R, T]
    assert torch.equal(ins.any(dim=1), hit)
    first = torch.where(ins, t, torch.inf).amin(dim=1)
    last = torch.where(ins, t, -torch.inf).amax(dim=1)
    assert (first[hit] - t_near[hit].double()).abs().max() <= step + 1e-6
    assert (last[hit] - t_far[hit].double()).abs().max() <= step + 1e-6
    assert (t_near[~hit] == 0).all() and (t_far[~hit] == 0).all()


def test_ray_aabb_zero_direction_components_are_exact():
    o = torch.tensor(
        [
            [0.4, 0.0, -3.0],  # x exactly on the max face, moving along z: inside slab
            [0.5, 0.0, -3.0],  # parallel to x slab but outside it: miss
            [0.0, 0.0, 0.0],
        ]
    )  # inside, moving along -y
    d = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
    t_near, t_far, hit = ray_aabb(o, d, BOX)
    assert torch.isfinite(t_near).all() and torch.isfinite(t_far).all()
    assert hit.tolist() == [True, False, True]
    torch.testing.assert_close(t_near[[0, 2]], torch.tensor([2.8, 0.0]))
    torch.testing.assert_close(t_far[[0, 2]], torch.tensor([3.5, 0.5]))


# --------------------------------------------------------------------------------------------
# 2. constant-density ball: compare with the closed-form chord length per pixel


def test_constant_density_ball_matches_closed_form():
    centre, radius, s = torch.tensor([0.1, -0.05, 0.05]), 0.45, 4.0
    colour, bg = torch.tensor([0.2, 0.5, 0.9]), 1.0

    def ball(x):
        sigma = s * ((x - centre).norm(dim=-1) < radius).to(x.dtype)
        return sigma, colour.expand(x.shape[0], 3)

    eye = torch.tensor([2.0, 1.2, 0.9])
    cam = Camera.from_fov(look_at(eye), 33, 33, 40.0)
    n_samples = 512
    image = render_image(ball, cam, n_samples=n_samples, background=bg)
    origins, dirs = camera_rays(cam)
    to_c = centre - origins
    dist = (to_c - (to_c * dirs).sum(-1, keepdim=True) * dirs).norm(dim=-1)
    chord = 2 * torch.sqrt((radius**2 - dist**2).clamp_min(0))
    trans = torch.exp(-s * chord)
    expected = (colour * (1 - trans)[:, None] + bg * trans[:, None]).reshape(33, 33, 3)
    assert (chord > 0).sum() > 150  # the ball covers a good part of the image
    # Midpoint sampling with step delta counts the chord length to within one step:
    # |L_est - L| <= delta, and d colour / dL = s |c - bg| exp(-sL) <= s |c - bg|, so the error
    # per channel is at most s * |c - bg| * delta, with delta = longest box chord / n_samples.
    t_near, t_far, _ = ray_aabb(origins, dirs, DEFAULT_AABB)
    delta = (t_far - t_near).max() / n_samples
    tol = s * (colour - bg).abs() * delta + 1e-5  # ~ 0.013 for the red channel
    err = (image - expected).abs().reshape(-1, 3)
    assert (err <= tol).all(), f"max error {err.max(0).values} > {tol}"
    # most pixels are far more accurate than the worst case (errors are not systematic)
    assert err.mean() < 0.1 * tol.max()


# --------------------------------------------------------------------------------------------
# 3. rays missing the box: background, and the field is never queried for them


def test_missing_rays_get_background_and_are_not_queried():
    field = CountingField(3.0, [0.2, 0.3, 0.4])
    o_hit, d_hit = rays_towards_box(20, BOX, seed=5)
    o_miss = torch.tensor([[3.0, 0.0, 0.0], [0.0, 3.0, 0.0], [2.0, 2.0, 2.0], [0.0, 0.0, -3.0]])
    d_miss = torch.tensor(
        [
            [1.0, 0.0, 0.0],  # pointing away
            [1.0, 0.0, 0.0],  # passing beside
            [0.6, 0.0, 0.8],  # box behind
            [0.0, 0.8, 0.6],
        ]
    )  # passing beside, oblique
    origins, dirs = torch.cat([o_hit, o_miss]), torch.cat([d_hit, d_miss])
    n_samples, bg = 24, torch.tensor([0.25, 0.5, 0.75])
    out = render_rays(field, origins, dirs, aabb=BOX, n_samples=n_samples, background=bg)
    assert out["hit"].tolist() == [True] * 20 + [False] * 4
    assert field.n_points == 20 * n_samples
    assert inside(torch.cat(field.calls), BOX, eps=1e-6).all()
    assert torch.equal(out["rgb"][20:], bg.expand(4, 3))
    assert (out["opacity"][20:] == 0).all() and (out["depth"][20:] == 0).all()
    assert (out["opacity"][:20] > 0).all()

    field.calls.clear()
    out = render_rays(field, o_miss, d_miss, aabb=BOX, n_samples=n_samples, background=bg)
    assert field.calls == [] and torch.equal(out["rgb"], bg.expand(4, 3))


def test_field_aabb_attribute_is_used_and_explicit_aabb_overrides():
    class Boxed(CountingField):
        aabb = torch.tensor(BOX)

    field = Boxed(1.0, [0.5, 0.5, 0.5])
    origins, dirs = rays_towards_box(10, DEFAULT_AABB, seed=6)
    render_rays(field, origins, dirs, n_samples=8)
    assert inside(torch.cat(field.calls), BOX, eps=1e-6).all()
    field.calls.clear()
    render_rays(field, origins, dirs, aabb=DEFAULT_AABB, n_samples=8)
    assert not inside(torch.cat(field.calls), BOX, eps=1e-6).all()


# --------------------------------------------------------------------------------------------
# 4. chunking does not change the result, and bounds the points per call


def wavy_field(x):
    sigma = 5 * torch.relu(torch.sin(3 * x[:, 0]) + torch.cos(2 * x[:, 1]) + x[:, 2])
    rgb = torch.sigmoid(torch.stack([x[:, 0] * 4, x[:, 1] * x[:, 2], x.sum(-1)], dim=-1))
    return sigma, rgb


@pytest.mark.parametrize("n_samples", [32, 128])  # 128 > chunk: rays split across calls
def test_chunk_invariance(n_samples):
    origins, dirs = rays_towards_box(150, DEFAULT_AABB, seed=7)
    sizes: list[int] = []

    def recording(x):
        sizes.append(x.shape[0])
        return wavy_field(x)

    small = render_rays(recording, origins, dirs, n_samples=n_samples, chunk=97)
    assert max(sizes) <= 97 and sum(sizes) == 150 * n_samples
    big = render_rays(wavy_field, origins, dirs, n_samples=n_samples, chunk=10**6)
    for key in ("rgb", "opacity", "depth"):
        torch.testing.assert_close(small[key], big[key], atol=1e-6, rtol=0)


# --------------------------------------------------------------------------------------------
# 5. gradients flow through rendering


class TinyField(nn.Module):
    def __init__(self):
        super().__init__()
        self.raw_sigma = nn.Parameter(torch.tensor(0.5))
        self.rgb_logit = nn.Parameter(torch.tensor([0.1, -0.2, 0.3]))
        self.register_buffer("aabb", torch.tensor(DEFAULT_AABB))

    def forward(self, x):
        sigma = nn.functional.softplus(self.raw_sigma) * torch.ones_like(x[:, 0])
        return sigma, torch.sigmoid(self.rgb_logit).expand(x.shape[0], 3)


def test_gradients_through_rendered_image():
    field = TinyField()
    cam = orbit_cameras(1, height=8, width=8)[0]
    image = render_image(field, cam, n_samples=16, requires_grad=True, chunk=50)
    loss = ((image - 0.3) ** 2).mean()
    loss.backward()
    for p in field.parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and (p.grad != 0).all()
    with torch.no_grad():
        origins, dirs = camera_rays(cam)
        out = render_rays(field, origins, dirs, n_samples=16, perturb=True)
    assert not out["rgb"].requires_grad
    assert not render_image(field, cam, n_samples=4).requires_grad


def test_gradcheck_render_rays_double():
    origins, dirs = rays_towards_box(4, DEFAULT_AABB, seed=8)
    origins, dirs = origins.double(), dirs.double()

    def render(sigma_scale, colour):
        def fn(x):
            sigma = sigma_scale * (1 + x[:, 0] ** 2)
            return sigma, colour.expand(x.shape[0], 3) * (0.5 + 0.1 * x[:, 1:2])

        return render_rays(fn, origins, dirs, n_samples=8, chunk=5)["rgb"]

    params = (
        torch.tensor(1.3, dtype=torch.float64, requires_grad=True),
        torch.tensor([0.2, 0.4, 0.6], dtype=torch.float64, requires_grad=True),
    )
    assert torch.autograd.gradcheck(render, params)


def test_composite_is_stable_for_extreme_densities():
    sigma = torch.tensor([[0.0, 1e30, 5.0], [0.0, 0.0, 0.0]])
    rgb = torch.full((2, 3, 3), 0.5)
    deltas = torch.full((2, 3), 0.1)
    out = composite(sigma, rgb, deltas, background=0.0)
    assert torch.isfinite(out["rgb"]).all() and torch.isfinite(out["weights"]).all()
    torch.testing.assert_close(out["opacity"], torch.tensor([1.0, 0.0]))
    torch.testing.assert_close(out["weights"][0], torch.tensor([0.0, 1.0, 0.0]))


def test_stratified_t_tiles_interval():
    t_near, t_far = torch.tensor([0.0, 1.0, 2.0]), torch.tensor([1.0, 1.5, 4.0])
    for perturb in (False, True):
        t = stratified_t(t_near, t_far, 10, perturb, torch.Generator().manual_seed(0))
        assert t.shape == (3, 11)
        assert torch.equal(t[:, 0], t_near) and torch.equal(t[:, -1], t_far)
        assert (t.diff(dim=-1) >= 0).all()
    jittered = stratified_t(t_near, t_far, 10, True, torch.Generator().manual_seed(0))
    assert not torch.equal(jittered, stratified_t(t_near, t_far, 10, False))


# --------------------------------------------------------------------------------------------
# 6. cameras and rays


def test_look_at_camera_centre_pixel_points_at_target():
    eye, target = torch.tensor([2.0, -1.0, 0.8]), torch.tensor([0.1, 0.2, -0.1])
    c2w = look_at(eye, target)
    rot = c2w[:3, :3]
    torch.testing.assert_close(rot.T @ rot, torch.eye(3), atol=1e-6, rtol=0)
    assert torch.linalg.det(rot) > 0.999
    cam = Camera.from_fov(c2w, 31, 41, 50.0)
    origins, dirs = camera_rays(cam)
    assert origins.shape == dirs.shape == (31 * 41, 3)
    torch.testing.assert_close(dirs.norm(dim=-1), torch.ones(31 * 41))
    centre_dir = dirs[15 * 41 + 20]
    torch.testing.assert_close(centre_dir, (target - eye) / (target - eye).norm())
    # row-major, row 0 at the top: the top-right pixel looks right (+x) and up (+y) in camera space
    top_right = rot.T @ dirs[40]
    assert top_right[0] > 0 and top_right[1] > 0 and top_right[2] < 0
    # image up is the projection of world +z
    assert c2w[2, 1] > 0


def test_camera_rays_reproject_to_their_pixels():
    cam = Camera(
        look_at(torch.tensor([0.5, 2.0, 1.0])),
        fx=30.0,
        fy=25.0,
        cx=11.0,
        cy=8.5,
        height=17,
        width=23,
    )
    origins, dirs = camera_rays(cam)
    uv, depth = project(cam, origins + 1.7 * dirs)
    rows, cols = torch.meshgrid(torch.arange(17.0), torch.arange(23.0), indexing="ij")
    expected = torch.stack([cols + 0.5, rows + 0.5], dim=-1).reshape(-1, 2)
    torch.testing.assert_close(uv, expected, atol=1e-4, rtol=0)
    assert (depth > 0).all()


@pytest.mark.parametrize("z", [3.0, -3.0])
def test_look_at_eye_parallel_to_up_falls_back(z):
    c2w = look_at(torch.tensor([0.0, 0.0, z]))
    assert torch.isfinite(c2w).all()
    rot = c2w[:3, :3]
    torch.testing.assert_close(rot.T @ rot, torch.eye(3), atol=1e-6, rtol=0)
    assert torch.linalg.det(rot) > 0.999
    torch.testing.assert_close(-rot[:, 2], torch.tensor([0.0, 0.0, -math.copysign(1.0, z)]))


def test_orbit_cameras_evenly_spaced():
    cams = orbit_cameras(
        8, radius=2.5, elevation_deg=30.0, height=16, width=16, azimuth_offset_deg=10.0
    )
    pos = torch.stack([c.c2w[:3, 3] for c in cams])
    torch.testing.assert_close(pos.norm(dim=-1), torch.full((8,), 2.5))
    torch.testing.assert_close(torch.rad2deg(torch.asin(pos[:, 2] / 2.5)), torch.full((8,), 30.0))
    az = torch.rad2deg(torch.atan2(pos[:, 1], pos[:, 0]))
    expected = torch.tensor([10.0 + 45.0 * k for k in range(8)])
    torch.testing.assert_close(
        torch.remainder(az - expected + 180, 360) - 180, torch.zeros(8), atol=1e-4, rtol=0
    )


def test_eval_cameras_fixed_distinct_and_see_the_whole_box():
    cams = eval_cameras(64, 64)
    assert len(cams) == 4 == len(EVAL_VIEWS)
    pos = torch.stack([c.c2w[:3, 3] for c in cams])
    assert torch.cdist(pos, pos).add(torch.eye(4) * 10).min() > 0.5
    assert all(torch.equal(a.c2w, b.c2w) for a, b in zip(cams, eval_cameras(64, 64), strict=True))
    assert (pos[:, 2] > 0).sum() == 2 and (pos[:, 2] < 0).sum() == 2
    corners = box_corners(DEFAULT_AABB)
    for cam in cams:
        uv, depth = project(cam, corners)
        assert (depth > 0).all()
        assert ((uv >= 0) & (uv <= torch.tensor([cam.width, cam.height]))).all(), uv


# --------------------------------------------------------------------------------------------
# 7. metrics, image files, input validation


def test_psnr_values():
    img = torch.rand(4, 5, 3)
    assert psnr(img, img) == math.inf
    target = torch.full((6, 7, 3), 0.5, dtype=torch.float64)
    assert abs(float(psnr(target + 0.1, target)) - 20.0) < 1e-9
    assert abs(float(psnr(target.float() + 0.1, target.float())) - 20.0) < 1e-4
    assert abs(float(psnr(target * 2 + 0.2, target * 2, max_val=2.0)) - 20.0) < 1e-9
    torch.testing.assert_close(mse(target + 0.1, target), torch.tensor(0.01, dtype=torch.float64))
    batch = torch.stack([target + 0.1, target + 0.01, target])
    per = psnr_per_image(batch, target.expand(3, -1, -1, -1))
    torch.testing.assert_close(per[:2], torch.tensor([20.0, 40.0], dtype=torch.float64))
    assert per[2] == math.inf


def test_save_png_roundtrip_and_atomic(tmp_path):
    from PIL import Image

    img = torch.rand(5, 7, 3)
    path = save_png(img, tmp_path / "sub" / "img.png")
    assert os.listdir(tmp_path / "sub") == ["img.png"]
    with Image.open(path) as f:
        assert f.format == "PNG" and f.mode == "RGB" and f.size == (7, 5)
        back = np.asarray(f).astype(np.float32) / 255
    assert np.abs(back - img.numpy()).max() <= 0.5 / 255 + 1e-6
    with pytest.raises(ValueError, match=r"\[H, W, 3\]"):
        save_png(torch.rand(5, 7), tmp_path / "bad.png")
    with pytest.raises(ValueError, match="NaN"):
        save_png(torch.full((2, 2, 3), float("nan")), tmp_path / "bad.png")
    assert sorted(os.listdir(tmp_path)) == ["sub"]


def test_image_grid_layout():
    imgs = [torch.full((4, 5, 3), v) for v in (0.1, 0.2, 0.3)]
    grid = image_grid(imgs, ncols=2, pad=1, pad_value=0.9)
    assert grid.shape == (2 * 5 + 1, 2 * 6 + 1, 3)
    assert torch.equal(grid[1:5, 1:6], imgs[0])
    assert torch.equal(grid[1:5, 7:12], imgs[1])
    assert torch.equal(grid[6:10, 1:6], imgs[2])
    assert (grid[6:10, 7:12] == 0.9).all() and (grid[0] == 0.9).all() and (grid[5] == 0.9).all()


def test_save_labeled_grid(tmp_path):
    from PIL import Image

    imgs = [torch.rand(8, 8, 3) for _ in range(3)]
    path = save_labeled_grid(imgs, ["a", "b", "c"], tmp_path / "grid.png", ncols=2)
    assert os.listdir(tmp_path) == ["grid.png"]
    with Image.open(path) as f:
        assert f.format == "PNG" and f.size[0] > 0
    with pytest.raises(ValueError, match="label"):
        save_labeled_grid(imgs, ["a"], tmp_path / "g2.png", ncols=2)


def test_bad_inputs_raise_helpful_errors():
    with pytest.raises(ValueError, match=r"c2w.*\[4, 4\]"):
        Camera(torch.eye(3), 10.0, 10.0, 5.0, 5.0, 10, 10)
    with pytest.raises(ValueError, match="height"):
        Camera(torch.eye(4), 10.0, 10.0, 5.0, 5.0, 0, 10)
    with pytest.raises(ValueError, match="fov_deg"):
        Camera.from_fov(torch.eye(4), 8, 8, 180.0)
    with pytest.raises(ValueError, match="eye and target"):
        look_at(torch.zeros(3))
    o, d = torch.zeros(2, 3), torch.tensor([[1.0, 0, 0], [0, 1.0, 0]])
    with pytest.raises(ValueError, match="n_samples"):
        render_rays(wavy_field, o, d, n_samples=0)
    with pytest.raises(ValueError, match="chunk"):
        render_rays(wavy_field, o, d, chunk=0)
    with pytest.raises(ValueError, match="aabb.*min < max"):
        render_rays(wavy_field, o, d, aabb=(0, 0, 0, 1, -1, 1))
    with pytest.raises(ValueError, match="aabb.*6 values"):
        ray_aabb(o, d, (0, 0, 1, 1))
    with pytest.raises(ValueError, match="directions"):
        render_rays(wavy_field, o, d[:1])
    with pytest.raises(ValueError, match="rgb"):
        render_rays(lambda x: (x[:, 0], x[:, :2]), o, d)
    with pytest.raises(ValueError, match="same shape"):
        psnr(torch.zeros(2, 3), torch.zeros(3, 3))
    with pytest.raises(ValueError, match="max_val"):
        psnr(torch.zeros(2, 3), torch.zeros(2, 3), max_val=0.0)
