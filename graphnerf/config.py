"""Hydra configuration: the config folder shipped with the package and a `load_config` helper.

The YAML files live in ``graphnerf/configs/`` (the repository's top-level ``configs/`` points
there) so that an installed package finds them too.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import DictConfig

CONFIG_DIR = Path(__file__).resolve().parent / "configs"

D = TypeVar("D")


def load_config(name: str, overrides: Sequence[str] = ()) -> DictConfig:
    """Compose ``configs/<name>.yaml`` with Hydra overrides (``key=value``)."""
    from hydra import compose, initialize_config_dir

    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise ValueError(f"config overrides must look like key=value, got {bad}")
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        return compose(config_name=name, overrides=list(overrides))


class ConfigError(ValueError):
    """A config that cannot be composed (unknown key, bad override syntax, wrong type); the
    message is one line naming the config, the overrides and what Hydra / OmegaConf said."""


def load_config_checked(
    name: str,
    overrides: Sequence[str] = (),
    what: str = "config",
    error: type[ValueError] = ConfigError,
) -> DictConfig:
    """:func:`load_config`, with every Hydra / OmegaConf failure (a typo in a key, a bad value)
    raised as ``error`` with a one-line message (``"<what> <name> with overrides [...]: ..."``)
    instead of a multi-line traceback. Command-line entry points compose through this."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        return load_config(name, list(overrides))
    except (HydraException, OmegaConfBaseException) as e:
        msg = " ".join(line.strip() for line in str(e).splitlines() if line.strip())
        unknown = re.search(r"Could not override '([^']+)'", msg)
        if unknown:  # a misspelt key: name it and the keys that exist at its level
            msg = f"unknown key {unknown.group(1)!r}" + _known_keys(name, unknown.group(1))
        raise error(
            f"{what} {name} with overrides {list(overrides)}: {msg or type(e).__name__}"
        ) from e


def _known_keys(name: str, key: str) -> str:
    """``"; expected one of [...]"``: the keys of config ``name`` beside ``key`` (dotted)."""
    from omegaconf import OmegaConf

    try:
        parent = ".".join(key.split(".")[:-1])
        node = load_config(name)
        node = OmegaConf.select(node, parent) if parent else node
        return f"; expected one of {sorted(node.keys())}" if isinstance(node, DictConfig) else ""
    except Exception:  # the hint is best effort; the error itself is already clear
        return ""


def dataclass_from_mapping(cls: type[D], d: Mapping[str, Any], what: str) -> D:
    """Build the config dataclass ``cls`` from a mapping of its field names (e.g. a YAML node).

    Unknown keys are an error naming ``what`` and the expected keys; YAML lists become tuples.
    """
    names = sorted(f.name for f in dataclasses.fields(cls))  # type: ignore[arg-type]
    unknown = sorted(set(d) - set(names))
    if unknown:
        raise ValueError(f"unknown {what} key(s) {unknown}; expected some of {names}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})
