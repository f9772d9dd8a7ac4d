"""lrpkit.cost and `lrpkit report --dry-run`: estimates scaled from a measured run (fixture
status files and results, no real run), configs/paper.yaml."""
from __future__ import annotations

import json
import math

import pytest
import xarray as xr

import lrpkit
from lrpkit import cost
from lrpkit.cli import main
from lrpkit.config import Config, load_config, project_root
from lrpkit.results import make_attrs, save_dataset

NB = project_root() / "notebooks"


def _status(folder, name, seconds, state="ok"):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.status.json").write_text(json.dumps({
        "name": name, "group": name, "state": state, "seconds": seconds, "params": {},
        "notebook": str(NB / f"{name}.ipynb"), "attempts": 1, "error_kind": None, "error": None,
        "failed_cell": None, "failed_cell_index": None, "failed_cell_source": None, "partial": None,
        "ipynb": f"{name}.ipynb", "html": f"{name}.html", "results": f"{name}.nc",
        "thumbnail": None, "fingerprint": "x", "started": "", "finished": "", "host": "h",
        "out_dir": str(folder)}))


def _results(folder, name, cfg):
    save_dataset(xr.Dataset(attrs=make_attrs(cfg, notebook=name)), folder / f"{name}.nc")


def test_paper_config_loads_with_the_papers_sample_sizes():
    paper, default = load_config("paper"), load_config("default")
    assert paper.evaluation.ap_images is None                       # Table 1: every test image
    assert (paper.evaluation.resampling_steps, paper.evaluation.resampling_repeats) == (100, 5)
    assert paper.evaluation.aopc_images == 5040 and paper.evaluation.aopc_repeats == 10
    assert paper.pda.heatmap_stride == 1 and paper.pda.approx_samples == 500
    assert paper.fgvis.defence_images == 1000 and paper.fgvis.defence_confidence == 0.995
    assert (paper.data.n_train, paper.data.n_val, paper.data.n_test) == (2501, 2510, 4952)
    for key in ("scenes", "models", "reports"):                     # never the default run's folders
        assert paper.paths[key] != default.paths[key]


def test_estimate_scales_the_measured_run_by_the_budget_keys(tmp_path):
    measured = Config()
    measured.evaluation.resampling_images = 42
    _status(tmp_path, "01_fv_validation", 100.0)
    _results(tmp_path, "01_fv_validation", measured)
    m = cost.measured_run("01_fv_validation", [tmp_path / "none", tmp_path])
    assert m.seconds == 100.0 and m.config.evaluation.resampling_images == 42
    assert "01_fv_validation.status.json" in m.basis
    cfg = Config()
    cfg.evaluation.resampling_images = 84                          # resampling twice, AP unchanged
    e = cost.estimate_notebook("01_fv_validation", cfg, m)
    fixed = cost.COSTS["01_fv_validation"].fixed
    assert e.seconds == pytest.approx(fixed + (100 - fixed) * (0.4 * 1 + 0.6 * 2))
    assert e.low == pytest.approx(100 * (1 - cost.TIMING_NOISE))   # all the time in the unchanged part
    assert e.high == pytest.approx((fixed + (100 - fixed) * 2) * (1 + cost.TIMING_NOISE))
    assert any("x2" in s for s in e.scaling)


def test_null_means_every_image_and_unknown_keys_count_as_unchanged(tmp_path):
    cfg = Config()
    cfg.evaluation.ap_images = None                                 # all n_test = 1000 scene images
    base = cost.Measured(50.0, Config(), "fixture")                 # ap_images 150
    e = cost.estimate_notebook("00_data_and_models", cfg, base)
    fixed = cost.COSTS["00_data_and_models"].fixed
    assert e.seconds == pytest.approx(fixed + (50 - fixed) * 1000 / 150)
    odd = cost.NotebookCost(fixed=0.0, terms=(cost.Term("x", ("evaluation.no_such_key",)),))
    e = cost.estimate_notebook("x", cfg, base, odd)
    assert e.seconds == pytest.approx(50.0) and "no_such_key" in " ".join(e.notes)
    assert math.isnan(cost.estimate_notebook("x", cfg, None).seconds)


def test_header_expected_seconds_when_no_run_is_recorded(tmp_path):
    m = cost.measured_run("00_data_and_models", [tmp_path], NB / "00_data_and_models.ipynb")
    assert m is not None and "expected_seconds" in m.basis and m.config == Config()
    _status(tmp_path, "00_data_and_models", 12.0, state="failed")   # a failed run is no measurement
    assert "expected_seconds" in cost.measured_run("00_data_and_models", [tmp_path],
                                                   NB / "00_data_and_models.ipynb").basis


def test_dry_run_prints_per_notebook_and_total_and_creates_nothing(tmp_path, capsys):
    reports = tmp_path / "measured"
    _status(reports, "00_data_and_models", 40.0)
    _results(reports, "00_data_and_models", Config())
    cfg = tmp_path / "big.yaml"
    cfg.write_text(f"paths:\n  scenes: {tmp_path}/scenes\n  models: {tmp_path}/models\n  reports: {tmp_path}/r\n"
                   "evaluation:\n  ap_images: 300\n")
    before = sorted(p.name for p in tmp_path.iterdir())
    rc = main(["report", "--config", str(cfg), "--notebooks", "00", "01", "--out", str(reports),
               "--scheduler", "local:2", "--dry-run"])
    out = capsys.readouterr().out
    assert rc == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == before     # no folder, no file
    assert sorted(p.name for p in reports.iterdir()) == ["00_data_and_models.nc",
                                                          "00_data_and_models.status.json"]
    fixed = cost.COSTS["00_data_and_models"].fixed
    want = fixed + (40 - fixed) * 2                                 # ap_images 150 -> 300
    line = next(ln for ln in out.splitlines() if ln.startswith("00_data_and_models"))
    assert f"{want:.0f} s" in line and "measured 40 s" in line
    assert "01_fv_validation" in out and "expected_seconds" in out  # no run of 01 here: its header
    assert "data: scenes" in out and "no generated scene set" in out
    assert "train: scene CNN" in out and "total:" in out and "on 2 worker(s)" in out
    assert "Uncertainty" in out
    assert main(["report", "--config", str(tmp_path / "missing.yaml"), "--dry-run"]) == 2


def test_cost_models_name_existing_keys():
    """Every key a cost model scales with is in the config (a renamed key is caught here)."""
    cfg = lrpkit.load_config("default")
    missing = [k for c in cost.COSTS.values() for t in c.terms for k in t.keys
               if not _has(cfg, k)]
    assert not missing, f"cost models name keys the config lacks: {missing}"


def _has(cfg, key):
    try:
        cost.key_value(cfg, key)
    except KeyError:
        return False
    return True
