"""The stage ledger of an experiment run: ``RUN/stages.json``.

One entry per finished stage (``zoo``, ``train/<run>``, ``bench/<run>``, ``report``): its wall and
process CPU seconds, the torch threads it ran with, the load average when it started, start and end
times (UTC, ISO 8601) and a ``key`` that identifies what it produced (e.g. the sha256 of the
checkpoint a benchmark scored). Several processes may run stages of one run at once (``only=``),
so every update re-reads the file under an exclusive ``flock`` of ``RUN/.stages.lock`` and writes
it atomically (temp file, then rename).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from ..atomic import atomic_write_text

__all__ = ["Ledger", "StageTimer"]


class Ledger:
    """``RUN/stages.json``: finished stages and what they cost."""

    def __init__(self, run_dir: str | os.PathLike[str]) -> None:
        self.root = Path(run_dir)
        self.path = self.root / "stages.json"

    def read(self) -> dict[str, dict[str, Any]]:
        """Every finished stage, ``{name: entry}`` (empty for a new run)."""
        if not self.path.is_file():
            return {}
        try:
            data = json.loads(self.path.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{self.path}: not valid JSON ({e.msg}, line {e.lineno})") from None
        if not isinstance(data, dict):
            raise ValueError(f"{self.path}: expected a JSON object of stages")
        return data

    def get(self, stage: str) -> dict[str, Any] | None:
        return self.read().get(stage)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / ".stages.lock", os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def record(self, stage: str, entry: dict[str, Any]) -> None:
        """Add or replace ``stage``'s entry (under the lock, atomically)."""
        with self._locked():
            data = self.read()
            data[stage] = entry
            atomic_write_text(self.path, json.dumps(data, indent=2, sort_keys=True) + "\n")

    def forget(self, stage: str) -> None:
        """Drop ``stage`` (its output changed, so it must run again)."""
        with self._locked():
            data = self.read()
            if data.pop(stage, None) is not None:
                atomic_write_text(self.path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class StageTimer:
    """Wall and CPU time of one stage, with the conditions it ran under.

    ``cpu_s`` counts this process and the child processes it waited for (zoo shards).
    """

    def __init__(self) -> None:
        self.started = _now()
        self.load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
        self.t0 = time.perf_counter()
        self.c0 = self._cpu()

    @staticmethod
    def _cpu() -> float:
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system

    def entry(self, **extra: Any) -> dict[str, Any]:
        return {
            "wall_s": round(time.perf_counter() - self.t0, 1),
            "cpu_s": round(self._cpu() - self.c0, 1),
            "threads": torch.get_num_threads(),
            "load_at_start": None if self.load is None else round(self.load, 2),
            "started": self.started,
            "finished": _now(),
            **extra,
        }
