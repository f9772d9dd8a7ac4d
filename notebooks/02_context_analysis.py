# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
#   lrpkit:
#     expected_seconds: 40
# ---

# %% [markdown]
# # 02 · Context use: the outside-inside relevance ratio against the planted truth
#
# Paper 000 (Lapuschkin et al., CVPR 2016, Sec. 5.3 and 6.5) measures how much a classifier uses
# **context** with the outside-inside relevance ratio (eq. 11)
#
# µ = mean positive relevance per pixel **outside** the object's boxes / mean **inside**,
#
# and finds (Fig. 6) that the Fisher-vector (FV) model uses more context than the deep network,
# most for classes with a distinctive background (boat–water, aeroplane–sky). On lrpkit's bias-zoo
# scenes the context is planted, so µ can be checked against the truth:
#
# 1. µ per class for both models with **bootstrap intervals** (Fig. 6);
# 2. µ per **background type** and by whether the background is the class's usual **context**;
# 3. what context is worth to each model: the per-class **score and AP drop** from `test` to
#    `test_swapped` (the same objects over a background drawn at random);
# 4. the **horse tag** (an artefact planted on 70 % of horse images): relevance on it, and the score
#    without it (`test_untagged`). Notebook 03 shows the heatmaps; here the numbers.
#
# Heatmaps: FV with LRP-ε (ε = 100, paper 000 App. C) on the whole image, the CNN with the config's
# LRP composite on its centre crop (boxes mapped into the crop).

# %% tags=["parameters"]
config = "default"      # config name or YAML path (lrpkit.load_config)
results_path = None     # where the runner wants this notebook's xarray results

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import xarray as xr
from IPython.display import Markdown, display

import lrpkit
from lrpkit import pipeline, viz
from lrpkit.data import CONTEXT, VOCDataset, read_bias
from lrpkit.evaluate import bootstrap_da
from lrpkit.evaluate.scoring import ap_by_split, load_twins
from lrpkit.evaluate.shallow_deep import class_average_heatmaps, cnn_map_model, fv_map_model, tag_relevance
from lrpkit.fisher import FisherLRP
from lrpkit.results import make_attrs, save_dataset

t_start = time.perf_counter()
cfg = lrpkit.load_config(config)
ev = cfg.evaluation
scenes = pipeline.scenes_root(cfg)
cnn, fv, classes = pipeline.load_models(cfg)
test = VOCDataset(scenes, "test", classes=classes)
bias = read_bias(scenes)
objs = bias[bias.split == "test"]
models = [fv_map_model(FisherLRP(fv, rule="epsilon", epsilon=100.0, pca_epsilon=0.5), "FV"),
          cnn_map_model(cnn, "CNN", composite=cfg.lrp.composite or "alpha2_beta1")]
viz.notebook_style()
display(Markdown(f"Config `{cfg.source}` · {ev.context_images} test images per class for µ · "
                 f"{ev.context_bootstrap} bootstrap resamples · classes: {', '.join(classes)}"))

# %% [markdown]
# ## Fig. 6 · µ per class, FV vs CNN, with 95 % bootstrap intervals
#
# Per class, `context_images` random test images containing the class; µ of each image's heatmap
# for that class with all of the class's boxes as "inside". Bars: the median µ over images; whiskers:
# percentile bootstrap interval of the median. µ > 1: evidence is denser outside the object.

# %%
t0 = time.perf_counter()
rng = np.random.default_rng(cfg.seed)
pos = {i: k for k, i in enumerate(test.ids)}
samples, sample_ids = {}, {}
for c in classes:
    ids = [i for i in dict.fromkeys(objs[objs["class"] == c].image_id) if i in pos]
    ids = [ids[k] for k in sorted(rng.permutation(len(ids))[:ev.context_images])]
    sample_ids[c] = ids
    samples[c] = [(img, [b for b, n in zip(t["boxes"], t["names"]) if n == c])
                  for img, t in (test[pos[i]] for i in ids)]
avg = class_average_heatmaps(models, samples, classes, progress=True)
mu = avg.context_ratio                                     # (class, model, sample)
ci = bootstrap_da(mu, "sample", stat="median", n_boot=ev.context_bootstrap, seed=cfg.seed)
fig, ax = plt.subplots(figsize=(8, 3.2))
w = 0.38
for k, name in enumerate(mu.model.values):
    est = ci.estimate.sel({"model": name}).values
    lo, hi = ci.low.sel({"model": name}).values, ci.high.sel({"model": name}).values
    xs = np.arange(len(classes)) + (k - 0.5) * w
    ax.bar(xs, est, w, label=name, color=f"C{k}")
    ax.errorbar(xs, est, yerr=[np.clip(est - lo, 0, None), np.clip(hi - est, 0, None)], fmt="none",
                ecolor="k", capsize=2, lw=0.8)
ax.axhline(1.0, color="k", lw=0.8, ls=":")
ax.set_xticks(np.arange(len(classes)), classes)
ax.set_ylabel("median µ (outside / inside)")
ax.set_yscale("log")
ax.legend()
plt.tight_layout()
plt.show()
display(ci.estimate.to_pandas().round(3).T.rename(index=lambda m: f"median µ {m}"))
print(f"µ per class: {time.perf_counter() - t0:.1f} s")

# %% [markdown]
# ## µ against the planted context: background type and context match
#
# Each image's µ joined with its ground truth from `bias.csv` (`lrpkit.data.read_bias`): the
# background and whether it is the usual context of the explained class (`object_context_match`:
# aeroplane–sky, boat–water, bus/car–road, horse/sheep–grass). A model that uses the context should
# put more relevance outside the box (higher µ) when the background **matches**.

# %%
rows = []
for c in classes:
    for k, image_id in enumerate(sample_ids[c]):
        o = objs[(objs.image_id == image_id) & (objs["class"] == c)].iloc[0]
        for name in mu.model.values:
            rows.append({"class": c, "image_id": image_id, "model": name, "background": o.background,
                         "context_match": bool(o.object_context_match),
                         "mu": float(mu.sel({"class": c, "model": name}).isel(sample=k))})
per_image = pd.DataFrame(rows)
by_bg = per_image.pivot_table(index="background", columns="model", values="mu", aggfunc="median")
by_match = per_image.pivot_table(index="context_match", columns="model", values="mu", aggfunc="median")
n_match = per_image[per_image.model == mu.model.values[0]].groupby("context_match").size()
display(Markdown("Median µ per background type:"))
display(by_bg.round(3))
display(Markdown(f"Median µ by context match (images: {dict(n_match)}):"))
display(by_match.round(3))
fig, axes = plt.subplots(1, 2, figsize=(9, 3), sharey=True)
for ax, name in zip(axes, mu.model.values):
    d = per_image[per_image.model == name]
    groups = [d[d.context_match == v].mu.replace(np.inf, np.nan).dropna().values for v in (True, False)]
    ax.boxplot(groups)
    ax.set_xticks([1, 2], ["usual context", "other background"])
    ax.set_yscale("log")
    ax.set_title(f"{name}: µ per image")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## What the context is worth: score and AP from `test` to `test_swapped`
#
# `context_ap_images` random test images and their swapped twins (same objects and pixels, background
# drawn uniformly from the five). Per class: the mean score of the images that contain the class and
# the AP on both splits; the drop measures how much each model leans on the background.

# %%
t0 = time.perf_counter()
twins = load_twins(scenes, ("test", "test_swapped"), n_images=ev.context_ap_images, seed=cfg.seed,
                   classes=classes)
ap = ap_by_split({"FV": fv, "CNN": cnn}, twins, progress=True)
pos_mask = xr.DataArray(twins.labels["test"] > 0.5, dims=("image", "class"),
                        coords={"image": ap.image, "class": ap["class"]})
pos_score = ap.scores.where(pos_mask).mean("image")            # (split, model, class)
drop = xr.Dataset({
    "score_test": pos_score.sel(split="test", drop=True),
    "score_swapped": pos_score.sel(split="test_swapped", drop=True),
    "ap_test": ap.ap.sel(split="test", drop=True), "ap_swapped": ap.ap.sel(split="test_swapped", drop=True)})
drop["score_drop"] = drop.score_test - drop.score_swapped
drop["ap_drop"] = drop.ap_test - drop.ap_swapped
tab = drop[["score_drop", "ap_drop"]].to_dataframe().unstack("model")
display(Markdown(f"{len(twins)} test images + their swapped twins; drop = test − test_swapped:"))
display(tab.round(3))
fig, axes = plt.subplots(1, 2, figsize=(10, 3))
for ax, v in zip(axes, ("score_drop", "ap_drop")):
    for k, name in enumerate(drop.model.values):
        ax.bar(np.arange(len(classes)) + (k - 0.5) * w, drop[v].sel({"model": name}), w, label=name)
    ax.set_xticks(np.arange(len(classes)), classes)
    ax.axhline(0, color="k", lw=0.8)
    ax.set_title(v.replace("_", " ") + " (test → test_swapped)")
axes[0].legend()
plt.tight_layout()
plt.show()
print(f"AP drop: {time.perf_counter() - t0:.1f} s")

# %% [markdown]
# ## The horse tag: relevance on it and the score without it
#
# Tagged horse test images and their `test_untagged` twins (`lrpkit.evaluate.shallow_deep.tag_relevance`):
# the share of positive relevance in the tag box (and in the box grown by `tag_margin` px, since heat
# caused by the tag spreads around it) and the horse score with and without the tag. A uniform map
# would put the tag's share of the area there.

# %%
t0 = time.perf_counter()
untagged = VOCDataset(scenes, "test_untagged", classes=classes)
upos = {i: k for k, i in enumerate(untagged.ids)}
horse = classes.index("horse")
tagged = objs[(objs["class"] == "horse") & (objs.tag == 1)].drop_duplicates("image_id")
tagged = tagged[tagged.image_id.isin(test.ids)]
tagged = tagged.iloc[sorted(rng.permutation(len(tagged))[:ev.tag_images])]
cases = []
for _, row in tagged.iterrows():
    twin = "untagged_" + row.image_id.split("_", 1)[1]
    if twin in upos:
        tag = (int(row.tag_xmin), int(row.tag_ymin), int(row.tag_xmax), int(row.tag_ymax))
        cases.append((row.image_id, test[pos[row.image_id]][0], untagged[upos[twin]][0], tag))
tag_ds = tag_relevance(models, cases, target=horse, margin=ev.tag_margin, progress=True)
share = tag_ds.tag_share.mean("case")
summary = pd.DataFrame({
    "R+ in tag box (test)": share.sel(version="test").isel(region=0).to_series(),
    "R+ in tag box (untagged)": share.sel(version="test_untagged").isel(region=0).to_series(),
    f"R+ in box + {ev.tag_margin} px (test)": share.sel(version="test").isel(region=1).to_series(),
    "tag's share of area": tag_ds.tag_area_share.mean("case").to_series(),
    "horse score (test)": tag_ds.score.sel(version="test").mean("case").to_series(),
    "horse score (untagged)": tag_ds.score.sel(version="test_untagged").mean("case").to_series()})
display(Markdown(f"{len(cases)} tagged horse test images (means):"))
display(summary.round(3))
print(f"tag: {time.perf_counter() - t0:.1f} s")

# %% [markdown]
# ## Results

# %%
ds = xr.Dataset(attrs=make_attrs(cfg, context_images=ev.context_images,
                                 context_bootstrap=ev.context_bootstrap,
                                 context_ap_images=len(twins), tag_images=len(cases)))
ds["mu"] = mu
ds["mu_median"] = ci.estimate
ds["mu_low"], ds["mu_high"] = ci.low, ci.high
ds["mu_by_background"] = xr.DataArray(by_bg.values, dims=("background", "model"),
                                      coords={"background": by_bg.index.values, "model": by_bg.columns.values})
ds["mu_by_context_match"] = xr.DataArray(by_match.values, dims=("context_match", "model"),
                                         coords={"context_match": by_match.index.values.astype(bool),
                                                 "model": by_match.columns.values})
for v in ("score_test", "score_swapped", "score_drop", "ap_test", "ap_swapped", "ap_drop"):
    ds[v] = drop[v]
ds["tag_share"] = tag_ds.tag_share
ds["tag_score"] = tag_ds.score
ds["tag_area_share"] = tag_ds.tag_area_share
if results_path is not None:
    save_dataset(ds, results_path)
print(f"notebook total: {time.perf_counter() - t_start:.1f} s")
ds
