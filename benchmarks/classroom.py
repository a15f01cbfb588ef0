"""A classroom on one server: N browser sessions at once, each with its own prompt, time to figure.

    python benchmarks/classroom.py [--n 1 10 30] [--same-prompt] [--repo /tmp/wt-before] [--tokens 200]
                                   [--per-browser 30] [--out benchmarks/out/classroom-….json]

Starts ONE `streamlit run app.py` of the checkout `--repo` (default: this repository; give another
checkout, such as a git worktree of an older commit, to measure "before") with a random model of
GPT-2 small's shape (benchmarks/common.py; GPT2VIZ_MODEL, HF_HUB_OFFLINE=1), warms it up with one
session (the model load is not counted), then for each N in --n starts a class of N sessions at
the same moment: headless Chromium (/usr/bin/chromium) through Playwright, one browser context per
session (--per-browser contexts share one Chromium). Each session, in turn:
  next       opens Next token by its link (?prompt=…&lang=en): the forward and the page's 3 figures;
  attention  opens Attention by its link, on "One layer, all heads" at layer 0, same prompt;
  layer      picks layer 5 in the Layer selectbox (types 5, Enter) and waits for layer 5's figure.
Time to figure is defined in benchmarks/_browser.py: from page.goto (or the Enter key) to the first
moment, checked every 50 ms in the page by the page's clock, when the expected Plotly figures have
drawn, none is stale, the expected title (e.g. "layer 5, all") is shown and the script run is over.

Each session has its own prompt of exactly --tokens + i tokens (i = 0 … N-1; Genesis, from a
different word for every session, after a header "Class C, student I writes:"; a new class never
reuses an earlier class's prompts, so nothing is cached from before). With --same-prompt every
session of a class has the same prompt. Checked per session, against the checkpoint's
tokenizer.json read by the `tokenizers` library (not the app's code): "Tokens in the prompt" on Next
token and "N tokens." under Attention's pickers show that session's own count, the top-k figure's
title quotes that session's own header, and no exception or error box is on the page.

Prints p50 and p95 (numpy linear interpolation) per step and over all steps at each N, the peak
resident memory of the server's process tree (psutil, sampled every 0.25 s), the CPU seconds the
class cost the server and the browsers (with Playwright), the load average before each class
(which starts once the server has been idle for 2 s), and the ratio p95(N = largest) / p50(N = 1)
(goal: <= 10 with own prompts, <= 2 with --same-prompt). Writes everything, every session's times included, as JSON.

On a 2-core machine the N browsers draw their figures on the same two cores as the server, so
large-N times include the students' own drawing, which a real classroom spreads over N laptops.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import math
import re
import subprocess
import time
from pathlib import Path

import _browser as B
from common import ROOT, gpt2_small_shaped

STEPS = ("next", "attention", "layer")
ATTN_VIEW = "One layer, all heads"  # i18n: skip (the tab's English key in links)
LAYER_FROM, LAYER_TO = 0, 5
NEXT_FIGURES = 3  # top-k bars, rank curve, surprisal strip (the tokenization is a table)


def class_prompts(tok: B.Tokenizer, n: int, klass: int, tokens: int, same: bool) -> list[tuple[str, str, int]]:
    """(prompt, header, token count) per session of class number `klass`."""
    if same:
        header = f"Class {klass}, everyone writes:"
        prompt = B.exact_prompt(tok, tokens, header, offset=7919 * klass)
        return [(prompt, header, tokens)] * n
    out = []
    for i in range(n):
        header = f"Class {klass}, student {i + 1:02d} writes:"
        out.append((B.exact_prompt(tok, tokens + i, header, offset=7919 * klass + 613 * i), header, tokens + i))
    return out


def _problems(facts: dict, step: str) -> list[str]:
    return [f"{step}: error on the page: {e.splitlines()[0] if e else '?'}" for e in facts["errors"]]


async def session(page, base: str, prompt: str, header: str, n_tokens: int, timeout_s: float) -> dict:
    """One student's three steps; times in seconds, and what did not look right."""
    rec = {"tokens": n_tokens, "header": header, "times": {}, "problems": []}
    step = "next"
    try:
        t0 = time.time()
        await page.goto(B.page_url(base, "", prompt=prompt, lang="en"), wait_until="commit", timeout=timeout_s * 1000)
        rec["times"]["next"] = await B.wait_settled(page, NEXT_FIGURES, ("Top 10 next tokens",), timeout_s) - t0
        facts = await B.page_facts(page)
        rec["problems"] += _problems(facts, step)
        shown = facts["metrics"].get("Tokens in the prompt")
        if shown != f"{n_tokens:,}":
            rec["problems"].append(f"next: shows {shown!r} tokens, its prompt has {n_tokens:,}")
        if not any(t.startswith("Top 10 next tokens") and header in t for t in facts["titles"]):
            rec["problems"].append(f"next: no top-k title quoting {header!r}")

        step = "attention"
        t0 = time.time()
        await page.goto(B.page_url(base, "Attention", prompt=prompt, lang="en", attn_view=ATTN_VIEW,
                                   attn_layer=LAYER_FROM), wait_until="commit", timeout=timeout_s * 1000)
        rec["times"]["attention"] = await B.wait_settled(page, 1, (f"layer {LAYER_FROM}, all",), timeout_s) - t0
        facts = await B.page_facts(page)
        rec["problems"] += _problems(facts, step)
        if not any(c.startswith(f"{n_tokens:,} tokens.") for c in facts["captions"]):
            rec["problems"].append(f"attention: no caption '{n_tokens:,} tokens.'")

        step = "layer"
        picker = page.locator('[data-testid="stSelectbox"]').filter(
            has=page.locator("label", has_text=re.compile(r"^\s*Layer\s*$")))
        await picker.click(timeout=timeout_s * 1000)
        await page.keyboard.type(str(LAYER_TO))
        t0 = time.time()
        await page.keyboard.press("Enter")
        rec["times"]["layer"] = await B.wait_settled(page, 1, (f"layer {LAYER_TO}, all",), timeout_s) - t0
        facts = await B.page_facts(page)
        rec["problems"] += _problems(facts, step)
        if not any(c.startswith(f"{n_tokens:,} tokens.") for c in facts["captions"]):
            rec["problems"].append(f"layer: no caption '{n_tokens:,} tokens.'")
    except Exception as e:  # noqa: BLE001 (a session that fails is a result, reported with the others)
        rec["problems"].append(f"{step}: {type(e).__name__}: {str(e).strip().splitlines()[0] if str(e) else ''}")
    return rec


async def run_class(pw, base: str, prompts: list, per_browser: int, timeout_s: float) -> list[dict]:
    """All sessions of a class, their pages made first, then started together."""
    browsers, contexts = [], []
    try:
        for _ in range(math.ceil(len(prompts) / per_browser)):
            browsers.append(await pw.chromium.launch(executable_path=B.CHROMIUM, args=B.CHROMIUM_ARGS))
        pages = []
        for i in range(len(prompts)):
            ctx = await browsers[i // per_browser].new_context(viewport={"width": 1280, "height": 900})
            contexts.append(ctx)
            pages.append(await ctx.new_page())
        return list(await asyncio.gather(*(session(page, base, *p, timeout_s) for page, p in zip(pages, prompts))))
    finally:
        for ctx in contexts:
            try:
                await ctx.close()
            except Exception:  # noqa: BLE001 (closing what is left; the browser goes next)
                pass
        for browser in browsers:
            await browser.close()


def summarise(records: list[dict]) -> dict:
    out = {}
    for step in (*STEPS, "all"):
        times = [t for r in records for s, t in r["times"].items() if step in (s, "all")]
        out[step] = {"n": len(times), "p50": B.percentile(times, 50), "p95": B.percentile(times, 95),
                     "max": max(times) if times else float("nan")}
    return out


async def measure(server: B.Server, tok: B.Tokenizer, args) -> list[dict]:
    from playwright.async_api import async_playwright

    classes = []
    async with async_playwright() as pw:
        t0 = time.time()
        warm = await run_class(pw, server.base, [(B.exact_prompt(tok, args.tokens, "Warm-up:", 40_000),
                                                  "Warm-up:", args.tokens)], 1, args.timeout)
        print(f"warm-up (model load, not counted): {time.time() - t0:.1f} s; "
              f"{', '.join(f'{s} {t:.2f} s' for s, t in warm[0]['times'].items())}"
              f"{'; PROBLEMS: ' + '; '.join(warm[0]['problems']) if warm[0]['problems'] else ''}", flush=True)
        for klass, n in enumerate(args.n, start=1):
            await asyncio.sleep(args.pause)
            await asyncio.to_thread(server.wait_quiet)  # the last class's work (and its browsers) over
            prompts = class_prompts(tok, n, klass, args.tokens, args.same_prompt)
            load = B.load_average()
            server.reset_peak()
            cpu0, t0 = server.cpu_seconds(), time.time()
            records = await run_class(pw, server.base, prompts, args.per_browser, args.timeout)
            wall = time.time() - t0
            await asyncio.sleep(2 * server.sample_s)  # one more sample of the closed browsers
            cpu = {k: v - cpu0[k] for k, v in server.cpu_seconds().items()}
            for i, r in enumerate(records):
                r["session"] = i
            stats = summarise(records)
            problems = [f"session {r['session']}: {p}" for r in records for p in r["problems"]]
            classes.append({"n": n, "load_before": load, "wall_s": wall, "server_peak_rss": server.peak_rss,
                            "cpu_s": cpu, "stats": stats, "problems": problems, "sessions": records})
            print(f"N = {n}: {wall:.1f} s, all steps p50 {stats['all']['p50']:.2f} s, p95 {stats['all']['p95']:.2f} s, "
                  f"server peak {server.peak_rss / 2**30:.2f} GB, CPU s: server {cpu['server']:.0f}, "
                  f"browsers {cpu['browsers']:.0f}; {len(problems)} problems", flush=True)
            for p in problems[:10]:
                print("   ", p, flush=True)
    return classes


def commit_of(repo: Path) -> str:
    try:
        head = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        return head + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "?"


def report(classes: list[dict], same: bool) -> dict:
    print(f"\n{'N':>3} {'step':<10} {'p50 s':>7} {'p95 s':>7} {'max s':>7} {'times':>6} {'problems':>9} "
          f"{'server peak RSS':>16} {'load before':>16} {'CPU s server/browsers':>22}")
    for c in classes:
        for step in (*STEPS, "all"):
            s = c["stats"][step]
            extra = (f"{len(c['problems']):>9} {c['server_peak_rss'] / 2**30:>13.2f} GB "
                     f"{' '.join(f'{x:.2f}' for x in c['load_before']):>17} "
                     f"{c['cpu_s']['server']:>11.0f}/{c['cpu_s']['browsers']:<10.0f}" if step == "all" else "")
            print(f"{c['n']:>3} {step:<10} {s['p50']:>7.2f} {s['p95']:>7.2f} {s['max']:>7.2f} {s['n']:>6} {extra}")
    ratios = {}
    one = next((c for c in classes if c["n"] == 1), None)
    big = max(classes, key=lambda c: c["n"])
    goal = 2.0 if same else 10.0
    if one is not None and big is not one:
        for step in (*STEPS, "all"):
            ratios[step] = big["stats"][step]["p95"] / one["stats"][step]["p50"]
        print(f"\np95(N = {big['n']}) / p50(N = 1), {'same prompt' if same else 'own prompts'} "
              f"(goal <= {goal:g}): " + ", ".join(f"{s} {r:.1f}" for s, r in ratios.items())
              + f"  -> all steps {'ok' if ratios['all'] <= goal else 'MISS'}")
    return {"ratios": ratios, "goal": goal, "largest_n": big["n"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, nargs="+", default=[1, 10, 30], help="class sizes, in order (default 1 10 30)")
    ap.add_argument("--same-prompt", action="store_true", help="every session of a class uses the same prompt")
    ap.add_argument("--repo", type=Path, default=ROOT, help="the checkout to serve (default: this repository)")
    ap.add_argument("--tokens", type=int, default=200, help="prompt length of the first session (default 200)")
    ap.add_argument("--per-browser", type=int, default=30, help="sessions (contexts) per Chromium process")
    ap.add_argument("--timeout", type=float, default=900, help="seconds one step may take before it counts as failed")
    ap.add_argument("--pause", type=float, default=3, help="seconds before each class, after which it also waits "
                    "(up to 2 min) for the server to be idle for 2 s")
    ap.add_argument("--out", type=Path, help="JSON file (default benchmarks/out/classroom-<repo>-<mode>.json)")
    args = ap.parse_args()
    mode = "same" if args.same_prompt else "own"
    out = args.out or ROOT / "benchmarks" / "out" / f"classroom-{B.slug(args.repo.resolve().name)}-{mode}.json"
    B.sigterm_as_interrupt()
    model = gpt2_small_shaped()
    tok = B.Tokenizer(model)
    load = B.load_average()
    print(f"serving {args.repo.resolve()} at {commit_of(args.repo)}; model {model} (GPT-2 small's shape, random); "
          f"{'one prompt per class' if args.same_prompt else 'own prompts'}; load average before: {load}", flush=True)
    started = time.time()
    server = B.Server(args.repo, model)
    try:
        server.wait_ready()
        classes = asyncio.run(measure(server, tok, args))
    finally:
        server.stop()
    wall = time.time() - started
    summary = report(classes, args.same_prompt)
    print(f"wall time of the whole run: {wall:.0f} s")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"repo": str(args.repo.resolve()), "commit": commit_of(args.repo), "mode": mode,
                               "model": str(model), "tokens": args.tokens, "load_before": load, "wall_s": wall,
                               "classes": classes, **summary}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        raise SystemExit("interrupted: the browser pages are closed and the server is stopped") from None
