"""Saves that the file system refuses: a LazyImgError naming the target, nothing left behind.

Real failures only: a small tmpfs (as root), a read-only mount, a file-size
limit (RLIMIT_FSIZE) in a child process, a save killed with SIGKILL. Saves that
could crash the interpreter (SIGBUS from a memory map on a full disk) run in a
child process so a regression fails the test instead of the suite.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import lazyimg
from lazyimg._write import tmpfiles
from lazyimg.write import save

ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}


def _run(code: str, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=ENV,
    )


def _mount(path: Path, options: str) -> bool:
    if os.geteuid() != 0:
        return False
    path.mkdir(exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True
    )
    return done.returncode == 0


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 20 MiB tmpfs (needs root and permission to mount)."""
    where = tmp_path / "small"
    if not _mount(where, "size=20m"):
        pytest.skip("cannot mount a tmpfs here (not root, or no CAP_SYS_ADMIN)")
    yield where
    subprocess.run(["umount", "-l", str(where)], check=False)


SAVE_BIG = """
import sys, dask.array as da, lazyimg
target = sys.argv[1]
try:
    lazyimg.save(da.ones((96, 96, 64, 600), dtype="int16", chunks=(8, 96, 64, 600)), target)
except OSError as err:
    assert isinstance(err, lazyimg.SaveError), type(err)
    print("REFUSED", err.errno, err)
    raise SystemExit(0)
print("SAVED")
"""


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_full_disk_is_an_error_not_a_bus_error(small_fs: Path, suffix: str) -> None:
    target = small_fs / f"z{suffix}"
    target.write_bytes(b"precious")
    done = _run(SAVE_BIG, str(target))
    assert done.returncode == 0, f"rc {done.returncode}: {done.stderr[-2000:]}"
    assert done.stdout.startswith(f"REFUSED {errno.ENOSPC}"), done.stdout + done.stderr[-2000:]
    assert str(target) in done.stdout and "lazyimg-tmp" not in done.stdout
    assert "no space" in done.stdout
    assert target.read_bytes() == b"precious"
    assert sorted(p.name for p in small_fs.iterdir()) == [target.name]


def test_file_size_limit_is_an_error_naming_the_target(tmp_path: Path) -> None:
    """The same failure without root: RLIMIT_FSIZE makes the reservation fail with EFBIG."""
    target = tmp_path / "big.nii"
    target.write_bytes(b"precious")
    code = """
    import resource, signal, sys
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (2**20, 2**20))
    import numpy as np, lazyimg
    try:
        lazyimg.save(np.ones((64, 64, 32, 8), "int16"), sys.argv[1])
    except OSError as err:
        assert isinstance(err, lazyimg.SaveError), type(err)
        print("REFUSED", err.errno, err)
        raise SystemExit(0)
    print("SAVED")
    """
    done = _run(code, str(target))
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith(f"REFUSED {errno.EFBIG}"), done.stdout + done.stderr[-2000:]
    assert str(target) in done.stdout and "lazyimg-tmp" not in done.stdout
    assert target.read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]


def test_read_only_file_system_names_the_target(tmp_path: Path) -> None:
    where = tmp_path / "ro"
    if not _mount(where, "ro,size=1m"):
        pytest.skip("cannot mount a tmpfs here (not root, or no CAP_SYS_ADMIN)")
    try:
        with pytest.raises(lazyimg.SaveError) as err:
            save(np.zeros((2, 3, 4), "float32"), where / "a.nii")
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)
    assert err.value.errno == errno.EROFS
    assert str(where / "a.nii") in str(err.value)
    assert "lazyimg-tmp" not in str(err.value)
    assert "read-only" in str(err.value)


def test_missing_folder_and_directory_targets(tmp_path: Path) -> None:
    arr = np.zeros((2, 3, 4), "float32")
    with pytest.raises(lazyimg.ImageNotFoundError) as missing:
        save(arr, tmp_path / "missing" / "a.nii")
    assert isinstance(missing.value, FileNotFoundError)
    assert str(tmp_path / "missing" / "a.nii") in str(missing.value)
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(lazyimg.ImageNotFoundError, match="not a directory"):
        save(arr, tmp_path / "file" / "a.nii")
    (tmp_path / "dir.nii").mkdir()
    with pytest.raises(lazyimg.SaveError) as isdir:
        save(arr, tmp_path / "dir.nii")
    assert isinstance(isdir.value, OSError) and isdir.value.errno == errno.EISDIR
    assert str(tmp_path / "dir.nii") in str(isdir.value)


def test_permission_error_names_the_target(tmp_path: Path) -> None:
    err = tmpfiles.write_error(
        PermissionError(errno.EACCES, "Permission denied", str(tmp_path / ".x.lazyimg-tmp")),
        str(tmp_path / "x.nii"),
        "creating its temporary file",
    )
    assert isinstance(err, lazyimg.ImagePermissionError) and isinstance(err, PermissionError)
    assert str(tmp_path / "x.nii") in str(err) and "lazyimg-tmp" not in str(err)


# --------------------------------------------------------------------------- killed saves


KILLED_SAVE = """
import sys, time, numpy as np, dask.array as da, lazyimg
def slow(b):
    time.sleep(0.5)
    return b
x = da.ones((16, 16, 16, 40), dtype="int16", chunks=(16, 16, 16, 1)).map_blocks(slow)
lazyimg.save(x, sys.argv[1])
"""


def test_killed_save_leaves_a_file_the_next_save_sweeps(tmp_path: Path) -> None:
    target = tmp_path / "out.nii"
    child = subprocess.Popen([sys.executable, "-c", KILLED_SAVE, str(target)], env=ENV)
    try:
        deadline = time.monotonic() + 120
        while not [p for p in tmp_path.iterdir() if tmpfiles.SUFFIX in p.name]:
            assert child.poll() is None, "the save ended before it could be killed"
            assert time.monotonic() < deadline, "no temporary file appeared"
            time.sleep(0.05)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    (left,) = [p for p in tmp_path.iterdir() if tmpfiles.SUFFIX in p.name]
    assert left.name.startswith(".out.nii.") and f"~{child.pid}~" in left.name
    assert not target.exists()

    save(np.zeros((2, 2, 2), "uint8"), tmp_path / "other.nii")  # too recent to sweep yet
    assert left.exists()
    old = time.time() - 2 * tmpfiles.STALE_SECONDS
    os.utime(left, (old, old))
    save(np.zeros((2, 2, 2), "uint8"), tmp_path / "other.nii")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.nii"]


def test_sweep_spares_live_processes_and_other_files(tmp_path: Path) -> None:
    live = Path(tmpfiles.temporary_name(str(tmp_path / "a.nii")))
    live.write_bytes(b"")
    foreign = tmp_path / ".a.nii.otherhost~1~abc.lazyimg-tmp"
    foreign.write_bytes(b"")
    plain = tmp_path / "notes.txt"
    plain.write_bytes(b"")
    old = time.time() - 10 * tmpfiles.STALE_SECONDS
    for p in (live, foreign, plain):
        os.utime(p, (old, old))
    assert tmpfiles.sweep(str(tmp_path)) == []
    assert all(p.exists() for p in (live, foreign, plain))
