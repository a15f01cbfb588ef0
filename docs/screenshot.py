"""Screenshot a page of the running app in headless Chromium, as a person would see it.

    python docs/screenshot.py http://127.0.0.1:8501/ docs/screenshot.png [--prompt "..."] [--height 1400]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from viz.export import CHROMIUM_ARGS  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("out")
    parser.add_argument("--prompt")
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=1300)
    parser.add_argument("--full", action="store_true", help="the whole page, not one screen")
    parser.add_argument("--wait-for", default=".js-plotly-plot .main-svg",
                        help="CSS selector that shows the page is drawn")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": args.width, "height": args.height})
        page.goto(args.url)
        page.wait_for_selector('[data-testid="stSidebar"] textarea', timeout=180_000)
        if args.prompt:
            box = page.locator('[data-testid="stSidebar"] textarea')
            box.fill(args.prompt)
            box.press("Control+Enter")
        page.wait_for_timeout(1500)
        page.wait_for_selector(args.wait_for, timeout=300_000)
        page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=300_000)
        page.wait_for_timeout(2500)
        page.screenshot(path=args.out, full_page=args.full)
        browser.close()


if __name__ == "__main__":
    main()
