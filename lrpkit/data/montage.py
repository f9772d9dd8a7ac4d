"""Example montages of a scene preset: per class, per planted bias, per realism property.

``montage(preset, by=...)`` renders scenes in memory (exactly as ``generate_scenes`` writes them,
before JPEG) and tiles them into one RGB image with a label per row, boxes drawn over the
objects (green; orange = VOC ``difficult``; dashed = ``truncated``).  For notebook 00::

    import matplotlib.pyplot as plt, lrpkit
    img = lrpkit.data.montage(cfg.data.preset, by="class", n=6, seed=cfg.seed)
    plt.figure(figsize=(12, 12)); plt.imshow(img); plt.axis("off")
"""
from __future__ import annotations

from typing import Callable, Iterator

import numpy as np
from PIL import Image, ImageDraw

from .realism import get_preset
from .scenes import SCENE_CLASSES, Scene, render_scene, sample_layout

__all__ = ["montage", "MONTAGE_KINDS"]

MONTAGE_KINDS = ("class", "bias", "realism")
_TILE = 160
_LABEL_W = 118


def _draw_boxes(im: Image.Image, scene: Scene, only: str | None) -> None:
    d = ImageDraw.Draw(im)
    for o in scene.objects:
        if only is not None and o.name != only:
            continue
        col = (255, 150, 0) if o.difficult else (40, 230, 60)
        x0, y0, x1, y1 = o.box
        if o.truncated:   # dashed
            for x in range(x0, x1, 6):
                d.line([(x, y0), (min(x + 3, x1 - 1), y0)], fill=col)
                d.line([(x, y1 - 1), (min(x + 3, x1 - 1), y1 - 1)], fill=col)
            for y in range(y0, y1, 6):
                d.line([(x0, y), (x0, min(y + 3, y1 - 1))], fill=col)
                d.line([(x1 - 1, y), (x1 - 1, min(y + 3, y1 - 1))], fill=col)
        else:
            d.rectangle([x0, y0, x1 - 1, y1 - 1], outline=col)


def _tile(scene: Scene, boxes: bool, only: str | None, caption: str = "") -> Image.Image:
    im = Image.fromarray(scene.image)
    if boxes:
        _draw_boxes(im, scene, only)
    tile = Image.new("RGB", (_TILE, _TILE + 12), (255, 255, 255))
    tile.paste(im, ((_TILE - im.width) // 2, (_TILE - im.height) // 2))
    if caption:
        ImageDraw.Draw(tile).text((2, _TILE), caption[:26], fill=(0, 0, 0))
    return tile


def _search(seed: int, preset: str, split: str, want: Callable[[Scene], bool], n: int,
            layout_ok: Callable | None = None, max_tries: int = 400) -> list[Scene]:
    out = []
    for i in range(max_tries):
        if layout_ok is not None and not layout_ok(sample_layout(seed, split, i, preset)):
            continue
        sc = render_scene(seed, split, i, preset)
        if want(sc):
            out.append(sc)
            if len(out) == n:
                break
    return out


def _rows(kind: str, preset: str, seed: int, split: str, n: int) -> Iterator[tuple[str, list, str | None]]:
    yes = lambda sc: True  # noqa: E731
    if kind == "class":
        for c in SCENE_CLASSES:
            yield c, _search(seed, preset, split, yes, n, lambda lay, c=c: c in lay.classes), c
        return
    if kind == "bias":
        yield "context match", _search(seed, preset, split, yes, n, lambda lay: lay.context_match), None
        yield "context broken", _search(seed, preset, split, yes, n, lambda lay: not lay.context_match), None
        yield "horse + tag", _search(seed, preset, split, yes, n,
                                     lambda lay: "horse" in lay.classes and lay.tag), "horse"
        yield "tag, no horse", _search(seed, preset, split, yes, n,
                                       lambda lay: "horse" not in lay.classes and lay.tag, 3000), None
        yield "bus: yellow", _search(seed, preset, split, yes, n, lambda lay: "bus" in lay.classes), "bus"
        yield "car: any hue", _search(seed, preset, split, yes, n, lambda lay: "car" in lay.classes), "car"
        yield "sheep: wool", _search(seed, preset, split, yes, n, lambda lay: "sheep" in lay.classes), "sheep"
        trip = []
        for i in range(max(1, n // 3)):
            j = [k for k in range(200) if sample_layout(seed, "test", k, preset).tag][i]
            trip += [render_scene(seed, s, j, preset) for s in ("test", "test_swapped", "test_untagged")]
        yield "test|swapped|untag", trip, None
        return
    if kind == "realism":
        def frac(sc: Scene) -> list[float]:
            return [(o.box[2] - o.box[0]) * (o.box[3] - o.box[1]) / sc.image.shape[0] / sc.image.shape[1]
                    for o in sc.objects]
        yield "small (box<4%)", _search(seed, preset, split, lambda sc: min(frac(sc)) < 0.04, n), None
        yield "large (box>40%)", _search(seed, preset, split, lambda sc: max(frac(sc)) > 0.4, n), None
        yield "3 objects", _search(seed, preset, split, lambda sc: len(sc.objects) == 3, n), None
        yield "truncated", _search(seed, preset, split, lambda sc: any(o.truncated for o in sc.objects), n), None
        yield "occluded >25%", _search(seed, preset, split,
                                       lambda sc: any(o.occlusion > 0.25 for o in sc.objects), n), None
        yield "difficult", _search(seed, preset, split, lambda sc: any(o.difficult for o in sc.objects), n), None
        yield "2+ distractors", _search(seed, preset, split,
                                        lambda sc: sum(r == "distractor" for _, r, _ in sc.clutter) >= 2, n), None
        return
    raise ValueError(f"unknown montage kind by={kind!r}; expected one of {MONTAGE_KINDS}")


def montage(preset: str = "realistic", by: str = "class", n: int = 6, seed: int = 0, split: str = "train",
            boxes: bool = True, captions: bool = True) -> Image.Image:
    """Tile example scenes of ``preset`` into one RGB ``PIL.Image``, one labelled row per class
    (``by="class"``), per planted bias (``"bias"``: context match / broken, tag with and without
    horse, bus colour, car colour, sheep texture, and test / swapped / untagged triplets) or per
    realism property (``"realism"``: small, large, three objects, truncated, occluded, difficult,
    distractors).  ``n`` tiles per row; boxes in green (orange: difficult; dashed: truncated);
    captions list each image's classes and background.  Deterministic in ``seed``."""
    preset = get_preset(preset).name
    if by not in MONTAGE_KINDS:
        raise ValueError(f"unknown montage kind by={by!r}; expected one of {MONTAGE_KINDS}")
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    rows = list(_rows(by, preset, int(seed), split, int(n)))
    th = _TILE + 12
    width = _LABEL_W + max(n, max(len(r[1]) for r in rows)) * (_TILE + 4)
    out = Image.new("RGB", (width, len(rows) * (th + 4) + 16), (255, 255, 255))
    d = ImageDraw.Draw(out)
    d.text((4, 2), f"preset: {preset}  seed: {seed}  split: {split}", fill=(0, 0, 0))
    for r, (label, scenes, only) in enumerate(rows):
        y = 16 + r * (th + 4)
        d.text((4, y + th // 2 - 6), label, fill=(0, 0, 0))
        for k, sc in enumerate(scenes):
            cap = ""
            if captions:
                cap = f"{'+'.join(sorted(set(sc.layout.classes)))}/{sc.layout.background}"
                if sc.layout.split != split:
                    cap = sc.layout.split.replace("test_", "") + " " + sc.layout.background
            out.paste(_tile(sc, boxes, only, cap), (_LABEL_W + k * (_TILE + 4), y))
    return out
