"""The notebooks' sources and the ``.ipynb`` files papermill runs: build, sync, check.

Each notebook's source is a jupytext *percent* script ``notebooks/NN_name.py``: ``# %%`` starts
a code cell, ``# %% [markdown]`` a markdown cell (its lines commented with ``# ``), and the
papermill parameters cell is ``# %% tags=["parameters"]`` (it holds at least
``config = "default"`` and ``results_path = None``).  Next to it lies the paired
``notebooks/NN_name.ipynb``, generated from the script, committed **without outputs**; the
report runner (:mod:`lrpkit.batch`) executes that file with papermill.

The script is the one source; the ``.ipynb`` is derived from it deterministically (cell ids
``<stem>-NN``, a fixed ``python3`` kernelspec, no outputs, no execution counts) so that a
rebuild is byte-for-byte identical and a forgotten sync shows up in ``tests/test_notebooks.py``::

    python -m lrpkit.notebooks sync            # (re)write every notebooks/*.ipynb from its .py
    python -m lrpkit.notebooks check           # exit 1 and name the pairs that drifted
    python -m lrpkit.notebooks sync 03_shallow_vs_deep.py   # one notebook

``sync`` also removes nothing: an ``.ipynb`` without a ``.py`` is reported by ``check`` (delete
it, or recover its script with ``jupytext --to py:percent NN_name.ipynb``).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from collections.abc import Iterable, Sequence

__all__ = ["FORMAT", "KERNELSPEC", "notebook_dir", "sources", "read_source", "build", "render", "sync",
           "check", "Drift", "main"]

FORMAT = "py:percent"
KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
_EDIT_NOTE = "generated from {py} by `python -m lrpkit.notebooks sync`: edit the .py, not this file"


#: keys a script's jupytext header may set under ``lrpkit:`` (copied into the .ipynb metadata):
#: ``expected_seconds``, the notebook's run time on the default config, which parallel report
#: runs use to start the longest notebooks first (:func:`lrpkit.batch.expected_seconds`)
_HEADER_KEYS = ("expected_seconds",)


def notebook_dir() -> Path:
    """The project's ``notebooks/`` folder."""
    from .config import project_root

    return project_root() / "notebooks"


def _dir(nb_dir: str | os.PathLike | None) -> Path:
    d = notebook_dir() if nb_dir is None else Path(nb_dir)
    if not d.is_dir():
        raise FileNotFoundError(f"nb_dir: no notebook folder at {d}")
    return d


def sources(nb_dir: str | os.PathLike | None = None) -> list[Path]:
    """Every notebook source ``<nb_dir>/*.py`` in name order (hidden files and ``_*.py`` skipped)."""
    d = _dir(nb_dir)
    return sorted(p for p in d.glob("*.py") if not p.name.startswith((".", "_")))


def read_source(py: str | os.PathLike) -> Any:
    """The percent script ``py`` as an ``nbformat`` notebook (jupytext's reading, nothing added)."""
    import jupytext

    py = Path(py)
    if not py.is_file():
        raise FileNotFoundError(f"py: no notebook source at {py}")
    if py.suffix != ".py":
        raise ValueError(f"py: a notebook source is a .py percent script, got {py.name}")
    return jupytext.read(str(py), fmt=FORMAT)


def build(py: str | os.PathLike) -> Any:
    """The ``.ipynb`` notebook (``nbformat.NotebookNode``) that ``py`` generates.

    Cells and their tags come from the script; everything else is fixed so the result does not
    depend on who built it or when: cell ids ``<stem>-NN``, no outputs or execution counts, cell
    metadata reduced to ``tags``, notebook metadata = kernelspec ``python3``, language_info, a
    note naming the source and the header's ``lrpkit: {expected_seconds: ...}``.  Raises
    ``ValueError`` when the script has no code cell tagged
    ``parameters`` or more than one.
    """
    import nbformat

    py = Path(py)
    src = read_source(py)
    nb = nbformat.v4.new_notebook()
    stem = py.stem[:40].replace("_", "-")
    for i, cell in enumerate(src.cells):
        tags = list(cell.metadata.get("tags", []))
        meta = {"tags": tags} if tags else {}
        text = cell.source
        if cell.cell_type == "markdown":
            new = nbformat.v4.new_markdown_cell(text, metadata=meta)
        elif cell.cell_type == "code":
            new = nbformat.v4.new_code_cell(text, metadata=meta)
        else:
            new = nbformat.v4.new_raw_cell(text, metadata=meta)
        new["id"] = f"{stem}-{i:02d}"
        nb.cells.append(new)
    params = [c for c in nb.cells if c.cell_type == "code" and "parameters" in c.metadata.get("tags", [])]
    if len(params) != 1:
        raise ValueError(f"{py.name}: needs exactly one code cell tagged parameters "
                         f'(`# %% tags=["parameters"]`), found {len(params)}')
    extra = {k: v for k, v in (src.metadata.get("lrpkit") or {}).items() if k in _HEADER_KEYS}
    nb.metadata = {"kernelspec": dict(KERNELSPEC), "language_info": {"name": "python"},
                   "lrpkit": {"source": py.name, "note": _EDIT_NOTE.format(py=py.name), **extra}}
    nbformat.validate(nb)
    return nb


def render(py: str | os.PathLike) -> str:
    """The text of the ``.ipynb`` that ``py`` generates (what :func:`sync` writes)."""
    import nbformat

    return nbformat.writes(build(py)) + "\n"


def sync(paths: Iterable[str | os.PathLike] | None = None, nb_dir: str | os.PathLike | None = None,
         verbose: bool = False) -> list[Path]:
    """Write ``NN_name.ipynb`` next to each source ``NN_name.py``; returns the files that changed.

    ``paths``: some sources (``.py`` or their ``.ipynb``; bare names are looked up in ``nb_dir``);
    default: every ``nb_dir/*.py``.  Files already up to date are left untouched; writes are atomic.
    """
    from .results import atomic_path

    todo = _resolve(paths, nb_dir)
    changed = []
    for py in todo:
        ipynb = py.with_suffix(".ipynb")
        text = render(py)
        if ipynb.is_file() and ipynb.read_text(encoding="utf-8") == text:
            continue
        with atomic_path(ipynb) as tmp:
            Path(tmp).write_text(text, encoding="utf-8")
        changed.append(ipynb)
        if verbose:
            print(f"wrote {ipynb}")
    return changed


def _resolve(paths: Iterable[str | os.PathLike] | None, nb_dir: str | os.PathLike | None) -> list[Path]:
    if paths is None:
        return sources(nb_dir)
    out = []
    for p in paths:
        p = Path(p)
        if not p.exists() and len(p.parts) == 1:
            p = _dir(nb_dir) / p
        if p.suffix == ".ipynb":
            p = p.with_suffix(".py")
        elif p.suffix != ".py":
            p = p.with_suffix(".py") if p.with_suffix(".py").exists() else p
        if not p.is_file():
            raise FileNotFoundError(f"paths: no notebook source {p}")
        out.append(p)
    return out


@dataclass(frozen=True)
class Drift:
    """One problem :func:`check` found: the file and what is wrong with it."""

    path: Path
    problem: str

    def __str__(self) -> str:
        return f"{self.path.name}: {self.problem}"


def _outputs(nb: dict) -> list[int]:
    return [i for i, c in enumerate(nb.get("cells", []))
            if c.get("cell_type") == "code" and (c.get("outputs") or c.get("execution_count") is not None)]


def check(nb_dir: str | os.PathLike | None = None) -> list[Drift]:
    """Every way the notebooks in ``nb_dir`` differ from what their sources generate.

    Reports a source without ``.ipynb``, an ``.ipynb`` without source, a committed ``.ipynb``
    with outputs, and one whose text differs from :func:`render` (naming the first differing
    cell).  An empty list means in sync.
    """
    d = _dir(nb_dir)
    found: list[Drift] = []
    pys = sources(d)
    stems = {p.stem for p in pys}
    for ipynb in sorted(d.glob("*.ipynb")):
        if ipynb.stem not in stems and not ipynb.name.startswith("."):
            found.append(Drift(ipynb, "no .py source next to it (write one, or delete the .ipynb)"))
    for py in pys:
        ipynb = py.with_suffix(".ipynb")
        try:
            want = render(py)
        except ValueError as exc:
            found.append(Drift(py, str(exc)))
            continue
        if not ipynb.is_file():
            found.append(Drift(py, f"{ipynb.name} missing: run `python -m lrpkit.notebooks sync`"))
            continue
        have = ipynb.read_text(encoding="utf-8")
        if have == want:
            continue
        try:
            have_nb = json.loads(have)
        except ValueError as exc:
            found.append(Drift(ipynb, f"not valid JSON ({exc})"))
            continue
        if _outputs(have_nb):
            found.append(Drift(ipynb, f"has outputs or execution counts in cells {_outputs(have_nb)}"))
        found.append(Drift(ipynb, _first_difference(have_nb, json.loads(want)) +
                           f": edit {py.name} and run `python -m lrpkit.notebooks sync`"))
    return found


def _first_difference(have: dict, want: dict) -> str:
    hc, wc = have.get("cells", []), want.get("cells", [])
    for i, (a, b) in enumerate(zip(hc, wc)):
        for key in ("cell_type", "source", "metadata", "id"):
            av, bv = a.get(key), b.get(key)
            if key == "source":
                av = "".join(av) if isinstance(av, list) else av
                bv = "".join(bv) if isinstance(bv, list) else bv
            if av != bv:
                return f"cell {i} ({key}) differs from its source"
    if len(hc) != len(wc):
        return f"{len(hc)} cells, its source has {len(wc)}"
    return "notebook metadata or formatting differs from its source"


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m lrpkit.notebooks {sync,check} [NOTEBOOK ...] [--dir DIR]``."""
    ap = argparse.ArgumentParser(prog="python -m lrpkit.notebooks",
                                 description="Generate notebooks/*.ipynb from their jupytext percent "
                                             "scripts (sync) or check that they match (check).")
    ap.add_argument("command", choices=["sync", "check"])
    ap.add_argument("notebooks", nargs="*", help="sources to sync (default: every notebooks/*.py)")
    ap.add_argument("--dir", default=None, help="notebook folder (default: the project's notebooks/)")
    args = ap.parse_args(argv)
    if args.command == "sync":
        changed = sync(args.notebooks or None, args.dir, verbose=True)
        print(f"{len(changed)} notebook(s) written" if changed else "all notebooks up to date")
        return 0
    drift = check(args.dir)
    for d in drift:
        print(d)
    if not drift:
        print(f"{len(sources(args.dir))} notebook(s) in sync")
    return 1 if drift else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
