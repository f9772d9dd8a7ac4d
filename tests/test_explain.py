"""The method registry, explain() and the Quantus-style explain_func adapter."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import lrpkit
from lrpkit.explain import Method, register

torch.set_num_threads(1)


def tiny():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(4 * 16, 5)).eval()


def test_registry_lists_methods_with_params():
    ms = lrpkit.methods()
    for name in ("lrp", "sensitivity", "deconvnet", "gradient_x_input", "guided_backprop"):
        assert isinstance(ms[name], Method)
    assert ms["lrp"].params["composite"] == "alpha2_beta1"
    assert ms["lrp"].params["epsilon"] == 0.01
    assert ms["lrp"].params["cutoff"] is None
    assert ms["sensitivity"].params == {"norm": "l2"}
    assert "Samek" in ms["lrp"].paper          # Samek et al. 2017, cited by authors


@pytest.mark.parametrize("method", ["lrp", "sensitivity", "deconvnet", "gradient_x_input",
                                    "guided_backprop"])
def test_explain_every_method_shape(method):
    net, x = tiny(), torch.randn(3, 3, 8, 8)
    R = lrpkit.explain(net, x, "pred", method=method)
    assert isinstance(R, torch.Tensor) and R.shape == x.shape and torch.isfinite(R).all()


def test_targets_int_tensor_pred():
    net, x = tiny(), torch.randn(3, 3, 8, 8)
    t = net(x).argmax(1)
    a = lrpkit.explain(net, x, "pred", method="lrp", composite="epsilon")
    b = lrpkit.explain(net, x, t, method="lrp", composite="epsilon")
    torch.testing.assert_close(a, b)
    c = lrpkit.explain(net, x, 2, method="lrp", composite="epsilon")
    d = lrpkit.explain(net, x, [2, 2, 2], method="lrp", composite="epsilon")
    torch.testing.assert_close(c, d)


@pytest.mark.parametrize("method", ["lrp", "sensitivity", "gradient_x_input"])
def test_pred_costs_one_forward_and_leaves_batchnorm_alone(method):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                        nn.Dropout(0.5), nn.Flatten(), nn.Linear(4 * 64, 5)).train()
    with torch.no_grad():
        net[1].running_mean.uniform_(-1, 1)
        net[1].running_var.uniform_(0.5, 2)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    calls = []
    net.register_forward_hook(lambda m, i, o: calls.append(1))
    x = torch.randn(3, 3, 8, 8)
    R = lrpkit.explain(net, x, "pred", method=method)
    assert len(calls) == 1, "target='pred' must not cost a second forward pass"
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), f"{k} changed"
    assert net.training and net[3].training
    # 'pred' is the eval-mode prediction: same map as the explicit eval-mode arg-max
    t = net.eval()(x).argmax(1)
    net.train()
    torch.testing.assert_close(R, lrpkit.explain(net, x, t, method=method))
    # an int target costs one forward to count the classes (cached), then one per call
    lrpkit.explain(net, x, 0, method=method)
    assert net.training and all(torch.equal(v, before[k]) for k, v in net.state_dict().items())


def test_unknown_method_and_param():
    net, x = tiny(), torch.randn(1, 3, 8, 8)
    with pytest.raises(ValueError, match="unknown method"):
        lrpkit.explain(net, x, 0, method="nope")
    with pytest.raises(ValueError, match="unknown parameter"):
        lrpkit.explain(net, x, 0, method="lrp", eps=1.0)
    with pytest.raises(ValueError, match="norm"):
        lrpkit.explain(net, x, 0, method="sensitivity", norm="l3")


def test_explain_func_adapter():
    net = tiny()
    x = np.random.default_rng(0).normal(size=(2, 3, 8, 8)).astype(np.float32)
    a = lrpkit.explain_func(net, x, np.array([1, 3]), method="lrp", composite="epsilon",
                            device="cpu", channel_first=True)
    assert isinstance(a, np.ndarray) and a.shape == x.shape
    b = lrpkit.explain(net, torch.from_numpy(x), [1, 3], method="lrp", composite="epsilon")
    np.testing.assert_allclose(a, b.numpy(), rtol=1e-6)


def test_register_duplicate_name_rejected():
    with pytest.raises(ValueError, match="already registered"):
        @register("lrp")
        def other(model, x, target):  # pragma: no cover
            return x


def test_sensitivity_norms_and_baselines_by_hand():
    from nets import two_layer

    # x = [1, 2] -> W1 -> ReLU (h = [0, 2, 3]) -> W2 = [1, 1, -.5]
    net, x = two_layer()
    ex = lambda m, **kw: lrpkit.explain(net, x, 0, method=m, **kw).reshape(-1)  # noqa: E731
    # gradient: [0, 1, -.5] W1 = [2.5, -1]; deconvnet: relu([1, 1, -.5]) W1 = [4, -1.5];
    # guided: [0, 1, 0] W1 = [3, -.5]
    torch.testing.assert_close(ex("sensitivity", norm=None), torch.tensor([2.5, -1.0]))
    torch.testing.assert_close(ex("gradient_x_input"), torch.tensor([2.5, -2.0]))
    torch.testing.assert_close(ex("deconvnet", norm=None), torch.tensor([4.0, -1.5]))
    torch.testing.assert_close(ex("guided_backprop"), torch.tensor([3.0, -0.5]))
    l2 = float(np.hypot(2.5, 1.0))
    torch.testing.assert_close(ex("sensitivity"), torch.tensor([l2 / 2, l2 / 2]))
    torch.testing.assert_close(ex("sensitivity", norm="linf"), torch.tensor([1.25, 1.25]))
    torch.testing.assert_close(lrpkit.viz.channel_sum(
        lrpkit.explain(net, x, 0, method="deconvnet", norm="linf")).reshape(()), torch.tensor(4.0))


def test_deconvnet_guided_catch_functional_relu():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(2, 3, bias=False), nn.Linear(3, 1, bias=False)

        def forward(self, x):
            return self.b(torch.relu(self.a(x.flatten(1))))

    net = Net()
    with torch.no_grad():
        net.a.weight.copy_(torch.tensor([[1.0, -1.0], [3.0, -0.5], [1.0, 1.0]]))
        net.b.weight.copy_(torch.tensor([[1.0, 1.0, -0.5]]))
    x = torch.tensor([1.0, 2.0]).reshape(1, 2, 1, 1)
    torch.testing.assert_close(lrpkit.explain(net, x, 0, method="guided_backprop").reshape(-1),
                               torch.tensor([3.0, -0.5]))


def test_lrp_params_from_config():
    from lrpkit.lrp import params_from_config

    cfg = lrpkit.load_config("smoke")
    p = params_from_config(cfg)
    assert p["composite"] == "alpha2_beta1" and p["epsilon"] == 0.01 and p["cutoff"] is None
    assert set(p) <= set(lrpkit.methods()["lrp"].params)
    net, x = tiny(), torch.randn(1, 3, 8, 8)
    assert lrpkit.explain(net, x, 0, method="lrp", **p).shape == x.shape


# --------------------------------------------------------------------------- explicit targets
def _linear_net():
    """Flatten -> Linear (no ReLU): every method has a closed form for any class."""
    torch.manual_seed(3)
    net = nn.Sequential(nn.Flatten(), nn.Linear(12, 4)).eval()
    with torch.no_grad():
        net[1].weight.copy_(torch.randn(4, 12))
        net[1].bias.copy_(torch.tensor([0.3, -0.2, 0.1, 0.0]))
    return net


@pytest.mark.parametrize("as_list", [False, True])
def test_explicit_target_that_is_not_the_argmax(as_list):
    net = _linear_net()
    x = torch.randn(3, 3, 2, 2)
    W = net[1].weight.detach()
    f = net(x).detach()
    # per sample, the class with the lowest score (never the arg-max)
    t = f.argmin(1)
    assert (t != f.argmax(1)).all()
    target = t.tolist() if as_list else t
    Wt = W[t].reshape(x.shape)                               # d f_t / d x, (N, C, H, W)
    ft = f[torch.arange(3), t]
    refs = {
        "gradient_x_input": x * Wt,
        "guided_backprop": Wt,                               # no ReLU: the plain gradient
        "sensitivity": (Wt.norm(dim=1, keepdim=True) / 3).expand_as(x),   # Samek et al. 2017, eq. 3
        # epsilon rule on the one linear layer (bias absorbs its share):
        # R_i = x_i w_ti / (z_t + eps sgn z_t) * f_t with z_t = f_t
        "lrp": x * Wt / (ft + 0.01 * torch.where(ft >= 0, 1.0, -1.0))[:, None, None, None]
        * ft[:, None, None, None],
    }
    for method, ref in refs.items():
        kw = {"composite": "epsilon"} if method == "lrp" else {}
        R = lrpkit.explain(net, x, target, method=method, **kw)
        torch.testing.assert_close(R, ref, rtol=1e-5, atol=1e-6, msg=method)
        # and it is not the map of the predicted class
        P = lrpkit.explain(net, x, "pred", method=method, **kw)
        assert not torch.allclose(R, P), method


def test_one_int_target_for_every_sample_and_mixed_targets():
    net = _linear_net()
    x = torch.randn(4, 3, 2, 2)
    W = net[1].weight.detach()
    pred = net(x).argmax(1)
    c = int((pred[0] + 1) % 4)                               # not sample 0's prediction
    R = lrpkit.explain(net, x, c, method="gradient_x_input")
    torch.testing.assert_close(R, x * W[c].reshape(1, 3, 2, 2).expand_as(x))
    mixed = torch.tensor([0, 3, 1, 2])
    R = lrpkit.explain(net, x, mixed, method="gradient_x_input")
    torch.testing.assert_close(R, x * W[mixed].reshape(x.shape))
    with pytest.raises(ValueError, match="out of range"):
        lrpkit.explain(net, x, 4, method="gradient_x_input")


def test_resolve_target_with_scores_and_lists():
    from lrpkit.explain import resolve_target

    scores = torch.tensor([[0.1, 2.0, -1.0], [3.0, 0.0, 1.0]])
    torch.testing.assert_close(resolve_target(None, scores, "pred", scores=scores),
                               torch.tensor([1, 0]))
    torch.testing.assert_close(resolve_target(None, scores, [2, 2], scores=scores), torch.tensor([2, 2]))
    with pytest.raises(ValueError, match="out of range"):
        resolve_target(None, scores, 3, scores=scores)
    # a list of images (Fisher-vector models): N = len(x)
    torch.testing.assert_close(resolve_target(None, ["a", "b"], 1, n_classes=2), torch.tensor([1, 1]))
    with pytest.raises(TypeError, match="bool"):
        resolve_target(None, scores, True, scores=scores)
