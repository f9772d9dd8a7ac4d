"""The default data and models of a configuration: where they live, building, loading, and
deciding what is stale.

The model modules (:mod:`lrpkit.models`, :mod:`lrpkit.fisher`) take their config *section*
(:class:`~lrpkit.config.CNNConfig`, :class:`~lrpkit.config.FisherConfig`) and explicit paths;
this module is the only place that turns a whole config into folders, files and models.  The
CLI (``lrpkit data|train|all``) calls it; notebooks use its loaders::

    from lrpkit import pipeline
    cfg = lrpkit.load_config(config)
    model = pipeline.load_cnn(cfg)                 # <paths.models>/cnn/cnn.pt (eval mode)
    clf = pipeline.load_fisher(cfg)                # <paths.models>/fisher/fv.joblib
    ds = pipeline.load_scenes(cfg, "test")         # VOCDataset of <paths.scenes>
    root = pipeline.scenes_root(cfg)

Staleness: a trained model folder holds ``config-fingerprint.json``, :func:`fingerprint` of
the config it was trained from (the model's whole section as typed defaults + YAML, the data
sizes and preset, the seed, the scene folder and its format version).  A model is current when
that file equals the fingerprint of the config at hand.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Sequence

from .config import Config, as_config, resolve_path

__all__ = ["load_models", "SCENE_MARKER", "FINGERPRINT", "scenes_root", "models_root", "cnn_dir", "cnn_path",
           "fisher_path", "read_scene_marker", "scenes_current", "make_scenes", "fingerprint",
           "model_current", "write_fingerprint", "train_cnn_from_config", "fisher_classifier",
           "load_images", "fit_fisher_from_config", "train_models", "load_cnn", "load_fisher",
           "load_scenes"]

SCENE_MARKER = "lrpkit_scenes.json"
FINGERPRINT = "config-fingerprint.json"
MODEL_SECTIONS = ("cnn", "fisher")


def _log(msg: str) -> None:
    print(f"[lrpkit] {msg}", flush=True)


# ---------------------------------------------------------------------------------------------
# Where things live
# ---------------------------------------------------------------------------------------------
def scenes_root(cfg: Any) -> Path:
    """``paths.scenes`` as an absolute path (the generated scene set, VOC2007 layout)."""
    return resolve_path(as_config(cfg), "scenes")


def models_root(cfg: Any) -> Path:
    """``paths.models`` as an absolute path."""
    return resolve_path(as_config(cfg), "models")


def cnn_dir(cfg: Any) -> Path:
    """``<paths.models>/cnn``: ``cnn.pt``, ``cnn_epoch*.pt``, ``history.nc``, ``test_map.nc``."""
    return models_root(cfg) / "cnn"


def cnn_path(cfg: Any, epoch: int | None = None) -> Path:
    """The final CNN ``cnn.pt``, or the checkpoint after ``epoch`` epochs."""
    if epoch is None:
        return cnn_dir(cfg) / "cnn.pt"
    from .models.train import checkpoint_name

    return cnn_dir(cfg) / checkpoint_name(epoch)


def fisher_path(cfg: Any) -> Path:
    """``<paths.models>/fisher/fv.joblib``."""
    return models_root(cfg) / "fisher" / "fv.joblib"


# ---------------------------------------------------------------------------------------------
# Scenes
# ---------------------------------------------------------------------------------------------
def read_scene_marker(root: str | os.PathLike) -> dict | None:
    """The scene set's marker ``lrpkit_scenes.json`` (generation parameters, format version,
    classes) in ``root``, or ``None`` when absent or unreadable."""
    try:
        from .data.voc import read_scene_marker as _read  # the data layer's reader, once it exists
    except ImportError:
        _read = None
    if _read is not None:
        return _read(root)
    try:
        meta = json.loads((Path(root) / SCENE_MARKER).read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def _marker_preset(meta: dict) -> str:
    params = meta.get("params", meta)
    return str(params.get("preset", meta.get("preset", "easy")))


def scenes_current(cfg: Any) -> bool:
    """Whether the scenes folder holds a generation with the config's sizes, preset and seed."""
    cfg = as_config(cfg)
    meta = read_scene_marker(scenes_root(cfg))
    if meta is None:
        return False
    from .data.scenes import FORMAT_VERSION

    want = {**{k: cfg.data[k] for k in ("n_train", "n_val", "n_test")}, "seed": cfg.seed}
    params = meta.get("params", meta)
    return (meta.get("version") == FORMAT_VERSION and all(params.get(k) == v for k, v in want.items())
            and _marker_preset(meta) == cfg.data.preset)


def make_scenes(cfg: Any, force: bool = False) -> Path:
    """Generate the config's scene set into ``paths.scenes`` unless it is current (or ``force``).

    Never replaces a non-empty folder that holds no generated scene set (a VOC devkit, say).
    """
    import inspect

    from .data import generate_scenes

    cfg = as_config(cfg)
    root = scenes_root(cfg)
    if not force and scenes_current(cfg):
        _log(f"scenes up to date in {root}")
        return root
    if root.is_dir() and any(root.iterdir()) and not (root / SCENE_MARKER).is_file():
        raise FileExistsError(
            f"paths.scenes = {root} is a non-empty folder that holds no generated scene set "
            f"(no {SCENE_MARKER}); lrpkit will not overwrite it. Point paths.scenes elsewhere, or "
            f"remove the folder yourself.")
    t0 = time.perf_counter()
    d = cfg.data
    kw = {}
    if "preset" in inspect.signature(generate_scenes).parameters:
        kw["preset"] = d.preset
    elif d.preset != "easy":
        raise ValueError(f"data.preset = {d.preset!r}, but this lrpkit generates only 'easy' scenes")
    generate_scenes(root, n_train=d.n_train, n_val=d.n_val, n_test=d.n_test, seed=cfg.seed,
                    overwrite=True, **kw)
    _log(f"generated scenes in {root} ({time.perf_counter() - t0:.1f} s)")
    return root


def load_scenes(cfg: Any, split: str = "test", **kwargs: Any):
    """:class:`lrpkit.data.VOCDataset` of one split of the config's scene set."""
    from .data import VOCDataset

    return VOCDataset(scenes_root(cfg), split, **kwargs)


def load_images(root: str | os.PathLike, split: str) -> tuple[list, Any, list[str]]:
    """``(PIL images, multi-hot labels (N, C), class names)`` of a VOC split.

    ``"trainval"`` falls back to ``train`` + ``val`` when the dataset has no such split.
    """
    import numpy as np

    from .data import VOCDataset

    def one(s):
        ds = VOCDataset(root, s)
        imgs = [ds[i][0] for i in range(len(ds))]
        names = list(getattr(ds, "classes", None) or getattr(ds, "class_names", None) or [])
        return imgs, np.asarray(ds.labels), names

    try:
        return one(split)
    except (ValueError, FileNotFoundError, KeyError):
        if split != "trainval":
            raise
        a, b = one("train"), one("val")
        return a[0] + b[0], np.concatenate([a[1], b[1]], 0), a[2]


# ---------------------------------------------------------------------------------------------
# Staleness
# ---------------------------------------------------------------------------------------------
#: config keys that change only how fast a model is fitted, never its numbers (tested)
_SPEED_ONLY = {"fisher": ("n_jobs",)}


def fingerprint(cfg: Any, section: str) -> dict:
    """What a trained model depends on: its whole config section (typed defaults + YAML;
    without the speed-only keys such as ``fisher.n_jobs``), the data sizes and preset, the
    seed, the scene folder and its format version."""
    cfg = as_config(cfg)
    if section not in MODEL_SECTIONS:
        raise ValueError(f"section must be one of {MODEL_SECTIONS}, got {section!r}")
    root = scenes_root(cfg)
    params = {k: v for k, v in cfg[section].to_dict().items() if k not in _SPEED_ONLY.get(section, ())}
    return {"section": section, "params": params,
            "data": {k: cfg.data[k] for k in ("n_train", "n_val", "n_test", "preset")},
            "seed": cfg.seed, "scenes": str(root),
            "scenes_version": (read_scene_marker(root) or {}).get("version")}


def model_current(cfg: Any, section: str, path: str | os.PathLike | None = None) -> bool:
    """Whether the model file (default: the config's) exists and was trained from the
    config's current section and data."""
    cfg = as_config(cfg)
    path = Path(path) if path is not None else (cnn_path(cfg) if section == "cnn" else fisher_path(cfg))
    fp = path.parent / FINGERPRINT
    if not path.is_file() or not fp.is_file():
        return False
    try:
        return json.loads(fp.read_text()) == json.loads(json.dumps(fingerprint(cfg, section)))
    except ValueError:
        return False


def write_fingerprint(cfg: Any, section: str, folder: str | os.PathLike) -> Path:
    """Write :func:`fingerprint` to ``folder/config-fingerprint.json`` (atomically)."""
    from .results import atomic_path

    path = Path(folder) / FINGERPRINT
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(fingerprint(cfg, section), indent=2, sort_keys=True) + "\n")
    return path


# ---------------------------------------------------------------------------------------------
# Training / fitting the default models
# ---------------------------------------------------------------------------------------------
def train_cnn_from_config(cfg: Any = None, *, progress: bool = True, **overrides: Any):
    """Train the scene CNN of a config: data ``paths.scenes``, files to ``<paths.models>/cnn``,
    settings ``cfg.cnn`` (keyword ``overrides`` win), seed ``cfg.seed``.  Returns the
    :class:`lrpkit.models.TrainResult`."""
    from .models.train import cnn_params, train_cnn

    cfg = as_config(cfg)
    try:
        params = cnn_params(cfg.cnn, **overrides)
    except TypeError as exc:
        raise ValueError(str(exc)) from None
    return train_cnn(scenes_root(cfg), cnn_dir(cfg), params, seed=cfg.seed, progress=progress,
                     config=cfg)


def fisher_classifier(cfg: Any, class_names: Sequence[str] | None = None):
    """An unfitted :class:`~lrpkit.fisher.FisherVectorClassifier` from ``cfg.fisher``."""
    from .fisher.classifier import FisherVectorClassifier

    cfg = as_config(cfg)
    return FisherVectorClassifier.from_config(cfg.fisher, class_names=class_names,
                                              random_state=cfg.seed)


def fit_fisher_from_config(cfg: Any = None, *, save: bool = True):
    """Fit the config's Fisher-vector model on the scenes' ``trainval`` split; with ``save``
    write it to :func:`fisher_path` and its test AP to ``test_map.nc`` beside it."""
    from .fisher.classifier import evaluate, save_fisher

    cfg = as_config(cfg)
    root = scenes_root(cfg)
    if not root.exists():
        raise FileNotFoundError(f"scenes folder {root} does not exist; generate the data first")
    imgs, Y, names = load_images(root, "trainval")
    clf = fisher_classifier(cfg, class_names=names or None).fit(imgs, Y)
    if save:
        path = fisher_path(cfg)
        save_fisher(clf, path)
        import numpy as np

        from .data import VOCDataset

        try:
            test = VOCDataset(root, "test")
        except (ValueError, FileNotFoundError):
            pass  # a data set without a test split: nothing to score
        else:
            evaluate(clf, [test[i][0] for i in range(len(test))], np.asarray(test.labels),
                     path=path.with_name("test_map.nc"), config=cfg, difficult=test.ignore)
    return clf


def train_models(cfg: Any, only: Sequence[str] = MODEL_SECTIONS, force: bool = False) -> None:
    """Train / fit the default models named in ``only`` that are stale (or all, ``force``)."""
    cfg = as_config(cfg)
    unknown = set(only) - set(MODEL_SECTIONS)
    if unknown:
        raise ValueError(f"unknown model(s) {sorted(unknown)}; choose from {MODEL_SECTIONS}")
    if "cnn" in only:
        if force or not model_current(cfg, "cnn"):
            t0 = time.perf_counter()
            res = train_cnn_from_config(cfg)
            write_fingerprint(cfg, "cnn", cnn_dir(cfg))
            _log(f"trained CNN ({time.perf_counter() - t0:.1f} s): {res}")
        else:
            _log(f"CNN up to date in {cnn_dir(cfg)}")
    if "fisher" in only:
        if force or not model_current(cfg, "fisher"):
            t0 = time.perf_counter()
            res = fit_fisher_from_config(cfg)
            write_fingerprint(cfg, "fisher", fisher_path(cfg).parent)
            _log(f"trained Fisher-vector classifier ({time.perf_counter() - t0:.1f} s): {res}")
        else:
            _log(f"Fisher-vector model up to date in {fisher_path(cfg).parent}")


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------
def load_cnn(cfg: Any, epoch: int | None = None, map_location: str = "cpu"):
    """The config's trained scene CNN (eval mode; ``model.meta``), or an epoch's checkpoint."""
    from .models.cnn import load_cnn as _load

    return _load(cnn_path(cfg, epoch), map_location=map_location)


def load_fisher(cfg: Any):
    """The config's fitted :class:`~lrpkit.fisher.FisherVectorClassifier`."""
    from .fisher.classifier import load_fisher as _load

    return _load(fisher_path(cfg))


def load_models(cfg: Any) -> tuple[Any, Any, list[str]]:
    """``(cnn, fv, classes)``: the config's CNN and Fisher-vector model, checked to share one
    class order (the notebooks compare them class by class)."""
    cnn, fv = load_cnn(cfg), load_fisher(cfg)
    classes = [str(c) for c in fv.class_names_]
    if [str(c) for c in cnn.classes] != classes:
        raise ValueError(f"the CNN's classes {list(cnn.classes)} differ from the Fisher-vector "
                         f"model's {classes}: retrain one of them on the same scenes")
    return cnn, fv, classes
