"""The ``lrpkit`` command after faults (issue "Robust-batch"): one interrupt policy for every
command (130 on SIGINT, 143 on SIGTERM, one line, no traceback, worker processes ended with it)
and user errors that exit 2 with one line (a foreign scenes folder, config values outside their
declaration, a mistyped config name).

Signals are sent by PID to a real ``python -m lrpkit`` subprocess once it has started the
workers in question (joblib's loky pool, a notebook kernel); everything is written below
temporary folders.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

from lrpkit import cli
from lrpkit.config import SECTIONS, load_config
from lrpkit.params import InvalidParameterError, Param, _as_constraints


def _env() -> dict:
    return {k: v for k, v in os.environ.items() if k not in ("LRPKIT_PROJECT",)}


def _stop_when(argv: list[str], cwd: Path, started, sig: int, wait: float = 300):
    """Run ``python -m lrpkit argv``; once a descendant process matches ``started`` (its
    command line), send ``sig`` to the parent.  Returns (returncode, stderr, every descendant
    seen until the parent exited)."""
    proc = subprocess.Popen([sys.executable, "-m", "lrpkit", *argv], cwd=cwd, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    parent = psutil.Process(proc.pid)
    seen: dict[int, psutil.Process] = {}

    def look() -> list[str]:
        try:
            kids = parent.children(recursive=True)
        except psutil.Error:
            return []
        seen.update({k.pid: k for k in kids})
        out = []
        for k in kids:
            try:
                out.append(" ".join(k.cmdline()))
            except psutil.Error:
                pass
        return out

    deadline = time.monotonic() + wait
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if any(started(cmd) for cmd in look()):
                break
            time.sleep(0.1)
        assert proc.poll() is None and seen, f"no worker started: {proc.poll()=}"
        proc.send_signal(sig)
        while proc.poll() is None and time.monotonic() < deadline:
            look()                     # whatever starts after the signal must end too
            time.sleep(0.05)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, err, list(seen.values())


def _gone(procs, wait: float = 30) -> list[int]:
    """The PIDs among ``procs`` still running after at most ``wait`` seconds."""
    _, alive = psutil.wait_procs(procs, timeout=wait)
    return [p.pid for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def _one_line(err: str, signame: str) -> None:
    assert "Traceback" not in err, err[-3000:]
    lines = [ln for ln in err.splitlines() if ln.startswith("lrpkit:")]
    assert lines == [lines[0]] and f"interrupted by {signame}" in lines[0], err[-3000:]


# ------------------------------------------------------------------ interrupts
@pytest.fixture(scope="module")
def fisher_project(tmp_path_factory):
    """Tiny scenes and an FV config with two joblib workers."""
    root = tmp_path_factory.mktemp("fv")
    raw = {"seed": 0, "paths": {"scenes": str(root / "scenes"), "models": str(root / "models"),
                                "reports": str(root / "reports")},
           "data": {"n_train": 12, "n_val": 4, "n_test": 2, "preset": "easy"},
           "fisher": {"bin_sizes": [4, 6], "step": 4, "pca_dim": 8, "n_components": 4,
                      "n_samples": 5000, "gmm_max_iter": 30, "C": 1.0, "n_jobs": 2}}
    cfg = root / "fv.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    assert cli.main(["data", "--config", str(cfg)]) == 0
    return root, cfg


def test_sigterm_on_train_fisher_ends_the_joblib_workers(fisher_project):
    root, cfg = fisher_project
    rc, err, workers = _stop_when(["train", "--config", str(cfg), "--only", "fisher", "--force"],
                                  root, lambda cmd: "LokyProcess" in cmd, signal.SIGTERM)
    assert rc == 143, err[-3000:]
    _one_line(err, "SIGTERM")
    assert _gone(workers, wait=10) == []
    assert not (root / "models" / "fisher" / "config-fingerprint.json").exists()


@pytest.fixture(scope="module")
def user_project(fisher_project):
    """A user's small torch model (``python`` entry) on the tiny scenes: nothing to build,
    ``lrpkit all`` goes straight to the notebooks."""
    root, cfg = fisher_project
    (root / "net.py").write_text(
        "from torch import nn\n\n\ndef make():\n    return nn.Sequential(nn.Conv2d(3, 4, 3), "
        "nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 6))\n")
    raw = yaml.safe_load(cfg.read_text())
    raw["model"] = {"source": "python", "entry": f"{root / 'net.py'}:make", "size": 32, "crop": 32}
    out = root / "user.yaml"
    out.write_text(yaml.safe_dump(raw))
    return root, out


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_on_lrpkit_all_during_notebooks(user_project, sig):
    root, cfg = user_project
    rc, err, started = _stop_when(["all", "--config", str(cfg), "--notebooks", "00"], root,
                                  lambda cmd: "lrpkit.batch" in cmd, sig)   # the notebook's runner
    assert rc == 128 + sig, err[-3000:]
    _one_line(err, signal.Signals(sig).name)
    assert _gone(started) == []                   # the runner and any kernel it started


# ------------------------------------------------------------------ user errors: exit 2, one line
def _lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.strip()]


def test_lrpkit_data_refuses_a_foreign_folder_with_exit_2(tmp_path, capsys):
    voc = tmp_path / "VOCdevkit"
    (voc / "VOC2007").mkdir(parents=True)
    (voc / "VOC2007" / "keep.txt").write_text("a user's data")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"paths": {"scenes": str(voc)}, "data": {"n_train": 2}}))
    assert cli.main(["data", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert len(_lines(err)) == 1 and "will not overwrite" in err and str(voc) in err
    assert (voc / "VOC2007" / "keep.txt").read_text() == "a user's data"


@pytest.mark.parametrize("section,key,value,allowed", [
    ("cnn", "epochs", -3, "an int in [1, inf)"),
    ("data", "preset", "esay", "one of 'easy', 'realistic'"),
    ("reports", "timeout", "ten", "an int in [1, inf) or null"),
    ("fisher", "loss", "hinge2", "one of 'hinge', 'squared_hinge'"),
    ("cnn", "dropout", 1.0, "a float in [0, 1)"),
])
def test_config_values_outside_their_declaration_are_refused_on_load(tmp_path, capsys, section, key,
                                                                     value, allowed):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml.safe_dump({section: {key: value}}))
    with pytest.raises(InvalidParameterError) as exc:
        load_config(cfg)
    msg = str(exc.value)
    assert f"{section}.{key}" in msg and repr(value) in msg and allowed in msg, msg
    assert "Optional" not in msg
    for cmd in ("data", "train", "report", "all"):
        assert cli.main([cmd, "--config", str(cfg)]) == 2
        err = capsys.readouterr().err
        assert len(_lines(err)) == 1 and f"{section}.{key}" in err, err


def test_every_declared_config_key_refuses_its_bad_values():
    n = 0
    for name, cls in SECTIONS.items():
        for key, spec in getattr(cls, "_accepts", {}).items():
            p = Param(key, None, _as_constraints(spec))
            for bad in p.bad_values():
                with pytest.raises(InvalidParameterError, match=f"{name}.{key}"):
                    load_config({name: {key: bad}})
                n += 1
            default = getattr(cls(), key)
            assert p.accepts(default), f"{name}.{key}: default {default!r} refused"
    assert n > 40


def test_a_mistyped_config_name_lists_the_names(capsys):
    assert cli.main(["data", "--config", "smokee"]) == 2
    err = capsys.readouterr().err
    assert len(_lines(err)) == 1
    assert "did you mean 'smoke'" in err and "default" in err and "grid" in err
