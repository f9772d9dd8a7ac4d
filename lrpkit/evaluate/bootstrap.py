"""Percentile bootstrap intervals (Efron & Tibshirani 1993, ch. 13).

Used for per-class statistics of small image samples, e.g. the outside-inside relevance ratio
``mu`` of Lapuschkin et al. 2016 (eq. 11, Fig. 6) per class and model.
"""
from __future__ import annotations

from typing import Any
from collections.abc import Callable

import numpy as np
import xarray as xr

from .intervals import bootstrap_interval   # the one bootstrap implementation

__all__ = ["bootstrap_ci", "bootstrap_da"]

_STATS: dict[str, Callable[..., np.ndarray]] = {"median": np.median, "mean": np.mean}


def bootstrap_ci(values: Any, *, stat: str = "median", n_boot: int = 1000, ci: float = 0.95,
                 seed: int = 0) -> tuple[float, float, float]:
    """``(estimate, low, high)``: ``stat`` of ``values`` and its percentile bootstrap interval.

    NaN values are dropped (``inf`` is kept: the median handles it); all resamples are drawn at
    once (``n_boot x n`` indices).  Fewer than 2 values give ``(estimate, nan, nan)``; none give
    NaNs.  A tuple form of :func:`lrpkit.evaluate.intervals.bootstrap_interval` (percentile).
    """
    if stat not in _STATS:
        raise ValueError(f"stat must be one of {sorted(_STATS)}, got {stat!r}")
    iv = bootstrap_interval(values, stat=stat, n_boot=n_boot, ci=ci, seed=seed)
    return iv.estimate, iv.low, iv.high


def bootstrap_da(da: xr.DataArray, dim: str, **kwargs: Any) -> xr.Dataset:
    """:func:`bootstrap_ci` along ``dim`` of a DataArray for every other index: a Dataset with
    ``estimate``, ``low``, ``high`` over the remaining dims (``kwargs``: stat, n_boot, ci, seed)."""
    if dim not in da.dims:
        raise ValueError(f"dim {dim!r} not in {da.dims}")
    out = xr.apply_ufunc(lambda a: np.array(bootstrap_ci(a, **kwargs)), da,
                         input_core_dims=[[dim]], output_core_dims=[["bound"]], vectorize=True)
    out = out.assign_coords(bound=["estimate", "low", "high"])
    return out.to_dataset(dim="bound")
