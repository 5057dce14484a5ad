"""One decoding pass per cold gzip file, shared by threads and processes (gzip.shared, handoff).

Cold reads of a file join one pass that decodes the stream once; other processes read what
it decodes from its spill file. A leader that dies or hangs never blocks the others: they
lead a pass themselves, or decode alone.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_same, nib_array

import lazyimg
from lazyimg._io.gzip import handoff
from lazyimg._io.gzip import index as _gzindex
from lazyimg._io.gzip import inflate as _inflate
from lazyimg._io.identity import FileId
from lazyimg.testing import write_fmri

SHAPE = (64, 64, 16, 60)  # 7.9 MB int16, ~4 MB compressed: shared (over 1 MiB)

_HOLDER = """
import sys, time
from lazyimg._io.gzip import handoff
from lazyimg._io.identity import FileId
lock = handoff.Lock(handoff.paths(FileId.of(sys.argv[1]))[0])
assert lock.acquire()
print("locked", flush=True)
time.sleep(600)
"""


@pytest.fixture(autouse=True)
def fresh_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A private index cache, and no open files or indexes left from other tests."""
    monkeypatch.setenv("LAZYIMG_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("LAZYIMG_GZIP_INDEX", raising=False)
    lazyimg.close_files()
    _gzindex._indexes.clear()
    yield
    lazyimg.close_files()
    _gzindex._indexes.clear()


@pytest.fixture
def bold(tmp_path: Path) -> Path:
    return write_fmri(tmp_path / "bold.nii.gz", SHAPE, seed=4)


def _holder(path: Path) -> subprocess.Popen[str]:
    """Another process holding the lock of `path`'s pass (a leader that decodes nothing)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(_HOLDER), str(path)],
        stdout=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


def _read_in_thread(img: lazyimg.LazyImage, out: dict) -> threading.Thread:
    def run() -> None:
        try:
            out["value"] = img.slicecopy[..., -3]
        except BaseException as err:  # pragma: no cover - reported by the test
            out["error"] = err

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_threads_share_one_pass(bold: Path) -> None:
    img = lazyimg.load(bold, chunks={3: 5})
    before = _inflate.decompressed_bytes()
    got = img.data.mean(axis=-1).compute(scheduler="threads", num_workers=4)
    decompressed = _inflate.decompressed_bytes() - before
    np.testing.assert_allclose(got, nib_array(bold).mean(axis=-1), rtol=1e-12)
    assert decompressed <= 1.2 * img.nbytes, decompressed / img.nbytes


def test_killed_leader_does_not_hang_readers(bold: Path) -> None:
    holder = _holder(bold)
    try:
        img = lazyimg.load(bold)
        out: dict = {}
        thread = _read_in_thread(img, out)
        thread.join(1.0)
        assert thread.is_alive()  # waiting for the leader's pass
        holder.send_signal(signal.SIGKILL)  # it dies without a word: the kernel frees the lock
        thread.join(60)
        assert not thread.is_alive(), "a reader hangs after its leader died"
    finally:
        holder.kill()
        holder.wait()
    assert "error" not in out, out.get("error")
    assert_same(out["value"], nib_array(bold)[..., -3])
    assert _gzindex.lookup(FileId.of(bold)) is not None  # this process led a pass instead


def test_stalled_leader_is_given_up_on(bold: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(handoff, "STALL_SECONDS", 1.0)
    holder = _holder(bold)
    try:
        lock = handoff.paths(FileId.of(bold))[0]
        os.utime(lock, (time.time() - 10, time.time() - 10))  # it never touches its lock
        img = lazyimg.load(bold)
        out: dict = {}
        thread = _read_in_thread(img, out)
        thread.join(60)
        assert not thread.is_alive(), "a reader hangs on a leader that makes no progress"
        assert holder.poll() is None  # the leader is still alive, holding its lock
    finally:
        holder.kill()
        holder.wait()
    assert "error" not in out, out.get("error")
    assert_same(out["value"], nib_array(bold)[..., -3])


def test_spill_file_is_removed(bold: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(handoff, "SPILL_KEEP", 0.2)
    img = lazyimg.load(bold, chunks={3: 10})
    img.data.sum().compute()
    folder = handoff.paths(FileId.of(bold))[1]
    deadline = time.monotonic() + 30
    while list(folder.glob("*.spill")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not list(folder.glob("*.spill"))
    assert not list(folder.glob("*.want-*"))
    assert_same(img.slicecopy[..., 7], nib_array(bold)[..., 7])  # from the index now


def test_no_sharing_when_indexes_are_not_saved(
    bold: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("LAZYIMG_GZIP_INDEX", "off")
    img = lazyimg.load(bold, chunks={3: 10})
    got = img.data.mean(axis=-1).compute(scheduler="threads")
    np.testing.assert_allclose(got, nib_array(bold).mean(axis=-1), rtol=1e-12)
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").rglob("*.lock"))


def test_spill_file_is_removed_at_exit(bold: Path) -> None:
    """A process that ends within SPILL_KEEP of its pass leaves no spill file behind."""
    code = "import sys, lazyimg; lazyimg.load(sys.argv[1]).data.sum().compute()"
    subprocess.run([sys.executable, "-c", code, str(bold)], check=True, env=dict(os.environ))
    folder = handoff.paths(FileId.of(bold))[1]
    assert list(folder.glob("*.lock"))  # it led a shared pass
    assert not list(folder.glob("*.spill"))
