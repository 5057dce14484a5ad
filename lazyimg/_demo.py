"""``lazyimg demo``: lazyimg's point, end to end, on a generated fMRI-like run.

The demo writes a deterministic 4D image into a temporary directory, opens it
lazily, reads one volume (reporting bytes read against the file size),
computes a temporal SNR map with a progress bar, saves it as NIfTI, and runs
the same job the usual way (``nib.load().get_fdata()``) for comparison. Each
job runs in a fresh Python process so its peak memory is its own.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from lazyimg._display.text import human_bytes

SIZES = {
    "small": (32, 32, 16, 40),
    "medium": (64, 64, 32, 200),
    "large": (96, 96, 64, 400),
}

# Peak memory of the job's own process. ru_maxrss would carry over the high-water mark
# of the parent across exec on Linux, so the address space's own VmHWM is read instead.
_PEAK = """
import resource
def peak_kib():
    try:
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) for l in f if l.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
"""

_LAZYIMG_JOB = (
    _PEAK
    + """
import json, sys, time
import dask.array, dask.diagnostics, nibabel, lazyimg
from lazyimg._demo import tsnr_job
src, out, progress = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
base = peak_kib()
t0 = time.perf_counter()
tsnr_job(src, out, progress=progress)
dt = time.perf_counter() - t0
peak = peak_kib() - base
print(json.dumps({"seconds": dt, "peak_kib": peak}))
"""
)

_NIBABEL_JOB = (
    _PEAK
    + """
import json, sys, time
import dask.array, dask.diagnostics, lazyimg
import nibabel as nib, numpy as np
src, out = sys.argv[1], sys.argv[2]
base = peak_kib()
t0 = time.perf_counter()
img = nib.load(src)
data = img.get_fdata()
mean, std = data.mean(-1), data.std(-1)
tsnr = np.divide(mean, std, out=np.zeros_like(mean), where=std > 0).astype("float32")
nib.save(nib.Nifti1Image(tsnr, img.affine), out)
dt = time.perf_counter() - t0
peak = peak_kib() - base
print(json.dumps({"seconds": dt, "peak_kib": peak}))
"""
)


def tsnr_job(src: str, out: str, *, progress: bool = False) -> None:
    """Temporal SNR (mean / std over time) of `src`, streamed chunk by chunk, saved to `out`."""
    import dask
    import dask.array as da

    import lazyimg

    # mean and std each keep a few chunk-sized temporaries per thread: 32 MiB chunks keep
    # that small while staying large enough that dask's task overhead does not show
    with dask.config.set({"array.chunk-size": "32MiB"}):
        img = lazyimg.load(src, dtype="float32")
    x = img.data
    mean, std = x.mean(axis=-1), x.std(axis=-1)
    tsnr = da.where(std > 0, mean / da.where(std > 0, std, 1), 0).astype("float32")
    with _progress(progress), dask.config.set(scheduler="threads"):
        lazyimg.save(tsnr, out, affine=img.affine)


def _progress(show: bool) -> Any:
    import contextlib

    if not show:
        return contextlib.nullcontext()
    from dask.diagnostics import ProgressBar

    return ProgressBar(minimum=0.2, out=sys.stderr)


def _run_job(code: str, *args: str) -> dict[str, float]:
    # stdout carries the job's JSON; stderr (the progress bar, any error) goes to the terminal
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], stdout=subprocess.PIPE, text=True, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError("the demo's job failed (its error is printed above)")
    result: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def run_demo(size: str = "large", keep: str | None = None, out: Any = None) -> int:
    """Run the demo; print to `out` (stdout by default). Returns the exit code."""
    import lazyimg
    from lazyimg._io import files as _files
    from lazyimg.testing import write_fmri

    def say(msg: str = "") -> None:
        print(msg, file=out or sys.stdout, flush=True)

    shape = SIZES[size]
    workdir = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="lazyimg-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        src = workdir / "bold.nii"
        say(f"1. Writing a synthetic fMRI run {shape} int16 to {src} ...")
        t0 = time.perf_counter()
        write_fmri(src, shape, tr=2.0)
        size_b = src.stat().st_size
        say(f"   {human_bytes(size_b)} written in {time.perf_counter() - t0:.1f} s")

        say("\n2. Opening it lazily (header only, no voxels read):")
        t0 = time.perf_counter()
        img = lazyimg.load(src)
        say(f"   {img!r}")
        say(
            f"   opened in {1e3 * (time.perf_counter() - t0):.1f} ms; on-disk order {img.disk_order} "
            f"(last axis slowest), {_count(len(img.chunks[-1]), 'chunk')} of up to "
            f"{_count(max(img.chunks[-1]), 'volume')}"
        )

        k = shape[3] // 2
        before = _files.bytes_read
        t0 = time.perf_counter()
        vol = img.slicecopy[..., k]
        dt = time.perf_counter() - t0
        got = _files.bytes_read - before
        say(
            f"\n3. One volume, img.slicecopy[..., {k}]: {vol.shape} {vol.dtype} in {1e3 * dt:.1f} ms, "
            f"{human_bytes(got)} read of a {human_bytes(size_b)} file ({100 * got / size_b:.2f}%)"
        )

        say("\n4. Temporal SNR map (mean / std over time), streamed chunk by chunk:")
        out_lazy = workdir / "tsnr_lazyimg.nii.gz"
        lazy = _run_job(_LAZYIMG_JOB, str(src), str(out_lazy), "1")
        say(
            f"   lazyimg: {lazy['seconds']:.2f} s, peak memory +{lazy['peak_kib'] / 1024:.0f} MiB "
            f"-> {out_lazy.name}"
        )

        say("\n5. The same job the usual way, nib.load(f).get_fdata():")
        out_nib = workdir / "tsnr_nibabel.nii.gz"
        ref = _run_job(_NIBABEL_JOB, str(src), str(out_nib))
        say(f"   nibabel: {ref['seconds']:.2f} s, peak memory +{ref['peak_kib'] / 1024:.0f} MiB")

        import nibabel as nib
        import numpy as np

        lazy_map: Any = nib.load(out_lazy)
        nib_map: Any = nib.load(out_nib)
        a, b = lazy_map.get_fdata(), nib_map.get_fdata()
        agree = bool(np.allclose(a, b, rtol=1e-4, atol=1e-3))
        mem = lazy["peak_kib"] / max(ref["peak_kib"], 1024)
        say(
            f"\n   maps agree: {agree}; lazyimg needed {mem:.0%} of nibabel's extra memory "
            f"and {lazy['seconds'] / max(ref['seconds'], 1e-3):.2f}x its time."
        )
        say(f"\nFiles kept in {workdir}" if keep else "\nTemporary files removed.")
        return 0 if agree else 1
    finally:
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)


def _count(n: int, noun: str) -> str:
    """``1 chunk``, ``6 chunks``."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
