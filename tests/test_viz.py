"""Heatmap helpers."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch

from lrpkit import viz


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


def test_montage_by_hand():
    a = np.zeros((1, 1, 3))                      # black 1x1
    b = np.ones((2, 1, 3)) * 0.5                 # grey 2x1 (taller)
    m = viz.montage([a, b], ncols=2, pad=1, fill=1.0)
    # tiles 2x1 (the largest), one padding column between them, no border
    assert m.shape == (2, 3, 3)
    np.testing.assert_allclose(m[:, :, 0], [[0.0, 1.0, 0.5], [1.0, 1.0, 0.5]])
    # default ncols = ceil(sqrt(3)) = 2: second row holds one tile and a fill tile
    g = viz.montage([a, a, a], pad=0, fill=0.25)
    assert g.shape == (2, 2, 3)
    np.testing.assert_allclose(g[..., 1], [[0.0, 0.0], [0.0, 0.25]])
    # an explicit ncols wider than N keeps the width (rows of equal width), uint8 and PIL scale by 1/255
    from PIL import Image

    u = np.full((1, 1, 3), 255, np.uint8)
    w = viz.montage([u, Image.fromarray(np.full((1, 1, 3), 51, np.uint8))], ncols=4, pad=0, fill=0.0)
    np.testing.assert_allclose(w[0, :, 0], [1.0, 0.2, 0.0, 0.0])
    np.testing.assert_allclose(viz.montage([np.full((2, 2), 0.5)], pad=0), np.full((2, 2, 3), 0.5))
    with pytest.raises(ValueError, match="at least one"):
        viz.montage([])
    with pytest.raises(ValueError, match="ncols"):
        viz.montage([a], ncols=0)


def test_show_heatmap_range_box_and_image():
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    h = np.zeros((10, 20))
    h[0, 0] = 1000.0                             # one outlier pixel
    h[1:, :] = np.linspace(-2, 2, 9 * 20).reshape(9, 20)
    im = viz.show_heatmap(ax, h, "t")
    lo, hi = im.get_clim()
    v = np.percentile(np.abs(h), 99.5)
    assert (lo, hi) == pytest.approx((-v, v)) and v < 1000   # symmetric, outlier clipped
    assert ax.get_title() == "t" and not ax.get_xticks().size
    np.testing.assert_allclose(im.get_array(), h)
    with pytest.raises(ValueError, match="2-D"):
        viz.show_heatmap(ax, np.zeros(5))
    p = viz.draw_box(ax, (2, 3, 7, 5))           # pixels 2..6 x 3..4
    assert (p.get_x(), p.get_y(), p.get_width(), p.get_height()) == (1.5, 2.5, 5.0, 2.0)
    with pytest.raises(ValueError, match="box"):
        viz.draw_box(ax, (1, 2, 3))
    fig2, ax2 = plt.subplots()
    viz.show_image(ax2, np.full((3, 4, 3), 0.5), "img")
    assert ax2.get_images()[0].get_array().shape == (3, 4, 3) and ax2.get_title() == "img"
    plt.close(fig)
    plt.close(fig2)


def test_notebook_style_sets_the_reports_rcparams_and_names_unknown_keys():
    import matplotlib.pyplot as plt

    from lrpkit.viz import NOTEBOOK_STYLE, notebook_style

    with plt.rc_context():
        got = notebook_style({"legend.fontsize": 7})
        assert got["legend.fontsize"] == 7 and got["figure.dpi"] == NOTEBOOK_STYLE["figure.dpi"]
        assert plt.rcParams["legend.fontsize"] == 7 and plt.rcParams["axes.titlesize"] == 10
        with pytest.raises(ValueError, match="axes.no_such"):
            notebook_style({"axes.no_such": 1})


def test_montage_rows_one_labelled_row_per_non_empty_group():
    import matplotlib
    matplotlib.use("Agg")
    import numpy as np

    from lrpkit.viz import montage_rows

    img = np.zeros((6, 8, 3))
    fig = montage_rows({"a": [img, img], "empty": [], "b": [img]}, ncols=2, title="t")
    labels = [ax.get_ylabel() for ax in fig.axes]
    assert labels == ["a", "b"] and fig._suptitle.get_text() == "t"
    h, w = fig.axes[0].images[0].get_array().shape[:2]
    assert h >= 6 and w >= 2 * 8                # row "a": both images side by side
