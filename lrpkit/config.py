"""Run configuration: YAML files in ``configs/`` merged over built-in defaults.

``load_config("smoke")`` reads ``configs/smoke.yaml`` of the project (or any path).  Every
section is a plain dict; relative paths are resolved against the project root (the folder
holding ``configs/``) or the current directory.
"""
from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Mapping

import yaml

__all__ = ["DEFAULTS", "load_config", "project_root", "resolve_path"]

#: Built-in defaults; configs/default.yaml states them explicitly.
DEFAULTS: dict[str, Any] = {
    "seed": 0,
    "paths": {"scenes": "data/scenes", "models": "data/models", "reports": "reports"},
    "data": {"n_train": 2000, "n_val": 500, "n_test": 1000},
    "cnn": {},
    "fisher": {},
    "lrp": {},
    "evaluation": {},
    "reports": {"notebooks": None, "hide_code": True, "timeout": 3600},
}


def project_root() -> Path:
    """The project folder: the nearest parent of the cwd holding ``configs/``, else the cwd."""
    here = Path.cwd().resolve()
    for p in (here, *here.parents):
        if (p / "configs").is_dir() and (p / "pyproject.toml").is_file():
            return p
    pkg_parent = Path(__file__).resolve().parent.parent
    if (pkg_parent / "configs").is_dir():
        return pkg_parent
    return here


def _merge(base: dict, over: Mapping) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def load_config(config: str | os.PathLike | Mapping | None = None, **overrides: Any) -> dict[str, Any]:
    """Load a config by name (``"default"``, ``"smoke"``), path, or dict, over the defaults."""
    if config is None:
        config = "default"
    if isinstance(config, Mapping):
        data: Mapping = config
        source = "<dict>"
    else:
        p = Path(config)
        if not p.suffix and not p.exists():
            p = project_root() / "configs" / f"{p.name}.yaml"
        if not p.is_file():
            raise FileNotFoundError(f"config file not found: {p}")
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ValueError(f"config file {p} is not valid YAML: {exc}") from None
        if not isinstance(data, Mapping):
            raise ValueError(f"config file {p} must hold a mapping at top level")
        source = str(p)
    cfg = _merge(DEFAULTS, data)
    cfg = _merge(cfg, overrides)
    cfg["_source"] = source
    return cfg


def resolve_path(cfg: Mapping[str, Any], key: str) -> Path:
    """``cfg['paths'][key]`` as an absolute path (relative ones against the project root)."""
    try:
        p = Path(cfg["paths"][key])
    except KeyError:
        raise ValueError(f"config has no paths.{key}") from None
    return p if p.is_absolute() else project_root() / p
