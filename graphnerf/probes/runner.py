"""Train an encoder + linear head on a probe task and report R^2 (held-out and train).

An encoder enters through a :class:`ProbeModel`: ``prepare(fields)`` turns fields into its
inputs once (parameter graphs, tokens, edge sets), ``embed(items)`` maps a list of prepared
items to embeddings ``[B, D]`` (differentiably), and its ``module`` holds the trainable
parameters. :func:`run_probe` adds a linear head ``D -> k``, standardises the targets with the
training set's mean and standard deviation, and minimises the mean squared error with Adam on
batches of ``batch_size`` training fields drawn with a seeded generator (sampling without
replacement within each epoch). R^2 is ``1 - SSE / SST`` per target column (SST around that
set's own mean), averaged over the columns: 0 is "predicts the mean", 1 is perfect, negative is
worse than the mean.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from ..fields import RadianceField
from .tasks import ProbeTask

__all__ = ["SCHEDULES", "ProbeModel", "ProbeResult", "r2_score", "run_probe"]

#: learning-rate schedules of :func:`run_probe`: constant; warmup (linear from ``lr / n`` to
#: ``lr`` over the first ``n = pct_start * steps`` steps, then constant); OneCycle (cosine
#: warm-up to ``lr`` over ``pct_start`` of the steps, then cosine annealing towards 0, as
#: ``graphnerf train``)
SCHEDULES = ("constant", "warmup", "onecycle")


class ProbeModel(Protocol):
    """What :func:`run_probe` needs from an encoder (module docstring)."""

    module: nn.Module
    embedding_dim: int

    def prepare(self, fields: Sequence[RadianceField]) -> list[Any]: ...

    def embed(self, items: Sequence[Any]) -> Tensor: ...


@dataclass
class ProbeResult:
    """Outcome of one probe run (all floats plain Python numbers, JSON-ready)."""

    task: str
    model: str
    r2_val: float
    r2_train: float
    r2_val_per_target: list[float]
    loss_first: float
    loss_last: float
    steps: int
    lr: float
    schedule: str
    batch_size: int
    seed: int
    n_params: int
    seconds: float  # process (CPU) time of training and evaluation, without preparation
    prepare_seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def r2_score(y: Tensor, pred: Tensor) -> Tensor:
    """R^2 per column of ``y, pred [n, k]`` -> ``[k]`` (SST around the mean of ``y``)."""
    sse = (y - pred).square().sum(0)
    sst = (y - y.mean(0)).square().sum(0).clamp_min(1e-12)
    return 1.0 - sse / sst


def _predict(model: ProbeModel, head: nn.Module, items: list[Any], batch: int) -> Tensor:
    out = [head(model.embed(items[s : s + batch])) for s in range(0, len(items), batch)]
    return torch.cat(out)


def run_probe(
    task: ProbeTask,
    model: ProbeModel,
    model_name: str,
    steps: int = 1000,
    batch_size: int = 16,
    lr: float = 1e-3,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
    log_every: int = 100,
    schedule: str = "constant",
    pct_start: float = 0.1,
) -> ProbeResult:
    """Fit ``model`` + a linear head to ``task``'s training targets; R^2 on both sets.

    Args:
        task: from :func:`~graphnerf.probes.tasks.make_task`.
        model: the encoder (:class:`ProbeModel`); its parameters are trained.
        model_name: label in the result.
        steps: Adam steps; batch_size: fields per step; lr: Adam learning rate (the peak
            with ``schedule="onecycle"``).
        seed: seeds the head's initialisation and the batch order.
        log: called with a progress line every ``log_every`` steps (None: silent).
        schedule: ``"constant"``, ``"warmup"`` or ``"onecycle"`` (:data:`SCHEDULES`);
            pct_start: the share of the steps spent warming up (warmup, onecycle).
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"run_probe: schedule must be one of {SCHEDULES}, got {schedule!r}")
    t0 = time.process_time()
    train = model.prepare(task.fields_train)
    val = model.prepare(task.fields_val)
    prep = time.process_time() - t0
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    mean, std = task.y_train.mean(0), task.y_train.std(0).clamp_min(1e-8)
    yt = (task.y_train - mean) / std
    head = nn.Linear(model.embedding_dim, yt.size(1))
    params = [*model.module.parameters(), *head.parameters()]
    opt = torch.optim.Adam(params, lr=lr)
    sched: torch.optim.lr_scheduler.LRScheduler | None = None
    if schedule == "onecycle":
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=lr, total_steps=max(steps, 1), pct_start=pct_start
        )
    elif schedule == "warmup":
        n_warm = max(int(pct_start * steps), 1)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: min(1.0, (k + 1) / n_warm))
    n = len(train)
    order = torch.randperm(n, generator=gen)
    pos = 0
    losses: list[float] = []
    t1 = time.process_time()
    model.module.train()
    for step in range(steps):
        if pos + batch_size > n:
            order, pos = torch.randperm(n, generator=gen), 0
        idx = order[pos : pos + batch_size].tolist()
        pos += batch_size
        pred = head(model.embed([train[i] for i in idx]))
        loss = (pred - yt[idx]).square().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()
        losses.append(float(loss.detach()))
        if log is not None and (step % log_every == 0 or step == steps - 1):
            log(f"{task.name} {model_name} step {step} loss {losses[-1]:.4f}")
    model.module.eval()
    with torch.no_grad():
        p_train = _predict(model, head, train, batch_size) * std + mean
        p_val = _predict(model, head, val, batch_size) * std + mean
    r2_val = r2_score(task.y_val, p_val)
    r2_train = r2_score(task.y_train, p_train)
    return ProbeResult(
        task=task.name,
        model=model_name,
        r2_val=float(r2_val.mean()),
        r2_train=float(r2_train.mean()),
        r2_val_per_target=[float(v) for v in r2_val],
        loss_first=losses[0] if losses else float("nan"),
        loss_last=float(sum(losses[-20:]) / max(len(losses[-20:]), 1)),
        steps=steps,
        lr=lr,
        schedule=schedule,
        batch_size=batch_size,
        seed=seed,
        n_params=sum(p.numel() for p in params),
        seconds=time.process_time() - t1,
        prepare_seconds=prep,
    )
