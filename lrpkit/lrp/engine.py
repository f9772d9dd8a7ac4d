"""One-pass LRP: one forward and one backward pass with closed-form relevance backwards.

:class:`LRP` is a context manager (an *attributor*).  On entry it puts the model in eval
mode, folds batch-norms and makes residual additions explicit (:mod:`.canonizers`) and
swaps each leaf module's ``forward`` for a rule-aware one (instance attributes, removed on
exit; parameters, ``requires_grad`` flags, hooks and training flags are left exactly as
they were, also after an exception).  Calling it runs::

    out = model(x)                      # forward: each layer also computes what its rule needs
    R   = autograd.grad(out, x, R_out)  # backward: the "gradient" IS the relevance

where ``R_out`` is the explained score ``f_c(x)`` at the target class and 0 elsewhere, so
that with conservative rules ``R.sum() == f_c(x)`` (paper 002 eq. 6, paper 000 eq. 5-6).
Every conv / dense / pooling layer runs as a ``torch.autograd.Function`` whose backward is
the rule's closed form (e.g. epsilon: ``R_in = x * W^T (R / (z + eps sign z))``); weight
variants (``W+``, ``W-``) are built once per call; weights never receive gradients.  ReLU,
dropout and flatten pass relevance unchanged.

Memory: an epsilon layer keeps its output ``z``; when an in-place ReLU (or a ReLU that is the
next module of the same ``nn.Sequential``) follows, the ReLU overwrites ``z`` in place as in a
plain forward, which is exact because relevance arriving at a dead unit is 0 under
multiplicative rules.  If a rule that gives dead units relevance (flat, w-square, z-box, Pass
on an unknown module) runs after such an overwrite, the call is transparently repeated
without in-place ReLUs.  Alpha-beta / z+ compute ``z+`` in the backward from the saved input
(``W+`` / ``W-`` there too); alpha-beta with ``beta > 0`` also keeps ``z``, like epsilon, and
takes ``z- = z - z+`` from it (computed directly only where ``z-`` is under 1 % of ``z+``).

Mapping-influence cut-off (paper 001 Sec. 3): ``cutoff="features.10"`` applies the flat rule
to that layer and every layer executed before it, i.e. relevance arriving at the cut-off
layer is spread uniformly over each unit's inputs, recursively down to the pixels.
"""
from __future__ import annotations

import inspect
import os
from contextlib import contextmanager
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from ..explain import check_input
from . import canonizers
from .composites import DEFAULT_KIND_RULES, Composite, get_composite
from .rules import (ConvOp, DenseOp, Epsilon, Flat, Pass, PoolOp, Rule, ScaleOp,
                    WinnerTakesAll)

__all__ = ["LRP", "lrp", "layer_kind", "UnsupportedLayerError"]


class UnsupportedLayerError(TypeError):
    """A layer (or functional operation) that lrpkit cannot propagate relevance through."""


class _Retry(Exception):
    """Internal: repeat the pass without in-place ReLUs."""


_IDENTITY = (nn.Dropout, nn.Dropout2d, nn.Dropout1d, nn.AlphaDropout, nn.Flatten, nn.Identity)


def layer_kind(m: nn.Module) -> str:
    """The rule kind of a leaf module: conv, linear, bn, relu, maxpool, avgpool, identity, other."""
    if isinstance(m, nn.Conv2d):
        return "conv"
    if isinstance(m, nn.Linear):
        return "linear"
    if isinstance(m, nn.BatchNorm2d):
        return "bn"
    if isinstance(m, nn.ReLU):
        return "relu"
    if isinstance(m, nn.MaxPool2d):
        return "maxpool"
    if isinstance(m, (nn.AvgPool2d, nn.AdaptiveAvgPool2d)):
        return "avgpool"
    if isinstance(m, _IDENTITY):
        return "identity"
    return "other"


# ----------------------------------------------------------------------------------------
# autograd Functions: forward = the layer, backward = the rule
# ----------------------------------------------------------------------------------------
class _RuleFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, rule, op, w, b):
        z, state = rule.forward(op, x, w, b)
        ctx.rule, ctx.op, ctx.state = rule, op, state
        return z

    @staticmethod
    def backward(ctx, R):
        Rin = ctx.rule.backward(ctx.op, ctx.state, R)
        ctx.state = None
        return Rin, None, None, None, None


class _SumFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a, b, rule):
        ctx.flat = isinstance(rule, Flat)
        ctx.eps = getattr(rule, "epsilon", 0.0)
        if not ctx.flat:
            ctx.a, ctx.b = a.detach(), b.detach()
        ctx.shapes = (a.shape, b.shape)
        return a + b

    @staticmethod
    def backward(ctx, R):
        if ctx.flat:
            Ra, Rb = R / 2, R / 2
        else:
            a, b = ctx.a, ctx.b
            z = a + b
            d = z + ctx.eps * torch.where(z >= 0, 1.0, -1.0).to(z.dtype) if ctx.eps else z
            s = torch.where(d == 0, torch.zeros((), dtype=R.dtype), R / d)
            Ra, Rb = a * s, b * s
            ctx.a = ctx.b = None
        return Ra.sum_to_size(ctx.shapes[0]), Rb.sum_to_size(ctx.shapes[1]), None


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


# ----------------------------------------------------------------------------------------
# guard against functional operations in container forwards
# ----------------------------------------------------------------------------------------
_ALLOWED_FUNCS = {"flatten", "view", "reshape", "contiguous", "size", "dim", "numel", "squeeze",
                  "unsqueeze", "__get__", "__getitem__", "__len__", "__format__", "__repr__",
                  "__bool__", "__index__", "__int__", "dtype", "is_floating_point", "clone",
                  "__eq__", "__ne__", "__lt__", "__gt__", "__le__", "__ge__", "__hash__", "item",
                  "_has_compatible_shallow_copy_type", "__setstate__", "__reduce_ex__"}


_TORCH_DIR = os.path.dirname(torch.__file__) + os.sep


class _Guard(TorchFunctionMode):
    """Raises on tensor operations issued by container forwards that are not relevance-neutral."""

    def __init__(self, names: Mapping[int, str]):
        super().__init__()
        self.names = names
        self.depth = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if self.depth == 0:
            fname = getattr(func, "__name__", str(func))
            if fname not in _ALLOWED_FUNCS and self._from_model_code():
                where = self._where()
                raise UnsupportedLayerError(
                    f"LRP cannot propagate relevance through the functional call "
                    f"{fname!r} in the forward of {where}; express it as a module lrpkit knows "
                    f"(nn.ReLU, nn.MaxPool2d, nn.Flatten, ...), or assign a rule to a module "
                    f"that wraps it (rules={{'<name>': lrpkit.lrp.Pass()}} for element-wise "
                    f"activations)")
        return func(*args, **kwargs)

    @staticmethod
    def _from_model_code() -> bool:
        """Whether the op was issued by a module's own code (a container ``forward`` or a
        helper method of it), not by a user's forward hook or other outside code: the first
        frame outside torch (and this file) belongs to a method of an ``nn.Module``."""
        f = inspect.currentframe()
        f = f.f_back if f is not None else None
        while f is not None and (f.f_code.co_filename.startswith(_TORCH_DIR)
                                 or f.f_code.co_filename == __file__):
            f = f.f_back
        return f is not None and isinstance(f.f_locals.get("self"), nn.Module)

    def _where(self) -> str:
        f = inspect.currentframe()
        while f is not None:
            obj = f.f_locals.get("self")
            if isinstance(obj, nn.Module) and id(obj) in self.names:
                n = self.names[id(obj)]
                return f"{n!r} ({type(obj).__name__})" if n else f"the model ({type(obj).__name__})"
            f = f.f_back
        return "the model"


# ----------------------------------------------------------------------------------------
# the attributor
# ----------------------------------------------------------------------------------------
class _CallState:
    def __init__(self, allow_inplace: bool, has_cutoff: bool):
        self.allow_inplace = allow_inplace
        self.overwrote = False
        self.cut_reached = not has_cutoff
        self.cut_seen = False
        self.records: dict[str, torch.Tensor] = {}


class LRP:
    """LRP attributor: ``with LRP(model, "epsilon_plus_flat") as lrp: R = lrp(x, target)``.

    Parameters
    ----------
    model : a torch module built from Conv2d, Linear, ReLU, Max/Avg/AdaptiveAvgPool2d,
        BatchNorm2d, Dropout, Flatten (and torchvision ResNet blocks).
    composite : preset name (:data:`~lrpkit.lrp.composites.COMPOSITES`) or a
        :class:`~lrpkit.lrp.composites.Composite`.  Default ``"alpha2_beta1"`` (papers 001, 002).
    rules : ``{layer name: Rule}`` overrides, e.g. ``{"features.0": ZBox(low, high)}``;
        residual sums are named ``"<block>.add"``.
    epsilon : the epsilon of Epsilon rules in preset composites (paper 002: 0.01).
    low, high : input bounds for presets with the z-box rule.
    cutoff : name of a module (leaf or container); it and every layer executed before it use
        the flat rule (paper 001 Sec. 3).  ``None``: no cut-off.
    canonize : fold batch-norm and make ResNet additions explicit (default True).
    record : names of modules whose output relevance is kept in ``self.records`` after a call.
    """

    def __init__(self, model: nn.Module, composite: Any = "alpha2_beta1", *,
                 rules: Mapping[str, Rule] | None = None, epsilon: float = 0.01,
                 low: Any = None, high: Any = None, cutoff: str | None = None,
                 canonize: bool = True, record: tuple[str, ...] = ()):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        self.composite: Composite = get_composite(composite, epsilon=epsilon, low=low, high=high)
        self.epsilon = float(epsilon)
        self._named = list(model.named_modules())
        names = {n for n, _ in self._named}
        rules = dict(rules or {})
        self.blocks = canonizers.residual_blocks(model, self._named) if canonize else []
        add_names = {f"{n}.add" for n, _ in self.blocks}
        for k, r in rules.items():
            if k not in names and k not in add_names:
                raise ValueError(f"rules: the model has no layer named {k!r}")
            if not isinstance(r, Rule):
                raise TypeError(f"rules[{k!r}] must be an lrpkit.lrp Rule, got {type(r).__name__}")
        self.composite = self.composite.with_rules(rules)
        if cutoff is not None and cutoff not in names:
            raise ValueError(f"cutoff: the model has no layer named {cutoff!r}")
        self.cutoff = cutoff
        self.canonize = canonize
        self.record = tuple(record)
        for r in self.record:
            if r not in names:
                raise ValueError(f"record: the model has no layer named {r!r}")
        self.records: dict[str, torch.Tensor] = {}
        self._state: _CallState | None = None
        self._guard: _Guard | None = None
        self._undo: list = []

    # -- set-up / tear-down -------------------------------------------------------------
    def __enter__(self):
        model = self.model
        # eval mode for the call: only modules in training mode are switched (and restored)
        self._training = [m for _, m in self._named if m.training]
        self._undo = []
        try:
            for m in self._training:
                m.__dict__["training"] = False
            named = self._named
            mods = dict(named)
            leaves = [(n, m) for n, m in named if not m._modules]
            self._names = {id(m): n for n, m in named}
            first = next((n for n, m in leaves if isinstance(m, (nn.Conv2d, nn.Linear))), None)
            self._folded: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
            self._bn_of: dict[str, str] = {}
            if self.canonize:
                for bn_name, conv_name in canonizers.find_bn_pairs(model, named).items():
                    self._folded[conv_name] = canonizers.fold_bn(mods[conv_name], mods[bn_name])
                    self._bn_of[bn_name] = conv_name
            # the module before each ReLU in the same Sequential (in-place is safe after it)
            self._prev: dict[str, str] = {}
            for pname, parent in named:
                if isinstance(parent, nn.Sequential):
                    ch = list(parent.named_children())
                    pre = f"{pname}." if pname else ""
                    for (a, _), (b, mb) in zip(ch, ch[1:]):
                        if isinstance(mb, nn.ReLU):
                            self._prev[pre + b] = pre + a
            self._inplace_ok = self._inplace_safe(first, mods)
            for name, m in leaves:
                self._patch(m, self._guarded(self._leaf_forward(name, m, name == first)))
            for name, blk in self.blocks:
                self._patch(blk, canonizers.block_forward(blk, self._adder(f"{name}.add")))
            if self.cutoff is not None:
                cm = mods[self.cutoff]
                inner = cm.__dict__.get("forward", cm.forward)
                self._patch(cm, self._cut_forward(inner))
            for r in self.record:
                rm = mods[r]
                inner = rm.__dict__.get("forward", rm.forward)
                self._patch(rm, self._record_forward(r, inner))
        except BaseException:
            self._restore()
            raise
        return self

    def __exit__(self, *exc):
        self._restore()
        return False

    def _inplace_safe(self, first: str | None, mods: Mapping[str, nn.Module]) -> bool:
        """Whether in-place ReLUs may overwrite ``z``: no rule above the input layer gives
        relevance to dead units (flat, w-square, z-box, Pass on an unknown module).  Decided
        up front so that such composites do not pay a second forward pass (the retry in
        ``__call__`` stays as a safety net)."""
        comp = self.composite
        if any(not r.multiplicative for r in comp.kinds.values()):
            return False
        for n, r in comp.name_map.items():
            if n == first:
                continue
            if not r.multiplicative or (isinstance(r, Pass) and n in mods
                                        and layer_kind(mods[n]) == "other"):
                return False
        return True

    def _patch(self, m: nn.Module, fwd) -> None:
        had = "forward" in m.__dict__
        self._undo.append((m, had, m.__dict__.get("forward")))
        m.__dict__["forward"] = fwd  # an instance attribute; nn.Module.__setattr__ is not needed

    def _restore(self) -> None:
        for m, had, old in reversed(self._undo):
            if had:
                m.__dict__["forward"] = old
            else:
                m.__dict__.pop("forward", None)
        self._undo = []
        for m in getattr(self, "_training", []):
            m.__dict__["training"] = True
        self._training = []

    # -- per-layer forwards ---------------------------------------------------------------
    def _rule(self, name: str, kind: str, is_first: bool, m: nn.Module) -> Rule:
        st = self._state
        if st is not None and not st.cut_reached and kind in ("conv", "linear", "bn", "maxpool",
                                                              "avgpool", "sum"):
            return Flat()
        rule = self.composite.rule_for(name, kind, is_first)
        if rule is None:
            if kind in DEFAULT_KIND_RULES:
                rule = DEFAULT_KIND_RULES[kind]
            elif kind == "bn":
                rule = Epsilon(self.epsilon)
            elif kind in ("relu", "identity"):
                rule = Pass()
            else:
                raise ValueError(f"composite {self.composite.name!r} has no rule for layer "
                                 f"{name!r} ({type(m).__name__}, kind {kind!r}); add one with "
                                 f"rules={{{name!r}: ...}}")
        if kind not in rule.kinds and not (kind in ("relu", "identity", "other")
                                           and isinstance(rule, Pass)):
            raise ValueError(f"rule {rule!r} cannot be used on layer {name!r} "
                             f"({type(m).__name__}); it applies to {sorted(rule.kinds)}")
        return rule

    def _check_overwrite(self, rule: Rule) -> None:
        st = self._state
        if not rule.multiplicative and st.overwrote and st.allow_inplace:
            raise _Retry()

    def _leaf_forward(self, name: str, m: nn.Module, is_first: bool):
        kind = layer_kind(m)
        orig = m.forward  # bound method of the class (instance attribute not set yet)
        eng = self

        if kind in ("conv", "linear"):
            if kind == "conv":
                if m.padding_mode != "zeros":
                    return self._unsupported(name, m, orig, f"padding_mode={m.padding_mode!r}")
                pad = m.padding
                if isinstance(pad, str):
                    if pad == "valid":
                        pad = (0, 0)
                    elif all((d * (k - 1)) % 2 == 0 for d, k in zip(m.dilation, m.kernel_size)):
                        pad = tuple(d * (k - 1) // 2 for d, k in zip(m.dilation, m.kernel_size))
                    else:
                        return self._unsupported(name, m, orig, "asymmetric padding='same'")
                op = ConvOp(tuple(m.stride), tuple(pad), tuple(m.dilation), m.groups)
            else:
                op = DenseOp()
            folded = self._folded.get(name)

            def fwd(x, *a, **k):
                st = eng._state
                if st is None:
                    return orig(x, *a, **k)
                rule = eng._rule(name, kind, is_first, m)
                eng._check_overwrite(rule)
                if folded is not None:
                    w, b = folded
                else:
                    w = m.weight.detach()
                    b = m.bias.detach() if m.bias is not None else None
                z = _RuleFn.apply(x, rule, op, w, b)
                z._lrpkit_zdep = rule.z_dependent
                z._lrpkit_src = name
                return z
            return fwd

        if kind == "bn":
            conv_name = self._bn_of.get(name)

            def fwd(x, *a, **k):
                st = eng._state
                if st is None:
                    return orig(x, *a, **k)
                if conv_name is not None:
                    if getattr(x, "_lrpkit_src", None) != conv_name:
                        raise UnsupportedLayerError(
                            f"batch-norm {name!r} was paired with convolution {conv_name!r} for "
                            f"folding but does not receive its output; pass canonize=False")
                    x._lrpkit_src = name
                    return x
                if m.running_mean is None:
                    raise UnsupportedLayerError(
                        f"batch-norm {name!r} has no running statistics and cannot be explained")
                rule = eng._rule(name, kind, is_first, m)
                eng._check_overwrite(rule)
                scale = torch.rsqrt(m.running_var.detach() + m.eps)
                if m.weight is not None:
                    scale = scale * m.weight.detach()
                shift = -m.running_mean.detach() * scale
                if m.bias is not None:
                    shift = shift + m.bias.detach()
                z = _RuleFn.apply(x, rule, ScaleOp(), scale, shift)
                z._lrpkit_zdep = rule.z_dependent
                z._lrpkit_src = name
                return z
            return fwd

        if kind == "relu":
            prev = self._prev.get(name)

            def fwd(x, *a, **k):
                st = eng._state
                if st is None:
                    return orig(x, *a, **k)
                rule = eng.composite.rule_for(name, kind, False)
                if rule is not None and not isinstance(rule, Pass):
                    raise ValueError(f"rule {rule!r} cannot be used on ReLU layer {name!r}; "
                                     f"ReLUs pass relevance (Pass)")
                if (st.allow_inplace and getattr(x, "_lrpkit_zdep", False) and x.requires_grad
                        and (m.inplace or (prev is not None and getattr(x, "_lrpkit_src", None) == prev))):
                    st.overwrote = True
                    return _PassReLUInplace.apply(x)
                return _PassReLU.apply(x)
            return fwd

        if kind in ("maxpool", "avgpool"):
            if isinstance(m, nn.MaxPool2d):
                if (m.dilation if isinstance(m.dilation, int) else max(m.dilation)) != 1:
                    flat_f = None
                else:
                    flat_f = (lambda x, m=m: F.avg_pool2d(x, m.kernel_size, m.stride, m.padding,
                                                           m.ceil_mode, count_include_pad=False))
                op = PoolOp(orig, flat_f)
            elif isinstance(m, nn.AvgPool2d):
                op = PoolOp(orig, lambda x, m=m: F.avg_pool2d(
                    x, m.kernel_size, m.stride, m.padding, m.ceil_mode, count_include_pad=False))
            else:
                op = PoolOp(orig)

            def fwd(x, *a, **k):
                st = eng._state
                if st is None:
                    return orig(x, *a, **k)
                rule = eng._rule(name, kind, is_first, m)
                if isinstance(rule, WinnerTakesAll):
                    return orig(x)  # autograd routes relevance to the max (the pooling switch)
                eng._check_overwrite(rule)
                if isinstance(rule, Flat) and op.flat_func is None:
                    raise UnsupportedLayerError(f"flat rule on dilated max-pool {name!r} is not "
                                                f"supported")
                z = _RuleFn.apply(x, rule, op, None, None)
                z._lrpkit_zdep = rule.z_dependent
                return z
            return fwd

        if kind == "identity":
            def fwd(x, *a, **k):
                st = eng._state
                if st is not None:
                    rule = eng.composite.rule_for(name, kind, False)
                    if rule is not None and not isinstance(rule, Pass):
                        raise ValueError(f"rule {rule!r} cannot be used on layer {name!r} "
                                         f"({type(m).__name__}); it passes relevance")
                return orig(x, *a, **k)
            return fwd

        return self._unsupported(name, m, orig, None)

    def _unsupported(self, name, m, orig, why):
        eng = self

        def fwd(x, *a, **k):
            st = eng._state
            if st is None:
                return orig(x, *a, **k)
            rule = eng.composite.name_map.get(name)
            if isinstance(rule, Pass):
                # an arbitrary element-wise f (f(0) != 0, e.g. sigmoid) gives dead units
                # relevance: the z overwritten by an in-place ReLU below would then be wrong
                if st.overwrote and st.allow_inplace:
                    raise _Retry()
                return _PassAny.apply(x, lambda t: orig(t, *a, **k), name)
            reason = f" ({why})" if why else ""
            raise UnsupportedLayerError(
                f"LRP does not support layer {name!r} of type {type(m).__module__}."
                f"{type(m).__qualname__}{reason}. Supported: Conv2d, Linear, ReLU, MaxPool2d, "
                f"AvgPool2d, AdaptiveAvgPool2d, BatchNorm2d, Dropout, Flatten, Identity and "
                f"torchvision ResNet blocks. For an element-wise activation assign a rule by "
                f"name: explain(..., rules={{{name!r}: lrpkit.lrp.Pass()}})")
        return fwd

    def _adder(self, name: str):
        eng = self

        def add(a, b):
            st = eng._state
            if st is None:
                return a + b
            rule = eng._rule(name, "sum", False, nn.Identity())
            eng._check_overwrite(rule)
            with eng._leaf():
                return _SumFn.apply(a, b, rule)
        return add

    def _cut_forward(self, inner):
        eng = self

        def fwd(*a, **k):
            out = inner(*a, **k)
            if eng._state is not None:
                eng._state.cut_reached = True
                eng._state.cut_seen = True
            return out
        return fwd

    def _record_forward(self, name, inner):
        eng = self

        def fwd(*a, **k):
            out = inner(*a, **k)
            st = eng._state
            if st is not None and isinstance(out, torch.Tensor) and out.requires_grad:
                def hook(g, name=name):
                    st.records[name] = g.detach()
                with eng._leaf():
                    out.register_hook(hook)
            return out
        return fwd

    def _guarded(self, fwd):
        eng = self

        def guarded(*a, **k):
            if eng._guard is None:
                return fwd(*a, **k)
            with torch._C.DisableTorchFunction():  # leaves are handled: no per-op checks
                return fwd(*a, **k)
        return guarded

    @contextmanager
    def _leaf(self):
        g = getattr(self, "_guard", None)
        if g is None:
            yield
            return
        g.depth += 1
        try:
            yield
        finally:
            g.depth -= 1

    # -- the call -------------------------------------------------------------------------
    def __call__(self, x: torch.Tensor, target: Any = "pred") -> torch.Tensor:
        if not self._undo:
            raise RuntimeError("use the LRP attributor as a context manager: "
                               "with LRP(model, ...) as lrp: R = lrp(x, target)")
        x = check_input(x)
        try:
            return self._run(x, target, allow_inplace=self._inplace_ok)
        except _Retry:
            return self._run(x, target, allow_inplace=False)

    def _run(self, x, target, allow_inplace):
        st = self._state = _CallState(allow_inplace, self.cutoff is not None)
        xin = x.detach().requires_grad_(True)
        try:
            self._guard = _Guard(self._names)
            try:
                with torch.enable_grad(), self._guard:
                    out = self.model(xin)
            finally:
                self._guard = None
            if self.cutoff is not None and not st.cut_seen:
                raise ValueError(f"cutoff layer {self.cutoff!r} was not used in the forward pass")
            if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != x.shape[0]:
                raise ValueError(f"model output must be (N, classes), got "
                                 f"{tuple(getattr(out, 'shape', ()))}")
            t = _targets(target, out)
            R_out = torch.zeros_like(out)
            R_out.scatter_(1, t[:, None], out.detach().gather(1, t[:, None]))
            if not out.requires_grad:
                return torch.zeros_like(x)
            (R,) = torch.autograd.grad(out, xin, R_out, allow_unused=True)
            self.records = dict(st.records)
            return torch.zeros_like(x) if R is None else R.detach()
        finally:
            self._state = None


def _targets(target: Any, out: torch.Tensor) -> torch.Tensor:
    n, k = out.shape
    if isinstance(target, str):
        if target != "pred":
            raise ValueError(f"target must be an int, a sequence of ints or 'pred', got {target!r}")
        return out.detach().argmax(1)
    if isinstance(target, bool):
        raise TypeError("target must be a class index, not a bool")
    t = torch.as_tensor(target)
    if torch.is_floating_point(t) or t.dtype == torch.bool:
        raise TypeError(f"target must hold integer class indices, got dtype {t.dtype}")
    t = t.long().to(out.device)
    if t.dim() == 0:
        t = t.expand(n)
    if t.shape != (n,):
        raise ValueError(f"target must hold one class per sample ({n}), got shape {tuple(t.shape)}")
    if (t < 0).any() or (t >= k).any():
        raise ValueError(f"target {t.tolist()} out of range for a model with {k} classes")
    return t


def lrp(model: nn.Module, x: torch.Tensor, target: Any = "pred", composite: Any = "alpha2_beta1",
        *, rules: Mapping[str, Rule] | None = None, epsilon: float = 0.01, low: Any = None,
        high: Any = None, cutoff: str | None = None, canonize: bool = True) -> torch.Tensor:
    """LRP relevance of ``x`` (N, C, H, W) for ``target`` in one forward + one backward pass."""
    with LRP(model, composite, rules=rules, epsilon=epsilon, low=low, high=high, cutoff=cutoff,
             canonize=canonize) as attributor:
        return attributor(x, target)
