"""FV-LRP (paper 000 eq. 17-23, paper 001 Sec. 3): conservation, reference, planted relevance."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA
from sklearn.mixture import GaussianMixture

import lrpkit
from lrpkit.fisher import (FisherLRP, FisherVectorClassifier, FisherVectorEncoder, feature_relevance,
                           fv_contributions, improve, pixel_map, project_to_sift)

H, W = 48, 64


def stripes(n, vertical, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        im = rng.random((3, H, W)) * 0.1
        yy, xx = np.mgrid[:H, :W]
        pat = np.sin((xx if vertical[i] else yy) / rng.uniform(2.5, 4.0) + rng.uniform(0, 6)) > 0
        out.append(np.clip(im + 0.6 * pat, 0, 1))
    return np.stack(out).astype(np.float32)


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
    """Left half vertical stripes, right half flat grey: 'vertical' relevance lies left."""
    v = stripes(1, [1], seed=8)[0]
    img = np.concatenate([v[:, :, :W // 2], np.full_like(v[:, :, W // 2:], 0.5)], 2)
    for rule in ("plain", "epsilon"):
        for res in ("feature", "bin"):
            pm = FisherLRP(clf, rule=rule).relevance(img, 0, resolution=res).pixel_map(res)
            assert pm[:, :W // 2 - 8].sum() > 0 > pm[:, W // 2 + 8:].sum()


def test_projection_to_sift_conserves():
    rng = np.random.default_rng(0)
    S = rng.random((300, 128))
    pca = PCA(8).fit(S)
    R = rng.normal(size=(20, 8))
    out = project_to_sift(R, S[:20], pca)
    np.testing.assert_allclose(out.sum(1), R.sum(1), rtol=1e-9, atol=1e-9)


def test_registered_in_explain(clf):
    assert "fv_lrp" in lrpkit.methods()
    m = lrpkit.methods()["fv_lrp"]
    assert m.model_kind == "fisher" and m.params == {"rule": "epsilon", "epsilon": 100.0, "resolution": "feature"}
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
