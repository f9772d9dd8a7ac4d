"""Results as xarray Datasets: attrs conventions and atomic save / open.

Conventions (ARCHITECTURE.md): named dims (``image``, ``class``, ``method``, ``step``,
``repeat``, ``y``, ``x`` ...), string coordinates, parameters in ``attrs`` (JSON where
nested), and the package version and config recorded in ``attrs``.  Files are written to a
temporary file in the target folder and renamed into place, so a failure never leaves a
half-written result.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any
from collections.abc import Iterator, Mapping

import numpy as np
import xarray as xr

from ._version import __version__

__all__ = ["atomic_path", "atomic_dir", "make_attrs", "save_dataset", "open_dataset", "encode_attrs"]

_JSON_KEYS = "_json_attrs"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.",
                               suffix=suffix if suffix is not None else (path.suffix or ".tmp"))
    os.close(fd)
    tmp = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    try:
        yield tmp
        if tmp.exists():  # mkstemp makes 0600 files; give the usual permissions
            os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh temporary folder beside ``path``; on success it replaces ``path`` whole
    (an existing folder there is removed), on failure it is deleted and ``path`` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes 0700; the result gets the usual permissions
    try:
        yield tmp
        old = None
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=path.parent))
            os.replace(path, old / "x")
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def make_attrs(config: Mapping[str, Any] | None = None, **params: Any) -> dict[str, Any]:
    """The standard attrs: lrpkit version, creation time, config and parameters."""
    attrs: dict[str, Any] = {"lrpkit_version": __version__,
                             "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")}
    if config is not None:
        attrs["config"] = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    attrs.update(params)
    return attrs


def _encode_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    json_keys = []
    for k, v in attrs.items():
        if isinstance(v, (str, int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_)):
            out[k] = v
        else:
            out[k] = json.dumps(v, default=_json_default, sort_keys=True)
            json_keys.append(k)
    if json_keys:
        out[_JSON_KEYS] = json.dumps(json_keys)
    return out


def encode_attrs(ds: xr.Dataset) -> xr.Dataset:
    """A shallow copy of ``ds`` whose attrs (the dataset's and every variable's) a netCDF or
    zarr store can hold: numbers and strings as they are, anything else as JSON (listed under
    a reserved key, so that :func:`open_dataset` decodes it again)."""
    out = ds.copy(deep=False)
    out.attrs = _encode_attrs(out.attrs)
    for name in list(out.variables):
        out[name].attrs = _encode_attrs(out[name].attrs)
    return out


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, os.PathLike):
        return os.fspath(o)
    if hasattr(o, "to_dict"):  # lrpkit.config sections
        return o.to_dict()
    raise TypeError(f"attribute value of type {type(o).__name__} is not JSON serialisable")


def _decode_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(attrs)
    keys = json.loads(out.pop(_JSON_KEYS, "[]"))
    for k in keys:
        if k in out:
            out[k] = json.loads(out[k])
    return out


def _plain_strings(ds: xr.Dataset) -> xr.Dataset:
    """Store string coordinates / variables (object or pandas string dtypes) as numpy ``str``."""
    for name, var in ds.variables.items():
        if not isinstance(var.dtype, np.dtype) or var.dtype.kind in "OT":
            values = np.asarray(var.values, dtype=object)
            if all(isinstance(v, str) for v in values.ravel()):
                ds = ds.assign_coords({name: (var.dims, values.astype(str), var.attrs)}) if name in ds.coords \
                    else ds.assign({name: (var.dims, values.astype(str), var.attrs)})
    return ds


def save_dataset(ds: xr.Dataset, path: str | os.PathLike) -> Path:
    """Write ``ds`` to netCDF (h5netcdf engine) atomically; nested attrs become JSON."""
    if not isinstance(ds, xr.Dataset):
        raise TypeError(f"save_dataset needs an xarray.Dataset, got {type(ds).__name__}")
    path = Path(path)
    ds = encode_attrs(_plain_strings(ds.copy(deep=False)))
    # bool arrays are only valid netCDF through h5netcdf's extension; ask for it only then
    has_bool = any(v.dtype == bool for v in ds.variables.values())
    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*invalid netcdf.*", category=UserWarning)
        warnings.filterwarnings("ignore", message=".*invalid_netcdf.*")
        ds.to_netcdf(tmp, engine="h5netcdf", invalid_netcdf=has_bool)
    return path


def open_dataset(path: str | os.PathLike) -> xr.Dataset:
    """Load a Dataset written by :func:`save_dataset` fully into memory (file closed)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no result file at {path}")
    with xr.open_dataset(path, engine="h5netcdf") as ds:
        ds = ds.load()
    ds.attrs = _decode_attrs(ds.attrs)
    for name in list(ds.variables):
        ds[name].attrs = _decode_attrs(ds[name].attrs)
    return ds
