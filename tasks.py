#!/usr/bin/env python3
"""lrpkit's two set-up commands, runnable on a fresh machine with only python3.

    python3 tasks.py all     # venv + install + data + models + every notebook -> reports/
    python3 tasks.py test    # venv + install + ruff check + the test suite (what .ci/run runs)

Both create ``.venv`` beside this file if it is missing and (re)install the project
into it when ``pyproject.toml`` changed since the last install.  Extra arguments after
``test`` go to pytest; after ``all`` they go to ``lrpkit all`` (e.g. ``--config``).
``test`` first runs ``ruff check`` (settings in ``pyproject.toml``) over LINT_PATHS, then
pytest; it exits non-zero when either fails.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
PY = VENV / "bin" / "python"
STAMP = VENV / ".lrpkit-install-stamp"
#: What ``tasks.py test`` lints with ruff (the .ipynb files are generated from notebooks/*.py).
LINT_PATHS = ["lrpkit", "tests", "benchmarks", "notebooks", "tasks.py"]


def _run(cmd: list[str], **kw) -> int:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    return subprocess.call([str(c) for c in cmd], cwd=ROOT, **kw)


def ensure_env() -> None:
    """Create the virtual environment and install lrpkit (editable, with test extras)."""
    if sys.version_info[:2] != (3, 11):
        print(f"warning: lrpkit is pinned to Python 3.11 (torch==2.14.1 wheels); this is "
              f"{sys.version.split()[0]}", file=sys.stderr)
    if not PY.exists():
        print(f"creating virtual environment in {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text().strip() == digest:
        return
    log = VENV / "pip-install.log"
    print(f"installing lrpkit and its dependencies into {VENV} (log: {log})", flush=True)
    with open(log, "w") as fh:
        rc = _run([PY, "-m", "pip", "install", "--disable-pip-version-check", "-e", ".[dev]"],
                  stdout=fh, stderr=subprocess.STDOUT)
    if rc != 0:
        lines = [ln for ln in log.read_text().splitlines() if "is ignored: it is neither" not in ln]
        print("\n".join(lines[-40:]), file=sys.stderr)
        sys.exit(f"pip install failed (exit {rc}); full log in {log}")
    STAMP.write_text(digest)


def ensure_browser() -> None:
    """Headless Chromium for the real-browser report/explorer tests (Debian's package).

    Installed with apt-get when missing and this is a root shell on Debian (as in CI); otherwise
    the browser tests skip with a message naming the missing piece.
    """
    import shutil

    if shutil.which("chromium") or os.environ.get("LRPKIT_NO_BROWSER_INSTALL"):
        return
    if not (hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get")):
        print("note: chromium not found; the browser tests will skip", file=sys.stderr)
        return
    log = VENV / "apt-chromium.log"
    print(f"installing Debian's chromium for the browser tests (log: {log})", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    with open(log, "w") as fh:
        for cmd in (["apt-get", "update"],
                    ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]):
            if _run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env) != 0:
                print(f"warning: {' '.join(cmd)} failed (see {log}); browser tests will skip",
                      file=sys.stderr)
                return


def lint() -> int:
    """``ruff check`` with the venv's ruff (from the ``dev`` extra); its exit status."""
    ruff = VENV / "bin" / "ruff"
    if not ruff.exists():
        print(f"ruff not found at {ruff}: it comes with the dev extra "
              f"({PY} -m pip install -e '.[dev]')", file=sys.stderr)
        return 1
    rc = _run([ruff, "check", *LINT_PATHS], env=_env())
    if rc != 0:
        print(f"ruff check failed (exit {rc}); see the findings above", file=sys.stderr)
    return rc


def _env() -> dict:
    env = dict(os.environ)
    env["PATH"] = f"{VENV / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(VENV)
    return env


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"all", "test", "setup"}:
        print(__doc__)
        return 2
    cmd, rest = argv[0], argv[1:]
    ensure_env()
    if cmd == "setup":
        return 0
    if cmd == "test":
        lint_rc = lint()
        ensure_browser()
        rc = _run([PY, "-m", "pytest", "-q", *rest], env=_env())
        if rc == 5:
            print("pytest collected no tests", file=sys.stderr)
        return rc or lint_rc
    return _run([VENV / "bin" / "lrpkit", "all", *rest], env=_env())


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
