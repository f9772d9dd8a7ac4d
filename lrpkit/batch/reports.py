"""The notebook runner: every notebook in ``notebooks/`` -> executed notebook, HTML, netCDF, index.

``run_all(config)`` executes each notebook with papermill (kernel ``python3``, the
parameters ``config`` and ``results_path`` injected into the cell tagged ``parameters``),
then writes into the report folder, per notebook ``<name>``:

* ``<name>.ipynb`` - the executed notebook (also when it failed: it shows the error),
* ``<name>.html`` - rendered with nbconvert: code hidden by default, figures embedded,
  nothing loaded from a network (it opens offline),
* ``<name>.nc``   - the notebook's xarray results (the notebook writes them to
  ``results_path`` with :func:`lrpkit.results.save_dataset`),
* ``<name>.thumb.png`` - a thumbnail of its key figure (a cell tagged ``key-figure``, else
  the last figure), ``<name>.status.json`` - status, duration, parameters, failure,

and ``index.html`` listing every notebook and every grid cell below the folder
(:func:`lrpkit.batch.render.write_index`, from what is on disk and current: a result made
under another config or code is shown stale, one whose files are gone missing).  A failing
notebook is run once more (not when it fails the same way in the same cell as before: that
failure is deterministic), then reported; it does not stop the others; the CLI exits
non-zero.  One run per report folder (:mod:`lrpkit.runlock`); the cells' and kernels' output
goes to ``<out>/lrpkit.log``.  Each notebook is one cell
run in a child process (:mod:`lrpkit.batch.execute`): SIGINT / SIGTERM stop the run promptly
and leave no half-written or stale result, and a re-run starts again where it stopped
(``force=False`` skips notebooks that finished for the same notebook and config).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from collections.abc import Mapping, Sequence

from ..config import load_config, resolve_path
from ..results import atomic_path
from ..runlock import folder_lock
from . import schedule
from .cells import Cell, CellResult, cell_name
from .execute import run_with_retries
from .render import write_index
from .spec import discover_notebooks, notebook_cell

__all__ = ["NotebookRun", "ReportSummary", "discover_notebooks", "run_notebook", "run_all"]


@dataclass
class NotebookRun:
    """The outcome of one notebook run."""

    name: str
    ok: bool
    seconds: float
    ipynb: Path | None = None
    html: Path | None = None
    results: Path | None = None
    failed_cell: int | None = None  # execution count of the failing cell
    error: str | None = None
    state: str = ""                 # ok | skipped | failed | interrupted
    detail: str = ""                # what happened, where, partial output (failures)

    @classmethod
    def from_result(cls, r: CellResult) -> NotebookRun:
        out = Path(r.out_dir)

        def f(name):
            return out / name if name and (out / name).exists() else None

        return cls(r.name, r.ok, r.seconds, f(r.ipynb), f(r.html), f(r.results), r.failed_cell,
                   r.error, r.state, "" if r.ok else r.describe())


@dataclass
class ReportSummary:
    out_dir: Path
    index: Path
    runs: list[NotebookRun] = field(default_factory=list)
    log: Path | None = None         # the run's log file (cells' and kernels' output)

    @property
    def failures(self) -> list[NotebookRun]:
        return [r for r in self.runs if not r.ok]

    @property
    def ok(self) -> bool:
        return not self.failures

    def __str__(self) -> str:
        lines = [f"{len(self.runs)} notebook(s), {len(self.failures)} failed -> {self.index}"]
        for r in self.runs:
            status = (r.state or "ok") if r.ok else f"FAILED {r.detail or f'in cell [{r.failed_cell}]: {r.error}'}"
            lines.append(f"  {r.name:32s} {r.seconds:7.1f} s  {status}")
        if self.log is not None:
            lines.append(f"  log: {self.log}")
        return "\n".join(lines)


def run_notebook(nb_path: str | os.PathLike, out_dir: str | os.PathLike, config: str | os.PathLike,
                 parameters: Mapping[str, Any] | None = None, hide_code: bool = True,
                 timeout: float | None = None, kernel_name: str = "python3",
                 start_timeout: float = 120.0, retries: int = 0) -> NotebookRun:
    """Execute one notebook (in a child process) and export it; never raises for notebook errors.

    ``parameters`` are papermill parameters (names of the notebook's parameters cell) or
    ``"section.key"`` config overrides; with parameters the outputs are named after them.
    """
    nb_path = Path(nb_path)
    if not nb_path.is_file():
        raise FileNotFoundError(f"notebook not found: {nb_path}")
    if kernel_name != "python3":
        raise ValueError(f"kernel_name must be 'python3' (this interpreter), got {kernel_name!r}")
    params = tuple((parameters or {}).items())
    cell = Cell(notebook=str(nb_path), name=cell_name(nb_path.stem, params), out_dir=str(out_dir),
                config=str(config), params=params, group=nb_path.stem, timeout=timeout,
                start_timeout=start_timeout, hide_code=hide_code)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    return NotebookRun.from_result(run_with_retries(cell, retries))


def run_all(config: str | os.PathLike | Mapping | None = "default",
            notebooks: Sequence[str] | None = None, out_dir: str | os.PathLike | None = None,
            nb_dir: str | os.PathLike | None = None, hide_code: bool | None = None,
            progress: bool = True, scheduler: str | None = None, force: bool = False,
            retries: int = 1) -> ReportSummary:
    """Run every notebook (or the ``notebooks`` named) and write the report folder.

    ``config`` is a config name or YAML path (passed to each notebook as its ``config``
    parameter); a dict is written to ``<out_dir>/config.yaml`` first so notebooks can
    read it.  ``scheduler``: ``"serial"`` (one after the other), ``"local"`` / ``"local:N"``
    (side by side, longest first) or a dask address (see :mod:`lrpkit.batch.schedule`);
    ``None``: the config's ``reports.scheduler``.  ``force=False`` skips notebooks that already
    finished for the same notebook and config.  Returns a :class:`ReportSummary`; check
    ``.ok``.  SIGINT / SIGTERM raise :class:`lrpkit.batch.RunInterrupted` after cleaning up.

    A bad ``scheduler`` raises ``ValueError`` before anything is created; the report folder is
    locked for the run (a second run there raises :class:`lrpkit.runlock.RunLocked` at once);
    the cells' and kernels' output goes to ``<out>/lrpkit.log`` (the summary names it); the
    index is rewritten on every way out (:func:`lrpkit.batch.schedule.on_every_exit`).
    """
    cfg = load_config(config)
    rcfg = cfg.get("reports", {}) if isinstance(cfg, Mapping) else {}
    if scheduler is None:
        scheduler = rcfg.get("scheduler")
    schedule.check_scheduler(scheduler)      # before anything is created
    out = Path(out_dir) if out_dir is not None else resolve_path(cfg, "reports")
    names = notebooks if notebooks is not None else rcfg.get("notebooks")
    nbs = discover_notebooks(nb_dir, names)
    with schedule.signals_raise(), folder_lock(out, "lrpkit report"):
        out.mkdir(parents=True, exist_ok=True)
        with schedule.run_log(out / schedule.LOG_NAME) as log_path:
            return _run_locked(config, cfg, rcfg, out, nbs, hide_code, progress, scheduler, force, retries,
                               log_path)


def _run_locked(config: Any, cfg: Any, rcfg: Mapping, out: Path, nbs: Sequence[Path], hide_code: bool | None,
                progress: bool, scheduler: str | None, force: bool, retries: int, log_path: Path) -> ReportSummary:
    import yaml

    if isinstance(config, Mapping):
        cfg_path = out / "config.yaml"
        with atomic_path(cfg_path) as tmp:
            tmp.write_text(yaml.safe_dump({k: v for k, v in dict(config).items() if not str(k).startswith("_")}))
    else:
        cfg_path = Path(cfg["_source"]).resolve()
    hide = rcfg.get("hide_code", True) if hide_code is None else hide_code
    cells = [notebook_cell(nb, out, str(cfg_path), hide_code=hide, timeout=rcfg.get("timeout"),
                           start_timeout=float(rcfg.get("start_timeout", 120) or 120)) for nb in nbs]

    def index() -> None:
        write_index(out, config_source=cfg.get("_source", ""), cells=cells, config=str(cfg_path), log=log_path)

    with schedule.on_every_exit(index):
        results = schedule.run_cells(cells, scheduler=scheduler, force=force, retries=retries,
                                     progress=progress, on_change=index)
    return ReportSummary(out, out / "index.html", [NotebookRun.from_result(r) for r in results], log_path)
