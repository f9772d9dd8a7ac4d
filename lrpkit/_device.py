"""The device a model computes on."""
from __future__ import annotations

from typing import Any

import torch

__all__ = ["model_device"]


def model_device(model: Any, default: torch.device | str = "cpu") -> torch.device:
    """The device of ``model``'s first parameter, else of its first buffer, else ``default``
    (also for objects that are not torch modules, e.g. the Fisher-vector classifier)."""
    if isinstance(model, torch.nn.Module):
        for t in model.parameters():
            return t.device
        for t in model.buffers():
            return t.device
    return torch.device(default)
