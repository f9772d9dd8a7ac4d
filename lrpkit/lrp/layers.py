"""Layers: one table from module type to *op*, the linear algebra that rules run on.

An op describes one layer to the rules (:mod:`.rules`) and the engine:

* ``kind`` -- the name composites map to rules (``"conv"``, ``"linear"``, ``"bn"``,
  ``"avgpool"``, ``"maxpool"``, ``"sum"``, ``"relu"``, ``"identity"``, ``"other"``);
* ``params()`` -- the weight and bias the layer computes with (``None`` for weight-free maps;
  a canonizer may substitute them, e.g. batch-norm folded into a convolution);
* ``fwd(x, w, b)`` -- the layer's affine map for any weight variant (``W+``, ``W-``, ``W^2``);
  ``bwd(s, w, in_shape)`` -- its transpose ``W^T s``; ``ones(w)`` -- the all-ones map with the
  same connectivity (what the flat rule spreads over);
* ``default_rule(epsilon)`` -- the rule used where a composite names none (``None``: the
  composite must name one);
* ``reaches_dead_units`` -- the op's own backward may give inputs equal to 0 relevance
  (an element-wise function with ``f(0) != 0`` under the pass rule); the engine then keeps
  in-place ReLUs from overwriting what earlier rules saved.

Adding a layer type is one call::

    lrpkit.lrp.register_layer(MyConv, lambda m: ConvOp(m))           # behaves as a convolution
    lrpkit.lrp.register_layer(nn.LeakyReLU, ActivationOp)            # relevance passes (Pass)

A module type that is not in the table (nor a subclass of a type in it) raises
:class:`UnsupportedLayerError` when relevance would have to pass it, naming the layer and the
two ways out (register an op, or assign ``Pass()`` to an element-wise module by name).
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Op", "ConvOp", "DenseOp", "ScaleOp", "AvgPoolOp", "MaxPoolOp", "SumOp", "ReLUOp",
           "IdentityOp", "ElementwiseOp", "ActivationOp", "UnsupportedLayerError",
           "register_layer", "layer_op", "LAYERS"]


class UnsupportedLayerError(TypeError):
    """A layer (or functional operation) that lrpkit cannot propagate relevance through."""


class Op:
    """Base class of a layer's op (see module doc).  ``module`` is the layer, ``name`` its
    path in the model (set by the engine)."""

    kind = "other"
    reaches_dead_units = False

    def __init__(self, module: nn.Module | None = None):
        self.module = module
        self.name = ""

    def params(self) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        return None, None

    def fwd(self, x, w=None, b=None):  # pragma: no cover - interface
        raise NotImplementedError

    def bwd(self, s, w, in_shape):  # pragma: no cover - interface
        raise NotImplementedError

    def bwd_many(self, ss, ws, in_shape):
        """``sum_k W_k^T s_k`` (one transposed product per weight variant)."""
        out = self.bwd(ss[0], ws[0], in_shape)
        for s, w in zip(ss[1:], ws[1:]):
            out = out + self.bwd(s, w, in_shape)
        return out

    def ones(self, w):
        """``(op, weight)`` of the all-ones linear map with this layer's connectivity."""
        return self, (None if w is None else torch.ones_like(w))

    def default_rule(self, epsilon: float):
        return None

    def missing_rule(self, composite: str) -> Exception:
        """The error raised when neither the composite nor the layer gives a rule."""
        return ValueError(f"composite {composite!r} has no rule for layer {self.name!r} "
                          f"({type(self.module).__name__}, kind {self.kind!r}); add one with "
                          f"rules={{{self.name!r}: ...}}")


class _Weighted(Op):
    """Ops whose weight and bias come from the module (or a canonizer's substitute)."""

    def __init__(self, module):
        super().__init__(module)
        self.substitute: tuple[torch.Tensor, torch.Tensor | None] | None = None

    def params(self):
        if self.substitute is not None:
            return self.substitute
        m = self.module
        return m.weight.detach(), (m.bias.detach() if m.bias is not None else None)


class ConvOp(_Weighted):
    """``nn.Conv2d`` (zero padding; ``padding="same"`` where symmetric)."""

    kind = "conv"

    def __init__(self, module: nn.Conv2d):
        super().__init__(module)
        m = module
        if m.padding_mode != "zeros":
            raise UnsupportedLayerError(f"padding_mode={m.padding_mode!r}")
        pad = m.padding
        if isinstance(pad, str):
            if pad == "valid":
                pad = (0, 0)
            elif all((d * (k - 1)) % 2 == 0 for d, k in zip(m.dilation, m.kernel_size)):
                pad = tuple(d * (k - 1) // 2 for d, k in zip(m.dilation, m.kernel_size))
            else:
                raise UnsupportedLayerError("asymmetric padding='same'")
        self.stride, self.padding = tuple(m.stride), tuple(pad)
        self.dilation, self.groups = tuple(m.dilation), m.groups

    def fwd(self, x, w, b=None):
        return F.conv2d(x, w, b, self.stride, self.padding, self.dilation, self.groups)

    def bwd(self, s, w, in_shape):
        dummy = s.new_empty(1).expand(in_shape)
        return torch.ops.aten.convolution_backward(
            s, dummy, w, None, self.stride, self.padding, self.dilation, False, [0, 0],
            self.groups, (True, False, False))[0]

    def bwd_many(self, ss, ws, in_shape):
        if self.groups == 1 and len(ws) > 1:  # one call on stacked weights
            return self.bwd(torch.cat(ss, 1), torch.cat(ws, 0), in_shape)
        return super().bwd_many(ss, ws, in_shape)


class DenseOp(_Weighted):
    """``nn.Linear``."""

    kind = "linear"

    def fwd(self, x, w, b=None):
        return F.linear(x, w, b)

    def bwd(self, s, w, in_shape):
        return (s @ w).reshape(in_shape)

    def bwd_many(self, ss, ws, in_shape):
        if len(ws) > 1:
            return self.bwd(torch.cat(ss, -1), torch.cat(ws, 0), in_shape)
        return super().bwd_many(ss, ws, in_shape)


class ScaleOp(Op):
    """A batch-norm that was not folded into a convolution: ``z = s_c x + t_c`` per channel."""

    kind = "bn"

    def params(self):
        m = self.module
        if m.running_mean is None or m.running_var is None:
            raise UnsupportedLayerError(
                f"batch-norm {self.name!r} has no running statistics and cannot be explained")
        scale = torch.rsqrt(m.running_var.detach() + m.eps)
        if m.weight is not None:
            scale = scale * m.weight.detach()
        shift = -m.running_mean.detach() * scale
        if m.bias is not None:
            shift = shift + m.bias.detach()
        return scale, shift

    def _c(self, v, x):
        return v.reshape((1, -1) + (1,) * (x.dim() - 2))

    def fwd(self, x, w, b=None):
        z = x * self._c(w, x)
        return z if b is None else z + self._c(b, x)

    def bwd(self, s, w, in_shape):
        return s * self._c(w, s)

    def default_rule(self, epsilon):
        from .rules import Epsilon
        return Epsilon(epsilon)


def _vjp(f, s, in_shape):
    with torch.enable_grad():
        xx = s.new_zeros(in_shape, requires_grad=True)
        (g,) = torch.autograd.grad(f(xx), xx, s)
    return g


class AvgPoolOp(Op):
    """A weight-free linear pooling (average pools); its transpose is the vector-Jacobian
    product."""

    kind = "avgpool"

    def __init__(self, module=None, func: Callable | None = None):
        super().__init__(module)
        # the class forward (an instance attribute ``forward`` is the engine's)
        self.func = func if func is not None else type(module).forward.__get__(module)

    def fwd(self, x, w=None, b=None):
        return self.func(x)

    def bwd(self, s, w, in_shape):
        return _vjp(self.func, s, in_shape)

    def default_rule(self, epsilon):
        from .rules import Zero
        return Zero()


class MaxPoolOp(Op):
    """``nn.MaxPool2d``: ``fwd`` is the max-pool itself, whose gradient routes relevance to
    the arg-max (the winner-takes-all rule); ``ones`` averages over the window (flat rule)."""

    kind = "maxpool"

    def __init__(self, module: nn.MaxPool2d):
        super().__init__(module)
        self.func = type(module).forward.__get__(module)

    def fwd(self, x, w=None, b=None):
        return self.func(x)

    def bwd(self, s, w, in_shape):  # pragma: no cover - a max-pool is not linear
        raise UnsupportedLayerError(f"max-pool {self.name!r} has no transpose; rules that need "
                                    f"one cannot be used on it")

    def ones(self, w):
        m = self.module
        if (m.dilation if isinstance(m.dilation, int) else max(m.dilation)) != 1:
            raise UnsupportedLayerError(f"flat rule on dilated max-pool {self.name!r} is not "
                                        f"supported")
        return AvgPoolOp(m, lambda x: F.avg_pool2d(x, m.kernel_size, m.stride, m.padding,
                                                   m.ceil_mode, count_include_pad=False)), None

    def default_rule(self, epsilon):
        from .rules import WinnerTakesAll
        return WinnerTakesAll()


class SumOp(Op):
    """A residual addition ``a + b`` as a linear op on the inputs stacked along a new last
    dimension, ``x = stack([a, b], -1)``: ``z = x[..., 0] + x[..., 1]``, transpose
    ``s -> [s, s]``.  Named ``"<block>.add"``."""

    kind = "sum"

    def fwd(self, x, w=None, b=None):
        return x.sum(-1)

    def bwd(self, s, w, in_shape):
        return s.unsqueeze(-1).expand(in_shape).contiguous()

    def default_rule(self, epsilon):
        from .rules import Zero
        return Zero()


class _PassReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, R):
        return R


class _PassReLUInplace(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.mark_dirty(x)
        return x.clamp_(min=0)

    @staticmethod
    def backward(ctx, R):
        return R


class ReLUOp(Op):
    """``nn.ReLU``: the forward is the ReLU, relevance passes unchanged (rule ``Pass``).

    It runs in place where the engine allows it (``overwrite(x, inplace)``, set by the engine):
    then ``relu(z)`` replaces the previous layer's output ``z`` that its rule may have kept.
    """

    kind = "relu"

    def __init__(self, module: nn.ReLU):
        super().__init__(module)
        self.overwrite: Callable[[torch.Tensor, bool], bool] | None = None

    def fwd(self, x, w=None, b=None):
        if self.overwrite is not None and self.overwrite(x, self.module.inplace):
            return _PassReLUInplace.apply(x)
        return _PassReLU.apply(x)

    def default_rule(self, epsilon):
        from .rules import Pass
        return Pass()


class IdentityOp(Op):
    """Dropout (eval mode), flatten, identity: the module's own forward; its gradient passes
    relevance unchanged (rule ``Pass``)."""

    kind = "identity"

    def __init__(self, module):
        super().__init__(module)
        self.func = type(module).forward.__get__(module)

    def fwd(self, x, w=None, b=None):
        return self.func(x)

    def default_rule(self, epsilon):
        from .rules import Pass
        return Pass()


class _PassAny(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, func, name):
        y = func(x)
        if not isinstance(y, torch.Tensor) or y.shape != x.shape:
            raise UnsupportedLayerError(
                f"layer {name!r}: the Pass rule needs an element-wise module (output shape equal "
                f"to input shape), got {tuple(getattr(y, 'shape', ()))} from {tuple(x.shape)}")
        return y

    @staticmethod
    def backward(ctx, R):
        return R, None, None


class ElementwiseOp(Op):
    """A module lrpkit does not know, usable with the ``Pass`` rule if it is element-wise
    (``f(0)`` may be non-zero, so relevance may reach dead units of a ReLU below)."""

    kind = "other"
    reaches_dead_units = True

    def __init__(self, module, reason: str | None = None):
        super().__init__(module)
        self.func = type(module).forward.__get__(module)
        self.reason = reason

    def fwd(self, x, w=None, b=None):
        return _PassAny.apply(x, self.func, self.name)

    def missing_rule(self, composite):
        m = self.module
        reason = f" ({self.reason})" if self.reason else ""
        return UnsupportedLayerError(
            f"LRP does not support layer {self.name!r} of type {type(m).__module__}."
            f"{type(m).__qualname__}{reason}. Supported: {', '.join(_supported())}. "
            f"Register the type with lrpkit.lrp.register_layer({type(m).__name__}, "
            f"op_factory) (see lrpkit.lrp.layers), or, for an element-wise activation, assign a "
            f"rule by name: explain(..., rules={{{self.name!r}: lrpkit.lrp.Pass()}})")


class ActivationOp(ElementwiseOp):
    """A registered element-wise activation (``register_layer(nn.LeakyReLU, ActivationOp)``):
    relevance passes unchanged by default (rule ``Pass``)."""

    def default_rule(self, epsilon):
        from .rules import Pass
        return Pass()


#: module type -> op factory ``factory(module) -> Op``; see :func:`register_layer`
LAYERS: dict[type, Callable[[nn.Module], Op]] = {}


def register_layer(module_type: type, factory: Callable[[nn.Module], Op], *,
                   replace: bool = False) -> None:
    """Teach the LRP engine a module type: ``factory(module)`` returns its :class:`Op`.

    Subclasses of a registered type use its entry unless registered themselves.  The factory
    may raise :class:`UnsupportedLayerError` (with a reason) for configurations it cannot
    handle; the layer then behaves as an unknown one.
    """
    if not (isinstance(module_type, type) and issubclass(module_type, nn.Module)):
        raise TypeError(f"module_type must be an nn.Module subclass, got {module_type!r}")
    if not callable(factory):
        raise TypeError(f"factory must be callable (module -> Op), got {type(factory).__name__}")
    if module_type in LAYERS and not replace and LAYERS[module_type] is not factory:
        raise ValueError(f"{module_type.__name__} is already registered; pass replace=True")
    LAYERS[module_type] = factory


def layer_op(module: nn.Module) -> Op:
    """The op of a module from :data:`LAYERS` (nearest registered base class), or an
    :class:`ElementwiseOp` that raises when no rule is assigned to it."""
    for cls in type(module).__mro__:
        factory = LAYERS.get(cls)
        if factory is not None:
            try:
                op = factory(module)
            except UnsupportedLayerError as e:
                return ElementwiseOp(module, str(e))
            if not isinstance(op, Op):
                raise TypeError(f"the op factory for {cls.__name__} returned "
                                f"{type(op).__name__}, not an lrpkit.lrp.layers.Op")
            return op
    return ElementwiseOp(module)


def _supported() -> list[str]:
    return sorted({t.__name__ for t in LAYERS})


for _t, _f in ((nn.Conv2d, ConvOp), (nn.Linear, DenseOp), (nn.BatchNorm2d, ScaleOp),
               (nn.ReLU, ReLUOp), (nn.MaxPool2d, MaxPoolOp), (nn.AvgPool2d, AvgPoolOp),
               (nn.AdaptiveAvgPool2d, AvgPoolOp), (nn.Dropout, IdentityOp),
               (nn.Dropout1d, IdentityOp), (nn.Dropout2d, IdentityOp),
               (nn.AlphaDropout, IdentityOp), (nn.Flatten, IdentityOp),
               (nn.Identity, IdentityOp)):
    register_layer(_t, _f)
del _t, _f
