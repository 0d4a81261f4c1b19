"""`scripts/bench.py render`: plain vs empty-space-skipping renders of fitted fields.

Goal (issue 9, item 4): rendering with the occupancy grid (:mod:`graphnerf.render.occupancy`)
is >= 5x faster than the plain renderer at equal output (same image within 0.5 dB).

For each training architecture (``mlp``, ``triplane``, ``hash``) and each scene (procedural
classes, object seed 0) a field is fitted by :func:`graphnerf.fit.distill` at the default budget
(seed 0), then rendered from cameras that frame the object (:func:`graphnerf.render.eval_cameras`
with the scene's occupied cells, so the object fills most of the frame), with and without
skipping, at each image size. Timed in process CPU seconds (what waiting for a busy core does not
inflate; with ``--threads 1`` the wall time of a quiet machine):

* ``plain``: :func:`~graphnerf.render.render_rays` without a grid, one view;
* ``grid``: building the field's grid (:func:`~graphnerf.render.grid_for`, cold);
* ``skip``: the skipping render of the same view with that grid;
* ``speedup_1view = plain / (grid + skip)``: one image from scratch, as ``graphnerf render``;
* ``speedup_4views``: the ``--views`` evaluation views (default 4) sharing one grid, as an
  evaluation does.

Agreement: PSNR of the skipping render against the plain one over the whole frame and over the
foreground (pixels where either render has opacity > 0.5), and PSNR of both against the scene's
own render (full frame and foreground), whose difference is what the goal bounds. The scene
itself (a procedural SDF, rendered by evaluations) is benchmarked the same way as ``scene``.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from ..fields import build_field
from ..fit import distill
from ..render import camera_rays, eval_cameras, psnr, render_rays
from ..render.occupancy import _GRIDS, grid_for
from .report import environment, write_json

ARCHS = ("mlp", "triplane", "hash")


def _cpu(fn: Callable[[], object]) -> tuple[object, float]:
    t0 = time.process_time()
    out = fn()
    return out, time.process_time() - t0


def framed_cameras(scene, size: int, res: int = 64) -> list:
    """The 4 evaluation views at the distance where the scene's occupied cells fill the frame."""
    box = torch.tensor(scene.aabb, dtype=torch.float32)
    ticks = (torch.arange(res, dtype=torch.float32) + 0.5) / res
    g = torch.stack(torch.meshgrid(ticks, ticks, ticks, indexing="ij"), -1).reshape(-1, 3)
    x = box[:3] + (box[3:] - box[:3]) * g
    return eval_cameras(size, size, points=x[scene.occupancy(x)])


def _db(a: Tensor, b: Tensor, mask: Tensor | None = None) -> float:
    if mask is not None:
        if not bool(mask.any()):
            return float("inf")  # no foreground: nothing to disagree on (as psnr_fg)
        a, b = a[mask], b[mask]
    return float(psnr(a.clamp(0, 1), b.clamp(0, 1)))


def bench_one(
    fn,
    box: Tensor,
    cams: list,
    n_samples: int,
    reference: list | None,
    dilation: int = 1,
    n_jitter: int = 0,
) -> dict:
    """Times and agreement of one field (or scene) over the views ``cams``."""
    plain, fast, t_plain, t_skip = [], [], [], []
    _GRIDS.clear()
    with torch.no_grad():
        grid, t_grid = _cpu(lambda: grid_for(fn, box, dilation=dilation, n_jitter=n_jitter))
        for cam in cams:
            o, d = camera_rays(cam)
            out, dt = _cpu(lambda o=o, d=d: render_rays(fn, o, d, aabb=box, n_samples=n_samples))
            plain.append(out)
            t_plain.append(dt)
            out, dt = _cpu(
                lambda o=o, d=d: render_rays(
                    fn, o, d, aabb=box, n_samples=n_samples, occupancy=grid
                )
            )
            fast.append(out)
            t_skip.append(dt)
    row: dict = {
        "plain_s": t_plain[0],
        "grid_s": t_grid,
        "skip_s": t_skip[0],
        "plain_4views_s": sum(t_plain),
        "skip_4views_s": sum(t_skip),
        "speedup_1view": t_plain[0] / (t_grid + t_skip[0]),
        "speedup_4views": sum(t_plain) / (t_grid + sum(t_skip)),
        "speedup_render_only": sum(t_plain) / sum(t_skip),
        "occupied_fraction": grid.occupied_fraction,
    }
    fg = [(p["opacity"] > 0.5) | (f["opacity"] > 0.5) for p, f in zip(plain, fast, strict=True)]
    row["psnr_skip_vs_plain"] = min(
        _db(f["rgb"], p["rgb"]) for p, f in zip(plain, fast, strict=True)
    )
    row["psnr_fg_skip_vs_plain"] = min(
        _db(f["rgb"], p["rgb"], m) for p, f, m in zip(plain, fast, fg, strict=True)
    )
    row["coverage"] = sum(float(m.float().mean()) for m in fg) / len(fg)
    if reference is not None:
        fg_ref = [m | (r["opacity"] > 0.5) for m, r in zip(fg, reference, strict=True)]
        for name, outs in (("plain", plain), ("skip", fast)):
            row[f"psnr_{name}"] = sum(
                _db(o["rgb"], r["rgb"]) for o, r in zip(outs, reference, strict=True)
            ) / len(outs)
            row[f"psnr_fg_{name}"] = sum(
                _db(o["rgb"], r["rgb"], m) for o, r, m in zip(outs, reference, fg_ref, strict=True)
            ) / len(outs)
    row["_plain"] = plain
    return row


def bench_render(
    archs: Sequence[str] = ARCHS,
    classes: Sequence[str] = ("chair", "lamp"),
    sizes: Sequence[int] = (128, 256),
    n_samples: int = 128,
    steps: int | None = None,
    seed: int = 0,
    dilation: int = 1,
    views: int = 4,
    n_jitter: int = 0,
) -> dict:
    from ..scenes import make_scene

    rows = []
    for cls in classes:
        scene = make_scene(cls, seed)
        box = torch.tensor(scene.aabb, dtype=torch.float32)
        fields = {}
        for arch in archs:
            field = build_field(arch, seed=seed)
            distill(field, scene, steps=steps, generator=torch.Generator().manual_seed(seed))
            fields[arch] = field.eval()
        for size in sizes:
            cams = framed_cameras(scene, size)[:views]
            ref = bench_one(scene, box, cams, n_samples, None, dilation, n_jitter)
            reference = ref.pop("_plain")
            rows.append({"arch": "scene", "scene": scene.name, "size": size, **ref})
            print(_line(rows[-1]), flush=True)
            for arch, field in fields.items():
                row = bench_one(field, box, cams, n_samples, reference, dilation, n_jitter)
                row.pop("_plain")
                rows.append({"arch": arch, "scene": scene.name, "size": size, **row})
                print(_line(rows[-1]), flush=True)
    return {
        "n_samples": n_samples,
        "steps": steps or "config default",
        "seed": seed,
        "dilation": dilation,
        "views": views,
        "n_jitter": n_jitter,
        "rows": rows,
    }


HEADER = (
    "| scene | arch | size | plain s | grid s | skip s | speed-up 1 view | speed-up 4 views "
    "| occupied | coverage | PSNR skip vs plain (full / fg) | PSNR vs scene plain / skip "
    "| PSNR-fg vs scene plain / skip |\n"
    "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
)


def _line(r: dict) -> str:
    vs_scene = (
        f"{r['psnr_plain']:.2f} / {r['psnr_skip']:.2f} | "
        f"{r['psnr_fg_plain']:.2f} / {r['psnr_fg_skip']:.2f}"
        if "psnr_plain" in r
        else "- | -"
    )
    return (
        f"| {r['scene']} | {r['arch']} | {r['size']} | {r['plain_s']:.2f} | {r['grid_s']:.2f} | "
        f"{r['skip_s']:.2f} | {r['speedup_1view']:.1f}x | {r['speedup_4views']:.1f}x | "
        f"{r['occupied_fraction']:.3f} | {r['coverage']:.2f} | "
        f"{r['psnr_skip_vs_plain']:.1f} / {r['psnr_fg_skip_vs_plain']:.1f} | {vs_scene} |"
    )


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.py render", description=__doc__)
    p.add_argument("--archs", nargs="*", default=list(ARCHS))
    p.add_argument("--classes", nargs="*", default=["chair", "lamp"])
    p.add_argument("--sizes", nargs="*", type=int, default=[128, 256])
    p.add_argument("--samples", type=int, default=128)
    p.add_argument("--steps", type=int, default=None, help="fit steps (default: the config's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dilation", type=int, default=1, help="grid dilation (cells)")
    p.add_argument("--jitter", type=int, default=0, help="random points per cell (grid)")
    p.add_argument("--views", type=int, default=4, choices=[1, 2, 3, 4], help="eval views used")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--out", default="bench_out/render.json")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    load_before = os.getloadavg()
    print(HEADER, flush=True)
    res = bench_render(
        a.archs, a.classes, a.sizes, a.samples, a.steps, a.seed, a.dilation, a.views, a.jitter
    )
    res.update(environment())
    res["load_average_before_after"] = [list(load_before), list(os.getloadavg())]
    print(
        f"\n{res['threads']} threads, torch {res['torch']}, 1-min load average before / after "
        f"{load_before[0]:.1f} / {os.getloadavg()[0]:.1f}"
    )
    write_json(res, a.out)
    return 0
