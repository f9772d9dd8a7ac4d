"""Image preprocessing of Lapuschkin et al. 2016, App. E ("Details on the Neural Network Retraining").

Lapuschkin et al. (2016, App. E) rescale every image so that its **longest side** has ``S`` pixels,
pad the shorter side at its boundaries **by the nearest pixel** (edge replication) to an ``S x S``
square, and take the **4 corner crops and 1 centre crop** of size ``c`` from it; after
mirroring the image this is repeated, giving **10 training views** per image.  At test time
(and for every heatmap) **one centre crop** is used.  The paper uses ``S = 256`` and
``c = 227`` for the Caffe reference net; lrpkit's scene CNN uses smaller sizes so that it
trains in minutes on two CPU cores (defaults :data:`DEFAULT_SIZE` ``= 72`` and
:data:`DEFAULT_CROP` ``= 64``: the scenes are only 160 x 120 pixels, and the crop keeps 89 %
of the side, as the paper's 227/256).  Any ``S`` / ``c`` with ``c <= S`` works.

The **model's input space is the normalised crop**: a float32 tensor ``(N, 3, c, c)`` equal
to ``(pixel / 255 - MEAN) / STD`` per channel, with the fixed ImageNet statistics
:data:`MEAN` / :data:`STD` (fixed, not estimated from data, so that scene-CNNs and
torchvision models share one input space).  Heatmaps computed by lrpkit live in this space;
:func:`denormalize` maps a tensor back to ``[0, 1]`` RGB for display.

For fast training the whole split is preprocessed **once** into a ``uint8`` tensor
``(N, 3, S, S)`` held in memory (:func:`preprocess_images` / :func:`preprocess_dataset`);
:func:`train_views_batch` then cuts one randomly chosen of the 10 views per image and step.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import torch
from PIL import Image

from .._integrity import open_rgb

__all__ = ["MEAN", "STD", "DEFAULT_SIZE", "DEFAULT_CROP", "N_TRAIN_VIEWS",
           "pad_to_square", "crop_offsets", "train_view", "ten_views", "center_crop",
           "normalize", "denormalize", "input_bounds", "image_to_uint8", "preprocess_images",
           "preprocess_dataset", "train_views_batch", "to_tensor_batch",
           "TrainTransform", "TestTransform"]

#: ImageNet channel means (RGB, in [0, 1]) used to normalise every crop.
MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
#: ImageNet channel standard deviations (RGB, in [0, 1]).
STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
#: Default longest side ``S`` after rescaling (Lapuschkin et al. 2016, App. E: 256).
DEFAULT_SIZE = 72
#: Default square crop size ``c`` (Lapuschkin et al. 2016, App. E: 227).
DEFAULT_CROP = 64
#: Number of training views: 4 corners + centre, each also mirrored (Lapuschkin et al. 2016, App. E).
N_TRAIN_VIEWS = 10

_VIEW_NAMES = ("top_left", "top_right", "bottom_left", "bottom_right", "center")


def _check_sizes(size: int, crop: int) -> None:
    if not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"size must be a positive int, got {size!r}")
    if not isinstance(crop, (int, np.integer)) or crop < 1 or crop > size:
        raise ValueError(f"crop must be an int in [1, size={size}], got {crop!r}")


def pad_to_square(image: Image.Image | np.ndarray, size: int = DEFAULT_SIZE) -> np.ndarray:
    """Rescale so the longest side is ``size``, then edge-pad the short side to a square.

    Lapuschkin et al. 2016, App. E: "each image was rescaled such that the largest side had 256 pixels.
    The smaller side was padded at its boundaries by the nearest pixel."  The padding is
    split evenly between both sides (the extra pixel, if odd, goes to the bottom / right).

    Parameters
    ----------
    image : PIL image or ``uint8`` array ``(H, W, 3)``
    size : the side ``S`` of the returned square.

    Returns
    -------
    ``uint8`` array ``(size, size, 3)``.
    """
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"image array must have shape (H, W, 3), got {image.shape}")
        image = Image.fromarray(np.asarray(image, dtype=np.uint8))
    if not isinstance(image, Image.Image):
        raise TypeError(f"image must be a PIL image or an (H, W, 3) uint8 array, got {type(image).__name__}")
    if not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"size must be a positive int, got {size!r}")
    image = image.convert("RGB")
    w, h = image.size
    scale = size / max(w, h)
    nw, nh = max(1, min(size, round(w * scale))), max(1, min(size, round(h * scale)))
    if (nw, nh) != (w, h):
        image = image.resize((nw, nh), Image.BILINEAR)
    arr = np.array(image, dtype=np.uint8)   # a writable copy (torch.from_numpy needs one)
    ph, pw = size - nh, size - nw
    if ph or pw:
        arr = np.pad(arr, ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)), mode="edge")
    return np.ascontiguousarray(arr)


def crop_offsets(size: int = DEFAULT_SIZE, crop: int = DEFAULT_CROP) -> list[tuple[int, int]]:
    """``(top, left)`` of the 5 crops of Lapuschkin et al. 2016, App. E, in the order
    top-left, top-right, bottom-left, bottom-right, centre."""
    _check_sizes(size, crop)
    d = size - crop
    return [(0, 0), (0, d), (d, 0), (d, d), (d // 2, d // 2)]


def train_view(x: torch.Tensor, view: int, crop: int = DEFAULT_CROP) -> torch.Tensor:
    """One of the 10 training views of a square image tensor ``(..., C, S, S)``.

    ``view`` in ``0..9``: ``view % 5`` selects the crop (0-3 corners TL, TR, BL, BR, 4 centre,
    see :func:`crop_offsets`), ``view >= 5`` mirrors it horizontally (Lapuschkin et al. 2016, App. E).
    """
    if not 0 <= int(view) < N_TRAIN_VIEWS:
        raise ValueError(f"view must be in 0..{N_TRAIN_VIEWS - 1}, got {view!r}")
    size = x.shape[-1]
    if x.shape[-2] != size:
        raise ValueError(f"x must be square in its last two dims, got {tuple(x.shape)}")
    top, left = crop_offsets(size, crop)[int(view) % 5]
    out = x[..., top:top + crop, left:left + crop]
    if view >= 5:
        out = out.flip(-1)
    return out


def ten_views(x: torch.Tensor, crop: int = DEFAULT_CROP) -> torch.Tensor:
    """All 10 training views of ``x (C, S, S)`` stacked to ``(10, C, crop, crop)``."""
    return torch.stack([train_view(x, v, crop) for v in range(N_TRAIN_VIEWS)])


def center_crop(x: torch.Tensor, crop: int = DEFAULT_CROP) -> torch.Tensor:
    """The test view of Lapuschkin et al. 2016, App. E: the centre ``crop x crop`` of ``(..., C, S, S)``."""
    return train_view(x, 4, crop)


def _stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    shape = (3, 1, 1)
    return (torch.tensor(MEAN, dtype=torch.float32, device=x.device).view(shape),
            torch.tensor(STD, dtype=torch.float32, device=x.device).view(shape))


def normalize(x: torch.Tensor) -> torch.Tensor:
    """``uint8`` (0..255) or float (0..1) RGB tensor ``(..., 3, H, W)`` -> model input space
    ``(x / 255 - MEAN) / STD`` as float32."""
    if x.shape[-3] != 3:
        raise ValueError(f"x must have 3 channels in dim -3, got shape {tuple(x.shape)}")
    xf = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
    mean, std = _stats(xf)
    return (xf - mean) / std


def input_bounds() -> tuple[torch.Tensor, torch.Tensor]:
    """``(low, high)``: the normalised values of pixel 0 and pixel 1, ``(3, 1, 1)`` each.

    The bounds of the model's input space, for the z-box rule on the input layer:
    ``explain(model, x, t, method="lrp", composite="epsilon_plus_box", low=low, high=high)``.
    """
    mean = torch.tensor(MEAN).reshape(3, 1, 1)
    std = torch.tensor(STD).reshape(3, 1, 1)
    return (0.0 - mean) / std, (1.0 - mean) / std


def denormalize(x: torch.Tensor, clamp: bool = True) -> torch.Tensor:
    """Inverse of :func:`normalize`: model input space -> RGB in ``[0, 1]`` (float32)."""
    if x.shape[-3] != 3:
        raise ValueError(f"x must have 3 channels in dim -3, got shape {tuple(x.shape)}")
    mean, std = _stats(x)
    out = x.float() * std + mean
    return out.clamp(0.0, 1.0) if clamp else out


def image_to_uint8(image: Image.Image | np.ndarray, size: int = DEFAULT_SIZE) -> torch.Tensor:
    """:func:`pad_to_square` as a ``uint8`` tensor ``(3, size, size)``."""
    return torch.from_numpy(pad_to_square(image, size)).permute(2, 0, 1).contiguous()


def preprocess_images(images: Iterable[Image.Image | np.ndarray], size: int = DEFAULT_SIZE,
                      progress: bool = False, desc: str = "preprocess") -> torch.Tensor:
    """Pad-to-square every image once; returns ``uint8`` ``(N, 3, size, size)``."""
    it = images
    if progress:
        from tqdm.auto import tqdm
        it = tqdm(images, desc=desc, leave=False)
    out = [image_to_uint8(im, size) for im in it]
    if not out:
        return torch.empty((0, 3, size, size), dtype=torch.uint8)
    return torch.stack(out)


def preprocess_dataset(dataset, size: int = DEFAULT_SIZE, progress: bool = False
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Preprocess a VOC-style dataset (``ds[i] -> (PIL image, target)``, as
    :class:`lrpkit.data.VOCDataset`) once into memory.  A dataset with ``image_path(i)``
    has its files read directly (its own ``transform`` is bypassed); otherwise ``ds[i][0]``
    must be a PIL image or an ``(H, W, 3)`` uint8 array.

    Returns ``(images uint8 (N, 3, size, size), labels float32 (N, C) multi-hot)``.
    """
    n = len(dataset)
    image_path = getattr(dataset, "image_path", None)

    def _images():
        for i in range(n):
            if image_path is not None:       # VOCDataset: read the file, bypass its transform
                yield open_rgb(image_path(i))   # DamagedFile naming an unreadable file
            else:
                yield dataset[i][0]

    imgs = preprocess_images(_images(), size, progress=progress, desc="preprocess")
    labels = getattr(dataset, "labels", None)
    if labels is None:
        labels = np.stack([np.asarray(dataset[i][1]["labels"], dtype=np.float32) for i in range(n)])
    return imgs, torch.as_tensor(np.asarray(labels, dtype=np.float32))


def train_views_batch(images: torch.Tensor, crop: int = DEFAULT_CROP, *,
                      views: torch.Tensor | Sequence[int] | None = None,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """Cut one training view per image from ``uint8 (N, 3, S, S)`` and normalise it.

    ``views`` (``N`` ints in ``0..9``) selects the views; by default one is drawn uniformly
    per image from ``generator`` (seeded -> reproducible).  Returns float32
    ``(N, 3, crop, crop)`` in the model's input space.
    """
    n = images.shape[0]
    if views is None:
        views = torch.randint(0, N_TRAIN_VIEWS, (n,), generator=generator)
    views = torch.as_tensor(views, dtype=torch.long)
    if views.shape != (n,):
        raise ValueError(f"views must have shape ({n},), got {tuple(views.shape)}")
    if n and (int(views.min()) < 0 or int(views.max()) >= N_TRAIN_VIEWS):
        raise ValueError(f"views must be in 0..{N_TRAIN_VIEWS - 1}, got {views.tolist()}")
    out = torch.empty((n, images.shape[1], crop, crop), dtype=images.dtype)
    for v in range(N_TRAIN_VIEWS):
        idx = (views == v).nonzero(as_tuple=True)[0]
        if idx.numel():
            out[idx] = train_view(images[idx], v, crop)
    return normalize(out)


def to_tensor_batch(images: Sequence[Image.Image | np.ndarray] | Image.Image, size: int = DEFAULT_SIZE,
                    crop: int = DEFAULT_CROP) -> torch.Tensor:
    """PIL images / ``(H, W, 3)`` arrays -> normalised centre crops ``(N, 3, crop, crop)``.

    This is the test-time preprocessing of Lapuschkin et al. 2016, App. E (pad to square, one centre crop)
    and gives tensors in the model's input space, ready for ``model(x)`` and ``explain``.
    """
    _check_sizes(size, crop)
    if isinstance(images, (Image.Image, np.ndarray)) and not (isinstance(images, np.ndarray) and images.ndim == 4):
        images = [images]
    u8 = preprocess_images(list(images), size)
    return normalize(center_crop(u8, crop))


class TrainTransform:
    """``PIL image -> normalised random training view (3, crop, crop)`` (one of 10 views).

    Suitable as ``VOCDataset(..., transform=TrainTransform())``; seeded by ``seed``.
    """

    def __init__(self, size: int = DEFAULT_SIZE, crop: int = DEFAULT_CROP, seed: int | None = 0):
        _check_sizes(size, crop)
        self.size, self.crop = size, crop
        self.generator = torch.Generator()
        if seed is not None:
            self.generator.manual_seed(int(seed))

    def __call__(self, image):
        v = int(torch.randint(0, N_TRAIN_VIEWS, (1,), generator=self.generator))
        return normalize(train_view(image_to_uint8(image, self.size), v, self.crop))

    def __repr__(self) -> str:
        return f"TrainTransform(size={self.size}, crop={self.crop})"


class TestTransform:
    """``PIL image -> normalised centre crop (3, crop, crop)`` (Lapuschkin et al. 2016, App. E, test)."""

    __test__ = False  # not a pytest class

    def __init__(self, size: int = DEFAULT_SIZE, crop: int = DEFAULT_CROP):
        _check_sizes(size, crop)
        self.size, self.crop = size, crop

    def __call__(self, image):
        return normalize(center_crop(image_to_uint8(image, self.size), self.crop))

    def __repr__(self) -> str:
        return f"TestTransform(size={self.size}, crop={self.crop})"
