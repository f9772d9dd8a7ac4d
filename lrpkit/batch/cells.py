"""Cells: one notebook execution each, its result and status file, and when it is current.

A cell's status file ``<name>.status.json`` is written atomically (:func:`write_status`) and
is the truth the index, resume and combine read (:func:`read_status`).  A cell is *current*
(:func:`cell_is_current`) when its status is ``ok`` for the same *fingerprint*: the
notebook's bytes, the config file, the parameters, the models and scene set it reads
(sizes and times) and lrpkit's own source (:func:`code_stamp`).
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import hashlib
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from collections.abc import Mapping, Sequence

from ..config import merge
from ..results import atomic_path
from .failures import STATUS_KEYS, Failure, Interrupted, failure_from_status

__all__ = ["Cell", "CellResult", "STATUS_SUFFIX", "STAGING_PREFIX", "read_status", "write_status",
           "cell_name", "fingerprint", "code_stamp", "cell_is_current", "shown_state", "cell_of_status",
           "config_overrides",
           "base_config_data", "merged_config", "config_keys", "now"]

STATUS_SUFFIX = ".status.json"
STAGING_PREFIX = ".lrpkit-staging-"


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

    def outputs(self) -> list[Path]:
        """Every file a run of this cell writes besides its status (removed before a new run)."""
        return [self.path(s) for s in (".ipynb", ".html", ".nc", ".thumb.png", ".config.yaml",
                                       ".partial.ipynb", ".partial.html")] + [self.path(".zarr")]

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Cell:
        d = json.loads(text)
        d["params"] = tuple(tuple(p) for p in d.get("params", ()))
        return cls(**d)


@dataclass
class CellResult:
    """What a cell run ended as (also the content of its status file).

    ``failure`` is None unless the run failed or was interrupted; the status file stores it
    as the keys ``error_kind``, ``error`` and ``failed_cell*`` (:mod:`lrpkit.batch.failures`).
    """

    name: str
    group: str
    state: str                      # ok | failed | interrupted | running | skipped
    seconds: float = 0.0
    params: dict = field(default_factory=dict)
    notebook: str = ""
    attempts: int = 0
    failure: Failure | None = None
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
    config: str = ""                # the config the cell ran with (path), to check it is current

    @property
    def ok(self) -> bool:
        return self.state in ("ok", "skipped")

    @property
    def worth_retry(self) -> bool:
        """Whether running the cell again may help (failed, and not by an interruption)."""
        return not self.ok and self.state != "interrupted" and (self.failure is None or self.failure.retry)

    def fail(self, failure: Failure) -> CellResult:
        """Record ``failure``: state ``interrupted`` for :class:`Interrupted`, else ``failed``."""
        self.failure = failure
        self.state = "interrupted" if isinstance(failure, Interrupted) else "failed"
        return self

    # the failure's status keys, for readers of the status (index, notebook runs)
    @property
    def error_kind(self) -> str | None:
        return self.failure.kind if self.failure else None

    @property
    def error(self) -> str | None:
        return self.failure.error if self.failure else None

    @property
    def failed_cell(self) -> int | None:
        return self.failure.cell if self.failure else None

    def describe(self) -> str:
        """One line: what happened, in which cell, where the partial output is."""
        if self.ok:
            return self.state
        if self.failure is None:
            return f"{self.group or self.name}: {self.state}"
        text = self.failure.describe(self.group or self.name)
        return text + (f" (partial output: {self.partial})" if self.partial else "")

    def to_dict(self) -> dict[str, Any]:
        """The status file's content (the failure as its flat keys, in the file's key order)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name == "failure":
                out.update(self.failure.to_status() if self.failure else dict.fromkeys(STATUS_KEYS))
            else:
                out[f.name] = getattr(self, f.name)
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CellResult:
        """The inverse of :meth:`to_dict` (unknown keys ignored)."""
        names = {f.name for f in dataclasses.fields(cls)} - {"failure"}
        return cls(**{k: v for k, v in d.items() if k in names}, failure=failure_from_status(d))


def read_status(path: str | os.PathLike) -> CellResult | None:
    """The :class:`CellResult` in a status file, or None when missing or unreadable."""
    try:
        return CellResult.from_dict(json.loads(Path(path).read_text()))
    except (OSError, ValueError, TypeError, AttributeError):
        return None


def write_status(path: str | os.PathLike, res: CellResult) -> None:
    """Write a status file atomically (readers see the old or the new one, never half)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(res.to_dict(), indent=1, default=str))


def now() -> str:
    """The current UTC time, ISO 8601 to the second (status files' ``started`` / ``finished``)."""
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


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


# ---------------------------------------------------------------------------------------------
# a cell's config


def config_overrides(cell: Cell, base: Mapping[str, Any]) -> tuple[dict, dict]:
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


def base_config_data(config: str) -> dict[str, Any]:
    """The YAML content of a config (name or path) as written, or ``{}``."""
    import yaml

    from ..config import load_config

    cfg = load_config(config)
    src = cfg.get("_source") if isinstance(cfg, Mapping) else getattr(cfg, "_source", None)
    if src and Path(src).is_file():
        return yaml.safe_load(Path(src).read_text()) or {}
    return {}


def config_keys() -> dict[str, None]:
    """The config's top-level keys, ``seed`` and the sections (which parameter names are config
    keys); their names only, so that nothing imports the methods' code (torch)."""
    from ..config import SECTIONS

    return dict.fromkeys(["seed", *SECTIONS])


def merged_config(cell: Cell) -> dict[str, Any] | None:
    """The cell's own config (base YAML + overrides), or None when it has no overrides."""
    base = base_config_data(cell.config)
    over, _ = config_overrides(cell, {**base, "seed": None, **config_keys()})
    if not over:
        return None
    return merge(base, over)


# ---------------------------------------------------------------------------------------------
# fingerprints


def fingerprint(cell: Cell) -> str:
    """Hash of what a cell's result depends on: notebook bytes, config content, parameters."""
    h = hashlib.sha256()
    h.update(Path(cell.notebook).read_bytes())
    try:
        from ..config import load_config

        cfg = load_config(cell.config)
        src = cfg.get("_source") if isinstance(cfg, Mapping) else None
        h.update(Path(src).read_bytes() if src and Path(src).is_file() else b"")
    except Exception:  # noqa: BLE001 - an unreadable config changes the hash, never crashes
        h.update(b"?")
    h.update(json.dumps(list(cell.params), sort_keys=True, default=str).encode())
    merged = None
    with contextlib.suppress(Exception):   # a grid cell's own model / data files
        merged = merged_config(cell) if cell.params else None
    h.update(_inputs_stamp(cell.config if merged is None else merged).encode())
    h.update(code_stamp().encode())
    return h.hexdigest()[:16]


_STAMPS: dict[tuple, str] = {}
_RECENT: dict[str, tuple[float, str]] = {}


def code_stamp(root: str | None = None) -> str:
    """Hash of lrpkit's own source files (``root``: a package folder, default lrpkit's): a cell
    that finished under other code is not current, so an upgraded or edited lrpkit re-runs it.

    Kept while the files' sizes and times stay the same (a long-lived process, a notebook
    session, sees an edit made after its first call; ``code_stamp.cache_clear()`` empties it)."""
    pkg = Path(root) if root is not None else Path(__file__).resolve().parent.parent
    recent = _RECENT.get(str(pkg))
    if recent is not None and time.monotonic() - recent[0] < 2.0 and recent[1] in _STAMPS.values():
        return recent[1]             # checked a moment ago (an index lists many cells)
    files = [f for f in sorted(pkg.rglob("*.py")) if "__pycache__" not in f.parts]
    key = [str(pkg)]
    for f in files:
        with contextlib.suppress(OSError):
            st = f.stat()
            key.append(f"{f}:{st.st_size}:{st.st_mtime_ns}")
    key_t = tuple(key)
    if key_t not in _STAMPS:
        h = hashlib.sha256()
        for f in files:
            with contextlib.suppress(OSError):
                h.update(f.relative_to(pkg).as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
        _STAMPS[key_t] = h.hexdigest()[:16]
    _RECENT[str(pkg)] = (time.monotonic(), _STAMPS[key_t])
    return _STAMPS[key_t]


def _clear_stamps() -> None:
    _STAMPS.clear()
    _RECENT.clear()


code_stamp.cache_clear = _clear_stamps  # type: ignore[attr-defined]


def _user_files(cfg: Any) -> list[Path]:
    """The user's files a config names: model weights (and a ``file.py`` entry), the data set's
    box table and split lists (``ImageSets/Main/*.txt``), so that a replaced model file or a
    changed split makes the cells stale."""
    from ..config import project_root

    def ab(v: Any) -> Path:
        p = Path(str(v)).expanduser()
        return p if p.is_absolute() else project_root() / p

    out = []
    for m in (list(cfg.models) or [cfg.model]):
        if m.weights:
            out.append(ab(m.weights))
        if m.entry and ".py:" in m.entry:
            out.append(ab(m.entry.rsplit(":", 1)[0]))
    d = cfg.dataset
    if d.boxes:
        out.append(ab(d.boxes))
    if d.root:
        root = ab(d.root)
        for pattern in ("ImageSets/Main/*.txt", "*/ImageSets/Main/*.txt"):
            out += sorted(root.glob(pattern))[:200]
    return out


def _inputs_stamp(config: str | Mapping[str, Any]) -> str:
    """Sizes and times of what notebooks read besides the config: the models, the scene set's
    marker and sidecar, and the user's model and data files the config names
    (lrpkit's own code is in :func:`code_stamp`)."""
    from ..config import load_config, resolve_path

    files: list[Path] = []
    try:
        cfg = load_config(config)
        for key in ("models", "scenes"):
            root = resolve_path(cfg, key)
            if root.is_dir():   # two levels: models/cnn/cnn.pt, the scene set's marker; not the
                # caches notebooks write deeper (models/fisher/<set>/fv.joblib), which would make
                # every result stale the moment a notebook fills one
                files += sorted(q for pattern in ("*", "*/*") for q in root.glob(pattern)
                                if q.suffix in (".pt", ".joblib", ".json", ".csv") and q.is_file())[:2000]
        files += _user_files(cfg)
    except Exception:  # noqa: BLE001
        pass
    parts = []
    for f in files:
        with contextlib.suppress(OSError):
            st = f.stat()
            parts.append(f"{f}:{st.st_size}:{st.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def cell_is_current(cell: Cell) -> bool:
    """Whether the cell finished ok for the same notebook, config, parameters and lrpkit code,
    and its files are all there."""
    return shown_state(cell, read_status(cell.status_path))[0] == "ok"


def cell_of_status(st: CellResult, folder: str | os.PathLike, config: str | None = None) -> Cell | None:
    """The cell a status file was written for (to check it against today's files), with
    ``config`` (the run's) or else the config the status records; None when neither is known."""
    config = config or st.config
    if not config or not st.notebook:
        return None
    return Cell(notebook=st.notebook, name=st.name, out_dir=str(folder), config=str(config),
                params=tuple(st.params.items()), group=st.group)


def shown_state(cell: Cell | None, st: CellResult | None) -> tuple[str, str]:
    """What a status is worth today: ``(state, why)`` with state ``ok`` only when the status
    says ok, the fingerprint matches today's notebook, config, parameters, inputs and lrpkit
    code (:func:`fingerprint`) and its files (notebook, HTML, results) are on disk; else
    ``stale`` (made under another config or code), ``missing`` (files gone) or the status's own
    state (``failed``, ``interrupted`` ...)."""
    if st is None:
        return "not run", "no status file"
    if st.state not in ("ok", "skipped"):
        return st.state, ""
    out = Path(cell.out_dir) if cell is not None else Path(st.out_dir or ".")
    gone = [n for n in (st.ipynb or f"{st.name}.ipynb", st.html, st.results or f"{st.name}.nc")
            if n and not (out / n).exists()]
    if gone:
        return "missing", f"its file(s) {', '.join(gone)} are gone; run again"
    if cell is None:
        return "stale", "made by an older lrpkit that did not record its config; run again"
    try:
        fp = fingerprint(cell)
    except OSError as exc:
        return "stale", f"cannot check it ({exc}); run again"
    if fp != st.fingerprint:
        return "stale", "made under another notebook, config, input files or lrpkit code; run again"
    return "ok", ""
