"""The bias-zoo's drawing primitives, shared by the easy and the realistic scene renderer.

Silhouettes (:mod:`lrpkit.data.shapes`) are lists of ``(part, polygon)`` pairs; :func:`paint`
rasterises them anti-aliased (polygons drawn with PIL at :data:`SUPERSAMPLE`-fold resolution,
each part's coverage box-filtered back down) into premultiplied colour and alpha, shaded by a
vertical light gradient, with the sheep's wool (:func:`wool_texture`) on the body;
:func:`rasterise` places and scales a silhouette for it.  Around them: the pose transform
(:func:`transform_parts`: mirror and tilt about the shape's centre), the class colours
(:func:`class_palette`, which plants the colour bias: buses are :data:`BUS_YELLOW`), the
texture primitives of the backgrounds (:func:`smooth_noise`, :func:`vgrad`, :func:`jitter`,
:func:`hsv`) and a categorical draw (:func:`choice`).

Every function draws from the ``rng`` it is given, in a fixed order: the generated scenes are a
function of the seed alone (see :mod:`lrpkit.data.scenes`).
"""
from __future__ import annotations

import colorsys
from typing import Any, Sequence

import numpy as np
from PIL import Image, ImageDraw

from .shapes import ACCENT, BODY, DARK, GLASS, LIGHT

__all__ = ["SUPERSAMPLE", "BUS_YELLOW", "MAX_TILT", "choice", "smooth_noise", "vgrad", "jitter", "hsv",
           "class_palette", "colour_of", "wool_texture", "draw_tilt", "transform_parts", "extent",
           "box_overlap", "paint", "rasterise"]

SUPERSAMPLE = 3  # supersampling factor of the polygon rasteriser
BUS_YELLOW = (242, 196, 22)
#: largest tilt (degrees) of each class's silhouette; the tilt is drawn from N(0, max / 2), clipped
MAX_TILT = {"aeroplane": 14.0, "boat": 6.0, "bus": 2.5, "car": 3.5, "horse": 5.0, "sheep": 5.0}


def choice(rng: np.random.Generator, probs: Sequence[float]) -> int:
    """Index drawn from the categorical distribution ``probs`` (normalised by its sum)."""
    return int(np.searchsorted(np.cumsum(probs), rng.random() * sum(probs), side="right"))


# ----------------------------------------------------------------------------- colour and texture

def smooth_noise(rng: np.random.Generator, w: int, h: int, cell: int) -> np.ndarray:
    """Bilinearly upsampled uniform noise in [0, 1], feature size about ``cell`` pixels."""
    small = rng.random((h // cell + 2, w // cell + 2)).astype(np.float32)
    im = Image.fromarray(small, mode="F").resize((w + 2 * cell, h + 2 * cell), Image.BILINEAR)
    return np.asarray(im)[cell:cell + h, cell:cell + w]


def vgrad(top: Sequence[float], bottom: Sequence[float], h: int, w: int) -> np.ndarray:
    """A vertical gradient from colour ``top`` to ``bottom``, ``(h, w, 3)`` float32."""
    t = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]
    img = (1 - t) * np.asarray(top, np.float32) + t * np.asarray(bottom, np.float32)
    return np.broadcast_to(img, (h, w, 3)).copy()


def jitter(rng: np.random.Generator, rgb: Sequence[float], amount: float) -> np.ndarray:
    """``rgb`` scaled by one uniform factor in ``1 +- amount``, clipped to 0..255."""
    return np.clip(np.asarray(rgb, np.float32) * rng.uniform(1 - amount, 1 + amount), 0, 255)


def hsv(h: float, s: float, v: float) -> np.ndarray:
    """An HSV colour (hue wraps around) as float32 RGB in 0..255."""
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v), np.float32) * 255


def class_palette(name: str, rng: np.random.Generator) -> dict[int, np.ndarray]:
    """Colours of the parts; BODY carries the colour bias."""
    glass, dark, light = hsv(0.58, 0.25, 0.35), np.array([30, 28, 28], np.float32), \
        np.array([225, 225, 215], np.float32)
    if name == "bus":
        body = np.array(BUS_YELLOW, np.float32) * rng.uniform(0.92, 1.04)
        glass = hsv(0.58, 0.3, 0.3)
        accent = body
    elif name == "car":
        body = hsv(rng.random(), rng.uniform(0.6, 0.9), rng.uniform(0.5, 0.9))
        accent = body
    elif name == "aeroplane":
        body = hsv(rng.random(), rng.uniform(0.0, 0.08), rng.uniform(0.82, 0.96))
        accent = hsv(rng.random(), rng.uniform(0.5, 0.85), rng.uniform(0.4, 0.8))
        glass = np.array([40, 45, 60], np.float32)
    elif name == "boat":
        body = hsv(rng.random(), rng.uniform(0.5, 0.85), rng.uniform(0.35, 0.85))
        accent = hsv(0.1, 0.05, rng.uniform(0.88, 0.97))
    elif name == "horse":
        choices = ((135, 72, 35), (95, 55, 30), (40, 34, 32), (150, 148, 145), (200, 160, 95))
        body = np.array(choices[int(rng.integers(len(choices)))], np.float32) * rng.uniform(0.9, 1.08)
        dark = body * 0.45
        accent = body
    elif name == "sheep":
        body = np.array((232, 226, 208), np.float32) * rng.uniform(0.9, 1.03)
        dark = np.array((45, 38, 34), np.float32) * rng.uniform(0.8, 1.6)
        accent = body
    else:
        raise ValueError(f"unknown scene class {name!r}")
    return {BODY: np.clip(body, 0, 255), DARK: dark, GLASS: glass, ACCENT: accent, LIGHT: light}


def colour_of(body: np.ndarray) -> tuple[str, float]:
    """``("#rrggbb", hue in degrees, one decimal)`` of a body colour (the sidecar's columns)."""
    r, g, b = (np.clip(body, 0, 255) / 255).tolist()
    hexcol = "#%02x%02x%02x" % tuple(int(round(c * 255)) for c in (r, g, b))
    return hexcol, round(colorsys.rgb_to_hsv(r, g, b)[0] * 360.0, 1)


def wool_texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Curly, high-frequency wool texture (multiplicative, about 0.65..1.1)."""
    y = np.arange(h, dtype=np.float32)[:, None] + rng.uniform(0, 10)
    x = np.arange(w, dtype=np.float32)[None, :] + rng.uniform(0, 10)
    curls = np.sin(1.9 * x + 2.2 * np.sin(1.3 * y)) * np.cos(1.7 * y + 2.0 * np.cos(1.1 * x))
    return (0.86 + 0.14 * curls + 0.07 * rng.standard_normal((h, w), dtype=np.float32)).astype(np.float32)


# ----------------------------------------------------------------------------- polygons

def draw_tilt(rng: np.random.Generator, name: str) -> float:
    """A silhouette's tilt in degrees: N(0, max / 2) clipped to +- :data:`MAX_TILT` of class ``name``."""
    return float(np.clip(rng.normal(0, MAX_TILT[name] / 2), -MAX_TILT[name], MAX_TILT[name]))


def transform_parts(parts: list, mirror: bool, tilt_deg: float) -> tuple[list, np.ndarray, np.ndarray]:
    """Mirror and tilt ``parts`` about their centre; returns ``(parts, lo, hi)`` (the extent's corners)."""
    pts = np.vstack([p for _, p in parts])
    centre = (pts.min(0) + pts.max(0)) / 2
    t = np.deg2rad(tilt_deg)
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    out = []
    for pid, p in parts:
        q = p - centre
        if mirror:
            q = q * np.array([-1.0, 1.0])
        out.append((pid, q @ rot.T))
    allp = np.vstack([p for _, p in out])
    return out, allp.min(0), allp.max(0)


def extent(parts: list, mirror: bool, tilt: float) -> np.ndarray:
    """Width and height of the extent of ``parts`` after mirroring and tilting."""
    _, lo, hi = transform_parts(parts, mirror, tilt)
    return np.maximum(hi - lo, 1e-6)


def box_overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    """Area of the intersection of boxes ``a`` and ``b`` (``(x0, y0, x1, y1)``)."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return max(w, 0.0) * max(h, 0.0)


def paint(parts: list, lo: np.ndarray, scale: Any, shift: np.ndarray, cw: int, ch: int,
          pal: dict[int, np.ndarray], rng: np.random.Generator,
          wool: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Anti-aliased ``(colour (ch, cw, 3), alpha (ch, cw))`` of transformed ``parts`` on a
    ``cw x ch`` canvas: part polygons drawn at ``SUPERSAMPLE``-fold supersampling, each part's
    coverage shaded by a vertical light gradient (wool texture on the body when ``wool``)."""
    canvas = Image.new("L", (cw * SUPERSAMPLE, ch * SUPERSAMPLE), 0)
    draw = ImageDraw.Draw(canvas)
    for pid, p in parts:
        q = ((p - lo) * scale + shift) * SUPERSAMPLE
        draw.polygon([tuple(v) for v in q.tolist()], fill=pid)
    lab = np.asarray(canvas)
    yy = np.linspace(0, 1, ch, dtype=np.float32)[:, None]
    xx = np.linspace(-0.5, 0.5, cw, dtype=np.float32)[None, :]
    shade = (1.12 - 0.32 * yy + rng.uniform(-0.15, 0.15) * xx).astype(np.float32)
    colour = np.zeros((ch, cw, 3), np.float32)
    alpha = np.zeros((ch, cw), np.float32)
    for pid in sorted({pid for pid, _ in parts}):
        hit = (lab == pid).view(np.uint8) * np.uint8(255)
        cov = np.asarray(Image.fromarray(hit).reduce(SUPERSAMPLE), np.float32) * np.float32(1 / 255)
        tex = shade * wool_texture(rng, ch, cw) if (wool and pid == BODY) else shade
        colour += (cov * tex)[..., None] * pal[int(pid)]
        alpha += cov
    return colour, alpha


def rasterise(parts: list, mirror: bool, tilt: float, size: tuple[float, float] | float,
              origin: tuple[float, float], pal: dict[int, np.ndarray], rng: np.random.Generator,
              wool: bool = False) -> tuple[int, int, np.ndarray, np.ndarray]:
    """Rasterise ``parts`` scaled to ``size`` (width, height of the extent, or the scale) with
    its top-left corner at ``origin``; returns ``(x0, y0, colour, alpha)``."""
    parts, lo, hi = transform_parts(parts, mirror, tilt)
    ext = np.maximum(hi - lo, 1e-6)
    scale = np.asarray(size, float) / ext if not np.isscalar(size) else np.array([size, size], float)
    ox, oy = origin
    x0, y0 = int(np.floor(ox)), int(np.floor(oy))
    cw = int(np.ceil(ox + ext[0] * scale[0])) + 1 - x0
    ch = int(np.ceil(oy + ext[1] * scale[1])) + 1 - y0
    cw, ch = max(cw, 1), max(ch, 1)
    colour, alpha = paint(parts, lo, scale, np.array([ox - x0, oy - y0]), cw, ch, pal, rng, wool)
    return x0, y0, colour, np.clip(alpha, 0, 1)
