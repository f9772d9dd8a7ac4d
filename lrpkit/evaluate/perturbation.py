"""Region perturbation and AOPC (Samek et al. 2017), deletion / insertion (Petsiuk et al. 2018).

Region perturbation -- Samek, Binder, Montavon, Lapuschkin, Mueller, "Evaluating the
visualization of what a deep neural network has learned", IEEE TNNLS 2017, Sec. III:

* a heatmap orders image locations ``O = (r_1, ..., r_L)`` (eq. 9, 10: most relevant first);
* MoRF perturbation (eq. 11): ``x^(0) = x``, ``x^(k) = g(x^(k-1), r_k)``, where ``g`` replaces the
  ``m x m`` region at ``r_k`` (the paper: uniform random values, 9 x 9 regions, 100 steps,
  10 repeats);
* AOPC (eq. 12): ``1/(L+1) sum_{k=0..L} f(x^(0)) - f(x^(k))``, averaged over images; a good
  heatmap makes the score drop fast, i.e. a large AOPC.  Fig. 4 plots it against ``L`` relative to
  a random order (:func:`compare_methods`, ``aopc_minus_random``).

Deletion / insertion -- Petsiuk, Das, Saenko, "RISE: Randomized Input Sampling for Explanation
of Black-box Models", BMVC 2018, Sec. 4.1: the target probability as pixels are deleted in
importance order (onto a zero substrate) or inserted into a blurred copy; the area under each
curve (deletion: lower is better, insertion: higher is better).

How it runs
-----------
Each (image, repeat) gets one *removal-rank map*: the step at which each pixel is perturbed
(regions on the non-overlapping grid, or ``m x m`` windows centred on the most relevant pixels
not yet perturbed).  The perturbed image of step ``k`` is then
``where(rank < k, replacement, x)`` -- one broadcast over a whole batch of (image, repeat, step)
triples, no loop over pixels or regions.  The replacement of an (image, repeat) is drawn once, so
the recursion of eq. 11 holds exactly (a region keeps the values it got at its step).  All steps
of all repeats of all images go through the model in batches of ``batch_size`` (default: as many
as fit ``max_batch_mb`` of input), on the model's device; scores stay there until the end.  The
unperturbed image (step 0) is scored once per image, not once per repeat.  On the CPU the
batches are cache-sized (2.5 MiB of input), in channels-last layout, and a torch model's batches
run on ``torch.get_num_threads()`` worker threads with one intra-op thread each
(:class:`_Forwarder`); the numbers do not depend on the batch size or the threads (up to float
rounding of the model's kernels).

Replacements ``g``
------------------
``"uniform"``  uniform values in ``bounds`` per channel (the paper's choice; ``bounds`` default to
               the model's valid pixel range in its input space: lrpkit's normalised ``[0, 1]``
               for torch modules, :func:`lrpkit.data.transforms.input_bounds`, and ``[0, 1]`` for
               the Fisher-vector classifier);
``"zero"``     zeros of the input space (Quantus' ``"black"``);
``"mean"``     the image's mean colour;
``"blur"``     a Gaussian blur of the image (``blur_sigma``, kernel radius ``ceil(2 blur_sigma)``;
               RISE's insertion substrate, whose code uses 11 taps at sigma 5);
``"road"``     the noisy linear imputation of ROAD (Rong et al., ICML 2022;
               :func:`lrpkit.evaluate.road.noisy_linear_impute`), all removed pixels of step
               ``k`` imputed at once from the kept ones, as ROAD does.

``model`` is anything :func:`lrpkit.explain` accepts: a torch module on the normalised input or an
object with ``decision_function`` (the Fisher-vector classifier on ``[0, 1]`` images, scored on
the CPU).  ``f`` is the target's output (the class score / logit).
"""
from __future__ import annotations

import contextlib
import math
from typing import Any
from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
import xarray as xr

from .._blur import gaussian_blur
from .._device import model_device
from ..data.transforms import input_bounds
from ..explain import explain
from ..inputs import check_input, eval_mode, model_scores, resolve_target
from ..params import Boolean, InstanceOf, Interval, IsCallable, Options, declare
from .road import noisy_linear_impute

__all__ = ["ORDERS", "REPLACEMENTS", "REGIONS", "TIES", "SAMEK2017_METHODS", "region_perturbation",
           "compare_methods", "deletion_insertion", "removal_ranks", "gaussian_blur",
           "aopc_from_scores", "scaled_region_size", "explain_batched", "pixel_order"]

ORDERS = ("morf", "lerf", "random")
REPLACEMENTS = ("uniform", "zero", "mean", "blur", "road")
REGIONS = ("grid", "centred")
_INF_RANK = torch.iinfo(torch.int32).max

#: The heatmap methods of Samek et al. 2017, Fig. 4 as :func:`compare_methods` specs (``lrp`` composites:
#: alpha2_beta1 = eq. 8 with alpha = 2, beta = 1 on convolutions; epsilon = eq. 7 everywhere;
#: sensitivity = eq. 3 with the l2 or l-inf norm over channels).
SAMEK2017_METHODS: dict[str, dict[str, Any]] = {
    "LRP a2b1": {"method": "lrp", "composite": "alpha2_beta1"},
    "LRP eps=0.01": {"method": "lrp", "composite": "epsilon", "epsilon": 0.01},
    "LRP eps=1": {"method": "lrp", "composite": "epsilon", "epsilon": 1.0},
    "LRP eps=100": {"method": "lrp", "composite": "epsilon", "epsilon": 100.0},
    "sensitivity l2": {"method": "sensitivity", "norm": "l2"},
    "sensitivity linf": {"method": "sensitivity", "norm": "linf"},
    "deconvnet": {"method": "deconvnet"},
    "guided backprop": {"method": "guided_backprop"},
    "gradient x input": {"method": "gradient_x_input"},
}


def scaled_region_size(size: int, image_side: int, reference_side: int = 227) -> int:
    """A region side of Samek et al. 2017 (given at its 227 px input) scaled to ``image_side`` pixels
    (rounded, at least 1): 9 px at 227 px -> 4 px at 112 px."""
    if size < 1 or image_side < 1 or reference_side < 1:
        raise ValueError(f"sizes must be positive, got {size}, {image_side}, {reference_side}")
    return max(1, int(round(size * image_side / reference_side)))


# --------------------------------------------------------------------------------- helpers

def check_heatmaps(heatmaps: Any, x: torch.Tensor, name: str = "heatmaps") -> torch.Tensor:
    """``(N, H, W)`` float maps (``(N, C, H, W)`` relevance is summed over channels)."""
    if heatmaps is None:
        raise ValueError(f"{name} is None; pass relevance maps (order='random' ignores the values)")
    if isinstance(heatmaps, np.ndarray):
        heatmaps = torch.from_numpy(heatmaps)
    if not isinstance(heatmaps, torch.Tensor):
        raise TypeError(f"{name} must be a tensor or array, got {type(heatmaps).__name__}")
    h = heatmaps.detach()
    if h.dim() == 4:
        h = h.sum(1)
    if h.dim() != 3:
        raise ValueError(f"{name} must be (N, H, W) or (N, C, H, W), got shape {tuple(heatmaps.shape)}")
    if h.shape[0] != x.shape[0] or h.shape[-2:] != x.shape[-2:]:
        raise ValueError(f"{name} shape {tuple(heatmaps.shape)} differs from the image batch "
                         f"{tuple(x.shape)}: need one (H, W) = {tuple(x.shape[-2:])} map per image")
    h = h.float()
    if not bool(torch.isfinite(h).all()):
        bad = int((~torch.isfinite(h)).sum())
        raise ValueError(f"{name} contains {bad} NaN or infinite relevance values")
    return h


def input_range(model: Any, bounds: Any, C: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``(low, high)``, each ``(C, 1, 1)``: the valid pixel range uniform noise is drawn from
    (Samek et al. 2017, eq. 11): ``bounds`` when given, else lrpkit's normalised input range
    for a torch model (``[0, 1]`` when its channel count differs) and ``[0, 1]`` for a model
    scored through ``decision_function`` (the FV classifier on ``[0, 1]`` images)."""
    if bounds is None:
        if isinstance(model, torch.nn.Module):
            low, high = input_bounds()
            if C != low.shape[0]:
                low, high = torch.zeros(C, 1, 1), torch.ones(C, 1, 1)
        else:
            low, high = torch.zeros(C, 1, 1), torch.ones(C, 1, 1)
    else:
        try:
            low, high = bounds
        except (TypeError, ValueError):
            raise ValueError(f"bounds must be (low, high), got {bounds!r}") from None
        low = torch.as_tensor(low, dtype=torch.float32).reshape(-1, 1, 1).expand(C, 1, 1)
        high = torch.as_tensor(high, dtype=torch.float32).reshape(-1, 1, 1).expand(C, 1, 1)
        if bool((high < low).any()):
            raise ValueError(f"bounds: high must be >= low, got {bounds!r}")
    return low.to(device).float(), high.to(device).float()


class TargetScorer:
    """``f_target`` of a batch on the model's device (torch) or via ``model_scores``.

    On the CPU a torch model gets its batches in channels-last memory layout (the same values;
    oneDNN's convolutions ran 1.3-1.6x faster on it for the scene CNN); a model that cannot take
    such a batch (e.g. one that calls ``.view`` on its input) gets contiguous batches from then on.
    Each call runs in ``torch.inference_mode`` (grad mode is per thread: :class:`_Forwarder`
    calls it from its worker threads).
    """

    def __init__(self, model: Any, score: str = "raw"):
        self.model = model
        self.torch = isinstance(model, torch.nn.Module)
        self.score = score
        self.channels_last = self.torch

    def _forward(self, xb: torch.Tensor) -> torch.Tensor:
        if self.channels_last and xb.dim() == 4 and xb.device.type == "cpu":
            try:
                return self.model(xb.contiguous(memory_format=torch.channels_last))
            except RuntimeError:
                self.channels_last = False
        return self.model(xb.contiguous())

    def __call__(self, xb: torch.Tensor, tb: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            if self.torch:
                out = self._forward(xb)
            else:
                out = model_scores(self.model, xb).to(xb.device)
            if out.dim() == 1:
                out = out[:, None]
            out = out.float()
            if self.score == "softmax":
                out = out.softmax(1)
            elif self.score == "sigmoid":
                out = out.sigmoid()
            return out.gather(1, tb[:, None].to(out.device))[:, 0]


class _Forwarder:
    """Runs the scorer on batches and writes ``f`` into ``out[flat]``.

    On the CPU with ``torch.get_num_threads() = T > 1`` a torch model's batches go to ``T``
    worker threads with one intra-op thread each (restored on exit): every thread runs whole
    small batches, whose activations stay in its cache, and no operator waits at a barrier for
    a second thread -- on a machine shared with other jobs such barriers cost more than the
    convolutions.  Batches are built in the caller's thread in a fixed order (random draws do
    not depend on the threads); each batch's scores land in its own slots, so the numbers are
    those of the sequential loop.  An automatic batch size (``split``) is cut to give every
    thread work; a given one is kept.  Elsewhere (accelerators, non-torch models, ``T = 1``, a
    single batch) the batches run one after the other.
    """

    def __init__(self, scorer: TargetScorer, out: torch.Tensor, dev: torch.device, items: int,
                 batch: int, split: bool = True):
        self.scorer, self.out = scorer, out
        self.workers = torch.get_num_threads() if (scorer.torch and dev.type == "cpu") else 1
        if split and self.workers > 1:       # an automatic batch size: work for every thread
            batch = max(1, min(batch, -(-items // self.workers)))
        if -(-items // batch) < 2:           # a single batch: all intra-op threads on it
            self.workers = 1
        self.batch = batch
        self.pool = None
        self.pending: list = []

    def __enter__(self) -> _Forwarder:
        if self.workers > 1:
            from concurrent.futures import ThreadPoolExecutor
            self.threads = torch.get_num_threads()
            torch.set_num_threads(1)
            self.pool = ThreadPoolExecutor(self.workers, thread_name_prefix="lrpkit-perturbation")
        return self

    def submit(self, flat: torch.Tensor, xb: torch.Tensor, tb: torch.Tensor) -> None:
        if self.pool is None:
            self.out[flat] = self.scorer(xb, tb)
            return
        self.pending.append((flat, self.pool.submit(self.scorer, xb, tb)))
        while len(self.pending) > 2 * self.workers:      # bounded memory: a few batches in flight
            self._collect_one()

    def _collect_one(self) -> None:
        flat, fut = self.pending.pop(0)
        self.out[flat] = fut.result()

    def drain(self) -> None:
        while self.pending:
            self._collect_one()

    def __exit__(self, *exc: Any) -> bool:
        if self.pool is not None:
            try:
                if exc[0] is None:
                    self.drain()
            finally:
                self.pool.shutdown(wait=True, cancel_futures=True)
                torch.set_num_threads(self.threads)
        return False


#: Default input per batch (MiB): on the CPU small batches keep a batch's activations in cache
#: (the scene CNN at 112 px: 16 images per batch ran 1.6x faster per image than 128); on an
#: accelerator large batches fill the device.
_CPU_BATCH_MB, _DEVICE_BATCH_MB = 2.5, 32.0


def _auto_batch(batch_size: Any, x: torch.Tensor, max_batch_mb: float | None) -> int:
    if batch_size is not None:     # validated by the caller's declaration
        return int(batch_size)
    if max_batch_mb is None:
        max_batch_mb = _CPU_BATCH_MB if x.device.type == "cpu" else _DEVICE_BATCH_MB
    per = x[0].numel() * 4
    return int(max(1, min(4096, (max_batch_mb * 2 ** 20) // per)))


# --------------------------------------------------------------------------------- orders

def _grid_ranks(h: torch.Tensor, m: int, order: str, R: int, gen: torch.Generator | None
                ) -> tuple[torch.Tensor, int]:
    """Removal ranks ``(N, R, H, W)`` (int32) of the non-overlapping ``m x m`` grid."""
    N, H, W = h.shape
    nh, nw = -(-H // m), -(-W // m)
    hp = F.pad(h, (0, nw * m - W, 0, nh * m - H))
    region_score = hp.view(N, nh, m, nw, m).sum((2, 4)).reshape(N, nh * nw)
    nreg = nh * nw
    if order == "random":
        keys = torch.rand((N, R, nreg), generator=gen, device=h.device)
        ordr = keys.argsort(-1)
    else:
        s = -region_score if order == "morf" else region_score
        ordr = s.argsort(dim=-1, stable=True)[:, None].expand(N, R, nreg)
    rank_of_region = torch.empty_like(ordr)
    rank_of_region.scatter_(-1, ordr, torch.arange(nreg, device=h.device).expand_as(ordr))
    rid = (torch.arange(H, device=h.device)[:, None] // m) * nw + \
        (torch.arange(W, device=h.device)[None, :] // m)
    ranks = rank_of_region[:, :, rid.reshape(-1)].view(N, R, H, W)
    return ranks.to(torch.int32), nreg


def _centred_ranks(h: torch.Tensor, m: int, order: str, R: int, steps: int,
                   gen: torch.Generator | None) -> torch.Tensor:
    """Removal ranks ``(N, R, H, W)`` of ``m x m`` windows centred on the most relevant pixels.

    Greedy, as eq. 11 with ``r_k`` the most relevant pixel not perturbed yet: the window around
    it is removed at step ``k`` and its pixels leave the candidate set.  One vectorised pass per
    step over all images and repeats (the order is built on the heatmaps only).
    """
    N, H, W = h.shape
    dev = h.device
    if order == "random":
        key = torch.rand((N * R, H * W), generator=gen, device=dev)
    else:
        key = (h if order == "morf" else -h).reshape(N, 1, H * W).expand(N, R, H * W).reshape(N * R, H * W).clone()
    lo = -(m // 2)
    off = torch.arange(lo, lo + m, device=dev)
    dy, dx = torch.meshgrid(off, off, indexing="ij")
    dy, dx = dy.reshape(-1), dx.reshape(-1)
    ranks = torch.full((N * R, H * W + 1), _INF_RANK, dtype=torch.int32, device=dev)
    rows = torch.arange(N * R, device=dev)[:, None]
    neg = torch.tensor(-math.inf, device=dev)
    for k in range(steps):
        best, c = key.max(1)
        if bool(torch.isneginf(best).any()):
            raise ValueError(f"steps={steps} is beyond the number of regions: the windows of "
                             f"{k} steps already cover the whole {H}x{W} image")
        cy, cx = c // W, c % W
        yy, xx = cy[:, None] + dy, cx[:, None] + dx
        ok = (yy >= 0) & (yy < H) & (xx >= 0) & (xx < W)
        idx = torch.where(ok, yy * W + xx, torch.full_like(yy, H * W))
        ranks.scatter_reduce_(1, idx, torch.full(idx.shape, k, dtype=torch.int32, device=dev), "amin")
        key[rows, idx.clamp_max(H * W - 1)] = torch.where(ok, neg, key[rows, idx.clamp_max(H * W - 1)])
    return ranks[:, :H * W].view(N, R, H, W)


_POS = Interval(int, 1, None)


@declare(region_size=_POS, steps=_POS, order=Options(*ORDERS), regions=Options(*REGIONS),
         repeats=_POS, seed=Interval(int, 0, None), device=[InstanceOf(str, torch.device), None])
def removal_ranks(heatmaps: Any, shape: Sequence[int], *, region_size: int = 9, steps: int = 100,
                  order: str = "morf", regions: str = "grid", repeats: int = 1,
                  seed: int = 0, device: Any = None) -> torch.Tensor:
    """The step (0-based) at which each pixel is perturbed, ``(N, repeats, H, W)`` int32.

    Pixels with rank ``< k`` are perturbed in ``x^(k)``; never-perturbed pixels get a huge rank.
    ``heatmaps`` ``(N, H, W)`` or ``(N, C, H, W)``; ``shape`` the image batch's shape.
    """
    x = torch.empty(tuple(shape), device="meta")
    h = check_heatmaps(heatmaps, x)
    if device is not None:
        h = h.to(device)
    H, W = h.shape[-2:]
    m = region_size
    if m > min(H, W):
        raise ValueError(f"region_size={m} is larger than the image ({H}x{W})")
    gen = torch.Generator(device=h.device).manual_seed(int(seed))
    if regions == "grid":
        ranks, nreg = _grid_ranks(h, m, order, repeats, gen)
        if steps > nreg:
            raise ValueError(f"steps={steps} is beyond the number of regions: a {H}x{W} image has "
                             f"{nreg} regions of {m}x{m}")
        return ranks
    return _centred_ranks(h, m, order, repeats, steps, gen)


def aopc_from_scores(score: xr.DataArray) -> xr.Dataset:
    """AOPC (Samek et al. 2017, eq. 12) from ``score(..., step, repeat)``: ``aopc_curve(..., step)`` is the
    AOPC over the first ``L = step`` steps, ``aopc`` its value at the last step."""
    drop = score.isel(step=0) - score                      # f(x^0) - f(x^k)
    drop = drop.mean("repeat")
    n = xr.DataArray(np.arange(1, score.sizes["step"] + 1), dims="step",
                     coords={"step": score.step})
    curve = drop.cumsum("step") / n
    return xr.Dataset({"aopc_curve": curve, "aopc": curve.isel(step=-1, drop=True)})


# --------------------------------------------------------------------------------- main

def _replacement_source(kind: str, x: torch.Tensor, low: torch.Tensor, high: torch.Tensor,
                        blur_sigma: float) -> torch.Tensor | None:
    if kind == "zero":
        return torch.zeros((x.shape[0], x.shape[1], 1, 1), dtype=x.dtype, device=x.device)
    if kind == "mean":
        return x.mean((2, 3), keepdim=True)
    if kind == "blur":  # kernel radius ceil(2 sigma): 21 taps at RISE's sigma = 5
        return gaussian_blur(x, blur_sigma, radius=max(1, math.ceil(2 * blur_sigma)))
    return None


def _run_batches(scorer: TargetScorer, x: torch.Tensor, t: torch.Tensor, ranks: torch.Tensor,
                 n_steps: torch.Tensor, replacement: str, low: torch.Tensor, high: torch.Tensor,
                 batch: int, gen: torch.Generator, blur_sigma: float, road_noise: float,
                 progress: bool, desc: str, split: bool = True) -> torch.Tensor:
    """Scores ``(N, R, S)`` of ``where(ranks[n, r] < n_steps[s], g, x[n])`` for all n, r, s.

    Items (n, r, s) run in this order, in batches of ``batch`` that may span chunks of (n, r)
    pairs (not for ROAD, whose noise draws depend on the batch composition).  A
    step that perturbs nothing (``n_steps[s] == 0``, the unperturbed ``x``) is scored once per
    image and copied to the other repeats (except for ROAD, whose noise is drawn per item).
    """
    N, C, H, W = x.shape
    R = ranks.shape[1]
    S = n_steps.shape[0]
    dev = x.device
    # build the perturbed batches in the layout the scorer feeds the model (no copy per batch)
    fmt = torch.channels_last if (scorer.channels_last and dev.type == "cpu") else \
        torch.contiguous_format
    x = x.contiguous(memory_format=fmt)
    src = _replacement_source(replacement, x, low, high, blur_sigma)
    out = torch.empty(N * R * S, dtype=torch.float32, device=dev)
    total = N * R * S
    unperturbed = (n_steps == 0)
    reuse = R > 1 and replacement != "road" and bool(unperturbed.any())
    # ROAD's noise draws depend on the batches: they end with each chunk and keep their size
    span = replacement != "road"
    items = total - (N * (R - 1) * int(unperturbed.sum()) if reuse else 0)
    fwd = _Forwarder(scorer, out, dev, items, batch, split and span)
    batch = fwd.batch
    # pairs (n, r) in chunks so that a pair's uniform noise is drawn once for all its steps
    pairs_per_chunk = max(1, batch // S)
    bar = None
    if progress and not callable(progress):   # a callable: progress(done, total), may cancel
        from tqdm.auto import tqdm
        bar = tqdm(total=total, desc=desc, unit="img", leave=False)
    # a batch is a list of pieces (pair p, its image n and repeat r, its replacement g or None,
    # its steps); each piece is written with one broadcast where() into the batch buffer
    pieces: list[tuple[int, int, torch.Tensor | None, torch.Tensor]] = []
    held = 0
    with fwd:
        def flush() -> None:
            nonlocal pieces, held
            xb = torch.empty((held, C, H, W), dtype=x.dtype, device=dev).contiguous(memory_format=fmt)
            flat, tb = [], []
            if replacement == "road":      # imputed from the whole batch at once, as before
                n_all = torch.cat([torch.full_like(st, n) for n, _, _, st in pieces])
                mask = torch.cat([ranks[n, r] < n_steps[st][:, None, None] for n, r, _, st in pieces])
                xa = x[n_all]
                g = noisy_linear_impute(xa, mask[:, None], noise=road_noise, generator=gen)
                torch.where(mask[:, None], g, xa, out=xb)
            i = 0
            for n, r, g, st in pieces:
                if replacement != "road":
                    mask = (ranks[n, r] < n_steps[st][:, None, None])[:, None]   # (B, 1, H, W)
                    torch.where(mask, g[None], x[n][None], out=xb[i:i + st.shape[0]])
                flat.append((n * R + r) * S + st)
                tb.append(t[n].expand(st.shape[0]))
                i += st.shape[0]
            fwd.submit(torch.cat(flat), xb, torch.cat(tb))
            n, r, _, st = pieces[-1]
            report((n * R + r) * S + int(st[-1]) + 1)     # each batch: a cancellation point
            pieces, held = [], 0

        done = 0

        def report(pos: int) -> None:
            nonlocal done
            if bar is not None:
                bar.update(pos - done)
            elif callable(progress):
                progress(pos, total)
            done = pos

        all_steps = torch.arange(S, device=dev)
        later_steps = all_steps[~unperturbed]
        for p0 in range(0, N * R, pairs_per_chunk):
            p1 = min(N * R, p0 + pairs_per_chunk)
            noise = None
            if replacement == "uniform":
                u = torch.rand((p1 - p0, C, H, W), generator=gen, device=dev, dtype=x.dtype)
                noise = (low + (high - low) * u).contiguous(memory_format=fmt)
            for p in range(p0, p1):
                n, r = p // R, p % R
                steps_p = later_steps if (reuse and r > 0) else all_steps
                g = noise[p - p0] if noise is not None else (src[n] if src is not None else None)
                j = 0
                while j < steps_p.shape[0]:
                    st = steps_p[j:j + batch - held]
                    j += st.shape[0]
                    pieces.append((n, r, g, st))
                    held += st.shape[0]
                    if held == batch:
                        flush()
            if held and not span:
                flush()
        if held:
            flush()
        fwd.drain()
        if done < total:      # the skipped repeats of step 0 at the end
            report(total)
    if bar is not None:
        bar.close()
    out = out.view(N, R, S)
    if reuse:
        out[:, 1:, unperturbed] = out[:, :1, unperturbed]
    return out


@declare(region_size=_POS, steps=_POS, repeats=_POS, order=Options(*ORDERS),
         replacement=Options(*REPLACEMENTS), regions=Options(*REGIONS),
         bounds=[InstanceOf(tuple, list, name="a (low, high) pair"), None],
         blur_sigma=Interval(float, 0, None, closed="neither"), road_noise=Interval(float, 0, None),
         batch_size=[_POS, None], max_batch_mb=[Interval(float, 0, None, closed="neither"), None],
         seed=Interval(int, 0, None), progress=[Boolean(), IsCallable()])
def region_perturbation(model: Any, x: Any, heatmaps: Any, target: Any = "pred", *,
                        region_size: int = 9, steps: int = 100, repeats: int = 10,
                        order: str = "morf", replacement: str = "uniform",
                        regions: str = "grid", bounds: Any = None, blur_sigma: float = 5.0,
                        road_noise: float = 0.01, batch_size: int | None = None,
                        max_batch_mb: float | None = None, seed: int = 0,
                        progress: bool = False) -> xr.Dataset:
    """Region perturbation (Samek et al. 2017, eq. 9-12): scores along the perturbation path.

    Parameters
    ----------
    model : torch module (normalised input) or Fisher-vector classifier (``[0, 1]`` images).
    x : ``(N, C, H, W)`` images in the model's input space.
    heatmaps : ``(N, H, W)`` or ``(N, C, H, W)`` relevance (summed over channels); its values are
        ignored for ``order="random"`` (only the shape is checked).
    target : as in :func:`lrpkit.explain` (int, sequence, ``"pred"``).
    region_size : side ``m`` of the square regions (paper: 9).
    steps : ``L``, the number of perturbed regions (paper: 100).
    repeats : independent repetitions (random replacement values / random orders; paper: 10).
        Deterministic set-ups (MoRF/LeRF with "zero", "mean", "blur", or "road" without noise)
        are computed once and repeated.
    order : ``"morf"`` (most relevant first, eq. 11), ``"lerf"`` (least relevant first) or
        ``"random"`` (the baseline, through the same code path).
    replacement : ``g``: "uniform", "zero", "mean", "blur" or "road" (see the module doc).
    regions : ``"grid"`` (the non-overlapping ``m x m`` grid, region score = summed relevance;
        partial regions at the right / bottom border) or ``"centred"`` (windows centred on the
        most relevant pixels not yet perturbed).
    bounds : ``(low, high)`` (scalars or per-channel) of the uniform replacement; default the
        model's valid pixel range in its input space.
    batch_size : perturbed images per forward pass; default: ``max_batch_mb`` of input.
    max_batch_mb : input per batch when ``batch_size`` is None; default 2.5 MiB on the CPU
        (cache-sized batches, one per worker thread), 32 MiB on accelerators.
    seed : seeds the random orders and replacement values (same seed, same numbers on the same
        device and batch size).

    Returns
    -------
    xarray.Dataset with ``score(image, step, repeat)`` (``f(x^(k))``, step 0 = unperturbed),
    ``aopc_curve(image, step)`` (eq. 12 up to ``L = step``), ``aopc(image)`` (eq. 12 with all
    ``steps``) and ``perturbed_fraction(step)`` (mean share of pixels perturbed); the parameters
    in ``attrs``.
    """
    x = check_input(x)
    m = region_size
    N, C, H, W = x.shape
    if m > min(H, W):
        raise ValueError(f"region_size={m} is larger than the image ({H}x{W})")
    if order == "random" and heatmaps is None:
        heatmaps = torch.zeros(N, H, W)
    h = check_heatmaps(heatmaps, x)
    dev = model_device(model)
    x = x.to(dev)
    t = resolve_target(model, x, target).to(dev)
    low, high = input_range(model, bounds, C, dev)
    random_g = replacement == "uniform" or (replacement == "road" and road_noise > 0)
    R = repeats if (order == "random" or random_g) else 1
    ranks = removal_ranks(h, x.shape, region_size=m, steps=steps, order=order, regions=regions,
                          repeats=R, seed=seed, device=dev)
    gen = torch.Generator(device=dev).manual_seed(int(seed) + 1)
    batch = _auto_batch(batch_size, x, max_batch_mb)
    n_steps = torch.arange(steps + 1, device=dev, dtype=torch.int32)
    scorer = TargetScorer(model)
    ctx = eval_mode(model) if scorer.torch else contextlib.nullcontext()
    with ctx, torch.no_grad():
        sc = _run_batches(scorer, x, t, ranks, n_steps, replacement, low, high, batch, gen,
                          blur_sigma, road_noise, progress, f"region perturbation ({order})",
                          split=batch_size is None)
    counts = torch.bincount(ranks.clamp_max(steps).reshape(-1).long(), minlength=steps + 1)
    frac = torch.cat([counts.new_zeros(1), counts.cumsum(0)[:steps]]).double() / ranks.numel()
    frac = frac.cpu().numpy()
    sc = sc.expand(N, repeats, steps + 1) if R == 1 else sc
    score = xr.DataArray(sc.permute(0, 2, 1).cpu().numpy().astype(np.float64),
                         dims=("image", "step", "repeat"),
                         coords={"image": np.arange(N), "step": np.arange(steps + 1),
                                 "repeat": np.arange(repeats)})
    ds = aopc_from_scores(score)
    ds["score"] = score
    ds["perturbed_fraction"] = xr.DataArray(frac, dims="step")
    ds["target"] = xr.DataArray(t.cpu().numpy(), dims="image")
    ds = ds[["score", "aopc_curve", "aopc", "perturbed_fraction", "target"]]
    ds.attrs.update(region_size=m, steps=steps, repeats=repeats, order=order,
                    replacement=replacement, regions=regions, seed=int(seed),
                    blur_sigma=float(blur_sigma), road_noise=float(road_noise),
                    bounds_low=low.flatten().cpu().tolist(), bounds_high=high.flatten().cpu().tolist(),
                    score="target output f(x) (class score)", batch_size=batch,
                    reference="Samek et al. 2017, IEEE TNNLS, eq. 9-12")
    return ds


def _method_spec(name: str, spec: Any) -> tuple[str, dict]:
    if spec is None:
        return name, {}
    if isinstance(spec, str):
        return spec, {}
    if not isinstance(spec, Mapping):
        raise TypeError(f"methods[{name!r}] must be a dict of explain parameters, got "
                        f"{type(spec).__name__}")
    spec = dict(spec)
    method = spec.pop("method", name)
    return method, spec


def explain_batched(model: Any, x: torch.Tensor, target: torch.Tensor, method: str,
                    batch_size: int = 64, **params: Any) -> torch.Tensor:
    """``explain`` in chunks of ``batch_size`` images (heatmaps of a large batch)."""
    outs = [explain(model, x[i:i + batch_size], target[i:i + batch_size], method=method, **params)
            for i in range(0, x.shape[0], batch_size)]
    return torch.cat(outs)


def compare_methods(model: Any, x: Any, target: Any = "pred",
                    methods: Mapping[str, Any] | None = None, *, heatmaps: Mapping[str, Any] | None = None,
                    explain_batch_size: int = 64, random_baseline: bool = True,
                    **perturbation_kwargs: Any) -> xr.Dataset:
    """Region perturbation for several heatmap methods and the random baseline (Samek et al. 2017, Fig. 4).

    ``methods`` maps a display name to the parameters of :func:`lrpkit.explain` (the key
    ``"method"`` names the registered method; without it the display name is the method), e.g.
    ``{"LRP eps=100": {"method": "lrp", "composite": "epsilon", "epsilon": 100.0},
    "sensitivity l2": {"method": "sensitivity", "norm": "l2"}}``.  Precomputed maps may be given
    in ``heatmaps`` ({name: (N, [C,] H, W)}) instead.  ``perturbation_kwargs`` go to
    :func:`region_perturbation` (``order`` applies to the methods; the baseline is always random).

    Returns one Dataset with dim ``method`` (the methods, then ``"random"``): ``score``,
    ``aopc_curve``, ``aopc`` as in :func:`region_perturbation`, and
    ``aopc_minus_random(method, step)``: the mean over images of the AOPC curve minus the random
    baseline's (Samek et al. 2017, Fig. 4), plus ``aopc_minus_random_image(method, image, step)``.
    """
    x = check_input(x)
    methods = dict(methods or {})
    heatmaps = dict(heatmaps or {})
    if not methods and not heatmaps:
        raise ValueError("give at least one entry in methods or heatmaps")
    clash = set(methods) & set(heatmaps)
    if clash or "random" in methods or "random" in heatmaps:
        raise ValueError(f"method names must be unique and not 'random', got clash {sorted(clash) or ['random']}")
    if "order" in perturbation_kwargs and perturbation_kwargs["order"] == "random":
        raise ValueError("order='random' is the baseline; use 'morf' or 'lerf' for the methods")
    dev = model_device(model)
    x = x.to(dev)
    t = resolve_target(model, x, target).to(dev)
    maps: dict[str, torch.Tensor] = {}
    for name, spec in methods.items():
        method, params = _method_spec(name, spec)
        maps[name] = explain_batched(model, x, t, method, explain_batch_size, **params)
    for name, h in heatmaps.items():
        maps[name] = check_heatmaps(h, x, f"heatmaps[{name!r}]")
    results = []
    for h in maps.values():
        results.append(region_perturbation(model, x, h, t, **perturbation_kwargs))
    names = list(maps)
    if random_baseline:
        kw = {**perturbation_kwargs, "order": "random"}
        results.append(region_perturbation(model, x, None, t, **kw))
        names.append("random")
    ds = xr.concat([r[["score", "aopc_curve", "aopc"]] for r in results], dim="method",
                   coords="minimal", compat="override", join="override")
    ds = ds.assign_coords(method=names)
    ds["perturbed_fraction"] = results[0]["perturbed_fraction"]
    ds["target"] = results[0]["target"]
    if random_baseline:
        diff = ds.aopc_curve - ds.aopc_curve.sel({"method": "random"}, drop=True)
        ds["aopc_minus_random_image"] = diff
        ds["aopc_minus_random"] = diff.mean("image")
    ds.attrs.update(results[0].attrs)
    ds.attrs["order"] = perturbation_kwargs.get("order", "morf")
    ds.attrs["methods"] = repr({k: _method_spec(k, v) for k, v in methods.items()})
    return ds


# --------------------------------------------------------------------------------- RISE

_SUBSTRATES = ("zero", "blur", "mean")


TIES = ("index", "random")


def pixel_order(heatmaps: torch.Tensor, ties: str = "index", seed: int = 0) -> torch.Tensor:
    """Pixel indices ``(N, H*W)`` by descending relevance of ``heatmaps`` ``(N, H, W)``.

    ``ties="index"``: equal values keep raster order (a stable sort); ``"random"``: equal values
    in a random order, drawn from ``torch.Generator().manual_seed(seed)`` on the CPU (the same
    order on every device).  Ties matter where a heatmap is flat: FGVis' deletion mask is exactly
    0 on most pixels (Wagner et al. 2019), and a stable sort would delete those in raster order.
    """
    if ties not in TIES:
        raise ValueError(f"ties must be one of {TIES}, got {ties!r}")
    h = heatmaps.reshape(heatmaps.shape[0], -1)
    if ties == "index":
        return (-h).argsort(dim=-1, stable=True)
    gen = torch.Generator().manual_seed(int(seed))
    perm = torch.rand(h.shape, generator=gen).argsort(dim=-1).to(h.device)
    return perm.gather(1, (-h.gather(1, perm)).argsort(dim=-1, stable=True))


@declare(step_pixels=[_POS, None], substrate=Options(*_SUBSTRATES),
         insertion_substrate=Options(*_SUBSTRATES), blur_sigma=Interval(float, 0, None, closed="neither"),
         score=Options("softmax", "sigmoid", "raw"), batch_size=[_POS, None],
         max_batch_mb=[Interval(float, 0, None, closed="neither"), None], progress=[Boolean(), IsCallable()],
         ties=Options(*TIES), seed=Interval(int, 0, None))
def deletion_insertion(model: Any, x: Any, heatmaps: Any, target: Any = "pred", *,
                       step_pixels: int | None = None, substrate: str = "zero",
                       insertion_substrate: str = "blur", blur_sigma: float = 5.0,
                       score: str = "softmax", batch_size: int | None = None,
                       max_batch_mb: float | None = None, progress: bool = False,
                       ties: str = "index", seed: int = 0) -> xr.Dataset:
    """Deletion and insertion curves and their AUC (Petsiuk et al. 2018, RISE, Sec. 4.1).

    Pixels are ranked by relevance (summed over channels; :func:`pixel_order`: ties in raster
    order with ``ties="index"``, in a random order seeded by ``seed`` with ``"random"``).  Deletion:
    ``step_pixels`` pixels per step, most relevant first, are replaced by the ``substrate``
    ("zero": zeros of the input space, "blur": a blurred copy, "mean": the mean colour).
    Insertion: starting from the ``insertion_substrate`` (RISE: a blurred copy), the most
    relevant pixels are put back.  ``score``: "softmax" (RISE's class probability), "sigmoid" or
    "raw" (the model output).  ``step_pixels`` defaults to the image width (RISE: 224 at 224 x 224).

    Returns ``deletion(image, step)``, ``insertion(image, step)``, ``fraction(step)`` (share of
    pixels deleted / inserted) and ``deletion_auc(image)``, ``insertion_auc(image)`` (trapezoid
    over ``fraction`` in [0, 1]; a good heatmap has low deletion and high insertion AUC).
    """
    x = check_input(x)
    N, C, H, W = x.shape
    h = check_heatmaps(heatmaps, x)
    sp = W if step_pixels is None else step_pixels
    if sp > H * W:
        raise ValueError(f"step_pixels={sp} is larger than the image ({H}x{W} pixels)")
    n_steps = -(-H * W // sp)
    dev = model_device(model)
    x = x.to(dev)
    h = h.to(dev)
    t = resolve_target(model, x, target).to(dev)
    # pixel rank in importance order, as a "region" of one pixel per rank; step k removes
    # ranks < k * step_pixels
    ordr = pixel_order(h, ties, seed)
    rank = torch.empty_like(ordr)
    rank.scatter_(-1, ordr, torch.arange(H * W, device=dev).expand_as(ordr))
    ranks = rank.view(N, 1, H, W).to(torch.int32)
    thresholds = (torch.arange(n_steps + 1, device=dev) * sp).clamp_max(H * W).to(torch.int32)
    batch = _auto_batch(batch_size, x, max_batch_mb)
    scorer = TargetScorer(model, "raw" if score == "raw" else score)
    low = high = torch.zeros(C, 1, 1, device=dev)
    gen = torch.Generator(device=dev).manual_seed(0)
    ctx = eval_mode(model) if scorer.torch else contextlib.nullcontext()
    with ctx, torch.no_grad():
        dele = _run_batches(scorer, x, t, ranks, thresholds, substrate, low, high, batch, gen,
                            blur_sigma, 0.0, progress, "deletion", split=batch_size is None)[:, 0]
        # insertion: the substrate everywhere except the inserted (rank < threshold) pixels
        base = _replacement_source(insertion_substrate, x, low, high, blur_sigma)
        base = base.expand_as(x) if base.shape[-1] == 1 else base
        # perturbing `base` with x as the "replacement": swap the roles of image and substrate
        ins = _run_insertion(scorer, x, base, t, ranks, thresholds, batch, split=batch_size is None)
    frac = (thresholds.float() / (H * W)).cpu().numpy()
    dele_np, ins_np = dele.cpu().numpy().astype(np.float64), ins.cpu().numpy().astype(np.float64)
    ds = xr.Dataset(
        {"deletion": (("image", "step"), dele_np), "insertion": (("image", "step"), ins_np),
         "fraction": ("step", frac),
         "deletion_auc": ("image", np.trapezoid(dele_np, frac, axis=1)),
         "insertion_auc": ("image", np.trapezoid(ins_np, frac, axis=1)),
         "target": ("image", t.cpu().numpy())},
        coords={"image": np.arange(N), "step": np.arange(n_steps + 1)})
    ds.attrs.update(step_pixels=sp, substrate=substrate, insertion_substrate=insertion_substrate,
                    blur_sigma=float(blur_sigma), score=score, batch_size=batch, ties=ties,
                    seed=int(seed), reference="Petsiuk et al. 2018 (RISE), BMVC, Sec. 4.1")
    return ds


def _run_insertion(scorer: TargetScorer, x: torch.Tensor, base: torch.Tensor, t: torch.Tensor,
                   ranks: torch.Tensor, thresholds: torch.Tensor, batch: int,
                   split: bool = True) -> torch.Tensor:
    N = x.shape[0]
    S = thresholds.shape[0]
    out = torch.empty(N * S, dtype=torch.float32, device=x.device)
    fwd = _Forwarder(scorer, out, x.device, N * S, batch, split)
    batch = fwd.batch
    with fwd:
        for b0 in range(0, N * S, batch):
            ids = torch.arange(b0, min(N * S, b0 + batch), device=x.device)
            n, s = ids // S, ids % S
            mask = (ranks[n, 0] < thresholds[s][:, None, None])[:, None]
            fwd.submit(ids, torch.where(mask, x[n], base[n]), t[n])
    return out.view(N, S)
