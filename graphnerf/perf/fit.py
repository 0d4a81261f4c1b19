"""`scripts/bench.py fit`: seconds per NeRF and PSNR of 3D distillation, one at a time vs batched.

Goals (issue 9), per training spec (``mlp``, ``triplane``, ``hash``), batched x16 at the default
budgets: <= 2 s per NeRF amortised, and on the foreground PSNR (``psnr_fg``: PSNR over the pixels
where the scene's or the NeRF's render is opaque, on the 4 eval views framing the object, see
:func:`graphnerf.fit.evaluate`) mean >= 25 dB and 5th percentile >= 20 dB, on the procedural
classes and on the real meshes. The frame-wide PSNR, the object's coverage of the frame and the
occupancy IoU are reported beside it.
Scenes (:func:`bench_scene`) are the procedural shape classes of ``graphnerf.scenes`` in turn
(``--scenes procedural``), or the packaged real meshes of ``graphnerf.scenes.REAL_MESHES`` in
turn, each after its first appearance under a random rotation (``--scenes meshes``; needs
``pip install "graphnerf[meshes]"``). Prints a markdown table and writes JSON with every seed
and setting. On a machine shared with other jobs
pass ``--threads 1``: two threads that wait for each other are 2-3x slower than one. Besides
wall-clock seconds per NeRF the table gives process CPU seconds per NeRF, which waiting for a
busy core does not inflate (with one thread it is the wall time of a quiet machine).
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import time
from collections.abc import Sequence

import torch

from ..fields import build_field
from ..fit import distill, distill_batch, evaluate
from .fit_sweep import add_sweep_arguments, run_sweep_from_args
from .report import environment, write_json

SCENE_SOURCES = ("procedural", "meshes")


@functools.cache
def _real_mesh(name: str):
    from ..scenes import real_mesh

    return real_mesh(name)


def bench_scene(i: int, seed: int, source: str = "procedural"):
    """Scene ``i`` of a benchmark run.

    ``"procedural"``: the 13 classes in turn, object seed ``seed * 1000 + i // 13``.
    ``"meshes"``: the available real meshes in turn; the first round as the files stand, later
    rounds turned by ``random_rotation(seed * 1000 + i)``.
    """
    from ..scenes import CLASSES, available_real_meshes, make_scene, random_rotation

    if source == "procedural":
        return make_scene(CLASSES[i % len(CLASSES)], seed * 1000 + i // len(CLASSES))
    if source != "meshes":
        raise ValueError(f"scene source must be one of {SCENE_SOURCES}, got {source!r}")
    names = available_real_meshes()
    if not names:
        raise RuntimeError('no real meshes installed: pip install "graphnerf[meshes]"')
    scene = _real_mesh(names[i % len(names)])
    return scene if i < len(names) else scene.rotated(random_rotation(seed * 1000 + i))


def _percentile(values: Sequence[float], q: float) -> float:
    return float(torch.quantile(torch.tensor(values, dtype=torch.float64), q / 100.0))


def bench_fit(
    archs: Sequence[str] = ("mlp", "triplane", "hash"),
    batch_sizes: Sequence[int] = (1, 8, 16),
    n_sequential: int = 4,
    steps: int | None = None,
    image_size: int = 128,
    n_samples: int = 128,
    seed: int = 0,
    scenes: str = "procedural",
    overrides: Sequence[str] = (),
) -> dict:
    """Fit fresh fields to benchmark scenes and evaluate them.

    ``batch_sizes`` entry 1 means :func:`~graphnerf.fit.distill` one field at a time (on
    ``n_sequential`` scenes); entries > 1 mean one :func:`~graphnerf.fit.distill_batch` call of
    that many fields. Scene ``i`` of a run is :func:`bench_scene` ``(i, seed, scenes)``, field ``i`` is
    ``build_field(arch, seed=seed * 1000 + i)``, and the point draws use
    ``torch.Generator().manual_seed(seed)``. ``overrides`` are Hydra overrides of the ``fit``
    config (e.g. ``fit.distill.common.steps=500``), for trade-off curves.
    """
    cfg = None
    if overrides:
        from ..config import load_config

        cfg = load_config("fit/default", list(overrides))
    rows = []
    for arch in archs:
        for k in batch_sizes:
            n = n_sequential if k == 1 else k
            ids = [seed * 1000 + i for i in range(n)]
            scene_list = [bench_scene(i, seed, scenes) for i in range(n)]
            fields = [build_field(arch, seed=i) for i in ids]
            gen = torch.Generator().manual_seed(seed)
            t0, c0 = time.perf_counter(), time.process_time()
            if k == 1:
                for f, s in zip(fields, scene_list, strict=True):
                    distill(f, s, steps=steps, cfg=cfg, generator=gen)
            else:
                distill_batch(fields, scene_list, cfg=cfg, steps=steps, generator=gen)
            per_nerf = (time.perf_counter() - t0) / n
            cpu_per_nerf = (time.process_time() - c0) / n
            evals = [
                evaluate(f, s, size=image_size, n_samples=n_samples)
                for f, s in zip(fields, scene_list, strict=True)
            ]
            psnrs = [e["psnr"] for e in evals]
            fgs = [e["psnr_fg"] for e in evals]
            rows.append(
                {
                    "arch": arch,
                    "mode": "sequential" if k == 1 else f"batched x{k}",
                    "batch_size": k,
                    "n_nerfs": n,
                    "seconds_per_nerf": per_nerf,
                    "cpu_seconds_per_nerf": cpu_per_nerf,
                    "psnr_mean": sum(psnrs) / n,
                    "psnr_p5": _percentile(psnrs, 5),
                    "psnr_min": min(psnrs),
                    "psnr_fg_mean": sum(fgs) / n,
                    "psnr_fg_p5": _percentile(fgs, 5),
                    "psnr_fg_min": min(fgs),
                    "coverage_mean": sum(e["coverage"] for e in evals) / n,
                    "iou_mean": sum(e["iou"] for e in evals) / n,
                    "psnrs": psnrs,
                    "psnr_fgs": fgs,
                    "coverages": [e["coverage"] for e in evals],
                    "scenes": [s.name for s in scene_list],
                    "field_seeds": ids,
                }
            )
            print(_row_line(rows[-1]), flush=True)
    return {
        "scene_source": scenes,
        "steps": steps if steps is not None else "config default",
        "overrides": list(overrides),
        "image_size": image_size,
        "n_samples": n_samples,
        "seed": seed,
        **environment(),
        "rows": rows,
    }


def _row_line(r: dict) -> str:
    speedup = r.get("speedup")
    return (
        f"| {r['arch']} | {r['mode']} | {r['n_nerfs']} | {r['seconds_per_nerf']:.2f} | "
        f"{r['cpu_seconds_per_nerf']:.2f} | "
        f"{'-' if speedup is None else f'{speedup:.1f}x'} | "
        f"{r['psnr_mean']:.2f} | {r['psnr_fg_mean']:.2f} | {r['psnr_fg_p5']:.2f} | "
        f"{r['psnr_fg_min']:.2f} | {r['coverage_mean']:.3f} | {r['iou_mean']:.3f} |"
    )


HEADER = (
    "| arch | mode | NeRFs | s / NeRF | CPU s / NeRF | speed-up | PSNR mean (dB) "
    "| PSNR-fg mean (dB) | PSNR-fg p5 (dB) | PSNR-fg min (dB) | coverage | IoU mean |\n"
    "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
)


def add_speedups(rows: list[dict]) -> None:
    """``speedup`` of each row: seconds per NeRF one at a time / this row's (same arch)."""
    for r in rows:
        seq = [q for q in rows if q["arch"] == r["arch"] and q["batch_size"] == 1]
        r["speedup"] = seq[0]["seconds_per_nerf"] / r["seconds_per_nerf"] if seq else None


def format_table(res: dict) -> str:
    lines = [
        f"{res['scene_source']} scenes, steps {res['steps']}, "
        f"overrides {' '.join(res.get('overrides', [])) or 'none'}, eval {res['image_size']}x{res['image_size']} x {res['n_samples']} "
        f"samples, seed {res['seed']}, {res['threads']} threads, torch {res['torch']}, "
        f"1-min load average before / after {res['load_average_before_after'][0][0]:.1f} / "
        f"{res['load_average_before_after'][1][0]:.1f}",
        "",
        HEADER,
    ]
    lines += [_row_line(r) for r in res["rows"]]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.py fit", description=__doc__)
    p.add_argument("--archs", nargs="*", default=["mlp", "triplane", "hash"])
    p.add_argument("--batch-sizes", nargs="*", type=int, default=[1, 8, 16])
    p.add_argument("--sequential", type=int, default=4, help="NeRFs fitted one at a time")
    p.add_argument("--steps", type=int, default=None, help="default: the fit config's")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--samples", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scenes", choices=SCENE_SOURCES, default="procedural")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument(
        "--override",
        action="append",
        default=[],
        help="Hydra override of the fit config, repeatable (fit.distill.common.steps=500)",
    )
    p.add_argument("--out", default="bench_out/fit.json")
    add_sweep_arguments(p)
    a = p.parse_args(argv)
    if a.sweep:
        return run_sweep_from_args(a)
    if a.threads:
        torch.set_num_threads(a.threads)
    load_before = os.getloadavg()
    print(HEADER)
    res = bench_fit(
        a.archs,
        a.batch_sizes,
        a.sequential,
        a.steps,
        a.size,
        a.samples,
        a.seed,
        a.scenes,
        a.override,
    )
    res["load_average_before_after"] = [list(load_before), list(os.getloadavg())]
    add_speedups(res["rows"])
    print()
    print(format_table(res))
    write_json(res, a.out)
    return 0 if all(math.isfinite(r["psnr_fg_mean"]) for r in res["rows"]) else 1
