"""Dense multi-scale SIFT with exact bin geometry (VLFeat ``vl_dsift`` / ``vl_phow`` style).

Descriptor geometry (per bin size ``b``, in pixels), following VLFeat's dense SIFT:

* 4 x 4 spatial bins x 8 orientations = 128 dimensions, laid out as
  ``index = (by * 4 + bx) * 8 + t`` (orientation fastest, then x, then y, as VLFeat).
* The grey image is first smoothed with a Gaussian of ``sigma = sqrt((b / magnif)^2 - 0.25)``
  (``vl_phow``; ``magnif = 6``), then central-difference gradients are taken.
* Orientation binning: the angle ``atan2(gy, gx)`` (image axes, y down) is mapped to
  ``8 * angle / 2pi`` and the gradient magnitude is split linearly between the two nearest
  orientation bins.
* Spatial binning: every orientation map is filtered with a separable triangular kernel of
  half-width ``b`` (weights ``(b - |t|) / b^2``), i.e. each pixel's contribution is shared
  bilinearly between its nearest bin centres (VLFeat's ``vl_imconvcoltri``); the map is then
  read at the bin centres, ``b`` pixels apart.
* Gaussian window: as in VLFeat's fast dense SIFT, the Gaussian window (sigma =
  ``window_size`` bins, default 2, centred on the descriptor) is approximated by one constant
  per bin: its mean over the bin's triangular support.
* Normalisation: L2, clamp at 0.2, L2.  Descriptors whose raw L2 norm (the "contrast") is
  below ``contrast_threshold`` are set to zero (``vl_phow``'s ContrastThreshold).

Frames (A. Vedaldi and B. Fulkerson, "VLFeat: An Open and Portable Library of Computer Vision
Algorithms", 2008, ``vl_dsift`` / ``vl_phow``).  A descriptor of bin size ``b`` whose first
pixel cell starts at ``(y0, x0)`` owns the ``4 x 4`` pixel cells
``[y0 + b*by, y0 + b*(by+1)) x [x0 + b*bx, x0 + b*(bx+1))``; **its bin centres are the centres
of these cells**, ``x0 + b*bx + (b - 1)/2`` (half-integer for even ``b``: the triangular
kernel is then evaluated at half-pixel offsets, so what a bin measures is centred on its
cell), and the descriptor centre is the mean of the bin centres, ``x0 + (4b - 1)/2`` (VLFeat:
first bin centre + 3/2 b).  The receptive field is the union of the cells,
``[y0, y0 + 4b) x [x0, x0 + 4b)``; the triangular tails of the bilinear binning that reach half a
bin beyond the cells are not part of the rectangles (as in FV-LRP, Lapuschkin et al. 2016, eq. 21
and Bach et al. 2016, Sec. 3, relevance is spread uniformly over these rectangles).

**One grid for all bin sizes** (as ``vl_phow``): descriptors of every size share their
centres.  The largest size ``B`` starts with its receptive field in the image corner
(``x0 = 0``) and steps by ``step``; size ``b`` starts at ``x0 = 2 (B - b)`` (the same first
centre) and continues with the same step while its receptive field lies inside the image, so
the smaller sizes also cover the right / bottom band that the larger ones cannot reach.
(``vl_phow`` places the largest size's first *bin centre*, not its cell, on the first pixel; here
every receptive field lies inside the image.)

Everything is vectorised: one gradient, 8 orientation maps and two 1-D convolutions per bin
size; descriptors are gathered by fancy indexing, no loop over keypoints.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from collections.abc import Sequence

import numpy as np
from PIL import Image
from scipy import ndimage

__all__ = ["Frames", "dense_sift", "to_grey", "as_image_list", "min_image_size"]

NUM_BINS = 4
NUM_ORI = 8
DESC_DIM = NUM_BINS * NUM_BINS * NUM_ORI


@dataclass
class Frames:
    """Geometry of ``M`` dense SIFT descriptors of one image.

    Attributes
    ----------
    center : (M, 2) float64, ``(x, y)`` centre of the receptive field (pixel coordinates).
    bin_size : (M,) int, the bin size ``b`` in pixels.
    rect : (M, 4) int, receptive field ``[y0, x0, y1, x1)`` (end exclusive), ``4b`` square.
    bin_rects : (M, 16, 4) int, pixel rectangle ``[y0, x0, y1, x1)`` of every spatial bin,
        bin ``j = by * 4 + bx`` (the descriptor dims ``8 j .. 8 j + 7``).
    image_shape : ``(H, W)`` of the image.
    """

    center: np.ndarray
    bin_size: np.ndarray
    rect: np.ndarray
    bin_rects: np.ndarray
    image_shape: tuple[int, int]

    def __len__(self) -> int:
        return int(self.bin_size.shape[0])

    def __getitem__(self, idx: Any) -> Frames:
        return Frames(self.center[idx], self.bin_size[idx], self.rect[idx], self.bin_rects[idx],
                      self.image_shape)

    @property
    def area(self) -> np.ndarray:
        """Receptive-field area ``(4b)^2`` of every descriptor, in pixels."""
        r = self.rect
        return (r[:, 2] - r[:, 0]) * (r[:, 3] - r[:, 1])


def min_image_size(bin_sizes: Sequence[int]) -> int:
    """Smallest image side that holds one descriptor (of the smallest bin size, placed on the
    shared grid at ``2 (max(b) - b)``)."""
    bs = [int(b) for b in bin_sizes]
    return min(2 * (max(bs) - b) + NUM_BINS * b for b in bs)


def _as_float_image(img: Any, name: str) -> np.ndarray:
    if isinstance(img, Image.Image):
        img = np.asarray(img.convert("RGB"))
    if hasattr(img, "detach"):  # torch tensor
        img = img.detach().cpu().numpy()
    a = np.asarray(img)
    if a.dtype == np.uint8:
        a = a.astype(np.float64) / 255.0
    elif not np.issubdtype(a.dtype, np.number) or np.issubdtype(a.dtype, np.complexfloating):
        raise TypeError(f"{name} must hold real numbers, got dtype {a.dtype}")
    a = a.astype(np.float64, copy=False)
    if a.ndim == 3:
        if a.shape[0] in (1, 3):       # (C, H, W)
            a = a if a.shape[0] == 3 else a[:1]
        elif a.shape[-1] in (1, 3):    # (H, W, C)
            a = np.moveaxis(a, -1, 0)
        else:
            raise ValueError(f"{name} must be (3, H, W), (H, W, 3) or (H, W), got shape {a.shape}")
    elif a.ndim == 2:
        a = a[None]
    else:
        raise ValueError(f"{name} must be (3, H, W), (H, W, 3) or (H, W), got shape {a.shape}")
    if a.shape[1] == 0 or a.shape[2] == 0:
        raise ValueError(f"{name} is empty (shape {a.shape})")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} contains {int((~np.isfinite(a)).sum())} NaN or infinite values")
    return a


def to_grey(img: Any, name: str = "image") -> np.ndarray:
    """Grey levels ``(H, W)`` float64 of an RGB image in [0, 1] (ITU-R 601 luma weights).

    Accepts ``(3, H, W)`` / ``(H, W, 3)`` / ``(H, W)`` arrays or tensors, uint8 (scaled by
    1/255) or float, and PIL images.
    """
    a = _as_float_image(img, name)
    if a.shape[0] == 3:
        return 0.299 * a[0] + 0.587 * a[1] + 0.114 * a[2]
    return a[0]


def as_image_list(images: Any, name: str = "images") -> list:
    """Split a batch ``(N, 3, H, W)`` (tensor / array) or a list of images into a list."""
    if hasattr(images, "detach"):
        images = images.detach().cpu().numpy()
    if isinstance(images, np.ndarray):
        if images.ndim == 4:
            if images.shape[0] == 0:
                raise ValueError(f"{name} is an empty batch (shape {images.shape})")
            return list(images)
        if images.ndim in (2, 3):
            raise ValueError(f"{name} must be a batch (N, 3, H, W) or a list of images, got a "
                             f"single image of shape {images.shape}; wrap it in a list")
        raise ValueError(f"{name} must be (N, 3, H, W) or a list of images, got shape {images.shape}")
    if isinstance(images, (list, tuple)):
        if len(images) == 0:
            raise ValueError(f"{name} is empty")
        return list(images)
    try:
        seq = list(images)
    except TypeError:
        raise TypeError(f"{name} must be a tensor/array (N, 3, H, W) or a list of images, "
                        f"got {type(images).__name__}") from None
    if not seq:
        raise ValueError(f"{name} is empty")
    return seq


def _tri_offsets(b: int) -> np.ndarray:
    """Pixel offsets from a bin centre inside the triangular support ``|t| < b``: integers for
    odd ``b``, half-integers for even ``b`` (the centre lies between pixels)."""
    return np.arange(-b + 1, b) if b % 2 else np.arange(-b + 1, b + 1) - 0.5


def _window_means(b: int, window_size: float) -> np.ndarray:
    """Per-bin constant approximating the Gaussian window (VLFeat's bin window mean), bins at
    ``b (i - 3/2)`` from the descriptor centre."""
    t = _tri_offsets(b)
    tri = (b - np.abs(t)) / float(b * b)
    w = np.empty(NUM_BINS)
    for i in range(NUM_BINS):
        z = (b * (i - 1.5) + t) / (window_size * b)
        w[i] = np.sum(tri * np.exp(-0.5 * z * z)) / np.sum(tri)
    return w


def _bin_filter(ori: np.ndarray, b: int, axis: int) -> np.ndarray:
    """Triangular (bilinear) binning along ``axis``: output ``p`` holds the bin value at centre
    ``p`` (odd ``b``) or ``p + 1/2`` (even ``b``); zero outside the image."""
    t = _tri_offsets(b)
    tri = (b - np.abs(t)) / float(b * b)
    return ndimage.correlate1d(ori, tri, axis=axis, mode="constant", origin=0 if b % 2 else -1)


def _grid(n: int, b: int, b_max: int, step: int) -> np.ndarray:
    """First-cell coordinates ``x0`` of bin size ``b`` on the grid shared by all sizes."""
    start = 2 * (b_max - b)
    size = NUM_BINS * b
    if n < start + size:
        return np.zeros(0, dtype=np.int64)
    return start + step * np.arange((n - start - size) // step + 1, dtype=np.int64)


def dense_sift(image: Any, bin_sizes: Sequence[int] = (4, 6, 8), step: int = 3,
               magnif: float = 6.0, window_size: float = 2.0,
               contrast_threshold: float = 0.005, dtype: Any = np.float32,
               ) -> tuple[np.ndarray, Frames]:
    """Dense multi-scale SIFT of one image: ``(descriptors (M, 128), Frames)``.

    Parameters
    ----------
    image : ``(3, H, W)`` / ``(H, W, 3)`` RGB in [0, 1] (or ``(H, W)`` grey), array, tensor or
        PIL image; SIFT runs on grey levels.
    bin_sizes : spatial bin sizes in pixels (descriptor side ``4 b``), on one shared grid.
    step : grid step in pixels between neighbouring descriptors of one size.
    magnif, window_size, contrast_threshold : see the module docstring (VLFeat defaults).

    Raises ``ValueError`` for an empty image, NaNs, or an image smaller than
    :func:`min_image_size` (no descriptor fits).
    """
    bin_sizes = [int(b) for b in bin_sizes]
    if not bin_sizes or min(bin_sizes) < 1:
        raise ValueError(f"bin_sizes must be positive integers, got {bin_sizes}")
    if int(step) < 1:
        raise ValueError(f"step must be a positive integer, got {step}")
    step = int(step)
    grey = to_grey(image)
    H, W = grey.shape
    need = min_image_size(bin_sizes)
    if H < need or W < need:
        raise ValueError(f"image of size {H}x{W} is smaller than one descriptor "
                         f"({need}x{need} px for bin sizes {bin_sizes} on their shared grid)")
    descs, centers, bsz, rects, brects = [], [], [], [], []
    b_max = max(bin_sizes)
    for b in bin_sizes:
        ys, xs = _grid(H, b, b_max, step), _grid(W, b, b_max, step)
        if ys.size == 0 or xs.size == 0:
            continue
        sigma = np.sqrt(max((b / magnif) ** 2 - 0.25, 0.0))
        g = ndimage.gaussian_filter(grey, sigma, mode="nearest") if sigma > 0 else grey
        gy, gx = np.gradient(g)
        mag = np.hypot(gx, gy)
        nt = np.mod(np.arctan2(gy, gx), 2 * np.pi) * (NUM_ORI / (2 * np.pi))
        b0 = np.floor(nt)
        r = nt - b0
        b0 = b0.astype(np.int64) % NUM_ORI
        b1 = (b0 + 1) % NUM_ORI
        m0, m1 = (1 - r) * mag, r * mag
        ori = np.stack([np.where(b0 == o, m0, 0.0) + np.where(b1 == o, m1, 0.0)
                        for o in range(NUM_ORI)])
        ori = _bin_filter(_bin_filter(ori, b, 1), b, 2)
        off = (b - 1) // 2 + b * np.arange(NUM_BINS)      # index of the bin centre (module doc)
        cy = ys[:, None] + off[None, :]            # (ny, 4)
        cx = xs[:, None] + off[None, :]            # (nx, 4)
        d = ori[:, cy[:, :, None, None], cx[None, None, :, :]]      # (8, ny, 4, nx, 4)
        w = _window_means(b, window_size)
        d = d * w[None, None, :, None, None] * w[None, None, None, None, :]
        d = d.transpose(1, 3, 2, 4, 0).reshape(ys.size * xs.size, DESC_DIM)
        descs.append(d)
        Y0, X0 = np.meshgrid(ys, xs, indexing="ij")
        Y0, X0 = Y0.ravel(), X0.ravel()
        n = Y0.size
        centers.append(np.stack([X0 + (NUM_BINS * b - 1) / 2.0, Y0 + (NUM_BINS * b - 1) / 2.0], 1))
        bsz.append(np.full(n, b, dtype=np.int64))
        rects.append(np.stack([Y0, X0, Y0 + NUM_BINS * b, X0 + NUM_BINS * b], 1))
        by, bx = np.divmod(np.arange(NUM_BINS * NUM_BINS), NUM_BINS)
        by0 = Y0[:, None] + b * by[None, :]
        bx0 = X0[:, None] + b * bx[None, :]
        brects.append(np.stack([by0, bx0, by0 + b, bx0 + b], -1))
    desc = np.concatenate(descs, 0)
    # normalisation: L2, clamp 0.2, L2; low-contrast descriptors -> 0
    norm = np.linalg.norm(desc, axis=1, keepdims=True)
    low = norm[:, 0] < contrast_threshold
    desc = desc / np.maximum(norm, 1e-12)
    np.minimum(desc, 0.2, out=desc)
    desc = desc / np.maximum(np.linalg.norm(desc, axis=1, keepdims=True), 1e-12)
    desc[low] = 0.0
    frames = Frames(np.concatenate(centers, 0), np.concatenate(bsz, 0),
                    np.concatenate(rects, 0).astype(np.int64),
                    np.concatenate(brects, 0).astype(np.int64), (H, W))
    return desc.astype(dtype, copy=False), frames
