# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
#   lrpkit:
#     expected_seconds: 105
# ---

# %% [markdown]
# # 04 · Which heatmap is right? Region perturbation, AOPC, deletion/insertion, complexity
#
# Samek et al. ("Evaluating the visualization of what a deep neural network has learned",
# IEEE TNNLS 2017) score a heatmap by **destroying the image where the heatmap points first**: the
# regions are perturbed in the heatmap's order (MoRF, eq. 11; here with uniform noise in m × m regions
# as in the paper) and the **area over the perturbation curve** (AOPC, eq. 12) measures how fast the
# class score falls. A good heatmap makes it fall fast; a random order is the baseline (Fig. 4). The
# paper also compares region sizes (Appendix, Fig. 8), heatmap **complexity** (file size, entropy;
# Fig. 5) and AOPC along training (Fig. 7).
#
# Here on the configured model and data (`model` / `models`, `dataset`; lrpkit's scene CNN on its
# scenes by default), with budgets from the config's `evaluation` section (far below the paper's
# 5040 images), `lrpkit.evaluate.compare_methods` / `region_perturbation` (all steps of all repeats
# of all images batched through the model), plus RISE's deletion/insertion AUC (Petsiuk et al. 2018)
# and ROAD's noisy linear imputation (Rong et al. 2022) as a replacement that leaks less of the
# removed shape. The Fisher-vector model joins where the config has one; the training-checkpoint
# study needs the checkpoints lrpkit keeps when it trains its scene CNN.

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
from lrpkit.evaluate import (SAMEK2017_METHODS, compare_methods, complexity, deletion_insertion,
                             scaled_region_size)
from lrpkit.evaluate.perturbation import explain_batched
from lrpkit.evaluate.scoring import image_scores, per_class_ap
from lrpkit.explain import get_method, resolve_target
from lrpkit.models.train import checkpoint_name
from lrpkit.results import make_attrs, save_dataset

t_start = time.perf_counter()
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
if net is None:
    display(Markdown(f"Config `{cfg.source}` · data **{data.name}** (`{data.split}`, {len(data)} images) · "
                     f"no torch model configured: only the Fisher-vector section applies."))
else:
    rows = order[:ev.aopc_images]
    images = data.images(rows)
    image_ids = [data.ids[int(i)] for i in rows]
    x = net.inputs(images)
    target = resolve_target(net.model, x, "pred")        # explained and scored: the predicted class
    crop = int(x.shape[-1])
    m = ev.aopc_region_size or scaled_region_size(9, crop)
    PK = dict(region_size=m, steps=ev.aopc_steps, repeats=ev.aopc_repeats, replacement="uniform",
              bounds=net.bounds, batch_size=ev.perturbation_batch, seed=cfg.seed)
    display(Markdown(
        f"Config `{cfg.source}` · model **{net.name}** ({net.source}, {len(net.classes)} outputs) · "
        f"data **{data.name}** (`{data.split}`) · {len(images)} images, input {crop}×{crop} · "
        f"regions {m}×{m} (Samek et al. 2017: 9×9 at 227 px, scaled) · {ev.aopc_steps} steps "
        f"({100 * ev.aopc_steps * m * m / crop ** 2:.1f} % of the image; Samek et al. 2017: 15.7 %) · "
        f"{ev.aopc_repeats} repeats (Samek et al. 2017: 10)"))
    others = [mdl.name for mdl in src.models if mdl.is_torch and mdl is not net]
    if others:
        display(Markdown(f"This report evaluates the config's first torch model; not evaluated here: "
                         f"{', '.join(others)} (a config of its own each)."))

# %% [markdown]
# ## Heatmaps of every method (computed once, reused below)
#
# The methods of Samek et al. 2017, Fig. 4 (`lrpkit.evaluate.SAMEK2017_METHODS`): LRP α=2, β=1 (eq. 8),
# LRP-ε with ε = 0.01, 1, 100 (eq. 7), sensitivity (eq. 3, ℓ2 and ℓ∞ over colour channels),
# deconvnet, guided backprop and gradient × input. A TorchScript model runs compiled code that LRP,
# deconvnet and guided backprop cannot reach: it gets the gradient methods only.

# %%
if net is None:
    viz.skip_section("Heatmaps, Fig. 4, Fig. 8, Fig. 5, deletion / insertion and ROAD",
                     "a torch model (`model.source`: scene_cnn, torchvision, torchscript or python)")
else:
    t0 = time.perf_counter()
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
    print(f"heatmaps: {time.perf_counter() - t0:.1f} s")

# %% [markdown]
# ## Fig. 4 · AOPC relative to the random baseline, MoRF and LeRF
#
# `aopc_minus_random(method, step)`: the AOPC over the first L steps minus that of a random region
# order (same images, same noise model). MoRF: higher is better (the score falls faster than when
# destroying random regions). LeRF (least relevant first): a good heatmap leaves the score standing,
# so its AOPC lies **below** random's.

# %%
if net is not None:
    t0 = time.perf_counter()
    res = {o: compare_methods(net.model, x, target, heatmaps=maps, order=o, **PK) for o in ("morf", "lerf")}
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4), sharex=True)
    for ax, o in zip(axes, ("morf", "lerf")):
        d = res[o].aopc_minus_random
        for name in names:
            ax.plot(d.step, d.sel({"method": name}), label=name, lw=2 if name.startswith("LRP") else 1,
                    ls="-" if name.startswith("LRP") else "--")
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xlabel("perturbation steps L")
        ax.set_ylabel("AOPC − AOPC(random)")
        ax.set_title(o.upper())
    axes[0].legend(ncol=2)
    plt.tight_layout()
    plt.show()
    final = pd.DataFrame({o.upper(): res[o].aopc_minus_random.isel(step=-1).to_series() for o in res})
    final = final.drop(index="random").sort_values("MORF", ascending=False)
    final["MoRF rank"] = np.arange(1, len(final) + 1)
    display(Markdown(f"AOPC − random after {ev.aopc_steps} steps (mean over {len(images)} images):"))
    display(final.round(4))
    print(f"Fig. 4: {time.perf_counter() - t0:.1f} s")

# %% [markdown]
# ## FV-LRP on the Fisher-vector model (small subset)
#
# The FV model sees whole images in [0, 1] and encodes each perturbed image anew (dense SIFT → FV,
# ~0.2 s per image), so only `aopc_fv_images` images of one size (the most common one among the
# analysed images) and `aopc_fv_steps` steps are evaluated, with one repeat; regions are the paper's
# 9 px scaled to the image's longer side.

# %%
fv_res = None
if fv is None:
    viz.skip_section("FV-LRP on the Fisher-vector model",
                     "a Fisher-vector model (a `model` / `models` entry with `source: fisher`, or the "
                     "FV model lrpkit fits beside its scene CNN on its scenes)")
else:
    t0 = time.perf_counter()
    sizes = {int(i): tuple(data.target(int(i))["size"]) for i in order[:max(50, 10 * ev.aopc_fv_images)]}
    fv_size = Counter(sizes.values()).most_common(1)[0][0]
    fv_rows = [i for i, s in sizes.items() if s == fv_size][:ev.aopc_fv_images]
    fv_ids = [data.ids[i] for i in fv_rows]
    xf = torch.stack([torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0).permute(2, 0, 1)
                      for im in data.images(fv_rows)])
    fv_res = compare_methods(fv.model, xf, "pred", {"FV-LRP": {"method": "fv_lrp"}},
                             region_size=scaled_region_size(9, max(fv_size)), steps=ev.aopc_fv_steps,
                             repeats=1, replacement="uniform", seed=cfg.seed)
    display(Markdown(f"**{fv.name}**: {len(fv_rows)} image(s) of {fv_size[0]}×{fv_size[1]} px"))
    display(fv_res.aopc_minus_random.isel(step=-1).to_series().rename("AOPC − random (FV)")
            .to_frame().round(4))
    print(f"FV: {time.perf_counter() - t0:.1f} s")

# %% [markdown]
# ## Fig. 8 · Region sizes
#
# The paper's 1, 3, 5, 9, 19 px regions at 227 px, scaled to the model's input (sizes that coincide
# after scaling are merged), relative to the sensitivity-ℓ2 baseline as in the paper's appendix (no
# random baseline there), for LRP α2β1, LRP-ε (1, 100) and deconvnet where the model allows them.

# %%
if net is not None:
    t0 = time.perf_counter()
    sizes_m = sorted({scaled_region_size(s, crop) for s in ev.aopc_region_sizes})
    subset = [k for k in ("sensitivity l2", "LRP a2b1", "LRP eps=1", "LRP eps=100", "deconvnet") if k in maps]
    xs, ts = x[:ev.aopc_scale_images], target[:ev.aopc_scale_images]
    scale = []
    for s in sizes_m:
        steps = min(ev.aopc_scale_steps, (-(-crop // s)) ** 2)
        r = compare_methods(net.model, xs, ts, heatmaps={k: maps[k][:len(xs)] for k in subset},
                            random_baseline=False, **{**PK, "region_size": s, "steps": steps})
        scale.append(r.aopc.mean("image") - r.aopc.mean("image").sel({"method": "sensitivity l2"}))
    scale = xr.concat(scale, dim="region_size").assign_coords(region_size=sizes_m)
    fig, ax = plt.subplots(figsize=(5, 3))
    for name in subset[1:]:
        ax.plot(sizes_m, scale.sel({"method": name}), "o-", label=name)
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xlabel(f"region size m (px at {crop} px)")
    ax.set_ylabel("AOPC − AOPC(sensitivity ℓ2)")
    if len(subset) > 1:
        ax.legend()
    plt.tight_layout()
    plt.show()
    print(f"Fig. 8: {time.perf_counter() - t0:.1f} s")

# %% [markdown]
# ## Fig. 5 · Heatmap complexity
#
# Each heatmap as an 8-bit grey image (0 relevance = grey, scaled by its largest |R|): PNG and JPEG
# (quality 90) file size and Shannon entropy. Lower = sparser, less noisy heatmaps.

# %%
if net is not None:
    cx = complexity(maps)
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    for ax, v in zip(axes, ("png_bytes", "jpeg_bytes", "entropy")):
        ax.boxplot([cx[v].sel({"method": n}).values for n in names])
        ax.set_xticks(range(1, len(names) + 1), names, rotation=60, ha="right")
        ax.set_title(v)
    plt.tight_layout()
    plt.show()
    display(cx.mean("image").to_dataframe().round(1))

# %% [markdown]
# ## Fig. 7 · AOPC along training
#
# The scene CNN's checkpoints (`cnn_epoch*.pt`, kept by `lrpkit train`): mAP on a random subset of
# the analysed images and the AOPC − random of its LRP α2β1 heatmaps (each checkpoint explains and is
# scored on its own predicted class). The paper finds that better-trained networks give better
# heatmaps.

# %%
ck = None
ckpts = []
if net is not None and net.source == "scene_cnn" and net.path is not None:
    ckpts = [e for e in cfg.cnn.checkpoints if (net.path.parent / checkpoint_name(e)).is_file()]
if not ckpts:
    viz.skip_section("Fig. 7 · AOPC along training",
                     "training checkpoints of the analysed model (the `cnn_epoch*.pt` files lrpkit keeps "
                     "beside the scene CNN it trains)")
else:
    t0 = time.perf_counter()
    map_rows = order[:ev.aopc_checkpoint_map_images] if ev.aopc_checkpoint_map_images else order
    map_images = data.images(map_rows)
    n_ck = ev.aopc_checkpoint_images
    ck_aopc, ck_map = [], []
    for e in ckpts:
        model_e = sources.load_model({"source": "scene_cnn", "weights": str(net.path.parent / checkpoint_name(e))},
                                     cfg, classes=data.classes)
        sc = image_scores(model_e, map_images, classes=list(data.classes))
        ck_map.append(np.nanmean(per_class_ap(data.labels[map_rows], sc, data.ignore[map_rows])))
        r = compare_methods(model_e.model, model_e.inputs(images[:n_ck]), "pred",
                            {"LRP a2b1": SAMEK2017_METHODS["LRP a2b1"]},
                            **{**PK, "bounds": model_e.bounds, "steps": ev.aopc_checkpoint_steps})
        ck_aopc.append(float(r.aopc_minus_random.sel({"method": "LRP a2b1"}).isel(step=-1)))
    ck = xr.Dataset({"checkpoint_mAP": ("epoch", np.array(ck_map)),
                     "checkpoint_aopc_minus_random": ("epoch", np.array(ck_aopc))}, coords={"epoch": ckpts})
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.plot(ckpts, ck_aopc, "o-", color="C3", label="AOPC − random (LRP α2β1)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("AOPC − random", color="C3")
    ax2 = ax.twinx()
    ax2.plot(ckpts, ck_map, "s--", color="C0", label="mAP")
    ax2.set_ylabel("mAP", color="C0")
    plt.tight_layout()
    plt.show()
    display(ck.to_dataframe().round(4))
    print(f"Fig. 7: {time.perf_counter() - t0:.1f} s")

# %% [markdown]
# ## Deletion and insertion (RISE)
#
# Pixels deleted (set to 0 of the input space) or inserted into a blurred copy in each heatmap's
# order, in `deletion_steps` equal steps; the target's probability (sigmoid for a multi-label model,
# softmax for a single-label one) is recorded and the area under each curve reported (deletion:
# lower is better; insertion: higher is better).

# %%
if net is not None:
    t0 = time.perf_counter()
    step_pixels = -(-crop * crop // ev.deletion_steps)
    di = xr.concat([deletion_insertion(net.model, x, maps[n], target, step_pixels=step_pixels, score=net.prob,
                                       batch_size=ev.perturbation_batch)[["deletion_auc", "insertion_auc"]]
                    for n in names], dim="method").assign_coords(method=names)
    display(di.mean("image").to_dataframe().sort_values("deletion_auc").round(4))
    print(f"deletion/insertion: {time.perf_counter() - t0:.1f} s")

# %% [markdown]
# ## Uniform noise vs ROAD imputation: does the ranking change?
#
# Rong et al. (ICML 2022) argue that a replacement whose *shape* is visible (noise, zeros) leaks which
# pixels were removed, so the model may react to the mask rather than to the missing information.
# ROAD imputes each removed pixel from its neighbours (a sparse linear system per image, solved here
# for all images × steps at once) plus small noise. On the same images and steps we compare the AOPC −
# random of both replacements and their method rankings (Spearman's ρ).

# %%
rho = float("nan")
if net is not None:
    t0 = time.perf_counter()
    road_methods = [k for k in ("LRP a2b1", "LRP eps=1", "sensitivity l2", "deconvnet", "gradient x input")
                    if k in maps]
    n_r = ev.aopc_road_images
    cmp = {}
    for repl in ("uniform", "road"):
        r = compare_methods(net.model, x[:n_r], target[:n_r], heatmaps={k: maps[k][:n_r] for k in road_methods},
                            **{**PK, "steps": ev.aopc_road_steps, "replacement": repl})
        cmp[repl] = r.aopc_minus_random.isel(step=-1).drop_sel({"method": "random"})
    road = xr.concat(list(cmp.values()), dim="replacement").assign_coords(replacement=list(cmp))
    table = road.to_pandas().T
    rho = spearmanr(table["uniform"], table["road"]).statistic
    table["rank uniform"] = table["uniform"].rank(ascending=False).astype(int)
    table["rank ROAD"] = table["road"].rank(ascending=False).astype(int)
    display(table.round(4))
    same = (table["rank uniform"] == table["rank ROAD"]).all()
    display(Markdown(f"Spearman ρ between the two rankings: **{rho:.2f}** "
                     f"({'unchanged' if same else 'the ranking changes'})."))
    print(f"ROAD: {time.perf_counter() - t0:.1f} s")

# %% [markdown]
# ## Results

# %%
out = xr.Dataset(attrs=make_attrs(cfg, **sources.describe(net if net is not None else fv, data),
                                  steps=ev.aopc_steps, repeats=ev.aopc_repeats))
if net is not None:
    out.attrs.update(region_size=m, n_images=len(images), methods_left_out=left_out)
    img = {"image": image_ids}
    out["target_class"] = xr.DataArray([net.classes[int(t)] for t in target], dims="image", coords=img)
    for o in res:
        out[f"aopc_minus_random_{o}"] = res[o].aopc_minus_random
        out[f"aopc_{o}"] = res[o].aopc.assign_coords(img)
    out["aopc_by_region_size"] = scale.rename({"method": "scale_method"})
    for v in ("png_bytes", "jpeg_bytes", "entropy"):
        out[f"complexity_{v}"] = cx[v].rename({"method": "heatmap_method"}).assign_coords(img)
    out["deletion_auc"] = di.deletion_auc.rename({"method": "heatmap_method"}).assign_coords(img)
    out["insertion_auc"] = di.insertion_auc.rename({"method": "heatmap_method"}).assign_coords(img)
    out["road_vs_uniform"] = road.rename({"method": "road_method"})
    out.attrs["road_ranking_spearman"] = float(rho)
if fv_res is not None:
    out.attrs["fv_model"] = fv.name
    out["fv_aopc_minus_random"] = fv_res.aopc_minus_random.rename({"method": "fv_method", "step": "fv_step"})
    out["fv_aopc"] = fv_res.aopc.rename({"method": "fv_method", "image": "fv_image"}).assign_coords(fv_image=fv_ids)
if ck is not None:
    out = out.merge(ck)
if results_path is not None:
    save_dataset(out, results_path)
print(f"notebook total: {time.perf_counter() - t_start:.1f} s")
out
