"""The JupyterLab explorer: pick an image, a model and a method, see what the model relies on.

::

    from lrpkit.widgets import Explorer
    ex = Explorer("configs/default.yaml")
    ex                      # in JupyterLab / Voila: the widget; in papermill / HTML: static figures

*Explore* tab.  An image is chosen by split (``test``, its counterfactual twins
``test_swapped`` / ``test_untagged``, ``val``, ``train``), class and bias (tagged, untagged,
off-context, in-context; read from the scene set's ``bias.csv``), optionally with its
counterfactual twin side by side; a model (the final CNN, a training checkpoint
``cnn_epochNNN.pt``, the Fisher-vector classifier); a method from :func:`lrpkit.methods`
(the ones for the model's kind) whose parameters appear as widgets generated from the
registry's defaults (:attr:`lrpkit.explain.Method.params`: a bool becomes a checkbox, a
number a number box, a string with known choices -- LRP composites, FV-LRP rules, PDA
variants, FGVis games -- a drop-down, anything else a text box read as a Python literal).
It shows the image, the heatmap (:func:`lrpkit.viz.heatmap_rgb`), the overlay, the model's
class scores, mu for the object boxes (the outside-inside ratio of Lapuschkin et al. 2016,
"Analyzing Classifiers: Fisher Vectors and Deep Neural Networks", CVPR, eq. 11) and the
region-perturbation curve of the heatmap against a random order (Samek et al. 2017,
"Evaluating the visualization of what a deep neural network has learned", IEEE TNNLS,
eq. 9-12; :func:`lrpkit.evaluate.region_perturbation`).

Every change recomputes after ``debounce`` seconds in a background thread, with a busy
indicator; a newer change or the *Cancel* button stops the running computation (a cancel
flag checked on every Python call of the computing thread) and slow methods report their
tqdm progress in a progress bar.  :meth:`Explorer.wait` waits for the current computation and
:attr:`Explorer.result` holds what is displayed (relevance, heatmap, scores, mu, curves).

*Browse* tab.  Opens a result file (``.nc``) from the reports folder and steps through its
variables along every dim (image, method, step ...) without recomputing anything.

In a papermill run (the report runner sets ``LRPKIT_STATIC=1``) or with ``static=True``
displaying an explorer shows a static figure of the current selection instead of widgets, so
HTML reports hold no dead widget placeholders.
"""
from __future__ import annotations

import ast
import io
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

__all__ = ["Explorer", "Cancelled", "static_mode", "param_widget", "parse_param", "voila_command"]

#: known choices of string parameters (a drop-down instead of a text box)
_CHOICES: dict[tuple[str, str], Callable[[], Sequence[str]]] = {}


def _lrp_composites() -> list[str]:
    from .lrp import COMPOSITES

    return list(COMPOSITES)


def _from(module: str, name: str, fallback: Sequence[str]) -> Callable[[], list[str]]:
    """Choices read from a capability's own table (so they follow its code), else ``fallback``."""
    def get() -> list[str]:
        import importlib

        try:
            return [str(v) for v in getattr(importlib.import_module(module), name)]
        except (ImportError, AttributeError):
            return list(fallback)
    return get


_CHOICES.update({
    ("lrp", "composite"): _lrp_composites,
    ("fv_lrp", "rule"): lambda: ["epsilon", "absolute", "plain"],
    ("fv_lrp", "resolution"): lambda: ["feature", "bin"],
    ("pda", "variant"): _from("lrpkit.pda.analysis", "VARIANTS", ["sampling", "mean", "gradient"]),
    ("pda", "prob"): lambda: ["softmax", "sigmoid"],
    ("fgvis", "game"): _from("lrpkit.fgvis.games", "GAMES", ["deletion", "preservation"]),
    ("sensitivity", "norm"): lambda: ["l2", "linf", "None"],
    ("deconvnet", "norm"): lambda: ["l2", "linf", "None"],
    ("guided_backprop", "norm"): lambda: ["l2", "linf", "None"],
})


def voila_command(notebook: str | os.PathLike, port: int = 8866, *, ip: str = "127.0.0.1",
                  config: str | os.PathLike | None = None) -> tuple[list[str], dict[str, str]]:
    """``(argv, env)`` that serve ``notebook`` (e.g. one showing an :class:`Explorer`) with Voila, offline.

    Voila's ``lab`` template links Font Awesome from a CDN; this writes a copy of the template
    without those links (``lrpkit-offline``, in a temporary ``JUPYTER_PATH`` folder), leaves out
    jupytext's JupyterLab extension (it fails to load inside Voila and logs an error) and binds to
    ``ip`` (loopback by default).  ``config`` is passed to the
    notebook as ``LRPKIT_EXPLORER_CONFIG``.
    """
    import json
    import re
    import shutil
    import tempfile

    from jupyter_core.paths import jupyter_path

    src = next((Path(d) / "voila" / "templates" / "lab" for d in jupyter_path()
                if (Path(d) / "voila" / "templates" / "lab" / "index.html.j2").is_file()), None)
    if src is None:
        raise FileNotFoundError("Voila's lab template not found (pip install voila)")
    data = Path(tempfile.mkdtemp(prefix="lrpkit-voila-"))
    dst = data / "voila" / "templates" / "lrpkit-offline"
    dst.mkdir(parents=True)
    text = (src / "index.html.j2").read_text()
    text = re.sub(r'\s*<link[^>]*href="https?://[^"]*"[^>]*>', "", text)
    (dst / "index.html.j2").write_text(text)
    for f in src.iterdir():
        if f.name != "index.html.j2" and f.is_file():
            shutil.copy(f, dst / f.name)
    (dst / "conf.json").write_text(json.dumps({"base_template": "lab"}))
    exe = Path(sys.executable).parent / "voila"
    argv = [str(exe) if exe.exists() else "voila", str(notebook), "--no-browser", f"--port={int(port)}",
            f"--Voila.ip={ip}", "--template=lrpkit-offline",
            "--VoilaConfiguration.extension_denylist=jupyterlab-jupytext"]
    env = {**os.environ, "JUPYTER_PATH": os.pathsep.join([str(data), os.environ.get("JUPYTER_PATH", "")]).rstrip(os.pathsep),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}", "LRPKIT_STATIC": ""}
    if config is not None:
        env["LRPKIT_EXPLORER_CONFIG"] = str(config)
    return argv, env


class Cancelled(Exception):
    """Raised inside the computing thread when its computation was cancelled."""


def static_mode() -> bool:
    """Whether explorers should show static figures (batch runs set ``LRPKIT_STATIC=1``)."""
    return os.environ.get("LRPKIT_STATIC", "").strip() not in ("", "0", "false", "no")


def parse_param(text: str, default: Any) -> Any:
    """A text box's value as the parameter: a Python literal (``None``, numbers, lists), else the string."""
    t = text.strip()
    if t in ("", "None"):
        return None
    try:
        return ast.literal_eval(t)
    except (ValueError, SyntaxError):
        return t


def param_widget(method: str, name: str, default: Any):
    """The widget for one registered parameter, built from its default (see module doc)."""
    import ipywidgets as W

    desc = dict(description=name, style={"description_width": "initial"}, layout=W.Layout(width="260px"))
    choices = _CHOICES.get((method, name))
    if choices is not None:
        opts = list(dict.fromkeys([*choices(), *([] if default is None else [str(default)])]))
        if default is None and "None" not in opts:
            opts.append("None")
        return W.Dropdown(options=opts, value="None" if default is None else str(default), **desc)
    if isinstance(default, bool):
        return W.Checkbox(value=default, indent=False, **desc)
    if isinstance(default, int):
        return W.IntText(value=default, **desc)
    if isinstance(default, float):
        return W.FloatText(value=default, **desc)
    return W.Text(value="None" if default is None else (default if isinstance(default, str) else repr(default)),
                  **desc)


def _widget_value(w: Any, default: Any) -> Any:
    v = w.value
    if isinstance(v, str) and not isinstance(default, str):
        return parse_param(v, default)
    if isinstance(v, str) and v == "None" and default is None:
        return None
    return v


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=fig.dpi)
    return buf.getvalue()


def _figure(w: float, h: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(w, h), dpi=80, layout="constrained")


class _Trace:
    """A per-thread trace function: raises :class:`Cancelled` once ``event`` is set and reads
    the progress of tqdm bars updated in that thread."""

    def __init__(self, event: threading.Event, on_progress: Callable[[float, float], None]):
        self.event = event
        self.on_progress = on_progress
        try:
            from tqdm import std

            self._update = std.tqdm.update.__code__
        except Exception:  # noqa: BLE001
            self._update = None

    def __call__(self, frame, what, arg):  # noqa: ARG002
        if self.event.is_set():
            raise Cancelled()
        if what == "call" and frame.f_code is self._update:
            bar = frame.f_locals.get("self")
            total = getattr(bar, "total", None)
            if total:
                self.on_progress(float(getattr(bar, "n", 0)) + float(frame.f_locals.get("n", 1) or 1),
                                 float(total))
        return None


class Explorer:
    """Interactive explorer of heatmaps (see the module docstring).

    Parameters
    ----------
    config : config name or path (data, models and reports folders are read from it).
    debounce : seconds of quiet before a change recomputes (0: at once).
    static : show static figures instead of widgets; default :func:`static_mode`.
    perturbation : compute the region-perturbation curves (MoRF vs random).
    perturbation_steps, region_size, perturbation_repeats : their size (small: it is interactive).
    """

    SPLITS = ("test", "test_swapped", "test_untagged", "val", "train")
    BIAS = ("any", "tagged", "untagged", "off-context", "in-context")

    def __init__(self, config: Any = "configs/default.yaml", *, debounce: float = 0.3,
                 static: bool | None = None, perturbation: bool = True, perturbation_steps: int = 20,
                 region_size: int = 9, perturbation_repeats: int = 3, start: bool = True) -> None:
        import ipywidgets as W

        from .config import load_config

        self.cfg = load_config(config)
        self.debounce = float(debounce)
        self.static = static_mode() if static is None else bool(static)
        self.perturbation = perturbation
        self.perturbation_steps = int(perturbation_steps)
        self.region_size = int(region_size)
        self.perturbation_repeats = int(perturbation_repeats)
        self.result: dict[str, Any] = {}
        self.error: str | None = None
        self._datasets: dict[str, Any] = {}
        self._models: dict[str, Any] = {}
        self._bias = None
        self._lock = threading.RLock()
        self._timer: threading.Timer | None = None
        self._thread: threading.Thread | None = None
        self._cancel: threading.Event | None = None
        self._token = 0
        self._param_widgets: dict[str, Any] = {}
        self._suspend = False

        scenes = self._scenes_root()
        splits = [s for s in self.SPLITS if (scenes / "ImageSets" / "Main" / f"{s}.txt").is_file()]
        if not splits:
            raise FileNotFoundError(f"no scene splits in {scenes} (run `lrpkit data --config ...` first)")
        lay = W.Layout(width="260px")
        self.split = W.Dropdown(options=splits, value=splits[0], description="split", layout=lay)
        self.cls = W.Dropdown(options=["any"], value="any", description="class", layout=lay)
        self.bias = W.Dropdown(options=list(self.BIAS), value="any", description="bias", layout=lay)
        self.image = W.Dropdown(options=[], description="image", layout=W.Layout(width="260px"))
        self.twin = W.Dropdown(options=["none"], value="none", description="twin", layout=lay)
        self.model = W.Dropdown(options=self._model_options(), description="model", layout=lay)
        self.method = W.Dropdown(options=[], description="method", layout=lay)
        self.target = W.Dropdown(options=["pred"], value="pred", description="target", layout=lay)
        self.params = W.VBox([])
        self.status = W.HTML("")
        self.progress = W.FloatProgress(value=0, min=0, max=1, layout=W.Layout(width="200px", visibility="hidden"))
        self.cancel_button = W.Button(description="Cancel", disabled=True,
                                      layout=W.Layout(width="100px"))
        self.cancel_button.on_click(lambda _: self.cancel())
        img_lay = W.Layout(width="220px", height="220px", object_fit="contain")
        self.image_view = W.Image(format="png", layout=img_lay)
        self.heatmap_view = W.Image(format="png", layout=img_lay)
        self.overlay_view = W.Image(format="png", layout=img_lay)
        self.twin_view = W.Image(format="png", layout=W.Layout(width="440px", height="220px", object_fit="contain"))
        self.scores_view = W.Image(format="png", layout=W.Layout(width="320px", height="220px", object_fit="contain"))
        self.curve_view = W.Image(format="png", layout=W.Layout(width="320px", height="220px", object_fit="contain"))
        self.mu_view = W.HTML("")
        self.twin_box = self._titled("counterfactual twin", self.twin_view)
        self.twin_box.layout.display = "none"
        for w in (self.image_view, self.heatmap_view, self.overlay_view):
            w.add_class("lrpkit-view")
        self.heatmap_view.add_class("lrpkit-heatmap")
        for w, cls in ((self.method, "lrpkit-method"), (self.model, "lrpkit-model"), (self.image, "lrpkit-image"),
                       (self.status, "lrpkit-busy")):
            w.add_class(cls)

        self._fill_classes()
        self._fill_images()
        self._fill_methods()
        self._fill_twins()
        self._build_params()
        self.split.observe(self._on_split, "value")
        self.cls.observe(self._on_filter, "value")
        self.bias.observe(self._on_filter, "value")
        self.model.observe(self._on_model, "value")
        self.method.observe(self._on_method, "value")
        for w in (self.image, self.twin, self.target):
            w.observe(self._on_change, "value")

        controls = W.VBox([W.HTML("<b>image</b>"), self.split, self.cls, self.bias, self.image, self.twin,
                           W.HTML("<b>model and method</b>"), self.model, self.method, self.target,
                           self.params], layout=W.Layout(width="300px"))
        views = W.VBox([
            W.HBox([self.status, self.progress, self.cancel_button]),
            W.HBox([self._titled("image", self.image_view), self._titled("heatmap", self.heatmap_view),
                    self._titled("overlay", self.overlay_view)]),
            W.HBox([self._titled("class scores", self.scores_view),
                    self._titled("region perturbation (MoRF vs random)", self.curve_view)]),
            self.mu_view, self.twin_box])
        self._build_browser()
        explore = W.HBox([controls, views])
        self.widget = W.Tab(children=[explore, self.browser])
        self.widget.set_title(0, "Explore")
        self.widget.set_title(1, "Browse results")
        self.widget.add_class("lrpkit-explorer")
        if start:
            self._schedule(immediate=True)

    # ------------------------------------------------------------------ data and models
    @staticmethod
    def _titled(title: str, w: Any):
        import ipywidgets as W

        return W.VBox([W.HTML(f"<small>{title}</small>"), w])

    def _scenes_root(self) -> Path:
        from .config import resolve_path

        return resolve_path(self.cfg, "scenes")

    def _models_root(self) -> Path:
        from .config import resolve_path

        return resolve_path(self.cfg, "models")

    def _dataset(self, split: str):
        if split not in self._datasets:
            from .data import VOCDataset

            self._datasets[split] = VOCDataset(self._scenes_root(), split)
        return self._datasets[split]

    def _bias_table(self):
        if self._bias is None:
            try:
                from .data import read_bias

                df = read_bias(self._scenes_root())
                g = df.groupby("image_id")
                self._bias = {"tag": g["tag"].max().to_dict(),
                              "context_match": g["context_match"].first().to_dict(),
                              "source_id": g["source_id"].first().to_dict()}
            except Exception:  # noqa: BLE001 - not a generated scene set: no bias filter
                self._bias = {}
        return self._bias

    def _model_options(self) -> list[tuple[str, str]]:
        root = self._models_root()
        opts = []
        if (root / "cnn" / "cnn.pt").is_file():
            opts.append(("CNN (final)", "cnn"))
        for p in sorted((root / "cnn").glob("cnn_epoch*.pt")):
            opts.append((f"CNN checkpoint {p.stem.replace('cnn_', '')}", f"cnn:{p.name}"))
        if (root / "fisher" / "fv.joblib").is_file():
            opts.append(("Fisher vector", "fisher"))
        if not opts:
            raise FileNotFoundError(f"no trained model in {root} (run `lrpkit train --config ...` first)")
        return opts

    def _load_model(self, key: str):
        if key not in self._models:
            root = self._models_root()
            if key == "fisher":
                from .fisher import load_fisher

                self._models[key] = load_fisher(root / "fisher" / "fv.joblib")
            else:
                from .models import load_cnn

                name = key.split(":", 1)[1] if ":" in key else "cnn.pt"
                self._models[key] = load_cnn(root / "cnn" / name)
        return self._models[key]

    def _kind(self, key: str | None = None) -> str:
        return "fisher" if (key or self.model.value) == "fisher" else "torch"

    def classes(self) -> list[str]:
        return list(self._dataset(self.split.value).classes)

    # ------------------------------------------------------------------ filling the controls
    def _fill_classes(self) -> None:
        self.cls.options = ["any", *self.classes()]
        self.target.options = ["pred", *self.classes()]

    def _image_ids(self) -> list[tuple[str, int]]:
        ds = self._dataset(self.split.value)
        bias = self._bias_table()
        out = []
        for i, img_id in enumerate(ds.ids):
            names = sorted({o.name for o in ds.annotations[i].objects})
            if self.cls.value != "any" and self.cls.value not in names:
                continue
            b = self.bias.value
            if b != "any" and bias:
                tag = int(bias["tag"].get(img_id, 0) or 0)
                ctx = bool(bias["context_match"].get(img_id, True))
                if (b == "tagged" and not tag) or (b == "untagged" and tag) or \
                        (b == "off-context" and ctx) or (b == "in-context" and not ctx):
                    continue
            out.append((f"{img_id} ({', '.join(names)})", i))
            if len(out) >= 500:
                break
        return out

    def _fill_images(self) -> None:
        opts = self._image_ids()
        self.image.options = opts or [("(no image matches)", -1)]
        self.image.value = opts[0][1] if opts else -1

    def _fill_methods(self) -> None:
        from .explain import methods

        kind = self._kind()
        names = [n for n, m in methods().items() if m.model_kind == kind]
        old = self.method.value
        self.method.options = names
        if old in names:
            self.method.value = old
        elif names:
            self.method.value = "lrp" if "lrp" in names else ("fv_lrp" if "fv_lrp" in names else names[0])

    def refresh_methods(self) -> None:
        """Re-read :func:`lrpkit.methods` (a method registered after the explorer was made)."""
        self._suspend = True
        try:
            self._fill_methods()
        finally:
            self._suspend = False

    def _twin_ids(self) -> dict[str, str]:
        """Counterfactual twins of the current image: split -> image id."""
        if self.image.value is None or self.image.value < 0:
            return {}
        img_id = self._dataset(self.split.value).ids[self.image.value]
        bias = self._bias_table()
        src = bias.get("source_id", {}).get(img_id, img_id) if bias else img_id
        if "_" not in src:
            return {}
        idx = src.split("_", 1)[1]
        cands = {"test": f"test_{idx}", "test_swapped": f"swapped_{idx}", "test_untagged": f"untagged_{idx}"}
        out = {}
        for split, tid in cands.items():
            if split == self.split.value or tid == img_id:
                continue
            try:
                if tid in self._dataset(split).ids:
                    out[split] = tid
            except FileNotFoundError:
                continue
        return out

    def _fill_twins(self) -> None:
        old = self.twin.value
        opts = ["none", *self._twin_ids()]
        self.twin.options = opts
        self.twin.value = old if old in opts else "none"

    def _build_params(self) -> None:
        from .explain import get_method

        m = get_method(self.method.value) if self.method.value else None
        self._param_widgets = {}
        if m is not None:
            for k, v in m.params.items():
                if k in ("progress",):
                    continue
                w = param_widget(m.name, k, v)
                w.observe(self._on_change, "value")
                self._param_widgets[k] = w
        self.params.children = list(self._param_widgets.values())

    def param_values(self) -> dict[str, Any]:
        """The current parameter values, parsed (what :func:`lrpkit.explain` gets)."""
        from .explain import get_method

        m = get_method(self.method.value)
        return {k: _widget_value(w, m.params.get(k)) for k, w in self._param_widgets.items()}

    # ------------------------------------------------------------------ events
    def _on_split(self, change) -> None:
        self._suspend = True
        try:
            self._fill_classes()
            self._fill_images()
            self._fill_twins()
        finally:
            self._suspend = False
        self._schedule()

    def _on_filter(self, change) -> None:
        self._suspend = True
        try:
            self._fill_images()
            self._fill_twins()
        finally:
            self._suspend = False
        self._schedule()

    def _on_model(self, change) -> None:
        self._suspend = True
        try:
            self._fill_methods()
            self._build_params()
        finally:
            self._suspend = False
        self._schedule()

    def _on_method(self, change) -> None:
        self._suspend = True
        try:
            self._build_params()
        finally:
            self._suspend = False
        self._schedule()

    def _on_change(self, change) -> None:
        if change.get("owner") is self.image:
            self._suspend = True
            try:
                self._fill_twins()
            finally:
                self._suspend = False
        self._schedule()

    # ------------------------------------------------------------------ computing
    def _schedule(self, immediate: bool = False) -> None:
        if self._suspend:
            return
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
            self._token += 1
            token = self._token
            if self._cancel is not None:
                self._cancel.set()  # a newer request makes the running one obsolete
            self._set_busy(True, "waiting ..." if not immediate and self.debounce > 0 else "computing ...")
            if immediate or self.debounce <= 0:
                self._timer = None
                self._start(token)
            else:
                self._timer = threading.Timer(self.debounce, self._start, args=(token,))
                self._timer.daemon = True
                self._timer.start()

    def _start(self, token: int) -> None:
        with self._lock:
            if token != self._token:
                return
            self._timer = None
            cancel = threading.Event()
            self._cancel = cancel
            request = self._request()
            t = threading.Thread(target=self._run, args=(token, cancel, request), daemon=True,
                                 name=f"lrpkit-explorer-{token}")
            self._thread = t
        t.start()

    def _request(self) -> dict[str, Any]:
        return {"split": self.split.value, "index": self.image.value, "model": self.model.value,
                "method": self.method.value, "params": self.param_values() if self.method.value else {},
                "target": self.target.value, "twin": self.twin.value}

    def cancel(self) -> None:
        """Stop the running computation (the displayed result stays the last finished one)."""
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if self._cancel is not None:
                self._cancel.set()
        self._set_busy(False, "cancelled")

    def wait(self, timeout: float = 300.0) -> dict[str, Any]:
        """Wait until no computation is pending or running; return :attr:`result`."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            with self._lock:
                busy = self._timer is not None or (self._thread is not None and self._thread.is_alive())
            if not busy:
                if self.error:
                    raise RuntimeError(f"explorer computation failed: {self.error}")
                return self.result
            time.sleep(0.02)
        raise TimeoutError(f"explorer still computing after {timeout} s")

    def _set_busy(self, busy: bool, text: str = "") -> None:
        spinner = ('<span class="lrpkit-spin" style="display:inline-block;width:.8em;height:.8em;'
                   'border:2px solid #d0d7de;border-top-color:#9a6700;border-radius:50%;'
                   'animation:lrpkit-spin 1s linear infinite"></span><style>@keyframes lrpkit-spin'
                   '{to{transform:rotate(360deg)}}</style> ') if busy else ""
        colour = "#9a6700" if busy else ("#cf222e" if text.startswith("error") else "#1a7f37")
        self.status.value = f'<span class="lrpkit-status" style="color:{colour}">{spinner}{text}</span>'
        self.cancel_button.disabled = not busy
        self.progress.layout.visibility = "visible" if busy else "hidden"
        if not busy:
            self.progress.value = 0

    def _on_progress(self, token: int, n: float, total: float) -> None:
        if token == self._token and total > 0:
            self.progress.value = min(1.0, n / total)

    def _run(self, token: int, cancel: threading.Event, req: Mapping[str, Any]) -> None:
        trace = _Trace(cancel, lambda n, tot: self._on_progress(token, n, tot))
        sys.settrace(trace)
        try:
            res = self.compute(req, cancel=cancel)
            sys.settrace(None)
            with self._lock:
                if token != self._token:
                    return
                self.result, self.error = res, None
            self._show(res)
            self._set_busy(False, f"{res['method']} on {res['image_id']}: {res['seconds']:.2f} s")
        except Cancelled:
            sys.settrace(None)
        except Exception as exc:  # noqa: BLE001 - shown in the status line
            sys.settrace(None)
            with self._lock:
                if token != self._token:
                    return
                self.error = f"{type(exc).__name__}: {exc}"
            self._set_busy(False, f"error: {self.error}")
        finally:
            sys.settrace(None)

    def inputs(self, split: str, index: int, model_key: str):
        """``(x, image_id, boxes_in_x, classes)`` of one image for one model."""
        import torch

        from .data import transforms as T
        from .evaluate.context import box_to_crop

        ds = self._dataset(split)
        img, tgt = ds[index]
        model = self._load_model(model_key)
        meta = getattr(model, "meta", {}) or {}
        size = int(meta.get("size", T.DEFAULT_SIZE))
        crop = int(meta.get("input_size", getattr(model, "input_size", T.DEFAULT_CROP)))
        if model_key == "fisher":
            size, crop = T.DEFAULT_SIZE, T.DEFAULT_CROP
        x = T.to_tensor_batch([img], size=size, crop=crop)
        if model_key == "fisher":  # the FV pipeline takes [0, 1] images
            x = T.denormalize(x).to(torch.float32)
        w, h = tgt["size"]
        boxes = box_to_crop(np.asarray(tgt["boxes"], dtype=float).reshape(-1, 4), (w, h), size=size, crop=crop)
        return x, tgt["id"], boxes, list(ds.classes)

    def compute(self, req: Mapping[str, Any], cancel: threading.Event | None = None) -> dict[str, Any]:
        """Compute what the explorer shows for a request (no widgets touched)."""
        from .evaluate.context import outside_inside_ratio
        from .explain import explain, model_scores, resolve_target
        from .viz import channel_sum

        t0 = time.perf_counter()
        if req["index"] is None or req["index"] < 0:
            raise ValueError("no image matches the filters")
        model = self._load_model(req["model"])
        x, img_id, boxes, classes = self.inputs(req["split"], req["index"], req["model"])
        target = "pred" if req["target"] == "pred" else classes.index(req["target"])
        scores = model_scores(model, x)[0].detach().cpu().numpy()
        t = resolve_target(model, x, target)
        R = explain(model, x, t, method=req["method"], **req["params"])
        heat = channel_sum(R)[0].detach().cpu().numpy()
        boxes = boxes[(boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])]
        try:
            mu = outside_inside_ratio(heat, boxes) if len(boxes) else float("nan")
        except ValueError:
            mu = float("nan")
        res: dict[str, Any] = {"image_id": img_id, "split": req["split"], "index": req["index"],
                               "model": req["model"], "method": req["method"], "params": dict(req["params"]),
                               "target": int(t[0]), "target_name": classes[int(t[0])], "x": x,
                               "relevance": R[0].detach().cpu().numpy(), "heatmap": heat, "scores": scores,
                               "classes": classes, "boxes": boxes, "mu": mu, "curve": None, "twin": None}
        if cancel is not None and cancel.is_set():
            raise Cancelled()
        if self.perturbation:
            res["curve"] = self.perturbation_curves(model, x, heat, t)
        if req.get("twin") not in (None, "none"):
            tid = self._twin_ids_for(req["split"], img_id).get(req["twin"])
            if tid is not None:
                ti = self._dataset(req["twin"]).ids.index(tid)
                xt, _, tboxes, _ = self.inputs(req["twin"], ti, req["model"])
                Rt = explain(model, xt, t, method=req["method"], **req["params"])
                res["twin"] = {"image_id": tid, "split": req["twin"], "x": xt,
                               "heatmap": channel_sum(Rt)[0].detach().cpu().numpy(),
                               "scores": model_scores(model, xt)[0].detach().cpu().numpy()}
        res["seconds"] = time.perf_counter() - t0
        return res

    def _twin_ids_for(self, split: str, img_id: str) -> dict[str, str]:
        old = (self.split.value, self.image.value)
        ids = self._dataset(split).ids
        if img_id not in ids:
            return {}
        bias = self._bias_table()
        src = bias.get("source_id", {}).get(img_id, img_id) if bias else img_id
        idx = src.split("_", 1)[1] if "_" in src else None
        if idx is None:
            return {}
        cands = {"test": f"test_{idx}", "test_swapped": f"swapped_{idx}", "test_untagged": f"untagged_{idx}"}
        del old
        return {s: i for s, i in cands.items() if s != split}

    def perturbation_curves(self, model, x, heat, target) -> dict[str, np.ndarray] | None:
        """MoRF and random region-perturbation curves (``lrpkit.evaluate.region_perturbation``).

        Hook: returns None while :mod:`lrpkit.evaluate` has no ``region_perturbation``.
        """
        try:
            from .evaluate import region_perturbation
        except ImportError:  # the evaluation capability is not built: no curve
            return None
        import torch

        h = torch.as_tensor(heat)[None]
        steps = min(self.perturbation_steps,
                    int(np.ceil(x.shape[-1] / self.region_size) * np.ceil(x.shape[-2] / self.region_size)))
        out = {}
        for order in ("morf", "random"):
            ds = region_perturbation(model, x, h, target, region_size=self.region_size, steps=steps,
                                     repeats=self.perturbation_repeats if order == "random" else 1,
                                     order=order, seed=0)
            out[order] = ds["score"].isel(image=0).mean("repeat").values
        return out

    # ------------------------------------------------------------------ display
    def _show(self, res: Mapping[str, Any]) -> None:
        views = self.render(res)
        self.image_view.value = views["image"]
        self.heatmap_view.value = views["heatmap"]
        self.overlay_view.value = views["overlay"]
        self.scores_view.value = views["scores"]
        self.curve_view.value = views.get("curve", b"")
        self.twin_view.value = views.get("twin", b"")
        self.twin_box.layout.display = "flex" if views.get("twin") else "none"
        self.curve_view.layout.display = "flex" if views.get("curve") else "none"
        mu = res["mu"]
        self.mu_view.value = (f"<b>mu</b> (mean positive relevance outside / inside the object boxes, "
                              f"Lapuschkin et al. 2016 eq. 11) = <b>{mu:.3f}</b>; target "
                              f"<b>{res['target_name']}</b>")

    def render(self, res: Mapping[str, Any]) -> dict[str, bytes]:
        """PNG bytes of each view of a result."""
        from .data.transforms import denormalize
        from .viz import heatmap_rgb, overlay

        def rgb(x):
            x = x if res["model"] == "fisher" else denormalize(x)
            return x[0].permute(1, 2, 0).detach().cpu().numpy().clip(0, 1)

        def img(a, boxes=None):
            fig = _figure(2.8, 2.8)
            ax = fig.add_subplot()
            ax.imshow(a)
            for b in (boxes if boxes is not None else []):
                from matplotlib.patches import Rectangle

                ax.add_patch(Rectangle((b[0] - .5, b[1] - .5), b[2] - b[0], b[3] - b[1], fill=False,
                                       edgecolor="lime", linewidth=1.5))
            ax.set_axis_off()
            return _png(fig)

        image = rgb(res["x"])
        out = {"image": img(image, res["boxes"]), "heatmap": img(heatmap_rgb(res["heatmap"])),
               "overlay": img(overlay(image, res["heatmap"]))}
        fig = _figure(4, 2.8)
        ax = fig.add_subplot()
        s = res["scores"]
        colours = ["#cf222e" if i == res["target"] else "#8c959f" for i in range(len(s))]
        ax.barh(res["classes"], s, color=colours)
        ax.axvline(0, color="k", lw=.8)
        ax.invert_yaxis()
        ax.set_xlabel("score")
        out["scores"] = _png(fig)
        if res.get("curve"):
            fig = _figure(4, 2.8)
            ax = fig.add_subplot()
            for k, c in (("morf", "#cf222e"), ("random", "#57606a")):
                ax.plot(res["curve"][k], label=k, color=c)
            ax.set_xlabel("perturbed regions")
            ax.set_ylabel("target score")
            ax.legend()
            out["curve"] = _png(fig)
        tw = res.get("twin")
        if tw:
            fig = _figure(5.6, 2.8)
            a1, a2 = fig.subplots(1, 2)
            a1.imshow(rgb(tw["x"]))
            a1.set_title(tw["image_id"], fontsize=8)
            a2.imshow(heatmap_rgb(tw["heatmap"]))
            a2.set_title(f"score {tw['scores'][res['target']]:.2f} (was {s[res['target']]:.2f})", fontsize=8)
            for a in (a1, a2):
                a.set_axis_off()
            out["twin"] = _png(fig)
        return out

    def static_figure(self):
        """A matplotlib Figure of the current result (what papermill runs and HTML exports show)."""
        import matplotlib.pyplot as plt

        from .data.transforms import denormalize
        from .viz import heatmap_rgb, overlay

        res = self.wait()
        x = res["x"] if res["model"] == "fisher" else denormalize(res["x"])
        image = x[0].permute(1, 2, 0).numpy().clip(0, 1)
        n = 4 + bool(res.get("curve"))
        fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 3.2))
        axes[0].imshow(image)
        axes[0].set_title(res["image_id"], fontsize=9)
        axes[1].imshow(heatmap_rgb(res["heatmap"]))
        axes[1].set_title(f"{res['method']} -> {res['target_name']}", fontsize=9)
        axes[2].imshow(overlay(image, res["heatmap"]))
        axes[2].set_title(f"mu = {res['mu']:.3f}", fontsize=9)
        for a in axes[:3]:
            a.set_axis_off()
        axes[3].barh(res["classes"], res["scores"])
        axes[3].invert_yaxis()
        axes[3].set_title("class scores", fontsize=9)
        if res.get("curve"):
            for k in ("morf", "random"):
                axes[4].plot(res["curve"][k], label=k)
            axes[4].legend()
            axes[4].set_title("region perturbation", fontsize=9)
        fig.tight_layout()
        return fig

    def _ipython_display_(self) -> None:
        from IPython.display import display

        if self.static:
            import matplotlib.pyplot as plt

            fig = self.static_figure()
            display(fig)
            plt.close(fig)
        else:
            display(self.widget)

    # ------------------------------------------------------------------ browsing results
    def _build_browser(self) -> None:
        import ipywidgets as W

        from .config import resolve_path

        self._browse_ds = None
        self.browse_data = None
        root = resolve_path(self.cfg, "reports")
        files = sorted(str(p.relative_to(root)) for p in root.rglob("*.nc")
                       if not any(part.startswith(".") for part in p.relative_to(root).parts)) \
            if root.is_dir() else []
        self._reports_root = root
        self.browse_file = W.Dropdown(options=["(choose a results file)", *files], description="file",
                                      layout=W.Layout(width="420px"))
        self.browse_var = W.Dropdown(options=[], description="variable", layout=W.Layout(width="320px"))
        self.browse_dims = W.VBox([])
        self.browse_view = W.Image(format="png", layout=W.Layout(width="420px", height="320px",
                                                                 object_fit="contain"))
        self.browse_info = W.HTML("")
        self.browse_file.observe(lambda c: self.open_results(c["new"]) if c["new"] and not
                                 c["new"].startswith("(") else None, "value")
        self.browse_var.observe(lambda c: self._browse_var_changed(), "value")
        self.browser = W.VBox([self.browse_file, self.browse_var, self.browse_dims, self.browse_info,
                               self.browse_view])

    def open_results(self, path: str | os.PathLike) -> None:
        """Open a result file (relative to the reports folder, or any path) for browsing."""
        from .results import open_dataset

        p = Path(path)
        if not p.is_absolute():
            p = self._reports_root / p
        self._browse_ds = open_dataset(p)
        names = [n for n, v in self._browse_ds.data_vars.items() if v.ndim >= 1 and
                 np.issubdtype(v.dtype, np.number)]
        if not names:
            raise ValueError(f"{p} holds no numeric variable to browse")
        self.browse_info.value = f"<small>{p.name}: {dict(self._browse_ds.sizes)}</small>"
        self.browse_var.options = names
        self.browse_var.value = names[0]
        self._browse_var_changed()

    def _plot_axes(self, da) -> tuple[str, ...]:
        dims = da.dims
        if "y" in dims and "x" in dims:
            return ("y", "x")
        for d in ("step", "size", "fraction", "k", "epoch"):
            if d in dims:
                return (d,)
        return (dims[-1],)

    def _browse_var_changed(self) -> None:
        import ipywidgets as W

        if self._browse_ds is None or not self.browse_var.value:
            return
        da = self._browse_ds[self.browse_var.value]
        shown = self._plot_axes(da)
        sel = []
        for d in da.dims:
            if d in shown:
                continue
            n = da.sizes[d]
            coords = da[d].values if d in da.coords else np.arange(n)
            w = W.SelectionSlider(options=[(str(c), i) for i, c in enumerate(coords)], value=0, description=d,
                                  continuous_update=False, layout=W.Layout(width="420px"))
            w.observe(lambda c: self._browse_render(), "value")
            sel.append(w)
        self.browse_dims.children = sel
        self._browse_render()

    def _browse_render(self) -> None:
        from .viz import heatmap_rgb

        da = self._browse_ds[self.browse_var.value]
        idx = {w.description: w.value for w in self.browse_dims.children}
        sub = da.isel(idx) if idx else da
        self.browse_data = sub
        fig = _figure(5, 3.6)
        ax = fig.add_subplot()
        if sub.ndim == 2:
            v = np.asarray(sub.values, dtype=float)
            if np.nanmin(v) < 0:
                ax.imshow(heatmap_rgb(np.nan_to_num(v)))
            else:
                ax.imshow(v, cmap="viridis")
            ax.set_axis_off()
        else:
            ax.plot(sub[sub.dims[0]].values if sub.dims[0] in sub.coords else np.arange(sub.size),
                    np.asarray(sub.values, dtype=float), "o-", ms=3)
            ax.set_xlabel(sub.dims[0])
        ax.set_title(f"{self.browse_var.value} " + ", ".join(f"{k}={self.browse_ds_label(k, v)}"
                                                             for k, v in idx.items()), fontsize=8)
        self.browse_view.value = _png(fig)

    def browse_ds_label(self, dim: str, i: int) -> str:
        if dim in self._browse_ds.coords:
            return str(self._browse_ds[dim].values[i])
        return str(i)
