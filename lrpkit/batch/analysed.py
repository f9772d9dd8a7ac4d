"""What a run analyses: the model(s) and the data set a cell's config names, for the index page.

The index (:func:`lrpkit.batch.render.write_index`) says which network and which images each
report is about.  :func:`describe` reads the models from the config without loading them (the
names are the ones :func:`lrpkit.sources.load_model` gives: ``name``, else the arch, the file's
stem, the ``entry`` function, "scene CNN", "Fisher vector") and the data set through
:func:`lrpkit.sources.load_dataset` (its name, root, split and number of images)::

    describe("configs/mine.yaml")
    # {"models": [{"where": "model", "name": "resnet18", "source": "torchvision",
    #              "arch": "resnet18", "file": "/abs/models/resnet18_voc.pt"}],
    #  "dataset": {"name": "VOC2007", "source": "voc", "root": "/abs/VOCdevkit/VOC2007",
    #              "split": "test", "images": 4952}}

Before the cells run, the scheduler writes each cell's description beside its status file,
``<name>.analysed.json`` (:func:`write_analysed`), so that grid cells over ``model.weights`` or
``dataset.root`` each name their own.  :func:`check_inputs` is the command's check, before any
kernel starts, that the files a config names exist.
"""
from __future__ import annotations

import contextlib
import html
import json
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..results import atomic_path
from .cells import Cell, merged_config

__all__ = ["describe", "check_inputs", "write_analysed", "read_analysed", "analysed_html", "SUFFIX"]

SUFFIX = ".analysed.json"
#: descriptions already computed in this process, by the config sections they depend on
_CACHE: dict[str, dict[str, Any]] = {}


def _abs(value: str | os.PathLike) -> Path:
    """A config path as :mod:`lrpkit.sources` resolves it: ``~`` expanded, relative ones against
    the project root."""
    from ..config import project_root

    p = Path(value).expanduser()
    return p if p.is_absolute() else project_root() / p


def _entries(cfg: Any) -> list[tuple[str, Any]]:
    if len(cfg.models):
        return [(f"models[{i}]", m) for i, m in enumerate(cfg.models)]
    return [("model", cfg.model)]


def _model(where: str, spec: Any, cfg: Any) -> dict[str, Any]:
    from .. import pipeline

    source = spec.source
    if source == "scene_cnn":
        name, file = "scene CNN", _abs(spec.weights) if spec.weights else pipeline.cnn_path(cfg)
    elif source == "fisher":
        name, file = "Fisher vector", _abs(spec.weights) if spec.weights else pipeline.fisher_path(cfg)
    elif source == "torchvision":
        name, file = str(spec.arch or "?").lower(), _abs(spec.weights) if spec.weights else None
    elif source == "torchscript":
        file = _abs(spec.weights) if spec.weights else None
        name = file.stem if file else "?"
    else:  # python
        name = str(spec.entry or "?").rpartition(":")[2]
        file = _abs(spec.weights) if spec.weights else spec.entry
    out = {"where": where, "name": spec.name or name, "source": source,
           "file": None if file is None else str(file)}
    if spec.arch:
        out["arch"] = str(spec.arch)
    if source == "python":
        out["entry"] = spec.entry
    return out


def _dataset(cfg: Any) -> dict[str, Any]:
    from ..sources import load_dataset

    spec = cfg.dataset
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = load_dataset(spec, cfg)
    except Exception as exc:  # noqa: BLE001 - the index says why, the notebooks fail on their own
        from .. import pipeline

        root = _abs(spec.root) if spec.root else (pipeline.scenes_root(cfg) if spec.source == "scenes"
                                                   else None)
        name = spec.name or ("scenes" if spec.source == "scenes" else root.name if root else "?")
        return {"name": name, "source": spec.source, "root": None if root is None else str(root),
                "split": spec.split, "images": None, "error": f"{type(exc).__name__}: {exc}"}
    return {"name": ds.name, "source": ds.source, "root": str(ds.root), "split": ds.split,
            "images": len(ds)}


def describe(cfg: Any) -> dict[str, Any]:
    """``{"models": [...], "dataset": {...}}``: what a config's reports analyse (see the module
    docstring).  A data set that cannot be read is described from the config, with ``images``
    None and ``error`` saying why; nothing here raises for a missing file."""
    from ..config import as_config, project_root

    cfg = as_config(cfg)
    key = json.dumps({k: cfg[k].to_dict() for k in ("paths", "model", "models", "dataset")},
                     sort_keys=True, default=str) + str(project_root())
    if key not in _CACHE:
        _CACHE[key] = {"models": [_model(w, m, cfg) for w, m in _entries(cfg)], "dataset": _dataset(cfg)}
    return json.loads(json.dumps(_CACHE[key]))   # a copy


def check_inputs(cfg: Any) -> None:
    """Raise ``FileNotFoundError`` naming every config key whose file or folder is missing
    (``model.weights``, ``models[1].weights``, ``dataset.root``, ``dataset.boxes``): said once,
    before any notebook starts, instead of by every notebook.  lrpkit's own defaults (the scene
    CNN, the scenes) are not checked here: ``lrpkit all`` builds them."""
    from ..config import as_config

    cfg = as_config(cfg)
    missing = []
    for where, m in _entries(cfg):
        if m.weights and not _abs(m.weights).exists():
            missing.append(f"{where}.weights: no such file {_abs(m.weights)}")
    for key in ("root", "boxes"):
        value = cfg.dataset[key]
        if value and not _abs(value).exists():
            missing.append(f"dataset.{key}: no such {'folder' if key == 'root' else 'file'} "
                           f"{_abs(value)}")
    if missing:
        where = "" if cfg.source.startswith("<") else f"{cfg.source}: "
        raise FileNotFoundError(where + "; ".join(missing))


def _cell_config(cell: Cell) -> Any:
    from ..config import load_config

    merged = merged_config(cell)
    return load_config(cell.config if merged is None else merged)


def write_analysed(cell: Cell) -> Path | None:
    """Write :func:`describe` of the cell's config (its grid overrides included) to
    ``<out_dir>/<name>.analysed.json``; ``None`` (and nothing written) when the config cannot
    be read (the cell then fails with the reason)."""
    try:
        desc = describe(_cell_config(cell))
    except Exception:  # noqa: BLE001 - never stop a run for the index's sake
        return None
    path = cell.path(SUFFIX)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(desc, indent=1))
    return path


def read_analysed(folder: str | os.PathLike, name: str) -> dict[str, Any] | None:
    """The description :func:`write_analysed` left for cell ``name`` in ``folder``, or None."""
    with contextlib.suppress(OSError, ValueError):
        data = json.loads((Path(folder) / f"{name}{SUFFIX}").read_text())
        if isinstance(data, Mapping) and "dataset" in data:
            return dict(data)
    return None


def analysed_html(desc: Mapping[str, Any]) -> str:
    """Two lines of HTML: the model(s) (name, source, file) and the data set (name, source,
    root, split, number of images)."""
    e = html.escape
    models = desc.get("models") or []
    lines = []
    for m in models:
        file = f' <code>{e(str(m["file"]))}</code>' if m.get("file") else ""
        label = "model" if len(models) == 1 else e(str(m.get("where", "model")))
        lines.append(f'<b>{label}</b> <span class="name">{e(str(m.get("name")))}</span> '
                     f'({e(str(m.get("source")))}){file}')
    d = desc.get("dataset") or {}
    n = d.get("images")
    count = f"{n} image{'s' if n != 1 else ''}" if n is not None else "images: ?"
    root = f' <code>{e(str(d["root"]))}</code>' if d.get("root") else ""
    split = f", split {e(str(d.get('split')))}" if d.get("split") is not None else ""
    err = f' <span class="failed">{e(str(d["error"]))}</span>' if d.get("error") else ""
    lines.append(f'<b>data</b> <span class="name">{e(str(d.get("name")))}</span> '
                 f'({e(str(d.get("source")))}){root}{split}, {count}{err}')
    return "<br>".join(lines)
