
import numpy as np
import pytest
import xarray as xr

from lrpkit.results import atomic_path, make_attrs, open_dataset, save_dataset


def _ds():
    return xr.Dataset(
        {"ap": (("class",), np.array([0.5, 0.75], dtype=np.float32))},
        coords={"class": ["bus", "car"]},
        attrs=make_attrs({"seed": 3, "nested": {"a": [1, 2]}}, method="lrp", flag=True, eps=0.01),
    )


def test_round_trip_keeps_values_coords_and_nested_attrs(tmp_path):
    p = save_dataset(_ds(), tmp_path / "sub" / "r.nc")
    ds = open_dataset(p)
    np.testing.assert_array_equal(ds["ap"].values, [0.5, 0.75])
    assert list(ds["class"].values) == ["bus", "car"]
    assert ds.attrs["config"] == {"seed": 3, "nested": {"a": [1, 2]}}
    assert ds.attrs["flag"] is True and ds.attrs["eps"] == 0.01 and ds.attrs["method"] == "lrp"
    assert ds.attrs["lrpkit_version"]
    assert [f.name for f in p.parent.iterdir()] == ["r.nc"]  # no temp file left


def test_failed_write_leaves_no_file(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_existing_file_survives_failed_overwrite(tmp_path):
    p = save_dataset(_ds(), tmp_path / "r.nc")
    before = p.read_bytes()
    bad = _ds()
    bad.attrs["obj"] = object()
    with pytest.raises(TypeError, match="not JSON serialisable"):
        save_dataset(bad, p)
    assert p.read_bytes() == before
    assert [f.name for f in tmp_path.iterdir()] == ["r.nc"]


def test_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.nc"):
        open_dataset(tmp_path / "missing.nc")
    with pytest.raises(TypeError, match="xarray.Dataset"):
        save_dataset({"a": 1}, tmp_path / "x.nc")


def test_written_files_get_the_usual_permissions(tmp_path):
    import os
    import stat

    umask = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "f.txt") as tmp:
            tmp.write_text("x")
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "f.txt").stat().st_mode) == 0o644


def test_pandas_string_coordinates_are_stored_as_plain_strings(tmp_path):
    import pandas as pd

    da = xr.DataArray([1.0, 2.0], dims="split")
    ds = xr.concat([da[:1], da[1:]], dim=pd.Index(pd.array(["test", "test_swapped"], dtype="string"),
                                                  name="split")).to_dataset(name="ap")
    out = open_dataset(save_dataset(ds, tmp_path / "s.nc"))
    assert list(out["split"].values) == ["test", "test_swapped"]


def test_atomic_dir_swaps_whole_or_leaves_untouched(tmp_path):
    import os

    from lrpkit.results import atomic_dir

    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "new.txt").write_text("half")
            raise RuntimeError("crash")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert (target / "old.txt").read_text() == "old"
    with atomic_dir(target) as tmp:
        (tmp / "new.txt").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    umask = os.umask(0)
    os.umask(umask)
    assert (target.stat().st_mode & 0o777) == 0o777 & ~umask
