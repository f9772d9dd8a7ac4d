"""Canonizers: reversible views of a model that make LRP's rules apply cleanly.

The model itself is never modified.  During an explanation (inside the engine's context
manager) the engine

* **folds batch-norm** into the convolution that feeds it (:func:`find_bn_pairs`,
  :func:`fold_bn`): the convolution computes with ``W' = W * s`` and
  ``b' = (b - mu) * s + beta`` where ``s = gamma / sqrt(var + eps)``, and the batch-norm
  passes its input through; the output is the same (eval mode), but the rule sees one
  affine layer, as LRP requires.  The pairing is checked at run time: the batch-norm must
  receive exactly the convolution's output.
* makes **residual additions explicit** (:func:`residual_blocks`, :func:`block_forward`):
  torchvision's ``BasicBlock`` / ``Bottleneck`` compute ``out += identity`` inside their
  ``forward``; the engine swaps in an equivalent forward (an instance attribute removed
  afterwards) whose addition is a relevance-aware sum named ``"<block>.add"`` (rule kind
  ``"sum"``: ``R_a = a / (a + b) R``, 0/0 := 0).
"""
from __future__ import annotations

import re
from typing import Callable

import torch
from torch import nn

__all__ = ["find_bn_pairs", "fold_bn", "residual_blocks", "block_forward"]


def find_bn_pairs(model: nn.Module, named=None) -> dict[str, str]:
    """``{batchnorm name: conv name}`` for batch-norms applied directly to a convolution.

    Found in ``nn.Sequential`` (adjacent children) and in modules with children named
    ``convK`` / ``bnK`` (torchvision ResNet, its stem and blocks).
    """
    pairs: dict[str, str] = {}
    for pname, parent in (named if named is not None else model.named_modules()):
        prefix = f"{pname}." if pname else ""
        children = list(parent.named_children())
        if isinstance(parent, nn.Sequential):
            for (cn, c), (bn_name, b) in zip(children, children[1:]):
                if _foldable(c, b):
                    pairs[prefix + bn_name] = prefix + cn
        else:
            named = dict(children)
            for bn_name, b in children:
                m = re.fullmatch(r"bn(\d*)", bn_name)
                if m and f"conv{m.group(1)}" in named and _foldable(named[f"conv{m.group(1)}"], b):
                    pairs[prefix + bn_name] = prefix + f"conv{m.group(1)}"
    return pairs


def _foldable(conv: nn.Module, bn: nn.Module) -> bool:
    return (isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)
            and bn.num_features == conv.out_channels and bn.running_mean is not None
            and bn.running_var is not None)


@torch.no_grad()
def fold_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of ``bn(conv(x))`` as one convolution (eval-mode statistics)."""
    w = conv.weight.detach()
    scale = torch.rsqrt(bn.running_var.detach() + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight.detach()
    b = conv.bias.detach() if conv.bias is not None else torch.zeros_like(scale)
    shift = bn.bias.detach() if bn.bias is not None else torch.zeros_like(scale)
    return (w * scale.reshape(-1, 1, 1, 1)).to(w.dtype), ((b - bn.running_mean) * scale + shift).to(w.dtype)


def residual_blocks(model: nn.Module, named=None) -> list[tuple[str, nn.Module]]:
    """torchvision ``BasicBlock`` / ``Bottleneck`` modules of a model, by name."""
    try:
        from torchvision.models.resnet import BasicBlock, Bottleneck
    except Exception:  # pragma: no cover - torchvision missing
        return []
    named = named if named is not None else model.named_modules()
    return [(n, m) for n, m in named if type(m) in (BasicBlock, Bottleneck)]


def block_forward(block: nn.Module, add: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]):
    """torchvision's block forward with ``out += identity`` replaced by ``add(out, identity)``."""
    has3 = hasattr(block, "conv3")

    def forward(x):
        identity = x
        out = block.relu(block.bn1(block.conv1(x)))
        out = block.bn2(block.conv2(out))
        if has3:
            out = block.bn3(block.conv3(block.relu(out)))
        if block.downsample is not None:
            identity = block.downsample(x)
        return block.relu(add(out, identity))

    return forward
