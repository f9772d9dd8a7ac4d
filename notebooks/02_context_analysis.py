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
# # 02 · Context use: the outside-inside relevance ratio
#
# Lapuschkin et al. (CVPR 2016, Sec. 5.3 and 6.5) measure how much a classifier uses
# **context** with the outside-inside relevance ratio (eq. 11)
#
# µ = mean positive relevance per pixel **outside** the object's boxes / mean **inside**,
#
# and find (Fig. 6) that the Fisher-vector (FV) model uses more context than the deep network,
# most for classes with a distinctive background (boat–water, aeroplane–sky). This notebook runs on
# the configured model(s) and data (`model` / `models`, `dataset`):
#
# 1. µ per class for every model, with **bootstrap intervals** (Fig. 6; needs boxes), the FV model
#    beside the network where the config has one;
# 2. what context is worth to each model: the per-class **score and AP drop** from the analysed split
#    to its **counterfactual twins** where the data has them (lrpkit's scenes: `test_swapped`, the
#    same objects over a background drawn at random, and `test_untagged`, the tag removed).
#
# On lrpkit's bias-zoo scenes the context is planted, so two sections of their own check µ against
# the truth: µ per **background type** and by whether the background is the class's usual
# **context**, and the **horse tag** (an artefact planted on 70 % of horse images): relevance on it
# and the score without it. Notebook 03 shows the heatmaps; here the numbers.
#
# Heatmaps: a torch model with the config's LRP settings (`lrp` section) on its own input (boxes
# mapped through its preprocessing; a TorchScript model, which LRP cannot reach, with gradient ×
# input, LRP-0's equal on ReLU networks), the FV model with LRP-ε (ε = 100, Lapuschkin et al. 2016,
# App. C) on the whole image.

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
from lrpkit import pipeline, sources, viz
from lrpkit.data import read_bias
from lrpkit.evaluate import bootstrap_da
from lrpkit.evaluate.box_samples import class_box_samples
from lrpkit.evaluate.scoring import ap_by_split, dataset_twins
from lrpkit.evaluate.shallow_deep import class_average_heatmaps, source_map_model, tag_relevance
from lrpkit.explain import get_method
from lrpkit.results import make_attrs, save_dataset

t_start = time.perf_counter()
cfg = lrpkit.load_config(config)
ev = cfg.evaluation
src = sources.load_sources(cfg)
data = src.dataset
classes = list(data.classes)
fv = pipeline.available_fisher(cfg, src)       # configured, or lrpkit's on its scenes; else None
models = ([fv] if fv is not None and fv not in src.models else []) + list(src.models)
scenes = data.source == "scenes"               # lrpkit's bias-zoo set: planted truth in bias.csv
FV_LRP = dict(rule="epsilon", epsilon=100.0, pca_epsilon=0.5)


def heatmap_params(mdl):
    """The config's LRP for a torch model that LRP can reach, else gradient x input (TorchScript)."""
    if get_method("lrp").accepts(mdl.model):
        return {"method": "lrp", **cfg.lrp.method_params()}
    return {"method": "gradient_x_input"}


map_models = [source_map_model(mdl, classes, fv_params=FV_LRP) if not mdl.is_torch
              else source_map_model(mdl, classes, **heatmap_params(mdl)) for mdl in models]
names = [mm.name for mm in map_models]
how = [heatmap_params(mdl)["method"] if mdl.is_torch else "FV-LRP" for mdl in models]
viz.notebook_style()
display(Markdown(
    f"Config `{cfg.source}` · data **{data.name}** ({data.source}, `{data.split}`, {len(data)} images) · "
    f"models: {', '.join(f'**{mdl.name}** ({mdl.source}, {h})' for mdl, h in zip(models, how))} · "
    f"{ev.context_images} images per class for µ · {ev.context_bootstrap} bootstrap resamples"))
if fv is None:
    viz.skip_section("The FV comparison", "a Fisher-vector model (a `model` / `models` entry with "
                     "`source: fisher`, or the FV model lrpkit fits beside its scene CNN on its scenes)")
rng = np.random.default_rng(cfg.seed)
skipped = []

# %% [markdown]
# ## Fig. 6 · µ per class and model, with 95 % bootstrap intervals
#
# Per class, `context_images` random images that show the class and hold a box of it; µ of each
# image's heatmap for that class with all of the class's boxes as "inside". Bars: the median µ over
# images; whiskers: percentile bootstrap interval of the median. µ > 1: evidence is denser outside
# the object.

# %%
mu = None
if not data.has_boxes:
    skipped.append(viz.skip_section("µ per class (Fig. 6)", "object boxes in the dataset (VOC "
                                    "annotations, or a box CSV for an image folder: `dataset.boxes`)"))
else:
    t0 = time.perf_counter()
    picks = class_box_samples(data, ev.context_images, seed=cfg.seed)
    samples = {c: [(data.image(i), b) for i, b in v] for c, v in picks.items()}
    avg = class_average_heatmaps(map_models, samples, classes, progress=True)
    mu = avg.context_ratio                                     # (class, model, sample)
    mu_ids = xr.DataArray([[data.ids[i] for i, _ in picks[c]] + [""] * (mu.sizes["sample"] - len(picks[c]))
                           for c in classes], dims=("class", "sample"), coords={"class": classes})
    ci = bootstrap_da(mu, "sample", stat="median", n_boot=ev.context_bootstrap, seed=cfg.seed)
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(classes) + 2), 3.2))
    w = 0.8 / len(names)
    for k, name in enumerate(names):
        est = ci.estimate.sel({"model": name}).values
        lo, hi = ci.low.sel({"model": name}).values, ci.high.sel({"model": name}).values
        xs = np.arange(len(classes)) + (k - (len(names) - 1) / 2) * w
        ax.bar(xs, est, w, label=name, color=f"C{k}")
        ax.errorbar(xs, est, yerr=[np.nan_to_num(np.clip(est - lo, 0, None)),
                                   np.nan_to_num(np.clip(hi - est, 0, None))],
                    fmt="none", ecolor="k", capsize=2, lw=0.8)
    ax.axhline(1.0, color="k", lw=0.8, ls=":")
    ax.set_xticks(np.arange(len(classes)), classes, rotation=30 if len(classes) > 8 else 0)
    ax.set_ylabel("median µ (outside / inside)")
    if np.nanmin(ci.estimate.values, initial=np.inf) > 0:
        ax.set_yscale("log")
    ax.legend()
    plt.tight_layout()
    plt.show()
    display(ci.estimate.to_pandas().round(3).T.rename(index=lambda nm: f"median µ {nm}"))
    display(Markdown(f"Images per class: {dict(zip(classes, avg.n_average.values.tolist()))}"))
    print(f"µ per class: {time.perf_counter() - t0:.1f} s")

# %% [markdown]
# ## Scene set only · µ against the planted context
#
# Each image's µ joined with its ground truth from `bias.csv` (`lrpkit.data.read_bias`): the
# background and whether it is the usual context of the explained class (`object_context_match`:
# aeroplane–sky, boat–water, bus/car–road, horse/sheep–grass). A model that uses the context should
# put more relevance outside the box (higher µ) when the background **matches**.

# %%
by_bg = by_match = None
if not scenes or mu is None:
    skipped.append(viz.skip_section("µ against the planted context", "lrpkit's bias-zoo scenes "
                                    "(`bias.csv` records each object's background and context match)"))
else:
    bias = read_bias(data.root)
    objs = bias[bias.split == data.split]
    rows = []
    for c in classes:
        for k, (i, _) in enumerate(picks[c]):
            o = objs[(objs.image_id == data.ids[i]) & (objs["class"] == c)].iloc[0]
            for name in names:
                rows.append({"class": c, "image_id": data.ids[i], "model": name, "background": o.background,
                             "context_match": bool(o.object_context_match),
                             "mu": float(mu.sel({"class": c, "model": name}).isel(sample=k))})
    per_image = pd.DataFrame(rows)
    by_bg = per_image.pivot_table(index="background", columns="model", values="mu", aggfunc="median")
    by_match = per_image.pivot_table(index="context_match", columns="model", values="mu", aggfunc="median")
    n_match = per_image[per_image.model == names[0]].groupby("context_match").size()
    display(Markdown("Median µ per background type:"))
    display(by_bg.round(3))
    display(Markdown(f"Median µ by context match (images: {n_match.to_dict()}):"))
    display(by_match.round(3))
    fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 3), sharey=True, squeeze=False)
    for ax, name in zip(axes[0], names):
        d = per_image[per_image.model == name]
        groups = [d[d.context_match == v].mu.replace(np.inf, np.nan).dropna().values for v in (True, False)]
        ax.boxplot(groups)
        ax.set_xticks([1, 2], ["usual context", "other background"])
        ax.set_yscale("log")
        ax.set_title(f"{name}: µ per image")
    plt.tight_layout()
    plt.show()

# %% [markdown]
# ## What the context is worth: score and AP on counterfactual twins
#
# `context_ap_images` random images of the analysed split and their twins in each counterfactual
# split (the same objects and pixels with one cue changed). Per class: the mean score of the images
# that contain the class and the AP, on the originals and on the twins; the drop measures how much
# each model leans on the changed cue.

# %%
twin_res = None
twins = dataset_twins(data, n_images=ev.context_ap_images, seed=cfg.seed)
counterfactual = twins.splits[1:]
if not counterfactual:
    skipped.append(viz.skip_section(
        "Score and AP on counterfactual twins", "counterfactual twin splits of the analysed split "
        "(lrpkit's scenes analysed on `test`: `test_swapped` and `test_untagged`)"))
else:
    t0 = time.perf_counter()
    ref = twins.splits[0]
    ap = ap_by_split({mdl.name: mdl for mdl in models}, twins, progress=True)
    pos_mask = xr.DataArray(twins.labels[ref] > 0.5, dims=("image", "class"),
                            coords={"image": ap.image, "class": ap["class"]})
    pos_score = ap.scores.where(pos_mask).mean("image")            # (split, model, class)
    twin_res = xr.Dataset({"score": pos_score, "ap": ap.ap, "mAP": ap.mAP})
    for v, a in (("score_drop", pos_score), ("ap_drop", ap.ap)):
        twin_res[v] = (a.sel(split=ref, drop=True) - a.sel(split=counterfactual)).rename(split="twin")
    tab = twin_res[["score_drop", "ap_drop"]].to_dataframe().unstack("model")
    display(Markdown(f"{len(twins)} `{ref}` images + their twins; drop = {ref} − twin:"))
    display(tab.round(3))
    fig, axes = plt.subplots(len(counterfactual), 2, figsize=(10, 3 * len(counterfactual)), squeeze=False)
    w = 0.8 / len(names)
    for row, tw in zip(axes, counterfactual):
        for ax, v in zip(row, ("score_drop", "ap_drop")):
            for k, name in enumerate(names):
                ax.bar(np.arange(len(classes)) + (k - (len(names) - 1) / 2) * w,
                       twin_res[v].sel({"model": name, "twin": tw}), w, label=name)
            ax.set_xticks(np.arange(len(classes)), classes)
            ax.axhline(0, color="k", lw=0.8)
            ax.set_title(v.replace("_", " ") + f" ({ref} → {tw})")
    axes[0, 0].legend()
    plt.tight_layout()
    plt.show()
    print(f"twins: {time.perf_counter() - t0:.1f} s")

# %% [markdown]
# ## Scene set only · the horse tag: relevance on it and the score without it
#
# Tagged horse test images and their `test_untagged` twins (`lrpkit.evaluate.shallow_deep.tag_relevance`):
# the share of positive relevance in the tag box (and in the box grown by `tag_margin` px, since heat
# caused by the tag spreads around it) and the horse score with and without the tag. A uniform map
# would put the tag's share of the area there.

# %%
tag_ds = None
if not (scenes and data.split == "test" and "horse" in classes):
    skipped.append(viz.skip_section("The horse tag", "lrpkit's bias-zoo scenes analysed on `test` "
                                    "(the planted tag in `bias.csv` and the `test_untagged` twins)"))
else:
    t0 = time.perf_counter()
    bias = read_bias(data.root)
    objs = bias[bias.split == data.split]
    untagged = sources.load_dataset(cfg.dataset, cfg, split="test_untagged")
    pos = {image_id: k for k, image_id in enumerate(data.ids)}
    upos = {image_id: k for k, image_id in enumerate(untagged.ids)}
    tagged = objs[(objs["class"] == "horse") & (objs.tag == 1)].drop_duplicates("image_id")
    tagged = tagged[tagged.image_id.isin(data.ids)]
    tagged = tagged.iloc[sorted(rng.permutation(len(tagged))[:ev.tag_images])]
    cases = []
    for _, row in tagged.iterrows():
        twin = "untagged_" + row.image_id.split("_", 1)[1]
        if twin in upos:
            tag = (int(row.tag_xmin), int(row.tag_ymin), int(row.tag_xmax), int(row.tag_ymax))
            cases.append((row.image_id, data.image(pos[row.image_id]), untagged.image(upos[twin]), tag))
    tag_ds = tag_relevance(map_models, cases, target=classes.index("horse"), margin=ev.tag_margin,
                           progress=True)
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
out = xr.Dataset(attrs=make_attrs(cfg, **sources.describe(models, data), context_images=ev.context_images,
                                  context_bootstrap=ev.context_bootstrap, context_ap_images=len(twins),
                                  fv_model=fv.name if fv is not None else "", skipped_sections=skipped))
if mu is not None:
    out["mu"] = mu
    out["mu_image_id"] = mu_ids
    out["mu_median"] = ci.estimate
    out["mu_low"], out["mu_high"] = ci.low, ci.high
if by_bg is not None:
    out["mu_by_background"] = xr.DataArray(by_bg.values, dims=("background", "model"),
                                           coords={"background": by_bg.index.values, "model": by_bg.columns.values})
    out["mu_by_context_match"] = xr.DataArray(by_match.values, dims=("context_match", "model"),
                                              coords={"context_match": by_match.index.values.astype(bool),
                                                      "model": by_match.columns.values})
if twin_res is not None:
    for v in ("score", "ap", "mAP", "score_drop", "ap_drop"):
        out[f"twin_{v}"] = twin_res[v]
if tag_ds is not None:
    out["tag_share"] = tag_ds.tag_share
    out["tag_score"] = tag_ds.score
    out["tag_area_share"] = tag_ds.tag_area_share
if results_path is not None:
    save_dataset(out, results_path)
print(f"notebook total: {time.perf_counter() - t_start:.1f} s")
out
