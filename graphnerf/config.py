"""Hydra configuration: the config folder shipped with the package and a `load_config` helper.

The YAML files live in ``graphnerf/configs/`` (the repository's top-level ``configs/`` points
there) so that an installed package finds them too.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


def load_config(name: str, overrides: Sequence[str] = ()) -> DictConfig:
    """Compose ``configs/<name>.yaml`` with Hydra overrides (``key=value``)."""
    from hydra import compose, initialize_config_dir

    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise ValueError(f"config overrides must look like key=value, got {bad}")
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        return compose(config_name=name, overrides=list(overrides))
