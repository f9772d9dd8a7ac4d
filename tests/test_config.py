import pytest

from lrpkit.config import load_config, project_root, resolve_path


def test_named_configs_load_over_defaults():
    cfg = load_config("smoke")
    assert cfg["data"]["n_train"] < load_config("default")["data"]["n_train"]
    assert cfg["reports"]["hide_code"] is True
    assert cfg["_source"].endswith("smoke.yaml")


def test_overrides_and_dicts_merge_deeply():
    cfg = load_config({"data": {"n_train": 5}}, seed=7)
    assert cfg["data"] == {"n_train": 5, "n_val": 500, "n_test": 1000}
    assert cfg["seed"] == 7


def test_resolve_path_is_absolute_under_project():
    cfg = load_config("default")
    assert resolve_path(cfg, "scenes") == project_root() / "data" / "scenes"
    with pytest.raises(ValueError, match="paths.nope"):
        resolve_path(cfg, "nope")


def test_bad_config_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="no_such"):
        load_config(tmp_path / "no_such.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(ValueError, match="bad.yaml"):
        load_config(bad)
    lst = tmp_path / "list.yaml"
    lst.write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="mapping"):
        load_config(lst)
