"""The outside-inside relevance ratio over many images, with intervals (Lapuschkin et al. 2016,
eq. 11, Fig. 6).

Per image, ``mu = (R+ per context pixel) / (R+ per inside pixel)`` is a ratio of two small
numbers: an image with almost no positive relevance on its object gives a huge ``mu``, and a
mean or even a median of a few per-image ratios swings with it (the FV model's horse: an upper
bound of ~4,000 from six images).  This module estimates one ``mu`` per class and model as a
**ratio of mean densities**: each image's positive relevance is first normalised to sum to 1
over its own pixels (inside, context and tag; the padding of a model's input left out), so every
image weighs the same; then

    mu = sum_i d_context(i) / sum_i d_inside(i),    d_region(i) = share of R+ in region / pixels

with a percentile bootstrap over **images** (:func:`lrpkit.evaluate.intervals.resample_interval`;
an image drawn twice counts twice in every class it was sampled for).  The inputs are the
``region_relevance`` / ``region_pixels`` of
:func:`lrpkit.evaluate.shallow_deep.class_average_heatmaps`::

    avg = class_average_heatmaps(models, samples, classes, image_ids=ids, tags=tags)
    mu = context_ratio_intervals(avg)                  # (class + "all", model): estimate, low, high, n
    fv_vs_cnn = context_ratio_between(avg, "FV", "scene CNN")    # mu_FV / mu_CNN, paired images
    shares = region_share_intervals(avg)               # mean share of R+ inside / context / tag
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr

from .intervals import Interval, bootstrap_interval, resample_interval

__all__ = ["image_densities", "context_ratio_intervals", "context_ratio_between",
           "region_share_intervals", "ALL"]

ALL = "all"          # the pooled row: every (class, image) pair of every class
_IMAGE_REGIONS = ("inside", "context", "tag")


def _check(ds: xr.Dataset) -> None:
    for v in ("region_relevance", "region_pixels"):
        if v not in ds:
            raise ValueError(f"ds lacks {v!r}: pass the Dataset of "
                             "lrpkit.evaluate.shallow_deep.class_average_heatmaps")


def _units(ds: xr.Dataset) -> np.ndarray:
    """(class, sample) -> resampling unit: the image id where the Dataset has them, else the pair."""
    shape = (ds.sizes["class"], ds.sizes["sample"])
    if "image_id" in ds:
        ids = np.asarray(ds["image_id"].values, dtype=str)
        _, codes = np.unique(ids, return_inverse=True)
        return codes.reshape(shape)
    return np.arange(shape[0] * shape[1]).reshape(shape)


def image_densities(ds: xr.Dataset, model: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per (class, sample) of ``model``: the normalised context and inside densities and the
    resampling unit, each ``(class, sample)``; NaN where the sample is missing or its map has no
    positive relevance on the image (or no pixel inside / in the context)."""
    _check(ds)
    r = ds["region_relevance"].sel(model=model)
    px = ds["region_pixels"].sel(model=model)
    total = r.sel(region=list(_IMAGE_REGIONS)).sum("region", skipna=False)
    total = total.where(total > 0)

    def dens(region: str) -> np.ndarray:
        n = px.sel(region=region)
        return (r.sel(region=region) / total / n.where(n > 0)).transpose("class", "sample").values

    return dens("context"), dens("inside"), _units(ds)


def _pooled(d_ctx: np.ndarray, d_in: np.ndarray, unit: np.ndarray, rows: Sequence[int] | None):
    """Flattened finite (context, inside, unit) of the chosen class rows."""
    sel = slice(None) if rows is None else list(rows)
    a, b, u = d_ctx[sel].ravel(), d_in[sel].ravel(), unit[sel].ravel()
    keep = np.isfinite(a) & np.isfinite(b)
    return a[keep], b[keep], u[keep]


def _ratio_stat(pairs: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]], n_units: int,
                combine=lambda v: v[0]):
    def stat(idx: np.ndarray) -> float:
        w = np.bincount(idx, minlength=n_units).astype(np.float64)
        vals = []
        for a, b, u in pairs:
            den = float(w[u] @ b)
            vals.append(float(w[u] @ a) / den if den > 0 else float("nan"))
        return float(combine(vals))
    return stat


def _n_images(unit: np.ndarray) -> int:
    return int(np.unique(unit).size)


def context_ratio_intervals(ds: xr.Dataset, *, models: Sequence[str] | None = None,
                            n_boot: int = 1000, ci: float = 0.95, seed: int = 0) -> xr.Dataset:
    """``mu`` per class (and pooled over all classes, class ``"all"``) and model, with its
    bootstrap interval over images (module doc).

    Returns a Dataset over (``class``, ``model``) with ``estimate``, ``low``, ``high`` and ``n``
    (images with a defined ``mu``); the estimator in ``attrs``.
    """
    _check(ds)
    models = [str(m) for m in ds["model"].values] if models is None else list(models)
    classes = [str(c) for c in ds["class"].values]
    out = np.full((len(classes) + 1, len(models), 4), np.nan)
    for j, m in enumerate(models):
        d_ctx, d_in, unit = image_densities(ds, m)
        for i, rows in enumerate([[k] for k in range(len(classes))] + [None]):
            a, b, u = _pooled(d_ctx, d_in, unit, rows)
            if a.size == 0:
                out[i, j, 3] = 0
                continue
            # resample the images of these rows only: map their units to 0..k-1
            codes, inv = np.unique(u, return_inverse=True)
            iv = resample_interval(_ratio_stat([(a, b, inv)], codes.size), codes.size,
                                   n_boot=n_boot, ci=ci, seed=seed)
            out[i, j] = (iv.estimate, iv.low, iv.high, codes.size)
    coords = {"class": classes + [ALL], "model": models}
    res = xr.Dataset({k: (("class", "model"), out[..., q]) for q, k in
                      enumerate(("estimate", "low", "high", "n"))}, coords=coords)
    res["n"] = res["n"].fillna(0).astype(np.int64)
    res.attrs.update(estimator="ratio of mean normalised densities, context / inside "
                     "(Lapuschkin et al. 2016, eq. 11; padding and tag left out)",
                     resampled="image", n_boot=int(n_boot), ci=float(ci), seed=int(seed))
    return res


def context_ratio_between(ds: xr.Dataset, a: str, b: str, *, classes: Sequence[str] | None = None,
                          n_boot: int = 1000, ci: float = 0.95, seed: int = 0) -> Interval:
    """``mu(a) / mu(b)`` of two models on the same images (pooled over ``classes``, default all),
    with the images resampled jointly for both: does model ``a`` use more context than ``b``
    (``> 1``)?  Only the (class, image) pairs where both models have a defined ``mu`` count."""
    _check(ds)
    names = [str(c) for c in ds["class"].values]
    rows = None if classes is None else [names.index(str(c)) for c in classes]
    (ca, ia, unit), (cb, ib, _) = image_densities(ds, a), image_densities(ds, b)
    both = np.isfinite(ca) & np.isfinite(ia) & np.isfinite(cb) & np.isfinite(ib)
    sel = slice(None) if rows is None else rows
    keep = both[sel].ravel()
    u = unit[sel].ravel()[keep]
    if u.size == 0:
        return Interval(float("nan"), float("nan"), float("nan"), 0, float(ci), "percentile")
    codes, inv = np.unique(u, return_inverse=True)
    pa = (ca[sel].ravel()[keep], ia[sel].ravel()[keep], inv)
    pb = (cb[sel].ravel()[keep], ib[sel].ravel()[keep], inv)
    stat = _ratio_stat([pa, pb], codes.size, combine=lambda v: v[0] / v[1] if v[1] > 0 else np.nan)
    return resample_interval(stat, codes.size, n_boot=n_boot, ci=ci, seed=seed)


def region_share_intervals(ds: xr.Dataset, *, regions: Sequence[str] = _IMAGE_REGIONS,
                           n_boot: int = 1000, ci: float = 0.95, seed: int = 0) -> xr.Dataset:
    """Mean share of each image's positive relevance (over the image's own pixels, padding left
    out) in the ``inside``, ``context`` and ``tag`` regions, per class (and ``"all"``) and model,
    with a bootstrap interval over the (class, image) samples.  Returns ``estimate``, ``low``,
    ``high``, ``n`` over (``class``, ``model``, ``region``)."""
    _check(ds)
    r = ds["region_relevance"]
    total = r.sel(region=list(_IMAGE_REGIONS)).sum("region", skipna=False)
    share = (r.sel(region=list(regions)) / total.where(total > 0)).transpose(
        "class", "model", "sample", "region").values
    classes = [str(c) for c in ds["class"].values] + [ALL]
    n_model = share.shape[1]
    out = np.full((len(classes), n_model, len(regions), 4), np.nan)
    for i in range(len(classes)):
        for j in range(n_model):
            for k in range(len(regions)):
                v = share[:, j, :, k].ravel() if i == len(classes) - 1 else share[i, j, :, k]
                iv = bootstrap_interval(v, n_boot=n_boot, ci=ci, seed=seed)
                out[i, j, k] = (iv.estimate, iv.low, iv.high, iv.n)
    dims = ("class", "model", "region")
    coords = {"class": classes, "model": ds["model"].values, "region": list(regions)}
    res = xr.Dataset({k: (dims, out[..., q]) for q, k in enumerate(("estimate", "low", "high", "n"))},
                     coords=coords)
    res["n"] = res["n"].fillna(0).astype(np.int64)
    res.attrs.update(estimator="mean per-image share of R+ (image pixels, padding left out)",
                     resampled="(class, image) sample", n_boot=int(n_boot), ci=float(ci), seed=int(seed))
    return res
