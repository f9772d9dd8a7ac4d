"""Prediction Difference Analysis (PDA) and its efficient approximations.

Zintgraf, Cohen, Adel & Welling, "Visualizing Deep Neural Network Decisions: Prediction
Difference Analysis" (ICLR 2017) and "Efficient prediction difference analysis" (an
approximation of Zintgraf et al. 2017; Algorithms 1-3, eq. 9-15, 37-38)::

    import lrpkit
    from lrpkit.pda import PatchModel
    pm = PatchModel(window=10, outer=18).fit(train_images)      # once; pm.save(path)
    R = lrpkit.explain(model, x, "pred", method="pda", variant="mean", patch_model=pm,
                       prob="sigmoid")

Variants: ``"sampling"`` (Algorithm 1, ``samples`` conditional draws per window),
``"mean"`` (Algorithm 2, the conditional mean: one pass per window), ``"gradient"``
(Algorithm 3, one forward + one backward pass), ``"sample_mean"`` (Fig. 15: the window at the
mean of ``samples`` draws, one pass per window).  See :mod:`lrpkit.pda.analysis`.
"""
from __future__ import annotations

import torch

from ..explain import register
from . import analysis, invariance, patch_model
from .analysis import (PROBS, VARIANTS, accumulate_windows, auto_batch_size, laplace,
                       prediction_difference, target_probability, window_predictions)
from .invariance import TRANSFORMS, invariance_correlation
from .patch_model import PatchModel, conditional_means, window_positions

__all__ = ["PatchModel", "prediction_difference", "window_predictions", "conditional_means",
           "window_positions", "accumulate_windows", "target_probability", "laplace",
           "auto_batch_size", "invariance_correlation", "TRANSFORMS", "VARIANTS", "PROBS",
           "analysis", "patch_model", "invariance"]


@register("pda", paper="Zintgraf et al. 2017 (Alg. 1); 003 Alg. 1-3, eq. 9-15, 37-38",
          replace=True)
def _pda_method(model: torch.nn.Module, x: torch.Tensor, target: torch.Tensor, *,
                variant: str = "sampling", window: int = 10, outer: int = 18, samples: int = 10,
                stride: int = 1, batch_size: int | None = None,
                patch_model: PatchModel | None = None, prob: str = "softmax", seed: int = 0,
                laplace_n: int | None = 1000, marginal: bool = False, joint_rgb: bool = False,
                progress: bool = True) -> torch.Tensor:
    """Prediction Difference Analysis: weight of evidence of each k x k window, marginalised
    by conditional Gaussian sampling ('sampling', Zintgraf et al. 2017), its conditional mean
    ('mean', paper 003 Alg. 2), the gradient simplification ('gradient', Alg. 3) or the mean of
    `samples` draws ('sample_mean', Fig. 15)."""
    return prediction_difference(model, x, target, variant=variant, window=window, outer=outer,
                                 samples=samples, stride=stride, batch_size=batch_size,
                                 patch_model=patch_model, prob=prob, seed=seed,
                                 laplace_n=laplace_n, marginal=marginal, joint_rgb=joint_rgb,
                                 progress=progress)
