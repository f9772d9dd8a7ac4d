"""Batch runs of the notebooks: cells, parameter grids, scale-out on dask, resume, combine.

A *cell* is one execution of one notebook with one set of parameters.  ``lrpkit report``
runs one cell per notebook (no parameters); a grid config (``configs/grid.yaml``) declares
several cells per notebook::

    config: default                # the base config every cell starts from
    out: reports/grid              # cell files, the combined stores and an index go here
    notebooks:
      04_aopc_evaluation:
        lrp.composite: [epsilon, alpha2_beta1]   # "section.key": a config override
        seed: [0, 1]                             # a top-level config key
      grid_probe:
        scale: [1.0, 2.0]                        # no dot, not a config key: a papermill parameter

Every combination (the Cartesian product per notebook) is a cell.  How a cell runs
(:func:`execute_cell`), in a child process of its own (``python -m lrpkit.grid``):

1. its status file ``<name>.status.json`` says ``running`` and its old files are removed
   (an interrupted run never leaves an old result that looks current);
2. papermill executes the notebook into a hidden staging folder beside the outputs; the
   kernel start is serialised by a file lock (jupyter_client picks "free" ports by binding
   and releasing them, so kernels started at the same moment by parallel workers can pick
   the same ports) and a kernel that dies or times out while starting is started again
   (up to 3 times, with ``start_timeout`` seconds each);
3. on success the notebook, its HTML, its results and a thumbnail are moved into place and
   the status file is written last (``ok`` / ``failed`` with the failing cell, what happened
   and where the partial output is).

SIGTERM makes the child kill its kernel, remove the staging folder, mark the cell
``interrupted`` and exit; the parent (:func:`run_cells`) sends it on SIGINT / SIGTERM,
waits, writes the index and raises :class:`RunInterrupted`.  A child whose parent dies (a
killed dask worker) gets SIGTERM from the kernel (``PR_SET_PDEATHSIG``).  A failed cell is
run once more (``retries``), then reported; re-running skips cells whose status is ``ok``
for the same notebook, config, parameters, models and lrpkit source (the *fingerprint*)
unless ``force``.

With ``scheduler="local:N"`` the cells run on a dask.distributed ``LocalCluster`` of N
single-threaded worker processes; ``scheduler="tcp://host:port"`` submits them to an
existing cluster (its workers must see the same file system and have lrpkit installed).
Finally :func:`combine_cells` stacks each notebook's cell results along the grid's
parameters (dims named after them, dots as underscores) into one store:
``<out>/<notebook>.nc`` (or ``.zarr`` for large grids, ``store: zarr`` / ``auto``).
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import fcntl
import functools
import hashlib
import itertools
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from .results import atomic_path

__all__ = ["Cell", "CellResult", "GridSpec", "RunInterrupted", "load_grid", "grid_cells", "notebook_cell",
           "execute_cell", "run_cells", "run_grid", "combine_cells", "read_status", "cell_is_current"]

log = logging.getLogger("lrpkit.grid")

STATUS_SUFFIX = ".status.json"
STAGING_PREFIX = ".lrpkit-staging-"
KERNEL_START_ATTEMPTS = 3
#: exceptions text that marks a kernel that did not come up (port clash, slow start)
_START_FAILURE = re.compile(r"kernel died before replying|kernel didn't respond|kernel didn.t respond|"
                            r"address already in use|timeout waiting for kernel|kernel_info",
                            re.IGNORECASE)


class RunInterrupted(KeyboardInterrupt):
    """The run was stopped by SIGINT or SIGTERM; ``signum`` tells which."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum


class KernelStartError(RuntimeError):
    """The kernel did not start (after all attempts)."""


# ---------------------------------------------------------------------------------------------
# cells


@dataclass(frozen=True)
class Cell:
    """One notebook execution: the notebook, its parameters and where its files go.

    ``params`` maps names to values: ``"section.key"`` or a top-level config key is a config
    override (the cell gets its own config file), any other name is a papermill parameter.
    """

    notebook: str                 # path of the .ipynb
    name: str                     # output stem
    out_dir: str
    config: str                   # base config (path)
    params: tuple = ()            # ((name, value), ...), in grid order
    group: str = ""               # the notebook's stem
    timeout: float | None = None  # per notebook-cell execution timeout (s)
    start_timeout: float = 120.0
    hide_code: bool = True

    @property
    def param_dict(self) -> dict[str, Any]:
        return dict(self.params)

    def path(self, suffix: str) -> Path:
        return Path(self.out_dir) / f"{self.name}{suffix}"

    @property
    def status_path(self) -> Path:
        return self.path(STATUS_SUFFIX)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "Cell":
        d = json.loads(text)
        d["params"] = tuple(tuple(p) for p in d.get("params", ()))
        return cls(**d)


@dataclass
class CellResult:
    """What a cell run ended as (also the content of its status file)."""

    name: str
    group: str
    state: str                      # ok | failed | interrupted | running | skipped
    seconds: float = 0.0
    params: dict = field(default_factory=dict)
    notebook: str = ""
    attempts: int = 0
    error_kind: str | None = None   # cell-error | kernel-died | timeout | kernel-start | no-results | ...
    error: str | None = None
    failed_cell: int | None = None  # execution count of the failing cell
    failed_cell_index: int | None = None  # position in the notebook (0-based)
    failed_cell_source: str | None = None  # its first line
    partial: str | None = None      # file name of the partial output (kernel death, timeout)
    ipynb: str | None = None
    html: str | None = None
    results: str | None = None
    thumbnail: str | None = None
    fingerprint: str = ""
    started: str = ""
    finished: str = ""
    host: str = ""
    out_dir: str = ""

    @property
    def ok(self) -> bool:
        return self.state in ("ok", "skipped")

    def describe(self) -> str:
        """One line: what happened, in which cell, where the partial output is."""
        if self.ok:
            return self.state
        where = ""
        if self.failed_cell_index is not None:
            where = f" in cell #{self.failed_cell_index}"
            if self.failed_cell is not None:
                where += f" [{self.failed_cell}]"
            if self.failed_cell_source:
                where += f" ({self.failed_cell_source})"
        elif self.failed_cell is not None:
            where = f" in cell [{self.failed_cell}]"
        what = {"cell-error": "failed", "kernel-died": "kernel died", "timeout": "timed out",
                "kernel-start": "kernel did not start", "no-results": "wrote no results",
                "interrupted": "interrupted", "worker-died": "worker process died",
                "export": "HTML export failed"}.get(self.error_kind or "", self.state)
        text = f"{self.group or self.name}: {what}{where}"
        if self.error:
            text += f": {self.error.strip().splitlines()[0]}"
        if self.partial:
            text += f" (partial output: {self.partial})"
        return text


def read_status(path: str | os.PathLike) -> CellResult | None:
    """The :class:`CellResult` in a status file, or None when missing or unreadable."""
    try:
        d = json.loads(Path(path).read_text())
        names = {f.name for f in dataclasses.fields(CellResult)}
        return CellResult(**{k: v for k, v in d.items() if k in names})
    except (OSError, ValueError, TypeError):
        return None


def _write_status(path: Path, res: CellResult) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(dataclasses.asdict(res), indent=1, default=str))


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _slug(value: Any) -> str:
    s = value if isinstance(value, str) else json.dumps(value, default=str)
    return re.sub(r"[^A-Za-z0-9.+-]+", "-", s).strip("-")[:24] or "x"


def cell_name(stem: str, params: Sequence[tuple[str, Any]]) -> str:
    """``<stem>`` for no parameters, else ``<stem>--k=v,..--<hash8>`` (file-system safe)."""
    if not params:
        return stem
    body = ",".join(f"{_slug(k.split('.')[-1])}={_slug(v)}" for k, v in params)[:80]
    h = hashlib.sha256(json.dumps(list(params), sort_keys=True, default=str).encode()).hexdigest()[:8]
    return f"{stem}--{body}--{h}"


def _config_overrides(cell: Cell, base: Mapping[str, Any]) -> tuple[dict, dict]:
    """Split a cell's parameters into config overrides (nested dict) and papermill parameters."""
    over: dict[str, Any] = {}
    nb: dict[str, Any] = {}
    for k, v in cell.params:
        if "." in k:
            section, key = k.split(".", 1)
            over.setdefault(section, {})[key] = v
        elif k in base and not k.startswith("_") and k not in ("config", "results_path"):
            over[k] = v
        else:
            nb[k] = v
    return over, nb


def _base_config_data(config: str) -> dict[str, Any]:
    import yaml

    from .config import load_config

    cfg = load_config(config)
    src = cfg.get("_source") if isinstance(cfg, Mapping) else getattr(cfg, "_source", None)
    if src and Path(src).is_file():
        return yaml.safe_load(Path(src).read_text()) or {}
    return {}


def _merged_config(cell: Cell) -> dict[str, Any] | None:
    """The cell's own config (base YAML + overrides), or None when it has no overrides."""
    base = _base_config_data(cell.config)
    over, _ = _config_overrides(cell, {**base, "seed": None, **_config_keys()})
    if not over:
        return None
    return _merge(base, over)


def _config_keys() -> dict[str, Any]:
    try:
        from .config import DEFAULTS

        return dict(DEFAULTS) if isinstance(DEFAULTS, Mapping) else {}
    except ImportError:  # pragma: no cover
        return {}


def _merge(base: Mapping, over: Mapping) -> dict:
    """``over`` merged into a copy of ``base`` (nested mappings merged, the rest replaced)."""
    import copy

    out = copy.deepcopy(dict(base))
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) \
            else copy.deepcopy(v)
    return out


def fingerprint(cell: Cell) -> str:
    """Hash of what a cell's result depends on: notebook bytes, config content, parameters."""
    h = hashlib.sha256()
    h.update(Path(cell.notebook).read_bytes())
    try:
        from .config import load_config

        cfg = load_config(cell.config)
        src = cfg.get("_source") if isinstance(cfg, Mapping) else None
        h.update(Path(src).read_bytes() if src and Path(src).is_file() else b"")
    except Exception:  # noqa: BLE001 - an unreadable config changes the hash, never crashes
        h.update(b"?")
    h.update(json.dumps(list(cell.params), sort_keys=True, default=str).encode())
    h.update(_inputs_stamp(cell.config).encode())
    h.update(code_stamp().encode())
    return h.hexdigest()[:16]


@functools.lru_cache(maxsize=None)
def code_stamp(root: str | None = None) -> str:
    """Hash of lrpkit's own source files (``root``: a package folder, default lrpkit's): a cell
    that finished under other code is not current, so an upgraded or edited lrpkit re-runs it."""
    pkg = Path(root) if root is not None else Path(__file__).resolve().parent
    h = hashlib.sha256()
    for f in sorted(pkg.rglob("*.py")):
        if "__pycache__" not in f.parts:
            h.update(f.relative_to(pkg).as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def _inputs_stamp(config: str) -> str:
    """Sizes and times of what notebooks read besides the config: the models and the scene set's
    marker and sidecar (lrpkit's own code is in :func:`code_stamp`)."""
    from .config import load_config, resolve_path

    files: list[Path] = []
    try:
        cfg = load_config(config)
        for key in ("models", "scenes"):
            root = resolve_path(cfg, key)
            if root.is_dir():
                files += sorted(q for q in root.rglob("*") if q.is_file() and q.suffix in
                                (".pt", ".joblib", ".json", ".csv"))[:2000]
    except Exception:  # noqa: BLE001
        pass
    parts = []
    for f in files:
        with contextlib.suppress(OSError):
            st = f.stat()
            parts.append(f"{f}:{st.st_size}:{st.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _outputs(cell: Cell) -> list[Path]:
    return [cell.path(s) for s in (".ipynb", ".html", ".nc", ".thumb.png", ".config.yaml",
                                   ".partial.ipynb", ".partial.html")] + [cell.path(".zarr")]


def cell_is_current(cell: Cell) -> bool:
    """Whether the cell finished ok for the same notebook, config and parameters."""
    st = read_status(cell.status_path)
    return (st is not None and st.state == "ok" and st.fingerprint == fingerprint(cell)
            and all(cell.path(s).exists() for s in (".ipynb", ".nc")))


# ---------------------------------------------------------------------------------------------
# grid specs


@dataclass
class GridSpec:
    """A grid config: the base config, output folder and per-notebook parameter grids."""

    config: str
    out: Path
    notebooks: dict[str, list[dict[str, list]]]
    nb_dir: Path
    store: str = "netcdf"
    retries: int = 1
    timeout: float | None = 3600
    start_timeout: float = 120.0
    hide_code: bool = True
    source: str = ""


_GRID_KEYS = {"config", "out", "notebooks", "notebook_dir", "store", "retries", "timeout",
              "start_timeout", "hide_code"}


def is_grid_config(path: str | os.PathLike) -> bool:
    """Whether a YAML file is a grid config (has a top-level ``notebooks:`` mapping of grids)."""
    import yaml

    p = Path(path)
    if not p.suffix:
        from .config import project_root

        p = project_root() / "configs" / f"{p.name}.yaml"
    try:
        data = yaml.safe_load(p.read_text())
    except (OSError, Exception):  # noqa: BLE001
        return False
    return isinstance(data, Mapping) and isinstance(data.get("notebooks"), Mapping) \
        and "grid" in str(data.get("kind", "grid"))


def load_grid(path: str | os.PathLike) -> GridSpec:
    """Read and check a grid config (see the module docstring)."""
    import yaml

    from .config import project_root

    p = Path(path)
    if not p.suffix and not p.exists():
        p = project_root() / "configs" / f"{p.name}.yaml"
    if not p.is_file():
        raise FileNotFoundError(f"grid config not found: {p}")
    data = yaml.safe_load(p.read_text()) or {}
    if not isinstance(data, Mapping) or not isinstance(data.get("notebooks"), Mapping):
        raise ValueError(f"grid config {p} needs a top-level 'notebooks:' mapping "
                         f"(notebook name -> {{parameter: [values]}})")
    unknown = set(data) - _GRID_KEYS - {"kind"}
    if unknown:
        raise ValueError(f"grid config {p}: unknown key(s) {sorted(unknown)}; allowed: {sorted(_GRID_KEYS)}")
    root = project_root()

    def rel(v: str) -> Path:
        q = Path(v)
        return q if q.is_absolute() else root / q

    store = str(data.get("store", "netcdf"))
    if store not in ("netcdf", "zarr", "auto"):
        raise ValueError(f"grid config {p}: store must be netcdf, zarr or auto, got {store!r}")
    grids: dict[str, list[dict[str, list]]] = {}
    for nb, g in data["notebooks"].items():
        blocks = g if isinstance(g, list) else [g or {}]
        out_blocks = []
        for b in blocks:
            if not isinstance(b, Mapping):
                raise ValueError(f"grid config {p}: notebooks.{nb} must map parameter -> list of values")
            out_blocks.append({str(k): list(v) if isinstance(v, (list, tuple)) else [v] for k, v in b.items()})
            for k, v in out_blocks[-1].items():
                if not v:
                    raise ValueError(f"grid config {p}: notebooks.{nb}.{k} has no values")
        grids[str(nb)] = out_blocks
    config = str(data.get("config", "default"))
    cpath = Path(config)
    if cpath.suffix and not cpath.is_absolute():
        config = str(rel(config))
    timeout = data.get("timeout", 3600)
    return GridSpec(config=config, out=rel(str(data.get("out", "reports/grid"))), notebooks=grids,
                    nb_dir=rel(str(data.get("notebook_dir", "notebooks"))), store=store,
                    retries=int(data.get("retries", 1)),
                    timeout=None if timeout is None else float(timeout),
                    start_timeout=float(data.get("start_timeout", 120)),
                    hide_code=bool(data.get("hide_code", True)), source=str(p))


def grid_cells(spec: GridSpec) -> list[Cell]:
    """Every cell of a grid (Cartesian product per block), checked against the config."""
    from .config import load_config
    from .reports import discover_notebooks

    cfg_path = load_config(spec.config)["_source"]
    base = _base_config_data(spec.config)
    cells: list[Cell] = []
    for nb_name, blocks in spec.notebooks.items():
        nb = discover_notebooks(spec.nb_dir, [nb_name])[0]
        seen = set()
        for block in blocks:
            keys = list(block)
            for combo in itertools.product(*(block[k] for k in keys)):
                params = tuple(zip(keys, combo))
                cell = Cell(notebook=str(nb), name=cell_name(nb.stem, params),
                            out_dir=str(spec.out / "cells" / nb.stem), config=str(cfg_path),
                            params=params, group=nb.stem, timeout=spec.timeout,
                            start_timeout=spec.start_timeout, hide_code=spec.hide_code)
                if cell.name in seen:
                    continue
                seen.add(cell.name)
                over, _ = _config_overrides(cell, {**base, **_config_keys()})
                if over:
                    try:  # the typed config rejects unknown keys: say so before any kernel starts
                        load_config(_merge(base, over))
                    except (ValueError, KeyError, TypeError) as exc:
                        raise ValueError(f"grid {spec.source}: notebooks.{nb_name}: {exc}") from None
                cells.append(cell)
    return cells


def notebook_cell(nb: Path, out_dir: Path, config: str, hide_code: bool = True,
                  timeout: float | None = None, start_timeout: float = 120.0) -> Cell:
    """The one cell of a plain ``lrpkit report`` run of a notebook (no parameters)."""
    return Cell(notebook=str(nb), name=nb.stem, out_dir=str(out_dir), config=str(config), params=(),
                group=nb.stem, timeout=timeout, start_timeout=start_timeout, hide_code=hide_code)


# ---------------------------------------------------------------------------------------------
# executing one cell (in the child process)

_KERNEL_LOCK = Path(tempfile.gettempdir()) / "lrpkit-kernel-start.lock"
_CURRENT: dict[str, Any] = {}  # the child's live kernel manager and staging folder (for SIGTERM)


def _papermill_engine():
    """A papermill engine whose kernel start-up holds a machine-wide lock until the kernel answers."""
    from papermill.clientwrap import PapermillNotebookClient
    from papermill.engines import NBClientEngine, papermill_engines

    class _LockedClient(PapermillNotebookClient):
        _lock_fh = None

        async def async_start_new_kernel(self, **kw):  # type: ignore[override]
            self._lock_fh = open(_KERNEL_LOCK, "a")
            fcntl.flock(self._lock_fh, fcntl.LOCK_EX)
            try:
                fail = int(os.environ.get("LRPKIT_TEST_KERNEL_START_FAILURES", "0"))
                if _CURRENT.get("start_failures", 0) < fail:  # fault injection for the tests
                    _CURRENT["start_failures"] = _CURRENT.get("start_failures", 0) + 1
                    raise RuntimeError("Kernel died before replying to kernel_info (injected)")
                await super().async_start_new_kernel(**kw)
                _CURRENT["km"] = self.km
            except BaseException:
                self._release()
                raise

        async def async_start_new_kernel_client(self):  # type: ignore[override]
            try:
                return await super().async_start_new_kernel_client()
            finally:
                self._release()

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


def _failing_cell(nb_path: Path) -> tuple[int | None, int | None, str | None]:
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


def _on_child_sigterm(signum, frame) -> None:  # noqa: ARG001
    """Child: stop now, leave nothing half-written, mark the cell interrupted."""
    _kill_kernel()
    staging = _CURRENT.get("staging")
    if staging:
        shutil.rmtree(staging, ignore_errors=True)
    res: CellResult | None = _CURRENT.get("result")
    status: Path | None = _CURRENT.get("status")
    if res is not None and status is not None:
        res.state, res.error_kind = "interrupted", "interrupted"
        res.error = f"stopped by {signal.Signals(signum).name}"
        res.finished = _now()
        with contextlib.suppress(Exception):
            _write_status(status, res)
    os._exit(128 + signum)


def _thumbnail(ipynb: Path, out: Path, width: int = 240) -> bool:
    """A small PNG of the notebook's key figure (a cell tagged ``key-figure``, else the last PNG)."""
    import base64
    import io

    import nbformat
    from PIL import Image

    nb = nbformat.read(str(ipynb), as_version=4)
    pngs: list[tuple[bool, str]] = []
    for c in nb.cells:
        if c.cell_type != "code":
            continue
        key = "key-figure" in c.get("metadata", {}).get("tags", [])
        for o in c.get("outputs", []):
            data = o.get("data", {}) if isinstance(o, Mapping) else {}
            if "image/png" in data:
                pngs.append((key, data["image/png"]))
    if not pngs:
        return False
    keyed = [p for k, p in pngs if k]
    raw = base64.b64decode(keyed[0] if keyed else pngs[-1][1])
    img = Image.open(io.BytesIO(raw)).convert("RGB")
    img.thumbnail((width, width))
    with atomic_path(out) as tmp:
        img.save(tmp, format="PNG", optimize=True)
    return True


def execute_cell(cell: Cell, attempt: int = 1) -> CellResult:
    """Run one cell now, in this process (see the module docstring); never raises for notebook errors."""
    import papermill as pm

    from .config import project_root
    from .reports import export_html

    out = Path(cell.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    res = CellResult(name=cell.name, group=cell.group, state="running", params=cell.param_dict,
                     notebook=cell.notebook, attempts=attempt, fingerprint=fingerprint(cell),
                     started=_now(), host=socket.gethostname(), out_dir=str(out))
    _CURRENT.update(result=res, status=cell.status_path)
    _write_status(cell.status_path, res)           # first: the index can no longer show it ok
    for p in _outputs(cell):                        # then: no old result survives a new run
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{cell.name[:40]}-{os.getpid()}-", dir=out))
    _CURRENT["staging"] = staging
    t0 = time.perf_counter()
    try:
        s_nb, s_nc = staging / f"{cell.name}.ipynb", staging / f"{cell.name}.nc"
        merged = _merged_config(cell)
        cfg_arg = cell.config
        if merged is not None:  # the cell's own config, beside its outputs (the kernel reads it)
            import yaml

            cfg_file = cell.path(".config.yaml")
            with atomic_path(cfg_file) as tmp:
                tmp.write_text(yaml.safe_dump(merged, sort_keys=False))
            cfg_arg = str(cfg_file)
        _, nb_params = _config_overrides(cell, {**_base_config_data(cell.config), **_config_keys()})
        params = {"config": cfg_arg, "results_path": str(s_nc), **nb_params}
        engine = _papermill_engine()
        for k_attempt in range(1, KERNEL_START_ATTEMPTS + 1):
            started = True
            try:
                pm.execute_notebook(cell.notebook, str(s_nb), parameters=params, kernel_name="python3",
                                    engine_name=engine, cwd=str(project_root()), progress_bar=False,
                                    log_output=False, execution_timeout=cell.timeout,
                                    start_timeout=cell.start_timeout)
            except pm.PapermillExecutionError as exc:
                res.state, res.error_kind = "failed", "cell-error"
                res.error = f"{exc.ename}: {exc.evalue}"
            except Exception as exc:  # noqa: BLE001 - kernel death, timeout, bad notebook
                text = f"{type(exc).__name__}: {exc}"
                began = s_nb.exists() and any(
                    c.get("metadata", {}).get("papermill", {}).get("status") in ("running", "completed", "failed")
                    for c in _read_cells(s_nb))
                if not began and (_START_FAILURE.search(text) or isinstance(exc, TimeoutError)):
                    started = False
                    log.warning("%s: kernel did not start (attempt %d/%d): %s", cell.name, k_attempt,
                                KERNEL_START_ATTEMPTS, text)
                    res.state, res.error_kind, res.error = "failed", "kernel-start", text
                    _CURRENT.pop("km", None)
                    time.sleep(0.5 * k_attempt)
                else:
                    kind = "timeout" if "timeout" in type(exc).__name__.lower() or \
                        "timed out" in text.lower() else ("kernel-died" if "dead" in text.lower()
                                                          or "died" in text.lower() else "error")
                    res.state, res.error_kind, res.error = "failed", kind, text
            else:
                res.state, res.error_kind, res.error = "ok", None, None
            if started:
                break
        res.seconds = time.perf_counter() - t0
        if s_nb.exists():
            res.failed_cell, res.failed_cell_index, res.failed_cell_source = (
                _failing_cell(s_nb) if not res.ok else (None, None, None))
            partial = res.error_kind in ("kernel-died", "timeout", "error")
            stem = f"{cell.name}.partial" if partial else cell.name
            if partial:
                s_nb.rename(staging / f"{stem}.ipynb")
            try:
                export_html(staging / f"{stem}.ipynb", staging / f"{stem}.html", hide_code=cell.hide_code)
                res.html = f"{stem}.html"
            except Exception as exc:  # noqa: BLE001
                if res.ok:
                    res.state, res.error_kind, res.error = "failed", "export", f"{type(exc).__name__}: {exc}"
            res.ipynb = f"{stem}.ipynb"
            if partial:
                res.partial = str(out / (res.html or res.ipynb))
            with contextlib.suppress(Exception):
                if _thumbnail(staging / f"{stem}.ipynb", staging / f"{cell.name}.thumb.png"):
                    res.thumbnail = f"{cell.name}.thumb.png"
        if res.ok and not s_nc.exists():
            res.state, res.error_kind = "failed", "no-results"
            res.error = (f"notebook wrote no results file ({cell.name}.nc); save a Dataset to "
                         f"results_path with lrpkit.results.save_dataset")
        if s_nc.exists():
            res.results = f"{cell.name}.nc"
        # commit: outputs first, the status file last (SIGTERM waits until it is done)
        blocked = threading.current_thread() is threading.main_thread()
        if blocked:
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        try:
            for f in sorted(staging.iterdir()):
                if not f.name.startswith("."):
                    os.replace(f, out / f.name)
            res.finished = _now()
            _write_status(cell.status_path, res)
        finally:
            if blocked:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        _CURRENT.pop("staging", None)
    return res


def _read_cells(nb_path: Path) -> list:
    try:
        return json.loads(nb_path.read_text()).get("cells", [])
    except (OSError, ValueError):
        return []


# ---------------------------------------------------------------------------------------------
# running cells in child processes, serially or on dask


def _set_pdeathsig() -> None:  # pragma: no cover - runs in the child between fork and exec
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001
        pass


#: set while cells run in parallel (dask): their kernels then use one thread each
_PARALLEL_ENV = "LRPKIT_GRID_PARALLEL"


def _child_env() -> dict[str, str]:
    from .runtime import malloc_env

    env = malloc_env()                # kernels keep freed tensors' memory (lrpkit.runtime)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env["LRPKIT_STATIC"] = "1"        # lrpkit.widgets: static figures in batch runs
    # figures inline in the executed notebook (and so in its HTML and thumbnail), whatever
    # backend the caller's shell chose (MPLBACKEND=Agg would silently drop every figure)
    env["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    env.setdefault("PYTHONUNBUFFERED", "1")
    if os.environ.get(_PARALLEL_ENV):  # cells side by side: one thread each, no oversubscription
        env.setdefault("OMP_NUM_THREADS", "1")
        env.setdefault("MKL_NUM_THREADS", "1")
        env.setdefault("LOKY_MAX_CPU_COUNT", "1")   # and no joblib pools (fisher.n_jobs=-1)
    return env


def _spawn(cell: Cell, attempt: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "lrpkit.grid", str(attempt)], stdin=subprocess.PIPE,
                            env=_child_env(), start_new_session=True, text=True,
                            preexec_fn=_set_pdeathsig if sys.platform.startswith("linux") else None)


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


def _result_after_exit(cell: Cell, rc: int, attempt: int) -> CellResult:
    st = read_status(cell.status_path)
    if st is None or st.state == "running":  # the child died without a word: mark it, remove leftovers
        for p in Path(cell.out_dir).glob(f"{STAGING_PREFIX}{cell.name[:40]}-*"):
            shutil.rmtree(p, ignore_errors=True)
        st = st or CellResult(name=cell.name, group=cell.group, state="failed", params=cell.param_dict,
                              notebook=cell.notebook, out_dir=cell.out_dir)
        st.state, st.error_kind, st.attempts = "failed", "worker-died", attempt
        st.error = f"the process running the cell exited with {rc}" + (
            f" (killed by {signal.Signals(-rc).name})" if rc < 0 and -rc in signal.valid_signals() else "")
        st.finished = _now()
        _write_status(cell.status_path, st)
    return st


def run_cell_process(cell: Cell, attempt: int = 1, stop: Callable[[], bool] | None = None,
                     on_start: Callable[[subprocess.Popen], None] | None = None) -> CellResult:
    """Run a cell in a child process and wait; ``stop()`` polled each 0.5 s stops it early."""
    proc = _spawn(cell, attempt)
    if on_start is not None:
        on_start(proc)
    try:
        proc.stdin.write(cell.to_json())
        proc.stdin.close()
    except BrokenPipeError:  # pragma: no cover
        pass
    try:
        while True:
            try:
                rc = proc.wait(0.5)
                break
            except subprocess.TimeoutExpired:
                if stop is not None and stop():
                    _stop_child(proc)
                    rc = proc.returncode
                    break
    except BaseException:
        _stop_child(proc)
        raise
    return _result_after_exit(cell, rc, attempt)


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

    res = None
    for attempt in range(1, retries + 2):
        res = run_cell_process(cell, attempt, stop=stop)
        if res.ok or res.state == "interrupted" or stop():
            break
    return dataclasses.asdict(res)


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


@contextlib.contextmanager
def _signals_raise() -> Any:
    """SIGINT / SIGTERM raise :class:`RunInterrupted` in the main thread (then handled once)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):  # noqa: ARG001
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise RunInterrupted(signum)

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


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

    Raises :class:`RunInterrupted` on SIGINT / SIGTERM after stopping the running cells and
    calling ``on_change`` (which writes the index).
    """
    from tqdm.auto import tqdm

    kind, arg = _parse_scheduler(scheduler)
    for c in cells:
        Path(c.out_dir).mkdir(parents=True, exist_ok=True)
    _clean_stale_staging(Path(c.out_dir) for c in cells)
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
    notify = on_change or (lambda: None)

    def done(c: Cell, r: CellResult) -> None:
        results[c.name] = r
        bar.update(1)
        bar.set_postfix_str(f"{c.name[:30]} {r.state}")
        (log.info if r.ok else log.warning)("%s: %s (%.1f s)", c.name, r.describe(), r.seconds)
        notify()

    if kind != "serial":  # inherited by LocalCluster workers started below
        os.environ[_PARALLEL_ENV] = "1"
    try:
        with _signals_raise():
            if kind == "serial":
                _run_serial(todo, retries, done)
            else:
                _run_dask(todo, retries, done, kind, arg)
    except RunInterrupted as exc:
        _mark_interrupted(todo, exc.signum)
        notify()
        raise
    finally:
        bar.close()
        os.environ.pop(_PARALLEL_ENV, None)
    return [results[c.name] for c in cells]


def _mark_interrupted(cells: Sequence[Cell], signum: int) -> None:
    """After a stop: cells still ``running`` or ``interrupted`` name the signal the run got."""
    _clean_stale_staging(Path(c.out_dir) for c in cells)
    for c in cells:
        st = read_status(c.status_path)
        if st is not None and st.state in ("running", "interrupted"):
            st.state = st.error_kind = "interrupted"
            st.error = f"stopped by {signal.Signals(signum).name}; run again to resume"
            st.finished = st.finished or _now()
            with contextlib.suppress(OSError):
                _write_status(c.status_path, st)


def _run_serial(todo: Sequence[Cell], retries: int, done: Callable) -> None:
    for c in todo:
        res = None
        for attempt in range(1, retries + 2):
            res = run_cell_process(c, attempt)
            if res.ok or res.state == "interrupted":
                break
            log.warning("%s: attempt %d failed (%s)%s", c.name, attempt, res.describe(),
                        "; retrying" if attempt <= retries else "")
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
                res = CellResult(**f.result())
            except Exception as exc:  # noqa: BLE001 - e.g. the worker died too often
                res = _result_after_exit(c, -1, retries + 1)
                res.error = f"{type(exc).__name__}: {exc}"
                _write_status(c.status_path, res)
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
# combining


def _dim(name: str) -> str:
    return name.replace(".", "_")


def _coord(v: Any) -> Any:
    if isinstance(v, (bool, int, float, str)):
        return v
    return json.dumps(v, default=str)


def combine_cells(cells: Sequence[Cell], results: Sequence[CellResult] | None = None) -> "xr.Dataset":
    """Stack the cells' result Datasets along the grid parameters (missing cells: NaN)."""
    import xarray as xr

    from .results import open_dataset

    parts = []
    info = []
    for c in cells:
        st = read_status(c.status_path)
        ok = st is not None and st.state == "ok" and c.path(".nc").is_file()
        info.append({"cell": c.name, "params": c.param_dict, "state": st.state if st else "missing",
                     "seconds": round(st.seconds, 2) if st else None})
        if not ok:
            continue
        ds = open_dataset(c.path(".nc"))
        ds = ds.expand_dims({_dim(k): [_coord(v)] for k, v in c.params})
        parts.append(ds)
    if not parts:
        raise ValueError("no finished cell to combine")
    combined = xr.merge(parts, join="outer", compat="no_conflicts", combine_attrs="drop_conflicts")
    combined.attrs["grid_cells"] = info
    combined.attrs["grid_dims"] = [_dim(k) for k, _ in cells[0].params]
    return combined


def _save_combined(ds: "xr.Dataset", base: Path, store: str) -> Path:
    from .results import atomic_dir, save_dataset

    nbytes = ds.nbytes
    if store == "zarr" or (store == "auto" and nbytes > 1 << 30):
        try:
            import zarr  # noqa: F401
        except ImportError:
            raise ValueError("store: zarr needs the zarr package (pip install zarr)") from None
        from .results import _encode_attrs

        path = base.with_suffix(".zarr")
        out = ds.copy()
        out.attrs = _encode_attrs(out.attrs)
        for n in out.variables:
            out[n].attrs = _encode_attrs(out[n].attrs)
        with atomic_dir(path) as tmp:
            out.to_zarr(tmp, mode="w")
        base.with_suffix(".nc").unlink(missing_ok=True)
        return path
    path = save_dataset(ds, base.with_suffix(".nc"))
    if base.with_suffix(".zarr").exists():
        shutil.rmtree(base.with_suffix(".zarr"), ignore_errors=True)
    return path


@dataclass
class GridSummary:
    """The outcome of a grid run: every cell's result and the combined stores."""

    spec: GridSpec
    results: list[CellResult]
    combined: dict[str, Path]
    index: Path | None = None
    seconds: float = 0.0

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
        return "\n".join(lines)


def run_grid(grid: str | os.PathLike | GridSpec, scheduler: str | None = None, force: bool = False,
             progress: bool = True, out: str | os.PathLike | None = None) -> GridSummary:
    """Run every cell of a grid config, combine per notebook, write the index; see module doc."""
    from .reports import write_index

    spec = grid if isinstance(grid, GridSpec) else load_grid(grid)
    if out is not None:
        spec = dataclasses.replace(spec, out=Path(out))
    t0 = time.perf_counter()
    cells = grid_cells(spec)
    spec.out.mkdir(parents=True, exist_ok=True)

    def index() -> None:
        with contextlib.suppress(Exception):
            write_index(spec.out, title=f"lrpkit grid {Path(spec.source).stem}", config_source=spec.source)
        root = _reports_root(spec.out)
        if root is not None:
            with contextlib.suppress(Exception):
                write_index(root)

    log.info("grid %s: %d cell(s), scheduler %s", spec.source, len(cells), scheduler or "serial")
    results = run_cells(cells, scheduler=scheduler, force=force, retries=spec.retries, progress=progress,
                        on_change=index)
    combined: dict[str, Path] = {}
    for group in dict.fromkeys(c.group for c in cells):
        gc = [c for c in cells if c.group == group]
        try:
            ds = combine_cells(gc)
        except ValueError as exc:
            log.warning("%s: nothing combined (%s)", group, exc)
            continue
        combined[group] = _save_combined(ds, spec.out / group, spec.store)
    index()
    return GridSummary(spec, results, combined, spec.out / "index.html", time.perf_counter() - t0)


def _reports_root(out: Path) -> Path | None:
    """The reports folder above a grid's output folder, when there is one (it gets the full index)."""
    from .config import project_root

    rep = project_root() / "reports"
    try:
        out.resolve().relative_to(rep.resolve())
    except ValueError:
        return None
    return rep if out.resolve() != rep.resolve() else None


def _child_main(argv: Sequence[str]) -> int:  # pragma: no cover - runs in the child process
    attempt = int(argv[0]) if argv else 1
    cell = Cell.from_json(sys.stdin.read())
    _CURRENT["child"] = True
    signal.signal(signal.SIGTERM, _on_child_sigterm)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides; it sends SIGTERM
    logging.basicConfig(level=logging.WARNING)
    res = execute_cell(cell, attempt)
    return 0 if res.ok else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(_child_main(sys.argv[1:]))
