"""What the explorer computes, without any widget: a heatmap, its perturbation curve, its twin.

The pure functions take a model and an input batch of one image::

    ex = explain_image(model, x, "pred", "lrp", {"composite": "epsilon"})   # Explanation
    curve = perturbation_curve(model, x, ex.heatmap, ex.target)            # MoRF vs random
    mu = context_ratio(ex.heatmap, boxes)

:class:`Workspace` is the data-and-model side of it: the config's ``dataset`` and ``model`` /
``models`` sections through :mod:`lrpkit.sources` (or given objects, :func:`model_source`), an
image's model input and object boxes (moved into the input by
:meth:`~lrpkit.sources.ModelSource.input_boxes`), on lrpkit's scenes the bias table, the
counterfactual twins and the scene CNN's checkpoints, and each method's starting parameters
(:func:`config_params`: the config's values, e.g. PDA's ``stride = pda.heatmap_stride``, FGVis
with ``output="relevance"``; :func:`lrpkit.pipeline.pda_params` for the model's ``prob``) and
the objects that come from the pipeline instead of a widget (PDA's patch model,
:func:`lrpkit.pipeline.load_patch_model`, kept beside the models as notebook 05 does).

Long computations take ``progress``: a callable ``progress(done, total)`` that may raise to
cancel (:mod:`lrpkit.widgets.worker`).
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .. import pipeline, sources
from ..config import as_config
from ..data import read_bias
from ..evaluate.context import outside_inside_ratio
from ..evaluate.perturbation import region_perturbation
from ..explain import explain, get_method, methods, model_scores, resolve_target
from ..models.train import checkpoint_name
from ..viz import channel_sum

__all__ = ["SPLITS", "BIAS_FILTERS", "Inputs", "Explanation", "explain_image", "perturbation_curve",
           "context_ratio", "config_params", "model_source", "Workspace"]

#: the scene splits the explorer offers on lrpkit's scenes (those present in the scene folder)
SPLITS = ("test", "test_swapped", "test_untagged", "val", "train")
#: image filters on the bias table (``bias.csv`` of a generated scene set; planted truth, so
#: only on lrpkit's scenes)
BIAS_FILTERS = ("any", "tagged", "untagged", "off-context", "in-context")
#: twin image ids of a source id ``test_<n>``: split -> id pattern
_TWINS = {"test": "test_{}", "test_swapped": "swapped_{}", "test_untagged": "untagged_{}"}

Progress = Callable[[int, int], Any] | None


@dataclass(frozen=True)
class Inputs:
    """One image as a model sees it: ``x`` ``(1, C, H, W)`` (the model's preprocessing; the image
    itself in ``[0, 1]`` for the Fisher-vector model), ``image`` ``(H, W, 3)`` in ``[0, 1]`` for
    display, the object ``boxes`` ``(M, 4)`` in input pixels (boxes left outside the crop
    dropped), ``classes`` the model's output names."""

    x: torch.Tensor
    image: np.ndarray
    image_id: str
    split: str
    index: int
    boxes: np.ndarray
    classes: list[str]


@dataclass
class Explanation:
    """A heatmap and what it explains: the relevance ``(C, H, W)``, its channel sum
    ``heatmap`` ``(H, W)`` (Bach et al. 2016: the pixel relevance), the class ``scores`` and the
    explained ``target`` class.  ``params``: what the method was called with."""

    method: str
    params: dict[str, Any]
    target: int
    relevance: np.ndarray
    heatmap: np.ndarray
    scores: np.ndarray
    seconds: float = 0.0

    @property
    def score(self) -> float:
        """The model's score of the explained class."""
        return float(self.scores[self.target])


def explain_image(model: Any, x: torch.Tensor, target: Any, method: str,
                  params: Mapping[str, Any] | None = None, *,
                  progress: Progress = None) -> Explanation:
    """Explain one image ``x`` ``(1, C, H, W)`` for ``target`` (a class index or ``"pred"``)
    with a registered ``method`` and its ``params`` (checked against its declaration).

    ``progress`` is handed to methods that take one (PDA, ...); without it they run silently.
    """
    m = get_method(method)
    kw = dict(params or {})
    if "progress" in m.parameters:
        kw["progress"] = progress if progress is not None else False
    t0 = time.perf_counter()
    scores = model_scores(model, x)
    t = resolve_target(model, x, target, scores=scores)
    rel = explain(model, x, t, method=method, **kw)[0].detach().cpu()
    kw.pop("progress", None)
    return Explanation(method, kw, int(t[0]), rel.numpy(), channel_sum(rel).numpy(),
                       scores[0].detach().cpu().numpy(), time.perf_counter() - t0)


def perturbation_curve(model: Any, x: torch.Tensor, heatmap: np.ndarray, target: int, *,
                       steps: int = 20, region_size: int = 9, repeats: int = 3,
                       batch_size: int | None = None,
                       progress: Progress = None) -> dict[str, np.ndarray]:
    """Target score while the most relevant ``region_size`` squares are perturbed first
    (``"morf"``) and in a random order (``"random"``, mean of ``repeats``): Samek et al. 2017,
    eq. 9-12 (:func:`lrpkit.evaluate.region_perturbation`, uniform noise).  ``steps`` is
    capped at the number of regions; ``batch_size`` images per forward pass (default: one
    perturbation path, ``steps + 1``; each batch is a cancellation point for ``progress``)."""
    h, w = x.shape[-2:]
    steps = int(min(steps, np.ceil(h / region_size) * np.ceil(w / region_size)))
    batch_size = steps + 1 if batch_size is None else batch_size
    hm = torch.as_tensor(np.asarray(heatmap, dtype=np.float32))[None]
    out = {}
    for order, reps in (("morf", 1), ("random", repeats)):
        ds = region_perturbation(model, x, hm, [int(target)], region_size=region_size, steps=steps,
                                 repeats=reps, order=order, seed=0, batch_size=batch_size,
                                 progress=progress if progress is not None else False)
        out[order] = ds["score"].isel(image=0).mean("repeat").values
    return out


def context_ratio(heatmap: np.ndarray, boxes: np.ndarray) -> float:
    """mu of Lapuschkin et al. 2016, eq. 11 (mean positive relevance outside / inside the
    object boxes); ``nan`` where it is undefined (no box, boxes covering all or nothing)."""
    if len(boxes) == 0:
        return float("nan")
    try:
        return outside_inside_ratio(heatmap, boxes)
    except ValueError:
        return float("nan")


def config_params(cfg: Any, method: str) -> dict[str, Any]:
    """A method's starting parameters for interactive use: its declared defaults, the config
    section's values for ``lrp`` / ``pda`` / ``fgvis`` (:meth:`MethodSection.method_params`),
    for PDA the window grid step of the notebooks' heatmaps (``pda.heatmap_stride``), for
    FGVis the evidence map (``output="relevance"``) instead of the mask.  The model-dependent
    PDA values come from :meth:`Workspace.params`."""
    cfg = as_config(cfg)
    m = get_method(method)
    values = {k: p.default for k, p in m.parameters.items() if k != "progress"}
    if method in ("lrp", "pda", "fgvis"):
        sec = cfg[method]
        values.update(sec.method_params())
        if method == "pda":
            values["stride"] = int(sec.heatmap_stride)
        elif method == "fgvis":
            values["output"] = "relevance"
    return values


def model_source(model: Any, *, transform: Callable[[Any], torch.Tensor] | None = None,
                 classes: Sequence[str] | None = None, output: str | None = None,
                 name: str | None = None, mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None, size: int | None = None,
                 crop: int | None = None, resize: str | None = None,
                 dataset: sources.DatasetSource | None = None) -> sources.ModelSource:
    """A model object as a :class:`lrpkit.sources.ModelSource` (returned as is if it is one).

    An ``nn.Module`` (put in eval mode; ``(N, 3, H, W)`` -> class scores ``(N, C)``) needs its
    preprocessing, one of:

    * ``transform``: PIL RGB image -> its input, a ``(3, H, W)`` float tensor; ``mean`` /
      ``std`` are the normalisation it applies (to show the input as an image; default
      ImageNet's), ``size`` / ``crop`` / ``resize`` its geometry (to move the object boxes into
      the input, :meth:`~lrpkit.sources.ModelSource.input_boxes`; without ``crop`` no box is
      shown and mu is undefined);
    * no ``transform``: the ``model`` config section's preprocessing from ``mean``, ``std``,
      ``size``, ``crop``, ``resize`` (default torchvision's ImageNet evaluation view: shorter
      side 256, centre crop 224, ImageNet mean / std).

    ``classes``: one name per output (default: the ``dataset``'s classes when the counts
    agree, else ``"0" .. "C-1"``); ``output``: ``"multilabel"`` (sigmoid per class) or
    ``"singlelabel"`` (softmax; the default unless the dataset is multi-label).
    """
    if isinstance(model, sources.ModelSource):
        return model
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a lrpkit.sources.ModelSource or a torch.nn.Module, got "
                        f"{type(model).__name__}")
    from ..config import ModelConfig
    from ..data.transforms import MEAN, STD

    if output is None:
        output = "multilabel" if dataset is not None and dataset.multilabel else "singlelabel"
    spec = ModelConfig.from_mapping({"source": "python", "output": output, "resize": resize,
                                     "mean": None if mean is None else list(mean),
                                     "std": None if std is None else list(std),
                                     "size": size, "crop": crop})
    if transform is None:
        transform, vals = sources.preprocessing(spec, "model", {})
    else:
        if not callable(transform):
            raise TypeError(f"transform must be a callable (PIL image -> tensor), got "
                            f"{type(transform).__name__}")
        if crop is not None and size is None:
            size = crop
        vals = {"mean": tuple(mean or MEAN), "std": tuple(std or STD), "size": size, "crop": crop,
                "resize": resize or "shorter"}
    model.eval()
    if vals["crop"] is not None:
        x = torch.zeros(1, 3, vals["crop"], vals["crop"])
    elif dataset is not None and len(dataset):
        x = transform(dataset.image(0))[None]
    else:
        x = None
    if x is None:
        if classes is None:
            raise ValueError("classes is required for a model with its own transform and no "
                             "crop or dataset to read its number of outputs from")
        n_out = len(classes)
    else:
        with torch.no_grad():
            out = model(x.float())
        if not isinstance(out, torch.Tensor) or out.dim() != 2:
            raise ValueError(f"model must return class scores (N, C); got "
                             f"{tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__}")
        n_out = int(out.shape[1])
    if classes is not None:
        if len(classes) != n_out:
            raise ValueError(f"classes lists {len(classes)} names but the model has {n_out} outputs")
        names = tuple(map(str, classes))
    elif dataset is not None and len(dataset.classes) == n_out:
        names = tuple(dataset.classes)
    else:
        names = tuple(str(i) for i in range(n_out))
    return sources.ModelSource(model=model, name=name or type(model).__name__, source="python",
                               classes=names, output=output, transform=transform,
                               mean=tuple(vals["mean"]), std=tuple(vals["std"]), size=vals["size"],
                               crop=vals["crop"], resize=vals["resize"])


def _label_names(ds: sources.DatasetSource, i: int) -> list[str]:
    """The classes image ``i`` shows: its labels and its boxes' names."""
    names = set(ds.box_names[i]) | {ds.classes[c] for c in np.flatnonzero(ds.labels[i] > 0)}
    return sorted(names)


class Workspace:
    """The images and models the explorer offers, loaded once each.

    From the config's ``dataset`` and ``model`` / ``models`` sections
    (:func:`lrpkit.sources.load_dataset`, :func:`lrpkit.sources.load_model`), or from objects:
    ``dataset`` a :class:`~lrpkit.sources.DatasetSource`, ``model`` a
    :class:`~lrpkit.sources.ModelSource`, an ``nn.Module`` (wrapped by :func:`model_source`
    with ``transform`` / ``classes`` / ``output``) or a list of them.  The config still gives
    the methods' starting values and where the PDA patch model is kept (``paths.models``).

    Splits: the dataset's split, then (config data) the training split, or on lrpkit's scenes
    every scene split present (:data:`SPLITS`, also for a scene set given as an object).  On the scenes the bias filters
    (:data:`BIAS_FILTERS`, from ``bias.csv``) and the counterfactual twins apply; a scene CNN
    also offers its training checkpoints (``<name>@<epoch>``), and on the default scenes the
    fitted Fisher-vector model is offered beside the configured models
    (:func:`lrpkit.pipeline.available_fisher`).  PDA's training images (Laplace correction,
    patch model): ``train`` (a DatasetSource), else the config's ``dataset.train_split`` for
    config data, else the analysed images themselves.
    """

    def __init__(self, config: Any = None, *, model: Any = None,
                 dataset: sources.DatasetSource | None = None,
                 train: sources.DatasetSource | None = None,
                 transform: Callable[[Any], torch.Tensor] | None = None,
                 classes: Sequence[str] | None = None, output: str | None = None) -> None:
        self.config = config
        self.cfg = as_config(config)
        self._lock = threading.RLock()
        self._inputs: dict[tuple, Inputs] = {}
        self._patch: dict[tuple, Any] = {}
        self._bias: dict[str, dict] | None = None
        for pname, value in (("dataset", dataset), ("train", train)):
            if value is not None and not isinstance(value, sources.DatasetSource):
                raise TypeError(f"{pname} must be a lrpkit.sources.DatasetSource "
                                f"(sources.load_dataset(...)), got {type(value).__name__}")
        self._spec = self.cfg.dataset if dataset is None else None   # None: the data are an object
        data = sources.load_dataset(self._spec, self.cfg) if dataset is None else dataset
        self.data = data
        self.split0 = str(data.split) if data.split is not None else "data"
        self._datasets: dict[str, sources.DatasetSource] = {self.split0: data}
        self._train = train
        self._train_loaded = train is not None or dataset is not None
        self.scenes = data.source == "scenes"
        kind = "multilabel" if data.multilabel else "singlelabel"
        if model is None:
            loaded = [sources.load_model(spec, self.cfg, where=where, classes=data.classes,
                                         output=kind) for where, spec in sources.model_specs(self.cfg)]
        else:
            items = list(model) if isinstance(model, (list, tuple)) else [model]
            loaded = [model_source(m, transform=transform, classes=classes, output=output,
                                   dataset=data) for m in items]
        self._sources: dict[str, sources.ModelSource] = {}
        self._checkpoints: dict[str, tuple[str, Any]] = {}   # key -> (parent key, file)
        self._family: dict[str, str] = {}
        self._choices: list[tuple[str, str]] = []
        for m in loaded:
            self._add(m)
        if model is None and dataset is None and self.scenes:
            fv = pipeline.available_fisher(self.cfg, sources.Sources(models=loaded, dataset=data))
            if fv is not None and all(m.path != fv.path for m in loaded):
                self._add(fv)

    def _add(self, m: sources.ModelSource) -> None:
        key, n = m.name, 2
        while key in self._family:
            key, n = f"{m.name} ({n})", n + 1
        self._sources[key] = m
        self._family[key] = key
        self._choices.append((key, key))
        if m.source == "scene_cnn" and m.path is not None:
            for p in sorted(m.path.parent.glob("cnn_epoch*.pt")):
                epoch = p.stem.rsplit("epoch", 1)[1]
                if not epoch.isdigit() or p.name != checkpoint_name(int(epoch)) or p == m.path:
                    continue
                ck = f"{key}@{int(epoch)}"
                self._checkpoints[ck] = (key, p)
                self._family[ck] = key
                self._choices.append((f"{key}: checkpoint epoch {int(epoch)}", ck))

    # data --------------------------------------------------------------------------------
    def _has_split(self, split: str) -> bool:
        root = self.data.root
        if self.data.source == "folder":
            return (root / split).is_dir()
        return (root / "ImageSets" / "Main" / f"{split}.txt").is_file()

    def splits(self) -> list[str]:
        """The splits offered: the analysed one first; for config data its training split too,
        on lrpkit's scenes every split of :data:`SPLITS` present (the twins' splits)."""
        out = [self.split0]
        if self.scenes:
            more = SPLITS
        else:
            more = () if self._spec is None else (self._spec.train_split,)
        for s in more:
            if s and s not in out and self._has_split(s):
                out.append(s)
        return out

    def dataset(self, split: str | None = None) -> sources.DatasetSource:
        """The :class:`~lrpkit.sources.DatasetSource` of ``split`` (default: the analysed one;
        ``dataset.images`` limits that one only)."""
        split = self.split0 if split is None else split
        with self._lock:
            if split not in self._datasets:
                if split not in self.splits():
                    raise ValueError(f"split {split!r} is not one of {self.splits()}")
                spec = ({**self._spec.to_dict(), "images": None} if self._spec is not None else
                        {"source": "scenes", "root": str(self.data.root),
                         "classes": list(self.data.classes)})   # a scene set given as an object
                self._datasets[split] = sources.load_dataset(spec, self.cfg, split=split)
            return self._datasets[split]

    def dataset_classes(self, split: str | None = None) -> list[str]:
        """The dataset's classes (the class filter's choices)."""
        return list(self.dataset(split).classes)

    def bias(self) -> dict[str, dict]:
        """Per image of lrpkit's scenes: ``tag`` (a tag is planted), ``context_match``,
        ``source_id``; empty for other data or a scene set without ``bias.csv``."""
        if self._bias is None:
            self._bias = {}
            if self.scenes:
                try:
                    g = read_bias(self.data.root).groupby("image_id")
                except FileNotFoundError:
                    pass
                else:
                    self._bias = {"tag": g["tag"].max().to_dict(),
                                  "context_match": g["context_match"].first().to_dict(),
                                  "source_id": g["source_id"].first().to_dict()}
        return self._bias

    def bias_filters(self) -> list[str]:
        """The image filters that apply: :data:`BIAS_FILTERS` on a scene set with planted
        truth (``bias.csv``), else only ``"any"``."""
        return list(BIAS_FILTERS) if self.bias() else ["any"]

    def image_choices(self, split: str, cls: str = "any", bias: str = "any",
                      limit: int = 500) -> list[tuple[str, int]]:
        """``(label, index)`` of the images of ``split`` showing class ``cls`` (``"any"``; a
        class of the dataset, by its labels or boxes) that pass the ``bias`` filter (one of
        :meth:`bias_filters`); at most ``limit``."""
        if bias not in self.bias_filters():
            raise ValueError(f"bias must be one of {self.bias_filters()} for this data, got {bias!r}"
                             + ("" if self.bias() else " (the other filters need lrpkit's scenes "
                                "with their bias.csv)"))
        ds = self.dataset(split)
        table = self.bias()
        out = []
        for i, img_id in enumerate(ds.ids):
            names = _label_names(ds, i)
            if cls != "any" and cls not in names:
                continue
            if bias != "any":
                tag = bool(int(table["tag"].get(img_id, 0) or 0))
                ctx = bool(table["context_match"].get(img_id, True))
                keep = {"tagged": tag, "untagged": not tag, "off-context": not ctx,
                        "in-context": ctx}[bias]
                if not keep:
                    continue
            out.append((f"{img_id} ({', '.join(names)})", i))
            if len(out) >= limit:
                break
        return out

    def twins(self, split: str, index: int) -> dict[str, str]:
        """The counterfactual twins of a scene (same scene, tag swapped or removed):
        ``{split: image id}`` for the other splits that hold one; empty for other data."""
        if not self.scenes:
            return {}
        img_id = self.dataset(split).ids[index]
        table = self.bias()
        src = table.get("source_id", {}).get(img_id, img_id) if table else img_id
        if "_" not in str(src):
            return {}
        n = str(src).split("_", 1)[1]
        out = {}
        for s, pattern in _TWINS.items():
            tid = pattern.format(n)
            if s == split or tid == img_id:
                continue
            try:
                if tid in self.dataset(s).ids:
                    out[s] = tid
            except (FileNotFoundError, ValueError):
                continue
        return out

    # models ------------------------------------------------------------------------------
    def model_choices(self) -> list[tuple[str, str]]:
        """``(label, key)`` of the models: the configured ones (key: the model's name), a scene
        CNN's checkpoints (``"<name>@<epoch>"``), the default scenes' FV model when fitted."""
        return list(self._choices)

    def source(self, key: str) -> sources.ModelSource:
        """Model ``key`` as a :class:`lrpkit.sources.ModelSource` (its preprocessing, classes and
        output kind); a checkpoint is loaded on first use with its final model's preprocessing."""
        with self._lock:
            if key not in self._sources:
                if key not in self._checkpoints:
                    raise KeyError(f"model {key!r} is not one of {[k for _, k in self._choices]}")
                parent, path = self._checkpoints[key]
                m = self._sources[parent]
                self._sources[key] = sources.load_model(
                    {"source": "scene_cnn", "weights": str(path), "name": key, "classes": list(m.classes),
                     "output": m.output, "mean": list(m.mean), "std": list(m.std), "size": m.size,
                     "crop": m.crop, "resize": m.resize}, self.cfg)
            return self._sources[key]

    def model(self, key: str):
        """The model itself (an ``nn.Module`` or the FV classifier)."""
        return self.source(key).model

    def family(self, key: str) -> str:
        """The configured model a key belongs to (a checkpoint: its final model)."""
        return self._family[key]

    def model_kind(self, key: str) -> str:
        """The registry's ``model_kind`` of a model: ``"torch"`` or ``"fisher"``."""
        return "torch" if self.source(key).is_torch else "fisher"

    def classes(self, key: str) -> list[str]:
        """The model's output names (the target's choices; :attr:`Inputs.classes`)."""
        return list(self.source(key).classes)

    def methods(self, key: str) -> list[str]:
        """The registered methods for the model's kind."""
        kind = self.model_kind(key)
        return [n for n, m in methods().items() if m.model_kind == kind]

    def inputs(self, split: str, index: int, key: str) -> Inputs:
        """Image ``index`` of ``split`` as model ``key`` sees it (see :class:`Inputs`); the
        last few are kept, so that changing only the method does not read the image again."""
        k = (split, int(index), key)
        with self._lock:
            if k in self._inputs:
                return self._inputs[k]
        inp = self._read_inputs(split, int(index), key)
        with self._lock:
            self._inputs[k] = inp
            while len(self._inputs) > 16:
                self._inputs.pop(next(iter(self._inputs)))
        return inp

    def _read_inputs(self, split: str, index: int, key: str) -> Inputs:
        ds = self.dataset(split)
        src = self.source(key)
        img, tgt = ds[index]
        boxes = np.asarray(tgt["boxes"], np.float64).reshape(-1, 4)
        if src.is_torch:
            x = src.inputs([img]).float()
            if src.mean is not None:
                image = src.rgb(x)[0]
            else:   # an unknown normalisation: shown min-max scaled
                image = (x[0] - x[0].min()) / (x[0].max() - x[0].min()).clamp_min(1e-12)
            boxes = src.input_boxes(boxes, tgt["size"]) if src.crop is not None else boxes[:0]
        else:       # the FV model sees the image itself, in [0, 1]
            from torchvision.transforms.functional import to_tensor

            x = to_tensor(img)[None]
            image = x[0]
            boxes = src.input_boxes(boxes, tgt["size"])
        boxes = np.asarray(boxes, np.float64)
        boxes = boxes[(boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])]
        return Inputs(x, image.permute(1, 2, 0).numpy().clip(0, 1), str(tgt["id"]), split,
                      int(index), boxes, list(src.classes))

    def twin_inputs(self, split: str, index: int, twin_split: str, key: str) -> Inputs | None:
        """The twin of image ``index`` in ``twin_split`` (None when it has none there)."""
        tid = self.twins(split, index).get(twin_split)
        if tid is None:
            return None
        return self.inputs(twin_split, self.dataset(twin_split).ids.index(tid), key)

    # method parameters -------------------------------------------------------------------
    def train_split(self) -> sources.DatasetSource | None:
        """PDA's training images: ``train`` when given; for config data the config's
        ``dataset.train_split`` (None when it names none or it is missing); for a dataset
        object the analysed images themselves."""
        with self._lock:
            if not self._train_loaded:
                spec = self._spec
                if spec.train_split is not None:
                    try:
                        self._train = sources.load_dataset({**spec.to_dict(), "images": None},
                                                           self.cfg, split=spec.train_split)
                    except FileNotFoundError:
                        self._train = None
                self._train_loaded = True
            if self._train is None and self._spec is None:
                return self.data
            return self._train

    def params(self, method: str, key: str | None = None) -> dict[str, Any]:
        """The method's starting parameters for model ``key``: :func:`config_params`, for PDA
        on a torch model with :func:`lrpkit.pipeline.pda_params` (``prob`` from the model's
        output kind: ``sigmoid`` for a multi-label model such as the scene CNN; Zintgraf et
        al.'s Laplace correction with ``N`` = the training images), unless the config sets them."""
        values = config_params(self.cfg, method)
        if method == "pda" and key is not None and self.model_kind(key) == "torch":
            values.update({k: v for k, v in pipeline.pda_params(
                self.cfg, self.source(key), self.train_split()).items() if k != "stride"})
        return values

    def objects(self, method: str, key: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """Parameters that come from the pipeline, not from a widget: PDA's patch model for
        the chosen window / outer sizes (:func:`lrpkit.pipeline.load_patch_model`: fitted on
        the training images once, kept under ``paths.models``; notebook 05 shares the file)."""
        if method != "pda" or self.model_kind(key) != "torch":
            return {}
        full = {**config_params(self.cfg, method), **params}
        spec = (key, int(full["window"]), int(full["outer"]), bool(full["joint_rgb"]),
                bool(full["marginal"]))
        with self._lock:
            if spec not in self._patch:
                self._patch[spec] = pipeline.load_patch_model(
                    self.cfg, self.source(key), train=self.train_split(), window=spec[1],
                    outer=spec[2], joint_rgb=spec[3], marginal=spec[4])
            return {"patch_model": self._patch[spec]}
