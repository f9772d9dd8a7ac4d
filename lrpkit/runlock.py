"""One run per folder: a lock file naming the process that writes into a folder.

``lrpkit report`` holds the lock of its reports folder, ``lrpkit data`` the one of the scene
folder and ``lrpkit train`` the one of the models folder (:func:`folder_lock`).  The lock is a
file beside the folder, ``<parent>/.<name>.lrpkit-lock`` (beside it, so that a folder whose
content is checked, the scene set, holds nothing foreign), created atomically
(``O_CREAT | O_EXCL``) and holding JSON: the PID, host, command and start time of the holder,
and on Linux the process's start time in clock ticks (``/proc/<pid>/stat`` field 22), so that
a PID reused by another process is not mistaken for the holder.

A second run on the same folder raises :class:`RunLocked` at once, naming the running one
(PID, host, start time): a user error, exit status 2.  A lock whose process is gone (killed with
SIGKILL, a crashed machine) is taken over with a one-line note on stderr.  The take-over
re-reads the lock right before removing it, so two runs taking over the same dead lock at the
same moment end with one holder (the window left is the time between that read and the unlink).
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import socket
import sys
from pathlib import Path
from collections.abc import Iterator

__all__ = ["RunLocked", "folder_lock", "lock_path", "read_lock", "lock_is_stale", "acquire", "release"]


class RunLocked(FileExistsError):
    """Another run holds the folder's lock (its lock file exists): a user error, the CLI exits 2
    with this one line (it maps ``FileExistsError`` to 2)."""

    def __init__(self, message: str, holder: dict | None = None) -> None:
        super().__init__(message)
        self.holder = holder or {}


def lock_path(folder: str | os.PathLike) -> Path:
    """The lock file of ``folder``: ``<parent>/.<name>.lrpkit-lock``."""
    folder = Path(folder).expanduser().resolve()
    return folder.parent / f".{folder.name}.lrpkit-lock"


def _proc_start(pid: int) -> str | None:
    """The start time of process ``pid`` in clock ticks since boot (Linux), or None."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_lock(path: str | os.PathLike) -> dict | None:
    """The holder recorded in a lock file, or None when there is none (or it is unreadable)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def lock_is_stale(holder: dict) -> bool:
    """Whether the process that wrote ``holder`` is gone (on this host; another host's is never)."""
    if holder.get("host") != socket.gethostname():
        return False
    try:
        pid = int(holder.get("pid"))
    except (TypeError, ValueError):
        return True
    if not _alive(pid):
        return True
    recorded, actual = holder.get("proc_start"), _proc_start(pid)
    return bool(recorded and actual and recorded != actual)   # the PID now belongs to another process


def _describe(holder: dict) -> str:
    cmd = holder.get("command") or "another lrpkit run"
    return (f"{cmd} (PID {holder.get('pid')} on {holder.get('host')}, started {holder.get('started')})")


def acquire(folder: str | os.PathLike, command: str = "") -> Path:
    """Take ``folder``'s lock for this process; raise :class:`RunLocked` if a live run holds it.

    A stale lock (its process gone) is taken over with a one-line note on stderr.  Taking it
    again in the process that holds it is allowed (``lrpkit all`` runs steps in turn)."""
    path = lock_path(folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    me = {"pid": os.getpid(), "host": socket.gethostname(), "command": command or " ".join(sys.argv[:2]),
          "started": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
          "proc_start": _proc_start(os.getpid()), "folder": str(Path(folder).expanduser().resolve())}
    for _ in range(5):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = read_lock(path)
            if holder is None:          # being written right now, or garbage: look again
                with contextlib.suppress(OSError):
                    if path.stat().st_size == 0:
                        import time

                        time.sleep(0.05)
                        holder = read_lock(path)
                if holder is None:
                    holder = {}
            if holder.get("pid") == os.getpid() and holder.get("host") == me["host"]:
                return path             # ours already
            if holder and not lock_is_stale(holder):
                raise RunLocked(f"{me['folder']} is in use by {_describe(holder)}; wait for it to end "
                                f"or stop it (lock file {path})", holder) from None
            if read_lock(path) == (holder or None):   # unchanged since we read it: remove and retry
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                print(f"lrpkit: taking over the lock of {me['folder']} from {_describe(holder)}, "
                      f"which is no longer running", file=sys.stderr, flush=True)
            continue
        with os.fdopen(fd, "w") as fh:
            json.dump(me, fh)
        return path
    raise RunLocked(f"{me['folder']}: could not take the lock {path} (others keep taking it)")


def release(folder: str | os.PathLike) -> None:
    """Remove ``folder``'s lock if this process holds it."""
    path = lock_path(folder)
    holder = read_lock(path)
    if holder is not None and holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike, command: str = "") -> Iterator[Path]:
    """Hold ``folder``'s lock while the block runs (see the module docstring); a lock this
    process already held is left to the outer holder."""
    path = lock_path(folder)
    held = (read_lock(path) or {}).get("pid") == os.getpid()
    acquire(folder, command)
    try:
        yield path
    finally:
        if not held:
            release(folder)
