"""Voxelwise temporal z-score of a ~700 MB 4D image, saved as float32 NIfTI: lazyimg vs nibabel.

Run ``python benchmarks/bench_zscore.py`` (about two minutes on 2 cores). It
writes a 96x96x64x600 int16 NIfTI (~708 MB) into a temporary directory, reads
it once so that it sits in page cache, and then measures, each run in a fresh
child process (:mod:`_measure`), the whole job from opening the file to the
saved result:

nibabel
    ``get_fdata()``, numpy's ``mean``/``std`` over time, the z-score, and
    ``Nifti1Image(z.astype(float32)).to_filename`` -- the usual script.
lazyimg
    ``lazyimg.xarray.open_dataarray(dtype="float32")``; the temporal mean and
    standard deviation computed first (two small 3D arrays, one pass over the
    file); then ``(da - mean) / std`` streamed to disk by ``lazyimg.write.save``
    chunk by chunk (a second pass), which also ``fsync``\\ s the file before
    renaming it into place -- nibabel's writer does not.

Reported per candidate: median wall time over the runs, peak resident memory
above the level before the job (the kernel's exact high-water mark; it counts
file pages nibabel maps in) and peak anonymous memory (sampled). Targets:
lazyimg's peak memory (both measures) at most 25% of nibabel's, and its time no
worse than nibabel's. The script also checks that both results agree.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _measure import Measurement, fmt_bytes, fmt_ratio, fmt_time, run, table, warm

SHAPE = (96, 96, 64, 600)

SETUP = """
import numpy as np
src, out = {src!r}, {out!r}
"""

NIBABEL = """
import nibabel as nib
img = nib.load(src)
data = img.get_fdata()
z = (data - data.mean(axis=-1, keepdims=True)) / data.std(axis=-1, keepdims=True)
nib.Nifti1Image(z.astype(np.float32), img.affine, img.header, dtype=np.float32).to_filename(out)
"""

LAZYIMG = """
import dask
import lazyimg.xarray
from lazyimg.write import save
da = lazyimg.xarray.open_dataarray(src, dtype="float32")
mean, std = dask.compute(da.mean("time", skipna=False), da.std("time", skipna=False))
save(((da - mean) / std).astype("float32"), out)
"""

CANDIDATES = {"nibabel": NIBABEL, "lazyimg": LAZYIMG}

CHECK = """
import numpy as np
import nibabel as nib
a = np.asarray(nib.load({a!r}).dataobj)
b = np.asarray(nib.load({b!r}).dataobj)
result = float(np.max(np.abs(a - b)))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="fresh runs per candidate")
    parser.add_argument("--dir", default=None, help="directory for the files (default: a temp dir)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        src = os.path.join(tmp, "bold.nii")
        outs = {
            "nibabel": os.path.join(tmp, "z_nib.nii"),
            "lazyimg": os.path.join(tmp, "z_lazy.nii"),
        }
        print(f"writing {SHAPE} int16 to {src} ...", flush=True)
        run(f"from lazyimg.testing import write_fmri; write_fmri({src!r}, {SHAPE!r}, tr=2.0)")
        size = warm(src)
        print(f"input {fmt_bytes(size)}, output {fmt_bytes(size * 2)} (float32)", flush=True)

        # candidates take turns, one fresh process per run, so that a busy
        # moment of the machine does not fall on one candidate only
        results = {name: Measurement() for name in CANDIDATES}
        for r in range(args.repeat):
            for name, code in CANDIDATES.items():
                setup = SETUP.format(src=src, out=outs[name])
                m = run(code, setup, timeout=600)
                results[name] = results[name] + m
                print(
                    f"  run {r + 1} {name}: {fmt_time(m.seconds)}, "
                    f"peak RSS {fmt_bytes(m.peak_rss)}",
                    flush=True,
                )

        diff = run(CHECK.format(a=outs["nibabel"], b=outs["lazyimg"])).checksum

    nib_m, lazy_m = results["nibabel"], results["lazyimg"]
    rows = [
        [
            name,
            fmt_time(m.seconds),
            fmt_time(m.best),
            fmt_bytes(m.peak_rss),
            fmt_bytes(m.peak_anon),
            fmt_ratio(m.seconds, nib_m.seconds),
            fmt_ratio(m.peak_rss, nib_m.peak_rss),
            fmt_ratio(m.peak_anon, nib_m.peak_anon),
        ]
        for name, m in results.items()
    ]
    headers = ["", "median", "best", "peak RSS", "peak anon", "time/nib", "RSS/nib", "anon/nib"]
    print()
    print(table(headers, rows, title=f"z-score of {SHAPE} int16, saved as float32 NIfTI"))
    print(f"\nlargest difference between the two results: {diff:.3g} (float32 vs float64 maths)")

    rss_ok = lazy_m.peak_rss is not None and lazy_m.peak_rss <= 0.25 * (nib_m.peak_rss or 0)
    anon_ok = lazy_m.peak_anon <= 0.25 * nib_m.peak_anon
    time_ok = lazy_m.seconds <= nib_m.seconds
    checks = [
        ("peak RSS <= 25% of nibabel's", rss_ok),
        ("peak anonymous memory <= 25% of nibabel's", anon_ok),
        ("time <= nibabel's (median)", time_ok),
        ("results agree (max |diff| < 1e-3)", isinstance(diff, float) and diff < 1e-3),
    ]
    for label, ok in checks:
        print(f"{'PASS' if ok else 'MISS'}  {label}")
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    raise SystemExit(main())
