"""The example notebooks re-execute on small generated data and read well."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import run_notebook


@pytest.mark.parametrize("name", ["01_quickstart.ipynb", "02_bigger_than_comfortable.ipynb"])
def test_notebook_runs(name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    nb = run_notebook(name, tmp_path, monkeypatch)
    text = "".join(
        str(out.get("text", ""))
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.outputs
    )
    assert "bytes read" in text or "MiB read" in text
    if name.startswith("02"):
        assert "100% Completed" in text and "memory above" in text
