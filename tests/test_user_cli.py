"""The ``lrpkit`` command on a user's model and data: what it builds, what the index names, grids
over saved models, and ``lrpkit report --config <yaml>`` end to end.

The user's project is ``tests/userdata.py::write_user_project``: a random torchvision ResNet-18
saved as a state dict and a hand-written VOC-layout devkit (3 classes, one outside VOC's 20).
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch
import yaml

from lrpkit import cli, pipeline
from lrpkit import batch as B
from lrpkit.batch.analysed import SUFFIX, describe, read_analysed
from lrpkit.config import load_config
from lrpkit.results import open_dataset
from userdata import CLASSES, write_devkit, write_user_project


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("user")
    return root, write_user_project(root)


def _cfg(path: Path, **over) -> Path:
    """A copy of the YAML at ``path`` with sections replaced (``model=...``), beside it."""
    data = yaml.safe_load(path.read_text())
    data.update(over)
    out = path.with_name(f"variant_{len(list(path.parent.glob('variant_*')))}.yaml")
    out.write_text(yaml.safe_dump(data, sort_keys=False))
    return out


def test_what_a_config_asks_lrpkit_to_build(project):
    _, user = project
    assert pipeline.models_to_train("default") == ("cnn", "fisher") and pipeline.needs_scenes("default")
    assert pipeline.models_to_train(user) == () and not pipeline.needs_scenes(user)
    tv = {"source": "torchvision", "arch": "resnet18", "weights": "a.pt"}
    cases = [  # (model / models, dataset source) -> models trained, scenes needed
        ({"model": {"source": "scene_cnn", "weights": "mine.pt"}}, "voc", (), False),  # its own file
        ({"model": tv}, "scenes", (), True),                       # a user's model on lrpkit's scenes
        ({"models": [tv, {"source": "fisher"}]}, "scenes", ("fisher",), True),
        ({"models": [{"source": "scene_cnn"}, tv]}, "voc", ("cnn",), True),   # trained on the scenes
        ({"model": {"source": "fisher"}}, "voc", (), False),       # fitted by the notebooks, not here
    ]
    for sections, ds, trained, scenes in cases:
        cfg = load_config({**sections, "dataset": {"source": ds, "root": "d"}})
        assert pipeline.models_to_train(cfg) == trained, sections
        assert pipeline.needs_scenes(cfg) is scenes, sections


def test_all_and_train_build_nothing_for_a_users_model(project, monkeypatch, capsys):
    root, user = project
    calls = []

    def fake_run_all(config, notebooks=None, out_dir=None, **kw):
        calls.append((config, notebooks))
        return B.ReportSummary(Path(root / "reports"), Path(root / "reports" / "index.html"))

    def forbidden(*a, **k):
        raise AssertionError("nothing may be built for a user's model on a user's data set")

    monkeypatch.setattr(B, "run_all", fake_run_all)
    for name in ("make_scenes", "train_cnn_from_config", "fit_fisher_from_config"):
        monkeypatch.setattr(pipeline, name, forbidden)
    assert cli.main(["all", "--config", str(user), "--notebooks", "00"]) == 0
    assert calls == [(str(user), ["00"])]
    assert cli.main(["train", "--config", str(user)]) == 0
    out = capsys.readouterr().out
    assert out.count("nothing to train") == 2 and "resnet18 (torchvision)" in out
    assert not (root / "no-scenes").exists() and not (root / "models").exists()
    assert not list(root.rglob("cnn.pt")) and not list(root.rglob("lrpkit_scenes.json"))


def test_a_missing_model_file_is_named_before_any_notebook_runs(project, monkeypatch, capsys):
    root, user = project
    monkeypatch.setattr(B, "run_all", lambda *a, **k: pytest.fail("no notebook may start"))
    bad = _cfg(user, model={"source": "torchvision", "arch": "resnet18",
                            "weights": str(root / "weights" / "typo.pt")})
    for cmd in ("report", "all"):
        assert cli.main([cmd, "--config", str(bad)]) == 2
        err = capsys.readouterr().err
        assert "model.weights: no such file" in err and "typo.pt" in err, err
    gone = _cfg(user, dataset={"source": "voc", "root": str(root / "nowhere"), "split": "test"})
    assert cli.main(["report", "--config", str(gone)]) == 2
    assert "dataset.root: no such folder" in capsys.readouterr().err


def test_describe_names_the_models_and_the_data_as_the_sources_load_them(project):
    from lrpkit.sources import load_model

    root, user = project
    d = describe(user)
    assert d["models"] == [{"where": "model", "name": "resnet18", "source": "torchvision",
                            "file": str(root / "weights" / "resnet18_sd.pt"), "arch": "resnet18"}]
    assert d["dataset"] == {"name": "VOC2007", "source": "voc",
                            "root": str(root / "VOCdevkit" / "VOC2007"), "split": "test", "images": 4}
    ts = {"source": "torchscript", "weights": str(root / "weights" / "resnet18_ts.pt")}
    two = describe(_cfg(user, models=[ts, {"source": "scene_cnn", "name": "mine"}],
                        dataset={"source": "voc", "root": str(root / "VOCdevkit"), "split": "train",
                                 "classes": list(CLASSES), "images": 2}))
    assert [m["name"] for m in two["models"]] == [load_model(ts, classes=CLASSES).name, "mine"]
    assert two["models"][1]["file"].endswith(os.path.join("cnn", "cnn.pt"))   # lrpkit's default file
    assert two["dataset"]["split"] == "train" and two["dataset"]["images"] == 2
    missing = describe(load_config({"dataset": {"source": "voc", "root": str(root / "nowhere")}}))
    assert missing["dataset"]["images"] is None and "nowhere" in missing["dataset"]["error"]


PROBE = '''import numpy as np, xarray as xr
import lrpkit
from lrpkit.sources import load_sources
src = load_sources(lrpkit.load_config(config))
m, ds = src.model, src.dataset
s = m.scores(m.inputs(ds.images(range(2))))
res = xr.Dataset({"score": (("image", "class"), s)},
                 coords={"image": ds.ids[:2], "class": list(m.classes)},
                 attrs={"model_file": str(m.path)})
lrpkit.results.save_dataset(res, results_path)'''


def _probe(folder: Path) -> Path:
    """A one-cell notebook that loads its config's sources and scores two images."""
    folder.mkdir(parents=True, exist_ok=True)
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell('config = "default"\nresults_path = None',
                                          metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell(PROBE)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(folder / "sources_probe.ipynb"))
    return folder


def _two_models(root: Path) -> tuple[Path, Path]:
    """The fixture's ResNet-18 and a copy with another head bias, both as state dicts."""
    a = root / "weights" / "resnet18_sd.pt"
    b = root / "weights" / "resnet18_other.pt"
    if not b.exists():
        sd = torch.load(a, weights_only=True)
        sd["fc.bias"] = sd["fc.bias"] + torch.tensor([3.0, -2.0, 1.0])
        torch.save(sd, b)
    return a, b


def test_a_grid_over_two_saved_models(project, tmp_path):
    root, user = project
    a, b = _two_models(root)
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump({
        "config": str(user), "out": str(tmp_path / "out"), "notebook_dir": str(_probe(tmp_path / "nbs")),
        "retries": 0, "notebooks": {"sources_probe": {"model.weights": [str(a), str(b)]}}}))
    summary = B.run_grid(grid, progress=False)
    assert summary.ok, str(summary)
    comb = open_dataset(summary.combined["sources_probe"])
    assert sorted(comb["model_weights"].values) == sorted([str(a), str(b)])
    assert list(comb["class"].values) == list(CLASSES) and len(comb["image"]) == 2
    diff = (comb["score"].sel(model_weights=str(b)) - comb["score"].sel(model_weights=str(a))).values
    np.testing.assert_allclose(diff, np.tile([3.0, -2.0, 1.0], (2, 1)), atol=1e-4)   # the two heads
    cells = B.grid_cells(B.load_grid(grid))
    files = [read_analysed(c.out_dir, c.name)["models"][0]["file"] for c in cells]
    assert files == [str(a), str(b)]                       # each cell names its own model
    index = (tmp_path / "out" / "index.html").read_text()
    assert "<th>analysed</th>" in index and index.count('<span class="name">VOC2007</span>') == 2
    assert str(a) in index and str(b) in index


def test_grid_cells_over_models_lists_and_data_roots(project, tmp_path):
    root, user = project
    a, b = _two_models(root)
    other = write_devkit(tmp_path / "second")
    tv = {"source": "torchvision", "arch": "resnet18", "classes": list(CLASSES), "size": 72, "crop": 64}
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump({
        "config": str(user), "out": str(tmp_path / "out"), "notebook_dir": str(_probe(tmp_path / "nbs")),
        "notebooks": {"sources_probe": [
            {"models": [[{**tv, "weights": str(a)}],
                        [{**tv, "weights": str(a), "name": "A"}, {**tv, "weights": str(b), "name": "B"}]]},
            {"dataset.root": [str(root / "VOCdevkit"), str(other)]}]}}))
    cells = B.grid_cells(B.load_grid(grid))
    assert len(cells) == 4 and len({c.name for c in cells}) == 4
    for c in cells:
        B.analysed.write_analysed(c)
    desc = [read_analysed(c.out_dir, c.name) for c in cells]
    assert [[m["name"] for m in d["models"]] for d in desc] == [["resnet18"], ["A", "B"],
                                                                 ["resnet18"], ["resnet18"]]
    assert [d["dataset"]["root"] for d in desc[2:]] == [str(root / "VOCdevkit" / "VOC2007"),
                                                        str(other / "VOC2007")]
    assert all((Path(c.out_dir) / f"{c.name}{SUFFIX}").is_file() for c in cells)
    # a typo in a grid's file list is said before any kernel starts, naming the key and the file
    grid.write_text(yaml.safe_dump({
        "config": str(user), "out": str(tmp_path / "out"), "notebook_dir": str(tmp_path / "nbs"),
        "notebooks": {"sources_probe": {"model.weights": [str(a), str(root / "typo.pt")]}}}))
    with pytest.raises(FileNotFoundError, match=r"notebooks.sources_probe: model.weights: .*typo.pt"):
        B.grid_cells(B.load_grid(grid))


def test_a_replaced_model_file_makes_the_report_stale(project, tmp_path):
    from lrpkit.batch.cells import fingerprint

    root, user = project
    a, _ = _two_models(root)
    mine = tmp_path / "mine.pt"
    mine.write_bytes(a.read_bytes())
    cfg = _cfg(user, model={**yaml.safe_load(user.read_text())["model"], "weights": str(mine)})
    cell = B.notebook_cell(_probe(tmp_path / "nbs") / "sources_probe.ipynb", tmp_path / "out", str(cfg))
    before = fingerprint(cell)
    torch.save(torch.load(a, weights_only=True), mine)      # retrained / re-saved: new bytes, new time
    os.utime(mine, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert fingerprint(cell) != before


def test_report_on_a_users_model_end_to_end(tmp_path):
    """``lrpkit report --config <yaml> --notebooks 00`` in the user's folder: the index names the
    user's model and data, and neither scenes nor a scene CNN were made."""
    user = write_user_project(tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in ("LRPKIT_PROJECT", "PYTHONPATH")}
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "lrpkit", "report", "--config", str(user), "--notebooks", "00"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1200)
    wall = time.perf_counter() - t0
    print(f"lrpkit report --notebooks 00 on the user's ResNet-18 / VOC devkit: {wall:.1f} s wall")
    assert out.returncode == 0, f"{out.stdout[-4000:]}\n{out.stderr[-4000:]}"
    rep = tmp_path / "reports"
    index = (rep / "index.html").read_text()
    assert "resnet18" in index and "VOC2007" in index and "torchvision" in index
    assert str(tmp_path / "weights" / "resnet18_sd.pt") in index and "4 images" in index
    assert (rep / "00_data_and_models.html").is_file() and (rep / "00_data_and_models.nc").is_file()
    assert not (tmp_path / "no-scenes").exists() and not (tmp_path / "data").exists()
    assert not list(tmp_path.rglob("cnn.pt")) and not list(tmp_path.rglob("lrpkit_scenes.json"))
