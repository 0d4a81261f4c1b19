"""Embedding a zoo with a trained encoder, and the embeddings file (``graphnerf embed``).

The file is a ``.safetensors`` holding one tensor, ``embeddings`` ``[N, D]`` float32, whose
header metadata (all strings, as safetensors requires) holds:

* ``ids``: JSON list of the manifest ids, in row order;
* ``checkpoint`` (path as given), ``checkpoint_hash`` (sha256 or ``""``), ``encoder`` (name);
* ``model_config``: JSON of the checkpoint's config; ``zoo``: the zoo folder; ``split``;
* ``format``: ``graphnerf-embeddings/1``.

Encoders are read through a small protocol (:class:`Encoder`), which
:class:`graphnerf.train.TrainedEncoder` satisfies: ``name``, ``config``, ``embedding_dim``,
``embed(fields | graphs) -> [B, D]``. A GMN reads parameter graphs, which come from the zoo's graph
cache (:class:`graphnerf.graph.GraphZooDataset`); other encoders read the fields themselves.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor

from ..atomic import atomic_write
from ..progress import progress

__all__ = [
    "EMBEDDINGS_FORMAT",
    "Encoder",
    "EmbeddingsFile",
    "default_cache_dir",
    "embed_records",
    "load_zoo_records",
    "read_embeddings",
    "select_split",
    "write_embeddings",
]

EMBEDDINGS_FORMAT = "graphnerf-embeddings/1"


class Encoder(Protocol):
    """What the benchmark needs from a trained encoder (``graphnerf.train.TrainedEncoder``)."""

    name: str
    config: dict[str, Any]
    train_archs: list[str] | None
    checkpoint_hash: str | None

    @property
    def embedding_dim(self) -> int: ...

    def embed(self, inputs: Sequence[Any]) -> Tensor: ...

    def relative_rotation(
        self, fields_a: Sequence[Any], fields_b: Sequence[Any]
    ) -> Tensor | None: ...


def load_zoo_records(zoo: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The manifest records of a zoo folder (errors name the folder)."""
    from ..data.manifest import read_manifest

    root = Path(zoo)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such zoo folder")
    records = read_manifest(root)
    if not records:
        raise ValueError(f"{root}/manifest.jsonl: the zoo has no NeRFs")
    return records


def select_split(
    records: Sequence[dict[str, Any]], split: str | None, zoo: str | os.PathLike[str] = "zoo"
) -> list[dict[str, Any]]:
    """Records of one split (all when ``split`` is None); an error when the split is empty."""
    if split is None or split == "all":
        return list(records)
    out = [r for r in records if r["split"] == split]
    if not out:
        present = sorted({r["split"] for r in records})
        raise ValueError(f"{zoo}: the zoo has no {split!r} split (splits present: {present})")
    return out


def default_cache_dir(zoo: str | os.PathLike[str]) -> Path:
    """Where graphs of a zoo are cached by default: ``ZOO/.cache/graphs`` (shared with
    ``graphnerf train``)."""
    return Path(zoo) / ".cache" / "graphs"


def _load_field(root: Path, rec: dict[str, Any]) -> Any:
    from ..fields import ZOO
    from ..io import load_any

    path = root / rec["file"]
    spec = rec["arch"] if path.suffix.lower() != ".safetensors" and rec["arch"] in ZOO else None
    return load_any(path, spec).eval()


def _wants_graphs(encoder: Encoder) -> bool:
    return str(getattr(encoder, "name", "")).lower() == "gmn"


def embed_records(
    encoder: Encoder,
    zoo: str | os.PathLike[str],
    records: Sequence[dict[str, Any]],
    batch_size: int = 1,
    cache_dir: str | os.PathLike[str] | None = None,
    desc: str = "embed",
    show_progress: bool = True,
) -> Tensor:
    """Embeddings ``[N, D]`` float32 of the zoo NeRFs ``records``, in order.

    The first NeRF of each architecture is embedded on its own first, so an architecture the
    model cannot read fails with one line naming it. Graphs come from ``cache_dir`` (GMN). With
    ``batch_size`` 1 a NeRF's embedding does not depend on the other records (batched
    reductions otherwise move it by float rounding, ~1e-7).
    """
    from ..graph.dataset import GraphZooDataset

    root = Path(zoo)
    graphs = _wants_graphs(encoder)
    ds = None
    if graphs:
        ds = GraphZooDataset(root, cache_dir=cache_dir)

    def inputs(recs: Sequence[dict[str, Any]]) -> list[Any]:
        if ds is not None:
            return [ds.graph(r) for r in recs]
        return [_load_field(root, r) for r in recs]

    def run(recs: Sequence[dict[str, Any]]) -> Tensor:
        with torch.no_grad():
            z = encoder.embed(inputs(recs))
        return torch.as_tensor(z).detach().to("cpu", torch.float32).reshape(len(recs), -1)

    out: list[Tensor | None] = [None] * len(records)
    first: dict[str, int] = {}
    for i, r in enumerate(records):
        first.setdefault(str(r["arch"]), i)
    for arch, i in first.items():  # one NeRF per arch: readable?
        try:
            out[i] = run([records[i]])
        except (ValueError, RuntimeError, KeyError, IndexError, TypeError) as e:
            raise ValueError(
                f"{root}: the {getattr(encoder, 'name', 'model')} model cannot read arch {arch!r} "
                f"({records[i]['file']}): {str(e).splitlines()[0] if str(e) else type(e).__name__}"
            ) from e
    todo = [i for i in range(len(records)) if out[i] is None]
    bar = progress(total=len(records), desc=desc, unit="NeRF", disable=not show_progress)
    bar.update(len(records) - len(todo))
    for s in range(0, len(todo), batch_size):
        idx = todo[s : s + batch_size]
        z = run([records[i] for i in idx])
        for j, i in enumerate(idx):
            out[i] = z[j]
        bar.update(len(idx))
    bar.close()
    if not out:
        return torch.zeros(0, int(encoder.embedding_dim))
    return torch.stack([t.reshape(-1) for t in out if t is not None])


class EmbeddingsFile:
    """An embeddings file read back: ``embeddings [N, D]``, ``ids`` and the header metadata."""

    def __init__(
        self, embeddings: Tensor, ids: list[str], meta: dict[str, Any], path: str = ""
    ) -> None:
        self.path = path
        self.embeddings = embeddings
        self.ids = ids
        self.meta = meta

    def rows(self, ids: Sequence[str]) -> Tensor:
        """Rows of the given ids ``[len(ids), D]`` (each must be in the file)."""
        index = {k: i for i, k in enumerate(self.ids)}
        missing = [k for k in ids if k not in index]
        if missing:
            raise ValueError(
                f"{self.path or 'embeddings file'}: its ids do not match the zoo: no row for "
                f"{len(missing)} of the {len(ids)} NeRFs needed (e.g. {missing[:3]}); embed them "
                "all (graphnerf embed --split all)"
            )
        return self.embeddings[torch.tensor([index[k] for k in ids], dtype=torch.long)]


def write_embeddings(
    path: str | os.PathLike[str],
    embeddings: Tensor,
    ids: Sequence[str],
    *,
    checkpoint: str = "",
    checkpoint_hash: str | None = None,
    encoder: str = "",
    model_config: dict[str, Any] | None = None,
    zoo: str = "",
    split: str = "all",
) -> Path:
    """Write an embeddings file atomically (layout: module docstring)."""
    from safetensors.torch import save_file

    emb = torch.as_tensor(embeddings).detach().to("cpu", torch.float32).contiguous()
    if emb.dim() != 2 or emb.size(0) != len(ids):
        raise ValueError(
            f"embeddings must be [N, D] with N = {len(ids)} ids, got {list(emb.shape)}"
        )
    if len(set(ids)) != len(ids):
        raise ValueError("embeddings: ids must be unique")
    meta = {
        "format": EMBEDDINGS_FORMAT,
        "ids": json.dumps(list(map(str, ids))),
        "checkpoint": str(checkpoint),
        "checkpoint_hash": checkpoint_hash or "",
        "encoder": str(encoder),
        "model_config": json.dumps(model_config or {}, sort_keys=True, default=str),
        "zoo": str(zoo),
        "split": str(split),
    }
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(dest, lambda tmp: save_file({"embeddings": emb}, str(tmp), metadata=meta))


def read_embeddings(
    path: str | os.PathLike[str], zoo_records: Sequence[dict[str, Any]] | None = None
) -> EmbeddingsFile:
    """Read an embeddings file; with ``zoo_records``, every id must be one of the zoo's.

    Raises:
        ValueError: not an embeddings file, or ids that do not match the zoo (one line).
    """
    from safetensors import safe_open

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such embeddings file")
    try:
        with safe_open(str(p), framework="pt") as f:
            meta = dict(f.metadata() or {})
            emb = f.get_tensor("embeddings")
    except Exception as e:  # safetensors raises its own error types
        raise ValueError(f"{p}: not an embeddings file ({e})") from e
    if meta.get("format") != EMBEDDINGS_FORMAT or "ids" not in meta:
        raise ValueError(f"{p}: not an embeddings file (header format {meta.get('format')!r})")
    ids = json.loads(meta["ids"])
    if emb.dim() != 2 or emb.size(0) != len(ids):
        raise ValueError(f"{p}: {len(ids)} ids for embeddings of shape {list(emb.shape)}")
    if zoo_records is not None:
        known = {r["id"] for r in zoo_records}
        unknown = [k for k in ids if k not in known]
        if unknown:
            raise ValueError(
                f"{p}: its ids do not match the zoo: {len(unknown)} of {len(ids)} are not in the "
                f"zoo's manifest (e.g. {unknown[:3]}); embeddings of another zoo?"
            )
    out_meta: dict[str, Any] = dict(meta)
    for k in ("model_config",):
        try:
            out_meta[k] = json.loads(meta.get(k, "{}"))
        except json.JSONDecodeError:
            pass
    return EmbeddingsFile(emb.to(torch.float32), ids, out_meta, str(p))
