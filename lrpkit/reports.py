"""Batch runner: every notebook in ``notebooks/`` -> executed notebook, HTML, netCDF, index.

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

and ``index.html`` listing every notebook and every grid cell below the folder (see
:mod:`lrpkit.grid`) with status, duration, parameters, thumbnail and links; for a failure
it names the notebook, what happened (cell error, kernel death, timeout ...), the failing
cell and where the partial output is.  A failing notebook is run once more, then reported;
it does not stop the others; the CLI exits non-zero.  Each notebook runs in a child process
(:func:`lrpkit.grid.execute_cell`): SIGINT / SIGTERM stop the run promptly and leave no
half-written or stale result, and a re-run starts again where it stopped (``force=False``
skips notebooks that finished for the same notebook and config).
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import datetime as _dt
import html
import logging
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

log = logging.getLogger("lrpkit.reports")


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
    def from_result(cls, r: "Any") -> "NotebookRun":
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


_REMOTE_SCRIPT = re.compile(r"<script\b[^>]*\bsrc=[\"']https?://[^>]*>\s*</script>", re.I)
_REMOTE_MODULE = re.compile(r"<script\b[^>]*>(?:(?!</script>).)*?(?:\bfrom\s+|\bimport\s*\(\s*|=\s*)"
                            r"[\"']https?://(?:(?!</script>).)*</script>", re.I | re.S)
_MATHJAX_CFG = re.compile(r"<!-- Load mathjax -->.*?<!-- End of mathjax configuration -->", re.S)
_REMOTE_LINK = re.compile(r"<link\b[^>]*\bhref=[\"']https?://[^>]*>", re.I)


def offline_html(body: str) -> str:
    """Drop what a page would fetch from a network (require.js, MathJax, mermaid from CDNs).

    The reports need none of them: figures are embedded PNGs and no widget state is saved
    (the explorer degrades to static figures in batch runs).  TeX in markdown stays as text.
    """
    body = _MATHJAX_CFG.sub("", body)
    body = _REMOTE_SCRIPT.sub("", body)
    body = _REMOTE_MODULE.sub("", body)
    return _REMOTE_LINK.sub("", body)


def export_html(ipynb: str | os.PathLike, html_path: str | os.PathLike, hide_code: bool = True) -> Path:
    """Render an executed notebook to a self-contained HTML page (code hidden when ``hide_code``).

    Figures are embedded, widget state is dropped (no dead widget placeholders) and nothing is
    loaded from a network, so the page opens offline.
    """
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.read(str(ipynb), as_version=4)
    nb.metadata.pop("widgets", None)
    for c in nb.cells:  # a widget view without saved state renders as an empty box: drop it
        for o in c.get("outputs", []):
            data = o.get("data") if isinstance(o, dict) else None
            if data and "application/vnd.jupyter.widget-view+json" in data and len(data) > 1:
                data.pop("application/vnd.jupyter.widget-view+json")
        c["outputs"] = [o for o in c.get("outputs", [])
                        if not (isinstance(o, dict) and set(o.get("data", {}) or {}) ==
                                {"application/vnd.jupyter.widget-view+json"})] if c.cell_type == "code" \
            else c.get("outputs", [])
        if c.cell_type != "code":
            c.pop("outputs", None)
    exporter = HTMLExporter(exclude_input=hide_code, exclude_input_prompt=hide_code,
                            exclude_output_prompt=hide_code, embed_images=True)
    body, _ = exporter.from_notebook_node(nb)
    html_path = Path(html_path)
    with atomic_path(html_path) as tmp:
        tmp.write_text(offline_html(body), encoding="utf-8")
    return html_path


def run_notebook(nb_path: str | os.PathLike, out_dir: str | os.PathLike, config: str | os.PathLike,
                 parameters: Mapping[str, Any] | None = None, hide_code: bool = True,
                 timeout: float | None = None, kernel_name: str = "python3",
                 start_timeout: float = 120.0, retries: int = 0) -> NotebookRun:
    """Execute one notebook (in a child process) and export it; never raises for notebook errors.

    ``parameters`` are papermill parameters (names of the notebook's parameters cell) or
    ``"section.key"`` config overrides; with parameters the outputs are named after them.
    """
    from .grid import Cell, cell_name, run_cell_process

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
    res = None
    for attempt in range(1, retries + 2):
        res = run_cell_process(cell, attempt)
        if res.ok or res.state == "interrupted":
            break
    return NotebookRun.from_result(res)


# --------------------------------------------------------------------------------------- index

_CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:90em;color:#1f2328}
table{border-collapse:collapse;width:100%}td,th{padding:.35em .7em;border-bottom:1px solid #ddd;
text-align:left;vertical-align:top}th{background:#f6f8fa}.ok,.skipped{color:#1a7f37;font-weight:600}
.failed,.interrupted,.running{color:#cf222e;font-weight:600}.running{color:#9a6700}
code{font-size:.85em;white-space:pre-wrap}img.thumb{max-width:180px;max-height:140px;border:1px solid #ddd}
.params{font-family:ui-monospace,monospace;font-size:.85em}h2{margin-top:1.6em}.detail{font-size:.9em}"""


def _status_files(out_dir: Path) -> list[Path]:
    files = []
    for p in sorted(out_dir.rglob("*.status.json")):
        rel = p.relative_to(out_dir)
        if any(part.startswith(".") for part in rel.parts):
            continue
        files.append(p)
    return files


def _thumb_tag(folder: Path, name: str | None, alt: str) -> str:
    if not name or not (folder / name).is_file():
        return ""
    data = base64.b64encode((folder / name).read_bytes()).decode()
    return f'<img class="thumb" alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def write_index(out_dir: str | os.PathLike, runs: Sequence[NotebookRun] | None = None,
                config_source: str = "", title: str = "lrpkit reports") -> Path:
    """Write ``<out_dir>/index.html`` from the status files of every notebook and grid cell below it.

    One table per folder (the notebooks, then each grid): status (for a failure: what
    happened, the failing cell and where the partial output is), duration, parameters, a
    thumbnail of the key figure (embedded) and links to the HTML report, the notebook and the
    result file; combined grid stores are linked under their grid.  ``runs`` is accepted for
    compatibility and ignored (the status files are the truth).
    """
    from . import __version__
    from .grid import read_status

    if isinstance(out_dir, (list, tuple)):  # the old signature: write_index(runs, out_dir)
        out_dir, runs = runs, out_dir  # type: ignore[assignment]
    out_dir = Path(out_dir)
    groups: dict[str, list[tuple[Path, Any]]] = {}
    for f in _status_files(out_dir):
        st = read_status(f)
        if st is None:
            continue
        groups.setdefault(str(f.parent.relative_to(out_dir)), []).append((f.parent, st))
    sections = []
    n_all = n_fail = 0
    for folder_rel, items in sorted(groups.items(), key=lambda kv: (kv[0] != ".", kv[0])):
        rows = []
        for folder, st in items:
            n_all += 1
            ok = st.state == "ok"
            n_fail += not ok

            def link(name: str | None, label: str) -> str:
                if not name:
                    return ""
                rel = (folder / name).relative_to(out_dir).as_posix()
                return f'<a href="{html.escape(rel)}">{label}</a>' if (folder / name).exists() else ""

            if ok:
                status = '<span class="ok">ok</span>'
            else:
                status = (f'<span class="{html.escape(st.state)}">{html.escape(st.state)}</span>'
                          f'<div class="detail"><code>{html.escape(st.describe())}</code></div>')
            params = "<br>".join(f"{html.escape(str(k))} = {html.escape(json.dumps(v, default=str))}"
                                 for k, v in st.params.items())
            files = " ".join(x for x in (link(st.html, "report"), link(st.ipynb, "notebook"),
                                         link(st.results, "results"),
                                         link(f"{st.name}.config.yaml", "config")) if x)
            rows.append(f'<tr id="{html.escape(st.name)}"><td>{html.escape(st.name)}</td><td>{status}</td>'
                        f"<td>{st.seconds:.1f} s</td><td class=\"params\">{params}</td>"
                        f"<td>{_thumb_tag(folder, st.thumbnail, st.name)}</td><td>{files}</td></tr>")
        head = "notebooks" if folder_rel == "." else f"grid cells: {folder_rel}"
        extra = ""
        if folder_rel != ".":
            grid_dir = (out_dir / folder_rel).parent.parent if Path(folder_rel).parent.name == "cells" \
                else None
            if grid_dir is not None:
                stem = Path(folder_rel).name
                for ext in (".nc", ".zarr"):
                    store = grid_dir / f"{stem}{ext}"
                    if store.exists():
                        rel = store.relative_to(out_dir).as_posix()
                        extra = f'<p>combined store: <a href="{html.escape(rel)}">{html.escape(rel)}</a></p>'
        sections.append(f"<h2>{html.escape(head)}</h2>{extra}\n<table><tr><th>name</th><th>status</th>"
                        f"<th>time</th><th>parameters</th><th>key figure</th><th>files</th></tr>\n"
                        + "\n".join(rows) + "\n</table>")
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{_CSS}</style></head><body>
<h1>{html.escape(title)}</h1>
<p>{n_all} run(s), {n_fail} not ok. lrpkit {__version__}{f", config <code>{html.escape(str(config_source))}</code>" if config_source else ""}, generated {now}.</p>
{chr(10).join(sections) or "<p>No runs yet.</p>"}
</body></html>
"""
    index = out_dir / "index.html"
    with atomic_path(index) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return index


def run_all(config: str | os.PathLike | Mapping | None = "default",
            notebooks: Sequence[str] | None = None, out_dir: str | os.PathLike | None = None,
            nb_dir: str | os.PathLike | None = None, hide_code: bool | None = None,
            progress: bool = True, scheduler: str | None = None, force: bool = False,
            retries: int = 1) -> ReportSummary:
    """Run every notebook (or the ``notebooks`` named) and write the report folder.

    ``config`` is a config name or YAML path (passed to each notebook as its ``config``
    parameter); a dict is written to ``<out_dir>/config.yaml`` first so notebooks can
    read it.  ``scheduler``: ``"serial"`` (one after the other), ``"local"`` / ``"local:N"``
    (side by side, longest first) or a dask address (see :mod:`lrpkit.grid`); ``None``: the
    config's ``reports.scheduler``.  ``force=False`` skips notebooks that already finished for
    the same notebook and config.  Returns a :class:`ReportSummary`; check ``.ok``.  SIGINT /
    SIGTERM raise :class:`lrpkit.grid.RunInterrupted` after cleaning up.
    """
    import yaml

    from .grid import notebook_cell, run_cells

    cfg = load_config(config)
    out = Path(out_dir) if out_dir is not None else resolve_path(cfg, "reports")
    out.mkdir(parents=True, exist_ok=True)
    if isinstance(config, Mapping):
        cfg_path = out / "config.yaml"
        with atomic_path(cfg_path) as tmp:
            tmp.write_text(yaml.safe_dump({k: v for k, v in dict(config).items() if not str(k).startswith("_")}))
    else:
        cfg_path = Path(cfg["_source"]).resolve()
    rcfg = cfg.get("reports", {}) if isinstance(cfg, Mapping) else {}
    names = notebooks if notebooks is not None else rcfg.get("notebooks")
    hide = rcfg.get("hide_code", True) if hide_code is None else hide_code
    nbs = discover_notebooks(nb_dir, names)
    cells = [notebook_cell(nb, out, str(cfg_path), hide_code=hide, timeout=rcfg.get("timeout"),
                           start_timeout=float(rcfg.get("start_timeout", 120) or 120)) for nb in nbs]

    def index() -> None:
        write_index(out, config_source=cfg.get("_source", ""))

    if scheduler is None:
        scheduler = rcfg.get("scheduler")
    results = run_cells(cells, scheduler=scheduler, force=force, retries=retries, progress=progress,
                        on_change=index)
    index()
    return ReportSummary(out, out / "index.html", [NotebookRun.from_result(r) for r in results])
