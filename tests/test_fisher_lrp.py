"""FV-LRP (Lapuschkin et al. 2016, eq. 17-23; Bach et al. 2016, Sec. 3): conservation, reference,
planted relevance."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA
from sklearn.mixture import GaussianMixture

import lrpkit
from lrpkit.fisher import (FisherLRP, FisherVectorClassifier, FisherVectorEncoder, feature_relevance,
                           fv_contributions, improve, pixel_map, project_to_sift)

from images import H, W, stripes


@pytest.fixture(scope="module")
def clf():
    v = np.array([0, 1] * 12)
    enc = FisherVectorEncoder(bin_sizes=(4, 6), step=4, pca_dim=8, n_components=4, n_samples=4000,
                              gmm_max_iter=50)
    return FisherVectorClassifier(enc).fit(stripes(len(v), v), np.stack([v, 1 - v], 1))


@pytest.fixture(scope="module")
def toy():
    """Features from a 3-component GMM in 5-D, a fitted GMM and a random SVM."""
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 3, (3, 5))
    X = np.concatenate([c + rng.normal(0, 1, (200, 5)) for c in centres])
    gmm = GaussianMixture(3, covariance_type="diag", random_state=0).fit(X)
    feats = np.concatenate([c + rng.normal(0, 1, (n, 5)) for c, n in zip(centres, (12, 20, 33))])
    w = rng.normal(0, 1, 3 * 11)
    return feats, gmm, w, 0.3


def reference(feats, gmm, w, b, rule, eps=100.0):
    """Slow, explicit eq. 17 + 20/22/23: loop over features and FV dimensions."""
    psi = fv_contributions(feats, gmm)                  # m_d(l)  (M, dims)
    M, dims = psi.shape
    phi = improve(psi.mean(0))
    R3 = w * phi + b / dims
    Z = [d for d in range(dims) if np.all(psi[:, d] == 0)]
    xi = sum(R3[d] for d in Z) / M
    R2 = np.zeros(M)
    for l in range(M):
        tot = 0.0
        for d in range(dims):
            if d in Z:
                continue
            if rule == "absolute":
                tot += R3[d] * abs(psi[l, d]) / np.abs(psi[:, d]).sum()
            else:
                z = psi[:, d].sum()
                den = z + (eps * (1.0 if z >= 0 else -1.0) if rule == "epsilon" else 0.0)
                tot += R3[d] * psi[l, d] / den
        R2[l] = tot + xi
    return R2, float(w @ phi + b)


@pytest.mark.parametrize("rule", ["plain", "absolute", "epsilon"])
def test_closed_form_matches_slow_reference(toy, rule):
    feats, gmm, w, b = toy
    ref, fx = reference(feats, gmm, w, b, rule, eps=1.0)
    r = feature_relevance(feats, gmm, w, b, rule=rule, epsilon=1.0, per_dim=True)
    assert r.fx == pytest.approx(fx, rel=1e-10)
    np.testing.assert_allclose(r.feature, ref, rtol=1e-7, atol=1e-10 * np.abs(ref).max())
    np.testing.assert_allclose(r.dims.sum(1), r.feature, rtol=1e-9, atol=1e-12)


def test_reference_with_empty_component_uses_Z_set(toy):
    """A component no feature is assigned to: its mu/sigma dims form Z(x) and go to xi (eq. 20)."""
    feats, gmm, w, b = toy
    sel = feats[gmm.predict(feats) != 0]
    g = gmm.predict_proba(sel)
    g[:, 1] += g[:, 0]
    g[:, 0] = 0.0                                      # force gamma_0(l) = 0 exactly
    r = feature_relevance(sel, gmm, w, b, rule="plain", gamma=g)
    assert r.extra["n_zero_dims"] == 10 and r.extra["xi"] != 0
    assert r.total == pytest.approx(r.fx, rel=1e-6)


@pytest.mark.parametrize("rule", ["plain", "absolute"])
def test_plain_and_absolute_conserve(clf, rule):
    img = stripes(1, [1], seed=5)[0]
    for t in (0, 1):
        r = FisherLRP(clf, rule=rule).relevance(img, t)
        assert r.total == pytest.approx(r.fx, rel=1e-6)


def test_cancelling_pi_sums_keep_conservation():
    """Equal soft counts (sum_l gamma_k(l) = pi_k M): the pi sums z_d cancel to rounding noise.
    The plain rule must neither drop that relevance (0/0) nor blow it up (R / 1e-16)."""
    rng = np.random.default_rng(3)
    half = rng.normal(0, 1, (40, 3)) + 1.0
    feats = np.concatenate([half, -half])                 # mirror pairs: equal soft counts
    gmm = GaussianMixture(2, covariance_type="diag").fit(feats)
    gmm.weights_ = np.array([0.5, 0.5])
    gmm.means_ = np.array([[1.0, 0.5, -0.2], [-1.0, -0.5, 0.2]])
    gmm.covariances_ = np.full((2, 3), 0.8)
    gmm.precisions_cholesky_ = 1 / np.sqrt(gmm.covariances_)
    w = rng.normal(0, 1, 2 * 7)
    w[:2] = [3.0, -2.0]                                   # the pi dimensions carry relevance
    r = feature_relevance(feats, gmm, w, 0.1, rule="plain")
    assert r.total == pytest.approx(r.fx, rel=1e-9)
    assert np.abs(r.feature).max() < 10 * abs(r.fx) + 1
    # the result does not hang on the rounding noise's sign: another summation order (the
    # features permuted) gives the same relevances, for plain and epsilon alike
    perm = rng.permutation(len(feats))
    for rule in ("plain", "epsilon"):
        a = feature_relevance(feats, gmm, w, 0.1, rule=rule, epsilon=1.0).feature
        b = feature_relevance(feats[perm], gmm, w, 0.1, rule=rule, epsilon=1.0).feature
        # (the power normalisation turns the noise into |R3_pi| ~ 1e-8: that much may differ)
        np.testing.assert_allclose(b, a[perm], rtol=1e-6, atol=1e-7)


def test_cancelling_mu_sums_keep_conservation():
    """Features symmetric about mu_k: the mu sums z_d cancel (rounding noise), the m_d(l) do not.
    The plain rule keeps their relevance (as Z, uniformly) and conserves; the result does not
    depend on the noise (summation order)."""
    rng = np.random.default_rng(4)
    mu = np.array([[0.3, -1.7, 2.9, 0.05]])
    d = rng.normal(0, 1, (30, 4))
    feats = np.concatenate([mu + d, mu - d])
    gmm = GaussianMixture(1, covariance_type="diag").fit(feats)
    gmm.weights_, gmm.means_ = np.array([1.0]), mu
    gmm.covariances_ = np.full((1, 4), 0.7)
    gmm.precisions_cholesky_ = 1 / np.sqrt(gmm.covariances_)
    w = rng.normal(0, 1, 9)
    r = feature_relevance(feats, gmm, w, -0.2, rule="plain")
    # pi (gamma = pi = 1: exactly Z) and the 4 mu dims (cancelled); sigma sums do not cancel
    assert r.extra["n_cancelled_dims"] + r.extra["n_zero_dims"] >= 5
    assert r.total == pytest.approx(r.fx, rel=1e-9)
    assert np.abs(r.feature).max() < 10 * np.abs(w).sum()
    perm = rng.permutation(len(feats))
    for rule in ("plain", "epsilon"):
        a = feature_relevance(feats, gmm, w, -0.2, rule=rule, epsilon=1.0).feature
        b = feature_relevance(feats[perm], gmm, w, -0.2, rule=rule, epsilon=1.0).feature
        # (the power normalisation turns the noise into |R3_mu| ~ 1e-8: that much may differ)
        np.testing.assert_allclose(b, a[perm], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="ztol"):
        feature_relevance(feats, gmm, w, 0.0, ztol=-1.0)


def test_epsilon_does_not_conserve_and_shrinks(clf):
    img = stripes(1, [1], seed=5)[0]
    lrp0 = FisherLRP(clf, rule="epsilon", epsilon=0.0).relevance(img, 0)
    assert lrp0.total == pytest.approx(lrp0.fx, rel=1e-6)           # eps = 0 is the plain rule
    totals = [abs(FisherLRP(clf, rule="epsilon", epsilon=e).relevance(img, 0).total)
              for e in (100.0, 1e4, 1e6)]
    assert abs(totals[0] - abs(lrp0.fx)) > 1e-3 * abs(lrp0.fx)     # default eps=100 loses relevance
    assert totals[0] > totals[1] > totals[2]


@pytest.mark.parametrize("resolution", ["feature", "bin"])
def test_pixel_maps_conserve_feature_relevance(clf, resolution):
    img = stripes(1, [0], seed=6)[0]
    r = FisherLRP(clf, rule="absolute").relevance(img, 1, resolution=resolution)
    pm = r.pixel_map(resolution)
    assert pm.shape == (H, W)
    assert pm.sum() == pytest.approx(r.total, rel=1e-9)
    if resolution == "bin":
        np.testing.assert_allclose(r.sift.sum(1), r.feature, rtol=1e-7, atol=1e-9 * np.abs(r.feature).max())
        np.testing.assert_allclose(r.bins.sum(1), r.feature, rtol=1e-7, atol=1e-9 * np.abs(r.feature).max())


def test_pixel_map_rectangles():
    rects = np.array([[0, 0, 4, 4], [10, 10, 20, 20], [-2, -2, 2, 2], [30, 30, 40, 40]])
    pm = pixel_map(np.array([16.0, 5.0, 8.0, 7.0]), rects, (20, 20))
    assert pm[:4, :4].sum() == pytest.approx(16.0 + 8.0)            # clipped rect: all 8 kept
    assert pm[10:, 10:].sum() == pytest.approx(5.0)
    assert pm.sum() == pytest.approx(29.0)                           # feature outside: nothing
    assert np.all(pm[4:10, :] == 0) and np.all(pm[:, 4:10] == 0)
    np.testing.assert_allclose(pm[10:20, 10:20], 0.05)


def test_feature_outside_region_gives_no_pixel_relevance(clf):
    img = stripes(1, [1], seed=7)[0]
    r = FisherLRP(clf).relevance(img, 0)
    keep = np.zeros(len(r.feature), bool)
    keep[np.argmax(np.abs(r.feature))] = True
    pm = pixel_map(np.where(keep, r.feature, 0.0), r.frames.rect, (H, W))
    y0, x0, y1, x1 = r.frames.rect[keep][0]
    inside = np.zeros((H, W), bool)
    inside[y0:y1, x0:x1] = True
    assert np.all(pm[~inside] == 0) and pm[inside].sum() == pytest.approx(r.feature[keep][0])


def test_planted_component_gets_the_relevance(toy):
    """An SVM that only weighs GMM component k*: features near k* carry the relevance."""
    feats, gmm, _, _ = toy
    K, D = gmm.means_.shape
    k = 1
    w = np.zeros(K * (1 + 2 * D))
    w[K + k * D:K + (k + 1) * D] = 1.0            # mu block of component k
    w[k] = 1.0                                     # pi entry of component k
    r = feature_relevance(feats, gmm, w, 0.0, rule="absolute")
    g = gmm.predict_proba(feats)[:, k]
    near = g > 0.5
    assert near.sum() >= 10
    assert np.abs(r.feature[near]).sum() > 0.9 * np.abs(r.feature).sum()


def test_planted_pixels_on_stripes(clf):
    """Left half vertical stripes, right half flat grey: 'vertical' relevance lies left.

    The plain rule gives the grey half negative evidence; the epsilon rule absorbs its weak
    contributions, so there the grey half only has to stay near zero (its sign is noise)."""
    v = stripes(1, [1], seed=8)[0]
    img = np.concatenate([v[:, :, :W // 2], np.full_like(v[:, :, W // 2:], 0.5)], 2)
    for rule in ("plain", "epsilon"):
        for res in ("feature", "bin"):
            pm = FisherLRP(clf, rule=rule).relevance(img, 0, resolution=res).pixel_map(res)
            left, right = pm[:, :W // 2 - 8].sum(), pm[:, W // 2 + 8:].sum()
            assert left > 0 and right < 0.1 * left, (rule, res, left, right)
            if rule == "plain":
                assert right < 0, (res, right)


def test_projection_to_sift_conserves():
    rng = np.random.default_rng(0)
    S = rng.random((300, 128))
    pca = PCA(8).fit(S)
    R = rng.normal(size=(20, 8))
    for pe in (0.0, 0.5, 3.0):
        out = project_to_sift(R, S[:20], pca, pca_epsilon=pe)
        np.testing.assert_allclose(out.sum(1), R.sum(1), rtol=1e-9, atol=1e-9)
    with pytest.raises(ValueError, match="pca_epsilon"):
        project_to_sift(R, S[:20], pca, pca_epsilon=-1)


class AxisPCA:
    """A PCA whose components are SIFT axes: coordinate r is SIFT dim ``dims[r]`` minus its mean."""

    def __init__(self, dims, var):
        self.components_ = np.eye(128)[dims]
        self.mean_ = np.full(128, 0.1)
        self.explained_variance_ = np.asarray(var, dtype=np.float64)


def test_projection_by_hand_and_planted_bin():
    # PCA coordinates 0, 1 are SIFT dims 5*8+2 and 5*8+7 (both in spatial bin 5), coordinate 2
    # is dim 11*8 (bin 11); the z-rule gives each coordinate's relevance to its own dim
    dims = [5 * 8 + 2, 5 * 8 + 7, 11 * 8]
    pca = AxisPCA(dims, [0.04, 0.04, 0.04])                    # eps_r = pca_epsilon * 0.2
    desc = np.full((1, 128), 0.1)
    desc[0, dims] = [0.5, -0.3, 0.1 + 1e-9]                      # l = [0.4, -0.4, ~0]
    R = np.array([[2.0, 1.0, 0.0]])
    plain = project_to_sift(R, desc, pca, pca_epsilon=0.0)
    expected = np.zeros(128)
    expected[dims[:2]] = [2.0, 1.0]
    np.testing.assert_allclose(plain[0], expected, atol=1e-9)
    bins = plain.reshape(16, 8).sum(1)
    assert bins[5] == pytest.approx(3.0) and np.abs(np.delete(bins, 5)).max() < 1e-9
    # stabilised: each keeps |l| / (|l| + eps) = 0.4 / 0.5, the rest is spread over 128 dims
    stab = project_to_sift(R, desc, pca, pca_epsilon=0.5)
    spread = (2.0 + 1.0) * 0.1 / 0.5 / 128
    expected = np.full(128, spread)
    expected[dims[:2]] += [2.0 * 0.8, 1.0 * 0.8]
    np.testing.assert_allclose(stab[0], expected, atol=1e-12)
    bins = stab.reshape(16, 8).sum(1)                           # the planted bin stands out
    assert bins.argmax() == 5 and bins[5] > 0.8 * 3.0
    np.testing.assert_allclose(np.delete(bins, 5), 8 * spread, rtol=1e-12)
    # conserve=False: the absorbed share is dropped, nothing reaches the other bins
    drop = project_to_sift(R, desc, pca, pca_epsilon=0.5, conserve=False)
    np.testing.assert_allclose(drop, stab - spread, atol=1e-12)
    assert drop.sum() == pytest.approx(0.8 * 3.0)
    # a coordinate ~0 with relevance does not explode (plain z-rule: 1e9 amplification)
    R0 = np.array([[0.0, 0.0, 1.0]])
    assert np.abs(project_to_sift(R0, desc, pca, pca_epsilon=0.5)).sum() <= 1.0 + 1e-9


def test_planted_bin_through_the_whole_bin_resolution_path():
    """Descriptors whose PCA coordinates are SIFT dims of spatial bin 6 only; an SVM that weighs
    only the mu / sigma blocks of those coordinates: all relevance kept by the z-rule lands in
    bin 6 of every descriptor, the other 15 bins get only the (uniform) absorbed share."""
    rng = np.random.default_rng(7)
    dims = [6 * 8 + 1, 6 * 8 + 4, 6 * 8 + 6]
    pca = AxisPCA(dims, [0.05 ** 2] * 3)                         # the data's variance
    desc = np.full((300, 128), 0.1) + rng.normal(0, 0.05, (300, 128))
    feats = (desc - pca.mean_) @ pca.components_.T
    gmm = GaussianMixture(2, covariance_type="diag", random_state=0).fit(feats)
    K, D = gmm.means_.shape
    w = np.zeros(K * (1 + 2 * D))
    w[K:] = rng.normal(0, 1, 2 * K * D)                          # mu and sigma blocks only
    r = feature_relevance(feats[:40], gmm, w, 0.0, rule="plain", per_dim=True)
    assert np.all(r.extra["uniform"] == 0)
    for pe in (0.0, 0.5):
        sift = project_to_sift(r.dims, desc[:40], pca, pca_epsilon=pe)
        bins = sift.reshape(40, 16, 8).sum(-1)
        np.testing.assert_allclose(bins.sum(1), r.feature, rtol=1e-9, atol=1e-12)
        other = np.delete(bins, 6, axis=1)
        # other bins: only the absorbed share, 8/128 of it each (none at all for pe=0)
        np.testing.assert_allclose(other, other[:, :1].repeat(15, 1), atol=1e-12)
        if pe == 0:
            np.testing.assert_allclose(other, 0, atol=1e-12)
        assert np.abs(bins[:, 6]).sum() > 0.4 * np.abs(bins).sum()


def test_bin_maps_are_not_cancelling_noise(clf):
    """Bach et al. 2016, Sec. 3 needs a stabilised PCA step: with it the bin map's absolute mass stays
    within a small factor of the feature map's; the plain z-rule amplifies noise."""
    img = stripes(1, [1], seed=21)[0]
    lrp = FisherLRP(clf, rule="plain")
    r = lrp.relevance(img, 0, "bin")
    feat = np.abs(r.pixel_map("feature")).sum() / abs(r.pixel_map("feature").sum())
    ratio = np.abs(r.pixel_map("bin")).sum() / abs(r.pixel_map("bin").sum())
    raw = FisherLRP(clf, rule="plain", pca_epsilon=0.0).relevance(img, 0, "bin")
    raw_ratio = np.abs(raw.pixel_map("bin")).sum() / abs(raw.pixel_map("bin").sum())
    assert ratio < 4 * feat < raw_ratio
    np.testing.assert_allclose(r.pixel_map("bin").sum(), r.feature.sum(), rtol=1e-9)


def test_registered_in_explain(clf):
    assert "fv_lrp" in lrpkit.methods()
    m = lrpkit.methods()["fv_lrp"]
    assert m.model_kind == "fisher" and m.params == {"rule": "epsilon", "epsilon": 100.0, "resolution": "feature",
                                                 "pca_epsilon": 0.5, "pca_conserve": True}
    x = torch.from_numpy(stripes(2, [1, 0], seed=10))
    coef = clf.coef_.copy()
    R = lrpkit.explain(clf, x, "pred", method="fv_lrp", rule="plain", resolution="bin")
    assert R.shape == x.shape and R.dtype == x.dtype
    np.testing.assert_array_equal(clf.coef_, coef)
    s = clf.decision_function(x)
    np.testing.assert_allclose(R.sum((1, 2, 3)).numpy(), s.max(1), rtol=1e-4)
    r0 = FisherLRP(clf, rule="plain").relevance(x[0], int(s[0].argmax()), "bin")
    np.testing.assert_allclose(R[0].sum(0).numpy(), r0.pixel_map("bin"), rtol=1e-5, atol=1e-8)


def test_bad_arguments(clf):
    img = stripes(1, [1])[0]
    with pytest.raises(ValueError, match="rule"):
        FisherLRP(clf, rule="alpha")
    with pytest.raises(ValueError, match="resolution"):
        FisherLRP(clf).relevance(img, 0, resolution="pixel")
    with pytest.raises(ValueError, match="out of range"):
        FisherLRP(clf).relevance(img, 5)
    with pytest.raises(ValueError, match="unknown parameter"):
        lrpkit.explain(clf, torch.from_numpy(img[None]), 0, method="fv_lrp", alpha=1)
    with pytest.raises(Exception, match="not fitted"):
        FisherLRP(FisherVectorClassifier())


def test_relevance_from_descriptors_matches_relevance(clf):
    img = stripes(1, [1], seed=11)[0]
    lrp = FisherLRP(clf, rule="epsilon", epsilon=1.0)
    desc, frames = clf.encoder_.sift(img)
    for res in ("feature", "bin"):
        a = lrp.relevance(img, 1, res)
        b = lrp.relevance_from_descriptors(desc, frames, 1, res, feats=clf.encoder_.project(desc))
        np.testing.assert_array_equal(a.feature, b.feature)
        np.testing.assert_array_equal(a.pixel_map(res), b.pixel_map(res))
    with pytest.raises(ValueError, match="resolution"):
        lrp.relevance_from_descriptors(desc, frames, 1, "pixel")


def test_absolute_rule_default_sparsity_is_near_exact(clf):
    enc = clf.encoder_
    feats, _ = enc.local_features(stripes(1, [0], seed=31)[0])
    w, b = clf.coef_[0], clf.intercept_[0]
    exact = feature_relevance(feats, enc.gmm_, w, b, rule="absolute", sparse_tol=0).feature
    fast = feature_relevance(feats, enc.gmm_, w, b, rule="absolute").feature
    assert np.abs(fast - exact).max() <= 1e-6 * np.abs(exact).max()
    assert fast.sum() == pytest.approx(exact.sum(), rel=1e-12)


def test_explain_with_a_class_index_does_not_encode_twice(clf, monkeypatch):
    """An int target is checked against coef_: no extra encoding of the batch to count classes."""
    x = torch.from_numpy(stripes(1, [1], seed=12))

    def boom(*a, **k):
        raise AssertionError("decision_function called")

    monkeypatch.setattr(clf, "decision_function", boom)
    R = lrpkit.explain(clf, x, 1, method="fv_lrp")
    assert R.shape == x.shape
    with pytest.raises(ValueError, match="out of range"):
        lrpkit.explain(clf, x, 2, method="fv_lrp")


def test_one_vocabulary_of_rule_names():
    from lrpkit.evaluate.resampling import parse_rule as order_rule
    from lrpkit.fisher import parse_rule, rule_name

    assert parse_rule("epsilon_100") == ("epsilon", 100.0)
    assert parse_rule("epsilon", 3.0) == ("epsilon", 3.0)
    assert parse_rule("plain") == ("plain", 100.0) and parse_rule("absolute")[0] == "absolute"
    assert rule_name("epsilon", 100.0) == "epsilon_100" and rule_name("epsilon_0.5") == "epsilon_0.5"
    assert rule_name("plain") == "plain"
    with pytest.raises(ValueError, match="unknown rule 'alpha'"):
        parse_rule("alpha")
    # the resampling orders use the same names (plus "random")
    assert order_rule("epsilon_100") == parse_rule("epsilon_100")
    assert order_rule("random") is None
    # the explainer takes either spelling and gives the same relevances
    rng = np.random.default_rng(0)
    from sklearn.mixture import GaussianMixture

    gmm = GaussianMixture(3, covariance_type="diag", random_state=0).fit(rng.normal(size=(200, 4)))
    f = rng.normal(size=(30, 4))
    w, b = rng.normal(size=3 * 9), 0.3
    a = feature_relevance(f, gmm, w, b, rule="epsilon_7")
    c = feature_relevance(f, gmm, w, b, rule="epsilon", epsilon=7.0)
    np.testing.assert_array_equal(a.feature, c.feature)
    assert a.rule == "epsilon" and a.epsilon == 7.0
