# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
#   lrpkit:
#     expected_seconds: 285
# ---

# %% [markdown]
# # 06 · FGVis: fine-grained explanations, the defence, and bias probes
#
# Wagner et al., "Interpretable and Fine-Grained Visual Explanations for Convolutional Neural
# Networks" (CVPR 2019) explain a prediction by **optimising a per-pixel, per-channel mask**
# `m` in [0, 1]: the explanation `e = x·m + (1−m)·r` (reference `r` = the zero image of the
# normalised input space, i.e. the data-mean grey) is a valid model input, so its faithfulness can
# be checked directly. Four *games* (Sec. 3.1): **deletion** and **preservation** start from
# `m = 1`, **generation** and **repression** from `m = 0`; an L1 term with an adapted weight λ
# keeps the mask sparse. The **defence** (Sec. 3.2, eq. 4–6) stops adversarial evidence: during
# the optimisation a neuron may be driven only as far as the image itself drove it.
#
# On the configured model and images (lrpkit's scene CNN on its bias-zoo scenes by default, or a
# user's network and data: `model:` / `dataset:` in the config) this notebook shows the four games
# (Fig. 2), validates the defence (Table 1), compares the deletion metric with other heatmap methods
# (Table 2) and measures how much each class depends on **colour** (Sec. 4.3 / Table A3). On
# lrpkit's scenes, where the biases are planted (buses are always yellow, cars take any hue; a
# copyright tag on most horse images), the colour probe is read against that truth and a last
# section probes the **tag**. Every rate and AUC is shown with its 95 % interval and its n (Wilson
# intervals for rates, bootstrap over images for means and ratios); the **Findings** at the top
# are generated from these intervals.

# %% tags=["parameters"]
config = "default"      # config name or YAML path (lrpkit.load_config)
results_path = None     # where the runner wants this notebook's xarray results

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
import xarray as xr
from IPython.display import Markdown, display

import lrpkit
import lrpkit.data as D
from lrpkit import sources
from lrpkit.evaluate.findings import Findings
from lrpkit.evaluate.intervals import attach_interval
from lrpkit.explain import get_method
from lrpkit.fgvis import evidence as V
from lrpkit.fgvis import experiments as E
from lrpkit.fgvis import fgvis, params_from_config
from lrpkit.results import make_attrs, save_dataset
from lrpkit.viz import skip_section

t_start = time.time()
F = Findings("06_fgvis_bias_probes")
cfg = lrpkit.load_config(config)
fc = cfg.fgvis
torch.manual_seed(cfg.seed)
src = sources.load_sources(cfg)
m, ds = src.torch_model("FGVis"), src.dataset
model, classes, ids = m.model, list(m.classes), list(ds.ids)
on_scenes = ds.source == "scenes"
x_all = m.inputs(ds.images())
y_all = np.zeros((len(ds), len(classes)), np.float32)   # labels in the model's output order
y_all[:, sources.class_index(m, ds)] = ds.labels
s_all = m.scores(x_all)
pred_all = torch.as_tensor(s_all.argmax(1))
correct = torch.as_tensor(y_all[np.arange(len(y_all)), pred_all.numpy()] > 0)
fg = params_from_config(cfg)          # game, steps, lr, sparsity, similarity, reference ...
fg_nogame = {k: v for k, v in fg.items() if k != "game"}
rgb = lambda t: m.rgb(t).permute(1, 2, 0).numpy()  # noqa: E731
display(Markdown(f"lrpkit {lrpkit.__version__} · model **{m.name}** ({m.source}, "
                 f"{tuple(x_all.shape[1:])} input) · data **{ds.name}** / `{ds.split}`: {len(ds)} "
                 f"images, {int(correct.sum())} classified correctly (arg-max a true label) · "
                 f"{len(classes)} classes · FGVis parameters {fg}"))

# %% [markdown]
# ## The four games (Fig. 2)
# Each column pair: the mask `m` (for deletion / repression its complement `1 − m`, the deleted
# evidence in true colour, Fig. 2 d) and the explanation (`e` for preservation / generation,
# `x·(1−m)` for deletion / repression, Fig. 2 e). The target is the predicted class; one correctly
# classified image per class, in turn.

# %%
ex_idx = []
for c in range(len(classes)):          # one correctly classified image per class, in turn
    hit = ((pred_all == c) & correct).nonzero(as_tuple=True)[0]
    if len(hit):
        ex_idx.append(int(hit[0]))
if not ex_idx:
    ex_idx = list(range(len(x_all)))
    display(Markdown("The model classifies none of the images correctly: the games explain its "
                     "predictions on the first images."))
ex_idx = ex_idx[:fc.example_images]
x_ex = x_all[ex_idx]
games = ["deletion", "preservation", "generation", "repression"]
runs = {g: fgvis(model, x_ex, pred_all[ex_idx], **{**fg, "game": g}) for g in games}
fig, axes = plt.subplots(len(ex_idx), 1 + 2 * len(games), figsize=(2 * (1 + 2 * len(games)), 2.1 * len(ex_idx)),
                         squeeze=False)
for i, k in enumerate(ex_idx):
    axes[i, 0].imshow(rgb(x_all[k]))
    axes[i, 0].set_title(f"{ids[k]}\n{classes[int(pred_all[k])]}", fontsize=8)
    for j, g in enumerate(games):
        r = runs[g]
        mk = r.mask[i]
        delete = g in ("deletion", "repression")
        shown = (1 - mk) if delete else mk
        expl = x_all[k] * (1 - mk) if delete else r.explanation[i]
        axes[i, 1 + 2 * j].imshow(shown.permute(1, 2, 0).numpy())
        axes[i, 1 + 2 * j].set_title(f"{g}\n{'1−m' if delete else 'm'}", fontsize=8)
        axes[i, 2 + 2 * j].imshow(rgb(expl))
        axes[i, 2 + 2 * j].set_title(f"p={float(r.score[i]):.2f} (x: {float(r.score_image[i]):.2f})", fontsize=8)
for ax in axes.ravel():
    ax.axis("off")
plt.tight_layout()
plt.show()
games_tab = pd.DataFrame({g: {"mean mask": float(runs[g].mask.mean()),
                              "target score": float(runs[g].score.mean()),
                              "level met": float(runs[g].goal_met.float().mean())} for g in games}).T
display(games_tab.round(3))

# %% [markdown]
# ## Table 1: does the defence stop adversarial evidence?
# Confidently classified images (top softmax score ≥ `fgvis.defence_confidence`, the paper's 0.995,
# arg-max a true label); when fewer than `fgvis.defence_images` reach it, the cut is lowered to the
# best available one (the score of the `defence_images`-th most confident image) and the images at
# the paper's cut are reported apart. Target: the least-likely class (the second least-likely when
# the grey reference is predicted as it); generation game with **no sparsity**; all images in one
# batch. "Reached": an iterate of the explanation is classified as the target with softmax ≥ the
# goal score (`defence_goal_score`; the curve: `defence_goal_scores`). Rates with Wilson 95 %
# intervals (Wilson 1927). The paper: 100 % without the defence, 0.0–0.2 % with it. With few
# classes the least-likely class is not always absent from the image (on lrpkit's scenes a bus's
# least-likely class is often "car", and a bus *is* a vehicle on a road, told from a car by its
# yellow alone: the planted colour bias); the defence cannot (and should not) stop evidence that
# is in the image, so we also split by the predicted class and list the defended successes.

# %%
n_cand = len(x_all) if fc.defence_candidates is None else min(fc.defence_candidates, len(x_all))
dv = None
table1_claims = ("Table 1 (the defence)", "images the model classifies correctly")
if not correct[:n_cand].any():
    skip_section(*table1_claims)
    F.not_tested("The defence lowers the share of adversarial explanations (Wagner et al. 2019, Table 1)",
                 "the model classifies none of the images correctly", paper=V.PAPER["table1_drop"])
else:
    t0 = time.time()
    dv = E.defence_validation(model, x_all[:n_cand], y_all[:n_cand], confidence=fc.defence_confidence,
                              min_images=fc.defence_images, max_images=fc.defence_images,
                              steps=fc.defence_steps, lr=fc.defence_lr, patience=fc.defence_patience,
                              goal_score=fc.defence_goal_score, goal_scores=fc.defence_goal_scores,
                              ids=ids[:n_cand], classes=classes)
    n_paper, cut = dv.attrs["n_at_paper_cut"], dv.attrs["confidence_used"]
    display(Markdown(
        f"**n = {dv.sizes['image']} images.** {n_paper} of the {n_cand} screened images are classified "
        f"correctly with softmax ≥ {fc.defence_confidence} (the paper's cut)"
        + (f"; fewer than {fc.defence_images}, so the cut is lowered to **{cut:.4f}**, the best "
           f"available for {fc.defence_images} images." if cut < fc.defence_confidence else ".")))
    display(V.defence_table(dv))
    curve = V.goal_curve(dv)
    fig, ax = plt.subplots(figsize=(5, 3.3))
    for d, label in (("off", "no defence"), ("on", "defence")):
        c = curve.loc[d]
        ax.errorbar(c.index, 100 * c["estimate"], yerr=[100 * (c["estimate"] - c["low"]),
                                                      100 * (c["high"] - c["estimate"])],
                    marker="o", capsize=3, label=f"{label} (n={int(c['n'].iloc[0])})")
    ax.set_xlabel("goal: target softmax score at least")
    ax.set_ylabel("reached adversarial class (%)")
    ax.set_title("Success rate vs goal (Wilson 95 %)", fontsize=9)
    ax.legend(fontsize=8)
    plt.show()
    display((curve.assign(estimate=100 * curve["estimate"], low=100 * curve["low"],
                          high=100 * curve["high"])).round(1).unstack("defence"))
    by_pred = dv["share_by_pred"].to_pandas().mul(100).round(1)
    by_pred["images"] = dv["n_by_pred"].to_pandas()
    display(Markdown("Per predicted class of the image (% reached):"))
    display(by_pred[by_pred["images"] > 0])
    display(Markdown("Defended successes (image class → target):"))
    display(V.defence_successes(dv).round(3))
    V.defence_findings(F, dv)
    print(f"{time.time() - t0:.1f} s for {dv.sizes['image']} images x 2 runs")

# %% [markdown]
# ## Table 2: faithfulness by the deletion metric (lower is better)
# Pixels are deleted (set to the grey reference) in order of importance, ties in a seeded random
# order; the AUC of the target's softmax score over the deleted fraction. FGVis uses the deletion
# game's `1 − m` as importance. Images: correctly classified ones first (target: the predicted
# class), then others when too few. Intervals: bootstrap over images, each method's AUC and its
# difference to FGVis paired over the same images (> 0: FGVis deletes the evidence faster).
# Methods that cannot explain the model (LRP and Grad-CAM need a Python `nn.Module`, not a
# TorchScript one) are left out and named.

# %%
f_methods = {k: v for k, v in E.DEFAULT_FAITHFULNESS_METHODS.items() if get_method(k).accepts(model)}
if len(f_methods) < len(E.DEFAULT_FAITHFULNESS_METHODS):
    left_out = sorted(set(E.DEFAULT_FAITHFULNESS_METHODS) - set(f_methods))
    display(Markdown(f"Left out for this model: {', '.join(left_out)} (they need a Python "
                     f"`torch.nn.Module`; a TorchScript model runs compiled code)."))
n_f = min(fc.faithfulness_images, len(x_all))
f_idx = torch.cat([correct.nonzero(as_tuple=True)[0], (~correct).nonzero(as_tuple=True)[0]])[:n_f]
t0 = time.time()
fa = E.faithfulness(model, x_all[f_idx], pred_all[f_idx], methods=f_methods, fgvis_params=fg_nogame,
                    n_steps=fc.deletion_steps, ids=[ids[i] for i in f_idx.tolist()], seed=cfg.seed)
display(Markdown(f"**n = {len(f_idx)} images**, {int(correct[f_idx].sum())} of them classified correctly."))
display(V.deletion_table(fa))
auc_iv, auc_vs = V.deletion_intervals(fa)
fa = attach_interval(fa, "auc_interval", auc_iv)
if "estimate" in auc_vs:
    fa = attach_interval(fa, "auc_minus_fgvis", auc_vs)
fig, ax = plt.subplots(figsize=(5, 3.5))
for mth in fa["method"].values:
    ax.plot(fa["fraction"], fa["curve"].sel({"method": mth}).mean("image"), label=str(mth))
ax.set_xlabel("fraction of pixels deleted")
ax.set_ylabel("target softmax score (mean)")
ax.set_title(f"n = {len(f_idx)} images, {int(correct[f_idx].sum())} classified correctly", fontsize=9)
ax.legend(fontsize=8)
plt.show()
V.deletion_findings(F, fa)
print(f"{time.time() - t0:.1f} s")

# %% [markdown]
# ## Colour dependence (Sec. 4.3, Table A3)
# Share of correctly classified images that keep their class when the colour channels are swapped
# as in the paper: its network reads BGR images, and its swaps "RBG" and "GRB" are *cyclic shifts*
# in which every channel moves (a yellow bus turns violet or cyan); a class whose images lose their
# label relies on colour. The paper: 8.3 % kept for its colour-biased class, 83.3 % for the others.
# Then preservation-game masks (target: the class) of the images of two classes: how much of each
# channel's colour (its deviation from the grey reference, inside the object's box when the data
# has boxes) the explanation keeps. On lrpkit's scenes the two classes are the planted pair, buses
# (always yellow) and cars (any hue): a model that learnt "yellow" loses the buses. On other data
# they are the two classes the swaps hurt most.

# %%
n_c = len(x_all) if fc.colour_images is None else min(fc.colour_images, len(x_all))
cb = None
if not correct[:n_c].any():
    skip_section("Colour dependence", "images the model classifies correctly")
    V.colour_findings(F, xr.Dataset(), None, None, why_not="the model classifies none of the images correctly")
else:
    planted = on_scenes and {"bus", "car"} <= set(classes)
    colour_kw = dict(classes=classes, mask_images=fc.colour_mask_images, fgvis_params=fg_nogame,
                     ids=ids[:n_c], mean=m.mean, std=m.std)
    if planted:
        mask_classes = ("bus", "car")
    else:                               # the classes the swaps hurt most
        swaps_only = E.colour_bias(model, x_all[:n_c], y_all[:n_c], mask_classes=(), **colour_kw)
        mask_classes = tuple(swaps_only["kept_mean"].to_pandas().dropna().nsmallest(2).index)
    boxes = []                          # the box of the predicted class's object, in the input
    for i in range(n_c):
        name = classes[int(pred_all[i])]
        own = [b for n, b in zip(ds.box_names[i], ds.boxes[i]) if n == name and n in mask_classes]
        boxes.append(m.input_boxes(own[0], ds.target(i)["size"])[0] if own else None)
    cb = E.colour_bias(model, x_all[:n_c], y_all[:n_c], mask_classes=mask_classes, boxes=boxes,
                       **colour_kw)
    display(Markdown(f"Share of the correctly classified images that keep their class, with Wilson "
                     f"95 % intervals; **n** = the class's correctly classified images "
                     f"({int(cb['n_correct'].sum())} in all)."))
    display(V.colour_table(cb))
    if planted:
        V.colour_findings(F, cb, "bus", "car")
    else:
        V.colour_findings(F, cb, None, None, why_not="no planted colour bias: which class of this "
                          "model relies on colour is not known")
    display(Markdown(f"Masks for **{', '.join(mask_classes)}** "
                     f"({'the planted colour pair' if planted else 'the classes the swaps hurt most'})."))
    if "colour_kept_by_class" in cb:
        display(pd.DataFrame(cb["colour_kept_by_class"].values, index=cb["mask_class_name"].values,
                             columns=["R kept", "G kept", "B kept"]).round(3))
        mi = cb["masked_image"].values
        cls = cb["mask_class"].values
        sel = [int(j) for c in dict.fromkeys(cls) for j in np.flatnonzero(cls == c)[:4]]
        id2row = {v: i for i, v in enumerate(ids)}
        fig, axes = plt.subplots(2, len(sel), figsize=(2 * len(sel), 4.2), squeeze=False)
        for col, j in enumerate(sel):
            axes[0, col].imshow(rgb(x_all[id2row[mi[j]]]))
            axes[0, col].set_title(f"{mi[j]}\n{cls[j]}", fontsize=8)
            axes[1, col].imshow(rgb(torch.from_numpy(cb["explanation"].values[j])))
            axes[1, col].set_title(f"preservation e, p={float(cb['mask_score'][j]):.2f}", fontsize=8)
        for ax in axes.ravel():
            ax.axis("off")
        plt.tight_layout()
        plt.show()

# %% [markdown]
# ## Tag bias (lrpkit's scenes): does the deletion game delete the copyright tag?
# Planted truth: most horse images of lrpkit's scenes carry a copyright tag. Tagged horse images
# and their untagged twins (split `test_untagged`), target "horse", deletion game: the share of the
# deleted mass `Σ(1 − m)` inside the tag box, and its density relative to the rest of the image
# (> 1: the tag is deleted preferentially) as a **ratio of sums** over the images (the mean deleted
# mass per pixel inside the box summed over images, over the same outside), with a bootstrap
# interval over images: a mean of per-image ratios would be ruled by the images whose mask deletes
# almost nothing outside the box.

# %%
tg = None
tag_why = ""
if not on_scenes:
    tag_why = "planted copyright tags with untagged twins: lrpkit's scene set (`dataset.source: scenes`)"
    skip_section("Tag bias", tag_why)
elif "horse" not in classes or ds.split != "test":
    tag_why = "the scenes' test split (with its untagged twins `test_untagged`) and a model with a 'horse' output"
    skip_section("Tag bias", tag_why)
else:
    horse = classes.index("horse")
    horse_ids = [ids[i] for i in np.flatnonzero(y_all[:, horse] > 0)]
    info = E.load_split(ds.root, ds.split, model, ids=horse_ids, transform=m.transform,
                        box_map=m.input_boxes)
    tag_of = {i: tb for i, tb, t in zip(info["ids"], info["tag_box"], info["tagged"]) if t}
    tagged_ids = [i for i in horse_ids if i in tag_of][:fc.tag_images]
    bias = D.read_bias(ds.root)
    tw = bias[(bias["split"] == "test_untagged") & bias["source_id"].isin(tagged_ids)]
    twin_of = dict(zip(tw["source_id"], tw["image_id"]))
    tagged_ids = [i for i in tagged_ids if i in twin_of]
    if not tagged_ids:
        tag_why = "tagged horse images with untagged twins among the analysed images"
        skip_section("Tag bias", tag_why)
    else:
        xt = x_all[[ids.index(i) for i in tagged_ids]]
        un = E.load_split(ds.root, "test_untagged", model, ids=[twin_of[i] for i in tagged_ids],
                          transform=m.transform, box_map=m.input_boxes)
        tb = np.array([tag_of[i] for i in tagged_ids])
        tg = E.tag_bias(model, xt, un["x"], tb, horse, fgvis_params=fg_nogame, ids=tagged_ids)
        dens = V.tag_density(tg)
        display(pd.DataFrame({"deleted mass in tag box": tg["box_share"].mean("image").values,
                              "density in / out (ratio of sums)": dens["estimate"].values,
                              "95 % interval": [f"[{lo:.2f}, {hi:.2f}]" for lo, hi in
                                                zip(dens["low"].values, dens["high"].values)],
                              "n": dens["n"].values,
                              "horse score (image)": tg["score_image"].mean("image").values},
                             index=tg["variant"].values).round(3))
        tg = attach_interval(tg, "density", dens)
        print(f"tag box covers {100 * float(tg['box_fraction'].mean()):.1f} % of the crop")
V.tag_findings(F, tg, why_not=f"it needs {tag_why}")

# %% tags=["findings"]
F.show()

# %% [markdown]
# ## Results

# %%
parts = {name: part for name, part in (("defence", dv), ("faithfulness", fa), ("colour", cb),
                                       ("tag", tg)) if part is not None}
res = E.combine(attrs=make_attrs(cfg, notebook="06_fgvis_bias_probes", **sources.describe(m, ds),
                                 fgvis_params=fg, sections=list(parts),
                                 runtime_s=round(time.time() - t_start, 1)), **parts)
res = F.attach(res)
if results_path:
    save_dataset(res, results_path)
print(f"notebook ran {time.time() - t_start:.1f} s")
res
