"""FGVis: fine-grained, optimisation-based explanations with the gradient-clipping defence.

Wagner, Koehler, Gindele, Hetzel, Wiedemer, Behnke, "Interpretable and Fine-Grained Visual
Explanations for Convolutional Neural Networks", CVPR 2019.

::

    import lrpkit
    m = lrpkit.explain(model, x, "pred", method="fgvis", game="deletion")   # mask (N, 3, H, W)
    res = lrpkit.fgvis.fgvis(model, x, "pred", game="preservation")        # mask, explanation, scores
    lrpkit.fgvis.defence_validation(model, x)                              # Table 1 (xarray)

Modules: :mod:`.games` (eq. 1-3, the four games, lambda adaptation), :mod:`.defence`
(Sec. 3.2, eq. 4-6), :mod:`.baselines` (occlusion by a sliding grey window, Grad-CAM: the
Table 2 comparison methods), :mod:`.experiments` (Table 1, Table 2, the colour-bias probe of
Sec. 4.3 / Table A3 and the tag-bias probe; results as xarray Datasets).

Registered methods: ``fgvis`` (the mask), ``occlusion``, ``gradcam``.
"""
from __future__ import annotations

from typing import Any

import torch

from ..explain import register
from . import baselines, defence, games
from .baselines import gradcam, occlusion
from .defence import NONLINEARITIES, Defence
from .games import GAMES, REFERENCES, FGVisResult, fgvis, frozen, make_reference

__all__ = ["fgvis", "FGVisResult", "GAMES", "REFERENCES", "Defence", "NONLINEARITIES", "frozen",
           "make_reference", "occlusion", "gradcam", "defence_validation", "faithfulness",
           "colour_bias", "channel_swap", "tag_bias", "games", "defence", "baselines",
           "experiments", "params_from_config"]

_PAPER = ("Wagner et al., Interpretable and Fine-Grained Visual Explanations for CNNs, "
          "CVPR 2019, eq. 1-6")


@register("fgvis", paper=_PAPER, replace=True)
def _fgvis_method(model, x, target, *, game: str = "deletion", defence: bool = True,
                  steps: int = 100, lr: float = 0.05, sparsity: float = 1.0,
                  similarity: str = "logodds", reference: Any = "zero", optimizer: str = "adam",
                  lambda_factor: float = 1.1, level: float = 0.9, stop: str = "steps",
                  seed: int = 0, output: str = "mask") -> torch.Tensor:
    """FGVis mask (N, C, H, W) in [0, 1] of the chosen game (Wagner et al. 2019, eq. 1-3, defence eq. 4-6).

    output="mask" (default) returns m; output="relevance" returns the evidence map: 1 - m for
    deletion / repression (the deleted entries), m for preservation / generation.
    """
    if output not in ("mask", "relevance"):
        raise ValueError(f"output must be 'mask' or 'relevance', got {output!r}")
    res = fgvis(model, x, target, game=game, defence=defence, steps=steps, lr=lr,
                sparsity=sparsity, similarity=similarity, reference=reference,
                optimizer=optimizer, lambda_factor=lambda_factor, level=level, stop=stop,
                seed=seed)
    m = res.mask.to(x.device)
    if output == "relevance" and GAMES[game][1] == "delete":
        m = 1.0 - m
    return m


@register("occlusion", paper="Zeiler & Fergus, Visualizing and understanding CNNs, ECCV 2014",
          replace=True)
def _occlusion_method(model, x, target, *, window: int = 16, stride: int = 8,
                      value: float = 0.0, batch_size: int = 256) -> torch.Tensor:
    """Occlusion by a sliding grey window (Zeiler & Fergus 2014): drop of the target's softmax score."""
    return occlusion(model, x, target, window=window, stride=stride, value=value,
                     batch_size=batch_size)


@register("gradcam", paper="Selvaraju et al., Grad-CAM, ICCV 2017", replace=True)
def _gradcam_method(model, x, target, *, layer: str | None = None) -> torch.Tensor:
    """Grad-CAM (Selvaraju et al. 2017) on the last conv layer (or ``layer``), upsampled to the input."""
    return gradcam(model, x, target, layer=layer)


def params_from_config(cfg) -> dict[str, Any]:
    """``explain(..., method="fgvis")`` keyword arguments from a config's ``fgvis`` section."""
    sec = cfg["fgvis"] if "fgvis" in cfg else cfg
    keys = ("game", "steps", "lr", "sparsity", "similarity", "reference", "optimizer",
            "lambda_factor", "level")
    return {k: sec[k] for k in keys if k in sec}


from . import experiments  # noqa: E402
from .experiments import (channel_swap, colour_bias, defence_validation, faithfulness,  # noqa: E402
                          tag_bias)
