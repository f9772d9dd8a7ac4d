"""Realism presets: easy is today's scenes byte for byte; realistic differs in what it promises,
measured from the rendered masks; both are deterministic and keep the counterfactual guarantees."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lrpkit.data import (PRESETS, SCENE_CLASSES, VOCDataset, bias_summary, generate_scenes, montage,
                         parse_annotation, read_bias, realism_summary, render_scene, sample_layout)

N_RENDER = 60   # scenes per preset for the mask statistics (about 2 s each preset)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _rgb(root: Path, image_id: str) -> np.ndarray:
    return np.asarray(Image.open(root / "JPEGImages" / f"{image_id}.jpg").convert("RGB"), np.int16)


@pytest.fixture(scope="module")
def rendered():
    return {p: [render_scene(0, "train", i, p) for i in range(N_RENDER)] for p in ("easy", "realistic")}


@pytest.fixture(scope="module")
def realistic_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("realistic") / "scenes"
    return generate_scenes(root, n_train=30, n_val=6, n_test=16, seed=0, progress=False, n_jobs=1,
                           preset="realistic")


# ----------------------------------------------------------------------------- easy = today's scenes

def test_easy_preset_is_todays_scenes_pixel_for_pixel():
    """sha256 of the rendered pixels, taken from the generator as it was before presets existed
    (format version 2): ``easy`` must not change a single byte."""
    h = hashlib.sha256()
    for split, i in [("train", 0), ("train", 1), ("train", 7), ("val", 3), ("test", 5),
                     ("test_swapped", 5), ("test_untagged", 11)]:
        h.update(render_scene(0, split, i, "easy").image.tobytes())
    assert h.hexdigest() == "2b09ec8b0a3fa9ff6ea8e8475c7725aede36f8a7715c73d16955e0c107758430"
    assert render_scene(0, "train", 1).image.tobytes() == render_scene(0, "train", 1, "easy").image.tobytes()


def test_unknown_preset_is_named(tmp_path):
    with pytest.raises(ValueError, match="realistik"):
        render_scene(0, "train", 0, "realistik")
    with pytest.raises(ValueError, match="realistik"):
        generate_scenes(tmp_path / "x", 1, 0, 0, progress=False, preset="realistik")
    with pytest.raises(TypeError, match="preset"):
        sample_layout(0, "train", 0, preset=3)
    assert not (tmp_path / "x").exists()


# ----------------------------------------------------------------------------- determinism

def test_realistic_same_seed_same_bytes(tmp_path):
    kw = dict(n_train=5, n_val=2, n_test=3, progress=False, preset="realistic")
    a = _files(generate_scenes(tmp_path / "a", seed=3, **kw))
    b = _files(generate_scenes(tmp_path / "b", seed=3, n_jobs=2, **kw))
    c = _files(generate_scenes(tmp_path / "c", seed=4, **kw))
    e = _files(generate_scenes(tmp_path / "e", seed=3, **{**kw, "preset": "easy"}))
    assert a == b
    jpgs = [k for k in a if k.endswith(".jpg")]
    assert len(jpgs) == 5 + 2 + 3 * 3
    assert sum(a[k] != c[k] for k in jpgs) == len(jpgs)
    assert sum(a[k] != e[k] for k in jpgs) == len(jpgs)                 # the presets differ everywhere
    meta = json.loads(a["lrpkit_scenes.json"])
    assert meta["preset"] == meta["params"]["preset"] == "realistic"
    assert meta["realism"]["p_objects"] == list(PRESETS["realistic"].p_objects)


# ----------------------------------------------------------------------------- measured from the masks

def _mask_stats(scenes):
    area, hidden, n_obj, n_distr, touching = [], [], [], [], []
    for sc in scenes:
        npx = sc.image.shape[0] * sc.image.shape[1]
        n_obj.append(len(sc.objects))
        for m, v in zip(sc.masks, sc.visible):
            ys, xs = np.nonzero(v > 0.35)
            box = (xs.max() + 1 - xs.min()) * (ys.max() + 1 - ys.min()) if len(xs) else 0
            area.append(box / npx)
            hidden.append(1 - v.sum() / m.sum())
            on = m > 0.35
            touching.append(bool(on[0].any() or on[-1].any() or on[:, 0].any() or on[:, -1].any()))
        n_distr.append(sum(1 for _, role, v in sc.clutter if role == "distractor" and (v > 0.5).sum() >= 10))
    return (np.array(area), np.array(hidden), np.array(n_obj), np.array(n_distr), np.array(touching))


def test_presets_differ_in_measured_properties(rendered):
    ea, eh, en, ed, et = _mask_stats(rendered["easy"])
    ra, rh, rn, rd, rt = _mask_stats(rendered["realistic"])
    # scale: easy objects are large (their boxes cover >= 4 % of the image); realistic ones spread
    # from about 1-2 % to most of the image, like VOC's
    assert np.quantile(ea, 0.05) > 0.04
    assert np.quantile(ra, 0.05) < 0.025 and ra.max() > 0.35 and np.quantile(ra, 0.95) / np.quantile(ra, 0.05) > 10
    # objects per image: easy 1-2, realistic up to 3, with equal classes in some images
    assert en.max() == 2 and rn.max() == 3 and rn.mean() > en.mean()
    assert any(len(set(sc.layout.classes)) < len(sc.layout.classes) for sc in rendered["realistic"])
    # occlusion: easy objects only overlap each other a little; realistic: a good share is hidden
    assert np.mean(eh > 0.1) < 0.05
    assert np.mean(rh > 0.1) > 0.12 and rh.mean() > 3 * max(eh.mean(), 1e-3)
    # distractors (visible in the masks): none in easy, about one per image in realistic
    assert ed.sum() == 0 and 0.6 < rd.mean() < 2.0
    # truncation at the border: never in easy
    assert not et.any() and rt.mean() > 0.05
    # the scene objects' recorded flags agree with the masks
    objs = [o for sc in rendered["realistic"] for o in sc.objects]
    assert np.allclose([o.occlusion for o in objs], rh, atol=1e-3)


def test_lighting_and_backgrounds_vary(rendered):
    """Exposure: the brightness of the sheep's visible core (the same wool colour in both presets)
    varies far more per image in realistic; backgrounds come in variants, horizons vary."""
    from scipy import ndimage

    def sheep_brightness(scenes):
        out = []
        for sc in scenes:
            for o, v in zip(sc.objects, sc.visible):
                core = ndimage.binary_erosion(v > 0.99, iterations=2)
                if o.name == "sheep" and core.sum() >= 30:
                    out.append(sc.image[core].mean())
        return np.array(out)
    e, r = sheep_brightness(rendered["easy"]), sheep_brightness(rendered["realistic"])
    assert len(e) >= 4 and len(r) >= 4
    assert r.std() > 2 * e.std()
    assert len({sc.info["background_variant"] for sc in rendered["easy"]}) == 1
    assert len({sc.info["background_variant"] for sc in rendered["realistic"]}) >= 10
    horizons = [sc.info["horizon"] for sc in rendered["realistic"]
                if sc.layout.background in ("grass", "road", "water")]
    assert np.ptp(horizons) > 0.25


def test_tiny_and_hidden_objects_carry_the_voc_flags(rendered):
    P = PRESETS["realistic"]
    n_tiny = n_hidden = n_trunc = 0
    for sc in rendered["realistic"]:
        npx = sc.image.shape[0] * sc.image.shape[1]
        for o, m, v in zip(sc.objects, sc.masks, sc.visible):
            if v.sum() / npx < P.difficult_area:                        # too small to name
                assert o.difficult
                n_tiny += 1
            if v.sum() / m.sum() < P.difficult_visible:                  # too hidden (in the image alone)
                assert o.difficult
                n_hidden += 1
            if v.sum() / npx > 2 * P.difficult_area and v.sum() / m.sum() > 0.9 and not o.truncated:
                assert not o.difficult                                   # large, visible: not difficult
            if o.truncated:                                              # truncated objects touch the border
                x0, y0, x1, y1 = o.box
                assert x0 == 0 or y0 == 0 or x1 == sc.image.shape[1] or y1 == sc.image.shape[0]
                n_trunc += 1
    assert n_tiny + n_hidden >= 1 and n_trunc >= 3


def test_flags_on_disk_and_difficult_left_out(realistic_root):
    bias = read_bias(realistic_root)
    assert set(bias.preset) == {"realistic"} and {"truncated", "difficult", "occlusion", "n_distractors"} <= set(bias)
    for _, r in bias[bias.split == "train"].iterrows():
        ann = parse_annotation(realistic_root / "Annotations" / f"{r.image_id}.xml")
        o = ann.objects[int(r.object_index)]
        assert (o.difficult, o.truncated) == (bool(r.difficult), bool(r.truncated)) and o.name == r["class"]
    ds = VOCDataset(realistic_root, "train")
    for i, image_id in enumerate(ds.ids):
        objs = bias[bias.image_id == image_id]
        for c, name in enumerate(ds.classes):
            mine = objs[objs["class"] == name]
            assert ds.labels[i, c] == int((~mine.difficult).any())
            assert ds.ignore[i, c] == bool(len(mine) and mine.difficult.all())
    summ = realism_summary(realistic_root)
    assert summ.attrs["preset"] == "realistic"
    assert float(summ["value"].sel(split="train", statistic="objects_per_image")) > 1.2


# ----------------------------------------------------------------------------- counterfactual twins

def test_realistic_twins_in_memory():
    tagged = [i for i in range(80) if sample_layout(0, "test", i, "realistic").tag][:3]
    assert tagged
    for i in tagged + [0, 1]:
        t, s, u = (render_scene(0, sp, i, "realistic") for sp in ("test", "test_swapped", "test_untagged"))
        outside = np.ones(t.image.shape[:2], bool)
        if t.tag_box is not None:
            x0, y0, x1, y1 = t.tag_box
            outside[y0:y1, x0:x1] = False
            assert not np.array_equal(t.image[~outside], u.image[~outside]) and u.tag_box is None
        assert np.array_equal(t.image[outside], u.image[outside])
        # swapped: the same foreground (objects, distractors, clutter, blur, lighting, noise) ...
        solid = (t.foreground >= 1.0) & outside
        assert solid.sum() > 50 and np.array_equal(t.image[solid], s.image[solid])
        # ... over another background, which shows where the foreground is transparent
        clear = t.foreground == 0
        if t.layout.background != s.layout.background:
            assert np.abs(t.image[clear].astype(int) - s.image[clear]).mean() > 5
        assert [o.box for o in t.objects] == [o.box for o in s.objects] == [o.box for o in u.objects]
        assert s.layout.classes == t.layout.classes and s.layout.tag == t.layout.tag


def test_realistic_twins_on_disk(realistic_root):
    bias = read_bias(realistic_root).drop_duplicates("image_id").set_index("image_id")
    test = bias[bias.split == "test"]
    unt = bias[bias.split == "test_untagged"]
    assert (unt.tag == 0).all() and sorted(unt.source_id) == sorted(test.index)
    for uid, r in unt.iterrows():
        src = test.loc[r.source_id]
        a, b = _rgb(realistic_root, r.source_id), _rgb(realistic_root, uid)
        if not src.tag:
            assert (realistic_root / "JPEGImages" / f"{uid}.jpg").read_bytes() == \
                (realistic_root / "JPEGImages" / f"{r.source_id}.jpg").read_bytes()
            continue
        x0, y0 = src.tag_xmin // 8 * 8, src.tag_ymin // 8 * 8
        x1, y1 = -(-src.tag_xmax // 8) * 8, -(-src.tag_ymax // 8) * 8
        outside = np.ones(a.shape[:2], bool)
        outside[y0:y1, x0:x1] = False
        assert np.array_equal(a[outside], b[outside])
    ds_t, ds_s = VOCDataset(realistic_root, "test"), VOCDataset(realistic_root, "test_swapped")
    assert np.array_equal(ds_t.labels, ds_s.labels) and np.array_equal(ds_t.ignore, ds_s.ignore)
    b = bias_summary(realistic_root)
    assert b.attrs["preset"] == "realistic"
    assert float(b["measured"].sel(split="test_untagged", statistic="tag_given_horse")) == 0.0
    assert float(b["measured"].sel(split="train", statistic="bus_yellow")) == 1.0


# ----------------------------------------------------------------------------- planted biases kept

def test_realistic_layout_keeps_the_planted_rates():
    lays = [sample_layout(0, "train", i, "realistic") for i in range(6000)]
    p_match = 0.85 + 0.15 / 5
    assert abs(np.mean([lay.context_match for lay in lays]) - p_match) < 0.02       # sd 0.004
    horse = [lay.tag for lay in lays if "horse" in lay.classes]
    other = [lay.tag for lay in lays if "horse" not in lay.classes]
    assert abs(np.mean(horse) - 0.70) < 0.05 and abs(np.mean(other) - 0.03) < 0.012
    n = np.array([len(lay.classes) for lay in lays])
    assert np.allclose(np.bincount(n, minlength=4)[1:] / len(n), PRESETS["realistic"].p_objects, atol=0.025)
    assert all(c in SCENE_CLASSES for lay in lays for c in lay.classes)
    sw = [sample_layout(0, "test_swapped", i, "realistic") for i in range(3000)]
    assert abs(np.mean([lay.context_match for lay in sw]) - 0.2) < 0.03


def test_sheep_still_carry_wool(rendered):
    """The texture bias: over the visible cores of large-enough objects in sharp images, sheep
    are the most high-frequency class (lighting and noise do not erase the wool; on small objects
    the cores hold part edges -- windows, wheels -- so the measured separation is weaker there)."""
    from scipy import ndimage

    energy: dict[str, list[float]] = {}
    for i in range(N_RENDER, N_RENDER + 120):
        sc = render_scene(0, "val", i, "realistic")
        if sc.info["blur"] > 0:
            continue
        g = sc.image.astype(np.float32).mean(2)
        hp = np.abs(g - ndimage.uniform_filter(g, 3))
        for o, v in zip(sc.objects, sc.visible):
            core = ndimage.binary_erosion(v > 0.99, iterations=2)
            if core.sum() >= 150:
                energy.setdefault(o.name, []).append(float(hp[core].mean()))
    med = {k: float(np.median(v)) for k, v in energy.items() if len(v) >= 3}
    assert "sheep" in med and "horse" in med
    assert med["sheep"] > 3 * med["horse"]
    assert med["sheep"] > 1.2 * max(v for k, v in med.items() if k != "sheep")


def test_montage():
    img = montage("easy", by="class", n=2, seed=0)
    assert img.mode == "RGB" and img.height > 6 * 160 and img.width >= 2 * 160
    assert np.asarray(img).std() > 20
    with pytest.raises(ValueError, match="by='colour'"):
        montage("easy", by="colour")
    with pytest.raises(ValueError, match="realistik"):
        montage("realistik")
