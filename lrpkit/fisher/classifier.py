"""One-vs-rest linear SVMs on improved Fisher vectors (Lapuschkin et al. 2016, Sec. 4, App. B), their
persistence and their per-class average precision.

``f_c(x) = w_c . Phi(x) + b_c`` with ``Phi`` the improved FV of
:class:`lrpkit.fisher.encoder.FisherVectorEncoder` (power 0.5, L2): the Hellinger-kernel SVM of
Lapuschkin et al., "Analyzing Classifiers: Fisher Vectors and Deep Neural Networks", CVPR 2016,
App. B.  Average precision is :mod:`lrpkit.evaluate.metrics`.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from collections.abc import Mapping, Sequence

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.utils.validation import check_is_fitted

from .._average_precision import ap_dataset, mean_average_precision
from ..results import atomic_path, save_dataset
from .encoder import FisherVectorEncoder
from .sift import as_image_list

__all__ = ["FisherVectorClassifier", "save_fisher", "load_fisher", "evaluate"]


def _as_targets(Y: Any, n: int) -> np.ndarray:
    if hasattr(Y, "detach"):
        Y = Y.detach().cpu().numpy()
    Y = np.asarray(Y)
    if Y.ndim == 1:
        # one binary class; class indices / labels (e.g. [0, 1, 2]) are not silently binarised
        try:
            v = Y.astype(np.float64)
        except (TypeError, ValueError):
            v = None
        vals = None if v is None else np.unique(v[np.isfinite(v)])
        if vals is None or not np.isin(vals, (-1.0, 0.0, 1.0)).all():
            shown = np.unique(Y)[:6].tolist()
            raise ValueError(f"a 1-D Y is one binary class (values 0/1 or -1/1), got values "
                             f"{shown}; pass class indices as multi-hot (N, classes)")
        Y = Y[:, None]
    if Y.ndim != 2 or Y.shape[0] != n:
        raise ValueError(f"Y must be multi-hot (N={n}, classes), got shape {Y.shape}")
    if not np.isfinite(Y.astype(np.float64)).all():
        raise ValueError("Y contains NaN")
    return (Y > 0).astype(np.int64)


class FisherVectorClassifier(ClassifierMixin, BaseEstimator):
    """One-vs-rest linear SVMs on improved Fisher vectors (Lapuschkin et al. 2016, Sec. 4, App. B).

    ``f_c(x) = w_c . Phi(x) + b_c`` with ``Phi`` the improved FV (power 0.5, L2), which is the
    Hellinger-kernel SVM of App. B.

    Parameters
    ----------
    encoder : a :class:`FisherVectorEncoder` (cloned in ``fit``); ``None`` for the default.
    C : LinearSVC regularisation.  ``loss``, ``max_iter`` : LinearSVC settings.
    class_names : optional names of the ``classes`` columns of ``Y``.
    random_state : seed of the SVM solver.

    Fitted: ``encoder_``, ``coef_`` (classes, dims), ``intercept_`` (classes,), ``classes_``.
    """

    def __init__(self, encoder: FisherVectorEncoder | None = None, C: float = 1.0,
                 loss: str = "squared_hinge", max_iter: int = 5000,
                 class_names: Sequence[str] | None = None, random_state: int | None = 0):
        self.encoder = encoder
        self.C = C
        self.loss = loss
        self.max_iter = max_iter
        self.class_names = class_names
        self.random_state = random_state

    def fit(self, images: Any, Y: Any) -> FisherVectorClassifier:
        """Fit the encoder on ``images`` and one SVM per column of multi-hot ``Y`` (N, classes)."""
        imgs = as_image_list(images)
        enc = clone(self.encoder) if self.encoder is not None else FisherVectorEncoder()
        self.encoder_ = enc.fit(imgs)
        return self.fit_fv(self.encoder_.transform(imgs), Y)

    def fit_fv(self, fv: np.ndarray, Y: Any) -> FisherVectorClassifier:
        """Fit only the SVMs on improved FVs ``(N, dims)`` (the encoder must be set)."""
        from sklearn.svm import LinearSVC

        fv = np.asarray(fv, dtype=np.float64)
        Yb = _as_targets(Y, fv.shape[0])
        n_cls = Yb.shape[1]
        if self.class_names is not None and len(self.class_names) != n_cls:
            raise ValueError(f"class_names has {len(self.class_names)} names for {n_cls} classes")
        coef = np.zeros((n_cls, fv.shape[1]))
        icpt = np.zeros(n_cls)
        for c in range(n_cls):
            yc = Yb[:, c]
            if yc.min() == yc.max():           # a class never / always present
                icpt[c] = 1.0 if yc[0] else -1.0
                continue
            svm = LinearSVC(C=self.C, loss=self.loss, max_iter=self.max_iter,
                            random_state=self.random_state).fit(fv, yc)
            coef[c], icpt[c] = svm.coef_[0], svm.intercept_[0]
        self.coef_, self.intercept_ = coef, icpt
        self.classes_ = np.arange(n_cls)
        self.class_names_ = (list(map(str, self.class_names)) if self.class_names is not None
                             else [str(c) for c in range(n_cls)])
        return self

    def __sklearn_is_fitted__(self) -> bool:
        """Fitted: the encoder and the SVMs (scikit-learn's ``check_is_fitted`` protocol)."""
        return all(hasattr(self, a) for a in ("coef_", "intercept_", "encoder_"))

    def _check_fitted(self) -> None:
        check_is_fitted(self)

    def score_fv(self, fv: np.ndarray) -> np.ndarray:
        """Scores ``(N, classes)`` of **improved** FVs ``(N, dims)`` (or one ``(dims,)``).

        For raw FVs (e.g. resampling updates) call ``score_fv(improve(raw))``.
        """
        self._check_fitted()
        fv = np.asarray(fv, dtype=np.float64)
        if fv.ndim == 1:
            fv = fv[None]
        if fv.ndim != 2 or fv.shape[1] != self.coef_.shape[1]:
            raise ValueError(f"fv must be (N, {self.coef_.shape[1]}), got shape {fv.shape}")
        if not np.isfinite(fv).all():
            raise ValueError("fv contains NaN or infinite values")
        return fv @ self.coef_.T + self.intercept_

    def decision_function(self, images: Any) -> np.ndarray:
        """Scores ``(N, classes)`` of images (a tensor ``(N, 3, H, W)`` or a list of images)."""
        self._check_fitted()
        return self.score_fv(self.encoder_.transform(images))

    def predict(self, images: Any) -> np.ndarray:
        """Multi-hot predictions ``(N, classes)``: score > 0."""
        return (self.decision_function(images) > 0).astype(np.int64)

    def score(self, images: Any, Y: Any, sample_weight: Any = None) -> float:
        """Mean average precision over classes (:func:`lrpkit.evaluate.metrics.mean_average_precision`).

        Not scikit-learn's default meaning (``ClassifierMixin.score`` is accuracy, for multi-label
        ``Y`` the subset accuracy of :meth:`predict`), on purpose: the classifier is a ranker
        evaluated by AP in the paper (Table 1), the one-vs-rest SVM thresholds at 0 are not tuned,
        and scikit-learn's model selection only needs "greater is better", which mAP is.  Classes
        without positives are left out of the mean (``NaN`` if no class has one);
        ``sample_weight`` is not supported.
        """
        if sample_weight is not None:
            raise ValueError("sample_weight is not supported by the mAP score")
        s = self.decision_function(images)
        return mean_average_precision(_as_targets(Y, s.shape[0]), s)[0]


def save_fisher(model: FisherVectorClassifier, path: str | os.PathLike) -> Path:
    """Save a fitted model with joblib, atomically."""
    import joblib

    if not isinstance(model, FisherVectorClassifier):
        raise TypeError(f"model must be a FisherVectorClassifier, got {type(model).__name__}")
    model._check_fitted()
    path = Path(path)
    with atomic_path(path) as tmp:
        joblib.dump(model, tmp)
    return path


def load_fisher(path: str | os.PathLike, *,
                rebuild: str | None = "lrpkit train --force --only fisher") -> FisherVectorClassifier:
    """Load a model written by :func:`save_fisher` (or :func:`lrpkit.pipeline.fit_fisher_from_config`).

    Raises ``FileNotFoundError`` when ``path`` is missing, :class:`lrpkit._integrity.DamagedFile`
    (a ``ValueError``) naming the file and the command that rebuilds it (``rebuild``) when joblib
    cannot read it (text, random bytes, a truncation), ``TypeError`` when it holds another object.
    """
    import joblib

    from .._integrity import DamagedFile, short_reason

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no Fisher-vector model at {path}")
    try:
        model = joblib.load(path)
    except Exception as exc:  # noqa: BLE001 - pickle / numpy / zlib errors of every kind
        raise DamagedFile(path, f"not a readable joblib file: {short_reason(exc)}", rebuild) from None
    if not isinstance(model, FisherVectorClassifier):
        raise TypeError(f"{path} holds a {type(model).__name__}, not a FisherVectorClassifier")
    return model


def evaluate(model: FisherVectorClassifier, images: Any, Y: Any,
             class_names: Sequence[str] | None = None, path: str | os.PathLike | None = None,
             config: Mapping[str, Any] | None = None, fv: np.ndarray | None = None,
             difficult: Any = None):
    """Per-class average precision as an xarray Dataset (dim ``class``, string coords).

    ``difficult``: an (N, classes) mask of VOC's difficult-only pairs (``VOCDataset.ignore``),
    left out of AP as :func:`lrpkit.evaluate.metrics.average_precision` documents.

    Variables: ``ap`` (class), ``n_positive`` (class); attrs ``mAP`` and the model parameters.
    Written atomically to ``path`` (netCDF) when given.  ``fv``: improved FVs of ``images``
    already computed (then ``images`` may be ``None``).
    """
    s = model.score_fv(fv) if fv is not None else model.decision_function(images)
    Yb = _as_targets(Y, s.shape[0])
    names = list(map(str, class_names if class_names is not None else model.class_names_))
    if len(names) != Yb.shape[1]:
        raise ValueError(f"{len(names)} class names for {Yb.shape[1]} classes")
    params = {k: (list(v) if isinstance(v, tuple) else v)
              for k, v in model.encoder_.get_params().items()}
    params.update(C=model.C, loss=model.loss)
    ds = ap_dataset(Yb, s, names, difficult, config=config, model="fisher_vector", n_images=int(len(Yb)),
                    params=params)
    if path is not None:
        save_dataset(ds, path)
    return ds
