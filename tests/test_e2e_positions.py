"""The one position rule in a real browser (issue 25, items 2 and 11): on Inside the prediction and on
Attention › Token focus, a position the link names is kept; once the person types a new prompt the
position moves to where the view opens for it (the last token; mid-prompt for Token focus, where
"attended by" is not one column) and the address bar says so. Uses tests/test_e2e_browser.py's server."""
from __future__ import annotations

import re
from urllib.parse import parse_qs, quote, urlparse

from tests.test_e2e_browser import SHOTS, browser, open_page, server, type_prompt, wait_idle  # noqa: F401

FIRST = "one two three four five six seven eight"
SECOND = "Once upon a time, in a small village by the sea, there lived an old fisherman who"


def link_value(page, key: str) -> str | None:
    return parse_qs(urlparse(page.url).query).get(key, [None])[0]


def shown_position(page, label: str) -> str:
    return page.get_by_role("combobox", name=label, exact=True).input_value()


def check(page, key: str, label: str, pos: int, lm, prompt: str) -> None:
    from playwright.sync_api import expect

    page.wait_for_function(f"() => new URLSearchParams(location.search).get('{key}') === '{pos}'", timeout=60_000)
    box = page.get_by_role("combobox", name=label, exact=True)
    expect(box).to_have_value(re.compile(f"^{pos}: "), timeout=60_000)  # the box shows "pos: token"
    assert link_value(page, key) == str(pos) and shown_position(page, label).startswith(f"{pos}: ")
    assert len(lm.encode(prompt)) > pos
    assert page.locator('[data-testid="stException"]').count() == 0


def test_the_prediction_follows_a_new_prompt_to_its_last_token(server, browser, tiny_lm):  # noqa: F811
    page = open_page(browser, f"{server}/Prediction?prompt={quote(FIRST)}&pred_pos=2")
    wait_idle(page)
    label = "Position (the prediction after this token)"
    check(page, "pred_pos", label, 2, tiny_lm, FIRST)  # the link's position
    type_prompt(page, SECOND)
    check(page, "pred_pos", label, len(tiny_lm.encode(SECOND)) - 1, tiny_lm, SECOND)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "e2e_prediction_follows_prompt.png"), full_page=True)
    page.close()


def test_token_focus_follows_a_new_prompt(server, browser, tiny_lm):  # noqa: F811
    page = open_page(browser, f"{server}/Attention?prompt={quote(FIRST)}&attn_view={quote('Token focus')}"
                              f"&attn_focus_pos=1")
    wait_idle(page)
    check(page, "attn_focus_pos", "Token", 1, tiny_lm, FIRST)
    type_prompt(page, SECOND)
    check(page, "attn_focus_pos", "Token", (len(tiny_lm.encode(SECOND)) - 1) // 2, tiny_lm, SECOND)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "e2e_token_focus_follows_prompt.png"), full_page=True)
    page.close()
