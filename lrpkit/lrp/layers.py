"""Layers: one table from module type to *op*, the linear algebra that rules run on.

An op describes one layer to the rules (:mod:`.rules`) and the engine:

* ``kind`` -- the name composites map to rules (``"conv"``, ``"linear"``, ``"bn"``,
  ``"layernorm"``, ``"avgpool"``, ``"maxpool"``, ``"sum"``, ``"relu"``, ``"clamp"`` (ReLU6,
  hard-tanh), ``"gated"`` (SiLU, GELU, Hardswish, Mish), ``"squash"`` (sigmoid, hard-sigmoid,
  tanh: gates), ``"gate"`` (a product ``x * s`` with a gate), ``"scale"`` (a product with a
  constant), ``"identity"``, ``"other"``);
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

A module type that is not in the table (nor a subclass of a type in it that keeps its
``forward``) is run operation by operation: the engine's router (:mod:`.router`) routes the
functional operations of its forward (``torch.permute``, ``F.layer_norm``, ``x * s`` ...) and
refuses any it does not know with :class:`UnsupportedLayerError`, naming the layer, the
operation and the ways out (register an op, or assign ``Pass()`` to an element-wise module by
name).  The functional operations also become ops of these classes (:mod:`.router`).
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Op", "ConvOp", "DenseOp", "ScaleOp", "LayerNormOp", "AvgPoolOp", "MaxPoolOp",
           "SumOp", "ReLUOp", "IdentityOp", "ElementwiseOp", "ActivationOp", "PassOp", "ClampOp",
           "GatedOp", "SquashOp", "ProductOp", "UnsupportedLayerError", "register_layer",
           "layer_op", "LAYERS"]


class UnsupportedLayerError(RuntimeError):
    """A layer (or functional operation) that lrpkit cannot propagate relevance through.

    A ``RuntimeError``, not a ``TypeError``: torch's ``Tensor.__add__`` / ``__mul__`` turn a
    ``TypeError`` raised inside them into ``NotImplemented`` and the message would be lost."""


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

    def bind(self, x: torch.Tensor) -> Op:
        """The op for one call on ``x`` (ops with input-dependent constants, e.g. the standard
        deviation of a layer norm, return a bound copy; most return themselves)."""
        return self

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
    """``nn.Conv2d`` (zero padding; ``padding="same"`` where symmetric), or a functional
    ``F.conv2d`` with constant weights (:meth:`functional`)."""

    kind = "conv"

    def __init__(self, module: nn.Conv2d | None = None):
        super().__init__(module)
        if module is None:
            return
        m = module
        if m.padding_mode != "zeros":
            raise UnsupportedLayerError(f"padding_mode={m.padding_mode!r}")
        self._set(m.stride, m.padding, m.dilation, m.groups, m.kernel_size)

    def _set(self, stride, padding, dilation, groups, kernel_size):
        pad = padding
        if isinstance(pad, str):
            if pad == "valid":
                pad = (0, 0)
            elif all((d * (k - 1)) % 2 == 0 for d, k in zip(dilation, kernel_size)):
                pad = tuple(d * (k - 1) // 2 for d, k in zip(dilation, kernel_size))
            else:
                raise UnsupportedLayerError("asymmetric padding='same'")
        self.stride, self.padding = tuple(stride), tuple(pad)
        self.dilation, self.groups = tuple(dilation), groups

    @classmethod
    def functional(cls, weight, bias=None, stride=1, padding=0, dilation=1, groups=1) -> ConvOp:
        """The op of ``F.conv2d(x, weight, bias, ...)`` with constant ``weight`` / ``bias``."""
        op = cls(None)

        def two(v):
            return (v, v) if isinstance(v, int) else tuple(v)
        op._set(two(stride), padding if isinstance(padding, str) else two(padding),
                two(dilation), int(groups), tuple(weight.shape[2:]))
        op.substitute = (weight.detach(), None if bias is None else bias.detach())
        return op

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
    """``nn.Linear``, or a functional ``F.linear`` with constant weights (:meth:`functional`)."""

    kind = "linear"

    @classmethod
    def functional(cls, weight, bias=None) -> DenseOp:
        op = cls(None)
        op.substitute = (weight.detach(), None if bias is None else bias.detach())
        return op

    def fwd(self, x, w, b=None):
        return F.linear(x, w, b)

    def bwd(self, s, w, in_shape):
        return (s @ w).reshape(in_shape)

    def bwd_many(self, ss, ws, in_shape):
        if len(ws) > 1:
            return self.bwd(torch.cat(ss, -1), torch.cat(ws, 0), in_shape)
        return super().bwd_many(ss, ws, in_shape)


class ScaleOp(Op):
    """A batch-norm that was not folded into a convolution: ``z = s_c x + t_c`` per channel
    (also DenseNet's pre-activation batch-norms, which precede their convolution and cannot be
    folded into it: an affine layer with its own rule, default epsilon)."""

    kind = "bn"

    def __init__(self, module=None, scale_shift: tuple | None = None):
        super().__init__(module)
        self._fixed = scale_shift

    @classmethod
    def functional(cls, running_mean, running_var, weight=None, bias=None, eps=1e-5):
        """The op of ``F.batch_norm`` in evaluation mode (constant statistics)."""
        return cls(None, _bn_affine(running_mean, running_var, weight, bias, eps))

    def params(self):
        if self._fixed is not None:
            return self._fixed
        m = self.module
        if m.running_mean is None or m.running_var is None:
            raise UnsupportedLayerError(
                f"batch-norm {self.name!r} has no running statistics and cannot be explained")
        return _bn_affine(m.running_mean, m.running_var, m.weight, m.bias, m.eps)

    def _c(self, v, x):
        return v.reshape((1, -1) + (1,) * (x.dim() - 2))

    def fwd(self, x, w, b=None):
        z = x * self._c(w, x)
        return z if b is None else z + self._c(b, x)

    def bwd(self, s, w, in_shape):
        return s * self._c(w, s)

    def ones(self, w):
        return self, torch.ones_like(w)

    def default_rule(self, epsilon):
        from .rules import Epsilon
        return Epsilon(epsilon)


def _bn_affine(mean, var, weight, bias, eps):
    scale = torch.rsqrt(var.detach() + eps)
    if weight is not None:
        scale = scale * weight.detach()
    shift = -mean.detach() * scale
    if bias is not None:
        shift = shift + bias.detach()
    return scale, shift


class LayerNormOp(Op):
    """Layer norm with the standard deviation held constant (Ali et al. 2022, "XAI for
    Transformers: better explanations through conservative propagation", Sec. 3.3):
    ``z = (x - mean(x)) * (gamma / std) + beta`` is then an affine map of ``x`` whose linear
    part centres the normalised dimensions, so conservative rules pass through it.

    ``nn.LayerNorm`` (normalised over the last dimensions: ConvNeXt's blocks after their
    channels-last permute) and functional ``F.layer_norm`` (torchvision's ``LayerNorm2d``).
    :meth:`bind` fixes ``std`` for one call; default rule ``Epsilon(eps)``.
    """

    kind = "layernorm"

    def __init__(self, module=None, normalized_shape=None, weight=None, bias=None, eps=1e-5):
        super().__init__(module)
        if module is not None:
            normalized_shape, weight, bias, eps = (module.normalized_shape, module.weight,
                                                   module.bias, module.eps)
        if isinstance(normalized_shape, int):
            normalized_shape = (normalized_shape,)
        self.normalized_shape = tuple(normalized_shape)
        self.weight = None if weight is None else weight.detach()
        self.bias = None if bias is None else bias.detach()
        self.eps = float(eps)

    def params(self):
        return self.weight, self.bias

    def bind(self, x):
        dims = tuple(range(x.dim() - len(self.normalized_shape), x.dim()))
        xd = x.detach()
        std = torch.sqrt(xd.var(dims, unbiased=False, keepdim=True) + self.eps)
        return _BoundLayerNorm(self, dims, std)

    def default_rule(self, epsilon):
        from .rules import Epsilon
        return Epsilon(epsilon)


class _BoundLayerNorm(Op):
    """A :class:`LayerNormOp` for one call: ``fwd(x, w, b) = (x - mean x) / std * w + b`` with
    ``std`` fixed; the transpose of the centring is the centring (it is symmetric)."""

    kind = "layernorm"

    def __init__(self, op: LayerNormOp, dims, std):
        super().__init__(op.module)
        self.name, self.dims, self.std, self._op = op.name, dims, std, op

    def params(self):
        return self._op.params()

    def fwd(self, x, w=None, b=None):
        z = (x - x.mean(self.dims, keepdim=True)) / self.std
        if w is not None:
            z = z * w
        return z if b is None else z + b

    def bwd(self, s, w, in_shape):
        v = s / self.std if w is None else s * (w / self.std)
        return v - v.mean(self.dims, keepdim=True)


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
    """Max-pooling: ``fwd`` is the max-pool itself, whose gradient routes relevance to the
    arg-max (the winner-takes-all rule); ``ones`` averages over the same windows (flat rule).

    ``nn.MaxPool2d`` / ``nn.AdaptiveMaxPool2d`` modules, or functional ones (``func`` the pool,
    ``flat`` the average over its windows, ``None`` where there is none, e.g. dilated windows).
    """

    kind = "maxpool"

    def __init__(self, module=None, func: Callable | None = None, flat: Callable | None = None):
        super().__init__(module)
        if module is not None:
            if getattr(module, "return_indices", False):
                raise UnsupportedLayerError("return_indices=True")
            func = type(module).forward.__get__(module)
            flat = _module_flat_pool(module)
        self.func, self.flat = func, flat

    def fwd(self, x, w=None, b=None):
        return self.func(x)

    def bwd(self, s, w, in_shape):  # pragma: no cover - a max-pool is not linear
        raise UnsupportedLayerError(f"max-pool {self.name!r} has no transpose; rules that need "
                                    f"one cannot be used on it")

    def ones(self, w):
        if self.flat is None:
            raise UnsupportedLayerError(f"flat rule on max-pool {self.name!r} (dilated windows) "
                                        f"is not supported")
        return AvgPoolOp(None, self.flat), None

    def default_rule(self, epsilon):
        from .rules import WinnerTakesAll
        return WinnerTakesAll()


def _module_flat_pool(m) -> Callable | None:
    if isinstance(m, nn.AdaptiveMaxPool2d):
        return lambda x: F.adaptive_avg_pool2d(x, m.output_size)
    return max_pool_flat(m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode)


def max_pool_flat(kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """The average over a 2-d max-pool's windows (padding excluded), or None (dilation)."""
    if (dilation if isinstance(dilation, int) else max(dilation)) != 1:
        return None
    stride = stride if stride not in (None, [], ()) else kernel_size
    return lambda x: F.avg_pool2d(x, kernel_size, stride, padding, ceil_mode,
                                  count_include_pad=False)


class SumOp(Op):
    """A sum ``c_1 a + c_2 b`` (residual additions, ``x + y`` anywhere) as a linear op on the
    summands stacked along a new last dimension, ``x = stack([a, b], -1)``: ``z = sum_k c_k
    x[..., k]``, transpose ``s -> [c_1 s, c_2 s]`` (``coef`` None: all ``c_k = 1``).  A
    constant summand (a bias-like term) is stacked like the others and absorbs its share.
    Named ``"<module>.add"``."""

    kind = "sum"

    def __init__(self, module=None, coef: torch.Tensor | None = None):
        super().__init__(module)
        self.coef = coef

    def params(self):
        return self.coef, None

    def fwd(self, x, w=None, b=None):
        return x.sum(-1) if w is None else (x * w).sum(-1)

    def bwd(self, s, w, in_shape):
        g = s.unsqueeze(-1).expand(in_shape)
        return g.contiguous() if w is None else g * w

    def ones(self, w):
        return self, None

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
    """``nn.ReLU`` (or a functional ``F.relu``): the forward is the ReLU, relevance passes
    unchanged (rule ``Pass``).

    It runs in place where the engine allows it (``overwrite(x, inplace)``, set by the engine):
    then ``relu(z)`` replaces the previous layer's output ``z`` that its rule may have kept.
    """

    kind = "relu"

    def __init__(self, module: nn.ReLU | None = None, inplace: bool = False):
        super().__init__(module)
        self.inplace = module.inplace if module is not None else inplace
        self.overwrite: Callable[[torch.Tensor, bool], bool] | None = None
        self.func = torch.relu

    def fwd(self, x, w=None, b=None):
        if self.overwrite is not None and self.overwrite(x, self.inplace):
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


class PassOp(ElementwiseOp):
    """An element-wise activation lrpkit declares (module or functional form ``func``, called
    out of place): ``fwd`` passes relevance unchanged (rules ``Pass``), ``func`` is the plain
    function (rules ``Gradient`` and ``HoldConstant``).  Subclasses set the kind."""

    kind = "other"

    def __init__(self, module=None, func: Callable | None = None):
        Op.__init__(self, module)
        self.func = func if func is not None else _plain(module)
        self.reason = None
        with torch.no_grad():
            self.reaches_dead_units = bool(self.func(torch.zeros(1)).ne(0).any())

    def default_rule(self, epsilon):
        from .rules import Pass
        return Pass()


class ClampOp(PassOp):
    """ReLU6 / hard-tanh / ``clamp``: linear between the clamps, constant outside.  Relevance
    passes unchanged (``Pass``): read as ``h(x) = x * g(x)`` with ``g = h(x) / x`` held constant,
    the same gate view as for SiLU (Arras et al. 2017; Ali et al. 2022); on the linear piece
    this is the ReLU's rule, and saturated units keep the relevance they receive."""

    kind = "clamp"


class GatedOp(PassOp):
    """SiLU / Swish (``x sigmoid(x)``), GELU (``x Phi(x)``), Hardswish (``x hardsigmoid(x)``),
    Mish: ``x * g(x)`` with the gate held constant, so relevance passes through the signal and
    the gate gets none (rule ``Pass``; Arras et al. 2017 for LSTM gates, Ali et al. 2022 for
    transformers' non-linearities)."""

    kind = "gated"


class SquashOp(PassOp):
    """Sigmoid / hard-sigmoid / tanh: gates (squeeze-excitation ``x * sigmoid(...)``).  By
    default (rule ``HoldConstant``) the output is held constant: it receives no relevance, and
    the engine refuses a model where it reaches the output other than as the factor of a
    product ``x * s`` (then it was an activation: assign ``Pass`` by name)."""

    kind = "squash"
    reaches_dead_units = True

    def default_rule(self, epsilon):
        from .rules import HoldConstant
        return HoldConstant()


class _TakeAll(torch.autograd.Function):
    """Forward ``f(x)`` (``x`` times a constant factor); backward: all relevance to ``x``
    (summed over the dimensions the factor broadcast ``x`` to)."""

    @staticmethod
    def forward(ctx, x, f):
        ctx.shape = x.shape
        return f(x)

    @staticmethod
    def backward(ctx, R):
        return R.sum_to_size(ctx.shape), None


class ProductOp(Op):
    """A product ``x * s`` (or ``x / s``) of a signal ``x`` with a factor ``s`` that carries no
    relevance: a constant (kind ``"scale"``: ConvNeXt's layer scale, ``2 * x``) or a gate held
    constant (kind ``"gate"``: squeeze-excitation ``x * sigmoid(...)``).  ``func(x)`` computes
    the product; ``fwd`` gives all relevance to ``x`` (rules ``Pass`` / ``SignalTakeAll``)."""

    def __init__(self, func: Callable, kind: str = "scale"):
        super().__init__(None)
        self.func, self.kind = func, kind

    def fwd(self, x, w=None, b=None):
        return _TakeAll.apply(x, self.func)

    def default_rule(self, epsilon):
        from .rules import Pass, SignalTakeAll
        return SignalTakeAll() if self.kind == "gate" else Pass()


def _plain(m: nn.Module) -> Callable:
    """The out-of-place function of a declared activation module."""
    if isinstance(m, nn.Hardtanh):          # nn.ReLU6 is a Hardtanh
        return lambda x: F.hardtanh(x, m.min_val, m.max_val)
    if isinstance(m, nn.GELU):
        return lambda x: F.gelu(x, approximate=m.approximate)
    for t, f in ((nn.SiLU, F.silu), (nn.Hardswish, F.hardswish), (nn.Mish, F.mish),
                 (nn.Sigmoid, torch.sigmoid), (nn.Hardsigmoid, F.hardsigmoid),
                 (nn.Tanh, torch.tanh)):
        if isinstance(m, t):
            return f
    return type(m).forward.__get__(m)


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
    :class:`ElementwiseOp` for an unknown module.

    A subclass that overrides the registered class's ``forward`` (e.g. a weight-standardised
    ``Conv2d``) computes something else than its base: it is an unknown module too, whose own
    forward the engine runs operation by operation.
    """
    mro = type(module).__mro__
    for cls in mro:
        factory = LAYERS.get(cls)
        if factory is not None:
            owner = next((c for c in mro if "forward" in c.__dict__), cls)
            if owner is not cls and issubclass(owner, cls):
                return ElementwiseOp(module, f"{owner.__name__} overrides {cls.__name__}.forward")
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
               (nn.BatchNorm1d, ScaleOp), (nn.LayerNorm, LayerNormOp),
               (nn.ReLU, ReLUOp), (nn.ReLU6, ClampOp), (nn.Hardtanh, ClampOp),
               (nn.SiLU, GatedOp), (nn.GELU, GatedOp), (nn.Hardswish, GatedOp), (nn.Mish, GatedOp),
               (nn.Sigmoid, SquashOp), (nn.Hardsigmoid, SquashOp), (nn.Tanh, SquashOp),
               (nn.MaxPool2d, MaxPoolOp), (nn.AdaptiveMaxPool2d, MaxPoolOp),
               (nn.AvgPool2d, AvgPoolOp), (nn.AdaptiveAvgPool2d, AvgPoolOp),
               (nn.Dropout, IdentityOp), (nn.Dropout1d, IdentityOp), (nn.Dropout2d, IdentityOp),
               (nn.AlphaDropout, IdentityOp), (nn.Flatten, IdentityOp), (nn.Identity, IdentityOp)):
    register_layer(_t, _f)
del _t, _f
