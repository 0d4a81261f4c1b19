"""Teacher-ray cache and the cached rendering loss: a training step renders only the decoder.

The teacher of the nf2vec rendering loss is the zoo NeRF itself, which never changes while an
encoder trains. :class:`TeacherRayCache` renders ``n_rays`` random rays of each NeRF once
(:func:`graphnerf.losses.random_rays` cameras, deterministic bins, rays that miss the scene box
are redrawn) and stores their origins, directions, colour and opacity beside the zoo, one ``.pt``
per NeRF (plain tensors, ``torch.load(weights_only=True)``), written atomically and stamped with
the NeRF file's size, ``mtime_ns`` and inode and with the cache settings: a NeRF file that
changed, or other settings, rebuild the entry.

A step then draws ``rays_per_field`` of the cached rays per NeRF, renders them through the
decoder (:func:`render_decoder`) and scores them
with :func:`cached_rendering_loss`, the same foreground-weighted SmoothL1 as
:func:`graphnerf.losses.rendering_loss` (``tests/test_train_teacher.py`` checks that the two
agree when the renders agree).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ..graph.serialize import atomic_torch_save
from ..losses.rendering import random_rays
from ..render.rays import ray_aabb
from ..render.volume import composite, render_rays, stratified_t

__all__ = [
    "TeacherRayCache",
    "cached_rendering_loss",
    "render_decoder",
    "stable_int",
]

CACHE_FORMAT = "graphnerf-teacher-rays/1"


def stable_int(*parts: Any) -> int:
    """A 63-bit integer from ``parts`` (same in every process and Python run: sha256, no hash())."""
    h = hashlib.sha256("\0".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(h[:8], "little") & ((1 << 63) - 1)


def _stamp(path: Path) -> dict[str, int]:
    st = path.stat()
    return {"size": int(st.st_size), "mtime_ns": int(st.st_mtime_ns), "inode": int(st.st_ino)}


class TeacherRayCache:
    """Renders of each zoo NeRF on ``n_rays`` fixed random rays, cached on disk.

    Args:
        cache_dir: folder of the ``.pt`` entries (created on first write).
        n_rays: rays per NeRF (all of them hit the scene box).
        n_samples: bins per ray of the teacher render (deterministic bins).
        seed: ray seed (combined with each NeRF's id).
        background: background grey of the renders.
    """

    def __init__(
        self,
        cache_dir: str | os.PathLike[str],
        n_rays: int = 4096,
        n_samples: int = 128,
        seed: int = 0,
        background: float = 1.0,
    ) -> None:
        if n_rays < 1 or n_samples < 1:
            raise ValueError(
                f"teacher cache needs n_rays, n_samples >= 1, got {n_rays}, {n_samples}"
            )
        self.cache_dir = Path(cache_dir)
        self.settings = {
            "n_rays": int(n_rays),
            "n_samples": int(n_samples),
            "seed": int(seed),
            "background": float(background),
        }

    def path(self, rec: Mapping[str, Any]) -> Path:
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", str(rec["id"]))[:80]
        tag = hashlib.sha1(f"{rec['id']}\0{rec['file']}".encode()).hexdigest()[:10]
        return self.cache_dir / f"{safe}-{tag}.pt"

    def get(self, rec: Mapping[str, Any], nerf_path: str | os.PathLike[str]) -> dict[str, Tensor]:
        """``{"origins", "directions", "rgb" [n, 3], "opacity" [n]}`` of one NeRF (float32, CPU),
        from the cache when its entry is still valid, else rendered and written."""
        nerf_path = Path(nerf_path)
        stamp = _stamp(nerf_path)
        cpath = self.path(rec)
        if cpath.is_file():
            try:
                d = torch.load(cpath, map_location="cpu", weights_only=True)
            except Exception:  # unreadable entry: render again
                d = None
            if (
                isinstance(d, dict)
                and d.get("format") == CACHE_FORMAT
                and d.get("source") == stamp
                and d.get("settings") == self.settings
            ):
                return d["rays"]
        rays = self.render(nerf_path, str(rec["id"]))
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        atomic_torch_save(
            {"format": CACHE_FORMAT, "source": stamp, "settings": self.settings, "rays": rays},
            cpath,
        )
        return rays

    @torch.no_grad()
    def render(self, nerf_path: Path, key: str) -> dict[str, Tensor]:
        """Render the rays of one NeRF (no caching)."""
        from ..io import load_any

        field = load_any(nerf_path).eval()
        s = self.settings
        g = torch.Generator().manual_seed(stable_int("teacher-rays", s["seed"], key))
        box = field.aabb.to(torch.float32)
        origins, dirs, n = [], [], 0
        while n < s["n_rays"]:
            o, d = random_rays(2 * s["n_rays"], generator=g)
            hit = ray_aabb(o, d, box)[2]
            origins.append(o[hit])
            dirs.append(d[hit])
            n += int(hit.sum())
        o = torch.cat(origins)[: s["n_rays"]]
        d = torch.cat(dirs)[: s["n_rays"]]
        out = render_rays(
            field, o, d, n_samples=s["n_samples"], perturb=False, background=s["background"]
        )
        return {
            "origins": o.contiguous(),
            "directions": d.contiguous(),
            "rgb": out["rgb"].float().contiguous(),
            "opacity": out["opacity"].float().contiguous(),
        }


def render_decoder(
    decoder: Any,
    z: Tensor,
    origins: Tensor,
    directions: Tensor,
    n_samples: int = 64,
    perturb: bool = True,
    generators: Sequence[torch.Generator] | None = None,
    background: float = 1.0,
) -> dict[str, Tensor]:
    """Render ``R`` rays of each of ``B`` embeddings through a :class:`FieldDecoder`.

    Args:
        decoder: ``FieldDecoder`` (``forward(z [B, D], x [B, N, 3])``, has ``aabb``).
        z: ``[B, D]`` embeddings.
        origins, directions: ``[B, R, 3]`` rays (unit directions) of each embedding.
        n_samples: bins per ray.
        perturb: stratified jitter of the bins.
        generators: one ``torch.Generator`` per embedding for the jitter (so a NeRF's jitter does
            not depend on the rest of the batch); None draws from the global generator.
        background: background grey.
    Returns:
        ``{"rgb" [B, R, 3], "opacity" [B, R]}``; rays missing the box show the background.
    """
    b, r, _ = origins.shape
    box = decoder.aabb.to(origins.dtype)
    if generators is not None and len(generators) != b:
        raise ValueError(f"render_decoder: {len(generators)} generators for {b} embeddings")
    rgbs, opacities = [], []
    # one embedding at a time: on a CPU one [B R S, hidden] activation (B = 8: 32k rows x 256)
    # falls out of the cache and made the whole loss 1.3-1.5x slower than per-NeRF calls
    for i in range(b):
        t_near, t_far, _ = ray_aabb(origins[i], directions[i], box)
        gen = generators[i] if generators is not None else None
        edges = stratified_t(t_near, t_far, n_samples, perturb, gen)  # [R, S + 1]
        t_mid = 0.5 * (edges[:, 1:] + edges[:, :-1])
        deltas = edges[:, 1:] - edges[:, :-1]
        points = origins[i, :, None, :] + directions[i, :, None, :] * t_mid[..., None]
        sigma, rgb = decoder(z[i : i + 1], points.reshape(1, r * n_samples, 3))
        out = composite(
            sigma.reshape(r, n_samples), rgb.reshape(r, n_samples, 3), deltas, background, t_mid
        )
        rgbs.append(out["rgb"])
        opacities.append(out["opacity"])
    return {"rgb": torch.stack(rgbs), "opacity": torch.stack(opacities)}


def cached_rendering_loss(
    student_rgb: Tensor,
    teacher_rgb: Tensor,
    teacher_opacity: Tensor,
    fg_weight: float = 0.8,
    bg_weight: float = 0.2,
    fg_threshold: float = 0.5,
    beta: float = 1.0,
    reduction: str = "mean",
) -> Tensor:
    """:func:`graphnerf.losses.rendering_loss` on precomputed renders, per NeRF.

    For each NeRF ``i``: ``fg_weight * mean_fg SmoothL1 + bg_weight * mean_bg SmoothL1`` over its
    rays (foreground: teacher opacity above ``fg_threshold``; the means run over the rays of the
    set and the 3 channels; an empty set contributes 0). All cached rays hit the box.

    Args:
        student_rgb, teacher_rgb: ``[B, R, 3]``.
        teacher_opacity: ``[B, R]``.
        reduction: ``"mean"`` over the NeRFs (scalar) or ``"none"`` (``[B]``).
    """
    per_ray = F.smooth_l1_loss(student_rgb, teacher_rgb, reduction="none", beta=beta).mean(-1)
    fg = (teacher_opacity > fg_threshold).to(per_ray.dtype)
    bg = 1.0 - fg
    fg_term = (per_ray * fg).sum(-1) / fg.sum(-1).clamp_min(1)
    bg_term = (per_ray * bg).sum(-1) / bg.sum(-1).clamp_min(1)
    loss = fg_weight * fg_term + bg_weight * bg_term
    if reduction == "none":
        return loss
    if reduction == "mean":
        return loss.mean()
    raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
