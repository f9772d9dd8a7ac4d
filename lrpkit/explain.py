"""One registry for every heatmap method, and the uniform ``explain`` call.

Every explainer in lrpkit (LRP composites, gradient baselines, Fisher-vector LRP, PDA,
FGVis ...) registers itself here with :func:`register`, so that evaluation code can treat
all heatmaps alike::

    R = lrpkit.explain(model, x, target="pred", method="lrp", composite="epsilon")

Conventions (see ARCHITECTURE.md):

* ``x`` is a float tensor ``(N, C, H, W)`` in the model's (normalised) input space;
  the returned relevance has the same shape.  2-D maps come from
  :func:`lrpkit.viz.channel_sum` (sum over ``C``).
* ``target`` is an int (same class for every sample), a sequence / 1-D tensor of ints
  (one per sample), or ``"pred"`` (each sample's arg-max score).
* Parameters have defaults from the papers; unknown parameter names are an error.

A registered function has the signature ``func(model, x, target, **params)`` where ``x``
is validated and ``target`` is already a ``LongTensor`` of shape ``(N,)``.
"""
from __future__ import annotations

import importlib
from typing import Any

import numpy as np
import torch

from .inputs import check_input, check_model_input, eval_mode, model_scores, resolve_target
from .params import InvalidParameterError
from .registry import Method, register, registered

__all__ = ["Method", "register", "methods", "get_method", "explain", "explain_func",
           "model_scores", "resolve_target", "check_input", "eval_mode"]

#: the built-in methods and the module that registers each (imported on first use, so that
#: explaining with LRP does not import the Fisher-vector, PDA or FGVis code)
BUILTIN: dict[str, str] = {
    "lrp": "lrpkit.lrp", "sensitivity": "lrpkit.lrp", "deconvnet": "lrpkit.lrp",
    "gradient_x_input": "lrpkit.lrp", "guided_backprop": "lrpkit.lrp",
    "fv_lrp": "lrpkit.fisher", "pda": "lrpkit.pda",
    "fgvis": "lrpkit.fgvis", "occlusion": "lrpkit.fgvis", "gradcam": "lrpkit.fgvis",
}


def methods() -> dict[str, Method]:
    """All registered methods by name (a copy); ``methods()[name].describe()`` lists a
    method's parameters, defaults and accepted values."""
    for mod in dict.fromkeys(BUILTIN.values()):
        importlib.import_module(mod)
    return dict(sorted(registered().items()))


def get_method(name: str) -> Method:
    """The registered method ``name`` (a built-in one is imported on first use)."""
    if name in BUILTIN:
        importlib.import_module(BUILTIN[name])
    reg = registered()
    if name not in reg:
        raise ValueError(f"unknown method {name!r}; registered methods: "
                         f"{', '.join(sorted({*reg, *BUILTIN}))}")
    return reg[name]


def explain(model: Any, x: torch.Tensor, target: Any = "pred", method: str = "lrp",
            **params: Any) -> torch.Tensor:
    """Relevance of every input element for ``target``: a tensor of ``x``'s shape.

    ``method`` names a registered method (see :func:`methods`); ``params`` override its
    defaults and are checked against its declaration (an unknown name or a rejected value
    raises :class:`~lrpkit.params.InvalidParameterError` naming the parameter).
    """
    m = get_method(method)
    m.validate(params)
    if not m.scriptable and isinstance(model, torch.jit.ScriptModule):
        raise TypeError(f"method {method!r} needs a Python torch.nn.Module: it swaps layers or "
                        f"intercepts activation calls, which a TorchScript module runs as compiled "
                        f"code; load the model from Python (model source torchvision or python) or "
                        f"use a method that needs only gradients (sensitivity, gradient_x_input)")
    x = check_input(x)
    kw = {**m.params, **params}
    try:
        if m.resolves_pred and isinstance(target, str) and target == "pred":
            t = target  # the method takes the arg-max of its own (single) forward pass
        else:
            t = resolve_target(model, x, target)
        rel = m.func(model, x, t, **kw)
    except InvalidParameterError:
        raise
    except (RuntimeError, ValueError, TypeError, IndexError, AttributeError):
        # does the model refuse the input itself (wrong channel count or image size, an
        # output that is not one tensor)?  Then say so, naming the shape and the layer
        # (one forward of one image, only on failure: a call that works costs nothing more)
        try:
            check_model_input(model, x)
        except (ValueError, TypeError) as clear:
            raise clear from None   # the clear message alone, not the method's deep traceback
        raise
    if not isinstance(rel, torch.Tensor) or rel.shape != x.shape:
        raise RuntimeError(f"method {method!r} returned {getattr(rel, 'shape', type(rel))}, "
                           f"expected a tensor of shape {tuple(x.shape)}")
    return rel


def _integral_targets(targets: Any) -> torch.Tensor:
    """``targets`` (a sequence, array, tensor or float) as a LongTensor ``(N,)``.

    Evaluation libraries pass labels as float arrays at times; a float that is a whole number
    is that class, any other (``1.5``) is refused naming it, never truncated.
    """
    t = torch.as_tensor(np.asarray(targets) if not isinstance(targets, torch.Tensor) else targets)
    if t.dtype == torch.bool:
        raise TypeError("targets must be class indices, got booleans")
    if torch.is_floating_point(t):
        bad = ~torch.isfinite(t) | (t != t.round())
        if bad.any():
            i = int(bad.reshape(-1).nonzero()[0])
            raise ValueError(f"targets must be whole class indices; got {t.reshape(-1)[i].item()!r} "
                             f"(targets[{i}]), which would be truncated")
    return t.long().reshape(-1)


def explain_func(model: Any, inputs: Any, targets: Any, method: str = "lrp",
                 **kwargs: Any) -> np.ndarray:
    """Quantus-style adapter: ``explain_func(model, inputs, targets, **kw) -> np.ndarray``.

    ``inputs`` may be a numpy array or tensor ``(N, C, H, W)``; extra keyword arguments
    that the evaluation library passes along (``device``, ``channel_first`` ...) and that
    the method does not take are ignored.  ``targets`` given as floats must be whole numbers
    (``1.0`` is class 1, ``1.5`` is refused).
    """
    m = get_method(method)
    device = kwargs.pop("device", None)
    params = {k: v for k, v in kwargs.items() if k in m.params}
    x = torch.as_tensor(np.asarray(inputs) if not isinstance(inputs, torch.Tensor) else inputs)
    x = x.float()
    if device is not None:
        x = x.to(device)
    if isinstance(targets, (list, tuple, np.ndarray, torch.Tensor, float, np.floating)):
        targets = _integral_targets(targets)
    rel = explain(model, x, targets, method=method, **params)
    return rel.detach().cpu().numpy()
