"""lrpkit.batch without kernels: grid specs, cells' configs, status files, fingerprints, combine.

The notebook executions are in ``test_batch_schedule.py`` and ``test_batch_reports.py``.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml

from lrpkit.batch import cells as C
from lrpkit.batch import schedule as S
from lrpkit.batch import spec as P
from lrpkit.batch.combine import combine_cells, save_combined
from lrpkit.batch.failures import CellError

ROOT = Path(__file__).resolve().parent.parent
PROBE_DIR = ROOT / "tests" / "notebooks"


def grid_file(tmp_path, notebooks, name="g.yaml", **extra):
    """A grid config over the probe notebook, writing below ``tmp_path / "out"``."""
    spec = {"config": "smoke", "out": str(tmp_path / "out"), "notebook_dir": str(PROBE_DIR),
            "retries": 1, "start_timeout": 300, "timeout": 300, "notebooks": notebooks, **extra}
    p = tmp_path / name
    p.write_text(yaml.safe_dump(spec))
    return p


def test_smoke_grid_cells_and_parameters():
    spec = P.load_grid(ROOT / "configs" / "grid_smoke.yaml")
    cells = P.grid_cells(spec)
    assert len(cells) == 4 and len({c.name for c in cells}) == 4
    assert {c.param_dict["scale"] for c in cells} == {1.0, 2.0}
    over, nb = C.config_overrides(cells[0], C.base_config_data(cells[0].config))
    assert over == {"lrp": {"epsilon": cells[0].param_dict["lrp.epsilon"]}}
    assert nb == {"scale": cells[0].param_dict["scale"]}
    merged = C.merged_config(cells[-1])
    assert merged["lrp"]["epsilon"] == 100.0 and merged["seed"] == 0  # rest of smoke.yaml kept
    assert P.is_grid_config(ROOT / "configs" / "grid_smoke.yaml")
    assert not P.is_grid_config(ROOT / "configs" / "smoke.yaml")
    # the real grid names real config keys (checked by the typed config)
    assert P.load_grid(ROOT / "configs" / "grid.yaml").notebooks


def test_merged_config_is_the_configs_merge_and_leaves_the_base_alone():
    from lrpkit.config import merge

    base = {"seed": 0, "lrp": {"epsilon": 0.01, "composite": "epsilon"}, "paths": {"models": "m"}}
    out = merge(base, {"lrp": {"epsilon": 100.0}, "seed": 3})
    assert out == {"seed": 3, "lrp": {"epsilon": 100.0, "composite": "epsilon"}, "paths": {"models": "m"}}
    out["paths"]["models"] = "changed"                       # a copy: the base is untouched
    assert base["lrp"]["epsilon"] == 0.01 and base["paths"]["models"] == "m" and base["seed"] == 0


def test_grid_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="no notebook named 'nope'"):
        P.grid_cells(P.load_grid(grid_file(tmp_path, {"nope": {"scale": [1]}})))
    with pytest.raises(ValueError, match="unknown key"):
        P.load_grid(grid_file(tmp_path, {"grid_probe": {}}, bogus=1))
    with pytest.raises(ValueError, match="has no values"):
        P.load_grid(grid_file(tmp_path, {"grid_probe": {"scale": []}}))
    with pytest.raises(ValueError, match="lrp"):  # unknown config key, before any kernel starts
        P.grid_cells(P.load_grid(grid_file(tmp_path, {"grid_probe": {"lrp.no_such_key": [1]}})))
    with pytest.raises(FileNotFoundError):
        P.load_grid(tmp_path / "missing.yaml")
    for bad in ("local:0x", "cluster", "http://x"):
        with pytest.raises(ValueError, match="scheduler"):
            S._parse_scheduler(bad)
    assert S._parse_scheduler("local:2") == ("local", 2)
    assert S._parse_scheduler("tcp://10.0.0.1:8786") == ("address", "tcp://10.0.0.1:8786")


def test_discover_selects_by_prefix_and_rejects_unknown(tmp_path):
    for n in ("00_a", "01_b", "10_c"):
        (tmp_path / f"{n}.ipynb").write_text("{}")
    assert [p.stem for p in P.discover_notebooks(tmp_path, ["01"])] == ["01_b"]
    assert [p.stem for p in P.discover_notebooks(tmp_path)] == ["00_a", "01_b", "10_c"]
    with pytest.raises(ValueError, match="99"):
        P.discover_notebooks(tmp_path, ["99"])
    with pytest.raises(FileNotFoundError, match="nope"):
        P.discover_notebooks(tmp_path / "nope")


def test_fingerprint_follows_lrpkits_own_code(tmp_path, monkeypatch):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "a.py").write_text("x = 1\n")
    (pkg / "sub" / "b.py").write_text("y = 2\n")
    one = C.code_stamp(str(pkg))
    C.code_stamp.cache_clear()
    (pkg / "sub" / "b.py").write_text("y = 3\n")                 # an edit anywhere in the package
    assert C.code_stamp(str(pkg)) != one
    cell = C.Cell(notebook=str(PROBE_DIR / "grid_probe.ipynb"), name="c", out_dir=str(tmp_path), config="smoke")
    before = C.fingerprint(cell)
    assert C.fingerprint(cell) == before                          # deterministic
    monkeypatch.setattr(C, "code_stamp", lambda root=None: "another-version")
    assert C.fingerprint(cell) != before                          # finished under other code: not current


def test_status_file_keeps_its_keys_and_round_trips_the_failure(tmp_path):
    res = C.CellResult(name="n", group="g", state="running", params={"scale": 2.0}, attempts=1)
    res.fail(CellError("ValueError: planted", cell=4, cell_index=4, source="raise ValueError('planted')"))
    path = tmp_path / "n.status.json"
    C.write_status(path, res)
    d = json.loads(path.read_text())
    # the status file's layout (read by the index, resume, combine and by people)
    assert list(d) == ["name", "group", "state", "seconds", "params", "notebook", "attempts", "error_kind",
                       "error", "failed_cell", "failed_cell_index", "failed_cell_source", "partial", "ipynb",
                       "html", "results", "thumbnail", "fingerprint", "started", "finished", "host", "out_dir",
                       "config"]
    assert d["state"] == "failed" and d["error_kind"] == "cell-error" and d["failed_cell"] == 4
    back = C.read_status(path)
    assert isinstance(back.failure, CellError) and back.failure.cell_index == 4
    assert back.describe() == res.describe() == \
        "g: failed in cell #4 [4] (raise ValueError('planted')): ValueError: planted"
    ok = C.CellResult(name="m", group="g", state="ok")
    C.write_status(tmp_path / "m.status.json", ok)
    d = json.loads((tmp_path / "m.status.json").read_text())
    assert d["error_kind"] is None and d["failed_cell"] is None
    assert C.read_status(tmp_path / "m.status.json").failure is None
    (tmp_path / "bad.status.json").write_text("[1, 2")
    assert C.read_status(tmp_path / "bad.status.json") is None


def test_combine_stacks_cells_along_parameters(tmp_path):
    from lrpkit.results import save_dataset

    cells = []
    for eps in (0.5, 2.0):
        for scale in (1, 3):
            c = C.Cell(notebook=str(PROBE_DIR / "grid_probe.ipynb"), name=f"c{eps}-{scale}",
                       out_dir=str(tmp_path), config="smoke", params=(("lrp.epsilon", eps), ("scale", scale)),
                       group="probe")
            save_dataset(xr.Dataset({"v": (("step",), scale * np.arange(3.0) + eps)}), c.path(".nc"))
            c.path(".ipynb").write_text("{}")
            # ok and current (the fingerprint of today's notebook, config and code)
            C.write_status(c.status_path, C.CellResult(c.name, "probe", "ok", params=c.param_dict,
                                                       fingerprint=C.fingerprint(c)))
            cells.append(c)
    C.write_status(cells[-1].status_path, C.CellResult(cells[-1].name, "probe", "failed"))
    ds = combine_cells(cells)
    assert ds["v"].dims == ("lrp_epsilon", "scale", "step")
    np.testing.assert_allclose(ds["v"].sel(lrp_epsilon=2.0, scale=1).values, [2, 3, 4])
    assert np.isnan(ds["v"].sel(lrp_epsilon=2.0, scale=3).values).all()  # the failed cell
    assert [c["state"] for c in ds.attrs["grid_cells"]] == ["ok", "ok", "ok", "failed"]
    # the combined store as netCDF, then as zarr (large grids): same values, one store left
    nc = save_combined(ds, tmp_path / "probe", "netcdf")
    zr = save_combined(ds, tmp_path / "probe", "zarr")
    assert zr.suffix == ".zarr" and zr.is_dir() and not nc.exists()
    back = xr.open_zarr(zr).load()
    xr.testing.assert_allclose(back["v"], ds["v"])
    assert save_combined(ds, tmp_path / "probe", "auto").suffix == ".nc" and not zr.exists()


def test_expected_seconds_from_the_last_run_else_the_notebook_header(tmp_path):
    nb = json.loads((PROBE_DIR / "grid_probe.ipynb").read_text())
    nb["metadata"].setdefault("lrpkit", {})["expected_seconds"] = 42
    (tmp_path / "timed.ipynb").write_text(json.dumps(nb))
    cell = C.Cell(notebook=str(tmp_path / "timed.ipynb"), name="timed", out_dir=str(tmp_path), config="smoke")
    bare = C.Cell(notebook=str(PROBE_DIR / "grid_probe.ipynb"), name="bare", out_dir=str(tmp_path),
                  config="smoke")
    assert S.expected_seconds(cell) == 42.0 and S.expected_seconds(bare) == 0.0
    C.write_status(cell.status_path, C.CellResult(name="timed", group="timed", state="failed", seconds=3.0))
    assert S.expected_seconds(cell) == 42.0          # a failed run says nothing about the duration
    C.write_status(cell.status_path, C.CellResult(name="timed", group="timed", state="ok", seconds=7.5))
    assert S.expected_seconds(cell) == 7.5
    # the project's notebooks carry their header estimate into the .ipynb papermill runs
    from lrpkit.notebooks import build, sources

    assert all(build(py).metadata["lrpkit"]["expected_seconds"] > 0 for py in sources())
