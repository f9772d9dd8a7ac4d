"""Gradient-based baselines: sensitivity, deconvnet, guided backprop, gradient x input.

All use one forward and one backward pass with respect to the input only (parameters'
``requires_grad`` is switched off for the call and restored afterwards, also after an
exception).  Deconvnet and guided backprop change only the backward of ReLU, wherever it is
called (``nn.ReLU`` modules and ``F.relu`` / ``torch.relu`` inside forwards), via a
``TorchFunctionMode`` active during the forward pass:

* gradient: ``1{z > 0} g``;
* deconvnet (Zeiler & Fergus; Samek et al. 2017, Sec. II-B): ``max(0, g)`` (the signal is rectified,
  the forward's switch is ignored); max-pool switches and transposed filters as in the gradient;
* guided backprop (Springenberg et al.): ``1{z > 0} max(0, g)``.

Channel pooling (Samek et al. 2017, eq. 3): ``norm="l2"`` / ``"linf"`` gives the per-pixel norm over
colour channels ``h_p``; it is returned spread evenly over the channels (``h_p / C`` in each),
so that :func:`lrpkit.viz.channel_sum` gives ``h_p`` and the output keeps the input's shape.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from ..explain import check_input, eval_mode
from .engine import _targets

__all__ = ["gradient", "sensitivity", "deconvnet", "guided_backprop", "gradient_x_input",
           "input_gradient", "pool_channels"]

_RELU_FUNCS = {F.relu, torch.relu, torch.Tensor.relu, torch.relu_, torch.Tensor.relu_, F.relu_}


class _DeconvReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, g):
        return g.clamp(min=0)


class _GuidedReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        y = x.clamp(min=0)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return g.clamp(min=0) * (y > 0)


class _ReLUMode(TorchFunctionMode):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _RELU_FUNCS:
            return self.fn.apply(args[0])
        return func(*args, **kwargs)


@contextmanager
def _input_only(model: nn.Module):
    """Eval mode and no parameter gradients for the duration; restored afterwards."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        with eval_mode(model):
            yield
    finally:
        for p, f in flags:
            p.requires_grad_(f)


def _backprop(model: nn.Module, x: torch.Tensor, target: Any, relu_fn=None) -> torch.Tensor:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    x = check_input(x)
    xin = x.detach().requires_grad_(True)
    with _input_only(model), torch.enable_grad():
        if relu_fn is None:
            out = model(xin)
        else:
            with _ReLUMode(relu_fn):
                out = model(xin)
        if not isinstance(out, torch.Tensor) or out.dim() != 2:
            raise ValueError(f"model output must be (N, classes), got "
                             f"{tuple(getattr(out, 'shape', ()))}")
        t = _targets(target, out)
        g_out = torch.zeros_like(out)
        g_out.scatter_(1, t[:, None], 1.0)
        (g,) = torch.autograd.grad(out, xin, g_out, allow_unused=True)
    return torch.zeros_like(x) if g is None else g.detach()


def pool_channels(h: torch.Tensor, norm: str | None) -> torch.Tensor:
    """Samek et al. 2017, eq. 3: ``||h_p||_q`` over channels (q = 2 or inf), spread as
    ``h_p / C``."""
    if norm is None:
        return h
    if norm == "l2":
        p = h.norm(p=2, dim=1, keepdim=True)
    elif norm in ("linf", "inf"):
        p = h.abs().amax(dim=1, keepdim=True)
    else:
        raise ValueError(f"norm must be 'l2', 'linf' or None, got {norm!r}")
    return (p / h.shape[1]).expand_as(h).contiguous()


def input_gradient(model: nn.Module, x: torch.Tensor, target: Any = "pred") -> torch.Tensor:
    """``d f_c / d x`` (input only, no parameter gradients): the plain gradient."""
    return _backprop(model, x, target)


gradient = input_gradient


def sensitivity(model, x, target="pred", *, norm: str | None = "l2") -> torch.Tensor:
    """Sensitivity analysis (Samek et al. 2017, eq. 3): channel norm of ``d f_c / d x``."""
    return pool_channels(_backprop(model, x, target), norm)


def deconvnet(model, x, target="pred", *, norm: str | None = "l2") -> torch.Tensor:
    """Deconvnet (Zeiler & Fergus; Samek et al. 2017, Sec. II-B), pooled over channels like
    eq. 3."""
    return pool_channels(_backprop(model, x, target, _DeconvReLU), norm)


def guided_backprop(model, x, target="pred", *, norm: str | None = None) -> torch.Tensor:
    """Guided backpropagation: ReLU backward ``1{z>0} max(0, g)``."""
    return pool_channels(_backprop(model, x, target, _GuidedReLU), norm)


def gradient_x_input(model, x, target="pred") -> torch.Tensor:
    """Gradient x input, ``x * d f_c / d x`` (equals LRP-0 on ReLU networks)."""
    return x.detach() * _backprop(model, x, target)
