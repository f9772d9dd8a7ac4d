"""Layer-wise Relevance Propagation for torchvision-style CNNs, and gradient baselines.

::

    import lrpkit
    R = lrpkit.explain(model, x, target="pred", method="lrp", composite="epsilon_plus_flat")
    R = lrpkit.explain(model, x, 3, method="lrp", composite="alpha2_beta1", cutoff="features.10")
    R = lrpkit.explain(model, x, 3, method="lrp", composite="epsilon",
                       rules={"features.0": lrpkit.lrp.ZBox(low, high)})

Registered methods: ``lrp``, ``sensitivity``, ``deconvnet``, ``gradient_x_input``,
``guided_backprop``.  Rules (:mod:`.rules`), composites (:mod:`.composites`), canonizers
(:mod:`.canonizers`), the layer table (:mod:`.layers`, :func:`register_layer`) and the one-pass
engine (:mod:`.engine`) are re-exported here.
"""
from __future__ import annotations

from typing import Any
from collections.abc import Mapping

from ..registry import register
from . import baselines, canonizers, composites, engine, layers, rules
from .baselines import (GradientFallbackWarning, deconvnet, gradient_x_input, guided_backprop,
                        input_gradient, pool_channels, sensitivity)
from .canonizers import BatchNormFold, Canonizer, ResidualSums, default_canonizers
from .composites import COMPOSITES, PRESETS, Composite, get_composite, preset
from .engine import LRP, OPTIONS, layer_kind, lrp
from .layers import LAYERS, Op, UnsupportedLayerError, layer_op, register_layer
from .rules import (AlphaBeta, Epsilon, Flat, Gamma, Gradient, HoldConstant, Pass, Rule,
                    SignalTakeAll, WinnerTakesAll, WSquare, ZBox, Zero, ZPlus)

__all__ = ["LRP", "lrp", "OPTIONS", "Composite", "COMPOSITES", "PRESETS", "preset",
           "get_composite", "Rule", "Epsilon", "Zero", "AlphaBeta", "ZPlus", "Gamma", "WSquare",
           "Flat", "ZBox", "WinnerTakesAll", "Pass", "SignalTakeAll", "HoldConstant", "Gradient",
           "Canonizer", "BatchNormFold",
           "ResidualSums", "default_canonizers", "Op", "LAYERS", "register_layer", "layer_op",
           "layer_kind", "UnsupportedLayerError", "sensitivity", "deconvnet", "guided_backprop",
           "gradient_x_input", "input_gradient", "pool_channels", "GradientFallbackWarning",
           "rules", "composites", "canonizers", "layers", "engine", "baselines",
           "params_from_config"]


register("lrp", scriptable=False, replace=True, resolves_pred=True,
         paper="Samek et al. 2017 eq. 6-8; Lapuschkin et al. 2016 (CVPR) eq. 5-8; "
               "Bach et al. 2016 (ICIP) Sec. 2.1, 3")(lrp)
register("sensitivity", paper="Samek et al. 2017 eq. 3", replace=True,
         resolves_pred=True)(sensitivity)
register("deconvnet", scriptable=False, paper="Zeiler & Fergus 2014; Samek et al. 2017 Sec. II-B",
         replace=True, resolves_pred=True)(deconvnet)
register("gradient_x_input", paper="Shrikumar et al. 2016 (equals LRP-0 on ReLU nets)",
         replace=True, resolves_pred=True)(gradient_x_input)
register("guided_backprop", scriptable=False, paper="Springenberg et al. 2015", replace=True,
         resolves_pred=True)(guided_backprop)


def params_from_config(cfg: Mapping[str, Any] | None) -> dict[str, Any]:
    """``explain(..., method="lrp")`` keyword arguments from a config (or its ``lrp`` section).

    The keys that are LRP options (:data:`OPTIONS`: ``composite``, ``epsilon``, ``cutoff``
    ...) are passed on; other keys (``composites``, ``baselines``: lists for notebooks) are
    ignored here.
    """
    sec = dict((cfg or {}).get("lrp", cfg or {}) or {})
    return {k: sec[k] for k in OPTIONS if k in sec}
