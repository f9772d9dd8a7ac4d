"""Does the less accurate model lean more on context?  Context use against accuracy over training
checkpoints, with intervals.

Lapuschkin et al. 2016 (CVPR, Sec. 6.5) explain why their Fisher-vector model uses more context
than the deep network by its lower accuracy: the weaker model leans on the easier cue.  Where one
model is trained in stages (the scene CNN's ``cnn_epoch*.pt``), that explanation can be tested
within the model: across the checkpoints, does the outside-inside ratio ``mu`` (eq. 11) or the AP
lost on counterfactual twins with another background fall as the mAP rises?  A checkpoint near
chance has little AP to lose, so the drop is also given as a share of the AP the checkpoint has
**above chance** (``map_drop_share = drop / (mAP - chance mAP)``; a random ranking's AP is about
the class's positive rate, which is the chance AP used here).

:func:`checkpoint_context` resamples the **images** (one bootstrap draw per replicate, shared by
every checkpoint, as :func:`lrpkit.evaluate.intervals.resample_interval` draws them) and
recomputes, per replicate and checkpoint, the mAP, the mAP drop on the twins and ``mu`` (the
ratio of mean normalised densities of :mod:`lrpkit.evaluate.context_summary`), then Spearman's
rank correlation across the checkpoints.  :func:`map_drop_intervals` gives the mAP drop of
several models on the same images and their paired differences.  AP is the non-interpolated
average precision of :func:`lrpkit.evaluate.metrics.average_precision`, computed here for a
whole batch of resamples at once (:func:`batched_average_precision`).
"""
from __future__ import annotations

from typing import Any
from collections.abc import Sequence

import numpy as np
import xarray as xr

from .intervals import Interval, bootstrap_indices, percentile_bounds

__all__ = ["batched_average_precision", "checkpoint_context", "map_drop_intervals",
           "map_difference", "spearman_rows"]


def batched_average_precision(positive: Any, scores: Any, idx: Any, weights: Any = None) -> np.ndarray:
    """AP (non-interpolated, ``sum_n (R_n - R_{n-1}) P_n`` over distinct thresholds: the value of
    :func:`lrpkit.evaluate.metrics.average_precision`) of every resample row of ``idx``.

    ``positive``, ``scores``: ``(n,)``; ``idx``: ``(B, k)`` image indices (a row may repeat an
    image); ``weights``: ``(n,)`` 0/1 (0: left out, e.g. VOC's difficult).  Returns ``(B,)``;
    NaN for a row without a positive.
    """
    pos = np.asarray(positive, dtype=bool).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    idx = np.atleast_2d(np.asarray(idx, dtype=np.int64))
    w = np.ones(s.shape) if weights is None else np.asarray(weights, dtype=np.float64).ravel()
    if not (pos.shape == s.shape == w.shape):
        raise ValueError(f"positive, scores and weights must be (n,) each, got {pos.shape}, "
                         f"{s.shape}, {w.shape}")
    S = s[idx]
    order = np.argsort(-S, axis=1, kind="stable")
    S = np.take_along_axis(S, order, 1)
    Y = np.take_along_axis(pos[idx], order, 1)
    W = np.take_along_axis(w[idx], order, 1)
    tp = np.cumsum(Y * W, axis=1)
    fp = np.cumsum(~Y * W, axis=1)
    end = np.ones(S.shape, bool)
    end[:, :-1] = S[:, :-1] != S[:, 1:]
    prev = np.zeros_like(tp)
    prev[:, 1:] = np.maximum.accumulate(np.where(end, tp, 0.0), axis=1)[:, :-1]
    with np.errstate(invalid="ignore", divide="ignore"):
        prec = tp / (tp + fp)
        contrib = np.where(end, (tp - prev) * np.nan_to_num(prec), 0.0).sum(1)
        return np.where(tp[:, -1] > 0, contrib / tp[:, -1], np.nan)


def _map_rows(labels: np.ndarray, keep: np.ndarray, scores: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """``(B,)`` mAP (mean over classes with a positive) of ``scores (n, C)`` on the rows of idx."""
    aps = np.stack([batched_average_precision(labels[:, c] > 0, scores[:, c], idx, keep[:, c])
                    for c in range(scores.shape[1])], axis=1)
    with np.errstate(invalid="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanmean(aps, axis=1)


def _chance_rows(labels: np.ndarray, keep: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """``(B,)`` chance mAP of each resample row: the mean over classes (with a positive) of the
    positive rate among the counted images, about the AP of a random ranking."""
    w = keep[idx]                                        # (B, k, C)
    pos = (labels[idx] > 0) * w
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = pos.sum(1) / w.sum(1)
    rate[pos.sum(1) == 0] = np.nan
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(rate, axis=1)


def spearman_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman's rank correlation of each row pair of ``x``, ``y`` ``(B, K)`` (average ranks for
    ties; NaN where a row is constant or holds a NaN)."""
    from scipy.stats import rankdata

    x, y = np.atleast_2d(x), np.atleast_2d(y)
    bad = ~(np.isfinite(x).all(1) & np.isfinite(y).all(1))
    rx = rankdata(np.nan_to_num(x), axis=1)
    ry = rankdata(np.nan_to_num(y), axis=1)
    rx -= rx.mean(1, keepdims=True)
    ry -= ry.mean(1, keepdims=True)
    den = np.sqrt((rx ** 2).sum(1) * (ry ** 2).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (rx * ry).sum(1) / den
    r[bad | (den == 0)] = np.nan
    return r


def _interval(est: float, boots: np.ndarray, n: int, ci: float) -> Interval:
    lo, hi = percentile_bounds(boots, ci)
    return Interval(float(est), lo, hi, int(n), float(ci), "percentile")


def _check_scores(scores_ref: Any, scores_twin: Any, labels: Any, ignore: Any):
    ref, twin = np.asarray(scores_ref, np.float64), np.asarray(scores_twin, np.float64)
    y = np.asarray(labels, np.float64)
    if ref.ndim != 3 or ref.shape != twin.shape or ref.shape[1:] != y.shape:
        raise ValueError(f"scores_ref and scores_twin must be (models, images, classes) and labels "
                         f"(images, classes), got {ref.shape}, {twin.shape}, {y.shape}")
    keep = np.ones(y.shape) if ignore is None else (~np.asarray(ignore, bool)).astype(np.float64)
    if keep.shape != y.shape:
        raise ValueError(f"ignore must be (images, classes) like labels, got {keep.shape}")
    return ref, twin, y, keep


def map_drop_intervals(scores_ref: Any, scores_twin: Any, labels: Any, ignore: Any = None, *,
                       models: Sequence[str], n_boot: int = 1000, ci: float = 0.95,
                       seed: int = 0) -> tuple[xr.Dataset, dict[tuple[str, str], Interval]]:
    """mAP on the originals minus mAP on their twins for several models on the same images.

    ``scores_ref`` / ``scores_twin``: ``(model, image, class)``; ``labels``, ``ignore``:
    ``(image, class)``.  Returns a Dataset over ``model`` (``estimate``, ``low``, ``high``,
    ``n``) and ``{(a, b): Interval}`` of ``drop(a) - drop(b)`` for every ordered pair, all from
    the same resamples of the images.
    """
    ref, twin, y, keep = _check_scores(scores_ref, scores_twin, labels, ignore)
    models = [str(m) for m in models]
    if len(models) != ref.shape[0]:
        raise ValueError(f"{len(models)} model names for {ref.shape[0]} score arrays")
    n = y.shape[0]

    def drops(idx: np.ndarray) -> np.ndarray:
        return np.stack([_map_rows(y, keep, ref[m], idx) - _map_rows(y, keep, twin[m], idx)
                         for m in range(len(models))], axis=1)

    est = drops(np.arange(n)[None])[0]
    boots = np.concatenate([drops(idx) for idx in _index_chunks(n, n_boot, seed)])
    ivs = [_interval(est[m], boots[:, m], n, ci) for m in range(len(models))]
    out = np.array([[v.estimate, v.low, v.high] for v in ivs])
    ds = xr.Dataset({"estimate": ("model", out[:, 0]), "low": ("model", out[:, 1]),
                     "high": ("model", out[:, 2]), "n": ("model", np.full(len(models), n))},
                    coords={"model": models}, attrs={"resampled": "image", "n_boot": int(n_boot),
                                                     "ci": float(ci), "seed": int(seed)})
    pairs = {(a, b): _interval(est[i] - est[j], boots[:, i] - boots[:, j], n, ci)
             for i, a in enumerate(models) for j, b in enumerate(models) if i != j}
    return ds, pairs


def map_difference(scores_a: Any, scores_b: Any, labels: Any, ignore: Any = None, *,
                   n_boot: int = 1000, ci: float = 0.95, seed: int = 0) -> Interval:
    """``mAP(a) - mAP(b)`` of two models' ``(image, class)`` scores on the same images, with
    its paired percentile bootstrap interval over the images (e.g. which model is the more
    accurate one)."""
    ds, pairs = map_drop_intervals(np.asarray(scores_a, np.float64)[None],
                                   np.asarray(scores_b, np.float64)[None], labels, ignore,
                                   models=["a"], n_boot=n_boot, ci=ci, seed=seed)
    return Interval(float(ds.estimate[0]), float(ds.low[0]), float(ds.high[0]), int(ds.n[0]),
                    float(ci), "percentile")


def _index_chunks(n: int, n_boot: int, seed: int, chunk: int = 250) -> list[np.ndarray]:
    """The bootstrap index rows of :func:`lrpkit.evaluate.intervals.resample_interval` (the
    same ``default_rng(seed)`` draws), in chunks of rows."""
    idx = bootstrap_indices(n, n_boot, seed)
    return [idx[i:i + chunk] for i in range(0, len(idx), chunk)]


def checkpoint_context(scores_ref: Any, scores_twin: Any, labels: Any, ignore: Any,
                       d_context: Any, d_inside: Any, rows: Any, checkpoints: Sequence[Any], *,
                       n_boot: int = 1000, ci: float = 0.95, seed: int = 0) -> xr.Dataset:
    """Per checkpoint: mAP, mAP drop on the twins and ``mu``, with intervals; and Spearman's rank
    correlation of mAP with ``mu`` and with the drop across checkpoints, with intervals.

    ``scores_ref`` / ``scores_twin``: ``(checkpoint, image, class)`` scores of the images and
    their twins (e.g. ``test`` and ``test_swapped``); ``labels`` / ``ignore``: ``(image,
    class)``; ``d_context`` / ``d_inside``: ``(checkpoint, pair)`` normalised densities of the
    (class, image) pairs (:func:`lrpkit.evaluate.context_summary.image_densities`), ``rows``:
    ``(pair,)`` the scored image each pair belongs to.  One bootstrap draw of the images per
    replicate serves every checkpoint and measure.

    Returns a Dataset over ``checkpoint`` with ``mAP``, ``map_drop``, ``map_drop_share`` (the
    drop over the mAP above chance, module doc), ``mu`` and their ``_low`` / ``_high``; the
    scalar ``chance_mAP`` (with ``_low`` / ``_high``); scalars ``spearman_map_mu``,
    ``spearman_map_drop`` and ``spearman_map_drop_share`` with ``_low`` / ``_high``;
    ``n_images`` and ``n_pairs``.
    """
    ref, twin, y, keep = _check_scores(scores_ref, scores_twin, labels, ignore)
    K, n = ref.shape[0], y.shape[0]
    dc, di = np.asarray(d_context, np.float64), np.asarray(d_inside, np.float64)
    rows = np.asarray(rows, np.int64).ravel()
    if dc.shape != di.shape or dc.shape != (K, rows.size):
        raise ValueError(f"d_context and d_inside must be (checkpoints={K}, pairs={rows.size}), "
                         f"got {dc.shape} and {di.shape}")
    if rows.size and (rows.min() < 0 or rows.max() >= n):
        raise ValueError(f"rows must index the {n} scored images, got {rows.min()}..{rows.max()}")
    if len(checkpoints) != K:
        raise ValueError(f"{len(checkpoints)} checkpoint names for {K} score arrays")
    ok = np.isfinite(dc) & np.isfinite(di)
    dc, di = np.where(ok, dc, 0.0), np.where(ok, di, 0.0)

    def measures(idx: np.ndarray) -> np.ndarray:
        maps = np.stack([_map_rows(y, keep, ref[k], idx) for k in range(K)], 1)
        drop = maps - np.stack([_map_rows(y, keep, twin[k], idx) for k in range(K)], 1)
        w = np.stack([np.bincount(r, minlength=n) for r in idx]).astype(np.float64)[:, rows]
        chance = _chance_rows(y, keep, idx)[:, None]
        with np.errstate(invalid="ignore", divide="ignore"):
            mu = (w @ dc.T) / (w @ di.T)
            share = drop / (maps - chance)
        share[maps <= chance] = np.nan                   # no AP above chance to lose
        rho = [spearman_rows(maps, v)[:, None] for v in (mu, drop, share)]
        return np.stack([maps, drop, mu, share, np.repeat(chance, K, 1),
                         *(np.repeat(r, K, 1) for r in rho)], 1)

    est = measures(np.arange(n)[None])[0]
    boots = np.concatenate([measures(idx) for idx in _index_chunks(n, n_boot, seed)])
    data: dict[str, Any] = {}
    for q, name in enumerate(("mAP", "map_drop", "mu", "map_drop_share")):
        iv = [_interval(est[q, k], boots[:, q, k], n, ci) for k in range(K)]
        data[name] = ("checkpoint", np.array([v.estimate for v in iv]))
        data[f"{name}_low"] = ("checkpoint", np.array([v.low for v in iv]))
        data[f"{name}_high"] = ("checkpoint", np.array([v.high for v in iv]))
    for q, name in ((4, "chance_mAP"), (5, "spearman_map_mu"), (6, "spearman_map_drop"),
                    (7, "spearman_map_drop_share")):
        iv = _interval(est[q, 0], boots[:, q, 0], n, ci)
        data[name], data[f"{name}_low"], data[f"{name}_high"] = ((), iv.estimate), ((), iv.low), ((), iv.high)
    ds = xr.Dataset(data, coords={"checkpoint": list(checkpoints)})
    ds["n_images"] = ((), int(n))
    ds["n_pairs"] = ((), int(rows.size))
    ds.attrs.update(resampled="image (one draw per replicate for every checkpoint)",
                    n_boot=int(n_boot), ci=float(ci), seed=int(seed),
                    claim="Lapuschkin et al. 2016, Sec. 6.5: the less accurate model leans more on context")
    return ds


def correlation_interval(ds: xr.Dataset, name: str) -> Interval:
    """The :class:`Interval` of a scalar of :func:`checkpoint_context`'s Dataset:
    ``spearman_map_mu``, ``spearman_map_drop``, ``spearman_map_drop_share`` or ``chance_mAP``
    (``n``: the images resampled)."""
    if name not in ds or ds[name].ndim or f"{name}_low" not in ds:
        raise ValueError(f"{name!r} is not a scalar with an interval in the Dataset; choose "
                         "spearman_map_mu, spearman_map_drop, spearman_map_drop_share or chance_mAP")
    return Interval(float(ds[name]), float(ds[f"{name}_low"]), float(ds[f"{name}_high"]),
                    int(ds["n_images"]), float(ds.attrs.get("ci", 0.95)), "percentile")


__all__ += ["correlation_interval"]


def paired_ap_drop(labels: Any, scores_a: Any, scores_b: Any, *, n_boot: int = 1000,
                   ci: float = 0.95, seed: int = 0) -> Interval:
    """``AP(a) - AP(b)`` on the same images with its paired percentile bootstrap interval: the
    value and the resamples of :func:`lrpkit.evaluate.intervals.paired_ap_interval` (same
    ``default_rng(seed)`` draws), all resamples at once (:func:`batched_average_precision`)."""
    y = np.asarray(labels, np.float64).ravel() > 0
    a, b = np.asarray(scores_a, np.float64).ravel(), np.asarray(scores_b, np.float64).ravel()
    if not (y.shape == a.shape == b.shape):
        raise ValueError(f"labels, scores_a and scores_b must be (N,) each, got {y.shape}, {a.shape}, {b.shape}")
    n = y.size
    est = float((batched_average_precision(y, a, np.arange(n)[None])
                 - batched_average_precision(y, b, np.arange(n)[None]))[0]) if n else float("nan")
    if n < 2 or not np.isfinite(est):
        return Interval(est, float("nan"), float("nan"), int(n), float(ci), "percentile")
    boots = np.concatenate([batched_average_precision(y, a, idx) - batched_average_precision(y, b, idx)
                            for idx in _index_chunks(n, n_boot, seed)])
    return _interval(est, boots, n, ci)


__all__ += ["paired_ap_drop"]
