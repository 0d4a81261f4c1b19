"""Contact sheets: the procedural classes (a row per class, a column per seed) and the real
meshes (a row per mesh, a column per rotation)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch

from .base import Scene
from .procedural import CLASSES, make_scene
from .real import REAL_MESHES, real_mesh
from .rotations import random_rotation

__all__ = ["make_contact_sheet", "make_mesh_sheet", "render_sheet"]


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

    Each tile is ``size x size`` pixels, ``n_samples`` samples per ray, from the camera of
    :func:`render_sheet` (closer than the evaluation cameras).

    Returns:
        The written path.
    """
    if len(classes) == 0 or len(seeds) == 0:
        raise ValueError("make_contact_sheet: need at least one class and one seed")
    scenes = [make_scene(c, s) for c in classes for s in seeds]
    labels = [s.name for s in scenes]
    return render_sheet(
        scenes, labels, path, len(seeds), size, n_samples, azimuth_deg, elevation_deg, background
    )


def make_mesh_sheet(
    path: str | os.PathLike,
    names: Sequence[str] = tuple(REAL_MESHES),
    rotations: int = 4,
    seed: int = 0,
    size: int = 96,
    n_samples: int = 96,
) -> Path:
    """Render the packaged real meshes (:func:`~graphnerf.scenes.real_mesh`): one row per mesh,
    the first column as the file stands, then ``rotations - 1`` uniform random rotations
    (``random_rotation(seed * 1000 + k)``, the same for every mesh)."""
    if len(names) == 0 or rotations < 1:
        raise ValueError("make_mesh_sheet: need at least one mesh and one rotation")
    scenes: list[Scene] = []
    labels = []
    for name in names:
        base = real_mesh(name)
        for k in range(rotations):
            scenes.append(base if k == 0 else base.rotated(random_rotation(seed * 1000 + k)))
            labels.append(name if k == 0 else f"{name} rot {k}")
    return render_sheet(scenes, labels, path, rotations, size, n_samples)


def render_sheet(
    scenes: Sequence[Scene],
    labels: Sequence[str],
    path: str | os.PathLike,
    ncols: int,
    size: int = 96,
    n_samples: int = 96,
    azimuth_deg: float = 35.0,
    elevation_deg: float = 25.0,
    background: float = 1.0,
) -> Path:
    """Render each scene from one camera into a labelled PNG grid of ``ncols`` columns.

    The camera is at distance 2 from the AABB centre, at ``(azimuth_deg, elevation_deg)``, with
    a 45 degree field of view; every object's bounding sphere (radius <= 0.66) fits in the frame.
    Uses :mod:`graphnerf.render` (imported here, lazily). Returns the written path.
    """
    from graphnerf.render import (
        Camera,
        look_at,
        render_image,
        save_labeled_grid,
        spherical_to_cartesian,
    )

    eye = spherical_to_cartesian(2.0, azimuth_deg, elevation_deg)
    camera = Camera.from_fov(look_at(eye), int(size), int(size), 45.0)
    with torch.no_grad():
        images = [
            render_image(s, camera, n_samples=n_samples, background=background) for s in scenes
        ]
    return save_labeled_grid(images, list(labels), path, ncols=ncols)
