"""Context measurement helpers of notebooks 02 / 03: regions with padding and tag kept apart, the
ratio-of-densities estimator, batched AP, checkpoint correlations and the shared result cache."""
import numpy as np
import pytest
import xarray as xr

from lrpkit.evaluate.checkpoint_context import (batched_average_precision, checkpoint_context, correlation_interval,
                                                map_difference, map_drop_intervals, paired_ap_drop,
                                                spearman_rows)
from lrpkit.evaluate.context import relevance_regions
from lrpkit.evaluate.context_summary import context_ratio_between, context_ratio_intervals
from lrpkit.evaluate.intervals import bootstrap_indices, bootstrap_interval, paired_ap_interval, percentile_bounds
from lrpkit.evaluate.metrics import average_precision
from lrpkit.evaluate.result_cache import cached_dataset


def test_regions_keep_padding_and_tag_out_of_the_context():
    R = np.ones((10, 10))
    R[:2] = 5.0                                    # padded rows: hot, but not the image
    R[8:, :2] = 3.0                                # the tag
    reg = relevance_regions(R, (4, 4, 6, 6), frame=(0, 2, 10, 10), tag=(0, 8, 2, 10))
    assert reg["padding"] == (100.0, 20)
    assert reg["inside"] == (4.0, 4)
    assert reg["tag"] == (12.0, 4)
    assert reg["context"] == (80 - 4 - 4, 72)


def _ds(d_in, d_ctx):
    n = len(d_in)
    r = np.zeros((1, 1, n, 4))
    r[0, 0, :, 0], r[0, 0, :, 1] = d_in, d_ctx     # one pixel inside, one in the context
    px = np.ones_like(r)
    return xr.Dataset({"region_relevance": (("class", "model", "sample", "region"), r),
                       "region_pixels": (("class", "model", "sample", "region"), px)},
                      coords={"class": ["a"], "model": ["M"],
                              "region": ["inside", "context", "tag", "padding"]})


def test_ratio_of_densities_is_not_ruled_by_an_image_with_nothing_inside():
    d_in = np.r_[np.full(30, 0.5), 1e-6]
    d_ctx = np.r_[np.full(30, 0.5), 1.0]
    ci = context_ratio_intervals(_ds(d_in, d_ctx), n_boot=200)
    est = float(ci.estimate.sel(model="M", **{"class": "a"}))
    assert 1.0 < est < 1.1                           # a mean of per-image ratios would be ~32000
    assert int(ci.n.sel(model="M", **{"class": "a"})) == 31
    ds = _ds(d_in, d_ctx)
    two = xr.concat([ds, ds.assign(region_relevance=ds.region_relevance * [1, 2, 1, 1])], "model")
    two = two.assign_coords(model=["M", "N"])
    iv = context_ratio_between(two, "N", "M", n_boot=200)
    assert iv.estimate == pytest.approx(2.0, rel=0.05) and iv.low > 1.5   # normalised per image


def test_batched_ap_equals_the_package_ap_with_ties_and_left_out_images():
    rng = np.random.default_rng(3)
    y, s = rng.random(60) > 0.6, np.round(rng.normal(size=60), 1)
    w = (rng.random(60) > 0.2).astype(float)
    idx = rng.integers(0, 60, (4, 60))
    got = batched_average_precision(y, s, idx, w)
    want = [average_precision(y[i][w[i] > 0], s[i][w[i] > 0]) for i in idx]
    np.testing.assert_allclose(got, want)
    a, b = rng.normal(size=60), rng.normal(size=60)
    p, q = paired_ap_drop(y, a, b, n_boot=100, seed=1), paired_ap_interval(y, a, b, n_boot=100, seed=1)
    np.testing.assert_allclose([p.estimate, p.low, p.high], [q.estimate, q.low, q.high])


def test_spearman_rows():
    x = np.array([[1, 2, 3, 4.0], [1, 2, 3, 4.0]])
    np.testing.assert_allclose(spearman_rows(x, np.array([[4, 3, 2, 1.0], [1, 3, 2, 4.0]])), [-1.0, 0.8])


def test_cached_dataset_computes_once(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return xr.Dataset({"v": ("x", np.arange(3.0))})

    key = {"model": "abc", "n": 3}
    a = cached_dataset(tmp_path, "exp", key, compute)
    b = cached_dataset(tmp_path, "exp", key, compute)
    assert len(calls) == 1 and a.attrs["cache_hit"] == 0 and b.attrs["cache_hit"] == 1
    np.testing.assert_array_equal(a.v, b.v)
    cached_dataset(tmp_path, "exp", {**key, "n": 4}, compute)
    assert len(calls) == 2


def test_public_bootstrap_indices_are_the_draws_of_the_interval_functions():
    v = np.random.default_rng(5).normal(size=40)
    idx = bootstrap_indices(v.size, 300, seed=7)
    assert idx.shape == (300, 40)
    lo, hi = percentile_bounds(v[idx].mean(1), 0.9)
    iv = bootstrap_interval(v, n_boot=300, ci=0.9, seed=7)
    assert (lo, hi) == pytest.approx((iv.low, iv.high))


def _checkpoint_scores(rng, n=80, quality=(0.3, 0.8, 1.6)):
    """Three checkpoints of growing accuracy on 2 classes; the twins lose the signal."""
    y = (rng.random((n, 2)) > 0.5).astype(float)
    noise = rng.normal(size=(len(quality), n, 2))
    ref = np.stack([q * (2 * y - 1) + noise[k] for k, q in enumerate(quality)])
    twin = ref - np.stack([q * (2 * y - 1) for q in quality]) * 0.8
    return y, ref, twin


def test_checkpoint_context_correlates_map_with_mu_across_checkpoints():
    rng = np.random.default_rng(0)
    y, ref, twin = _checkpoint_scores(rng)
    n = y.shape[0]
    rows = np.arange(n)
    d_in = rng.uniform(0.5, 1.5, size=(3, n))
    d_ctx = d_in * np.array([[0.9], [0.5], [0.2]]) * rng.uniform(0.8, 1.2, size=(3, n))   # mu falls
    ck = checkpoint_context(ref, twin, y, None, d_ctx, d_in, rows, [1, 4, 30], n_boot=200)
    assert (np.diff(ck.mAP.values) > 0).all() and ck.mAP.values[-1] < 1.0
    assert (np.diff(ck.mu.values) < 0).all()
    rho = correlation_interval(ck, "spearman_map_mu")
    assert rho.estimate == -1.0 and rho.high < 0 and rho.n == n
    assert int(ck.n_pairs) == n and (ck.mu_low <= ck.mu).all() and (ck.mu <= ck.mu_high).all()
    # chance mAP: the mean positive rate; the drop as a share of the AP above it
    assert float(ck.chance_mAP) == pytest.approx(y.mean(0).mean())
    share = ck.map_drop / (ck.mAP - ck.chance_mAP)
    np.testing.assert_allclose(ck.map_drop_share, share)
    assert correlation_interval(ck, "spearman_map_drop_share").n == n
    with pytest.raises(ValueError, match="spearman_map_mu"):
        correlation_interval(ck, "mAP")
    with pytest.raises(ValueError, match="d_context"):
        checkpoint_context(ref, twin, y, None, d_ctx[:2], d_in, rows, [1, 4, 30])


def test_map_drop_intervals_pairs_models_on_the_same_resamples():
    rng = np.random.default_rng(1)
    y, ref, twin = _checkpoint_scores(rng, quality=(0.5, 3.0))
    twin[0] = ref[0] - 0.2 * (2 * y - 1)            # the weak model loses little on its twins
    twin[1] = ref[1] - 3.0 * (2 * y - 1)            # the strong one all of its signal
    ds, pairs = map_drop_intervals(ref, twin, y, models=["weak", "strong"], n_boot=200)
    drop = ds.estimate.values
    assert drop[1] > drop[0] > 0
    d = pairs[("strong", "weak")]
    assert d.estimate == pytest.approx(drop[1] - drop[0]) and d.low > 0
    assert pairs[("weak", "strong")].estimate == pytest.approx(-d.estimate)


def test_map_difference_of_two_models_on_the_same_images():
    rng = np.random.default_rng(2)
    y, ref, _ = _checkpoint_scores(rng, quality=(0.3, 2.0))
    iv = map_difference(ref[1], ref[0], y, n_boot=200)
    want = np.mean([average_precision(y[:, c], ref[1][:, c]) - average_precision(y[:, c], ref[0][:, c])
                    for c in range(2)])
    assert iv.estimate == pytest.approx(want) and iv.low > 0 and iv.n == y.shape[0]
