"""Volume rendering of any callable ``fn(x [N, 3]) -> (sigma [N], rgb [N, 3])`` (pure torch).

The renderer never needs to know about fields (nerfacc style): ``x`` are world coordinates,
``sigma >= 0`` is volume density in 1 / world-unit and ``rgb`` is colour in [0, 1]. The quadrature
is the usual piecewise-constant one: along a ray the interval ``[t_near, t_far]`` inside the scene
box is split into bins, ``fn`` is evaluated at each bin midpoint and assumed constant over the bin.

Empty-space skipping (``occupancy=``, an :class:`~graphnerf.render.occupancy.OccupancyGrid`): the
bins are the same, but the rays are marched ``segment`` bins at a time and ``fn`` is evaluated
only at the bin midpoints that fall in occupied cells (packed into one flat batch with their ray
and bin indices); skipped bins count as density 0 in the same compositing sum. A ray stops
marching once its transmittance is below ``early_stop``. :func:`render_image` does this by
default, with a grid built from the field itself.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any

import torch
from torch import Tensor, nn

from .cameras import Camera
from .occupancy import OccupancyGrid, grid_for, occupied_at
from .rays import _check_rays, camera_rays, ray_aabb, resolve_aabb

__all__ = ["FieldFn", "composite", "render_image", "render_rays", "stratified_t"]

#: Anything mapping world points ``[N, 3]`` to ``(sigma [N], rgb [N, 3])``.
FieldFn = Callable[[Tensor], tuple[Tensor, Tensor]]


def _check_n_samples(n_samples: int) -> int:
    if isinstance(n_samples, bool) or int(n_samples) != n_samples or n_samples < 1:
        raise ValueError(f"n_samples must be an integer >= 1, got {n_samples!r}")
    return int(n_samples)


def stratified_t(
    t_near: Tensor,
    t_far: Tensor,
    n_samples: int,
    perturb: bool,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Bin edges splitting ``[t_near, t_far]`` of each ray into ``n_samples`` bins.

    Args:
        t_near, t_far: ``[R]`` interval ends (``t_far >= t_near``).
        n_samples: number of bins ``S >= 1``.
        perturb: if False the bins are uniform. If True every interior edge is moved uniformly at
            random between the centres of its two neighbouring uniform bins (nerfstudio-style
            stratified jitter): edges stay sorted and the first/last edges stay at t_near/t_far, so
            the bins still tile the interval exactly.
        generator: optional ``torch.Generator`` for the jitter (must be on the rays' device).

    Returns:
        ``t [R, S + 1]`` sorted bin edges, same dtype and device as ``t_near``.
    """
    n = _check_n_samples(n_samples)
    if t_near.ndim != 1 or t_far.shape != t_near.shape:
        raise ValueError(
            f"t_near and t_far must both have shape [R], got {list(t_near.shape)} and "
            f"{list(t_far.shape)}"
        )
    u = torch.linspace(0.0, 1.0, n + 1, dtype=t_near.dtype, device=t_near.device)
    span = (t_far - t_near)[:, None]
    edges = t_near[:, None] + span * u
    if perturb and n > 1:
        centres = 0.5 * (edges[:, 1:] + edges[:, :-1])  # [R, S]
        lower, upper = centres[:, :-1], centres[:, 1:]  # bounds of interior edges, [R, S - 1]
        jitter = torch.rand(
            lower.shape, dtype=t_near.dtype, device=t_near.device, generator=generator
        )
        interior = lower + (upper - lower) * jitter
        edges = torch.cat([edges[:, :1], interior, edges[:, -1:]], dim=-1)
    return edges


def _background(background: Tensor | float | Sequence[float], ref: Tensor) -> Tensor:
    bg = torch.as_tensor(background, dtype=ref.dtype, device=ref.device)
    if bg.ndim == 0:
        return bg.expand(3)
    if bg.shape[-1] != 3:
        raise ValueError(
            f"background must be a float or have 3 channels ([3] or [R, 3]), "
            f"got shape {list(bg.shape)}"
        )
    return bg


def composite(
    sigma: Tensor,
    rgb: Tensor,
    deltas: Tensor,
    background: Tensor | float | Sequence[float] = 1.0,
    t_mid: Tensor | None = None,
) -> dict[str, Tensor]:
    """Alpha-composite samples along rays.

    ``alpha_i = 1 - exp(-sigma_i delta_i)``, transmittance ``T_i = exp(-sum_{j<i} sigma_j delta_j)``
    (an exclusive cumulative sum in log space, which never divides and never underflows to NaN),
    weight ``w_i = T_i alpha_i``.

    Args:
        sigma: ``[R, S]`` densities (1 / world-unit); negative values are treated as 0.
        rgb: ``[R, S, 3]`` colours in [0, 1].
        deltas: ``[R, S]`` bin lengths (world units for unit-norm directions).
        background: float, ``[3]`` or ``[R, 3]`` colour seen through the remaining transmittance.
        t_mid: optional ``[R, S]`` sample distances used for depth; default is the distance of each
            bin centre from the first bin edge, ``cumsum(deltas) - deltas / 2``.

    Returns:
        dict with ``rgb [R, 3] = sum_i w_i c_i + (1 - opacity) * background``,
        ``opacity [R] = sum_i w_i``, ``depth [R] = sum_i w_i t_i`` (expected termination distance,
        not normalised by opacity, as in nerfacc) and ``weights [R, S]``.
    """
    if sigma.ndim != 2:
        raise ValueError(f"sigma must have shape [R, S], got {list(sigma.shape)}")
    if rgb.shape != (*sigma.shape, 3):
        raise ValueError(
            f"rgb must have shape [R, S, 3] = {[*sigma.shape, 3]}, got {list(rgb.shape)}"
        )
    if deltas.shape != sigma.shape:
        raise ValueError(
            f"deltas must have shape [R, S] = {list(sigma.shape)}, got {list(deltas.shape)}"
        )
    tau = sigma.clamp_min(0.0) * deltas  # optical thickness of each bin
    alpha = -torch.expm1(-tau)
    tau_before = torch.cat([torch.zeros_like(tau[:, :1]), torch.cumsum(tau[:, :-1], dim=-1)], -1)
    weights = torch.exp(-tau_before) * alpha
    opacity = weights.sum(dim=-1)
    if t_mid is None:
        t_mid = torch.cumsum(deltas, dim=-1) - 0.5 * deltas
    elif t_mid.shape != sigma.shape:
        raise ValueError(
            f"t_mid must have shape [R, S] = {list(sigma.shape)}, got {list(t_mid.shape)}"
        )
    depth = (weights * t_mid).sum(dim=-1)
    bg = _background(background, sigma)
    colour = (weights[..., None] * rgb).sum(dim=-2) + (1.0 - opacity)[:, None] * bg
    return {"rgb": colour, "opacity": opacity, "depth": depth, "weights": weights}


def _eval_points(fn: FieldFn, points: Tensor, chunk: int) -> tuple[Tensor, Tensor]:
    """Evaluate ``fn`` on ``points [P, 3]`` in calls of at most ``chunk`` points."""
    sigmas, rgbs = [], []
    for start in range(0, points.shape[0], chunk):
        x = points[start : start + chunk]
        sigma, rgb = fn(x)
        n = x.shape[0]
        if sigma.numel() != n:
            raise ValueError(f"fn must return sigma of shape [N] = [{n}], got {list(sigma.shape)}")
        if rgb.shape != (n, 3):
            raise ValueError(
                f"fn must return rgb of shape [N, 3] = [{n}, 3], got {list(rgb.shape)}"
            )
        sigmas.append(sigma.reshape(n))
        rgbs.append(rgb)
    if len(sigmas) == 1:
        return sigmas[0], rgbs[0]
    return torch.cat(sigmas), torch.cat(rgbs)


#: Rays marched together by the empty-space-skipping path (bounds its memory to ~50 MB).
MARCH_GROUP_RAYS = 1 << 16


def _progress_bar(total: int, enabled: bool, desc: str) -> AbstractContextManager[Any]:
    """A progress indicator over ``total`` steps (:func:`graphnerf.progress.progress`: a bar
    on a terminal, plain periodic lines in a log)."""
    from ..progress import progress

    return progress(total=total, desc=desc, unit="step", disable=not enabled, leave=False)


def _check_int(name: str, value: int, low: int) -> int:
    if isinstance(value, bool) or int(value) != value or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def _march(
    fn: FieldFn,
    origins: Tensor,
    directions: Tensor,
    edges: Tensor,
    grid: OccupancyGrid,
    render_box: Tensor,
    background: Tensor,
    chunk: int,
    early_stop: float,
    segment: int,
    bar: Any,
) -> dict[str, Tensor]:
    """Composite rays ``[G]`` over bins ``edges [G, S + 1]``, querying ``fn`` only in occupied
    cells, ``segment`` bins at a time, dropping rays whose transmittance falls below
    ``early_stop``. Same sum as :func:`composite` with density 0 at skipped bins."""
    n_rays, n_bins = edges.shape[0], edges.shape[1] - 1
    dtype, device = origins.dtype, origins.device
    colour = torch.zeros(n_rays, 3, dtype=dtype, device=device)
    opacity = torch.zeros(n_rays, dtype=dtype, device=device)
    depth = torch.zeros(n_rays, dtype=dtype, device=device)
    tau = torch.zeros(n_rays, dtype=dtype, device=device)  # optical depth marched so far
    alive = torch.arange(n_rays, device=device)
    bits, box = grid.bits.to(device), grid.aabb.to(device, dtype)
    # bins never leave the render box; when that lies in the grid's box, skip the outside test
    inside = bool((render_box[:3] >= box[:3]).all() and (render_box[3:] <= box[3:]).all())
    for s0 in range(0, n_bins, segment):
        bar.update(1)
        if alive.numel() == 0:
            continue
        e = edges[alive, s0 : s0 + segment + 1]  # [A, k + 1]
        t_mid = 0.5 * (e[:, 1:] + e[:, :-1])
        deltas = e[:, 1:] - e[:, :-1]
        n_alive, k = t_mid.shape
        points = origins[alive, None, :] + directions[alive, None, :] * t_mid[..., None]
        points = points.reshape(-1, 3)
        packed = torch.nonzero(occupied_at(bits, box, points, inside)).squeeze(-1)  # [ray, bin]
        sigma = torch.zeros(n_alive * k, dtype=dtype, device=device)
        rgb = torch.zeros(n_alive * k, 3, dtype=dtype, device=device)
        if packed.numel():
            s_packed, c_packed = _eval_points(fn, points[packed], chunk)
            sigma = sigma.index_put((packed,), s_packed.to(dtype))
            rgb = rgb.index_put((packed,), c_packed.to(dtype))
        tau_bins = sigma.reshape(n_alive, k).clamp_min(0.0) * deltas
        alpha = -torch.expm1(-tau_bins)
        tau_before = tau[alive, None] + torch.cumsum(tau_bins, dim=-1) - tau_bins
        weights = torch.exp(-tau_before) * alpha
        colour = colour.index_add(
            0, alive, (weights[..., None] * rgb.reshape(n_alive, k, 3)).sum(1)
        )
        opacity = opacity.index_add(0, alive, weights.sum(-1))
        depth = depth.index_add(0, alive, (weights * t_mid).sum(-1))
        tau_end = tau_before[:, -1] + tau_bins[:, -1]
        tau = tau.index_copy(0, alive, tau_end)
        if early_stop > 0:
            alive = alive[torch.exp(-tau_end.detach()) >= early_stop]
    colour = colour + (1.0 - opacity)[:, None] * background
    return {"rgb": colour, "opacity": opacity, "depth": depth}


def render_rays(
    fn: FieldFn,
    origins: Tensor,
    directions: Tensor,
    aabb: Tensor | Sequence[float] | None = None,
    n_samples: int = 128,
    perturb: bool = False,
    background: Tensor | float | Sequence[float] = 1.0,
    chunk: int = 65536,
    generator: torch.Generator | None = None,
    occupancy: OccupancyGrid | bool | None = None,
    early_stop: float = 1e-4,
    segment: int = 16,
    progress: bool = False,
) -> dict[str, Tensor]:
    """Render rays through ``fn`` restricted to a scene box.

    Samples are the midpoints of :func:`stratified_t` bins over ``[t_near, t_far]`` of the box, so
    ``fn`` is only queried inside the box; rays missing it get the background and ``fn`` is not
    called for them. Rays are processed in groups of ``max(1, chunk // n_samples)`` and every call
    of ``fn`` receives at most ``chunk`` points, so memory is bounded for any number of rays.
    Differentiable (with respect to ``fn``'s parameters and outputs); also works under
    ``torch.no_grad``.

    With ``occupancy`` (empty-space skipping) the bins are the same but ``fn`` is queried only at
    midpoints inside the grid's occupied cells, in packed batches of at most ``chunk`` points,
    ``segment`` bins per ray at a time, and a ray stops once its transmittance drops below
    ``early_stop``. The result differs from the plain one only by the skipped bins (density
    below the grid's threshold) and the cut tail (less than ``early_stop`` of the colour).
    Gradients flow to the queried samples only.

    Args:
        fn: callable ``x [N, 3] -> (sigma [N], rgb [N, 3])`` in world coordinates.
        origins: ``[R, 3]`` ray origins (world units).
        directions: ``[R, 3]`` ray directions; should be unit-norm so that ``sigma`` is per world
            unit (``t`` and depth are in units of ``|d|``).
        aabb: ``[6]`` box; default ``fn.aabb`` if present, else the cube [-0.7, 0.7]^3.
        n_samples: samples per ray ``S >= 1``.
        perturb: stratified jitter of the bins (training); False gives deterministic rendering.
        background: float or ``[3]`` background colour.
        chunk: maximum number of points per call of ``fn`` (>= 1).
        generator: optional ``torch.Generator`` for ``perturb``. Perturbed samples depend on
            ``chunk`` (random numbers are drawn per ray group).
        occupancy: an :class:`~graphnerf.render.occupancy.OccupancyGrid` of ``fn`` (see
            :meth:`~graphnerf.render.occupancy.OccupancyGrid.update`); True: the grid
            :func:`~graphnerf.render.occupancy.grid_for` gives for ``fn`` and the render box
            (cached for an ``nn.Module``, else built on each call); None or False renders every
            bin (the default: the training losses differentiate every sample).
        early_stop: transmittance below which a ray stops (skipping path only; 0 never stops).
        segment: bins marched per step of the skipping path (>= 1).
        progress: show a progress bar (ray groups, or marching steps when skipping).

    Returns:
        dict with ``rgb [R, 3]``, ``opacity [R]``, ``depth [R]`` (expected termination distance
        along the ray, 0 for misses) and ``hit [R]`` (bool, ray intersects the box).
    """
    _check_rays(origins, directions)
    n = _check_n_samples(n_samples)
    if isinstance(chunk, bool) or int(chunk) != chunk or chunk < 1:
        raise ValueError(f"chunk must be an integer >= 1 (points per call of fn), got {chunk!r}")
    chunk = int(chunk)
    segment = _check_int("segment", segment, 1)
    if not 0.0 <= float(early_stop) < 1.0:
        raise ValueError(f"early_stop must be a transmittance in [0, 1), got {early_stop!r}")
    if not (occupancy is None or isinstance(occupancy, (bool, OccupancyGrid))):
        raise ValueError(
            f"occupancy must be an OccupancyGrid, True, False or None, "
            f"got {type(occupancy).__name__}"
        )
    if not origins.is_floating_point():
        raise ValueError(f"origins must be a floating-point tensor, got {origins.dtype}")
    directions = directions.to(origins.dtype)
    box = resolve_aabb(fn, aabb, dtype=origins.dtype, device=origins.device)
    bg = _background(background, origins)
    if bg.ndim != 1:
        raise ValueError(f"render_rays: background must be a float or [3], got {list(bg.shape)}")

    n_rays = origins.shape[0]
    t_near, t_far, hit = ray_aabb(origins, directions, box)
    rgb = bg.expand(n_rays, 3).clone()
    opacity = torch.zeros(n_rays, dtype=origins.dtype, device=origins.device)
    depth = torch.zeros_like(opacity)
    hit_idx = torch.nonzero(hit).squeeze(-1)
    if hit_idx.numel() == 0:
        return {"rgb": rgb, "opacity": opacity, "depth": depth, "hit": hit}

    if occupancy is True:
        occupancy = grid_for(fn, box)
    elif occupancy is False:
        occupancy = None
    if occupancy is None:
        rays_per_group = max(1, chunk // n)
    else:
        rays_per_group = MARCH_GROUP_RAYS
    starts = range(0, hit_idx.numel(), rays_per_group)
    steps_per_group = 1 if occupancy is None else -(-n // segment)
    outs: dict[str, list[Tensor]] = {"rgb": [], "opacity": [], "depth": []}
    with _progress_bar(len(starts) * steps_per_group, progress, "render") as bar:
        for start in starts:
            idx = hit_idx[start : start + rays_per_group]
            edges = stratified_t(t_near[idx], t_far[idx], n, perturb, generator)  # [G, S + 1]
            if occupancy is not None:
                out = _march(
                    fn,
                    origins[idx],
                    directions[idx],
                    edges,
                    occupancy,
                    box,
                    bg,
                    chunk,
                    float(early_stop),
                    segment,
                    bar,
                )
            else:
                t_mid = 0.5 * (edges[:, 1:] + edges[:, :-1])
                deltas = edges[:, 1:] - edges[:, :-1]
                points = origins[idx, None, :] + directions[idx, None, :] * t_mid[..., None]
                sigma, colour = _eval_points(fn, points.reshape(-1, 3), chunk)
                out = composite(
                    sigma.reshape(t_mid.shape).to(origins.dtype),
                    colour.reshape(*t_mid.shape, 3).to(origins.dtype),
                    deltas,
                    bg,
                    t_mid,
                )
                bar.update(1)
            for key, values in outs.items():
                values.append(out[key])
    rgb = rgb.index_put((hit_idx,), torch.cat(outs["rgb"]))
    opacity = opacity.index_put((hit_idx,), torch.cat(outs["opacity"]))
    depth = depth.index_put((hit_idx,), torch.cat(outs["depth"]))
    return {"rgb": rgb, "opacity": opacity, "depth": depth, "hit": hit}


def _device_of(fn: object, default: torch.device) -> torch.device:
    """Device of an ``nn.Module``'s first parameter or buffer, else ``default``."""
    if isinstance(fn, nn.Module):
        for tensor in fn.parameters():
            return tensor.device
        for tensor in fn.buffers():
            return tensor.device
    return default


def render_image(
    fn: FieldFn,
    camera: Camera,
    n_samples: int = 128,
    background: Tensor | float | Sequence[float] = 1.0,
    chunk: int = 65536,
    aabb: Tensor | Sequence[float] | None = None,
    requires_grad: bool = False,
    occupancy: OccupancyGrid | bool | None = None,
    early_stop: float = 1e-4,
    progress: bool = False,
) -> Tensor:
    """Render a full image ``[H, W, 3]`` (deterministic bins, no jitter).

    Runs under ``torch.no_grad`` unless ``requires_grad=True``. Rays are generated on the device
    of ``fn`` when it is an ``nn.Module`` with parameters or buffers, else on ``camera.c2w``'s.

    Empty-space skipping is on by default for images without gradients: ``occupancy=None``
    (auto) means True when ``requires_grad`` is False, else False. True builds an
    :class:`~graphnerf.render.occupancy.OccupancyGrid` of ``fn`` over the render box with
    :func:`~graphnerf.render.occupancy.grid_for` (an ``nn.Module`` field's grid is reused across
    views while its parameters are unchanged); an ``OccupancyGrid`` is used as given; False renders
    every bin (the plain renderer). See :func:`render_rays` for the other arguments.
    """
    if occupancy is None:
        occupancy = not requires_grad
    with torch.set_grad_enabled(requires_grad):
        device = _device_of(fn, camera.c2w.device)
        origins, directions = camera_rays(camera.to(device))
        out = render_rays(
            fn,
            origins,
            directions,
            aabb=aabb,
            n_samples=n_samples,
            perturb=False,
            background=background,
            chunk=chunk,
            occupancy=occupancy,
            early_stop=early_stop,
            progress=progress,
        )
        return out["rgb"].reshape(camera.height, camera.width, 3)
