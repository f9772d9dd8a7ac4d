"""Prediction Difference Analysis (lrpkit.pda): patch model, variants, errors, invariants."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import lrpkit
from lrpkit.pda import (PatchModel, accumulate_windows, conditional_means, invariance_correlation,
                        window_positions, window_predictions)


def _images(n=3, c=3, h=20, w=20, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h + 4, w + 4, generator=g, dtype=dtype)
    # smooth so neighbouring pixels correlate (a patch Gaussian with structure)
    x = nn.functional.avg_pool2d(x, 5, 1)
    return x * 2.0


def _affine(c=3, h=20, w=20, classes=4, seed=1, dtype=torch.float64):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, classes)).to(dtype)
    return net


def _cnn(classes=5, seed=2):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Dropout(0.5), nn.Linear(16, classes))


@pytest.fixture(scope="module")
def pm():
    return PatchModel(window=4, outer=8).fit(_images(6))


# ------------------------------------------------------------------ patch model
def test_fit_matches_numpy_covariance():
    x = _images(2, h=12, w=12)
    pm = PatchModel(3, 6, reg=0.0).fit(x, max_patches=10 ** 6)     # every position
    pats = x.unfold(2, 6, 1).unfold(3, 6, 1)                       # (N, C, 7, 7, 6, 6)
    for ch in range(3):
        p = pats[:, ch].reshape(-1, 36).numpy()
        np.testing.assert_allclose(pm.mean[ch].numpy(), p.mean(0), atol=1e-12)
        np.testing.assert_allclose(pm.cov[ch].numpy(), np.cov(p.T), atol=1e-10)
    pj = PatchModel(3, 6, joint_rgb=True, reg=0.0).fit(x, max_patches=10 ** 6)
    q = pats.permute(0, 2, 3, 1, 4, 5).reshape(-1, 3 * 36).numpy()
    np.testing.assert_allclose(pj.cov[0].numpy(), np.cov(q.T), atol=1e-10)


def _slow_mean(pm, img, i, j):
    """Gaussian conditioning of the window at (i, j) on the rest of its clipped outer patch."""
    k, l, pb = pm.window, pm.outer, pm.pad_before
    c, h, w = img.shape
    groups = [list(range(c))] if pm.joint_rgb else [[ch] for ch in range(c)]
    out = np.zeros((c, k, k))
    for g, chans in enumerate(groups):
        mu, cov = pm.mean[g].numpy(), pm.cov[g].numpy()
        inner, rest, xr_ = [], [], []
        for ci, ch in enumerate(chans):
            for r in range(l):
                for s in range(l):
                    y, xx = i - pb + r, j - pb + s
                    if not (0 <= y < h and 0 <= xx < w):
                        continue  # patch shrunk to the image
                    idx = ci * l * l + r * l + s
                    if pb <= r < pb + k and pb <= s < pb + k:
                        inner.append(idx)
                    else:
                        rest.append(idx)
                        xr_.append(float(img[ch, y, xx]))
        if pm.marginal:
            m = mu[inner]
        else:
            s_ir = cov[np.ix_(inner, rest)]
            s_rr = cov[np.ix_(rest, rest)]
            m = mu[inner] + s_ir @ np.linalg.solve(s_rr, np.array(xr_) - mu[rest])
        out[chans] = m.reshape(len(chans), k, k)
    return out


@pytest.mark.parametrize("joint_rgb", [False, True])
def test_batched_conditional_means_equal_slow_conditioning(joint_rgb):
    x = _images(2, h=16, w=15)
    pm = PatchModel(4, 9, joint_rgb=joint_rgb).fit(_images(5, h=16, w=15, seed=3))
    rows = window_positions(16, 4, 1)
    cols = window_positions(15, 4, 1)
    cm, cfg, keys = conditional_means(pm, x, rows, cols)
    assert cm.shape == (2, len(rows), len(cols), 3, 4, 4)
    assert len(keys) > 1 and keys[int(cfg[5, 5])] == (2, 3, 2, 3)   # interior: full patch
    # corners, edges, interior
    for (a, b) in [(0, 0), (0, 5), (1, 11), (12, 0), (12, 11), (6, 6), (3, 9), (11, 2)]:
        for n in range(2):
            slow = _slow_mean(pm, x[n], int(rows[a]), int(cols[b]))
            np.testing.assert_allclose(cm[n, a, b].numpy(), slow, rtol=1e-8, atol=1e-9)


def test_marginal_variant_ignores_context(pm):
    x = _images(2, h=12, w=12)
    pmm = PatchModel(4, 8, marginal=True).fit(_images(6))
    cm, _, _ = conditional_means(pmm, x, window_positions(12, 4, 2), window_positions(12, 4, 2))
    inner = pmm.mean[:, [r * 8 + s for r in range(2, 6) for s in range(2, 6)]]
    np.testing.assert_allclose(cm.numpy(), inner.reshape(3, 4, 4).expand_as(cm).numpy(), atol=1e-12)
    # while the conditional one does depend on the context
    cm2, _, _ = conditional_means(pm, x, window_positions(12, 4, 2), window_positions(12, 4, 2))
    assert cm2[0].std(dim=(0, 1)).mean() > 1e-3


def test_save_load_roundtrip(tmp_path, pm):
    path = PatchModel.default_path(tmp_path, 4, 8)
    pm.save(path, meta={"model": "tiny", "input": "20x20"})
    assert path.name == "patch_w4_o8.npz" and path.parent.name == "pda"
    pm2 = PatchModel.load(path, model_meta={"model": "tiny"})
    assert (pm2.window, pm2.outer, pm2.channels, pm2.n_images) == (4, 8, 3, 6)
    x = _images(1)
    r = window_positions(20, 4, 3)
    a, _, _ = conditional_means(pm, x, r, r)
    b, _, _ = conditional_means(pm2, x, r, r)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    with pytest.raises(ValueError, match="model"):
        PatchModel.load(path, model_meta={"model": "other"})
    with pytest.raises(FileNotFoundError):
        PatchModel.load(tmp_path / "missing.npz")


# ------------------------------------------------------------------ windows
@pytest.mark.parametrize("size,window", [(20, 4), (17, 5), (9, 9), (31, 10)])
@pytest.mark.parametrize("stride", [1, 2, 3, 4, 7, 50])
def test_every_pixel_covered_at_any_stride(size, window, stride):
    pos = window_positions(size, window, stride)
    covered = torch.zeros(size, dtype=torch.bool)
    for p in pos:
        covered[p:p + window] = True
    assert covered.all()
    assert int(pos.min()) == 0 and int(pos.max()) == size - window
    ones = torch.ones(1, len(pos), len(pos), dtype=torch.float64)
    m = accumulate_windows(ones, pos, pos, (size, size), window)
    torch.testing.assert_close(m, torch.ones(1, size, size, dtype=torch.float64))


def test_accumulate_is_mean_over_covering_windows():
    pos = window_positions(6, 3, 2)                       # 0, 2, 3
    vals = torch.arange(9, dtype=torch.float64).reshape(1, 3, 3)
    m = accumulate_windows(vals, pos, pos, (6, 6), 3)
    slow = torch.zeros(6, 6, dtype=torch.float64)
    cnt = torch.zeros(6, 6, dtype=torch.float64)
    for a, r in enumerate(pos):
        for b, c in enumerate(pos):
            slow[r:r + 3, c:c + 3] += vals[0, a, b]
            cnt[r:r + 3, c:c + 3] += 1
    torch.testing.assert_close(m[0], slow / cnt)


# ------------------------------------------------------------------ variants
def test_affine_mean_equals_gradient_and_sampling_converges(pm):
    x = _images(2)
    net = _affine()
    kw = dict(window=4, outer=8, patch_model=pm, prob="score", stride=2, progress=False)
    r_mean = lrpkit.explain(net, x, [1, 3], method="pda", variant="mean", **kw)
    r_grad = lrpkit.explain(net, x, [1, 3], method="pda", variant="gradient", **kw)
    assert r_mean.abs().max() > 1e-3
    torch.testing.assert_close(r_mean, r_grad, rtol=1e-9, atol=1e-11)
    errs = []
    for s in (3, 300):
        r_s = lrpkit.explain(net, x, [1, 3], method="pda", variant="sampling", samples=s, **kw)
        errs.append(float((r_s - r_mean).abs().mean() / r_mean.abs().mean()))
    assert errs[1] < errs[0] / 5
    assert errs[1] < 0.1
    # Fig. 15's "mean of S samples" also tends to the conditional mean
    errs = []
    for s in (2, 1000):
        r_s = lrpkit.explain(net, x, [1, 3], method="pda", variant="sample_mean", samples=s, **kw)
        errs.append(float((r_s - r_mean).abs().mean() / r_mean.abs().mean()))
    assert errs[1] < errs[0] / 8 and errs[1] < 0.05


def test_sigmoid_log_odds_of_affine_is_score_difference(pm):
    # log2 odds(sigmoid(z)) = z / ln 2: without the Laplace correction "mean" is the score
    # difference in bits
    x = _images(1)
    net = _affine()
    kw = dict(window=4, outer=8, patch_model=pm, stride=3, progress=False)
    r_sig = lrpkit.explain(net, x, 2, method="pda", variant="mean", prob="sigmoid", laplace_n=None,
                           **kw)
    r_score = lrpkit.explain(net, x, 2, method="pda", variant="mean", prob="score", **kw)
    torch.testing.assert_close(r_sig, r_score / math.log(2), rtol=1e-6, atol=1e-9)


def test_mean_variant_matches_manual_window_replacement(pm):
    x = _images(1, dtype=torch.float32)
    net = _cnn().eval()
    rows = window_positions(20, 4, 8)
    r = lrpkit.explain(net, x, 0, method="pda", variant="mean", window=4, outer=8, stride=8,
                       patch_model=pm, prob="softmax", laplace_n=None, progress=False)
    cm, _, _ = conditional_means(pm, x, rows, rows)
    with torch.no_grad():
        p0 = torch.softmax(net(x), 1)[0, 0].double()
    lo = lambda p: math.log2(p) - math.log2(1 - p)  # noqa: E731
    we = torch.zeros(len(rows), len(rows), dtype=torch.float64)
    for a, i in enumerate(rows):
        for b, j in enumerate(rows):
            xp = x.clone()
            xp[0, :, i:i + 4, j:j + 4] = cm[0, a, b]
            with torch.no_grad():
                p = float(torch.softmax(net(xp), 1)[0, 0])
            we[a, b] = lo(float(p0)) - lo(p)
    expect = accumulate_windows(we[None], rows, rows, (20, 20), 4)[0] / 3
    torch.testing.assert_close(r[0, 1].double(), expect, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("variant", ["sampling", "mean", "gradient"])
@pytest.mark.parametrize("prob", ["softmax", "sigmoid"])
def test_saturated_probabilities_give_finite_output(pm, variant, prob):
    x = _images(2, dtype=torch.float32)
    net = _affine(dtype=torch.float32)
    with torch.no_grad():
        net[1].weight.mul_(1e4)
        out = torch.softmax(net(x), 1) if prob == "softmax" else torch.sigmoid(net(x))
    assert ((out == 0) | (out == 1)).any()                 # p exactly 0 or 1 happens
    for lap in (1000, None):
        r = lrpkit.explain(net, x, [0, 1], method="pda", variant=variant, window=4, outer=8,
                           stride=4, patch_model=pm, prob=prob, laplace_n=lap, samples=3,
                           progress=False)
        assert torch.isfinite(r).all()


def test_same_seed_same_map(pm):
    x = _images(2, dtype=torch.float32)
    net = _cnn()
    kw = dict(method="pda", variant="sampling", window=4, outer=8, stride=3, samples=3,
              patch_model=pm, progress=False, batch_size=7)
    a = lrpkit.explain(net, x, "pred", seed=5, **kw)
    b = lrpkit.explain(net, x, "pred", seed=5, **kw)
    c = lrpkit.explain(net, x, "pred", seed=6, **kw)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(a, c)
    # the batch size does not change the result (same draws, other batching)
    d = lrpkit.explain(net, x, "pred", seed=5, **{**kw, "batch_size": 1000})
    torch.testing.assert_close(a, d, rtol=1e-5, atol=1e-6)


def test_output_shape_and_channel_spread(pm):
    x = _images(2, dtype=torch.float32)
    r = lrpkit.explain(_cnn(), x, "pred", method="pda", variant="mean", window=4, outer=8,
                       stride=2, patch_model=pm, progress=False)
    assert r.shape == x.shape and r.dtype == x.dtype
    torch.testing.assert_close(r[:, 0], r[:, 2])


# ------------------------------------------------------------------ errors
@pytest.mark.parametrize("kw,match", [
    (dict(window=8, outer=8), "outer"),
    (dict(window=8, outer=6), "outer"),
    (dict(window=4, outer=30), "larger than the image"),
    (dict(window=4, outer=8, stride=0), "stride"),
    (dict(window=4, outer=8, stride=-2), "stride"),
    (dict(window=4, outer=8, variant="fancy"), "variant"),
    (dict(window=4, outer=8, prob="tanh"), "prob"),
    (dict(window=4, outer=8, samples=0), "samples"),
    (dict(window=4, outer=8, batch_size=0), "batch_size"),
])
def test_bad_arguments_raise(pm, kw, match):
    x = _images(1, dtype=torch.float32)
    with pytest.raises(ValueError, match=match):
        lrpkit.explain(_cnn(), x, 0, method="pda", patch_model=pm, progress=False, **kw)


def test_patch_model_for_other_window_raises(pm):
    x = _images(1, dtype=torch.float32)
    with pytest.raises(ValueError, match=r"patch_model was fitted for window=4, outer=8"):
        lrpkit.explain(_cnn(), x, 0, method="pda", variant="mean", window=5, outer=8,
                       patch_model=pm)
    with pytest.raises(ValueError, match=r"patch_model.*outer=8"):
        lrpkit.explain(_cnn(), x, 0, method="pda", variant="mean", window=4, outer=10,
                       patch_model=pm)
    with pytest.raises(TypeError, match="patch_model"):
        lrpkit.explain(_cnn(), x, 0, method="pda", window=4, outer=8, patch_model="pm")
    with pytest.raises(ValueError, match="not fitted"):
        lrpkit.explain(_cnn(), x, 0, method="pda", window=4, outer=8, patch_model=PatchModel(4, 8))


def test_patch_model_constructor_errors():
    with pytest.raises(ValueError, match="outer"):
        PatchModel(10, 10)
    with pytest.raises(TypeError, match="window"):
        PatchModel(4.5, 10)
    with pytest.raises(ValueError, match="outer"):
        PatchModel(4, 30).fit(_images(1))


def test_no_patch_model_fits_on_explained_images_with_warning():
    x = _images(2, dtype=torch.float32)
    with pytest.warns(UserWarning, match="training"):
        r = lrpkit.explain(_cnn(), x, 0, method="pda", variant="mean", window=4, outer=8,
                           stride=4, progress=False)
    assert torch.isfinite(r).all()


# ------------------------------------------------------------------ model unchanged
@pytest.mark.parametrize("variant", ["sampling", "mean", "gradient"])
def test_model_unchanged(pm, variant):
    net = _cnn().train()
    x = _images(2, dtype=torch.float32)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    lrpkit.explain(net, x, [0, 1], method="pda", variant=variant, window=4, outer=8, stride=4,
                   samples=2, patch_model=pm, progress=False)
    after = net.state_dict()
    assert before.keys() == after.keys()
    for k in before:
        assert torch.equal(before[k], after[k]), k
    assert all(m.training for m in net.modules())
    assert all(p.grad is None for p in net.parameters())
    assert all(p.requires_grad for p in net.parameters())


def test_registered():
    m = lrpkit.methods()["pda"]
    assert m.params["variant"] == "sampling" and m.params["window"] == 10
    assert m.params["outer"] == 18 and m.params["samples"] == 10 and m.params["prob"] == "softmax"


# ------------------------------------------------------------------ helpers for the notebook
def test_window_predictions_converge_to_mean_for_affine_scores(pm):
    x = _images(3)
    net = _affine()
    ds = window_predictions(net, x, 1, pm, row=8, col=0, samples=600, prob="score", seed=0,
                            progress=False)
    assert ds.p_sample.dims == ("image", "sample") and ds.p_sample.shape == (3, 600)
    # affine: E[f(sample)] = f(conditional mean)
    spread = float(ds.p_sample.std("sample").mean())
    err = np.abs(ds.p_sample.mean("sample") - ds.p_mean).max()
    assert spread > 0 and err < 4 * spread / math.sqrt(600)
    # p_mean is the forward pass on the window at its conditional mean
    cm, _, _ = conditional_means(pm, x, torch.tensor([8]), torch.tensor([0]))
    xp = x.clone()
    xp[:, :, 8:12, 0:4] = cm[:, 0, 0]
    np.testing.assert_allclose(ds.p_mean.values, net(xp)[:, 1].detach().numpy(), rtol=1e-10)


def test_invariance_correlation_of_equivariant_map():
    x = _images(2, h=24, w=24)
    corr = invariance_correlation(lambda z: z, x, ("flip", "rotate", "crop"), angle=8, crop=0.8)
    assert corr.dims == ("image", "transform")
    np.testing.assert_allclose(corr.sel(transform="flip").values, 1.0, atol=1e-12)
    assert (corr.values > 0.8).all()
    # a map that ignores the image is not invariant to flips of an asymmetric image
    fixed = torch.linspace(-1, 1, 24)[None, None, None].expand(1, 3, 24, 24).double()
    corr2 = invariance_correlation(lambda z: fixed.expand(z.shape[0], -1, -1, -1), x, ("flip",))
    assert (corr2.values < -0.9).all()


def test_direct_call_resolves_pred_and_marginal_fit():
    from lrpkit.pda import prediction_difference
    x = _images(2, dtype=torch.float32)
    net = _cnn()
    with pytest.warns(UserWarning):
        r = prediction_difference(net, x, "pred", variant="mean", window=4, outer=8, stride=4,
                                  marginal=True, joint_rgb=True, progress=False)
    assert r.shape == x.shape and torch.isfinite(r).all()
    with pytest.raises(ValueError, match="out of range"):
        prediction_difference(net, x, 7, variant="mean", window=4, outer=8, stride=4,
                              patch_model=PatchModel(4, 8).fit(x), progress=False)
