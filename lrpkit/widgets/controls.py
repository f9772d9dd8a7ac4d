"""Parameter widgets built from a method's declaration (:mod:`lrpkit.params`).

Each declared parameter (:attr:`lrpkit.explain.Method.parameters`) gets the widget its
constraints call for, so the explorer restates no choice, bound or default:

* :class:`~lrpkit.params.Options` -> a drop-down of exactly those choices (``None`` among them
  when the parameter accepts it, e.g. the gradient baselines' ``norm``);
* :class:`~lrpkit.params.Boolean` -> a check box;
* :class:`~lrpkit.params.Interval` -> a bounded int / float box (an unbounded float: a float
  box); values the box lets through but the interval excludes (an open bound) are rejected by
  :meth:`ParamForm.values` with the declaration's message;
* a layer / module name (``InstanceOf(str)``, LRP's ``cutoff``, Grad-CAM's ``layer``) -> a
  drop-down of the model's module names, when the model is known;
* anything else (patch models, rule mappings, tensors, callbacks) -> no widget: such values
  come from the config / pipeline or stay at the default.

An optional numeric or name parameter (``None`` accepted) gets an "auto" toggle beside its
box: ticked, the value is ``None`` and the box is disabled.  No free-text box exists.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import ipywidgets as W

from ..params import Boolean, InstanceOf, Interval, Param

__all__ = ["ParamControl", "ParamForm", "build_control", "INT_LIMIT", "FLOAT_LIMIT"]

#: the bound shown for an unbounded side of an interval
INT_LIMIT = 2 ** 31 - 1
FLOAT_LIMIT = 1e12

_DESC = {"style": {"description_width": "110px"}}


class _NoneChoice:
    """The drop-down entry for ``None`` (a Dropdown reads a ``None`` value as "no selection")."""

    def __repr__(self) -> str:
        return "None"


_NONE = _NoneChoice()


def _numeric(p: Param) -> Interval | None:
    return p.find(Interval)


def _is_name(p: Param) -> bool:
    c = p.find(InstanceOf)
    return c is not None and str in c.types


def _placeholder(iv: Interval) -> float:
    """A value inside the interval for a box whose parameter starts as ``None`` (auto)."""
    lo, hi = iv.low, iv.high
    if lo is not None and hi is not None:
        v = (lo + hi) / 2
    elif lo is not None:
        v = lo if iv.closed in ("both", "left") else lo + 1
    elif hi is not None:
        v = hi if iv.closed in ("both", "right") else hi - 1
    else:
        v = 0
    return int(v) if iv.kind is int else float(v)


class ParamControl:
    """The widget of one declared parameter; :attr:`value` is the parameter's value."""

    def __init__(self, param: Param, value: Any, *, layer_names: Sequence[str] = ()) -> None:
        self.param = param
        self.auto: W.Checkbox | None = None
        name = param.name
        lay = W.Layout(width="250px")
        choices = param.choices
        iv = _numeric(param)
        if choices is not None:
            opts = [(str(c), c) for c in choices]
            if param.optional:
                opts.append(("None", _NONE))
            start = _NONE if value is None else value
            if not any(start is v or (start == v and type(start) is type(v)) for _, v in opts):
                opts.append((repr(value), value))       # a config value outside the choices
            self.input = W.Dropdown(options=opts, value=start, description=name, layout=lay,
                                    **_DESC)
        elif param.find(Boolean) is not None:
            self.input = W.Checkbox(value=bool(value), description=name, indent=False,
                                    layout=W.Layout(width="250px"))
        elif iv is not None:
            start = value if value is not None else _placeholder(iv)
            if iv.kind is int:
                lo = -INT_LIMIT if iv.low is None else int(iv.low) + (iv.closed in ("right", "neither"))
                hi = INT_LIMIT if iv.high is None else int(iv.high) - (iv.closed in ("left", "neither"))
                self.input = W.BoundedIntText(value=int(start), min=lo, max=hi, description=name,
                                              layout=lay, **_DESC)
            elif iv.low is None and iv.high is None:
                self.input = W.FloatText(value=float(start), description=name, layout=lay, **_DESC)
            else:
                lo = -FLOAT_LIMIT if iv.low is None else float(iv.low)
                hi = FLOAT_LIMIT if iv.high is None else float(iv.high)
                self.input = W.BoundedFloatText(value=float(start), min=lo, max=hi, description=name,
                                                layout=lay, **_DESC)
        elif _is_name(param) and layer_names:
            opts = list(layer_names)
            start = value if value is not None else opts[-1]
            if start not in opts:
                opts.append(start)
            self.input = W.Dropdown(options=opts, value=start, description=name, layout=lay, **_DESC)
        else:
            raise TypeError(f"parameter {name!r} ({param.describe()}) has no widget")
        if param.optional and choices is None:
            self.auto = W.Checkbox(value=value is None, description="auto", indent=False,
                                   layout=W.Layout(width="60px"),
                                   tooltip=f"{name} = None (the method's own choice)")
            self.input.disabled = self.auto.value
            self.auto.observe(lambda c: setattr(self.input, "disabled", c["new"]), "value")
            self.widget = W.HBox([self.input, self.auto])
        else:
            self.widget = self.input
        self.widget.add_class(f"lrpkit-param-{name}")

    @property
    def name(self) -> str:
        return self.param.name

    @property
    def value(self) -> Any:
        if self.auto is not None and self.auto.value:
            return None
        v = self.input.value
        return None if v is _NONE else v

    @value.setter
    def value(self, v: Any) -> None:
        if self.auto is not None:
            self.auto.value = v is None
            if v is None:
                return
        elif v is None and isinstance(self.input, W.Dropdown):
            v = _NONE
        self.input.value = v

    def observe(self, fn: Callable[[Any], Any]) -> None:
        """Call ``fn(change)`` whenever the value changes (box or auto toggle)."""
        self.input.observe(fn, "value")
        if self.auto is not None:
            self.auto.observe(fn, "value")


def build_control(param: Param, value: Any = ..., *,
                  layer_names: Sequence[str] = ()) -> ParamControl | None:
    """The control of ``param`` starting at ``value`` (default: its declared default), or
    ``None`` for a parameter that gets no widget (see the module doc)."""
    value = param.default if value is ... else value
    has_widget = (param.choices is not None or param.find(Boolean) is not None
                  or _numeric(param) is not None or (_is_name(param) and bool(layer_names)))
    if not has_widget:
        return None
    if param.find(Boolean) is not None and param.choices is None and not isinstance(value, bool):
        return None          # e.g. LRP's canonize given as a list of canonizers: kept as it is
    if (param.choices is None and param.find(Boolean) is None and _numeric(param) is not None
            and value is not None and not _numeric(param).accepts(value)):
        return None          # e.g. a tensor bound: kept as it is
    return ParamControl(param, value, layer_names=layer_names)


class ParamForm:
    """The controls of one registered method, started at ``values`` (missing: the declared
    defaults).  Parameters without a control keep their value from ``values``."""

    def __init__(self, method: Any, values: Mapping[str, Any] | None = None, *,
                 layer_names: Sequence[str] = (), skip: Sequence[str] = ("progress",)) -> None:
        self.method = method
        values = dict(values or {})
        self.controls: dict[str, ParamControl] = {}
        self.fixed: dict[str, Any] = {}
        for name, p in method.parameters.items():
            if name in skip:
                continue
            v = values.get(name, p.default)
            c = build_control(p, v, layer_names=layer_names)
            if c is None:
                if v is not p.default:
                    self.fixed[name] = v
            else:
                self.controls[name] = c
        self.widget = W.VBox([c.widget for c in self.controls.values()])

    def __getitem__(self, name: str) -> ParamControl:
        return self.controls[name]

    def values(self) -> dict[str, Any]:
        """The parameters for :func:`lrpkit.explain`, each checked against its declaration
        (:class:`~lrpkit.params.InvalidParameterError` naming the first rejected one)."""
        out = dict(self.fixed)
        for name, c in self.controls.items():
            out[name] = c.param.check(c.value, owner=f"method {self.method.name!r}")
        return out

    def observe(self, fn: Callable[[Any], Any]) -> None:
        for c in self.controls.values():
            c.observe(fn)
