"""lrpkit.batch.failures: a failed cell's kind comes from the exception's type, never its message."""
from __future__ import annotations

import pickle

import pytest
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from papermill.exceptions import PapermillExecutionError

from lrpkit.batch.cells import CellResult
from lrpkit.batch.failures import (CellError, CellTimeout, Failure, Interrupted, KernelDied, KernelStartError,
                                   MissingResult, RunError, classify, failure_from_status)

# IPython's traceback of a cell whose second line raised (colours as the kernel sends them)
TRACEBACK = ["\x1b[31m---------------------------------------------------------------------------\x1b[39m",
             "\x1b[31mValueError\x1b[39m                                Traceback (most recent call last)",
             "\x1b[36mCell\x1b[39m\x1b[36m \x1b[39m\x1b[32mIn[4]\x1b[39m\x1b[32m, line 2\x1b[39m\n"
             "\x1b[32m      1\x1b[39m x = \x1b[32m1\x1b[39m\n"
             "\x1b[32m----> \x1b[39m\x1b[32m2\x1b[39m \x1b[38;5;28;01mraise\x1b[39;00m "
             "\x1b[38;5;167;01mValueError\x1b[39;00m(\x1b[33m'\x1b[39m\x1b[33mplanted\x1b[39m\x1b[33m'\x1b[39m)",
             "\x1b[31mValueError\x1b[39m: planted"]


def _cell_error(ename="ValueError", evalue="planted"):
    return PapermillExecutionError(cell_index=5, exec_count=4, source="x = 1\nraise ValueError('planted')\ny = 2",
                                   ename=ename, evalue=evalue, traceback=TRACEBACK)


def test_the_kind_follows_the_exception_type_not_its_message():
    # messages that name another kind: the type decides
    assert type(classify(DeadKernelError("Timeout waiting for execute reply; timed out"))) is KernelDied
    assert type(classify(CellTimeoutError("the kernel died, dead, address already in use"))) is CellTimeout
    assert type(classify(_cell_error("TimeoutError", "kernel died while timed out"))) is CellError
    # what the old string match took for a kernel that did not start is not one here: only the
    # engine's kernel start raises KernelStartError
    assert type(classify(RuntimeError("Kernel died before replying to kernel_info"))) is RunError
    assert type(classify(OSError("timeout waiting for kernel"))) is RunError
    own = KernelStartError("RuntimeError: Kernel didn't respond in 5 seconds")
    assert classify(own) is own
    assert type(classify(TimeoutError("no reply"))) is CellTimeout


def test_a_cell_error_names_its_exception_and_the_raising_line():
    f = classify(_cell_error())
    assert f.error == "ValueError: planted" and f.source == "raise ValueError('planted')"
    f.located(4, 5, "x = 1")                        # the cell's first line does not replace it
    assert (f.cell, f.cell_index, f.source) == (4, 5, "raise ValueError('planted')")
    assert f.describe("01_bad") == "01_bad: failed in cell #5 [4] (raise ValueError('planted')): ValueError: planted"
    bare = PapermillExecutionError(2, 3, "boom()", "NameError", "name 'boom' is not defined", [])
    assert classify(bare).source is None            # no traceback line: left to the notebook lookup


@pytest.mark.parametrize("failure, what, retry, partial", [
    (CellError("E: x"), "failed", True, False),
    (KernelDied("DeadKernelError: Kernel died"), "kernel died", True, True),
    (CellTimeout("CellTimeoutError: ..."), "timed out", True, True),
    (KernelStartError("RuntimeError: ..."), "kernel did not start", True, False),
    (MissingResult("no results"), "wrote no results", True, False),
    (Interrupted("stopped by SIGTERM"), "interrupted", False, False),
    (RunError("OSError: x"), "failed", True, True),
])
def test_each_kind_knows_its_description_retry_and_partial_output(failure, what, retry, partial):
    assert (failure.what, failure.retry, failure.partial) == (what, retry, partial)
    res = CellResult(name="c", group="nb", state="running").fail(failure)
    assert res.state == ("interrupted" if isinstance(failure, Interrupted) else "failed")
    assert res.worth_retry is retry and not res.ok
    assert res.describe().startswith(f"nb: {what}: ")
    back = failure_from_status(failure.located(7, 3, "line").to_status())      # the status file's keys
    assert type(back) is type(failure) and back.to_status() == failure.to_status()
    again = pickle.loads(pickle.dumps(failure))                                  # dask, multiprocessing
    assert type(again) is type(failure) and again.to_status() == failure.to_status()


def test_an_unknown_kind_in_a_status_file_is_kept():
    f = failure_from_status({"error_kind": "gpu-lost", "error": "CUDA error", "failed_cell": 2})
    assert type(f) is Failure and f.kind == "gpu-lost" and f.to_status()["error_kind"] == "gpu-lost"
    assert failure_from_status({"error_kind": None, "error": None}) is None


def test_a_cell_without_a_raising_line_is_named_by_number_and_never_by_a_line_it_did_not_raise():
    # a timeout or a kernel death names no line: the cell's first line is marked as such
    f = CellTimeout("CellTimeoutError: ...").located(4, 3, "import time")
    assert f.describe("00_slow") == "00_slow: timed out in cell #3 [4] (begins: import time): CellTimeoutError: ..."
    assert f.located(4, 3, f.source).source == "begins: import time"      # marked once
    assert classify(_cell_error()).located(4, 5, "x = 1").source == "raise ValueError('planted')"
