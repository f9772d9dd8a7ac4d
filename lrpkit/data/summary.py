"""What a labelled image set holds, per class: counts, and the images that show a class.

For any split with VOC-style targets (:class:`lrpkit.data.VOCDataset`, or a loaded
:class:`lrpkit.sources.DatasetSource`: ``classes``, ``ids``, ``labels`` (N, C) multi-hot,
``ignore`` (N, C) VOC's difficult-only pairs, ``target(i)`` with ``boxes``, ``names``,
``difficult`` and ``size``)::

    from lrpkit.data.summary import class_counts, images_of_class
    counts = class_counts(ds)                       # xr.Dataset over "class"
    idx = images_of_class(ds, "dog", 8, single_first=True)

An image *shows* a class when its label is positive (VOC: a non-difficult object of the class,
Everingham et al. 2010, Sec. 4.1).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

__all__ = ["class_counts", "images_of_class"]


def _targets(dataset: Any) -> list[dict]:
    return [dataset.target(i) for i in range(len(dataset.ids))]


def class_counts(dataset: Any) -> xr.Dataset:
    """Per class: ``n_images`` (positive labels), ``n_difficult_only`` (images whose objects of
    the class are all difficult: left out of AP), ``n_objects`` (boxes) and
    ``n_difficult_objects``; ``n_total`` (attr): the split's images.  Coordinate ``class``."""
    classes = [str(c) for c in dataset.classes]
    labels = np.asarray(dataset.labels) > 0.5
    ignore = np.asarray(getattr(dataset, "ignore", np.zeros(labels.shape, bool)), bool)
    objects = np.zeros(len(classes), np.int64)
    difficult = np.zeros(len(classes), np.int64)
    pos = {c: k for k, c in enumerate(classes)}
    for t in _targets(dataset):
        for name, d in zip(t["names"], t["difficult"]):
            if name in pos:
                objects[pos[name]] += 1
                difficult[pos[name]] += bool(d)
    return xr.Dataset(
        {"n_images": ("class", labels.sum(0).astype(np.int64)),
         "n_difficult_only": ("class", ignore.sum(0).astype(np.int64)),
         "n_objects": ("class", objects), "n_difficult_objects": ("class", difficult)},
        coords={"class": np.array(classes, dtype=str)}, attrs={"n_total": int(len(dataset.ids))})


def images_of_class(dataset: Any, cls: str, n: int | None = None, *, single_first: bool = False,
                    landscape_first: bool = False) -> list[int]:
    """Indices of up to ``n`` images that show class ``cls``, in dataset order.

    ``single_first``: images with one object (one box; without boxes: one positive class) come
    first, so an example shows the class alone.  ``landscape_first``: images wider than high come
    first (the layout Lapuschkin et al. 2016 average their heatmaps over, Fig. 5).
    """
    classes = [str(c) for c in dataset.classes]
    if cls not in classes:
        raise ValueError(f"class {cls!r} is not one of the dataset's classes {classes}")
    labels = np.asarray(dataset.labels) > 0.5
    rows = [int(i) for i in np.flatnonzero(labels[:, classes.index(cls)])]
    if single_first or landscape_first:
        def key(i):
            t = dataset.target(i)
            k = []
            if single_first:
                n_obj = len(t["boxes"]) if len(t["boxes"]) else int(labels[i].sum())
                k.append(n_obj != 1)
            if landscape_first:
                w, h = t["size"]
                k.append(not w > h)
            return tuple(k)

        rows = sorted(rows, key=key)  # stable: dataset order within each group
    return rows[:n] if n is not None else rows
