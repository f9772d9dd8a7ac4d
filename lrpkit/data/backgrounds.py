"""Background textures of the bias-zoo scenes: one per context, and their realistic variants.

Five backgrounds (:data:`BACKGROUNDS`), each the context of some classes
(:data:`lrpkit.data.scenes.CONTEXT`): ``sky`` (gradient and clouds), ``water`` (waves), ``road``
(asphalt, kerb and lane markings), ``grass`` (patchy, streaked), ``indoor`` (wall, wooden floor, a
picture).  :func:`render_background` draws one; with ``variants=True`` (the ``realistic`` preset,
:mod:`lrpkit.data.realism`) it draws one of four variants per background (sky: clear, clouds,
sunset, overcast, half of them over a strip of land; water, road and grass below a horizon at a
varied height, with sky, far shore, hills, tree lines or buildings above; indoor: wood, tiles or
carpet, with windows, doors or pictures), built on the plain textures.
"""
from __future__ import annotations

import colorsys
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .raster import hsv, jitter, smooth_noise, vgrad

__all__ = ["BACKGROUNDS", "Background", "render_background"]

BACKGROUNDS: tuple[str, ...] = ("sky", "water", "road", "grass", "indoor")


class Background(NamedTuple):
    """A drawn background: ``image`` (H, W, 3) float32 in 0..255, the ``variant`` name and the
    ``horizon`` (row where the context region begins, as a share of the height; sky: where the
    land strip starts, 1.0 without one; indoor: the floor line); ``""`` and NaN without variants."""

    image: np.ndarray
    variant: str
    horizon: float


# ----------------------------------------------------------------------------- plain textures

def _bg_sky(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    img = vgrad(jitter(rng, (60, 120, 205), 0.12), jitter(rng, (185, 212, 240), 0.05), h, w)
    clouds = Image.new("L", (w, h), 0)
    d = ImageDraw.Draw(clouds)
    for _ in range(int(rng.integers(1, 5))):
        cx, cy = rng.uniform(0, w), rng.uniform(0, h * 0.8)
        for _ in range(int(rng.integers(3, 6))):
            rx, ry = rng.uniform(6, 18), rng.uniform(4, 9)
            ox, oy = rng.normal(0, 9), rng.normal(0, 3)
            d.ellipse([cx + ox - rx, cy + oy - ry, cx + ox + rx, cy + oy + ry], fill=int(rng.integers(170, 240)))
    m = np.asarray(clouds.filter(ImageFilter.GaussianBlur(2.5)), np.float32)[..., None] / 255.0
    img = img * (1 - m) + np.float32(248) * m
    return img + 1.5 * rng.standard_normal((h, w, 1), dtype=np.float32)


def _bg_water(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    img = vgrad(jitter(rng, (45, 110, 150), 0.12), jitter(rng, (15, 55, 95), 0.12), h, w)
    y = np.arange(h, dtype=np.float32)[:, None]
    x = np.arange(w, dtype=np.float32)[None, :]
    lam = 3.0 + 5.0 * y / h
    phase = 2 * np.pi * (y / lam) * 0.5 + 1.4 * np.sin(2 * np.pi * x / rng.uniform(18, 35) + rng.uniform(0, 6.3)
                                                       + 0.3 * y)
    s = np.sin(phase)
    crest = np.clip(s - 0.55, 0, None) / 0.45
    trough = np.clip(-s - 0.7, 0, None) / 0.3
    img = img + (crest * 70)[..., None] - (trough * 20)[..., None]
    return img + 2.0 * rng.standard_normal((h, w, 1), dtype=np.float32)


def _bg_road(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    g = rng.uniform(85, 120)
    img = np.full((h, w, 3), g, np.float32) + np.array([0, 0, 4], np.float32)
    img += (7 * rng.standard_normal((h, w), dtype=np.float32) + 10 * smooth_noise(rng, w, h, 12))[..., None]
    kerb = int(h * rng.uniform(0.12, 0.3))
    img[:kerb] = np.float32(rng.uniform(150, 175)) + 3 * rng.standard_normal((kerb, w, 1), dtype=np.float32)
    img[:kerb, ::int(rng.integers(10, 16))] -= 40                       # paving joints
    img[kerb:kerb + 2] = 200
    lane = int(rng.uniform(0.55, 0.75) * h)
    period, dash = int(rng.integers(16, 26)), int(rng.integers(8, 13))
    on = (np.arange(w) + int(rng.integers(period))) % period < dash
    img[lane:lane + 2, on] = (235, 235, 225)
    edge = min(h - 3, lane + int(rng.uniform(0.18, 0.3) * h))
    img[edge:edge + 2] = (230, 190, 40) if rng.random() < 0.5 else (235, 235, 230)
    return img


def _bg_grass(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    base = jitter(rng, (70, 135, 45), 0.15)
    streak = np.asarray(Image.fromarray(rng.random((max(h // 5, 2), w)).astype(np.float32), mode="F")
                        .resize((w, h), Image.BILINEAR))
    patches = smooth_noise(rng, w, h, 20)
    light = 0.75 + 0.3 * patches + 0.25 * (streak - 0.5) + 0.06 * rng.standard_normal((h, w), dtype=np.float32)
    img = base * light[..., None]
    img[..., 1] += 6 * rng.standard_normal((h, w), dtype=np.float32)
    return img


def _bg_indoor(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    hue, sat, val = rng.random(), rng.uniform(0.12, 0.35), rng.uniform(0.72, 0.9)
    wall = np.array(colorsys.hsv_to_rgb(hue, sat, val), np.float32) * 255
    floor_y = int(h * rng.uniform(0.58, 0.78))
    img = vgrad(wall * 1.05, wall * 0.9, h, w)
    wood = jitter(rng, (150, 100, 60), 0.15)
    fh = h - floor_y
    plank = np.arange(fh)[:, None] % int(rng.integers(5, 8)) == 0
    img[floor_y:] = wood * (0.85 + 0.15 * smooth_noise(rng, w, fh, 6))[..., None]
    img[floor_y:][np.broadcast_to(plank, (fh, w))] *= 0.7
    img[floor_y - 3:floor_y] = 235                                        # skirting board
    if rng.random() < 0.6:                                                # picture frame / window
        fw, fhh = int(rng.integers(18, 34)), int(rng.integers(14, 26))
        x0, y0 = int(rng.integers(2, max(3, w - fw - 2))), int(rng.integers(4, max(5, floor_y - fhh - 6)))
        img[y0:y0 + fhh, x0:x0 + fw] = (60, 45, 35)
        img[y0 + 2:y0 + fhh - 2, x0 + 2:x0 + fw - 2] = np.array(colorsys.hsv_to_rgb(rng.random(), 0.4, 0.8)) * 255
    return img + 1.5 * rng.standard_normal((h, w, 1), dtype=np.float32)


_TEXTURE = {"sky": _bg_sky, "water": _bg_water, "road": _bg_road, "grass": _bg_grass,
            "indoor": _bg_indoor}


# ----------------------------------------------------------------------------- variants

def _sky(rng: np.random.Generator, w: int, h: int, variant: int) -> np.ndarray:
    if variant == 1:
        return _bg_sky(rng, w, h)
    if variant == 0:    # clear
        img = vgrad(jitter(rng, (70, 130, 215), 0.15), jitter(rng, (190, 215, 240), 0.06), h, w)
    elif variant == 2:  # sunset / dawn
        img = vgrad(jitter(rng, (80, 100, 170), 0.15), jitter(rng, (245, 170, 110), 0.08), h, w)
    else:               # overcast
        g = rng.uniform(150, 205)
        img = vgrad((g - 25, g - 20, g - 10), (g + 15, g + 15, g + 18), h, w)
        img = img + (18 * (smooth_noise(rng, w, h, 18) - 0.5))[..., None]
    return img + 1.5 * rng.standard_normal((h, w, 1), dtype=np.float32)


def _land_strip(rng: np.random.Generator, img: np.ndarray, top: int) -> None:
    """Distant hills or a tree line from row ``top`` down, drawn into ``img`` in place."""
    h, w = img.shape[:2]
    if top >= h:
        return
    col = jitter(rng, (60, 90, 70) if rng.random() < 0.5 else (85, 100, 120), 0.2)
    x = np.arange(w)
    bumpy = rng.random() < 0.5
    prof = (smooth_noise(rng, w, 2, 6 if bumpy else 30)[0] - 0.5) * (6 if bumpy else 10)
    ridge = np.clip(top + prof - rng.uniform(0, 4), 0, h).astype(int)
    yy = np.arange(h)[:, None]
    mask = yy >= ridge[None, x]
    shade = 0.85 + 0.3 * smooth_noise(rng, w, h, 5)
    img[mask] = (col * shade[..., None])[mask]


def _water(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    img = _bg_water(rng, w, h)
    tint = [(1.0, 1.0, 1.0), (1.15, 1.05, 0.75), (1.6, 1.1, 0.95), (0.8, 0.9, 0.85)][int(rng.integers(4))]
    return img * np.asarray(tint, np.float32) * np.float32(rng.uniform(0.85, 1.15))


def _road(rng: np.random.Generator, w: int, h: int) -> tuple[np.ndarray, int]:
    v = int(rng.integers(4))
    if v < 2:                                        # asphalt with lanes (v == 1: darker, wet)
        img = _bg_road(rng, w, h)
        if v == 1:
            img = img * np.float32(0.7) + np.float32(10)
    elif v == 2:                                     # cobbled street
        g = rng.uniform(100, 140)
        img = np.full((h, w, 3), g, np.float32) + np.array([6, 2, -4], np.float32)
        cell = int(rng.integers(5, 9))
        yy, xx = np.mgrid[0:h, 0:w]
        off = (yy // cell) % 2 * (cell // 2)
        joint = ((yy % cell) == 0) | (((xx + off) % cell) == 0)
        img[joint] *= 0.6
        img += (8 * rng.standard_normal((h, w), dtype=np.float32))[..., None]
    else:                                            # parking lot: bays
        g = rng.uniform(80, 115)
        img = np.full((h, w, 3), g, np.float32) + (10 * smooth_noise(rng, w, h, 10))[..., None]
        period = int(rng.integers(20, 34))
        y0 = int(h * rng.uniform(0.2, 0.5))
        img[y0:y0 + 2] = 225
        img[y0:, (np.arange(w) + int(rng.integers(period))) % period < 2] = 225
        img += (6 * rng.standard_normal((h, w), dtype=np.float32))[..., None]
    return img, v


def _buildings(rng: np.random.Generator, img: np.ndarray, bottom: int) -> None:
    """Facades with window grids above the road, rows ``0..bottom``, in place."""
    w = img.shape[1]
    x = int(rng.integers(-10, 0))
    while x < w:
        bw = int(rng.integers(20, 50))
        top = int(rng.uniform(0, 0.5) * bottom)
        wall = hsv(rng.random(), rng.uniform(0.05, 0.35), rng.uniform(0.45, 0.85))
        img[top:bottom, max(x, 0):x + bw] = wall
        gx, gy = int(rng.integers(6, 10)), int(rng.integers(7, 11))
        glass = hsv(0.58, 0.25, rng.uniform(0.25, 0.45))
        for yy in range(top + 3, bottom - 4, gy):
            for xx in range(x + 3, x + bw - 4, gx):
                img[yy:yy + gy // 2, max(xx, 0):max(xx + gx // 2, 0)] = glass
        x += bw


def _grass(rng: np.random.Generator, w: int, h: int) -> tuple[np.ndarray, int]:
    img = _bg_grass(rng, w, h)
    v = int(rng.integers(4))
    if v == 1:                                        # dry grass
        img = img * np.array([1.7, 1.05, 1.0], np.float32)
    elif v == 2:                                      # meadow with flowers
        n = int(w * h * rng.uniform(0.003, 0.012))
        ys, xs = rng.integers(0, h, n), rng.integers(0, w, n)
        cols = np.array([(240, 240, 235), (240, 220, 60), (220, 80, 120)], np.float32)
        img[ys, xs] = cols[rng.integers(0, 3, n)]
    elif v == 3:                                      # mown stripes
        period = int(rng.integers(14, 30))
        stripes = ((np.arange(w) + int(rng.integers(period))) % period < period // 2)
        img[:, stripes] *= 1.15
    return img, v


def _indoor(rng: np.random.Generator, w: int, h: int) -> tuple[np.ndarray, int]:
    img = _bg_indoor(rng, w, h)
    v = int(rng.integers(4))
    # the easy renderer's floor starts between 0.58 h and 0.78 h; find it back from the skirting
    rows = np.where(np.all(np.abs(img[:, :, :] - 235) < 8, axis=(1, 2)))[0]
    floor = int(rows.max()) + 1 if len(rows) else int(0.7 * h)
    if v == 1:                                         # tiled floor
        cell = int(rng.integers(8, 14))
        a, b = jitter(rng, (200, 200, 195), 0.1), jitter(rng, (90, 90, 95), 0.2)
        yy, xx = np.mgrid[0:h - floor, 0:w]
        img[floor:] = np.where((((yy // cell) + (xx // cell)) % 2 == 0)[..., None], a, b)
    elif v == 2:                                       # carpet
        col = hsv(rng.random(), rng.uniform(0.3, 0.6), rng.uniform(0.3, 0.6))
        img[floor:] = col * (0.85 + 0.3 * smooth_noise(rng, w, h - floor, 4))[..., None]
    elif v == 3 and floor > 30:                        # a window onto the sky
        ww, wh = int(rng.integers(20, 40)), int(rng.integers(16, max(17, floor - 10)))
        x0 = int(rng.integers(2, max(3, w - ww - 2)))
        y0 = int(rng.integers(3, max(4, floor - wh - 3)))
        img[y0:y0 + wh, x0:x0 + ww] = (235, 235, 230)
        img[y0 + 2:y0 + wh - 2, x0 + 2:x0 + ww - 2] = _sky(rng, ww - 4, wh - 4, 0)
    if rng.random() < 0.5:                             # a door
        dw = int(rng.integers(14, 24))
        x0 = int(rng.integers(0, max(1, w - dw)))
        top = max(0, floor - int(rng.uniform(0.55, 0.8) * h))
        img[top:floor - 3, x0:x0 + dw] = jitter(rng, (120, 85, 55), 0.25)
    return img, v


# ----------------------------------------------------------------------------- entry point

def render_background(name: str, rng: np.random.Generator, width: int, height: int,
                      variants: bool = False) -> Background:
    """The background ``name`` (one of :data:`BACKGROUNDS`) of a ``width`` x ``height`` image.

    ``variants=False``: the plain texture of the easy scenes (variant ``""``, horizon NaN);
    ``True``: a realistic variant (the module docstring) with its name and horizon."""
    if name not in BACKGROUNDS:
        raise ValueError(f"unknown background {name!r}; expected one of {BACKGROUNDS}")
    w, h = width, height
    if not variants:
        return Background(_TEXTURE[name](rng, w, h), "", float("nan"))
    if name == "sky":
        v = int(rng.integers(4))
        img = _sky(rng, w, h, v)
        hz = 1.0
        if rng.random() < 0.5:
            hz = float(rng.uniform(0.72, 0.95))
            _land_strip(rng, img, int(hz * h))
        return Background(img, ["clear", "clouds", "sunset", "overcast"][v], hz)
    if name == "indoor":
        img, v = _indoor(rng, w, h)
        return Background(img, ["wood", "tiles", "carpet", "window"][v], 0.7)
    hz = float(rng.uniform(0.0, {"water": 0.45, "road": 0.4, "grass": 0.5}[name]))
    top = int(round(hz * h))
    if name == "water":
        low, v = _water(rng, w, h - top), 0
        vname = "sea"
    elif name == "road":
        low, v = _road(rng, w, h - top)
        vname = ["asphalt", "wet", "cobbles", "parking"][v]
    else:
        low, v = _grass(rng, w, h - top)
        vname = ["lush", "dry", "meadow", "mown"][v]
    img = np.empty((h, w, 3), np.float32)
    img[top:] = low
    if top > 0:
        img[:top] = _sky(rng, w, top, int(rng.integers(4)))
        above = rng.random()
        if name == "road" and above < 0.5:
            _buildings(rng, img, top)
            vname += "+buildings"
        elif above < 0.6:
            _land_strip(rng, img[:top], int(top * rng.uniform(0.5, 0.9)))
            vname += "+shore" if name == "water" else "+hills"
    return Background(img, vname, hz)
