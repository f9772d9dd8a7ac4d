"""A ``python3`` kernel that dies at its first start(s): the test-only fault for kernel-start retries.

:func:`install` writes a kernelspec named ``python3`` into ``<folder>/kernels/python3``; with
``JUPYTER_PATH=<folder>`` (``monkeypatch.setenv``) every kernel the batch runner's child
processes start is launched through this file, which exits before the kernel answers while
its counter file says so, and afterwards becomes a normal ipykernel.  The runner sees what a
port clash or a crashing kernel shows it: "Kernel died before replying to kernel_info".
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def install(folder: Path, failures: int = 1) -> Path:
    """The kernelspec in ``folder`` (set ``JUPYTER_PATH`` to it); returns the counter file."""
    spec = Path(folder) / "kernels" / "python3"
    spec.mkdir(parents=True, exist_ok=True)
    counter = Path(folder) / "start-failures-left"
    counter.write_text(str(failures))
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, str(Path(__file__).resolve()), str(counter), "-f", "{connection_file}"],
        "display_name": "Python 3 (dies at its first start)", "language": "python"}))
    return counter


if __name__ == "__main__":  # the kernel's launcher
    counter = Path(sys.argv[1])
    left = int(counter.read_text() or 0)
    if left > 0:
        counter.write_text(str(left - 1))
        sys.exit(3)  # before replying to kernel_info
    os.execv(sys.executable, [sys.executable, "-m", "ipykernel_launcher", *sys.argv[2:]])
