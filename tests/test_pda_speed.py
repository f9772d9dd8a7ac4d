"""PDA at scale: the window stream's chunks and selections, the approximation check on drawn
windows, Algorithm 2 vs few samples (Zhou & Kainz 2018, Fig. 11, 15-16) and per-image speed-ups
(Fig. 12)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import lrpkit
from lrpkit.pda import PatchModel, approximation_error, interval_of, versus_few_samples, window_positions
from lrpkit.pda.analysis import _WindowStream
from lrpkit.pda.speed import per_image_seconds, speedup_interval
from nets import LeftHalfNet, smooth_images

torch.set_num_threads(1)


def _cnn(seed=3):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                         nn.Flatten(), nn.Linear(16, 3)).double().eval()


@pytest.fixture(scope="module")
def pm():
    return PatchModel(window=3, outer=6).fit(smooth_images(6))


def _stream(pm, x, batch, stride=1):
    net = _cnn()
    rows, cols = window_positions(x.shape[-2], 3, stride), window_positions(x.shape[-1], 3, stride)
    t = torch.tensor([0, 1, 2, 0][:x.shape[0]])
    return _WindowStream(net, x, t, pm, rows, cols, "score", batch, torch.device("cpu"), False, "")


def test_stream_chunks_cover_every_window(pm):
    """Batches that do not divide an image chunk's windows used to skip the windows between the
    chunk's end and the next batch start (their prediction stayed 0)."""
    x = smooth_images(4, seed=1)
    whole = _stream(pm, x, 10_000).run(1, None)
    s = _stream(pm, x, 7)
    s.chunk = 1                                      # one image per chunk, 100 windows: 100 % 7 != 0
    chunked = s.run(1, None)
    torch.testing.assert_close(chunked, whole)
    assert bool((whole != 0).all())
    s2 = _stream(pm, x, 7)
    s2.chunk = 3                                     # 3 images, then 1: every sample computed
    kept = s2.run(3, torch.Generator().manual_seed(5), keep=True)
    assert kept.shape == (4, 100, 3) and bool((kept != 0).all())


def test_stream_selection_equals_the_full_grid(pm):
    x = smooth_images(3, seed=2)
    full = _stream(pm, x, 13).run(1, None)                          # (N, W)
    sel = torch.tensor([0, 5, 99, 100, 150, 299])
    part = _stream(pm, x, 4).run(1, None, select=sel)
    torch.testing.assert_close(part, full.reshape(-1)[sel])
    s = _stream(pm, x, 4)
    s.chunk = 1
    torch.testing.assert_close(s.run(1, None, select=sel), full.reshape(-1)[sel])
    with pytest.raises(ValueError, match="sorted"):
        _stream(pm, x, 4).run(1, None, select=torch.tensor([5, 3]))


def test_approximation_on_drawn_windows_inside_the_region(pm):
    x = smooth_images(3, seed=5)
    region = np.zeros((12, 12), bool)
    region[:, :5] = True                                     # where LeftHalfNet looks
    ds = approximation_error(LeftHalfNet(), x, 0, pm, stride=1, samples=30, region=region,
                             windows=6, keep_draws=True, n_boot=200)
    assert ds.sizes["window"] == 6 and ds.row.dims == ("image", "window")
    assert ds.p_draws.shape == (3, 6, 30)
    centre_col = ds.col.values + 1                           # window 3: centre = top-left + 1
    assert (centre_col[ds.examined.values] < 5).all()
    assert ds.verdict.item() == "resolved" and float(ds.correlation) > 0.8
    np.testing.assert_allclose(ds.p_draws.mean("sample"), ds.p_sample)
    # the same windows computed on the full grid give the same numbers
    full = approximation_error(LeftHalfNet(), x, 0, pm, stride=1, samples=2, n_boot=10)
    grid = {(int(r), int(c)): w for w, (r, c) in enumerate(zip(full.row.values, full.col.values))}
    for i in range(3):
        for j in range(6):
            w = grid[(int(ds.row[i, j]), int(ds.col[i, j]))]
            assert float(ds.p_mean[i, j]) == pytest.approx(float(full.p_mean[i, w]), abs=1e-12)


def test_too_few_region_windows_are_filled_but_not_examined(pm):
    x = smooth_images(2, seed=5)
    region = np.zeros((12, 12), bool)
    region[1, 1] = True                                      # one window centre: (0, 0)
    ds = approximation_error(LeftHalfNet(), x, 0, pm, stride=1, samples=4, region=region,
                             windows=5, n_boot=10)
    assert ds.examined.values.sum(1).tolist() == [1, 1]
    assert int(ds.n_examined) == 2


def test_versus_few_samples_against_held_out_draws(pm):
    x = smooth_images(4, seed=7)
    ds = approximation_error(LeftHalfNet(), x, 0, pm, stride=2, samples=60, keep_draws=True,
                             n_boot=100)
    few = versus_few_samples(ds, 5, n_boot=200)
    dr, ex = ds.p_draws.values, ds.examined.values
    d_ref = ds.p_x.values[:, None] - dr[..., 5:].mean(-1)
    d_few = ds.p_x.values[:, None] - dr[..., :5].mean(-1)
    np.testing.assert_allclose(few.err_few, np.where(ex, np.abs(d_few - d_ref), 0).sum(1))
    np.testing.assert_allclose(few.scale, np.where(ex, np.abs(d_ref), 0).sum(1))
    rel_mean = float(few.err_mean.sum() / few.scale.sum())
    assert float(few.relative_error_mean) == pytest.approx(rel_mean)
    iv = interval_of(few, "difference")
    assert iv.n == 4 and iv.low <= iv.estimate <= iv.high
    assert iv.estimate == pytest.approx(rel_mean - float(few.relative_error_few))
    with pytest.raises(ValueError, match="reference"):
        versus_few_samples(ds, 59)
    with pytest.raises(ValueError, match="keep_draws"):
        versus_few_samples(ds.drop_vars("p_draws"), 5)


def test_speedup_is_a_per_window_ratio_of_sums():
    slow, fast = np.array([10.0, 20.0, 30.0]), np.array([1.0, 1.0, 4.0])
    iv = speedup_interval(slow, fast, n_boot=200)
    assert iv.estimate == pytest.approx(60 / 6) and iv.n == 3 and iv.low <= 10 <= iv.high
    iv = speedup_interval(slow, fast, slow_windows=10, fast_windows=40, n_boot=200)
    assert iv.estimate == pytest.approx((6.0) / (6 / 40))
    with pytest.raises(ValueError, match="same images"):
        speedup_interval(slow, fast[:2])
    with pytest.raises(ValueError, match="fast_windows"):
        speedup_interval(slow, fast, fast_windows=0)


def test_per_image_seconds_same_maps_as_one_call(pm):
    x, net = smooth_images(3, seed=4), _cnn()
    t = torch.tensor([2, 0, 1])
    kw = dict(method="pda", variant="mean", window=3, outer=6, patch_model=pm, prob="score",
              stride=2, progress=False)
    maps, secs = per_image_seconds(lambda xi, ti: lrpkit.explain(net, xi, ti, **kw), x, t)
    torch.testing.assert_close(maps, lrpkit.explain(net, x, t, **kw))
    assert secs.shape == (3,) and (secs >= 0).all()
    with pytest.raises(ValueError, match="one class per image"):
        per_image_seconds(lambda xi, ti: xi, x, torch.tensor([0, 1]))
