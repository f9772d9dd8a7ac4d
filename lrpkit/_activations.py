"""The element-wise activation functions lrpkit recognises, declared once.

Every activation is listed with its module types and its functional forms *as torch
dispatches them* to a :class:`torch.overrides.TorchFunctionMode` (``nn.ReLU6`` and
``nn.Hardtanh`` call ``F.hardtanh``, ``nn.Sigmoid`` calls ``torch.sigmoid``, ``F.sigmoid``
calls ``Tensor.sigmoid`` ...), in-place variants included.  Users: the gradient baselines
(:mod:`lrpkit.lrp.baselines`: deconvnet / guided backprop rectify the signal at rectifiers)
and the FGVis defence (:mod:`lrpkit.fgvis.defence`: eq. 4-6 after every activation).

Kinds (:data:`KINDS`):

* ``rectifier`` - piecewise linear with flat pieces (a zero or constant slope): ReLU, ReLU6,
  hard-tanh, ``clamp`` / ``clip``, threshold.  The backward is a switch ``1{lo < z < hi}``.
* ``leaky`` - rectifier-like with a non-zero slope on the negative side: LeakyReLU, PReLU,
  RReLU, ELU, CELU, SELU, Softplus.
* ``gated`` - ``x * g(x)`` with a gate ``g`` in [0, 1]: SiLU / Swish (``g = sigmoid``), GELU
  (``g = Phi``), Hardswish (``g = hardsigmoid``), Mish (``g = tanh(softplus)``).
* ``squashing`` - bounded and monotone, used as gates (squeeze-excitation, LSTMs): Sigmoid,
  Hardsigmoid, Tanh, Softsign, LogSigmoid.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Activation", "ACTIVATIONS", "KINDS", "FUNCTIONS", "MODULES", "functions_of",
           "activation_of", "out_of_place", "activation_input"]

KINDS = ("rectifier", "leaky", "gated", "squashing")

_T = torch.Tensor


@dataclass(frozen=True)
class Activation:
    """One activation: its name, kind, module types and functional forms."""

    name: str
    kind: str
    modules: tuple[type, ...]
    functions: tuple[Callable, ...]


ACTIVATIONS: tuple[Activation, ...] = (
    Activation("ReLU", "rectifier", (nn.ReLU,),
               (F.relu, F.relu_, torch.relu, torch.relu_, _T.relu, _T.relu_)),
    Activation("ReLU6", "rectifier", (nn.ReLU6,), (F.relu6,)),
    Activation("Hardtanh", "rectifier", (nn.Hardtanh,), (F.hardtanh, F.hardtanh_)),
    Activation("clamp", "rectifier", (),
               (torch.clamp, torch.clamp_, _T.clamp, _T.clamp_, torch.clip, torch.clip_, _T.clip,
                _T.clip_, torch.clamp_min, torch.clamp_min_, _T.clamp_min, _T.clamp_min_,
                torch.clamp_max, torch.clamp_max_, _T.clamp_max, _T.clamp_max_)),
    Activation("Threshold", "rectifier", (nn.Threshold,),
               (F.threshold, F.threshold_, torch.threshold, torch.threshold_)),
    Activation("LeakyReLU", "leaky", (nn.LeakyReLU,), (F.leaky_relu, F.leaky_relu_)),
    Activation("PReLU", "leaky", (nn.PReLU,), (F.prelu, torch.prelu)),
    Activation("RReLU", "leaky", (nn.RReLU,), (F.rrelu, F.rrelu_, torch.rrelu, torch.rrelu_)),
    Activation("ELU", "leaky", (nn.ELU,), (F.elu, F.elu_)),
    Activation("CELU", "leaky", (nn.CELU,), (F.celu, F.celu_, torch.celu, torch.celu_)),
    Activation("SELU", "leaky", (nn.SELU,), (F.selu, F.selu_, torch.selu, torch.selu_)),
    Activation("Softplus", "leaky", (nn.Softplus,), (F.softplus,)),
    Activation("SiLU", "gated", (nn.SiLU,), (F.silu,)),
    Activation("GELU", "gated", (nn.GELU,), (F.gelu,)),
    Activation("Hardswish", "gated", (nn.Hardswish,), (F.hardswish,)),
    Activation("Mish", "gated", (nn.Mish,), (F.mish,)),
    Activation("Sigmoid", "squashing", (nn.Sigmoid,),
               (F.sigmoid, torch.sigmoid, torch.sigmoid_, _T.sigmoid, _T.sigmoid_)),
    Activation("Hardsigmoid", "squashing", (nn.Hardsigmoid,), (F.hardsigmoid,)),
    Activation("Tanh", "squashing", (nn.Tanh,),
               (F.tanh, torch.tanh, torch.tanh_, _T.tanh, _T.tanh_)),
    Activation("Softsign", "squashing", (nn.Softsign,), (F.softsign,)),
    Activation("LogSigmoid", "squashing", (nn.LogSigmoid,), (F.logsigmoid,)),
)

#: functional form -> its :class:`Activation`
FUNCTIONS: dict[Callable, Activation] = {f: a for a in ACTIVATIONS for f in a.functions}
#: module type -> its :class:`Activation` (exact types; :func:`activation_of` follows subclasses)
MODULES: dict[type, Activation] = {m: a for a in ACTIVATIONS for m in a.modules}


def functions_of(*kinds: str) -> frozenset:
    """The functional forms of the activations of the given kinds (all kinds if none given)."""
    bad = [k for k in kinds if k not in KINDS]
    if bad:
        raise ValueError(f"unknown activation kind(s) {bad}; kinds: {', '.join(KINDS)}")
    want = set(kinds or KINDS)
    return frozenset(f for a in ACTIVATIONS if a.kind in want for f in a.functions)


def activation_of(obj: Any) -> Activation | None:
    """The :class:`Activation` of a module (its type or nearest declared base class) or of a
    functional form; None for anything else."""
    if isinstance(obj, nn.Module):
        for cls in type(obj).__mro__:
            if cls in MODULES:
                return MODULES[cls]
        return None
    try:
        return FUNCTIONS.get(obj)
    except TypeError:   # unhashable
        return None


_IN_PLACE: dict[Callable, Callable] = {
    F.relu_: torch.relu, torch.relu_: torch.relu, _T.relu_: torch.relu,
    F.hardtanh_: F.hardtanh, torch.clamp_: torch.clamp, _T.clamp_: torch.clamp,
    torch.clip_: torch.clip, _T.clip_: torch.clip, torch.clamp_min_: torch.clamp_min,
    _T.clamp_min_: torch.clamp_min, torch.clamp_max_: torch.clamp_max,
    _T.clamp_max_: torch.clamp_max, F.threshold_: torch.threshold, torch.threshold_: torch.threshold,
    F.leaky_relu_: F.leaky_relu, F.rrelu_: F.rrelu, torch.rrelu_: torch.rrelu, F.elu_: F.elu,
    F.celu_: torch.celu, torch.celu_: torch.celu, F.selu_: torch.selu, torch.selu_: torch.selu,
    torch.sigmoid_: torch.sigmoid, _T.sigmoid_: torch.sigmoid, torch.tanh_: torch.tanh,
    _T.tanh_: torch.tanh,
}
_SIGS: dict[Callable, inspect.Signature | None] = {}


def out_of_place(func: Callable, args: tuple, kwargs: dict) -> Any:
    """Call the activation ``func`` without modifying its input (the same values): in-place
    variants call their out-of-place form, ``inplace=True`` is passed as False."""
    if func in _IN_PLACE:
        return _IN_PLACE[func](*args, **kwargs)
    if func not in _SIGS:
        try:
            _SIGS[func] = inspect.signature(func)
        except (TypeError, ValueError):
            _SIGS[func] = None
    sig = _SIGS[func]
    if sig is not None and "inplace" in sig.parameters:
        bound = sig.bind(*args, **kwargs)
        if bound.arguments.get("inplace"):
            bound.arguments["inplace"] = False
            return func(*bound.args, **bound.kwargs)
    return func(*args, **kwargs)


def activation_input(args: tuple, kwargs: dict) -> Any:
    """The tensor an activation call acts on (its first argument, ``input=`` or ``self=``)."""
    if args:
        return args[0]
    return kwargs.get("input", kwargs.get("self"))
