"""End to end: `lrpkit all` on the smoke config (tiny data, tiny models, every notebook)."""

import pytest
import yaml

from lrpkit import cli
from lrpkit.config import load_config, project_root
from lrpkit.results import open_dataset

NOTEBOOKS = sorted(p.stem for p in (project_root() / "notebooks").glob("*.ipynb"))


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    root = tmp_path_factory.mktemp("smoke")
    raw = yaml.safe_load((project_root() / "configs" / "smoke.yaml").read_text())
    raw["paths"] = {"scenes": str(root / "scenes"), "models": str(root / "models"),
                    "reports": str(root / "reports")}
    cfg_path = root / "smoke.yaml"
    cfg_path.write_text(yaml.safe_dump(raw))
    rc = cli.main(["all", "--config", str(cfg_path)])
    return rc, root, cfg_path


def test_main_job_runs_every_notebook_into_html_and_netcdf(smoke):
    rc, root, _ = smoke
    rep = root / "reports"
    index = (rep / "index.html").read_text()
    assert NOTEBOOKS, "no notebooks found"
    for name in NOTEBOOKS:
        assert (rep / f"{name}.html").stat().st_size > 10_000, name
        assert f'href="{name}.html"' in index
        ds = open_dataset(rep / f"{name}.nc")
        assert ds.attrs["lrpkit_version"] and len(ds.data_vars) > 0
    assert "0 not ok" in index and "class=\"failed\"" not in index, index
    assert rc == 0


def test_models_and_data_land_where_the_config_says(smoke):
    _, root, _ = smoke
    assert (root / "scenes" / "lrpkit_scenes.json").is_file()
    assert (root / "models" / "cnn" / "cnn.pt").is_file()


def test_second_run_reuses_data_and_models(smoke, capsys):
    _, root, cfg_path = smoke
    cfg = load_config(cfg_path)
    assert cli.scenes_current(cfg)
    cli.step_data(cfg)
    cli.step_train(cfg)
    out = capsys.readouterr().out
    assert "scenes up to date" in out and "CNN up to date" in out
    assert "Fisher-vector model up to date" in out
    # a changed model section (or data size) makes the model stale: it is retrained
    changed = {**cfg, "cnn": {**cfg["cnn"], "epochs": cfg["cnn"]["epochs"] + 1}}
    assert not cli.model_current(changed, "cnn", root / "models" / "cnn" / "cnn.pt")
    assert cli.model_current(cfg, "cnn", root / "models" / "cnn" / "cnn.pt")
    smaller = {**cfg, "data": {**cfg["data"], "n_train": cfg["data"]["n_train"] - 1}}
    assert not cli.model_current(smaller, "fisher", root / "models" / "fisher" / "fv.joblib")


def test_data_step_never_overwrites_a_foreign_folder(tmp_path):
    cfg = load_config("smoke")
    voc = tmp_path / "VOCdevkit"
    (voc / "VOC2007").mkdir(parents=True)
    (voc / "VOC2007" / "keep.txt").write_text("a user's data")
    cfg["paths"] = {**cfg["paths"], "scenes": str(voc)}
    with pytest.raises(FileExistsError, match="will not overwrite"):
        cli.step_data(cfg)
    assert (voc / "VOC2007" / "keep.txt").read_text() == "a user's data"


def test_star_import_names_only_existing_modules():
    ns: dict = {}
    exec("from lrpkit import *", ns)  # noqa: S102 - a star import needs exec
    assert "explain" in ns and "lrp" in ns and "fisher" in ns


def test_cli_rejects_missing_config(tmp_path, capsys):
    assert cli.main(["data", "--config", str(tmp_path / "nope.yaml")]) == 2
    assert "nope.yaml" in capsys.readouterr().err


def test_scenes_of_an_older_format_are_not_current(tmp_path):
    import json

    from lrpkit.data.scenes import FORMAT_VERSION

    cfg = load_config("smoke")
    cfg["paths"] = {**cfg["paths"], "scenes": str(tmp_path)}
    params = {"seed": cfg["seed"], **{k: cfg["data"][k] for k in ("n_train", "n_val", "n_test")}}
    for version, current in ((FORMAT_VERSION, True), (FORMAT_VERSION - 1, False)):
        (tmp_path / "lrpkit_scenes.json").write_text(json.dumps({"version": version, "params": params}))
        assert cli.scenes_current(cfg) is current


def test_fingerprint_is_computed_from_the_typed_sections(tmp_path):
    from lrpkit import pipeline

    cfg = load_config("smoke", paths={"scenes": str(tmp_path / "s"), "models": str(tmp_path / "m")})
    fp = pipeline.fingerprint(cfg, "cnn")
    # the whole section, defaults included (warmup is not in smoke.yaml)
    assert fp["params"] == cfg.cnn.to_dict() and fp["params"]["warmup"] == 0.05
    assert fp["data"]["preset"] == cfg.data.preset and fp["seed"] == cfg.seed
    other = load_config(cfg, cnn={"warmup": 0.1})
    assert pipeline.fingerprint(other, "cnn") != fp
    assert pipeline.fingerprint(other, "fisher") == pipeline.fingerprint(cfg, "fisher")
    with pytest.raises(ValueError, match="section"):
        pipeline.fingerprint(cfg, "lrp")


def test_pipeline_paths_and_loaders(tmp_path):
    from lrpkit import pipeline

    cfg = load_config("smoke", paths={"scenes": str(tmp_path / "s"), "models": str(tmp_path / "m")})
    assert pipeline.scenes_root(cfg) == tmp_path / "s"
    assert pipeline.cnn_path(cfg) == tmp_path / "m" / "cnn" / "cnn.pt"
    assert pipeline.cnn_path(cfg, 2) == tmp_path / "m" / "cnn" / "cnn_epoch002.pt"
    assert pipeline.fisher_path(cfg) == tmp_path / "m" / "fisher" / "fv.joblib"
    with pytest.raises(FileNotFoundError, match="fv.joblib"):
        pipeline.load_fisher(cfg)
    with pytest.raises(FileNotFoundError, match="cnn.pt"):
        pipeline.load_cnn(cfg)
    assert not pipeline.model_current(cfg, "cnn") and not pipeline.scenes_current(cfg)
    # a plain dict (e.g. a notebook's edited copy) is accepted wherever a Config is
    assert pipeline.cnn_path(cfg.to_dict()) == pipeline.cnn_path(cfg)
    with pytest.raises(ValueError, match="unknown model"):
        pipeline.train_models(cfg, only=["svm"])


def test_load_models_refuses_models_of_different_class_orders(monkeypatch):
    from types import SimpleNamespace

    from lrpkit import pipeline

    cnn = SimpleNamespace(classes=["boat", "bus"])
    monkeypatch.setattr(pipeline, "load_cnn", lambda cfg: cnn)
    monkeypatch.setattr(pipeline, "load_fisher", lambda cfg: SimpleNamespace(class_names_=["boat", "bus"]))
    got = pipeline.load_models("smoke")
    assert got[0] is cnn and got[2] == ["boat", "bus"]
    monkeypatch.setattr(pipeline, "load_fisher", lambda cfg: SimpleNamespace(class_names_=["bus", "boat"]))
    with pytest.raises(ValueError, match="differ from the Fisher-vector"):
        pipeline.load_models("smoke")
