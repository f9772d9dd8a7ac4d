"""Score drop on counterfactual twins: a measure of bias use where AP is blind.

AP ranks images: removing a copyright tag from every horse lowers each horse's score, but if the
horses still outrank the other images AP barely moves (0.750 -> 0.711 while the mean horse
score falls from 2.08 to -0.78 on lrpkit's scenes).  Lapuschkin et al. 2016 (CVPR, Sec. 5)
measure a model's use of context by a change of AP; next to it this module reports the change of
the class score itself on the same images (their twins differ only in the planted cue), with a
paired bootstrap interval over images (:func:`lrpkit.evaluate.intervals.paired_interval`) and
the paired AP interval (:func:`lrpkit.evaluate.intervals.paired_ap_interval`).
"""
from __future__ import annotations

from typing import Any
from collections.abc import Sequence

import numpy as np
import xarray as xr

from .intervals import difference_verdict, paired_interval

__all__ = ["score_drop", "twin_drop"]


def _arr(a: Any, name: str) -> np.ndarray:
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    return np.asarray(a, dtype=np.float64)


def score_drop(scores: Any, twin_scores: Any, labels: Any, *, images: Any = None,
               n_boot: int = 2000, ci: float = 0.95, seed: int = 0) -> dict[str, Any]:
    """One class: the mean score of its positive images, on the originals and on their twins.

    ``scores``, ``twin_scores``, ``labels`` ``(N,)`` (row ``i``: image ``i`` and its twin;
    ``labels > 0`` positive).  ``images``: an optional ``(N,)`` bool mask of the images to use
    (e.g. those whose twin differs: the tagged ones).  Returns a dict with ``score``,
    ``twin_score`` (means over the positives used), ``drop`` (an
    :class:`~lrpkit.evaluate.intervals.Interval` of ``mean(score - twin_score)`` over them,
    image indices resampled jointly), its ``verdict`` (resolved when the interval excludes 0),
    and ``ap_drop`` (AP on the originals minus AP on the twins over all kept images, paired).
    """
    s, st, y = _arr(scores, "scores"), _arr(twin_scores, "twin_scores"), _arr(labels, "labels")
    if not (s.ndim == st.ndim == y.ndim == 1) or not (s.shape == st.shape == y.shape):
        raise ValueError(f"scores, twin_scores and labels must be (N,) each, got {s.shape}, "
                         f"{st.shape}, {y.shape}")
    keep = np.ones(s.shape, bool) if images is None else np.asarray(images, bool).ravel()
    if keep.shape != s.shape:
        raise ValueError(f"images must be an (N,) mask like scores, got shape {keep.shape}")
    pos = keep & (y > 0)
    drop = paired_interval(s[pos], st[pos], n_boot=n_boot, ci=ci, seed=seed)
    from .checkpoint_context import paired_ap_drop   # paired_ap_interval's numbers, batched

    ap = paired_ap_drop(y[keep], s[keep], st[keep], n_boot=min(n_boot, 1000), ci=ci, seed=seed)
    return {"score": float(s[pos].mean()) if pos.any() else float("nan"),
            "twin_score": float(st[pos].mean()) if pos.any() else float("nan"),
            "drop": drop, "verdict": difference_verdict(drop), "ap_drop": ap}


def twin_drop(res: xr.Dataset, twin: str = "test_untagged", *, reference: str | None = None,
              classes: Sequence[str] | None = None, changed_only: bool = True,
              n_boot: int = 2000, ci: float = 0.95, seed: int = 0) -> xr.Dataset:
    """:func:`score_drop` for every model and class of :func:`lrpkit.evaluate.scoring.ap_by_split`.

    ``res``: its Dataset (``scores`` (split, model, image, class), ``labels`` (split, image,
    class)); ``twin``: the counterfactual split; ``reference``: the original split (default the
    first).  ``changed_only``: use only the images whose twin scores differ for some model (the
    twins that actually changed, e.g. the tagged images), so unchanged copies do not dilute the
    drop.  Returns a Dataset over (model, class) with ``score``, ``twin_score``, ``score_drop``,
    ``score_drop_low`` / ``_high``, ``score_drop_verdict``, ``ap_drop`` with its bounds, ``n``
    (positives used) and ``n_images``.
    """
    for v in ("scores", "labels"):
        if v not in res:
            raise ValueError(f"res lacks {v!r}; pass the Dataset of lrpkit.evaluate.ap_by_split")
    splits = [str(s) for s in res["split"].values]
    reference = splits[0] if reference is None else reference
    for name, sp in (("twin", twin), ("reference", reference)):
        if sp not in splits:
            raise ValueError(f"{name} split {sp!r} is not one of {splits}")
    classes = [str(c) for c in res["class"].values] if classes is None else list(classes)
    models = [str(m) for m in res["model"].values]
    s_ref = res["scores"].sel(split=reference)
    s_tw = res["scores"].sel(split=twin)
    labels = res["labels"].sel(split=reference)
    changed = (np.abs(s_ref - s_tw) > 0).any(("model", "class")).values if changed_only else None
    names = ["score", "twin_score", "score_drop", "score_drop_low", "score_drop_high", "ap_drop",
             "ap_drop_low", "ap_drop_high", "n"]
    out = {k: np.full((len(models), len(classes)), np.nan) for k in names}
    verdict = np.empty((len(models), len(classes)), dtype=object)
    n_img = int(changed.sum()) if changed is not None else int(res.sizes["image"])
    for i, m in enumerate(models):
        for j, c in enumerate(classes):
            r = score_drop(s_ref.sel(model=m, **{"class": c}).values,
                           s_tw.sel(model=m, **{"class": c}).values,
                           labels.sel(**{"class": c}).values, images=changed, n_boot=n_boot,
                           ci=ci, seed=seed)
            d, a = r["drop"], r["ap_drop"]
            vals = (r["score"], r["twin_score"], d.estimate, d.low, d.high, a.estimate, a.low,
                    a.high, d.n)
            for k, v in zip(names, vals):
                out[k][i, j] = v
            verdict[i, j] = r["verdict"]
    mc = ("model", "class")
    ds = xr.Dataset({k: (mc, v) for k, v in out.items()},
                    coords={"model": models, "class": classes})
    ds["n"] = ds["n"].astype(np.int64)
    ds["score_drop_verdict"] = (mc, verdict.astype(str))
    ds["n_images"] = ((), n_img)
    ds.attrs.update(reference=reference, twin=twin, changed_only=int(changed_only), ci=float(ci),
                    n_boot=int(n_boot), seed=int(seed),
                    measure="mean class score of the positives, originals minus twins (paired)")
    return ds
