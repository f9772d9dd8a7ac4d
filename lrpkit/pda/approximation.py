"""How good is the conditional-mean approximation of PDA? (Zhou & Kainz 2018, Fig. 11)

Algorithm 1 (Zintgraf et al. 2017) estimates ``p(c | x \\ x_w)`` by the *arithmetic* mean of
the predictions on ``S`` conditional samples of window ``w``; Algorithm 2 (Zhou & Kainz 2018,
eq. 11-15) runs one pass on the window at its conditional mean.  The approximation matters only
where removing the window changes the prediction, so the check is made on prediction
*differences*, over many windows:

* ``d_sample = p(c|x) - mean_s p(c | x_s)``  (Algorithm 1 with ``S`` samples; its sampling
  standard error ``sem`` from the spread of the ``S`` predictions),
* ``d_mean = p(c|x) - p(c | x')``  (Algorithm 2, ``x'`` the window at its conditional mean),
* ``error = d_sample - d_mean``; **relative error** ``sum |error| / sum |d_sample|`` (a ratio of
  sums over the windows: windows without effect cannot inflate it) and the **correlation** of
  ``d_mean`` with ``d_sample`` across windows, each with a bootstrap interval over images.

``windows=M`` examines ``M`` windows per image drawn at random (seeded, without replacement)
among those in ``region`` (all windows without one): an unbiased sample of the same ratio at a
fraction of the ``S + 1`` passes per window.  :func:`versus_few_samples` compares Algorithm 2
and Algorithm 1 with few samples (the papers' ``S = 10``) against held-out draws (Fig. 15-16).

A window "has an effect" when ``|d_sample| > max(z sem, atol)``.  With fewer than
``min_windows`` such windows among those examined the check has nothing to measure: the verdict
is ``"not resolved"`` (and ``on_unresolved="raise"`` raises) - a single fixed window whose
effect is itself at the noise level (e.g. 4e-4) tests nothing.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import xarray as xr

from .._device import model_device
from ..inputs import check_input, eval_mode, resolve_target
from .analysis import PROBS, _WindowStream, auto_batch_size, target_probability
from .patch_model import PatchModel, window_positions

__all__ = ["approximation_error", "versus_few_samples", "interval_of", "ApproximationNotResolved"]


class ApproximationNotResolved(ValueError):
    """The examined windows do not change the prediction beyond the sampling noise."""


def _region_windows(region: Any, n: int, h: int, w: int, rows: torch.Tensor, cols: torch.Tensor,
                    k: int) -> np.ndarray:
    """``(N, W)`` bool: window centres inside ``region`` (``(H, W)`` or ``(N, H, W)``)."""
    if region is None:
        return np.ones((n, len(rows) * len(cols)), bool)
    r = region.detach().cpu().numpy() if hasattr(region, "detach") else np.asarray(region)
    r = r.astype(bool)
    if r.shape == (h, w):
        r = np.broadcast_to(r, (n, h, w))
    if r.shape != (n, h, w):
        raise ValueError(f"region must be a (H, W) or (N, H, W) mask of the {n} {h}x{w} images, "
                         f"got shape {r.shape}")
    cy = (rows.numpy() + k // 2)[:, None].repeat(len(cols), 1).ravel()
    cx = (cols.numpy() + k // 2)[None, :].repeat(len(rows), 0).ravel()
    return r[:, cy, cx]


def _draw_windows(examined: np.ndarray, m: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Per image ``m`` window indices (sorted) drawn among the examined ones (fillers from the
    rest when too few) and the ``(N, m)`` mask of the examined draws."""
    rng = np.random.default_rng(seed)
    picks = np.empty((examined.shape[0], m), np.int64)
    for i, ex in enumerate(examined):
        on, off = np.flatnonzero(ex), np.flatnonzero(~ex)
        take = rng.choice(on, min(m, on.size), replace=False)
        fill = rng.choice(off, m - take.size, replace=False)
        picks[i] = np.sort(np.concatenate([take, fill]))
    return picks, np.take_along_axis(examined, picks, 1)


def _pooled_corr(a: np.ndarray, b: np.ndarray) -> float:
    if a.size < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def approximation_error(model: torch.nn.Module, x: Any, target: Any, patch_model: PatchModel, *,
                        stride: int = 1, samples: int = 100, prob: str = "softmax",
                        region: Any = None, seed: int = 0, z: float = 3.0, atol: float = 1e-6,
                        min_windows: int = 3, n_boot: int = 1000, ci: float = 0.95,
                        batch_size: int | None = None, on_unresolved: str = "report",
                        windows: int | None = None, keep_draws: bool = False,
                        progress: bool = False) -> xr.Dataset:
    """The approximation error of Algorithm 2 against Algorithm 1 over all windows (Fig. 11).

    Parameters
    ----------
    model, x, target : the classifier, ``(N, C, H, W)`` images, the class (as in
        :func:`lrpkit.explain`; ``"pred"`` for the top class).
    patch_model : a fitted :class:`lrpkit.pda.PatchModel` (its ``window`` is ``k``).
    stride : step of the window grid (:func:`lrpkit.pda.window_positions`; 1 = every position).
    samples : ``S`` conditional draws per window for Algorithm 1 (Zhou & Kainz: 500).
    prob : ``"softmax"``, ``"sigmoid"`` or ``"score"`` (:data:`lrpkit.pda.PROBS`).
    region : optional ``(H, W)`` / ``(N, H, W)`` bool mask (e.g. the object's box,
        :func:`lrpkit.evaluate.box_mask`): only windows centred in it are examined.
    z, atol : a window has an effect when ``|d_sample| > max(z * sem, atol)``.
    min_windows : fewer windows with an effect give the verdict ``"not resolved"``.
    n_boot, ci : the bootstrap over images of the relative error and the correlation.
    on_unresolved : ``"report"`` (the verdict says so) or ``"raise"``
        (:class:`ApproximationNotResolved`).
    windows : examine this many windows per image, drawn at random (``seed``) among those
        centred in ``region`` (None: all of them); an image with fewer such windows gets all of
        them plus unexamined fillers (computed, left out of every statistic).  The ``window`` dim
        is then the draw, with ``row`` / ``col`` per ``(image, window)``.
    keep_draws : also return ``p_draws`` ``(image, window, sample)``, every draw's prediction
        (for :func:`versus_few_samples`).

    Returns an ``xarray.Dataset`` with dims ``image``, ``window`` (coords ``row``, ``col``):
    ``p_x`` (image); ``p_mean``, ``p_sample``, ``sem``, ``d_mean``, ``d_sample``, ``error``,
    ``examined``, ``effect`` (image, window); the scalars ``relative_error``,
    ``noise_relative_error`` (the relative error sampling noise alone would give:
    ``sqrt(2/pi) sum sem / sum |d_sample|``), ``correlation`` (pooled over examined windows),
    each of the first and last with ``_low`` / ``_high``, ``n_examined``, ``n_effect``,
    ``verdict`` (``"resolved"`` / ``"not resolved"``) and ``reason``; ``relative_error_image``,
    ``correlation_image`` (image).
    """
    from ..evaluate.intervals import NOT_RESOLVED, RESOLVED, ratio_interval, resample_interval

    if prob not in PROBS:
        raise ValueError(f"prob must be one of {PROBS}, got {prob!r}")
    if on_unresolved not in ("report", "raise"):
        raise ValueError(f"on_unresolved must be 'report' or 'raise', got {on_unresolved!r}")
    for name, v in (("stride", stride), ("samples", samples), ("min_windows", min_windows),
                    ("windows", 1 if windows is None else windows)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    if samples < 2:
        raise ValueError(f"samples must be >= 2 (the sampling error needs a spread), got {samples}")
    if not isinstance(patch_model, PatchModel):
        raise TypeError(f"patch_model must be a fitted lrpkit.pda.PatchModel, got "
                        f"{type(patch_model).__name__}")
    x = check_input(x)
    k = patch_model.window
    patch_model.check_compatible(k, patch_model.outer, x.shape[1])
    t = resolve_target(model, x, target)
    n, _, h, w = x.shape
    rows, cols = window_positions(h, k, stride), window_positions(w, k, stride)
    examined = _region_windows(region, n, h, w, rows, cols, k)
    n_grid = len(rows) * len(cols)
    wr = rows.repeat_interleave(len(cols)).numpy()
    wc = cols.repeat(len(rows)).numpy()
    select = None
    if windows is not None and windows < n_grid:
        picks, keep = _draw_windows(examined, int(windows), seed)
        select = torch.as_tensor((np.arange(n)[:, None] * n_grid + picks).ravel())
        examined = keep
        wr, wc = wr[picks], wc[picks]
    device = model_device(model, default=x.device)
    xd, td = x.detach().to(device), t.to(device)
    bs = batch_size or auto_batch_size(tuple(x.shape), device)
    with eval_mode(model), torch.no_grad():
        p_x = target_probability(model(xd), td, prob).double().cpu().numpy()
        stream = _WindowStream(model, xd, td, patch_model, rows, cols, prob, int(bs), device,
                               progress, "pda approximation (mean)")
        p_mean = stream.run(1, None, select=select).cpu().numpy()
        gen = torch.Generator(device=device).manual_seed(int(seed))
        stream.desc = "pda approximation (samples)"
        ps = stream.run(int(samples), gen, keep=True, select=select).cpu().numpy()
    if select is not None:
        p_mean, ps = p_mean.reshape(n, -1), ps.reshape(n, -1, int(samples))   # (N, M[, S])
    p_sample = ps.mean(-1)
    sem = ps.std(-1, ddof=1) / math.sqrt(samples)
    d_sample = p_x[:, None] - p_sample
    d_mean = p_x[:, None] - p_mean
    err = d_sample - d_mean
    effect = examined & (np.abs(d_sample) > np.maximum(z * sem, atol))

    num = np.where(examined, np.abs(err), 0.0).sum(1)
    den = np.where(examined, np.abs(d_sample), 0.0).sum(1)
    noise = np.where(examined, sem, 0.0).sum(1) * math.sqrt(2 / math.pi)
    rel = ratio_interval(num, den, n_boot=n_boot, ci=ci, seed=seed)
    noise_rel = float(noise.sum() / den.sum()) if den.sum() > 0 else float("nan")

    def corr(idx: np.ndarray) -> float:
        m = examined[idx]
        return _pooled_corr(d_mean[idx][m], d_sample[idx][m])
    cor = resample_interval(corr, n, n_boot=n_boot, ci=ci, seed=seed)
    corr_img = np.array([_pooled_corr(d_mean[i][examined[i]], d_sample[i][examined[i]])
                         for i in range(n)])
    with np.errstate(invalid="ignore", divide="ignore"):
        rel_img = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)

    n_exam, n_eff = int(examined.sum()), int(effect.sum())
    if n_eff < min_windows:
        verdict = NOT_RESOLVED
        reason = (f"only {n_eff} of {n_exam} examined windows change the prediction beyond "
                  f"max({z:g} x the sampling standard error, {atol:g}); need {min_windows}: "
                  "the approximation error is not measurable here")
    elif not math.isfinite(cor.estimate):
        verdict, reason = NOT_RESOLVED, "the correlation is undefined (a constant difference)"
    else:
        verdict, reason = RESOLVED, (f"{n_eff} of {n_exam} windows with an effect; relative error "
                                     f"{rel.estimate:.3g} (sampling noise alone: {noise_rel:.3g})")
    if verdict == NOT_RESOLVED and on_unresolved == "raise":
        raise ApproximationNotResolved(f"approximation_error: {reason}")

    W = p_mean.shape[1]
    iw = ("image", "window")
    where = iw if select is not None else "window"
    ds = xr.Dataset(
        {"p_x": ("image", p_x), "p_mean": (iw, p_mean), "p_sample": (iw, p_sample),
         "sem": (iw, sem), "d_mean": (iw, d_mean), "d_sample": (iw, d_sample), "error": (iw, err),
         "examined": (iw, examined), "effect": (iw, effect),
         "relative_error": ((), rel.estimate), "relative_error_low": ((), rel.low),
         "relative_error_high": ((), rel.high), "noise_relative_error": ((), noise_rel),
         "correlation": ((), cor.estimate), "correlation_low": ((), cor.low),
         "correlation_high": ((), cor.high), "n_examined": ((), n_exam), "n_effect": ((), n_eff),
         "verdict": ((), verdict), "reason": ((), reason),
         "relative_error_image": ("image", rel_img), "correlation_image": ("image", corr_img),
         "target": ("image", t.cpu().numpy())},
        coords={"image": np.arange(n), "window": np.arange(W), "row": (where, wr),
                "col": (where, wc)},
        attrs={"window": k, "outer": patch_model.outer, "stride": int(stride),
               "samples": int(samples), "prob": prob, "seed": int(seed), "z": float(z),
               "atol": float(atol), "min_windows": int(min_windows), "ci": float(ci),
               "windows_per_image": int(W), "windows_drawn": select is not None,
               "n_boot": int(n_boot), "region": "all windows" if region is None else "mask",
               "reference": "Zhou & Kainz 2018, Fig. 11 (Algorithm 2 against Algorithm 1)"})
    if keep_draws:
        ds["p_draws"] = (("image", "window", "sample"), ps)
    ds["relative_error"].attrs["description"] = "sum |d_sample - d_mean| / sum |d_sample| (examined)"
    ds["correlation"].attrs["description"] = "Pearson r of d_mean and d_sample over examined windows"
    return ds



def versus_few_samples(ds: xr.Dataset, samples: int = 10, *, n_boot: int = 1000,
                       ci: float = 0.95, seed: int = 0) -> xr.Dataset:
    """Algorithm 2 against Algorithm 1 with few samples, both scored on held-out draws.

    Zhou & Kainz 2018 (Fig. 15-16) argue that the conditional mean (Algorithm 2) is *less noisy*
    than Algorithm 1 with the papers' ``S = 10`` samples.  From ``ds`` of
    :func:`approximation_error` with ``keep_draws=True``: the first ``samples`` draws of each
    window are Algorithm 1 at ``S = samples``; the remaining draws (at least 2) estimate the
    reference ``d_ref = p(c|x) - mean p(c|x_s)`` independently of them.  Over the examined
    windows of each image: ``err_mean = sum |d_mean - d_ref|``, ``err_few = sum |d_few - d_ref|``,
    ``scale = sum |d_ref|``.

    Returns a Dataset with ``err_mean``, ``err_few``, ``scale`` (image) and the scalars
    ``relative_error_mean``, ``relative_error_few`` (ratios of sums) and ``difference``
    (mean's minus few samples'; below 0: Algorithm 2 is closer to the reference), each with
    ``_low`` / ``_high`` (bootstrap over images, resampled jointly) and ``n`` (images).
    """
    from ..evaluate.intervals import ratio_interval, resample_interval

    if "p_draws" not in ds:
        raise ValueError("ds holds no p_draws: call approximation_error(..., keep_draws=True)")
    total = ds.sizes["sample"]
    if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) or samples < 1:
        raise ValueError(f"samples must be a positive int, got {samples!r}")
    if total - samples < 2:
        raise ValueError(f"samples={samples} leaves {total - samples} of the {total} draws for the "
                         "reference; need at least 2 (raise approximation_error's samples)")
    draws = ds["p_draws"].values
    p_x = ds["p_x"].values[:, None]
    ex = ds["examined"].values
    d_ref = p_x - draws[..., samples:].mean(-1)
    d_few = p_x - draws[..., :samples].mean(-1)
    d_mean = ds["d_mean"].values
    err_mean = np.where(ex, np.abs(d_mean - d_ref), 0.0).sum(1)
    err_few = np.where(ex, np.abs(d_few - d_ref), 0.0).sum(1)
    scale = np.where(ex, np.abs(d_ref), 0.0).sum(1)
    rel_mean = ratio_interval(err_mean, scale, n_boot=n_boot, ci=ci, seed=seed)
    rel_few = ratio_interval(err_few, scale, n_boot=n_boot, ci=ci, seed=seed)

    def diff(idx: np.ndarray) -> float:
        d = scale[idx].sum()
        return float((err_mean[idx].sum() - err_few[idx].sum()) / d) if d > 0 else float("nan")
    dif = resample_interval(diff, len(scale), n_boot=n_boot, ci=ci, seed=seed)
    out = xr.Dataset({"err_mean": ("image", err_mean), "err_few": ("image", err_few),
                      "scale": ("image", scale)}, coords={"image": ds["image"].values},
                     attrs={"samples": int(samples), "reference_samples": int(total - samples),
                            "ci": float(ci), "n_boot": int(n_boot),
                            "reference": "Zhou & Kainz 2018, Fig. 15-16"})
    for name, iv in (("relative_error_mean", rel_mean), ("relative_error_few", rel_few),
                     ("difference", dif)):
        out[name], out[f"{name}_low"], out[f"{name}_high"] = iv.estimate, iv.low, iv.high
    out["n"] = len(scale)
    return out


def interval_of(ds: xr.Dataset, name: str) -> Any:
    """The :class:`lrpkit.evaluate.intervals.Interval` of scalar ``name`` with ``name_low`` /
    ``name_high`` in ``ds`` (:func:`approximation_error`, :func:`versus_few_samples`); ``n`` is
    the number of images."""
    from ..evaluate.intervals import Interval

    for v in (name, f"{name}_low", f"{name}_high"):
        if v not in ds:
            raise KeyError(f"{v!r} not in the Dataset (variables: {sorted(ds.data_vars)})")
    return Interval(float(ds[name]), float(ds[f"{name}_low"]), float(ds[f"{name}_high"]),
                    int(ds.sizes["image"]), float(ds.attrs.get("ci", 0.95)), "percentile")
