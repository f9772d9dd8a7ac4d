"""LRP rules worked by hand (biases, negative z_j, gamma, batch-norm eps), rule declarations,
the layer table, the preset registry and canonizers."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import lrpkit
from lrpkit.lrp import (COMPOSITES, LRP, PRESETS, AlphaBeta, BatchNormFold, Canonizer,
                        Composite, Epsilon, Flat, Gamma, Pass, ResidualSums, Rule,
                        UnsupportedLayerError, WSquare, ZBox, Zero, ZPlus, get_composite,
                        gradient_x_input, lrp, register_layer)
from lrpkit.lrp.layers import LAYERS, ActivationOp, DenseOp

from nets import skip_net

torch.set_num_threads(1)


def linear_net(w, b=None):
    """x (1, 2, 1, 1) -> Linear(2, 1) with the given weights (and bias)."""
    lin = nn.Linear(2, 1, bias=b is not None)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([w]))
        if b is not None:
            lin.bias.fill_(b)
    return nn.Sequential(nn.Flatten(), lin).eval()


def x2(a, b):
    return torch.tensor([a, b]).reshape(1, 2, 1, 1)


def rel(net, x, rule_or_comp, **kw):
    comp = Composite({"linear": rule_or_comp}) if isinstance(rule_or_comp, Rule) else rule_or_comp
    return lrp(net, x, 0, comp, **kw).reshape(-1)


# ------------------------------------------------------------------ non-zero biases by hand
def two_layer_bias():
    """x = [1, 2] -> W1 = [[1, -1], [2, 1]], b1 = [.5, 1] -> ReLU -> W2 = [1, 2], b2 = .5.

    z1 = [-.5, 5], h = [0, 5], f = 10.5.
    """
    net = nn.Sequential(nn.Flatten(), nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 1))
    with torch.no_grad():
        net[1].weight.copy_(torch.tensor([[1.0, -1.0], [2.0, 1.0]]))
        net[1].bias.copy_(torch.tensor([0.5, 1.0]))
        net[3].weight.copy_(torch.tensor([[1.0, 2.0]]))
        net[3].bias.fill_(0.5)
    return net.eval(), x2(1.0, 2.0)


def test_zplus_with_positive_biases_by_hand():
    # layer 2: z+ = 0*1 + 5*2 + b+ (.5) = 10.5 -> R_h = [0, 10 / 10.5 * 10.5] = [0, 10]
    # layer 1, unit 2 (R = 10): z+ = 1*2 + 2*1 + b+ (1) = 5 -> R_x = [2/5, 2/5] * 10 = [4, 4]
    # (a z+ that drops b+ gives R_h = [0, 10.5] and R_x = [5.25, 5.25])
    net, x = two_layer_bias()
    assert net(x).item() == pytest.approx(10.5)
    torch.testing.assert_close(rel(net, x, ZPlus()), torch.tensor([4.0, 4.0]))


def test_alpha_beta_with_negative_bias_by_hand_both_input_paths():
    # x = [1, 2], w = [3, -1], b = -.5: z = .5, z+ = 3, z- = -2 + b- = -2.5
    # R_x = (2 * [3, 0] / 3 - 1 * [0, -2] / -2.5) * .5 = [1, -.4]  (without b-: [1, -.5])
    net = linear_net([3.0, -1.0], -0.5)
    torch.testing.assert_close(rel(net, x2(1.0, 2.0), AlphaBeta(2, 1)), torch.tensor([1.0, -0.4]))
    # the same contributions from a mixed-sign input: x = [1, -2], w = [3, 1]
    net = linear_net([3.0, 1.0], -0.5)
    torch.testing.assert_close(rel(net, x2(1.0, -2.0), AlphaBeta(2, 1)), torch.tensor([1.0, -0.4]))


def test_alpha_beta_and_zplus_with_positive_bias_by_hand():
    # x = [1, 2], w = [3, -1], b = +.5: z = 1.5, z+ = 3 + .5, z- = -2
    # alpha-beta: [2 * 3 / 3.5 * 1.5, -1 * (-2) / (-2) * 1.5] = [18/7, -1.5]
    net = linear_net([3.0, -1.0], 0.5)
    torch.testing.assert_close(rel(net, x2(1.0, 2.0), AlphaBeta(2, 1)),
                               torch.tensor([18 / 7, -1.5]))
    # z+: [3 / 3.5 * 1.5, 0] = [9/7, 0] (and the same through the mixed-sign path)
    torch.testing.assert_close(rel(net, x2(1.0, 2.0), ZPlus()), torch.tensor([9 / 7, 0.0]))
    net = linear_net([3.0, 1.0], 0.5)
    torch.testing.assert_close(rel(net, x2(1.0, -2.0), ZPlus()), torch.tensor([9 / 7, 0.0]))


# ------------------------------------------------------------------ epsilon, negative z_j
def test_epsilon_with_negative_z_by_hand():
    # x = [1, 2], w = [1, -2], b = .5: z = -2.5, f = R = -2.5; sign(z) = -1, so the
    # denominator is z - eps = -3: R_x = [1, -4] / -3 * -2.5 = [5/6, -10/3]
    # (z + eps would give [1, -4] / -2 * -2.5 = [1.25, -5])
    net = linear_net([1.0, -2.0], 0.5)
    torch.testing.assert_close(rel(net, x2(1.0, 2.0), Epsilon(0.5)), torch.tensor([5 / 6, -10 / 3]))
    # bias-free: z = -3, denominator -3.5: R_x = [1, -4] / -3.5 * -3
    net = linear_net([1.0, -2.0])
    torch.testing.assert_close(rel(net, x2(1.0, 2.0), Epsilon(0.5)),
                               torch.tensor([3 / 3.5, -12 / 3.5]))


def test_epsilon_negative_hidden_unit_by_hand():
    # hidden unit with negative z (no ReLU): x = [1, 2] -> W1 = [[1, -1]] (z1 = -1) -> W2 = [2]
    # f = -2; layer 2: R_h = 2 * -1 / (-2 - .1) * -2; layer 1: R_x = [1, -2] / (-1 - .1) * R_h
    net = nn.Sequential(nn.Flatten(), nn.Linear(2, 1, bias=False), nn.Linear(1, 1, bias=False))
    with torch.no_grad():
        net[1].weight.copy_(torch.tensor([[1.0, -1.0]]))
        net[2].weight.fill_(2.0)
    e = 0.1
    Rh = -2.0 / (-2.0 - e) * -2.0
    torch.testing.assert_close(rel(net, x2(1.0, 2.0), Epsilon(e)),
                               torch.tensor([1.0, -2.0]) / (-1.0 - e) * Rh)


# ------------------------------------------------------------------ gamma
def test_gamma_by_hand_both_input_paths():
    # x = [1, 2], w = [1, -.25], b = .5, gamma = .5: z = 1, weights w + g w+ = [1.5, -.25],
    # bias b + g b+ = .75: denominator 1.5 - .5 + .75 = 1.75 -> R_x = [1.5, -.5] / 1.75
    net = linear_net([1.0, -0.25], 0.5)
    exp = torch.tensor([1.5, -0.5]) / 1.75
    torch.testing.assert_close(rel(net, x2(1.0, 2.0), Gamma(0.5, epsilon=0)), exp)
    # mixed sign: x = [1, -2], w = [1, .25]: contributions [1, -.5], the same numbers
    net = linear_net([1.0, 0.25], 0.5)
    torch.testing.assert_close(rel(net, x2(1.0, -2.0), Gamma(0.5, epsilon=0)), exp)


def small_cnn(seed, bias=True, inplace=False):
    g = torch.Generator().manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1, bias=bias), nn.ReLU(inplace),
                        nn.MaxPool2d(2), nn.Conv2d(6, 8, 3, padding=1, bias=bias),
                        nn.ReLU(inplace), nn.Flatten(), nn.Linear(8 * 16, 4, bias=bias))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return net.eval()


def test_gamma_limits():
    net = small_cnn(0).double()
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    comp = lambda r: Composite({"conv": r, "linear": Zero()})  # noqa: E731
    # gamma = 0 is LRP-0; a huge gamma tends to z+ (with its b+)
    torch.testing.assert_close(lrp(net, x, 1, comp(Gamma(0.0, epsilon=0))),
                               lrp(net, x, 1, comp(Zero())), rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(lrp(net, x, 1, comp(Gamma(1e9, epsilon=0))),
                               lrp(net, x, 1, comp(ZPlus())), rtol=1e-6, atol=1e-9)
    # presets: gamma on conv with the call's gamma, epsilon on dense
    torch.testing.assert_close(lrp(net, x, 1, "epsilon_gamma", gamma=0.3, epsilon=0.2),
                               lrp(net, x, 1, Composite({"conv": Gamma(0.3),
                                                         "linear": Epsilon(0.2)})))
    assert get_composite("epsilon_gamma", gamma=0.5).kinds["conv"] == Gamma(0.5)


# ------------------------------------------------------------------ flat input layer
def test_epsilon_plus_flat_gives_zero_pixels_relevance():
    """A zero-valued input pixel gets relevance under the flat input layer, never under z+;
    with a 1x1 input convolution its relevance is the channel-mean of the layer's output
    relevance."""
    g = torch.Generator().manual_seed(2)
    net = nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1),
                        nn.ReLU(), nn.Flatten(), nn.Linear(4 * 25, 3)).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
        net[0].bias.abs_()   # the zero pixel's units are alive: relevance reaches them
    x = torch.randn(1, 3, 5, 5, generator=g)
    x[0, :, 2, 3] = 0.0
    t = int(net(x).argmax())
    plus = lrp(net, x, t, "epsilon_plus")
    assert (plus[0, :, 2, 3] == 0).all()
    with LRP(net, "epsilon_plus_flat", record=("0",)) as attr:
        R = attr(x, t)
        R0 = attr.records["0"]  # relevance at the input layer's output (N, 4, 5, 5)
    exp = (R0.sum(1, keepdim=True) / 3).expand_as(R)
    torch.testing.assert_close(R, exp)
    assert R[0, :, 2, 3].abs().sum() > 0
    # the layers above the input layer are the same as under epsilon_plus
    with LRP(net, "epsilon_plus", record=("0",)) as attr:
        attr(x, t)
        torch.testing.assert_close(attr.records["0"], R0)


# ------------------------------------------------------------------ batch-norm eps
def bn_net(eps):
    """x = 2 -> conv 1x1 (w = 1.5) -> BN(mean 1, var 3, gamma 2, beta .5, eps) -> Linear(1)."""
    net = nn.Sequential(nn.Conv2d(1, 1, 1, bias=False), nn.BatchNorm2d(1, eps=eps), nn.Flatten(),
                        nn.Linear(1, 1, bias=False))
    with torch.no_grad():
        net[0].weight.fill_(1.5)
        bn = net[1]
        bn.running_mean.fill_(1.0)
        bn.running_var.fill_(3.0)
        bn.weight.fill_(2.0)
        bn.bias.fill_(0.5)
        net[3].weight.fill_(1.0)
    return net.eval(), torch.full((1, 1, 1, 1), 2.0)


def test_batchnorm_fold_uses_its_eps_by_hand():
    # eps = 1: scale = 2 / sqrt(3 + 1) = 1, shift = .5 - 1 = -.5; y = 3 - .5 = 2.5 = f
    net, x = bn_net(1.0)
    assert net(x).item() == pytest.approx(2.5)
    e = 0.1
    Ry = 2.5 * 2.5 / (2.5 + e)
    # folded: one conv with w' = 1.5, b' = -.5, z = 2.5 -> R_x = 3 / (2.5 + e) * Ry
    torch.testing.assert_close(lrp(net, x, 0, "epsilon", epsilon=e).reshape(()),
                               torch.tensor(3 / (2.5 + e) * Ry))
    # not folded: BN (epsilon: 3 * 1 / (2.5 + e)) after the conv (epsilon: 3 / (3 + e))
    torch.testing.assert_close(lrp(net, x, 0, "epsilon", epsilon=e, canonize=False).reshape(()),
                               torch.tensor(3 / (3 + e) * 3 / (2.5 + e) * Ry))


def test_batchnorm_fold_random_eps_equals_gradient_x_input():
    g = torch.Generator().manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4, eps=0.3), nn.ReLU(),
                        nn.Flatten(), nn.Linear(4 * 36, 3))
    with torch.no_grad():
        bn = net[1]
        bn.running_mean.copy_(torch.randn(4, generator=g))
        bn.running_var.copy_(torch.rand(4, generator=g) * 0.2)   # eps dominates the variance
        bn.weight.copy_(torch.randn(4, generator=g))
        bn.bias.copy_(torch.randn(4, generator=g))
    net.eval()
    x = torch.randn(2, 3, 6, 6, generator=g)
    gxi = gradient_x_input(net, x, 1)
    torch.testing.assert_close(lrp(net, x, 1, "lrp0"), gxi, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(lrp(net, x, 1, "lrp0", canonize=False), gxi, rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------ rule objects
def test_rule_equality_compares_values_not_repr():
    lo, hi = torch.zeros(3, 1, 1), torch.ones(3, 1, 1)
    assert ZBox(lo, hi) != ZBox(lo, 2 * hi)
    assert ZBox(lo, hi) == ZBox(lo.clone(), hi.clone())
    big = torch.zeros(3, 4, 4)
    assert ZBox(big, big + 1) != ZBox(big, big + 2)          # repr would say "tensor" for both
    assert hash(ZBox(big, big + 1)) == hash(ZBox(big.clone(), big + 1))
    assert ZBox(0.0, 1.0) == ZBox(torch.tensor(0.0), torch.tensor(1.0))
    assert Epsilon(0.1) == Epsilon(0.1) and Epsilon(0.1) != Epsilon(0.2)
    assert Zero() != Epsilon(0.0) and ZPlus() != AlphaBeta(1, 0)   # different classes
    assert AlphaBeta(2, 1) == AlphaBeta(2.0, 1.0) and len({Flat(), Flat(), WSquare()}) == 2


def test_rule_declarations_are_enforced():
    seen = {}

    class Spy(Rule):
        needs_input = False

        def backward(self, op, saved, R):
            seen.update(x=saved.x, z=saved.z)
            return op.bwd(R, saved.w, saved.in_shape)  # a dense-transpose rule (not LRP)

    net = linear_net([1.0, 2.0])
    lrp(net, x2(1.0, 1.0), 0, Composite({"linear": Spy()}))
    assert seen["x"] is None and seen["z"] is None   # only what the rule declared is kept
    lrp(net, x2(1.0, 1.0), 0, Composite({"linear": Epsilon()}))
    # keeping the output without declaring it (an in-place ReLU could overwrite it) is refused

    class Sneaky(Rule):
        def forward(self, op, x, w, b):
            z = op.fwd(x, w, b)
            return z, (z,)

        def backward(self, op, saved, R):  # pragma: no cover - never reached
            return R

    with pytest.raises(TypeError, match="needs_output"):
        lrp(net, x2(1.0, 1.0), 0, Composite({"linear": Sneaky()}))
    # a rule refuses layers outside its ops
    with pytest.raises(ValueError, match="cannot be used"):
        lrp(small_cnn(1), torch.randn(1, 3, 8, 8), 0, "epsilon", rules={"2": AlphaBeta()})


def test_custom_rule_reaching_dead_units_above_inplace_relus():
    """A user rule declaring reaches_dead_units=True in the middle of a net with in-place
    ReLUs gives the same map as without in-place ReLUs, in one forward pass."""

    class Uniform(Flat):  # flat, under another name: the engine only reads declarations
        pass

    a, b = small_cnn(3, inplace=True), small_cnn(3, inplace=False)
    calls = []
    a.register_forward_hook(lambda m, i, o: calls.append(1))
    x = torch.randn(1, 3, 8, 8)
    ra = lrp(a, x, 0, "epsilon", rules={"3": Uniform()})
    torch.testing.assert_close(ra, lrp(b, x, 0, "epsilon", rules={"3": Uniform()}))
    assert len(calls) == 1


# ------------------------------------------------------------------ layer table
class Double(nn.Module):
    def forward(self, x):
        return 2 * x


class DoubleOp(DenseOp):
    """``z = 2 x`` as an op (a scaled identity), for the registration test."""

    kind = "linear"

    def params(self):
        return torch.tensor(2.0), None

    def fwd(self, x, w, b=None):
        return x * w

    def bwd(self, s, w, in_shape):
        return (s * w).reshape(in_shape)

    def ones(self, w):
        return self, torch.ones_like(w)


class Sine(nn.Module):
    def forward(self, x):
        return torch.sin(x)


def test_register_layer_and_unknown_layer_message():
    x = torch.randn(1, 3, 6, 6)
    bad = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), Sine(), nn.Flatten(), nn.Linear(64, 2))
    with pytest.raises(UnsupportedLayerError) as e:
        lrp(bad, x, 0, "zplus")
    msg = str(e.value)
    assert "'2'" in msg and "Sine" in msg and "'sin'" in msg and "register_layer" in msg
    assert not isinstance(e.value, TypeError)     # torch would swallow a TypeError in x + y
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), Double(), nn.LeakyReLU(), nn.Flatten(),
                        nn.Linear(4 * 4 * 4, 2))
    with pytest.raises(UnsupportedLayerError) as e:
        lrp(net, x, 0, "zplus")
    assert "'3'" in str(e.value) and "LeakyReLU" in str(e.value)
    added = []
    try:
        with torch.no_grad():
            for p in net.parameters():
                p.abs_()                              # positive weights: LeakyReLU acts as id
            net[0].bias.zero_()
            net[5].bias.zero_()
        xp = x.abs()
        # an unregistered Double (2 * x) is routed: a product with a constant passes relevance
        routed = lrp(net, xp, 0, "zplus", rules={"3": Pass()})
        torch.testing.assert_close(routed.sum(), net(xp)[0, 0].detach(), rtol=1e-5, atol=1e-6)
        register_layer(Double, DoubleOp)
        register_layer(nn.LeakyReLU, ActivationOp)
        added = [Double, nn.LeakyReLU]
        with pytest.raises(ValueError, match="already registered"):
            register_layer(Double, ActivationOp)
        R = lrp(net, xp, 0, "zplus")                  # z+ on conv/linear (and Double)
        torch.testing.assert_close(R.sum(), net(xp)[0, 0].detach(), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(R, routed)
    finally:
        for t in added:
            LAYERS.pop(t)
    with pytest.raises(TypeError, match="nn.Module subclass"):
        register_layer(int, DoubleOp)


def test_subclass_of_registered_layer_uses_its_op():
    class MyLinear(nn.Linear):
        pass

    net = nn.Sequential(nn.Flatten(), MyLinear(2, 1, bias=False))
    with torch.no_grad():
        net[1].weight.copy_(torch.tensor([[1.0, -2.0]]))
    torch.testing.assert_close(rel(net, x2(1.0, 2.0), Epsilon(0.5)),
                               torch.tensor([3 / 3.5, -12 / 3.5]))


# ------------------------------------------------------------------ presets
def test_presets_declared_once_with_alias_and_descriptions():
    assert set(COMPOSITES) == set(PRESETS)
    assert COMPOSITES["epsilon_alpha2_beta1"].startswith("alias of")
    assert PRESETS["epsilon_alpha2_beta1"] is PRESETS["alpha2_beta1"]
    a, b = get_composite("alpha2_beta1"), get_composite("epsilon_alpha2_beta1")
    assert a.kinds == b.kinds and a.first_layer == b.first_layer
    assert "AlphaBeta(alpha=2.0, beta=1.0)" in COMPOSITES["alpha2_beta1"]
    for name in PRESETS:   # every preset builds and its description names its rules
        comp = get_composite(name, low=-1.0, high=1.0, epsilon=0.2, gamma=0.3)
        assert isinstance(comp, Composite)
        for r in comp.kinds.values():
            if isinstance(r, Epsilon) and not isinstance(r, Zero):
                assert r.epsilon == 0.2
    md = lrpkit.lrp.composites.markdown_list()
    assert "`alpha2_beta1` (alias: `epsilon_alpha2_beta1`)" in md
    with pytest.raises(ValueError, match="already declared"):
        lrpkit.lrp.preset("epsilon", {})


def test_lrp_options_declared_once():
    from lrpkit.lrp import OPTIONS, params_from_config

    assert dict(lrpkit.methods()["lrp"].params) == OPTIONS
    assert OPTIONS["composite"] == "alpha2_beta1" and OPTIONS["epsilon"] == 0.01
    assert params_from_config({"lrp": {"epsilon": 0.5, "composites": ["x"], "gamma": 1.0}}) == {
        "epsilon": 0.5, "gamma": 1.0}


# ------------------------------------------------------------------ canonizers and sums


def test_canonizers_as_a_list_and_a_custom_canonizer():
    pytest.importorskip("torchvision")
    net, x = skip_net()
    # lrp0 by hand (a = -1.5, b = 2, f = .5): R_x = .5, with or without batch-norm folding
    for canon in (True, [ResidualSums()], [ResidualSums(), BatchNormFold()]):
        torch.testing.assert_close(lrp(net, x, 0, "lrp0", canonize=canon).reshape(()),
                                   torch.tensor(0.5))
    # without the residual-sum canonizer the in-place `out += identity` is routed as the same
    # sum (the engine's op "0.add")
    torch.testing.assert_close(lrp(net, x, 0, "lrp0", canonize=[BatchNormFold()]).reshape(()),
                               torch.tensor(0.5))
    log = []

    class Logging(Canonizer):
        def apply(self, model, attributor):
            log.append("apply")

        def restore(self):
            log.append("restore")
            super().restore()

    lrp(net, x, 0, "lrp0", canonize=[Logging(), ResidualSums()])
    with pytest.raises(ValueError):
        lrp(net, x, 5, "lrp0", canonize=[Logging(), ResidualSums()])
    assert log == ["apply", "restore", "apply", "restore"]
    assert all("forward" not in m.__dict__ for m in net.modules())
    with pytest.raises(TypeError, match="Canonizer"):
        lrp(net, x, 0, "lrp0", canonize=["fold"])


def test_a_new_rule_on_a_residual_sum_is_used():
    """The sum is an op like any other: a user rule on it runs (not a silent epsilon)."""
    pytest.importorskip("torchvision")

    class Halves(Rule):  # R_a = R_b = R / 2 (the flat rule, written here)
        ops = frozenset({"sum"})
        needs_input = False

        def backward(self, op, saved, R):
            return op.bwd(R / 2, None, saved.in_shape)

    net, x = skip_net()
    torch.testing.assert_close(lrp(net, x, 0, "lrp0", rules={"0.add": Halves()}).reshape(()),
                               torch.tensor(0.5))   # R = .5: .25 to each branch (as Flat)
    torch.testing.assert_close(lrp(net, x, 0, "lrp0", rules={"0.add": Halves()}),
                               lrp(net, x, 0, "lrp0", rules={"0.add": Flat()}))
    with pytest.raises(ValueError, match="cannot be used"):
        lrp(net, x, 0, "lrp0", rules={"0.add": AlphaBeta()})
    # without canonizers the block's `out += identity` is the routed op of the same name
    torch.testing.assert_close(lrp(net, x, 0, "lrp0", rules={"0.add": Halves()}, canonize=False),
                               lrp(net, x, 0, "lrp0", rules={"0.add": Flat()}))
    with pytest.raises(ValueError, match="no layer named"):
        lrp(net, x, 0, "lrp0", rules={"0.sum": Halves()})


def test_pass_rule_is_required_on_relu():
    net = small_cnn(4)
    with pytest.raises(ValueError, match="cannot be used"):
        lrp(net, torch.randn(1, 3, 8, 8), 0, "epsilon", rules={"1": Epsilon()})
    R = lrp(net, torch.randn(1, 3, 8, 8), 0, "epsilon", rules={"1": Pass()})
    assert torch.isfinite(R).all()
