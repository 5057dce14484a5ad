"""dask's chunk size read from its shipped dask.yaml equals what dask itself says."""

from __future__ import annotations

import os

import dask
import pytest
import yaml
from dask.utils import parse_bytes

from lazyimg._daskconf import _parse_size, _shipped_default, chunk_limit, shipped_chunk_size


def test_shipped_value_is_dasks_default(monkeypatch: pytest.MonkeyPatch) -> None:
    path = os.path.join(os.path.dirname(dask.__file__), "dask.yaml")
    with open(path) as f:
        text = f.read()
    assert shipped_chunk_size(text) == parse_bytes(yaml.safe_load(text)["array"]["chunk-size"])
    for name in [n for n in os.environ if n.startswith("DASK_")]:
        monkeypatch.delenv(name)
    if not any(os.path.exists(p) for p in dask.config.paths):
        assert _shipped_default() == shipped_chunk_size(text)


def test_dask_imported_means_dask_decides() -> None:
    with dask.config.set({"array.chunk-size": "3KiB"}):
        assert chunk_limit() == 3072


@pytest.mark.parametrize(
    "text", ["128MiB", '"128MiB"', "'1 GB'", "100", "5.4 kB", "1kiB", "64M  # comment", "2 tib"]
)
def test_sizes_as_dask_parses_them(text: str) -> None:
    assert _parse_size(text) == parse_bytes(yaml.safe_load("v: " + text)["v"])


@pytest.mark.parametrize("text", ["1e6", "MB", "5 foos", "[1]", "null"])
def test_unusual_sizes_are_left_to_dask(text: str) -> None:
    assert _parse_size(text) is None


@pytest.mark.parametrize(
    "text",
    [
        "array:\n  chunk-size: 1MiB\n  chunk-size: 2MiB\n",  # twice: unsure
        "array:\n  chunk-size: !!python/name:os.sep\n",
        "dataframe:\n  chunk-size: 1MiB\n",  # not under array
        "array: {chunk-size: 1MiB}\n",  # flow style
    ],
)
def test_unusual_layouts_are_left_to_dask(text: str) -> None:
    assert shipped_chunk_size(text) is None
