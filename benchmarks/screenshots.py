"""A PNG of every page and every view, in English and Chinese, in the Screen and Slides (dark) styles.

    python benchmarks/screenshots.py OUT_DIR [--only Attention Experiments] [--views "Token focus"]
                                     [--langs en zh] [--styles normal dark] [--port 8604]
                                     [--model bundled/mini-gpt2-kjv] [--prompt TEXT]
                                     [--size 1280x900] [--timeout 180]

Starts `streamlit run app.py` headless on `--port` (with GPT2VIZ_MODEL set to `--model`), opens each
view by its link (the page's path, its tab key = the tab's English name, lang=, style=: the links
ui.url writes), waits until the page has finished (`settle`: the script has stopped, no spinner,
status or progress bar shows, every Plotly chart has drawn and every table rendered), grows the window
to the page's full height (Streamlit scrolls inside its own container, which a browser's full-page
shot does not follow) and saves OUT_DIR/<page>-<view>-<lang>-<style>.png. A view that did not finish
within --timeout is saved anyway and reported NOT SETTLED (with what was still missing). Headless
Chromium through Playwright (/usr/bin/chromium, or BROWSER_PATH). Look at every PNG of a view you
changed before calling it done.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

from common import ROOT

from recipes import (  # noqa: E402
    attention,
    embeddings,
    experiments,
    features,
    generation,
    ngrams,
    prediction,
    steering,
    tour,
    weights,
)
from viz.export import CHROMIUM_ARGS, find_chromium  # noqa: E402

# page path in the address bar -> (its tab key in links, the tabs' English names); None: no tabs
PAGES = {
    "": None,
    "Tour": ("tour_step", [str(n) for n in range(1, len(tour.STEPS) + 1)]),
    "Attention": ("attn_view", list(attention.VIEWS)),
    "Embeddings": ("emb_tab", list(embeddings.VIEWS)),
    "Weights": ("weights_tab", list(weights.VIEWS)),
    "Generation": ("gen_tab", list(generation.TABS)),
    "Prediction": ("pred_view", list(prediction.VIEWS)),
    "Experiments": ("exp_view", list(experiments.VIEWS)),
    "N-grams": ("ngram_view", list(ngrams.VIEWS)),
    "Features": ("feat_view", list(features.VIEWS)),
    "Steering": ("steer_view", list(steering.VIEWS)),
}
PROMPT = "In the beginning God created the heaven and the earth. And the earth was without form"


def start_app(port: int, model: str) -> subprocess.Popen:
    env = dict(os.environ, GPT2VIZ_MODEL=model, GPT2VIZ_DEVICE="cpu", HF_HUB_OFFLINE="1")
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.headless=true",
                             f"--server.port={port}", "--browser.gatherUsageStats=false"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(120):
        try:
            urllib.request.urlopen(f"http://localhost:{port}/_stcore/health", timeout=1)
            return proc
        except OSError:
            time.sleep(0.5)
    proc.terminate()
    raise SystemExit(f"streamlit did not start on port {port}")


# What the page shows while it works: a script run, a spinner, a progress bar, the greyed-out
# elements of the last run, the skeletons of a page still loading.
BUSY = ('[data-testid="stSpinner"]', '[data-testid="stProgress"]', '[data-testid="stStatusWidget"]',
        '[data-stale="true"]', '[data-testid="stSkeleton"]')
# One look at the page: whether it is still working, and whether every chart and table has drawn.
# Each Plotly chart is hooked once (plotly_afterplot records the time of its last draw), so a chart
# that redraws (a resize, a relayout) keeps the page unsettled until it has finished.
STATE_JS = """(busy) => {
  const app = document.querySelector('[data-testid="stApp"]');
  const now = performance.now();
  window.__shotLastPlot = window.__shotLastPlot || 0;
  const charts = [...document.querySelectorAll('[data-testid="stPlotlyChart"]')];
  let drawn = 0;
  for (const c of charts) {
    const gd = c.querySelector('.js-plotly-plot');
    if (!gd) continue;
    if (gd.on && !gd.__shotHooked) {
      gd.__shotHooked = true;
      gd.on('plotly_afterplot', () => { window.__shotLastPlot = performance.now(); });
    }
    if (gd._fullLayout && gd.querySelector('.main-svg')) drawn += 1;
  }
  const frames = [...document.querySelectorAll('[data-testid="stDataFrame"]')];
  return {
    script: app ? app.getAttribute('data-test-script-state') : null,
    connection: app ? app.getAttribute('data-test-connection-state') : null,
    busy: busy.filter(sel => document.querySelector(sel)),
    charts: charts.length, drawn: drawn,
    tables: frames.length, tablesDrawn: frames.filter(f => f.querySelector('canvas')).length,
    sincePlot: now - window.__shotLastPlot,
  };
}"""


def page_state(page) -> dict:
    return page.evaluate(STATE_JS, list(BUSY))


def settled(state: dict, quiet_ms: float = 800) -> bool:
    """The script has finished, nothing on the page says it is working, every Plotly chart has its
    SVG and every dataframe its canvas, and no chart has drawn in the last `quiet_ms`."""
    return (state["script"] == "notRunning" and state["connection"] == "CONNECTED" and not state["busy"]
            and state["drawn"] == state["charts"] and state["tablesDrawn"] == state["tables"]
            and state["sincePlot"] >= quiet_ms)


def settle(page, timeout_s: float = 180, quiet_s: float = 1.5) -> dict:
    """Wait until the page has finished: the app's script has stopped running (the stApp element's
    data-test-script-state), no spinner, status widget, progress bar, skeleton or stale element is
    shown, every Plotly chart has drawn (its .main-svg, and no plotly_afterplot for a while) and
    every dataframe has rendered (its canvas), all of it holding for `quiet_s` (a page may rerun
    itself, a link's state or a switch of page). Returns the last look; "settled" says whether it did."""
    deadline, quiet_since, state = time.time() + timeout_s, None, {}
    try:
        page.wait_for_selector('[data-testid="stApp"]', timeout=timeout_s * 1000)
        page.evaluate("document.fonts.ready.then(() => true)")
    except Exception:  # noqa: BLE001 (a page that never drew is still photographed, to be looked at)
        return {"settled": False}
    while time.time() < deadline:
        state = page_state(page)
        if not settled(state):
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.time()
        elif time.time() - quiet_since >= quiet_s:
            return {**state, "settled": True}
        time.sleep(0.25)
    return {**state, "settled": False}


FULL_JS = """() => {
  const main = document.querySelector('[data-testid="stMain"]');
  const side = document.querySelector('[data-testid="stSidebarContent"]');
  return {main: main ? main.scrollHeight : 0, mainView: main ? main.clientHeight : 0,
          side: side ? side.scrollHeight : 0, body: document.documentElement.scrollHeight};
}"""
MAX_HEIGHT = 16_000  # Chromium's largest screenshot that stays sharp


def full_height(page, width: int, height: int, timeout_s: float) -> tuple[int, dict]:
    """Make the window as tall as the page: Streamlit scrolls inside its main container (stMain), so a
    browser's full-page shot stops at the window's height. Grow the window to the main block's (and the
    sidebar's) scrollHeight until nothing is left to scroll, then let the charts redraw at the new size."""
    state = {}
    for _ in range(4):
        sizes = page.evaluate(FULL_JS)
        want = min(MAX_HEIGHT, max(height, sizes["main"], sizes["side"], sizes["body"]))
        if want <= page.viewport_size["height"] and sizes["main"] <= sizes["mainView"] + 1:
            break
        if want == page.viewport_size["height"]:  # at MAX_HEIGHT
            break
        page.set_viewport_size({"width": width, "height": want})
        state = settle(page, timeout_s, quiet_s=1.0)
    return page.viewport_size["height"], state


def shoot(out: Path, port: int, pages: dict, langs, styles, prompt: str, width: int, height: int,
          timeout_s: float = 180) -> list[Path]:
    from playwright.sync_api import sync_playwright

    saved = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=find_chromium() or "/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": width, "height": height})
        for path, tabs in pages.items():
            views = [None] if tabs is None else [(tabs[0], v) for v in tabs[1]]
            for view in views:
                for lang in langs:
                    for style in styles:
                        query = {"prompt": prompt, "lang": lang, "style": style}
                        if view:
                            query[view[0]] = view[1]
                        url = f"http://localhost:{port}/{path}?" + urllib.parse.urlencode(query)
                        page.set_viewport_size({"width": width, "height": height})
                        page.goto(url)
                        t0 = time.time()
                        state = settle(page, timeout_s)
                        tall, after = full_height(page, width, height, timeout_s)
                        state = after or state
                        sizes = page.evaluate(FULL_JS)
                        name = "-".join(re.sub(r"[^A-Za-z0-9]+", "_", s).strip("_") for s in
                                        (path or "Next_token", view[1] if view else "", lang, style) if s)
                        file = out / f"{name}.png"
                        page.screenshot(path=str(file), full_page=True)
                        saved.append(file)
                        note = "" if state.get("settled") else "  NOT SETTLED: " + ", ".join(
                            f"{k}={state[k]}" for k in ("script", "busy", "charts", "drawn", "tables", "tablesDrawn")
                            if k in state)
                        if sizes["main"] > tall + 1:
                            note += f"  CUT at {tall:,} px (the page is {sizes['main']:,} px)"
                        print(f"{file}  ({width}x{tall} px, {state.get('charts', 0)} charts, "
                              f"{state.get('tables', 0)} tables, {time.time() - t0:.1f} s){note}", flush=True)
        browser.close()
    return saved


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--only", nargs="*", help="page paths (Attention, Experiments, …; 'Next' for the first page)")
    ap.add_argument("--views", nargs="*", help="only these tabs (English names)")
    ap.add_argument("--langs", nargs="+", default=["en", "zh"])
    ap.add_argument("--styles", nargs="+", default=["normal", "dark"])
    ap.add_argument("--port", type=int, default=8604)
    ap.add_argument("--model", default=str(ROOT / "bundled" / "mini-gpt2-kjv"))
    ap.add_argument("--prompt", default=PROMPT)
    ap.add_argument("--size", default="1280x900", help="the browser window, WIDTHxHEIGHT; each shot grows it to "
                    "the page's full height")
    ap.add_argument("--timeout", type=float, default=180, help="seconds to wait for a view to finish drawing "
                    "(it is photographed anyway, and reported NOT SETTLED)")
    args = ap.parse_args()
    pages = {k: v for k, v in PAGES.items()
             if not args.only or (k or "Next") in args.only}
    if args.views:
        pages = {k: (v[0], [t for t in v[1] if t in args.views]) if v else v for k, v in pages.items()}
        pages = {k: v for k, v in pages.items() if v is None or v[1]}
    args.out.mkdir(parents=True, exist_ok=True)
    width, height = (int(x) for x in args.size.split("x"))
    proc = start_app(args.port, args.model)
    try:
        saved = shoot(args.out, args.port, pages, args.langs, args.styles, args.prompt, width, height,
                      args.timeout)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    print(f"{len(saved)} screenshots in {args.out}")


if __name__ == "__main__":
    main()
