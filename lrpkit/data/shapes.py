"""Procedural silhouettes of the six bias-zoo classes, as coloured-part polygons.

Each ``shape_<class>(rng)`` returns a list of ``(part, polygon)`` pairs in a local frame
(x to the right = the direction the object faces, y down, arbitrary units); later pairs are
drawn over earlier ones.  Parts: ``BODY`` (the main colour, shaded), ``DARK`` (wheels, hooves,
sheep face and legs, hull stripe), ``GLASS`` (windows), ``ACCENT`` (sails, tail fins, stripes),
``LIGHT`` (hubs, headlights).  Pose parameters (leg swing, neck angle, wing sweep, vehicle
variant) come from ``rng``; mirroring, rotation and scale are applied by the renderer.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

__all__ = ["BODY", "DARK", "GLASS", "ACCENT", "LIGHT", "PARTS", "SHAPES", "DISTRACTORS", "OCCLUDERS", "Part"]

BODY, DARK, GLASS, ACCENT, LIGHT = 1, 2, 3, 4, 5
PARTS = (BODY, DARK, GLASS, ACCENT, LIGHT)

Part = tuple[int, np.ndarray]


def _ell(cx: float, cy: float, rx: float, ry: float, n: int = 20,
         a0: float = 0.0, a1: float = 2 * np.pi) -> np.ndarray:
    t = np.linspace(a0, a1, n, endpoint=(a1 - a0) < 2 * np.pi - 1e-9)
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], 1)


def _rect(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], float)


def _limb(p0: tuple[float, float], p1: tuple[float, float], w0: float, w1: float) -> np.ndarray:
    """A tapered bar from ``p0`` (width ``w0``) to ``p1`` (width ``w1``)."""
    a, b = np.asarray(p0, float), np.asarray(p1, float)
    d = b - a
    n = np.array([-d[1], d[0]]) / (np.hypot(*d) + 1e-9)
    return np.array([a + n * w0 / 2, b + n * w1 / 2, b - n * w1 / 2, a - n * w0 / 2])


def _poly(*pts: tuple[float, float]) -> np.ndarray:
    return np.array(pts, float)


def _wheel(cx: float, cy: float, r: float) -> list[Part]:
    return [(DARK, _ell(cx, cy, r, r, 18)), (LIGHT, _ell(cx, cy, r * 0.45, r * 0.45, 12))]


# ----------------------------------------------------------------------------- classes

def shape_aeroplane(rng: np.random.Generator) -> list[Part]:
    """Airliner in side view (wings, fin, tailplane, window row), or seen from below."""
    if rng.random() < 0.3:  # from below / above: a cross with swept wings
        sweep = rng.uniform(0.05, 0.2)
        span = rng.uniform(0.38, 0.5)
        parts: list[Part] = [
            (BODY, _poly((0.48, 0.5 - 0.02), (0.52 - sweep, 0.5 - span), (0.6 - sweep, 0.5 - span),
                         (0.62, 0.5 - 0.02), (0.62, 0.52), (0.6 - sweep, 0.5 + span),
                         (0.52 - sweep, 0.5 + span), (0.48, 0.52))),
            (BODY, _poly((0.06, 0.49), (0.02 - sweep / 2, 0.5 - 0.15), (0.08 - sweep / 2, 0.5 - 0.15),
                         (0.14, 0.49), (0.14, 0.51), (0.08 - sweep / 2, 0.65), (0.02 - sweep / 2, 0.65),
                         (0.06, 0.51))),
            (BODY, np.vstack([_ell(0.92, 0.5, 0.08, 0.045, 12, -np.pi / 2, np.pi / 2),
                              _poly((0.0, 0.525), (0.0, 0.475))])),
        ]
        for y in (0.5 - span * 0.55, 0.5 + span * 0.55):
            parts.append((ACCENT, _ell(0.55 - sweep * 0.5, y, 0.05, 0.02, 10)))
        return parts
    h = rng.uniform(0.09, 0.13)
    sweep = rng.uniform(0.05, 0.15)
    cy = 0.5
    fus = np.vstack([_ell(0.88, cy, 0.12, h / 2, 12, -np.pi / 2, np.pi / 2),
                     _poly((0.12, cy + h / 2), (0.0, cy - h * 0.1), (0.0, cy - h / 2))])
    fin_h = rng.uniform(0.18, 0.26)
    parts = [
        (BODY, _poly((0.45, cy + h * 0.1), (0.62, cy + h * 0.1), (0.4 - sweep, cy + 0.32),
                     (0.33 - sweep, cy + 0.32))),                                   # near wing
        (BODY, _poly((0.5, cy - h * 0.3), (0.58, cy - h * 0.3), (0.47 - sweep, cy - 0.18),
                     (0.44 - sweep, cy - 0.18))),                                   # far wing
        (BODY, fus),
        (ACCENT, _poly((0.02, cy - h / 2), (0.16, cy - h / 2), (0.06, cy - h / 2 - fin_h),
                       (0.0, cy - h / 2 - fin_h))),                                 # tail fin
        (BODY, _poly((0.02, cy), (0.14, cy), (0.06, cy + 0.08), (0.0, cy + 0.08))),  # tailplane
        (ACCENT, _ell(0.5 - sweep * 0.3, cy + h * 0.75, 0.05, 0.025, 10)),           # engine
    ]
    for x in np.linspace(0.2, 0.82, 10):
        parts.append((GLASS, _ell(x, cy - h * 0.15, 0.009, 0.014, 6)))
    parts.append((GLASS, _poly((0.9, cy - h * 0.35), (0.96, cy - h * 0.2), (0.9, cy - h * 0.1))))
    return parts


def shape_boat(rng: np.random.Generator) -> list[Part]:
    """Hull with a sail (sailing boat) or a cabin with windows (motor boat)."""
    deck = 0.62
    hull = _poly((0.0, deck - 0.04), (1.0, deck - 0.08), (0.86, deck + 0.2), (0.1, deck + 0.2))
    parts: list[Part] = [(BODY, hull),
                         (DARK, _poly((0.04, deck + 0.12), (0.93, deck + 0.1), (0.86, deck + 0.2),
                                      (0.1, deck + 0.2)))]
    if rng.random() < 0.5:
        mast_x = rng.uniform(0.42, 0.52)
        top = deck - rng.uniform(0.55, 0.7)
        parts += [
            (DARK, _rect(mast_x - 0.012, top, mast_x + 0.012, deck - 0.04)),
            (ACCENT, _poly((mast_x - 0.02, top + 0.03), (mast_x - 0.02, deck - 0.08),
                           (mast_x - rng.uniform(0.3, 0.4), deck - 0.08))),       # main sail
            (ACCENT, _poly((mast_x + 0.02, top + 0.08), (mast_x + 0.02, deck - 0.08),
                           (mast_x + rng.uniform(0.25, 0.38), deck - 0.08))),     # jib
        ]
    else:
        x0, x1 = rng.uniform(0.2, 0.35), rng.uniform(0.6, 0.75)
        ch = rng.uniform(0.14, 0.2)
        parts.append((ACCENT, _poly((x0, deck - 0.05), (x1 + 0.08, deck - 0.07), (x1, deck - 0.06 - ch),
                                    (x0 + 0.02, deck - 0.06 - ch))))
        for x in np.linspace(x0 + 0.06, x1 - 0.04, 4):
            parts.append((GLASS, _rect(x - 0.03, deck - 0.05 - ch * 0.75, x + 0.03, deck - 0.05 - ch * 0.35)))
    return parts


def shape_bus(rng: np.random.Generator) -> list[Part]:
    """Long box with a row (or two, double decker) of many windows, door and two wheels."""
    double = rng.random() < 0.3
    H = 0.62 if double else 0.4
    top, bot = 0.0, H
    parts: list[Part] = [(BODY, _poly((0.0, top + 0.03), (0.02, top), (0.98, top), (1.0, top + 0.04),
                                      (1.0, bot), (0.0, bot)))]
    rows = [(top + 0.06, top + 0.2)] if not double else [(top + 0.06, top + 0.22), (top + 0.33, top + 0.47)]
    n_win = int(rng.integers(6, 10))
    for (y0, y1) in rows:
        for x in np.linspace(0.04, 0.84, n_win):
            parts.append((GLASS, _rect(x, y0, x + 0.8 / n_win - 0.02, y1)))
    parts.append((GLASS, _rect(0.92, rows[-1][0], 0.99, rows[-1][1] + 0.05)))            # windscreen
    parts.append((GLASS, _rect(0.86, rows[-1][0], 0.905, bot - 0.06)))                   # door
    parts.append((DARK, _rect(0.0, bot - 0.05, 1.0, bot)))                               # bumper line
    parts.append((LIGHT, _rect(0.975, bot - 0.1, 1.0, bot - 0.065)))
    r = 0.075
    parts += _wheel(0.18, bot, r) + _wheel(0.8, bot, r)
    return parts


def shape_car(rng: np.random.Generator) -> list[Part]:
    """Saloon / hatchback / SUV: lower body, cabin with two windows, two wheels."""
    kind = rng.integers(3)
    body_top, body_bot = 0.28, 0.46
    if kind == 0:      # saloon
        cab = _poly((0.2, body_top), (0.32, 0.1), (0.62, 0.1), (0.78, body_top))
    elif kind == 1:    # hatchback
        cab = _poly((0.08, body_top), (0.12, 0.1), (0.58, 0.1), (0.76, body_top))
    else:              # SUV
        body_bot = 0.5
        cab = _poly((0.05, body_top), (0.07, 0.05), (0.65, 0.05), (0.8, body_top))
    parts: list[Part] = [
        (BODY, cab),
        (BODY, _poly((0.0, body_top + 0.04), (0.05, body_top), (0.92, body_top + 0.02),
                     (1.0, body_top + 0.08), (1.0, body_bot), (0.0, body_bot))),
    ]
    c = cab
    # two side windows inset in the cabin polygon
    inset = lambda p, q, t: tuple(np.asarray(p) + t * (np.asarray(q) - np.asarray(p)))  # noqa: E731
    mid_top = inset(c[1], c[2], 0.5)
    mid_bot = (mid_top[0], body_top - 0.01)
    parts.append((GLASS, _poly(inset(c[0], c[1], 0.2), inset(c[1], c[2], 0.06),
                               (mid_top[0] - 0.015, c[1][1] + 0.025), (mid_bot[0] - 0.015, mid_bot[1]),
                               (inset(c[0], c[1], 0.2)[0], body_top - 0.01))))
    parts.append((GLASS, _poly((mid_top[0] + 0.015, c[2][1] + 0.025), inset(c[2], c[3], 0.1),
                               inset(c[2], c[3], 0.85), (mid_bot[0] + 0.015, body_top - 0.01))))
    parts.append((LIGHT, _rect(0.96, body_top + 0.09, 1.0, body_top + 0.13)))
    parts.append((DARK, _rect(0.0, body_bot - 0.04, 0.07, body_bot)))
    r = 0.1 if kind < 2 else 0.115
    parts += _wheel(0.2, body_bot, r) + _wheel(0.8, body_bot, r)
    return parts


def _legs(rng: np.random.Generator, xs: tuple[float, ...], y0: float, length: float,
          w: float, swing: float) -> list[Part]:
    parts: list[Part] = []
    for k, x in enumerate(xs):
        a = swing * (1 if k % 2 else -1) + rng.normal(0, 0.06)
        end = (x + length * np.sin(a), y0 + length * np.cos(a))
        parts.append((BODY, _limb((x, y0), end, w, w * 0.6)))
        parts.append((DARK, _limb(end, (end[0] + 0.01, end[1] + 0.03), w * 0.75, w * 0.75)))
    return parts


def shape_horse(rng: np.random.Generator) -> list[Part]:
    """Slender quadruped: long legs, long raised (or grazing) neck, head, mane, tail."""
    bx, by, brx, bry = 0.45, 0.38, 0.27, 0.09
    grazing = rng.random() < 0.2
    neck_base = (bx + brx * 0.75, by - bry * 0.3)
    ang = np.deg2rad(rng.uniform(-35, -10)) if not grazing else np.deg2rad(rng.uniform(45, 65))
    nl = 0.3
    head_base = (neck_base[0] + nl * np.cos(ang) * 0.7, neck_base[1] + nl * np.sin(ang))
    hd = np.deg2rad(rng.uniform(45, 75)) if not grazing else np.deg2rad(rng.uniform(75, 95))
    head_tip = (head_base[0] + 0.17 * np.cos(hd), head_base[1] + 0.17 * np.sin(hd))
    swing = rng.uniform(0.0, 0.35)
    leg_len = rng.uniform(0.36, 0.42)
    tail_a = rng.uniform(0.3, 1.2)
    parts: list[Part] = [
        (DARK, _limb((bx - brx * 0.95, by - bry * 0.5),
                     (bx - brx - 0.12 * np.sin(tail_a) - 0.03, by + 0.25 * np.cos(tail_a) * 0.9), 0.05, 0.03)),
        *_legs(rng, (bx - brx * 0.75, bx - brx * 0.5), by + bry * 0.5, leg_len, 0.045, swing),
        *_legs(rng, (bx + brx * 0.55, bx + brx * 0.78), by + bry * 0.5, leg_len, 0.045, swing),
        (BODY, _ell(bx, by, brx, bry, 24)),
        (BODY, _limb((neck_base[0] - 0.04, neck_base[1] + 0.04), head_base, 0.13, 0.065)),
        (BODY, _limb(head_base, head_tip, 0.075, 0.05)),
        (BODY, _limb(head_base, (head_base[0] - 0.015, head_base[1] - 0.05), 0.025, 0.01)),   # ear
        (DARK, _limb((neck_base[0] - 0.06, neck_base[1] - 0.02),
                     (head_base[0] - 0.025, head_base[1] - 0.01), 0.03, 0.025)),              # mane
        (DARK, _ell(head_base[0] + 0.04 * np.cos(hd) + 0.012, head_base[1] + 0.04 * np.sin(hd) - 0.012,
                    0.01, 0.01, 6)),                                                           # eye
    ]
    return parts


def shape_sheep(rng: np.random.Generator) -> list[Part]:
    """Stocky quadruped: fluffy woolly body (bumpy outline), dark face, short thin legs."""
    bx, by, brx, bry = 0.45, 0.4, rng.uniform(0.3, 0.34), rng.uniform(0.16, 0.2)
    swing = rng.uniform(0.0, 0.2)
    parts: list[Part] = [
        *_legs(rng, (bx - brx * 0.6, bx - brx * 0.35, bx + brx * 0.4, bx + brx * 0.62),
               by + bry * 0.6, rng.uniform(0.17, 0.22), 0.04, swing),
    ]
    parts = [(DARK, p) if part == BODY else (part, p) for part, p in parts]
    n = 16
    t = np.linspace(0, 2 * np.pi, n, endpoint=False) + rng.uniform(0, 0.4)
    parts.append((BODY, _ell(bx, by, brx, bry, 24)))
    for a in t:
        r = rng.uniform(0.055, 0.075)
        parts.append((BODY, _ell(bx + brx * np.cos(a), by + bry * np.sin(a), r, r, 12)))
    grazing = rng.random() < 0.35
    hx, hy = bx + brx + 0.06, by - bry * 0.2 + (0.17 if grazing else 0.0)
    parts.append((DARK, _ell(hx, hy, 0.085, 0.055, 16)))
    parts.append((DARK, _limb((hx - 0.04, hy - 0.03), (hx - 0.1, hy - 0.01), 0.04, 0.02)))     # ear
    parts.append((BODY, _ell(bx + brx * 0.85, hy - 0.04, 0.06, 0.05, 12)))                   # wool cap
    return parts


SHAPES: dict[str, Callable[[np.random.Generator], list[Part]]] = {
    "aeroplane": shape_aeroplane, "boat": shape_boat, "bus": shape_bus,
    "car": shape_car, "horse": shape_horse, "sheep": shape_sheep,
}


# ----------------------------------------------------------------------------- distractors and clutter
# Not of any class, but sharing the classes' parts (realistic preset, see lrpkit.data.realism):
# carts and benches share wheels / legs, sheds share windows, fences share leg-like posts, trees
# and bushes share the sheep's bumpy outline (smoothly shaded: the wool texture stays the sheep's).

def shape_cart(rng: np.random.Generator) -> list[Part]:
    """Hand cart / trailer: a box on one or two vehicle wheels, with a shaft."""
    top, bot = rng.uniform(0.2, 0.35), 0.62
    parts: list[Part] = [(DARK, _limb((0.95, bot - 0.12), (1.3, bot - 0.02), 0.035, 0.03)),       # shaft
                         (BODY, _poly((0.0, top), (1.0, top), (0.97, bot), (0.03, bot)))]
    for y in np.linspace(top + 0.08, bot - 0.08, int(rng.integers(1, 4))):                       # planks
        parts.append((ACCENT, _rect(0.02, y - 0.012, 0.98, y + 0.012)))
    r = rng.uniform(0.1, 0.16)
    if rng.random() < 0.5:
        parts += _wheel(0.5, bot + 0.02, r)
    else:
        parts += _wheel(0.22, bot + 0.02, r) + _wheel(0.78, bot + 0.02, r)
    return parts


def shape_shed(rng: np.random.Generator) -> list[Part]:
    """Shed / house front: box with a pitched roof, a door and a row of windows."""
    w = rng.uniform(0.8, 1.4)
    roof = rng.uniform(0.15, 0.35)
    parts: list[Part] = [(BODY, _rect(0.0, roof, w, 0.9)),
                         (DARK, _poly((-0.06, roof + 0.02), (w / 2, 0.0), (w + 0.06, roof + 0.02)))]
    n = int(rng.integers(1, 5))
    for x in np.linspace(0.08, w - 0.08 - 0.16, n):
        parts.append((GLASS, _rect(x, roof + 0.12, x + 0.14, roof + 0.3)))
    dx = rng.uniform(0.05, w - 0.2)
    parts.append((ACCENT, _rect(dx, 0.9 - 0.35, dx + 0.15, 0.9)))
    return parts


def shape_fence(rng: np.random.Generator) -> list[Part]:
    """A stretch of fence: two or three rails and leg-like posts (wide: about 4 x 1)."""
    length = rng.uniform(2.5, 5.0)
    n_posts = max(2, int(length / rng.uniform(0.35, 0.7)))
    parts: list[Part] = []
    for x in np.linspace(0.0, length, n_posts):
        parts.append((BODY, _rect(x - 0.04, 0.0, x + 0.04, 1.0)))
    for y in np.linspace(0.15, 0.7, int(rng.integers(2, 4))):
        parts.append((BODY, _rect(-0.05, y - 0.035, length + 0.05, y + 0.035)))
    return parts


def _blob(rng: np.random.Generator, cx: float, cy: float, rx: float, ry: float, n: int) -> list[np.ndarray]:
    out = [_ell(cx, cy, rx, ry, 20)]
    for a in np.linspace(0, 2 * np.pi, n, endpoint=False) + rng.uniform(0, 1):
        r = rng.uniform(0.25, 0.45) * min(rx, ry) * 1.4
        out.append(_ell(cx + rx * np.cos(a), cy + ry * np.sin(a), r, r, 12))
    return out


def shape_tree(rng: np.random.Generator) -> list[Part]:
    """Tree: a trunk and a bumpy canopy."""
    h = rng.uniform(1.2, 1.8)
    parts: list[Part] = [(DARK, _limb((0.5, h), (0.5, h * 0.45), 0.12, 0.08))]
    parts += [(BODY, p) for p in _blob(rng, 0.5, h * 0.35, rng.uniform(0.35, 0.5), h * 0.3, int(rng.integers(7, 12)))]
    return parts


def shape_bush(rng: np.random.Generator) -> list[Part]:
    """Bush: a low cluster of round leaf masses."""
    return [(BODY, p) for p in _blob(rng, 0.5, 0.3, rng.uniform(0.45, 0.6), 0.22, int(rng.integers(6, 11)))]


def shape_rock(rng: np.random.Generator) -> list[Part]:
    """Rock / boulder: an irregular rounded polygon with a darker crack."""
    n = int(rng.integers(7, 12))
    t = np.sort(rng.uniform(0, 2 * np.pi, n))
    r = rng.uniform(0.6, 1.0, n)
    pts = np.stack([0.5 + 0.5 * r * np.cos(t), 0.35 + 0.3 * r * np.sin(t) * np.where(np.sin(t) > 0, 0.6, 1.0)], 1)
    return [(BODY, pts), (DARK, _limb((0.35, 0.2), (0.5, 0.45), 0.03, 0.015))]


def shape_bench(rng: np.random.Generator) -> list[Part]:
    """Bench / trough: a plank on four leg-like posts."""
    parts: list[Part] = []
    leg = rng.uniform(0.3, 0.5)
    for x in (0.08, 0.2, 0.8, 0.92):
        parts.append((DARK, _limb((x, 0.25), (x + rng.normal(0, 0.02), 0.25 + leg), 0.05, 0.04)))
    parts.append((BODY, _rect(0.0, 0.1, 1.0, 0.28)))
    return parts


def shape_post(rng: np.random.Generator) -> list[Part]:
    """Post / lamp post: a tall thin pole, sometimes with a lamp arm."""
    parts: list[Part] = [(BODY, _rect(0.0, 0.0, 0.05, 1.0))]
    if rng.random() < 0.4:
        parts += [(BODY, _rect(0.0, 0.0, 0.2, 0.02)), (LIGHT, _rect(0.15, 0.02, 0.22, 0.05))]
    return parts


def shape_sign(rng: np.random.Generator) -> list[Part]:
    """Road sign / notice board on a post."""
    w = rng.uniform(0.35, 0.7)
    parts: list[Part] = [(DARK, _rect(w / 2 - 0.03, 0.2, w / 2 + 0.03, 1.0))]
    if rng.random() < 0.5:
        parts += [(BODY, _rect(0.0, 0.0, w, w * rng.uniform(0.5, 0.8))),
                  (LIGHT, _rect(0.05, 0.05, w - 0.05, w * 0.4))]
    else:
        parts += [(BODY, _ell(w / 2, w / 2, w / 2, w / 2, 20)), (LIGHT, _ell(w / 2, w / 2, w / 3, w / 3, 16))]
    return parts


#: distractors drawn behind the objects (not of any class)
DISTRACTORS: dict[str, Callable[[np.random.Generator], list[Part]]] = {
    "cart": shape_cart, "shed": shape_shed, "fence": shape_fence, "tree": shape_tree,
    "rock": shape_rock, "bench": shape_bench,
}
#: foreground clutter drawn in front of the objects (occluders)
OCCLUDERS: dict[str, Callable[[np.random.Generator], list[Part]]] = {
    "fence": shape_fence, "bush": shape_bush, "post": shape_post, "sign": shape_sign,
}
