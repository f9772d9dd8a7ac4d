"""A background worker with cooperative cancellation: the newest request wins.

:class:`Worker` runs one job at a time on a daemon thread.  Submitting a job cancels the one
running and replaces the one waiting, so a burst of widget changes computes only the last
(``delay`` seconds of quiet first: the debounce).  A job is handed its :class:`Job`, which is
also the ``progress(done, total)`` callback that lrpkit's long-running functions accept
(:mod:`lrpkit._progress`): each call records the progress and raises :class:`Cancelled` once
the job was cancelled, so the computation stops at its next step, through its own clean-up.
No tracing of the computing thread is involved.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["Cancelled", "Job", "Worker"]


class Cancelled(Exception):
    """Raised inside a job (by its progress callback) once the job was cancelled."""


class Job:
    """One submitted computation: its state, progress and cancellation flag.

    ``job(done, total)`` is a ``progress`` callback: it stores the fraction, calls
    ``on_progress(fraction)`` when given, and raises :class:`Cancelled` after :meth:`cancel`.
    """

    def __init__(self, fn: Callable[..., Any], args: tuple, kwargs: dict, delay: float,
                 on_progress: Callable[[float], Any] | None = None, name: str = "") -> None:
        self.fn, self.args, self.kwargs = fn, args, kwargs
        self.name = name or getattr(fn, "__name__", "job")
        self.not_before = time.monotonic() + max(0.0, float(delay))
        self.on_progress = on_progress
        self.state = "pending"            # pending, running, done, cancelled, error
        self.result: Any = None
        self.error: BaseException | None = None
        self.fraction = 0.0
        self.calls = 0                    # progress calls so far
        self._cancel = threading.Event()
        self._done = threading.Event()

    # the progress callback -------------------------------------------------------------
    def __call__(self, done: float, total: float) -> None:
        self.calls += 1
        if total:
            self.fraction = min(1.0, max(0.0, float(done) / float(total)))
            if self.on_progress is not None:
                self.on_progress(self.fraction)
        self.check()

    def check(self) -> None:
        """Raise :class:`Cancelled` if this job was cancelled (a cancellation point)."""
        if self._cancel.is_set():
            raise Cancelled(self.name)

    # control ---------------------------------------------------------------------------
    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the job ended (finished, cancelled or failed); ``False`` on timeout."""
        return self._done.wait(timeout)

    def _finish(self, state: str) -> None:
        self.state = state
        self._done.set()

    def __repr__(self) -> str:
        return f"<Job {self.name} {self.state} {self.fraction:.0%}>"


class Worker:
    """Runs submitted jobs one at a time on a daemon thread; the newest request wins."""

    def __init__(self, name: str = "lrpkit-worker") -> None:
        self.name = name
        self._cond = threading.Condition()
        self._pending: Job | None = None
        self._current: Job | None = None
        self._thread: threading.Thread | None = None
        #: the job submitted last (set before it can start): the one whose results count
        self.latest: Job | None = None

    def submit(self, fn: Callable[..., Any], *args: Any, delay: float = 0.0,
               on_progress: Callable[[float], Any] | None = None, name: str = "",
               **kwargs: Any) -> Job:
        """Run ``fn(job, *args, **kwargs)`` after ``delay`` s; cancels the running job and
        drops the waiting one.  Returns the new :class:`Job`."""
        job = Job(fn, args, kwargs, delay, on_progress, name)
        with self._cond:
            if self._pending is not None:
                self._pending._finish("cancelled")
            if self._current is not None:
                self._current.cancel()
            self._pending = self.latest = job
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
                self._thread.start()
            self._cond.notify_all()
        return job

    def cancel(self) -> None:
        """Cancel the running job and drop the waiting one."""
        with self._cond:
            if self._pending is not None:
                self._pending._finish("cancelled")
                self._pending = None
            if self._current is not None:
                self._current.cancel()
            self._cond.notify_all()

    @property
    def busy(self) -> bool:
        """A job is waiting or running."""
        with self._cond:
            return self._pending is not None or self._current is not None

    @property
    def current(self) -> Job | None:
        """The running job (None when idle)."""
        return self._current

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until no job is waiting or running; ``False`` on timeout."""
        end = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._pending is not None or self._current is not None:
                left = None if end is None else end - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def _next(self) -> Job:
        with self._cond:
            while True:
                job = self._pending
                if job is None:
                    self._cond.wait()
                    continue
                left = job.not_before - time.monotonic()
                if left > 0:
                    self._cond.wait(left)      # a newer submit wakes us and replaces the job
                    continue
                self._pending, self._current = None, job
                job.state = "running"
                return job

    def _loop(self) -> None:
        while True:
            job = self._next()
            state = "done"
            try:
                job.check()
                job.result = job.fn(job, *job.args, **job.kwargs)
            except Cancelled:
                state = "cancelled"
            except BaseException as exc:  # noqa: BLE001 - reported on the job
                job.error, state = exc, "error"
            with self._cond:
                self._current = None
                job._finish(state)
                self._cond.notify_all()
