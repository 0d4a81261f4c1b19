"""`scripts/bench.py fields`: forward and forward+backward time of every zoo spec.

Goal stated in the foundation issue: the ``hash`` spec's forward+backward at 65,536 points within
3x of the ``mlp`` spec's time on the CPU. Reports medians over repeats, with the seed and the
machine's thread count, as a markdown table and JSON.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence

import torch

from ..fields import ZOO, build_field
from .report import environment, write_json


def _time(fn, repeats: int) -> float:
    fn()  # warm-up
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def bench_fields(
    n_points: int = 65536, repeats: int = 5, seed: int = 0, archs: Sequence[str] | None = None
) -> dict:
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(n_points, 3, generator=g) - 0.5) * 1.4
    rows = []
    for name in archs or list(ZOO):
        field = build_field(name, seed=seed)

        def fwd(field=field):
            with torch.no_grad():
                field(x)

        def fwd_bwd(field=field):
            field.zero_grad(set_to_none=True)
            sigma, rgb = field(x)
            (sigma.mean() + rgb.mean()).backward()

        rows.append(
            {
                "arch": name,
                "params": field.spec.n_params,
                "forward_s": _time(fwd, repeats),
                "forward_backward_s": _time(fwd_bwd, repeats),
            }
        )
    ref = next((r["forward_backward_s"] for r in rows if r["arch"] == "mlp"), None)
    for r in rows:
        r["fb_vs_mlp"] = None if ref is None else r["forward_backward_s"] / ref
    return {
        "n_points": n_points,
        "repeats": repeats,
        "seed": seed,
        **environment(),
        "rows": rows,
    }


def format_table(res: dict) -> str:
    lines = [
        f"{res['n_points']:,} points, median of {res['repeats']}, "
        f"{res['threads']} threads, torch {res['torch']}",
        "",
        "| arch | params | forward (ms) | fwd+bwd (ms) | fwd+bwd / mlp |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in res["rows"]:
        ratio = "" if r["fb_vs_mlp"] is None else f"{r['fb_vs_mlp']:.2f}x"
        lines.append(
            f"| {r['arch']} | {r['params']:,} | {1e3 * r['forward_s']:.1f} | "
            f"{1e3 * r['forward_backward_s']:.1f} | {ratio} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.py fields", description=__doc__)
    p.add_argument("--points", type=int, default=65536)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--archs", nargs="*", default=None)
    p.add_argument("--out", default="bench_out/fields.json")
    a = p.parse_args(argv)
    res = bench_fields(a.points, a.repeats, a.seed, a.archs)
    print(format_table(res))
    write_json(res, a.out)
    return 0
