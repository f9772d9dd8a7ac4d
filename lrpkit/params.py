"""Parameter declarations: each method parameter is declared once, on the function itself.

A function's own signature gives every parameter's name and default; :func:`declare` adds each
one's constraint (in the spirit of scikit-learn's ``validate_params`` / ``StrOptions`` /
``Interval``).  That pair is the single source read by every caller:

* the function validates its own calls (a bad value raises :class:`InvalidParameterError`
  naming the function, the parameter, what it accepts and what it got);
* :func:`lrpkit.explain.register` takes the real function and lists its parameters
  (:func:`lrpkit.methods`), :func:`lrpkit.explain` validates through them;
* config sections that feed a method take its defaults from it (:mod:`lrpkit.config`);
* the explorer builds its widgets from it (dropdowns for :class:`Options`, bounded numeric boxes
  for :class:`Interval`, an "auto" toggle where ``None`` is allowed);
* the tests generate bad values from it (:meth:`Constraint.bad_values`).

::

    @declare(variant=Options("sampling", "mean"), window=Interval(int, 1, None),
             batch_size=[Interval(int, 1, None), None])
    def prediction_difference(model, x, target, *, variant="sampling", window=10, batch_size=None):
        ...

A constraint is one :class:`Constraint` or a list of them (any may hold); ``None`` in the list
means the parameter may be ``None`` ("auto").  This module imports nothing heavy.
"""
from __future__ import annotations

import functools
import inspect
import math
import numbers
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Constraint", "Options", "Interval", "InstanceOf", "Boolean", "IsCallable",
           "Param", "InvalidParameterError", "declare", "forwards", "parameters", "validate"]

_ATTR = "__lrpkit_constraints__"


class InvalidParameterError(ValueError, TypeError):
    """A parameter value its declaration does not accept (a ``ValueError`` and a ``TypeError``)."""


class Constraint:
    """One accepted kind of value."""

    def accepts(self, value: Any) -> bool:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def bad_values(self) -> list[Any]:
        """Values this constraint rejects (for tests that walk every declaration)."""
        return []

    def __repr__(self) -> str:
        return f"<{self.describe()}>"


class Options(Constraint):
    """One of a closed set of values (strings, usually).

    ``values`` may be given directly or as one zero-argument callable returning them, read on
    use, so that the set follows the table it comes from (e.g. the LRP composite presets).
    """

    def __init__(self, *values: Any):
        if len(values) == 1 and callable(values[0]):
            self._get: Callable[[], Iterable[Any]] = values[0]
        else:
            frozen = tuple(values)
            self._get = lambda: frozen

    @property
    def choices(self) -> tuple:
        return tuple(self._get())

    def accepts(self, value: Any) -> bool:
        try:
            return any(value == c and type(value) is type(c) for c in self.choices)
        except TypeError:  # unhashable / tensor comparisons
            return False

    def describe(self) -> str:
        return "one of " + ", ".join(repr(c) for c in self.choices)

    def bad_values(self) -> list[Any]:
        return ["__not_an_option__"]


class Interval(Constraint):
    """A number of ``kind`` (``int`` or ``float``) in an interval; ``None`` bound: unbounded.

    ``closed``: ``"both"`` (default), ``"left"``, ``"right"`` or ``"neither"``.  Integers are
    accepted where floats are; booleans, NaN and infinities never are.
    """

    def __init__(self, kind: type, low: float | None = None, high: float | None = None,
                 closed: str = "both"):
        if kind not in (int, float):
            raise ValueError(f"Interval kind must be int or float, got {kind!r}")
        if closed not in ("both", "left", "right", "neither"):
            raise ValueError(f"closed must be 'both', 'left', 'right' or 'neither', got {closed!r}")
        self.kind, self.low, self.high, self.closed = kind, low, high, closed

    def _is_kind(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return False
        if self.kind is int:
            return isinstance(value, numbers.Integral)
        return math.isfinite(value)

    def accepts(self, value: Any) -> bool:
        if not self._is_kind(value):
            return False
        lo_ok = self.low is None or (value >= self.low if self.closed in ("both", "left")
                                     else value > self.low)
        hi_ok = self.high is None or (value <= self.high if self.closed in ("both", "right")
                                      else value < self.high)
        return bool(lo_ok and hi_ok)

    def describe(self) -> str:
        left = "[" if self.closed in ("both", "left") and self.low is not None else "("
        right = "]" if self.closed in ("both", "right") and self.high is not None else ")"
        kind = "an int" if self.kind is int else "a float"
        if self.low is None and self.high is None:
            return kind
        lo = "-inf" if self.low is None else f"{self.low:g}"
        hi = "inf" if self.high is None else f"{self.high:g}"
        return f"{kind} in {left}{lo}, {hi}{right}"

    def bad_values(self) -> list[Any]:
        bad: list[Any] = ["a", float("nan")]
        if self.low is not None:
            bad.append(self.low - 1 if self.closed in ("both", "left") else self.low)
        if self.high is not None:
            bad.append(self.high + 1 if self.closed in ("both", "right") else self.high)
        if self.kind is int:
            bad.append(1.5)
        return bad


class InstanceOf(Constraint):
    """An instance of one of ``types`` (given as classes, or as one zero-argument callable
    returning them, for types whose module is heavy to import)."""

    def __init__(self, *types: Any, name: str | None = None):
        self._types = types
        self.name = name

    @property
    def types(self) -> tuple:
        t = self._types
        if len(t) == 1 and inspect.isfunction(t[0]):
            t = tuple(t[0]())
        return tuple(t)

    def accepts(self, value: Any) -> bool:
        return isinstance(value, self.types) and not (isinstance(value, bool)
                                                      and bool not in self.types)

    def describe(self) -> str:
        return self.name or ("an instance of " + " or ".join(t.__name__ for t in self.types))

    def bad_values(self) -> list[Any]:
        return [object()]


class Boolean(Constraint):
    """``True`` or ``False`` (numpy booleans too)."""

    def accepts(self, value: Any) -> bool:
        return isinstance(value, bool) or type(value).__name__ == "bool_"

    def describe(self) -> str:
        return "a bool"

    def bad_values(self) -> list[Any]:
        return ["yes"]


class IsCallable(Constraint):
    """A callable (e.g. a progress callback)."""

    def accepts(self, value: Any) -> bool:
        return callable(value)

    def describe(self) -> str:
        return "a callable"

    def bad_values(self) -> list[Any]:
        return [3.5]


def _as_constraints(spec: Any) -> tuple:
    items = list(spec) if isinstance(spec, (list, tuple)) else [spec]
    for c in items:
        if c is not None and not isinstance(c, Constraint):
            raise TypeError(f"a constraint must be a Constraint or None, got {c!r}")
    return tuple(items)


@dataclass(frozen=True)
class Param:
    """One declared parameter: its name, default and accepted values."""

    name: str
    default: Any
    constraints: tuple

    @property
    def optional(self) -> bool:
        """``None`` ("auto") is accepted."""
        return None in self.constraints

    def find(self, kind: type) -> Any:
        """The first constraint of ``kind`` (e.g. :class:`Options`), else ``None``."""
        return next((c for c in self.constraints if isinstance(c, kind)), None)

    @property
    def choices(self) -> tuple | None:
        opt = self.find(Options)
        return None if opt is None else opt.choices

    def accepts(self, value: Any) -> bool:
        if value is None:
            return self.optional
        return any(c is not None and c.accepts(value) for c in self.constraints)

    def describe(self) -> str:
        parts = [c.describe() for c in self.constraints if c is not None]
        if self.optional:
            parts.append("None")
        return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " or " + parts[-1]

    def check(self, value: Any, owner: str = "") -> Any:
        """``value`` if accepted, else :class:`InvalidParameterError` naming this parameter."""
        if not self.accepts(value):
            where = f"{owner}: " if owner else ""
            got = repr(value) if len(repr(value)) < 80 else f"a {type(value).__name__}"
            raise InvalidParameterError(
                f"{where}parameter {self.name!r} must be {self.describe()}; got {got} "
                f"({type(value).__name__})")
        return value

    def bad_values(self) -> list[Any]:
        """Values this declaration rejects (for the tests)."""
        out = [v for c in self.constraints if c is not None for v in c.bad_values()]
        if not self.optional:
            out.append(None)
        return [v for v in out if not self.accepts(v)]


#: the call arguments of a method (``f(model, x, target, **params)``) and ``self``: not parameters
CALL_ARGS = ("self", "model", "x", "target")


def _declared_params(sig: inspect.Signature) -> list[inspect.Parameter]:
    return [p for p in sig.parameters.values()
            if p.default is not inspect.Parameter.empty and p.name not in CALL_ARGS
            and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


def parameters(func: Callable) -> dict[str, Param]:
    """The declared parameters of ``func``: every parameter with a default, with its
    constraints (from :func:`declare`)."""
    cons = getattr(func, _ATTR, None)
    if cons is None:
        raise TypeError(f"{getattr(func, '__qualname__', func)!r} has no parameter declaration "
                        f"(decorate it with lrpkit.params.declare)")
    sig = inspect.signature(func)
    return {p.name: Param(p.name, p.default, cons[p.name]) for p in _declared_params(sig)}


def validate(params: Mapping[str, Param], values: Mapping[str, Any], owner: str = "") -> None:
    """Check ``values`` against ``params``: unknown names and rejected values raise
    :class:`InvalidParameterError` naming them."""
    unknown = [k for k in values if k not in params]
    if unknown:
        raise InvalidParameterError(
            f"{owner + ': ' if owner else ''}unknown parameter(s) {sorted(unknown)}; "
            f"it takes {sorted(params)}")
    for k, v in values.items():
        params[k].check(v, owner)


def declare(**constraints: Any) -> Callable:
    """Decorator: declare the constraint of each parameter with a default of the function.

    Every parameter with a default must be declared (and only those); the decorated function
    validates each call's values for them.  Works on functions and on ``__init__``.
    """
    def deco(func: Callable) -> Callable:
        sig = inspect.signature(func)
        names = [p.name for p in _declared_params(sig)]
        missing = [n for n in names if n not in constraints]
        extra = [n for n in constraints if n not in names]
        if missing or extra:
            raise TypeError(f"declare on {func.__qualname__}: undeclared parameter(s) {missing}, "
                            f"declared but not parameters {extra}")
        cons = {k: _as_constraints(v) for k, v in constraints.items()}
        params = {p.name: Param(p.name, p.default, cons[p.name]) for p in _declared_params(sig)}
        for p in params.values():   # a default the declaration rejects is a bug in the declaration
            if not p.accepts(p.default) and not p.find(InstanceOf):
                raise TypeError(f"declare on {func.__qualname__}: default of {p.name!r} "
                                f"({p.default!r}) is not {p.describe()}")
        owner = func.__qualname__.replace(".__init__", "")

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            bound = sig.bind_partial(*args, **kwargs).arguments
            for name, value in bound.items():
                p = params.get(name)
                if p is not None and value is not p.default:
                    p.check(value, owner)
            return func(*args, **kwargs)

        setattr(wrapper, _ATTR, cons)
        return wrapper

    return deco


def forwards(target: Callable, *, skip: Sequence[str] = ()) -> Callable:
    """Decorator for a thin adapter ``f(model, x, target, *, own..., **kw)`` that passes ``kw``
    on to ``target``: ``f``'s signature and declaration become its own keyword-only parameters
    plus ``target``'s declared ones (less ``skip``), so the adapter restates nothing.

    ``f`` must already carry a :func:`declare` for its own parameters (possibly none).
    """
    def deco(func: Callable) -> Callable:
        own_sig = inspect.signature(func)
        own = [p for p in own_sig.parameters.values() if p.kind is not p.VAR_KEYWORD]
        tparams = parameters(target)
        names = {p.name for p in own}
        extra = [inspect.Parameter(p.name, inspect.Parameter.KEYWORD_ONLY, default=p.default)
                 for p in tparams.values() if p.name not in names and p.name not in skip]
        func.__signature__ = own_sig.replace(parameters=[*own, *extra])
        cons = dict(getattr(func, _ATTR, {}))
        cons.update({p.name: tparams[p.name].constraints for p in extra})
        setattr(func, _ATTR, cons)
        return func

    return deco
