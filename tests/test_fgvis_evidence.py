"""FGVis evidence (notebook 06): the confidence cut, the goal curve, the channels-last speed path,
and the intervals / findings of Table 1, Table 2, Table A3 and the tag (Wagner et al. 2019)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr
from torch import nn

from lrpkit.evaluate.findings import Findings
from lrpkit.evaluate.intervals import wilson_interval
from lrpkit.fgvis import evidence as V
from lrpkit.fgvis import experiments as E
from lrpkit.fgvis import fgvis, games
from nets import BoundNet

torch.set_num_threads(1)


def _adversarial_images(n=6):
    """R high, G a little lower: class 0 with confidence rising in R - G; the undefended game
    deletes R and keeps G (class 1, a feature the image lacks); the defence forbids it."""
    x = torch.zeros(n, 3, 4, 4)
    x[:, 0] = torch.linspace(0.6, 1.0, n)[:, None, None]    # softmax 0.9963 ... 0.99985
    x[:, 1] = 0.5
    return x


# ------------------------------------------------------------------ the confidence cut

def test_confidence_cut_keeps_the_paper_cut_when_enough_images_reach_it():
    top = np.array([0.999, 0.998, 0.997, 0.9, 0.5])
    assert E.confidence_cut(top, 0.995, 3) == 0.995
    assert E.confidence_cut(top, 0.995, None) == 0.995
    # fewer than 4 reach 0.995: the best cut that keeps 4 images is the 4th highest score
    assert E.confidence_cut(top, 0.995, 4) == pytest.approx(0.9)
    assert E.confidence_cut(top, 0.995, 50) == pytest.approx(0.5)   # all there are


def test_defence_validation_lowers_the_cut_and_reports_it():
    net = BoundNet()
    x = _adversarial_images(6)
    with torch.no_grad():
        conf = net(x).softmax(1).max(1).values
    paper = float(conf.sort(descending=True).values[1]) + 1e-7     # only the most confident image
    ds = E.defence_validation(net, x, confidence=paper, min_images=4, max_images=4, steps=80,
                              goal_score=0.5, goal_scores=[0.3, 0.7, 0.9])
    assert ds.sizes["image"] == 4
    assert ds.attrs["n_at_paper_cut"] == 1 and ds.attrs["confidence_paper"] == pytest.approx(paper)
    assert ds.attrs["confidence_used"] < paper
    assert int(ds["at_paper_cut"].sum()) == 1
    assert list(ds["goal"].values) == [0.3, 0.5, 0.7, 0.9]
    # undefended: every image reaches the adversarial class at every goal; defended: none
    assert ds["curve"].sel(defence="off").values.tolist() == [1.0] * 4
    assert ds["curve"].sel(defence="on").values.tolist() == [0.0] * 4
    # Wilson bounds around the rates, n stored
    assert int(ds["n"]) == 4
    iv = wilson_interval(4, 4)
    assert ds["share_low"].sel(defence="off").item() == pytest.approx(iv.low)
    assert (ds["curve_low"] <= ds["curve"]).all() and (ds["curve"] <= ds["curve_high"]).all()
    # reached at the goal score is the curve's column at that goal
    assert (ds["reached"] == ds["reached_at"].sel(goal=0.5)).all()


def test_goal_curve_falls_with_the_goal():
    """Undefended runs stopped early (few steps) peak at different scores: the success rate is
    non-increasing in the goal and strictly lower at a goal no run reaches."""
    net = BoundNet()
    x = _adversarial_images(6)
    ds = E.defence_validation(net, x, confidence=0.5, steps=6, lr=0.05, goal_score=0.5,
                              goal_scores=[0.2, 0.6, 0.8, 0.95, 1.0], patience=None)
    c = ds["curve"].sel(defence="off").values
    assert (np.diff(c) <= 0).all()
    peak = ds["peak_score"].sel(defence="off").values
    assert np.nanmax(peak) < 1.0 and c[-1] == 0.0 and c[0] > 0.0
    for g, rate in zip(ds["goal"].values, c):
        assert rate == pytest.approx(np.mean(np.nan_to_num(peak, nan=-1) >= g))


# ------------------------------------------------------------------ fgvis: peak score, layout

def test_peak_score_is_the_best_score_with_the_target_on_top():
    net = BoundNet()
    x = _adversarial_images(3)
    t = torch.ones(3, dtype=torch.long)
    off = fgvis(net, x, t, game="generation", defence=False, sparsity=0.0, steps=60, lr=0.1,
                similarity="prob")
    assert (off.pred == 1).all()
    assert (off.peak_score >= off.score - 1e-6).all() and (off.peak_score > 0.5).all()
    on = fgvis(net, x, t, game="generation", defence=True, sparsity=0.0, steps=60, lr=0.1,
               similarity="prob")
    assert torch.isnan(on.peak_score).all()          # class 1 never the arg-max


def _pool_cnn():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(8 * 4 * 4, 4))


class ViewNet(nn.Module):
    """Flattens with .view, which a channels-last activation refuses."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 16 * 16, 3)

    def forward(self, x):
        h = torch.relu(self.conv(x))
        return self.fc(h.view(h.size(0), -1))


def test_channels_last_gives_the_same_masks(monkeypatch):
    net = _pool_cnn()
    x = torch.randn(3, 3, 16, 16)
    kw = dict(game="deletion", steps=15, lr=0.05)
    monkeypatch.setattr(games, "CHANNELS_LAST_ON_CPU", False)
    a = fgvis(net, x, torch.tensor([0, 2, 3]), **kw)
    monkeypatch.setattr(games, "CHANNELS_LAST_ON_CPU", True)
    assert games._memory_format(net, x) == torch.channels_last
    b = fgvis(net, x, torch.tensor([0, 2, 3]), **kw)
    assert b.mask.is_contiguous() and b.explanation.is_contiguous()
    assert torch.allclose(a.mask, b.mask, atol=1e-4)
    assert torch.allclose(a.score, b.score, atol=1e-5)
    assert not torch.allclose(a.mask, torch.ones_like(a.mask))     # the masks moved


def test_channels_last_falls_back_for_a_model_that_views():
    net = ViewNet()
    x = torch.randn(2, 3, 16, 16)
    assert games._memory_format(net, x) == torch.contiguous_format
    res = fgvis(net, x, torch.tensor([0, 1]), game="preservation", steps=3)
    assert res.mask.shape == x.shape


# ------------------------------------------------------------------ Table 1 findings

def _dv(off, on, goals=(0.5, 0.9), on_peaks=None, pred=None, target=None):
    n = len(off)
    off, on = np.asarray(off, bool), np.asarray(on, bool)
    peaks = np.stack([np.where(off, 0.99, np.nan),
                      np.where(on, 0.55 if on_peaks is None else on_peaks, np.nan)], 1)
    reached_at = peaks[..., None] >= np.asarray(goals)
    g0 = list(goals).index(0.5)
    curve = reached_at.mean(0)
    return xr.Dataset(
        {"reached": (("image", "defence"), reached_at[..., g0]),
         "reached_at": (("image", "defence", "goal"), reached_at),
         "peak_score": (("image", "defence"), peaks),
         "score": (("image", "defence"), np.nan_to_num(peaks, nan=0.1)),
         "curve": (("defence", "goal"), curve),
         "curve_low": (("defence", "goal"), curve * 0.9),
         "curve_high": (("defence", "goal"), np.minimum(curve * 1.1 + 0.01, 1)),
         "pred": ("image", np.zeros(n, int) if pred is None else np.asarray(pred)),
         "target": ("image", np.ones(n, int) if target is None else np.asarray(target)),
         "at_paper_cut": ("image", np.arange(n) < n // 2)},
        coords={"image": [str(i) for i in range(n)], "defence": ["off", "on"],
                "goal": list(goals), "pred_class": ["bus", "car"]},
        attrs={"goal_score": 0.5, "confidence_used": 0.99, "confidence_paper": 0.995})


def test_defence_successes_by_image_class_and_target():
    on = np.zeros(6, bool)
    on[[0, 1, 4]] = True
    dv = _dv(np.ones(6), on, on_peaks=np.array([0.6, 0.8, 0, 0, 0.7, 0]),
             pred=[0, 0, 1, 1, 1, 0], target=[1, 1, 0, 0, 0, 1])
    succ = V.defence_successes(dv)
    assert succ.loc[("bus", "car"), "images"] == 2 and succ.loc[("car", "bus"), "images"] == 1
    assert succ.loc[("bus", "car"), "lowest peak"] == pytest.approx(0.6)
    assert succ.loc[("bus", "car"), "highest peak"] == pytest.approx(0.8)


def test_defence_findings_reproduced_when_the_defence_stops_everything():
    F = Findings("t")
    V.defence_findings(F, _dv(np.ones(300), np.zeros(300)))
    # 0 of 300: Wilson's upper bound 1.3 % cannot show "at most 0.2 %"; 0 of 3000 can
    assert [r.verdict for r in F.rows] == ["reproduced", "reproduced", "not resolved"]
    assert all(r.n == 300 for r in F.rows)
    F3 = Findings("t")
    V.defence_findings(F3, _dv(np.ones(3000), np.zeros(3000)))
    assert [r.verdict for r in F3.rows] == ["reproduced"] * 3
    tab = V.defence_table(_dv(np.ones(300), np.zeros(300)))
    assert list(tab["n"]) == [300, 300, 150, 150]          # all images, then the paper-cut subset


def test_defence_findings_contradicted_with_a_reason_from_the_numbers():
    on = np.zeros(300, bool)
    on[:12] = True                                           # 4 % defended successes
    F = Findings("t")
    V.defence_findings(F, _dv(np.ones(300), on, on_peaks=0.55))
    drop, off_row, on_row = F.rows
    assert drop.verdict == "reproduced" and off_row.verdict == "reproduced"
    assert on_row.verdict == "contradicted"
    assert "the 12 defended successes are all bus images" in on_row.reason
    assert "(4.0 % of their 300; 0 of the other 0)" in on_row.reason
    assert "0.55-0.55" in on_row.reason and "goal 0.9" in on_row.reason
    # the drop is not resolved when the defence changes nothing
    F2 = Findings("t")
    V.defence_findings(F2, _dv(on, on))
    assert F2.rows[0].verdict == "not resolved"


# ------------------------------------------------------------------ Table 2 findings

def _fa(auc_by_method, tied_fgvis=0.6):
    names = list(auc_by_method)
    auc = np.stack([auc_by_method[m] for m in names])
    n = auc.shape[1]
    frac = np.linspace(0, 1, 5)
    curve = np.stack([np.outer(a, 1 - frac) * 2 for a in auc])   # curves with those areas
    tied = np.where(np.array(names)[:, None] == "fgvis", tied_fgvis, 0.0) * np.ones((1, n))
    return xr.Dataset({"auc": (("method", "image"), auc), "curve": (("method", "image", "step"), curve),
                       "insertion_auc": (("method", "image"), 1 - auc),
                       "tied_share": (("method", "image"), tied)},
                      coords={"method": names, "image": [str(i) for i in range(n)],
                              "fraction": ("step", frac)})


def test_deletion_findings_paired_over_images():
    rng = np.random.default_rng(0)
    base = rng.uniform(0.1, 0.5, 40)                         # large spread between images
    fa = _fa({"fgvis": base, "lrp": base - 0.03 + rng.normal(0, 0.005, 40),
              "gradcam": base + 0.05 + rng.normal(0, 0.005, 40),
              "occlusion": base + rng.normal(0, 0.01, 40)})
    F = Findings("t")
    V.deletion_findings(F, fa)
    verdict = {r.claim.split("than ")[1].split(":")[0]: r for r in F.rows}
    assert verdict["gradcam"].verdict == "reproduced"
    assert verdict["occlusion"].verdict == "not resolved"
    lrp = verdict["lrp"]
    assert lrp.verdict == "contradicted" and lrp.n == 40
    assert "60 % of the pixels tied" in lrp.reason
    assert lrp.high < 0
    tab = V.deletion_table(fa)
    assert tab.index[0] == "lrp" and tab.loc["fgvis", "minus fgvis"] == 0.0
    assert tab.loc["gradcam", "n"] == 40
    per, vs = V.deletion_intervals(fa)
    assert set(vs["method"].values) == {"lrp", "gradcam", "occlusion"}
    assert float(vs["estimate"].sel({"method": "gradcam"})) == pytest.approx(
        float(fa["auc"].sel({"method": "gradcam"}).mean() - fa["auc"].sel({"method": "fgvis"}).mean()))


def test_faithfulness_reports_tied_pixels():
    torch.manual_seed(3)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 64, 3))
    x = torch.randn(2, 3, 8, 8)
    ds = E.faithfulness(net, x, torch.tensor([1, 2]), methods=["sensitivity"], n_steps=8)
    assert ds["tied_share"].shape == (1, 2)
    assert (ds["tied_share"] < 0.2).all()              # a gradient map has few exact ties


# ------------------------------------------------------------------ Table A3 findings

def _cb(kept_bus, kept_car, n_bus=20, n_car=30):
    kc = np.array([[kept_bus, kept_bus], [kept_car, kept_car]])
    n = np.array([n_bus, n_car])
    kept = kc / n[:, None]
    return xr.Dataset({"kept": (("class", "swap"), kept), "kept_count": (("class", "swap"), kc),
                       "kept_low": (("class", "swap"), kept * 0.9), "kept_high": (("class", "swap"), kept),
                       "n_correct": ("class", n)},
                      coords={"class": ["bus", "car"], "swap": ["RBG", "GRB"],
                              "swap_kind": ("swap", ["cyclic (paper)"] * 2)})


def test_colour_findings_use_wilson_intervals_per_swap():
    F = Findings("t")
    V.colour_findings(F, _cb(0, 29))
    assert [r.verdict for r in F.rows] == ["reproduced"] * 4
    assert F.rows[0].n == 20 and F.rows[2].n == 30
    assert F.rows[0].high == pytest.approx(wilson_interval(0, 20).high)
    F2 = Findings("t")
    V.colour_findings(F2, _cb(18, 5))                         # the opposite: both contradicted
    assert [r.verdict for r in F2.rows] == ["contradicted"] * 4
    F3 = Findings("t")
    V.colour_findings(F3, _cb(0, 29), None, None, why_not="no planted colour bias")
    assert [r.verdict for r in F3.rows] == ["not tested"] * 2 and "planted" in F3.rows[0].reason
    assert "[0.0, 15." in V.colour_table(_cb(0, 29)).loc["bus", "RBG"] or \
        "0.0 %" in V.colour_table(_cb(0, 29)).loc["bus", "RBG"]


# ------------------------------------------------------------------ the tag

def test_tag_density_is_a_ratio_of_sums_not_a_mean_of_ratios():
    n = 12
    din = np.full(n, 0.5)
    dout = np.full(n, 0.25)
    dout[0] = 1e-9                                            # one image deletes nothing outside
    tg = xr.Dataset({"deleted_in": (("image", "variant"), np.stack([din, din * 0.2], 1)),
                     "deleted_out": (("image", "variant"), np.stack([dout, dout], 1)),
                     "box_density": (("image", "variant"), np.stack([din / dout, 0.2 * din / dout], 1))},
                    coords={"variant": ["tagged", "untagged"]})
    d = V.tag_density(tg)
    est = float(d["estimate"].sel(variant="tagged"))
    assert est == pytest.approx(din.sum() / dout.sum())
    assert est < 3 and float(tg["box_density"].sel(variant="tagged").mean()) > 1e7
    assert d["low"].sel(variant="tagged") <= est <= d["high"].sel(variant="tagged")
    F = Findings("t")
    V.tag_findings(F, tg)
    assert F.rows[0].verdict == "reproduced" and F.rows[0].n == n
    F2 = Findings("t")
    V.tag_findings(F2, None, why_not="it needs planted tags")
    assert F2.rows[0].verdict == "not tested"


def test_tag_bias_stores_the_densities_inside_and_outside():
    torch.manual_seed(1)
    net = _pool_cnn()
    x = torch.randn(2, 3, 16, 16)
    ds = E.tag_bias(net, x, x + 0.1, [0, 0, 6, 6], 1, fgvis_params={"steps": 8})
    ratio = ds["deleted_in"] / np.maximum(ds["deleted_out"], 1e-12)
    assert np.allclose(ds["box_density"], ratio)
