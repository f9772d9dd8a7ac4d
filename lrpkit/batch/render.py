"""What a run leaves to read: offline HTML pages, key-figure thumbnails and the index page.

* :func:`export_html` renders an executed notebook with nbconvert: code hidden by default,
  figures embedded, widget state dropped and nothing loaded from a network (it opens offline);
* :func:`thumbnail` shrinks the notebook's key figure (a cell tagged ``key-figure``, else the
  last figure) to a PNG;
* :func:`write_index` lists every notebook and every grid cell below a folder, from their
  status files: status (for a failure what happened, the failing cell and where the partial
  output is), duration, parameters, thumbnail and links, and the model(s) and data set each
  analysed (:mod:`lrpkit.batch.analysed`).
"""
from __future__ import annotations

import base64
import datetime as _dt
import html
import json
import os
import re
from pathlib import Path
from typing import Any
from collections.abc import Mapping, Sequence

from ..results import atomic_path
from .analysed import analysed_html, read_analysed
from .cells import read_status
from .combine import store_cells

__all__ = ["offline_html", "findings_first", "findings_tally", "export_html", "thumbnail", "write_index"]


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


def findings_first(cells: list) -> list:
    """``cells`` with those tagged ``findings`` (:class:`lrpkit.evaluate.findings.Findings`, shown
    where the notebook has computed them) moved right after the first Markdown cell (the title),
    so a rendered report opens with what it found."""
    is_findings = ["findings" in c.get("metadata", {}).get("tags", []) for c in cells]
    if not any(is_findings):
        return list(cells)
    tagged = [c for c, f in zip(cells, is_findings) if f]
    rest = [c for c, f in zip(cells, is_findings) if not f]
    first_md = next((i for i, c in enumerate(rest) if c.cell_type == "markdown"), -1)
    return rest[:first_md + 1] + tagged + rest[first_md + 1:]


_WIDGET = "application/vnd.jupyter.widget-view+json"
#: a tqdm progress line as text: "  0%|          | 0/10 [00:00<?, ?it/s]", "cells: 100%|####| 3/3 ..."
_TQDM_LINE = re.compile(r"^.*\d+%\|.*\|\s*[\d.?]+[kMG]?/[\d.?]+[kMG]?.*$")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.+?)\s*#*\s*$", re.M)
_TITLE_CALL = re.compile(r"""\b(?:suptitle|set_title|title)\(\s*[rfb]*(["'])(.+?)\1""")

# the lab template with an ``alt`` on every figure (nbconvert warns "Alternative text is missing"
# and writes a placeholder otherwise): the text is the output's ``lrpkit_alt`` metadata
_ALT_TEMPLATE = """{%- extends 'lab/index.html.j2' -%}
{% block data_png scoped %}
<div class="jp-RenderedImage jp-OutputArea-output {{ extra_class }}">
<img src="data:image/png;base64,{{ output.data['image/png'] | escape_html }}"
 alt="{{ output.metadata.get('lrpkit_alt', 'figure') | escape_html }}"
{%- set width=output | get_metadata('width', 'image/png') -%}
{%- if width is not none %} width={{ width | escape_html }}{%- endif %}
{%- set height=output | get_metadata('height', 'image/png') -%}
{%- if height is not none %} height={{ height | escape_html }}{%- endif %}
>
</div>
{%- endblock data_png %}
{% block data_jpg scoped %}
<div class="jp-RenderedImage jp-OutputArea-output {{ extra_class }}">
<img src="data:image/jpeg;base64,{{ output.data['image/jpeg'] | escape_html }}"
 alt="{{ output.metadata.get('lrpkit_alt', 'figure') | escape_html }}"
>
</div>
{%- endblock data_jpg %}
"""


def _is_progress_stub(o: Mapping) -> bool:
    """A tqdm bar's trace in a saved notebook: a widget view (its state is not saved, so it
    renders as an empty box or as its text fallback "0%| | 0/..."), or a stream / text output
    whose lines are all progress lines."""
    data = o.get("data") or {}
    if _WIDGET in data:
        return True
    text = o.get("text") if o.get("output_type") == "stream" else data.get("text/plain")
    if text is None or set(data) - {"text/plain"}:
        return False
    lines = [ln for ln in re.split(r"[\r\n]+", "".join(text)) if ln.strip()]
    return bool(lines) and all(_TQDM_LINE.match(ln) for ln in lines)


def _strip_progress(o: Mapping) -> None:
    """Remove tqdm progress lines from a stream output that also holds other text."""
    if o.get("output_type") == "stream":
        text = "".join(o.get("text", ""))
        if "%|" in text:
            kept = [ln for ln in re.split(r"(?<=\n)|\r", text) if not _TQDM_LINE.match(ln.rstrip("\n"))]
            o["text"] = "".join(kept)


def _alt_texts(nb: Any) -> None:
    """Give every figure an alt text (output metadata ``lrpkit_alt``): the title its cell sets
    (``suptitle`` / ``set_title`` / ``title`` with a plain string), else the nearest markdown
    heading above it, else the notebook's first heading; numbered when a cell draws several."""
    heading = doc = ""
    for c in nb.cells:
        if c.cell_type == "markdown":
            found = _HEADING.findall(c.source)
            if found:
                heading = found[-1].strip()
                doc = doc or found[0].strip()
            continue
        if c.cell_type != "code":
            continue
        titles = [m.group(2) for m in _TITLE_CALL.finditer(c.source) if "{" not in m.group(2)]
        figs = [o for o in c.get("outputs", []) if {"image/png", "image/jpeg"} & set(o.get("data") or {})]
        for k, o in enumerate(figs):
            text = titles[0] if len(titles) == 1 else heading or doc or "figure"
            if len(figs) > 1:
                text = f"{text} ({k + 1} of {len(figs)})"
            o.setdefault("metadata", {})["lrpkit_alt"] = f"Figure: {text}"


def export_html(ipynb: str | os.PathLike, html_path: str | os.PathLike, hide_code: bool = True) -> Path:
    """Render an executed notebook to a self-contained HTML page (code hidden when ``hide_code``).

    Figures are embedded, each with an alt text (:func:`_alt_texts`); widget views (their state
    is not saved: empty boxes) and tqdm progress bars' traces ("0%| | 0/10") are dropped; nothing
    is loaded from a network, so the page opens offline.
    """
    import nbformat
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter

    nb = nbformat.read(str(ipynb), as_version=4)
    nb.metadata.pop("widgets", None)
    nb.cells = findings_first(nb.cells)   # the report opens with what it found
    for c in nb.cells:
        if c.cell_type != "code":
            c.pop("outputs", None)
            continue
        outs = [o for o in c.get("outputs", []) if isinstance(o, dict)]
        for o in outs:   # a widget with a real fallback (a figure): keep the fallback
            data = o.get("data") or {}
            if _WIDGET in data and set(data) - {_WIDGET, "text/plain"}:
                data.pop(_WIDGET)
            _strip_progress(o)
        c["outputs"] = [o for o in outs if not _is_progress_stub(o)
                        and not (o.get("output_type") == "stream" and not "".join(o.get("text", "")).strip())]
    _alt_texts(nb)
    exporter = HTMLExporter(exclude_input=hide_code, exclude_input_prompt=hide_code,
                            exclude_output_prompt=hide_code, embed_images=True,
                            extra_loaders=[DictLoader({"lrpkit_report.html.j2": _ALT_TEMPLATE})],
                            template_file="lrpkit_report.html.j2")
    body, _ = exporter.from_notebook_node(nb)
    html_path = Path(html_path)
    with atomic_path(html_path) as tmp:
        tmp.write_text(offline_html(body), encoding="utf-8")
    return html_path


def thumbnail(ipynb: Path, out: Path, width: int = 240) -> bool:
    """A small PNG of the notebook's key figure (a cell tagged ``key-figure``, else the last PNG)."""
    import io

    import nbformat
    from PIL import Image

    nb = nbformat.read(str(ipynb), as_version=4)
    pngs: list[tuple[bool, str]] = []
    for c in nb.cells:
        if c.cell_type != "code":
            continue
        key = "key-figure" in c.get("metadata", {}).get("tags", [])
        for o in c.get("outputs", []):
            data = o.get("data", {}) if isinstance(o, Mapping) else {}
            if "image/png" in data:
                pngs.append((key, data["image/png"]))
    if not pngs:
        return False
    keyed = [p for k, p in pngs if k]
    raw = base64.b64decode(keyed[0] if keyed else pngs[-1][1])
    img = Image.open(io.BytesIO(raw)).convert("RGB")
    img.thumbnail((width, width))
    with atomic_path(out) as tmp:
        img.save(tmp, format="PNG", optimize=True)
    return True


# ---------------------------------------------------------------------------------------------
# the index page

_CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:90em;color:#1f2328}
table{border-collapse:collapse;width:100%}td,th{padding:.35em .7em;border-bottom:1px solid #ddd;
text-align:left;vertical-align:top}th{background:#f6f8fa}.ok,.skipped{color:#1a7f37;font-weight:600}
.failed,.interrupted,.running,.stale,.missing,.not-run{color:#cf222e;font-weight:600}.running,.stale{color:#9a6700}
code{font-size:.85em;white-space:pre-wrap}img.thumb{max-width:180px;max-height:140px;border:1px solid #ddd}
.params{font-family:ui-monospace,monospace;font-size:.85em}h2{margin-top:1.6em}.detail{font-size:.9em}
.analysed{background:#f6f8fa;border-left:3px solid #4c72b0;padding:.5em .8em;margin:.6em 0;line-height:1.6}
.analysed .name{font-weight:600}td.analysed{font-size:.85em;margin:0}"""


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


def _live_run(folder: Path, top: Path) -> bool:
    """Whether a live run holds the lock of ``folder`` or of a folder above it up to ``top``
    (:mod:`lrpkit.runlock`): a ``running`` status without one is left by a killed run."""
    from ..runlock import lock_is_stale, lock_path, read_lock

    for f in [folder, *folder.parents]:
        holder = read_lock(lock_path(f))
        if holder and not lock_is_stale(holder):
            return True
        if f == top or f == f.parent:
            break
    return False


def _truth(folder: Path, st: Any, out_dir: Path, cells: Mapping[Path, Any], config: str | None) -> tuple[str, str]:
    """The state a status is shown with (:func:`lrpkit.batch.cells.shown_state`): the run's own
    cell when it has one, else the cell rebuilt from the status, checked against ``config`` (the
    run's, for the notebooks folder) or the config the status records."""
    from .cells import cell_of_status, shown_state

    cell = cells.get(folder / f"{st.name}.status.json")
    if cell is None:
        cell = cell_of_status(st, folder, config if folder == out_dir else None)
    state, why = shown_state(cell, st)
    if state == "running" and not _live_run(folder, out_dir):
        return "interrupted", "its run ended without finishing it (killed?); run again to resume"
    return state, why


def findings_tally(results: str | os.PathLike) -> str:
    """``"14 reproduced, 8 not resolved, 2 contradicted"``: the verdicts of the findings a report
    stored in its results (:meth:`lrpkit.evaluate.findings.Findings.attach`); ``""`` when the
    file holds none or cannot be read (the index never fails on a result file)."""
    try:
        import xarray as xr

        with xr.open_dataset(results, engine="h5netcdf") as ds:
            if "finding_verdict" not in ds:
                return ""
            verdicts = [str(v) for v in ds["finding_verdict"].values]
    except Exception:  # noqa: BLE001 - a damaged or foreign file shows no tally
        return ""
    order = ("reproduced", "not resolved", "contradicted", "not tested")
    counts = {v: verdicts.count(v) for v in order}
    return ", ".join(f"{n} {v}" for v, n in counts.items() if n)


def write_index(out_dir: str | os.PathLike, runs: Sequence[Any] | None = None,
                config_source: str = "", title: str = "lrpkit reports", cells: Sequence[Any] | None = None,
                config: str | os.PathLike | None = None, log: str | os.PathLike | None = None) -> Path:
    """Write ``<out_dir>/index.html`` from the status files of every notebook and grid cell below it.

    One table per folder (the notebooks, then each grid): status (for a failure: what
    happened, the failing cell and where the partial output is), duration, parameters, a
    thumbnail of the key figure (embedded) and links to the HTML report, the notebook and the
    result file; combined grid stores are linked under their grid.  What was analysed (the
    model(s): name, source, file; the data set: name, source, root, split, number of images,
    from each cell's ``<name>.analysed.json``) heads a table when all its runs share it, else
    it is a column.  ``runs`` is accepted for compatibility and ignored (the status files are
    the truth).

    What is on disk and current decides what is shown (:func:`lrpkit.batch.cells.shown_state`):
    a result is ``ok`` only when its fingerprint matches today's notebook, config (the run's
    ``config`` for the notebooks in ``out_dir``; ``cells``, the run's cells, take precedence) and
    lrpkit code and its files are there; else ``stale`` or ``missing``.  Only files that exist
    are linked, and a combined grid store only when the cells it holds as ok are exactly the
    ones ok now.  ``log``: the run's log file, linked in the header.
    """
    from .. import __version__

    if isinstance(out_dir, (list, tuple)):  # the old signature: write_index(runs, out_dir)
        out_dir, runs = runs, out_dir  # type: ignore[assignment]
    out_dir = Path(out_dir)
    by_status = {Path(c.status_path): c for c in (cells or ())}
    config = str(config) if config else None
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
        what = [read_analysed(folder, st.name) for folder, st in items]
        shared = what[0] is not None and all(w == what[0] for w in what)
        truths = [_truth(folder, st, out_dir, by_status, config) for folder, st in items]
        for (folder, st), desc, (state, why) in zip(items, what, truths):
            n_all += 1
            ok = state == "ok"
            n_fail += not ok

            def link(name: str | None, label: str, folder: Path = folder) -> str:
                if not name:
                    return ""
                rel = (folder / name).relative_to(out_dir).as_posix()
                return f'<a href="{html.escape(rel)}">{label}</a>' if (folder / name).exists() else ""

            if ok:
                tally = findings_tally(folder / st.results) if st.results else ""
                status = '<span class="ok">ok</span>' + (
                    f'<div class="detail">findings: {html.escape(tally)}</div>' if tally else "")
            else:
                detail = f"{st.name}: {why}" if why else st.describe()
                status = (f'<span class="{html.escape(state.replace(" ", "-"))}">{html.escape(state)}</span>'
                          f'<div class="detail"><code>{html.escape(detail)}</code></div>')
            params = "<br>".join(f"{html.escape(str(k))} = {html.escape(json.dumps(v, default=str))}"
                                 for k, v in st.params.items())
            files = " ".join(x for x in (link(st.html, "report"), link(st.ipynb, "notebook"),
                                         link(st.results, "results"),
                                         link(f"{st.name}.config.yaml", "config")) if x)
            rows.append(f'<tr id="{html.escape(st.name)}"><td>{html.escape(st.name)}</td><td>{status}</td>'
                        f"<td>{st.seconds:.1f} s</td><td class=\"params\">{params}</td>"
                        f"<td>{_thumb_tag(folder, st.thumbnail, st.name)}</td><td>{files}</td>"
                        + ("" if shared else f'<td class="analysed">{analysed_html(desc) if desc else ""}</td>')
                        + "</tr>")
        head = "notebooks" if folder_rel == "." else f"grid cells: {folder_rel}"
        extra = ""
        if folder_rel != ".":
            grid_dir = (out_dir / folder_rel).parent.parent if Path(folder_rel).parent.name == "cells" \
                else None
            if grid_dir is not None:
                stem = Path(folder_rel).name
                ok_now = {st.name for (_, st), (state, _) in zip(items, truths) if state == "ok"}
                for ext in (".nc", ".zarr"):
                    store = grid_dir / f"{stem}{ext}"
                    if store.exists():
                        rel = store.relative_to(out_dir).as_posix()
                        held = store_cells(store)
                        if held is not None and {k for k, v in held.items() if v == "ok"} == ok_now:
                            extra = f'<p>combined store: <a href="{html.escape(rel)}">{html.escape(rel)}</a></p>'
                        else:
                            extra = (f'<p>combined store: <span class="stale">out of date</span> '
                                     f'({html.escape(rel)} does not hold the cells that are ok now; '
                                     f'run the grid again to rebuild it)</p>')
        if shared:
            extra += f'<div class="analysed">{analysed_html(what[0])}</div>'
        sections.append(f"<h2>{html.escape(head)}</h2>{extra}\n<table><tr><th>name</th><th>status</th>"
                        f"<th>time</th><th>parameters</th><th>key figure</th><th>files</th>"
                        + ("" if shared else "<th>analysed</th>") + "</tr>\n"
                        + "\n".join(rows) + "\n</table>")
    now = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    config = f", config <code>{html.escape(str(config_source))}</code>" if config_source else ""
    if log and Path(log).is_file():
        try:
            rel_log = Path(log).resolve().relative_to(out_dir.resolve()).as_posix()
            config += f', log <a href="{html.escape(rel_log)}">{html.escape(rel_log)}</a>'
        except ValueError:
            config += f", log <code>{html.escape(str(log))}</code>"
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{_CSS}</style></head><body>
<h1>{html.escape(title)}</h1>
<p>{n_all} run(s), {n_fail} not ok. lrpkit {__version__}{config}, generated {now}.</p>
{chr(10).join(sections) or "<p>No runs yet.</p>"}
</body></html>
"""
    index = out_dir / "index.html"
    with atomic_path(index) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return index
