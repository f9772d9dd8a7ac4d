"""FV-LRP on real scene images against eq. 20 / 22 / 23 evaluated by brute force.

The closed form of :func:`lrpkit.fisher.feature_relevance` never builds the mapping matrix
m_d(l); here it is materialised with :func:`lrpkit.fisher.fv_contributions` and the rules of
Lapuschkin et al., "Analyzing Classifiers: Fisher Vectors and Deep Neural Networks", CVPR 2016,
App. C (eq. 17, 20, 22, 23) are applied literally.  On real scenes, low-contrast patches give
all-zero SIFT descriptors (contrast threshold), which share one PCA feature; the GMM puts a
component on it, so m_mu(l) = gamma (l - mu) / sigma is rounding noise (~1e-14) there.  The
closed form used to lose up to 1 % of f(x) on such images with rule="plain" (its expanded
quadratic form subtracted numbers ~1e14 |R3 mu|); this test fails on that code.
"""
from __future__ import annotations

import numpy as np
import pytest

from lrpkit.fisher import (FisherVectorClassifier, FisherVectorEncoder, feature_relevance,
                           fv_contributions, improve)

ZTOL = 1e-10


@pytest.fixture(scope="module")
def scene_model(tmp_path_factory):
    data = pytest.importorskip("lrpkit.data")
    root = tmp_path_factory.mktemp("fvscenes") / "scenes"
    data.generate_scenes(root, n_train=30, n_val=4, n_test=6, seed=0, progress=False, n_jobs=1)
    train, test = data.VOCDataset(root, "train"), data.VOCDataset(root, "test")
    imgs = [train[i][0] for i in range(len(train))]
    enc = FisherVectorEncoder(bin_sizes=(4, 6), step=4, n_components=16, pca_dim=16,
                              n_samples=20000, gmm_max_iter=50, random_state=0)
    clf = FisherVectorClassifier(enc, C=1.0).fit(imgs, np.asarray(train.labels))
    feats = [clf.encoder_.local_features(test[i][0])[0] for i in range(len(test))]
    return clf, feats


def brute_force(feats, gmm, w, b, rule, epsilon=100.0):
    """Eq. 17 and 20 / 22 / 23 from the materialised mapping m_d(l) (M x dims)."""
    m = fv_contributions(feats, gmm)                  # (M, dims); raw FV = m.mean(0)
    M = m.shape[0]
    phi = improve(m.mean(0))
    R3 = w * phi + b / phi.shape[0]                   # eq. 17
    z = m.sum(0)
    S = np.abs(m).sum(0)
    Z = S == 0                                        # Z(x): m_d(l) = 0 for every l
    cancelled = (np.abs(z) <= ZTOL * S) & ~Z          # documented: a sum cancelled to rounding noise
    if rule == "plain":                               # eq. 20 (cancelled sums count as Z)
        Z = Z | cancelled
        R2 = m[:, ~Z] @ (R3[~Z] / z[~Z])
    elif rule == "epsilon":                           # eq. 22, sgn(0) = +1
        zz = np.where(cancelled, 0.0, z)
        den = zz + epsilon * np.where(zz >= 0, 1.0, -1.0)
        R2 = m[:, ~Z] @ (R3[~Z] / den[~Z])
    else:                                             # eq. 23
        R2 = np.abs(m[:, ~Z]) @ (R3[~Z] / S[~Z])
    return R2 + R3[Z].sum() / M, float(w @ phi + b), R3


@pytest.mark.parametrize("rule", ["plain", "epsilon", "absolute"])
def test_feature_relevance_matches_brute_force_on_scene_images(scene_model, rule):
    clf, feats = scene_model
    gmm = clf.encoder_.gmm_
    signs = set()
    for f in feats:
        scores = clf.score_fv(improve(np.mean(fv_contributions(f, gmm), 0)))[0]
        # the best and the worst class: a positive and a negative score on most images
        for t in (int(scores.argmax()), int(scores.argmin())):
            w, b = clf.coef_[t], clf.intercept_[t]
            ref, fx, R3 = brute_force(f, gmm, w, b, rule)
            r = feature_relevance(f, gmm, w, b, rule=rule, sparse_tol=0.0)
            signs.add(np.sign(fx))
            assert r.fx == pytest.approx(fx, rel=1e-9, abs=1e-12)
            np.testing.assert_allclose(r.layer3, R3, rtol=1e-7, atol=1e-12)
            scale = np.abs(ref).max()
            np.testing.assert_allclose(r.feature, ref, rtol=0, atol=1e-9 * scale,
                                       err_msg=f"rule={rule} target={t} f(x)={fx:+.4f}")
            if rule != "epsilon":                     # eq. 20 and 23 conserve
                assert r.total == pytest.approx(fx, rel=1e-10, abs=1e-12)
                assert ref.sum() == pytest.approx(fx, rel=1e-10, abs=1e-12)
    assert signs == {-1.0, 1.0}, "targets with positive and negative scores must both be tested"


def test_scene_images_hit_the_ill_conditioned_case(scene_model):
    """The data of the test above reproduce the case of the defect: a GMM component whose
    features equal its mean up to rounding (the zeroed low-contrast descriptors)."""
    clf, feats = scene_model
    gmm = clf.encoder_.gmm_
    f = np.concatenate(feats)
    d = np.abs(f[:, None, :] - gmm.means_[None]) / np.sqrt(gmm.covariances_)[None]
    assert (d.max(-1) < 1e-6).any(axis=0).any()
