"""AOPC studies over many images: every method, both orders and the random baseline in one pass.

Samek et al. 2017 (IEEE TNNLS, eq. 11-12, Fig. 4) compare heatmap methods by the area over the
MoRF perturbation curve on 5040 images, 100 steps of 9 x 9 regions, 10 repeats.  A comparison that
resolves its differences needs many images; :func:`perturbation_study` makes them affordable:

* **one pass for all curves**: the MoRF and LeRF orders of every method and the random order
  (computed once, shared by both orders) go through the model in the same batches, image chunk by
  image chunk; the unperturbed score ``f(x^(0))`` is computed once per image;
* **common random numbers**: the uniform replacement of an (image, repeat) is drawn once and
  used by every curve, so the methods differ only by their order (paired, as the intervals are);
* **stratified step sampling** (``stride``): eq. 12's AOPC over ``L`` steps is
  ``L / (L + 1)`` times the mean drop ``f(x^(0)) - f(x^(k))`` over ``k = 1..L``; with
  ``stride = s`` the steps are split into blocks of ``s`` and one step ``k_b`` is drawn uniformly
  in each block (the same steps for every curve of an (image, repeat)), so
  :func:`aopc_from_sampled_drops` is an *unbiased* estimate of eq. 12 at ``1 / s`` of the forward
  passes; its extra spread is part of the per-image values the bootstrap over images resamples.
  ``stride = 1`` evaluates every step (eq. 12 exactly, as :func:`lrpkit.evaluate.compare_methods`).

The perturbation path itself is that of :func:`lrpkit.evaluate.removal_ranks` (non-overlapping
``m x m`` grid, region score = summed relevance): a pixel of rank ``< k`` is replaced in
``x^(k)``.  :func:`true_positive_targets` picks the images a comparison should run on (the
explained class present and scored positive), :func:`ranking_table` turns the per-image AOPCs into
a ranking with paired bootstrap intervals (:mod:`lrpkit.evaluate.intervals`).
"""
from __future__ import annotations

import contextlib
import math
from typing import Any
from collections.abc import Mapping, Sequence

import numpy as np
import torch
import xarray as xr

from .._device import model_device
from ..inputs import check_input, eval_mode, resolve_target
from .intervals import paired_interval, paired_interval_dataset
from .perturbation import TargetScorer, check_heatmaps, input_range, removal_ranks
from .road import noisy_linear_impute

__all__ = ["STUDY_REPLACEMENTS", "SAMEK2017_SHARE", "study_steps", "true_positive_targets",
           "sampled_steps", "aopc_from_sampled_drops",
           "perturbation_study", "ranking_table", "min_difference_interval", "between_image_similarity"]

STUDY_REPLACEMENTS = ("uniform", "zero", "mean", "road")
#: Share of the image Samek et al. 2017 perturb: 100 steps of 9 x 9 regions at 227 x 227 px (Sec. IV-A).
SAMEK2017_SHARE = 100 * 9 * 9 / 227 ** 2


def study_steps(height: int, width: int, region_size: int, steps: int | None = None,
                samples: int | None = None, share: float = SAMEK2017_SHARE) -> tuple[int, int]:
    """``(steps, stride)`` of a study on ``height x width`` images with ``m x m`` regions.

    ``steps``: ``L``; ``None``: enough regions to perturb ``share`` of the image (Samek et al.
    2017: 15.7 %), rounded up.  ``samples``: evaluated steps per curve (:func:`sampled_steps`);
    ``None``: every step (``stride = 1``); else ``stride = ceil(L / samples)`` and ``L`` rounded up
    to a multiple of it.  ``L`` never exceeds the number of regions (rounded down to a multiple of
    the stride there).
    """
    for k, v in dict(height=height, width=width, region_size=region_size).items():
        if int(v) < 1:
            raise ValueError(f"{k} must be positive, got {v!r}")
    if steps is not None and int(steps) < 1:
        raise ValueError(f"steps must be positive or None, got {steps!r}")
    if samples is not None and int(samples) < 1:
        raise ValueError(f"samples must be positive or None, got {samples!r}")
    if not 0.0 < share <= 1.0:
        raise ValueError(f"share must be in (0, 1], got {share!r}")
    m = int(region_size)
    n_regions = -(-int(height) // m) * -(-int(width) // m)
    L = int(steps) if steps is not None else math.ceil(share * height * width / (m * m) - 1e-9)
    L = max(1, min(L, n_regions))
    stride = 1 if samples is None else max(1, math.ceil(L / int(samples)))
    L = stride * math.ceil(L / stride)
    if L > n_regions:
        L = stride * (n_regions // stride) or n_regions
        stride = min(stride, L)
    return L, stride


# --------------------------------------------------------------------------------- images

def true_positive_targets(labels: Any, margins: Any, ignore: Any = None) -> np.ndarray:
    """Per image the class to explain, or -1: the present class with the largest positive margin.

    ``labels`` ``(N, C)`` (``> 0.5``: present), ``margins`` ``(N, C)`` scores whose sign is the
    model's decision (a multi-label model's raw scores; :meth:`lrpkit.sources.ModelSource.margins`),
    ``ignore`` ``(N, C)`` pairs left out (VOC's difficult-only objects).  An image qualifies when a
    present class is scored ``> 0`` (a true positive, ``f_c(x) > 0``); images without one get -1,
    so that no AOPC is computed on a score that is already negative (Samek et al. 2017 explain
    the predicted class of well-classified images).
    """
    y, s = np.asarray(labels) > 0.5, np.asarray(margins, dtype=np.float64)
    if y.ndim != 2 or y.shape != s.shape:
        raise ValueError(f"labels and margins must both be (N, C), got {y.shape} and {s.shape}")
    if ignore is not None:
        ig = np.asarray(ignore, dtype=bool)
        if ig.shape != y.shape:
            raise ValueError(f"ignore must be (N, C) like labels, got {ig.shape}")
        y = y & ~ig
    ok = y & (s > 0)
    best = np.where(ok, s, -np.inf).argmax(1)
    return np.where(ok.any(1), best, -1).astype(np.int64)


# --------------------------------------------------------------------------------- estimator

def sampled_steps(n_images: int, repeats: int, steps: int, stride: int = 1, seed: int = 0) -> np.ndarray:
    """The steps ``k`` evaluated, ``(n_images, repeats, steps // stride)`` int: block ``b`` covers
    steps ``b s + 1 .. (b + 1) s`` and one of them is drawn uniformly
    (``numpy.random.default_rng(seed)``); ``stride = 1``: every step ``1..steps``."""
    if stride < 1 or steps < 1 or steps % stride:
        raise ValueError(f"steps ({steps}) must be a positive multiple of stride ({stride})")
    blocks = steps // stride
    base = np.arange(blocks) * stride + 1
    if stride == 1:
        return np.broadcast_to(base, (n_images, repeats, blocks)).copy()
    off = np.random.default_rng(seed).integers(0, stride, (n_images, repeats, blocks))
    return base + off


def aopc_from_sampled_drops(drops: xr.DataArray, steps: int, stride: int) -> xr.Dataset:
    """Eq. 12 of Samek et al. 2017 from drops ``f(x^(0)) - f(x^(k_b))`` at the sampled steps.

    ``drops(..., repeat, block)``: one step drawn per block of ``stride`` steps
    (:func:`sampled_steps`).  ``aopc_curve(..., step)`` at ``L = stride, 2 stride, .., steps``:
    ``L / (L + 1)`` times the mean of the first ``L / stride`` drops, averaged over the repeats
    (unbiased for eq. 12's ``1/(L+1) sum_{k=0..L}``, exact for ``stride = 1``); ``aopc`` its value
    at ``L = steps``.
    """
    blocks = drops.sizes["block"]
    if blocks * stride != steps:
        raise ValueError(f"{blocks} blocks of stride {stride} do not cover steps={steps}")
    L = np.arange(1, blocks + 1) * stride
    cum = drops.mean("repeat").cumsum("block") / xr.DataArray(np.arange(1, blocks + 1), dims="block")
    curve = (cum * xr.DataArray(L / (L + 1.0), dims="block")).rename({"block": "step"})
    curve = curve.assign_coords(step=L)
    return xr.Dataset({"aopc_curve": curve, "aopc": curve.isel(step=-1, drop=True)})


# --------------------------------------------------------------------------------- runner

def _check_maps(heatmaps: Mapping[str, Any], x: torch.Tensor) -> dict[str, torch.Tensor]:
    """``{name: (N, H, W)}``: each map checked as :func:`region_perturbation` checks its own."""
    if "random" in heatmaps:
        raise ValueError("heatmaps: the name 'random' is the baseline's")
    return {str(name): check_heatmaps(h, x, name=f"heatmaps[{name!r}]") for name, h in heatmaps.items()}


def perturbation_study(model: Any, x: Any, target: Any, heatmaps: Mapping[str, Any], *,
                       orders: Sequence[str] = ("morf", "lerf"), region_size: int = 9,
                       steps: int = 100, stride: int = 1, repeats: int = 10,
                       replacement: str = "uniform", random_baseline: bool = True,
                       bounds: Any = None, road_noise: float = 0.01, batch_size: int | None = None,
                       max_batch_mb: float = 32.0, image_chunk: int = 8, seed: int = 0) -> xr.Dataset:
    """Region perturbation (Samek et al. 2017, eq. 11-12) of several heatmaps, both orders and the
    random baseline on the same images, replacements and sampled steps.

    ``heatmaps``: ``{name: (N, [C,] H, W)}``; ``orders``: of ``"morf"`` / ``"lerf"``;
    ``random_baseline``: add the method ``"random"`` (random region orders, one per repeat; the
    same curves under every order).  ``steps`` = ``L``; ``stride``: evaluate one sampled step per
    block of ``stride`` steps (:func:`sampled_steps`; ``steps`` must be a multiple); ``repeats``:
    replacement draws / random orders per image.  ``replacement``: ``"uniform"`` (values uniform in
    ``bounds``, the paper's), ``"zero"``, ``"mean"`` (the image's mean colour) or ``"road"`` (ROAD's
    noisy linear imputation of all removed pixels of ``x^(k)``, Rong et al. 2022,
    :func:`lrpkit.evaluate.noisy_linear_impute` with ``road_noise``).  ``bounds`` default as in
    :func:`region_perturbation` (:func:`lrpkit.evaluate.perturbation.input_range`).

    Returns a Dataset over ``order``, ``method`` (the heatmaps, then ``"random"``), ``image``:
    ``aopc`` (eq. 12 at ``L = steps``), ``aopc_curve`` (at ``L`` = multiples of ``stride``),
    ``drops(order, method, image, repeat, block)`` (``f(x^(0)) - f(x^(k_b))``), ``score0(image)``,
    ``sampled_step(image, repeat, block)``, ``target(image)``, ``perturbed_fraction(step)``
    (mean share of pixels replaced at the random order's ``L``), settings in ``attrs``.
    """
    x = check_input(x)
    if replacement not in STUDY_REPLACEMENTS:
        raise ValueError(f"replacement must be one of {STUDY_REPLACEMENTS}, got {replacement!r}")
    orders = [str(o) for o in orders]
    bad = [o for o in orders if o not in ("morf", "lerf")]
    if bad or not orders or len(set(orders)) != len(orders):
        raise ValueError(f"orders must be distinct entries of ('morf', 'lerf'), got {orders}")
    for k, v in dict(region_size=region_size, steps=steps, stride=stride, repeats=repeats,
                     image_chunk=image_chunk).items():
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{k} must be a positive int, got {v!r}")
    maps = _check_maps(heatmaps, x)
    if not maps and not random_baseline:
        raise ValueError("give at least one heatmap or random_baseline=True")
    N, C, H, W = x.shape
    if region_size > min(H, W):
        raise ValueError(f"region_size={region_size} is larger than the image ({H}x{W})")
    n_regions = -(-H // region_size) * -(-W // region_size)
    if steps > n_regions:
        raise ValueError(f"steps={steps} is beyond the number of regions: a {H}x{W} image has "
                         f"{n_regions} regions of {region_size}x{region_size}")
    ks = sampled_steps(N, repeats, steps, stride, seed)            # (N, R, B)
    dev = model_device(model)
    x = x.to(dev)
    t = resolve_target(model, x, target).to(dev)
    low, high = input_range(model, bounds, C, dev)
    names = list(maps) + (["random"] if random_baseline else [])
    curves = [(o, n) for n in maps for o in orders] + ([("random", "random")] if random_baseline else [])
    R, B = repeats, ks.shape[-1]
    scorer = TargetScorer(model)
    per = x[0].numel() * 4
    batch = int(batch_size) if batch_size is not None else int(max(1, min(4096, max_batch_mb * 2 ** 20 // per)))
    gen = torch.Generator(device=dev).manual_seed(int(seed) + 1)
    score0 = torch.empty(N, device=dev)
    score = torch.empty(len(curves), N, R, B, device=dev)
    frac = np.zeros(steps + 1)
    fmt = torch.channels_last if (scorer.torch and dev.type == "cpu") else torch.contiguous_format
    ctx = eval_mode(model) if scorer.torch else contextlib.nullcontext()
    with ctx, torch.no_grad():
        for c0 in range(0, N, image_chunk):
            c1 = min(N, c0 + image_chunk)
            xc = x[c0:c1].contiguous(memory_format=fmt)
            tc = t[c0:c1]
            nc = c1 - c0
            score0[c0:c1] = scorer(xc, tc)
            shape = (nc, C, H, W)
            ranks = []
            for o, n in curves:
                h = maps[n][c0:c1] if n in maps else torch.zeros(nc, H, W)
                ranks.append(removal_ranks(h, shape, region_size=region_size, steps=steps, order=o,
                                           repeats=R, seed=int(seed) + c0, device=dev))
            ranks = torch.stack(ranks)                               # (curves, nc, R, H, W)
            if random_baseline:
                rr = ranks[-1].clamp_max(steps).reshape(-1).long()
                frac += torch.bincount(rr, minlength=steps + 1).cpu().numpy()
            if replacement == "uniform":
                u = torch.rand((nc, R, C, H, W), generator=gen, device=dev)
                fill = low + (high - low) * u
            elif replacement == "zero":
                fill = torch.zeros((nc, 1, C, 1, 1), device=dev).expand(nc, R, C, 1, 1)
            elif replacement == "mean":
                fill = xc.mean((2, 3), keepdim=True)[:, None].expand(nc, R, C, 1, 1)
            else:
                fill = None
            kc = torch.as_tensor(ks[c0:c1], device=dev, dtype=torch.int32)   # (nc, R, B)
            n_items = len(curves) * nc * R * B
            for b0 in range(0, n_items, batch):
                ids = torch.arange(b0, min(n_items, b0 + batch), device=dev)
                ci, rem = ids // (nc * R * B), ids % (nc * R * B)
                ii, rem = rem // (R * B), rem % (R * B)
                ri, bi = rem // B, rem % B
                mask = (ranks[ci, ii, ri] < kc[ii, ri, bi][:, None, None])[:, None]
                xb = xc[ii]
                if fill is None:
                    g = noisy_linear_impute(xb, mask, noise=road_noise, generator=gen)
                else:
                    g = fill[ii, ri]
                xb = torch.where(mask, g, xb).contiguous(memory_format=fmt)
                score[ci, c0 + ii, ri, bi] = scorer(xb, tc[ii])
    drop = (score0[None, :, None, None] - score).cpu().double().numpy()
    arr = np.full((len(orders), len(names), N, R, B), np.nan)
    for j, (o, n) in enumerate(curves):
        for oi, oo in enumerate(orders):
            if o == oo or o == "random":
                arr[oi, names.index(n)] = drop[j]
    da = xr.DataArray(arr, dims=("order", "method", "image", "repeat", "block"),
                      coords={"order": orders, "method": names, "image": np.arange(N),
                              "repeat": np.arange(R), "block": np.arange(B)})
    ds = aopc_from_sampled_drops(da, steps, stride)
    ds["drops"] = da
    ds["score0"] = xr.DataArray(score0.cpu().double().numpy(), dims="image")
    ds["sampled_step"] = xr.DataArray(ks, dims=("image", "repeat", "block"))
    ds["target"] = xr.DataArray(t.cpu().numpy(), dims="image")
    if random_baseline:
        cum = np.cumsum(frac)[:-1] / (N * R * H * W)
        ds["perturbed_fraction"] = xr.DataArray(np.concatenate([[0.0], cum])[ds.step.values], dims="step")
    ds.attrs.update(region_size=int(region_size), steps=int(steps), stride=int(stride),
                    repeats=int(repeats), replacement=replacement, road_noise=float(road_noise),
                    regions="grid", seed=int(seed), batch_size=batch,
                    bounds_low=low.flatten().cpu().tolist(), bounds_high=high.flatten().cpu().tolist(),
                    estimator=("eq. 12 exactly" if stride == 1 else
                               f"eq. 12 estimated from one uniformly drawn step per block of {stride} "
                               "steps (stratified sampling, unbiased)"),
                    reference="Samek et al. 2017, IEEE TNNLS, eq. 11-12")
    return ds


# --------------------------------------------------------------------------------- statistics

def ranking_table(values: xr.DataArray, *, baseline: str | None = "random", dim: str = "image",
                  over: str = "method", higher_is_better: bool = True, n_boot: int = 2000,
                  seed: int = 0) -> Any:
    """A ranking of methods with paired bootstrap intervals over images (a pandas DataFrame).

    ``values(method, image)``: one value per image and method (e.g. AOPC).  Columns: ``estimate``,
    ``low``, ``high``, ``n`` (each method minus ``baseline`` when given, else the method's mean),
    ``rank`` (1 = best), ``better than`` / ``worse than`` (the methods it beats / loses to with a
    paired interval excluding 0) and ``tied with`` (the others: not resolved at this ``n``).
    """
    import pandas as pd

    names = [str(v) for v in values[over].values]
    if baseline is not None and baseline not in names:
        raise ValueError(f"baseline {baseline!r} is not one of {over}={names}")
    pair = paired_interval_dataset(values, dim, over=over, baseline=None, n_boot=n_boot, seed=seed)
    methods = [n for n in names if n != baseline]
    sign = 1.0 if higher_is_better else -1.0
    rows = []
    for m in methods:
        a = values.sel({over: m}).values
        if baseline is not None:
            iv = paired_interval(a, values.sel({over: baseline}).values, n_boot=n_boot, seed=seed)
        else:
            from .intervals import bootstrap_interval
            iv = bootstrap_interval(a, n_boot=n_boot, seed=seed)
        better, worse, tied = [], [], []
        for o in methods:
            if o == m:
                continue
            p = pair.sel({over: m, "versus": o})
            lo, hi = sign * float(p.low), sign * float(p.high)
            lo, hi = min(lo, hi), max(lo, hi)
            (better if lo > 0 else worse if hi < 0 else tied).append(o)
        rows.append({over: m, "estimate": iv.estimate, "low": iv.low, "high": iv.high, "n": iv.n,
                     "better than": ", ".join(better), "worse than": ", ".join(worse),
                     "tied with": ", ".join(tied)})
    df = pd.DataFrame(rows).set_index(over)
    df = df.sort_values("estimate", ascending=not higher_is_better)
    df.insert(4, "rank", np.arange(1, len(df) + 1))
    return df


def min_difference_interval(a: xr.DataArray, b: xr.DataArray, *, dim: str = "image",
                            over: str = "region_size", n_boot: int = 2000, seed: int = 0):
    """The smallest (over ``over``) mean difference ``a - b`` with a bootstrap interval resampling
    ``dim`` jointly for every entry of ``over``: "``a`` above ``b`` at every region size"
    holds when the interval lies above 0."""
    from .intervals import resample_interval

    d = (a - b).transpose(over, dim).values.astype(np.float64)      # (K, n)
    keep = ~np.isnan(d).any(0)
    d = d[:, keep]

    def stat(idx: np.ndarray) -> float:
        return float(d[:, idx].mean(1).min())
    return resample_interval(stat, d.shape[1], n_boot=n_boot, seed=seed)


def between_image_similarity(heatmaps: Any) -> float:
    """Mean Pearson correlation between the heatmaps of different images ``(N, [C,] H, W)``.

    Near 1: the method draws nearly the same map whatever the image (Samek et al. 2017, Fig. 3:
    the deconvolution method "only considers the weights and thus produces the same heatmaps for
    different input images"); near 0: image-specific maps.  NaN for fewer than 2 images.
    """
    h = torch.as_tensor(heatmaps).detach().double()
    h = h.sum(1) if h.dim() == 4 else h
    if h.dim() != 3:
        raise ValueError(f"heatmaps must be (N, H, W) or (N, C, H, W), got shape {tuple(h.shape)}")
    n = h.shape[0]
    if n < 2:
        return float("nan")
    v = h.reshape(n, -1)
    v = v - v.mean(1, keepdim=True)
    norm = v.norm(dim=1, keepdim=True)
    v = torch.where(norm > 0, v / norm.clamp_min(1e-300), torch.zeros_like(v))
    c = v @ v.T
    off = ~torch.eye(n, dtype=torch.bool)
    return float(c[off].mean())
