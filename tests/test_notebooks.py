"""The notebooks: jupytext percent sources notebooks/*.py paired with committed .ipynb files that
papermill runs (lrpkit.notebooks). The pair must not drift, the .ipynb carries no outputs, and
every notebook takes the runner's parameters."""
import ast
import json
from pathlib import Path

import jupytext
import nbformat
import pytest

from lrpkit import notebooks as nbs

ROOT = Path(__file__).resolve().parents[1]
SOURCES = nbs.sources(ROOT / "notebooks")
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def _tags(cell):
    return list(cell.get("metadata", {}).get("tags", []))


def test_there_are_notebooks_and_every_ipynb_has_a_source():
    assert SOURCES, "no notebooks/*.py sources"
    assert sorted(p.stem for p in NOTEBOOKS) == sorted(p.stem for p in SOURCES)


@pytest.mark.parametrize("py", SOURCES, ids=lambda p: p.stem)
def test_ipynb_is_what_its_source_generates(py):
    ipynb = py.with_suffix(".ipynb")
    assert ipynb.is_file(), f"{ipynb.name} missing: run `python -m lrpkit.notebooks sync`"
    assert ipynb.read_text(encoding="utf-8") == nbs.render(py), \
        f"{ipynb.name} drifted from {py.name}: run `python -m lrpkit.notebooks sync`"


@pytest.mark.parametrize("py", SOURCES, ids=lambda p: p.stem)
def test_cells_and_tags_match_jupytext_reading_of_the_source(py):
    """Independent of lrpkit.notebooks.build: jupytext's own reading of the .py against the file."""
    src = jupytext.read(str(py), fmt="py:percent")
    committed = json.loads(py.with_suffix(".ipynb").read_text(encoding="utf-8"))
    want = [(c.cell_type, c.source, _tags(c)) for c in src.cells]
    have = [(c["cell_type"], "".join(c["source"]), _tags(c)) for c in committed["cells"]]
    assert have == want


@pytest.mark.parametrize("py", SOURCES, ids=lambda p: p.stem)
def test_committed_without_outputs_and_with_runner_parameters(py):
    nb = nbformat.read(str(py.with_suffix(".ipynb")), as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and not any(c.get("outputs") or c.get("execution_count") is not None for c in code)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    assert "parameters" in _tags(code[0]), "the first code cell must be the parameters cell"
    assert sum("parameters" in _tags(c) for c in nb.cells) == 1
    params: dict = {}
    exec(compile(code[0].source, f"{py.name}:parameters", "exec"), {}, params)  # noqa: S102
    assert params.get("config") == "default" and "results_path" in params and params["results_path"] is None


@pytest.mark.parametrize("py", SOURCES, ids=lambda p: p.stem)
def test_source_is_plain_python(py):
    """No IPython magics in the script (jupytext comments them out): linters and imports work."""
    ast.parse(py.read_text(encoding="utf-8"), filename=str(py))


def test_the_old_string_cell_builders_are_gone():
    assert not (ROOT / "tools" / "nbbuild.py").exists()
    assert not list((ROOT / "tools").glob("nb_*.py"))


# --------------------------------------------------------------------------- the sync tooling

SCRIPT = '''# %% [markdown]
# # Title
#
# Some *text*.

# %% tags=["parameters"]
config = "default"
results_path = None

# %%
x = 1 + 1
print(x)
'''


@pytest.fixture
def nb_dir(tmp_path):
    (tmp_path / "00_tiny.py").write_text(SCRIPT)
    return tmp_path


def test_sync_writes_cells_tags_ids_and_is_idempotent(nb_dir):
    changed = nbs.sync(nb_dir=nb_dir)
    assert changed == [nb_dir / "00_tiny.ipynb"]
    nb = json.loads((nb_dir / "00_tiny.ipynb").read_text())
    assert [c["cell_type"] for c in nb["cells"]] == ["markdown", "code", "code"]
    assert "".join(nb["cells"][0]["source"]) == "# Title\n\nSome *text*."
    assert _tags(nb["cells"][1]) == ["parameters"] and _tags(nb["cells"][2]) == []
    assert "".join(nb["cells"][2]["source"]) == "x = 1 + 1\nprint(x)"
    assert [c["id"] for c in nb["cells"]] == ["00-tiny-00", "00-tiny-01", "00-tiny-02"]
    assert all(c["outputs"] == [] and c["execution_count"] is None for c in nb["cells"][1:])
    before = (nb_dir / "00_tiny.ipynb").read_bytes()
    assert nbs.sync(nb_dir=nb_dir) == []                       # up to date: nothing written
    assert (nb_dir / "00_tiny.ipynb").read_bytes() == before
    assert nbs.check(nb_dir) == []
    assert not [p for p in nb_dir.iterdir() if p.name.startswith(".")]   # no temp files left


def test_check_names_each_kind_of_drift(nb_dir):
    nbs.sync(nb_dir=nb_dir)
    py, ipynb = nb_dir / "00_tiny.py", nb_dir / "00_tiny.ipynb"
    py.write_text(SCRIPT.replace("x = 1 + 1", "x = 2 + 2"))    # source edited, not synced
    drift = nbs.check(nb_dir)
    assert len(drift) == 1 and drift[0].path == ipynb and "cell 2 (source)" in drift[0].problem

    nbs.sync(nb_dir=nb_dir)
    nb = json.loads(ipynb.read_text())
    nb["cells"][2]["outputs"] = [{"output_type": "stream", "name": "stdout", "text": "4\n"}]
    nb["cells"][2]["execution_count"] = 1
    ipynb.write_text(json.dumps(nb))                          # run and saved with outputs
    assert any("outputs" in d.problem and "[2]" in d.problem for d in nbs.check(nb_dir))
    assert nbs.main(["check", "--dir", str(nb_dir)]) == 1

    nbs.sync(nb_dir=nb_dir)
    nb = json.loads(ipynb.read_text())
    nb["cells"][1]["metadata"] = {}                           # tag lost in a hand edit
    ipynb.write_text(json.dumps(nb, indent=1))
    assert any("cell 1 (metadata)" in d.problem for d in nbs.check(nb_dir))

    nbs.sync(nb_dir=nb_dir)
    (nb_dir / "01_orphan.ipynb").write_text(ipynb.read_text())  # no source
    (nb_dir / "02_new.py").write_text(SCRIPT)                   # source, never synced
    problems = {d.path.name: d.problem for d in nbs.check(nb_dir)}
    assert set(problems) == {"01_orphan.ipynb", "02_new.py"}
    assert "no .py source" in problems["01_orphan.ipynb"] and "missing" in problems["02_new.py"]
    assert nbs.main(["sync", "--dir", str(nb_dir)]) == 0 and (nb_dir / "02_new.ipynb").is_file()


def test_parameters_cell_is_required_once(tmp_path):
    (tmp_path / "00_none.py").write_text(SCRIPT.replace(' tags=["parameters"]', ""))
    with pytest.raises(ValueError, match="parameters"):
        nbs.build(tmp_path / "00_none.py")
    (tmp_path / "01_two.py").write_text(SCRIPT + '\n# %% tags=["parameters"]\ny = 1\n')
    with pytest.raises(ValueError, match="found 2"):
        nbs.build(tmp_path / "01_two.py")
    assert {d.path.name for d in nbs.check(tmp_path)} == {"00_none.py", "01_two.py"}


def test_sync_selects_by_name_and_rejects_unknown(nb_dir):
    (nb_dir / "01_other.py").write_text(SCRIPT)
    assert nbs.sync(["01_other.ipynb"], nb_dir=nb_dir) == [nb_dir / "01_other.ipynb"]
    assert not (nb_dir / "00_tiny.ipynb").exists()
    with pytest.raises(FileNotFoundError, match="99_nope"):
        nbs.sync(["99_nope.py"], nb_dir=nb_dir)
    with pytest.raises(FileNotFoundError, match="nb_dir"):
        nbs.sources(nb_dir / "missing")


def test_magics_stay_commented_in_the_script_and_run_in_the_notebook(tmp_path):
    (tmp_path / "00_magic.py").write_text(SCRIPT.replace("x = 1 + 1", "# %matplotlib inline\nx = 1 + 1"))
    nb = nbs.build(tmp_path / "00_magic.py")
    assert nb.cells[2].source.startswith("%matplotlib inline\n")
