"""The documentation's examples run as doctests (pytest collects docs/**/*.md).

Each page runs in a fresh temporary directory holding the small synthetic runs
the pages use: ``bold.nii.gz`` and ``bold.nii`` (32 x 32 x 16 voxels, 40
volumes, TR 2 s) and ``sub-01_bold.nii.gz`` ... ``sub-03_bold.nii.gz``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lazyimg.testing import write_fmri

SHAPE = (32, 32, 16, 40)


@pytest.fixture(autouse=True)
def _page_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LAZYIMG_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    write_fmri(tmp_path / "bold.nii.gz", SHAPE, tr=2.0)
    write_fmri(tmp_path / "bold.nii", SHAPE, tr=2.0)
    for s in (1, 2, 3):
        write_fmri(tmp_path / f"sub-{s:02d}_bold.nii.gz", SHAPE, tr=2.0, seed=s)


collect_ignore = ["conf.py", "_build", "images"]  # images: tests/cli/test_pictures.py runs it
