"""Region perturbation / AOPC (Samek et al. 2017, eq. 9-12), deletion / insertion, ROAD, complexity."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import lrpkit
from lrpkit.inputs import resolve_target
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


# ------------------------------------------------------------- pinned numbers (speed-ups keep them)

def _pinned_model_and_data():
    """A conv net with non-zero biases; targets [1, 2] (image 0's target is not the arg-max)."""
    torch.manual_seed(3)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                          nn.Linear(4 * 8 * 8, 3))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1)
    g = torch.Generator().manual_seed(4)
    x = torch.rand(2, 3, H, W, generator=g)
    h = torch.randn(2, H, W, generator=g)
    return model, x, h


# score(image, step, repeat) of the implementation before the speed-ups (lrpkit 3bdfdef), CPU
_PINNED = {
    "uniform_morf": (dict(order="morf", replacement="uniform", repeats=3, steps=5), [
        [[35.881893, 35.881893, 35.881893], [35.965443, 36.308338, 37.220959],
         [36.324287, 36.503777, 37.023369], [37.723434, 36.853325, 38.279175],
         [37.844067, 38.103954, 38.502934], [38.306946, 39.632187, 38.100166]],
        [[35.414803, 35.414803, 35.414803], [37.459404, 35.799549, 37.162128],
         [36.440411, 34.593193, 37.174004], [36.598984, 34.037247, 36.226238],
         [36.921204, 34.303936, 37.333099], [36.795444, 34.287449, 37.667519]]]),
    "uniform_random_b5": (dict(order="random", replacement="uniform", repeats=2, steps=5,
                               batch_size=5, seed=7), [
        [[35.881893, 35.881893], [34.745052, 36.613937], [34.48708, 35.991249],
         [34.383118, 35.843437], [35.651825, 35.855568], [35.18708, 36.627857]],
        [[35.414803, 35.414803], [34.580795, 36.08931], [34.437302, 37.172401],
         [35.600845, 38.442429], [36.668777, 38.765518], [36.97234, 39.655457]]]),
    "blur_centred_lerf": (dict(order="lerf", replacement="blur", regions="centred", repeats=2,
                               steps=4), [
        [[35.881893, 35.881893], [35.899269, 35.899269], [35.905575, 35.905575],
         [35.792374, 35.792374], [35.813164, 35.813164]],
        [[35.414803, 35.414803], [35.112686, 35.112686], [35.206318, 35.206318],
         [35.119335, 35.119335], [35.002441, 35.002441]]]),
    "road": (dict(order="morf", replacement="road", repeats=2, steps=3, seed=2), [
        [[35.881893, 35.881893], [35.665581, 35.661285], [35.345413, 35.363495],
         [34.956734, 34.965057]],
        [[35.414803, 35.414803], [35.170876, 35.171555], [34.609306, 34.616898],
         [34.015396, 34.027195]]]),
}


@pytest.mark.parametrize("case", sorted(_PINNED))
@pytest.mark.parametrize("batch_size", [None, 3])
def test_region_perturbation_pinned_numbers(case, batch_size):
    """Same seed, same numbers as before the speed-ups, at any batch size (replacement noise,
    random orders, ROAD noise drawn in the same sequence)."""
    model, x, h = _pinned_model_and_data()
    kw, expect = _PINNED[case]
    kw = {**kw, "batch_size": batch_size} if batch_size else kw
    ds = region_perturbation(model, x, h, [1, 2], region_size=M, **kw)
    np.testing.assert_allclose(ds.score.values, np.array(expect), rtol=0, atol=2e-4)


def test_compare_methods_and_deletion_pinned_numbers():
    model, x, h = _pinned_model_and_data()
    g = torch.Generator().manual_seed(5)
    maps = {"a": torch.randn(2, H, W, generator=g), "b": torch.randn(2, 3, H, W, generator=g)}
    ds = compare_methods(model, x, [1, 2], heatmaps=maps, region_size=M, steps=4, repeats=2, seed=1)
    np.testing.assert_allclose(ds.aopc.values, [[-0.94184, 0.252971], [0.03791, -1.143179],
                                                [-0.184055, -0.673405]], rtol=0, atol=2e-4)
    np.testing.assert_allclose(ds.score.values.sum(-1), [
        [[71.76379, 72.37659, 74.89704, 74.28687, 74.91305],
         [70.82961, 70.11943, 70.69983, 69.73573, 70.23372]],
        [[71.76379, 72.45816, 71.33995, 71.92557, 70.95236],
         [70.82961, 72.9387, 73.22046, 73.93203, 74.65903]],
        [[71.76379, 71.38525, 72.74266, 72.23233, 72.53544],
         [70.82961, 71.70097, 73.13135, 72.91738, 72.30277]]], rtol=0, atol=4e-4)
    di = deletion_insertion(model, x, h, [1, 2], step_pixels=64, score="softmax")
    np.testing.assert_allclose(di.deletion.values, [
        [0.256743, 0.2709942, 0.2961026, 0.3379208, 0.3326528],
        [0.4418175, 0.4372574, 0.4032618, 0.3941931, 0.3438002]], atol=1e-6)
    np.testing.assert_allclose(di.insertion.values, [
        [0.2418803, 0.2585026, 0.2472936, 0.2592741, 0.256743],
        [0.3994609, 0.3933725, 0.4281675, 0.4245898, 0.4418175]], atol=1e-6)


class _CountingNet(nn.Module):
    """A conv net that counts the images it scores."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                                 nn.Linear(4 * H * W, 3))
        self.seen = 0

    def forward(self, x):
        self.seen += x.shape[0]
        return self.net(x)


def test_unperturbed_image_scored_once_per_image_and_threads_restored():
    model = _CountingNet()
    x, h = torch.rand(2, 3, H, W), torch.randn(2, H, W)
    threads = torch.get_num_threads()
    resolve_target(model, x, [0, 2])          # the target check's own forward (class count, cached)
    model.seen = 0
    ds = region_perturbation(model, x, h, [0, 2], region_size=M, steps=5, repeats=3, batch_size=4)
    # eq. 11 needs f(x^0) once per image and f(x^k), k = 1..5, per repeat: 2 * (1 + 3 * 5)
    assert model.seen == 2 * (1 + 3 * 5)
    assert torch.get_num_threads() == threads
    f0 = model.net(x)[[0, 1], [0, 2]].detach().numpy()
    np.testing.assert_allclose(ds.score.isel(step=0).values, f0[:, None].repeat(3, 1), rtol=1e-5)
    # one thread (sequential batches) gives the numbers of the worker threads
    torch.set_num_threads(1)
    try:
        one = region_perturbation(model, x, h, [0, 2], region_size=M, steps=5, repeats=3, batch_size=4)
    finally:
        torch.set_num_threads(threads)
    np.testing.assert_allclose(one.score.values, ds.score.values, rtol=1e-5, atol=1e-6)

    calls = []
    region_perturbation(model, x, h, [0, 2], region_size=M, steps=5, repeats=3, batch_size=4,
                        progress=lambda done, total: calls.append((done, total)))
    assert len(calls) >= 8 and calls[-1] == (2 * 3 * 6, 2 * 3 * 6)      # 32 images in batches of 4
    assert all(a[0] < b[0] for a, b in zip(calls, calls[1:]))

    def cancel(done, total):
        raise KeyboardInterrupt("stop")

    with pytest.raises(KeyboardInterrupt):
        region_perturbation(model, x, h, 0, region_size=M, steps=5, repeats=3, batch_size=4,
                            progress=cancel)
    assert torch.get_num_threads() == threads
