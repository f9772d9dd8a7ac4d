"""Mapping-influence cut-off (Bach et al. 2016, Sec. 3)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from lrpkit.lrp import LRP, lrp

torch.set_num_threads(1)


def patch_net(seed=0):
    """Non-overlapping 2x2/2 convolutions: receptive fields are 2, 4, 8 pixels wide."""
    g = torch.Generator().manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(3, 4, 2, 2, bias=False), nn.ReLU(),
                        nn.Conv2d(4, 4, 2, 2, bias=False), nn.ReLU(),
                        nn.Conv2d(4, 4, 2, 2, bias=False), nn.ReLU(),
                        nn.Flatten(), nn.Linear(4, 3, bias=False))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    return net.eval()


def blocks(R, k):
    """Sum over channels and k x k blocks: (N, C, H, W) -> (N, H/k, W/k)."""
    s = R.sum(1)
    n, h, w = s.shape
    return s.reshape(n, h // k, k, w // k, k).sum((2, 4))


def test_cutoff_share_per_unit_and_uniform_over_receptive_field():
    net = patch_net()
    x = torch.randn(2, 3, 8, 8)
    for cut, k in (("0", 2), ("2", 4), ("4", 8)):
        with LRP(net, "alpha2_beta1", cutoff=cut, record=(cut,)) as attr:
            R = attr(x, 1)
            Rcut = attr.records[cut]
        # relevance of each cut-off position (all its channels) == input relevance in its field
        torch.testing.assert_close(blocks(R, k), Rcut.sum(1), rtol=1e-5, atol=1e-6)
        # spread uniformly: constant over every k x k receptive field and over channels
        up = torch.repeat_interleave(torch.repeat_interleave(Rcut.sum(1), k, 1), k, 2)
        torch.testing.assert_close(R, (up / (3 * k * k))[:, None].expand_as(R), rtol=1e-5,
                                   atol=1e-6)


def n_distinct(R):
    return len(torch.unique(torch.round(R.sum(1)[0] * 1e5)))


def test_deeper_cutoff_is_coarser():
    net = patch_net(1)
    x = torch.randn(1, 3, 8, 8)
    counts = [n_distinct(lrp(net, x, 0, "epsilon", cutoff=c)) for c in (None, "0", "2", "4")]
    assert counts[0] > counts[1] > counts[2] > counts[3] == 1


def test_cutoff_conserves_on_overlapping_net_and_container_names():
    g = torch.Generator().manual_seed(2)
    features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Conv2d(4, 6, 3, padding=1, bias=False), nn.ReLU(), nn.MaxPool2d(2))
    net = nn.Sequential(features, nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                        nn.Linear(24, 3, bias=False)).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    x = torch.randn(1, 3, 16, 16)
    t = int(net(x).argmax())
    for cut in ("0.3", "0", "1"):
        with LRP(net, "zplus", cutoff=cut, record=(cut,)) as attr:
            R = attr(x, t)
            Rc = attr.records[cut]
        torch.testing.assert_close(R.sum(), Rc.sum(), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(R.sum(), net(x)[0, t].detach(), rtol=1e-5, atol=1e-6)
    # below the cut-off the map does not depend on the pixel values within a field
    R1 = lrp(net, x, t, "zplus", cutoff="0")
    assert (R1 >= 0).all() or (R1 <= 0).all()


def recursive_flat(shape_in, convs, unit):
    """Input map of one cut-off unit under the flat rule, by explicit loops (independent of
    the engine): each unit gives equal shares to every in-image input of its window."""
    # convs: list of (c_in, kernel, padding, stride) from the input upwards
    sizes = [shape_in]
    for _c_in, k, p, st in convs:
        h, w = sizes[-1][1:]
        sizes.append((None, (h + 2 * p - k) // st + 1, (w + 2 * p - k) // st + 1))
    (_c, y, x), = [unit]
    R = {(y, x): 1.0}  # spatial relevance at the cut-off layer (channels do not matter)
    for (_c_in, k, p, st), (_, h, w) in zip(reversed(convs), reversed(sizes[:-1])):
        nxt = {}
        for (yy, xx), r in R.items():
            field = [(yy * st - p + i, xx * st - p + j) for i in range(k) for j in range(k)]
            field = [(a, b) for a, b in field if 0 <= a < h and 0 <= b < w]
            for a, b in field:
                nxt[(a, b)] = nxt.get((a, b), 0.0) + r / len(field)
        R = nxt
    out = torch.zeros(shape_in[1:], dtype=torch.float64)
    for (a, b), r in R.items():
        out[a, b] = r
    return out


def test_cutoff_on_overlapping_convolutions_matches_recursive_flat_by_hand():
    """Bach et al. 2016, Sec. 3: relevance at the cut-off is spread by flat weights over each unit's
    (overlapping, padded) receptive field, recursively: a pyramid, checked per unit."""
    g = torch.Generator().manual_seed(4)
    net = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1, bias=False), nn.ReLU(),
                        nn.Conv2d(3, 4, 3, stride=2, padding=1, bias=False), nn.ReLU(),
                        nn.Flatten(), nn.Linear(4 * 4 * 4, 2, bias=False)).double().eval()
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64))
    x = torch.randn(1, 2, 8, 8, generator=g, dtype=torch.float64)
    with LRP(net, "epsilon", cutoff="2", record=("2",)) as attr:
        R = attr(x, 0)
        Rcut = attr.records["2"][0]                              # (4, 4, 4) at conv 2's output
    expected = torch.zeros(8, 8, dtype=torch.float64)
    convs = [(2, 3, 1, 1), (3, 3, 1, 2)]
    for c in range(4):
        for y in range(4):
            for xx in range(4):
                expected += Rcut[c, y, xx] * recursive_flat((2, 8, 8), convs, (c, y, xx))
    torch.testing.assert_close(R[0].sum(0), expected, rtol=1e-10, atol=1e-12)
    # spread evenly over the input channels, and a unit's map stays inside its 7x7 field
    torch.testing.assert_close(R[0, 0], R[0, 1])
    one = recursive_flat((2, 8, 8), convs, (0, 0, 0))
    assert one[:3, :3].sum() == pytest.approx(1.0) and one[3:].sum() == 0 and one[:, 3:].sum() == 0
