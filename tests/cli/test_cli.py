"""The ``lazyimg`` command, run as a user runs it: in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from lazyimg.testing import write_fmri


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lazyimg", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        check=False,
    )


@pytest.fixture(scope="module")
def bold(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fmri(tmp_path_factory.mktemp("cli") / "bold.nii.gz", (12, 10, 6, 20), tr=1.5)


def test_info_json_schema(bold: Path) -> None:
    proc = run("info", "--json", str(bold), str(bold))
    assert proc.returncode == 0, proc.stderr
    infos = json.loads(proc.stdout)
    assert len(infos) == 2
    info = infos[0]
    assert set(info) == {
        "path",
        "format",
        "shape",
        "dtype",
        "stored_dtype",
        "disk_order",
        "compression",
        "chunks",
        "size_on_disk",
        "nbytes",
        "affine",
        "voxel_sizes",
        "tr_seconds",
        "axes",
        "spatial_axes",
        "time_axis",
        "notes",
    }
    assert info["format"] == "Nifti1Image"
    assert info["shape"] == [12, 10, 6, 20]
    assert info["dtype"] == "int16"
    assert info["disk_order"] == "F"
    assert info["compression"] == "gzip"
    assert info["tr_seconds"] == pytest.approx(1.5)
    assert info["voxel_sizes"] == [2.0, 2.0, 2.0]
    assert np.allclose(info["affine"], nib.load(bold).affine)


def test_info_text(bold: Path) -> None:
    proc = run("info", str(bold))
    assert proc.returncode == 0, proc.stderr
    for word in ("Nifti1Image", "(12, 10, 6, 20)", "last axis slowest", "TR"):
        assert word in proc.stdout


def test_missing_file_is_one_line(tmp_path: Path) -> None:
    proc = run("info", str(tmp_path / "nope.nii"))
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1
    assert "nope.nii" in proc.stderr and "no such file" in proc.stderr


def test_not_an_image_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "notes.nii"
    bad.write_text("not an image")
    proc = run("info", str(bad))
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "notes.nii" in proc.stderr and "not an image" in proc.stderr


@pytest.mark.parametrize("op", ["mean", "std", "tsnr", "min", "max"])
def test_reduce(bold: Path, tmp_path: Path, op: str) -> None:
    out = tmp_path / f"{op}.nii.gz"
    proc = run("reduce", str(bold), "--op", op, "--axis", "time", "-o", str(out), "--quiet")
    assert proc.returncode == 0, proc.stderr
    data = np.asarray(nib.load(bold).dataobj).astype(np.float64)
    if op == "tsnr":
        mean, std = data.mean(-1), data.std(-1)
        expected = np.divide(mean, std, out=np.zeros_like(mean), where=std > 0)
    else:
        expected = getattr(data, op)(-1)
    got = nib.load(out)
    assert got.shape == data.shape[:3]
    assert np.allclose(np.asarray(got.dataobj), expected, rtol=1e-4, atol=1e-3)
    assert np.allclose(got.affine, nib.load(bold).affine)
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # no temporary left behind


def test_reduce_bad_axis_is_one_line(bold: Path, tmp_path: Path) -> None:
    proc = run("reduce", str(bold), "--op", "mean", "--axis", "x", "-o", str(tmp_path / "o.nii"))
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "--axis" in proc.stderr


def test_usage_error_exits_nonzero() -> None:
    proc = run("reduce")
    assert proc.returncode == 2
    assert "usage" in proc.stderr


def test_demo_small_end_to_end(tmp_path: Path) -> None:
    keep = tmp_path / "demo"
    proc = run("demo", "--size", "small", "--keep", str(keep))
    assert proc.returncode == 0, proc.stderr + proc.stdout
    out = proc.stdout
    for text in (
        "Opening it lazily",
        "One volume",
        "bytes" if "bytes" in out else "MB read",
        "Temporal SNR",
        "nibabel:",
        "maps agree: True",
    ):
        assert text in out
    assert (keep / "tsnr_lazyimg.nii.gz").exists()


def test_demo_cleans_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    from lazyimg._demo import run_demo

    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    buf = io.StringIO()
    assert run_demo("small", None, out=buf) == 0
    assert list(tmp_path.iterdir()) == []
    assert "Temporary files removed" in buf.getvalue()
