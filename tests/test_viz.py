"""Heatmap helpers."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from lrpkit import viz  # noqa: E402


def test_channel_sum_shapes_and_types():
    R = torch.randn(2, 3, 5, 6)
    assert viz.channel_sum(R).shape == (2, 5, 6)
    torch.testing.assert_close(viz.channel_sum(R), R.sum(1))
    assert viz.channel_sum(R[0].numpy()).shape == (5, 6)
    with pytest.raises(ValueError):
        viz.channel_sum(torch.zeros(5))


def test_colour_map_registered_and_symmetric():
    cm = matplotlib.colormaps["lrp"]
    mid = np.array(cm(0.5)[:3])
    assert np.all(mid > 0.95)  # 0 relevance is white
    h = np.array([[-1.0, 0.0, 1.0]])
    rgb = viz.heatmap_rgb(h)
    assert rgb.shape == (1, 3, 3)
    assert rgb[0, 2, 0] > rgb[0, 2, 2]  # positive: red
    assert rgb[0, 0, 2] > rgb[0, 0, 0]  # negative: blue
    # symmetric about 0, scaled by max |h|: 0.5 with max |h| = 2 is 0.5 with vmax=2
    np.testing.assert_allclose(viz.heatmap_rgb(np.array([[0.5, -2.0]]))[0, 0],
                               viz.heatmap_rgb(np.array([[0.5]]), vmax=2.0)[0, 0])
    assert np.allclose(viz.heatmap_rgb(np.zeros((2, 2))), mid, atol=1e-6)


def test_overlay_and_grid():
    img = torch.rand(3, 8, 8)
    h = torch.randn(8, 8)
    out = viz.overlay(img, h)
    assert out.shape == (8, 8, 3) and out.min() >= 0 and out.max() <= 1
    with pytest.raises(ValueError):
        viz.overlay(img, torch.randn(4, 4))
    fig = viz.plot_heatmaps(torch.rand(3, 3, 8, 8), torch.randn(3, 3, 8, 8), titles=["a", "b", "c"])
    assert len(fig.axes) >= 6
    import matplotlib.pyplot as plt
    plt.close(fig)


def test_show_scenes_draws_one_box_per_object(scenes_root):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.patches import Rectangle

    from lrpkit.data import VOCDataset
    from lrpkit.viz import show_scenes

    ds = VOCDataset(scenes_root, "test")
    samples = [ds[i] for i in range(3)]
    fig = show_scenes(samples, ncols=2)
    drawn = [sum(isinstance(p, Rectangle) for p in ax.patches) for ax in fig.axes[:3]]
    assert drawn == [len(t["boxes"]) for _, t in samples]
    assert fig.axes[0].get_title() == samples[0][1]["id"]
    with pytest.raises(ValueError, match="at least one"):
        show_scenes([])
