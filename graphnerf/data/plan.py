"""The zoo plan: every NeRF a zoo generation will fit, fully determined by the config.

A zoo is ``classes x objects_per_class`` procedural objects plus the ``meshes`` (real meshes:
packaged names such as ``duck`` or mesh files; each is one object of class ``mesh``), each seen
under ``rotations`` rotations (rotation 0 is always the identity), each fitted by every
architecture of its split.

* **Splits are by object**: per class, the objects are shuffled (seeded by ``seed`` and the class)
  and cut by the split fractions, so all NeRFs of an object (every rotation and architecture) are
  in one split and every class is represented in each split with a positive fraction. The
  meshes are split the same way, as one more class.
* **Rotations**: ``random_rotation`` seeded by ``(seed, class index, object seed, k)``: uniform on
  SO(3), or about the z axis with ``upright``.
* **Seeds**: the initialisation seed of a NeRF and the random stream of each fitting batch are
  stable hashes of ``seed`` and the ids, so they never depend on the process or the shard.
* **Batches**: the jobs of each architecture, in plan order, cut into batches of ``batch_size``
  that are fitted together (:func:`graphnerf.fit.distill_batch`). A batch is the unit of work and
  of sharding (batch ``b`` belongs to shard ``b % n``): a batched fit depends on its batch-mates'
  random draws, so fixing the batches is what makes 2 shards, or a resumed run, give bit-for-bit
  the files of one uninterrupted run.

The plan is a pure function of the config: every process (shard) computes the same plan.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from ..fields import TRAINING_ARCHS, UNSEEN_ARCHS, ZOO
from ..scenes import (
    CLASSES,
    REAL_MESHES,
    MeshScene,
    Scene,
    make_scene,
    random_rotation,
    real_mesh,
    real_mesh_path,
)
from ..scenes.mesh import MESH_SUFFIXES

__all__ = [
    "ARCH_GROUPS",
    "SPLITS",
    "Batch",
    "Job",
    "Plan",
    "ZooConfig",
    "ZooConfigError",
    "make_plan",
    "split_sizes",
    "stable_seed",
]

SPLITS: tuple[str, ...] = ("train", "val", "test")
#: Names accepted for a split's architectures besides an explicit list of zoo names.
ARCH_GROUPS: dict[str, tuple[str, ...]] = {
    "all": tuple(ZOO),
    "training": TRAINING_ARCHS,
    "unseen": UNSEEN_ARCHS,
}
NERF_DIR = "nerfs"
#: Class name of the real-mesh objects, and the index that seeds their splits and rotations.
MESH_CLASS = "mesh"
MESH_CLASS_INDEX = len(CLASSES)
_FRACTION_TOL = 1e-6


class ZooConfigError(ValueError):
    """An invalid zoo-generation setting (the message names the key and what was expected)."""


def stable_seed(*parts: object) -> int:
    """A 62-bit seed from the string forms of ``parts`` (same value in every process)."""
    digest = hashlib.blake2b("/".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 2


# ----------------------------------------------------------------------------- config
@dataclass(frozen=True)
class ZooConfig:
    """The validated settings of a zoo generation (see ``configs/data/default.yaml``).

    Build it with :meth:`from_cfg` from the composed Hydra config; every check happens there,
    before anything is written.
    """

    out_dir: str
    seed: int
    classes: tuple[str, ...]
    meshes: tuple[str, ...]
    objects_per_class: int
    first_object: int
    rotations: int
    upright: bool
    splits: dict[str, float]
    archs: dict[str, tuple[str, ...]]
    batch_size: int
    density: float
    edge: float
    eval_size: int
    eval_samples: int
    iou_res: int
    num_threads: int | None
    fit: dict[str, Any] = field(repr=False)

    @classmethod
    def from_cfg(cls, cfg: DictConfig | Mapping | ZooConfig) -> ZooConfig:
        """Validate a composed ``data`` config (DictConfig or plain mapping)."""
        if isinstance(cfg, ZooConfig):
            return cfg
        if isinstance(cfg, DictConfig):
            cfg = OmegaConf.to_container(cfg, resolve=True)
        if not isinstance(cfg, Mapping):
            raise TypeError(f"expected a zoo config (DictConfig or mapping), got {type(cfg)}")
        required = (
            "out_dir",
            "seed",
            "classes",
            "objects_per_class",
            "rotations",
            "splits",
            "archs",
            "batch_size",
            "fit",
        )
        missing = [k for k in required if k not in cfg]
        if missing:
            raise ZooConfigError(f"zoo config: missing key(s) {missing}")
        scene = cfg.get("scene") or {}
        ev = cfg.get("eval") or {}
        threads = cfg.get("num_threads")
        meshes = _meshes(cfg.get("meshes") or [])
        return cls(
            out_dir=_out_dir(cfg["out_dir"]),
            seed=_int(cfg["seed"], "seed", 0),
            classes=_classes(cfg["classes"], allow_empty=bool(meshes)),
            meshes=meshes,
            objects_per_class=_int(cfg["objects_per_class"], "objects_per_class", 1),
            first_object=_int(cfg.get("first_object", 0), "first_object", 0),
            rotations=_int(cfg["rotations"], "rotations", 1),
            upright=_bool(cfg.get("upright", False), "upright"),
            splits=_splits(cfg["splits"]),
            archs=_archs(cfg["archs"]),
            batch_size=_int(cfg["batch_size"], "batch_size", 1),
            density=_positive(scene.get("density", 200.0), "scene.density"),
            edge=_nonnegative(scene.get("edge", 0.0), "scene.edge"),
            eval_size=_int(ev.get("size", 128), "eval.size", 1),
            eval_samples=_int(ev.get("n_samples", 128), "eval.n_samples", 1),
            iou_res=_int(ev.get("iou_res", 64), "eval.iou_res", 1),
            num_threads=None if threads is None else _int(threads, "num_threads", 1),
            fit=_fit(cfg["fit"]),
        )


def _int(value: Any, key: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ZooConfigError(f"{key} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ZooConfigError(f"{key} must be >= {minimum}, got {value}")
    return int(value)


def _bool(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise ZooConfigError(f"{key} must be true or false, got {value!r}")
    return value


def _positive(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ZooConfigError(f"{key} must be a positive number, got {value!r}")
    return float(value)


def _nonnegative(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ZooConfigError(f"{key} must be a number >= 0, got {value!r}")
    return float(value)


def _out_dir(value: Any) -> str:
    if not isinstance(value, str | os.PathLike) or not str(value).strip():
        raise ZooConfigError(f"out_dir must be a folder path, got {value!r}")
    return os.fspath(value)


def _names(value: Any, key: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, Sequence) and all(isinstance(v, str) for v in value):
        return list(value)
    raise ZooConfigError(f"{key} must be a name or a list of names, got {value!r}")


def _classes(value: Any, allow_empty: bool = False) -> tuple[str, ...]:
    names = list(CLASSES) if value == "all" else _names(value, "classes")
    if not names and not allow_empty:
        raise ZooConfigError(
            "classes is empty and there are no meshes; expected 'all' or a list of class names"
        )
    unknown = [n for n in names if n not in CLASSES]
    if unknown:
        raise ZooConfigError(
            f"unknown class(es) {unknown} in classes; expected 'all' or names from "
            f"{', '.join(CLASSES)}"
        )
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ZooConfigError(f"classes lists {dup} more than once")
    return tuple(names)


def mesh_object(source: str) -> str:
    """The object id of a mesh source: the packaged name, or the file's stem."""
    return source if source in REAL_MESHES else Path(source).stem


def _meshes(value: Any) -> tuple[str, ...]:
    sources = _names(value, "meshes")
    for src in sources:
        if src in REAL_MESHES:
            try:
                real_mesh_path(src)
            except FileNotFoundError as e:
                raise ZooConfigError(f"meshes: {e}") from e
        elif not Path(src).is_file():
            raise ZooConfigError(
                f"meshes: {src!r} is neither a packaged real mesh ({', '.join(REAL_MESHES)}) "
                "nor an existing mesh file"
            )
        elif Path(src).suffix.lower() not in MESH_SUFFIXES:
            raise ZooConfigError(
                f"meshes: {src!r} is not a mesh file; expected one of {', '.join(MESH_SUFFIXES)}"
            )
    objects = [mesh_object(s) for s in sources]
    dup = sorted({o for o in objects if objects.count(o) > 1})
    if dup:
        raise ZooConfigError(f"meshes: object name(s) {dup} given more than once")
    clash = [o for o in objects if o.rsplit("_", 1)[0] in CLASSES]
    if clash:
        raise ZooConfigError(f"meshes: {clash} look like procedural object ids; rename the file")
    return tuple(sources)


@functools.lru_cache(maxsize=8)
def _mesh_scene(source: str, density: float) -> MeshScene:
    """Mesh scenes are slow to build (occupancy, colour grids): one per source and density."""
    if source in REAL_MESHES:
        return real_mesh(source, density=density)
    return MeshScene(source, density=density)


def _splits(value: Any) -> dict[str, float]:
    if not isinstance(value, Mapping):
        raise ZooConfigError(
            f"splits must map split names to fractions, e.g. {{train: 0.8, val: 0.1, test: 0.1}}, "
            f"got {value!r}"
        )
    unknown = sorted(set(value) - set(SPLITS))
    if unknown:
        raise ZooConfigError(f"unknown split(s) {unknown}; expected some of {list(SPLITS)}")
    out = {}
    for name in SPLITS:
        f = value.get(name, 0.0)
        if isinstance(f, bool) or not isinstance(f, int | float) or not 0.0 <= f <= 1.0:
            raise ZooConfigError(f"splits.{name} must be a fraction in [0, 1], got {f!r}")
        out[name] = float(f)
    total = sum(out.values())
    if abs(total - 1.0) > _FRACTION_TOL:
        raise ZooConfigError(
            f"split fractions must sum to 1, got {' + '.join(f'{v:g}' for v in out.values())} "
            f"= {total:g} (train, val, test)"
        )
    return out


def _archs(value: Any) -> dict[str, tuple[str, ...]]:
    if not isinstance(value, Mapping):
        raise ZooConfigError(
            f"archs must map each split to its architectures, e.g. {{train: training, "
            f"val: training, test: all}}, got {value!r}"
        )
    unknown_splits = sorted(set(value) - set(SPLITS))
    if unknown_splits:
        raise ZooConfigError(f"archs: unknown split(s) {unknown_splits}; expected {list(SPLITS)}")
    out = {}
    for split in SPLITS:
        raw = value.get(split, "training")
        if isinstance(raw, str) and raw in ARCH_GROUPS:
            names = list(ARCH_GROUPS[raw])
        else:
            names = _names(raw, f"archs.{split}")
        unknown = [n for n in names if n not in ZOO]
        if unknown:
            raise ZooConfigError(
                f"unknown architecture(s) {unknown} in archs.{split}; expected "
                f"{' / '.join(ARCH_GROUPS)} or names from {', '.join(ZOO)}"
            )
        if not names:
            raise ZooConfigError(f"archs.{split} is empty")
        out[split] = tuple(dict.fromkeys(names))
    return out


def _fit(value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping) or "distill" not in value:
        raise ZooConfigError("fit must be the fit config (with a `distill` section)")
    return dict(value)


# ----------------------------------------------------------------------------- plan
@dataclass(frozen=True)
class Job:
    """One NeRF of the zoo.

    Attributes:
        id: ``f"{object}_r{k}_{arch}"``, e.g. ``chair_0003_r1_hash``.
        object: the object id, ``f"{class}_{object_seed:04d}"`` (the scene's name), or for a
            mesh its packaged name / file stem.
        class_name, object_seed: ``make_scene(class_name, object_seed)``; for a mesh
            ``"mesh"`` and its index in ``meshes``.
        rotation_index: k; 0 is the identity.
        rotation: unit quaternion (w, x, y, z), ``w >= 0``.
        arch, split: zoo architecture name and the object's split.
        init_seed: ``build_field(arch, seed=init_seed)``.
        file: path of the NeRF relative to the zoo folder.
        mesh: the mesh source (packaged name or file path) of a mesh object, else ``""``.
    """

    id: str
    object: str
    class_name: str
    object_seed: int
    rotation_index: int
    rotation: tuple[float, float, float, float]
    arch: str
    split: str
    init_seed: int
    file: str
    mesh: str = ""

    def scene(self, density: float = 200.0, edge: float = 0.0) -> Scene:
        """The ground-truth scene (the identity rotation is the unrotated scene, exactly).

        ``edge`` applies to procedural scenes; meshes have hard edges.
        """
        if self.mesh:
            base: Scene = _mesh_scene(self.mesh, float(density))
        else:
            base = make_scene(self.class_name, self.object_seed, density=density, edge=edge)
        return base if self.rotation_index == 0 else base.rotated(self.rotation)

    def identity(self) -> dict[str, Any]:
        """The manifest fields that identify this NeRF (everything but the fit results)."""
        return {
            "id": self.id,
            "object": self.object,
            "class": self.class_name,
            "arch": self.arch,
            "rotation": list(self.rotation),
            "split": self.split,
            "init_seed": self.init_seed,
            "file": self.file,
            **({"source": self.mesh} if self.mesh else {}),
        }


@dataclass(frozen=True)
class Batch:
    """NeRFs of one architecture fitted together with one random stream (``seed``)."""

    index: int
    arch: str
    jobs: tuple[Job, ...]
    seed: int


@dataclass(frozen=True)
class Plan:
    """Every job of a zoo, its fitting batches and the object splits."""

    config: ZooConfig
    jobs: tuple[Job, ...]
    batches: tuple[Batch, ...]
    object_splits: dict[str, str]

    def shard(self, index: int, count: int) -> list[Batch]:
        """The batches of shard ``index`` of ``count`` (batch ``b`` goes to shard ``b % count``)."""
        if not (isinstance(count, int) and count >= 1 and isinstance(index, int)):
            raise ValueError(
                f"shard must be (index, count) integers, count >= 1, got {index, count}"
            )
        if not 0 <= index < count:
            raise ValueError(f"shard index must be in [0, {count}), got {index}")
        return [b for b in self.batches if b.index % count == index]

    def counts(self, key: str) -> dict[str, int]:
        """Number of planned NeRFs per ``split`` / ``arch`` / ``class_name``."""
        out: dict[str, int] = {}
        for job in self.jobs:
            v = getattr(job, key)
            out[v] = out.get(v, 0) + 1
        return out


def _split_objects(cfg: ZooConfig, class_index: int, n: int) -> list[str]:
    """The split of each of a class's ``n`` objects (index j = object seed ``first_object + j``,
    or mesh ``j``)."""
    order = np.random.default_rng([cfg.seed, class_index, 0x5B11]).permutation(n).tolist()
    splits: list[str] = []
    for name, size in split_sizes(n, cfg.splits).items():
        splits += [name] * size
    out = [""] * n
    for j, name in zip(order, splits, strict=True):
        out[j] = name
    return out


def _rotation(cfg: ZooConfig, class_index: int, object_seed: int, k: int) -> tuple[float, ...]:
    if k == 0:
        return (1.0, 0.0, 0.0, 0.0)
    rng = np.random.default_rng([cfg.seed, class_index, object_seed, k])
    q = random_rotation(rng, upright=cfg.upright, dtype=torch.float64).tolist()
    return tuple(float(v) for v in q)


def make_plan(cfg: ZooConfig | DictConfig | Mapping) -> Plan:
    """The full, deterministic list of NeRF jobs and batches of a zoo config."""
    cfg = ZooConfig.from_cfg(cfg)
    jobs: list[Job] = []
    object_splits: dict[str, str] = {}
    # (class name, class index, object id, object seed, mesh source) of every object
    objects: list[tuple[str, int, str, int, str]] = []
    for class_name in cfg.classes:
        ci = CLASSES.index(class_name)
        for j in range(cfg.objects_per_class):
            obj_seed = cfg.first_object + j
            objects.append((class_name, ci, f"{class_name}_{obj_seed:04d}", obj_seed, ""))
    for j, src in enumerate(cfg.meshes):
        objects.append((MESH_CLASS, MESH_CLASS_INDEX, mesh_object(src), j, src))
    splits: dict[int, list[str]] = {}
    for class_name, ci, obj, obj_seed, src in objects:
        if ci not in splits:
            n = len(cfg.meshes) if src else cfg.objects_per_class
            splits[ci] = _split_objects(cfg, ci, n)
        split = splits[ci][obj_seed if src else obj_seed - cfg.first_object]
        object_splits[obj] = split
        for k in range(cfg.rotations):
            q = _rotation(cfg, ci, obj_seed, k)
            for arch in cfg.archs[split]:
                jid = f"{obj}_r{k}_{arch}"
                jobs.append(
                    Job(
                        id=jid,
                        object=obj,
                        class_name=class_name,
                        object_seed=obj_seed,
                        rotation_index=k,
                        rotation=q,
                        arch=arch,
                        split=split,
                        init_seed=stable_seed(cfg.seed, "init", jid),
                        file=f"{NERF_DIR}/{class_name}/{jid}.safetensors",
                        mesh=src,
                    )
                )
    batches: list[Batch] = []
    for arch in dict.fromkeys(job.arch for job in jobs):
        mine = [job for job in jobs if job.arch == arch]
        for start in range(0, len(mine), cfg.batch_size):
            chunk = tuple(mine[start : start + cfg.batch_size])
            seed = stable_seed(cfg.seed, "fit", *(job.id for job in chunk))
            batches.append(Batch(len(batches), arch, chunk, seed))
    return Plan(cfg, tuple(jobs), tuple(batches), object_splits)


def split_sizes(n: int, fractions: Mapping[str, float]) -> dict[str, int]:
    """Objects per split for ``n`` objects of a class: the cumulative fractions times ``n``,
    rounded half up, so the sizes add up to ``n`` and each is within 1 of its fraction."""
    out, start, cum = {}, 0, 0.0
    for name in SPLITS:
        cum += fractions.get(name, 0.0)
        stop = n if name == SPLITS[-1] else min(n, math.floor(cum * n + 0.5 + 1e-9))
        out[name] = max(0, stop - start)
        start = max(start, stop)
    return out
