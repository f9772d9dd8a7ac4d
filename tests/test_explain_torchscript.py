"""A TorchScript model (torch.jit) runs compiled code: methods that swap layers or intercept
activation calls (LRP, deconvnet, guided backprop) cannot reach it and must refuse it instead of
returning another method's heatmap; gradient methods work (Method.accepts says which)."""
import warnings

import pytest
import torch
from torch import nn

from lrpkit import explain
from lrpkit.explain import get_method
from lrpkit.lrp import deconvnet


def _nets():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(),
                        nn.Flatten(), nn.Linear(4 * 8 * 8, 3)).eval()
    with torch.no_grad():
        net[-1].bias.copy_(torch.tensor([0.5, -1.0, 2.0]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return net, torch.jit.script(net)


def test_accepts_names_which_methods_reach_a_torchscript_module():
    net, ts = _nets()
    for name in ("lrp", "deconvnet", "guided_backprop"):
        m = get_method(name)
        assert m.accepts(net) and not m.accepts(ts) and not m.scriptable
    for name in ("sensitivity", "gradient_x_input"):
        assert get_method(name).accepts(ts) and get_method(name).accepts(net)
    fv = get_method("fv_lrp")
    assert not fv.accepts(net) and not fv.accepts(ts)
    assert fv.accepts(type("FV", (), {"decision_function": lambda self, x: x})())


@pytest.mark.parametrize("method", ["lrp", "deconvnet", "guided_backprop"])
def test_hooked_methods_refuse_a_torchscript_module_by_name(method):
    net, ts = _nets()
    x = torch.rand(2, 3, 8, 8)
    assert explain(net, x, 1, method=method).shape == x.shape
    with pytest.raises(TypeError, match=f"{method}.*TorchScript"):
        explain(ts, x, 1, method=method)


def test_direct_deconvnet_call_refuses_rather_than_returning_the_gradient():
    _, ts = _nets()
    with pytest.raises(TypeError, match="deconvnet.*TorchScript"):
        deconvnet(ts, torch.rand(1, 3, 8, 8), 0)


def test_gradient_methods_give_the_same_maps_on_the_scripted_model():
    net, ts = _nets()
    x = torch.rand(2, 3, 8, 8)
    for method in ("sensitivity", "gradient_x_input"):
        a, b = explain(net, x, [2, 0], method=method), explain(ts, x, [2, 0], method=method)
        assert a.abs().sum() > 0
        torch.testing.assert_close(a, b)
