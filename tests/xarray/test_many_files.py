"""Many files through ``engine="lazyimg"``: files on one grid share their coordinates' indexes.

The datasets must look exactly as if each file had its own coordinates; only
the immutable pandas indexes (and the read-only arrays behind them) are shared.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from conftest import assert_same, nib_array

import lazyimg
from lazyimg.testing import write_fmri


@pytest.fixture
def grid_files(tmp_path: Path) -> list[Path]:
    return [write_fmri(tmp_path / f"s{n}.nii.gz", (6, 5, 4, 3), seed=n, tr=2.0) for n in range(4)]


def test_each_dataset_equals_its_own_file(grid_files: list[Path]):
    for path in grid_files:
        ds = xr.open_dataset(path, engine="lazyimg")
        xr.testing.assert_identical(ds.image.compute(), lazyimg.load(path).to_xarray().compute())
        assert_same(ds.image.values, nib_array(path))
        for dim in ds.image.dims:  # as before: coordinate values cannot be written
            assert not ds[dim].values.flags.writeable


def test_files_on_one_grid_share_indexes_not_attrs(grid_files: list[Path]):
    a, b = (xr.open_dataset(p, engine="lazyimg") for p in grid_files[:2])
    # xarray copies its Index wrappers; the pandas index inside is the shared one
    assert all(a.xindexes[d].index is b.xindexes[d].index for d in ("i", "j", "k", "time"))
    time_attrs, i_attrs = dict(a.time.attrs), dict(a.i.attrs)
    a.time.attrs["units"] = "changed"
    a.i.attrs["note"] = "mine"
    a.time.encoding["x"] = 1
    fresh = xr.open_dataset(grid_files[2], engine="lazyimg")
    for other in (b, fresh):
        assert other.time.attrs == time_attrs and time_attrs["units"] == "s"
        assert other.i.attrs == i_attrs and "x" not in other.time.encoding


def test_other_grids_get_their_own_coordinates(tmp_path: Path):
    two = write_fmri(tmp_path / "tr2.nii.gz", (6, 5, 4, 3), tr=2.0)
    three = write_fmri(tmp_path / "tr3.nii.gz", (6, 5, 4, 3), tr=3.0)
    wide = write_fmri(tmp_path / "wide.nii.gz", (7, 5, 4, 3), tr=2.0)
    ds2, ds3, dsw = (xr.open_dataset(p, engine="lazyimg") for p in (two, three, wide))
    assert ds2.time.values.tolist() == [0.0, 2.0, 4.0]
    assert ds3.time.values.tolist() == [0.0, 3.0, 6.0]
    assert dsw.i.values.tolist() == list(range(7)) and ds2.i.values.tolist() == list(range(6))
    assert ds2.xindexes["time"].index is not ds3.xindexes["time"].index


def test_open_mfdataset_form_and_values(grid_files: list[Path]):
    ds = xr.open_mfdataset(grid_files, engine="lazyimg", combine="nested", concat_dim="subject")
    assert ds.image.dims == ("subject", "i", "j", "k", "time")
    assert ds.image.chunks == ((1,) * 4, (6,), (5,), (4,), (3,))
    one = xr.open_dataset(grid_files[0], engine="lazyimg")
    assert {d: ds[d].attrs for d in one.dims} == {d: one[d].attrs for d in one.dims}
    assert ds.time.values.tolist() == [0.0, 2.0, 4.0] and ds.attrs == one.attrs
    assert ds.image.attrs == one.image.attrs
    assert ds.image.dtype == np.int16
    assert_same(ds.image.values, np.stack([nib_array(p) for p in grid_files]))
    ds.close()
