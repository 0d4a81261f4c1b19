"""``RUN/report.md`` and ``RUN/results.json``: every benchmark of an experiment in one place.

Reads ``RUN/bench/<run>/results.json`` (the benchmark contract of :mod:`graphnerf.bench`) and
``RUN/stages.json``, and writes:

* the main table: each headline run (e.g. GMN, SANE), each one's random initialisation, the
  functional probe and chance, on the issue's metrics (classification of seen and unseen
  architectures, cross-architecture recall@1 over the 6 ordered pairs of mlp / triplane / hash,
  the same with the query's rotation left out of the gallery, relative-rotation error);
* the goals, each beside what was reached (never tuned on test: the checkpoints are chosen on the
  val split);
* leave-one-family-out: for each ``lofo_*`` run, recall@1 and accuracy on the family it never saw;
* the time of every stage, with the threads and the load it ran under;
* ``experiment.png``: the headline metrics as grouped bars.

Runs whose benchmark has not run yet are listed as missing, never filled in.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from ..atomic import atomic_write_text

__all__ = ["GOALS", "collect", "write_experiment_report"]

# (label, key in a row, goal, comparison) of the quality goals
GOALS: tuple[tuple[str, str, float, str], ...] = (
    ("classification, 3 training archs", "acc_seen", 0.95, ">="),
    ("classification, unseen archs", "acc_unseen", 0.90, ">="),
    ("recall@1, 6 ordered pairs of mlp/triplane/hash", "r1", 0.90, ">="),
    ("relative rotation, median error (deg)", "rot_median", 15.0, "<="),
)
LOFO_GOAL = 0.6


def _get(d: Mapping[str, Any] | None, dotted: str) -> Any:
    cur: Any = d
    for k in dotted.split("."):
        if not isinstance(cur, Mapping) or k not in cur:
            return None
        cur = cur[k]
    return cur


def _row(res: Mapping[str, Any]) -> dict[str, Any]:
    """The headline numbers of one representation's results block."""
    return {
        "acc_seen": _get(res, "classification.seen"),
        "acc_unseen": _get(res, "classification.unseen"),
        "r1": _get(res, "retrieval.mean_recall_at_1"),
        "r1_other_rotation": _get(res, "retrieval.mean_recall_at_1_other_rotation"),
        "r1_all_archs": _get(res, "retrieval.cross_arch_mean_recall_at_1"),
        "rot_median": _get(res, "rotation.median_deg") if _get(res, "rotation.available") else None,
    }


def collect(cfg: DictConfig) -> dict[str, Any]:
    """Everything the report shows, as JSON-ready numbers (also ``RUN/results.json``)."""
    from .ledger import Ledger
    from .stages import Stage, stage_times

    root = Path(str(cfg.out_dir))
    benches: dict[str, dict[str, Any]] = {}
    for run in cfg.runs:
        p = root / "bench" / run / "results.json"
        if p.is_file():
            benches[run] = json.loads(p.read_text())
    rows: dict[str, dict[str, Any]] = {}
    baselines: dict[str, dict[str, Any]] = {}
    chance: dict[str, Any] = {}
    for run in cfg.report.headline:
        if run not in benches:
            continue
        b = benches[run]
        rows[run] = _row(b)
        rows[run]["description"] = _get(b, "model.description")
        rows[run]["checkpoint_hash"] = b.get("checkpoint_hash")
        for name, res in (b.get("baselines") or {}).items():
            key = f"{run} (random init)" if name == "random_init" else name
            if name == "functional_probe":  # named by its PCA size (runs may differ in it)
                dims = re.search(r"PCA to (\d+) dims", str(res.get("description", "")))
                key = f"functional probe (PCA {dims.group(1)})" if dims else "functional probe"
            baselines.setdefault(key, _row(res))
        if not chance:
            chance = {
                "acc_seen": _get(b, "classification.chance"),
                "acc_unseen": _get(b, "classification.chance"),
                "r1": _get(b, "retrieval.chance_mean_recall_at_1"),
                "r1_other_rotation": _get(b, "retrieval.chance_mean_recall_at_1_other_rotation"),
                "r1_all_archs": None,
                "rot_median": _get(b, "rotation.identity_median_deg"),
            }
    baselines = dict(sorted(baselines.items(), key=lambda kv: kv[0].startswith("functional")))
    lofo: dict[str, dict[str, Any]] = {}
    for run, b in benches.items():
        held = b.get("held_out_family") or {}
        for fam, v in held.items():
            lofo[run] = {
                "held_out_family": fam,
                "recall_at_1": v.get("mean_recall_at_1"),
                "accuracy": v.get("accuracy"),
                "archs": v.get("archs"),
                "seen_archs": _get(b, "model.train_archs"),
                "r1_seen_pairs": _get(b, "retrieval.mean_recall_at_1"),
            }
    fp_lofo = None
    for b in benches.values():
        fp = _get(b, "baselines.functional_probe")
        if fp is not None:
            fp_lofo = fp
            break
    zoo = next((b.get("zoo") for b in benches.values() if b.get("zoo")), None)
    return {
        "experiment": str(cfg.get("name", "")),
        "runs": rows,
        "baselines": baselines,
        "chance": chance,
        "lofo": lofo,
        "functional_probe_all_archs_r1": _get(fp_lofo, "retrieval.cross_arch_mean_recall_at_1"),
        "missing": [r for r in cfg.runs if r not in benches],
        "stages": stage_times(
            Ledger(root).read(),
            ["zoo", *(Stage(k, r).name for k in ("train", "bench") for r in cfg.runs), "report"],
        ),
        "zoo": zoo,
        "scale": {k: int(v) for k, v in cfg.scale.items()},
    }


def _fmt(v: Any, deg: bool = False) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.1f}" if deg else f"{100 * v:.1f}"


def _table(rows: Mapping[str, Mapping[str, Any]]) -> list[str]:
    out = [
        "| representation | acc seen | acc unseen | R@1 6 pairs | R@1 other rotation "
        "| R@1 all archs | rotation median (deg) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in rows.items():
        out.append(
            f"| {name} | {_fmt(r.get('acc_seen'))} | {_fmt(r.get('acc_unseen'))} "
            f"| {_fmt(r.get('r1'))} | {_fmt(r.get('r1_other_rotation'))} "
            f"| {_fmt(r.get('r1_all_archs'))} | {_fmt(r.get('rot_median'), deg=True)} |"
        )
    return out


def _plot(data: Mapping[str, Any], path: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    reps = {**data["runs"], **data["baselines"], "chance": data["chance"]}
    if not data["runs"]:
        return None
    keys = [("acc_seen", "acc seen"), ("acc_unseen", "acc unseen"), ("r1", "R@1 6 pairs"),
            ("r1_other_rotation", "R@1 other rot.")]
    fig, ax = plt.subplots(figsize=(8, 3.6))
    w = 0.8 / len(reps)
    x = np.arange(len(keys))
    for i, (name, r) in enumerate(reps.items()):
        vals = [np.nan if r.get(k) is None else 100 * r[k] for k, _ in keys]
        ax.bar(x + (i - (len(reps) - 1) / 2) * w, vals, w, label=name)
    ax.set_xticks(x, [lab for _, lab in keys])
    ax.set_ylabel("% (test split)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=7, ncol=2)
    ax.set_title(f"experiment {data['experiment']}: held-out objects")
    fig.tight_layout()
    from ..atomic import atomic_write

    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)
    return path


def _goal_lines(data: Mapping[str, Any]) -> list[str]:
    names = list(data["runs"])
    fps = [k for k in data["baselines"] if k.startswith("functional probe")]
    fp = data["baselines"][fps[0]] if fps else {}
    out = [
        "| goal | target | " + " | ".join(names) + f" | {fps[0] if fps else 'functional probe'} |",
        "|---|---:|" + "---:|" * (len(names) + 1),
    ]
    for label, key, target, cmp in GOALS:
        deg = key == "rot_median"
        cells = []
        for n in names:
            v = data["runs"][n].get(key)
            ok = v is not None and (v >= target if cmp == ">=" else v <= target)
            cells.append(f"{_fmt(v, deg)}{' (met)' if ok else ''}")
        tgt = f"{cmp} {target:g}" if deg else f"{cmp} {100 * target:.0f}"
        out.append(f"| {label} | {tgt} | " + " | ".join(cells) + f" | {_fmt(fp.get(key), deg)} |")
    if data["lofo"]:
        vals = [v["recall_at_1"] for v in data["lofo"].values() if v["recall_at_1"] is not None]
        mean = sum(vals) / len(vals) if vals else None
        out.append(
            f"| leave-one-family-out R@1 on the held-out family (mean of {len(vals)}) "
            f"| >= {100 * LOFO_GOAL:.0f} | {_fmt(mean)} (GMN runs) |" + " |" * len(names)
        )
    return out


def write_experiment_report(cfg: DictConfig) -> list[Path]:
    """Write ``RUN/results.json``, ``RUN/report.md`` and ``RUN/experiment.png``."""
    root = Path(str(cfg.out_dir))
    data = collect(cfg)
    written = [
        atomic_write_text(root / "results.json", json.dumps(data, indent=2, sort_keys=True) + "\n")
    ]
    lines = [f"# Experiment `{data['experiment']}`", ""]
    if data["zoo"]:
        lines += [_zoo_line(data["zoo"]), ""]
    lines += [
        "Held-out objects (the zoo's test split), percent; checkpoints chosen on the val split. "
        "'R@1 6 pairs': same-object recall@1 over the ordered pairs of mlp / triplane / hash; "
        "'other rotation': the query's own rotation left out of the gallery; 'all archs': over "
        "every ordered pair of the test architectures.",
        "",
        *_table({**data["runs"], **data["baselines"], "chance": data["chance"]}),
        "",
        "## Goals",
        "",
        *_goal_lines(data),
        "",
    ]
    if data["lofo"]:
        lines += [
            "## Leave one family out",
            "",
            "| run | trained on | held-out family | R@1 involving it | accuracy on it "
            "| R@1 seen pairs |",
            "|---|---|---|---:|---:|---:|",
        ]
        for run, v in data["lofo"].items():
            lines.append(
                f"| {run} | {', '.join(v['seen_archs'] or [])} | {v['held_out_family']} "
                f"| {_fmt(v['recall_at_1'])} | {_fmt(v['accuracy'])} | {_fmt(v['r1_seen_pairs'])} |"
            )
        lines.append("")
    if data["missing"]:
        lines += [f"Not benchmarked yet: {', '.join(data['missing'])}.", ""]
    png = _plot(data, root / "experiment.png")
    if png is not None:
        written.append(png)
        lines += ["![headline metrics](experiment.png)", ""]
    lines += _stage_lines(data["stages"])
    per_run = [r for r in cfg.runs if (root / "bench" / r / "report.md").is_file()]
    if per_run:
        lines += ["", "Per-run benchmark reports (plots): "
                  + ", ".join(f"[{r}](bench/{r}/report.md)" for r in per_run)]
    written.append(atomic_write_text(root / "report.md", "\n".join(lines) + "\n"))
    return written


def _zoo_line(zoo: Mapping[str, Any]) -> str:
    """``Zoo: 1,144 NeRFs of 104 objects, 13 classes; train: 390 NeRFs (65 objects; mlp, ...)``."""
    parts = []
    for split, v in (zoo.get("splits") or {}).items():
        archs = v.get("archs") or {}
        parts.append(
            f"{split}: {v.get('nerfs')} NeRFs of {v.get('objects')} objects in {len(archs)} "
            f"architectures"
        )
    return (
        f"Zoo `{zoo.get('path')}`: {zoo.get('nerfs')} NeRFs of {zoo.get('objects')} objects, "
        f"{len(zoo.get('classes') or [])} classes; " + "; ".join(parts) + "."
    )


def _stage_lines(stages: Sequence[Mapping[str, Any]]) -> list[str]:
    if not stages:
        return []
    out = [
        "## Compute",
        "",
        "| stage | wall (min) | CPU (min) | threads | load at start |",
        "|---|---:|---:|---:|---:|",
    ]
    for s in stages:
        wall = s.get("wall_s")
        cpu = s.get("cpu_s")
        out.append(
            f"| {s['stage']} | {'-' if wall is None else f'{wall / 60:.1f}'} "
            f"| {'-' if cpu is None else f'{cpu / 60:.1f}'} | {s.get('threads')} "
            f"| {s.get('load_at_start')} |{' (stopped early)' if s.get('partial') else ''}"
        )
    return out
