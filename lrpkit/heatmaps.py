"""Pixel heatmaps of the scene models on their own inputs, and their normalised averages.

The two models of Lapuschkin, Binder, Montavon, Müller and Samek, "Analyzing Classifiers:
Fisher Vectors and Deep Neural Networks" (CVPR 2016) see an image differently: the
Fisher-vector model encodes the whole image, the CNN its centre crop after scaling and
edge-padding (App. E).  These helpers return each model's heatmap on the input it really saw,
as 2-D maps (channel sum, Bach et al., "On Pixel-Wise Explanations for Non-Linear Classifier
Decisions by Layer-Wise Relevance Propagation", PLoS ONE 2015), with the scores they explain.

::

    from lrpkit.heatmaps import cnn_heatmaps, fv_heatmap, normalized_average
    maps = cnn_heatmaps(cnn, images, target=3, composite="alpha2_beta1")
    maps.relevance.shape, maps.inputs.shape, maps.scores     # (N, c, c), (N, c, c, 3), (N,)
    R, fx = fv_heatmap(FisherLRP(fv, rule="epsilon", epsilon=100.0), image, 3)
    avg = normalized_average([R1, R2, R3])                   # each map / max |R|, then the mean
"""
from __future__ import annotations

from typing import Any, NamedTuple
from collections.abc import Sequence

import numpy as np

from ._geometry import input_geometry

__all__ = ["input_geometry", "CNNMaps", "cnn_heatmaps", "source_heatmaps", "heatmap_params",
           "fv_heatmap", "normalized_average", "grow_box"]


class CNNMaps(NamedTuple):
    """What :func:`cnn_heatmaps` returns: ``relevance`` (N, c, c) channel-summed maps,
    ``inputs`` (N, c, c, 3) the crops the CNN saw in [0, 1], ``scores`` (N,) the explained scores."""

    relevance: np.ndarray
    inputs: np.ndarray
    scores: np.ndarray


def cnn_heatmaps(model: Any, images: Sequence[Any], target: Any, *, size: int | None = None,
                 crop: int | None = None, method: str = "lrp", **params: Any) -> CNNMaps:
    """Heatmaps of a scene CNN for PIL ``images`` on its centre crops.

    ``target``: one class index for all images, or one per image.  ``method`` and ``params`` go
    to :func:`lrpkit.explain` (e.g. ``composite="alpha2_beta1"``, ``cutoff="features.6"``).
    """
    import torch

    from .data import transforms as T
    from .explain import explain
    from .inputs import model_scores

    images = list(images)
    if not images:
        raise ValueError("images must hold at least one image")
    size, crop = input_geometry(model, size, crop)
    t = np.asarray(target, dtype=np.int64)
    if t.ndim > 1 or (t.ndim == 1 and len(t) != len(images)):
        raise ValueError(f"target must be one class index or one per image ({len(images)}), got {target!r}")
    t = np.broadcast_to(t, (len(images),)).copy()
    x = T.to_tensor_batch(images, size, crop)
    R = explain(model, x, [int(v) for v in t], method=method, **params)
    f = model_scores(model, x)[torch.arange(len(t)), torch.as_tensor(t)]
    R = R.detach()
    rel = (R.sum(1) if R.dim() == 4 else R).cpu().numpy()
    return CNNMaps(rel, T.denormalize(x).permute(0, 2, 3, 1).cpu().numpy(), f.cpu().numpy())


def heatmap_params(model: Any, **lrp_params: Any) -> tuple[dict[str, Any], str | None]:
    """``explain`` keywords (``method`` included) for a deep model's heatmaps, and a note.

    LRP with ``lrp_params`` (e.g. ``composite="alpha2_beta1"``, Bach et al. 2015) for a module
    whose layers LRP can attach its rules to; a TorchScript module hides them (compiled code), so
    it gets Gradient x Input (Shrikumar et al. 2016) and the note says so (``None`` for LRP).
    """
    import torch

    if isinstance(model, torch.jit.ScriptModule):
        return {"method": "gradient_x_input"}, (
            "LRP attaches its rules to the model's layers, which a TorchScript archive does not "
            "expose: its heatmaps are Gradient x Input (Shrikumar et al. 2016) instead")
    return {"method": "lrp", **lrp_params}, None


def source_heatmaps(source: Any, images: Sequence[Any], target: Any, *, method: str = "lrp",
                    **params: Any) -> CNNMaps:
    """Heatmaps of a loaded model (:class:`lrpkit.sources.ModelSource`) for PIL ``images`` on
    its own input (its preprocessing: the scene CNN's padded crop, torchvision's resized crop).

    ``target``: one output index of the model for all images, or one per image.  ``method`` and
    ``params`` go to :func:`lrpkit.explain`.  ``inputs`` are the model's inputs with its
    normalisation undone (:meth:`~lrpkit.sources.ModelSource.rgb`), ``(N, h, w, 3)``.
    """
    import torch

    from .explain import explain
    from .inputs import model_scores

    images = list(images)
    if not images:
        raise ValueError("images must hold at least one image")
    if not source.is_torch:
        raise TypeError(f"model {source.name!r} ({source.source}) is not a torch module; use "
                        f"fv_heatmap for the Fisher-vector model")
    t = np.asarray(target, dtype=np.int64)
    if t.ndim > 1 or (t.ndim == 1 and len(t) != len(images)):
        raise ValueError(f"target must be one output index or one per image ({len(images)}), got {target!r}")
    t = np.broadcast_to(t, (len(images),)).copy()
    n_out = len(source.classes)
    if t.min() < 0 or t.max() >= n_out:
        raise ValueError(f"target {target!r} is not an output index of model {source.name!r} "
                         f"({n_out} outputs)")
    x = source.inputs(images)
    R = explain(source.model, x, [int(v) for v in t], method=method, **params).detach()
    with torch.no_grad():
        f = model_scores(source.model, x)[torch.arange(len(t)), torch.as_tensor(t)]
    rel = (R.sum(1) if R.dim() == 4 else R).cpu().numpy()
    return CNNMaps(rel, source.rgb(x).permute(0, 2, 3, 1).numpy(), f.cpu().numpy())


def fv_heatmap(explainer: Any, image: Any, target: int, resolution: str = "feature",
               **params: Any) -> tuple[np.ndarray, float]:
    """FV-LRP pixel map ``(H, W)`` of one image for class ``target``, and the FV score ``f(x)``.

    ``explainer``: a :class:`lrpkit.fisher.FisherLRP` (reused across calls) or a fitted
    Fisher-vector classifier (then ``FisherLRP(explainer, **params)`` is built for this call).
    ``resolution``: ``"feature"`` (Lapuschkin et al. 2016, eq. 21) or ``"bin"`` (the SIFT-bin resolution of
    Bach et al., "Controlling Explanatory Heatmap Resolution and Semantics via Decomposition
    Depth", ICIP 2016).
    """
    from .fisher import FisherLRP

    if not isinstance(explainer, FisherLRP):
        explainer = FisherLRP(explainer, **params)
    elif params:
        raise TypeError(f"params {sorted(params)} only apply when explainer is a model, not a FisherLRP")
    r = explainer.relevance(image, int(target), resolution=resolution)
    return np.asarray(r.pixel_map(resolution)), float(r.fx)


def normalized_average(maps: Sequence[Any], shape: Sequence[int] | None = None) -> np.ndarray:
    """Mean of 2-D maps, each first divided by its largest absolute value (Lapuschkin et al. 2016, Fig. 5).

    All-zero maps stay zero.  Maps of another shape than ``shape`` (default: the first map's)
    are resized bilinearly (``skimage.transform.resize``, anti-aliased) before averaging.
    """
    maps = [np.asarray(m, dtype=np.float64) for m in maps]
    if not maps:
        raise ValueError("maps must hold at least one 2-D map")
    if any(m.ndim != 2 for m in maps):
        raise ValueError(f"maps must be 2-D, got shapes {[m.shape for m in maps if m.ndim != 2]}")
    shape = tuple(int(s) for s in (shape if shape is not None else maps[0].shape))
    total = np.zeros(shape)
    for m in maps:
        if m.shape != shape:
            from skimage.transform import resize

            m = resize(m, shape, order=1, anti_aliasing=True)
        peak = np.abs(m).max()
        total += m / peak if peak > 0 else m
    return total / len(maps)


def grow_box(box: Sequence[float], margin: float) -> tuple:
    """``(x0, y0, x1, y1)`` grown by ``margin`` pixels on every side (shrunk for ``margin < 0``)."""
    if len(box) != 4:
        raise ValueError(f"box must be (x0, y0, x1, y1), got {box!r}")
    x0, y0, x1, y1 = box
    return (x0 - margin, y0 - margin, x1 + margin, y1 + margin)
