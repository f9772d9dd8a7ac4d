"""The registry of heatmap methods: each method's function, declared parameters and provenance.

Explainers register themselves here with :func:`register` (the real function, declared with
:func:`lrpkit.params.declare`); :mod:`lrpkit.explain` looks them up by name.  This module
imports no explainer, so every explainer can import it.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any
from collections.abc import Callable, Mapping

import torch

from .params import Param, parameters, validate

__all__ = ["Method", "register", "registered"]


@dataclass(frozen=True)
class Method:
    """A registered heatmap method: its function, declared parameters and provenance.

    ``parameters`` are the function's own declaration (:mod:`lrpkit.params`: each keyword
    parameter's default and constraints); ``params`` are their defaults.
    """

    name: str
    func: Callable[..., torch.Tensor]
    parameters: Mapping[str, Param] = field(default_factory=dict)
    description: str = ""
    paper: str = ""
    model_kind: str = "torch"  # "torch" (nn.Module) or "fisher" (FisherVectorClassifier)
    #: the function takes ``target="pred"`` itself and resolves it from its own forward pass
    #: (saves a forward; the prediction is then the one of the explained pass)
    resolves_pred: bool = False
    #: the method needs only the model's forward pass and autograd, so it also explains a
    #: TorchScript module (``torch.jit.load``); False for methods that swap layers or intercept
    #: activation calls (LRP, deconvnet, guided backprop), which compiled TorchScript code bypasses
    scriptable: bool = True

    @property
    def params(self) -> dict[str, Any]:
        """Default value of each parameter."""
        return {k: p.default for k, p in self.parameters.items()}

    def validate(self, values: Mapping[str, Any]) -> None:
        """Raise :class:`~lrpkit.params.InvalidParameterError` naming any unknown parameter or
        rejected value in ``values``."""
        validate(self.parameters, values, owner=f"method {self.name!r}")

    def __repr__(self) -> str:  # short, for listings in notebooks
        return f"Method({self.name!r}, params={self.params!r})"

    def accepts(self, model: Any) -> bool:
        """Whether this method can explain ``model``: a ``"fisher"`` method a model with
        ``decision_function``, a ``"torch"`` method a ``torch.nn.Module`` (a TorchScript module
        only when the method is :attr:`scriptable`)."""
        if self.model_kind == "fisher":
            return hasattr(model, "decision_function") and not isinstance(model, torch.nn.Module)
        if not isinstance(model, torch.nn.Module):
            return False
        return self.scriptable or not isinstance(model, torch.jit.ScriptModule)

    def describe(self) -> str:
        """One line per parameter: name, default and accepted values."""
        lines = [f"{self.name}: {self.description}" + (f" ({self.paper})" if self.paper else "")]
        lines += [f"  {p.name} = {p.default!r}: {p.describe()}" for p in self.parameters.values()]
        return "\n".join(lines)


_REGISTRY: dict[str, Method] = {}

#: the leading arguments every registered function takes positionally
_CALL_ARGS = ("model", "x", "target")


def register(name: str, *, description: str = "", paper: str = "", model_kind: str = "torch",
             replace: bool = False, resolves_pred: bool = False, scriptable: bool = True):
    """Decorator that adds ``func(model, x, target, **params)`` to the registry.

    ``func`` is the real function, declared with :func:`lrpkit.params.declare` (or
    :func:`~lrpkit.params.forwards` for an adapter): its keyword parameters, defaults and
    constraints are the method's parameters; nothing is restated here.
    ``resolves_pred=True``: the function is handed ``target="pred"`` unchanged and takes each
    sample's arg-max from its own forward pass (one forward instead of two); otherwise
    ``target`` is always a LongTensor ``(N,)``.  ``scriptable=False``: the method swaps layers
    or intercepts activation calls, so :func:`lrpkit.explain` refuses a TorchScript module.
    """
    if not isinstance(name, str) or not name:
        raise ValueError("method name must be a non-empty string")

    def deco(func):
        if name in _REGISTRY and not replace and _REGISTRY[name].func is not func:
            raise ValueError(f"method {name!r} is already registered "
                             f"(by {_REGISTRY[name].func.__module__}); pass replace=True")
        params = {k: p for k, p in parameters(func).items() if k not in _CALL_ARGS}
        doc = description or " ".join((inspect.getdoc(func) or "").split("\n\n")[0].split())
        _REGISTRY[name] = Method(name, func, params, doc, paper, model_kind, resolves_pred, scriptable)
        return func

    return deco


def registered() -> dict[str, Method]:
    """The methods registered so far (a copy); :func:`lrpkit.methods` loads the built-in ones."""
    return dict(_REGISTRY)
