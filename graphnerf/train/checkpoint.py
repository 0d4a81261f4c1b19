"""Encoder checkpoints of ``graphnerf train`` and the encoder-loading contract.

File (``RUN/checkpoints/last.pt`` and ``best.pt``; written atomically; tensors and plain
containers only, so ``torch.load(path, weights_only=True)`` reads it)::

    {
      "format": "graphnerf-encoder/1",
      "model": {"name": "gmn" | "sane", "config": {...configs/model/<name>.yaml...}},
      "heads": {"projection": {...}, "rotation": {...}, "decoder": {...}, "contrastive": {...}},
      "state_dict": {...},          # the whole TrainModule: encoder, heads, decoder, SigLIP t / b
      "train": {"archs": [...] | None, "zoo": str, "step": int, "config": {...resolved...}},
      "val": {...},                 # last validation metrics ({} if none ran)
      # last.pt only: the state to resume exactly
      "state": {"optimizer": ..., "scheduler": ..., "sampler": {...}, "rng": {...}},
    }

:func:`load_encoder` (a checkpoint file, or a shipped name of :data:`PRETRAINED`) and
:func:`build_encoder` (random initialisation of a config: the baseline of the benchmarks) return a
:class:`TrainedEncoder` in eval mode: ``embed(fields) -> [B, D]`` and ``relative_rotation(fields_a,
fields_b) -> [B, 4]``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch_geometric.data import Data

from ..fields import RadianceField
from ..graph.serialize import atomic_torch_save
from .inputs import as_field, graph_batch, token_batch
from .module import MODEL_NAMES, TrainModule, _plain
from .registry import PRETRAINED as _SHIPPED
from .registry import shipped_hint

__all__ = [
    "FORMAT",
    "LEGACY_CONFIG",
    "PRETRAINED",
    "CheckpointFormatError",
    "TrainedEncoder",
    "build_encoder",
    "load_encoder",
    "read_checkpoint",
    "save_checkpoint",
]

FORMAT = "graphnerf-encoder/1"

#: Shipped encoders: name -> absolute path of the slim checkpoint, discovered from the model cards
#: (``*.json``) in ``graphnerf/weights/`` or ``$GRAPHNERF_WEIGHTS_DIR`` (:mod:`.registry`; written
#: by :func:`graphnerf.train.pretrained.export_pretrained`).
PRETRAINED: Mapping[str, str] = _SHIPPED

#: Top-level TrainModule parts a slim (shipped) checkpoint may leave out: training-only losses
#: (the rendering decoder, the SigLIP temperature / bias); its ``"omitted"`` entry lists them.
OMITTABLE = ("decoder", "siglip")


#: Model config keys added after checkpoints of :data:`FORMAT` were first written, per model, with
#: the value that reproduces what those older checkpoints computed. :func:`read_checkpoint` fills
#: a missing key with it (a new config gets the current default from its YAML instead).
LEGACY_CONFIG: Mapping[str, Mapping[str, Any]] = {
    # the type-balanced edge readout and zero-initialised residual branches became defaults later
    "gmn": {"edge_readout": "edge", "residual_init": "scaled"},
}


class CheckpointFormatError(ValueError):
    """A file that is not a graphnerf encoder checkpoint (the message names the file)."""


def save_checkpoint(ckpt: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write a checkpoint dict atomically (creates the folder)."""
    return atomic_torch_save(dict(ckpt), path)


def _resolve(path: str | os.PathLike[str]) -> Path:
    s = os.fspath(path)
    if s in PRETRAINED:
        return Path(__file__).resolve().parent.parent / PRETRAINED[s]
    return Path(s)


def read_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and validate a checkpoint (``weights_only=True``; no code runs)."""
    p = _resolve(path)
    if not p.is_file():
        names = f" or one of the shipped names {sorted(PRETRAINED)}" if PRETRAINED else ""
        names = names or f"; {shipped_hint()}"
        raise FileNotFoundError(f"{p}: no such encoder checkpoint (expected a .pt file{names})")
    try:
        d = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # zip / pickle errors of a foreign file
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointFormatError(
            f"{p}: not a graphnerf encoder checkpoint (torch.load failed: {msg})"
        ) from None
    if not isinstance(d, dict) or d.get("format") != FORMAT:
        got = d.get("format") if isinstance(d, dict) else type(d).__name__
        raise CheckpointFormatError(
            f"{p}: not a graphnerf encoder checkpoint (format {got!r}, expected {FORMAT!r})"
        )
    for key in ("model", "heads", "state_dict", "train"):
        if key not in d:
            raise CheckpointFormatError(f"{p}: encoder checkpoint without its {key!r} entry")
    model = d["model"]
    if not isinstance(model, dict) or model.get("name") not in MODEL_NAMES:
        raise CheckpointFormatError(
            f"{p}: model name {model.get('name') if isinstance(model, dict) else model!r} is not "
            f"one of {list(MODEL_NAMES)}"
        )
    cfg = model.get("config")
    if isinstance(cfg, dict):
        for key, value in LEGACY_CONFIG.get(model["name"], {}).items():
            cfg.setdefault(key, value)
    return d


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class TrainedEncoder:
    """A (trained or freshly initialised) encoder for downstream use; eval mode, no gradients.

    Attributes:
        name: ``"gmn"`` or ``"sane"``.
        config: the model config (plain dict, ``configs/model/<name>.yaml``).
        heads: the heads config (plain dict).
        train_archs: the architectures it was trained on (None: unknown / untrained).
        checkpoint_hash: sha256 of the checkpoint file (None for :func:`build_encoder`).
        embedding_dim: ``D``.
        module: the underlying :class:`~graphnerf.train.module.TrainModule`.
        batch_size: NeRFs per forward pass inside :meth:`embed`.
    """

    def __init__(
        self,
        module: TrainModule,
        train_archs: Sequence[str] | None = None,
        checkpoint_hash: str | None = None,
        device: torch.device | str = "cpu",
        meta: Mapping[str, Any] | None = None,
        batch_size: int = 16,
    ) -> None:
        self.module = module.to(device).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.name = module.name
        self.config = _plain(module.model_cfg)
        self.heads = _plain(module.heads_cfg)
        self.train_archs = list(train_archs) if train_archs is not None else None
        self.checkpoint_hash = checkpoint_hash
        self.device = torch.device(device)
        self.embedding_dim = int(module.embedding_dim)
        self.meta = dict(meta or {})
        self.batch_size = int(batch_size)

    def __repr__(self) -> str:
        h = self.checkpoint_hash[:12] if self.checkpoint_hash else "untrained"
        return f"TrainedEncoder({self.name}, D={self.embedding_dim}, archs={self.train_archs}, {h})"

    def _inputs(self, items: Sequence[RadianceField | Data]) -> Any:
        if self.name == "gmn":
            return graph_batch(items).to(self.device)
        assert self.module.tokenizer is not None
        return token_batch(items, self.module.tokenizer).to(self.device)

    @torch.no_grad()
    def embed(self, fields: Sequence[RadianceField | Data]) -> Tensor:
        """Embeddings ``[B, D]`` (float32, on the encoder's device) of fields or parameter graphs
        (e.g. from ``GraphZooDataset``; SANE rebuilds the field from the graph). Batched inside
        by :attr:`batch_size`; SANE tokenises every field at the same fixed points (seed 0)."""
        items = list(fields)
        if not items:
            return torch.zeros(0, self.embedding_dim, device=self.device)
        outs = [
            self.module.embed(self._inputs(items[i : i + self.batch_size]))
            for i in range(0, len(items), self.batch_size)
        ]
        return torch.cat(outs).float()

    @torch.no_grad()
    def relative_rotation(
        self, fields_a: Sequence[RadianceField | Data], fields_b: Sequence[RadianceField | Data]
    ) -> Tensor | None:
        """Predicted relative rotations ``q_b q_a^-1`` ``[B, 4]`` (unit, wxyz) of pairs of NeRFs
        of the same object; None if the encoder has no rotation head."""
        a, b = list(fields_a), list(fields_b)
        if len(a) != len(b):
            raise ValueError(f"relative_rotation: {len(a)} fields_a but {len(b)} fields_b")
        if not a:
            return torch.zeros(0, 4, device=self.device)
        if self.name == "gmn" and self.module.rotation is None:
            return None
        outs = []
        n = max(1, self.batch_size // 2)
        for i in range(0, len(a), n):
            ca, cb = a[i : i + n], b[i : i + n]
            k = len(ca)
            idx = torch.arange(k, device=self.device)
            if self.name == "gmn":
                z = self.module.embed(self._inputs(ca + cb))
                out = {"embedding": z}
            else:
                seq = token_batch([as_field(f) for f in ca + cb], self.module.tokenizer).to(
                    self.device
                )
                out = self.module.encoder(seq, mask_ratio=0.0)
            outs.append(self.module.predict_rotation(out, idx, idx + k))
        return torch.cat(outs).float()


def build_encoder(
    model_cfg: Mapping[str, Any],
    heads_cfg: Mapping[str, Any] | None = None,
    seed: int = 0,
    device: torch.device | str = "cpu",
    name: str | None = None,
) -> TrainedEncoder:
    """A randomly initialised encoder of a model config (``torch.manual_seed(seed)`` first): the
    untrained baseline with exactly the architecture of a trained one.

    Args:
        model_cfg: ``configs/model/gmn.yaml`` (has ``name: gmn``) or ``sane.yaml`` (has ``net``
            and ``tokens``) as a mapping, or the ``model`` entry of a checkpoint
            (``{"name", "config"}``).
        heads_cfg: heads config (None: defaults).
        seed: initialisation seed (the global RNG is restored afterwards).
        name: ``"gmn"`` / ``"sane"`` (default: inferred from the config).
    """
    cfg = _plain(model_cfg)
    if isinstance(cfg, dict) and set(cfg) >= {"name", "config"} and isinstance(cfg["config"], dict):
        name, cfg = name or cfg["name"], cfg["config"]
    if name is None:
        name = (
            "sane"
            if isinstance(cfg, dict) and "net" in cfg and "tokens" in cfg
            else cfg.get("name", "gmn")
        )
    if name not in MODEL_NAMES:
        raise ValueError(f"unknown model {name!r}; expected one of {list(MODEL_NAMES)}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = TrainModule(name, cfg, heads_cfg)
    return TrainedEncoder(module, device=device, meta={"seed": seed})


def load_encoder(
    path: str | os.PathLike[str], device: torch.device | str = "cpu"
) -> TrainedEncoder:
    """The encoder of a ``graphnerf train`` checkpoint (or a name of :data:`PRETRAINED`)."""
    p = _resolve(path)
    d = read_checkpoint(p)
    module = TrainModule(d["model"]["name"], d["model"]["config"], d["heads"])
    omitted = list(d.get("omitted") or [])  # slim checkpoints (graphnerf.train.pretrained)
    bad = sorted(set(omitted) - set(OMITTABLE))
    if bad:
        raise CheckpointFormatError(f"{p}: omits {bad}; only {list(OMITTABLE)} may be left out")
    for part in omitted:
        setattr(module, part, None)  # not trained in this file: no random stand-in either
    try:
        module.load_state_dict(d["state_dict"])
    except RuntimeError as e:
        first = str(e).splitlines()[0]
        raise CheckpointFormatError(
            f"{p}: state_dict does not fit its model config ({first})"
        ) from None
    train = d.get("train") or {}
    return TrainedEncoder(
        module,
        train_archs=train.get("archs"),
        checkpoint_hash=_sha256(p),
        device=device,
        meta={"step": train.get("step"), "zoo": train.get("zoo"), "val": d.get("val", {})},
    )


def checkpoint_dict(
    module: TrainModule,
    *,
    archs: Sequence[str] | None,
    zoo: str,
    step: int,
    config: Mapping[str, Any],
    val: Mapping[str, Any] | None = None,
    state: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The checkpoint dict of a module (``state``: the resume state, last.pt only)."""
    sd = {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}
    d: dict[str, Any] = {
        "format": FORMAT,
        "model": {"name": module.name, "config": _plain(module.model_cfg)},
        "heads": _plain(module.heads_cfg),
        "state_dict": sd,
        "train": {
            "archs": list(archs) if archs is not None else None,
            "zoo": str(zoo),
            "step": int(step),
            "config": _plain(config),
        },
        "val": _plain(dict(val or {})),
    }
    if state is not None:
        d["state"] = state
    return d
