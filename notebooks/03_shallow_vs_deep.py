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
# # 03 · Shallow vs deep: what do the FV model and the CNN look at?
#
# Paper 000 Sec. 6.3-6.5 (Fig. 4-6) and paper 001 Fig. 1, on the bias-zoo scenes. Both models are
# explained with LRP for the class in question: the **FV model** with the ε-rule (ε = 100, paper 000
# App. C) on the whole image, the **CNN** with the composite of paper 001 (α = 2, β = 1 on convolutions,
# ε on dense layers) on its 96 × 96 centre crop. Heatmaps are shown on each model's own input: red =
# evidence for the class, blue = against.
#
# The scenes carry planted biases, so we know what a shortcut would look like:
# **context** (the background matches the first object's class 88 % of the time: aeroplane–sky,
# boat–water, bus/car–road, horse/sheep–grass), an **artefact** (a "© lrp" copyright tag in the
# bottom-left corner of 70 % of horse images, 3 % of the others), **colour** (buses are always yellow)
# and **texture** (sheep wear wool).

# %% tags=["parameters"]
config = "default"      # config name or YAML path (lrpkit.load_config)
results_path = None     # where the runner wants this notebook's xarray results

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import xarray as xr
from IPython.display import Markdown, display

import lrpkit
from lrpkit import pipeline, viz
from lrpkit.data import VOCDataset, read_bias
from lrpkit.evaluate import box_share, box_to_crop
from lrpkit.evaluate.scoring import image_scores
from lrpkit.evaluate.shallow_deep import class_average_heatmaps, cnn_map_model, fv_map_model, tag_relevance
from lrpkit.fisher import FisherLRP
from lrpkit.heatmaps import cnn_heatmaps, fv_heatmap, grow_box, input_geometry
from lrpkit.results import make_attrs, save_dataset
from lrpkit.viz import draw_box, show_heatmap, show_image

cfg = lrpkit.load_config(config)
ev = cfg.evaluation
scenes = pipeline.scenes_root(cfg)
cnn, fv, classes = pipeline.load_models(cfg)
viz.notebook_style()
display(Markdown(f"Config `{cfg.source}` · scenes `{scenes}` · models `{pipeline.models_root(cfg)}` · "
                 f"classes: {', '.join(classes)}"))

n_avg, n_tag, tag_margin, cutoff = ev.average_heatmap_images, ev.tag_images, ev.tag_margin, ev.cnn_cutoff
size, crop = input_geometry(cnn)
test = VOCDataset(scenes, "test", classes=classes)
bias = read_bias(scenes)
objs = bias[bias.split == "test"]
FV_KW = dict(rule="epsilon", epsilon=100.0, pca_epsilon=0.5)
CNN_KW = dict(composite=cfg.lrp.composite or "alpha2_beta1")
fv_lrp = FisherLRP(fv, **FV_KW)   # = lrpkit.explain(fv, x, c, method="fv_lrp", ...), one image at a time
models = [fv_map_model(fv_lrp, "FV"), cnn_map_model(cnn, "CNN", **CNN_KW)]

# %% [markdown]
# ## Heatmaps for every class (cf. paper 000 Fig. 4-5, top)
#
# One test image per class (a single-object image both models classify correctly where there is one).
# Columns: the image, the FV heatmap, the CNN's input crop and the CNN heatmap, each for the row's class.
# Green boxes: the object's annotation.

# %%
one = objs.groupby("image_id").filter(lambda g: len(g) == 1)
examples = {}
for r, c in enumerate(classes):
    cand = [test.ids.index(i) for i in one[one["class"] == c].image_id if i in test.ids][:8]
    if not cand:
        cand = [int(np.argmax(test.labels[:, r]))]
    f_c = image_scores(cnn, [test[i][0] for i in cand])[:, r]
    examples[c] = cand[int(np.argmax(f_c > 0))]   # first candidate the CNN gets right, else the first
items = [test[examples[c]] for c in classes]
cm = cnn_heatmaps(cnn, [im for im, _ in items], list(range(len(classes))), **CNN_KW)
fig, axes = plt.subplots(len(classes), 4, figsize=(9.5, 2.2 * len(classes)))
for r, (c, (img, tgt)) in enumerate(zip(classes, items)):
    Rf, ff = fv_heatmap(fv_lrp, img, r)
    show_image(axes[r, 0], img, f"{c}: {tgt['id']}")
    show_heatmap(axes[r, 1], Rf, f"FV, f(x) = {ff:+.2f}")
    show_image(axes[r, 2], cm.inputs[r], "CNN input (centre crop)")
    show_heatmap(axes[r, 3], cm.relevance[r], f"CNN, f(x) = {cm.scores[r]:+.2f}")
    for b, n in zip(tgt["boxes"], tgt["names"]):
        if n == c:
            draw_box(axes[r, 0], b)
            draw_box(axes[r, 1], b)
            bc = box_to_crop(b, tgt["size"], size, crop)[0]
            draw_box(axes[r, 2], bc)
            draw_box(axes[r, 3], bc)
fig.suptitle("LRP heatmaps per class: FV (ε = 100) vs CNN (α2β1); red supports the class", fontsize=10)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Average heatmaps per class over landscape images (paper 000 Fig. 5, bottom)
#
# Each heatmap is divided by its largest absolute value, then averaged over up to `n_avg` landscape
# test images that contain the class (each model explained for that class). What the planted context
# bias predicts for a model that uses it: heat at the **top** for aeroplane (sky), in the **bottom
# half** for boat (water), bus/car (road) and horse/sheep (grass) — spread over the background rather
# than concentrated where objects usually are; for horse also a hot **bottom-left corner** (the tag).
# The CNN's input is the image scaled to its longest side `S`, edge-padded to `S × S` and centre-cropped
# (paper 000 App. E), so for landscape images the top and bottom rows of its maps are padding.
# FV maps of images of another size are resized to the first map's size before averaging.

# %%
land = objs[objs.orientation == "landscape"]
pos = {i: k for k, i in enumerate(test.ids)}
samples = {}
for c in classes:
    ids = [i for i in dict.fromkeys(land[land["class"] == c].image_id) if i in pos][:n_avg]
    samples[c] = [(img, [b for b, n in zip(t["boxes"], t["names"]) if n == c])
                  for img, t in (test[pos[i]] for i in ids)]
avg = class_average_heatmaps(models, samples, classes, max_samples=n_avg, progress=True)

fig, axes = plt.subplots(2, len(classes), figsize=(2.1 * len(classes), 4.0), squeeze=False)
for r, c in enumerate(classes):
    show_heatmap(axes[0, r], avg.avg_heatmap_fv.sel({"class": c}), f"{c} (n={int(avg.n_average[r])})")
    show_heatmap(axes[1, r], avg.avg_heatmap_cnn.sel({"class": c}))
axes[0, 0].set_ylabel("FV", fontsize=10)
axes[1, 0].set_ylabel("CNN", fontsize=10)
fig.suptitle("Average heatmaps per class over landscape test images (each map scaled to max |R| = 1)",
             fontsize=10)
plt.tight_layout()
plt.show()

# %% [markdown]
# ### Context use per class: outside-inside relevance ratio (paper 000 eq. 11, Fig. 6)
#
# µ = mean positive relevance per pixel *outside* the class's boxes / mean *inside*, per image, from
# the same heatmaps (median over images). µ > 1: the evidence is denser in the context than on the
# object. The planted context bias predicts high µ for the FV model on classes with distinctive
# backgrounds; note µ depends on the box's share of the image and on the CNN crop's padding, so
# compare the two models class by class rather than against 1.

# %%
med = avg.context_ratio_median
fig, ax = plt.subplots(figsize=(7, 2.8))
xs = np.arange(len(classes))
ax.bar(xs - 0.2, med.sel(model="FV"), 0.4, label="FV", color="C0")
ax.bar(xs + 0.2, med.sel(model="CNN"), 0.4, label="CNN", color="C1")
ax.axhline(1, color="k", lw=0.5)
ax.set_xticks(xs, classes)
ax.set_ylabel("median µ (outside / inside)")
ax.set_title("Outside-inside relevance ratio per class (eq. 11); higher = more context")
ax.legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# ## The horse tag (paper 000 Fig. 5, right)
#
# In the paper the FV model put almost all relevance for "horse" on a copyright tag in the corner;
# removing the tag changed the FV heatmap completely but not the DNN's. Here the tag is planted, and
# `test_untagged` holds each test image again without it. For tagged horse test images we measure the
# **share of positive relevance inside the tag box** for both models on the tagged image and its
# untagged twin, and the horse score. A uniform heatmap would put about the tag's share of the area
# there. FV relevance is spread over each local feature's receptive field (16-32 pixels square), so
# heat caused by the tag also lands around it: we report the share in the box grown by
# `tag_margin` pixels too. (The CNN's centre crop cuts off the left ~11 image pixels, about 40 % of
# the tag; its box is mapped into the crop and clipped.)

# %%
untagged = VOCDataset(scenes, "test_untagged", classes=classes)
upos = {i: k for k, i in enumerate(untagged.ids)}
h = classes.index("horse")
tagged = objs[(objs["class"] == "horse") & (objs.tag == 1)].drop_duplicates("image_id")
tagged = tagged[tagged.image_id.isin(test.ids)].head(n_tag)
cases = []
for _, row in tagged.iterrows():
    twin = "untagged_" + row.image_id.split("_", 1)[1]
    if twin in upos:
        tag = (int(row.tag_xmin), int(row.tag_ymin), int(row.tag_xmax), int(row.tag_ymax))
        cases.append((row.image_id, test[pos[row.image_id]][0], untagged[upos[twin]][0], tag))
tag_ds = tag_relevance(models, cases, target=h, margin=tag_margin, progress=True)
sh = tag_ds.tag_share.mean("case")
tab = pd.DataFrame({
    "in tag box, test": sh.sel(version="test", region="tag box").to_series(),
    "in tag box, untagged": sh.sel(version="test_untagged", region="tag box").to_series(),
    f"box + {tag_margin} px, test": sh.sel(version="test").isel(region=1).to_series(),
    f"box + {tag_margin} px, untagged": sh.sel(version="test_untagged").isel(region=1).to_series(),
    "tag's share of area": tag_ds.tag_area_share.mean("case").to_series(),
    "horse score, test": tag_ds.score.sel(version="test").mean("case").to_series(),
    "horse score, untagged": tag_ds.score.sel(version="test_untagged").mean("case").to_series()})
display(Markdown(f"{len(cases)} tagged horse test images (means; shares of positive relevance, 0-1):"))
display(tab.style.format("{:.3f}"))

# %%
if cases:
    case_id, *pair, tag = cases[0]
    tag_c = box_to_crop(tag, pair[0].size, size, crop)[0]
    cm = cnn_heatmaps(cnn, pair, h, **CNN_KW)
    fig, axes = plt.subplots(2, 4, figsize=(9.5, 4.6))
    for k, (img, name) in enumerate(zip(pair, ["with tag (test)", "tag removed (test_untagged)"])):
        Rf, ff = fv_heatmap(fv_lrp, img, h)
        show_image(axes[k, 0], img, name)
        show_heatmap(axes[k, 1], Rf, f"FV f(x)={ff:+.2f}: {100 * box_share(Rf, tag):.0f} % of R+ in tag")
        draw_box(axes[k, 1], grow_box(tag, tag_margin), "orange")
        show_image(axes[k, 2], cm.inputs[k], "CNN input")
        show_heatmap(axes[k, 3], cm.relevance[k],
                     f"CNN f(x)={cm.scores[k]:+.2f}: {100 * box_share(cm.relevance[k], tag_c):.0f} % in tag")
        for ax in axes[k, :2]:
            draw_box(ax, tag, "red")
        for ax in axes[k, 2:]:
            draw_box(ax, tag_c, "red")
    fig.suptitle(f"Class horse on {case_id}: FV and CNN with and without the tag (red: tag box, "
                 f"orange: + {tag_margin} px)", fontsize=10)
    plt.tight_layout()
    plt.show()

    fig, ax = plt.subplots(figsize=(5, 2.8))
    for m, model in enumerate(["FV", "CNN"]):
        vals = tag_ds.tag_share.sel(model=model, region="tag box")
        xs = np.arange(2) + 0.38 * m - 0.19
        ax.bar(xs, vals.mean("case") * 100, 0.38,
               yerr=vals.std("case") * 100 / np.sqrt(max(1, len(cases))), label=model, color=f"C{m}")
        ax.hlines([float(tag_ds.tag_area_share.sel(model=model).mean()) * 100] * 2, xs - 0.19, xs + 0.19,
                  color="k", ls=":", lw=1.2, label="tag's share of the area" if m == 0 else None)
    ax.set_xticks([0, 1], ["with tag", "tag removed"])
    ax.set_ylabel("% of positive relevance in tag box")
    ax.set_title("Horse heatmaps: relevance on the tag (mean ± s.e.m.)")
    ax.legend()
    plt.tight_layout()
    plt.show()

# %% [markdown]
# ## Heatmap resolution (paper 001 Fig. 1)
#
# Where relevance stops following the model's mappings sets a heatmap's grain. The FV model's
# relevance is usually spread uniformly over each local feature's receptive field (**feature**
# resolution, paper 000 eq. 21); following it further into the 16 spatial bins of each SIFT descriptor
# gives the 16× finer **bin** resolution of paper 001. For that the relevance of each PCA coordinate
# goes back to the 128 SIFT dimensions with a z-rule whose denominator is stabilised, as paper 001
# requires: `l_r + eps_r sgn(l_r)` with `eps_r` = `pca_epsilon` (0.5) times the coordinate's standard
# deviation, the absorbed share spread over the descriptor so the map still sums to the feature
# relevances; without it coordinates near 0 turn the map into cancelling ± noise. Conversely the
# CNN's pixel-exact heatmap coarsens when relevance is spread uniformly below a **cut-off** layer
# (flat rule there and below).

# %%
if cases:
    r_img, r_cls, r_name = cases[0][1], h, f"horse, {cases[0][0]}"
else:
    r_cls = classes.index("sheep") if "sheep" in classes else 0
    r_img, r_name = test[examples[classes[r_cls]]][0], classes[r_cls]
full = cnn_heatmaps(cnn, [r_img], r_cls, **CNN_KW)
coarse = cnn_heatmaps(cnn, [r_img], r_cls, **CNN_KW, cutoff=cutoff)
panels = [("FV, feature resolution", fv_heatmap(fv_lrp, r_img, r_cls, "feature")[0]),
          ("FV, bin resolution", fv_heatmap(fv_lrp, r_img, r_cls, "bin")[0]),
          ("CNN, no cut-off", full.relevance[0]), (f"CNN, cut-off at {cutoff}", coarse.relevance[0])]
fig, axes = plt.subplots(1, 6, figsize=(14, 2.6))
show_image(axes[0], r_img, r_name)
show_image(axes[3], full.inputs[0], "CNN input")
for ax, (t, R) in zip([axes[1], axes[2], axes[4], axes[5]], panels):
    show_heatmap(ax, R, t)
fig.suptitle(f"Resolution of heatmaps for class {classes[r_cls]}: FV (left) and CNN (right); "
             "colour range at the 99.5th percentile of |R|", fontsize=10)
plt.tight_layout()
plt.show()

# %%
out = xr.merge([avg, tag_ds.rename(score="horse_score")], combine_attrs="drop")
out.attrs = make_attrs(cfg, notebook="03_shallow_vs_deep", fv_lrp=FV_KW, cnn_lrp=CNN_KW,
                       cnn_cutoff=cutoff, average_heatmap_images=n_avg, tag_images=n_tag,
                       tag_margin=tag_margin)
if results_path:
    save_dataset(out, results_path)
out
