"""One declaration per method parameter (lrpkit.params): every registered method's parameters
reach its function, and every constraint rejects a bad value with a message naming it."""
from __future__ import annotations

import inspect

import pytest
import torch
from torch import nn

import lrpkit
from lrpkit import registry as registry_mod
from lrpkit.params import (Boolean, InstanceOf, Interval, InvalidParameterError, IsCallable,
                           Options, Param, declare, forwards, parameters, validate)


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(4, 3)).eval()


def _x() -> torch.Tensor:
    return torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(1))


# -- the constraint types -------------------------------------------------------------------
def test_interval_bounds_kinds_and_closedness():
    i = Interval(int, 1, 5)
    assert i.accepts(1) and i.accepts(5) and not i.accepts(0) and not i.accepts(6)
    assert not i.accepts(2.0) and not i.accepts(True) and not i.accepts("3")
    f = Interval(float, 0, 1, closed="neither")
    assert f.accepts(0.5) and f.accepts(1 // 2 + 0.25) and not f.accepts(0) and not f.accepts(1)
    assert f.accepts(True is False or 0.999)
    assert not Interval(float).accepts(float("nan")) and not Interval(float).accepts(float("inf"))
    assert Interval(float, 0, None).accepts(3)           # ints are floats here
    assert Interval(float, 0, None, closed="neither").describe() == "a float in (0, inf)"
    assert Interval(int).describe() == "an int"
    for bad in Interval(int, 1, 5).bad_values():
        assert not Interval(int, 1, 5).accepts(bad)
    with pytest.raises(ValueError):
        Interval(str)


def test_options_are_read_on_use_and_typed():
    table = ["a"]
    o = Options(lambda: table)
    assert o.accepts("a") and not o.accepts("b")
    table.append("b")
    assert o.accepts("b") and o.choices == ("a", "b")
    assert not Options(1, 2).accepts(True)              # True == 1, but not the same type
    assert not Options("a").accepts(torch.zeros(2))     # a tensor is no option


def test_param_describes_and_names_itself():
    p = Param("steps", 100, (Interval(int, 1, None), None))
    assert p.optional and p.accepts(None) and p.accepts(3) and not p.accepts(0)
    with pytest.raises(InvalidParameterError, match=r"f: parameter 'steps' must be an int in "
                                                    r"\[1, inf\) or None; got 0"):
        p.check(0, owner="f")
    q = Param("norm", "l2", (Options("l2", "linf"),))
    assert None in q.bad_values() and "__not_an_option__" in q.bad_values()
    assert InvalidParameterError.__mro__[1:3] == (ValueError, TypeError)


def test_declare_validates_calls_and_requires_every_parameter():
    @declare(k=Interval(int, 1, None), mode=Options("a", "b"))
    def f(model, x, target="pred", *, k=3, mode="a"):
        return k, mode

    assert f(None, None, k=5) == (5, "a")
    with pytest.raises(InvalidParameterError, match="'k'"):
        f(None, None, k=0)
    with pytest.raises(InvalidParameterError, match="'mode'"):
        f(None, None, 1, mode="c")
    assert set(parameters(f)) == {"k", "mode"}          # model, x, target are call arguments
    with pytest.raises(TypeError, match="undeclared"):
        @declare(k=Interval(int))
        def g(model, x, target, *, k=1, j=2):
            return k
    with pytest.raises(TypeError, match="default of 'k'"):
        @declare(k=Interval(int, 1, None))
        def h(model, x, target, *, k=0):
            return k


def test_forwards_composes_signature_and_constraints_without_restating():
    @declare(a=Interval(int, 0, None), b=Boolean())
    def base(model, x, target, *, a=1, b=False):
        return a, b

    @forwards(base)
    @declare(out=Options("x", "y"))
    def adapter(model, x, target, *, out="x", **kw):
        return base(model, x, target, **kw), out

    ps = parameters(adapter)
    assert list(ps) == ["out", "a", "b"] and ps["a"].default == 1
    assert "a" in inspect.signature(adapter).parameters
    with pytest.raises(InvalidParameterError, match="'a'"):
        validate(ps, {"a": -1})
    with pytest.raises(InvalidParameterError, match=r"unknown parameter\(s\) \['c'\]"):
        validate(ps, {"c": 1})


# -- every registered method ----------------------------------------------------------------
METHODS = sorted(lrpkit.methods())


def test_every_registered_method_is_declared():
    assert {"lrp", "pda", "fgvis", "fv_lrp", "sensitivity", "deconvnet", "guided_backprop",
            "gradient_x_input", "occlusion", "gradcam"} <= set(METHODS)
    for name, m in lrpkit.methods().items():
        sig = inspect.signature(m.func)
        for p in m.parameters.values():
            assert p.name in sig.parameters, (name, p.name)
            assert p.constraints, (name, p.name)
            assert p.accepts(p.default) or p.find(InstanceOf), (name, p.name)


@pytest.mark.parametrize("name", METHODS)
def test_each_constraint_rejects_a_bad_value_naming_it(name):
    m = lrpkit.methods()[name]
    model, x = _net(), _x()
    checked = 0
    for p in m.parameters.values():
        for bad in p.bad_values():
            with pytest.raises(InvalidParameterError, match=repr(p.name)):
                lrpkit.explain(model, x, 0, method=name, **{p.name: bad})
            checked += 1
    assert checked >= len(m.parameters)                  # every parameter has a rejected value


@pytest.mark.parametrize("name", METHODS)
def test_each_declared_parameter_reaches_the_function(name, monkeypatch):
    """explain hands every parameter (defaults and overrides) to the registered function."""
    m = lrpkit.methods()[name]
    seen = {}

    def spy(model, x, target, **kw):
        seen.update(kw)
        return torch.zeros_like(x)

    monkeypatch.setitem(registry_mod._REGISTRY, name, type(m)(**{**m.__dict__, "func": spy}))
    override = {}
    for p in m.parameters.values():          # a non-default accepted value where one is easy
        if p.choices and len(p.choices) > 1:
            override[p.name] = next(c for c in p.choices if c != p.default)
        elif p.find(Boolean) and isinstance(p.default, bool):
            override[p.name] = not p.default
    lrpkit.explain(_net(), _x(), 0, method=name, **override)
    assert set(seen) == set(m.parameters)
    for k, v in override.items():
        assert seen[k] == v


def test_fgvis_adapter_passes_every_parameter_to_fgvis(monkeypatch):
    import lrpkit.fgvis as fg

    seen = {}
    real = fg.fgvis

    def spy(model, x, target, **kw):
        seen.update(kw)
        return real(model, x, target, **{**kw, "steps": 1})

    monkeypatch.setattr(fg, "fgvis", spy)
    m = lrpkit.methods()["fgvis"]
    lrpkit.explain(_net(), _x(), 0, method="fgvis", patience=5, goal_score=0.4, blur_sigma=2.0,
                   adapt_lambda=False)
    assert set(seen) == set(m.parameters) - {"output"}
    assert seen["patience"] == 5 and seen["goal_score"] == 0.4 and seen["adapt_lambda"] is False


def test_fgvis_patience_through_explain_works_and_is_used():
    """explain(..., method="fgvis", patience=5) works (it was rejected) and patience is honoured."""
    from lrpkit.fgvis import fgvis

    model, x = _net(), _x()
    m = lrpkit.explain(model, x, 1, method="fgvis", steps=10, patience=5, output="relevance")
    assert m.shape == x.shape and torch.isfinite(m).all()
    short = fgvis(model, x, 1, steps=40, patience=1, patience_tol=10.0).steps_run
    full = fgvis(model, x, 1, steps=40).steps_run
    assert int(full[0]) == 40 and int(short[0]) < 40


def test_lrp_adapter_passes_every_option_to_the_attributor(monkeypatch):
    from lrpkit.lrp import engine

    seen = {}

    class Spy:
        def __init__(self, model, *args, **kw):
            seen.update(kw)

        def __enter__(self):
            return lambda x, t: torch.zeros_like(x)

        def __exit__(self, *a):
            return False

    monkeypatch.setattr(engine, "LRP", Spy)
    lrpkit.explain(_net(), _x(), 0, method="lrp", composite="epsilon", cutoff="0")
    assert set(seen) == set(lrpkit.methods()["lrp"].parameters)
    assert seen["composite"] == "epsilon" and seen["cutoff"] == "0"


def test_lrp_epsilon_string_names_the_parameter():
    with pytest.raises(InvalidParameterError, match="parameter 'epsilon' must be a float"):
        lrpkit.explain(_net(), _x(), 0, method="lrp", epsilon="a")


def test_direct_calls_are_validated_too():
    from lrpkit.pda import prediction_difference

    with pytest.raises(InvalidParameterError, match="'prob'"):
        prediction_difference(_net(), _x(), 0, prob="logit")


# -- config sections take their defaults from the declarations -------------------------------
@pytest.mark.parametrize("section", ["lrp", "pda", "fgvis"])
def test_config_method_sections_read_the_declaration(section):
    cfg = lrpkit.load_config({})
    sec = cfg[section]
    params = lrpkit.methods()[section].parameters
    for k, v in sec.method_params().items():
        assert v == params[k].default
    p = next(p for p in params.values() if p.bad_values() and p.name in sec.method_params())
    with pytest.raises(ValueError, match=f"{section}.{p.name}"):
        lrpkit.load_config({}, **{f"{section}.{p.name}": p.bad_values()[0]})
    with pytest.raises(ValueError, match="unknown key"):
        lrpkit.load_config({}, **{f"{section}.no_such_param": 1})


def test_config_pda_overrides_and_defaults():
    cfg = lrpkit.load_config({}, **{"pda.window": 12})
    assert cfg.pda.overrides() == {"window": 12}
    assert cfg.pda.prob == "softmax" and cfg.pda["window"] == 12 and cfg.pda.outer == 18
    assert cfg.pda.method_params()["window"] == 12
    assert cfg.to_dict()["pda"]["window"] == 12
    cfg.pda.window = 8
    assert cfg.pda.window == 8
    with pytest.raises(ValueError, match="window"):
        cfg.pda.window = 0
    assert IsCallable().accepts(print) and not IsCallable().accepts(3)
