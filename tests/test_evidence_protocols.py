"""Protocol fixes: the paper's colour swaps, FGVis deletion ties, the PDA approximation check."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from lrpkit.data.transforms import denormalize, normalize
from lrpkit.evaluate import deletion_insertion
from lrpkit.evaluate.perturbation import pixel_order
from lrpkit.fgvis import experiments as E
from lrpkit.pda import ApproximationNotResolved, PatchModel, approximation_error
from nets import LeftHalfNet, smooth_images

torch.set_num_threads(1)


# ------------------------------------------------------------------ colour swaps (Table A3)

def test_paper_swaps_move_every_channel():
    assert set(E.SWAPS) == {"RBG", "GRB"}
    for name, idx in E.SWAPS.items():
        assert sorted(idx) == [0, 1, 2]
        assert all(idx[i] != i for i in range(3)), f"{name}: a channel stays in place"
    for name, idx in E.TRANSPOSITIONS.items():
        assert "transposition" in name
        assert sum(idx[i] == i for i in range(3)) == 1, f"{name} must keep exactly one channel"


def _paper_swap_via_bgr(rgb: torch.Tensor, order: str) -> torch.Tensor:
    """Wagner et al.'s swap done as the paper does it: on the BGR image a Caffe net reads."""
    bgr = rgb[:, [2, 1, 0]]
    src = {"B": 0, "G": 1, "R": 2}
    swapped = bgr[:, [src[ch] for ch in order]]        # slots B, G, R receive order[0..2]
    return swapped[:, [2, 1, 0]]                        # what the net sees, back in RGB


@pytest.mark.parametrize("order", ["RBG", "GRB"])
def test_channel_swap_is_the_papers_swap_of_bgrsmooth_images(order):
    rgb = torch.rand(2, 3, 4, 4)
    y = denormalize(E.channel_swap(normalize(rgb), order), clamp=False)
    assert torch.allclose(y, _paper_swap_via_bgr(rgb, order), atol=1e-6)
    yellow = torch.tensor([0.9, 0.8, 0.1]).view(1, 3, 1, 1)
    moved = denormalize(E.channel_swap(normalize(yellow), order), clamp=False).flatten()
    assert all(abs(float(moved[i]) - float(yellow.flatten()[i])) > 0.05 for i in range(3))


class YellowNet(nn.Module):
    """Class 0 'yellow' (R + G - 2 B), class 1 'other' (bias) -- a colour-biased model."""

    def forward(self, x):
        p = denormalize(x, clamp=False).mean((2, 3))
        r, g, b = p[:, 0], p[:, 1], p[:, 2]
        return 10 * torch.stack([r + g - 2 * b - 0.5, torch.zeros_like(r)], 1)


def test_yellow_is_lost_under_both_paper_swaps_but_kept_by_a_transposition():
    x = normalize(torch.tensor([0.9, 0.8, 0.1]).view(1, 3, 1, 1).expand(6, 3, 5, 5).clone())
    rg = "R<->G (transposition)"
    ds = E.colour_bias(YellowNet(), x, np.zeros(6, int), classes=["yellow", "other"],
                       swaps=("RBG", "GRB", rg), mask_classes=[])
    kept = ds["kept"].sel({"class": "yellow"})
    assert kept.sel(swap="RBG") == 0.0 and kept.sel(swap="GRB") == 0.0
    assert kept.sel(swap=rg) == 1.0                     # R <-> G keeps yellow yellow
    assert list(ds.swap_kind.values) == ["cyclic (paper)", "cyclic (paper)", "transposition (extra)"]
    assert float(ds["kept_mean"].sel({"class": "yellow"})) == 0.0   # the paper's swaps only
    lo, hi = ds["kept_low"].sel({"class": "yellow", "swap": rg}), ds["kept_high"].sel(
        {"class": "yellow", "swap": rg})
    assert 0.5 < float(lo) < 1.0 == float(hi)           # Wilson at 6 of 6


# ------------------------------------------------------------------ deletion ties (Table 2)

def test_random_ties_are_not_raster_order_and_are_seeded():
    h = torch.zeros(2, 8, 8)
    h[:, 5, 5], h[:, 6, 1] = 2.0, 1.0                   # two ranked pixels, 62 ties at 0
    idx = pixel_order(h, "index")
    assert idx[0, :2].tolist() == [45, 49]
    assert idx[0, 2:].tolist() == sorted(idx[0, 2:].tolist())      # stable: raster order
    r0 = pixel_order(h, "random", seed=0)
    assert r0[:, :2].tolist() == [[45, 49], [45, 49]]               # relevance still decides
    tied = r0[0, 2:].tolist()
    assert sorted(tied) == [i for i in range(64) if i not in (45, 49)]
    assert tied != sorted(tied) and tied[:10] != list(range(10))
    assert r0[0].tolist() != r0[1].tolist()                          # per image
    assert torch.equal(r0, pixel_order(h, "random", seed=0))
    assert not torch.equal(r0, pixel_order(h, "random", seed=1))
    with pytest.raises(ValueError, match="ties"):
        pixel_order(h, "first")


class BottomNet(nn.Module):
    """Class 0 scores the brightness of the bottom two rows only."""

    def forward(self, x):
        s = x[:, :, -2:, :].mean((1, 2, 3))
        return torch.stack([3 * s, torch.zeros_like(s)], 1)


def test_deletion_with_tied_heatmap_is_not_raster_order():
    x = torch.ones(2, 3, 8, 8)
    flat = torch.zeros(2, 8, 8)                           # every pixel tied
    kw = dict(step_pixels=8, score="raw", substrate="zero")
    by_index = deletion_insertion(BottomNet(), x, flat, 0, **kw)
    # raster order deletes the top six rows first: the score does not move for six steps
    d = by_index.deletion.values[0]
    assert np.allclose(d[:7], d[0]) and d[-1] < d[0]
    rnd = deletion_insertion(BottomNet(), x, flat, 0, ties="random", seed=3, **kw)
    r = rnd.deletion.values[0]
    assert r[2] < r[0] - 0.1                            # bottom pixels leave from the start
    assert rnd.attrs["ties"] == "random" and rnd.attrs["seed"] == 3
    again = deletion_insertion(BottomNet(), x, flat, 0, ties="random", seed=3, **kw)
    np.testing.assert_array_equal(again.deletion.values, rnd.deletion.values)
    other = deletion_insertion(BottomNet(), x, flat, 0, ties="random", seed=4, **kw)
    assert not np.array_equal(other.deletion.values, rnd.deletion.values)


class SaturatedNet(nn.Module):
    """A linear read-out of ``clamp(x, -1, 1)``: saturated pixels have exactly zero gradient
    (sensitivity maps full of ties, as FGVis' masks) but deleting them changes the score."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(3 * 8 * 8, 3)

    def forward(self, x):
        return self.fc(x.clamp(-1, 1).flatten(1))


def test_faithfulness_breaks_ties_at_random_by_default():
    torch.manual_seed(1)
    x = 0.5 * torch.rand(3, 3, 8, 8) - 0.25
    x[..., 4:] = 3.0                                      # the right half saturates: 32 ties
    t = torch.tensor([1, 2, 0])
    net = SaturatedNet()
    a = E.faithfulness(net, x, t, methods=["sensitivity"], n_steps=8)
    assert a.attrs["ties"] == "random"
    b = E.faithfulness(net, x, t, methods=["sensitivity"], n_steps=8)
    np.testing.assert_array_equal(a.curve.values, b.curve.values)
    raster = E.faithfulness(net, x, t, methods=["sensitivity"], n_steps=8, ties="index")
    np.testing.assert_allclose(a.curve.values[..., :5], raster.curve.values[..., :5])  # ranked half
    assert not np.allclose(a.curve.values[..., 5:8], raster.curve.values[..., 5:8])   # the ties


# ------------------------------------------------------------------ PDA approximation (Fig. 11)

@pytest.fixture(scope="module")
def pm():
    return PatchModel(window=3, outer=6).fit(smooth_images(6))


def test_approximation_error_over_windows(pm):
    x = smooth_images(2, seed=5)
    ds = approximation_error(LeftHalfNet(), x, 0, pm, stride=3, samples=40, n_boot=200)
    assert ds.verdict.item() == "resolved" and int(ds.n_effect) >= 3
    assert ds.d_sample.dims == ("image", "window") and ds.sizes["window"] == 16
    # the relative error is the ratio of sums it claims to be
    rel = float(np.abs(ds.error).sum() / np.abs(ds.d_sample).sum())
    assert float(ds.relative_error) == pytest.approx(rel)
    np.testing.assert_allclose(ds.error, ds.d_sample - ds.d_mean)
    assert float(ds.relative_error_low) <= float(ds.relative_error) <= float(ds.relative_error_high)
    assert float(ds.correlation) > 0.8
    # windows right of column 5 have no effect at all
    right = ds.col.values >= 6
    assert np.abs(ds.d_sample.values[:, right]).max() < 1e-12
    assert not ds.effect.values[:, right].any()


def test_approximation_check_fails_on_windows_without_effect(pm):
    x = smooth_images(2, seed=5)
    region = np.zeros((12, 12), bool)
    region[:, 7:] = True                                  # the part the model ignores
    ds = approximation_error(LeftHalfNet(), x, 0, pm, stride=3, samples=40, region=region,
                             n_boot=100)
    assert ds.verdict.item() == "not resolved"
    assert int(ds.n_effect) == 0 and int(ds.n_examined) > 0
    assert "0 of" in ds.reason.item()
    with pytest.raises(ApproximationNotResolved, match="windows change the prediction"):
        approximation_error(LeftHalfNet(), x, 0, pm, stride=3, samples=40, region=region,
                            n_boot=100, on_unresolved="raise")
    with pytest.raises(ValueError, match="region"):
        approximation_error(LeftHalfNet(), x, 0, pm, stride=3, samples=40, region=np.ones((5, 5)))


# ------------------------------------------------------------------ perturbation batches on the CPU

class ViewNet(nn.Module):
    """Calls ``.view`` on its input: cannot take a channels-last batch."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(3 * 6 * 6, 2)

    def forward(self, x):
        return self.fc(x.view(x.shape[0], -1))


def test_region_perturbation_same_numbers_in_either_layout():
    from lrpkit.data.transforms import input_bounds
    from lrpkit.evaluate import region_perturbation, removal_ranks

    torch.manual_seed(2)
    x = torch.randn(2, 3, 6, 6)
    h = torch.randn(2, 6, 6)
    net = ViewNet()
    ds = region_perturbation(net, x, h, 1, region_size=2, steps=5, repeats=2, seed=1)
    # the reference: eq. 11 image by image, with the same rank maps and uniform draws
    ranks = removal_ranks(h, x.shape, region_size=2, steps=5, repeats=2, seed=1)
    low, high = input_bounds()
    noise = low + (high - low) * torch.rand((4, 3, 6, 6), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        for i in range(2):
            for r in range(2):
                for k in range(6):
                    xp = torch.where(ranks[i, r] < k, noise[i * 2 + r], x[i])
                    assert float(ds.score[i, k, r]) == pytest.approx(float(net(xp[None])[0, 1]),
                                                                     abs=1e-5)
