"""Grid batch runs (lrpkit.batch.schedule): dask LocalCluster vs serial, retries, signals, resume.

Notebook executions are slow to start, so every test uses the probe notebook
``tests/notebooks/grid_probe.ipynb`` (numpy + one figure) and as few cells as it can.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import flaky_kernel
from lrpkit import batch as G
from lrpkit.batch.cells import STAGING_PREFIX, write_status
from lrpkit.results import open_dataset
from test_batch_cells import grid_file as _grid

ROOT = Path(__file__).resolve().parent.parent


def _hidden(folder: Path) -> list[Path]:
    return [p for p in folder.rglob(".*")]


def _expected(eps, scale):
    return scale * np.exp(-np.arange(5) / (1.0 + eps))


def test_local_cluster_matches_serial_and_rerun_skips(tmp_path):
    smoke = G.load_grid(ROOT / "configs" / "grid_smoke.yaml")
    t0 = time.perf_counter()
    serial = G.run_grid(smoke, out=tmp_path / "serial", progress=False)
    t_serial = time.perf_counter() - t0
    assert serial.ok, str(serial)
    t0 = time.perf_counter()
    par = G.run_grid(smoke, scheduler="local:2", out=tmp_path / "dask", progress=False)
    t_par = time.perf_counter() - t0
    assert par.ok, str(par)
    print(f"smoke grid: serial {t_serial:.1f} s, LocalCluster(2) {t_par:.1f} s")
    a = open_dataset(serial.combined["grid_probe"])
    b = open_dataset(par.combined["grid_probe"])
    assert a["curve"].dims == ("lrp_epsilon", "scale", "step")
    xr.testing.assert_allclose(a[["curve", "seed"]], b[["curve", "seed"]])
    for eps in (0.01, 100.0):
        for scale in (1.0, 2.0):
            np.testing.assert_allclose(a["curve"].sel(lrp_epsilon=eps, scale=scale).values,
                                       _expected(eps, scale), rtol=1e-12)
    index = (tmp_path / "dask" / "index.html").read_text()
    assert index.count('class="ok"') == 4 and "data:image/png;base64," in index
    assert "grid_probe.nc" in index
    assert not _hidden(tmp_path / "dask") and not _hidden(tmp_path / "serial")
    again = G.run_grid(smoke, out=tmp_path / "serial", progress=False)  # nothing to do
    assert [r.state for r in again.results] == ["skipped"] * 4


def test_parallel_runs_start_the_longest_cells_first(tmp_path):
    spec = G.load_grid(_grid(tmp_path, {"grid_probe": {"scale": [1.0, 2.0, 3.0]}}))
    cells = G.grid_cells(spec)
    for c, secs in zip(cells, (5.0, 1.0, 50.0)):   # durations of an earlier run: the last is longest
        Path(c.out_dir).mkdir(parents=True, exist_ok=True)
        write_status(c.status_path, G.CellResult(name=c.name, group=c.group, state="ok", seconds=secs))
    summary = G.run_grid(spec, scheduler="local:1", force=True, progress=False)   # one worker: in order
    assert summary.ok, str(summary)
    started = [G.read_status(c.status_path).started for c in cells]
    assert started[2] < started[0] < started[1], started


def test_an_existing_cluster_by_address(tmp_path):
    """``--scheduler tcp://host:port``: cells go to a dask cluster that was already running
    (here a LocalCluster started by the test, reached only through its address)."""
    from distributed import LocalCluster

    spec = G.load_grid(_grid(tmp_path, {"grid_probe": {"scale": [1.0, 2.0]}}))
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None,
                      host="127.0.0.1") as cluster:
        address = cluster.scheduler_address
        assert address.startswith("tcp://127.0.0.1:")
        summary = G.run_grid(spec, scheduler=address, progress=False)
    assert summary.ok, str(summary)
    ds = open_dataset(summary.combined["grid_probe"])
    for scale in (1.0, 2.0):
        np.testing.assert_allclose(ds["curve"].sel(scale=scale).values, _expected(0.01, scale), rtol=1e-12)


def test_failed_cell_is_retried_once_and_kernel_start_failures_are_retried(tmp_path, monkeypatch):
    marker = tmp_path / "fail-once"
    marker.write_text("x")
    # the first kernel start dies (a kernelspec of the tests): without the start retry the first
    # attempt fails there, the second on the planted cell error, and the grid fails
    left = flaky_kernel.install(tmp_path / "jupyter", failures=1)
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    spec = G.load_grid(_grid(tmp_path, {"grid_probe": {"fail": [str(marker)]}}))
    summary = G.run_grid(spec, progress=False)
    assert summary.ok, str(summary)
    assert left.read_text() == "0"                    # the kernel did die at its first start
    (res,) = summary.results
    assert res.attempts == 2 and not marker.exists()  # cell error once, then ok
    st = json.loads((tmp_path / "out" / "cells" / "grid_probe" / f"{res.name}.status.json").read_text())
    assert st["state"] == "ok" and st["thumbnail"]


def _wait_running(status: Path, staging_parent: Path, timeout=240.0):
    t0 = time.time()
    while time.time() - t0 < timeout:
        st = G.read_status(status) if status.exists() else None
        nbs = list(staging_parent.glob(".lrpkit-staging-*/*.ipynb"))
        if st is not None and st.state == "running" and nbs:
            cells = json.loads(nbs[0].read_text() or "{}").get("cells", []) if nbs[0].stat().st_size else []
            if any(c.get("metadata", {}).get("papermill", {}).get("status") == "running" for c in cells):
                return
        time.sleep(0.3)
    raise AssertionError("the cell never started running")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_stops_run_leaves_nothing_stale_and_resumes(tmp_path, sig):
    hold = tmp_path / "hold"
    hold.write_text("x")
    nbs = {"grid_probe": {"wait_for": [str(hold)]}}
    gpath = _grid(tmp_path, nbs)
    cell = G.grid_cells(G.load_grid(gpath))[0]
    cdir = Path(cell.out_dir)
    cdir.mkdir(parents=True)
    # an old finished result of this cell: it must not survive as if current
    (cdir / f"{cell.name}.nc").write_text("old")
    (cdir / f"{cell.name}.html").write_text("old")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.Popen([sys.executable, "-m", "lrpkit.cli", "report", "--config", str(gpath)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait_running(cell.status_path, cdir)
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=120)   # a run that does not stop fails here
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + sig, out
    st = G.read_status(cell.status_path)
    assert st.state == "interrupted" and signal.Signals(sig).name in st.error
    assert not (cdir / f"{cell.name}.nc").exists() and not (cdir / f"{cell.name}.html").exists()
    assert not _hidden(tmp_path / "out"), _hidden(tmp_path / "out")
    index = (tmp_path / "out" / "index.html").read_text()
    assert "interrupted" in index and 'class="ok"' not in index
    if sig == signal.SIGINT:  # resume: the interrupted cell runs, and finishes now
        hold.unlink()
        r = subprocess.run([sys.executable, "-m", "lrpkit.cli", "report", "--config", str(gpath)],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stdout + r.stderr
        assert G.read_status(cell.status_path).state == "ok"
        assert open_dataset(tmp_path / "out" / "grid_probe.nc")["curve"].shape == (1, 5)


def test_killed_worker_cell_is_run_again_and_the_grid_completes(tmp_path):
    """SIGKILL the dask worker running a cell: the cell's process stops (PDEATHSIG), dask runs
    the task again on a fresh worker, and the grid still finishes with every cell."""
    import threading

    hold = tmp_path / "hold"
    hold.write_text("x")
    spec = G.load_grid(_grid(tmp_path, {"grid_probe": {"wait_for": [str(hold)], "scale": [1.0, 3.0]}}))
    box = {}
    t = threading.Thread(target=lambda: box.setdefault("s", G.run_grid(spec, scheduler="local:2", progress=False)))
    t.start()
    cdir = tmp_path / "out" / "cells" / "grid_probe"
    t0 = time.time()
    victim = None
    while time.time() - t0 < 400 and victim is None:
        for st in cdir.glob(f"{STAGING_PREFIX}*"):
            pid = int(st.name.rsplit("-", 2)[-2])
            with open(f"/proc/{pid}/stat") as fh:
                victim = int(fh.read().rsplit(")", 1)[1].split()[1])  # the worker: the cell's parent
            break
        time.sleep(0.3)
    assert victim is not None, "no cell started"
    os.kill(victim, signal.SIGKILL)
    time.sleep(3)
    hold.unlink()
    t.join(600)
    summary = box["s"]
    assert summary.ok, str(summary)
    ds = open_dataset(summary.combined["grid_probe"])
    np.testing.assert_allclose(ds["curve"].isel(wait_for=0).sel(scale=3.0).values, _expected(0.01, 3.0))
    assert not _hidden(tmp_path / "out")
