"""One-pass LRP: one forward and one backward pass with closed-form relevance backwards.

:class:`LRP` is a context manager (an *attributor*).  On entry it puts the model in eval
mode (:func:`lrpkit.explain.eval_mode`), switches parameter gradients off, gives every leaf
module with an op a rule-aware ``forward`` (:mod:`.layers`: one table from module type to
op), registers module-path hooks on the other modules and applies the canonizers
(:mod:`.canonizers`: batch-norm folding, explicit residual sums, Inception's input transform);
everything is removed on exit (parameters, ``requires_grad`` flags, hooks and training flags
are left exactly as they were, also after an exception).  During the forward pass a router
(:mod:`.router`, a ``TorchFunctionMode``) sees every functional operation outside those
leaves -- in container forwards, helper functions, unknown modules -- and routes it exactly
(reshapes, ``cat``, indexing: by its gradient), runs it as an op under the composite's rule
(``x + y``, ``x * s``, ``F.relu``, ``x.mean((2, 3))``, ``F.layer_norm`` ... named
``"<module>.<function>"``), or marks its result, which raises
:class:`~lrpkit.lrp.layers.UnsupportedLayerError` if it reaches the output.  Calling it runs::

    out = model(x)                      # forward: each layer also computes what its rule needs
    R   = autograd.grad(out, x, R_out)  # backward: the "gradient" IS the relevance

where ``R_out`` is the explained score ``f_c(x)`` at the target class and 0 elsewhere, so
that with conservative rules ``R.sum() == f_c(x)`` (Bach et al. 2015; Samek et al. 2017,
eq. 6; Lapuschkin et al. 2016, eq. 5-6).  Each layer runs as ``rule(op, x)``: closed-form
rules (:class:`~lrpkit.lrp.rules.Rule`) as a ``torch.autograd.Function`` whose backward is the
rule's closed form (e.g. epsilon: ``R_in = x * W^T (R / (z + eps sign z))``), the
winner-takes-all and pass rules as the op's own gradient.  The engine never looks at a
rule's type: it reads the rule's declarations (``ops``, ``needs_input``, ``needs_output``,
``reaches_dead_units``).  Weights never receive gradients.

Memory: a rule that keeps its layer output ``z`` (``needs_output``: epsilon, alpha-beta with
beta > 0) would hold it next to the ReLU's output.  When an in-place ReLU (or a ReLU that is
the next module of the same ``nn.Sequential``) follows such a layer, the ReLU overwrites
``z`` in place as in a plain forward; this is exact because relevance arriving at a dead
unit is 0 when the rule above does not reach dead units.  If a rule (or op) that reaches dead
units (flat, w-square, z-box, Pass on an unknown module) runs after such an overwrite, the
call is transparently repeated without in-place ReLUs; composites where this can happen
above the input layer skip in-place ReLUs from the start.

Mapping-influence cut-off (Bach et al. 2016, Sec. 3): ``cutoff="features.10"`` applies
the flat rule to that layer and every layer executed before it, i.e. relevance arriving at
the cut-off layer is spread uniformly over each unit's inputs, recursively down to the pixels.
"""
from __future__ import annotations

import inspect
from contextlib import ExitStack, contextmanager
from typing import Any
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from ..inputs import check_input, eval_mode, resolve_target
from ..params import Boolean, InstanceOf, Interval, Options, declare, forwards
from .canonizers import Canonizer, ForwardPatches, Rerun, default_canonizers
from .composites import COMPOSITES, FIRST_LAYER_KINDS, Composite, get_composite
from .layers import LAYERS, ElementwiseOp, Op, SumOp, UnsupportedLayerError, layer_op, register_layer
from .router import Router, Taint
from .rules import SAVED, Flat, Rule, SumFunction

__all__ = ["LRP", "lrp", "OPTIONS", "layer_kind", "UnsupportedLayerError", "register_layer",
           "LAYERS"]

#: the rule of the cut-off region
_FLAT = Flat()


class _Retry(Exception):
    """Internal: repeat the pass without in-place ReLUs."""


def layer_kind(m: nn.Module) -> str:
    """The op kind of a module from the layer table (``"other"`` for unknown modules)."""
    return layer_op(m).kind


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
        self.stack: list = []                # (module name, module, op counts) being run
        self.root_count: dict = {}


class LRP:
    """LRP attributor: ``with LRP(model, "epsilon_plus_flat") as lrp: R = lrp(x, target)``.

    The keyword arguments here are THE list of LRP options: :func:`lrp`,
    ``lrpkit.explain(..., method="lrp")`` and :func:`lrpkit.lrp.params_from_config` take
    them from this signature (:data:`OPTIONS`).

    Parameters
    ----------
    model : a torch module built from layers in the layer table (:data:`LAYERS`: Conv2d,
        Linear, ReLU, Max/Avg/AdaptiveAvgPool2d, BatchNorm2d, Dropout, Flatten, Identity, and
        types added with :func:`register_layer`) and torchvision ResNet blocks.
    composite : preset name (:data:`~lrpkit.lrp.composites.COMPOSITES`) or a
        :class:`~lrpkit.lrp.composites.Composite`.  Default ``"alpha2_beta1"`` (AlphaBeta(2, 1)
        on conv, Epsilon on dense: Bach et al. 2016, Sec. 2.1; Samek et al. 2017,
        Sec. II-C).
    rules : ``{layer name: Rule}`` overrides, e.g. ``{"features.0": ZBox(low, high)}``;
        residual sums are named ``"<block>.add"``.
    epsilon : the epsilon of Epsilon rules in preset composites (Samek et al. 2017: 0.01).
    gamma : the gamma of Gamma rules in preset composites (zennit, captum: 0.25).
    low, high : input bounds for presets with the z-box rule.
    cutoff : name of a module (leaf or container); it and every layer executed before it use
        the flat rule (Bach et al. 2016, Sec. 3).  ``None``: no cut-off.
    canonize : ``True`` (batch-norm folding and explicit ResNet sums,
        :func:`~lrpkit.lrp.canonizers.default_canonizers`), ``False`` (none) or a list of
        :class:`~lrpkit.lrp.canonizers.Canonizer`.
    record : names of modules whose output relevance is kept in ``self.records`` after a call.
    """

    @declare(composite=[Options(lambda: tuple(COMPOSITES)), InstanceOf(Composite)],
             rules=[InstanceOf(Mapping, name="a mapping {layer name: Rule}"), None],
             epsilon=Interval(float, 0, None), gamma=Interval(float, 0, None),
             low=[Interval(float), InstanceOf(torch.Tensor), None],
             high=[Interval(float), InstanceOf(torch.Tensor), None],
             cutoff=[InstanceOf(str, name="a layer name"), None],
             canonize=[Boolean(), InstanceOf(list, tuple, name="a list of Canonizers")],
             record=InstanceOf(list, tuple, name="a list of layer names"))
    def __init__(self, model: nn.Module, composite: Any = "alpha2_beta1", *,
                 rules: Mapping[str, Rule] | None = None, epsilon: float = 0.01,
                 gamma: float = 0.25, low: Any = None, high: Any = None,
                 cutoff: str | None = None, canonize: bool | Sequence[Canonizer] = True,
                 record: Sequence[str] = ()):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if isinstance(model, torch.jit.ScriptModule):
            raise UnsupportedLayerError(
                "LRP needs the model's Python forward: a TorchScript archive runs compiled code that "
                "lrpkit cannot route relevance through; load the network as Python (config "
                "model.source: torchvision or python, with the same weights), or use a gradient "
                "method (gradient_x_input, sensitivity) on the TorchScript model")
        self.model = model
        self.composite: Composite = get_composite(composite, epsilon=epsilon, gamma=gamma,
                                                  low=low, high=high)
        self.epsilon = float(epsilon)
        self.named_modules = list(model.named_modules())
        self.modules = dict(self.named_modules)
        rules = dict(rules or {})
        for k, r in rules.items():
            if not isinstance(r, Rule):
                raise TypeError(f"rules[{k!r}] must be an lrpkit.lrp Rule, got {type(r).__name__}")
        self.composite = self.composite.with_rules(rules)
        self._rule_names = set(rules)
        if cutoff is not None and cutoff not in self.modules:
            raise ValueError(f"cutoff: the model has no layer named {cutoff!r}")
        self.cutoff = cutoff
        if canonize is True:
            self.canonizers: list[Canonizer] = default_canonizers()
        elif canonize is False or canonize is None:
            self.canonizers = []
        else:
            self.canonizers = list(canonize)
            for c in self.canonizers:
                if not isinstance(c, Canonizer):
                    raise TypeError(f"canonize must be True, False or a list of "
                                    f"lrpkit.lrp.canonizers.Canonizer, got {type(c).__name__}")
        self.record = tuple(record)
        for r in self.record:
            if r not in self.modules:
                raise ValueError(f"record: the model has no layer named {r!r}")
        self.records: dict[str, torch.Tensor] = {}
        self.ops: dict[str, Op] = {}
        self._state: _CallState | None = None
        self._router: Router | None = None
        self._patches = ForwardPatches()
        self._applied: list[Canonizer] = []
        self._stack: ExitStack | None = None
        self._hooks: list = []
        self._first: str | None = None

    # -- what canonizers may use ----------------------------------------------------------
    @property
    def active(self) -> bool:
        """Whether an explanation (not a plain forward) is running."""
        return self._state is not None

    @staticmethod
    def produced_by(t: torch.Tensor) -> str | None:
        """The name of the layer whose op computed ``t`` during the explanation."""
        return getattr(t, "_lrpkit_src", None)

    @staticmethod
    def tag(t: torch.Tensor, name: str) -> None:
        """Mark ``t`` as the output of layer ``name`` (a canonizer's pass-through layer)."""
        t._lrpkit_src = name

    def add_op(self, name: str):
        """A relevance-aware ``add(a, b)`` (the op ``name``, kind ``"sum"``) for a canonizer."""
        if name in self.ops:
            raise ValueError(f"a layer named {name!r} already exists")
        op = SumOp()
        op.name = name
        self.ops[name] = op
        self._static_names.add(name)

        def add(a, b):
            if self._state is None:
                return a + b
            return self._sum(name, (a, b), (1.0, 1.0))
        return add

    def affine_input(self, name: str, func, op_type):
        """A relevance-aware element-wise ``func`` (the op ``name``, kind ``"scale"``: all
        relevance to its input) for a canonizer, e.g. an input re-encoding."""
        if name in self.ops:
            raise ValueError(f"a layer named {name!r} already exists")
        op = op_type(func, "scale")
        op.name = name
        self.ops[name] = op
        self._static_names.add(name)

        def fwd(x):
            if self._state is None:
                return func(x)
            with torch._C.DisableTorchFunction():
                return self._apply(name, op, x)
        return fwd

    # -- set-up / tear-down -------------------------------------------------------------
    def __enter__(self):
        if self._patches or self._stack is not None:
            raise RuntimeError("this LRP attributor is already in use (enter it once)")
        self._stack = ExitStack()
        try:
            self._stack.enter_context(eval_mode(self.model))
            self._stack.enter_context(_no_param_grads(self.model))
            named = self.named_modules
            leaves = [(n, m) for n, m in named if not m._modules]
            self._names = {id(m): n for n, m in named}
            self.ops = {}
            for name, m in leaves:
                op = layer_op(m)
                op.name = name
                self.ops[name] = op
            # the module before each ReLU in the same Sequential (in-place is safe after it)
            self._prev: dict[str, str] = {}
            for pname, parent in named:
                if isinstance(parent, nn.Sequential):
                    ch = list(parent.named_children())
                    pre = f"{pname}." if pname else ""
                    for (a, _), (b, _) in zip(ch, ch[1:]):
                        self._prev[pre + b] = pre + a
            # a guess of the input layer (module order) for _inplace_safe; the rules use the
            # first conv / linear op actually run (_rule)
            self._first_guess = next((n for n, op in self.ops.items()
                                      if op.kind in FIRST_LAYER_KINDS), None)
            self._first = None
            transparent = set()
            for name, m in leaves:
                op = self.ops[name]
                if isinstance(op, ElementwiseOp) and op.kind == "other" and \
                        self._static_rule(name, op, False) is None:
                    transparent.add(name)       # run its own forward under the router
                    del self.ops[name]
                    continue
                if hasattr(op, "overwrite"):
                    op.overwrite = (lambda x, inplace, name=name: self._may_overwrite(name, x,
                                                                                      inplace))
                orig = m.forward  # bound method of the class (instance attribute not set yet)
                self._patch(m, self._op_forward(name, op, orig))
            self._static_names = set(self.ops)
            for name, m in named:          # the module path of functional ops (router)
                if m._modules or name in transparent:
                    self._hooks.append(m.register_forward_pre_hook(self._push))
                    self._hooks.append(m.register_forward_hook(self._pop, always_call=True))
            for c in self.canonizers:
                self._applied.append(c)
                c.apply(self.model, self)
            self._rules: dict[str, Rule] = {}
            self._inplace_ok = self._inplace_safe()
            if self.cutoff is not None:
                cm = self.modules[self.cutoff]
                self._patch(cm, self._cut_forward(cm.__dict__.get("forward", cm.forward)))
            for r in self.record:
                rm = self.modules[r]
                self._patch(rm, self._record_forward(r, rm.__dict__.get("forward", rm.forward)))
        except BaseException:
            self._restore()
            raise
        return self

    def __exit__(self, *exc):
        self._restore()
        return False

    def _static_rule(self, name: str, op: Op, is_first: bool) -> Rule | None:
        rule = self.composite.rule_for(name, op.kind, is_first)
        return rule if rule is not None else op.default_rule(self.epsilon)

    def _inplace_safe(self) -> bool:
        """Whether in-place ReLUs may overwrite kept outputs: no layer above the input layer
        has a rule (or op) that reaches dead units.  Decided up front so that such composites
        do not pay a second forward pass (the retry in ``__call__`` stays as a safety net)."""
        for name, op in self.ops.items():
            if name == self._first_guess:
                continue
            rule = self._static_rule(name, op, False)
            if rule is not None and (rule.reaches_dead_units or op.reaches_dead_units):
                return False
        return True

    def _patch(self, m: nn.Module, fwd) -> None:
        self._patches.patch(m, fwd)

    def _restore(self) -> None:
        try:
            while self._applied:
                self._applied.pop().restore()
        finally:
            for h in self._hooks:
                h.remove()
            self._hooks = []
            self._patches.restore()
            stack, self._stack = self._stack, None
            if stack is not None:
                stack.close()

    # -- the module stack (names of functional ops) ------------------------------------------
    def _push(self, m, args):
        st = self._state
        if st is not None:
            st.stack.append((self._names.get(id(m), "?"), m, {}))

    def _pop(self, m, args, out):
        st = self._state
        if st is not None and st.stack and st.stack[-1][1] is m:
            st.stack.pop()

    def where(self) -> str:
        """The module whose forward is running, for messages."""
        st = self._state
        if st is None or not st.stack:
            return "the model"
        n, m, _ = st.stack[-1]
        return f"{n!r} ({type(m).__name__})" if n else f"the model ({type(m).__name__})"

    def where_name(self) -> str:
        st = self._state
        return st.stack[-1][0] if st is not None and st.stack else ""

    def _next_name(self, base: str) -> str:
        st = self._state
        prefix, count = ("", st.root_count)
        if st.stack:
            n, _, count = st.stack[-1]
            prefix = f"{n}." if n else ""
        k = count.get(base, 0)
        count[base] = k + 1
        name = f"{prefix}{base}" + (f"_{k}" if k else "")
        if name in self.modules:
            name += "_op"
        return name

    # -- per-layer forwards ---------------------------------------------------------------
    def _rule(self, name: str, op: Op) -> Rule:
        if self._first is None and op.kind in FIRST_LAYER_KINDS:
            self._first = name
        if not self._state.cut_reached and op.kind in _FLAT.ops:
            return _FLAT
        rule = self._rules.get(name)
        if rule is not None:
            return rule
        rule = self._static_rule(name, op, name == self._first)
        if rule is None:
            raise op.missing_rule(self.composite.name)
        if op.kind not in rule.ops:
            what = type(op.module).__name__ if op.module is not None else "function"
            raise ValueError(f"rule {rule!r} cannot be used on layer {name!r} "
                             f"({what}, kind {op.kind!r}); it applies to {sorted(rule.ops)}")
        self._rules[name] = rule
        return rule

    def _may_overwrite(self, name: str, x: torch.Tensor, inplace: bool) -> bool:
        """Whether a ReLU (``name``) may overwrite its input ``x`` in place."""
        st = self._state
        rule = getattr(x, "_lrpkit_rule", None)
        if (st is None or not st.allow_inplace or rule is None or not x.requires_grad
                or not (inplace or getattr(x, "_lrpkit_src", None) == self._prev.get(name))):
            return False
        if rule.needs_output:
            st.overwrote = True
        return True

    def relu_overwrite(self, x: torch.Tensor, inplace: bool) -> bool:
        """:meth:`_may_overwrite` for a functional ReLU (``F.relu(x, inplace=True)``)."""
        return inplace and self._may_overwrite("", x, True)

    def _apply(self, name: str, op: Op, x: torch.Tensor, call_op: Op | None = None):
        """Run layer ``name`` (op ``op``; ``call_op``: this call's instance) on ``x`` under its
        rule; the output is tagged with the layer, its rule and any taint of ``x``."""
        st = self._state
        rule = self._rule(name, op)
        cop = (call_op if call_op is not None else op).bind(x)
        if st.overwrote and st.allow_inplace and (rule.reaches_dead_units
                                                  or cop.reaches_dead_units):
            raise _Retry()
        return self._tag(name, op, rule, x, rule(cop, x))

    def _tag(self, name, op, rule, x, z):
        if isinstance(z, torch.Tensor):
            z._lrpkit_src = name
            # outputs of rules that keep activations may be overwritten by a ReLU
            z._lrpkit_rule = rule if (rule.needs_output or rule.needs_input) else None
            taint = x.__dict__.get("_lrpkit_taint")
            if taint is None and x.requires_grad and not z.requires_grad:
                taint = Taint(
                    f"the output of {name!r} ({op.kind}, rule {rule!r}) is held constant as a "
                    f"gate, but it reaches the model output other than as the factor of a "
                    f"product x * s: it is used as an activation there; assign a rule by name, "
                    f"e.g. rules={{{name!r}: lrpkit.lrp.Pass()}}", gate=True)
            if taint is not None:
                z._lrpkit_taint = taint
        return z

    def _sum(self, name: str, terms, coef):
        """The sum ``sum_k coef_k terms_k`` as layer ``name`` (kind ``"sum"``): rules with a
        ``sum_relevance`` run on the summands (:class:`~lrpkit.lrp.rules.SumFunction`), others
        on the summands stacked along a new last dimension (:class:`SumOp`)."""
        st = self._state
        op = self.ops.get(name)
        if op is None or op.kind != "sum":
            op = self.ops[name] = SumOp()
            op.name = name
        rule = self._rule(name, op)
        if st.overwrote and st.allow_inplace and rule.reaches_dead_units:
            raise _Retry()
        first = next((t for t in terms if t.requires_grad), terms[0])
        with torch._C.DisableTorchFunction():
            if getattr(rule, "sum_relevance", None) is not None:
                z = SumFunction.apply(rule, tuple(coef), *terms)
            else:
                x = torch.stack(torch.broadcast_tensors(*terms), -1)
                w = None if all(c == 1 for c in coef) else torch.tensor(
                    coef, dtype=x.dtype, device=x.device)
                z = rule(SumOp(None, w), x)
        taint = next((t.__dict__["_lrpkit_taint"] for t in terms
                      if "_lrpkit_taint" in t.__dict__), None)
        if taint is not None:
            z._lrpkit_taint = taint
        return self._tag(name, op, rule, first, z)

    def dyn_sum(self, base: str, terms, coef):
        """A functional sum (the router's) as layer ``"<module path>.<base>"``."""
        return self._sum(self._next_name(base), terms, coef)

    def dyn(self, base: str, op: Op, x: torch.Tensor):
        """Run a functional op (the router's) as layer ``"<module path>.<base>"``."""
        name = self._next_name(base)
        tmpl = self.ops.get(name)
        if tmpl is None or tmpl.kind != op.kind:
            self.ops[name] = tmpl = op
        op.name = name
        with torch._C.DisableTorchFunction():
            return self._apply(name, tmpl, x, op)

    def protect(self, t: torch.Tensor) -> None:
        """Before an in-place write to ``t``: rules' saved tensors in its storage are copied."""
        reg = SAVED.get()
        if not reg or not isinstance(t, torch.Tensor):
            return
        ptr = t.untyped_storage().data_ptr()

        def fresh(v):
            if isinstance(v, torch.Tensor) and v.untyped_storage().data_ptr() == ptr:
                return v.clone()
            if isinstance(v, tuple) and not hasattr(v, "_fields"):
                return tuple(fresh(u) for u in v)
            return v
        for ctx in reg.pop(ptr, ()):
            s = ctx.saved
            if s is not None:
                ctx.saved = s._replace(**{k: fresh(getattr(s, k)) for k in ("x", "z")})

    def overwrite(self, a: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """``a`` takes the value and the relevance path of ``z`` (an in-place operation)."""
        with torch._C.DisableTorchFunction():
            self.protect(a)
            out = _Overwrite.apply(a, z)
        for k in ("_lrpkit_src", "_lrpkit_rule", "_lrpkit_taint"):
            if k in z.__dict__:
                out.__dict__[k] = z.__dict__[k]
            else:
                out.__dict__.pop(k, None)
        return out

    def _op_forward(self, name: str, op: Op, orig):
        eng = self

        def fwd(x, *a, **k):
            if eng._state is None:
                with torch._C.DisableTorchFunction():
                    return orig(x, *a, **k)
            with torch._C.DisableTorchFunction():  # leaves are handled: no per-op routing
                return eng._apply(name, op, x)
        return fwd

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
                with torch._C.DisableTorchFunction():
                    out.register_hook(hook)
            return out
        return fwd

    # -- the call -------------------------------------------------------------------------
    def __call__(self, x: torch.Tensor, target: Any = "pred") -> torch.Tensor:
        if self._stack is None:
            raise RuntimeError("use the LRP attributor as a context manager: "
                               "with LRP(model, ...) as lrp: R = lrp(x, target)")
        x = check_input(x)
        allow = self._inplace_ok
        for _ in range(len(self.named_modules) + 2):
            try:
                return self._run(x, target, allow_inplace=allow)
            except _Retry:
                allow = False
            except Rerun as e:          # a canonizer's pairing failed: drop it, run again
                e.fix()
        raise RuntimeError("LRP: the explanation did not settle")  # pragma: no cover

    def _run(self, x, target, allow_inplace):
        st = self._state = _CallState(allow_inplace, self.cutoff is not None)
        xin = x.detach().requires_grad_(True)
        try:
            token = SAVED.set({})
            try:
                with torch.enable_grad(), Router(self):
                    out = self.model(xin)
            finally:
                SAVED.reset(token)
            unknown = sorted(set(self._rule_names) - set(self.ops))
            if unknown:
                raise ValueError(f"rules: the model has no layer named {unknown[0]!r} (rules go "
                                 f"to leaf modules and to functional ops such as "
                                 f"'<module>.add'; layers: {_few(self.ops)})")
            if self.cutoff is not None and not st.cut_seen:
                raise ValueError(f"cutoff layer {self.cutoff!r} was not used in the forward pass")
            taint = out.__dict__.get("_lrpkit_taint") if isinstance(out, torch.Tensor) else None
            if taint is not None:
                raise UnsupportedLayerError(taint.message)
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


class _Overwrite(torch.autograd.Function):
    """``a.copy_(z)`` as a graph node: ``a`` now carries ``z``'s value and relevance."""

    @staticmethod
    def forward(ctx, a, z):
        a.copy_(z)
        ctx.mark_dirty(a)
        return a

    @staticmethod
    def backward(ctx, g):
        return None, g


@contextmanager
def _no_param_grads(model: nn.Module):
    """Parameters do not require gradients for the duration (restored after): then a tensor
    requires a gradient exactly when it depends on the explained input."""
    flags = [p for p in model.parameters() if p.requires_grad]
    try:
        for p in flags:
            p.requires_grad_(False)
        yield
    finally:
        for p in flags:
            p.requires_grad_(True)


def _few(names, k: int = 8) -> str:
    names = list(names)
    return ", ".join(repr(n) for n in names[:k]) + (f" ... ({len(names)})" if len(names) > k else "")


def _targets(target: Any, out: torch.Tensor) -> torch.Tensor:
    """Class indices ``(N,)`` for the scores ``out``: ``"pred"`` is the arg-max of this
    forward pass; everything else goes through :func:`lrpkit.explain.resolve_target`."""
    if isinstance(target, str) and target == "pred":
        return out.detach().argmax(1)
    return resolve_target(None, out, target, n_classes=out.shape[1]).to(out.device)


#: the LRP keyword arguments and their defaults, read from :class:`LRP`'s signature (the one
#: place they are declared); ``record`` is left out (it is for the attributor only)
OPTIONS: dict[str, Any] = {
    p.name: p.default for p in list(inspect.signature(LRP.__init__).parameters.values())[2:]
    if p.name != "record"}


@forwards(LRP.__init__, skip=("record",))
@declare()
def lrp(model: nn.Module, x: torch.Tensor, target: Any = "pred", *args: Any,
        **options: Any) -> torch.Tensor:
    """LRP relevance of ``x`` (N, C, H, W) for ``target`` in one forward + one backward pass.

    ``args`` / ``options``: those of :class:`LRP` (``composite``, then the keywords of
    :data:`OPTIONS`), e.g. ``lrp(model, x, 3, "epsilon", epsilon=0.1, cutoff="features.10")``.
    """
    with LRP(model, *args, **options) as attributor:
        return attributor(x, target)


def _lrp_signature() -> inspect.Signature:
    P = inspect.Parameter
    head = [P("model", P.POSITIONAL_OR_KEYWORD), P("x", P.POSITIONAL_OR_KEYWORD),
            P("target", P.POSITIONAL_OR_KEYWORD, default="pred")]
    rest = [p for p in list(inspect.signature(LRP.__init__).parameters.values())[2:]
            if p.name != "record"]
    return inspect.Signature(head + rest, return_annotation=torch.Tensor)


lrp.__signature__ = _lrp_signature()  # type: ignore[attr-defined]
