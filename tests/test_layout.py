"""The shape of the house (shared/STYLE.md), checked: thin pages, and imports that flow one way.

Pages draw widgets and show what a recipe returns: no array maths, so no numpy, pandas or
torch, and about a hundred lines. Recipes, figure builders and core never import
streamlit, so the batch exporter, notebooks and benchmarks use them without a browser."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

PAGES = sorted((ROOT / "pages").glob("*.py")) + [ROOT / "app.py"]
MAX_PAGE_LINES = 110
MATHS = {"numpy", "pandas", "torch", "scipy", "sklearn", "umap"}


def imported(path: Path) -> set[str]:
    """Top-level package names a file imports, anywhere in it (lazy imports included)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_pages_are_thin(page):
    lines = len(page.read_text().splitlines())
    assert lines <= MAX_PAGE_LINES, f"{page.name} has {lines} lines: move what it computes into its recipe"
    assert not imported(page) & MATHS, f"{page.name} imports {sorted(imported(page) & MATHS)}: maths belongs in core"


@pytest.mark.parametrize("package", ["core", "viz", "recipes"])
def test_core_viz_and_recipes_never_import_streamlit(package):
    offenders = [p.name for p in (ROOT / package).glob("*.py") if "streamlit" in imported(p)]
    assert not offenders, f"{package}/{offenders} import streamlit"


def test_figure_builders_never_touch_a_model():
    offenders = [p.name for p in (ROOT / "viz").glob("*.py") if imported(p) & {"torch", "transformers", "core"}
                 and p.name != "export.py"]  # the batch exporter's command line loads a model to export it
    assert not offenders, f"viz/{offenders} import torch, transformers or core"
