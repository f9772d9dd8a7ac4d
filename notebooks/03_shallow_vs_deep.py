# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
#   lrpkit:
#     expected_seconds: 30
# ---

# %% [markdown]
# # 03 · Shallow vs deep: what do the FV model and the deep model(s) look at?
#
# Lapuschkin et al. 2016, Sec. 6.3-6.5 (Fig. 4-6) and Bach et al. 2016, Fig. 1, on the configured
# data. The **FV model** is the one lrpkit fits on the data's training split (notebook 01; on
# lrpkit's scenes the default FV model), explained with the ε-rule (ε = 100, Lapuschkin et al.
# 2016, App. C) on the whole image; each **deep model** of the config (`model`, or every entry of
# `models`) with the config's LRP composite (`lrp.composite`; default the composite of Bach et
# al. 2016: α = 2, β = 1 on convolutions, ε on dense layers) on its own input (its resize and
# centre crop). Heatmaps are shown on each model's own input: red = evidence for the class,
# blue = against.
#
# On lrpkit's scenes the planted biases tell what a shortcut would look like: **context** (the
# background matches the first object's class 88 % of the time: aeroplane–sky, boat–water,
# bus/car–road, horse/sheep–grass), an **artefact** (a "© lrp" copyright tag in the bottom-left
# corner of 70 % of horse images, 3 % of the others), **colour** (buses are always yellow) and
# **texture** (sheep wear wool); the tag has a section of its own.

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
from lrpkit import layout, pipeline, sources, viz
from lrpkit.data import VOCDataset, read_bias
from lrpkit.data.summary import images_of_class
from lrpkit.evaluate import box_share
from lrpkit.evaluate.scoring import image_scores
from lrpkit.evaluate import Findings, attach_interval
from lrpkit.evaluate.shallow_deep import class_average_heatmaps, map_key, source_map_model
from lrpkit.evaluate.tag_experiment import tag_experiment, tag_intervals, tag_unavailable
from lrpkit.fisher import FisherLRP
from lrpkit.heatmaps import fv_heatmap, grow_box, heatmap_params, source_heatmaps
from lrpkit.results import make_attrs, save_dataset
from lrpkit.viz import draw_box, show_heatmap, show_image

cfg = lrpkit.load_config(config)
ev = cfg.evaluation
F = Findings("03_shallow_vs_deep")
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
                 f"{len(ds)} images) · FV model: " + (f"`{fv.path}`" if fv is not None else "none")
                 + " · deep model(s): " + ", ".join(f"**{m.name}** ({m.source})" for m in deep)
                 + f" · classes: {', '.join(classes)}"))
if fv is None:
    viz.skip_section("The Fisher-vector model's heatmaps", f"a training split to fit it on ({no_fv})")

n_avg, n_tag, tag_margin, cutoff = ev.average_heatmap_images, ev.tag_images, ev.tag_margin, ev.cnn_cutoff
FV_KW = dict(rule="epsilon", epsilon=100.0, pca_epsilon=0.5)
DEEP_KW = {}
for m in deep:
    DEEP_KW[m.name], note = heatmap_params(m.model, composite=cfg.lrp.composite or "alpha2_beta1")
    if note:
        display(Markdown(f"**{m.name}**: {note}."))
fv_lrp = FisherLRP(fv.model, **FV_KW) if fv is not None else None  # = lrpkit.explain(..., method="fv_lrp")
fv_col = {c: list(fv.classes).index(c) for c in classes} if fv is not None else {}
models = ([source_map_model(fv, classes, "FV", fv_params=FV_KW)] if fv is not None else []) + \
    [source_map_model(m, classes, **DEEP_KW[m.name]) for m in deep]
cols = {m.name: [list(m.classes).index(c) for c in classes] for m in deep}


def class_boxes(target, c):
    """The boxes of class c in an image's target."""
    return [b for b, n in zip(target["boxes"], target["names"]) if n == c]


# %% [markdown]
# ## Heatmaps for every class (cf. Lapuschkin et al. 2016, Fig. 4-5, top)
#
# One image per class (a single-object image the first deep model scores positive where there is
# one). Columns: the image, the FV heatmap, then per deep model its input and its heatmap, each for
# the row's class. Green boxes: the class's annotation.

# %%
examples = {}
for c in classes:
    cand = images_of_class(ds, c, 8, single_first=True)
    if cand:
        f_c = image_scores(deep[0], ds.images(cand), classes=[c])[:, 0] if deep else np.ones(len(cand))
        examples[c] = cand[int(np.argmax(f_c > 0))]   # first candidate scored positive, else the first
shown = [c for c in classes if c in examples]
n_cols = 1 + (fv is not None) + 2 * len(deep)
if shown:
    fig, axes = plt.subplots(len(shown), n_cols, figsize=(2.4 * n_cols, 2.2 * len(shown)), squeeze=False)
    maps = {m.name: source_heatmaps(m, [ds.image(examples[c]) for c in shown],
                                    [cols[m.name][classes.index(c)] for c in shown], **DEEP_KW[m.name])
            for m in deep}
    for r, c in enumerate(shown):
        img, tgt = ds[examples[c]]
        boxes = class_boxes(tgt, c)
        show_image(axes[r, 0], img, f"{c}: {tgt['id']}")
        k = 1
        if fv is not None:
            Rf, ff = fv_heatmap(fv_lrp, img, fv_col[c])
            show_heatmap(axes[r, 1], Rf, f"FV, f(x) = {ff:+.2f}")
            k = 2
        for b in boxes:
            for ax in axes[r, :k]:
                draw_box(ax, b)
        for m in deep:
            cm = maps[m.name]
            show_image(axes[r, k], cm.inputs[r], f"{m.name} input")
            show_heatmap(axes[r, k + 1], cm.relevance[r], f"{m.name}, f(x) = {cm.scores[r]:+.2f}")
            for bc in m.input_boxes(boxes, tgt["size"]) if boxes else []:
                draw_box(axes[r, k], bc)
                draw_box(axes[r, k + 1], bc)
            k += 2
    fig.suptitle("LRP heatmaps per class: the FV model (ε = 100) and the deep model(s); red supports the class",
                 fontsize=10)
    plt.tight_layout()
    plt.show()
else:
    viz.skip_section("Heatmaps for every class", "images labelled with a class")

# %% [markdown]
# ## Average heatmaps per class (Lapuschkin et al. 2016, Fig. 5, bottom)
#
# Each heatmap is divided by its largest absolute value, then averaged over up to `n_avg` images
# that show the class, landscape images first (each model explained for that class). On the scene
# set, what the planted context bias predicts for a model that uses it: heat at the **top** for
# aeroplane (sky), in the **bottom half** for boat (water), bus/car (road) and horse/sheep
# (grass) — spread over the background rather than concentrated where objects usually are; for
# horse also a hot **bottom-left corner** (the tag). The scene CNN's input is the image scaled to
# its longest side `S`, edge-padded to `S × S` and centre-cropped (Lapuschkin et al. 2016, App. E),
# so for landscape images the top and bottom rows of its maps are padding; a torchvision model
# crops the centre after scaling the shorter side. Maps of images of another size are resized to
# the first map's size before averaging.

# %%
chosen = {c: images_of_class(ds, c, n_avg, landscape_first=True) for c in classes}
samples = {c: [(ds.image(i), class_boxes(ds.target(i), c)) for i in idx] for c, idx in chosen.items()}
avg = class_average_heatmaps(models, samples, classes, max_samples=n_avg, progress=True,
                             image_ids={c: [ds.ids[i] for i in idx] for c, idx in chosen.items()})

fig, axes = plt.subplots(len(models), len(classes), figsize=(2.1 * len(classes), 2.0 * len(models)),
                         squeeze=False)
for r, c in enumerate(classes):
    for k, mm in enumerate(models):
        show_heatmap(axes[k, r], avg[f"avg_heatmap_{map_key(mm.name)}"].sel({"class": c}),
                     f"{c} (n={int(avg.n_average[r])})" if k == 0 else None)
for k, mm in enumerate(models):
    axes[k, 0].set_ylabel(mm.name, fontsize=10)
fig.suptitle("Average heatmaps per class (each map scaled to max |R| = 1)", fontsize=10)
plt.tight_layout()
plt.show()

# %% [markdown]
# ### Context use per class (Lapuschkin et al. 2016, eq. 11, Fig. 6)
#
# µ of the same heatmaps (padding of the deep model's input and the planted tag left out) is kept
# per image in the results (`context_ratio`); the report on context is notebook 02, which measures
# µ with intervals on a random sample of at least 30 images per class (these average-heatmap images
# are landscape-first, chosen for the picture, not as a sample).

# %% [markdown]
# ## The horse tag of the scene set (Lapuschkin et al. 2016, Fig. 5, right)
#
# In the paper the FV model put almost all relevance for "horse" on a copyright tag in the corner;
# removing the tag changed the FV heatmap completely but not the DNN's. In lrpkit's scenes the tag
# is planted, and `test_untagged` holds each test image again without it. For tagged horse test
# images we measure the **share of positive relevance inside the tag box** for each model on the
# tagged image and its untagged twin, and the horse score. A uniform heatmap would put about the
# tag's share of the area there. FV relevance is spread over each local feature's receptive field
# (16-32 pixels square), so heat caused by the tag also lands around it: we report the share in the
# box grown by `tag_margin` pixels too. (The scene CNN's centre crop, 112 of 128 pixels, cuts 10
# image pixels off each end of the longer side: the left 8 of the tag's 28 columns on landscape
# images (160 × 120) and all but the top ~3 of its 11 rows on portrait ones (120 × 160). Its box
# is mapped into the crop and clipped, so the CNN's share is of the part of the tag it sees.)

# %%
cases, tag_ds, tag_ci = [], None, None
no_tag = tag_unavailable(ds)
if no_tag is None:
    h = classes.index("horse")
    # computed once for notebooks 02 and 03 (cached on disk by model files, data and parameters)
    tag_ds = tag_experiment(cfg, ([fv] if fv is not None else []) + deep, ds,
                            lambda: sources.load_dataset(cfg.dataset, cfg, split="test_untagged"),
                            cache_dir=layout.models_root(cfg) / "cache", progress=True)
    tag_ds = tag_ds.assign_coords(model=[mm.name for mm in models])      # the FV model shown as "FV"
    tag_ci, tag_iv = tag_intervals(tag_ds, n_boot=ev.context_bootstrap, seed=cfg.seed)
    tab = pd.DataFrame({q: [tag_iv[(str(m), str(q))].format(3) + f" ({tag_iv[(str(m), str(q))].n})"
                            for m in tag_ci.model.values] for q in tag_ci.measure.values}, index=tag_ci.model.values).T
    cached = "read from the cache" if tag_ds.attrs.get("cache_hit") else "computed now and cached"
    display(Markdown(f"{tag_ds.attrs['n_cases']} tagged horse test images (the same experiment as notebook 02, "
                     f"{cached}); "
                     "estimate [95 % bootstrap interval over images] (n); shares of positive relevance, 0-1; "
                     "enrichment: share in the tag box over the tag's share of the area (a ratio of sums):"))
    display(tab)
    untagged = VOCDataset(ds.root, "test_untagged", classes=classes)
    upos = {i: k for k, i in enumerate(untagged.ids)}
    pos = {i: k for k, i in enumerate(ds.ids)}
    first_case = str(tag_ds.case.values[0])
    tag_box = tuple(int(v) for v in read_bias(ds.root).set_index("image_id").loc[[first_case]].iloc[0][
        ["tag_xmin", "tag_ymin", "tag_xmax", "tag_ymax"]])
    cases = [(first_case, ds.image(pos[first_case]),
              untagged[upos["untagged_" + first_case.split("_", 1)[1]]][0], tag_box)]
else:
    viz.skip_section("The horse tag", f"{no_tag}, with its planted copyright tags (`bias.csv`) and "
                     "their untagged twins (`test_untagged`)")

# %%
if cases:
    case_id, *pair, tag = cases[0]
    panels = ([("FV", None)] if fv is not None else []) + [(m.name, m) for m in deep]
    fig, axes = plt.subplots(2, 2 * len(panels), figsize=(2.4 * 2 * len(panels), 4.6), squeeze=False)
    for k, (img, name) in enumerate(zip(pair, ["with tag (test)", "tag removed (test_untagged)"])):
        for j, (label, m) in enumerate(panels):
            a_img, a_map = axes[k, 2 * j], axes[k, 2 * j + 1]
            if m is None:
                Rf, ff = fv_heatmap(fv_lrp, img, fv_col["horse"])
                show_image(a_img, img, name)
                show_heatmap(a_map, Rf, f"FV f(x)={ff:+.2f}: {100 * box_share(Rf, tag):.0f} % of R+ in tag")
                draw_box(a_map, grow_box(tag, tag_margin), "orange")
                tb = tag
            else:
                cm = source_heatmaps(m, [img], cols[m.name][h], **DEEP_KW[m.name])
                tb = m.input_boxes([tag], img.size)[0]
                show_image(a_img, cm.inputs[0], f"{label} input")
                show_heatmap(a_map, cm.relevance[0],
                             f"{label} f(x)={cm.scores[0]:+.2f}: {100 * box_share(cm.relevance[0], tb):.0f} % in tag")
            draw_box(a_img, tb, "red")
            draw_box(a_map, tb, "red")
    fig.suptitle(f"Class horse on {case_id}: each model with and without the tag (red: tag box, "
                 f"orange: + {tag_margin} px)", fontsize=10)
    plt.tight_layout()
    plt.show()

    fig, ax = plt.subplots(figsize=(5, 2.8))
    w = 0.76 / len(models)
    for j, mm in enumerate(models):
        ci_m = tag_ci.sel(model=mm.name, measure=["share_tagged", "share_untagged"])
        xs = np.arange(2) + w * (j - (len(models) - 1) / 2)
        ax.bar(xs, ci_m.estimate * 100, w, yerr=[(ci_m.estimate - ci_m.low) * 100, (ci_m.high - ci_m.estimate) * 100],
               capsize=3, label=f"{mm.name} (n = {int(ci_m.n[0])})", color=f"C{j}")
        ax.hlines([float(tag_ds.tag_area_share.sel(model=mm.name).mean()) * 100] * 2, xs - w / 2, xs + w / 2,
                  color="k", ls=":", lw=1.2, label="tag's share of the area" if j == 0 else None)
    ax.set_xticks([0, 1], ["with tag", "tag removed"])
    ax.set_ylabel("% of positive relevance in tag box")
    ax.set_title("Horse heatmaps: relevance on the tag (mean, 95 % bootstrap interval)")
    ax.legend()
    plt.tight_layout()
    plt.show()

# %% [markdown]
# ## Heatmap resolution (Bach et al. 2016, Fig. 1)
#
# Where relevance stops following the model's mappings sets a heatmap's grain. The FV model's
# relevance is usually spread uniformly over each local feature's receptive field (**feature**
# resolution, Lapuschkin et al. 2016, eq. 21); following it further into the 16 spatial bins of each
# SIFT descriptor gives the 16× finer **bin** resolution of Bach et al. 2016. For that the relevance
# of each PCA coordinate goes back to the 128 SIFT dimensions with a z-rule whose denominator is
# stabilised, as Bach et al. (2016) require: `l_r + eps_r sgn(l_r)` with `eps_r` = `pca_epsilon`
# (0.5) times the coordinate's standard deviation, the absorbed share spread over the descriptor so
# the map still sums to the feature relevances; without it coordinates near 0 turn the map into
# cancelling ± noise. Conversely a deep model's pixel-exact heatmap coarsens when relevance is
# spread uniformly below a **cut-off** layer (`evaluation.cnn_cutoff`; flat rule there and below).

# %%
if cases:
    r_img, r_cls, r_name = cases[0][1], h, f"horse, {cases[0][0]}"
elif shown:
    r_c = "sheep" if "sheep" in shown else shown[0]
    r_cls, r_img, r_name = classes.index(r_c), ds.image(examples[r_c]), r_c
panels, first = [], deep[0] if deep else None
if shown and fv is not None:
    panels += [("FV, feature resolution", fv_heatmap(fv_lrp, r_img, fv_col[classes[r_cls]], "feature")[0]),
               ("FV, bin resolution", fv_heatmap(fv_lrp, r_img, fv_col[classes[r_cls]], "bin")[0])]
cut_ok = (first is not None and DEEP_KW[first.name]["method"] == "lrp"
          and cutoff in dict(first.model.named_modules()))
if shown and first is not None:
    full = source_heatmaps(first, [r_img], cols[first.name][r_cls], **DEEP_KW[first.name])
    panels += [(f"{first.name} input", full.inputs[0]), (f"{first.name}, no cut-off", full.relevance[0])]
    if cut_ok:
        coarse = source_heatmaps(first, [r_img], cols[first.name][r_cls], **DEEP_KW[first.name], cutoff=cutoff)
        panels.append((f"{first.name}, cut-off at {cutoff}", coarse.relevance[0]))
if panels:
    fig, axes = plt.subplots(1, len(panels) + 1, figsize=(2.35 * (len(panels) + 1), 2.6))
    show_image(axes[0], r_img, r_name)
    for ax, (t, R) in zip(axes[1:], panels):
        (show_image if t.endswith("input") else show_heatmap)(ax, R, t)
    fig.suptitle(f"Resolution of heatmaps for class {classes[r_cls]}; colour range at the 99.5th "
                 "percentile of |R|", fontsize=10)
    plt.tight_layout()
    plt.show()
if first is not None and not cut_ok:
    viz.skip_section("Deep heatmap with a cut-off layer", f"LRP on a model with the layer "
                     f"`evaluation.cnn_cutoff` = `{cutoff}` (set it to one of {first.name}'s layers)")

# %% [markdown]
# ## Findings (generated)
#
# Lapuschkin et al. (2016, Fig. 5 right) found the FV model's horse evidence on the copyright tag and
# its score falling without it, while the DNN's heatmap ignored the tag. Tested on the tagged
# horse images (the sample size is each row's n).

# %%
fv_name = models[0].name if fv is not None else None
dnn = deep[0].name if deep else None
TAG_FV = ("The FV model's horse relevance concentrates on the copyright tag: enrichment over the tag's area > 1 "
          "(Lapuschkin et al. 2016, Fig. 5 right)")
TAG_SCORE = "Removing the tag lowers the FV model's horse score: score drop > 0 (Lapuschkin et al. 2016, Fig. 5 right)"
TAG_DNN = ("The DNN does not use the tag: its horse score drop without the tag is ≤ 0 "
           "(Lapuschkin et al. 2016, Fig. 5 right)")
if tag_ds is None:
    for claim in (TAG_FV, TAG_SCORE, TAG_DNN):
        F.not_tested(claim, f"needs {no_tag}")
else:
    if fv_name is not None:
        F.add(TAG_FV, tag_iv[(fv_name, "enrichment")], direction=">", reference=1.0,
              paper="heat concentrated on the tag")
        F.add(TAG_SCORE, tag_iv[(fv_name, "score_drop")], direction=">", paper="score drops")
    else:
        for claim in (TAG_FV, TAG_SCORE):
            F.not_tested(claim, "needs a Fisher-vector model")
    if dnn is not None:
        sd, sh = tag_iv[(dnn, "score_drop")], tag_iv[(dnn, "share_tagged")]
        horses = read_bias(ds.root).query("`class` == 'horse' and split == @cfg.cnn.train_split")
        tag_rate = float(horses.drop_duplicates("image_id").tag.mean())
        F.add(TAG_DNN, sd, direction="<", paper="heatmap and decision unaffected",
              reason=(f"lrpkit's scenes plant the tag on {100 * tag_rate:.0f} % of the horse images of "
                      f"`{cfg.cnn.train_split}` and the {dnn} learned it: "
                      f"{100 * sh.estimate:.0f} % [{100 * sh.low:.0f}, {100 * sh.high:.0f}] of its horse relevance "
                      f"lies on the tag box and its score falls by {sd.estimate:.2f} without it; in the paper the "
                      "tag was rare in PASCAL VOC and the DNN, pre-trained on ImageNet, did not pick it up"))
    else:
        F.not_tested(TAG_DNN, "needs a deep network")
n_avg_used = ", ".join(f"{c} {int(k)}" for c, k in zip(classes, avg.n_average.values))
display(Markdown(f"Sample sizes: average heatmaps on {n_avg_used} images per class"
                 + (f"; tag experiment on {tag_ds.attrs['n_cases']} tagged horse images" if tag_ds is not None else "")
                 + "."))

# %% tags=["findings"]
F.show()

# %%
out = avg if tag_ds is None else xr.merge(
    [avg, tag_ds.rename(score="horse_score", model="tag_model", region="tag_region")], combine_attrs="drop")
if tag_ci is not None:
    out = attach_interval(out, "tag", tag_ci.rename(model="tag_model"))
out.attrs = make_attrs(cfg, notebook="03_shallow_vs_deep", **sources.describe(src.models, ds),
                       fv_model=str(fv.path) if fv is not None else "", fv_lrp=FV_KW, deep_heatmaps=DEEP_KW,
                       cnn_cutoff=cutoff, average_heatmap_images=n_avg, tag_images=str(n_tag), tag_margin=tag_margin)
out = F.attach(out)
if results_path:
    save_dataset(out, results_path)
out
