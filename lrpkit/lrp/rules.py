"""LRP rules: small declarative objects with a closed-form relevance backward.

A rule says how the relevance ``R_j`` of a layer's outputs is redistributed onto its
inputs.  Every rule here is evaluated by :mod:`lrpkit.lrp.engine` in ONE forward and ONE
backward pass: the forward computes the layer output plus whatever the rule's denominator
needs (e.g. ``z+``), the backward computes ``R_in`` in closed form with one transposed
operation per weight variant.  Notation (paper 002 eq. 7-8, paper 000 eq. 7-8):
``z_ij = x_i w_ij``, ``z_j = sum_i z_ij + b_j``.

=====================  ====================================================================
rule                   ``R_i =``
=====================  ====================================================================
:class:`Epsilon`       ``sum_j z_ij / (z_j + eps * sign(z_j)) R_j``   (paper 002 eq. 7; sign(0)=+1)
:class:`Zero`          LRP-0, ``Epsilon(0)`` (0/0 treated as 0, paper 001 eq. 1)
:class:`AlphaBeta`     ``sum_j (alpha z+_ij / z+_j - beta z-_ij / z-_j) R_j`` with alpha - beta = 1
                       (paper 002 eq. 8, written there as alpha + beta = 1 with beta <= 0)
:class:`ZPlus`         ``AlphaBeta(1, 0)``: only positive contributions
:class:`WSquare`       ``sum_j w_ij^2 / sum_i' w_i'j^2 R_j``
:class:`Flat`          ``sum_j 1 / n_j R_j`` (uniform over each unit's inputs; paper 001 Sec. 3)
:class:`ZBox`          ``sum_j (x_i w_ij - l_i w+_ij - h_i w-_ij) / (...)_j R_j`` for inputs in
                       ``[low, high]`` (the bounded input layer)
:class:`WinnerTakesAll`max-pooling: all relevance to the arg-max input (the pooling switch)
:class:`Pass`          relevance passes unchanged (ReLU, dropout, flatten, other activations)
=====================  ====================================================================

Biases: papers 000 (eq. 7-8) and 002 (eq. 7-8) write ``z_j = sum_i z_ij`` for bias-free
units.  lrpkit follows the paper both cite for the rules (Bach et al. 2015, their ref. [1]),
which keeps the bias in the denominator: the epsilon rule uses ``z_j = sum_i z_ij + b_j``
(relevance the bias absorbs is lost), alpha-beta puts ``b+`` into ``z+_j`` and ``b-`` into
``z-_j`` (zennit and captum do the same); flat, w-square and the ``l``/``h`` terms of z-box
ignore it.  With zero biases both readings agree, and z+, alpha-beta, flat, w-square and
LRP-0 conserve relevance exactly.
"""
from __future__ import annotations


from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["Rule", "Epsilon", "Zero", "AlphaBeta", "ZPlus", "WSquare", "Flat", "ZBox",
           "WinnerTakesAll", "Pass", "RULES"]


def _sign0(z: torch.Tensor) -> torch.Tensor:
    """sign with sign(0) = +1 (the stabiliser never cancels the denominator)."""
    return torch.where(z >= 0, 1.0, -1.0).to(z.dtype)


def _safe_div(a: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """``a / d`` with ``x / 0 := 0`` (paper 001: "the case 0/0 is being treated as 0")."""
    return torch.where(d == 0, torch.zeros((), dtype=a.dtype, device=a.device), a / d)


# ----------------------------------------------------------------------------------------
# Linear operators: the forward map of a layer and its transpose, for any weight variant.
# ----------------------------------------------------------------------------------------
class LinearOp:
    """A layer's affine map ``z = W x + b`` and its transpose ``W^T s`` for weight variants."""

    #: whether several weight variants can be evaluated in one call (stacked weights)
    stackable = False
    has_weight = True

    def fwd(self, x, w, b=None):  # pragma: no cover - interface
        raise NotImplementedError

    def bwd(self, s, w, in_shape):  # pragma: no cover - interface
        raise NotImplementedError

    def fwd_many(self, x, ws):
        """``[W_k x]`` for several weights (no bias), one call where possible."""
        if self.stackable and len(ws) > 1:
            return list(self.fwd(x, torch.cat(ws, 0)).chunk(len(ws), self.channel_dim))
        return [self.fwd(x, w) for w in ws]

    def bwd_many(self, ss, ws, in_shape):
        """``sum_k W_k^T s_k``, one call where possible."""
        if self.stackable and len(ws) > 1:
            return self.bwd(torch.cat(ss, self.channel_dim), torch.cat(ws, 0), in_shape)
        out = self.bwd(ss[0], ws[0], in_shape)
        for s, w in zip(ss[1:], ws[1:]):
            out = out + self.bwd(s, w, in_shape)
        return out


class ConvOp(LinearOp):
    channel_dim = 1

    def __init__(self, stride, padding, dilation, groups):
        self.stride, self.padding, self.dilation, self.groups = stride, padding, dilation, groups
        self.stackable = groups == 1

    def fwd(self, x, w, b=None):
        return F.conv2d(x, w, b, self.stride, self.padding, self.dilation, self.groups)

    def bwd(self, s, w, in_shape):
        dummy = s.new_empty(1).expand(in_shape)
        return torch.ops.aten.convolution_backward(
            s, dummy, w, None, self.stride, self.padding, self.dilation, False, [0, 0],
            self.groups, (True, False, False))[0]

    def ones_weight(self, w):
        return torch.ones_like(w)


class DenseOp(LinearOp):
    channel_dim = -1
    stackable = True

    def fwd(self, x, w, b=None):
        return F.linear(x, w, b)

    def bwd(self, s, w, in_shape):
        return (s @ w).reshape(in_shape)

    def ones_weight(self, w):
        return torch.ones_like(w)


class ScaleOp(LinearOp):
    """Per-channel affine map (a batch-norm that could not be folded): ``z = w_c x + b_c``."""

    channel_dim = 1

    def fwd(self, x, w, b=None):
        z = x * w[None, :, None, None]
        return z if b is None else z + b[None, :, None, None]

    def bwd(self, s, w, in_shape):
        return s * w[None, :, None, None]

    def ones_weight(self, w):
        return torch.ones_like(w)


class PoolOp(LinearOp):
    """A weight-free linear pooling (average pools); the transpose is its vector-Jacobian product."""

    has_weight = False
    channel_dim = 1

    def __init__(self, func, flat_func=None):
        self.func = func            # x -> pooled x
        self.flat_func = flat_func or func   # average over valid inputs (for the flat rule)

    def fwd(self, x, w=None, b=None):
        return self.func(x)

    def _vjp(self, f, s, in_shape):
        with torch.enable_grad():
            xx = s.new_zeros(in_shape, requires_grad=True)
            (g,) = torch.autograd.grad(f(xx), xx, s)
        return g

    def bwd(self, s, w, in_shape):
        return self._vjp(self.func, s, in_shape)

    def flat_bwd(self, R, in_shape):
        return self._vjp(self.flat_func, R, in_shape)


# ----------------------------------------------------------------------------------------
# Rules
# ----------------------------------------------------------------------------------------
class Rule:
    """Base class.  ``forward(op, x, w, b) -> (z, state)``; ``backward(op, state, R) -> R_in``.

    ``z_dependent``: the backward needs the layer output ``z`` (or the input); such outputs
    are tagged so that a following in-place ReLU may overwrite them (see engine).
    ``multiplicative``: ``R_in`` is ``x * (...)``, so inputs equal to 0 receive no relevance.
    """

    z_dependent = True
    multiplicative = True
    #: layer kinds the rule applies to
    kinds: frozenset = frozenset({"conv", "linear", "bn"})

    def params(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    def __repr__(self) -> str:
        ps = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({ps})"

    def __eq__(self, other):
        return type(self) is type(other) and repr(self) == repr(other)

    def __hash__(self):
        return hash(repr(self))

    def forward(self, op, x, w, b):  # pragma: no cover - interface
        raise NotImplementedError

    def backward(self, op, state, R):  # pragma: no cover - interface
        raise NotImplementedError


class Epsilon(Rule):
    """LRP-epsilon (paper 002 eq. 7, paper 000 eq. 7): ``z_ij / (z_j + eps sign(z_j))``.

    ``epsilon=0.01`` is paper 002's small setting (it also uses 100).  ``epsilon=0`` is LRP-0,
    which equals gradient x input on ReLU networks.
    """

    kinds = frozenset({"conv", "linear", "bn", "avgpool", "sum"})

    def __init__(self, epsilon: float = 0.01):
        epsilon = float(epsilon)
        if not epsilon >= 0:
            raise ValueError(f"epsilon must be >= 0, got {epsilon!r}")
        self.epsilon = epsilon

    def forward(self, op, x, w, b):
        z = op.fwd(x, w, b)
        return z, (x.detach(), z.detach(), w)

    def backward(self, op, state, R):
        x, z, w = state
        if self.epsilon:
            # z + eps * sign(z) with sign(0) = +1; |d| >= eps, so no division by zero
            s = z.abs().add_(self.epsilon).copysign_(z)
            s = torch.div(R, s, out=s)
        else:
            s = _safe_div(R, z)
        g = op.bwd(s, w, x.shape)
        return g.mul_(x) if g.shape == x.shape else g * x


class Zero(Epsilon):
    """LRP-0: ``R_i = sum_j z_ij / z_j R_j`` (paper 001 eq. 1; 0/0 := 0)."""

    def __init__(self):
        super().__init__(0.0)

    def params(self):
        return {}


class AlphaBeta(Rule):
    """Alpha-beta rule (paper 002 eq. 8, paper 000 eq. 8) with ``alpha - beta = 1``.

    ``alpha=2, beta=1`` is the setting of papers 001 (Sec. 2.1) and 002 (Sec. II-C); paper
    002 writes the same rule with ``beta = -1`` and ``alpha + beta = 1``.  Inputs of either
    sign are handled: ``z+_ij = (x_i w_ij)^+``.
    """

    def __init__(self, alpha: float = 2.0, beta: float = 1.0):
        alpha, beta = float(alpha), float(beta)
        if beta < 0 or abs(alpha - beta - 1.0) > 1e-9:
            raise ValueError(f"AlphaBeta needs beta >= 0 and alpha - beta = 1 for conservation "
                             f"(paper 002 eq. 8), got alpha={alpha}, beta={beta}")
        self.alpha, self.beta = alpha, beta

    def forward(self, op, x, w, b):
        # The layer output (bit-identical to the model's forward) is kept, like epsilon's: for
        # x >= 0 the backward gets z- = z - z+ from it and computes only z+ (one convolution
        # fewer).  An in-place ReLU after the layer may overwrite it with relu(z): that is z
        # wherever relevance arrives (dead units receive none under multiplicative rules).
        z = op.fwd(x, w, b)
        return z, (x.detach(), z.detach() if self.beta else None, w, b)

    def backward(self, op, state, R):
        x, z, w, b = state
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


def _recip(z: torch.Tensor, scale: float) -> torch.Tensor:
    """``scale / z`` for a one-signed denominator, 0 where ``z == 0`` (0/0 := 0, paper 001).

    A zero ``z+_j`` means every ``x_i w+_ij`` is 0, so unit j has nothing to redistribute
    onto; its factor is set to 0 (also where ``1/z`` overflows).
    """
    r = z.reciprocal_().nan_to_num_(nan=0.0, posinf=0.0, neginf=0.0)
    return r.mul_(scale) if scale != 1 else r


class ZPlus(AlphaBeta):
    """The z+ rule: ``AlphaBeta(alpha=1, beta=0)`` (positive contributions only)."""

    def __init__(self):
        super().__init__(1.0, 0.0)

    def params(self):
        return {}


def _add_bias(op, z, b):
    if isinstance(op, ConvOp) or isinstance(op, ScaleOp):
        return z + b[None, :, None, None]
    return z + b


class _InputFree(Rule):
    """Rules whose redistribution ignores the input values (w-square, flat)."""

    z_dependent = False
    multiplicative = False

    def _weight(self, op, w):  # pragma: no cover - interface
        raise NotImplementedError

    def forward(self, op, x, w, b):
        z = op.fwd(x, w, b)
        v = self._weight(op, w)
        ones = x.new_ones((1,) + tuple(x.shape[1:]))
        n = op.fwd(ones, v)
        return z, (tuple(x.shape), n, v)

    def backward(self, op, state, R):
        shape, n, v = state
        return op.bwd(_safe_div(R, n), v, shape)


class WSquare(_InputFree):
    """w^2 rule: ``R_i = sum_j w_ij^2 / sum_i' w_i'j^2 R_j`` (bias ignored)."""

    def _weight(self, op, w):
        return w * w


class Flat(_InputFree):
    """Flat rule: ``R_i = sum_j R_j / n_j``, every input of unit j gets an equal share.

    On pooling layers it spreads over the pooling window; it is the rule of the
    mapping-influence cut-off (paper 001 Sec. 3).
    """

    kinds = frozenset({"conv", "linear", "bn", "avgpool", "maxpool", "sum"})

    def _weight(self, op, w):
        return op.ones_weight(w)

    def forward(self, op, x, w, b):
        if isinstance(op, PoolOp):
            return op.fwd(x), (tuple(x.shape),)
        return super().forward(op, x, w, b)

    def backward(self, op, state, R):
        if isinstance(op, PoolOp):
            return op.flat_bwd(R, state[0])
        return super().backward(op, state, R)


class ZBox(Rule):
    """z^B rule for a bounded input layer, ``low <= x <= high`` (Montavon et al. 2017).

    ``low`` / ``high``: scalars or tensors broadcastable to one input ``(C, H, W)`` (e.g.
    ``(C, 1, 1)`` per-channel bounds: the normalised images of 0 and 1).
    """

    multiplicative = False
    kinds = frozenset({"conv", "linear"})

    def __init__(self, low: Any, high: Any):
        if low is None or high is None:
            raise ValueError("ZBox needs the input bounds: ZBox(low, high), e.g. the normalised "
                             "values of pixel 0 and pixel 1 per channel")
        self.low, self.high = low, high

    def params(self):
        def short(v):
            return v.tolist() if isinstance(v, torch.Tensor) and v.numel() <= 8 else (
                "tensor" if isinstance(v, torch.Tensor) else v)
        return {"low": short(self.low), "high": short(self.high)}

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
        zl, zh = op.fwd(l, wp), op.fwd(h, wn)
        d = z - zl - zh
        return z, (x.detach(), l, h, d, w, wp, wn)

    def backward(self, op, state, R):
        x, l, h, d, w, wp, wn = state
        s = _safe_div(R, d)
        shp = x.shape
        return x * op.bwd(s, w, shp) - l * op.bwd(s, wp, shp) - h * op.bwd(s, wn, shp)


class WinnerTakesAll(Rule):
    """Max-pooling: the relevance goes to the input that won the max (paper 002 'unpooling')."""

    z_dependent = False
    kinds = frozenset({"maxpool"})

    def params(self):
        return {}


class Pass(Rule):
    """Relevance passes unchanged (ReLU and other element-wise activations, dropout, flatten).

    Assign it by name to an activation lrpkit does not know, e.g.
    ``rules={"features.3": Pass()}`` for a LeakyReLU.
    """

    z_dependent = False
    kinds = frozenset({"relu", "identity", "other"})

    def params(self):
        return {}


#: rule name -> class, for configs (``{"rule": "epsilon", "epsilon": 0.25}``)
RULES = {"epsilon": Epsilon, "zero": Zero, "lrp0": Zero, "alpha_beta": AlphaBeta,
         "zplus": ZPlus, "wsquare": WSquare, "flat": Flat, "zbox": ZBox,
         "winner_takes_all": WinnerTakesAll, "pass": Pass}
