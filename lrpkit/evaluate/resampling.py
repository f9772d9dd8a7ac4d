"""Validating Fisher-vector heatmaps by local-feature resampling (Lapuschkin et al. 2016, App. D,
Algorithm 1).

Pixel flipping does not suit a bag-of-features model: changing a pixel changes every dense
descriptor that covers it.  Algorithm 1 instead perturbs the *orderless set of local features*
``L`` directly: the features are ranked by their FV-LRP relevance ``R2_l`` (most relevant
first) and replaced, ``batch_size`` at a time, by draws from the model's own GMM ``lambda``
(plausible features, near the data manifold).  The raw Fisher vector is updated incrementally
without re-encoding the image (Algorithm 1, line 6)::

    x(0) = 1/|L| sum_l Psi(l)                                   (the encoder's raw FV: a mean)
    x(i) = x(i-1) + 1/|L| sum_{new} Psi(l_new) - 1/|L| sum_{old} Psi(l_old)

and after each batch the improved FV ``Phi(x(i))`` (power 0.5, L2) is scored by the SVM,
``f(x(i)) = w_c . Phi(x(i)) + b_c``.  Two numbers summarise a set of traces (paper Fig. 7):

* ``A = 1/I sum_{i=1..I} (f(x) - f(x(i)))`` (eq. 25): the area between the unperturbed score
  and the trace; larger means the ordering found the features the decision rests on.
* ``V``: the fraction of traces whose prediction switched sign (``f > 0`` to ``f <= 0`` or
  back) at some step; ``switch_step`` is the first step at which it did (``-1``: never).

Orders compared: the four decompositions of the paper - ``epsilon_1`` and ``epsilon_100``
(eq. 22 with eps = 1, 100), ``absolute`` (eq. 23), ``plain`` (eq. 20) - and ``random`` (a
fresh random permutation per repeat).  Every rule names ``epsilon_<eps>`` for any eps >= 0.

Randomness: for image ``i`` and repeat ``r`` the GMM replacements come from
``numpy.random.default_rng([seed, i, r, 0])`` and the random order from ``[seed, i, r, 1]``;
every rule of one (image, repeat) uses the *same* replacement draws, so the rules differ only
in their order (common random numbers: a cleaner comparison with fewer repeats).

Entry points: :func:`resampling_experiment` (images -> xarray Dataset),
:func:`feature_traces` (one image's local features -> score traces), and the building blocks
:func:`resample_fv` (Algorithm 1 on raw FVs), :func:`sample_gmm`, :func:`relevance_order`,
:func:`perturbation_area` (eq. 25) and :func:`switch_steps`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from collections.abc import Mapping, Sequence

import numpy as np
import xarray as xr

from ..inputs import resolve_target
from ..results import make_attrs

# lrpkit.fisher (scikit-learn, about 2 s) is imported inside the functions that use it, so that
# ``import lrpkit.evaluate`` stays without it for the CNN metrics

__all__ = ["DEFAULT_RULES", "parse_rule", "sample_gmm", "relevance_order", "resample_fv",
           "ResampledFV", "feature_traces", "perturbation_area", "switch_steps",
           "summarize_traces", "resampling_experiment"]

#: The orders of Lapuschkin et al. 2016, Fig. 7: four FV-LRP decompositions and a random order.
DEFAULT_RULES: tuple[str, ...] = ("epsilon_1", "epsilon_100", "absolute", "plain", "random")

# ---------------------------------------------------------------------------------------------
# Parameters and building blocks
# ---------------------------------------------------------------------------------------------
def parse_rule(name: str) -> tuple[str, float] | None:
    """An order's name: an FV-LRP rule name (:func:`lrpkit.fisher.lrp.parse_rule`:
    ``"epsilon_100"`` -> ``("epsilon", 100.0)``, ``"absolute"`` / ``"plain"`` -> ``(rule, 0.0)``)
    or ``"random"`` -> ``None``.  Anything else raises ``ValueError``."""
    from lrpkit.fisher.lrp import parse_rule as parse_fv_rule

    if name == "random":
        return None
    try:
        rule, eps = parse_fv_rule(name, require_epsilon=True)
    except ValueError as exc:
        raise ValueError(f"{exc} (or 'random')") from None
    return rule, (eps if rule == "epsilon" else 0.0)


def _check_int(value: Any, name: str, minimum: int = 1) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _check_gmm(gmm: Any) -> None:
    for attr in ("weights_", "means_", "covariances_"):
        if not hasattr(gmm, attr):
            raise ValueError(f"gmm is not fitted (no {attr}); fit the Fisher-vector model first")
    if getattr(gmm, "covariance_type", "diag") != "diag":
        raise ValueError(f"gmm must have diagonal covariances, got {gmm.covariance_type!r}")


def sample_gmm(gmm: Any, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` draws ``(n, D)`` from a diagonal GMM with a numpy Generator (``lambda.generate()``).

    Component ``k ~ Categorical(pi)``, then ``l = mu_k + sigma_k * N(0, I)``.  Unlike
    ``GaussianMixture.sample`` this is driven by the given ``rng`` and keeps the draws in order.
    """
    _check_gmm(gmm)
    n = _check_int(n, "n", 0)
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    pi = np.asarray(gmm.weights_, dtype=np.float64)
    mu = np.asarray(gmm.means_, dtype=np.float64)
    sd = np.sqrt(np.asarray(gmm.covariances_, dtype=np.float64))
    k = rng.choice(pi.shape[0], size=n, p=pi / pi.sum())
    return mu[k] + sd[k] * rng.standard_normal((n, mu.shape[1]))


def relevance_order(relevance: np.ndarray) -> np.ndarray:
    """Indices of the local features by descending relevance (ties keep feature order)."""
    r = np.asarray(relevance, dtype=np.float64).ravel()
    if not np.isfinite(r).all():
        raise ValueError("relevance contains NaN or infinite values")
    return np.argsort(-r, kind="stable")


def _batch_sums(feats: np.ndarray, gmm: Any, n_steps: int, batch_size: int,
                gamma: np.ndarray | None = None) -> np.ndarray:
    """``(n_steps, dims)``: ``sum Psi(l)`` over each consecutive batch of ``feats``.

    Rows beyond ``len(feats)`` are absent (the later batches are shorter or empty).  The sum
    over a batch of ``n_b`` features is ``n_b * raw_fisher_vector(batch)`` -- the raw FV *is*
    the mean of ``Psi`` (``lrpkit.fisher.fv_contributions``) -- which avoids materialising
    ``n_b x dims`` contributions; ``gamma`` (posteriors of ``feats``) may be passed in.
    """
    from lrpkit.fisher import raw_fisher_vector

    if gamma is None:
        gamma = gmm.predict_proba(feats)
    K, D = gmm.means_.shape
    out = np.zeros((n_steps, K * (1 + 2 * D)))
    for i in range(n_steps):
        sl = slice(i * batch_size, (i + 1) * batch_size)
        chunk = feats[sl]
        if chunk.shape[0] == 0:
            break
        out[i] = chunk.shape[0] * raw_fisher_vector(chunk, gmm, gamma=gamma[sl])
    return out


@dataclass
class ResampledFV:
    """Algorithm 1 for one order: the raw FV after every step and (optionally) the features.

    ``raw`` (n_steps + 1, dims): ``raw[0]`` is the unperturbed raw FV, ``raw[i]`` the FV after
    ``i`` batches.  ``n_replaced`` (n_steps + 1,) counts the features replaced so far.
    ``features`` (M, D) is the final, modified feature set when requested.
    """

    raw: np.ndarray
    n_replaced: np.ndarray
    features: np.ndarray | None = None


def resample_fv(feats: np.ndarray, gmm: Any, order: np.ndarray, replacements: np.ndarray, *,
                batch_size: int, n_steps: int | None = None, return_features: bool = False,
                raw0: np.ndarray | None = None, new_sums: np.ndarray | None = None,
                old_sums: np.ndarray | None = None) -> ResampledFV:
    """Algorithm 1 (Lapuschkin et al. 2016, App. D) on one image's local features.

    Parameters
    ----------
    feats : (M, D) PCA-reduced local features (``encoder.local_features(image)[0]``).
    gmm : the encoder's diagonal ``GaussianMixture``.
    order : permutation (or prefix of one) of ``range(M)``: the features to replace, in order.
    replacements : (>= n_steps * batch_size, D) draws from the GMM (:func:`sample_gmm`); the
        ``j``-th replaced feature becomes ``replacements[j]``.
    batch_size : features replaced per step (> 0).
    n_steps : steps ``I``; ``None`` replaces every feature in ``order``.  Steps beyond the end
        of ``order`` replace nothing (the FV stays as it is).
    raw0, new_sums, old_sums : optional precomputed raw FV of ``feats`` and per-step sums
        ``(n_steps, dims)`` of ``Psi`` over the replacements (shared between the orders of one
        image) and over the replaced features of ``order`` (shared between repeats).

    The update is ``raw(i) = raw(i-1) + (sum Psi(new) - sum Psi(old)) / M`` with
    ``Psi = lrpkit.fisher.fv_contributions`` (the raw FV is the *mean* of ``Psi``, so this is
    scaled exactly as the encoder's raw FV), and ``raw(i)`` equals the raw FV of the modified
    feature set up to rounding.  Batch sums of ``Psi`` are formed from the batch's
    posteriors and moments (``n_b * raw_fisher_vector(batch)``), never ``n_b x dims``.
    """
    from lrpkit.fisher import raw_fisher_vector

    _check_gmm(gmm)
    batch_size = _check_int(batch_size, "batch_size")
    f = np.asarray(feats, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] == 0 or f.shape[1] != gmm.means_.shape[1]:
        raise ValueError(f"feats must be (M > 0, {gmm.means_.shape[1]}), got shape {f.shape}")
    M = f.shape[0]
    order = np.asarray(order)
    if order.ndim != 1 or not np.issubdtype(order.dtype, np.integer):
        raise ValueError(f"order must be a 1-D integer array of feature indices, got {order.dtype} "
                         f"{order.shape}")
    if order.size and (order.min() < 0 or order.max() >= M or np.unique(order).size != order.size):
        raise ValueError(f"order must hold distinct feature indices in [0, {M})")
    if n_steps is None:
        n_steps = max(1, -(-order.size // batch_size))
    n_steps = _check_int(n_steps, "n_steps")
    n_rep = min(order.size, n_steps * batch_size)
    idx = order[:n_rep]
    new = np.asarray(replacements, dtype=np.float64)
    if new.ndim != 2 or new.shape[1] != f.shape[1] or new.shape[0] < n_rep:
        raise ValueError(f"replacements must be (>= {n_rep}, {f.shape[1]}), got shape {new.shape}")
    new = new[:n_rep]

    x0 = raw_fisher_vector(f, gmm) if raw0 is None else np.asarray(raw0, dtype=np.float64)
    delta = np.zeros((n_steps, x0.shape[0]))
    if n_rep:
        s_new = _batch_sums(new, gmm, n_steps, batch_size) if new_sums is None else new_sums
        s_old = _batch_sums(f[idx], gmm, n_steps, batch_size) if old_sums is None else old_sums
        delta = (s_new[:n_steps] - s_old) / M
    raw = np.empty((n_steps + 1, x0.shape[0]))
    raw[0] = x0
    # Algorithm 1, line 6, step by step (a running sum: no re-encoding).
    for i in range(n_steps):
        raw[i + 1] = raw[i] + delta[i]
    n_replaced = np.minimum(np.arange(n_steps + 1) * batch_size, n_rep)
    out = ResampledFV(raw, n_replaced)
    if return_features:
        g = f.copy()
        g[idx] = new
        out.features = g
    return out


def perturbation_area(scores: Any) -> np.ndarray:
    """Lapuschkin et al. 2016, eq. 25: ``A = 1/I sum_{i=1..I} (f(x) - f(x(i)))`` along the last axis.

    ``scores[..., 0]`` is the unperturbed ``f(x)``, ``scores[..., i]`` the score after step
    ``i``; needs at least one step.  Average the result over traces for the paper's ``A``.
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim == 0 or s.shape[-1] < 2:
        raise ValueError(f"scores need f(x) and at least one step on the last axis, got shape {s.shape}")
    return (s[..., :1] - s[..., 1:]).mean(-1)


def switch_steps(scores: Any) -> np.ndarray:
    """First step at which the prediction (``f > 0``) differs from the unperturbed one; -1: never.

    Along the last axis (``scores[..., 0]`` = ``f(x)``); integer array of the leading shape.
    ``V`` is ``(switch_steps(scores) >= 0).mean()``.
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim == 0 or s.shape[-1] < 2:
        raise ValueError(f"scores need f(x) and at least one step on the last axis, got shape {s.shape}")
    pred = s > 0
    changed = pred[..., 1:] != pred[..., :1]
    first = np.argmax(changed, axis=-1) + 1
    return np.where(changed.any(-1), first, -1).astype(np.int64)


def summarize_traces(scores: Any) -> dict[str, Any]:
    """``A`` (eq. 25, mean over traces), ``V`` and the switch steps of traces ``(..., steps+1)``."""
    a = perturbation_area(scores)
    sw = switch_steps(scores)
    return {"A": float(np.mean(a)), "V": float(np.mean(sw >= 0)), "A_trace": a, "switch_step": sw}


# ---------------------------------------------------------------------------------------------
# One image
# ---------------------------------------------------------------------------------------------
def _check_model(model: Any) -> None:
    from lrpkit.fisher import FisherVectorClassifier

    if not isinstance(model, FisherVectorClassifier):
        raise TypeError(f"model must be a lrpkit.fisher.FisherVectorClassifier, got "
                        f"{type(model).__name__}")
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(model, ["coef_", "encoder_"])   # NotFittedError (a ValueError): "... not fitted"
    check_is_fitted(model.encoder_, "gmm_")


def _rules(rules: Sequence[str]) -> list[str]:
    if isinstance(rules, str):
        rules = [rules]
    rules = list(rules)
    if not rules:
        raise ValueError("rules is empty; give e.g. lrpkit.evaluate.resampling.DEFAULT_RULES")
    if len(set(rules)) != len(rules):
        raise ValueError(f"rules has duplicates: {rules}")
    for r in rules:
        parse_rule(r)
    return rules


def _seed_root(seed: int | np.random.Generator) -> int:
    if isinstance(seed, np.random.Generator):
        return int(seed.integers(2 ** 63))
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise TypeError(f"seed must be a non-negative int or a numpy.random.Generator, got {seed!r}")
    return int(seed)


def feature_traces(model: Any, feats: np.ndarray, target: int, *,
                   rules: Sequence[str] = DEFAULT_RULES, batch_size: int = 100,
                   n_steps: int | None = 100, repeats: int = 5,
                   seed: int | np.random.Generator = 0, image_index: int = 0,
                   relevances: Mapping[str, np.ndarray] | None = None) -> dict[str, Any]:
    """Score traces of one image under every order: ``scores`` (rule, step, repeat).

    ``feats`` (M, D) are the image's PCA-reduced local features, ``target`` the class index.
    ``relevances`` may give precomputed ``R2_l`` (M,) per rule name; otherwise they are
    computed with :func:`lrpkit.fisher.feature_relevance`.  ``image_index`` enters the seeds
    (see the module doc).  Returns a dict with ``scores`` (n_rules, n_steps + 1, repeats),
    ``n_replaced`` (n_steps + 1,), ``fx`` (the unperturbed score) and ``relevance`` per rule.
    """
    from lrpkit.fisher import feature_relevance, improve, raw_fisher_vector

    _check_model(model)
    rules = _rules(rules)
    batch_size = _check_int(batch_size, "batch_size")
    repeats = _check_int(repeats, "repeats")
    root = _seed_root(seed)
    gmm = model.encoder_.gmm_
    f = np.asarray(feats, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] == 0 or f.shape[1] != gmm.means_.shape[1]:
        raise ValueError(f"feats must be (M > 0, {gmm.means_.shape[1]}), got shape {f.shape}")
    M = f.shape[0]
    n_cls = model.coef_.shape[0]
    if isinstance(target, (bool, np.bool_)) or not isinstance(target, (int, np.integer)) \
            or not 0 <= target < n_cls:
        raise ValueError(f"target must be a class index in [0, {n_cls}), got {target!r}")
    if n_steps is None:
        n_steps = max(1, -(-M // batch_size))
    n_steps = _check_int(n_steps, "n_steps")
    n_rep = min(M, n_steps * batch_size)
    w, b = model.coef_[target], float(model.intercept_[target])

    gamma = gmm.predict_proba(f)
    rel: dict[str, np.ndarray] = {}
    orders: dict[str, np.ndarray] = {}
    for r in rules:
        spec = parse_rule(r)
        if spec is None:
            continue
        if relevances is not None and r in relevances:
            rr = np.asarray(relevances[r], dtype=np.float64).ravel()
            if rr.shape[0] != M:
                raise ValueError(f"relevances[{r!r}] has {rr.shape[0]} entries for {M} features")
        else:
            rr = feature_relevance(f, gmm, w, b, rule=spec[0], epsilon=spec[1], gamma=gamma).feature
        rel[r] = rr
        orders[r] = relevance_order(rr)[:n_rep]

    raw0 = raw_fisher_vector(f, gmm, gamma=gamma)
    old_sums = {r: _batch_sums(f[o], gmm, n_steps, batch_size, gamma[o])
                for r, o in orders.items() if n_rep}
    scores = np.empty((len(rules), n_steps + 1, repeats))
    n_replaced = None
    for rep in range(repeats):
        rng_new = np.random.default_rng([root, int(image_index), rep, 0])
        rng_ord = np.random.default_rng([root, int(image_index), rep, 1])
        new = sample_gmm(gmm, n_rep, rng_new)
        new_sums = _batch_sums(new, gmm, n_steps, batch_size) if n_rep else None
        for j, r in enumerate(rules):
            if r in orders:
                order, s_old = orders[r], old_sums.get(r)
            else:
                order = rng_ord.permutation(M)[:n_rep]
                s_old = _batch_sums(f[order], gmm, n_steps, batch_size, gamma[order]) if n_rep else None
            res = resample_fv(f, gmm, order, new, batch_size=batch_size, n_steps=n_steps,
                              raw0=raw0, new_sums=new_sums, old_sums=s_old)
            scores[j, :, rep] = model.score_fv(improve(res.raw))[:, target]
            n_replaced = res.n_replaced
    return {"scores": scores, "n_replaced": n_replaced, "fx": float(scores[0, 0, 0]),
            "relevance": rel, "rules": rules}


# ---------------------------------------------------------------------------------------------
# Many images -> Dataset
# ---------------------------------------------------------------------------------------------
def _targets(model: Any, images: list, target: Any) -> np.ndarray:
    """One class per image (``"pred"``: the top class) via :func:`lrpkit.explain.resolve_target`."""
    return resolve_target(model, images, target).cpu().numpy().astype(np.int64)


def resampling_experiment(model: Any, images: Any, target: Any = "pred", *,
                          rules: Sequence[str] = DEFAULT_RULES, batch_size: int = 100,
                          n_steps: int | None = 100, repeats: int = 5,
                          seed: int | np.random.Generator = 0,
                          image_ids: Sequence[str] | None = None,
                          config: Mapping[str, Any] | None = None,
                          progress: bool = True) -> xr.Dataset:
    """Lapuschkin et al. 2016, Fig. 7: local-feature resampling traces for every image, order and repeat.

    Parameters
    ----------
    model : a fitted :class:`lrpkit.fisher.FisherVectorClassifier`.
    images : a list of images (PIL, ``(3, H, W)``/``(H, W, 3)`` arrays) or an ``(N, 3, H, W)``
        tensor in [0, 1] (anything ``model.encoder_.local_features`` takes).
    target : class index, one per image, or ``"pred"`` (each image's top class).  The paper
        uses true-positive predictions (``f(x) > 0`` for a present class).
    rules : orders to compare (default :data:`DEFAULT_RULES`).
    batch_size : features replaced per step (paper: 100 of ~69,000).
    n_steps : steps ``I`` (paper: 100); ``None``: replace every feature of the image with the
        fewest features.  An image with fewer than ``n_steps * batch_size`` features has all of
        them replaced and then stays constant.
    repeats : repetitions with fresh GMM draws (and fresh random orders); paper: 5.
    seed : int or numpy Generator (see the module doc for how it is split).
    image_ids : names for the ``image`` coordinate (default ``"0"``, ``"1"``, ...).
    config : the run configuration, recorded in ``attrs`` (:func:`lrpkit.results.make_attrs`).

    Returns an ``xarray.Dataset`` with

    * ``score`` (image, rule, step, repeat): ``f(x(i))``, ``step`` 0 is the unperturbed image;
    * ``A_trace``, ``switch_step`` (image, rule, repeat): eq. 25 per trace and the first step
      whose prediction differs from step 0 (``-1``: never);
    * ``A`` (rule) (mean of ``A_trace``), ``V`` (rule) (fraction of traces that switched),
      ``switch_count`` (rule, step) (traces switching at each step; the bars of Fig. 7);
    * ``fx``, ``target``, ``target_class``, ``n_features`` (image); ``n_replaced``
      (image, step); ``fraction_replaced`` (image, step).
    """
    from tqdm.auto import tqdm

    from lrpkit.fisher.sift import as_image_list

    _check_model(model)
    rules = _rules(rules)
    batch_size = _check_int(batch_size, "batch_size")
    repeats = _check_int(repeats, "repeats")
    if n_steps is not None:
        n_steps = _check_int(n_steps, "n_steps")
    root = _seed_root(seed)
    imgs = as_image_list(images)
    if not imgs:
        raise ValueError("images is empty")
    if image_ids is None:
        image_ids = [str(i) for i in range(len(imgs))]
    image_ids = [str(i) for i in image_ids]
    if len(image_ids) != len(imgs):
        raise ValueError(f"{len(image_ids)} image_ids for {len(imgs)} images")
    targets = _targets(model, imgs, target)
    enc = model.encoder_
    feats = [enc.local_features(im)[0] for im in imgs]
    counts = np.array([f.shape[0] for f in feats])
    if n_steps is None:
        n_steps = max(1, -(-int(counts.min()) // batch_size))

    N, R, S = len(imgs), len(rules), n_steps + 1
    scores = np.empty((N, R, S, repeats))
    n_replaced = np.empty((N, S), np.int64)
    for i in tqdm(range(N), desc="resampling", disable=not progress):
        out = feature_traces(model, feats[i], int(targets[i]), rules=rules, batch_size=batch_size,
                             n_steps=n_steps, repeats=repeats, seed=root, image_index=i)
        scores[i] = out["scores"]
        n_replaced[i] = out["n_replaced"]
    traces = np.moveaxis(scores, 2, -1)                       # (image, rule, repeat, step)
    a_trace = perturbation_area(traces)
    sw = switch_steps(traces)
    counts_sw = np.stack([np.bincount(sw[:, j][sw[:, j] >= 0].ravel(), minlength=S)[:S]
                          for j in range(R)])
    names = list(getattr(model, "class_names_", [str(c) for c in range(model.coef_.shape[0])]))
    ds = xr.Dataset(
        {"score": (("image", "rule", "step", "repeat"), scores),
         "A_trace": (("image", "rule", "repeat"), a_trace),
         "switch_step": (("image", "rule", "repeat"), sw),
         "A": (("rule",), a_trace.mean((0, 2))),
         "V": (("rule",), (sw >= 0).mean((0, 2))),
         "switch_count": (("rule", "step"), counts_sw),
         "fx": (("image",), scores[:, 0, 0, 0]),
         "target": (("image",), targets),
         "target_class": (("image",), np.array([names[t] for t in targets], dtype=str)),
         "n_features": (("image",), counts),
         "n_replaced": (("image", "step"), n_replaced),
         "fraction_replaced": (("image", "step"), n_replaced / counts[:, None])},
        coords={"image": np.array(image_ids, dtype=str), "rule": np.array(rules, dtype=str),
                "step": np.arange(S), "repeat": np.arange(repeats)},
        attrs=make_attrs(config, experiment="fv_local_feature_resampling",
                         paper="Lapuschkin et al. 2016 (CVPR), App. D Algorithm 1, eq. 24-25, Fig. 7",
                         batch_size=batch_size, n_steps=n_steps, repeats=repeats, seed=root,
                         rules=rules, model="fisher_vector",
                         seeding="replacements default_rng([seed, image, repeat, 0]); "
                                 "random order default_rng([seed, image, repeat, 1])"))
    ds["score"].attrs["description"] = "SVM score f(x(i)) after i batches of replaced local features"
    ds["A"].attrs["description"] = "eq. 25: mean over steps 1..I of f(x) - f(x(i)), averaged over traces"
    ds["V"].attrs["description"] = "fraction of traces whose prediction (f > 0) switched at some step"
    ds["switch_step"].attrs["description"] = "first step whose prediction differs from step 0; -1: never"
    return ds
