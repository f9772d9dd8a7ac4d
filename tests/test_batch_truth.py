"""The batch runner tells the truth after every fault ([Robust-batch]): the index and the combined
grid stores are derived from what is on disk and current, a folder has one run at a time, a bad
``--scheduler`` creates nothing, a deterministic failure is not retried, a stopped grid says which
cells never ran, and a run is quiet (its log goes to a file the summary names).

Finished runs are written here as files (the notebook, HTML, results and an ``ok`` status with
the fingerprint of today's notebook, config and code), so that only the runs under test start
kernels; signals are sent to the runner processes by PID.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import numpy as np
import pytest
import xarray as xr
import yaml

from lrpkit.batch import cells as C
from lrpkit.batch import run_all, write_index
from lrpkit.batch.combine import combine_cells, save_combined, store_cells
from lrpkit.batch.spec import grid_cells, load_grid, notebook_cell
from lrpkit.results import save_dataset

ROOT = Path(__file__).resolve().parent.parent
PROBE_DIR = ROOT / "tests" / "notebooks"
ENV = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}

PARAMS = 'config = "default"\nresults_path = None'
HOLD = """import os, time
hold = os.environ.get("LRPKIT_TEST_HOLD", "")
t0 = time.time()
while hold and os.path.exists(hold) and time.time() - t0 < 120:
    time.sleep(0.2)"""
SAVE = """import numpy as np, xarray as xr
import lrpkit
cfg = lrpkit.load_config(config)
ds = xr.Dataset({"v": (("step",), np.arange(3.0))}, coords={"step": [0, 1, 2]})
lrpkit.results.save_dataset(ds, results_path)
print("SEED", cfg["seed"])"""

# a runner process to signal: run_all on the test's notebooks, exit 128 + signum when stopped
RUNNER = """import sys
from lrpkit.batch import RunInterrupted, run_all
cfg, out, nbs, force = sys.argv[1:5]
try:
    s = run_all(cfg, out_dir=out, nb_dir=nbs, progress=False, retries=0, scheduler="serial", force=force == "1")
except RunInterrupted as exc:
    sys.exit(128 + exc.signum)
print(s)
sys.exit(0 if s.ok else 1)
"""


def _write_nb(path: Path, *sources: str) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {path.stem}"),
                nbformat.v4.new_code_cell(PARAMS, metadata={"tags": ["parameters"]})]
    nb.cells += [nbformat.v4.new_code_cell(s) for s in sources]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(path))


def _config(tmp: Path, seed: int = 1, **extra) -> Path:
    cfg = tmp / "c.yaml"
    cfg.write_text(yaml.safe_dump({"seed": seed, "paths": {"scenes": str(tmp / "scenes"),
                                                           "models": str(tmp / "models"),
                                                           "reports": str(tmp / "reports")},
                                   "reports": {"scheduler": "serial"}, **extra}))
    return cfg


def _finished(cell: C.Cell) -> None:
    """What a finished run of ``cell`` leaves: its files and an ok status, current today."""
    Path(cell.out_dir).mkdir(parents=True, exist_ok=True)
    for suffix in (".ipynb", ".html"):
        cell.path(suffix).write_text("{}" if suffix == ".ipynb" else "<p>old result</p>")
    save_dataset(xr.Dataset({"curve": (("step",), np.arange(5.0) * (1 + len(cell.params)))}), cell.path(".nc"))
    C.write_status(cell.status_path, C.CellResult(
        name=cell.name, group=cell.group, state="ok", seconds=5.0, params=cell.param_dict,
        notebook=cell.notebook, attempts=1, ipynb=f"{cell.name}.ipynb", html=f"{cell.name}.html",
        results=f"{cell.name}.nc", fingerprint=C.fingerprint(cell), started="2000-01-01T00:00:00+00:00",
        out_dir=cell.out_dir, config=cell.config))
    assert C.cell_is_current(cell)


def _report_setup(tmp: Path):
    nbs = tmp / "nbs"
    nbs.mkdir()
    _write_nb(nbs / "00_wait.ipynb", HOLD, SAVE)
    _write_nb(nbs / "01_good.ipynb", SAVE)
    cfg = _config(tmp)
    out = tmp / "out"
    cells = [notebook_cell(nb, out, str(cfg.resolve())) for nb in sorted(nbs.glob("*.ipynb"))]
    for c in cells:
        _finished(c)
    write_index(out, config_source=str(cfg))          # the index the finished run left
    assert Path(out / "index.html").read_text().count('class="ok"') == 2
    return nbs, cfg, out, cells


def _start(cfg: Path, out: Path, nbs: Path, hold: Path, force: bool) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", RUNNER, str(cfg), str(out), str(nbs), "1" if force else "0"],
                            cwd=ROOT, env={**ENV, "LRPKIT_TEST_HOLD": str(hold)}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _wait_executing(folder: Path, name: str | None = None, timeout: float = 120.0) -> None:
    """Until a cell's kernel executes a notebook cell (papermill marks it running) in ``folder``."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        for nb in folder.glob(f".lrpkit-staging-{name or ''}*/*.ipynb"):
            try:
                cells = json.loads(nb.read_text()).get("cells", [])
            except (OSError, ValueError):
                continue
            if any(c.get("metadata", {}).get("papermill", {}).get("status") == "running" for c in cells):
                return
        time.sleep(0.2)
    raise AssertionError(f"no cell started executing in {folder}")


def _row(index: str, name: str) -> str:
    m = re.search(rf'<tr id="{re.escape(name)}">.*?</tr>', index, re.S)
    assert m, f"{name} not in the index"
    return m.group(0)


def test_sigterm_after_a_config_change_shows_the_old_results_stale(tmp_path):
    """SIGTERM on a run with a changed config: the index, headed with the new config, does not
    list the results made under the old one as ok (their fingerprints differ)."""
    nbs, cfg, out, cells = _report_setup(tmp_path)
    cfg.write_text(cfg.read_text().replace("seed: 1", "seed: 2"))       # the config changes
    hold = tmp_path / "hold"
    hold.write_text("x")
    proc = _start(cfg, out, nbs, hold, force=False)
    try:
        _wait_executing(out, "00_wait")
        proc.send_signal(signal.SIGTERM)
        text, _ = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, text
    index = (out / "index.html").read_text()
    assert str(cfg) in index                                        # headed with the (new) config
    assert 'class="ok"' not in index
    row = _row(index, "01_good")                                    # made under seed 1, never re-run
    assert 'class="stale"' in row and "another notebook, config" in row
    assert 'class="interrupted"' in _row(index, "00_wait")
    assert C.read_status(cells[0].status_path).state == "interrupted"


def test_sigkill_of_the_parent_links_no_deleted_file_and_the_next_run_repairs(tmp_path):
    """SIGKILL the runner while its child runs 00 again (``force``): the index does not say ok
    for 00 nor link the files the child deleted; the next run takes over the dead run's lock,
    finishes, and is quiet (the kernels' notes go to the log file the summary names)."""
    nbs, cfg, out, cells = _report_setup(tmp_path)
    hold = tmp_path / "hold"
    hold.write_text("x")
    proc = _start(cfg, out, nbs, hold, force=True)
    try:
        _wait_executing(out, "00_wait")
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not (out / "00_wait.html").exists() and not (out / "00_wait.nc").exists()   # the child removed them
    row = _row((out / "index.html").read_text(), "00_wait")
    assert 'class="ok"' not in row and 'href="00_wait.html"' not in row and 'href="00_wait.nc"' not in row
    # the next run: the dead run's lock is taken over with a note; 00 runs, 01 is current
    hold.unlink()
    proc = _start(cfg, out, nbs, hold, force=False)
    text, _ = proc.communicate(timeout=240)
    assert proc.returncode == 0, text
    assert "taking over the lock" in text and "no longer running" in text
    index = (out / "index.html").read_text()
    assert 'class="ok"' in _row(index, "00_wait") and 'href="00_wait.nc"' in _row(index, "00_wait")
    for noise in ("without encryption", "Alternative text", "KeyboardInterrupt", "Traceback"):
        assert noise not in text, text
    assert f"log: {out / 'lrpkit.log'}" in text and (out / "lrpkit.log").is_file()


def test_a_second_run_on_a_folder_exits_2_naming_the_first(tmp_path):
    """``lrpkit report`` / ``data`` / ``train`` on a folder another run holds: exit 2 at once,
    one line naming the running one (PID, start time); nothing runs."""
    from lrpkit.runlock import folder_lock

    cfg = _config(tmp_path)
    for cmd, folder in (("report", tmp_path / "reports"), ("data", tmp_path / "scenes"),
                        ("train", tmp_path / "models")):
        with folder_lock(folder, f"test holding {cmd}"):
            r = subprocess.run([sys.executable, "-m", "lrpkit.cli", cmd, "--config", str(cfg)], cwd=ROOT,
                               env=ENV, capture_output=True, text=True, timeout=120)
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert r.returncode == 2, (cmd, r.stdout, r.stderr)
        assert len(lines) == 1 and f"PID {os.getpid()}" in lines[0] and "started" in lines[0], r.stderr
        assert f"test holding {cmd}" in lines[0]
        assert not folder.exists() or not any(folder.iterdir()), cmd


def test_a_bad_scheduler_creates_nothing(tmp_path):
    cfg = _config(tmp_path)
    r = subprocess.run([sys.executable, "-m", "lrpkit.cli", "report", "--config", str(cfg), "--out",
                        str(tmp_path / "new"), "--scheduler", "locl:2"], cwd=ROOT, env=ENV,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "scheduler" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "new").exists()
    with pytest.raises(ValueError, match="scheduler"):
        run_all(cfg, out_dir=tmp_path / "new2", nb_dir=tmp_path, scheduler="cluster")
    assert not (tmp_path / "new2").exists()


def test_a_deterministic_failure_is_not_retried_names_its_line_and_publishes_nothing(tmp_path):
    """A notebook that saves its results and then fails the same way twice: run twice (not three
    times with ``retries=2``), named by the cell's number and the line that raised, and its .nc
    is neither kept nor linked."""
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    _write_nb(nbs / "00_fails.ipynb", SAVE, "import time\nimport lrpkit\nx = 1\nlrpkit.load_config('no_such_config')")
    summary = run_all(_config(tmp_path), out_dir=tmp_path / "out", nb_dir=nbs, progress=False, retries=2)
    (run,) = summary.runs
    st = C.read_status(tmp_path / "out" / "00_fails.status.json")
    assert st.state == "failed" and st.attempts == 2, st
    assert st.failure.source == "lrpkit.load_config('no_such_config')", st.failure
    assert re.match(r"00_fails: failed in cell #\d+ \[4\] \(", run.detail), run.detail   # [4]: params, injected, SAVE
    assert "(lrpkit.load_config('no_such_config'))" in run.detail
    assert not (tmp_path / "out" / "00_fails.nc").exists() and st.results is None
    assert "00_fails.nc" not in (tmp_path / "out" / "index.html").read_text()


def test_grid_sigint_with_force_leaves_no_false_store_and_marks_unstarted_cells_not_run(tmp_path):
    """SIGINT on a ``--force`` grid run (dask, one worker): the combined store holds exactly the
    cells that are ok now (not the old "all ok"); a cell that never started is "not run"
    (interrupted), not "failed: worker died"."""
    hold = tmp_path / "hold"
    hold.write_text("x")
    spec = {"config": "smoke", "out": str(tmp_path / "out"), "notebook_dir": str(PROBE_DIR), "retries": 1,
            "start_timeout": 300, "timeout": 300,
            "notebooks": {"grid_probe": {"wait_for": [str(hold)], "scale": [1.0, 2.0, 3.0]}}}
    gpath = tmp_path / "g.yaml"
    gpath.write_text(yaml.safe_dump(spec))
    cells = grid_cells(load_grid(gpath))
    for c in cells[:2]:                          # an earlier run finished scale 1 and 2
        _finished(c)
    store = save_combined(combine_cells(cells[:2]), tmp_path / "out" / "grid_probe", "netcdf")
    assert set(store_cells(store).values()) == {"ok"}
    proc = subprocess.Popen([sys.executable, "-m", "lrpkit.cli", "report", "--config", str(gpath), "--force",
                             "--scheduler", "local:1"], cwd=ROOT, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        _wait_executing(Path(cells[0].out_dir), timeout=180)
        proc.send_signal(signal.SIGINT)
        text, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGINT, text
    states = {c.name: C.shown_state(c, C.read_status(c.status_path))[0] for c in cells}
    third = C.read_status(cells[2].status_path)            # never started (the longest ran first)
    assert third.state == "interrupted" and third.error_kind == "interrupted", third
    assert third.error.startswith("not run"), third.error
    assert "worker" not in json.dumps(third.to_dict())
    assert list(states.values()).count("interrupted") >= 2 and "failed" not in states.values(), states
    index = (tmp_path / "out" / "index.html").read_text()
    if store.exists():                                     # rebuilt from the cells ok now
        held = store_cells(store)
        assert {k for k, v in held.items() if v == "ok"} == {k for k, v in states.items() if v == "ok"}
        assert set(held) == set(states)
    else:
        assert 'href="grid_probe.nc"' not in index
    assert 'class="ok"' not in index or list(states.values()).count("ok") == index.count('class="ok"')


def test_index_shows_missing_and_stale_results_and_a_store_that_does_not_match(tmp_path):
    """Without kernels: a status that says ok but whose files are gone is "missing" (nothing
    linked), one made under another config is "stale"; a combined store whose ok cells are not
    the ones ok now is not linked."""
    nbs, cfg, out, cells = _report_setup(tmp_path)
    (out / "00_wait.html").unlink()
    (out / "00_wait.nc").unlink()
    index = write_index(out, config_source=str(cfg), cells=cells, config=str(cfg.resolve())).read_text()
    row = _row(index, "00_wait")
    assert 'class="missing"' in row and "00_wait.html" in row and 'href="00_wait.nc"' not in row
    assert 'class="ok"' in _row(index, "01_good")
    other = tmp_path / "other.yaml"
    other.write_text(cfg.read_text().replace("seed: 1", "seed: 5"))
    index = write_index(out, config_source=str(other), config=str(other.resolve())).read_text()
    assert 'class="stale"' in _row(index, "01_good")             # the index's config is not the run's
    # a grid store that says ok for a cell that is not ok now
    gdir = tmp_path / "g"
    gcells = [C.Cell(notebook=str(nbs / "01_good.ipynb"), name=f"01_good--s={s}",
                     out_dir=str(gdir / "cells" / "01_good"), config=str(cfg.resolve()), params=(("s", s),),
                     group="01_good") for s in (1, 2)]
    for c in gcells:
        _finished(c)
    store = save_combined(combine_cells(gcells), gdir / "01_good", "netcdf")
    assert 'href="01_good.nc"' in write_index(gdir).read_text()
    gcells[1].path(".nc").unlink()
    index = write_index(gdir).read_text()
    assert 'href="01_good.nc"' not in index and "out of date" in index and store.exists()


def test_exported_reports_have_alt_texts_and_no_progress_stubs(tmp_path, caplog):
    import base64
    import io

    from PIL import Image

    from lrpkit.batch import export_html

    buf = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buf, format="PNG")
    png = base64.b64encode(buf.getvalue()).decode()
    nb = nbformat.v4.new_notebook()
    draw = nbformat.v4.new_code_cell("fig.suptitle('Deletion curves')\nplt.show()")
    draw.outputs = [nbformat.v4.new_output("display_data", data={"image/png": png, "text/plain": "<Figure>"})]
    loop = nbformat.v4.new_code_cell("for x in tqdm(range(10)): pass")
    loop.outputs = [
        nbformat.v4.new_output("display_data", data={"application/vnd.jupyter.widget-view+json": {"model_id": "a"},
                                                     "text/plain": "  0%|          | 0/10 [00:00<?, ?it/s]"}),
        nbformat.v4.new_output("stream", name="stderr", text="100%|##########| 10/10 [00:01<00:00,  9.8it/s]\n"
                                                             "a real warning\n")]
    plain = nbformat.v4.new_code_cell("plt.show()")
    plain.outputs = [nbformat.v4.new_output("display_data", data={"image/png": png})]
    nb.cells = [nbformat.v4.new_markdown_cell("# Probe\n## AOPC curves"), draw, loop, plain]
    nbformat.write(nb, str(tmp_path / "p.ipynb"))
    with caplog.at_level("WARNING"):
        html = export_html(tmp_path / "p.ipynb", tmp_path / "p.html").read_text()
    assert "Alternative text" not in caplog.text
    alts = re.findall(r'<img[^>]*\balt="([^"]*)"', html)
    assert alts == ["Figure: Deletion curves", "Figure: AOPC curves"], alts
    assert "0%|" not in html and "10/10" not in html and "a real warning" in html


def test_log_lines_are_not_glued_onto_the_progress_bar_and_go_to_the_log_file(tmp_path, capsys):
    import logging

    from tqdm.auto import tqdm

    from lrpkit.batch.schedule import run_log

    with run_log(tmp_path / "lrpkit.log") as path:
        bar = tqdm(total=2, desc="cells", file=sys.stderr, mininterval=0)
        bar.update(1)
        logging.getLogger("lrpkit.batch.schedule").warning("00_x: failed in cell #3")
        logging.getLogger("lrpkit.batch.schedule").info("01_y: up to date, skipped")
        bar.close()
    err = capsys.readouterr().err
    shown = [line.rsplit("\r", 1)[-1] for line in err.split("\n")]    # what a terminal shows per line
    assert "[lrpkit] 00_x: failed in cell #3" in shown, shown
    assert "skipped" not in err                                        # INFO: the log file only
    text = path.read_text()
    assert "00_x: failed in cell #3" in text and "01_y: up to date, skipped" in text
