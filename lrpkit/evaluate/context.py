"""How much of a heatmap lies on the object and how much on its context.

* :func:`outside_inside_ratio` - Lapuschkin et al. 2016, eq. 11, the outside-inside relevance ratio
  ``mu = mean(R+ over P_out) / mean(R+ over P_in)`` with ``P_in`` the pixels inside the
  object's bounding box(es) and ``P_out`` the rest.  As in Lapuschkin et al. 2016, Sec. 5.3 only *positive*
  relevance is counted (``R+ = max(R, 0)``): ``mu > 1`` means the evidence *per pixel* is
  denser in the context than on the object (Fig. 6).
* :func:`box_share` - the share of all positive relevance that lies inside a box
  (``sum(R+ in box) / sum(R+)``), e.g. how much of a "horse" decision rests on a copyright tag
  (Lapuschkin et al. 2016, Fig. 5, right).
* :func:`box_mask` - the boolean pixel mask of one or several boxes.
* :func:`box_to_crop` - image boxes -> boxes in a CNN's input crop (Lapuschkin et al. 2016, App. E
  preprocessing: longest side to ``size``, edge-pad to a square, centre ``crop``), so that
  CNN heatmaps can be scored against the annotations.

Boxes are ``(x0, y0, x1, y1)`` in **0-based, half-open pixel coordinates of the map** (the
convention of :class:`lrpkit.data.VOCDataset`): ``map[y0:y1, x0:x1]`` is the box.  Non-integer
boxes (e.g. after rescaling to a network's crop) include the pixels whose centre
``(x + 0.5, y + 0.5)`` lies in ``[x0, x1) x [y0, y1)``; parts outside the map are clipped.
Maps are 2-D ``(H, W)``; a 3-D ``(C, H, W)`` map is summed over channels first (the usual
pixel relevance, ``lrpkit.viz.channel_sum``).  Maps may be numpy arrays or torch tensors.
"""
from __future__ import annotations

from typing import Any
from collections.abc import Sequence

import numpy as np

from ..data import transforms as T

__all__ = ["box_mask", "outside_inside_ratio", "box_share", "positive_part", "box_to_crop"]


def _as_map(relevance_map: Any, name: str = "relevance_map") -> np.ndarray:
    if hasattr(relevance_map, "detach"):
        relevance_map = relevance_map.detach().cpu().numpy()
    R = np.asarray(relevance_map, dtype=np.float64)
    if R.ndim == 3:
        R = R.sum(0)
    if R.ndim != 2:
        raise ValueError(f"{name} must be 2-D (H, W) or 3-D (C, H, W), got shape {R.shape}")
    if R.size == 0:
        raise ValueError(f"{name} is empty (shape {R.shape})")
    if not np.isfinite(R).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return R


def _as_boxes(boxes: Any, name: str = "boxes") -> np.ndarray:
    if hasattr(boxes, "detach"):
        boxes = boxes.detach().cpu().numpy()
    b = np.asarray(boxes, dtype=np.float64)
    if b.ndim == 1:
        b = b[None]
    if b.ndim != 2 or b.shape[1] != 4:
        raise ValueError(f"{name} must be (x0, y0, x1, y1) or an (M, 4) array of boxes, "
                         f"got shape {b.shape}")
    if not np.isfinite(b).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    bad = (b[:, 2] <= b[:, 0]) | (b[:, 3] <= b[:, 1])
    if bad.any():
        raise ValueError(f"{name}: box {b[np.argmax(bad)].tolist()} is empty or flipped; "
                         f"expected x0 < x1 and y0 < y1")
    return b


def box_mask(shape: Sequence[int], boxes: Any) -> np.ndarray:
    """Boolean ``(H, W)`` mask of the union of ``boxes`` (see the module doc for the convention)."""
    if len(shape) < 2:
        raise ValueError(f"shape must be at least (H, W), got {tuple(shape)}")
    H, W = int(shape[-2]), int(shape[-1])
    b = _as_boxes(boxes)
    xc = np.arange(W) + 0.5
    yc = np.arange(H) + 0.5
    mask = np.zeros((H, W), bool)
    for x0, y0, x1, y1 in b:
        mask |= ((yc >= y0) & (yc < y1))[:, None] & ((xc >= x0) & (xc < x1))[None, :]
    return mask


def _inside_mask(R: np.ndarray, boxes: Any, mask: Any) -> np.ndarray:
    if (boxes is None) == (mask is None):
        raise ValueError("give exactly one of boxes= and mask=")
    if mask is not None:
        if hasattr(mask, "detach"):
            mask = mask.detach().cpu().numpy()
        m = np.asarray(mask)
        if m.shape != R.shape:
            raise ValueError(f"mask has shape {m.shape}, the relevance map {R.shape}")
        return m.astype(bool)
    return box_mask(R.shape, boxes)


def positive_part(relevance_map: Any) -> np.ndarray:
    """``max(R, 0)`` of a 2-D map (3-D maps are summed over channels first)."""
    return np.maximum(_as_map(relevance_map), 0.0)


def outside_inside_ratio(relevance_map: Any, boxes: Any = None, *, mask: Any = None) -> float:
    """Lapuschkin et al. 2016, eq. 11: mean positive relevance outside the boxes / mean inside.

    Parameters
    ----------
    relevance_map : ``(H, W)`` (or ``(C, H, W)``, summed over ``C``) relevance.
    boxes : one ``(x0, y0, x1, y1)`` box or ``(M, 4)`` boxes (union = inside); or
    mask : a boolean ``(H, W)`` mask of the inside pixels instead of boxes.

    Returns ``mu``; ``inf`` when there is positive relevance outside but none inside and
    ``nan`` when there is no positive relevance at all.  Raises ``ValueError`` when the
    boxes cover no pixel or every pixel of the map (one of the means is undefined).
    """
    Rp = positive_part(relevance_map)
    inside = _inside_mask(Rp, boxes, mask)
    n_in = int(inside.sum())
    if n_in == 0:
        raise ValueError("the boxes / mask cover no pixel of the map: no inside region")
    if n_in == inside.size:
        raise ValueError("the boxes / mask cover the whole map: no outside region")
    mean_in = Rp[inside].mean()
    mean_out = Rp[~inside].mean()
    if mean_in == 0.0:
        return float("nan") if mean_out == 0.0 else float("inf")
    return float(mean_out / mean_in)


def box_share(relevance_map: Any, box: Any = None, *, mask: Any = None) -> float:
    """Share of the map's positive relevance inside ``box`` (or the union of boxes / ``mask``).

    ``sum(R+ inside) / sum(R+)`` in ``[0, 1]``; ``nan`` when the map has no positive relevance.
    Compare with the box's share of the area, ``box_mask(shape, box).mean()``: a uniform map
    gives exactly that.
    """
    Rp = positive_part(relevance_map)
    inside = _inside_mask(Rp, box, mask)
    total = Rp.sum()
    if total == 0.0:
        return float("nan")
    return float(Rp[inside].sum() / total)


def box_to_crop(boxes: Any, image_size: Sequence[int], size: int | None = None,
                crop: int | None = None) -> np.ndarray:
    """Map image boxes to the CNN's centre crop (``lrpkit.data.transforms`` preprocessing).

    ``image_size`` is ``(width, height)`` of the original image; ``size`` / ``crop`` default
    to :data:`lrpkit.data.transforms.DEFAULT_SIZE` / ``DEFAULT_CROP``.  The image is resized so
    its longest side is ``size`` (each axis by ``round(side * scale) / side``), edge-padded
    evenly to ``size x size`` and centre-cropped to ``crop x crop``; boxes follow and are
    clipped to the crop (a box that leaves it entirely keeps zero width: check before use).
    Returns ``(M, 4)`` float boxes ``(x0, y0, x1, y1)`` in crop pixels.
    """
    size = T.DEFAULT_SIZE if size is None else int(size)
    crop = T.DEFAULT_CROP if crop is None else int(crop)
    if crop > size:
        raise ValueError(f"crop ({crop}) must not exceed size ({size})")
    w, h = (int(v) for v in image_size)
    if w < 1 or h < 1:
        raise ValueError(f"image_size must be (width, height) > 0, got {tuple(image_size)}")
    b = _as_boxes(boxes)
    scale = size / max(w, h)
    nw, nh = max(1, min(size, round(w * scale))), max(1, min(size, round(h * scale)))
    top, left = (size - nh) // 2, (size - nw) // 2
    off = (size - crop) // 2
    out = np.empty_like(b)
    out[:, [0, 2]] = b[:, [0, 2]] * (nw / w) + left - off
    out[:, [1, 3]] = b[:, [1, 3]] * (nh / h) + top - off
    return np.clip(out, 0.0, float(crop))


REGIONS = ("inside", "context", "tag", "padding")


def relevance_regions(relevance_map: Any, boxes: Any, *, frame: Any = None,
                      tag: Any = None) -> dict[str, tuple[float, int]]:
    """Positive relevance and pixel count of each region of a map (Lapuschkin et al. 2016, eq. 11,
    with the padding and a planted tag kept apart).

    ``boxes``: the object's box(es) (the "inside"); ``frame``: the box of the image itself in the
    map's coordinates (e.g. the image box mapped through the scene CNN's preprocessing: the
    edge-padded rows or columns lie outside it; ``None``: the whole map); ``tag``: a box to keep
    apart from the context (a planted copyright tag; ``None``: none).  Regions, each pixel in
    exactly one: ``padding`` (outside ``frame``), ``inside`` (in the boxes), ``tag`` (in ``tag``,
    not inside), ``context`` (the rest of the frame).  Returns ``{region: (sum of R+, pixels)}``
    for :data:`REGIONS`.
    """
    Rp = positive_part(relevance_map)
    shape = Rp.shape
    valid = np.ones(shape, bool) if frame is None else _frame_mask(shape, frame)
    inside = box_mask(shape, boxes) & valid
    tagged = (_frame_mask(shape, tag) & valid & ~inside) if tag is not None else np.zeros(shape, bool)
    context = valid & ~inside & ~tagged
    out = {}
    for name, m in zip(REGIONS, (inside, context, tagged, ~valid)):
        out[name] = (float(Rp[m].sum()), int(m.sum()))
    return out


def _frame_mask(shape: Sequence[int], box: Any) -> np.ndarray:
    """Mask of a box that may have been clipped to zero area (then no pixel)."""
    b = np.asarray(box, dtype=np.float64).reshape(-1, 4)
    b = b[(b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])]
    return box_mask(shape, b) if len(b) else np.zeros(tuple(int(s) for s in shape[-2:]), bool)


__all__ += ["REGIONS", "relevance_regions"]
