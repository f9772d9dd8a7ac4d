# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
#   lrpkit:
#     expected_seconds: 60
# ---

# %% [markdown]
# # 05 · Prediction Difference Analysis: the sampling original and its fast approximations
#
# **Prediction Difference Analysis** (PDA; Zintgraf, Cohen, Adel & Welling, *Visualizing Deep Neural
# Network Decisions: Prediction Difference Analysis*, ICLR 2017) asks, for every `k x k` window of an
# image, how much the prediction changes when the window is *marginalised out*: the window is
# replaced by samples from a Gaussian conditioned on the surrounding `l x l` outer patch, and the
# change is measured as a *weight of evidence* `log2 odds(c|x) − log2 odds(c|x\window)`. It is slow:
# `S` forward passes per window (Algorithm 1 of Zhou & Kainz, *Efficient Image Evidence Analysis of
# CNN Classification Results*, 2018, an approximation of Zintgraf et al. 2017).
#
# Zhou & Kainz (2018) replace the mean over samples by a **normalised geometric mean**, which can be
# pushed through the network's layers down to the input (eq. 11-15): the image with the window at its
# **conditional mean** (Algorithm 2, one pass per window, `S` times fewer), and, one step further, a
# first-order Taylor expansion: `grad^T (x − x')` per window (Algorithm 3, one forward and one
# backward pass). This notebook reproduces the speed-up (Fig. 12), the heatmaps side by side with
# LRP (Fig. 13-15, 19), the approximation error (Fig. 11), the sampling noise (Fig. 16), the
# invariance study (Fig. 18) and an AOPC comparison (Samek et al. 2017) on the configured model and
# images: lrpkit's scene CNN on its scenes by default, or a user's network (`model:` in the config:
# torchvision, TorchScript, a `module:function`) on a user's data (`dataset:`).
#
# **Which probability.** PDA's `prob` follows the model's output kind (`model.output`; the config's
# `pda.prob` overrides it). A *multi-label* model, such as the scene CNN trained with one hinge loss
# per class (Lapuschkin et al. 2016, App. E), gets `prob="sigmoid"` — `p(c|x) = sigmoid(score_c)`,
# one independent yes/no per class (Zhou & Kainz 2018 treat the sigmoid as a two-class softmax in
# eq. 32, so the derivation holds) — rather than a softmax over the classes, which would let
# evidence for one present class count as evidence against another present one. (With a sigmoid,
# the log-odds are the raw score divided by ln 2, so PDA's weight of evidence is the drop of the
# class score, up to the Laplace correction.) A *single-label* model gets the softmax of the papers.

# %% tags=["parameters"]
config = "default"
results_path = None

# %%
import time
from functools import partial

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
import xarray as xr
from IPython.display import Markdown, display

import lrpkit
from lrpkit import pipeline, sources, viz
from lrpkit.evaluate import region_perturbation
from lrpkit.evaluate.scoring import true_positive_pairs
from lrpkit.explain import get_method
from lrpkit.pda import invariance_correlation, window_positions, window_predictions
from lrpkit.results import make_attrs, save_dataset
from lrpkit.viz import show_heatmap, show_image

cfg = lrpkit.load_config(config)
pc = cfg.pda
torch.manual_seed(cfg.seed)
src = sources.load_sources(cfg)
m, ds = src.torch_model("PDA"), src.dataset
model, crop = m.model, m.crop
try:
    train = pipeline.training_split(cfg)
    train_note = f"{len(train)} images of `{train.name}/{train.split}`"
except (ValueError, FileNotFoundError) as exc:
    train = None
    train_note = f"none ({exc})"
pda_params = pipeline.pda_params(cfg, m, train)
prob, laplace_n = pda_params["prob"], pda_params["laplace_n"]
cols = sources.class_index(m, ds)             # the model's output of each dataset class
lrp_params = lrpkit.lrp.params_from_config(cfg)
with_lrp = get_method("lrp").accepts(model)   # LRP swaps layers: not in compiled TorchScript
viz.notebook_style({"axes.titlesize": 9})
t_start = time.perf_counter()
display(Markdown(f"Config `{cfg.source}` · model **{m.name}** ({m.source}, {m.output}; "
                 f"{crop}x{crop} input) · data **{ds.name}** / `{ds.split}` ({len(ds)} images) · "
                 f"training split: {train_note} · window {pc.window} / outer {pc.outer} · "
                 f"S = {pc.samples} · prob `{prob}` · Laplace N = {laplace_n} · "
                 f"torch threads {torch.get_num_threads()}"))

# %% [markdown]
# ## The patch model
#
# A Gaussian over `outer x outer` patches, one per colour channel as in Zintgraf et al., estimated
# from `pda.patch_images` training images in the model's input space (its own preprocessing). The
# regression of the inner window on the rest of its outer patch and the Cholesky factor of the
# conditional covariance are computed once (they are the same for every interior window); windows
# at the border condition on the patch shrunk to the image. The fitted model is kept under
# `<paths.models>/pda/` with a fingerprint of what it was fitted from (the preprocessing, the
# training images' bytes, the budget and seed; `lrpkit.pipeline.load_patch_model`, which the
# explorer shares) and reloaded when that matches.

# %%
if train is not None:
    pm = pipeline.load_patch_model(cfg, m, train=train)
    fitted_on = f"{pm.n_images} training images of `{train.name}/{train.split}`"
else:
    pm = pipeline.load_patch_model(cfg, m, train=ds)
    fitted_on = f"{pm.n_images} images of the analysed split `{ds.split}` itself"
    display(Markdown(f"**No training split** (`dataset.train_split` = {cfg.dataset.train_split!r}): "
                     f"the patch model is fitted on the analysed images instead, so the "
                     f"marginalised windows are drawn from the very images they explain."))
pm_path = pipeline.patch_model_path(cfg, pm.meta)
display(Markdown(f"Patch model `{pm_path.name}` (in `{pm_path.parent}`): {pm.n_patches} patches of "
                 f"{fitted_on}."))

# %% [markdown]
# ## Heatmaps side by side (Fig. 13-15, 19) and runtimes (Fig. 12)
#
# Test images the model gets right (a present class it scores positive: sigmoid > 0.5 for a
# multi-label model, the arg-max for a single-label one), spread over the classes; a model that
# gets none right is explained at its best-scored present class. Columns: the input, PDA by
# sampling (Algorithm 1, `S` draws per window), by the conditional mean (Algorithm 2), by the mean
# of `S` draws (Fig. 15: separates the sampling noise from the approximation error), the gradient
# form (Algorithm 3) and LRP (the config's composite). Red: evidence for the class, blue: against.
# The window grid has step `pda.heatmap_stride` (the papers use every position; each pixel is
# still covered by at least one window).

# %%
n_pool = min(len(ds), max(4 * pc.heatmap_images, pc.approx_images, 24))
x_pool = m.inputs(ds.images(range(n_pool)))
s_pool = m.scores(x_pool)
y_pool = np.zeros_like(s_pool)                # the dataset's labels in the model's output order
y_pool[:, cols] = ds.labels[:n_pool] * ~ds.ignore[:n_pool]
pairs = true_positive_pairs(y_pool, m.margins(s_pool), pc.heatmap_images, seed=cfg.seed)
hm_idx = [i for i, _ in pairs]
hm_t = torch.tensor([c for _, c in pairs], dtype=torch.long)
x_hm = x_pool[hm_idx]

pda_kw = dict(method="pda", window=pc.window, outer=pc.outer, stride=pc.heatmap_stride,
              patch_model=pm, prob=prob, laplace_n=laplace_n, batch_size=pc.batch_size,
              seed=cfg.seed)
runs = {"sampling": dict(variant="sampling", samples=pc.samples),
        "mean": dict(variant="mean"),
        f"mean of {pc.samples} samples": dict(variant="sample_mean", samples=pc.samples),
        "gradient": dict(variant="gradient")}
# warm-up outside the timings: the patch model's conditional parameters of every border
# configuration (computed once per patch model) and LRP's first call
pm.precompute(crop, crop)
lrpkit.explain(model, x_hm[:1], hm_t[:1], **pda_kw, variant="gradient")
if with_lrp:
    lrpkit.explain(model, x_hm[:1], hm_t[:1], method="lrp", **lrp_params)
# timed with this process's CPU time (time.process_time): the cores are shared with other jobs,
# so wall-clock time would measure them too
heat, runtime = {}, {}
for name, kw in runs.items():
    t0 = time.process_time()
    heat[name] = lrpkit.explain(model, x_hm, hm_t, **pda_kw, **kw).sum(1)
    runtime[name] = (time.process_time() - t0) / len(hm_idx)
if with_lrp:
    t0 = time.process_time()
    heat["LRP"] = lrpkit.explain(model, x_hm, hm_t, method="lrp", **lrp_params).sum(1)
    runtime["LRP"] = (time.process_time() - t0) / len(hm_idx)
else:
    viz.skip_section("LRP next to PDA", "a Python `torch.nn.Module` (LRP swaps its layers; a "
                                        "TorchScript model runs compiled code)")
n_win = len(window_positions(crop, pc.window, pc.heatmap_stride)) ** 2

panels = list(heat)
fig, axes = plt.subplots(len(hm_idx), len(panels) + 1,
                         figsize=(1.7 * (len(panels) + 1), 1.8 * len(hm_idx)), squeeze=False)
for r, i in enumerate(hm_idx):
    show_image(axes[r, 0], m.rgb(x_hm[r]).permute(1, 2, 0).numpy(),
               f"{ds.ids[i]}\n{m.classes[int(hm_t[r])]} ({s_pool[i, int(hm_t[r])]:+.2f})")
    for j, name in enumerate(panels):
        show_heatmap(axes[r, j + 1], heat[name][r], name if r == 0 else None)
fig.suptitle(f"{m.name}: PDA (window {pc.window}, outer {pc.outer}, stride {pc.heatmap_stride})"
             + (" and LRP" if with_lrp else ""), y=1.0)
plt.tight_layout()
plt.show()

# %%
rt = pd.Series(runtime, name="CPU seconds per image")
fig, ax = plt.subplots(figsize=(6, 2.6))
ax.barh(rt.index[::-1], rt.values[::-1], color=["#888", "#c44", "#e88", "#48c", "#c44"][:len(rt)][::-1])
ax.set_xscale("log")
ax.set_xlabel("CPU seconds per image (log scale)")
for y, v in enumerate(rt.values[::-1]):
    ax.text(v, y, f" {v:.3g} s", va="center", fontsize=8)
ax.set_title("Fig. 12: time to explain one image")
plt.tight_layout()
plt.show()
display(Markdown(
    f"{n_win} windows per image; sampling needs {pc.samples} forward passes per window, the mean "
    f"variants one. Measured here: sampling / mean = **{runtime['sampling'] / runtime['mean']:.1f}x** "
    f"(bound: S = {pc.samples}), sampling / gradient = **{runtime['sampling'] / runtime['gradient']:.0f}x** "
    f"(Zhou & Kainz 2018, Fig. 12, report ~10x for Algorithm 2 on AlexNet, VGG16 and GoogLeNet). "
    f"`benchmarks/pda.py` measures the same ratios side by side against a bare forward pass."))

# %% [markdown]
# ## Fig. 11 · How good is the conditional mean? The approximation error
#
# At one fixed window (the image centre) and for each of `pda.approx_images` test images: the
# arithmetic mean of `p(c | x with the window sampled)` over `pda.approx_samples` conditional draws
# (what Algorithm 1 estimates) against `p(c | x with the window at its conditional mean)` (the
# normalised geometric mean of Algorithm 2). The class is each image's highest-scoring one.
# **Scaled down for the CPU budget**: Zhou & Kainz (2018) use 200 images and 500 samples (set
# `pda.approx_images` / `pda.approx_samples` to reproduce it); with fewer samples part of the
# measured difference is sampling noise of the arithmetic mean itself (its standard error is shown).

# %%
row = col = (crop - pc.window) // 2
x_ap = x_pool[:pc.approx_images]
t_ap = torch.as_tensor(s_pool[:pc.approx_images].argmax(1))
wp = window_predictions(model, x_ap, t_ap, pm, row, col, samples=pc.approx_samples, prob=prob,
                        seed=cfg.seed, batch_size=pc.batch_size)
am = wp.p_sample.mean("sample")
err = np.abs(am - wp.p_mean)
sem = wp.p_sample.std("sample") / np.sqrt(pc.approx_samples)
fig, ax = plt.subplots(1, 2, figsize=(8, 2.8))
ax[0].hist(err.values, bins=20, color="#c44")
ax[0].set_xlabel("|arithmetic mean − conditional-mean prediction|")
ax[0].set_ylabel("images")
ax[0].set_title(f"Fig. 11: {len(x_ap)} images, {pc.approx_samples} samples, window at ({row}, {col})")
ax[1].scatter(am, wp.p_mean, s=10)
ax[1].plot([0, 1], [0, 1], "k:", lw=0.8)
ax[1].set_xlabel("mean of sampled p(c|x\\w)")
ax[1].set_ylabel("p(c|x') at conditional mean")
plt.tight_layout()
plt.show()
display(Markdown(f"Approximation error: median **{float(err.median()):.2e}**, mean {float(err.mean()):.2e}, "
                 f"max {float(err.max()):.2e} (standard error of the sampled mean: median "
                 f"{float(sem.median()):.2e}); share of images with error < 0.01: "
                 f"{float((err < 0.01).mean()):.0%}."))

# %% [markdown]
# ## Fig. 16 · Sampling noise: |Δp| against the number of samples
#
# The same fixed window: the absolute difference between the running mean of the first `s`
# samples and the conditional-mean prediction, for a few images and averaged over all. With the
# paper's `S = 10` the sampled estimate still fluctuates; this is the noise that makes Algorithm 1's
# heatmaps grainy.

# %%
running = wp.p_sample.cumsum("sample") / (wp.sample + 1)
delta = np.abs(running - wp.p_mean)
fig, ax = plt.subplots(figsize=(6, 2.8))
for i in range(min(5, len(x_ap))):
    ax.plot(wp.sample + 1, delta.isel(image=i), lw=0.8, alpha=0.7)
ax.plot(wp.sample + 1, delta.mean("image"), "k", lw=2, label="mean over images")
ax.axvline(pc.samples, color="grey", ls=":", label=f"S = {pc.samples}")
ax.set_xscale("log")
ax.set_yscale("symlog", linthresh=1e-4)
ax.set_xlabel("samples")
ax.set_ylabel("|Δp(c|x\\w)|")
ax.legend()
ax.set_title("Fig. 16")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Fig. 18 · Invariance: flip, small rotation, crop
#
# Each image is flipped, rotated by `pda.invariance_angle` degrees or centre-cropped to
# `pda.invariance_crop` of its side (and resized back), explained again, and the heatmap is mapped
# back to the original frame; the table gives the Pearson correlation with the original heatmap
# (pixels both cover). Evidence that moves with the object gives high correlations.

# %%
n_inv = min(pc.invariance_images, len(hm_idx))
x_inv, t_inv = x_hm[:n_inv], hm_t[:n_inv]
inv_methods = {"PDA mean": partial(lrpkit.explain, model, target=t_inv, variant="mean", **pda_kw),
               "PDA gradient": partial(lrpkit.explain, model, target=t_inv, variant="gradient",
                                       **pda_kw)}
if with_lrp:
    inv_methods["LRP"] = partial(lrpkit.explain, model, target=t_inv, method="lrp", **lrp_params)
inv = xr.concat([invariance_correlation(fn, x_inv, angle=pc.invariance_angle, crop=pc.invariance_crop)
                 for fn in inv_methods.values()], dim=pd.Index(list(inv_methods), name="inv_method"))
inv = inv.rename(image="inv_image")
display(inv.mean("inv_image").to_pandas().style.format("{:.2f}")
        .set_caption(f"Heatmap correlation with the original ({n_inv} images)"))

# %% [markdown]
# ## AOPC of the PDA variants next to LRP
#
# Region perturbation (Samek et al. 2017, eq. 11-12; `lrpkit.evaluate.region_perturbation`): the
# `m x m` regions of the heatmap images are replaced by uniform noise, most relevant first; AOPC is
# the mean drop of the class score (higher = the heatmap found what the model uses). A random order
# is the baseline. Budgets: `pda.aopc_steps` / `pda.aopc_repeats` (Samek et al. 2017: 100 steps,
# 10 repeats).

# %%
rp_kw = dict(region_size=pc.aopc_region_size, steps=pc.aopc_steps, repeats=pc.aopc_repeats,
             bounds=m.bounds, seed=cfg.seed)       # uniform noise over the model's pixel range
aopc = {name: float(region_perturbation(model, x_hm, h, hm_t, **rp_kw).aopc.mean())
        for name, h in heat.items()}
aopc["random"] = float(region_perturbation(model, x_hm, None, hm_t, order="random", **rp_kw).aopc.mean())
aopc = pd.Series(aopc, name="AOPC")
display(aopc.to_frame().T.style.format("{:.3f}").set_caption(
    f"AOPC (MoRF, {pc.aopc_steps} steps of {pc.aopc_region_size}x{pc.aopc_region_size} regions, "
    f"{len(hm_idx)} images)"))

# %% [markdown]
# ## Results

# %%
elapsed = time.perf_counter() - t_start
methods = list(heat)
hm_ids = [ds.ids[i] for i in hm_idx]
out = xr.Dataset(
    {"heatmap": (("method", "image", "y", "x"), np.stack([heat[k].numpy() for k in methods])),
     "runtime": ("method", [runtime[k] for k in methods]),
     "aopc": ("aopc_method", aopc.values),
     "p_x": ("approx_image", wp.p_x.values), "p_mean": ("approx_image", wp.p_mean.values),
     "p_sample": (("approx_image", "sample"), wp.p_sample.values),
     "approx_error": ("approx_image", err.values),
     "delta_p": (("approx_image", "sample"), delta.values),
     "invariance": inv},
    coords={"method": methods, "image": np.arange(len(hm_idx)), "aopc_method": list(aopc.index),
            "image_id": ("image", hm_ids), "target": ("image", hm_t.numpy()),
            "target_class": ("image", [m.classes[int(c)] for c in hm_t]),
            "test_index": ("image", np.asarray(hm_idx)),
            "approx_image": np.arange(len(x_ap)), "approx_image_id": ("approx_image", ds.ids[:len(x_ap)]),
            "approx_class": ("approx_image", [m.classes[int(c)] for c in t_ap]),
            "inv_image_id": ("inv_image", hm_ids[:n_inv]), "sample": np.arange(pc.approx_samples)})
out.attrs.update(make_attrs(cfg, notebook="05_pda_speedup", **sources.describe(m, ds),
                            window=pc.window, outer=pc.outer, samples=pc.samples, prob=prob,
                            stride=pc.heatmap_stride, laplace_n=laplace_n, windows_per_image=n_win,
                            fixed_window=[row, col], patch_model=str(pm_path),
                            patch_model_images=fitted_on, runtime_seconds=elapsed,
                            reference="Zintgraf et al. 2017 (ICLR); Zhou & Kainz 2018 "
                                      "(Alg. 1-3, Fig. 11, 12, 16, 18)"))
if results_path:
    save_dataset(out, results_path)
display(Markdown(f"Notebook ran in {elapsed:.0f} s."))
out
