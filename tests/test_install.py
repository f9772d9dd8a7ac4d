"""Installed use: lrpkit outside its repository.

The project folder (``project_root``) is found from the working directory or
``$LRPKIT_PROJECT``, never from where the package lies; ``load_config()`` without a project is
the dataclass defaults; the shipped configs and notebooks (``lrpkit.resources``) are in the wheel;
``lrpkit init DIR`` writes a project; ``python -m lrpkit`` is the command.  The last test builds
the wheel, installs it into a fresh virtual environment and, in an empty folder, runs ``lrpkit
init`` and a smoke report (notebook 00) on a user's model and VOC devkit.
"""
from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from lrpkit import cli
from lrpkit.config import Config, load_config, project_root, resolve_path
from lrpkit.resources import bundled, init_project, project_files
from userdata import write_user_project

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def outside(tmp_path, monkeypatch):
    """An empty working folder outside any project."""
    monkeypatch.delenv("LRPKIT_PROJECT", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path.resolve()


def test_outside_a_project_configs_are_the_defaults_and_paths_the_cwd(outside, monkeypatch):
    assert project_root() == outside                    # not the checkout lrpkit runs from
    cfg = load_config()
    assert cfg.source == "<defaults>" and cfg.to_dict() == Config().to_dict()
    assert resolve_path(cfg, "scenes") == outside / "data" / "scenes"
    assert load_config("<defaults>", seed=3).seed == 3  # the source a defaults run hands notebooks
    smoke = load_config("smoke")                        # shipped with lrpkit
    assert Path(smoke.source) == bundled("configs") / "smoke.yaml" and smoke.data.n_train == 60
    assert resolve_path(smoke, "scenes") == outside / "data" / "smoke" / "scenes"
    with pytest.raises(FileNotFoundError, match="nosuch.yaml"):
        load_config("nosuch")
    monkeypatch.setenv("LRPKIT_PROJECT", str(ROOT))     # configured explicitly: the checkout
    assert project_root() == ROOT and load_config().source == str(ROOT / "configs" / "default.yaml")
    monkeypatch.setenv("LRPKIT_PROJECT", str(outside / "missing"))
    with pytest.raises(FileNotFoundError, match="LRPKIT_PROJECT=.*missing"):
        project_root()


def test_shipped_files_are_the_repository_configs_and_notebooks():
    files = project_files()
    want = {f"configs/{p.relative_to(ROOT / 'configs').as_posix()}" for p in ROOT.glob("configs/**/*.yaml")}
    want |= {f"notebooks/{p.name}" for p in ROOT.glob("notebooks/*.ipynb")}
    assert set(files) == want and "configs/examples/torchvision_voc.yaml" in files
    assert all(src.read_bytes() == (ROOT / rel).read_bytes() for rel, src in files.items())


def test_init_writes_a_project_and_keeps_changed_files(outside, capsys, monkeypatch):
    proj = outside / "audit"
    assert cli.main(["init", str(proj)]) == 0
    written = sorted(p.relative_to(proj).as_posix() for p in proj.rglob("*") if p.is_file())
    assert written == sorted(project_files())
    assert not list(proj.glob("notebooks/*.py"))      # the .ipynb run; sources are for developers
    monkeypatch.chdir(proj / "notebooks")
    assert project_root() == proj                      # configs/ + notebooks/: a project
    assert load_config().source == str(proj / "configs" / "default.yaml")
    assert init_project(proj) == []                    # identical files: nothing rewritten
    (proj / "configs" / "smoke.yaml").write_text("seed: 3\n")
    capsys.readouterr()
    assert cli.main(["init", str(proj)]) == 2
    err = capsys.readouterr().err
    assert "configs/smoke.yaml" in err and "--force" in err
    assert (proj / "configs" / "smoke.yaml").read_text() == "seed: 3\n"
    assert init_project(proj, force=True) == [proj / "configs" / "smoke.yaml"]
    assert (proj / "configs" / "smoke.yaml").read_bytes() == (ROOT / "configs" / "smoke.yaml").read_bytes()
    (outside / "afile").write_text("x")
    with pytest.raises(NotADirectoryError, match="afile"):
        init_project(outside / "afile")


def test_python_dash_m_lrpkit_is_the_command(outside):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LRPKIT_PROJECT")}
    out = subprocess.run([sys.executable, "-m", "lrpkit", "--help"], capture_output=True, text=True,
                         cwd=outside, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("usage: lrpkit") and "init" in out.stdout
    out = subprocess.run([sys.executable, "-m", "lrpkit", "init", "--help"], capture_output=True,
                         text=True, cwd=outside, env=env, timeout=300)
    assert out.returncode == 0 and "project folder" in out.stdout


def test_pyproject_lists_every_subpackage_and_maps_the_shipped_folders():
    from setuptools import find_packages

    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapped = tool["package-dir"]
    assert mapped == {"lrpkit.resources.configs": "configs", "lrpkit.resources.notebooks": "notebooks"}
    found = set(find_packages(str(ROOT), include=["lrpkit*"]))
    listed = set(tool["packages"])
    assert found - listed == set(), f"add {sorted(found - listed)} to [tool.setuptools] packages"
    assert listed - found == set(mapped), f"no such package(s): {sorted(listed - found - set(mapped))}"
    assert tool["package-data"]["lrpkit.resources.configs"] == ["*.yaml", "examples/*.yaml"]


def _run(args, **kw):
    out = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=600, **kw)
    assert out.returncode == 0, f"{args}:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


def test_wheel_works_in_a_fresh_venv_outside_the_repository(tmp_path):
    # build from a copy: the build writes build/ and *.egg-info next to the sources
    src = tmp_path / "src"
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("lrpkit", "configs", "notebooks"):
        shutil.copytree(ROOT / name, src / name, ignore=skip)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
          src, "-w", tmp_path / "dist"])
    (wheel,) = (tmp_path / "dist").glob("lrpkit-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for rel in project_files():
        assert f"lrpkit/resources/{rel}" in names, rel
    assert {"lrpkit/sources.py", "lrpkit/__main__.py", "lrpkit/resources/__init__.py"} <= names

    # a fresh venv seeing the test venv's packages (not its editable lrpkit: a plain path entry
    # does not run the .pth files there), lrpkit from the wheel
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv])
    py = venv / "bin" / "python"
    target = Path(_run([py, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]).stdout.strip())
    (target / "_test_venv.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    _run([sys.executable, "-m", "pip", "--python", py, "install", "--no-deps", "--no-index", wheel])

    empty = tmp_path / "empty"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LRPKIT_PROJECT")}
    probe = ("import lrpkit, lrpkit.config as c; cfg = c.load_config(); "
             "print(lrpkit.__file__); print(cfg.source); print(c.project_root()); "
             "print(c.load_config('smoke').source); print(c.resolve_path(cfg, 'models'))")
    lines = _run([py, "-c", probe], cwd=empty, env=env).stdout.splitlines()
    assert Path(lines[0]).is_relative_to(venv), lines           # the wheel's lrpkit, not the checkout
    assert lines[1] == "<defaults>" and Path(lines[2]) == empty.resolve()
    assert Path(lines[3]).is_relative_to(venv) and Path(lines[4]) == empty.resolve() / "data" / "models"
    assert "init" in _run([py, "-m", "lrpkit", "--help"], cwd=empty, env=env).stdout
    _run([venv / "bin" / "lrpkit", "init", "audit"], cwd=empty, env=env)
    assert sorted(p.relative_to(empty / "audit").as_posix() for p in (empty / "audit").rglob("*")
                  if p.is_file()) == sorted(project_files())
    lines = _run([py, "-c", "import lrpkit.config as c; print(c.project_root()); print(c.load_config().source)"],
                 cwd=empty / "audit", env=env).stdout.splitlines()
    assert lines == [str((empty / "audit").resolve()), str((empty / "audit").resolve() / "configs" / "default.yaml")]

    # a smoke report outside the repository: a user's ResNet-18 on a user's VOC devkit, notebook 00
    # as shipped in the wheel, the reports where the config says; nothing of lrpkit's is built
    mine = tmp_path / "mine"
    user = write_user_project(mine)
    # the packages' data files (nbconvert's HTML templates) lie below the test venv's prefix, where
    # a real install into the fresh venv would have put them: point Jupyter there
    share = Path(sys.prefix) / "share" / "jupyter"
    _run([venv / "bin" / "lrpkit", "report", "--config", user, "--notebooks", "00"], cwd=mine,
         env={**env, "JUPYTER_PATH": str(share)})
    rep = mine / "reports"
    index = (rep / "index.html").read_text()
    assert "resnet18" in index and "VOC2007" in index and "1 run(s), 0 not ok" in index
    status = json.loads((rep / "00_data_and_models.status.json").read_text())
    assert status["state"] == "ok" and Path(status["notebook"]).is_relative_to(venv)  # the wheel's
    assert (rep / "00_data_and_models.html").is_file() and (rep / "00_data_and_models.nc").is_file()
    assert not (mine / "no-scenes").exists() and not list(mine.rglob("cnn.pt"))
