"""``lrpkit --help`` and every subcommand's ``--help`` are plain text, without reST markup."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lrpkit import cli

#: reST that should not reach a terminal: ``literals`` and :role:`targets`.
RST = re.compile(r"``|:(func|mod|class|meth|attr|data|obj|exc|ref|doc):`")

SUBCOMMANDS = ["data", "train", "report", "all", "methods"]


def _help(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exc:
        cli.main([*argv, "--help"])
    assert exc.value.code == 0
    return capsys.readouterr().out


def test_rst_pattern():
    assert RST.search("The ``lrpkit`` command") and RST.search("see :mod:`lrpkit.reports`")
    assert RST.search(":func:`lrpkit.pipeline.make_scenes`")
    assert not RST.search("The lrpkit command: data, train (`--only cnn`), 10:30")


def test_main_help_is_plain(capsys):
    text = _help([], capsys)
    assert not RST.search(text), text
    for cmd in SUBCOMMANDS:
        assert cmd in text
    assert "lrpkit.pipeline" in text and "Exit status" in text  # the docstring, unmarked


@pytest.mark.parametrize("cmd", SUBCOMMANDS)
def test_subcommand_help_is_plain(cmd, capsys):
    text = _help([cmd], capsys)
    assert text.startswith(f"usage: lrpkit {cmd}")
    assert not RST.search(text), text
    assert len(text.splitlines()) >= 4  # usage, a description, options


def test_plain_strips_roles_and_literals():
    assert cli._plain("The ``lrpkit`` command; :mod:`lrpkit.reports`, :func:`~a.b`") == \
        "The lrpkit command; lrpkit.reports, a.b"


def test_console_script_help():
    exe = Path(sys.executable).with_name("lrpkit")
    exe = str(exe) if exe.exists() else shutil.which("lrpkit")
    if exe is None:
        pytest.skip("the lrpkit console script is not installed (pip install -e .)")
    out = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "usage: lrpkit" in out.stdout and not RST.search(out.stdout)
