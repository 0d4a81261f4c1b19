"""A contact sheet of the procedural classes: one row per class, one column per seed."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch

from .procedural import CLASSES, make_scene

__all__ = ["make_contact_sheet"]


def make_contact_sheet(
    path: str | os.PathLike,
    classes: Sequence[str] = CLASSES,
    seeds: Sequence[int] = (0, 1, 2, 3),
    size: int = 96,
    n_samples: int = 96,
    azimuth_deg: float = 35.0,
    elevation_deg: float = 25.0,
    background: float = 1.0,
) -> Path:
    """Render ``make_scene(c, s)`` for every class and seed into one labelled PNG grid.

    Uses :mod:`graphnerf.render` (imported here, lazily). Each tile is ``size x size`` pixels,
    ``n_samples`` samples per ray, from a camera at distance 2 looking at the AABB centre from
    ``(azimuth_deg, elevation_deg)`` with a 45 degree field of view: closer than the evaluation
    cameras, and every object's bounding sphere (radius <= 0.66) still fits in the frame.

    Returns:
        The written path.
    """
    from graphnerf.render import (
        Camera,
        look_at,
        render_image,
        save_labeled_grid,
        spherical_to_cartesian,
    )

    if len(classes) == 0 or len(seeds) == 0:
        raise ValueError("make_contact_sheet: need at least one class and one seed")
    eye = spherical_to_cartesian(2.0, azimuth_deg, elevation_deg)
    camera = Camera.from_fov(look_at(eye), int(size), int(size), 45.0)
    images, labels = [], []
    with torch.no_grad():
        for c in classes:
            for s in seeds:
                scene = make_scene(c, s)
                images.append(
                    render_image(scene, camera, n_samples=n_samples, background=background)
                )
                labels.append(scene.name)
    return save_labeled_grid(images, labels, path, ncols=len(seeds))
