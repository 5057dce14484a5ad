"""Start-up, the everyday file and many small files: lazyimg against nibabel, fresh processes.

Every row runs its command in a new Python process (median of ``--repeat``
runs) and reports wall time and the process's peak resident memory
(``ru_maxrss`` of that child alone, via ``os.wait4``), so imports, pools and
caches are paid as a user pays them. Rows (issue 12):

* ``import lazyimg`` vs ``import nibabel``; ``lazyimg --help`` (absolute);
  ``lazyimg info f.nii.gz`` vs ``nib-ls f.nii.gz``.
* ``lazyimg reduce --op tsnr`` on a 64x64x32x200 int16 ``.nii.gz`` (cold: no
  saved index) vs a 4-line nibabel script, both with imports and the output
  written; the same with ``--op mean`` on the uncompressed ``.nii``.
* in one fresh process each: ``lazyimg.load`` vs ``nib.load`` over ``--files``
  small ``.nii.gz`` files; a per-subject temporal mean over them;
  ``xr.open_mfdataset(..., engine="lazyimg")``; the first
  ``img.data[..., k].compute()`` vs ``img.slicecopy[..., k]``.

* with ``--big``: a temporal mean of a 354 MB int16 ``.nii`` (96x96x64x300, in
  page cache), the first compute in a fresh process (imports not timed):
  numpy on nibabel's memmap, ``img.data.mean(-1).compute()`` as dask
  defaults (it imports ``distributed`` when installed, to look for a Client),
  and the same with ``scheduler=dask.threaded.get`` (no such look-up).

lazyimg is byte-compiled first (``compileall``), as an installed package is;
with ``PYTHONDONTWRITEBYTECODE`` set, its modules would otherwise be compiled
again in every process, which no installed package pays.

Run it on a quiet machine (nothing else timing or testing)::

    python benchmarks/bench_startup.py [--files 1000] [--big]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NIB_TSNR = """import sys, nibabel as nib, numpy as np
img = nib.load(sys.argv[1]); d = img.get_fdata()
m, s = d.mean(-1), d.std(-1)
nib.save(nib.Nifti1Image(np.divide(m, s, out=np.zeros_like(m), where=s > 0).astype("float32"), img.affine), sys.argv[2])
"""
NIB_MEAN = """import sys, nibabel as nib, numpy as np
img = nib.load(sys.argv[1])
nib.save(nib.Nifti1Image(img.get_fdata().mean(-1).astype("float32"), img.affine), sys.argv[2])
"""
INNER = """import sys, time, glob
paths = sorted(glob.glob(sys.argv[2] + "/s*.nii.gz"))
kind = sys.argv[1]
t = time.perf_counter()
if kind == "lazyimg-load":
    import lazyimg
    for p in paths: lazyimg.load(p)
elif kind == "nib-load":
    import nibabel as nib
    for p in paths: nib.load(p)
elif kind == "lazyimg-mean":
    import lazyimg
    for p in paths: lazyimg.load(p, dtype="float64").slicecopy[...].mean(-1)
elif kind == "nib-mean":
    import nibabel as nib
    for p in paths: nib.load(p).get_fdata().mean(-1)
elif kind == "mfdataset":
    import xarray as xr
    ds = xr.open_mfdataset(paths, engine="lazyimg", combine="nested", concat_dim="subject")
elif kind.startswith("big-"):  # imports above are not timed: the first compute is
    import nibabel as nib, numpy as np
    if kind != "big-numpy":
        import dask.array, dask.threaded, lazyimg
    t = time.perf_counter()
    if kind == "big-numpy":
        np.asarray(nib.load(sys.argv[3]).dataobj).mean(-1)
    elif kind == "big-lazyimg":
        lazyimg.load(sys.argv[3]).data.mean(-1).compute()
    else:
        lazyimg.load(sys.argv[3]).data.mean(-1).compute(scheduler=dask.threaded.get)
    print(f"{time.perf_counter() - t:.6f}", "distributed" in sys.modules, file=sys.stderr)
elif kind == "first-compute":
    import lazyimg
    img = lazyimg.load(sys.argv[3]); x = img.data[..., 5]
    t = time.perf_counter(); x.compute(); first = time.perf_counter() - t
    t = time.perf_counter(); img.slicecopy[..., 5]; copy = time.perf_counter() - t
    print(f"{first - copy:.6f}"); raise SystemExit
print(f"{time.perf_counter() - t:.6f}")
"""


def _run(cmd: list[str]) -> tuple[float, int]:
    """(wall seconds, peak RSS bytes) of one fresh process.

    The peak comes from ``/usr/bin/time -f %M``: the ``ru_maxrss`` of a child of
    this (large) Python process would carry the parent's over ``exec``.
    """
    timer = ["/usr/bin/time", "-f", "%M"] if os.path.exists("/usr/bin/time") else []
    t = time.perf_counter()
    proc = subprocess.run(
        [*timer, *cmd], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{proc.stderr}")
    last = proc.stderr.strip().splitlines()[-1] if timer else "0"
    return wall, int(last) * 1024


def _median(cmd: list[str], repeat: int, before: object = None) -> tuple[float, int]:
    runs = []
    for _ in range(repeat):
        if callable(before):
            before()
        runs.append(_run(cmd))
    return statistics.median(r[0] for r in runs), max(r[1] for r in runs)


def _inner(args: list[str], repeat: int) -> float:
    out = [
        float(
            subprocess.run(
                [sys.executable, "-c", INNER, *args], capture_output=True, text=True, check=True
            ).stdout
        )
        for _ in range(repeat)
    ]
    return statistics.median(out)


def _row(name: str, ours: tuple[float, int], peer: tuple[float, int] | None, target: str) -> None:
    ratio = f"{ours[0] / peer[0]:.2f}x time" if peer else "-"
    mem = f"{ours[1] / peer[1]:.2f}x mem" if peer and ours[1] and peer[1] else ""
    peer_s = f"{peer[0]:.3f} s {peer[1] / 2**20:.0f} MiB" if peer else "-"
    print(
        f"{name:<44} {ours[0]:8.3f} s {ours[1] / 2**20:5.0f} MiB | {peer_s:<22} | {ratio} {mem}  (target {target})"
    )


def _big_mean(work: Path, repeat: int) -> None:
    """Fresh-process temporal mean of a 354 MB .nii: lazyimg both ways against numpy's memmap."""
    from lazyimg.testing import write_fmri

    big = write_fmri(work / "big.nii", shape=(96, 96, 64, 300))
    with open(big, "rb") as f:  # into page cache, as every candidate then reads it
        while f.read(64 << 20):
            pass
    got = {}
    for kind in ("big-numpy", "big-lazyimg", "big-lazyimg-threads"):
        runs = []
        for _ in range(repeat):
            proc = subprocess.run(
                [sys.executable, "-c", INNER, kind, str(work), str(big)],
                capture_output=True,
                text=True,
                check=True,
            )
            seconds, imported = proc.stderr.split()[-2:]
            runs.append(float(seconds))
        got[kind] = (statistics.median(runs), imported == "True")
    peer = got["big-numpy"][0]
    print(
        f"{'temporal mean 354 MB .nii, fresh process':<44} numpy on nibabel's memmap {peer:.3f} s"
    )
    for kind, label in (
        ("big-lazyimg", "  img.data.mean(-1).compute()"),
        ("big-lazyimg-threads", "  ... scheduler=dask.threaded.get"),
    ):
        seconds, imported = got[kind]
        note = "imports distributed" if imported else "no distributed import"
        print(
            f"{label:<44} {seconds:8.3f} s | {seconds / peer:.2f}x memmap ({note})  (target <= 1.3x)"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=200, help="small .nii.gz files (issue: 1000)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument(
        "--big", action="store_true", help="also the 354 MB .nii temporal mean (writes 354 MB)"
    )
    args = ap.parse_args()
    py = sys.executable
    import compileall

    import lazyimg

    compileall.compile_dir(os.path.dirname(lazyimg.__file__), quiet=1)
    lazy = [py, "-m", "lazyimg"]
    work = Path(tempfile.mkdtemp(prefix="lazyimg-bench-startup-"))
    cache = work / "cache"
    env_cache = {"LAZYIMG_CACHE_DIR": str(cache)}
    os.environ.update(env_cache)
    try:
        import nibabel as nib
        import numpy as np

        from lazyimg.testing import write_fmri

        gz = write_fmri(work / "bold.nii.gz", shape=(64, 64, 32, 200))
        raw = write_fmri(work / "bold.nii", shape=(64, 64, 32, 200))
        small = np.random.default_rng(0).integers(0, 4000, (64, 64, 32, 8)).astype("int16")
        for i in range(args.files):
            nib.save(nib.Nifti1Image(small, np.eye(4)), work / f"s{i:05d}.nii.gz")
        (work / "nib_tsnr.py").write_text(NIB_TSNR)
        (work / "nib_mean.py").write_text(NIB_MEAN)
        nib_ls = shutil.which("nib-ls") or "nib-ls"
        r = args.repeat
        print(f"lazyimg start-up, everyday and many-files benchmark ({r} fresh runs, median)")
        _row(
            "import lazyimg / import nibabel",
            _median([py, "-c", "import lazyimg"], r),
            _median([py, "-c", "import nibabel"], r),
            "<= 1.5x",
        )
        _row("lazyimg --help", _median([*lazy, "--help"], r), None, "< 0.3 s")
        _row(
            "lazyimg info f.nii.gz / nib-ls",
            _median([*lazy, "info", str(gz)], r),
            _median([nib_ls, str(gz)], r),
            "<= 1.2x",
        )
        wipe = lambda: shutil.rmtree(cache, ignore_errors=True)  # noqa: E731  cold: no saved index
        _row(
            "reduce --op tsnr .nii.gz / nibabel script",
            _median(
                [
                    *lazy,
                    "reduce",
                    str(gz),
                    "--op",
                    "tsnr",
                    "-o",
                    str(work / "t1.nii.gz"),
                    "--quiet",
                ],
                r,
                wipe,
            ),
            _median([py, str(work / "nib_tsnr.py"), str(gz), str(work / "t2.nii.gz")], r),
            "<= 0.8x time, <= 0.6x mem",
        )
        _row(
            "reduce --op mean .nii / nibabel script",
            _median(
                [*lazy, "reduce", str(raw), "--op", "mean", "-o", str(work / "m1.nii"), "--quiet"],
                r,
            ),
            _median([py, str(work / "nib_mean.py"), str(raw), str(work / "m2.nii")], r),
            "<= 0.8x time, <= 0.6x mem",
        )
        n = args.files
        lo, nl = _inner(["lazyimg-load", str(work)], r), _inner(["nib-load", str(work)], r)
        print(
            f"{'load of ' + str(n) + ' small .nii.gz (in-process)':<44} {lo / n * 1e3:8.2f} ms each | nib.load {nl / n * 1e3:.2f} ms each | {lo / nl:.2f}x  (target <= 0.25x)"
        )
        lm, nm = _inner(["lazyimg-mean", str(work)], r), _inner(["nib-mean", str(work)], r)
        print(
            f"{'per-subject temporal mean, ' + str(n) + ' files':<44} {lm:8.3f} s | nibabel loop {nm:.3f} s | {nm / lm:.2f}x faster  (target >= 2x)"
        )
        mf = _inner(["mfdataset", str(work)], r)  # median: one run varies by +-1 s here
        print(
            f"{'xr.open_mfdataset, ' + str(n) + ' files, engine=lazyimg':<44} {mf:8.3f} s  (target < 10 s at 1,000 files)"
        )
        fc = _inner(["first-compute", str(work), str(raw)], r)
        print(
            f"{'first img.data[..., k].compute() - slicecopy':<44} {fc * 1e3:8.2f} ms  (target <= 1 ms)"
        )
        if args.big:
            _big_mean(work, r)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
