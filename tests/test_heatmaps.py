"""lrpkit.heatmaps: model input geometry, CNN / FV maps on the model's own input, normalised averages."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from lrpkit.data import transforms as T
from lrpkit.heatmaps import cnn_heatmaps, fv_heatmap, grow_box, input_geometry, normalized_average

from images import H, W, stripes as _stripes


def test_normalized_average_by_hand():
    a = np.array([[2.0, -1.0]])
    b = np.array([[0.0, 3.0]])
    z = np.zeros((1, 2))
    # a / 2 = [1, -0.5], b / 3 = [0, 1], zero map stays 0 -> mean of three
    np.testing.assert_allclose(normalized_average([a, b, z]), [[1 / 3, 0.5 / 3]])
    np.testing.assert_allclose(normalized_average([a]), [[1.0, -0.5]])
    # another size is resized to the first map's shape: a constant map stays constant
    out = normalized_average([np.ones((2, 2)), 5 * np.ones((4, 4))])
    np.testing.assert_allclose(out, np.ones((2, 2)))
    assert normalized_average([np.ones((4, 4))], shape=(2, 2)).shape == (2, 2)
    with pytest.raises(ValueError, match="at least one"):
        normalized_average([])
    with pytest.raises(ValueError, match="2-D"):
        normalized_average([np.ones(3)])


def test_grow_box_and_input_geometry():
    assert grow_box((10, 20, 30, 40), 8) == (2, 12, 38, 48)
    assert grow_box((10, 20, 30, 40), -2) == (12, 22, 28, 38)
    with pytest.raises(ValueError, match="box"):
        grow_box((1, 2, 3), 1)
    m = torch.nn.Linear(1, 1)
    m.meta = {"size": 40, "input_size": 32}
    assert input_geometry(m) == (40, 32)
    assert input_geometry(m, size=50, crop=20) == (50, 20)
    with pytest.raises(ValueError, match="crop"):
        input_geometry(m, crop=64)


def test_cnn_heatmaps_gradient_x_input_of_a_linear_model_by_hand():
    torch.manual_seed(0)
    lin = torch.nn.Linear(3 * 8 * 8, 3)
    net = torch.nn.Sequential(torch.nn.Flatten(), lin)
    net.meta = {"size": 10, "input_size": 8}
    rng = np.random.default_rng(1)
    ims = [Image.fromarray(rng.integers(0, 255, (7, 10, 3), dtype=np.uint8)) for _ in range(2)]
    out = cnn_heatmaps(net, ims, [2, 0], method="gradient_x_input")
    x = T.to_tensor_batch(ims, 10, 8)
    w = lin.weight.detach().reshape(3, 3, 8, 8)
    want = torch.stack([(x[0] * w[2]).sum(0), (x[1] * w[0]).sum(0)]).numpy()   # x * dF/dx, channels summed
    np.testing.assert_allclose(out.relevance, want, rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        f = net(x)
    np.testing.assert_allclose(out.scores, [f[0, 2].item(), f[1, 0].item()], rtol=1e-5)
    assert out.inputs.shape == (2, 8, 8, 3)
    np.testing.assert_allclose(out.inputs, T.denormalize(x).permute(0, 2, 3, 1).numpy())
    one = cnn_heatmaps(net, ims, 2, method="gradient_x_input")   # one target for all images
    np.testing.assert_allclose(one.relevance[0], want[0], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="images"):
        cnn_heatmaps(net, [], 0)
    with pytest.raises(ValueError, match="one per image"):
        cnn_heatmaps(net, ims, [0, 1, 2])



def test_fv_heatmap_is_fisher_lrp_pixel_map_and_score():
    from lrpkit.fisher import FisherLRP, FisherVectorClassifier, FisherVectorEncoder

    v = np.array([0, 1] * 6)
    enc = FisherVectorEncoder(bin_sizes=(4,), step=6, pca_dim=4, n_components=2, n_samples=1500, gmm_max_iter=20)
    clf = FisherVectorClassifier(enc).fit(_stripes(len(v), v), np.stack([v, 1 - v], 1))
    image = _stripes(1, [1], seed=3)[0]
    lrp = FisherLRP(clf, rule="epsilon", epsilon=100.0)
    R, fx = fv_heatmap(lrp, image, 1)
    ref = lrp.relevance(image, 1)
    np.testing.assert_allclose(R, ref.pixel_map("feature"))
    assert R.shape == (H, W)
    assert fx == pytest.approx(float(clf.decision_function(image[None])[0, 1]))
    R2, fx2 = fv_heatmap(clf, image, 1, rule="epsilon", epsilon=100.0)   # built from the model
    np.testing.assert_allclose(R2, R)
    assert fx2 == pytest.approx(fx)
    with pytest.raises(TypeError, match="params"):
        fv_heatmap(lrp, image, 1, epsilon=1.0)
