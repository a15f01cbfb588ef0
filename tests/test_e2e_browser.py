"""End to end in a real headless Chromium: `streamlit run app.py` on loopback with the tiny model,
type a prompt as a person would, and see the charts drawn with no exception box.

Later pages add their checks to this harness (see `open_page`). Needs Debian's chromium
(`apt-get install -y chromium`) and the playwright package; CI installs both, and under
CI=true a missing browser fails the test instead of skipping it.
"""
from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import ROOT
from viz.export import CHROMIUM_ARGS

CHROMIUM = os.environ.get("BROWSER_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = Path(os.environ.get("GPT2VIZ_SCREENSHOTS", ROOT / "benchmarks" / "out"))


def _browser_available() -> bool:
    try:
        import playwright  # noqa: F401
    except ImportError:
        return False
    return Path(CHROMIUM).exists()


if not _browser_available():
    if os.environ.get("CI"):
        raise RuntimeError(f"CI needs Chromium at {CHROMIUM} and playwright: see .ci/run")
    pytest.skip("needs chromium (apt-get install -y chromium) and playwright", allow_module_level=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(env: dict, log):
    """`streamlit run app.py` on a free loopback port with `env`; yields its base URL."""
    port = _free_port()
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
             "--server.address", "127.0.0.1", "--server.port", str(port), "--server.fileWatcherType", "none"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(f"{base}/_stcore/health", timeout=2).read() == b"ok":
                break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail(f"streamlit did not become healthy:\n{log.read_text()[-3000:]}")
    yield base
    proc.terminate()
    proc.wait(timeout=20)


@pytest.fixture(scope="module")
def server(tiny_model_dir, tmp_path_factory):
    env = {**os.environ, "GPT2VIZ_MODEL": str(tiny_model_dir), "GPT2VIZ_DEVICE": "cpu", "HF_HUB_OFFLINE": "1"}
    yield from _serve(env, tmp_path_factory.mktemp("streamlit") / "server.log")


@pytest.fixture(scope="module")
def offline_server(tmp_path_factory):
    """A fresh install with the Hub unreachable and no model configured."""
    env = {k: v for k, v in os.environ.items() if k != "GPT2VIZ_MODEL"}
    env.update(HF_HUB_OFFLINE="1", GPT2VIZ_DEVICE="cpu")
    yield from _serve(env, tmp_path_factory.mktemp("streamlit-offline") / "server.log")


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


def open_page(browser, url: str):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(url)
    page.wait_for_selector('[data-testid="stSidebar"] textarea', timeout=60_000)
    return page


def type_prompt(page, text: str) -> None:
    """Type into the sidebar's prompt box and apply it (Ctrl+Enter), as a person would."""
    box = page.locator('[data-testid="stSidebar"] textarea')
    box.fill(text)
    box.press("Control+Enter")
    wait_idle(page)


def wait_idle(page) -> None:
    """Wait until Streamlit has finished the current run (no running indicator)."""
    page.wait_for_timeout(300)
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=60_000)


def test_type_a_prompt_and_see_the_next_token_chart(server, browser):
    page = open_page(browser, server)
    type_prompt(page, "The cat sat on the <b>mat</b> 你好")
    page.wait_for_selector(".js-plotly-plot .main-svg", timeout=60_000)
    page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot').length >= 3", timeout=60_000)
    assert page.locator('[data-testid="stException"]').count() == 0
    # The top-k bars are drawn (SVG bar paths), the surprisal strip has its tokens.
    assert page.locator(".js-plotly-plot .barlayer path").count() >= 5
    assert "Top 10 next tokens" in page.inner_text("body")
    # The HTML in the prompt is shown as text, never rendered as an element.
    assert page.locator(".js-plotly-plot b").count() == 0
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "e2e_next_token.png"), full_page=True)
    page.close()


def test_empty_prompt_shows_a_message_not_an_error(server, browser):
    page = open_page(browser, server)
    type_prompt(page, "   ")
    page.wait_for_selector("text=The prompt is empty", timeout=60_000)
    assert page.locator('[data-testid="stException"]').count() == 0
    page.close()


def test_offline_the_app_opens_on_the_bundled_model(offline_server, browser):
    page = open_page(browser, offline_server)
    page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot').length >= 3", timeout=120_000)
    wait_idle(page)
    body = page.inner_text("body")
    assert "could not be loaded" in body and "bundled mini GPT-2" in body
    assert page.locator('[data-testid="stException"]').count() == 0
    assert page.locator('[data-testid="stAlertContentError"]').count() == 0
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "e2e_offline_bundled.png"), full_page=True)
    page.close()


@pytest.mark.parametrize("label, drawn", [("Attention", ".js-plotly-plot .main-svg"),
                                          ("Weights", ".js-plotly-plot .main-svg"),
                                          ("Inside the prediction", ".js-plotly-plot .main-svg"),
                                          ("Experiments", ".js-plotly-plot .main-svg")])
def test_other_pages_through_the_sidebar_keep_the_prompt(server, browser, label, drawn):
    page = open_page(browser, server)
    type_prompt(page, "hello hello bye")
    page.locator('[data-testid="stSidebar"] a', has_text=label).first.click()
    page.wait_for_selector(f"h1:has-text('{label}')", timeout=60_000)
    page.wait_for_selector(drawn, timeout=120_000)
    wait_idle(page)
    assert page.locator('[data-testid="stException"]').count() == 0
    assert page.locator('[data-testid="stSidebar"] textarea').input_value() == "hello hello bye"
    assert "prompt=hello+hello+bye" in page.url or "prompt=hello%20hello%20bye" in page.url
    page.screenshot(path=str(SHOTS / f"e2e_{label.lower()}.png"))
    page.close()


# ---- the app in 简体中文 --------------------------------------------------------------------------
ZH_PAGES = ["", "Tour", "Attention", "Embeddings", "Weights", "Generation", "Prediction", "Experiments", "N-grams",
            "Features", "Steering"]
# Every visible text node of the page, but not what a person typed (inputs), code blocks, token
# tick labels of figures (token text), nor Streamlit's own controls' hints.
VISIBLE_TEXT = """() => {
  const skip = el => el.closest('textarea, input, code, pre, script, style, noscript, .xtick, .ytick, .ztick, '
    + '[data-testid="stTooltipHoverTarget"] svg, [data-testid="InputInstructions"], [data-testid="stToolbar"], '
    + '[data-testid="stStatusWidget"], .modebar, [data-baseweb="tooltip"]');
  const out = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const el = n.parentElement, text = n.textContent.trim();
    if (!text || !el || skip(el)) continue;
    if (el.checkVisibility && !el.checkVisibility()) continue;
    out.push(text);
  }
  return out;
}"""
ENGLISH = re.compile(r"\b[A-Za-z][a-z]+[ ,;:'’]+[a-z]{2,}\b")  # two English words in a row
# Left out of the check: names, a prompt quoted in a figure's title (“…”: the tour's are the essay's),
# and token bytes as the app writes them (⟨e4 bd⟩).
TECHNICAL = re.compile(r"Inside GPT-2|Hugging Face|Noto Sans CJK|Stephen Wolfram|What Is ChatGPT Doing[^”]*|"
                       r"King James|“[^”]*”|⟨[^⟩]*⟩")
STREAMLIT_OWN = {"Skip to main content"}  # the framework's accessibility link, not this app's text


def english_left(page) -> list[str]:
    texts = set(page.evaluate(VISIBLE_TEXT)) - STREAMLIT_OWN
    return sorted(t for t in texts if ENGLISH.search(TECHNICAL.sub(" ", t)))


# Every figure the view shows (its visible Plotly elements) has been drawn; true at once for a view with none.
FIGURES_DRAWN = """() => [...document.querySelectorAll('[data-testid="stPlotlyChart"]')]
    .filter(e => !e.checkVisibility || e.checkVisibility()).every(e => e.querySelector('.main-svg'))"""


def settle(page) -> None:
    """Wait for the run to end and every figure on view to be drawn."""
    wait_idle(page)
    page.wait_for_function(FIGURES_DRAWN, timeout=60_000)
    page.wait_for_timeout(500)
    wait_idle(page)


@pytest.mark.parametrize("slug", ZH_PAGES, ids=lambda s: s or "Next_token")
def test_every_page_in_chinese_shows_no_english_ui_text(server, browser, slug):
    """Opened from a `?lang=zh` link with a Chinese prompt (so token text is not English either),
    every text on screen, in every tab, is Chinese, apart from names and quoted prompts."""
    from urllib.parse import quote

    page = browser.new_page(viewport={"width": 1400, "height": 1000}, locale="en-US")
    page.goto(f"{server}/{slug}?lang=zh&prompt={quote('人工智能最好的地方在于它能够')}")
    page.wait_for_selector("h1", timeout=60_000)
    settle(page)
    assert re.search(r"[\u4e00-\u9fff]", page.inner_text("h1"))
    left = {f"(first view) {t}" for t in english_left(page)}
    page.screenshot(path=str(SHOTS / f"e2e_zh_{slug or 'next_token'}.png"), full_page=True)
    tabs = page.locator('[data-testid="stTabs"] [role="tab"]')
    for i in range(1, tabs.count()):
        name = tabs.nth(i).inner_text()
        tabs.nth(i).click()
        settle(page)
        assert page.locator('[data-testid="stException"]').count() == 0, name
        left |= {f"({name}) {t}" for t in english_left(page)}
    assert page.locator('[data-testid="stException"]').count() == 0
    page.close()
    assert not left, f"untranslated on /{slug}: {sorted(left)[:20]}"


def test_a_chinese_browser_opens_in_chinese_and_the_link_says_so(server, browser):
    page = browser.new_page(viewport={"width": 1400, "height": 1000}, locale="zh-CN")
    page.goto(server)
    page.wait_for_selector("h1", timeout=60_000)
    wait_idle(page)
    assert re.search(r"[\u4e00-\u9fff]", page.inner_text("h1"))
    assert "lang=zh" in page.url
    page.close()


# ---- waiting on conditions only -------------------------------------------------------------------
# The script's state as the page shows it (Streamlit sets it on its root element), and the runs
# the page has started: every change of that state away from "notRunning" counts one (from the
# moment the counter is installed; installing it twice changes nothing).
SCRIPT_STATE = "document.querySelector('[data-testid=\"stApp\"]')?.getAttribute('data-test-script-state')"
IDLE = f"() => {SCRIPT_STATE} === 'notRunning' && !document.querySelector('[data-stale=\"true\"]')"
COUNT_RUNS = """() => {
  if (window.__runs === undefined) {
    window.__runs = 0;
    const app = document.querySelector('[data-testid="stApp"]');
    new MutationObserver(records => {
      for (const r of records) if (r.oldValue === 'notRunning') window.__runs += 1;
    }).observe(app, {attributes: true, attributeOldValue: true, attributeFilter: ['data-test-script-state']});
  }
  return window.__runs;
}"""


def after_a_run(page, action, done: str = "() => true", timeout: int = 60_000) -> None:
    """Do `action` (a click, a key press), then wait until a run of the script has started since,
    the page is idle again and `done` (a JavaScript predicate) holds: no fixed sleep anywhere."""
    before = page.evaluate(COUNT_RUNS)
    action()
    page.wait_for_function(f"() => window.__runs > {before} && ({IDLE})() && ({done})()", timeout=timeout)


def apply_prompt(page, text: str, done: str) -> None:
    """Type `text` into the sidebar's prompt box and apply it (Ctrl+Enter), as a person would,
    waiting for the run it starts to end with `done` true."""
    box = page.locator('[data-testid="stSidebar"] textarea')
    box.fill(text)
    after_a_run(page, lambda: box.press("Control+Enter"), done)


def test_generation_clearing_the_prompt_keeps_the_controls(server, browser):
    """Item 14 as a person hit it: the browser, not the server, had put every control back to its
    minimum (greedy, 1 token, temperature 0, top-p 0.05) two prompts after an empty one. Each
    prompt is applied once the page has settled on the one before (its run ended, what it shows drawn)."""
    page = open_page(browser, f"{server}/Generation?gen_tokens=30&gen_temperature=1.1&gen_top_p=0.9")
    page.wait_for_function(f"() => ({IDLE})() && !!document.querySelector('.st-key-gen_run')", timeout=60_000)
    tokens = page.locator('input[type="range"][aria-label="New tokens"]')
    apply_prompt(page, "", "() => document.body.innerText.includes('The prompt is empty')")
    for prompt in ("Hello world", "Hello world again"):
        apply_prompt(page, prompt, f"() => new URLSearchParams(location.search).get('prompt') === {prompt!r}"
                                   " && !!document.querySelector('.st-key-gen_run')")
        assert tokens.input_value() == "30", prompt  # what the slider shows
    for part in ("gen_method=sample", "gen_tokens=30", "gen_temperature=1.1", "gen_top_p=0.9"):
        assert part in page.url
    after_a_run(page, lambda: page.locator("button", has_text="Generate").click(),
                "() => document.body.innerText.includes('30 tokens ·')")
    assert page.locator('[data-testid="stException"]').count() == 0
    page.close()
