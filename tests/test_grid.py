"""Grid batch runs (lrpkit.grid): cells, dask LocalCluster vs serial, retries, signals, resume.

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
import yaml

from lrpkit import grid as G
from lrpkit.results import open_dataset

ROOT = Path(__file__).resolve().parent.parent
PROBE_DIR = ROOT / "tests" / "notebooks"


def _grid(tmp_path, notebooks, name="g.yaml", **extra):
    spec = {"config": "smoke", "out": str(tmp_path / "out"), "notebook_dir": str(PROBE_DIR),
            "retries": 1, "start_timeout": 300, "timeout": 300, "notebooks": notebooks, **extra}
    p = tmp_path / name
    p.write_text(yaml.safe_dump(spec))
    return p


def _hidden(folder: Path) -> list[Path]:
    return [p for p in folder.rglob(".*")]


# ------------------------------------------------------------------ no kernels

def test_smoke_grid_cells_and_parameters():
    spec = G.load_grid(ROOT / "configs" / "grid_smoke.yaml")
    cells = G.grid_cells(spec)
    assert len(cells) == 4 and len({c.name for c in cells}) == 4
    assert {c.param_dict["scale"] for c in cells} == {1.0, 2.0}
    over, nb = G._config_overrides(cells[0], G._base_config_data(cells[0].config))
    assert over == {"lrp": {"epsilon": cells[0].param_dict["lrp.epsilon"]}}
    assert nb == {"scale": cells[0].param_dict["scale"]}
    merged = G._merged_config(cells[-1])
    assert merged["lrp"]["epsilon"] == 100.0 and merged["seed"] == 0  # rest of smoke.yaml kept
    assert G.is_grid_config(ROOT / "configs" / "grid_smoke.yaml")
    assert not G.is_grid_config(ROOT / "configs" / "smoke.yaml")
    # the real grid names real config keys (checked by the typed config)
    assert G.load_grid(ROOT / "configs" / "grid.yaml").notebooks


def test_grid_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="no notebook named 'nope'"):
        G.grid_cells(G.load_grid(_grid(tmp_path, {"nope": {"scale": [1]}})))
    with pytest.raises(ValueError, match="unknown key"):
        G.load_grid(_grid(tmp_path, {"grid_probe": {}}, bogus=1))
    with pytest.raises(ValueError, match="has no values"):
        G.load_grid(_grid(tmp_path, {"grid_probe": {"scale": []}}))
    with pytest.raises(ValueError, match="lrp"):  # unknown config key, before any kernel starts
        G.grid_cells(G.load_grid(_grid(tmp_path, {"grid_probe": {"lrp.no_such_key": [1]}})))
    with pytest.raises(FileNotFoundError):
        G.load_grid(tmp_path / "missing.yaml")
    for bad in ("local:0x", "cluster", "http://x"):
        with pytest.raises(ValueError, match="scheduler"):
            G._parse_scheduler(bad)
    assert G._parse_scheduler("local:2") == ("local", 2)
    assert G._parse_scheduler("tcp://10.0.0.1:8786") == ("address", "tcp://10.0.0.1:8786")


def test_fingerprint_follows_lrpkits_own_code(tmp_path, monkeypatch):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "a.py").write_text("x = 1\n")
    (pkg / "sub" / "b.py").write_text("y = 2\n")
    one = G.code_stamp(str(pkg))
    G.code_stamp.cache_clear()
    (pkg / "sub" / "b.py").write_text("y = 3\n")                 # an edit anywhere in the package
    assert G.code_stamp(str(pkg)) != one
    cell = G.Cell(notebook=str(PROBE_DIR / "grid_probe.ipynb"), name="c", out_dir=str(tmp_path), config="smoke")
    before = G.fingerprint(cell)
    assert G.fingerprint(cell) == before                          # deterministic
    monkeypatch.setattr(G, "code_stamp", lambda root=None: "another-version")
    assert G.fingerprint(cell) != before                          # finished under other code: not current


def test_combine_stacks_cells_along_parameters(tmp_path):
    from lrpkit.results import save_dataset

    cells = []
    for eps in (0.5, 2.0):
        for scale in (1, 3):
            c = G.Cell(notebook=str(PROBE_DIR / "grid_probe.ipynb"), name=f"c{eps}-{scale}",
                       out_dir=str(tmp_path), config="smoke", params=(("lrp.epsilon", eps), ("scale", scale)),
                       group="probe")
            save_dataset(xr.Dataset({"v": (("step",), scale * np.arange(3.0) + eps)}), c.path(".nc"))
            G._write_status(c.status_path, G.CellResult(c.name, "probe", "ok", params=c.param_dict))
            cells.append(c)
    G._write_status(cells[-1].status_path, G.CellResult(cells[-1].name, "probe", "failed"))
    ds = G.combine_cells(cells)
    assert ds["v"].dims == ("lrp_epsilon", "scale", "step")
    np.testing.assert_allclose(ds["v"].sel(lrp_epsilon=2.0, scale=1).values, [2, 3, 4])
    assert np.isnan(ds["v"].sel(lrp_epsilon=2.0, scale=3).values).all()  # the failed cell
    assert [c["state"] for c in ds.attrs["grid_cells"]] == ["ok", "ok", "ok", "failed"]
    # the combined store as netCDF, then as zarr (large grids): same values, one store left
    nc = G._save_combined(ds, tmp_path / "probe", "netcdf")
    zr = G._save_combined(ds, tmp_path / "probe", "zarr")
    assert zr.suffix == ".zarr" and zr.is_dir() and not nc.exists()
    back = xr.open_zarr(zr).load()
    xr.testing.assert_allclose(back["v"], ds["v"])
    assert G._save_combined(ds, tmp_path / "probe", "auto").suffix == ".nc" and not zr.exists()


# ------------------------------------------------------------------ kernels

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


def test_expected_seconds_from_the_last_run_else_the_notebook_header(tmp_path):
    nb = json.loads((PROBE_DIR / "grid_probe.ipynb").read_text())
    nb["metadata"].setdefault("lrpkit", {})["expected_seconds"] = 42
    (tmp_path / "timed.ipynb").write_text(json.dumps(nb))
    cell = G.Cell(notebook=str(tmp_path / "timed.ipynb"), name="timed", out_dir=str(tmp_path), config="smoke")
    bare = G.Cell(notebook=str(PROBE_DIR / "grid_probe.ipynb"), name="bare", out_dir=str(tmp_path),
                  config="smoke")
    assert G.expected_seconds(cell) == 42.0 and G.expected_seconds(bare) == 0.0
    G._write_status(cell.status_path, G.CellResult(name="timed", group="timed", state="failed", seconds=3.0))
    assert G.expected_seconds(cell) == 42.0          # a failed run says nothing about the duration
    G._write_status(cell.status_path, G.CellResult(name="timed", group="timed", state="ok", seconds=7.5))
    assert G.expected_seconds(cell) == 7.5
    # the project's notebooks carry their header estimate into the .ipynb papermill runs
    from lrpkit.notebooks import build, sources

    assert all(build(py).metadata["lrpkit"]["expected_seconds"] > 0 for py in sources())


def test_parallel_runs_start_the_longest_cells_first(tmp_path):
    spec = G.load_grid(_grid(tmp_path, {"grid_probe": {"scale": [1.0, 2.0, 3.0]}}))
    cells = G.grid_cells(spec)
    for c, secs in zip(cells, (5.0, 1.0, 50.0)):   # durations of an earlier run: the last is longest
        Path(c.out_dir).mkdir(parents=True, exist_ok=True)
        G._write_status(c.status_path, G.CellResult(name=c.name, group=c.group, state="ok", seconds=secs))
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
    monkeypatch.setenv("LRPKIT_TEST_KERNEL_START_FAILURES", "1")  # first kernel start "dies"
    spec = G.load_grid(_grid(tmp_path, {"grid_probe": {"fail": [str(marker)]}}))
    summary = G.run_grid(spec, progress=False)
    assert summary.ok, str(summary)
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
        for st in cdir.glob(f"{G.STAGING_PREFIX}*"):
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
