"""A torch model as a fixed function: eval mode and no parameter gradients, for a ``with`` block.

Explanations that differentiate with respect to the *input* (gradient baselines, FGVis'
mask optimisation) must neither update batch-norm statistics nor accumulate gradients in the
parameters; :func:`frozen` switches both off for the duration and restores every flag after.
"""
from __future__ import annotations

from contextlib import contextmanager
from collections.abc import Iterator

from torch import nn

from .inputs import eval_mode

__all__ = ["frozen"]


@contextmanager
def frozen(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode and ``requires_grad=False`` on every parameter for the duration.

    Every flag (training per module, ``requires_grad`` per parameter) is restored in a
    ``finally``, also after an exception; parameters' ``.grad`` are never written.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        with eval_mode(model):
            yield model
    finally:
        for p, f in flags:
            p.requires_grad_(f)
