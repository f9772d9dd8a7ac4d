"""One activation set (lrpkit._activations) for the gradient baselines and the FGVis defence.

Hand-worked nets ``x (2) -> W1 (4 units, biases) -> act -> W2 (2 classes, biases)``, target 0
(not the arg-max), one net per activation kind and per module / functional form:
deconvnet and guided backprop apply their rule to every rectifier (ReLU6, clamps as ReLU) and
name the other activations they back-propagate as the gradient; the defence of Wagner et al.
2019 (eq. 4-6) gates the gradient after every activation, on both sides of the bound.
"""
from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

import lrpkit
from lrpkit import _activations as acts
from lrpkit.fgvis import NONLINEARITIES, Defence
from lrpkit.lrp.baselines import RECTIFIERS, GradientFallbackWarning

torch.set_num_threads(1)

# z = W1 x + b1 at x = [1, 2]: [-0.5 (off), 1 (on), 7 (above 6), 2 (on)]
W1 = torch.tensor([[1.0, -1.0], [3.0, -0.5], [1.0, 1.0], [0.5, 1.0]])
B1 = torch.tensor([0.5, -1.0, 4.0, -0.5])
W2 = torch.tensor([[1.0, 1.0, -0.5, -2.0], [2.0, -1.0, 1.0, 0.5]])
B2 = torch.tensor([0.1, 0.2])
X = torch.tensor([1.0, 2.0]).reshape(1, 2, 1, 1)
Z = torch.tensor([-0.5, 1.0, 7.0, 2.0])


class Net(nn.Module):
    """Flatten -> Linear(2, 4) -> act -> Linear(4, 2); ``act`` a module or a function."""

    def __init__(self, act):
        super().__init__()
        self.a, self.b = nn.Linear(2, 4), nn.Linear(4, 2)
        self.act = act
        with torch.no_grad():
            self.a.weight.copy_(W1)
            self.a.bias.copy_(B1)
            self.b.weight.copy_(W2)
            self.b.bias.copy_(B2)

    def forward(self, x):
        return self.b(self.act(self.a(x.flatten(1))))


def explain(net, method, **kw):
    return lrpkit.explain(net, X, 0, method=method, **kw).reshape(-1)


RELU6_FORMS = {
    "nn.ReLU6": lambda: nn.ReLU6(),
    "nn.ReLU6(inplace)": lambda: nn.ReLU6(inplace=True),
    "nn.Hardtanh(0, 6)": lambda: nn.Hardtanh(0.0, 6.0),
    "F.relu6": lambda: F.relu6,
    "F.hardtanh": lambda: (lambda z: F.hardtanh(z, 0.0, 6.0)),
    "Tensor.clamp": lambda: (lambda z: z.clamp(0, 6)),
    "torch.clamp(min=, max=)": lambda: (lambda z: torch.clamp(z, min=0.0, max=6.0)),
    "torch.clip": lambda: (lambda z: torch.clip(z, 0, 6)),
    "Tensor.clamp_ (in place)": lambda: (lambda z: z.clamp_(0, 6)),
}
RELU_FORMS = {
    "nn.ReLU": lambda: nn.ReLU(),
    "nn.ReLU(inplace)": lambda: nn.ReLU(inplace=True),
    "F.relu": lambda: F.relu,
    "torch.relu_": lambda: torch.relu_,
    "Tensor.clamp(min=0)": lambda: (lambda z: z.clamp(min=0)),
    "Tensor.clamp_min": lambda: (lambda z: z.clamp_min(0)),
    "nn.Threshold(0, 0)": lambda: nn.Threshold(0.0, 0.0),
}


def _by_hand(switch):
    """Gradient, guided backprop and deconvnet of class 0 for a rectifier with ``switch``."""
    g = W2[0]
    return {"gradient": W1.T @ (switch * g), "guided_backprop": W1.T @ (switch * g.clamp(min=0)),
            "deconvnet": W1.T @ g.clamp(min=0)}


@pytest.mark.parametrize("form", list(RELU6_FORMS))
def test_relu6_and_clamps_get_the_rectifier_rules(form):
    net = Net(RELU6_FORMS[form]())
    with torch.no_grad():
        out = net(X)
    assert out.argmax(1).item() == 1                 # the target, 0, is not the arg-max
    # ReLU6 switch 1{0 < z < 6} = [0, 1, 0, 1]; g = W2[0] = [1, 1, -.5, -2]
    want = _by_hand(torch.tensor([0.0, 1.0, 0.0, 1.0]))
    torch.testing.assert_close(want["gradient"], torch.tensor([2.0, -2.5]))
    torch.testing.assert_close(want["guided_backprop"], torch.tensor([3.0, -0.5]))
    torch.testing.assert_close(want["deconvnet"], torch.tensor([4.0, -1.5]))
    with warnings.catch_warnings():
        warnings.simplefilter("error", GradientFallbackWarning)   # rectifiers only: no warning
        torch.testing.assert_close(explain(net, "sensitivity", norm=None), want["gradient"])
        torch.testing.assert_close(explain(net, "gradient_x_input"),
                                   X.reshape(-1) * want["gradient"])
        torch.testing.assert_close(explain(net, "guided_backprop"), want["guided_backprop"])
        torch.testing.assert_close(explain(net, "deconvnet", norm=None), want["deconvnet"])


@pytest.mark.parametrize("form", list(RELU_FORMS))
def test_relu_forms_get_the_rectifier_rules(form):
    net = Net(RELU_FORMS[form]())
    want = _by_hand(torch.tensor([0.0, 1.0, 1.0, 1.0]))       # 1{z > 0}
    torch.testing.assert_close(want["gradient"], torch.tensor([1.5, -3.0]))
    with warnings.catch_warnings():
        warnings.simplefilter("error", GradientFallbackWarning)
        torch.testing.assert_close(explain(net, "sensitivity", norm=None), want["gradient"])
        torch.testing.assert_close(explain(net, "guided_backprop"), want["guided_backprop"])
        torch.testing.assert_close(explain(net, "deconvnet", norm=None), want["deconvnet"])


def _silu_d(z):
    s = torch.sigmoid(z)
    return s * (1 + z * (1 - s))


def _gelu_d(z):
    return 0.5 * (1 + torch.erf(z / math.sqrt(2))) + z * torch.exp(-z ** 2 / 2) / math.sqrt(2 * math.pi)


def _hardswish_d(z):
    return torch.where(z < -3, 0.0, torch.where(z > 3, 1.0, (2 * z + 3) / 6))


SMOOTH = {
    "nn.SiLU": (lambda: nn.SiLU(), "SiLU", _silu_d),
    "F.silu": (lambda: F.silu, "SiLU", _silu_d),
    "nn.GELU": (lambda: nn.GELU(), "GELU", _gelu_d),
    "F.gelu": (lambda: F.gelu, "GELU", _gelu_d),
    "nn.Hardswish": (lambda: nn.Hardswish(), "Hardswish", _hardswish_d),
    "nn.Sigmoid": (lambda: nn.Sigmoid(), "Sigmoid", lambda z: torch.sigmoid(z) * (1 - torch.sigmoid(z))),
    "nn.LeakyReLU(0.1)": (lambda: nn.LeakyReLU(0.1), "LeakyReLU", lambda z: torch.where(z > 0, 1.0, 0.1)),
}


@pytest.mark.parametrize("form", list(SMOOTH))
def test_smooth_activations_are_the_gradient_and_named_in_a_warning(form):
    make, name, deriv = SMOOTH[form]
    net = Net(make())
    grad = W1.T @ (deriv(Z) * W2[0])                 # closed-form derivative of the activation
    torch.testing.assert_close(explain(net, "sensitivity", norm=None), grad)
    for method in ("deconvnet", "guided_backprop"):
        with pytest.warns(GradientFallbackWarning, match=rf"{method}: .*{name} \(1x\)"):
            torch.testing.assert_close(explain(net, method, norm=None), grad)


def test_mixed_net_rule_at_relu6_gradient_at_silu():
    # x -> W1 -> ReLU6 -> V (2 units) -> SiLU -> U -> out; target 0
    V = torch.tensor([[1.0, -2.0, 0.5, 1.0], [-1.0, 0.5, 1.0, -0.5]])
    c = torch.tensor([0.3, -0.2])
    U = torch.tensor([[1.5, -1.0], [-0.5, 2.0]])
    net = nn.Sequential(nn.Flatten(), nn.Linear(2, 4), nn.ReLU6(), nn.Linear(4, 2), nn.SiLU(),
                        nn.Linear(2, 2))
    with torch.no_grad():
        net[1].weight.copy_(W1), net[1].bias.copy_(B1)
        net[3].weight.copy_(V), net[3].bias.copy_(c)
        net[5].weight.copy_(U), net[5].bias.zero_()
    h = Z.clamp(0, 6)
    u = V @ h + c
    g_h = V.T @ (_silu_d(u) * U[0])                  # the signal arriving at ReLU6's output
    s = torch.tensor([0.0, 1.0, 0.0, 1.0])
    assert (g_h * s < 0).any() and (g_h * s > 0).any()   # guided and gradient differ here
    with pytest.warns(GradientFallbackWarning, match="SiLU"):
        torch.testing.assert_close(explain(net, "guided_backprop"), W1.T @ (s * g_h.clamp(min=0)))
    with pytest.warns(GradientFallbackWarning, match="SiLU"):
        torch.testing.assert_close(explain(net, "deconvnet", norm=None), W1.T @ g_h.clamp(min=0))


# ------------------------------------------------------------------- the one declaration
class _Calls(TorchFunctionMode):
    def __init__(self):
        super().__init__()
        self.funcs = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.funcs.append(func)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("act", acts.ACTIVATIONS, ids=lambda a: a.name)
def test_every_declared_module_dispatches_to_a_declared_function_of_its_kind(act):
    for cls in act.modules:
        mod = cls(0.0, 0.0) if cls is nn.Threshold else cls()
        assert acts.activation_of(mod) is act
        rec = _Calls()
        with rec:
            mod(torch.randn(3, 4))
        hits = [acts.FUNCTIONS[f] for f in rec.funcs if f in acts.FUNCTIONS]
        assert len(hits) == 1 and hits[0].kind == act.kind, (cls, rec.funcs)


def test_one_set_for_baselines_and_defence():
    assert NONLINEARITIES == frozenset(acts.FUNCTIONS)
    assert RECTIFIERS == acts.functions_of("rectifier") and RECTIFIERS < NONLINEARITIES
    assert acts.activation_of(nn.ReLU6()).name == "ReLU6"           # before its base Hardtanh
    assert acts.activation_of(F.gelu).kind == "gated"
    assert acts.activation_of(nn.Linear(1, 1)) is None and acts.activation_of(torch.add) is None
    with pytest.raises(ValueError, match="kind"):
        acts.functions_of("smooth")


@pytest.mark.parametrize("call", [
    (torch.relu_, (), {}), (torch.Tensor.clamp_, (0.0, 0.5), {}), (F.relu, (), {"inplace": True}),
    (F.hardtanh_, (-0.2, 0.2), {}), (F.silu, (), {"inplace": True}), (torch.Tensor.sigmoid_, (), {}),
    (F.leaky_relu_, (0.2,), {}), (F.relu6, (), {"inplace": True})])
def test_out_of_place_leaves_the_input_and_gives_the_same_values(call):
    func, rest, kw = call
    z = torch.randn(5, generator=torch.Generator().manual_seed(0))
    keep = z.clone()
    y = acts.out_of_place(func, (z, *rest), kw)
    assert torch.equal(z, keep)
    assert torch.equal(y, func(keep.clone(), *rest, **kw))


# ------------------------------------------------------------------ the defence (eq. 4-6)
def gate_net(act):
    """e (1, 1, 1, 1) -> act(e) -> 2 act(e) + 0.1: the activation's input is the pixel."""
    net = nn.Sequential(nn.Flatten(), nn.Identity(), nn.Linear(1, 1))
    net[1] = act if isinstance(act, nn.Module) else _Fn(act)
    with torch.no_grad():
        net[2].weight.fill_(2.0)
        net[2].bias.fill_(0.1)
    return net


class _Fn(nn.Module):
    def __init__(self, f):
        super().__init__()
        self.f = f

    def forward(self, z):
        return self.f(z)


def _grad(net, v, d=None):
    e = torch.tensor([float(v)]).reshape(1, 1, 1, 1).requires_grad_(True)
    if d is None:
        out = net(e)
    else:
        with d.clip():
            out = net(e)
    (g,) = torch.autograd.grad(out.sum(), e)
    return g.item()


DEFENCE_ACTS = {"nn.ReLU6": nn.ReLU6(), "F.relu6": F.relu6, "clamp(0, 6)": lambda z: z.clamp(0, 6),
                "nn.SiLU": nn.SiLU(), "F.silu": F.silu, "nn.GELU": nn.GELU(), "F.gelu": F.gelu,
                "nn.Hardswish": nn.Hardswish(), "F.hardswish": F.hardswish, "nn.Tanh": nn.Tanh(),
                "nn.Mish": nn.Mish()}


@pytest.mark.parametrize("name", list(DEFENCE_ACTS))
@pytest.mark.parametrize("x0", [2.0, -1.0], ids=["positive h(x)", "negative h(x)"])
def test_defence_gates_every_activation_kind_on_both_sides(name, x0):
    act = DEFENCE_ACTS[name]
    f = act if not isinstance(act, nn.Module) else act.forward
    net = gate_net(act)
    hx = f(torch.tensor(x0)).item()
    if name in ("nn.ReLU6", "F.relu6", "clamp(0, 6)") and x0 < 0:
        pytest.skip("h(x) = 0: the bound [0, 0] is the ReLU case")
    lo, hi = min(0.0, hx), max(0.0, hx)
    d = Defence(net)
    d.record(torch.tensor([x0]).reshape(1, 1, 1, 1))
    assert d.n_nonlinearities == 1
    seen = set()
    for v in (-3.0, -1.28, -0.6, -0.3, 0.0, 0.5, 1.0, 1.9, 2.5, 4.0):
        he = f(torch.tensor(v)).item()
        free, held = _grad(net, v), _grad(net, v, d)
        inside = lo <= he <= hi
        assert held == (free if inside else 0.0), (v, he, (lo, hi))
        if free != 0.0:
            seen.add(inside)
    assert seen == {True, False}                   # both outcomes exercised, with a gradient


def test_defence_positive_side_by_hand_silu_and_tanh():
    # SiLU, x = 1: h(x) = 0.731, bound [0, 0.731]; tanh, x = 1: bound [0, 0.762]
    for act, cases in ((nn.SiLU(), ((0.5, True), (0.0, True), (1.2, False), (-0.5, False))),
                       (nn.Tanh(), ((0.5, True), (0.9, True), (1.5, False), (-0.3, False)))):
        net = gate_net(act)
        d = Defence(net)
        d.record(torch.tensor([1.0]).reshape(1, 1, 1, 1))
        for v, passes in cases:
            assert (_grad(net, v, d) != 0.0) == passes, (act, v)
            assert _grad(net, v) != 0.0


def test_defence_skips_clamps_of_integer_tensors():
    class Idx(nn.Module):
        def forward(self, x):
            k = torch.arange(3).clamp(0, 1)           # integer bookkeeping, not a neuron
            return torch.relu(x.flatten(1))[:, k]

    d = Defence(Idx())
    d.record(torch.randn(1, 2, 1, 1))
    assert d.n_nonlinearities == 1
