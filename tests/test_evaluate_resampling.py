"""Local-feature resampling (Lapuschkin et al. 2016, App. D, Algorithm 1) on hand-built and tiny
fitted models."""
from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from sklearn.mixture import GaussianMixture

from lrpkit.evaluate import resampling as rs
from lrpkit.fisher import (FisherVectorClassifier, FisherVectorEncoder, fv_contributions, improve,
                           raw_fisher_vector)


def make_gmm(means, var, weights) -> GaussianMixture:
    means = np.asarray(means, float)
    gmm = GaussianMixture(n_components=means.shape[0], covariance_type="diag")
    gmm.weights_ = np.asarray(weights, float)
    gmm.means_ = means
    gmm.covariances_ = np.broadcast_to(np.asarray(var, float), means.shape).copy()
    gmm.precisions_cholesky_ = 1.0 / np.sqrt(gmm.covariances_)
    return gmm


def make_model(gmm, w, b) -> FisherVectorClassifier:
    """A FisherVectorClassifier 'fitted' by hand: one class, SVM (w, b) on the improved FV."""
    enc = FisherVectorEncoder()
    enc.gmm_ = gmm
    clf = FisherVectorClassifier(enc)
    clf.encoder_ = enc
    clf.coef_ = np.asarray(w, float)[None]
    clf.intercept_ = np.array([float(b)])
    clf.classes_ = np.arange(1)
    clf.class_names_ = ["planted"]
    return clf


@pytest.fixture
def small_gmm():
    rng = np.random.default_rng(1)
    return make_gmm(rng.normal(size=(3, 4)) * 2, rng.uniform(0.5, 2.0, size=(3, 4)), [0.5, 0.3, 0.2])


# --------------------------------------------------------------------------- Algorithm 1

def test_incremental_update_equals_reencoding(small_gmm):
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(57, 4)) * 2
    order = rng.permutation(57)
    new = rs.sample_gmm(small_gmm, 40, np.random.default_rng(5))
    res = rs.resample_fv(feats, small_gmm, order[:40], new, batch_size=7, n_steps=6,
                         return_features=True)
    assert res.raw.shape == (7, 3 * (1 + 2 * 4))
    np.testing.assert_array_equal(res.n_replaced, [0, 7, 14, 21, 28, 35, 40])
    # every intermediate step equals the raw FV of the feature set modified so far
    for i in range(7):
        g = feats.copy()
        k = min(i * 7, 40)
        g[order[:k]] = new[:k]
        np.testing.assert_allclose(res.raw[i], raw_fisher_vector(g, small_gmm), rtol=0, atol=1e-8)
    np.testing.assert_allclose(res.raw[-1], raw_fisher_vector(res.features, small_gmm), atol=1e-8)
    # and the raw FV is the mean of the per-feature contributions, as in the encoder
    np.testing.assert_allclose(res.raw[0], fv_contributions(feats, small_gmm).mean(0), atol=1e-12)
    # the untouched features stay; the others are the draws, in order
    np.testing.assert_array_equal(res.features[order[40:]], feats[order[40:]])
    np.testing.assert_array_equal(res.features[order[:40]], new)


def test_batch_sums_equal_summed_contributions(small_gmm):
    feats = np.random.default_rng(4).normal(size=(23, 4)) * 2
    sums = rs._batch_sums(feats, small_gmm, n_steps=5, batch_size=5)
    psi = fv_contributions(feats, small_gmm)
    for i in range(5):
        np.testing.assert_allclose(sums[i], psi[5 * i:5 * i + 5].sum(0), rtol=0, atol=1e-10)


def test_sample_gmm_is_seeded_and_follows_the_mixture(small_gmm):
    a = rs.sample_gmm(small_gmm, 4000, np.random.default_rng(3))
    b = rs.sample_gmm(small_gmm, 4000, np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)
    mean = small_gmm.weights_ @ small_gmm.means_
    np.testing.assert_allclose(a.mean(0), mean, atol=0.15)
    with pytest.raises(TypeError, match="Generator"):
        rs.sample_gmm(small_gmm, 3, 0)


def planted_case(n_bg=200, n_planted=20):
    """Background features near component 0; a few 'planted' features at the rare component 1,
    and an SVM that scores only the share of features assigned to component 1."""
    gmm = make_gmm([[0.0, 0.0], [6.0, 6.0]], 1.0, [0.95, 0.05])
    rng = np.random.default_rng(2)
    bg = rng.normal(size=(n_bg, 2))
    planted = np.array([6.0, 6.0]) + 0.3 * rng.normal(size=(n_planted, 2))
    feats = rng.permutation(np.concatenate([bg, planted]))
    w = np.zeros(2 * (1 + 2 * 2))
    w[1] = 1.0                                   # Psi_pi of component 1
    model = make_model(gmm, w, b=-0.1)
    return model, feats


def test_relevance_order_drops_score_faster_than_random():
    model, feats = planted_case()
    out = rs.feature_traces(model, feats, 0, rules=["epsilon_100", "absolute", "random"],
                            batch_size=5, n_steps=8, repeats=4, seed=0)
    s = out["scores"]                                       # (rule, step, repeat)
    assert s.shape == (3, 9, 4)
    assert out["fx"] > 0
    # the planted features are the most relevant ones
    top = rs.relevance_order(out["relevance"]["epsilon_100"])[:20]
    assert np.all(feats[top].min(1) > 3)
    a = rs.perturbation_area(np.moveaxis(s, 1, -1)).mean(-1)   # A per rule
    assert a[0] > 3 * a[2] and a[1] > 3 * a[2]
    # after the 20 planted features are gone (step 4) the prediction has flipped, random has not
    assert np.all(s[0, 4] < 0) and np.all(s[2, 4] > 0)
    sw = rs.switch_steps(np.moveaxis(s, 1, -1))
    assert np.all(sw[0] > 0) and np.all(sw[2] == -1)


def test_replacing_all_features_is_deterministic():
    model, feats = planted_case(n_bg=30, n_planted=6)
    kw = dict(rules=["epsilon_1", "plain", "random"], batch_size=4, n_steps=None, repeats=2, seed=11)
    a = rs.feature_traces(model, feats, 0, **kw)["scores"]
    b = rs.feature_traces(model, feats, 0, **kw)["scores"]
    np.testing.assert_array_equal(a, b)
    assert a.shape == (3, 10, 2)                             # ceil(36 / 4) steps + f(x)
    # with every feature replaced by the same draws, all orders end at the same FV ...
    np.testing.assert_allclose(a[:, -1], a[:1, -1].repeat(3, 0), atol=1e-10)
    # ... the FV of the draws alone
    gmm = model.encoder_.gmm_
    for rep in range(2):
        new = rs.sample_gmm(gmm, 36, np.random.default_rng([11, 0, rep, 0]))
        expect = model.score_fv(improve(raw_fisher_vector(new, gmm)))[0, 0]
        assert abs(a[0, -1, rep] - expect) < 1e-10
    c = rs.feature_traces(model, feats, 0, **{**kw, "seed": 12})["scores"]
    assert not np.allclose(a[:, 1:], c[:, 1:])


# --------------------------------------------------------------------------- A and V

def test_area_and_switch_on_hand_made_traces():
    traces = np.array([[2.0, 1.0, 0.0, -1.0],      # drops through 0 at step 2
                       [1.0, 2.0, 3.0, 2.0],       # rises: never switches
                       [-1.0, -2.0, 0.5, -3.0],    # negative start, positive at step 2
                       [0.5, 0.5, 0.5, 0.0]])      # 0 counts as "not predicted": step 3
    np.testing.assert_allclose(rs.perturbation_area(traces),
                               [(1 + 2 + 3) / 3, (-1 - 2 - 1) / 3, (1 - 1.5 + 2) / 3, 0.5 / 3])
    np.testing.assert_array_equal(rs.switch_steps(traces), [2, -1, 2, 3])
    summ = rs.summarize_traces(traces)
    assert summ["V"] == 0.75
    assert summ["A"] == pytest.approx(np.mean([2.0, -4 / 3, 0.5, 0.5 / 3]))
    with pytest.raises(ValueError, match="at least one step"):
        rs.perturbation_area(np.array([1.0]))


def test_parse_rule():
    assert rs.parse_rule("epsilon_100") == ("epsilon", 100.0)
    assert rs.parse_rule("epsilon_0.5") == ("epsilon", 0.5)
    assert rs.parse_rule("absolute") == ("absolute", 0.0)
    assert rs.parse_rule("random") is None
    for bad in ("epsilon", "eps_1", "alpha_beta", ""):
        with pytest.raises(ValueError, match="unknown rule"):
            rs.parse_rule(bad)


def test_bad_parameters_raise_clear_errors():
    model, feats = planted_case(n_bg=20, n_planted=4)
    with pytest.raises(ValueError, match="batch_size"):
        rs.feature_traces(model, feats, 0, batch_size=0)
    with pytest.raises(ValueError, match="batch_size"):
        rs.resample_fv(feats, model.encoder_.gmm_, np.arange(3), feats, batch_size=-2)
    with pytest.raises(ValueError, match="unknown rule 'lrp'"):
        rs.feature_traces(model, feats, 0, rules=["epsilon_1", "lrp"])
    with pytest.raises(ValueError, match="repeats"):
        rs.feature_traces(model, feats, 0, repeats=0)
    with pytest.raises(ValueError, match="target"):
        rs.feature_traces(model, feats, 3)
    with pytest.raises(ValueError, match="not fitted"):
        rs.feature_traces(FisherVectorClassifier(), feats, 0)
    with pytest.raises(ValueError, match="not fitted"):
        rs.resampling_experiment(FisherVectorClassifier(), np.zeros((1, 3, 32, 32), np.float32))
    with pytest.raises(TypeError, match="FisherVectorClassifier"):
        rs.resampling_experiment(object(), np.zeros((1, 3, 32, 32), np.float32))
    with pytest.raises(ValueError, match="distinct"):
        rs.resample_fv(feats, model.encoder_.gmm_, np.array([0, 0]), feats, batch_size=1)


# --------------------------------------------------------------------------- Dataset

@pytest.fixture(scope="module")
def tiny_fitted():
    rng = np.random.default_rng(0)
    imgs = rng.random((8, 3, 40, 40)).astype(np.float32)
    imgs[:4, :, 20:, :20] = 1.0                             # class 0: a bright corner
    Y = np.zeros((8, 2), int)
    Y[:4, 0] = 1
    Y[4:, 1] = 1
    enc = FisherVectorEncoder(bin_sizes=(4,), step=4, pca_dim=4, n_components=3, n_samples=1500)
    clf = FisherVectorClassifier(enc, class_names=["corner", "noise"]).fit(imgs, Y)
    return clf, imgs


def test_experiment_dataset(tiny_fitted, tmp_path):
    from lrpkit.results import open_dataset, save_dataset

    clf, imgs = tiny_fitted
    ds = rs.resampling_experiment(clf, imgs[:3], [0, 0, 1], batch_size=6, n_steps=5, repeats=2,
                                  seed=3, image_ids=["a", "b", "c"], config={"seed": 3},
                                  progress=False)
    assert isinstance(ds, xr.Dataset)
    assert ds["score"].dims == ("image", "rule", "step", "repeat")
    assert ds["score"].shape == (3, 5, 6, 2)
    assert list(ds.rule.values) == list(rs.DEFAULT_RULES)
    assert list(ds.image.values) == ["a", "b", "c"]
    assert ds["A"].dims == ("rule",) and ds["V"].dims == ("rule",)
    assert ds["switch_step"].dims == ("image", "rule", "repeat")
    assert list(ds.target_class.values) == ["corner", "corner", "noise"]
    # step 0 is the unperturbed score of the classifier, for every rule and repeat
    direct = clf.decision_function(imgs[:3])[np.arange(3), [0, 0, 1]]
    np.testing.assert_allclose(ds["score"].isel(step=0), np.broadcast_to(direct[:, None, None], (3, 5, 2)),
                               atol=1e-10)
    np.testing.assert_allclose(ds["A"], ds["A_trace"].mean(("image", "repeat")))
    assert ds["switch_count"].sum() == (ds["switch_step"] >= 0).sum()
    assert ds.attrs["batch_size"] == 6 and ds.attrs["config"] == {"seed": 3}
    assert "lrpkit_version" in ds.attrs
    np.testing.assert_array_equal(ds["n_replaced"].isel(image=0), [0, 6, 12, 18, 24, 30])
    # same seed, same numbers; it survives a save / open round trip
    again = rs.resampling_experiment(clf, imgs[:3], [0, 0, 1], batch_size=6, n_steps=5, repeats=2,
                                     seed=3, progress=False)
    np.testing.assert_array_equal(ds["score"].values, again["score"].values)
    p = save_dataset(ds, tmp_path / "r.nc")
    back = open_dataset(p)
    np.testing.assert_array_equal(back["score"].values, ds["score"].values)
    assert back.attrs["rules"] == list(rs.DEFAULT_RULES)
