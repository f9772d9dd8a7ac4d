"""LRP rules, composites and engine: hand-derived values, conservation, invariants, errors."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import lrpkit
from lrpkit.lrp import (LRP, AlphaBeta, Composite, Epsilon, Flat, Pass, UnsupportedLayerError,
                        WSquare, ZBox, Zero, ZPlus, gradient_x_input, lrp)

torch.set_num_threads(1)


# ------------------------------------------------------------------ a net worked out on paper
from nets import skip_net, two_layer  # noqa: E402


def both(rule):
    return Composite({"linear": rule}, name="test")


def rel(net, x, comp, **kw):
    return lrp(net, x, 0, comp, **kw).reshape(-1)


def test_two_layer_output():
    net, x = two_layer()
    assert net(x).item() == pytest.approx(0.5)


def test_hand_lrp0():
    # layer 2: R_h = [0, 2, -1.5]; layer 1: j=1 -> [3, -1], j=2 -> [-0.5, -1]
    net, x = two_layer()
    torch.testing.assert_close(rel(net, x, both(Zero())), torch.tensor([2.5, -2.0]))


def test_hand_epsilon():
    net, x = two_layer()
    e = 0.5
    Rh1, Rh2 = 2 * 0.5 / (0.5 + e), -1.5 * 0.5 / (0.5 + e)
    exp = torch.tensor([3 * Rh1 / (2 + e) + 1 * Rh2 / (3 + e), -1 * Rh1 / (2 + e) + 2 * Rh2 / (3 + e)])
    torch.testing.assert_close(rel(net, x, both(Epsilon(e))), exp)
    # the preset "epsilon" with epsilon=... gives the same
    torch.testing.assert_close(rel(net, x, "epsilon", epsilon=e), exp)


def test_hand_alpha2_beta1():
    # layer 2: z+ = 2, z- = -1.5 -> R_h = [0, 2 * 2/2 * .5, -1 * .5] = [0, 1, -0.5]
    # layer 1: j=1 (R=1): z+ = 3, z- = -1 -> x0: 2, x1: -1; j=2 (R=-.5): z+ = 3 -> [-1/3, -2/3]
    net, x = two_layer()
    torch.testing.assert_close(rel(net, x, both(AlphaBeta(2, 1))),
                               torch.tensor([2 - 1 / 3, -1 - 2 / 3]))


def test_hand_zplus_flat_wsquare():
    net, x = two_layer()
    torch.testing.assert_close(rel(net, x, both(ZPlus())), torch.tensor([0.5, 0.0]))
    torch.testing.assert_close(rel(net, x, both(Flat())), torch.tensor([0.25, 0.25]))
    Rh = [0.5 * w / 2.25 for w in (1.0, 1.0, 0.25)]
    exp = torch.tensor([Rh[0] / 2 + Rh[1] * 9 / 9.25 + Rh[2] / 2,
                        Rh[0] / 2 + Rh[1] * 0.25 / 9.25 + Rh[2] / 2])
    torch.testing.assert_close(rel(net, x, both(WSquare())), exp)


def test_hand_zbox():
    # LRP-0 on layer 2 (R_h = [0, 2, -1.5]); z-box l=-1, h=3 on layer 1:
    # j=1: terms [1*3+1*3, 2*(-.5)+3*.5] = [6, .5]; j=2: [1+1, 2+1] = [2, 3]
    net, x = two_layer()
    comp = Composite({"linear": Zero()}, first_layer=ZBox(-1.0, 3.0))
    exp = torch.tensor([2 * 6 / 6.5 - 1.5 * 2 / 5, 2 * 0.5 / 6.5 - 1.5 * 3 / 5])
    torch.testing.assert_close(rel(net, x, comp), exp)
    # the same through a named-layer rule
    torch.testing.assert_close(rel(net, x, both(Zero()), rules={"1": ZBox(-1.0, 3.0)}), exp)




def test_hand_skip_connection():
    # h = relu(1.5 * 2) = 3; a = -0.5 * 3 = -1.5; b = x = 2; f = relu(a + b) = 0.5
    net, x = skip_net()
    assert net(x).item() == pytest.approx(0.5, abs=1e-6)
    # LRP-0: the sum splits R = .5 into a/(a+b) R = -1.5 and b/(a+b) R = 2 -> R_x = 0.5
    torch.testing.assert_close(lrp(net, x, 0, "lrp0").reshape(()), torch.tensor(0.5))
    # epsilon 0.1 (conv and dense), Zero at the sum
    e = 0.1
    R = 0.5 * 0.5 / (0.5 + e)
    Ra, Rb = -1.5 * R / 0.5, 2 * R / 0.5
    Rh = -1.5 * Ra / (-1.5 - e)
    exp = Rb + 3 * Rh / (3 + e)
    torch.testing.assert_close(lrp(net, x, 0, "epsilon", epsilon=e).reshape(()),
                               torch.tensor(exp), rtol=1e-5, atol=1e-6)
    # alpha2-beta1 on the convs: conv2 has only a negative contribution -> R_h = -beta * R_a
    Rh = -1.0 * Ra
    torch.testing.assert_close(lrp(net, x, 0, "alpha2_beta1", epsilon=e).reshape(()),
                               torch.tensor(Rb + 2 * Rh), rtol=1e-5, atol=1e-6)
    # a rule assigned to the named sum
    out = lrp(net, x, 0, "lrp0", rules={"0.add": Flat()}).reshape(())
    torch.testing.assert_close(out, torch.tensor(0.25 + 0.25))


# ------------------------------------------------------------------ conservation
def vgg_like(seed, bias=False, inplace=False, avg=False):
    g = torch.Generator().manual_seed(seed)
    layers = [nn.Conv2d(3, 6, 3, padding=1, bias=bias), nn.ReLU(inplace), nn.MaxPool2d(2),
              nn.Conv2d(6, 8, 3, padding=1, bias=bias), nn.ReLU(inplace),
              nn.AvgPool2d(2) if avg else nn.MaxPool2d(2, 2),
              nn.Conv2d(8, 8, 3, padding=1, bias=bias), nn.ReLU(inplace)]
    net = nn.Sequential(nn.Sequential(*layers), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                        nn.Linear(32, 16, bias=bias), nn.ReLU(inplace), nn.Dropout(0.5),
                        nn.Linear(16, 4, bias=bias))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return net.eval()


CONSERVATIVE = {
    "zplus": "zplus",
    "alpha1_beta0": Composite({"conv": AlphaBeta(1, 0), "linear": AlphaBeta(1, 0)}),
    "flat": "flat",
    "lrp0-mixed": Composite({"conv": ZPlus(), "linear": Zero()}, first_layer=Flat()),
}


def assert_conserves(net, x, comp, target, **kw):
    out = net(x).detach()[torch.arange(x.shape[0]), target]
    R = lrp(net, x, target, comp, **kw)
    assert R.shape == x.shape
    torch.testing.assert_close(R.sum((1, 2, 3)), out, rtol=1e-5, atol=1e-6 * out.abs().max())


@pytest.mark.parametrize("name", list(CONSERVATIVE))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_conservation_vgg_like(name, seed):
    net = vgg_like(seed, inplace=seed == 1, avg=seed == 2)
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(seed))
    t = net(x).argmax(1)
    assert_conserves(net, x, CONSERVATIVE[name], t)


def test_lrp0_equals_gradient_x_input():
    net = vgg_like(3, bias=True, inplace=True)
    x = torch.randn(2, 3, 16, 16)
    gxi = gradient_x_input(net, x, [1, 2])
    torch.testing.assert_close(lrp(net, x, [1, 2], "lrp0"), gxi, rtol=1e-4, atol=1e-6)
    # epsilon -> 0
    R = lrp(net, x, [1, 2], "epsilon", epsilon=1e-9)
    torch.testing.assert_close(R, gxi, rtol=1e-3, atol=1e-6)


def test_epsilon_absorbs_relevance():
    net = vgg_like(4)
    x = torch.randn(1, 3, 16, 16)
    t = int(net(x).argmax())
    small = lrp(net, x, t, "epsilon", epsilon=1e-6).sum().abs()
    big = lrp(net, x, t, "epsilon", epsilon=100.0).sum().abs()
    assert big < small


# ------------------------------------------------------------------ model left unchanged
def snapshot(net):
    return ({k: v.clone() for k, v in net.state_dict().items()},
            [p.requires_grad for p in net.parameters()],
            [(len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks),
              "forward" in m.__dict__, m.training) for m in net.modules()])


def assert_same(net, snap):
    sd, rg, mods = snapshot(net)
    for k, v in snap[0].items():
        assert torch.equal(sd[k], v), k
    assert rg == snap[1]
    assert mods == snap[2]


def test_model_unchanged_after_calls_and_errors():
    net = vgg_like(5, bias=True, inplace=True).train()
    net[0][0].weight.requires_grad_(False)
    net.register_forward_hook(lambda m, i, o: None)
    snap = snapshot(net)
    x = torch.randn(2, 3, 16, 16)
    for comp in ("epsilon", "alpha2_beta1", "epsilon_plus_flat"):
        lrp(net, x, 1, comp)
        assert_same(net, snap)
    for method in ("sensitivity", "deconvnet", "guided_backprop", "gradient_x_input"):
        lrpkit.explain(net, x, 0, method=method)
        assert_same(net, snap)
    with pytest.raises(ValueError):
        lrp(net, x, 99, "epsilon")
    assert_same(net, snap)
    with pytest.raises(ValueError):
        lrp(net, x, 0, "epsilon", rules={"0.2": Epsilon()})  # epsilon on a max-pool
    assert_same(net, snap)
    assert net[0][0].weight.grad is None and net[3].weight.grad is None


def test_attributor_reuse_and_plain_forward_inside():
    net = vgg_like(6)
    x = torch.randn(1, 3, 16, 16)
    with LRP(net, "epsilon_plus") as attr:
        r1 = attr(x, 2)
        torch.testing.assert_close(net(x), net(x))  # a plain forward works inside the context
        r2 = attr(x, 2)
    torch.testing.assert_close(r1, r2)


def test_batch_matches_single():
    net = vgg_like(7, bias=True)
    x = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(7))
    R = lrp(net, x, [0, 1, 2], "alpha2_beta1")
    for i in range(3):
        # batched and single convolutions round differently: tolerance relative to the map
        torch.testing.assert_close(R[i:i + 1], lrp(net, x[i:i + 1], i, "alpha2_beta1"),
                                   rtol=1e-4, atol=1e-5 * float(R[i].abs().max()))


def test_inplace_fallback_for_flat_above_epsilon():
    # Flat on a middle layer above an epsilon layer whose output an in-place ReLU overwrote:
    # the engine repeats the pass without in-place ReLUs -> equals the non-in-place net.
    a, b = vgg_like(8, inplace=True), vgg_like(8, inplace=False)
    x = torch.randn(1, 3, 16, 16)
    rules = {"3": Flat()}
    torch.testing.assert_close(lrp(a, x, 0, "epsilon", rules=rules),
                               lrp(b, x, 0, "epsilon", rules=rules))


def count_forwards(net):
    calls = []
    net.register_forward_hook(lambda m, i, o: calls.append(1))
    return calls


def test_flat_in_the_middle_needs_one_forward():
    net = vgg_like(8, inplace=True)
    calls = count_forwards(net)
    lrp(net, torch.randn(1, 3, 16, 16), 0, "epsilon", rules={"3": Flat()})
    assert len(calls) == 1


def test_pass_on_unknown_activation_after_inplace_relu_by_hand():
    # x -> W1 -> ReLU(inplace) -> Sigmoid (Pass) -> W2: sigmoid(0) = 0.5 gives dead units of
    # the first layer relevance, so the epsilon rule there needs z1 (not the ReLU's overwrite)
    g = torch.Generator().manual_seed(3)
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 5, bias=False), nn.ReLU(inplace=True),
                        nn.Sigmoid(), nn.Linear(5, 1, bias=False))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    x = torch.randn(1, 4, 1, 1, generator=g)
    eps = 0.1
    W1, W2 = net[1].weight.detach(), net[4].weight.detach()
    z1 = W1 @ x.reshape(4)
    assert (z1 < 0).any()  # some dead units
    h = torch.sigmoid(z1.clamp(min=0))
    f = W2 @ h
    R_h = h * W2[0] * (f / (f + eps * torch.sign(f)))
    R_x = x.reshape(4) * (W1.T @ (R_h / (z1 + eps * torch.where(z1 >= 0, 1.0, -1.0))))
    R = lrp(net, x, 0, "epsilon", epsilon=eps, rules={"3": Pass()})
    torch.testing.assert_close(R.reshape(4), R_x, rtol=1e-5, atol=1e-6)


def test_user_forward_hooks_run_and_do_not_break_lrp():
    net = vgg_like(9, inplace=True)
    seen = []
    net[0][1].register_forward_hook(lambda m, i, o: seen.append(o.detach().mean().item()))
    x = torch.randn(1, 3, 16, 16)
    R = lrp(net, x, 1, "epsilon")
    assert torch.isfinite(R).all() and len(seen) == 1


def test_batchnorm_folding_matches_unfolded_lrp0():
    g = torch.Generator().manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                        nn.Flatten(), nn.Linear(4 * 36, 3))
    with torch.no_grad():
        bn = net[1]
        bn.running_mean.copy_(torch.randn(4, generator=g))
        bn.running_var.copy_(torch.rand(4, generator=g) + 0.5)
        bn.weight.copy_(torch.randn(4, generator=g))
        bn.bias.copy_(torch.randn(4, generator=g))
    net.eval()
    x = torch.randn(2, 3, 6, 6)
    gxi = gradient_x_input(net, x, 1)
    torch.testing.assert_close(lrp(net, x, 1, "lrp0"), gxi, rtol=1e-4, atol=1e-5)
    # folded conv + z+ conserves with zero biases
    with torch.no_grad():
        net[0].bias.zero_()
        bn.bias.copy_(bn.running_mean * bn.weight / torch.sqrt(bn.running_var + bn.eps))
        net[4].bias.zero_()
    assert_conserves(net, x, "zplus", torch.tensor([1, 1]))


# ------------------------------------------------------------------ bad input
def test_unsupported_layer_names_path_and_fix():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Sequential(nn.LeakyReLU()), nn.Flatten(),
                        nn.Linear(4 * 4 * 4, 2))
    x = torch.randn(1, 3, 6, 6)
    with pytest.raises(UnsupportedLayerError) as e:
        lrp(net, x, 0, "epsilon")
    msg = str(e.value)
    assert "'1.0'" in msg and "LeakyReLU" in msg and "rules=" in msg
    R = lrp(net, x, 0, "epsilon", rules={"1.0": Pass()})
    assert R.shape == x.shape and torch.isfinite(R).all()


def test_functional_op_in_forward_is_reported():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 2, 3)
            self.fc = nn.Linear(2 * 4 * 4, 2)

        def forward(self, x):
            return self.fc(torch.flatten(torch.sigmoid(self.conv(x)), 1))

    with pytest.raises(UnsupportedLayerError, match="sigmoid"):
        lrp(Net(), torch.randn(1, 3, 6, 6), 0, "epsilon")


def test_bad_inputs():
    net = vgg_like(9)
    with pytest.raises(ValueError, match="NaN"):
        lrpkit.explain(net, torch.full((1, 3, 16, 16), float("nan")), 0)
    with pytest.raises(ValueError, match="NaN or infinite"):
        lrp(net, torch.full((1, 3, 16, 16), float("inf")), 0)
    with pytest.raises(ValueError, match="rank 4"):
        lrp(net, torch.randn(3, 16, 16), 0)
    with pytest.raises(ValueError, match="out of range"):
        lrp(net, torch.randn(1, 3, 16, 16), 4)
    with pytest.raises(ValueError, match="out of range"):
        lrpkit.explain(net, torch.randn(1, 3, 16, 16), -1)
    with pytest.raises(ValueError, match="no layer named"):
        lrp(net, torch.randn(1, 3, 16, 16), 0, rules={"nope": Flat()})
    with pytest.raises(ValueError, match="no layer named"):
        lrp(net, torch.randn(1, 3, 16, 16), 0, cutoff="nope")
    with pytest.raises(ValueError, match="composite"):
        lrp(net, torch.randn(1, 3, 16, 16), 0, "nope")
    with pytest.raises(ValueError, match="low"):
        lrp(net, torch.randn(1, 3, 16, 16), 0, "epsilon_plus_box")
    with pytest.raises(ValueError, match="alpha - beta"):
        AlphaBeta(2, 2)
    with pytest.raises(ValueError, match="cannot be used"):
        lrp(net, torch.randn(1, 3, 16, 16), 0, rules={"0.2": ZPlus()})


def test_zbox_preset_with_bounds():
    net = vgg_like(10)
    x = torch.rand(1, 3, 16, 16)
    R = lrp(net, x, 0, "epsilon_plus_box", low=torch.zeros(3, 1, 1), high=torch.ones(3, 1, 1))
    assert torch.isfinite(R).all() and R.shape == x.shape
