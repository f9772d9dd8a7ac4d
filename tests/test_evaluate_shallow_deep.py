"""lrpkit.evaluate.shallow_deep: per-class average heatmaps, mu, tag shares (fake models, hand cases)."""
from __future__ import annotations

import numpy as np
import pytest

from lrpkit.evaluate.shallow_deep import MapModel, class_average_heatmaps, tag_relevance


class Img:
    """A stand-in image: what the fake models read, and a PIL-like ``size``."""

    def __init__(self, name, box=None, size=(8, 8)):
        self.name, self.box, self.size = name, box, size


def hot(shape, box, value=1.0, rest=0.0):
    """A map of ``rest`` with ``value`` inside the 0-based half-open box (x0, y0, x1, y1)."""
    m = np.full(shape, rest)
    x0, y0, x1, y1 = box
    m[y0:y1, x0:x1] = value
    return m


def test_class_average_heatmaps_by_hand():
    # model "A" puts 2 inside the box and 1 outside on a 4x4 map; "B" doubles the image's
    # coordinates (8x8 map) and puts relevance outside the box only
    def maps_a(images, target):
        return [hot((4, 4), im.box, 2.0, 1.0) * (target + 1) for im in images], np.array([1.0] * len(images))

    def maps_b(images, target):
        return [hot((8, 8), tuple(2 * v for v in im.box), 0.0, 1.0) for im in images], np.zeros(len(images))

    def boxes_b(b, size):
        return 2 * np.asarray(b, float).reshape(-1, 4)

    a = MapModel("A", maps_a)
    b = MapModel("B", maps_b, boxes_b)
    im1, im2 = Img("1", (0, 0, 2, 2), (4, 4)), Img("2", (2, 2, 4, 4), (4, 4))
    samples = {"x": [(im1, [im1.box]), (im2, [im2.box])], "y": [(im1, [im1.box])]}
    ds = class_average_heatmaps([a, b], samples, classes=["x", "y", "z"])
    assert list(ds.n_average.values) == [2, 1, 0]
    # A, class x: each map / 2 -> 1 in its box, .5 elsewhere; averaged over the two boxes
    want = (hot((4, 4), (0, 0, 2, 2), 1, .5) + hot((4, 4), (2, 2, 4, 4), 1, .5)) / 2
    np.testing.assert_allclose(ds.avg_heatmap_a.sel({"class": "x"}), want)
    np.testing.assert_allclose(ds.avg_heatmap_a.sel({"class": "y"}), hot((4, 4), (0, 0, 2, 2), 1, .5))
    np.testing.assert_allclose(ds.avg_heatmap_a.sel({"class": "z"}), 0)   # no sample: zeros
    assert ds.avg_heatmap_b.dims == ("class", "b_y", "b_x") and ds.avg_heatmap_b.shape == (3, 8, 8)
    # mu = mean R+ outside / inside: A 1/2 (times the class factor on both sides), B inf (0 inside)
    mu = ds.context_ratio
    assert mu.dims == ("class", "model", "sample") and mu.sizes["sample"] == 2
    np.testing.assert_allclose(mu.sel(model="A", **{"class": "x"}), [0.5, 0.5])
    assert np.isinf(mu.sel(model="B", **{"class": "x"})).all()
    assert np.isnan(mu.sel(model="A", **{"class": "y"}).values[1])         # padding
    assert float(ds.context_ratio_median.sel(model="A", **{"class": "y"})) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="not in classes"):
        class_average_heatmaps([a], {"q": []}, classes=["x"])


def test_class_average_heatmaps_caps_samples_and_explains_the_class_index():
    seen = []

    def maps(images, target):
        seen.append((len(images), target))
        return [np.eye(3) for _ in images], np.ones(len(images))

    m = MapModel("M", maps)
    s = [(np.zeros((3, 3, 3)), [(0, 0, 1, 1)])] * 5
    ds = class_average_heatmaps([m], {"p": s, "q": s}, max_samples=2)
    assert seen == [(2, 0), (2, 1)] and list(ds.n_average.values) == [2, 2]
    # eye(3) with box over pixel (0, 0): inside mean 1, outside 2/8
    np.testing.assert_allclose(ds.context_ratio.sel(model="M").values, 0.25)


def test_tag_relevance_by_hand():
    tag = (0, 6, 2, 8)                                        # bottom-left 2x2 of an 8x8 image

    def maps(images, target):
        out = []
        for im in images:
            if im.name == "tagged":
                out.append(hot((8, 8), tag, 3.0, 1 / 60))     # 12 inside, 60 * 1/60 = 1 outside
            else:
                out.append(np.ones((8, 8)))                   # uniform
        return out, np.array([2.0 if im.name == "tagged" else -1.0 for im in images])

    def off_crop(b, size):                                   # a model whose input misses the tag
        b = np.asarray(b, float).reshape(-1, 4).copy()
        b[:, [0, 2]] = np.clip(b[:, [0, 2]] - 2, 0, 8)
        return b

    models = [MapModel("F", maps), MapModel("G", maps, off_crop)]
    ds = tag_relevance(models, [("c0", Img("tagged"), Img("clean"), tag)], target=4, margin=1)
    sh = ds.tag_share.sel(case="c0")
    assert float(sh.sel(model="F", version="test", region="tag box")) == pytest.approx(12 / 13)
    assert float(sh.sel(model="F", version="test_untagged", region="tag box")) == pytest.approx(4 / 64)
    # grown by 1 px (clipped to the map): x -1..3, y 5..9 -> 3 x 3 pixels; tagged: 12 + 5/60
    grown = sh.sel(model="F", region="tag box + 1 px")
    assert float(grown.sel(version="test")) == pytest.approx((12 + 5 / 60) / 13)
    assert float(grown.sel(version="test_untagged")) == pytest.approx(9 / 64)
    assert float(ds.tag_area_share.sel(case="c0", model="F")) == pytest.approx(4 / 64)
    np.testing.assert_allclose(ds.score.sel(case="c0", model="F"), [2.0, -1.0])
    # the tag box leaves model G's input: NaN share and area, the grown box still has 1 column
    assert np.isnan(sh.sel(model="G", region="tag box")).all()
    assert np.isnan(ds.tag_area_share.sel(case="c0", model="G"))
    assert np.isfinite(sh.sel(model="G", region="tag box + 1 px")).all()
    assert ds.attrs["target"] == 4
    with pytest.raises(ValueError, match="tag box"):
        tag_relevance(models, [("c1", Img("tagged"), Img("clean"), (0, 1, 2))], target=0)
