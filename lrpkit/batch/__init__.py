"""Batch runs of the notebooks: cells, parameter grids, scale-out on dask, resume, combine, reports.

A *cell* is one execution of one notebook with one set of parameters.  ``lrpkit report``
runs one cell per notebook (:func:`run_all`); a grid config (``configs/grid.yaml``) declares
several cells per notebook (:func:`run_grid`).  The modules, each using only those above it:

* :mod:`~lrpkit.batch.failures` - how a cell failed, as types (:class:`CellError`,
  :class:`KernelDied`, :class:`CellTimeout`, :class:`KernelStartError` ...), each knowing
  its description and whether a retry is worth it;
* :mod:`~lrpkit.batch.cells` - :class:`Cell`, :class:`CellResult`, status files,
  fingerprints (when a cell is current);
* :mod:`~lrpkit.batch.analysed` - what a cell's config analyses (model(s), data set), for the index;
* :mod:`~lrpkit.batch.spec` - which cells: a folder's notebooks, grid configs;
* :mod:`~lrpkit.batch.render` - offline HTML, thumbnails, the index page;
* :mod:`~lrpkit.batch.execute` - one cell in a child process (``python -m lrpkit.batch``):
  papermill, kernel-start lock and retries, SIGTERM, atomic commit;
* :mod:`~lrpkit.batch.combine` - a grid's cell results stacked along its parameters;
* :mod:`~lrpkit.batch.schedule` - serial / dask scheduling, retries, signals, :func:`run_grid`;
* :mod:`~lrpkit.batch.reports` - the notebook runner :func:`run_all` on top.

The index and the combined stores are derived from what is on disk and current
(:func:`~lrpkit.batch.cells.shown_state`); a folder has one run at a time (:mod:`lrpkit.runlock`);
a run's log is ``<out>/lrpkit.log``.

Every cell's outputs go to ``<out>/<name>.{ipynb,html,nc,thumb.png,status.json}`` (grid
cells below ``<out>/cells/<notebook>/``), a grid's combined stores to ``<out>/<notebook>.nc``
(or ``.zarr``) and the index to ``<out>/index.html``.
"""
from __future__ import annotations

from .analysed import check_inputs, describe
from .cells import (Cell, CellResult, cell_is_current, cell_name, code_stamp, fingerprint, read_status,
                    shown_state)
from .combine import combine_cells
from .execute import execute_cell, run_cell_process
from .failures import (CellError, CellTimeout, ExportError, Failure, Interrupted, KernelDied, KernelStartError,
                       MissingResult, RunError, WorkerDied, classify)
from .render import export_html, offline_html, write_index
from .reports import NotebookRun, ReportSummary, run_all, run_notebook
from .schedule import GridSummary, RunInterrupted, check_scheduler, expected_seconds, run_cells, run_grid
from .spec import GridSpec, discover_notebooks, grid_cells, is_grid_config, load_grid, notebook_cell

__all__ = ["check_inputs", "describe",
           "Cell", "CellResult", "cell_is_current", "cell_name", "code_stamp", "fingerprint", "read_status",
           "shown_state",
           "combine_cells", "execute_cell", "run_cell_process",
           "Failure", "CellError", "CellTimeout", "ExportError", "Interrupted", "KernelDied", "KernelStartError",
           "MissingResult", "RunError", "WorkerDied", "classify",
           "export_html", "offline_html", "write_index",
           "NotebookRun", "ReportSummary", "run_all", "run_notebook",
           "GridSummary", "RunInterrupted", "check_scheduler", "expected_seconds", "run_cells", "run_grid",
           "GridSpec", "discover_notebooks", "grid_cells", "is_grid_config", "load_grid", "notebook_cell"]
