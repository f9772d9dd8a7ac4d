"""Heatmap helpers: channel sum, the red-blue relevance colour map, overlays, grids.

::

    from lrpkit import viz
    h = viz.channel_sum(R)                 # (N, C, H, W) -> (N, H, W)
    rgb = viz.heatmap_rgb(h[0])            # (H, W, 3) in [0, 1], symmetric about 0
    viz.overlay(image, h[0])               # heatmap blended over the image
    fig = viz.plot_heatmaps(images, R, titles=[...])
    viz.show_heatmap(ax, h[0], "title")    # one map on an axis, range at the 99.5th percentile
    viz.draw_box(ax, (x0, y0, x1, y1))     # a 0-based half-open pixel box
    grid = viz.montage(images, ncols=8)    # one (H, W, 3) array of tiles

The colour map ``"lrp"`` (registered with matplotlib on import) runs from dark blue
(negative relevance) through white (0) to dark red (positive), like the heatmaps of the
LRP papers; ``vmax`` defaults to the largest absolute value, so 0 is always white.
"""
from __future__ import annotations

from typing import Any
from collections.abc import Mapping, Sequence

import numpy as np
import torch

__all__ = ["skip_section", "channel_sum", "symmetric_limit", "heatmap_rgb", "overlay", "plot_heatmaps", "show_scenes",
           "show_image", "show_heatmap", "draw_box", "montage", "montage_rows", "LRP_CMAP", "lrp_cmap",
           "NOTEBOOK_STYLE", "notebook_style"]

LRP_CMAP = "lrp"

#: matplotlib settings of the report notebooks: compact figures, small labels
NOTEBOOK_STYLE: dict[str, Any] = {"figure.dpi": 90, "axes.titlesize": 10, "axes.labelsize": 9,
                                  "xtick.labelsize": 8, "ytick.labelsize": 8, "legend.fontsize": 8}


def notebook_style(overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Apply :data:`NOTEBOOK_STYLE`, updated with ``overrides`` (rcParams names such as
    ``{"legend.fontsize": 7}``), to matplotlib's rcParams; returns what was set.  Raises
    ``ValueError`` naming any key matplotlib does not know."""
    import matplotlib.pyplot as plt

    style = {**NOTEBOOK_STYLE, **(overrides or {})}
    unknown = sorted(set(style) - set(plt.rcParams))
    if unknown:
        raise ValueError(f"unknown rcParams {unknown}")
    plt.rcParams.update(style)
    return style


def skip_section(title: str, needs: str) -> str:
    """Say in one visible sentence that a report section is skipped and what it needs, e.g.
    ``skip_section("Context ratio", "object boxes in the dataset")``; returns the sentence.

    Notebooks call this where the configured model or dataset lacks a section's input (no
    boxes, no counterfactual twins, no planted tags, no training split), instead of failing.
    """
    text = f"**{title}: skipped.** This needs {needs}, which the configured data and model do not have."
    try:
        from IPython.display import Markdown, display

        display(Markdown(text))
    except ImportError:  # pragma: no cover - outside Jupyter
        print(text)
    return text


def lrp_cmap():
    """The red-blue relevance colour map (a matplotlib ``LinearSegmentedColormap``)."""
    import matplotlib
    from matplotlib.colors import LinearSegmentedColormap

    try:
        return matplotlib.colormaps[LRP_CMAP]
    except KeyError:
        pass
    colors = [(0.0, 0.0, 0.55), (0.0, 0.35, 1.0), (0.55, 0.8, 1.0), (1.0, 1.0, 1.0),
              (1.0, 0.75, 0.55), (1.0, 0.2, 0.0), (0.6, 0.0, 0.0)]
    cmap = LinearSegmentedColormap.from_list(LRP_CMAP, colors, N=256)
    try:
        matplotlib.colormaps.register(cmap, name=LRP_CMAP)
    except ValueError:  # registered concurrently
        pass
    return matplotlib.colormaps[LRP_CMAP]


def _np(a: Any) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        return a.detach().cpu().numpy()
    return np.asarray(a)


def _relevance_map(h: Any, caller: str) -> np.ndarray:
    """``h`` as a float64 ``(H, W)`` map, a ``(C, H, W)`` one summed over channels; else a
    ``ValueError`` naming ``caller``."""
    a = _np(h).astype(np.float64)
    if a.ndim == 3:
        a = a.sum(0)
    if a.ndim != 2:
        raise ValueError(f"{caller} expects a 2-D map (or (C, H, W)), got shape {a.shape}")
    return a


def channel_sum(R: Any) -> Any:
    """Sum relevance over channels: ``(N, C, H, W) -> (N, H, W)``, ``(C, H, W) -> (H, W)``.

    Keeps the type (tensor or array).  Bach et al. 2016, footnote 1: the channel sum is the pixel
    relevance used for visualisation.
    """
    if R.ndim == 4:
        return R.sum(1) if isinstance(R, torch.Tensor) else np.asarray(R).sum(1)
    if R.ndim == 3:
        return R.sum(0) if isinstance(R, torch.Tensor) else np.asarray(R).sum(0)
    raise ValueError(f"channel_sum expects (N, C, H, W) or (C, H, W), got shape {tuple(R.shape)}")


def symmetric_limit(h: Any, percentile: float = 100.0) -> float:
    """``vmax`` for a map: the given percentile of ``|h|`` (1.0 for an all-zero map)."""
    a = np.abs(_np(h)).ravel()
    v = float(np.percentile(a, percentile)) if a.size else 0.0
    return v if v > 0 and np.isfinite(v) else 1.0


def heatmap_rgb(h: Any, vmax: float | None = None, cmap: Any = LRP_CMAP,
                percentile: float = 100.0) -> np.ndarray:
    """A 2-D relevance map as RGB ``(H, W, 3)`` in [0, 1], colour scale symmetric about 0."""
    import matplotlib

    a = _relevance_map(h, "heatmap_rgb")
    if cmap == LRP_CMAP:
        lrp_cmap()
    cm = matplotlib.colormaps[cmap] if isinstance(cmap, str) else cmap
    v = symmetric_limit(a, percentile) if vmax is None else float(vmax)
    return cm(np.clip((a / v + 1.0) / 2.0, 0.0, 1.0))[..., :3]


def _image_rgb(img: Any) -> np.ndarray:
    a = _np(img).astype(np.float64)
    if a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[-1] not in (1, 3):
        a = np.moveaxis(a, 0, -1)
    if a.ndim == 2:
        a = a[..., None]
    if a.shape[-1] == 1:
        a = np.repeat(a, 3, -1)
    lo, hi = a.min(), a.max()
    if lo < 0 or hi > 1:  # normalised input: rescale for display
        a = (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
    return a


def overlay(image: Any, h: Any, alpha: float = 0.6, vmax: float | None = None,
            cmap: Any = LRP_CMAP, gray: bool = True) -> np.ndarray:
    """Blend a relevance map over an image; returns RGB ``(H, W, 3)`` in [0, 1].

    ``image`` is ``(H, W, 3)``, ``(3, H, W)`` or ``(H, W)`` (rescaled to [0, 1] if it is not
    already); ``gray`` desaturates it first so that the colours belong to the heatmap.
    The blend weight grows with ``|h|``, so irrelevant regions show the image.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
    img = _image_rgb(image)
    a = _np(h).astype(np.float64)
    if a.ndim == 3:
        a = a.sum(0)
    if a.shape != img.shape[:2]:
        raise ValueError(f"heatmap shape {a.shape} does not match the image {img.shape[:2]}")
    if gray:
        img = np.repeat(img.mean(-1, keepdims=True), 3, -1)
    v = symmetric_limit(a) if vmax is None else float(vmax)
    rgb = heatmap_rgb(a, vmax=v, cmap=cmap)
    w = alpha * np.clip(np.abs(a) / v, 0.0, 1.0)[..., None]
    return (1 - w) * img + w * rgb


def plot_heatmaps(images: Any | None, heatmaps: Any, titles: Sequence[str] | None = None,
                  ncols: int | None = None, size: float = 2.5, percentile: float = 100.0,
                  cmap: Any = LRP_CMAP):
    """A grid figure: per sample the image (if given) and its heatmap.  Returns the Figure.

    ``heatmaps``: ``(N, C, H, W)`` (channels are summed) or ``(N, H, W)``.
    """
    import matplotlib.pyplot as plt

    H = _np(heatmaps)
    if H.ndim == 4:
        H = H.sum(1)
    if H.ndim == 2:
        H = H[None]
    n = H.shape[0]
    imgs = None if images is None else _np(images)
    if imgs is not None and imgs.ndim == 3:
        imgs = imgs[None]
    per = 2 if imgs is not None else 1
    ncols = ncols or min(n, 4)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols * per, figsize=(size * ncols * per, size * nrows),
                             squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for i in range(n):
        r, c = divmod(i, ncols)
        if imgs is not None:
            axes[r, c * per].imshow(_image_rgb(imgs[i]))
        ax = axes[r, c * per + per - 1]
        ax.imshow(heatmap_rgb(H[i], cmap=cmap, percentile=percentile))
        if titles is not None and i < len(titles):
            ax.set_title(str(titles[i]), fontsize=9)
    fig.tight_layout()
    return fig


def show_scenes(samples: Sequence[tuple[Any, dict]], titles: Sequence[str] | None = None,
                ncols: int = 6, size: float = 2.4, box_colour: str = "#ff2d55"):
    """A grid of ``(image, target)`` pairs as ``VOCDataset`` yields them, with their boxes.

    Boxes are the dataset's 0-based, half-open pixel boxes; each is labelled with its class
    name (``"(d)"`` marks VOC's difficult objects).  Titles default to the image ids.
    Returns the Figure.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    n = len(samples)
    if n == 0:
        raise ValueError("show_scenes needs at least one (image, target) pair")
    ncols = max(1, min(ncols, n))
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows * 0.85), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for i, (image, target) in enumerate(samples):
        ax = axes.flat[i]
        ax.imshow(_image_rgb(image) if not hasattr(image, "convert") else np.asarray(image.convert("RGB")))
        boxes = np.asarray(target.get("boxes", np.zeros((0, 4))), dtype=float).reshape(-1, 4)
        names = list(target.get("names", []))
        difficult = list(target.get("difficult", [False] * len(names)))
        for (x0, y0, x1, y1), name, d in zip(boxes, names, difficult):
            ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False,
                                   edgecolor=box_colour, lw=1.2))
            ax.text(x0, y0 - 1, name + (" (d)" if d else ""), color="white", fontsize=7,
                    va="bottom", bbox=dict(facecolor=box_colour, edgecolor="none", pad=1, alpha=0.8))
        title = titles[i] if titles is not None and i < len(titles) else target.get("id", "")
        ax.set_title(str(title), fontsize=8)
    fig.tight_layout()
    return fig


def _bare(ax, title: str | None) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(str(title))


def show_image(ax, image: Any, title: str | None = None):
    """Draw an image (PIL, ``(H, W, 3)``, ``(3, H, W)`` or ``(H, W)``) on ``ax`` without ticks."""
    ax.imshow(np.asarray(image.convert("RGB")) if hasattr(image, "convert") else _image_rgb(image))
    _bare(ax, title)
    return ax


def show_heatmap(ax, h: Any, title: str | None = None, percentile: float = 99.5,
                 cmap: Any = LRP_CMAP):
    """Draw a 2-D relevance map (or ``(C, H, W)``, summed) on ``ax`` in the relevance colours.

    The colour range is symmetric about 0 (white) and ends at ``percentile`` of ``|h|``, so a few
    extreme pixels do not wash out the rest; returns the ``AxesImage``.
    """
    a = _relevance_map(h, "show_heatmap")
    if cmap == LRP_CMAP:
        cmap = lrp_cmap()
    v = symmetric_limit(a, percentile)
    im = ax.imshow(a, cmap=cmap, vmin=-v, vmax=v, interpolation="nearest")
    _bare(ax, title)
    return im


def draw_box(ax, box: Sequence[float], color: str = "lime", lw: float = 1.2):
    """Outline a 0-based, half-open pixel box ``(x0, y0, x1, y1)`` on ``ax`` (pixel edges at
    ``+-0.5`` of the pixel centres, as ``imshow`` draws them); returns the patch."""
    from matplotlib.patches import Rectangle

    if len(box) != 4:
        raise ValueError(f"box must be (x0, y0, x1, y1), got {box!r}")
    x0, y0, x1, y1 = (float(v) for v in box)
    return ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, ec=color, lw=lw))


def montage_rows(rows: Mapping[str, Sequence[Any]], ncols: int, title: str | None = None):
    """One montage per named row of images (empty rows left out), the names as row labels;
    returns the figure."""
    import matplotlib.pyplot as plt

    rows = {k: v for k, v in rows.items() if len(v)}
    fig, axes = plt.subplots(len(rows), 1, figsize=(1.4 * ncols, 1.25 * len(rows)), squeeze=False)
    for ax, (name, imgs) in zip(axes[:, 0], rows.items()):
        ax.imshow(montage(imgs, ncols=ncols, pad=3))
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def montage(images: Sequence[Any], ncols: int | None = None, pad: int = 2,
            fill: float = 1.0) -> np.ndarray:
    """Tile images into one RGB array ``(H, W, 3)`` in [0, 1], row by row.

    Images may be PIL images or arrays (see :func:`overlay` for the layouts; uint8 is scaled
    by 1/255) and may differ in size: each tile is as large as the largest image, an image sits
    in its tile's top-left corner, and ``pad`` pixels of ``fill`` separate the tiles (none at
    the border).  ``ncols`` defaults to ``ceil(sqrt(N))``; empty tiles (the rest of the last
    row, or of a row wider than ``N`` when ``ncols > N``: montages of equal width) are ``fill``.
    """
    tiles = []
    for im in images:
        if hasattr(im, "convert"):
            a = np.asarray(im.convert("RGB"), dtype=np.float64) / 255.0
        else:
            raw = _np(im)
            a = raw.astype(np.float64) / 255.0 if raw.dtype == np.uint8 else _image_rgb(raw)
            if a.ndim == 2:
                a = np.repeat(a[..., None], 3, -1)
            elif a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[-1] not in (1, 3):
                a = np.moveaxis(a, 0, -1)
            if a.shape[-1] == 1:
                a = np.repeat(a, 3, -1)
        if a.ndim != 3 or a.shape[-1] != 3:
            raise ValueError(f"montage: image {len(tiles)} has shape {a.shape}, expected (H, W, 3)")
        tiles.append(a)
    if not tiles:
        raise ValueError("montage needs at least one image")
    if pad < 0:
        raise ValueError(f"pad must be >= 0, got {pad!r}")
    n = len(tiles)
    explicit = ncols is not None
    ncols = int(ncols) if explicit else int(np.ceil(np.sqrt(n)))
    if ncols < 1:
        raise ValueError(f"ncols must be >= 1, got {ncols!r}")
    ncols = ncols if explicit else min(ncols, n)
    nrows = -(-n // ncols)
    th, tw = max(t.shape[0] for t in tiles), max(t.shape[1] for t in tiles)
    out = np.full((nrows * th + (nrows - 1) * pad, ncols * tw + (ncols - 1) * pad, 3), float(fill))
    for i, t in enumerate(tiles):
        r, c = divmod(i, ncols)
        y, x = r * (th + pad), c * (tw + pad)
        out[y:y + t.shape[0], x:x + t.shape[1]] = t
    return out


try:  # register the colour map on import when matplotlib is there
    lrp_cmap()
except Exception:  # noqa: BLE001  # pragma: no cover - a plotting back-end without colour maps
    pass
