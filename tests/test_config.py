import pytest

from lrpkit.config import load_config, project_root, resolve_path


def test_named_configs_load_over_defaults():
    cfg = load_config("smoke")
    assert cfg["data"]["n_train"] < load_config("default")["data"]["n_train"]
    assert cfg["reports"]["hide_code"] is True
    assert cfg["_source"].endswith("smoke.yaml")


def test_overrides_and_dicts_merge_deeply():
    cfg = load_config({"data": {"n_train": 5}}, seed=7)
    assert {k: cfg["data"][k] for k in ("n_train", "n_val", "n_test")} == {
        "n_train": 5, "n_val": 500, "n_test": 1000}
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


# --------------------------------------------------------------------------- typed sections
import dataclasses  # noqa: E402

import yaml  # noqa: E402

from lrpkit.config import SECTIONS, Config, as_config  # noqa: E402


def test_sections_are_dataclasses_with_attribute_and_mapping_access():
    cfg = load_config("smoke")
    assert isinstance(cfg, Config)
    for name, cls in SECTIONS.items():
        sec = cfg[name]
        if issubclass(cls, list):  # models: a list of model sections
            assert isinstance(sec, cls) and all(dataclasses.is_dataclass(m) for m in sec)
            continue
        assert dataclasses.is_dataclass(sec) and isinstance(sec, cls)
        assert getattr(cfg, name) is sec
        for f in dataclasses.fields(sec):
            assert sec[f.name] == getattr(sec, f.name) == sec.get(f.name)
    assert cfg.cnn.epochs == cfg["cnn"]["epochs"] == 2
    assert {**cfg}["cnn"] is cfg.cnn and dict(cfg.data)["n_train"] == 60
    assert cfg.get("seed") == 0 and cfg["_source"] == cfg.source
    assert cfg.evaluation.get("no_such_key", "x") == "x"   # Mapping.get semantics


def test_default_yaml_states_exactly_the_dataclass_defaults():
    raw = yaml.safe_load((project_root() / "configs" / "default.yaml").read_text())
    defaults = Config().to_dict()
    for name, section in raw.items():
        if isinstance(section, dict):
            for k, v in section.items():
                assert defaults[name][k] == v, f"configs/default.yaml {name}.{k}={v!r} but the " \
                    f"dataclass default is {defaults[name][k]!r}"
        else:
            assert defaults[name] == section
    assert load_config("default").to_dict() == defaults


@pytest.mark.parametrize("section", ["lrp", "cnn", "fisher", "evaluation", "data", "paths",
                                     "reports", "pda", "fgvis"])
def test_unknown_key_in_any_section_is_named_with_the_allowed_ones(section, tmp_path):
    p = tmp_path / "typo.yaml"
    p.write_text(yaml.safe_dump({section: {"epsilonn": 1}}))
    with pytest.raises(ValueError, match="epsilonn") as exc:
        load_config(p)
    assert "typo.yaml" in str(exc.value)
    for allowed in dataclasses.fields(SECTIONS[section]):
        assert allowed.name in str(exc.value)
    with pytest.raises(ValueError, match="'sede'.*allowed keys: .*seed"):
        load_config({"sede": 1})


def test_wrong_types_raise_and_ints_pass_as_floats():
    with pytest.raises(TypeError, match="cnn.epochs must be int"):
        load_config("smoke", cnn={"epochs": "3"})
    with pytest.raises(TypeError, match="fisher.bin_sizes"):
        load_config("smoke", fisher={"bin_sizes": 4})
    cfg = load_config("smoke", **{"fisher.C": 3})
    assert cfg.fisher.C == 3.0 and isinstance(cfg.fisher.C, float)
    with pytest.raises(AttributeError, match="allowed keys"):
        cfg.cnn.epochz = 1
    with pytest.raises(KeyError):
        cfg["cnn"]["epochz"] = 1


def test_assignment_copies_and_round_trips():
    cfg = load_config("smoke")
    cfg["paths"] = {"scenes": "/tmp/x"}                   # partial: the rest from the defaults
    assert cfg.paths.scenes == "/tmp/x" and cfg.paths.models == "data/models"
    again = load_config(cfg)
    assert again == cfg and again is not cfg and again.cnn is not cfg.cnn
    assert as_config(cfg) is cfg
    plain = load_config({**cfg, "cnn": {**cfg["cnn"], "epochs": 9}})
    assert plain.cnn.epochs == 9 and cfg.cnn.epochs == 2
    assert load_config(yaml.safe_load(yaml.safe_dump(cfg.to_dict()))) == cfg
