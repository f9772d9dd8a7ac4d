"""lrpkit.evaluate.scoring: twins, scores, per-class AP by split, true-positive pairs (hand cases)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from lrpkit.data import transforms as T
from lrpkit.evaluate.scoring import (ap_by_split, ap_intervals, image_scores, interval_at, interval_table,
                                     load_twins, per_class_ap, true_positive_pairs, twin_key)


class FakeSplit:
    """A VOCDataset look-alike: ids, classes, labels, ignore, ds[i] -> (image, target)."""

    def __init__(self, ids, labels, images, ignore=None, classes=("a", "b")):
        self.ids, self.classes = list(ids), tuple(classes)
        self.labels = np.asarray(labels, np.float32)
        self.ignore = np.zeros(self.labels.shape, bool) if ignore is None else np.asarray(ignore, bool)
        self.images = images

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return self.images[i], {"id": self.ids[i]}


def img(v):
    return Image.fromarray(np.full((4, 6, 3), v, np.uint8))


class MeanModel:
    """Scores (mean pixel / 255, 1 - mean pixel / 255); counts the images it encodes."""

    def __init__(self):
        self.seen = 0

    def decision_function(self, images):
        self.seen += len(images)
        m = np.array([np.asarray(im, float).mean() / 255 for im in images])
        return np.stack([m, 1 - m], 1)


def test_twin_key():
    assert twin_key("test_000123") == twin_key("swapped_000123") == twin_key("untagged_000123") == "000123"
    assert twin_key("plain") == "plain"


@pytest.fixture
def splits():
    labels = [[1, 0], [0, 1], [1, 1], [0, 1]]
    test = FakeSplit([f"test_{i}" for i in range(4)], labels, [img(v) for v in (200, 10, 150, 60)])
    # the twin split lists its images in another order; image 1 differs, the others are identical
    order = [3, 1, 0, 2]
    vals = {0: 200, 1: 90, 2: 150, 3: 60}
    sw = FakeSplit([f"swapped_{i}" for i in order], [labels[i] for i in order], [img(vals[i]) for i in order])
    return {"test": test, "test_swapped": sw}


def test_load_twins_aligns_rows_by_key_and_subsets_with_the_seed(splits):
    tw = load_twins(splits, ["test", "test_swapped"])
    assert tw.splits == ["test", "test_swapped"] and tw.classes == ["a", "b"] and len(tw) == 4
    assert tw.keys == ["0", "1", "2", "3"]
    assert tw.ids["test_swapped"] == ["swapped_0", "swapped_1", "swapped_2", "swapped_3"]
    np.testing.assert_array_equal(tw.labels["test_swapped"], tw.labels["test"])
    assert np.asarray(tw.images["test_swapped"][1]).mean() == 90
    sub = load_twins(splits, ["test", "test_swapped"], n_images=2, seed=5)
    assert sub.keys == [str(i) for i in sorted(np.random.default_rng(5).permutation(4)[:2])]
    with pytest.raises(ValueError, match="n_images"):
        load_twins(splits, ["test"], n_images=0)


def test_load_twins_leaves_out_missing_splits_and_twins(splits):
    with pytest.warns(UserWarning, match="test_untagged"):
        tw = load_twins(splits, ["test", "test_untagged"])
    assert tw.splits == ["test"]
    short = dict(splits, test_swapped=FakeSplit(["swapped_0"], [[1, 0]], [img(1)]))
    with pytest.warns(UserWarning, match="no twin for 3 of 4"):
        assert load_twins(short, ["test", "test_swapped"]).splits == ["test"]


def test_per_class_ap_by_hand():
    labels = np.array([[1, 0], [0, 0], [1, 0], [0, 0]])
    scores = np.array([[0.9, 1], [0.8, 2], [0.7, 3], [0.1, 4]])
    ap = per_class_ap(labels, scores)
    # ranks 1 (pos), 2 (neg), 3 (pos): precision 1/1 and 2/3 at the positives
    assert ap[0] == pytest.approx((1 + 2 / 3) / 2)
    assert np.isnan(ap[1])                                    # no positive: NaN (metrics' rule)
    ignore = np.zeros_like(labels, bool)
    ignore[1, 0] = True                                       # a difficult-only pair is left out
    assert per_class_ap(labels, scores, ignore)[0] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="ignore"):
        per_class_ap(labels, scores, ignore[:2])
    with pytest.raises(ValueError, match="labels and scores"):
        per_class_ap(labels, scores[:, :1])


def test_ap_by_split_reuses_identical_images_and_matches_hand_ap(splits):
    tw = load_twins(splits, ["test", "test_swapped"])
    m = MeanModel()
    res = ap_by_split({"mean": m}, tw)
    assert m.seen == 4 + 1                                    # only the one changed twin re-scored
    assert res["n_scored"].sel(split="test_swapped", model="mean") == 1
    assert res.ap.dims == ("split", "model", "class") and list(res.image.values) == tw.keys
    s = res.scores.sel(split="test_swapped", model="mean", **{"class": "a"}).values
    np.testing.assert_allclose(s, np.array([200, 90, 150, 60]) / 255)
    # test, class a: scores 200, 10, 150, 60 with positives 0 and 2 -> ranked first: AP 1
    assert float(res.ap.sel(split="test", model="mean", **{"class": "a"})) == pytest.approx(1.0)
    # class b (score 1 - mean): positives 1, 2, 3 at scores .96, .41, .76 ; negative 0 at .22 -> AP 1
    assert float(res.ap.sel(split="test", model="mean", **{"class": "b"})) == pytest.approx(1.0)
    # swapped, class b: image 1 now at 1 - 90/255 = .65 (still above the negative): AP 1;
    # class a: positives 0, 2 (200, 150) above 90, 60 -> 1
    np.testing.assert_allclose(res.ap.sel(split="test_swapped").values, 1.0)
    np.testing.assert_allclose(res.mAP.values, 1.0)
    m2 = MeanModel()
    ap_by_split({"mean": m2}, tw, reuse_identical=False)
    assert m2.seen == 8


def test_ap_by_split_hand_ap_below_one():
    labels = [[1, 0], [0, 1], [1, 1], [0, 1]]
    ds = {"test": FakeSplit([f"test_{i}" for i in range(4)], labels, [img(v) for v in (200, 250, 10, 60)])}
    res = ap_by_split({"m": MeanModel()}, load_twins(ds, ["test"]))
    # class a ranked by mean: 250 (neg), 200 (pos), 60 (neg), 10 (pos): P = 1/2 and 2/4
    assert float(res.ap.sel(split="test", model="m", **{"class": "a"})) == pytest.approx((1 / 2 + 2 / 4) / 2)
    with pytest.raises(ValueError, match="models"):
        ap_by_split({}, load_twins(ds, ["test"]))


def test_image_scores_torch_matches_manual_centre_crop_and_batches():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 2))
    net.meta = {"size": 10, "input_size": 8}
    rng = np.random.default_rng(0)
    ims = [Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)) for h, w in [(6, 9), (9, 6), (7, 7)]]
    with torch.no_grad():
        want = net(T.to_tensor_batch(ims, 10, 8)).numpy()
    np.testing.assert_allclose(image_scores(net, ims), want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(image_scores(net, ims, batch_size=1), want, rtol=1e-5, atol=1e-6)
    net.train()
    image_scores(net, ims)
    assert net.training                                        # mode restored
    m = MeanModel()
    np.testing.assert_allclose(image_scores(m, [img(51)]), [[0.2, 0.8]])
    with pytest.raises(TypeError, match="decision_function"):
        image_scores(object(), ims)


def test_true_positive_pairs_round_robin_and_fallback():
    labels = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 0], [1, 0, 1]])
    scores = np.array([[1., -1, -1], [2, 3, -1], [-1, -2, -1], [4, -1, -2]])
    # true positives: class 0 -> images 0, 1, 3; class 1 -> image 1; class 2 -> none
    pairs = true_positive_pairs(labels, scores, 10, seed=0)
    assert sorted(pairs) == [(0, 0), (1, 0), (1, 1), (3, 0)]
    assert pairs[1] == (1, 1)                                 # second pick: the next class in turn
    first = true_positive_pairs(labels, scores, 2, seed=3)
    assert len(first) == 2 and first[1] == (1, 1) and first[0][1] == 0
    assert true_positive_pairs(labels, scores, 0) == []
    # nothing scored > 0: the highest-scored positive image per class with positives
    none = true_positive_pairs(labels, -np.abs(scores) - 1 + 0 * scores, 5)
    assert none == [(0, 0), (2, 1), (3, 2)]
    with pytest.raises(ValueError, match="n must"):
        true_positive_pairs(labels, scores, -1)


# ------------------------------------------------------------------ intervals (ap_intervals)

def _res(scores, labels, splits=("test",), models=("m",)):
    """An ap_by_split-like Dataset from scores (split, model, image, class) and labels (image, class)."""
    import xarray as xr

    scores = np.asarray(scores, float)
    labels = np.asarray(labels, float)
    ap = np.array([[per_class_ap(labels, scores[s, m]) for m in range(len(models))] for s in range(len(splits))])
    return xr.Dataset(
        {"ap": (("split", "model", "class"), ap), "mAP": (("split", "model"), np.nanmean(ap, -1)),
         "scores": (("split", "model", "image", "class"), scores),
         "labels": (("split", "image", "class"), np.stack([labels] * len(splits)))},
        coords={"split": list(splits), "model": list(models), "class": [f"c{i}" for i in range(labels.shape[1])],
                "image": [str(i) for i in range(labels.shape[0])]})


def test_weighted_ap_is_the_ap_of_the_resample_and_matches_ap_interval():
    from lrpkit.evaluate.intervals import ap_interval
    from lrpkit.evaluate.metrics import average_precision
    from lrpkit.evaluate.scoring import bootstrap_counts, weighted_ap

    rng = np.random.default_rng(3)
    y = rng.random(80) < 0.3
    s = np.round(rng.normal(size=80) + y, 1)                  # ties on purpose
    counts = bootstrap_counts(80, 50, seed=7)
    assert counts.shape == (50, 80) and (counts.sum(1) == 80).all()
    for row in counts[:5]:                                    # = AP of the images repeated by their counts
        idx = np.repeat(np.arange(80), row)
        assert weighted_ap(y, s, row[None])[0] == pytest.approx(average_precision(y[idx], s[idx]))
    # zero weight = left out (VOC difficult)
    w = np.ones(80)
    w[:10] = 0
    diff = np.zeros(80, bool)
    diff[:10] = True
    assert weighted_ap(y, s, w[None])[0] == pytest.approx(average_precision(y, s, difficult=diff))
    assert np.isnan(weighted_ap(np.zeros(80), s, np.ones((1, 80)))[0])
    # one class, one split: the interval of ap_intervals is ap_interval's (same draws)
    res = _res(s[None, None, :, None], y[:, None])
    iv = ap_intervals(res, n_boot=300, seed=4)["ap"].sel(split="test", model="m", **{"class": "c0"})
    ref = ap_interval(y, s, n_boot=300, seed=4)
    assert float(iv.low) == pytest.approx(ref.low) and float(iv.high) == pytest.approx(ref.high)
    assert float(iv.estimate) == pytest.approx(ref.estimate) and int(iv.n) == 80


def test_ap_intervals_pair_the_twins_and_the_models():
    rng = np.random.default_rng(0)
    n = 120
    labels = (rng.random((n, 2)) < 0.4).astype(float)
    good = labels + rng.normal(0, 0.5, (n, 2))
    noise = rng.normal(0, 0.5, (n, 2))
    # split 1 = the reference with class c0 broken (noise), c1 unchanged; model "n" is noise
    scores = np.stack([np.stack([good, noise]), np.stack([np.c_[noise[:, 0], good[:, 1]], noise])])
    res = _res(scores, labels, splits=("test", "test_swapped"), models=("g", "n"))
    ivs = ap_intervals(res, n_boot=400, seed=1)
    assert set(ivs) == {"ap", "mAP", "ap_drop", "mAP_drop", "mAP_gap"}
    drop = ivs["ap_drop"].sel(split="test_swapped", model="g")
    assert drop["verdict"].sel(**{"class": "c0"}) == "resolved" and float(drop.low.sel(**{"class": "c0"})) > 0
    c1 = drop.sel(**{"class": "c1"})                          # an unchanged twin: exactly 0, not resolved
    assert float(c1.estimate) == float(c1.low) == float(c1.high) == 0.0 and c1.verdict == "not resolved"
    gap = ivs["mAP_gap"].sel(split="test")
    assert float(gap.low.sel(model="g", versus="n")) > 0
    np.testing.assert_allclose(gap.estimate.sel(model="g", versus="n"), -gap.estimate.sel(model="n", versus="g"))
    np.testing.assert_allclose(ivs["mAP"].estimate, res.mAP)
    iv = interval_at(ivs["mAP_drop"], split="test_swapped", model="g")
    assert iv.n == n and iv.low <= iv.estimate <= iv.high
    with pytest.raises(ValueError, match="select one cell"):
        interval_at(ivs["mAP_drop"], model="g")
    table = interval_table(ivs["ap"], "class", digits=2)
    assert list(table.columns) == ["c0", "c1"] and table.loc[("test", "g"), "c1"].count("[") == 1
    single = ap_intervals(res.isel(split=[0], model=[0]), n_boot=50)
    assert set(single) == {"ap", "mAP"}
