"""The explorer driven programmatically: set widget values, check what it shows against lrpkit.explain."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch
import xarray as xr

pytest.importorskip("ipywidgets")

import lrpkit  # noqa: E402
from lrpkit import widgets as Wd  # noqa: E402
from lrpkit.evaluate.context import outside_inside_ratio  # noqa: E402
from lrpkit.explain import _REGISTRY, register  # noqa: E402


@pytest.fixture(scope="module")
def explorer_config(scenes_root, tmp_path_factory):
    from explorer_setup import make_explorer_config

    return make_explorer_config(tmp_path_factory.mktemp("explorer"), scenes_root)


@pytest.fixture()
def ex(explorer_config):
    e = Wd.Explorer(explorer_config, debounce=0, perturbation_steps=4, region_size=8,
                    perturbation_repeats=2)
    e.wait()
    return e


def _explain_like(ex, res):
    model = ex._load_model(res["model"])
    return lrpkit.explain(model, res["x"], res["target"], method=res["method"], **res["params"])


def test_initial_view_matches_explain_and_context_ratio(ex):
    res = ex.result
    assert res["method"] == "lrp" and res["model"] == "cnn"
    np.testing.assert_allclose(res["relevance"], _explain_like(ex, res)[0].numpy(), rtol=1e-5, atol=1e-7)
    assert res["heatmap"].shape == res["x"].shape[-2:]
    boxes = res["boxes"]
    if len(boxes):
        want = outside_inside_ratio(res["heatmap"], boxes)
        assert res["mu"] == pytest.approx(want, nan_ok=True)
    for view in (ex.image_view, ex.heatmap_view, ex.overlay_view, ex.scores_view, ex.curve_view):
        assert view.value[:8] == b"\x89PNG\r\n\x1a\n"
    assert set(res["curve"]) == {"morf", "random"} and len(res["curve"]["morf"]) == 5  # step 0 .. 4


def test_changing_method_and_parameters_recomputes(ex):
    before = ex.heatmap_view.value
    ex.method.value = "sensitivity"
    res = ex.wait()
    assert res["method"] == "sensitivity" and ex.heatmap_view.value != before
    np.testing.assert_allclose(res["relevance"], _explain_like(ex, res)[0].numpy(), rtol=1e-5, atol=1e-7)
    ex.method.value = "lrp"
    ex._param_widgets["composite"].value = "epsilon"
    ex._param_widgets["epsilon"].value = 1.0
    res = ex.wait()
    assert res["params"]["composite"] == "epsilon" and res["params"]["epsilon"] == 1.0
    model = ex._load_model("cnn")
    want = lrpkit.explain(model, res["x"], res["target"], method="lrp", composite="epsilon", epsilon=1.0)
    np.testing.assert_allclose(res["relevance"], want[0].numpy(), rtol=1e-5, atol=1e-7)
    ex.target.value = ex.classes()[2]          # an explicit target, not the arg-max
    res = ex.wait()
    assert res["target"] == 2
    want = lrpkit.explain(model, res["x"], 2, method="lrp", composite="epsilon", epsilon=1.0)
    np.testing.assert_allclose(res["relevance"], want[0].numpy(), rtol=1e-5, atol=1e-7)


def test_every_registered_method_gets_parameter_widgets_that_give_its_defaults(ex):
    for name, m in lrpkit.methods().items():
        if m.model_kind != "torch":
            continue
        ex.method.value = name
        got = ex.param_values()
        want = {k: v for k, v in m.params.items() if k != "progress"}
        assert got == want, name
    ex.cancel()


def test_image_filters_twins_and_checkpoints(ex):
    from lrpkit.data import read_bias

    bias = read_bias(ex._scenes_root()).groupby("image_id")["tag"].max()
    ex.bias.value = "tagged"
    ids = [ex._dataset("test").ids[i] for _, i in ex.image.options if i >= 0]
    assert ids and all(bias[i] == 1 for i in ids)
    ex.bias.value = "any"
    ex.cls.value = ex.classes()[0]
    for label, i in ex.image.options:
        names = {o.name for o in ex._dataset("test").annotations[i].objects}
        assert ex.classes()[0] in names
    ex.cls.value = "any"
    ex.twin.value = "test_swapped"
    res = ex.wait()
    assert res["twin"]["image_id"] == res["image_id"].replace("test_", "swapped_")
    assert ex.twin_view.value[:4] == b"\x89PNG"
    assert ("CNN checkpoint epoch000", "cnn:cnn_epoch000.pt") in ex.model.options


def test_debounce_computes_only_the_last_change(explorer_config, monkeypatch):
    e = Wd.Explorer(explorer_config, debounce=0.3, perturbation=False)
    e.wait()
    calls = []
    orig = e.compute
    monkeypatch.setattr(e, "compute", lambda req, cancel=None: (calls.append(req["index"]), orig(req, cancel))[1])
    opts = [i for _, i in e.image.options][:4]
    for i in opts[1:]:
        e.image.value = i
    assert "waiting" in e.status.value            # the busy indicator shows at once
    res = e.wait()
    assert calls == [opts[-1]] and res["index"] == opts[-1]


def test_slow_method_shows_progress_and_can_be_cancelled(ex):
    from tqdm.auto import tqdm

    started = threading.Event()

    def slow(model, x, target, *, steps: int = 10_000):
        for _ in tqdm(range(steps), disable=False, leave=False):
            started.set()
            time.sleep(0.002)
        return torch.zeros_like(x)

    register("_slow_probe", replace=True)(slow)
    try:
        before = dict(ex.result)
        ex.refresh_methods()
        ex.method.value = "_slow_probe"
        assert started.wait(60)
        t0 = time.monotonic()
        while ex.progress.value == 0 and time.monotonic() - t0 < 30:
            time.sleep(0.02)
        assert 0 < ex.progress.value < 1
        assert not ex.cancel_button.disabled
        ex.cancel_button.click()
        ex._thread.join(10)
        assert not ex._thread.is_alive()           # stopped long before 10,000 x 2 ms
        assert ex.result["method"] == before["method"] and "cancelled" in ex.status.value
    finally:
        _REGISTRY.pop("_slow_probe", None)


def test_browse_a_results_file_without_recomputing(ex, explorer_config):
    ex.open_results("demo.nc")
    ds = lrpkit.results.open_dataset(ex._reports_root / "demo.nc")
    assert ex.browse_var.value == "relevance" and ex.browse_data.dims == ("y", "x")
    np.testing.assert_allclose(ex.browse_data.values, ds["relevance"].isel(method=0, image=0).values)
    first = ex.browse_view.value
    sliders = {w.description: w for w in ex.browse_dims.children}
    sliders["method"].value = 1
    sliders["image"].value = 2
    np.testing.assert_allclose(ex.browse_data.values, ds["relevance"].isel(method=1, image=2).values)
    assert ex.browse_view.value != first
    ex.browse_var.value = "score"
    assert ex.browse_data.dims == ("step",)
    assert "demo.nc" in ex.browse_file.options


def test_static_mode_shows_a_figure_not_widgets(explorer_config, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    monkeypatch.setenv("LRPKIT_STATIC", "1")
    e = Wd.Explorer(explorer_config, debounce=0, perturbation=False)
    assert e.static
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda obj, **kw: shown.append(obj))
    e._ipython_display_()
    from matplotlib.figure import Figure

    assert len(shown) == 1 and isinstance(shown[0], Figure) and len(shown[0].axes) == 4


def test_parse_param():
    assert Wd.parse_param("None", None) is None
    assert Wd.parse_param("[1, 2]", None) == [1, 2]
    assert Wd.parse_param("features.6", None) == "features.6"
