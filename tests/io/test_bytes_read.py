"""Only the needed bytes: slices of an uncompressed file read their payload, not whole chunks.

Two counters: ``lazyimg._io.files.bytes_read`` (voxel bytes lazyimg's reads hand
over, per process) and, in a subprocess, the kernel's ``rchar`` from
``/proc/self/io`` (every byte any ``read`` system call returned).
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import dask
import nibabel as nib
import numpy as np
import pytest
from conftest import assert_same, copy_nibabel_file, counted, nib_array, peak_of, sample

import lazyimg
from lazyimg._io import files as _files
from lazyimg._io import read as _read
from lazyimg._plan.reads import SKIP_BYTES, plan_read
from lazyimg.testing import make_image

SHAPE = (32, 32, 8, 20)  # the fmri_path fixture: 16 KiB int16 volumes
VOLUME = 32 * 32 * 8 * 2


@pytest.fixture
def img(fmri_path: Path, small_chunks: None) -> lazyimg.LazyImage:
    out = lazyimg.load(fmri_path)
    assert len(out.chunks[3]) > 1, "the test needs several chunks"
    return out


# index, payload bytes, number of separate runs on disk
CASES = [
    pytest.param((Ellipsis, 7), VOLUME, 1, id="one-volume"),
    pytest.param((slice(None), slice(None), 3, slice(None)), 32 * 32 * 2 * 20, 20, id="z-slice"),
    pytest.param((4, 9, 2, slice(None)), 2 * 20, 20, id="voxel-series"),
    pytest.param((Ellipsis, slice(2, 15, 4)), 4 * VOLUME, 4, id="strided-volumes"),
    pytest.param((Ellipsis, slice(17, 3, -5)), 3 * VOLUME, 3, id="backwards-volumes"),
    pytest.param((slice(None), 5, 6, slice(None)), 32 * 2 * 20, 20, id="x-line-series"),
]


def _check(n: int, payload: int, runs: int) -> None:
    assert n >= payload
    assert n <= payload + SKIP_BYTES * runs, f"read {n} bytes for a payload of {payload}"


@pytest.mark.parametrize(("index", "payload", "runs"), CASES)
def test_data_reads_only_the_payload(
    img: lazyimg.LazyImage, index: Any, payload: int, runs: int
) -> None:
    want = nib_array(img.path)[index]
    with counted() as box:
        got = img.data[index].compute(scheduler="sync")
    assert_same(got, want)
    _check(box["n"], payload, runs)


@pytest.mark.parametrize(("index", "payload", "runs"), CASES)
def test_slicecopy_reads_only_the_payload(
    img: lazyimg.LazyImage, index: Any, payload: int, runs: int
) -> None:
    want = nib_array(img.path)[index]
    with counted() as box:
        got = img.slicecopy[index]
    assert_same(got, want)
    _check(box["n"], payload, runs)


@pytest.mark.parametrize(("index", "payload", "runs"), CASES)
def test_views_of_views_read_only_the_payload(
    img: lazyimg.LazyImage, index: Any, payload: int, runs: int
) -> None:
    """Slicing a view (``img.data[...][...]``, ``img.slicer``) keeps the arithmetic exact."""
    want = nib_array(img.path)[:, ::-1][index]
    with counted() as box:
        got = img.data[:, ::-1][index].compute(scheduler="sync")
    assert_same(got, want)
    _check(box["n"], payload, runs)
    flipped = img.slicer[:, ::-1]
    with counted() as box:
        got = flipped.slicecopy[index]
    assert_same(got, want)
    _check(box["n"], payload, runs)
    with counted() as box:
        got = flipped.data[index].compute(scheduler="sync")
    assert_same(got, want)
    _check(box["n"], payload, runs)


def test_voxel_series_at_most_twice_the_payload(img: lazyimg.LazyImage) -> None:
    with counted() as box:
        img.data[10, 11, 5, :].compute(scheduler="sync")
    assert box["n"] <= 2 * 2 * 20
    with counted() as box:
        img.slicecopy[-1, 0, 7]
    assert box["n"] <= 2 * 2 * 20


def test_threaded_compute_reads_the_same(img: lazyimg.LazyImage) -> None:
    want = nib_array(img.path)[:, :, 3, :]
    with dask.config.set(scheduler="threads"), counted() as box:
        got = img.data[:, :, 3, :].compute()
    assert_same(got, want)
    # the counter is per process and the threaded scheduler shares it
    assert box["n"] <= 32 * 32 * 2 * 20 + SKIP_BYTES * 20


def test_building_and_slicing_graphs_reads_nothing(
    tmp_path: Path, fmri_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gz = make_image(tmp_path / "img.nii.gz", sample((6, 5, 4, 3), "int16"))
    minc = copy_nibabel_file("minc2_4d.mnc", tmp_path)

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a file was opened for voxel data")

    with counted() as box:
        monkeypatch.setattr(_files, "raw_file", refuse)
        monkeypatch.setattr(_files, "nibabel_image", refuse)
        for path in (fmri_path, gz, minc):
            img = lazyimg.load(path, chunks=1)
            view = img.data[::-1, 1:, 0][..., ::2]
            _ = (view.shape, view.dtype, view.chunks, view.name, repr(img))
            if path != minc:  # nibabel cannot tell MINC's spatial axes apart: no slicer
                sub = img.slicer[1:, :, ::-1]
                _ = sub.data[0, ..., None].sum()
            assert img.data.mean(axis=-1).shape == img.shape[:-1]
    assert box["n"] == 0


# --------------------------------------------------------------------------- the unproxy rule

WIDE = (160, 16, 4, 12)  # x rows of 320 bytes: one x position costs a read per row
WIDE_VOLUME = 160 * 16 * 4 * 2


@pytest.fixture
def wide_path(tmp_path: Path) -> Path:
    return make_image(tmp_path / "wide.nii", sample(WIDE, "int16"))


def test_unproxy_rule_reads_one_pass(wide_path: Path) -> None:
    """``slicecopy[5]`` touches every page: it reads the data once, sequentially."""
    plan = plan_read(WIDE, 2, 352, (5, range(16), range(4), range(12)))
    assert plan.through and len(plan.run_starts) == 1  # one sequential pass, not 768 reads
    img = lazyimg.load(wide_path)
    with counted() as box:
        got = img.slicecopy[5]
    assert_same(got, nib_array(wide_path)[5])
    assert box["n"] == 12 * WIDE_VOLUME  # the whole data block: "about the file size"
    assert box["n"] <= os.path.getsize(wide_path)


def test_unproxy_rule_does_not_apply_to_a_voxel_series(wide_path: Path) -> None:
    img = lazyimg.load(wide_path)
    with counted() as box:
        img.slicecopy[5, 3, 2]
    assert box["n"] <= 2 * 2 * 12


def test_unproxy_pass_memory_is_bounded(wide_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What we assert: the pass reads in groups of whole volumes of at most ``BLOCK_BYTES``.

    Peak extra memory (numpy allocations, traced) stays within the result plus one
    group, not the file: with the block shrunk to two volumes, a 12-volume file is read
    through a two-volume buffer. (With the default 64 MiB block the same bound is
    ``result + min(data, 64 MiB)``.)
    """
    img = lazyimg.load(wide_path)
    result_bytes = 16 * 4 * 12 * 2
    slack = 16 * 1024  # Python objects of the read loop
    monkeypatch.setattr(_read, "plan_read", functools.partial(plan_read, block=2 * WIDE_VOLUME))
    with counted() as box:
        got, peak = peak_of(lambda: img.slicecopy[5])
    assert_same(got, nib_array(wide_path)[5])
    assert box["n"] == 12 * WIDE_VOLUME
    assert peak <= result_bytes + 2 * WIDE_VOLUME + slack
    assert peak < 12 * WIDE_VOLUME / 3


def test_default_pass_memory_is_one_block(wide_path: Path) -> None:
    img = lazyimg.load(wide_path)
    _, peak = peak_of(lambda: img.slicecopy[5])
    assert peak <= 16 * 4 * 12 * 2 + 12 * WIDE_VOLUME + 16 * 1024


# --------------------------------------------------------------------------- kernel counters

PROBE = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import lazyimg

    def rchar():
        with open("/proc/self/io") as f:
            for line in f:
                if line.startswith("rchar:"):
                    return int(line.split()[1])

    path, k = sys.argv[1], int(sys.argv[2])
    img = lazyimg.load(path, chunks={3: 4})
    img.data[..., 0].compute(scheduler="sync")  # warm up: imports, open descriptors
    img.slicecopy[..., 0]
    out = {}
    r = rchar(); img.slicecopy[..., k]; out["slicecopy"] = rchar() - r
    r = rchar(); img.data[..., k].compute(scheduler="sync"); out["data"] = rchar() - r
    r = rchar(); img.data[3, 4, 5, :].compute(scheduler="sync"); out["series"] = rchar() - r
    r = rchar(); img2 = lazyimg.load(path); img2.data[1:, ::2]; out["load"] = rchar() - r
    with open(path, "rb") as f:
        r = rchar(); f.read(); out["whole file"] = rchar() - r
    print(json.dumps(out))
    """
)


@pytest.mark.skipif(not os.path.exists("/proc/self/io"), reason="needs Linux /proc/self/io")
def test_process_read_counter(fmri_path: Path) -> None:
    """The kernel agrees: a volume costs a volume of read() bytes, not a chunk or the file."""
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, str(fmri_path), "11"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    size = os.path.getsize(fmri_path)
    assert got["whole file"] >= size  # the counter works
    slack = 4096
    assert VOLUME <= got["slicecopy"] <= VOLUME + slack
    assert VOLUME <= got["data"] <= VOLUME + slack
    assert got["series"] <= 2 * 2 * 20 + slack
    assert got["load"] <= 64 * 1024  # a header, not voxels
    assert got["load"] < VOLUME


def test_fixture_matches_the_constants(fmri_path: Path) -> None:
    assert nib.load(fmri_path).shape == SHAPE
    assert np.asarray(nib.load(fmri_path).dataobj).dtype == np.dtype("int16")
