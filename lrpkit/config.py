"""Run configuration: typed sections (dataclasses) overridden by YAML files in ``configs/``.

The dataclasses below are the **single source of defaults**; ``configs/default.yaml`` states
the same values for the reader (a test checks that it sets nothing else) and other YAML files
(``configs/smoke.yaml``) override some of them.  ``load_config`` raises on a key that no
section declares, naming the key and the allowed ones.

::

    cfg = lrpkit.load_config("smoke")              # name in configs/, a YAML path, or a mapping
    cfg.cnn.epochs, cfg["cnn"]["epochs"]           # attribute and mapping access (same value)
    cfg.evaluation.get("ap_images")                # sections are read-only-style Mappings too
    cfg = load_config("default", seed=1, cnn={"epochs": 3}, **{"fisher.C": 1.0})   # overrides
    cfg.to_dict()                                   # plain nested dict (JSON-able)

Sections: ``seed`` (int), ``paths``, ``data``, ``cnn``, ``fisher``, ``lrp``, ``evaluation``,
``pda``, ``fgvis``, ``reports``, and what is analysed: ``model`` (or a ``models`` list, side by
side) and ``dataset`` (:mod:`lrpkit.sources` loads them).  To add a setting, add a typed field with its default to the
section's dataclass (and state it in ``configs/default.yaml``); nothing else reads defaults.
Relative paths are resolved against the project root (:func:`project_root`: ``$LRPKIT_PROJECT``,
else the nearest folder above the working directory holding ``configs/`` with ``notebooks/`` or
``pyproject.toml``, else the working directory).  A config name is looked up in the project's
``configs/``, then among the configs shipped with lrpkit; ``"default"`` without a project file
is the dataclass defaults.
"""
from __future__ import annotations

import copy
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = ["Config", "Section", "PathsConfig", "DataConfig", "CNNConfig", "FisherConfig",
           "MethodSection", "LRPConfig", "EvaluationConfig", "PDAConfig", "FGVisConfig", "ReportsConfig",
           "ModelConfig", "ModelsConfig", "DatasetConfig", "MODEL_SOURCES", "MODEL_OUTPUTS",
           "DATASET_SOURCES", "config_path", "config_names",
           "SECTIONS", "load_config", "as_config", "merge", "project_root", "resolve_path"]


# ---------------------------------------------------------------------------------------------
# Section base: a dataclass that is also a Mapping and rejects unknown names
# ---------------------------------------------------------------------------------------------
class Section(Mapping):
    """Base of the config sections: a dataclass with strict names and ``Mapping`` access.

    ``sec.key``, ``sec["key"]``, ``sec.get("key", default)``, ``dict(sec)``, ``{**sec}`` all
    work; assigning an unknown name raises ``AttributeError`` / ``KeyError``; a section equals
    any mapping with the same items.
    """

    _name = ""

    # -- Mapping protocol --------------------------------------------------------------------
    def __getitem__(self, key: str) -> Any:
        if isinstance(key, str) and key in self.__dataclass_fields__:
            return getattr(self, key)
        raise KeyError(key)

    def __iter__(self):
        return iter(self.__dataclass_fields__)

    def __len__(self) -> int:
        return len(self.__dataclass_fields__)

    def __setitem__(self, key: str, value: Any) -> None:
        if key not in self.__dataclass_fields__:
            raise KeyError(_unknown(self._name, key, self.__dataclass_fields__))
        setattr(self, key, _check_value(type(self), key, value))

    def __setattr__(self, key: str, value: Any) -> None:
        if key not in self.__dataclass_fields__:
            raise AttributeError(_unknown(self._name, key, self.__dataclass_fields__))
        object.__setattr__(self, key, value)

    def __eq__(self, other: Any) -> bool:
        if not isinstance(other, Mapping):
            return NotImplemented
        return dict(self.items()) == dict(other.items())

    __hash__ = None  # type: ignore[assignment]

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the fields (lists for tuples), for JSON, YAML and fingerprints."""
        return {k: _plain(getattr(self, k)) for k in self.__dataclass_fields__}

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any] | None) -> Section:
        """The section with ``data`` over its defaults; unknown keys and wrong types raise."""
        data = {} if data is None else data
        if not isinstance(data, Mapping):
            raise TypeError(f"config section {cls._name!r} must be a mapping, got "
                            f"{type(data).__name__}")
        for k in data:
            if k not in cls.__dataclass_fields__:
                raise ValueError(_unknown(cls._name, k, cls.__dataclass_fields__))
        return cls(**{k: _check_value(cls, k, copy.deepcopy(v)) for k, v in data.items()})


class MethodSection(Section):
    """A section that feeds a registered method (``lrp``, ``pda``, ``fgvis``).

    Besides its own fields (the notebooks' budgets) it takes every configurable parameter of
    the method, with the name, default and accepted values of the method's own declaration
    (:mod:`lrpkit.params`; nothing is restated here)::

        cfg.pda.window            # 10: the default of lrpkit.pda.prediction_difference
        cfg.pda.method_params()   # the keyword arguments for explain(..., method="pda")

    A parameter the configuration does not set keeps the method's own default, or is decided
    where the model is known (PDA's ``prob`` from the model's output kind,
    :func:`lrpkit.pipeline.pda_params`; :meth:`overrides` tells which ones were set).  The
    method's module (torch) is imported on first use of a parameter, not when the config is
    loaded without them.
    """

    _method: typing.ClassVar[str] = ""
    #: parameters that are not configuration (objects, progress display)
    _exclude: typing.ClassVar[tuple[str, ...]] = ("progress",)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_params", {})

    @classmethod
    def declared(cls) -> dict[str, Any]:
        """The method's configurable parameters: ``{name: lrpkit.params.Param}``."""
        from .explain import get_method
        from .params import Boolean, InstanceOf, Interval, Options

        def plain(p) -> bool:
            return any(isinstance(c, (Options, Interval, Boolean))
                       or (isinstance(c, InstanceOf) and str in c.types) for c in p.constraints)

        return {k: p for k, p in get_method(cls._method).parameters.items()
                if k not in cls._exclude and k not in cls.__dataclass_fields__ and plain(p)}

    def _param(self, key: str) -> Any:
        p = self.declared()[key]
        return self._params.get(key, p.default)

    def method_params(self) -> dict[str, Any]:
        """Keyword arguments for ``explain(..., method=<this method>)``: every configurable
        parameter (this config's value, else the method's default)."""
        return {k: self._param(k) for k in self.declared()}

    def overrides(self) -> dict[str, Any]:
        """The method parameters the configuration itself sets (YAML, overrides); the others
        keep the method's default or are decided where the model is known."""
        return dict(self._params)

    def _keys(self) -> list[str]:
        return [*self.__dataclass_fields__, *self.declared()]

    def __getitem__(self, key: str) -> Any:
        if isinstance(key, str) and key in self.__dataclass_fields__:
            return getattr(self, key)
        if isinstance(key, str) and key in self.declared():
            return self._param(key)
        raise KeyError(key)

    def __getattr__(self, key: str) -> Any:
        if key.startswith("_"):
            raise AttributeError(key)
        try:
            return self[key]
        except KeyError:
            raise AttributeError(_unknown(self._name, key, self._keys())) from None

    def __iter__(self):
        return iter(self._keys())

    def __len__(self) -> int:
        return len(self._keys())

    def _set_param(self, key: str, value: Any) -> None:
        decl = self.declared()
        if key not in decl:
            raise KeyError(_unknown(self._name, key, self._keys()))
        value = _plain(value)
        if isinstance(value, int) and not isinstance(value, bool) and \
                isinstance(decl[key].default, float):
            value = float(value)
        try:
            decl[key].check(value, owner=f"config key {self._name}.{key}")
        except ValueError as exc:
            raise ValueError(str(exc).replace(f"parameter {key!r} ", "")) from None
        self._params[key] = value

    def __setitem__(self, key: str, value: Any) -> None:
        if key in self.__dataclass_fields__:
            setattr(self, key, _check_value(type(self), key, value))
        else:
            self._set_param(key, value)

    def __setattr__(self, key: str, value: Any) -> None:
        if key in self.__dataclass_fields__ or key.startswith("_"):
            object.__setattr__(self, key, value)
        else:
            self._set_param(key, value)

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), **{k: _plain(v) for k, v in self.method_params().items()}}

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any] | None) -> Section:
        if not isinstance(data, Mapping):   # None: the defaults; anything else: Section's error
            return super().from_mapping(data)
        own = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        sec = super().from_mapping(own)
        for k, v in data.items():
            if k not in own:
                try:
                    sec._set_param(k, copy.deepcopy(v))
                except KeyError as exc:
                    raise ValueError(exc.args[0]) from None
        return sec


def _unknown(section: str, key: Any, allowed: Any) -> str:
    where = f"section {section!r}" if section else "the top level"
    return (f"unknown key {key!r} in config {where}; allowed keys: "
            f"{', '.join(sorted(allowed)) or '(none yet)'}")


def _plain(v: Any) -> Any:
    if isinstance(v, Section):
        return v.to_dict()
    if isinstance(v, Mapping):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, os.PathLike):
        return os.fspath(v)
    return v


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _matches(value: Any, hint: Any) -> tuple[bool, Any]:
    """Whether ``value`` fits the type ``hint``, and the value converted (int -> float, tuple ->
    list)."""
    if hint is Any:
        return True, value
    origin = typing.get_origin(hint)
    if origin is typing.Union or origin is types.UnionType:
        for h in typing.get_args(hint):
            ok, v = _matches(value, h)
            if ok:
                return True, v
        return False, value
    if hint is type(None):
        return value is None, value
    if origin in (list, tuple) or hint in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return False, value
        args = typing.get_args(hint)
        out = []
        for x in value:
            ok, v = _matches(x, args[0]) if args else (True, x)
            if not ok:
                return False, value
            out.append(v)
        return True, out
    if origin is dict or hint is dict:
        return isinstance(value, Mapping), dict(value) if isinstance(value, Mapping) else value
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return True, float(value)
        return False, value
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if isinstance(hint, type):
        return isinstance(value, hint), value
    return True, value


def _describe_hint(hint: Any) -> str:
    """A type hint in words: ``int``, ``int or null``, ``list of int``."""
    origin = typing.get_origin(hint)
    if origin is typing.Union or origin is types.UnionType:
        return " or ".join(_describe_hint(h) for h in typing.get_args(hint))
    if hint is type(None):
        return "null"
    if origin in (list, tuple):
        args = typing.get_args(hint)
        return f"list of {_describe_hint(args[0])}" if args else "list"
    if origin is dict:
        return "mapping"
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def _check_value(cls: type, key: str, value: Any) -> Any:
    """``value`` converted to the field's type (int -> float, tuple -> list) and checked against
    the section's declaration of the key (``_accepts``: :mod:`lrpkit.params` constraints, e.g.
    ``Interval(int, 1, None)``, ``Options(...)``); ``InvalidParameterError`` (a ``TypeError`` and
    a ``ValueError``) naming the key, the value and what is allowed otherwise."""
    from .params import InvalidParameterError, Param, _as_constraints

    hint = _hints(cls).get(key, Any)
    ok, v = _matches(value, hint)
    spec = getattr(cls, "_accepts", {}).get(key)
    decl = None if spec is None else Param(key, None, _as_constraints(spec))
    if ok and (decl is None or decl.accepts(v)):
        return v
    allowed = None if decl is None else decl.describe().removesuffix(" or None") + (
        " or null" if decl.optional else "")
    if not ok:
        extra = f" ({allowed})" if allowed else ""
        raise InvalidParameterError(f"config key {cls._name}.{key} must be {_describe_hint(hint)}"
                                    f"{extra}, got {value!r}")
    raise InvalidParameterError(f"config key {cls._name}.{key} must be {allowed}, got {value!r}")


# ---------------------------------------------------------------------------------------------
# The sections
# ---------------------------------------------------------------------------------------------
# ``_accepts``: each section's declaration of the values its keys take (:mod:`lrpkit.params`
# constraints, checked when a config loads, :func:`_check_value`); keys not declared are checked
# for their type only.
def _interval(kind: type, low: float | None = None, high: float | None = None, closed: str = "both"):
    from .params import Interval

    return Interval(kind, low, high, closed)


def _options(*values: Any):
    from .params import Options

    return Options(*values)


def _lazy_options(module: str, function: str):
    """:class:`~lrpkit.params.Options` read from ``module.function()`` on first check (the preset
    table lives with the scene generator, which imports numpy)."""
    import importlib

    return _options(lambda: importlib.import_module(module).__dict__[function]())


_POSITIVE = _interval(int, 1, None)
_COUNT = _interval(int, 0, None)


@dataclass(eq=False)
class PathsConfig(Section):
    """Where data, models and reports live (relative to the project root unless absolute)."""

    _name = "paths"
    scenes: str = "data/scenes"        # generated bias-zoo scenes (VOC2007 layout)
    models: str = "data/models"        # trained CNN checkpoints, Fisher-vector model
    reports: str = "reports"           # rendered notebooks, HTML, netCDF results


@dataclass(eq=False)
class DataConfig(Section):
    """:func:`lrpkit.data.generate_scenes` settings (the seed is the top-level ``seed``)."""

    _name = "data"
    _accepts = {
        "n_train": _COUNT, "n_val": _COUNT, "n_test": _COUNT,
        "preset": _lazy_options("lrpkit.data.realism", "preset_names")}
    n_train: int = 2000
    n_val: int = 500
    n_test: int = 1000
    preset: str = "realistic"


@dataclass(eq=False)
class CNNConfig(Section):
    """Scene CNN and its training (Lapuschkin et al. 2016, App. E; :func:`lrpkit.models.train_cnn`)."""

    _name = "cnn"
    _accepts = {
        "size": _POSITIVE, "crop": _POSITIVE, "width": _POSITIVE, "convs_per_stage": _POSITIVE,
        "hidden": _POSITIVE, "dropout": _interval(float, 0, 1, "left"),
        "optimizer": _options("adam", "sgd"), "lr": _interval(float, 0, None, "neither"),
        "momentum": _interval(float, 0, 1, "left"), "weight_decay": _interval(float, 0, None),
        "warmup": _interval(float, 0, 1), "epochs": _POSITIVE, "batch_size": _POSITIVE,
        "num_threads": [_POSITIVE, None]}
    size: int = 128                    # longest side S after rescaling; padded to S x S
    crop: int = 112                    # crop c (10 views for training, centre crop at test)
    width: int = 16                    # channels of the first conv stage
    mult: list[int] = field(default_factory=lambda: [1, 2, 4, 8])
    convs_per_stage: int = 1
    hidden: int = 128
    dropout: float = 0.5
    optimizer: str = "adam"            # "adam" or "sgd" (Nesterov, momentum)
    lr: float = 0.003                  # peak rate: linear warm-up, cosine decay per step
    momentum: float = 0.9
    weight_decay: float = 0.0001
    warmup: float = 0.05               # fraction of all steps
    epochs: int = 30
    batch_size: int = 64
    checkpoints: list[int] = field(default_factory=lambda: [0, 1, 2, 4, 8, 15, 30])
    num_threads: int | None = None
    classes: list[str] | None = None
    train_split: str = "train"
    val_split: str | None = "val"
    test_split: str | None = "test"
    deterministic: bool = True
    channels_last: bool = True


@dataclass(eq=False)
class FisherConfig(Section):
    """Fisher-vector pipeline (Lapuschkin et al. 2016, Sec. 4;
    :class:`lrpkit.fisher.FisherVectorClassifier`)."""

    _name = "fisher"
    _accepts = {
        "step": _POSITIVE, "magnif": _interval(float, 0, None, "neither"),
        "contrast_threshold": _interval(float, 0, None), "pca_dim": _POSITIVE,
        "n_components": _POSITIVE, "n_samples": _POSITIVE, "max_fit_images": [_POSITIVE, None],
        "gmm_max_iter": _POSITIVE, "reg_covar": _interval(float, 0, None),
        "batch_size": _POSITIVE, "C": _interval(float, 0, None, "neither"),
        "loss": _options("hinge", "squared_hinge"), "max_iter": _POSITIVE}
    bin_sizes: list[int] = field(default_factory=lambda: [4, 6, 8])
    step: int = 3
    magnif: float = 6.0
    contrast_threshold: float = 0.005
    pca_dim: int = 64
    n_components: int = 64
    n_samples: int = 50000
    max_fit_images: int | None = 500
    gmm_max_iter: int = 100
    reg_covar: float = 0.0001
    batch_size: int = 32
    n_jobs: int | None = -1         # processes for SIFT / encoding (-1: all cores); same result
    C: float = 10.0
    loss: str = "squared_hinge"
    max_iter: int = 5000


@dataclass(eq=False)
class LRPConfig(MethodSection):
    """LRP settings for the notebooks: the parameters of ``explain(method="lrp")``
    (:class:`lrpkit.lrp.LRP`'s declaration) plus the lists the notebooks compare."""

    _name = "lrp"
    _method = "lrp"
    composites: list[str] = field(default_factory=lambda: ["epsilon", "alpha2_beta1",
                                                           "epsilon_plus_flat"])
    baselines: list[str] = field(default_factory=lambda: ["sensitivity", "deconvnet",
                                                          "gradient_x_input", "guided_backprop"])


@dataclass(eq=False)
class EvaluationConfig(Section):
    """Budgets of the evaluation notebooks (image counts, steps ...)."""

    _name = "evaluation"
    ap_images: int | None = 150          # notebooks 00 / 01: AP table images (+ twins); None: all
    resampling_images: int = 120         # notebook 01: true-positive (image, class) pairs (Fig. 7)
    resampling_repeats: int = 5
    resampling_batch: int = 20
    resampling_steps: int = 50
    average_heatmap_images: int = 20
    tag_images: int | None = 60          # tagged horse test images (+ untagged twins); None: all
    tag_margin: int = 8
    cnn_cutoff: str | None = "features.6"
    # notebook 02: context (Lapuschkin et al. 2016, eq. 11, Fig. 6) against the planted truth
    context_images: int = 30             # test images per class for mu, drawn from the twin sample
    context_bootstrap: int = 1000        # bootstrap resamples for every interval of 02 / 03
    context_ap_images: int | None = 240   # test images (and their twins) scored for the AP drop; None: all
    context_checkpoint_images: int = 15  # images per class for mu at each CNN checkpoint
    # notebook 04: region perturbation / AOPC (Samek et al. 2017; lrpkit.evaluate.perturbation)
    aopc_images: int = 100               # true-positive test images for Fig. 4 and complexity (paper: 5040)
    aopc_steps: int | None = None        # perturbation steps L; None: the paper's share (15.7 %) of the image
    aopc_step_samples: int | None = 5    # evaluated steps per curve (stratified, unbiased); None: every step
    aopc_repeats: int = 3                # uniform-noise repeats / random orders (Samek et al. 2017: 10)
    aopc_region_size: int | None = None   # m; None: paper's 9 at 227 px scaled to the input
    aopc_region_sizes: list[int] = field(default_factory=lambda: [1, 3, 5, 9, 19])  # Fig. 8 (scaled)
    aopc_scale_images: int = 30          # images for the region-size study (Fig. 8)
    aopc_scale_steps: int | None = None  # None: the paper's share of the image at every region size
    aopc_checkpoint_images: int = 30     # AOPC per training checkpoint (Fig. 7)
    aopc_checkpoint_steps: int | None = None
    aopc_checkpoint_map_images: int | None = 200   # test images for each checkpoint's mAP
    aopc_fv_images: int = 6              # FV-LRP on the FV model (FV encoding ~0.2 s per image)
    aopc_fv_steps: int | None = None
    aopc_road_images: int = 30           # uniform vs ROAD replacement
    aopc_road_steps: int | None = None
    deletion_images: int = 30            # RISE deletion/insertion images (of the AOPC images)
    deletion_steps: int = 10             # RISE deletion/insertion steps (pixels per step: H*W / steps)
    perturbation_batch: int | None = None     # perturbed images per forward (None: auto)


@dataclass(eq=False)
class PDAConfig(MethodSection):
    """Prediction difference analysis: the parameters of ``explain(method="pda")``
    (:func:`lrpkit.pda.prediction_difference`'s declaration) plus notebook 05's budgets."""

    _name = "pda"
    _method = "pda"
    patch_images: int = 200          # training images the patch Gaussian is fitted on
    patch_max_patches: int = 20000   # outer patches drawn from them
    heatmap_images: int = 3          # test images (distinct classes) for the heatmap panels
    heatmap_stride: int = 10         # window grid step of sampling / mean of S draws (1 = paper)
    mean_stride: int = 4             # window grid step of the conditional mean (Algorithm 2)
    gradient_stride: int = 1         # window grid step of the gradient form (Algorithm 3)
    aopc_images: int = 40            # true-positive test images: fast variants, timings, AOPC
    sampling_images: int = 12        # of these, explained by sampling too (S passes per window)
    approx_images: int = 40          # Fig. 11 (paper: 200 images)
    approx_windows: int | None = 10  # Fig. 11: windows on the object drawn per image (None: all)
    approx_samples: int = 40         # Fig. 11 / 16 (paper: 500 samples)
    invariance_images: int = 2       # Fig. 18
    invariance_angle: float = 10.0   # degrees
    invariance_crop: float = 0.8     # kept share of each side
    aopc_steps: int = 20             # region perturbation of the heatmap images (Samek et al. 2017: 100)
    aopc_repeats: int = 2            # uniform-noise repeats (Samek et al. 2017: 10)
    aopc_region_size: int = 9        # m x m regions (Samek et al. 2017: 9)


@dataclass(eq=False)
class FGVisConfig(MethodSection):
    """FGVis: the parameters of ``explain(method="fgvis")`` (:func:`lrpkit.fgvis.fgvis`'s
    declaration, Wagner et al. 2019) plus notebook 06's budgets."""

    _name = "fgvis"
    _method = "fgvis"
    example_images: int = 3             # Fig. 2: the four games on these test images
    defence_images: int = 300           # Table 1: confidently classified test images (at least
                                        # this many: the cut is lowered below 0.995 if needed)
    defence_candidates: int | None = None  # test images screened for them (None: all)
    defence_confidence: float = 0.995   # top softmax score to count as confident (the paper's)
    defence_steps: int = 60             # generation-game steps with / without the defence
    defence_lr: float = 0.1
    defence_patience: int | None = 15  # an image stops after this many steps without gain
    defence_goal_score: float = 0.5     # "reached": arg-max = target with at least this score
    defence_goal_scores: list[float] = field(default_factory=lambda: [0.3, 0.5, 0.7, 0.9, 0.99])
                                        # the success rate as a function of the goal score
    faithfulness_images: int = 100      # Table 2: test images (deletion metric)
    deletion_steps: int = 28            # deletion-curve steps (H W / 28 pixels per step)
    colour_images: int | None = None  # Table A3: test images for the channel swap (None: all)
    colour_mask_images: int = 6         # preservation masks per class (bus, car)
    tag_images: int = 30                # tagged horse test images (with their untagged twins)


@dataclass(eq=False)
class ReportsConfig(Section):
    """The report runner (:mod:`lrpkit.batch`)."""

    _name = "reports"
    _accepts = {"timeout": [_POSITIVE, None]}
    notebooks: list[str] | None = None      # None: every notebook in name order
    hide_code: bool = True
    timeout: int | None = 3600              # seconds per cell
    scheduler: str | None = "local"         # serial | local (one kernel per core) | local:N | tcp://...


#: what :func:`lrpkit.sources.load_model` loads (``model.source``)
MODEL_SOURCES = ("scene_cnn", "torchvision", "torchscript", "python", "fisher")
#: how a model's scores become probabilities (``model.output``): sigmoid per class, softmax
MODEL_OUTPUTS = ("multilabel", "singlelabel")
#: what :func:`lrpkit.sources.load_dataset` reads (``dataset.source``)
DATASET_SOURCES = ("scenes", "voc", "folder")


def _check_choice(sec: Section, key: str, choices: tuple[str, ...]) -> None:
    value = getattr(sec, key)
    if value is not None and value not in choices:
        raise ValueError(f"config key {sec._name}.{key} must be one of {', '.join(choices)}; "
                         f"got {value!r}")


@dataclass(eq=False)
class ModelConfig(Section):
    """The model to analyse (:func:`lrpkit.sources.load_model`); the default is lrpkit's scene CNN.

    ``source``: ``scene_cnn`` (trained by ``lrpkit train``; ``weights`` default
    ``<paths.models>/cnn/cnn.pt``), ``torchvision`` (``arch`` and ``weights``: a state dict or a
    whole saved model; the file's head is kept and checked against ``num_classes`` /
    ``classes``), ``torchscript`` (``weights``: a ``.pt`` archive), ``python`` (``entry``
    ``"module:function"`` or ``"file.py:function"`` called with ``kwargs``, returning an
    ``nn.Module``; optional ``weights`` state dict), ``fisher`` (the Fisher-vector model fitted by
    lrpkit; ``weights`` default ``<paths.models>/fisher/fv.joblib``).  ``None`` for a key means
    the source's own value (the checkpoint's preprocessing, the file's classes ...).
    """

    _name = "model"
    source: str = "scene_cnn"
    name: str | None = None             # label in reports (default: arch, file name ...)
    weights: str | None = None          # model file (relative: to the project root)
    arch: str | None = None             # torchvision: resnet18, vgg16 ... (lrpkit.models.ARCHS)
    entry: str | None = None            # python: "package.module:function" or "file.py:function"
    kwargs: dict[str, Any] = field(default_factory=dict)   # python: the function's arguments
    num_classes: int | None = None      # a check against the file's head / the outputs
    classes: list[str] | None = None    # output order; None: the file's, else the dataset's
    output: str | None = None           # multilabel (sigmoid) | singlelabel (softmax); None: source's
    transforms: str | None = None       # a torchvision weights enum's preprocessing, e.g.
                                           # "ResNet18_Weights.IMAGENET1K_V1" (metadata only, no download)
    mean: list[float] | None = None     # per-channel mean of the normalisation (RGB, 0..1)
    std: list[float] | None = None
    size: int | None = None             # resize: shorter side (or longest side with resize: pad)
    crop: int | None = None             # centre crop side (the model's input size)
    resize: str | None = None           # shorter (torchvision) | pad (Lapuschkin et al. 2016, App. E)

    def __post_init__(self) -> None:
        _check_choice(self, "source", MODEL_SOURCES)
        _check_choice(self, "output", MODEL_OUTPUTS)
        _check_choice(self, "resize", ("shorter", "pad"))


class ModelsConfig(list):
    """``models``: several :class:`ModelConfig` entries analysed side by side (the shallow-vs-deep
    comparison, two fine-tunings ...), a YAML list of ``model`` sections.  Empty (the default):
    the reports analyse ``model`` alone."""

    _name = "models"

    def __init__(self, items: Any = ()) -> None:
        super().__init__(m if isinstance(m, ModelConfig) else ModelConfig.from_mapping(m)
                         for m in items)

    @classmethod
    def from_mapping(cls, data: Any) -> ModelsConfig:
        """The list from YAML (``None`` or ``{}``: empty); errors name the entry ``models[i]``."""
        if data is None or (isinstance(data, Mapping) and not data):
            return cls()
        if not isinstance(data, (list, tuple)):
            raise TypeError(f"config key models must be a list of model sections "
                            f"(- source: ..., weights: ...), got {type(data).__name__}")
        out = []
        for i, m in enumerate(data):
            try:
                out.append(m if isinstance(m, ModelConfig) else ModelConfig.from_mapping(m))
            except (ValueError, TypeError) as exc:
                where = f"models[{i}]"
                msg = str(exc).replace("config key model.", f"config key {where}.")
                raise type(exc)(msg.replace("section 'model'", f"section {where!r}")) from None
        return cls(out)

    def to_dict(self) -> list[dict[str, Any]]:
        return [m.to_dict() for m in self]


@dataclass(eq=False)
class DatasetConfig(Section):
    """The images to analyse (:func:`lrpkit.sources.load_dataset`); the default is lrpkit's scenes.

    ``source``: ``scenes`` (the generated bias-zoo set in ``paths.scenes``), ``voc`` (a PASCAL
    VOC devkit at ``root``: ``ImageSets/Main/<split>.txt``, boxes from ``Annotations/*.xml``),
    ``folder`` (an image-folder tree ``root[/<split>]/<class>/<image>``, one class per image;
    boxes from an optional CSV).
    """

    _name = "dataset"
    source: str = "scenes"
    name: str | None = None             # label in reports (default: the folder's name)
    root: str | None = None             # scenes: paths.scenes; relative: to the project root
    split: str | None = "test"          # the split analysed (folder: subfolder; None: root itself)
    train_split: str | None = "train"   # what models are fitted on (FV, PDA's patch model)
    classes: list[str] | None = None    # None: scene marker / VOC's 20 / the folder's subfolders
    boxes: str | None = None            # folder: CSV with image, x0, y0, x1, y1[, class]
    images: int | None = None           # the first N images of the split (None: all)

    def __post_init__(self) -> None:
        _check_choice(self, "source", DATASET_SOURCES)
        if self.images is not None and self.images < 1:
            raise ValueError(f"config key dataset.images must be a positive int or null; "
                             f"got {self.images!r}")


#: section name -> dataclass; add a new top-level section here
SECTIONS: dict[str, type[Section]] = {
    "paths": PathsConfig, "data": DataConfig, "cnn": CNNConfig, "fisher": FisherConfig,
    "lrp": LRPConfig, "evaluation": EvaluationConfig, "pda": PDAConfig, "fgvis": FGVisConfig,
    "reports": ReportsConfig, "model": ModelConfig, "models": ModelsConfig, "dataset": DatasetConfig,
}


class Config(Mapping):
    """A whole run configuration: ``seed`` and one typed :class:`Section` per name in
    :data:`SECTIONS`.  ``cfg.cnn`` / ``cfg["cnn"]``; ``cfg.source`` (also ``cfg["_source"]``) is
    the file it was read from."""

    def __init__(self, seed: int = 0, source: str = "<defaults>", **sections: Any):
        object.__setattr__(self, "_data", {})
        self["seed"] = seed
        for name, cls in SECTIONS.items():
            self[name] = sections.pop(name, None) or cls()
        if sections:
            raise ValueError(_unknown("", next(iter(sections)), ["seed", *SECTIONS]))
        object.__setattr__(self, "source", str(source))

    # -- access ------------------------------------------------------------------------------
    def __getitem__(self, key: str) -> Any:
        if key == "_source":
            return self.source
        return self._data[key]

    def __iter__(self):
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __getattr__(self, key: str) -> Any:
        data = object.__getattribute__(self, "_data")
        if key in data:
            return data[key]
        raise AttributeError(_unknown("", key, ["seed", *SECTIONS]))

    def __setitem__(self, key: str, value: Any) -> None:
        if key == "_source":
            object.__setattr__(self, "source", str(value))
        elif key == "seed":
            if not (isinstance(value, int) and not isinstance(value, bool)):
                raise TypeError(f"config key seed must be int, got {value!r}")
            self._data["seed"] = value
        elif key in SECTIONS:
            cls = SECTIONS[key]
            self._data[key] = (copy.deepcopy(value) if isinstance(value, cls)
                               else cls.from_mapping(value))
        else:
            raise KeyError(_unknown("", key, ["seed", *SECTIONS]))

    def __setattr__(self, key: str, value: Any) -> None:
        if key == "source":
            object.__setattr__(self, "source", str(value))
        else:
            try:
                self[key] = value
            except KeyError as exc:
                raise AttributeError(exc.args[0]) from None

    def __eq__(self, other: Any) -> bool:
        if not isinstance(other, Mapping):
            return NotImplemented
        return self.to_dict() == _plain({k: v for k, v in other.items() if k != "_source"})

    __hash__ = None  # type: ignore[assignment]

    def __deepcopy__(self, memo: dict) -> Config:
        return Config(source=self.source, **copy.deepcopy(self._data, memo))

    def copy(self) -> Config:
        return copy.deepcopy(self)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (no ``_source``): JSON / YAML-ready."""
        return {k: _plain(v) for k, v in self._data.items()}

    def __repr__(self) -> str:
        return f"Config(source={self.source!r}, seed={self.seed}, sections={list(SECTIONS)})"


def _defaults_dict() -> dict[str, Any]:
    return Config().to_dict()


def __getattr__(name: str) -> Any:
    # ``DEFAULTS``: the built-in defaults as a plain dict (read-only view for the curious; the
    # dataclasses and the methods' declarations rule).  Computed on use: the method sections
    # import their methods (torch), which ``import lrpkit.config`` must not.
    if name == "DEFAULTS":
        return _defaults_dict()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def project_root() -> Path:
    """The project folder: ``$LRPKIT_PROJECT`` when set; else the nearest parent of the cwd
    (itself included) holding ``configs/`` and either ``notebooks/`` (a folder written by
    ``lrpkit init``) or ``pyproject.toml`` (the source checkout); else the cwd.

    Never the installed package's own folder: an (editable) install run from elsewhere reads
    neither the checkout's configs nor its data unless ``LRPKIT_PROJECT`` names it.
    """
    env = os.environ.get("LRPKIT_PROJECT")
    if env:
        root = Path(env).expanduser().resolve()
        if not root.is_dir():
            raise FileNotFoundError(f"LRPKIT_PROJECT={env} is not a folder")
        return root
    here = Path.cwd().resolve()
    for p in (here, *here.parents):
        if (p / "configs").is_dir() and ((p / "notebooks").is_dir() or (p / "pyproject.toml").is_file()):
            return p
    return here


def config_path(name: str, shipped: bool = True) -> Path | None:
    """The YAML file of config ``name`` (``"smoke"``): ``<project>/configs/<name>.yaml``, else
    (with ``shipped``) the one shipped with lrpkit (:func:`lrpkit.resources.bundled`); ``None``
    when neither exists."""
    own = project_root() / "configs" / f"{name}.yaml"
    if own.is_file() or not shipped:
        return own if own.is_file() else None
    from .resources import bundled

    try:
        path = bundled("configs") / f"{name}.yaml"
    except FileNotFoundError:
        return None
    return path if path.is_file() else None


def config_names() -> list[str]:
    """The names :func:`load_config` finds: ``configs/*.yaml`` of the project and of lrpkit's
    shipped configs, sorted."""
    folders = [project_root() / "configs"]
    try:
        from .resources import bundled

        folders.append(bundled("configs"))
    except (FileNotFoundError, ImportError):
        pass
    return sorted({q.stem for f in folders if f.is_dir() for q in f.glob("*.yaml")})


def _no_config(path: Path, given: str) -> str:
    """The message for a config that is not there: the names there are, and the closest one."""
    import difflib

    names = config_names()
    close = difflib.get_close_matches(Path(given).stem, names, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return (f"config file not found: {path} (nor a config of that name shipped with lrpkit); "
            f"config names: {', '.join(names) or '(none)'}, or a YAML path{hint}")


def merge(base: Mapping, over: Mapping) -> dict:
    """``over`` merged into a copy of ``base``: nested mappings merged key by key, anything else
    replaced.  The result shares no dict or list with either input (sections become plain dicts)."""
    out = _plain(dict(base))
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = merge(out[k], v)
        else:
            out[k] = _plain(v)
    return out


def _undot(over: Mapping[str, Any]) -> dict[str, Any]:
    """``{"cnn.epochs": 3}`` -> ``{"cnn": {"epochs": 3}}`` (other keys unchanged)."""
    out: dict[str, Any] = {}
    for k, v in over.items():
        if isinstance(k, str) and "." in k:
            sec, key = k.split(".", 1)
            out = merge(out, {sec: _undot({key: v})})
        else:
            out = merge(out, {k: v})
    return out


def _build(data: Mapping[str, Any], source: str) -> Config:
    data = dict(data)
    source = str(data.pop("_source", source))
    for k in data:
        if k != "seed" and k not in SECTIONS:
            raise ValueError(_unknown("", k, ["seed", *SECTIONS]))
    cfg = Config(source=source)
    if "seed" in data:
        cfg["seed"] = data["seed"]
    for name in SECTIONS:
        if name in data:
            v = data[name]
            if v is not None and not isinstance(v, (Mapping, list)):  # models: a list
                raise TypeError(f"config section {name!r} must be a mapping, got {type(v).__name__}")
            cfg[name] = v or {}
    return cfg


def load_config(config: str | os.PathLike | Mapping | None = None, **overrides: Any) -> Config:
    """Load a config by name (``"default"``, ``"smoke"``), YAML path, or mapping (a
    :class:`Config` or a plain dict; missing keys take the dataclass defaults).

    ``overrides`` are merged over it: sections as mappings (``cnn={"epochs": 3}``), single
    keys dotted (``**{"cnn.epochs": 3}``) or ``seed=1``.  Raises ``ValueError`` naming an
    unknown key and the allowed ones, ``TypeError`` for a value of the wrong type,
    ``FileNotFoundError`` for a missing file.
    """
    if config is None:
        config = "default"
    if isinstance(config, (str, os.PathLike)) and not Path(config).suffix and \
            not Path(config).exists():
        name = Path(config).name
        # "default" is the project's file or else the dataclasses (never the shipped copy)
        found = None if name == "<defaults>" else config_path(name, shipped=name != "default")
        if found is not None:
            config = found
        elif name in ("default", "<defaults>"):
            config = {"_source": "<defaults>"}
    if isinstance(config, Mapping):
        data: Mapping = _plain({k: v for k, v in config.items()})
        source = config.source if isinstance(config, Config) else str(config.get("_source", "<dict>"))
    else:
        p = Path(config)
        if not p.suffix and not p.exists():
            p = project_root() / "configs" / f"{p.name}.yaml"
        if not p.is_file():
            raise FileNotFoundError(_no_config(p, str(config)))
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ValueError(f"config file {p} is not valid YAML: {exc}") from None
        if not isinstance(data, Mapping):
            raise ValueError(f"config file {p} must hold a mapping at top level")
        source = str(p)
    try:
        merged = merge(data, _undot(overrides))
        return _build(merged, source)
    except (ValueError, TypeError) as exc:
        if source.startswith("<"):
            raise
        raise type(exc)(f"{source}: {exc}") from None


def as_config(cfg: Config | Mapping | str | os.PathLike | None) -> Config:
    """``cfg`` as a :class:`Config`: returned as is, or loaded (name, path, mapping, None)."""
    return cfg if isinstance(cfg, Config) else load_config(cfg)


def resolve_path(cfg: Mapping[str, Any], key: str) -> Path:
    """``cfg['paths'][key]`` as an absolute path (relative ones against the project root)."""
    try:
        p = Path(cfg["paths"][key])
    except KeyError:
        raise ValueError(f"config has no paths.{key}") from None
    return p if p.is_absolute() else project_root() / p
