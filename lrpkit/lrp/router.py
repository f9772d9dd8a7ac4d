"""The functional operations of a forward pass, routed for LRP or refused.

While the engine (:mod:`.engine`) runs a forward pass, a :class:`Router` (a
``TorchFunctionMode``) sees every torch operation that is not inside a layer with an op of its
own: the code of container ``forward`` methods, of helper functions they call, of modules
lrpkit does not know (their own forward is run operation by operation) -- wherever it is
written.  Each operation on a *live* tensor (one that depends on the explained input: model
parameters do not require gradients during the pass) is one of:

* **routing** (:data:`ROUTING`): reshapes, views, permutes, ``cat`` / ``stack``, ``split`` /
  ``chunk``, indexing, padding, ``roll``, dtype casts, eval-mode dropout.  They move, select
  or copy values, so their gradient routes relevance exactly (a copy used twice receives the
  sum of both relevances);
* **a layer** (:data:`HANDLERS`): sums ``a + b`` / ``a += b`` / ``a - b`` (:class:`SumOp`),
  products with a constant or a gate ``x * s`` (:class:`ProductOp`), functional activations
  (``F.relu``, ``F.hardtanh``, ``F.silu``, ``torch.sigmoid`` ...: the declarations of
  :mod:`lrpkit._activations`), pools (``F.max_pool2d``, ``F.adaptive_avg_pool2d``, ``x.mean(
  (2, 3))`` ...), ``F.conv2d`` / ``F.linear`` with constant weights, ``F.layer_norm``,
  eval-mode ``F.batch_norm``.  Each becomes an op named ``"<module path>.<function>"``
  (``"features.3.add"``, ``"conv1.relu"``; ``_1``, ``_2`` ... for repeats inside one call of
  the module) that takes the composite's rule for its kind like a layer does;
* **unknown**: any other operation.  Its result is marked; if a marked value reaches the
  model's output the engine raises :class:`UnsupportedLayerError` naming the operation, the
  module path and the calling line.  Unknown operations whose result does not reach the
  output (statistics in a forward hook, say) do not matter.

Gates: a sigmoid / hard-sigmoid / tanh output is held constant (rule ``HoldConstant``) and
marked; the mark is cleared where it multiplies a live signal (``x * s``: the gate of
:class:`~lrpkit.lrp.rules.SignalTakeAll`) and kept through anything else, so a gate used as an
activation is refused too.

In-place operations (``out += x``, ``F.relu(x, inplace=True)``, ``x.mul_(s)``) keep their
in-place meaning (the tensor object is updated); a rule's saved input or output that shares
the overwritten storage is copied first (:meth:`Engine.overwrite`).
"""
from __future__ import annotations

import inspect
import os
from typing import Any
from collections.abc import Callable

import torch
from torch.overrides import TorchFunctionMode

from .._activations import FUNCTIONS, activation_input, out_of_place
from .layers import (AvgPoolOp, ClampOp, ConvOp, DenseOp, GatedOp, LayerNormOp, MaxPoolOp,
                     ProductOp, ReLUOp, ScaleOp, SquashOp, max_pool_flat)

__all__ = ["Router", "Taint", "ROUTING", "HANDLERS"]

_TORCH_DIR = os.path.dirname(torch.__file__) + os.sep
_HERE = os.path.dirname(__file__) + os.sep

#: operations whose gradient routes relevance exactly (they move, select or copy values)
ROUTING = frozenset({
    "view", "view_as", "reshape", "reshape_as", "flatten", "unflatten", "ravel", "permute",
    "transpose", "swapaxes", "swapdims", "t", "movedim", "moveaxis", "contiguous", "squeeze",
    "unsqueeze", "expand", "expand_as", "broadcast_to", "broadcast_tensors", "__getitem__",
    "narrow", "select", "split", "split_with_sizes", "tensor_split", "chunk", "unbind", "cat",
    "concat", "concatenate", "stack", "hstack", "vstack", "dstack", "roll", "flip", "fliplr",
    "flipud", "rot90", "clone", "detach", "to", "type", "type_as", "float", "double", "half",
    "bfloat16", "cpu", "cuda", "pad", "repeat", "tile", "repeat_interleave", "index_select",
    "gather", "take_along_dim", "where", "masked_fill", "channel_shuffle", "pixel_shuffle",
    "pixel_unshuffle", "__get__", "copy_", "__setitem__", "requires_grad_", "align_as",
    "_has_compatible_shallow_copy_type",
})

#: functions that are attention or products of two signals: refused with this hint
_ATTENTION = frozenset({"multi_head_attention_forward", "scaled_dot_product_attention",
                        "softmax", "log_softmax", "matmul", "bmm", "baddbmm", "einsum", "mm",
                        "__matmul__"})

_SUMS = {"add": 1, "__add__": 1, "__radd__": 1, "add_": 1, "__iadd__": 1, "sub": -1,
         "__sub__": -1, "sub_": -1, "__isub__": -1, "subtract": -1, "__rsub__": -2, "rsub": -2}
_PRODUCTS = {"mul", "__mul__", "__rmul__", "mul_", "__imul__", "multiply", "div", "__truediv__",
             "div_", "__itruediv__", "true_divide", "divide", "__rtruediv__", "__rdiv__"}
_NEG = {"neg", "__neg__", "negative", "neg_"}
_INPLACE_ARITH = {"add_", "__iadd__", "sub_", "__isub__", "mul_", "__imul__", "div_",
                  "__itruediv__", "neg_"}


class Taint:
    """Why a value must not reach the model's output (an unknown operation, or a gate used as
    an activation); ``gate`` marks the latter, which a product with a live signal clears."""

    __slots__ = ("message", "gate")

    def __init__(self, message: str, gate: bool = False):
        self.message, self.gate = message, gate


def _taint(t) -> Taint | None:
    return t.__dict__.get("_lrpkit_taint") if isinstance(t, torch.Tensor) else None


def _mark(out, taint: Taint) -> None:
    if isinstance(out, torch.Tensor):
        out._lrpkit_taint = taint
    elif isinstance(out, (tuple, list)):
        for o in out:
            _mark(o, taint)


def _tensors(args, kwargs):
    out = []
    for a in (*args, *kwargs.values()):
        if isinstance(a, torch.Tensor):
            out.append(a)
        elif isinstance(a, (list, tuple)):
            out.extend(b for b in a if isinstance(b, torch.Tensor))
    return out


def _live(t) -> bool:
    return isinstance(t, torch.Tensor) and t.requires_grad


def call_site() -> str:
    """``file:line in function`` of the innermost frame outside torch and lrpkit.lrp."""
    f = inspect.currentframe()
    while f is not None and (f.f_code.co_filename.startswith(_TORCH_DIR)
                             or f.f_code.co_filename.startswith(_HERE)):
        f = f.f_back
    if f is None:
        return "?"
    return f"{f.f_code.co_filename}:{f.f_lineno} in {f.f_code.co_name}()"


class Router(TorchFunctionMode):
    """Routes or refuses the functional operations of one forward pass (see module doc);
    ``engine`` provides ``dyn`` (run an op under its rule), ``overwrite``, ``protect`` and
    ``where`` (the module being run)."""

    def __init__(self, engine):
        super().__init__()
        self.engine = engine

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", None)
        ts = _tensors(args, kwargs)
        if not ts:
            return func(*args, **kwargs)
        live = taint = None
        for t in ts:
            if t.requires_grad and live is None:
                live = t
            if taint is None:
                taint = t.__dict__.get("_lrpkit_taint")
        if live is None and taint is None:
            return func(*args, **kwargs)
        handler = HANDLERS.get(name)
        if handler is not None and live is not None:
            out = handler(self, func, name, args, kwargs)
            if out is not NotImplemented:
                return out
        if name in ROUTING:
            if name in ("copy_", "__setitem__") and args and isinstance(args[0], torch.Tensor):
                self.engine.protect(args[0])
            out = func(*args, **kwargs)
            if taint is not None:
                _mark(args[0] if name in ("copy_", "__setitem__") else out, taint)
            return out
        if name == "dropout" or (name or "").endswith("dropout"):
            return self.dropout(func, name, args, kwargs, taint)
        if args and isinstance(args[0], torch.Tensor) and (name or "").endswith("_"):
            self.engine.protect(args[0])
        out = func(*args, **kwargs)
        if taint is None and live is not None and _any_live(out):
            taint = self.unknown(name or repr(func))
        if taint is not None:
            _mark(out, taint)
        return out

    # -- refusals ---------------------------------------------------------------------------
    def unknown(self, fname: str, why: str = "") -> Taint:
        where = self.engine.where()
        hint = ""
        if fname in _ATTENTION or "attention" in fname:
            hint = (" Attention and other products of two signals are not supported: vision "
                    "transformers (ViT, Swin, MaxViT) are out of lrpkit's scope.")
        path = self.engine.where_name()
        fix = (f" Express it with modules lrpkit knows, register the module type with "
               f"lrpkit.lrp.register_layer(...), or, for an element-wise activation module, "
               f"assign a rule by name: rules={{{path!r}: lrpkit.lrp.Pass()}}." if path else
               " Express it with modules lrpkit knows, or register a module type with "
               "lrpkit.lrp.register_layer(...).")
        return Taint(f"LRP cannot propagate relevance through {fname!r}{why} in the forward of "
                     f"{where} (called from {call_site()}).{hint}{fix}")

    def refuse(self, func, name, args, kwargs, why):
        out = func(*args, **kwargs)
        _mark(out, self.unknown(name, why))
        return out

    def dropout(self, func, name, args, kwargs, taint):
        training = kwargs.get("training", args[2] if len(args) > 2 else True)
        p = kwargs.get("p", args[1] if len(args) > 1 else 0.5)
        if training and p:
            return self.refuse(func, name, args, kwargs, " with training=True (random)")
        out = func(*args, **kwargs)
        if taint is not None:
            _mark(out, taint)
        return out


def _any_live(out) -> bool:
    if isinstance(out, torch.Tensor):
        return out.requires_grad
    if isinstance(out, (tuple, list)):
        return any(_any_live(o) for o in out)
    return False


def _disabled(f, *a, **k):
    with torch._C.DisableTorchFunction():
        return f(*a, **k)


# ----------------------------------------------------------------------------------------
# handlers: (router, func, name, args, kwargs) -> output, or NotImplemented (default path)
# ----------------------------------------------------------------------------------------
def _other(args, kwargs):
    if len(args) > 1:
        return args[1]
    return kwargs.get("other")


def _sum(r: Router, func, name, args, kwargs):
    a, b = args[0], _other(args, kwargs)
    if not isinstance(a, torch.Tensor) or kwargs.get("out") is not None:
        return NotImplemented
    alpha = kwargs.get("alpha", args[2] if len(args) > 2 else 1)
    sign = _SUMS[name]
    if sign == -2:               # __rsub__(a, b) = b - a
        terms, coef = (b, a), (1.0, -float(alpha))
    else:
        terms, coef = (a, b), (1.0, float(sign) * float(alpha))
    for t in terms:
        tt = _taint(t)
        if tt is not None:
            return _tainted(func, args, kwargs, tt)
    dtype = torch.result_type(*terms)
    ts = [t.to(dtype) if isinstance(t, torch.Tensor) else torch.tensor(t, dtype=dtype,
                                                                         device=a.device)
          for t in terms]
    z = r.engine.dyn_sum("sub" if sign != 1 else "add", ts, coef)
    if name in _INPLACE_ARITH:
        return r.engine.overwrite(a, z)
    return z


def _tainted(func, args, kwargs, taint):
    out = func(*args, **kwargs)
    _mark(out, taint)
    return out


_OUT_OF_PLACE = {"mul_": torch.mul, "__imul__": torch.mul, "div_": torch.div,
                 "__itruediv__": torch.div}


def _product(r: Router, func, name, args, kwargs):
    a, b = args[0], _other(args, kwargs)
    if kwargs.get("rounding_mode") is not None or kwargs.get("out") is not None:
        return NotImplemented
    if name in ("__rtruediv__", "__rdiv__"):
        return r.refuse(func, name, args, kwargs, " (division by a signal)")
    la, lb = _live(a), _live(b)
    if la and lb:
        return r.refuse(func, name, args, kwargs, " (a product of two signals)")
    div = name in ("div", "__truediv__", "div_", "__itruediv__", "true_divide", "divide")
    if lb and div:
        return r.refuse(func, name, args, kwargs, " (division by a signal)")
    signal, factor = (a, b) if la else (b, a)
    st, ft = _taint(signal), _taint(factor)
    if st is not None:
        return _tainted(func, args, kwargs, st)
    if ft is not None and not ft.gate:
        return _tainted(func, args, kwargs, ft)
    plain = _OUT_OF_PLACE.get(name, func)
    def f(t):
        return plain(t, factor) if la else plain(factor, t)

    kind = "gate" if ft is not None else "scale"
    z = r.engine.dyn("gate" if kind == "gate" else "mul", ProductOp(f, kind), signal)
    if name in _INPLACE_ARITH:
        if not la:
            return r.refuse(func, name, args, kwargs, " (in place on a constant)")
        return r.engine.overwrite(a, z)
    return z


def _neg(r: Router, func, name, args, kwargs):
    x = args[0]
    if _taint(x) is not None:
        return NotImplemented
    z = r.engine.dyn("neg", ProductOp(torch.neg, "scale"), x)
    return r.engine.overwrite(x, z) if name == "neg_" else z


def _activation(r: Router, func, name, args, kwargs):
    act = FUNCTIONS.get(func)
    if act is None or act.kind == "leaky":
        return NotImplemented
    x = activation_input(args, kwargs)
    if not _live(x) or _taint(x) is not None:
        return NotImplemented
    rest_args = args[1:] if args else ()
    rest_kwargs = {k: v for k, v in kwargs.items() if k not in ("input", "self")}

    def f(t):
        return _disabled(out_of_place, func, (t, *rest_args), rest_kwargs)

    inplace = out_of_place_differs(func, args, kwargs)
    base = act.name.lower()
    if act.name == "ReLU":
        op = ReLUOp(None, inplace=inplace)
        op.overwrite = r.engine.relu_overwrite
    elif act.kind == "rectifier":
        op = ClampOp(None, f)
    elif act.kind == "gated":
        op = GatedOp(None, f)
    else:
        op = SquashOp(None, f)
    z = r.engine.dyn(base, op, x)
    if inplace and z is not x:
        return r.engine.overwrite(x, z)
    return z


def out_of_place_differs(func, args, kwargs) -> bool:
    """Whether an activation call is in place (``relu_``, ``inplace=True``)."""
    if getattr(func, "__name__", "").endswith("_"):
        return True
    if kwargs.get("inplace"):
        return True
    try:
        sig = inspect.signature(func)
        bound = sig.bind(*args, **kwargs)
        return bool(bound.arguments.get("inplace", False))
    except (TypeError, ValueError):
        return False


def _bind(spec: tuple, args, kwargs) -> dict:
    """Positional and keyword arguments of a functional call as a dict by ``spec`` (names
    with defaults: ``(("input", None), ("weight", None), ...)``)."""
    out = {}
    for i, (k, d) in enumerate(spec):
        out[k] = args[i] if i < len(args) else kwargs.get(k, d)
    return out


_MAXPOOL = (("input", None), ("kernel_size", None), ("stride", None), ("padding", 0),
            ("dilation", 1), ("ceil_mode", False), ("return_indices", False))
_AMAXPOOL = (("input", None), ("output_size", None), ("return_indices", False))


def _pool(r: Router, func, name, args, kwargs):
    if not args or not _live(args[0]) or _taint(args[0]) is not None:
        return NotImplemented
    x = args[0]
    if kwargs.get("out") is not None:
        return NotImplemented

    def f(t):
        return func(t, *args[1:], **kwargs)

    if name in ("max_pool2d", "adaptive_max_pool2d", "amax"):
        if name == "max_pool2d":
            p = _bind(_MAXPOOL, args, kwargs)
            if p["return_indices"]:
                return r.refuse(func, name, args, kwargs, " with return_indices=True")
            flat = max_pool_flat(p["kernel_size"], p["stride"], p["padding"], p["dilation"],
                                 p["ceil_mode"])
        elif name == "adaptive_max_pool2d":
            p = _bind(_AMAXPOOL, args, kwargs)
            if p["return_indices"]:
                return r.refuse(func, name, args, kwargs, " with return_indices=True")
            size = p["output_size"]

            def flat(t):
                return torch.nn.functional.adaptive_avg_pool2d(t, size)
        else:
            dim = kwargs.get("dim", args[1] if len(args) > 1 else ())
            keep = kwargs.get("keepdim", args[2] if len(args) > 2 else False)

            def flat(t):
                return t.mean(dim, keepdim=keep) if dim != () else t.mean()
        op = MaxPoolOp(None, lambda t: _disabled(f, t), lambda t: _disabled(flat, t))
    else:
        if name in ("mean", "sum") and (kwargs.get("dtype") is not None):
            return NotImplemented
        op = AvgPoolOp(None, lambda t: _disabled(f, t))
    return r.engine.dyn(name, op, x)


_CONV = (("input", None), ("weight", None), ("bias", None), ("stride", 1), ("padding", 0),
         ("dilation", 1), ("groups", 1))
_LINEAR = (("input", None), ("weight", None), ("bias", None))
_LN = (("input", None), ("normalized_shape", None), ("weight", None), ("bias", None),
       ("eps", 1e-5))
_BN = (("input", None), ("running_mean", None), ("running_var", None), ("weight", None),
       ("bias", None), ("training", False), ("momentum", 0.1), ("eps", 1e-5))


def _affine(r: Router, func, name, args, kwargs):
    spec = {"conv2d": _CONV, "linear": _LINEAR, "layer_norm": _LN, "batch_norm": _BN}[name]
    p = _bind(spec, args, kwargs)
    x = p["input"]
    if not _live(x) or _taint(x) is not None:
        return NotImplemented
    consts = [p.get(k) for k in ("weight", "bias", "running_mean", "running_var")]
    if any(_live(c) for c in consts):
        return r.refuse(func, name, args, kwargs, " (weights computed from the input)")
    if name == "conv2d":
        if x.dim() != 4:
            return r.refuse(func, name, args, kwargs, f" on a {x.dim()}-d input")
        op = ConvOp.functional(p["weight"], p["bias"], p["stride"], p["padding"], p["dilation"],
                               p["groups"])
    elif name == "linear":
        op = DenseOp.functional(p["weight"], p["bias"])
    elif name == "layer_norm":
        op = LayerNormOp(None, p["normalized_shape"], p["weight"], p["bias"], p["eps"])
    else:
        if p["training"] or p["running_mean"] is None:
            return r.refuse(func, name, args, kwargs, " in training mode (batch statistics)")
        op = ScaleOp.functional(p["running_mean"], p["running_var"], p["weight"], p["bias"],
                                p["eps"])
    return r.engine.dyn(name, op, x)


HANDLERS: dict[str, Callable[..., Any]] = {}
for _n in _SUMS:
    HANDLERS[_n] = _sum
for _n in _PRODUCTS:
    HANDLERS[_n] = _product
for _n in _NEG:
    HANDLERS[_n] = _neg
for _f in FUNCTIONS:
    HANDLERS[_f.__name__] = _activation
for _n in ("max_pool2d", "adaptive_max_pool2d", "amax", "avg_pool2d", "adaptive_avg_pool2d",
           "mean", "sum"):
    HANDLERS[_n] = _pool
for _n in ("conv2d", "linear", "layer_norm", "batch_norm"):
    HANDLERS[_n] = _affine
del _n, _f
