"""Percentile bootstrap intervals (Efron & Tibshirani, "An Introduction to the Bootstrap", 1993).

Used for per-class statistics of small image samples, e.g. the outside-inside relevance ratio
``mu`` of paper 000 (eq. 11, Fig. 6) per class and model.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import xarray as xr

__all__ = ["bootstrap_ci", "bootstrap_da"]

_STATS: dict[str, Callable[..., np.ndarray]] = {"median": np.median, "mean": np.mean}


def bootstrap_ci(values: Any, *, stat: str = "median", n_boot: int = 1000, ci: float = 0.95,
                 seed: int = 0) -> tuple[float, float, float]:
    """``(estimate, low, high)``: ``stat`` of ``values`` and its percentile bootstrap interval.

    NaN values are dropped (``inf`` is kept: the median handles it); all resamples are drawn at
    once (``n_boot x n`` indices).  Fewer than 2 values give ``(estimate, nan, nan)``; none give
    NaNs.
    """
    if stat not in _STATS:
        raise ValueError(f"stat must be one of {sorted(_STATS)}, got {stat!r}")
    if not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise ValueError(f"n_boot must be a positive int, got {n_boot!r}")
    if not 0.0 < float(ci) < 1.0:
        raise ValueError(f"ci must be in (0, 1), got {ci!r}")
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[~np.isnan(v)]
    f = _STATS[stat]
    if v.size == 0:
        return float("nan"), float("nan"), float("nan")
    est = float(f(v))
    if v.size < 2:
        return est, float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    boots = f(v[rng.integers(0, v.size, (int(n_boot), v.size))], axis=1)
    a = (1.0 - float(ci)) / 2.0
    lo, hi = np.quantile(boots, [a, 1.0 - a])
    return est, float(lo), float(hi)


def bootstrap_da(da: xr.DataArray, dim: str, **kwargs: Any) -> xr.Dataset:
    """:func:`bootstrap_ci` along ``dim`` of a DataArray for every other index: a Dataset with
    ``estimate``, ``low``, ``high`` over the remaining dims (``kwargs``: stat, n_boot, ci, seed)."""
    if dim not in da.dims:
        raise ValueError(f"dim {dim!r} not in {da.dims}")
    out = xr.apply_ufunc(lambda a: np.array(bootstrap_ci(a, **kwargs)), da,
                         input_core_dims=[[dim]], output_core_dims=[["bound"]], vectorize=True)
    out = out.assign_coords(bound=["estimate", "low", "high"])
    return out.to_dataset(dim="bound")
