"""lrpkit.evaluate.aopc_study: the batched AOPC study of notebook 04 (Samek et al. 2017, eq. 11-12)."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import xarray as xr

from lrpkit.evaluate import compare_methods
from lrpkit.evaluate.aopc_study import (SAMEK2017_SHARE, aopc_from_sampled_drops, min_difference_interval,
                                        perturbation_study, ranking_table, sampled_steps, study_steps,
                                        true_positive_targets)


def _net():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(2),
                              torch.nn.Flatten(), torch.nn.Linear(16, 3))
    with torch.no_grad():                       # non-zero biases everywhere
        net[0].bias.uniform_(-0.5, 0.5)
        net[4].bias.uniform_(-0.5, 0.5)
    return net.eval()


@pytest.fixture(scope="module")
def setup():
    net = _net()
    x = torch.randn(5, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    g = torch.Generator().manual_seed(2)
    maps = {"a": torch.randn(5, 16, 16, generator=g), "b": torch.randn(5, 3, 16, 16, generator=g)}
    pred = net(x).argmax(1)
    target = (pred + 1) % 3                     # never the arg-max
    return net, x, maps, target


@pytest.mark.parametrize("replacement", ["zero", "mean"])
def test_every_step_equals_compare_methods(setup, replacement):
    net, x, maps, target = setup
    st = perturbation_study(net, x, target, maps, region_size=2, steps=12, stride=1, repeats=1,
                            replacement=replacement, image_chunk=8, seed=3)
    assert list(st.method.values) == ["a", "b", "random"]
    for o in ("morf", "lerf"):
        cm = compare_methods(net, x, target, heatmaps=maps, order=o, region_size=2, steps=12, repeats=1,
                             replacement=replacement, seed=3)
        np.testing.assert_allclose(st.aopc.sel(order=o).values, cm.aopc.values, atol=1e-6)
        np.testing.assert_allclose(st.aopc_curve.sel(order=o).values, cm.aopc_curve.values[..., 1:], atol=1e-6)
    np.testing.assert_allclose(st.perturbed_fraction.values, cm.perturbed_fraction.values[1:])
    # the random baseline is one set of curves shared by both orders
    np.testing.assert_array_equal(st.aopc.sel({"order": "morf", "method": "random"}),
                                  st.aopc.sel({"order": "lerf", "method": "random"}))
    assert (st.aopc.sel({"order": "morf", "method": "a"}) != st.aopc.sel({"order": "lerf", "method": "a"})).any()


def test_image_chunks_and_shared_noise(setup):
    """Uniform noise is drawn once per (image, repeat) and shared by all curves: the same map under
    two names gives identical AOPCs; a different map does not."""
    net, x, maps, target = setup
    kw = dict(region_size=2, steps=12, stride=4, repeats=3, seed=5)
    st = perturbation_study(net, x, target, {"a": maps["a"], "a2": maps["a"].clone(), "b": maps["b"]},
                            image_chunk=2, **kw)
    np.testing.assert_array_equal(st.drops.sel({"method": "a"}), st.drops.sel({"method": "a2"}))
    assert not np.allclose(st.drops.sel({"method": "a"}), st.drops.sel({"method": "b"}))
    assert st.sampled_step.shape == (5, 3, 3)
    k = st.sampled_step.values
    assert ((k >= np.array([1, 5, 9])) & (k <= np.array([4, 8, 12]))).all()
    assert len(np.unique(k)) > 3                     # drawn, not fixed
    np.testing.assert_allclose(st.score0.values, net(x).gather(1, target[:, None])[:, 0].detach().numpy(),
                               rtol=1e-5, atol=1e-6)


def test_road_replacement_runs_and_differs_from_uniform(setup):
    net, x, maps, target = setup
    kw = dict(orders=("morf",), region_size=4, steps=4, stride=2, repeats=2, seed=0)
    r = perturbation_study(net, x, target, maps, replacement="road", **kw)
    u = perturbation_study(net, x, target, maps, **kw)
    assert np.isfinite(r.aopc.values).all() and r.attrs["replacement"] == "road"
    assert not np.allclose(r.aopc.values, u.aopc.values)


def test_stratified_estimate_is_unbiased():
    """Averaged over every possible draw of one step per block, the estimate is eq. 12 exactly."""
    L, s = 12, 4
    d = np.arange(L + 1.0) ** 2 * 0.1 - 0.3 * np.arange(L + 1.0)      # a curved drop, d_0 = 0
    exact = d.sum() / (L + 1)
    combos = np.array(list(itertools.product(range(s), repeat=L // s)))  # (64, 3) offsets
    ks = np.arange(L // s) * s + 1 + combos
    drops = xr.DataArray(d[ks], dims=("repeat", "block"))
    est = aopc_from_sampled_drops(drops, L, s)
    assert float(est.aopc) == pytest.approx(exact)
    one = aopc_from_sampled_drops(xr.DataArray(d[ks[:1]], dims=("repeat", "block")), L, s)
    assert float(one.aopc) != pytest.approx(exact)             # a single draw is not exact
    every = aopc_from_sampled_drops(xr.DataArray(d[None, 1:], dims=("repeat", "block")), L, 1)
    assert float(every.aopc) == pytest.approx(exact)
    np.testing.assert_allclose(every.aopc_curve.values, np.cumsum(d)[1:] / np.arange(2, L + 2))
    with pytest.raises(ValueError, match="multiple"):
        sampled_steps(2, 1, 10, 4)


def test_true_positive_targets():
    labels = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]])
    margins = np.array([[0.5, 3.0, 0.8],        # arg-max class 1 is absent: class 2 (present, > 0)
                        [1.0, -0.2, 0.0],       # the present class scored negative: none
                        [2.0, 1.0, 0.0],
                        [0.0, 0.0, 4.0]])
    ignore = np.zeros_like(labels, bool)
    ignore[2, 0] = True                         # difficult-only: class 1 instead
    np.testing.assert_array_equal(true_positive_targets(labels, margins, ignore), [2, -1, 1, 2])
    with pytest.raises(ValueError, match="ignore"):
        true_positive_targets(labels, margins, ignore[:, :2])


def test_study_steps():
    assert SAMEK2017_SHARE == pytest.approx(0.157, abs=1e-3)
    assert study_steps(227, 227, 9) == (100, 1)                 # the paper's set-up
    assert study_steps(112, 112, 4, samples=5) == (125, 25)     # 15.9 % at 112 px
    L, s = study_steps(112, 112, 1, samples=5)
    assert L % s == 0 and L // s == 5 and 0.157 <= L / 112 ** 2 < 0.17
    assert study_steps(8, 8, 4, steps=50) == (4, 1)             # capped by the 4 regions
    with pytest.raises(ValueError, match="region_size"):
        study_steps(8, 8, 0)


def test_ranking_table_and_min_difference():
    rng = np.random.default_rng(0)
    base = rng.normal(size=40)
    vals = xr.DataArray(np.stack([base + 2.0, base + 1.9 + rng.normal(0, 0.01, 40),
                                  base + rng.normal(0, 1, 40), base]),
                        dims=("method", "image"), coords={"method": ["good", "good2", "noisy", "random"]})
    t = ranking_table(vals, n_boot=500)
    assert list(t.index[:2]) == ["good", "good2"] and t.loc["good", "rank"] == 1
    assert "noisy" in t.loc["good", "better than"] and "good" in t.loc["noisy", "worse than"]
    assert t.loc["good", "low"] > 1.5 and (t.n == 40).all()
    low = ranking_table(vals, baseline=None, higher_is_better=False, n_boot=500)
    assert low.index[0] == "random"
    by_size = xr.concat([vals, vals + xr.DataArray([0, 0, 0, 1.95], dims="method",
                                                   coords={"method": vals.method})], dim="region_size")
    iv = min_difference_interval(by_size.sel({"method": "good"}), by_size.sel({"method": "random"}), n_boot=500)
    assert iv.estimate == pytest.approx(0.05) and iv.n == 40
    with pytest.raises(ValueError, match="baseline"):
        ranking_table(vals, baseline="none")


def test_errors(setup):
    net, x, maps, target = setup
    with pytest.raises(ValueError, match="random"):
        perturbation_study(net, x, target, {"random": maps["a"]}, region_size=2, steps=4)
    with pytest.raises(ValueError, match="orders"):
        perturbation_study(net, x, target, maps, orders=("morf", "random"), region_size=2, steps=4)
    with pytest.raises(ValueError, match="multiple"):
        perturbation_study(net, x, target, maps, region_size=2, steps=6, stride=4)
    with pytest.raises(ValueError, match="regions"):
        perturbation_study(net, x, target, maps, region_size=8, steps=5)
    with pytest.raises(ValueError, match=r"heatmaps\['a'\]"):
        perturbation_study(net, x, target, {"a": maps["a"][:2]}, region_size=2, steps=4)


def test_between_image_similarity():
    from lrpkit.evaluate.aopc_study import between_image_similarity

    g = torch.Generator().manual_seed(0)
    pattern = torch.randn(16, 16, generator=g)
    same = pattern + 0.01 * torch.randn(6, 16, 16, generator=g)
    own = torch.randn(6, 3, 16, 16, generator=g)
    assert between_image_similarity(same) > 0.99
    assert abs(between_image_similarity(own)) < 0.1
    assert np.isnan(between_image_similarity(own[:1]))
