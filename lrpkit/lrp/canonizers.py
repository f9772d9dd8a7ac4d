"""Canonizers: reversible views of a model that make LRP's rules apply cleanly.

A canonizer is a small object with :meth:`Canonizer.apply` (called by the attributor on
entry, after the layers got their rule-aware forwards) and :meth:`Canonizer.restore` (called
on exit, also after an exception).  It never changes parameters: it swaps module forwards
(instance attributes, removed on restore) and tells the attributor what to compute with.
The attributor takes them as a list, ``LRP(model, canonize=[BatchNormFold(), ResidualSums()])``
(``canonize=True``: :func:`default_canonizers`, ``False``: none).

* :class:`BatchNormFold` folds a batch-norm into the convolution that feeds it
  (:func:`find_bn_pairs`, :func:`fold_bn`): the convolution computes with ``W' = W * s`` and
  ``b' = (b - mu) * s + beta`` where ``s = gamma / sqrt(var + eps)``, and the batch-norm
  passes its input through; the output is the same (eval mode), but the rule sees one affine
  layer, as LRP requires.  The pairing is checked at run time: the batch-norm must receive
  exactly the convolution's output.
* :class:`ResidualSums` makes residual additions explicit (:func:`residual_blocks`,
  :func:`block_forward`): torchvision's ``BasicBlock`` / ``Bottleneck`` compute
  ``out += identity`` inside their ``forward``; the canonizer swaps in an equivalent forward
  whose addition is an op like any other layer, named ``"<block>.add"`` (kind ``"sum"``,
  default rule ``Zero``: ``R_a = a / (a + b) R``, 0/0 := 0).

What a canonizer may ask of the attributor: ``attributor.active`` (an explanation is running),
``attributor.ops[name]`` (a layer's op; ``op.substitute = (w, b)`` replaces its parameters),
``attributor.produced_by(t)`` (the layer whose op computed tensor ``t``) and
``attributor.add_op(name)`` (a relevance-aware ``a + b``).
"""
from __future__ import annotations

import re
from typing import Any, Callable

import torch
from torch import nn

from .layers import UnsupportedLayerError

__all__ = ["Canonizer", "BatchNormFold", "ResidualSums", "default_canonizers", "find_bn_pairs",
           "fold_bn", "residual_blocks", "block_forward"]


class ForwardPatches:
    """Instance-level ``forward`` replacements of modules, undone in reverse order by
    :meth:`restore` (a module that had its own instance ``forward`` gets it back)."""

    def __init__(self):
        self._undo: list = []

    def __bool__(self) -> bool:
        return bool(self._undo)

    def patch(self, module: nn.Module, forward: Callable) -> None:
        had = "forward" in module.__dict__
        self._undo.append((module, had, module.__dict__.get("forward")))
        module.__dict__["forward"] = forward  # an instance attribute; nn.Module.__setattr__ is not needed

    def restore(self) -> None:
        for m, had, old in reversed(self._undo):
            if had:
                m.__dict__["forward"] = old
            else:
                m.__dict__.pop("forward", None)
        self._undo = []


class Canonizer:
    """Base class: ``apply(model, attributor)`` changes how the model computes during an
    explanation, ``restore()`` undoes it.  :meth:`patch` swaps a module's forward and is
    undone by the base class's :meth:`restore`."""

    def __init__(self):
        self._patches = ForwardPatches()

    def apply(self, model: nn.Module, attributor: Any) -> None:  # pragma: no cover
        raise NotImplementedError

    def restore(self) -> None:
        self._patches.restore()

    def patch(self, module: nn.Module, forward: Callable) -> None:
        self._patches.patch(module, forward)  # an instance attribute, removed by restore()

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class BatchNormFold(Canonizer):
    """Fold each batch-norm into the convolution that feeds it (see module doc)."""

    def apply(self, model, attributor):
        self._ops = []
        for bn_name, conv_name in find_bn_pairs(model, attributor.named_modules).items():
            conv, bn = attributor.modules[conv_name], attributor.modules[bn_name]
            op = attributor.ops[conv_name]
            op.substitute = fold_bn(conv, bn)
            self._ops.append(op)
            self.patch(bn, self._pass_forward(attributor, bn, bn_name, conv_name))

    @staticmethod
    def _pass_forward(attributor, bn, bn_name, conv_name):
        orig = bn.__dict__.get("forward", bn.forward)

        def forward(x, *a, **k):
            if not attributor.active:
                return orig(x, *a, **k)
            if attributor.produced_by(x) != conv_name:
                raise UnsupportedLayerError(
                    f"batch-norm {bn_name!r} was paired with convolution {conv_name!r} for "
                    f"folding but does not receive its output; pass canonize=False")
            attributor.tag(x, bn_name)
            return x
        return forward

    def restore(self):
        for op in getattr(self, "_ops", []):
            op.substitute = None
        self._ops = []
        super().restore()


class ResidualSums(Canonizer):
    """torchvision ``BasicBlock`` / ``Bottleneck``: ``out += identity`` becomes the op
    ``"<block>.add"`` (see module doc)."""

    def apply(self, model, attributor):
        for name, blk in residual_blocks(model, attributor.named_modules):
            self.patch(blk, block_forward(blk, attributor.add_op(f"{name}.add")))


def default_canonizers() -> list[Canonizer]:
    """Fresh instances of the canonizers ``canonize=True`` uses."""
    return [BatchNormFold(), ResidualSums()]


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
            kids = dict(children)
            for bn_name, b in children:
                m = re.fullmatch(r"bn(\d*)", bn_name)
                if m and f"conv{m.group(1)}" in kids and _foldable(kids[f"conv{m.group(1)}"], b):
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
    return ((w * scale.reshape(-1, 1, 1, 1)).to(w.dtype),
            ((b - bn.running_mean) * scale + shift).to(w.dtype))


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
