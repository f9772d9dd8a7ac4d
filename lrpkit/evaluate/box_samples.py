"""Which images a context measurement explains: per class, random images with the class's boxes.

Lapuschkin et al. 2016 (CVPR, Sec. 5.3, Fig. 6) compute the outside-inside relevance ratio
``mu`` (eq. 11) of each image's heatmap for a class, with the boxes of that class as the
"inside".  :func:`class_box_samples` draws those (image, boxes) pairs from any labelled split with
boxes (:class:`lrpkit.sources.DatasetSource`, :class:`lrpkit.data.VOCDataset`: ``classes``,
``labels``, ``target(i)`` with ``boxes`` and ``names``)::

    from lrpkit.evaluate.box_samples import class_box_samples
    picks = class_box_samples(ds, 6, seed=0)          # {"dog": [(index, boxes (M, 4)), ...], ...}
    samples = {c: [(ds.image(i), b) for i, b in v] for c, v in picks.items()}
"""
from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["class_box_samples"]


def class_box_samples(dataset: Any, n: int | None, seed: int = 0,
                      rows: Any = None) -> dict[str, list[tuple[int, np.ndarray]]]:
    """Per class: up to ``n`` random images that show the class and hold a box of it.

    An image qualifies for class ``c`` when its label for ``c`` is positive (VOC: a
    non-difficult object) and it has at least one box named ``c``; all of its boxes of ``c``
    (difficult ones included: they are the object too) are returned as ``(M, 4)`` float32
    ``(x0, y0, x1, y1)``.  Each class draws from ``numpy.random.default_rng(seed)`` in turn
    (class order), keeping the chosen images in dataset order; ``n=None`` takes all.  Classes
    without such an image get an empty list.  ``rows``: draw only among these dataset indices
    (e.g. the image sample whose twins are scored, so one bootstrap over images serves both).
    """
    if n is not None and int(n) < 1:
        raise ValueError(f"n must be >= 1 or None, got {n!r}")
    classes = [str(c) for c in dataset.classes]
    labels = np.asarray(dataset.labels) > 0.5
    if labels.ndim != 2 or labels.shape[1] != len(classes):
        raise ValueError(f"dataset.labels must be (N, {len(classes)}), got shape {labels.shape}")
    allowed = np.ones(labels.shape[0], bool)
    if rows is not None:
        allowed[:] = False
        allowed[np.asarray(rows, dtype=np.int64)] = True
    targets = [dataset.target(i) if allowed[i] else {"names": []} for i in range(labels.shape[0])]
    rng = np.random.default_rng(seed)
    out: dict[str, list[tuple[int, np.ndarray]]] = {}
    for k, c in enumerate(classes):
        rows_c = [i for i in np.flatnonzero(labels[:, k] & allowed) if c in targets[i]["names"]]
        if n is not None:
            rows_c = [rows_c[j] for j in sorted(rng.permutation(len(rows_c))[:int(n)])]
        out[c] = [(int(i), np.asarray([b for b, name in zip(targets[i]["boxes"], targets[i]["names"])
                                       if name == c], np.float32).reshape(-1, 4)) for i in rows_c]
    return out
