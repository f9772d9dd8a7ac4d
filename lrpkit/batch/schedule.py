"""Running many cells: serially or on dask, with retries, signals, resume and the grid on top.

:func:`run_cells` runs each cell in a child process (:func:`~lrpkit.batch.execute.run_cell_process`),
skipping cells that are current (:func:`~lrpkit.batch.cells.cell_is_current`) unless
``force``.  A failed cell is run again ``retries`` times when its failure is worth a retry
(:attr:`Failure.retry <lrpkit.batch.failures.Failure.retry>`), then reported.  SIGINT /
SIGTERM stop the running cells (their children mark them ``interrupted``), call
``on_change`` (which writes the index) and raise :class:`RunInterrupted`.

With ``scheduler="local:N"`` the cells run on a dask.distributed ``LocalCluster`` of N
single-threaded worker processes, longest first (dask priorities from
:func:`expected_seconds`); ``scheduler="tcp://host:port"`` submits them to an existing
cluster (its workers must see the same file system and have lrpkit installed).

:func:`run_grid` runs a grid config's cells (:mod:`lrpkit.batch.spec`), combines each
notebook's results (:mod:`lrpkit.batch.combine`) and writes the grid's index page and, when
the grid is below ``reports/``, the full index there.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import re
import shutil
import signal
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from collections.abc import Callable, Iterable, Sequence

from .analysed import write_analysed
from ..runlock import folder_lock
from .cells import STAGING_PREFIX, Cell, CellResult, cell_is_current, now, read_status, write_status
from .combine import combine_cells, remove_combined, save_combined
from .execute import LOG_ENV, PARALLEL_ENV, claim, not_run, result_after_exit, run_with_retries
from .failures import Interrupted
from .render import write_index
from .spec import GridSpec, grid_cells, load_grid

__all__ = ["RunInterrupted", "run_cells", "expected_seconds", "GridSummary", "run_grid", "check_scheduler",
           "signals_raise", "run_log", "on_every_exit"]

log = logging.getLogger(__name__)

#: the run's log file in the reports / grid folder (:func:`run_log`)
LOG_NAME = "lrpkit.log"


class RunInterrupted(KeyboardInterrupt):
    """The run was stopped by SIGINT or SIGTERM; ``signum`` tells which."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum


def _parse_scheduler(scheduler: str | None) -> tuple[str, int | str | None]:
    if scheduler in (None, "", "serial", "local:0"):
        return "serial", None
    m = re.fullmatch(r"local(?::(\d+))?", scheduler)
    if m:
        n = int(m.group(1) or os.cpu_count() or 1)
        if n < 1:
            raise ValueError(f"--scheduler local:N needs N >= 1, got {scheduler!r}")
        return "local", n
    if re.fullmatch(r"(tcp|tls|ws|wss|inproc)://.+", scheduler):
        return "address", scheduler
    raise ValueError(f"scheduler must be 'serial', 'local:N' or a dask address like 'tcp://host:8786', "
                     f"got {scheduler!r}")


def check_scheduler(scheduler: str | None) -> None:
    """Raise ``ValueError`` (one line naming the accepted forms) for a bad ``--scheduler``; the
    runners call it before they create anything."""
    _parse_scheduler(scheduler)


_SIGNAL_DEPTH = [0]


@contextlib.contextmanager
def signals_raise() -> Any:
    """SIGINT / SIGTERM raise :class:`RunInterrupted` in the main thread, once: later signals
    are ignored until the outermost block ends (its cleanup, the index, is not cut short).
    Nested blocks (``run_all`` -> ``run_cells``) share the outermost one's handlers."""
    if threading.current_thread() is not threading.main_thread() or _SIGNAL_DEPTH[0]:
        _SIGNAL_DEPTH[0] += 1
        try:
            yield
        finally:
            _SIGNAL_DEPTH[0] -= 1
        return

    def handler(signum, frame):
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise RunInterrupted(signum)

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    _SIGNAL_DEPTH[0] += 1
    try:
        yield
    finally:
        _SIGNAL_DEPTH[0] -= 1
        for s, h in old.items():
            signal.signal(s, h)


_signals_raise = signals_raise


class _TqdmHandler(logging.Handler):
    """Log records printed above the progress bar (``tqdm.write``), never glued onto it."""

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm.auto import tqdm

        with contextlib.suppress(Exception):
            tqdm.write(self.format(record), file=sys.stderr)


@contextlib.contextmanager
def run_log(path: Path) -> Any:
    """During a run: lrpkit's log records go to ``path`` (INFO and up) and, warnings only, to
    the terminal above the progress bar; the cells' processes and their kernels write their
    output (ipykernel's notes, the notebooks' prints) to ``path`` too (:data:`LOG_ENV`)."""
    lg = logging.getLogger("lrpkit")
    path.parent.mkdir(parents=True, exist_ok=True)
    fh = logging.FileHandler(path, encoding="utf-8")
    fh.setLevel(logging.INFO)
    fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    console = _TqdmHandler(logging.WARNING)
    console.setFormatter(logging.Formatter("[lrpkit] %(message)s"))
    saved = lg.level, lg.propagate, os.environ.get(LOG_ENV)
    with contextlib.suppress(OSError), open(path, "a", encoding="utf-8") as f:
        f.write(f"\n=== lrpkit run, PID {os.getpid()}, {now()} ===\n")
    lg.addHandler(fh)
    lg.addHandler(console)
    lg.setLevel(logging.INFO)
    lg.propagate = False
    os.environ[LOG_ENV] = str(path)
    try:
        yield path
    finally:
        lg.removeHandler(fh)
        lg.removeHandler(console)
        fh.close()
        lg.setLevel(saved[0])
        lg.propagate = saved[1]
        if saved[2] is None:
            os.environ.pop(LOG_ENV, None)
        else:
            os.environ[LOG_ENV] = saved[2]


@contextlib.contextmanager
def on_every_exit(write: Callable[[], None]) -> Any:
    """Call ``write`` (the index) when the block ends, however (an exception, RunInterrupted), and
    at interpreter exit (``atexit``) should the block be left without its ``finally`` running."""
    import atexit

    def safe() -> None:
        with contextlib.suppress(Exception):
            write()

    atexit.register(safe)
    try:
        yield
    finally:
        atexit.unregister(safe)
        safe()


def _clean_stale_staging(out_dirs: Iterable[Path]) -> None:
    """Remove staging folders left by processes that no longer exist (killed with SIGKILL)."""
    for d in set(out_dirs):
        for p in Path(d).glob(f"{STAGING_PREFIX}*"):
            m = re.search(r"-(\d+)-[^-]*$", p.name)
            pid = int(m.group(1)) if m else None
            alive = False
            if pid:
                try:
                    os.kill(pid, 0)
                    alive = True
                except ProcessLookupError:
                    alive = False
                except PermissionError:
                    alive = True
            if not alive:
                shutil.rmtree(p, ignore_errors=True)


def run_cells(cells: Sequence[Cell], scheduler: str | None = None, force: bool = False,
              retries: int = 1, progress: bool = True,
              on_change: Callable[[], None] | None = None) -> list[CellResult]:
    """Run cells (skipping current ones unless ``force``); results in the cells' order.

    Each cell's model(s) and data set are written beside its status first
    (:func:`lrpkit.batch.analysed.write_analysed`), for the index.  ``on_change`` (which
    writes the index) is called first (it repairs what a killed run left: cells it left
    ``running`` are marked interrupted), before each serial cell starts (after its old files
    are removed), after each cell and on every way out.

    Raises :class:`RunInterrupted` on SIGINT / SIGTERM after stopping the running cells and
    marking the ones never started ``interrupted`` ("not run").
    """
    from tqdm.auto import tqdm

    kind, arg = _parse_scheduler(scheduler)
    notify = on_change or (lambda: None)
    t_start = now()
    with signals_raise():
        for c in cells:
            Path(c.out_dir).mkdir(parents=True, exist_ok=True)
        _clean_stale_staging(Path(c.out_dir) for c in cells)
        _repair_orphans(cells)
        for c in cells:  # what each cell analyses, for the index (grid cells may differ)
            write_analysed(c)
        notify()
        results: dict[str, CellResult] = {}
        todo = []
        for c in cells:
            if not force and cell_is_current(c):
                st = read_status(c.status_path)
                st.state = "skipped"
                results[c.name] = st
                log.info("%s: up to date, skipped", c.name)
            else:
                todo.append(c)
        bar = tqdm(total=len(todo), desc="cells", disable=not progress, unit="cell")

        def done(c: Cell, r: CellResult) -> None:
            results[c.name] = r
            bar.update(1)
            bar.set_postfix_str(f"{c.name[:30]} {r.state}")
            (log.info if r.ok else log.warning)("%s: %s (%.1f s)", c.name, r.describe(), r.seconds)
            notify()

        def started(c: Cell, attempt: int) -> None:   # serial: claimed, then the index says so
            claim(c, attempt)
            notify()

        if kind != "serial":  # inherited by LocalCluster workers started below
            os.environ[PARALLEL_ENV] = "1"
        try:
            if kind == "serial":
                _run_serial(todo, retries, done, started)
            else:
                _run_dask(todo, retries, done, kind, arg)
        except RunInterrupted as exc:
            _mark_interrupted(todo, exc.signum, t_start)
            raise
        finally:
            bar.close()
            os.environ.pop(PARALLEL_ENV, None)
            notify()
    return [results[c.name] for c in cells]


def _repair_orphans(cells: Sequence[Cell]) -> None:
    """Cells a killed run left ``running`` (this run holds the folder's lock, so no live run is
    writing them) are marked interrupted: the index shows no running cell that is not."""
    for c in cells:
        st = read_status(c.status_path)
        if st is not None and st.state == "running":
            st.fail(Interrupted("its run ended without finishing it (killed?); run again to resume"))
            st.finished = st.finished or now()
            with contextlib.suppress(OSError):
                write_status(c.status_path, st)


def _mark_interrupted(cells: Sequence[Cell], signum: int, t_start: str = "") -> None:
    """After a stop: cells still ``running`` or ``interrupted`` name the signal the run got;
    cells this run never started are ``interrupted`` as "not run" (a current old result stays)."""
    _clean_stale_staging(Path(c.out_dir) for c in cells)
    name = signal.Signals(signum).name
    for c in cells:
        st = read_status(c.status_path)
        began = st is not None and st.started and st.started >= t_start
        if st is None or not began:
            not_run(c, f"the run was stopped by {name} before this cell started")
            continue
        if st.state in ("running", "interrupted") and not (st.error or "").startswith("not run"):
            old = st.failure
            st.fail(Interrupted(f"stopped by {name}; run again to resume"))
            if old is not None:
                st.failure.located(old.cell, old.cell_index, old.source)
            st.finished = st.finished or now()
            with contextlib.suppress(OSError):
                write_status(c.status_path, st)


def _run_serial(todo: Sequence[Cell], retries: int, done: Callable,
                started: Callable[[Cell, int], None] | None = None) -> None:
    for c in todo:
        res = run_with_retries(c, retries, before=(lambda a, c=c: started(c, a)) if started else None)
        done(c, res)


def expected_seconds(cell: Cell) -> float:
    """How long ``cell`` is expected to run: its last successful run's duration (status file),
    else the notebook's ``metadata.lrpkit.expected_seconds`` (set in its jupytext header), else 0.

    Parallel runs start the longest cells first (dask priorities), so that a long notebook
    submitted last does not run alone at the end while the other workers idle.
    """
    st = read_status(cell.status_path)
    if st is not None and st.state == "ok" and st.seconds:
        return float(st.seconds)
    with contextlib.suppress(OSError, ValueError, TypeError, AttributeError):
        meta = json.loads(Path(cell.notebook).read_text(encoding="utf-8")).get("metadata", {})
        return float((meta.get("lrpkit") or {}).get("expected_seconds") or 0.0)
    return 0.0


def _dask_task(cell_json: str, retries: int, stop_event: str) -> dict:  # pragma: no cover - on workers
    """A dask task: the cell in a child process, retried; stops when the run's Event is set."""
    from distributed import Event

    cell = Cell.from_json(cell_json)
    ev = Event(stop_event)
    last = 0.0
    flag = {"stop": False}

    def stop() -> bool:
        nonlocal last
        if time.monotonic() - last > 1.0:
            last = time.monotonic()
            with contextlib.suppress(Exception):
                flag["stop"] = ev.is_set()
        return flag["stop"]

    return run_with_retries(cell, retries, stop=stop).to_dict()


def _run_dask(todo: Sequence[Cell], retries: int, done: Callable, kind: str, arg: Any) -> None:
    from distributed import Client, Event, LocalCluster, as_completed

    if not todo:
        return
    cluster = None
    if kind == "local":
        cluster = LocalCluster(n_workers=int(arg), threads_per_worker=1, processes=True,
                               dashboard_address=None, host="127.0.0.1", silence_logs=logging.ERROR)
        client = Client(cluster)
    else:
        client = Client(arg, timeout="30s")
    stop_name = f"lrpkit-stop-{uuid.uuid4().hex}"
    ev = Event(stop_name, client=client)
    by_key: dict = {}
    futs: list = []
    try:
        for c in sorted(todo, key=expected_seconds, reverse=True):   # longest first
            f = client.submit(_dask_task, c.to_json(), retries, stop_name, pure=False,
                              priority=int(expected_seconds(c)),
                              key=f"lrpkit-cell-{c.name}-{uuid.uuid4().hex[:6]}")
            by_key[f.key] = c
            futs.append(f)
        for f in as_completed(futs):
            c = by_key[f.key]
            try:
                res = CellResult.from_dict(f.result())
            except Exception as exc:  # noqa: BLE001 - e.g. the worker died too often
                res = result_after_exit(c, -1, retries + 1)
                if res.failure is not None:
                    res.failure.error = f"{type(exc).__name__}: {exc}"
                write_status(c.status_path, res)
            done(c, res)
    except BaseException:
        with contextlib.suppress(Exception):
            ev.set()
        deadline = time.monotonic() + 20
        with contextlib.suppress(Exception):  # let the tasks stop their children and mark them
            while time.monotonic() < deadline and any(not f.done() for f in futs):
                time.sleep(0.2)
        raise
    finally:
        with contextlib.suppress(Exception):
            client.close(timeout=10)
        if cluster is not None:
            with contextlib.suppress(Exception):
                cluster.close(timeout=10)


# ---------------------------------------------------------------------------------------------
# grids


@dataclass
class GridSummary:
    """The outcome of a grid run: every cell's result and the combined stores."""

    spec: GridSpec
    results: list[CellResult]
    combined: dict[str, Path]
    index: Path | None = None
    seconds: float = 0.0
    log: Path | None = None

    @property
    def failures(self) -> list[CellResult]:
        return [r for r in self.results if not r.ok]

    @property
    def ok(self) -> bool:
        return not self.failures

    def __str__(self) -> str:
        lines = [f"{len(self.results)} cell(s), {len(self.failures)} failed, "
                 f"{sum(r.state == 'skipped' for r in self.results)} skipped (current) in "
                 f"{self.seconds:.1f} s -> {self.index}"]
        for r in self.results:
            ps = ", ".join(f"{k}={v}" for k, v in r.params.items())
            lines.append(f"  {r.name[:60]:60s} {r.state:11s} {r.seconds:7.1f} s  {ps}"
                         + ("" if r.ok else f"\n      {r.describe()}"))
        for nb, p in self.combined.items():
            lines.append(f"  combined {nb}: {p}")
        if self.log is not None:
            lines.append(f"  log: {self.log}")
        return "\n".join(lines)


def run_grid(grid: str | os.PathLike | GridSpec, scheduler: str | None = None, force: bool = False,
             progress: bool = True, out: str | os.PathLike | None = None) -> GridSummary:
    """Run every cell of a grid config, combine per notebook, write the index; see module doc.

    The scheduler is checked before anything is created; the grid's folder is locked for the
    run (:func:`lrpkit.runlock.folder_lock`: a second run there raises
    :class:`~lrpkit.runlock.RunLocked`); the combined stores and the index are derived again
    from the cells' files on every way out (an interrupt included), so that a store never
    holds a cell that is not current; the log goes to ``<out>/lrpkit.log``."""
    check_scheduler(scheduler)
    spec = grid if isinstance(grid, GridSpec) else load_grid(grid)
    if out is not None:
        spec = dataclasses.replace(spec, out=Path(out))
    t0 = time.perf_counter()
    cells = grid_cells(spec)
    combined: dict[str, Path] = {}

    def index() -> None:
        with contextlib.suppress(Exception):
            write_index(spec.out, title=f"lrpkit grid {Path(spec.source).stem}", config_source=spec.source,
                        cells=cells)
        root = _reports_root(spec.out)
        if root is not None:
            with contextlib.suppress(Exception):
                write_index(root)

    def combine() -> None:
        for group in dict.fromkeys(c.group for c in cells):
            gc = [c for c in cells if c.group == group]
            try:
                ds = combine_cells(gc)
            except ValueError as exc:
                log.warning("%s: nothing combined (%s)", group, exc)
                remove_combined(spec.out / group)
                combined.pop(group, None)
                continue
            combined[group] = save_combined(ds, spec.out / group, spec.store)

    def finish() -> None:
        with contextlib.suppress(Exception):
            combine()
        index()

    with signals_raise(), folder_lock(spec.out, f"lrpkit report --config {spec.source}"):
        spec.out.mkdir(parents=True, exist_ok=True)
        with run_log(spec.out / LOG_NAME) as log_path, on_every_exit(finish):
            log.info("grid %s: %d cell(s), scheduler %s", spec.source, len(cells), scheduler or "serial")
            results = run_cells(cells, scheduler=scheduler, force=force, retries=spec.retries,
                                progress=progress, on_change=index)
    return GridSummary(spec, results, combined, spec.out / "index.html", time.perf_counter() - t0, log_path)


def _reports_root(out: Path) -> Path | None:
    """The reports folder above a grid's output folder, when there is one (it gets the full index)."""
    from ..config import project_root

    rep = project_root() / "reports"
    try:
        out.resolve().relative_to(rep.resolve())
    except ValueError:
        return None
    return rep if out.resolve() != rep.resolve() else None
