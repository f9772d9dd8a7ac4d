"""Intervals and verdicts: does a measured difference survive its own noise?

A ranking of heatmap methods on a handful of images, or a rate from a few hundred trials, is a
sample; this module gives each estimate its interval and turns the interval into a verdict.

* **Bootstrap over images** (Efron & Tibshirani 1993, ch. 13 percentile interval, ch. 14 BCa):
  :func:`bootstrap_interval` (one sample), :func:`paired_interval` (``stat(a) - stat(b)`` with the
  image indices resampled *jointly* for ``a`` and ``b``: method vs random, method vs method on the
  same images), :func:`ap_interval` / :func:`paired_ap_interval` (average precision,
  :func:`lrpkit.evaluate.metrics.average_precision`, recomputed on every resample of the images),
  :func:`ratio_interval` (a ratio of sums) and :func:`resample_interval` (any statistic of a
  resample of the images).  ``method="percentile"`` resamples with
  ``numpy.random.default_rng(seed)``; ``method="BCa"`` uses :func:`scipy.stats.bootstrap`.
* **Wilson score interval for a rate** (E. B. Wilson, JASA 22:209, 1927; Agresti & Coull 1998
  on why it beats the Wald and the "exact" intervals): :func:`wilson_interval`.
* **Verdicts**: :func:`difference_verdict` - ``"resolved"`` when the interval excludes the
  reference (0 for a difference), else ``"not resolved"`` (at this ``n``);
  :func:`claim_verdict` - a paper's directional claim is ``"reproduced"`` (interval on the paper's
  side), ``"contradicted"`` (on the other side) or ``"not resolved"`` (interval covers the
  reference).
* **xarray**: :func:`interval_dataset` / :func:`paired_interval_dataset` return Datasets with
  ``estimate``, ``low``, ``high``, ``n`` (and ``verdict``) over the remaining dims;
  :func:`attach_interval` stores one next to the estimates of a results Dataset (a ``bound`` dim
  ``estimate / low / high`` and ``<name>_n``); :func:`interval_frame` gives a pandas table.
* **Findings**: :func:`finding` builds one row (claim, paper value, this run's value, interval,
  n, verdict, reason) from an :class:`Interval` - the verdict and the default reason come from
  the numbers, never from hand-written text; :func:`findings_table` / :func:`findings_markdown`
  collect rows into a DataFrame / a Markdown table for a report's "Findings" section.

Resampling unit: the image.  Repeats within an image (random orders, noise draws) are averaged
*before* the bootstrap; they are not independent observations.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass
from typing import Any
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np
import xarray as xr

__all__ = ["Interval", "bootstrap_interval", "paired_interval", "resample_interval", "ratio_interval",
           "wilson_interval", "ap_interval",
           "paired_ap_interval", "bootstrap_indices", "percentile_bounds", "difference_verdict",
           "claim_verdict", "interval_dataset",
           "paired_interval_dataset", "attach_interval", "interval_frame", "Finding", "finding",
           "findings_table", "findings_markdown", "RESOLVED", "NOT_RESOLVED", "REPRODUCED",
           "CONTRADICTED", "METHODS"]

RESOLVED, NOT_RESOLVED = "resolved", "not resolved"
REPRODUCED, CONTRADICTED = "reproduced", "contradicted"
METHODS = ("percentile", "BCa")

_STATS: dict[str, Callable[..., np.ndarray]] = {"mean": np.mean, "median": np.median}
_MAX_INDEX_ELEMENTS = 2 ** 22        # resample indices drawn at once (32 MiB of int64)


@dataclass(frozen=True)
class Interval:
    """An estimate with its two-sided interval: ``low <= estimate <= high`` (usually), from ``n``
    observations at confidence ``ci`` by ``method`` (``"percentile"``, ``"BCa"``, ``"wilson"``)."""

    estimate: float
    low: float
    high: float
    n: int
    ci: float = 0.95
    method: str = "percentile"

    def excludes(self, value: float = 0.0) -> bool:
        """Whether ``value`` lies outside ``[low, high]`` (False when the interval is NaN)."""
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            return False
        return bool(value < self.low or value > self.high)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def format(self, digits: int = 3, percent: bool = False) -> str:
        """``"0.70 [0.24, 1.18]"`` (``percent``: values x 100 with a ``%``)."""
        f = _formatter(digits, percent)
        return f"{f(self.estimate)} [{f(self.low)}, {f(self.high)}]"


# --------------------------------------------------------------------------------- checks

def _check_common(n_boot: Any, ci: Any, method: str) -> None:
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise ValueError(f"n_boot must be a positive int, got {n_boot!r}")
    if not 0.0 < float(ci) < 1.0:
        raise ValueError(f"ci must be in (0, 1), got {ci!r}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")


def _stat_fn(stat: str | Callable) -> Callable[..., Any]:
    if callable(stat):
        return stat
    if stat not in _STATS:
        raise ValueError(f"stat must be one of {sorted(_STATS)} or a callable f(values, axis), "
                         f"got {stat!r}")
    return _STATS[stat]


def _as_1d(values: Any, name: str) -> np.ndarray:
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    v = np.asarray(values, dtype=np.float64)
    if sum(s > 1 for s in v.shape) > 1:
        raise ValueError(f"{name} must be one value per image (1-D), got shape {v.shape}; "
                         "average the repeats first")
    return v.ravel()


# --------------------------------------------------------------------------------- core

def _resample_stats(n: int, n_boot: int, seed: int | np.random.Generator,
                    fn: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """``fn(idx)`` over bootstrap index rows ``idx (chunk, n)``; ``(n_boot,)`` statistics.

    Drawn as ``default_rng(seed).integers(0, n, (n_boot, n))`` (in row chunks when that exceeds
    32 MiB): the same resamples as :func:`lrpkit.evaluate.bootstrap.bootstrap_ci`.
    """
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    rows = max(1, _MAX_INDEX_ELEMENTS // max(n, 1))
    out = []
    for b0 in range(0, n_boot, rows):
        idx = rng.integers(0, n, (min(rows, n_boot - b0), n))
        out.append(np.asarray(fn(idx), dtype=np.float64))
    return np.concatenate(out)


def _percentile(boots: np.ndarray, ci: float) -> tuple[float, float]:
    b = boots[~np.isnan(boots)]
    if b.size == 0:
        return float("nan"), float("nan")
    if b.size < 0.5 * boots.size:
        warnings.warn(f"only {b.size} of {boots.size} bootstrap resamples gave a statistic (the others: NaN); "
                      "the interval rests on them", RuntimeWarning, stacklevel=3)
    a = (1.0 - float(ci)) / 2.0
    lo, hi = np.quantile(b, [a, 1.0 - a])
    return float(lo), float(hi)


def bootstrap_indices(n: int, n_boot: int = 1000, seed: int | np.random.Generator = 0) -> np.ndarray:
    """The ``(n_boot, n)`` resample index rows the percentile intervals of this module draw
    (``default_rng(seed)``, same order): for statistics computed on many resamples at once
    (e.g. :func:`lrpkit.evaluate.checkpoint_context.batched_average_precision`)."""
    rows: list[np.ndarray] = []
    _resample_stats(int(n), int(n_boot), seed, lambda idx: rows.append(idx) or np.zeros(len(idx)))
    return np.concatenate(rows) if rows else np.zeros((0, int(n)), dtype=np.int64)


def percentile_bounds(boots: Any, ci: float = 0.95) -> tuple[float, float]:
    """The percentile interval ``(low, high)`` of bootstrap statistics ``boots`` (NaNs left out;
    a warning when more than half are NaN; ``(nan, nan)`` when all are)."""
    return _percentile(np.asarray(boots, dtype=np.float64).ravel(), ci)


def _bca(data: tuple[np.ndarray, ...], statistic: Callable, paired: bool, n_boot: int, ci: float,
         seed: int | np.random.Generator) -> tuple[float, float]:
    """:func:`scipy.stats.bootstrap` with ``method="BCa"`` (constant data: a zero-width interval)."""
    from scipy.stats import bootstrap

    if all(np.ptp(d) == 0 for d in data):
        est = float(statistic(*data, axis=-1))
        return est, est
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        res = bootstrap(data, statistic, n_resamples=int(n_boot), paired=paired, vectorized=True,
                        axis=-1, confidence_level=float(ci), method="BCa", rng=rng)
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def bootstrap_interval(values: Any, *, stat: str | Callable = "mean", n_boot: int = 2000,
                       ci: float = 0.95, seed: int | np.random.Generator = 0,
                       method: str = "percentile") -> Interval:
    """``stat`` of one value per image and its bootstrap interval (resampling the images).

    ``stat``: ``"mean"``, ``"median"`` or ``f(values, axis)``.  NaN values are dropped; fewer
    than 2 finite values give a NaN interval.  ``method``: ``"percentile"`` (Efron &
    Tibshirani 1993, ch. 13) or ``"BCa"`` (ch. 14, :func:`scipy.stats.bootstrap`).
    """
    _check_common(n_boot, ci, method)
    f = _stat_fn(stat)
    v = _as_1d(values, "values")
    v = v[~np.isnan(v)]
    if v.size == 0:
        return Interval(float("nan"), float("nan"), float("nan"), 0, float(ci), method)
    est = float(f(v, axis=-1))
    if v.size < 2:
        return Interval(est, float("nan"), float("nan"), int(v.size), float(ci), method)
    if method == "BCa":
        lo, hi = _bca((v,), f, False, n_boot, ci, seed)
    else:
        lo, hi = _percentile(_resample_stats(v.size, n_boot, seed, lambda i: f(v[i], axis=-1)), ci)
    return Interval(est, lo, hi, int(v.size), float(ci), method)


def paired_interval(a: Any, b: Any, *, stat: str | Callable = "mean", n_boot: int = 2000,
                    ci: float = 0.95, seed: int | np.random.Generator = 0,
                    method: str = "percentile") -> Interval:
    """``stat(a) - stat(b)`` over the same images and its paired bootstrap interval.

    ``a[i]`` and ``b[i]`` belong to image ``i`` (a method and the random baseline, or two
    methods): every resample draws image indices once and uses them for both, so the
    image-to-image spread that ``a`` and ``b`` share cancels.  Pairs with a NaN on either side are
    dropped.  For ``stat="mean"`` this is the interval of the mean per-image difference.
    """
    _check_common(n_boot, ci, method)
    f = _stat_fn(stat)
    x, y = _as_1d(a, "a"), _as_1d(b, "b")
    if x.shape != y.shape:
        raise ValueError(f"a and b must hold one value per image each, got {x.size} and {y.size}")
    keep = ~(np.isnan(x) | np.isnan(y))
    x, y = x[keep], y[keep]
    n = int(x.size)
    if n == 0:
        return Interval(float("nan"), float("nan"), float("nan"), 0, float(ci), method)

    def diff(p: np.ndarray, q: np.ndarray, axis: int = -1) -> np.ndarray:
        return f(p, axis=axis) - f(q, axis=axis)

    est = float(diff(x, y))
    if n < 2:
        return Interval(est, float("nan"), float("nan"), n, float(ci), method)
    if method == "BCa":
        lo, hi = _bca((x, y), diff, True, n_boot, ci, seed)
    else:
        lo, hi = _percentile(_resample_stats(n, n_boot, seed, lambda i: diff(x[i], y[i])), ci)
    return Interval(est, lo, hi, n, float(ci), method)


def resample_interval(statistic: Callable[[np.ndarray], float], n: int, *, n_boot: int = 2000,
                      ci: float = 0.95, seed: int | np.random.Generator = 0) -> Interval:
    """A percentile bootstrap interval of any statistic of ``n`` images.

    ``statistic(idx)`` gets an integer index array ``(n,)`` into the images (a resample, with
    repeats) and returns a float; the estimate is ``statistic(arange(n))``.  Use it for
    statistics that are not one value per image: a ratio of sums, a correlation pooled over the
    windows of the images, ...  Resamples giving NaN are left out.
    """
    _check_common(n_boot, ci, "percentile")
    n = int(n)
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    est = float(statistic(np.arange(n)))
    if n < 2:
        return Interval(est, float("nan"), float("nan"), n, float(ci), "percentile")
    boots = _resample_stats(n, n_boot, seed,
                            lambda idx: np.array([statistic(row) for row in idx], dtype=np.float64))
    lo, hi = _percentile(boots, ci)
    return Interval(est, lo, hi, n, float(ci), "percentile")


def ratio_interval(numerator: Any, denominator: Any, *, n_boot: int = 2000, ci: float = 0.95,
                   seed: int | np.random.Generator = 0) -> Interval:
    """``sum(numerator) / sum(denominator)`` over images with a paired bootstrap interval.

    A ratio of sums, not a mean of per-image ratios: an image with a near-zero denominator
    cannot dominate it (e.g. a relevance density inside / outside a box, a relative error).
    Images with a NaN on either side are dropped.
    """
    a, b = _as_1d(numerator, "numerator"), _as_1d(denominator, "denominator")
    if a.shape != b.shape:
        raise ValueError(f"numerator and denominator must hold one value per image each, got "
                         f"{a.size} and {b.size}")
    keep = ~(np.isnan(a) | np.isnan(b))
    a, b = a[keep], b[keep]
    if a.size == 0:
        return Interval(float("nan"), float("nan"), float("nan"), 0, float(ci), "percentile")

    def stat(idx: np.ndarray) -> float:
        d = b[idx].sum()
        return float(a[idx].sum() / d) if d != 0 else float("nan")
    return resample_interval(stat, a.size, n_boot=n_boot, ci=ci, seed=seed)


def wilson_interval(successes: int, n: int, *, ci: float = 0.95) -> Interval:
    """Wilson's score interval of a rate ``successes / n`` (Wilson 1927)::

        centre = (p + z^2 / 2n) / (1 + z^2 / n)
        half   = z / (1 + z^2 / n) * sqrt(p (1 - p) / n + z^2 / 4n^2)

    with ``z`` the two-sided normal quantile of ``ci``.  Unlike the Wald interval it stays in
    [0, 1] and is not empty at 0 or n successes.  ``n = 0`` gives NaNs.
    """
    from scipy.stats import norm

    if not 0.0 < float(ci) < 1.0:
        raise ValueError(f"ci must be in (0, 1), got {ci!r}")
    k, m = int(successes), int(n)
    if k != successes or m != n or m < 0 or not 0 <= k <= max(m, 0):
        raise ValueError(f"need integers 0 <= successes <= n, got successes={successes!r}, n={n!r}")
    if m == 0:
        return Interval(float("nan"), float("nan"), float("nan"), 0, float(ci), "wilson")
    z = float(norm.ppf(0.5 + float(ci) / 2.0))
    p = k / m
    denom = 1.0 + z * z / m
    centre = (p + z * z / (2 * m)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / m + z * z / (4 * m * m))
    low = 0.0 if k == 0 else max(0.0, centre - half)       # exact at the edges (no rounding)
    high = 1.0 if k == m else min(1.0, centre + half)
    return Interval(p, low, high, m, float(ci), "wilson")


# --------------------------------------------------------------------------------- AP

def _ap_inputs(labels: Any, scores: Any, difficult: Any) -> tuple[np.ndarray, ...]:
    y, s = _as_1d(labels, "labels"), _as_1d(scores, "scores")
    if y.shape != s.shape:
        raise ValueError(f"labels and scores must both be (N,), got {y.shape} and {s.shape}")
    if difficult is not None:
        d = np.asarray(difficult, dtype=bool).ravel()
        if d.shape != y.shape:
            raise ValueError(f"difficult must be (N,) like labels, got {d.shape}")
        y, s = y[~d], s[~d]
    return y, s


def _ap_boot(pos_list: Sequence[np.ndarray], score_list: Sequence[np.ndarray], sign: Sequence[float]
             ) -> Callable[[np.ndarray], np.ndarray]:
    from .metrics import average_precision

    def fn(idx: np.ndarray) -> np.ndarray:
        out = np.empty(idx.shape[0])
        for r, row in enumerate(idx):
            out[r] = sum(sg * average_precision(p[row], s[row])
                         for p, s, sg in zip(pos_list, score_list, sign))
        return out
    return fn


def ap_interval(labels: Any, scores: Any, difficult: Any = None, *, n_boot: int = 1000,
                ci: float = 0.95, seed: int | np.random.Generator = 0) -> Interval:
    """Average precision of one class (:func:`lrpkit.evaluate.metrics.average_precision`) and its
    percentile bootstrap interval over images (resamples without a positive are left out).

    ``labels`` ``(N,)`` (``> 0`` positive), ``scores`` ``(N,)``, ``difficult`` ``(N,)`` (left out
    before resampling, as in the VOC devkit).  ``n`` is the number of images.
    """
    from .metrics import average_precision

    _check_common(n_boot, ci, "percentile")
    y, s = _ap_inputs(labels, scores, difficult)
    est = average_precision(y, s)
    if y.size < 2 or not np.isfinite(est):
        return Interval(est, float("nan"), float("nan"), int(y.size), float(ci), "percentile")
    boots = _resample_stats(y.size, n_boot, seed, _ap_boot([y], [s], [1.0]))
    lo, hi = _percentile(boots, ci)
    return Interval(est, lo, hi, int(y.size), float(ci), "percentile")


def paired_ap_interval(labels: Any, scores_a: Any, scores_b: Any, *, labels_b: Any = None,
                       difficult: Any = None, n_boot: int = 1000, ci: float = 0.95,
                       seed: int | np.random.Generator = 0) -> Interval:
    """``AP(a) - AP(b)`` on the same images (a split and its counterfactual twin, or two models)
    with the image indices resampled jointly; ``labels_b`` when the twins' labels differ."""
    from .metrics import average_precision

    _check_common(n_boot, ci, "percentile")
    ya, sa = _ap_inputs(labels, scores_a, difficult)
    yb, sb = _ap_inputs(labels if labels_b is None else labels_b, scores_b, difficult)
    if ya.shape != yb.shape:
        raise ValueError(f"scores_a and scores_b must cover the same images, got {ya.size} and {yb.size}")
    est = average_precision(ya, sa) - average_precision(yb, sb)
    if ya.size < 2 or not np.isfinite(est):
        return Interval(est, float("nan"), float("nan"), int(ya.size), float(ci), "percentile")
    boots = _resample_stats(ya.size, n_boot, seed, _ap_boot([ya, yb], [sa, sb], [1.0, -1.0]))
    lo, hi = _percentile(boots, ci)
    return Interval(est, lo, hi, int(ya.size), float(ci), "percentile")


# --------------------------------------------------------------------------------- verdicts

def _bounds_of(interval: Interval | Sequence[float]) -> tuple[float, float]:
    if isinstance(interval, Interval):
        return interval.low, interval.high
    lo, hi = interval
    return float(lo), float(hi)


def difference_verdict(interval: Interval | Sequence[float], reference: float = 0.0) -> str:
    """``"resolved"`` when the interval excludes ``reference`` (0: no difference), else
    ``"not resolved"`` (at this ``n``; a NaN interval is not resolved)."""
    lo, hi = _bounds_of(interval)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return NOT_RESOLVED
    return RESOLVED if (reference < lo or reference > hi) else NOT_RESOLVED


_DIRECTIONS = {">": 1, "greater": 1, "higher": 1, "above": 1, "<": -1, "less": -1, "lower": -1,
               "below": -1, 1: 1, -1: -1}


def _direction(direction: Any) -> int:
    try:
        return _DIRECTIONS[direction]
    except (KeyError, TypeError):
        raise ValueError(f"direction must be '>' / 'greater' or '<' / 'less' (the paper's claim about "
                         f"the value relative to the reference), got {direction!r}") from None


def claim_verdict(interval: Interval | Sequence[float], direction: Any,
                  reference: float = 0.0) -> str:
    """The verdict on a paper's directional claim "value ``direction`` ``reference``".

    ``"reproduced"`` when the whole interval lies on the paper's side of ``reference``,
    ``"contradicted"`` when it lies wholly on the other side, ``"not resolved"`` when it covers
    ``reference`` (or is NaN).  E.g. "LRP's AOPC exceeds random's": the paired interval of
    ``AOPC(LRP) - AOPC(random)`` with ``direction=">"``.
    """
    d = _direction(direction)
    lo, hi = _bounds_of(interval)
    if difference_verdict((lo, hi), reference) == NOT_RESOLVED:
        return NOT_RESOLVED
    above = lo > reference
    return REPRODUCED if above == (d > 0) else CONTRADICTED


# --------------------------------------------------------------------------------- xarray

def _interval_vars(iv: Interval) -> np.ndarray:
    return np.array([iv.estimate, iv.low, iv.high, float(iv.n)])


def _to_dataset(arr: xr.DataArray, attrs: Mapping[str, Any], reference: float) -> xr.Dataset:
    arr = arr.assign_coords(bound=["estimate", "low", "high", "n"])
    ds = arr.to_dataset(dim="bound")
    ds["n"] = ds["n"].astype(np.int64)
    ver = xr.apply_ufunc(lambda lo, hi: np.vectorize(
        lambda a, b: difference_verdict((a, b), reference), otypes=[object])(lo, hi),
        ds["low"], ds["high"])
    ds["verdict"] = ver.astype(str)
    ds.attrs.update({k: v for k, v in attrs.items() if v is not None})
    ds.attrs["verdict"] = f"resolved: the interval excludes {reference}"
    return ds


def interval_dataset(da: xr.DataArray, dim: str = "image", *, stat: str = "mean",
                     n_boot: int = 2000, ci: float = 0.95, seed: int = 0,
                     method: str = "percentile", reference: float = 0.0) -> xr.Dataset:
    """:func:`bootstrap_interval` along ``dim`` for every index of the other dims.

    Returns a Dataset over the remaining dims with ``estimate``, ``low``, ``high``, ``n`` and
    ``verdict`` (:func:`difference_verdict` against ``reference``); the settings in ``attrs``.
    """
    if dim not in da.dims:
        raise ValueError(f"dim {dim!r} not in the DataArray's dims {da.dims}")
    if isinstance(stat, str):
        _stat_fn(stat)
    arr = xr.apply_ufunc(
        lambda v: _interval_vars(bootstrap_interval(v, stat=stat, n_boot=n_boot, ci=ci, seed=seed,
                                                    method=method)),
        da.astype(np.float64), input_core_dims=[[dim]], output_core_dims=[["bound"]],
        vectorize=True)
    return _to_dataset(arr, dict(stat=str(stat), n_boot=n_boot, ci=ci, seed=seed, method=method,
                                 resampled=dim), reference)


def paired_interval_dataset(da: xr.DataArray, dim: str = "image", *, over: str = "method",
                            baseline: str | None = "random", stat: str = "mean",
                            n_boot: int = 2000, ci: float = 0.95, seed: int = 0,
                            method: str = "percentile") -> xr.Dataset:
    """Paired intervals of ``stat(da[over=m]) - stat(da[over=baseline])`` resampling ``dim``.

    ``baseline`` names one entry of ``over`` (e.g. ``"random"``): the result has dim ``over``
    without it.  ``baseline=None``: every pair, dims ``(over, "versus")`` (row minus column; the
    diagonal is 0).  Variables ``estimate``, ``low``, ``high``, ``n``, ``verdict``
    (:func:`difference_verdict`: does the interval exclude 0).  Other dims are kept.
    """
    if dim not in da.dims or over not in da.dims:
        raise ValueError(f"dims {dim!r} and {over!r} must both be in the DataArray's dims {da.dims}")
    names = [str(v) for v in da[over].values] if over in da.coords else list(range(da.sizes[over]))
    da = da.astype(np.float64)

    def pair(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return _interval_vars(paired_interval(a, b, stat=stat, n_boot=n_boot, ci=ci, seed=seed,
                                              method=method))

    attrs = dict(stat=str(stat), n_boot=n_boot, ci=ci, seed=seed, method=method, resampled=dim,
                 paired="image indices resampled jointly for both sides")
    if baseline is not None:
        if baseline not in names:
            raise ValueError(f"baseline {baseline!r} is not one of {over}={names}")
        base = da.sel({over: baseline}, drop=True)
        rest = da.sel({over: [n for n in names if n != baseline]})
        arr = xr.apply_ufunc(pair, rest, base, input_core_dims=[[dim], [dim]],
                             output_core_dims=[["bound"]], vectorize=True)
        return _to_dataset(arr, {**attrs, "baseline": baseline}, 0.0)
    other = da.rename({over: "versus"})
    arr = xr.apply_ufunc(pair, da, other, input_core_dims=[[dim], [dim]],
                         output_core_dims=[["bound"]], vectorize=True)
    return _to_dataset(arr, attrs, 0.0)


def attach_interval(ds: xr.Dataset, name: str, intervals: xr.Dataset) -> xr.Dataset:
    """A copy of ``ds`` holding ``intervals`` (from :func:`interval_dataset` and friends) next to
    its estimates: ``ds[name]`` with a trailing dim ``bound`` = ``estimate, low, high``,
    ``ds[name + "_n"]`` and, when present, ``ds[name + "_verdict"]``; the settings go to
    ``ds[name].attrs``."""
    missing = [v for v in ("estimate", "low", "high", "n") if v not in intervals]
    if missing:
        raise ValueError(f"intervals lacks {missing}; build it with interval_dataset or "
                         "paired_interval_dataset")
    out = ds.copy()
    bound = xr.concat([intervals["estimate"], intervals["low"], intervals["high"]],
                      dim=xr.DataArray(["estimate", "low", "high"], dims="bound", name="bound"))
    out[name] = bound.transpose(..., "bound")
    out[name].attrs.update(intervals.attrs)
    out[f"{name}_n"] = intervals["n"]
    if "verdict" in intervals:
        out[f"{name}_verdict"] = intervals["verdict"]
    return out


def interval_frame(intervals: xr.Dataset) -> Any:
    """``estimate, low, high, n[, verdict]`` as a pandas DataFrame (one row per index)."""
    cols = [v for v in ("estimate", "low", "high", "n", "verdict") if v in intervals]
    return intervals[cols].to_dataframe()[cols]


# --------------------------------------------------------------------------------- findings

def _formatter(digits: int, percent: bool = False) -> Callable[[float], str]:
    def f(v: Any) -> str:
        if isinstance(v, str):
            return v
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return "n/a"
        v = float(v)
        if percent:
            return f"{100 * v:.{max(digits - 2, 0)}f} %"
        if v != 0 and (abs(v) >= 10 ** (digits + 1) or abs(v) < 10 ** -(digits - 1)):
            return f"{v:.{digits - 1}e}"
        return f"{v:.{digits}g}" if abs(v) >= 1 else f"{v:.{digits}f}"
    return f


@dataclass(frozen=True)
class Finding:
    """One row of a report's findings: a paper claim checked against this run's numbers."""

    claim: str
    paper: str
    value: float
    low: float
    high: float
    n: int
    verdict: str
    reason: str
    percent: bool = False


def finding(claim: str, interval: Interval, *, direction: Any, paper: Any = "",
            reference: float = 0.0, reason: str = "", value: float | None = None,
            percent: bool = False) -> Finding:
    """A :class:`Finding` whose verdict follows from ``interval`` (:func:`claim_verdict`).

    ``claim``: the paper's statement, e.g. ``"LRP a2b1 AOPC above random (Samek et al. 2017,
    Fig. 4)"``; ``interval``: this run's estimate of the compared quantity (a paired difference,
    a rate, ...); ``direction`` / ``reference``: the claim is "quantity ``direction``
    ``reference``"; ``paper``: the paper's value (number or text); ``value``: the number to show
    when it differs from ``interval.estimate`` (e.g. a rate whose interval is of a difference).

    ``reason``: one sentence on the likely cause, shown only when the verdict is
    ``"contradicted"``; without one the reason is generated (where the interval lies).  A
    ``"not resolved"`` verdict always gets the generated reason (the interval covers the
    reference at this ``n``), a ``"reproduced"`` one none.
    """
    verdict = claim_verdict(interval, direction, reference)
    fmt = _formatter(3, percent)
    ref = "0" if reference == 0 else fmt(reference)
    if verdict == NOT_RESOLVED:
        if not (math.isfinite(interval.low) and math.isfinite(interval.high)):
            why = f"no interval at n={interval.n}"
        else:
            why = f"the {interval.ci:.0%} interval covers {ref} at n={interval.n}"
    elif verdict == CONTRADICTED:
        side = "below" if interval.high < reference else "above"
        why = reason or f"the {interval.ci:.0%} interval lies {side} {ref}, opposite to the paper"
    else:
        why = ""
    if isinstance(paper, float):
        paper = fmt(paper)
    return Finding(str(claim), str(paper), float(interval.estimate if value is None else value),
                   float(interval.low), float(interval.high), int(interval.n), verdict, why, percent)


def findings_table(findings: Iterable[Finding], digits: int = 3) -> Any:
    """The findings as a pandas DataFrame: ``claim``, ``paper``, ``this run``, ``interval``,
    ``n``, ``verdict``, ``reason`` (numbers formatted with ``digits`` significant digits)."""
    import pandas as pd

    rows = []
    for f in findings:
        if not isinstance(f, Finding):
            raise TypeError(f"findings must be Finding objects (lrpkit.evaluate.intervals.finding), "
                            f"got {type(f).__name__}")
        fmt = _formatter(digits, f.percent)
        rows.append({"claim": f.claim, "paper": f.paper, "this run": fmt(f.value),
                     "interval": f"[{fmt(f.low)}, {fmt(f.high)}]", "n": f.n,
                     "verdict": f.verdict, "reason": f.reason})
    return pd.DataFrame(rows, columns=["claim", "paper", "this run", "interval", "n", "verdict",
                                       "reason"])


def findings_markdown(findings: Iterable[Finding] | Any, digits: int = 3) -> str:
    """A Markdown pipe table of :func:`findings_table` (or of a DataFrame already built)."""
    import pandas as pd

    df = findings if isinstance(findings, pd.DataFrame) else findings_table(findings, digits)

    def cell(v: Any) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    head = "| " + " | ".join(cell(c) for c in df.columns) + " |"
    sep = "|" + "|".join("---" for _ in df.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, sep, *body])
