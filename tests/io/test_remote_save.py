"""Saving to an object store: a multipart upload streamed from the chunks, atomic, in bounded memory."""

from __future__ import annotations

from pathlib import Path

import dask.array as da
import nibabel as nib
import numpy as np
import pytest
from remote_servers import s3, s3_endpoint  # noqa: F401 - fixtures

import lazyimg
from lazyimg._write import upload
from lazyimg.testing import fmri_like

SHAPE = (64, 64, 48, 60)  # float32: ~47 MB, ten 5 MiB parts


@pytest.fixture
def small_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Parts of S3's minimum size and small windows, so a test image spans many of each."""
    monkeypatch.setattr(upload, "PART_BYTES", 5 * 2**20)
    monkeypatch.setattr(upload, "WINDOW_BYTES", 6 * 2**20)
    monkeypatch.setattr(upload, "peak_buffered", 0)


def _download(s3: dict, key: str, tmp_path: Path) -> Path:
    local = tmp_path / key.rsplit("/", 1)[-1]
    s3["client"].download_file(s3["bucket"], key, str(local))
    return local


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".mgz"])
def test_streamed_multipart_upload(
    s3: dict, tmp_path: Path, small_parts: None, suffix: str
) -> None:
    arr = fmri_like(SHAPE).astype(np.float32) * np.float32(1.37)
    x = da.from_array(arr, chunks=(64, 64, 48, 4))
    key = f"out/bold{suffix}"
    url = f"s3://{s3['bucket']}/{key}"
    affine = np.diag([2.0, 2.0, 3.0, 1.0])
    assert (
        lazyimg.save(x, url, affine=affine, compresslevel=1, storage_options=s3["options"]) == url
    )
    head = s3["client"].head_object(Bucket=s3["bucket"], Key=key)
    assert "-" in head["ETag"]  # a multipart upload's ETag: "<digest>-<parts>"
    assert int(head["ETag"].strip('"').rsplit("-", 1)[1]) >= 3
    # memory: about one window and two parts, not the image
    assert upload.peak_buffered <= 2 * upload.WINDOW_BYTES + 2 * upload.PART_BYTES
    assert upload.peak_buffered < arr.nbytes / 2
    local = _download(s3, key, tmp_path)
    back = nib.load(local)  # gzip members one after another: one valid gzip file
    assert np.array_equal(np.asarray(back.dataobj), arr)
    if suffix != ".mgz":
        assert np.allclose(back.affine, affine)
    again = lazyimg.load(url, storage_options=s3["options"])
    assert np.array_equal(again.slicecopy[..., 40:43], arr[..., 40:43])


def test_failed_save_leaves_no_object_and_no_pending_upload(s3: dict, small_parts: None) -> None:
    arr = fmri_like(SHAPE).astype(np.float32)
    x = da.from_array(arr, chunks=(64, 64, 48, 4))

    def boom(block: np.ndarray, block_info: dict | None = None) -> np.ndarray:
        if block_info is not None and block_info[0]["chunk-location"][-1] >= 10:
            raise RuntimeError("a chunk failed")  # after several parts were uploaded
        return block

    failing = x.map_blocks(boom, dtype=x.dtype)
    url = f"s3://{s3['bucket']}/out/broken.nii"
    with pytest.raises(RuntimeError, match="a chunk failed"):
        lazyimg.save(failing, url, storage_options=s3["options"])
    client, bucket = s3["client"], s3["bucket"]
    assert "Contents" not in client.list_objects_v2(Bucket=bucket, Prefix="out/")
    assert not client.list_multipart_uploads(Bucket=bucket).get("Uploads")


def test_save_later(s3: dict) -> None:
    arr = fmri_like((16, 12, 8, 5))
    url = f"s3://{s3['bucket']}/later.nii.gz"
    job = lazyimg.save(arr, url, compute=False, storage_options=s3["options"])
    assert "Contents" not in s3["client"].list_objects_v2(Bucket=s3["bucket"])
    assert job.compute() == url
    back = lazyimg.load(url, storage_options=s3["options"])
    assert np.array_equal(back.slicecopy[...], arr)
