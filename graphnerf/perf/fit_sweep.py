"""`scripts/bench.py fit --sweep steps=0.5,1,2,4`: the quality / time trade-off curve of fitting.

For each training spec, fits batches of fresh fields (one :func:`~graphnerf.fit.distill_batch`
call per arch, budget and scene source) at multiples of the family's default budget
(``--sweep KEY=m1,m2,...``: KEY a :class:`~graphnerf.fit.DistillConfig` field such as ``steps``
or ``batch_points``; each multiplier scales that arch's default, so ``1`` is the default
configuration; several ``--sweep`` flags give several one-dimensional sweeps that share the x1
point) and evaluates every fit at several image sizes on the same 4 framing views
(:func:`~graphnerf.fit.evaluate_sizes`; the scene's renders are computed once per scene and
reused). Reported per row: CPU seconds per NeRF of the fit (process time, amortised over the
batch; with one thread the wall time of a quiet machine), and per eval size ``psnr_fg`` mean,
5th percentile and minimum, whole-frame PSNR, coverage and occupancy IoU.

Rows are appended to the JSON (``--out``) as they finish and a rerun skips rows already there,
so an interrupted sweep resumes. ``--plot FILE.png`` draws ``psnr_fg`` against CPU s / NeRF, one
line per arch, a panel per scene source and eval size, with the goals (25 dB mean, 20 dB p5,
2 s) marked. ``--renders DIR`` also keeps every render (float16, for metric studies).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from ..fields import build_field
from ..fit import DistillConfig, distill_batch, fit_config
from ..fit.evaluate import evaluate_sizes
from .report import environment, write_json

#: Keys of the fit config that ``--sweep`` may scale (integers are rounded).
SWEEP_KEYS = ("steps", "batch_points", "cache_uniform", "cache_surface")


def parse_sweep(text: str) -> tuple[str, list[float]]:
    """``"steps=0.5,1,2"`` -> ``("steps", [0.5, 1.0, 2.0])``; a clear error otherwise."""
    key, sep, values = text.partition("=")
    if not sep or key not in SWEEP_KEYS:
        raise argparse.ArgumentTypeError(
            f"--sweep expects KEY=m1,m2,... with KEY one of {SWEEP_KEYS}, got {text!r}"
        )
    try:
        mults = [float(v) for v in values.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--sweep {key}: multipliers must be numbers, got {values!r}"
        ) from None
    if not mults or any(not m > 0 for m in mults):
        raise argparse.ArgumentTypeError(f"--sweep {key}: multipliers must be > 0, got {values!r}")
    return key, mults


def scaled_config(arch: str, key: str, mult: float, overrides: Sequence[str] = ()) -> DistillConfig:
    """The arch's distillation config (packaged defaults plus ``overrides``) with ``key`` x ``mult``."""
    from ..config import load_config

    family = build_field(arch, seed=0).spec.family
    cfg = load_config("fit/default", list(overrides)) if overrides else None
    c = fit_config(DistillConfig, cfg, "distill", family)
    value = getattr(c, key) * mult
    return dataclasses.replace(c, **{key: max(1, round(value))})


def budgets(sweeps: Sequence[tuple[str, list[float]]]) -> list[tuple[str, float]]:
    """The (key, multiplier) points of the sweeps, x1 once (as ``("steps", 1.0)``) and first."""
    out: list[tuple[str, float]] = [("steps", 1.0)]
    for key, mults in sweeps:
        out += [(key, m) for m in mults if m != 1.0 and (key, m) not in out]
    return out


def _percentile(values: Sequence[float], q: float) -> float:
    return float(torch.quantile(torch.tensor(values, dtype=torch.float64), q / 100.0))


def _summary(evals: list[dict]) -> dict:
    fgs = [e["psnr_fg"] for e in evals]
    return {
        "psnr_fg_mean": sum(fgs) / len(fgs),
        "psnr_fg_p5": _percentile(fgs, 5),
        "psnr_fg_min": min(fgs),
        "psnr_mean": sum(e["psnr"] for e in evals) / len(evals),
        "coverage_mean": sum(e["coverage"] for e in evals) / len(evals),
        "iou_mean": sum(e["iou"] for e in evals) / len(evals),
        "psnr_fgs": fgs,
        "psnr_fg_views": [e["psnr_fg_views"] for e in evals],
    }


def _row_id(source: str, arch: str, key: str, mult: float, batch: int, seed: int) -> str:
    return f"{source}/{arch}/{key}x{mult:g}/b{batch}/s{seed}"


def run_sweep(
    archs: Sequence[str],
    sweeps: Sequence[tuple[str, list[float]]],
    sources: Sequence[str] = ("procedural", "meshes"),
    batch: int = 16,
    sizes: Sequence[int] = (64, 128),
    n_samples: int = 128,
    seed: int = 0,
    overrides: Sequence[str] = (),
    out: str = "bench_out/fit_sweep.json",
    renders_dir: str | None = None,
    default_sizes: Sequence[int] | None = None,
) -> dict:
    """Run (or resume) the sweep; returns the JSON document written to ``out``.

    Scene ``i`` of a source is :func:`graphnerf.perf.fit.bench_scene` ``(i, seed, source)``,
    field ``i`` is ``build_field(arch, seed=seed * 1000 + i)``, point draws use
    ``torch.Generator().manual_seed(seed)``: the x1 point is the plain benchmark's batched row.
    ``default_sizes`` (default: ``sizes``) are the eval sizes of the x1 point, so that a costly
    size can be measured at the default budget only.
    """
    from .fit import bench_scene

    path = Path(out)
    doc = json.loads(path.read_text()) if path.exists() else {"rows": []}
    doc.update(
        {
            "sweeps": [[k, m] for k, m in sweeps],
            "batch_size": batch,
            "sizes": sorted(set(sizes) | set(default_sizes or sizes)),
            "n_samples": n_samples,
            "seed": seed,
            "overrides": list(overrides),
        }
    )
    doc.setdefault("environment", environment())
    done = {r["id"] for r in doc["rows"]}
    for source in sources:
        scenes = [bench_scene(i, seed, source) for i in range(batch)]
        references: list[dict] = [{} for _ in scenes]
        for key, mult in budgets(sweeps):
            for arch in archs:
                rid = _row_id(source, arch, key, mult, batch, seed)
                if rid in done:
                    continue
                row_sizes = tuple(default_sizes or sizes) if mult == 1.0 else tuple(sizes)
                c = scaled_config(arch, key, mult, overrides)
                fields = [build_field(arch, seed=seed * 1000 + i) for i in range(batch)]
                gen = torch.Generator().manual_seed(seed)
                load0 = os.getloadavg()[0]
                t0, c0 = time.perf_counter(), time.process_time()
                distill_batch(fields, scenes, cfg=c, generator=gen)
                wall = (time.perf_counter() - t0) / batch
                cpu = (time.process_time() - c0) / batch
                c1 = time.process_time()
                per_size: dict[int, list[dict]] = {s: [] for s in row_sizes}
                kept = []
                for i, (f, s) in enumerate(zip(fields, scenes, strict=True)):
                    ev = evaluate_sizes(
                        f,
                        s,
                        row_sizes,
                        n_samples,
                        reference=references[i],
                        keep_renders=renders_dir is not None,
                    )
                    for size in row_sizes:
                        per_size[size].append(ev[size])
                    if renders_dir is not None:
                        kept.append(
                            {sz: [t.half() for t in ev[sz].pop("renders")] for sz in row_sizes}
                        )
                row = {
                    "id": rid,
                    "source": source,
                    "arch": arch,
                    "key": key,
                    "mult": mult,
                    "steps": c.steps,
                    "batch_points": c.batch_points,
                    "cpu_seconds_per_nerf": cpu,
                    "seconds_per_nerf": wall,
                    "eval_cpu_seconds_per_nerf": (time.process_time() - c1) / batch,
                    "load_average": load0,
                    "scenes": [s.name for s in scenes],
                    "eval": {str(sz): _summary(per_size[sz]) for sz in row_sizes},
                }
                if renders_dir is not None:
                    Path(renders_dir).mkdir(parents=True, exist_ok=True)
                    torch.save(kept, Path(renders_dir) / (rid.replace("/", "_") + ".pt"))
                doc["rows"].append(row)
                done.add(rid)
                write_json(doc, out)
                print(row_line(row, row_sizes), flush=True)
    return doc


HEADER = (
    "| source | arch | budget | steps | points | CPU s / NeRF | size | PSNR-fg mean | PSNR-fg p5 "
    "| PSNR-fg min | IoU |\n|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
)


def row_line(r: dict, sizes: Sequence[int]) -> str:
    lines = []
    for sz in sizes:
        if str(sz) not in r["eval"]:
            continue
        e = r["eval"][str(sz)]
        lines.append(
            f"| {r['source']} | {r['arch']} | {r['key']} x{r['mult']:g} | {r['steps']} | "
            f"{r['batch_points']} | {r['cpu_seconds_per_nerf']:.2f} | {sz} | "
            f"{e['psnr_fg_mean']:.1f} | {e['psnr_fg_p5']:.1f} | {e['psnr_fg_min']:.1f} | "
            f"{e['iou_mean']:.3f} |"
        )
    return "\n".join(lines)


def format_sweep(doc: dict) -> str:
    sizes = doc.get("sizes", [64, 128])
    rows = sorted(
        doc["rows"],
        key=lambda r: (r["source"], r["arch"], r["key"] != "steps", r["key"], r["mult"]),
    )
    return "\n".join([HEADER] + [row_line(r, sizes) for r in rows])


def plot_sweep(doc: dict, path: str) -> None:
    """psnr_fg mean (solid) and p5 (dotted) against CPU s / NeRF, one colour per arch; a panel
    per scene source (rows) and eval size (columns); goals dashed grey."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sources = sorted({r["source"] for r in doc["rows"]}, reverse=True)
    sizes = doc.get("sizes", [64, 128])
    archs = list(dict.fromkeys(r["arch"] for r in doc["rows"]))
    colours = dict(zip(archs, ["tab:blue", "tab:orange", "tab:green", "tab:red"], strict=False))
    fig, axes = plt.subplots(
        len(sources),
        len(sizes),
        figsize=(5 * len(sizes), 4 * len(sources)),
        squeeze=False,
        sharey=True,
    )
    for a, source in enumerate(sources):
        for b, sz in enumerate(sizes):
            ax = axes[a][b]
            for arch in archs:
                rows = [
                    r
                    for r in doc["rows"]
                    if r["source"] == source
                    and r["arch"] == arch
                    and r["key"] == "steps"
                    and str(sz) in r["eval"]
                ]
                rows.sort(key=lambda r: r["cpu_seconds_per_nerf"])
                if not rows:
                    continue
                t = [r["cpu_seconds_per_nerf"] for r in rows]
                m = [r["eval"][str(sz)]["psnr_fg_mean"] for r in rows]
                p = [r["eval"][str(sz)]["psnr_fg_p5"] for r in rows]
                ax.plot(t, m, "o-", color=colours[arch], label=f"{arch} mean")
                ax.plot(t, p, "s:", color=colours[arch], label=f"{arch} p5")
                for r, ti, mi in zip(rows, t, m, strict=True):
                    ax.annotate(
                        f"x{r['mult']:g}",
                        (ti, mi),
                        fontsize=7,
                        xytext=(3, 3),
                        textcoords="offset points",
                    )
                other = [
                    r
                    for r in doc["rows"]
                    if r["source"] == source
                    and r["arch"] == arch
                    and r["key"] != "steps"
                    and str(sz) in r["eval"]
                ]
                for r in other:
                    ax.plot(
                        r["cpu_seconds_per_nerf"],
                        r["eval"][str(sz)]["psnr_fg_mean"],
                        "^",
                        color=colours[arch],
                        mfc="none",
                    )
                    ax.annotate(
                        f"{r['key'].replace('batch_', '')} x{r['mult']:g}",
                        (r["cpu_seconds_per_nerf"], r["eval"][str(sz)]["psnr_fg_mean"]),
                        fontsize=6,
                        xytext=(3, -8),
                        textcoords="offset points",
                    )
            ax.axhline(25, color="grey", ls="--", lw=0.8)
            ax.axhline(20, color="grey", ls=":", lw=0.8)
            ax.axvline(2, color="grey", ls="--", lw=0.8)
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
            ax.xaxis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
            ax.set_title(f"{source}, eval {sz}x{sz}", fontsize=10)
            ax.set_xlabel("fit CPU s / NeRF (batch of 16, 1 thread)")
            ax.set_ylabel("psnr_fg (dB)")
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7, ncol=2)
    fig.suptitle(
        "Fit quality vs time: steps x0.5..x4 of the default (o mean, s p5; "
        "triangles: other sweeps); goals: 25 dB mean, 20 dB p5, 2 s",
        fontsize=9,
    )
    fig.tight_layout()
    from ..atomic import atomic_write

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)


def add_sweep_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("trade-off sweep (graphnerf.perf.fit_sweep)")
    g.add_argument(
        "--sweep",
        action="append",
        type=parse_sweep,
        default=[],
        help="KEY=m1,m2,...: fit at these multiples of each arch's default KEY "
        f"({', '.join(SWEEP_KEYS)}); repeatable; e.g. steps=0.5,1,2,4",
    )
    g.add_argument("--sweep-scenes", nargs="*", default=["procedural", "meshes"])
    g.add_argument("--sweep-batch", type=int, default=16)
    g.add_argument("--sweep-sizes", nargs="*", type=int, default=[64, 128])
    g.add_argument(
        "--sweep-default-sizes",
        nargs="*",
        type=int,
        default=None,
        help="eval sizes of the x1 point (default: --sweep-sizes)",
    )
    g.add_argument("--renders", default=None, help="keep every render here (float16 .pt)")
    g.add_argument("--plot", default=None, help="PNG of psnr_fg vs CPU s / NeRF")


def run_sweep_from_args(a: argparse.Namespace) -> int:
    out = "bench_out/fit_sweep.json" if a.out == "bench_out/fit.json" else a.out
    doc = run_sweep(
        a.archs,
        a.sweep,
        a.sweep_scenes,
        a.sweep_batch,
        a.sweep_sizes,
        a.samples,
        a.seed,
        a.override,
        out,
        a.renders,
        a.sweep_default_sizes,
    )
    print()
    print(format_sweep(doc))
    if a.plot:
        plot_sweep(doc, a.plot)
    rows = doc["rows"]
    return 0 if all(math.isfinite(r["cpu_seconds_per_nerf"]) for r in rows) else 1
