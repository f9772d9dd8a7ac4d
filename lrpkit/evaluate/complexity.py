"""Heatmap complexity (Samek et al. 2017, IEEE TNNLS, Sec. IV-B, Fig. 5).

"Good heatmaps highlight the relevant regions and not more ... in this sense good heatmaps should
be better compressible than noisy ones."  Samek et al. (2017) measure the file size of each heatmap
saved as PNG and JPEG, and MATLAB's ``entropy`` (Shannon entropy of the 256-bin grey-level histogram).

Each heatmap (summed over channels) is rendered to one 8-bit grey image the same way for all
methods: divided by its largest absolute value and mapped ``[-1, 1] -> [0, 255]`` (0 relevance is
grey 128 -- a signed map and a positive one are put on the same scale, as in the paper's
red/blue colour maps).  PNG uses zlib level 9, JPEG a fixed ``quality`` (default 90, no chroma:
one grey channel).
"""
from __future__ import annotations

import io
from typing import Any
from collections.abc import Mapping

import numpy as np
import xarray as xr

__all__ = ["complexity", "heatmap_to_uint8", "shannon_entropy"]


def _maps(heatmaps: Any, name: str = "heatmaps") -> np.ndarray:
    if hasattr(heatmaps, "detach"):
        heatmaps = heatmaps.detach().cpu().numpy()
    h = np.asarray(heatmaps, dtype=np.float64)
    if h.ndim == 4:
        h = h.sum(1)
    if h.ndim == 2:
        h = h[None]
    if h.ndim != 3 or h.shape[0] == 0 or min(h.shape[1:]) < 1:
        raise ValueError(f"{name} must be (N, H, W), (N, C, H, W) or one (H, W) map, "
                         f"got shape {np.shape(heatmaps)}")
    if not np.isfinite(h).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return h


def heatmap_to_uint8(heatmap: np.ndarray) -> np.ndarray:
    """``(H, W)`` map -> ``uint8`` grey image: ``round(127.5 * (1 + R / max|R|))`` (all 128 if 0)."""
    h = np.asarray(heatmap, dtype=np.float64)
    a = np.abs(h).max()
    if a == 0:
        return np.full(h.shape, 128, np.uint8)
    return np.clip(np.rint(127.5 * (1.0 + h / a)), 0, 255).astype(np.uint8)


def shannon_entropy(image: np.ndarray) -> float:
    """Shannon entropy (bits) of the 256-bin histogram of a ``uint8`` image (MATLAB ``entropy``)."""
    counts = np.bincount(np.asarray(image, dtype=np.uint8).ravel(), minlength=256)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum())


def _sizes(img: np.ndarray, quality: int) -> tuple[int, int]:
    from PIL import Image

    im = Image.fromarray(np.ascontiguousarray(img))
    png, jpg = io.BytesIO(), io.BytesIO()
    im.save(png, format="PNG", optimize=False, compress_level=9)
    im.save(jpg, format="JPEG", quality=int(quality))
    return png.tell(), jpg.tell()


def complexity(heatmaps: Any, *, quality: int = 90) -> xr.Dataset:
    """PNG / JPEG compressed size and Shannon entropy of heatmaps (Samek et al. 2017, Fig. 5).

    ``heatmaps``: ``(N, H, W)`` / ``(N, C, H, W)`` maps (numpy or torch), or a dict
    ``{method: maps}`` (same ``N``) for a ``method`` dim.  Returns ``png_bytes``, ``jpeg_bytes``
    and ``entropy`` (bits) with dims ``image`` (and ``method``); ``quality`` in ``attrs``.
    Lower means less complex (sparser, less noisy).
    """
    if not isinstance(quality, (int, np.integer)) or not 1 <= quality <= 95:
        raise ValueError(f"quality must be an int in 1..95, got {quality!r}")
    if isinstance(heatmaps, Mapping):
        if not heatmaps:
            raise ValueError("heatmaps is an empty dict")
        parts = {str(k): complexity(v, quality=quality) for k, v in heatmaps.items()}
        sizes = {p.sizes["image"] for p in parts.values()}
        if len(sizes) != 1:
            raise ValueError(f"every method needs the same number of images, got {sorted(sizes)}")
        ds = xr.concat(list(parts.values()), dim="method").assign_coords(method=list(parts))
        ds.attrs.update(next(iter(parts.values())).attrs)
        return ds
    h = _maps(heatmaps)
    png = np.empty(len(h), np.int64)
    jpg = np.empty(len(h), np.int64)
    ent = np.empty(len(h))
    for i, m in enumerate(h):
        img = heatmap_to_uint8(m)
        png[i], jpg[i] = _sizes(img, quality)
        ent[i] = shannon_entropy(img)
    ds = xr.Dataset({"png_bytes": ("image", png), "jpeg_bytes": ("image", jpg), "entropy": ("image", ent)},
                    coords={"image": np.arange(len(h))})
    ds.attrs.update(quality=int(quality), rendering="grey = 127.5 (1 + R / max|R|), channel sum",
                    reference="Samek et al. 2017, IEEE TNNLS, Sec. IV-B, Fig. 5")
    return ds
