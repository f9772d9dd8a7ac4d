# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
#   lrpkit:
#     expected_seconds: 135
# ---

# %% [markdown]
# # 04 · Which heatmap is right? Region perturbation, AOPC, deletion/insertion, complexity
#
# Samek et al. ("Evaluating the visualization of what a deep neural network has learned",
# IEEE TNNLS 2017) score a heatmap by **destroying the image where the heatmap points first**: the
# regions are perturbed in the heatmap's order (MoRF, eq. 11; uniform noise in m × m regions as in
# the paper) and the **area over the perturbation curve** (AOPC, eq. 12) measures how fast the
# class score falls. A good heatmap makes it fall fast; a random order is the baseline (Fig. 4).
# The paper also compares region sizes (Appendix, Fig. 8), heatmap **complexity** (file size,
# entropy; Fig. 5) and AOPC along training (Fig. 7).
#
# Here on the configured model and data (`model` / `models`, `dataset`; lrpkit's scene CNN on its
# scenes by default), with budgets from the config's `evaluation` section (the paper: 5040 images,
# 10 repeats). Every comparison is **paired over the same images** and shown with its 95 %
# bootstrap interval and n (`lrpkit.evaluate.intervals`); the findings at the top follow from those
# intervals. `lrpkit.evaluate.aopc_study.perturbation_study` runs all methods, both orders and the
# random baseline in one batched pass with shared noise draws; with `aopc_step_samples` it
# evaluates one randomly drawn step per block of steps (stratified sampling: an unbiased estimate
# of eq. 12 at a fraction of the forward passes; `null` evaluates every step as the paper).
# RISE's deletion/insertion AUC (Petsiuk et al. 2018) and ROAD's noisy linear imputation (Rong et
# al. 2022) join as other removal protocols. The Fisher-vector model joins where the config has
# one; the training-checkpoint study needs the checkpoints lrpkit keeps when it trains its scene CNN.

# %% tags=["parameters"]
config = "default"      # config name or YAML path (lrpkit.load_config)
results_path = None     # where the runner wants this notebook's xarray results

# %%
import time
from collections import Counter

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
import xarray as xr
from IPython.display import Markdown, display
from scipy.stats import spearmanr

import lrpkit
from lrpkit import pipeline, sources, viz
from lrpkit.evaluate import (SAMEK2017_METHODS, Findings, attach_interval, complexity, deletion_insertion,
                             interval_dataset, interval_frame, paired_interval, paired_interval_dataset,
                             resample_interval, scaled_region_size)
from lrpkit.evaluate.aopc_study import (between_image_similarity, min_difference_interval, perturbation_study,
                                        ranking_table, study_steps, true_positive_targets)
from lrpkit.evaluate.perturbation import explain_batched
from lrpkit.evaluate.scoring import image_scores, per_class_ap
from lrpkit.explain import get_method
from lrpkit.models.train import checkpoint_name
from lrpkit.results import make_attrs, save_dataset

t_start, c_start = time.perf_counter(), time.process_time()
cfg = lrpkit.load_config(config)
ev = cfg.evaluation
torch.manual_seed(cfg.seed)
src = sources.load_sources(cfg)
data = src.dataset
net = next((mdl for mdl in src.models if mdl.is_torch), None)   # the model evaluated (first torch one)
fv = pipeline.available_fisher(cfg, src)                        # configured, or lrpkit's on its scenes
rng = np.random.default_rng(cfg.seed)
order = rng.permutation(len(data))
viz.notebook_style({"legend.fontsize": 7})
F = Findings("04_aopc_evaluation")
FIG4 = "Samek et al. 2017, Fig. 4"
BOOT = dict(n_boot=2000, seed=cfg.seed)


def took(what, t0, c0):
    """Wall and CPU seconds of a section (CPU = kernel-seconds with one torch thread)."""
    print(f"{what}: {time.perf_counter() - t0:.1f} s wall, {time.process_time() - c0:.1f} s CPU")


def fmt_frame(df, digits=3):
    """``estimate [low, high]`` beside n and the rest of an interval table."""
    out = df.copy()
    out.insert(0, "estimate [95 % interval]", [f"{e:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"
                                               for e, lo, hi in zip(df.estimate, df.low, df.high)])
    return out.drop(columns=["estimate", "low", "high"])


if net is None:
    display(Markdown(f"Config `{cfg.source}` · data **{data.name}** (`{data.split}`, {len(data)} images) · "
                     f"no torch model configured: only the Fisher-vector section applies."))
else:
    # true positives: a present class scored > 0 (the arg-max for a single-label model), scanned in a
    # seeded random order until aopc_images qualify
    try:
        cols = np.array([net.classes.index(c) for c in data.classes])
    except ValueError:
        cols = None                                   # the model does not name the dataset's classes
    chosen, targets, x_parts, scanned = [], [], [], 0
    for c0 in range(0, len(order), 64):
        if cols is None or len(chosen) >= ev.aopc_images:
            break
        rows_c = order[c0:c0 + 64]
        xc = net.inputs(data.images(rows_c))
        margin = net.margins(net.scores(xc))[:, cols]
        tp = true_positive_targets(data.labels[rows_c], margin, data.ignore[rows_c])
        scanned += len(rows_c)
        keep = np.flatnonzero(tp >= 0)[:ev.aopc_images - len(chosen)]
        chosen += [int(rows_c[i]) for i in keep]
        targets += [int(cols[tp[i]]) for i in keep]
        x_parts.append(xc[keep])
    n_tp = len(chosen)
    if n_tp >= 2:
        rows = np.array(chosen)
        x = torch.cat(x_parts)
        target = torch.tensor(targets)
        how = (f"**{n_tp} true-positive images** (a present class scored f_c(x) > 0, explained and "
               f"scored) of {scanned} scanned test images")
    else:                                             # too few true positives: the predicted class
        rows = order[:ev.aopc_images]
        x = net.inputs(data.images(rows))
        target = torch.as_tensor(net.scores(x).argmax(1))
        how = (f"**{len(rows)} images, predicted class** (only {n_tp} true positives among {scanned} "
               f"scanned images; Samek et al. 2017 explain the predicted class)")
    image_ids = [data.ids[int(i)] for i in rows]
    n_img = len(rows)
    crop = int(x.shape[-1])
    m = ev.aopc_region_size or scaled_region_size(9, crop)
    L, stride = study_steps(crop, crop, m, ev.aopc_steps, ev.aopc_step_samples)
    PK = dict(region_size=m, steps=L, stride=stride, repeats=ev.aopc_repeats, bounds=net.bounds,
              batch_size=ev.perturbation_batch, seed=cfg.seed)
    share = L * m * m / crop ** 2
    display(Markdown(
        f"Config `{cfg.source}` · model **{net.name}** ({net.source}, {len(net.classes)} outputs) · "
        f"data **{data.name}** (`{data.split}`) · {how} · input {crop}×{crop} · regions {m}×{m} "
        f"(Samek et al. 2017: 9×9 at 227 px, scaled) · L = {L} steps ({100 * share:.1f} % of the image; "
        f"Samek et al. 2017: 15.7 %) · {'every step' if stride == 1 else f'one step drawn per block of {stride}'}"
        f" · {ev.aopc_repeats} repeats (Samek et al. 2017: 10)"))
    others = [mdl.name for mdl in src.models if mdl.is_torch and mdl is not net]
    if others:
        display(Markdown(f"This report evaluates the config's first torch model; not evaluated here: "
                         f"{', '.join(others)} (a config of its own each)."))

# %% [markdown]
# ## Heatmaps of every method (computed once, reused below)
#
# The methods of Samek et al. 2017, Fig. 4 (`lrpkit.evaluate.SAMEK2017_METHODS`): LRP α=2, β=1 (eq. 8),
# LRP-ε with ε = 0.01, 1, 100 (eq. 7), sensitivity (eq. 3, ℓ2 and ℓ∞ over colour channels),
# deconvnet, plus guided backprop and gradient × input. A TorchScript model runs compiled code that
# LRP, deconvnet and guided backprop cannot reach: it gets the gradient methods only.

# %%
if net is None:
    viz.skip_section("Heatmaps, Fig. 4, Fig. 8, Fig. 5, deletion / insertion and ROAD",
                     "a torch model (`model.source`: scene_cnn, torchvision, torchscript or python)")
else:
    t0, c0 = time.perf_counter(), time.process_time()
    specs = {k: v for k, v in SAMEK2017_METHODS.items() if get_method(v["method"]).accepts(net.model)}
    left_out = [k for k in SAMEK2017_METHODS if k not in specs]
    if left_out:
        display(Markdown(f"Left out for **{net.name}** (a TorchScript module): {', '.join(left_out)}."))
    maps = {name: explain_batched(net.model, x, target, spec["method"],
                                  **{k: v for k, v in spec.items() if k != "method"})
            for name, spec in specs.items()}
    names = list(maps)
    fig, axes = plt.subplots(1, len(names) + 1, figsize=(1.6 * (len(names) + 1), 2.0))
    axes[0].imshow(net.rgb(x[0]).permute(1, 2, 0).numpy())
    axes[0].set_title(f"{image_ids[0]}\n{net.classes[int(target[0])]}", fontsize=7)
    for ax, name in zip(axes[1:], names):
        h = maps[name][0].sum(0).numpy()
        a = np.abs(h).max() or 1.0
        ax.imshow(h, cmap="bwr", vmin=-a, vmax=a)
        ax.set_title(name, fontsize=7)
    for ax in axes:
        ax.axis("off")
    plt.tight_layout()
    plt.show()
    took("heatmaps", t0, c0)

# %% [markdown]
# ## Fig. 4 · AOPC relative to the random baseline, MoRF and LeRF
#
# `AOPC − AOPC(random)` per image (same images, same noise draws, same evaluated steps; the random
# order is drawn anew in each repeat), averaged over the images with a paired bootstrap interval.
# MoRF: higher is better (the score falls faster than when destroying random regions). LeRF
# (least relevant first): a good heatmap leaves the score standing, so its AOPC lies **below**
# random's; Samek et al. 2017 report MoRF only, so the LeRF ranking is shown for reference and
# tests no claim of theirs. The ranking tables give each method's difference to random with its
# interval, and the methods it beats / loses to with a paired interval that excludes 0 (the
# others are tied at this n).

# %%
if net is not None:
    t0, c0 = time.perf_counter(), time.process_time()
    study = perturbation_study(net.model, x, target, maps, orders=("morf", "lerf"), **PK)
    aopc = study.aopc                                            # (order, method, image)
    diff = study.aopc_curve - study.aopc_curve.sel({"method": "random"}, drop=True)
    band = {o: paired_interval_dataset(study.aopc_curve.sel(order=o), "image", over="method",
                                       baseline="random", **BOOT) for o in ("morf", "lerf")}
    rank = {o: ranking_table(aopc.sel(order=o), **BOOT) for o in ("morf", "lerf")}
    sim = {k: between_image_similarity(v) for k, v in maps.items()}     # 1: the same map for every image
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.6), gridspec_kw={"width_ratios": [1, 1, 1.1]})
    for ax, o in zip(axes[:2], ("morf", "lerf")):
        for k, name in enumerate(names):
            b = band[o].sel({"method": name})
            ls = "-" if name.startswith("LRP") else "--"
            ax.plot(b.step, b.estimate, ls, color=f"C{k}", label=name, lw=2 if ls == "-" else 1)
            ax.fill_between(b.step, b.low, b.high, color=f"C{k}", alpha=0.12)
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xlabel("perturbation steps L")
        ax.set_ylabel("AOPC − AOPC(random)")
        ax.set_title(f"{o.upper()} (95 % bands, n = {n_img})")
    axes[0].legend(ncol=2)
    ax = axes[2]
    yy = np.arange(len(names))
    for j, (o, c) in enumerate((("morf", "C3"), ("lerf", "C0"))):
        r = rank[o].reindex(names)
        ax.errorbar(r.estimate, yy + 0.15 * (1 - 2 * j), xerr=[r.estimate - r.low, r.high - r.estimate],
                    fmt="o", color=c, capsize=2, label=f"{o.upper()} (n = {n_img})")
    ax.set_yticks(yy, names)
    ax.axvline(0, color="k", lw=0.8)
    ax.set_xlabel(f"AOPC − random at L = {L}")
    ax.legend()
    plt.tight_layout()
    plt.show()
    for o in ("morf", "lerf"):
        display(Markdown(f"**{o.upper()}**: AOPC − random at L = {L}, mean over **n = {n_img}** images, "
                         f"paired 95 % bootstrap interval (higher is better for MoRF, lower for LeRF):"))
        display(fmt_frame(rank[o]))
    lr = rank["lerf"]
    display(Markdown(
        f"LeRF, resolved at n = {n_img}: below random (the least relevant regions matter less than random "
        f"ones, as they should): {', '.join(lr.index[lr.high < 0]) or 'none'}; above random (they matter more): "
        f"{', '.join(lr.index[lr.low > 0]) or 'none'}; not distinguishable from random: "
        f"{', '.join(lr.index[(lr.low <= 0) & (lr.high >= 0)]) or 'none'}."))
    display(Markdown("Heatmaps' correlation between images (1: the same map for every image): " +
                     ", ".join(f"{k} {v:.2f}" for k, v in sim.items()) + "."))
    took("Fig. 4", t0, c0)

# %% [markdown]
# The claims of Samek et al. 2017, Sec. IV-B tested on these images (MoRF; each row a paired
# interval over the images):

# %%
PAPER_VS_RANDOM = {"LRP a2b1": "above random (LRP: largest AOPC)", "LRP eps=0.01": "above random",
                   "LRP eps=100": "above random (LRP: largest AOPC)",
                   "sensitivity l2": "above random on MIT Places, below on SUN397",
                   "sensitivity linf": "above random on MIT Places, below on SUN397",
                   "deconvnet": "significantly above random"}
PAIRS = [("LRP a2b1", "sensitivity l2", "LRP has the largest AOPC on all three data sets"),
         ("LRP a2b1", "deconvnet", "LRP has the largest AOPC; deconvnet the closest competitor"),
         ("LRP eps=100", "sensitivity l2", "LRP has the largest AOPC on all three data sets"),
         ("LRP eps=100", "deconvnet", "LRP has the largest AOPC; deconvnet the closest competitor"),
         ("LRP eps=100", "LRP eps=0.01", "ε = 100 performed much better than ε = 0.01 (Appendix)"),
         ("LRP eps=100", "LRP a2b1", "ε-LRP performs slightly better than α,β-LRP"),
         ("deconvnet", "sensitivity l2", "deconvnet outperforms sensitivity at 9 × 9 (Fig. 4, Appendix)")]
ivs = {}
if net is None:
    F.not_tested(f"Heatmap methods above the random order (MoRF AOPC, {FIG4})", "a torch model")
else:
    a_m = aopc.sel(order="morf")
    for name, paper in PAPER_VS_RANDOM.items():
        claim = f"{name}: MoRF AOPC above random ({FIG4})"
        if name not in maps:
            F.not_tested(claim, f"{net.name} is a TorchScript module that {name} cannot run on", paper=paper)
            continue
        iv = ivs[name, "random"] = paired_interval(a_m.sel({"method": name}), a_m.sel({"method": "random"}), **BOOT)
        lerf = float(rank["lerf"].estimate.get(name, np.nan))
        F.add(claim, iv, direction=">", paper=paper,
              reason=(f"{name}'s order lowers f more slowly than random regions on these {n_img} images "
                      f"(LeRF − random {lerf:+.2f}); its maps correlate r = {sim[name]:.2f} between images"))
    for a, b, paper in PAIRS:
        claim = f"{a} above {b}: MoRF AOPC ({FIG4}, Sec. IV-B)"
        if a not in maps or b not in maps:
            F.not_tested(claim, f"{net.name} cannot run {a if a not in maps else b}", paper=paper)
            continue
        iv = ivs[a, b] = paired_interval(a_m.sel({"method": a}), a_m.sel({"method": b}), **BOOT)
        wins = int((a_m.sel({"method": b}) > a_m.sel({"method": a})).sum())
        F.add(claim, iv, direction=">", paper=paper,
              reason=(f"{b}'s order lowers f faster on {wins} of {n_img} images; {a}'s maps are much alike across "
                      f"images (correlation between images r = {sim[a]:.2f}, {b}: {sim[b]:.2f}), so its order is "
                      f"close to one fixed pattern (what Samek et al. 2017, Fig. 3c, say of deconvnet)"
                      if sim[a] > sim[b] + 0.1 else
                      f"{b}'s order lowers f faster on {wins} of {n_img} images"))
    display(pd.DataFrame({f"{a} − {b}": {"estimate": iv.estimate, "low": iv.low, "high": iv.high,
                                          "n": iv.n} for (a, b), iv in ivs.items()}).T.round(3))

# %% [markdown]
# ## FV-LRP on the Fisher-vector model (small subset)
#
# The FV model sees whole images in [0, 1] and encodes each perturbed image anew (dense SIFT → FV,
# ~0.2 s per image), so only `aopc_fv_images` images of one size (the most common one among the
# analysed images) are evaluated, with one repeat and the same share of the image and step
# sampling as above; regions are the paper's 9 px scaled to the image's longer side. The FV
# model explains its own predicted class (Samek et al. 2017's protocol; no true-positive filter).

# %%
fv_res = None
if fv is None:
    viz.skip_section("FV-LRP on the Fisher-vector model",
                     "a Fisher-vector model (a `model` / `models` entry with `source: fisher`, or the "
                     "FV model lrpkit fits beside its scene CNN on its scenes)")
else:
    t0, c0 = time.perf_counter(), time.process_time()
    sizes = {int(i): tuple(data.target(int(i))["size"]) for i in order[:max(50, 10 * ev.aopc_fv_images)]}
    fv_size = Counter(sizes.values()).most_common(1)[0][0]
    fv_rows = [i for i, s in sizes.items() if s == fv_size][:ev.aopc_fv_images]
    fv_ids = [data.ids[i] for i in fv_rows]
    xf = torch.stack([torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0).permute(2, 0, 1)
                      for im in data.images(fv_rows)])
    tf = torch.as_tensor(np.asarray(fv.model.decision_function(xf)).argmax(1))
    fv_maps = {"FV-LRP": explain_batched(fv.model, xf, tf, "fv_lrp")}
    mf = scaled_region_size(9, max(fv_size))
    Lf, sf = study_steps(xf.shape[-2], xf.shape[-1], mf, ev.aopc_fv_steps, ev.aopc_step_samples)
    fv_res = perturbation_study(fv.model, xf, tf, fv_maps, orders=("morf",), region_size=mf, steps=Lf,
                                stride=sf, repeats=1, bounds=(0.0, 1.0), seed=cfg.seed)
    fa = fv_res.aopc.sel(order="morf")
    fv_iv = paired_interval(fa.sel({"method": "FV-LRP"}), fa.sel({"method": "random"}), **BOOT)
    display(Markdown(f"**{fv.name}**: n = {len(fv_rows)} image(s) of {fv_size[0]}×{fv_size[1]} px, "
                     f"{mf}×{mf} regions, L = {Lf} · FV-LRP AOPC − random: **{fv_iv.format()}** "
                     f"(paired 95 % interval, n = {fv_iv.n})"))
    took("FV", t0, c0)

# %% [markdown]
# ## Fig. 8 · Region sizes
#
# The paper's 1, 3, 5, 9, 19 px regions at 227 px, scaled to the model's input (sizes that coincide
# after scaling are merged), relative to the sensitivity-ℓ2 baseline as in the paper's appendix (no
# random baseline there), for LRP α2β1, LRP-ε (1, 100) and deconvnet where the model allows them,
# MoRF, on the first `aopc_scale_images` of the images above. Each size perturbs the same share of
# the image as Fig. 4 (Samek et al. 2017 do not say whether their appendix kept 100 steps); the
# size of Fig. 4 reuses its numbers.

# %%
scale = None
if net is not None:
    t0, c0 = time.perf_counter(), time.process_time()
    sizes_m = sorted({scaled_region_size(s, crop) for s in ev.aopc_region_sizes})
    subset = [k for k in ("sensitivity l2", "LRP a2b1", "LRP eps=1", "LRP eps=100", "deconvnet") if k in maps]
    n_s = min(ev.aopc_scale_images, n_img)
    per_size = []
    for s in sizes_m:
        Ls, ss = study_steps(crop, crop, s, ev.aopc_scale_steps, ev.aopc_step_samples)
        if s == m and ev.aopc_scale_steps is None:          # the Fig. 4 set-up: reuse it
            per_size.append(aopc.sel({"order": "morf", "method": subset}).isel(image=slice(0, n_s)))
            continue
        r = perturbation_study(net.model, x[:n_s], target[:n_s], {k: maps[k][:n_s] for k in subset},
                               orders=("morf",), random_baseline=False,
                               **{**PK, "region_size": s, "steps": Ls, "stride": ss})
        per_size.append(r.aopc.sel(order="morf", drop=True))
    scale = xr.concat([p.drop_vars("order", errors="ignore") for p in per_size], dim="region_size")
    scale = scale.assign_coords(region_size=sizes_m)
    if len(subset) > 1:
        scale_ci = paired_interval_dataset(scale, "image", over="method", baseline="sensitivity l2", **BOOT)
        fig, ax = plt.subplots(figsize=(5.5, 3.2))
        for k, name in enumerate(subset[1:]):
            c = scale_ci.sel({"method": name})
            ax.errorbar(np.array(sizes_m) * (1 + 0.03 * k), c.estimate, yerr=[c.estimate - c.low, c.high - c.estimate],
                        fmt="o-", capsize=2, label=name)
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xscale("log")
        ax.set_xticks(sizes_m, [str(s) for s in sizes_m])
        ax.set_xlabel(f"region size m (px at {crop} px)")
        ax.set_ylabel("AOPC − AOPC(sensitivity ℓ2)")
        ax.set_title(f"MoRF, n = {n_s} images, 95 % paired intervals")
        ax.legend()
        plt.tight_layout()
        plt.show()
        display(fmt_frame(interval_frame(scale_ci.transpose("region_size", "method"))))
    took("Fig. 8", t0, c0)

# %%
FIG8 = "Samek et al. 2017, Appendix, Fig. 8"
if scale is None or "LRP eps=1" not in maps:
    F.not_tested(f"ε-LRP above sensitivity at every region size ({FIG8})", "LRP on a torch module")
else:
    F.add(f"LRP eps=1 above sensitivity l2 at every region size (smallest difference over m = {sizes_m}; {FIG8})",
          min_difference_interval(scale.sel({"method": "LRP eps=1"}), scale.sel({"method": "sensitivity l2"}), **BOOT),
          direction=">", paper="ε-LRP best in all cases")
    F.add(f"LRP eps=1 above LRP eps=100 at every region size ({FIG8})",
          min_difference_interval(scale.sel({"method": "LRP eps=1"}), scale.sel({"method": "LRP eps=100"}), **BOOT),
          direction=">", paper="ε = 1 outperforms larger ε")
    if "deconvnet" in maps and len(sizes_m) > 1:
        F.add(f"deconvnet below sensitivity at the smallest regions ({sizes_m[0]} px; {FIG8})",
              paired_interval(scale.sel({"method": "deconvnet", "region_size": sizes_m[0]}),
                              scale.sel({"method": "sensitivity l2", "region_size": sizes_m[0]}), **BOOT),
              direction="<", paper="deconvnet beats sensitivity only for large regions")
        F.add(f"deconvnet above sensitivity at the largest regions ({sizes_m[-1]} px; {FIG8})",
              paired_interval(scale.sel({"method": "deconvnet", "region_size": sizes_m[-1]}),
                              scale.sel({"method": "sensitivity l2", "region_size": sizes_m[-1]}), **BOOT),
              direction=">", paper="deconvnet beats sensitivity for 19 × 19 regions",
              reason=("deconvnet − sensitivity at m = " + ", ".join(
                  f"{s} px {float(scale_ci.sel({'method': 'deconvnet', 'region_size': s}).estimate):+.2f}"
                  for s in sizes_m) + f": deconvnet trails at every size; the paper's 19 px regions are "
                  f"{sizes_m[-1]} px at this {crop} px input"))

# %% [markdown]
# ## Fig. 5 · Heatmap complexity
#
# Each heatmap as an 8-bit grey image (0 relevance = grey, scaled by its largest |R|): PNG and JPEG
# (quality 90) file size and Shannon entropy. Lower = sparser, less noisy heatmaps. Samek et al.
# 2017 find the LRP heatmaps smaller than sensitivity's and deconvnet's for almost all images
# and of lower entropy; here paired over the same images.

# %%
cx = None
if net is not None:
    cx = complexity(maps)
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    for ax, v in zip(axes, ("png_bytes", "jpeg_bytes", "entropy")):
        ax.boxplot([cx[v].sel({"method": n}).values for n in names])
        ax.set_xticks(range(1, len(names) + 1), names, rotation=60, ha="right")
        ax.set_title(f"{v} (n = {n_img})")
    plt.tight_layout()
    plt.show()
    cx_ci = {v: interval_dataset(cx[v].astype(float), "image", **BOOT) for v in ("png_bytes", "entropy")}
    display(pd.concat({v: fmt_frame(interval_frame(c), 1) for v, c in cx_ci.items()}, axis=1))
FIG5 = "Samek et al. 2017, Fig. 5"
for lrp_name in ("LRP a2b1",):
    for other in ("sensitivity l2", "deconvnet"):
        for v, what in (("png_bytes", "PNG file size"), ("entropy", "entropy")):
            claim = f"{lrp_name} heatmaps less complex than {other}: {what} ({FIG5})"
            if cx is None or lrp_name not in maps or other not in maps:
                F.not_tested(claim, "LRP and the baseline on a torch module")
                continue
            d = cx[v].sel({"method": lrp_name}).astype(float) - cx[v].sel({"method": other}).astype(float)
            F.add(claim, paired_interval(cx[v].sel({"method": lrp_name}).astype(float),
                                         cx[v].sel({"method": other}).astype(float), **BOOT),
                  direction="<", paper="LRP smaller for almost all images",
                  reason=f"{lrp_name} is the larger on {int((d > 0).sum())} of {int(d.size)} images")

# %% [markdown]
# ## Fig. 7 · AOPC along training
#
# The scene CNN's checkpoints (`cnn_epoch*.pt`, kept by `lrpkit train`): mAP on a random subset of
# the test images and the AOPC − random (MoRF) of each checkpoint's LRP α2β1 heatmaps on the first
# `aopc_checkpoint_images` true-positive images above, each explaining and scored on the same
# class (present in the image, true positive for the final model; an early checkpoint may score it
# negative). Samek et al. 2017 (Sec. IV-D, CIFAR-10) find that AOPC follows the network's
# performance during training.

# %%
ck = None
ckpts = []
if net is not None and net.source == "scene_cnn" and net.path is not None and "LRP a2b1" in maps:
    ckpts = [e for e in cfg.cnn.checkpoints if (net.path.parent / checkpoint_name(e)).is_file()]
FIG7 = "Samek et al. 2017, Sec. IV-D, Fig. 7"
if len(ckpts) < 2:
    viz.skip_section("Fig. 7 · AOPC along training",
                     "training checkpoints of the analysed model (the `cnn_epoch*.pt` files lrpkit keeps "
                     "beside the scene CNN it trains)")
    F.not_tested(f"AOPC grows with the network's performance during training ({FIG7})",
                 "training checkpoints of the analysed model")
else:
    t0, c0 = time.perf_counter(), time.process_time()
    map_rows = order[:ev.aopc_checkpoint_map_images] if ev.aopc_checkpoint_map_images else order
    map_images = data.images(map_rows)
    n_ck = min(ev.aopc_checkpoint_images, n_img)
    ck_aopc, ck_map = [], []
    for e in ckpts:
        model_e = sources.load_model({"source": "scene_cnn", "weights": str(net.path.parent / checkpoint_name(e))},
                                     cfg, classes=data.classes)
        sc = image_scores(model_e, map_images, classes=list(data.classes))
        ck_map.append(np.nanmean(per_class_ap(data.labels[map_rows], sc, data.ignore[map_rows])))
        xe, te = model_e.inputs(data.images(rows[:n_ck])), target[:n_ck]
        he = {"LRP a2b1": explain_batched(model_e.model, xe, te, "lrp", composite="alpha2_beta1")}
        Lc, sc_ = study_steps(crop, crop, m, ev.aopc_checkpoint_steps, ev.aopc_step_samples)
        r = perturbation_study(model_e.model, xe, te, he, orders=("morf",),
                               **{**PK, "bounds": model_e.bounds, "steps": Lc, "stride": sc_})
        a = r.aopc.sel(order="morf")
        ck_aopc.append((a.sel({"method": "LRP a2b1"}) - a.sel({"method": "random"})).values)
    ck_aopc = np.array(ck_aopc)                                 # (epoch, image)
    ck = xr.Dataset({"checkpoint_mAP": ("epoch", np.array(ck_map)),
                     "checkpoint_aopc_minus_random_image": (("epoch", "checkpoint_image"), ck_aopc)},
                    coords={"epoch": ckpts, "checkpoint_image": image_ids[:n_ck]})
    ck_ci = interval_dataset(ck.checkpoint_aopc_minus_random_image, "checkpoint_image", **BOOT)
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    ax.errorbar(ckpts, ck_ci.estimate, yerr=[ck_ci.estimate - ck_ci.low, ck_ci.high - ck_ci.estimate],
                fmt="o-", color="C3", capsize=2, label=f"AOPC − random (LRP α2β1, n = {n_ck})")
    ax.axhline(0, color="C3", lw=0.5)
    ax.set_xlabel("epoch")
    ax.set_ylabel("AOPC − random", color="C3")
    ax2 = ax.twinx()
    ax2.plot(ckpts, ck_map, "s--", color="C0", label=f"mAP ({len(map_rows)} images)")
    ax2.set_ylabel("mAP", color="C0")
    fig.legend(loc="lower right", fontsize=7)
    plt.tight_layout()
    plt.show()
    display(fmt_frame(interval_frame(ck_ci)).assign(mAP=np.round(ck_map, 3)))

    def rho_stat(idx):
        return round(float(spearmanr(ck_map, ck_aopc[:, idx].mean(1)).statistic), 9)

    rho_ck = resample_interval(rho_stat, n_ck, **BOOT)
    F.add(f"AOPC − random rises with mAP across the {len(ckpts)} checkpoints: Spearman ρ ({FIG7})", rho_ck,
          direction=">", paper="AOPC and performance curves correlate")
    F.add(f"AOPC − random of the final checkpoint above the first's (epoch {ckpts[-1]} − epoch {ckpts[0]}; {FIG7})",
          paired_interval(ck_aopc[-1], ck_aopc[0], **BOOT), direction=">",
          paper="better-trained networks give better heatmaps")
    took("Fig. 7", t0, c0)

# %% [markdown]
# ## Deletion and insertion (RISE)
#
# Pixels deleted (set to 0 of the input space) or inserted into a blurred copy in each heatmap's
# order, in `deletion_steps` equal steps, on the first `deletion_images` images above; the
# target's probability (sigmoid for a multi-label model, softmax for a single-label one) is
# recorded and the area under each curve reported (deletion: lower is better; insertion: higher is
# better), each with a bootstrap interval over the images.

# %%
di = None
if net is not None:
    t0, c0 = time.perf_counter(), time.process_time()
    n_d = min(ev.deletion_images, n_img)
    step_pixels = -(-crop * crop // ev.deletion_steps)
    di = xr.concat([deletion_insertion(net.model, x[:n_d], maps[n][:n_d], target[:n_d], step_pixels=step_pixels,
                                       score=net.prob,
                                       batch_size=ev.perturbation_batch)[["deletion_auc", "insertion_auc"]]
                    for n in names], dim="method").assign_coords(method=names)
    di_rank = {"deletion_auc": ranking_table(di.deletion_auc, baseline=None, higher_is_better=False, **BOOT),
               "insertion_auc": ranking_table(di.insertion_auc, baseline=None, **BOOT)}
    for v, df in di_rank.items():
        display(Markdown(f"**{v}** (n = {n_d} images; {'lower' if v.startswith('del') else 'higher'} is better; "
                         f"'better than': paired interval excludes 0):"))
        display(fmt_frame(df))
    took("deletion/insertion", t0, c0)

# %% [markdown]
# ## Uniform noise vs ROAD imputation: does the ranking change?
#
# Rong et al. (ICML 2022) argue that a replacement whose *shape* is visible (noise, zeros) leaks which
# pixels were removed, so the model may react to the mask rather than to the missing information,
# and that the ranking of attribution methods can change with the replacement. ROAD imputes each
# removed pixel from its neighbours (a sparse linear system per image, solved for all perturbed
# images at once) plus small noise. On the first `aopc_road_images` images, with the same regions,
# steps and repeats, we compare each method's MoRF AOPC − random under both replacements (paired
# intervals; the uniform numbers are those of Fig. 4) and the agreement of the two rankings
# (Spearman ρ over the methods with a bootstrap interval over the images).

# %%
road = None
if net is not None:
    t0, c0 = time.perf_counter(), time.process_time()
    road_methods = [k for k in ("LRP a2b1", "LRP eps=1", "sensitivity l2", "deconvnet", "gradient x input")
                    if k in maps]
    n_r = min(ev.aopc_road_images, n_img)
    Lr, sr = study_steps(crop, crop, m, ev.aopc_road_steps, ev.aopc_step_samples)
    rr = perturbation_study(net.model, x[:n_r], target[:n_r], {k: maps[k][:n_r] for k in road_methods},
                            orders=("morf",), replacement="road", **{**PK, "steps": Lr, "stride": sr})
    ra = rr.aopc.sel(order="morf")
    ua = aopc.sel({"order": "morf", "method": road_methods + ["random"]}).isel(image=slice(0, n_r))
    if Lr != L:                                                   # other steps: a uniform run of its own
        ua = perturbation_study(net.model, x[:n_r], target[:n_r], {k: maps[k][:n_r] for k in road_methods},
                                orders=("morf",), **{**PK, "steps": Lr, "stride": sr}).aopc.sel(order="morf")

    def _minus_random(a):
        return (a - a.sel({"method": "random"}, drop=True)).drop_sel({"method": "random"}).drop_vars(
            "order", errors="ignore")

    road = xr.concat([_minus_random(ua), _minus_random(ra)],
                     dim="replacement").assign_coords(replacement=["uniform", "road"])
    road_ci = interval_dataset(road, "image", **BOOT)
    road_shift = paired_interval_dataset(road, "image", over="replacement", baseline="uniform", **BOOT)
    table = pd.concat({"uniform": fmt_frame(interval_frame(road_ci.sel(replacement="uniform")))[
                          ["estimate [95 % interval]"]],
                       "ROAD": fmt_frame(interval_frame(road_ci.sel(replacement="road")))[["estimate [95 % interval]"]],
                       "ROAD − uniform": fmt_frame(interval_frame(road_shift.sel(replacement="road")))},
                      axis=1)
    display(Markdown(f"MoRF AOPC − random, n = {n_r} images:"))
    display(table)
    rv = road.transpose("replacement", "method", "image").values

    def rank_rho(idx):
        mu = rv[:, :, idx].mean(-1)
        return round(float(spearmanr(mu[0], mu[1]).statistic), 9)

    rho_road = resample_interval(rank_rho, n_r, **BOOT) if len(road_methods) > 2 else None
    if rho_road is not None:
        display(Markdown(f"Spearman ρ between the uniform and the ROAD ranking of {len(road_methods)} methods: "
                         f"**{rho_road.format(2)}** (95 % bootstrap interval over the n = {n_r} images)."))
        F.add("The method ranking depends on the replacement: Spearman ρ(uniform, ROAD) below 1 "
              "(Rong et al. 2022)", rho_road, direction="<", reference=1.0, paper="rankings change with the "
              "removal strategy")
    took("ROAD", t0, c0)

# %% [markdown]
# ## Findings (generated)
#
# The findings table opens the report (the renderer moves this cell to the top). n is the number
# of images each interval resamples.

# %% tags=["findings"]
F.show()

# %% [markdown]
# ## Results

# %%
out = xr.Dataset(attrs=make_attrs(cfg, **sources.describe(net if net is not None else fv, data),
                                  steps=int(L) if net is not None else 0,
                                  repeats=ev.aopc_repeats))
if net is not None:
    out.attrs.update(region_size=m, n_images=n_img, n_true_positive=n_tp, n_scanned=scanned,
                     step_stride=stride, methods_left_out=left_out,
                     estimator=study.attrs["estimator"])
    img = {"image": image_ids}
    out["target_class"] = xr.DataArray([net.classes[int(t)] for t in target], dims="image", coords=img)
    for o in ("morf", "lerf"):
        out[f"aopc_{o}"] = aopc.sel(order=o, drop=True).assign_coords(img)
        out[f"aopc_minus_random_{o}"] = diff.sel(order=o, drop=True).mean("image")
        ci = paired_interval_dataset(aopc.sel(order=o, drop=True), "image", over="method", **BOOT)
        out = attach_interval(out, f"aopc_minus_random_{o}_ci", ci.rename({"method": "ranked_method"}))
    out["aopc_by_region_size"] = scale.rename({"method": "scale_method", "image": "scale_image"})
    if len(subset) > 1:
        out = attach_interval(out, "aopc_by_region_size_vs_sensitivity_ci",
                              scale_ci.rename({"method": "scale_ci_method"}))
    for v in ("png_bytes", "jpeg_bytes", "entropy"):
        out[f"complexity_{v}"] = cx[v].rename({"method": "heatmap_method"}).assign_coords(img)
    out["deletion_auc"] = di.deletion_auc.rename({"method": "heatmap_method", "image": "deletion_image"})
    out["insertion_auc"] = di.insertion_auc.rename({"method": "heatmap_method", "image": "deletion_image"})
    for v in ("deletion_auc", "insertion_auc"):
        out = attach_interval(out, f"{v}_ci",
                              interval_dataset(di[v], "image", **BOOT).rename({"method": "heatmap_method"}))
    out.attrs["heatmap_similarity_between_images"] = [float(sim[k]) for k in names]
    if road is not None:
        out["road_vs_uniform"] = road.rename({"method": "road_method", "image": "road_image"})
        out = attach_interval(out, "road_vs_uniform_ci", road_ci.rename({"method": "road_method"}))
        if rho_road is not None:
            out.attrs["road_ranking_spearman"] = [rho_road.estimate, rho_road.low, rho_road.high]
if fv_res is not None:
    out.attrs["fv_model"] = fv.name
    out["fv_aopc"] = fv_res.aopc.sel(order="morf", drop=True).rename(
        {"method": "fv_method", "image": "fv_image"}).assign_coords(fv_image=fv_ids)
    out.attrs["fv_aopc_minus_random"] = [fv_iv.estimate, fv_iv.low, fv_iv.high, fv_iv.n]
if ck is not None:
    out = out.merge(ck)
    out = attach_interval(out, "checkpoint_aopc_minus_random", ck_ci)
out = F.attach(out)
if results_path is not None:
    save_dataset(out, results_path)
took("notebook total", t_start, c_start)
out
