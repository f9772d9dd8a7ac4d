"""LRP on torchvision models (random weights) and the [Foundation] SceneCNN."""
from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest
import torch
from torch import nn

import lrpkit
from lrpkit.lrp import AlphaBeta, Composite, lrp

torchvision = pytest.importorskip("torchvision")
torch.set_num_threads(1)

AB10 = Composite({"conv": AlphaBeta(1, 0), "linear": AlphaBeta(1, 0)}, name="ab10")


def zero_biases(net):
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None:
                m.bias.zero_()
            if isinstance(m, nn.BatchNorm2d):
                # keep a non-trivial scale; make the folded bias zero
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.running_mean.zero_()
                m.bias.zero_()
    return net.eval()


def check_conservation(net, x, comps=("zplus", AB10, "flat")):
    """sum R == f_c(x): exactly (float64, 1e-9 relative) and as users see it (float32, 1e-4).

    The float64 copy tests the rules' algebra; float32 sums over ~1e5 terms per layer round at
    the 1e-5 level on deep nets (VGG11 flat: 3.6e-5), which says nothing about the rules.
    """
    out = net(x).detach()
    t = out.argmax(1)
    f = out[torch.arange(len(t)), t]
    net64, x64 = copy.deepcopy(net).double(), x.double()
    f64 = net64(x64).detach()[torch.arange(len(t)), t]
    for comp in comps:
        R = lrp(net, x, t, comp)
        assert R.shape == x.shape and R.dtype == x.dtype
        torch.testing.assert_close(R.sum((1, 2, 3)), f, rtol=1e-4, atol=1e-6 * f.abs().max())
        R64 = lrp(net64, x64, t, comp)
        torch.testing.assert_close(R64.sum((1, 2, 3)), f64, rtol=1e-9, atol=1e-12 * f64.abs().max())


def test_vgg11_conservation():
    torch.manual_seed(0)
    net = zero_biases(torchvision.models.vgg11(num_classes=10))
    check_conservation(net, torch.randn(1, 3, 64, 64))


def test_vgg16_runs_and_conserves_in_float32():
    """torchvision VGG16 as it is (random weights; float32 only: its 25088x4096 layer in float64
    would cost 1 GB): z+ conserves to float32 rounding, every preset gives finite maps."""
    torch.manual_seed(0)
    net = zero_biases(torchvision.models.vgg16(num_classes=5))
    x = torch.randn(1, 3, 32, 32)
    f = net(x)[0, 2].detach()
    R = lrp(net, x, 2, "zplus")
    torch.testing.assert_close(R.sum(), f, rtol=1e-4, atol=1e-6 * abs(float(f)))
    for comp in ("alpha2_beta1", "epsilon_plus_flat", "epsilon"):
        assert torch.isfinite(lrp(net, x, 2, comp)).all()


def test_resnet18_conservation_and_unchanged():
    torch.manual_seed(0)
    net = zero_biases(torchvision.models.resnet18(num_classes=10))
    x = torch.randn(1, 3, 64, 64)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    check_conservation(net, x)
    R = lrp(net, x, 3, "epsilon_alpha2_beta1_flat")
    assert torch.isfinite(R).all()
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all("forward" not in m.__dict__ for m in net.modules())


def test_resnet50_bottleneck_and_alexnet_run():
    torch.manual_seed(0)
    for net in (torchvision.models.resnet50(num_classes=5), torchvision.models.alexnet(num_classes=5)):
        net = zero_biases(net)
        x = torch.randn(1, 3, 64 if isinstance(net, torchvision.models.ResNet) else 96,
                        64 if isinstance(net, torchvision.models.ResNet) else 96)
        check_conservation(net, x, comps=("zplus",))
        assert torch.isfinite(lrp(net, x, 0, "epsilon_plus_flat")).all()


def test_resnet18_lrp0_equals_gradient_x_input():
    torch.manual_seed(1)
    net = torchvision.models.resnet18(num_classes=4).eval()
    x = torch.randn(1, 3, 32, 32)
    torch.testing.assert_close(lrp(net, x, 2, "lrp0"),
                               lrpkit.explain(net, x, 2, method="gradient_x_input"),
                               rtol=1e-3, atol=1e-5)


def test_scene_cnn():
    models = pytest.importorskip("lrpkit.models")
    torch.manual_seed(0)
    net = models.SceneCNN(n_classes=6, width=8, hidden=32, input_size=32).eval()
    zero_biases(net)
    x = torch.randn(2, 3, 32, 32)
    check_conservation(net, x)
    R = lrpkit.explain(net, x, "pred", method="lrp", cutoff="features.3")
    assert R.shape == x.shape and torch.isfinite(R).all()


@pytest.fixture(scope="module")
def trained_cnn_path(scenes_root, tmp_path_factory):
    """The default model when `lrpkit all` has made one, else a scene CNN trained here (seconds)."""
    from lrpkit.models import train_cnn

    root = Path(__file__).resolve().parents[1]
    for p in [os.environ.get("LRPKIT_TRAINED_CNN"), root / "data" / "models" / "cnn" / "cnn.pt"]:
        if p and Path(p).exists():
            return Path(p)
    out = tmp_path_factory.mktemp("trained_cnn")
    res = train_cnn(scenes_root, out, epochs=3, size=40, crop=32, width=8, mult=(1, 2, 4), hidden=32,
                    checkpoints=(), progress=False, test_split=None)
    return res.final_path


def test_trained_scene_cnn(trained_cnn_path, scenes_root):
    from lrpkit.data import VOCDataset
    from lrpkit.data.transforms import to_tensor_batch

    models = pytest.importorskip("lrpkit.models")
    net = models.load_cnn(trained_cnn_path).eval()
    ds = VOCDataset(scenes_root, "test")
    x = to_tensor_batch([ds[i][0] for i in range(3)], net.meta["size"], net.meta["input_size"])
    # the trained net has biases: conservation holds for a bias-free copy
    nb = models.load_cnn(trained_cnn_path).eval()
    with torch.no_grad():
        for m in nb.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None:
                m.bias.zero_()
    check_conservation(nb, x)
    for comp in ("alpha2_beta1", "epsilon_plus_flat", "epsilon"):
        assert torch.isfinite(lrp(net, x, "pred", comp)).all()
