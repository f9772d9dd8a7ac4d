"""One result computed once, read by every report that shows it.

Notebooks 02 and 03 run side by side in different kernels and show the same experiment (the horse
tag, Lapuschkin et al. 2016, Fig. 5 right).  :func:`cached_dataset` keys a result by a
fingerprint of what it depends on (model files, data, parameters: :func:`fingerprint`), writes
it atomically (:func:`lrpkit.results.save_dataset`) under a file lock (:mod:`filelock`), and the
second caller waits for the first instead of computing it again::

    key = {"models": {"cnn": file_digest(cnn_path)}, "data": ..., "params": {...}}
    ds = cached_dataset(models_dir / "cache", "tag_experiment", key, compute)
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any
from collections.abc import Callable, Mapping

import xarray as xr

__all__ = ["fingerprint", "file_digest", "cached_dataset", "cache_path"]


def file_digest(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes (``""`` for a missing file, so a key changes once it appears)."""
    p = Path(path)
    if not p.is_file():
        return ""
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fingerprint(key: Mapping[str, Any]) -> str:
    """A 16-hex-digit digest of ``key`` (JSON with sorted keys; non-JSON values by ``str``)."""
    text = json.dumps(key, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cache_path(folder: str | os.PathLike, name: str, key: Mapping[str, Any]) -> Path:
    """``<folder>/<name>_<fingerprint>.nc``."""
    return Path(folder) / f"{name}_{fingerprint(key)}.nc"


def cached_dataset(folder: str | os.PathLike, name: str, key: Mapping[str, Any],
                   compute: Callable[[], xr.Dataset], *, timeout: float = 3600.0) -> xr.Dataset:
    """The Dataset stored for ``key`` under ``folder``, else ``compute()`` stored there.

    A lock file beside the result serialises callers: the first computes and writes (atomically),
    the others wait (up to ``timeout`` s) and read it.  The key's JSON is kept in the result's
    ``attrs["cache_key"]`` and its file name in ``attrs["cache_file"]``.
    """
    from filelock import FileLock

    from ..results import open_dataset, save_dataset

    if not isinstance(name, str) or not name or "/" in name:
        raise ValueError(f"name must be a plain file stem, got {name!r}")
    path = cache_path(folder, name, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path.with_suffix(".lock")), timeout=timeout):
        if path.is_file():
            ds = open_dataset(path)
            ds.attrs["cache_hit"] = 1
            return ds
        ds = compute()
        if not isinstance(ds, xr.Dataset):
            raise TypeError(f"compute() must return an xarray.Dataset, got {type(ds).__name__}")
        ds = ds.copy()
        ds.attrs.update(cache_key=json.dumps(key, sort_keys=True, default=str), cache_file=path.name)
        save_dataset(ds, path)
    out = ds.copy()
    out.attrs["cache_hit"] = 0
    return out
