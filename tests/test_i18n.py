"""English and 简体中文: every string a person reads comes from the catalog, in both languages.

The oracle for "every string" is the code itself: Babel extracts what is wrapped in `_`/`N_`,
and an independent scan of the syntax trees finds prose that is not wrapped. The Chinese
catalog must cover the first and the second must be empty. Pages are then opened in Chinese
(AppTest here, a real browser in test_e2e_browser.py)."""
from __future__ import annotations

import ast
import re
import string
import threading
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_file
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

from i18n import LOCALES, _, language, set_language, use_language
from tests.apptest import NEXT_TOKEN, open_page
from tests.conftest import ROOT

CATALOG = LOCALES / "zh_CN" / "LC_MESSAGES"
SOURCES = ([ROOT / "app.py"] + sorted((ROOT / "pages").glob("*.py")) + sorted((ROOT / "ui").glob("*.py"))
           + sorted((ROOT / "recipes").glob("*.py")) + sorted((ROOT / "viz").glob("*.py")))
KEYWORDS = {"_": None, "N_": None, "ngettext": (1, 2)}
CJK = re.compile(r"[\u3400-\u9fff]")
# Two English words in a row: prose a person reads (after format fields and Plotly's %{…} are removed).
PROSE = re.compile(r"[A-Za-z][a-z]+[ ,;:'’]+[A-Za-z]?[a-z]+")
FIELDS = re.compile(r"%?\{[^{}]*\}")


def _po():
    with open(CATALOG / "messages.po", "rb") as f:
        return read_po(f)


def _extracted() -> dict[str, str]:
    """msgid -> where, for every string the code marks for translation (plurals: the singular)."""
    out = {}
    roots = [ROOT / "app.py", ROOT / "pages", ROOT / "ui", ROOT / "recipes", ROOT / "viz", ROOT / "core"]
    files = [p for r in roots for p in ([r] if r.is_file() else sorted(r.glob("*.py")))]
    for path in files:
        for line, message, _comments, _context in extract_from_file("python", str(path), keywords=KEYWORDS):
            m = message[0] if isinstance(message, tuple) else message  # a plural entry is keyed by its singular
            if m:
                out.setdefault(m, f"{path.relative_to(ROOT)}:{line}")
    return out


def _fields(text: str) -> set[str]:
    return {f for _lit, f, _spec, _conv in string.Formatter().parse(text) if f is not None}


def test_every_marked_string_has_a_chinese_translation():
    po = _po()
    missing = []
    for msgid, where in _extracted().items():
        entry = po.get(msgid)
        if entry is None or not entry.string or entry.fuzzy:
            missing.append(f"{where}: {msgid[:70]!r}")
    assert not missing, f"{len(missing)} strings lack a translation (run the steps in README, Translations):\n" + \
        "\n".join(missing[:40])


def test_translations_keep_every_placeholder_and_read_as_chinese():
    bad = []
    for entry in _po():
        if not entry.id or not entry.string:
            continue
        ids = entry.id if isinstance(entry.id, tuple) else (entry.id,)
        strs = entry.string if isinstance(entry.string, tuple) else (entry.string,)
        for msgid, msgstr in zip(ids * len(strs), strs):
            if _fields(msgid) != _fields(msgstr):
                bad.append(f"fields differ: {msgid[:50]!r} -> {msgstr[:50]!r}")
            if PROSE.search(FIELDS.sub(" ", msgid)) and not CJK.search(msgstr):
                bad.append(f"not Chinese: {msgid[:50]!r} -> {msgstr[:50]!r}")
    assert not bad, "\n".join(bad[:40])


def test_the_compiled_catalog_is_the_catalog():
    """messages.mo (what the app reads) holds exactly the translations of messages.po."""
    def plain(x):
        return tuple(x) if isinstance(x, (list, tuple)) else x

    po = {plain(e.id): plain(e.string) for e in _po() if e.id and e.string and not e.fuzzy}
    with open(CATALOG / "messages.mo", "rb") as f:
        mo = {plain(e.id): plain(e.string) for e in read_mo(f) if e.id}
    assert mo == po, "messages.mo is stale: pybabel compile -d i18n/locales -D messages"


def _docstrings(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                ids.add(id(first.value))
    return ids


def _unwrapped_prose(path: Path, root: Path = ROOT) -> list[str]:
    """String literals (and f-string parts) holding prose that are not an argument of _, N_ or ngettext,
    not a docstring, not an English key looked up or compared (`tabs["Head atlas"]`, `view == "…"`),
    and not on a line marked `# i18n: skip`."""
    source = path.read_text()
    lines = source.splitlines()
    tree = ast.parse(source)
    skip = _docstrings(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in KEYWORDS:
            skip |= {id(n) for a in node.args for n in ast.walk(a)}
        elif isinstance(node, ast.Subscript):
            skip |= {id(n) for n in ast.walk(node.slice)}
        elif isinstance(node, ast.Compare):
            skip |= {id(n) for c in [node.left, *node.comparators] for n in ast.walk(c)
                     if isinstance(n, ast.Constant)}
    found = []
    for node in ast.walk(tree):
        if id(node) in skip or not isinstance(node, ast.Constant) or not isinstance(node.value, str):
            continue
        if "# i18n: skip" in lines[node.lineno - 1] or not PROSE.search(FIELDS.sub(" ", node.value)):
            continue
        found.append(f"{path.relative_to(root)}:{node.lineno}: {node.value[:60]!r}")
    return found


def test_no_prose_is_left_out_of_the_catalog():
    found = [f for path in SOURCES for f in _unwrapped_prose(path)]
    assert not found, (f"{len(found)} strings a person may read are not wrapped in _() or N_() "
                       "(or marked `# i18n: skip` if no person reads them):\n" + "\n".join(found[:60]))


def test_the_scan_finds_an_unwrapped_string(tmp_path):
    """The scan above is not vacuous: it flags what a careless edit leaves, and only that."""
    probe = tmp_path / "probe.py"
    probe.write_text('"""A docstring is fine."""\nfrom i18n import _\n'
                     'st.caption(_("Wrapped text is fine"))\n'
                     'st.caption(f"Layer {n} of the model")\n'
                     'if tabs["Head atlas"].open and view == "Logit lens": pass\n'
                     'st.info("Internal words here")  # i18n: skip\n'
                     'st.button("Compute the map")\n')
    found = sorted(f.split(":")[1] for f in _unwrapped_prose(probe, root=tmp_path))
    assert found == ["4", "7"], found


def test_the_language_is_per_thread_and_scoped():
    with use_language("zh"):
        zh = _("Next token")
        assert CJK.search(zh), zh
        seen = {}

        def other():
            seen["lang"], seen["text"] = language(), _("Next token")
        t = threading.Thread(target=other)
        t.start()
        t.join()
        assert seen == {"lang": "en", "text": "Next token"}  # another session's thread is not touched
    assert language() == "en" and _("Next token") == "Next token"
    assert set_language("xx") == "en"  # a hand-edited ?lang= falls back to English


# ---- the app in Chinese (AppTest; the browser test looks at the screen) ---------------------------
PAGES = ["app.py", "pages/0_Tour.py", "pages/1_Attention.py", "pages/2_Embeddings.py", "pages/3_Weights.py",
         "pages/4_Generation.py", "pages/5_Prediction.py", "pages/6_Experiments.py", "pages/7_N-grams.py",
         "pages/8_Features.py", "pages/9_Steering.py"]


@pytest.mark.parametrize("page", PAGES)
def test_every_page_opens_in_chinese_from_a_link(tiny_env, page):
    at = open_page(page, query={"lang": "zh"})
    assert CJK.search(at.title[0].value), at.title[0].value
    assert at.query_params["lang"] == ["zh"] or at.query_params["lang"] == "zh"
    texts = [m.value for m in at.markdown] + [c.value for c in at.caption]
    assert any(CJK.search(t) for t in texts)


def test_the_sidebar_switch_changes_the_language_and_the_link(tiny_env):
    at = open_page(NEXT_TOKEN)
    english = at.title[0].value
    assert not CJK.search(english)
    radio = next(r for r in at.sidebar.radio if "语言" in r.label)
    radio.set_value("zh").run()
    assert not at.exception
    assert CJK.search(at.title[0].value)
    assert at.query_params["lang"] in ("zh", ["zh"])
    next(r for r in at.sidebar.radio if "语言" in r.label).set_value("en").run()
    assert at.title[0].value == english


# ---- Chinese in exported figures -------------------------------------------------------------------
def test_exported_png_draws_chinese_glyphs_not_boxes():
    """Two different Chinese titles give different pixels: without a CJK font both come out as the
    same row of boxes. (fonts-noto-cjk in .ci/run and README; the app warns when none is found.)"""
    import os

    import numpy as np
    import plotly.graph_objects as go

    from viz.export import static_export, to_png
    from viz.fonts import cjk_font, cjk_font_missing

    if not static_export().available:
        if os.environ.get("CI"):
            pytest.fail(static_export().message)
        pytest.skip("needs kaleido and chromium")
    if os.environ.get("CI"):
        assert cjk_font() is not None, "no CJK font: apt-get install fonts-noto-cjk"
    if cjk_font_missing():
        pytest.skip("no CJK font on this machine")

    def pixels(title: str):
        from io import BytesIO

        from PIL import Image
        fig = go.Figure(go.Bar(x=[1, 2], y=[1, 2]), layout=dict(title=title, width=400, height=200))
        return np.asarray(Image.open(BytesIO(to_png(fig, width=400, height=200, scale=1))).convert("L"))

    a, b, blank = pixels("注意力头"), pixels("嵌入向量"), pixels(" ")
    assert (a != blank).sum() > 50 and (b != blank).sum() > 50  # something is drawn
    assert (a != b).sum() > 50  # and it is the characters, not the same boxes


def test_without_a_chinese_font_the_page_says_how_to_fix_it(tiny_env, monkeypatch):
    from viz import fonts

    monkeypatch.setattr(fonts, "cjk_font_missing", lambda: True)
    zh = open_page(NEXT_TOKEN, query={"lang": "zh"})
    assert any("fonts-noto-cjk" in w.value for w in zh.sidebar.warning)
    en = open_page(NEXT_TOKEN, query={"lang": "en"})  # English figures need no such font
    assert not any("fonts-noto-cjk" in w.value for w in en.sidebar.warning)


def test_nothing_is_translated_at_import_time():
    """A `_()` run when a module is imported would fix the text in whatever language came first,
    for every session: module-level and class-level constants are marked with N_ instead."""
    found = []

    def calls(node):
        return [n for n in ast.walk(node) if isinstance(n, ast.Call) and getattr(n.func, "id", "") in KEYWORDS
                and n.func.id != "N_"]

    for path in SOURCES[1 + len(list((ROOT / "pages").glob("*.py"))):] + sorted((ROOT / "core").glob("*.py")):
        def visit(body):
            for node in body:
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    defaults = node.args.defaults + [d for d in node.args.kw_defaults if d] + node.decorator_list
                    found.extend(f"{path.name}:{c.lineno}" for d in defaults for c in calls(d))
                elif isinstance(node, ast.ClassDef):
                    visit(node.body)
                else:
                    found.extend(f"{path.name}:{c.lineno}" for c in calls(node))
        visit(ast.parse(path.read_text()).body)
    assert not found, found
