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
import http.client
import math
import multiprocessing as mp
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

import lazyimg
from lazyimg._io import cache as _cache
from lazyimg._io.gzip import index as _gzindex
from lazyimg._io.remote import PART_BYTES
from lazyimg._io.remote_http import THREADS
from lazyimg._rangeserver import RangeServer
from lazyimg.testing import write_fmri

SIZES = {"full": (96, 96, 64, 600), "small": (64, 64, 32, 100)}


def _mb(n: float) -> str:
    return f"{n / 1e6:9.2f} MB"


def _timed(fn: Any) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


class ServerProcess:
    """A :class:`RangeServer` in a process of its own, so that it never waits for
    the client's interpreter lock (nor the client for its): commands go by pipe."""

    def __init__(self, root: Path, latency: float) -> None:
        self._pipe, child = mp.Pipe()
        self._proc = mp.get_context("spawn").Process(
            target=_serve, args=(str(root), latency, child), daemon=True
        )
        self._proc.start()
        self.base = self._pipe.recv()

    def url(self, name: str) -> str:
        return self.base + name

    def _ask(self, what: str) -> Any:
        self._pipe.send(what)
        return self._pipe.recv()

    def reset(self) -> None:
        self._ask("reset")

    @property
    def requests(self) -> int:
        return int(self._ask("requests"))

    @property
    def bytes_sent(self) -> int:
        return int(self._ask("bytes_sent"))

    def stop(self) -> None:
        self._pipe.send("stop")
        self._proc.join(10)


def _serve(root: str, latency: float, pipe: Any) -> None:
    with RangeServer(root, latency=latency) as server:
        pipe.send(server.url(""))
        while (what := pipe.recv()) != "stop":
            pipe.send(server.reset() if what == "reset" else getattr(server, what))


def raw_rate(url: str, size: int, part: int, in_flight: int) -> float:
    """Bytes per second of a minimal client: `in_flight` threads of ``http.client``
    reading ``part``-byte ranges of the whole object straight into one buffer."""
    host, port = url.split("/")[2].split(":")
    path = "/" + url.split("/", 3)[3]
    buf = memoryview(bytearray(size))
    local = threading.local()

    def get(start: int) -> None:
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = http.client.HTTPConnection(host, int(port))
        end = min(size, start + part)
        conn.request("GET", path, headers={"Range": f"bytes={start}-{end - 1}"})
        resp = conn.getresponse()
        done = start
        while done < end:
            n = resp.readinto(buf[done:end])
            if not n:
                raise OSError("short read")
            done += n
        resp.close()

    t0 = time.perf_counter()
    with ThreadPoolExecutor(in_flight) as pool:
        list(pool.map(get, range(0, size, part)))
    return size / (time.perf_counter() - t0)


def _fresh() -> None:
    """As a new process: no open readers, no gzip indexes in memory."""
    _cache.close_all()
    _gzindex._indexes.clear()


def _row(label: str, seconds: float | None, server: Any, extra: str = "") -> None:
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
        srv = ServerProcess(tmp, latency)
        try:
            _measure(srv, tmp, shape, nii, gz)
        finally:
            srv.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _measure(srv: ServerProcess, tmp: Path, shape: tuple[int, ...], nii: int, gz: int) -> None:
    url = srv.url("bold.nii")
    vol_bytes = int(np.prod(shape[:3])) * 2
    print("\nsingle-stream transfer rate (one GET of the whole .nii, for reference)")
    srv.reset()
    one_s, _ = _timed(lambda: urllib.request.urlopen(srv.url("copy.nii")).read())
    _row("urllib GET whole file", one_s, srv, f"{nii / one_s / 1e6:8.1f} MB/s")

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

    img.data[0, 0, 0, :2].compute()  # dask's first compute warmed
    chunk_bytes = math.prod(img.data.chunksize) * img.dtype.itemsize
    threads = len(os.sched_getaffinity(0))  # dask's threaded scheduler: one per core
    in_flight = min(THREADS, threads * math.ceil(chunk_bytes / PART_BYTES))
    print(
        f"\ntemporal mean (.nii) vs the server's raw rate: {in_flight} threads of http.client "
        f"reading {PART_BYTES >> 20} MiB ranges of the whole file into one buffer (what "
        f"lazyimg keeps in flight: {threads} dask threads x {chunk_bytes / 2**20:.0f} MiB "
        f"chunks in {PART_BYTES >> 20} MiB requests, at most {THREADS}); three runs each, "
        "interleaved, medians"
    )
    raws, means = [], []
    for _ in range(3):
        raws.append(raw_rate(srv.url("copy.nii"), nii, PART_BYTES, in_flight))
        srv.reset()
        t, _ = _timed(lambda: img.data.mean(axis=-1).compute())
        means.append(nii / t)
        traffic = (srv.requests, srv.bytes_sent)
    raw, rate = statistics.median(raws), statistics.median(means)
    print(
        f"  {'raw client (medians of ' + ', '.join(f'{r / 1e6:.0f}' for r in raws) + ' MB/s)':<60}"
        f"{raw / 1e6:8.1f} MB/s"
    )
    print(
        f"  {'lazyimg data.mean(axis=-1) (' + ', '.join(f'{r / 1e6:.0f}' for r in means) + ' MB/s)':<60}"
        f"{rate / 1e6:8.1f} MB/s  {traffic[0]} req {_mb(traffic[1])}  = {rate / raw:.2f}x raw"
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
