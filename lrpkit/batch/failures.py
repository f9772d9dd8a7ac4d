"""How a cell run failed, as types: each kind knows its description and whether a retry is worth it.

A :class:`Failure` is an exception (the papermill engine raises :class:`KernelStartError`
itself) and a value: :attr:`CellResult.failure <lrpkit.batch.cells.CellResult>` holds one,
and its status file stores it as the flat keys ``error_kind`` (the :attr:`Failure.kind`),
``error``, ``failed_cell``, ``failed_cell_index`` and ``failed_cell_source``
(:meth:`Failure.to_status` / :func:`failure_from_status`).  :func:`classify` maps what
papermill / nbclient raise to a kind by the exception's type, never by its message.
"""
from __future__ import annotations

import re
from typing import Any, ClassVar
from collections.abc import Mapping

__all__ = ["Failure", "CellError", "KernelDied", "CellTimeout", "KernelStartError", "MissingResult",
           "ExportError", "WorkerDied", "Interrupted", "RunError", "classify", "failure_from_status",
           "STATUS_KEYS"]

#: the status-file keys a failure is stored in (all present, None when unknown)
STATUS_KEYS = ("error_kind", "error", "failed_cell", "failed_cell_index", "failed_cell_source")


class Failure(Exception):
    """A failed cell run: what happened (``error``) and, when known, where.

    ``cell`` is the execution count of the cell where execution stopped, ``cell_index`` its
    position in the notebook (0-based) and ``source`` one line of it (:class:`CellError`: the
    line that raised; otherwise ``begins: <the cell's first line>``).
    """

    kind: ClassVar[str] = "error"          # the status file's ``error_kind``
    what: ClassVar[str] = "failed"         # how :meth:`describe` says it
    retry: ClassVar[bool] = True           # whether running the cell again may help
    partial: ClassVar[bool] = False        # whether the executed notebook is a partial output

    def __init__(self, error: str = "", *, cell: int | None = None, cell_index: int | None = None,
                 source: str | None = None) -> None:
        super().__init__(error)
        self.error = error
        self.cell = cell
        self.cell_index = cell_index
        self.source = source

    def located(self, cell: int | None, cell_index: int | None, source: str | None) -> Failure:
        """This failure with the stopping cell filled in (``source`` kept when already known).

        ``source`` here is the cell's first line (the notebook lookup knows no more): it is
        stored as ``begins: <line>``, so that it is never taken for the line that raised (a cell
        that timed out or whose kernel died names no line)."""
        self.cell, self.cell_index = cell, cell_index
        if not self.source and source:
            self.source = source if source.startswith("begins: ") else f"begins: {source}"
        return self

    def where(self) -> str:
        """`` in cell #3 [4] (line)``, or ``""`` when no cell is known."""
        if self.cell_index is not None:
            text = f" in cell #{self.cell_index}"
            if self.cell is not None:
                text += f" [{self.cell}]"
            return text + (f" ({self.source})" if self.source else "")
        return f" in cell [{self.cell}]" if self.cell is not None else ""

    def describe(self, name: str) -> str:
        """One line: ``<name>: <what happened> in cell ...: <first line of the error>``."""
        text = f"{name}: {self.what}{self.where()}"
        if self.error and self.error.strip():
            text += f": {self.error.strip().splitlines()[0]}"
        return text

    def to_status(self) -> dict[str, Any]:
        """The status-file keys (:data:`STATUS_KEYS`) of this failure."""
        return {"error_kind": self.kind, "error": self.error, "failed_cell": self.cell,
                "failed_cell_index": self.cell_index, "failed_cell_source": self.source}

    def __str__(self) -> str:
        return self.error

    def __reduce__(self):  # keyword arguments survive pickling (dask, multiprocessing)
        return failure_from_status, (self.to_status(),)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.error!r}, cell={self.cell}, cell_index={self.cell_index})"


class CellError(Failure):
    """A notebook cell raised (``error``: ``"<exception type>: <message>"``); ``source`` is the
    line of the cell that raised, when the traceback names it."""

    kind, what = "cell-error", "failed"


class KernelDied(Failure):
    """The kernel process died while a cell ran (its notebook is kept as partial output)."""

    kind, what, partial = "kernel-died", "kernel died", True


class CellTimeout(Failure):
    """A cell ran longer than the cell's ``timeout`` (its notebook is kept as partial output)."""

    kind, what, partial = "timeout", "timed out", True


class KernelStartError(Failure):
    """The kernel did not start or did not answer in ``start_timeout`` (port clash, slow start)."""

    kind, what = "kernel-start", "kernel did not start"


class MissingResult(Failure):
    """The notebook ran but wrote no results file to ``results_path``."""

    kind, what = "no-results", "wrote no results"


class ExportError(Failure):
    """The executed notebook could not be rendered to HTML."""

    kind, what = "export", "HTML export failed"


class WorkerDied(Failure):
    """The process running the cell exited without writing the cell's status."""

    kind, what = "worker-died", "worker process died"


class Interrupted(Failure):
    """The run was stopped (SIGINT / SIGTERM); running again resumes, a retry would not."""

    kind, what, retry = "interrupted", "interrupted", False


class RunError(Failure):
    """Anything else that stopped the notebook (a bad notebook, an engine error); partial output."""

    kind, what, partial = "error", "failed", True


_KINDS: dict[str, type[Failure]] = {c.kind: c for c in (CellError, KernelDied, CellTimeout, KernelStartError,
                                                         MissingResult, ExportError, WorkerDied, Interrupted,
                                                         RunError)}


def failure_from_status(d: Mapping[str, Any]) -> Failure | None:
    """The failure stored in a status file's keys, or None (no ``error_kind``)."""
    kind = d.get("error_kind")
    if not kind:
        return None
    cls = _KINDS.get(kind, Failure)
    f = cls(d.get("error") or "", cell=d.get("failed_cell"), cell_index=d.get("failed_cell_index"),
            source=d.get("failed_cell_source"))
    if cls is Failure:  # a kind this version does not know: kept as written
        f.kind = kind
    return f


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _raising_line(exc: Any) -> str | None:
    """The line of the failing cell that raised, from IPython's traceback (``Cell In[n], line k``)."""
    source = getattr(exc, "source", None) or ""
    text = _ANSI.sub("", "\n".join(getattr(exc, "traceback", None) or []))
    hits = re.findall(rf"Cell In\[{getattr(exc, 'exec_count', None)}\], line (\d+)", text)
    lines = source.splitlines()
    if not hits or not 0 < int(hits[-1]) <= len(lines):
        return None
    return lines[int(hits[-1]) - 1].strip()[:80] or None


def classify(exc: BaseException) -> Failure:
    """The :class:`Failure` an exception from a notebook execution stands for, by its type.

    papermill's ``PapermillExecutionError`` (a cell raised) -> :class:`CellError`; nbclient's
    ``DeadKernelError`` -> :class:`KernelDied`; a ``TimeoutError`` (nbclient's
    ``CellTimeoutError``) -> :class:`CellTimeout`; a :class:`Failure` stays itself; anything
    else -> :class:`RunError`.
    """
    from nbclient.exceptions import DeadKernelError
    from papermill.exceptions import PapermillExecutionError

    if isinstance(exc, Failure):
        return exc
    if isinstance(exc, PapermillExecutionError):
        return CellError(f"{exc.ename}: {exc.evalue}", source=_raising_line(exc))
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, DeadKernelError):
        return KernelDied(text)
    if isinstance(exc, TimeoutError):
        return CellTimeout(text)
    return RunError(text)
