"""Unreadable files: a PermissionError that is a LazyImgError naming the file, never a crash.

nibabel hands ``.gz`` paths to indexed_gzip, which dies with SIGSEGV on a file it
cannot open; lazyimg checks readability first. Each case runs in a fresh process
(a crash would otherwise take the suite down). As root, the process runs without
the capabilities that bypass file permissions.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import copy_nibabel_file, sample

from lazyimg.testing import make_image

PROBE = """
import os, sys, lazyimg
path, lock_later = sys.argv[1], sys.argv[2] == "later"
try:
    img = lazyimg.load(path)
    if lock_later:  # readable at load, not when a task first opens it
        os.chmod(path, 0)
    img.data.sum().compute()
except PermissionError as err:
    assert isinstance(err, lazyimg.LazyImgError), type(err)
    print("DENIED", err)
    raise SystemExit(0)
print("READ")
"""


def _unprivileged() -> list[str]:
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: permissions cannot be enforced")
    return [setpriv, "--bounding-set", "-dac_override,-dac_read_search"]


def _load_in_new_process(path: Path, when: str = "now") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*_unprivileged(), sys.executable, "-c", PROBE, str(path), when],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )


def _generated(tmp_path: Path, name: str) -> tuple[Path, Path]:
    data = sample((4, 5, 6), "float32" if name.endswith("mgz") else "int16")
    path = make_image(tmp_path / name, data, klass=_klass(name))
    locked = path.with_suffix(".img") if name.endswith(".hdr") else path
    return path, locked


def _klass(name: str):  # type: ignore[no-untyped-def]
    import nibabel as nib

    if name.endswith(".mgz"):
        return nib.MGHImage
    if name.endswith(".hdr"):
        return nib.AnalyzeImage
    return nib.Nifti1Image


@pytest.mark.parametrize("name", ["a.nii.gz", "a.mgz", "a.nii", "a.hdr"])
def test_unreadable_generated_file(tmp_path: Path, name: str) -> None:
    path, locked = _generated(tmp_path, name)
    locked.chmod(0)
    try:
        done = _load_in_new_process(path)
    finally:
        locked.chmod(0o644)
    assert done.returncode == 0, f"crashed or failed (rc {done.returncode}): {done.stderr[-2000:]}"
    assert done.stdout.startswith("DENIED"), done.stdout + done.stderr[-2000:]
    assert locked.name in done.stdout, done.stdout


@pytest.mark.parametrize("name", ["a.nii.gz", "a.nii"])
def test_file_made_unreadable_after_load(tmp_path: Path, name: str) -> None:
    path, _ = _generated(tmp_path, name)
    try:
        done = _load_in_new_process(path, "later")
    finally:
        path.chmod(0o644)
    assert done.returncode == 0, f"crashed or failed (rc {done.returncode}): {done.stderr[-2000:]}"
    assert done.stdout.startswith("DENIED"), done.stdout + done.stderr[-2000:]
    assert path.name in done.stdout, done.stdout


@pytest.mark.parametrize(
    ("name", "locked"),
    [
        ("example4d+orig.HEAD", "example4d+orig.BRIK.gz"),
        ("minc1_1_scale.mnc", "minc1_1_scale.mnc"),
        ("phantom_varscale.PAR", "phantom_varscale.REC"),
    ],
)
def test_unreadable_shipped_file(tmp_path: Path, name: str, locked: str) -> None:
    path = copy_nibabel_file(name, tmp_path)
    (tmp_path / locked).chmod(0)
    try:
        done = _load_in_new_process(path)
    finally:
        (tmp_path / locked).chmod(0o644)
    assert done.returncode == 0, f"crashed or failed (rc {done.returncode}): {done.stderr[-2000:]}"
    assert done.stdout.startswith("DENIED"), done.stdout + done.stderr[-2000:]
    assert locked in done.stdout, done.stdout


def test_permission_error_is_a_lazyimg_error() -> None:
    import lazyimg

    assert issubclass(lazyimg.ImagePermissionError, PermissionError)
    assert issubclass(lazyimg.ImagePermissionError, lazyimg.LazyImgError)
