"""Lapuschkin et al. 2016, App. E preprocessing: edge padding, 10 training views, centre crop."""
import numpy as np
import pytest
import torch
from PIL import Image

from lrpkit.data import transforms as T


def _ramp(h, w):
    """An (h, w, 3) uint8 image whose pixels are all distinct-ish (position coded)."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([(x * 7) % 256, (y * 11) % 256, (x + y) % 256], -1).astype(np.uint8)


def test_pad_to_square_landscape_replicates_edge_rows():
    img = _ramp(30, 60)                     # landscape: width is the longest side
    out = T.pad_to_square(img, size=60)     # no rescale (longest side already 60)
    assert out.shape == (60, 60, 3) and out.dtype == np.uint8
    # 30 rows of padding split 15 / 15; the original sits in rows 15..44
    np.testing.assert_array_equal(out[15:45], img)
    for r in range(15):
        np.testing.assert_array_equal(out[r], img[0])          # top pad = first row repeated
        np.testing.assert_array_equal(out[45 + r], img[-1])    # bottom pad = last row repeated


def test_pad_to_square_portrait_rescales_longest_side_and_pads_columns():
    img = Image.fromarray(_ramp(120, 80))   # portrait 80 wide x 120 high
    out = T.pad_to_square(img, size=60)     # scale 0.5 -> 40 x 60, pad 20 columns
    assert out.shape == (60, 60, 3)
    core = out[:, 10:50]
    for c in range(10):
        np.testing.assert_array_equal(out[:, c], core[:, 0])
        np.testing.assert_array_equal(out[:, 50 + c], core[:, -1])
    # odd padding: the extra column goes to the right
    out2 = T.pad_to_square(_ramp(7, 10), size=10)
    np.testing.assert_array_equal(out2[0], out2[1])      # 1 row on top
    np.testing.assert_array_equal(out2[-1], out2[-2])    # 2 rows at the bottom
    np.testing.assert_array_equal(out2[-2], out2[-3])


def test_ten_views_are_corners_centre_and_mirrors():
    S, c = 10, 6
    x = torch.arange(3 * S * S, dtype=torch.float32).view(3, S, S)
    views = T.ten_views(x, crop=c)
    assert views.shape == (10, 3, c, c)
    d = S - c
    expected = [x[:, :c, :c], x[:, :c, d:], x[:, d:, :c], x[:, d:, d:], x[:, 2:2 + c, 2:2 + c]]
    for i, e in enumerate(expected):
        torch.testing.assert_close(views[i], e)
        torch.testing.assert_close(views[5 + i], e.flip(-1))
    # all ten are different
    flat = views.flatten(1)
    assert len({tuple(v.tolist()) for v in flat}) == 10
    torch.testing.assert_close(T.center_crop(x, c), expected[4])
    with pytest.raises(ValueError, match="view"):
        T.train_view(x, 10, c)
    with pytest.raises(ValueError, match="crop"):
        T.crop_offsets(5, 6)


def test_train_views_batch_seeded_and_normalised():
    imgs = torch.randint(0, 256, (8, 3, 12, 12), dtype=torch.uint8)
    a = T.train_views_batch(imgs, 8, generator=torch.Generator().manual_seed(3))
    b = T.train_views_batch(imgs, 8, generator=torch.Generator().manual_seed(3))
    assert a.shape == (8, 3, 8, 8) and a.dtype == torch.float32
    torch.testing.assert_close(a, b)
    views = torch.tensor([0, 1, 2, 3, 4, 5, 6, 9])
    c = T.train_views_batch(imgs, 8, views=views)
    for i, v in enumerate(views.tolist()):
        torch.testing.assert_close(c[i], T.normalize(T.train_view(imgs[i], v, 8)))


def test_normalize_denormalize_and_to_tensor_batch():
    img = _ramp(40, 50)
    x = T.to_tensor_batch([img, Image.fromarray(img)], size=32, crop=24)
    assert x.shape == (2, 3, 24, 24) and x.dtype == torch.float32
    torch.testing.assert_close(x[0], x[1])
    u8 = torch.from_numpy(T.pad_to_square(img, 32)).permute(2, 0, 1)
    back = T.denormalize(x[0])
    torch.testing.assert_close(back, T.center_crop(u8, 24).float() / 255, atol=1e-5, rtol=0)
    # the fixed statistics: a pixel equal to the mean maps to 0
    mean_px = torch.tensor(T.MEAN).view(3, 1, 1).expand(3, 2, 2)
    torch.testing.assert_close(T.normalize(mean_px), torch.zeros(3, 2, 2))
    assert T.to_tensor_batch(img, size=32, crop=24).shape == (1, 3, 24, 24)


def test_pil_transforms():
    img = Image.fromarray(_ramp(40, 50))
    test_t = T.TestTransform(size=32, crop=24)
    torch.testing.assert_close(test_t(img), T.to_tensor_batch(img, 32, 24)[0])
    tr = T.TrainTransform(size=32, crop=24, seed=1)
    tr2 = T.TrainTransform(size=32, crop=24, seed=1)
    outs = [tr(img) for _ in range(5)]
    outs2 = [tr2(img) for _ in range(5)]
    assert all(o.shape == (3, 24, 24) for o in outs)
    for a, b in zip(outs, outs2):
        torch.testing.assert_close(a, b)


def test_input_bounds_are_the_normalised_pixel_range():
    from lrpkit.data.transforms import input_bounds, normalize

    low, high = input_bounds()
    black = normalize(torch.zeros(1, 3, 2, 2, dtype=torch.uint8))
    white = normalize(torch.full((1, 3, 2, 2), 255, dtype=torch.uint8))
    torch.testing.assert_close(black[0, :, :1, :1], low)
    torch.testing.assert_close(white[0, :, :1, :1], high)
    x = normalize(torch.randint(0, 256, (1, 3, 8, 8), dtype=torch.uint8))
    assert bool((x >= low - 1e-6).all()) and bool((x <= high + 1e-6).all())


def test_train_views_batch_rejects_unknown_views():
    imgs = torch.zeros(2, 3, 8, 8, dtype=torch.uint8)
    with pytest.raises(ValueError, match="0..9"):
        T.train_views_batch(imgs, 6, views=[0, 10])
