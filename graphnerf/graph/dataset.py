"""`GraphZooDataset`: the NeRFs of a zoo folder as parameter graphs (PyG ``Dataset``).

A zoo folder (docs/zoo-format.md) holds ``manifest.jsonl`` — one JSON object per NeRF with at least
``id``, ``file`` (path of its ``.safetensors`` relative to the folder), ``arch``, ``class``,
``split``, ``object``, ``rotation`` (quaternion wxyz) — and the NeRF files.

Each item is ``to_graph(load_any(file))`` with the manifest fields attached:

* ``y`` [1] long: index of ``class`` in :attr:`GraphZooDataset.classes`, the sorted class names of
  the *whole* manifest (so the indices agree across splits and arch filters);
* ``rotation`` [1, 4] float32 (batches to [B, 4]);
* ``id``, ``object``, ``arch``, ``class_name``, ``split``, ``file``: strings (batch to lists).

Optional cache (``cache_dir``): one ``.pt`` per NeRF holding the graph as plain tensors + spec JSON
(:func:`graph_to_dict`, read back with ``torch.load(weights_only=True)``) and the NeRF file's
size, ``mtime_ns`` and inode; a cached graph whose NeRF file has changed since (rewritten in
place or replaced by a rename, as ``save_field`` does), that was written under another
``SCHEMA_VERSION``, or with other probe-vertex settings, is rebuilt. Cache files
are written atomically (temporary file + ``os.replace``), so concurrent DataLoader workers and
interrupted runs never leave a torn file. The manifest fields are attached after loading, so the
cache does not depend on them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch_geometric.data import Data, Dataset

from ..fields import ZOO
from .convert import DEFAULT_PROBE_VERTICES, to_graph
from .schema import SCHEMA_VERSION
from .serialize import atomic_torch_save, graph_from_dict, graph_to_dict

STRING_FIELDS: tuple[str, ...] = ("id", "object", "arch", "split", "file")


def read_manifest(root: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The zoo's validated manifest records (:func:`graphnerf.data.read_manifest`, imported lazily
    so that the graph package does not load the generation stack)."""
    from ..data.manifest import read_manifest as _read

    return _read(root)


def _as_set(v: str | Sequence[str] | None) -> set[str] | None:
    if v is None:
        return None
    return {v} if isinstance(v, str) else set(v)


class GraphZooDataset(Dataset):
    """Parameter graphs of a zoo folder, optionally filtered by split and architecture.

    Args:
        root: the zoo folder (holds ``manifest.jsonl``).
        split: keep only these splits (a name or several); None keeps all.
        arch: keep only these architectures (zoo names); None keeps all.
        transform: PyG transform applied to each graph on access (not cached).
        cache_dir: folder for converted graphs (created if missing); None disables caching.
        probe_vertices: passed to :func:`~graphnerf.graph.to_graph` (None: its per-family
            default); part of the cache key.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str | Sequence[str] | None = None,
        arch: str | Sequence[str] | None = None,
        transform: Callable[[Data], Data] | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        probe_vertices: int | None = None,
    ) -> None:
        self.probe_vertices = probe_vertices
        self.zoo_root = Path(root)
        records = read_manifest(self.zoo_root)
        self.classes: list[str] = sorted({str(r["class"]) for r in records})
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
        splits, archs = _as_set(split), _as_set(arch)
        self.records = [
            r
            for r in records
            if (splits is None or r["split"] in splits) and (archs is None or r["arch"] in archs)
        ]
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        if self.cache_dir is not None:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
        super().__init__(str(self.zoo_root), transform=transform, log=False)

    # PyG Dataset API -------------------------------------------------------------------
    @property
    def raw_file_names(self) -> list[str]:
        return []

    @property
    def processed_file_names(self) -> list[str]:
        return []

    @property
    def num_classes(self) -> int:  # PyG's default would convert every graph to find out
        return len(self.classes)

    def len(self) -> int:
        return len(self.records)

    def __repr__(self) -> str:
        cache = f", cache_dir={str(self.cache_dir)!r}" if self.cache_dir is not None else ""
        return (
            f"{type(self).__name__}({len(self)} NeRFs, root={str(self.zoo_root)!r}, "
            f"{len(self.classes)} classes{cache})"
        )

    def get(self, idx: int) -> Data:
        rec = self.records[idx]
        g = self.graph(rec)
        g.y = torch.tensor([self.class_to_idx[str(rec["class"])]], dtype=torch.long)
        g.rotation = torch.tensor([rec["rotation"]], dtype=torch.float32)
        for k in STRING_FIELDS:
            setattr(g, k, str(rec[k]))
        g.class_name = str(rec["class"])
        return g

    # conversion and cache ---------------------------------------------------------------
    def nerf_path(self, rec: dict[str, Any]) -> Path:
        return self.zoo_root / rec["file"]

    def cache_path(self, rec: dict[str, Any]) -> Path:
        assert self.cache_dir is not None
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", str(rec["id"]))[:80]
        tag = hashlib.sha1(f"{rec['id']}\0{rec['file']}".encode()).hexdigest()[:10]
        return self.cache_dir / f"{safe}-{tag}.pt"

    @staticmethod
    def _stamp(path: Path) -> dict[str, int]:
        st = path.stat()
        return {"size": int(st.st_size), "mtime_ns": int(st.st_mtime_ns), "inode": int(st.st_ino)}

    def graph(self, rec: dict[str, Any]) -> Data:
        """The graph of one manifest record (from the cache when it is still valid)."""
        path = self.nerf_path(rec)
        if self.cache_dir is None:
            return self._convert(path, rec)
        stamp = self._stamp(path)
        cpath = self.cache_path(rec)
        if cpath.is_file():
            try:
                d = torch.load(cpath, map_location="cpu", weights_only=True)
            except Exception:  # unreadable cache entry: rebuild it
                d = None
            if (
                isinstance(d, dict)
                and d.get("source") == stamp
                and d.get("schema_version") == SCHEMA_VERSION
                and d.get("probes") == self._probe_key()
            ):
                return graph_from_dict(d, str(cpath))
        g = self._convert(path, rec)
        d = graph_to_dict(g)
        d["source"] = stamp
        d["probes"] = self._probe_key()
        atomic_torch_save(d, cpath)
        return g

    def _probe_key(self) -> str:
        """What decides the probe vertices of a converted graph (the request and the defaults)."""
        return json.dumps([self.probe_vertices, DEFAULT_PROBE_VERTICES], sort_keys=True)

    def _convert(self, path: Path, rec: dict[str, Any]) -> Data:
        from ..io import load_any  # lazy, like to_graph's checkpoint path

        spec = rec["arch"] if path.suffix.lower() != ".safetensors" and rec["arch"] in ZOO else None
        return to_graph(load_any(path, spec), probe_vertices=self.probe_vertices)
