"""The committed notebooks: built from tools/nb_*.py, without outputs, papermill-ready."""
import json
import runpy
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_outputs_and_with_parameters(path):
    nb = json.loads(path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code and not any(c.get("outputs") or c.get("execution_count") for c in code)
    assert "parameters" in code[0].get("metadata", {}).get("tags", [])
    assert "results_path" in "".join(code[0]["source"])


def test_notebooks_match_their_tools_sources(tmp_path, monkeypatch):
    """Every notebook is what its tools/nb_*.py source writes (no hand edits drift away)."""
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import nbbuild

        written = {}

        def capture(path, cells):
            out = tmp_path / Path(path).name
            real(out, cells)
            written[Path(path).name] = out
            return out

        real = nbbuild.write_notebook
        monkeypatch.setattr(nbbuild, "write_notebook", capture)
        for src in sorted((ROOT / "tools").glob("nb_*.py")):
            monkeypatch.setattr(sys, "argv", [str(src)])
            runpy.run_path(str(src), run_name="__main__")
    finally:
        sys.path.remove(str(ROOT / "tools"))
    assert sorted(written) == sorted(p.name for p in NOTEBOOKS)
    for name, out in written.items():
        built = nbformat.read(str(out), as_version=4)
        committed = nbformat.read(str(ROOT / "notebooks" / name), as_version=4)
        assert [c.source for c in built.cells] == [c.source for c in committed.cells], name
