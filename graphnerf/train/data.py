"""Training batches from a zoo: graphs / tokens, teacher rays, labels, rotation pairs.

:class:`ZooBatches` turns the record groups of a :class:`~graphnerf.data.sampler.PairSampler`
batch into the dict :meth:`graphnerf.train.module.TrainModule.forward` takes. Everything random in
a batch (SANE's token points and augmentations, the cached rays drawn, the decoder's bin jitter,
the token masking) is seeded by ``(seed, step, slot)`` where ``slot`` is the NeRF's position in
the *global* batch, so a batch does not depend on the number of processes it is split over, nor
on DataLoader workers, nor on a restart.

Graphs come from the zoo's on-disk graph cache (:class:`~graphnerf.graph.GraphZooDataset`), teacher
renders from :class:`~graphnerf.train.teacher.TeacherRayCache`; :meth:`ZooBatches.prepare` fills
both before training (sharded over processes), so after it no step converts a NeRF. Fields (SANE)
and graphs are also kept in memory per process once read.

Batch layout (``M = K_local x V`` NeRFs, object-major: object 0 views 0..V-1, object 1, ...):
``inputs`` (PyG ``Batch`` or collated ``TokenSequence``), ``target`` (SANE: clean tokens),
``labels [M]`` (object index in the sampler, global), ``view [M]``, ``pairs [P, 2]`` (rows
``(view 0, view v)`` of each object, ``P = K_local (V - 1)``), ``q_rel [P, 4]`` (``q_b q_a^-1`` from
the manifest rotations, ``w >= 0``), ``rays`` (``origins``, ``directions``, ``rgb`` ``[M, R, 3]``,
``opacity [M, R]``), ``render_seeds [M]``, ``mask_seed``, ``step``, ``ids``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from ..data.sampler import PairSampler
from ..graph import GraphZooDataset
from ..scenes.rotations import canonical_quat, quat_conjugate, quat_multiply
from ..tokens import collate, jitter_rotation, multiplicative_noise, permute_hidden_neurons
from .inputs import plain_graph
from .teacher import TeacherRayCache, stable_int

__all__ = ["StepDataset", "ZooBatches", "relative_rotation_labels"]


def relative_rotation_labels(q_a: torch.Tensor, q_b: torch.Tensor) -> torch.Tensor:
    """``q_b q_a^-1`` ``[..., 4]`` (unit, wxyz, ``w >= 0``) of scene rotations ``q_a, q_b``."""
    return canonical_quat(quat_multiply(q_b, quat_conjugate(q_a)))


class ZooBatches:
    """Builds training batches of one zoo for one model (see the module docstring).

    Args:
        zoo: zoo folder.
        model_name: ``"gmn"`` or ``"sane"``.
        cache_dir: graph / teacher caches (``cache_dir/graphs``, ``cache_dir/teacher``).
        tokenizer: SANE's tokenizer (None for the GMN).
        augment: SANE augmentations (``permute_mlp``, ``noise_std``, ``rotation_noise_deg``).
        teacher: teacher-cache settings (``n_rays``, ``n_samples``, ``seed``) or None when the
            rendering loss is off.
        rays_per_field: cached rays drawn per NeRF and step.
        background: render background.
        seed: batch seed.
    """

    def __init__(
        self,
        zoo: str | Path,
        model_name: str,
        cache_dir: str | Path,
        tokenizer: Any = None,
        augment: Mapping[str, Any] | None = None,
        teacher: Mapping[str, Any] | None = None,
        rays_per_field: int = 128,
        background: float = 1.0,
        seed: int = 0,
    ) -> None:
        self.zoo = Path(zoo)
        self.model_name = model_name
        self.cache_dir = Path(cache_dir)
        self.tokenizer = tokenizer
        self.augment = dict(augment or {})
        self.seed = int(seed)
        self.rays_per_field = int(rays_per_field)
        self.graphs = (
            GraphZooDataset(self.zoo, cache_dir=self.cache_dir / "graphs")
            if model_name == "gmn"
            else None
        )
        self.teacher = (
            TeacherRayCache(
                self.cache_dir / "teacher",
                n_rays=int(teacher["n_rays"]),
                n_samples=int(teacher["n_samples"]),
                seed=int(teacher.get("seed", 0)),
                background=float(background),
            )
            if teacher is not None
            else None
        )
        if self.teacher is not None and self.rays_per_field > self.teacher.settings["n_rays"]:
            raise ValueError(
                f"render.rays_per_field={self.rays_per_field} exceeds the "
                f"{self.teacher.settings['n_rays']} cached rays per NeRF (render.teacher.n_rays)"
            )
        self._mem: dict[tuple[str, str], Any] = {}

    # ------------------------------------------------------------------ per-NeRF data
    def graph(self, rec: Mapping[str, Any]) -> Any:
        key = ("graph", str(rec["id"]))
        if key not in self._mem:
            assert self.graphs is not None
            self._mem[key] = plain_graph(self.graphs.graph(dict(rec)))
        return self._mem[key]

    def field(self, rec: Mapping[str, Any]) -> Any:
        key = ("field", str(rec["id"]))
        if key not in self._mem:
            from ..io import load_any

            self._mem[key] = load_any(self.zoo / rec["file"]).eval()
        return self._mem[key]

    def rays(self, rec: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        key = ("rays", str(rec["id"]))
        if key not in self._mem:
            assert self.teacher is not None
            self._mem[key] = self.teacher.get(rec, self.zoo / rec["file"])
        return self._mem[key]

    def prepare(
        self, records: Sequence[Mapping[str, Any]], rank: int = 0, world: int = 1, show: bool = True
    ) -> int:
        """Fill the on-disk caches for ``records`` (this process: every ``world``-th one from
        ``rank``). Returns how many records this process handled."""
        from ..progress import progress

        mine = [
            r
            for i, r in enumerate(sorted(records, key=lambda r: str(r["id"])))
            if i % world == rank
        ]
        if self.graphs is None and self.teacher is None:
            return 0
        for rec in progress(mine, desc="caches", unit="NeRF", disable=not show):
            if self.graphs is not None:
                self.graphs.graph(dict(rec))
            if self.teacher is not None:
                self.teacher.get(rec, self.zoo / rec["file"])
        return len(mine)

    # ------------------------------------------------------------------ batches
    def make_batch(
        self,
        records: Sequence[Mapping[str, Any]],
        groups: Sequence[Sequence[int]],
        labels: Sequence[int],
        step: int,
        first_slot: int,
    ) -> dict[str, Any]:
        """The batch of ``groups`` (lists of indices into ``records``, one list per object).

        Args:
            labels: object id of each group (global).
            step: training step (seeds).
            first_slot: global slot index of the first NeRF (rank offset under DDP).
        """
        v = len(groups[0])
        recs = [records[i] for gr in groups for i in gr]
        slots = [first_slot + i for i in range(len(recs))]
        label_t = torch.tensor([lab for lab in labels for _ in range(v)], dtype=torch.long)
        view = torch.arange(v).repeat(len(groups))
        rot = torch.tensor([r["rotation"] for r in recs], dtype=torch.float32)
        a = torch.arange(len(groups))[:, None] * v
        pairs = torch.stack([a.expand(-1, v - 1), a + torch.arange(1, v)], -1).reshape(-1, 2)
        batch: dict[str, Any] = {
            "labels": label_t,
            "view": view,
            "pairs": pairs,
            "step": int(step),
            "ids": [str(r["id"]) for r in recs],
            "render_seeds": torch.tensor(
                [stable_int(self.seed, "render", step, s) for s in slots], dtype=torch.long
            ),
            "mask_seed": stable_int(self.seed, "mask", step, first_slot),
        }
        if self.model_name == "gmn":
            from torch_geometric.data import Batch

            batch["inputs"] = Batch.from_data_list([self.graph(r) for r in recs])
        else:
            batch.update(self._tokens(recs, groups, step, first_slot))
            rot = batch.pop("rotations")
        batch["q_rel"] = relative_rotation_labels(rot[pairs[:, 0]], rot[pairs[:, 1]])
        if self.teacher is not None:
            batch["rays"] = self._rays(recs, slots, step)
        return batch

    def _tokens(
        self,
        recs: Sequence[Mapping[str, Any]],
        groups: Sequence[Sequence[int]],
        step: int,
        first_slot: int,
    ) -> dict[str, Any]:
        aug = self.augment
        v = len(groups[0])
        seqs, clean, rots = [], [], []
        for gi in range(len(groups)):
            slot0 = first_slot + gi * v
            g = torch.Generator().manual_seed(stable_int(self.seed, "tokens", step, slot0))
            views = recs[gi * v : (gi + 1) * v]
            fields = [self.field(r) for r in views]
            if aug.get("permute_mlp", False):
                fields = [permute_hidden_neurons(f, g) for f in fields]
            toks = self.tokenizer.tokenize_views(fields, generator=g)
            for r, t in zip(views, toks, strict=True):
                clean.append(t)
                std = float(aug.get("noise_std", 0.0))
                seqs.append(multiplicative_noise(t, std, g) if std > 0 else t)
                q = torch.tensor(r["rotation"], dtype=torch.float32)
                deg = float(aug.get("rotation_noise_deg", 0.0))
                rots.append(jitter_rotation(q, deg, g) if deg > 0 else q)
        inputs = collate(seqs)
        return {"inputs": inputs, "target": collate(clean).tokens, "rotations": torch.stack(rots)}

    def _rays(
        self, recs: Sequence[Mapping[str, Any]], slots: Sequence[int], step: int
    ) -> dict[str, torch.Tensor]:
        out: dict[str, list[torch.Tensor]] = {
            "origins": [],
            "directions": [],
            "rgb": [],
            "opacity": [],
        }
        for r, s in zip(recs, slots, strict=True):
            cached = self.rays(r)
            g = torch.Generator().manual_seed(stable_int(self.seed, "rays", step, s))
            pick = torch.randperm(cached["rgb"].shape[0], generator=g)[: self.rays_per_field]
            for k in out:
                out[k].append(cached[k].index_select(0, pick))
        return {k: torch.stack(v) for k, v in out.items()}


class StepDataset(Dataset):
    """Item ``i`` = this process's share of the batch of step ``start + i`` (for a DataLoader
    with ``batch_size=None``; workers build batches ahead of the training loop)."""

    def __init__(
        self,
        batches: ZooBatches,
        sampler: PairSampler,
        start: int,
        stop: int,
        rank: int = 0,
        world: int = 1,
    ) -> None:
        self.batches, self.sampler = batches, sampler
        self.start, self.stop, self.rank, self.world = int(start), int(stop), rank, world

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def __getitem__(self, i: int) -> dict[str, Any]:
        step = self.start + i
        return self.batch(step)

    def batch(self, step: int) -> dict[str, Any]:
        s = self.sampler
        groups = s.shard(s.batch(step), self.rank, self.world)
        per_rank = len(groups)
        first_group = self.rank * per_rank
        labels = [s.records[gr[0]]["object"] for gr in groups]
        return self.batches.make_batch(
            s.records,
            groups,
            [s.object_index[str(o)] for o in labels],
            step,
            first_slot=first_group * s.views,
        )


def identity(x: Any) -> Any:
    """DataLoader ``collate_fn`` of already-built batches."""
    return x
