"""Fisher-vector pipeline: dense SIFT -> PCA -> diagonal GMM -> improved FV -> linear SVMs.

Layout and normalisation (Lapuschkin et al. 2016, App. A, eq. 12-13) follow
``skimage.feature.fisher_vector`` exactly, so that
``improve(fv_contributions(l, gmm).mean(0)) == skimage.feature.fisher_vector(l, gmm, improved=True)``
(tested to 1e-6).  For ``K`` components and ``D`` PCA dimensions the FV has
``K (1 + 2 D)`` entries::

    [ Psi_pi_1 .. Psi_pi_K | Psi_mu_1 (D) .. Psi_mu_K (D) | Psi_sigma_1 (D) .. Psi_sigma_K (D) ]

with, per local feature ``l`` and posterior ``gamma_k(l)`` (``sigma_k^2`` = ``gmm.covariances_``):

* ``Psi_pi_k(l)    = (gamma_k(l) - pi_k) / sqrt(pi_k)``                               (eq. 1/12)
* ``Psi_mu_k(l)    = gamma_k(l) / sqrt(pi_k) * (l - mu_k) / sigma_k``                 (eq. 2/12)
* ``Psi_sigma_k(l) = -gamma_k(l) / sqrt(2 pi_k) * ((l - mu_k)^2 / sigma_k^2 - 1)``   (eq. 3/12)

The sigma block carries skimage's sign, the **opposite** of paper eq. 3; a linear SVM learns the
flipped weights, and FV-LRP is unchanged by a sign flip of a dimension (``R3_d`` and the ratios
``m_d(l) / sum_l' m_d(l')`` of eq. 20-23 are invariant).

The **raw FV** of an image is the **mean** over its local features (App. A "mapping
aggregation"); the **improved FV** is ``improve(raw) = sign(raw) |raw|^0.5 / ||.||_2``.

The classifier (one-vs-rest linear SVMs on these vectors) is in :mod:`lrpkit.fisher.classifier`;
building, fitting and saving the default model from a config in :mod:`lrpkit.pipeline`.

API for local-feature resampling (Lapuschkin et al. 2016, App. D, Algorithm 1)::

    feats, frames = clf.encoder_.local_features(image)     # (M, D) PCA-reduced, Frames
    psi = fv_contributions(feats, clf.encoder_.gmm_)         # (M, K (1 + 2D)); raw FV = psi.mean(0)
    x0 = psi.mean(0)
    x1 = x0 + (fv_contributions(l_new, gmm)[0] - psi[i]) / M # Algorithm 1, line 6
    scores = clf.score_fv(improve(x1))                       # (1, classes)
"""
from __future__ import annotations

from typing import Any
from collections.abc import Sequence
import warnings

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.decomposition import PCA
from sklearn.mixture import GaussianMixture
from sklearn.utils.validation import check_is_fitted

from .sift import Frames, as_image_list, dense_sift

__all__ = ["FisherVectorEncoder", "fv_contributions", "raw_fisher_vector", "improve", "posteriors",
           "sufficient_stats", "raw_from_stats"]


# ---------------------------------------------------------------------------------------------
# Fisher-vector algebra (eq. 12-13)
# ---------------------------------------------------------------------------------------------
def _check_gmm(gmm: Any) -> None:
    if not isinstance(gmm, GaussianMixture):
        raise TypeError(f"gmm must be a sklearn GaussianMixture, got {type(gmm).__name__}")
    if getattr(gmm, "covariance_type", None) != "diag":
        raise ValueError(f"gmm must have covariance_type='diag', got {gmm.covariance_type!r}")
    check_is_fitted(gmm, "means_")


def _check_feats(feats: Any, gmm: GaussianMixture, name: str = "feats") -> np.ndarray:
    f = np.asarray(feats, dtype=np.float64)
    if f.ndim != 2 or f.shape[1] != gmm.means_.shape[1]:
        raise ValueError(f"{name} must be (M, {gmm.means_.shape[1]}), got shape {f.shape}")
    if f.shape[0] == 0:
        raise ValueError(f"{name} is empty (no local features)")
    if not np.isfinite(f).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return f


def _posteriors(f: np.ndarray, gmm: GaussianMixture) -> np.ndarray:
    """``gmm.predict_proba`` in one ``(M, 2D) x (2D, K)`` product (features already checked)."""
    prec = 1.0 / gmm.covariances_
    mu = gmm.means_
    W = np.concatenate([prec, -2.0 * mu * prec], 1)                       # (K, 2D)
    const = (np.log(gmm.weights_) - 0.5 * (np.sum(mu * mu * prec, 1) + np.sum(np.log(gmm.covariances_), 1)
                                           + mu.shape[1] * np.log(2 * np.pi)))
    logp = np.concatenate([f * f, f], 1) @ W.T
    logp *= -0.5
    logp += const
    logp -= logp.max(1, keepdims=True)
    np.exp(logp, out=logp)
    logp /= logp.sum(1, keepdims=True)
    return logp


def posteriors(feats: np.ndarray, gmm: GaussianMixture) -> np.ndarray:
    """Soft assignments ``gamma_k(l)`` ``(M, K)`` (equal to ``gmm.predict_proba``)."""
    _check_gmm(gmm)
    return _posteriors(_check_feats(feats, gmm), gmm)


def sufficient_stats(g: np.ndarray, f: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The zeroth to second order statistics of features ``f`` (M, D) under posteriors ``g``
    (M, K): ``sum_l gamma`` (K,), ``gamma^T l`` and ``gamma^T l^2`` (K, D), in one product."""
    D = f.shape[1]
    s12 = g.T @ np.concatenate([f, f * f], 1)
    return g.sum(0), s12[:, :D], s12[:, D:]


def fv_contributions(feats: np.ndarray, gmm: GaussianMixture) -> np.ndarray:
    """Per-feature raw FV embeddings ``Psi_lambda(l)`` ``(M, K (1 + 2 D))`` (eq. 12-13).

    The raw FV of the image is their **mean** over the ``M`` features; :func:`improve` of that
    mean equals ``skimage.feature.fisher_vector(feats, gmm, improved=True)``.  This
    materialises ``M x K(1+2D)`` numbers: use it for a few features at a time (resampling),
    not for whole images (use :func:`raw_fisher_vector`).
    """
    _check_gmm(gmm)
    f = _check_feats(feats, gmm)
    g = _posteriors(f, gmm)
    pi, mu, var = gmm.weights_, gmm.means_, gmm.covariances_
    sq = np.sqrt(pi)
    u = (f[:, None, :] - mu[None]) / np.sqrt(var)[None]                      # (M, K, D)
    gt = (g / sq)[:, :, None]
    psi_pi = (g - pi) / sq
    psi_mu = gt * u
    psi_sig = -gt * (u * u - 1.0) / np.sqrt(2.0)
    M = f.shape[0]
    return np.concatenate([psi_pi, psi_mu.reshape(M, -1), psi_sig.reshape(M, -1)], 1)


def raw_from_stats(s0: np.ndarray, s1: np.ndarray, s2: np.ndarray, n: int,
                   gmm: GaussianMixture) -> np.ndarray:
    """Raw FV from the sums ``s0 = sum gamma``, ``s1 = gamma^T l``, ``s2 = gamma^T l^2``."""
    pi, mu, var = gmm.weights_, gmm.means_, gmm.covariances_
    sq = np.sqrt(pi)
    p0, p1, p2 = s0 / n, s1 / n, s2 / n
    d_pi = (p0 - pi) / sq
    d_mu = (p1 - p0[:, None] * mu) / (sq[:, None] * np.sqrt(var))
    d_sig = (-p2 - p0[:, None] * mu ** 2 + p0[:, None] * var + 2 * p1 * mu) / (np.sqrt(2.0) * sq[:, None] * var)
    return np.concatenate([d_pi, d_mu.ravel(), d_sig.ravel()])


def raw_fisher_vector(feats: np.ndarray, gmm: GaussianMixture,
                      gamma: np.ndarray | None = None) -> np.ndarray:
    """Raw FV ``x = 1/|L| sum_l Psi_lambda(l)`` of one image ``(K (1 + 2D),)`` in O(M K D)."""
    _check_gmm(gmm)
    f = _check_feats(feats, gmm)
    g = _posteriors(f, gmm) if gamma is None else gamma
    return raw_from_stats(*sufficient_stats(g, f), f.shape[0], gmm)


def improve(raw_fv: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Improved FV: power normalisation ``sign(x)|x|^alpha`` then L2 (App. A; batched on rows).

    Works on one FV ``(dims,)`` or a batch ``(N, dims)``; an all-zero FV stays zero.
    """
    x = np.asarray(raw_fv, dtype=np.float64)
    if not np.isfinite(x).all():
        raise ValueError("raw_fv contains NaN or infinite values")
    y = np.sign(x) * np.abs(x) ** alpha
    n = np.linalg.norm(y, axis=-1, keepdims=True)
    return y / np.where(n > 0, n, 1.0)


# ---------------------------------------------------------------------------------------------
# Encoder
# ---------------------------------------------------------------------------------------------
class FisherVectorEncoder(TransformerMixin, BaseEstimator):
    """Images -> improved Fisher vectors (dense SIFT, PCA, diagonal GMM; Lapuschkin et al. 2016, Sec. 4).

    Parameters
    ----------
    bin_sizes, step, magnif, contrast_threshold : dense SIFT (see :mod:`lrpkit.fisher.sift`).
    pca_dim : ``D``, PCA dimensions of the local features (paper: 80).
    n_components : ``K``, GMM components.
    n_samples : at most this many SIFT descriptors (sampled evenly from the training images)
        fit the PCA and the GMM.
    max_fit_images : SIFT for the PCA / GMM sample is taken from at most this many training
        images (a seeded random subset; ``None``: all).
    gmm_max_iter, reg_covar : GaussianMixture settings.
    batch_size : images per posterior batch in :meth:`transform`.
    random_state : seed for sampling, PCA and GMM.
    n_jobs : worker processes (joblib, scikit-learn's convention: ``None`` = 1, ``-1`` = all
        cores) for the per-image work, dense SIFT of the fit sample and the encoding batches
        of :meth:`transform`.  The results do not depend on it: every image draws its fit
        sample from its own seed, and batches are encoded independently.

    Images are ``(N, 3, H, W)`` tensors / arrays in [0, 1] RGB, or lists of images of different
    sizes (``(3, H, W)``, ``(H, W, 3)``, uint8 or PIL).  Fitted attributes: ``pca_``, ``gmm_``.
    """

    def __init__(self, bin_sizes: Sequence[int] = (4, 6, 8), step: int = 3, magnif: float = 6.0,
                 contrast_threshold: float = 0.005, pca_dim: int = 64, n_components: int = 64,
                 n_samples: int = 200_000, max_fit_images: int | None = 500, gmm_max_iter: int = 100,
                 reg_covar: float = 1e-4, batch_size: int = 32, random_state: int | None = 0,
                 n_jobs: int | None = None):
        self.bin_sizes = bin_sizes
        self.step = step
        self.magnif = magnif
        self.contrast_threshold = contrast_threshold
        self.pca_dim = pca_dim
        self.n_components = n_components
        self.n_samples = n_samples
        self.max_fit_images = max_fit_images
        self.gmm_max_iter = gmm_max_iter
        self.reg_covar = reg_covar
        self.batch_size = batch_size
        self.random_state = random_state
        self.n_jobs = n_jobs

    # -- SIFT ---------------------------------------------------------------------------------
    def sift(self, image: Any) -> tuple[np.ndarray, Frames]:
        """Dense SIFT ``(M, 128)`` and frames of one image with this encoder's settings."""
        return dense_sift(image, bin_sizes=tuple(self.bin_sizes), step=self.step, magnif=self.magnif,
                          contrast_threshold=self.contrast_threshold, dtype=np.float64)

    def fit(self, images: Any, y: Any = None) -> FisherVectorEncoder:
        imgs = as_image_list(images)
        rng = np.random.default_rng(self.random_state)
        if self.max_fit_images is not None and len(imgs) > int(self.max_fit_images):
            pick = np.sort(rng.choice(len(imgs), size=int(self.max_fit_images), replace=False))
            imgs = [imgs[i] for i in pick]
        per = max(1, int(np.ceil(self.n_samples / len(imgs))))
        seeds = rng.integers(0, 2 ** 63 - 1, size=len(imgs))    # one stream per image: same sample
        sample = _map(self._sift_sample, [(img, per, sd) for img, sd in zip(imgs, seeds)],
                      self.n_jobs, "FV fit: SIFT sample")      # for any n_jobs
        X = np.concatenate(sample, 0)
        if X.shape[0] < max(self.n_components, self.pca_dim) + 1:
            raise ValueError(f"only {X.shape[0]} descriptors for a {self.pca_dim}-D PCA and "
                             f"{self.n_components} GMM components; give more or larger images")
        seed = None if self.random_state is None else int(self.random_state)
        self.pca_ = PCA(n_components=int(self.pca_dim), whiten=False, random_state=seed).fit(X)
        F = self.pca_.transform(X)
        self.gmm_ = GaussianMixture(n_components=int(self.n_components), covariance_type="diag",
                                    max_iter=int(self.gmm_max_iter), reg_covar=self.reg_covar,
                                    random_state=seed).fit(F)
        self.n_features_in_ = 3
        return self

    def _check_fitted(self) -> None:
        check_is_fitted(self, ["pca_", "gmm_"])

    @property
    def fv_dim(self) -> int:
        """Length ``K (1 + 2 D)`` of the Fisher vector."""
        self._check_fitted()
        K, D = self.gmm_.means_.shape
        return K * (1 + 2 * D)

    def project(self, descriptors: np.ndarray) -> np.ndarray:
        """PCA projection ``(s - mean) @ components.T`` (float64, no whitening)."""
        self._check_fitted()
        s = np.asarray(descriptors, dtype=np.float64)
        return (s - self.pca_.mean_) @ self.pca_.components_.T

    def local_features(self, image: Any) -> tuple[np.ndarray, Frames]:
        """PCA-reduced local features ``(M, D)`` float64 and their :class:`Frames`."""
        self._check_fitted()
        d, frames = self.sift(image)
        return self.project(d), frames

    def _sift_sample(self, img: Any, per: int, seed: int) -> np.ndarray:
        """At most ``per`` dense SIFT descriptors of one image, drawn with their own ``seed``."""
        d, _ = self.sift(img)
        idx = np.random.default_rng(int(seed)).choice(d.shape[0], size=min(per, d.shape[0]), replace=False)
        return d[idx]

    def _raw_batch(self, imgs: list) -> np.ndarray:
        """Raw FVs of a few images, with one E-step over all their local features."""
        feats = [self.local_features(im)[0] for im in imgs]
        G = _posteriors(np.concatenate(feats, 0), self.gmm_)
        out = np.empty((len(imgs), self.fv_dim))
        o = 0
        for j, f in enumerate(feats):
            g = G[o:o + f.shape[0]]
            o += f.shape[0]
            out[j] = raw_from_stats(*sufficient_stats(g, f), f.shape[0], self.gmm_)
        return out

    def raw_transform(self, images: Any) -> np.ndarray:
        """Raw FVs ``(N, K (1 + 2 D))`` (means of :func:`fv_contributions`), batched."""
        self._check_fitted()
        imgs = as_image_list(images)
        bs = max(1, int(self.batch_size))
        batches = [(imgs[s:s + bs],) for s in range(0, len(imgs), bs)]
        parts = _map(self._raw_batch, batches, self.n_jobs, "FV encode", unit="batch")
        return np.concatenate(parts, 0) if parts else np.empty((0, self.fv_dim))

    def transform(self, images: Any) -> np.ndarray:
        """Improved FVs ``(N, K (1 + 2 D))``."""
        return improve(self.raw_transform(images))


def _progress(it: Any, desc: str, unit: str = "img", total: int | None = None):
    """tqdm.auto over ``it`` when it is long enough to be worth a bar."""
    from tqdm.auto import tqdm

    n = len(it) if total is None else total
    return tqdm(it, desc=desc, unit=unit, leave=False, total=n, disable=n < 8)


def _map(fn: Any, args: list[tuple], n_jobs: int | None, desc: str, unit: str = "img") -> list:
    """``[fn(*a) for a in args]`` in order, in ``n_jobs`` joblib worker processes when
    that is more than one (and there is more than one task), with a progress bar."""
    from joblib import effective_n_jobs

    n = min(effective_n_jobs(n_jobs), len(args))
    if n <= 1:
        return [fn(*a) for a in _progress(args, desc, unit)]
    from joblib import Parallel, delayed

    with warnings.catch_warnings():
        # loky replaces a worker whose memory grew past its leak guard (the queued tasks run on
        # the new one; the results are the same) and says so with a UserWarning that is no
        # problem of this run: keep it off the console
        warnings.filterwarnings("ignore", message="A worker stopped while some jobs were given",
                                category=UserWarning)
        gen = Parallel(n_jobs=n, return_as="generator")(delayed(fn)(*a) for a in args)
        return list(_progress(gen, desc, unit, total=len(args)))
