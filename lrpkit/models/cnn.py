"""A small VGG-style CNN for the bias-zoo scenes, and its checkpoint format.

The network plays the role of the retrained BVLC reference net of Lapuschkin et al. (2016,
App. E): a multi-label classifier with one real-valued score per class (trained with a sum of hinge
losses, see :mod:`lrpkit.models.train`).  It is built LRP-friendly, with the module names of
torchvision's VGG so that LRP composites find their layers out of the box:

* ``features``: ``nn.Sequential`` of ``Conv2d(3x3, padding 1) -> ReLU`` blocks, each stage
  closed by ``MaxPool2d(2)`` (no batch-norm, nothing in-place);
* ``avgpool``: ``AdaptiveAvgPool2d(pool)``, the identity at the trained input size;
* ``classifier``: ``Flatten -> Linear -> ReLU -> Dropout -> Linear(n_classes)``.

The input is the normalised centre crop of :mod:`lrpkit.data.transforms` (float32
``(N, 3, crop, crop)``); the output is ``(N, n_classes)`` raw scores (> 0 means "present").
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from ..data.transforms import DEFAULT_SIZE, MEAN, STD
from ..results import atomic_path

__all__ = ["SceneCNN", "save_cnn", "load_cnn", "CHECKPOINT_FORMAT"]

#: Tag stored in every checkpoint written by :func:`save_cnn`.
CHECKPOINT_FORMAT = "lrpkit.SceneCNN/1"


class SceneCNN(nn.Module):
    """Small VGG-style multi-label CNN (``features`` / ``avgpool`` / ``classifier``).

    Parameters
    ----------
    n_classes : number of output scores (6 for the bias-zoo scenes).
    width : channels of the first stage; stage ``i`` has ``width * mult[i]`` channels.
    mult : channel multipliers, one per stage; each stage ends with a 2x2 max-pool.
    convs_per_stage : 3x3 convolutions (each followed by ReLU) per stage.
    hidden : units of the hidden fully connected layer.
    dropout : dropout probability before the last layer (the AlexNet-style head of Lapuschkin et al. 2016).
    input_size : side of the square input crop; fixes ``avgpool``'s output size
        (``input_size // 2**len(mult)``) so that the pool is the identity at that size.
    classes : optional class names, kept as ``model.classes`` (saved by :func:`save_cnn`).
    """

    def __init__(self, n_classes: int = 6, width: int = 8, mult: Sequence[int] = (1, 2, 4, 8),
                 convs_per_stage: int = 1, hidden: int = 128, dropout: float = 0.5,
                 input_size: int = 64, classes: Sequence[str] | None = None):
        super().__init__()
        if int(n_classes) < 1:
            raise ValueError(f"n_classes must be >= 1, got {n_classes!r}")
        if int(width) < 1 or not mult or any(int(m) < 1 for m in mult):
            raise ValueError(f"width and mult must be positive, got width={width!r}, mult={mult!r}")
        if int(convs_per_stage) < 1:
            raise ValueError(f"convs_per_stage must be >= 1, got {convs_per_stage!r}")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        pool = int(input_size) // 2 ** len(mult)
        if pool < 1:
            raise ValueError(f"input_size={input_size!r} is too small for {len(mult)} pooling stages")
        if classes is not None:
            classes = [str(c) for c in classes]
            if len(classes) != int(n_classes):
                raise ValueError(f"classes has {len(classes)} names but n_classes={n_classes}")
        self.config: dict[str, Any] = {"n_classes": int(n_classes), "width": int(width),
                                       "mult": [int(m) for m in mult],
                                       "convs_per_stage": int(convs_per_stage), "hidden": int(hidden),
                                       "dropout": float(dropout), "input_size": int(input_size),
                                       "classes": classes}
        self.classes = classes
        self.input_size = int(input_size)
        self.meta: dict[str, Any] = {}
        layers: list[nn.Module] = []
        c_in = 3
        for m in mult:
            c_out = int(width) * int(m)
            for _ in range(int(convs_per_stage)):
                layers += [nn.Conv2d(c_in, c_out, kernel_size=3, padding=1), nn.ReLU()]
                c_in = c_out
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((pool, pool))
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c_in * pool * pool, int(hidden)),
            nn.ReLU(),
            nn.Dropout(float(dropout)),
            nn.Linear(int(hidden), int(n_classes)),
        )
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.kaiming_uniform_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)
        last = self.classifier[-1]
        nn.init.normal_(last.weight, std=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"SceneCNN expects x of shape (N, 3, H, W), got {tuple(x.shape)}")
        min_side = 2 ** (len(self.config["mult"]))
        if x.shape[-1] < min_side or x.shape[-2] < min_side:
            raise ValueError(f"SceneCNN input must be at least {min_side}x{min_side}, got {tuple(x.shape)}")
        return self.classifier(self.avgpool(self.features(x)))

    def extra_repr(self) -> str:
        return f"classes={self.classes}, input_size={self.input_size}"


def _plain(obj: Any) -> Any:
    """Convert meta values to plain Python types (loadable with ``weights_only=True``)."""
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if hasattr(obj, "item") and getattr(obj, "ndim", 1) == 0:
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    return str(obj)


def save_cnn(model: SceneCNN, path: str | os.PathLike, meta: Mapping[str, Any] | None = None) -> Path:
    """Save ``model`` (its constructor config, weights and ``meta``) atomically to ``path``.

    ``meta`` holds plain values, by convention ``classes``, ``input_size`` (crop side),
    ``size`` (padded square side ``S``), ``mean`` / ``std`` (normalisation), ``epoch``;
    missing ``classes`` / ``input_size`` / ``mean`` / ``std`` are filled from the model and
    :mod:`lrpkit.data.transforms`.
    """
    if not isinstance(model, SceneCNN):
        raise TypeError(f"save_cnn saves a SceneCNN, got {type(model).__name__}")
    meta = dict(meta or {})
    meta.setdefault("classes", model.classes)
    meta.setdefault("input_size", model.input_size)
    meta.setdefault("size", DEFAULT_SIZE)
    meta.setdefault("mean", list(MEAN))
    meta.setdefault("std", list(STD))
    payload = {"format": CHECKPOINT_FORMAT, "config": _plain(model.config), "meta": _plain(meta),
               "state_dict": {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}}
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def load_cnn(path: str | os.PathLike, map_location: str | torch.device = "cpu", *,
             rebuild: str | None = "lrpkit train --force --only cnn") -> SceneCNN:
    """Load a :class:`SceneCNN` written by :func:`save_cnn`, in ``eval()`` mode.

    The checkpoint's ``meta`` is available as ``model.meta`` (``classes``, ``input_size``,
    ``size``, ``mean``, ``std``, ``epoch`` ...).  Raises ``FileNotFoundError`` when ``path``
    does not exist, :class:`lrpkit._integrity.DamagedFile` (a ``ValueError``) naming the file
    and the command that rebuilds it (``rebuild``) when it is not a readable checkpoint, and
    ``ValueError`` when it is another kind of checkpoint.
    """
    from .._integrity import DamagedFile, short_reason

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no CNN checkpoint at {path}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - pickle / zip errors of every kind
        raise DamagedFile(path, f"not a readable torch checkpoint: {short_reason(exc)}",
                          rebuild) from None
    if not isinstance(payload, Mapping) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a lrpkit SceneCNN checkpoint (expected format "
                         f"{CHECKPOINT_FORMAT!r}); for torchvision weights use lrpkit.models.load_torchvision")
    try:
        model = SceneCNN(**payload["config"])
        model.load_state_dict(payload["state_dict"])
    except (KeyError, TypeError, RuntimeError) as exc:
        raise DamagedFile(path, f"the checkpoint does not match SceneCNN: {short_reason(exc)}",
                          rebuild) from None
    model.meta = dict(payload.get("meta") or {})
    return model.eval()
