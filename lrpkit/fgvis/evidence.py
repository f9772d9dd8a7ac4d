"""Intervals and findings for FGVis' experiments (notebook 06), from their result Datasets.

Wagner, Koehler, Gindele, Hetzel, Wiedemer, Behnke, "Interpretable and Fine-Grained Visual
Explanations for Convolutional Neural Networks", CVPR 2019.

Each function reads one Dataset of :mod:`lrpkit.fgvis.experiments` and gives a table with
``estimate [low, high] (n)`` columns, or adds the paper's claims it tests to a
:class:`lrpkit.evaluate.findings.Findings`, their verdicts following from the intervals:

* Table 1 (:func:`defence_table`, :func:`goal_curve`, :func:`defence_findings`): Wilson 95 %
  intervals (Wilson 1927) of the adversarial success rate with and without the defence, the rate
  as a function of the goal score, and the paired difference (the same images run both ways;
  bootstrap over images, Efron & Tibshirani 1993).
* Table 2 (:func:`deletion_intervals`, :func:`deletion_table`, :func:`deletion_findings`):
  deletion-metric AUC per method and each method minus FGVis, paired over images.
* Table A3 (:func:`colour_table`, :func:`colour_findings`): the share of images keeping their
  class under the paper's cyclic colour swaps, Wilson intervals per class and swap.
* The tag probe (:func:`tag_density`, :func:`tag_findings`): the deleted-mass density inside /
  outside the tag box as a ratio of sums over images (a mean of per-image ratios explodes where
  an image's outside density is near zero).

The interval functions come from :mod:`lrpkit.evaluate.intervals`; nothing is re-implemented.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from ..evaluate.findings import Findings
from ..evaluate.intervals import (Interval, interval_dataset, paired_interval,
                                  paired_interval_dataset, ratio_interval, wilson_interval)

__all__ = ["PAPER", "defence_table", "goal_curve", "defence_successes", "defence_findings",
           "deletion_intervals", "deletion_table", "deletion_findings", "colour_table",
           "colour_findings", "tag_density", "tag_findings", "fmt_interval"]

#: the paper's values quoted by the findings (Wagner et al. 2019)
PAPER: dict[str, str] = {
    "table1_off": "100 %",
    "table1_on": "0.0-0.2 %",
    "table1_drop": "100 % -> 0.0-0.2 %",
    "table2": "FGVis lowest (best) deletion AUC of the methods compared",
    "a3_biased": "8.3 % kept",
    "a3_free": "83.3 % kept",
    "tag": "evidence of a learned bias (Sec. 4.3)",
}
#: a defended rate "at the paper's level": Table 1's largest defended rate
PAPER_DEFENDED_MAX = 0.002


def fmt_interval(iv: Interval, percent: bool = False, digits: int = 3) -> str:
    """``"estimate [low, high]"`` (``percent``: in %)."""
    return iv.format(digits, percent)


# ------------------------------------------------------------------------------- Table 1

def _rate(reached: np.ndarray) -> Interval:
    r = np.asarray(reached, dtype=bool)
    return wilson_interval(int(r.sum()), int(r.size))


def defence_table(dv: xr.Dataset) -> pd.DataFrame:
    """Table 1: per defence, the success rate at the goal score with its Wilson interval and n,
    for all images analysed and (when the cut was lowered) for those at the paper's cut."""
    used = float(dv.attrs.get("confidence_used", dv.attrs.get("confidence", 0)))
    subsets = [(f"cut {used:.4g}", np.ones(dv.sizes["image"], bool))]
    at = dv["at_paper_cut"].values if "at_paper_cut" in dv else subsets[0][1]
    if not at.all() and at.any():
        subsets.append((f"paper cut {float(dv.attrs['confidence_paper']):.4g}", at))
    rows = []
    for name, sel in subsets:
        for d, label in (("off", "no defence"), ("on", "defence")):
            iv = _rate(dv["reached"].sel(defence=d).values[sel])
            rows.append({"images": name, "run": label, "reached": f"{100 * iv.estimate:.1f} %",
                         "95 % interval": f"[{100 * iv.low:.1f}, {100 * iv.high:.1f}] %",
                         "n": iv.n,
                         "mean target score": float(dv["score"].sel(defence=d).values[sel].mean())})
    return pd.DataFrame(rows).set_index(["images", "run"]).round(3)


def goal_curve(dv: xr.Dataset) -> pd.DataFrame:
    """The success rate as a function of the goal score: ``estimate, low, high, n`` per
    (defence, goal) (Wilson 95 %)."""
    df = xr.Dataset({"estimate": dv["curve"], "low": dv["curve_low"],
                     "high": dv["curve_high"]}).to_dataframe()[["estimate", "low", "high"]]
    df["n"] = int(dv.sizes["image"])
    return df


def defence_successes(dv: xr.Dataset) -> pd.DataFrame:
    """The defended successes at the goal score: count per (predicted class -> target class),
    with the range of their peak target scores."""
    names = list(dv["pred_class"].values)
    ok = dv["reached"].sel(defence="on").values
    if not ok.any():
        return pd.DataFrame(columns=["images", "lowest peak", "highest peak"])
    peak = dv["peak_score"].sel(defence="on").values[ok]
    df = pd.DataFrame({"image class": [names[int(c)] for c in dv["pred"].values[ok]],
                       "target": [names[int(c)] for c in dv["target"].values[ok]], "peak": peak})
    out = df.groupby(["image class", "target"])["peak"].agg(
        images="size", **{"lowest peak": "min", "highest peak": "max"})
    return out.astype({"images": int}).sort_values("images", ascending=False)


def defence_findings(F: Findings, dv: xr.Dataset) -> None:
    """Table 1's claims: the defence lowers the success rate (paired over images), the
    undefended game nearly always succeeds, the defended rate stays at the paper's level."""
    off = dv["reached"].sel(defence="off").values.astype(float)
    on = dv["reached"].sel(defence="on").values.astype(float)
    n = len(off)
    g = float(dv.attrs.get("goal_score", 0.5))
    cut = float(dv.attrs.get("confidence_used", dv.attrs.get("confidence", 0)))
    where = f"{n} images at softmax >= {cut:.4g}, goal {g:g}"
    F.add(f"The defence lowers the share of adversarial explanations (Wagner et al. 2019, "
          f"Table 1; on minus off, {where})", paired_interval(on, off), direction="<",
          paper=PAPER["table1_drop"], percent=True)
    F.add(f"Without the defence the generation game reaches the least-likely class (Wagner et "
          f"al. 2019, Table 1: 100 %; rate above 90 %, {where})", _rate(off > 0), direction=">",
          reference=0.9, paper=PAPER["table1_off"], percent=True)
    iv_on = _rate(on > 0)
    reason = ""
    if iv_on.low > PAPER_DEFENDED_MAX:
        names = list(dv["pred_class"].values)
        pred = dv["pred"].values
        hit = sorted({int(c) for c in pred[on > 0]})
        mine = np.isin(pred, hit)
        succ = defence_successes(dv)
        top = float(dv["goal"].values[-1])
        hi = wilson_interval(int(dv["reached_at"].sel(defence="on", goal=top).sum()), n)
        cls = " or ".join(names[c] for c in hit)
        reason = (f"the {int(on.sum())} defended successes are all {cls} images "
                  f"({100 * on[mine].mean():.1f} % of their {int(mine.sum())}; 0 of the other "
                  f"{int((~mine).sum())}) and peak at target scores "
                  f"{float(succ['lowest peak'].min()):.2f}-{float(succ['highest peak'].max()):.2f}; "
                  f"at goal {top:g} the defended rate is {hi.format(3, True)}: the defence bounds "
                  f"each neuron by the image's own activation, which on a {len(names)}-class model "
                  f"still lets features the {cls} images share with other classes reach the "
                  f"target (Table 1: 1000 ImageNet classes)")
    F.add(f"With the defence the share stays at the paper's level (Wagner et al. 2019, Table 1: "
          f"at most 0.2 %; {where})", iv_on, direction="<", reference=PAPER_DEFENDED_MAX,
          paper=PAPER["table1_on"], percent=True, reason=reason)


# ------------------------------------------------------------------------------- Table 2

def deletion_intervals(fa: xr.Dataset, reference: str = "fgvis", *, n_boot: int = 2000,
                       seed: int = 0) -> tuple[xr.Dataset, xr.Dataset]:
    """Deletion AUC per method (bootstrap over images) and each other method's AUC minus
    ``reference``'s (paired over images; > 0: ``reference`` deletes the evidence faster)."""
    auc = fa["auc"]
    per = interval_dataset(auc, "image", n_boot=n_boot, seed=seed)
    if reference not in [str(m) for m in auc["method"].values]:
        return per, xr.Dataset()
    vs = paired_interval_dataset(auc, "image", over="method", baseline=reference,
                                 n_boot=n_boot, seed=seed)
    return per, vs


def deletion_table(fa: xr.Dataset, reference: str = "fgvis", **kw: Any) -> pd.DataFrame:
    """Table 2 with intervals: per method the deletion AUC ``[low, high]``, n, the difference
    to ``reference`` ``[low, high]``, the insertion AUC and the share of tied pixels; sorted by
    the deletion AUC (lower is better)."""
    per, vs = deletion_intervals(fa, reference, **kw)
    rows = {}
    for m in [str(v) for v in fa["method"].values]:
        p = per.sel({"method": m})
        row = {"deletion AUC": float(p["estimate"]),
               "95 % interval": f"[{float(p['low']):.4f}, {float(p['high']):.4f}]",
               "n": int(p["n"])}
        if "estimate" in vs and m in vs["method"].values:
            d = vs.sel({"method": m})
            row[f"minus {reference}"] = float(d["estimate"])
            row[f"minus {reference}: 95 % interval"] = f"[{float(d['low']):.4f}, {float(d['high']):.4f}]"
        elif m == reference:
            row[f"minus {reference}"] = 0.0
            row[f"minus {reference}: 95 % interval"] = ""
        row["insertion AUC"] = float(fa["insertion_auc"].sel({"method": m}).mean())
        if "tied_share" in fa:
            row["tied pixels"] = float(fa["tied_share"].sel({"method": m}).mean())
        rows[m] = row
    return pd.DataFrame(rows).T.infer_objects().sort_values("deletion AUC").round(4)


def deletion_findings(F: Findings, fa: xr.Dataset, reference: str = "fgvis") -> None:
    """Table 2's claim: FGVis has a lower deletion AUC than each other method (paired over
    images); a contradiction gets its reason from the curves and FGVis' tied pixels."""
    names = [str(v) for v in fa["method"].values]
    if reference not in names:
        F.not_tested("FGVis has the lowest deletion AUC (Wagner et al. 2019, Table 2)",
                     f"{reference} is not among the methods run", paper=PAPER["table2"])
        return
    auc_ref = fa["auc"].sel({"method": reference}).values
    frac = fa["fraction"].values
    curve_ref = fa["curve"].sel({"method": reference}).mean("image").values
    tied = float(fa["tied_share"].sel({"method": reference}).mean()) if "tied_share" in fa else np.nan
    for m in names:
        if m == reference:
            continue
        iv = paired_interval(fa["auc"].sel({"method": m}).values, auc_ref)
        reason = ""
        if iv.high < 0:
            curve_m = fa["curve"].sel({"method": m}).mean("image").values
            k0 = int(np.argmax(curve_m < curve_ref)) if (curve_m < curve_ref).any() else 0
            k = int(np.argmax(curve_ref - curve_m))
            reason = (f"{m}'s curve falls below FGVis's from {100 * frac[k0]:.0f} % deleted on "
                      f"(largest gap at {100 * frac[k]:.0f} %: {curve_m[k]:.3f} vs "
                      f"{curve_ref[k]:.3f}); FGVis's deletion mask leaves {100 * tied:.0f} % of "
                      f"the pixels tied at zero importance, deleted in random order, so past its "
                      f"small support its curve is a random deletion")
        F.add(f"FGVis deletes the evidence faster than {m}: lower deletion AUC (Wagner et al. "
              f"2019, Table 2; {m} minus FGVis)", iv, direction=">", paper=PAPER["table2"],
              reason=reason)


# ------------------------------------------------------------------------------- Table A3

def colour_table(cb: xr.Dataset) -> pd.DataFrame:
    """Table A3 with intervals: per class and swap ``kept [low, high] %`` and the class's n."""
    rows = {}
    for c in [str(v) for v in cb["class"].values]:
        n = int(cb["n_correct"].sel({"class": c}))
        if n == 0:
            continue
        row: dict[str, Any] = {}
        for sw in cb["swap"].values:
            sel = {"class": c, "swap": sw}
            row[str(sw)] = (f"{100 * float(cb['kept'].sel(sel)):.1f} % "
                          f"[{100 * float(cb['kept_low'].sel(sel)):.1f}, "
                          f"{100 * float(cb['kept_high'].sel(sel)):.1f}]")
        row["n correct"] = n
        rows[c] = row
    return pd.DataFrame(rows).T


def _kept(cb: xr.Dataset, c: str, sw: str) -> Interval:
    sel = {"class": c, "swap": sw}
    return wilson_interval(int(cb["kept_count"].sel(sel)), int(cb["n_correct"].sel({"class": c})))


def colour_findings(F: Findings, cb: xr.Dataset, biased: str | None = "bus",
                    free: str | None = "car", why_not: str = "") -> None:
    """Table A3's claim per cyclic swap: a colour-biased class (``biased``) loses its label in
    most images (kept < 50 %), a class without colour bias (``free``) keeps it (> 50 %).  With
    ``biased=None`` the claims are "not tested" with ``why_not``."""
    claim_b = ("A colour-biased class loses its label under the colour swap {sw} (Wagner et al. "
               "2019, Table A3; {c}: kept below 50 %)")
    claim_f = ("A class without colour bias keeps its label under the colour swap {sw} (Wagner et "
               "al. 2019, Table A3; {c}: kept above 50 %)")
    swaps = [str(s) for s, k in zip(cb["swap"].values, cb["swap_kind"].values)
             if k == "cyclic (paper)"]
    if biased is None or free is None:
        F.not_tested(claim_b.format(sw="RBG / GRB", c="a colour-biased class"),
                     why_not or "which class relies on colour is not known for this model",
                     paper=PAPER["a3_biased"])
        F.not_tested(claim_f.format(sw="RBG / GRB", c="a class without colour bias"),
                     why_not or "which class relies on colour is not known for this model",
                     paper=PAPER["a3_free"])
        return
    for c, claim, d, paper in ((biased, claim_b, "<", PAPER["a3_biased"]),
                               (free, claim_f, ">", PAPER["a3_free"])):
        for sw in swaps:
            F.add(claim.format(sw=sw, c=c), _kept(cb, c, sw), direction=d, reference=0.5,
                  paper=paper, percent=True)


# ------------------------------------------------------------------------------- tag

def tag_density(tg: xr.Dataset, *, n_boot: int = 2000, seed: int = 0) -> xr.Dataset:
    """Deleted-mass density inside / outside the tag box per variant as a ratio of sums over the
    images (``sum(deleted_in) / sum(deleted_out)``) with its paired bootstrap interval
    (:func:`lrpkit.evaluate.intervals.ratio_interval`); ``estimate, low, high, n`` over
    ``variant``."""
    ivs = [ratio_interval(tg["deleted_in"].sel(variant=v).values,
                          tg["deleted_out"].sel(variant=v).values, n_boot=n_boot, seed=seed)
           for v in tg["variant"].values]
    return xr.Dataset({"estimate": ("variant", [iv.estimate for iv in ivs]),
                       "low": ("variant", [iv.low for iv in ivs]),
                       "high": ("variant", [iv.high for iv in ivs]),
                       "n": ("variant", np.array([iv.n for iv in ivs], dtype=np.int64))},
                      coords={"variant": tg["variant"].values},
                      attrs={"stat": "ratio of sums over images", "n_boot": n_boot, "seed": seed,
                             "resampled": "image"})


def tag_findings(F: Findings, tg: xr.Dataset | None, why_not: str = "") -> None:
    """The planted tag: the deletion game deletes it preferentially on tagged images (density
    inside / outside the box above 1, a ratio of sums)."""
    claim = ("FGVis reveals a learned bias: the deletion game deletes the planted tag "
             "preferentially (cf. Wagner et al. 2019, Sec. 4.3; density in / out of the tag box "
             "above 1 on tagged horses, a ratio of sums)")
    if tg is None:
        F.not_tested(claim, why_not or "no planted tag in this data", paper=PAPER["tag"])
        return
    d = tag_density(tg)
    v = d.sel(variant="tagged")
    F.add(claim, Interval(float(v["estimate"]), float(v["low"]), float(v["high"]), int(v["n"])),
          direction=">", reference=1.0, paper=PAPER["tag"])
