"""Serve a notebook that shows an :class:`~lrpkit.widgets.Explorer` as a stand-alone page (Voila).

::

    argv, env = voila_command("tests/notebooks/explorer_app.ipynb", 8866, config="configs/smoke.yaml")
    subprocess.Popen(argv, env=env)
"""
from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

__all__ = ["voila_command"]


def voila_command(notebook: str | os.PathLike, port: int = 8866, *, ip: str = "127.0.0.1",
                  config: str | os.PathLike | None = None) -> tuple[list[str], dict[str, str]]:
    """``(argv, env)`` that serve ``notebook`` (e.g. one showing an :class:`Explorer`) with Voila, offline.

    Voila's ``lab`` template links Font Awesome from a CDN; this writes a copy of the template
    without those links (``lrpkit-offline``, in a temporary ``JUPYTER_PATH`` folder), leaves out
    jupytext's JupyterLab extension (it fails to load inside Voila and logs an error) and binds to
    ``ip`` (loopback by default).  ``config`` is passed to the
    notebook as ``LRPKIT_EXPLORER_CONFIG``.
    """
    from jupyter_core.paths import jupyter_path

    src = next((Path(d) / "voila" / "templates" / "lab" for d in jupyter_path()
                if (Path(d) / "voila" / "templates" / "lab" / "index.html.j2").is_file()), None)
    if src is None:
        raise FileNotFoundError("Voila's lab template not found (pip install voila)")
    data = Path(tempfile.mkdtemp(prefix="lrpkit-voila-"))
    dst = data / "voila" / "templates" / "lrpkit-offline"
    dst.mkdir(parents=True)
    text = (src / "index.html.j2").read_text()
    text = re.sub(r'\s*<link[^>]*href="https?://[^"]*"[^>]*>', "", text)
    (dst / "index.html.j2").write_text(text)
    for f in src.iterdir():
        if f.name != "index.html.j2" and f.is_file():
            shutil.copy(f, dst / f.name)
    (dst / "conf.json").write_text(json.dumps({"base_template": "lab"}))
    exe = Path(sys.executable).parent / "voila"
    argv = [str(exe) if exe.exists() else "voila", str(notebook), "--no-browser", f"--port={int(port)}",
            f"--Voila.ip={ip}", "--template=lrpkit-offline",
            "--VoilaConfiguration.extension_denylist=jupyterlab-jupytext"]
    jupyter = os.pathsep.join([str(data), os.environ.get("JUPYTER_PATH", "")]).rstrip(os.pathsep)
    env = {**os.environ, "JUPYTER_PATH": jupyter, "LRPKIT_STATIC": "",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    if config is not None:
        env["LRPKIT_EXPLORER_CONFIG"] = str(config)
    return argv, env
