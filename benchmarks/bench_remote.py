"""Reading an image over HTTP by byte range: lazyimg vs downloading it vs nibabel's URL loading.

Run ``python benchmarks/bench_remote.py`` (``--size small`` for a quick check;
the full size writes a 96x96x64x600 int16 image, ~708 MB, and its ``.nii.gz``).
Both are served on 127.0.0.1 by :class:`lazyimg._rangeserver.RangeServer`,
which adds ``--latency`` seconds (default 0.02) to every request, like a
distant object store, and counts requests and bytes sent. Rows:

* time to the first volume from a fresh ``load`` (lazyimg), against downloading
  the file and then ``nib.load`` + ``dataobj[..., 0]``, and against nibabel's
  ``Nifti1Image.from_url`` (a whole download into memory);
* requests and bytes transferred for one volume, a z-slice through time and a
  voxel's time series (lazyimg), against the file size (the peers);
* the temporal mean's throughput (bytes of the object per second) against the
  server's raw rate for one sequential GET of the whole file (target >= 0.7x);
* for the ``.nii.gz``: the first pass (one streamed download, building the
  seek index) and a deep volume afterwards.

Everything runs in this one process, one after another, so ratios compare like
with like; the machine's load shows in the absolute numbers.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

import lazyimg
from lazyimg._io import cache as _cache
from lazyimg._io.gzip import index as _gzindex
from lazyimg._rangeserver import RangeServer
from lazyimg.testing import write_fmri

SIZES = {"full": (96, 96, 64, 600), "small": (64, 64, 32, 100)}


def _mb(n: float) -> str:
    return f"{n / 1e6:9.2f} MB"


def _timed(fn: Any) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def _fresh() -> None:
    """As a new process: no open readers, no gzip indexes in memory."""
    _cache.close_all()
    _gzindex._indexes.clear()


def _row(label: str, seconds: float | None, server: RangeServer | None, extra: str = "") -> None:
    t = f"{seconds * 1e3:9.1f} ms" if seconds is not None else " " * 12
    traffic = f"{server.requests:6d} req {_mb(server.bytes_sent)}" if server else ""
    print(f"  {label:<46} {t}  {traffic}  {extra}")


def run(size: str, latency: float) -> None:
    shape = SIZES[size]
    tmp = Path(tempfile.mkdtemp(prefix="lazyimg-bench-remote-"))
    try:
        print(f"writing {shape} int16 images into {tmp} ...", file=sys.stderr)
        write_fmri(tmp / "bold.nii", shape, tr=2.0)
        shutil.copy(tmp / "bold.nii", tmp / "copy.nii")
        nib.save(nib.load(tmp / "bold.nii"), tmp / "bold.nii.gz")
        nii, gz = (tmp / "bold.nii").stat().st_size, (tmp / "bold.nii.gz").stat().st_size
        print(f"bold.nii {_mb(nii)}, bold.nii.gz {_mb(gz)}, latency {latency * 1e3:.0f} ms/request")
        with RangeServer(tmp, latency=latency) as srv:
            _measure(srv, tmp, shape, nii, gz)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _measure(srv: RangeServer, tmp: Path, shape: tuple[int, ...], nii: int, gz: int) -> None:
    url = srv.url("bold.nii")
    vol_bytes = int(np.prod(shape[:3])) * 2
    print("\nraw transfer rate (one GET of the whole .nii)")
    srv.reset()
    raw_s, _ = _timed(lambda: urllib.request.urlopen(srv.url("copy.nii")).read())
    raw_rate = nii / raw_s
    _row("urllib GET whole file", raw_s, srv, f"{raw_rate / 1e6:8.1f} MB/s")

    print("\ntime to first volume (.nii; imports warmed by one load of another URL)")
    lazyimg.load(srv.url("copy.nii")).slicecopy[..., 0]
    _fresh()
    srv.reset()
    t, img = _timed(lambda: lazyimg.load(url))
    t2, _ = _timed(lambda: img.slicecopy[..., 0])
    _row("lazyimg load + slicecopy[..., 0]", t + t2, srv, f"(load {t * 1e3:.1f} ms)")

    def download() -> Any:
        with urllib.request.urlopen(url) as r, open(tmp / "dl.nii", "wb") as f:
            shutil.copyfileobj(r, f, 2**22)
        return np.asarray(nib.load(tmp / "dl.nii").dataobj[..., 0])

    srv.reset()
    t_dl, _ = _timed(download)
    _row("download, then nib.load + dataobj[..., 0]", t_dl, srv)
    srv.reset()
    t_url, _ = _timed(lambda: np.asarray(nib.Nifti1Image.from_url(url).dataobj[..., 0]))
    _row("nib.Nifti1Image.from_url + dataobj[..., 0]", t_url, srv)
    print(f"  ratio lazyimg / download: {(t + t2) / t_dl:.3f}x")

    print("\nbytes transferred per access pattern (.nii; peers move the whole file)")
    img = lazyimg.load(url)
    z, n_t = shape[2] // 2, shape[3]
    for label, index, needed in [
        ("one volume [..., k]", (..., n_t // 2), vol_bytes),
        (
            "z-slice through time [:, :, z, :]",
            (slice(None), slice(None), z),
            shape[0] * shape[1] * 2 * n_t,
        ),
        ("voxel series [i, j, k, :]", (shape[0] // 2, shape[1] // 2, z), 2 * n_t),
    ]:
        srv.reset()
        t, _ = _timed(lambda index=index: img.slicecopy[index])
        _row(label, t, srv, f"needed {_mb(needed)}, {srv.bytes_sent / nii:.2%} of the file")

    print("\ntemporal mean (.nii, dask threads; dask's first compute warmed)")
    img.data[0, 0, 0, :2].compute()
    srv.reset()
    t, _ = _timed(lambda: img.data.mean(axis=-1).compute())
    rate = nii / t
    _row(
        "lazyimg data.mean(axis=-1)", t, srv, f"{rate / 1e6:8.1f} MB/s = {rate / raw_rate:.2f}x raw"
    )

    print("\n.nii.gz")
    gurl = srv.url("bold.nii.gz")
    _fresh()
    srv.reset()
    t, gimg = _timed(lambda: lazyimg.load(gurl))
    t2, _ = _timed(lambda: gimg.slicecopy[..., 0])
    _row("load + first volume", t + t2, srv)
    srv.reset()
    t, _ = _timed(lambda: gimg.data.mean(axis=-1).compute())
    _row("first pass: temporal mean (builds the index)", t, srv, f"object {_mb(gz)}")
    _fresh()
    gimg = lazyimg.load(gurl)
    srv.reset()
    t, _ = _timed(lambda: gimg.slicecopy[..., n_t - 3])
    _row("deep volume, saved index", t, srv, f"{srv.bytes_sent / gz:.2%} of the object")
    srv.reset()
    t, _ = _timed(lambda: gimg.slicecopy[shape[0] // 2, shape[1] // 2, z, :])
    _row("voxel series, saved index", t, srv, f"{srv.bytes_sent / gz:.2%} of the object")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="full")
    parser.add_argument("--latency", type=float, default=0.02, help="seconds per request")
    args = parser.parse_args()
    run(args.size, args.latency)


if __name__ == "__main__":
    main()
