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

__all__ = ["approximation_error", "ApproximationNotResolved"]


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


def _pooled_corr(a: np.ndarray, b: np.ndarray) -> float:
    if a.size < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def approximation_error(model: torch.nn.Module, x: Any, target: Any, patch_model: PatchModel, *,
                        stride: int = 1, samples: int = 100, prob: str = "softmax",
                        region: Any = None, seed: int = 0, z: float = 3.0, atol: float = 1e-6,
                        min_windows: int = 3, n_boot: int = 1000, ci: float = 0.95,
                        batch_size: int | None = None, on_unresolved: str = "report",
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
    for name, v in (("stride", stride), ("samples", samples), ("min_windows", min_windows)):
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
    device = model_device(model, default=x.device)
    xd, td = x.detach().to(device), t.to(device)
    bs = batch_size or auto_batch_size(tuple(x.shape), device)
    with eval_mode(model), torch.no_grad():
        p_x = target_probability(model(xd), td, prob).double().cpu().numpy()
        stream = _WindowStream(model, xd, td, patch_model, rows, cols, prob, int(bs), device,
                               progress, "pda approximation (mean)")
        p_mean = stream.run(1, None).cpu().numpy()
        gen = torch.Generator(device=device).manual_seed(int(seed))
        stream.desc = "pda approximation (samples)"
        ps = stream.run(int(samples), gen, keep=True).cpu().numpy()      # (N, W, S)
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

    W = len(rows) * len(cols)
    wr = rows.repeat_interleave(len(cols)).numpy()
    wc = cols.repeat(len(rows)).numpy()
    iw = ("image", "window")
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
        coords={"image": np.arange(n), "window": np.arange(W), "row": ("window", wr),
                "col": ("window", wc)},
        attrs={"window": k, "outer": patch_model.outer, "stride": int(stride),
               "samples": int(samples), "prob": prob, "seed": int(seed), "z": float(z),
               "atol": float(atol), "min_windows": int(min_windows), "ci": float(ci),
               "n_boot": int(n_boot), "region": "all windows" if region is None else "mask",
               "reference": "Zhou & Kainz 2018, Fig. 11 (Algorithm 2 against Algorithm 1)"})
    ds["relative_error"].attrs["description"] = "sum |d_sample - d_mean| / sum |d_sample| (examined)"
    ds["correlation"].attrs["description"] = "Pearson r of d_mean and d_sample over examined windows"
    return ds

