"""The explorer package: controls from the declarations, the worker's cancellation, the compute
functions against lrpkit.explain, the renderer, the results browser, and the explorer driven
programmatically (set widget values, check what it shows)."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

W = pytest.importorskip("ipywidgets")

import lrpkit  # noqa: E402
from lrpkit import widgets as Wd  # noqa: E402
from lrpkit.evaluate.context import outside_inside_ratio  # noqa: E402
from lrpkit.params import Boolean, InstanceOf, Interval, Options, declare, parameters  # noqa: E402
from lrpkit.widgets import compute, controls, render  # noqa: E402


#: the key of the config's default model, lrpkit's scene CNN (its name); checkpoints: "<name>@<epoch>"
CNN = "scene CNN"


@pytest.fixture(scope="module")
def explorer_config(scenes_root, tmp_path_factory):
    from explorer_setup import make_explorer_config

    return make_explorer_config(tmp_path_factory.mktemp("explorer"), scenes_root)


@pytest.fixture()
def ex(explorer_config):
    e = Wd.Explorer(explorer_config, debounce=0, perturbation_steps=4, region_size=8,
                    perturbation_repeats=2)
    e.wait()
    yield e
    e.worker.cancel()
    e.worker.wait(60)


def _explain_like(ex, res):
    model = ex.space.model(res.request.model)
    return lrpkit.explain(model, res.x, res.target, method=res.method, **res.params)


def _widgets(w):
    """Every widget under ``w`` (children of boxes and tabs)."""
    yield w
    for c in getattr(w, "children", ()):
        yield from _widgets(c)


# ---------------------------------------------------------------------------------- controls
@declare(mode=Options("a", "b"), norm=[Options("l2", "linf"), None], flag=Boolean(),
         n=Interval(int, 1, 9), rate=Interval(float, 0, None, closed="neither"),
         shift=Interval(float), limit=[Interval(int, 2, None), None],
         layer=[InstanceOf(str, name="a layer name"), None], thing=[InstanceOf(dict), None])
def _probe(model, x, target, *, mode="a", norm="l2", flag=True, n=3, rate=0.5, shift=0.0,
           limit=None, layer=None, thing=None):
    return x


def test_controls_follow_each_kind_of_constraint():
    ps = parameters(_probe)
    c = controls.build_control(ps["mode"])
    assert isinstance(c.input, W.Dropdown) and [v for _, v in c.input.options] == ["a", "b"]
    c = controls.build_control(ps["norm"])
    assert isinstance(c.input, W.Dropdown) and c.auto is None
    assert [label for label, _ in c.input.options] == ["l2", "linf", "None"]
    c.input.label = "None"
    assert c.value is None                       # a real None, not the string "None"
    c.value = "linf"
    assert c.value == "linf"
    assert isinstance(controls.build_control(ps["flag"]).input, W.Checkbox)
    c = controls.build_control(ps["n"])
    assert isinstance(c.input, W.BoundedIntText) and (c.input.min, c.input.max) == (1, 9)
    c = controls.build_control(ps["rate"])
    assert isinstance(c.input, W.BoundedFloatText) and c.input.min == 0 and c.input.max == controls.FLOAT_LIMIT
    assert isinstance(controls.build_control(ps["shift"]).input, W.FloatText)
    c = controls.build_control(ps["limit"])       # optional int: a box with an "auto" toggle
    assert c.value is None and c.auto.value and c.input.disabled and c.input.value == 2
    c.auto.value = False
    assert c.value == 2 and not c.input.disabled
    c.value = None
    assert c.auto.value and c.value is None
    assert controls.build_control(ps["layer"]) is None                 # no model: no layer names
    c = controls.build_control(ps["layer"], layer_names=["features.0", "features.3"])
    assert isinstance(c.input, W.Dropdown) and c.value is None and c.auto is not None
    c.auto.value = False
    assert c.value == "features.3"
    assert controls.build_control(ps["thing"]) is None                 # an object: no widget


def test_form_rejects_a_value_its_declaration_rejects():
    from lrpkit.registry import Method

    m = Method("_probe", _probe, {k: p for k, p in parameters(_probe).items()})
    form = controls.ParamForm(m, {"n": 4, "thing": {"k": 1}})
    assert form.values()["n"] == 4 and form.values()["thing"] == {"k": 1}   # fixed, no widget
    form["rate"].value = 0.0                      # the box allows its min, the open interval not
    with pytest.raises(lrpkit.params.InvalidParameterError, match="'rate'"):
        form.values()


def test_every_control_is_built_from_the_declaration(ex):
    """Each parameter of each method gets the widget its declaration calls for, starting at the
    config's value; no free-text box anywhere."""
    seen = set()
    for name, m in lrpkit.methods().items():
        kind = "fisher" if m.model_kind == "fisher" else "torch"
        layers = [n for n, _ in ex.space.model(CNN).named_modules() if n] if kind == "torch" else []
        start = ex.space.params(name, CNN if kind == "torch" else None)
        form = controls.ParamForm(m, start, layer_names=layers)
        for pname, p in m.parameters.items():
            c = form.controls.get(pname)
            if pname == "progress" or (p.choices is None and p.find(Boolean) is None
                                       and p.find(Interval) is None
                                       and not (p.find(InstanceOf) and str in p.find(InstanceOf).types)):
                assert c is None, (name, pname)      # objects: from the config / pipeline
                continue
            assert c is not None, (name, pname)
            seen.add(type(c.input).__name__)
            assert c.value == start[pname] or (c.value is None and start[pname] is None), (name, pname)
            if p.choices is not None:
                assert isinstance(c.input, W.Dropdown)
                values = [None if label == "None" else v for label, v in c.input.options]
                assert values == [*p.choices, *([None] if p.optional else [])], (name, pname)
            elif p.find(Boolean) is not None:
                assert isinstance(c.input, W.Checkbox)
            elif p.find(Interval) is not None:
                iv = p.find(Interval)
                want = {int: W.BoundedIntText, float: W.BoundedFloatText}[iv.kind]
                if iv.kind is float and iv.low is None and iv.high is None:
                    want = W.FloatText
                assert isinstance(c.input, want), (name, pname)
                if iv.low is not None:
                    assert c.input.min == iv.low or (iv.kind is int and c.input.min == iv.low + 1)
                if iv.high is not None:
                    assert c.input.max == iv.high
            assert (c.auto is not None) == (p.optional and p.choices is None), (name, pname)
        assert form.values().keys() <= m.parameters.keys()
    assert {"Dropdown", "Checkbox", "BoundedIntText", "BoundedFloatText", "FloatText"} <= seen
    # PDA's prob offers every declared choice (the old hand-written list lacked "score")
    ex.method.value = "pda"
    prob = ex.form()["prob"].input
    assert "score" in [v for _, v in prob.options] and prob.value == "sigmoid"   # the config's
    ex.worker.cancel()
    for w in _widgets(ex.widget):
        assert not (isinstance(w, W.Text) and w.value == "None"), w.description


def test_pda_and_fgvis_start_from_the_config(ex, explorer_config):
    cfg = lrpkit.load_config(explorer_config)
    pda = ex.space.params("pda", CNN)
    assert pda["prob"] == "sigmoid" != lrpkit.methods()["pda"].parameters["prob"].default
    assert pda["stride"] == cfg.pda.heatmap_stride != 1
    assert pda["laplace_n"] == len(ex.space.dataset("train"))      # N = training images
    assert compute.config_params(cfg, "fgvis")["output"] == "relevance"
    assert compute.config_params(cfg, "fgvis")["steps"] == cfg.fgvis.steps
    objs = ex.space.objects("pda", CNN, pda)
    pm = objs["patch_model"]
    assert pm.fitted and (pm.window, pm.outer) == (pda["window"], pda["outer"])
    kept = list((lrpkit.pipeline.models_root(cfg) / "pda").glob(f"patch_w{pm.window}_o{pm.outer}_*.npz"))
    assert kept                                                     # fitted once, kept
    ex.method.value = "pda"
    res = ex.wait()
    assert res.params["patch_model"] is pm and res.params["prob"] == "sigmoid"
    np.testing.assert_allclose(res.relevance, _explain_like(ex, res)[0].numpy(), rtol=1e-5, atol=1e-7)


# ---------------------------------------------------------------------------------- worker
def _tiny_cnn():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
                              torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 5))
    with torch.no_grad():
        net[-1].bias.copy_(torch.linspace(-1, 1, 5))
    return net.eval()


def test_worker_cancels_a_running_pda_through_the_progress_callback():
    from lrpkit.pda import PatchModel

    model = _tiny_cnn()
    x = torch.randn(1, 3, 24, 24)
    pm = PatchModel(4, 8).fit(torch.randn(4, 3, 24, 24), max_patches=200)
    worker = Wd.Worker()
    seen = []

    def run(job):
        return lrpkit.explain(model, x, 3, method="pda", patch_model=pm, window=4, outer=8,
                              stride=1, samples=200, batch_size=2, progress=job)

    job = worker.submit(run, on_progress=seen.append)
    t0 = time.monotonic()
    while job.calls < 3 and not job.done and time.monotonic() - t0 < 60:
        time.sleep(0.005)
    assert job.calls >= 3 and not job.done            # running, reporting progress
    job.cancel()
    assert job.wait(60)
    assert job.state == "cancelled" and job.result is None and job.error is None
    assert 0 < seen[-1] < 1 and job.fraction < 1       # stopped part-way: 21 x 21 x 200 jobs
    assert not worker.busy


def test_worker_runs_only_the_newest_of_a_burst_and_cancels_the_running_job():
    worker = Wd.Worker()
    ran = []
    release = threading.Event()

    def slow(job, tag):
        ran.append(tag)
        for i in range(10_000):
            job(i, 10_000)                         # raises Cancelled once cancelled
            if tag != "first" and release.is_set():
                break
            time.sleep(0.001)
        return tag

    first = worker.submit(slow, "first")
    t0 = time.monotonic()
    while not ran and time.monotonic() - t0 < 30:
        time.sleep(0.005)
    jobs = [worker.submit(slow, f"burst{i}", delay=0.2) for i in range(3)]
    release.set()
    assert worker.wait(60)
    assert first.state == "cancelled"                   # stopped at its next progress call
    assert [j.state for j in jobs] == ["cancelled", "cancelled", "done"]
    assert ran == ["first", "burst2"] and jobs[-1].result == "burst2"


# ---------------------------------------------------------------------------------- compute / render
def test_explain_image_and_curve_match_the_library(ex):
    from lrpkit.evaluate import region_perturbation

    model = ex.space.model(CNN)
    inp = ex.space.inputs("test", 1, CNN)
    e = compute.explain_image(model, inp.x, 2, "lrp", {"composite": "epsilon", "epsilon": 0.1})
    want = lrpkit.explain(model, inp.x, 2, method="lrp", composite="epsilon", epsilon=0.1)[0]
    np.testing.assert_allclose(e.relevance, want.numpy(), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(e.heatmap, want.sum(0).numpy(), rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        assert e.target == 2 and e.score == pytest.approx(float(model(inp.x)[0, 2]), rel=1e-5)
    calls = []
    curve = compute.perturbation_curve(model, inp.x, e.heatmap, 2, steps=3, region_size=8, repeats=2,
                                       progress=lambda done, total: calls.append((done, total)))
    assert calls[0] == (4, 4) and calls[-1] == (8, 8)     # one path per batch: morf, then 2 random
    ds = region_perturbation(model, inp.x, torch.as_tensor(e.heatmap)[None], [2], region_size=8,
                             steps=3, repeats=1, order="morf", seed=0)
    np.testing.assert_allclose(curve["morf"], ds["score"].isel(image=0, repeat=0).values, rtol=1e-5)
    assert len(curve["random"]) == 4


def test_render_scales_and_colour_bar():
    signed = np.array([[-1.0, 0.5], [0.25, 0.0]])
    lo, hi, _ = render.map_scale(signed)
    assert lo == -hi and hi == pytest.approx(np.percentile(np.abs(signed), render.PERCENTILE))
    lo, hi, _ = render.map_scale(np.abs(signed))
    assert lo == 0 and hi > 0                              # non-negative: from 0
    fig = render.figure([[render.image_panel(np.zeros((2, 2, 3))), render.heatmap_panel(signed)]])
    assert len(fig.axes) == 3                              # image, heatmap, its colour bar
    im = fig.axes[1].images[0]
    assert im.norm.vmin == -im.norm.vmax
    assert render.png(fig)[:8] == b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------------------------- explorer
def test_initial_view_matches_explain_and_context_ratio(ex):
    res = ex.result
    assert res.method == "lrp" and res.request.model == CNN
    assert res.params["composite"] == ex.cfg.lrp.composite           # the config's composite
    np.testing.assert_allclose(res.relevance, _explain_like(ex, res)[0].numpy(), rtol=1e-5, atol=1e-7)
    assert res.heatmap.shape == res.x.shape[-2:]
    if len(res.inputs.boxes):
        assert res.mu == pytest.approx(outside_inside_ratio(res.heatmap, res.inputs.boxes), nan_ok=True)
    for view in (ex.heatmap_view, ex.scores_view, ex.curve_view):
        assert view.value[:8] == b"\x89PNG\r\n\x1a\n"
    assert set(res.curve) == {"morf", "random"} and len(res.curve["morf"]) == 5   # step 0 .. 4
    assert res.seconds["shown"] <= res.seconds["heatmap"] + res.seconds.get("curve", 0) + 60


def test_changing_method_and_parameters_recomputes(ex):
    before = ex.heatmap_view.value
    ex.method.value = "sensitivity"
    res = ex.wait()
    assert res.method == "sensitivity" and ex.heatmap_view.value != before
    np.testing.assert_allclose(res.relevance, _explain_like(ex, res)[0].numpy(), rtol=1e-5, atol=1e-7)
    ex.method.value = "lrp"
    ex.form()["composite"].value = "epsilon"
    ex.form()["epsilon"].value = 1.0
    res = ex.wait()
    assert res.params["composite"] == "epsilon" and res.params["epsilon"] == 1.0
    model = ex.space.model(CNN)
    want = lrpkit.explain(model, res.x, res.target, method="lrp", composite="epsilon", epsilon=1.0)
    np.testing.assert_allclose(res.relevance, want[0].numpy(), rtol=1e-5, atol=1e-7)
    ex.target.value = ex.classes()[2]          # an explicit target, not the arg-max
    res = ex.wait()
    assert res.target == 2
    want = lrpkit.explain(model, res.x, 2, method="lrp", composite="epsilon", epsilon=1.0)
    np.testing.assert_allclose(res.relevance, want[0].numpy(), rtol=1e-5, atol=1e-7)


def test_a_rejected_value_is_reported_not_computed(ex):
    ex.method.value = "fgvis"
    ex.wait()
    jobs = ex.worker.latest
    ex.form()["lr"].value = 0.0                # the box allows 0, lr's interval (0, inf) does not
    assert ex.worker.latest is jobs            # nothing submitted
    assert "error" in ex.status.value and "'lr'" in ex.status.value
    ex.form()["lr"].value = 0.05
    res = ex.wait()
    assert res.params["lr"] == 0.05 and res.params["output"] == "relevance"
    assert res.heatmap.std() > 0                  # an evidence map, not a flat mask


def test_recompute_shows_the_heatmap_before_the_curve(ex, monkeypatch):
    release = threading.Event()
    real = compute.perturbation_curve

    def held(*args, **kwargs):
        kwargs["progress"](0, 1)
        while not release.wait(0.01):
            kwargs["progress"](0, 1)               # a cancellation point, like the real one
        return real(*args, **kwargs)

    monkeypatch.setattr("lrpkit.widgets.explorer.perturbation_curve", held)
    before = ex.heatmap_view.value
    ex.form()["composite"].value = "epsilon"
    t0 = time.monotonic()
    while not (ex.result.params["composite"] == "epsilon" and "heatmap" in ex.status.value) \
            and time.monotonic() - t0 < 60:
        time.sleep(0.01)
    res = ex.result
    assert res.params["composite"] == "epsilon" and ex.heatmap_view.value != before
    assert res.curve is None and ex.worker.busy              # the curve is still being computed
    assert "heatmap" in ex.status.value and "lrpkit-spin" in ex.status.value
    release.set()
    res = ex.wait()
    assert res.curve is not None and ex.curve_view.layout.display == "flex"


def test_curve_on_request_when_not_automatic(explorer_config):
    e = Wd.Explorer(explorer_config, debounce=0, perturbation=False, perturbation_steps=3,
                    region_size=8)
    res = e.wait()
    assert res.curve is None and e.curve_view.layout.display == "none"
    e.curve_button.click()
    res = e.wait()
    assert set(res.curve) == {"morf", "random"} and e.curve_view.value[:4] == b"\x89PNG"


def test_explorer_cancel_stops_a_running_pda(ex):
    before = ex.result
    ex._quietly(lambda: setattr(ex.method, "value", "pda"))
    ex._quietly(ex._build_form)
    form = ex.form()
    ex._quietly(lambda: [setattr(form[k], "value", v) for k, v in
                         (("stride", 1), ("samples", 200), ("batch_size", 2))])
    ex._schedule(immediate=True)
    t0 = time.monotonic()
    while ex.progress.value == 0 and time.monotonic() - t0 < 120:
        time.sleep(0.01)
    assert 0 < ex.progress.value < 1 and not ex.cancel_button.disabled
    job = ex.worker.current
    ex.cancel_button.click()
    assert ex.worker.wait(60) and job.state == "cancelled"
    assert ex.result is before and "cancelled" in ex.status.value


def test_target_follows_the_class_filter(ex):
    names = ex.classes()
    shown = [c for c in names if ex.space.image_choices("test", c)]     # classes with images
    assert len(shown) >= 3
    a, b, c = shown[-1], shown[0], shown[1]
    ex.cls.value = a
    res = ex.wait()
    assert ex.target.value == a and res.target == names.index(a) and res.target_name == a
    ex.cls.value = b
    assert ex.target.value == b
    ex.cls.value = "any"
    assert ex.target.value == "pred"
    ex.target.value = a                            # chosen by hand: stays
    ex.cls.value = c
    assert ex.target.value == a
    assert ex.wait().target == names.index(a)


def test_image_filters_twins_and_checkpoints(ex):
    from lrpkit.data import read_bias

    bias = read_bias(lrpkit.pipeline.scenes_root(ex.cfg)).groupby("image_id")["tag"].max()
    ds = ex.space.dataset("test")
    ex.bias.value = "tagged"
    ids = [ds.ids[i] for _, i in ex.image.options if i >= 0]
    assert ids and all(bias[i] == 1 for i in ids)
    ex.bias.value = "any"
    ex.cls.value = ex.classes()[0]
    for _, i in ex.image.options:
        assert ex.classes()[0] in {o.name for o in ds.voc.annotations[i].objects}
    ex.cls.value = "any"
    ex.twin.value = "test_swapped"
    res = ex.wait()
    tin, texpl = res.twin
    assert tin.image_id == res.image_id.replace("test_", "swapped_") and texpl.target == res.target
    assert ex.twin_view.value[:4] == b"\x89PNG" and ex.twin_box.layout.display == "flex"
    assert (f"{CNN}: checkpoint epoch 0", f"{CNN}@0") in ex.model.options
    ex.model.value = f"{CNN}@0"
    assert ex.wait().request.model == f"{CNN}@0"


def test_a_scene_set_given_as_an_object_keeps_the_scene_extras(explorer_config, scenes_root):
    ds = lrpkit.sources.load_dataset({"source": "scenes", "root": str(scenes_root), "split": "test"})
    e = Wd.Explorer(explorer_config, dataset=ds, start=False)
    assert {"test_swapped", "test_untagged"} <= set(e.split.options)
    assert e.bias.options == compute.BIAS_FILTERS and e.twin.layout.display != "none"
    assert e.space.twins("test", 0) == {"test_swapped": ds.ids[0].replace("test_", "swapped_"),
                                        "test_untagged": ds.ids[0].replace("test_", "untagged_")}
    assert [k for _, k in e.model.options] == [CNN, f"{CNN}@0"]      # the config's model


def test_static_mode_shows_a_figure_not_widgets(explorer_config, monkeypatch):
    from IPython.display import Image

    monkeypatch.setenv("LRPKIT_STATIC", "1")
    e = Wd.Explorer(explorer_config, debounce=0, perturbation=False)
    assert e.static and e.result is None and not e.worker.busy         # nothing computed yet
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda obj, **kw: shown.append(obj))
    e._ipython_display_()
    assert len(shown) == 1 and isinstance(shown[0], Image) and shown[0].data[:4] == b"\x89PNG"
    assert len(e.static_figure().axes) == 5       # image, heatmap + colour bar, overlay, scores


# ---------------------------------------------------------------------------------- browser
def test_browse_a_results_file_shows_maps_as_images(explorer_config):
    b = Wd.ResultsBrowser(lrpkit.load_config(explorer_config))
    assert "demo.nc" in b.file.options
    b.file.value = "demo.nc"
    ds = lrpkit.results.open_dataset(b.root / "demo.nc")
    assert b.variable.value == "relevance" and b.data.dims == ("y", "x")
    np.testing.assert_allclose(b.data.values, ds["relevance"].isel(method=0, image=0).values)
    assert set(b.selection()) == {"method", "image"}           # one slider per other dim
    first = b.view.value
    sliders = {s.description: s for s in b.sliders.children}
    sliders["method"].value = 1
    sliders["image"].value = 2
    np.testing.assert_allclose(b.data.values, ds["relevance"].isel(method=1, image=2).values)
    assert b.view.value != first and b.view.value[:4] == b"\x89PNG"
    b.variable.value = "score"
    assert b.data.dims == ("step",)
    assert Wd.browser.shown_dims(("image", "x", "y")) == ("y", "x")


# ---------------------------------------------------------------------------------- a user's model
@pytest.fixture(scope="module")
def user_config(tmp_path_factory):
    """A random ResNet-18 (state dict) on a VOC devkit that is not lrpkit's (tests/userdata.py)."""
    from userdata import write_user_project

    return write_user_project(tmp_path_factory.mktemp("user"))


def _user_view(image):
    """The fixture model's input, built here from torchvision (shorter side 72, centre 64)."""
    import torchvision.transforms as T
    from userdata import IMAGENET, SMALL

    tf = T.Compose([T.Resize(SMALL["size"]), T.CenterCrop(SMALL["crop"]), T.ToTensor(),
                    T.Normalize(IMAGENET["mean"], IMAGENET["std"])])
    return tf(image)[None]


def test_explorer_on_a_users_model_and_devkit(user_config):
    """The config's torchvision model on its VOC devkit: devkit ids and class names, an LRP
    heatmap of the user's network, boxes from the XML in the model's input, no scene extras."""
    from PIL import Image
    from userdata import CLASSES, SPLITS, resnet18_net

    e = Wd.Explorer(user_config, debounce=0, perturbation=False)
    res = e.wait()
    root = lrpkit.sources.load_dataset(lrpkit.load_config(user_config).dataset).root
    assert e.split.options == ("test", "train") and e.model.options == (("resnet18", "resnet18"),)
    assert e.cls.options == ("any", *CLASSES) and e.target.options == ("pred", *CLASSES)
    assert e.bias.options == ("any",) and e.bias.layout.display == "none"     # no planted truth
    assert e.twin.layout.display == "none" and e.space.twins("test", 0) == {}
    with pytest.raises(ValueError, match="bias.csv"):
        e.space.image_choices("test", bias="tagged")
    assert [e.space.dataset("test").ids[i] for _, i in e.image.options] == SPLITS["test"]
    assert res.image_id == SPLITS["test"][0] and res.method == "lrp"
    assert res.inputs.classes == list(CLASSES)
    with Image.open(root / "JPEGImages" / f"{res.image_id}.jpg") as im:
        x = _user_view(im.convert("RGB"))
    torch.testing.assert_close(res.x, x)
    net = resnet18_net()                                  # the weights the state dict holds
    with torch.no_grad():
        np.testing.assert_allclose(res.explanation.scores, net(x)[0].numpy(), rtol=1e-4, atol=1e-5)
    want = lrpkit.explain(net, x, res.target, method="lrp", **res.params)[0]
    np.testing.assert_allclose(res.relevance, want.numpy(), rtol=1e-4, atol=1e-6)
    assert res.heatmap.std() > 0 and e.heatmap_view.value[:4] == b"\x89PNG"
    # 2009_000104 (72 x 72): its cat box (10, 10, 30, 30) in 1-based pixels, resized to 72 and
    # cropped to the centre 64: (9 - 4, 9 - 4, 30 - 4, 30 - 4)
    np.testing.assert_allclose(res.inputs.boxes, [[5, 5, 26, 26]])
    assert res.mu == pytest.approx(outside_inside_ratio(res.heatmap, res.inputs.boxes))
    # the class filter: the devkit's kiwi images, the target follows (not the arg-max here)
    e.cls.value = "kiwi"
    assert [e.space.dataset("test").ids[i] for _, i in e.image.options] == ["2009_000106", "2009_000101"]
    res = e.wait()
    assert res.image_id == "2009_000106" and res.target_name == "kiwi" and res.target == 2
    assert res.explanation.scores.argmax() != 2
    e.split.value = "train"
    assert e.wait().image_id in SPLITS["train"]


def test_explorer_pda_on_a_users_model(user_config):
    """PDA starts from pipeline.pda_params (sigmoid: VOC is multi-label; N = the devkit's 3
    training images) with the patch model of pipeline.load_patch_model, kept under paths.models."""
    e = Wd.Explorer(user_config, debounce=0, perturbation=False)
    e.wait()
    cfg = lrpkit.load_config(user_config)
    src = e.space.source("resnet18")
    start = e.space.params("pda", "resnet18")
    want = lrpkit.pipeline.pda_params(cfg, src, e.space.train_split())
    assert start["prob"] == want["prob"] == "sigmoid" and start["laplace_n"] == want["laplace_n"] == 3
    e.method.value = "pda"
    res = e.wait()
    pm = res.params["patch_model"]
    assert pm.fitted and res.params["prob"] == "sigmoid"
    assert list((lrpkit.pipeline.models_root(cfg) / "pda").glob("patch_*.npz"))
    np.testing.assert_allclose(res.relevance, _explain_like(e, res)[0].numpy(), rtol=1e-5, atol=1e-7)


def test_explorer_offers_each_model_of_a_models_list(user_config, tmp_path):
    import yaml

    data = yaml.safe_load(user_config.read_text())
    model = data.pop("model")
    whole = str(Path(model["weights"]).with_name("resnet18_whole.pt"))     # the same network
    data["models"] = [model, {**model, "weights": whole, "name": "whole"}]
    path = tmp_path / "two.yaml"
    path.write_text(yaml.safe_dump(data))
    e = Wd.Explorer(path, debounce=0, perturbation=False)
    first = e.wait()
    assert [k for _, k in e.model.options] == ["resnet18", "whole"]
    e.model.value = "whole"
    res = e.wait()
    assert res.request.model == "whole" and res.image_id == first.image_id
    np.testing.assert_allclose(res.explanation.scores, first.explanation.scores, rtol=1e-5, atol=1e-6)


def test_explorer_takes_model_and_dataset_objects(tmp_path):
    """Explorer(model=..., dataset=...): a ModelSource, or an nn.Module with its transform (or the
    default ImageNet view); the dataset's classes name the outputs; PDA's N: the dataset's images."""
    import torchvision.transforms as T
    from userdata import CLASSES, IMAGENET, SMALL, SPLITS, resnet18_net, save_models, write_devkit

    devkit = write_devkit(tmp_path)
    _, d = save_models(tmp_path / "weights")
    ds = lrpkit.sources.load_dataset({"source": "voc", "root": str(devkit), "split": "test",
                                      "classes": list(CLASSES)})
    src = lrpkit.sources.load_model({"source": "torchvision", "arch": "resnet18",
                                     "weights": str(d / "resnet18_sd.pt"), **SMALL},
                                    classes=CLASSES, output="multilabel")
    cfg = {"paths": {"models": str(tmp_path / "models"), "reports": str(tmp_path / "reports")}}
    e = Wd.Explorer(cfg, model=src, dataset=ds, debounce=0, perturbation=False)
    res = e.wait()
    assert e.split.options == ("test",) and e.model.options == (("resnet18", "resnet18"),)
    assert res.image_id == SPLITS["test"][0] and res.inputs.classes == list(CLASSES)
    torch.testing.assert_close(res.x, _user_view(ds.image(0)))
    np.testing.assert_allclose(res.inputs.boxes, [[5, 5, 26, 26]])
    assert e.space.params("pda", "resnet18")["laplace_n"] == len(ds)     # no train split given

    # an nn.Module alone: its transform; output names and kind (VOC: multi-label) from the dataset
    net = resnet18_net()
    tf = T.Compose([T.Resize(40), T.CenterCrop(32), T.ToTensor(),
                    T.Normalize(IMAGENET["mean"], IMAGENET["std"])])
    e = Wd.Explorer(cfg, model=net, transform=tf, dataset=ds, debounce=0, perturbation=False)
    res = e.wait()
    key = e.model.value
    assert res.inputs.classes == list(CLASSES) and e.space.source(key).prob == "sigmoid"
    torch.testing.assert_close(res.x, tf(ds.image(0))[None])
    with torch.no_grad():
        np.testing.assert_allclose(res.explanation.scores, net(res.x)[0].numpy(), rtol=1e-4, atol=1e-5)
    want = lrpkit.explain(net, res.x, res.target, method="lrp", **res.params)[0]
    np.testing.assert_allclose(res.relevance, want.numpy(), rtol=1e-4, atol=1e-6)
    assert len(res.inputs.boxes) == 0 and np.isnan(res.mu)     # its geometry was not given
    # without a transform: the ImageNet view (shorter side 256, centre 224); boxes mapped
    m = Wd.model_source(net, dataset=ds, output="singlelabel", name="mine", size=72, crop=64)
    assert (m.size, m.crop, m.prob, m.classes) == (72, 64, "softmax", CLASSES)
    torch.testing.assert_close(m.inputs([ds.image(0)]), _user_view(ds.image(0)))
    assert (Wd.model_source(net, dataset=ds).crop, Wd.model_source(net, dataset=ds).size) == (224, 256)
    e = Wd.Explorer(cfg, model=[src, m], dataset=ds, debounce=0, perturbation=False, start=False)
    assert [k for _, k in e.model.options] == ["resnet18", "mine"]
    np.testing.assert_allclose(e.space.inputs("test", 0, "mine").boxes, [[5, 5, 26, 26]])
    with pytest.raises(ValueError, match="3 outputs"):
        Wd.model_source(net, classes=["a", "b"], dataset=ds)
    with pytest.raises(TypeError, match="dataset must be a lrpkit.sources.DatasetSource"):
        Wd.Explorer(cfg, model=src, dataset=str(devkit))
    with pytest.raises(TypeError, match="model must be"):
        Wd.Explorer(cfg, model="resnet18.pt", dataset=ds)
