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

from images import stripes


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
    # one grid for both sizes (vl_phow): b = 6 from x0 = 0, b = 4 from x0 = 2 (6 - 4) = 4
    n4 = ((40 - 4 - 16) // 3 + 1) * ((52 - 4 - 16) // 3 + 1)
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


def _slow_dense_sift(img, bin_sizes, step, magnif=6.0, window_size=2.0, contrast_threshold=0.005):
    """Dense SIFT written from VLFeat's documented conventions (vl_dsift / vl_phow), with loops.

    * vl_phow: one grid for all bin sizes; descriptor centres coincide: the largest size B starts
      with its 4B x 4B receptive field at the image corner, size b at 2 (B - b) (same first
      centre), each continues every ``step`` pixels while it fits in the image.
    * vl_dsift: 4 x 4 bins b pixels apart, descriptor centre = first bin centre + 3/2 b; every
      bin centre is the centre of its b x b pixel cell; a pixel adds to a bin with the bilinear
      weight max(0, 1 - |dx| / b) max(0, 1 - |dy| / b) / b^2 (distances to the bin centre); the
      Gaussian window is replaced by its mean over each bin's support.
    * gradients: central differences of the image smoothed by sigma = sqrt((b/magnif)^2 - 1/4),
      magnitude split linearly between the two nearest of 8 orientations.
    * L2, clamp 0.2, L2; raw norm below the contrast threshold -> 0.
    """
    from scipy import ndimage

    grey = 0.299 * img[0] + 0.587 * img[1] + 0.114 * img[2]
    H, W = grey.shape
    B = max(bin_sizes)
    descs, centres, rects, sizes = [], [], [], []
    for b in bin_sizes:
        sigma = np.sqrt(max((b / magnif) ** 2 - 0.25, 0.0))
        g = ndimage.gaussian_filter(grey, sigma, mode="nearest") if sigma > 0 else grey
        gy, gx = np.gradient(g)
        ori = np.zeros((8, H, W))
        for y in range(H):
            for x in range(W):
                a = (np.arctan2(gy[y, x], gx[y, x]) % (2 * np.pi)) * 8 / (2 * np.pi)
                o = int(np.floor(a))
                r = a - o
                m = np.hypot(gx[y, x], gy[y, x])
                ori[o % 8, y, x] += (1 - r) * m
                ori[(o + 1) % 8, y, x] += r * m
        # the window mean of bin i: Gaussian at b (i - 3/2) + t averaged with the bilinear weights
        t = np.arange(-2 * b, 2 * b + 1, 0.5)
        t = t[(np.abs(t) < b) & ((t - (b - 1) / 2) % 1 == 0)]
        tri = (b - np.abs(t)) / b ** 2
        win = [np.sum(tri * np.exp(-0.5 * ((b * (i - 1.5) + t) / (window_size * b)) ** 2)) / tri.sum()
               for i in range(4)]
        ys = range(2 * (B - b), H - 4 * b + 1, step)
        xs = range(2 * (B - b), W - 4 * b + 1, step)
        Y, X = np.mgrid[:H, :W]
        for y0 in ys:
            for x0 in xs:
                h = np.zeros((4, 4, 8))
                for by in range(4):
                    for bx in range(4):
                        cy, cx = y0 + b * by + (b - 1) / 2, x0 + b * bx + (b - 1) / 2
                        wgt = (np.maximum(0, 1 - np.abs(Y - cy) / b) * np.maximum(0, 1 - np.abs(X - cx) / b)
                               / b ** 2)
                        h[by, bx] = (ori * wgt).sum((1, 2)) * win[by] * win[bx]
                descs.append(h.ravel())
                centres.append((x0 + (4 * b - 1) / 2, y0 + (4 * b - 1) / 2))
                rects.append((y0, x0, y0 + 4 * b, x0 + 4 * b))
                sizes.append(b)
    d = np.array(descs)
    n = np.linalg.norm(d, axis=1, keepdims=True)
    out = np.minimum(d / np.maximum(n, 1e-12), 0.2)
    out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    out[n[:, 0] < contrast_threshold] = 0
    return out, np.array(centres), np.array(rects), np.array(sizes)


@pytest.mark.parametrize("bin_sizes, step, shape", [((4, 6), 3, (30, 37)), ((3, 5), 2, (24, 21)),
                                                    ((2, 3, 4), 5, (27, 26))])
def test_dense_sift_matches_slow_vlfeat_reference(bin_sizes, step, shape):
    img = np.random.default_rng(7).random((3, *shape))
    from scipy import ndimage

    img = ndimage.gaussian_filter(img, (0, 1, 1))         # some structure, some flat-ish areas
    d, fr = dense_sift(img, bin_sizes=bin_sizes, step=step, dtype=np.float64)
    ref, centres, rects, sizes = _slow_dense_sift(img, bin_sizes, step)
    np.testing.assert_array_equal(fr.bin_size, sizes)
    np.testing.assert_allclose(fr.center, centres)
    np.testing.assert_array_equal(fr.rect, rects)
    np.testing.assert_allclose(d, ref, atol=1e-12)
    # one shared grid: every size's centres are on the largest size's lattice
    big = fr.center[fr.bin_size == max(bin_sizes)]
    for b in bin_sizes:
        c = fr.center[fr.bin_size == b]
        np.testing.assert_allclose((c - big[0]) % step, 0, atol=1e-12)
    # the bin centres (VLFeat: first bin centre + 3/2 b = descriptor centre) lie at the
    # centres of the bin rectangles, for even and odd b
    br = fr.bin_rects
    cells = np.stack([(br[..., 1] + br[..., 3] - 1) / 2, (br[..., 0] + br[..., 2] - 1) / 2], -1)
    np.testing.assert_allclose(cells.mean(1), fr.center)


def test_even_bin_size_is_centred_on_its_cells():
    """A thin bright line through the middle of a descriptor: for even b it lies exactly between
    the two middle bin columns, so their histograms are equal (no half-pixel offset)."""
    for b in (4, 6, 5):
        img = np.zeros((4 * b, 4 * b))
        mid = 2 * b                                         # pixels 2b-1 | 2b straddle the centre
        img[:, mid - 1:mid + 1] = 1.0
        d, fr = dense_sift(img, bin_sizes=(b,), step=1, dtype=np.float64, contrast_threshold=0)
        assert len(fr) == 1 and fr.center[0, 0] == (4 * b - 1) / 2
        h = d[0].reshape(4, 4, 8)
        # mirror symmetry about the descriptor centre: column bx <-> 3 - bx, orientation t <-> 4 - t
        mirrored = h[:, ::-1][:, :, (4 - np.arange(8)) % 8]
        np.testing.assert_allclose(h, mirrored, atol=1e-12)


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


def test_n_jobs_gives_the_same_model_and_vectors(data):
    """Worker processes only change the speed: the fit sample (one seed per image), the PCA,
    the GMM and every encoded batch are the same as in-process (batch_size 5 -> 5 batches)."""
    X, _ = data
    one = small_encoder(batch_size=5).fit(X)
    two = small_encoder(batch_size=5, n_jobs=2).fit(X)
    np.testing.assert_array_equal(one.pca_.components_, two.pca_.components_)
    np.testing.assert_array_equal(one.gmm_.means_, two.gmm_.means_)
    np.testing.assert_array_equal(one.transform(X), two.transform(X))
    with pytest.raises(ValueError, match="empty"):
        two.transform(X[:0])


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
    from lrpkit.pipeline import fisher_path as model_path
    from lrpkit.pipeline import fit_fisher_from_config

    root = tmp_path / "scenes"
    data.generate_scenes(root, n_train=10, n_val=4, n_test=2, seed=0, progress=False, n_jobs=1)
    cfg = load_config("smoke", paths={"scenes": str(root), "models": str(tmp_path / "models"),
                                      "reports": str(tmp_path / "reports")})
    clf = fit_fisher_from_config(cfg)
    assert model_path(cfg).is_file() and model_path(cfg) == tmp_path / "models" / "fisher" / "fv.joblib"
    assert clf.class_names_ == list(data.SCENE_CLASSES)
    assert load_fisher(model_path(cfg)).coef_.shape[0] == len(data.SCENE_CLASSES)


def test_targets_1d_binary_only():
    from lrpkit.fisher.classifier import _as_targets

    np.testing.assert_array_equal(_as_targets(np.array([0, 1, 1]), 3), [[0], [1], [1]])
    np.testing.assert_array_equal(_as_targets(np.array([-1, 1, -1]), 3), [[0], [1], [0]])
    np.testing.assert_array_equal(_as_targets(np.array([True, False, True]), 3), [[1], [0], [1]])
    for bad in ([0, 1, 2], [0.0, 0.5, 1.0], ["cat", "dog", "cat"]):
        with pytest.raises(ValueError, match="one binary class"):
            _as_targets(np.array(bad), 3)
