"""Region perturbation / AOPC (Samek et al. 2017, eq. 9-12), deletion / insertion, ROAD, complexity."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import lrpkit
from lrpkit.evaluate import (complexity, compare_methods, deletion_insertion,
                             noisy_linear_impute, noisy_linear_impute_reference,
                             outside_inside_ratio, region_perturbation, removal_ranks)

H = W = 16
M = 4                      # region size: a 4 x 4 grid of 16 regions


class RegionSum(nn.Module):
    """f(x) = sum of x over rows 0:8, cols 0:8 (the top-left 2 x 2 grid regions): class 0;
    class 1 = minus that."""

    def forward(self, x):
        s = x[:, :, :8, :8].sum((1, 2, 3))
        return torch.stack([s, -s], 1)


class Constant(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return torch.ones(x.shape[0], 3) + 0 * self.w


def _data(n=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, H, W, generator=g) + 0.5          # positive pixels
    truth = torch.zeros(n, H, W)
    truth[:, :8, :8] = 1.0 + torch.rand(n, 8, 8, generator=g) * 0.1   # the model's region
    return x, truth


def test_morf_true_heatmap_drops_fully_within_region_steps_random_slower():
    x, truth = _data()
    model = RegionSum()
    f0 = model(x)[:, 0]
    morf = region_perturbation(model, x, truth, 0, region_size=M, steps=8, repeats=1,
                               replacement="zero")
    s = morf.score.isel(repeat=0).values
    np.testing.assert_allclose(s[:, 0], f0.numpy(), rtol=1e-6)
    assert (np.diff(s[:, :5], axis=1) < 0).all()             # each of the 4 region steps drops
    np.testing.assert_allclose(s[:, 4:], 0.0, atol=1e-5)     # fully gone after 4 steps
    rnd = region_perturbation(model, x, truth, 0, region_size=M, steps=8, repeats=8,
                              replacement="zero", order="random")
    r = rnd.score.mean("repeat").values
    assert (r[:, 4] > 0.2 * f0.numpy()[:, None].ravel()).all()   # random: most still there
    assert (morf.aopc.values > rnd.aopc.values + 0.2 * f0.numpy()).all()
    # eq. 12 by hand: mean over k = 0..L of f(x0) - f(xk)
    np.testing.assert_allclose(morf.aopc.values, (s[:, :1] - s).mean(1), rtol=1e-6)


def test_constant_model_has_aopc_zero():
    x, truth = _data()
    for repl in ("uniform", "zero", "mean", "blur", "road"):
        ds = region_perturbation(Constant(), x, truth, 0, region_size=M, steps=5, repeats=2,
                                 replacement=repl)
        np.testing.assert_allclose(ds.aopc.values, 0.0, atol=1e-7)


def test_lerf_keeps_score_longer_than_morf():
    x, truth = _data()
    kw = dict(region_size=M, steps=14, repeats=1, replacement="zero")
    morf = region_perturbation(RegionSum(), x, truth, 0, order="morf", **kw).score.isel(repeat=0)
    lerf = region_perturbation(RegionSum(), x, truth, 0, order="lerf", **kw).score.isel(repeat=0)
    # LeRF removes the 12 irrelevant regions first: the score is untouched for 12 steps
    np.testing.assert_allclose(lerf.values[:, :13], lerf.values[:, :1].repeat(13, 1), rtol=1e-6)
    assert (lerf.values[:, 13] < lerf.values[:, 0]).all()
    assert (lerf.values[:, 1:] >= morf.values[:, 1:] - 1e-6).all()
    assert (lerf.values[:, 1:13] > morf.values[:, 1:13]).all()


def test_centred_regions_hand_worked():
    h = torch.zeros(1, 10, 10)
    h[0, 5, 5] = 3.0                 # first centre
    h[0, 5, 6] = 2.0                 # inside the first window: skipped
    h[0, 0, 0] = 1.0                 # second centre, window clipped at the corner
    r = removal_ranks(h, (1, 3, 10, 10), region_size=3, steps=2, regions="centred")[0, 0]
    assert (r[4:7, 4:7] == 0).all()
    assert (r[0:2, 0:2] == 1).all()
    assert int((r == 0).sum()) == 9 and int((r == 1).sum()) == 4
    assert int((r > 1).sum()) == 100 - 13


def test_deletion_auc_perfect_beats_reversed():
    x, truth = _data()
    kw = dict(step_pixels=16, score="raw", insertion_substrate="zero")
    good = deletion_insertion(RegionSum(), x, truth, 0, **kw)
    bad = deletion_insertion(RegionSum(), x, -truth, 0, **kw)
    assert (good.deletion_auc.values < bad.deletion_auc.values).all()
    assert (good.insertion_auc.values > bad.insertion_auc.values).all()
    assert good.sizes["step"] == 17 and good.fraction.values[-1] == 1.0
    # perfect ordering: the 64 region pixels are gone after 4 steps of 16
    np.testing.assert_allclose(good.deletion.values[:, 4:], 0.0, atol=1e-5)


def test_road_imputation_solves_its_linear_system():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(3, 3, 12, 14, generator=g, dtype=torch.float64)
    mask = torch.zeros(3, 12, 14, dtype=torch.bool)
    mask[0, 3:8, 4:9] = True
    mask[1] = torch.rand(12, 14, generator=g) < 0.4
    mask[2, :, :5] = True              # touching the border
    out = noisy_linear_impute(x, mask, noise=0.0, tol=1e-12, solver="cg")
    for i in range(3):
        ref = noisy_linear_impute_reference(x[i].numpy(), mask[i].numpy())
        np.testing.assert_allclose(out[i].numpy(), ref, atol=1e-8)
    direct = noisy_linear_impute(x, mask, noise=0.0, solver="direct")
    np.testing.assert_allclose(direct.numpy(), out.numpy(), atol=1e-8)
    # the imputed values satisfy the ROAD equations: each = weighted mean of its 8 neighbours
    i, y0, x0 = 0, 5, 6
    nb = out[i, :, y0 - 1:y0 + 2, x0 - 1:x0 + 2].numpy()
    w = np.array([[1, 2, 1], [2, 0, 2], [1, 2, 1]]) / 12.0
    np.testing.assert_allclose(out[i, :, y0, x0].numpy(), (nb * w).sum((1, 2)), atol=1e-8)
    assert torch.equal(out[~mask[:, None].expand_as(x)], x[~mask[:, None].expand_as(x)])
    # noise: the same seed gives the same draws, the imputed values move by ~noise
    n1 = noisy_linear_impute(x, mask, noise=0.01, generator=torch.Generator().manual_seed(3))
    n2 = noisy_linear_impute(x, mask, noise=0.01, generator=torch.Generator().manual_seed(3))
    assert torch.equal(n1, n2)
    d = (n1 - out)[mask[:, None].expand_as(x)]
    assert 0.005 < float(d.std()) < 0.02


def test_complexity_constant_lower_than_noise():
    const = np.zeros((2, 32, 32))
    noise = np.random.default_rng(0).standard_normal((2, 32, 32))
    ds = complexity({"const": const, "noise": noise}, quality=90)
    assert set(ds.dims) == {"method", "image"}
    for v in ("png_bytes", "jpeg_bytes", "entropy"):
        assert (ds[v].sel({"method": "const"}).values < ds[v].sel({"method": "noise"}).values).all(), v
    assert float(ds.entropy.sel({"method": "const"}).max()) == 0.0


def test_mu_of_heatmap_inside_box_is_zero():
    R = np.zeros((20, 30))
    R[5:10, 8:20] = np.random.default_rng(0).random((5, 12))
    assert outside_inside_ratio(R, (8, 5, 20, 10)) == 0.0


def test_same_seed_same_numbers_other_seed_differs():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * H * W, 3))
    x = torch.randn(2, 3, H, W)
    h = torch.randn(2, H, W)
    kw = dict(region_size=M, steps=6, repeats=3, order="random")
    a = region_perturbation(model, x, h, "pred", seed=5, **kw)
    b = region_perturbation(model, x, h, "pred", seed=5, **kw)
    c = region_perturbation(model, x, h, "pred", seed=6, **kw)
    np.testing.assert_array_equal(a.score.values, b.score.values)
    assert not np.allclose(a.score.values, c.score.values)
    # batch size does not change deterministic orders / replacements
    d1 = region_perturbation(model, x, h, 0, region_size=M, steps=6, replacement="blur", batch_size=5)
    d2 = region_perturbation(model, x, h, 0, region_size=M, steps=6, replacement="blur", batch_size=64)
    np.testing.assert_allclose(d1.score.values, d2.score.values, rtol=1e-5, atol=1e-6)


def test_bad_input_names_the_problem():
    x, truth = _data(2)
    m = RegionSum()
    with pytest.raises(ValueError, match="heatmaps shape"):
        region_perturbation(m, x, truth[:, :8], 0)
    with pytest.raises(ValueError, match="region_size=32 is larger"):
        region_perturbation(m, x, truth, 0, region_size=32)
    with pytest.raises(ValueError, match="steps=17 is beyond the number of regions"):
        region_perturbation(m, x, truth, 0, region_size=M, steps=17)
    with pytest.raises(ValueError, match="steps=.* beyond the number of regions"):
        region_perturbation(m, x, truth, 0, region_size=8, steps=60, regions="centred")
    bad = truth.clone()
    bad[0, 1, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        region_perturbation(m, x, bad, 0, region_size=M, steps=2)
    with pytest.raises(ValueError, match="NaN"):
        deletion_insertion(m, x, bad, 0)
    with pytest.raises(ValueError, match="replacement"):
        region_perturbation(m, x, truth, 0, region_size=M, steps=2, replacement="gauss")
    with pytest.raises(ValueError, match="order"):
        region_perturbation(m, x, truth, 0, region_size=M, steps=2, order="best")
    with pytest.raises(ValueError, match="target"):
        region_perturbation(m, x, truth, 5, region_size=M, steps=2)
    with pytest.raises(ValueError, match="NaN"):
        complexity(bad.numpy())


def test_non_torch_model_fisher_style():
    """An object with decision_function on [0, 1] images (the FV classifier's interface)."""

    class Linear:
        coef_ = np.zeros((2, 1))

        def decision_function(self, images):
            a = np.asarray(images)
            s = a[:, :, :8, :8].sum((1, 2, 3))
            return np.stack([s, -s], 1)

    x, truth = _data(2)
    x = x / 2.0                              # [0.25, 0.75]
    ds = region_perturbation(Linear(), x, truth, 0, region_size=M, steps=6, repeats=2)
    assert ds.attrs["bounds_low"] == [0.0, 0.0, 0.0] and ds.attrs["bounds_high"] == [1.0, 1.0, 1.0]
    s = ds.score.values
    # uniform [0, 1] replacement of the region: mean 0.5 per pixel vs x's 0.5 mean -> noisy but
    # finite; with "zero" the whole region is gone after 4 steps
    assert np.isfinite(s).all()
    z = region_perturbation(Linear(), x, truth, 0, region_size=M, steps=6, repeats=1, replacement="zero")
    np.testing.assert_allclose(z.score.values[:, 4:], 0.0, atol=1e-5)


def test_compare_methods_random_baseline_and_dims():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * H * W, 3)).eval()
    x = torch.randn(2, 3, H, W)
    ds = compare_methods(model, x, "pred", {"lrp eps": {"method": "lrp", "composite": "epsilon"},
                                            "sensitivity": {"norm": "linf"}},
                         heatmaps={"truth": torch.randn(2, H, W)}, region_size=M, steps=5, repeats=2)
    assert list(ds.method.values) == ["lrp eps", "sensitivity", "truth", "random"]
    assert ds.score.dims == ("method", "image", "step", "repeat")
    assert ds.aopc_minus_random.dims == ("method", "step")
    np.testing.assert_allclose(ds.aopc_minus_random.sel({"method": "random"}), 0.0)
    expect = (ds.aopc_curve.sel({"method": "lrp eps"}) - ds.aopc_curve.sel({"method": "random"})).mean("image")
    np.testing.assert_allclose(ds.aopc_minus_random.sel({"method": "lrp eps"}), expect)
    assert np.abs(ds.aopc_minus_random.sel({"method": "truth"}).values).max() > 0


def test_quantus_region_perturbation_with_explain_func():
    """Interoperability: Quantus runs a faithfulness metric with lrpkit.explain_func; its curve
    equals ours with the same deterministic replacement (Quantus' "black", the image minimum,
    is 0 here = our "zero")."""
    quantus = pytest.importorskip("quantus")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * H * W, 3)).eval()
    x = torch.rand(2, 3, H, W)
    x[:, 0, 0, 0] = 0.0          # Quantus' "black" is each image's minimum: make it 0 = our "zero"
    y = model(x).argmax(1)
    metric = quantus.RegionPerturbation(patch_size=M, regions_evaluation=6, order="morf",
                                        perturb_baseline="black", disable_warnings=True,
                                        display_progressbar=False)
    curves = metric(model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=None,
                    explain_func=lrpkit.explain_func, explain_func_kwargs={"method": "gradient_x_input"},
                    device="cpu", softmax=False)
    curves = np.asarray(curves)
    a = lrpkit.explain(model, x, y, method="gradient_x_input")
    ours = region_perturbation(model, x, a, y, region_size=M, steps=6, repeats=1, replacement="zero")
    drop = (ours.score.isel(step=0) - ours.score).isel(repeat=0).values[:, 1:]
    np.testing.assert_allclose(curves, drop, rtol=1e-4, atol=1e-5)


def test_bootstrap_interval_and_scaled_region_size():
    from lrpkit.evaluate import bootstrap_ci, scaled_region_size

    est, lo, hi = bootstrap_ci([1.0, 2.0, 3.0, 4.0, 100.0], n_boot=500, seed=0)
    assert est == 3.0 and 1.0 <= lo <= est <= hi <= 100.0
    assert bootstrap_ci([1.0, 2.0, 3.0], seed=1) == bootstrap_ci([1.0, 2.0, 3.0], seed=1)
    e, lo, hi = bootstrap_ci([5.0, 5.0, 5.0, float("nan")])
    assert (e, lo, hi) == (5.0, 5.0, 5.0)
    with pytest.raises(ValueError, match="stat"):
        bootstrap_ci([1.0], stat="mode")
    assert scaled_region_size(9, 227) == 9 and scaled_region_size(9, 112) == 4
    assert scaled_region_size(1, 32) == 1
