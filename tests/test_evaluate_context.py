"""Outside-inside relevance ratio (Lapuschkin et al. 2016, eq. 11) and box share on hand-made maps."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lrpkit.evaluate import box_mask, box_share, outside_inside_ratio


def hand_map():
    R = np.ones((4, 6))            # outside: 1 per pixel (20 pixels)
    R[1:3, 2:4] = 3.0              # inside box (2, 1, 4, 3): 4 pixels of 3
    return R


def test_box_mask_half_open_and_fractional():
    m = box_mask((4, 6), (2, 1, 4, 3))
    assert m.sum() == 4 and m[1:3, 2:4].all()
    # pixel centres decide for fractional boxes: x in [1.6, 4.4) holds centres 2.5, 3.5
    np.testing.assert_array_equal(box_mask((4, 6), (1.6, 0.4, 4.4, 1.5)), box_mask((4, 6), (2, 0, 4, 1)))
    # union of boxes, clipped to the map
    u = box_mask((4, 6), [(0, 0, 1, 1), (5, 3, 9, 9)])
    assert u.sum() == 2 and u[0, 0] and u[3, 5]
    with pytest.raises(ValueError, match="empty or flipped"):
        box_mask((4, 6), (3, 1, 2, 3))
    with pytest.raises(ValueError, match=r"\(M, 4\)"):
        box_mask((4, 6), (1, 2, 3))


def test_outside_inside_ratio_eq11():
    R = hand_map()
    assert outside_inside_ratio(R, (2, 1, 4, 3)) == pytest.approx(1 / 3)
    # only positive relevance counts: negative pixels outside become 0
    R2 = R.copy()
    R2[0, :] = -10.0               # 6 of the 20 outside pixels
    assert outside_inside_ratio(R2, (2, 1, 4, 3)) == pytest.approx((14 / 20) / 3)
    # negative relevance inside does not lower the inside mean below 0
    R3 = R.copy()
    R3[1, 2] = -100.0
    assert outside_inside_ratio(R3, (2, 1, 4, 3)) == pytest.approx(1 / (9 / 4))
    # mask form, torch tensors and (C, H, W) maps (summed over channels) agree
    mask = box_mask(R.shape, (2, 1, 4, 3))
    assert outside_inside_ratio(torch.tensor(R), mask=mask) == pytest.approx(1 / 3)
    chw = np.stack([R / 3] * 3)
    assert outside_inside_ratio(chw, (2, 1, 4, 3)) == pytest.approx(1 / 3)
    # a map with all its evidence on the context: ratio > 1
    ctx = np.ones((4, 6))
    ctx[1:3, 2:4] = 0.25
    assert outside_inside_ratio(ctx, (2, 1, 4, 3)) == pytest.approx(4.0)


def test_outside_inside_ratio_edge_cases():
    R = hand_map()
    R[1:3, 2:4] = -1.0
    assert outside_inside_ratio(R, (2, 1, 4, 3)) == float("inf")
    assert np.isnan(outside_inside_ratio(-np.ones((4, 6)), (2, 1, 4, 3)))
    with pytest.raises(ValueError, match="whole map"):
        outside_inside_ratio(hand_map(), (0, 0, 6, 4))
    with pytest.raises(ValueError, match="no pixel"):
        outside_inside_ratio(hand_map(), (10, 10, 12, 12))
    with pytest.raises(ValueError, match="exactly one"):
        outside_inside_ratio(hand_map())
    with pytest.raises(ValueError, match="mask has shape"):
        outside_inside_ratio(hand_map(), mask=np.zeros((3, 3), bool))
    with pytest.raises(ValueError, match="NaN"):
        outside_inside_ratio(np.full((4, 6), np.nan), (2, 1, 4, 3))
    with pytest.raises(ValueError, match="2-D"):
        outside_inside_ratio(np.ones(5), (0, 0, 1, 1))


def test_box_share():
    R = hand_map()
    assert box_share(R, (2, 1, 4, 3)) == pytest.approx(12 / 32)
    R2 = R.copy()
    R2[0, :] = -5.0                # negative relevance is not part of the total
    assert box_share(R2, (2, 1, 4, 3)) == pytest.approx(12 / 26)
    # a uniform map gives the box's share of the area
    assert box_share(np.full((4, 6), 0.7), (0, 0, 3, 2)) == pytest.approx(6 / 24)
    # a tag carrying all evidence
    tag = np.zeros((10, 20))
    tag[7:9, 1:5] = 2.0
    tag[0, 0] = -3.0
    assert box_share(tag, (1, 7, 5, 9)) == pytest.approx(1.0)
    assert box_share(tag, (10, 0, 20, 5)) == 0.0
    assert np.isnan(box_share(np.zeros((4, 6)), (0, 0, 2, 2)))


def test_box_to_crop_follows_the_cnn_preprocessing():
    from PIL import Image

    from lrpkit.data import transforms as T
    from lrpkit.evaluate import box_to_crop

    # a 160 x 120 image with a white box; find it again in the preprocessed crop
    img = np.zeros((120, 160, 3), np.uint8)
    box = (40, 60, 100, 100)
    img[60:100, 40:100] = 255
    x = T.center_crop(T.image_to_uint8(Image.fromarray(img), 112), 96)[0].numpy() > 127
    b = box_to_crop(box, (160, 120), 112, 96)[0]
    assert b.tolist() == pytest.approx([40 * 0.7 - 8, 60 * 0.7 + 14 - 8, 100 * 0.7 - 8, 100 * 0.7 + 14 - 8])
    m = box_mask((96, 96), b)
    assert (x == m).mean() > 0.99
    # portrait image, box partly outside the crop is clipped
    c = box_to_crop([(0, 0, 30, 20)], (120, 160), 112, 96)[0]
    assert c.tolist() == pytest.approx([14 - 8, 0.0, 14 + 21 - 8, 14 - 8])
