"""What an explanation is asked for: the image batch, the model's scores and the target classes.

The one place where inputs are validated (:func:`check_input`), a model is put in eval mode
for a call (:func:`eval_mode`), class scores are read (:func:`model_scores`) and targets are
resolved (:func:`resolve_target`); every explainer and metric calls these.  When a method
fails, :func:`check_model_input` tells whether the model refuses the input itself (one forward
of a single image) and names the input's shape and the layer that refused it.
"""
from __future__ import annotations

import weakref
from contextlib import contextmanager
from typing import Any
from collections.abc import Iterator

import numpy as np
import torch

from ._device import model_device

__all__ = ["check_input", "check_model_input", "eval_mode", "model_scores", "resolve_target",
           "scores_tensor"]


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
    if 0 in x.shape[1:]:
        raise ValueError(f"{name} has empty images: shape {tuple(x.shape)} (N, C, H, W) has "
                         f"{'no channels' if x.shape[1] == 0 else 'no pixels'}")
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


def _describe_output(out: Any) -> str:
    """What a forward returned, in words: ``a tuple of 2 tensors``, ``a dict with keys [...]``."""
    kind = type(out).__name__
    if isinstance(out, (tuple, list)):
        kinds = {type(o).__name__ for o in out}
        what = "tensors" if kinds == {"Tensor"} else "items (" + ", ".join(sorted(kinds)) + ")"
        return f"a {kind} of {len(out)} {what}"
    if isinstance(out, dict):
        return f"a {kind} with keys {list(out)[:6]}"
    return f"a {kind}"


def scores_tensor(out: Any, model: Any = None) -> torch.Tensor:
    """``out``, a model's forward output, as class scores ``(N, classes)``.

    Raises ``TypeError`` naming the output's type when it is not one tensor (a tuple of
    logits and features, a dict of outputs), ``ValueError`` naming its shape when it is not
    ``(N,)`` or ``(N, classes)``.
    """
    owner = f"{type(model).__name__} " if model is not None else ""
    if not isinstance(out, torch.Tensor):
        first = ("model(x)[0]" if isinstance(out, (tuple, list)) else
                 "model(x)['logits']" if isinstance(out, dict) else "the class scores")
        raise TypeError(f"model {owner}returned {_describe_output(out)}; lrpkit explains a "
                        f"model whose forward returns one (N, classes) tensor: wrap it in a "
                        f"torch.nn.Module whose forward returns {first}")
    if out.dim() == 1:
        out = out[:, None]
    if out.dim() != 2:
        raise ValueError(f"model {owner}output must be (N, classes), got shape {tuple(out.shape)}")
    return out


def model_scores(model: Any, x: torch.Tensor) -> torch.Tensor:
    """Class scores ``(N, classes)`` of a torch module or an object with ``decision_function``.

    A torch module is evaluated in eval mode (dropout off, batch-norm running statistics used
    and left unchanged); its training flags are restored afterwards.  An output that is not
    one tensor is refused by :func:`scores_tensor`.
    """
    if isinstance(model, torch.nn.Module):
        with eval_mode(model), torch.no_grad():
            out = model(x)
    elif hasattr(model, "decision_function"):
        out = torch.as_tensor(np.asarray(model.decision_function(x)))
    elif callable(model):
        with torch.no_grad():
            out = model(x)
        if not isinstance(out, (tuple, list, dict)):
            out = torch.as_tensor(out)
    else:
        raise TypeError(f"model must be a torch.nn.Module or have decision_function, "
                        f"got {type(model).__name__}")
    return scores_tensor(out, model)


def _kind(mod: Any) -> str:
    """A module's class name (a TorchScript module's original one)."""
    return getattr(mod, "original_name", None) or type(mod).__name__


def _describe_layer(name: str, mod: torch.nn.Module) -> str:
    """``'features.0' (Conv2d, expects 3 input channels)``: a layer and what input it takes."""
    kind = _kind(mod)
    if hasattr(mod, "in_channels") and hasattr(mod, "kernel_size"):   # a convolution
        what = f"{kind}, expects {mod.in_channels} input channels, kernel {tuple(mod.kernel_size)}"
    elif hasattr(mod, "in_features"):                                 # a linear layer
        what = f"{kind}, expects {mod.in_features} input features"
    else:
        what = kind
    return f"{name or '<model>'!r} ({what})"


def _message(e: BaseException) -> str:
    """An error's message; of a TorchScript error (its script traceback first), the last line."""
    text = str(e).strip()
    if "Traceback of TorchScript" in text:
        text = text.splitlines()[-1].strip()
        prefix = f"{type(e).__name__}: "
        text = text[len(prefix):] if text.startswith(prefix) else text
    return text


#: errors of a forward that can mean "the model does not take this input" (a cancellation by a
#: progress callback or a keyboard interrupt is none of them)
_FORWARD_ERRORS = (RuntimeError, ValueError, TypeError, IndexError, AttributeError)


def check_model_input(model: Any, x: torch.Tensor, *, name: str = "x") -> None:
    """Raise a clear error when ``model`` cannot take ``x``; return ``None`` when it can.

    One forward of the single image ``x[:1]`` (on the model's device, eval mode, no gradient:
    methods move their input there, so a device mismatch is not a refusal).  A forward that raises
    becomes a ``ValueError`` naming the input's shape, the layer that refused it (the module
    entered last and not completed), the model's first layer (with the input channels a
    ``Conv2d`` expects) and the original message; an output that is not one tensor ``(N,
    classes)`` is refused by :func:`scores_tensor` (``TypeError``).  :func:`lrpkit.explain`
    calls it when a method fails, so a wrong channel count or image size is reported here
    rather than from deep inside the method; a model that is not a ``torch.nn.Module`` is not
    checked.
    """
    if not isinstance(model, torch.nn.Module):
        return
    entered: list[str] = []
    done: set[str] = set()
    handles = []
    for n, mod in model.named_modules():
        if n == "" and any(True for _ in mod.children()):
            continue  # the model itself: not a layer
        try:
            handles.append(mod.register_forward_pre_hook(lambda *_, n=n: entered.append(n)))
            handles.append(mod.register_forward_hook(lambda *_, n=n: done.add(n)))
        except RuntimeError:  # TorchScript modules take no Python hooks
            break
    try:
        with eval_mode(model), torch.no_grad():
            out = model(x[:1].to(model_device(model, default=x.device)))
    except torch.cuda.OutOfMemoryError:
        raise
    except _FORWARD_ERRORS as e:
        mods = dict(model.named_modules())
        failed = [n for n in entered if n not in done]
        # the innermost module that did not complete: a leaf, or a container's own code
        refused = failed[-1] if failed else None
        first = next((n for n in entered if any(True for _ in mods[n].parameters(recurse=False))),
                     entered[0] if entered else None)
        if first is None:
            first = next((n for n, mod in mods.items()
                          if n and any(True for _ in mod.parameters(recurse=False))), None)
        where = f"layer {_describe_layer(refused, mods[refused])}" if refused else "its forward"
        msg = (f"{_kind(model)} cannot take the input {name} of shape "
               f"{tuple(x.shape)} (N, C, H, W; {str(x.dtype).replace('torch.', '')} on "
               f"{x.device}): {where} refused it")
        if first is not None and first != refused:
            msg += f"; the model's first layer is {_describe_layer(first, mods[first])}"
        msg += f". {type(e).__name__}: {_message(e)}"
        raise ValueError(msg) from None
    finally:
        for h in handles:
            h.remove()
    scores_tensor(out, model)


_N_CLASSES: weakref.WeakKeyDictionary[Any, tuple[tuple, int]] = weakref.WeakKeyDictionary()


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
