"""A PNG of every page and every view, in English and Chinese, in the Screen and Slides (dark) styles.

    python benchmarks/screenshots.py OUT_DIR [--only Attention Experiments] [--views "Token focus"]
                                     [--langs en zh] [--styles normal dark] [--port 8604]
                                     [--model bundled/mini-gpt2-kjv] [--prompt TEXT]

Starts `streamlit run app.py` headless on `--port` (with GPT2VIZ_MODEL set to `--model`), opens each
view by its link (the page's path, its tab key = the tab's English name, lang=, style=: the links
ui.url writes), waits until the page has stopped running and its charts are drawn, and saves
OUT_DIR/<page>-<view>-<lang>-<style>.png. Headless Chromium through Playwright
(/usr/bin/chromium, or BROWSER_PATH). Look at every PNG of a view you changed before calling it done.
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

from recipes import attention, embeddings, experiments, features, generation, ngrams, prediction, steering, weights  # noqa: E402
from viz.export import CHROMIUM_ARGS, find_chromium  # noqa: E402

# page path in the address bar -> (its tab key in links, the tabs' English names); None: no tabs
PAGES = {
    "": None,
    "Tour": ("tour_step", [str(n) for n in range(1, 13)]),
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


def settle(page, timeout_s: float = 180) -> None:
    """Wait until the page has drawn (the sidebar and the main block), the app has stopped running
    (no status widget for 2 s) and Plotly has drawn its charts."""
    try:
        page.wait_for_selector('[data-testid="stSidebar"]', timeout=timeout_s * 1000)
        page.wait_for_selector('[data-testid="stMainBlockContainer"] [data-testid="stVerticalBlock"]',
                               timeout=timeout_s * 1000)
    except Exception:  # noqa: BLE001 (a page that never drew is still photographed, to be looked at)
        return
    deadline, quiet_since = time.time() + timeout_s, None
    while time.time() < deadline:
        busy = ('[data-testid="stStatusWidget"]', '[data-testid="stSpinner"]', '[data-testid="stProgress"]')
        if any(page.locator(sel).count() > 0 for sel in busy):
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.time()
        elif time.time() - quiet_since > 2.0:
            break
        time.sleep(0.3)
    time.sleep(1.5)  # plotly draws after the script run ends


def shoot(out: Path, port: int, pages: dict, langs, styles, prompt: str, width: int, height: int) -> list[Path]:
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
                        page.goto(url)
                        settle(page)
                        name = "-".join(re.sub(r"[^A-Za-z0-9]+", "_", s).strip("_") for s in
                                        (path or "Next_token", view[1] if view else "", lang, style) if s)
                        file = out / f"{name}.png"
                        page.screenshot(path=str(file), full_page=True)
                        saved.append(file)
                        print(file, flush=True)
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
    ap.add_argument("--size", default="1280x2000", help="the browser window, WIDTHxHEIGHT")
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
        saved = shoot(args.out, args.port, pages, args.langs, args.styles, args.prompt, width, height)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    print(f"{len(saved)} screenshots in {args.out}")


if __name__ == "__main__":
    main()
