"""The FV worker pool keeps loky's worker-restart note off the console, and nothing else."""
from __future__ import annotations

import warnings

import joblib

from lrpkit.fisher import encoder


class _Parallel:
    """joblib.Parallel's generator interface; every task warns like loky's leak guard and once
    with another warning that must still reach the caller."""

    def __init__(self, n_jobs, return_as):
        assert return_as == "generator" and n_jobs == 2

    def __call__(self, tasks):
        def gen():
            for i, (f, a, k) in enumerate(tasks):
                warnings.warn("A worker stopped while some jobs were given to the executor. This can be "
                              "caused by a too short worker timeout or by a memory leak.", UserWarning,
                              stacklevel=1)
                if i == 0:
                    warnings.warn("a real problem", UserWarning, stacklevel=1)
                yield f(*a, **k)
        return gen()


def test_worker_restart_note_is_dropped_other_warnings_pass(monkeypatch):
    monkeypatch.setattr(joblib, "Parallel", _Parallel)
    monkeypatch.setattr(joblib, "effective_n_jobs", lambda n: 2)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        out = encoder._map(lambda x: 3 * x, [(1,), (2,), (5,)], 2, "test")
    assert out == [3, 6, 15]
    texts = [str(w.message) for w in seen]
    assert "a real problem" in texts
    assert not any("worker stopped" in t for t in texts), texts
