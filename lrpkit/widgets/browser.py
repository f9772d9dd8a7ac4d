"""Browse the result files of a reports folder without recomputing anything.

::

    from lrpkit.widgets import ResultsBrowser
    b = ResultsBrowser("configs/default.yaml")     # the config's reports folder
    b.open("05_pda_speedup.nc")
    b                                              # file, variable, one slider per other dim

A variable with ``y`` and ``x`` dims is shown as an image with its colour bar (a heatmap per
slider position: signed maps on a symmetric scale, see :mod:`lrpkit.widgets.render`); any other
variable as a line along its step-like dim (``step``, ``size``, ``fraction``, ``k``,
``epoch``, else its last dim).  The remaining dims get one slider each.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import ipywidgets as W
import numpy as np

from ..config import Config, as_config, resolve_path
from ..results import open_dataset
from . import render

__all__ = ["ResultsBrowser", "shown_dims", "IMAGE_DIMS", "LINE_DIMS"]

#: dims shown as an image
IMAGE_DIMS = ("y", "x")
#: dims shown along the horizontal axis of a line plot, in this order of preference
LINE_DIMS = ("step", "size", "fraction", "k", "epoch")


def shown_dims(dims: tuple[str, ...]) -> tuple[str, ...]:
    """The dims a variable is drawn along: ``("y", "x")`` (an image) or one line dim."""
    if all(d in dims for d in IMAGE_DIMS):
        return IMAGE_DIMS
    for d in LINE_DIMS:
        if d in dims:
            return (d,)
    return (dims[-1],)


class ResultsBrowser:
    """File, variable and dim-slider widgets over the ``.nc`` files of a reports folder.

    ``source``: a config (its ``paths.reports``) or a folder.  :attr:`data` holds the shown
    slice (an ``xarray.DataArray``), :attr:`view` its PNG.
    """

    def __init__(self, source: Any = "configs/default.yaml") -> None:
        if isinstance(source, (str, os.PathLike)) and Path(source).is_dir():
            self.root = Path(source)
        else:
            cfg = source if isinstance(source, Config) else as_config(source)
            self.root = resolve_path(cfg, "reports")
        self.ds = None
        self.data = None
        files = self.files()
        self.file = W.Dropdown(options=["(choose a results file)", *files], description="file",
                               layout=W.Layout(width="480px"))
        self.variable = W.Dropdown(options=[], description="variable", layout=W.Layout(width="360px"))
        self.sliders = W.VBox([])
        self.info = W.HTML("")
        self.view = W.Image(format="png")
        self.view.add_class("lrpkit-browse-view")
        self.file.observe(self._on_file, "value")
        self.variable.observe(lambda c: self._on_variable(), "value")
        self.widget = W.VBox([self.file, self.variable, self.sliders, self.info, self.view])

    def files(self) -> list[str]:
        """The ``.nc`` files under the folder (relative paths; hidden folders left out)."""
        if not self.root.is_dir():
            return []
        return sorted(str(p.relative_to(self.root)) for p in self.root.rglob("*.nc")
                      if not any(part.startswith(".") for part in p.relative_to(self.root).parts))

    def _on_file(self, change) -> None:
        if change["new"] and not change["new"].startswith("("):
            self.open(change["new"])

    def open(self, path: str | os.PathLike) -> None:
        """Open a result file (relative to the folder, or any path) and show its first numeric
        variable."""
        p = Path(path)
        if not p.is_absolute():
            p = self.root / p
        ds = open_dataset(p)
        names = [n for n, v in ds.data_vars.items() if v.ndim >= 1 and np.issubdtype(v.dtype, np.number)]
        if not names:
            raise ValueError(f"{p} holds no numeric variable to browse")
        self.ds = ds
        self.info.value = f"<small>{p.name}: {dict(ds.sizes)}</small>"
        if str(path) in self.file.options and self.file.value != str(path):
            self.file.value = str(path)
        self.variable.options = names
        if self.variable.value != names[0]:
            self.variable.value = names[0]      # _on_variable through the observer
        else:
            self._on_variable()

    def _on_variable(self) -> None:
        if self.ds is None or not self.variable.value:
            return
        da = self.ds[self.variable.value]
        shown = shown_dims(da.dims)
        sliders = []
        for d in da.dims:
            if d in shown:
                continue
            coords = da[d].values if d in da.coords else np.arange(da.sizes[d])
            s = W.SelectionSlider(options=[(str(c), i) for i, c in enumerate(coords)], value=0,
                                  description=d, continuous_update=False,
                                  layout=W.Layout(width="480px"))
            s.observe(lambda c: self.render(), "value")
            sliders.append(s)
        self.sliders.children = sliders
        self.render()

    def selection(self) -> dict[str, int]:
        """The slider positions: ``{dim: index}``."""
        return {s.description: s.value for s in self.sliders.children}

    def _label(self, dim: str, i: int) -> str:
        return str(self.ds[dim].values[i]) if dim in self.ds.coords else str(i)

    def render(self) -> None:
        """Draw the current slice into :attr:`view`."""
        name = self.variable.value
        idx = self.selection()
        da = self.ds[name]
        sub = da.isel(idx) if idx else da
        self.data = sub
        title = f"{name} " + ", ".join(f"{k}={self._label(k, v)}" for k, v in idx.items())
        if set(sub.dims) == set(IMAGE_DIMS):
            sub = sub.transpose(*IMAGE_DIMS)
            self.data = sub
            panel = render.heatmap_panel(np.asarray(sub.values, dtype=float), title)
        else:
            d = sub.dims[0]
            x = sub[d].values if d in sub.coords else np.arange(sub.sizes[d])
            panel = render.line_panel(x, np.asarray(sub.values, dtype=float), d, title)
        self.view.value = render.png([[panel]])

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)
