"""LRP on every torchvision CNN classifier (random weights, float64, small inputs).

* every model runs ``epsilon``, ``epsilon_plus_flat`` and ``alpha2_beta1`` to finite maps and is
  unchanged afterwards (state, forward, hooks, instance attributes, ``requires_grad``);
* with zero biases and epsilon 1e-12 the epsilon composite (LRP-0 in the limit) conserves,
  ``sum(R) / f_c(x) = 1`` within 1e-6, on every model: every routed operation, gate, layer norm
  and sum passes relevance exactly.  ``epsilon_plus_flat`` (z+) conserves where every unit that
  receives relevance has a positive contribution: in the nets whose convolutions all feed a
  rectifier (below, :data:`RECTIFIED`); in linear bottlenecks (MobileNet, EfficientNet, MnasNet,
  ShuffleNet) and with alpha-beta, units with ``z+_j = 0`` (or ``z-_j = 0``) drop (or double)
  their relevance -- a property of the rules (zennit the same), not of the engine;
* where zennit conserves (VGG, ResNet, GoogLeNet, SqueezeNet, ShuffleNet) lrpkit's heatmap equals
  zennit's within 1e-6 relative.

The models in :data:`LARGE` (minutes of random initialisation in float64 for the largest) run
only with ``LRPKIT_ZOO=all``; the default set (one or more of every family) takes about
two minutes on two cores.
"""
from __future__ import annotations

import os

import pytest
import torch
from torch import nn

from lrpkit.lrp import Flat, lrp

pytest.importorskip("torchvision")
from zoo import build, cnn_names

torch.set_num_threads(1)

#: slow to build and explain in float64: run with LRPKIT_ZOO=all
LARGE = {"convnext_small", "convnext_base", "convnext_large", "densenet161", "densenet169",
         "densenet201", "efficientnet_b3", "efficientnet_b4", "efficientnet_b5", "efficientnet_b6", "efficientnet_b7",
         "efficientnet_v2_s", "efficientnet_v2_m", "efficientnet_v2_l", "regnet_x_8gf",
         "regnet_x_16gf", "regnet_x_32gf", "regnet_y_8gf", "regnet_y_16gf", "regnet_y_32gf",
         "regnet_y_128gf", "resnet152", "resnext101_32x8d", "resnext101_64x4d",
         "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn", "wide_resnet50_2",
         "wide_resnet101_2"}
#: every convolution feeds a rectifier (directly or through a sum): z+ conserves
RECTIFIED = ("alexnet", "vgg", "resnet", "wide_resnet", "resnext", "densenet", "googlenet",
             "inception", "squeezenet", "regnet_y")
ALL = os.environ.get("LRPKIT_ZOO") == "all"


def zoo_params(names):
    out = []
    for n in names:
        marks = []
        if n in LARGE:
            marks = [pytest.mark.slow,
                     pytest.mark.skipif(not ALL, reason="large model: set LRPKIT_ZOO=all")]
        out.append(pytest.param(n, marks=marks, id=n))
    return out


def snapshot(net):
    return ({k: v.clone() for k, v in net.state_dict().items()},
            [p.requires_grad for p in net.parameters()],
            [(len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks),
              sorted(k for k in m.__dict__ if k == "forward" or k.startswith("_lrpkit")),
              m.training) for m in net.modules()])


def test_every_cnn_classifier_is_listed():
    names = cnn_names()
    assert len(names) >= 60 and "densenet121" in names and "vit_b_16" not in names
    assert LARGE <= set(names)


@pytest.mark.parametrize("name", zoo_params(cnn_names()))
def test_zoo_runs_conserves_and_leaves_the_model_unchanged(name):
    model, x = build(name)
    before = snapshot(model)
    out = model(x).detach()
    t = out.abs().argmax(1)
    f = out[torch.arange(len(t)), t]
    for comp in ("epsilon", "epsilon_plus_flat", "alpha2_beta1"):
        R = lrp(model, x, t, comp, epsilon=1e-12)
        assert R.shape == x.shape and R.dtype == x.dtype and torch.isfinite(R).all(), comp
        ratio = R.sum((1, 2, 3)) / f
        if comp == "epsilon" or (comp == "epsilon_plus_flat" and name.startswith(RECTIFIED)):
            err = float((ratio - 1).abs().max())
            assert err < 1e-6, f"{name} {comp}: sum(R)/f = {ratio.tolist()}"
    after = snapshot(model)
    for k, v in before[0].items():
        assert torch.equal(after[0][k], v), k
    assert after[1:] == before[1:]
    torch.testing.assert_close(model(x).detach(), out, rtol=0, atol=0)


# ------------------------------------------------------------------ against zennit
ZENNIT = ["vgg11_bn", "resnet18", "resnet50", "googlenet", "squeezenet1_0", "squeezenet1_1",
          "shufflenet_v2_x0_5"]


def zennit_composite(name, comp, eps):
    zc = pytest.importorskip("zennit.composites")
    from zennit.canonizers import SequentialMergeBatchNorm
    from zennit.rules import Epsilon as ZEpsilon
    from zennit.torchvision import ResNetCanonizer
    from zennit.types import Convolution

    tiny = 1e-30   # zennit's stabiliser (lrpkit's z+ / alpha-beta / sums have none)
    canon = [ResNetCanonizer()] if name.startswith("resnet") else [SequentialMergeBatchNorm()]
    if comp == "epsilon_plus_flat":
        return zc.EpsilonPlusFlat(epsilon=eps, stabilizer=tiny, canonizers=canon)
    if comp == "alpha2_beta1":
        return zc.EpsilonAlpha2Beta1(epsilon=eps, stabilizer=tiny, canonizers=canon)
    return zc.LayerMapComposite(layer_map=zc.layer_map_base(tiny) + [
        (Convolution, ZEpsilon(eps)), (nn.Linear, ZEpsilon(eps))], canonizers=canon)


def second_best(out):
    """Per sample the second-largest positive score (else the largest): not the arg-max."""
    order = out.argsort(1, descending=True)
    t = order[:, 1].clone()
    bad = out.gather(1, t[:, None])[:, 0] <= 0
    t[bad] = order[bad, 0]
    return t


@pytest.mark.parametrize("name", ZENNIT)
def test_zoo_equals_zennit(name):
    from zennit.attribution import Gradient

    model, x = build(name, zero_bias=False)           # biases and BN shifts as initialised
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.eps = 0.0   # zennit's merged batch-norm computes x / sqrt(1 + eps) afterwards
    out = model(x).detach()
    t = second_best(out)
    onehot = torch.zeros_like(out)
    onehot[torch.arange(len(t)), t] = out[torch.arange(len(t)), t]
    # ShuffleNet pools with x.mean((2, 3)), which zennit does not see: it passes the mean's
    # gradient (a uniform split, the flat rule), lrpkit's default is the pool's z-rule
    rules = {"mean": Flat()} if name.startswith("shufflenet") else None
    for comp in ("epsilon", "epsilon_plus_flat", "alpha2_beta1"):
        R = lrp(model, x, t, comp, epsilon=0.01, rules=rules)
        with Gradient(model=model, composite=zennit_composite(name, comp, 0.01)) as attributor:
            _, Rz = attributor(x, onehot)
        err = float((R - Rz).abs().max() / Rz.abs().max())
        assert err < 1e-6, f"{name} {comp}: max relative difference to zennit {err:.1e}"


@pytest.mark.parametrize("name", ["googlenet", "inception_v3"])
def test_transform_input_is_the_affine_input_layer(name):
    """``transform_input=True`` re-encodes x per channel (x' = s x + t): the heatmap is that of
    the same net without it on x' (relevance passes the re-encoding) and conservation holds."""
    model, x = build(name)
    model.transform_input = True
    plain, _ = build(name)
    plain.load_state_dict(model.state_dict())
    with torch.no_grad():
        xt = type(model)._transform_input(model, x)
        torch.testing.assert_close(model(x), plain(xt))
    out = model(x).detach()
    t = out.abs().argmax(1)
    for comp in ("epsilon", "epsilon_plus_flat"):
        R = lrp(model, x, t, comp, epsilon=1e-12)
        torch.testing.assert_close(R, lrp(plain, xt, t, comp, epsilon=1e-12))
        f = out[torch.arange(len(t)), t]
        torch.testing.assert_close(R.sum((1, 2, 3)) / f, torch.ones_like(f), rtol=0, atol=1e-6)
    assert "_transform_input" not in model.__dict__
