"""The findings collector (lrpkit.evaluate.findings) and the report renderer's "findings first"."""
from __future__ import annotations

import math

import nbformat
import numpy as np
import pytest
import xarray as xr

from lrpkit.batch.render import findings_first
from lrpkit.evaluate import Findings, findings_from_dataset, paired_interval, wilson_interval
from lrpkit.results import open_dataset, save_dataset


def _findings():
    rng = np.random.default_rng(0)
    a = rng.normal(1.0, 0.3, 60)
    b = rng.normal(0.0, 0.3, 60)
    F = Findings("04_test")
    F.add("A above B", paired_interval(a, b, seed=0), direction=">", paper="A > B")
    F.add("A below B", paired_interval(a, b, seed=0), direction="<", paper="A < B",
          reason="the scenes are easier")
    F.add("B above A by noise", paired_interval(b[:5], b[5:10], seed=0), direction=">")
    F.add("rate below 10 %", wilson_interval(40, 100), direction="<", reference=0.1,
          paper=0.083, percent=True)
    F.not_tested("context on boxes", "the data set has no boxes")
    return F


def test_verdicts_follow_intervals_and_survive_netcdf(tmp_path):
    F = _findings()
    verdicts = [r.verdict for r in F.rows]
    assert verdicts == ["reproduced", "contradicted", "not resolved", "contradicted", "not tested"]
    assert F.rows[1].reason == "the scenes are easier"
    assert "covers 0" in F.rows[2].reason
    md = F.markdown()
    assert md.startswith("## Findings") and "5 claims: 1 reproduced, 1 not resolved, 2 contradicted, " \
        "1 not tested" in md
    assert "40.0 %" in md and "| A above B |" in md
    ds = F.attach(xr.Dataset(attrs={"model": "m"}))
    path = save_dataset(ds, tmp_path / "r.nc")
    back = findings_from_dataset(open_dataset(path))
    assert back.report == "04_test"
    assert [r.verdict for r in back.rows] == verdicts
    assert back.rows[3].percent and math.isclose(back.rows[3].value, 0.4)
    assert back.markdown() == md
    with pytest.raises(ValueError, match="already hold findings"):
        F.attach(ds)


def test_bad_findings_are_refused():
    F = Findings("x")
    with pytest.raises(TypeError, match="Interval"):
        F.add("claim", (0.1, 0.2), direction=">")
    with pytest.raises(ValueError, match="say why"):
        F.not_tested("claim", " ")
    with pytest.raises(ValueError, match="direction"):
        F.add("claim", wilson_interval(1, 2), direction="up")


def test_findings_cell_moves_after_the_title():
    cells = [nbformat.v4.new_markdown_cell("# Title"), nbformat.v4.new_code_cell("x = 1"),
             nbformat.v4.new_markdown_cell("## Section"), nbformat.v4.new_code_cell("F.show()"),
             nbformat.v4.new_code_cell("y = 2")]
    cells[3].metadata["tags"] = ["findings"]
    out = findings_first(cells)
    assert [c.source for c in out] == ["# Title", "F.show()", "x = 1", "## Section", "y = 2"]
    assert [c.source for c in findings_first(cells[:3])] == ["# Title", "x = 1", "## Section"]


def test_exported_report_opens_with_the_findings(tmp_path):
    from lrpkit.batch.render import export_html

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# Report title"),
                nbformat.v4.new_markdown_cell("## First section"),
                nbformat.v4.new_code_cell("F.show()")]
    nb.cells[2].metadata["tags"] = ["findings"]
    nb.cells[2].outputs = [nbformat.v4.new_output(
        "display_data", data={"text/markdown": "## Findings\n\n| claim |\n|---|\n| X beats Y |"})]
    src = tmp_path / "r.ipynb"
    nbformat.write(nb, str(src))
    html = export_html(src, tmp_path / "r.html").read_text()
    i_title, i_find, i_sec = (html.index(s) for s in ("Report title", "X beats Y", "First section"))
    assert i_title < i_find < i_sec


def test_index_tally_counts_the_stored_verdicts(tmp_path):
    from lrpkit.batch.render import findings_tally

    path = save_dataset(_findings().attach(xr.Dataset(attrs={"model": "m"})), tmp_path / "r.nc")
    assert findings_tally(path) == "1 reproduced, 1 not resolved, 2 contradicted, 1 not tested"
    assert findings_tally(save_dataset(xr.Dataset({"a": ("x", [1.0])}), tmp_path / "none.nc")) == ""
    (tmp_path / "bad.nc").write_text("not netcdf")
    assert findings_tally(tmp_path / "bad.nc") == ""
