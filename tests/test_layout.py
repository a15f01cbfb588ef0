"""The shape of the house (shared/STYLE.md), checked: thin pages, and imports that flow one way.

Pages draw widgets and show what a recipe returns: no array maths, so no numpy, pandas or
torch, and about a hundred lines.

Imports go down, never up or sideways, and no file is an exception:

    pages (and app.py)  ->  ui  ->  recipes  ->  viz, core        (i18n: under all of them)

- a page imports recipes, ui, i18n, streamlit and the standard library, nothing else: what it
  shows comes from a recipe, and a recipe's long work is run by ui.progress (recipes.LongJob);
- ui, the frame every page shares (sidebar, model store, caches, figure display and its files,
  links, long jobs), imports what is below it: recipes, and also core (the model store and the
  caches hold core's objects) and viz (viz.export writes a figure's files); besides those only
  i18n, streamlit and the standard library (the maths is core's, the figures are viz's);
- recipes import viz, core, i18n and any library but streamlit: never ui or a page, so the
  batch exporter (`python -m recipes.export`), notebooks and benchmarks run them without a browser;
- viz imports i18n and its plotting libraries: no core, recipes or ui, no torch, transformers or
  streamlit (arrays in, figures out);
- core imports i18n and any library but streamlit: never ui, recipes or viz;
- i18n imports no other package of this project.

Every import of every module counts: at the top or inside a function (lazy), absolute or relative."""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

PAGES = sorted((ROOT / "pages").glob("*.py")) + [ROOT / "app.py"]
MAX_PAGE_LINES = 110
MATHS = {"numpy", "pandas", "torch", "scipy", "sklearn", "umap"}

# The project's own packages, and which of them each one may import (besides itself).
MAY_IMPORT = {
    "pages": {"recipes", "ui", "i18n"},
    "ui": {"recipes", "viz", "core", "i18n"},
    "recipes": {"viz", "core", "i18n"},
    "viz": {"i18n"},
    "core": {"i18n"},
    "i18n": set(),
}
PROJECT = set(MAY_IMPORT) | {"app", "tests", "benchmarks", "training", "docs", "bundled"}
STDLIB = set(sys.stdlib_module_names)
ONLY_LIBRARIES = {"pages": {"streamlit"}, "ui": {"streamlit"}}  # and the standard library; nothing else
REFUSED_LIBRARIES = {"recipes": {"streamlit"}, "viz": {"streamlit", "torch", "transformers"}, "core": {"streamlit"},
                     "i18n": {"streamlit"}}
MODULES = [ROOT / "app.py"] + [p for package in MAY_IMPORT for p in sorted((ROOT / package).rglob("*.py"))]


def package_of(path: Path) -> str:
    parts = path.relative_to(ROOT).parts
    return "pages" if len(parts) == 1 else parts[0]  # app.py is a page


def imported(path: Path) -> set[str]:
    """Top-level names a file imports, anywhere in it (lazy imports included). A relative import
    counts as what it reaches: `from . import View` in recipes/attention.py is recipes."""
    here = path.relative_to(ROOT).with_suffix("").parts[:-1]  # the file's package, as parts
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = here[:len(here) - (node.level - 1)] if node.level else ()
            full = (*base, *(node.module or "").split(".")) if node.module else base
            names.add(full[0] if full else "<the repository root>")
    return names


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_pages_are_thin(page):
    lines = len(page.read_text().splitlines())
    assert lines <= MAX_PAGE_LINES, f"{page.name} has {lines} lines: move what it computes into its recipe"
    assert not imported(page) & MATHS, f"{page.name} imports {sorted(imported(page) & MATHS)}: maths belongs in core"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_point_down(path):
    package = package_of(path)
    names = imported(path) - {package}
    where = f"{path.relative_to(ROOT)} (in {package}/)"
    upward = (names & PROJECT) - MAY_IMPORT[package]
    assert not upward, (f"{where} imports {sorted(upward)}; {package} may import only "
                        f"{sorted(MAY_IMPORT[package]) or 'nothing of this project'} (see tests/test_layout.py)")
    libraries = names - PROJECT - STDLIB
    if package in ONLY_LIBRARIES:
        refused = libraries - ONLY_LIBRARIES[package]
    else:
        refused = libraries & REFUSED_LIBRARIES[package]
    assert not refused, f"{where} imports {sorted(refused)}, which {package} must not (see tests/test_layout.py)"


def _private(name: str) -> bool:
    """A name a module keeps to itself: a leading underscore (not `_`, gettext's, nor a dunder)."""
    return name.startswith("_") and name != "_" and not (name.startswith("__") and name.endswith("__"))


def private_names_used(path: Path) -> list[str]:
    """The project's private names a file reaches for: `from ui.x import _name`, and `_name` read as an
    attribute of anything it imported from the project (`features._load`, `ui.shell._named`)."""
    tree = ast.parse(path.read_text())
    imported_names, found = set(), []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in PROJECT:
            found += [f"from {node.module} import {a.name}" for a in node.names if _private(a.name)]
            imported_names |= {a.asname or a.name for a in node.names}
        elif isinstance(node, ast.Import):
            imported_names |= {a.asname or a.name.split(".")[0] for a in node.names
                               if a.name.split(".")[0] in PROJECT}
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            root = node.value
            while isinstance(root, ast.Attribute):
                root = root.value
            if isinstance(root, ast.Name) and root.id in imported_names:
                found.append(ast.unparse(node))
    return found


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_pages_use_only_public_names(page):
    """A page is written against the public face of ui and recipes: a private name may change without notice."""
    assert not private_names_used(page), f"{page.name} uses private names: {private_names_used(page)}"


def test_the_private_name_reader_sees_imports_and_attributes(tmp_path):
    page = tmp_path / "page.py"
    page.write_text("import ui.shell\nimport streamlit as st\nfrom i18n import _\nfrom ui import features\n"
                    "from ui.figures import _add_to_deck, show\nfrom recipes import tour as t\n"
                    "features._load(1)\nui.shell._named('x')\nt._plan.__doc__\nshow(t.STEPS)\n"
                    "st._private\nst.session_state['_kept']\nfeatures.__name__\n_('text')\n")
    assert private_names_used(page) == ["from ui.figures import _add_to_deck", "features._load", "ui.shell._named",
                                        "t._plan"]


def test_every_package_is_read():
    assert {package_of(p) for p in MODULES} == set(MAY_IMPORT)
    assert len(MODULES) > 40


def test_the_import_reader_sees_lazy_and_relative_imports(monkeypatch, tmp_path):
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    (tmp_path / "viz").mkdir()
    module = tmp_path / "viz" / "figures.py"
    module.write_text("from __future__ import annotations\nfrom .common import esc\nimport plotly.io as pio\n\n"
                      "def draw():\n    from core.trace import Trace\n    from ..recipes import View\n"
                      "    import torch.nn\n")
    assert imported(module) == {"__future__", "viz", "plotly", "core", "recipes", "torch"}
