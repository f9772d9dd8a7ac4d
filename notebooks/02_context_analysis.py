# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
#   lrpkit:
#     expected_seconds: 85
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
# most for classes with a distinctive background (boat–water, aeroplane–sky); they explain it by
# the FV model's lower accuracy. This notebook runs on the configured model(s) and data (`model` /
# `models`, `dataset`):
#
# 1. µ per class for every model with **95 % bootstrap intervals over images** (Fig. 6; needs
#    boxes), the FV model beside the network where the config has one;
# 2. what context is worth to each model: the per-class **score and AP drop** from the analysed
#    split to its **counterfactual twins** where the data has them (lrpkit's scenes:
#    `test_swapped`, the same objects over a background drawn at random, and `test_untagged`, the
#    tag removed), with intervals;
# 3. the paper's explanation tested within one model: µ and the swapped-background AP drop
#    against mAP across the scene CNN's **training checkpoints**.
#
# **Estimator.** A per-image µ is a ratio of two small numbers (an image with almost no relevance
# on its object gives µ in the thousands), so µ per class is a *ratio of mean densities*: each
# heatmap's positive relevance is normalised to sum to 1 over the image, then µ = Σ context
# density / Σ inside density over the images (`lrpkit.evaluate.context_summary`), with a
# percentile bootstrap over images. The **context** leaves out the padding of a model's input
# (the scene CNN scales the longest side to 128, edge-pads the short side to 128 × 128 and crops
# the centre 112 × 112: those padded rows are not the image) and, on lrpkit's scenes, the planted
# copyright **tag**, whose share is reported on its own.
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
from lrpkit import layout, pipeline, sources, viz
from lrpkit.data import read_bias
from lrpkit.evaluate import Findings, attach_interval, ratio_interval, twin_drop
from lrpkit.evaluate.box_samples import class_box_samples
from lrpkit.evaluate.checkpoint_context import (checkpoint_context, correlation_interval, map_difference,
                                                map_drop_intervals)
from lrpkit.evaluate.context_summary import (ALL, context_ratio_between, context_ratio_intervals,
                                             image_densities, region_share_intervals)
from lrpkit.evaluate.scoring import ap_by_split, dataset_twins, image_scores
from lrpkit.evaluate.shallow_deep import class_average_heatmaps, source_map_model
from lrpkit.evaluate.tag_experiment import FV_LRP, tag_experiment, tag_intervals, tag_unavailable
from lrpkit.explain import get_method
from lrpkit.models.train import checkpoint_name
from lrpkit.results import make_attrs, save_dataset

t_start = time.perf_counter()
cfg = lrpkit.load_config(config)
ev = cfg.evaluation
src = sources.load_sources(cfg)
data = src.dataset
classes = list(data.classes)
fv = pipeline.available_fisher(cfg, src)       # configured, or lrpkit's on its scenes; else None
models = ([fv] if fv is not None and fv not in src.models else []) + list(src.models)
deep = [m for m in models if m.is_torch]
scenes = data.source == "scenes"               # lrpkit's bias-zoo set: planted truth in bias.csv
NB = dict(n_boot=ev.context_bootstrap, seed=cfg.seed)
F = Findings("02_context_analysis")
FIG6 = "The FV model uses more context than the DNN: µ(FV) / µ(DNN) > 1 (Lapuschkin et al. 2016, Fig. 6)"


def heatmap_params(mdl):
    """The config's LRP for a torch model that LRP can reach, else gradient x input (TorchScript)."""
    if get_method("lrp").accepts(mdl.model):
        return {"method": "lrp", **cfg.lrp.method_params()}
    return {"method": "gradient_x_input"}


def fmt(est, lo, hi, n, d=3):
    return f"{est:.{d}f} [{lo:.{d}f}, {hi:.{d}f}] ({int(n)})"


map_models = [source_map_model(mdl, classes, fv_params=FV_LRP) if not mdl.is_torch
              else source_map_model(mdl, classes, **heatmap_params(mdl)) for mdl in models]
names = [mm.name for mm in map_models]
how = [heatmap_params(mdl)["method"] if mdl.is_torch else "FV-LRP" for mdl in models]
viz.notebook_style()
display(Markdown(
    f"Config `{cfg.source}` · data **{data.name}** ({data.source}, `{data.split}`, {len(data)} images) · "
    f"models: {', '.join(f'**{mdl.name}** ({mdl.source}, {h})' for mdl, h in zip(models, how))} · "
    f"up to {ev.context_images} images per class for µ · {ev.context_bootstrap} bootstrap resamples"))
if fv is None:
    viz.skip_section("The FV comparison", "a Fisher-vector model (a `model` / `models` entry with "
                     "`source: fisher`, or the FV model lrpkit fits beside its scene CNN on its scenes)")
skipped = []
# the tag experiment is shared with notebook 03 (cached on disk: whichever report runs first computes it)
no_tag = tag_unavailable(data)
tag = tag_experiment(cfg, models, data, lambda: sources.load_dataset(cfg.dataset, cfg, split="test_untagged"),
                         cache_dir=layout.models_root(cfg) / "cache", progress=True) if no_tag is None else None

# %% [markdown]
# ## Fig. 6 · µ per class and model, with 95 % bootstrap intervals
#
# One random sample of `context_ap_images` test images is scored with its twins below; µ uses up
# to `context_images` of them per class that show the class and hold a box of it, all of the
# class's boxes as "inside". Bars: µ (ratio of mean densities); whiskers: 95 % bootstrap interval
# over images; n: images. µ > 1: evidence is denser in the context than on the object.

# %%
twins = dataset_twins(data, n_images=ev.context_ap_images, seed=cfg.seed)
row_of = {str(i): k for k, i in enumerate(data.ids)}
twin_rows = [row_of[str(i)] for i in twins.ids[twins.splits[0]]]
mu_ci = avg = shares = None
if not data.has_boxes:
    skipped.append(viz.skip_section("µ per class (Fig. 6)", "object boxes in the dataset (VOC "
                                    "annotations, or a box CSV for an image folder: `dataset.boxes`)"))
else:
    t0 = time.perf_counter()
    picks = class_box_samples(data, ev.context_images, seed=cfg.seed, rows=twin_rows)
    samples = {c: [(data.image(i), b) for i, b in v] for c, v in picks.items()}
    ids = {c: [data.ids[i] for i, _ in v] for c, v in picks.items()}
    tags = None
    if scenes:
        bias = read_bias(data.root)
        tb = bias[(bias.split == data.split) & (bias.tag == 1)].drop_duplicates("image_id").set_index("image_id")
        tags = {c: [tuple(int(tb.loc[i, k]) for k in ("tag_xmin", "tag_ymin", "tag_xmax", "tag_ymax"))
                    if i in tb.index else None for i in ids[c]] for c in classes}
    avg = class_average_heatmaps(map_models, samples, classes, progress=True, image_ids=ids, tags=tags)
    mu_ci = context_ratio_intervals(avg, **NB)
    shares = region_share_intervals(avg, **NB)
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(classes) + 3), 3.2))
    rows = classes + [ALL]
    w = 0.8 / len(names)
    for k, name in enumerate(names):
        est, lo, hi = (mu_ci[v].sel(model=name).values for v in ("estimate", "low", "high"))
        xs = np.arange(len(rows)) + (k - (len(names) - 1) / 2) * w
        ax.bar(xs, est, w, label=f"{name} (n = {int(mu_ci.n.sel(model=name, **{'class': ALL}))} images)",
               color=f"C{k}")
        ax.errorbar(xs, est, yerr=[np.nan_to_num(np.clip(est - lo, 0, None)),
                                   np.nan_to_num(np.clip(hi - est, 0, None))],
                    fmt="none", ecolor="k", capsize=2, lw=0.8)
    ax.axhline(1.0, color="k", lw=0.8, ls=":")
    ax.set_xticks(np.arange(len(rows)), rows, rotation=30 if len(rows) > 8 else 0)
    ax.set_ylabel("µ (context / inside density)")
    if np.nanmin(mu_ci.estimate.values, initial=np.inf) > 0:
        ax.set_yscale("log")
    ax.set_title("Outside-inside relevance ratio (eq. 11), 95 % bootstrap intervals over images")
    ax.legend(fontsize=8)
    plt.tight_layout()
    plt.show()
    tab = pd.DataFrame({f"µ {name}": [fmt(*(float(mu_ci[v].sel(model=name, **{"class": c}))
                                             for v in ("estimate", "low", "high", "n"))) for c in rows]
                        for name in names}, index=rows)
    display(Markdown("µ: estimate [95 % interval] (images):"))
    display(tab)
    sh = pd.DataFrame({f"{name}: {r}": [fmt(*(float(shares[v].sel(model=name, region=r, **{"class": c}))
                                              for v in ("estimate", "low", "high", "n"))) for c in rows]
                       for name in names for r in shares.region.values}, index=rows)
    display(Markdown("Mean share of each image's positive relevance inside the class's boxes, in the "
                     "context and on the planted tag (padding left out): estimate [95 % interval] "
                     "(n: (class, image) samples, resampled):"))
    display(sh)
    print(f"µ per class: {time.perf_counter() - t0:.1f} s")

# %% [markdown]
# ## Scene set only · µ against the planted context
#
# Each sampled image joined with its ground truth from `bias.csv` (`lrpkit.data.read_bias`): the
# background and whether it is the usual context of the explained class (`object_context_match`:
# aeroplane–sky, boat–water, bus/car–road, horse/sheep–grass). A model that uses the context should
# put more relevance outside the box (higher µ) when the background **matches**. Same estimator;
# intervals over the (class, image) samples.

# %%
by_match = None
if not scenes or avg is None:
    skipped.append(viz.skip_section("µ against the planted context", "lrpkit's bias-zoo scenes "
                                    "(`bias.csv` records each object's background and context match)"))
else:
    objs = bias[bias.split == data.split]
    first = objs.drop_duplicates(["image_id", "class"]).set_index(["image_id", "class"])
    rows_bm = []
    for name in names:
        d_ctx, d_in, _ = image_densities(avg, name)
        for r, c in enumerate(classes):
            for k, i in enumerate(ids[c]):
                o = first.loc[(i, c)]
                rows_bm.append({"model": name, "background": o.background,
                                "context_match": bool(o.object_context_match),
                                "d_ctx": d_ctx[r, k], "d_in": d_in[r, k]})
    per = pd.DataFrame(rows_bm)
    out_rows = []
    groups = [((n, "context_match", v), g) for (n, v), g in per.groupby(["model", "context_match"])] + \
        [((n, "background", v), g) for (n, v), g in per.groupby(["model", "background"])]
    for (name, key, val), g in groups:
        iv = ratio_interval(g.d_ctx.values, g.d_in.values, **NB)
        out_rows.append({"model": name, "group": f"{key} = {val}", "µ": fmt(iv.estimate, iv.low, iv.high, iv.n),
                         "estimate": iv.estimate, "low": iv.low, "high": iv.high, "n": iv.n})
    by_match = pd.DataFrame(out_rows)
    display(by_match.pivot(index="group", columns="model", values="µ"))

# %% [markdown]
# ## What the context is worth: score and AP on counterfactual twins
#
# The `context_ap_images` random images of the analysed split and their twins in each
# counterfactual split (the same objects and pixels with one cue changed). Per class and model:
# the mean score of the positive images on the originals minus on the twins (paired bootstrap over
# images) and the AP drop (bootstrap over images), via `lrpkit.evaluate.twin_drop`. For
# `test_untagged` only the images whose twin changed (the tagged ones) count: AP barely moves
# there while the score falls, which is why the score drop stands beside it.

# %%
twin_res, drops, swap = None, {}, None
counterfactual = twins.splits[1:]
if not counterfactual:
    skipped.append(viz.skip_section(
        "Score and AP on counterfactual twins", "counterfactual twin splits of the analysed split "
        "(lrpkit's scenes analysed on `test`: `test_swapped` and `test_untagged`)"))
else:
    t0 = time.perf_counter()
    ref = twins.splits[0]
    ap = ap_by_split({mdl.name: mdl for mdl in models}, twins, progress=True)
    twin_res = ap
    for tw in counterfactual:
        drops[tw] = twin_drop(ap, tw, reference=ref, changed_only=(tw != "test_swapped"), **NB)
        d = drops[tw]
        tab = pd.DataFrame({(v, m): [fmt(float(d[v].sel(model=m, **{"class": c})),
                                         float(d[f"{v}_low"].sel(model=m, **{"class": c})),
                                         float(d[f"{v}_high"].sel(model=m, **{"class": c})),
                                         int(d["n"].sel(model=m, **{"class": c})), 2) for c in classes]
                            for v in ("score_drop", "ap_drop") for m in names}, index=classes)
        which = " whose twin changed" if tw != "test_swapped" else ""
        display(Markdown(f"**{ref} → {tw}** ({int(d.n_images)} images{which}); "
                         "estimate [95 % interval] (positives):"))
        display(tab)
    if "test_swapped" in counterfactual:
        swap, swap_pairs = map_drop_intervals(
            ap.scores.sel(split=ref).transpose("model", "image", "class").values,
            ap.scores.sel(split="test_swapped").transpose("model", "image", "class").values,
            twins.labels[ref], twins.ignore[ref], models=names, **NB)
        display(Markdown("mAP drop on `test_swapped` (all six classes): " + "; ".join(
            f"**{m}** {fmt(*(float(swap[v].sel(model=m)) for v in ('estimate', 'low', 'high', 'n')))}"
            for m in names)))
    fig, axes = plt.subplots(len(counterfactual), 2, figsize=(10, 3 * len(counterfactual)), squeeze=False)
    w = 0.8 / len(names)
    for row, tw in zip(axes, counterfactual):
        for ax, v in zip(row, ("score_drop", "ap_drop")):
            for k, name in enumerate(names):
                d = drops[tw].sel(model=name)
                est = d[v].values
                ax.bar(np.arange(len(classes)) + (k - (len(names) - 1) / 2) * w, est, w,
                       yerr=[np.nan_to_num(est - d[f"{v}_low"].values), np.nan_to_num(d[f"{v}_high"].values - est)],
                       capsize=2, label=name)
            ax.set_xticks(np.arange(len(classes)), classes)
            ax.axhline(0, color="k", lw=0.8)
            ax.set_title(v.replace("_", " ") + f" ({ref} → {tw}, {int(drops[tw].n_images)} images)", fontsize=9)
    axes[0, 0].legend()
    plt.tight_layout()
    plt.show()
    print(f"twins: {time.perf_counter() - t0:.1f} s")

# %% [markdown]
# ## The paper's explanation across the scene CNN's training checkpoints
#
# Lapuschkin et al. (2016, Sec. 6.5) explain the FV model's larger context use by its lower
# accuracy. Within one model that predicts: the better trained a checkpoint (higher mAP), the lower
# its µ and its AP drop when the background is swapped. A checkpoint near chance has little AP to
# lose, so the drop is also shown as a share of the AP it has above chance (chance: the mean
# positive rate over the classes, about a random ranking's AP). Each checkpoint `cnn_epoch*.pt` after at
# least one epoch (an untrained network's heatmap says nothing about context) is scored on the twin
# sample (`test`, `test_swapped`) and explained on `context_checkpoint_images` images per class of
# the µ sample; one bootstrap draw of the images per replicate serves every checkpoint, so the
# rank correlations across checkpoints get intervals too (`lrpkit.evaluate.checkpoint_context`).

# %%
ck = None
cnn = next((m for m in deep if m.source == "scene_cnn" and m.path is not None), None)
ckpts = [e for e in cfg.cnn.checkpoints if e >= 1 and cnn is not None
         and (cnn.path.parent / checkpoint_name(e)).is_file()]
if avg is None or len(ckpts) < 3 or "test_swapped" not in counterfactual:
    skipped.append(viz.skip_section("µ and the swapped-background AP drop across training checkpoints",
                                    "at least three training checkpoints of the analysed scene CNN (the "
                                    "`cnn_epoch*.pt` files lrpkit keeps), boxes and the `test_swapped` twins"))
else:
    t0 = time.perf_counter()
    n_ck = ev.context_checkpoint_images
    sub = {c: samples[c][:n_ck] for c in classes}
    sub_ids = {c: ids[c][:n_ck] for c in classes}
    sub_tags = {c: tags[c][:n_ck] for c in classes} if tags else None
    ck_models = [sources.load_model({"source": "scene_cnn", "weights": str(cnn.path.parent / checkpoint_name(e))},
                                    cfg, classes=classes) for e in ckpts]
    ck_maps = [source_map_model(m, classes, name=f"epoch {e}", **heatmap_params(m)) for m, e in zip(ck_models, ckpts)]
    ck_avg = class_average_heatmaps(ck_maps, sub, classes, image_ids=sub_ids, tags=sub_tags)
    ref_imgs, sw_imgs = twins.images[ref], twins.images["test_swapped"]
    s_ref = np.stack([image_scores(m, ref_imgs, classes=classes) for m in ck_models])
    s_sw = np.stack([image_scores(m, sw_imgs, classes=classes) for m in ck_models])
    key_row = {str(i): k for k, i in enumerate(twins.ids[ref])}
    dens = [image_densities(ck_avg, mm.name) for mm in ck_maps]
    pair_rows = np.array([key_row.get(str(i), -1) for i in ck_avg.image_id.values.ravel()])
    valid = pair_rows >= 0
    ck = checkpoint_context(s_ref, s_sw, twins.labels[ref], twins.ignore[ref],
                            np.stack([d[0].ravel()[valid] for d in dens]),
                            np.stack([d[1].ravel()[valid] for d in dens]), pair_rows[valid], ckpts, **NB)
    CK_PANELS = (("mu", "µ (context / inside)", "spearman_map_mu"),
                 ("map_drop", "mAP drop, test → test_swapped", "spearman_map_drop"),
                 ("map_drop_share", "mAP drop / (mAP − chance)", "spearman_map_drop_share"))
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.3))
    for ax, (v, lab, rho_name) in zip(axes, CK_PANELS):
        ax.errorbar(ck.mAP, ck[v], xerr=[ck.mAP - ck.mAP_low, ck.mAP_high - ck.mAP],
                    yerr=[ck[v] - ck[f"{v}_low"], ck[f"{v}_high"] - ck[v]], fmt="o", capsize=2)
        for e, x, y in zip(ckpts, ck.mAP.values, ck[v].values):
            ax.annotate(f"ep {e}", (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
        rho = correlation_interval(ck, rho_name)
        ax.set_xlabel("mAP (test)")
        ax.set_ylabel(lab)
        ax.set_title(f"Spearman ρ = {rho.format(2)}\n({len(ckpts)} checkpoints, {rho.n} images)", fontsize=9)
    plt.tight_layout()
    plt.show()
    ck_n = {"mAP": int(ck.n_images), "map_drop": int(ck.n_images), "map_drop_share": int(ck.n_images),
            "mu": int(ck.n_pairs)}
    display(Markdown(f"Per checkpoint: estimate [95 % interval] (n: images scored; for µ the (class, image) "
                     f"pairs explained). Chance mAP {correlation_interval(ck, 'chance_mAP').format(3)} "
                     f"({int(ck.n_images)} images)."))
    display(pd.DataFrame({v: [fmt(float(ck[v][k]), float(ck[f"{v}_low"][k]), float(ck[f"{v}_high"][k]), ck_n[v])
                              for k in range(len(ckpts))] for v in ck_n},
                         index=[f"epoch {e}" for e in ckpts]))
    print(f"checkpoints: {time.perf_counter() - t0:.1f} s")

# %% [markdown]
# ## Scene set only · the horse tag (the same numbers as notebook 03)
#
# Tagged horse test images and their `test_untagged` twins (`lrpkit.evaluate.tag_experiment`,
# computed once and cached for notebooks 02 and 03): the share of positive relevance in the tag
# box, how many times denser than a uniform map that is (enrichment), and the horse score with
# and without the tag. Estimates [95 % interval] (tagged images).

# %%
tag_ci = None
if tag is None:
    skipped.append(viz.skip_section("The horse tag", f"{no_tag}"))
else:
    tag_ci, _ = tag_intervals(tag, **NB)
    display(pd.DataFrame({q: [fmt(*(float(tag_ci[v].sel(model=m, measure=q)) for v in ("estimate", "low", "high", "n")))
                              for m in tag_ci.model.values] for q in tag_ci.measure.values},
                         index=tag_ci.model.values).T)
    display(Markdown(f"{tag.attrs['n_cases']} tagged horse test images "
                     f"({'read from the cache' if tag.attrs.get('cache_hit') else 'computed now and cached'})."))

# %% [markdown]
# ## Findings (generated)
#
# The findings table opens the report. The paper's claim is a ratio of µ pooled over the classes
# (the same images for both models); its reason, where contradicted, is computed from this run's
# mAP of both models and the checkpoint correlations.

# %%
fv_name = fv.name if fv is not None else None
dnn = next((m.name for m in deep), None)
rho = {k: correlation_interval(ck, f"spearman_map_{k}") for k in ("mu", "drop", "drop_share")} if ck is not None else {}


def rho_words(iv):
    """What a Spearman(mAP, ·) interval says of "the less accurate, the more context" (ρ < 0)."""
    return "supports" if iv.high < 0 else "contradicts" if iv.low > 0 else "does not resolve"


def epoch_text(k):
    return f"epoch {ckpts[k]} (mAP {float(ck.mAP[k]):.2f}, drop {float(ck.map_drop[k]):.2f})"


ratio = None
if fv_name is None or dnn is None or mu_ci is None:
    F.not_tested(FIG6, "needs boxes, an FV model and a deep network on the same data")
else:
    ratio = context_ratio_between(avg, fv_name, dnn, **NB)
    mu_fv, mu_dnn = (float(mu_ci.estimate.sel(model=m, **{"class": ALL})) for m in (fv_name, dnn))
    reason = (f"the {dnn} puts more of its evidence in the context (pooled µ {mu_dnn:.3f} vs FV {mu_fv:.3f})"
              if ratio.estimate < 1 else f"µ(FV) {mu_fv:.3f} vs {dnn} {mu_dnn:.3f}")
    if twin_res is not None:
        sc = twin_res.scores.sel(split=twins.splits[0]).transpose("model", "image", "class")
        acc = map_difference(sc.sel(model=dnn).values, sc.sel(model=fv_name).values, twins.labels[twins.splits[0]],
                             twins.ignore[twins.splits[0]], **NB)      # mAP(DNN) - mAP(FV), paired images
        m_fv, m_dnn = (float(twin_res.mAP.sel(split=twins.splits[0], model=m)) for m in (fv_name, dnn))
        weaker = ("is the less" if acc.high < 0 else "is the more" if acc.low > 0 else
                  "is not resolvably the less or the more")
        reason += (f" and {weaker} accurate model on these scenes (mAP {m_dnn:.2f} vs FV {m_fv:.2f}, "
                   f"difference {acc.format(3)} on {acc.n} images)"
                   + (", as the paper's own reasoning predicts for the weaker model" if acc.high < 0 else ""))
    if ck is not None:
        reason += (f"; within the {dnn}, across its {len(ckpts)} checkpoints, Spearman(mAP, µ) = "
                   f"{rho['mu'].format(2)}, which {rho_words(rho['mu'])} that mechanism")
    F.add(FIG6, ratio, direction=">", reference=1.0, paper="FV > DNN for most classes", reason=reason)
if swap is not None and fv_name is not None and dnn is not None:
    d_fv, d_dnn = float(swap.estimate.sel(model=fv_name)), float(swap.estimate.sel(model=dnn))
    F.add("The FV model's AP depends more on the background than the DNN's: mAP drop on swapped "
          "backgrounds, FV − DNN > 0 (Lapuschkin et al. 2016, Sec. 6.5; lrpkit's twins)",
          swap_pairs[(fv_name, dnn)], direction=">", paper="FV more context",
          reason=(f"the {dnn} loses {d_dnn:.2f} mAP and the FV model {d_fv:.2f} when the background is swapped"
                  + ("" if ratio is None else
                     f", {'in line with' if ratio.estimate < 1 else 'although µ shows the opposite:'} "
                     f"µ(FV) / µ({dnn}) = {ratio.format(2)}")))
else:
    F.not_tested("The FV model's AP depends more on the background than the DNN's (swapped twins)",
                 "needs an FV model, a deep network and counterfactual twins with another background")
CK_CLAIMS = ("The less accurate model leans more on context (Lapuschkin et al. 2016, Sec. 6.5), within the DNN: "
             "Spearman(mAP, µ) < 0 across its training checkpoints",
             "… and the less accurate checkpoint loses more AP on swapped backgrounds: Spearman(mAP, mAP drop) < 0",
             "… and more of its AP above chance: Spearman(mAP, mAP drop / (mAP − chance)) < 0")
if ck is not None:
    F.add(CK_CLAIMS[0], rho["mu"], direction="<", paper="the weaker FV model uses more context")
    peak = int(np.nanargmax(ck.map_drop.values))
    F.add(CK_CLAIMS[1], rho["drop"], direction="<", paper="the weaker FV model uses more context",
          reason=(f"the drop is bounded by what a checkpoint has learned: from {epoch_text(0)}, "
                  f"{float(ck.mAP[0] - ck.chance_mAP):.2f} above the chance mAP {float(ck.chance_mAP):.2f}, it rises "
                  f"to {epoch_text(peak)}"
                  + (f" and falls to {epoch_text(len(ckpts) - 1)}" if peak < len(ckpts) - 1 else "")
                  + f"; as a share of the AP above chance, Spearman = {rho['drop_share'].format(2)}, which "
                  f"{rho_words(rho['drop_share'])} the paper's mechanism"))
    F.add(CK_CLAIMS[2], rho["drop_share"], direction="<", paper="the weaker FV model uses more context")
else:
    for claim in CK_CLAIMS:
        F.not_tested(claim, "needs the training checkpoints of a scene CNN (cnn_epoch*.pt), boxes and swapped twins")
n_of = {c: int(mu_ci.n.sel(model=names[0], **{"class": c})) for c in classes + [ALL]} if mu_ci is not None else {}
display(Markdown("Sample sizes: " + (f"µ on {n_of[ALL]} images ({', '.join(f'{c} {n_of[c]}' for c in classes)}); "
                                     if mu_ci is not None else "")
                 + f"twins on {len(twins)} images"
                 + (f"; checkpoints on {int(ck.n_images)} images, µ on {int(ck.n_pairs)} (class, image) pairs"
                    if ck is not None else "")
                 + (f"; tag on {tag.attrs['n_cases']} tagged horses" if tag is not None else "") + "."))

# %% tags=["findings"]
F.show()

# %% [markdown]
# ## Results

# %%
out = xr.Dataset(attrs=make_attrs(cfg, **sources.describe(models, data), context_images=ev.context_images,
                                  context_bootstrap=ev.context_bootstrap, context_ap_images=len(twins),
                                  fv_model=fv.name if fv is not None else "", skipped_sections=skipped))
if avg is not None:
    out["mu"] = avg.context_ratio
    out["mu_image_id"] = avg.image_id
    out["region_relevance"] = avg.region_relevance
    out["region_pixels"] = avg.region_pixels
    out = attach_interval(out, "mu_ratio", mu_ci.rename({"class": "mu_class"}))
    out = attach_interval(out, "region_share", shares.rename({"class": "mu_class", "region": "share_region"}))
if by_match is not None:
    out["mu_by_group"] = xr.DataArray(by_match.pivot(index="group", columns="model", values="estimate"),
                                      dims=("group", "model"))
if twin_res is not None:
    for v in ("ap", "mAP"):
        out[f"twin_{v}"] = twin_res[v]
    for tw, d in drops.items():
        for v in ("score_drop", "score_drop_low", "score_drop_high", "ap_drop", "ap_drop_low", "ap_drop_high", "n"):
            out[f"{tw}_{v}"] = d[v]
if swap is not None:
    out = attach_interval(out, "swapped_map_drop", swap)
if ck is not None:
    out = xr.merge([out, ck.rename({v: f"checkpoint_{v}" for v in ck.data_vars})], combine_attrs="override")
if tag is not None:
    tg = tag.rename(model="tag_model", region="tag_region")
    out["tag_share"] = tg.tag_share
    out["tag_score"] = tg.score
    out["tag_area_share"] = tg.tag_area_share
    out = attach_interval(out, "tag", tag_ci.rename(model="tag_model"))
out = F.attach(out)
if results_path is not None:
    save_dataset(out, results_path)
print(f"notebook total: {time.perf_counter() - t_start:.1f} s")
out
