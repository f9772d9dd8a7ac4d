"""Prediction Difference Analysis: the sampling original and its two fast approximations.

* ``variant="sampling"`` -- Algorithm 1 of Zhou & Kainz 2018 (an
  approximation of Zintgraf et al. 2017), i.e. Zintgraf, Cohen, Adel & Welling, "Visualizing
  Deep Neural Network Decisions: Prediction Difference Analysis" (ICLR 2017), Sec. 3:
  for every ``k x k`` window ``x_w`` draw ``S`` samples from the conditional Gaussian
  ``p(x_w | x_hat \\ x_w)`` of its ``l x l`` outer patch (:class:`PatchModel`), estimate
  ``p(c | x \\ x_w)`` by the mean of the ``S`` predictions (eq. 9-10) and assign the *weight of
  evidence* ``WE = log2 odds(c | x) - log2 odds(c | x \\ x_w)`` to the window's pixels; every
  pixel gets the mean over the windows covering it.
* ``variant="mean"`` -- Algorithm 2: one forward pass per window, on the image with the window
  set to its conditional mean (the normalised geometric mean of the predictions, eq. 11-15,
  pushed down to the input by the arguments of Sec. 2.1).  It needs ``S`` times fewer passes.
* ``variant="sample_mean"`` -- Zhou & Kainz 2018, Fig. 15: as ``"mean"``, but the window is set
  to the empirical mean of ``samples`` conditional draws (separates sampling noise from the
  approximation error of Algorithm 2).
* ``variant="gradient"`` -- Algorithm 3 (eq. 37-38): one forward and one backward pass,
  ``p(c|x) - p(c|x') ~= grad p(c|x)^T (x - x')`` with ``x'`` the image with window ``w`` at its
  conditional mean; the window's score is ``grad^T (x - x')`` (log-odds ignored, as in the
  paper; with ``prob="score"`` the gradient of the raw class score).

Probabilities (``prob``): ``"softmax"`` over the outputs (single-label models, the papers'
ImageNet nets), ``"sigmoid"`` of the target's score (multi-label models such as lrpkit's scene
CNN: one independent yes/no per class), or ``"score"``: the raw score itself, with the
difference ``f(x) - f(x \\ x_w)`` instead of log-odds (no Laplace correction; for analysis and
tests).  **Laplace correction** (Zintgraf et al.'s code and paper, Sec. 3.1): probabilities are
mapped to ``(p N + 1) / (N + K)`` before the log-odds, ``N`` the number of training instances
(``laplace_n``), ``K`` the number of classes (``2`` for sigmoid), so ``p = 0`` or ``1`` gives
finite evidence; ``laplace_n=None`` switches it off (then ``p`` is clipped to
``[1e-7, 1 - 1e-7]``).

Windows: top-left corners on a grid of step ``stride`` plus the last position, so every pixel
is covered (a stride above the window is reduced to the window) (:func:`window_positions`).  The
windows of all images (and samples) are streamed
through the model in large memory-capped batches on the model's device, with a tqdm progress
bar.  The model is used in eval mode and left unchanged.
"""
from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
import xarray as xr

from .._device import model_device
from .._progress import iterate
from ..inputs import check_input, eval_mode, resolve_target
from ..params import Boolean, InstanceOf, Interval, IsCallable, Options, declare
from .patch_model import PatchModel, check_sizes, conditional_means, window_positions

__all__ = ["prediction_difference", "window_predictions", "target_probability", "VARIANTS",
           "PROBS", "auto_batch_size", "accumulate_windows", "laplace"]

VARIANTS = ("sampling", "mean", "gradient", "sample_mean")
PROBS = ("softmax", "sigmoid", "score")


def auto_batch_size(x_shape: tuple[int, ...], device: torch.device) -> int:
    """Windows per forward pass when ``batch_size=None``: inputs capped at 8 MiB on the CPU
    (larger batches leave the caches: on the scene CNN 64 windows of 112 x 112 ran 1.3-1.7x
    faster per window than 222), 256 MiB on an accelerator (activations are a small multiple of
    that), at most 1024."""
    per = int(np.prod(x_shape[1:])) * 4
    cap = (256 if torch.device(device).type != "cpu" else 8) * 2 ** 20
    return int(max(1, min(1024, cap // max(per, 1))))


def target_probability(scores: torch.Tensor, target: torch.Tensor, prob: str) -> torch.Tensor:
    """``p(c | x)`` of each row's target from raw scores ``(B, classes)``."""
    if prob == "softmax":
        return torch.softmax(scores, 1).gather(1, target[:, None])[:, 0]
    s = scores.gather(1, target[:, None])[:, 0]
    if prob == "sigmoid":
        return torch.sigmoid(s)
    return s


def laplace(p: torch.Tensor, n: int | None, k: int) -> torch.Tensor:
    """Zintgraf et al.'s Laplace correction ``(p n + 1) / (n + k)`` (``n=None``: clip)."""
    if n is None:
        return p.clamp(1e-7, 1 - 1e-7)
    return (p * n + 1.0) / (n + k)


def _log2_odds(p: torch.Tensor) -> torch.Tensor:
    return torch.log2(p) - torch.log2(1 - p)


def _evidence(p0: torch.Tensor, pw: torch.Tensor, prob: str, laplace_n: int | None,
              n_classes: int) -> torch.Tensor:
    """Weight of evidence of each window: ``p0 (N,)``, ``pw (N, W)`` -> ``(N, W)``."""
    if prob == "score":
        return p0[:, None] - pw
    k = n_classes if prob == "softmax" else 2
    p0, pw = laplace(p0.double(), laplace_n, k), laplace(pw.double(), laplace_n, k)
    return (_log2_odds(p0)[:, None] - _log2_odds(pw)).to(torch.float64)


def accumulate_windows(values: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor,
                       size: tuple[int, int], window: int) -> torch.Tensor:
    """Mean over covering windows: ``values (N, nI, nJ)`` at top-lefts ``rows x cols`` ->
    ``(N, H, W)``.  The window indicator is separable, so the sums are two matrix products
    ``R^T V C`` (``R[a, h] = 1`` iff window row ``a`` covers pixel row ``h``)."""
    h, w = size
    dt = values.dtype
    ar_h = torch.arange(h, device=values.device)
    ar_w = torch.arange(w, device=values.device)
    rows, cols = rows.to(values.device), cols.to(values.device)
    rmat = ((ar_h[None] >= rows[:, None]) & (ar_h[None] < rows[:, None] + window)).to(dt)
    cmat = ((ar_w[None] >= cols[:, None]) & (ar_w[None] < cols[:, None] + window)).to(dt)
    sums = rmat.T @ values @ cmat                       # (N, H, W)
    counts = rmat.sum(0)[:, None] * cmat.sum(0)[None, :]
    if (counts == 0).any():  # cannot happen with window_positions; guard anyway
        raise RuntimeError("some pixels are covered by no window")
    return sums / counts


def _resolve_patch_model(patch_model: PatchModel | None, x: torch.Tensor, window: int, outer: int,
                         marginal: bool, joint_rgb: bool) -> PatchModel:
    if patch_model is None:
        warnings.warn("pda: no patch_model given, fitting the conditional Gaussian on the images "
                      "being explained; the intended use is a PatchModel fitted on training images "
                      "(lrpkit.pda.PatchModel(window, outer).fit(train_images))",
                      UserWarning, stacklevel=4)
        return PatchModel(window, outer, joint_rgb=joint_rgb, marginal=marginal).fit(x.detach().cpu())
    if not isinstance(patch_model, PatchModel):
        raise TypeError(f"patch_model must be a lrpkit.pda.PatchModel or None, "
                        f"got {type(patch_model).__name__}")
    patch_model.check_compatible(window, outer, x.shape[1])
    return patch_model


def _forward(model: torch.nn.Module, xb: torch.Tensor, state: dict) -> torch.Tensor:
    """``model(xb)``; on the CPU in channels-last memory layout (the same values; oneDNN's
    convolutions ran 1.5-2x faster on it for the scene CNN), falling back to a contiguous batch
    for good once a model cannot take one (e.g. it calls ``.view`` on its input)."""
    if state.get("channels_last", True) and xb.dim() == 4 and xb.device.type == "cpu":
        try:
            return model(xb.contiguous(memory_format=torch.channels_last))
        except RuntimeError:
            state["channels_last"] = False
    return model(xb.contiguous())


class _WindowStream:
    """Streams (image, window, sample) jobs through the model in batches.

    Conditional means are computed one image chunk at a time (memory stays bounded for many
    images); each batch copies its images, writes every job's window (mean + ``L z`` for
    samples) with one indexed assignment, and runs one forward pass (channels-last on the CPU,
    :func:`_forward`).
    """

    def __init__(self, model, x, target, pm, rows, cols, prob, batch_size, device, progress,
                 desc):
        self.model, self.x, self.target, self.pm = model, x, target, pm
        self.rows, self.cols, self.prob = rows.to(device), cols.to(device), prob
        self.batch, self.device, self.progress, self.desc = batch_size, device, progress, desc
        self.k = pm.window
        n = x.shape[0]
        self.nw = len(rows) * len(cols)
        # image chunk for conditional means: ~64 MiB of means at a time
        per_img = self.nw * x.shape[1] * self.k * self.k * x.element_size()
        self.chunk = int(max(1, min(n, (64 * 2 ** 20) // max(per_img, 1))))
        self._cm_start = -1
        self._cm = None
        self._cfg = None
        self._keys = None
        self._chols: dict = {}
        self._layout: dict = {}

    def _means(self, n0: int, n1: int):
        """Means ``(n1 - n0, W, C, k, k)`` of images ``n0..n1-1`` (within one cached chunk)."""
        start = (n0 // self.chunk) * self.chunk
        if start != self._cm_start:
            stop = min(self.x.shape[0], start + self.chunk)
            cm, cfg, keys = conditional_means(self.pm, self.x[start:stop], self.rows, self.cols)
            self._cm = cm.reshape(stop - start, self.nw, *cm.shape[3:])
            self._cfg, self._keys, self._cm_start = cfg.reshape(-1).to(self.device), keys, start
        return self._cm

    def _chol(self, key):
        """``L^T`` of the conditional covariances, groups stacked: ``(G, D, D)``."""
        if key not in self._chols:
            self._chols[key] = torch.stack([cp.L.T for cp in self.pm.conditional(*key)]).to(
                self.device, self.x.dtype)
        return self._chols[key]

    def _spans(self, samples: int, select: torch.Tensor | None) -> list[tuple[int, int]]:
        """Job ranges ``[j0, j1)`` of at most ``batch`` jobs, none crossing a conditional-mean
        chunk (jobs are ``pair * samples + s``; pairs ``image * W + window`` or ``select``)."""
        n_pairs = self.x.shape[0] * self.nw if select is None else len(select)
        total = n_pairs * samples
        per = self.chunk * self.nw                       # pairs of one image chunk
        n_chunks = -(-self.x.shape[0] // self.chunk)
        cuts = [b * per for b in range(n_chunks + 1)]
        if select is not None:
            cuts = torch.searchsorted(select.cpu(), torch.tensor(cuts)).tolist()
        bounds = sorted({min(c * samples, total) for c in cuts} | {0, total})
        spans = []
        for a, b in zip(bounds[:-1], bounds[1:]):
            spans += [(j, min(b, j + self.batch)) for j in range(a, b, self.batch)]
        return spans

    def run(self, samples: int, generator: torch.Generator | None, keep: bool = False,
            average: int = 0, select: torch.Tensor | None = None) -> torch.Tensor:
        """Mean over ``samples`` of ``f(c | x with window w replaced)``: ``(N, W)`` float64
        (``keep=True``: every sample, ``(N, W, samples)``).
        ``generator=None``: the conditional mean (no noise); ``average=S``: one pass per window
        on the empirical mean of ``S`` draws (Zhou & Kainz 2018, Fig. 15).  ``select``: sorted
        flat ``image * W + window`` indices: only these pairs are computed, and the result is
        ``(P,)`` (``keep``: ``(P, samples)``) in their order."""
        x, dev, k = self.x, self.device, self.k
        n, c = x.shape[:2]
        if select is not None:
            select = torch.as_tensor(select, dtype=torch.long, device=dev)
            if len(select) and (bool((select[1:] <= select[:-1]).any()) or int(select[0]) < 0
                                or int(select[-1]) >= n * self.nw):
                raise ValueError("select must hold sorted, distinct image * W + window indices")
        n_pairs = n * self.nw if select is None else len(select)
        total = n_pairs * samples
        sums = torch.zeros(n * self.nw, dtype=torch.float64, device=dev)
        kept = torch.empty(total if keep else 0, dtype=torch.float64, device=dev)
        di = torch.arange(k, device=dev)
        ch = torch.arange(c, device=dev)
        hw, wd = x.shape[-2] * x.shape[-1], x.shape[-1]
        chw = c * hw
        groups = self.pm.channel_groups()
        spans = self._spans(samples, select)
        for j0, j1 in iterate(spans, self.progress, desc=self.desc,
                              disable=len(spans) < 20):
            jobs = torch.arange(j0, j1, device=dev)
            pair = jobs // samples if select is None else select[jobs // samples]
            img = pair // self.nw
            win = pair % self.nw
            cm = self._means(int(img[0]), int(img[-1]) + 1)
            vals = cm.reshape(-1, c, k, k).index_select(
                0, (img - self._cm_start) * self.nw + win)            # (B, C, k, k)
            if generator is not None:
                vals = vals.clone()
                cfg = self._cfg[win]
                if average:
                    z = torch.randn(len(jobs), int(average), c * k * k, generator=generator,
                                    device=dev, dtype=x.dtype).mean(1)
                else:
                    z = torch.randn(len(jobs), c * k * k, generator=generator, device=dev,
                                    dtype=x.dtype)
                g = len(groups)
                for ci in torch.unique(cfg).tolist():
                    sel = (cfg == ci).nonzero(as_tuple=True)[0]
                    lt = self._chol(self._keys[ci])                  # (G, D, D)
                    zz = z.index_select(0, sel).reshape(len(sel), g, 1, -1)
                    noise = torch.matmul(zz, lt).reshape(len(sel), c, k, k)
                    vals.index_add_(0, sel, noise)
            r = self.rows[win // len(self.cols)]
            s = self.cols[win % len(self.cols)]
            xb = x.index_select(0, img)                               # copy (B, C, H, W)
            b = torch.arange(len(jobs), device=dev)
            flat = (b[:, None, None, None] * chw + ch[None, :, None, None] * hw
                    + (r[:, None] + di[None])[:, None, :, None] * wd
                    + (s[:, None] + di[None])[:, None, None, :])
            xb.view(-1).index_copy_(0, flat.reshape(-1), vals.reshape(-1))
            f = target_probability(_forward(self.model, xb, self._layout), self.target[img],
                                   self.prob)
            sums.index_add_(0, pair, f.double())
            if keep:
                kept[j0:j1] = f.double()
        if select is not None:
            return kept.reshape(n_pairs, samples) if keep else sums[select] / samples
        if keep:
            return kept.reshape(n, self.nw, samples)
        return (sums / samples).reshape(n, self.nw)


@declare(variant=Options(*VARIANTS), window=Interval(int, 1, None), outer=Interval(int, 1, None),
         samples=Interval(int, 1, None), stride=Interval(int, 1, None),
         batch_size=[Interval(int, 1, None), None],
         patch_model=[InstanceOf(PatchModel, name="a fitted PatchModel"), None],
         prob=Options(*PROBS), seed=Interval(int, 0, None), laplace_n=[Interval(int, 1, None), None],
         marginal=Boolean(), joint_rgb=Boolean(), progress=[Boolean(), IsCallable()])
def prediction_difference(model: torch.nn.Module, x: torch.Tensor, target: torch.Tensor, *,
                          variant: str = "sampling", window: int = 10, outer: int = 18,
                          samples: int = 10, stride: int = 1, batch_size: int | None = None,
                          patch_model: PatchModel | None = None, prob: str = "softmax",
                          seed: int = 0, laplace_n: int | None = 1000, marginal: bool = False,
                          joint_rgb: bool = False, progress: bool = True) -> torch.Tensor:
    """PDA heatmap ``(N, C, H, W)`` (the per-pixel evidence spread evenly over the channels, so
    the channel sum is the evidence map).  See the module docstring for the variants.

    window / outer: ``k`` / ``l`` (Zintgraf et al. 2017 and Zhou & Kainz 2018: 10 / 18); samples: ``S`` per
    window for ``"sampling"`` (10); stride: step of the window grid (1 = every position, as in
    the papers); patch_model: a fitted :class:`PatchModel` for these sizes (None: fit one on
    ``x``, with a warning); marginal / joint_rgb: only used when fitting; laplace_n: ``N`` of
    the Laplace correction (default 1000; None = off); seed: the sampling draws.
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    x = check_input(x)
    check_sizes(window, outer, tuple(x.shape[-2:]), stride)
    target = resolve_target(model, x, target)   # int, sequence, tensor or "pred"
    pm = _resolve_patch_model(patch_model, x, window, outer, marginal, joint_rgb)
    device = model_device(model, default=x.device)
    xd = x.detach().to(device)
    td = target.to(device)
    n, c, h, w = x.shape
    rows = window_positions(h, window, stride)
    cols = window_positions(w, window, stride)
    if batch_size is None:
        batch_size = auto_batch_size(tuple(x.shape), device)
    with eval_mode(model):
        if variant == "gradient":
            scores = _gradient_scores(model, xd, td, pm, rows, cols, prob)
        else:
            with torch.no_grad():
                out = model(xd)
                n_classes = out.shape[1]
                p0 = target_probability(out, td, prob).double()
                stream = _WindowStream(model, xd, td, pm, rows, cols, prob, int(batch_size),
                                       device, progress, f"pda {variant}")
                if variant == "mean":
                    pw = stream.run(1, None)
                elif variant == "sample_mean":
                    gen = torch.Generator(device=device).manual_seed(int(seed))
                    pw = stream.run(1, gen, average=int(samples))
                else:
                    gen = torch.Generator(device=device).manual_seed(int(seed))
                    pw = stream.run(int(samples), gen)
                scores = _evidence(p0, pw, prob, laplace_n, n_classes)
            scores = scores.reshape(n, len(rows), len(cols))
    we = accumulate_windows(scores.double(), rows, cols, (h, w), window)
    rel = (we / c)[:, None].expand(n, c, h, w)
    return rel.to(device=x.device, dtype=x.dtype).contiguous()


def _gradient_scores(model, xd, td, pm, rows, cols, prob) -> torch.Tensor:
    """Algorithm 3: ``grad^T (x - x')`` per window, ``(N, nI, nJ)``."""
    xg = xd.clone().requires_grad_(True)
    with torch.enable_grad():
        f = target_probability(model(xg), td, prob)
        (g,) = torch.autograd.grad(f.sum(), xg)
    k = pm.window
    n, c, h, w = xd.shape
    dev = xd.device
    with torch.no_grad():
        cm, _, _ = conditional_means(pm, xd, rows, cols)          # (N, nI, nJ, C, k, k)
        r, s = rows.to(dev), cols.to(dev)
        # grad^T (x - x') = sum_window g x - sum_window g mu_w: a box sum, and a dot product
        # of the gathered gradient windows with the conditional means
        gx = (g.double() * xd.double()).sum(1, keepdim=True)
        box = torch.nn.functional.avg_pool2d(gx, k, stride=1)[:, 0] * (k * k)
        first = box.index_select(1, r).index_select(2, s)            # (N, nI, nJ)
        di = torch.arange(k, device=dev)
        off = (torch.arange(c, device=dev)[:, None, None] * (h * w) + di[None, :, None] * w
               + di[None, None, :]).reshape(-1)                        # (C k k,)
        pos = (r[:, None] * w + s[None, :]).reshape(-1)
        gw = g.reshape(n, -1).index_select(1, (pos[:, None] + off[None, :]).reshape(-1))
        second = (gw.reshape(n, len(pos), -1).double()
                  * cm.reshape(n, len(pos), -1).double()).sum(-1).reshape(n, len(r), len(s))
        return first - second


def window_predictions(model: torch.nn.Module, x: torch.Tensor, target: Any,
                       patch_model: PatchModel, row: int, col: int, samples: int = 500,
                       prob: str = "softmax", seed: int = 0, batch_size: int | None = None,
                       progress: bool = True) -> xr.Dataset:
    """Predictions at one fixed window (Zhou & Kainz 2018, Fig. 11 and 16).

    For every image: ``p_x`` = ``p(c | x)``; ``p_mean`` = ``p(c | x')`` with the window at its
    conditional mean (Algorithm 2, the normalised geometric mean); ``p_sample[s]`` =
    ``p(c | x_s)`` for ``samples`` conditional draws (Algorithm 1 averages them).  Returns a
    Dataset with dims ``image`` and ``sample``.
    """
    x = check_input(x)
    if prob not in PROBS:
        raise ValueError(f"prob must be one of {PROBS}, got {prob!r}")
    t = resolve_target(model, x, target)
    if not isinstance(patch_model, PatchModel):
        raise TypeError("patch_model must be a fitted lrpkit.pda.PatchModel")
    k = patch_model.window
    patch_model.check_compatible(k, patch_model.outer, x.shape[1])
    h, w = x.shape[-2:]
    if not (0 <= row <= h - k and 0 <= col <= w - k):
        raise ValueError(f"window at ({row}, {col}) does not fit the {h}x{w} image (window {k})")
    device = model_device(model, default=x.device)
    xd, td = x.detach().to(device), t.to(device)
    rows, cols = torch.tensor([row]), torch.tensor([col])
    bs = batch_size or auto_batch_size(tuple(x.shape), device)
    with eval_mode(model), torch.no_grad():
        p_x = target_probability(model(xd), td, prob).double()
        stream = _WindowStream(model, xd, td, patch_model, rows, cols, prob, bs, device, False, "")
        p_mean = stream.run(1, None)[:, 0]
        gen = torch.Generator(device=device).manual_seed(int(seed))
        stream.progress, stream.desc = progress, "window samples"
        p_s = stream.run(int(samples), gen, keep=True)[:, 0].cpu()
    return xr.Dataset(
        {"p_x": ("image", p_x.cpu().numpy()), "p_mean": ("image", p_mean.cpu().numpy()),
         "p_sample": (("image", "sample"), p_s.numpy())},
        coords={"image": np.arange(x.shape[0]), "sample": np.arange(samples),
                "target": ("image", t.cpu().numpy())},
        attrs={"row": int(row), "col": int(col), "window": k, "outer": patch_model.outer,
               "prob": prob, "seed": int(seed)})
