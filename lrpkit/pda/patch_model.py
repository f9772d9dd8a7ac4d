"""Gaussian patch model for Prediction Difference Analysis (conditional sampling).

Zintgraf, Cohen, Adel & Welling, "Visualizing Deep Neural Network Decisions: Prediction
Difference Analysis" (ICLR 2017), Sec. 3.2, replace a ``k x k`` window ``x_w`` by samples from
``p(x_w | x_hat \\ x_w)``: a multivariate Gaussian over the ``l x l`` *outer patch* ``x_hat``
that contains the window, conditioned on the rest of that patch.  Zhou & Kainz
(2018; an approximation of Zintgraf et al. 2017, Algorithm 1-3) replace the
samples by the conditional mean.  Both need, for every window position,

* the conditional mean   ``mu_w = mu_I + A (x_R - mu_R)``,  ``A = S_IR S_RR^-1``
  (the Gaussian conditioning formula), and
* the Cholesky factor ``L`` of the conditional covariance ``S_II - A S_RI``,

where ``I`` indexes the window inside the outer patch and ``R`` the rest of the patch.  The
Gaussian is stationary (one mean and covariance for every patch position), so ``A``, the
offset ``b = mu_I - A mu_R`` and ``L`` are **computed once** and are the same for every
interior window: the conditional means of all windows are one convolution-like operation
(:func:`conditional_means`).  Windows at the image border use the outer patch **shrunk to the
image** (the marginal Gaussian of the patch pixels that exist); each of the few border
configurations gets its own ``(A, b, L)``, computed once and cached.

``joint_rgb=False`` (default, as Zintgraf et al.'s per-channel setting described in the issue)
models each colour channel's ``l x l`` patch with its own Gaussian (``l^2`` dims); with
``joint_rgb=True`` one Gaussian covers all channels (``C l^2`` dims, cross-channel
correlations kept).  ``marginal=True`` is the marginal variant ``p(x_w)`` (window given
nothing: ``A = 0``, ``mu_w = mu_I``), used by Zintgraf et al. 2017 and Zhou & Kainz 2018
(Fig. 13) where pixels are weakly dependent.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from collections.abc import Mapping

import numpy as np
import torch

from ..results import atomic_path

__all__ = ["PatchModel", "CondParams", "window_positions", "check_sizes", "FORMAT"]

#: tag stored in every saved patch model
FORMAT = "lrpkit.pda.PatchModel/1"


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def check_sizes(window: Any, outer: Any, image_hw: tuple[int, int] | None = None,
                stride: Any = 1) -> None:
    """Raise ``ValueError``/``TypeError`` naming the bad argument among window / outer / stride."""
    for name, v in (("window", window), ("outer", outer), ("stride", stride)):
        if not _is_int(v):
            raise TypeError(f"{name} must be an int, got {v!r}")
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    if outer <= window:
        raise ValueError(f"outer (={outer}) must be larger than window (={window}): the outer "
                         f"patch holds the window and the pixels it is conditioned on")
    if image_hw is not None:
        h, w = image_hw
        if outer > min(h, w):
            raise ValueError(f"outer (={outer}) is larger than the image ({h}x{w})")


def window_positions(size: int, window: int, stride: int = 1) -> torch.Tensor:
    """Top-left coordinates of the windows along one image side: ``0, s, 2s, ...`` plus
    ``size - window`` when the grid misses it, so every pixel is covered at any stride (a
    stride above the window is reduced to the window: windows then tile the side)."""
    if window > size:
        raise ValueError(f"window (={window}) is larger than the image side ({size})")
    if not _is_int(stride) or stride < 1:
        raise ValueError(f"stride must be an int >= 1, got {stride!r}")
    step = min(int(stride), int(window))
    pos = list(range(0, size - window + 1, step))
    if pos[-1] != size - window:
        pos.append(size - window)
    return torch.tensor(pos, dtype=torch.long)


@dataclass
class CondParams:
    """Conditioning of the window on the (possibly shrunk) rest of its outer patch, one group.

    ``rest_ch / rest_dr / rest_dc``: channel and offsets (relative to the window's top-left)
    of the conditioning pixels; ``A (D_I, D_R)``; ``b (D_I,)``; ``L (D_I, D_I)`` lower
    Cholesky factor of the conditional covariance; inner pixels ordered (channel, row, col).
    """

    rest_ch: torch.Tensor
    rest_dr: torch.Tensor
    rest_dc: torch.Tensor
    A: torch.Tensor
    b: torch.Tensor
    L: torch.Tensor
    cov: torch.Tensor  # conditional covariance (D_I, D_I)


class PatchModel:
    """Gaussian over ``outer x outer`` patches; conditional of the inner window given the rest.

    Parameters
    ----------
    window : side ``k`` of the marginalised window (Zintgraf et al.: 10 on ImageNet).
    outer : side ``l > k`` of the outer patch the window is conditioned on (Zintgraf et al.: 18;
        the window sits in its centre, the extra pixel of an odd ``l - k`` goes bottom/right).
    joint_rgb : one Gaussian over all channels instead of one per channel.
    marginal : the marginal variant ``p(x_w)`` (conditions on nothing).
    reg : ridge added to the covariance, ``reg * mean(diag)``, so that every conditional is
        well defined (patches of natural images are strongly correlated).

    ``fit(images)`` estimates mean and covariance from ``(N, C, H, W)`` images in the model's
    input space (the training images; :func:`lrpkit.explain` with ``method="pda"`` and
    ``patch_model=None`` fits on the explained images, with a warning).
    """

    def __init__(self, window: int = 10, outer: int = 18, joint_rgb: bool = False,
                 marginal: bool = False, reg: float = 1e-4):
        check_sizes(window, outer)
        if not float(reg) >= 0:
            raise ValueError(f"reg must be >= 0, got {reg!r}")
        self.window, self.outer = int(window), int(outer)
        self.joint_rgb, self.marginal, self.reg = bool(joint_rgb), bool(marginal), float(reg)
        self.pad_before = (self.outer - self.window) // 2
        self.pad_after = self.outer - self.window - self.pad_before
        self.mean: torch.Tensor | None = None   # (G, D) float64
        self.cov: torch.Tensor | None = None    # (G, D, D) float64, regularised
        self.channels: int | None = None
        self.n_images = 0
        self.n_patches = 0
        self.meta: dict[str, Any] = {}
        self._cache: dict[tuple, list[CondParams]] = {}
        self._dev_cache: dict[tuple, tuple] = {}
        self._plan_cache: dict[tuple, tuple] = {}

    # ------------------------------------------------------------------ fitting
    @property
    def fitted(self) -> bool:
        return self.mean is not None

    def __repr__(self) -> str:
        state = (f"fitted on {self.n_images} images / {self.n_patches} patches"
                 if self.fitted else "not fitted")
        return (f"PatchModel(window={self.window}, outer={self.outer}, joint_rgb={self.joint_rgb}, "
                f"marginal={self.marginal}; {state})")

    def channel_groups(self) -> list[list[int]]:
        """The channels modelled jointly: one group of all (``joint_rgb``) or one per channel."""
        c = int(self.channels)
        return [list(range(c))] if self.joint_rgb else [[i] for i in range(c)]

    def fit(self, images: torch.Tensor | np.ndarray, max_patches: int = 20000,
            seed: int = 0) -> PatchModel:
        """Estimate the patch Gaussian from ``images (N, C, H, W)`` (at most ``max_patches``
        outer patches at random positions, spread evenly over the images; seeded)."""
        x = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images)
        if x.dim() != 4 or x.shape[0] < 1:
            raise ValueError(f"images must have shape (N, C, H, W) with N >= 1, got {tuple(x.shape)}")
        if not torch.is_floating_point(x):
            raise TypeError(f"images must be floating point (the model's input space), got {x.dtype}")
        n, c, h, w = x.shape
        l = self.outer
        if l > min(h, w):
            raise ValueError(f"outer (={l}) is larger than the images ({h}x{w})")
        if not _is_int(max_patches) or max_patches < 1:
            raise ValueError(f"max_patches must be an int >= 1, got {max_patches!r}")
        x = x.detach().to("cpu", torch.float64)
        self.channels = int(c)
        n_pos = (h - l + 1) * (w - l + 1)
        per_img = max(1, min(n_pos, -(-int(max_patches) // n)))
        gen = torch.Generator().manual_seed(int(seed))
        d = l * l
        sums = torch.zeros(c, d, dtype=torch.float64)
        sq = torch.zeros(c, c, d, d, dtype=torch.float64) if self.joint_rgb else \
            torch.zeros(c, d, d, dtype=torch.float64)
        count = 0
        ar = torch.arange(l)
        for i in range(n):
            idx = torch.randperm(n_pos, generator=gen)[:per_img]
            r, s = idx // (w - l + 1), idx % (w - l + 1)
            p = x[i][:, (r[:, None, None] + ar[None, :, None]), (s[:, None, None] + ar[None, None, :])]
            p = p.reshape(c, -1, d)                      # (C, P, D)
            sums += p.sum(1)
            if self.joint_rgb:
                q = p.permute(1, 0, 2).reshape(p.shape[1], c * d)
                sq += (q.T @ q).reshape(c, d, c, d).permute(0, 2, 1, 3)
            else:
                sq += torch.einsum("cpd,cpe->cde", p, p)
            count += p.shape[1]
        mean = sums / count
        if self.joint_rgb:
            second = sq.permute(0, 2, 1, 3).reshape(c * d, c * d) / count
            mu = mean.reshape(1, c * d)
            cov = (second - mu.T @ mu)[None]
        else:
            mu = mean
            cov = sq / count - mu[:, :, None] * mu[:, None, :]
        cov = 0.5 * (cov + cov.transpose(-1, -2))
        if count > 1:
            cov = cov * count / (count - 1)
        diag = cov.diagonal(dim1=-2, dim2=-1)
        ridge = (self.reg * diag.mean(-1).clamp_min(1e-12))[:, None, None]
        cov = cov + ridge * torch.eye(cov.shape[-1], dtype=cov.dtype)
        self.mean, self.cov = mu.contiguous(), cov.contiguous()
        self.n_images, self.n_patches = int(n), int(count)
        self._cache, self._dev_cache, self._plan_cache = {}, {}, {}
        return self

    # ------------------------------------------------------------------ conditioning
    def _require_fitted(self) -> None:
        if not self.fitted:
            raise ValueError("patch_model is not fitted: call PatchModel(...).fit(images) first")

    def conditional(self, bt: int | None = None, ba: int | None = None, bl: int | None = None,
                    br: int | None = None) -> list[CondParams]:
        """Per-group :class:`CondParams` for an outer patch that keeps ``bt / ba / bl / br``
        pixels above / below / left / right of the window (default: all, the interior case;
        fewer at the image border, where the patch is shrunk to the image)."""
        self._require_fitted()
        pb, pa = self.pad_before, self.pad_after
        bt = pb if bt is None else int(bt)
        ba = pa if ba is None else int(ba)
        bl = pb if bl is None else int(bl)
        br = pa if br is None else int(br)
        if not (0 <= bt <= pb and 0 <= ba <= pa and 0 <= bl <= pb and 0 <= br <= pa):
            raise ValueError(f"border amounts ({bt}, {ba}, {bl}, {br}) out of range for "
                             f"window={self.window}, outer={self.outer}")
        key = (bt, ba, bl, br)
        if key not in self._cache:
            # small dense solves: one thread is fastest (no OpenMP start-up / oversubscription)
            threads = torch.get_num_threads()
            try:
                torch.set_num_threads(1)
                self._cache[key] = [self._condition(g, key) for g in range(len(self.channel_groups()))]
            finally:
                torch.set_num_threads(threads)
        return self._cache[key]

    def _stacked(self, key: tuple, device: torch.device, dtype: torch.dtype, h: int, w: int):
        """``(offsets (G, R), A^T (G, R, D), b (G, D))`` of a border configuration on a device:
        flat offsets of the conditioning pixels in an ``h x w`` image relative to the window's
        top-left, groups stacked (the per-channel groups share their spatial offsets)."""
        ck = (key, str(device), dtype, h, w)
        hit = self._dev_cache.get(ck)
        if hit is None:
            params = self.conditional(*key)
            off = torch.stack([cp.rest_ch * (h * w) + cp.rest_dr * w + cp.rest_dc for cp in params])
            a_t = torch.stack([cp.A.T for cp in params])
            b = torch.stack([cp.b for cp in params])
            hit = (off.to(device), a_t.to(device, dtype).contiguous(), b.to(device, dtype))
            self._dev_cache[ck] = hit
        return hit

    def precompute(self, height: int, width: int) -> PatchModel:
        """Compute (and cache) the conditional parameters of every border configuration of an
        ``height x width`` image, so that later calls only apply them."""
        k, pb, pa = self.window, self.pad_before, self.pad_after
        rk = set(_border_keys(height, torch.arange(height - k + 1), k, pb, pa))
        ck = set(_border_keys(width, torch.arange(width - k + 1), k, pb, pa))
        for r in rk:
            for c in ck:
                self.conditional(r[0], r[1], c[0], c[1])
        return self

    def _condition(self, g: int, key: tuple[int, int, int, int]) -> CondParams:
        bt, ba, bl, br = key
        k, l, pb = self.window, self.outer, self.pad_before
        chans = self.channel_groups()[g]
        mu, cov = self.mean[g], self.cov[g]
        inner, rest, rch, rdr, rdc = [], [], [], [], []
        for ci, ch in enumerate(chans):
            for r in range(pb - bt, pb + k + ba):
                for s in range(pb - bl, pb + k + br):
                    i = ci * l * l + r * l + s
                    if pb <= r < pb + k and pb <= s < pb + k:
                        inner.append(i)
                    elif not self.marginal:
                        rest.append(i)
                        rch.append(ch)
                        rdr.append(r - pb)
                        rdc.append(s - pb)
        inner_t = torch.tensor(inner, dtype=torch.long)
        rest_t = torch.tensor(rest, dtype=torch.long)
        s_ii = cov[inner_t][:, inner_t]
        if rest:
            s_rr = cov[rest_t][:, rest_t]
            s_ir = cov[inner_t][:, rest_t]
            chol_rr = torch.linalg.cholesky(s_rr)
            a = torch.cholesky_solve(s_ir.T, chol_rr).T          # S_IR S_RR^-1
            b = mu[inner_t] - a @ mu[rest_t]
            ccov = s_ii - a @ s_ir.T
        else:
            a = torch.zeros(len(inner), 0, dtype=cov.dtype)
            b = mu[inner_t].clone()
            ccov = s_ii.clone()
        ccov = 0.5 * (ccov + ccov.T)
        jitter = 1e-10 * float(ccov.diagonal().mean().clamp_min(1e-12))
        eye = torch.eye(len(inner), dtype=cov.dtype)
        for _ in range(8):
            try:
                lfac = torch.linalg.cholesky(ccov + jitter * eye)
                break
            except RuntimeError:
                jitter *= 100
        else:  # pragma: no cover - covariance is regularised in fit
            raise ValueError("conditional covariance is not positive definite; increase reg")
        return CondParams(torch.tensor(rch, dtype=torch.long), torch.tensor(rdr, dtype=torch.long),
                          torch.tensor(rdc, dtype=torch.long), a, b, lfac, ccov)

    def check_compatible(self, window: int, outer: int, channels: int) -> None:
        """Raise ``ValueError`` naming the mismatch when this model does not fit the request."""
        self._require_fitted()
        if self.window != window or self.outer != outer:
            raise ValueError(f"patch_model was fitted for window={self.window}, outer={self.outer} "
                             f"but window={window}, outer={outer} was asked; fit a PatchModel for "
                             f"these sizes")
        if self.channels != channels:
            raise ValueError(f"patch_model was fitted on images with {self.channels} channels, "
                             f"x has {channels}")

    # ------------------------------------------------------------------ save / load
    def save(self, path: str | os.PathLike, meta: Mapping[str, Any] | None = None) -> Path:
        """Write the fitted model atomically to an ``.npz`` file.  ``meta`` records the
        classifier and input space it belongs to (e.g. ``{"model": "cnn/cnn.pt",
        "input": "normalised 112x112 centre crops"}``); it is kept in ``self.meta``."""
        self._require_fitted()
        path = Path(path)
        if meta is not None:
            self.meta = dict(meta)
        info = {"format": FORMAT, "window": self.window, "outer": self.outer,
                "joint_rgb": self.joint_rgb, "marginal": self.marginal, "reg": self.reg,
                "channels": self.channels, "n_images": self.n_images, "n_patches": self.n_patches,
                "meta": self.meta}
        with atomic_path(path, suffix=".npz") as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, mean=self.mean.numpy(), cov=self.cov.numpy(),
                         info=np.array(json.dumps(info, default=str)))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, model_meta: Mapping[str, Any] | None = None) -> PatchModel:
        """Read a model written by :meth:`save`.  With ``model_meta``, each of its keys must
        match the saved ``meta`` (``ValueError`` naming the key otherwise): a patch model is
        only valid for the classifier / input space it was fitted for."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no patch model at {path}")
        with np.load(path, allow_pickle=False) as z:
            info = json.loads(str(z["info"]))
            if info.get("format") != FORMAT:
                raise ValueError(f"{path} is not a lrpkit patch model (format {info.get('format')!r})")
            pm = cls(info["window"], info["outer"], info["joint_rgb"], info["marginal"], info["reg"])
            pm.mean = torch.from_numpy(z["mean"].astype(np.float64))
            pm.cov = torch.from_numpy(z["cov"].astype(np.float64))
        pm.channels, pm.n_images, pm.n_patches = info["channels"], info["n_images"], info["n_patches"]
        pm.meta = dict(info.get("meta") or {})
        for key, val in (model_meta or {}).items():
            if key not in pm.meta or pm.meta[key] != val:
                raise ValueError(f"patch model {path} belongs to {key}={pm.meta.get(key)!r}, "
                                 f"not {key}={val!r}")
        return pm

    @staticmethod
    def default_path(models_dir: str | os.PathLike, window: int = 10, outer: int = 18,
                     joint_rgb: bool = False, marginal: bool = False) -> Path:
        """Where a patch model is kept beside the classifiers: ``<models>/pda/patch_w10_o18.npz``."""
        tag = ("_rgb" if joint_rgb else "") + ("_marginal" if marginal else "")
        return Path(models_dir) / "pda" / f"patch_w{window}_o{outer}{tag}.npz"


# ---------------------------------------------------------------------------------------------
def _border_keys(size: int, pos: torch.Tensor, k: int, pb: int, pa: int) -> list[tuple[int, int]]:
    return [(min(pb, int(p)), min(pa, size - k - int(p))) for p in pos]


def conditional_means(pm: PatchModel, x: torch.Tensor, rows: torch.Tensor,
                      cols: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list]:
    """Conditional means of all windows at once.

    ``x (N, C, H, W)``; windows have top-left ``(rows[a], cols[b])``.  Returns
    ``(means (N, nI, nJ, C, k, k), config (nI, nJ) long, keys)``: ``config`` indexes ``keys``,
    the border configurations ``(bt, ba, bl, br)`` (:meth:`PatchModel.conditional`).

    Per configuration the regression ``b + A x_R`` is applied to every window position at once
    (a gather of the conditioning pixels and one matrix product: the convolution with the
    regression kernel), so the loop runs over the few border configurations, never windows.
    """
    pm._require_fitted()
    n, c, h, w = x.shape
    k = pm.window
    rows = torch.as_tensor(rows, dtype=torch.long)
    cols = torch.as_tensor(cols, dtype=torch.long)
    plan, config, keys = _plan(pm, h, w, rows, cols, x.device, x.dtype)
    out = torch.empty(n, len(rows) * len(cols), c * k * k, dtype=x.dtype, device=x.device)
    xf = x.reshape(n, c * h * w)
    for flat, idx, a, b in plan:
        g, d = b.shape
        p = flat.shape[0]
        if idx is not None:
            # one flat-index gather for all groups (far faster than indexing with 3 index
            # tensors), then one batched product per configuration
            vals = xf.index_select(1, idx).reshape(n, g, p, -1)
            m = torch.matmul(vals, a) + b[None, :, None, :]                 # (N, G, P, D)
        else:
            m = b[None, :, None, :].expand(n, g, p, d)
        out.index_copy_(1, flat, m.transpose(1, 2).reshape(n, p, g * d))
    return out.reshape(n, len(rows), len(cols), c, k, k), config, keys


def _plan(pm: PatchModel, h: int, w: int, rows: torch.Tensor, cols: torch.Tensor,
          device: torch.device, dtype: torch.dtype):
    """Per border configuration: output window indices, flat gather indices of the conditioning
    pixels (groups stacked) and ``(A^T, b)`` on ``device``; cached per image size and grid."""
    ck = (h, w, tuple(rows.tolist()), tuple(cols.tolist()), str(device), dtype)
    hit = pm._plan_cache.get(ck)
    if hit is not None:
        return hit
    k, pb, pa = pm.window, pm.pad_before, pm.pad_after
    rk = _border_keys(h, rows, k, pb, pa)
    ck_ = _border_keys(w, cols, k, pb, pa)
    config = torch.empty(len(rows), len(cols), dtype=torch.long)
    keys: list[tuple[int, int, int, int]] = []
    plan = []
    for rkey in sorted(set(rk)):
        ia = torch.tensor([i for i, kk in enumerate(rk) if kk == rkey], dtype=torch.long)
        for ckey in sorted(set(ck_)):
            jb = torch.tensor([j for j, kk in enumerate(ck_) if kk == ckey], dtype=torch.long)
            key = (rkey[0], rkey[1], ckey[0], ckey[1])
            config[ia[:, None], jb[None, :]] = len(keys)
            keys.append(key)
            off, a, b = pm._stacked(key, device, dtype, h, w)   # (G, R), (G, R, D), (G, D)
            pos = (rows[ia][:, None] * w + cols[jb][None, :]).reshape(-1).to(device)
            idx = (pos[None, :, None] + off[:, None, :]).reshape(-1) if off.shape[1] else None
            flat = (ia[:, None] * len(cols) + jb[None, :]).reshape(-1).to(device)
            plan.append((flat, idx, a, b))
    if len(pm._plan_cache) > 16:
        pm._plan_cache.clear()
    pm._plan_cache[ck] = (plan, config, keys)
    return plan, config, keys
