"""Zoo generation: fit every NeRF of a plan, evaluate it, save it, register it in the manifest.

Usage::

    from graphnerf.data import generate, load_zoo_config
    summary = generate(load_zoo_config(["out_dir=zoo", "classes=[chair,table]"]))
    generate(cfg, shard=(0, 2))        # this process does batches 0, 2, 4, ... of the plan

or ``graphnerf generate out_dir=zoo ... [--shard i/n]``; under ``torchrun`` the shard is taken from
``RANK`` / ``WORLD_SIZE``. Every shard may write into the same folder at the same time.

Per NeRF the order is: fit (its whole batch, :func:`graphnerf.fit.distill_batch`), evaluate
(:func:`graphnerf.fit.evaluate`), save the file (atomic; the header metadata is the complete
manifest line), append the manifest line (locked). A run killed at any point therefore leaves at
most finished files without a manifest line, never a partial file. Resuming (running the same
command again):

* a job whose id is in the manifest and whose file exists is skipped;
* a file without its manifest line is **re-registered from its header** (no refit) when its
  metadata matches the plan's job; otherwise it is refitted and overwritten;
* a batch with any job left is refitted as a whole with its own seed, which reproduces the
  finished batch-mates exactly (they are not saved again), so a resumed or sharded zoo is bit for
  bit the zoo of one uninterrupted run (same torch build and thread count);
* stale temporary files of this shard's NeRFs (a kill in the middle of a write) are removed.

Rerunning into a folder made with a config that gives the same ids other rotations, splits or
seeds is refused (a zoo never mixes two plans under one id).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from omegaconf import DictConfig, OmegaConf

from ..atomic import atomic_write_text
from ..config import load_config_checked
from ..fields import ZOO, RadianceField, build_field
from ..io import CheckpointError, read_header, save_field
from .manifest import append_record, check_record, encode_record, read_manifest
from .plan import Batch, Job, ZooConfig, ZooConfigError, make_plan, stable_seed
from .summary import format_summary, summarize

if TYPE_CHECKING:
    from ..fit import FitResult
    from ..fit.distill import SceneFn

__all__ = [
    "fit_mesh",
    "generate",
    "load_zoo_config",
    "parse_rotation",
    "parse_shard",
    "prepare_out_dir",
    "resolve_shard",
]

SUMMARY = "summary.json"
CONFIG = "config.yaml"
_STALE_SECONDS = 600.0  # temporary summary/config files older than this are leftovers


# ----------------------------------------------------------------------------- helpers
def load_zoo_config(overrides: Sequence[str] = (), name: str = "default") -> DictConfig:
    """Compose ``configs/data/<name>.yaml`` with Hydra overrides (``key=value``); a bad override
    is a one-line :class:`ZooConfigError` (:func:`graphnerf.config.load_config_checked`)."""
    return load_config_checked(f"data/{name}", overrides, "zoo config", ZooConfigError)


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` -> ``(i, n)`` with ``0 <= i < n``."""
    try:
        i, n = (int(p) for p in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard must look like i/n (e.g. 0/4), got {text!r}") from None
    if n < 1 or not 0 <= i < n:
        raise ValueError(f"--shard i/n needs n >= 1 and 0 <= i < n, got {text!r}")
    return i, n


def resolve_shard(shard: tuple[int, int] | str | None) -> tuple[int, int]:
    """The shard to run: the given one, else ``RANK``/``WORLD_SIZE`` (torchrun), else ``(0, 1)``."""
    if isinstance(shard, str):
        return parse_shard(shard)
    if shard is not None:
        i, n = (int(v) for v in shard)
        return parse_shard(f"{i}/{n}")
    world = os.environ.get("WORLD_SIZE")
    if world is not None and int(world) > 1:
        return parse_shard(f"{os.environ.get('RANK', '0')}/{world}")
    return 0, 1


def prepare_out_dir(path: str | os.PathLike[str]) -> Path:
    """Create ``path`` (with parents) and check that files can be written in it."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise NotADirectoryError(f"output folder {str(p)!r} exists and is not a folder")
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OSError(f"cannot create output folder {str(p)!r}: {e.strerror or e}") from e
    try:
        fd, probe = tempfile.mkstemp(dir=p, prefix=".write-test-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise PermissionError(f"output folder {str(p)!r} is not writable: {e.strerror or e}") from e
    return p


@contextlib.contextmanager
def _torch_threads(n: int | None) -> Iterator[None]:
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _remove_temps(folder: Path, names: set[str], min_age: float = 0.0) -> int:
    """Remove ``.{name}.*.tmp`` files (left by :func:`graphnerf.atomic.atomic_write`)."""
    if not folder.is_dir():
        return 0
    removed, now = 0, time.time()
    for entry in os.scandir(folder):
        if not (entry.name.startswith(".") and entry.name.endswith(".tmp")):
            continue
        stem = entry.name[1:].rsplit(".", 2)[0]
        if stem in names:
            with contextlib.suppress(OSError):
                if now - entry.stat().st_mtime >= min_age:
                    os.unlink(entry.path)
                    removed += 1
    return removed


def _same_identity(record: Mapping[str, Any], job: Job) -> bool:
    want = job.identity()
    for key, value in want.items():
        got = record.get(key)
        if key == "rotation":
            if not isinstance(got, list) or len(got) != 4:
                return False
            if any(abs(float(a) - b) > 1e-9 for a, b in zip(got, value, strict=True)):
                return False
        elif got != value:
            return False
    return True


def _registered_from_file(root: Path, job: Job) -> dict[str, Any] | None:
    """The manifest line stored in ``job``'s file header, if the file is a finished NeRF of it."""
    try:
        spec, meta, _ = read_header(root / job.file)
        check_record(meta, str(root / job.file))
    except (CheckpointError, ValueError, OSError):
        return None
    if spec != ZOO[job.arch] or not _same_identity(meta, job):
        return None
    if any(k not in meta for k in ("psnr", "iou", "seconds", "steps")):
        return None
    return meta


def _config_yaml(cfg: DictConfig | Mapping | ZooConfig) -> str | None:
    if isinstance(cfg, ZooConfig):
        return None
    return OmegaConf.to_yaml(OmegaConf.create(cfg if isinstance(cfg, DictConfig) else dict(cfg)))


# ----------------------------------------------------------------------------- generation
def generate(
    cfg: DictConfig | Mapping | ZooConfig,
    shard: tuple[int, int] | str | None = None,
    progress: bool = True,
    echo: bool = True,
) -> dict[str, Any]:
    """Generate (or resume) this shard's part of the zoo described by ``cfg``.

    Args:
        cfg: a composed ``data`` config (:func:`load_zoo_config`) or a :class:`ZooConfig`.
        shard: ``(i, n)`` or ``"i/n"``: this process fits batches ``b`` with ``b % n == i``;
            None: from ``RANK``/``WORLD_SIZE`` when set (torchrun), else everything.
        progress: tqdm bars (NeRFs of this shard with ETA and running mean PSNR; each batch fit).
        echo: print the summary table at the end.
    Returns:
        the summary of the whole zoo folder (also written to ``summary.json``) with a ``run``
        section about this call: ``fitted``, ``registered`` (re-registered from existing
        files), ``skipped`` (already in the manifest), ``shard``, ``wall_seconds``.
    Raises:
        ZooConfigError: invalid config, or the folder holds NeRFs of another plan.
        OSError: the output folder cannot be created or written.
    """
    t_start = time.perf_counter()
    zc = ZooConfig.from_cfg(cfg)
    plan = make_plan(zc)
    index, count = resolve_shard(shard)
    batches = plan.shard(index, count)
    root = prepare_out_dir(zc.out_dir)
    existing = {r["id"]: r for r in read_manifest(root, missing_ok=True)}
    planned = {job.id: job for job in plan.jobs}
    for rid, rec in existing.items():
        if rid in planned and not _same_identity(rec, planned[rid]):
            want = planned[rid].identity()
            diff = {k: (rec.get(k), v) for k, v in want.items() if rec.get(k) != v}
            raise ZooConfigError(
                f"{root}: the manifest's NeRF {rid!r} was made with another plan "
                f"(manifest vs this config: {diff}); use a new out_dir, or the config that made it"
            )
    text = _config_yaml(cfg)
    _remove_temps(root, {CONFIG, SUMMARY}, min_age=_STALE_SECONDS)
    if text is not None:
        atomic_write_text(root / CONFIG, text)

    jobs = [job for b in batches for job in b.jobs]
    folders: dict[Path, set[str]] = {}
    for job in jobs:
        folders.setdefault((root / job.file).parent, set()).add(Path(job.file).name)
    for folder, names in folders.items():
        folder.mkdir(parents=True, exist_ok=True)
        _remove_temps(folder, names)

    done: set[str] = set()
    skipped = registered = fitted = 0
    for job in jobs:
        if job.id in existing and (root / job.file).is_file():
            done.add(job.id)
            skipped += 1
        elif (root / job.file).is_file():
            meta = _registered_from_file(root, job)
            if meta is not None:
                append_record(root, meta)
                done.add(job.id)
                registered += 1
    todo = [b for b in batches if any(job.id not in done for job in b.jobs)]

    from ..progress import progress as tqdm  # a tqdm bar on a terminal, plain lines elsewhere

    psnrs: list[float] = []
    bar = tqdm(
        total=len(jobs),
        initial=len(done),
        desc=f"zoo {root.name} shard {index}/{count}",
        unit="NeRF",
        disable=not progress,
        dynamic_ncols=True,
    )
    with bar, _torch_threads(zc.num_threads):
        for batch in todo:
            for rec in _fit_batch(batch, zc, root, done, progress):
                fitted += 1
                if rec.get("psnr") is not None:
                    psnrs.append(rec["psnr"])
                bar.update()
                if psnrs:
                    bar.set_postfix(psnr=f"{sum(psnrs) / len(psnrs):.2f}", arch=batch.arch)

    summary = summarize(read_manifest(root), root, planned)
    summary["run"] = {
        "shard": [index, count],
        "fitted": fitted,
        "registered": registered,
        "skipped": skipped,
        "wall_seconds": time.perf_counter() - t_start,
    }
    atomic_write_text(root / SUMMARY, json.dumps(summary, indent=2, allow_nan=False) + "\n")
    if echo:
        print(format_summary(summary))
    return summary


def fit_metrics(
    field: RadianceField, scene: SceneFn, res: FitResult, zc: ZooConfig
) -> dict[str, Any]:
    """What a zoo records of a fitted NeRF: :func:`graphnerf.fit.evaluate` at the config's
    ``eval`` settings (psnr, psnr_views, psnr_fg, psnr_fg_views, coverage, iou) and the fit's
    final loss, seconds and steps."""
    from ..fit import evaluate

    metrics = evaluate(
        field, scene, size=zc.eval_size, n_samples=zc.eval_samples, iou_res=zc.iou_res
    )
    return {
        "psnr": metrics["psnr"],
        "psnr_views": metrics["psnr_views"],
        "psnr_fg": metrics["psnr_fg"],
        "psnr_fg_views": metrics["psnr_fg_views"],
        "coverage": metrics["coverage"],
        "iou": metrics["iou"],
        "loss": res.final_loss,
        "seconds": res.seconds,
        "steps": res.steps,
    }


def _fit_batch(
    batch: Batch, zc: ZooConfig, root: Path, done: set[str], progress: bool
) -> Iterator[dict[str, Any]]:
    """Fit a whole batch; evaluate, save and register each of its jobs not yet done."""
    from ..fit import distill_batch

    fields = [build_field(job.arch, seed=job.init_seed) for job in batch.jobs]
    scenes = [job.scene(zc.density, zc.edge) for job in batch.jobs]
    gen = torch.Generator().manual_seed(batch.seed)
    results = distill_batch(fields, scenes, zc.fit, generator=gen, progress=progress)
    for job, field, scene, res in zip(batch.jobs, fields, scenes, results, strict=True):
        if job.id in done:
            continue
        rec = encode_record({**job.identity(), **fit_metrics(field, scene, res, zc)})
        save_field(field, root / job.file, **rec)
        append_record(root, rec)
        done.add(job.id)
        yield rec


# ----------------------------------------------------------------------------- one mesh
def parse_rotation(
    text: str | Sequence[float], seed: int = 0, upright: bool = False
) -> list[float]:
    """``"identity"``, ``"random"`` (seeded by ``seed``) or ``"w,x,y,z"`` -> unit quaternion."""
    from ..scenes import random_rotation

    if isinstance(text, str):
        t = text.strip().lower()
        if t == "identity":
            return [1.0, 0.0, 0.0, 0.0]
        if t == "random":
            return random_rotation(seed, upright=upright, dtype=torch.float64).tolist()
        try:
            q = [float(v) for v in t.split(",")]
        except ValueError:
            q = []
    else:
        q = [float(v) for v in text]
    norm = sum(v * v for v in q) ** 0.5
    if len(q) != 4 or not norm > 0 or norm == float("inf"):
        raise ValueError(
            f"rotation must be 'identity', 'random' or a non-zero quaternion 'w,x,y,z', got {text!r}"
        )
    q = [v / norm for v in q]
    return [-v for v in q] if q[0] < 0 else q


def fit_mesh(
    mesh: str | os.PathLike[str],
    arch: str = "hash",
    rotation: str | Sequence[float] = "identity",
    seed: int = 0,
    out: str | os.PathLike[str] | None = None,
    cfg: DictConfig | Mapping | ZooConfig | None = None,
    grid_resolution: int | None = None,
    progress: bool = False,
    up: str | None = None,
) -> dict[str, Any]:
    """Fit one NeRF to a mesh file (any format trimesh reads), evaluate it and save it.

    Args:
        mesh: the mesh file (placed in the AABB by :class:`graphnerf.scenes.MeshScene`; a
            non-watertight mesh warns and uses a voxel fill), or the name of a packaged real
            mesh (:data:`graphnerf.scenes.REAL_MESHES`, e.g. ``"duck"``) when no such file
            exists.
        arch: a zoo architecture name.
        rotation: ``"identity"``, ``"random"`` or ``"w,x,y,z"``.
        seed: initialisation seed (and the seed of the random rotation and of the fit).
        out: destination ``.safetensors`` (default ``<mesh stem>_<arch>.safetensors``).
        cfg: zoo config for the fit budgets (``fit``), ``eval`` and ``scene.density``; default
            ``configs/data/default.yaml``.
        grid_resolution: precompute the mesh occupancy on this grid (faster, approximate).
        progress: tqdm bar over the fitting steps.
        up: the axis the object stands on in the file, ``"z"`` or ``"y"`` (turned to z); default
            the registry's for a packaged mesh, else the format's (y for OBJ / glTF, else z).
    Returns:
        the metadata saved with the field (metrics included) plus ``out``.
    """
    from ..fit import distill
    from ..scenes import REAL_MESHES, MeshScene, real_mesh_path

    zc = ZooConfig.from_cfg(load_zoo_config() if cfg is None else cfg)
    if arch not in ZOO:
        raise ValueError(f"unknown architecture {arch!r}; expected one of {', '.join(ZOO)}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    q = parse_rotation(rotation, seed, zc.upright)
    if not Path(mesh).exists():
        if str(mesh) not in REAL_MESHES:
            raise FileNotFoundError(
                f"{mesh}: no such mesh file, nor a packaged real mesh ({', '.join(REAL_MESHES)})"
            )
        up = REAL_MESHES[str(mesh)].up if up is None else up
        mesh = real_mesh_path(str(mesh))
    mesh = Path(mesh)
    dest = Path(out) if out is not None else Path(f"{mesh.stem}_{arch}.safetensors")
    if dest.suffix != ".safetensors":
        raise ValueError(f"--out must end with .safetensors, got {str(dest)!r}")
    prepare_out_dir(dest.parent)
    scene = MeshScene(
        mesh, density=zc.density, grid_resolution=grid_resolution, up=up
    )  # up=None: the format's convention (OBJ, glTF: y; others: z), see scenes.mesh.default_up
    if q != [1.0, 0.0, 0.0, 0.0]:
        scene = scene.rotated(q)
    field = build_field(arch, seed=seed)
    gen = torch.Generator().manual_seed(stable_seed(seed, "fit-mesh"))
    with _torch_threads(zc.num_threads):
        res = distill(field, scene, cfg=zc.fit, generator=gen, progress=progress)
        metrics = fit_metrics(field, scene, res, zc)
    meta = encode_record(
        {
            "id": f"{mesh.stem}_{arch}",
            "object": mesh.stem,
            "class": "mesh",
            "arch": arch,
            "rotation": q,
            "split": "test",
            "file": dest.name,
            "init_seed": seed,
            **metrics,
        }
    )
    meta["source"] = str(mesh)
    save_field(field, dest, **meta)
    return {**meta, "out": str(dest)}
