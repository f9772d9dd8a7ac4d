"""Composites: which LRP rule each layer of a network uses.

A :class:`Composite` maps layer *kinds* (``"conv"``, ``"linear"``, ``"avgpool"``,
``"maxpool"``, ``"bn"`` for a batch-norm that is not folded, ``"sum"`` for residual
additions) to rules, optionally a special rule for the first conv/linear layer (the input
layer), and any named layer to a rule (``name_map``, highest priority).  Named presets::

    epsilon                    Epsilon(eps) everywhere                         (paper 002 eq. 7)
    lrp0                       LRP-0 everywhere (= gradient x input on ReLU nets)
    alpha2_beta1               AlphaBeta(2, 1) on conv, Epsilon on dense       (papers 001, 002)
    alpha1_beta0               AlphaBeta(1, 0) on conv, Epsilon on dense
    zplus                      ZPlus on conv and dense (conservation checks)
    flat                       Flat everywhere
    epsilon_plus               ZPlus on conv, Epsilon on dense
    epsilon_plus_flat          as epsilon_plus, Flat on the first layer
    epsilon_plus_box           as epsilon_plus, ZBox(low, high) on the first layer
    epsilon_alpha2_beta1       AlphaBeta(2, 1) on conv, Epsilon on dense
    epsilon_alpha2_beta1_flat  as epsilon_alpha2_beta1, Flat on the first layer
    epsilon_alpha2_beta1_box   as epsilon_alpha2_beta1, ZBox(low, high) on the first layer

Defaults for kinds a composite does not name: max-pooling ``WinnerTakesAll``, average
pooling and residual sums ``Zero`` (exact, weights are positive), unfolded batch-norm
``Epsilon(eps)``; ReLU, dropout, flatten and identity always pass relevance unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from .rules import AlphaBeta, Epsilon, Flat, Rule, WinnerTakesAll, ZBox, Zero, ZPlus

__all__ = ["Composite", "COMPOSITES", "get_composite"]


@dataclass
class Composite:
    """Layer kind -> rule, plus a first-layer rule and per-name overrides."""

    kinds: Mapping[str, Rule] = field(default_factory=dict)
    first_layer: Rule | None = None
    name_map: Mapping[str, Rule] = field(default_factory=dict)
    name: str = "custom"

    def __post_init__(self):
        for k, r in {**self.kinds, **self.name_map}.items():
            if not isinstance(r, Rule):
                raise TypeError(f"composite {self.name!r}: rule for {k!r} must be an lrpkit.lrp "
                                f"Rule, got {type(r).__name__}")

    def rule_for(self, name: str, kind: str, is_first: bool) -> Rule | None:
        if name in self.name_map:
            return self.name_map[name]
        if is_first and self.first_layer is not None and kind in ("conv", "linear"):
            return self.first_layer
        if kind in self.kinds:
            return self.kinds[kind]
        return None

    def with_rules(self, rules: Mapping[str, Rule] | None) -> "Composite":
        """A copy with ``rules`` (layer name -> rule) added to the name map."""
        if not rules:
            return self
        return Composite(dict(self.kinds), self.first_layer, {**self.name_map, **rules}, self.name)

    def describe(self) -> dict[str, str]:
        d = {k: repr(r) for k, r in self.kinds.items()}
        if self.first_layer is not None:
            d["first_layer"] = repr(self.first_layer)
        d.update({f"name:{k}": repr(r) for k, r in self.name_map.items()})
        return d


def _need_box(name, low, high):
    if low is None or high is None:
        raise ValueError(f"composite {name!r} uses the z-box rule on the input layer: pass the "
                         f"data's bounds low=... and high=... (scalars or per-channel tensors "
                         f"(C, 1, 1) in the model's normalised input space; for lrpkit's models "
                         f"low, high = lrpkit.data.transforms.input_bounds())")
    return ZBox(low, high)


def get_composite(composite: Any = "alpha2_beta1", *, epsilon: float = 0.01, low: Any = None,
                  high: Any = None) -> Composite:
    """A :class:`Composite` from a preset name (see module doc) or return the object given."""
    if isinstance(composite, Composite):
        return composite
    if not isinstance(composite, str):
        raise TypeError(f"composite must be a preset name or a Composite, got "
                        f"{type(composite).__name__}")
    if composite not in COMPOSITES:
        raise ValueError(f"unknown composite {composite!r}; presets: {', '.join(COMPOSITES)}")
    eps = Epsilon(epsilon)
    ab21 = AlphaBeta(2.0, 1.0)
    ab10 = AlphaBeta(1.0, 0.0)
    name = composite
    if name == "epsilon":
        return Composite({"conv": eps, "linear": eps}, name=name)
    if name == "lrp0":
        return Composite({"conv": Zero(), "linear": Zero(), "bn": Zero()}, name=name)
    if name in ("alpha2_beta1", "epsilon_alpha2_beta1"):
        return Composite({"conv": ab21, "linear": eps}, name=name)
    if name == "alpha1_beta0":
        return Composite({"conv": ab10, "linear": eps}, name=name)
    if name == "zplus":
        return Composite({"conv": ZPlus(), "linear": ZPlus()}, name=name)
    if name == "flat":
        return Composite({"conv": Flat(), "linear": Flat(), "maxpool": Flat(), "avgpool": Flat()},
                         name=name)
    if name == "epsilon_plus":
        return Composite({"conv": ZPlus(), "linear": eps}, name=name)
    if name == "epsilon_plus_flat":
        return Composite({"conv": ZPlus(), "linear": eps}, first_layer=Flat(), name=name)
    if name == "epsilon_plus_box":
        return Composite({"conv": ZPlus(), "linear": eps}, first_layer=_need_box(name, low, high),
                         name=name)
    if name == "epsilon_alpha2_beta1_flat":
        return Composite({"conv": ab21, "linear": eps}, first_layer=Flat(), name=name)
    if name == "epsilon_alpha2_beta1_box":
        return Composite({"conv": ab21, "linear": eps}, first_layer=_need_box(name, low, high),
                         name=name)
    raise AssertionError(name)  # pragma: no cover


#: preset names with a one-line description
COMPOSITES = {
    "epsilon": "Epsilon(eps) on conv and dense layers (paper 002 eq. 7)",
    "lrp0": "LRP-0 everywhere; equals gradient x input on ReLU networks",
    "alpha2_beta1": "AlphaBeta(2, 1) on conv, Epsilon(eps) on dense (papers 001 Sec. 2.1, 002 Sec. II-C)",
    "alpha1_beta0": "AlphaBeta(1, 0) on conv, Epsilon(eps) on dense",
    "zplus": "ZPlus on conv and dense layers",
    "flat": "Flat on every layer (uniform over receptive fields)",
    "epsilon_plus": "ZPlus on conv, Epsilon(eps) on dense",
    "epsilon_plus_flat": "ZPlus on conv, Epsilon(eps) on dense, Flat on the input layer",
    "epsilon_plus_box": "ZPlus on conv, Epsilon(eps) on dense, ZBox(low, high) on the input layer",
    "epsilon_alpha2_beta1": "AlphaBeta(2, 1) on conv, Epsilon(eps) on dense",
    "epsilon_alpha2_beta1_flat": "AlphaBeta(2, 1) on conv, Epsilon(eps) on dense, Flat on the input layer",
    "epsilon_alpha2_beta1_box": "AlphaBeta(2, 1) on conv, Epsilon(eps) on dense, ZBox on the input layer",
}

#: rules for kinds a composite leaves open
DEFAULT_KIND_RULES = {"maxpool": WinnerTakesAll(), "avgpool": Zero(), "sum": Zero()}
