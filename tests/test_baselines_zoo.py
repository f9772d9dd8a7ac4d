"""Grad-CAM, occlusion, the gradient baselines and FGVis (with the defence of Wagner et al. 2019)
on torchvision classifiers: random weights (``weights=None``), small inputs, few steps.

* Grad-CAM's default layer is the last spatial convolutional feature map (larger than 1 x 1 at
  the given input size), never a class-score conv (SqueezeNet) or a ViT's patch embedding.
* The defence intercepts every activation of VGG16, AlexNet, ResNet50, GoogLeNet (functional
  ``F.relu``), MobileNetV2 (ReLU6), EfficientNet (SiLU, sigmoid gates), ConvNeXt (GELU) and
  MobileNetV3 (Hardswish, Hardsigmoid).
* All methods run on VGG16, AlexNet, ResNet50 and GoogLeNet (the models of Wagner et al.'s
  Table 1) and leave the model as it was.
"""
from __future__ import annotations

import functools
import warnings

import pytest
import torch
from torch import nn

import lrpkit
from lrpkit import _activations as acts
from lrpkit.fgvis import Defence, defence_validation, gradcam, occlusion
from lrpkit.explain import eval_mode
from lrpkit.fgvis.baselines import default_gradcam_layer
from lrpkit.lrp.baselines import GradientFallbackWarning

tvm = pytest.importorskip("torchvision.models")
torch.set_num_threads(1)


@functools.cache
def model(name: str, size: int) -> nn.Module:
    """``torchvision.models.<name>(weights=None)`` with its batch-norm statistics calibrated
    on random images of ``size`` px (else GoogLeNet's output, say, does not depend on its
    input: its random weights shrink the signal to round-off)."""
    torch.manual_seed(0)
    # ConvNeXt's layer scale starts at 1e-6 (its blocks would barely matter); trained ones do
    kw = {"googlenet": {"init_weights": True}, "convnext_tiny": {"layer_scale": 1.0}}
    net = getattr(tvm, name)(weights=None, **kw.get(name, {}))
    bns = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if bns:
        for m in bns:
            m.reset_running_stats()
            m.momentum = None                     # cumulative average
        with torch.no_grad():
            net.train()(images(size, n=8, seed=99))
        for m in bns:
            m.momentum = 0.1
    return net.eval()


def images(size: int, n: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def differs(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Different beyond round-off, relative to their scale (random-weight models have tiny
    input gradients)."""
    return bool((a - b).abs().max() > 1e-3 * torch.maximum(a.abs().max(), b.abs().max()))


# ------------------------------------------------------------------------- Grad-CAM's layer
@pytest.mark.parametrize("name,size,layer", [
    ("vgg16", 64, "features"),
    ("vgg16", 32, "features.29"),          # features ends 1 x 1: its last ReLU (2 x 2)
    ("alexnet", 64, "features.11"),        # ditto (3 x 3 before the last max-pool)
    ("resnet50", 64, "layer4"),
    ("resnet50", 32, "layer3"),            # layer4 is 1 x 1; not a map inside its blocks
    ("googlenet", 64, "inception5b"),
    ("squeezenet1_0", 64, "features"),     # not classifier.1, the class-score conv
    ("densenet121", 64, "features"),
    ("mobilenet_v2", 64, "features"),
])
def test_gradcam_default_layer_is_the_last_spatial_feature_map(name, size, layer):
    net, x = model(name, size), images(size)
    assert default_gradcam_layer(net, x) == layer
    A = {}
    h = dict(net.named_modules())[layer].register_forward_hook(lambda m, i, o: A.setdefault("A", o))
    try:
        with torch.no_grad():
            net(x)
    finally:
        h.remove()
    A = A["A"]
    assert A.dim() == 4 and A.shape[2] * A.shape[3] > 1
    assert (A.flatten(2).std(2) > 0).any(1).all()            # it varies over space
    t = torch.tensor([3, 7])
    R = gradcam(net, x, t)
    torch.testing.assert_close(R, gradcam(net, x, t, layer=layer), rtol=0, atol=0)
    assert R.shape == x.shape and torch.isfinite(R).all() and (R >= 0).all()


def test_gradcam_refuses_a_vision_transformer():
    net = tvm.vit_b_16(weights=None, image_size=32).eval()
    with pytest.raises(ValueError, match=r"conv_proj.*token sequences.*transformer.*layer="):
        gradcam(net, images(32), 0)


def test_gradcam_fully_convolutional_head_and_wrappers():
    torch.manual_seed(0)
    fcn = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 4, 1), nn.AdaptiveAvgPool2d(1),
                        nn.Flatten())
    assert default_gradcam_layer(fcn, images(8)) == "1"          # not the class-score conv "2"

    class Wrapper(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = tvm.resnet18(weights=None, num_classes=3)

        def forward(self, x):
            return self.backbone(x)

    assert default_gradcam_layer(Wrapper().eval(), images(64)) == "backbone.layer4"


def test_gradcam_without_a_spatial_map_asks_for_layer():
    net = nn.Sequential(nn.Conv2d(3, 4, 3, stride=4), nn.ReLU(), nn.Flatten(), nn.Linear(4, 2))
    with pytest.raises(ValueError, match=r"larger than 1x1 at input size 4x4.*layer="):
        gradcam(net, images(4), 0)
    with pytest.raises(ValueError, match=r"no Conv2d.*layer="):
        gradcam(nn.Sequential(nn.Flatten(), nn.Linear(12, 2)), images(2), 0)


# ------------------------------------------------------------------------------ the defence
def _activation_calls(net: nn.Module, x: torch.Tensor) -> int:
    """Calls of activation modules (and of GoogLeNet's ``BasicConv2d``, whose forward calls
    ``F.relu``) in one forward."""
    n = [0]

    def count(*_):
        n[0] += 1

    hs = [m.register_forward_hook(count) for m in net.modules()
          if acts.activation_of(m) is not None or type(m).__name__ == "BasicConv2d"]
    try:
        with torch.no_grad():
            net(x)
    finally:
        for h in hs:
            h.remove()
    return n[0]


@pytest.mark.parametrize("name,size,kinds", [
    ("vgg16", 32, {"ReLU"}), ("alexnet", 64, {"ReLU"}), ("resnet50", 32, {"ReLU"}),
    ("googlenet", 32, {"ReLU"}), ("mobilenet_v2", 32, {"ReLU6"}),
    ("efficientnet_b0", 32, {"SiLU", "Sigmoid"}), ("convnext_tiny", 32, {"GELU"}),
    ("mobilenet_v3_small", 32, {"Hardswish", "Hardsigmoid", "ReLU"}),
])
def test_defence_intercepts_every_activation_of_torchvision_models(name, size, kinds):
    net, x = model(name, size), images(size)
    found = {acts.activation_of(m).name for m in net.modules() if acts.activation_of(m)}
    assert found == (kinds - {"ReLU"} if name == "googlenet" else kinds)
    d = Defence(net)
    with torch.no_grad():
        out_x = d.record(x)
        assert torch.equal(out_x, net(x))
    assert d.n_nonlinearities == _activation_calls(net, x) > 0
    e = (0.5 + images(size, seed=1)).clamp(0, 2) * x          # m * x, m > 1 in places
    e.requires_grad_(True)
    with d.clip():
        out = net(e)
    with torch.no_grad():
        assert torch.equal(out, net(e))                       # identity in the forward pass
    (g_held,) = torch.autograd.grad(out[:, 1].sum(), e)
    (g_free,) = torch.autograd.grad(net(e)[:, 1].sum(), e)
    assert torch.isfinite(g_held).all() and g_held.abs().sum() > 0
    assert differs(g_held, g_free)                            # some activations were clipped


# ------------------------------------------------------------ all methods on Table 1's models
def _snapshot(net: nn.Module):
    return {"state": {k: v.clone() for k, v in net.state_dict().items()},
            "training": [m.training for m in net.modules()],
            "grad": [(p.requires_grad, p.grad) for p in net.parameters()],
            "hooks": [(dict(m._forward_hooks), dict(m._forward_pre_hooks),
                       dict(m._backward_hooks)) for m in net.modules()],
            "attrs": [sorted(vars(m)) for m in net.modules()]}


def _assert_unchanged(net, snap, x, out):
    now = _snapshot(net)
    assert now["state"].keys() == snap["state"].keys()
    assert all(torch.equal(now["state"][k], v) for k, v in snap["state"].items())
    for key in ("training", "grad", "hooks", "attrs"):
        assert now[key] == snap[key], key
    with torch.no_grad(), eval_mode(net):
        assert torch.equal(net(x), out)
    from torch.overrides import _get_current_function_mode_stack
    assert not _get_current_function_mode_stack()


TABLE1 = [("vgg16", 32), ("alexnet", 64), ("resnet50", 32), ("googlenet", 32)]


@pytest.mark.slow
@pytest.mark.parametrize("name,size", TABLE1)
def test_all_methods_run_on_table1_models_and_leave_them_unchanged(name, size):
    net, x = model(name, size), images(size)
    with torch.no_grad():
        out = net(x)
    net.train()                                   # a training flag that must come back
    snap = _snapshot(net)
    try:
        t = torch.tensor([5, 9])
        res = {}
        with warnings.catch_warnings():
            warnings.simplefilter("error", GradientFallbackWarning)   # ReLU networks
            for m in ("sensitivity", "deconvnet", "guided_backprop", "gradient_x_input"):
                res[m] = lrpkit.explain(net, x, t, method=m, **({} if m == "gradient_x_input"
                                                                 else {"norm": None}))
        assert differs(res["deconvnet"], res["sensitivity"])
        assert differs(res["guided_backprop"], res["sensitivity"])
        res["gradcam"] = gradcam(net, x, t)
        res["occlusion"] = occlusion(net, x, t, window=16, stride=16)
        res["fgvis"] = lrpkit.explain(net, x, t, method="fgvis", steps=3)
        for k, r in res.items():
            assert r.shape == x.shape and torch.isfinite(r).all() and r.abs().sum() > 0, k
        table1 = defence_validation(net, x, confidence=0.0, max_images=1, steps=3,
                                    patience=None)
        assert list(table1["defence"].values) == ["off", "on"]
        assert int(table1["steps_run"].sel(defence="on")[0]) >= 1
        _assert_unchanged(net, snap, x, out)
    finally:
        net.eval()
