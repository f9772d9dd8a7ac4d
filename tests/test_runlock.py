"""lrpkit.runlock: one run per folder; a live holder is named, a dead one is taken over."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from lrpkit.runlock import RunLocked, acquire, folder_lock, lock_is_stale, lock_path, read_lock, release

HOLDER = """import sys, time
from lrpkit.runlock import acquire
acquire(sys.argv[1], "lrpkit report (test holder)")
print("held", flush=True)
time.sleep(60)
"""


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_a_live_holder_is_named_and_its_lock_kept(tmp_path):
    folder = tmp_path / "reports"
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(RunLocked) as info:
            acquire(folder, "lrpkit report")
        msg = str(info.value)
        assert f"PID {proc.pid}" in msg and "started" in msg and "lrpkit report (test holder)" in msg
        assert isinstance(info.value, FileExistsError)          # a user error: the CLI exits 2
        assert read_lock(lock_path(folder))["pid"] == proc.pid    # untouched
    finally:
        proc.kill()
        proc.wait()
    # the holder died (SIGKILL): its lock is stale and taken over
    assert lock_is_stale(read_lock(lock_path(folder)))
    with folder_lock(folder, "second"):
        assert read_lock(lock_path(folder))["pid"] == os.getpid()
    assert not lock_path(folder).exists()                         # released


def test_a_dead_holders_lock_is_taken_over_with_a_note(tmp_path, capsys):
    folder = tmp_path / "scenes"
    path = lock_path(folder)
    path.write_text(json.dumps({"pid": _dead_pid(), "host": socket.gethostname(), "command": "lrpkit data",
                                "started": "2024-01-01T00:00:00+00:00"}))
    acquire(folder, "lrpkit data")
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "taking over the lock" in err[0] and "2024-01-01" in err[0], err
    assert read_lock(path)["pid"] == os.getpid() and not folder.exists()   # the folder is left alone
    release(folder)
    assert not path.exists()


def test_a_reused_pid_is_not_the_holder_and_another_host_is_never_stale(tmp_path):
    me = {"pid": os.getpid(), "host": socket.gethostname(), "proc_start": "1"}   # our PID, another start
    assert lock_is_stale(me)
    assert not lock_is_stale({**me, "host": "elsewhere.example", "pid": _dead_pid()})
    path = lock_path(tmp_path / "models")
    path.write_text(json.dumps({"pid": 1, "host": "elsewhere.example", "started": "x"}))
    with pytest.raises(RunLocked, match="elsewhere.example"):
        acquire(tmp_path / "models")
    release(tmp_path / "models")                                  # not ours: kept
    assert path.exists()


def test_the_holder_may_lock_again_and_keeps_it_until_the_outer_block_ends(tmp_path):
    folder = tmp_path / "out"
    with folder_lock(folder):
        with folder_lock(folder):                                  # lrpkit all: steps in turn
            pass
        assert lock_path(folder).exists()
    assert not lock_path(folder).exists()
