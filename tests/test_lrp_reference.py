"""A rule written here (no engine edit) on torchvision VGG11 and ResNet18 (random weights),
against a slow reference computed layer by layer with explicit loops and dense matrices.

The reference does not use lrpkit, ``conv2d`` or its transpose: convolutions are dense
matrices over unfolded patches (``z_ijl = w_ji x_il`` materialised), pooling and residual
sums are explicit loops, batch-norm is folded here by hand.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lrpkit.lrp import Composite, Epsilon, Rule, lrp

torchvision = pytest.importorskip("torchvision")
torch.set_num_threads(1)
EPS = 0.01


class AbsZ(Rule):
    """``R_i = sum_j |x_i w_ij| / (sum_i' |x_i' w_i'j| + |b_j|) R_j`` (not shipped by lrpkit)."""

    ops = frozenset({"conv", "linear"})

    def backward(self, op, saved, R):
        x, w = saved.x.abs(), saved.w.abs()
        b = None if saved.b is None else saved.b.abs()
        d = op.fwd(x, w, b)
        s = torch.where(d == 0, torch.zeros_like(R), R / d)
        return x * op.bwd(s, w, x.shape)


COMPOSITE = Composite({"conv": AbsZ(), "linear": Epsilon(EPS)}, name="absz")


# ------------------------------------------------------------------ the slow reference
def conv_absz(x, w, b, stride, pad, R):
    """AbsZ through a convolution as a dense matrix over unfolded patches (one image)."""
    c_out, k = w.shape[0], w.shape[2]
    cols = F.unfold(x, k, padding=pad, stride=stride)[0]            # (C_in k k, L)
    W = w.reshape(c_out, -1)
    Z = (W.abs()[:, :, None] * cols.abs()[None]).sum(1)            # sum_i |z_ijl|: (C_out, L)
    if b is not None:
        Z = Z + b.abs()[:, None]
    S = R.reshape(c_out, -1) / Z
    S[Z == 0] = 0
    Rcols = cols.abs() * (W.abs().T @ S)                            # (C_in k k, L)
    return F.fold(Rcols[None], x.shape[2:], k, padding=pad, stride=stride)


def conv_z(x, w, b, stride, pad):
    k = w.shape[2]
    cols = F.unfold(x, k, padding=pad, stride=stride)[0]
    z = w.reshape(w.shape[0], -1) @ cols + (b[:, None] if b is not None else 0)
    h = (x.shape[2] + 2 * pad - k) // stride + 1
    return z.reshape(1, w.shape[0], h, -1)


def dense_eps(a, W, b, R):
    z = W @ a + (b if b is not None else 0)
    d = z + EPS * torch.where(z >= 0, 1.0, -1.0)
    return a * (W.T @ (R / d))


def maxpool(x, k, s, p):
    """Max-pool by loops; returns the output and the arg-max (c, y, x) of each cell."""
    C, H, W = x.shape[1:]
    ho, wo = (H + 2 * p - k) // s + 1, (W + 2 * p - k) // s + 1
    out = torch.empty(1, C, ho, wo, dtype=x.dtype)
    arg = {}
    for i in range(ho):
        for j in range(wo):
            ys = range(max(i * s - p, 0), min(i * s - p + k, H))
            xs = range(max(j * s - p, 0), min(j * s - p + k, W))
            win = x[0][:, ys.start:ys.stop, xs.start:xs.stop].reshape(C, -1)
            v, a = win.max(1)
            out[0, :, i, j] = v
            arg[(i, j)] = (ys.start + a // len(xs), xs.start + a % len(xs))
    return out, arg


def unpool(R, arg, shape):
    Rin = torch.zeros(shape, dtype=R.dtype)
    ch = torch.arange(shape[1])
    for (i, j), (ys, xs) in arg.items():
        Rin[0, ch, ys, xs] += R[0, :, i, j]
    return Rin


def adaptive_avg_lrp0(x, n, R):
    """LRP-0 through AdaptiveAvgPool2d(n) by loops over output cells (z_ij = x_i / |cell|)."""
    H, W = x.shape[2:]
    Rin = torch.zeros_like(x)
    for i in range(n):
        for j in range(n):
            y0, y1 = (i * H) // n, math.ceil((i + 1) * H / n)
            x0, x1 = (j * W) // n, math.ceil((j + 1) * W / n)
            cell = x[0, :, y0:y1, x0:x1]
            z = cell.mean((1, 2))
            share = torch.where(z == 0, torch.zeros_like(z), R[0, :, i, j] / z)
            Rin[0, :, y0:y1, x0:x1] += cell / cell[0].numel() * share[:, None, None]
    return Rin


def output_relevance(out, t):
    R = torch.zeros_like(out)
    R[0, t] = out[0, t]
    return R[0]


def ref_vgg(net, x, t):
    acts, mods = [], list(net.features)
    a = x
    for m in mods:  # forward, keeping each layer's input (and max-pool switches)
        acts.append(a)
        if isinstance(m, nn.Conv2d):
            a = conv_z(a, m.weight, m.bias, m.stride[0], m.padding[0])
        elif isinstance(m, nn.ReLU):
            a = a.clamp(min=0)
        else:
            a, arg = maxpool(a, m.kernel_size, m.stride, m.padding)
            acts[-1] = (acts[-1], arg)
    f_in = a
    a = F.adaptive_avg_pool2d(a, 7).reshape(-1)
    lins = [m for m in net.classifier if isinstance(m, nn.Linear)]
    hs = []
    for i, m in enumerate(lins):
        hs.append(a)
        a = m.weight @ a + m.bias
        if i < len(lins) - 1:
            a = a.clamp(min=0)
    R = output_relevance(a[None], t)
    for m, h in zip(reversed(lins), reversed(hs)):
        R = dense_eps(h, m.weight, m.bias, R)
    R = adaptive_avg_lrp0(f_in, 7, R.reshape(1, -1, 7, 7))
    for m, a_in in zip(reversed(mods), reversed(acts)):
        if isinstance(m, nn.Conv2d):
            R = conv_absz(a_in, m.weight, m.bias, m.stride[0], m.padding[0], R)
        elif isinstance(m, nn.MaxPool2d):
            R = unpool(R, a_in[1], a_in[0].shape)
    return R, a[t]


def folded(conv, bn):
    s = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return conv.weight * s[:, None, None, None], bn.bias - bn.running_mean * s


def ref_resnet(net, x, t):
    tape = []  # (kind, data) in forward order; the backward walks it in reverse

    def conv_bn(a, conv, bn):
        w, b = folded(conv, bn)
        tape.append(("conv", (a, w, b, conv.stride[0], conv.padding[0])))
        return conv_z(a, w, b, conv.stride[0], conv.padding[0])

    a = conv_bn(x, net.conv1, net.bn1).clamp(min=0)
    p, arg = maxpool(a, 3, 2, 1)
    tape.append(("pool", (arg, a.shape)))
    a = p
    for layer in (net.layer1, net.layer2, net.layer3, net.layer4):
        for blk in layer:
            tape.append(("fork", None))
            idt = conv_bn(a, blk.downsample[0], blk.downsample[1]) if blk.downsample else a
            tape.append(("branch", None))
            h = conv_bn(a, blk.conv1, blk.bn1).clamp(min=0)
            out = conv_bn(h, blk.conv2, blk.bn2)
            tape.append(("sum", (out, idt)))
            a = (out + idt).clamp(min=0)
    g = a.mean((2, 3)).reshape(-1)
    f = net.fc.weight @ g + net.fc.bias
    R = dense_eps(g, net.fc.weight, net.fc.bias, output_relevance(f[None], t))
    R = adaptive_avg_lrp0(a, 1, R.reshape(1, -1, 1, 1))
    stack = []
    for kind, d in reversed(tape):
        if kind == "conv":
            R = conv_absz(*d, R)
        elif kind == "pool":
            R = unpool(R, *d)
        elif kind == "sum":  # LRP-0 at the sum: R_a = a / (a + b) R, 0/0 := 0
            o, i = d
            z = o + i
            s = torch.where(z == 0, torch.zeros_like(z), R / z)
            R, Ridt = o * s, i * s
            stack.append(Ridt)
        elif kind == "branch":  # main branch done: continue with the identity branch
            stack.append(R)
            R = stack[-2]
        elif kind == "fork":  # both branches reached the block input
            R_main = stack.pop()
            stack.pop()
            R = R_main + R
    return R, f[t]


# ------------------------------------------------------------------ the tests
def randomise_bn(net, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return net.eval()


def check(R, ref):
    assert R.shape == ref.shape
    scale = float(ref.abs().max())
    assert scale > 0
    torch.testing.assert_close(R, ref.to(R.dtype), rtol=1e-3, atol=1e-4 * scale)


def test_custom_rule_on_vgg11_matches_reference():
    torch.manual_seed(0)
    net = torchvision.models.vgg11(num_classes=10).eval()
    with torch.no_grad():  # non-zero biases: the rule's |b_j| term is exercised
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.bias.uniform_(-0.1, 0.1)
    x = torch.randn(1, 3, 32, 32)
    t = 3
    R = lrp(net, x, t, COMPOSITE)
    with torch.no_grad():
        ref, f = ref_vgg(net, x, t)
    torch.testing.assert_close(f, net(x)[0, t].detach(), rtol=1e-4, atol=1e-5)
    check(R, ref)


def test_custom_rule_on_resnet18_matches_reference():
    torch.manual_seed(1)
    net = randomise_bn(torchvision.models.resnet18(num_classes=10), 1)
    x = torch.randn(1, 3, 32, 32)
    t = 7
    R = lrp(net, x, t, COMPOSITE)
    with torch.no_grad():
        ref, f = ref_resnet(net, x, t)
    torch.testing.assert_close(f, net(x)[0, t].detach(), rtol=1e-4, atol=1e-5)
    check(R, ref)
