"""FGVis: per-pixel, per-channel explanation masks found by optimisation (the four games).

Wagner, Koehler, Gindele, Hetzel, Wiedemer, Behnke, "Interpretable and Fine-Grained Visual
Explanations for Convolutional Neural Networks", CVPR 2019 (FGVis), Sec. 3.1, eq. 1-3.

The explanation of target class ``c_T`` is the image blended with a reference (eq. 1),

    e = x * m + (1 - m) * r,      m in [0, 1]^(3 x H x W)  (one value per pixel and channel),

with ``r`` the zero image of the model's *normalised* input space (the data-mean grey; paper
Sec. 3.1 and its footnote 2).  Also selectable: ``"blur"`` (Gaussian blur of ``x``),
``"noise"`` (seeded standard normal noise), ``"mean"`` (per-channel mean of the batch ``x``),
or a tensor broadcastable to ``x``.

The four games (Sec. 3.1 and A3.5), each minimising over ``m`` (kept in ``[0, 1]`` by
projection after every step) a similarity term on the target's softmax score
``p = softmax(f(e))[c_T]`` plus an L1 sparsity term weighted by ``lambda``:

================  =========  ==================================================  ============
game              start m    loss (per image)                                    goal
================  =========  ==================================================  ============
``preservation``  1          ``-phi(p) + lambda * mean(m)``        (eq. 2)       keep p high
``generation``    0          ``-phi(p) + lambda * mean(m)``                      make p high
``deletion``      1          `` phi(p) + lambda * mean(1 - m)``    (eq. 3)       make p low
``repression``    0          `` phi(p) + lambda * mean(1 - m)``                  make p low
================  =========  ==================================================  ============

``phi(p) = p`` (``similarity="prob"``, the softmax score) or ``phi(p) = log p``
(``similarity="ce"``: minus the cross-entropy with the hard target ``c_T``) are the paper's
two choices.  lrpkit's default is ``similarity="logodds"``, ``phi(p) = log p - log(1 - p)``,
the same softmax score on a logit scale: its gradient with respect to the target's logit is 1
at any confidence, where those of ``p`` and ``log p`` are ``p (1 - p)`` and ``1 - p`` and
vanish on confidently classified images (a logit margin of 8 leaves ``1 - p ~ 3e-4``: the
sparsity term then wins and deletion stalls at ``m = 1``).  The defence validation
(Table 1) uses the paper's ``"prob"``.  The L1 norm is
taken as a mean over the ``3 H W`` mask entries, so ``lambda`` does not depend on image size.

**lambda is adapted during the run** so that the explanation's score ends comparable to the
image's (paper Fig. 1: "The parameter lambda is optimized to produce an explanation with a
softmax score comparable to the image").  Each image has its own ``lambda`` and a score level:
preservation / generation must keep ``p_e >= p_r + level * (p_x - p_r)``, deletion / repression
must reach ``p_e <= p_x - level * (p_x - p_r)`` (``p_x``, ``p_r``: the target's score on the
image and on the reference; both levels are reachable, at ``m = 1`` and ``m = 0``).  After
every step ``lambda`` is multiplied by ``lambda_factor`` where the level is met (push for a
sparser mask) and divided by it where not (give the similarity term more weight).  The mask
returned is the sparsest iterate that met the level (preservation / generation: smallest
``mean(m)``; deletion / repression: largest ``mean(m)``, i.e. fewest deleted entries), or the
last iterate when none did or when ``sparsity=0`` (no sparsity term to favour).

Defaults (``steps=100, lr=0.05, optimizer="adam", sparsity=1.0, level=0.9``) were chosen on
lrpkit's scene CNN (112 x 112 normalised input) and checked on torchvision VGG16 / AlexNet /
ResNet50 with random weights; Adam moves every entry by about ``lr`` per step, so 100 steps
at 0.05 can take a mask entry across ``[0, 1]`` more than once.  Stopping rule ``stop``:
``"steps"`` (all steps; the default), ``"goal"`` (an image stops once its score level is met),
``"class"`` (an image stops once the target is the arg-max for preservation / generation, or no
longer the arg-max for deletion / repression; with ``goal_score`` also its score level).
Mask entries whose gradient is exactly zero
in a step (e.g. cut entirely by the defence) do not move in that step: Adam's or SGD's
momentum would otherwise carry them on, across the bounds the defence just enforced.

The defence of Sec. 3.2 (:mod:`lrpkit.fgvis.defence`) is on by default.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .._blur import gaussian_blur
from .._freeze import frozen
from .._progress import iterate
from ..inputs import check_input, resolve_target
from ..params import Boolean, InstanceOf, Interval, IsCallable, Options, declare
from .defence import Defence

__all__ = ["GAMES", "REFERENCES", "FGVisResult", "fgvis", "make_reference", "frozen"]

#: game -> (initial mask value, "preserve" or "delete")
GAMES: dict[str, tuple[float, str]] = {"deletion": (1.0, "delete"), "preservation": (1.0, "preserve"),
                                       "generation": (0.0, "preserve"), "repression": (0.0, "delete")}
REFERENCES = ("zero", "blur", "noise", "mean")
_SIMILARITIES = ("prob", "ce", "logodds")
_OPTIMIZERS = ("adam", "sgd")
_STOPS = ("steps", "goal", "class")


@dataclass
class FGVisResult:
    """Everything one FGVis run produced (tensors on CPU, one row per image)."""

    mask: torch.Tensor           # (N, C, H, W) in [0, 1]
    explanation: torch.Tensor    # e = x * m + (1 - m) * r, (N, C, H, W)
    target: torch.Tensor         # (N,) long
    score: torch.Tensor          # target's softmax score of the explanation (N,)
    pred: torch.Tensor           # arg-max class of the explanation (N,)
    score_image: torch.Tensor    # target's softmax score of the image (N,)
    score_reference: torch.Tensor  # ... of the reference (N,)
    level: torch.Tensor          # the score level of the game (N,)
    goal_met: torch.Tensor       # (N,) bool: level reached by the returned mask
    lam: torch.Tensor            # final lambda (N,)
    steps_run: torch.Tensor      # steps each image was optimised (N,)
    #: the best target score over the iterates at which the class condition held (preservation /
    #: generation: the highest score with the target the arg-max; deletion / repression: the
    #: lowest with the target not the arg-max); NaN where it never held.  With ``stop="class"``
    #: and a ``goal_score``, ``peak_score >= g`` tells whether any goal ``g <= goal_score`` was
    #: reached (Table 1 as a function of the goal).
    peak_score: torch.Tensor | None = None
    game: str = "deletion"
    defence: bool = True


#: on CPU, run the optimisation in channels-last layout where the model accepts it (about twice
#: as fast for convolutions and max-pooling; the same numbers up to float rounding)
CHANNELS_LAST_ON_CPU = True


def _memory_format(model: nn.Module, x: torch.Tensor) -> torch.memory_format:
    """``torch.channels_last`` for 4-D CPU batches when the model's forward takes such a tensor
    (a ``.view`` on a non-contiguous activation would refuse it; probed on one image), else
    ``torch.contiguous_format``."""
    if not (CHANNELS_LAST_ON_CPU and x.device.type == "cpu" and x.dim() == 4 and len(x)):
        return torch.contiguous_format
    try:
        with frozen(model), torch.no_grad():
            model(x[:1].contiguous(memory_format=torch.channels_last))
    except RuntimeError as err:      # e.g. "view size is not compatible with input tensor's size
        msg = str(err)                # and stride": the model needs contiguous activations
        if "view" in msg or "stride" in msg or "contiguous" in msg:
            return torch.contiguous_format
        raise
    return torch.channels_last


def make_reference(x: torch.Tensor, reference: Any = "zero", *, seed: int = 0,
                   blur_sigma: float | None = None) -> torch.Tensor:
    """The reference image ``r`` of eq. 1 for a batch ``x`` (model input space).

    ``"zero"``: zeros (the data-mean grey of the normalised space; the paper's choice);
    ``"blur"``: ``x`` blurred with a Gaussian of ``blur_sigma`` pixels (default ``W / 22``, i.e.
    10 px at 224 as in Fong & Vedaldi 2017); ``"noise"``: standard normal noise from ``seed``;
    ``"mean"``: each channel's mean over the batch ``x`` (the data mean); a float or tensor
    broadcastable to ``x``: used as is.
    """
    if isinstance(reference, torch.Tensor):
        try:
            return torch.broadcast_to(reference.to(x.dtype), x.shape).clone()
        except RuntimeError:
            raise ValueError(f"reference tensor of shape {tuple(reference.shape)} does not "
                             f"broadcast to x {tuple(x.shape)}") from None
    if isinstance(reference, (int, float)) and not isinstance(reference, bool):
        return torch.full_like(x, float(reference))
    if reference == "zero":
        return torch.zeros_like(x)
    if reference == "blur":
        sigma = float(blur_sigma) if blur_sigma is not None else x.shape[-1] / 22.4
        if not sigma > 0:
            raise ValueError(f"blur_sigma must be > 0, got {blur_sigma!r}")
        return gaussian_blur(x, sigma)
    if reference == "noise":
        g = torch.Generator().manual_seed(int(seed))
        return torch.randn(x.shape, generator=g, dtype=x.dtype).to(x.device)
    if reference == "mean":
        return x.mean(dim=(0, 2, 3), keepdim=True).expand_as(x).clone()
    raise ValueError(f"unknown reference {reference!r}; expected one of {REFERENCES}, a float "
                     f"or a tensor")


@declare(game=Options(lambda: tuple(GAMES)), defence=Boolean(), steps=Interval(int, 1, None),
         lr=Interval(float, 0, None, closed="neither"), sparsity=Interval(float, 0, None),
         similarity=Options(*_SIMILARITIES),
         reference=[Options(*REFERENCES), Interval(float), InstanceOf(torch.Tensor)],
         optimizer=Options(*_OPTIMIZERS), adapt_lambda=Boolean(),
         lambda_factor=Interval(float, 1, None), level=Interval(float, 0, 1),
         stop=Options(*_STOPS), goal_score=[Interval(float, 0, 1), None],
         patience=[Interval(int, 1, None), None], patience_tol=Interval(float, 0, None),
         seed=Interval(int, 0, None), blur_sigma=[Interval(float, 0, None, closed="neither"), None],
         progress=[Boolean(), IsCallable()])
def fgvis(model: nn.Module, x: torch.Tensor, target: Any = "pred", *, game: str = "deletion",
          defence: bool = True, steps: int = 100, lr: float = 0.05, sparsity: float = 1.0,
          similarity: str = "logodds", reference: Any = "zero", optimizer: str = "adam",
          adapt_lambda: bool = True, lambda_factor: float = 1.1, level: float = 0.9,
          stop: str = "steps", goal_score: float | None = None, patience: int | None = None,
          patience_tol: float = 1e-3, seed: int = 0,
          blur_sigma: float | None = None, progress: bool = False) -> FGVisResult:
    """Optimise FGVis masks for a batch of images, all images at once (one batch per step).

    Parameters
    ----------
    model : a torch classifier returning scores ``(N, classes)``; left unchanged (eval mode,
        parameters frozen for the call, everything restored afterwards, also on errors).
    x : images ``(N, C, H, W)`` in the model's normalised input space.
    target : class per image (int, sequence, tensor or ``"pred"``), see
        :func:`lrpkit.explain.resolve_target`.
    game : ``"deletion"`` (default; the paper's choice for its figures and Table 2),
        ``"preservation"``, ``"generation"``, ``"repression"`` (Sec. 3.1, eq. 2-3).
    defence : gradient clipping of Sec. 3.2, eq. 4-6 (default on).
    steps, lr, optimizer : optimisation budget, step size, ``"adam"`` (default) or ``"sgd"``
        (momentum 0.9; its step is ``lr`` times the raw gradient, so it needs a much larger
        ``lr``).
    sparsity : initial ``lambda`` of the L1 term (``0``: no sparsity, as in Table 1).
    similarity : ``"prob"`` (softmax score), ``"ce"`` (cross-entropy) or ``"logodds"``.
    reference : ``"zero"`` (default), ``"blur"``, ``"noise"``, ``"mean"`` or a tensor.
    adapt_lambda, lambda_factor, level : lambda adaptation (see the module doc).
    stop : ``"steps"``, ``"goal"`` or ``"class"`` (see the module doc).
    goal_score : an absolute softmax score as the level instead of ``level`` (preservation /
        generation: ``p_e >= goal_score``; deletion / repression: ``p_e <= goal_score``).
    patience, patience_tol : also stop an image once its target score has not improved by more
        than ``patience_tol`` for ``patience`` steps (``None``: off).
    seed : seeds the ``"noise"`` reference (the optimisation itself is deterministic).
    progress : ``True``: a tqdm progress bar over steps; a callable ``progress(done, total)``:
        called after each step (it may raise to cancel; see :mod:`lrpkit._progress`).

    Returns a :class:`FGVisResult` (``.mask`` is the heatmap of ``explain(method="fgvis")``).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    x = check_input(x).detach()
    t = resolve_target(model, x, target)
    init, kind = GAMES[game]
    N = x.shape[0]
    dev = x.device
    r = make_reference(x, reference, seed=seed, blur_sigma=blur_sigma).to(dev)
    fmt = _memory_format(model, x)
    x, r = x.contiguous(memory_format=fmt), r.contiguous(memory_format=fmt)
    sign = 1.0 if kind == "delete" else -1.0
    rows = torch.arange(N, device=dev)

    with frozen(model):
        d = Defence(model, enabled=defence)
        with torch.no_grad():
            out_x = d.record(x)
            p_x = out_x.double().softmax(1)[rows, t]
            p_r = model(r).double().softmax(1)[rows, t]
        if kind == "preserve":
            lvl = p_r + float(level) * (p_x - p_r)
        else:
            lvl = p_x - float(level) * (p_x - p_r)
        if goal_score is not None:
            lvl = torch.full_like(p_x, float(goal_score))
        m = torch.full_like(x, init)
        lam = torch.full((N,), float(sparsity), device=dev, dtype=torch.float64)
        lam_lo, lam_hi = float(sparsity) * 1e-4, float(sparsity) * 1e4
        m1 = torch.zeros_like(x)
        m2 = torch.zeros_like(x) if optimizer == "adam" else None
        best = m.clone()
        best_l1 = torch.full((N,), float("inf"), device=dev, dtype=torch.float64)
        met_any = torch.zeros(N, dtype=torch.bool, device=dev)
        active = torch.ones(N, dtype=torch.bool, device=dev)
        steps_run = torch.zeros(N, dtype=torch.long, device=dev)
        b1, b2, eps = 0.9, 0.999, 1e-8
        it = iterate(range(int(steps)), progress, desc=f"fgvis {game}")

        def evaluate(mm, idx):
            """Forward of the explanations of images ``idx`` (None: all); returns scores, p, pred."""
            xs, rs, ts = (x, r, t) if idx is None else (x[idx], r[idx], t[idx])
            e = xs * mm + (1 - mm) * rs
            with d.clip(idx):
                out = model(e)
            logp = out.double().log_softmax(1)   # float64: no saturation of p = 1 - 1e-8
            lp = logp.gather(1, ts[:, None])[:, 0]
            if similarity == "logodds":
                others = logp.scatter(1, ts[:, None], float("-inf")).logsumexp(1)
                evaluate.logodds = lp - others
            return lp, out.detach().argmax(1)

        def record_best(mm, idx, p, pred):
            ts = t if idx is None else t[idx]
            lv = lvl if idx is None else lvl[idx]
            if stop == "class":
                ok = (pred == ts) if kind == "preserve" else (pred != ts)
                if goal_score is not None:
                    ok &= (p >= lv) if kind == "preserve" else (p <= lv)
            else:
                ok = (p >= lv) if kind == "preserve" else (p <= lv)
            cls_ok = (pred == ts) if kind == "preserve" else (pred != ts)
            pk = peak if idx is None else peak[idx]
            pk = torch.where(cls_ok, torch.maximum(pk, p) if kind == "preserve" else torch.minimum(pk, p), pk)
            if idx is None:
                peak.copy_(pk)
            else:
                peak[idx] = pk
            l1 = mm.detach().flatten(1).double().mean(1)
            score = l1 if kind == "preserve" else -l1   # smaller is better
            cur = best_l1 if idx is None else best_l1[idx]
            better = ok & (score < cur) & track_best
            if better.any():
                sel = better.nonzero(as_tuple=True)[0]
                gi = sel if idx is None else idx[sel]
                best[gi] = mm.detach()[sel]
                best_l1[gi] = score[sel]
                met_any[gi] = True
            return ok

        track_best = bool(sparsity > 0)   # without a sparsity term: the last iterate
        peak = torch.full((N,), float("-inf") if kind == "preserve" else float("inf"), device=dev,
                          dtype=torch.float64)
        best_p = torch.full((N,), -1.0 if kind == "preserve" else 2.0, device=dev, dtype=torch.float64)
        stall = torch.zeros(N, dtype=torch.long, device=dev)
        step_t = 0
        for step_t in it:
            if not bool(active.any()):
                break
            idx = None if bool(active.all()) else active.nonzero(as_tuple=True)[0]
            ms = (m if idx is None else m[idx]).detach().requires_grad_(True)
            with torch.enable_grad():
                lp, pred = evaluate(ms, idx)
                p = lp.exp()
                phi = p if similarity == "prob" else lp if similarity == "ce" else evaluate.logodds
                ls = (lam if idx is None else lam[idx]).double()
                l1 = ms.flatten(1).mean(1)
                sp = (l1 if kind == "preserve" else 1.0 - l1).double()
                loss = (sign * phi + ls * sp).sum()
                (g,) = torch.autograd.grad(loss, ms)
            with torch.no_grad():
                ok = record_best(ms, idx, p.detach(), pred)
                if adapt_lambda and sparsity > 0:
                    fac = torch.where(ok, torch.full_like(ls, lambda_factor),
                                      torch.full_like(ls, 1.0 / lambda_factor))
                    new_lam = (ls * fac).clamp(lam_lo, lam_hi)
                    if idx is None:
                        lam = new_lam
                    else:
                        lam[idx] = new_lam
                n_step = step_t + 1
                if optimizer == "adam":
                    a1 = m1 if idx is None else m1[idx]
                    a2 = m2 if idx is None else m2[idx]
                    a1.mul_(b1).add_(g, alpha=1 - b1)
                    a2.mul_(b2).addcmul_(g, g, value=1 - b2)
                    upd = (a1 / (1 - b1 ** n_step)) / ((a2 / (1 - b2 ** n_step)).sqrt() + eps)
                    if idx is not None:
                        m1[idx] = a1
                        m2[idx] = a2
                else:
                    a1 = m1 if idx is None else m1[idx]
                    a1.mul_(0.9).add_(g)
                    upd = a1
                    if idx is not None:
                        m1[idx] = a1
                # entries whose gradient is exactly zero (e.g. cut entirely by the defence) stay
                # put: the optimiser's momentum would otherwise carry them across the bounds
                upd = torch.where(g != 0, upd, torch.zeros((), dtype=upd.dtype, device=upd.device))
                new_m = (ms.detach() - lr * upd).clamp_(0.0, 1.0)
                if idx is None:
                    m = new_m
                    steps_run += 1
                else:
                    m[idx] = new_m
                    steps_run[idx] += 1
                if stop != "steps":
                    done = ok if idx is None else ok
                    stop_rows = rows[active] if idx is not None else rows
                    active[stop_rows[done]] = False
                    # an image that stops keeps the mask that met its goal
                    if done.any():
                        gi = stop_rows[done]
                        m[gi] = ms.detach()[done]
                if patience is not None:       # plateau: no score gain > patience_tol for a while
                    now = rows if idx is None else idx
                    pd_ = p.detach()
                    gain = (pd_ - best_p[now]) if kind == "preserve" else (best_p[now] - pd_)
                    up = gain > patience_tol
                    best_p[now] = torch.where(up, pd_, best_p[now])
                    stall[now] = torch.where(up, torch.zeros_like(stall[now]), stall[now] + 1)
                    active[now[stall[now] >= patience]] = False

        # evaluate the last iterate of the images still running
        with torch.no_grad():
            still = active.nonzero(as_tuple=True)[0]
            if len(still):
                idx = None if len(still) == N else still
                ms = m if idx is None else m[idx]
                lp, pred = evaluate(ms, idx)
                record_best(ms, idx, lp.exp(), pred)
            final = torch.where(met_any[:, None, None, None], best, m)
            lp, pred = evaluate(final, None)
            e = x * final + (1 - final) * r
            ok_score = (lp.exp() >= lvl) if kind == "preserve" else (lp.exp() <= lvl)
            ok_final = ok_score
            if stop == "class":
                ok_final = (pred == t) if kind == "preserve" else (pred != t)
                if goal_score is not None:
                    ok_final &= ok_score
    f32 = lambda v: v.detach().float().cpu()  # noqa: E731
    peak = torch.where(peak.isinf(), torch.full_like(peak, float("nan")), peak)
    return FGVisResult(mask=final.detach().cpu().contiguous(), explanation=e.detach().cpu().contiguous(),
                       target=t.cpu(), peak_score=f32(peak),
                       score=f32(lp.exp()), pred=pred.cpu(), score_image=f32(p_x),
                       score_reference=f32(p_r), level=f32(lvl), goal_met=ok_final.cpu(),
                       lam=f32(lam), steps_run=steps_run.cpu(), game=game, defence=bool(defence))
