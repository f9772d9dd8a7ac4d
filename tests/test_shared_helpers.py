"""The private helpers shared across packages: blur, frozen model, model device, scene backgrounds."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import ndimage
from torch import nn

from lrpkit._blur import gaussian_blur
from lrpkit._device import model_device
from lrpkit._freeze import frozen
from lrpkit.data.backgrounds import BACKGROUNDS, render_background


@pytest.mark.parametrize("sigma, radius, shape, mode", [
    (1.3, None, (2, 3, 17, 23), "mirror"),      # radius round(3 sigma) = 4; torch reflect = scipy mirror
    (2.5, 5, (1, 2, 20, 12), "mirror"),         # evaluate's substrate: radius ceil(2 sigma)
    (2.0, None, (1, 1, 5, 6), "nearest"),       # radius 6 >= the image: replicated borders
])
def test_gaussian_blur_is_scipys_truncated_gaussian(sigma, radius, shape, mode):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    r = radius if radius is not None else round(3 * sigma)
    ref = ndimage.gaussian_filter(x.numpy(), (0, 0, sigma, sigma), mode=mode, radius=(0, 0, r, r))
    out = gaussian_blur(x, sigma, radius=radius)
    assert out.shape == x.shape
    assert np.allclose(out.numpy(), ref, atol=1e-12)
    assert not np.allclose(out.numpy(), x.numpy())


def test_gaussian_blur_truncate_and_identity():
    x = torch.rand(1, 3, 16, 16)
    wide = gaussian_blur(x, 1.5, truncate=4.0)                       # radius 6
    assert torch.equal(wide, gaussian_blur(x, 1.5, radius=6))
    assert not torch.equal(wide, gaussian_blur(x, 1.5))            # radius round(4.5) = 4 by default
    y = gaussian_blur(x, 0.0)
    assert torch.equal(y, x) and y is not x
    with pytest.raises(ValueError, match="N, C, H, W"):
        gaussian_blur(x[0], 1.0)
    assert torch.allclose(gaussian_blur(torch.full((1, 1, 9, 9), 0.7), 2.0), torch.tensor(0.7))


def test_evaluate_and_fgvis_blurs_keep_their_radii():
    from lrpkit.evaluate.perturbation import _replacement_source
    from lrpkit.fgvis import make_reference

    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    low = torch.zeros(3, 1, 1)
    assert torch.equal(_replacement_source("blur", x, low, low, 5.2), gaussian_blur(x, 5.2, radius=math.ceil(10.4)))
    assert torch.equal(make_reference(x, "blur", blur_sigma=1.1), gaussian_blur(x, 1.1, radius=3))


class _BN(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 3)
        self.bn = nn.BatchNorm1d(3)

    def forward(self, x):
        return self.bn(self.lin(x))


def test_frozen_restores_every_flag_and_writes_no_gradient():
    net = _BN().train()
    net.lin.bias.requires_grad_(False)                 # a mixed state must come back as it was
    stats = net.bn.running_mean.clone()
    x = torch.randn(4, 3, requires_grad=True)
    with frozen(net) as m:
        assert m is net and not net.training and not net.bn.training
        assert not any(p.requires_grad for p in net.parameters())
        net(x).sum().backward()
    assert x.grad is not None and all(p.grad is None for p in net.parameters())
    assert torch.equal(net.bn.running_mean, stats)     # eval mode: statistics untouched
    assert net.training and net.bn.training
    assert net.lin.weight.requires_grad and not net.lin.bias.requires_grad
    with pytest.raises(RuntimeError, match="boom"):
        with frozen(net):
            raise RuntimeError("boom")
    assert net.training and net.lin.weight.requires_grad
    with pytest.raises(TypeError, match="torch.nn.Module"):
        with frozen(lambda v: v):
            pass


def test_model_device():
    class Buffers(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("b", torch.zeros(1, dtype=torch.float64, device="meta"))

    assert model_device(nn.Linear(2, 2)) == torch.device("cpu")
    assert model_device(nn.Linear(2, 2, device="meta")) == torch.device("meta")
    assert model_device(Buffers()) == torch.device("meta")
    assert model_device(nn.ReLU(), default="meta") == torch.device("meta")
    assert model_device(object()) == torch.device("cpu")


@pytest.mark.parametrize("variants", [False, True])
def test_render_background(variants):
    for name in BACKGROUNDS:
        bg = render_background(name, np.random.default_rng(3), 40, 30, variants=variants)
        assert bg.image.shape == (30, 40, 3) and bg.image.dtype == np.float32
        assert (bg.variant != "") == variants and (math.isnan(bg.horizon) != variants)
    with pytest.raises(ValueError, match="unknown background 'desert'.*sky"):
        render_background("desert", np.random.default_rng(0), 40, 30, variants=variants)
