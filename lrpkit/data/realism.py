"""Realism presets of the bias-zoo scenes: ``easy`` (the original scenes) and ``realistic``.

A *preset* (:class:`Preset`, table :data:`PRESETS`) sets how much of PASCAL VOC 2007's nuisance
a generated scene set carries.  The planted biases (context, tag, colour, texture; see
:mod:`lrpkit.data.scenes`) and both counterfactual twins are the same in every preset.

``easy``
    The original bias-zoo scenes, byte for byte: one object (two of different classes in 20 %),
    large (about 20-80 % of the image), fully inside the image, nothing else in the scene, one
    background texture per context, no lighting change.  Kept for fast tests and
    ``configs/smoke.yaml``.

``realistic`` (the default of ``configs/default.yaml``)
    *Scale* like VOC's: an object's box covers a log-uniformly drawn share of the image, from
    1.5 % up to 80 % (single objects), 45 % (two) or 25 % (three).
    *Several objects*: 1, 2 or 3 objects (55 / 30 / 15 %); a further object repeats a class already
    in the image with probability 0.35, else its class is uniform over all six (so equal
    classes occur both ways).
    *Truncation*: 25 % of objects are placed partly outside the image (at least 45 % of the
    extent inside in each direction); VOC's ``truncated`` flag is written when more than 2 % of
    the object's (alpha) mass lies outside.
    *Occlusion* by foreground clutter (fences, bushes, posts, signs; 0 / 1 / 2 pieces with
    probabilities 0.45 / 0.35 / 0.2), placed over an object's lower or middle part; later
    objects also hide earlier ones.
    *Difficult*: an object whose visible pixels cover under 0.6 % of the image, or of which
    under 35 % is visible (truncation and occlusion together), is marked ``difficult`` and,
    as in VOC, left out of AP (an image whose only objects of a class are difficult is neither
    positive nor negative for it).
    *Distractors* that are of no class but share the classes' parts: carts (vehicle wheels),
    sheds (windows), fences (rails, leg-like posts), trees and rocks (the sheep's rounded, pale
    or bumpy outline, but smooth), benches (legs); 0-3 per image (0.3 / 0.35 / 0.25 / 0.1), drawn
    behind the objects.  Between the classes, bus and car share wheels and windows, horse and
    sheep share legs (:mod:`lrpkit.data.shapes`), so no single local part names a class.
    *Lighting and sensor*: per image exposure gain (0.6-1.35, log-uniform), contrast about a
    fixed grey (0.7-1.15), a mild white-balance cast (about 5 % per channel), vignetting, haze,
    Gaussian defocus (sigma 0.25-0.45 px on 30 % of images; sigma 0.3-0.6 on 40 % took the sheep
    texture's ROC AUC from 0.92 to 0.78 on blurred images) and sensor noise (0.5-3.5 grey levels).
    *Backgrounds* (:mod:`lrpkit.data.backgrounds`): four variants per background type (sky: clear, clouds, sunset, overcast, half
    of them over a strip of land; water, road and grass under a horizon at a varied height, with
    sky, far shore, hills, tree lines or buildings above; indoor: wood, tiles or carpet, with
    windows, doors or pictures).

Counterfactual guarantees (both presets): objects, distractors and clutter form one
foreground layer (premultiplied colour and alpha, blurred as a whole); the swapped twin
composites the *same* foreground over another background, so every pixel where the foreground
is opaque (alpha 1 after blur) is identical; the lighting, defocus and noise of an image are
pointwise or shared by both twins (the noise field is drawn once per source image).  The tag
is drawn last, so the untagged twin equals its source outside the tag box.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

from .raster import box_overlap, choice, class_palette, colour_of, draw_tilt, extent, hsv, jitter, rasterise
from .shapes import ACCENT, BODY, DARK, DISTRACTORS, GLASS, LIGHT, OCCLUDERS, SHAPES

__all__ = ["Preset", "PRESETS", "preset_names", "get_preset", "Piece", "render_objects", "render_distractors",
           "render_occluders", "sample_lighting", "blur", "apply_lighting", "noise_field"]


@dataclass(frozen=True)
class Preset:
    """The realism settings of a scene set (see the module docstring)."""

    name: str
    p_objects: tuple[float, ...] = (0.8, 0.2)           # P(1 object), P(2 objects), ...
    p_repeat_class: float = 0.0                          # a further object repeats a present class
    area: tuple[float, ...] = ()                         # per object count: (min, max) box-area share
    p_truncate: float = 0.0
    p_occluders: tuple[float, ...] = (1.0,)              # P(0), P(1), ... clutter pieces
    p_distractors: tuple[float, ...] = (1.0,)            # P(0), P(1), ... distractors
    lighting: bool = False
    variants: bool = False                               # background variants and horizons
    difficult_area: float = 0.006                        # visible pixels / image pixels below: difficult
    difficult_visible: float = 0.35                      # visible / whole object below: difficult
    truncated_share: float = 0.02                        # mass outside the image above: truncated

    def as_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


PRESETS: dict[str, Preset] = {
    "easy": Preset("easy"),
    "realistic": Preset("realistic", p_objects=(0.55, 0.30, 0.15), p_repeat_class=0.35,
                        area=((0.015, 0.80), (0.015, 0.45), (0.015, 0.25)), p_truncate=0.25,
                        p_occluders=(0.45, 0.35, 0.20), p_distractors=(0.30, 0.35, 0.25, 0.10),
                        lighting=True, variants=True),
}


def preset_names() -> tuple[str, ...]:
    return tuple(PRESETS)


def get_preset(preset: "str | Preset") -> Preset:
    """The :class:`Preset` named ``preset`` (``ValueError`` naming the choices otherwise)."""
    if isinstance(preset, Preset):
        return preset
    if not isinstance(preset, str):
        raise TypeError(f"preset must be a preset name (str), got {type(preset).__name__}")
    if preset not in PRESETS:
        raise ValueError(f"unknown scene preset {preset!r}; expected one of {tuple(PRESETS)}")
    return PRESETS[preset]


# ----------------------------------------------------------------------------- pieces

@dataclass
class Piece:
    """One rasterised shape: premultiplied colour and alpha on a canvas at ``(x0, y0)`` (may lie
    partly outside the image), with the total alpha mass of the whole shape."""

    kind: str                    # class name, distractor or occluder kind
    role: str                    # "object", "distractor" or "occluder"
    x0: int
    y0: int
    colour: np.ndarray           # (h, w, 3) premultiplied
    alpha: np.ndarray            # (h, w)
    mass: float
    info: dict

    def in_image(self, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
        """(colour (H, W, 3), alpha (H, W)) cropped / padded to the image."""
        C = np.zeros((height, width, 3), np.float32)
        A = np.zeros((height, width), np.float32)
        h, w = self.alpha.shape
        xa, ya = max(self.x0, 0), max(self.y0, 0)
        xb, yb = min(self.x0 + w, width), min(self.y0 + h, height)
        if xb > xa and yb > ya:
            C[ya:yb, xa:xb] = self.colour[ya - self.y0:yb - self.y0, xa - self.x0:xb - self.x0]
            A[ya:yb, xa:xb] = self.alpha[ya - self.y0:yb - self.y0, xa - self.x0:xb - self.x0]
        return C, A


# ----------------------------------------------------------------------------- objects

def render_objects(classes: Sequence[str], preset: Preset, rng: np.random.Generator,
                   width: int, height: int) -> list[Piece]:
    """The objects of a realistic scene (drawing order = ``classes``)."""
    lo_a, hi_a = preset.area[min(len(classes), len(preset.area)) - 1]
    pieces: list[Piece] = []
    boxes: list[tuple[float, float, float, float]] = []
    for name in classes:
        parts = SHAPES[name](rng)
        mirror = bool(rng.random() < 0.5)
        tilt = draw_tilt(rng, name)
        ext = extent(parts, mirror, tilt)
        share = float(np.exp(rng.uniform(np.log(lo_a), np.log(hi_a))))
        trunc = bool(rng.random() < preset.p_truncate)
        s = np.sqrt(share * width * height / (ext[0] * ext[1]))
        lim = 1.25 if trunc else 0.97
        s = min(s, lim * width / ext[0], lim * height / ext[1])
        ow, oh = ext * s
        cands = []
        for _ in range(8):
            if trunc:   # at least 45 % of the extent inside in each direction, some part outside
                ox = rng.uniform(-0.55 * ow, width - 0.45 * ow)
                oy = rng.uniform(-0.3 * oh, height - 0.45 * oh)
            else:
                ox = rng.uniform(1.0, max(1.0, width - 1.0 - ow))
                oy = rng.uniform(1.0, max(1.0, height - 1.0 - oh))
            cands.append((ox, oy))
        if boxes:
            cands.sort(key=lambda c: sum(box_overlap((c[0], c[1], c[0] + ow, c[1] + oh), b) for b in boxes))
        ox, oy = cands[0]
        boxes.append((ox, oy, ox + ow, oy + oh))
        pal = class_palette(name, rng)
        x0, y0, col, alpha = rasterise(parts, mirror, tilt, float(s), (ox, oy), pal, rng, wool=name == "sheep")
        hexcol, hue = colour_of(pal[BODY])
        info = {"colour": hexcol, "hue": hue, "pose": "Left" if mirror else "Right"}
        pieces.append(Piece(name, "object", x0, y0, col, alpha, float(alpha.sum()), info))
    return pieces


# ----------------------------------------------------------------------------- distractors, clutter

def _muted(rng: np.random.Generator) -> np.ndarray:
    return hsv(rng.random(), rng.uniform(0.1, 0.45), rng.uniform(0.35, 0.75))


def _clutter_palette(kind: str, rng: np.random.Generator) -> dict[int, np.ndarray]:
    glass, dark, light = hsv(0.58, 0.25, 0.35), np.array([30, 28, 28], np.float32), \
        np.array([225, 225, 215], np.float32)
    wood = jitter(rng, (125, 88, 52), 0.2)
    if kind in ("cart", "bench"):
        body = wood if rng.random() < 0.6 else _muted(rng)
        accent = body * 0.8
        if kind == "bench":
            dark = body * 0.7
    elif kind == "shed":
        body, accent = _muted(rng), jitter(rng, (110, 75, 50), 0.2)
        dark = jitter(rng, (120, 50, 40), 0.3) if rng.random() < 0.5 else jitter(rng, (70, 70, 75), 0.2)
    elif kind == "fence":
        body = [wood, jitter(rng, (225, 225, 218), 0.05), jitter(rng, (120, 122, 125), 0.15)][int(rng.integers(3))]
        accent = body
    elif kind in ("tree", "bush"):
        body = hsv(rng.uniform(0.2, 0.33), rng.uniform(0.45, 0.75), rng.uniform(0.25, 0.5))
        if kind == "tree" and rng.random() < 0.2:
            body = hsv(rng.uniform(0.05, 0.12), 0.7, 0.6)         # autumn
        dark, accent = jitter(rng, (80, 58, 40), 0.2), body
    elif kind == "rock":
        g = rng.uniform(110, 200)
        body = jitter(rng, (g, g * 0.97, g * 0.92), 0.05)
        dark, accent = body * 0.55, body
    elif kind == "post":
        body = jitter(rng, (95, 95, 100), 0.3)
        accent = body
    elif kind == "sign":
        body = np.array([(200, 35, 35), (30, 70, 170), (30, 125, 65), (235, 235, 230)][int(rng.integers(4))],
                        np.float32)
        light = np.array([240, 240, 235], np.float32) if body.mean() < 200 else np.array([200, 40, 40], np.float32)
        dark, accent = jitter(rng, (110, 110, 115), 0.2), body
    else:
        raise ValueError(f"unknown clutter kind {kind!r}")
    return {BODY: np.clip(body, 0, 255), DARK: dark, GLASS: glass, ACCENT: np.clip(accent, 0, 255), LIGHT: light}


def render_distractors(rng: np.random.Generator, preset: Preset, width: int, height: int) -> list[Piece]:
    """Distractors (behind the objects): 0-3 carts, sheds, fences, trees, rocks, benches."""
    kinds = sorted(DISTRACTORS)
    out = []
    for _ in range(choice(rng, preset.p_distractors)):
        kind = kinds[int(rng.integers(len(kinds)))]
        parts = DISTRACTORS[kind](rng)
        mirror = bool(rng.random() < 0.5)
        ext = extent(parts, mirror, 0.0)
        share = float(np.exp(rng.uniform(np.log(0.01), np.log(0.2))))
        s = min(np.sqrt(share * width * height / (ext[0] * ext[1])), 1.1 * width / ext[0], 1.1 * height / ext[1])
        ow, oh = ext * s
        ox, oy = rng.uniform(-0.3 * ow, width - 0.7 * ow), rng.uniform(-0.2 * oh, height - 0.8 * oh)
        x0, y0, col, alpha = rasterise(parts, mirror, 0.0, float(s), (ox, oy), _clutter_palette(kind, rng), rng)
        out.append(Piece(kind, "distractor", x0, y0, col, alpha, float(alpha.sum()), {}))
    return out


def render_occluders(rng: np.random.Generator, preset: Preset, objects: Sequence[Piece],
                     width: int, height: int) -> list[Piece]:
    """Foreground clutter (in front of the objects), each placed over one object's lower part."""
    kinds = sorted(OCCLUDERS)
    out = []
    for _ in range(choice(rng, preset.p_occluders)):
        kind = kinds[int(rng.integers(len(kinds)))]
        t = objects[int(rng.integers(len(objects)))]
        h, w = t.alpha.shape
        bx0, by0, bw, bh = t.x0, t.y0, w, h
        parts = OCCLUDERS[kind](rng)
        ext = extent(parts, False, 0.0)
        if kind == "fence":       # stretched across the lower 30-60 % of the object
            fh = bh * rng.uniform(0.3, 0.6)
            fw = bw * rng.uniform(0.6, 1.5)
            size: Any = (fw, fh)
            ox = bx0 + bw / 2 - fw / 2 + rng.normal(0, 0.2) * bw
            oy = by0 + bh - fh + rng.uniform(-0.05, 0.15) * bh
        elif kind == "bush":
            bw2 = bw * rng.uniform(0.4, 1.0)
            size = bw2 / ext[0]
            ox = bx0 + rng.uniform(-0.2, 1.0) * bw - bw2 / 2 + bw2 * 0.2
            oy = by0 + bh - ext[1] * size * rng.uniform(0.7, 1.1)
        elif kind == "post":
            ph = bh * rng.uniform(1.0, 2.5)
            size = ph / ext[1]
            ox = bx0 + rng.uniform(0.1, 0.9) * bw
            oy = by0 + bh + rng.uniform(0.0, 0.15) * bh - ph
        else:                     # sign
            sw = bw * rng.uniform(0.25, 0.6)
            size = sw / ext[0]
            ox = bx0 + rng.uniform(0.0, 1.0) * bw - sw / 2
            oy = by0 + bh + rng.uniform(0.0, 0.2) * bh - ext[1] * size
        x0, y0, col, alpha = rasterise(parts, False, 0.0, size, (ox, oy), _clutter_palette(kind, rng), rng)
        out.append(Piece(kind, "occluder", x0, y0, col, alpha, float(alpha.sum()), {}))
    return out


# ----------------------------------------------------------------------------- lighting and sensor

def sample_lighting(rng: np.random.Generator) -> dict[str, Any]:
    """Per-image photometric parameters (pointwise, plus a defocus blur and a noise level)."""
    return {"gain": float(np.exp(rng.uniform(np.log(0.6), np.log(1.35)))),
            "contrast": float(rng.uniform(0.7, 1.15)),
            "cast": np.exp(rng.normal(0, 0.05, 3)).astype(np.float32),
            "vignette": float(rng.uniform(0.0, 0.3)),
            "haze": float(rng.uniform(0.0, 0.2)) if rng.random() < 0.3 else 0.0,
            # mild on purpose: a stronger defocus erases the sheep's wool (the texture bias)
            "blur": float(rng.uniform(0.25, 0.45)) if rng.random() < 0.3 else 0.0,
            "noise": float(rng.uniform(0.5, 3.5))}


def blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian defocus of an (H, W[, C]) float image (identity for ``sigma == 0``)."""
    if sigma <= 0:
        return img
    from scipy import ndimage

    sig = (sigma, sigma, 0) if img.ndim == 3 else (sigma, sigma)
    return ndimage.gaussian_filter(img, sig, mode="nearest", truncate=3.0)


def apply_lighting(img: np.ndarray, light: dict[str, Any], noise: np.ndarray) -> np.ndarray:
    """Pointwise exposure, white balance, contrast about grey 118, vignetting and haze; then the
    (shared) noise field."""
    h, w = img.shape[:2]
    out = img * (light["gain"] * light["cast"])
    out = (out - 118.0) * light["contrast"] + 118.0
    if light["vignette"] > 0:
        yy = np.linspace(-1, 1, h, dtype=np.float32)[:, None]
        xx = np.linspace(-1, 1, w, dtype=np.float32)[None, :]
        out = out * (1 - light["vignette"] * 0.5 * (xx ** 2 + yy ** 2))[..., None]
    if light["haze"] > 0:
        out = out * (1 - light["haze"]) + np.float32(200 * light["haze"])
    return (out + noise).astype(np.float32)


def noise_field(rng: np.random.Generator, sigma: float, height: int, width: int) -> np.ndarray:
    """Sensor noise: luminance (``sigma``) plus weaker chroma noise (``sigma / 2`` per channel)."""
    lum = rng.standard_normal((height, width, 1), dtype=np.float32) * np.float32(sigma)
    chroma = rng.standard_normal((height, width, 3), dtype=np.float32) * np.float32(sigma / 2)
    return lum + chroma
