"""Composites: which LRP rule each layer of a network uses, and the named presets.

A :class:`Composite` maps layer *kinds* (the op kinds of :mod:`lrpkit.lrp.layers`:
``"conv"``, ``"linear"``, ``"avgpool"``, ``"maxpool"``, ``"bn"`` for a batch-norm that is not
folded, ``"sum"`` for residual additions ...) to rules, optionally a special rule for the
first conv/linear layer (the input layer), and any named layer to a rule (``name_map``,
highest priority).  Kinds a composite leaves open get the layer's default rule: max-pooling
``WinnerTakesAll``, average pooling (also ``x.mean((2, 3))``) and sums ``Zero`` (exact, their
weights are positive), unfolded batch-norm and layer norm ``Epsilon(eps)``, ReLU, clamps
(ReLU6, hard-tanh), gated activations (SiLU, GELU, Hardswish), products with a constant,
dropout, flatten and identity ``Pass``, a product with a gate ``SignalTakeAll``, a sigmoid /
hard-sigmoid gate ``HoldConstant``.  Any of them can be replaced per kind, e.g.
``Composite({"conv": ZPlus(), "linear": Epsilon(), "gated": Gradient()})``.

Presets are declared once, in :data:`PRESETS` (:func:`preset`); :data:`COMPOSITES` (name ->
description) and :func:`markdown_list` (the README's list) are derived from it.  Rules that
depend on the call's parameters are written as :class:`Param` placeholders (``EPS``:
``Epsilon(epsilon)``, ``GAMMA``: ``Gamma(gamma)``, ``BOX``: ``ZBox(low, high)``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from collections.abc import Callable, Mapping

from .rules import AlphaBeta, Epsilon, Flat, Gamma, Rule, ZBox, Zero, ZPlus

__all__ = ["Composite", "COMPOSITES", "PRESETS", "Preset", "Param", "EPS", "GAMMA", "BOX",
           "preset", "get_composite", "markdown_list"]

#: layer kinds the ``first_layer`` rule of a composite applies to
FIRST_LAYER_KINDS = ("conv", "linear")


@dataclass
class Composite:
    """Layer kind -> rule, plus a first-layer rule and per-name overrides."""

    kinds: Mapping[str, Rule] = field(default_factory=dict)
    first_layer: Rule | None = None
    name_map: Mapping[str, Rule] = field(default_factory=dict)
    name: str = "custom"

    def __post_init__(self):
        extra = {"first_layer": self.first_layer} if self.first_layer is not None else {}
        for k, r in {**self.kinds, **self.name_map, **extra}.items():
            if not isinstance(r, Rule):
                raise TypeError(f"composite {self.name!r}: rule for {k!r} must be an lrpkit.lrp "
                                f"Rule, got {type(r).__name__}")

    def rule_for(self, name: str, kind: str, is_first: bool) -> Rule | None:
        """The rule of layer ``name`` (op kind ``kind``), or None: the layer's default."""
        if name in self.name_map:
            return self.name_map[name]
        if is_first and self.first_layer is not None and kind in FIRST_LAYER_KINDS:
            return self.first_layer
        return self.kinds.get(kind)

    def with_rules(self, rules: Mapping[str, Rule] | None) -> Composite:
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


@dataclass(frozen=True)
class Param:
    """A rule built from the call's parameters (``epsilon``, ``gamma``, ``low``, ``high``)."""

    label: str
    build: Callable[..., Rule]

    def __repr__(self) -> str:
        return self.label


def _box(*, low=None, high=None, preset_name="", **_):
    if low is None or high is None:
        raise ValueError(f"composite {preset_name!r} uses the z-box rule on the input layer: pass "
                         f"the data's bounds low=... and high=... (scalars or per-channel tensors "
                         f"(C, 1, 1) in the model's normalised input space; for lrpkit's models "
                         f"low, high = lrpkit.data.transforms.input_bounds())")
    return ZBox(low, high)


EPS = Param("Epsilon(eps)", lambda *, epsilon, **_: Epsilon(epsilon))
GAMMA = Param("Gamma(gamma)", lambda *, gamma, **_: Gamma(gamma))
BOX = Param("ZBox(low, high)", _box)

RuleSpec = Rule | Param


@dataclass(frozen=True)
class Preset:
    """A named composite: rules per kind (:class:`Rule` or :class:`Param`), first layer."""

    name: str
    kinds: Mapping[str, RuleSpec]
    first_layer: RuleSpec | None = None
    note: str = ""
    aliases: tuple[str, ...] = ()

    def build(self, **params: Any) -> Composite:
        def make(spec):
            return spec.build(preset_name=self.name, **params) if isinstance(spec, Param) else spec
        return Composite({k: make(r) for k, r in self.kinds.items()},
                         make(self.first_layer) if self.first_layer is not None else None,
                         name=self.name)

    def description(self) -> str:
        parts = [f"{k}: {r!r}" for k, r in self.kinds.items()]
        if self.first_layer is not None:
            parts.append(f"input layer: {self.first_layer!r}")
        text = "; ".join(parts)
        return f"{text} ({self.note})" if self.note else text


#: preset name -> :class:`Preset` (aliases included, pointing at the same object)
PRESETS: dict[str, Preset] = {}


def preset(name: str, kinds: Mapping[str, RuleSpec], *, first_layer: RuleSpec | None = None,
           note: str = "", aliases: tuple[str, ...] = ()) -> Preset:
    """Declare a named composite (and its aliases); returns the :class:`Preset`."""
    p = Preset(name, dict(kinds), first_layer, note, tuple(aliases))
    for n in (name, *aliases):
        if n in PRESETS:
            raise ValueError(f"composite preset {n!r} is already declared")
        PRESETS[n] = p
    return p


AB21 = AlphaBeta(2.0, 1.0)
preset("epsilon", {"conv": EPS, "linear": EPS}, note="Samek et al. 2017, eq. 7")
preset("lrp0", {"conv": Zero(), "linear": Zero(), "bn": Zero(), "layernorm": Zero()},
       note="equals gradient x input on ReLU networks")
preset("alpha2_beta1", {"conv": AB21, "linear": EPS}, aliases=("epsilon_alpha2_beta1",),
       note="Bach et al. 2016, Sec. 2.1; Samek et al. 2017, Sec. II-C")
preset("alpha1_beta0", {"conv": AlphaBeta(1.0, 0.0), "linear": EPS})
preset("zplus", {"conv": ZPlus(), "linear": ZPlus()}, note="conserves with zero biases")
preset("flat", {"conv": Flat(), "linear": Flat(), "maxpool": Flat(), "avgpool": Flat()},
       note="uniform over receptive fields")
preset("epsilon_plus", {"conv": ZPlus(), "linear": EPS})
preset("epsilon_plus_flat", {"conv": ZPlus(), "linear": EPS}, first_layer=Flat())
preset("epsilon_plus_box", {"conv": ZPlus(), "linear": EPS}, first_layer=BOX)
preset("epsilon_alpha2_beta1_flat", {"conv": AB21, "linear": EPS}, first_layer=Flat())
preset("epsilon_alpha2_beta1_box", {"conv": AB21, "linear": EPS}, first_layer=BOX)
preset("epsilon_gamma", {"conv": GAMMA, "linear": EPS},
       note="Montavon et al. 2019, Sec. 10.2")
preset("epsilon_gamma_flat", {"conv": GAMMA, "linear": EPS}, first_layer=Flat())
preset("epsilon_gamma_box", {"conv": GAMMA, "linear": EPS}, first_layer=BOX,
       note="zennit's EpsilonGammaBox")


def _descriptions() -> dict[str, str]:
    out = {}
    for n, p in PRESETS.items():
        out[n] = p.description() if n == p.name else f"alias of {p.name!r}"
    return out


#: preset names (aliases included) with a one-line description, derived from :data:`PRESETS`
COMPOSITES: dict[str, str] = _descriptions()


def markdown_list() -> str:
    """The preset list for the README (one bullet per preset, aliases named)."""
    lines = []
    for n, p in PRESETS.items():
        if n != p.name:
            continue
        alias = f" (alias: {', '.join(f'`{a}`' for a in p.aliases)})" if p.aliases else ""
        lines.append(f"- `{n}`{alias}: {p.description()}")
    return "\n".join(lines)


def get_composite(composite: Any = "alpha2_beta1", *, epsilon: float = 0.01,
                  gamma: float = 0.25, low: Any = None, high: Any = None) -> Composite:
    """A :class:`Composite` from a preset name (see :data:`COMPOSITES`) or the object given."""
    if isinstance(composite, Composite):
        return composite
    if not isinstance(composite, str):
        raise TypeError(f"composite must be a preset name or a Composite, got "
                        f"{type(composite).__name__}")
    if composite not in PRESETS:
        raise ValueError(f"unknown composite {composite!r}; presets: {', '.join(PRESETS)}")
    return PRESETS[composite].build(epsilon=epsilon, gamma=gamma, low=low, high=high)
