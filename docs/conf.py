"""Sphinx configuration of lazyimg's documentation (build: sphinx-build -W -b html docs docs/_build/html)."""

from __future__ import annotations

import contextlib
import io
import os
import sys
from pathlib import Path

HERE = Path(__file__).parent
os.environ["COLUMNS"] = "100"  # argparse wraps help text to the terminal width
sys.path.insert(0, str(HERE.parent))  # document this source tree, installed or not

import lazyimg  # noqa: E402
from lazyimg import cli  # noqa: E402

project = "lazyimg"
author = "the lazyimg developers"
copyright = "the lazyimg developers"
release = lazyimg.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
    "numpydoc",
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build", "_generated/*.txt"]
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

autodoc_member_order = "bysource"
autodoc_typehints = "none"  # numpydoc sections give the types
numpydoc_show_class_members = False
numpydoc_xref_param_type = False

html_theme = "furo"
html_title = "lazyimg"


def _write_cli_help() -> None:
    """The CLI reference quotes ``lazyimg ... --help`` as the parser prints it now."""
    out = HERE / "_generated"
    out.mkdir(exist_ok=True)
    parser = cli._parser()
    texts = {"lazyimg": parser.format_help()}
    for action in parser._subparsers._group_actions if parser._subparsers else []:
        for name, sub in getattr(action, "choices", {}).items():
            texts[f"lazyimg-{name}"] = sub.format_help()
    for name, text in texts.items():
        target = out / f"{name}.txt"
        if not target.exists() or target.read_text() != text:
            target.write_text(text)


with contextlib.redirect_stdout(io.StringIO()):
    _write_cli_help()


#: Pages the index lists that are written alongside the rest; listed once they exist.
OPTIONAL_PAGES = ("remote", "guarantees")


def _drop_missing_pages(app: object, docname: str, source: list[str]) -> None:
    if docname == "index":
        for page in OPTIONAL_PAGES:
            if not (HERE / f"{page}.md").exists():
                source[0] = source[0].replace(f"\n{page}\n", "\n")


def _reread_index(*args: object) -> list[str]:
    return ["index"]  # its toctree depends on which optional pages exist now


def setup(app: object) -> None:
    app.connect("source-read", _drop_missing_pages)  # type: ignore[attr-defined]
    app.connect("env-get-outdated", _reread_index)  # type: ignore[attr-defined]
