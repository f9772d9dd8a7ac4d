"""Layer-wise Relevance Propagation for torchvision-style CNNs, and gradient baselines.

::

    import lrpkit
    R = lrpkit.explain(model, x, target="pred", method="lrp", composite="epsilon_plus_flat")
    R = lrpkit.explain(model, x, 3, method="lrp", composite="alpha2_beta1", cutoff="features.10")
    R = lrpkit.explain(model, x, 3, method="lrp", composite="epsilon",
                       rules={"features.0": lrpkit.lrp.ZBox(low, high)})

Registered methods: ``lrp``, ``sensitivity``, ``deconvnet``, ``gradient_x_input``,
``guided_backprop``.  Rules (:mod:`.rules`), composites (:mod:`.composites`), canonizers
(:mod:`.canonizers`) and the one-pass engine (:mod:`.engine`) are re-exported here.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch

from ..explain import register
from . import baselines, canonizers, composites, engine, rules
from .baselines import (deconvnet, gradient_x_input, guided_backprop, input_gradient,
                        pool_channels, sensitivity)
from .composites import COMPOSITES, Composite, get_composite
from .engine import LRP, UnsupportedLayerError, layer_kind, lrp
from .rules import (RULES, AlphaBeta, Epsilon, Flat, Pass, Rule, WinnerTakesAll, WSquare, ZBox,
                    Zero, ZPlus)

__all__ = ["LRP", "lrp", "Composite", "COMPOSITES", "get_composite", "Rule", "Epsilon", "Zero",
           "AlphaBeta", "ZPlus", "WSquare", "Flat", "ZBox", "WinnerTakesAll", "Pass", "RULES",
           "UnsupportedLayerError", "layer_kind", "sensitivity", "deconvnet", "guided_backprop",
           "gradient_x_input", "input_gradient", "pool_channels", "rules", "composites",
           "canonizers", "engine", "baselines", "params_from_config"]


@register("lrp", paper="002 eq. 6-8; 000 eq. 5-8; 001 Sec. 2.1, 3", replace=True,
          resolves_pred=True)
def _lrp_method(model: torch.nn.Module, x: torch.Tensor, target: torch.Tensor, *,
                composite: Any = "alpha2_beta1", rules: Mapping[str, Rule] | None = None,
                epsilon: float = 0.01, low: Any = None, high: Any = None,
                cutoff: str | None = None, canonize: bool = True) -> torch.Tensor:
    """Layer-wise Relevance Propagation (one forward + one backward pass).

    composite: preset name or Composite (default alpha2_beta1: AlphaBeta(2, 1) on conv,
    Epsilon on dense, papers 001 Sec. 2.1 / 002 Sec. II-C); rules: {layer name: Rule};
    epsilon: 0.01 (paper 002); low/high: input bounds for z-box presets; cutoff: layer name of
    the mapping-influence cut-off (paper 001 Sec. 3), None = none; canonize: fold batch-norm,
    explicit ResNet sums.
    """
    return lrp(model, x, target, composite, rules=rules, epsilon=epsilon, low=low, high=high,
               cutoff=cutoff, canonize=canonize)


@register("sensitivity", paper="002 eq. 3", replace=True, resolves_pred=True)
def _sensitivity_method(model, x, target, *, norm: str | None = "l2") -> torch.Tensor:
    """Sensitivity analysis: channel norm ('l2' or 'linf', paper 002 eq. 3) of the input gradient."""
    return sensitivity(model, x, target, norm=norm)


@register("deconvnet", paper="002 Sec. II-B", replace=True, resolves_pred=True)
def _deconvnet_method(model, x, target, *, norm: str | None = "l2") -> torch.Tensor:
    """Deconvnet (Zeiler & Fergus): rectified backward signal, channel-pooled like eq. 3."""
    return deconvnet(model, x, target, norm=norm)


@register("gradient_x_input", paper="(equals LRP-0 on ReLU nets)", replace=True,
          resolves_pred=True)
def _gxi_method(model, x, target) -> torch.Tensor:
    """Gradient x input."""
    return gradient_x_input(model, x, target)


@register("guided_backprop", paper="Springenberg et al. 2015", replace=True, resolves_pred=True)
def _guided_method(model, x, target, *, norm: str | None = None) -> torch.Tensor:
    """Guided backpropagation (signed; norm='l2'/'linf' pools channels)."""
    return guided_backprop(model, x, target, norm=norm)


def params_from_config(cfg: Mapping[str, Any] | None) -> dict[str, Any]:
    """``explain(..., method="lrp")`` keyword arguments from a config (or its ``lrp`` section).

    Keys ``composite``, ``epsilon``, ``cutoff``, ``low``, ``high``, ``canonize`` are passed on;
    list-valued keys (``composites``, ``baselines``) are for notebooks and ignored here.
    """
    sec = dict((cfg or {}).get("lrp", cfg or {}) or {})
    keys = ("composite", "epsilon", "cutoff", "low", "high", "canonize")
    return {k: sec[k] for k in keys if k in sec}
