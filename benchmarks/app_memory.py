"""Peak memory of the app process after N different long prompts, driven through a real browser.

    python benchmarks/app_memory.py [--prompts 20] [--page ""]

Starts `streamlit run app.py` on loopback with a random GPT-2-small-shaped model, types
N different prompts of over 1,024 tokens into the sidebar (headless Chromium via
playwright), waits for each page to finish, and reads the server's peak resident memory
(VmHWM) from /proc. Goal (issue 2): under 2.5 GB for gpt2 after 20 long prompts. The
trace cache budget is GPT2VIZ_TRACE_CACHE_MB (default 768).
"""
from __future__ import annotations

import argparse
import os
import random
import socket
import subprocess
import sys
import time
import urllib.request

from common import ROOT, gpt2_small_shaped

from viz.export import CHROMIUM_ARGS

WORDS = ("model attention token layer weight meaning word text language network probability the of and "
         "to in is that it for with as on was by this be are from at an or have which one cat dog").split()


def proc_mem(pid: int) -> dict[str, int]:
    out = {}
    for line in open(f"/proc/{pid}/status"):
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) * 1024
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompts", type=int, default=20)
    parser.add_argument("--page", default="", help="URL path of the page to load, e.g. Attention")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    model = gpt2_small_shaped()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "GPT2VIZ_MODEL": str(model), "GPT2VIZ_DEVICE": "cpu", "HF_HUB_OFFLINE": "1"}
    server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
                               "--server.address", "127.0.0.1", "--server.port", str(port)],
                              cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                if urllib.request.urlopen(f"{base}/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                time.sleep(0.5)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{base}/{args.page}")
            page.wait_for_selector('[data-testid="stSidebar"] textarea', timeout=120_000)
            print(f"model loaded: server RSS {proc_mem(server.pid)['VmRSS'] / 2**30:.2f} GB")
            print(f"{'prompt':>6} {'seconds':>8} {'RSS GB':>7} {'peak GB':>8}")
            for i in range(args.prompts):
                rng = random.Random(i)
                text = " ".join(rng.choice(WORDS) for _ in range(1400)) + f" prompt {i}"
                t0 = time.perf_counter()
                box = page.locator('[data-testid="stSidebar"] textarea')
                box.fill(text)
                box.press("Control+Enter")
                # Done when a figure title quotes this prompt (titles carry its first words).
                page.wait_for_function(
                    "start => [...document.querySelectorAll('.js-plotly-plot .gtitle')]"
                    ".some(t => t.textContent.includes(start))",
                    arg=text[:30], timeout=300_000)
                page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')",
                                       timeout=300_000)
                assert page.locator('[data-testid="stException"]').count() == 0, "exception on the page"
                m = proc_mem(server.pid)
                print(f"{i + 1:>6} {time.perf_counter() - t0:>8.1f} {m['VmRSS'] / 2**30:>7.2f} "
                      f"{m['VmHWM'] / 2**30:>8.2f}", flush=True)
            browser.close()
        peak = proc_mem(server.pid)["VmHWM"] / 2**30
        print(f"peak resident memory of the app process after {args.prompts} long prompts: {peak:.2f} GB "
              f"(goal < 2.5 GB: {'ok' if peak < 2.5 else 'MISS'})")
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
