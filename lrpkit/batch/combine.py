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

from .cells import Cell, CellResult, read_status, shown_state

if TYPE_CHECKING:  # pragma: no cover
    import xarray as xr

__all__ = ["combine_cells", "save_combined", "remove_combined", "store_cells"]


def _dim(name: str) -> str:
    return name.replace(".", "_")


def _coord(v: Any) -> Any:
    if isinstance(v, (bool, int, float, str)):
        return v
    return json.dumps(v, default=str)


def combine_cells(cells: Sequence[Cell], results: Sequence[CellResult] | None = None) -> xr.Dataset:
    """Stack the cells' result Datasets along the grid parameters (cells not ok and current,
    :func:`lrpkit.batch.cells.shown_state`: NaN); ``attrs["grid_cells"]`` lists every cell's state.

    ``results`` is accepted for compatibility and ignored (the status files are the truth).
    """
    import xarray as xr

    from ..results import open_dataset

    parts = []
    info = []
    for c in cells:
        st = read_status(c.status_path)
        state, _ = shown_state(c, st)   # ok only when current (fingerprint) and its files are there
        info.append({"cell": c.name, "params": c.param_dict, "state": state,
                     "seconds": round(st.seconds, 2) if st else None})
        if state != "ok":
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


def remove_combined(base: Path) -> None:
    """Remove ``<base>.nc`` / ``<base>.zarr`` (a grid store none of whose cells is current)."""
    base.with_suffix(".nc").unlink(missing_ok=True)
    if base.with_suffix(".zarr").exists():
        shutil.rmtree(base.with_suffix(".zarr"), ignore_errors=True)


def store_cells(path: Path) -> dict[str, str] | None:
    """The cells a combined store holds, ``{name: state}`` from its ``grid_cells`` attribute
    (read without loading the data), or None when it cannot be read."""
    import xarray as xr

    try:
        if path.suffix == ".zarr":
            attrs = dict(xr.open_zarr(path).attrs)
        else:
            with xr.open_dataset(path, engine="h5netcdf") as ds:
                attrs = dict(ds.attrs)
        cells = attrs.get("grid_cells")
        if isinstance(cells, str):
            cells = json.loads(cells)
        return {str(c["cell"]): str(c["state"]) for c in cells}
    except Exception:  # noqa: BLE001 - unreadable: treated as out of date
        return None
