"""`python -m graphnerf.perf.graph`: size, speed and memory of `to_graph` per architecture.

For every zoo spec and the Instant-NGP hash grid (16 levels x 2 features, 2^19 entries, res
16..2048, 64 neurons) it reports nodes, edges, the bytes of the graph's tensors, ``to_graph`` time
(first call and median of ``--runs``), the time of a plain ``clone()`` of the same output tensors
(the floor: any converter must at least write those bytes) and the ratio, and the peak extra
memory of one call. Goal (graph issue): Instant-NGP ``to_graph`` <= 1.0 s on a 2-core CPU, peak
extra memory <= 2x the graph's bytes.

How memory is measured: each spec runs in a fresh subprocess (so one spec's allocator state does
not leak into the next). Right before the measured call the child resets the kernel's peak-RSS
counter (``echo 5 > /proc/self/clear_refs``, Linux) and reads its current RSS; after the call,
``peak extra = VmHWM - RSS before``. This sees every allocation, torch's included (tracemalloc
does not see torch's allocator), and counts the returned graph itself, so the ideal converter
scores 1.0x; anything above is temporaries. Where ``clear_refs`` is unavailable it falls back to
``ru_maxrss`` (the process-lifetime peak, an upper bound for small specs), flagged in the output.

Timing: the first call of a process is reported separately; it pays the kernel's first touch of
fresh pages, which on virtual machines can cost several times the steady state.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

import torch

from ..fields import ZOO, FieldSpec, HashGridSpec, build_field
from ..graph import HashedLevelsViaProbes, to_graph
from ..graph.serialize import graph_bytes
from .report import environment, write_json

INSTANT_NGP = HashGridSpec(
    n_levels=16,
    n_features_per_level=2,
    log2_table_size=19,
    base_resolution=16,
    max_resolution=2048,
    n_neurons=64,
)
PROBE_LATTICE = 8  # the probe-vertex row: an 8^3 lattice
GOAL_SECONDS = 1.0
GOAL_MEMORY_RATIO = 2.0


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_bytes(exact: bool) -> int:
    if exact:
        with open("/proc/self/status") as f:
            return int(re.search(r"VmHWM:\s+(\d+)\s*kB", f.read()).group(1)) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def measure(spec: FieldSpec, runs: int = 5, probe_vertices: int = 0) -> dict[str, Any]:
    """Measure one spec in this process (call it in a fresh process for the memory figure).

    With ``probe_vertices`` (hash grids), ``to_graph`` appends that lattice of probe vertices,
    and the row also reports the encoder view :class:`~graphnerf.graph.HashedLevelsViaProbes`
    (nodes, edges, bytes, seconds)."""
    field = build_field(spec, seed=0)
    to_graph(build_field("mlp_32_width", seed=0))  # warm torch up on a tiny graph
    gc.collect()
    exact = _reset_peak()
    rss0 = _rss_bytes()
    t = time.perf_counter()
    g = to_graph(field, probe_vertices=probe_vertices)
    first = time.perf_counter() - t
    peak_extra = _peak_bytes(exact) - rss0
    nbytes = graph_bytes(g)
    times, clones = [], []
    for _ in range(runs):
        del g
        gc.collect()
        t = time.perf_counter()
        g = to_graph(field, probe_vertices=probe_vertices)
        times.append(time.perf_counter() - t)
    tensors = [v for _, v in g.items() if isinstance(v, torch.Tensor)]
    for _ in range(runs):
        t = time.perf_counter()
        copy = [v.clone() for v in tensors]
        clones.append(time.perf_counter() - t)
        del copy
        gc.collect()
    med, clone = statistics.median(times), statistics.median(clones)
    view: dict[str, Any] = {}
    if probe_vertices:
        t = time.perf_counter()
        v = HashedLevelsViaProbes()(g)
        view = {
            "view_s": time.perf_counter() - t,
            "view_nodes": int(v.num_nodes),
            "view_edges": int(v.edge_index.shape[1]),
            "view_bytes": graph_bytes(v),
        }
    return {
        "spec": spec.to_json(),
        "probe_vertices": probe_vertices,
        **view,
        "nodes": int(g.num_nodes),
        "edges": int(g.edge_index.shape[1]),
        "graph_bytes": nbytes,
        "first_s": first,
        "median_s": med,
        "clone_s": clone,
        "time_vs_clone": med / clone if clone > 0 else None,
        "peak_extra_bytes": peak_extra,
        "memory_ratio": peak_extra / nbytes,
        "memory_exact": exact,
    }


def _child(spec_json: str, runs: int, probe_vertices: int = 0) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "graphnerf.perf.graph", "--child", spec_json, "--runs", str(runs)]
    cmd += ["--probe-vertices", str(probe_vertices)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def bench_graph(
    archs: Sequence[str] | None = None,
    runs: int = 5,
    instant_ngp: bool = True,
    ngp_runs: int = 3,
    probe_vertices: int = PROBE_LATTICE,
) -> dict[str, Any]:
    """Run every spec in its own subprocess and collect the rows (``probe_vertices``: also
    Instant-NGP with that lattice of probe vertices and its encoder view; 0: skip)."""
    rows = []
    todo: list[tuple[str, FieldSpec, int, int]] = [
        (n, ZOO[n], runs, 0) for n in (archs or list(ZOO))
    ]
    if instant_ngp:
        todo.append(("instant_ngp", INSTANT_NGP, ngp_runs, 0))
        if probe_vertices:
            todo.append(
                (f"instant_ngp+probes{probe_vertices}", INSTANT_NGP, ngp_runs, probe_vertices)
            )
    for name, spec, n, pv in todo:
        rows.append({"arch": name, **_child(spec.to_json(), n, pv)})
    ngp = next((r for r in rows if r["arch"] == "instant_ngp"), None)
    ngp_probes = next((r for r in rows if r["arch"].startswith("instant_ngp+")), None)
    return {
        **environment(),
        "runs": runs,
        "rows": rows,
        "goal": {
            "instant_ngp_seconds": GOAL_SECONDS,
            "instant_ngp_memory_ratio": GOAL_MEMORY_RATIO,
            "met": None
            if ngp is None
            else bool(ngp["median_s"] <= GOAL_SECONDS and ngp["memory_ratio"] <= GOAL_MEMORY_RATIO),
            "met_with_probes": None
            if ngp_probes is None
            else bool(
                ngp_probes["median_s"] <= GOAL_SECONDS
                and ngp_probes["memory_ratio"] <= GOAL_MEMORY_RATIO
            ),
        },
    }


def format_table(res: dict[str, Any]) -> str:
    lines = [
        f"to_graph, median of {res['runs']} runs (Instant-NGP: fewer), {res['threads']} threads, "
        f"{res['cpu_count']} CPUs, torch {res['torch']}",
        "",
        "| arch | nodes | edges | graph MB | first (ms) | median (ms) | clone (ms) | "
        "/ clone | peak extra MB | / graph |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in res["rows"]:
        mark = "" if r["memory_exact"] else " (ru_maxrss)"
        lines.append(
            f"| {r['arch']} | {r['nodes']:,} | {r['edges']:,} | {r['graph_bytes'] / 1e6:.2f} | "
            f"{r['first_s'] * 1e3:.1f} | {r['median_s'] * 1e3:.1f} | {r['clone_s'] * 1e3:.1f} | "
            f"{r['time_vs_clone']:.2f} | {r['peak_extra_bytes'] / 1e6:.2f}{mark} | "
            f"{r['memory_ratio']:.2f} |"
        )
    for r in res["rows"]:
        if r.get("view_edges") is not None:
            lines += [
                "",
                f"{r['arch']}, encoder view (HashedLevelsViaProbes: hashed levels through the "
                f"{r['probe_vertices']}^3 probe vertices only): {r['view_nodes']:,} nodes, "
                f"{r['view_edges']:,} edges, {r['view_bytes'] / 1e6:.2f} MB, "
                f"{r['view_s'] * 1e3:.0f} ms",
            ]
    goal = res["goal"]
    if goal["met"] is not None:
        lines += [
            "",
            f"Instant-NGP goal (<= {goal['instant_ngp_seconds']} s median, peak extra "
            f"<= {goal['instant_ngp_memory_ratio']}x graph bytes): "
            f"{'met' if goal['met'] else 'NOT met'}"
            + (
                ""
                if goal.get("met_with_probes") is None
                else f"; with probe vertices: {'met' if goal['met_with_probes'] else 'NOT met'}"
            ),
        ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m graphnerf.perf.graph", description=__doc__.split("\n")[0]
    )
    p.add_argument("--out", default=None, help="write the results as JSON here")
    p.add_argument("--runs", type=int, default=5, help="timed calls per spec (median)")
    p.add_argument("--ngp-runs", type=int, default=3, help="timed calls for Instant-NGP")
    p.add_argument("--archs", nargs="*", default=None, help="zoo names (default: all 13)")
    p.add_argument("--no-instant-ngp", action="store_true", help="skip the Instant-NGP spec")
    p.add_argument(
        "--probe-vertices",
        type=int,
        default=PROBE_LATTICE,
        help="also time Instant-NGP with this n^3 lattice of probe vertices (0: skip)",
    )
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child is not None:
        spec = FieldSpec.from_json(args.child)
        print(json.dumps(measure(spec, args.runs, args.probe_vertices)))
        return 0
    res = bench_graph(
        args.archs, args.runs, not args.no_instant_ngp, args.ngp_runs, args.probe_vertices
    )
    print(format_table(res))
    if args.out:
        write_json(res, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
