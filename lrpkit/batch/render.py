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

__all__ = ["offline_html", "export_html", "thumbnail", "write_index"]


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
.failed,.interrupted,.running{color:#cf222e;font-weight:600}.running{color:#9a6700}
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


def write_index(out_dir: str | os.PathLike, runs: Sequence[Any] | None = None,
                config_source: str = "", title: str = "lrpkit reports") -> Path:
    """Write ``<out_dir>/index.html`` from the status files of every notebook and grid cell below it.

    One table per folder (the notebooks, then each grid): status (for a failure: what
    happened, the failing cell and where the partial output is), duration, parameters, a
    thumbnail of the key figure (embedded) and links to the HTML report, the notebook and the
    result file; combined grid stores are linked under their grid.  What was analysed (the
    model(s): name, source, file; the data set: name, source, root, split, number of images,
    from each cell's ``<name>.analysed.json``) heads a table when all its runs share it, else
    it is a column.  ``runs`` is accepted for compatibility and ignored (the status files are
    the truth).
    """
    from .. import __version__

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
        what = [read_analysed(folder, st.name) for folder, st in items]
        shared = what[0] is not None and all(w == what[0] for w in what)
        for (folder, st), desc in zip(items, what):
            n_all += 1
            ok = st.state == "ok"
            n_fail += not ok

            def link(name: str | None, label: str, folder: Path = folder) -> str:
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
                for ext in (".nc", ".zarr"):
                    store = grid_dir / f"{stem}{ext}"
                    if store.exists():
                        rel = store.relative_to(out_dir).as_posix()
                        extra = f'<p>combined store: <a href="{html.escape(rel)}">{html.escape(rel)}</a></p>'
        if shared:
            extra += f'<div class="analysed">{analysed_html(what[0])}</div>'
        sections.append(f"<h2>{html.escape(head)}</h2>{extra}\n<table><tr><th>name</th><th>status</th>"
                        f"<th>time</th><th>parameters</th><th>key figure</th><th>files</th>"
                        + ("" if shared else "<th>analysed</th>") + "</tr>\n"
                        + "\n".join(rows) + "\n</table>")
    now = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    config = f", config <code>{html.escape(str(config_source))}</code>" if config_source else ""
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
