"""Compressed-image benchmark: lazyimg on a ``.nii.gz`` against nibabel, naive dask and the
decompressors themselves.

Builds a 4D int16 fMRI-like NIfTI-1 (default 96x96x64x600, ~700 MB) stored as one gzip
stream at level 6, keeps it in page cache, and prints from one run:

* sequential decompression limits: stdlib zlib, isal, rapidgzip (building its index, and
  with a saved index), indexed_gzip (nibabel's opener) building its index, and lazyimg's
  own inflating from a saved index;
* nibabel: full load (``np.asarray(dataobj)``), ``get_fdata().mean(-1)``, the temporal
  mean volume by volume, one volume from the end in a fresh process;
* naive ``da.from_array(img.dataobj)`` temporal mean;
* lazyimg: temporal mean first pass (no index: cold), second pass in a new process
  (saved index), one volume from the end in a new process (saved index);

then checks the targets of issue 4 (PASS/MISS with the ratio). Every measurement runs in
a child process (see ``_measure.py``); "fresh" ones in a new process per repeat.

Run ``python benchmarks/bench_gzip.py [--shape 96 96 64 600] [--repeat 3] [--keep DIR]``.
"""

from __future__ import annotations

import argparse
import gzip
import math
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import Measurement, fmt_bytes, fmt_ratio, fmt_time, run, table, warm

from lazyimg._io.gzip import build as _gzbuild
from lazyimg.testing import write_fmri

NAIVE_VOLUMES = 114  # volumes per chunk of the naive dask peer (~128 MiB)

WARM_DASK = "import dask.array as da\nda.zeros(2, chunks=1).sum().compute()\n"
CPU = (
    "import resource, time\n"
    "def _cpu():\n"
    "    r = resource.getrusage(resource.RUSAGE_SELF)\n"
    "    return r.ru_utime + r.ru_stime\n"
)


def make_file(folder: Path, shape: tuple[int, ...]) -> Path:
    """The test image as one gzip stream at level 6 (reused if already there)."""
    gz = folder / ("bold_" + "x".join(map(str, shape)) + ".nii.gz")
    if gz.exists():
        return gz
    plain = write_fmri(folder / "bold_plain.nii", shape)
    with open(plain, "rb") as src, gzip.GzipFile(gz, "wb", compresslevel=6, mtime=0) as dst:
        shutil.copyfileobj(src, dst, 16 * 2**20)
    plain.unlink()
    return gz


def stream_code(kind: str) -> str:
    """Measured source: decompress the whole file once, output discarded; result = bytes."""
    if kind in ("zlib", "isal"):
        lib = "zlib" if kind == "zlib" else "isal.isal_zlib"
        return (
            f"import {lib} as lib\n"
            "d = lib.decompressobj(31)\n"
            "n = 0\n"
            "with open(f, 'rb', buffering=0) as fh:\n"
            "    while block := fh.read(4 * 2**20):\n"
            "        n += len(d.decompress(block))\n"
            "result = n\n"
        )
    return (
        "buf = bytearray(16 * 2**20)\n"
        "n = 0\n"
        "while k := stream.readinto(buf):\n"
        "    n += k\n"
        "stream.close()\n"
        "result = n\n"
    )


@dataclass
class Job:
    name: str
    setup: str
    code: str
    fresh: bool = True
    repeat: int | None = None
    env: dict[str, str] | None = None


def measure(job: Job, repeat: int) -> Measurement:
    n = job.repeat or repeat
    if job.fresh:
        return run(job.code, job.setup, repeat=n, fresh=True, env=job.env, timeout=900)
    return run(job.code, job.setup, repeat=n, warmup=1, env=job.env, timeout=900)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shape", type=int, nargs=4, default=(96, 96, 64, 600))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--keep", type=Path, help="folder to keep (and reuse) the test file in")
    ap.add_argument("--quick", action="store_true", help="skip the slowest nibabel peers")
    args = ap.parse_args()
    shape = tuple(args.shape)
    folder = args.keep or Path(tempfile.mkdtemp(prefix="lazyimg-bench-gzip-"))
    folder.mkdir(parents=True, exist_ok=True)
    print(f"building {'x'.join(map(str, shape))} int16 .nii.gz (gzip level 6) in {folder} ...")
    f = make_file(folder, shape)
    nbytes = math.prod(shape) * 2 + 352
    print(f"  {fmt_bytes(nbytes)} uncompressed, {fmt_bytes(f.stat().st_size)} compressed")
    warm(f)

    cold_cache, warm_cache = folder / "cache-cold", folder / "cache-warm"
    shutil.rmtree(warm_cache, ignore_errors=True)
    os.environ["LAZYIMG_CACHE_DIR"] = str(warm_cache)
    index = _gzbuild.build_index(f)  # the saved index of the "new process" candidates
    (folder / "index.gzidx").write_bytes(index.payload)  # GZIDX: rapidgzip imports it
    cores = len(os.sched_getaffinity(0))
    print(f"  saved index: {len(index.upos)} seek points, {fmt_bytes(len(index.payload))}")

    pre = f"f = {str(f)!r}\n"
    lazy = (
        pre
        + WARM_DASK
        + "import numpy as np\nimport lazyimg\nimport lazyimg._io.gzip.reader, rapidgzip\n"
    )
    nibl = pre + "import numpy as np\nimport nibabel as nib\n"
    cold_env = {"LAZYIMG_CACHE_DIR": str(cold_cache)}
    warm_env = {"LAZYIMG_CACHE_DIR": str(warm_cache)}
    wipe = f"import shutil\nshutil.rmtree({str(cold_cache)!r}, ignore_errors=True)\n"
    rgz = pre + "import rapidgzip\n"
    limits = [
        Job("stdlib zlib (1 stream)", pre, stream_code("zlib"), fresh=False),
        Job("isal (1 stream)", pre, stream_code("isal"), fresh=False),
        Job(
            f"rapidgzip {cores} threads, building index",
            rgz + f"stream = rapidgzip.RapidgzipFile(f, parallelization={cores})\n",
            stream_code("rapidgzip"),
        ),
        Job(
            "rapidgzip 1 thread, building index",
            rgz + "stream = rapidgzip.RapidgzipFile(f, parallelization=1)\n",
            stream_code("rapidgzip"),
        ),
        Job(
            f"rapidgzip {cores} threads, saved index",
            rgz
            + f"stream = rapidgzip.RapidgzipFile(f, parallelization={cores})\n"
            + f"stream.import_index({str(folder / 'index.gzidx')!r})\n",
            stream_code("rapidgzip"),
        ),
        Job(
            f"lazyimg inflate from seek points ({cores} threads)",
            pre
            + "import numpy as np\nfrom lazyimg._io.gzip import reader as _gzip\nfrom lazyimg._io.formats import FileId\n"
            + "r = _gzip.GzipReader(FileId.of(f))\n"
            + "buf = np.empty(r.index.uncompressed_size, np.uint8)\nbuf[::4096] = 0\n",
            "r.read_into(memoryview(buf), 0)\nresult = len(buf)\n",
            fresh=False,
            env=warm_env,
        ),
    ]
    if not args.quick:
        limits.append(
            Job(
                "indexed_gzip, building index (nibabel's opener)",
                pre + "from indexed_gzip import IndexedGzipFile\nstream = IndexedGzipFile(f)\n",
                stream_code("indexed_gzip"),
                repeat=1,
            )
        )
    mean_nib = "out = nib.load(f).get_fdata().mean(-1)\nresult = out\n"
    jobs = {
        "nib full load": Job(
            "nib np.asarray(dataobj) (full load)",
            nibl,
            "out = np.asarray(nib.load(f).dataobj)\nresult = out[..., -1]\n",
            repeat=1,
        ),
        "nib mean": Job("nib get_fdata().mean(-1)", nibl, mean_nib, repeat=1),
        "nib vbv": Job(
            "nib volume by volume mean",
            nibl,
            "img = nib.load(f)\nacc = np.zeros(img.shape[:3])\n"
            "for t in range(img.shape[3]):\n    acc += img.dataobj[..., t]\n"
            "result = acc / img.shape[3]\n",
            repeat=1,
        ),
        "naive": Job(
            f"naive da.from_array(dataobj) mean ({NAIVE_VOLUMES}-vol)",
            nibl + WARM_DASK,
            f"x = da.from_array(nib.load(f).dataobj, chunks=(-1, -1, -1, {NAIVE_VOLUMES}))\n"
            "out = x.mean(-1).compute(scheduler='threads')\nresult = out\n",
            repeat=1,
        ),
        "lazy cold": Job(
            "lazyimg mean, 1st pass (cold, no index)",
            wipe + lazy + CPU,
            "c0, t0 = _cpu(), time.perf_counter()\n"
            "out = lazyimg.load(f).data.mean(-1).compute(scheduler='threads')\n"
            "cores = (_cpu() - c0) / (time.perf_counter() - t0)\nresult = out\n",
            env=cold_env,
        ),
        "lazy warm": Job(
            "lazyimg mean, 2nd pass (new process, saved index)",
            lazy + CPU,
            "c0, t0 = _cpu(), time.perf_counter()\n"
            "out = lazyimg.load(f).data.mean(-1).compute(scheduler='threads')\n"
            "result = (_cpu() - c0) / (time.perf_counter() - t0)\n",
            env=warm_env,
        ),
        "nib last": Job(
            "nib last volume (new process)",
            nibl,
            "out = nib.load(f).dataobj[..., -1]\nresult = out\n",
            repeat=2,
        ),
        "lazy last": Job(
            "lazyimg last volume (new process, saved index)",
            lazy,
            "out = lazyimg.load(f).slicecopy[..., -1]\nresult = out\n",
            env=warm_env,
        ),
        "lazy mid": Job(
            "lazyimg middle volume (new process, saved index)",
            lazy,
            f"out = lazyimg.load(f).slicecopy[..., {shape[3] // 2}]\nresult = out\n",
            env=warm_env,
        ),
        "lazy zslice": Job(
            "lazyimg z-slice across time (saved index)",
            lazy + "img = lazyimg.load(f)\n",
            f"out = img.slicecopy[:, :, {shape[2] // 2}, :]\nresult = out\n",
            fresh=False,
            env=warm_env,
        ),
    }
    if args.quick:
        del jobs["nib vbv"], jobs["naive"], jobs["nib full load"]

    print("measuring decompression limits ...")
    rows = []
    for job in limits:
        m = measure(job, args.repeat)
        rate = nbytes / m.seconds / 1e6
        rows.append([job.name, fmt_time(m.seconds), f"{rate:,.0f} MB/s", fmt_bytes(m.peak_anon)])
    print(table(["decompressor", "time", "output rate", "peak anon"], rows, "\n== Limits"))

    got: dict[str, Measurement] = {}
    for key, job in jobs.items():
        print(f"measuring {job.name} ...", flush=True)
        got[key] = measure(job, args.repeat)
    ref = got["nib mean"]
    rows = []
    for key, job in jobs.items():
        m = got[key]
        rows.append(
            [
                job.name,
                fmt_time(m.seconds),
                fmt_time(m.best),
                fmt_ratio(m.seconds, ref.seconds),
                fmt_bytes(m.peak_anon),
                fmt_bytes(m.peak_rss),
                len(m.samples),
            ]
        )
    heads = ["candidate", "median", "best", "/nib mean", "peak anon", "peak RSS", "n"]
    print(table(heads, rows, "\n== Operations"))

    cold, hot = got["lazy cold"], got["lazy warm"]
    lz_last, nib_last = got["lazy last"], got["nib last"]
    lines = [
        (
            "mean 1st pass (cold) <= 0.5x nib get_fdata().mean(-1)",
            cold.seconds <= 0.5 * ref.seconds,
            f"{fmt_ratio(cold.seconds, ref.seconds)} ({fmt_time(cold.seconds)} vs "
            f"{fmt_time(ref.seconds)})",
        ),
        (
            "mean 1st pass peak memory <= 20% of get_fdata's",
            cold.peak_anon <= 0.2 * ref.peak_anon,
            f"{cold.peak_anon / max(ref.peak_anon, 1):.0%} ({fmt_bytes(cold.peak_anon)} vs "
            f"{fmt_bytes(ref.peak_anon)})",
        ),
        (
            "mean 2nd pass (new process, saved index) <= 0.3x nib",
            hot.seconds <= 0.3 * ref.seconds,
            f"{fmt_ratio(hot.seconds, ref.seconds)} ({fmt_time(hot.seconds)})",
        ),
        (
            "last volume (new process, saved index) <= 0.05x nib",
            lz_last.seconds <= 0.05 * nib_last.seconds,
            f"{fmt_ratio(lz_last.seconds, nib_last.seconds)} ({fmt_time(lz_last.seconds)} vs "
            f"{fmt_time(nib_last.seconds)})",
        ),
        (
            "(extra) 2nd pass uses more than one core (CPU time / wall)",
            isinstance(hot.checksum, float) and hot.checksum > 1.2,
            f"{hot.checksum:.2f} cores" if isinstance(hot.checksum, float) else "-",
        ),
    ]
    for what, a, b in [
        ("(extra) 1st-pass mean equals nibabel's", cold.checksum, ref.checksum),
        ("(extra) last volume equals nibabel's", lz_last.checksum, nib_last.checksum),
    ]:
        same = isinstance(a, float) and isinstance(b, float) and math.isclose(a, b, rel_tol=1e-9)
        lines.append((what, same, f"checksums {a} / {b}"))
    rows = [["PASS" if ok else "MISS", what, detail] for what, ok, detail in lines]
    print(table(["", "target", "measured"], rows, "\n== Targets (issue 4, Benchmark)"))
    if not args.keep:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
