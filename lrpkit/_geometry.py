"""The input geometry a scene CNN expects: scaled side and centre crop."""
from __future__ import annotations

from typing import Any

__all__ = ["input_geometry"]


def input_geometry(model: Any, size: int | None = None, crop: int | None = None) -> tuple[int, int]:
    """``(size, crop)`` a scene CNN expects: the longest side after scaling and the centre crop.

    Explicit values win; otherwise the checkpoint's ``meta`` (``size``, ``input_size``), then the
    model's ``input_size``, then the defaults of :mod:`lrpkit.data.transforms` (``size`` at least
    ``crop``).  ``ValueError`` when ``crop > size``.
    """
    # lazy: transforms imports torch, and this module is imported by light ones (heatmaps)
    from .data.transforms import DEFAULT_CROP, DEFAULT_SIZE

    meta = getattr(model, "meta", None) or {}
    crop = int(crop if crop is not None else meta.get("input_size", getattr(model, "input_size", DEFAULT_CROP)))
    size = int(size if size is not None else meta.get("size", max(DEFAULT_SIZE, crop)))
    if crop > size:
        raise ValueError(f"crop={crop} is larger than size={size}")
    return size, crop
