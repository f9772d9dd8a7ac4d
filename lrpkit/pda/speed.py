"""Speed-ups of the fast PDA variants, measured image by image (Zhou & Kainz 2018, Fig. 12).

Zhou & Kainz 2018 report Algorithm 2 (the conditional mean) about 10x faster than Algorithm 1
(sampling, ``S = 10``), and Algorithm 3 (the gradient form) faster still.  A speed-up measured
on a handful of images is itself a sample, so each image is timed on its own
(:func:`per_image_seconds`, CPU time of this process: other jobs on shared cores do not count)
and the ratio gets a bootstrap interval over the images (:func:`speedup_interval`)::

    from lrpkit.pda.speed import per_image_seconds, speedup_interval
    h_s, t_s = per_image_seconds(partial(lrpkit.explain, model, variant="sampling", ...), x, t)
    h_m, t_m = per_image_seconds(partial(lrpkit.explain, model, variant="mean", ...), x, t)
    speedup_interval(t_s, t_m, slow_windows=144, fast_windows=729)   # per-window ratio
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

__all__ = ["per_image_seconds", "speedup_interval"]


def per_image_seconds(explain: Callable[..., torch.Tensor], x: torch.Tensor, target: Any
                      ) -> tuple[torch.Tensor, np.ndarray]:
    """``explain(x[i:i+1], target[i:i+1])`` image by image: the stacked heatmaps and the CPU
    seconds (``time.process_time``) each image took, ``(N,)``."""
    if x.dim() != 4:
        raise ValueError(f"x must be (N, C, H, W) images, got shape {tuple(x.shape)}")
    t = torch.as_tensor(target, dtype=torch.long).reshape(-1)
    if t.numel() == 1 and x.shape[0] > 1:
        t = t.expand(x.shape[0])
    if t.numel() != x.shape[0]:
        raise ValueError(f"target must give one class per image ({x.shape[0]}), got {t.numel()}")
    maps, secs = [], np.empty(x.shape[0])
    for i in range(x.shape[0]):
        t0 = time.process_time()
        maps.append(explain(x[i:i + 1], t[i:i + 1]))
        secs[i] = time.process_time() - t0
    return torch.cat(maps), secs


def speedup_interval(slow_seconds: Any, fast_seconds: Any, *, slow_windows: int = 1,
                     fast_windows: int = 1, n_boot: int = 2000, ci: float = 0.95,
                     seed: int = 0) -> Any:
    """The speed-up ``sum(slow) / sum(fast)`` over the same images with its paired bootstrap
    interval (:func:`lrpkit.evaluate.intervals.ratio_interval`).

    ``slow_windows`` / ``fast_windows``: windows per image of each run; the times are divided by
    them first, so runs at different strides compare per window (the speed-up at equal strides).
    """
    from ..evaluate.intervals import ratio_interval

    for name, v in (("slow_windows", slow_windows), ("fast_windows", fast_windows)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    s = np.asarray(slow_seconds, np.float64).ravel() / slow_windows
    f = np.asarray(fast_seconds, np.float64).ravel() / fast_windows
    if s.shape != f.shape:
        raise ValueError(f"slow_seconds and fast_seconds must time the same images, got {s.size} "
                         f"and {f.size}")
    return ratio_interval(s, f, n_boot=n_boot, ci=ci, seed=seed)
