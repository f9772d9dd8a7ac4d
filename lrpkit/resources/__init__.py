"""The configs and notebooks shipped with lrpkit, and ``lrpkit init``, which copies them.

The repository keeps them where a reader looks for them, ``configs/`` and ``notebooks/`` at its
top.  ``pyproject.toml`` maps those two folders into this package as the data-only packages
``lrpkit.resources.configs`` and ``lrpkit.resources.notebooks`` (``[tool.setuptools.package-dir]``
with their files as ``package-data``), so a built wheel carries them inside ``lrpkit/`` and
:func:`importlib.util.find_spec` finds them: no copy step, no symlink, no build hook.  An editable
install resolves the code from the checkout; its shipped files are then the checkout's
``configs/`` and ``notebooks/`` (only as templates: :func:`lrpkit.config.project_root` never
falls back to the checkout).

::

    from lrpkit.resources import bundled, init_project
    bundled("configs") / "smoke.yaml"          # the shipped smoke config
    init_project("my_audit")                   # my_audit/configs/..., my_audit/notebooks/*.ipynb
"""
from __future__ import annotations

import filecmp
import importlib.util
import os
import shutil
from pathlib import Path

__all__ = ["KINDS", "bundled", "project_files", "init_project"]

#: the shipped folders
KINDS = ("configs", "notebooks")
#: what ``lrpkit init`` copies from each (the notebooks' .py sources are for developing lrpkit)
_PATTERNS = {"configs": ("*.yaml", "examples/*.yaml"), "notebooks": ("*.ipynb",)}


def _checkout() -> Path | None:
    """The source checkout holding this package, when lrpkit runs from one (editable install)."""
    root = Path(__file__).resolve().parents[2]
    try:
        text = (root / "pyproject.toml").read_text()
    except OSError:
        return None
    return root if 'name = "lrpkit"' in text else None


def bundled(kind: str) -> Path:
    """The folder of the shipped ``"configs"`` or ``"notebooks"``.

    Installed from a wheel: ``<site-packages>/lrpkit/resources/<kind>``; run from the source
    checkout (editable install, ``PYTHONPATH``): the checkout's ``<kind>/``.  Raises
    ``FileNotFoundError`` naming the package folder when neither exists (a broken install).
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    try:
        spec = importlib.util.find_spec(f"{__name__}.{kind}")
    except ImportError:
        spec = None
    for loc in (spec.submodule_search_locations or []) if spec is not None else []:
        if Path(loc).is_dir():
            return Path(loc)
    checkout = _checkout()
    if checkout is not None and (checkout / kind).is_dir():
        return checkout / kind
    raise FileNotFoundError(f"lrpkit's shipped {kind} are missing: no {Path(__file__).parent / kind} "
                            f"(reinstall lrpkit)")


def project_files() -> dict[str, Path]:
    """What ``lrpkit init`` writes: ``{relative path in the project: shipped file}``."""
    out: dict[str, Path] = {}
    for kind in KINDS:
        src = bundled(kind)
        for pattern in _PATTERNS[kind]:
            for f in sorted(src.glob(pattern)):
                if f.is_file() and not f.name.startswith("."):
                    out[f"{kind}/{f.relative_to(src).as_posix()}"] = f
    return out


def init_project(folder: str | os.PathLike, force: bool = False) -> list[Path]:
    """Write the shipped configs (``configs/*.yaml``, ``configs/examples/*.yaml``) and the
    notebooks (``notebooks/*.ipynb``) into ``folder``, which then is a project
    (:func:`lrpkit.config.project_root`): ``lrpkit report --config configs/<name>.yaml`` run in it
    keeps data, models and reports there.

    Files already there with the same content are left alone; a differing one raises
    ``FileExistsError`` naming it unless ``force``.  Returns the files written.
    """
    folder = Path(folder).expanduser()
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"folder: {folder} is a file, not a folder")
    files = project_files()
    clash = [rel for rel, src in files.items()
             if (folder / rel).exists() and not filecmp.cmp(folder / rel, src, shallow=False)]
    if clash and not force:
        raise FileExistsError(f"{folder} already holds {len(clash)} file(s) that differ from "
                              f"lrpkit's: {', '.join(clash[:5])}; pass force=True (--force) to "
                              f"overwrite them")
    written = []
    for rel, src in files.items():
        dest = folder / rel
        if dest.exists() and rel not in clash:
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
        written.append(dest)
    return written
