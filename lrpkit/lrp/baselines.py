"""Gradient-based baselines: sensitivity, deconvnet, guided backprop, gradient x input.

All use one forward and one backward pass with respect to the input only (parameters'
``requires_grad`` is switched off for the call and restored afterwards, also after an
exception).  Deconvnet and guided backprop change the backward of every *rectifier*
(:mod:`lrpkit._activations`: ReLU, ReLU6, hard-tanh, ``clamp`` / ``clip``, threshold),
wherever it is called (``nn.ReLU`` / ``nn.ReLU6`` modules and ``F.relu`` / ``torch.relu`` /
``x.clamp(0, 6)`` inside forwards), via a ``TorchFunctionMode`` active during the forward
pass.  For a rectifier ``h`` with switch ``s(z) = dh/dz`` (``1{z > 0}`` for ReLU,
``1{0 < z < 6}`` for ReLU6):

* gradient: ``s(z) g``;
* deconvnet (Zeiler & Fergus 2014; Samek et al. 2017, Sec. II-B): ``max(0, g)`` (the signal is
  rectified, the forward's switch is ignored); max-pool switches and transposed filters as in
  the gradient;
* guided backprop (Springenberg et al. 2015): ``s(z) max(0, g)``.

Both methods are defined for rectifier networks only.  Other activations -- leaky (LeakyReLU,
ELU ...), gated (SiLU, GELU, Hardswish, Mish) and squashing ones (Sigmoid, Hardsigmoid, Tanh,
e.g. squeeze-excitation gates) -- keep their gradient, as in captum's and zennit's
implementations; a :class:`GradientFallbackWarning` names them and how often they were called,
so that a heatmap equal to the gradient on, e.g., an EfficientNet is never silent.

Channel pooling (Samek et al. 2017, eq. 3): ``norm="l2"`` / ``"linf"`` gives the per-pixel norm over
colour channels ``h_p``; it is returned spread evenly over the channels (``h_p / C`` in each),
so that :func:`lrpkit.viz.channel_sum` gives ``h_p`` and the output keeps the input's shape.
"""
from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from .._activations import FUNCTIONS, activation_input, functions_of, out_of_place
from .._freeze import frozen
from ..inputs import check_input
from ..params import Options, declare
from .engine import _targets

__all__ = ["gradient", "sensitivity", "deconvnet", "guided_backprop", "gradient_x_input",
           "input_gradient", "pool_channels", "GradientFallbackWarning", "RECTIFIERS"]

#: the activation functions deconvnet and guided backprop apply their rule to
RECTIFIERS = functions_of("rectifier")


class GradientFallbackWarning(UserWarning):
    """Deconvnet / guided backprop met activations that are not rectifiers (their gradient
    is used there)."""


class _Deconv(torch.autograd.Function):
    """Forward ``h(z)``; backward ``max(0, g)`` (the switch of ``h`` is ignored)."""

    @staticmethod
    def forward(ctx, z, h):
        return h(z)

    @staticmethod
    def backward(ctx, g):
        return g.clamp(min=0), None


class _Positive(torch.autograd.Function):
    """Identity forward; backward ``max(0, g)``.  Placed after a rectifier, the rectifier's own
    backward then applies its switch: ``s(z) max(0, g)``."""

    @staticmethod
    def forward(ctx, y):
        return y.clone()

    @staticmethod
    def backward(ctx, g):
        return g.clamp(min=0)


def _deconv(func: Callable, args: tuple, kwargs: dict) -> torch.Tensor:
    z = activation_input(args, kwargs)
    if args:
        return _Deconv.apply(z, lambda t: out_of_place(func, (t, *args[1:]), kwargs))
    key = "input" if "input" in kwargs else "self"
    return _Deconv.apply(z, lambda t: out_of_place(func, (), {**kwargs, key: t}))


def _guided(func: Callable, args: tuple, kwargs: dict) -> torch.Tensor:
    return _Positive.apply(out_of_place(func, args, kwargs))


class _RectifierMode(TorchFunctionMode):
    """Applies ``rule`` to every rectifier call; counts the other activation calls."""

    def __init__(self, rule: Callable):
        super().__init__()
        self.rule = rule
        self.others: Counter = Counter()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in FUNCTIONS:
            z = activation_input(args, kwargs)
            if isinstance(z, torch.Tensor) and z.is_floating_point():
                if func in RECTIFIERS:
                    return self.rule(func, args, kwargs)
                self.others[FUNCTIONS[func].name] += 1
        return func(*args, **kwargs)


def _backprop(model: nn.Module, x: torch.Tensor, target: Any, rule: Callable | None = None,
              method: str = "") -> torch.Tensor:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if rule is not None and isinstance(model, torch.jit.ScriptModule):  # compiled: no rectifier calls to see
        raise TypeError(f"{method} needs a Python torch.nn.Module, not a TorchScript module: its "
                        f"rectifier rule cannot reach compiled code (it would return the plain gradient)")
    x = check_input(x)
    xin = x.detach().requires_grad_(True)
    with frozen(model), torch.enable_grad():
        if rule is None:
            out = model(xin)
        else:
            mode = _RectifierMode(rule)
            with mode:
                out = model(xin)
            if mode.others:
                found = ", ".join(f"{n} ({c}x)" for n, c in sorted(mode.others.items()))
                warnings.warn(f"{method}: the model calls activations that are not rectifiers: "
                              f"{found}; their gradient is used there (the {method} rule applies "
                              f"to ReLU, ReLU6, Hardtanh, clamp and Threshold only)",
                              GradientFallbackWarning, stacklevel=3)
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


_NORM = [Options("l2", "linf"), None]


@declare(norm=_NORM)
def sensitivity(model, x, target="pred", *, norm: str | None = "l2") -> torch.Tensor:
    """Sensitivity analysis (Samek et al. 2017, eq. 3): channel norm of ``d f_c / d x``."""
    return pool_channels(_backprop(model, x, target), norm)


@declare(norm=_NORM)
def deconvnet(model, x, target="pred", *, norm: str | None = "l2") -> torch.Tensor:
    """Deconvnet (Zeiler & Fergus 2014; Samek et al. 2017, Sec. II-B): every rectifier passes
    ``max(0, g)`` back; pooled over channels like eq. 3.  Warns
    (:class:`GradientFallbackWarning`) when other activations are met."""
    return pool_channels(_backprop(model, x, target, _deconv, "deconvnet"), norm)


@declare(norm=_NORM)
def guided_backprop(model, x, target="pred", *, norm: str | None = None) -> torch.Tensor:
    """Guided backpropagation (Springenberg et al. 2015): every rectifier passes
    ``s(z) max(0, g)`` back (ReLU: ``1{z > 0} max(0, g)``).  Warns
    (:class:`GradientFallbackWarning`) when other activations are met."""
    return pool_channels(_backprop(model, x, target, _guided, "guided_backprop"), norm)


@declare()
def gradient_x_input(model, x, target="pred") -> torch.Tensor:
    """Gradient x input, ``x * d f_c / d x`` (equals LRP-0 on ReLU networks)."""
    return x.detach() * _backprop(model, x, target)
