"""dask graphs: picklable recipes by path and identity, deterministic names, disk-aligned chunks.

Building a graph reads no voxel data, even for a 160 GB header (a sparse file).
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import nibabel as nib
import numpy as np
import pytest
from conftest import (
    assert_same,
    copy_nibabel_file,
    counted,
    nib_array,
    nibabel_file,
    sample,
    sparse_nifti,
)

import lazyimg
from lazyimg._io import files as _files
from lazyimg.testing import make_image, write_scaled

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    """One file of each reading path: raw, gzip, scaled, and nibabel's (MINC1/2, PAR/REC)."""
    return {
        "nii": make_image(tmp_path / "a.nii", sample((6, 5, 4, 3), "int16")),
        "nii.gz": make_image(tmp_path / "b.nii.gz", sample((6, 5, 4, 3), "float32")),
        "scaled": write_scaled(tmp_path / "c.nii", sample((6, 5, 4, 3), "int16"), 0.5, 3.0),
        "mgz": make_image(tmp_path / "d.mgz", sample((6, 5, 4, 3), "int16"), klass=nib.MGHImage),
        "minc1": copy_nibabel_file("minc1_4d.mnc", tmp_path),
        "minc2": copy_nibabel_file("minc2_4d.mnc", tmp_path),
        "parrec": copy_nibabel_file("phantom_varscale.PAR", tmp_path),
        "afni": copy_nibabel_file("scaled+tlrc.HEAD", tmp_path),
    }


KINDS = ["nii", "nii.gz", "scaled", "mgz", "minc1", "minc2", "parrec", "afni"]


def views(img: lazyimg.LazyImage) -> list[Any]:
    return [img.data, img.data[..., ::-1][1:], img.data[0, ..., None], img.data.sum(axis=1)]


# --------------------------------------------------------------------------- pickling


@pytest.mark.parametrize("kind", KINDS)
def test_pickle_round_trip(files: dict[str, Path], kind: str) -> None:
    path = files[kind]
    shape = nib.load(path).shape
    img = lazyimg.load(path, chunks=tuple(-(-n // 2) for n in shape))  # two chunks per axis
    want = nib_array(path)
    img.data.compute()  # warm caches: open files, gzip indexes, nibabel images
    # one thread: PAR/REC reads race under threads (test_formats.py::test_threaded_parrec)
    with dask.config.set(scheduler="sync"):
        _check_pickles(img, want)


def _check_pickles(img: lazyimg.LazyImage, want: np.ndarray) -> None:
    for arr in views(img):
        blob = pickle.dumps(arr)
        assert len(blob) < 64 * 1024, f"{len(blob)} bytes pickled"
        back = pickle.loads(blob)
        assert_same(back.compute(), arr.compute())
    assert_same(pickle.loads(pickle.dumps(img.data)).compute(), want)
    sub = img.data[1:, :, ::2]
    assert_same(pickle.loads(pickle.dumps(sub))[0].compute(), want[1:, :, ::2][0])


def test_pickle_of_a_slicer_view(files: dict[str, Path]) -> None:
    path = files["scaled"]
    sub = lazyimg.load(path).slicer[1:5, ::-1, :, 1:]
    back = pickle.loads(pickle.dumps(sub.data))
    assert_same(back.compute(), np.asarray(nib.load(path).slicer[1:5, ::-1, :, 1:].dataobj))


def test_pickled_graph_runs_in_a_fresh_process(files: dict[str, Path], tmp_path: Path) -> None:
    """No open handle or process state rides along: another interpreter computes it."""
    arrays = [lazyimg.load(files[k], chunks=2).data[..., 1:] for k in ("nii.gz", "minc2")]
    blob = tmp_path / "graph.pkl"
    blob.write_bytes(pickle.dumps(arrays))
    script = (
        "import pickle, sys, numpy as np\n"
        "arrays = pickle.loads(open(sys.argv[1], 'rb').read())\n"
        "np.save(sys.argv[2], arrays[0].compute(scheduler='sync'))\n"
        "np.save(sys.argv[3], arrays[1].compute(scheduler='sync'))\n"
    )
    outs = [tmp_path / "gz.npy", tmp_path / "minc.npy"]
    subprocess.run([sys.executable, "-c", script, blob, *outs], check=True, timeout=120)
    assert_same(np.load(outs[0]), nib_array(files["nii.gz"])[..., 1:])
    assert_same(np.load(outs[1]), nib_array(files["minc2"])[..., 1:])


def test_pickle_size_does_not_grow_with_voxels(tmp_path: Path) -> None:
    small = make_image(_mkdir(tmp_path / "s") / "img.nii", np.zeros((4, 4, 4, 10), "int16"))
    big = sparse_nifti(_mkdir(tmp_path / "b") / "img.nii", (64, 64, 64, 1000))
    small_img = lazyimg.load(small, chunks={3: 1})
    big_img = lazyimg.load(big, chunks={3: 100})
    assert small_img.data.npartitions == big_img.data.npartitions == 10
    assert big_img.nbytes > 10_000 * small_img.nbytes
    small_blob = len(pickle.dumps(small_img.data))
    big_blob = len(pickle.dumps(big_img.data))
    assert big_blob < 1.2 * small_blob + 256, (small_blob, big_blob)
    assert big_blob < 16 * 1024


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def test_gzip_index_stays_out_of_the_pickle(tmp_path: Path) -> None:
    path = make_image(tmp_path / "img.nii.gz", sample((16, 16, 8, 40), "float32"))
    img = lazyimg.load(path, chunks={3: 1})
    before = len(pickle.dumps(img.data))
    img.data[..., ::7].compute()  # builds seek points in this process
    assert len(pickle.dumps(img.data)) == before


# --------------------------------------------------------------------------- names


@pytest.mark.parametrize("kind", ["nii", "nii.gz", "minc2"])
def test_names_are_deterministic(files: dict[str, Path], kind: str) -> None:
    path = files[kind]
    a, b = lazyimg.load(path, chunks=2), lazyimg.load(str(path), chunks=2)
    assert a.data.name == b.data.name
    assert a.data[..., 1:].name == b.data[..., 1:].name
    assert a.data[0, ::-1].name == b.data[0, ::-1].name
    assert a.data[0].name != a.data[1].name
    if kind != "minc2":  # nibabel has no slicer for MINC
        assert a.slicer[1:3].data.name == b.slicer[1:3].data.name
    assert lazyimg.load(path, chunks=1).data.name != a.data.name
    assert lazyimg.load(path, chunks=2, dtype="float32").data.name != a.data.name


def test_name_changes_with_the_file(files: dict[str, Path]) -> None:
    path = files["nii"]
    before = lazyimg.load(path).data.name
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    after = lazyimg.load(path).data.name
    assert after != before
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    # the mtime is back, but the ctime moved: the file may have been rewritten meanwhile
    assert lazyimg.load(path).data.name not in (before, after)


def test_raw_and_scaled_names_differ(files: dict[str, Path]) -> None:
    path = files["scaled"]
    assert lazyimg.load(path).data.name != lazyimg.load(path, dtype="raw").data.name


def test_in_memory_names_are_unique() -> None:
    arr = np.zeros((3, 4, 5))
    a = lazyimg.load(nib.Nifti1Image(arr, np.eye(4)))
    b = lazyimg.load(nib.Nifti1Image(arr, np.eye(4)))
    assert a.data.name != b.data.name  # the array may change: no content hash could hold


# --------------------------------------------------------------------------- chunks


def test_auto_chunks_split_the_last_axis_of_nifti(tmp_path: Path) -> None:
    path = make_image(tmp_path / "img.nii", np.zeros((8, 8, 4, 30), "int16"))  # 512 B volumes
    with dask.config.set({"array.chunk-size": "4KiB"}):
        img = lazyimg.load(path)
    assert img.chunks == ((8,), (8,), (4,), (8, 8, 8, 6))
    with dask.config.set({"array.chunk-size": "1MiB"}):
        assert lazyimg.load(path).chunks == ((8,), (8,), (4,), (30,))
    with dask.config.set({"array.chunk-size": "256B"}):  # a volume is bigger: split z too
        assert lazyimg.load(path).chunks == ((8,), (8,), (2, 2), (1,) * 30)


def test_auto_chunks_use_the_output_dtype(tmp_path: Path) -> None:
    path = write_scaled(tmp_path / "s.nii", np.zeros((8, 8, 4, 30), "int16"), 2.0, 0.0)
    with dask.config.set({"array.chunk-size": "4KiB"}):
        scaled = lazyimg.load(path)  # float values: 8 or 4 bytes each
        raw = lazyimg.load(path, dtype="raw")
    per_volume = 8 * 8 * 4
    assert max(scaled.chunks[3]) == 4096 // (per_volume * scaled.dtype.itemsize)
    assert max(raw.chunks[3]) == 4096 // (per_volume * 2)


def test_auto_chunks_split_the_first_axis_of_minc() -> None:
    path = nibabel_file("minc2_4d.mnc")  # (2, 10, 20, 20) float64, C order
    with dask.config.set({"array.chunk-size": "32KiB"}):  # one 32,000-byte slab fits
        img = lazyimg.load(path)
    assert img.disk_order == "C"
    assert img.chunks == ((1, 1), (10,), (20,), (20,))
    with dask.config.set({"array.chunk-size": "8KiB"}):  # one 32 kB slab is bigger: split axis 1
        assert lazyimg.load(path).chunks == ((1, 1), (2,) * 5, (20,), (20,))
    with dask.config.set({"array.chunk-size": "1MiB"}):
        assert lazyimg.load(path).chunks == ((2,), (10,), (20,), (20,))


@pytest.mark.parametrize(
    ("chunks", "expected"),
    [
        (2, ((2, 2, 2), (2, 2, 1), (2, 2), (2, 1))),
        ((3, 5, -1, 1), ((3, 3), (5,), (4,), (1, 1, 1))),
        ({3: 1}, ((6,), (5,), (4,), (1, 1, 1))),
        ({0: 4, -1: 2}, ((4, 2), (5,), (4,), (2, 1))),
        (((1, 5), (5,), (4,), (3,)), ((1, 5), (5,), (4,), (3,))),
        ("auto", ((6,), (5,), (4,), (3,))),
    ],
    ids=repr,
)
def test_explicit_chunks_are_honoured(files: dict[str, Path], chunks: Any, expected: Any) -> None:
    img = lazyimg.load(files["nii"], chunks=chunks)
    assert img.chunks == expected
    assert img.data.chunks == expected
    assert_same(img.data.compute(), nib_array(files["nii"]))


def test_view_chunks_follow_the_file(files: dict[str, Path]) -> None:
    """A view splits only where the source does, merging pieces up to the source's block size."""
    img = lazyimg.load(files["nii"], chunks={3: 1, 0: 2})
    source_block = 2 * 5 * 4 * 1
    # every piece of a one-volume chunk is smaller than a source block: they merge
    assert img.data[..., 1:].chunks == ((2, 2, 2), (5,), (4,), (1, 1))
    assert img.data[::-1, 0].chunks == ((6,), (4,), (1, 1, 1))
    assert img.data[1:5, None].chunks == ((1, 2, 1), (1,), (5,), (4,), (1, 1, 1))
    view = img.data[:, 2, 1:, :]
    assert view.chunks == ((6,), (3,), (2, 1))
    for chunks in (view.chunks, img.data[::2, :, 0, 1:].chunks):
        assert max(np.prod([max(c) for c in chunks]), 1) <= source_block
    assert_same(view.compute(), nib_array(files["nii"])[:, 2, 1:, :])


def test_one_task_per_chunk_and_no_getitem_stacking(files: dict[str, Path]) -> None:
    """A slice becomes new read tasks, not ``getitem`` on whole-chunk reads."""
    img = lazyimg.load(files["nii"], chunks={3: 1})
    view = img.data[:, :, 1:, ::2]  # pieces as big as a source block stay apart
    graph = dict(view.__dask_graph__())
    assert len(graph) == view.npartitions == 2
    small = img.data[:, 2, 1:, ::2]  # smaller pieces merge into one read task
    assert len(dict(small.__dask_graph__())) == small.npartitions == 1


@pytest.mark.parametrize("kind", ["nii", "nii.gz", "minc2"])
def test_reads_fuse_into_the_next_step_without_alias_tasks(
    files: dict[str, Path], kind: str
) -> None:
    """After optimization, a reduction has one task per chunk that reads and reduces.

    Reads left as separate tasks, or fused under a new name with an alias task
    per chunk, give a cluster twice the tasks; the aliases take up worker
    slots, and the scheduler then hands the reads out unevenly.
    """
    data = lazyimg.load(files[kind], chunks={0: 1, -1: 1}).data
    mean = data.mean(axis=-1)
    graph = dict(mean.__dask_optimize__(mean.__dask_graph__(), mean.__dask_keys__()))
    names = [k[0] if isinstance(k, tuple) else k for k in graph]
    assert not [n for n in names if n.startswith("lazyimg-")]
    assert sum(n.startswith("mean_chunk-") for n in names) == data.npartitions > 1
    assert all(type(v).__name__ != "Alias" for v in graph.values())
    # summed chunk by chunk, so equal to numpy's mean up to rounding
    np.testing.assert_allclose(mean.compute(), nib_array(files[kind]).mean(axis=-1), rtol=1e-12)


# --------------------------------------------------------------------------- huge headers


def _rchar() -> int | None:
    try:
        with open("/proc/self/io") as f:
            for line in f:
                if line.startswith("rchar:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def test_huge_header_loads_without_reading_voxels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A (256, 256, 256, 5000) int16 header over a 160 GB sparse file: header only."""
    shape = (256, 256, 256, 5000)
    path = sparse_nifti(tmp_path / "huge.nii", shape)
    assert os.path.getsize(path) > 160e9

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a file was opened for voxel data")

    monkeypatch.setattr(_files, "raw_file", refuse)
    r0 = _rchar()
    with counted() as box:
        img = lazyimg.load(path)
        vol = img.data[..., 4321]
        mean = img.data[100:110, ::-1, 5].mean(axis=-1)
        _ = (repr(img), vol.chunks, mean.chunks, img.slicer[10:20].shape)
    r1 = _rchar()
    assert box["n"] == 0
    if r0 is not None and r1 is not None:
        assert r1 - r0 < 1024 * 1024  # the header (and Python's own reads), nothing near a volume
    assert img.shape == shape
    assert img.dtype == np.int16
    assert img.chunks[:3] == ((256,), (256,), (256,))
    assert sum(img.chunks[3]) == 5000 and max(img.chunks[3]) * 256**3 * 2 <= 128 * 2**20
    assert vol.npartitions == 1
    assert isinstance(img.data, da.Array)
