"""Prediction Difference Analysis (PDA) and its efficient approximations.

Zintgraf, Cohen, Adel & Welling, "Visualizing Deep Neural Network Decisions: Prediction
Difference Analysis" (ICLR 2017) and its efficient approximation by Zhou & Kainz 2018
(Algorithms 1-3, eq. 9-15, 37-38)::

    import lrpkit
    from lrpkit.pda import PatchModel
    pm = PatchModel(window=10, outer=18).fit(train_images)      # once; pm.save(path)
    R = lrpkit.explain(model, x, "pred", method="pda", variant="mean", patch_model=pm,
                       prob="sigmoid")

Variants: ``"sampling"`` (Algorithm 1, ``samples`` conditional draws per window),
``"mean"`` (Algorithm 2, the conditional mean: one pass per window), ``"gradient"``
(Algorithm 3, one forward + one backward pass), ``"sample_mean"`` (Fig. 15: the window at the
mean of ``samples`` draws, one pass per window).  See :mod:`lrpkit.pda.analysis`;
:func:`approximation_error` measures Algorithm 2 against Algorithm 1 over windows (Fig. 11).
"""
from __future__ import annotations

from ..registry import register
from . import analysis, approximation, invariance, patch_model, speed
from .analysis import (PROBS, VARIANTS, accumulate_windows, auto_batch_size, laplace,
                       prediction_difference, target_probability, window_predictions)
from .approximation import (ApproximationNotResolved, approximation_error, interval_of,
                            versus_few_samples)
from .invariance import TRANSFORMS, invariance_correlation
from .patch_model import PatchModel, conditional_means, window_positions

__all__ = ["PatchModel", "prediction_difference", "window_predictions", "conditional_means",
           "window_positions", "accumulate_windows", "target_probability", "laplace",
           "auto_batch_size", "invariance_correlation", "TRANSFORMS", "VARIANTS", "PROBS",
           "analysis", "patch_model", "invariance", "approximation", "approximation_error",
           "ApproximationNotResolved", "versus_few_samples", "interval_of", "speed"]


register("pda", resolves_pred=False,
         paper="Zintgraf et al. 2017, Alg. 1; Zhou & Kainz 2018, Alg. 1-3, eq. 9-15, 37-38",
         replace=True)(prediction_difference)
