"""lrpkit.runtime: glibc allocator settings for this process and the processes it starts."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from lrpkit.runtime import MALLOC_ENV, malloc_env, tune_malloc


def test_malloc_env_adds_the_settings_but_keeps_the_users():
    env = malloc_env({"PATH": "/bin", "MALLOC_MMAP_MAX_": "7"})
    assert env["PATH"] == "/bin" and env["MALLOC_MMAP_MAX_"] == "7"
    for k, v in MALLOC_ENV.items():
        if k != "MALLOC_MMAP_MAX_":
            assert env[k] == v


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt is Linux-only")
def test_tune_malloc_applies_here_and_to_child_processes(monkeypatch):
    for k in MALLOC_ENV:
        monkeypatch.delenv(k, raising=False)
    assert tune_malloc() is True
    for k, v in MALLOC_ENV.items():
        assert os.environ[k] == v
    out = subprocess.run([sys.executable, "-c", "import os; print(os.environ['MALLOC_MMAP_MAX_'])"],
                         capture_output=True, text=True, check=True).stdout.strip()
    assert out == "0"
    monkeypatch.setenv("MALLOC_TOP_PAD_", "123")
    tune_malloc()
    assert os.environ["MALLOC_TOP_PAD_"] == "123"      # the user's value wins


def test_kernels_get_the_settings():
    from lrpkit.batch.execute import child_env

    env = child_env()
    for k in MALLOC_ENV:
        assert k in env
