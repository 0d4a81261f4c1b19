"""`graphnerf train`: the training loop (one process, or DDP under ``torchrun``).

Order of a run (``configs/train/default.yaml`` holds every setting):

1. **Checks before anything is written** — the zoo has a manifest, some object has two NeRFs to
   pair, the model / loss names exist, ``out_dir`` is not a file and holds no other run (unless
   ``resume=true``), a resumed checkpoint has the same model and heads config. Each failure is one
   :class:`TrainError` line.
2. **Caches** — every process fills its share of the graph cache (GMN) and the teacher-ray cache
   (rendering loss) under ``data.cache_dir`` (default ``ZOO/.cache``), then all wait for each
   other: no training step converts or renders a teacher.
3. **Model** — :class:`~graphnerf.train.module.TrainModule` initialised with ``train.seed`` (the
   same in every process), AdamW + OneCycle (``train.lr`` is the peak), gradient clipping by
   norm; under DDP it is wrapped in ``DistributedDataParallel`` (gloo on CPU, nccl on CUDA).
4. **Steps** — a DataLoader (``data.num_workers`` workers) builds this process's share of each
   :class:`~graphnerf.data.sampler.PairSampler` batch (the K objects are split over the
   processes; the contrastive loss gathers the projections of all of them, every other term is a
   mean over NeRFs or pairs, so the gradient equals the one-process gradient of the global batch).
5. **Validation** every ``val.every`` steps and at the end, on the val split (process 0):
   cross-architecture retrieval recall@1 over every val NeRF (nearest neighbour by cosine among
   the NeRFs of *other* architectures; other NeRFs when there is a single architecture), the loss
   terms on ``val.batches`` fixed pair batches, the rotation error in degrees. ``best.pt`` follows
   ``val.monitor``; training data never chooses it.
6. **Checkpoints** (process 0, atomic): ``RUN/checkpoints/last.pt`` every
   ``train.checkpoint_every`` steps and at the end (with optimizer, scheduler, sampler position and
   every process's RNG states: ``resume=true`` continues exactly), ``best.pt`` at validation.
7. **Logs** (process 0): ``RUN/log.jsonl`` (one JSON line per ``train.log_every`` steps: step,
   loss terms, lr, NeRFs/s; validation lines carry ``val/*`` keys), wandb (``wandb.mode``,
   offline by default, files under ``RUN/wandb``) and a progress bar (plain lines off a terminal).
"""

from __future__ import annotations

import json
import math
import os
import random
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from omegaconf import DictConfig, OmegaConf

from ..atomic import atomic_write_text
from ..config import load_config_checked
from ..data.sampler import PairSampler, SamplerError
from .checkpoint import checkpoint_dict, read_checkpoint, save_checkpoint
from .data import StepDataset, ZooBatches, identity
from .inputs import move, token_batch
from .module import LOSS_TERMS, MODEL_NAMES, TrainModule, _plain

__all__ = ["TrainError", "load_train_config", "train", "train_main"]


class TrainError(ValueError):
    """Bad input to ``graphnerf train`` (one line naming the file / key and what was expected)."""


# ----------------------------------------------------------------------------- config
def model_name_of(model_cfg: Mapping[str, Any]) -> str:
    """``gmn`` (its config has ``name: gmn``) or ``sane`` (``net`` and ``tokens``)."""
    if "net" in model_cfg and "tokens" in model_cfg:
        return "sane"
    name = model_cfg.get("name")
    if name not in MODEL_NAMES:
        raise TrainError(f"model config has name {name!r}; expected one of {list(MODEL_NAMES)}")
    return str(name)


def load_train_config(overrides: Sequence[str] = ()) -> DictConfig:
    """Compose ``configs/train/default.yaml`` with Hydra overrides; one-line errors."""
    cfg = load_config_checked("train/default", list(overrides), "train config", TrainError)
    for key in ("zoo", "out_dir"):
        if OmegaConf.is_missing(cfg, key):
            raise TrainError(f"train config: {key}=... is required (e.g. zoo=ZOO out_dir=RUN)")
    weights = _plain(cfg.loss.weights)
    bad = sorted(set(weights) - set(LOSS_TERMS))
    if bad:
        raise TrainError(
            f"loss.weights: unknown term(s) {bad}; expected some of {list(LOSS_TERMS)}"
        )
    name = model_name_of(_plain(cfg.model))
    if name == "gmn" and weights.get("token_recon", 0.0):
        raise TrainError(
            f"loss={cfg.loss.get('name', '?')} weights token_recon, which needs model=sane "
            "(the GMN has no token decoder); use loss=rec_con_rot for the GMN"
        )
    if not any(float(w) for w in weights.values()):
        raise TrainError("loss.weights: every weight is 0; nothing to train")
    return cfg


# ----------------------------------------------------------------------------- helpers
def _dist_env() -> tuple[int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0"))


def _device(spec: str, local_rank: int) -> torch.device:
    if spec == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    d = torch.device(spec)
    if d.type == "cuda" and d.index is None:
        d = torch.device(f"cuda:{local_rank}")
    return d


def rng_state() -> dict[str, Any]:
    """This process's RNG states as tensors and plain containers (``weights_only``-loadable)."""
    import numpy as np

    np_state = np.random.get_state()
    st: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].copy()), *np_state[2:]],
    }
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def set_rng_state(st: Mapping[str, Any]) -> None:
    import numpy as np

    torch.set_rng_state(st["torch"])
    py = st["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = st["numpy"]
    np.random.set_state((n[0], n[1].numpy(), *n[2:]))
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def _untensor(x: Any) -> Any:
    if isinstance(x, torch.Tensor):
        return {"__tensor__": x.tolist(), "dtype": str(x.dtype).removeprefix("torch.")}
    if isinstance(x, dict):
        return {k: _untensor(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return type(x)(_untensor(v) for v in x)
    return x


def _retensor(x: Any) -> Any:
    if isinstance(x, dict) and "__tensor__" in x:
        return torch.tensor(x["__tensor__"], dtype=getattr(torch, x["dtype"]))
    if isinstance(x, dict):
        return {k: _retensor(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return type(x)(_retensor(v) for v in x)
    return x


def _diff_keys(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            out += _diff_keys(a.get(k), b.get(k), f"{prefix}{k}.")
        return out
    return [prefix.rstrip(".")] if a != b else []


def recall_at_1(z: torch.Tensor, objects: Sequence[str], archs: Sequence[str]) -> dict[str, float]:
    """Cross-architecture retrieval: for each NeRF, is its nearest neighbour (cosine) among the
    NeRFs of *other* architectures a NeRF of the same object? (One architecture only: among the
    other NeRFs.) Queries with no same-object NeRF in their gallery are skipped.

    Returns ``recall_at_1``, ``queries`` and ``chance`` (expected recall of a random pick).
    """
    n = z.shape[0]
    zn = torch.nn.functional.normalize(z.float(), dim=-1)
    sim = zn @ zn.T
    obj = torch.tensor([hash(o) for o in objects])
    arch_ids = {a: i for i, a in enumerate(sorted(set(archs)))}
    arch = torch.tensor([arch_ids[a] for a in archs])
    if len(arch_ids) > 1:
        gallery = arch[:, None] != arch[None, :]
    else:
        gallery = ~torch.eye(n, dtype=torch.bool)
    same = obj[:, None] == obj[None, :]
    ok = (gallery & same).any(1)
    if not bool(ok.any()):
        return {"recall_at_1": float("nan"), "queries": 0, "chance": float("nan")}
    nn_idx = sim.masked_fill(~gallery, float("-inf")).argmax(1)
    hit = same[torch.arange(n), nn_idx]
    chance = ((gallery & same).sum(1).float() / gallery.sum(1).clamp_min(1).float())[ok]
    return {
        "recall_at_1": float(hit[ok].float().mean()),
        "queries": int(ok.sum()),
        "chance": float(chance.mean()),
    }


# ----------------------------------------------------------------------------- the run
class _Run:
    """State of one training run (see the module docstring)."""

    def __init__(self, cfg: DictConfig, show_progress: bool = True) -> None:
        self.cfg = cfg
        self.show = show_progress
        self.rank, self.world, self.local_rank = _dist_env()
        self.is_main = self.rank == 0
        self.zoo = Path(str(cfg.zoo))
        self.out = Path(str(cfg.out_dir))
        self.ckpt_dir = self.out / "checkpoints"
        self.name = model_name_of(_plain(cfg.model))
        self.weights = {k: float(v) for k, v in _plain(cfg.loss.weights).items() if float(v)}

    # ------------------------------------------------------------------ checks
    def check_inputs(self) -> None:
        from ..data.manifest import MANIFEST, read_manifest

        cfg = self.cfg
        if not self.zoo.is_dir():
            raise TrainError(f"zoo={self.zoo}: no such zoo folder")
        if not (self.zoo / MANIFEST).is_file():
            raise TrainError(f"zoo={self.zoo}: no {MANIFEST} (not a zoo folder?)")
        if self.out.exists() and not self.out.is_dir():
            raise TrainError(f"out_dir={self.out}: exists and is a file, not a folder")
        last = self.ckpt_dir / "last.pt"
        if bool(cfg.resume) and not last.is_file():
            raise TrainError(f"resume=true but {last} does not exist (nothing to resume)")
        if not bool(cfg.resume) and last.is_file():
            raise TrainError(
                f"out_dir={self.out} already holds a run ({last}); resume=true to continue it, "
                "or choose another out_dir"
            )
        self.records = read_manifest(self.zoo)
        d = cfg.data
        train_archs = _plain(d.train_archs)
        try:
            self.sampler = PairSampler(
                self.records,
                int(d.objects_per_batch),
                views=int(d.views),
                seed=int(cfg.train.seed),
                archs=train_archs,
                splits=[str(d.train_split)],
                pair=str(d.pair),
                what=f"zoo={self.zoo}",
            )
            self.sampler.shard([[0]] * self.sampler.k, 0, self.world)
        except SamplerError as e:
            raise TrainError(str(e)) from None
        val_archs = _plain(d.val_archs)
        self.val_records = [
            r
            for r in self.records
            if r["split"] == str(d.val_split) and (val_archs is None or r["arch"] in val_archs)
        ]
        self.val_records.sort(key=lambda r: str(r["id"]))
        self.val_sampler = None
        if self.val_records:
            try:
                self.val_sampler = PairSampler(
                    self.val_records,
                    min(int(d.objects_per_batch), len({r["object"] for r in self.val_records})),
                    views=int(d.views),
                    seed=int(cfg.train.seed) + 1,
                    archs=None,
                    splits=None,
                    pair=str(d.pair),
                )
            except SamplerError:
                self.val_sampler = None
        self.train_archs = sorted({r["arch"] for r in self.sampler.records})
        if int(cfg.train.steps) < 1:
            raise TrainError(f"train.steps must be >= 1, got {cfg.train.steps}")

    # ------------------------------------------------------------------ setup
    def setup(self) -> None:
        cfg = self.cfg
        self.device = _device(str(cfg.train.device), self.local_rank)
        if cfg.train.threads:
            torch.set_num_threads(int(cfg.train.threads))
        torch.manual_seed(int(cfg.train.seed))
        self.module = TrainModule(self.name, _plain(cfg.model), _plain(cfg.heads))
        self.module.loss_weights = dict(self.weights)
        self.module.render_cfg = {k: v for k, v in _plain(cfg.render).items() if k != "teacher"}
        self.module.to(self.device)
        self.signature = {
            "model": {"name": self.name, "config": _plain(self.module.model_cfg)},
            "heads": _plain(self.module.heads_cfg),
        }
        t = cfg.train
        self.opt = torch.optim.AdamW(
            self.module.parameters(),
            lr=float(t.lr),
            weight_decay=float(t.weight_decay),
            eps=float(t.get("adam_eps", 1e-8)),
        )
        self.sched = torch.optim.lr_scheduler.OneCycleLR(
            self.opt, max_lr=float(t.lr), total_steps=int(t.steps), pct_start=float(t.pct_start)
        )
        self.start = 0
        self.best: float | None = None
        self.last_val: dict[str, Any] = {}
        if bool(cfg.resume):
            self._resume()
        else:
            torch.manual_seed(int(cfg.train.seed) + 1000 * self.rank)  # per-process dropout etc.
        cache = cfg.data.cache_dir
        cache_dir = Path(str(cache)) if cache is not None else self.zoo / ".cache"
        self.batches = ZooBatches(
            self.zoo,
            self.name,
            cache_dir,
            tokenizer=self.module.tokenizer,
            augment=_plain(cfg.model.get("augment", {})) if self.name == "sane" else None,
            teacher=_plain(cfg.render.teacher) if self.weights.get("render") else None,
            rays_per_field=int(cfg.render.rays_per_field),
            background=float(cfg.render.background),
            seed=int(cfg.train.seed),
        )

    def _resume(self) -> None:
        last = self.ckpt_dir / "last.pt"
        try:
            ck = read_checkpoint(last)
        except (ValueError, FileNotFoundError) as e:
            raise TrainError(f"resume=true: {e}") from None
        if "state" not in ck:
            raise TrainError(f"resume=true: {last} holds no training state (not a last.pt)")
        mine = self.signature
        theirs = {"model": ck["model"], "heads": ck["heads"]}
        if mine != theirs:
            keys = _diff_keys(theirs, mine)
            raise TrainError(
                f"resume=true: {last} was trained with another model config (differs in "
                f"{keys[:6]}); resume with the same model=/heads overrides or another out_dir"
            )
        steps = int(self.cfg.train.steps)
        if ck["train"]["config"]["train"]["steps"] != steps:
            raise TrainError(
                f"resume=true: {last} was made for train.steps="
                f"{ck['train']['config']['train']['steps']} (the OneCycle schedule), got {steps}"
            )
        self.module.load_state_dict(ck["state_dict"])
        st = ck["state"]
        self.opt.load_state_dict(st["optimizer"])
        self.sched.load_state_dict(st["scheduler"])
        self.start = int(st["sampler"]["step"])
        rngs = st["rng"]
        set_rng_state(rngs[self.rank] if self.rank < len(rngs) else rngs[0])
        self.best = st.get("best")
        self.last_val = dict(ck.get("val") or {})

    # ------------------------------------------------------------------ writing
    def prepare_out(self) -> None:
        if not self.is_main:
            return
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.out / "config.yaml", OmegaConf.to_yaml(self.cfg, resolve=True))
        log = self.out / "log.jsonl"
        if bool(self.cfg.resume) and log.is_file():  # drop lines written after the checkpoint
            keep = [
                line
                for line in log.read_text().splitlines()
                if line.strip() and json.loads(line).get("step", 0) <= self.start
            ]
            atomic_write_text(log, "".join(line + "\n" for line in keep))

    def log(self, row: Mapping[str, Any]) -> None:
        if not self.is_main:
            return
        with open(self.out / "log.jsonl", "a") as f:
            f.write(json.dumps(row, allow_nan=True) + "\n")
        if self.wandb is not None:
            self.wandb.log(dict(row), step=int(row["step"]))

    def init_wandb(self) -> None:
        self.wandb = None
        mode = str(self.cfg.wandb.mode)
        if not self.is_main or mode == "disabled":
            return
        if mode not in ("offline", "online"):
            raise TrainError(f"wandb.mode must be offline, online or disabled, got {mode!r}")
        try:
            import wandb
        except ImportError:
            warnings.warn(
                "wandb is not installed: logging to log.jsonl only (pip install wandb)",
                RuntimeWarning,
                stacklevel=2,
            )
            return
        os.environ.setdefault("WANDB_SILENT", "true")
        self.wandb = wandb.init(
            project=str(self.cfg.wandb.project),
            name=self.cfg.wandb.name,
            dir=str(self.out),
            mode=mode,
            config=_plain(self.cfg),
            id=self._wandb_id(),
            resume="allow",
        )

    def _wandb_id(self) -> str:
        path = self.out / "wandb_id.txt"
        if path.is_file():
            return path.read_text().strip()
        import uuid

        rid = uuid.uuid4().hex[:12]
        atomic_write_text(path, rid)
        return rid

    def save(self, step: int, kind: str) -> None:
        state = None
        rngs = [rng_state()]
        if self.world > 1:
            gathered: list[Any] = [None] * self.world
            # tensors travel as lists: all_gather_object cannot unpickle CPU tensors here
            dist.all_gather_object(gathered, _untensor(rngs[0]))
            rngs = [_retensor(g) for g in gathered]
        if not self.is_main:
            return
        if kind == "last":
            state = {
                "optimizer": self.opt.state_dict(),
                "scheduler": self.sched.state_dict(),
                "sampler": self.sampler.state_dict(step),
                "rng": rngs,
                "best": self.best,
                "world_size": self.world,
            }
        d = checkpoint_dict(
            self.module,
            archs=self.train_archs,
            zoo=str(self.zoo),
            step=step,
            config=_plain(self.cfg),
            val=self.last_val,
            state=state,
        )
        save_checkpoint(d, self.ckpt_dir / f"{kind}.pt")

    # ------------------------------------------------------------------ validation
    @torch.no_grad()
    def validate(self, step: int) -> dict[str, Any]:
        m = self.module
        was_training = m.training
        m.eval()
        m.gather = False
        out: dict[str, Any] = {"step": step}
        try:
            recs = self.val_records
            z = []
            for i in range(0, len(recs), 8):
                chunk = recs[i : i + 8]
                if self.name == "gmn":
                    from torch_geometric.data import Batch

                    inputs = Batch.from_data_list([self.batches.graph(r) for r in chunk])
                else:
                    inputs = token_batch([self.batches.field(r) for r in chunk], m.tokenizer)
                z.append(m.embed(move(inputs, self.device)).cpu())
            r = recall_at_1(torch.cat(z), [x["object"] for x in recs], [x["arch"] for x in recs])
            out["val/recall_at_1"] = r["recall_at_1"]
            out["val/recall_chance"] = r["chance"]
            out["val/queries"] = r["queries"]
            if self.val_sampler is not None:
                ds = StepDataset(self.batches, self.val_sampler, 0, int(self.cfg.val.batches))
                sums: dict[str, float] = {}
                rot_deg = []
                for b in range(len(ds)):
                    batch = move(ds.batch(b), self.device)
                    terms = m(batch)
                    for k, v in terms.items():
                        sums[k] = sums.get(k, 0.0) + float(v)
                    if self.weights.get("rotation"):
                        from ..losses import quaternion_angle_deg

                        enc = m.encode(batch["inputs"])
                        q = m.predict_rotation(enc, batch["pairs"][:, 0], batch["pairs"][:, 1])
                        rot_deg.append(quaternion_angle_deg(q, batch["q_rel"]).cpu())
                for k, v in sums.items():
                    out[f"val/{'loss' if k == 'total' else k}"] = v / max(1, len(ds))
                if rot_deg:
                    out["val/rotation_deg"] = float(torch.cat(rot_deg).mean())
        finally:
            m.gather = True
            m.train(was_training)
        return out

    def _improved(self, val: Mapping[str, Any]) -> bool:
        mon = str(self.cfg.val.monitor)
        key = f"val/{mon}"
        v = val.get(key)
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return False
        score = float(v) if mon == "recall_at_1" else -float(v)
        if self.best is None or score > self.best:
            self.best = score
            return True
        return False

    # ------------------------------------------------------------------ loop
    def run(self) -> dict[str, Any]:
        cfg = self.cfg
        steps = int(cfg.train.steps)
        self.batches.prepare(
            self.sampler.records + self.val_records,
            self.rank,
            self.world,
            show=self.show and self.is_main,
        )
        if self.world > 1:
            dist.barrier()
        self.prepare_out()
        self.init_wandb()
        model: torch.nn.Module = self.module
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            model = DistributedDataParallel(
                self.module,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=True,
            )
        ds = StepDataset(self.batches, self.sampler, self.start, steps, self.rank, self.world)
        nw = int(cfg.data.num_workers)
        loader = torch.utils.data.DataLoader(
            ds,
            batch_size=None,
            shuffle=False,
            num_workers=nw,
            collate_fn=identity,
            prefetch_factor=2 if nw else None,
            # its own generator: an iterator draws its worker base seed from it, which would
            # otherwise advance the global RNG (dropout) once more in a resumed run
            generator=torch.Generator().manual_seed(int(cfg.train.seed)),
        )
        from ..progress import progress

        bar = progress(
            total=steps,
            initial=self.start,
            desc=f"train {self.name}",
            unit="step",
            disable=not (self.show and self.is_main),
        )
        nerfs_per_step = self.sampler.k * self.sampler.views
        every_log = max(1, int(cfg.train.log_every))
        every_ckpt = max(1, int(cfg.train.checkpoint_every))
        every_val = int(cfg.val.every)
        clip = cfg.train.grad_clip
        stop_after = cfg.train.get("stop_after")
        window: dict[str, float] = {}
        n_window, t_window = 0, time.perf_counter()
        last_terms: dict[str, float] = {}
        self.module.train()
        step = self.start
        try:
            for batch in loader:
                batch = move(batch, self.device)
                terms = model(batch)
                self.opt.zero_grad(set_to_none=True)
                terms["total"].backward()
                gnorm = None
                if clip is not None:
                    gnorm = float(
                        torch.nn.utils.clip_grad_norm_(self.module.parameters(), float(clip))
                    )
                self.opt.step()
                lr = self.sched.get_last_lr()[0]
                self.sched.step()
                step += 1
                vals = {k: float(v.detach()) for k, v in terms.items()}
                if not math.isfinite(vals["total"]):
                    raise FloatingPointError(f"step {step}: the loss is {vals['total']} (diverged)")
                for k, v in vals.items():
                    window[k] = window.get(k, 0.0) + v
                n_window += 1
                bar.update(1)
                if step % every_log == 0 or step == steps:
                    dt = time.perf_counter() - t_window
                    row = {"step": step, "epoch": step / self.sampler.steps_per_epoch}
                    row.update(
                        {("loss" if k == "total" else k): v / n_window for k, v in window.items()}
                    )
                    row["lr"] = lr
                    if gnorm is not None:
                        row["grad_norm"] = gnorm
                    row["nerfs_per_s"] = nerfs_per_step * n_window / max(dt, 1e-9)
                    self.log(row)
                    last_terms = row
                    bar.set_postfix(loss=f"{row['loss']:.4g}", nerfs_s=f"{row['nerfs_per_s']:.1f}")
                    window, n_window, t_window = {}, 0, time.perf_counter()
                do_val = step == steps or (every_val > 0 and step % every_val == 0)
                if do_val:
                    improved = False
                    if self.is_main and self.val_records:
                        self.last_val = self.validate(step)
                        self.log(self.last_val)
                        improved = self._improved(self.last_val)
                    if self.world > 1:  # process 0 decides; every process joins the save
                        flag = [improved]
                        dist.broadcast_object_list(flag, src=0)
                        improved = bool(flag[0])
                    if improved:
                        self.save(step, "best")
                stop = stop_after is not None and step - self.start >= int(stop_after)
                if step % every_ckpt == 0 or step == steps or stop:
                    self.save(step, "last")
                if stop:
                    break
        finally:
            bar.close()
            if self.wandb is not None:
                self.wandb.finish()
        return {"step": step, "train": last_terms, "val": self.last_val, "out_dir": str(self.out)}


def train(cfg: DictConfig, show_progress: bool = True) -> dict[str, Any]:
    """Run ``graphnerf train`` with a composed config (:func:`load_train_config`).

    Returns a summary: final ``step``, the last logged ``train`` terms, the last ``val`` metrics,
    ``out_dir``.
    """
    rank, world, local_rank = _dist_env()
    own_group = False
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() and str(cfg.train.device) != "cpu" else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend)
        own_group = True
    try:
        run = _Run(cfg, show_progress=show_progress)
        run.check_inputs()
        run.setup()
        return run.run()
    finally:
        if own_group:
            dist.destroy_process_group()


def train_main(overrides: Sequence[str], show_progress: bool = True) -> int:
    """``graphnerf train [overrides]``: compose, train, print where things went."""
    cfg = load_train_config(overrides)
    summary = train(cfg, show_progress=show_progress)
    if int(os.environ.get("RANK", "0")) == 0:
        val = summary["val"]
        r1 = val.get("val/recall_at_1")
        extra = f", val recall@1 {r1:.3f}" if isinstance(r1, float) and not math.isnan(r1) else ""
        loss = summary["train"].get("loss")
        loss_s = f", loss {loss:.4g}" if loss is not None else ""
        print(f"trained {summary['step']} steps{loss_s}{extra}; wrote {summary['out_dir']}")
    return 0
