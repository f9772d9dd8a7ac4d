"""The one renderer of the explorer and the results browser: matplotlib figures and PNG bytes.

A view is rows of panels (:class:`Panel`); :func:`figure` lays them out with fixed sizes (no
layout engine: a three-panel PNG takes ~50 ms) and :func:`png` encodes it.  The widget shows
each row as its own PNG; the static fallback (papermill, HTML export) draws the same panels in
one figure.  Heatmaps have a colour bar; a signed map gets a colour scale symmetric about 0
(the red-blue relevance map of :func:`lrpkit.viz.lrp_cmap`: red for, blue against the class),
a non-negative map its red half from 0; the limit is the 99.5th percentile of ``|h|``.
"""
from __future__ import annotations

import io
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import FormatStrFormatter

from ..viz import lrp_cmap, overlay, symmetric_limit

__all__ = ["Panel", "image_panel", "heatmap_panel", "overlay_panel", "scores_panel", "curve_panel",
           "line_panel", "map_scale", "figure", "png", "PERCENTILE"]

#: colour-scale limit: this percentile of |h| (a few extreme pixels do not wash out the map)
PERCENTILE = 99.5
_H = 2.5                      # panel height (inches)
_TOP, _BOTTOM = 0.28, 0.08    # room for the title / below the axes of image panels
_DPI = 80


@dataclass
class Panel:
    """One axes of a view: ``draw(ax, cax)`` fills it (``cax``: the colour-bar axes of a
    heatmap, else None); ``width`` in inches; ``left`` / ``bottom`` margins for tick labels."""

    draw: Callable[[Any, Any], None]
    width: float
    colorbar: bool = False
    left: float = 0.05
    bottom: float = _BOTTOM


def map_scale(h: np.ndarray) -> tuple[float, float, Any]:
    """``(vmin, vmax, cmap)`` of a map: symmetric for a signed map, ``[0, v]`` otherwise."""
    v = symmetric_limit(h, PERCENTILE)
    cmap = lrp_cmap()
    if np.nanmin(h) < 0:
        return -v, v, cmap
    return 0.0, v, ListedColormap(cmap(np.linspace(0.5, 1.0, 128)), name="lrp_positive")


def _title(ax, title: str | None) -> None:
    if title:
        ax.set_title(title, fontsize=8)


def image_panel(image: np.ndarray, boxes: Sequence[Sequence[float]] | None = None,
                title: str | None = None) -> Panel:
    """An RGB image ``(H, W, 3)`` in [0, 1], with object boxes ``(x0, y0, x1, y1)``."""
    def draw(ax, cax) -> None:
        ax.imshow(image, interpolation="nearest")
        for b in (boxes if boxes is not None else []):
            ax.add_patch(Rectangle((b[0] - .5, b[1] - .5), b[2] - b[0], b[3] - b[1], fill=False,
                                   edgecolor="lime", linewidth=1.2))
        ax.set_axis_off()
        _title(ax, title)
    return Panel(draw, _H - _TOP - _BOTTOM + 0.1)


def heatmap_panel(heatmap: np.ndarray, title: str | None = None) -> Panel:
    """A 2-D map with its colour bar (see :func:`map_scale`)."""
    h = np.nan_to_num(np.asarray(heatmap, dtype=float))

    def draw(ax, cax) -> None:
        vmin, vmax, cmap = map_scale(h)
        im = ax.imshow(h, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
        ax.set_axis_off()
        _title(ax, title)
        cb = ax.figure.colorbar(im, cax=cax, format=FormatStrFormatter("%.2g"))
        cb.ax.tick_params(labelsize=7)
    return Panel(draw, _H - _TOP - _BOTTOM + 0.1, colorbar=True)


def overlay_panel(image: np.ndarray, heatmap: np.ndarray, title: str | None = None) -> Panel:
    """The map blended over the grey image (:func:`lrpkit.viz.overlay`, same colour limit)."""
    def draw(ax, cax) -> None:
        h = np.nan_to_num(np.asarray(heatmap, dtype=float))
        vmin, vmax, cmap = map_scale(h)
        ax.imshow(overlay(image, h, vmax=vmax), interpolation="nearest")
        ax.set_axis_off()
        _title(ax, title)
    return Panel(draw, _H - _TOP - _BOTTOM + 0.1)


def scores_panel(scores: np.ndarray, classes: Sequence[str], target: int,
                 title: str | None = "class scores") -> Panel:
    """Horizontal bars of the class scores, the explained class in red."""
    def draw(ax, cax) -> None:
        colours = ["#cf222e" if i == target else "#8c959f" for i in range(len(scores))]
        ax.barh(list(classes), scores, color=colours)
        ax.axvline(0, color="k", lw=.8)
        ax.invert_yaxis()
        ax.tick_params(labelsize=7)
        ax.set_xlabel("score", fontsize=8)
        _title(ax, title)
    return Panel(draw, 3.2, left=0.75, bottom=0.45)


def curve_panel(curve: Mapping[str, np.ndarray],
                title: str | None = "region perturbation (Samek et al. 2017)") -> Panel:
    """The target score along the MoRF and random perturbation orders."""
    def draw(ax, cax) -> None:
        for k, c in (("morf", "#cf222e"), ("random", "#57606a")):
            if k in curve:
                ax.plot(np.asarray(curve[k]), label=k, color=c)
        ax.set_xlabel("perturbed regions", fontsize=8)
        ax.set_ylabel("target score", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7)
        _title(ax, title)
    return Panel(draw, 3.2, left=0.55, bottom=0.45)


def line_panel(x: np.ndarray, y: np.ndarray, xlabel: str, title: str | None = None) -> Panel:
    """A 1-D variable along one dimension."""
    def draw(ax, cax) -> None:
        ax.plot(x, y, "o-", ms=3)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.tick_params(labelsize=7)
        _title(ax, title)
    return Panel(draw, 4.0, left=0.55, bottom=0.45)


def figure(rows: Sequence[Sequence[Panel]], dpi: int = _DPI) -> Figure:
    """A figure with the panels laid out row by row (fixed sizes, in inches)."""
    rows = [list(r) for r in rows if r]
    if not rows:
        raise ValueError("figure needs at least one panel")
    gap, cbar, cbar_room = 0.1, 0.1, 0.5

    def width(p: Panel) -> float:
        return p.left + p.width + (gap + cbar + cbar_room if p.colorbar else 0.05)

    fw = max(sum(width(p) for p in r) for r in rows) + 0.05
    fh = _H * len(rows)
    fig = Figure(figsize=(fw, fh), dpi=dpi)
    for i, row in enumerate(rows):
        y0 = fh - (i + 1) * _H
        x = 0.0
        for p in row:
            ax_h = _H - _TOP - p.bottom
            ax = fig.add_axes(((x + p.left) / fw, (y0 + p.bottom) / fh, p.width / fw, ax_h / fh))
            cax = None
            if p.colorbar:
                cax = fig.add_axes(((x + p.left + p.width + gap) / fw, (y0 + p.bottom + 0.1 * ax_h) / fh,
                                    cbar / fw, 0.8 * ax_h / fh))
            p.draw(ax, cax)
            x += width(p)
    return fig


def png(fig_or_rows: Figure | Sequence[Sequence[Panel]]) -> bytes:
    """PNG bytes of a figure (or of :func:`figure` of rows of panels)."""
    fig = fig_or_rows if isinstance(fig_or_rows, Figure) else figure(fig_or_rows)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=fig.dpi)
    return buf.getvalue()
