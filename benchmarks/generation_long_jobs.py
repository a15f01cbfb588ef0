"""The Generation page's long jobs: time to first visible progress, and from Stop to a settled page.

What it measures, as a person sees it: `streamlit run app.py` on loopback with a random model of
GPT-2 small's shape (benchmarks/common.py), driven in headless Chromium (playwright), for each
long job of the page:

  sampling      200 tokens, temperature 0.8                      (Generate)
  beam search   4 beams, up to 200 tokens                        (Generate)
  side by side  greedy and 5 samples, 60 tokens each (360 in all) (Run side by side)

with the essay's prompt (10 tokens) and with a prompt of --long tokens (default 800), each in a
fresh browser session:

  first progress   click on the job's button -> its progress bar on screen, saying what it
                   does and how far ("Generating: token 3 of 200")             goal <= 1 s
  Stop -> stopped  click on Stop -> the bar and the Stop button gone, "Stopped." on screen
                   with the text made so far (what a person reads first)
  Stop -> settled  click on Stop -> the page has stopped changing: also every table and figure
                   of what was made drawn, no element left from the run before, and Streamlit's
                   script state back to notRunning                              goal <= 1 s

Stop is clicked --run-for seconds after the job got past reading the prompt (mid-run); with the
long prompt also as soon as the bar appears (while the prompt is being read). Before the jobs, it checks that
opening the page starts nothing (no progress bar, no result) and how long that page takes.

Then it times core's generators directly (no browser): the time to read the prompt and the
slowest step. Those bound what a Stop waits for: Streamlit starts the rerun that draws the
stopped page at once, on a new thread, while the old run finishes the step it is in (one
token, one beam step, or one 64-token chunk of the prompt) and stops at its next progress
update; the two share the CPU meanwhile.

    python benchmarks/generation_long_jobs.py [--repeats 3] [--run-for 3] [--long 800] [--threads N] [--no-browser]

On a shared machine whose cores are busy, torch's two threads spin waiting for each other and
small forwards get many times slower; --threads 1 (torch.set_num_threads and OMP_NUM_THREADS
for the app) measures what one free core does.
"""
from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import torch
from common import ROOT, gpt2_small_shaped

from core import load_model
from core.beam import beam_search_steps
from core.continuations import decode_text
from core.kv_cache import PREFILL_CHUNK
from core.sampling import Decoding, continue_runs, generate_steps, greedy_and_samples

PROMPT = "The best thing about AI is its ability to"
GOAL_S = 1.0
JOBS = {  # name: (URL query, button key, Stop key)
    "sampling": ({"gen_method": "sample", "gen_tokens": "200"}, "gen_run", "gen_stop"),
    "beam search": ({"gen_method": "beam", "gen_tokens": "200", "gen_beams": "4"}, "gen_run", "gen_stop"),
    "side by side": ({"gen_tab": "Side by side", "gen_sbs_runs": "5", "gen_sbs_tokens": "60"}, "gen_sbs_run",
                     "gen_sbs_stop"),
}
SCRIPT_STATE = "document.querySelector('[data-test-script-state]')?.getAttribute('data-test-script-state')"
RUNNING = f"() => {SCRIPT_STATE} === 'running'"
STOPPED = """(stop) => !document.querySelector('[data-testid="stProgress"]')
  && !document.querySelector('.st-key-' + stop) && document.body.innerText.includes('Stopped.')"""
SETTLED = f"""(stop) => {SCRIPT_STATE} === 'notRunning'
  && !document.querySelector('[data-stale="true"]') && (""" + STOPPED + """)(stop)"""
PAST_THE_PROMPT = """() => { const bar = document.querySelector('[data-testid="stProgress"]');
  return !bar || !bar.innerText.includes('reading the prompt'); }"""
IDLE = f"""() => {SCRIPT_STATE} === 'notRunning'
  && !document.querySelector('[data-stale="true"]') && !!document.querySelector('.st-key-gen_run')"""


# ---- core, no browser ---------------------------------------------------------------------------
def core_timings(lm, prompts: dict[str, list[int]]) -> list[tuple]:
    """(job, prompt, seconds to read the prompt and make the first step, slowest of the next steps,
    slowest prompt chunk). A Stop waits for at most one of these."""
    rows = []
    for prompt_name, ids in prompts.items():
        sample = Decoding(temperature=0.8, stop_at_eos=False)
        jobs = {"sampling": lambda cb: generate_steps(lm, ids, 200, sample, on_prompt=cb),
                "beam search": lambda cb: beam_search_steps(lm, ids, 200, 4, on_prompt=cb),
                "side by side": lambda cb: continue_runs(lm, ids, 60, greedy_and_samples(0.8, range(5)), on_prompt=cb)}
        for job, make in jobs.items():
            chunks, last = [], [time.perf_counter()]

            def on_prompt(read, n):
                now = time.perf_counter()
                chunks.append(now - last[0])
                last[0] = now

            t0 = time.perf_counter()
            steps = iter(make(on_prompt))
            next(steps)
            first = time.perf_counter() - t0
            if chunks:
                chunks.append(time.perf_counter() - last[0])  # the last chunk and the first step
            times = []
            for _ in range(12):
                t0 = time.perf_counter()
                next(steps)
                times.append(time.perf_counter() - t0)
            rows.append((job, prompt_name, first, max(times), max(chunks) if chunks else None))
    return rows


# ---- the page in a browser ----------------------------------------------------------------------
def serve(model_dir: str, threads: int | None):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "GPT2VIZ_MODEL": model_dir, "GPT2VIZ_DEVICE": "cpu", "HF_HUB_OFFLINE": "1"}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    log = open(ROOT / "benchmarks" / "out" / "generation_long_jobs.server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
                             "--server.address", "127.0.0.1", "--server.port", str(port),
                             "--server.fileWatcherType", "none"],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    for _ in range(240):
        try:
            if urllib.request.urlopen(f"{base}/_stcore/health", timeout=2).read() == b"ok":
                return proc, base
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit("streamlit did not start; see benchmarks/out/generation_long_jobs.server.log")


def open_generation(browser, base: str, query: dict):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    t0 = time.perf_counter()
    page.goto(f"{base}/Generation?{urllib.parse.urlencode(query)}")
    page.wait_for_function(IDLE, polling="raf", timeout=600_000)
    page.wait_for_timeout(300)
    page.wait_for_function(IDLE, polling="raf", timeout=600_000)
    return page, time.perf_counter() - t0


def one_trial(browser, base: str, query: dict, button: str, stop: str, run_for: float) -> dict:
    page, _ = open_generation(browser, base, query)
    t0 = time.perf_counter()
    page.locator(f".st-key-{button} button").first.click(no_wait_after=True)
    page.wait_for_selector('[data-testid="stProgress"]', timeout=60_000)
    first = time.perf_counter() - t0
    first_text = page.locator('[data-testid="stProgress"]').first.inner_text()
    if run_for:
        page.wait_for_function(PAST_THE_PROMPT, polling=100, timeout=600_000)
        page.wait_for_timeout(run_for * 1000)
    bars = page.locator('[data-testid="stProgress"]')
    at_stop = bars.first.inner_text() if bars.count() else "(finished before Stop)"
    t0 = time.perf_counter()
    page.locator(f".st-key-{stop} button").first.click(no_wait_after=True)
    page.wait_for_function(STOPPED, arg=stop, polling="raf", timeout=120_000)
    stopped = time.perf_counter() - t0
    page.wait_for_function(SETTLED, arg=stop, polling="raf", timeout=120_000)
    settled = time.perf_counter() - t0
    errors = page.locator('[data-testid="stException"]').count()
    page.close()
    return dict(first=first, stopped=stopped, settled=settled, first_text=first_text.strip(), at_stop=at_stop.strip(),
                errors=errors)


def browser_timings(model_dir: str, prompts: dict[str, str], repeats: int, run_for: float,
                    threads: int | None, jobs: list[str]) -> tuple[list, list]:
    from playwright.sync_api import sync_playwright

    from viz.export import CHROMIUM_ARGS

    chromium = os.environ.get("BROWSER_PATH") or "/usr/bin/chromium"
    (ROOT / "benchmarks" / "out").mkdir(exist_ok=True)
    proc, base = serve(model_dir, threads)
    opened, rows = [], []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
            for prompt_name, text in prompts.items():
                # the first visit reads the prompt (its trace); the second shows the page as it opens
                for i in range(2):
                    page, seconds = open_generation(browser, base, {"prompt": text})
                    idle = (page.locator('[data-testid="stProgress"]').count() == 0
                            and "Press Generate" in page.inner_text("body"))
                    page.close()
                opened.append((prompt_name, seconds, idle))
                stops = [("mid-run", run_for)]
                if prompt_name != "10 tokens":
                    stops.append(("while reading the prompt", 0.0))
                for job, (query, button, stop) in JOBS.items():
                    if job not in jobs:
                        continue
                    for when, wait in stops:
                        trials = [one_trial(browser, base, {**query, "prompt": text}, button, stop, wait)
                                  for _ in range(repeats)]
                        rows.append((job, prompt_name, when, trials))
                        print(f"  {job}, {prompt_name}, Stop {when}: " + "; ".join(
                            f"{t['first']:.2f} / {t['stopped']:.2f} / {t['settled']:.2f} s at “{t['at_stop']}”"
                            for t in trials), flush=True)
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return opened, rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--run-for", type=float, default=3.0, help="seconds a job runs before Stop (mid-run)")
    ap.add_argument("--long", type=int, default=800, help="tokens of the long prompt")
    ap.add_argument("--threads", type=int, default=None, help="torch threads, here and in the app")
    ap.add_argument("--jobs", default=",".join(JOBS), help="which jobs, comma-separated: " + ", ".join(JOBS))
    ap.add_argument("--short-only", action="store_true", help="only the 10-token prompt")
    ap.add_argument("--no-browser", action="store_true", help="only time core's generators")
    ap.add_argument("--no-core", action="store_true", help="only the browser")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model_dir = str(gpt2_small_shaped())
    lm = load_model(model_dir, device="cpu")
    short = lm.encode(PROMPT)
    long_ids = (short * (args.long // len(short) + 1))[: args.long]
    long_text = decode_text(lm, long_ids)
    n_long = len(lm.encode(long_text))
    print(f"{lm.describe()}; {os.cpu_count()} cores, torch threads {torch.get_num_threads()}, "
          f"load average {os.getloadavg()[0]:.1f} before starting\n")

    if not args.no_core:
        print(f"core's generators (no browser), {PREFILL_CHUNK}-token prompt chunks:")
        print("| job | prompt | read the prompt + first step | slowest later step | slowest prompt chunk |")
        print("|---|---:|---:|---:|---:|")
        timings = core_timings(lm, {"10 tokens": short, f"{n_long} tokens": lm.encode(long_text)})
        for job, prompt, first, slowest, chunk in timings:
            chunk_s = "" if chunk is None else f"{chunk:.2f} s"
            print(f"| {job} | {prompt} | {first:.2f} s | {slowest:.2f} s | {chunk_s} |")
    del lm
    if args.no_browser:
        return

    print(f"\nthe page in headless Chromium, fastest / median / slowest of {args.repeats} (goal ≤ {GOAL_S:g} s each):")
    prompts = {"10 tokens": PROMPT} if args.short_only else {"10 tokens": PROMPT, f"{n_long} tokens": long_text}
    opened, rows = browser_timings(model_dir, prompts, args.repeats, args.run_for, args.threads,
                                   [j.strip() for j in args.jobs.split(",")])
    for prompt, seconds, idle in opened:
        print(f"opening the page ({prompt} prompt, trace cached): settled in {seconds:.2f} s; "
              f"{'nothing started (no progress bar, asks to press Generate)' if idle else 'SOMETHING STARTED'}")
    print("\n| job | prompt | Stop | first progress | Stop → stopped | Stop → settled | shown at Stop | errors |")
    print("|---|---:|---|---:|---:|---:|---|---:|")
    def fmt(xs):
        return f"{min(xs):.2f} / {statistics.median(xs):.2f} / {max(xs):.2f} s"

    for job, prompt, when, trials in rows:
        print(f"| {job} | {prompt} | {when} | {fmt([t['first'] for t in trials])} "
              f"| {fmt([t['stopped'] for t in trials])} "
              f"| {fmt([t['settled'] for t in trials])} "
              f"| {trials[-1]['at_stop']} | {sum(t['errors'] for t in trials)} |")


if __name__ == "__main__":
    main()
