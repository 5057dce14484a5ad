"""Write the example notebooks from their cell sources (run: python notebooks/_build.py).

Keeping notebook sources as plain Python makes them reviewable in diffs; the
committed .ipynb files carry no outputs.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).parent

SETUP = """import os, tempfile
from pathlib import Path
import numpy as np
import lazyimg
from lazyimg.testing import write_fmri

# LAZYIMG_SMALL=1 (set by the test suite) keeps the data tiny.
SMALL = bool(os.environ.get("LAZYIMG_SMALL"))
workdir = Path(tempfile.mkdtemp(prefix="lazyimg-nb-"))"""

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
path"""
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
    new_code_cell("""from lazyimg._io import files as _files

before = _files.bytes_read
vol = img.slicecopy[..., 10]
print("one volume:", vol.shape, vol.dtype, f"{_files.bytes_read - before} bytes read (uncompressed)")
series = img.data[10, 12, 8, :]
series"""),
    new_code_cell("""series.compute()[:10]"""),
    new_markdown_cell("`img.slicer` slices like nibabel's and updates the affine; it stays lazy."),
    new_code_cell("""crop = img.slicer[8:24, 8:24, :, ::2]
crop.shape, crop.affine[:3, 3]"""),
    new_markdown_cell("Three orthogonal slices through a voxel, reading only those slices:"),
    new_code_cell("""import matplotlib
matplotlib.use("Agg")
fig = img.plot_slices(volume=5)"""),
    new_markdown_cell(
        "## xarray\n\nNamed dimensions, time in seconds, metadata in attrs, still lazy."
    ),
    new_code_cell("""da = img.to_xarray()
da"""),
    new_code_cell("""mean_map = da.mean("time")
roi = da.isel(i=slice(10, 14), j=slice(10, 14), k=8).mean(["i", "j"])
roi.compute().values[:5], float(mean_map.max())"""),
    new_code_cell("""import shutil
shutil.rmtree(workdir)"""),
]

BIGGER = [
    new_markdown_cell(
        "# A bigger-than-comfortable analysis\n\n"
        "Temporal statistics and ROI time series on a 4D run, streamed chunk by chunk. "
        "We watch this process's memory: it stays near a few chunks, not the image size."
    ),
    new_code_cell(
        SETUP
        + """
import psutil, dask
proc = psutil.Process()
def rss_mb():
    return proc.memory_info().rss / 1e6

shape = (32, 32, 16, 60) if SMALL else (96, 96, 64, 400)
path = write_fmri(workdir / "bold.nii", shape)
print(f"{path.stat().st_size / 1e6:.0f} MB on disk; process RSS {rss_mb():.0f} MB")"""
    ),
    new_code_cell("""img = lazyimg.load(path, dtype="float32")
img"""),
    new_markdown_cell(
        "Temporal mean, standard deviation and tSNR in one pass over the file, with a progress bar:"
    ),
    new_code_cell("""from dask.diagnostics import ProgressBar, ResourceProfiler

x = img.data
mean, std = x.mean(-1), x.std(-1)
tsnr = mean / dask.array.where(std > 0, std, np.inf)
with ProgressBar(), ResourceProfiler(dt=0.05) as prof:
    mean_v, std_v, tsnr_v = dask.compute(mean, std, tsnr)
peak = max((r.mem for r in prof.results), default=float("nan"))
print(f"image {img.nbytes / 1e6:.0f} MB as float32; peak process memory during compute {peak:.0f} MB")"""),
    new_markdown_cell(
        "ROI time series: a small box of voxels, read without touching the rest of each volume."
    ),
    new_code_cell("""before = lazyimg._io.files.bytes_read
c = [n // 2 for n in shape[:3]]
roi = img.data[c[0]-2:c[0]+2, c[1]-2:c[1]+2, c[2], :].mean(axis=(0, 1)).compute()
print(f"ROI series of {roi.size} time points; {(lazyimg._io.files.bytes_read - before) / 1e6:.2f} MB read "
      f"of {path.stat().st_size / 1e6:.0f} MB")"""),
    new_code_cell("""import shutil
shutil.rmtree(workdir)"""),
]

DISTRIBUTED = [
    new_markdown_cell(
        "# lazyimg on a dask cluster: group tSNR\n\n"
        "lazyimg's graphs carry only file paths and identities (size, mtime), never open files, "
        "so the same lazy arrays run unchanged on `dask.distributed` workers: each worker opens "
        "the files itself and keeps them in a small per-process cache.\n\n"
        "This notebook generates a few small fMRI-like runs, starts a `LocalCluster` with two "
        "worker processes, and computes a group temporal-SNR map (mean / standard deviation "
        "over time, averaged over subjects). On a real cluster the only change is the "
        "`Client(...)` line, provided every worker sees the files at the same paths "
        "(see `docs/distributed.md`)."
    ),
    new_code_cell(
        """import os, tempfile
from pathlib import Path
import numpy as np
import nibabel as nib
import lazyimg
from lazyimg.testing import write_fmri

# LAZYIMG_SMALL=1 (set by the test suite) keeps the data tiny.
SMALL = bool(os.environ.get("LAZYIMG_SMALL"))
workdir = Path(tempfile.mkdtemp(prefix="lazyimg-nb-"))
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

cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0")
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
from lazyimg._io import files as _files

mean = bold.mean("time")
std = bold.std("time")
tsnr = (mean / std.where(std > 0)).fillna(0.0)
group_tsnr = tsnr.mean("subject")
group_mean = mean.mean("subject")

def bytes_read_per_worker():
    return client.run(getattr, _files, "bytes_read")

before = bytes_read_per_worker()
result, average = dask.compute(group_tsnr, group_mean)  # one pass over the files for both
after = bytes_read_per_worker()
read = {w: after[w] - before[w] for w in after}
print("bytes read per worker:", read)
print("total:", sum(read.values()), "bytes; the data:", bold.nbytes, "bytes")
brain = average > 0.5 * float(average.max())
print("group tSNR in the brain: median", round(float(result.where(brain).median()), 1))"""
    ),
    new_code_cell(
        """import matplotlib.pyplot as plt

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
        """from lazyimg.write import save

first = lazyimg.load(paths[0])
out = save(group_tsnr.data.astype("float32"), workdir / "group_tsnr.nii", affine=first.affine)
saved = nib.load(out)
np.testing.assert_allclose(np.asarray(saved.dataobj), result.values.astype("float32"))
out.name, saved.shape, saved.get_data_dtype()"""
    ),
    new_code_cell(
        """client.close()
cluster.close()"""
    ),
]


def write(name: str, cells: list) -> None:
    nb = new_notebook(cells=cells)
    for number, cell in enumerate(nb.cells):
        cell.id = f"cell-{number:02d}"  # stable ids: rebuilding changes nothing
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, HERE / name)


if __name__ == "__main__":
    write("01_quickstart.ipynb", QUICKSTART)
    write("02_bigger_than_comfortable.ipynb", BIGGER)
    write("03_distributed.ipynb", DISTRIBUTED)
