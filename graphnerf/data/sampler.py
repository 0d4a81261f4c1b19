"""`PairSampler`: training batches of K objects x V NeRFs of the same object.

Every batch holds ``objects_per_batch`` (K) distinct objects and, for each, ``views`` (V >= 2)
distinct NeRFs of it: different architectures and/or different rotations (contrastive positives,
rotation pairs). Batches are **balanced over architecture pairs**: the unordered arch pairs
``{a, b}`` that occur within some object (``{mlp, hash}``, ``{hash, hash}`` for two rotations of a
hash NeRF, ...) are dealt in shuffled rounds, one pair type per batch slot, so over every round
each pair type fills the same number of slots (gmnerf's BalancedSampler does this for its 3
archs); the object of a slot is drawn among those that have that pair, the two NeRFs among the
object's NeRFs of those archs, their order at random. Views beyond the first two are drawn from
the object's remaining NeRFs.

The sampler is a pure function of ``(seed, step)``: :meth:`PairSampler.batch` of a step is the
same in every process and after a restart, so "the sampler position" is the step number, and a
DDP rank takes its contiguous share of the K objects (:meth:`PairSampler.shard`).
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import torch

__all__ = ["PAIR_MODES", "PairSampler", "SamplerError"]

PAIR_MODES = ("any", "cross_arch", "cross_rotation")


class SamplerError(ValueError):
    """No batch can be made (the message says why and from which records)."""


def _seed(*parts: Any) -> int:
    h = hashlib.sha256("\0".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(h[:8], "little") & ((1 << 63) - 1)


def _rotation_key(rec: Mapping[str, Any]) -> tuple[float, ...]:
    q = [float(v) for v in rec["rotation"]]
    if q[0] < 0:  # q and -q are one rotation
        q = [-v for v in q]
    return tuple(round(v, 5) for v in q)


class PairSampler:
    """Balanced K x V batches of NeRFs of the same objects (see the module docstring).

    Args:
        records: manifest records (``id``, ``object``, ``arch``, ``rotation``, ``split``).
        objects_per_batch: K objects per batch.
        views: V NeRFs per object (>= 2).
        seed: sampler seed.
        archs: keep only these architectures (None: all).
        splits: keep only these splits (None: all).
        pair: ``"any"`` (two distinct NeRFs), ``"cross_arch"`` (different architectures) or
            ``"cross_rotation"`` (different rotations) for the first two views.
        what: name of the record source for error messages (e.g. the zoo folder).
    """

    def __init__(
        self,
        records: Sequence[Mapping[str, Any]],
        objects_per_batch: int,
        views: int = 2,
        seed: int = 0,
        archs: Sequence[str] | None = None,
        splits: Sequence[str] | None = ("train",),
        pair: str = "any",
        what: str = "zoo",
    ) -> None:
        if pair not in PAIR_MODES:
            raise SamplerError(f"data.pair must be one of {list(PAIR_MODES)}, got {pair!r}")
        if views < 2:
            raise SamplerError(f"data.views must be >= 2 (pairs of NeRFs), got {views}")
        if objects_per_batch < 1:
            raise SamplerError(f"data.objects_per_batch must be >= 1, got {objects_per_batch}")
        arch_set = set(archs) if archs is not None else None
        split_set = set(splits) if splits is not None else None
        self.records = [
            dict(r)
            for r in records
            if (arch_set is None or r["arch"] in arch_set)
            and (split_set is None or r["split"] in split_set)
        ]
        self.records.sort(key=lambda r: str(r["id"]))  # independent of manifest order
        self.k, self.views, self.seed, self.pair = (
            int(objects_per_batch),
            int(views),
            int(seed),
            pair,
        )
        by_object: dict[str, list[int]] = defaultdict(list)
        for i, r in enumerate(self.records):
            by_object[str(r["object"])].append(i)
        self.objects = sorted(by_object)
        self.object_index = {o: i for i, o in enumerate(self.objects)}
        # pair types: unordered arch pairs with a valid pair of NeRFs in some object
        pairs: dict[tuple[str, str], list[int]] = defaultdict(list)
        for oi, obj in enumerate(self.objects):
            idx = by_object[obj]
            if len(idx) < self.views:
                continue
            found = set()
            for x in idx:
                for y in idx:
                    if x < y and self._valid(self.records[x], self.records[y]):
                        a, b = sorted((self.records[x]["arch"], self.records[y]["arch"]))
                        found.add((a, b))
            for key in found:
                pairs[key].append(oi)
        self.by_object = {self.object_index[o]: v for o, v in by_object.items()}
        self.pair_types = sorted(pairs)
        self.pair_objects = {k: pairs[k] for k in self.pair_types}
        eligible = sorted({o for v in pairs.values() for o in v})
        self.eligible = eligible
        desc = (
            f"{what}: splits {sorted(split_set) if split_set else 'all'}, archs "
            f"{sorted(arch_set) if arch_set else 'all'}"
        )
        if not self.records:
            raise SamplerError(f"{desc}: no NeRF matches")
        if not eligible:
            raise SamplerError(
                f"{desc}: no object has {self.views} NeRFs to pair (pair={pair}; "
                f"{len(self.records)} NeRFs of {len(self.objects)} objects)"
            )
        if len(eligible) < self.k:
            raise SamplerError(
                f"{desc}: data.objects_per_batch={self.k} but only {len(eligible)} objects have "
                f"{self.views} NeRFs to pair"
            )

    def _valid(self, a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
        if self.pair == "cross_arch":
            return a["arch"] != b["arch"]
        if self.pair == "cross_rotation":
            return _rotation_key(a) != _rotation_key(b)
        return True

    def __repr__(self) -> str:
        return (
            f"PairSampler({len(self.records)} NeRFs, {len(self.eligible)} objects, K={self.k}, "
            f"V={self.views}, pair types {self.pair_types})"
        )

    @property
    def steps_per_epoch(self) -> int:
        """Batches that show each pairable object once on average."""
        return max(1, len(self.eligible) // self.k)

    def _pair_type(self, slot: int) -> tuple[str, str]:
        n = len(self.pair_types)
        rnd = slot // n
        perm = torch.randperm(
            n, generator=torch.Generator().manual_seed(_seed(self.seed, "round", rnd))
        )
        return self.pair_types[int(perm[slot % n])]

    def batch(self, step: int) -> list[list[int]]:
        """K groups of V indices into :attr:`records` (object-major), the same for every call."""
        g = torch.Generator().manual_seed(_seed(self.seed, "batch", step))
        used: set[int] = set()
        groups: list[list[int]] = []
        for j in range(self.k):
            ptype = self._pair_type(step * self.k + j)
            cands = [o for o in self.pair_objects[ptype] if o not in used]
            if not cands:  # every object of this pair type is in the batch already
                cands = [o for o in self.eligible if o not in used]
                ptype = None
            obj = cands[int(torch.randint(len(cands), (1,), generator=g))]
            used.add(obj)
            groups.append(self._views(obj, ptype, g))
        return groups

    def _views(self, obj: int, ptype: tuple[str, str] | None, g: torch.Generator) -> list[int]:
        idx = self.by_object[obj]
        recs = self.records
        cand = [
            (x, y)
            for x in idx
            for y in idx
            if x < y
            and self._valid(recs[x], recs[y])
            and (ptype is None or tuple(sorted((recs[x]["arch"], recs[y]["arch"]))) == ptype)
        ]
        x, y = cand[int(torch.randint(len(cand), (1,), generator=g))]
        if torch.rand((), generator=g) < 0.5:
            x, y = y, x
        rest = [i for i in idx if i not in (x, y)]
        order = torch.randperm(len(rest), generator=g).tolist()
        return [x, y] + [rest[i] for i in order[: self.views - 2]]

    def shard(self, groups: Sequence[Sequence[int]], rank: int, world: int) -> list[list[int]]:
        """Rank ``rank``'s contiguous share of a batch's K groups (K must divide by ``world``)."""
        if len(groups) % world:
            raise SamplerError(
                f"data.objects_per_batch={len(groups)} must be a multiple of the {world} processes"
            )
        n = len(groups) // world
        return [list(gr) for gr in groups[rank * n : (rank + 1) * n]]

    def state_dict(self, step: int) -> dict[str, Any]:
        """The sampler position (a pure function of seed and step)."""
        return {"seed": self.seed, "step": int(step), "k": self.k, "views": self.views}
