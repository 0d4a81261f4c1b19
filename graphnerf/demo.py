"""`graphnerf demo`: from nothing to a benchmark report, every number measured in the run.

1. **Architectures** — build each zoo architecture, save and reload it (safetensors), export and
   re-import it in the tiny-cuda-nn flat layout, convert it to its parameter graph and back, and
   check on random points that every round trip is bit-identical.
2. **Scenes** — a contact sheet of the procedural shape classes.
3. **Mini-zoo** — fit real NeRFs (``configs/data/demo.yaml``: 4 procedural classes x 3 objects and
   2 packaged real meshes, split by object into train and test, x 2 rotations x the 3 training
   architectures, the default fitting budgets), evaluate each on held-out views, and render
   scene vs fitted NeRFs side by side for one object per class.
4. **Encoders** — a few zoo NeRFs as parameter graphs through the GMN and as token sequences
   through the SANE autoencoder, untrained (that they run on real zoo NeRFs, and how fast).
5. **Short training run** — ``graphnerf train`` (:func:`graphnerf.train.loop.train`) of the GMN
   with ``loss=rec_con`` (rendering + SigLIP, as gmnerf) on the mini-zoo's *train* split,
   ``train_steps`` steps; the mini-zoo has no val split, so ``last.pt`` is what gets scored.
6. **Benchmark** — :func:`graphnerf.bench.run_benchmark` of that checkpoint on the *test* split
   (objects no encoder trained on; probes fitted on the train split), beside its baselines:
   the same config at random init and the functional probe.
7. **Pretrained** — the shipped pretrained encoder (``graphnerf.list_pretrained()``), benchmarked
   by name on the same zoo, when the installed version ships one; otherwise one line says so.

Everything goes under ``out_dir``: ``results.json`` (the benchmark contract of
:mod:`graphnerf.bench.benchmark` for the short run at the top level, the pretrained encoder's
under ``pretrained``, the demo's own table and timings under ``demo``), ``report.md`` (the demo's
tables, the PNGs, and both benchmark reports), ``summary.json`` (every number printed, wall and
CPU time per section, the load average at the start), ``bench/<model>/`` (each benchmark's own
``results.json``, ``report.md`` and plots), ``train/`` (the run folder), ``zoo/``.

Threads: ``threads`` (default 1) sets torch's intra-op threads for the whole run, so the numbers
repeat bit for bit and the CPU time is the wall time of one idle core; ``threads=null`` leaves
torch's default.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from .atomic import atomic_write_text
from .config import load_config_checked
from .fields import ZOO, RadianceField, build_field
from .progress import progress

#: One line for ``graphnerf --help``.
HELP = (
    "from nothing to a benchmark report, in 7 sections: round trips, scenes, a fitted mini-zoo "
    "split by object, encoders, a short GMN training run, its benchmark on held-out objects, "
    "the shipped pretrained encoder on the same zoo"
)

#: ``graphnerf demo --help``.
DESCRIPTION = """\
From nothing to a benchmark report, every number measured in this run; everything goes
under out_dir (default demo_out/).

  1. architectures: each of the 13 zoo architectures is built, saved and reloaded
     (safetensors), exported to and re-imported from the tiny-cuda-nn flat layout, and
     converted to its parameter graph and back; each round trip is checked bit-identical
     on random points (a table; out_dir/fields/).
  2. scenes: out_dir/scenes.png, the 13 procedural shape classes, two instances each.
  3. mini-zoo (zoo=false skips 3-7): configs/data/demo.yaml, 4 procedural classes x 3
     objects + the packaged duck and bunny meshes (class "mesh"), split by object (train:
     2 objects per class + the bunny; test: 1 per class + the duck) x identity + one random
     rotation x the 3 training architectures = 84 NeRFs, really fitted at the default
     budgets and evaluated on held-out views (out_dir/zoo/); out_dir/zoo.png shows one
     object per class beside its fitted NeRFs.
  4. encoders: a few zoo NeRFs through the GMN (parameter graphs) and the SANE autoencoder
     (token sequences), untrained: that they run, and how fast.
  5. training (train=false skips 5-7): `graphnerf train` of the GMN with loss=rec_con
     (rendering + 0.02 SigLIP, as gmnerf) on the train split, train_steps (150) steps of
     4 objects x 2 NeRFs (out_dir/train/; no val split, so last.pt is scored).
  6. benchmark: `graphnerf benchmark` of that checkpoint on the test split (objects no
     encoder trained on; probes fitted on the train split) beside the same config at random
     init and the functional probe (out_dir/bench/short_run/).
  7. pretrained: the shipped pretrained encoder (graphnerf.list_pretrained()) benchmarked
     by name on the same zoo (out_dir/bench/pretrained/); one line says so when this
     version ships none.

It prints the table (classification accuracy, cross-architecture recall@1, the same with
the query's rotation left out, rotation median error; rows short-run GMN, random init,
functional probe, pretrained, chance) and writes out_dir/results.json (the benchmark's
results.json of the short run, the pretrained one under "pretrained", the demo's table and
timings under "demo"), out_dir/report.md (tables, PNGs, both benchmark reports) and
out_dir/summary.json. Wall and CPU time of each section and the load average at the start
are printed at the end. threads=1 (the default) runs torch on one thread: the numbers repeat
bit for bit and the CPU time is the wall time on an idle core. Measured on the 2-core
development VM (load average 9-18, under nice): sections 1-4 about 225 s of CPU time; the
rest was not timed end to end yet (estimated 7-9 min more from small runs).

Overrides are Hydra-style key=value pairs of configs/demo.yaml, e.g.
  graphnerf demo out_dir=/tmp/d train_steps=50 pretrained=none
A misspelt key is a one-line error naming it, before anything runs. Rerunning into the
same out_dir reuses the fitted NeRFs and resumes the training run."""

#: Settings of section 5 that the demo gives ``graphnerf train`` before ``train_overrides``
#: (``{zoo}``, ``{out}``, ``{steps}``, ``{threads}`` are filled in). ``val.every=0``: the zoo has
#: no val split, nothing is validated; ``checkpoint_every`` = the steps: one ``last.pt`` at the end.
#: The teacher-ray cache is the procedural13 experiment's (2,048 rays x 96 samples per NeRF, as the
#: shipped encoder was trained): at the default 4,096 x 128 filling it took ~2.2 CPU s per train
#: NeRF, more than a third of the training section.
TRAIN_BASE = (
    "zoo={zoo}",
    "out_dir={out}",
    "model=gmn",
    "loss=rec_con",
    "render.teacher.n_rays=2048",
    "render.teacher.n_samples=96",
    "train.steps={steps}",
    "train.threads={threads}",
    "train.checkpoint_every={steps}",
    "train.log_every={log_every}",
    "val.every=0",
    "wandb.mode=disabled",
)


# ----------------------------------------------------------------------------- helpers
def _max_diff(a: RadianceField, b: RadianceField, x: torch.Tensor) -> float:
    with torch.no_grad():
        sa, ca = a(x)
        sb, cb = b(x)
    return max((sa - sb).abs().max().item(), (ca - cb).abs().max().item())


def _names(value: Any, universe: Sequence[str], what: str) -> list[str]:
    names = list(universe) if value in (None, "all") else [str(v) for v in value]
    unknown = [n for n in names if n not in universe]
    if unknown:
        raise ValueError(f"demo: unknown {what} {unknown}; expected some of {list(universe)}")
    return names


def _section(title: str) -> None:
    print(f"\n== {title} " + "=" * max(0, 76 - len(title)), flush=True)


class SectionTimer:
    """Wall and process CPU seconds of each section (``timer("3. zoo")`` as a context)."""

    def __init__(self) -> None:
        self.sections: dict[str, dict[str, float]] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        t, c = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.sections[name] = {
                "wall_s": round(time.perf_counter() - t, 1),
                "cpu_s": round(time.process_time() - c, 1),
            }
            s = self.sections[name]
            print(f"[{name}: {s['wall_s']} s wall, {s['cpu_s']} s CPU]", flush=True)


def _merge_overrides(base: Sequence[str], extra: Sequence[str]) -> list[str]:
    """``base`` then ``extra``; a key of ``extra`` replaces the same key of ``base``."""
    keys = {o.split("=", 1)[0].lstrip("+~") for o in extra}
    return [o for o in base if o.split("=", 1)[0] not in keys] + list(extra)


def train_overrides(cfg: DictConfig, zoo: Path, out: Path) -> list[str]:
    """The overrides of ``configs/train/default.yaml`` that section 5 trains with."""
    steps = int(cfg.train_steps)
    threads = "null" if cfg.threads is None else int(cfg.threads)
    base = [
        o.format(
            zoo=zoo, out=out, steps=steps, threads=threads, log_every=max(1, min(10, steps // 10))
        )
        for o in TRAIN_BASE
    ]
    return _merge_overrides(base, [str(o) for o in cfg.train_overrides])


# ----------------------------------------------------------------------------- sections 1-4
def check_architectures(cfg: DictConfig, out: Path) -> list[dict[str, Any]]:
    """Round trips of every architecture; returns one row per architecture."""
    from .graph import from_graph, to_graph
    from .io import export_tcnn, import_tcnn, load_field, save_field

    names = _names(cfg.archs, list(ZOO), "archs")
    (out / "fields").mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(0)
    x = (torch.rand(int(cfg.check_points), 3, generator=gen) - 0.5) * 1.4
    rows = []
    for name in progress(names, desc="architectures", unit="arch"):
        field = build_field(name, seed=int(cfg.seed)).eval()
        path = save_field(field, out / "fields" / f"{name}.safetensors", arch=name, seed=cfg.seed)
        g = to_graph(field)
        rows.append(
            {
                "arch": name,
                "family": field.spec.family,
                "params": field.spec.n_params,
                "graph_nodes": int(g.num_nodes),
                "graph_edges": int(g.edge_index.shape[1]),
                "max_diff_safetensors": _max_diff(field, load_field(path), x),
                "max_diff_tcnn": _max_diff(field, import_tcnn(export_tcnn(field)), x),
                "max_diff_graph": _max_diff(field, from_graph(g), x),
            }
        )
    for line in _arch_table(rows):
        print(line)
    return rows


def _lossless(r: Mapping[str, Any]) -> list[str]:
    return [
        "yes" if r[k] == 0.0 else f"NO ({r[k]:.1e})"
        for k in ("max_diff_safetensors", "max_diff_tcnn", "max_diff_graph")
    ]


def _arch_table(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    header = f"{'arch':<24}{'params':>10}{'nodes':>10}{'edges':>10}   lossless (file/tcnn/graph)"
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(
            f"{r['arch']:<24}{r['params']:>10,}{r['graph_nodes']:>10,}{r['graph_edges']:>10,}"
            f"   {' / '.join(_lossless(r))}"
        )
    return lines


def render_scenes(cfg: DictConfig, out: Path) -> Path | None:
    from .scenes import CLASSES, make_contact_sheet

    classes = [] if cfg.scenes in ([], None) else _names(cfg.scenes, CLASSES, "scenes")
    if not classes:
        return None
    path = make_contact_sheet(
        out / "scenes.png",
        classes=classes,
        seeds=(0, 1),
        size=int(cfg.image_size),
        n_samples=int(cfg.n_samples),
    )
    print(f"{len(classes)} classes x 2 seeds -> {path}")
    return path


def split_installed_meshes(meshes: Sequence[str]) -> tuple[list[str], list[str]]:
    """``(kept, missing)``: packaged real-mesh names whose package is not installed are missing;
    everything else (installed names, mesh files) is kept, in order."""
    from .scenes import REAL_MESHES, available_real_meshes

    installed = set(available_real_meshes())
    missing = [m for m in meshes if m in REAL_MESHES and m not in installed]
    return [m for m in meshes if m not in missing], missing


def zoo_config(cfg: DictConfig, out: Path, echo: bool = False) -> DictConfig:
    """The mini-zoo's config (``configs/data/demo.yaml`` + ``zoo_overrides``), without the real
    meshes whose package is not installed."""
    from .data import load_zoo_config

    overrides = [f"out_dir={out / 'zoo'}", *cfg.zoo_overrides]
    zcfg = load_zoo_config(overrides, name="demo")
    kept, missing = split_installed_meshes(zcfg.get("meshes") or [])
    if missing:
        if echo:
            print(
                f"real mesh(es) {missing} skipped: their package is not installed "
                '(pip install "graphnerf[meshes]")'
            )
        zcfg = load_zoo_config([*overrides, f"meshes=[{','.join(kept)}]"], name="demo")
    return zcfg


def fit_zoo(cfg: DictConfig, out: Path) -> dict[str, Any]:
    """Generate the mini-zoo and a scene-vs-NeRF sheet (one object per class, every rotation)."""
    from .data import generate, make_plan, read_manifest
    from .io import load_field
    from .render import Camera, look_at, render_image, save_labeled_grid, spherical_to_cartesian
    from .scenes import describe_rotation

    zoo_dir = out / "zoo"
    zcfg = zoo_config(cfg, out, echo=True)
    summary = generate(zcfg, progress=True, echo=True)
    jobs = {job.id: job for job in make_plan(zcfg).jobs}
    records = sorted(read_manifest(zoo_dir), key=lambda r: (r["object"], r["id"]))
    fit = fit_table(records)
    for line in fit["lines"]:
        print(line)
    cam = Camera.from_fov(
        look_at(spherical_to_cartesian(2.2, 35.0, 25.0)), cfg.image_size, cfg.image_size, 40.0
    )
    shown: dict[str, str] = {}  # class -> the object shown (the first, by id)
    for r in records:
        shown.setdefault(str(r["class"]), str(r["object"]))
    images, labels = [], []
    by_view: dict[tuple[str, tuple[float, ...]], list[dict[str, Any]]] = {}
    for r in records:
        if r["object"] == shown[str(r["class"])]:
            by_view.setdefault((r["object"], tuple(r["rotation"])), []).append(r)
    with torch.no_grad():
        for (obj, rot), recs in progress(by_view.items(), desc="renders", unit="view"):
            scene = jobs[recs[0]["id"]].scene(zcfg.scene.density, zcfg.scene.edge)
            images.append(render_image(scene, cam, n_samples=int(cfg.n_samples)))
            labels.append(f"{obj} ({recs[0]['split']}) scene\n{describe_rotation(rot)}")
            for r in sorted(recs, key=lambda r: r["arch"]):
                field = load_field(zoo_dir / r["file"])
                images.append(render_image(field, cam, n_samples=int(cfg.n_samples)))
                fg = r.get("psnr_fg", r["psnr"])  # foreground PSNR: the object, not the white
                labels.append(f"{r['arch']} {'inf' if fg is None else f'{fg:.1f}'} dB (fg)")
    ncols = 1 + max(len(v) for v in by_view.values())
    sheet = save_labeled_grid(images, labels, out / "zoo.png", ncols=ncols)
    print(f"scene vs fitted NeRFs (one object per class) -> {sheet}")
    result = {k: summary[k] for k in summary if k != "config"}
    result["fit_table"] = fit["rows"]
    return result


def fit_table(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Fit quality per (split, arch): NeRFs, mean foreground PSNR, mean occupancy IoU."""
    import numpy as np

    rows = []
    for split in sorted({str(r["split"]) for r in records}, key=lambda s: (s != "train", s)):
        for arch in [a for a in ZOO if any(r["arch"] == a for r in records)]:
            rs = [r for r in records if r["split"] == split and r["arch"] == arch]
            if not rs:
                continue
            fg = [r["psnr_fg"] for r in rs if isinstance(r.get("psnr_fg"), int | float)]
            iou = [r["iou"] for r in rs if isinstance(r.get("iou"), int | float)]
            rows.append(
                {
                    "split": split,
                    "arch": arch,
                    "nerfs": len(rs),
                    "objects": len({r["object"] for r in rs}),
                    "psnr_fg_mean": float(np.mean(fg)) if fg else None,
                    "iou_mean": float(np.mean(iou)) if iou else None,
                }
            )
    header = f"{'split':<7}{'arch':<10}{'NeRFs':>6}{'objects':>8}{'PSNR-fg (dB)':>14}{'IoU':>7}"
    lines = [header, "-" * len(header)]
    for r in rows:
        fg = "-" if r["psnr_fg_mean"] is None else f"{r['psnr_fg_mean']:.1f}"
        iou = "-" if r["iou_mean"] is None else f"{r['iou_mean']:.2f}"
        lines.append(
            f"{r['split']:<7}{r['arch']:<10}{r['nerfs']:>6}{r['objects']:>8}{fg:>14}{iou:>7}"
        )
    return {"rows": rows, "lines": lines}


def run_encoders(out: Path, max_objects: int = 2) -> dict[str, Any]:
    """The NeRFs of the first ``max_objects`` train objects through the GMN (graphs) and the SANE
    autoencoder (tokens), untrained."""
    from torch_geometric.data import Batch

    from .graph import GraphZooDataset
    from .io import load_field
    from .losses import siglip_loss
    from .models import GMNEncoder, SANEAutoencoder
    from .tokens import Tokenizer, collate

    torch.manual_seed(0)
    ds = GraphZooDataset(out / "zoo", split="train")
    keep = sorted({str(r["object"]) for r in ds.records})[:max_objects]
    graphs = [ds[i] for i, r in enumerate(ds.records) if str(r["object"]) in keep]
    batch = Batch.from_data_list(graphs)
    objects = sorted({g.object for g in graphs})
    labels = torch.tensor([objects.index(g.object) for g in graphs])
    gmn = GMNEncoder().eval()
    t0 = time.perf_counter()
    with torch.no_grad():
        z = gmn(batch)
    t_gmn = time.perf_counter() - t0
    loss = siglip_loss(z, z, labels, labels, t=torch.tensor(2.302585), b=torch.tensor(-10.0))
    print(
        f"GMN: {len(graphs)} graphs of {objects} ({batch.num_nodes:,} nodes, "
        f"{batch.num_edges:,} edges) -> embeddings {tuple(z.shape)} in {t_gmn:.2f} s; "
        f"SigLIP at init {loss.item():.3f}"
    )
    tok = Tokenizer()
    fields = [load_field(out / "zoo" / g.file) for g in graphs]
    gen = torch.Generator().manual_seed(0)
    seqs = [tok(f, generator=gen) for f in fields]
    sane = SANEAutoencoder().eval()
    t0 = time.perf_counter()
    with torch.no_grad():
        res = sane(collate(seqs))
    t_sane = time.perf_counter() - t0
    lengths = {g.arch: int(s.mask.sum()) for g, s in zip(graphs, seqs, strict=True)}
    print(
        f"SANE: token sequences per arch {lengths} -> embeddings {tuple(res['embedding'].shape)}"
        f", reconstruction loss at init {res['loss_recon'].item():.4f}, in {t_sane:.2f} s"
    )
    return {
        "objects": objects,
        "gmn_embedding_shape": list(z.shape),
        "gmn_seconds": round(t_gmn, 3),
        "siglip_at_init": loss.item(),
        "sane_tokens_per_arch": lengths,
        "sane_embedding_shape": list(res["embedding"].shape),
        "sane_seconds": round(t_sane, 3),
    }


# ----------------------------------------------------------------------------- sections 5-7
def train_short(cfg: DictConfig, out: Path) -> dict[str, Any]:
    """Section 5: ``graphnerf train`` on the mini-zoo's train split; resumes ``out/train``."""
    from .train.loop import load_train_config, train

    run_dir = out / "train"
    overrides = train_overrides(cfg, out / "zoo", run_dir)
    resumed = (run_dir / "checkpoints" / "last.pt").is_file()
    if resumed:  # a rerun into the same out_dir continues (or reuses) the run, as generate does
        overrides.append("resume=true")
    tcfg = load_train_config(overrides)
    print("graphnerf train " + " ".join(o for o in overrides if not o.startswith(("zoo=", "out"))))
    summary = train(tcfg, show_progress=True)
    log = [
        json.loads(line)
        for line in (run_dir / "log.jsonl").read_text().splitlines()
        if line.strip() and "loss" in line
    ]
    log = [r for r in log if "loss" in r and "step" in r]
    weights = {k: float(v) for k, v in OmegaConf.to_container(tcfg.loss.weights).items() if v}
    first, last = (log[0], log[-1]) if log else ({}, {})
    terms = [k for k in ("loss", "render", "contrastive", "rotation") if k in first]

    def fmt(row: Mapping[str, Any]) -> str:
        return ", ".join(f"{k} {row[k]:.4g}" for k in terms if k in row)

    if log:
        print(f"logged loss at step {first['step']}: {fmt(first)}")
        print(f"logged loss at step {last['step']}: {fmt(last)}")
    ckpt = run_dir / "checkpoints" / "last.pt"
    n_train = len({str(r["object"]) for r in _records(out / "zoo") if r["split"] == "train"})
    print(
        f"{summary['step']} steps of {tcfg.model.name} on the train split ({n_train} objects), "
        f"loss {tcfg.loss.get('name', '?')} {weights}, "
        f"{int(tcfg.data.objects_per_batch)} objects x {int(tcfg.data.views)} NeRFs per step"
        f"{' (resumed from an earlier run)' if resumed else ''} -> {ckpt}"
    )
    return {
        "overrides": overrides,
        "steps": int(summary["step"]),
        "model": str(tcfg.model.name),
        "loss": str(tcfg.loss.get("name", "")),
        "loss_weights": weights,
        "first_logged": first,
        "last_logged": last,
        "resumed": resumed,
        "checkpoint": str(ckpt),
        "run_dir": str(run_dir),
    }


#: Settings a rerun may change without invalidating the training run it continues.
_RERUN_FREE = ("resume", "train.threads", "train.device", "data.num_workers", "wandb")


def check_previous_run(tcfg: DictConfig, run_dir: Path) -> None:
    """A rerun into the same out_dir continues ``run_dir`` only if it was made with the same
    training settings; otherwise one line says so before any work."""
    last = run_dir / "checkpoints" / "last.pt"
    if not last.is_file():
        return
    from .train import read_checkpoint
    from .train.loop import _diff_keys

    try:
        theirs = dict(read_checkpoint(last)["train"].get("config") or {})
    except (ValueError, FileNotFoundError) as e:
        raise ValueError(f"demo: {last} cannot be continued ({e})") from None
    mine = OmegaConf.to_container(tcfg, resolve=True)
    diff = [
        k
        for k in _diff_keys(theirs, mine)
        if not any(k == f or k.startswith(f + ".") for f in _RERUN_FREE)
    ]
    if diff:
        raise ValueError(
            f"demo: {run_dir} holds a training run made with other settings (differs in "
            f"{diff[:6]}); choose another out_dir or remove {run_dir}"
        )


def _records(zoo: Path) -> list[dict[str, Any]]:
    from .data import read_manifest

    return read_manifest(zoo)


def bench_short(cfg: DictConfig, out: Path, checkpoint: str) -> dict[str, Any]:
    """Section 6: the benchmark of the short run's checkpoint, with its baselines."""
    from .bench import run_benchmark

    return run_benchmark(
        checkpoint, out / "zoo", out / "bench" / "short_run", overrides=list(cfg.bench_overrides)
    )


def _list_pretrained() -> list[str]:
    """Names of the shipped pretrained encoders ([] when this version ships none or has no
    ``list_pretrained``)."""
    try:
        from .train.pretrained import list_pretrained
    except ImportError:
        try:
            from . import list_pretrained  # type: ignore[attr-defined,no-redef]
        except ImportError:
            return []
    listed = list_pretrained()
    items = list(listed.keys()) if isinstance(listed, Mapping) else list(listed)
    names = []
    for it in items:
        if isinstance(it, str):
            names.append(it)
        elif isinstance(it, Mapping) and "name" in it:
            names.append(str(it["name"]))
        elif hasattr(it, "name"):
            names.append(str(it.name))
    return names


def _load_pretrained(name: str) -> Any:
    """The shipped encoder ``name`` as an encoder object."""
    try:
        from .train.pretrained import pretrained
    except ImportError:
        from .train import load_encoder

        return load_encoder(name)
    return pretrained(name)


def choose_pretrained(cfg: DictConfig) -> tuple[str | None, str]:
    """``(name, why)``: the pretrained encoder section 7 scores (None: skip, ``why`` says why)."""
    want = cfg.pretrained
    if want in (None, False, "none"):
        return None, "pretrained=none: section 7 skipped"
    shipped = _list_pretrained()
    if want == "auto":
        if not shipped:
            return None, (
                "no pretrained encoder is shipped with this version of graphnerf "
                "(graphnerf.list_pretrained() is empty): section 7 skipped"
            )
        return shipped[0], f"{shipped[0]} (shipped: {shipped})"
    if str(want) not in shipped:
        raise ValueError(
            f"demo: pretrained={want!r} is not a shipped encoder; shipped: {shipped or 'none'} "
            "(or auto / none)"
        )
    return str(want), str(want)


def bench_pretrained(
    cfg: DictConfig, out: Path, name: str, short: Mapping[str, Any]
) -> dict[str, Any]:
    """Section 7: the shipped encoder ``name`` benchmarked on the same zoo and seed. The
    functional probe does not depend on the encoder (section 6 scores it); the random-init
    baseline is scored again only when the pretrained config differs from the short run's."""
    from .bench import run_benchmark

    enc = _load_pretrained(name)
    same = dict(getattr(enc, "config", {}) or {}) == dict(short["model"].get("config") or {})
    extra = ["baselines.functional_probe.enabled=false"]
    if same:
        extra.append("baselines.random_init=false")
    overrides = _merge_overrides(list(cfg.bench_overrides), extra)
    dest = out / "bench" / "pretrained"
    try:  # by name, so results.json records the shipped file and its sha256
        res = run_benchmark(name, out / "zoo", dest, overrides=overrides)
    except FileNotFoundError:  # a benchmark that takes paths only: the loaded encoder
        res = run_benchmark(enc, out / "zoo", dest, overrides=overrides)
    res["pretrained_name"] = name
    res["random_init_same_as_short_run"] = same
    return res


# ----------------------------------------------------------------------------- table + report
COLUMNS = (
    ("accuracy", "class. acc"),
    ("recall_at_1", "R@1 x-arch"),
    ("recall_at_1_other_rotation", "R@1 other rot"),
    ("rotation_median_deg", "rot median"),
)


def _row(name: str, r: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "accuracy": r["classification"]["overall"],
        "recall_at_1": r["retrieval"]["mean_recall_at_1"],
        "recall_at_1_other_rotation": r["retrieval"]["mean_recall_at_1_other_rotation"],
        "rotation_median_deg": r["rotation"]["median_deg"],
    }


def demo_table(
    short: Mapping[str, Any], pre: Mapping[str, Any] | None, steps: int, pre_name: str | None
) -> list[dict[str, Any]]:
    """Rows of the demo's table: short-run GMN, its random init, the functional probe, the
    pretrained encoder (and its random init when its config differs), chance."""
    base = short.get("baselines", {})
    rows = [_row(f"short-run {short['model']['name'].upper()} ({steps} steps)", short)]
    if "random_init" in base:
        rows.append(_row("random init (same config)", base["random_init"]))
    if "functional_probe" in base:
        rows.append(_row("functional probe", base["functional_probe"]))
    if pre is not None:
        rows.append(_row(f"pretrained {pre_name}", pre))
        if "random_init" in pre.get("baselines", {}):
            rows.append(_row("random init (pretrained's config)", pre["baselines"]["random_init"]))
    c, rt, rot = short["classification"], short["retrieval"], short["rotation"]
    rows.append(
        {
            "name": "chance",
            "accuracy": c["chance"],
            "recall_at_1": rt.get("chance_mean_recall_at_1"),
            "recall_at_1_other_rotation": rt.get("chance_mean_recall_at_1_other_rotation"),
            "rotation_median_deg": rot.get("identity_median_deg"),
        }
    )
    return rows


def _cell(key: str, v: Any) -> str:
    if v is None:
        return "-"
    return f"{v:.1f} deg" if key == "rotation_median_deg" else f"{100 * v:.1f}%"


def format_table(rows: Sequence[Mapping[str, Any]], markdown: bool = False) -> list[str]:
    if markdown:
        lines = [
            "| representation | " + " | ".join(h for _, h in COLUMNS) + " |",
            "|---|" + "---:|" * len(COLUMNS),
        ]
        for r in rows:
            lines.append(
                f"| {r['name']} | " + " | ".join(_cell(k, r[k]) for k, _ in COLUMNS) + " |"
            )
        return lines
    w = max(28, *(len(r["name"]) + 2 for r in rows))
    lines = [f"{'':{w}}" + "".join(f"{h:>15}" for _, h in COLUMNS)]
    lines.append("-" * len(lines[0]))
    for r in rows:
        lines.append(f"{r['name']:{w}}" + "".join(f"{_cell(k, r[k]):>15}" for k, _ in COLUMNS))
    return lines


TABLE_NOTE = (
    "class. acc = gmnerf's MLP probe fitted on the train split's embeddings, accuracy on the test "
    "split's (all test architectures); R@1 x-arch = same-object recall@1 between architectures "
    "(mean over the ordered mlp/triplane/hash pairs); R@1 other rot = the same with the query's "
    "own rotation left out of the gallery; rot median = median geodesic error of the rotation "
    "head over same-object test pairs (chance row: always predicting the identity)."
)

_IMAGE = re.compile(r"(!\[[^\]]*\]\()([^)\s]+)(\))")


def embed_report(path: Path, rel: str) -> list[str]:
    """A benchmark's report.md for inclusion in the demo's: headings one level down, image links
    relative to the demo's out_dir."""
    text = path.read_text()
    text = _IMAGE.sub(
        lambda m: (
            m.group(1) + (m.group(2) if "://" in m.group(2) else f"{rel}/{m.group(2)}") + m.group(3)
        ),
        text,
    )
    return [("##" + ln) if ln.startswith("#") else ln for ln in text.splitlines()]


def _num(v: float | None, digits: int) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def write_report(out: Path, result: Mapping[str, Any], table: Sequence[Mapping[str, Any]]) -> Path:
    """``out/report.md``: the demo's tables and PNGs, then both benchmark reports."""
    t = result["timing"]
    lines = [
        "# graphnerf demo",
        "",
        f"{result['seconds']} s wall, {result['cpu_seconds']} s CPU, {result['threads']} torch "
        f"thread(s), {result['cpus']} CPUs, load average {result['load_average_at_start']} at "
        "the start. Every number below was measured in this run (reruns into the same out_dir "
        "reuse the fitted NeRFs and the training run; see summary.json).",
        "",
        "| section | wall (s) | CPU (s) |",
        "|---|---:|---:|",
        *[f"| {k} | {v['wall_s']} | {v['cpu_s']} |" for k, v in t.items()],
        "",
        "## 1. Architectures: lossless round trips",
        "",
        "| arch | params | graph nodes | graph edges | file / tcnn / graph bit-identical |",
        "|---|---:|---:|---:|---|",
        *[
            f"| `{r['arch']}` | {r['params']:,} | {r['graph_nodes']:,} | {r['graph_edges']:,} | "
            f"{' / '.join(_lossless(r))} |"
            for r in result["architectures"]
        ],
        "",
    ]
    if result.get("scenes_sheet") not in (None, "None"):
        lines += ["## 2. Scenes", "", "![procedural classes, two instances each](scenes.png)", ""]
    zoo = result.get("zoo")
    if zoo:
        fit_keys = [o for o in result["config"]["zoo_overrides"] if o.startswith("fit.")]
        budgets = (
            f"budgets changed by zoo_overrides {fit_keys}"
            if fit_keys
            else "the default budgets of configs/fit/default.yaml"
        )
        lines += [
            "## 3. Mini-zoo",
            "",
            f"{zoo['n_nerfs']} NeRFs really fitted ({budgets}) and evaluated on 4 held-out "
            "views; splits by object. Mean foreground PSNR and occupancy IoU:",
            "",
            "| split | arch | NeRFs | objects | PSNR-fg (dB) | IoU |",
            "|---|---|---:|---:|---:|---:|",
            *[
                f"| {r['split']} | {r['arch']} | {r['nerfs']} | {r['objects']} | "
                f"{_num(r['psnr_fg_mean'], 1)} | {_num(r['iou_mean'], 2)} |"
                for r in zoo["fit_table"]
            ],
            "",
            "![scene vs fitted NeRFs, one object per class](zoo.png)",
            "",
        ]
    enc = result.get("encoders")
    if enc:
        lines += [
            "## 4. Encoders (untrained)",
            "",
            f"GMN on {enc['gmn_embedding_shape'][0]} NeRFs of {enc['objects']}: embeddings "
            f"{enc['gmn_embedding_shape']} in {enc['gmn_seconds']} s, SigLIP at init "
            f"{enc['siglip_at_init']:.3f}. SANE: tokens per arch {enc['sane_tokens_per_arch']}, "
            f"{enc['sane_seconds']} s.",
            "",
        ]
    tr = result.get("train")
    if tr:
        first, last = tr["first_logged"], tr["last_logged"]
        lines += [
            "## 5. Short training run",
            "",
            f"`graphnerf train` of the {tr['model'].upper()}, loss `{tr['loss']}` "
            f"{tr['loss_weights']}, {tr['steps']} steps on the train split "
            f"(`{' '.join(o for o in tr['overrides'] if not o.startswith(('zoo=', 'out')))}`). "
            f"Logged loss: {first.get('loss', float('nan')):.4g} at step {first.get('step')}, "
            f"{last.get('loss', float('nan')):.4g} at step {last.get('step')}. "
            "No val split: `last.pt` is benchmarked.",
            "",
        ]
    if table:
        lines += [
            "## 6-7. Benchmark on the test split (held-out objects)",
            "",
            *format_table(table, markdown=True),
            "",
            TABLE_NOTE,
            "",
            *result.get("notes", []),
            "",
        ]
    for key, title in (("short_run", "Short-run benchmark report"), ("pretrained", "Pretrained")):
        p = out / "bench" / key / "report.md"
        if result.get("bench_dirs", {}).get(key) and p.is_file():
            lines += [f"## {title} (`bench/{key}/`)", "", *embed_report(p, f"bench/{key}"), ""]
    path = out / "report.md"
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


# ----------------------------------------------------------------------------- run
def _load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):  # not on every platform
        return None


def check_config(cfg: DictConfig) -> None:
    """Every setting of ``configs/demo.yaml`` checked before any work (one-line ValueError)."""
    from .scenes import CLASSES

    for key, minimum in (
        ("seed", 0),
        ("check_points", 1),
        ("image_size", 8),
        ("n_samples", 2),
        ("train_steps", 1),
    ):
        value = cfg[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"demo: {key} must be an integer >= {minimum}, got {value!r}")
    th = cfg.threads
    if th is not None and (isinstance(th, bool) or not isinstance(th, int) or th < 1):
        raise ValueError(f"demo: threads must be an integer >= 1 or null, got {th!r}")
    for key in ("zoo", "train"):
        if not isinstance(cfg[key], bool):
            raise ValueError(f"demo: {key} must be true or false, got {cfg[key]!r}")
    for key in ("zoo_overrides", "train_overrides", "bench_overrides"):
        v = cfg[key]
        if not OmegaConf.is_list(v) or not all(isinstance(o, str) and "=" in o for o in v):
            raise ValueError(f"demo: {key} must be a list of key=value strings, got {v!r}")
    _names(cfg.archs, list(ZOO), "archs")
    if cfg.scenes not in ([], None):
        _names(cfg.scenes, CLASSES, "scenes")
    if cfg.zoo:
        from .data import make_plan

        out = Path(cfg.out_dir)
        make_plan(zoo_config(cfg, out))
    if cfg.zoo and cfg.train:
        from .bench import load_bench_config
        from .train.loop import load_train_config

        tcfg = load_train_config(train_overrides(cfg, out / "zoo", out / "train"))
        check_previous_run(tcfg, out / "train")
        load_bench_config(list(cfg.bench_overrides))
        choose_pretrained(cfg)


@contextmanager
def _threads(n: int | None) -> Iterator[int]:
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(int(n))
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def run_demo(overrides: Sequence[str] = ()) -> int:
    """Run the demo with ``overrides`` of ``configs/demo.yaml``; 0 if every round trip was
    lossless. A bad override is a one-line :class:`~graphnerf.config.ConfigError`."""
    cfg = load_config_checked("demo", overrides)
    check_config(cfg)
    with _threads(cfg.threads) as threads:
        return _run(cfg, threads)


def _run(cfg: DictConfig, threads: int) -> int:
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t_all, cpu_all, load = time.perf_counter(), time.process_time(), _load_average()
    timer = SectionTimer()
    print(f"graphnerf demo -> {out.resolve()}  ({threads} torch thread(s))")
    result: dict[str, Any] = {"config": OmegaConf.to_container(cfg, resolve=True)}
    table: list[dict[str, Any]] = []
    notes: list[str] = []
    bench_dirs: dict[str, str] = {}
    short = pre = None
    pre_name: str | None = None

    _section("1. architectures: build, save/load, tcnn export/import, graph round trip")
    with timer("1. architectures"):
        rows = check_architectures(cfg, out)
    result["architectures"] = rows
    _section("2. scenes: procedural shape classes")
    with timer("2. scenes"):
        result["scenes_sheet"] = str(render_scenes(cfg, out))
    if cfg.zoo:
        _section("3. mini-zoo: fit NeRFs of shapes and real meshes x rotations x architectures")
        with timer("3. mini-zoo"):
            result["zoo"] = fit_zoo(cfg, out)
        _section("4. encoders on a few zoo NeRFs (untrained)")
        with timer("4. encoders"):
            result["encoders"] = run_encoders(out)
    if cfg.zoo and cfg.train:
        _section("5. short training run: GMN, rendering + SigLIP, on the train split")
        with timer("5. training"):
            result["train"] = train_short(cfg, out)
        _section("6. benchmark of the short run on the test split (held-out objects)")
        with timer("6. benchmark"):
            short = bench_short(cfg, out, result["train"]["checkpoint"])
        bench_dirs["short_run"] = "bench/short_run"
        _section("7. the shipped pretrained encoder on the same zoo")
        with timer("7. pretrained"):
            pre_name, why = choose_pretrained(cfg)
            print(why)
            if pre_name is not None:
                pre = bench_pretrained(cfg, out, pre_name, short)
                bench_dirs["pretrained"] = "bench/pretrained"
        if pre is None:
            notes.append(f"Pretrained: {why}.")
        if not result["train"]["loss_weights"].get("rotation"):
            notes.append(
                f"The short run's loss ({result['train']['loss']}) has no rotation term: its "
                "rotation head is as untrained as the random init's."
            )
        table = demo_table(short, pre, result["train"]["steps"], pre_name)
        _section("results on the test split")
        for line in format_table(table):
            print(line)
        print(TABLE_NOTE)
        for n in notes:
            print(n)
    result["timing"] = timer.sections
    result["seconds"] = round(time.perf_counter() - t_all, 1)
    result["cpu_seconds"] = round(time.process_time() - cpu_all, 1)
    result["load_average_at_start"] = load
    result["load_average_at_end"] = _load_average()
    result["cpus"] = os.cpu_count()
    result["threads"] = threads
    result["table"] = table
    result["notes"] = notes
    result["bench_dirs"] = bench_dirs
    if short is not None:
        combined = {
            **short,
            "pretrained": pre,
            "demo": {
                "table": table,
                "notes": notes,
                "train": result["train"],
                "timing": timer.sections,
                "seconds": result["seconds"],
                "cpu_seconds": result["cpu_seconds"],
                "threads": threads,
                "load_average_at_start": load,
                "reports": {k: f"{v}/report.md" for k, v in bench_dirs.items()},
            },
        }
        atomic_write_text(
            out / "results.json", json.dumps(combined, indent=2, allow_nan=False, default=str)
        )
    result["report"] = str(write_report(out, result, table))
    atomic_write_text(out / "summary.json", json.dumps(result, indent=2, default=str))
    print(
        "\nsection times (wall / CPU s): "
        + ", ".join(
            f"{k.split('. ')[0]} {v['wall_s']}/{v['cpu_s']}" for k, v in timer.sections.items()
        )
    )
    print(
        f"summary: {out / 'summary.json'}, report: {out / 'report.md'}"
        f"{', results: ' + str(out / 'results.json') if short is not None else ''}\n"
        f"({result['seconds']} s wall, {result['cpu_seconds']} s CPU, {threads} thread(s), "
        f"{result['cpus']} CPUs, load average {load} at the start)"
    )
    lossless = all(r[k] == 0.0 for r in rows for k in r if k.startswith("max_diff"))
    if not lossless:
        print("demo: a round trip was NOT lossless (see the table)")
    return 0 if lossless else 1
