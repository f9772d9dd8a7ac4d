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
that file equals the fingerprint of the config at hand and the files it records (``"files"``:
size and SHA-256 of each file the training wrote) are unchanged.  A generated scene set holds
``lrpkit_content.json`` (size and SHA-256 of every file, written after generation); the scenes
are current when the marker has the config's sizes, preset and seed and every file matches.
Checking the default scene set (11 000 files, 79 MB) takes about 0.15 s from the page cache.
A damaged file is named and rebuilt by ``lrpkit data`` / ``lrpkit train``, never "up to date";
folders written before these records are checked by reading them (whole JPEGs, loadable models)
and then given one.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any
from collections.abc import Sequence

from .config import as_config
from .layout import cnn_dir, cnn_path, fisher_path, models_root, scenes_root

__all__ = ["load_models", "SCENE_MARKER", "SCENE_CONTENT", "FINGERPRINT", "MODEL_FILES", "model_status",
           "scenes_status", "scene_damage", "write_scene_content", "rebuild_command", "scenes_root",
           "models_root", "cnn_dir", "cnn_path", "fisher_path", "read_scene_marker", "scenes_current",
           "make_scenes", "fingerprint",
           "model_current", "write_fingerprint", "train_cnn_from_config", "fisher_classifier",
           "load_images", "fit_fisher_from_config", "models_to_train", "needs_scenes", "train_models",
           "load_cnn", "load_fisher", "load_scenes"]

#: the scene set's marker file (:data:`lrpkit.data.voc.SCENE_MARKER`, which ``import lrpkit.data``
#: would load numpy, PIL and xarray for; the CLI imports this module and starts without them)
SCENE_MARKER = "lrpkit_scenes.json"
#: a scene set's content record: ``{"files": {relative path: [size, sha256]}}``
SCENE_CONTENT = "lrpkit_content.json"
FINGERPRINT = "config-fingerprint.json"
MODEL_SECTIONS = ("cnn", "fisher")
#: the files a model's training writes into its folder, recorded in its fingerprint (glob patterns)
MODEL_FILES = {"cnn": ("cnn.pt", "cnn_epoch*.pt", "history.nc", "test_map.nc"),
               "fisher": ("fv.joblib", "test_map.nc")}


def _log(msg: str) -> None:
    print(f"[lrpkit] {msg}", flush=True)


# Where things live: lrpkit.layout (scenes_root, models_root, cnn_dir, cnn_path, fisher_path,
# imported above), which lrpkit.sources reads too without importing this module (built on it).


# ---------------------------------------------------------------------------------------------
# Scenes
# ---------------------------------------------------------------------------------------------
def read_scene_marker(root: str | os.PathLike) -> dict | None:
    """The scene set's marker ``lrpkit_scenes.json`` (generation parameters, format version,
    classes) in ``root``, or ``None`` when absent or unreadable."""
    try:
        meta = json.loads((Path(root) / SCENE_MARKER).read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def _marker_preset(meta: dict) -> str:
    params = meta.get("params", meta)
    return str(params.get("preset", meta.get("preset", "easy")))


def rebuild_command(cfg: Any, command: str) -> str:
    """``lrpkit <command>`` with the config's ``--config`` (none for the built-in defaults), e.g.
    ``rebuild_command(cfg, "train --force --only cnn")``: what a damaged-file message suggests."""
    source = str(getattr(as_config(cfg), "source", "<defaults>"))
    name, _, rest = command.partition(" ")
    where = "" if source.startswith("<") else f" --config {source}"
    return f"lrpkit {name}{where}{' ' + rest if rest else ''}"


def write_scene_content(root: str | os.PathLike) -> Path:
    """Record the size and SHA-256 of every file of the scene set in ``root`` in
    ``lrpkit_content.json`` (atomically); :func:`scene_damage` checks it."""
    from ._integrity import tree_record
    from .results import atomic_path

    root = Path(root)
    rec = {"format": "lrpkit-content/1", "files": tree_record(root, exclude=[SCENE_CONTENT])}
    path = root / SCENE_CONTENT
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(rec, separators=(",", ":"), sort_keys=True) + "\n")
    return path


def scene_damage(root: str | os.PathLike, content: bool = True) -> str | None:
    """The first damaged or missing file of the scene set in ``root`` against its content record
    (``content=False``: sizes only), or ``None``.  A set without a record (generated before
    them) is checked for whole JPEGs (start and end markers: a truncated file has no end)."""
    from ._integrity import check_record, jpeg_looks_whole

    root = Path(root)
    rec_path = root / SCENE_CONTENT
    if not rec_path.is_file():
        images = root / "JPEGImages"
        for p in sorted(images.glob("*.jpg")) if images.is_dir() else ():
            if not jpeg_looks_whole(p):
                return f"{p} is damaged (not a whole JPEG: truncated or overwritten)"
        return None
    try:
        files = json.loads(rec_path.read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return f"{rec_path} is damaged (not a readable content record)"
    problem = check_record(root, files, content=content)
    return None if problem is None else f"{root}/{problem}"


def scenes_status(cfg: Any) -> str | None:
    """``None`` when the scenes folder holds a generation with the config's sizes, preset and
    seed whose files are as written; else why not (naming a damaged file)."""
    cfg = as_config(cfg)
    root = scenes_root(cfg)
    meta = read_scene_marker(root)
    if meta is None:
        return f"no generated scene set in {root}"
    from .data.scenes import FORMAT_VERSION

    want = {**{k: cfg.data[k] for k in ("n_train", "n_val", "n_test")}, "seed": cfg.seed}
    params = meta.get("params", meta)
    if not (meta.get("version") == FORMAT_VERSION and all(params.get(k) == v for k, v in want.items())
            and _marker_preset(meta) == cfg.data.preset):
        return f"the scene set in {root} was generated with other settings"
    return scene_damage(root)


def scenes_current(cfg: Any) -> bool:
    """Whether the scenes folder holds a generation with the config's sizes, preset and seed,
    its files unchanged since (:func:`scenes_status`)."""
    return scenes_status(cfg) is None


def make_scenes(cfg: Any, force: bool = False) -> Path:
    """Generate the config's scene set into ``paths.scenes`` unless it is current (or ``force``).

    Never replaces a non-empty folder that holds no generated scene set (a VOC devkit, say).
    A damaged file (:func:`scenes_status`) is named and the set generated again.
    """
    from .data import generate_scenes

    cfg = as_config(cfg)
    root = scenes_root(cfg)
    status = None if force else scenes_status(cfg)
    if not force and status is None:
        if not (root / SCENE_CONTENT).is_file():   # checked above by reading it: record it now
            write_scene_content(root)
        _log(f"scenes up to date in {root}")
        return root
    if root.is_dir() and any(root.iterdir()) and not (root / SCENE_MARKER).is_file():
        raise FileExistsError(
            f"paths.scenes = {root} is a non-empty folder that holds no generated scene set "
            f"(no {SCENE_MARKER}); lrpkit will not overwrite it. Point paths.scenes elsewhere, or "
            f"remove the folder yourself.")
    if status is not None and "damaged" in status:
        _log(f"{status}: generating the scene set again")
    t0 = time.perf_counter()
    d = cfg.data
    generate_scenes(root, n_train=d.n_train, n_val=d.n_val, n_test=d.n_test, seed=cfg.seed,
                    overwrite=True, preset=d.preset)
    write_scene_content(root)
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


def _model_path(cfg: Any, section: str, path: str | os.PathLike | None) -> Path:
    return Path(path) if path is not None else (cnn_path(cfg) if section == "cnn" else fisher_path(cfg))


def _legacy_model_damage(cfg: Any, section: str, folder: Path) -> str | None:
    """A model folder whose fingerprint records no files (written before the records): each
    model file is loaded; the first that fails is named."""
    from ._integrity import DamagedFile

    if section == "cnn":
        from .models.cnn import load_cnn as load
    else:
        from .fisher.classifier import load_fisher as load
    names = sorted({p.name for pat in MODEL_FILES[section] if pat.endswith((".pt", ".joblib"))
                    for p in folder.glob(pat)})
    for name in names:
        try:
            load(folder / name)
        except (DamagedFile, ValueError, TypeError) as exc:
            return str(exc).split("; rebuild it")[0]
    return None


def model_status(cfg: Any, section: str, path: str | os.PathLike | None = None) -> str | None:
    """``None`` when the model file (default: the config's) exists, was trained from the
    config's current section and data, and the files its training wrote are unchanged (sizes
    and SHA-256 in ``config-fingerprint.json``); else why not (naming a damaged file)."""
    from ._integrity import check_record

    cfg = as_config(cfg)
    path = _model_path(cfg, section, path)
    fp = path.parent / FINGERPRINT
    if not path.is_file():
        return f"{path} is missing"
    if not fp.is_file():
        return f"{fp} is missing"
    try:
        stored = json.loads(fp.read_text())
        files = stored.pop("files", None)
    except (ValueError, AttributeError):
        return f"{fp} is damaged (not readable JSON)"
    if stored != json.loads(json.dumps(fingerprint(cfg, section))):
        return f"{path} was trained from other settings or data"
    if files is None:
        return _legacy_model_damage(cfg, section, path.parent)
    if not isinstance(files, dict) or path.name not in files:
        return f"{fp} records no content of {path.name}"
    problem = check_record(path.parent, files)
    return None if problem is None else f"{path.parent}/{problem}"


def model_current(cfg: Any, section: str, path: str | os.PathLike | None = None) -> bool:
    """Whether the model file (default: the config's) exists, was trained from the config's
    current section and data, and is unchanged since (:func:`model_status`)."""
    return model_status(cfg, section, path) is None


def write_fingerprint(cfg: Any, section: str, folder: str | os.PathLike) -> Path:
    """Write :func:`fingerprint` and the size and SHA-256 of the model files in ``folder``
    (:data:`MODEL_FILES`) to ``folder/config-fingerprint.json`` (atomically)."""
    from ._integrity import files_record
    from .results import atomic_path

    path = Path(folder) / FINGERPRINT
    rec = {**fingerprint(cfg, section), "files": files_record(folder, MODEL_FILES[section])}
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(rec, indent=2, sort_keys=True) + "\n")
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
    """An unfitted :class:`~lrpkit.fisher.FisherVectorClassifier` (and encoder) from
    ``cfg.fisher``, seeded with ``cfg.seed``: the SVM keys ``C``, ``loss``, ``max_iter`` go to the
    classifier, the others to :class:`~lrpkit.fisher.FisherVectorEncoder`."""
    from .fisher import FisherVectorClassifier, FisherVectorEncoder

    cfg = as_config(cfg)
    sec = cfg.fisher
    svm_keys = ("C", "loss", "max_iter")
    enc_keys = set(FisherVectorEncoder().get_params(deep=False))
    unused = set(sec) - set(svm_keys) - enc_keys
    if unused:  # a new config field that no estimator takes: wire it up, never drop it
        raise ValueError(f"fisher config key(s) {sorted(unused)} are used by neither "
                         f"FisherVectorEncoder nor the SVMs")
    enc = FisherVectorEncoder(**{k: (tuple(v) if k == "bin_sizes" else v) for k, v in sec.items()
                                 if k in enc_keys and k != "random_state"}, random_state=cfg.seed)
    return FisherVectorClassifier(enc, **{k: sec[k] for k in svm_keys}, class_names=class_names,
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


def _model_entries(cfg: Any) -> list:
    """The config's ``models`` list, else ``[model]`` (:func:`lrpkit.sources.model_specs` without
    importing numpy: the CLI decides what to build before anything heavy is loaded)."""
    cfg = as_config(cfg)
    return list(cfg.models) if len(cfg.models) else [cfg.model]


def models_to_train(cfg: Any) -> tuple[str, ...]:
    """The default models (``"cnn"``, ``"fisher"``) a config asks lrpkit to build up front.

    ``cnn``: a ``scene_cnn`` model (``model`` or a ``models`` entry) without ``weights`` (its
    default file is what ``lrpkit train`` writes; with ``weights`` it is the user's checkpoint).
    ``fisher``: only on lrpkit's scenes (``dataset.source: scenes``), when a ``scene_cnn`` or
    ``fisher`` model without ``weights`` is analysed: the bias-zoo reports compare the scene CNN
    with the FV model (Lapuschkin et al. 2016).  A user's model on a user's data set trains
    nothing: notebooks that need an FV model fit it on ``dataset.train_split`` themselves.
    """
    cfg = as_config(cfg)
    own = [m.source for m in _model_entries(cfg) if m.weights in (None, "")]
    out = []
    if "scene_cnn" in own:
        out.append("cnn")
    if cfg.dataset.source == "scenes" and ({"scene_cnn", "fisher"} & set(own)):
        out.append("fisher")
    return tuple(out)


def needs_scenes(cfg: Any) -> bool:
    """Whether a config needs lrpkit's generated scenes: it analyses them (``dataset.source:
    scenes``) or a default model trained on them (:func:`models_to_train`)."""
    cfg = as_config(cfg)
    return cfg.dataset.source == "scenes" or bool(models_to_train(cfg))


def train_models(cfg: Any, only: Sequence[str] | None = None, force: bool = False) -> None:
    """Train / fit the default models named in ``only`` that are stale (or all, ``force``).

    ``only=None``: the ones the config asks for (:func:`models_to_train`), none for a user's
    model on a user's data set."""
    cfg = as_config(cfg)
    if only is None:
        only = models_to_train(cfg)
        if not only:
            _log("nothing to train: the config analyses "
                 + ", ".join(f"{m.name or m.arch or m.source} ({m.source})" for m in _model_entries(cfg)))
            return
    unknown = set(only) - set(MODEL_SECTIONS)
    if unknown:
        raise ValueError(f"unknown model(s) {sorted(unknown)}; choose from {MODEL_SECTIONS}")
    if "cnn" in only:
        status = None if force else model_status(cfg, "cnn")
        if force or status is not None:
            if status is not None and "damaged" in status:
                _log(f"{status}: training the CNN again")
            t0 = time.perf_counter()
            res = train_cnn_from_config(cfg)
            write_fingerprint(cfg, "cnn", cnn_dir(cfg))
            _log(f"trained CNN ({time.perf_counter() - t0:.1f} s): {res}")
        else:
            _adopt(cfg, "cnn", cnn_dir(cfg))
            _log(f"CNN up to date in {cnn_dir(cfg)}")
    if "fisher" in only:
        status = None if force else model_status(cfg, "fisher")
        if force or status is not None:
            if status is not None and "damaged" in status:
                _log(f"{status}: fitting the Fisher-vector model again")
            t0 = time.perf_counter()
            res = fit_fisher_from_config(cfg)
            write_fingerprint(cfg, "fisher", fisher_path(cfg).parent)
            _log(f"trained Fisher-vector classifier ({time.perf_counter() - t0:.1f} s): {res}")
        else:
            _adopt(cfg, "fisher", fisher_path(cfg).parent)
            _log(f"Fisher-vector model up to date in {fisher_path(cfg).parent}")


def _adopt(cfg: Any, section: str, folder: Path) -> None:
    """A current model folder whose fingerprint records no files yet (written before the
    records; checked by loading its files): record them now."""
    try:
        has_files = "files" in json.loads((folder / FINGERPRINT).read_text())
    except (OSError, ValueError, TypeError):
        return
    if not has_files:
        write_fingerprint(cfg, section, folder)


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------
def load_cnn(cfg: Any, epoch: int | None = None, map_location: str = "cpu"):
    """The config's trained scene CNN (eval mode; ``model.meta``), or an epoch's checkpoint."""
    from .models.cnn import load_cnn as _load

    return _load(cnn_path(cfg, epoch), map_location=map_location,
                 rebuild=rebuild_command(cfg, "train --force --only cnn"))


def load_fisher(cfg: Any):
    """The config's fitted :class:`~lrpkit.fisher.FisherVectorClassifier`."""
    from .fisher.classifier import load_fisher as _load

    return _load(fisher_path(cfg), rebuild=rebuild_command(cfg, "train --force --only fisher"))


def load_models(cfg: Any) -> tuple[Any, Any, list[str]]:
    """``(cnn, fv, classes)``: the config's CNN and Fisher-vector model, checked to share one
    class order (the notebooks compare them class by class)."""
    cnn, fv = load_cnn(cfg), load_fisher(cfg)
    classes = [str(c) for c in fv.class_names_]
    if [str(c) for c in cnn.classes] != classes:
        raise ValueError(f"the CNN's classes {list(cnn.classes)} differ from the Fisher-vector "
                         f"model's {classes}: retrain one of them on the same scenes")
    return cnn, fv, classes


# ---------------------------------------------------------------------------------------------
# PDA: the method's parameters for a model, the patch model of the training images
# ---------------------------------------------------------------------------------------------
#: the file of a fitted patch model: ``<paths.models>/pda/patch_w10_o18_<fingerprint digest>.npz``
PATCH_DIR = "pda"


def training_split(cfg: Any, dataset: Any = None):
    """The config's training split (``dataset.train_split``, all its images) or ``dataset``."""
    if dataset is not None:
        return dataset
    from .sources import load_dataset

    cfg = as_config(cfg)
    spec = cfg.dataset
    if spec.train_split is None:
        raise ValueError("dataset.train_split is not set: no training images to fit on")
    return load_dataset({**spec.to_dict(), "images": None}, cfg, split=spec.train_split,
                        where="dataset.train_split")


def pda_params(cfg: Any, model: Any, train: Any = None) -> dict[str, Any]:
    """``explain(..., method="pda")`` keyword arguments for a :class:`~lrpkit.sources.ModelSource`:
    ``cfg.pda``'s values, with ``prob`` from the model's output kind (``sigmoid`` per class for
    a multi-label model, ``softmax`` for a single-label one; Zhou & Kainz 2018, eq. 32) and the
    Laplace correction's ``laplace_n`` = the number of training images (Zintgraf et al. 2017,
    Sec. 3.1; ``train``: the training split, a :class:`~lrpkit.sources.DatasetSource`, or
    ``None``: no correction), unless the config sets them itself."""
    pc = as_config(cfg).pda
    params = pc.method_params()
    own = pc.overrides()
    if "prob" not in own:
        params["prob"] = model.prob
    if "laplace_n" not in own:
        params["laplace_n"] = len(train) if train is not None and len(train) else None
    return params


def patch_model_fingerprint(cfg: Any, model: Any, train: Any, *, window: int, outer: int,
                            joint_rgb: bool = False, marginal: bool = False) -> dict:
    """What a PDA patch model depends on: its sizes, the model's preprocessing (the input space
    the Gaussian lives in; not the weights), the fitting budget and seed, and the training
    images (ids and a SHA-256 of their files' bytes)."""
    import hashlib

    import numpy as np

    cfg = as_config(cfg)
    pc = cfg.pda
    idx = np.random.default_rng(cfg.seed).permutation(len(train))[:pc.patch_images]
    digest = hashlib.sha256()
    for i in sorted(int(i) for i in idx):
        digest.update(str(train.ids[i]).encode() + b"\0")
        digest.update(Path(train.paths[i]).read_bytes())
    fp = {"kind": "pda_patch_model", "window": int(window), "outer": int(outer),
          "joint_rgb": bool(joint_rgb), "marginal": bool(marginal), "input": repr(model.transform),
          "patch_images": pc.patch_images, "max_patches": pc.patch_max_patches, "seed": cfg.seed,
          "data": {"source": train.source, "root": str(train.root), "split": train.split,
                   "images": len(idx), "sha256": digest.hexdigest()}}
    return json.loads(json.dumps(fp, sort_keys=True))


def patch_model_path(cfg: Any, fp: dict) -> Path:
    """``<paths.models>/pda/patch_w<window>_o<outer>[_rgb][_marginal]_<digest>.npz`` for the
    fingerprint ``fp`` (:func:`patch_model_fingerprint`): one file per input space and data."""
    import hashlib

    from .pda import PatchModel

    base = PatchModel.default_path(models_root(cfg), fp["window"], fp["outer"], fp["joint_rgb"],
                                   fp["marginal"])
    digest = hashlib.sha256(json.dumps(fp, sort_keys=True).encode()).hexdigest()[:12]
    return base.with_name(f"{base.stem}_{digest}.npz")


def load_patch_model(cfg: Any, model: Any, *, train: Any = None, window: int | None = None,
                     outer: int | None = None, joint_rgb: bool | None = None,
                     marginal: bool | None = None, fit: bool = True):
    """The PDA patch model (Zintgraf et al. 2017, Sec. 3: a Gaussian over ``outer x outer``
    patches) for a :class:`~lrpkit.sources.ModelSource`'s input space, fitted on
    ``pda.patch_images`` random images of the training split (``train``, default
    ``dataset.train_split``; ``pda.patch_max_patches`` patches, seed ``cfg.seed``).

    Kept under ``<paths.models>/pda/`` (:func:`patch_model_path`) with its fingerprint
    (:func:`patch_model_fingerprint`) in the file; loaded when one matches, else fitted and saved
    (``fit=False``: ``FileNotFoundError`` instead).  Sizes default to ``cfg.pda``.  Notebook 05 and
    the explorer share the file.  Raises ``ValueError`` when the config names no training split,
    ``FileNotFoundError`` when its folder / list is missing.
    """
    from .pda import PatchModel

    cfg = as_config(cfg)
    pc = cfg.pda
    if not model.is_torch:
        raise TypeError(f"PDA needs a torch model; {model.name!r} ({model.source}) is not one")
    window = pc.window if window is None else window
    outer = pc.outer if outer is None else outer
    joint_rgb = pc.joint_rgb if joint_rgb is None else joint_rgb
    marginal = pc.marginal if marginal is None else marginal
    train = training_split(cfg, train)
    if not len(train):
        raise ValueError(f"the training split {train.split!r} of {train.name!r} holds no images")
    fp = patch_model_fingerprint(cfg, model, train, window=window, outer=outer,
                                 joint_rgb=joint_rgb, marginal=marginal)
    path = patch_model_path(cfg, fp)
    try:
        pm = PatchModel.load(path, model_meta=fp)
    except (FileNotFoundError, ValueError):
        if not fit:
            raise FileNotFoundError(f"no patch model fitted for this input space and data at "
                                    f"{path}") from None
    else:
        _log(f"patch model loaded from {path}")
        return pm
    import numpy as np

    t0 = time.perf_counter()
    idx = np.random.default_rng(cfg.seed).permutation(len(train))[:pc.patch_images]
    x = model.inputs(train.images([int(i) for i in idx]))
    pm = PatchModel(window, outer, joint_rgb=joint_rgb, marginal=marginal).fit(
        x, max_patches=pc.patch_max_patches, seed=cfg.seed)
    pm.save(path, meta=fp)
    _log(f"fitted the patch model on {len(idx)} images of {train.name}/{train.split} "
         f"({time.perf_counter() - t0:.1f} s): {path}")
    return pm


__all__ += ["training_split", "pda_params", "patch_model_fingerprint", "patch_model_path", "load_patch_model"]


# ---------------------------------------------------------------------------------------------
# The Fisher-vector model of the config's dataset (notebooks 01 and 03)
# ---------------------------------------------------------------------------------------------
#: ``<paths.models>/fisher/<dataset>_<train split>_<fingerprint digest>/fv.joblib``
FISHER_DIR = "fisher"


class NoTrainingSplit(FileNotFoundError):
    """The config's data has no training split to fit a model on (``dataset.train_split`` is not
    set, or its folder / list is missing): a report section that needs one is skipped."""


def _uses_default_scenes(cfg: Any) -> bool:
    """Whether the config analyses lrpkit's own scene set in ``paths.scenes`` (whose FV model
    ``lrpkit train`` fits: :func:`fisher_path`)."""
    cfg = as_config(cfg)
    return cfg.dataset.source == "scenes" and not cfg.dataset.root


def dataset_fisher_fingerprint(cfg: Any, train: Any) -> dict:
    """What the FV model of a dataset depends on: the ``fisher`` section (typed defaults + YAML,
    without the speed-only ``n_jobs``), the seed, and the training images (split, classes, ids,
    labels and a SHA-256 of the files' bytes)."""
    import hashlib

    import numpy as np

    cfg = as_config(cfg)
    digest = hashlib.sha256()
    for i, path in enumerate(train.paths):
        digest.update(str(train.ids[i]).encode() + b"\0")
        digest.update(Path(path).read_bytes())
    digest.update(np.ascontiguousarray(np.asarray(train.labels, np.float32)).tobytes())
    params = {k: v for k, v in cfg.fisher.to_dict().items() if k not in _SPEED_ONLY["fisher"]}
    fp = {"kind": "fisher_vector", "params": params, "seed": cfg.seed,
          "data": {"name": train.name, "source": train.source, "root": str(train.root),
                   "split": train.split, "classes": list(train.classes), "images": len(train),
                   "sha256": digest.hexdigest()}}
    return json.loads(json.dumps(fp, sort_keys=True))


def dataset_fisher_path(cfg: Any, fp: dict) -> Path:
    """``<paths.models>/fisher/<dataset>_<split>_<digest>/fv.joblib`` for the fingerprint ``fp``
    (:func:`dataset_fisher_fingerprint`): one model per data and FV settings."""
    import hashlib
    import re

    digest = hashlib.sha256(json.dumps(fp, sort_keys=True).encode()).hexdigest()[:12]
    data = fp["data"]
    slug = re.sub(r"[^A-Za-z0-9.-]+", "-", f"{data['name']}_{data['split']}").strip("-") or "data"
    return models_root(cfg) / FISHER_DIR / f"{slug}_{digest}" / "fv.joblib"


def load_dataset_fisher(cfg: Any, *, sources: Any = None, train: Any = None, fit: bool = True,
                        name: str = "FV"):
    """The Fisher-vector model (Lapuschkin et al. 2016, Sec. 4) for the config's dataset, as a
    :class:`~lrpkit.sources.ModelSource` named ``name``.

    * a ``fisher`` entry among the config's models (``sources``: the loaded
      :class:`~lrpkit.sources.Sources`, else the config's ``model`` / ``models``): that model;
    * lrpkit's scenes in ``paths.scenes``: the default FV model (:func:`fisher_path`, fitted by
      ``lrpkit train`` on ``trainval``; fitted here when missing);
    * any other dataset: an FV model with ``cfg.fisher``'s settings fitted on the training split
      (``train``, default ``dataset.train_split``, all its images), kept under
      ``<paths.models>/fisher/`` (:func:`dataset_fisher_path`) with its fingerprint
      (:func:`dataset_fisher_fingerprint`) beside it: loaded when one matches, else fitted and
      saved (``fit=False``: ``FileNotFoundError`` instead).

    Raises :class:`NoTrainingSplit` (a ``FileNotFoundError``) when the config names no training
    split or its folder / list is missing.
    """
    from .sources import load_model, model_specs

    cfg = as_config(cfg)
    if sources is not None:
        own = next((m for m in sources.models if m.source == "fisher"), None)
        if own is not None:
            return own
    else:
        for where, spec in model_specs(cfg):
            if spec.source == "fisher":
                return load_model(spec, cfg, where=where)
    if _uses_default_scenes(cfg):
        if not fisher_path(cfg).is_file():
            if not fit:
                raise FileNotFoundError(f"no Fisher-vector model at {fisher_path(cfg)}")
            train_models(cfg, only=("fisher",))
        return load_model({"source": "fisher", "name": name}, cfg)
    if train is None and cfg.dataset.train_split is None:
        raise NoTrainingSplit("dataset.train_split is not set: no training images to fit the "
                              "Fisher-vector model on")
    try:
        train = training_split(cfg, train)
    except FileNotFoundError as exc:
        raise NoTrainingSplit(f"dataset.train_split {cfg.dataset.train_split!r}: {exc}") from None
    if not len(train):
        raise NoTrainingSplit(f"the training split {train.split!r} of {train.name!r} holds no images")
    fp = dataset_fisher_fingerprint(cfg, train)
    path = dataset_fisher_path(cfg, fp)
    fp_file = path.parent / FINGERPRINT

    def current() -> bool:   # settings and data as recorded, fv.joblib as written
        from ._integrity import check_record

        if not (path.is_file() and fp_file.is_file()):
            return False
        try:
            stored = json.loads(fp_file.read_text())
            files = stored.pop("files", None)
        except (ValueError, AttributeError):
            return False
        return stored == fp and (files is None or check_record(path.parent, files) is None)

    if not current():
        if not fit:
            raise FileNotFoundError(f"no Fisher-vector model fitted for {train.name}/{train.split} "
                                    f"with these fisher settings at {path}")
        import fcntl

        from .fisher.classifier import save_fisher
        from .results import atomic_path

        path.parent.mkdir(parents=True, exist_ok=True)
        # notebooks 01 and 03 may run side by side: one fits, the other waits and loads
        with open(path.with_name("fit.lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not current():
                t0 = time.perf_counter()
                clf = fisher_classifier(cfg, class_names=list(train.classes)).fit(train.images(),
                                                                                 train.labels)
                save_fisher(clf, path)
                from ._integrity import files_record

                rec = {**fp, "files": files_record(path.parent, [path.name])}
                with atomic_path(fp_file) as tmp:
                    tmp.write_text(json.dumps(rec, indent=2, sort_keys=True) + "\n")
                _log(f"fitted the Fisher-vector model on {len(train)} images of {train.name}/"
                     f"{train.split} ({time.perf_counter() - t0:.1f} s): {path}")
            else:
                _log(f"Fisher-vector model loaded from {path} (fitted meanwhile)")
    else:
        _log(f"Fisher-vector model loaded from {path}")
    return load_model({"source": "fisher", "name": name, "weights": str(path)}, cfg,
                      classes=list(train.classes))


def available_fisher(cfg: Any, sources: Any):
    """The Fisher-vector model a report compares with, where the config has one, fitting nothing:
    a ``fisher`` entry among the models (``sources``: the loaded :class:`~lrpkit.sources.Sources`),
    or on lrpkit's scenes the default FV model once ``lrpkit train`` has fitted it
    (:func:`load_dataset_fisher` with ``fit=False``); ``None`` otherwise (a user's data: the FV
    models notebooks 01 / 03 fit on its training split are theirs, not a configured comparison)."""
    own = next((m for m in sources.models if m.source == "fisher"), None)
    if own is not None:
        return own
    if not _uses_default_scenes(cfg) or not fisher_path(cfg).is_file():
        return None
    return load_dataset_fisher(cfg, sources=sources, fit=False)


__all__ += ["NoTrainingSplit", "dataset_fisher_fingerprint", "dataset_fisher_path", "load_dataset_fisher",
            "available_fisher"]
