"""Fisher-vector pipeline: dense SIFT geometry, FV == skimage, classifier API, persistence."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import Pipeline
from sklearn.svm import LinearSVC

from lrpkit.fisher import (FisherVectorClassifier, FisherVectorEncoder, dense_sift, evaluate,
                           fv_contributions, improve, load_fisher, raw_fisher_vector, save_fisher)

H, W = 48, 64


def stripes(n, vertical, seed=0, h=H, w=W):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        im = rng.random((3, h, w)) * 0.1
        yy, xx = np.mgrid[:h, :w]
        per = rng.uniform(2.5, 4.0)
        pat = np.sin((xx if vertical[i] else yy) / per + rng.uniform(0, 6)) > 0
        out.append(np.clip(im + 0.6 * pat, 0, 1))
    return np.stack(out).astype(np.float32)


def small_encoder(**kw):
    p = dict(bin_sizes=(4, 6), step=4, pca_dim=8, n_components=4, n_samples=4000, gmm_max_iter=50)
    p.update(kw)
    return FisherVectorEncoder(**p)


@pytest.fixture(scope="module")
def data():
    v = np.array([0, 1] * 12)
    X = stripes(len(v), v)
    Y = np.stack([v, 1 - v], 1)
    return X, Y


@pytest.fixture(scope="module")
def clf(data):
    X, Y = data
    return FisherVectorClassifier(small_encoder(), C=1.0, class_names=["vertical", "horizontal"]).fit(X, Y)


# ----------------------------------------------------------------------------------- SIFT --
def test_dense_sift_geometry_and_normalisation():
    img = np.random.default_rng(1).random((3, 40, 52))
    d, fr = dense_sift(img, bin_sizes=(4, 6), step=3)
    assert d.shape == (len(fr), 128) and d.dtype == np.float32
    n4 = ((40 - 16) // 3 + 1) * ((52 - 16) // 3 + 1)
    n6 = ((40 - 24) // 3 + 1) * ((52 - 24) // 3 + 1)
    assert len(fr) == n4 + n6
    assert set(np.unique(fr.bin_size)) == {4, 6}
    norms = np.linalg.norm(d, axis=1)
    assert np.all((np.abs(norms - 1) < 1e-5) | (norms == 0)) and d.min() >= 0
    # receptive fields inside the image, 4b square, centre in the middle
    r = fr.rect
    assert r[:, 0].min() >= 0 and r[:, 1].min() >= 0 and r[:, 2].max() <= 40 and r[:, 3].max() <= 52
    assert np.all(r[:, 2] - r[:, 0] == 4 * fr.bin_size) and np.all(r[:, 3] - r[:, 1] == 4 * fr.bin_size)
    np.testing.assert_allclose(fr.center[:, 0], (r[:, 1] + r[:, 3] - 1) / 2)
    # the 16 bin cells tile the receptive field (b x b each, order by*4+bx)
    br = fr.bin_rects
    assert br.shape == (len(fr), 16, 4)
    assert np.all(br[:, :, 2] - br[:, :, 0] == fr.bin_size[:, None])
    np.testing.assert_array_equal(br[:, 0, :2], r[:, :2])
    np.testing.assert_array_equal(br[:, 15, 2:], r[:, 2:])
    np.testing.assert_array_equal(br[:, 1, 1] - br[:, 0, 1], fr.bin_size)   # bx steps along x
    np.testing.assert_array_equal(br[:, 4, 0] - br[:, 0, 0], fr.bin_size)   # by steps along y
    assert np.all(fr.area == (4 * fr.bin_size) ** 2)


def test_dense_sift_orientation_and_spatial_bins():
    img = np.zeros((40, 40))
    img[:, 20:] = 1.0                       # vertical edge: gradient along +x (angle 0)
    d, fr = dense_sift(img, bin_sizes=(4,), step=2)
    i = np.argmin(np.abs(fr.center[:, 0] - 19.5) + np.abs(fr.center[:, 1] - 19.5))
    h = d[i].reshape(4, 4, 8)               # (by, bx, t)
    assert h.sum((0, 1)).argmax() == 0      # orientation bin 0
    assert h[:, 1:3].sum() > 0.9 * h.sum()  # energy in the two middle x-bins
    # layout HWC / uint8 / grey give the same descriptors
    rgb = np.repeat(img[None], 3, 0)
    d2, _ = dense_sift((np.moveaxis(rgb, 0, -1) * 255).astype(np.uint8), bin_sizes=(4,), step=2)
    np.testing.assert_allclose(d, d2, atol=1e-5)
    # flat image -> zero descriptors (contrast threshold)
    d3, _ = dense_sift(np.full((3, 30, 30), 0.5), bin_sizes=(4,), step=2)
    assert np.all(d3 == 0)


@pytest.mark.parametrize("bad, err", [
    (np.zeros((3, 0, 20)), "empty"),
    (np.zeros((3, 10, 40)), "smaller than one descriptor"),
    (np.full((3, 30, 30), np.nan), "NaN"),
])
def test_dense_sift_bad_input(bad, err):
    with pytest.raises(ValueError, match=err):
        dense_sift(bad, bin_sizes=(4,))


# ------------------------------------------------------------------------------------- FV --
def test_fv_matches_skimage(clf, data):
    from skimage.feature import fisher_vector

    enc = clf.encoder_
    X, _ = data
    for img in X[:3]:
        f, fr = enc.local_features(img)
        assert f.shape == (len(fr), 8)
        ref = fisher_vector(f, enc.gmm_, improved=True)
        np.testing.assert_allclose(enc.transform(img[None])[0], ref, atol=1e-6)
        np.testing.assert_allclose(improve(fv_contributions(f, enc.gmm_).mean(0)), ref, atol=1e-6)
        raw_ref = fisher_vector(f, enc.gmm_, improved=False)
        np.testing.assert_allclose(raw_fisher_vector(f, enc.gmm_), raw_ref, atol=1e-8)
    assert enc.fv_dim == 4 * (1 + 2 * 8)


def test_transform_batched_equals_single_and_lists(clf, data):
    enc = clf.encoder_
    X, _ = data
    batch = enc.transform(torch.from_numpy(X[:5]))
    single = np.stack([enc.transform(X[i:i + 1])[0] for i in range(5)])
    np.testing.assert_allclose(batch, single, atol=1e-10)
    mixed = [X[0], np.moveaxis(stripes(1, [1], seed=3, h=64, w=48)[0], 0, -1)]   # different sizes, HWC
    out = enc.transform(mixed)
    assert out.shape == (2, enc.fv_dim) and np.allclose(np.linalg.norm(out, axis=1), 1)


def test_classifier_api(clf, data):
    X, Y = data
    s = clf.decision_function(torch.from_numpy(X))
    assert s.shape == (len(X), 2)
    assert clf.score(X, Y) > 0.95
    assert clf.predict(X[:4]).shape == (4, 2)
    np.testing.assert_allclose(clf.score_fv(clf.encoder_.transform(X[:4])), s[:4])
    # get_params / clone: parameters only, nested encoder cloned unfitted
    p = clf.get_params()
    assert p["C"] == 1.0 and isinstance(p["encoder"], FisherVectorEncoder)
    c2 = clone(clf)
    assert not hasattr(c2, "coef_") and c2.get_params()["encoder__pca_dim"] == 8
    assert clf.encoder is not clf.encoder_            # fit cloned the encoder, never modified it
    assert not hasattr(clf.encoder, "gmm_")


def test_pipeline_and_unfitted_errors(data):
    X, Y = data
    pipe = Pipeline([("fv", small_encoder()), ("svm", OneVsRestClassifier(LinearSVC(random_state=0)))])
    pipe.fit(X, Y)
    assert pipe.decision_function(X[:3]).shape == (3, 2)
    with pytest.raises(NotFittedError):
        small_encoder().transform(X[:1])
    with pytest.raises(NotFittedError):
        FisherVectorClassifier().decision_function(X[:1])
    with pytest.raises(ValueError, match="multi-hot"):
        FisherVectorClassifier(small_encoder()).fit(X, Y[:3])
    # class indices are not silently read as one binary class
    with pytest.raises(ValueError, match="one binary class"):
        FisherVectorClassifier(small_encoder()).fit(X, np.arange(len(X)) % 3)


def test_incremental_raw_update_matches_reencoding(clf, data):
    """Algorithm 1, line 6: x <- x + (Psi(l_new) - Psi(l_old)) / |L| (App. D)."""
    X, _ = data
    enc = clf.encoder_
    f, _ = enc.local_features(X[0])
    psi = fv_contributions(f, enc.gmm_)
    x0 = psi.mean(0)
    new, _ = enc.gmm_.sample(3)
    x = x0.copy()
    g = f.copy()
    for j, l_new in enumerate(new):
        x = x + (fv_contributions(l_new[None], enc.gmm_)[0] - psi[j]) / len(f)
        g[j] = l_new
    np.testing.assert_allclose(x, raw_fisher_vector(g, enc.gmm_), atol=1e-10)
    np.testing.assert_allclose(clf.score_fv(improve(x)), clf.score_fv(improve(raw_fisher_vector(g, enc.gmm_))))


def test_save_load_evaluate(clf, data, tmp_path):
    X, Y = data
    p = save_fisher(clf, tmp_path / "fisher" / "fv.joblib")
    m = load_fisher(p)
    np.testing.assert_allclose(m.decision_function(X[:3]), clf.decision_function(X[:3]))
    assert [q.name for q in p.parent.iterdir()] == ["fv.joblib"]      # no temp files left
    with pytest.raises(FileNotFoundError):
        load_fisher(tmp_path / "nope.joblib")
    ds = evaluate(clf, X, Y, path=tmp_path / "ap.nc")
    assert ds["ap"].dims == ("class",) and list(ds["class"].values) == ["vertical", "horizontal"]
    assert ds.attrs["mAP"] > 0.95
    from lrpkit.results import open_dataset

    assert float(open_dataset(tmp_path / "ap.nc")["ap"].min()) > 0.9


def test_fit_from_config(tmp_path):
    data = pytest.importorskip("lrpkit.data")
    from lrpkit.config import load_config
    from lrpkit.fisher import fit_fisher_from_config, model_path

    root = tmp_path / "scenes"
    data.generate_scenes(root, n_train=10, n_val=4, n_test=2, seed=0, progress=False, n_jobs=1)
    cfg = load_config("smoke", paths={"scenes": str(root), "models": str(tmp_path / "models"),
                                      "reports": str(tmp_path / "reports")})
    clf = fit_fisher_from_config(cfg)
    assert model_path(cfg).is_file() and model_path(cfg) == tmp_path / "models" / "fisher" / "fv.joblib"
    assert clf.class_names_ == list(data.SCENE_CLASSES)
    assert load_fisher(model_path(cfg)).coef_.shape[0] == len(data.SCENE_CLASSES)


def test_targets_1d_binary_only():
    from lrpkit.fisher.encoder import _as_targets

    np.testing.assert_array_equal(_as_targets(np.array([0, 1, 1]), 3), [[0], [1], [1]])
    np.testing.assert_array_equal(_as_targets(np.array([-1, 1, -1]), 3), [[0], [1], [0]])
    np.testing.assert_array_equal(_as_targets(np.array([True, False, True]), 3), [[1], [0], [1]])
    for bad in ([0, 1, 2], [0.0, 0.5, 1.0], ["cat", "dog", "cat"]):
        with pytest.raises(ValueError, match="one binary class"):
            _as_targets(np.array(bad), 3)
