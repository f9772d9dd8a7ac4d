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
Sec. 4.3 / Table A3 and the tag-bias probe; results as xarray Datasets), :mod:`.evidence` (their
intervals and the paper claims they test, for a report's findings).

Registered methods: ``fgvis`` (the mask), ``occlusion``, ``gradcam``.
"""
from __future__ import annotations

from typing import Any

import torch

from ..registry import register
from ..params import Options, declare, forwards, parameters
from . import baselines, defence, games
from .baselines import gradcam, occlusion
from .defence import NONLINEARITIES, Defence
from .games import GAMES, REFERENCES, FGVisResult, fgvis, frozen, make_reference

__all__ = ["fgvis", "fgvis_map", "FGVisResult", "GAMES", "REFERENCES", "Defence", "NONLINEARITIES", "frozen",
           "make_reference", "occlusion", "gradcam", "defence_validation", "faithfulness",
           "colour_bias", "channel_swap", "tag_bias", "games", "defence", "baselines",
           "experiments", "params_from_config"]

_PAPER = ("Wagner et al., Interpretable and Fine-Grained Visual Explanations for CNNs, "
          "CVPR 2019, eq. 1-6")


@register("fgvis", paper=_PAPER, replace=True)
@forwards(fgvis)
@declare(output=Options("mask", "relevance"))
def fgvis_map(model, x, target, *, output: str = "mask", **params: Any) -> torch.Tensor:
    """FGVis mask or evidence map (N, C, H, W) in [0, 1] of the chosen game (Wagner et al. 2019, eq. 1-3;
    the defence eq. 4-6); every parameter of :func:`~lrpkit.fgvis.games.fgvis` is taken.

    ``output="mask"`` (default) returns the optimised mask ``m``; ``output="relevance"`` returns
    where the evidence is: ``1 - m`` for deletion / repression (the entries the optimiser
    deleted), ``m`` for preservation / generation, so that the map reads like the other
    methods' heatmaps (high = important).
    """
    res = fgvis(model, x, target, **params)
    m = res.mask.to(x.device)
    if output == "relevance" and GAMES[params.get("game", "deletion")][1] == "delete":
        m = 1.0 - m
    return m


register("occlusion", paper="Zeiler & Fergus 2014", replace=True)(occlusion)
# Grad-CAM hooks the feature layer (register_forward_hook), which a TorchScript module refuses
register("gradcam", paper="Selvaraju et al. 2017", replace=True, scriptable=False)(gradcam)


def params_from_config(cfg) -> dict[str, Any]:
    """Keyword arguments of :func:`~lrpkit.fgvis.games.fgvis` that a config's ``fgvis`` section
    sets (a :class:`~lrpkit.config.Config`, its section, or a plain mapping); parameters the
    config leaves alone keep the function's defaults."""
    sec = cfg["fgvis"] if "fgvis" in cfg else cfg
    given = sec.overrides() if hasattr(sec, "overrides") else dict(sec)
    return {k: v for k, v in given.items() if k in parameters(fgvis)}


from . import experiments  # noqa: E402
from .experiments import (channel_swap, colour_bias, defence_validation, faithfulness,  # noqa: E402
                          tag_bias)
