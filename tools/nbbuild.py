"""Write a notebook from a list of (kind, source) cells: the way lrpkit's notebooks are authored.

    from nbbuild import write_notebook
    write_notebook("notebooks/00_x.ipynb", [("md", "# Title"), ("params", 'config = "default"'), ("code", "...")])

The ``params`` cell is tagged ``parameters`` for papermill. Notebooks are written without outputs.
"""
from __future__ import annotations

import sys
from pathlib import Path

import nbformat


def write_notebook(path: str | Path, cells: list[tuple[str, str]]) -> Path:
    nb = nbformat.v4.new_notebook()
    out = []
    for kind, src in cells:
        src = src.strip("\n")
        if kind == "md":
            out.append(nbformat.v4.new_markdown_cell(src))
        elif kind == "params":
            out.append(nbformat.v4.new_code_cell(src, metadata={"tags": ["parameters"]}))
        elif kind == "code":
            out.append(nbformat.v4.new_code_cell(src))
        else:
            raise ValueError(f"unknown cell kind {kind!r}")
    nb.cells = out
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)",
                                 "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    for i, c in enumerate(nb.cells):  # stable ids: no diff noise on rebuild
        c["id"] = f"{Path(path).stem[:20]}-{i:02d}".replace("_", "-")
    nbformat.validate(nb)
    path = Path(path)
    if not path.is_absolute():  # relative to the project root
        path = Path(__file__).resolve().parent.parent / path
    nbformat.write(nb, str(path))
    return path


if __name__ == "__main__":  # pragma: no cover
    sys.exit("import write_notebook from this module")
