"""Ray generation and ray / axis-aligned-box intersection."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .cameras import Camera

__all__ = ["DEFAULT_AABB", "as_aabb", "camera_rays", "ray_aabb", "resolve_aabb"]

#: Default scene box ``(xmin, ymin, zmin, xmax, ymax, zmax)``: the cube [-0.7, 0.7]^3 (as nf2vec).
DEFAULT_AABB: tuple[float, ...] = (-0.7, -0.7, -0.7, 0.7, 0.7, 0.7)


def as_aabb(
    aabb: Tensor | Sequence[float],
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
    name: str = "aabb",
) -> Tensor:
    """Validate a box ``[6] = (xmin, ymin, zmin, xmax, ymax, zmax)`` and return it as a tensor.

    Raises:
        ValueError: if it does not have 6 finite entries with min < max on every axis.
    """
    box = torch.as_tensor(aabb).detach()
    if box.numel() != 6:
        raise ValueError(
            f"{name} must have 6 values (xmin, ymin, zmin, xmax, ymax, zmax), "
            f"got shape {list(box.shape)}"
        )
    box = box.reshape(6).to(dtype=dtype, device=device)
    if not bool(torch.isfinite(box).all()):
        raise ValueError(f"{name} must be finite, got {box.tolist()}")
    if not bool((box[:3] < box[3:]).all()):
        raise ValueError(
            f"{name} must satisfy min < max on every axis "
            f"(xmin, ymin, zmin, xmax, ymax, zmax), got {box.tolist()}"
        )
    return box


def resolve_aabb(
    fn: object,
    aabb: Tensor | Sequence[float] | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Tensor:
    """The box to render ``fn`` in: an explicit ``aabb`` if given, else ``fn.aabb``, else default.

    An explicit argument wins over the field's attribute, so a caller can always restrict or
    enlarge the rendered region.
    """
    if aabb is not None:
        return as_aabb(aabb, dtype, device, "aabb")
    field_box = getattr(fn, "aabb", None)
    if field_box is not None:
        return as_aabb(field_box, dtype, device, "fn.aabb")
    return as_aabb(DEFAULT_AABB, dtype, device)


def camera_rays(camera: Camera) -> tuple[Tensor, Tensor]:
    """One ray per pixel through the pixel centre.

    Args:
        camera: a :class:`Camera` (OpenGL convention).

    Returns:
        ``origins [H*W, 3]`` (world units) and unit-norm ``directions [H*W, 3]``, pixels in
        row-major order (index ``row * W + col``, row 0 at the top of the image), on
        ``camera.c2w``'s device and dtype.
    """
    c2w = camera.c2w
    dtype, device = c2w.dtype, c2w.device
    rows = torch.arange(camera.height, dtype=dtype, device=device) + 0.5
    cols = torch.arange(camera.width, dtype=dtype, device=device) + 0.5
    v, u = torch.meshgrid(rows, cols, indexing="ij")
    dirs_cam = torch.stack(
        [(u - camera.cx) / camera.fx, -(v - camera.cy) / camera.fy, -torch.ones_like(u)], dim=-1
    ).reshape(-1, 3)
    directions = dirs_cam @ c2w[:3, :3].T
    directions = directions / torch.linalg.vector_norm(directions, dim=-1, keepdim=True)
    origins = c2w[:3, 3].expand(directions.shape[0], 3).contiguous()
    return origins, directions


def ray_aabb(
    origins: Tensor, directions: Tensor, aabb: Tensor | Sequence[float]
) -> tuple[Tensor, Tensor, Tensor]:
    """Intersect rays ``o + t d`` (t >= 0) with an axis-aligned box (slab method).

    Args:
        origins: ``[R, 3]`` ray origins.
        directions: ``[R, 3]`` ray directions (need not be unit; ``t`` is in units of ``|d|``, i.e.
            world units for unit directions). Zero components are handled exactly: the ray is then
            parallel to that slab and either always or never inside it.
        aabb: ``[6]`` box ``(xmin, ymin, zmin, xmax, ymax, zmax)``.

    Returns:
        ``t_near [R]``, ``t_far [R]`` and ``hit [R]`` (bool). ``t_near`` is clamped to 0 for origins
        inside the box. A ray hits when ``t_far > t_near`` (grazing rays with a zero-length chord
        count as misses); for misses ``t_near = t_far = 0``.
    """
    _check_rays(origins, directions)
    box = as_aabb(aabb, dtype=origins.dtype, device=origins.device)
    lo, hi = box[:3], box[3:]
    parallel = directions == 0
    safe_dir = torch.where(parallel, torch.ones_like(directions), directions)
    t_lo = (lo - origins) / safe_dir
    t_hi = (hi - origins) / safe_dir
    t_min = torch.minimum(t_lo, t_hi)
    t_max = torch.maximum(t_lo, t_hi)
    inside_slab = (origins >= lo) & (origins <= hi)
    inf = torch.full_like(t_min, float("inf"))
    t_min = torch.where(parallel, torch.where(inside_slab, -inf, inf), t_min)
    t_max = torch.where(parallel, torch.where(inside_slab, inf, -inf), t_max)
    t_near = t_min.amax(dim=-1).clamp_min(0.0)
    t_far = t_max.amin(dim=-1)
    hit = t_far > t_near
    zeros = torch.zeros_like(t_near)
    return torch.where(hit, t_near, zeros), torch.where(hit, t_far, zeros), hit


def _check_rays(origins: Tensor, directions: Tensor) -> None:
    if origins.ndim != 2 or origins.shape[-1] != 3:
        raise ValueError(f"origins must have shape [R, 3], got {list(origins.shape)}")
    if directions.shape != origins.shape:
        raise ValueError(
            f"directions must have the same shape as origins {list(origins.shape)}, "
            f"got {list(directions.shape)}"
        )
