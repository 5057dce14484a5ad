"""Write the example notebooks from their cell sources and execute them (python notebooks/_build.py).

Keeping notebook sources as plain Python makes them reviewable in diffs. The
committed .ipynb files carry the outputs of one run at full size (pictures
included), so they read well on a website; the test suite re-executes them on
small data (``LAZYIMG_SMALL=1``). ``--no-execute`` writes them without outputs.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).parent

SETUP = """import os, shutil, tempfile
from pathlib import Path
import numpy as np
import lazyimg
from lazyimg.testing import write_fmri

# LAZYIMG_SMALL=1 (set by the test suite) keeps the data tiny.
SMALL = bool(os.environ.get("LAZYIMG_SMALL"))
workdir = Path(tempfile.mkdtemp(prefix="lazyimg-nb-"))  # removed in the last cell
# gzip seek-point indexes of these files go with them, not into your cache
os.environ["LAZYIMG_CACHE_DIR"] = str(workdir / "index-cache")"""

QUICKSTART = [
    new_markdown_cell(
        "# lazyimg quickstart\n\n"
        "Open a 4D image lazily, look at it, slice it, plot it, and use xarray on it. "
        "The data here is generated, so the notebook runs anywhere."
    ),
    new_code_cell(
        SETUP
        + """
shape = (32, 32, 16, 40) if SMALL else (64, 64, 32, 200)
path = write_fmri(workdir / "bold.nii.gz", shape, tr=2.0)
print(path.name, f"{path.stat().st_size / 2**20:.1f} MiB")"""
    ),
    new_markdown_cell(
        "`lazyimg.load` reads the header only. The rich display shows the on-disk order and "
        "the chunk grid: NIfTI stores the last axis slowest, so chunks split only along time."
    ),
    new_code_cell("""img = lazyimg.load(path)
img"""),
    new_code_cell("""print(img.shape, img.dtype, img.disk_order, img.chunks[-1])
img.affine"""),
    new_markdown_cell(
        "`img.slicecopy[...]` reads exactly the bytes an index needs and returns a new array. "
        "`img.data` is a dask array: slicing it builds a graph and reads nothing until computed."
    ),
    new_code_cell("""with lazyimg.count_bytes() as n:
    vol = img.slicecopy[..., 10]
print("one volume:", vol.shape, vol.dtype, f"{n.bytes:,} bytes read (uncompressed)",
      f"of {img.nbytes:,}")
series = img.data[10, 12, 8, :]
series"""),
    new_code_cell("""series.compute()[:10]"""),
    new_markdown_cell(
        "`img.slicer` takes numpy's indices and keeps the affine right (negative steps too); "
        "it stays lazy."
    ),
    new_code_cell("""crop = img.slicer[8:24, 8:24, :, ::2]
crop.shape, crop.affine[:3, 3]"""),
    new_markdown_cell(
        "Three orthogonal views through the centre, in world orientation, reading only "
        "those three planes:"
    ),
    new_code_cell("""%matplotlib inline
fig = img.plot_slices()"""),
    new_markdown_cell(
        "One voxel's time series. In a `.nii.gz` every volume lies behind the ones before it "
        "in the compressed stream, so reaching the voxel in all of them decompresses the whole "
        "file (in an uncompressed `.nii` only the series' own bytes are read):"
    ),
    new_code_cell("""centre = tuple(n // 2 for n in img.shape[:3])
with lazyimg.count_bytes() as n:
    fig = img.plot_timeseries(centre)
print(f"{n.bytes:,} bytes decompressed for the series")"""),
    new_markdown_cell(
        "## xarray\n\nNamed dimensions, time in seconds, metadata in attrs, still lazy."
    ),
    new_code_cell("""da = img.to_xarray()
da"""),
    new_code_cell("""mean_map = da.mean("time")
roi = da.isel(i=slice(10, 14), j=slice(10, 14), k=8).mean(["i", "j"])
roi.compute().values[:5], float(mean_map.max())"""),
    new_code_cell("""shutil.rmtree(workdir)"""),
]

BIGGER = [
    new_markdown_cell(
        "# A bigger-than-comfortable analysis\n\n"
        "Temporal statistics and an ROI time series on a 4D run, streamed chunk by chunk. "
        "We watch this process's memory while it computes: what it needs on top of what it "
        "held before is set by the chunks in flight and their partial results, a fraction of "
        "the image, where `get_fdata()` would first allocate twice the image as float64."
    ),
    new_code_cell(
        SETUP
        + """
import psutil
proc = psutil.Process()
def rss_mib():
    return proc.memory_info().rss / 2**20

shape = (32, 32, 16, 60) if SMALL else (96, 96, 64, 400)
path = write_fmri(workdir / "bold.nii", shape)
print(f"{path.stat().st_size / 2**20:.0f} MiB on disk; process RSS {rss_mib():.0f} MiB")"""
    ),
    new_markdown_cell(
        "Open it as float32 (half the memory of nibabel's float64), in chunks of at most "
        "32 MiB: whole volumes, so each chunk is one contiguous read."
    ),
    new_code_cell("""import dask

dask.config.set({"array.chunk-size": "32MiB"})
img = lazyimg.load(path, dtype="float32")
img"""),
    new_markdown_cell(
        "Temporal mean, standard deviation and tSNR in one pass over the file. The progress "
        "bar is dask's; `ResourceProfiler` samples this process's memory while it runs."
    ),
    new_code_cell("""from dask.diagnostics import ProgressBar, ResourceProfiler

x = img.data
mean, std = x.mean(-1), x.std(-1)
tsnr = mean / dask.array.where(std > 0, std, np.inf)
baseline = rss_mib()
with ProgressBar(), ResourceProfiler(dt=0.05) as prof:
    mean_v, std_v, tsnr_v = dask.compute(mean, std, tsnr)
extra = max(r.mem for r in prof.results) * 1e6 / 2**20 - baseline  # the profiler counts MB
image_mib = img.nbytes / 2**20
print(f"image: {image_mib:.0f} MiB as float32, in {x.numblocks[-1]} chunks")
print(f"memory above the {baseline:.0f} MiB held before: peak +{extra:.0f} MiB "
      f"({extra / image_mib:.0%} of the image); get_fdata() would allocate "
      f"{2 * image_mib:.0f} MiB for its float64 copy alone")"""),
    new_markdown_cell(
        "Where the extra memory goes: each chunk is read, reduced to per-voxel partial sums "
        "(float64, one volume's size each for every statistic) and dropped, and dask combines "
        "the partial sums in a tree. So it grows with the chunks in flight (threads x chunk "
        "size) and with the partial sums waiting to be combined, not with the length of the "
        "run. Very small chunks make many partial sums, very large ones hold more data at "
        "once: tens of MiB per chunk is a good middle."
    ),
    new_markdown_cell(
        "An ROI time series: a 4 x 4 box of voxels in one slice, read without touching the "
        "rest of each volume."
    ),
    new_code_cell("""c = [n // 2 for n in shape[:3]]
with lazyimg.count_bytes() as n:
    roi = img.data[c[0]-2:c[0]+2, c[1]-2:c[1]+2, c[2], :].mean(axis=(0, 1)).compute()
print(f"ROI series of {roi.size} time points: {n.bytes / 2**20:.2f} MiB read "
      f"of {path.stat().st_size / 2**20:.0f} MiB")"""),
    new_code_cell("""%matplotlib inline
import matplotlib.pyplot as plt

fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8), width_ratios=(1, 1.6))
im = left.imshow(tsnr_v[:, :, c[2]].T, origin="lower", cmap="magma")
left.set_title(f"tSNR, slice k = {c[2]}")
left.axis("off")
fig.colorbar(im, ax=left, shrink=0.8)
right.plot(roi)
right.set(title="ROI mean signal", xlabel="volume", ylabel="signal")
fig.tight_layout()"""),
    new_code_cell("""shutil.rmtree(workdir)"""),
]

DISTRIBUTED = [
    new_markdown_cell(
        "# lazyimg on a dask cluster: group tSNR\n\n"
        "lazyimg's graphs carry only file paths and identities (size, mtime, inode and ctime; "
        "for objects in a store, size and ETag), never open files, "
        "so the same lazy arrays run unchanged on `dask.distributed` workers: each worker opens "
        "the files itself and keeps them in a small per-process cache.\n\n"
        "This notebook generates a few small fMRI-like runs, starts a `LocalCluster` with two "
        "worker processes, and computes a group temporal-SNR map (mean / standard deviation "
        "over time, averaged over subjects). On a real cluster the only change is the "
        "`Client(...)` line, provided every worker sees the files at the same paths "
        "(see `docs/distributed.md`)."
    ),
    new_code_cell(
        SETUP
        + """
import nibabel as nib
shape = (32, 32, 16, 40) if SMALL else (64, 64, 32, 120)
n_subjects = 4 if SMALL else 6
paths = [
    write_fmri(workdir / f"sub-{s:02d}_bold.nii.gz", shape, tr=2.0, seed=s)
    for s in range(n_subjects)
]
[p.name for p in paths]"""
    ),
    new_markdown_cell(
        "## A cluster\n\n"
        "Two worker processes with one thread each. The dashboard (served when `bokeh` is "
        "installed) shows the tasks as they run; open the link while the next cells compute."
    ),
    new_code_cell(
        """from dask.distributed import Client, LocalCluster

import logging
import dask

dask.config.set({"temporary-directory": str(workdir)})  # dask's scratch space goes with workdir
cluster = LocalCluster(
    n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
    silence_logs=logging.ERROR,  # no warnings in the notebook when the workers shut down
)
client = Client(cluster)
print("dashboard:", client.dashboard_link)
client"""
    ),
    new_markdown_cell(
        "## Many subjects as one lazy array\n\n"
        "The `lazyimg` xarray engine opens each file's header only; `open_mfdataset` stacks "
        "them along a new `subject` dimension. `chunks={}` keeps lazyimg's disk-aligned chunks "
        "(one slab of volumes per chunk)."
    ),
    new_code_cell(
        """import xarray as xr

ds = xr.open_mfdataset(
    paths, engine="lazyimg", combine="nested", concat_dim="subject", chunks={}
)
bold = ds["image"]
bold"""
    ),
    new_markdown_cell(
        "## Group tSNR\n\n"
        "Nothing has been read yet. `tsnr` is a graph; `.compute()` sends it to the workers, "
        "which read each slab of each file once."
    ),
    new_code_cell(
        """import dask

mean = bold.mean("time")
std = bold.std("time")
tsnr = (mean / std.where(std > 0)).fillna(0.0)
group_tsnr = tsnr.mean("subject")
group_mean = mean.mean("subject")

before = client.run(lazyimg.bytes_read)  # each worker counts its own reads
result, average = dask.compute(group_tsnr, group_mean)  # one pass over the files for both
after = client.run(lazyimg.bytes_read)
read = {w: after[w] - before[w] for w in after}
print("bytes read per worker:", read)
print("total:", sum(read.values()), "bytes; the data:", bold.nbytes, "bytes")
brain = average > 0.5 * float(average.max())
print("group tSNR in the brain: median", round(float(result.where(brain).median()), 1))"""
    ),
    new_code_cell(
        """%matplotlib inline
import matplotlib.pyplot as plt

k = result.sizes["k"] // 2
fig, ax = plt.subplots(figsize=(4, 4))
ax.imshow(result.isel(k=k).T, origin="lower", cmap="magma")
ax.set_title(f"group tSNR, slice k={k}")
ax.axis("off");"""
    ),
    new_markdown_cell(
        "The same numbers from nibabel, subject by subject in this process, as a check:"
    ),
    new_code_cell(
        """def tsnr_nibabel(path):
    data = np.asarray(nib.load(path).dataobj, dtype=np.float64)
    m, s = data.mean(-1), data.std(-1)
    return np.where(s > 0, m / np.where(s > 0, s, 1), 0.0)

check = np.mean([tsnr_nibabel(p) for p in paths], axis=0)
np.testing.assert_allclose(result.values, check, rtol=1e-10)
print("matches nibabel")"""
    ),
    new_markdown_cell(
        "## Slices run on the workers too\n\n"
        "Indexing a lazyimg array builds reads of just the bytes needed; here one voxel's time "
        "series from every subject."
    ),
    new_code_cell(
        """series = bold.isel(i=16, j=16, k=8).compute()
series.shape, series.dtype"""
    ),
    new_markdown_cell(
        "## Writing from the cluster\n\n"
        "`lazyimg.save` streams a lazy result into an uncompressed NIfTI: one task writes the "
        "header and allocates a temporary file, then every worker writes its own regions of it "
        "by path, and the file is renamed into place when complete. On a real cluster the "
        "target directory must be on a file system all workers share."
    ),
    new_code_cell(
        """first = lazyimg.load(paths[0])
out = lazyimg.save(group_tsnr.data.astype("float32"), workdir / "group_tsnr.nii", affine=first.affine)
saved = nib.load(out)
np.testing.assert_allclose(np.asarray(saved.dataobj), result.values.astype("float32"))
out.name, saved.shape, saved.get_data_dtype()"""
    ),
    new_code_cell(
        """client.close()
cluster.close()
shutil.rmtree(workdir)"""
    ),
]


def execute(nb: nbformat.NotebookNode, timeout: int = 900) -> None:
    """Run `nb` in a fresh kernel inside a temporary directory; keep its outputs.

    Streams are merged and carriage returns applied, so a progress bar is stored
    as the one line a reader saw update in place.
    """
    with tempfile.TemporaryDirectory(prefix="lazyimg-nb-run-") as cwd:
        NotebookClient(
            nb,
            timeout=timeout,
            kernel_name="python3",
            coalesce_streams=True,
            record_timing=False,
            resources={"metadata": {"path": cwd}},
        ).execute()


def build(name: str, cells: list, run: bool) -> None:
    nb = new_notebook(cells=cells)
    for number, cell in enumerate(nb.cells):
        cell.id = f"cell-{number:02d}"  # stable ids: rebuilding changes nothing
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    if run:
        execute(nb)
    nbformat.write(nb, HERE / name)


NOTEBOOKS = {
    "01_quickstart.ipynb": QUICKSTART,
    "02_bigger_than_comfortable.ipynb": BIGGER,
    "03_distributed.ipynb": DISTRIBUTED,
}

if __name__ == "__main__":
    os.environ.pop("LAZYIMG_SMALL", None)  # the committed outputs come from full-size data
    os.environ.pop("MPLBACKEND", None)  # pictures inline
    for name, cells in NOTEBOOKS.items():
        if len(sys.argv) < 2 or name in sys.argv[1:] or sys.argv[1] == "--no-execute":
            build(name, cells, run="--no-execute" not in sys.argv)
            print("wrote", name)
