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
  exactly the convolution's output (a pairing that fails is dropped and the explanation
  repeated).  Batch-norms that precede their convolution (DenseNet's pre-activation) stay
  affine layers of their own (kind ``"bn"``, default ``Epsilon``).
* :class:`ResidualSums` makes residual additions explicit (:func:`residual_blocks`,
  :func:`block_forward`): torchvision's ``BasicBlock`` / ``Bottleneck`` compute
  ``out += identity`` inside their ``forward``; the canonizer swaps in an equivalent forward
  whose addition is an op like any other layer, named ``"<block>.add"`` (kind ``"sum"``,
  default rule ``Zero``: ``R_a = a / (a + b) R``, 0/0 := 0).  (Sums anywhere else are routed
  by the engine the same way, e.g. ``x + self.conv(x)`` in MobileNet-v2.)
* :class:`InputTransform`: GoogLeNet's / Inception-v3's ``transform_input`` as the affine
  input layer ``"transform_input"`` (relevance passes the per-channel re-encoding).

What a canonizer may ask of the attributor: ``attributor.active`` (an explanation is running),
``attributor.ops[name]`` (a layer's op; ``op.substitute = (w, b)`` replaces its parameters),
``attributor.produced_by(t)`` (the layer whose op computed tensor ``t``) and
``attributor.add_op(name)`` (a relevance-aware ``a + b``).
"""
from __future__ import annotations

import re
import sys
from typing import Any
from collections.abc import Callable

import torch
from torch import nn


__all__ = ["Canonizer", "BatchNormFold", "ResidualSums", "InputTransform", "Rerun",
           "default_canonizers", "find_bn_pairs", "fold_bn", "residual_blocks", "block_forward"]


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
        self._pairs: dict[str, tuple] = {}
        for bn_name, conv_name in find_bn_pairs(model, attributor.named_modules).items():
            conv, bn = attributor.modules[conv_name], attributor.modules[bn_name]
            op = attributor.ops.get(conv_name)
            if op is None or op.kind != "conv" or bn_name not in attributor.ops:
                continue        # a subclass with its own forward: not a plain conv / BN
            op.substitute = fold_bn(conv, bn)
            self._ops.append(op)
            orig = bn.__dict__.get("forward", bn.forward)
            self._pairs[bn_name] = (op, bn, orig)
            self.patch(bn, self._pass_forward(attributor, bn_name, conv_name, orig))

    def _pass_forward(self, attributor, bn_name, conv_name, orig):
        def forward(x, *a, **k):
            if not attributor.active:
                return orig(x, *a, **k)
            if attributor.produced_by(x) != conv_name:
                # the pairing (module order) was wrong: undo it and explain again
                raise Rerun(lambda: self._unfold(bn_name))
            attributor.tag(x, bn_name)
            return x
        return forward

    def _unfold(self, bn_name):
        op, bn, orig = self._pairs.pop(bn_name)
        op.substitute = None
        bn.__dict__["forward"] = orig

    def restore(self):
        for op in getattr(self, "_ops", []):
            op.substitute = None
        self._ops = []
        self._pairs = {}
        super().restore()


class Rerun(Exception):
    """Internal: an assumption of a canonizer failed on this model; the attributor calls
    ``fix()`` (which drops it) and repeats the explanation."""

    def __init__(self, fix: Callable[[], None]):
        super().__init__("canonizer assumption failed")
        self.fix = fix


class ResidualSums(Canonizer):
    """torchvision ``BasicBlock`` / ``Bottleneck``: ``out += identity`` becomes the op
    ``"<block>.add"`` (see module doc)."""

    def apply(self, model, attributor):
        for name, blk in residual_blocks(model, attributor.named_modules):
            self.patch(blk, block_forward(blk, attributor.add_op(f"{name}.add")))


class InputTransform(Canonizer):
    """torchvision's GoogLeNet / Inception-v3 with ``transform_input=True`` re-encode the
    ImageNet-normalised input for weights trained on ``[-1, 1]`` inputs: per channel
    ``x' = x * s_c + t_c``.  The canonizer makes this the affine input layer it is, the op
    ``"transform_input"`` (kind ``"scale"``): a fixed, invertible per-pixel change of units
    with default rule ``Pass`` (every pixel keeps the relevance of its re-encoded value, so the
    heatmap equals that of the re-encoded input and conservation holds).  Without it the
    engine would route the same arithmetic as a product and a sum with a constant, where the
    constant ``t_c`` absorbs a share of the relevance like a bias."""

    def apply(self, model, attributor):
        for name, m in attributor.named_modules:
            if getattr(m, "transform_input", False) and hasattr(type(m), "_transform_input"):
                self.patch_method(m, attributor, f"{name}.transform_input" if name
                                  else "transform_input")

    def patch_method(self, m, attributor, name):
        from .layers import ProductOp

        scale, shift = _transform_affine(m)
        fwd = attributor.affine_input(name, lambda t: t * scale.to(t) + shift.to(t),
                                      ProductOp)
        had = "_transform_input" in m.__dict__
        m.__dict__["_transform_input"] = fwd
        self._undo_attr.append((m, had))

    def __init__(self):
        super().__init__()
        self._undo_attr: list = []

    def restore(self):
        for m, had in reversed(self._undo_attr):
            if not had:
                m.__dict__.pop("_transform_input", None)
        self._undo_attr = []
        super().restore()


def _transform_affine(m) -> tuple[torch.Tensor, torch.Tensor]:
    """``(s, t)`` of torchvision's ``_transform_input`` (per channel, shape (1, 3, 1, 1)),
    read off the method itself on the points 0 and 1."""
    with torch.no_grad():
        probe = torch.stack([torch.zeros(3, 1, 1), torch.ones(3, 1, 1)])
        out = type(m)._transform_input(m, probe)
    return (out[1] - out[0]).reshape(1, 3, 1, 1), out[0].reshape(1, 3, 1, 1)


def default_canonizers() -> list[Canonizer]:
    """Fresh instances of the canonizers ``canonize=True`` uses."""
    return [BatchNormFold(), ResidualSums(), InputTransform()]


def find_bn_pairs(model: nn.Module, named=None) -> dict[str, str]:
    """``{batchnorm name: conv name}`` for batch-norms applied directly to a convolution.

    Found in ``nn.Sequential`` (adjacent children), in modules with children named
    ``convK`` / ``bnK`` (torchvision ResNet, its stem and blocks), and for any model where a
    batch-norm is the next leaf module after a convolution in registration order (zennit's
    rule).  Each pairing is checked at run time (the batch-norm must receive exactly the
    convolution's output); a pairing that fails is dropped and the explanation repeated.
    """
    pairs: dict[str, str] = {}
    named = list(named if named is not None else model.named_modules())
    for pname, parent in named:
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
    leaves = [(n, m) for n, m in named if not m._modules]
    used = set(pairs.values())
    for (cn, c), (bn_name, b) in zip(leaves, leaves[1:]):
        if bn_name not in pairs and cn not in used and _foldable(c, b):
            pairs[bn_name] = cn
            used.add(cn)
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
    resnet = sys.modules.get("torchvision.models.resnet")   # imported if the model uses it
    if resnet is None:
        return []
    named = named if named is not None else model.named_modules()
    return [(n, m) for n, m in named if type(m) in (resnet.BasicBlock, resnet.Bottleneck)]


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
