"""`graphnerf benchmark CKPT ZOO --out DIR`: every number of the paper, baselines beside them.

Steps: load the encoder; embed the zoo's train and test NeRFs; build the baselines (a random
initialisation of the same config, ``--baseline CKPT`` when given, the functional probe); score
each with :func:`graphnerf.bench.evaluate.evaluate_embeddings` and, for models with a rotation
head, :mod:`graphnerf.bench.rotation`; write ``DIR/results.json`` (atomically),
``DIR/embeddings.safetensors`` (the model's embeddings, the ``graphnerf embed`` format),
``DIR/report.md`` and its PNGs.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..atomic import atomic_write_text
from ..config import load_config_checked
from .embed import (
    Encoder,
    _load_field,
    default_cache_dir,
    embed_records,
    load_zoo_records,
    read_embeddings,
    select_split,
    write_embeddings,
)
from .evaluate import TRAINING_ARCHS, evaluate_embeddings, sorted_archs
from .functional import FunctionalProbe, sample_field
from .rotation import rotation_errors, rotation_pairs, summarize_errors, true_relative

__all__ = [
    "load_bench_config",
    "load_checkpoint",
    "random_init_like",
    "run_benchmark",
    "zoo_summary",
]


def load_bench_config(overrides: Sequence[str] = (), name: str = "default") -> dict[str, Any]:
    """``configs/bench/<name>.yaml`` with Hydra overrides, as a plain dict."""
    from omegaconf import OmegaConf

    cfg = OmegaConf.to_container(
        load_config_checked(f"bench/{name}", overrides, what="benchmark config"), resolve=True
    )
    assert isinstance(cfg, dict)
    return cfg


def load_checkpoint(path: str | os.PathLike[str], device: str = "cpu") -> Encoder:
    """:func:`graphnerf.train.load_encoder`, with one clear line when ``path`` is not one."""
    p = Path(path)
    from ..train.registry import PRETRAINED, shipped_hint  # shipped encoders by name

    if not p.exists() and os.fspath(path) not in PRETRAINED:
        raise FileNotFoundError(f"{p}: no such checkpoint ({shipped_hint()})")
    from ..train import load_encoder

    try:
        return load_encoder(p, device=device)
    except (FileNotFoundError, ValueError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ValueError(msg if str(p) in msg else f"{p}: not an encoder checkpoint ({msg})") from e
    except Exception as e:  # torch.load / unpickling errors of arbitrary files
        raise ValueError(f"{p}: not an encoder checkpoint ({type(e).__name__}: {e})") from e


def random_init_like(encoder: Encoder, seed: int = 0) -> Encoder:
    """A freshly initialised encoder of ``encoder``'s config (:func:`graphnerf.train.build_encoder`)."""
    from ..train import build_encoder

    heads = getattr(encoder, "heads", None)
    return build_encoder(dict(encoder.config or {}), heads, seed=seed, name=encoder.name)


def _describe(encoder: Encoder, path: str) -> str:
    """``gmn, 1.2M parameters, step 300 of path`` (what is known of an encoder)."""
    parts = [str(getattr(encoder, "name", "model"))]
    module = getattr(encoder, "module", None)
    if module is not None:
        parts.append(f"{sum(p.numel() for p in module.parameters()):,} parameters")
    step = (getattr(encoder, "meta", None) or {}).get("step")
    if step is not None:
        parts.append(f"step {step}")
    if path:
        parts.append(f"`{path}`")
    return ", ".join(parts)


def zoo_summary(
    zoo: str | os.PathLike[str], records: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """Counts of a zoo: NeRFs, objects, classes and archs per split."""
    by_split: dict[str, Any] = {}
    for split in sorted({str(r["split"]) for r in records}):
        rs = [r for r in records if r["split"] == split]
        by_split[split] = {
            "nerfs": len(rs),
            "objects": len({r["object"] for r in rs}),
            "archs": dict(sorted(Counter(str(r["arch"]) for r in rs).items())),
            "classes": dict(sorted(Counter(str(r["class"]) for r in rs).items())),
        }
    psnr = [r["psnr"] for r in records if isinstance(r.get("psnr"), int | float)]
    return {
        "path": str(zoo),
        "nerfs": len(records),
        "objects": len({r["object"] for r in records}),
        "classes": sorted({str(r["class"]) for r in records}),
        "splits": by_split,
        "median_psnr": float(np.median(psnr)) if psnr else None,
    }


def _functional_embeddings(
    zoo: Path,
    records: Sequence[Mapping[str, Any]],
    dims: int,
    resolution: int,
    seed: int,
    show_progress: bool,
) -> tuple[np.ndarray, int]:
    from ..progress import progress

    feats = np.stack(
        [
            sample_field(_load_field(zoo, dict(r)), resolution).numpy()
            for r in progress(
                records, desc="functional probe", unit="NeRF", disable=not show_progress
            )
        ]
    )
    train = np.array([r["split"] == "train" for r in records])
    probe = FunctionalProbe(dims, seed).fit(feats[train])
    return probe.transform(feats), probe.n_components


def run_benchmark(
    checkpoint: str | os.PathLike[str] | Encoder,
    zoo: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    baseline: str | os.PathLike[str] | Encoder | None = None,
    baseline_name: str = "baseline",
    seed: int | None = None,
    overrides: Sequence[str] = (),
    cfg: Mapping[str, Any] | None = None,
    embeddings: str | os.PathLike[str] | None = None,
    random_init: Callable[[Encoder, int], Encoder] | None = None,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Run the benchmark; returns the results written to ``out/results.json``.

    Args:
        checkpoint: a checkpoint path (or an already loaded encoder).
        zoo: the zoo folder; it needs a ``train`` and a ``test`` split.
        out: output folder (created).
        baseline: a second checkpoint scored by the same code (e.g. the rendering-only model).
        seed: overrides ``cfg.seed`` (probes, random init, pair sampling, t-SNE).
        overrides: Hydra overrides of ``configs/bench/default.yaml``.
        embeddings: an embeddings file of this checkpoint on this zoo (``graphnerf embed``) to use
            instead of embedding again; it must hold every train and test NeRF.
        random_init: builds the random-init baseline (default :func:`random_init_like`).
    """
    t0, c0 = time.perf_counter(), time.process_time()
    cfg = dict(cfg) if cfg is not None else load_bench_config(overrides)
    if seed is not None:
        cfg["seed"] = int(seed)
    seed = int(cfg.get("seed", 0))
    torch.manual_seed(seed)
    root = Path(zoo)
    out_dir = Path(out)
    all_records = load_zoo_records(root)
    test = select_split(all_records, "test", root)
    train = [r for r in all_records if r["split"] == "train"]
    if not train:
        raise ValueError(f"{root}: the zoo has no 'train' split (the probes are fitted on it)")
    records = train + test
    ckpt_path = "" if not isinstance(checkpoint, str | os.PathLike) else str(checkpoint)
    encoder = load_checkpoint(checkpoint) if ckpt_path else checkpoint
    out_dir.mkdir(parents=True, exist_ok=True)
    cache_dir = cfg.get("cache_dir") or default_cache_dir(root)
    bs = int(cfg.get("batch_size", 1))
    seen_archs = list(getattr(encoder, "train_archs", None) or TRAINING_ARCHS)

    # the model's embeddings ------------------------------------------------------------
    ids = [str(r["id"]) for r in records]
    if embeddings is not None:
        ef = read_embeddings(embeddings, all_records)
        want = getattr(encoder, "checkpoint_hash", None)
        if want and ef.meta.get("checkpoint_hash") and ef.meta["checkpoint_hash"] != want:
            raise ValueError(
                f"{embeddings}: embeddings of checkpoint {ef.meta['checkpoint_hash'][:12]}, "
                f"not of {ckpt_path or 'this model'} ({want[:12]})"
            )
        z_model = ef.rows(ids)
    else:
        z_model = embed_records(
            encoder, root, records, bs, cache_dir, desc="embed model", show_progress=show_progress
        )
    write_embeddings(
        out_dir / "embeddings.safetensors",
        z_model,
        ids,
        checkpoint=ckpt_path,
        checkpoint_hash=getattr(encoder, "checkpoint_hash", None),
        encoder=str(getattr(encoder, "name", "")),
        model_config=dict(getattr(encoder, "config", {}) or {}),
        zoo=str(root),
        split="train+test",
    )

    # representations: the model and its baselines ---------------------------------------
    rot_cfg = cfg.get("rotation", {})
    pairs = rotation_pairs(test, int(rot_cfg.get("max_pairs", 512)), seed)
    identity = None
    if pairs:
        from .metrics import geodesic_error_deg

        rel = true_relative(test, pairs)
        identity = geodesic_error_deg(torch.tensor([[1.0, 0, 0, 0]]).expand_as(rel), rel).numpy()

    reps: dict[str, dict[str, Any]] = {}
    reps["model"] = {
        "embeddings": z_model.numpy(),
        "errors": rotation_errors(encoder, root, test, pairs, bs, cache_dir),
        "kind": _describe(encoder, ckpt_path),
    }
    base_cfg = cfg.get("baselines", {})
    if base_cfg.get("random_init", True):
        rnd = (random_init or random_init_like)(encoder, seed)
        reps["random_init"] = {
            "embeddings": embed_records(
                rnd,
                root,
                records,
                bs,
                cache_dir,
                desc="embed random init",
                show_progress=show_progress,
            ).numpy(),
            "errors": rotation_errors(rnd, root, test, pairs, bs, cache_dir),
            "kind": f"{getattr(encoder, 'name', 'model')} (random init, seed {seed})",
        }
    if baseline is not None:
        b_path = str(baseline) if isinstance(baseline, str | os.PathLike) else ""
        benc = load_checkpoint(baseline) if b_path else baseline
        reps[baseline_name] = {
            "embeddings": embed_records(
                benc,
                root,
                records,
                bs,
                cache_dir,
                desc=f"embed {baseline_name}",
                show_progress=show_progress,
            ).numpy(),
            "errors": rotation_errors(benc, root, test, pairs, bs, cache_dir),
            "kind": _describe(benc, b_path),
            "checkpoint": b_path,
            "checkpoint_hash": getattr(benc, "checkpoint_hash", None),
        }
    fp_cfg = base_cfg.get("functional_probe", {}) or {}
    if fp_cfg.get("enabled", True):
        dims = int(fp_cfg.get("dims") or getattr(encoder, "embedding_dim", z_model.shape[1]))
        res = int(fp_cfg.get("resolution", 16))
        z_fp, n_comp = _functional_embeddings(root, records, dims, res, seed, show_progress)
        reps["functional_probe"] = {
            "embeddings": z_fp,
            "errors": None,
            "kind": f"density + colour on a {res}^3 grid, PCA to {n_comp} dims",
        }

    scored: dict[str, dict[str, Any]] = {}
    extras: dict[str, dict[str, Any]] = {}
    for name, rep in reps.items():
        res_, ext = evaluate_embeddings(
            records, rep["embeddings"], seen_archs=seen_archs, cfg=cfg, seed=seed
        )
        res_["rotation"] = summarize_errors(rep["errors"], identity)
        res_["description"] = rep["kind"]
        for k in ("checkpoint", "checkpoint_hash"):
            if k in rep:
                res_[k] = rep[k]
        scored[name] = res_
        extras[name] = ext

    results: dict[str, Any] = {
        **{
            k: scored["model"][k]
            for k in ("classification", "retrieval", "rotation", "held_out_family")
        },
        "baselines": {n: r for n, r in scored.items() if n != "model"},
        "model": {
            "name": str(getattr(encoder, "name", "")),
            "description": scored["model"]["description"],
            "embedding_dim": int(z_model.shape[1]),
            "train_archs": getattr(encoder, "train_archs", None),
            "config": dict(getattr(encoder, "config", {}) or {}),
        },
        "checkpoint": ckpt_path,
        "checkpoint_hash": getattr(encoder, "checkpoint_hash", None),
        "config": cfg,
        "seeds": {
            "benchmark": seed,
            "random_init": seed,
            "probes": seed,
            "pairs": seed,
            "tsne": seed,
        },
        "zoo": zoo_summary(root, all_records),
        "archs": sorted_archs([r["arch"] for r in test]),
        "environment": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        },
    }

    if cfg.get("report", {}).get("enabled", True):
        from .report import write_report

        results["report"] = write_report(
            out_dir, results, records, reps, extras, root, cfg, seed, identity
        )
    results["wall_s"] = time.perf_counter() - t0
    results["cpu_s"] = time.process_time() - c0
    atomic_write_text(
        out_dir / "results.json", json.dumps(results, indent=2, sort_keys=False, allow_nan=False)
    )
    return results
