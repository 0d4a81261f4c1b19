"""Probe suite: do the encoders read where values sit in space? (issue 13)

``python scripts/bench.py probes [--tasks ...] [--models gmn sane deepsets] [--steps 1000]
[--seeds 0] [--schedule constant] [--out FILE]``

For every task of :mod:`graphnerf.probes.tasks` (64 training and 32 held-out fields) and every
model, trains the encoder + a linear head with Adam on batches of 16 (:func:`run_probe`, constant
learning rate unless ``--schedule`` says otherwise) and prints a table of held-out R^2 (train R^2
in brackets), averaged over the seeds, then each model's held-out R^2 minus DeepSets' on the
same seed (:func:`gap_table`), with the steps, learning rates, threads and CPU seconds. A line
per run is printed as it finishes. Models (each at its default configuration):

* ``gmn`` — :class:`~graphnerf.models.GMNEncoder` on the default ``to_graph`` graphs;
* ``sane`` — :class:`~graphnerf.models.sane.SANEAutoencoder` ``.embed`` on the default tokens
  (:mod:`graphnerf.probes.sane`);
* ``gmn_probes`` — the same on ``to_graph(field, probe_vertices=8)`` (hash tasks only);
* ``deepsets`` — the DeepSets baseline over the edges' (value, Fourier(node_pos))
  (:mod:`graphnerf.probes.deepsets`), 3 SiLU layers of width :data:`DEEPSETS_WIDTH`.

``--merge a.json b.json ...`` prints (and writes) the table of several runs' rows, e.g. of one
run per model.

Run with one thread on a shared machine (``OMP_NUM_THREADS=1``; the suite sets
``torch.set_num_threads(--threads)``).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from ..probes.runner import SCHEDULES, ProbeModel, run_probe
from ..probes.tasks import TASKS, make_task
from .report import environment, write_json

__all__ = ["MODELS", "LEARNING_RATES", "main", "make_model"]

MODELS: tuple[str, ...] = ("gmn", "gmn_probes", "sane", "deepsets")
#: Adam learning rate of each model in the probes (each model's better of 1e-3 / 3e-3 on the
#: dense-hash probe: the GMN fails at 3e-3, DeepSets is best there; SANE at 3e-3 moved one seed
#: up and another down by more than the gap to DeepSets, README)
LEARNING_RATES: dict[str, float] = {
    "gmn": 1e-3,
    "gmn_probes": 1e-3,
    "sane": 1e-3,
    "deepsets": 3e-3,
}
#: DeepSets width in the suite (64: 4x cheaper than 128 on the shared 2-core machine)
DEEPSETS_WIDTH = 64
#: probe-vertex lattice of ``gmn_probes`` (hash tasks only; other tasks: same as ``gmn``)
PROBE_LATTICE = 8


def _print_now(line: str) -> None:
    print(line, flush=True)  # one line per run, visible in a log file while the suite runs


def make_model(name: str, seed: int = 0) -> ProbeModel:
    """A fresh model of the suite by name (default configuration), initialised from ``seed``
    (the GMN and DeepSets draw from torch's global generator, which :func:`run_suite` seeds;
    SANE takes the seed for its initialisation and its per-batch draws)."""
    if name == "gmn":
        from ..probes.gmn import GMNProbe

        return GMNProbe()
    if name == "gmn_probes":
        import functools

        from ..graph import to_graph
        from ..probes.gmn import GMNProbe

        return GMNProbe(graph_fn=functools.partial(to_graph, probe_vertices=PROBE_LATTICE))
    if name == "sane":
        from ..probes.sane import SANEProbe

        return SANEProbe(seed=seed)
    if name == "deepsets":
        from ..probes.deepsets import DeepSetsProbe

        return DeepSetsProbe(width=DEEPSETS_WIDTH)
    raise ValueError(f"unknown probe model {name!r}; expected one of {MODELS}")


def run_suite(
    tasks: tuple[str, ...],
    models: tuple[str, ...],
    steps: int,
    seeds: tuple[int, ...],
    n_train: int = 64,
    n_val: int = 32,
    log: Callable[[str], None] | None = _print_now,
    schedule: str = "constant",
) -> list[dict[str, Any]]:
    """Every (task, model, seed) once; one result dict each (:class:`ProbeResult` fields)."""
    rows = []
    for task_name in tasks:
        for seed in seeds:
            task = make_task(task_name, n_train, n_val, seed=seed)
            for model in models:
                if model == "gmn_probes" and not task_name.endswith("hash"):
                    continue  # probe vertices exist for hash grids only
                torch.manual_seed(seed)
                m = make_model(model, seed)
                r = run_probe(
                    task,
                    m,
                    model,
                    steps=steps,
                    lr=LEARNING_RATES[model],
                    seed=seed,
                    schedule=schedule,
                )
                rows.append(r.to_dict())
                if log is not None:
                    log(
                        f"{task_name:12s} {model:9s} seed {seed}: held-out R^2 {r.r2_val:6.3f} "
                        f"(train {r.r2_train:6.3f}) {r.seconds:6.1f} s"
                    )
    return rows


def table(rows: list[dict[str, Any]], tasks: tuple[str, ...], models: tuple[str, ...]) -> str:
    """Markdown table task x model of the mean held-out R^2 (± its sample standard deviation
    over seeds when there are several; mean train R^2 in brackets)."""
    lines = ["| task | " + " | ".join(models) + " |", "|---" * (len(models) + 1) + "|"]
    for t in tasks:
        cells = []
        for m in models:
            rs = [r for r in rows if r["task"] == t and r["model"] == m]
            if not rs:
                cells.append("-")
                continue
            val = statistics.mean(r["r2_val"] for r in rs)
            tr = statistics.mean(r["r2_train"] for r in rs)
            if len(rs) > 1:  # several seeds: mean ± sample standard deviation of held-out R^2
                sd = statistics.stdev(r["r2_val"] for r in rs)
                cells.append(f"{val:.3f} ± {sd:.3f} ({tr:.3f})")
            else:
                cells.append(f"{val:.3f} ({tr:.3f})")
        lines.append(f"| {t} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def gap_table(
    rows: list[dict[str, Any]],
    tasks: tuple[str, ...],
    models: tuple[str, ...],
    baseline: str = "deepsets",
) -> str:
    """Markdown table task x model of the held-out R^2 *minus the baseline's on the same seed*
    (same fields, same targets): mean over the seeds both ran, then the worst seed and the number
    of seeds in brackets. Positive: ahead of the baseline."""
    others = tuple(m for m in models if m != baseline)
    lines = ["| task | " + " | ".join(f"{m} - {baseline}" for m in others) + " |"]
    lines.append("|---" * (len(others) + 1) + "|")
    for t in tasks:
        base = {r["seed"]: r["r2_val"] for r in rows if r["task"] == t and r["model"] == baseline}
        cells = []
        for m in others:
            d = [
                r["r2_val"] - base[r["seed"]]
                for r in rows
                if r["task"] == t and r["model"] == m and r["seed"] in base
            ]
            n = f"{len(d)} seed" + ("s" if len(d) > 1 else "")
            cells.append(f"{statistics.mean(d):+.3f} (worst {min(d):+.3f}, {n})" if d else "-")
        lines.append(f"| {t} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.py probes", description=__doc__.split("\n")[0])
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--schedule",
        default="constant",
        choices=SCHEDULES,
        help="learning-rate schedule (graphnerf.probes.runner.SCHEDULES; constant by default)",
    )
    p.add_argument("--out", default="bench_out/probes.json")
    p.add_argument("--merge", nargs="+", default=None, help="JSON results to combine")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    tasks, models = tuple(a.tasks), tuple(a.models)
    t0 = time.process_time()
    if a.merge:
        import json
        from pathlib import Path

        rows = [r for f in a.merge for r in json.loads(Path(f).read_text())["rows"]]
        steps = {r["steps"] for r in rows}
        a.steps = steps.pop() if len(steps) == 1 else sorted(steps)
        a.seeds = sorted({r["seed"] for r in rows})
    else:
        rows = run_suite(tasks, models, a.steps, tuple(a.seeds), schedule=a.schedule)
    tab = table(rows, tasks, models)
    head = f"held-out R^2 (train R^2), {a.steps} Adam steps, batch 16, seeds {a.seeds}"
    print(f"\n{head}, learning rates {LEARNING_RATES}")
    print(tab)
    gaps = gap_table(rows, tasks, models) if "deepsets" in models else ""
    if gaps:
        print("\nheld-out R^2 minus DeepSets' on the same seed")
        print(gaps)
    result = {
        "suite": "probes",
        "steps": a.steps,
        "seeds": a.seeds,
        "learning_rates": {m: LEARNING_RATES[m] for m in models},
        "schedules": sorted({r.get("schedule", "constant") for r in rows}),
        "environment": environment(),
        # a merge reports the runs' own CPU time (training + preparation), not its own
        "cpu_seconds": (
            sum(r.get("seconds", 0.0) + r.get("prepare_seconds", 0.0) for r in rows)
            if a.merge
            else time.process_time() - t0
        ),
        "table": tab,
        "gaps": gaps,
        "rows": rows,
    }
    write_json(result, a.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
