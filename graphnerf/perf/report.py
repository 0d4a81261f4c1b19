"""What every benchmark records about the machine, and how it writes its JSON result."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

import torch

from ..atomic import atomic_write_text

__all__ = ["environment", "write_json"]


def environment() -> dict[str, Any]:
    """torch version, intra-op threads, CPU count, machine and processor of this process."""
    return {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "processor": platform.processor(),
    }


def write_json(result: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write ``result`` as indented JSON (parent folders created, atomically) and say where."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(result, indent=2))
    print(f"\nwrote {out}")
    return out
