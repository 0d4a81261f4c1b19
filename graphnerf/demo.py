"""`graphnerf demo`: run everything that works today on the built-in defaults and show it.

1. **Architectures** — build each zoo architecture, save and reload it (safetensors), export and
   re-import it in the tiny-cuda-nn flat layout, convert it to its parameter graph and back, and
   check on random points that every round trip is bit-identical.
2. **Scenes** — a contact sheet of the procedural shape classes.
3. **Mini-zoo** — fit real NeRFs (``configs/data/demo.yaml``: a procedural chair and the packaged
   duck mesh x 2 rotations x the 3 training architectures, batched distillation), evaluate each on
   held-out views, and render scene vs fitted NeRFs side by side, each row labelled with its
   rotation (angle and axis).
4. **Encoders** — the zoo as parameter graphs through the GMN and as token sequences through the
   SANE autoencoder (untrained: this shows they run on real zoo NeRFs and how fast, not what they
   learn), with a SigLIP loss across architectures.

Everything goes under ``out_dir``; ``summary.json`` holds every number printed, and the total
wall time, process CPU time and the load average at the start (what the time was measured under).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from .atomic import atomic_write_text
from .config import load_config_checked
from .fields import ZOO, RadianceField, build_field
from .progress import progress


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
    print(f"\n== {title} " + "=" * max(0, 76 - len(title)))


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
    header = f"{'arch':<24}{'params':>10}{'nodes':>10}{'edges':>10}   lossless (file/tcnn/graph)"
    print(header + "\n" + "-" * len(header))
    for r in rows:
        ok = [
            "yes" if r[k] == 0.0 else f"NO ({r[k]:.1e})"
            for k in ("max_diff_safetensors", "max_diff_tcnn", "max_diff_graph")
        ]
        print(
            f"{r['arch']:<24}{r['params']:>10,}{r['graph_nodes']:>10,}{r['graph_edges']:>10,}"
            f"   {' / '.join(ok)}"
        )
    return rows


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


def fit_zoo(cfg: DictConfig, out: Path) -> dict[str, Any]:
    """Generate the mini-zoo and a scene-vs-NeRF comparison sheet."""
    from .data import generate, load_zoo_config, make_plan, read_manifest
    from .io import load_field
    from .render import Camera, look_at, render_image, save_labeled_grid, spherical_to_cartesian
    from .scenes import describe_rotation

    zoo_dir = out / "zoo"
    overrides = [f"out_dir={zoo_dir}", *cfg.zoo_overrides]
    zcfg = load_zoo_config(overrides, name="demo")
    kept, missing = split_installed_meshes(zcfg.get("meshes") or [])
    if missing:
        print(
            f"real mesh(es) {missing} skipped: their package is not installed "
            '(pip install "graphnerf[meshes]")'
        )
        zcfg = load_zoo_config([*overrides, f"meshes=[{','.join(kept)}]"], name="demo")
    summary = generate(zcfg, progress=True, echo=True)
    jobs = {job.id: job for job in make_plan(zcfg).jobs}
    records = sorted(read_manifest(zoo_dir), key=lambda r: (r["object"], r["id"]))
    cam = Camera.from_fov(
        look_at(spherical_to_cartesian(2.2, 35.0, 25.0)), cfg.image_size, cfg.image_size, 40.0
    )
    images, labels = [], []
    by_view: dict[tuple[str, tuple[float, ...]], list[dict[str, Any]]] = {}
    for r in records:
        by_view.setdefault((r["object"], tuple(r["rotation"])), []).append(r)
    with torch.no_grad():
        for (obj, rot), recs in progress(by_view.items(), desc="renders", unit="view"):
            scene = jobs[recs[0]["id"]].scene(zcfg.scene.density, zcfg.scene.edge)
            images.append(render_image(scene, cam, n_samples=int(cfg.n_samples)))
            labels.append(f"{obj} scene\n{describe_rotation(rot)}")
            for r in sorted(recs, key=lambda r: r["arch"]):
                field = load_field(zoo_dir / r["file"])
                images.append(render_image(field, cam, n_samples=int(cfg.n_samples)))
                fg = r.get("psnr_fg", r["psnr"])  # foreground PSNR: the object, not the white
                labels.append(f"{r['arch']} {'inf' if fg is None else f'{fg:.1f}'} dB (fg)")
    ncols = 1 + max(len(v) for v in by_view.values())
    sheet = save_labeled_grid(images, labels, out / "zoo.png", ncols=ncols)
    print(f"scene vs fitted NeRFs -> {sheet}")
    return summary


def run_encoders(out: Path) -> dict[str, Any]:
    """The mini-zoo through the GMN (graphs) and the SANE autoencoder (tokens)."""
    from torch_geometric.data import Batch

    from .graph import GraphZooDataset
    from .io import load_field
    from .losses import siglip_loss
    from .models import GMNEncoder, SANEAutoencoder
    from .tokens import Tokenizer, collate

    torch.manual_seed(0)
    ds = GraphZooDataset(out / "zoo")
    graphs = [ds[i] for i in range(len(ds))]
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
        f"GMN: {len(graphs)} graphs ({batch.num_nodes:,} nodes, {batch.num_edges:,} edges) -> "
        f"embeddings {tuple(z.shape)} in {t_gmn:.2f} s; SigLIP at init {loss.item():.3f}"
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
        "gmn_embedding_shape": list(z.shape),
        "gmn_seconds": round(t_gmn, 3),
        "siglip_at_init": loss.item(),
        "sane_tokens_per_arch": lengths,
        "sane_embedding_shape": list(res["embedding"].shape),
        "sane_seconds": round(t_sane, 3),
    }


def _load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):  # not on every platform
        return None


def check_config(cfg: DictConfig) -> None:
    """Every setting of ``configs/demo.yaml`` checked before any work (one-line ValueError)."""
    from .scenes import CLASSES

    for key, minimum in (("seed", 0), ("check_points", 1), ("image_size", 8), ("n_samples", 2)):
        value = cfg[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"demo: {key} must be an integer >= {minimum}, got {value!r}")
    if not isinstance(cfg.zoo, bool):
        raise ValueError(f"demo: zoo must be true or false, got {cfg.zoo!r}")
    _names(cfg.archs, list(ZOO), "archs")
    if cfg.scenes not in ([], None):
        _names(cfg.scenes, CLASSES, "scenes")
    if cfg.zoo:
        from .data import load_zoo_config, make_plan

        make_plan(
            load_zoo_config([f"out_dir={Path(cfg.out_dir) / 'zoo'}", *cfg.zoo_overrides], "demo")
        )


def run_demo(overrides: Sequence[str] = ()) -> int:
    """Run the demo with ``overrides`` of ``configs/demo.yaml``; 0 if every round trip was
    lossless. A bad override is a one-line :class:`~graphnerf.config.ConfigError`."""
    cfg = load_config_checked("demo", overrides)
    check_config(cfg)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t_all, cpu_all, load = time.perf_counter(), time.process_time(), _load_average()
    print(f"graphnerf demo -> {out.resolve()}")
    result: dict[str, Any] = {"config": OmegaConf.to_container(cfg, resolve=True)}

    _section("1. architectures: build, save/load, tcnn export/import, graph round trip")
    rows = check_architectures(cfg, out)
    result["architectures"] = rows
    _section("2. scenes: procedural shape classes")
    result["scenes_sheet"] = str(render_scenes(cfg, out))
    if cfg.zoo:
        _section("3. mini-zoo: fit NeRFs of shapes and real meshes x rotations x architectures")
        zoo = fit_zoo(cfg, out)
        result["zoo"] = {k: zoo[k] for k in zoo if k != "config"}
        _section("4. encoders on the mini-zoo (untrained)")
        result["encoders"] = run_encoders(out)
    result["seconds"] = round(time.perf_counter() - t_all, 1)
    result["cpu_seconds"] = round(time.process_time() - cpu_all, 1)
    result["load_average_at_start"] = load
    result["cpus"] = os.cpu_count()
    atomic_write_text(out / "summary.json", json.dumps(result, indent=2, default=str))
    print(
        f"\nsummary: {out / 'summary.json'}   ({result['seconds']} s wall, "
        f"{result['cpu_seconds']} s CPU, {result['cpus']} CPUs, load average {load} at the start)"
    )
    lossless = all(r[k] == 0.0 for r in rows for k in r if k.startswith("max_diff"))
    if not lossless:
        print("demo: a round trip was NOT lossless (see the table)")
    return 0 if lossless else 1
