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

import inspect
from contextlib import contextmanager
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import torch

from .params import Param, parameters, validate

__all__ = ["Method", "register", "methods", "get_method", "explain", "explain_func",
           "model_scores", "resolve_target", "check_input", "eval_mode"]


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

    def describe(self) -> str:
        """One line per parameter: name, default and accepted values."""
        lines = [f"{self.name}: {self.description}" + (f" ({self.paper})" if self.paper else "")]
        lines += [f"  {p.name} = {p.default!r}: {p.describe()}" for p in self.parameters.values()]
        return "\n".join(lines)


_REGISTRY: dict[str, Method] = {}

#: the leading arguments every registered function takes positionally
_CALL_ARGS = ("model", "x", "target")


def register(name: str, *, description: str = "", paper: str = "", model_kind: str = "torch",
             replace: bool = False, resolves_pred: bool = False):
    """Decorator that adds ``func(model, x, target, **params)`` to the registry.

    ``func`` is the real function, declared with :func:`lrpkit.params.declare` (or
    :func:`~lrpkit.params.forwards` for an adapter): its keyword parameters, defaults and
    constraints are the method's parameters; nothing is restated here.
    ``resolves_pred=True``: the function is handed ``target="pred"`` unchanged and takes each
    sample's arg-max from its own forward pass (one forward instead of two); otherwise
    ``target`` is always a LongTensor ``(N,)``.
    """
    if not isinstance(name, str) or not name:
        raise ValueError("method name must be a non-empty string")

    def deco(func):
        if name in _REGISTRY and not replace and _REGISTRY[name].func is not func:
            raise ValueError(f"method {name!r} is already registered "
                             f"(by {_REGISTRY[name].func.__module__}); pass replace=True")
        params = {k: p for k, p in parameters(func).items() if k not in _CALL_ARGS}
        doc = description or " ".join((inspect.getdoc(func) or "").split("\n\n")[0].split())
        _REGISTRY[name] = Method(name, func, params, doc, paper, model_kind, resolves_pred)
        return func

    return deco


def _load_builtin_methods() -> None:
    # Import the modules that register methods; each import is cheap and idempotent.
    import importlib

    for mod in ("lrpkit.lrp", "lrpkit.fisher", "lrpkit.pda", "lrpkit.fgvis"):
        importlib.import_module(mod)


def methods() -> dict[str, Method]:
    """All registered methods by name (a copy); ``methods()[name].describe()`` lists a
    method's parameters, defaults and accepted values."""
    _load_builtin_methods()
    return dict(sorted(_REGISTRY.items()))


def get_method(name: str) -> Method:
    _load_builtin_methods()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; registered methods: "
                         f"{', '.join(sorted(_REGISTRY)) or '(none)'}") from None


def check_input(x: Any, name: str = "x") -> torch.Tensor:
    """Validate a batch of images: a finite float tensor of rank 4 ``(N, C, H, W)``."""
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor (N, C, H, W), got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(f"{name} must have rank 4 (N, C, H, W), got shape {tuple(x.shape)}; "
                         f"use x.unsqueeze(0) for a single image")
    if x.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch (shape {tuple(x.shape)})")
    if not torch.is_floating_point(x):
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if not torch.isfinite(x).all():
        bad = (~torch.isfinite(x)).sum().item()
        raise ValueError(f"{name} contains {bad} NaN or infinite values")
    return x


@contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """The model in eval mode for the duration; each module's training flag restored after."""
    training = [m for m in model.modules() if m.training]
    try:
        for m in training:
            m.training = False
        yield model
    finally:
        for m in training:
            m.training = True


def model_scores(model: Any, x: torch.Tensor) -> torch.Tensor:
    """Class scores ``(N, classes)`` of a torch module or an object with ``decision_function``.

    A torch module is evaluated in eval mode (dropout off, batch-norm running statistics used
    and left unchanged); its training flags are restored afterwards.
    """
    if isinstance(model, torch.nn.Module):
        with eval_mode(model), torch.no_grad():
            out = model(x)
    elif hasattr(model, "decision_function"):
        out = torch.as_tensor(np.asarray(model.decision_function(x)))
    elif callable(model):
        with torch.no_grad():
            out = torch.as_tensor(model(x))
    else:
        raise TypeError(f"model must be a torch.nn.Module or have decision_function, "
                        f"got {type(model).__name__}")
    if out.dim() == 1:
        out = out[:, None]
    if out.dim() != 2:
        raise ValueError(f"model output must be (N, classes), got shape {tuple(out.shape)}")
    return out


_N_CLASSES: "weakref.WeakKeyDictionary[Any, tuple[tuple, int]]" = weakref.WeakKeyDictionary()


def _n_classes(model: Any, x: torch.Tensor) -> int:
    """The model's number of outputs, cached per model and input size (saves a forward pass)."""
    coef = getattr(model, "coef_", None)  # fitted linear classifiers (the FV model): no encoding
    if isinstance(coef, np.ndarray) and coef.ndim == 2:
        return int(coef.shape[0])
    key = tuple(x.shape[1:]) if hasattr(x, "shape") else None
    try:
        cached = _N_CLASSES.get(model)
    except TypeError:  # not weak-referenceable
        cached = None
    if cached is not None and cached[0] == key:
        return cached[1]
    n = model_scores(model, x[:1]).shape[1]  # x[:1]: a batch of one (tensor or list)
    try:
        _N_CLASSES[model] = (key, n)
    except TypeError:
        pass
    return n


def resolve_target(model: Any, x: Any, target: Any, n_classes: int | None = None, *,
                   scores: torch.Tensor | None = None) -> torch.Tensor:
    """Turn ``target`` (int, sequence, tensor or ``"pred"``) into a LongTensor ``(N,)``.

    The one place where targets are resolved: :func:`explain`, the LRP engine, the gradient
    baselines and the Fisher-vector resampling call it.  ``x`` is a batch ``(N, ...)`` or a
    list of ``N`` images (Fisher-vector models).  ``"pred"`` is each sample's arg-max score:
    taken from ``scores`` ``(N, classes)`` when the caller already has them (its own forward
    pass; no second one), otherwise from :func:`model_scores` (eval mode).  Raises
    ``ValueError`` for classes out of ``range(n_classes)``; ``n_classes`` is ``scores``'s
    width, or read from the model when not given.
    """
    n = int(x.shape[0]) if hasattr(x, "shape") else len(x)
    if scores is not None:
        if scores.dim() != 2 or scores.shape[0] != n:
            raise ValueError(f"scores must be (N={n}, classes), got {tuple(scores.shape)}")
        n_classes = int(scores.shape[1]) if n_classes is None else n_classes
    if isinstance(target, str):
        if target != "pred":
            raise ValueError(f"target must be an int, a sequence of ints or 'pred', got {target!r}")
        s = scores if scores is not None else model_scores(model, x)
        return s.detach().argmax(1).long()
    if isinstance(target, (bool, np.bool_)):
        raise TypeError("target must be a class index, not a bool")
    if isinstance(target, (int, np.integer)):
        t = torch.full((n,), int(target), dtype=torch.long)
    else:
        t = torch.as_tensor(np.asarray(target) if not isinstance(target, torch.Tensor) else target)
        if t.dim() == 0:
            t = t.expand(n)
        if t.dim() != 1 or t.shape[0] != n:
            raise ValueError(f"target must hold one class per sample ({n}), got shape {tuple(t.shape)}")
        if torch.is_floating_point(t) or t.dtype == torch.bool:
            raise TypeError(f"target must hold integer class indices, got dtype {t.dtype}")
        t = t.long()
    if n_classes is None:
        n_classes = _n_classes(model, x)
    if (t < 0).any() or (t >= n_classes).any():
        raise ValueError(f"target {t.tolist()} out of range for a model with {n_classes} classes")
    return t


def explain(model: Any, x: torch.Tensor, target: Any = "pred", method: str = "lrp",
            **params: Any) -> torch.Tensor:
    """Relevance of every input element for ``target``: a tensor of ``x``'s shape.

    ``method`` names a registered method (see :func:`methods`); ``params`` override its
    defaults and are checked against its declaration (an unknown name or a rejected value
    raises :class:`~lrpkit.params.InvalidParameterError` naming the parameter).
    """
    m = get_method(method)
    m.validate(params)
    x = check_input(x)
    if m.resolves_pred and isinstance(target, str) and target == "pred":
        t = target  # the method takes the arg-max of its own (single) forward pass
    else:
        t = resolve_target(model, x, target)
    kw = {**m.params, **params}
    rel = m.func(model, x, t, **kw)
    if not isinstance(rel, torch.Tensor) or rel.shape != x.shape:
        raise RuntimeError(f"method {method!r} returned {getattr(rel, 'shape', type(rel))}, "
                           f"expected a tensor of shape {tuple(x.shape)}")
    return rel


def explain_func(model: Any, inputs: Any, targets: Any, method: str = "lrp",
                 **kwargs: Any) -> np.ndarray:
    """Quantus-style adapter: ``explain_func(model, inputs, targets, **kw) -> np.ndarray``.

    ``inputs`` may be a numpy array or tensor ``(N, C, H, W)``; extra keyword arguments
    that the evaluation library passes along (``device``, ``channel_first`` ...) and that
    the method does not take are ignored.
    """
    m = get_method(method)
    device = kwargs.pop("device", None)
    params = {k: v for k, v in kwargs.items() if k in m.params}
    x = torch.as_tensor(np.asarray(inputs) if not isinstance(inputs, torch.Tensor) else inputs)
    x = x.float()
    if device is not None:
        x = x.to(device)
    if isinstance(targets, (list, tuple, np.ndarray, torch.Tensor)):
        targets = torch.as_tensor(np.asarray(targets) if not isinstance(targets, torch.Tensor)
                                  else targets).long().reshape(-1)
    rel = explain(model, x, targets, method=method, **params)
    return rel.detach().cpu().numpy()
