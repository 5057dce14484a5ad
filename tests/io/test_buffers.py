"""Recycled read buffers: reuse only memory nothing can reach; read ahead of large reads."""

from __future__ import annotations

import gc
import os
import time
from pathlib import Path

import numpy as np
import pytest

import lazyimg
from lazyimg._io import buffers
from lazyimg._io.source import LocalFile
from lazyimg.testing import make_image

BIG = buffers.RECYCLE_MIN // 2 + 1  # int16 elements: just over the recycling threshold


def _address(arr: np.ndarray) -> int:
    return int(arr.__array_interface__["data"][0])


def test_small_arrays_are_plain() -> None:
    arr = buffers.empty((4, 5), np.dtype("float32"), "F")
    assert arr.flags.owndata and arr.flags.f_contiguous and arr.shape == (4, 5)


@pytest.mark.parametrize("order", ["C", "F"])
def test_large_arrays_are_writeable_and_laid_out(order: str) -> None:
    arr = buffers.empty((BIG, 1), np.dtype("int16"), order)
    assert type(arr) is np.ndarray and arr.flags.writeable and arr.dtype == np.int16
    assert arr.flags.c_contiguous if order == "C" else arr.flags.f_contiguous
    arr[:] = 7
    assert int(arr.sum()) == 7 * BIG


def test_memory_is_reused_once_every_view_is_gone() -> None:
    first = buffers.empty((BIG,), np.dtype("int16"))
    address = _address(first)
    views = [first[1:], first.reshape(1, -1).T, memoryview(first), np.asarray(first)[::2]]
    del first
    gc.collect()
    held = []  # kept alive, so that only the first array's memory can come back
    while views:  # each view alone keeps the memory from being handed out again
        held.append(buffers.empty((BIG,), np.dtype("int16")))
        assert _address(held[-1]) != address
        views.pop()
        gc.collect()
    again = buffers.empty((BIG,), np.dtype("int16"))
    assert _address(again) == address  # the last view is gone: reused


def test_idle_memory_is_released() -> None:
    arr = buffers.empty((BIG,), np.dtype("int16"))
    del arr
    gc.collect()
    deadline = time.monotonic() + 10 * buffers.IDLE_SECONDS
    while (buffers._idle or buffers._returned) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not buffers._idle and not buffers._returned


def test_large_chunk_reads_are_right_and_independent(tmp_path: Path) -> None:
    vol = (64, 64, 64)  # 512 KiB of int16 per volume
    n = 2 * buffers.RECYCLE_MIN // (2 * 64**3) + 3
    data = (np.arange(np.prod(vol) * n) % 3001).astype(np.int16).reshape(*vol, n, order="F")
    path = make_image(tmp_path / "big.nii", data)
    img = lazyimg.load(path, chunks={3: n // 2})
    a = img.slicecopy[..., : n // 2]
    b = img.slicecopy[..., n // 2 :]
    b_copy = b.copy()
    a[:] = -1  # writing one result never touches another
    np.testing.assert_array_equal(b, b_copy)
    np.testing.assert_array_equal(img.data.mean(-1).compute(), data.mean(-1))
    np.testing.assert_array_equal(img.slicecopy[..., n // 2 :], data[..., n // 2 :])


def test_large_reads_ask_for_the_next_bytes(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "f.bin"
    size = 3 * (16 * 2**20)
    path.write_bytes(b"\0" * size)
    st = os.stat(path)
    from lazyimg._io.identity import FileId

    calls: list[tuple[int, int, int]] = []
    real = os.posix_fadvise
    monkeypatch.setattr(
        os, "posix_fadvise", lambda fd, o, n, a: (calls.append((o, n, a)), real(fd, o, n, a))[1]
    )
    f = LocalFile(FileId.from_stat(str(path), st))
    try:
        f.read_into(memoryview(bytearray(1024)), 0)  # small: no hint
        assert calls == []
        n = 16 * 2**20
        f.read_into(memoryview(bytearray(n)), 0)
        assert calls == [(n, n, os.POSIX_FADV_WILLNEED)]
        f.read_into(memoryview(bytearray(n)), 2 * n)  # the last: nothing after it
        assert len(calls) == 1
    finally:
        f.close()
