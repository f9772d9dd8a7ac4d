"""Training and evaluation of the scene CNN as in Lapuschkin et al. 2016, App. E.

Lapuschkin et al. (2016, App. E) retrain the BVLC reference net **multi-label** (not competitive
multi-class, since several classes can be present in one image) with **the sum of hinge
losses over all classes** (:func:`hinge_loss`), on **10 views per training image** (4 corner
crops + 1 centre crop of the edge-padded square image, and their mirrors) and score a test
image on **one centre crop** (:mod:`lrpkit.data.transforms`).  :func:`train_cnn` does the same
for :class:`~lrpkit.models.cnn.SceneCNN` on a VOC-layout folder:

* every split is decoded and padded **once** into a ``uint8`` tensor in memory; each step draws
  one of the 10 views per image from a seeded generator;
* optimiser: Adam (default; reached the target mAP in the fewest epochs on the bias-zoo
  scenes) or SGD with Nesterov momentum (``optimizer="sgd"``; Lapuschkin et al. 2016
  used SGD with base learning rate 0.001 for fine-tuning), with a short linear warm-up and cosine decay per step;
* checkpoints ``cnn_epoch{e:03d}.pt`` after the epochs in ``checkpoints`` (``0`` = the
  untrained initialisation) and the final ``cnn.pt``, so that later analyses can relate
  heatmap quality to training progress;
* a history Dataset ``history.nc`` (dims ``epoch``, ``class``) and the test result
  ``test_map.nc`` (:func:`evaluate_map`), written with :func:`lrpkit.results.save_dataset`.

Everything is deterministic given ``seed`` (seeded generators, ``torch.manual_seed`` inside a
forked RNG state, ``torch.use_deterministic_algorithms`` during training) on a fixed number of
threads.
"""
from __future__ import annotations

import copy
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from collections.abc import Mapping, Sequence

import numpy as np
import torch
import xarray as xr
from torch import nn

from .._average_precision import mean_average_precision
from .._geometry import input_geometry
from ..config import CNNConfig
from ..data import VOCDataset
from ..data import transforms as T
from ..inputs import eval_mode
from ..results import atomic_dir, make_attrs, save_dataset
from .cnn import SceneCNN, save_cnn

__all__ = ["hinge_loss", "evaluate_map", "train_cnn", "cnn_params", "TrainResult",
           "SplitData", "load_split", "TRAIN_DEFAULTS", "checkpoint_name"]

#: Defaults of :func:`train_cnn`: those of :class:`lrpkit.config.CNNConfig` (read-only copy).
TRAIN_DEFAULTS: dict[str, Any] = CNNConfig().to_dict()


def checkpoint_name(epoch: int) -> str:
    """File name of the checkpoint after ``epoch`` epochs: ``cnn_epoch{epoch:03d}.pt``."""
    return f"cnn_epoch{int(epoch):03d}.pt"


def hinge_loss(scores: torch.Tensor, labels: torch.Tensor,
               ignore: torch.Tensor | None = None) -> torch.Tensor:
    """Multi-label hinge loss of Lapuschkin et al. 2016, App. E, averaged over the batch.

    ``L = mean_n sum_c max(0, 1 - y_nc f_c(x_n))`` with ``y = 2 * labels - 1`` in ``{-1, +1}``.

    Parameters
    ----------
    scores : ``(N, C)`` raw class scores ``f_c(x_n)``.
    labels : ``(N, C)`` multi-hot targets in ``{0, 1}`` (or already ``{-1, +1}``).
    ignore : optional ``(N, C)`` bool; ``True`` entries (VOC "difficult only") add no loss.
    """
    if scores.shape != labels.shape or scores.ndim != 2:
        raise ValueError(f"scores and labels must both be (N, C), got {tuple(scores.shape)} "
                         f"and {tuple(labels.shape)}")
    labels = labels.to(scores.dtype)
    y = labels if bool((labels < 0).any()) else 2.0 * labels - 1.0
    per = torch.clamp(1.0 - y * scores, min=0.0)
    if ignore is not None:
        if ignore.shape != scores.shape:
            raise ValueError(f"ignore must have shape {tuple(scores.shape)}, got {tuple(ignore.shape)}")
        per = per.masked_fill(ignore.bool(), 0.0)
    return per.sum(dim=1).mean()


# --------------------------------------------------------------------------- data


@dataclass
class SplitData:
    """One split preprocessed once: ``images`` uint8 ``(N, 3, S, S)``, ``labels`` float32
    ``(N, C)``, image ``ids`` and ``classes``."""

    images: torch.Tensor
    labels: torch.Tensor
    ids: list[str]
    classes: list[str]
    split: str = ""
    ignore: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.images.shape[0])


def load_split(source: Any, split: str, *, classes: Sequence[str] | None = None,
               size: int = T.DEFAULT_SIZE, progress: bool = False) -> SplitData:
    """Preprocess one split of ``source`` once into memory (Lapuschkin et al. 2016, App. E padding).

    ``source`` is a VOC-layout folder (read with :class:`lrpkit.data.VOCDataset`), a mapping
    ``{split: dataset}``, a dataset object (``ds[i] -> (PIL image, {"labels": ...})``), or a
    :class:`SplitData` (returned as is).
    """
    if isinstance(source, (str, os.PathLike)):
        root = Path(source)
        if not root.is_dir():
            raise FileNotFoundError(f"no data folder at {root} (generate scenes with "
                                    "lrpkit.data.generate_scenes(root) or point to a VOC2007 devkit)")
        ds = VOCDataset(root, split, classes=list(classes) if classes is not None else None)
    elif isinstance(source, Mapping):
        if split not in source:
            raise ValueError(f"split {split!r} not in the given datasets {sorted(source)}")
        ds = source[split]
    else:
        ds = source
    if isinstance(ds, SplitData):
        if ds.images.shape[-1] != size:
            raise ValueError(f"preprocessed split {split!r} has size {ds.images.shape[-1]}, expected {size}")
        return ds
    if not hasattr(ds, "__getitem__") or not hasattr(ds, "__len__"):
        raise TypeError(f"dataset_or_root must be a folder, a dataset or a mapping of datasets, "
                        f"got {type(ds).__name__}")
    images, labels = T.preprocess_dataset(ds, size, progress=progress)
    n, c = labels.shape if labels.ndim == 2 else (len(ds), 0)
    ids = [str(i) for i in getattr(ds, "ids", range(n))]
    ds_classes = getattr(ds, "classes", None)
    names = [str(x) for x in (ds_classes if ds_classes is not None else
                              (classes if classes is not None else [f"class{i}" for i in range(c)]))]
    if len(names) != c:
        raise ValueError(f"split {split!r}: {len(names)} class names but labels have {c} columns")
    ignore = getattr(ds, "ignore", None)
    if ignore is not None:
        ignore = torch.as_tensor(np.asarray(ignore, dtype=bool))
        if tuple(ignore.shape) != tuple(labels.shape):
            ignore = None
    return SplitData(images, labels, ids, names, split, ignore)


@torch.no_grad()
def _scores(model: nn.Module, data: SplitData, crop: int, batch_size: int = 128,
            progress: bool = False) -> np.ndarray:
    with eval_mode(model):
        out = []
        starts = range(0, len(data), batch_size)
        if progress:
            from tqdm.auto import tqdm
            starts = tqdm(starts, desc=f"score {data.split}", leave=False)
        for s in starts:
            x = T.normalize(T.center_crop(data.images[s:s + batch_size], crop))
            out.append(model(x).float().cpu())
        n_out = out[0].shape[1] if out else data.labels.shape[1]
        return torch.cat(out).numpy() if out else np.zeros((0, n_out), np.float32)


def _ignore_np(data: SplitData) -> np.ndarray | None:
    return data.ignore.numpy() if data.ignore is not None else None


def evaluate_map(model: nn.Module, dataset_or_root: Any, split: str = "test", *,
                 classes: Sequence[str] | None = None, size: int | None = None, crop: int | None = None,
                 batch_size: int = 128, progress: bool = False,
                 config: Mapping[str, Any] | None = None) -> xr.Dataset:
    """Per-class average precision and mAP of ``model`` on one centre crop per image.

    Lapuschkin et al. (2016, App. E) score a test image with its centre crop only; AP is
    :func:`lrpkit.evaluate.metrics.average_precision` (non-interpolated; its module docstring
    documents the treatment of classes without positives, ``NaN`` and skipped by the mean, and
    of images marked ``ignore`` for a class, VOC's difficult-only pairs, left out of that
    class's AP).

    Returns an ``xr.Dataset`` with ``ap`` (``class``), ``n_positive`` (``class``),
    ``scores`` and ``labels`` (``image``, ``class``), the scalar ``mAP``, and attrs ``mAP``,
    ``split``, ``size``, ``crop``.  ``size`` / ``crop`` default to the model's checkpoint
    meta.  The model's train/eval mode is restored afterwards.
    """
    size, crop = input_geometry(model, size, crop)
    data = load_split(dataset_or_root, split, classes=classes, size=size, progress=progress)
    scores = _scores(model, data, crop, batch_size, progress)
    labels = data.labels.numpy()
    if scores.shape[1] != labels.shape[1]:
        raise ValueError(f"model gives {scores.shape[1]} scores but split {split!r} has "
                         f"{labels.shape[1]} classes {data.classes}")
    model_classes = (getattr(model, "meta", None) or {}).get("classes") or getattr(model, "classes", None)
    if model_classes is not None and list(model_classes) != list(data.classes):
        raise ValueError(f"the model's classes {list(model_classes)} differ from the data's "
                         f"{list(data.classes)} (order matters); pass classes=... to match")
    m_ap, ap = mean_average_precision(labels, scores, _ignore_np(data))
    ds = xr.Dataset(
        {"ap": ("class", ap), "n_positive": ("class", labels.sum(0).astype(np.int64)),
         "scores": (("image", "class"), scores.astype(np.float32)),
         "labels": (("image", "class"), labels.astype(np.float32)),
         "mAP": ((), m_ap)},
        coords={"class": np.array(data.classes, dtype=str), "image": np.array(data.ids, dtype=str)},
        attrs=make_attrs(config, mAP=m_ap, split=split, size=size, crop=crop,
                         metric="lrpkit.evaluate.metrics.average_precision, centre crop "
                                "(Lapuschkin et al. 2016, App. E)"),
    )
    ds["ap"].attrs["description"] = "average precision per class"
    return ds


# --------------------------------------------------------------------------- training


@dataclass
class TrainResult:
    """What :func:`train_cnn` returns: the trained ``model`` (eval mode), its ``history``
    (``xr.Dataset``, dim ``epoch``), ``test_map`` (:func:`evaluate_map` on the test split, or
    ``None``), the files written and the pure training time in seconds."""

    model: SceneCNN
    history: xr.Dataset
    test_map: xr.Dataset | None
    out_dir: Path
    final_path: Path
    checkpoints: dict[int, Path] = field(default_factory=dict)
    train_time_s: float = 0.0

    @property
    def mAP(self) -> float:
        """Test mean AP (NaN without a test split)."""
        return float(self.test_map.attrs["mAP"]) if self.test_map is not None else float("nan")

    def __repr__(self) -> str:
        return (f"TrainResult(epochs={int(self.history.sizes.get('epoch', 0))}, test mAP={self.mAP:.3f}, "
                f"train_time={self.train_time_s:.1f}s, out_dir={str(self.out_dir)!r})")


def _train_forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``model(x)`` for training, with each ``ReLU -> MaxPool2d`` of ``model.features`` run as
    ``MaxPool2d -> ReLU``: the same function and gradients (max-pooling and the ReLU commute,
    ``max(relu(a)) = relu(max(a))``, and the pooled winner is the same element), with the ReLU and
    its backward on a quarter of the elements (about 15 % of a training step on 2 CPU cores).
    The model itself is not changed: it keeps the layer order LRP and the checkpoints see."""
    feats = getattr(model, "features", None)
    if not isinstance(feats, nn.Sequential) or not hasattr(model, "classifier"):
        return model(x)
    layers = list(feats)
    i = 0
    while i < len(layers):
        layer = layers[i]
        nxt = layers[i + 1] if i + 1 < len(layers) else None
        if type(layer) is nn.ReLU and type(nxt) is nn.MaxPool2d:
            x = layer(nxt(x))
            i += 2
            continue
        x = layer(x)
        i += 1
    return model.classifier(model.avgpool(x))


def _lr_lambda(total_steps: int, warmup_steps: int):
    def f(step: int) -> float:
        if warmup_steps > 0 and step < warmup_steps:
            return (step + 1) / warmup_steps
        t = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, t)))
    return f


def _history_dataset(rows: list[dict], val_ap: list[np.ndarray], classes: list[str],
                     attrs: dict) -> xr.Dataset:
    epochs = np.array([r["epoch"] for r in rows], dtype=np.int64)
    data = {k: ("epoch", np.array([r[k] for r in rows], dtype=np.float64))
            for k in ("train_loss", "val_map", "lr", "epoch_time_s", "time_s")}
    ap = np.stack(val_ap) if val_ap else np.zeros((0, len(classes)))
    data["val_ap"] = (("epoch", "class"), ap)
    ds = xr.Dataset(data, coords={"epoch": epochs, "class": np.array(classes, dtype=str)}, attrs=attrs)
    ds["train_loss"].attrs["description"] = "mean multi-label hinge loss over the epoch's steps"
    ds["time_s"].attrs["description"] = "cumulative training time (s), evaluation excluded"
    return ds


def cnn_params(params: CNNConfig | Mapping[str, Any] | None = None, **overrides: Any) -> CNNConfig:
    """The training settings as a :class:`~lrpkit.config.CNNConfig`: ``params`` (a section, a
    mapping of some of its keys, or ``None`` for the defaults) with ``overrides`` on top.

    Raises ``TypeError`` for a key the section does not have (naming the allowed ones) or a
    value of the wrong type.
    """
    if params is None:
        p = CNNConfig()
    elif isinstance(params, CNNConfig):
        p = copy.deepcopy(params)
    elif isinstance(params, Mapping):
        try:
            p = CNNConfig.from_mapping(params)
        except ValueError as exc:
            raise TypeError(str(exc)) from None
    else:
        raise TypeError(f"params must be a CNNConfig or a mapping, got {type(params).__name__}")
    for k, v in overrides.items():
        try:
            p[k] = v
        except KeyError as exc:
            raise TypeError(exc.args[0]) from None
    return p


def train_cnn(data_root: Any, out_dir: str | os.PathLike, params: CNNConfig | Mapping[str, Any] | None = None,
              *, seed: int = 0, progress: bool = True, config: Mapping[str, Any] | None = None,
              **overrides: Any) -> TrainResult:
    """Train a :class:`SceneCNN` with the multi-label hinge loss of Lapuschkin et al. 2016, App. E.

    Parameters
    ----------
    data_root : VOC-layout folder (e.g. from :func:`lrpkit.data.generate_scenes`), or a
        mapping ``{split: dataset}`` of VOC-style datasets.
    out_dir : where ``cnn_epoch{e:03d}.pt``, ``cnn.pt``, ``history.nc`` and ``test_map.nc``
        are written (atomically).
    params : the ``cnn`` config section (:class:`lrpkit.config.CNNConfig`, whose defaults and
        field comments document every setting), a mapping of some of its keys, or ``None``.
    seed : seeds initialisation, shuffling, crop/mirror views and dropout.
    progress : tqdm progress bars.
    config : the whole configuration, recorded in the attrs of the written Datasets.
    **overrides : single ``CNNConfig`` fields on top of ``params`` (``epochs=3``, ...).

    The settings: ``epochs``, ``lr`` (peak rate of the warm-up + cosine schedule, ``warmup``
    = fraction of all steps), ``batch_size``; ``checkpoints`` (epochs after which a checkpoint
    is kept, ``0`` = before training; the last epoch is always saved, also as ``cnn.pt``);
    ``classes`` (subset / order of classes, default all); ``optimizer`` ``"adam"`` or
    ``"sgd"`` (Nesterov, ``momentum``); ``size``, ``crop`` (:mod:`lrpkit.data.transforms`);
    ``width``, ``mult``, ``convs_per_stage``, ``hidden``, ``dropout`` (:class:`SceneCNN`);
    ``num_threads`` (torch intra-op threads while training, restored afterwards);
    ``train_split``, ``val_split``, ``test_split`` (``None`` skips validation / test);
    ``deterministic`` (``torch.use_deterministic_algorithms`` while training);
    ``channels_last`` (train in channels-last memory format, faster on CPU; the returned model
    and the checkpoints are ordinary contiguous tensors).
    """
    p = cnn_params(params, **overrides)
    if int(p.epochs) < 1:
        raise ValueError(f"epochs must be >= 1, got {p.epochs!r}")
    if float(p.lr) <= 0:
        raise ValueError(f"lr must be > 0, got {p.lr!r}")
    if int(p.batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {p.batch_size!r}")
    if p.optimizer not in ("adam", "sgd"):
        raise ValueError(f"optimizer must be 'adam' or 'sgd', got {p.optimizer!r}")
    if int(p.crop) > int(p.size):
        raise ValueError(f"crop={p.crop} must not exceed size={p.size}")
    epochs, batch_size, seed = int(p.epochs), int(p.batch_size), int(seed)
    ckpt_epochs = sorted({int(e) for e in (p.checkpoints or ()) if 0 <= int(e) <= epochs} | {epochs})
    final_dir = Path(out_dir)
    # everything is written to a fresh folder beside out_dir and swapped into place at the end:
    # no checkpoints of an earlier run mix with this one's, and a crash leaves out_dir as it was
    with atomic_dir(final_dir) as work:
        return _train(work, final_dir, data_root, p.classes, progress, epochs, p.lr, batch_size, seed,
                      ckpt_epochs, p.optimizer, p.momentum, p.weight_decay, p.warmup, p.size, p.crop,
                      p.width, tuple(p.mult), p.convs_per_stage, p.hidden, p.dropout, p.num_threads,
                      p.train_split, p.val_split, p.test_split, p.deterministic, p.channels_last,
                      config)


def _train(out_dir, final_dir, data_root, classes, progress, epochs, lr, batch_size, seed,
           ckpt_epochs, optimizer, momentum, weight_decay, warmup, size, crop, width, mult,
           convs_per_stage, hidden, dropout, num_threads, train_split, val_split, test_split,
           deterministic, channels_last, config) -> TrainResult:
    """The training loop of :func:`train_cnn`, writing to ``out_dir`` (paths in the result
    point into ``final_dir``, where the caller moves the folder)."""
    train = load_split(data_root, train_split, classes=classes, size=size, progress=progress)
    val = load_split(data_root, val_split, classes=classes, size=size) if val_split else None
    test = load_split(data_root, test_split, classes=classes, size=size) if test_split else None
    class_names = train.classes
    n_classes = len(class_names)
    if len(train) == 0:
        raise ValueError(f"split {train_split!r} of {data_root} is empty")

    hparams = {"epochs": epochs, "lr": float(lr), "batch_size": batch_size, "seed": seed,
               "optimizer": optimizer, "momentum": float(momentum), "weight_decay": float(weight_decay),
               "warmup": float(warmup), "size": int(size), "crop": int(crop), "width": int(width),
               "mult": [int(m) for m in mult], "convs_per_stage": int(convs_per_stage),
               "hidden": int(hidden), "dropout": float(dropout), "train_split": train_split,
               "val_split": val_split, "test_split": test_split, "n_train": len(train)}
    base_meta = {"classes": class_names, "input_size": int(crop), "size": int(size),
                 "mean": list(T.MEAN), "std": list(T.STD), "seed": seed,
                 "loss": "multi-label hinge (Lapuschkin et al. 2016, App. E)", "train": hparams}

    old_threads = torch.get_num_threads()
    old_det = torch.are_deterministic_algorithms_enabled()
    written: dict[int, Path] = {}
    rows: list[dict] = []
    val_aps: list[np.ndarray] = []
    try:
        if num_threads:
            torch.set_num_threads(int(num_threads))
        if deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = SceneCNN(n_classes, width=width, mult=mult, convs_per_stage=convs_per_stage,
                             hidden=hidden, dropout=dropout, input_size=crop, classes=class_names)
            if channels_last:  # faster CPU convolutions; converted back after training
                model = model.to(memory_format=torch.channels_last)
            gen = torch.Generator().manual_seed(seed + 1)
            steps_per_epoch = math.ceil(len(train) / batch_size)
            total = steps_per_epoch * epochs
            if optimizer == "adam":
                opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
            else:
                opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum,
                                      weight_decay=weight_decay, nesterov=True)
            sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(total, int(round(warmup * total))))

            def _save(epoch: int, val_map: float) -> None:
                meta = dict(base_meta, epoch=epoch, val_map=val_map)
                p = save_cnn(model, out_dir / checkpoint_name(epoch), meta)
                written[epoch] = p

            if 0 in ckpt_epochs:
                _save(0, float("nan"))

            it = range(1, epochs + 1)
            bar = None
            if progress:
                from tqdm.auto import tqdm
                bar = tqdm(it, desc="train cnn", unit="epoch")
                it = bar
            elapsed = 0.0
            for epoch in it:
                t0 = time.perf_counter()
                model.train()
                perm = torch.randperm(len(train), generator=gen)
                loss_sum, n_seen = 0.0, 0
                for s in range(0, len(train), batch_size):
                    idx = perm[s:s + batch_size]
                    x = T.train_views_batch(train.images[idx], crop, generator=gen)
                    if channels_last:
                        x = x.contiguous(memory_format=torch.channels_last)
                    loss = hinge_loss(_train_forward(model, x), train.labels[idx],
                                      train.ignore[idx] if train.ignore is not None else None)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    sched.step()
                    loss_sum += float(loss.detach()) * len(idx)
                    n_seen += len(idx)
                dt = time.perf_counter() - t0
                elapsed += dt
                model.eval()
                if val is not None and len(val):
                    v_map, ap = mean_average_precision(val.labels.numpy(), _scores(model, val, crop),
                                                       _ignore_np(val))
                else:
                    ap, v_map = np.full(n_classes, np.nan), float("nan")
                rows.append({"epoch": epoch, "train_loss": loss_sum / n_seen, "val_map": v_map,
                             "lr": opt.param_groups[0]["lr"], "epoch_time_s": dt, "time_s": elapsed})
                val_aps.append(ap)
                if bar is not None:
                    bar.set_postfix(loss=f"{loss_sum / n_seen:.3f}", val_mAP=f"{v_map:.3f}")
                if epoch in ckpt_epochs:
                    _save(epoch, v_map)
    finally:
        torch.set_num_threads(old_threads)
        torch.use_deterministic_algorithms(old_det)

    model = model.to(memory_format=torch.contiguous_format).eval()
    final_meta = dict(base_meta, epoch=epochs, val_map=rows[-1]["val_map"])
    final_path = save_cnn(model, out_dir / "cnn.pt", final_meta)
    model.meta = dict(final_meta)
    attrs = make_attrs(config, **{k: v for k, v in hparams.items() if v is not None},
                       train_time_s=elapsed, checkpoints=[str(written[e].name) for e in sorted(written)])
    history = _history_dataset(rows, val_aps, class_names, attrs)
    save_dataset(history, out_dir / "history.nc")
    test_map = None
    if test is not None:
        test_map = evaluate_map(model, test, test_split, config=config)
        test_map.attrs.update({"train_time_s": elapsed, "epochs": epochs, "seed": seed})
        save_dataset(test_map, out_dir / "test_map.nc")
    return TrainResult(model, history, test_map, final_dir, final_dir / final_path.name,
                       {e: final_dir / p.name for e, p in sorted(written.items())}, elapsed)
