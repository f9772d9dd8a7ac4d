"""Damaged data and models (issue "Robust-batch"): the up-to-date checks verify the content
records (sizes and SHA-256 of the files written), ``lrpkit data`` / ``lrpkit train`` rebuild a
damaged file and name it, and every loader names the file it failed on and how to rebuild it.

Every damage is done to a copy in a temporary folder (a tiny generated scene set, a tiny
untrained scene CNN); the repository's ``data/`` is never touched.  Training is replaced by a
stub that writes a model, so that what is tested is the decision, not the training.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from lrpkit import cli, pipeline
from lrpkit._integrity import DamagedFile, check_record, file_record, open_rgb
from lrpkit.config import load_config


def _write_config(root: Path) -> Path:
    raw = {"seed": 3,
           "paths": {"scenes": str(root / "scenes"), "models": str(root / "models"),
                     "reports": str(root / "reports")},
           "data": {"n_train": 5, "n_val": 2, "n_test": 2, "preset": "easy"},
           "cnn": {"size": 24, "crop": 16, "width": 4, "mult": [1, 2], "hidden": 8, "epochs": 1,
                   "checkpoints": [0, 1]}}
    path = root / "tiny.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    """A tiny generated scene set (``lrpkit data``) and its config; tests copy it before damage."""
    root = tmp_path_factory.mktemp("tiny")
    cfg_path = _write_config(root)
    assert cli.main(["data", "--config", str(cfg_path)]) == 0
    return root


@pytest.fixture
def project(scenes, tmp_path):
    """A private copy of the scene set and config (damage stays in this test)."""
    import shutil

    shutil.copytree(scenes / "scenes", tmp_path / "scenes")
    return _write_config(tmp_path)


def _jpeg(root: Path) -> Path:
    """The first training image of the scene set below ``root``."""
    first = (root / "scenes" / "ImageSets" / "Main" / "train.txt").read_text().split()[0]
    return root / "scenes" / "JPEGImages" / f"{first}.jpg"


def _truncate(path: Path, keep: int = 11) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - keep])


def _save_tiny_cnn(path: Path) -> None:
    import torch

    from lrpkit.models.cnn import SceneCNN, save_cnn

    torch.manual_seed(0)
    net = SceneCNN(6, width=4, mult=(1, 2), hidden=8, input_size=16)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.1)                      # biases non-zero
    path.parent.mkdir(parents=True, exist_ok=True)
    save_cnn(net, path, meta={"size": 24})


# ------------------------------------------------------------------ the records themselves
def test_a_record_notices_truncation_and_same_size_overwrites(tmp_path):
    f = tmp_path / "a.bin"
    f.write_bytes(b"\x01" * 100)
    rec = {"a.bin": file_record(f)}
    assert check_record(tmp_path, rec) is None
    f.write_bytes(b"\x02" * 100)                          # same size, other bytes
    assert "a.bin is damaged" in check_record(tmp_path, rec)
    assert check_record(tmp_path, rec, content=False) is None   # sizes alone cannot see it
    f.write_bytes(b"\x01" * 90)
    assert "90 bytes; 100 were written" in check_record(tmp_path, rec, content=False)
    f.unlink()
    assert check_record(tmp_path, rec) == "a.bin is missing"


# ------------------------------------------------------------------ scenes
def test_a_truncated_jpeg_is_regenerated_by_lrpkit_data(project, capsys):
    cfg = load_config(project)
    assert pipeline.scenes_current(cfg)
    jpg = _jpeg(project.parent)
    whole = jpg.read_bytes()
    _truncate(jpg)
    assert not pipeline.scenes_current(cfg)
    capsys.readouterr()
    assert cli.main(["data", "--config", str(project)]) == 0
    out = capsys.readouterr().out
    assert "up to date" not in out
    assert f"{jpg} is damaged" in out and "generated scenes" in out
    assert jpg.read_bytes() == whole                         # the same scene again (seeded)
    assert pipeline.scenes_current(cfg)


def test_a_same_size_overwrite_of_a_scene_file_is_seen(project):
    cfg = load_config(project)
    jpg = _jpeg(project.parent)
    jpg.write_bytes(os.urandom(jpg.stat().st_size))
    assert not pipeline.scenes_current(cfg)
    assert f"{jpg.name} is damaged" in pipeline.scenes_status(cfg)


def test_a_scene_set_from_before_the_records_is_checked_then_recorded(project, capsys):
    cfg = load_config(project)
    record = project.parent / "scenes" / pipeline.SCENE_CONTENT
    record.unlink()                                        # as written by an older lrpkit
    assert pipeline.scenes_current(cfg)                    # whole JPEGs: current
    assert cli.main(["data", "--config", str(project)]) == 0
    assert "scenes up to date" in capsys.readouterr().out and record.is_file()
    record.unlink()
    _truncate(_jpeg(project.parent))                       # a truncated JPEG has no end marker
    assert not pipeline.scenes_current(cfg)


def test_a_truncated_jpeg_is_named_by_every_image_loader(project):
    from lrpkit.data import VOCDataset
    from lrpkit.sources import load_dataset

    cfg = load_config(project)
    root = project.parent / "scenes"
    jpg = _jpeg(project.parent)
    _truncate(jpg)
    ds = VOCDataset(root, "train")
    i = [ds.image_path(k) for k in range(len(ds))].index(jpg)
    with pytest.raises(ValueError, match="lrpkit data --force") as exc:
        ds[i]
    assert str(jpg) in str(exc.value) and "truncated" in str(exc.value)
    src = load_dataset({"source": "scenes", "split": "train"}, cfg)
    j = [Path(p) for p in src.paths].index(jpg)
    with pytest.raises(DamagedFile, match="lrpkit data --force") as exc:
        src.image(j)
    assert exc.value.path == jpg
    text = root / "JPEGImages" / "note.jpg"
    text.write_text("not an image")
    with pytest.raises(DamagedFile, match=r"note\.jpg is damaged"):
        open_rgb(text)
    with pytest.raises(FileNotFoundError):
        open_rgb(root / "JPEGImages" / "missing.jpg")


# ------------------------------------------------------------------ models
@pytest.fixture
def trained(project, monkeypatch):
    """The config's CNN and FV folders as ``lrpkit train`` leaves them, with stub trainers that
    count their calls (and write a model again)."""
    cfg = load_config(project)
    calls = {"cnn": 0, "fisher": 0}

    def fake_cnn(c, **kw):
        calls["cnn"] += 1
        _save_tiny_cnn(pipeline.cnn_path(c))
        return "stub"

    def fake_fisher(c, **kw):
        calls["fisher"] += 1
        pipeline.fisher_path(c).parent.mkdir(parents=True, exist_ok=True)
        pipeline.fisher_path(c).write_bytes(b"a fitted model" * 50)
        return "stub"

    monkeypatch.setattr(pipeline, "train_cnn_from_config", fake_cnn)
    monkeypatch.setattr(pipeline, "fit_fisher_from_config", fake_fisher)
    pipeline.train_models(cfg, only=["cnn", "fisher"])
    assert calls == {"cnn": 1, "fisher": 1}
    assert pipeline.model_current(cfg, "cnn") and pipeline.model_current(cfg, "fisher")
    return cfg, calls


@pytest.mark.parametrize("damage", ["random bytes", "truncated", "same size"])
def test_a_damaged_cnn_is_trained_again_and_named(trained, project, capsys, damage):
    cfg, calls = trained
    pt = pipeline.cnn_path(cfg)
    size = pt.stat().st_size
    if damage == "random bytes":
        pt.write_bytes(os.urandom(4096))
    elif damage == "truncated":
        _truncate(pt, 100)
    else:
        data = bytearray(pt.read_bytes())
        data[size // 2] ^= 0xFF
        pt.write_bytes(bytes(data))
    assert not pipeline.model_current(cfg, "cnn")
    capsys.readouterr()
    assert cli.main(["train", "--config", str(project), "--only", "cnn"]) == 0
    out = capsys.readouterr().out
    assert "CNN up to date" not in out and f"{pt} is damaged" in out
    assert calls["cnn"] == 2 and pipeline.model_current(cfg, "cnn")


def test_text_in_fv_joblib_is_fitted_again_and_named(trained, project, capsys):
    cfg, calls = trained
    fv = pipeline.fisher_path(cfg)
    fv.write_text("this is not a model\n")
    capsys.readouterr()
    assert cli.main(["train", "--config", str(project), "--only", "fisher"]) == 0
    out = capsys.readouterr().out
    assert "up to date" not in out and f"{fv} is damaged" in out
    assert calls["fisher"] == 2 and pipeline.model_current(cfg, "fisher")


def test_a_damaged_epoch_checkpoint_makes_the_cnn_stale(trained):
    cfg, _ = trained
    ckpt = pipeline.cnn_path(cfg).parent / "cnn_epoch000.pt"
    _save_tiny_cnn(ckpt)
    pipeline.write_fingerprint(cfg, "cnn", pipeline.cnn_dir(cfg))
    assert pipeline.model_current(cfg, "cnn")
    ckpt.write_bytes(b"junk")
    assert "cnn_epoch000.pt is damaged" in pipeline.model_status(cfg, "cnn")


def test_a_model_folder_from_before_the_records_is_loaded_then_recorded(trained, project, capsys):
    cfg, calls = trained
    fp = pipeline.cnn_dir(cfg) / pipeline.FINGERPRINT
    old = json.loads(fp.read_text())
    del old["files"]                                        # as written by an older lrpkit
    fp.write_text(json.dumps(old))
    assert pipeline.model_current(cfg, "cnn")               # loads: current
    assert cli.main(["train", "--config", str(project), "--only", "cnn"]) == 0
    assert "CNN up to date" in capsys.readouterr().out and "files" in json.loads(fp.read_text())
    fp.write_text(json.dumps(old))
    pipeline.cnn_path(cfg).write_bytes(os.urandom(2048))
    assert "cnn.pt" in pipeline.model_status(cfg, "cnn")


def test_cnn_loader_names_the_file_and_the_rebuild_command(project):
    cfg = load_config(project)
    pt = pipeline.cnn_path(cfg)
    pt.parent.mkdir(parents=True)
    pt.write_bytes(os.urandom(5000))
    with pytest.raises(ValueError) as exc:
        pipeline.load_cnn(cfg)
    msg = str(exc.value)
    assert f"{pt} is damaged" in msg
    assert f"lrpkit train --config {project} --force --only cnn" in msg
    assert "weights_only" not in msg and "\n" not in msg
    from lrpkit.sources import load_model

    with pytest.raises(ValueError, match="lrpkit train --force --only cnn") as exc:
        load_model({"source": "scene_cnn"}, cfg)
    assert str(pt) in str(exc.value) and "weights_only" not in str(exc.value)


def test_fisher_loader_names_the_file_and_the_rebuild_command(project):
    cfg = load_config(project)
    fv = pipeline.fisher_path(cfg)
    fv.parent.mkdir(parents=True)
    for junk in (b"plain text, not joblib\n" * 4, os.urandom(3000)):
        fv.write_bytes(junk)
        with pytest.raises(ValueError) as exc:
            pipeline.load_fisher(cfg)
        msg = str(exc.value)
        assert f"{fv} is damaged" in msg and "--only fisher" in msg, msg
        from lrpkit.sources import load_model

        with pytest.raises(ValueError, match="lrpkit train --force --only fisher") as exc:
            load_model({"source": "fisher"}, cfg)
        assert str(fv) in str(exc.value)
