"""Fitting a field from posed images through the volume renderer (classic NeRF training).

For users who bring images instead of a scene function: every step draws a batch of rays from all
views, renders them through the field with jittered stratified samples
(:func:`graphnerf.render.render_rays`) and minimises the colour MSE. Defaults per field family
come from the ``images`` section of ``graphnerf/configs/fit/default.yaml``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from omegaconf import DictConfig
from torch import Tensor

from ..fields import RadianceField
from ..render import Camera, camera_rays, render_rays
from .distill import FitResult, check_positive, fit_config, optimise, resolve_generator

__all__ = ["ImageFitConfig", "fit_images"]


@dataclass(frozen=True)
class ImageFitConfig:
    """Settings of :func:`fit_images` (one family's block of ``fit.images``; see the YAML)."""

    steps: int
    batch_rays: int
    n_samples: int
    lr: float
    grid_lr: float
    lr_final: float
    betas: tuple[float, float]
    adam_eps: float
    band_limit: int | None

    def __post_init__(self) -> None:
        check_positive(self, "steps", "batch_rays", "n_samples", "lr")


def fit_images(
    field: RadianceField,
    images: Tensor,
    cameras: Sequence[Camera],
    steps: int | None = None,
    cfg: ImageFitConfig | DictConfig | Mapping | None = None,
    generator: torch.Generator | None = None,
    progress: bool = False,
    background: float | Sequence[float] = 1.0,
) -> FitResult:
    """Fit ``field`` (in place) to posed images by volume rendering random ray batches.

    Args:
        field: any :class:`RadianceField`.
        images: ``[V, H, W, 3]`` colours in [0, 1], view v seen by ``cameras[v]``.
        cameras: V :class:`~graphnerf.render.Camera` (each ``height x width`` = ``H x W``).
        steps: Adam steps; default the config's.
        cfg: an :class:`ImageFitConfig`, a ``fit`` config or None for the packaged defaults.
        generator: CPU generator for ray draws and sample jitter (default: seeded from torch's
            global RNG).
        progress: show a tqdm progress bar.
        background: the colour the images show where rays leave the scene empty.
    """
    t0 = time.perf_counter()
    if images.dim() != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be [V, H, W, 3], got {tuple(images.shape)}")
    if len(cameras) != images.shape[0]:
        raise ValueError(f"got {images.shape[0]} images and {len(cameras)} cameras")
    for v, cam in enumerate(cameras):
        if (cam.height, cam.width) != tuple(images.shape[1:3]):
            raise ValueError(
                f"camera {v} is {cam.height}x{cam.width} but the images are "
                f"{images.shape[1]}x{images.shape[2]}"
            )
    c = fit_config(ImageFitConfig, cfg, "images", field.spec.family)
    steps = c.steps if steps is None else int(steps)
    gen = resolve_generator(generator)
    device = field.aabb.device
    rays = [camera_rays(cam.to(device)) for cam in cameras]
    origins = torch.cat([o for o, _ in rays])
    directions = torch.cat([d for _, d in rays])
    target = images.reshape(-1, 3).to(device=device, dtype=origins.dtype)

    def loss_at(i: int) -> Tensor:
        idx = torch.randint(0, origins.shape[0], (c.batch_rays,), generator=gen).to(device)
        out = render_rays(
            field,
            origins[idx],
            directions[idx],
            aabb=field.aabb,
            n_samples=c.n_samples,
            perturb=True,
            background=background,
            generator=gen,
        )
        return (out["rgb"] - target[idx]).square().mean()

    return optimise(field, c, steps, loss_at, f"fit_images {field.spec.family}", progress, t0)
