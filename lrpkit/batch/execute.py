"""Executing one cell: papermill in a child process of its own, committed atomically.

:func:`run_cell_process` starts ``python -m lrpkit.batch <attempt>`` (the cell as JSON on
stdin), which calls :func:`execute_cell`:

1. the cell's status file says ``running`` and its old files are removed (an interrupted
   run never leaves an old result that looks current);
2. papermill executes the notebook into a hidden staging folder beside the outputs; the
   kernel start is serialised by a file lock (jupyter_client picks "free" ports by binding
   and releasing them, so kernels started at the same moment by parallel workers can pick
   the same ports) and a kernel that dies or times out while starting
   (:class:`~lrpkit.batch.failures.KernelStartError`) is started again (up to
   :data:`KERNEL_START_ATTEMPTS` times, ``start_timeout`` seconds each);
3. the notebook, its HTML, its results and a thumbnail are moved into place and the status
   file is written last (``ok``, or ``failed`` with its :class:`~lrpkit.batch.failures.Failure`:
   what happened, the cell where execution stopped and where the partial output is).

SIGTERM makes the child kill its kernel, remove the staging folder, mark the cell
``interrupted`` and exit; a child whose parent dies (a killed dask worker) gets SIGTERM from
the kernel (``PR_SET_PDEATHSIG``).
"""
from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from collections.abc import Callable, Sequence

from ..results import atomic_path
from .cells import (STAGING_PREFIX, Cell, CellResult, base_config_data, config_keys, config_overrides,
                    fingerprint, merged_config, now, read_status, write_status)
from .failures import (ExportError, Failure, Interrupted, KernelStartError, MissingResult, WorkerDied,
                       classify)
from .render import export_html, thumbnail

__all__ = ["KERNEL_START_ATTEMPTS", "PARALLEL_ENV", "LOG_ENV", "claim", "execute_cell", "failing_cell",
           "child_env", "run_cell_process", "run_with_retries", "result_after_exit", "not_run", "child_main"]

log = logging.getLogger(__name__)

KERNEL_START_ATTEMPTS = 3
#: set while cells run in parallel (dask): their kernels then use one thread each
PARALLEL_ENV = "LRPKIT_GRID_PARALLEL"
#: the run's log file (set by the parent for the run): cells' processes and kernels write there
LOG_ENV = "LRPKIT_RUN_LOG"

_KERNEL_LOCK = Path(tempfile.gettempdir()) / "lrpkit-kernel-start.lock"
_CURRENT: dict[str, Any] = {}  # the child's live kernel manager and staging folder (for SIGTERM)


# ---------------------------------------------------------------------------------------------
# in the child: papermill


def _papermill_engine() -> str:
    """A papermill engine whose kernel start holds a machine-wide lock until the kernel answers
    and raises :class:`KernelStartError` for whatever stops the kernel from starting."""
    from nbclient.util import run_sync
    from papermill.clientwrap import PapermillNotebookClient
    from papermill.engines import NBClientEngine, papermill_engines

    class _LockedClient(PapermillNotebookClient):
        _lock_fh = None

        async def async_start_new_kernel(self, **kw):  # type: ignore[override]
            self._lock_fh = open(_KERNEL_LOCK, "a")
            fcntl.flock(self._lock_fh, fcntl.LOCK_EX)
            try:
                await super().async_start_new_kernel(**kw)
                _CURRENT["km"] = self.km
            except Exception as exc:
                self._release()
                raise KernelStartError(f"{type(exc).__name__}: {exc}") from exc
            except BaseException:
                self._release()
                raise

        async def async_start_new_kernel_client(self):  # type: ignore[override]
            try:
                return await super().async_start_new_kernel_client()
            except Exception as exc:
                raise KernelStartError(f"{type(exc).__name__}: {exc}") from exc
            finally:
                self._release()

        # nbclient's blocking wrappers (papermill calls these) wrap the base class's coroutines;
        # without these two lines the overrides above would never run
        start_new_kernel = run_sync(async_start_new_kernel)
        start_new_kernel_client = run_sync(async_start_new_kernel_client)

        def _release(self):
            if self._lock_fh is not None:
                fcntl.flock(self._lock_fh, fcntl.LOCK_UN)
                self._lock_fh.close()
                self._lock_fh = None

    class LockedEngine(NBClientEngine):
        @classmethod
        def execute_managed_notebook(cls, nb_man, kernel_name, log_output=False, stdout_file=None,
                                     stderr_file=None, start_timeout=60, execution_timeout=None, **kw):
            from papermill.utils import merge_kwargs, remove_args

            kw = remove_args(["input_path", "timeout", "startup_timeout"], **kw)
            final = merge_kwargs(kw, timeout=execution_timeout, startup_timeout=start_timeout,
                                 kernel_name=kernel_name, log=logging.getLogger("papermill"),
                                 log_output=log_output, stdout_file=stdout_file, stderr_file=stderr_file)
            return _LockedClient(nb_man, **final).execute()

    papermill_engines.register("lrpkit", LockedEngine)
    return "lrpkit"


def _execute_notebook(cell: Cell, output: Path, parameters: dict[str, Any]) -> Failure | None:
    """Run the notebook with papermill into ``output``; the failure, or None when it ran through.

    A kernel that did not start is started again (:data:`KERNEL_START_ATTEMPTS` in all).
    """
    import papermill as pm

    from ..config import project_root

    engine = _papermill_engine()
    failure: Failure | None = None
    for k in range(1, KERNEL_START_ATTEMPTS + 1):
        try:
            pm.execute_notebook(cell.notebook, str(output), parameters=parameters, kernel_name="python3",
                                engine_name=engine, cwd=str(project_root()), progress_bar=False,
                                log_output=False, execution_timeout=cell.timeout,
                                start_timeout=cell.start_timeout)
            return None
        except KernelStartError as exc:
            log.warning("%s: kernel did not start (attempt %d/%d): %s", cell.name, k, KERNEL_START_ATTEMPTS,
                        exc.error)
            _CURRENT.pop("km", None)
            failure = exc
            if k < KERNEL_START_ATTEMPTS:
                time.sleep(0.5 * k)
        except Exception as exc:  # noqa: BLE001 - a cell error, kernel death, timeout, bad notebook
            return classify(exc)
    return failure


def failing_cell(nb_path: Path) -> tuple[int | None, int | None, str | None]:
    """(execution count, index, first source line) of the cell where execution stopped.

    Papermill marks a cell that raised ``failed``; when the kernel dies or a cell times out it
    marks the cell ``completed`` on the way out, so the stopping cell is the last one that
    started (``start_time`` set).
    """
    import nbformat

    try:
        nb = nbformat.read(str(nb_path), as_version=4)
    except Exception:  # noqa: BLE001
        return None, None, None
    hit = None
    for i, c in enumerate(nb.cells):
        pm = c.get("metadata", {}).get("papermill", {})
        if pm.get("status") == "failed" or pm.get("exception"):
            hit = (i, c)
            break
        if c.cell_type == "code" and (pm.get("start_time") or pm.get("status") == "running"):
            hit = (i, c)
    if hit is None:
        return None, None, None
    i, c = hit
    first = next((ln.strip() for ln in c.source.splitlines() if ln.strip()), "")
    return c.get("execution_count"), i, first[:80]


def _parameters(cell: Cell, results_path: Path) -> dict[str, Any]:
    """The notebook's papermill parameters; writes the cell's own config when it overrides any."""
    merged = merged_config(cell)
    cfg_arg = cell.config
    if merged is not None:  # the cell's own config, beside its outputs (the kernel reads it)
        import yaml

        cfg_file = cell.path(".config.yaml")
        with atomic_path(cfg_file) as tmp:
            tmp.write_text(yaml.safe_dump(merged, sort_keys=False))
        cfg_arg = str(cfg_file)
    _, nb_params = config_overrides(cell, {**base_config_data(cell.config), **config_keys()})
    return {"config": cfg_arg, "results_path": str(results_path), **nb_params}


def claim(cell: Cell, attempt: int = 1) -> CellResult:
    """Mark ``cell`` ``running`` (its status first: the index can no longer show it ok), then
    remove its old files (no old result survives a new run); the running :class:`CellResult`.

    The parent does this before it starts the cell's process and rewrites the index, so that
    an index left by a parent killed with SIGKILL never links files the child deleted; the
    child does it again (nothing left to remove)."""
    out = Path(cell.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    res = CellResult(name=cell.name, group=cell.group, state="running", params=cell.param_dict,
                     notebook=cell.notebook, attempts=attempt, fingerprint=fingerprint(cell),
                     started=now(), host=socket.gethostname(), out_dir=str(out), config=str(cell.config))
    write_status(cell.status_path, res)
    for p in cell.outputs():
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
    return res


def execute_cell(cell: Cell, attempt: int = 1) -> CellResult:
    """Run one cell now, in this process (see the module docstring); never raises for notebook errors."""
    out = Path(cell.out_dir)
    res = claim(cell, attempt)
    _CURRENT.update(result=res, status=cell.status_path)
    staging = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{cell.name[:40]}-{os.getpid()}-", dir=out))
    _CURRENT["staging"] = staging
    t0 = time.perf_counter()
    try:
        s_nb, s_nc = staging / f"{cell.name}.ipynb", staging / f"{cell.name}.nc"
        failure = _execute_notebook(cell, s_nb, _parameters(cell, s_nc))
        if failure is None:
            res.state = "ok"
        else:
            res.fail(failure)
        res.seconds = time.perf_counter() - t0
        if s_nb.exists():
            if res.failure is not None:
                res.failure.located(*failing_cell(s_nb))
            partial = res.failure is not None and res.failure.partial
            stem = f"{cell.name}.partial" if partial else cell.name
            if partial:
                s_nb.rename(staging / f"{stem}.ipynb")
            try:
                export_html(staging / f"{stem}.ipynb", staging / f"{stem}.html", hide_code=cell.hide_code)
                res.html = f"{stem}.html"
            except Exception as exc:  # noqa: BLE001
                if res.ok:
                    res.fail(ExportError(f"{type(exc).__name__}: {exc}"))
            res.ipynb = f"{stem}.ipynb"
            if partial:
                res.partial = str(out / (res.html or res.ipynb))
            with contextlib.suppress(Exception):
                if thumbnail(staging / f"{stem}.ipynb", staging / f"{cell.name}.thumb.png"):
                    res.thumbnail = f"{cell.name}.thumb.png"
        if res.ok and not s_nc.exists():
            res.fail(MissingResult(f"notebook wrote no results file ({cell.name}.nc); save a Dataset to "
                                   f"results_path with lrpkit.results.save_dataset"))
        if s_nc.exists():
            if res.ok:
                res.results = f"{cell.name}.nc"
            else:   # a notebook that failed after saving publishes no results
                s_nc.unlink()
        # commit: outputs first, the status file last (SIGTERM waits until it is done)
        blocked = threading.current_thread() is threading.main_thread()
        if blocked:
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        try:
            for f in sorted(staging.iterdir()):
                if not f.name.startswith("."):
                    os.replace(f, out / f.name)
            res.finished = now()
            write_status(cell.status_path, res)
        finally:
            if blocked:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        _CURRENT.pop("staging", None)
    return res


def _kill_kernel() -> None:
    km = _CURRENT.get("km")
    if km is None:
        return
    try:
        prov = getattr(km, "provisioner", None)
        pid = getattr(getattr(prov, "process", None), "pid", None) or getattr(prov, "pid", None)
        if pid:
            os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, OSError):
        pass
    with contextlib.suppress(Exception):
        km.cleanup_connection_file()


def _on_child_sigterm(signum, frame) -> None:
    """Child: stop now, leave nothing half-written, mark the cell interrupted."""
    _kill_kernel()
    staging = _CURRENT.get("staging")
    if staging:
        shutil.rmtree(staging, ignore_errors=True)
    res: CellResult | None = _CURRENT.get("result")
    status: Path | None = _CURRENT.get("status")
    if res is not None and status is not None:
        res.fail(Interrupted(f"stopped by {signal.Signals(signum).name}"))
        res.finished = now()
        with contextlib.suppress(Exception):
            write_status(status, res)
    os._exit(128 + signum)


def child_main(argv: Sequence[str]) -> int:  # pragma: no cover - runs in the child process
    """``python -m lrpkit.batch [attempt]``: execute the cell given as JSON on stdin; 0 if ok."""
    attempt = int(argv[0]) if argv else 1
    cell = Cell.from_json(sys.stdin.read())
    signal.signal(signal.SIGTERM, _on_child_sigterm)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides; it sends SIGTERM
    logging.basicConfig(level=logging.WARNING)
    res = execute_cell(cell, attempt)
    return 0 if res.ok else 1


# ---------------------------------------------------------------------------------------------
# in the parent: the child process


def _set_pdeathsig() -> None:  # pragma: no cover - runs in the child between fork and exec
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001
        pass


def child_env() -> dict[str, str]:
    """The environment of a cell's process and so of its kernel."""
    from ..runtime import malloc_env

    env = malloc_env()                # kernels keep freed tensors' memory (lrpkit.runtime)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env["LRPKIT_STATIC"] = "1"        # lrpkit.widgets: static figures in batch runs
    # figures inline in the executed notebook (and so in its HTML and thumbnail), whatever
    # backend the caller's shell chose (MPLBACKEND=Agg would silently drop every figure)
    env["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    env.setdefault("PYTHONUNBUFFERED", "1")
    if os.environ.get(PARALLEL_ENV):  # cells side by side: one thread each, no oversubscription
        env.setdefault("OMP_NUM_THREADS", "1")
        env.setdefault("MKL_NUM_THREADS", "1")
        env.setdefault("LOKY_MAX_CPU_COUNT", "1")   # and no joblib pools (fisher.n_jobs=-1)
    return env


def _spawn(attempt: int) -> subprocess.Popen:
    """The cell's process; its output and its kernel's (ipykernel's warnings, the notebook's
    prints) go to the run's log file (:data:`LOG_ENV`) when there is one, not the terminal."""
    log_file = os.environ.get(LOG_ENV)
    out = None
    if log_file:
        with contextlib.suppress(OSError):
            out = open(log_file, "a", buffering=1)
    try:
        return subprocess.Popen([sys.executable, "-m", "lrpkit.batch", str(attempt)], stdin=subprocess.PIPE,
                                stdout=out, stderr=subprocess.STDOUT if out is not None else None,
                                env=child_env(), start_new_session=True, text=True,
                                preexec_fn=_set_pdeathsig if sys.platform.startswith("linux") else None)
    finally:
        if out is not None:
            out.close()


def _stop_child(proc: subprocess.Popen, grace: float = 10.0) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def result_after_exit(cell: Cell, rc: int, attempt: int, stopped: bool = False) -> CellResult:
    """The cell's status once its process exited with ``rc``; a process that died without
    writing one (still ``running`` or missing) is recorded as :class:`WorkerDied`, or as
    :class:`Interrupted` when the run stopped it (``stopped``) before it could."""
    st = read_status(cell.status_path)
    if st is None or st.state == "running":  # the child died without a word: mark it, remove leftovers
        for p in Path(cell.out_dir).glob(f"{STAGING_PREFIX}{cell.name[:40]}-*"):
            shutil.rmtree(p, ignore_errors=True)
        st = st or CellResult(name=cell.name, group=cell.group, state="failed", params=cell.param_dict,
                              notebook=cell.notebook, out_dir=cell.out_dir, config=str(cell.config))
        if stopped:
            st.fail(Interrupted("stopped before it finished starting; run again to resume"))
        else:
            st.fail(WorkerDied(f"the process running the cell exited with {rc}" + (
                f" (killed by {signal.Signals(-rc).name})" if rc < 0 and -rc in signal.valid_signals() else "")))
        st.attempts = attempt
        st.finished = now()
        write_status(cell.status_path, st)
    return st


def run_cell_process(cell: Cell, attempt: int = 1, stop: Callable[[], bool] | None = None,
                     on_start: Callable[[subprocess.Popen], None] | None = None) -> CellResult:
    """Run a cell in a child process and wait; ``stop()`` polled each 0.5 s stops it early.

    A run already stopped (``stop()`` true) starts nothing: the cell is :func:`not_run`."""
    if stop is not None and stop():
        return not_run(cell, "the run was stopped before this cell started")
    proc = _spawn(attempt)
    if on_start is not None:
        on_start(proc)
    try:
        proc.stdin.write(cell.to_json())
        proc.stdin.close()
    except BrokenPipeError:  # pragma: no cover
        pass
    stopped = False
    try:
        while True:
            try:
                rc = proc.wait(0.5)
                break
            except subprocess.TimeoutExpired:
                if stop is not None and stop():
                    stopped = True
                    _stop_child(proc)
                    rc = proc.returncode
                    break
    except BaseException:
        _stop_child(proc)
        with contextlib.suppress(Exception):
            result_after_exit(cell, proc.returncode if proc.returncode is not None else -1, attempt,
                              stopped=True)
        raise
    return result_after_exit(cell, rc, attempt, stopped=stopped)


def _signature(res: CellResult | None) -> tuple | None:
    f = res.failure if res is not None and res.state == "failed" else None
    return None if f is None else (f.kind, (f.error or "").strip(), f.cell_index)


def run_with_retries(cell: Cell, retries: int, stop: Callable[[], bool] | None = None,
                     before: Callable[[int], None] | None = None) -> CellResult:
    """Run ``cell`` (:func:`run_cell_process`), again up to ``retries`` times while its failure
    is worth a retry (:attr:`CellResult.worth_retry`), but never after the same error in the same
    cell twice: that failure is deterministic (the cell's last run, when it failed for the same
    notebook, config and code, counts as the first time).  ``before(attempt)`` runs before each
    attempt (the serial runner claims the cell and rewrites the index there)."""
    last = read_status(cell.status_path)
    seen = _signature(last) if last is not None and last.fingerprint == fingerprint(cell) else None
    res = None
    for attempt in range(1, retries + 2):
        if stop is not None and stop():
            return res or not_run(cell, "the run was stopped before this cell started")
        if before is not None:
            before(attempt)
        res = run_cell_process(cell, attempt, stop=stop)
        sig = _signature(res)
        if not res.worth_retry or (stop is not None and stop()):
            break
        if sig is not None and sig == seen:
            log.warning("%s: the same error in the same cell again (%s); not retried", cell.name,
                        res.describe())
            break
        seen = sig
        log.warning("%s: attempt %d failed (%s)%s", cell.name, attempt, res.describe(),
                    "; retrying" if attempt <= retries else "")
    return res


def not_run(cell: Cell, why: str) -> CellResult:
    """The result of a cell the run never started: its status when that is ``ok`` (the old
    result stands; the index shows it ok, stale or missing by :func:`~lrpkit.batch.cells.shown_state`),
    else ``interrupted`` with ``not run: <why>`` written to its status (never "failed": nothing
    of it ran)."""
    st = read_status(cell.status_path)
    if st is not None and st.state == "ok":
        return st
    if st is not None and st.state == "interrupted" and (st.error or "").startswith("not run"):
        return st
    res = CellResult(name=cell.name, group=cell.group, state="interrupted", params=cell.param_dict,
                     notebook=cell.notebook, out_dir=cell.out_dir, config=str(cell.config), finished=now())
    res.fail(Interrupted(f"not run: {why}; run again to resume"))
    with contextlib.suppress(OSError):
        write_status(cell.status_path, res)
    return res
