"""LRP rules: one small class each, with a closed-form relevance backward.

A rule says how the relevance ``R_j`` of a layer's outputs is redistributed onto its
inputs.  The engine (:mod:`lrpkit.lrp.engine`) evaluates every rule in ONE forward and ONE
backward pass: :meth:`Rule.forward` computes the layer output (plus anything else the rule
needs later), :meth:`Rule.backward` computes ``R_in`` in closed form with the layer's op
(:mod:`lrpkit.lrp.layers`: ``op.fwd(x, w, b)``, its transpose ``op.bwd(s, w, shape)``).
Notation (Bach et al. 2015; Lapuschkin et al. 2016, eq. 7-8; Samek et al. 2017, eq. 7-8):
``z_ij = x_i w_ij``, ``z_j = sum_i z_ij + b_j``.

=======================  ==================================================================
rule                     ``R_i =``
=======================  ==================================================================
:class:`Epsilon`         ``sum_j z_ij / (z_j + eps * sign(z_j)) R_j``  (sign(0) = +1)
:class:`Zero`            LRP-0, ``Epsilon(0)`` (0/0 treated as 0)
:class:`AlphaBeta`       ``sum_j (alpha z+_ij / z+_j - beta z-_ij / z-_j) R_j``, alpha - beta = 1
:class:`ZPlus`           ``AlphaBeta(1, 0)``: only positive contributions
:class:`Gamma`           ``sum_j (z_ij + gamma z+_ij) / (z_j + gamma z+_j) R_j``
:class:`WSquare`         ``sum_j w_ij^2 / sum_i' w_i'j^2 R_j``
:class:`Flat`            ``sum_j 1 / n_j R_j`` (uniform over each unit's inputs)
:class:`ZBox`            ``sum_j (x_i w_ij - l_i w+_ij - h_i w-_ij) / (...)_j R_j``,
                         inputs in ``[low, high]`` (the bounded input layer)
:class:`WinnerTakesAll`  max-pooling: all relevance to the arg-max input (the pooling switch)
:class:`Pass`            relevance passes unchanged (ReLU, dropout, flatten, clamps, gated
                         activations ``x * g(x)`` with the gate held constant, ``c * x``)
:class:`SignalTakeAll`   a product ``x * s`` with a gate ``s``: all to ``x``, none to ``s``
:class:`HoldConstant`    a sigmoid / hard-sigmoid / tanh gate: output held constant
:class:`Gradient`        an activation's derivative (non-conservative alternative to Pass)
=======================  ==================================================================

What the engine must know about a rule is declared on its class (and enforced there):

* ``ops`` -- the op kinds it applies to (``"conv"``, ``"linear"``, ``"bn"``, ``"layernorm"``,
  ``"avgpool"``, ``"maxpool"``, ``"sum"``, ``"relu"``, ``"clamp"``, ``"gated"``, ``"squash"``,
  ``"gate"``, ``"scale"``, ``"identity"``, ``"other"``: :mod:`lrpkit.lrp.layers`); the engine
  refuses any other layer;
* ``needs_input`` / ``needs_output`` -- whether :meth:`Rule.backward` reads the layer input
  ``saved.x`` / output ``saved.z``; the engine keeps exactly these (the other is ``None``);
* ``reaches_dead_units`` -- whether inputs equal to 0 may receive relevance (``R_in`` is not
  of the form ``x * (...)``: flat, w-square, z-box).  While no such rule runs above the
  input layer, a ReLU after a layer whose rule keeps its output may overwrite that output in
  place: relevance arriving at a dead unit is then 0, so ``relu(z)`` and ``z`` give the same
  ``R_in`` (see the engine).

A new rule is a subclass with ``forward`` (optional: the default computes the layer output)
and ``backward``; see the README ("Adding a rule").

Biases: Montavon et al. (2017) and Lapuschkin et al. (2016) write ``z_j = sum_i z_ij`` for
bias-free units.  lrpkit follows Bach et al. (2015), which keeps the bias in the
denominator: the epsilon rule uses ``z_j = sum_i z_ij + b_j`` (relevance the bias absorbs is
lost), alpha-beta puts ``b+`` into ``z+_j`` and ``b-`` into ``z-_j``, gamma adds ``gamma b+``
(zennit and captum do the same); flat, w-square and the ``l``/``h`` terms of z-box ignore
it.  With zero biases both readings agree, and z+, alpha-beta, flat, w-square and LRP-0
conserve relevance exactly.
"""
from __future__ import annotations

from contextvars import ContextVar
from typing import Any, NamedTuple

import torch

__all__ = ["Rule", "Saved", "SumSaved", "SumFunction", "track_saved", "Epsilon", "Zero",
           "AlphaBeta", "ZPlus", "Gamma", "WSquare", "Flat",
           "ZBox", "WinnerTakesAll", "Pass", "SignalTakeAll", "HoldConstant", "Gradient",
           "OpGradient"]


def _bounded(s: torch.Tensor) -> torch.Tensor:
    """``s`` (a ratio ``R / z`` or ``1 / z``) with non-finite entries and entries above
    ``sqrt(finfo.max)`` (1.3e154 in float64, 1.8e19 in float32) set to 0, in place: they come
    from a zero or vanishing denominator ("the case 0/0 is being treated as 0"), and such a
    factor would overflow to inf in the transposed product, where inf * 0 = NaN (e.g. the far
    negative tail of SiLU, ``x e^x``).  The common case costs one pass and one min/max."""
    s.nan_to_num_(nan=0.0, posinf=0.0, neginf=0.0)
    if s.numel():
        big = torch.finfo(s.dtype).max ** 0.5
        lo, hi = torch.aminmax(s)
        if float(hi) > big or float(lo) < -big:
            s.masked_fill_(s.abs() > big, 0.0)
    return s


def _safe_div(a: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """``a / d`` with ``x / 0 := 0`` ("the case 0/0 is being treated as 0"; see
    :func:`_bounded`)."""
    return _bounded(a / d)


def _stabilise(d: torch.Tensor, eps: float) -> torch.Tensor:
    """``d + eps * sign(d)`` with sign(0) = +1, in place (``|result| >= eps``)."""
    return d.abs().add_(eps).copysign_(d)


class Saved(NamedTuple):
    """What a rule's backward receives: the tensors it declared, the layer's parameters, the
    rule's own ``extra`` state from :meth:`Rule.forward` and the input shape."""

    x: torch.Tensor | None       # the layer input (rule.needs_input), else None
    z: torch.Tensor | None       # the layer output (rule.needs_output), else None
    w: torch.Tensor | None
    b: torch.Tensor | None
    extra: Any
    in_shape: torch.Size


#: while the engine runs a forward pass: storage address -> the autograd contexts whose saved
#: input / output live there (the engine clones them before an in-place write to that storage)
SAVED: ContextVar[dict | None] = ContextVar("lrpkit_saved", default=None)


def track_saved(ctx, *tensors) -> None:
    """Register ``ctx`` as keeping ``tensors`` (for :data:`SAVED`)."""
    reg = SAVED.get()
    if reg is not None:
        for t in tensors:
            if t is not None:
                reg.setdefault(t.untyped_storage().data_ptr(), []).append(ctx)


class _RuleFunction(torch.autograd.Function):
    """forward = the layer (through the rule), backward = the rule's closed form."""

    @staticmethod
    def forward(ctx, x, rule, op):
        w, b = op.params()
        z, extra = rule.forward(op, x, w, b)
        if extra is not None and not rule.needs_output:
            _check_extra(rule, z, extra)
        ctx.rule, ctx.op = rule, op
        ctx.saved = Saved(x.detach() if rule.needs_input else None,
                          z.detach() if rule.needs_output else None, w, b, extra, x.shape)
        track_saved(ctx, ctx.saved.x, ctx.saved.z)
        return z

    @staticmethod
    def backward(ctx, R):
        saved, ctx.saved = ctx.saved, None
        return ctx.rule.backward(ctx.op, saved, R), None, None


def _check_extra(rule: Rule, z: torch.Tensor, extra: Any) -> None:
    """A rule keeps the layer output only by declaring ``needs_output`` (an in-place ReLU may
    overwrite it, and the engine must know): refuse an undeclared copy in ``extra``."""
    items = extra if isinstance(extra, (tuple, list)) else (extra,)
    ptr = z.data_ptr()
    for t in items:
        if isinstance(t, torch.Tensor) and t.data_ptr() == ptr and t.numel():
            raise TypeError(f"{type(rule).__name__}.forward keeps the layer output in its extra "
                            f"state; declare needs_output = True and read it as saved.z")


def _same(u: Any, v: Any) -> bool:
    if isinstance(u, torch.Tensor) or isinstance(v, torch.Tensor):
        try:
            tu, tv = torch.as_tensor(u), torch.as_tensor(v)
        except (TypeError, ValueError, RuntimeError):
            return False
        return tu.shape == tv.shape and bool(torch.equal(tu.double().cpu(), tv.double().cpu()))
    return u == v


def _hash_key(v: Any) -> Any:
    if isinstance(v, (torch.Tensor, int, float)):
        return ("value", tuple(getattr(v, "shape", ())))  # equal values -> equal shapes
    try:
        hash(v)
        return v
    except TypeError:
        return repr(type(v))


class SumSaved(NamedTuple):
    """What :meth:`Rule.sum_relevance` receives from a sum's forward (see :class:`SumFunction`)."""

    x: tuple | None              # the summands (rule.needs_input), else None
    z: torch.Tensor | None       # the sum (rule.needs_output), else None


class SumFunction(torch.autograd.Function):
    """A sum ``z = sum_k c_k x_k`` whose backward is the rule's ``sum_relevance`` (rules that
    define it: epsilon / LRP-0, flat); equal to the rule on the stacked summands, without the
    stacked copy.  Summands that do not require a gradient (constants) absorb their share."""

    @staticmethod
    def forward(ctx, rule, coef, *xs):
        z = xs[0] if coef[0] == 1 else xs[0] * coef[0]
        for x, c in zip(xs[1:], coef[1:]):
            z = z + x if c == 1 else z + c * x
        ctx.rule, ctx.coef, ctx.shapes = rule, coef, [x.shape for x in xs]
        ctx.saved = SumSaved(tuple(x.detach() for x in xs) if rule.needs_input else None,
                             z.detach() if rule.needs_output else None)
        track_saved(ctx, *(ctx.saved.x or ()), ctx.saved.z)
        return z

    @staticmethod
    def backward(ctx, R):
        saved, ctx.saved = ctx.saved, None
        rs = ctx.rule.sum_relevance(saved.x, ctx.coef, saved.z, R)
        return (None, None, *[r.sum_to_size(s) for r, s in zip(rs, ctx.shapes)])


class Rule:
    """Base class: ``forward(op, x, w, b) -> (z, extra)``; ``backward(op, saved, R) -> R_in``.

    Class attributes declare what the engine must know (see the module doc): ``ops``,
    ``needs_input``, ``needs_output``, ``reaches_dead_units``.  Parameters are the instance
    attributes not starting with ``_`` (:meth:`params`); rules compare equal when their type
    and parameter values (tensors included) are equal.
    """

    ops: frozenset = frozenset({"conv", "linear", "bn"})
    needs_input: bool = True
    needs_output: bool = False
    reaches_dead_units: bool = False

    def params(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    def __repr__(self) -> str:
        def short(v):
            if isinstance(v, torch.Tensor):
                return repr(v.tolist()) if v.numel() <= 8 else f"tensor{tuple(v.shape)}"
            return repr(v)
        ps = ", ".join(f"{k}={short(v)}" for k, v in self.params().items())
        return f"{type(self).__name__}({ps})"

    def __eq__(self, other):
        if type(self) is not type(other):
            return NotImplemented if not isinstance(other, Rule) else False
        a, b = self.params(), other.params()
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)

    def __hash__(self):
        return hash((type(self), tuple((k, _hash_key(v)) for k, v in self.params().items())))

    def __call__(self, op, x: torch.Tensor) -> torch.Tensor:
        """Run the layer ``op`` on ``x`` with this rule's backward (called by the engine)."""
        return _RuleFunction.apply(x, self, op)

    def forward(self, op, x, w, b) -> tuple[torch.Tensor, Any]:
        """The layer output and the rule's extra state (default: the output, no state)."""
        return op.fwd(x, w, b), None

    def backward(self, op, saved: Saved, R: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError


class Epsilon(Rule):
    """LRP-epsilon (Lapuschkin et al. 2016, eq. 7; Samek et al. 2017, eq. 7):
    ``z_ij / (z_j + eps sign(z_j))``.

    ``epsilon=0.01`` is Samek et al.'s small setting (they also use 100).  ``epsilon=0`` is
    LRP-0, which equals gradient x input on ReLU networks.
    """

    ops = frozenset({"conv", "linear", "bn", "avgpool", "sum", "layernorm"})
    needs_output = True

    def __init__(self, epsilon: float = 0.01):
        epsilon = float(epsilon)
        if not epsilon >= 0:
            raise ValueError(f"epsilon must be >= 0, got {epsilon!r}")
        self.epsilon = epsilon

    def backward(self, op, saved, R):
        x, z = saved.x, saved.z
        if self.epsilon:
            s = _stabilise(z, self.epsilon)  # |s| >= eps: no division by zero
            s = torch.div(R, s, out=s)
        else:
            s = _safe_div(R, z)
        g = op.bwd(s, saved.w, x.shape)
        return g.mul_(x) if g.shape == x.shape else g * x

    def sum_relevance(self, xs, coef, z, R):
        """The same closed form on a sum ``z = sum_k c_k x_k`` given as its summands (no
        stacked copy): ``R_k = c_k x_k R / (z + eps sign z)``."""
        if self.epsilon:
            s = _stabilise(z, self.epsilon)
            s = torch.div(R, s, out=s)
        else:
            s = _safe_div(R, z)
        return [s * x if c == 1 else s * (c * x) for x, c in zip(xs, coef)]


class Zero(Epsilon):
    """LRP-0: ``R_i = sum_j z_ij / z_j R_j`` (Bach et al. 2015; 0/0 := 0)."""

    def __init__(self):
        super().__init__(0.0)

    def params(self):
        return {}


def _recip(z: torch.Tensor, scale: float) -> torch.Tensor:
    """``scale / z`` for a one-signed denominator, 0 where ``z == 0`` (0/0 := 0).

    A zero ``z+_j`` means every ``x_i w+_ij`` is 0, so unit j has nothing to redistribute
    onto; its factor is set to 0 (also where ``1 / z`` is out of range, :func:`_bounded`).
    """
    r = _bounded(z.reciprocal_())
    return r.mul_(scale) if scale != 1 else r


class AlphaBeta(Rule):
    """Alpha-beta rule (Lapuschkin et al. 2016, eq. 8; Samek et al. 2017, eq. 8) with
    ``alpha - beta = 1``.

    ``alpha=2, beta=1`` is the setting of Bach et al. (2016, Sec. 2.1) and Samek et al.
    (2017, Sec. II-C); Samek et al. write the same rule with ``beta = -1`` and
    ``alpha + beta = 1``.  Inputs of either sign are handled: ``z+_ij = (x_i w_ij)^+``.
    """

    def __init__(self, alpha: float = 2.0, beta: float = 1.0):
        alpha, beta = float(alpha), float(beta)
        if beta < 0 or abs(alpha - beta - 1.0) > 1e-9:
            raise ValueError(f"AlphaBeta needs beta >= 0 and alpha - beta = 1 for conservation "
                             f"(Samek et al. 2017, eq. 8), got alpha={alpha}, beta={beta}")
        self.alpha, self.beta = alpha, beta
        # with beta > 0 the layer output is kept (like epsilon's): for x >= 0 the backward
        # takes z- = z - z+ from it and computes only z+ (one convolution fewer)
        self._needs_output = beta > 0

    @property
    def needs_output(self) -> bool:  # type: ignore[override]
        return self._needs_output

    def backward(self, op, saved, R):
        x, z, w, b = saved.x, saved.z, saved.w, saved.b
        shp = x.shape
        wp, wn = w.clamp(min=0), w.clamp(max=0)
        bp = bn = None
        if b is not None:
            bp, bn = b.clamp(min=0), b.clamp(max=0)
        if not bool((x < 0).any()):
            # x >= 0: z+ = x W+ + b+, z- = x W- + b- = z - z+ (b = b+ + b-)
            if self.beta:                           # z was kept in forward (beta > 0)
                zp = op.fwd(x, wp, bp)
                zn = z - zp
                # where z- is small against z+ (|z-| <= 0.01 z+, i.e. z- + 0.01 z+ >= 0) the
                # difference keeps few digits: there z- is computed directly (one temporary)
                t = torch.add(zn, zp, alpha=1e-2).clamp_(min=0).mul_(R)
                if bool(t.any()):
                    zn = op.fwd(x, wn, bn)
                del t
                sp = _recip(zp, self.alpha).mul_(R)       # in place: zp, zn become s+, s-
                sn = _recip(zn, -self.beta).mul_(R)
                del zp, zn
                g = op.bwd(sp, wp, shp)                    # two transposed products, no
                del sp                                     # stacked copies (peak memory)
                g.add_(op.bwd(sn, wn, shp))
            else:
                sp = _recip(op.fwd(x, wp, bp), self.alpha).mul_(R)
                g = op.bwd(sp, wp, shp)
            return g.mul_(x)
        # mixed-sign inputs (e.g. the normalised image): z+ = x+ W+ + x- W-, z- = x+ W- + x- W+
        xp, xn = x.clamp(min=0), x.clamp(max=0)
        sp = _recip(op.fwd(xp, wp, bp).add_(op.fwd(xn, wn)), self.alpha).mul_(R)
        if self.beta:
            sn = _recip(op.fwd(xp, wn, bn).add_(op.fwd(xn, wp)), -self.beta).mul_(R)
            g = op.bwd_many([sp, sn], [wp, wn], shp).mul_(xp)
            return g.add_(op.bwd_many([sp, sn], [wn, wp], shp).mul_(xn))
        return op.bwd(sp, wp, shp).mul_(xp).add_(op.bwd(sp, wn, shp).mul_(xn))


class ZPlus(AlphaBeta):
    """The z+ rule: ``AlphaBeta(alpha=1, beta=0)`` (positive contributions only)."""

    def __init__(self):
        super().__init__(1.0, 0.0)

    def params(self):
        return {}


class Gamma(Rule):
    """LRP-gamma (Montavon et al. 2019, "Layer-wise relevance propagation: an overview",
    Sec. 10.2.1): ``R_i = sum_j (z_ij + gamma z+_ij) / (z_j + gamma z+_j) R_j``.

    For non-negative inputs this is the rule with weights ``w + gamma w+`` (and bias
    ``b + gamma b+``), as zennit's ``Gamma`` and captum's ``GammaRule`` define it;
    ``gamma=0`` is LRP-0 and ``gamma -> inf`` tends to z+.  Inputs of either sign are handled
    as in :class:`AlphaBeta`: ``z+_ij = (x_i w_ij)^+``, i.e. weights ``w + gamma w+`` for
    positive and ``w + gamma w-`` for negative inputs (zennit's positive-output branch; for
    units with a negative output zennit 0.5 switches to ``w + gamma w-``, captum and the
    paper do not).  The denominator is stabilised by ``epsilon * sign`` (zennit: 1e-6).
    """

    def __init__(self, gamma: float = 0.25, epsilon: float = 1e-6):
        gamma, epsilon = float(gamma), float(epsilon)
        if not gamma >= 0:
            raise ValueError(f"gamma must be >= 0, got {gamma!r}")
        if not epsilon >= 0:
            raise ValueError(f"epsilon must be >= 0, got {epsilon!r}")
        self.gamma, self.epsilon = gamma, epsilon

    def _div(self, R, d):
        return torch.div(R, _stabilise(d, self.epsilon)) if self.epsilon else _safe_div(R, d)

    def backward(self, op, saved, R):
        x, w, b, shp = saved.x, saved.w, saved.b, saved.in_shape
        g = self.gamma
        wg = w + g * w.clamp(min=0)
        bg = None if b is None else b + g * b.clamp(min=0)
        if not bool((x < 0).any()):
            s = self._div(R, op.fwd(x, wg, bg))
            return op.bwd(s, wg, shp).mul_(x)
        xp, xn = x.clamp(min=0), x.clamp(max=0)
        wn = w + g * w.clamp(max=0)
        s = self._div(R, op.fwd(xp, wg, bg).add_(op.fwd(xn, wn)))
        return op.bwd(s, wg, shp).mul_(xp).add_(op.bwd(s, wn, shp).mul_(xn))


class _InputFree(Rule):
    """Rules whose redistribution ignores the input values (w-square, flat)."""

    needs_input = False
    reaches_dead_units = True

    def _map(self, op, w):  # pragma: no cover - interface
        """``(op, weight)`` of the non-negative map whose shares are used."""
        raise NotImplementedError

    def forward(self, op, x, w, b):
        z = op.fwd(x, w, b)
        mop, v = self._map(op, w)
        n = mop.fwd(x.new_ones((1,) + tuple(x.shape[1:])), v)
        return z, (mop, n, v)

    def backward(self, op, saved, R):
        mop, n, v = saved.extra
        return mop.bwd(_safe_div(R, n), v, saved.in_shape)


class WSquare(_InputFree):
    """w^2 rule (Montavon et al. 2017): ``R_i = sum_j w_ij^2 / sum_i' w_i'j^2 R_j`` (bias
    ignored)."""

    def _map(self, op, w):
        return op, w * w


class Flat(_InputFree):
    """Flat rule: ``R_i = sum_j R_j / n_j``, every input of unit j gets an equal share.

    On pooling layers it spreads over the pooling window, on a residual sum half to each
    branch; it is the rule of the mapping-influence cut-off (Bach et al. 2016, Sec. 3).
    """

    ops = frozenset({"conv", "linear", "bn", "avgpool", "maxpool", "sum"})

    def _map(self, op, w):
        return op.ones(w)

    def sum_relevance(self, xs, coef, z, R):
        """On a sum of ``n`` summands: ``R / n`` each."""
        return [R / len(coef)] * len(coef)


class ZBox(Rule):
    """z^B rule for a bounded input layer, ``low <= x <= high`` (Montavon et al. 2017,
    "Explaining nonlinear classification decisions with deep Taylor decomposition").

    ``low`` / ``high``: scalars or tensors broadcastable to one input ``(C, H, W)`` (e.g.
    ``(C, 1, 1)`` per-channel bounds: the normalised images of 0 and 1).
    """

    ops = frozenset({"conv", "linear"})
    reaches_dead_units = True

    def __init__(self, low: Any, high: Any):
        if low is None or high is None:
            raise ValueError("ZBox needs the input bounds: ZBox(low, high), e.g. the normalised "
                             "values of pixel 0 and pixel 1 per channel")
        self.low, self.high = low, high

    def _bound(self, v, x):
        t = torch.as_tensor(v, dtype=x.dtype, device=x.device)
        if t.dim() == 4 and t.shape[0] == 1:
            t = t[0]
        try:
            return t.expand(x.shape[1:]).unsqueeze(0)
        except RuntimeError:
            raise ValueError(f"ZBox bound of shape {tuple(t.shape)} does not broadcast to the "
                             f"layer input {tuple(x.shape[1:])}") from None

    def forward(self, op, x, w, b):
        l, h = self._bound(self.low, x), self._bound(self.high, x)
        wp, wn = w.clamp(min=0), w.clamp(max=0)
        z = op.fwd(x, w, b)
        d = z - op.fwd(l, wp) - op.fwd(h, wn)
        return z, (l, h, d, wp, wn)

    def backward(self, op, saved, R):
        x, w = saved.x, saved.w
        l, h, d, wp, wn = saved.extra
        s = _safe_div(R, d)
        shp = x.shape
        return x * op.bwd(s, w, shp) - l * op.bwd(s, wp, shp) - h * op.bwd(s, wn, shp)


class OpGradient(Rule):
    """Relevance flows back as the gradient of the op's own forward (no closed form of
    its own): the base of :class:`WinnerTakesAll` and :class:`Pass`."""

    needs_input = False

    def __call__(self, op, x):
        return op.fwd(x)

    def params(self):
        return {}


class WinnerTakesAll(OpGradient):
    """Max-pooling: the relevance goes to the input that won the max (the 'unpooling' of
    Samek et al. 2017; the gradient of the max-pool)."""

    ops = frozenset({"maxpool"})


class Pass(OpGradient):
    """Relevance passes unchanged: ReLU, dropout, flatten, products with a constant (``2 * x``,
    ConvNeXt's layer scale) and the declared activations below; any element-wise module by
    name, e.g. ``rules={"features.3": Pass()}`` for a LeakyReLU.

    Clamps (ReLU6, hard-tanh) and gated activations (SiLU / Swish, GELU, Hardswish, Mish) are
    read as ``h(x) = x * g(x)`` with the gate ``g`` held constant: the one-to-one linear map
    ``x -> g x`` passes its relevance to ``x`` whatever conservative rule is used, and the gate
    gets none (Arras et al. 2017, "Explaining recurrent neural network predictions in
    sentiment analysis", for LSTM gates; Ali et al. 2022, "XAI for transformers: better
    explanations through conservative propagation", for GELU and other non-linearities).
    """

    ops = frozenset({"relu", "identity", "other", "clamp", "gated", "squash", "scale"})


class SignalTakeAll(OpGradient):
    """A product ``x * s`` with a gate ``s`` (squeeze-excitation: ``s`` a sigmoid or
    hard-sigmoid of a branch): the signal ``x`` takes all relevance, the gate none, as the gate
    is held constant (Arras et al. 2017, gates of LSTMs; the "signal-take-all" rule of Arras et
    al. 2019, "Evaluating recurrent neural network explanations").  Conservative."""

    ops = frozenset({"gate"})


class HoldConstant(OpGradient):
    """A squashing function used as a gate (sigmoid, hard-sigmoid, tanh): its output is held
    constant and receives no relevance (the gate side of :class:`SignalTakeAll`).  The engine
    refuses a model in which such an output reaches the prediction other than as the factor of
    a product ``x * s`` (it was then an activation: assign :class:`Pass` by name)."""

    ops = frozenset({"squash"})

    def __call__(self, op, x):
        with torch.no_grad():
            return op.func(x)


class Gradient(OpGradient):
    """The activation's own derivative: ``R_in = h'(x) R`` (the gradient, as zennit and captum
    do for activations they do not know).  Not conservative for gated activations (SiLU: ``h'``
    differs from ``h(x) / x``); offered to replace :class:`Pass` on a layer kind, e.g.
    ``Composite({..., "gated": Gradient()})``."""

    ops = frozenset({"relu", "clamp", "gated", "squash", "scale", "gate"})

    def __call__(self, op, x):
        return op.func(x)
