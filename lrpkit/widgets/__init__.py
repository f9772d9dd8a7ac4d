"""The interactive explorer and the results browser (JupyterLab / Voila).

::

    from lrpkit.widgets import Explorer
    ex = Explorer("configs/my_model.yaml")          # the config's model(s) and dataset
    ex = Explorer(model=model_source, dataset=dataset_source)   # or objects (lrpkit.sources)
    ex

Rooms: :mod:`.compute` (what is computed, on top of :mod:`lrpkit.sources`, :mod:`lrpkit.pipeline`
and :func:`lrpkit.explain`; no widget), :mod:`.render` (the one renderer: PNG views and the static
figure), :mod:`.worker` (background jobs, cooperative cancellation through the ``progress``
callback), :mod:`.controls` (parameter widgets from the methods' declarations),
:mod:`.explorer` (the :class:`Explorer` wiring them), :mod:`.browser` (the results browser),
:mod:`.voila` (serving an explorer notebook as a page).
"""
from __future__ import annotations

from .browser import ResultsBrowser
from .compute import Explanation, Inputs, Workspace, explain_image, model_source, perturbation_curve
from .controls import ParamControl, ParamForm, build_control
from .explorer import Explorer, Request, Result, static_mode
from .voila import voila_command
from .worker import Cancelled, Job, Worker

__all__ = ["Explorer", "Request", "Result", "ResultsBrowser", "Workspace", "Inputs", "Explanation",
           "explain_image", "perturbation_curve", "model_source", "ParamControl", "ParamForm", "build_control",
           "Worker", "Job", "Cancelled", "static_mode", "voila_command"]
