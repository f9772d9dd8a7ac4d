"""lrpkit.batch.reports, the notebook runner, on tiny notebooks made here (the real notebooks run in
test_pipeline; notebook discovery is in test_batch_cells)."""
import json

import nbformat
import pytest

from lrpkit.batch import run_all
from lrpkit.results import open_dataset

PARAMS = 'config = "default"\nresults_path = None'
GOOD = """import numpy as np, xarray as xr
import lrpkit
cfg = lrpkit.load_config(config)
ds = xr.Dataset({"v": (("step",), np.arange(3.0))}, coords={"step": [0, 1, 2]},
                attrs=lrpkit.results.make_attrs(cfg))
lrpkit.results.save_dataset(ds, results_path)
print("SEED", cfg["seed"])"""


def _write_nb(path, *sources):
    nb = nbformat.v4.new_notebook()
    cells = [nbformat.v4.new_code_cell(PARAMS, metadata={"tags": ["parameters"]})]
    cells += [nbformat.v4.new_code_cell(s) for s in sources]
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {path.stem}")] + cells
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(path))


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("rep")
    nbs = root / "nbs"
    nbs.mkdir()
    _write_nb(nbs / "00_good.ipynb", GOOD)
    _write_nb(nbs / "01_bad.ipynb", "x = 1", "w = 2\nraise ValueError('planted failure')", "y = 2")
    _write_nb(nbs / "02_after.ipynb", GOOD)
    _write_nb(nbs / "03_noresult.ipynb", "z = 3")
    _write_nb(nbs / "04_dies.ipynb", "print('before the crash')", "import os\nos._exit(3)", "never = 1")
    cfg = root / "c.yaml"
    cfg.write_text("seed: 11\nreports:\n  hide_code: true\n  scheduler: local:2\n")   # side by side
    return run_all(cfg, out_dir=root / "out", nb_dir=nbs, progress=False, retries=0), root


def test_good_notebooks_give_html_netcdf_and_executed_copy(report):
    summary, root = report
    out = root / "out"
    for name in ("00_good", "02_after"):
        run = next(r for r in summary.runs if r.name == name)
        assert run.ok, run.error
        ds = open_dataset(out / f"{name}.nc")
        assert list(ds["v"].values) == [0, 1, 2] and ds.attrs["config"]["seed"] == 11
        html = (out / f"{name}.html").read_text()
        assert "SEED 11" in html          # outputs are rendered
        assert "load_config" not in html  # code hidden by default
        nb = nbformat.read(str(out / f"{name}.ipynb"), as_version=4)
        assert any(c.get("outputs") for c in nb.cells if c.cell_type == "code")


def test_failure_is_recorded_with_cell_and_does_not_stop_others(report):
    summary, root = report
    assert not summary.ok
    names = [r.name for r in summary.failures]
    assert names == ["01_bad", "03_noresult", "04_dies"]
    bad = summary.failures[0]
    # parameters (1), papermill's injected parameters (2), x = 1 (3), the raise (4)
    assert bad.failed_cell == 4 and "planted failure" in bad.error
    # the failure's kind from papermill's exception type, with the line of the cell that raised
    # (#6 in the executed notebook: papermill puts two error notes above the failing cell)
    assert bad.detail == ("01_bad: failed in cell #6 [4] (raise ValueError('planted failure')): "
                          "ValueError: planted failure")
    st = json.loads((root / "out" / "01_bad.status.json").read_text())
    assert st["error_kind"] == "cell-error" and st["failed_cell_source"] == "raise ValueError('planted failure')"
    assert json.loads((root / "out" / "03_noresult.status.json").read_text())["error_kind"] == "no-results"
    assert "results" in summary.failures[1].error
    assert (root / "out" / "01_bad.html").exists()
    index = (root / "out" / "index.html").read_text()
    for name in ("00_good", "01_bad", "02_after", "03_noresult"):
        assert name in index
    assert "planted failure" in index and 'href="00_good.html"' in index
    assert "01_bad" in str(summary)


def test_kernel_death_names_notebook_cell_and_partial_output(report):
    summary, root = report
    run = next(r for r in summary.runs if r.name == "04_dies")
    assert not run.ok and run.state == "failed"
    # which notebook, what happened, which cell (#4: markdown, parameters, injected parameters, print, crash)
    assert "04_dies: kernel died in cell #4" in run.detail
    assert json.loads((root / "out" / "04_dies.status.json").read_text())["error_kind"] == "kernel-died"
    assert "partial output" in run.detail and "04_dies.partial.html" in run.detail
    partial = root / "out" / "04_dies.partial.html"
    assert partial.exists() and "before the crash" in partial.read_text()
    index = (root / "out" / "index.html").read_text()
    assert "kernel died in cell #4" in index and 'href="04_dies.partial.html"' in index
    assert not (root / "out" / "04_dies.nc").exists()


def test_no_temp_files_left(report):
    _, root = report
    assert not [p for p in (root / "out").rglob(".*")]


def test_thumbnails_params_and_offline_html(report):
    summary, root = report
    out = root / "out"
    index = (out / "index.html").read_text()
    assert 'href="00_good.nc"' in index and 'href="00_good.ipynb"' in index
    html = (out / "00_good.html").read_text()
    assert "cdnjs" not in html and "<script src=\"http" not in html and "unpkg" not in html


def test_timeout_is_reported_with_cell_and_partial_output(tmp_path):
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    _write_nb(nbs / "00_slow.ipynb", "print('started')", "import time\ntime.sleep(300)")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("seed: 1\nreports:\n  timeout: 8\n  scheduler: serial\n")
    summary = run_all(cfg, out_dir=tmp_path / "out", nb_dir=nbs, progress=False, retries=0)
    (run,) = summary.runs
    assert not run.ok
    assert run.detail.startswith("00_slow: timed out in cell #4")
    assert json.loads((tmp_path / "out" / "00_slow.status.json").read_text())["error_kind"] == "timeout"
    assert "partial output" in run.detail and (tmp_path / "out" / "00_slow.partial.html").exists()
    assert "timed out" in (tmp_path / "out" / "index.html").read_text()


def test_stale_results_of_an_earlier_run_do_not_pass(tmp_path):
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    _write_nb(nbs / "00_x.ipynb", GOOD)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("seed: 1\nreports:\n  scheduler: serial\n")
    assert run_all(cfg, out_dir=tmp_path / "out", nb_dir=nbs, progress=False, retries=0).ok
    assert (tmp_path / "out" / "00_x.nc").exists()
    _write_nb(nbs / "00_x.ipynb", "z = 3")         # the notebook no longer writes results
    summary = run_all(cfg, out_dir=tmp_path / "out", nb_dir=nbs, progress=False, retries=0)
    assert not summary.ok and "no results" in summary.runs[0].error
    assert not (tmp_path / "out" / "00_x.nc").exists()


def test_run_all_takes_the_scheduler_from_the_config_unless_given(tmp_path, monkeypatch):
    from lrpkit.batch import schedule

    seen = []
    monkeypatch.setattr(schedule, "run_cells", lambda cells, scheduler=None, **kw: seen.append(scheduler) or [])
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    _write_nb(nbs / "00_good.ipynb", GOOD)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("reports:\n  scheduler: local:3\n")
    run_all(cfg, out_dir=tmp_path / "out", nb_dir=nbs, progress=False)
    run_all(cfg, out_dir=tmp_path / "out", nb_dir=nbs, progress=False, scheduler="serial")
    (tmp_path / "d.yaml").write_text("seed: 0\n")
    run_all(tmp_path / "d.yaml", out_dir=tmp_path / "out", nb_dir=nbs, progress=False)
    assert seen == ["local:3", "serial", "local"]     # the default: one kernel per core
