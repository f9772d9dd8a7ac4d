# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
#   lrpkit:
#     expected_seconds: 65
# ---

# %% [markdown]
# # 01 · Fisher-vector model: accuracy and validation of its heatmaps
#
# Lapuschkin et al. (2016) compare a **Fisher-vector (FV) classifier** (dense SIFT →
# PCA → GMM → improved FV → linear SVMs) with a **deep network** and explain both with LRP. Here
# the FV model is one lrpkit fits on the configured data set's training split
# (`dataset.train_split`, settings from the `fisher` section; on lrpkit's scenes the default FV
# model of `lrpkit train`), and the deep network is the configured model (or each of `models`).
# Before reading FV heatmaps we check two things:
#
# 1. **Accuracy** (Lapuschkin et al. 2016, Table 1): per-class average precision of the FV model
#    and the deep model(s) on the analysed split. On lrpkit's scenes also on the two
#    counterfactual splits that break a planted bias — `test_swapped` (background drawn at
#    random: the *context* bias is gone) and `test_untagged` (the copyright tag removed: the
#    *artefact* bias of class horse is gone).
# 2. **Do FV heatmaps point at what the FV model uses?** Local-feature resampling (Lapuschkin et
#    al. 2016, App. D, Algorithm 1, Fig. 7): local features are replaced by draws from the model's
#    GMM, most relevant first, and the drop of the class score is compared with a random order.

# %% tags=["parameters"]
config = "default"
results_path = None

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import xarray as xr
from IPython.display import Markdown, display

import lrpkit
from lrpkit import pipeline, sources, viz
from lrpkit.evaluate import (Findings, attach_interval, interval_dataset, paired_interval,
                             paired_interval_dataset, resampling_experiment)
from lrpkit.evaluate.scoring import (ap_by_split, ap_intervals, dataset_twins, interval_at, interval_table,
                                     true_positive_pairs)
from lrpkit.results import make_attrs, save_dataset

cfg = lrpkit.load_config(config)
ev = cfg.evaluation
src = sources.load_sources(cfg)
ds = src.dataset
classes = list(ds.classes)
deep = [m for m in src.models if m.source != "fisher"]
viz.notebook_style()
try:
    fv = pipeline.load_dataset_fisher(cfg, sources=src)
except pipeline.NoTrainingSplit as exc:
    fv, no_fv = None, str(exc)
display(Markdown(f"Config `{cfg.source}` · data **{ds.name}** ({ds.source}, split `{ds.split}`, "
                 f"{len(ds)} images) · FV model: "
                 + (f"`{fv.path}`" if fv is not None else "none") + " · deep model(s): "
                 + ", ".join(f"**{m.name}** ({m.source})" for m in deep) + f" · classes: {', '.join(classes)}"))
if fv is None:
    viz.skip_section("The Fisher-vector model", f"a training split to fit it on ({no_fv})")

# %% [markdown]
# ## Table 1 · Average precision per class
#
# Rows: model and split; columns: classes (AP in %, non-interpolated area under the
# precision-recall curve; a CNN on its own input crop as in Lapuschkin et al. 2016, App. E, the FV
# model on the whole image), each with its 95 % bootstrap interval over the images (one resample
# of the images for every model, split and class: `lrpkit.evaluate.scoring.ap_intervals`). On the
# scene set, what the planted biases predict: a model that leans on **context** loses AP on
# `test_swapped` (most for classes with a distinctive background: aeroplane/sky, boat/water); a
# model that leans on the **copyright tag** loses AP for **horse** on `test_untagged` (AP is
# nearly blind to it: report 00 shows the horse score itself). Test-set accuracy alone cannot tell
# these strategies apart — the counterfactual rows and the heatmaps below can.

# %%
F = Findings("01_fv_validation")
aps = ivs = twins = None
if fv is not None and ds.labels.any():
    # The same images in every split: an image and its twins (same row) where the data has twins.
    twins = dataset_twins(ds, n_images=ev.ap_images, seed=cfg.seed)
    splits = list(twins.splits)
    names = ["FV"] + [m.name for m in deep]
    aps = ap_by_split({"FV": fv, **{m.name: m for m in deep}}, twins, progress=True)
    ivs = ap_intervals(aps, ignore=twins.ignore, seed=cfg.seed)
    table = interval_table(ivs["ap"], "class", digits=1, scale=100)
    table["mAP"] = interval_table(ivs["mAP"], digits=1, scale=100).iloc[:, 0]
    display(Markdown(f"**n = {len(twins)} images** of `{ds.split}` (of {len(ds)})"
                     + (f" and their twins in {', '.join(splits[1:])}" if len(splits) > 1 else "")
                     + f" (`evaluation.ap_images` = {ev.ap_images}; FV encoding costs ~0.05-0.2 s per image); "
                       f"95 % intervals from {ivs['ap'].attrs['n_boot']} bootstrap resamples of the images."))
    display(table.style.set_caption("Average precision (%) per class [95 % interval]"))

    fig, ax = plt.subplots(figsize=(9, 3.2))
    x = np.arange(len(classes) + 1)
    bars = [(s, m) for m in names for s in splits]
    w = 0.8 / max(1, len(bars))
    cmaps = [plt.cm.Blues, plt.cm.Oranges, plt.cm.Greens, plt.cm.Purples, plt.cm.Reds]
    for k, (split, model) in enumerate(bars):
        est = np.r_[ivs["ap"].estimate.sel(split=split, model=model).values,
                    float(ivs["mAP"].estimate.sel(split=split, model=model))] * 100
        lo = np.r_[ivs["ap"].low.sel(split=split, model=model).values,
                   float(ivs["mAP"].low.sel(split=split, model=model))] * 100
        hi = np.r_[ivs["ap"].high.sel(split=split, model=model).values,
                   float(ivs["mAP"].high.sel(split=split, model=model))] * 100
        shade = 0.45 + 0.4 * splits.index(split) / max(1, len(splits))
        ax.bar(x + (k - (len(bars) - 1) / 2) * w, est, w, yerr=np.abs(np.stack([est - lo, hi - est])),
               capsize=1.5, error_kw={"lw": 0.6}, label=f"{model} · {split}",
               color=cmaps[names.index(model) % len(cmaps)](shade))
    ax.set_xticks(x, classes + ["mAP"])
    ax.set_ylabel("AP (%)")
    ax.set_ylim(0, 105)
    ax.set_title("AP per class and model, 95 % intervals, n = " + str(len(twins)) + " images"
                 + (f" (on {', '.join(splits)}, light to dark)" if len(splits) > 1 else ""))
    ax.legend(ncol=1, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7)
    plt.tight_layout()
    plt.show()
elif fv is not None:
    viz.skip_section("Average precision per class", "class labels for the analysed images")

# %% [markdown]
# ## Fig. 7 · Local-feature resampling (Lapuschkin et al. 2016, App. D, Algorithm 1)
#
# For **true-positive** predictions of the FV model (a class that is present and scored `f(x) > 0`,
# as in the paper), the local features of the image are ranked by their FV-LRP relevance `R(2)_l` —
# for each decomposition of the mapping layer: ε-rule with ε = 1 and ε = 100 (eq. 22), absolute-value
# rule (eq. 23), plain rule (eq. 20) — and replaced in batches by samples from the FV model's own GMM.
# The raw Fisher vector is updated incrementally and re-scored after every batch.
#
# * **A** (eq. 25) = mean over steps of `f(x) − f(x(i))`: the area between the unperturbed score and
#   the trace. Larger = the ordering found the features the decision rests on.
# * **V** = fraction of traces whose prediction switched sign at some step; grey bars: how many
#   traces switched at each step.
#
# A heatmap that explains the model should beat the **random order** (dashed) clearly. The paper
# found ε = 100 best (its Fig. 7); with the plain rule, near-cancelling mapping sums blow up single
# features' relevances, which can scramble the order. The unit of the intervals is the (image,
# class) pair: its repeats (fresh GMM draws and random orders) are averaged first, and every
# ordering is compared with random on the same pairs (paired bootstrap).

# %%
res = None
n_img, n_rep = ev.resampling_images, ev.resampling_repeats
batch, n_steps = ev.resampling_batch, ev.resampling_steps
pairs = []
if aps is not None:
    ref = twins.splits[0]
    labels = twins.labels[ref]
    scores = aps["scores"].sel(split=ref, model="FV").values
    pairs = true_positive_pairs(labels, scores, n_img, seed=cfg.seed)
if pairs:
    if not all(scores[i, c] > 0 for i, c in pairs):
        print("no true-positive FV predictions: using the highest-scored positive images instead")
    tp_images = [twins.images[ref][i] for i, _ in pairs]
    targets = [c for _, c in pairs]
    ids = [f"{twins.ids[ref][i]}:{classes[c]}" for i, c in pairs]
    n_feat = fv.model.encoder_.local_features(tp_images[0])[0].shape[0]
    display(Markdown(f"**n = {len(pairs)} true-positive (image, class) pairs** (`evaluation.resampling_images` = "
                     f"{n_img}; {len({i for i, _ in pairs})} distinct images), {n_rep} repeats, "
                     f"{n_steps} steps of {batch} features (about {n_feat} local features per image: "
                     f"{100 * n_steps * batch / n_feat:.0f} % replaced at the end; Lapuschkin et al. 2016 "
                     f"replaced 10,000 of ~69,000 in 100 steps of 100)."))
    res = resampling_experiment(fv.model, tp_images, targets, batch_size=batch, n_steps=n_steps,
                                repeats=n_rep, seed=cfg.seed, image_ids=ids, config=cfg)
elif fv is not None:
    viz.skip_section("Local-feature resampling", "images with a labelled class to explain (positives)")

# %%
a_iv = a_vs_random = v_iv = v_vs_random = None
if res is not None:
    rules = [r for r in res.rule.values if r != "random"]
    a_pair = res.A_trace.mean("repeat")                         # (image, rule): repeats averaged
    v_pair = (res.switch_step >= 0).mean("repeat").astype(float)
    a_iv = interval_dataset(a_pair, "image", seed=cfg.seed)
    a_vs_random = paired_interval_dataset(a_pair, "image", over="rule", baseline="random", seed=cfg.seed)
    v_iv = interval_dataset(v_pair, "image", seed=cfg.seed)
    v_vs_random = paired_interval_dataset(v_pair, "image", over="rule", baseline="random", seed=cfg.seed)
    band = interval_dataset(res.score.mean("repeat"), "image", n_boot=500, seed=cfg.seed)   # (rule, step)
    steps = res.step.values
    n_pairs = res.sizes["image"]
    fig, axes = plt.subplots(1, len(rules), figsize=(3.4 * len(rules), 3.9), sharey=True)
    for ax, r in zip(np.atleast_1d(axes), rules):
        bars = ax.twinx()
        bars.bar(steps, res.switch_count.sel(rule=r), width=1.0, color="0.85", zorder=0)
        bars.set_ylim(0, max(1, int(res.switch_count.max())) * 3)
        bars.set_yticks([])
        ax.set_zorder(bars.get_zorder() + 1)
        ax.patch.set_visible(False)
        for rr, style in ((r, dict(color="C3", lw=2, label="ordered by relevance")),
                          ("random", dict(color="0.3", ls="--", label="random order"))):
            ax.plot(steps, band.estimate.sel(rule=rr), **style)
            ax.fill_between(steps, band.low.sel(rule=rr), band.high.sel(rule=rr), color=style["color"],
                            alpha=0.2, lw=0)
        ax.axhline(0, color="k", lw=0.5)
        ax.set_title(f"{r}: A − A(random) =\n{interval_at(a_vs_random, rule=r).format(3)}", fontsize=9)
        ax.set_xlabel(f"step i (batches of {batch} features)")
    np.atleast_1d(axes)[0].legend(loc="lower left", fontsize=8)
    np.atleast_1d(axes)[0].set_ylabel("mean score f(x(i)) of the explained class")
    fig.suptitle(f"Local-feature resampling, n = {n_pairs} true positives × {res.sizes['repeat']} repeats "
                 "(bands: 95 % intervals over pairs; grey bars: traces switching sign at each step)", fontsize=10)
    plt.tight_layout()
    plt.show()

    summary = pd.DataFrame({
        "A (eq. 25) [95 %]": [interval_at(a_iv, rule=r).format(3) for r in res.rule.values],
        "A − A(random) [95 %]": [interval_at(a_vs_random, rule=r).format(3) if r != "random" else "–"
                                 for r in res.rule.values],
        "V [95 %]": [interval_at(v_iv, rule=r).format(2) for r in res.rule.values],
        "V − V(random) [95 %]": [interval_at(v_vs_random, rule=r).format(2) if r != "random" else "–"
                                 for r in res.rule.values],
        "mean switch step": res.switch_step.where(res.switch_step >= 0).mean(("image", "repeat")).round(1).values,
        "n": [int(a_iv.n.sel(rule=r)) for r in res.rule.values]}, index=res.rule.values)
    display(summary.style.set_caption(f"Resampling summary per ordering (n = {n_pairs} pairs)"))
    best = str(a_iv.estimate.sel(rule=rules).idxmax("rule").values)
    display(Markdown(f"Best ordering by A: **{best}** (A = {interval_at(a_iv, rule=best).format(3)} vs "
                     f"{interval_at(a_iv, rule='random').format(3)} for random, n = {n_pairs} pairs)."))

# %% [markdown]
# Per class: A for each ordering (mean over that class's traces) and the number of pairs. A class
# whose evidence sits in a few features (e.g. the scene set's horse tag) should show a large gap to
# random; with a handful of pairs per class these are descriptive, not rankings.

# %%
if res is not None:
    per_class = a_pair.groupby(res.target_class).mean("image").to_pandas().T
    per_class.loc["n pairs"] = res.target_class.to_series().value_counts().reindex(per_class.columns).values
    display(per_class.style.format("{:.3f}").set_caption("A per class (rows: ordering; last row: n pairs)"))

# %% [markdown]
# ## Findings (generated)
# Table 1 of Lapuschkin et al. 2016 puts their (ImageNet-pretrained, fine-tuned) DNN 12 mAP points
# above the FV model on VOC 2007; App. D / Fig. 7 find that every FV-LRP ordering lowers the score
# faster than random, ε = 100 best.

# %%
TABLE1 = "Lapuschkin et al. 2016, Table 1"
FIG7 = "Lapuschkin et al. 2016, App. D, Fig. 7"
if ivs is not None and deep and "mAP_gap" in ivs:
    for m in deep:
        m_dnn = float(aps.mAP.sel(split=ref, model=m.name))
        m_fv = float(aps.mAP.sel(split=ref, model="FV"))
        why = (f"on {ds.name} the FV model reaches mAP {m_fv:.3f} and {m.name} {m_dnn:.3f} (n = {len(twins)})"
               + (f"; {m.name} is trained from scratch on {cfg.data.n_train} scenes, the paper's DNN was "
                  "pretrained on ImageNet" if m.source == "scene_cnn" else ""))
        F.add(f"The DNN ({m.name}) has a higher mAP than the FV model ({TABLE1}; here on {ds.name}/{ref})",
              interval_at(ivs["mAP_gap"], split=ref, model=m.name, versus="FV"), direction=">",
              paper="72.12 vs 59.99 mAP (+12.13)", reason=why)
else:
    F.not_tested(f"The DNN has a higher mAP than the FV model ({TABLE1})",
                 "needs an FV model and a deep network scored on labelled images")
if res is not None:
    for r in rules:
        F.add(f"Removing the local features most relevant by FV-LRP ({r}) lowers the score faster than "
              f"random: A − A(random) > 0 ({FIG7})", interval_at(a_vs_random, rule=r), direction=">",
              paper="above random",
              reason=f"{r}: A = {float(a_iv.estimate.sel(rule=r)):.3f}, random "
                     f"{float(a_iv.estimate.sel(rule='random')):.3f} over {n_pairs} pairs")
    if "epsilon_100" in rules and len(rules) > 1:
        others = [r for r in rules if r != "epsilon_100"]
        rival = str(a_iv.estimate.sel(rule=others).idxmax("rule").values)
        F.add(f"ε = 100 gives the best ordering: A(ε = 100) − A({rival}, the best other rule) > 0 ({FIG7})",
              paired_interval(a_pair.sel(rule="epsilon_100"), a_pair.sel(rule=rival), seed=cfg.seed),
              direction=">", paper="ε = 100 best",
              reason=f"{rival} reaches A = {float(a_iv.estimate.sel(rule=rival)):.3f}, ε = 100 "
                     f"{float(a_iv.estimate.sel(rule='epsilon_100')):.3f}")
        F.add(f"Ordering by FV-LRP (ε = 100) switches more predictions than random: V − V(random) > 0 ({FIG7})",
              interval_at(v_vs_random, rule="epsilon_100"), direction=">", paper="more switches than random",
              reason=f"V = {float(v_iv.estimate.sel(rule='epsilon_100')):.2f} vs "
                     f"{float(v_iv.estimate.sel(rule='random')):.2f} for random")
else:
    F.not_tested(f"FV-LRP orderings lower the score faster than random ({FIG7})",
                 "needs an FV model and true-positive (image, class) pairs")

# %% tags=["findings"]
F.show()

# %%
out = res.copy() if res is not None else xr.Dataset(coords={"class": np.array(classes, dtype=str)})
if aps is not None:
    out["ap"] = aps["ap"]
    out["ap"].attrs["description"] = ("average precision per class; FV on the whole image, deep models on "
                                      "their own input")
    out["mAP"] = aps["mAP"]
    for key, iv in ivs.items():   # the intervals next to the estimates (a `bound` dim: estimate, low, high)
        new = {"split": "twin_split"} if key.endswith("_drop") else {}
        out = attach_interval(out, f"{key}_interval", iv.rename({**new, **({"versus": "versus_model"}
                                                                        if "versus" in iv.dims else {})}))
if res is not None:
    out = attach_interval(out, "A_interval", a_iv)
    out = attach_interval(out, "V_interval", v_iv)
    out = attach_interval(out, "A_vs_random", a_vs_random.rename(rule="lrp_rule"))
    out = attach_interval(out, "V_vs_random", v_vs_random.rename(rule="lrp_rule"))
out.attrs.update(make_attrs(cfg, notebook="01_fv_validation", **sources.describe(src.models, ds),
                            fv_model=str(fv.path) if fv is not None else "",
                            ap_images=len(twins) if twins is not None else 0, resampling_images=n_img,
                            resampling_pairs=0 if res is None else int(res.sizes["image"]),
                            resampling_repeats=n_rep, resampling_batch=batch, resampling_steps=n_steps))
out = F.attach(out)
if results_path:
    save_dataset(out, results_path)
out
