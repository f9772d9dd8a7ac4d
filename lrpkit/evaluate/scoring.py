"""Class scores and per-class average precision of several models on a test split and its twins.

The layout of Table 1 in Lapuschkin, Binder, Montavon, Müller and Samek, "Analyzing
Classifiers: Fisher Vectors and Deep Neural Networks" (CVPR 2016): AP per class for the
Fisher-vector model and the deep network, here on the bias-zoo test split and on its two
counterfactual twins (``test_swapped``: background drawn at random, ``test_untagged``: the
copyright tag removed), so that a drop of AP measures how much a model leans on a bias.

::

    from lrpkit.evaluate.scoring import load_twins, ap_by_split
    twins = load_twins("data/scenes", n_images=150, seed=0)       # same images in every split
    res = ap_by_split({"CNN": cnn, "FV": fv}, twins)              # xr.Dataset
    res.ap.sel(model="FV", split="test_swapped")                  # AP per class

A twin is found by its id: ``test_000123``, ``swapped_000123`` and ``untagged_000123`` share the
key ``000123`` (the part after the first ``_``).  AP is
:func:`lrpkit.evaluate.metrics.average_precision` (one treatment of classes without positives
and of VOC's difficult-only pairs for the whole package).
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from typing import Any
from collections.abc import Mapping, Sequence

import numpy as np
import torch
import xarray as xr

from .._geometry import input_geometry
from ..data import VOCDataset
from ..data import transforms as T
from ..inputs import model_scores
from .metrics import average_precision

__all__ = ["TWIN_SPLITS", "TwinSplits", "twin_key", "load_twins", "dataset_twins", "image_scores",
           "per_class_ap", "ap_by_split", "true_positive_pairs"]

TWIN_SPLITS = ("test", "test_swapped", "test_untagged")


def twin_key(image_id: str) -> str:
    """The part of an image id that a test image shares with its twins (after the first ``_``)."""
    return str(image_id).split("_", 1)[-1]


@dataclass
class TwinSplits:
    """The same test images in several splits (row ``i`` of every split shows one scene).

    ``keys``: the shared id part per row; per split: ``ids``, ``images`` (PIL images),
    ``labels`` and ``ignore`` (``(N, C)``: VOC's difficult-only pairs, left out of AP).
    ``splits`` lists the splits loaded (the first one is the reference).
    """

    splits: list[str]
    classes: list[str]
    keys: list[str]
    ids: dict[str, list[str]] = field(default_factory=dict)
    images: dict[str, list[Any]] = field(default_factory=dict)
    labels: dict[str, np.ndarray] = field(default_factory=dict)
    ignore: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.keys)

    def __repr__(self) -> str:
        return f"TwinSplits({len(self)} images x splits {self.splits}, classes {self.classes})"


def sample_rows(n: int, n_images: int | None, seed: int) -> np.ndarray:
    """Sorted indices of ``n_images`` of ``n`` images drawn without replacement from ``seed``
    (all ``n`` for ``None``): the one image sample of the twin splits."""
    if n_images is None:
        return np.arange(n)
    if int(n_images) < 1:
        raise ValueError(f"n_images must be >= 1 or None, got {n_images!r}")
    return np.sort(np.random.default_rng(seed).permutation(n)[:int(n_images)])


def load_twins(root: str | os.PathLike | Mapping[str, Any], splits: Sequence[str] = TWIN_SPLITS, *,
               n_images: int | None = None, seed: int = 0,
               classes: Sequence[str] | None = None) -> TwinSplits:
    """Load ``n_images`` random images of ``splits[0]`` and the same scenes from the other splits.

    ``root``: a VOC-layout folder, or a mapping ``{split: dataset}`` of
    :class:`lrpkit.data.VOCDataset`-like objects (``ids``, ``labels``, ``ignore``, ``ds[i] ->
    (image, target)``).  ``n_images=None`` takes every image; otherwise the first ``n_images`` of
    ``numpy.random.default_rng(seed).permutation(N)``, in index order.  A split that is missing
    (no split file) or lacks a twin for some chosen image is left out with a warning.
    """
    splits = list(splits)
    if not splits:
        raise ValueError("splits must name at least one split")
    if len(set(splits)) != len(splits):
        raise ValueError(f"splits must be unique, got {splits}")

    def dataset(split):
        if isinstance(root, Mapping):
            if split not in root:
                raise FileNotFoundError(f"split {split!r} not in the given datasets {sorted(root)}")
            return root[split]
        return VOCDataset(root, split, classes=list(classes) if classes is not None else None)

    ref = dataset(splits[0])
    names = [str(c) for c in (classes if classes is not None else ref.classes)]
    rows = sample_rows(len(ref.ids), n_images, seed)
    keys = [twin_key(ref.ids[i]) for i in rows]
    out = TwinSplits([], names, keys)
    for split in splits:
        try:
            ds = ref if split == splits[0] else dataset(split)
        except FileNotFoundError as exc:
            warnings.warn(f"load_twins: split {split!r} left out ({exc})", stacklevel=2)
            continue
        if [str(c) for c in ds.classes] != names:
            raise ValueError(f"split {split!r} has classes {list(ds.classes)}, expected {names}")
        pos = {twin_key(i): k for k, i in enumerate(ds.ids)}
        idx = [pos.get(k) for k in keys]
        if any(i is None for i in idx):
            missing = sum(i is None for i in idx)
            warnings.warn(f"load_twins: split {split!r} left out: no twin for {missing} of "
                          f"{len(keys)} images", stacklevel=2)
            continue
        out.splits.append(split)
        out.ids[split] = [ds.ids[i] for i in idx]
        out.images[split] = [ds[i][0] for i in idx]
        out.labels[split] = np.asarray(ds.labels, dtype=np.float32)[idx]
        ign = getattr(ds, "ignore", None)
        out.ignore[split] = (np.asarray(ign, dtype=bool)[idx] if ign is not None
                             else np.zeros((len(idx), len(names)), bool))
    return out


def dataset_twins(dataset: Any, *, n_images: int | None = None, seed: int = 0) -> TwinSplits:
    """The images of a loaded dataset (:class:`lrpkit.sources.DatasetSource`) to score, with
    their counterfactual twins where the data has them.

    lrpkit's scene set analysed on ``test`` (``dataset.source == "scenes"``): the test images
    and their twins in ``test_swapped`` / ``test_untagged`` (:func:`load_twins`, rows keyed by
    :func:`twin_key`; a twin split that is missing is left out with a warning).  Any other
    data: its split alone, rows keyed by the image ids.  ``n_images`` random images
    (``default_rng(seed)``, in index order; ``None``: all).
    """
    split = str(dataset.split)
    if getattr(dataset, "source", None) == "scenes" and split == TWIN_SPLITS[0]:
        splits = {split: dataset}
        for s in TWIN_SPLITS[1:]:
            try:
                splits[s] = VOCDataset(dataset.root, s, classes=list(dataset.classes))
            except FileNotFoundError as exc:
                warnings.warn(f"dataset_twins: split {s!r} left out ({exc})", stacklevel=2)
        return load_twins(splits, list(splits), n_images=n_images, seed=seed,
                          classes=list(dataset.classes))
    rows = sample_rows(len(dataset.ids), n_images, seed)
    ids = [str(dataset.ids[i]) for i in rows]
    out = TwinSplits([split], [str(c) for c in dataset.classes], ids)
    out.ids[split] = ids
    out.images[split] = [dataset[int(i)][0] for i in rows]
    out.labels[split] = np.asarray(dataset.labels, np.float32)[rows]
    ign = getattr(dataset, "ignore", None)
    out.ignore[split] = (np.asarray(ign, bool)[rows] if ign is not None
                         else np.zeros((len(rows), len(out.classes)), bool))
    return out


def _is_loaded_model(model: Any) -> bool:
    """A :class:`lrpkit.sources.ModelSource` (duck-typed: the library does not import the
    application): output ``classes``, its own ``transform`` and ``scores(images)``."""
    return (not isinstance(model, torch.nn.Module) and callable(getattr(model, "scores", None))
            and hasattr(model, "classes") and hasattr(model, "transform"))


def image_scores(model: Any, images: Sequence[Any], *, batch_size: int = 64,
                 size: int | None = None, crop: int | None = None,
                 classes: Sequence[str] | None = None) -> np.ndarray:
    """Class scores ``(N, C)`` of ``model`` on a list of PIL images.

    A loaded model (:class:`lrpkit.sources.ModelSource`) sees each image through its own
    preprocessing; with ``classes`` its outputs of those names are returned, in that order
    (a model of more classes, e.g. ImageNet's 1000, read at the dataset's).

    A torch module (the scene CNN) sees each image as at test time in Lapuschkin et al. 2016, App. E:
    scaled to its longest side ``size``, edge-padded to a square and centre-cropped to ``crop``
    (both default to the checkpoint's ``meta``); it runs in eval mode, in batches of
    ``batch_size``.  Any other model is asked for ``model.decision_function(images)`` (the
    Fisher-vector classifier encodes the whole image).
    """
    images = list(images)
    if _is_loaded_model(model):
        cols = (list(range(len(model.classes))) if classes is None
                else [model.classes.index(c) if c in model.classes else -1 for c in classes])
        if -1 in cols:
            missing = [c for c, k in zip(classes, cols) if k < 0]
            raise ValueError(f"model {model.name!r} has no output for class(es) {missing}")
        if not images:
            return np.zeros((0, len(cols)), np.float32)
        return np.asarray(model.scores(images, batch_size=batch_size), np.float32)[:, cols]
    if isinstance(model, torch.nn.Module):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
        size, crop = input_geometry(model, size, crop)
        if not images:
            return np.zeros((0, 0), np.float32)
        out = [model_scores(model, T.to_tensor_batch(images[s:s + batch_size], size, crop)).numpy()
               for s in range(0, len(images), batch_size)]
        return np.concatenate(out).astype(np.float32)
    if hasattr(model, "decision_function"):
        scores = np.asarray(model.decision_function(images), dtype=np.float64)
        return scores[:, None] if scores.ndim == 1 else scores
    raise TypeError(f"model must be a torch.nn.Module or have decision_function, got {type(model).__name__}")


def per_class_ap(labels: Any, scores: Any, ignore: Any = None) -> np.ndarray:
    """Average precision per column: ``labels`` (N, C) multi-hot, ``scores`` (N, C).

    ``ignore`` (N, C, bool) marks pairs left out of that class's AP (VOC's difficult-only
    pairs).  Each column is :func:`lrpkit.evaluate.metrics.average_precision`, so classes without
    positives get what that function documents (NaN).
    """
    labels, scores = np.asarray(labels), np.asarray(scores)
    if labels.ndim != 2 or labels.shape != scores.shape:
        raise ValueError(f"labels and scores must both be (N, C), got {labels.shape} and {scores.shape}")
    if ignore is not None:
        ignore = np.asarray(ignore, dtype=bool)
        if ignore.shape != labels.shape:
            raise ValueError(f"ignore must be (N, C) like labels {labels.shape}, got {ignore.shape}")
    return np.array([average_precision(labels[:, c], scores[:, c],
                                       difficult=None if ignore is None else ignore[:, c])
                     for c in range(labels.shape[1])], dtype=np.float64)


def ap_by_split(models: Mapping[str, Any], twins: TwinSplits, *, reuse_identical: bool = True,
                batch_size: int = 64, progress: bool = False) -> xr.Dataset:
    """Scores and per-class AP of each model on each split of ``twins``.

    ``models``: ``{name: model}`` (see :func:`image_scores`).  With ``reuse_identical`` an image
    that is pixel-identical to the same row of the reference split (an untagged twin of an
    image that had no tag) is not scored again: its reference scores are reused (the FV
    encoding is the expensive part, ~0.2 s per image).

    Returns an ``xr.Dataset`` with ``ap`` (``split``, ``model``, ``class``), ``mAP``
    (``split``, ``model``: mean over classes with an AP), ``scores`` (``split``, ``model``,
    ``image``, ``class``), ``labels`` (``split``, ``image``, ``class``) and ``n_scored``
    (``split``, ``model``: images actually scored); ``image`` holds the twin keys.
    """
    if not models:
        raise ValueError("models must name at least one model")
    if not twins.splits:
        raise ValueError("twins holds no split")
    splits, names, classes = list(twins.splits), list(models), list(twins.classes)
    n, c = len(twins), len(classes)
    scores = np.full((len(splits), len(names), n, c), np.nan)
    n_scored = np.zeros((len(splits), len(names)), np.int64)
    ref = splits[0]
    ref_arrays = [np.asarray(im) for im in twins.images[ref]] if reuse_identical else None
    todo = [(s, m) for s in range(len(splits)) for m in range(len(names))]
    if progress:
        from tqdm.auto import tqdm
        todo = tqdm(todo, desc="scores", leave=False)
    for s, m in todo:
        imgs = twins.images[splits[s]]
        rows = list(range(n))
        if reuse_identical and s > 0:
            same = [np.array_equal(np.asarray(im), r) for im, r in zip(imgs, ref_arrays)]
            same = np.asarray(same, dtype=bool)
            scores[s, m, same] = scores[0, m, same]
            rows = [i for i in rows if not same[i]]
        if rows:
            sc = image_scores(models[names[m]], [imgs[i] for i in rows], batch_size=batch_size,
                              classes=classes)
            if sc.shape != (len(rows), c):
                raise ValueError(f"model {names[m]!r} gives scores of shape {sc.shape}, expected "
                                 f"({len(rows)}, {c}) for classes {classes}")
            scores[s, m, rows] = sc
        n_scored[s, m] = len(rows)
    ap = np.stack([np.stack([per_class_ap(twins.labels[sp], scores[s, m], twins.ignore[sp])
                             for m in range(len(names))]) for s, sp in enumerate(splits)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: no class with positives
        m_ap = np.nanmean(ap, axis=-1)
    ds = xr.Dataset(
        {"ap": (("split", "model", "class"), ap), "mAP": (("split", "model"), m_ap),
         "scores": (("split", "model", "image", "class"), scores),
         "labels": (("split", "image", "class"), np.stack([twins.labels[sp] for sp in splits])),
         "n_scored": (("split", "model"), n_scored)},
        coords={"split": np.array(splits, dtype=str), "model": np.array(names, dtype=str),
                "class": np.array(classes, dtype=str), "image": np.array(twins.keys, dtype=str)},
        attrs={"metric": "lrpkit.evaluate.metrics.average_precision per class; CNN on the centre crop "
                         "(Lapuschkin et al. 2016, App. E), other models via decision_function on "
                         "the whole image"})
    ds["ap"].attrs["description"] = "average precision per class"
    return ds


def true_positive_pairs(labels: Any, scores: Any, n: int, seed: int = 0) -> list[tuple[int, int]]:
    """Up to ``n`` (image, class) pairs the model gets right, spread evenly over the classes.

    A true positive is a present class scored ``> 0`` (Lapuschkin et al. 2016, App. D, resample
    true-positive predictions).  Each class's true positives are shuffled with ``default_rng(seed)``; pairs are
    then taken one class at a time in turn until ``n`` are chosen or all are used.  Without any
    true positive (an untrained model) the highest-scored positive image of each class is
    returned instead (at most ``n``).
    """
    labels, scores = np.asarray(labels), np.asarray(scores)
    if labels.ndim != 2 or labels.shape != scores.shape:
        raise ValueError(f"labels and scores must both be (N, C), got {labels.shape} and {scores.shape}")
    if int(n) < 0:
        raise ValueError(f"n must be >= 0, got {n!r}")
    rng = np.random.default_rng(seed)
    pos = labels > 0.5
    pools = [list(rng.permutation(np.flatnonzero(pos[:, c] & (scores[:, c] > 0))))
             for c in range(labels.shape[1])]
    pairs: list[tuple[int, int]] = []
    while len(pairs) < n and any(pools):
        for c, pool in enumerate(pools):
            if pool and len(pairs) < n:
                pairs.append((int(pool.pop(0)), c))
    if not pairs:
        pairs = [(int(np.argmax(np.where(pos[:, c], scores[:, c], -np.inf))), c)
                 for c in range(labels.shape[1]) if pos[:, c].any()][:int(n)]
    return pairs
