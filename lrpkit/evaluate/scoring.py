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
    ivs = ap_intervals(res)                                       # AP, mAP, drops, model gaps
    ivs["mAP_drop"].sel(split="test_swapped", model="CNN")        # estimate, low, high, n

A twin is found by its id: ``test_000123``, ``swapped_000123`` and ``untagged_000123`` share the
key ``000123`` (the part after the first ``_``).  AP is
:func:`lrpkit.evaluate.metrics.average_precision` (one treatment of classes without positives
and of VOC's difficult-only pairs for the whole package).

Intervals (:func:`ap_boots`, :func:`ap_intervals`): the images are resampled with replacement
(percentile bootstrap, Efron & Tibshirani 1993, ch. 13) *jointly* for every split, model and
class, so that an AP, a mAP, the drop of an AP on a twin split and the gap between two models
all get their interval from the same resamples (paired: the image-to-image spread the two sides
share cancels).  A resample is a vector of counts per image, and the AP of a resample is the
AP with those counts as sample weights, computed for all resamples at once; it equals
:func:`lrpkit.evaluate.intervals.ap_interval` on the same draws.
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
           "per_class_ap", "ap_by_split", "true_positive_pairs", "bootstrap_counts", "weighted_ap",
           "ap_boots", "ap_intervals", "interval_at", "interval_table"]

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


# ---------------------------------------------------------------------------------------------
# Intervals: AP over resamples of the images (counts as sample weights, all resamples at once)
# ---------------------------------------------------------------------------------------------
_MAX_INDEX_ELEMENTS = 2 ** 22        # as lrpkit.evaluate.intervals: indices drawn per chunk


def bootstrap_counts(n: int, n_boot: int = 1000, seed: int | np.random.Generator = 0) -> np.ndarray:
    """``(n_boot, n)`` int counts: how often each of ``n`` images is drawn in each resample.

    The draws are ``default_rng(seed).integers(0, n, (n_boot, n))`` (in the same row chunks),
    i.e. the resamples of :func:`lrpkit.evaluate.intervals.ap_interval` and
    :func:`~lrpkit.evaluate.intervals.paired_interval` with the same ``seed``.
    """
    n, n_boot = int(n), int(n_boot)
    if n < 1 or n_boot < 1:
        raise ValueError(f"n and n_boot must be >= 1, got n={n}, n_boot={n_boot}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    rows = max(1, _MAX_INDEX_ELEMENTS // n)
    out = np.empty((n_boot, n), np.int32)
    for b0 in range(0, n_boot, rows):
        b1 = min(n_boot, b0 + rows)
        idx = rng.integers(0, n, (b1 - b0, n))
        flat = idx + (np.arange(b1 - b0) * n)[:, None]
        out[b0:b1] = np.bincount(flat.ravel(), minlength=(b1 - b0) * n).reshape(b1 - b0, n)
    return out


def weighted_ap(labels: Any, scores: Any, weights: Any) -> np.ndarray:
    """AP of one class for each row of ``weights`` ``(B, N)`` (sample weights, e.g.
    :func:`bootstrap_counts`; 0 leaves an image out): ``(B,)``.

    ``AP = sum_k (R_k - R_{k-1}) P_k`` over the distinct score thresholds, with weighted true and
    false positive counts: scikit-learn's ``average_precision_score(..., sample_weight=w)``, and
    with integer counts the AP of the resample itself
    (:func:`lrpkit.evaluate.metrics.average_precision`).  NaN where a row keeps no positive.
    """
    pos = np.asarray(labels).ravel() > 0
    s = np.asarray(scores, dtype=np.float64).ravel()
    w = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    if s.shape != pos.shape or w.shape[1] != s.size:
        raise ValueError(f"labels (N,), scores (N,) and weights (B, N) must agree, got "
                         f"{pos.shape}, {s.shape}, {w.shape}")
    if not np.isfinite(s).all():
        raise ValueError("scores contain NaN or infinite values")
    order = np.argsort(-s, kind="mergesort")
    ss, ps, ws = s[order], pos[order], w[:, order]
    ends = np.flatnonzero(np.r_[ss[1:] != ss[:-1], True])      # last row of each tied group
    tp = np.cumsum(ws * ps, axis=1)[:, ends]
    fp = np.cumsum(ws * ~ps, axis=1)[:, ends]
    total = tp[:, -1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        prec = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
        rec = tp / total
    d_rec = np.diff(rec, axis=1, prepend=0.0)
    ap = (d_rec * prec).sum(axis=1)
    return np.where(total[:, 0] > 0, ap, np.nan)


def ap_boots(res: xr.Dataset, *, n_boot: int = 1000, seed: int | np.random.Generator = 0,
             ignore: Mapping[str, Any] | None = None) -> xr.DataArray:
    """Per-class AP of every bootstrap resample of the images: ``(boot, split, model, class)``.

    ``res``: the Dataset of :func:`ap_by_split` (``scores``, ``labels``).  One resample draws
    the image rows once (:func:`bootstrap_counts`) for every split, model and class: the AP of
    a twin split and of another model are paired with the reference's.  ``ignore``: ``{split:
    (N, C) bool}`` VOC difficult-only pairs (``TwinSplits.ignore``; weight 0 in that class).
    """
    for v in ("scores", "labels"):
        if v not in res:
            raise ValueError(f"res lacks {v!r}; pass the Dataset of lrpkit.evaluate.ap_by_split")
    splits = [str(s) for s in res["split"].values]
    models = [str(m) for m in res["model"].values]
    classes = [str(c) for c in res["class"].values]
    n = int(res.sizes["image"])
    counts = bootstrap_counts(n, n_boot, seed)
    out = np.full((counts.shape[0], len(splits), len(models), len(classes)), np.nan)
    for i, sp in enumerate(splits):
        lab = res["labels"].sel(split=sp).transpose("image", "class").values
        ign = None if ignore is None or sp not in ignore else np.asarray(ignore[sp], bool)
        for j, m in enumerate(models):
            sc = res["scores"].sel(split=sp, model=m).transpose("image", "class").values
            if np.isnan(sc).all():
                continue
            for k in range(len(classes)):
                w = counts if ign is None else counts * ~ign[:, k]
                out[:, i, j, k] = weighted_ap(lab[:, k], sc[:, k], w)
    return xr.DataArray(out, dims=("boot", "split", "model", "class"),
                        coords={"split": splits, "model": models, "class": classes},
                        name="ap_boot", attrs={"n_boot": int(counts.shape[0]), "resampled": "image"})


def _interval_ds(est: xr.DataArray, boots: xr.DataArray, n: Any, ci: float,
                 attrs: Mapping[str, Any]) -> xr.Dataset:
    """estimate / low / high / n / verdict (difference_verdict against 0) from bootstrap values."""
    from .intervals import difference_verdict

    a = (1.0 - float(ci)) / 2.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)          # all-NaN cells: no positives
        q = boots.quantile([a, 1.0 - a], dim="boot", skipna=True).drop_vars("quantile")
    ds = xr.Dataset({"estimate": est.astype(np.float64), "low": q.isel(quantile=0),
                     "high": q.isel(quantile=1)})
    ds["n"] = xr.zeros_like(ds["estimate"], dtype=np.int64) + n
    ver = np.vectorize(lambda lo, hi: difference_verdict((lo, hi)), otypes=[object])(
        ds["low"].values, ds["high"].values)
    ds["verdict"] = (ds["low"].dims, np.asarray(ver, dtype=object).astype(str))
    ds.attrs.update({**attrs, "ci": float(ci), "method": "percentile",
                     "verdict": "resolved: the interval excludes 0"})
    return ds


def ap_intervals(res: xr.Dataset, *, n_boot: int = 1000, ci: float = 0.95,
                 seed: int | np.random.Generator = 0, ignore: Mapping[str, Any] | None = None,
                 boots: xr.DataArray | None = None) -> dict[str, xr.Dataset]:
    """Bootstrap intervals (over images, paired) of the AP results of :func:`ap_by_split`.

    Returns Datasets with ``estimate``, ``low``, ``high``, ``n`` (images) and ``verdict``
    (``"resolved"`` when the interval excludes 0), the format of
    :func:`lrpkit.evaluate.intervals.interval_dataset` (for ``attach_interval`` /
    ``interval_frame``):

    * ``"ap"`` (split, model, class), ``"mAP"`` (split, model): the estimates are ``res.ap`` /
      ``res.mAP``; mAP is the mean over the classes with an AP in each resample;
    * ``"ap_drop"`` (split, model, class), ``"mAP_drop"`` (split, model): reference split
      (the first) minus each twin split, on the same images (only when ``res`` has twins):
      the drop Lapuschkin et al. 2016 read as reliance on what the twin removes;
    * ``"mAP_gap"`` (split, model, versus): mAP of ``model`` minus mAP of ``versus`` (row minus
      column) on the same images (only with several models).

    ``boots``: the resamples of :func:`ap_boots` when already computed.
    """
    if not 0.0 < float(ci) < 1.0:
        raise ValueError(f"ci must be in (0, 1), got {ci!r}")
    b = ap_boots(res, n_boot=n_boot, seed=seed, ignore=ignore) if boots is None else boots
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mb = b.mean("class", skipna=True)
    n = int(res.sizes["image"])
    ignored = (xr.DataArray(np.stack([np.asarray(ignore[s], bool) for s in b.split.values]),
                            dims=("split", "image", "class"), coords={"split": b.split, "class": b["class"]})
               if ignore is not None and all(s in ignore for s in b.split.values) else None)
    n_cls = n if ignored is None else n - ignored.sum("image")
    attrs = {"n_boot": int(b.sizes["boot"]), "resampled": "image",
             "paired": "image indices resampled jointly for every split, model and class"}
    out = {"ap": _interval_ds(res["ap"], b, n_cls, ci, attrs),
           "mAP": _interval_ds(res["mAP"], mb, n, ci, attrs)}
    splits = [str(s) for s in b.split.values]
    if len(splits) > 1:
        ref, twins = splits[0], splits[1:]
        d_est = (res["ap"].sel(split=ref) - res["ap"].sel(split=twins)).transpose("split", ...)
        d_b = (b.sel(split=ref) - b.sel(split=twins)).transpose("boot", "split", ...)
        out["ap_drop"] = _interval_ds(d_est, d_b, n, ci, {**attrs, "reference": ref})
        out["mAP_drop"] = _interval_ds((res["mAP"].sel(split=ref) - res["mAP"].sel(split=twins))
                                       .transpose("split", ...),
                                       (mb.sel(split=ref) - mb.sel(split=twins)).transpose("boot", "split", ...),
                                       n, ci,
                                       {**attrs, "reference": ref})
    if b.sizes["model"] > 1:
        other = {"model": "versus"}
        g_est = res["mAP"] - res["mAP"].rename(other)
        g_b = mb - mb.rename(other)
        out["mAP_gap"] = _interval_ds(g_est, g_b, n, ci, {**attrs, "gap": "model minus versus"})
    return out


def interval_at(intervals: xr.Dataset, **sel: Any) -> Any:
    """One cell of an interval Dataset (:func:`ap_intervals`, ``interval_dataset``) as an
    :class:`lrpkit.evaluate.intervals.Interval` (for a report's findings)."""
    from .intervals import Interval

    cell = intervals.sel(sel)
    if any(cell[v].ndim for v in ("estimate", "low", "high", "n")):
        raise ValueError(f"selection {sel} leaves dims {dict(cell['estimate'].sizes)}; select one cell")
    return Interval(float(cell["estimate"]), float(cell["low"]), float(cell["high"]),
                    int(cell["n"]), float(intervals.attrs.get("ci", 0.95)),
                    str(intervals.attrs.get("method", "percentile")))


def interval_table(intervals: xr.Dataset, columns: str | None = None, *, digits: int = 3,
                   scale: float = 1.0) -> Any:
    """``"estimate [low, high]"`` strings of an interval Dataset as a pandas DataFrame: one column
    per value of dim ``columns`` (``None``: one column ``"estimate [low, high]"``), one row per
    index of the other dims; values times ``scale`` (100: percent) with ``digits`` decimals."""
    import pandas as pd

    def one(e: float, lo: float, hi: float) -> str:
        if not np.isfinite(e):
            return "–"
        b = (f"[{lo * scale:.{digits}f}, {hi * scale:.{digits}f}]" if np.isfinite(lo) and np.isfinite(hi)
             else "[n/a]")
        return f"{e * scale:.{digits}f} {b}"

    text = xr.apply_ufunc(np.vectorize(one, otypes=[object]), intervals["estimate"], intervals["low"],
                          intervals["high"])
    if columns is None:
        frame = text.to_series().rename("estimate [low, high]").to_frame()
    else:
        if columns not in text.dims:
            raise ValueError(f"columns: dim {columns!r} not in {text.dims}")
        rest = [d for d in text.dims if d != columns]
        frame = (text.to_series().unstack(columns) if rest
                 else pd.DataFrame([text.to_series()]))
        frame = frame[[str(v) for v in intervals[columns].values]] if columns in intervals.coords else frame
    frame.columns.name = None
    return frame
