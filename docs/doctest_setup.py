"""Pytest plugin for the documentation's examples, which run as doctests.

Loaded with ``-p doctest_setup`` (see ``[tool.pytest.ini_options]``); it is not a
``conftest.py`` because tests import ``tests/conftest.py`` as ``conftest``. Each
page under docs/ runs in a fresh temporary directory holding the small synthetic
runs the pages use: ``bold.nii.gz`` and ``bold.nii`` (32 x 32 x 16 voxels, 40
volumes, TR 2 s) and ``sub-01_bold.nii.gz`` ... ``sub-03_bold.nii.gz``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lazyimg.testing import write_fmri

DOCS = Path(__file__).resolve().parent
SHAPE = (32, 32, 16, 40)
#: Not pages: the Sphinx configuration, the build, and the picture script
#: (tests/cli/test_pictures.py runs that one).
SKIP = ("conf.py", "doctest_setup.py", "_build", "_generated", "images")


def pytest_ignore_collect(collection_path: Path) -> bool | None:
    path = collection_path.resolve()
    if (path.parent == DOCS and path.name in SKIP) or any(
        DOCS / name in path.parents for name in SKIP
    ):
        return True
    return None


@pytest.fixture(autouse=True)
def _docs_page_data(request: pytest.FixtureRequest) -> None:
    if DOCS not in Path(str(request.node.path)).resolve().parents:
        return
    tmp_path = request.getfixturevalue("tmp_path")
    monkeypatch = request.getfixturevalue("monkeypatch")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LAZYIMG_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    write_fmri(tmp_path / "bold.nii.gz", SHAPE, tr=2.0)
    write_fmri(tmp_path / "bold.nii", SHAPE, tr=2.0)
    for s in (1, 2, 3):
        write_fmri(tmp_path / f"sub-{s:02d}_bold.nii.gz", SHAPE, tr=2.0, seed=s)
