"""Average precision: the one implementation used by CNN training, the Fisher-vector
classifier, the evaluation code and the notebooks (public as :mod:`lrpkit.evaluate.metrics`;
it lives below :mod:`lrpkit.models`, :mod:`lrpkit.fisher` and :mod:`lrpkit.evaluate` so that
each of them can use it without importing the others).

Definition
    AP of one class is :func:`sklearn.metrics.average_precision_score` of the scores
    against the binary labels: the non-interpolated area under the precision-recall curve,
    ``AP = sum_n (R_n - R_{n-1}) P_n`` over the distinct score thresholds.  (The official
    VOC2007 devkit interpolates precision at 11 recall points and gives slightly higher
    values; Lapuschkin et al., "Analyzing Classifiers: Fisher Vectors and Deep Neural
    Networks", CVPR 2016, Table 1, and Everingham et al., "The PASCAL Visual Object Classes
    (VOC) Challenge", IJCV 2010, Sec. 4.2.)

Positives
    ``labels > 0`` is positive (multi-hot ``{0, 1}`` or VOC's ``{-1, 0, 1}``).

VOC "difficult"
    ``difficult[n, c] = True`` marks an image whose only objects of class ``c`` are
    flagged difficult.  As in the VOC devkit, such (image, class) pairs are **left out** of
    class ``c``'s AP: they count neither as positives nor as negatives.

Classes without positives
    A class with no positive among the kept images has no precision-recall curve: its AP is
    ``NaN`` (never 0 or 1), and :func:`mean_average_precision` averages over the classes with
    a finite AP (``NaN`` when there is none).  A class whose kept images are all positive has
    ``AP = 1``.
"""
from __future__ import annotations

from typing import Any
from collections.abc import Sequence

import numpy as np

__all__ = ["average_precision", "mean_average_precision", "ap_dataset"]


def _np(a: Any, name: str) -> np.ndarray:
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    a = np.asarray(a)
    if a.dtype == object:
        raise TypeError(f"{name} must be numeric, got an object array")
    return a


def _check(labels: Any, scores: Any, difficult: Any, ndim: int) -> tuple[np.ndarray, ...]:
    y = _np(labels, "labels")
    s = _np(scores, "scores").astype(np.float64)
    if y.ndim != ndim or s.shape != y.shape:
        what = "(N,)" if ndim == 1 else "(N, classes)"
        raise ValueError(f"labels and scores must both be {what} of the same shape, got "
                         f"{y.shape} and {s.shape}")
    if not np.isfinite(s).all():
        raise ValueError(f"scores contain {int((~np.isfinite(s)).sum())} NaN or infinite values")
    yf = y.astype(np.float64)
    if np.isnan(yf).any():
        raise ValueError("labels contain NaN")
    d = None
    if difficult is not None:
        d = _np(difficult, "difficult").astype(bool)
        if d.shape != y.shape:
            raise ValueError(f"difficult must have the labels' shape {y.shape}, got {d.shape}")
    return yf > 0, s, d


def _ap(pos: np.ndarray, s: np.ndarray) -> float:
    if not pos.any():
        return float("nan")
    from sklearn.metrics import average_precision_score

    return float(average_precision_score(pos, s))


def average_precision(labels: Any, scores: Any, difficult: Any = None) -> float:
    """AP of one class (module docstring): ``labels`` ``(N,)`` (``> 0`` positive), ``scores``
    ``(N,)``, ``difficult`` ``(N,)`` bool (left out).  ``NaN`` when there is no positive."""
    y, s, d = _check(labels, scores, difficult, 1)
    if d is not None:
        y, s = y[~d], s[~d]
    return _ap(y, s)


def mean_average_precision(Y: Any, S: Any, difficult: Any = None) -> tuple[float, np.ndarray]:
    """``(mAP, per_class)`` for multi-label ``Y`` and scores ``S`` ``(N, classes)``.

    ``per_class`` ``(classes,)`` holds each class's :func:`average_precision` (``NaN`` for a
    class without positives); ``mAP`` is their mean over the finite ones (``NaN`` if none).
    """
    y, s, d = _check(Y, S, difficult, 2)
    ap = np.full(y.shape[1], np.nan)
    for c in range(y.shape[1]):
        keep = ~d[:, c] if d is not None else slice(None)
        ap[c] = _ap(y[keep, c], s[keep, c])
    m = float(np.mean(ap[np.isfinite(ap)])) if np.isfinite(ap).any() else float("nan")
    return m, ap


def ap_dataset(Y: Any, S: Any, classes: Sequence[str] | None = None, difficult: Any = None,
               *, config: Any = None, **attrs: Any):
    """Per-class AP as an ``xr.Dataset``: ``ap`` and ``n_positive`` (dim ``class``, string
    coords) and the scalar ``mAP`` (also in ``attrs["mAP"]``, with ``metric`` and ``attrs``)."""
    import xarray as xr

    from .results import make_attrs

    m, ap = mean_average_precision(Y, S, difficult)
    y = _np(Y, "Y").astype(np.float64) > 0
    if difficult is not None:
        y &= ~_np(difficult, "difficult").astype(bool)
    names = [str(c) for c in (classes if classes is not None else range(y.shape[1]))]
    if len(names) != y.shape[1]:
        raise ValueError(f"{len(names)} class names for {y.shape[1]} classes")
    ds = xr.Dataset({"ap": ("class", ap), "n_positive": ("class", y.sum(0).astype(np.int64)),
                     "mAP": ((), m)},
                    coords={"class": np.array(names, dtype=str)},
                    attrs=make_attrs(config, mAP=m, **{"metric": "lrpkit.evaluate.metrics."
                                                       "average_precision (non-interpolated)",
                                                       **attrs}))
    ds["ap"].attrs["description"] = "average precision per class (NaN: no positives)"
    return ds
