"""Tests that a plausible one-line bug fails: each pins a branch or parameter value that no other
test's assertion would catch (found by injecting one-line bugs into the numeric code and seeing
which ones the suite let through).

* region ranks on a non-square image (every other perturbation test uses a square one);
* the random baseline with a deterministic replacement (its repeats must differ);
* PDA's Laplace correction values (Zintgraf et al. 2017, Sec. 3.1), not only their finiteness;
* the direction of FGVis' L1 sparsity term in each game (Wagner et al. 2019, eq. 2-3);
* further branches of ``evaluate/``, ``pda/``, ``fgvis/`` and ``fisher/`` (see each test).

The positive side of the defence's bound for non-ReLU gates (Wagner et al. 2019, eq. 4-6) is
covered in ``tests/test_baselines_activations.py``:
``test_defence_gates_every_activation_kind_on_both_sides`` (``h(x) > 0`` and ``h(x) < 0`` for
every gated / squashing activation) and ``test_defence_positive_side_by_hand_silu_and_tanh``.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import lrpkit
from lrpkit.evaluate import region_perturbation, removal_ranks
from lrpkit.fgvis import fgvis
from lrpkit.pda import PatchModel, conditional_means, laplace, window_positions


# ------------------------------------------------------------------ region ranks, non-square
def _grid_ranks_slow(h: np.ndarray, m: int, order: str) -> np.ndarray:
    """Samek et al. 2017, eq. 9-11 on the non-overlapping m x m grid, by loops: regions in
    raster order (row of regions, then column), scored by summed relevance, sorted (MoRF:
    descending, LeRF: ascending; ties keep raster order); each pixel gets its region's rank."""
    H, W = h.shape
    regions = []
    for i in range(0, H, m):
        for j in range(0, W, m):
            regions.append((i, j, float(h[i:i + m, j:j + m].sum())))
    key = (lambda r: -r[2]) if order == "morf" else (lambda r: r[2])
    ranks = np.full((H, W), -1)
    for k, (i, j, _) in enumerate(sorted(regions, key=key)):
        ranks[i:i + m, j:j + m] = k
    assert (ranks >= 0).all()
    return ranks


def _centred_ranks_slow(h: np.ndarray, m: int, steps: int, order: str = "morf") -> np.ndarray:
    """Greedy windows: the most (MoRF; LeRF: least) relevant pixel not yet perturbed is the
    centre of step k; its m x m window (clipped at the border) is perturbed, pixels already
    perturbed keep their earlier step."""
    h = h if order == "morf" else -h
    H, W = h.shape
    big = np.iinfo(np.int32).max
    ranks = np.full((H, W), big)
    free = np.ones((H, W), bool)
    lo = -(m // 2)
    for k in range(steps):
        cand = np.where(free, h, -np.inf)
        cy, cx = np.unravel_index(np.argmax(cand), cand.shape)
        for y in range(cy + lo, cy + lo + m):
            for x in range(cx + lo, cx + lo + m):
                if 0 <= y < H and 0 <= x < W:
                    ranks[y, x] = min(ranks[y, x], k)
                    free[y, x] = False
    return ranks


@pytest.mark.parametrize("H,W", [(10, 17), (17, 10), (9, 13)])
@pytest.mark.parametrize("order", ["morf", "lerf"])
def test_grid_ranks_on_non_square_images_match_the_loop(H, W, order):
    g = torch.Generator().manual_seed(H * W)
    h = torch.rand(2, H, W, generator=g)
    got = removal_ranks(h, (2, 3, H, W), region_size=3, steps=1, order=order, repeats=2)
    for n in range(2):
        want = _grid_ranks_slow(h[n].numpy(), 3, order)
        for r in range(2):
            np.testing.assert_array_equal(got[n, r].numpy(), want)


@pytest.mark.parametrize("H,W", [(9, 16), (16, 9)])
@pytest.mark.parametrize("order", ["morf", "lerf"])
def test_centred_ranks_on_non_square_images_match_the_loop(H, W, order):
    g = torch.Generator().manual_seed(3)
    h = torch.rand(1, H, W, generator=g)
    got = removal_ranks(h, (1, 3, H, W), region_size=3, steps=6, regions="centred",
                        order=order)[0, 0]
    np.testing.assert_array_equal(got.numpy(), _centred_ranks_slow(h[0].numpy(), 3, 6, order))


@pytest.mark.parametrize("replacement", ["zero", "mean"])
def test_region_perturbation_scores_on_a_non_square_image_match_the_loop(replacement):
    # a linear model: the score after k replaced regions is computed by replacing them one by
    # one ("zero": 0; "mean": the image's mean colour, one value per channel)
    H, W, m = 8, 14, 3
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * H * W, 4)).double()
    g = torch.Generator().manual_seed(1)
    x = torch.rand(2, 3, H, W, generator=g, dtype=torch.float64) + 0.5
    x[:, 1] *= 3.0                                       # the channels' means differ
    heat = torch.rand(2, H, W, generator=g, dtype=torch.float64)
    steps = 9
    ds = region_perturbation(net, x, heat, 2, region_size=m, steps=steps, repeats=1,
                             replacement=replacement, order="morf")
    for n in range(2):
        ranks = _grid_ranks_slow(heat[n].numpy(), m, "morf")
        fill = torch.zeros(3) if replacement == "zero" else x[n].mean((1, 2))
        xp = x[n:n + 1].clone()
        with torch.no_grad():
            want = [float(net(xp)[0, 2])]
            for k in range(steps):
                for c in range(3):
                    xp[0, c, torch.from_numpy(ranks == k)] = fill[c]
                want.append(float(net(xp)[0, 2]))
        np.testing.assert_allclose(ds.score.isel(image=n, repeat=0).values, want, rtol=1e-5)
    # share of pixels perturbed before step k: 0 at step 0, regions of 9 px (partial at the
    # border: the 14th column and rows 6-7 are cut)
    ranks = np.stack([_grid_ranks_slow(heat[n].numpy(), m, "morf") for n in range(2)])
    frac = [float((ranks < k).mean()) for k in range(steps + 1)]
    np.testing.assert_allclose(ds.perturbed_fraction.values, frac, rtol=1e-12)


def test_uniform_replacement_of_a_one_channel_torch_model_stays_in_0_1():
    # lrpkit's normalised RGB bounds are for 3 channels; another channel count falls back to
    # [0, 1] (the model's valid pixel range is unknown)
    class Extremes(nn.Module):
        def forward(self, x):
            return torch.stack([x.amax((1, 2, 3)), -x.amin((1, 2, 3))], 1)

    x = torch.full((2, 1, 8, 12), 0.5)
    ds = region_perturbation(Extremes(), x, torch.rand(2, 8, 12), 0, region_size=4, steps=6,
                             repeats=3, replacement="uniform")
    top = ds.score.isel(step=-1).values                  # every region replaced
    assert (top <= 1.0).all() and (top > 0.9).all()      # max of 96 uniform draws in [0, 1]
    ds = region_perturbation(Extremes(), x, torch.rand(2, 8, 12), 1, region_size=4, steps=6,
                             repeats=3, replacement="uniform")
    low = -ds.score.isel(step=-1).values                 # the minimum
    assert (low >= 0.0).all() and (low < 0.1).all()


def _deletion_insertion_slow(net, x, h, t, sp, score):
    """RISE deletion (onto zeros) and insertion (into the mean colour) by loops: pixels in
    descending relevance (ties in raster order), ``sp`` per step, the last step partial."""
    N, C, H, W = x.shape
    f = (lambda z: z.softmax(1)) if score == "softmax" else (lambda z: z.sigmoid())
    dele, ins = [], []
    for n in range(N):
        order = np.argsort(-h[n].reshape(-1).numpy(), kind="stable")
        d_img = x[n].clone().reshape(C, -1)
        i_img = x[n].mean((1, 2))[:, None].expand(C, H * W).clone()
        src = x[n].reshape(C, -1)
        d_row, i_row = [], []
        done = 0
        while True:
            with torch.no_grad():
                d_row.append(float(f(net(d_img.reshape(1, C, H, W)))[0, t]))
                i_row.append(float(f(net(i_img.reshape(1, C, H, W)))[0, t]))
            if done >= H * W:
                break
            nxt = order[done:done + sp]
            d_img[:, nxt] = 0.0
            i_img[:, nxt] = src[:, nxt]
            done += len(nxt)
        dele.append(d_row)
        ins.append(i_row)
    return np.array(dele), np.array(ins)


@pytest.mark.parametrize("score", ["softmax", "sigmoid"])
def test_deletion_insertion_on_a_non_square_image_match_the_loop(score):
    H, W, sp = 6, 10, 7                                  # 60 pixels: 8 steps of 7, 1 of 4
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * H * W, 3)).double()
    g = torch.Generator().manual_seed(2)
    x = torch.rand(2, 3, H, W, generator=g, dtype=torch.float64)
    h = torch.rand(2, H, W, generator=g, dtype=torch.float64)
    ds = lrpkit.evaluate.deletion_insertion(net, x, h, 1, step_pixels=sp, substrate="zero",
                                            insertion_substrate="mean", score=score)
    dele, ins = _deletion_insertion_slow(net, x, h, 1, sp, score)
    np.testing.assert_allclose(ds.deletion.values, dele, rtol=1e-5)
    np.testing.assert_allclose(ds.insertion.values, ins, rtol=1e-5)
    np.testing.assert_allclose(ds.fraction.values, [min(k * sp, 60) / 60 for k in range(10)])
    assert ds.fraction.values[-1] == 1.0


# ------------------------------------------------------------------ random baseline repeats
def test_random_order_with_deterministic_replacement_differs_per_repeat():
    H = W = 12
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, H, W, generator=g) + 0.5
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * H * W, 3))
    ranks = removal_ranks(torch.zeros(2, H, W), x.shape, region_size=4, steps=9, order="random",
                          repeats=3)
    for n in range(2):
        for r in range(3):   # each repeat is a permutation of the 9 regions ...
            assert sorted(ranks[n, r, ::4, ::4].reshape(-1).tolist()) == list(range(9))
        # ... and the repeats are different permutations
        assert len({tuple(ranks[n, r, ::4, ::4].reshape(-1).tolist()) for r in range(3)}) == 3
    for repl in ("zero", "mean", "blur"):
        ds = region_perturbation(net, x, None, 1, region_size=4, steps=9, repeats=3,
                                 order="random", replacement=repl)
        s = ds.score.values                                   # (image, step, repeat)
        assert not np.allclose(s[..., 0], s[..., 1]) and not np.allclose(s[..., 1], s[..., 2])
        np.testing.assert_allclose(s[:, 0, :], s[:, :1, 0].repeat(3, 1), rtol=1e-6)  # step 0
        np.testing.assert_allclose(s[:, -1, :], s[:, -1:, 0].repeat(3, 1), rtol=1e-5)  # all gone
    # the baseline of compare_methods is random too, whatever the replacement
    cm = lrpkit.evaluate.compare_methods(net, x, 1, heatmaps={"h": torch.rand(2, H, W)},
                                         region_size=4, steps=9, repeats=3, replacement="zero")
    s = cm.score.sel(method="random").values
    assert not np.allclose(s[..., 0], s[..., 1])
    # MoRF with a deterministic replacement: one computation, repeated (identical repeats)
    h = torch.rand(2, H, W, generator=g)
    morf = region_perturbation(net, x, h, 1, region_size=4, steps=9, repeats=3,
                               replacement="zero").score.values
    np.testing.assert_array_equal(morf[..., 0], morf[..., 2])


# ------------------------------------------------------------------ PDA Laplace correction
def test_laplace_correction_values_by_hand():
    # Zintgraf et al. 2017, Sec. 3.1: p -> (p N + 1) / (N + K)
    p = torch.tensor([0.0, 0.25, 0.5, 1.0], dtype=torch.float64)
    got = laplace(p, 1000, 10)
    want = torch.tensor([1 / 1010, 251 / 1010, 501 / 1010, 1001 / 1010], dtype=torch.float64)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-15)
    torch.testing.assert_close(laplace(p, 8, 2), torch.tensor([0.1, 0.3, 0.5, 0.9],
                                                              dtype=torch.float64))
    # off: clipped into (0, 1) only
    torch.testing.assert_close(laplace(p, None, 10),
                               torch.tensor([1e-7, 0.25, 0.5, 1 - 1e-7], dtype=torch.float64))


@pytest.mark.parametrize("prob,K", [("softmax", 5), ("sigmoid", 2)])
def test_pda_evidence_uses_the_laplace_correction_with_k_classes(prob, K):
    # the "mean" variant on windows that do not overlap: each pixel's evidence is its window's
    # log2 odds(L(p(c|x))) - log2 odds(L(p(c|x'))), L(p) = (p N + 1) / (N + K), K = classes for
    # softmax, 2 for sigmoid
    g = torch.Generator().manual_seed(0)
    x = nn.functional.avg_pool2d(torch.randn(4, 3, 12, 12, generator=g, dtype=torch.float64), 5, 1)
    torch.manual_seed(2)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                        nn.Flatten(), nn.Linear(16, 5)).double()
    with torch.no_grad():
        net[4].weight.mul_(20.0)            # confident: the correction moves the values a lot
    pm = PatchModel(window=4, outer=8).fit(x)
    n_train = 7
    r = lrpkit.explain(net, x[:1], 3, method="pda", variant="mean", window=4, outer=8, stride=4,
                       patch_model=pm, prob=prob, laplace_n=n_train, progress=False)
    rows = window_positions(8, 4, 4)
    cm, _, _ = conditional_means(pm, x[:1], rows, rows)

    def p_of(img):
        with torch.no_grad():
            s = net(img)
        return float(s.softmax(1)[0, 3] if prob == "softmax" else s[0, 3].sigmoid())

    def lo(p):
        q = (p * n_train + 1) / (n_train + K)
        return math.log2(q) - math.log2(1 - q)

    p0 = p_of(x[:1])
    for a, i in enumerate(rows.tolist()):
        for b, j in enumerate(rows.tolist()):
            xp = x[:1].clone()
            xp[0, :, i:i + 4, j:j + 4] = cm[0, a, b]
            we = lo(p0) - lo(p_of(xp))
            torch.testing.assert_close(r[0, :, i:i + 4, j:j + 4].sum(0),
                                       torch.full((4, 4), we, dtype=torch.float64),
                                       rtol=1e-6, atol=1e-9)


# ------------------------------------------------------------------ FGVis sparsity term
class _IgnoresInput(nn.Module):
    """Class scores that do not depend on the input: the similarity term has no gradient, so
    only the L1 term moves the mask."""

    def __init__(self):
        super().__init__()
        self.b = nn.Parameter(torch.tensor([0.3, -0.2, 0.1]))

    def forward(self, x):
        return self.b.expand(x.shape[0], -1) + 0.0 * x.sum((1, 2, 3))[:, None]


@pytest.mark.parametrize("game,start,expect", [
    # eq. 3: deletion / repression minimise phi(p) + lambda |1 - m|_1: the L1 term pulls m to 1
    ("deletion", 1.0, "stays at 1"), ("repression", 0.0, "moves up"),
    # eq. 2: preservation / generation minimise -phi(p) + lambda |m|_1: it pulls m to 0
    ("preservation", 1.0, "moves down"), ("generation", 0.0, "stays at 0")])
def test_fgvis_sparsity_term_pulls_the_mask_the_games_way(game, start, expect):
    x = torch.randn(2, 3, 6, 6, generator=torch.Generator().manual_seed(0))
    # an unreachable goal: no iterate meets it, so the returned mask is the last iterate
    goal = 0.0 if game in ("deletion", "repression") else 1.0
    res = fgvis(_IgnoresInput(), x, 1, game=game, steps=10, lr=0.05, sparsity=1.0,
                adapt_lambda=False, goal_score=goal, similarity="prob")
    m = res.mask
    assert not res.goal_met.any()
    if expect == "stays at 1":
        assert torch.equal(m, torch.ones_like(m))
    elif expect == "stays at 0":
        assert torch.equal(m, torch.zeros_like(m))
    elif expect == "moves up":
        assert (m > 0.4).all() and (m < 1).all()      # Adam: about lr per step
    else:
        assert (m < 0.6).all() and (m > 0).all()


def test_pda_auto_batch_size_by_hand():
    # windows per forward: 8 MiB of input on the CPU, 256 MiB on an accelerator, at most 1024
    per = 3 * 224 * 224 * 4
    assert lrpkit.pda.auto_batch_size((5, 3, 224, 224), torch.device("cpu")) == (8 << 20) // per
    assert lrpkit.pda.auto_batch_size((5, 3, 224, 224), torch.device("cuda")) == (256 << 20) // per
    assert lrpkit.pda.auto_batch_size((5, 3, 16, 16), torch.device("cpu")) == 1024


# ------------------------------------------------------------------ FGVis: each branch by hand
def _linear(H=6, W=5, classes=4, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * H * W, classes))


def _phi_grad(net, x, m0, t, similarity):
    """d phi / d m at the mask ``m0`` (reference 0: e = x m), in float64 by autograd."""
    m = torch.full_like(x, m0, dtype=torch.float64).requires_grad_(True)
    logp = net.double()(x.double() * m).log_softmax(1)[:, t]
    net.float()
    phi = {"prob": logp.exp(), "ce": logp, "logodds": logp - torch.log1p(-logp.exp())}[similarity]
    (g,) = torch.autograd.grad(phi.sum(), m)
    return g


@pytest.mark.parametrize("similarity", ["prob", "ce", "logodds"])
@pytest.mark.parametrize("game", ["deletion", "generation"])
def test_fgvis_one_sgd_step_by_hand(similarity, game):
    # eq. 2-3 without the L1 term (sparsity 0): deletion descends phi from m = 1, generation
    # ascends it from m = 0; one SGD step is m - lr * (+-d phi / d m), clipped to [0, 1]
    net = _linear()
    x = torch.randn(2, 3, 6, 5, generator=torch.Generator().manual_seed(1))
    t = 2
    with torch.no_grad():
        assert (net(x).argmax(1) != t).any()             # not (only) the predicted class
    start, sign = (1.0, 1.0) if game == "deletion" else (0.0, -1.0)
    g = sign * _phi_grad(net, x, start, t, similarity)
    lr = 0.3 / float(g.abs().max())
    res = fgvis(net, x, t, game=game, steps=1, optimizer="sgd", lr=lr, sparsity=0.0,
                similarity=similarity, defence=False)
    want = (start - lr * g).clamp(0, 1).float()
    torch.testing.assert_close(res.mask, want, rtol=1e-4, atol=1e-6)
    assert (res.mask != start).any()


def test_fgvis_optimiser_steps_by_hand():
    # only the L1 term acts (the model ignores its input): in repression its gradient is the
    # constant -lambda / D per entry (D = 3 H W, the mean), so
    # Adam (bias-corrected): every step moves by lr; SGD with momentum 0.9: lr (1 + 1.9 + 2.71) / D
    x = torch.randn(1, 3, 6, 6, generator=torch.Generator().manual_seed(0))
    kw = dict(game="repression", steps=3, sparsity=1.0, adapt_lambda=False, goal_score=0.0)
    adam = fgvis(_IgnoresInput(), x, 1, lr=0.05, **kw).mask
    torch.testing.assert_close(adam, torch.full_like(adam, 0.15), rtol=1e-5, atol=0)
    sgd = fgvis(_IgnoresInput(), x, 1, lr=2.0, optimizer="sgd", **kw).mask
    torch.testing.assert_close(sgd, torch.full_like(sgd, 2.0 * (1 + 1.9 + 2.71) / 108),
                               rtol=1e-5, atol=0)


class _SumScore(nn.Module):
    """Class 0's logit is ``c * sum(e) - 1``, the others 0: deleting any positive pixel lowers
    p(class 0); with e = 0 the prediction is class 1."""

    def __init__(self, c=0.02):
        super().__init__()
        self.c = c

    def forward(self, e):
        s = self.c * e.sum((1, 2, 3)) - 1.0
        return torch.stack([s, torch.zeros_like(s), torch.zeros_like(s)], 1)


def _positive(n=2, h=6, w=6):
    return torch.rand(n, 3, h, w, generator=torch.Generator().manual_seed(0)) + 0.5


def test_fgvis_deletion_returns_the_sparsest_mask_that_met_the_level():
    # the deletion mask shrinks every step; the sparsest mask meeting the level is the first
    # one that met it (the most pixels kept), i.e. the one stop="goal" stops at -- not a
    # later, more deleted one
    x = _positive()
    kw = dict(game="deletion", lr=0.05, sparsity=1e-3, adapt_lambda=False)
    full = fgvis(_SumScore(), x, 0, steps=40, **kw)
    first = fgvis(_SumScore(), x, 0, steps=40, stop="goal", **kw)
    assert full.goal_met.all() and first.goal_met.all()
    assert (first.steps_run < 40).all()
    torch.testing.assert_close(full.mask, first.mask)
    assert (full.mask.flatten(1).mean(1) > 0.1).all()


def test_fgvis_deletion_stop_class_ends_when_the_class_changes():
    x = _positive()
    res = fgvis(_SumScore(), x, 0, game="deletion", steps=60, lr=0.05, sparsity=1e-3,
                adapt_lambda=False, stop="class")
    assert res.goal_met.all() and (res.pred != 0).all()
    assert (res.steps_run < 60).all()


def test_fgvis_deletion_patience_waits_for_a_plateau():
    # deletion lowers p every step: no plateau, all steps run; a constant model plateaus
    x = _positive()
    kw = dict(game="deletion", steps=10, lr=0.05, sparsity=1e-3, adapt_lambda=False,
              patience=3, goal_score=0.0)
    assert (fgvis(_SumScore(), x, 0, **kw).steps_run == 10).all()
    assert (fgvis(_IgnoresInput(), x, 0, **kw).steps_run < 10).all()


def test_fgvis_lambda_adaptation_is_bounded():
    # a level never met divides lambda by lambda_factor every step, down to sparsity * 1e-4
    x = torch.randn(1, 3, 6, 6, generator=torch.Generator().manual_seed(0))
    res = fgvis(_IgnoresInput(), x, 1, game="deletion", steps=40, sparsity=2.0,
                lambda_factor=1.5, goal_score=0.0)
    assert float(res.lam[0]) == pytest.approx(2e-4, rel=1e-6)


def test_fgvis_blur_reference_default_sigma_follows_the_width():
    # W / 22.4: 10 px at 224 (Fong & Vedaldi 2017), from the width on a non-square image
    from lrpkit.fgvis import make_reference

    x = torch.randn(1, 3, 12, 40, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(make_reference(x, "blur"),
                               make_reference(x, "blur", blur_sigma=40 / 22.4))
    assert not torch.allclose(make_reference(x, "blur"),
                              make_reference(x, "blur", blur_sigma=12 / 22.4))


# ------------------------------------------------------------------ occlusion and Grad-CAM
def _occlusion_slow(net, x, t, window, stride):
    """Zeiler & Fergus 2014 by loops: windows at 0, s, 2s, ... plus one flush with the border;
    a pixel's value is the mean drop of p_t over the windows covering it."""
    N, C, H, W = x.shape

    def starts(n):
        s = list(range(0, n - window + 1, stride))
        return s if s[-1] == n - window else s + [n - window]

    with torch.no_grad():
        p0 = net(x).softmax(1)[:, t]
        tot = torch.zeros(N, H, W, dtype=torch.float64)
        cnt = torch.zeros(H, W, dtype=torch.float64)
        for i in starts(H):
            for j in starts(W):
                xo = x.clone()
                xo[:, :, i:i + window, j:j + window] = 0.0
                tot[:, i:i + window, j:j + window] += (p0 - net(xo).softmax(1)[:, t])[:, None, None]
                cnt[i:i + window, j:j + window] += 1
    return tot / cnt


def test_occlusion_on_a_non_square_image_matches_the_loop():
    H, W = 11, 14                      # neither side on the stride grid: flush last windows
    net = _linear(H, W).double()
    x = torch.randn(2, 3, H, W, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    rel = lrpkit.fgvis.occlusion(net, x, 1, window=4, stride=3)
    torch.testing.assert_close(rel.sum(1), _occlusion_slow(net, x, 1, 4, 3))
    torch.testing.assert_close(rel, rel[:, :1].expand_as(rel))     # spread evenly over channels


def test_gradcam_by_hand_on_a_non_square_image():
    # Selvaraju et al. 2017, eq. 1-2: alpha_k = spatial MEAN of d y_c / d A^k,
    # ReLU(sum_k alpha_k A^k), bilinearly upsampled
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 5, 3, stride=2,
                        padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(5, 3)).double()
    x = torch.randn(2, 3, 8, 12, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    rel = lrpkit.fgvis.gradcam(net, x, 2, layer="3")
    A = net[:4](x).detach().requires_grad_(True)
    (g,) = torch.autograd.grad(net[4:](A)[:, 2].sum(), A)
    cam = torch.relu((g.mean((2, 3), keepdim=True) * A.detach()).sum(1, keepdim=True))
    cam = nn.functional.interpolate(cam, size=(8, 12), mode="bilinear", align_corners=False)
    assert cam.abs().max() > 0
    torch.testing.assert_close(rel.sum(1, keepdim=True), cam)


# ------------------------------------------------------------------ Fisher-vector LRP
def test_fisher_pixel_map_on_a_non_square_image_matches_the_loop():
    from lrpkit.fisher import pixel_map

    H, W = 5, 11
    rects = np.array([[0, 0, 3, 4], [3, 8, 7, 14], [-2, 9, 2, 13], [1, -3, 4, 2], [6, 0, 9, 3]])
    vals = np.array([12.0, 4.0, -6.0, 3.0, 9.0])
    want = np.zeros((H, W))
    for (y0, x0, y1, x1), v in zip(rects, vals):
        ys = [y for y in range(y0, y1) if 0 <= y < H]
        xs = [x for x in range(x0, x1) if 0 <= x < W]
        for y in ys:
            for x in xs:
                want[y, x] += v / (len(ys) * len(xs))
    np.testing.assert_allclose(pixel_map(vals, rects, (H, W)), want, atol=1e-12)


def test_fisher_epsilon_rule_takes_a_cancelled_sum_as_positive():
    # Lapuschkin et al. 2016, eq. 22: z_d + eps sgn(z_d) with sgn(0) = +1.  The soft counts
    # equal pi_k M, so both pi sums cancel (count as exactly 0); unequal weights pi_k keep the
    # two pi dimensions' shares from cancelling each other
    from sklearn.mixture import GaussianMixture

    from lrpkit.fisher import feature_relevance, improve

    rng = np.random.default_rng(3)
    feats = rng.normal(0, 1, (10, 3))
    gmm = GaussianMixture(2, covariance_type="diag").fit(rng.normal(0, 1, (40, 3)))
    pi = np.array([0.3, 0.7])
    gmm.weights_, gmm.means_ = pi, np.array([[1.0, 0.5, -0.2], [-1.0, -0.5, 0.2]])
    gmm.covariances_ = np.full((2, 3), 0.8)
    gmm.precisions_cholesky_ = 1 / np.sqrt(gmm.covariances_)
    g0 = np.array([0.1, 0.5, 0.2, 0.4, 0.3, 0.3, 0.6, 0.1, 0.25, 0.25])   # sums to 0.3 M
    g = np.stack([g0, 1 - g0], 1)
    # m_d(l) by hand (eq. 12-13 in skimage's layout: pi, mu, sigma blocks)
    u = (feats[:, None] - gmm.means_[None]) / np.sqrt(gmm.covariances_)[None]
    gt = (g / np.sqrt(pi))[:, :, None]
    psi = np.concatenate([(g - pi) / np.sqrt(pi), (gt * u).reshape(10, -1),
                          (-gt * (u * u - 1) / np.sqrt(2)).reshape(10, -1)], 1)
    w, b, eps = rng.normal(0, 1, 14), 0.7, 1.0
    z = psi.sum(0)
    z = np.where(np.abs(z) <= 1e-10 * np.abs(psi).sum(0), 0.0, z)
    assert (z[:2] == 0).all() and (z[2:] != 0).all()
    R3 = w * improve(psi.mean(0)) + b / psi.shape[1]
    want = (R3 * psi / (z + eps * np.where(z >= 0, 1.0, -1.0))).sum(1)
    r = feature_relevance(feats, gmm, w, b, rule="epsilon", epsilon=eps, gamma=g)
    assert r.extra["n_cancelled_dims"] == 2
    np.testing.assert_allclose(r.feature, want, rtol=0, atol=1e-7)   # (power-normalised noise)
