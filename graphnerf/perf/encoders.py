"""Encoder training-step benchmark: time and memory of one optimisation step on a zoo batch.

``python -m graphnerf.perf.encoders [--variants default bf16=true ...] [--out FILE]``

One step = forward of a batch of parameter graphs of mixed architectures (default 3 ``mlp``,
3 ``hash``, 2 ``triplane`` zoo fields, batched with ``Batch.from_data_list``) + SigLIP loss
(objects shared across architectures, as in training) + backward + AdamW step. Goal stated in
issue #5: <= 1 s per step on this CPU with the default configs, for the GMN and for SANE (the
token sequences of the same 8 fields).

Each (encoder, variant) runs in its own subprocess so that memory figures do not mix. Reported:

* ``step_s``: median wall-clock seconds per step after warm-up, and ``cpu_s``: median process
  CPU seconds per step (user + system of all threads). On a machine shared with other jobs the
  wall time is inflated by waiting for a core; the CPU time is less affected (but counts busy
  waiting of idle OpenMP threads when there are several threads).
* ``saved_mb``: bytes of the tensors autograd saves for backward during one forward (counted
  with ``torch.autograd.graph.saved_tensors_hooks``, one count per storage): the activation
  memory, deterministic and independent of the machine's load.
* ``peak_rss_mb``: peak resident memory during the timed steps (``/proc/self/statm`` sampled
  every 2 ms by a thread) minus the resident memory before the first step, i.e. activations +
  gradients + optimiser state + allocator overhead; ``maxrss_mb`` is the subprocess's
  ``ru_maxrss`` (includes building the graphs).

Registered encoders (:data:`ENCODERS`): ``gmn`` (parameter graphs, SigLIP loss) and ``sane``
(token sequences of the same fields, masked reconstruction + NT-Xent on the projection).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .report import environment, write_json

DEFAULT_ARCHS = ("mlp", "mlp", "mlp", "hash", "hash", "hash", "triplane", "triplane")
DEFAULT_VARIANTS = (
    "default",
    "probe_vertices=8",
    "bf16=true",
    "edge_chunk=65536,checkpoint=true",
)
#: variant keys that are not encoder config fields but graph options (``to_graph`` keywords)
GRAPH_KEYS = {"gmn": {"probe_vertices"}, "sane": set()}


@dataclass
class StepSetup:
    """What a timed step needs: the trainable modules, the input and a loss of the output."""

    model: nn.Module
    inputs: Any
    loss_fn: Callable[[torch.Tensor], torch.Tensor]
    extra_params: list[nn.Parameter]
    config: dict[str, Any]


def parse_variant(variant: str) -> dict[str, Any]:
    """``"default"`` -> {}; ``"a=1,b=true"`` -> {"a": 1, "b": True} (values parsed as YAML)."""
    import yaml

    if variant in ("", "default"):
        return {}
    out = {}
    for item in variant.split(","):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"variant items must look like key=value, got {item!r}")
        out[key.strip()] = yaml.safe_load(value)
    return out


def object_labels(n: int, n_archs: int) -> torch.Tensor:
    """Object ids for a batch holding ``n_archs`` architectures of each object, as in training:
    graph ``i`` shows object ``i % ceil(n / n_archs)``."""
    n_obj = max(1, math.ceil(n / max(n_archs, 1)))
    return torch.arange(n) % n_obj


# ------------------------------------------------------------------ GMN
def setup_gmn(overrides: dict[str, Any], archs: Sequence[str], seed: int) -> StepSetup:
    from torch_geometric.data import Batch

    from ..fields import build_field
    from ..graph import to_graph
    from ..losses import SigLIPLoss
    from ..models import GMNConfig, GMNEncoder

    overrides = dict(overrides)
    n_probe = int(overrides.pop("probe_vertices", 0))
    cfg = GMNConfig.from_dict({**GMNConfig().to_dict(), **overrides})
    torch.manual_seed(seed)

    def graph(arch: str, s: int):
        field = build_field(arch, seed=s)
        if n_probe and field.spec.family == "hash":
            return to_graph(field, probe_vertices=n_probe)
        return to_graph(field)

    batch = Batch.from_data_list([graph(a, seed + i) for i, a in enumerate(archs)])
    model = GMNEncoder(cfg).train()
    siglip = SigLIPLoss()
    labels = object_labels(len(archs), len({a.split("_")[0] for a in archs}))

    def loss_fn(z: torch.Tensor) -> torch.Tensor:
        return siglip(z, z, labels, labels)

    info = {**cfg.to_dict(), "nodes": int(batch.num_nodes), "edges": int(batch.num_edges)}
    return StepSetup(model, batch, loss_fn, list(siglip.parameters()), info)


# ------------------------------------------------------------------ SANE
class _SANEStep(nn.Module):
    """The SANE autoencoder's training forward: masked reconstruction + NT-Xent projection."""

    def __init__(self, model: nn.Module, labels: torch.Tensor) -> None:
        super().__init__()
        self.model, self.labels = model, labels

    def forward(self, seq: Any) -> torch.Tensor:
        from ..losses import ntxent_loss

        out = self.model(seq)
        return out["loss_recon"] + ntxent_loss(out["projection"], self.labels)


def setup_sane(overrides: dict[str, Any], archs: Sequence[str], seed: int) -> StepSetup:
    import dataclasses

    from ..fields import build_field
    from ..models import SANEAutoencoder, SANEConfig
    from ..tokens import Tokenizer, collate

    cfg = SANEConfig.from_config({**dataclasses.asdict(SANEConfig()), **overrides})
    torch.manual_seed(seed)
    tok = Tokenizer()
    gen = torch.Generator().manual_seed(seed)
    seqs = [tok(build_field(a, seed=seed + i), generator=gen) for i, a in enumerate(archs)]
    batch = collate(seqs)
    labels = object_labels(len(archs), len({a.split("_")[0] for a in archs}))
    model = _SANEStep(SANEAutoencoder(cfg).train(), labels)
    info = {
        **dataclasses.asdict(cfg),
        "tokens": int(batch.mask.sum()),
        "sequence": int(batch.mask.shape[1]),
    }
    return StepSetup(model, batch, lambda loss: loss, [], info)


ENCODERS: dict[str, Callable[[dict[str, Any], Sequence[str], int], StepSetup]] = {
    "gmn": setup_gmn,
    "sane": setup_sane,
}


def config_keys(encoder: str) -> set[str]:
    """The config fields a variant of ``encoder`` may set."""
    import dataclasses

    from ..models import GMNConfig, SANEConfig

    cls = {"gmn": GMNConfig, "sane": SANEConfig}[encoder]
    return {f.name for f in dataclasses.fields(cls)} | GRAPH_KEYS[encoder]


# ------------------------------------------------------------------ Instant-NGP scale
#: an Instant-NGP grid: 16 levels, tables of 2^19 entries x 2 features (16.8M HASH edges)
INGP_SPEC_KW = {
    "n_levels": 16,
    "n_features_per_level": 2,
    "log2_table_size": 19,
    "base_resolution": 16,
    "max_resolution": 2048,
}


def run_ingp_worker(view: str, n_probe: int, edge_chunk: int | None) -> dict[str, Any]:
    """Embed one Instant-NGP-scale field with the default GMN (forward, no grad) in this
    process; memory as resident-set figures. ``view``: ``"full"`` (every HASH edge) or
    ``"probes"`` (hashed levels only through ``n_probe^3`` probe vertices,
    :class:`~graphnerf.graph.probes.HashedLevelsViaProbes`)."""
    from ..fields import HashGridSpec, build_field
    from ..graph import to_graph
    from ..graph.probes import HashedLevelsViaProbes
    from ..models import GMNConfig, GMNEncoder

    rss0 = _rss_bytes()
    field = build_field(HashGridSpec(**INGP_SPEC_KW), seed=0)
    c0 = time.process_time()
    g = to_graph(field, probe_vertices=n_probe)
    if view == "probes":
        g = HashedLevelsViaProbes()(g)
    del field
    graph_s = time.process_time() - c0
    rss_graph = _rss_bytes()
    torch.manual_seed(0)
    model = GMNEncoder(GMNConfig(edge_chunk=edge_chunk)).eval()
    c1 = time.process_time()
    with torch.no_grad(), _PeakRSS() as peak:
        z = model(g)
    return {
        "view": view,
        "probe_vertices": n_probe,
        "edge_chunk": edge_chunk,
        "nodes": int(g.num_nodes),
        "edges": int(g.num_edges),
        "graph_mb": (rss_graph - rss0) / 2**20,
        "forward_peak_delta_mb": (peak.peak - rss_graph) / 2**20,
        "peak_rss_mb": peak.peak / 2**20,
        "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "graph_cpu_s": graph_s,
        "forward_cpu_s": time.process_time() - c1,
        "finite": bool(torch.isfinite(z).all()),
    }


def bench_ingp(cases: Sequence[str]) -> list[dict[str, Any]]:
    """Each case ``"view:n_probe:edge_chunk"`` (e.g. ``probes:16:0``, ``full:0:1048576``; chunk
    0 = None) in a fresh subprocess, one thread."""
    rows = []
    for case in cases:
        proc = subprocess.run(
            [sys.executable, "-m", "graphnerf.perf.encoders", "--_ingp", case, "--threads", "1"],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            rows.append({"case": case, "error": proc.stderr.strip().splitlines()[-1:]})
            continue
        rows.append({"case": case, **json.loads(proc.stdout.strip().splitlines()[-1])})
    return rows


# ------------------------------------------------------------------ measurement
def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class _PeakRSS:
    """Samples the resident set size in a thread; ``peak`` is the largest value seen."""

    def __init__(self, interval: float = 0.002) -> None:
        self.interval = interval
        self.peak = _rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_bytes())
            time.sleep(self.interval)

    def __enter__(self) -> _PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_bytes())


def saved_activation_bytes(model: nn.Module, inputs: Any, loss_fn: Callable) -> int:
    """Bytes autograd saves for backward in one forward + loss (each storage counted once)."""
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        try:
            st = t.untyped_storage()
            seen[st.data_ptr()] = st.nbytes()
        except (RuntimeError, NotImplementedError):
            pass
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = loss_fn(model(inputs))
    del loss
    return sum(seen.values())


def run_worker(
    encoder: str, variant: str, archs: Sequence[str], steps: int, warmup: int, seed: int
) -> dict[str, Any]:
    """Benchmark one (encoder, variant) in this process."""
    setup = ENCODERS[encoder](parse_variant(variant), archs, seed)
    params = list(setup.model.parameters()) + setup.extra_params
    opt = torch.optim.AdamW(params, lr=1e-4)

    def step() -> float:
        opt.zero_grad(set_to_none=True)
        loss = setup.loss_fn(setup.model(setup.inputs))
        loss.backward()
        opt.step()
        return float(loss)

    rss0 = _rss_bytes()
    walls, cpus = [], []
    with _PeakRSS() as peak:
        for i in range(warmup + steps):
            t, c = time.perf_counter(), time.process_time()
            loss = step()
            if i >= warmup:
                walls.append(time.perf_counter() - t)
                cpus.append(time.process_time() - c)
    saved = saved_activation_bytes(setup.model, setup.inputs, setup.loss_fn)
    return {
        "encoder": encoder,
        "variant": variant,
        "config": setup.config,
        "params": sum(p.numel() for p in setup.model.parameters()),
        "step_s": statistics.median(walls),
        "step_s_all": walls,
        "cpu_s": statistics.median(cpus),
        "saved_mb": saved / 2**20,
        "peak_rss_mb": (peak.peak - rss0) / 2**20,
        "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "final_loss": loss,
        "threads": torch.get_num_threads(),
    }


def bench_encoders(
    encoders: Sequence[str] = ("gmn", "sane"),
    variants: Sequence[str] = DEFAULT_VARIANTS,
    archs: Sequence[str] = DEFAULT_ARCHS,
    steps: int = 5,
    warmup: int = 1,
    seed: int = 0,
    threads: int | None = None,
) -> dict[str, Any]:
    """Run every (encoder, variant) in a fresh subprocess; collect their results."""
    rows = []
    for enc in encoders:
        if enc not in ENCODERS:
            raise ValueError(f"unknown encoder {enc!r}; registered: {sorted(ENCODERS)}")
        for var in variants:
            unknown = set(parse_variant(var)) - config_keys(enc)  # fails early if malformed
            if unknown:  # e.g. the GMN's edge_chunk for SANE
                print(
                    f"skipping {enc} [{var}]: no config key(s) {sorted(unknown)}", file=sys.stderr
                )
                continue
            args = [
                "--_worker", "--encoders", enc, "--variants", var, "--archs", *archs,
                "--steps", str(steps), "--warmup", str(warmup), "--seed", str(seed),
            ]  # fmt: skip
            if threads is not None:
                args += ["--threads", str(threads)]
            proc = subprocess.run(
                [sys.executable, "-m", "graphnerf.perf.encoders", *args],
                capture_output=True,
                text=True,
                check=False,
            )
            if proc.returncode != 0:
                raise RuntimeError(f"benchmark {enc} [{var}] failed:\n{proc.stderr[-4000:]}")
            rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return {
        "archs": list(archs),
        "steps": steps,
        "warmup": warmup,
        "seed": seed,
        **environment(),
        "load_avg": os.getloadavg(),
        "target_step_s": 1.0,
        "rows": rows,
    }


def format_table(res: dict[str, Any]) -> str:
    sizes = []
    for r in res["rows"]:
        c = r["config"]
        if "nodes" in c and "gmn: " not in " ".join(sizes):
            sizes.append(f"gmn: {c['nodes']:,} nodes, {c['edges']:,} edges")
        if "tokens" in c and "sane: " not in " ".join(sizes):
            sizes.append(f"sane: {c['tokens']:,} tokens, sequences of {c['sequence']}")
    lines = [
        f"batch: {', '.join(res['archs'])} ({'; '.join(sizes)}); "
        f"median of {res['steps']} steps after {res['warmup']} "
        f"warm-up; torch {res['torch']}; load average {res['load_avg'][0]:.1f} on "
        f"{res['cpu_count']} CPUs",
        "",
        "| encoder | variant | threads | params | step (s) | CPU (s) | saved act. (MB) "
        "| peak RSS delta (MB) | <= 1 s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in res["rows"]:
        ok = "yes" if r["step_s"] <= res["target_step_s"] else "no"
        lines.append(
            f"| {r['encoder']} | {r['variant']} | {r['threads']} | {r['params']:,} | "
            f"{r['step_s']:.2f} | {r['cpu_s']:.2f} | {r['saved_mb']:.0f} | "
            f"{r['peak_rss_mb']:.0f} | {ok} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="graphnerf.perf.encoders", description=__doc__.split("\n")[0])
    p.add_argument("--encoders", nargs="+", default=sorted(ENCODERS), choices=sorted(ENCODERS))
    p.add_argument(
        "--variants",
        nargs="+",
        default=list(DEFAULT_VARIANTS),
        help="config overrides per run: 'default' or 'key=value,key=value'",
    )
    p.add_argument("--archs", nargs="+", default=list(DEFAULT_ARCHS), help="zoo names")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--out", default="bench_out/encoders.json")
    p.add_argument(
        "--ingp",
        nargs="*",
        default=None,
        help="instead: embed an Instant-NGP-scale grid (16 levels x 2^19), cases "
        "'view:n_probe:edge_chunk' (default: probes:16:0 full:0:1048576)",
    )
    p.add_argument("--_worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--_ingp", default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a._ingp is not None:
        torch.set_num_threads(a.threads or 1)
        view, n_probe, chunk = a._ingp.split(":")
        print(json.dumps(run_ingp_worker(view, int(n_probe), int(chunk) or None)))
        return 0
    if a.ingp is not None:
        rows = bench_ingp(a.ingp or ["probes:16:0", "full:0:1048576"])
        for r in rows:
            print(json.dumps(r))
        write_json({"suite": "encoders-ingp", **environment(), "rows": rows}, a.out)
        return 0
    if a._worker:
        if a.threads is not None:
            torch.set_num_threads(a.threads)
        row = run_worker(a.encoders[0], a.variants[0], a.archs, a.steps, a.warmup, a.seed)
        print(json.dumps(row))
        return 0
    res = bench_encoders(a.encoders, a.variants, a.archs, a.steps, a.warmup, a.seed, a.threads)
    print(format_table(res))
    write_json(res, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
