"""torchvision classifiers with random weights for the LRP zoo tests (tests/test_lrp_zoo.py).

:func:`build` makes a model (random weights, ``num_classes=10``) with calibrated batch-norm
statistics (a few train-mode forwards on random images, ``momentum=None``: the average over
them) and, with ``zero_bias=True``, every bias-like term zero: convolution / dense / layer-norm
biases, and batch-norms turned into pure scalings ``x * gamma / sqrt(E[x^2])`` (running mean 0,
running variance the calibrated second moment, so activations keep their scale).
"""
from __future__ import annotations

import warnings

import torch
from torch import nn

torchvision = __import__("torchvision")

#: vision transformers: out of scope (attention)
TRANSFORMERS = ("vit_", "swin_", "maxvit_")


def cnn_names() -> list[str]:
    names = torchvision.models.list_models(module=torchvision.models)
    return [n for n in names if not n.startswith(TRANSFORMERS)]


def input_size(name: str, small: bool = True) -> int:
    if name.startswith("inception"):
        return 75 if small else 299
    if name.startswith(("alexnet",)):
        return 63 if small else 224
    return 32 if small else 224


def build(name: str, *, zero_bias: bool = True, seed: int = 0, dtype=torch.float64,
          size: int | None = None) -> tuple[nn.Module, torch.Tensor]:
    """``(model in eval mode, input (2, 3, s, s))`` of torchvision's ``name``."""
    torch.manual_seed(seed)
    kw = {"num_classes": 10}
    if name.startswith(("googlenet", "inception")):
        kw.update(aux_logits=False, init_weights=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = torchvision.models.get_model(name, **kw)
    model = model.to(dtype)
    s = size or input_size(name)
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(2, 3, s, s, generator=g, dtype=dtype)
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if bns:
        for m in bns:
            m.reset_running_stats()
            m.momentum = None
        model.train()
        with torch.no_grad():
            for _ in range(2):
                model(torch.randn(4, 3, s, s, generator=g, dtype=dtype))
    model.eval()
    if zero_bias:
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.running_var.add_(m.running_mean ** 2)
                    m.running_mean.zero_()
                    if m.weight is not None:
                        m.weight.uniform_(0.5, 1.5)
                    if m.bias is not None:
                        m.bias.zero_()
                elif getattr(m, "bias", None) is not None and isinstance(m.bias, torch.Tensor):
                    m.bias.zero_()
    return model, x
