"""What a shallow and a deep model look at: average heatmaps per class, context ratio, tag share.

The analyses of Lapuschkin, Binder, Montavon, Müller and Samek, "Analyzing Classifiers: Fisher
Vectors and Deep Neural Networks" (CVPR 2016), Sec. 6.3-6.5: heatmaps averaged per class
(Fig. 5, bottom), the outside-inside relevance ratio ``mu`` (eq. 11, Fig. 6) and the share of
relevance on a copyright tag with and without the tag (Fig. 5, right), for several models at
once, each explained on the input it really sees.

A model enters as a :class:`MapModel`: a function ``maps(images, target) -> (maps, scores)``
giving one 2-D heatmap per image (in the model's input coordinates) and the explained scores,
and a function ``boxes(boxes, image_size) -> boxes`` mapping image boxes into those
coordinates.  :func:`fv_map_model` and :func:`cnn_map_model` build them for the FV model (whole
image, FV-LRP) and the scene CNN (centre crop, LRP via :func:`lrpkit.explain`)::

    models = [fv_map_model(FisherLRP(fv, rule="epsilon", epsilon=100.0)),
              cnn_map_model(cnn, composite="alpha2_beta1")]
    avg = class_average_heatmaps(models, {"horse": [(img, boxes), ...], ...})
    tag = tag_relevance(models, [(case_id, tagged_img, untagged_img, tag_box), ...], target=4)
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import xarray as xr

from ..heatmaps import (cnn_heatmaps, fv_heatmap, grow_box, input_geometry, normalized_average,
                        source_heatmaps)
from .context import REGIONS, box_mask, box_share, box_to_crop, relevance_regions

__all__ = ["MapModel", "fv_map_model", "cnn_map_model", "source_map_model", "map_key",
           "class_average_heatmaps", "tag_relevance"]


def _identity_boxes(boxes: Any, image_size: Sequence[int]) -> np.ndarray:
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 4)


@dataclass
class MapModel:
    """One model as these analyses see it.

    ``maps(images, target) -> (list of 2-D maps, scores (N,))`` explains class ``target`` for
    each image; ``boxes(boxes (M, 4), (width, height)) -> (M, 4)`` maps image boxes into the
    maps' pixel coordinates (identity by default).
    """

    name: str
    maps: Callable[[Sequence[Any], int], tuple[Sequence[np.ndarray], np.ndarray]]
    boxes: Callable[[Any, Sequence[int]], np.ndarray] = _identity_boxes


def fv_map_model(explainer: Any, name: str = "FV", resolution: str = "feature") -> MapModel:
    """The Fisher-vector model through a :class:`lrpkit.fisher.FisherLRP`: maps on the whole image."""
    def maps(images, target):
        out = [fv_heatmap(explainer, im, target, resolution=resolution) for im in images]
        return [m for m, _ in out], np.array([f for _, f in out], dtype=np.float64)

    return MapModel(name, maps)


def cnn_map_model(model: Any, name: str = "CNN", size: int | None = None, crop: int | None = None,
                  **params: Any) -> MapModel:
    """The scene CNN on its centre crop (:func:`lrpkit.heatmaps.cnn_heatmaps` with ``params``);
    boxes are mapped into the crop with :func:`lrpkit.evaluate.box_to_crop` (clipped)."""
    size, crop = input_geometry(model, size, crop)

    def maps(images, target):
        r = cnn_heatmaps(model, images, target, size=size, crop=crop, **params)
        return list(r.relevance), np.asarray(r.scores, dtype=np.float64)

    def boxes(b, image_size):
        return box_to_crop(b, image_size, size, crop)

    return MapModel(name, maps, boxes)


def source_map_model(source: Any, classes: Sequence[str] | None = None, name: str | None = None,
                     fv_params: Mapping[str, Any] | None = None, **params: Any) -> MapModel:
    """A loaded model (:class:`lrpkit.sources.ModelSource`) as a :class:`MapModel`.

    ``classes``: the class order the analyses use (class index = position; default the
    model's own), each read at the model's output of that name.  A torch model is explained on
    its own input (:func:`lrpkit.heatmaps.source_heatmaps` with ``params``: ``method``,
    ``composite`` ...; boxes mapped with :meth:`~lrpkit.sources.ModelSource.input_boxes`); the
    Fisher-vector model with FV-LRP on the whole image (:class:`lrpkit.fisher.FisherLRP` with
    ``fv_params``, e.g. ``rule="epsilon", epsilon=100.0``, Lapuschkin et al. 2016, App. C).
    """
    pos = {c: i for i, c in enumerate(source.classes)}
    classes = list(source.classes) if classes is None else [str(c) for c in classes]
    missing = [c for c in classes if c not in pos]
    if missing:
        raise ValueError(f"model {source.name!r} has no output for class(es) {missing}")
    cols = [pos[c] for c in classes]
    name = name or source.name
    if not source.is_torch:
        from ..fisher import FisherLRP

        inner = fv_map_model(FisherLRP(source.model, **dict(fv_params or {})), name)
        return MapModel(name, lambda images, target: inner.maps(images, cols[int(target)]))

    def maps(images, target):
        r = source_heatmaps(source, images, cols[int(target)], **params)
        return list(r.relevance), np.asarray(r.scores, dtype=np.float64)

    return MapModel(name, maps, source.input_boxes)


def map_key(name: str) -> str:
    """The variable-name part of a model's name in :func:`class_average_heatmaps`' results
    (``avg_heatmap_<key>``): lower case, runs of other characters than letters and digits as
    ``_`` (``"scene CNN"`` -> ``"scene_cnn"``)."""
    return re.sub(r"[^0-9a-z]+", "_", str(name).lower()).strip("_") or "model"


def _regions(R: np.ndarray, boxes: np.ndarray, frame: np.ndarray, tag: np.ndarray | None
             ) -> tuple[np.ndarray, np.ndarray, float]:
    """R+ and pixels per region (:func:`lrpkit.evaluate.context.relevance_regions`) and mu =
    context density / inside density (NaN where undefined, inf with no R+ inside)."""
    reg = relevance_regions(R, _live(boxes), frame=frame, tag=None if tag is None else _live(tag))
    r = np.array([reg[k][0] for k in REGIONS])
    px = np.array([reg[k][1] for k in REGIONS], dtype=np.float64)
    (r_in, r_ctx), (n_in, n_ctx) = r[:2], px[:2]
    if n_in == 0 or n_ctx == 0 or (r_in == 0 and r_ctx == 0):
        return r, px, float("nan")
    return r, px, (float("inf") if r_in == 0 else float((r_ctx / n_ctx) / (r_in / n_in)))


def _live(boxes: Any) -> np.ndarray:
    """Boxes with a positive area (a box clipped off a model's crop keeps zero width)."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    keep = (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])
    return b[keep] if keep.any() else np.zeros((0, 4))


def _share(R: np.ndarray, box: Any) -> tuple[float, float]:
    """(share of R+ in box, box's share of the area); NaN for a box that maps to no area."""
    try:
        return box_share(R, box), float(box_mask(R.shape, box).mean())
    except ValueError:  # the box left the model's input (e.g. clipped off the CNN crop)
        return float("nan"), float("nan")


def _image_size(image: Any) -> tuple[int, int]:
    if hasattr(image, "size") and not isinstance(image, np.ndarray):
        w, h = image.size
        return int(w), int(h)
    a = np.asarray(image)
    return int(a.shape[1]), int(a.shape[0])


def class_average_heatmaps(models: Sequence[MapModel],
                           samples: Mapping[str, Sequence[tuple[Any, Any]]],
                           classes: Sequence[str] | None = None, max_samples: int | None = None,
                           progress: bool = False,
                           image_ids: Mapping[str, Sequence[str]] | None = None,
                           tags: Mapping[str, Sequence[Any]] | None = None) -> xr.Dataset:
    """Per class and model: the normalised average heatmap and ``mu`` per image (Lapuschkin et al.
    2016, Fig. 5-6).

    ``samples``: ``{class: [(image, boxes of that class), ...]}`` (boxes ``(M, 4)`` in image
    pixels); each model explains the class for each of its images.  Every map is divided by
    its largest ``|R|`` and averaged per class (:func:`lrpkit.heatmaps.normalized_average`;
    maps of another size are resized to the model's first map).  ``mu`` (eq. 11) is the mean
    positive relevance per pixel of the **context** over that of the **inside** (the boxes mapped
    into the model's input), where the context leaves out the model's padding (the pixels
    outside the image's own box mapped into its input: the scene CNN edge-pads the short side)
    and a planted tag (``tags``: ``{class: [tag box (x0, y0, x1, y1) in image pixels or None,
    ...]}``, one per sample), both kept as regions of their own
    (:func:`lrpkit.evaluate.context.relevance_regions`); ``NaN`` where it is undefined.

    ``classes``: the class order (default ``samples``' keys; class index = position, the target
    explained); ``max_samples`` caps the images per class.  Returns an ``xr.Dataset``:
    ``avg_heatmap_<key>`` (``class``, ``<key>_y``, ``<key>_x``; ``key``: :func:`map_key` of the
    model's name), ``context_ratio`` (``class``, ``model``, ``sample``; NaN-padded),
    ``context_ratio_median`` (``class``, ``model``) and ``n_average`` (``class``); with
    ``image_ids`` (``{class: [id of each sample]}``) also ``image_id`` (``class``, ``sample``;
    ``""`` where a class has fewer samples).  ``region_relevance`` / ``region_pixels`` (``class``,
    ``model``, ``sample``, ``region``: inside, context, tag, padding) hold each map's positive
    relevance and pixel count per region, for the estimators of
    :mod:`lrpkit.evaluate.context_summary`.
    """
    if not models:
        raise ValueError("models must hold at least one MapModel")
    classes = list(samples) if classes is None else [str(c) for c in classes]
    unknown = [c for c in samples if c not in classes]
    if unknown:
        raise ValueError(f"samples name classes {unknown} that are not in classes {classes}")
    per = {c: list(samples.get(c, []))[:max_samples] for c in classes}
    n_max = max([len(v) for v in per.values()] + [1])
    mu = np.full((len(classes), len(models), n_max), np.nan)
    reg_r = np.full((len(classes), len(models), n_max, len(REGIONS)), np.nan)
    reg_px = np.full((len(classes), len(models), n_max, len(REGIONS)), np.nan)
    for c, v in (tags or {}).items():
        if c in per and len(list(v)[:len(per[c])]) != len(per[c]):
            raise ValueError(f"tags[{c!r}] names {len(list(v))} tag boxes for {len(per[c])} samples")
    maps_of: dict[str, list[np.ndarray | None]] = {m.name: [None] * len(classes) for m in models}
    it = list(enumerate(classes))
    if progress:
        from tqdm.auto import tqdm
        it = tqdm(it, desc="average heatmaps", leave=False)
    for r, c in it:
        items = per[c]
        if not items:
            continue
        images = [im for im, _ in items]
        for m, model in enumerate(models):
            maps, _ = model.maps(images, r)
            tag_of = list((tags or {}).get(c, [None] * len(items)))
            for k, ((im, b), R) in enumerate(zip(items, maps)):
                size = _image_size(im)
                frame = model.boxes([(0, 0, size[0], size[1])], size)
                tb = None if tag_of[k] is None else model.boxes([tuple(tag_of[k])], size)
                reg_r[r, m, k], reg_px[r, m, k], mu[r, m, k] = _regions(
                    np.asarray(R), model.boxes(b, size), frame, tb)
            first = next((x for x in maps_of[model.name] if x is not None), None)
            shape = first.shape if first is not None else np.asarray(maps[0]).shape
            maps_of[model.name][r] = normalized_average(maps, shape)
    data = {}
    for model in models:
        got = [x for x in maps_of[model.name] if x is not None]
        shape = got[0].shape if got else (1, 1)
        arr = np.stack([x if x is not None else np.zeros(shape) for x in maps_of[model.name]])
        key = map_key(model.name)
        data[f"avg_heatmap_{key}"] = (("class", f"{key}_y", f"{key}_x"), arr)
    ratio = xr.DataArray(mu, dims=("class", "model", "sample"),
                         coords={"class": classes, "model": [m.name for m in models]})
    ds = xr.Dataset(data, coords={"class": np.array(classes, dtype=str)})
    ds["context_ratio"] = ratio
    ds["context_ratio_median"] = ratio.median("sample", skipna=True)
    ds["n_average"] = ("class", np.array([len(per[c]) for c in classes], dtype=np.int64))
    ds["region_relevance"] = (("class", "model", "sample", "region"), reg_r)
    ds["region_pixels"] = (("class", "model", "sample", "region"), reg_px)
    ds = ds.assign_coords(region=np.array(REGIONS, dtype=str))
    if image_ids is not None:
        ids = np.full((len(classes), n_max), "", dtype=object)
        for r, c in enumerate(classes):
            got = [str(i) for i in list(image_ids.get(c, []))[:len(per[c])]]
            if len(got) != len(per[c]):
                raise ValueError(f"image_ids[{c!r}] names {len(got)} images for {len(per[c])} samples")
            ids[r, :len(got)] = got
        ds["image_id"] = (("class", "sample"), ids.astype(str))
    ds["context_ratio"].attrs["description"] = ("outside-inside relevance ratio mu per image "
                                                "(Lapuschkin et al. 2016, eq. 11): context "
                                                "density / inside density, padding and tag "
                                                "left out")
    return ds


def tag_relevance(models: Sequence[MapModel], cases: Sequence[tuple[str, Any, Any, Sequence[float]]],
                  target: int, margin: int = 8, versions: Sequence[str] = ("test", "test_untagged"),
                  progress: bool = False) -> xr.Dataset:
    """Share of positive relevance on a tag, with the tag and without it (Lapuschkin et al. 2016,
    Fig. 5, right).

    ``cases``: ``(case_id, tagged image, untagged twin, tag box (x0, y0, x1, y1))``; each model
    explains class ``target`` on both versions.  Per model and version: the share of positive
    relevance inside the tag box and inside the box grown by ``margin`` pixels
    (:func:`lrpkit.evaluate.box_share`; boxes mapped into the model's input), and the explained
    score.  A box that maps to no pixel of a model's input gives NaN.  Returns an ``xr.Dataset``
    with ``tag_share`` (``case``, ``model``, ``version``,
    ``region``), ``score`` (``case``, ``model``, ``version``) and ``tag_area_share`` (``case``,
    ``model``: the tag box's share of the map's area, what a uniform map would put there).
    """
    if not models:
        raise ValueError("models must hold at least one MapModel")
    if len(versions) != 2:
        raise ValueError(f"versions must name the two versions (tagged, untagged), got {versions!r}")
    n = len(cases)
    share = np.full((n, len(models), 2, 2), np.nan)
    score = np.full((n, len(models), 2), np.nan)
    area = np.full((n, len(models)), np.nan)
    it = list(enumerate(cases))
    if progress:
        from tqdm.auto import tqdm
        it = tqdm(it, desc="tag relevance", leave=False)
    for i, (_, tagged, untagged, tag) in it:
        if len(tag) != 4:
            raise ValueError(f"cases[{i}]: tag box must be (x0, y0, x1, y1), got {tag!r}")
        pair = [tagged, untagged]
        for m, model in enumerate(models):
            maps, f = model.maps(pair, int(target))
            score[i, m] = f
            for v, (im, R) in enumerate(zip(pair, maps)):
                R = np.asarray(R)
                tb, big = model.boxes([tuple(tag), grow_box(tag, margin)], _image_size(im))
                (share[i, m, v, 0], a), (share[i, m, v, 1], _) = _share(R, tb), _share(R, big)
                if v == 0:
                    area[i, m] = a
    return xr.Dataset(
        {"tag_share": (("case", "model", "version", "region"), share),
         "score": (("case", "model", "version"), score),
         "tag_area_share": (("case", "model"), area)},
        coords={"case": np.array([str(c[0]) for c in cases], dtype=str),
                "model": np.array([m.name for m in models], dtype=str),
                "version": np.array(list(versions), dtype=str),
                "region": np.array(["tag box", f"tag box + {margin} px"], dtype=str)},
        attrs={"target": int(target), "margin": int(margin)})
