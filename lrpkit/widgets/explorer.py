"""The JupyterLab explorer: pick an image, a model and a method, see what the model relies on.

::

    from lrpkit.widgets import Explorer
    ex = Explorer("configs/my_model.yaml")   # the config's model(s) and dataset
    ex                 # JupyterLab / Voila: the widget; papermill / HTML export: a static figure

    ex = Explorer(model=sources.load_model({...}), dataset=sources.load_dataset({...}))
    ex = Explorer(model=my_module, transform=my_transform, dataset=ds)   # an nn.Module

The *Explore* tab wires the parts of this package: the image and model choices come from the
config's ``dataset`` and ``model`` / ``models`` sections (or the objects given) through
:class:`~lrpkit.widgets.compute.Workspace`; the method's parameter widgets are
built from its declaration (:mod:`lrpkit.widgets.controls`), starting at the config's values
(:func:`~lrpkit.widgets.compute.config_params`); every change submits one job to a
background :class:`~lrpkit.widgets.worker.Worker` (after ``debounce`` seconds of quiet; a newer
change or *Cancel* stops the running job at its next progress step).  A job shows its results
as they come: first the image, the heatmap with its colour bar and the overlay, mu for the
object boxes (Lapuschkin et al. 2016, eq. 11) and the class scores; then the counterfactual
twin, if one is chosen (lrpkit's scenes only, as the bias filters); last the
region-perturbation curve, MoRF against a random order (Samek et al. 2017, eq. 9-12), the slow
part (``perturbation=False``: only on the *curve* button).  Views are drawn by
:mod:`lrpkit.widgets.render`, which also draws the static figure.

The *Browse results* tab is a :class:`~lrpkit.widgets.browser.ResultsBrowser` of the
config's reports folder.

In scripts and tests: set widget values, then ``res = ex.wait()`` (a :class:`Result`).
"""
from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import ipywidgets as W
import numpy as np

from ..explain import get_method
from ..params import InvalidParameterError
from . import render
from .browser import ResultsBrowser
from .compute import (Explanation, Inputs, Workspace, context_ratio, explain_image,
                      perturbation_curve)
from .controls import ParamForm
from .worker import Cancelled, Job, Worker

__all__ = ["Explorer", "Request", "Result", "static_mode"]


def static_mode() -> bool:
    """Whether explorers show static figures (the batch runner sets ``LRPKIT_STATIC=1``)."""
    return os.environ.get("LRPKIT_STATIC", "").strip() not in ("", "0", "false", "no")


@dataclass(frozen=True)
class Request:
    """What to compute: an image (split, index), a model key (its name, ``"<name>@<epoch>"``
    for a checkpoint), a method and its parameters, the target (``"pred"`` or one of the
    model's class names) and the twin split (``"none"``)."""

    split: str
    index: int
    model: str
    method: str
    params: Mapping[str, Any]
    target: str = "pred"
    twin: str = "none"


@dataclass
class Result:
    """What the explorer shows for a :class:`Request` (``curve`` / ``twin`` are ``None``
    until computed); ``seconds``: time from the job's start to each stage's end."""

    request: Request
    inputs: Inputs
    explanation: Explanation
    mu: float
    curve: dict[str, np.ndarray] | None = None
    twin: tuple[Inputs, Explanation] | None = None
    seconds: dict[str, float] = field(default_factory=dict)

    # shortcuts
    @property
    def method(self) -> str:
        return self.request.method

    @property
    def params(self) -> dict[str, Any]:
        return self.explanation.params

    @property
    def target(self) -> int:
        return self.explanation.target

    @property
    def target_name(self) -> str:
        return self.inputs.classes[self.target]

    @property
    def heatmap(self) -> np.ndarray:
        return self.explanation.heatmap

    @property
    def relevance(self) -> np.ndarray:
        return self.explanation.relevance

    @property
    def x(self):
        return self.inputs.x

    @property
    def image_id(self) -> str:
        return self.inputs.image_id

    def main_panels(self) -> list[render.Panel]:
        """Image (with boxes), heatmap (colour bar), overlay."""
        e, i = self.explanation, self.inputs
        return [render.image_panel(i.image, i.boxes, f"{i.image_id} ({self.request.model})"),
                render.heatmap_panel(e.heatmap, f"{self.method} -> {self.target_name}"),
                render.overlay_panel(i.image, e.heatmap, f"mu = {self.mu:.3f}")]

    def scores_panel(self) -> render.Panel:
        return render.scores_panel(self.explanation.scores, self.inputs.classes, self.target)

    def twin_panels(self) -> list[render.Panel]:
        ti, te = self.twin
        was = self.explanation.score
        return [render.image_panel(ti.image, ti.boxes, f"twin {ti.image_id}"),
                render.heatmap_panel(te.heatmap, f"{self.target_name}: {te.score:.2f} (was {was:.2f})")]

    def figure(self):
        """Everything computed, in one matplotlib figure (the static fallback)."""
        rows = [self.main_panels(), [self.scores_panel()]]
        if self.curve is not None:
            rows[1].append(render.curve_panel(self.curve))
        if self.twin is not None:
            rows.append(self.twin_panels())
        return render.figure(rows)


_SPIN = ('<span class="lrpkit-spin" style="display:inline-block;width:.8em;height:.8em;'
         'border:2px solid #d0d7de;border-top-color:#9a6700;border-radius:50%;'
         'animation:lrpkit-spin 1s linear infinite"></span><style>@keyframes lrpkit-spin'
         '{to{transform:rotate(360deg)}}</style> ')


class Explorer:
    """Interactive explorer of heatmaps (see the module docstring).

    Parameters
    ----------
    config : config name, path or :class:`~lrpkit.config.Config`: its ``dataset`` and ``model``
        / ``models`` sections (unless given as objects), the methods' starting values,
        ``paths.models`` (PDA's patch model) and ``paths.reports`` (the results browser).
        Default: the project's ``configs/default.yaml``, else the built-in defaults.
    model : instead of the config's models: a :class:`~lrpkit.sources.ModelSource`, an
        ``nn.Module`` (with ``transform`` or the default ImageNet preprocessing, ``classes``,
        ``output``: see :func:`~lrpkit.widgets.compute.model_source`) or a list of them.
    dataset : instead of the config's dataset: a :class:`~lrpkit.sources.DatasetSource`.
    train : PDA's training images (a DatasetSource); default the config's
        ``dataset.train_split`` for config data, else the ``dataset`` object itself.
    debounce : seconds of quiet before a change recomputes (0: at once).
    static : show a static figure instead of widgets; default :func:`static_mode`.
    perturbation : compute the region-perturbation curve after each heatmap (else on the
        *curve* button).
    perturbation_steps, region_size, perturbation_repeats : its size (small: it is interactive).
    start : compute the first selection at once.
    """

    def __init__(self, config: Any = None, *, model: Any = None, dataset: Any = None,
                 train: Any = None, transform: Any = None, classes: Any = None,
                 output: str | None = None, debounce: float = 0.1,
                 static: bool | None = None, perturbation: bool = True, perturbation_steps: int = 20,
                 region_size: int = 9, perturbation_repeats: int = 3, start: bool = True) -> None:
        self.space = Workspace(config, model=model, dataset=dataset, train=train,
                               transform=transform, classes=classes, output=output)
        self.cfg = self.space.cfg
        self.debounce = float(debounce)
        self.static = static_mode() if static is None else bool(static)
        self.perturbation = bool(perturbation)
        self.perturbation_steps = int(perturbation_steps)
        self.region_size = int(region_size)
        self.perturbation_repeats = int(perturbation_repeats)
        self.result: Result | None = None
        self.error: str | None = None
        self.exception: BaseException | None = None    # the last failure (its traceback)
        self.worker = Worker()
        self.job: Job | None = None
        self._forms: dict[tuple[str, str], ParamForm] = {}
        self._suspend = False
        self._target_follows = False       # the target was set by the class filter
        self._show_lock = threading.Lock()

        def box(description: str, options: list, value: Any = None, shown: bool = True):
            return W.Dropdown(options=options, value=value, description=description,
                              style={"description_width": "60px"},
                              layout=W.Layout(width="280px", display=None if shown else "none"))

        splits = self.space.splits()
        self.split = box("split", splits, splits[0])
        self.cls = box("class", ["any"], "any")
        filters = self.space.bias_filters()   # planted truth: lrpkit's scenes only
        self.bias = box("bias", filters, "any", shown=len(filters) > 1)
        self.image = box("image", [])
        self.twin = box("twin", ["none"], "none", shown=self.space.scenes)
        models = self.space.model_choices()
        self.model = box("model", models, models[0][1])
        self.method = box("method", [])
        self.target = box("target", ["pred"], "pred")
        self.params = W.VBox([])
        self.status = W.HTML("")
        self.progress = W.FloatProgress(value=0, min=0, max=1,
                                        layout=W.Layout(width="160px", visibility="hidden"))
        self.cancel_button = W.Button(description="Cancel", disabled=True, layout=W.Layout(width="80px"))
        self.curve_button = W.Button(description="curve", tooltip="compute the perturbation curve",
                                     layout=W.Layout(width="80px"))
        self.heatmap_view = W.Image(format="png")
        self.scores_view = W.Image(format="png")
        self.curve_view = W.Image(format="png")
        self.twin_view = W.Image(format="png")
        self.mu_view = W.HTML("")
        self.twin_box = W.VBox([W.HTML("<small>counterfactual twin</small>"), self.twin_view],
                               layout=W.Layout(display="none"))
        self.cancel_button.on_click(lambda _: self.cancel())
        self.curve_button.on_click(lambda _: self.request_curve())
        for w, cls in ((self.heatmap_view, "lrpkit-heatmap"), (self.method, "lrpkit-method"),
                       (self.model, "lrpkit-model"), (self.image, "lrpkit-image"),
                       (self.status, "lrpkit-busy"), (self.scores_view, "lrpkit-scores"),
                       (self.curve_view, "lrpkit-curve")):
            w.add_class(cls)

        self._fill_classes()
        self._fill_targets()
        self._fill_images()
        self._fill_twins()
        self._fill_methods()
        self._build_form()
        self.split.observe(self._on_split, "value")
        self.cls.observe(self._on_class, "value")
        self.bias.observe(self._on_filter, "value")
        self.image.observe(self._on_image, "value")
        self.model.observe(self._on_model, "value")
        self.method.observe(self._on_method, "value")
        self.target.observe(self._on_target, "value")
        self.twin.observe(self._on_change, "value")

        controls = W.VBox([W.HTML("<b>image</b>"), self.split, self.cls, self.bias, self.image,
                           self.twin, W.HTML("<b>model and method</b>"), self.model, self.method,
                           self.target, self.params], layout=W.Layout(width="330px"))
        views = W.VBox([W.HBox([self.status, self.progress, self.cancel_button, self.curve_button]),
                        self.heatmap_view, self.mu_view,
                        W.HBox([self.scores_view, self.curve_view]), self.twin_box])
        self.browser = ResultsBrowser(self.cfg)
        self.widget = W.Tab(children=[W.HBox([controls, views]), self.browser.widget])
        self.widget.set_title(0, "Explore")
        self.widget.set_title(1, "Browse results")
        self.widget.add_class("lrpkit-explorer")
        if start and not self.static:
            self._schedule(immediate=True)

    # ------------------------------------------------------------------ choices
    def classes(self) -> list[str]:
        """The current model's output names (the target's choices)."""
        return self.space.classes(self.model.value)

    def _fill_classes(self) -> None:
        """The class filter: the dataset's classes."""
        old = self.cls.value
        names = ["any", *self.space.dataset_classes(self.split.value)]
        self.cls.options = names
        self.cls.value = old if old in names else "any"

    def _fill_targets(self) -> None:
        old = self.target.value
        names = ["pred", *self.classes()]
        self.target.options = names
        self.target.value = old if old in names else "pred"

    def _fill_images(self) -> None:
        opts = self.space.image_choices(self.split.value, self.cls.value, self.bias.value)
        self.image.options = opts or [("(no image matches)", -1)]
        self.image.value = opts[0][1] if opts else -1

    def _fill_twins(self) -> None:
        old = self.twin.value
        twins = self.space.twins(self.split.value, self.image.value) if self.image.value >= 0 else {}
        opts = ["none", *twins]
        self.twin.options = opts
        self.twin.value = old if old in opts else "none"

    def _fill_methods(self) -> None:
        names = self.space.methods(self.model.value)
        old = self.method.value
        self.method.options = names
        if old in names:
            self.method.value = old
        elif names:
            self.method.value = next((n for n in ("lrp", "fv_lrp") if n in names), names[0])

    def refresh_methods(self) -> None:
        """Re-read :func:`lrpkit.methods` (a method registered after the explorer was made)."""
        self._quietly(lambda: (self._fill_methods(), self._build_form()))

    def form(self) -> ParamForm:
        """The parameter controls of the current method."""
        return self._build_form()

    def _build_form(self) -> ParamForm:
        # one form per method and configured model (its checkpoints share it)
        key = (self.method.value, self.space.model_kind(self.model.value),
               self.space.family(self.model.value))
        if key not in self._forms:
            layers: list[str] = []
            if key[1] == "torch":
                layers = [n for n, _ in self.space.model(self.model.value).named_modules() if n]
            form = ParamForm(get_method(key[0]), self.space.params(key[0], self.model.value),
                             layer_names=layers)
            form.observe(self._on_change)
            self._forms[key] = form
        form = self._forms[key]
        self.params.children = [form.widget]
        return form

    def param_values(self) -> dict[str, Any]:
        """The current method's parameters from the widgets (checked against its declaration)."""
        return self.form().values()

    # ------------------------------------------------------------------ events
    def _quietly(self, fn) -> None:
        self._suspend = True
        try:
            fn()
        finally:
            self._suspend = False

    def _on_split(self, change) -> None:
        self._quietly(lambda: (self._fill_classes(), self._fill_images(), self._fill_twins()))
        self._schedule()

    def _on_class(self, change) -> None:
        def update() -> None:
            self._fill_images()
            self._fill_twins()
            # the target follows the class filter ("pred" may be a class the filter did not ask for)
            if self.target.value == "pred" or (self._target_follows and self.target.value == change["old"]):
                follow = change["new"] != "any" and change["new"] in self.target.options
                self.target.value = change["new"] if follow else "pred"
                self._target_follows = follow
        self._quietly(update)
        self._schedule()

    def _on_target(self, change) -> None:
        self._target_follows = False
        self._schedule()

    def _on_filter(self, change) -> None:
        self._quietly(lambda: (self._fill_images(), self._fill_twins()))
        self._schedule()

    def _on_image(self, change) -> None:
        self._quietly(self._fill_twins)
        self._schedule()

    def _on_model(self, change) -> None:
        self._quietly(lambda: (self._fill_targets(), self._fill_methods(), self._build_form()))
        self._schedule()

    def _on_method(self, change) -> None:
        self._quietly(self._build_form)
        self._schedule()

    def _on_change(self, change=None) -> None:
        self._schedule()

    # ------------------------------------------------------------------ computing
    def request(self) -> Request:
        """The current selection (parameters checked against the method's declaration)."""
        return Request(self.split.value, self.image.value, self.model.value, self.method.value,
                       self.param_values(), self.target.value, self.twin.value)

    def _schedule(self, immediate: bool = False) -> None:
        if self._suspend:
            return
        try:
            req = self.request()
            if req.index is None or req.index < 0:
                raise ValueError("no image matches the filters")
        except (InvalidParameterError, ValueError) as exc:
            self.worker.cancel()
            self.error = f"{type(exc).__name__}: {exc}"
            self._set_status(False, f"error: {exc}")
            return
        self.error = None
        delay = 0.0 if immediate else self.debounce
        self._set_status(True, "waiting ..." if delay > 0 else "computing ...")
        self.job = self.worker.submit(self._run, req, delay=delay, on_progress=self._on_progress,
                                      name=f"{req.method} on {req.split}[{req.index}]")

    def request_curve(self) -> Job | None:
        """Compute the perturbation curve of the shown heatmap (the *curve* button)."""
        res = self.result
        if res is None or res.curve is not None:
            return None
        self._set_status(True, "perturbation curve ...")
        self.job = self.worker.submit(self._run_curve, res, on_progress=self._on_progress,
                                      name="curve")
        return self.job

    def cancel(self) -> None:
        """Stop the running computation (the shown result stays the last one computed)."""
        self.worker.cancel()
        self._set_status(False, "cancelled")

    def wait(self, timeout: float = 300.0) -> Result:
        """Wait until no computation is waiting or running; return :attr:`result`."""
        if not self.worker.wait(timeout):
            raise TimeoutError(f"explorer still computing after {timeout} s")
        if self.error:
            raise RuntimeError(f"explorer computation failed: {self.error}")
        return self.result

    def compute(self, req: Request, progress=None, *, curve: bool | None = None) -> Result:
        """Everything for ``req`` at once, no widget touched: heatmap, twin, and the curve
        (``curve``; default :attr:`perturbation`)."""
        res = self._heatmap(req, progress)
        self._twin(res, progress)
        if self.perturbation if curve is None else curve:
            res.curve = self._curve(res, progress)
        return res

    def _heatmap(self, req: Request, progress) -> Result:
        t0 = time.perf_counter()
        space = self.space
        model = space.model(req.model)
        inputs = space.inputs(req.split, req.index, req.model)
        params = {**space.objects(req.method, req.model, req.params), **req.params}
        target = "pred" if req.target == "pred" else inputs.classes.index(req.target)
        expl = explain_image(model, inputs.x, target, req.method, params, progress=progress)
        res = Result(req, inputs, expl, context_ratio(expl.heatmap, inputs.boxes))
        res.seconds["heatmap"] = time.perf_counter() - t0
        return res

    def _twin(self, res: Result, progress) -> None:
        req = res.request
        if req.twin == "none":
            return
        t0 = time.perf_counter()
        tin = self.space.twin_inputs(req.split, req.index, req.twin, req.model)
        if tin is not None:
            model = self.space.model(req.model)
            res.twin = (tin, explain_image(model, tin.x, res.target, req.method, res.params,
                                           progress=progress))
        res.seconds["twin"] = time.perf_counter() - t0

    def _curve(self, res: Result, progress) -> dict[str, np.ndarray]:
        t0 = time.perf_counter()
        curve = perturbation_curve(self.space.model(res.request.model), res.inputs.x, res.heatmap,
                                   res.target, steps=self.perturbation_steps,
                                   region_size=min(self.region_size, *res.inputs.x.shape[-2:]),
                                   repeats=self.perturbation_repeats, progress=progress)
        res.seconds["curve"] = time.perf_counter() - t0
        return curve

    def _guarded(self, job: Job, stages) -> Result | None:
        """Run ``stages()``; a cancellation goes on to the worker, any other error is shown in
        the status line (the job's result is then ``None``)."""
        try:
            return stages()
        except Cancelled:
            raise
        except Exception as exc:  # noqa: BLE001 - shown in the status line
            self._failed(job, exc)
            return None

    def _run(self, job: Job, req: Request) -> Result | None:
        """The worker's job: each stage is shown as soon as it is computed."""
        return self._guarded(job, lambda: self._stages(job, req))

    def _stages(self, job: Job, req: Request) -> Result:
        t0 = time.perf_counter()
        res = self._heatmap(req, job)
        self._show(job, res, main=True, t0=t0)
        follow = [s for s, on in (("twin", req.twin != "none"), ("curve", self.perturbation)) if on]
        self._set_status(bool(follow), f"{req.method} on {res.image_id}: heatmap "
                         f"{res.seconds['shown']:.2f} s" + "".join(f" · {s} ..." for s in follow))
        if req.twin != "none":
            self._twin(res, job)
            self._show(job, res, twin=True)
        if self.perturbation:
            res.curve = self._curve(res, job)
            self._show(job, res, curve=True)
        self._done(job, res, time.perf_counter() - t0)
        return res

    def _run_curve(self, job: Job, res: Result) -> Result | None:
        def stages() -> Result:
            t0 = time.perf_counter()
            res.curve = self._curve(res, job)
            self._show(job, res, curve=True)
            self._done(job, res, time.perf_counter() - t0)
            return res

        return self._guarded(job, stages)

    def _done(self, job: Job, res: Result, seconds: float) -> None:
        if job is self.worker.latest:
            self._set_status(False, f"{res.method} on {res.image_id}: heatmap "
                             f"{res.seconds.get('shown', 0):.2f} s, all {seconds:.2f} s")

    def _failed(self, job: Job, exc: Exception) -> None:
        if job is self.worker.latest and not job.cancelled:
            self.exception = exc
            self.error = f"{type(exc).__name__}: {exc}"
            self._set_status(False, f"error: {self.error}")

    # ------------------------------------------------------------------ display
    def _show(self, job: Job, res: Result, *, main: bool = False, twin: bool = False,
              curve: bool = False, t0: float | None = None) -> None:
        """Render and show one stage of ``res`` (nothing if ``job`` was superseded);
        ``res.seconds["shown"]``: from ``t0`` until the heatmap view is set."""
        if main:
            img = render.png([res.main_panels()])
            with self._show_lock:
                job.check()
                self.result = res
                self.heatmap_view.value = img
                if t0 is not None:
                    res.seconds["shown"] = time.perf_counter() - t0
                self.mu_view.value = (f"<b>mu</b> = <b>{res.mu:.3f}</b> (mean positive relevance "
                                      f"outside / inside the object boxes, Lapuschkin et al. 2016, "
                                      f"eq. 11) · target <b>{res.target_name}</b>, score "
                                      f"{res.explanation.score:.2f}")
                self.curve_view.value = b""
                self.curve_view.layout.display = "none"
                self.twin_box.layout.display = "none"
            scores = render.png([[res.scores_panel()]])
            with self._show_lock:
                job.check()
                self.scores_view.value = scores
        if twin and res.twin is not None:
            img = render.png([res.twin_panels()])
            with self._show_lock:
                job.check()
                self.twin_view.value = img
                self.twin_box.layout.display = "flex"
        if curve and res.curve is not None:
            img = render.png([[render.curve_panel(res.curve)]])
            with self._show_lock:
                job.check()
                self.curve_view.value = img
                self.curve_view.layout.display = "flex"

    def _set_status(self, busy: bool, text: str = "") -> None:
        colour = "#9a6700" if busy else ("#cf222e" if text.startswith("error") else "#1a7f37")
        self.status.value = (f'<span class="lrpkit-status" style="color:{colour}">'
                             f'{_SPIN if busy else ""}{text}</span>')
        self.cancel_button.disabled = not busy
        self.progress.layout.visibility = "visible" if busy else "hidden"
        self.progress.value = 0

    def _on_progress(self, fraction: float) -> None:
        if abs(fraction - self.progress.value) >= 0.01 or fraction >= 1:
            self.progress.value = fraction

    def static_figure(self):
        """A matplotlib figure of the current selection, computed if needed (what papermill
        runs and HTML exports show)."""
        self.worker.wait()
        if self.result is None:
            self.result = self.compute(self.request())
        return self.result.figure()

    def _ipython_display_(self) -> None:
        from IPython.display import Image, display

        if self.static:   # a PNG: shows whatever matplotlib backend the kernel runs
            display(Image(data=render.png(self.static_figure()), format="png"))
        else:
            display(self.widget)
