"""Zoo summaries: counts per split / class / arch, PSNR and IoU distributions, time per NeRF.

:func:`summarize` turns manifest records into a JSON-ready dict (what ``summary.json`` holds);
:func:`format_summary` renders it as the table ``graphnerf generate`` and ``graphnerf zoo-info``
print.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["distribution", "format_summary", "summarize"]

_MAX_LISTED = 20


def distribution(values: Iterable[Any]) -> dict[str, float | int | None]:
    """``n, mean, min, p5, median, max`` of the finite numbers among ``values`` (None if none)."""
    v = np.array(
        [float(x) for x in values if isinstance(x, int | float) and math.isfinite(x)],
        dtype=np.float64,
    )
    if v.size == 0:
        return {"n": 0, "mean": None, "min": None, "p5": None, "median": None, "max": None}
    return {
        "n": int(v.size),
        "mean": float(v.mean()),
        "min": float(v.min()),
        "p5": float(np.percentile(v, 5)),
        "median": float(np.median(v)),
        "max": float(v.max()),
    }


def _counts(records: Sequence[Mapping[str, Any]], key: str) -> dict[str, int]:
    return dict(sorted(Counter(str(r[key]) for r in records).items()))


def summarize(
    records: Sequence[Mapping[str, Any]],
    root: str | os.PathLike[str] | None = None,
    planned_ids: Iterable[str] | None = None,
) -> dict[str, Any]:
    """Statistics of a zoo's manifest records.

    Args:
        records: validated manifest records (:func:`~graphnerf.data.read_manifest`).
        root: the zoo folder; when given, records whose file is missing are listed.
        planned_ids: the ids the generation config plans; when given, progress against the plan.
    """
    out: dict[str, Any] = {
        "n_nerfs": len(records),
        "counts": {key: _counts(records, key) for key in ("split", "class", "arch")},
        "psnr": distribution(r.get("psnr") for r in records),
        "psnr_fg": distribution(r.get("psnr_fg") for r in records),
        "coverage": distribution(r.get("coverage") for r in records),
        "iou": distribution(r.get("iou") for r in records),
        "seconds_per_nerf": distribution(r.get("seconds") for r in records)["mean"],
        "per_arch": {},
    }
    for arch in out["counts"]["arch"]:
        rs = [r for r in records if r["arch"] == arch]
        out["per_arch"][arch] = {
            "n": len(rs),
            "psnr": distribution(r.get("psnr") for r in rs),
            "psnr_fg": distribution(r.get("psnr_fg") for r in rs),
            "coverage_mean": distribution(r.get("coverage") for r in rs)["mean"],
            "iou_mean": distribution(r.get("iou") for r in rs)["mean"],
            "seconds_mean": distribution(r.get("seconds") for r in rs)["mean"],
        }
    if root is not None:
        out["root"] = str(root)
        out["missing_files"] = [
            r["file"] for r in records if not (Path(root) / r["file"]).is_file()
        ]
    if planned_ids is not None:
        planned = set(planned_ids)
        done = planned & {r["id"] for r in records}
        out["planned"] = len(planned)
        out["done"] = len(done)
        out["complete"] = len(done) == len(planned)
    return out


def _f(v: float | None, spec: str = ".2f") -> str:
    return "-" if v is None else format(v, spec)


def format_summary(summary: Mapping[str, Any]) -> str:
    """A plain-text table of a :func:`summarize` result (plus its ``run`` section if present)."""
    lines = []
    title = f"zoo {summary.get('root', '')}".rstrip()
    head = f"{title}: {summary['n_nerfs']} NeRFs"
    if "planned" in summary:
        state = "complete" if summary["complete"] else "incomplete"
        head += f" ({summary['done']} of {summary['planned']} planned: {state})"
    lines.append(head)
    for key in ("split", "class", "arch"):
        items = "  ".join(f"{k} {v}" for k, v in summary["counts"][key].items()) or "-"
        lines.append(f"  {key:<6s} {items}")
    cols = (
        f"  {'arch':<24s}{'n':>6s}{'psnr_fg mean':>13s}{'min':>8s}{'p5':>8s}{'psnr mean':>11s}"
        f"{'cover':>7s}{'iou':>7s}"
    )
    lines += ["", cols + f"{'fit s':>9s}"]
    rows = [
        (
            arch,
            s["n"],
            s["psnr_fg"],
            s["psnr"],
            s["coverage_mean"],
            s["iou_mean"],
            s["seconds_mean"],
        )
        for arch, s in summary["per_arch"].items()
    ]
    rows.append(
        (
            "all",
            summary["n_nerfs"],
            summary["psnr_fg"],
            summary["psnr"],
            summary["coverage"]["mean"],
            summary["iou"]["mean"],
            summary["seconds_per_nerf"],
        )
    )
    for arch, n, fg, p, cover, iou, sec in rows:
        lines.append(
            f"  {arch:<24s}{n:>6d}{_f(fg['mean']):>13s}{_f(fg['min']):>8s}{_f(fg['p5']):>8s}"
            f"{_f(p['mean']):>11s}{_f(cover, '.3f'):>7s}{_f(iou, '.3f'):>7s}{_f(sec):>9s}"
        )
    missing = summary.get("missing_files")
    if missing:
        lines += ["", f"  MISSING: {len(missing)} file(s) in the manifest are not on disk:"]
        lines += [f"    {m}" for m in missing[:_MAX_LISTED]]
        if len(missing) > _MAX_LISTED:
            lines.append(f"    ... and {len(missing) - _MAX_LISTED} more")
    run = summary.get("run")
    if run:
        per = run["wall_seconds"] / run["fitted"] if run["fitted"] else None
        lines += [
            "",
            f"  this run (shard {run['shard'][0]}/{run['shard'][1]}): fitted {run['fitted']}, "
            f"registered from existing files {run['registered']}, already done {run['skipped']}; "
            f"{run['wall_seconds']:.1f} s wall, {_f(per)} s per fitted NeRF (fit + eval + save)",
        ]
    return "\n".join(lines)
