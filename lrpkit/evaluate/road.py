"""Noisy linear imputation of ROAD (Rong et al., "A Consistent and Efficient Evaluation Strategy
for Attribution Methods", ICML 2022), batched in torch.

ROAD ("RemOve And Debias") replaces removed pixels not by noise or a constant, whose shape would
leak *which* pixels were removed, but by the value its neighbours suggest: each removed pixel
``i`` equals the weighted mean of its 8 neighbours ``N(i)`` inside the image,

    sum_{j in N(i)} w_ij (x_i - x_j) = 0,   w = 1/6 (edge neighbours), 1/12 (diagonal ones),

where neighbours that are kept enter with their known value.  Per image and colour channel this is
one sparse, symmetric, diagonally dominant linear system in the removed pixels (a graph
Laplacian with Dirichlet values from the kept pixels); ROAD then adds ``N(0, noise^2)`` to the
imputed values (``noise = 0.01``).

Every public implementation builds a ``scipy.sparse`` matrix and calls ``spsolve`` one image at a
time on the CPU (:func:`noisy_linear_impute_reference` is that formulation, kept as the test
reference).  :func:`noisy_linear_impute` solves all images and channels at once with conjugate
gradients whose matrix-vector product is 8 shifted slices of the whole batch, on whatever device
the images are on; nothing is built per pixel.

A connected group of removed pixels that touches no kept pixel (e.g. a fully removed image) has
no Dirichlet value: the system is singular there.  CG started from zero leaves such pixels at 0
(the centre of a normalised input space); the scipy reference fails on them.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["NEIGHBOUR_WEIGHTS", "noisy_linear_impute", "noisy_linear_impute_reference"]

#: ``((dy, dx), weight)`` of the 8 neighbours (Rong et al. 2022): 1/6 edge, 1/12 diagonal.
NEIGHBOUR_WEIGHTS: tuple[tuple[tuple[int, int], float], ...] = (
    ((-1, -1), 1 / 12), ((-1, 0), 1 / 6), ((-1, 1), 1 / 12), ((0, -1), 1 / 6),
    ((0, 1), 1 / 6), ((1, -1), 1 / 12), ((1, 0), 1 / 6), ((1, 1), 1 / 12))


def _check(x: Any, mask: Any) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        raise ValueError(f"x must be a tensor (N, C, H, W), got {getattr(x, 'shape', type(x))}")
    if not torch.is_floating_point(x):
        raise TypeError(f"x must be a floating-point tensor, got dtype {x.dtype}")
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"mask must be a bool tensor, got {type(mask).__name__}")
    if mask.dim() == 3:
        mask = mask[:, None]
    if mask.dim() != 4 or mask.shape[1] != 1 or mask.shape[0] != x.shape[0] \
            or mask.shape[-2:] != x.shape[-2:]:
        raise ValueError(f"mask must be (N, H, W) or (N, 1, H, W) matching x {tuple(x.shape)}, "
                         f"got {tuple(mask.shape)}")
    return x, mask.to(device=x.device, dtype=torch.bool)


def _neighbour_sum(v: torch.Tensor) -> torch.Tensor:
    """``sum_j w_j v(i + offset_j)`` over the 8 neighbours (zero outside the image), by slicing."""
    p = F.pad(v, (1, 1, 1, 1))
    diag = p[..., :-2, :-2] + p[..., :-2, 2:] + p[..., 2:, :-2] + p[..., 2:, 2:]
    edge = p[..., :-2, 1:-1] + p[..., 2:, 1:-1] + p[..., 1:-1, :-2] + p[..., 1:-1, 2:]
    return diag * (1 / 12) + edge * (1 / 6)


@torch.no_grad()
def noisy_linear_impute(x: torch.Tensor, mask: torch.Tensor, *, noise: float = 0.01,
                        generator: torch.Generator | None = None, tol: float = 1e-5,
                        max_iter: int | None = None, solver: str = "auto") -> torch.Tensor:
    """ROAD's noisy linear imputation of the pixels where ``mask`` is True, batched.

    Parameters
    ----------
    x : ``(N, C, H, W)`` images (any float dtype / device).
    mask : ``(N, H, W)`` or ``(N, 1, H, W)`` bool, True = removed (imputed) pixel.
    noise : standard deviation of the Gaussian noise added to imputed pixels (ROAD: 0.01;
        0 for the plain linear imputation).
    generator : torch generator on ``x``'s device for the noise.
    tol : conjugate gradients stop when every system's residual norm is below
        ``tol * ||b||`` (``||b||``: norm of its right-hand side).
    max_iter : at most this many CG iterations (default ``2 * (H + W)``).
    solver : ``"cg"`` (batched conjugate gradients, below), ``"direct"`` (a sparse LU per image
        with ``scipy.sparse.linalg.spsolve``; CPU tensors only) or ``"auto"``: direct on the CPU,
        where a sparse factorisation of these 2-D Laplacians beats CG's many sweeps over large
        holes, CG on accelerators (``benchmarks/aopc.py`` measures both).

    How (CG): the system of every (image, channel) lives on the pixel grid, zero at kept pixels; the
    matrix-vector product is ``diag * v - mask * neighbour_sum(v)`` with the 8-neighbour weighted
    sum done by 8 shifted slices of the whole batch.  Jacobi-preconditioned conjugate gradients
    with per-system step sizes and inner products, all systems in lock-step until every one has
    converged.

    Returns a new tensor: ``x`` where ``mask`` is False, the imputed values where it is True.
    """
    x, m = _check(x, mask)
    N, C, H, W = x.shape
    if solver not in ("auto", "cg", "direct"):
        raise ValueError(f"solver must be 'auto', 'cg' or 'direct', got {solver!r}")
    if not bool(m.any()):
        return x.clone()
    if solver == "direct" or (solver == "auto" and x.device.type == "cpu"):
        if x.device.type != "cpu":
            raise ValueError("solver='direct' needs CPU tensors; use solver='cg' on accelerators")
        xn, mn = x.detach().double().numpy(), m[:, 0].numpy()
        v = torch.from_numpy(np.stack([_direct(a, b) for a, b in zip(xn, mn)])).to(x.dtype)
        if noise:
            v = v + float(noise) * torch.randn(v.shape, generator=generator, dtype=x.dtype)
        return torch.where(m, v, x)
    dt = x.dtype
    mf = m.to(dt)                                      # (N, 1, H, W), 1 = unknown
    S = _neighbour_sum(torch.ones(1, 1, H, W, dtype=dt, device=x.device))   # in-image weights
    diag = S * mf
    inv_diag = torch.where(mf > 0, 1.0 / S, torch.zeros_like(mf))

    def A(v: torch.Tensor) -> torch.Tensor:             # v is zero outside the mask
        return diag * v - mf * _neighbour_sum(v)

    def dot(a: torch.Tensor, c: torch.Tensor) -> torch.Tensor:   # per (image, channel)
        return (a * c).sum((2, 3), keepdim=True)

    b = mf * _neighbour_sum(x * (1 - mf))               # known neighbours' weighted values
    v = b * inv_diag                                    # Jacobi start
    r = b - A(v)
    z = r * inv_diag
    p = z
    rz = dot(r, z)
    thresh = (tol ** 2) * dot(b, b)
    tiny = torch.finfo(dt).tiny
    max_iter = 2 * (H + W) if max_iter is None else int(max_iter)
    for it in range(max_iter):
        if it % 4 == 0 and bool((dot(r, r) <= thresh).all()):
            break
        Ap = A(p)
        pAp = dot(p, Ap)
        alpha = torch.where(pAp > 0, rz / pAp.clamp_min(tiny), torch.zeros_like(pAp))
        v = v + alpha * p
        r = r - alpha * Ap
        z = r * inv_diag
        rz_new = dot(r, z)
        beta = torch.where(rz > 0, rz_new / rz.clamp_min(tiny), torch.zeros_like(rz))
        p = z + beta * p
        rz = rz_new
    if noise:
        v = v + float(noise) * torch.randn(v.shape, generator=generator, dtype=dt, device=x.device)
    return torch.where(m, v, x)


def noisy_linear_impute_reference(image: np.ndarray, mask: np.ndarray, *, noise: float = 0.0,
                                  rng: np.random.Generator | None = None) -> np.ndarray:
    """The per-image scipy formulation of Rong et al. (2022): one sparse system, ``spsolve``.

    ``image`` ``(C, H, W)``, ``mask`` ``(H, W)`` bool (True = removed).  Builds the matrix of the
    removed pixels' equations (diagonal: the in-image neighbour weights; off-diagonal: minus the
    weights of removed neighbours) and the right-hand side (weights times kept neighbours'
    values) and solves all channels with ``scipy.sparse.linalg.spsolve``; ``noise`` is drawn from
    ``rng``.  CPU-only, one image at a time: the reference the batched CG solver is tested against.
    """
    out = _direct(image, mask)
    if noise:
        rng = np.random.default_rng(0) if rng is None else rng
        msk = np.asarray(mask, dtype=bool)
        out[:, msk] += noise * rng.standard_normal((out.shape[0], int(msk.sum())))
    return out


def _direct(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The imputed image (no noise): the removed pixels' system assembled with vectorised
    indexing (8 offsets) and solved for all channels by ``spsolve``."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.linalg import spsolve

    img = np.asarray(image, dtype=np.float64)
    msk = np.asarray(mask, dtype=bool)
    C, H, W = img.shape
    if msk.shape != (H, W):
        raise ValueError(f"mask must be (H, W) = {(H, W)}, got {msk.shape}")
    ys, xs = np.nonzero(msk)
    n = len(ys)
    out = img.copy()
    if n == 0:
        return out
    var = -np.ones((H, W), dtype=np.int64)
    var[ys, xs] = np.arange(n)
    rows, cols, vals = [], [], []
    diag = np.zeros(n)
    rhs = np.zeros((n, C))
    for (dy, dx), w in NEIGHBOUR_WEIGHTS:
        yy, xx = ys + dy, xs + dx
        inside = (yy >= 0) & (yy < H) & (xx >= 0) & (xx < W)
        eq = np.nonzero(inside)[0]
        yy, xx = yy[inside], xx[inside]
        diag[eq] += w
        unknown = msk[yy, xx]
        rows.append(eq[unknown])
        cols.append(var[yy[unknown], xx[unknown]])
        vals.append(np.full(int(unknown.sum()), -w))
        rhs[eq[~unknown]] += w * img[:, yy[~unknown], xx[~unknown]].T
    rows.append(np.arange(n))
    cols.append(np.arange(n))
    vals.append(diag)
    A = coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                   shape=(n, n)).tocsc()
    sol = spsolve(A, rhs)
    sol = np.asarray(sol).reshape(n, C)
    out[:, ys, xs] = sol.T
    return out
