"""One-pass LRP: one forward and one backward pass with closed-form relevance backwards.

:class:`LRP` is a context manager (an *attributor*).  On entry it puts the model in eval
mode (:func:`lrpkit.explain.eval_mode`), gives every leaf module a rule-aware ``forward``
built from its op (:mod:`.layers`: one table from module type to op) and applies the
canonizers (:mod:`.canonizers`: batch-norm folding, explicit residual sums); everything is
an instance attribute removed on exit (parameters, ``requires_grad`` flags, hooks and
training flags are left exactly as they were, also after an exception).  Calling it runs::

    out = model(x)                      # forward: each layer also computes what its rule needs
    R   = autograd.grad(out, x, R_out)  # backward: the "gradient" IS the relevance

where ``R_out`` is the explained score ``f_c(x)`` at the target class and 0 elsewhere, so
that with conservative rules ``R.sum() == f_c(x)`` (Bach et al. 2015; Samek et al. 2017,
eq. 6; Lapuschkin et al. CVPR 2016, eq. 5-6).  Each layer runs as ``rule(op, x)``: closed-form
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

Mapping-influence cut-off (Lapuschkin et al. ICIP 2016, Sec. 3): ``cutoff="features.10"`` applies
the flat rule to that layer and every layer executed before it, i.e. relevance arriving at
the cut-off layer is spread uniformly over each unit's inputs, recursively down to the pixels.
"""
from __future__ import annotations

import inspect
import os
from contextlib import ExitStack, contextmanager
from typing import Any, Mapping, Sequence

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from ..explain import check_input, eval_mode, resolve_target
from .canonizers import Canonizer, ForwardPatches, default_canonizers
from .composites import FIRST_LAYER_KINDS, Composite, get_composite
from .layers import LAYERS, Op, SumOp, UnsupportedLayerError, layer_op, register_layer
from .rules import Flat, Rule

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
        on conv, Epsilon on dense: Lapuschkin et al. ICIP 2016, Sec. 2.1; Samek et al. 2017,
        Sec. II-C).
    rules : ``{layer name: Rule}`` overrides, e.g. ``{"features.0": ZBox(low, high)}``;
        residual sums are named ``"<block>.add"``.
    epsilon : the epsilon of Epsilon rules in preset composites (Samek et al. 2017: 0.01).
    gamma : the gamma of Gamma rules in preset composites (zennit, captum: 0.25).
    low, high : input bounds for presets with the z-box rule.
    cutoff : name of a module (leaf or container); it and every layer executed before it use
        the flat rule (Lapuschkin et al. ICIP 2016, Sec. 3).  ``None``: no cut-off.
    canonize : ``True`` (batch-norm folding and explicit ResNet sums,
        :func:`~lrpkit.lrp.canonizers.default_canonizers`), ``False`` (none) or a list of
        :class:`~lrpkit.lrp.canonizers.Canonizer`.
    record : names of modules whose output relevance is kept in ``self.records`` after a call.
    """

    def __init__(self, model: nn.Module, composite: Any = "alpha2_beta1", *,
                 rules: Mapping[str, Rule] | None = None, epsilon: float = 0.01,
                 gamma: float = 0.25, low: Any = None, high: Any = None,
                 cutoff: str | None = None, canonize: bool | Sequence[Canonizer] = True,
                 record: Sequence[str] = ()):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
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
        self._guard: _Guard | None = None
        self._patches = ForwardPatches()
        self._applied: list[Canonizer] = []
        self._stack: ExitStack | None = None

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
        fwd = self._op_forward(name, op, None)

        def add(a, b):
            if self._state is None:
                return a + b
            return fwd(torch.stack(torch.broadcast_tensors(a, b), -1))
        return self._guarded(add)

    # -- set-up / tear-down -------------------------------------------------------------
    def __enter__(self):
        if self._patches or self._stack is not None:
            raise RuntimeError("this LRP attributor is already in use (enter it once)")
        self._stack = ExitStack()
        try:
            self._stack.enter_context(eval_mode(self.model))
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
            self._first = next((n for n, op in self.ops.items()
                                if op.kind in FIRST_LAYER_KINDS), None)
            for name, m in leaves:
                op = self.ops[name]
                if hasattr(op, "overwrite"):
                    op.overwrite = (lambda x, inplace, name=name: self._may_overwrite(name, x,
                                                                                      inplace))
                orig = m.forward  # bound method of the class (instance attribute not set yet)
                self._patch(m, self._guarded(self._op_forward(name, op, orig)))
            for c in self.canonizers:
                self._applied.append(c)
                c.apply(self.model, self)
            for k in self._rule_names:
                if k not in self.ops:
                    raise ValueError(f"rules: the model has no layer named {k!r} (rules go to "
                                     f"leaf modules and residual sums '<block>.add')")
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

    def _static_rule(self, name: str, op: Op) -> Rule | None:
        rule = self.composite.rule_for(name, op.kind, name == self._first)
        return rule if rule is not None else op.default_rule(self.epsilon)

    def _inplace_safe(self) -> bool:
        """Whether in-place ReLUs may overwrite kept outputs: no layer above the input layer
        has a rule (or op) that reaches dead units.  Decided up front so that such composites
        do not pay a second forward pass (the retry in ``__call__`` stays as a safety net)."""
        for name, op in self.ops.items():
            if name == self._first:
                continue
            rule = self._static_rule(name, op)
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
            self._patches.restore()
            stack, self._stack = self._stack, None
            if stack is not None:
                stack.close()

    # -- per-layer forwards ---------------------------------------------------------------
    def _rule(self, name: str, op: Op) -> Rule:
        if not self._state.cut_reached and op.kind in _FLAT.ops:
            return _FLAT
        rule = self._rules.get(name)
        if rule is not None:
            return rule
        rule = self._static_rule(name, op)
        if rule is None:
            raise op.missing_rule(self.composite.name)
        if op.kind not in rule.ops:
            raise ValueError(f"rule {rule!r} cannot be used on layer {name!r} "
                             f"({type(op.module).__name__ if op.module is not None else 'sum'}, "
                             f"kind {op.kind!r}); it applies to {sorted(rule.ops)}")
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

    def _op_forward(self, name: str, op: Op, orig):
        eng = self

        def fwd(x, *a, **k):
            st = eng._state
            if st is None:
                return orig(x, *a, **k)
            rule = eng._rule(name, op)
            if st.overwrote and st.allow_inplace and (rule.reaches_dead_units
                                                      or op.reaches_dead_units):
                raise _Retry()
            z = rule(op, x)
            if isinstance(z, torch.Tensor):
                z._lrpkit_src = name
                # outputs of rules that keep activations may be overwritten by a ReLU
                z._lrpkit_rule = rule if (rule.needs_output or rule.needs_input) else None
            return z
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
        if self._stack is None:
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
