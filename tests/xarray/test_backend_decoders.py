"""The engine takes xarray's standard decoder keywords, as bundled backends do (issue 11, item 15)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import xarray as xr
from conftest import assert_same, nib_array

from lazyimg.testing import write_scaled

DECODERS = {
    "decode_times": [True, False],
    "decode_timedelta": [True, False],
    "use_cftime": [True, False],
    "decode_coords": [True, False, "coordinates", "all"],
    "concat_characters": [True, False],
    "mask_and_scale": [True],
    "drop_variables": [["x"], "image_extra"],
}


@pytest.fixture
def scaled(tmp_path: Path) -> Path:
    stored = np.arange(3 * 4 * 2 * 5, dtype="int16").reshape(3, 4, 2, 5)
    return write_scaled(tmp_path / "s.nii.gz", stored, 0.5, -2.0)


@pytest.mark.parametrize(
    ("keyword", "value"), [(k, v) for k, values in DECODERS.items() for v in values]
)
def test_decoder_keywords_are_accepted(scaled: Path, keyword: str, value: object) -> None:
    plain = xr.open_dataarray(scaled, engine="lazyimg")
    for chunks in (None, {}):
        got = xr.open_dataarray(scaled, engine="lazyimg", chunks=chunks, **{keyword: value})
        assert got.dims == plain.dims
        xr.testing.assert_identical(got.coords.to_dataset(), plain.coords.to_dataset())
        assert_same(got.values, nib_array(scaled))


@pytest.mark.parametrize("how", [{"mask_and_scale": False}, {"decode_cf": False}])
def test_no_mask_and_scale_gives_stored_values(scaled: Path, how: dict[str, bool]) -> None:
    """Like netCDF's packed values: stored integers, the header's scaling in attrs."""
    got = xr.open_dataarray(scaled, engine="lazyimg", **how)
    want = nib.load(scaled).dataobj.get_unscaled()
    assert_same(got.values, want)
    assert (got.attrs["scl_slope"], got.attrs["scl_inter"]) == (0.5, -2.0)
    np.testing.assert_array_equal(got.values * 0.5 - 2.0, nib_array(scaled))


def test_no_mask_and_scale_with_a_cast_is_refused(scaled: Path) -> None:
    with pytest.raises(ValueError, match="mask_and_scale=False") as err:
        xr.open_dataarray(scaled, engine="lazyimg", mask_and_scale=False, dtype="float32")
    assert str(scaled) in str(err.value)
    same = xr.open_dataarray(scaled, engine="lazyimg", mask_and_scale=False, dtype="raw")
    assert same.dtype == np.int16
