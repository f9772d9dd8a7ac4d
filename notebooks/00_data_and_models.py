# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
#   lrpkit:
#     expected_seconds: 36
# ---

# %% [markdown]
# # 00 · Data and models
#
# What the reports analyse: the configured data set (`dataset:`) and model(s) (`model:` or
# `models:`), a look at the images and their annotations per class, and each model's average
# precision per class on the analysed split (the layout of Table 1 in Lapuschkin et al. 2016).
#
# On lrpkit's own bias-zoo scenes (the default) a section of its own shows the biases the
# generator plants, so later notebooks can check what a model relies on against the truth:
# *context* (aeroplane on sky, boat on water, bus and car on road, horse and sheep on grass), an
# *artefact* (a copyright tag on most horse images), *colour* (buses are always yellow) and
# *texture* (sheep are woolly). There the default models are the CNN trained the way Lapuschkin
# et al. (2016, App. E) train their DNN (multi-label hinge loss, 4 corner + centre crops with
# mirroring, centre crop at test) and the Fisher-vector model (dense SIFT, PCA, GMM, improved FV,
# linear SVMs; Lapuschkin et al. 2016, Sec. 4).

# %% tags=["parameters"]
config = "default"      # config name or YAML path (lrpkit.load_config)
results_path = None     # where the runner wants this notebook's xarray results
n_show = 12             # images shown in the gallery
n_montage = 8           # images per row of the per-class and per-bias montages

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import xarray as xr
from IPython.display import Markdown, display

import lrpkit
from lrpkit import pipeline, sources, viz
from lrpkit.data import VOCDataset, read_bias
from lrpkit.data.bias import bias_summary
from lrpkit.data.summary import class_counts, images_of_class
from lrpkit.evaluate import Findings, Interval, attach_interval, twin_drop
from lrpkit.evaluate.scoring import (TWIN_SPLITS, ap_by_split, ap_intervals, dataset_twins, interval_at,
                                     interval_table)
from lrpkit.results import make_attrs, open_dataset, save_dataset
from lrpkit.viz import montage_rows, show_scenes

cfg = lrpkit.load_config(config)
src = sources.load_sources(cfg)
ds, models = src.dataset, list(src.models)
scenes = ds.source == "scenes"
viz.notebook_style()
display(Markdown(f"lrpkit {lrpkit.__version__} · config `{cfg.source}` · data **{ds.name}** "
                 f"({ds.source}, split `{ds.split}`, {len(ds)} images, {len(ds.classes)} classes) · "
                 f"model(s): {', '.join(f'**{m.name}**' for m in models)}"))
display(pd.DataFrame([{"model": m.name, "source": m.source, "file": str(m.path or ""),
                       "outputs": len(m.classes), "output": f"{m.output} ({m.prob})",
                       "input": f"{m.crop} px ({m.resize}, size {m.size})" if m.is_torch else "whole image"}
                      for m in models]).set_index("model"))

# %% [markdown]
# ## Sample images
# Images of the analysed split with their boxes (`(d)`: VOC's *difficult* objects).

# %%
idx = np.linspace(0, len(ds) - 1, min(n_show, len(ds))).astype(int)
fig = show_scenes([ds[int(i)] for i in idx], ncols=6)
plt.show()

# %% [markdown]
# ## Images and objects per class
# Images that show a class (a non-difficult object of it, the VOC convention), images whose
# objects of the class are all *difficult* (left out of that class's AP), and the boxes.

# %%
counts = class_counts(ds)
display(counts.to_dataframe().T.style.set_caption(f"{ds.name} / {ds.split}: {len(ds)} images"))
if not ds.has_boxes:
    viz.skip_section("Boxes per class", "object boxes in the dataset (VOC annotations or a box CSV)")

# %% [markdown]
# Each row: up to `n_montage` images that show the class.

# %%
rows = {c: ds.images(images_of_class(ds, c, n_montage, single_first=True)) for c in ds.classes}
fig = montage_rows(rows, n_montage, f"{ds.split} images per class")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## The planted biases of the scene set, measured
# Rates measured from the sidecar `bias.csv` against the rates the generator plants (± one
# binomial standard error). On `test_swapped` the backgrounds are drawn uniformly (context
# broken); on `test_untagged` the tags are removed. These two splits let later notebooks measure
# how much a model's score rests on context and on the artefact.

# %%
bias = None
if scenes:
    root = ds.root
    bias = bias_summary(root)
    # rows: statistic; cells: measured (planted)
    cells = (bias["measured"].to_pandas().T.round(3).astype(str) + " ("
             + bias["planted"].to_pandas().T.round(2).astype(str) + ")")
    display(cells)

    fig, ax = plt.subplots(figsize=(9, 3.2))
    stats = [s for s in bias.statistic.values if s != "car_hue_uniformity"]
    m = bias["measured"].sel(split="test", statistic=stats)
    e = bias["stderr"].sel(split="test", statistic=stats)
    p = bias["planted"].sel(split="test", statistic=stats)
    ax.bar(np.arange(len(stats)), m, yerr=e, color="#4c72b0", label="measured (test)")
    ax.scatter(np.arange(len(stats)), p, color="k", marker="_", s=600, zorder=3, label="planted")
    ax.set_xticks(np.arange(len(stats)), stats, rotation=20)
    ax.set_ylabel("rate")
    ax.set_ylim(0, 1.05)
    ax.legend(frameon=False)
    ax.set_title("planted biases in the test split")
    plt.show()
else:
    viz.skip_section("Planted biases", "lrpkit's bias-zoo scene set (`dataset.source: scenes`), whose "
                     "generator records the biases it plants (`bias.csv`) and writes counterfactual twins")

# %% [markdown]
# ### Counterfactual twins and montages per bias (scene set)
# One test image and its two twins; then per bias the groups the planted biases define, so the
# shortcut a model could learn is visible at a glance (and, in the last two rows, the twins in
# which it is broken).

# %%
if scenes:
    df = read_bias(root)
    tagged = df[(df.split == "test") & (df.tag == 1)].image_id
    first_id = tagged.iloc[0] if len(tagged) else df[df.split == "test"].image_id.iloc[0]
    twins = {"test": first_id, "test_swapped": first_id.replace("test_", "swapped_"),
             "test_untagged": first_id.replace("test_", "untagged_")}
    split_ds = {s: VOCDataset(root, s) for s in TWIN_SPLITS if s == "test" or s in set(df.split)}
    twins = {s: i for s, i in twins.items() if s in split_ds}
    fig = show_scenes([split_ds[s][split_ds[s].ids.index(i)] for s, i in twins.items()],
                      titles=list(twins), ncols=3)
    plt.suptitle("one test image and its counterfactual twins", y=1.02)
    plt.show()

    ts = df[df.split == "test"]

    def images_of(ids, split="test"):
        d = split_ds[split]
        pos = {i: k for k, i in enumerate(d.ids)}
        return [d[pos[i]][0] for i in list(dict.fromkeys(ids))[:n_montage] if i in pos]

    first = ts[ts.object_index == 0]
    groups = {
        "context matches": images_of(first[first.context_match.astype(bool)].image_id),
        "context broken": images_of(first[~first.context_match.astype(bool)].image_id),
        "horse, tagged": images_of(ts[(ts["class"] == "horse") & (ts.tag == 1)].image_id),
        "horse, no tag": images_of(ts[(ts["class"] == "horse") & (ts.tag == 0)].image_id),
        "tag, not horse": images_of(ts[(ts.tag == 1)
                                       & ~ts.image_id.isin(ts[ts["class"] == "horse"].image_id)].image_id),
    }
    tagged_ids = list(dict.fromkeys(ts[ts.tag == 1].image_id))
    if "test_swapped" in split_ds:
        groups["test_swapped"] = images_of([i.replace("test_", "swapped_") for i in ts.image_id], "test_swapped")
    if "test_untagged" in split_ds:
        groups["test_untagged (tag removed)"] = images_of([i.replace("test_", "untagged_") for i in tagged_ids],
                                                          "test_untagged")
    fig = montage_rows(groups, n_montage, "test images per bias")
    plt.tight_layout()
    plt.show()
else:
    viz.skip_section("Counterfactual twins and montages per bias", "lrpkit's scene set with its planted "
                     "tags and contexts (`bias.csv`) and its twin splits `test_swapped` / `test_untagged`")

# %% [markdown]
# ## Training the CNN
# Multi-label hinge loss per epoch and validation mAP of a CNN that lrpkit trained
# (`model.source: scene_cnn`). Checkpoints were kept along the way (`cnn_epoch*.pt`) so later
# notebooks can relate heatmap quality to training progress (Samek et al. 2017, Fig. 7).

# %%
histories = {m.name: m.path.parent / "history.nc" for m in models
             if m.source == "scene_cnn" and (m.path.parent / "history.nc").is_file()}
hist = None
for name, path in histories.items():
    hist = open_dataset(path)
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.2))
    a.plot(hist.epoch, hist.train_loss, "o-")
    a.set_xlabel("epoch")
    a.set_ylabel("train hinge loss")
    b.plot(hist.epoch, hist.val_map, "o-", label="mean")
    for c in hist["class"].values:
        b.plot(hist.epoch, hist.val_ap.sel({"class": c}), lw=0.8, alpha=0.6, label=c)
    b.set_xlabel("epoch")
    b.set_ylabel("validation AP")
    b.legend(fontsize=7, ncol=2, frameon=False)
    fig.suptitle(name, fontsize=10)
    plt.tight_layout()
    plt.show()
    print(f"{name}: training time {float(hist.time_s[-1]):.0f} s for {int(hist.epoch[-1])} epochs")
if not histories:
    viz.skip_section("Training the CNN", "a model trained by lrpkit (`model.source: scene_cnn`) with its "
                     "training history (`history.nc`)")

# %% [markdown]
# ## Average precision per class (the layout of Table 1 in Lapuschkin et al. 2016)
# AP of each model on `evaluation.ap_images` random images of the analysed split (all for
# `null`), each model on its own input (a CNN on its centre crop, Lapuschkin et al. 2016, App. E;
# the FV model on the whole image); VOC's difficult-only pairs are left out. Every AP carries its
# 95 % bootstrap interval over the images (`lrpkit.evaluate.scoring.ap_intervals`: the images are
# resampled once for every model, split and class, so differences are paired). On the scene set
# the same images' counterfactual twins are scored too: a drop on `test_swapped` measures how much
# a model leans on context; on `test_untagged` how much it leans on the copyright tag — where AP
# is blind to it (the tagged horses still outrank the rest), the drop of the horse score on the
# tagged images measures it.

# %%
ap_models = {m.name: m for m in models}
if scenes:  # the scene set's second default model, fitted by `lrpkit train`
    try:
        fv = pipeline.load_dataset_fisher(cfg, sources=src, fit=False)
    except FileNotFoundError as exc:
        display(Markdown(f"No Fisher-vector model in the AP table: {exc}."))
    else:
        ap_models.setdefault(fv.name, fv)
aps = ivs = tag = None
if ds.labels.any():
    twin_set = dataset_twins(ds, n_images=cfg.evaluation.ap_images, seed=cfg.seed)
    aps = ap_by_split(ap_models, twin_set, progress=True)
    ivs = ap_intervals(aps, ignore=twin_set.ignore, seed=cfg.seed)
    ref = twin_set.splits[0]
    display(Markdown(f"**n = {len(twin_set)} images** of {ds.name}/{ds.split} "
                     f"(`evaluation.ap_images` = {cfg.evaluation.ap_images})"
                     + (f" and their twins in {', '.join(twin_set.splits[1:])}" if len(twin_set.splits) > 1 else "")
                     + f"; 95 % intervals from {ivs['ap'].attrs['n_boot']} bootstrap resamples of the images."))
    table = interval_table(ivs["ap"], "class")
    table["mAP"] = interval_table(ivs["mAP"]).iloc[:, 0]
    display(table.reorder_levels(["model", "split"]).sort_index()
            .style.set_caption(f"AP [95 % interval] per class, n = {len(twin_set)} images"))

    fig, ax = plt.subplots(figsize=(7, 3.0))
    m_iv = ivs["mAP"]
    names, splits = list(aps.model.values), list(aps.split.values)
    w = 0.8 / len(splits)
    for k, sp in enumerate(splits):
        e = m_iv.estimate.sel(split=sp).values
        err = np.abs(np.stack([e - m_iv.low.sel(split=sp).values, m_iv.high.sel(split=sp).values - e]))
        ax.bar(np.arange(len(names)) + (k - (len(splits) - 1) / 2) * w, e, w, yerr=err, capsize=3, label=sp)
    ax.set_xticks(np.arange(len(names)), names)
    ax.set_ylabel("mAP")
    ax.set_ylim(0, 1.05)
    ax.legend(frameon=False, fontsize=8, loc="lower right")
    ax.set_title(f"mAP with 95 % bootstrap intervals (n = {len(twin_set)} images)")
    plt.show()
else:
    viz.skip_section("Average precision per class", "class labels for the analysed images")

# %% [markdown]
# ### Paired drops on the counterfactual twins (scene set)
# AP on `test` minus AP on the twin split, on the same images (one bootstrap resample of the images
# for both sides). A drop whose interval lies above 0 shows that the model learned the bias the
# twin removes. For the tag, the mean horse score of the tagged horse images minus that of their
# untagged twins (`lrpkit.evaluate.twin_drop`).

# %%
if ivs is not None and "mAP_drop" in ivs:
    drops = interval_table(ivs["ap_drop"], "class")
    drops["mAP"] = interval_table(ivs["mAP_drop"]).iloc[:, 0]
    display(drops.style.set_caption(f"AP drop, {ref} minus twin [95 % interval], n = {len(twin_set)} images"))
    if "test_untagged" in aps.split.values and "horse" in aps["class"].values:
        tag = twin_drop(aps, "test_untagged", classes=["horse"], seed=cfg.seed)
        display(pd.DataFrame({
            "horse score (tagged)": tag.score.sel({"class": "horse"}).to_series().round(3),
            "without tag": tag.twin_score.sel({"class": "horse"}).to_series().round(3),
            "score drop [95 % interval]": [Interval(*(float(tag[v].sel(model=m, **{"class": "horse"}))
                                                     for v in ("score_drop", "score_drop_low", "score_drop_high")),
                                                   int(tag.n.sel(model=m, **{"class": "horse"}))).format()
                                          for m in tag.model.values],
            "n": tag.n.sel({"class": "horse"}).to_series()}).style.set_caption(
                f"horse score on the {int(tag.n_images)} test images whose tag was removed"))
else:
    viz.skip_section("Paired drops on the counterfactual twins", "counterfactual twin splits "
                     "(`test_swapped` / `test_untagged` of lrpkit's scene set)")

# %% [markdown]
# ## Findings (generated)
# Lapuschkin et al. 2016 (Table 1) report mAP on VOC 2007 for a fine-tuned, ImageNet-pretrained
# DNN (72.12) and the FV model (59.99); a model here is compared with the paper's model of its
# kind (a different data set: a sanity check that the model is usable, not a reproduction). On
# lrpkit's scenes the reports read heatmaps against planted biases, which only makes sense if the
# models learned them: the swapped-background drop and the tag's score drop test that.

# %%
F = Findings("00_data_and_models")
PAPER_MAP = {"fisher": 0.5999, "deep": 0.7212}
if ivs is not None:
    for name, m in ap_models.items():
        kind = "fisher" if m.source == "fisher" else "deep"
        F.add(f"{name} reaches the mAP Lapuschkin et al. 2016 (Table 1) report for their "
              f"{'FV model' if kind == 'fisher' else 'DNN'} on VOC 2007 (here on {ds.name}/{ref})",
              interval_at(ivs["mAP"], split=ref, model=name), direction=">",
              reference=PAPER_MAP[kind], paper=f"{100 * PAPER_MAP[kind]:.2f} % mAP (VOC 2007)", percent=True,
              reason=f"{name} reaches mAP {float(aps.mAP.sel(split=ref, model=name)):.3f} on "
                     f"{len(twin_set)} images of {ds.name}; the paper's models were trained on VOC 2007")
else:
    F.not_tested("mAP against Lapuschkin et al. 2016, Table 1", "the analysed images have no class labels")
planted = bias["planted"].sel(split="test") if bias is not None else None
if ivs is not None and "mAP_drop" in ivs and "test_swapped" in ivs["mAP_drop"].split.values:
    for name in aps.model.values:
        F.add(f"{name} learned the planted context: mAP drops when the background is drawn at random "
              "(test_swapped, lrpkit's counterfactual twins; the context use Lapuschkin et al. 2016 measure "
              "with eq. 11)",
              interval_at(ivs["mAP_drop"], split="test_swapped", model=name), direction=">",
              paper=f"planted: {float(planted.sel(statistic='context_match')):.0%} of objects on their context",
              reason=f"{name}'s mAP is {float(aps.mAP.sel(split=ref, model=name)):.3f} on {ref} and "
                     f"{float(aps.mAP.sel(split='test_swapped', model=name)):.3f} with random backgrounds")
else:
    F.not_tested("The models learned the planted context bias", "counterfactual twins with a random "
                 "background (lrpkit's scene set, `test_swapped`)")
if tag is not None:
    for name in tag.model.values:
        cell = tag.sel(model=name, **{"class": "horse"})
        F.add(f"{name} learned the planted copyright tag: the horse score of tagged horses drops when "
              "the tag is removed (test_untagged; the FV model's horse tag in Lapuschkin et al. 2016)",
              Interval(float(cell.score_drop), float(cell.score_drop_low), float(cell.score_drop_high),
                       int(cell.n)), direction=">",
              paper=f"planted: {float(planted.sel(statistic='tag_given_horse')):.0%} of horses tagged",
              reason=f"{name}'s mean horse score is {float(cell.score):.2f} with the tag and "
                     f"{float(cell.twin_score):.2f} without it")
else:
    F.not_tested("The models learned the planted copyright tag", "counterfactual twins without the tag "
                 "(lrpkit's scene set, `test_untagged`)")

# %% tags=["findings"]
F.show()

# %%
parts = [counts]
if bias is not None:
    parts.append(xr.Dataset({"bias_measured": bias["measured"], "bias_planted": bias["planted"],
                             "bias_stderr": bias["stderr"]}))
if aps is not None:
    # AP over the analysed split (and its twins): a dim of its own (the bias rows cover all splits)
    parts.append(aps[["ap", "mAP", "scores", "labels"]].rename(split="eval_split"))
if hist is not None:
    parts.append(xr.Dataset({"train_loss": hist["train_loss"], "val_map": hist["val_map"]}))
results = xr.merge(parts, combine_attrs="drop")
if ivs is not None:  # the intervals next to the estimates (a `bound` dim: estimate, low, high)
    for key, iv in ivs.items():
        results = attach_interval(results, f"{key}_interval",
                                  iv.rename({d: new for d, new in (("split", "eval_split"), ("versus", "versus_model"))
                                             if d in iv.dims}))
if tag is not None:
    for v in ("score_drop", "score_drop_low", "score_drop_high", "n"):
        results[f"horse_tag_{v}"] = tag[v].sel({"class": "horse"}, drop=True)
results.attrs = make_attrs(cfg, notebook="00_data_and_models", **sources.describe(models, ds),
                           ap_images=0 if aps is None else int(aps.sizes["image"]))
results = F.attach(results)
if results_path:
    save_dataset(results, results_path)
results
