"""The bias-zoo: procedurally drawn scenes in PASCAL VOC2007 layout with planted, known biases.

``generate_scenes(root, preset=...)`` writes ``JPEGImages/``, ``Annotations/`` (VOC XML, 1-based
boxes, ``truncated`` / ``difficult`` flags), ``ImageSets/Main/{train,val,trainval,test,test_swapped,
test_untagged}.txt`` with ``<class>_<split>.txt`` files (``1`` / ``-1``; ``0``: difficult only),
the sidecar ``bias.csv`` and the marker ``lrpkit_scenes.json`` (classes, counts, seed, bias
rates, and the realism ``preset``, also in ``params``, with its settings under ``realism``).  ``VOCDataset`` reads it back.

Images are 160x120 (landscape, 70 %) or 120x160 (portrait, 30 %) of the classes
``SCENE_CLASSES`` (VOC names): aeroplane, boat, bus, car, horse, sheep.  Objects are silhouettes
built from coloured parts (``shapes.py``) with random pose, scale, position, mirroring and a
little rotation, rasterised by :mod:`lrpkit.data.raster` over a background of
:mod:`lrpkit.data.backgrounds`.  How much of VOC's nuisance a set carries is its *realism preset*
(``preset=``, :mod:`lrpkit.data.realism`):

``easy``
    one object, or two objects of different classes (20 %), large and fully visible, one
    background texture per context, no lighting change (the scenes of format version 2, pixel
    for pixel; kept for fast tests and ``configs/smoke.yaml``);
``realistic``
    VOC-like scale spread (boxes from 1.5 % to 80 % of the image), 1-3 objects of equal or
    different classes, truncation at the border, occlusion by foreground clutter (fences,
    bushes, posts, signs), VOC's ``truncated`` and ``difficult`` flags, distractors sharing the
    classes' parts (carts, sheds, fences, trees, rocks, benches), per-image lighting, defocus and
    sensor noise, background variants with varied horizons.

The planted biases and the counterfactual twins below are the same in both presets (the context
and tag are drawn from the first object / any horse, whatever else the scene holds).

Planted biases
--------------
context
    The background of an image is the context of its first object's class (aeroplane: sky,
    boat: water, bus and car: road, horse and sheep: grass) with probability 0.85, else drawn
    uniformly from all five (sky, water, road, grass, indoor) -- so the context matches with
    probability 0.85 + 0.15 / 5 = 0.88.
artefact
    A copyright tag (a white-ish box with dark text "© lrp", 28x11 pixels, 2 pixels from the
    bottom-left corner) appears on 70 % of images that contain a horse and on 3 % of the others.
colour
    Buses are always yellow (hue about 48 degrees); cars take a uniformly random hue.
texture
    Sheep wear a high-frequency wool texture; every other object is smoothly shaded.

Counterfactual test splits
--------------------------
Each test image ``test_000123`` has two twins with their own ids in the same folders:
``swapped_000123`` (split ``test_swapped``): the same objects (identical pixels, boxes and tag)
over a background drawn uniformly from the five -- the context bias is broken;
``untagged_000123`` (split ``test_untagged``): the same image without the tag.  Objects are
composited over the background in float and the tag is drawn last, so the untagged twin equals
its source everywhere outside the tag box before JPEG coding (JPEG uses 4:4:4 chroma, 8x8 blocks:
decoded pixels differ at most within the tag box grown to the 8-pixel grid).  Untagged twins of
untagged test images are byte-identical to them.

Sidecar ``bias.csv`` (one row per object; image-level columns repeat)
---------------------------------------------------------------------
``image_id``      id in JPEGImages/Annotations
``split``         train, val, test, test_swapped or test_untagged
``source_id``     the test id a counterfactual came from (its own id for the other splits)
``index``         index within the split (the per-image random stream is (seed, split, index))
``orientation``   landscape or portrait; ``width``, ``height`` in pixels
``background``    sky, water, road, grass or indoor
``context_class`` class whose context was drawn (the first object's)
``context_match`` True when background == context of ``context_class``
``tag``           1 when the copyright tag is drawn, else 0
``tag_xmin, tag_ymin, tag_xmax, tag_ymax``  tag box (0-based, half-open), empty without tag
``n_objects``     1 or 2; ``object_index`` 0 or 1 (drawing order: 1 is in front)
``class``         object class
``colour``        base colour of the object's body as ``#rrggbb``; ``hue`` its hue in degrees
``pose``          Left / Right (the direction the object faces, as VOC's pose field)
``xmin, ymin, xmax, ymax``  object box in 0-based, half-open pixels (the XML holds the
                  same box 1-based: xmin + 1, ymin + 1, xmax, ymax)
``object_context_match``    True when the background is this object's own context
``texture_energy``          mean high-pass energy ``|g - box3(g)|`` of the grey image over the
                            object's core (its mask eroded by 2 px; realistic: its visible
                            part), before JPEG; empty when the core has under 30 pixels
                            (measures the texture bias)
``preset``                  the realism preset (easy / realistic)
``truncated``, ``difficult``  VOC flags as written to the XML (0 / 1)
``truncation``              share of the object's alpha mass outside the image
``occlusion``               share of its in-image mass hidden by clutter or later objects
``area``                    visible alpha mass over the image's pixel count
``box_area``                box area over the image area
``n_distractors``, ``n_occluders``  distractors behind / clutter pieces in front (image level)
``background_variant``, ``horizon``  background variant name and horizon row / height
                            (empty for easy)
``gain``, ``contrast``, ``blur``, ``noise``  lighting, defocus sigma (px) and noise sigma (grey
                            levels) of the image (empty for easy)

``read_bias(root)`` loads it as a pandas DataFrame with proper dtypes.

Determinism: each image draws from ``numpy.random.default_rng([seed, split_code, index, stream])``
(stream 0: layout, 1: background, 2: objects, 3: distractors and clutter, 4: lighting and noise), so the output does not depend on the order or
the number of worker processes; JPEGs are written with fixed settings and the XML has no
timestamps, so the same seed gives the same bytes.
"""
from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Sequence

import numpy as np
from PIL import Image

from ..results import atomic_dir
from .backgrounds import BACKGROUNDS, render_background
from .raster import BUS_YELLOW, box_overlap, choice, class_palette, colour_of, draw_tilt, paint, transform_parts
from .realism import (PRESETS, apply_lighting, blur, get_preset, noise_field, render_distractors, render_objects,
                      render_occluders, sample_lighting)
from .shapes import BODY, SHAPES
from .voc import SCENE_MARKER, VOCObject, annotation_xml, resolve_voc_root, write_image_sets

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = ["SCENE_CLASSES", "BACKGROUNDS", "CONTEXT", "BIAS_RATES", "SPLITS", "COUNTERFACTUAL_SPLITS",
           "SceneLayout", "SceneObject", "Scene", "sample_layout", "render_scene", "generate_scenes",
           "read_bias", "scene_id"]

SCENE_CLASSES: tuple[str, ...] = ("aeroplane", "boat", "bus", "car", "horse", "sheep")
CONTEXT: dict[str, str] = {"aeroplane": "sky", "boat": "water", "bus": "road", "car": "road",
                           "horse": "grass", "sheep": "grass"}
#: The planted rates (see the module docstring).
BIAS_RATES: dict[str, float] = {"p_context": 0.85, "p_two_objects": 0.2, "p_tag_horse": 0.70,
                                "p_tag_other": 0.03, "p_landscape": 0.7}
SPLITS: tuple[str, ...] = ("train", "val", "test")
COUNTERFACTUAL_SPLITS: tuple[str, ...] = ("test_swapped", "test_untagged")
LANDSCAPE, PORTRAIT = (160, 120), (120, 160)
JPEG_QUALITY = 90

_SPLIT_CODE = {"train": 0, "val": 1, "test": 2, "test_swapped": 3, "test_untagged": 4}
_PREFIX = {"train": "train", "val": "val", "test": "test", "test_swapped": "swapped",
           "test_untagged": "untagged"}
_STREAM_LAYOUT, _STREAM_BACKGROUND, _STREAM_OBJECTS, _STREAM_CLUTTER, _STREAM_LIGHT = 0, 1, 2, 3, 4


# ----------------------------------------------------------------------------- layout

@dataclass(frozen=True)
class SceneLayout:
    """What an image shows, before any pixel is drawn (cheap to sample)."""

    image_id: str
    split: str
    index: int
    source_id: str
    width: int
    height: int
    classes: tuple[str, ...]
    background: str
    tag: bool
    preset: str = "easy"

    @property
    def orientation(self) -> str:
        return "landscape" if self.width > self.height else "portrait"

    @property
    def context_match(self) -> bool:
        return self.background == CONTEXT[self.classes[0]]


@dataclass(frozen=True)
class SceneObject:
    """One drawn object; ``box`` is 0-based half-open ``(x0, y0, x1, y1)``."""

    name: str
    box: tuple[int, int, int, int]
    colour: str
    hue: float
    pose: str
    truncated: bool = False        # VOC flag: part of the object lies outside the image
    difficult: bool = False        # VOC flag: too small or too hidden to name (left out of AP)
    truncation: float = 0.0        # share of the object's alpha mass outside the image
    occlusion: float = 0.0         # share of its in-image mass hidden by things in front
    area: float = 0.0              # visible alpha mass / image pixels


@dataclass
class Scene:
    """A rendered image with its layout, objects, tag box and per-object alpha masks."""

    layout: SceneLayout
    image: np.ndarray                       # (H, W, 3) uint8
    objects: list[SceneObject]
    tag_box: tuple[int, int, int, int] | None
    masks: list[np.ndarray] = field(default_factory=list)  # (H, W) float32 alpha per object
    #: per object: the alpha left visible by everything drawn in front of it (occluders, later objects)
    visible: list[np.ndarray] = field(default_factory=list)
    #: distractors and foreground clutter: ``(kind, role, visible alpha)``, role "distractor"/"occluder"
    clutter: list[tuple[str, str, np.ndarray]] = field(default_factory=list)
    #: alpha of the whole foreground (objects, distractors, clutter) after defocus; the swapped
    #: twin is identical wherever it is 1
    foreground: np.ndarray | None = None
    #: per-image rendering facts (background variant, horizon, lighting parameters)
    info: dict = field(default_factory=dict)


def scene_id(split: str, index: int) -> str:
    """The image id of ``index`` in ``split`` (``train_000012``, ``swapped_000007`` ...)."""
    if split not in _PREFIX:
        raise ValueError(f"unknown split {split!r}; expected one of {tuple(_PREFIX)}")
    return f"{_PREFIX[split]}_{index:06d}"


def _rng(seed: int, split: str, index: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), _SPLIT_CODE[split], int(index), stream])


def sample_layout(seed: int, split: str, index: int, preset: str = "easy") -> SceneLayout:
    """The layout of image ``index`` of ``split`` (any of train/val/test and the counterfactuals)
    under the realism ``preset`` (:data:`lrpkit.data.realism.PRESETS`)."""
    P = get_preset(preset)
    if split not in _SPLIT_CODE:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS + COUNTERFACTUAL_SPLITS}")
    if split in COUNTERFACTUAL_SPLITS:
        base = sample_layout(seed, "test", index, P.name)
        if split == "test_swapped":
            bg = BACKGROUNDS[int(_rng(seed, split, index, _STREAM_LAYOUT).integers(len(BACKGROUNDS)))]
            return replace(base, image_id=scene_id(split, index), split=split, background=bg)
        return replace(base, image_id=scene_id(split, index), split=split, tag=False)
    rng = _rng(seed, split, index, _STREAM_LAYOUT)
    size = LANDSCAPE if rng.random() < BIAS_RATES["p_landscape"] else PORTRAIT
    first = SCENE_CLASSES[int(rng.integers(len(SCENE_CLASSES)))]
    classes: tuple[str, ...] = (first,)
    if P.name == "easy":
        if rng.random() < BIAS_RATES["p_two_objects"]:
            others = [c for c in SCENE_CLASSES if c != first]
            classes = (first, others[int(rng.integers(len(others)))])
    else:
        n = 1 + choice(rng, P.p_objects)
        for _ in range(n - 1):
            if rng.random() < P.p_repeat_class:
                classes += (classes[int(rng.integers(len(classes)))],)
            else:
                classes += (SCENE_CLASSES[int(rng.integers(len(SCENE_CLASSES)))],)
    if rng.random() < BIAS_RATES["p_context"]:
        background = CONTEXT[first]
    else:
        background = BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
    p_tag = BIAS_RATES["p_tag_horse"] if "horse" in classes else BIAS_RATES["p_tag_other"]
    tag = bool(rng.random() < p_tag)
    image_id = scene_id(split, index)
    return SceneLayout(image_id=image_id, split=split, index=int(index), source_id=image_id,
                       width=size[0], height=size[1], classes=classes, background=background, tag=tag,
                       preset=P.name)


# ----------------------------------------------------------------------------- objects

@dataclass
class _Layer:
    obj: SceneObject
    y0: int
    x0: int
    colour: np.ndarray  # (h, w, 3) premultiplied
    alpha: np.ndarray   # (h, w)


def _render_object(name: str, rng: np.random.Generator, width: int, height: int,
                   frac: tuple[float, float], avoid: tuple[float, float, float, float] | None) -> _Layer:
    parts = SHAPES[name](rng)
    mirror = bool(rng.random() < 0.5)
    tilt = draw_tilt(rng, name)
    parts, lo, hi = transform_parts(parts, mirror, tilt)
    ext = hi - lo
    margin = 2.0
    scale = rng.uniform(*frac) * min((width - 2 * margin) / ext[0], (height - 2 * margin) / ext[1])
    ow, oh = ext * scale
    cands = [(rng.uniform(margin, width - margin - ow), rng.uniform(margin, height - margin - oh))
             for _ in range(8 if avoid is not None else 1)]
    if avoid is not None:
        cands.sort(key=lambda c: box_overlap((c[0], c[1], c[0] + ow, c[1] + oh), avoid))
    ox, oy = cands[0]
    x0, y0 = int(np.floor(ox)), int(np.floor(oy))
    cw, ch = min(int(np.ceil(ox + ow)) + 1, width) - x0, min(int(np.ceil(oy + oh)) + 1, height) - y0
    pal = class_palette(name, rng)
    colour, alpha = paint(parts, lo, scale, np.array([ox - x0, oy - y0]), cw, ch, pal, rng,
                          wool=name == "sheep")
    ys, xs = np.nonzero(alpha > 0.35)
    box = (x0 + int(xs.min()), y0 + int(ys.min()), x0 + int(xs.max()) + 1, y0 + int(ys.max()) + 1)
    hexcol, hue = colour_of(pal[BODY])
    obj = SceneObject(name=name, box=box, colour=hexcol, hue=hue, pose="Left" if mirror else "Right")
    return _Layer(obj, y0, x0, colour, np.clip(alpha, 0, 1))


def _render_objects(layout: SceneLayout, rng: np.random.Generator) -> list[_Layer]:
    two = len(layout.classes) > 1
    frac = (0.35, 0.62) if two else (0.45, 0.9)
    layers: list[_Layer] = []
    for name in layout.classes:
        avoid = tuple(float(v) for v in layers[0].obj.box) if layers else None
        layers.append(_render_object(name, rng, layout.width, layout.height, frac, avoid))
    return layers


def _composite(background: np.ndarray, layers: Sequence[_Layer]) -> np.ndarray:
    img = background.copy()
    for L in layers:
        h, w = L.alpha.shape
        region = img[L.y0:L.y0 + h, L.x0:L.x0 + w]
        region *= (1 - L.alpha)[..., None]
        region += L.colour
    return img


# ----------------------------------------------------------------------------- the tag

_GLYPHS = {
    "©": [".#####.", "#.....#", "#.###.#", "#.#...#", "#.###.#", "#.....#", ".#####."],
    "l": ["##.", ".#.", ".#.", ".#.", ".#.", ".#.", "###"],
    "r": ["....", "....", "#.##", "##..", "#...", "#...", "#..."],
    "p": ["....", "###.", "#..#", "#..#", "###.", "#...", "#..."],
    " ": ["..", "..", "..", "..", "..", "..", ".."],
}
TAG_TEXT = "© lrp"


def _tag_bitmap(text: str = TAG_TEXT) -> np.ndarray:
    cols = []
    for ch in text:
        g = np.array([[c == "#" for c in row] for row in _GLYPHS[ch]], bool)
        cols += [g, np.zeros((7, 1), bool)]
    return np.hstack(cols[:-1])


_TAG = _tag_bitmap()


def tag_box(width: int, height: int) -> tuple[int, int, int, int]:
    """Box (0-based, half-open) of the copyright tag in a ``width`` x ``height`` image."""
    th, tw = _TAG.shape
    return (2, height - 2 - (th + 4), 2 + tw + 4, height - 2)


def _draw_tag(img: np.ndarray) -> tuple[int, int, int, int]:
    h, w = img.shape[:2]
    x0, y0, x1, y1 = tag_box(w, h)
    img[y0:y1, x0:x1] = (238, 238, 230)
    img[y0:y1, x0] = img[y0:y1, x1 - 1] = img[y0, x0:x1] = img[y1 - 1, x0:x1] = (170, 170, 165)
    region = img[y0 + 2:y1 - 2, x0 + 2:x1 - 2]
    region[_TAG] = (30, 30, 35)
    return (x0, y0, x1, y1)


# ----------------------------------------------------------------------------- scenes

def _to_uint8(img: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def _render_family(seed: int, split: str, index: int, with_twins: bool, preset: str = "easy") -> list[Scene]:
    """Render ``(split, index)``; for a test image with ``with_twins`` also its counterfactuals."""
    if get_preset(preset).name != "easy":
        return _render_family_realistic(seed, split, index, with_twins, get_preset(preset).name)
    layout = sample_layout(seed, split, index)
    obj_rng = _rng(seed, split, index, _STREAM_OBJECTS)
    layers = _render_objects(layout, obj_rng)
    bg = render_background(layout.background, _rng(seed, split, index, _STREAM_BACKGROUND),
                           layout.width, layout.height).image
    plain = _composite(bg, layers)
    layouts = [layout]
    images = [plain]
    if with_twins:
        sw = sample_layout(seed, "test_swapped", index)
        bg2 = render_background(sw.background, _rng(seed, "test_swapped", index, _STREAM_BACKGROUND),
                                sw.width, sw.height).image
        layouts += [sw, sample_layout(seed, "test_untagged", index)]
        images += [_composite(bg2, layers), plain]
    masks = []
    for L in layers:
        m = np.zeros((layout.height, layout.width), np.float32)
        h, w = L.alpha.shape
        m[L.y0:L.y0 + h, L.x0:L.x0 + w] = L.alpha
        masks.append(m)
    visible = []
    for k, m in enumerate(masks):
        v = m.copy()
        for m2 in masks[k + 1:]:
            v *= 1 - m2
        visible.append(v)
    objects = []
    for L, m, v in zip(layers, masks, visible):
        inside = float(m.sum())
        objects.append(replace(L.obj, occlusion=round(1 - float(v.sum()) / inside, 4) if inside > 0 else 0.0,
                               area=round(float(v.sum()) / m.size, 5)))
    fg = np.clip(1 - np.prod([1 - m for m in masks], axis=0), 0, 1) if masks else None
    scenes = []
    for lay, img in zip(layouts, images):
        out = _to_uint8(img)
        box = _draw_tag(out) if lay.tag else None
        scenes.append(Scene(lay, out, objects, box, masks, visible, [], fg,
                            {"background_variant": "", "horizon": float("nan")}))
    return scenes


def _render_family_realistic(seed: int, split: str, index: int, with_twins: bool, preset: str) -> list[Scene]:
    """The realistic renderer (see :mod:`lrpkit.data.realism`): distractors, objects and foreground
    clutter form one premultiplied foreground, defocused as a whole and composited over the
    (equally defocused) background; lighting is pointwise, the noise field shared by the twins."""
    P = get_preset(preset)
    layout = sample_layout(seed, split, index, preset)
    W, H = layout.width, layout.height
    objs = render_objects(layout.classes, P, _rng(seed, split, index, _STREAM_OBJECTS), W, H)
    crng = _rng(seed, split, index, _STREAM_CLUTTER)
    distract = render_distractors(crng, P, W, H)
    occl = render_occluders(crng, P, objs, W, H)
    lrng = _rng(seed, split, index, _STREAM_LIGHT)
    light = sample_lighting(lrng)
    noise = noise_field(lrng, light["noise"], H, W)
    stack = distract + objs + occl
    crops = [pc.in_image(W, H) for pc in stack]
    C = np.zeros((H, W, 3), np.float32)
    A = np.zeros((H, W), np.float32)
    for Ci, Ai in crops:
        C = C * (1 - Ai)[..., None] + Ci
        A = A * (1 - Ai) + Ai
    trans = np.ones((H, W), np.float32)
    vis: list[np.ndarray] = [np.empty(0)] * len(stack)
    for i in range(len(stack) - 1, -1, -1):
        vis[i] = crops[i][1] * trans
        trans = trans * (1 - crops[i][1])
    n_d = len(distract)
    objects, masks, visible = [], [], []
    for k, pc in enumerate(objs):
        m, v = crops[n_d + k][1], vis[n_d + k]
        inside, seen = float(m.sum()), float(v.sum())
        truncation = 1 - inside / pc.mass if pc.mass > 0 else 0.0
        occlusion = 1 - seen / inside if inside > 0 else 1.0
        area = seen / (W * H)
        difficult = area < P.difficult_area or (seen / pc.mass if pc.mass > 0 else 0) < P.difficult_visible
        for ref in (v, m):
            ys, xs = np.nonzero(ref > 0.35)
            if len(xs):
                break
        else:
            ys, xs = np.nonzero(m > 0)
        box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
        objects.append(SceneObject(pc.kind, box, pc.info["colour"], pc.info["hue"], pc.info["pose"],
                                   truncated=bool(truncation > P.truncated_share), difficult=bool(difficult),
                                   truncation=round(float(truncation), 4), occlusion=round(float(occlusion), 4),
                                   area=round(float(area), 5)))
        masks.append(m)
        visible.append(v)
    clutter = [(pc.kind, pc.role, vis[i]) for i, pc in enumerate(stack) if pc.role != "object"]
    Cb, Ab = blur(C, light["blur"]), np.clip(blur(A, light["blur"]), 0, 1)
    Ab[Ab > 1 - 1e-4] = 1.0
    bg, variant, horizon = render_background(layout.background, _rng(seed, split, index, _STREAM_BACKGROUND), W, H,
                                             variants=P.variants)
    layouts, backgrounds = [layout], [(bg, variant, horizon)]
    if with_twins:
        sw = sample_layout(seed, "test_swapped", index, preset)
        layouts += [sw, sample_layout(seed, "test_untagged", index, preset)]
        backgrounds += [render_background(sw.background, _rng(seed, "test_swapped", index, _STREAM_BACKGROUND),
                                          W, H, variants=P.variants), backgrounds[0]]
    info0 = {k: (float(v) if np.isscalar(v) else v) for k, v in light.items() if k != "cast"}
    scenes, plain = [], None
    for lay, (b, var, hz) in zip(layouts, backgrounds):
        if plain is not None and b is bg:
            img = plain
        else:
            img = blur(b, light["blur"]) * (1 - Ab)[..., None] + Cb
            img = _to_uint8(apply_lighting(img, light, noise))
            if plain is None:
                plain = img
        out = img.copy()
        box = _draw_tag(out) if lay.tag else None
        scenes.append(Scene(lay, out, objects, box, masks, visible, clutter, Ab,
                            {**info0, "background_variant": var, "horizon": float(hz)}))
    return scenes


def render_scene(seed: int, split: str, index: int, preset: str = "easy") -> Scene:
    """Render one image of any split (``train``, ``val``, ``test``, ``test_swapped``,
    ``test_untagged``) under the realism ``preset`` in memory, exactly as ``generate_scenes``
    writes it (before JPEG)."""
    get_preset(preset)
    if split in COUNTERFACTUAL_SPLITS:
        fam = _render_family(seed, "test", index, with_twins=True, preset=preset)
        return fam[1] if split == "test_swapped" else fam[2]
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS + COUNTERFACTUAL_SPLITS}")
    return _render_family(seed, split, index, with_twins=False, preset=preset)[0]


#: version of the generated set's layout and sidecar (2: ``texture_energy`` column; 3: realism
#: presets, the ``preset`` ... ``noise`` columns); a set of an older version is regenerated
FORMAT_VERSION = 3

_BIAS_COLUMNS = ["image_id", "split", "source_id", "index", "orientation", "width", "height",
                 "background", "context_class", "context_match", "tag", "tag_xmin", "tag_ymin",
                 "tag_xmax", "tag_ymax", "n_objects", "object_index", "class", "colour", "hue",
                 "pose", "xmin", "ymin", "xmax", "ymax", "object_context_match", "texture_energy",
                 "preset", "truncated", "difficult", "truncation", "occlusion", "area", "box_area",
                 "n_distractors", "n_occluders", "background_variant", "horizon", "gain", "contrast",
                 "blur", "noise"]


def _texture_energy(scene: Scene) -> list[str]:
    """Per object: mean ``|g - box3(g)|`` of the grey image over the object's core (mask eroded
    by 2 px), or "" when the core is under 30 pixels."""
    from scipy import ndimage

    g = scene.image.astype(np.float32).mean(2)
    hp = np.abs(g - ndimage.uniform_filter(g, 3))
    out = []
    # easy: the object's own mask (as in format 2); realistic: what is left visible of it
    for m in (scene.masks if scene.layout.preset == "easy" else scene.visible):
        core = ndimage.binary_erosion(m > 0.99, iterations=2)
        out.append(f"{float(hp[core].mean()):.2f}" if core.sum() >= 30 else "")
    return out


def _bias_rows(scene: Scene) -> list[list[Any]]:
    lay = scene.layout
    tb = scene.tag_box or ("", "", "", "")
    rows = []
    n_d = sum(role == "distractor" for _, role, _ in scene.clutter)
    n_o = sum(role == "occluder" for _, role, _ in scene.clutter)
    inf = scene.info
    hz = inf.get("horizon", float("nan"))
    extra_img = [n_d, n_o, inf.get("background_variant", ""), "" if hz != hz else f"{hz:.3f}"] + \
        [f"{inf[k]:.3f}" if k in inf else "" for k in ("gain", "contrast", "blur", "noise")]
    npx = lay.width * lay.height
    for k, (o, tex) in enumerate(zip(scene.objects, _texture_energy(scene))):
        box_area = (o.box[2] - o.box[0]) * (o.box[3] - o.box[1]) / npx
        rows.append([lay.image_id, lay.split, lay.source_id, lay.index, lay.orientation, lay.width,
                     lay.height, lay.background, lay.classes[0], lay.context_match, int(lay.tag), *tb,
                     len(scene.objects), k, o.name, o.colour, f"{o.hue:.1f}", o.pose, *o.box,
                     lay.background == CONTEXT[o.name], tex, lay.preset, int(o.truncated),
                     int(o.difficult), f"{o.truncation:.4f}", f"{o.occlusion:.4f}", f"{o.area:.5f}",
                     f"{box_area:.5f}", *extra_img])
    return rows


def _encode_jpeg(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=JPEG_QUALITY, subsampling=0, optimize=False)
    return buf.getvalue()


def _job(args: tuple[str, int, str, int, bool, str]) -> list[tuple[str, str, list[VOCObject], list[list[Any]]]]:
    """Worker: render one image (and its twins), write JPEG + XML, return index/sidecar records."""
    folder, seed, split, index, twins, preset = args
    out = []
    for sc in _render_family(seed, split, index, with_twins=twins, preset=preset):
        lay = sc.layout
        objs = [VOCObject(o.name, tuple(float(v) for v in o.box), pose=o.pose, difficult=o.difficult,
                          truncated=o.truncated) for o in sc.objects]
        (Path(folder) / "JPEGImages" / f"{lay.image_id}.jpg").write_bytes(_encode_jpeg(sc.image))
        (Path(folder) / "Annotations" / f"{lay.image_id}.xml").write_text(
            annotation_xml(lay.image_id, (lay.width, lay.height), objs, database="lrpkit bias-zoo"))
        out.append((lay.image_id, lay.split, objs, _bias_rows(sc)))
    return out


def _check_target(root: Path, overwrite: bool) -> None:
    if root.exists() and not root.is_dir():
        raise FileExistsError(f"scene root {root} exists and is not a folder")
    if root.is_dir() and any(root.iterdir()) and not overwrite:
        raise FileExistsError(f"scene root {root} already exists and is not empty; "
                              f"pass overwrite=True to replace it")


def _map(jobs: list, n_jobs: int, progress: bool, total: int) -> Iterator[list]:
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc="bias-zoo scenes", unit="img", disable=not progress)
    try:
        if n_jobs <= 1:
            for j in jobs:
                res = _job(j)
                bar.update(len(res))
                yield res
            return
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else None
        with ProcessPoolExecutor(max_workers=n_jobs, mp_context=ctx) as ex:
            for res in ex.map(_job, jobs, chunksize=16):
                bar.update(len(res))
                yield res
    finally:
        bar.close()


def generate_scenes(root: str | os.PathLike, n_train: int = 2000, n_val: int = 500, n_test: int = 1000,
                    seed: int = 0, progress: bool = True, overwrite: bool = False,
                    n_jobs: int | None = None, preset: str = "easy") -> Path:
    """Write the bias-zoo scene set (VOC2007 layout, see the module docstring) to ``root``.

    The set is generated in a temporary folder beside ``root`` and renamed into place at the
    end.  An existing non-empty ``root`` raises ``FileExistsError`` unless ``overwrite=True``.
    ``n_jobs`` worker processes (default: the CPU count, at most 8; small sets run in-process)
    do not change the output.  ``preset``: the realism preset (``"easy"``: the original scenes,
    ``"realistic"``: VOC-like scale, clutter, occlusion, distractors and lighting; see
    :mod:`lrpkit.data.realism`), recorded in the marker as ``"preset"``.  Returns ``root``.
    """
    preset = get_preset(preset).name
    for name, n in (("n_train", n_train), ("n_val", n_val), ("n_test", n_test)):
        if not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {n!r}")
    root = Path(root).expanduser().absolute()
    _check_target(root, overwrite)
    root.parent.mkdir(parents=True, exist_ok=True)
    counts = {"train": int(n_train), "val": int(n_val), "test": int(n_test)}
    total = sum(counts.values()) + 2 * counts["test"]
    if n_jobs is None:
        n_jobs = min(os.cpu_count() or 1, 8) if total >= 200 else 1
    with atomic_dir(root) as tmp:
        for sub in ("JPEGImages", "Annotations"):
            (tmp / sub).mkdir()
        jobs = [(str(tmp), int(seed), s, i, s == "test", preset) for s in SPLITS for i in range(counts[s])]
        split_ids: dict[str, list[str]] = {s: [] for s in SPLITS + COUNTERFACTUAL_SPLITS}
        objects: dict[str, list[VOCObject]] = {}
        rows: list[list[Any]] = []
        for family in _map(jobs, max(1, int(n_jobs)), progress, total):
            for image_id, split, objs, r in family:
                split_ids[split].append(image_id)
                objects[image_id] = objs
                rows += r
        splits = {"train": split_ids["train"], "val": split_ids["val"],
                  "trainval": split_ids["train"] + split_ids["val"], "test": split_ids["test"],
                  "test_swapped": split_ids["test_swapped"], "test_untagged": split_ids["test_untagged"]}
        write_image_sets(tmp, splits, objects, SCENE_CLASSES)
        order = {s: k for k, s in enumerate(SPLITS + COUNTERFACTUAL_SPLITS)}
        rows.sort(key=lambda r: (order[r[1]], r[3], r[16]))
        _write_csv(tmp / "bias.csv", rows)
        (tmp / SCENE_MARKER).write_text(json.dumps(_marker(seed, counts, preset), indent=2, sort_keys=True) + "\n")
    return root


def _write_csv(path: Path, rows: Iterable[list[Any]]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(_BIAS_COLUMNS)
        w.writerows(rows)


def _marker(seed: int, counts: dict[str, int], preset: str = "easy") -> dict[str, Any]:
    return {"format": "lrpkit-scenes", "version": FORMAT_VERSION, "classes": list(SCENE_CLASSES),
            "backgrounds": list(BACKGROUNDS), "context": CONTEXT, "bias_rates": BIAS_RATES,
            "bus_colour": "#%02x%02x%02x" % BUS_YELLOW, "seed": int(seed), "counts": counts,
            "preset": preset, "realism": PRESETS[preset].as_dict(),
            "params": {"seed": int(seed), **{f"n_{k}": v for k, v in counts.items()}, "preset": preset},
            "splits": ["train", "val", "trainval", "test", *COUNTERFACTUAL_SPLITS],
            "jpeg": {"quality": JPEG_QUALITY, "subsampling": "4:4:4"},
            "python_boxes": "0-based half-open (x0, y0, x1, y1); XML is VOC 1-based inclusive"}


def read_bias(root: str | os.PathLike) -> "pd.DataFrame":
    """The sidecar ``bias.csv`` of a generated scene set as a pandas DataFrame (one row per object)."""
    import pandas as pd

    path = resolve_voc_root(root) / "bias.csv"
    if not path.is_file():
        raise FileNotFoundError(f"no bias.csv in {path.parent} (not a generated scene set?)")
    df = pd.read_csv(path, dtype={"image_id": str, "split": str, "source_id": str, "colour": str})
    df["context_match"] = df["context_match"].astype(bool)
    df["object_context_match"] = df["object_context_match"].astype(bool)
    if "preset" in df:
        df["preset"] = df["preset"].astype(str)
        bv = df["background_variant"].astype(object)
        df["background_variant"] = bv.where(bv.notna(), "").astype(str)
        for c in ("truncated", "difficult"):
            df[c] = df[c].astype(bool)
    for c in ("tag_xmin", "tag_ymin", "tag_xmax", "tag_ymax"):
        df[c] = df[c].astype("Int64")
    return df
