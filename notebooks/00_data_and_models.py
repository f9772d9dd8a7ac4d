# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
#   lrpkit:
#     expected_seconds: 45
# ---

# %% [markdown]
# # 00 · Data and models
#
# The bias-zoo scene set that every lrpkit analysis runs on, the biases planted in it, and the
# default models trained on it: the CNN the way paper 000 (App. E) trains its DNN (multi-label hinge
# loss, 4 corner + centre crops with mirroring, centre crop at test) and the Fisher-vector model
# (dense SIFT, PCA, GMM, improved FV, linear SVMs; paper 000 Sec. 4).
#
# The scenes carry **known** biases, so later notebooks can check what a model relies on against
# the truth: *context* (aeroplane on sky, boat on water, bus and car on road, horse and sheep on
# grass), an *artefact* (a copyright tag on most horse images), *colour* (buses are always yellow)
# and *texture* (sheep are woolly).

# %% tags=["parameters"]
config = "default"      # config name or YAML path (lrpkit.load_config)
results_path = None     # where the runner wants this notebook's xarray results
n_show = 12             # scenes shown in the gallery
n_montage = 8           # images per row of the per-class and per-bias montages

# %%
import matplotlib.pyplot as plt
import numpy as np
import xarray as xr
from IPython.display import display

import lrpkit
from lrpkit import pipeline
from lrpkit.data import VOCDataset, read_bias
from lrpkit.data.bias import bias_summary
from lrpkit.evaluate.scoring import TWIN_SPLITS, ap_by_split, load_twins
from lrpkit.results import make_attrs, open_dataset, save_dataset
from lrpkit.viz import montage, show_scenes

cfg = lrpkit.load_config(config)
scenes = pipeline.scenes_root(cfg)
print(f"lrpkit {lrpkit.__version__}; scenes in {scenes}; models in {pipeline.models_root(cfg)}")

# %% [markdown]
# ## Sample scenes
# Test images with their VOC boxes. Some hold two objects; horses often carry the tag in the
# bottom-left corner.

# %%
test = VOCDataset(scenes, "test")
print(test)
idx = np.linspace(0, len(test) - 1, min(n_show, len(test))).astype(int)
fig = show_scenes([test[i] for i in idx], ncols=6)
plt.show()

# %% [markdown]
# ## The planted biases, measured
# Rates measured from the sidecar `bias.csv` against the rates the generator plants (± one
# binomial standard error). On `test_swapped` the backgrounds are drawn uniformly (context
# broken); on `test_untagged` the tags are removed. These two splits let later notebooks measure
# how much a model's score rests on context and on the artefact.

# %%
bias = bias_summary(scenes)
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

# %%
df = read_bias(scenes)
tagged = df[(df.split == "test") & (df.tag == 1)].image_id
src = tagged.iloc[0] if len(tagged) else df[df.split == "test"].image_id.iloc[0]
twins = {"test": src, "test_swapped": src.replace("test_", "swapped_"),
         "test_untagged": src.replace("test_", "untagged_")}
fig = show_scenes([VOCDataset(scenes, s)[VOCDataset(scenes, s).ids.index(i)] for s, i in twins.items()],
                  titles=list(twins), ncols=3)
plt.suptitle("one test image and its two counterfactual twins", y=1.02)
plt.show()

# %% [markdown]
# ## Montages per class and per bias
# Each row: up to `n_montage` test images. Per class: images that contain the class. Per bias:
# the groups the planted biases define, so the shortcut a model could learn is visible at a
# glance (and, in the last two rows, the twins in which it is broken).

# %%
ts = df[df.split == "test"]
split_ds = {s: VOCDataset(scenes, s) for s in TWIN_SPLITS if s == "test" or s in set(df.split)}


def images_of(ids, split="test"):
    ds = split_ds[split]
    pos = {i: k for k, i in enumerate(ds.ids)}
    return [ds[pos[i]][0] for i in list(dict.fromkeys(ids))[:n_montage] if i in pos]


rows = {c: images_of(ts[ts["class"] == c].image_id) for c in test.classes}
first = ts[ts.object_index == 0]
groups = {
    "context matches": images_of(first[first.context_match.astype(bool)].image_id),
    "context broken": images_of(first[~first.context_match.astype(bool)].image_id),
    "horse, tagged": images_of(ts[(ts["class"] == "horse") & (ts.tag == 1)].image_id),
    "horse, no tag": images_of(ts[(ts["class"] == "horse") & (ts.tag == 0)].image_id),
    "tag, not horse": images_of(ts[(ts.tag == 1) & ~ts.image_id.isin(ts[ts["class"] == "horse"].image_id)].image_id),
}
tagged_ids = list(dict.fromkeys(ts[ts.tag == 1].image_id))
if "test_swapped" in split_ds:
    groups["test_swapped"] = images_of([i.replace("test_", "swapped_") for i in ts.image_id], "test_swapped")
if "test_untagged" in split_ds:
    groups["test_untagged (tag removed)"] = images_of([i.replace("test_", "untagged_") for i in tagged_ids],
                                                      "test_untagged")
for title, named in (("per class", rows), ("per bias", groups)):
    named = {k: v for k, v in named.items() if v}
    fig, axes = plt.subplots(len(named), 1, figsize=(1.4 * n_montage, 1.25 * len(named)), squeeze=False)
    for ax, (name, imgs) in zip(axes[:, 0], named.items()):
        ax.imshow(montage(imgs, ncols=n_montage, pad=3))
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=9)
    fig.suptitle(f"test images {title}", fontsize=10)
    plt.tight_layout()
    plt.show()

# %% [markdown]
# ## Training the CNN
# Multi-label hinge loss per epoch and validation mAP. Checkpoints were kept along the way
# (`cnn_epoch*.pt`) so later notebooks can relate heatmap quality to training progress
# (paper 002, Fig. 7).

# %%
hist = open_dataset(pipeline.cnn_dir(cfg) / "history.nc")
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
plt.tight_layout()
plt.show()
print(f"training time: {float(hist.time_s[-1]):.0f} s for {int(hist.epoch[-1])} epochs")

# %% [markdown]
# ## Average precision per class, both models (the layout of Table 1 in paper 000)
# AP of the CNN (one centre crop, paper 000 App. E) and of the FV model (whole image) on
# `evaluation.ap_images` random test images and on their counterfactual twins. A drop on
# `test_swapped` measures how much a model leans on context; a drop for *horse* on `test_untagged`
# measures how much it leans on the copyright tag.

# %%
cnn = pipeline.load_cnn(cfg)
fv = pipeline.load_fisher(cfg)
twin_set = load_twins(scenes, TWIN_SPLITS, n_images=cfg.evaluation.ap_images, seed=cfg.seed,
                      classes=list(cnn.classes))
aps = ap_by_split({"CNN": cnn, "FV": fv}, twin_set, progress=True)
ap_table = aps["ap"].to_dataframe().ap.unstack("class")[list(aps["class"].values)]
ap_table["mAP"] = aps["mAP"].to_series()
ap_table = ap_table.reorder_levels(["model", "split"]).sort_index()
print(f"{len(twin_set)} test images and their twins (evaluation.ap_images = {cfg.evaluation.ap_images})")
display(ap_table.style.format("{:.3f}").background_gradient(cmap="RdYlGn", vmin=0.5, vmax=1.0, axis=None))
for model in aps.model.values:
    m = aps["mAP"].sel(model=model)
    msg = f"{model}: mAP {float(m.sel(split='test')):.3f} on test"
    if "test_swapped" in aps.split.values:
        msg += f", {float(m.sel(split='test_swapped')):.3f} with context broken"
    if "test_untagged" in aps.split.values and "horse" in aps["class"].values:
        h = aps["ap"].sel(model=model, **{"class": "horse"})
        msg += f"; horse AP {float(h.sel(split='test')):.3f} -> {float(h.sel(split='test_untagged')):.3f} without tags"
    print(msg)

# %%
results = xr.Dataset(
    {"bias_measured": bias["measured"], "bias_planted": bias["planted"], "bias_stderr": bias["stderr"],
     # AP over the test split and its twins: a dim of its own (the bias rows cover all splits)
     "ap": aps["ap"].rename(split="eval_split"), "mAP": aps["mAP"].rename(split="eval_split"),
     "train_loss": hist["train_loss"], "val_map": hist["val_map"]},
    attrs=make_attrs(cfg, notebook="00_data_and_models", ap_images=len(twin_set)))
if results_path:
    save_dataset(results, results_path)
results
