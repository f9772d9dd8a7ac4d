"""FGVis (Wagner et al., CVPR 2019): games, the defence of Sec. 3.2, model safety, errors."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import lrpkit
from lrpkit.fgvis import Defence, fgvis, make_reference

torch.set_num_threads(1)


def bound_net(w=(1.0, 1.0), bias=0.05):
    """e (1, 2, 1, 1) -> a = relu(w . e) -> logits (5 a, 1).

    With x = [1, -0.5] and bias 0.05: a(x) = 0.55.  The explanation e = m * x (zero reference) can reach
    a = 1 (m = [1, 0]) > a(x), i.e. a feature stronger than on the image: adversarial evidence
    for class 0, which eq. 4 forbids.
    """
    net = nn.Sequential(nn.Flatten(), nn.Linear(2, 1), nn.ReLU(), nn.Linear(1, 2))
    with torch.no_grad():
        net[1].weight.copy_(torch.tensor([list(w)]))
        net[1].bias.fill_(bias)
        net[3].weight.copy_(torch.tensor([[5.0], [0.0]]))
        net[3].bias.copy_(torch.tensor([0.0, 1.0]))
    x = torch.tensor([1.0, -0.5]).reshape(1, 2, 1, 1)
    return net, x


def hidden(net, e):
    with torch.no_grad():
        return net[:3](e).item()


@pytest.mark.parametrize("optimizer,lr", [("adam", 0.05), ("sgd", 0.002)])
def test_defence_keeps_hidden_activation_within_image_bounds(optimizer, lr):
    net, x = bound_net()
    a_x = hidden(net, x)
    assert a_x == pytest.approx(0.55)
    free = fgvis(net, x, 0, game="generation", defence=False, sparsity=0.0, steps=200, lr=lr,
                 optimizer=optimizer)
    held = fgvis(net, x, 0, game="generation", defence=True, sparsity=0.0, steps=200, lr=lr,
                 optimizer=optimizer)
    a_free = hidden(net, free.explanation)
    a_held = hidden(net, held.explanation)
    assert a_free > 0.9          # unconstrained: the feature grows past its value on the image
    # defended: at most one step past the bound (the step that crossed it), never further;
    # a step moves m0 by <= ~2 lr (Adam) or lr * |g| / (1 - 0.9) = 50 lr (SGD, |g| <= 5)
    assert a_held <= a_x + 0.15
    assert a_held < a_free - 0.3
    assert free.score[0] > held.score[0]


def test_defence_blocks_feature_absent_from_image():
    # a(x) = relu(1 - 1.1 + 0.05) = 0: the feature is off on the image (on, 0.05, at the grey
    # start m = 0); with the defence it can only fall, without it grows to ~1
    net, _ = bound_net(bias=0.05)
    x = torch.tensor([1.0, -1.1]).reshape(1, 2, 1, 1)
    assert hidden(net, x) == 0.0
    held = fgvis(net, x, 0, game="generation", defence=True, sparsity=0.0, steps=100)
    free = fgvis(net, x, 0, game="generation", defence=False, sparsity=0.0, steps=100)
    assert hidden(net, held.explanation) <= 0.05 + 1e-6
    assert hidden(net, free.explanation) > 0.5
    assert free.pred[0] == 0 and held.pred[0] == 1


def test_defence_gradient_matches_eq6_by_hand():
    # eq. 6 on the hand net: d logit0 / d e passes the ReLU only where 0 < z <= a(x)
    net, x = bound_net()
    d = Defence(net)
    out_x = d.record(x)
    assert torch.equal(out_x, net(x))
    # a(x) = 0.55; z = e0 + e1 + 0.05
    for e_val, passes in (([0.2, 0.0], True), ([0.5, 0.0], True), ([0.9, 0.0], False),
                          ([0.0, -0.5], False)):
        e = torch.tensor(e_val).reshape(1, 2, 1, 1).requires_grad_(True)
        with d.clip():
            out = net(e)
        assert torch.equal(out.detach(), net(e).detach())   # identity in the forward pass
        (g,) = torch.autograd.grad(out[0, 0], e)
        expect = torch.tensor([5.0, 5.0]).reshape(1, 2, 1, 1) if passes else torch.zeros(1, 2, 1, 1)
        assert torch.allclose(g, expect), (e_val, g.flatten())


def test_defence_tanh_gate_both_signs():
    # a non-ReLU nonlinearity: bounds [min(0, h(x)), max(0, h(x))] with h(x) < 0
    net = nn.Sequential(nn.Flatten(), nn.Linear(1, 1, bias=False), nn.Tanh(), nn.Linear(1, 1, bias=False))
    with torch.no_grad():
        net[1].weight.fill_(1.0)
        net[3].weight.fill_(1.0)
    x = torch.tensor([-1.0]).reshape(1, 1, 1, 1)
    d = Defence(net)
    d.record(x)
    for v, passes in ((-0.5, True), (0.0, True), (0.3, False), (-1.5, False)):
        e = torch.tensor([v]).reshape(1, 1, 1, 1).requires_grad_(True)
        with d.clip():
            out = net(e)
        (g,) = torch.autograd.grad(out.sum(), e)
        assert (g.abs().item() > 0) == passes, v


def test_final_nonlinearity_is_not_clipped():
    net = nn.Sequential(nn.Flatten(), nn.Linear(2, 2), nn.Sigmoid())
    x = torch.randn(1, 2, 1, 1)
    d = Defence(net)
    d.record(x)
    assert d.n_nonlinearities == 0


def small_cnn(seed=0, n_classes=4):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
                         nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                         nn.Flatten(), nn.Linear(32, 16), nn.ReLU(), nn.Dropout(0.3),
                         nn.Linear(16, n_classes))


def quadrant_images(n, g):
    """Noise images with a bright 6x6 square in quadrant k = class k (4 classes)."""
    y = torch.arange(n) % 4
    x = 0.5 * torch.randn(n, 3, 16, 16, generator=g)
    for i, k in enumerate(y.tolist()):
        r, c = divmod(k, 2)
        x[i, :, 1 + 8 * r:7 + 8 * r, 1 + 8 * c:7 + 8 * c] += 2.5
    return x, y


@pytest.fixture(scope="module")
def cnn_and_x():
    """small_cnn trained for a few seconds to find the bright square (confident predictions)."""
    net = small_cnn()
    g = torch.Generator().manual_seed(1)
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    for _ in range(20):
        xb, yb = quadrant_images(64, g)
        loss = nn.functional.cross_entropy(net(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    x, y = quadrant_images(3, g)
    with torch.no_grad():
        assert (net(x).argmax(1) == y).all()
    return net, x


@pytest.mark.parametrize("game", ["deletion", "preservation", "generation", "repression"])
def test_masks_in_unit_interval_and_shape(cnn_and_x, game):
    net, x = cnn_and_x
    m = lrpkit.explain(net, x, "pred", method="fgvis", game=game, steps=15)
    assert m.shape == x.shape
    assert float(m.min()) >= 0.0 and float(m.max()) <= 1.0
    assert torch.isfinite(m).all()


def test_deletion_lowers_and_preservation_keeps_score(cnn_and_x):
    net, x = cnn_and_x
    with torch.no_grad():
        p = net.eval()(x).softmax(1)
    t = p.argmax(1)
    rows = torch.arange(len(x))
    dele = fgvis(net, x, t, game="deletion", steps=60)
    pres = fgvis(net, x, t, game="preservation", steps=60)
    with torch.no_grad():
        pd = net(x * dele.mask).softmax(1)[rows, t]     # zero reference: e = m * x
        pp = net(x * pres.mask).softmax(1)[rows, t]
    assert torch.allclose(pd, dele.score, atol=1e-5)
    assert (pd < p[rows, t] - 0.2).all(), (pd, p[rows, t])                 # evidence deleted
    assert (pp >= dele.score_reference + 0.5 * (p[rows, t] - dele.score_reference)).all()
    assert (pres.mask.flatten(1).mean(1) < 0.9).all()                      # ... by a sparser mask
    assert dele.goal_met.all() and pres.goal_met.all()


def _snapshot(net):
    return ({k: v.clone() for k, v in net.state_dict().items()},
            [(p.requires_grad, p.grad) for p in net.parameters()],
            [m.training for m in net.modules()],
            [(dict(m._forward_hooks), dict(m._forward_pre_hooks), dict(m._backward_hooks))
             for m in net.modules()])


def _assert_same(net, snap, x, out_before):
    state, flags, training, hooks = snap
    for k, v in net.state_dict().items():
        assert torch.equal(v, state[k]), k
    assert [(p.requires_grad, p.grad) for p in net.parameters()] == flags
    assert [m.training for m in net.modules()] == training
    assert [(dict(m._forward_hooks), dict(m._forward_pre_hooks), dict(m._backward_hooks))
            for m in net.modules()] == hooks
    net_mode = [m.training for m in net.modules()]
    net.eval()
    with torch.no_grad():
        assert torch.equal(net(x), out_before)
    for m, t in zip(net.modules(), net_mode):
        m.training = t


@pytest.mark.parametrize("method", ["fgvis", "occlusion", "gradcam"])
def test_model_unchanged_after_call(method):
    net = small_cnn(2)
    net.train()                      # a training flag that must survive
    net[4].register_forward_hook(lambda *a: None)
    x = torch.randn(2, 3, 16, 16)
    net.eval()
    with torch.no_grad():
        out = net(x)
    net.train()
    snap = _snapshot(net)
    lrpkit.explain(net, x, 1, method=method, **({"steps": 5} if method == "fgvis" else {}))
    _assert_same(net, snap, x, out)


class Boom(RuntimeError):
    pass


class Exploding(nn.Module):
    """Raises on its n-th forward call (inside the optimisation loop)."""

    def __init__(self, n):
        super().__init__()
        self.net = small_cnn(3)
        self.n, self.calls = n, 0

    def forward(self, x):
        self.calls += 1
        if self.calls == self.n:
            raise Boom("boom")
        return self.net(x)


@pytest.mark.parametrize("n", [2, 4, 6])
def test_model_unchanged_after_exception(n):
    net = Exploding(n)
    net.train()
    x = torch.randn(2, 3, 16, 16)
    net.eval()
    with torch.no_grad():
        out = net.net(x)
    net.train()
    net.calls = -10 ** 6
    snap = _snapshot(net)
    net.calls = 0
    with pytest.raises(Boom):
        fgvis(net, x, torch.tensor([0, 1]), game="deletion", steps=5)
    net.calls = -10 ** 6
    _assert_same(net, snap, x, out)
    # no torch function mode left behind: relu is plain relu again
    from torch.overrides import _get_current_function_mode_stack
    assert not _get_current_function_mode_stack()


def test_same_seed_same_mask(cnn_and_x):
    net, x = cnn_and_x
    kw = dict(method="fgvis", game="preservation", steps=10, reference="noise")
    a = lrpkit.explain(net, x, "pred", seed=3, **kw)
    b = lrpkit.explain(net, x, "pred", seed=3, **kw)
    c = lrpkit.explain(net, x, "pred", seed=4, **kw)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_batched_equals_single(cnn_and_x):
    net, x = cnn_and_x
    both = fgvis(net, x[:2], torch.tensor([0, 1]), game="deletion", steps=12)
    one = fgvis(net, x[1:2], torch.tensor([1]), game="deletion", steps=12)
    assert torch.allclose(both.mask[1:2], one.mask, atol=1e-5)


def test_references():
    x = torch.randn(2, 3, 12, 12)
    assert torch.equal(make_reference(x, "zero"), torch.zeros_like(x))
    mean = make_reference(x, "mean")
    assert torch.allclose(mean[0, :, 0, 0], x.mean((0, 2, 3)))
    blur = make_reference(x, "blur", blur_sigma=2.0)
    assert blur.shape == x.shape and blur.std() < x.std()
    const = torch.ones(8, 8)
    assert torch.allclose(make_reference(const.expand(1, 3, 8, 8).clone(), "blur", blur_sigma=1.0),
                          torch.ones(1, 3, 8, 8), atol=1e-6)
    assert torch.equal(make_reference(x, "noise", seed=1), make_reference(x, "noise", seed=1))


@pytest.mark.parametrize("kwargs,word", [
    ({"game": "hide_and_seek"}, "game"),
    ({"reference": "purple"}, "reference"),
    ({"similarity": "cosine"}, "similarity"),
    ({"steps": -1}, "steps"),
    ({"lr": 0.0}, "lr"),
    ({"sparsity": -1.0}, "sparsity"),
    ({"level": 2.0}, "level"),
    ({"stop": "never"}, "stop"),
])
def test_bad_parameters_name_the_problem(cnn_and_x, kwargs, word):
    net, x = cnn_and_x
    with pytest.raises(ValueError, match=word):
        lrpkit.explain(net, x, 0, method="fgvis", **{"steps": 2, **kwargs})
    with pytest.raises(ValueError, match=word):
        fgvis(net, x, 0, **{"steps": 2, **kwargs})


def test_bad_target_and_nan_image(cnn_and_x):
    net, x = cnn_and_x
    with pytest.raises(ValueError, match="target"):
        lrpkit.explain(net, x, 7, method="fgvis", steps=2)
    with pytest.raises(ValueError, match="target"):
        fgvis(net, x, 4, steps=2)
    bad = x.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        lrpkit.explain(net, bad, 0, method="fgvis", steps=2)
    with pytest.raises(ValueError, match="NaN"):
        fgvis(net, bad, 0, steps=2)
    with pytest.raises(TypeError, match="model"):
        fgvis(lambda z: z, x, 0, steps=2)


def test_defence_rejects_other_batch():
    net = small_cnn()
    d = Defence(net)
    d.record(torch.randn(2, 3, 16, 16))
    with pytest.raises(RuntimeError, match="shape"):
        with d.clip():
            net(torch.randn(3, 3, 16, 16))


def test_defence_is_identity_in_forward_on_torchvision_resnet():
    tvm = pytest.importorskip("torchvision.models")
    torch.manual_seed(0)
    net = tvm.resnet18(weights=None, num_classes=5).eval()
    x = torch.randn(1, 3, 32, 32)
    e = 0.5 * x
    d = Defence(net)
    d.record(x)
    assert d.n_nonlinearities == 17          # 1 stem + 2 per basic block x 8
    with torch.no_grad(), d.clip():
        out = net(e)
    with torch.no_grad():
        assert torch.equal(out, net(e))
