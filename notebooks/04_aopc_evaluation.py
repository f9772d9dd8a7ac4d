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
# Paper 002 (Samek et al., "Evaluating the visualization of what a deep neural network has learned",
# IEEE TNNLS 2017) scores a heatmap by **destroying the image where the heatmap points first**: the
# regions are perturbed in the heatmap's order (MoRF, eq. 11; here with uniform noise in m × m regions
# as in the paper) and the **area over the perturbation curve** (AOPC, eq. 12) measures how fast the
# class score falls. A good heatmap makes it fall fast; a random order is the baseline (Fig. 4). The
# paper also compares region sizes (Appendix, Fig. 8), heatmap **complexity** (file size, entropy;
# Fig. 5) and AOPC along training (Fig. 7).
#
# Here on lrpkit's scene CNN (budgets from the config's `evaluation` section, far below the paper's
# 5040 images), with `lrpkit.evaluate.compare_methods` / `region_perturbation` (all steps of all
# repeats of all images batched through the model), plus RISE's deletion/insertion AUC (Petsiuk et
# al. 2018) and ROAD's noisy linear imputation (Rong et al. 2022) as a replacement that leaks less of
# the removed shape.

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
from scipy.stats import spearmanr

import lrpkit
from lrpkit import pipeline, viz
from lrpkit.data import transforms as T
from lrpkit.evaluate import (PAPER_002_METHODS, compare_methods, complexity, deletion_insertion,
                             scaled_region_size)
from lrpkit.evaluate.perturbation import explain_batched
from lrpkit.evaluate.scoring import image_scores, per_class_ap
from lrpkit.explain import resolve_target
from lrpkit.heatmaps import input_geometry
from lrpkit.results import make_attrs, save_dataset

t_start = time.perf_counter()
cfg = lrpkit.load_config(config)
ev = cfg.evaluation
torch.manual_seed(cfg.seed)
cnn = pipeline.load_cnn(cfg)
test = pipeline.load_scenes(cfg, "test")
size, crop = input_geometry(cnn)
rng = np.random.default_rng(cfg.seed)
order = rng.permutation(len(test))
images = [test[int(i)][0] for i in order[:ev.aopc_images]]
x = T.to_tensor_batch(images, size, crop)
target = resolve_target(cnn, x, "pred")            # explained and scored: the predicted class
m = ev.aopc_region_size or scaled_region_size(9, crop)
PK = dict(region_size=m, steps=ev.aopc_steps, repeats=ev.aopc_repeats, replacement="uniform",
          batch_size=ev.perturbation_batch, seed=cfg.seed)
viz.notebook_style({"legend.fontsize": 7})
display(Markdown(
    f"Config `{cfg.source}` · {len(images)} test images, CNN input {crop}×{crop} · regions {m}×{m} "
    f"(the paper's 9×9 at 227 px, scaled) · {ev.aopc_steps} steps "
    f"({100 * ev.aopc_steps * m * m / crop ** 2:.1f} % of the image; paper: 15.7 %) · "
    f"{ev.aopc_repeats} repeats (paper: 10)"))

# %% [markdown]
# ## Heatmaps of every method (computed once, reused below)
#
# The methods of paper 002 Fig. 4 (`lrpkit.evaluate.PAPER_002_METHODS`): LRP α=2, β=1 (eq. 8),
# LRP-ε with ε = 0.01, 1, 100 (eq. 7), sensitivity (eq. 3, ℓ2 and ℓ∞ over colour channels),
# deconvnet, guided backprop and gradient × input.

# %%
t0 = time.perf_counter()
maps = {name: explain_batched(cnn, x, target, spec["method"],
                              **{k: v for k, v in spec.items() if k != "method"})
        for name, spec in PAPER_002_METHODS.items()}
names = list(maps)
fig, axes = plt.subplots(1, len(names) + 1, figsize=(1.6 * (len(names) + 1), 2.0))
axes[0].imshow(T.denormalize(x[0]).permute(1, 2, 0).numpy())
axes[0].set_title(f"class {test.classes[int(target[0])]}")
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
t0 = time.perf_counter()
res = {o: compare_methods(cnn, x, target, heatmaps=maps, order=o, **PK) for o in ("morf", "lerf")}
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
# The FV model sees whole 160 × 120 images in [0, 1] and encodes each perturbed image anew
# (dense SIFT → FV, ~0.2 s per image), so only `aopc_fv_images` images and `aopc_fv_steps` steps are
# evaluated, with one repeat; regions are the paper's 9 px scaled to the 160 px image side.

# %%
t0 = time.perf_counter()
fv = pipeline.load_fisher(cfg)
land = [test[int(i)][0] for i in order if test[int(i)][0].size == (160, 120)][:ev.aopc_fv_images]
xf = torch.stack([torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0).permute(2, 0, 1)
                  for im in land])
fv_res = compare_methods(fv, xf, "pred", {"FV-LRP": {"method": "fv_lrp"}},
                         region_size=scaled_region_size(9, 160), steps=ev.aopc_fv_steps, repeats=1,
                         replacement="uniform", seed=cfg.seed)
display(fv_res.aopc_minus_random.isel(step=-1).to_series().rename("AOPC − random (FV)").to_frame().round(4))
print(f"FV: {time.perf_counter() - t0:.1f} s")

# %% [markdown]
# ## Fig. 8 · Region sizes
#
# The paper's 1, 3, 5, 9, 19 px regions at 227 px, scaled to the CNN input (sizes that coincide after
# scaling are merged), relative to the sensitivity-ℓ2 baseline as in the paper's appendix (no random
# baseline there), for LRP α2β1, LRP-ε (1, 100) and deconvnet.

# %%
t0 = time.perf_counter()
sizes = sorted({scaled_region_size(s, crop) for s in ev.aopc_region_sizes})
subset = ["sensitivity l2", "LRP a2b1", "LRP eps=1", "LRP eps=100", "deconvnet"]
xs, ts = x[:ev.aopc_scale_images], target[:ev.aopc_scale_images]
scale = []
for s in sizes:
    steps = min(ev.aopc_scale_steps, (-(-crop // s)) ** 2)
    r = compare_methods(cnn, xs, ts, heatmaps={k: maps[k][:len(xs)] for k in subset}, random_baseline=False,
                        **{**PK, "region_size": s, "steps": steps})
    scale.append(r.aopc.mean("image") - r.aopc.mean("image").sel({"method": "sensitivity l2"}))
scale = xr.concat(scale, dim="region_size").assign_coords(region_size=sizes)
fig, ax = plt.subplots(figsize=(5, 3))
for name in subset[1:]:
    ax.plot(sizes, scale.sel({"method": name}), "o-", label=name)
ax.axhline(0, color="k", lw=0.8)
ax.set_xlabel(f"region size m (px at {crop} px)")
ax.set_ylabel("AOPC − AOPC(sensitivity ℓ2)")
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
# The CNN's checkpoints (`cnn_epoch*.pt`): test mAP on a random subset and the AOPC − random of its
# LRP α2β1 heatmaps (each checkpoint explains and is scored on its own predicted class). The paper
# finds that better-trained networks give better heatmaps.

# %%
t0 = time.perf_counter()
ckpts = [e for e in cfg.cnn.checkpoints if pipeline.cnn_path(cfg, e).is_file()]
map_rows = order[:ev.aopc_checkpoint_map_images] if ev.aopc_checkpoint_map_images else order
map_images = [test[int(i)][0] for i in map_rows]
xc = x[:ev.aopc_checkpoint_images]
ck_aopc, ck_map = [], []
for e in ckpts:
    model = pipeline.load_cnn(cfg, epoch=e)
    sc = image_scores(model, map_images)
    ck_map.append(np.nanmean(per_class_ap(test.labels[map_rows], sc, test.ignore[map_rows])))
    r = compare_methods(model, xc, "pred", {"LRP a2b1": PAPER_002_METHODS["LRP a2b1"]},
                        **{**PK, "steps": ev.aopc_checkpoint_steps})
    ck_aopc.append(float(r.aopc_minus_random.sel({"method": "LRP a2b1"}).isel(step=-1)))
ck = xr.Dataset({"checkpoint_mAP": ("epoch", np.array(ck_map)),
                 "checkpoint_aopc_minus_random": ("epoch", np.array(ck_aopc))}, coords={"epoch": ckpts})
fig, ax = plt.subplots(figsize=(5, 3))
ax.plot(ckpts, ck_aopc, "o-", color="C3", label="AOPC − random (LRP α2β1)")
ax.set_xlabel("epoch")
ax.set_ylabel("AOPC − random", color="C3")
ax2 = ax.twinx()
ax2.plot(ckpts, ck_map, "s--", color="C0", label="test mAP")
ax2.set_ylabel("mAP", color="C0")
plt.tight_layout()
plt.show()
display(ck.to_dataframe().round(4))
print(f"Fig. 7: {time.perf_counter() - t0:.1f} s")

# %% [markdown]
# ## Deletion and insertion (RISE)
#
# Pixels deleted (set to 0 of the input space) or inserted into a blurred copy in each heatmap's
# order, in `deletion_steps` equal steps; the target's softmax probability is recorded and the area
# under each curve reported (deletion: lower is better; insertion: higher is better).

# %%
t0 = time.perf_counter()
step_pixels = -(-crop * crop // ev.deletion_steps)
di = xr.concat([deletion_insertion(cnn, x, maps[n], target, step_pixels=step_pixels,
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
t0 = time.perf_counter()
road_methods = ["LRP a2b1", "LRP eps=1", "sensitivity l2", "deconvnet", "gradient x input"]
n_r = ev.aopc_road_images
cmp = {}
for repl in ("uniform", "road"):
    r = compare_methods(cnn, x[:n_r], target[:n_r], heatmaps={k: maps[k][:n_r] for k in road_methods},
                        **{**PK, "steps": ev.aopc_road_steps, "replacement": repl})
    cmp[repl] = r.aopc_minus_random.isel(step=-1).drop_sel({"method": "random"})
road = xr.concat(list(cmp.values()), dim="replacement").assign_coords(replacement=list(cmp))
table = road.to_pandas().T
rho = spearmanr(table["uniform"], table["road"]).statistic
table["rank uniform"] = table["uniform"].rank(ascending=False).astype(int)
table["rank ROAD"] = table["road"].rank(ascending=False).astype(int)
display(table.round(4))
display(Markdown(f"Spearman ρ between the two rankings: **{rho:.2f}** "
                 f"({'unchanged' if (table['rank uniform'] == table['rank ROAD']).all() else 'the ranking changes'})."))
print(f"ROAD: {time.perf_counter() - t0:.1f} s")

# %% [markdown]
# ## Results

# %%
ds = xr.Dataset(attrs=make_attrs(cfg, region_size=m, steps=ev.aopc_steps, repeats=ev.aopc_repeats,
                                 n_images=len(images)))
for o in res:
    ds[f"aopc_minus_random_{o}"] = res[o].aopc_minus_random
    ds[f"aopc_{o}"] = res[o].aopc
ds["fv_aopc_minus_random"] = fv_res.aopc_minus_random.rename({"method": "fv_method", "step": "fv_step"})
ds["aopc_by_region_size"] = scale.rename({"method": "scale_method"})
ds = ds.merge(ck)
for v in ("png_bytes", "jpeg_bytes", "entropy"):
    ds[f"complexity_{v}"] = cx[v].rename({"method": "heatmap_method"})
ds["deletion_auc"] = di.deletion_auc.rename({"method": "heatmap_method"})
ds["insertion_auc"] = di.insertion_auc.rename({"method": "heatmap_method"})
ds["road_vs_uniform"] = road.rename({"method": "road_method"})
ds.attrs["road_ranking_spearman"] = float(rho)
if results_path is not None:
    save_dataset(ds, results_path)
print(f"notebook total: {time.perf_counter() - t_start:.1f} s")
ds
