# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
#   lrpkit:
#     expected_seconds: 60
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
from lrpkit.evaluate import resampling_experiment
from lrpkit.evaluate.scoring import ap_by_split, dataset_twins, true_positive_pairs
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
# model on the whole image). On the scene set, what the planted biases predict: a model that leans
# on **context** loses AP on `test_swapped` (most for classes with a distinctive background:
# aeroplane/sky, boat/water); a model that leans on the **copyright tag** loses AP for **horse**
# on `test_untagged`. Test-set accuracy alone cannot tell these strategies apart — the
# counterfactual rows and the heatmaps below can.

# %%
aps = twins = None
if fv is not None and ds.labels.any():
    # The same images in every split: an image and its twins (same row) where the data has twins.
    twins = dataset_twins(ds, n_images=ev.ap_images, seed=cfg.seed)
    splits = list(twins.splits)
    names = ["FV"] + [m.name for m in deep]
    aps = ap_by_split({"FV": fv, **{m.name: m for m in deep}}, twins, progress=True)
    table = aps["ap"].to_dataframe("AP").AP.unstack("class")[classes] * 100
    table["mAP"] = table.mean(axis=1)
    table = table.dropna(how="all")
    display(Markdown(f"{len(twins)} of {len(ds)} images of `{ds.split}`"
                     + (f" and their twins in {', '.join(splits[1:])}" if len(splits) > 1 else "")
                     + f" (`evaluation.ap_images` = {ev.ap_images}; FV encoding costs ~0.2 s per image)."))
    display(table.style.format("{:.1f}", na_rep="–").set_caption("Average precision (%) per class"))

    fig, ax = plt.subplots(figsize=(9, 3.2))
    x = np.arange(len(classes) + 1)
    bars = [(s, m) for m in names for s in splits if (s, m) in table.index]
    w = 0.8 / max(1, len(bars))
    cmaps = [plt.cm.Blues, plt.cm.Oranges, plt.cm.Greens, plt.cm.Purples, plt.cm.Reds]
    for k, (split, model) in enumerate(bars):
        shade = 0.45 + 0.4 * splits.index(split) / max(1, len(splits))
        ax.bar(x + (k - (len(bars) - 1) / 2) * w, table.loc[(split, model)].values, w,
               label=f"{model} · {split}", color=cmaps[names.index(model) % len(cmaps)](shade))
    ax.set_xticks(x, classes + ["mAP"])
    ax.set_ylabel("AP (%)")
    ax.set_ylim(0, 105)
    ax.set_title("AP per class and model" + (f" on {', '.join(splits)} (light to dark)" if len(splits) > 1 else ""))
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
# features' relevances, which can scramble the order.

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
    display(Markdown(f"{len(pairs)} true-positive (image, class) pairs, {n_rep} repeats, "
                     f"{n_steps} steps of {batch} features (about {n_feat} local features per image: "
                     f"{100 * n_steps * batch / n_feat:.0f} % replaced at the end; Lapuschkin et al. 2016 "
                     f"replaced 10,000 of ~69,000 in 100 steps of 100)."))
    res = resampling_experiment(fv.model, tp_images, targets, batch_size=batch, n_steps=n_steps,
                                repeats=n_rep, seed=cfg.seed, image_ids=ids, config=cfg)
elif fv is not None:
    viz.skip_section("Local-feature resampling", "images with a labelled class to explain (positives)")

# %%
if res is not None:
    rules = [r for r in res.rule.values if r != "random"]
    mean = res.score.mean(("image", "repeat"))
    steps = res.step.values
    fig, axes = plt.subplots(1, len(rules), figsize=(3.4 * len(rules), 3.7), sharey=True)
    for ax, r in zip(np.atleast_1d(axes), rules):
        bars = ax.twinx()
        bars.bar(steps, res.switch_count.sel(rule=r), width=1.0, color="0.85", zorder=0)
        bars.set_ylim(0, max(1, int(res.switch_count.max())) * 3)
        bars.set_yticks([])
        ax.set_zorder(bars.get_zorder() + 1)
        ax.patch.set_visible(False)
        ax.plot(steps, mean.sel(rule=r), color="C3", lw=2, label="ordered by relevance")
        ax.plot(steps, mean.sel(rule="random"), "--", color="0.3", label="random order")
        ax.axhline(0, color="k", lw=0.5)
        ax.set_title(f"{r}: A = {float(res.A.sel(rule=r)):.3f}, V = {float(res.V.sel(rule=r)):.2f}\n"
                     f"(random: A = {float(res.A.sel(rule='random')):.3f}, V = {float(res.V.sel(rule='random')):.2f})")
        ax.set_xlabel(f"step i (batches of {batch} features)")
    np.atleast_1d(axes)[0].legend(loc="lower left")
    np.atleast_1d(axes)[0].set_ylabel("mean score f(x(i)) of the explained class")
    fig.suptitle(f"Local-feature resampling, {res.sizes['image']} true positives × {res.sizes['repeat']} repeats "
                 "(grey bars: traces switching sign at each step)", fontsize=10)
    plt.tight_layout()
    plt.show()

    summary = pd.DataFrame({"A (eq. 25)": res.A.to_series(), "V": res.V.to_series(),
                            "A / A(random)": (res.A / res.A.sel(rule="random")).to_series(),
                            "mean switch step": res.switch_step.where(res.switch_step >= 0)
                            .mean(("image", "repeat")).to_series()})
    display(summary.style.format("{:.3f}").set_caption("Resampling summary per ordering"))
    best = summary["A (eq. 25)"].drop("random").idxmax()
    display(Markdown(f"Best ordering by A: **{best}** (A = {summary.loc[best, 'A (eq. 25)']:.3f} vs "
                     f"{summary.loc['random', 'A (eq. 25)']:.3f} for random)."))

# %% [markdown]
# Per class: A for each ordering (mean over that class's traces). A class whose evidence sits in a
# few features (e.g. the scene set's horse tag) should show a large gap to random.

# %%
if res is not None:
    per_class = res.A_trace.mean("repeat").groupby(res.target_class).mean("image")
    display((per_class.to_pandas().T).style.format("{:.3f}").set_caption("A per class (rows: ordering)"))

# %%
out = res.copy() if res is not None else xr.Dataset(coords={"class": np.array(classes, dtype=str)})
if aps is not None:
    out["ap"] = aps["ap"]
    out["ap"].attrs["description"] = ("average precision per class; FV on the whole image, deep models on "
                                      "their own input")
out.attrs.update(make_attrs(cfg, notebook="01_fv_validation", **sources.describe(src.models, ds),
                            fv_model=str(fv.path) if fv is not None else "",
                            ap_images=len(twins) if twins is not None else 0, resampling_images=n_img,
                            resampling_repeats=n_rep, resampling_batch=batch, resampling_steps=n_steps))
if results_path:
    save_dataset(out, results_path)
out
