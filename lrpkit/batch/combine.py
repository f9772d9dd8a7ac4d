"""Combining a grid's cells: each notebook's cell results stacked along the grid's parameters.

:func:`combine_cells` puts every finished cell's Dataset on new dims named after the grid's
parameters (dots as underscores: ``lrp.epsilon`` -> ``lrp_epsilon``); cells that did not
finish are NaN there.  :func:`save_combined` writes the store: ``<out>/<notebook>.nc``, or
``.zarr`` (``store: zarr``, or ``auto`` above 1 GiB).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any
from collections.abc import Sequence

from .cells import Cell, CellResult, read_status

if TYPE_CHECKING:  # pragma: no cover
    import xarray as xr

__all__ = ["combine_cells", "save_combined"]


def _dim(name: str) -> str:
    return name.replace(".", "_")


def _coord(v: Any) -> Any:
    if isinstance(v, (bool, int, float, str)):
        return v
    return json.dumps(v, default=str)


def combine_cells(cells: Sequence[Cell], results: Sequence[CellResult] | None = None) -> xr.Dataset:
    """Stack the cells' result Datasets along the grid parameters (missing cells: NaN).

    ``results`` is accepted for compatibility and ignored (the status files are the truth).
    """
    import xarray as xr

    from ..results import open_dataset

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


def save_combined(ds: xr.Dataset, base: Path, store: str) -> Path:
    """Write ``ds`` to ``<base>.nc`` or ``<base>.zarr`` (``store``: netcdf, zarr or auto);
    the other one, left by an earlier run, is removed."""
    from ..results import atomic_dir, encode_attrs, save_dataset

    nbytes = ds.nbytes
    if store == "zarr" or (store == "auto" and nbytes > 1 << 30):
        try:
            import zarr  # noqa: F401
        except ImportError:
            raise ValueError("store: zarr needs the zarr package (pip install zarr)") from None
        path = base.with_suffix(".zarr")
        out = encode_attrs(ds)
        with atomic_dir(path) as tmp:
            out.to_zarr(tmp, mode="w")
        base.with_suffix(".nc").unlink(missing_ok=True)
        return path
    path = save_dataset(ds, base.with_suffix(".nc"))
    if base.with_suffix(".zarr").exists():
        shutil.rmtree(base.with_suffix(".zarr"), ignore_errors=True)
    return path
