"""``ds.lazyimg`` on Datasets, and open_mfdataset with a labelled stacking dimension."""

from __future__ import annotations

import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import xarray as xr
from conftest import nib_array

import lazyimg
from lazyimg.errors import DimensionError, ImageNotFoundError, NotAnImageError
from lazyimg.testing import write_fmri
from lazyimg.xarray import open_mfdataset
from lazyimg.xarray.stack import label_file, stack_labels


@pytest.fixture
def bids(tmp_path: Path) -> list[Path]:
    return [
        write_fmri(tmp_path / f"sub-{s}_task-rest_bold.nii.gz", (6, 5, 4, 3), seed=n)
        for n, s in enumerate(["01", "02", "10"])
    ]


# --------------------------------------------------------------------------- ds.lazyimg


def test_dataset_accessor_matches_the_dataarray(tmp_path: Path, bids: list[Path]):
    ds = xr.open_dataset(bids[0], engine="lazyimg", chunks={})
    da = ds["image"]
    np.testing.assert_array_equal(ds.lazyimg.affine, da.lazyimg.affine)
    assert ds.lazyimg.zooms == da.lazyimg.zooms == (2.0, 2.0, 2.0)
    assert ds.lazyimg.sources == [str(bids[0])]
    part = ds.isel(i=slice(2, None))
    np.testing.assert_array_equal(part.lazyimg.affine, part["image"].lazyimg.affine)
    world = ds.lazyimg.assign_world_coords()
    assert float(world.x.isel(i=1, j=0, k=0)) == float(da.lazyimg.affine[0] @ [1, 0, 0, 1])
    out = ds.lazyimg.to_nifti(tmp_path / "out.nii")
    np.testing.assert_array_equal(nib_array(out), nib_array(bids[0]))
    np.testing.assert_allclose(nib.load(out).affine, nib.load(bids[0]).affine)


def test_dataset_accessor_finds_a_renamed_image(bids: list[Path]):
    ds = xr.open_dataset(bids[0], engine="lazyimg").rename({"image": "bold"})
    assert ds.lazyimg.image.name == "bold"
    ds["other"] = ds["bold"] * 2  # attrs kept: now two candidates
    with pytest.raises(NotAnImageError, match="pick one"):
        _ = ds.lazyimg.affine


# --------------------------------------------------------------------------- stacking


def test_stack_labels_bids_then_stems():
    assert stack_labels(["sub-01_bold.nii", "sub-01_run-2_bold.nii"]) == (
        "file",
        ["sub-01_bold", "sub-01_run-2_bold"],
    )
    assert stack_labels(["x/sub-ab12_T1w.mgz", "y/sub-cd_T1w.mgz"]) == ("subject", ["ab12", "cd"])
    dim, labels = stack_labels(["a/img.nii", "b/img.nii"])  # same stems: whole paths
    assert dim == "file" and len(set(labels)) == 2


def test_open_mfdataset_labels_subjects_and_keeps_every_source(bids: list[Path], small_chunks):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = open_mfdataset(bids)
    assert ds["image"].dims == ("subject", "i", "j", "k", "time")
    assert ds.subject.values.tolist() == ["01", "02", "10"]
    assert ds.source.values.tolist() == [str(p) for p in bids]
    assert ds.lazyimg.sources == [str(p) for p in bids]
    assert "source" not in ds["image"].attrs  # it named only the first file
    for n, path in enumerate(bids):
        np.testing.assert_array_equal(ds["image"].isel(subject=n).values, nib_array(path))
    assert ds["image"].chunks[1:] == lazyimg.load(bids[0]).chunks  # disk-aligned


def test_open_mfdataset_glob_and_time_chunks(bids: list[Path], tmp_path: Path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = open_mfdataset(str(tmp_path / "sub-*_bold.nii.gz"), chunks={"time": 1})
    assert ds.sizes["subject"] == 3 and ds["image"].chunks[-1] == (1, 1, 1)
    with pytest.raises(ImageNotFoundError, match="no files match"):
        open_mfdataset(str(tmp_path / "nothing-*.nii"))


def test_open_mfdataset_file_stems(tmp_path: Path):
    paths = [write_fmri(tmp_path / f"run{n}.nii", (4, 4, 3, 2), seed=n) for n in (1, 2)]
    ds = open_mfdataset(paths, dim="run")
    assert ds["image"].dims[0] == "run" and ds.run.values.tolist() == ["run1", "run2"]


def test_stacked_dataset_saves_with_dims(bids: list[Path], tmp_path: Path):
    ds = open_mfdataset(bids)
    with pytest.raises(DimensionError, match="subject"):
        ds.lazyimg.to_nifti(tmp_path / "all.nii.gz")
    out = ds.lazyimg.to_nifti(tmp_path / "all.nii.gz", dims={"subject": "u"})
    back = nib.load(out)
    assert back.shape == (6, 5, 4, 3, 3)
    np.testing.assert_array_equal(np.asarray(back.dataobj)[..., 2], nib_array(bids[2]))


def test_label_file_as_preprocess(bids: list[Path]):
    import functools

    dim, labels = stack_labels(bids)
    ds = xr.open_mfdataset(
        bids,
        engine="lazyimg",
        combine="nested",
        concat_dim=dim,
        preprocess=functools.partial(
            label_file, dim=dim, labels=dict(zip(map(str, bids), labels, strict=True))
        ),
        combine_attrs="drop_conflicts",
    )
    assert ds.subject.values.tolist() == labels and ds.source.values.tolist() == list(
        map(str, bids)
    )
