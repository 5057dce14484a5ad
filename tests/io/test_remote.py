"""Remote images over real loopback servers: values, requests and bytes transferred.

The HTTP Range server counts requests and body bytes it sent; the S3 endpoint
is moto's server, counted on lazyimg's side (``lazyimg._io.remote``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import assert_same, nib_array
from remote_servers import SECRET, http, s3, s3_endpoint  # noqa: F401 - fixtures

import lazyimg
from lazyimg._io import remote as _remote
from lazyimg._rangeserver import RangeServer
from lazyimg.errors import FileChangedError, ImageNotFoundError, LazyImgError
from lazyimg.testing import fmri_like

SHAPE = (64, 48, 20, 30)
HEAD = 64 * 2**10


def _write(root: Path, name: str, scaled: bool = False) -> Path:
    arr = fmri_like(SHAPE)
    img = nib.Nifti1Image(arr, np.diag([2.0, 2.0, 3.0, 1.0]))
    if scaled:
        img.header.set_slope_inter(0.5, 10.0)
    img.header.set_xyzt_units("mm", "sec")
    img.header["pixdim"][4] = 2.0
    path = root / name
    nib.save(img, path)
    return path


@pytest.mark.parametrize("scaled", [False, True], ids=["plain", "scaled"])
def test_http_nii_values_and_bytes(http: RangeServer, tmp_path: Path, scaled: bool) -> None:
    path = _write(http.root, "bold.nii", scaled)
    want = nib_array(path)
    http.reset()
    img = lazyimg.load(http.url("bold.nii"))
    # load: one metadata request and one range for the header, never the whole object
    assert http.requests == 2 and http.bytes_sent == min(HEAD, path.stat().st_size)
    assert img.shape == SHAPE and img.dtype == want.dtype
    assert np.array_equal(img.affine, nib.load(path).affine)
    vol_bytes = int(np.prod(SHAPE[:3])) * 2
    for index, needed in [
        ((..., 7), vol_bytes),  # a volume
        ((..., slice(3, 9)), 6 * vol_bytes),  # a slab
        ((slice(None), slice(None), 4, slice(None)), SHAPE[0] * SHAPE[1] * 2 * SHAPE[3]),
    ]:
        http.reset()
        got = img.slicecopy[index]
        assert_same(got, want[index], str(index))
        assert http.bytes_sent <= 1.1 * needed + 2**20, (index, http.bytes_sent, needed)
    http.reset()
    ts = img.slicecopy[5, 6, 7, :]
    assert_same(ts, want[5, 6, 7, :])
    assert http.bytes_sent < 0.2 * path.stat().st_size  # a small fraction of the object


def test_http_dask_mean_reads_each_byte_once(http: RangeServer) -> None:
    path = _write(http.root, "bold.nii")
    img = lazyimg.load(http.url("bold.nii"), chunks={3: 7})
    http.reset()
    got = img.data.mean(axis=-1).compute()
    assert np.allclose(got, nib_array(path).mean(-1))
    assert http.bytes_sent <= path.stat().st_size


@pytest.mark.parametrize("honours", [True, False], ids=["if-match", "ignores-if-match"])
def test_conditional_reads_replace_the_metadata_check(
    http: RangeServer, tmp_path: Path, honours: bool
) -> None:
    """Reads carrying If-Match to a server that honours it need no HEAD after each task."""
    path = _write(http.root, "bold.nii")
    http.if_match = honours
    img = lazyimg.load(http.url("bold.nii"), chunks={3: 10})
    img.slicecopy[..., 0]  # the server is probed once per process
    http.reset()
    got = img.data.sum(axis=-1).compute()
    assert np.array_equal(got, nib_array(path).sum(-1))
    heads = [m for m, _, _ in http.log if m == "HEAD"]
    assert len(heads) == (0 if honours else 3)  # else: one metadata check per task
    # an object replaced after load is refused either way
    other = _write(tmp_path, "other.nii", scaled=True)
    shutil.copy(other, path)
    with pytest.raises(FileChangedError):
        img.slicecopy[..., 1]


@pytest.mark.parametrize(
    "options", [None, {"client_kwargs": {"trust_env": False}}], ids=["plain", "session"]
)
def test_http_clients_and_redirects(http: RangeServer, options: dict | None) -> None:
    """Plain options: lazyimg's own keep-alive client; others (or a redirect): fsspec's session."""
    from lazyimg._io.remote_file import RemoteFile
    from lazyimg._io.remote_http import _Plain

    path = _write(http.root, "bold.nii")
    want = nib_array(path)
    http.moved["old.nii"] = "bold.nii"
    for name in ("bold.nii", "old.nii"):
        img = lazyimg.load(http.url(name), storage_options=options)
        direct = RemoteFile(img.source.files[0])._direct
        assert isinstance(direct, _Plain) == (options is None)
        assert_same(img.slicecopy[..., 4:9], want[..., 4:9])
        assert_same(np.asarray(img.data[:, 3].compute()), want[:, 3])


def test_s3_nii_values_and_requests(s3: dict, tmp_path: Path) -> None:
    path = _write(tmp_path, "bold.nii", scaled=True)
    url = s3["put"](path, "sub-01/func/bold.nii")
    before = (_remote.requests, _remote.bytes_received)
    img = lazyimg.load(url, storage_options=s3["options"])
    assert (_remote.requests - before[0], _remote.bytes_received - before[1]) == (1, HEAD)
    want = nib_array(path)
    before = _remote.bytes_received
    assert_same(img.slicecopy[..., 3], want[..., 3])
    assert _remote.bytes_received - before == int(np.prod(SHAPE[:3])) * 2
    assert_same(np.asarray(img.data[..., 10:20].compute()), want[..., 10:20])


def test_missing_and_changed_objects(s3: dict, http: RangeServer, tmp_path: Path) -> None:
    with pytest.raises(ImageNotFoundError, match=f"s3://{s3['bucket']}/nope.nii"):
        lazyimg.load(f"s3://{s3['bucket']}/nope.nii", storage_options=s3["options"])
    with pytest.raises(ImageNotFoundError, match=r"nope\.nii"):
        lazyimg.load(http.url("nope.nii"))
    path = _write(tmp_path, "bold.nii")
    url = s3["put"](path)
    img = lazyimg.load(url, storage_options=s3["options"])
    other = _write(tmp_path, "other.nii", scaled=True)
    s3["put"](other, "bold.nii")  # replaced after load
    with pytest.raises(FileChangedError, match="changed after it was opened"):
        img.slicecopy[..., 0]
    served = _write(http.root, "b.nii")
    himg = lazyimg.load(http.url("b.nii"))
    shutil.copy(other, served)
    with pytest.raises(FileChangedError):
        himg.slicecopy[..., 0]


def test_errors_access_ranges_retries(http: RangeServer) -> None:
    _write(http.root, "bold.nii")
    http.denied.add("bold.nii")
    with pytest.raises(LazyImgError, match=r"access was denied.*storage_options"):
        lazyimg.load(http.url("bold.nii"))
    http.denied.clear()
    http.fail_next = 2  # transient 503s: retried with backoff
    img = lazyimg.load(http.url("bold.nii"))
    http.ranges = False
    with pytest.raises(LazyImgError, match="Range"):
        img.slicecopy[..., 1]
    http.ranges = True
    http.fail_next = 100  # a server that keeps failing: a clear error naming the URL
    with pytest.raises(LazyImgError, match=r"bold\.nii.*could not"):
        img.slicecopy[..., 1]
    http.fail_next = 0


def test_missing_filesystem_names_the_extra() -> None:
    import importlib.util

    if importlib.util.find_spec("gcsfs") is None:
        with pytest.raises(LazyImgError, match=r'gs://b/x\.nii: .*pip install "lazyimg\[gcs\]"'):
            lazyimg.load("gs://b/x.nii")
    with pytest.raises(LazyImgError, match=r"nosuchproto://b/x\.nii: cannot open"):
        lazyimg.load("nosuchproto://b/x.nii")


def test_secrets_never_shown(s3: dict, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import logging

    caplog.set_level(logging.DEBUG)
    path = _write(tmp_path, "bold.nii")
    url = s3["put"](path)
    img = lazyimg.load(url, storage_options=s3["options"])
    seen = [repr(img), img._repr_html_(), str(img.path), repr(img.source)]
    seen += [str(k) for k in img.data.dask]
    s3["client"].delete_object(Bucket=s3["bucket"], Key="bold.nii")
    for action in (
        lambda: img.slicecopy[..., 0],
        lambda: lazyimg.load(url, storage_options=s3["options"]),
    ):
        with pytest.raises(LazyImgError) as info:
            action()
        seen.append(str(info.value))
    seen += [r.getMessage() for r in caplog.records]
    assert not [s for s in seen if SECRET in s]
    assert any(url in s for s in seen)


def test_url_with_credentials_is_redacted() -> None:
    assert _remote.redact("https://user:pw@host/a.nii?sig=abc") == "https://host/a.nii"
