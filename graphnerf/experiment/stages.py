"""The stages of an experiment: zoo -> train/<run> -> bench/<run> -> report.

Each stage knows whether it is done from what is on disk, so rerunning a finished stage is a no-op
and an interrupted one resumes where it stopped:

* ``zoo``: done when every NeRF of the plan is in ``RUN/zoo/manifest.jsonl``; otherwise
  :func:`graphnerf.data.generate` resumes it (in ``zoo.shards`` processes at once);
* ``train/<run>``: done when ``RUN/train/<run>/checkpoints/last.pt`` has reached ``train.steps``;
  otherwise the run continues from ``last.pt`` (``resume=true``, exact) or starts;
* ``bench/<run>``: done when ``RUN/bench/<run>/results.json`` scored the run's current checkpoint
  (``best.pt``, else ``last.pt``; compared by sha256);
* ``report``: rewritten whenever any other stage ran (cheap).

Every finished stage is recorded in ``RUN/stages.json`` (:class:`~graphnerf.experiment.ledger.Ledger`)
with its wall and CPU time.
"""

from __future__ import annotations

import json
import multiprocessing as mp
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from ..config import load_config_checked
from .ledger import Ledger, StageTimer

__all__ = [
    "ExperimentError",
    "Stage",
    "load_experiment_config",
    "plan_stages",
    "run_experiment",
    "zoo_config",
    "train_config",
]


class ExperimentError(ValueError):
    """A bad experiment config or run folder (one-line message)."""


@dataclass(frozen=True)
class Stage:
    """One unit of work: ``kind`` is ``zoo``, ``train``, ``bench`` or ``report``; ``run`` the
    training run it belongs to (``""`` for zoo and report)."""

    kind: str
    run: str = ""

    @property
    def name(self) -> str:
        return f"{self.kind}/{self.run}" if self.run else self.kind


def load_experiment_config(overrides: Sequence[str] = ()) -> DictConfig:
    """``configs/experiment/<name>.yaml`` composed with Hydra overrides.

    ``experiment=<name>`` among the overrides picks the file (default ``procedural13``); every
    other override is ``key=value`` of that file. Errors are one line (:class:`ExperimentError`).
    """
    name = "procedural13"
    rest: list[str] = []
    for o in overrides:
        if o.startswith("experiment="):
            name = o.split("=", 1)[1]
        else:
            rest.append(o)
    cfg = load_config_checked(f"experiment/{name}", rest, "experiment config", ExperimentError)
    if OmegaConf.is_missing(cfg, "out_dir"):
        raise ExperimentError(f"experiment {name}: out_dir=RUN is required (the run folder)")
    for k in ("objects", "rotations", "steps"):
        v = cfg.scale[k]
        if not isinstance(v, int) or v < 1:
            raise ExperimentError(f"experiment {name}: scale.{k} must be an integer >= 1, got {v!r}")
    if not cfg.runs:
        raise ExperimentError(f"experiment {name}: runs is empty (nothing to train)")
    bad = [r for r in cfg.bench.get("per_run", {}) or {} if r not in cfg.runs]
    bad += [r for r in cfg.report.headline if r not in cfg.runs]
    if bad:
        raise ExperimentError(
            f"experiment {name}: bench.per_run / report.headline name unknown runs {bad}; "
            f"runs are {list(cfg.runs)}"
        )
    with open_dict(cfg):
        cfg.name = name
    return cfg


def plan_stages(cfg: DictConfig) -> list[Stage]:
    """Every stage of the experiment in order, or those of ``only``."""
    stages = [Stage("zoo")]
    stages += [Stage("train", r) for r in cfg.runs]
    stages += [Stage("bench", r) for r in cfg.runs]
    stages.append(Stage("report"))
    if cfg.get("only"):
        wanted = [str(s) for s in cfg.only]
        names = [s.name for s in stages]
        unknown = [w for w in wanted if w not in names]
        if unknown:
            raise ExperimentError(f"only={wanted}: unknown stages {unknown}; stages are {names}")
        stages = [s for s in stages if s.name in wanted]
    return stages


# ----------------------------------------------------------------------------------------------
# configs of the stages


def zoo_config(cfg: DictConfig) -> DictConfig:
    """The zoo's generation config: ``configs/data/<zoo.config>`` + overrides, scaled, written to
    ``RUN/zoo``."""
    from ..data import load_zoo_config

    out = Path(str(cfg.out_dir)) / "zoo"
    zc = load_zoo_config([*map(str, cfg.zoo.overrides), f"out_dir={out}"], str(cfg.zoo.config))
    zc.objects_per_class = int(zc.objects_per_class) * int(cfg.scale.objects)
    zc.rotations = int(zc.rotations) * int(cfg.scale.rotations)
    return zc


def train_config(cfg: DictConfig, run: str) -> DictConfig:
    """The training config of ``run``: its overrides, the run's zoo and out_dir, scaled steps."""
    from ..train.loop import load_train_config

    root = Path(str(cfg.out_dir))
    tc = load_train_config(
        [*map(str, cfg.runs[run]), f"zoo={root / 'zoo'}", f"out_dir={root / 'train' / run}"]
    )
    tc.train.steps = int(tc.train.steps) * int(cfg.scale.steps)
    return tc


def run_checkpoint(cfg: DictConfig, run: str) -> Path:
    """The checkpoint a run is benchmarked with: ``best.pt`` (chosen on validation), else
    ``last.pt`` (a run without a val split)."""
    ck = Path(str(cfg.out_dir)) / "train" / run / "checkpoints"
    return ck / "best.pt" if (ck / "best.pt").is_file() else ck / "last.pt"


# ----------------------------------------------------------------------------------------------
# the stages


def _generate_shard(zc: dict[str, Any], shard: tuple[int, int], threads: int | None) -> None:
    from ..data import generate

    if threads:
        torch.set_num_threads(threads)
    generate(OmegaConf.create(zc), shard=shard, progress=True)


def _zoo_progress(zc: DictConfig) -> tuple[int, int]:
    """``(missing, planned)``: NeRFs of the plan not yet in the manifest (or without their file),
    and all NeRFs of the plan."""
    from ..data.manifest import read_manifest
    from ..data.plan import make_plan

    root = Path(str(zc.out_dir))
    have = {r["id"] for r in read_manifest(root, missing_ok=True) if (root / r["file"]).is_file()}
    jobs = make_plan(zc).jobs
    return sum(1 for j in jobs if j.id not in have), len(jobs)


def stage_zoo(cfg: DictConfig) -> dict[str, Any] | None:
    """Generate (or finish) the zoo; None when it was already complete."""
    from ..data import generate

    zc = zoo_config(cfg)
    missing, planned = _zoo_progress(zc)
    if missing == 0:
        return None
    n = max(1, int(cfg.zoo.shards))
    print(f"zoo: {missing} NeRFs to fit in {zc.out_dir} ({n} process{'es' if n > 1 else ''})")
    if n == 1:
        generate(zc, progress=True)
    else:
        plain = OmegaConf.to_container(zc, resolve=True)
        ctx = mp.get_context("spawn")
        procs = [
            ctx.Process(target=_generate_shard, args=(plain, (i, n), cfg.get("threads")))
            for i in range(n)
        ]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        failed = [i for i, p in enumerate(procs) if p.exitcode != 0]
        if failed:
            raise RuntimeError(f"zoo: generation shards {failed} of {n} failed (see their output)")
    left, _ = _zoo_progress(zc)
    if left:
        raise RuntimeError(f"zoo: {left} NeRFs still missing in {zc.out_dir} after generation")
    return {"nerfs": planned}


def _last_step(path: Path) -> int | None:
    if not path.is_file():
        return None
    from ..train.checkpoint import read_checkpoint

    ck = read_checkpoint(path)
    return int(ck.get("state", {}).get("sampler", {}).get("step", ck.get("step", 0)))


def stage_train(cfg: DictConfig, run: str) -> dict[str, Any] | None:
    """Train (or continue) ``run``; None when it had already reached its steps."""
    from ..train.loop import model_name_of, train

    tc = train_config(cfg, run)
    last = Path(str(tc.out_dir)) / "checkpoints" / "last.pt"
    done = _last_step(last)
    steps = int(tc.train.steps)
    if done is not None and done >= steps:
        return None
    tc.resume = done is not None
    if done is not None:
        print(f"train/{run}: resuming at step {done} of {steps}")
    summary = train(tc, show_progress=True)
    val = summary.get("val") or {}
    return {
        "steps": int(summary["step"]),
        "partial": int(summary["step"]) < steps,  # stopped early (train.stop_after)
        "val_recall_at_1": val.get("val/recall_at_1"),
        "config": {"model": model_name_of(tc.model), "loss": str(tc.loss.get("name", ""))},
    }


def stage_bench(cfg: DictConfig, run: str) -> dict[str, Any] | None:
    """Benchmark ``run``'s checkpoint on the zoo's test split; None when already scored."""
    from ..bench.benchmark import run_benchmark
    from ..train.checkpoint import _sha256

    ckpt = run_checkpoint(cfg, run)
    if not ckpt.is_file():
        raise ExperimentError(f"bench/{run}: {ckpt} does not exist; run stage train/{run} first")
    out = Path(str(cfg.out_dir)) / "bench" / run
    sha = _sha256(ckpt)
    res = out / "results.json"
    if res.is_file():
        try:
            if json.loads(res.read_text()).get("checkpoint_hash") == sha:
                return None
        except json.JSONDecodeError:
            pass  # a damaged results file: score again
    per_run = (cfg.bench.get("per_run") or {}).get(run, [])
    overrides = [*map(str, cfg.bench.overrides), *map(str, per_run)]
    run_benchmark(ckpt, Path(str(cfg.out_dir)) / "zoo", out, overrides=overrides)
    return {"checkpoint": str(ckpt), "checkpoint_hash": sha}


def stage_report(cfg: DictConfig) -> dict[str, Any]:
    from .report import write_experiment_report

    paths = write_experiment_report(cfg)
    return {"files": [str(p) for p in paths]}


def _run_stage(cfg: DictConfig, stage: Stage) -> dict[str, Any] | None:
    if stage.kind == "zoo":
        return stage_zoo(cfg)
    if stage.kind == "train":
        return stage_train(cfg, stage.run)
    if stage.kind == "bench":
        return stage_bench(cfg, stage.run)
    return stage_report(cfg)


def run_experiment(overrides: Sequence[str] | DictConfig = ()) -> dict[str, Any]:
    """Run every stage not yet done (or those of ``only``); returns ``RUN/stages.json``'s content.

    ``overrides``: ``experiment=<name>`` and ``key=value`` of ``configs/experiment/<name>.yaml``
    (or an already composed config).
    """
    cfg = overrides if isinstance(overrides, DictConfig) else load_experiment_config(overrides)
    root = Path(str(cfg.out_dir))
    if root.exists() and not root.is_dir():
        raise ExperimentError(f"out_dir={root} is a file; expected a run folder")
    stages = plan_stages(cfg)
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    root.mkdir(parents=True, exist_ok=True)
    cfg_file = root / "experiment.yaml"
    _write_config(cfg, cfg_file)
    ledger = Ledger(root)
    ran_any = False
    for stage in stages:
        explicit = stage.name in (cfg.get("only") or [])
        if stage.kind == "report" and not (ran_any or explicit) and ledger.get("report"):
            print("report: up to date")
            continue
        timer = StageTimer()
        result = _run_stage(cfg, stage)
        if result is None:
            print(f"{stage.name}: done before (nothing to do)")
            if ledger.get(stage.name) is None:  # finished by a run that did not record it
                ledger.record(stage.name, {"recorded_after": True, **timer.entry()})
            continue
        ran_any = True
        entry = timer.entry(**result)
        before = ledger.get(stage.name)
        if before is not None and before.get("partial"):  # a stage finished in several sittings
            for k in ("wall_s", "cpu_s"):
                entry[k] = round(entry[k] + float(before.get(k) or 0.0), 1)
            entry["sittings"] = int(before.get("sittings", 1)) + 1
        ledger.record(stage.name, entry)
        print(f"{stage.name}: {entry['wall_s']:.0f} s wall, {entry['cpu_s']:.0f} s CPU")
    return ledger.read()


def _write_config(cfg: DictConfig, path: Path) -> None:
    from ..atomic import atomic_write_text

    cfg = cfg.copy()
    with open_dict(cfg):
        cfg.pop("only", None)  # which stages this process runs is not part of the experiment
    text = OmegaConf.to_yaml(cfg)
    if not path.is_file() or path.read_text() != text:
        atomic_write_text(path, text)


def stage_times(
    ledger: Mapping[str, Mapping[str, Any]], order: Sequence[str] = ()
) -> list[dict[str, Any]]:
    """Rows (stage, wall_s, cpu_s, threads, load, partial) of the stages that ran here, in
    ``order`` (stage names) first, then the rest."""
    keys = [k for k in order if k in ledger] + [k for k in ledger if k not in order]
    fields = ("wall_s", "cpu_s", "threads", "load_at_start", "partial")
    return [
        {"stage": k, **{f: ledger[k].get(f) for f in fields}}
        for k in keys
        if not ledger[k].get("recorded_after")
    ]
