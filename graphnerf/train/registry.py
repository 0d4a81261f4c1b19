"""Where shipped encoders live and how they are found (no torch here: JSON files only).

A shipped encoder is two files in the weights folder, written by
:func:`graphnerf.train.pretrained.export_pretrained`:

* ``<name>.pt`` — the slim encoder checkpoint (``graphnerf-encoder/1``, read by
  :func:`graphnerf.train.load_encoder`);
* ``<name>.json`` — its model card (format :data:`CARD_FORMAT`; ``name``, ``file``, ``sha256``,
  ``size_bytes``, the encoder, its training and its benchmark metrics).

The registry is *discovered*: every ``*.json`` card in the folder whose ``format`` is
:data:`CARD_FORMAT`, whose ``name`` is its file stem and whose weights file exists is a shipped
encoder; there is no list of names in the code. The folder is ``graphnerf/weights/`` inside the
installed package, or the folder named by the environment variable ``GRAPHNERF_WEIGHTS_DIR``
(read at every look-up; for tests and for encoders kept outside the package). A card that does not
qualify is skipped with a warning naming it (tests/test_pretrained.py checks the shipped ones).

:data:`PRETRAINED` is the live view ``name -> absolute path of the weights file`` that
:func:`graphnerf.train.checkpoint.read_checkpoint` consults, so every command that takes a
checkpoint path (``load_encoder``, ``graphnerf embed``, ``graphnerf benchmark``) takes a name.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "CARD_FORMAT",
    "PRETRAINED",
    "WEIGHTS_ENV",
    "ShippedWeights",
    "discover",
    "package_weights_dir",
    "shipped_hint",
    "valid_name",
    "weights_dir",
]

#: Environment variable naming another weights folder (instead of the package's).
WEIGHTS_ENV = "GRAPHNERF_WEIGHTS_DIR"
#: ``format`` of a model card.
CARD_FORMAT = "graphnerf-pretrained-card/1"

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


def valid_name(name: str) -> bool:
    """Lower-case letters, digits, ``.``, ``_``, ``-``; starts with a letter or digit; no ``.pt``."""
    return bool(_NAME.match(name)) and not name.endswith((".pt", ".json"))


def package_weights_dir() -> Path:
    """``graphnerf/weights/`` of the installed package (shipped with it as package data)."""
    return Path(__file__).resolve().parent.parent / "weights"


def weights_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """The folder to look in: ``override``, else ``$GRAPHNERF_WEIGHTS_DIR``, else the package's."""
    if override is not None:
        return Path(override)
    env = os.environ.get(WEIGHTS_ENV)
    return Path(env) if env else package_weights_dir()


def _card_problem(card: Any, path: Path) -> str | None:
    if not isinstance(card, dict):
        return f"not a JSON object ({type(card).__name__})"
    if card.get("format") != CARD_FORMAT:
        return f"format {card.get('format')!r}, expected {CARD_FORMAT!r}"
    if card.get("name") != path.stem:
        return f"name {card.get('name')!r} is not the file's stem {path.stem!r}"
    file = card.get("file")
    if not isinstance(file, str) or Path(file).name != file:
        return f"file {file!r} is not a file name in the same folder"
    if not (path.parent / file).is_file():
        return f"its weights file {path.parent / file} is missing"
    return None


def discover(folder: str | os.PathLike[str] | None = None) -> dict[str, dict[str, Any]]:
    """``{name: card}`` of the shipped encoders in ``folder`` (default :func:`weights_dir`),
    sorted by name. Each card gets ``path``: the absolute path of its weights file."""
    root = weights_dir(folder)
    out: dict[str, dict[str, Any]] = {}
    if not root.is_dir():
        return out
    for path in sorted(root.glob("*.json")):
        try:
            card = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            warnings.warn(f"{path}: unreadable model card skipped ({e})", stacklevel=2)
            continue
        problem = _card_problem(card, path)
        if problem:
            warnings.warn(f"{path}: model card skipped: {problem}", stacklevel=2)
            continue
        out[card["name"]] = {**card, "path": str((root / card["file"]).resolve())}
    return out


def shipped_hint(folder: str | os.PathLike[str] | None = None) -> str:
    """``"shipped names: a, b"`` or ``"no encoders are shipped in DIR"`` (for error messages)."""
    names = sorted(discover(folder))
    if names:
        return "shipped names: " + ", ".join(names)
    return f"no encoders are shipped in {weights_dir(folder)}"


class ShippedWeights(Mapping[str, str]):
    """Live read-only mapping ``name -> absolute path of the weights file`` (rediscovered at every
    access, so a changed ``$GRAPHNERF_WEIGHTS_DIR`` or a newly exported encoder is seen)."""

    def _all(self) -> dict[str, dict[str, Any]]:
        return discover()

    def __getitem__(self, name: str) -> str:
        return self._all()[name]["path"]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and valid_name(name) and name in self._all()

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())

    def __repr__(self) -> str:
        return f"ShippedWeights({weights_dir()}: {sorted(self._all())})"


#: The shipped encoders: ``name -> path`` (see the module docstring).
PRETRAINED: Mapping[str, str] = ShippedWeights()
