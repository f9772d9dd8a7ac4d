"""FGVis experiments (Table 1, Table 2, colour and tag probes) and the comparison methods."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import lrpkit
from lrpkit.data.transforms import denormalize, normalize
from lrpkit.fgvis import experiments as E
from lrpkit.fgvis import gradcam, occlusion
from nets import BoundNet

torch.set_num_threads(1)


# ------------------------------------------------------------------ comparison methods

def test_occlusion_matches_brute_force():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 36, 3))
    x = torch.randn(2, 3, 6, 6)
    t = torch.tensor([0, 2])
    R = occlusion(net, x, t, window=3, stride=2, batch_size=5)
    # brute force: windows at 0, 2, 3 (the last flush with the border) in each axis
    with torch.no_grad():
        p0 = net(x).softmax(1)[torch.arange(2), t]
        ref = torch.zeros(2, 6, 6)
        cnt = torch.zeros(6, 6)
        for i in (0, 2, 3):
            for j in (0, 2, 3):
                xo = x.clone()
                xo[:, :, i:i + 3, j:j + 3] = 0.0
                d = p0 - net(xo).softmax(1)[torch.arange(2), t]
                ref[:, i:i + 3, j:j + 3] += d[:, None, None]
                cnt[i:i + 3, j:j + 3] += 1
    assert torch.allclose(R.sum(1), ref / cnt, atol=1e-6)
    assert torch.allclose(R[:, 0], R[:, 1])               # spread evenly over channels


def test_gradcam_equals_cam_on_gap_linear_net():
    # Grad-CAM on conv -> ReLU -> global average pool -> linear is CAM (Selvaraju et al. Sec. 3):
    # alpha_k = w_ck / (h w), so the map is relu(sum_k w_ck A_k) / (h w)
    torch.manual_seed(1)
    net = nn.Sequential()
    net.add_module("features", nn.Sequential(nn.Conv2d(3, 5, 3, padding=1), nn.ReLU()))
    net.add_module("pool", nn.AdaptiveAvgPool2d(1))
    net.add_module("flat", nn.Flatten())
    net.add_module("fc", nn.Linear(5, 4))
    x = torch.randn(2, 3, 8, 8)
    t = torch.tensor([1, 3])
    R = gradcam(net, x, t)
    with torch.no_grad():
        A = net.features(x)
        w = net.fc.weight[t]                                   # (2, 5)
        cam = torch.relu((w[:, :, None, None] * A).sum(1)) / 64
    assert torch.allclose(R.sum(1), cam, atol=1e-6)
    with pytest.raises(ValueError, match="layer"):
        gradcam(net, x, t, layer="nope")


def test_faithfulness_curve_is_the_rise_deletion_curve():
    # brute force (Petsiuk et al. 2018): pixels zeroed in order of decreasing channel-summed
    # relevance, ceil(H W / n_steps) per step, the target's softmax after each step
    torch.manual_seed(2)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 64, 3))
    x = torch.randn(2, 3, 8, 8)
    t = torch.tensor([1, 2])
    with torch.no_grad():
        assert (net(x).argmax(1) != t).any()                     # not just the predicted class
    ds = E.faithfulness(net, x, t, methods=["sensitivity"], n_steps=8)
    heat = lrpkit.explain(net, x, t, method="sensitivity")
    order = torch.argsort(-heat.sum(1).reshape(2, -1), dim=1, stable=True)
    ref = np.empty((2, 9))
    with torch.no_grad():
        for k in range(9):
            xk = x.clone()
            for i in range(2):
                xk[i].view(3, -1)[:, order[i, :8 * k]] = 0.0
            ref[:, k] = net(xk).softmax(1)[torch.arange(2), t].numpy()
    assert np.allclose(ds["curve"].sel({"method": "sensitivity"}).values, ref, atol=1e-6)
    assert np.allclose(ds["fraction"].values, np.arange(9) / 8)
    assert np.allclose(ds["auc"].sel({"method": "sensitivity"}).values, np.trapezoid(ref, np.arange(9) / 8, axis=1))
    assert not np.allclose(ref[:, 0], ref[:, -1])


# ------------------------------------------------------------------ Table 1

def test_defence_validation_hand_net():
    net = BoundNet()
    x = torch.zeros(4, 3, 4, 4)
    x[:, 0] = 1.0                      # channel R on: class 0, confidently; G (class 1) at -1
    x[:, 1] = -1.0
    x[:, 2] = torch.linspace(-1, 1, 4)[:, None, None]
    ds = E.defence_validation(net, x, confidence=0.99, steps=60, goal_score=0.5)
    assert ds.sizes["image"] == 4
    assert (ds["target"].values == 1).all()
    # G - R <= 0 for every e = m x here (R in [0, 1], G in [-1, 0]): h1 <= 0.1 <= h0, no class 1
    assert ds["share"].sel(defence="off").item() == 0.0
    assert ds["share"].sel(defence="on").item() == 0.0
    # R = 4, G = 3: h1(x) = 0 on the image; undefended, the optimiser deletes R and keeps G
    # (h1 -> 3.1: a feature the image does not have) and makes class 1; the defence forbids it
    x2 = x.clone()
    x2[:, 0] = 4.0
    x2[:, 1] = 3.0
    ds2 = E.defence_validation(net, x2, confidence=0.99, steps=100, goal_score=0.5)
    assert ds2["share"].sel(defence="off").item() == 1.0
    assert ds2["share"].sel(defence="on").item() == 0.0
    assert (ds2["score"].sel(defence="on") <= 0.5 + 1e-6).all()   # stays at the grey start
    assert set(ds2["defence"].values) == {"off", "on"}


def test_defence_validation_needs_confident_images():
    net = BoundNet()
    with pytest.raises(ValueError, match="confidence"):
        E.defence_validation(net, torch.zeros(2, 3, 4, 4), confidence=0.99)


# ------------------------------------------------------------------ colour probe

def test_channel_swap_in_pixel_space():
    rgb = torch.rand(2, 3, 5, 5)
    x = normalize(rgb)
    y = E.channel_swap(x, "G<->B (transposition)")
    assert torch.allclose(denormalize(y, clamp=False), rgb[:, [0, 2, 1]], atol=1e-6)
    # the paper's swaps are cyclic shifts: RBG then GRB is the identity, GRB twice is not
    assert torch.allclose(E.channel_swap(E.channel_swap(x, "RBG"), "GRB"), x, atol=1e-5)
    assert not torch.allclose(E.channel_swap(E.channel_swap(x, "GRB"), "GRB"), x, atol=1e-3)
    with pytest.raises(ValueError, match="order"):
        E.channel_swap(x, "RRB")


class ColourNet(nn.Module):
    """Class 0 'yellow' (R + G - 2 B high), class 1 'red' (R - G), class 2 'other' (bias) --
    in pixel space, so channel swaps change the decision as a colour-biased model would."""

    def forward(self, x):
        p = denormalize(x, clamp=False).mean((2, 3))
        r, g, b = p[:, 0], p[:, 1], p[:, 2]
        return 10 * torch.stack([r + g - 2 * b - 0.5, r - g - 0.3, torch.zeros_like(r)], 1)


def test_colour_bias_per_class_shares():
    px = torch.zeros(4, 3, 6, 6)
    px[:2] = torch.tensor([0.9, 0.8, 0.1]).view(3, 1, 1)   # yellow
    px[2:] = torch.tensor([0.9, 0.1, 0.1]).view(3, 1, 1)   # red
    x = normalize(px)
    labels = np.array([0, 0, 1, 1])
    gb, rg = "G<->B (transposition)", "R<->G (transposition)"
    ds = E.colour_bias(ColourNet(), x, labels, classes=["yellow", "red", "other"], swaps=(gb, rg),
                       mask_classes=["yellow"], mask_images=1, fgvis_params={"steps": 5})
    kept = ds["kept"].to_pandas()
    # yellow -> G<->B (0.9, 0.1, 0.8): r+g-2b < 0.5 -> lost; R<->G (0.8, 0.9, 0.1): still yellow
    assert kept.loc["yellow", gb] == 0.0 and kept.loc["yellow", rg] == 1.0
    # red -> G<->B (0.9, 0.1, 0.1): red; R<->G (0.1, 0.9, 0.1): r - g < 0 -> lost
    assert kept.loc["red", gb] == 1.0 and kept.loc["red", rg] == 0.0
    assert np.isnan(kept.loc["other"]).all()
    assert ds["n_correct"].values.tolist() == [2, 2, 0]
    assert ds["mask_mean"].dims == ("masked_image", "channel")
    assert ((ds["colour_kept"] >= 0) & (ds["colour_kept"] <= 1)).all()


# ------------------------------------------------------------------ tag probe

class TagNet(nn.Module):
    """Class 0 score = 6 x mean brightness of the bottom-left 3x3 corner (the 'tag')."""

    def forward(self, x):
        s = x[:, :, -3:, :3].mean((1, 2, 3))
        return torch.stack([6 * s, torch.ones_like(s)], 1)


def test_tag_bias_mass_in_box():
    torch.manual_seed(0)
    xu = 0.2 * torch.randn(3, 3, 10, 10)
    xt = xu.clone()
    xt[:, :, -3:, :3] = 2.0                                # the tag
    ds = E.tag_bias(TagNet(), xt, xu, (0, 7, 3, 10), 0, fgvis_params={"steps": 40})
    share = ds["box_share"].to_pandas()
    assert (share["tagged"] > 0.9).all()                   # the deletion removes the tag
    assert (ds["box_density"].sel(variant="tagged") > ds["box_density"].sel(variant="untagged")).all()
    assert ds["box_fraction"].values == pytest.approx([0.09] * 3)
    with pytest.raises(ValueError, match="boxes"):
        E.tag_bias(TagNet(), xt, xu, np.zeros((2, 4)), 0)


def test_combine_prefixes_dims():
    import xarray as xr

    a = xr.Dataset({"v": ("image", [1, 2])}, coords={"image": ["a", "b"]}, attrs={"k": 1})
    b = xr.Dataset({"v": ("image", [3.0])}, coords={"image": ["c"]})
    c = E.combine(x=a, y=b)
    assert set(c.data_vars) == {"x_v", "y_v"}
    assert c["x_v"].dims == ("x_image",) and c.sizes["y_image"] == 1
    assert "x_attrs" in c.attrs


def test_registered_methods_listed():
    ms = lrpkit.methods()
    for name in ("fgvis", "occlusion", "gradcam"):
        assert name in ms
