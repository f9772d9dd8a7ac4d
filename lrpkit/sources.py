"""The model(s) and the dataset a configuration names: what a report analyses.

``model`` (or a ``models`` list) and ``dataset`` are config sections
(:class:`~lrpkit.config.ModelConfig`, :class:`~lrpkit.config.DatasetConfig`); this module turns
them into loaded objects that carry what using them needs (preprocessing, class names, how
scores become probabilities, boxes)::

    from lrpkit import sources
    src = sources.load_sources("configs/my_model.yaml")   # models + dataset of a config
    m, ds = src.model, src.dataset
    x = m.inputs(ds.images(range(8)))                     # (8, 3, crop, crop), m's preprocessing
    s = m.scores(x)                                       # (8, C) logits
    cols = sources.class_index(m, ds)                     # m's output for each dataset class

    m = sources.load_model({"source": "torchvision", "arch": "resnet18",
                            "weights": "my_resnet.pt", "classes": ["cat", "dog", "bird"]})
    ds = sources.load_dataset({"source": "voc", "root": "VOCdevkit", "split": "val"})

Model sources: ``scene_cnn`` (lrpkit's trained CNN, :func:`lrpkit.pipeline.load_cnn`),
``torchvision`` (:func:`lrpkit.models.load_torchvision`: a state dict or a whole saved model,
the file's head kept), ``torchscript`` (:func:`torch.jit.load`), ``python`` (``module:function``
returning an ``nn.Module``), ``fisher`` (the Fisher-vector model fitted by lrpkit).  Dataset
sources: ``scenes`` (lrpkit's bias-zoo set), ``voc`` (a VOC devkit, :class:`lrpkit.data.VOCDataset`),
``folder`` (:class:`torchvision.datasets.ImageFolder`, boxes from an optional CSV).

Preprocessing follows the model's conventions: the scene CNN pads the image to a square
(Lapuschkin et al. 2016, App. E) and crops its centre; torchvision models resize the shorter
side and crop the centre (``weights.transforms()`` of torchvision's weight enums, whose
metadata lrpkit reads without downloading anything).  Errors name the config key
(``model.weights``, ``models[1].arch``), the file and the class counts that disagree.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from collections.abc import Callable

import numpy as np

from .config import Config, DatasetConfig, ModelConfig, as_config, project_root

__all__ = ["ModelSource", "DatasetSource", "Sources", "load_model", "load_dataset", "load_sources",
           "model_specs", "class_index", "describe", "IMAGENET_SIZE", "IMAGENET_CROP"]

#: torchvision's ImageNet evaluation preprocessing: resize the shorter side to 256, crop 224
IMAGENET_SIZE, IMAGENET_CROP = 256, 224
_PROB = {"multilabel": "sigmoid", "singlelabel": "softmax"}
#: the keys each model source needs
_REQUIRED = {"torchvision": ("arch", "weights"), "torchscript": ("weights",), "python": ("entry",)}


# ---------------------------------------------------------------------------------------------
# Loaded objects
# ---------------------------------------------------------------------------------------------
@dataclass(eq=False)
class ModelSource:
    """A loaded model and what using it needs.

    ``model``: an ``nn.Module`` in eval mode (a :class:`~lrpkit.fisher.FisherVectorClassifier`
    for ``source="fisher"``); ``transform``: PIL RGB image -> the model's input, a float32
    ``(3, crop, crop)`` tensor in its normalised space (the image itself for the FV model);
    ``classes``: one name per output; ``output``: ``"multilabel"`` (one sigmoid per class) or
    ``"singlelabel"`` (softmax over the classes).
    """

    model: Any
    name: str
    source: str
    classes: tuple[str, ...]
    output: str
    transform: Callable[[Any], Any]
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    size: int | None = None
    crop: int | None = None
    resize: str | None = None
    path: Path | None = None

    @property
    def prob(self) -> str:
        """``"sigmoid"`` or ``"softmax"``: PDA's ``prob`` (``explain(method="pda", prob=...)``)."""
        return _PROB[self.output]

    @property
    def is_torch(self) -> bool:
        """Whether the model is a torch module (gradient / LRP methods apply)."""
        import torch

        return isinstance(self.model, torch.nn.Module)

    def inputs(self, images: Sequence[Any]) -> Any:
        """The model's input batch for PIL images: ``(N, 3, crop, crop)`` (a list for the FV model)."""
        xs = [self.transform(im) for im in images]
        if not self.is_torch:
            return xs
        import torch

        return torch.stack(xs) if xs else torch.empty(0, 3, self.crop or 0, self.crop or 0)

    def scores(self, x: Any, batch_size: int = 32) -> np.ndarray:
        """Raw class scores ``(N, C)`` (logits, FV decision values) of an input batch or images."""
        if not self.is_torch:
            return np.asarray(self.model.decision_function(list(x)), np.float32)
        import torch

        if not isinstance(x, torch.Tensor):
            x = self.inputs(x)
        with torch.no_grad():
            out = [self.model(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]
        return torch.cat(out).float().numpy() if out else np.zeros((0, len(self.classes)), np.float32)

    def probabilities(self, scores: np.ndarray) -> np.ndarray:
        """Scores -> probabilities: sigmoid per class (multi-label) or softmax (single-label)."""
        from scipy.special import expit, softmax

        s = np.asarray(scores, np.float64)
        return expit(s) if self.output == "multilabel" else softmax(s, axis=-1)

    def margins(self, scores: np.ndarray) -> np.ndarray:
        """Scores whose sign is the model's decision "class present" ``(N, C)``: a multi-label
        model's raw scores (sigmoid > 0.5; the scene CNN's hinge decision), for a single-label
        model each class's logit minus the best other one (> 0 for the arg-max only).  E.g.
        :func:`lrpkit.evaluate.scoring.true_positive_pairs` counts ``> 0`` as predicted."""
        s = np.asarray(scores, np.float64)
        if self.output == "multilabel" or s.shape[-1] < 2:
            return s
        top2 = np.sort(s, axis=-1)[..., -2:]
        other = np.where(s >= top2[..., 1:], top2[..., :1], top2[..., 1:])
        return s - other

    @property
    def bounds(self) -> tuple[Any, Any] | None:
        """``(low, high)``, ``(3, 1, 1)`` tensors: pixel values 0 and 1 in the model's normalised
        input space (the valid range, e.g. ``region_perturbation(bounds=...)``); ``None`` for the
        FV model, whose inputs are images."""
        if not self.is_torch or self.mean is None:
            return None
        import torch

        mean = torch.tensor(self.mean, dtype=torch.float32).view(3, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32).view(3, 1, 1)
        return (0.0 - mean) / std, (1.0 - mean) / std

    def rgb(self, x: Any) -> Any:
        """Model inputs ``(..., 3, H, W)`` back to RGB in ``[0, 1]`` (the inverse of the model's
        normalisation, clamped): for display."""
        low, high = self.bounds
        return ((x.detach().float().cpu() - low) / (high - low)).clamp(0.0, 1.0)

    def input_boxes(self, boxes: Any, image_size: Sequence[int]) -> np.ndarray:
        """Boxes ``(M, 4)`` ``(x0, y0, x1, y1)`` of an image of ``image_size`` ``(width, height)``
        (0-based half-open pixels) in the model's input: moved by its resize and centre crop
        (``resize: pad``: :func:`lrpkit.evaluate.context.box_to_crop`; ``shorter``: torchvision's
        ``Resize(size)`` + ``CenterCrop(crop)``) and clipped to the crop.  The FV model sees the
        image itself: its boxes are returned unchanged."""
        b = np.asarray(boxes, np.float64).reshape(-1, 4)
        if self.crop is None:
            return b.astype(np.float32)
        w, h = (int(v) for v in image_size)
        if self.resize == "pad":
            from .evaluate.context import box_to_crop

            return box_to_crop(b, (w, h), self.size, self.crop).astype(np.float32)
        size, crop = int(self.size), int(self.crop)
        short, long = (w, h) if w <= h else (h, w)           # torchvision.transforms.Resize(int)
        new_long = int(size * long / short)
        nw, nh = (size, new_long) if w <= h else (new_long, size)
        top, left = int(round((nh - crop) / 2.0)), int(round((nw - crop) / 2.0))  # CenterCrop
        out = np.empty_like(b)
        out[:, [0, 2]] = b[:, [0, 2]] * (nw / w) - left
        out[:, [1, 3]] = b[:, [1, 3]] * (nh / h) - top
        return np.clip(out, 0.0, float(crop)).astype(np.float32)

    def describe(self) -> dict[str, Any]:
        """What a result names of the model (``model_name``, ``model_source``, ``model_path``,
        ``model_output``): for the ``attrs`` of a report's Dataset (:func:`describe`)."""
        return {"model_name": self.name, "model_source": self.source,
                "model_path": str(self.path) if self.path else "", "model_output": self.output}

    def __repr__(self) -> str:
        where = f", path={str(self.path)!r}" if self.path else ""
        return (f"ModelSource(name={self.name!r}, source={self.source!r}, classes={len(self.classes)}, "
                f"output={self.output!r}{where})")


@dataclass(eq=False)
class DatasetSource:
    """One split of a dataset: ids, multi-hot labels, boxes, images read on access.

    ``labels`` ``(N, C)`` float32 multi-hot (one-hot for an image folder); ``ignore`` ``(N, C)``
    bool marks VOC's difficult-only (image, class) pairs, which AP leaves out.  Boxes are
    lrpkit's 0-based half-open pixel boxes ``(x0, y0, x1, y1)`` (:mod:`lrpkit.data.voc`).
    ``voc``: the :class:`~lrpkit.data.VOCDataset` behind a ``scenes`` / ``voc`` source (None for
    a folder), for readers of the scene set's own files.
    """

    name: str
    source: str
    root: Path
    split: str | None
    classes: tuple[str, ...]
    ids: list[str]
    paths: list[Path]
    labels: np.ndarray
    ignore: np.ndarray
    boxes: list[np.ndarray]
    box_names: list[list[str]]
    difficult: list[np.ndarray]
    multilabel: bool = True
    voc: Any = None
    _sizes: dict[int, tuple[int, int]] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def has_boxes(self) -> bool:
        """Whether any image has a box (context and box-based measures need them)."""
        return any(len(b) for b in self.boxes)

    def image(self, i: int):
        """Image ``i`` as a PIL RGB image (``DamagedFile`` naming an unreadable file)."""
        from ._integrity import open_rgb

        image = open_rgb(self.paths[i])
        self._sizes[i] = image.size
        return image

    def images(self, indices: Sequence[int] | None = None) -> list:
        """PIL images of ``indices`` (default: all)."""
        return [self.image(i) for i in (range(len(self)) if indices is None else indices)]

    def target(self, i: int) -> dict[str, Any]:
        """``{"id", "labels", "boxes", "names", "difficult", "size"}`` as
        :meth:`lrpkit.data.VOCDataset.target` (``size`` read from the file when not known)."""
        if i not in self._sizes:
            from PIL import Image

            with Image.open(self.paths[i]) as im:
                self._sizes[i] = im.size
        return {"id": self.ids[i], "labels": self.labels[i].copy(), "boxes": self.boxes[i].copy(),
                "names": list(self.box_names[i]), "difficult": self.difficult[i].copy(),
                "size": self._sizes[i]}

    def __getitem__(self, i: int) -> tuple[Any, dict[str, Any]]:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"index {i} out of range for {n} images")
        i %= n
        return self.image(i), self.target(i)

    def head(self, n: int | None) -> DatasetSource:
        """The first ``n`` images (all for ``None``)."""
        if n is None or n >= len(self):
            return self
        return DatasetSource(name=self.name, source=self.source, root=self.root, split=self.split,
                             classes=self.classes, ids=self.ids[:n], paths=self.paths[:n],
                             labels=self.labels[:n], ignore=self.ignore[:n], boxes=self.boxes[:n],
                             box_names=self.box_names[:n], difficult=self.difficult[:n],
                             multilabel=self.multilabel, voc=self.voc,
                             _sizes={k: v for k, v in self._sizes.items() if k < n})

    def describe(self) -> dict[str, Any]:
        """What a result names of the data (``dataset_name``, ``dataset_source``, ``dataset_root``,
        ``dataset_split``, ``dataset_images``): for the ``attrs`` of a report's Dataset."""
        return {"dataset_name": self.name, "dataset_source": self.source,
                "dataset_root": str(self.root), "dataset_split": str(self.split),
                "dataset_images": len(self)}

    def __repr__(self) -> str:
        return (f"DatasetSource(name={self.name!r}, source={self.source!r}, split={self.split!r}, "
                f"n={len(self)}, classes={len(self.classes)}, boxes={self.has_boxes})")


@dataclass(eq=False)
class Sources:
    """The models and the dataset of a config (:func:`load_sources`); ``model`` is the first."""

    models: list[ModelSource]
    dataset: DatasetSource

    @property
    def model(self) -> ModelSource:
        return self.models[0]

    def torch_model(self, analysis: str) -> ModelSource:
        """The first torch model (PDA, FGVis and the gradient-based analyses need one); a
        ``ValueError`` naming ``analysis`` and the configured models when there is none."""
        for m in self.models:
            if m.is_torch:
                return m
        raise ValueError(f"{analysis} needs a torch model; the config's models are "
                         f"{', '.join(f'{m.name} ({m.source})' for m in self.models)}")


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------
def _spec(spec: Any, cls: type, where: str):
    if spec is None:
        return cls()
    if isinstance(spec, cls):
        return spec
    if not isinstance(spec, Mapping):
        raise TypeError(f"{where} must be a mapping (a config section), got {type(spec).__name__}")
    try:
        return cls.from_mapping(spec)
    except (ValueError, TypeError) as exc:
        msg = str(exc).replace(f"section {cls._name!r}", f"section {where!r}")
        raise type(exc)(msg.replace(f"config key {cls._name}.", f"config key {where}.")) from None


def _path(value: str | os.PathLike, key: str, must_exist: bool = True) -> Path:
    """A config path: ``~`` expanded, relative ones against the project root."""
    p = Path(value).expanduser()
    p = p if p.is_absolute() else project_root() / p
    if must_exist and not p.exists():
        raise FileNotFoundError(f"{key}: no such file or folder {p}")
    return p


def _require(spec: Any, key: str, where: str, source: str) -> Any:
    value = getattr(spec, key)
    if value in (None, ""):
        raise ValueError(f"{where}.{key} is required for source {source!r}")
    return value


# ---------------------------------------------------------------------------------------------
# Preprocessing
# ---------------------------------------------------------------------------------------------
class PadCrop:
    """PIL image -> normalised centre crop after padding to a square (Lapuschkin et al. 2016,
    App. E): the longest side rescaled to ``size``, the short side edge-padded, the centre
    ``crop x crop`` kept, ``(pixel / 255 - mean) / std``.  With ImageNet's mean / std this is
    :class:`lrpkit.data.transforms.TestTransform` (the scene CNN's test view)."""

    def __init__(self, size: int, crop: int, mean: Sequence[float], std: Sequence[float]):
        if not 1 <= int(crop) <= int(size):
            raise ValueError(f"crop must be in [1, size={size}], got {crop!r}")
        self.size, self.crop = int(size), int(crop)
        self.mean, self.std = tuple(map(float, mean)), tuple(map(float, std))

    def __call__(self, image):
        import torch

        from .data.transforms import center_crop, image_to_uint8

        x = center_crop(image_to_uint8(image, self.size), self.crop).float() / 255.0
        mean = torch.tensor(self.mean, dtype=torch.float32).view(3, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32).view(3, 1, 1)
        return (x - mean) / std

    def __repr__(self) -> str:
        return f"PadCrop(size={self.size}, crop={self.crop}, mean={self.mean}, std={self.std})"


def _rgb(image):
    """The FV model's 'preprocessing': the RGB image itself."""
    return image.convert("RGB") if hasattr(image, "convert") else image


def _preset(name: str, where: str):
    """The transforms of torchvision weights enum ``name`` (metadata only: nothing is downloaded)."""
    from torchvision.models import get_weight

    try:
        return get_weight(name)
    except (ValueError, KeyError, AttributeError) as exc:
        raise ValueError(f"{where}.transforms: {name!r} is not a torchvision weights enum "
                         f"(e.g. 'ResNet18_Weights.IMAGENET1K_V1'): {exc}") from None


def preprocessing(spec: ModelConfig, where: str,
                  defaults: Mapping[str, Any]) -> tuple[Callable, dict]:
    """The model's preprocessing: the spec's keys over a weights enum's transforms over the
    source's defaults; returns the transform and the values used."""
    import torchvision.transforms as T

    from .data.transforms import MEAN, STD

    vals: dict[str, Any] = {"mean": tuple(MEAN), "std": tuple(STD), "size": None, "crop": None,
                            "resize": "shorter", "interpolation": T.InterpolationMode.BILINEAR}
    vals.update({k: v for k, v in defaults.items() if v is not None})
    if spec.transforms:
        preset = _preset(spec.transforms, where).transforms()
        vals.update(mean=tuple(preset.mean), std=tuple(preset.std), size=int(preset.resize_size[0]),
                    crop=int(preset.crop_size[0]), interpolation=preset.interpolation)
    for k in ("mean", "std", "size", "crop", "resize"):
        v = getattr(spec, k)
        if v is not None:
            vals[k] = tuple(v) if k in ("mean", "std") else v
    for k in ("mean", "std"):
        if len(vals[k]) != 3 or (k == "std" and min(vals[k]) <= 0):
            raise ValueError(f"{where}.{k} must be 3 numbers (RGB){', all > 0' if k == 'std' else ''}; "
                             f"got {list(vals[k])}")
    size, crop = vals["size"], vals["crop"]
    if size is None and crop is None:
        size, crop = IMAGENET_SIZE, IMAGENET_CROP
    elif crop is None:
        crop = size if vals["resize"] == "pad" else min(size, IMAGENET_CROP)
    elif size is None:
        size = crop if vals["resize"] == "pad" else round(crop * IMAGENET_SIZE / IMAGENET_CROP)
    for k, v in (("size", size), ("crop", crop)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{where}.{k} must be a positive int, got {v!r}")
    if crop > size:
        raise ValueError(f"{where}.crop ({crop}) must not exceed {where}.size ({size})")
    vals.update(size=size, crop=crop)
    if vals["resize"] == "pad":
        tf = PadCrop(size, crop, vals["mean"], vals["std"])
    else:
        tf = T.Compose([T.Resize(size, interpolation=vals["interpolation"], antialias=True),
                        T.CenterCrop(crop), T.ToTensor(), T.Normalize(vals["mean"], vals["std"])])
    return tf, vals


# ---------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------
def _n_outputs(model: Any, crop: int, what: str) -> int:
    """The number of class scores ``model`` returns for one zero image (1, 3, crop, crop)."""
    import torch

    try:
        with torch.no_grad():
            out = model(torch.zeros(1, 3, crop, crop))
    except Exception as exc:  # noqa: BLE001 - whatever the user's model raises
        raise ValueError(f"{what} fails on a (1, 3, {crop}, {crop}) input: {type(exc).__name__}: "
                         f"{exc}") from None
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != 1:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"{what} must return class scores of shape (N, C); got {shape}")
    return int(out.shape[1])


def _load_torchscript(path: Path, where: str):
    import torch

    try:
        with warnings.catch_warnings():  # torch marks torch.jit deprecated; the user's file is one
            warnings.simplefilter("ignore", FutureWarning)
            model = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:  # noqa: BLE001 - zip / TorchScript errors of every kind
        raise ValueError(f"{where}.weights: {path} is not a readable TorchScript archive "
                         f"(torch.jit.save): {type(exc).__name__}: {str(exc).splitlines()[0]}") from None
    return model.eval()


def _entry(entry: str, where: str) -> Callable:
    """``"package.module:function"`` or ``"path/to/file.py:function"`` -> the function."""
    mod, sep, fn = str(entry).rpartition(":")
    if not sep or not mod or not fn:
        raise ValueError(f"{where}.entry must be 'module:function' or 'file.py:function', got {entry!r}")
    try:
        if mod.endswith(".py"):
            file = _path(mod, f"{where}.entry")
            name = f"_lrpkit_entry_{abs(hash(str(file)))}"
            spec = importlib.util.spec_from_file_location(name, file)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module  # dataclasses / pickling in the module need it registered
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(mod)
    except ImportError as exc:
        raise ImportError(f"{where}.entry {entry!r}: cannot import {mod!r}: {exc}") from None
    func = getattr(module, fn, None)
    if not callable(func):
        raise ValueError(f"{where}.entry {entry!r}: {mod!r} has no function {fn!r}")
    return func


def _load_state(model: Any, path: Path, where: str) -> None:
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - zip / pickle errors of every kind
        raise ValueError(f"{where}.weights: {path} is not a readable state_dict file: "
                         f"{str(exc).splitlines()[0]}") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{where}.weights: {path} does not hold a state_dict")
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ValueError(f"{where}.weights: {path} does not fit the model of {where}.entry: "
                         f"{exc}") from None


def _resolve_classes(spec: ModelConfig, n_out: int, where: str, path: Path | None,
                     own: Sequence[str] | None, fallback: Sequence[str] | None) -> tuple[str, ...]:
    """The output names: ``classes`` (checked against the outputs), else the file's own, else
    the dataset's (``fallback``, same count), else ``"0" .. "C-1"``."""
    what = str(path) if path is not None else f"the model of {where}"
    if spec.num_classes is not None and spec.num_classes != n_out:
        raise ValueError(f"{where}.num_classes is {spec.num_classes} but {what} has {n_out} outputs")
    if spec.classes is not None:
        if len(spec.classes) != n_out:
            raise ValueError(f"{where}.classes lists {len(spec.classes)} classes but {what} has "
                             f"{n_out} outputs")
        if len(set(spec.classes)) != n_out:
            raise ValueError(f"{where}.classes has duplicate names: {spec.classes}")
        if own is not None and list(own) != list(spec.classes) and len(own) == n_out:
            raise ValueError(f"{where}.classes {list(spec.classes)} differ from the class order "
                             f"stored in {what}: {list(own)}")
        return tuple(map(str, spec.classes))
    if own is not None and len(own) == n_out:
        return tuple(map(str, own))
    if fallback is not None:
        if len(fallback) != n_out:
            raise ValueError(f"{what} has {n_out} outputs but the dataset has {len(fallback)} "
                             f"classes ({', '.join(fallback)}); set {where}.classes to name the "
                             f"outputs")
        return tuple(map(str, fallback))
    return tuple(str(i) for i in range(n_out))


def model_specs(cfg: Any) -> list[tuple[str, ModelConfig]]:
    """``[(where, spec)]``: the config's ``models`` list (``models[i]``), else ``[("model", model)]``."""
    cfg = as_config(cfg)
    if len(cfg.models):
        return [(f"models[{i}]", m) for i, m in enumerate(cfg.models)]
    return [("model", cfg.model)]


def load_model(spec: ModelConfig | Mapping[str, Any] | None = None, cfg: Any = None, *,
               where: str = "model", classes: Sequence[str] | None = None,
               output: str | None = None) -> ModelSource:
    """Load the model a ``model`` section describes (:class:`~lrpkit.config.ModelConfig`).

    ``spec``: the section, a plain mapping of its keys, or ``None`` (``cfg.model``, or the
    default scene CNN).  ``cfg``: the config whose ``paths.models`` holds lrpkit's own models
    (``scene_cnn``, ``fisher`` without ``weights``).  ``where``: the key named in errors
    (``models[1]``).  ``classes``: the dataset's classes, the output names of a model that
    stores none (a state dict, TorchScript) when ``spec.classes`` is not set.  ``output``: the
    output kind when ``spec.output`` is not set (:func:`load_sources` passes the dataset's:
    ``multilabel`` for VOC and the scenes, ``singlelabel`` for an image folder); else a
    user's network is taken as single-label (softmax).

    Raises ``FileNotFoundError`` naming a missing file, ``ValueError`` naming the key and file
    for a corrupt file, an unknown ``arch``, or class counts that disagree (file head,
    ``num_classes``, ``classes``, the dataset's classes).
    """
    if spec is None and cfg is not None:
        spec = as_config(cfg).model
    spec = _spec(spec, ModelConfig, where)
    source = spec.source
    for key in _REQUIRED.get(source, ()):
        _require(spec, key, where, source)
    path = _path(spec.weights, f"{where}.weights") if spec.weights else None
    own: Sequence[str] | None = None
    if source == "scene_cnn":
        from .layout import cnn_path

        path = path or cnn_path(as_config(cfg))
        if not path.is_file():
            raise FileNotFoundError(f"{where}: no scene CNN at {path}; train it (`lrpkit train`) "
                                    f"or set {where}.weights")
        from .models.cnn import load_cnn

        model = load_cnn(path)
        meta = model.meta
        tf, vals = preprocessing(spec, where, {"size": meta.get("size"),
                                            "crop": meta.get("input_size", model.input_size),
                                            "mean": meta.get("mean"), "std": meta.get("std"),
                                            "resize": "pad"})
        own, name, output = model.classes, "scene CNN", "multilabel"
    elif source == "torchvision":
        from .models.zoo import ARCHS, load_torchvision

        arch = str(spec.arch).lower()
        if arch not in ARCHS:
            raise ValueError(f"{where}.arch must be one of {', '.join(ARCHS)}; got {spec.arch!r}")
        try:
            model = load_torchvision(arch, path)
        except ValueError as exc:
            raise ValueError(f"{where}.weights: {exc}") from None
        tf, vals = preprocessing(spec, where, {})
        name, output = arch, output or "singlelabel"
        if spec.transforms and spec.classes is None:
            own = _preset(spec.transforms, where).meta.get("categories")
    elif source == "torchscript":
        model = _load_torchscript(path, where)
        tf, vals = preprocessing(spec, where, {})
        name, output = path.stem, output or "singlelabel"
    elif source == "python":
        entry = spec.entry
        func = _entry(entry, where)
        try:
            model = func(**spec.kwargs)
        except TypeError as exc:
            raise TypeError(f"{where}.entry {entry!r} called with {where}.kwargs "
                            f"{dict(spec.kwargs)}: {exc}") from None
        import torch

        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"{where}.entry {entry!r} returned a {type(model).__name__}, "
                            f"not a torch.nn.Module")
        if path is not None:
            _load_state(model, path, where)
        model.eval()
        tf, vals = preprocessing(spec, where, {})
        name, output = str(entry).rpartition(":")[2], output or "singlelabel"
    elif source == "fisher":
        from .fisher.classifier import load_fisher
        from .layout import fisher_path

        path = path or fisher_path(as_config(cfg))
        if not path.is_file():
            raise FileNotFoundError(f"{where}: no Fisher-vector model at {path}; fit it "
                                    f"(`lrpkit train --only fisher`) or set {where}.weights")
        try:
            model = load_fisher(path)
        except (TypeError, FileNotFoundError):
            raise
        except Exception as exc:  # noqa: BLE001 - joblib / pickle errors of every kind
            raise ValueError(f"{where}.weights: {path} is not a readable Fisher-vector model: "
                             f"{type(exc).__name__}: {exc}") from None
        n_out = len(model.class_names_)
        names = _resolve_classes(spec, n_out, where, path, model.class_names_, classes)
        return ModelSource(model=model, name=spec.name or "Fisher vector", source=source,
                           classes=names, output=spec.output or "multilabel", transform=_rgb,
                           path=path)
    else:  # pragma: no cover - ModelConfig checks the choice
        raise ValueError(f"{where}.source: unknown source {source!r}")
    n_out = _n_outputs(model, vals["crop"], f"the model of {where} ({path or spec.entry})")
    names = _resolve_classes(spec, n_out, where, path, own, classes)
    return ModelSource(model=model, name=spec.name or name, source=source, classes=names,
                       output=spec.output or output, transform=tf, mean=tuple(vals["mean"]),
                       std=tuple(vals["std"]), size=vals["size"], crop=vals["crop"],
                       resize=vals["resize"], path=path)


# ---------------------------------------------------------------------------------------------
# Datasets
# ---------------------------------------------------------------------------------------------
def _from_voc(ds: Any, name: str, source: str) -> DatasetSource:
    targets = [ds.target(i) for i in range(len(ds))]
    out = DatasetSource(name=name, source=source, root=Path(ds.root), split=ds.split,
                        classes=tuple(ds.classes), ids=list(ds.ids),
                        paths=[ds.image_path(i) for i in range(len(ds))],
                        labels=np.asarray(ds.labels, np.float32), ignore=np.asarray(ds.ignore, bool),
                        boxes=[t["boxes"] for t in targets], box_names=[t["names"] for t in targets],
                        difficult=[t["difficult"] for t in targets], multilabel=True, voc=ds)
    out._sizes.update({i: tuple(t["size"]) for i, t in enumerate(targets)})
    return out


def _folder_tree(root: Path, split: str | None, where: str) -> Path:
    if split is None:
        return root
    tree = root / split
    if not tree.is_dir():
        raise FileNotFoundError(f"{where}.split {split!r}: no folder {tree}; set {where}.split: null "
                                f"to read {root} itself")
    return tree


def _image_folder(tree: Path, classes: Sequence[str] | None, where: str):
    from torchvision.datasets import ImageFolder

    class _Folder(ImageFolder):
        def find_classes(self, directory):
            found = sorted(e.name for e in os.scandir(directory) if e.is_dir()
                           and not e.name.startswith("."))
            names = list(found if classes is None else classes)
            missing = [c for c in names if c not in found]
            if not names or missing:
                raise FileNotFoundError(f"{where}: no class folder(s) {missing or '(none at all)'} "
                                        f"in {directory} (class folders there: {found})")
            return names, {c: i for i, c in enumerate(names)}

    try:
        return _Folder(str(tree))
    except FileNotFoundError as exc:
        msg = str(exc)
        raise FileNotFoundError(msg if msg.startswith(where) else f"{where}: {msg}") from None


def _read_boxes(csv: Path, keys: Sequence[Sequence[str]], classes: tuple[str, ...],
                own_class: list[str], where: str) -> tuple[list[np.ndarray], list[list[str]]]:
    """Boxes of a CSV (``image, x0, y0, x1, y1[, class]``; 0-based half-open pixels) per image.

    ``keys[i]``: the names a row may give image ``i`` (its path relative to the dataset root,
    then relative to the split folder, with and without the extension); rows naming an image
    of another split are skipped."""
    import pandas as pd

    try:
        table = pd.read_csv(csv)
    except Exception as exc:  # noqa: BLE001 - parser errors of every kind
        raise ValueError(f"{where}.boxes: {csv} is not a readable CSV: {exc}") from None
    need = ["image", "x0", "y0", "x1", "y1"]
    missing = [c for c in need if c not in table.columns]
    if missing:
        raise ValueError(f"{where}.boxes: {csv} lacks column(s) {missing} (has {list(table.columns)}; "
                         f"expected image, x0, y0, x1, y1 and optionally class)")
    index: dict[str, int] = {}
    for i, ks in enumerate(keys):
        for k in ks:
            index.setdefault(k, i)
    boxes: list[list[tuple]] = [[] for _ in keys]
    names: list[list[str]] = [[] for _ in keys]
    matched = 0
    for row_no, row in enumerate(table.to_dict("records"), start=2):  # line 1: the header
        key = str(row["image"]).replace("\\", "/")
        i = index.get(key[2:] if key.startswith("./") else key)
        if i is None:
            continue  # an image of another split
        try:
            x0, y0, x1, y1 = (float(row[c]) for c in ("x0", "y0", "x1", "y1"))
        except (TypeError, ValueError):
            raise ValueError(f"{where}.boxes: {csv} line {row_no}: box coordinates are not "
                             f"numbers") from None
        if not (0 <= x0 < x1 and 0 <= y0 < y1):
            raise ValueError(f"{where}.boxes: {csv} line {row_no}: box ({x0}, {y0}, {x1}, {y1}) of "
                             f"{key!r} is empty or negative (0-based, x1 > x0, y1 > y0)")
        cls = str(row["class"]) if "class" in table.columns else own_class[i]
        if cls not in classes:
            raise ValueError(f"{where}.boxes: {csv} line {row_no}: class {cls!r} is not one of "
                             f"{', '.join(classes)}")
        boxes[i].append((x0, y0, x1, y1))
        names[i].append(cls)
        matched += 1
    if len(table) and not matched:
        raise ValueError(f"{where}.boxes: no row of {csv} names an image of this split (first: "
                         f"{table['image'].iloc[0]!r}; expected paths relative to the dataset "
                         f"root or the split's folder, such as "
                         f"{keys[0][0] if keys else '<split>/<class>/<file>'!r})")
    return [np.array(b, np.float32).reshape(-1, 4) for b in boxes], names


def load_dataset(spec: DatasetConfig | Mapping[str, Any] | None = None, cfg: Any = None, *,
                 split: Any = ..., where: str = "dataset") -> DatasetSource:
    """Load the split a ``dataset`` section describes (:class:`~lrpkit.config.DatasetConfig`).

    ``spec``: the section, a plain mapping of its keys, or ``None`` (``cfg.dataset``, or the
    default scenes).  ``cfg``: the config whose ``paths.scenes`` holds lrpkit's scenes.
    ``split``: another split than ``spec.split`` (e.g. ``spec.train_split``).  ``spec.images``
    keeps the first N images of the split.

    Raises ``FileNotFoundError`` naming a missing folder / split / class folder, ``ValueError``
    naming the file of an unreadable annotation or box table.
    """
    if spec is None and cfg is not None:
        spec = as_config(cfg).dataset
    spec = _spec(spec, DatasetConfig, where)
    split = spec.split if split is ... else split
    if spec.source in ("scenes", "voc"):
        from .data.voc import VOCDataset

        if spec.source == "scenes":
            from .layout import scenes_root

            root = _path(spec.root, f"{where}.root", False) if spec.root else scenes_root(as_config(cfg))
            if not root.exists():
                raise FileNotFoundError(f"{where}: no scene set at {root}; generate it (`lrpkit data`)")
        else:
            root = _path(_require(spec, "root", where, spec.source), f"{where}.root")
        if split is None:
            raise ValueError(f"{where}.split is required for source {spec.source!r}")
        try:
            ds = VOCDataset(root, split, classes=spec.classes)
        except ValueError as exc:
            hint = f" (set {where}.classes)" if "unknown class name" in str(exc) else ""
            raise ValueError(f"{where}: {exc}{hint}") from None
        except FileNotFoundError as exc:
            raise FileNotFoundError(f"{where}: {exc}") from None
        name = spec.name or ("scenes" if spec.source == "scenes" else Path(ds.root).name)
        return _from_voc(ds, name, spec.source).head(spec.images)
    # folder
    root = _path(_require(spec, "root", where, spec.source), f"{where}.root")
    tree = _folder_tree(root, split, where)
    ds = _image_folder(tree, spec.classes, where)
    classes = tuple(ds.classes)
    paths = [Path(p) for p, _ in ds.samples]
    rel = [p.relative_to(tree).as_posix() for p in paths]
    ids = [r.rsplit(".", 1)[0] for r in rel]
    targets = [t for _, t in ds.samples]
    labels = np.zeros((len(paths), len(classes)), np.float32)
    labels[np.arange(len(paths)), targets] = 1.0
    own_class = [classes[t] for t in targets]
    if spec.boxes:
        keys = []
        for p in paths:
            in_root, in_tree = p.relative_to(root).as_posix(), p.relative_to(tree).as_posix()
            keys.append([in_root, in_tree, in_root.rsplit(".", 1)[0], in_tree.rsplit(".", 1)[0]])
        boxes, names = _read_boxes(_path(spec.boxes, f"{where}.boxes"), keys, classes, own_class,
                                   where)
    else:
        boxes = [np.zeros((0, 4), np.float32) for _ in paths]
        names = [[] for _ in paths]
    out = DatasetSource(name=spec.name or root.name, source="folder", root=root, split=split,
                        classes=classes, ids=ids, paths=paths, labels=labels,
                        ignore=np.zeros(labels.shape, bool), boxes=boxes, box_names=names,
                        difficult=[np.zeros(len(b), bool) for b in boxes], multilabel=False)
    return out.head(spec.images)


# ---------------------------------------------------------------------------------------------
# A config's sources
# ---------------------------------------------------------------------------------------------
def load_sources(cfg: Config | Mapping | str | os.PathLike | None = None, *,
                 split: Any = ...) -> Sources:
    """The dataset (``split``: another than ``dataset.split``) and the models of a config; a
    model that names no classes takes the dataset's, and one that names no ``output`` kind the
    dataset's (multi-label on VOC and the scenes, single-label on an image folder).  Model
    names must differ (they label the side-by-side reports)."""
    cfg = as_config(cfg)
    dataset = load_dataset(cfg.dataset, cfg, split=split)
    kind = "singlelabel" if dataset.source == "folder" else "multilabel"   # VOC, scenes: several
    models = [load_model(spec, cfg, where=where, classes=dataset.classes, output=kind)
              for where, spec in model_specs(cfg)]
    seen: dict[str, str] = {}
    for (where, _), m in zip(model_specs(cfg), models):
        if m.name in seen:
            raise ValueError(f"{seen[m.name]} and {where} are both named {m.name!r}; set "
                             f"{where}.name")
        seen[m.name] = where
    return Sources(models=models, dataset=dataset)


def describe(model: ModelSource | Sequence[ModelSource] | None = None,
             dataset: DatasetSource | None = None) -> dict[str, Any]:
    """``attrs`` naming the model(s) and the data a result analysed (Architecture: results carry
    what they were made from): :meth:`ModelSource.describe` (several models: ``models``, a list
    of those dicts) and :meth:`DatasetSource.describe`."""
    out: dict[str, Any] = {}
    if isinstance(model, ModelSource):
        out.update(model.describe())
    elif model is not None:
        out["models"] = [m.describe() for m in model]
    if dataset is not None:
        out.update(dataset.describe())
    return out


def class_index(model: ModelSource, dataset: DatasetSource) -> list[int]:
    """For each dataset class, the index of the model's output of that name (models trained on
    more classes, e.g. ImageNet's 1000, are read at the dataset's)."""
    pos = {c: i for i, c in enumerate(model.classes)}
    missing = [c for c in dataset.classes if c not in pos]
    if missing:
        raise ValueError(f"model {model.name!r} has no output for the dataset's class(es) {missing} "
                         f"(its classes: {', '.join(model.classes[:10])}"
                         f"{' ...' if len(model.classes) > 10 else ''})")
    return [pos[c] for c in dataset.classes]
