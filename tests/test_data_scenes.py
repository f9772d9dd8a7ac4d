"""The bias-zoo generator: determinism, planted bias rates, counterfactual twins, atomic writes."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lrpkit.data import (BACKGROUNDS, BIAS_RATES, CONTEXT, SCENE_CLASSES, VOCDataset, generate_scenes,
                         read_bias, render_scene, sample_layout)

P_MATCH = BIAS_RATES["p_context"] + (1 - BIAS_RATES["p_context"]) / len(BACKGROUNDS)  # 0.88


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _rgb(root: Path, image_id: str) -> np.ndarray:
    return np.asarray(Image.open(root / "JPEGImages" / f"{image_id}.jpg").convert("RGB"), np.int16)


# ----------------------------------------------------------------------------- determinism, layout

def test_deterministic_bytes(tmp_path):
    kw = dict(n_train=6, n_val=3, n_test=4, progress=False)
    a = _files(generate_scenes(tmp_path / "a", seed=3, **kw))
    b = _files(generate_scenes(tmp_path / "b", seed=3, n_jobs=2, **kw))  # workers do not matter
    c = _files(generate_scenes(tmp_path / "c", seed=4, **kw))
    assert a == b
    assert a.keys() == c.keys()
    jpgs = [k for k in a if k.endswith(".jpg")]
    assert len(jpgs) == 6 + 3 + 3 * 4
    assert sum(a[k] != c[k] for k in jpgs) >= len(jpgs) - 2 and a["bias.csv"] != c["bias.csv"]
    meta = json.loads(a["lrpkit_scenes.json"])
    assert meta["classes"] == list(SCENE_CLASSES) and meta["params"] == {"seed": 3, "n_train": 6,
                                                                          "n_val": 3, "n_test": 4,
                                                                          "preset": "easy"}
    assert meta["preset"] == "easy"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "c"]  # no temp folders left


def test_layout_rates():
    """The planted rates on 10,000 sampled layouts (tolerances about 4-5 binomial sd)."""
    lays = [sample_layout(0, "train", i) for i in range(10_000)]
    match = np.mean([lay.context_match for lay in lays])
    assert abs(match - P_MATCH) < 0.016                                    # sd 0.0033
    horse = [lay.tag for lay in lays if "horse" in lay.classes]
    other = [lay.tag for lay in lays if "horse" not in lay.classes]
    assert abs(np.mean(horse) - 0.70) < 0.045                             # n ~ 2000, sd 0.010
    assert abs(np.mean(other) - 0.03) < 0.009                             # n ~ 8000, sd 0.0019
    assert abs(np.mean([len(lay.classes) == 2 for lay in lays]) - 0.2) < 0.02
    assert abs(np.mean([lay.orientation == "landscape" for lay in lays]) - 0.7) < 0.023
    assert all(len(set(lay.classes)) == len(lay.classes) for lay in lays)
    firsts = np.array([SCENE_CLASSES.index(lay.classes[0]) for lay in lays])
    assert np.all(np.abs(np.bincount(firsts, minlength=6) / len(lays) - 1 / 6) < 0.02)
    off = [lay.background for lay in lays if not lay.context_match]      # never-context draws
    assert set(off) == set(BACKGROUNDS)


# ----------------------------------------------------------------------------- rendered biases

@pytest.fixture(scope="module")
def zoo600(tmp_path_factory):
    root = tmp_path_factory.mktemp("zoo600") / "scenes"
    return generate_scenes(root, n_train=600, n_val=0, n_test=0, seed=1, progress=False)


def test_rendered_bias_rates(zoo600):
    bias = read_bias(zoo600)
    img = bias.drop_duplicates("image_id")
    assert len(img) == 600 and bias.split.eq("train").all()
    # context: 0.88 expected, sd 0.013 on 600 images
    assert abs(img.context_match.mean() - P_MATCH) < 0.06
    assert (img.context_match == (img.background == img.context_class.map(CONTEXT))).all()
    # artefact: ~120 horse images (sd 0.042), ~480 others (sd 0.008)
    has_horse = bias.groupby("image_id")["class"].apply(lambda s: "horse" in set(s))
    tag = img.set_index("image_id").tag
    assert abs(tag[has_horse].mean() - 0.70) < 0.17
    assert 0 < tag[~has_horse].mean() < 0.075
    tagged = img[img.tag == 1]
    assert tagged.tag_xmin.notna().all() and img[img.tag == 0].tag_xmin.isna().all()
    assert (tagged.tag_xmin == 2).all() and ((tagged.height - tagged.tag_ymax) == 2).all()


def test_colour_bias(zoo600):
    bias = read_bias(zoo600)
    bus, car = bias[bias["class"] == "bus"], bias[bias["class"] == "car"]
    assert len(bus) > 60 and bus.hue.between(40, 56).all()
    assert len(car) > 60
    from scipy.stats import kstest
    assert kstest(car.hue / 360.0, "uniform").pvalue > 1e-3
    assert np.bincount((car.hue // 60).astype(int), minlength=6).min() >= 3
    # the pixels agree: inside bus boxes a large share is saturated yellow
    shares = []
    for _, r in bus.head(40).iterrows():
        rgb = _rgb(zoo600, r.image_id)[r.ymin:r.ymax, r.xmin:r.xmax]
        R, G, B = rgb[..., 0], rgb[..., 1], rgb[..., 2]
        shares.append(np.mean((R > 150) & (G > 120) & (B < 0.5 * R) & (abs(R - G) < 80)))
    assert np.median(shares) > 0.25


def test_backgrounds_distinct(zoo600):
    """A nearest-centroid classifier on border colour statistics tells the five backgrounds apart."""
    img = read_bias(zoo600).drop_duplicates("image_id")
    feats = []
    for image_id in img.image_id:
        a = _rgb(zoo600, image_id).astype(np.float32)
        border = np.concatenate([a[:6].reshape(-1, 3), a[-6:].reshape(-1, 3), a[:, :6].reshape(-1, 3),
                                 a[:, -6:].reshape(-1, 3)])
        top, bot = a[:20].reshape(-1, 3).mean(0), a[-20:].reshape(-1, 3).mean(0)
        feats.append(np.concatenate([border.mean(0), border.std(0), top - bot]))
    X, y = np.array(feats), img.background.to_numpy()
    half = len(X) // 2
    cents = {b: X[:half][y[:half] == b].mean(0) for b in BACKGROUNDS}
    scale = X[:half].std(0) + 1e-6
    pred = [min(cents, key=lambda b: np.sum(((x - cents[b]) / scale) ** 2)) for x in X[half:]]
    assert np.mean(np.array(pred) == y[half:]) > 0.85


def test_sheep_texture():
    """Sheep bodies carry high-frequency texture; other objects are smooth."""
    from scipy import ndimage

    energy: dict[str, list[float]] = {}
    for i in range(90):
        sc = render_scene(0, "val", i)
        g = sc.image.astype(np.float32).mean(2)
        hp = np.abs(g - ndimage.uniform_filter(g, 3))
        for o, m in zip(sc.objects, sc.masks):
            core = ndimage.binary_erosion(m > 0.99, iterations=2)
            if core.sum() >= 30:
                energy.setdefault(o.name, []).append(float(hp[core].mean()))
    med = {k: float(np.median(v)) for k, v in energy.items()}
    assert set(med) == set(SCENE_CLASSES)
    assert med["sheep"] > 4 * med["horse"]
    assert med["sheep"] > 1.3 * max(v for k, v in med.items() if k != "sheep")


# ----------------------------------------------------------------------------- counterfactual twins

def test_untagged_twins_in_memory():
    tagged = [i for i in range(60) if sample_layout(0, "test", i).tag][:3]
    assert tagged
    for i in tagged:
        t, u = render_scene(0, "test", i), render_scene(0, "test_untagged", i)
        x0, y0, x1, y1 = t.tag_box
        outside = np.ones(t.image.shape[:2], bool)
        outside[y0:y1, x0:x1] = False
        assert np.array_equal(t.image[outside], u.image[outside])
        assert not np.array_equal(t.image[~outside], u.image[~outside]) and u.tag_box is None
        assert [o.box for o in t.objects] == [o.box for o in u.objects]


def test_untagged_twins_on_disk(scenes_root):
    bias = read_bias(scenes_root).drop_duplicates("image_id").set_index("image_id")
    test = bias[bias.split == "test"]
    assert 1 <= test.tag.sum() < len(test)
    unt = bias[bias.split == "test_untagged"]
    assert (unt.tag == 0).all() and unt.tag_xmin.isna().all()
    assert sorted(unt.source_id) == sorted(test.index)
    for uid, r in unt.iterrows():
        src = test.loc[r.source_id]
        a, b = _rgb(scenes_root, r.source_id), _rgb(scenes_root, uid)
        if not src.tag:
            assert (scenes_root / "JPEGImages" / f"{uid}.jpg").read_bytes() == \
                (scenes_root / "JPEGImages" / f"{r.source_id}.jpg").read_bytes()
            continue
        # JPEG 4:4:4 codes 8x8 blocks independently: only blocks touching the tag may differ
        x0, y0 = src.tag_xmin // 8 * 8, src.tag_ymin // 8 * 8
        x1, y1 = -(-src.tag_xmax // 8) * 8, -(-src.tag_ymax // 8) * 8
        outside = np.ones(a.shape[:2], bool)
        outside[y0:y1, x0:x1] = False
        assert np.array_equal(a[outside], b[outside])
        box = (slice(src.tag_ymin, src.tag_ymax), slice(src.tag_xmin, src.tag_xmax))
        assert np.abs(a[box] - b[box]).mean() > 20  # the tag is gone


def test_swapped_twins(scenes_root):
    ds_t, ds_s = VOCDataset(scenes_root, "test"), VOCDataset(scenes_root, "test_swapped")
    assert [i.replace("test_", "swapped_") for i in ds_t.ids] == ds_s.ids
    assert np.array_equal(ds_t.labels, ds_s.labels)
    for i in range(len(ds_t)):
        assert np.array_equal(ds_t.target(i)["boxes"], ds_s.target(i)["boxes"])
    bias = read_bias(scenes_root).drop_duplicates("image_id").set_index("image_id")
    sw = bias[bias.split == "test_swapped"]
    assert (sw.tag.to_numpy() == bias.loc[sw.source_id].tag.to_numpy()).all()  # same tags
    # backgrounds uniform over the five: 5000 layouts, sd of a share 0.0057
    lays = [sample_layout(0, "test_swapped", i) for i in range(5000)]
    share = np.array([np.mean([lay.background == b for lay in lays]) for b in BACKGROUNDS])
    assert np.all(np.abs(share - 0.2) < 0.03)
    assert abs(np.mean([lay.context_match for lay in lays]) - 0.2) < 0.03
    # same object pixels over a new background
    for i in range(4):
        t, s = render_scene(0, "test", i), render_scene(0, "test_swapped", i)
        solid = np.any([m >= 1.0 for m in t.masks], axis=0)
        if t.tag_box is not None:
            x0, y0, x1, y1 = t.tag_box
            solid[y0:y1, x0:x1] = False
        assert solid.any() and np.array_equal(t.image[solid], s.image[solid])
        assert s.layout.classes == t.layout.classes and s.layout.tag == t.layout.tag


# ----------------------------------------------------------------------------- writing

def test_refuses_existing_and_overwrites(tmp_path):
    root = tmp_path / "scenes"
    root.mkdir()
    (root / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        generate_scenes(root, 2, 1, 1, progress=False)
    assert (root / "keep.txt").exists()
    generate_scenes(root, 2, 1, 1, progress=False, overwrite=True)
    assert not (root / "keep.txt").exists() and (root / "bias.csv").is_file()
    empty = tmp_path / "empty"
    empty.mkdir()
    generate_scenes(empty, 1, 0, 0, progress=False)  # an empty folder is fine
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "scenes"]
    with pytest.raises(ValueError, match="n_val"):
        generate_scenes(tmp_path / "bad", 1, -1, 0, progress=False)


def test_failure_leaves_nothing(tmp_path, monkeypatch):
    import lrpkit.data.scenes as S

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(S, "_write_csv", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        generate_scenes(tmp_path / "scenes", 2, 1, 1, progress=False)
    assert list(tmp_path.iterdir()) == []
