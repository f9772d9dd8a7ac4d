"""The API refuses what it cannot explain with a message naming the model's output type, the
input's shape and the layer that refused it (never a raw torch error from deep inside a method).

Each case failed before: a tuple output gave "'tuple' object has no attribute 'dim'", a float
target 1.5 was truncated to class 1, a wrong channel count or image size surfaced torch's
RuntimeError from inside the method.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import lrpkit
from lrpkit.fgvis import gradcam, occlusion
from lrpkit.inputs import check_model_input, model_scores, resolve_target
from lrpkit.params import InvalidParameterError

TUPLE_MSG = r"returned a tuple of 2 tensors.*one \(N, classes\) tensor.*model\(x\)\[0\]"


class LogitsAndFeatures(nn.Module):
    """A classifier whose forward returns ``(logits, features)``, as many research models do."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 5)

    def forward(self, x):
        h = torch.relu(self.conv(x))
        return self.fc(h.mean((2, 3))), h


class DictOutput(LogitsAndFeatures):
    def forward(self, x):
        logits, h = super().forward(x)
        return {"logits": logits, "features": h}


def plain_cnn(size: int = 8) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * size * size, 5))


# ------------------------------------------------------------------ output that is not one tensor
@pytest.mark.parametrize("target", [1, "pred", [1, 2]])
def test_tuple_output_named_by_integer_and_pred_targets(target):
    torch.manual_seed(0)
    net, x = LogitsAndFeatures(), torch.randn(2, 3, 8, 8)
    with pytest.raises(TypeError, match=TUPLE_MSG):
        resolve_target(net, x, target)


def test_tuple_output_named_by_model_scores_and_dict_keys():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 8, 8)
    with pytest.raises(TypeError, match=TUPLE_MSG):
        model_scores(LogitsAndFeatures(), x)
    with pytest.raises(TypeError, match=r"returned a dict with keys \['logits', 'features'\]"
                                        r".*model\(x\)\['logits'\]"):
        model_scores(DictOutput(), x)


@pytest.mark.parametrize("func,kw", [(gradcam, {}), (occlusion, {"window": 4})])
@pytest.mark.parametrize("target", [1, "pred"])
def test_tuple_output_in_gradcam_and_occlusion(func, kw, target):
    torch.manual_seed(0)
    net, x = LogitsAndFeatures(), torch.randn(2, 3, 8, 8)
    with pytest.raises(TypeError, match=TUPLE_MSG):
        func(net, x, target, **kw)


@pytest.mark.parametrize("method,kw", [("gradcam", {}), ("occlusion", {"window": 4}),
                                       ("lrp", {}), ("sensitivity", {}), ("fgvis", {"steps": 2}),
                                       ("pda", {"window": 4})])
@pytest.mark.parametrize("target", [1, "pred"])
def test_tuple_output_through_explain(method, kw, target):
    torch.manual_seed(0)
    net, x = LogitsAndFeatures(), torch.randn(2, 3, 8, 8)
    with pytest.raises(TypeError, match=TUPLE_MSG):
        lrpkit.explain(net, x, target, method=method, **kw)


# ------------------------------------------------------------------ targets
def test_explain_func_refuses_fractional_targets_naming_the_value():
    net = plain_cnn()
    x = np.random.default_rng(0).normal(size=(2, 3, 8, 8)).astype(np.float32)
    with pytest.raises(ValueError, match=r"1\.5.*targets\[1\]"):
        lrpkit.explain_func(net, x, np.array([2.0, 1.5]), method="sensitivity")
    with pytest.raises(ValueError, match=r"2\.25"):
        lrpkit.explain_func(net, x, 2.25, method="sensitivity")
    with pytest.raises(ValueError, match=r"nan"):
        lrpkit.explain_func(net, x, [1.0, float("nan")], method="sensitivity")
    # a float label that is a whole number is that class (as evaluation libraries pass them)
    a = lrpkit.explain_func(net, x, np.array([2.0, 3.0]), method="sensitivity")
    b = lrpkit.explain(net, torch.from_numpy(x), [2, 3], method="sensitivity")
    np.testing.assert_allclose(a, b.numpy())
    assert not np.allclose(a, lrpkit.explain(net, torch.from_numpy(x), [1, 1],
                                             method="sensitivity").numpy())


# ------------------------------------------------------------------ parameters
def test_fgvis_zero_steps_refused_by_its_declaration():
    net, x = plain_cnn(), torch.randn(1, 3, 8, 8)
    with pytest.raises(InvalidParameterError, match=r"'steps'.*\[1, inf\).*got 0"):
        lrpkit.explain(net, x, 1, method="fgvis", steps=0)
    from lrpkit.fgvis import fgvis
    with pytest.raises(InvalidParameterError, match=r"'steps'.*got 0"):
        fgvis(net, x, 1, steps=0)


# ------------------------------------------------------------------ input the model refuses
@pytest.mark.parametrize("method,kw", [("lrp", {}), ("fgvis", {"steps": 2}),
                                       ("pda", {"window": 4}), ("sensitivity", {}),
                                       ("gradcam", {}), ("occlusion", {"window": 4})])
@pytest.mark.parametrize("target", [1, "pred"])
def test_wrong_channel_count_names_shape_and_first_layer(method, kw, target):
    net, x = plain_cnn(), torch.randn(2, 1, 8, 8)
    with pytest.raises(ValueError) as err:
        lrpkit.explain(net, x, target, method=method, **kw)
    msg = str(err.value)
    assert "(2, 1, 8, 8)" in msg                          # the input's shape
    assert "'0' (Conv2d, expects 3 input channels" in msg  # the first layer and its channels
    assert "to have 3 channels, but got 1" in msg          # torch's own message
    assert err.value.__cause__ is None and err.value.__suppress_context__  # no deep traceback


@pytest.mark.parametrize("method,kw", [("lrp", {}), ("fgvis", {"steps": 2}), ("pda", {"window": 4})])
def test_empty_image_refused_before_any_forward(method, kw):
    net = plain_cnn()
    with pytest.raises(ValueError, match=r"empty images.*\(1, 3, 0, 0\)"):
        lrpkit.explain(net, torch.randn(1, 3, 0, 0), 1, method=method, **kw)


@pytest.mark.parametrize("method,kw", [("lrp", {}), ("fgvis", {"steps": 2}), ("pda", {"window": 2})])
def test_image_too_small_or_too_large_names_the_layer_that_refused(method, kw):
    # a 2 x 2 image is smaller than the unpadded 3 x 3 kernel of the first layer
    torch.manual_seed(0)
    unpadded = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5))
    with pytest.raises(ValueError, match=r"\(1, 3, 2, 2\).*'0' \(Conv2d, expects 3 input channels"
                                         r".*Kernel size can't be greater"):
        lrpkit.explain(unpadded, torch.randn(1, 3, 2, 2), 1, method=method, **kw)
    # a 12 x 12 image reaches the classifier with the wrong number of features
    with pytest.raises(ValueError) as err:
        lrpkit.explain(plain_cnn(8), torch.randn(1, 3, 12, 12), 1, method=method, **kw)
    msg = str(err.value)
    assert "(1, 3, 12, 12)" in msg and "'3' (Linear, expects 256 input features)" in msg
    assert "first layer is '0' (Conv2d, expects 3 input channels" in msg


def test_wrong_channel_count_of_a_torchscript_model():
    net = torch.jit.script(plain_cnn())
    with pytest.raises(ValueError) as err:
        lrpkit.explain(net, torch.randn(2, 1, 8, 8), 1, method="sensitivity")
    msg = str(err.value)
    assert "(2, 1, 8, 8)" in msg and "'0' (Conv2d, expects 3 input channels" in msg
    assert "RuntimeError: Given groups=1" in msg and "Traceback of TorchScript" not in msg


def test_model_check_passes_a_good_input_and_keeps_the_model_unchanged():
    net = plain_cnn().train()
    handles = len(net[0]._forward_hooks), len(net[0]._forward_pre_hooks)
    assert check_model_input(net, torch.randn(3, 3, 8, 8)) is None
    assert net.training and handles == (len(net[0]._forward_hooks), len(net[0]._forward_pre_hooks))
    with pytest.raises(ValueError):
        check_model_input(net, torch.randn(3, 2, 8, 8))
    assert net.training and handles == (len(net[0]._forward_hooks), len(net[0]._forward_pre_hooks))


def test_method_errors_of_a_model_that_takes_the_input_are_left_as_they_are():
    # gradcam's own message (no Conv2d) is not replaced by the model check: the model is fine
    net = nn.Sequential(nn.Flatten(), nn.Linear(12, 2))
    with pytest.raises(ValueError, match=r"no Conv2d.*layer="):
        lrpkit.explain(net, torch.randn(2, 3, 2, 2), 0, method="gradcam")
