"""torchvision architectures with weights from a local file (never a download).

Paper 000 explains the BVLC reference net (an AlexNet) fine-tuned on PASCAL VOC; lrpkit lets
you use torchvision's AlexNet / VGG / ResNet with weights **you already have on disk**
(e.g. ``alexnet-owt-7be5be79.pth`` from an earlier torchvision cache), and replaces the last
layer with a fresh ``num_classes`` head (20 PASCAL VOC classes by default) to be fine-tuned
with :mod:`lrpkit.models.train`'s hinge loss.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import torch
from torch import nn

__all__ = ["load_torchvision", "ARCHS"]


def _builders() -> dict[str, Callable[..., nn.Module]]:
    import torchvision.models as tvm

    return {"alexnet": tvm.alexnet, "vgg11": tvm.vgg11, "vgg16": tvm.vgg16,
            "resnet18": tvm.resnet18, "resnet50": tvm.resnet50}


#: Architectures :func:`load_torchvision` can build.
ARCHS = ("alexnet", "vgg11", "vgg16", "resnet18", "resnet50")


def _head_path(arch: str) -> str:
    return "fc" if arch.startswith("resnet") else "classifier.6"


def load_torchvision(arch: str, weights_path: str | os.PathLike, num_classes: int | None = 20,
                     replace_head: bool = True, seed: int = 0) -> nn.Module:
    """Build torchvision ``arch`` with ``weights=None`` and load its weights from a local file.

    Parameters
    ----------
    arch : one of :data:`ARCHS` (``"alexnet"``, ``"vgg11"``, ``"vgg16"``, ``"resnet18"``,
        ``"resnet50"``).
    weights_path : a file holding the architecture's ``state_dict`` (as written by
        ``torch.save(model.state_dict(), path)``; a dict with a ``"state_dict"`` entry and
        ``module.``-prefixed keys from ``DataParallel`` are accepted).  Nothing is downloaded.
    num_classes : size of the fresh head when ``replace_head`` (20 = PASCAL VOC).
    replace_head : replace the last ``Linear`` (``classifier.6`` for AlexNet / VGG, ``fc`` for
        ResNet) with a new ``Linear(in_features, num_classes)``, initialised from ``seed``.
        ``False`` keeps the file's head, whatever its size (ImageNet's 1000 classes, or a model
        fine-tuned on VOC's 20 and saved earlier).
    seed : seeds the new head's initialisation (the global RNG is left untouched).

    Returns the model in ``eval()`` mode.  Raises ``FileNotFoundError`` naming the path when it
    does not exist and ``ValueError`` naming missing / unexpected keys or shape mismatches when
    the file does not fit ``arch``.
    """
    if not isinstance(arch, str) or arch.lower() not in ARCHS:
        raise ValueError(f"arch must be one of {ARCHS}, got {arch!r}")
    arch = arch.lower()
    path = Path(weights_path)
    if not path.is_file():
        raise FileNotFoundError(f"no weights file at {path} (lrpkit never downloads weights; "
                                f"point weights_path to a local {arch} state_dict)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{path} is not a readable torch weights file: {exc}") from None
    if isinstance(state, nn.Module):  # pragma: no cover - weights_only forbids this
        state = state.state_dict()
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
        raise ValueError(f"{path} does not hold a state_dict (a dict of tensors)")
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}

    # a file fine-tuned earlier (e.g. a 20-class VOC head) is built with its own head size
    head_w = state.get(f"{_head_path(arch)}.weight")
    n_file = int(head_w.shape[0]) if isinstance(head_w, torch.Tensor) and head_w.dim() == 2 else 1000
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        model = _builders()[arch](weights=None, num_classes=n_file)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]        # in the model's layer order
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        raise ValueError(f"{path} does not match torchvision {arch}: {len(missing)} missing key(s) "
                         f"{missing[:5]}, {len(unexpected)} unexpected key(s) {unexpected[:5]}")
    bad = [(k, tuple(state[k].shape), tuple(v.shape)) for k, v in expected.items()
           if tuple(state[k].shape) != tuple(v.shape)]
    if bad:
        raise ValueError(f"{path} does not match torchvision {arch}: shape mismatch (key, file, "
                         f"expected) {bad[:5]}")
    model.load_state_dict(state)

    if replace_head:
        if num_classes is None or int(num_classes) < 1:
            raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
        head_path = _head_path(arch)
        parent_name, _, leaf = head_path.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        old = getattr(parent, leaf) if not leaf.isdigit() else parent[int(leaf)]
        gen = torch.Generator().manual_seed(int(seed))
        new = nn.Linear(old.in_features, int(num_classes))
        with torch.no_grad():
            bound = 1.0 / old.in_features ** 0.5
            new.weight.uniform_(-bound, bound, generator=gen)
            new.bias.zero_()
        if leaf.isdigit():
            parent[int(leaf)] = new
        else:
            setattr(parent, leaf, new)
    return model.eval()
