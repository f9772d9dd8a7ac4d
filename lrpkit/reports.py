"""Batch runner: every notebook in ``notebooks/`` -> executed notebook, HTML, netCDF, index.

``run_all(config)`` executes each notebook with papermill (kernel ``python3``, the
parameters ``config`` and ``results_path`` injected into the cell tagged ``parameters``),
then writes into the report folder, per notebook ``<name>``:

* ``<name>.ipynb`` - the executed notebook (also when it failed: it shows the error),
* ``<name>.html`` - rendered with nbconvert, code hidden by default,
* ``<name>.nc``   - the notebook's xarray results (the notebook writes them to
  ``results_path`` with :func:`lrpkit.results.save_dataset`),

and ``index.html`` linking all of them with status, duration and, for failures, the
failing cell and error.  A failing notebook does not stop the others; the summary lists
failures and the CLI exits non-zero.  All files are written atomically.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import html
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from .config import load_config, project_root, resolve_path
from .results import atomic_path

__all__ = ["NotebookRun", "ReportSummary", "discover_notebooks", "run_notebook", "run_all",
           "export_html", "write_index"]


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


@dataclass
class ReportSummary:
    out_dir: Path
    index: Path
    runs: list[NotebookRun] = field(default_factory=list)

    @property
    def failures(self) -> list[NotebookRun]:
        return [r for r in self.runs if not r.ok]

    @property
    def ok(self) -> bool:
        return not self.failures

    def __str__(self) -> str:
        lines = [f"{len(self.runs)} notebook(s), {len(self.failures)} failed -> {self.index}"]
        for r in self.runs:
            status = "ok" if r.ok else f"FAILED in cell [{r.failed_cell}]: {r.error}"
            lines.append(f"  {r.name:32s} {r.seconds:7.1f} s  {status}")
        return "\n".join(lines)


def discover_notebooks(nb_dir: str | os.PathLike | None = None,
                       names: Sequence[str] | None = None) -> list[Path]:
    """Notebooks in ``nb_dir`` (default ``<project>/notebooks``) in name order.

    ``names`` selects by stem (``"00_data_and_models"``) or by prefix (``"00"``).
    """
    nb_dir = Path(nb_dir) if nb_dir is not None else project_root() / "notebooks"
    if not nb_dir.is_dir():
        raise FileNotFoundError(f"notebook folder not found: {nb_dir}")
    found = sorted(p for p in nb_dir.glob("*.ipynb") if not p.name.startswith("."))
    if names is None:
        return found
    chosen = []
    for n in names:
        hits = [p for p in found if p.stem == n or p.stem.startswith(f"{n}_") or p.name == n]
        if not hits:
            raise ValueError(f"no notebook named {n!r} in {nb_dir}; have "
                             f"{', '.join(p.stem for p in found) or '(none)'}")
        chosen.extend(h for h in hits if h not in chosen)
    return chosen


@contextlib.contextmanager
def _kernel_path() -> Iterator[None]:
    """Make the ``python3`` kernel start this interpreter (its bin folder first on PATH)."""
    old = os.environ.get("PATH", "")
    os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + old
    try:
        yield
    finally:
        os.environ["PATH"] = old


def export_html(ipynb: str | os.PathLike, html_path: str | os.PathLike, hide_code: bool = True) -> Path:
    """Render an executed notebook to HTML (code cells hidden when ``hide_code``)."""
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.read(str(ipynb), as_version=4)
    exporter = HTMLExporter(exclude_input=hide_code, exclude_input_prompt=hide_code,
                            exclude_output_prompt=hide_code)
    body, _ = exporter.from_notebook_node(nb)
    html_path = Path(html_path)
    with atomic_path(html_path) as tmp:
        tmp.write_text(body, encoding="utf-8")
    return html_path


def run_notebook(nb_path: str | os.PathLike, out_dir: str | os.PathLike, config: str | os.PathLike,
                 parameters: Mapping[str, Any] | None = None, hide_code: bool = True,
                 timeout: float | None = None, kernel_name: str = "python3") -> NotebookRun:
    """Execute one notebook with papermill and export it; never raises for notebook errors."""
    import papermill as pm

    nb_path = Path(nb_path)
    if not nb_path.is_file():
        raise FileNotFoundError(f"notebook not found: {nb_path}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = nb_path.stem
    ipynb, html_path, nc = out_dir / f"{name}.ipynb", out_dir / f"{name}.html", out_dir / f"{name}.nc"
    params = {"config": str(config), "results_path": str(nc), **(parameters or {})}
    nc.unlink(missing_ok=True)  # a results file left by an earlier run must not pass as new
    t0 = time.perf_counter()
    ok, cell, err = True, None, None
    with atomic_path(ipynb) as tmp, _kernel_path():
        try:
            pm.execute_notebook(str(nb_path), str(tmp), parameters=params, kernel_name=kernel_name,
                                cwd=str(project_root()), progress_bar=False, log_output=False,
                                execution_timeout=timeout)
        except pm.PapermillExecutionError as exc:
            ok, cell, err = False, exc.exec_count, f"{exc.ename}: {exc.evalue}"
        except Exception as exc:  # kernel died, timeout, bad notebook: record, keep going
            ok, err = False, f"{type(exc).__name__}: {exc}"
        if not tmp.exists() or tmp.stat().st_size == 0:
            import shutil

            shutil.copyfile(nb_path, tmp)
    seconds = time.perf_counter() - t0
    try:
        export_html(ipynb, html_path, hide_code=hide_code)
    except Exception as exc:  # pragma: no cover - nbconvert failure is reported, not raised
        ok, err = False, err or f"HTML export failed: {type(exc).__name__}: {exc}"
        html_path = None
    if ok and not nc.exists():
        ok, err = False, f"notebook wrote no results file ({nc.name}); save a Dataset to results_path"
    return NotebookRun(name, ok, seconds, ipynb, html_path, nc if nc.exists() else None, cell, err)


def write_index(summary_runs: Sequence[NotebookRun], out_dir: str | os.PathLike,
                config_source: str = "", title: str = "lrpkit reports") -> Path:
    """Write ``index.html`` linking every report, with status and failures."""
    from . import __version__

    out_dir = Path(out_dir)
    rows = []
    for r in summary_runs:
        def link(p: Path | None, label: str) -> str:
            return f'<a href="{html.escape(p.name)}">{label}</a>' if p is not None and p.exists() else ""

        status = ('<span class="ok">ok</span>' if r.ok else
                  f'<span class="fail">failed</span>'
                  f'{f" in cell [{r.failed_cell}]" if r.failed_cell is not None else ""}: '
                  f'<code>{html.escape(r.error or "")}</code>')
        rows.append(f"<tr><td>{html.escape(r.name)}</td><td>{status}</td><td>{r.seconds:.1f} s</td>"
                    f"<td>{link(r.html, 'report')}</td><td>{link(r.ipynb, 'notebook')}</td>"
                    f"<td>{link(r.results, 'results (netCDF)')}</td></tr>")
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    n_fail = sum(not r.ok for r in summary_runs)
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:70em}}
table{{border-collapse:collapse}}td,th{{padding:.3em .8em;border-bottom:1px solid #ddd;text-align:left}}
.ok{{color:#1a7f37;font-weight:600}}.fail{{color:#cf222e;font-weight:600}}code{{font-size:.9em}}</style>
</head><body>
<h1>{html.escape(title)}</h1>
<p>{len(summary_runs)} notebook(s), {n_fail} failed. lrpkit {__version__}, config
<code>{html.escape(str(config_source))}</code>, generated {now}.</p>
<table><tr><th>notebook</th><th>status</th><th>time</th><th colspan="3">files</th></tr>
{chr(10).join(rows)}
</table></body></html>
"""
    index = out_dir / "index.html"
    with atomic_path(index) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return index


def run_all(config: str | os.PathLike | Mapping | None = "default",
            notebooks: Sequence[str] | None = None, out_dir: str | os.PathLike | None = None,
            nb_dir: str | os.PathLike | None = None, hide_code: bool | None = None,
            progress: bool = True) -> ReportSummary:
    """Run every notebook (or the ``notebooks`` named) and write the report folder.

    ``config`` is a config name or YAML path (passed to each notebook as its ``config``
    parameter); a dict is written to ``<out_dir>/config.yaml`` first so notebooks can
    read it.  Returns a :class:`ReportSummary`; check ``.ok``.
    """
    import yaml
    from tqdm.auto import tqdm

    cfg = load_config(config)
    out = Path(out_dir) if out_dir is not None else resolve_path(cfg, "reports")
    out.mkdir(parents=True, exist_ok=True)
    if isinstance(config, Mapping):
        cfg_path = out / "config.yaml"
        with atomic_path(cfg_path) as tmp:
            tmp.write_text(yaml.safe_dump({k: v for k, v in cfg.items() if not k.startswith("_")}))
    else:
        cfg_path = Path(cfg["_source"]).resolve()
    rcfg = cfg.get("reports", {})
    names = notebooks if notebooks is not None else rcfg.get("notebooks")
    hide = rcfg.get("hide_code", True) if hide_code is None else hide_code
    nbs = discover_notebooks(nb_dir, names)
    runs = []
    bar = tqdm(nbs, desc="notebooks", disable=not progress)
    for nb in bar:
        bar.set_postfix_str(nb.stem)
        runs.append(run_notebook(nb, out, cfg_path, hide_code=hide, timeout=rcfg.get("timeout")))
    index = write_index(runs, out, config_source=cfg.get("_source", ""))
    return ReportSummary(out, index, runs)
