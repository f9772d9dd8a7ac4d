"""The engine's functional operations and the rules for gates, layer norms, concatenation and
gated activations: small nets with non-zero biases, a target that is not the arg-max, and a
dense loop-based reference (every layer written as an explicit matrix)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import lrpkit
from lrpkit.lrp import (Composite, Epsilon, Flat, Gradient, Pass, UnsupportedLayerError, ZPlus,
                        gradient_x_input, lrp)

torch.set_num_threads(1)
EPS = 0.1
EPSC = Composite({"conv": Epsilon(EPS), "linear": Epsilon(EPS)}, name="eps")


# ------------------------------------------------------------------ the dense reference
def eps_lrp(x, W, b, R, eps):
    """``R_i = sum_j x_i W_ji / (z_j + eps sign z_j) R_j`` with loops (sign 0 = +1)."""
    out = torch.zeros_like(x)
    for j in range(W.shape[0]):
        z = sum(float(x[i]) * float(W[j, i]) for i in range(len(x))) + float(b[j])
        d = z + (eps if z >= 0 else -eps)
        for i in range(len(x)):
            out[i] += float(x[i]) * float(W[j, i]) / d * float(R[j])
    return out


def conv_matrix(conv: nn.Conv2d, shape):
    """The dense matrix of a stride-1 convolution on inputs of ``shape`` (C, H, W), by loops."""
    C, H, Wd = shape
    kh, kw = conv.kernel_size
    p = conv.padding[0]
    Ho, Wo = H + 2 * p - kh + 1, Wd + 2 * p - kw + 1
    w = conv.weight.detach()
    M = torch.zeros(conv.out_channels * Ho * Wo, C * H * Wd, dtype=w.dtype)
    for o in range(conv.out_channels):
        for y in range(Ho):
            for xx in range(Wo):
                row = (o * Ho + y) * Wo + xx
                for c in range(C):
                    for dy in range(kh):
                        for dx in range(kw):
                            iy, ix = y + dy - p, xx + dx - p
                            if 0 <= iy < H and 0 <= ix < Wd:
                                M[row, (c * H + iy) * Wd + ix] += w[o, c, dy, dx]
    b = conv.bias.detach().repeat_interleave(Ho * Wo)
    return M, b


def not_argmax(out):
    return int(out[0].argsort()[1])           # the second-largest score


def seeded(net, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.7)
    return net.double().eval()


# ------------------------------------------------------------------ a gate (squeeze-excitation)
class SE(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1)
        self.fc = nn.Linear(3, 3)
        self.head = nn.Linear(3, 4)

    def forward(self, x):
        h = torch.relu(self.conv(x))
        s = torch.sigmoid(self.fc(h.mean((2, 3))))
        y = h * s[:, :, None, None]                 # the gate, held constant
        return self.head(F.adaptive_avg_pool2d(y, 1).flatten(1))


def test_gate_matches_dense_reference():
    net = seeded(SE(), 0)
    x = torch.randn(1, 2, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    out = net(x).detach()
    t = not_argmax(out)
    M, b = conv_matrix(net.conv, (2, 3, 3))
    z = M @ x.reshape(-1) + b
    h = z.clamp(min=0)
    s = torch.sigmoid(net.fc(h.reshape(3, 9).mean(1)[None]))[0].detach()
    y = h * s.repeat_interleave(9)
    A = torch.zeros(3, 27, dtype=torch.float64)
    for c in range(3):
        A[c, c * 9:(c + 1) * 9] = 1 / 9
    p = A @ y
    W2, b2 = net.head.weight.detach(), net.head.bias.detach()
    R_f = torch.zeros(4, dtype=torch.float64)
    R_f[t] = out[0, t]
    R_p = eps_lrp(p, W2, b2, R_f, EPS)
    R_y = eps_lrp(y, A, torch.zeros(3), R_p, 0.0)        # pooling: LRP-0
    R_x = eps_lrp(x.reshape(-1), M, b, R_y, EPS)         # gate: R_h = R_y; ReLU: pass
    torch.testing.assert_close(lrp(net, x, t, EPSC).reshape(-1), R_x, rtol=1e-9, atol=1e-12)


# ------------------------------------------------------------------ a layer norm
class LN(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.norm, self.fc2 = nn.Linear(4, 5), nn.LayerNorm(5), nn.Linear(5, 3)

    def forward(self, x):
        return self.fc2(F.gelu(self.norm(self.fc1(x.flatten(1)))))


def test_layernorm_matches_dense_reference():
    """Ali et al. 2022: the standard deviation held constant, the centring part of the map."""
    net = seeded(LN(), 2)
    x = torch.randn(1, 4, 1, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    out = net(x).detach()
    t = not_argmax(out)
    W1, b1 = net.fc1.weight.detach(), net.fc1.bias.detach()
    h = W1 @ x.reshape(-1) + b1
    std = torch.sqrt(h.var(unbiased=False) + net.norm.eps)
    g, beta = net.norm.weight.detach(), net.norm.bias.detach()
    L = torch.zeros(5, 5, dtype=torch.float64)           # z_j = sum_i h_i L_ji + beta_j
    for j in range(5):
        for i in range(5):
            L[j, i] = ((1.0 if i == j else 0.0) - 1 / 5) * g[j] / std
    zn = L @ h + beta
    a = F.gelu(zn)
    W2, b2 = net.fc2.weight.detach(), net.fc2.bias.detach()
    R_f = torch.zeros(3, dtype=torch.float64)
    R_f[t] = out[0, t]
    R_a = eps_lrp(a, W2, b2, R_f, EPS)
    R_h = eps_lrp(h, L, beta, R_a, EPS)                  # GELU: pass; layer norm: epsilon
    R_x = eps_lrp(x.reshape(-1), W1, b1, R_h, EPS)
    torch.testing.assert_close(lrp(net, x, t, EPSC, epsilon=EPS).reshape(-1), R_x, rtol=1e-9,
                               atol=1e-12)
    # torchvision's LayerNorm2d (F.layer_norm between permutes) is the same map
    tv = pytest.importorskip("torchvision")
    ln2d = tv.models.convnext.LayerNorm2d(5).double()
    ln2d.load_state_dict(net.norm.state_dict())

    class LN2d(LN):
        def forward(self, x):
            h = self.fc1(x.flatten(1))[:, :, None, None]
            return self.fc2(F.gelu(ln2d(h).flatten(1)))

    net2 = LN2d().double()
    net2.load_state_dict(net.state_dict())
    net2.ln2d = ln2d
    torch.testing.assert_close(lrp(net2.eval(), x, t, EPSC, epsilon=EPS).reshape(-1), R_x,
                               rtol=1e-9, atol=1e-12)


# ------------------------------------------------------------------ a concatenation
class Cat(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(2, 2, 1), nn.Conv2d(2, 3, 3, padding=1)
        self.fc = nn.Linear(5 * 9, 4)

    def forward(self, x):
        h = torch.cat([self.a(x), self.b(x)], 1)
        return self.fc(torch.flatten(F.relu(h), 1))


def test_concat_matches_dense_reference():
    net = seeded(Cat(), 4)
    x = torch.randn(1, 2, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    out = net(x).detach()
    t = not_argmax(out)
    (Ma, ba), (Mb, bb) = conv_matrix(net.a, (2, 3, 3)), conv_matrix(net.b, (2, 3, 3))
    xv = x.reshape(-1)
    za, zb = Ma @ xv + ba, Mb @ xv + bb
    h = torch.cat([za, zb]).clamp(min=0)
    R_f = torch.zeros(4, dtype=torch.float64)
    R_f[t] = out[0, t]
    R_h = eps_lrp(h, net.fc.weight.detach(), net.fc.bias.detach(), R_f, EPS)
    R_x = eps_lrp(xv, Ma, ba, R_h[:18], EPS) + eps_lrp(xv, Mb, bb, R_h[18:], EPS)
    torch.testing.assert_close(lrp(net, x, t, EPSC).reshape(-1), R_x, rtol=1e-9, atol=1e-12)


# ------------------------------------------------------------------ SiLU and the clamps
class Act(nn.Module):
    def __init__(self, act):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(4, 6), act, nn.Linear(6, 3)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x.flatten(1))))


@pytest.mark.parametrize("act", [nn.SiLU(), nn.ReLU6(), nn.Hardswish(), nn.GELU(),
                                 nn.Hardtanh(-0.5, 0.5)])
def test_activation_matches_dense_reference(act):
    net = seeded(Act(act), 6)
    x = torch.randn(1, 4, 1, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(7)) * 3
    out = net(x).detach()
    t = not_argmax(out)
    W1, b1, W2, b2 = (p.detach() for p in (net.fc1.weight, net.fc1.bias, net.fc2.weight,
                                           net.fc2.bias))
    z = W1 @ x.reshape(-1) + b1
    a = act(z)
    R_f = torch.zeros(3, dtype=torch.float64)
    R_f[t] = out[0, t]
    R_a = eps_lrp(a, W2, b2, R_f, EPS)
    # gated / clamped: x * g(x) with g held constant -> the relevance passes (Pass)
    R_x = eps_lrp(x.reshape(-1), W1, b1, R_a, EPS)
    torch.testing.assert_close(lrp(net, x, t, EPSC).reshape(-1), R_x, rtol=1e-9, atol=1e-12)
    # another rule on the layer kind through the composite: the derivative (Gradient)
    zz = z.clone().requires_grad_(True)
    (d,) = torch.autograd.grad(act(zz).sum(), zz)
    R_g = eps_lrp(x.reshape(-1), W1, b1, d * R_a, EPS)
    kind = "gated" if isinstance(act, (nn.SiLU, nn.Hardswish, nn.GELU)) else "clamp"
    comp = Composite({"conv": Epsilon(EPS), "linear": Epsilon(EPS), kind: Gradient()})
    torch.testing.assert_close(lrp(net, x, t, comp).reshape(-1), R_g, rtol=1e-9, atol=1e-12)


def test_functional_activations_equal_their_modules():
    net = seeded(Act(nn.SiLU()), 8)

    class Fn(Act):
        def forward(self, x):
            return self.fc2(F.silu(self.fc1(x.flatten(1)), inplace=True))

    fn = Fn(nn.Identity()).double()
    fn.load_state_dict(net.state_dict())
    x = torch.randn(2, 4, 1, 1, dtype=torch.float64)
    for comp in ("epsilon", "alpha2_beta1", "zplus"):
        torch.testing.assert_close(lrp(fn.eval(), x, [0, 2], comp), lrp(net, x, [0, 2], comp))


# ------------------------------------------------------------------ custom models
def zero_bias(net):
    with torch.no_grad():
        for m in net.modules():
            if getattr(m, "bias", None) is not None:
                m.bias.zero_()
    return net


def gate(x):
    """A helper function at module level, called from a forward."""
    return x * torch.sigmoid(x)


class HelperGate(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.fc = nn.Conv2d(3, 4, 3), nn.Linear(4 * 16, 5)

    def forward(self, x):
        return self.fc(torch.flatten(gate(self.conv(x)), 1))


class SelfIsS(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 36, 5)

    def forward(s, x):
        h = torch.relu(s.conv1(x))
        h = h + s.conv2(h)                  # a residual sum in a custom forward
        return s.fc(torch.relu(h).flatten(1))


class WSConv(nn.Conv2d):
    """Weight standardisation: a Conv2d subclass with its own forward."""

    def forward(self, x):
        w = self.weight
        w = (w - w.mean((1, 2, 3), keepdim=True)) / (w.std((1, 2, 3), keepdim=True) + 1e-5)
        return F.conv2d(x, w, self.bias, self.stride, self.padding, self.dilation, self.groups)


def conserves(net, x, comp, t):
    f = net(x).detach()[torch.arange(len(t)), t]
    R = lrp(net, x, t, comp, epsilon=1e-12)
    torch.testing.assert_close(R.sum((1, 2, 3)), f, rtol=1e-9, atol=1e-12)
    return R


def test_helper_gate_function_conserves_and_equals_silu():
    net = zero_bias(seeded(HelperGate(), 9))
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    t = torch.tensor([1, 3])
    R = conserves(net, x, "epsilon", t)
    silu = nn.Sequential()
    silu.conv, silu.act, silu.flat, silu.fc = net.conv, nn.SiLU(), nn.Flatten(), net.fc
    torch.testing.assert_close(R, lrp(silu, x, t, "epsilon", epsilon=1e-12))


def test_forward_with_s_and_a_residual_sum():
    net = seeded(SelfIsS(), 10)
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    t = torch.tensor([0, 4])
    # LRP-0 of a ReLU net equals gradient x input; the old guard was off here (sum counted twice)
    torch.testing.assert_close(lrp(net, x, t, "lrp0"), gradient_x_input(net, x, t))
    conserves(zero_bias(net), x, "epsilon", t)
    conserves(net, x, "zplus", t)


def test_conv_subclass_with_own_forward_is_explained_as_itself():
    net = nn.Sequential(WSConv(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 16, 5))
    net = zero_bias(seeded(net, 11))
    plain = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 16, 5))
    plain.double().load_state_dict(net.state_dict())
    with torch.no_grad():
        w = net[0].weight
        plain[0].weight.copy_((w - w.mean((1, 2, 3), keepdim=True))
                              / (w.std((1, 2, 3), keepdim=True) + 1e-5))
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    t = torch.tensor([2, 2])
    for comp in ("zplus", "epsilon_plus_flat", "alpha2_beta1"):
        R = lrp(net, x, t, comp)
        torch.testing.assert_close(R, lrp(plain.eval(), x, t, comp))
    conserves(net, x, "zplus", t)
    # the first-layer rule goes to the functional convolution inside the subclass
    torch.testing.assert_close(lrp(net, x, t, "epsilon_plus_flat"),
                               lrp(net, x, t, "epsilon_plus", rules={"0.conv2d": Flat()}))


# ------------------------------------------------------------------ in-place operations
class InPlace(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 36, 5)

    def forward(self, x):
        h = F.relu(self.conv1(x), inplace=True)
        out = self.conv2(h)
        out.add_(h)                         # the return value is ignored
        out *= 2.0
        return self.fc(F.relu(out, inplace=True).flatten(1))


def test_in_place_operations_keep_their_meaning():
    net = seeded(InPlace(), 12)
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    t = torch.tensor([1, 2])
    torch.testing.assert_close(lrp(net, x, t, "lrp0"), gradient_x_input(net, x, t))
    for comp in ("epsilon", "alpha2_beta1", "epsilon_plus_flat"):
        R = lrp(net, x, t, comp)
        assert torch.isfinite(R).all()
    conserves(zero_bias(net), x, "zplus", t)


# ------------------------------------------------------------------ refusals
class TwoSignals(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.fc = nn.Conv2d(3, 2, 3), nn.Linear(2 * 16, 2)

    def forward(self, x):
        h = self.conv(x)
        return self.fc((h * h).flatten(1))


def sine(x):
    return torch.sin(x)


class Sin(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.fc = nn.Conv2d(3, 2, 3), nn.Linear(2 * 16, 2)

    def forward(self, x):
        h = self.conv(x)
        return self.fc((h + sine(h)).flatten(1))


def test_unknown_operations_are_refused_with_their_place():
    x = torch.randn(1, 3, 6, 6)
    with pytest.raises(UnsupportedLayerError) as e:
        lrp(TwoSignals(), x, 0, "epsilon")
    msg = str(e.value)
    assert "'mul'" in msg and "two signals" in msg and "TwoSignals" in msg and "test_lrp_ops.py" in msg
    with pytest.raises(UnsupportedLayerError) as e:      # through x + y: not swallowed by torch
        lrp(Sin(), x, 0, "epsilon")
    msg = str(e.value)
    assert "'sin'" in msg and "in sine()" in msg and "Sin)" in msg
    assert isinstance(e.value, RuntimeError) and not isinstance(e.value, TypeError)


def test_sigmoid_used_as_an_activation_is_refused_or_passed_by_name():
    class Act(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.act, self.fc = nn.Conv2d(3, 2, 3), nn.Sigmoid(), nn.Linear(32, 2)

        def forward(self, x):
            return self.fc(self.act(self.conv(x)).flatten(1))

    x = torch.randn(1, 3, 6, 6)
    with pytest.raises(UnsupportedLayerError, match="'act'.*held constant"):
        lrp(Act(), x, 0, "epsilon")
    assert torch.isfinite(lrp(Act(), x, 0, "epsilon", rules={"act": Pass()})).all()


def test_vision_transformer_is_refused_naming_attention():
    tv = pytest.importorskip("torchvision")
    vit = tv.models.vit_b_16(image_size=32, num_classes=3).eval()
    with pytest.raises(UnsupportedLayerError) as e:
        lrp(vit, torch.randn(1, 3, 32, 32), 0, "epsilon")
    msg = str(e.value)
    assert "multi_head_attention_forward" in msg and "transformers" in msg
    assert "self_attention" in msg


def test_routed_op_names_take_rules_and_bad_names_are_reported():
    net = zero_bias(seeded(SelfIsS(), 13))
    x = torch.randn(1, 3, 6, 6, dtype=torch.float64)
    a = lrp(net, x, 1, "lrp0")
    b = lrp(net, x, 1, "lrp0", rules={"add": Flat()})
    assert not torch.allclose(a, b)
    torch.testing.assert_close(a.sum(), b.sum())
    with pytest.raises(ValueError, match="no layer named 'nope'"):
        lrp(net, x, 1, "lrp0", rules={"nope": Flat()})
    with pytest.raises(ValueError, match="cannot be used"):
        lrp(net, x, 1, "lrp0", rules={"add": ZPlus()})


# ------------------------------------------------------------------ batch-norm folding anywhere
class Named(nn.Module):
    """A conv + batch-norm pair under names that say nothing (c, n), and a batch-norm registered
    right after a convolution but applied to something else (c2, n2)."""

    def __init__(self):
        super().__init__()
        self.c, self.n = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.c2, self.n2 = nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4)
        self.fc = nn.Linear(4 * 36, 3)

    def forward(self, x):
        h = torch.relu(self.n(self.c(x)))
        h = torch.relu(self.c2(self.n2(h)))         # n2 before c2: cannot be folded into it
        return self.fc(h.flatten(1))


def test_batchnorm_folded_into_the_preceding_conv_in_any_model():
    net = seeded(Named(), 14)
    with torch.no_grad():
        for bn in (net.n, net.n2):
            bn.running_var.uniform_(0.5, 1.5)
            bn.running_mean.normal_()
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    t = torch.tensor([2, 0])
    seq = nn.Sequential(nn.Sequential(net.c, net.n), nn.ReLU(), net.n2, net.c2, nn.ReLU(),
                        nn.Flatten(), net.fc)       # the same net as Sequentials: folds c + n
    torch.testing.assert_close(seq(x), net(x))
    for comp in ("zplus", "alpha2_beta1", "epsilon"):
        R = lrp(net, x, t, comp)
        torch.testing.assert_close(R, lrp(seq, x, t, comp))
        assert not torch.allclose(R, lrp(net, x, t, comp, canonize=False))   # folding matters


def test_torchscript_model_is_refused_by_name():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                              torch.nn.Linear(2 * 6 * 6, 3)).eval()
    ts = torch.jit.script(net)
    x = torch.randn(1, 3, 8, 8)
    with pytest.raises(UnsupportedLayerError, match="TorchScript"):
        lrp(ts, x, 0)                                   # the engine itself
    with pytest.raises(TypeError, match="TorchScript"):
        lrpkit.explain(ts, x, 0, method="lrp")         # the registry's check, before any work
