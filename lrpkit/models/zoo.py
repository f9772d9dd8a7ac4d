"""torchvision architectures with weights from a local file (never a download).

Lapuschkin et al. (2016) explain the BVLC reference net (an AlexNet) fine-tuned on PASCAL VOC;
lrpkit lets you use torchvision's AlexNet / VGG / ResNet with weights **you already have on disk**:
a model you fine-tuned and saved (its own head is kept, the default), or backbone weights such
as ``alexnet-owt-7be5be79.pth`` from an earlier torchvision cache, whose last layer
``replace_head=True`` swaps for a fresh ``num_classes`` head to be fine-tuned with
:mod:`lrpkit.models.train`'s hinge loss.
"""
from __future__ import annotations

import os
from pathlib import Path
from collections.abc import Callable

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


def _read_state(path: Path, arch: str) -> dict:
    """The state dict held by ``path``: a ``state_dict`` (optionally wrapped as ``{"state_dict":
    ...}`` or with ``DataParallel``'s ``module.`` prefixes) or a whole torchvision model saved with
    ``torch.save(model, path)``.  A whole model is unpickled with ``weights_only`` and only torch /
    torchvision classes allowed, so that a file cannot run other code."""
    from .._integrity import short_reason

    try:
        unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception as exc:  # noqa: BLE001 - zip / pickle errors of every kind
        raise ValueError(f"{path} is not a readable torch weights file: {short_reason(exc)}") from None
    foreign = [g for g in unsafe if not g.startswith(("torch.", "torchvision."))]
    if foreign:
        raise ValueError(f"{path} holds objects of classes outside torch / torchvision "
                         f"{foreign[:5]}: save the model's state_dict instead, or load it as "
                         f"source 'torchscript' or 'python' (module:function)")
    try:
        with torch.serialization.safe_globals([_import_global(g) for g in unsafe]):
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - zip / pickle errors of every kind
        raise ValueError(f"{path} is not a readable torch weights file: {short_reason(exc)}") from None
    if isinstance(state, nn.Module):
        state = state.state_dict()
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
        raise ValueError(f"{path} does not hold a state_dict (a dict of tensors) nor a torchvision "
                         f"{arch} model")
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def _import_global(qualname: str):
    import importlib

    module, _, name = qualname.rpartition(".")
    obj = importlib.import_module(module)
    return getattr(obj, name)


def load_torchvision(arch: str, weights_path: str | os.PathLike, num_classes: int | None = None,
                     replace_head: bool = False, seed: int = 0) -> nn.Module:
    """Build torchvision ``arch`` with ``weights=None`` and load its weights from a local file.

    Parameters
    ----------
    arch : one of :data:`ARCHS` (``"alexnet"``, ``"vgg11"``, ``"vgg16"``, ``"resnet18"``,
        ``"resnet50"``).
    weights_path : a file holding the architecture's ``state_dict`` (as written by
        ``torch.save(model.state_dict(), path)``; a dict with a ``"state_dict"`` entry and
        ``module.``-prefixed keys from ``DataParallel`` are accepted) or the whole model
        (``torch.save(model, path)``).  Nothing is downloaded.
    num_classes : the number of classes.  With the file's head kept (the default) it is a
        check: a head of another size raises ``ValueError`` naming both numbers.  With
        ``replace_head`` it is the size of the fresh head (required).
    replace_head : replace the last ``Linear`` (``classifier.6`` for AlexNet / VGG, ``fc`` for
        ResNet) with a new ``Linear(in_features, num_classes)``, initialised from ``seed``, to be
        fine-tuned.  ``False`` (the default) keeps the file's head, whatever its size
        (ImageNet's 1000 classes, or a model fine-tuned on VOC's 20 and saved earlier).
    seed : seeds the new head's initialisation (the global RNG is left untouched).

    Returns the model in ``eval()`` mode.  Raises ``FileNotFoundError`` naming the path when it
    does not exist and ``ValueError`` naming the file and the missing / unexpected keys, shape
    mismatches or head sizes when the file does not fit ``arch`` or ``num_classes``.
    """
    if not isinstance(arch, str) or arch.lower() not in ARCHS:
        raise ValueError(f"arch must be one of {ARCHS}, got {arch!r}")
    arch = arch.lower()
    if num_classes is not None and (isinstance(num_classes, bool) or not isinstance(num_classes, int)
                                    or num_classes < 1):
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    if replace_head and num_classes is None:
        raise ValueError("num_classes is required with replace_head=True (the size of the fresh head)")
    path = Path(weights_path)
    if not path.is_file():
        raise FileNotFoundError(f"no weights file at {path} (lrpkit never downloads weights; "
                                f"point weights_path to a local {arch} state_dict)")
    state = _read_state(path, arch)

    # a file fine-tuned earlier (e.g. a 20-class VOC head) is built with its own head size
    head_path = _head_path(arch)
    head_w = state.get(f"{head_path}.weight")
    n_file = int(head_w.shape[0]) if isinstance(head_w, torch.Tensor) and head_w.dim() == 2 else 1000
    if not replace_head and num_classes is not None and num_classes != n_file:
        raise ValueError(f"{path}: the file's head ({head_path}) has {n_file} classes but "
                         f"num_classes is {num_classes}; fix num_classes, or pass "
                         f"replace_head=True for a fresh {num_classes}-class head to fine-tune")
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
