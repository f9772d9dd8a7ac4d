"""Which cells to run: the notebooks of a folder, and grid configs (``configs/grid.yaml``).

A grid config declares several cells per notebook::

    config: default                # the base config every cell starts from
    out: reports/grid              # cell files, the combined stores and an index go here
    notebooks:
      04_aopc_evaluation:
        lrp.composite: [epsilon, alpha2_beta1]   # "section.key": a config override
        seed: [0, 1]                             # a top-level config key
      grid_probe:
        scale: [1.0, 2.0]                        # no dot, not a config key: a papermill parameter
      00_data_and_models:                        # what is analysed is configuration too:
        model.weights: [runs/a.pt, runs/b.pt]    # two saved models, one cell each
        dataset.root: [data/VOCdevkit, data/other_devkit]
        # models: [[{source: torchvision, arch: resnet18, weights: a.pt}], [...]]  # whole lists

Every combination (the Cartesian product per notebook, or per block when a notebook maps
to a list of blocks) is a cell (:func:`grid_cells`).  Optional keys: ``notebook_dir``,
``store`` (``netcdf`` / ``zarr`` / ``auto``), ``retries``, ``timeout``, ``start_timeout``,
``hide_code``.
"""
from __future__ import annotations

import itertools
import json
import os
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Mapping, Sequence

from ..config import config_path, load_config, merge, project_root
from .analysed import check_inputs
from .cells import Cell, base_config_data, cell_name, config_keys, config_overrides

__all__ = ["GridSpec", "is_grid_config", "load_grid", "grid_cells", "notebook_cell", "discover_notebooks"]


def discover_notebooks(nb_dir: str | os.PathLike | None = None,
                       names: Sequence[str] | None = None) -> list[Path]:
    """Notebooks in ``nb_dir`` (default ``<project>/notebooks``, else the ones shipped with
    lrpkit, :func:`lrpkit.resources.bundled`) in name order.

    ``names`` selects by stem (``"00_data_and_models"``) or by prefix (``"00"``).
    """
    if nb_dir is None:
        nb_dir = project_root() / "notebooks"
        if not nb_dir.is_dir():
            from ..resources import bundled

            nb_dir = bundled("notebooks")
    nb_dir = Path(nb_dir)
    if not nb_dir.is_dir():
        raise FileNotFoundError(f"notebook folder not found: {nb_dir}")
    found = sorted(p for p in nb_dir.glob("*.ipynb") if not p.name.startswith("."))
    if names is None:
        return found
    chosen = []
    for n in names:
        hits = [p for p in found if p.stem == n or p.stem.startswith(f"{n}_") or p.name == n]
        if not hits:
            raise ValueError(f"no notebook named {n!r} in {nb_dir}; have "
                             f"{', '.join(p.stem for p in found) or '(none)'}")
        chosen.extend(h for h in hits if h not in chosen)
    return chosen


def notebook_cell(nb: Path, out_dir: Path, config: str, hide_code: bool = True,
                  timeout: float | None = None, start_timeout: float = 120.0) -> Cell:
    """The one cell of a plain ``lrpkit report`` run of a notebook (no parameters)."""
    return Cell(notebook=str(nb), name=nb.stem, out_dir=str(out_dir), config=str(config), params=(),
                group=nb.stem, timeout=timeout, start_timeout=start_timeout, hide_code=hide_code)


@dataclass
class GridSpec:
    """A grid config: the base config, output folder and per-notebook parameter grids."""

    config: str
    out: Path
    notebooks: dict[str, list[dict[str, list]]]
    nb_dir: Path
    store: str = "netcdf"
    retries: int = 1
    timeout: float | None = 3600
    start_timeout: float = 120.0
    hide_code: bool = True
    source: str = ""


_GRID_KEYS = {"config", "out", "notebooks", "notebook_dir", "store", "retries", "timeout",
              "start_timeout", "hide_code"}


def is_grid_config(path: str | os.PathLike) -> bool:
    """Whether a YAML file is a grid config (has a top-level ``notebooks:`` mapping of grids)."""
    import yaml

    p = Path(path)
    if not p.suffix:
        p = config_path(p.name) or project_root() / "configs" / f"{p.name}.yaml"
    try:
        data = yaml.safe_load(p.read_text())
    except (OSError, Exception):  # noqa: BLE001
        return False
    return isinstance(data, Mapping) and isinstance(data.get("notebooks"), Mapping) \
        and "grid" in str(data.get("kind", "grid"))


def load_grid(path: str | os.PathLike) -> GridSpec:
    """Read and check a grid config (see the module docstring)."""
    import yaml

    p = Path(path)
    if not p.suffix and not p.exists():
        p = config_path(p.name) or project_root() / "configs" / f"{p.name}.yaml"
    if not p.is_file():
        raise FileNotFoundError(f"grid config not found: {p}")
    data = yaml.safe_load(p.read_text()) or {}
    if not isinstance(data, Mapping) or not isinstance(data.get("notebooks"), Mapping):
        raise ValueError(f"grid config {p} needs a top-level 'notebooks:' mapping "
                         f"(notebook name -> {{parameter: [values]}})")
    unknown = set(data) - _GRID_KEYS - {"kind"}
    if unknown:
        raise ValueError(f"grid config {p}: unknown key(s) {sorted(unknown)}; allowed: {sorted(_GRID_KEYS)}")
    root = project_root()

    def rel(v: str) -> Path:
        q = Path(v)
        return q if q.is_absolute() else root / q

    store = str(data.get("store", "netcdf"))
    if store not in ("netcdf", "zarr", "auto"):
        raise ValueError(f"grid config {p}: store must be netcdf, zarr or auto, got {store!r}")
    grids: dict[str, list[dict[str, list]]] = {}
    for nb, g in data["notebooks"].items():
        blocks = g if isinstance(g, list) else [g or {}]
        out_blocks = []
        for b in blocks:
            if not isinstance(b, Mapping):
                raise ValueError(f"grid config {p}: notebooks.{nb} must map parameter -> list of values")
            out_blocks.append({str(k): list(v) if isinstance(v, (list, tuple)) else [v] for k, v in b.items()})
            for k, v in out_blocks[-1].items():
                if not v:
                    raise ValueError(f"grid config {p}: notebooks.{nb}.{k} has no values")
        grids[str(nb)] = out_blocks
    config = str(data.get("config", "default"))
    cpath = Path(config)
    if cpath.suffix and not cpath.is_absolute():
        config = str(rel(config))
    timeout = data.get("timeout", 3600)
    return GridSpec(config=config, out=rel(str(data.get("out", "reports/grid"))), notebooks=grids,
                    nb_dir=rel(str(data.get("notebook_dir", "notebooks"))), store=store,
                    retries=int(data.get("retries", 1)),
                    timeout=None if timeout is None else float(timeout),
                    start_timeout=float(data.get("start_timeout", 120)),
                    hide_code=bool(data.get("hide_code", True)), source=str(p))


def grid_cells(spec: GridSpec) -> list[Cell]:
    """Every cell of a grid (Cartesian product per block), checked against the config: its keys
    (the typed config) and the files it names (``model.weights: [a.pt, b.pt]``, ``dataset.root``,
    :func:`lrpkit.batch.analysed.check_inputs`), before any kernel starts."""
    base_cfg = load_config(spec.config)
    cfg_path = base_cfg["_source"]
    base = base_config_data(spec.config)
    checked: set[str] = set()

    def check(cfg, where: str) -> None:
        key = json.dumps({k: cfg[k].to_dict() for k in ("model", "models", "dataset")},
                         sort_keys=True, default=str)
        if key not in checked:
            checked.add(key)
            try:
                check_inputs(cfg)
            except FileNotFoundError as exc:
                raise FileNotFoundError(f"grid {spec.source}: {where}: {exc}") from None

    cells: list[Cell] = []
    for nb_name, blocks in spec.notebooks.items():
        nb = discover_notebooks(spec.nb_dir, [nb_name])[0]
        seen = set()
        for block in blocks:
            keys = list(block)
            for combo in itertools.product(*(block[k] for k in keys)):
                params = tuple(zip(keys, combo))
                cell = Cell(notebook=str(nb), name=cell_name(nb.stem, params),
                            out_dir=str(spec.out / "cells" / nb.stem), config=str(cfg_path),
                            params=params, group=nb.stem, timeout=spec.timeout,
                            start_timeout=spec.start_timeout, hide_code=spec.hide_code)
                if cell.name in seen:
                    continue
                seen.add(cell.name)
                over, _ = config_overrides(cell, {**base, **config_keys()})
                cfg = base_cfg
                if over:
                    try:  # the typed config rejects unknown keys: say so before any kernel starts
                        cfg = load_config(merge(base, over))
                    except (ValueError, KeyError, TypeError) as exc:
                        raise ValueError(f"grid {spec.source}: notebooks.{nb_name}: {exc}") from None
                check(cfg, f"notebooks.{nb_name}")
                cells.append(cell)
    return cells
