"""Empty-space skipping: the occupancy grid, the skipping marcher, and agreement with the plain
renderer on fields of known density and on fitted fields of every training family."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from graphnerf.render import (
    DEFAULT_AABB,
    Camera,
    OccupancyGrid,
    camera_rays,
    cell_max_density,
    grid_for,
    look_at,
    occupied_at,
    psnr,
    render_image,
    render_rays,
    skip_threshold,
)

torch.set_num_threads(1)

BOX = torch.tensor(DEFAULT_AABB)
DIAGONAL = 1.4 * math.sqrt(3.0)


class Counting:
    """Wraps ``fn`` and records every queried point."""

    def __init__(self, fn, aabb=DEFAULT_AABB):
        self.fn, self.aabb, self.calls = fn, torch.as_tensor(aabb), []

    def __call__(self, x):
        self.calls.append(x.detach().clone())
        return self.fn(x)

    @property
    def points(self) -> torch.Tensor:
        return torch.cat(self.calls) if self.calls else torch.zeros(0, 3)


def rays_through_box(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit rays from a sphere of radius 2.5 towards random points of the default box."""
    g = torch.Generator().manual_seed(seed)
    origins = torch.randn(n, 3, generator=g)
    origins = 2.5 * origins / origins.norm(dim=-1, keepdim=True)
    targets = (torch.rand(n, 3, generator=g) - 0.5) * 1.4
    d = targets - origins
    return origins, d / d.norm(dim=-1, keepdim=True)


def ball(centre, radius: float, density: float, colour, fog: float = 0.0, fog_colour=(0, 0, 0)):
    """Density ``density`` in a ball (``fog`` elsewhere), constant colours."""
    centre, colour = torch.as_tensor(centre), torch.as_tensor(colour)
    fog_colour = torch.tensor(fog_colour, dtype=torch.float32)

    def fn(x):
        inside = (x - centre.to(x)).norm(dim=-1) < radius
        sigma = torch.where(
            inside, torch.full_like(x[:, 0], density), torch.full_like(x[:, 0], fog)
        )
        rgb = torch.where(inside[:, None], colour.to(x), fog_colour.to(x)).expand(x.shape[0], 3)
        return sigma, rgb

    return fn


def cell_centres(res: int) -> torch.Tensor:
    ticks = (torch.arange(res) + 0.5) / res
    g = torch.stack(torch.meshgrid(ticks, ticks, ticks, indexing="ij"), -1).reshape(-1, 3)
    return BOX[:3] + (BOX[3:] - BOX[:3]) * g


# --------------------------------------------------------------------------------------------
# the grid


def test_skip_threshold_is_the_opacity_bound_over_the_longest_chord():
    thr = skip_threshold(DEFAULT_AABB, 1e-3)
    assert thr == pytest.approx(-math.log(1 - 1e-3) / DIAGONAL, rel=1e-7)
    # the most a ray can lose: density thr over the box diagonal
    assert 1 - math.exp(-thr * DIAGONAL) == pytest.approx(1e-3, rel=1e-6)
    with pytest.raises(ValueError, match="tolerance"):
        skip_threshold(DEFAULT_AABB, 1.0)


@pytest.mark.parametrize("coarse", [False, True])
def test_grid_marks_exactly_the_ball_up_to_the_dilation(coarse):
    centre, radius, res = torch.tensor([0.12, -0.2, 0.05]), 0.3, 32
    grid = OccupancyGrid(DEFAULT_AABB, res).update(
        ball(centre, radius, 5.0, (1, 0, 0)), dilation=1, coarse=coarse
    )
    dist = (cell_centres(res) - centre).norm(dim=-1).reshape(res, res, res)
    cell = 1.4 / res
    assert grid.bits[dist < radius].all()  # every cell centred inside the ball
    # nothing farther than the ball plus half a cell diagonal plus the one-cell dilation
    assert not grid.bits[dist > radius + cell * (math.sqrt(3) / 2 + math.sqrt(3))].any()
    assert 0.005 < grid.occupied_fraction < 0.1
    assert grid.threshold == pytest.approx(skip_threshold(DEFAULT_AABB))


def test_cell_max_density_is_the_max_over_corners_and_centre():
    res = 4
    # density = x coordinate shifted to be positive: the max of a cell is at its +x face
    dens = cell_max_density(lambda x: (x[:, 0] + 1.0, x), DEFAULT_AABB, res)
    lo, cell = -0.7, 1.4 / res
    expected = torch.tensor([lo + cell * (i + 1) + 1.0 for i in range(res)])
    torch.testing.assert_close(dens, expected[:, None, None].expand(res, res, res))
    only = torch.zeros(res, res, res, dtype=torch.bool)
    only[1, 2, 3] = True
    calls = Counting(lambda x: (x[:, 0] + 1.0, x))
    masked = cell_max_density(calls, DEFAULT_AABB, res, cells=only)
    assert calls.points.shape[0] == 8 + 1  # its corners and its centre, nothing else
    assert masked[1, 2, 3] == expected[1] and masked.count_nonzero() == 1


def test_occupied_at_maps_points_to_their_cells():
    bits = torch.zeros(4, 4, 4, dtype=torch.bool)
    bits[3, 0, 2] = True
    x = torch.tensor(
        [[0.6, -0.6, 0.1], [0.6, -0.6, -0.1], [0.69, -0.69, 0.3], [2.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
    )
    assert occupied_at(bits, BOX, x).tolist() == [True, False, True, True, False]


def test_update_decay_keeps_a_running_max():
    grid = OccupancyGrid(DEFAULT_AABB, 8)
    assert grid.bits.all()  # unbuilt: skips nothing
    grid.update(ball((0, 0, 0), 0.3, 5.0, (1, 0, 0)))
    before = grid.bits.clone()
    grid.update(lambda x: (torch.zeros_like(x[:, 0]), x), decay=0.5)
    assert torch.equal(grid.bits, before)  # half of 5 is still far above the threshold
    grid.update(lambda x: (torch.zeros_like(x[:, 0]), x))
    assert not grid.bits.any()


# --------------------------------------------------------------------------------------------
# the marcher against the plain renderer


def test_skipped_fog_below_the_threshold_changes_colour_by_at_most_the_tolerance():
    tol = 1e-3
    fog = 0.9 * skip_threshold(DEFAULT_AABB, tol)
    fn = ball((0.1, 0.0, -0.1), 0.25, 40.0, (1.0, 0.2, 0.1), fog=fog)
    grid = OccupancyGrid(DEFAULT_AABB, 32).update(fn, tolerance=tol)
    assert grid.occupied_fraction < 0.1  # the fog was not kept
    origins, dirs = rays_through_box(400)
    plain = render_rays(fn, origins, dirs, n_samples=96)
    fast = render_rays(fn, origins, dirs, n_samples=96, occupancy=grid, early_stop=0.0)
    diff = (fast["rgb"] - plain["rgb"]).abs()
    assert diff.max() <= tol + 1e-6
    assert diff.max() > 0.3 * tol  # the fog really was skipped (black fog on white)
    assert (fast["opacity"] - plain["opacity"]).abs().max() <= tol + 1e-6


def test_only_occupied_cells_are_queried_and_the_result_is_the_plain_one():
    fn = ball((-0.2, 0.15, 0.0), 0.3, 6.0, (0.2, 0.6, 0.9))
    grid = OccupancyGrid(DEFAULT_AABB, 32).update(fn)
    origins, dirs = rays_through_box(300, seed=1)
    plain_fn, fast_fn = Counting(fn), Counting(fn)
    plain = render_rays(plain_fn, origins, dirs, n_samples=128, chunk=1000)
    fast = render_rays(
        fast_fn, origins, dirs, n_samples=128, chunk=1000, occupancy=grid, early_stop=0.0
    )
    # skipped samples have density exactly 0 here, so the sums are the same
    for key in ("rgb", "opacity", "depth"):
        torch.testing.assert_close(fast[key], plain[key], atol=1e-5, rtol=0)
    assert occupied_at(grid.bits, grid.aabb, fast_fn.points).all()
    assert max(c.shape[0] for c in fast_fn.calls) <= 1000
    assert fast_fn.points.shape[0] < 0.3 * plain_fn.points.shape[0]


def test_early_termination_stops_opaque_rays():
    fn = ball((0.0, 0.0, 0.0), 0.5, 200.0, (0.3, 0.3, 0.3))  # opaque after ~0.05 units
    grid = OccupancyGrid(DEFAULT_AABB, 32).update(fn)
    origins, dirs = rays_through_box(200, seed=2)
    plain = render_rays(fn, origins, dirs, n_samples=128)
    kept, stopped = Counting(fn), Counting(fn)
    full = render_rays(kept, origins, dirs, n_samples=128, occupancy=grid, early_stop=0.0)
    cut = render_rays(stopped, origins, dirs, n_samples=128, occupancy=grid, early_stop=1e-3)
    assert (cut["rgb"] - plain["rgb"]).abs().max() <= 1e-3
    torch.testing.assert_close(full["rgb"], plain["rgb"], atol=1e-5, rtol=0)
    assert stopped.points.shape[0] < 0.5 * kept.points.shape[0]


def test_gradients_flow_through_the_skipping_path():
    origins, dirs = rays_through_box(6, seed=3)
    origins, dirs = origins.double(), dirs.double()
    centre = torch.tensor([0.05, -0.05, 0.0], dtype=torch.float64)

    def field(scale, colour):
        def fn(x):
            sigma = scale * torch.relu(0.4 - (x - centre).norm(dim=-1)) * 10
            return sigma, colour.expand(x.shape[0], 3) * (0.5 + 0.2 * x[:, :1])

        return fn

    one = torch.tensor(1.0, dtype=torch.float64)
    grid = OccupancyGrid(BOX.double(), 16).update(field(one, one.expand(3)))
    assert 0 < grid.occupied_fraction < 0.5

    def render(scale, colour):
        fn = field(scale, colour)
        return render_rays(fn, origins, dirs, n_samples=24, occupancy=grid, segment=5)["rgb"]

    params = (
        torch.tensor(1.3, dtype=torch.float64, requires_grad=True),
        torch.tensor([0.2, 0.4, 0.6], dtype=torch.float64, requires_grad=True),
    )
    assert torch.autograd.gradcheck(render, params)


class Blob(nn.Module):
    """A learnable soft ball: a module field, so that grids are cached for it."""

    def __init__(self):
        super().__init__()
        self.log_density = nn.Parameter(torch.tensor(2.0))
        self.register_buffer("aabb", BOX.clone())

    def forward(self, x):
        r = x.norm(dim=-1)
        sigma = self.log_density.exp() * torch.sigmoid((0.35 - r) / 0.02)
        return sigma, torch.sigmoid(x * 4)


def test_grid_for_reuses_a_module_grid_until_its_parameters_change():
    field = Blob()
    grid = grid_for(field, BOX)
    assert grid_for(field, BOX) is grid
    field.log_density.data.add_(1.0)  # an in-place change that leaves version counters alone
    assert grid_for(field, BOX) is not grid
    assert grid_for(field, BOX) is grid_for(field, BOX)
    assert grid_for(field, BOX * 0.5) is not grid_for(field, BOX)
    fn = ball((0, 0, 0), 0.3, 5.0, (1, 0, 0))
    assert grid_for(fn, BOX) is not grid_for(fn, BOX)  # plain callables: always fresh


def queries_and_image(field: nn.Module, cam: Camera, **kw) -> tuple[int, torch.Tensor]:
    """Points ``field`` is queried at by ``render_image`` (64 samples), and the image."""
    seen: list[int] = []
    handle = field.register_forward_pre_hook(lambda m, args: seen.append(args[0].shape[0]))
    try:
        image = render_image(field, cam, n_samples=64, **kw)
    finally:
        handle.remove()
    return sum(seen), image


def test_render_image_skips_by_default_and_not_when_differentiating():
    field = Blob()
    cam = Camera.from_fov(look_at((1.6, 0.8, 0.6)), 24, 24, 50.0)
    grid_for(field, BOX)  # built once, outside the counts below
    counts, images = {}, {}
    for name, kw in {"default": {}, "plain": {"occupancy": False}}.items():
        counts[name], images[name] = queries_and_image(field, cam, **kw)
    assert counts["default"] < 0.5 * counts["plain"]
    assert float(psnr(images["default"], images["plain"])) > 50
    out = render_image(field, cam, n_samples=16, requires_grad=True)
    out.mean().backward()
    assert field.log_density.grad is not None


def test_progress_lines_on_a_long_render(monkeypatch, capsys):
    import graphnerf.progress as progress

    clock = iter(range(0, 10**6, 100))
    monkeypatch.setattr(progress, "_now", lambda: float(next(clock)))
    monkeypatch.setenv("GRAPHNERF_PROGRESS", "plain")
    origins, dirs = rays_through_box(50, seed=4)
    fn = ball((0, 0, 0), 0.3, 5.0, (1, 0, 0))
    render_rays(fn, origins, dirs, n_samples=64, occupancy=True, segment=8, progress=True)
    err = capsys.readouterr().err
    assert "render: " in err and "/8 step" in err and "\x1b" not in err and "\r" not in err


def test_bad_skipping_arguments_raise():
    o, d = rays_through_box(2)
    fn = ball((0, 0, 0), 0.3, 5.0, (1, 0, 0))
    with pytest.raises(ValueError, match="occupancy"):
        render_rays(fn, o, d, occupancy="yes")
    with pytest.raises(ValueError, match="early_stop"):
        render_rays(fn, o, d, occupancy=True, early_stop=1.0)
    with pytest.raises(ValueError, match="segment"):
        render_rays(fn, o, d, occupancy=True, segment=0)
    with pytest.raises(ValueError, match="resolution"):
        OccupancyGrid(DEFAULT_AABB, 0)
    with pytest.raises(ValueError, match="dilation"):
        OccupancyGrid(DEFAULT_AABB, 4).update(fn, dilation=-1)
    with pytest.raises(ValueError, match="decay"):
        OccupancyGrid(DEFAULT_AABB, 4).update(fn, decay=1.0)


# --------------------------------------------------------------------------------------------
# fitted fields of every training family: same image as the plain renderer


def framed_camera(scene, size: int) -> Camera:
    """A camera at (45, 20) degrees at the distance where the object fills most of the frame."""
    from graphnerf.render import eval_cameras

    ticks = (torch.arange(24) + 0.5) / 24
    g = torch.stack(torch.meshgrid(ticks, ticks, ticks, indexing="ij"), -1).reshape(-1, 3)
    x = BOX[:3] + (BOX[3:] - BOX[:3]) * g
    return eval_cameras(size, size, points=x[scene.occupancy(x)])[0]


FITS = [(arch, "chair", 100, 32) for arch in ("mlp", "triplane", "hash")] + [
    pytest.param(arch, cls, None, 96, marks=pytest.mark.slow)
    for arch in ("mlp", "triplane", "hash")
    for cls in ("lamp", "airplane")
]


@pytest.mark.parametrize(("arch", "cls", "steps", "size"), FITS)
def test_fitted_fields_render_the_same_with_skipping(arch, cls, steps, size):
    """Fields fitted to a procedural object (short fits by default, the default budget when
    slow): the skipping render matches the plain one, over the frame and on the object."""
    from graphnerf.fields import build_field
    from graphnerf.fit import distill
    from graphnerf.scenes import make_scene

    scene = make_scene(cls, 0)
    field = build_field(arch, seed=0)
    distill(field, scene, steps=steps, generator=torch.Generator().manual_seed(0))
    field.eval()
    cam = framed_camera(scene, size)
    origins, dirs = camera_rays(cam)
    with torch.no_grad():
        ref = render_rays(scene, origins, dirs, occupancy=False)
        plain_fn, fast_fn = Counting(field, field.aabb), Counting(field, field.aabb)
        plain = render_rays(plain_fn, origins, dirs, occupancy=False)
        grid = grid_for(field, field.aabb)
        fast = render_rays(fast_fn, origins, dirs, occupancy=grid)
    fg = (ref["opacity"] > 0.5) | (plain["opacity"] > 0.5)
    assert fg.float().mean() > 0.1  # the object, not a white frame, is what is compared

    def db(a, b, mask=slice(None)):
        return float(psnr(a["rgb"][mask], b["rgb"][mask]))

    assert abs(db(fast, ref) - db(plain, ref)) < 0.5
    assert abs(db(fast, ref, fg) - db(plain, ref, fg)) < 0.5
    assert db(fast, plain) > 40 and db(fast, plain, fg) > 40
    # the object fills the frame, so many samples are near it; speed is bench.py render's job
    assert fast_fn.points.shape[0] < plain_fn.points.shape[0] / 2
