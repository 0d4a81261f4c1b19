"""Shipped pretrained encoders: export a ``graphnerf train`` checkpoint, load one by name.

* :func:`export_pretrained` reads a run checkpoint (``RUN/checkpoints/best.pt``) and writes the two
  files of a shipped encoder into the weights folder (:mod:`graphnerf.train.registry`):

  - ``<name>.pt``: a slim ``graphnerf-encoder/1`` checkpoint (``torch.load(weights_only=True)``
    reads it) with what :class:`~graphnerf.train.TrainedEncoder` needs to embed and to predict
    relative rotations: the model and heads configs and the state of the encoder, the projection,
    the rotation head and the embedding centring. Left out: the optimizer, scheduler, sampler and
    RNG states (``last.pt``'s resume state) and the training-only loss parts
    (:data:`~graphnerf.train.checkpoint.OMITTABLE`: the rendering decoder, the SigLIP
    temperature / bias), named in the file's ``"omitted"`` entry;
  - ``<name>.json``: its model card (:func:`model_card`): name, encoder kind, parameter counts,
    file size and sha256, the source zoo, training step / loss preset / seed, validation and
    benchmark metrics, the date, and the commands that reproduce it.

  A weights file of :data:`MAX_BYTES` (20 MB) or more is refused: nothing is written.
* :func:`pretrained` loads a shipped encoder by name (its sha256 checked against the card);
  :func:`list_pretrained` gives ``{name: card}``. Both look in ``graphnerf/weights/`` of the
  installed package, or in ``$GRAPHNERF_WEIGHTS_DIR``, or in ``weights_dir``.

Because :data:`graphnerf.train.PRETRAINED` is discovered from the same cards, every command that
takes a checkpoint path also takes a shipped name: ``load_encoder("procedural13-gmn")``,
``graphnerf embed procedural13-gmn ZOO --out z.safetensors``, ``graphnerf benchmark NAME ZOO``.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import re
import shlex
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from ..atomic import atomic_write, atomic_write_text
from .checkpoint import (
    FORMAT,
    OMITTABLE,
    TrainedEncoder,
    _sha256,
    load_encoder,
    read_checkpoint,
)
from .registry import (
    CARD_FORMAT,
    discover,
    shipped_hint,
    valid_name,
    weights_dir,
)

__all__ = [
    "MAX_BYTES",
    "derive_overrides",
    "export_pretrained",
    "headline",
    "list_pretrained",
    "metrics_from_benchmark",
    "model_card",
    "pretrained",
]

#: Largest weights file that may ship (bytes, exclusive): 20 MB.
MAX_BYTES = 20_000_000

# placeholders of the reproduce commands (the exporting machine's paths mean nothing elsewhere)
ZOO, RUN, BENCH = "ZOO", "RUN", "BENCH"


class PretrainedError(ValueError):
    """A shipped encoder that cannot be exported or loaded (one line naming the file / name)."""


# ----------------------------------------------------------------------------- loading
def list_pretrained(weights_dir: str | os.PathLike[str] | None = None) -> dict[str, dict[str, Any]]:
    """``{name: model card}`` of the shipped encoders, sorted by name (each card also has
    ``path``, the weights file). ``weights_dir``: another folder than the package's
    ``graphnerf/weights/`` (default: ``$GRAPHNERF_WEIGHTS_DIR`` if set)."""
    return discover(weights_dir)


def pretrained(
    name: str,
    device: torch.device | str = "cpu",
    weights_dir: str | os.PathLike[str] | None = None,
) -> TrainedEncoder:
    """The shipped encoder ``name`` (eval mode): ``.embed(fields) -> [B, D]``,
    ``.relative_rotation(a, b) -> [B, 4]``. Its file's sha256 must match its card's; the card is
    in ``encoder.meta["card"]``."""
    cards = discover(weights_dir)
    if name not in cards:
        raise FileNotFoundError(
            f"{name!r}: no shipped encoder of that name ({shipped_hint(weights_dir)})"
        )
    card = cards[name]
    enc = load_encoder(card["path"], device=device)
    if enc.checkpoint_hash != card.get("sha256"):
        raise PretrainedError(
            f"{card['path']}: sha256 {str(enc.checkpoint_hash)[:12]}... does not match its model "
            f"card's {str(card.get('sha256'))[:12]}... (a changed or truncated file)"
        )
    enc.meta["card"] = {k: v for k, v in card.items() if k != "path"}
    enc.meta["pretrained"] = name
    return enc


# ----------------------------------------------------------------------------- export
def _slim(d: Mapping[str, Any], name: str, source_sha: str) -> dict[str, Any]:
    """The slim checkpoint dict of a run checkpoint dict (see the module docstring)."""
    sd = d["state_dict"]
    present = {k.split(".", 1)[0] for k in sd}
    omitted = [part for part in OMITTABLE if part in present]
    keep = {
        k: v.detach().cpu().clone().contiguous()
        for k, v in sd.items()
        if k.split(".", 1)[0] not in omitted
    }
    return {
        "format": FORMAT,
        "model": d["model"],
        "heads": d["heads"],
        "state_dict": keep,
        "train": d["train"],
        "val": d.get("val", {}),
        "omitted": omitted,
        "pretrained": {"name": name, "source_sha256": source_sha},
    }


def _params(sd: Mapping[str, torch.Tensor]) -> dict[str, int]:
    """Parameter counts ``{top-level part: n, ..., "total": n}`` of a state dict (buffers too)."""
    out: dict[str, int] = {}
    for k, v in sd.items():
        part = k.split(".", 1)[0]
        out[part] = out.get(part, 0) + int(v.numel())
    out["total"] = sum(out.values())
    return out


def export_pretrained(
    checkpoint: str | os.PathLike[str],
    name: str,
    out_dir: str | os.PathLike[str] | None = None,
    card: Mapping[str, Any] | None = None,
    *,
    benchmark: str | os.PathLike[str] | None = None,
    max_bytes: int = MAX_BYTES,
    commands: bool = True,
) -> Path:
    """Write ``out_dir/<name>.pt`` (slim checkpoint) and ``out_dir/<name>.json`` (model card).

    Args:
        checkpoint: a ``graphnerf train`` checkpoint (``best.pt`` or ``last.pt``).
        name: the shipped name (lower case, digits, ``.-_``; e.g. ``procedural13-gmn``).
        out_dir: the weights folder (default: :func:`graphnerf.train.registry.weights_dir`, the
            package's ``graphnerf/weights/`` unless ``$GRAPHNERF_WEIGHTS_DIR`` is set).
        card: entries merged into the model card (e.g. ``metrics``, ``description``,
            ``commands``); they win over the derived ones except the integrity fields (``format``,
            ``name``, ``file``, ``sha256``, ``size_bytes``).
        benchmark: a ``graphnerf benchmark`` ``results.json`` of this checkpoint (its
            ``checkpoint_hash`` must be the sha256 of the checkpoint, or of the slim file of an
            earlier export of it under ``name``): its headline metrics and those of its
            baselines go into ``metrics``.
        max_bytes: refuse a weights file of this size or more (default 20 MB).
        commands: derive the commands that reproduce the zoo, the training and the benchmark.
    Returns:
        the path of ``<name>.pt``. Everything is checked on a staged file first (size, loading,
        metrics, card); then the ``.pt`` is renamed into place and the ``.json`` written
        (atomically), so the registry never sees a card without its weights, and a refused
        export leaves the folder as it was.
    """
    if not valid_name(name):
        raise PretrainedError(
            f"{name!r}: a shipped name is lower-case letters, digits, '.', '_', '-' (no .pt)"
        )
    src = Path(checkpoint)
    if not src.is_file():
        raise FileNotFoundError(f"{src}: no such checkpoint to export")
    d = read_checkpoint(src)
    source_sha = _sha256(src)
    out = weights_dir(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    slim = _slim(d, name, source_sha)

    pt = out / f"{name}.pt"
    staging = out / f".{name}.{uuid.uuid4().hex[:12]}.pt.staging"
    size: dict[str, Any] = {}

    def write(tmp: Path) -> None:
        torch.save(slim, tmp)
        n = tmp.stat().st_size
        if n >= max_bytes:
            raise PretrainedError(
                f"{src}: the slim encoder is {n / 1e6:.1f} MB, not under the "
                f"{max_bytes / 1e6:g} MB a shipped encoder may take; nothing written"
            )
        size["bytes"] = n
        size["sha256"] = _sha256(tmp)

    try:
        atomic_write(staging, write)
        metrics: dict[str, Any] | None = None
        if benchmark is not None:  # of the run checkpoint, or of a slim export of it
            metrics = metrics_from_benchmark(benchmark, _exports_of(out, name, source_sha, size))
        enc = load_encoder(staging)  # the slim file must load as an encoder
        full = model_card(
            d,
            slim,
            name=name,
            size_bytes=size["bytes"],
            sha256=size["sha256"],
            source=src,
            source_sha=source_sha,
            embedding_dim=enc.embedding_dim,
            metrics=metrics,
            benchmark=benchmark,
            commands=commands,
        )
        extra = dict(card or {})
        fixed = {k: full[k] for k in ("format", "name", "file", "sha256", "size_bytes")}
        text = json.dumps({**full, **extra, **fixed}, indent=2) + "\n"
        os.replace(staging, pt)  # weights first, then the card that makes them visible
    finally:
        staging.unlink(missing_ok=True)
    atomic_write_text(out / f"{name}.json", text)
    return pt


def _exports_of(out: Path, name: str, source_sha: str, size: Mapping[str, Any]) -> list[str]:
    """sha256s that stand for the checkpoint ``source_sha``: itself, the file being written, and
    the weights of an earlier export of it under ``name`` (its card names the same source)."""
    shas = [source_sha, str(size["sha256"])]
    try:
        prev = json.loads((out / f"{name}.json").read_text())
    except (OSError, ValueError):
        return shas
    if isinstance(prev, dict) and (prev.get("source") or {}).get("sha256") == source_sha:
        shas.append(str(prev.get("sha256")))
    return shas


def model_card(
    d: Mapping[str, Any],
    slim: Mapping[str, Any],
    *,
    name: str,
    size_bytes: int,
    sha256: str,
    source: Path,
    source_sha: str,
    embedding_dim: int,
    metrics: Mapping[str, Any] | None = None,
    benchmark: str | os.PathLike[str] | None = None,
    commands: bool = True,
) -> dict[str, Any]:
    """The model card of a slim checkpoint (plain JSON; see :func:`export_pretrained`)."""
    import graphnerf

    train = d.get("train") or {}
    cfg = train.get("config") or {}
    kind = d["model"]["name"]
    loss = (cfg.get("loss") or {}) if isinstance(cfg, dict) else {}
    sd_full = d["state_dict"]
    card: dict[str, Any] = {
        "format": CARD_FORMAT,
        "name": name,
        "file": f"{name}.pt",
        "sha256": sha256,
        "size_bytes": int(size_bytes),
        "encoder": {
            "kind": kind,
            "embedding_dim": int(embedding_dim),
            "params": _params(slim["state_dict"]),
            "omitted": list(slim["omitted"]),
            "omitted_params": {k: v for k, v in _params(sd_full).items() if k in slim["omitted"]},
            "config": d["model"]["config"],
            "heads": d["heads"],
            "outputs": {
                "embed": f"[B, {int(embedding_dim)}] float32",
                "relative_rotation": "[B, 4] unit quaternion q_b q_a^-1 (wxyz)",
            },
        },
        "training": {
            "step": train.get("step"),
            "steps_planned": (cfg.get("train") or {}).get("steps") if cfg else None,
            "loss": loss.get("name"),
            "loss_weights": loss.get("weights"),
            "seed": (cfg.get("train") or {}).get("seed") if cfg else None,
            "train_archs": train.get("archs"),
            "val": d.get("val", {}),
            "config": cfg,
        },
        "zoo": zoo_description(train.get("zoo")),
        "metrics": dict(metrics or {}),
        "source": {
            "checkpoint": str(source),
            "sha256": source_sha,
            "size_bytes": int(source.stat().st_size),
        },
        "created": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "environment": {
            "graphnerf": getattr(graphnerf, "__version__", None),
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
    }
    if commands:
        card["commands"], card["commands_notes"] = reproduce_commands(d, source, name, benchmark)
    return card


def zoo_description(zoo: str | None) -> dict[str, Any]:
    """What is known of the training zoo: its recorded path and, when the folder is still there,
    its config (classes, objects, rotations, splits, archs) and NeRF counts per split / arch."""
    out: dict[str, Any] = {"path": zoo}
    if not zoo or not Path(zoo).is_dir():
        out["note"] = "zoo folder not found at export; only its path is known"
        return out
    root = Path(zoo)
    cfg = _zoo_config(root)
    if cfg is not None:
        out["config"] = {
            k: cfg.get(k)
            for k in ("classes", "objects_per_class", "rotations", "splits", "archs", "seed")
            if k in cfg
        }
    try:
        from ..data.manifest import read_manifest

        records = read_manifest(root)
    except (OSError, ValueError):
        records = []
    counts: dict[str, int] = {}
    archs: dict[str, int] = {}
    for r in records:
        counts[str(r.get("split"))] = counts.get(str(r.get("split")), 0) + 1
        archs[str(r.get("arch"))] = archs.get(str(r.get("arch")), 0) + 1
    out["n_nerfs"] = len(records)
    if cfg is not None:  # an unfinished zoo says so: planned > n_nerfs
        try:
            from ..data import make_plan

            out["planned"] = len(make_plan(cfg).jobs)
        except (ValueError, TypeError, KeyError) as e:
            out["planned"] = None
            out["note"] = f"its plan could not be made from config.yaml ({e})"
    out["per_split"] = dict(sorted(counts.items()))
    out["per_arch"] = dict(sorted(archs.items()))
    out["classes"] = sorted({str(r.get("class")) for r in records})
    return out


def _zoo_config(root: Path) -> dict[str, Any] | None:
    path = root / "config.yaml"
    if not path.is_file():
        return None
    from omegaconf import OmegaConf

    try:
        cfg = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    except Exception:  # a foreign or broken YAML: the card just says less
        return None
    return cfg if isinstance(cfg, dict) else None


# ----------------------------------------------------------------------------- metrics
def metrics_from_benchmark(
    results: str | os.PathLike[str], checkpoint_sha: str | Sequence[str] | None = None
) -> dict[str, Any]:
    """Headline metrics of a ``graphnerf benchmark`` ``results.json`` (model and baselines):
    classification accuracy on seen / unseen architectures (MLP probe), cross-architecture
    recall@1, median rotation error; plus where they come from. ``checkpoint_sha``: refuse
    results of another checkpoint (or one of several accepted hashes)."""
    p = Path(results)
    try:
        r = json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise PretrainedError(f"{p}: not a readable benchmark results.json ({e})") from None
    if not isinstance(r, dict) or "classification" not in r:
        raise PretrainedError(f"{p}: not a graphnerf benchmark results.json (no 'classification')")
    got = r.get("checkpoint_hash")
    accept = [checkpoint_sha] if isinstance(checkpoint_sha, str) else list(checkpoint_sha or [])
    if accept and got not in accept:
        raise PretrainedError(
            f"{p}: results of checkpoint {str(got)[:12]}..., not of the exported one "
            f"{accept[0][:12]}..."
        )

    def head(x: Mapping[str, Any]) -> dict[str, Any]:
        c, ret, rot = x.get("classification", {}), x.get("retrieval", {}), x.get("rotation", {})
        return {
            "accuracy_seen": c.get("seen"),
            "accuracy_unseen": c.get("unseen"),
            "accuracy_overall": c.get("overall"),
            "chance": c.get("chance"),
            "recall_at_1_cross_arch": ret.get("mean_recall_at_1"),
            "rotation_median_deg": rot.get("median_deg"),
            "rotation_identity_median_deg": rot.get("identity_median_deg"),
        }

    zoo = r.get("zoo") or {}
    return {
        "benchmark": {
            "results_sha256": _sha256(p),
            "seed": (r.get("seeds") or {}).get("benchmark"),
            "zoo": zoo,
            "seen_archs": (r.get("classification") or {}).get("seen_archs"),
            "unseen_archs": (r.get("classification") or {}).get("unseen_archs"),
        },
        "model": head(r),
        "baselines": {k: head(v) for k, v in (r.get("baselines") or {}).items()},
    }


def headline(card: Mapping[str, Any]) -> str:
    """One line of the card's headline metrics (``-`` where the card has none)."""
    m = (card.get("metrics") or {}).get("model") or {}

    def pct(k: str) -> str:
        v = m.get(k)
        return "-" if v is None else f"{100 * float(v):.1f}%"

    rot = m.get("rotation_median_deg")
    parts = [
        f"acc seen {pct('accuracy_seen')}",
        f"unseen {pct('accuracy_unseen')}",
        f"R@1 x-arch {pct('recall_at_1_cross_arch')}",
        f"rot median {'-' if rot is None else f'{float(rot):.1f} deg'}",
    ]
    return ", ".join(parts)


# ----------------------------------------------------------------------------- commands
def _flatten(x: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(x, Mapping) and x:
        out: dict[str, Any] = {}
        for k, v in x.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: x}


_PLAIN = re.compile(r"^[A-Za-z_/][\w./-]*$")
_KEYWORDS = {"null", "true", "false", "inf", "nan", "none", "yes", "no", "on", "off"}


def _fmt(v: Any) -> str:
    """A value in Hydra's override grammar."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        if _PLAIN.match(v) and v.lower() not in _KEYWORDS:
            return v
        q = "'" if "'" not in v else '"'
        return f"{q}{v}{q}"
    if isinstance(v, Mapping):
        return "{" + ",".join(f"{k}:{_fmt(w)}" for k, w in v.items()) + "}"
    if isinstance(v, list | tuple):
        return "[" + ",".join(_fmt(w) for w in v) + "]"
    raise TypeError(f"no override syntax for {type(v).__name__}")


def derive_overrides(
    target: Mapping[str, Any],
    compose: Callable[[list[str]], Mapping[str, Any]],
    base: Sequence[str] = (),
    max_overrides: int = 64,
) -> list[str] | None:
    """Hydra overrides (after ``base``) under which ``compose`` gives exactly ``target`` (compared
    leaf by leaf after resolution), or None when there are none (a key to delete, or a value the
    grammar cannot express). Greedy: add the first differing leaf, compose again (an
    interpolation then follows the key it copies); so the result is checked by construction."""
    want = _flatten(target)
    overrides = list(base)
    for _ in range(max_overrides + 1):
        try:
            got = _flatten(compose(overrides))
        except ValueError:
            return None
        diff = sorted(k for k in want.keys() | got.keys() if want.get(k, ...) != got.get(k, ...))
        if not diff:
            return overrides
        key = diff[0]
        if key not in want:
            return None
        try:
            new = f"{'' if key in got else '+'}{key}={_fmt(want[key])}"
        except TypeError:
            return None
        if new in overrides:
            return None
        overrides.append(new)
    return None


def _plain_cfg(cfg: Any) -> dict[str, Any]:
    from omegaconf import OmegaConf

    out = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(out, dict)
    return out


def _command(prog: list[str], overrides: Sequence[str], subs: Mapping[str, str]) -> str:
    """A shell command: ``prog`` then the overrides with ``key=<path>`` replaced by placeholders."""
    words = [*prog]
    for o in overrides:
        k = o.split("=", 1)[0]
        words.append(f"{k}={subs[k]}" if k in subs else o)
    return " ".join(shlex.quote(w) for w in words)


def _world_size(source: Path, d: Mapping[str, Any]) -> int | None:
    """Processes of the run: from the resume state of ``last.pt`` (the checkpoint's or its
    sibling's); None if unknown."""
    state = d.get("state")
    if state is None:
        last = source.parent / "last.pt"
        if last.is_file() and last.resolve() != source.resolve():
            try:
                state = torch.load(last, map_location="cpu", weights_only=True).get("state")
            except Exception:
                state = None
    if isinstance(state, Mapping) and "world_size" in state:
        return int(state["world_size"])
    return None


def reproduce_commands(
    d: Mapping[str, Any],
    source: Path,
    name: str,
    benchmark: str | os.PathLike[str] | None = None,
) -> tuple[list[str], list[str]]:
    """The commands that make this encoder again (zoo, training, benchmark, export), each checked
    to compose the recorded config exactly; and notes on what could not be derived. Paths are the
    placeholders ``ZOO``, ``RUN`` and ``BENCH``."""
    cmds: list[str] = []
    notes: list[str] = []
    train = d.get("train") or {}
    cfg = train.get("config") or {}
    zoo = train.get("zoo")

    # the zoo
    zcfg = _zoo_config(Path(zoo)) if zoo and Path(zoo).is_dir() else None
    if zcfg is None:
        notes.append("zoo: its config.yaml was not readable at export; no generate command")
    else:
        from ..config import CONFIG_DIR
        from ..data import load_zoo_config

        def compose_zoo(cname: str) -> Callable[[list[str]], Mapping[str, Any]]:
            return lambda ov: _plain_cfg(load_zoo_config(ov, cname))

        base = [f"out_dir={zcfg.get('out_dir')}"]
        names = sorted(p.stem for p in (CONFIG_DIR / "data").glob("*.yaml"))
        want = _flatten(zcfg)

        def n_diff(cname: str) -> int:
            try:
                got = _flatten(compose_zoo(cname)(base))
            except ValueError:
                return 1 << 30
            return sum(want.get(k, ...) != got.get(k, ...) for k in want.keys() | got.keys())

        best = min(names, key=n_diff) if names else None
        ov = derive_overrides(zcfg, compose_zoo(best), base) if best else None
        if ov is None:
            notes.append("zoo: no configs/data/*.yaml with overrides composes its config.yaml")
        else:
            cmds.append(_command(["graphnerf", "generate", "--config", best], ov, {"out_dir": ZOO}))

    # the training
    if not cfg:
        notes.append("train: the checkpoint holds no training config; no train command")
    else:
        from .loop import load_train_config

        model = d["model"]["name"]
        loss = (cfg.get("loss") or {}).get("name")
        base = [f"zoo={cfg.get('zoo')}", f"out_dir={cfg.get('out_dir')}", f"model={model}"]
        if loss:
            base.append(f"loss={loss}")
        ov = derive_overrides(cfg, lambda o: _plain_cfg(load_train_config(o)), base)
        if ov is None:
            notes.append("train: no overrides of configs/train/default.yaml compose its config")
        else:
            world = _world_size(source, d)
            prog = ["graphnerf", "train"]
            if world is not None and world > 1:
                prog = ["torchrun", "--nproc_per_node", str(world), "-m", "graphnerf", "train"]
            elif world is None:
                notes.append(
                    "train: the process count is unknown (no last.pt beside the checkpoint); "
                    "the command runs one process"
                )
            cmds.append(_command(prog, ov, {"zoo": ZOO, "out_dir": RUN}))
        step, planned = train.get("step"), (cfg.get("train") or {}).get("steps")
        ckpt = "best.pt" if "state" not in d else "last.pt"
        if step is not None and planned is not None and int(step) != int(planned):
            notes.append(f"train: the encoder is {ckpt} at step {step} of {planned}")

    # the benchmark
    if benchmark is not None:
        from ..bench.benchmark import load_bench_config

        res = json.loads(Path(benchmark).read_text())
        bcfg = res.get("config")
        ov = None
        if isinstance(bcfg, dict):
            ov = derive_overrides(bcfg, lambda o: load_bench_config(o), [])
        if ov is None:
            notes.append("benchmark: no overrides of configs/bench/default.yaml compose its config")
        else:
            prog = ["graphnerf", "benchmark", f"{RUN}/checkpoints/{source.name}", ZOO]
            cmds.append(_command([*prog, "--out", BENCH], ov, {}))

    exp = ["graphnerf", "pretrained", "--export", f"{RUN}/checkpoints/{source.name}"]
    exp += ["--name", name]
    if benchmark is not None:
        exp += ["--benchmark", f"{BENCH}/results.json"]
    cmds.append(" ".join(exp))
    return cmds, notes
