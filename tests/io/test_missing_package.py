"""A file whose reader is not installed gets an error naming the extra, never "damaged".

Each case runs in a fresh interpreter in which the package cannot be imported
(``sys.modules[name] = None`` makes ``import name`` raise, as when it is absent).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import copy_nibabel_file

from lazyimg.testing import make_image

SCRIPT = """
import sys
for name in {blocked!r}:
    sys.modules[name] = None
import lazyimg
try:
    lazyimg.load({path!r})
except lazyimg.MissingDependencyError as err:
    assert isinstance(err, ImportError)
    print(err)
"""


def _message(path: Path, blocked: list[str]) -> str:
    code = textwrap.dedent(SCRIPT.format(blocked=blocked, path=str(path)))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_minc2_without_h5py(tmp_path: Path) -> None:
    path = copy_nibabel_file("minc2_4d.mnc", tmp_path)
    message = _message(path, ["h5py"])
    assert path.name in message and "h5py" in message
    assert 'pip install "lazyimg[minc]"' in message
    assert "damaged" not in message


def test_zstd_without_its_library(tmp_path: Path) -> None:
    zstd = pytest.importorskip("backports.zstd")
    plain = make_image(tmp_path / "img.nii", np.zeros((4, 4, 3), "int16"))
    path = tmp_path / "img.nii.zst"
    path.write_bytes(zstd.compress(plain.read_bytes()))
    message = _message(path, ["backports.zstd", "backports", "compression.zstd"])
    assert path.name in message and "zstd" in message
    assert 'pip install "lazyimg[zstd]"' in message
    assert "damaged" not in message


FEATURE = """
import sys
for name in {blocked!r}:
    sys.modules[name] = None
import lazyimg
try:
    {call}
except lazyimg.MissingDependencyError as err:
    assert isinstance(err, ImportError)
    print(err)
"""


def _feature_message(call: str, blocked: list[str]) -> str:
    code = textwrap.dedent(FEATURE.format(blocked=blocked, call=call))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_pictures_without_matplotlib(tmp_path: Path) -> None:
    path = make_image(tmp_path / "img.nii", np.zeros((4, 4, 3), "int16"))
    message = _feature_message(f"lazyimg.load({str(path)!r}).plot_slices()", ["matplotlib"])
    assert 'pip install "lazyimg[plot]"' in message


@pytest.mark.parametrize(
    ("url", "blocked", "extra"),
    [
        ("s3://bucket/sub-01/bold.nii.gz", ["s3fs"], "s3"),
        ("gs://bucket/sub-01/bold.nii.gz", ["gcsfs"], "gcs"),
        ("https://example.org/sub-01/bold.nii.gz", ["aiohttp"], "http"),
    ],
)
def test_urls_without_their_filesystem(url: str, blocked: list[str], extra: str) -> None:
    """No request is made: the missing package is found before any network access."""
    message = _feature_message(f"lazyimg.load({url!r})", blocked)
    assert url in message and f'pip install "lazyimg[{extra}]"' in message
    assert "damaged" not in message
