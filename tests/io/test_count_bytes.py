"""The public byte counters: ``lazyimg.bytes_read()`` and ``with lazyimg.count_bytes() as n``."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from conftest import sample

import lazyimg
from lazyimg.testing import make_image

SHAPE = (8, 9, 4, 12)
VOLUME = 8 * 9 * 4 * 2  # int16


@pytest.fixture
def img(tmp_path: Path) -> lazyimg.LazyImage:
    return lazyimg.load(make_image(tmp_path / "img.nii", sample(SHAPE, "int16")))


def test_counts_one_volume(img: lazyimg.LazyImage) -> None:
    start = lazyimg.bytes_read()
    with lazyimg.count_bytes() as n:
        assert n.bytes == 0
        img.slicecopy[..., 5]
        assert n.bytes == VOLUME  # live inside the block
    assert n.bytes == VOLUME
    assert lazyimg.bytes_read() - start == VOLUME


def test_frozen_after_the_block(img: lazyimg.LazyImage) -> None:
    with lazyimg.count_bytes() as n:
        img.slicecopy[..., 0]
    img.slicecopy[..., 1:3]
    assert n.bytes == VOLUME
    assert "ByteCount" in repr(n) and str(VOLUME) in repr(n)


def test_nested_blocks_and_threads(img: lazyimg.LazyImage) -> None:
    with lazyimg.count_bytes() as outer:
        with lazyimg.count_bytes() as inner:
            threads = [threading.Thread(target=lambda k=k: img.slicecopy[..., k]) for k in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        img.data[..., 4:6].compute()
    assert inner.bytes == 4 * VOLUME
    assert outer.bytes == 6 * VOLUME


def test_counts_even_when_the_block_raises(img: lazyimg.LazyImage) -> None:
    with pytest.raises(IndexError), lazyimg.count_bytes() as n:
        img.slicecopy[..., 2]
        img.slicecopy[..., 99]
    assert n.bytes == VOLUME
