# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
#   lrpkit:
#     expected_seconds: 140
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
# LRP (Fig. 13-15, 19), the approximation error (Fig. 11), the sampling noise (Fig. 15-16), the
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
from lrpkit.evaluate.context import box_mask
from lrpkit.evaluate.findings import Findings
from lrpkit.evaluate.intervals import interval_frame, paired_interval
from lrpkit.evaluate.scoring import true_positive_pairs
from lrpkit.explain import get_method
from lrpkit.pda import (approximation_error, interval_of, invariance_correlation, versus_few_samples,
                        window_positions)
from lrpkit.pda.speed import per_image_seconds, speedup_interval
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
F = Findings("05_pda_speedup")
BOOT = dict(n_boot=2000, seed=cfg.seed)
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
# ## The images
#
# Test images the model gets right (a present class it scores positive, Lapuschkin et al. 2016,
# App. D), spread over the classes, one class per image; a model that gets none right is
# explained at its best-scored present class. The first `pda.aopc_images` are explained by the
# fast variants and LRP, timed image by image and scored by AOPC; the first
# `pda.sampling_images` of them also by sampling; the first `pda.heatmap_images` are shown; the
# first `pda.approx_images` feed the approximation check (Fig. 11).

# %%
n_want = max(pc.aopc_images, pc.approx_images, pc.heatmap_images, pc.sampling_images)
n_pool = min(len(ds), max(6 * n_want, 24))
x_pool = m.inputs(ds.images(range(n_pool)))
s_pool = m.scores(x_pool)
y_pool = np.zeros_like(s_pool)                # the dataset's labels in the model's output order
y_pool[:, cols] = ds.labels[:n_pool] * ~ds.ignore[:n_pool]
pairs, seen = [], set()
for i, c in true_positive_pairs(y_pool, m.margins(s_pool), n_pool * len(cols), seed=cfg.seed):
    if i not in seen:                          # one class per image: the image is the unit
        seen.add(i)
        pairs.append((i, c))
pairs = pairs[:n_want]
idx = np.array([i for i, _ in pairs])
tgt = torch.tensor([c for _, c in pairs], dtype=torch.long)
n_ao, n_smp = min(pc.aopc_images, len(idx)), min(pc.sampling_images, pc.aopc_images, len(idx))
n_hm, n_ap = min(pc.heatmap_images, n_ao), min(pc.approx_images, len(idx))
x_ao, t_ao = x_pool[idx[:n_ao]], tgt[:n_ao]
display(Markdown(f"{len(idx)} images qualified among the first {n_pool} test images: "
                 f"**{n_ao}** explained by the fast variants (AOPC, timings), **{n_smp}** of them "
                 f"also by sampling, **{n_ap}** in the approximation check."))

# %% [markdown]
# ## Heatmaps side by side (Fig. 13-15, 19) and runtimes (Fig. 12)
#
# Columns: the input, PDA by sampling (Algorithm 1, `S` draws per window), by the mean of `S`
# draws (Fig. 15: separates the sampling noise from the approximation error), by the conditional
# mean (Algorithm 2), the gradient form (Algorithm 3) and LRP (the config's composite). Red:
# evidence for the class, blue: against. **Window grids** (the papers use every position, stride
# 1): the gradient form at `pda.gradient_stride`, the conditional mean at `pda.mean_stride`,
# sampling and the mean of `S` draws at `pda.heatmap_stride` (each pixel is still covered by at
# least one window). Every image is timed on its own (CPU time of this process).

# %%
pda_kw = dict(method="pda", window=pc.window, outer=pc.outer, patch_model=pm, prob=prob,
              laplace_n=laplace_n, batch_size=pc.batch_size, seed=cfg.seed, progress=False)
runs = {"sampling": dict(variant="sampling", samples=pc.samples, stride=pc.heatmap_stride),
        f"mean of {pc.samples} samples": dict(variant="sample_mean", samples=pc.samples,
                                              stride=pc.heatmap_stride),
        "mean": dict(variant="mean", stride=pc.mean_stride),
        "gradient": dict(variant="gradient", stride=pc.gradient_stride)}
slow = ("sampling", f"mean of {pc.samples} samples")
n_windows = {k: len(window_positions(crop, pc.window, kw["stride"])) ** 2 for k, kw in runs.items()}
n_windows_1 = len(window_positions(crop, pc.window, 1)) ** 2
# warm-up outside the timings: the patch model's conditional parameters of every border
# configuration (computed once per patch model) and LRP's first call
pm.precompute(crop, crop)
lrpkit.explain(model, x_ao[:1], t_ao[:1], **pda_kw, variant="gradient", stride=pc.gradient_stride)
if with_lrp:
    lrpkit.explain(model, x_ao[:1], t_ao[:1], method="lrp", **lrp_params)
heat, secs = {}, {}
for name, kw in runs.items():
    k = n_smp if name in slow else n_ao
    h, secs[name] = per_image_seconds(partial(lrpkit.explain, model, **pda_kw, **kw), x_ao[:k], t_ao[:k])
    heat[name] = h.sum(1)
if with_lrp:
    h, secs["LRP"] = per_image_seconds(partial(lrpkit.explain, model, method="lrp", **lrp_params),
                                       x_ao, t_ao)
    heat["LRP"] = h.sum(1)
else:
    viz.skip_section("LRP next to PDA", "a Python `torch.nn.Module` (LRP swaps its layers; a "
                                        "TorchScript model runs compiled code)")

panels = list(heat)
fig, axes = plt.subplots(n_hm, len(panels) + 1, figsize=(1.7 * (len(panels) + 1), 1.8 * n_hm),
                         squeeze=False)
for r in range(n_hm):
    i = idx[r]
    show_image(axes[r, 0], m.rgb(x_ao[r]).permute(1, 2, 0).numpy(),
               f"{ds.ids[i]}\n{m.classes[int(t_ao[r])]} ({s_pool[i, int(t_ao[r])]:+.2f})")
    for j, name in enumerate(panels):
        stride = runs[name]["stride"] if name in runs else None
        show_heatmap(axes[r, j + 1], heat[name][r],
                     (name + (f"\nstride {stride}" if stride else "")) if r == 0 else None)
fig.suptitle(f"{m.name}: PDA (window {pc.window}, outer {pc.outer})" + (" and LRP" if with_lrp else ""),
             y=1.0)
plt.tight_layout()
plt.show()

# %% [markdown]
# ### Fig. 12 · Runtimes and speed-ups
#
# Speed-ups are ratios of summed CPU seconds over the same images with a bootstrap interval over
# the images (`lrpkit.pda.speed.speedup_interval`); sampling and the conditional mean run at
# different strides, so they are compared **per window** (the speed-up at equal strides).

# %%
rt = pd.DataFrame({"CPU s / image": {k: v.mean() for k, v in secs.items()},
                   "windows / image": {k: n_windows.get(k, np.nan) for k in secs},
                   "images": {k: len(v) for k, v in secs.items()}})
rt["ms / window"] = 1000 * rt["CPU s / image"] / rt["windows / image"]
fig, ax = plt.subplots(figsize=(6, 2.6))
ax.barh(rt.index[::-1], rt["CPU s / image"].values[::-1], color="#c44")
ax.set_xscale("log")
ax.set_xlabel("CPU seconds per image (log scale)")
for y, (v, nn_) in enumerate(zip(rt["CPU s / image"].values[::-1], rt["images"].values[::-1])):
    ax.text(v, y, f" {v:.3g} s (n={nn_})", va="center", fontsize=8)
ax.set_title("Fig. 12: time to explain one image (stride as in the panels)")
plt.tight_layout()
plt.show()
display(rt.style.format({"CPU s / image": "{:.3g}", "windows / image": "{:.0f}",
                         "ms / window": "{:.3g}"}))

k_s = n_smp
sp_mean = speedup_interval(secs["sampling"], secs["mean"][:k_s], slow_windows=n_windows["sampling"],
                           fast_windows=n_windows["mean"], **BOOT)
mean_at_1 = secs["mean"] * n_windows_1 / n_windows["mean"]     # Algorithm 2 at stride 1 (per window)
grad_at_1 = secs["gradient"] * n_windows_1 / n_windows["gradient"] if pc.gradient_stride != 1 \
    else secs["gradient"]
sp_grad = speedup_interval(mean_at_1, grad_at_1, **BOOT)
speedups = pd.DataFrame({"estimate": [sp_mean.estimate, sp_grad.estimate],
                         "low": [sp_mean.low, sp_grad.low], "high": [sp_mean.high, sp_grad.high],
                         "n": [sp_mean.n, sp_grad.n]},
                        index=["sampling / mean (per window)", "mean / gradient (per image, stride 1)"])
display(speedups.style.format({"estimate": "{:.1f}", "low": "{:.1f}", "high": "{:.1f}"})
        .set_caption("Speed-ups with 95 % bootstrap intervals over images"))
display(Markdown(
    f"Sampling needs {pc.samples} forward passes per window, the conditional mean one: the bound "
    f"of the speed-up is S = {pc.samples}. At stride 1 ({n_windows_1} windows) Algorithm 2 would take "
    f"**{mean_at_1.mean():.1f} CPU s per image** here (measured per window at stride "
    f"{pc.mean_stride}), Algorithm 3 {grad_at_1.mean():.2f} s: the gradient form is what makes "
    f"stride 1 affordable in this budget (`configs/paper.yaml` sets stride 1 for all variants). "
    f"`benchmarks/pda.py` measures the same ratios side by side against a bare forward pass."))
F.add(f"Algorithm 2 (conditional mean) faster than Algorithm 1 (S = {pc.samples}) per window, "
      f"at least half the paper's ~10x (Zhou & Kainz 2018, Fig. 12)", sp_mean, direction=">",
      reference=5.0, paper="~10x (bound: S)",
      reason=f"the speed-up is bounded by S = {pc.samples} passes per window; per-window overheads "
             f"(conditional means, batching) weigh more in this small network")
F.add("Algorithm 3 (gradient form) faster than Algorithm 2 at stride 1 (Zhou & Kainz 2018, "
      "Sec. 3, Fig. 12)", sp_grad, direction=">", reference=1.0,
      paper="one forward + one backward pass instead of one pass per window")

# %% [markdown]
# ## Fig. 11 · How good is the conditional mean? The approximation error over windows
#
# For each of the first `pda.approx_images` images (its class as above), `pda.approx_windows`
# windows drawn at random among those centred **on the object** (the class's boxes; all windows
# when the data has no boxes): the prediction difference of Algorithm 1 with many samples
# (`pda.approx_samples` conditional draws, `d_sample = p(c|x) − mean_s p(c|x_s)`) against
# Algorithm 2's (`d_mean = p(c|x) − p(c|x')`, the window at its conditional mean).
# `lrpkit.pda.approximation_error`: **relative error** `sum |d_sample − d_mean| / sum |d_sample|`
# and the **correlation** of the two across windows, each with a bootstrap interval over images;
# a window "has an effect" when `|d_sample|` exceeds 3 sampling standard errors — with too few
# such windows the check says "not resolved" instead of measuring noise. Zhou & Kainz (2018) use
# 200 images and 500 samples (`configs/paper.yaml`).

# %%
x_ap, t_ap = x_pool[idx[:n_ap]], tgt[:n_ap]
if ds.has_boxes:
    region = np.zeros((n_ap, crop, crop), bool)
    for r, i in enumerate(idx[:n_ap]):
        tg = ds.target(int(i))
        cname = m.classes[int(t_ap[r])]
        b = [bb for bb, nm in zip(tg["boxes"], tg["names"]) if nm == cname]
        region[r] = box_mask((crop, crop), m.input_boxes(b, tg["size"])) if b else True
    where = "windows centred on the object (the class's boxes)"
else:
    region, where = None, "windows anywhere (the data has no boxes)"
t0 = time.process_time()
ap = approximation_error(model, x_ap, t_ap, pm, stride=1, samples=pc.approx_samples, prob=prob,
                         region=region, windows=pc.approx_windows, keep_draws=True,
                         seed=cfg.seed, batch_size=pc.batch_size, n_boot=1000)
few = versus_few_samples(ap, min(pc.samples, pc.approx_samples - 2), n_boot=1000, seed=cfg.seed)
approx_seconds = time.process_time() - t0
rel_iv, cor_iv = interval_of(ap, "relative_error"), interval_of(ap, "correlation")
ex = ap.examined.values
fig, ax = plt.subplots(1, 2, figsize=(8.5, 3))
ax[0].scatter(ap.d_sample.values[ex], ap.d_mean.values[ex], s=6, alpha=0.6,
              c=np.where(ap.effect.values[ex], "#c44", "#999"))
lim = float(np.abs(ap.d_sample.values[ex]).max()) if ex.any() else 1.0
ax[0].plot([-lim, lim], [-lim, lim], "k:", lw=0.8)
ax[0].set_xlabel(f"d_sample ({pc.approx_samples} samples)")
ax[0].set_ylabel("d_mean (conditional mean)")
ax[0].set_title(f"Fig. 11: {int(ap.n_examined)} windows of {n_ap} images\n(red: {int(ap.n_effect)} "
                f"with an effect)")
est = [rel_iv.estimate, float(few.relative_error_few), float(ap.noise_relative_error)]
lo = [rel_iv.low, float(few.relative_error_few_low), np.nan]
hi = [rel_iv.high, float(few.relative_error_few_high), np.nan]
labels = ["Alg. 2 vs many samples", f"Alg. 1, S={few.attrs['samples']}\nvs held-out draws",
          "sampling noise alone"]
ax[1].barh(labels[::-1], est[::-1], color=["#bbb", "#e88", "#c44"],
           xerr=[np.nan_to_num(np.subtract(est, lo))[::-1], np.nan_to_num(np.subtract(hi, est))[::-1]])
ax[1].set_xlabel(f"relative error (95 % interval, n = {n_ap} images)")
plt.tight_layout()
plt.show()
display(Markdown(
    f"{where}: {int(ap.n_examined)} windows examined, {int(ap.n_effect)} with an effect "
    f"({ap.verdict.item()}: {ap.reason.item()}). Relative error **{rel_iv.format()}**, correlation "
    f"**{cor_iv.format()}** (n = {rel_iv.n} images; {approx_seconds:.0f} CPU s). "
    f"Mean signed error `d_sample − d_mean`: {float(ap.error.values[ex].mean()):+.2e} "
    f"(mean |d_sample| {float(np.abs(ap.d_sample.values[ex]).mean()):.2e})."))
bias = float(ap.error.values[ex].mean()) / max(float(np.abs(ap.d_sample.values[ex]).mean()), 1e-300)
why_bias = (f"Algorithm 2's error against held-out draws ({float(few.relative_error_mean):.2f} of the "
            f"effect) exceeds the sampling noise of S = {few.attrs['samples']} "
            f"({float(few.relative_error_few):.2f}): the network is non-linear over the window's "
            f"conditional spread, so the prediction at the mean is not the mean prediction (Jensen "
            f"gap; signed mean error {bias:+.0%} of the effect: the draws lower p(c|x) "
            f"{'more' if bias > 0 else 'less'} than the mean does)")
if ap.verdict.item() != "resolved":
    F.not_tested("Algorithm 2 approximates Algorithm 1: window effects correlate (Zhou & Kainz 2018, "
                 "Fig. 11)", ap.reason.item(), paper="close agreement")
else:
    F.add("Algorithm 2 approximates Algorithm 1 with many samples: correlation of the window effects "
          "above 0.8 (Zhou & Kainz 2018, Fig. 11; threshold chosen here)", cor_iv, direction=">",
          reference=0.8, paper="close agreement (200 images, 500 samples)", reason=why_bias)
    F.add("Algorithm 2's relative error below 0.5 (Zhou & Kainz 2018, Fig. 11; threshold chosen "
          "here)", rel_iv, direction="<", reference=0.5, paper="small error", reason=why_bias)
    F.add(f"Algorithm 2 closer to the many-sample estimate than Algorithm 1 with S = "
          f"{few.attrs['samples']} (relative error difference; Zhou & Kainz 2018, Fig. 15-16)",
          interval_of(few, "difference"), direction="<", paper="less noisy than sampling",
          reason=why_bias)

# %% [markdown]
# ## Fig. 16 · Sampling noise: |Δ| against the number of samples
#
# The windows with an effect: the absolute difference between the running mean of the first `s`
# draws and the estimate from all of them, relative to `|d_sample|`, averaged per image; the
# conditional mean's error on the same scale as a horizontal line. With the paper's `S = 10` the
# sampled estimate still fluctuates: this is the noise that makes Algorithm 1's heatmaps grainy.

# %%
draws = ap.p_draws.values
running = np.cumsum(draws, -1) / np.arange(1, draws.shape[-1] + 1)
eff = ap.effect.values
scale = np.abs(ap.d_sample.values)
rel_run = np.abs(running - draws.mean(-1, keepdims=True)) / np.where(scale > 0, scale, np.nan)[..., None]
curve = np.array([np.nanmean(rel_run[i][eff[i]], 0) if eff[i].any()
                  else np.full(draws.shape[-1], np.nan) for i in range(n_ap)])
fig, ax = plt.subplots(figsize=(6, 2.8))
ss = np.arange(1, draws.shape[-1] + 1)
for i in range(min(5, n_ap)):
    ax.plot(ss, curve[i], lw=0.8, alpha=0.6)
ax.plot(ss, np.nanmean(curve, 0), "k", lw=2, label=f"mean over {int(np.isfinite(curve[:, 0]).sum())} images")
ax.axhline(float(np.nanmean(np.where(eff, np.abs(ap.error.values) / np.where(scale > 0, scale, np.nan),
                                     np.nan))), color="#48c", ls="--", label="conditional mean")
ax.axvline(pc.samples, color="grey", ls=":", label=f"S = {pc.samples}")
ax.set_xscale("log")
ax.set_xlabel("samples")
ax.set_ylabel("|running mean − all draws| / |d_sample|")
ax.legend(fontsize=7)
ax.set_title("Fig. 16 (windows with an effect)")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Fig. 18 · Invariance: flip, small rotation, crop
#
# Each image is flipped, rotated by `pda.invariance_angle` degrees or centre-cropped to
# `pda.invariance_crop` of its side (and resized back), explained again, and the heatmap is mapped
# back to the original frame; the table gives the Pearson correlation with the original heatmap
# (pixels both cover), mean [95 % bootstrap interval] over the images. Evidence that moves with
# the object gives high correlations. (The conditional mean at `pda.heatmap_stride` here: four
# explanations per image.)

# %%
n_inv = min(pc.invariance_images, n_ao)
x_inv, t_inv = x_ao[:n_inv], t_ao[:n_inv]
inv_methods = {"PDA mean": partial(lrpkit.explain, model, target=t_inv, variant="mean",
                                   stride=pc.heatmap_stride, **pda_kw),
               "PDA gradient": partial(lrpkit.explain, model, target=t_inv, variant="gradient",
                                       stride=pc.gradient_stride, **pda_kw)}
if with_lrp:
    inv_methods["LRP"] = partial(lrpkit.explain, model, target=t_inv, method="lrp", **lrp_params)
inv = xr.concat([invariance_correlation(fn, x_inv, angle=pc.invariance_angle, crop=pc.invariance_crop)
                 for fn in inv_methods.values()], dim=pd.Index(list(inv_methods), name="inv_method"))
inv = inv.rename(image="inv_image")
from lrpkit.evaluate.intervals import interval_dataset
inv_ci = interval_dataset(inv, "inv_image", **BOOT)
display(inv_ci.estimate.to_pandas().style.format("{:.2f}").set_caption(
    f"Heatmap correlation with the original (mean over {n_inv} images)"))
display(interval_frame(inv_ci).style.format({"estimate": "{:.2f}", "low": "{:.2f}", "high": "{:.2f}"}))

# %% [markdown]
# ## AOPC of the PDA variants next to LRP (Samek et al. 2017)
#
# Region perturbation (Samek et al. 2017, eq. 11-12; `lrpkit.evaluate.region_perturbation`): the
# `m x m` regions of each image are replaced by uniform noise, most relevant first; AOPC is the
# mean drop of the class score over the steps (higher = the heatmap found what the model uses).
# A random order is the baseline, on the same images. Each row: the paired difference
# AOPC(method) − AOPC(random) over images (repeats averaged within an image first), 95 %
# bootstrap interval and n. Budgets: `pda.aopc_steps` / `pda.aopc_repeats` (Samek et al. 2017:
# 100 steps, 10 repeats of 9 x 9 regions on 227 x 227 images: 16 % of the image).

# %%
rp_kw = dict(region_size=pc.aopc_region_size, steps=pc.aopc_steps, repeats=pc.aopc_repeats,
             bounds=m.bounds, seed=cfg.seed)       # uniform noise over the model's pixel range
share = pc.aopc_steps * pc.aopc_region_size ** 2 / crop ** 2
aopc_img = {name: region_perturbation(model, x_ao[:len(h)], h, t_ao[:len(h)], **rp_kw).aopc.values
            for name, h in heat.items()}
aopc_img["random"] = region_perturbation(model, x_ao, None, t_ao, order="random", **rp_kw).aopc.values
aopc_da = xr.DataArray(np.stack([np.pad(v, (0, n_ao - len(v)), constant_values=np.nan)
                                 for v in aopc_img.values()]),
                       dims=("aopc_method", "aopc_image"), coords={"aopc_method": list(aopc_img)})
vs_random = {}
for name in heat:
    vs_random[name] = paired_interval(aopc_img[name], aopc_img["random"][:len(aopc_img[name])], **BOOT)
aopc_ci = xr.Dataset({k: ("aopc_method", [getattr(iv, k) for iv in vs_random.values()])
                      for k in ("estimate", "low", "high", "n")},
                     coords={"aopc_method": list(vs_random)})
table = pd.DataFrame({"AOPC": [np.nanmean(v) for v in aopc_img.values()]}, index=list(aopc_img))
table["− random [95 % interval]"] = [vs_random[k].format() if k in vs_random else "" for k in table.index]
table["n"] = [len(v) for v in aopc_img.values()]
display(table.style.set_caption(
    f"AOPC (MoRF, {pc.aopc_steps} steps of {pc.aopc_region_size}x{pc.aopc_region_size} regions = "
    f"{share:.0%} of the image, {pc.aopc_repeats} repeats)"))
fig, ax = plt.subplots(figsize=(6, 0.4 * len(vs_random) + 1))
names = list(vs_random)[::-1]
e = np.array([vs_random[k].estimate for k in names])
ax.barh([f"{k} (n={vs_random[k].n})" for k in names], e, color="#c44",
        xerr=[e - [vs_random[k].low for k in names], np.array([vs_random[k].high for k in names]) - e])
ax.axvline(0, color="k", lw=0.8)
ax.set_xlabel("AOPC − random (95 % paired bootstrap interval over images)")
plt.tight_layout()
plt.show()

p_x = torch.sigmoid(torch.as_tensor(s_pool[idx[:n_ao], t_ao.numpy()])).numpy() if prob == "sigmoid" else None
for name in heat:
    if name == "LRP":
        continue
    iv = vs_random[name]
    flat = float(np.mean([float(h.abs().max()) < 1e-3 for h in heat[name]]))
    why = (f"the PDA map of this variant is flat (max |evidence| < 1e-3) on {flat:.0%} of the images"
           + (f"; {np.mean(p_x[:iv.n] > 0.99):.0%} have p(c|x) > 0.99, where the Laplace-corrected "
              f"log-odds saturate and removing a {pc.window}x{pc.window} window changes little"
              if p_x is not None else "")
           + f"; its ordering of {pc.aopc_region_size}x{pc.aopc_region_size} regions is then no better "
             f"than random")
    F.add(f"PDA ({name}) orders regions better than random: AOPC − random > 0 (Zintgraf et al. 2017; "
          f"protocol of Samek et al. 2017, eq. 12)", iv, direction=">", paper="evidence found (above random)",
          reason=why)
if "LRP" in vs_random:
    F.add("LRP orders regions better than random: AOPC − random > 0 (Samek et al. 2017, Fig. 4)",
          vs_random["LRP"], direction=">", paper="above random (largest AOPC)")

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
elapsed = time.perf_counter() - t_start
methods = list(heat)
hm_ids = [ds.ids[i] for i in idx[:n_ao]]


def _pad(h):
    full = np.full((n_ao, crop, crop), np.nan, np.float32)
    full[:len(h)] = h.numpy()
    return full


out = xr.Dataset(
    {"heatmap": (("method", "image", "y", "x"), np.stack([_pad(heat[k]) for k in methods])),
     "runtime": ("method", [float(np.mean(secs[k])) for k in methods]),
     "runtime_image": (("method", "image"), np.stack([np.pad(secs[k], (0, n_ao - len(secs[k])),
                                                             constant_values=np.nan) for k in methods])),
     "stride": ("method", [runs[k]["stride"] if k in runs else 0 for k in methods]),
     "aopc": ("aopc_method", [float(np.nanmean(v)) for v in aopc_img.values()]),
     "aopc_image": aopc_da.rename(aopc_image="image"),
     "approx_d_sample": (("approx_image", "approx_window"), ap.d_sample.values),
     "approx_d_mean": (("approx_image", "approx_window"), ap.d_mean.values),
     "approx_examined": (("approx_image", "approx_window"), ap.examined.values),
     "approx_effect": (("approx_image", "approx_window"), ap.effect.values),
     "approx_error": (("approx_image", "approx_window"), np.abs(ap.error.values)),
     "p_x": ("approx_image", ap.p_x.values),
     "invariance": inv},
    coords={"method": methods, "image": np.arange(n_ao), "aopc_method": list(aopc_img),
            "image_id": ("image", hm_ids), "target": ("image", t_ao.numpy()),
            "target_class": ("image", [m.classes[int(c)] for c in t_ao]),
            "test_index": ("image", idx[:n_ao]),
            "approx_image": np.arange(n_ap), "approx_image_id": ("approx_image", [ds.ids[i] for i in idx[:n_ap]]),
            "approx_class": ("approx_image", [m.classes[int(c)] for c in t_ap]),
            "inv_image_id": ("inv_image", hm_ids[:n_inv])})
for name in ("relative_error", "correlation"):
    iv = interval_of(ap, name)
    out[f"approx_{name}"] = ("bound", [iv.estimate, iv.low, iv.high])
for name in ("relative_error_mean", "relative_error_few", "difference"):
    iv = interval_of(few, name)
    out[f"few_samples_{name}"] = ("bound", [iv.estimate, iv.low, iv.high])
out = out.assign_coords(bound=["estimate", "low", "high"])
out["speedup_sampling_mean"] = ("bound", [sp_mean.estimate, sp_mean.low, sp_mean.high])
out["speedup_mean_gradient"] = ("bound", [sp_grad.estimate, sp_grad.low, sp_grad.high])
from lrpkit.evaluate.intervals import attach_interval
out = attach_interval(out, "aopc_minus_random", aopc_ci.rename(aopc_method="ranked_method"))
out = attach_interval(out, "invariance_ci", inv_ci)
out.attrs.update(make_attrs(cfg, notebook="05_pda_speedup", **sources.describe(m, ds),
                            window=pc.window, outer=pc.outer, samples=pc.samples, prob=prob,
                            stride=pc.heatmap_stride, mean_stride=pc.mean_stride,
                            gradient_stride=pc.gradient_stride, laplace_n=laplace_n,
                            windows_per_image=n_windows["sampling"], approx_where=where,
                            approx_verdict=ap.verdict.item(), approx_n_effect=int(ap.n_effect),
                            approx_n_examined=int(ap.n_examined), patch_model=str(pm_path),
                            patch_model_images=fitted_on, runtime_seconds=elapsed,
                            reference="Zintgraf et al. 2017 (ICLR); Zhou & Kainz 2018 "
                                      "(Alg. 1-3, Fig. 11, 12, 15, 16, 18); Samek et al. 2017"))
out = F.attach(out)
if results_path:
    save_dataset(out, results_path)
display(Markdown(f"Notebook ran in {elapsed:.0f} s."))
out
