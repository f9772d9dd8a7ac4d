"""Layer-wise Relevance Propagation for Fisher-vector classifiers (Lapuschkin et al. 2016, Sec. 5.2, App. B-C;
Bach et al. 2016, Sec. 3).

Layers (Lapuschkin et al. 2016, Fig. 1), for class ``c`` with SVM ``f(x) = w . Phi(x) + b``:

* **Layer 3** (eq. 17): ``R3_d = w_d Phi(x)_d + b / dims``; the power and L2 normalisation
  ``Phi`` is attributed to the (Hellinger) kernel (App. B, eq. 14-16), so ``sum_d R3_d = f(x)``.
* **Layer 2** (per local feature ``l``): ``R3_d`` is split in proportion to the raw mapping
  contributions ``m_d(l) = Psi_lambda(l)_d`` (eq. 19) with denominator ``z_d = sum_l' m_d(l')``
  (the un-averaged sum, paper Sec. 5.2 ``x_d = sum_l m_d(l)``):

  - ``rule="plain"`` (eq. 20):    ``R2_l = sum_{d not in Z} R3_d m_d(l) / z_d + xi``
  - ``rule="epsilon"`` (eq. 22):  ``R2_l = sum_{d not in Z} R3_d m_d(l) / (z_d + eps sgn(z_d)) + xi``
    with ``sgn(0) = 1``; default ``eps = 100`` (Lapuschkin et al. 2016, Sec. 6.1, App. C); does not conserve.
  - ``rule="absolute"`` (eq. 23): ``R2_l = sum_{d not in Z} R3_d |m_d(l)| / sum_l' |m_d(l')| + xi``

  ``Z(x) = {d : m_d(l) = 0 for all l}`` and ``xi = sum_{d in Z} R3_d / |L|`` (uniform).  With
  the plain rule a dimension whose sum cancels, ``|z_d| <= ztol sum_l |m_d(l)|`` (default
  ``ztol = 1e-10``; e.g. pi sums with soft counts equal to ``pi_k M``), is treated like ``Z``,
  so its relevance is kept (uniformly) rather than dropped as 0/0 or amplified as ``R / 1e-17``;
  such sums count as exactly 0 (``sgn = +1``) for epsilon too.
  Computed in closed form from posteriors and features in O(M K D) (three ``(M,K)x(K,D)``
  products for plain / epsilon; per-component ``|.|`` on the features with non-negligible
  posterior for absolute); the ``M x dims``
  mapping matrix is never built.
* **Layer 1** (eq. 21, ``resolution="feature"``): ``R2_l`` spread uniformly over the pixels
  of the receptive field of ``l`` (its ``4b x 4b`` square; see :mod:`lrpkit.fisher.sift`).

**High resolution** (Bach et al. 2016, Sec. 3, ``resolution="bin"``): each ``R3_d`` of a mu / sigma
dimension ``d = delta(r, k)`` belongs to exactly one local-feature dimension ``r``, so
``R2_{l,r} = sum_k [share of R3_{mu_k r}] + [share of R3_{sigma_k r}]``.  The pi dimensions and
``xi`` belong to no single dimension: that part of ``R2_l`` goes uniformly to the 128 SIFT
dimensions directly (``FVRelevance.dims`` shows it spread over the ``D`` dimensions, so
``sum_r R2_{l,r} = R2_l``; it is never pushed through the PCA, where the z-rule would amplify
it).  The mu / sigma part is projected back through the PCA ``l_r = sum_j P_rj (s_j - mean_j)``
with the z-rule of Bach et al. 2016, eq. 1.  Bach et al. only say that "a numerical stabilization
of the denominator was necessary for good results", without a form or value; we use the epsilon
rule with one epsilon per PCA coordinate and redistribute what it absorbs:

    ``R_{s,j} = sum_r P_rj (s_j - mean_j) / (l_r + eps_r sgn(l_r)) * R2_{l,r}
               + (1 / 128) sum_r eps_r / (|l_r| + eps_r) * R2_{l,r}``

with ``eps_r = pca_epsilon * sqrt(explained_variance_r)``, i.e. in units of coordinate r's
standard deviation (on the default model these range over 0.036-0.28, so one absolute
epsilon would over-damp the small ones or not damp the large ones).  Default
``pca_epsilon = 0.5``: a coordinate keeps ``|l_r| / (|l_r| + eps_r)`` of its relevance (about
half on average) and a coordinate near 0 can no longer turn ``R2_{l,r}`` into large cancelling
``+-`` SIFT relevances.  The absorbed share is spread over the 128 SIFT dims of the descriptor,
i.e. falls back to the feature's receptive field (``pca_conserve=True``, default), so the
projection conserves exactly and the bin map sums to the feature map; ``pca_conserve=False``
drops it (literal epsilon rule).  Measured on the default scenes (trained model, 8 test images,
``rule="epsilon"``): the bin map's ``sum |R| / |sum R|`` is 25-7600 (median 35) with the
unstabilised z-rule and pi / xi through the PCA (``sum |R_sift| / sum |R_feature|`` 80-680),
1.2-13 (median 1.25; ``sum |R_sift| / sum |R_feature|`` 3.3-4.9) with the default; the feature
map's is 1.0-10 (median 1.1).  ``pca_epsilon`` 0.1 / 0.25 / 1.0 give medians 1.5 / 1.3 / 1.2
and keep 78 / 64 / 37 % of the relevance at bin resolution (0.5: 51 %); below 0.25 the maps
visibly speckle.  The 8 orientations of every spatial bin are summed and spread uniformly over
the bin's pixel rectangle: 16 times finer than the feature's receptive field.

Pixel maps conserve: every rectangle is clipped to the image and the relevance spread over the
clipped area; a rectangle entirely outside the image gives no pixel relevance.
:func:`lrpkit.explain` with ``method="fv_lrp"`` returns ``(N, 3, H, W)`` with the 2-D map
divided by 3 in each channel (channel sum == the 2-D map).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from collections.abc import Sequence

import numpy as np
import torch
from sklearn.utils.validation import check_is_fitted

from lrpkit.registry import register
from lrpkit.params import Boolean, Interval, Options, declare

from .classifier import FisherVectorClassifier
from .encoder import improve, posteriors, raw_from_stats, sufficient_stats
from .sift import Frames, as_image_list

__all__ = ["FVRelevance", "FisherLRP", "feature_relevance", "pixel_map", "RULES", "parse_rule",
           "rule_name"]

RULES = ("epsilon", "absolute", "plain")
_SQ2 = np.sqrt(2.0)
_EPS_RE = re.compile(r"^epsilon_([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)$")


def parse_rule(name: str, epsilon: float = 100.0, require_epsilon: bool = False) -> tuple[str, float]:
    """The one vocabulary of FV-LRP rule names: ``"plain"`` (eq. 20), ``"absolute"`` (eq. 23),
    ``"epsilon"`` (eq. 22, with ``epsilon``) and ``"epsilon_<eps>"`` (eq. 22 with that
    epsilon, e.g. ``"epsilon_100"``; the spelling used where a rule is one string: resampling
    orders, result coordinates, legends).  Returns ``(rule, epsilon)``; ``require_epsilon``
    refuses the bare ``"epsilon"``.  Anything else raises ``ValueError``."""
    if not isinstance(name, str):
        raise TypeError(f"rule must be a string such as 'epsilon_100', got {type(name).__name__}")
    if name in ("absolute", "plain") or (name == "epsilon" and not require_epsilon):
        return name, float(epsilon)
    m = _EPS_RE.match(name)
    if m:
        return "epsilon", float(m.group(1))
    raise ValueError(f"unknown rule {name!r}; use 'epsilon_<eps>' (e.g. 'epsilon_100'), "
                     + ("" if require_epsilon else "'epsilon' (with epsilon=...), ")
                     + "'absolute' or 'plain'")


def rule_name(rule: str, epsilon: float = 100.0) -> str:
    """The one-string name of a rule: ``rule_name("epsilon", 100) == "epsilon_100"``."""
    rule, epsilon = parse_rule(rule, epsilon)
    return f"epsilon_{epsilon:g}" if rule == "epsilon" else rule
#: mu / sigma dimensions with |z_d| <= _DIRECT_TOL * (bound on sum_l |m_d(l)|) are computed from
#: centred features instead of the expanded closed form (keeps the layer-2 error below ~1e-10 R3_d)
_DIRECT_TOL = 1e-6


@dataclass
class FVRelevance:
    """FV-LRP result for one image and one class.

    ``feature`` (M,) are ``R2_l`` (sum = ``total``); ``dims`` (M, D) the per-local-feature-
    dimension relevances (row sums = ``feature``) and ``sift`` (M, 128) their projection to SIFT
    dims, when computed (``per_dim=True``); ``frames`` the descriptors' geometry; ``fx`` the
    score ``f(x)``; ``layer3`` (dims,) the FV-dimension relevances ``R3_d`` (eq. 17).
    """

    feature: np.ndarray
    frames: Frames | None
    fx: float
    layer3: np.ndarray
    rule: str
    epsilon: float
    target: int = -1
    dims: np.ndarray | None = None
    sift: np.ndarray | None = None
    extra: dict = field(default_factory=dict)

    @property
    def total(self) -> float:
        return float(self.feature.sum())

    @property
    def bins(self) -> np.ndarray:
        """Relevance per spatial bin ``(M, 16)`` (orientations summed), bin order of Frames."""
        if self.sift is None:
            raise ValueError("no SIFT-dimension relevance: compute with per_dim=True and the PCA")
        return self.sift.reshape(self.sift.shape[0], 16, 8).sum(-1)

    def pixel_map(self, resolution: str = "feature") -> np.ndarray:
        """The 2-D heatmap ``(H, W)``: eq. 21 (``"feature"``) or per spatial bin (``"bin"``)."""
        if self.frames is None:
            raise ValueError("no frames: the relevance was computed from bare features")
        if resolution == "feature":
            return pixel_map(self.feature, self.frames.rect, self.frames.image_shape)
        if resolution == "bin":
            return pixel_map(self.bins.ravel(), self.frames.bin_rects.reshape(-1, 4),
                             self.frames.image_shape)
        raise ValueError(f"resolution must be 'feature' or 'bin', got {resolution!r}")


def pixel_map(relevance: np.ndarray, rects: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Spread each value uniformly over its rectangle ``[y0, x0, y1, x1)`` (eq. 21).

    Rectangles are clipped to the image ``shape = (H, W)`` and the value is divided by the
    clipped area, so the map sums to the relevance of all rectangles that overlap the image;
    a rectangle entirely outside contributes nothing.  O(M + H W) (difference array).
    """
    H, W = int(shape[0]), int(shape[1])
    r = np.asarray(relevance, dtype=np.float64).ravel()
    q = np.asarray(rects, dtype=np.int64).reshape(-1, 4)
    if q.shape[0] != r.shape[0]:
        raise ValueError(f"{r.shape[0]} relevances for {q.shape[0]} rectangles")
    y0, x0 = np.clip(q[:, 0], 0, H), np.clip(q[:, 1], 0, W)
    y1, x1 = np.clip(q[:, 2], 0, H), np.clip(q[:, 3], 0, W)
    area = (y1 - y0) * (x1 - x0)
    ok = area > 0
    v = np.where(ok, r / np.where(ok, area, 1), 0.0)
    W1 = W + 1
    idx = np.concatenate([y0 * W1 + x0, y0 * W1 + x1, y1 * W1 + x0, y1 * W1 + x1])
    val = np.concatenate([v, -v, -v, v])
    acc = np.bincount(idx, weights=val, minlength=(H + 1) * W1).reshape(H + 1, W1)
    return acc.cumsum(0).cumsum(1)[:H, :W]


def _layer3(w: np.ndarray, b: float, phi: np.ndarray) -> np.ndarray:
    """eq. 17: ``R3_d = w_d Phi(x)_d + b / dims``."""
    return w * phi + b / phi.shape[0]


def feature_relevance(feats: np.ndarray, gmm: Any, w: np.ndarray, b: float,
                      rule: str = "epsilon", epsilon: float = 100.0, per_dim: bool = False,
                      gamma: np.ndarray | None = None, sparse_tol: float = 1e-8,
                      ztol: float = 1e-10) -> FVRelevance:
    """FV-LRP down to local features (eq. 17, 20 / 22 / 23) in closed form, O(M K D).

    ``feats`` (M, D) are the PCA-reduced local features of one image, ``gmm`` the diagonal
    GaussianMixture, ``w`` (K(1+2D),) and ``b`` the SVM of the target class.  Returns an
    :class:`FVRelevance` without frames (``per_dim=True`` adds ``dims`` (M, D)).
    For ``rule="absolute"`` features whose posterior for component ``k`` is below
    ``sparse_tol`` times that component's largest posterior are skipped for ``k`` (their
    ``|m_d(l)|`` are negligible; ``sparse_tol=0`` is exact); conservation is unaffected.  The
    default 1e-8 skips 36 % of the (feature, component) pairs 1e-12 would visit on a 500 x 375
    image (time 0.83 -> 0.45 s) and moves no feature's relevance by more than 1e-6 of the
    largest one.
    A dimension whose sum ``z_d`` satisfies ``|z_d| <= ztol * sum_l |m_d(l)|`` counts as
    ``z_d = 0`` (cancelled to rounding noise): in ``Z(x)`` for plain, ``sgn = +1`` for epsilon.
    """
    rule, epsilon = parse_rule(rule, epsilon)
    if rule == "epsilon" and not epsilon >= 0:
        raise ValueError(f"epsilon must be >= 0, got {epsilon}")
    if not float(ztol) >= 0:
        raise ValueError(f"ztol must be >= 0, got {ztol!r}")
    f = np.asarray(feats, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] == 0 or f.shape[1] != gmm.means_.shape[1]:
        raise ValueError(f"feats must be (M>0, {gmm.means_.shape[1]}), got shape {f.shape}")
    if not np.isfinite(f).all():
        raise ValueError("feats contains NaN or infinite values")
    M, D = f.shape
    pi, mu, var = gmm.weights_, gmm.means_, gmm.covariances_
    K = pi.shape[0]
    dims = K * (1 + 2 * D)
    w = np.asarray(w, dtype=np.float64).ravel()
    if w.shape[0] != dims:
        raise ValueError(f"w must have {dims} entries (K(1+2D)), got {w.shape[0]}")
    g = posteriors(f, gmm) if gamma is None else np.asarray(gamma, dtype=np.float64)
    sq = np.sqrt(pi)
    a = 1.0 / np.sqrt(var)                                       # 1 / sigma  (K, D)
    # Per-component rescaling: m_mu, m_sigma and z_mu, z_sigma are linear in gamma_k, so they
    # are computed with gamma_k / max_l gamma_k(l) (no overflow of R3 / z for components whose
    # posteriors are ~1e-300); the ratios m / z are unchanged.
    scale = g.max(0)
    dead = scale == 0                                             # components never assigned
    scale = np.where(dead, 1.0, scale)
    gs = g / scale
    gt = gs / sq                                                  # (M, K)
    s0s, s1s, s2s = sufficient_stats(gs, f)
    sc = scale * (~dead)
    raw = raw_from_stats(s0s * sc, s1s * sc[:, None], s2s * sc[:, None], M, gmm)
    phi = improve(raw)
    fx = float(w @ phi + b)
    R3 = _layer3(w, float(b), phi)
    R3pi, R3mu, R3sg = R3[:K], R3[K:K + K * D].reshape(K, D), R3[K + K * D:].reshape(K, D)
    zmu = (s1s - s0s[:, None] * mu) * a / sq[:, None]             # sum_l m_mu(l) / scale
    zsg = -(s2s - 2 * s1s * mu + s0s[:, None] * (mu * mu - var)) * (a * a) / (_SQ2 * sq[:, None])
    zpi = raw[:K] * M
    mpi = (g - pi) / sq                                           # m_pi (M, K)

    # -- Z(x): dimensions with m_d(l) == 0 for every l (eq. 20) --------------------------------
    # A sum z_d that cancels to rounding noise while some m_d(l) != 0 (|z_d| <= ztol *
    # sum_l |m_d(l)|; e.g. pi sums when the soft counts equal pi_k M, mu sums of features placed
    # symmetrically about mu_k) counts as exactly 0: for "plain" the dimension joins Z (its
    # relevance goes to xi instead of being dropped as 0/0 or blown up as R / 1e-17), for
    # "epsilon" its sign is +1 rather than the sign of the rounding error.
    zpi = mpi.sum(0)                                              # exact sums of the m_pi used below
    zero_pi = np.all(mpi == 0, axis=0)                            # (K,)
    near_pi = (np.abs(zpi) <= ztol * np.abs(mpi).sum(0)) & ~zero_pi
    zero_mu = np.repeat(dead[:, None], D, 1)
    zero_sg = zero_mu.copy()
    near_mu = np.zeros((K, D), bool)
    near_sg = near_mu.copy()
    # mu / sigma: cancellation-free upper bounds U >= sum_l |m_d(l)| (Cauchy-Schwarz on the
    # statistics).  Where |z_d| <= direct_tol * U_d, the closed form below (z from the
    # statistics, per-feature terms expanded as l^2 A2 + l A1 + A0) would lose about
    # eps * U_d / |z_d| of R3_d: e.g. a GMM component sitting on the PCA image of the zeroed
    # low-contrast descriptors, whose features equal mu_k up to rounding, so m_mu(l) ~ 1e-14
    # and the expansion subtracts numbers ~1e14 |R3 mu|.  Those dimensions are computed
    # directly from the centred features (l - mu_k): their sums z_d, their exact sums of
    # |m_d(l)| (for Z / cancellation) and, further down, their per-feature shares.
    s0t, s2t = s0s / sq, s2s / sq[:, None]
    am = np.abs(mu)
    sf = np.sqrt(s0t[:, None] * s2t)                              # >= sum_l gt |l|
    Umu = a * (sf + s0t[:, None] * am)
    Usg = (a * a * (s2t + 2.0 * sf * am + s0t[:, None] * mu * mu) + s0t[:, None]) / _SQ2
    # (the absolute rule computes its shares from centred features anyway: only Z is needed)
    direct_tol = float(ztol) if rule == "absolute" else max(float(ztol), _DIRECT_TOL)
    direct: list[tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
    for k in np.flatnonzero(~dead):
        cm = np.flatnonzero(np.abs(zmu[k]) <= direct_tol * Umu[k])
        cs = np.flatnonzero(np.abs(zsg[k]) <= direct_tol * Usg[k])
        if not (cm.size or cs.size):
            continue
        on = np.flatnonzero(g[:, k] != 0)
        gk = gt[on, k]
        terms = []
        for c, zz, zero, near, sig in ((cm, zmu, zero_mu, near_mu, False),
                                        (cs, zsg, zero_sg, near_sg, True)):
            m = np.zeros((on.size, 0))
            if c.size:
                u = (f[np.ix_(on, c)] - mu[k, c]) * a[k, c]
                m = -(u * u - 1.0) / _SQ2 if sig else u           # m_d(l) / gt(l)
                S = gk @ np.abs(m)
                zz[k, c] = gk @ m                                  # the exact sum of these m
                zero[k, c] = S == 0
                near[k, c] = (S > 0) & (np.abs(zz[k, c]) <= ztol * S)
            terms.append(m)
        direct.append((k, on, gk, cm, terms[0], cs, terms[1]))
    zpi, zmu, zsg = (np.where(nr, 0.0, zz) for nr, zz in
                     ((near_pi, zpi), (near_mu, zmu), (near_sg, zsg)))
    if rule == "plain":
        zero_pi, zero_mu, zero_sg = zero_pi | near_pi, zero_mu | near_mu, zero_sg | near_sg
    xi = (R3pi[zero_pi].sum() + R3mu[zero_mu].sum() + R3sg[zero_sg].sum()) / M

    def coef(R, zz, zero, sc):
        # share coefficient c with c * m_scaled(l) = R3 m(l) / den;  den = sc * zz (+ eps sgn)
        if rule == "epsilon":
            den = sc * zz
            den = den + epsilon * np.where(den >= 0, 1.0, -1.0)
            num = R * sc
        else:
            den, num = zz, R
        ok = (~zero) & (den != 0)
        return np.where(ok, num / np.where(ok, den, 1.0), 0.0)

    if rule in ("plain", "epsilon"):
        cpi = coef(R3pi, zpi, zero_pi, np.ones(K))
        cmu = coef(R3mu, zmu, zero_mu, scale[:, None])
        csg = coef(R3sg, zsg, zero_sg, scale[:, None])
        # the directly computed dimensions leave the expansion
        cmu_e, csg_e = cmu.copy(), csg.copy()
        for k, _, _, cm, _, cs, _ in direct:
            cmu_e[k, cm] = 0.0
            csg_e[k, cs] = 0.0
        # sum_k gt_k [cmu (l-mu) a - csg/sqrt2 ((l-mu)^2 a^2 - 1)] = l^2 (gt@A2) + l (gt@A1) + gt@A0
        a2 = a * a
        A2 = -csg_e * a2 / _SQ2
        A1 = cmu_e * a + _SQ2 * csg_e * a2 * mu
        A0 = -cmu_e * a * mu - csg_e * (a2 * mu * mu - 1.0) / _SQ2
        B = gt @ np.concatenate([A2, A1, A0], 1)                     # (M, 3D), one product
        Rdim = (f * B[:, :D] + B[:, D:2 * D]) * f + B[:, 2 * D:]    # (M, D)
        for k, on, gk, cm, mm, cs, ms in direct:                     # centred, no cancellation
            if cm.size:
                Rdim[np.ix_(on, cm)] += gk[:, None] * (mm * cmu[k, cm])
            if cs.size:
                Rdim[np.ix_(on, cs)] += gk[:, None] * (ms * csg[k, cs])
        Rpi = mpi @ cpi                                              # (M,)
    else:  # absolute (eq. 23)
        api = np.abs(mpi)
        spi = api.sum(0)
        cpi = np.where(spi > 0, R3pi / np.where(spi > 0, spi, 1.0), 0.0)
        Rpi = api @ cpi
        Rdim = np.zeros((M, D)) if per_dim else None
        Rfeat = np.zeros(M)
        # Sparse in the posteriors: per component only features with gamma_k(l) above
        # sparse_tol * max_l gamma_k(l) enter (the others' |m_d(l)| are below that fraction).
        # gamma >= 0, so |m_mu| = gt |u| and |m_sigma| = gt |u^2 - 1| / sqrt2.
        for k in np.flatnonzero(~dead):
            on = np.flatnonzero(gs[:, k] > sparse_tol)
            gk = gt[on, k]
            u = f[on]                                             # a copy: modified in place
            u -= mu[k]
            u *= a[k]
            au = np.abs(u)
            np.multiply(u, u, out=u)
            u -= 1.0
            av = np.abs(u, out=u)
            smu, ssg = gk @ au, (gk @ av) / _SQ2
            cmu = np.where(smu > 0, R3mu[k] / np.where(smu > 0, smu, 1.0), 0.0)
            csg = np.where(ssg > 0, R3sg[k] / np.where(ssg > 0, ssg, 1.0), 0.0) / _SQ2
            if per_dim:                          # in place: no (n, D) temporaries
                au *= cmu
                av *= csg
                au += av
                au *= gk[:, None]
                Rdim[on] += au
            else:
                Rfeat[on] += gk * (au @ cmu + av @ csg)
        if per_dim:
            Rfeat = Rdim.sum(1)
    if rule != "absolute":
        Rfeat = Rdim.sum(1)
    feature = Rfeat + Rpi + xi
    out = FVRelevance(feature=feature, frames=None, fx=fx, layer3=R3, rule=rule,
                      epsilon=epsilon if rule == "epsilon" else 0.0)
    if per_dim:
        out.dims = Rdim + ((Rpi + xi) / D)[:, None]
        out.extra["uniform"] = Rpi + xi      # (M,) the pi / xi part of each feature
    out.extra["xi"] = float(xi)
    out.extra["n_zero_dims"] = int(zero_pi.sum() + zero_mu.sum() + zero_sg.sum())
    out.extra["n_cancelled_dims"] = int(near_pi.sum() + near_mu.sum() + near_sg.sum())
    return out


def project_to_sift(rdims: np.ndarray, descriptors: np.ndarray, pca: Any,
                    pca_epsilon: float = 0.5, conserve: bool = True, tol: float = 1e-12
                    ) -> np.ndarray:
    """Relevance per PCA dimension ``(M, D)`` -> per SIFT dimension ``(M, 128)``.

    Epsilon-stabilised z-rule through ``l = (s - mean) P^T`` (module docstring):
    ``R_{s,j} = (s_j - mean_j) sum_r P_rj R_r / (l_r + eps_r sgn l_r)`` with
    ``eps_r = pca_epsilon * sqrt(explained_variance_r)`` and ``sgn(0) = +1``.  The stabiliser
    absorbs ``sum_r R_r eps_r / (|l_r| + eps_r)`` per row: with ``conserve=True`` (default) that
    is spread evenly over the SIFT dimensions, so rows sum to the input rows' sums; with
    ``conserve=False`` it is dropped (the literal epsilon rule).  ``pca_epsilon=0`` is the
    plain z-rule (dimensions with ``|l_r| <= tol`` are then 0/0 and count as absorbed).
    """
    pca_epsilon = float(pca_epsilon)
    if not pca_epsilon >= 0:
        raise ValueError(f"pca_epsilon must be >= 0, got {pca_epsilon!r}")
    s = np.asarray(descriptors, dtype=np.float64) - pca.mean_
    rdims = np.asarray(rdims, dtype=np.float64)
    P = pca.components_
    if rdims.shape != (s.shape[0], P.shape[0]):
        raise ValueError(f"rdims must be (M={s.shape[0]}, D={P.shape[0]}), got {rdims.shape}")
    l = s @ P.T
    eps = pca_epsilon * np.sqrt(np.asarray(pca.explained_variance_, dtype=np.float64))
    den = l + eps * np.where(l >= 0, 1.0, -1.0)
    ok = np.abs(den) > tol
    ratio = np.where(ok, rdims / np.where(ok, den, 1.0), 0.0)
    out = s * (ratio @ P)
    if conserve:
        # absorbed by the stabiliser (and 0/0 dimensions): spread evenly, so rows conserve
        kept = np.where(ok, np.abs(l) / np.where(ok, np.abs(l) + eps, 1.0), 0.0)
        lost = (rdims * (1.0 - kept)).sum(1)
        out += (lost / s.shape[1])[:, None]
    return out


class FisherLRP:
    """FV-LRP for a fitted :class:`~lrpkit.fisher.FisherVectorClassifier`.

    ``rule`` / ``epsilon``: layer 2 (eq. 20 / 22 / 23).  ``pca_epsilon`` / ``pca_conserve``:
    the stabiliser of the PCA back-projection at ``resolution="bin"`` (:func:`project_to_sift`;
    ``eps_r`` in units of PCA coordinate r's standard deviation; the absorbed share spread over
    the descriptor's SIFT dims so pixel maps still sum to the feature relevances).

    >>> lrp = FisherLRP(clf, rule="epsilon", epsilon=100.0)
    >>> r = lrp.relevance(image, target=2, resolution="bin")    # FVRelevance with frames
    >>> r.feature, r.frames, r.pixel_map("bin")
    >>> R = lrp(x, target)                                       # (N, 3, H, W) tensor
    """

    def __init__(self, model: FisherVectorClassifier, rule: str = "epsilon", epsilon: float = 100.0,
                 pca_epsilon: float = 0.5, pca_conserve: bool = True):
        if not isinstance(model, FisherVectorClassifier):
            raise TypeError(f"model must be a FisherVectorClassifier, got {type(model).__name__}")
        check_is_fitted(model)
        rule, epsilon = parse_rule(rule, epsilon)
        if not float(pca_epsilon) >= 0:
            raise ValueError(f"pca_epsilon must be >= 0, got {pca_epsilon!r}")
        self.model, self.rule, self.epsilon = model, rule, float(epsilon)
        self.pca_epsilon, self.pca_conserve = float(pca_epsilon), bool(pca_conserve)

    def relevance(self, image: Any, target: int, resolution: str = "feature") -> FVRelevance:
        """Per-feature relevances (and, for ``resolution="bin"``, per SIFT dim) with frames."""
        self._check(target, resolution)
        desc, frames = self.model.encoder_.sift(image)
        return self.relevance_from_descriptors(desc, frames, target, resolution)

    def relevance_from_descriptors(self, descriptors: np.ndarray, frames: Frames | None, target: int,
                                   resolution: str = "feature", feats: np.ndarray | None = None
                                   ) -> FVRelevance:
        """:meth:`relevance` from SIFT ``descriptors`` (M, 128) already extracted (and, if
        given, their PCA-reduced ``feats`` (M, D)): LRP's own cost, without SIFT."""
        t = self._check(target, resolution)
        m = self.model
        enc = m.encoder_
        if feats is None:
            feats = enc.project(descriptors)
        r = feature_relevance(feats, enc.gmm_, m.coef_[t], m.intercept_[t], rule=self.rule,
                              epsilon=self.epsilon, per_dim=resolution == "bin")
        r.frames, r.target = frames, t
        if resolution == "bin":
            uni = r.extra["uniform"]
            D = r.dims.shape[1]
            # mu / sigma relevance through the PCA; the pi / xi part evenly to the SIFT dims
            r.sift = project_to_sift(r.dims - (uni / D)[:, None], descriptors, enc.pca_,
                                     self.pca_epsilon, self.pca_conserve)
            r.sift += (uni / r.sift.shape[1])[:, None]
        return r

    def _check(self, target: int, resolution: str) -> int:
        if resolution not in ("feature", "bin"):
            raise ValueError(f"resolution must be 'feature' or 'bin', got {resolution!r}")
        t = int(target)
        if not 0 <= t < self.model.coef_.shape[0]:
            raise ValueError(f"target {t} out of range for {self.model.coef_.shape[0]} classes")
        return t

    def __call__(self, x: Any, target: Any, resolution: str = "feature") -> torch.Tensor:
        imgs = as_image_list(x, "x")
        t = np.broadcast_to(np.asarray(target.cpu() if hasattr(target, "cpu") else target),
                            (len(imgs),))
        maps = [self.relevance(im, int(ti), resolution).pixel_map(resolution)
                for im, ti in zip(imgs, t)]
        shapes = {mp.shape for mp in maps}
        if len(shapes) != 1:
            raise ValueError("images of different sizes: use relevance() per image")
        R = torch.as_tensor(np.stack(maps), dtype=torch.float32)
        return (R[:, None] / 3.0).expand(-1, 3, -1, -1).contiguous()


@register("fv_lrp", model_kind="fisher",
          paper="Lapuschkin et al. 2016 (CVPR), App. C eq. 17-23; Bach et al. 2016 (ICIP) Sec. 3")
@declare(rule=Options(*RULES), epsilon=Interval(float, 0, None, closed="neither"),
         resolution=Options("feature", "bin"), pca_epsilon=Interval(float, 0, None),
         pca_conserve=Boolean())
def fv_lrp(model: Any, x: torch.Tensor, target: torch.Tensor, *, rule: str = "epsilon",
           epsilon: float = 100.0, resolution: str = "feature", pca_epsilon: float = 0.5,
           pca_conserve: bool = True) -> torch.Tensor:
    """LRP for Fisher-vector classifiers: rule 'epsilon' (eq. 22) / 'absolute' (eq. 23) / 'plain'
    (eq. 20); resolution 'feature' (eq. 21) or 'bin' (Bach et al. 2016; 16x finer;
    ``pca_epsilon`` stabilises the PCA back-projection, in units of each PCA coordinate's standard deviation,
    and ``pca_conserve`` spreads what it absorbs over the descriptor so the map conserves).

    Returns ``(N, 3, H, W)``: the 2-D pixel map divided by 3 in each channel.
    """
    R = FisherLRP(model, rule=rule, epsilon=epsilon, pca_epsilon=pca_epsilon,
                  pca_conserve=pca_conserve)(x, target, resolution=resolution)
    return R.to(dtype=x.dtype, device=x.device)
