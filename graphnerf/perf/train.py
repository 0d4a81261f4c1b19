"""Training throughput benchmark: NeRFs per second of ``graphnerf train`` steps, and the rendering
loss with and without the teacher-ray cache.

``python scripts/bench.py train [--zoo ZOO] [--steps 6] [--threads 1] [--out bench_out/train.json]``

* **throughput** — for each encoder (default configs of ``configs/model/``) and loss preset, the
  full training step of :mod:`graphnerf.train.loop` (batch from the caches, forward, loss,
  backward, clipping, AdamW, OneCycle) on K = 4 objects x 2 NeRFs; reported as NeRFs per second
  of wall time and of process CPU time (median over the timed steps, after one warm-up step).
  Without ``--zoo`` a small zoo (mlp, hash and triplane NeRFs of the tiny config's budgets) is
  generated once under ``bench_out/train_zoo``.
* **rendering loss** — one forward + backward of the rendering loss of 8 NeRFs (``rays_per_field``
  rays, ``n_samples`` bins): ``cached`` renders only the decoder against the cached teacher
  rays (:func:`graphnerf.train.render_decoder`), ``uncached`` renders the teacher NeRF as well,
  each step (:func:`graphnerf.losses.rendering_loss`, as a loop without the cache would).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from .report import environment, write_json

PRESETS = {"gmn": ("rec_con_rot",), "sane": ("sane_ngp", "rec_con_rot")}


def _zoo(path: Path) -> Path:
    from ..data import generate, load_zoo_config
    from ..data.manifest import MANIFEST

    if not (path / MANIFEST).is_file():
        cfg = load_zoo_config(
            [
                f"out_dir={path}",
                "objects_per_class=4",
                "splits={train: 0.5, val: 0.5, test: 0.0}",
                "archs={train: [mlp, hash, triplane], val: [mlp, hash, triplane], test: [mlp]}",
                "batch_size=8",
            ],
            "tiny",
        )
        generate(cfg, progress=False)
    return path


def bench_step(zoo: Path, model: str, loss: str, steps: int, extra: Sequence[str]) -> dict:
    from ..train.data import StepDataset
    from ..train.inputs import move
    from ..train.loop import _Run, load_train_config

    cfg = load_train_config(
        [
            f"zoo={zoo}",
            "out_dir=unused",
            f"model={model}",
            f"loss={loss}",
            "wandb.mode=disabled",
            "data.objects_per_batch=4",
            *extra,
        ]
    )
    r = _Run(cfg, show_progress=False)
    r.check_inputs()
    r.setup()
    r.batches.prepare(r.sampler.records, show=False)
    ds = StepDataset(r.batches, r.sampler, 0, steps + 1)
    r.module.train()
    wall, cpu, data_s = [], [], []
    for i in range(steps + 1):
        t0, c0 = time.perf_counter(), time.process_time()
        batch = move(ds.batch(i), r.device)
        t1 = time.perf_counter()
        terms = r.module(batch)
        r.opt.zero_grad(set_to_none=True)
        terms["total"].backward()
        torch.nn.utils.clip_grad_norm_(r.module.parameters(), 1.0)
        r.opt.step()
        r.sched.step()
        if i:  # the first step warms up
            wall.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
            data_s.append(t1 - t0)
    n = r.sampler.k * r.sampler.views
    return {
        "model": model,
        "loss": loss,
        "nerfs_per_step": n,
        "step_s": statistics.median(wall),
        "cpu_s": statistics.median(cpu),
        "batch_s": statistics.median(data_s),
        "nerfs_per_s": n / statistics.median(wall),
        "nerfs_per_cpu_s": n / statistics.median(cpu),
        "params": sum(p.numel() for p in r.module.parameters()),
        "archs": sorted({x["arch"] for x in r.sampler.records}),
    }


def bench_render(zoo: Path, rays: int, n_samples: int, repeats: int) -> dict:
    from ..data.manifest import read_manifest
    from ..io import load_any
    from ..losses import rendering_loss
    from ..models import DecoderConfig
    from ..train.teacher import TeacherRayCache, cached_rendering_loss, render_decoder

    recs = sorted(read_manifest(zoo), key=lambda r: r["id"])[:8]
    cache = TeacherRayCache(zoo / ".cache" / "teacher", n_rays=4096, n_samples=128)
    torch.manual_seed(0)
    dec = DecoderConfig(embed_dim=64).build()
    z = torch.randn(len(recs), 64, requires_grad=True)
    fields = [load_any(zoo / r["file"]).eval() for r in recs]
    cached = [cache.get(r, zoo / r["file"]) for r in recs]
    pick = torch.arange(rays)
    o = torch.stack([c["origins"][pick] for c in cached])
    d = torch.stack([c["directions"][pick] for c in cached])
    rgb = torch.stack([c["rgb"][pick] for c in cached])
    op = torch.stack([c["opacity"][pick] for c in cached])

    def with_cache() -> None:
        out = render_decoder(dec, z, o, d, n_samples=n_samples, perturb=True)
        cached_rendering_loss(out["rgb"], rgb, op).backward()

    def without_cache() -> None:
        loss = sum(
            rendering_loss(f, dec.bind(z[i]), o[i], d[i], n_samples=n_samples, perturb=True)
            for i, f in enumerate(fields)
        ) / len(fields)
        loss.backward()

    res = {}
    for name, fn in (("cached", with_cache), ("uncached", without_cache)):
        fn()
        times = []
        for _ in range(repeats):
            t0 = time.process_time()
            fn()
            times.append(time.process_time() - t0)
        res[name] = {"cpu_s_per_nerf": statistics.median(times) / len(recs)}
    res["speedup"] = res["uncached"]["cpu_s_per_nerf"] / res["cached"]["cpu_s_per_nerf"]
    res.update(
        {
            "nerfs": len(recs),
            "rays_per_field": rays,
            "n_samples": n_samples,
            "archs": [r["arch"] for r in recs],
        }
    )
    return res


def format_table(res: dict[str, Any]) -> str:
    lines = [
        "| encoder | loss | NeRFs / step | step (s) | CPU s / step | NeRFs/s | NeRFs / CPU s | params |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in res["throughput"]:
        lines.append(
            f"| {r['model']} | {r['loss']} | {r['nerfs_per_step']} | {r['step_s']:.2f} | "
            f"{r['cpu_s']:.2f} | {r['nerfs_per_s']:.1f} | {r['nerfs_per_cpu_s']:.1f} | "
            f"{r['params']:,} |"
        )
    rd = res["render"]
    lines += [
        "",
        f"rendering loss, {rd['rays_per_field']} rays x {rd['n_samples']} bins per NeRF, "
        "forward + backward (CPU s per NeRF):",
        f"  with the teacher cache {rd['cached']['cpu_s_per_nerf'] * 1e3:.1f} ms, "
        f"re-rendering the teacher {rd['uncached']['cpu_s_per_nerf'] * 1e3:.1f} ms "
        f"({rd['speedup']:.2f}x)",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.py train", description=__doc__.split("\n\n")[0])
    p.add_argument("--zoo", help="zoo folder (default: generate bench_out/train_zoo)")
    p.add_argument("--steps", type=int, default=5, help="timed steps per encoder")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--encoders", nargs="*", default=list(PRESETS))
    p.add_argument("--rays", type=int, default=128, help="rays per NeRF of the rendering loss")
    p.add_argument("--samples", type=int, default=32, help="bins per ray")
    p.add_argument("--out", default="bench_out/train.json")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    zoo = Path(args.zoo) if args.zoo else _zoo(Path("bench_out/train_zoo"))
    extra = [f"render.rays_per_field={args.rays}", f"render.n_samples={args.samples}"]
    rows = [
        bench_step(zoo, m, loss, args.steps, extra) for m in args.encoders for loss in PRESETS[m]
    ]
    res = {
        "env": environment(),
        "zoo": str(zoo),
        "throughput": rows,
        "render": bench_render(zoo, args.rays, args.samples, repeats=3),
    }
    try:
        import os

        res["loadavg"] = os.getloadavg()
    except OSError:
        pass
    print(format_table(res))
    write_json(res, args.out)
    return 0


if __name__ == "__main__":  # pragma: no cover
    import sys

    sys.exit(main(sys.argv[1:]))
