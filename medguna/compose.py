"""Compose the Hydra configuration in studies/conf/ into typed, validated config objects.

Shared by `python studies/run.py` and `medguna trial`, so both read the same files and the same
override syntax. `version_base="1.3"` keeps Hydra from changing the working directory (relative
storage paths must not move between a run and its resume).
"""

from __future__ import annotations

import os
from pathlib import Path

from medguna.config import from_dict
from medguna.errors import ConfigError
from medguna.study_config import StudyConfig


def config_dir() -> Path:
    """studies/conf of this checkout, or $MEDGUNA_CONFIG_DIR."""
    env = os.environ.get("MEDGUNA_CONFIG_DIR")
    path = Path(env) if env else Path(__file__).resolve().parents[1] / "studies" / "conf"
    if not (path / "config.yaml").is_file():
        raise ConfigError(f"no config.yaml in {path}: run from a medguna checkout or set MEDGUNA_CONFIG_DIR "
                          "to its studies/conf folder")
    return path


def compose_dict(overrides: list[str] | tuple[str, ...] = ()) -> dict:
    """The composed configuration as plain data, interpolations resolved."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            cfg = compose(config_name="config", overrides=list(overrides))
        return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
    except (HydraException, OmegaConfBaseException) as err:
        raise ConfigError(f"cannot compose the configuration with overrides {list(overrides)}: {err}") from None


def compose_study(overrides: list[str] | tuple[str, ...] = (), *, search: bool = True) -> StudyConfig:
    """Compose, type-check and validate a study configuration (search=False: not its search space)."""
    return from_dict(StudyConfig, compose_dict(overrides)).validate(search=search)
