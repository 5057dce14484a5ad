"""The command line's edges (issue 11 item 19) and what ``info`` and the HTML repr say (issue 14 item 5)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from nibabel.testing import data_path

import lazyimg
from lazyimg.cli import main
from lazyimg.testing import write_fmri


@pytest.fixture(scope="module")
def bold(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fmri(tmp_path_factory.mktemp("polish") / "bold.nii", (6, 5, 4, 8), tr=2.0)


def test_reduce_axis_out_of_range_is_an_error(bold: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "o.nii"
    assert main(["reduce", str(bold), "--op", "mean", "--axis", "9", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--axis 9" in err and "4 axes" in err and "0 to 3" in err
    assert not out.exists()


def test_reduce_time_on_3d_says_there_is_no_time(tmp_path: Path, capsys) -> None:
    path = tmp_path / "anat.nii"
    nib.save(nib.Nifti1Image(np.ones((3, 4, 5), "f4"), np.eye(4)), path)
    assert main(["reduce", str(path), "--op", "mean", "-o", str(tmp_path / "o.nii")]) == 2
    err = capsys.readouterr().err
    assert "has no time axis" in err and "anat.nii" in err and "0 to 2" in err


@pytest.mark.parametrize("axis", ["0", "1", "-2"])
def test_reduce_spatial_axis_keeps_the_geometry(bold: Path, tmp_path: Path, axis: str) -> None:
    out = tmp_path / "o.nii"
    assert (
        main(["reduce", str(bold), "--op", "max", "--axis", axis, "-o", str(out), "--quiet"]) == 0
    )
    src = nib.load(bold)
    data = np.asarray(src.dataobj)
    got = nib.load(out)
    ax = int(axis) % 4
    expected = data.max(axis=ax, keepdims=True)
    assert got.shape == expected.shape  # the reduced axis stays, one voxel thick
    np.testing.assert_array_equal(np.asarray(got.dataobj), expected)
    np.testing.assert_allclose(got.affine, src.affine)  # every remaining voxel where it was


def test_info_reports_every_file_then_fails(bold: Path, tmp_path: Path, capsys) -> None:
    missing = tmp_path / "missing.nii"
    assert main(["info", str(bold), str(missing), str(bold)]) == 2
    out, err = capsys.readouterr()
    assert out.count("bold.nii\n") == 2
    assert "missing.nii" in err and err.count("lazyimg: error") == 1
    assert main(["info", "--json", str(bold), str(missing)]) == 2
    infos = json.loads(capsys.readouterr().out)
    assert infos[0]["shape"] == [6, 5, 4, 8]
    assert infos[1]["path"] == str(missing) and "no such file" in infos[1]["error"]


def test_version() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "lazyimg", "--version"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"lazyimg {lazyimg.__version__}"


def test_closed_pipe_is_quiet(bold: Path) -> None:
    script = (
        "import subprocess, sys\n"
        "p = subprocess.Popen([sys.executable, '-m', 'lazyimg', 'info'] + [sys.argv[1]] * 400,"
        " stdout=subprocess.PIPE, stderr=subprocess.PIPE)\n"
        "p.stdout.close()\n"
        "err = p.stderr.read().decode()\n"
        "print(p.wait()); print(err)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, str(bold)], capture_output=True, text=True, check=True
    )
    status, _, err = proc.stdout.partition("\n")
    assert status == "0"
    assert "Broken pipe" not in err and "Errno 32" not in err and "Traceback" not in err


def test_info_text_for_people(tmp_path: Path, capsys) -> None:
    path = tmp_path / "anat.nii"
    shutil.copy(os.path.join(data_path, "anatomical.nii"), path)  # big-endian int16, 66 KiB
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "int16, big-endian" in out and ">i2" not in out
    assert "KiB on disk" in out and "0.0 MB" not in out and " MB" not in out
    assert "1 chunk " in out and "1 chunks" not in out
    assert "TR" not in out  # a 3D image has no TR line


def test_nibabel_warnings_become_one_note(tmp_path: Path) -> None:
    path = tmp_path / "bad.mnc"
    shutil.copy(os.path.join(data_path, "minc2_baddim.mnc"), path)
    proc = subprocess.run(
        [sys.executable, "-m", "lazyimg", "info", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    notes = [line for line in proc.stdout.splitlines() if line.strip().startswith("note")]
    assert len(notes) == 1 and "Invalid spacing declaration" in notes[0]


def test_html_repr_polish(tmp_path: Path) -> None:
    deep = tmp_path / ("a-very-long-folder-name-" * 8) / "bold.nii"
    deep.parent.mkdir()
    write_fmri(deep, (6, 5, 4, 8), tr=0.5)
    html = lazyimg.load(deep)._repr_html_()
    assert "word-break:break-all" in html
    assert "TR</th>" in html and ">500 ms<" in html
    assert ">2 x 2 x 2 mm<" in html  # voxel sizes without the TR
    assert "1 chunk " in html and "1 chunks" not in html
    assert "KiB" in html and " MB" not in html and " kB" not in html
    mem = lazyimg.load(nib.Nifti1Image(np.zeros((3, 4, 5), "f4"), np.eye(4)))._repr_html_()
    assert mem.count("in memory") == 1


def test_reduce_collects_nibabel_warnings_into_one_note(tmp_path: Path, capsys) -> None:
    path = tmp_path / "bad.mnc"
    shutil.copy(os.path.join(data_path, "minc2_baddim.mnc"), path)
    out = tmp_path / "o.nii"
    assert main(["reduce", str(path), "--op", "max", "--axis", "0", "-o", str(out), "--quiet"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and err[0].startswith("lazyimg: note: nibabel said: Invalid spacing")
    assert err[1] == f"wrote {out}"
