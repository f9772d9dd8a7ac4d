"""Intervals, verdicts and findings (lrpkit.evaluate.intervals) and the twin score drop."""
from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from scipy.stats import binomtest

from lrpkit.evaluate import (average_precision, bootstrap_ci, score_drop, twin_drop)
from lrpkit.evaluate import intervals as I


# ------------------------------------------------------------------ Wilson

def test_wilson_hand_computed_case():
    # 7 of 20 at 95 %: z = 1.959964, p = 0.35, denom = 1 + z^2/20 = 1.192073,
    # centre = (0.35 + z^2/40) / denom = 0.374169, half = z/denom sqrt(p q/20 + z^2/1600) = 0.192977
    iv = I.wilson_interval(7, 20)
    assert iv.estimate == 0.35 and iv.n == 20 and iv.method == "wilson"
    assert iv.low == pytest.approx(0.181192, abs=2e-6)
    assert iv.high == pytest.approx(0.567146, abs=2e-6)


@pytest.mark.parametrize("k,n,ci", [(0, 10, 0.95), (10, 10, 0.95), (16, 200, 0.95), (3, 7, 0.9),
                                    (150, 300, 0.99)])
def test_wilson_matches_scipy(k, n, ci):
    ref = binomtest(k, n).proportion_ci(confidence_level=ci, method="wilson")
    iv = I.wilson_interval(k, n, ci=ci)
    assert iv.low == pytest.approx(ref.low, abs=1e-12)
    assert iv.high == pytest.approx(ref.high, abs=1e-12)
    assert iv.low <= iv.estimate <= iv.high


def test_wilson_is_not_wald_at_the_edges():
    iv = I.wilson_interval(0, 12)
    assert iv.low == 0.0 and iv.high > 0.2           # Wald would give [0, 0]
    assert np.isnan(I.wilson_interval(0, 0).low)
    with pytest.raises(ValueError, match="successes"):
        I.wilson_interval(5, 3)


# ------------------------------------------------------------------ bootstrap

def test_paired_interval_resamples_images_jointly():
    rng = np.random.default_rng(3)
    base = rng.normal(0.0, 10.0, 40)                  # image-to-image spread shared by both sides
    a = base + 0.1 + rng.normal(0.0, 0.02, 40)
    b = base.copy()
    iv = I.paired_interval(a, b, n_boot=2000, seed=0)
    assert iv.estimate == pytest.approx(np.mean(a - b))
    assert 0.0 < iv.low < 0.1 < iv.high < 0.2          # resolved and narrow
    assert I.difference_verdict(iv) == I.RESOLVED
    # resampling the two sides independently would drown the 0.1 in the spread of 10
    ia, ib = I.bootstrap_interval(a, seed=0), I.bootstrap_interval(b, seed=1)
    assert (ia.high - ia.low) > 20 * (iv.high - iv.low) and ib.n == 40
    # for the mean: the same resamples as the one-sample interval of the differences
    d = I.bootstrap_interval(a - b, n_boot=2000, seed=0)
    assert (iv.low, iv.high) == pytest.approx((d.low, d.high), abs=1e-12)


def test_paired_median_is_difference_of_medians():
    a = np.array([1.0, 2.0, 3.0, 10.0, 20.0])
    b = np.array([0.0, 0.0, 1.0, 1.0, 50.0])
    iv = I.paired_interval(a, b, stat="median", n_boot=300, seed=2)
    assert iv.estimate == np.median(a) - np.median(b) == 2.0
    rng = np.random.default_rng(2)
    idx = rng.integers(0, 5, (300, 5))
    boots = np.median(a[idx], 1) - np.median(b[idx], 1)
    assert (iv.low, iv.high) == pytest.approx(tuple(np.quantile(boots, [0.025, 0.975])))


def test_paired_interval_drops_nan_pairs_and_checks_shapes():
    iv = I.paired_interval([1.0, np.nan, 3.0, 5.0], [0.0, 1.0, np.nan, 1.0], n_boot=50)
    assert iv.n == 2 and iv.estimate == pytest.approx(2.5)
    with pytest.raises(ValueError, match="one value per image"):
        I.paired_interval([1.0, 2.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="average the repeats"):
        I.bootstrap_interval(np.ones((3, 4)))


@pytest.mark.parametrize("method", ["percentile", "BCa"])
def test_bootstrap_interval_close_to_normal_theory(method):
    rng = np.random.default_rng(0)
    v = rng.normal(2.0, 1.0, 400)
    iv = I.bootstrap_interval(v, n_boot=4000, seed=1, method=method)
    half = 1.96 * v.std(ddof=1) / np.sqrt(v.size)
    assert iv.low == pytest.approx(v.mean() - half, abs=0.15 * half)
    assert iv.high == pytest.approx(v.mean() + half, abs=0.15 * half)
    assert iv.method == method


def test_seed_reproduces_and_constant_data_is_zero_width():
    v = np.arange(10.0) ** 2
    assert I.bootstrap_interval(v, seed=4) == I.bootstrap_interval(v, seed=4)
    assert I.bootstrap_interval(v, seed=4) != I.bootstrap_interval(v, seed=5)
    for m in I.METHODS:
        c = I.bootstrap_interval([3.0] * 6, method=m)
        assert (c.low, c.high) == (3.0, 3.0)
    with pytest.raises(ValueError, match="method"):
        I.bootstrap_interval(v, method="studentized")


def test_bootstrap_ci_is_the_same_implementation():
    v = np.array([1.0, 2.0, 3.0, 4.0, 100.0])
    est, lo, hi = bootstrap_ci(v, n_boot=500, seed=0)
    boots = np.median(v[np.random.default_rng(0).integers(0, 5, (500, 5))], 1)
    assert (est, lo, hi) == pytest.approx((3.0, *np.quantile(boots, [0.025, 0.975])))


def test_ratio_interval_is_a_ratio_of_sums():
    num = np.array([1.0, 2.0, 3.0, 0.001])
    den = np.array([2.0, 4.0, 6.0, 1e-9])             # a near-zero denominator
    iv = I.ratio_interval(num, den, n_boot=500)
    assert iv.estimate == pytest.approx(6.001 / 12.0)
    assert np.mean(num / den) > 1e5                    # the mean of ratios it avoids
    assert iv.high < 1.0


# ------------------------------------------------------------------ AP

def _ap_case(seed=0, n=50):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.4).astype(int)
    y[:2] = [1, 0]
    s = y * 1.0 + rng.normal(0, 0.8, n)
    return y, s


def test_ap_interval_resamples_images():
    y, s = _ap_case()
    iv = I.ap_interval(y, s, n_boot=200, seed=3)
    assert iv.estimate == average_precision(y, s)
    idx = np.random.default_rng(3).integers(0, y.size, (200, y.size))
    boots = np.array([average_precision(y[i], s[i]) for i in idx])
    boots = boots[~np.isnan(boots)]
    assert (iv.low, iv.high) == pytest.approx(tuple(np.quantile(boots, [0.025, 0.975])))
    assert iv.low < iv.estimate < iv.high
    perfect = I.ap_interval([1, 1, 0, 0], [4.0, 3.0, 2.0, 1.0], n_boot=100)
    assert perfect.estimate == 1.0 and perfect.high == 1.0


def test_paired_ap_interval():
    y, s = _ap_case(1)
    same = I.paired_ap_interval(y, s, s, n_boot=100)
    assert (same.estimate, same.low, same.high) == (0.0, 0.0, 0.0)
    worse = s - 2.0 * y * (np.arange(y.size) % 2)    # half of the positives sink
    iv = I.paired_ap_interval(y, s, worse, n_boot=200)
    assert iv.estimate == pytest.approx(average_precision(y, s) - average_precision(y, worse))
    assert iv.low > 0 and I.claim_verdict(iv, ">") == I.REPRODUCED


# ------------------------------------------------------------------ verdicts

def test_difference_and_claim_verdicts():
    assert I.difference_verdict((0.1, 0.3)) == "resolved"
    assert I.difference_verdict((-0.1, 0.3)) == "not resolved"
    assert I.difference_verdict((np.nan, np.nan)) == "not resolved"
    assert I.claim_verdict((0.2, 0.5), ">") == "reproduced"
    assert I.claim_verdict((-0.5, -0.2), ">") == "contradicted"
    assert I.claim_verdict((-0.5, -0.2), "less") == "reproduced"
    assert I.claim_verdict((-0.1, 0.2), ">") == "not resolved"
    # a rate against the paper's 50 %: Wilson [5 %, 13 %] contradicts "above 0.5"
    assert I.claim_verdict(I.wilson_interval(16, 200), ">", reference=0.5) == "contradicted"
    assert I.claim_verdict(I.wilson_interval(16, 200), ">", reference=0.04) == "reproduced"
    assert I.claim_verdict(I.wilson_interval(16, 200), ">", reference=0.05) == "not resolved"
    with pytest.raises(ValueError, match="direction"):
        I.claim_verdict((0.1, 0.2), "up")


# ------------------------------------------------------------------ xarray

def _methods_da(seed=0, n=30):
    rng = np.random.default_rng(seed)
    base = rng.normal(0, 3, n)
    vals = np.stack([base + 1.0 + rng.normal(0, 0.3, n), base + rng.normal(0, 0.3, n),
                     base + rng.normal(0, 0.3, n)])
    return xr.DataArray(vals, dims=("method", "image"),
                        coords={"method": ["lrp", "deconvnet", "random"]})


def test_paired_interval_dataset_against_random():
    da = _methods_da()
    ds = I.paired_interval_dataset(da, "image", over="method", baseline="random", n_boot=300)
    assert list(ds.method.values) == ["lrp", "deconvnet"]
    for v in ("estimate", "low", "high", "n", "verdict"):
        assert v in ds and ds[v].dims == ("method",)
    ref = I.paired_interval(da.sel({"method": "lrp"}).values, da.sel({"method": "random"}).values,
                           n_boot=300)
    assert float(ds.low.sel({"method": "lrp"})) == pytest.approx(ref.low)
    assert ds.verdict.sel({"method": "lrp"}).item() == "resolved"
    assert ds.verdict.sel({"method": "deconvnet"}).item() == "not resolved"
    assert ds.n.values.tolist() == [30, 30] and ds.attrs["baseline"] == "random"
    with pytest.raises(ValueError, match="baseline"):
        I.paired_interval_dataset(da, baseline="nope")


def test_pairwise_interval_dataset_is_antisymmetric():
    da = _methods_da(1)
    ds = I.paired_interval_dataset(da, baseline=None, n_boot=200)
    assert ds.estimate.dims == ("method", "versus")
    e = ds.estimate.values
    np.testing.assert_allclose(e, -e.T, atol=1e-12)
    np.testing.assert_allclose(np.diag(e), 0.0, atol=1e-12)
    assert ds.verdict.sel({"method": "lrp", "versus": "random"}).item() == "resolved"


def test_interval_dataset_and_attach():
    da = _methods_da(2).transpose("image", "method")
    iv = I.interval_dataset(da, "image", stat="median", n_boot=200, seed=7)
    one = I.bootstrap_interval(da.sel({"method": "lrp"}).values, stat="median", n_boot=200,
                               seed=7)
    assert float(iv.high.sel({"method": "lrp"})) == pytest.approx(one.high)
    res = xr.Dataset({"aopc": da.mean("image")})
    out = I.attach_interval(res, "aopc_interval", iv)
    assert out["aopc_interval"].dims == ("method", "bound")
    assert list(out["bound"].values) == ["estimate", "low", "high"]
    assert float(out["aopc_interval"].sel({"method": "lrp", "bound": "low"})) == pytest.approx(one.low)
    assert out["aopc_interval_n"].values.tolist() == [30, 30, 30]
    assert "aopc" in out and out["aopc_interval"].attrs["stat"] == "median"
    df = I.interval_frame(iv)
    assert list(df.columns) == ["estimate", "low", "high", "n", "verdict"] and len(df) == 3
    with pytest.raises(ValueError, match="lacks"):
        I.attach_interval(res, "x", iv[["estimate"]])


# ------------------------------------------------------------------ findings

def test_findings_follow_from_the_numbers():
    rng = np.random.default_rng(5)
    base = rng.normal(0, 2, 24)
    rnd = base + rng.normal(0, 0.1, 24)
    lrp = rnd + 0.7 + rng.normal(0, 0.3, 24)
    deconv = rnd + np.tile([1.0, -1.0], 12) - 0.05          # mean -0.05, spread 1: not resolved
    rows = [
        I.finding("LRP a2b1 AOPC above random (Samek et al. 2017, Fig. 4)",
                  I.paired_interval(lrp, rnd), direction=">", paper="above"),
        I.finding("deconvnet AOPC below random", I.paired_interval(deconv, rnd), direction="<",
                  paper="below"),
        I.finding("FV uses more context than the CNN (mu FV - mu CNN)",
                  I.Interval(-1.29, -1.6, -0.9, 30), direction=">", paper=0.5,
                  reason="on these scenes the CNN is the less accurate model and leans on context"),
        I.finding("defended adversarial success rate below 4 %", I.wilson_interval(16, 200),
                  direction="<", reference=0.04, paper="8.3 %", percent=True),
    ]
    verdicts = [r.verdict for r in rows]
    assert verdicts == ["reproduced", "not resolved", "contradicted", "contradicted"]
    assert rows[0].reason == ""
    assert "n=24" in rows[1].reason and "covers 0" in rows[1].reason
    assert rows[2].reason.startswith("on these scenes")
    assert "above 4.0 %" in rows[3].reason            # generated: where the interval lies
    df = I.findings_table(rows)
    assert list(df.columns) == ["claim", "paper", "this run", "interval", "n", "verdict", "reason"]
    assert df["n"].tolist() == [24, 24, 30, 200] and df.loc[3, "this run"] == "8.0 %"
    md = I.findings_markdown(rows)
    lines = md.splitlines()
    assert len(lines) == 2 + len(rows) and lines[0].startswith("| claim | paper |")
    assert "| contradicted |" in lines[4]
    with pytest.raises(TypeError, match="Finding"):
        I.findings_table([{"claim": "x"}])


# ------------------------------------------------------------------ twins: score drop vs AP

def test_score_drop_sees_what_ap_does_not():
    rng = np.random.default_rng(0)
    y = np.r_[np.ones(15), np.zeros(25)]
    neg = rng.normal(-3, 0.5, 25)
    s = np.r_[rng.normal(4, 0.5, 15), neg]
    st = np.r_[s[:15] - 3.0 + rng.normal(0, 0.2, 15), neg]     # tag removed: every score drops
    r = score_drop(s, st, y, n_boot=500)
    assert r["drop"].estimate == pytest.approx(np.mean(s[:15] - st[:15]))
    assert r["drop"].low > 2.5 and r["verdict"] == "resolved"
    # the positives still outrank every negative: AP is 1 on both, its drop exactly 0
    ap = r["ap_drop"]
    assert (ap.estimate, ap.low, ap.high) == pytest.approx((0.0, 0.0, 0.0), abs=1e-12)
    assert r["score"] > r["twin_score"]


def test_twin_drop_over_models_and_classes():
    rng = np.random.default_rng(1)
    n, c = 30, 2
    labels = (rng.random((n, c)) < 0.5).astype(float)
    labels[:2] = [[1, 0], [0, 1]]
    ref = labels * 3 + rng.normal(0, 0.5, (2, n, c))
    tw = ref.copy()
    tagged = np.arange(n) < 12
    tw[0, tagged, 0] -= 2.0                                      # model A, class 0, tagged rows
    res = xr.Dataset({"scores": (("split", "model", "image", "class"), np.stack([ref, tw])),
                      "labels": (("split", "image", "class"), np.stack([labels, labels]))},
                     coords={"split": ["test", "test_untagged"], "model": ["A", "B"],
                             "class": ["horse", "car"], "image": np.arange(n)})
    ds = twin_drop(res, "test_untagged", n_boot=300)
    assert int(ds.n_images) == 12                               # unchanged twins left out
    assert ds.score_drop_verdict.sel(model="A", **{"class": "horse"}).item() == "resolved"
    assert float(ds.score_drop.sel(model="A", **{"class": "horse"})) == pytest.approx(2.0)
    assert float(ds.score_drop.sel(model="B", **{"class": "horse"})) == 0.0
    assert int(ds.n.sel(model="A", **{"class": "horse"})) == int(labels[tagged, 0].sum())
    with pytest.raises(ValueError, match="twin split"):
        twin_drop(res, "test_swapped")
