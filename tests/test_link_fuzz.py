"""Every link parameter, fed hostile values (issue 25): no page raises, none shows a server path or a
traceback (on the page or in the address bar), no text becomes a live link, and the address bar
afterwards holds the value the page corrected it to.

The parameters are not listed here: they are read from the app itself. Each page, and each of its
tabs, is opened once with a plain link; what `ui.url.url_state` writes to the address bar for that
view is its registry of link parameters (every control made through `ui.controls` is in it). So a
new control, tab or page is fuzzed without editing this test. Each view is then opened again as a
fresh link would open it, with every one of its parameters (and sometimes the shared ones: prompt,
model, kept end, style, language) set to a value drawn, seeded, from the hostile ones below.
"""
from __future__ import annotations

import json
import random
import re

import pytest
from streamlit.testing.v1 import AppTest

from tests import apptest
from tests.conftest import ROOT
from tests.test_links import live_links
from ui.shell import PAGES
from ui.url import LINK_KEYS, to_link

SEED = 25
RUNS_PER_VIEW = 1  # hostile links per view, each setting every one of its parameters (a new seed: other values)

HOSTILE = [
    "[" * 10_000, "[" * 5_000 + "]" * 5_000, '{"a": ' * 3_000 + "1" + "}" * 3_000, "x" * 10_000, "9" * 10_000,
    "NaN", "nan", "inf", "-inf", "1e309", "-1e309", "-1", "0", "1.5", "999999999999999999999", "true", "null",
    "", " ", "\x00", "\ud800", "a\udfffb", "\ud83d\ude00", "中文", "<script>alert(1)</script>", "**bold** _it_",
    "https://evil.example/x?y=1", "www.evil.example", "mail@evil.example", "/etc/passwd", "../../etc/passwd",
    "~/.ssh/id_rsa", "C:\\Windows\\system32", '{"a": 1}', "[1, 2]", "[[0, 1], [1, 0]]", '["x", "y"]',
    "[NaN]", "[1e309]", "[[[[0]]]]", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
]
SHARED = {"prompt": ["", " ", "\ud800 hello", "www.evil.example " * 3, "x" * 10_000],
          "model": ["/etc", "www.evil.example", "../" * 100, "a" * 300, "mini-gpt2-kjv"],
          "keep": ["middle", "[]"], "style": ["neon", "dark"], "lang": ["fr", "zh", "\ud800"]}
LONG_PROMPT = " ".join(f"w{i}" for i in range(1500))  # past the context: the page says what it dropped
MARKDOWN = ("markdown", "caption", "warning", "info", "error")
SHOWN = ("markdown", "caption", "warning", "info", "error", "exception", "text", "code", "metric", "title",
         "subheader", "header")


def registry() -> dict[tuple[str, str | None], tuple[str | None, list[str]]]:
    """(page, tab) -> (the tab's link parameter, the view's link parameters), for every page of the app and
    every tab it shows, as the address bar lists them after the view is drawn."""
    found, at = {}, open_view(apptest.NEXT_TOKEN, {})
    for file, _label, _icon in PAGES:
        if not (ROOT / file).exists():
            continue
        at.switch_page(file).run()
        assert not at.exception, (file, at.exception)
        tabs = [t.label for t in at.tabs]
        key = next((k for k in at.query_params if k not in LINK_KEYS and tabs and link(at, k) == tabs[0]), None)
        for tab in (tabs if key else [None]):
            if tab is not None and tab != tabs[0]:
                at.session_state[key] = tab
                at.run()
            found[(file, tab)] = (key, [k for k in at.query_params if k not in LINK_KEYS])
    return found


def link(at: AppTest, key: str):
    value = at.query_params.get(key)
    return value[0] if isinstance(value, list) else value


def shown_text(at: AppTest, kinds=SHOWN) -> str:
    parts = []
    for kind in kinds:
        for where in (at, at.sidebar):
            try:
                parts += [str(getattr(e, "value", "")) for e in getattr(where, kind)]
            except (AttributeError, KeyError):
                pass
    return " ".join(parts)


def server_paths(tiny_model_dir) -> list[str]:
    return [str(ROOT), str(tiny_model_dir), str(tiny_model_dir.parent), "site-packages"]


def as_received(value: str) -> str:
    """A link's value as the server gets it: a browser sends a lone surrogate's bytes, which arrive as U+FFFD
    (AppTest, like a URL, cannot carry the surrogate itself; a prompt set from code can: tests/test_app.py)."""
    return value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def open_view(page: str, query: dict) -> AppTest:
    return apptest.open_page(page, query={k: as_received(v) for k, v in query.items()}, check=False)


def test_every_link_parameter_survives_hostile_values(tiny_env, tiny_model_dir):
    rng = random.Random(SEED)
    views = registry()
    keys = {k for _tab, params in views.values() for k in params}
    assert {"attn_layer", "attn_focus_pos", "pred_pos", "pred_token", "next_k"} <= keys  # the registry is read
    forbidden = server_paths(tiny_model_dir)
    for (page, tab), (tab_param, params) in views.items():
        for run in range(RUNS_PER_VIEW):
            query = {k: rng.choice(HOSTILE) for k in params if k != tab_param}
            if tab == next(t for (p, t) in views if p == page):  # each page's first view: a prompt past the context
                query["prompt"] = LONG_PROMPT
            if tab_param:
                query[tab_param] = tab
            if rng.random() < 0.5:  # the shared parameters too, one at a time
                shared = rng.choice(sorted(SHARED))
                query[shared] = rng.choice(SHARED[shared])
            at = open_view(page, query)
            where = f"{page} · {tab} · {json.dumps(query, ensure_ascii=True)[:300]}"
            assert not at.exception, (where, at.exception)
            text = shown_text(at)
            assert "Traceback" not in text and not re.search(r'File "[^"]+\.py"', text), where
            address = " ".join(str(link(at, k)) for k in at.query_params)
            for path in forbidden:
                assert path not in text and path not in address, (where, path)
            assert not live_links(shown_text(at, MARKDOWN)), (where, live_links(shown_text(at, MARKDOWN)))
            for k in params:  # the link names each control's value as the page corrected it
                if k in at.session_state and link(at, k) is not None:
                    assert link(at, k) == to_link(at.session_state[k]), (where, k, link(at, k)[:80])
            if rng.random() < 0.15:  # the corrected link opens the same view and stays as it is
                again = open_view(page, {k: link(at, k) for k in at.query_params if k not in ("prompt", "model")})
                assert not again.exception, where
                for k in params:
                    if k in at.session_state and k in again.session_state:
                        assert link(again, k) == link(at, k), (where, k)


@pytest.mark.parametrize("value", ["[" * 10_000, "1e309"])
def test_a_hostile_position_goes_to_a_token_of_the_prompt(tiny_env, value):
    at = open_view(apptest.PREDICTION, {"pred_pos": value})
    assert not at.exception
    n = at.selectbox(key="pred_pos").options
    assert 0 <= int(link(at, "pred_pos")) < len(n)
