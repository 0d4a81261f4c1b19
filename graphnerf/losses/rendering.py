"""Rendering loss (nf2vec): render the same rays through a teacher NeRF and a student field.

``loss = fg_weight * mean_fg SmoothL1(rgb_student, rgb_teacher)
       + bg_weight * mean_bg SmoothL1(rgb_student, rgb_teacher)``

where a ray is foreground when the teacher's opacity exceeds ``fg_threshold`` and background
otherwise (nf2vec: 0.8 / 0.2, SmoothL1 with ``beta = 1``); each mean runs over that set's rays
and the 3 colour channels, rays that miss the scene box are left out (they show the background in
both renders), and an empty set contributes 0. Both renders use the same box and the same bins
(the same jitter when ``perturb``), so a student equal to its teacher has loss exactly 0.

Pure torch through :func:`graphnerf.render.render_rays`: every call of a field sees at most
``chunk`` points. The teacher is rendered under ``torch.no_grad``; the student's autograd graph
still holds all ``n_rays x n_samples`` samples, so bound the rays per step, not just ``chunk``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ..render.cameras import EVAL_FOV_DEG, EVAL_RADIUS
from ..render.rays import resolve_aabb
from ..render.volume import FieldFn, render_rays

__all__ = ["random_rays", "rendering_loss"]


def random_rays(
    n: int,
    generator: torch.Generator | None = None,
    radius: float = EVAL_RADIUS,
    fov_deg: float = EVAL_FOV_DEG,
    max_elevation_deg: float = 80.0,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> tuple[Tensor, Tensor]:
    """``n`` rays, each through a random pixel of its own random orbit camera.

    Each camera sits at distance ``radius`` from the origin in a direction uniform on the sphere
    band ``|elevation| <= max_elevation_deg`` (z up) and looks at the origin; the pixel is uniform
    over a square image of vertical field of view ``fov_deg`` (the defaults are the evaluation
    rig, whose view contains the whole default AABB).

    Returns:
        ``origins [n, 3]`` and unit ``directions [n, 3]``.
    """
    if n < 1:
        raise ValueError(f"random_rays: n must be >= 1, got {n}")
    if not 0.0 <= max_elevation_deg < 90.0:
        raise ValueError(f"max_elevation_deg must be in [0, 90), got {max_elevation_deg}")
    u = torch.rand(n, 4, generator=generator, dtype=torch.float64)
    az = 2.0 * math.pi * u[:, 0]
    sin_el = (2.0 * u[:, 1] - 1.0) * math.sin(math.radians(max_elevation_deg))  # uniform area
    cos_el = torch.sqrt(1.0 - sin_el**2)
    eye = radius * torch.stack([cos_el * torch.cos(az), cos_el * torch.sin(az), sin_el], -1)
    forward = -eye / radius
    up_world = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    right = torch.linalg.cross(forward, up_world.expand_as(forward))
    right = right / torch.linalg.vector_norm(right, dim=-1, keepdim=True)
    up = torch.linalg.cross(right, forward)
    half = math.tan(0.5 * math.radians(fov_deg))
    px, py = (2.0 * u[:, 2:3] - 1.0) * half, (2.0 * u[:, 3:4] - 1.0) * half
    d = forward + px * right + py * up
    d = d / torch.linalg.vector_norm(d, dim=-1, keepdim=True)
    return eye.to(dtype=dtype, device=device), d.to(dtype=dtype, device=device)


def _generator_copy(state: Tensor, device: torch.device) -> torch.Generator:
    g = torch.Generator(device=device)
    g.set_state(state)
    return g


def rendering_loss(
    teacher_fn: FieldFn,
    student_fn: FieldFn,
    origins: Tensor,
    directions: Tensor,
    n_samples: int = 64,
    fg_weight: float = 0.8,
    bg_weight: float = 0.2,
    fg_threshold: float = 0.5,
    beta: float = 1.0,
    background: float | Sequence[float] = 1.0,
    aabb: Tensor | Sequence[float] | None = None,
    perturb: bool = False,
    generator: torch.Generator | None = None,
    chunk: int = 65536,
    return_renders: bool = False,
) -> Tensor | tuple[Tensor, dict[str, Tensor]]:
    """Foreground-weighted SmoothL1 between the teacher's and the student's renders.

    Args:
        teacher_fn: the target NeRF ``x [N, 3] -> (sigma, rgb)`` (rendered without gradients).
        student_fn: e.g. ``FieldDecoder.bind(z)``; gradients flow through it.
        origins, directions: ``[R, 3]`` rays (unit directions), e.g. from :func:`random_rays`.
        n_samples: bins per ray.
        fg_weight, bg_weight: weights of the foreground / background means (nf2vec 0.8 / 0.2).
        fg_threshold: teacher opacity above which a ray is foreground.
        beta: SmoothL1 transition point (``0.5 d^2 / beta`` below it, ``|d| - beta / 2`` above).
        background: background colour of both renders.
        aabb: render box (default the teacher's ``aabb``), shared by both renders.
        perturb: jitter the bins (the same jitter for both renders).
        generator: source of the jitter (advanced as if used once).
        chunk: maximum points per field call.
        return_renders: also return ``{"teacher", "student", "fg", "bg"}`` (renders are
            :func:`render_rays` dicts, ``fg`` / ``bg`` the ``[R]`` ray masks).
    Returns:
        Scalar loss (and the renders dict).
    """
    box = resolve_aabb(teacher_fn, aabb, dtype=origins.dtype, device=origins.device)
    gens: list[torch.Generator | None] = [None, None]
    if perturb:
        if generator is None:
            seed = int(torch.randint(0, 2**62, (1,)))
            generator = torch.Generator(device=origins.device).manual_seed(seed)
        state = generator.get_state()
        gens = [_generator_copy(state, origins.device) for _ in range(2)]
    kwargs = dict(
        aabb=box, n_samples=n_samples, perturb=perturb, background=background, chunk=chunk
    )
    with torch.no_grad():
        teacher = render_rays(teacher_fn, origins, directions, generator=gens[0], **kwargs)
    student = render_rays(student_fn, origins, directions, generator=gens[1], **kwargs)
    if perturb and gens[1] is not None:
        generator.set_state(gens[1].get_state())
    hit = teacher["hit"]
    fg = hit & (teacher["opacity"] > fg_threshold)
    bg = hit & ~fg
    per_ray = F.smooth_l1_loss(student["rgb"], teacher["rgb"], reduction="none", beta=beta).mean(-1)
    fg_term = (per_ray * fg).sum() / fg.sum().clamp_min(1)
    bg_term = (per_ray * bg).sum() / bg.sum().clamp_min(1)
    loss = fg_weight * fg_term + bg_weight * bg_term
    if return_renders:
        return loss, {"teacher": teacher, "student": student, "fg": fg, "bg": bg}
    return loss
