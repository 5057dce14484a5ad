"""The documentation covers the public API and lists its pages (built by .ci/run with -W)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import lazyimg

DOCS = Path(__file__).parents[1] / "docs"


def test_every_public_name_is_in_the_api_reference() -> None:
    api = (DOCS / "api.md").read_text()
    missing = [
        name for name in lazyimg.__all__ if not re.search(rf"lazyimg\.{re.escape(name)}\b", api)
    ]
    assert not missing, f"docs/api.md does not document {missing}"


def test_every_page_is_in_a_toctree() -> None:
    index = (DOCS / "index.md").read_text()
    pages = sorted(p.relative_to(DOCS).with_suffix("").as_posix() for p in DOCS.rglob("*.md"))
    pages = [p for p in pages if not p.startswith("_build") and p != "index"]
    unlisted = [p for p in pages if f"\n{p}\n" not in index]
    assert not unlisted, f"docs/index.md does not list {unlisted}"


def test_readme_quickstart_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's Quickstart, verbatim: it makes its own bold.nii.gz, as a newcomer runs it."""
    readme = (DOCS.parent / "README.md").read_text()
    found = re.search(r"## Quickstart\n\n```python\n(.*?)```", readme, re.S)
    assert found, "README has no Quickstart code block"
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    exec(compile(found.group(1), "README.md", "exec"), namespace)
    assert (tmp_path / "bold.nii.gz").exists() and (tmp_path / "tmean.nii.gz").exists()
