"""Time to figure of Next token and of every Attention view at 1,024 tokens, N = 1, split into parts.

    python benchmarks/time_to_figure.py [--repeats 3] [--tokens 1024] [--repo DIR] [--out FILE.json]

Starts `streamlit run app.py` (of --repo; GPT-2 small's shape, random weights: benchmarks/common.py),
warms it up with a prompt of the same length (model load, the first long forward, Plotly's script
in the browser cache), then for each of --repeats new
prompts of exactly --tokens tokens opens, one after the other in one headless Chromium page,
each by its link (a new page load, as a shared link or a reload would): Next token (a new prompt:
the forward is part of it), every Attention view at its defaults (layer 0, head 0, the "previous
token" atlas, token focus on the middle token), and Next token again (the trace cached).
Time to figure is measured as in benchmarks/_browser.py: page.goto -> the view's figures drawn,
none stale, the script run over.

The split, per visit. The server runs through benchmarks/_timed_server.py, which logs when its own
model and figure work ran (the recipes' functions, the forward, the attention summaries) and when
st.plotly_chart serialised each figure (epoch clock); the page logs when it handled each websocket
message and when Plotly changed a figure's DOM (benchmarks/_browser.py INIT_SCRIPT, a MutationObserver).
On one clock:
  load       page.goto -> the page handles the first websocket message (HTML, scripts, connecting,
             the session's script run starting);
  compute    (a) the server's model and figure-building work, the union of the logged calls, up to
             the last serialisation (with the lane, any wait for it inside those calls);
  serialise  (b) plotly.tools.return_figure_from_figure_or_data + plotly.io.to_json, as st.plotly_chart
             calls them; "MB" is the JSON they wrote;
  script     the rest of the server's run until the last figure is serialised: Streamlit and the
             page's own code (sidebar, widgets, tables as Arrow, messages);
  transfer   (b) the last serialisation's end -> the page handling the last websocket message that
             carries a Plotly spec (found by its '{"data":[' bytes): protobuf, the websocket, and
             waiting for the page's main thread;
  draw       (c) that message's handling -> the last change Plotly made to a figure before the settle
             (JSON parsing, React, Plotly's drawing);
  tail       the rest until the settle (the script's last elements, its end message, 50 ms polling).
total = load + compute + serialise + script + transfer + draw + tail, by construction. Also shown:
"after", how long Plotly kept changing the figures once settled (read 1.5 s later; not in total),
and "in-proc", the same recipe calls timed in THIS process on the same prompt in the same order
(the per-layer cache in the same state; the forward included for a new prompt), as a check on
"compute" (a server busy with other work, or queueing, shows as compute > in-proc).
Medians (p50) over the repeats are printed per view, with the load average before and after.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

import _browser as B
from common import ROOT, gpt2_small_shaped

ATTENTION_VIEWS = ["Head atlas", "One layer, all heads", "One head", "One head across layers", "Token focus"]
VISITS = ["Next token (new prompt, with the forward)", *(f"Attention: {v}" for v in ATTENTION_VIEWS),
          "Next token (trace cached)"]
PARTS = ("total", "load", "compute", "serialise", "script", "transfer", "draw", "tail", "after")
GOAL_S = 2.0

# After the settle: each websocket message's time and size, whether it carries a Plotly spec, and
# the times Plotly changed a figure's DOM (see _browser.INIT_SCRIPT).
TIMELINE = """
() => {
  const T = window.__ttf;
  const pat = [123, 34, 100, 97, 116, 97, 34, 58, 91];  // {"data":[
  const carriesFigure = (buf) => {
    if (!buf || buf.byteLength < 200) return false;
    const u = new Uint8Array(buf);
    outer: for (let i = 0; i + pat.length <= u.length; i++) {
      if (u[i] !== 123) continue;
      for (let j = 1; j < pat.length; j++) if (u[i + j] !== pat[j]) continue outer;
      return true;
    }
    return false;
  };
  return {msgs: T.msgs.map((m, i) => ({t: m.t, bytes: m.bytes, fig: carriesFigure(T.bufs[i])})),
          plotTimes: T.plotTimes, settled: T.settled - performance.timeOrigin, origin: performance.timeOrigin};
}
"""


# ---- (a) and (b1): the page's work, in this process -----------------------------------------
def _figures(items) -> list:
    from recipes import Figure, Row, View

    out = []
    for item in items.items if isinstance(items, View) else items:
        if isinstance(item, Figure):
            out.append(item.fig)
        elif isinstance(item, Row):
            for col in item.columns:
                out += _figures(col if isinstance(col, list) else [col])
        elif isinstance(item, list):
            out += _figures(item)
    return out


def _serialise(figs: list) -> tuple[float, int]:
    import plotly.io
    import plotly.tools

    t0, size = time.perf_counter(), 0
    for fig in figs:
        figure = plotly.tools.return_figure_from_figure_or_data(fig, validate_figure=True)
        size += len(plotly.io.to_json(figure, validate=False))
    return time.perf_counter() - t0, size


def in_process(lm, prompt: str) -> dict[str, dict]:
    """Per visit: compute and serialise seconds, JSON bytes and the number of figures the page draws."""
    from core.trace import trace
    from recipes import attention, next_token
    from ui.progress import ASK_ABOVE_SECONDS

    state: dict = {}

    def next_page(new: bool):
        if new:
            state["t"] = trace(lm, prompt)
        t = state["t"]
        return [next_token.summary(lm, t), next_token.top_k(lm, t, 10), next_token.rank(lm, t),
                next_token.surprisal(lm, t), next_token.tokenization(lm, t)]

    def across():
        t = state["t"]
        job = attention.summaries_job(lm, t)
        done = job.run(lambda _layer: None) if job.estimate_s <= ASK_ABOVE_SECONDS else None  # else: a Compute button
        return [attention.across_layers(lm, t, 0, "stretch", done)]

    work = {
        VISITS[0]: lambda: next_page(True),
        "Attention: Head atlas": lambda: [attention.atlas(lm, state["t"], attention.METRICS[0], 0, 0, None)],
        "Attention: One layer, all heads": lambda: [attention.layer_heads(lm, state["t"], 0, "stretch")],
        "Attention: One head": lambda: [attention.one_head(lm, state["t"], 0, 0, "stretch", False)],
        "Attention: One head across layers": across,
        "Attention: Token focus": lambda: [attention.focus(lm, state["t"], (state["t"].n_tokens - 1) // 2, None)],
        VISITS[-1]: lambda: next_page(False),
    }
    out = {}
    for visit in VISITS:
        t0 = time.perf_counter()
        views = work[visit]()
        compute = time.perf_counter() - t0
        figs = [f for v in views for f in _figures(v)]
        serialise, size = _serialise(figs)
        out[visit] = {"compute": compute, "serialise": serialise, "bytes": size, "figures": len(figs)}
    return out


# ---- the browser ----------------------------------------------------------------------------
def visit_url(base: str, visit: str, prompt: str) -> str:
    if visit.startswith("Attention: "):
        return B.page_url(base, "Attention", prompt=prompt, lang="en", attn_view=visit.removeprefix("Attention: "))
    return B.page_url(base, "", prompt=prompt, lang="en")


def _union(intervals: list[tuple[float, float]], lo: float, hi: float) -> list[tuple[float, float]]:
    """The intervals clipped to [lo, hi] and merged."""
    merged: list[list[float]] = []
    for a, b in sorted((max(a, lo), min(b, hi)) for a, b in intervals):
        if b <= a:
            continue
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    return [(a, b) for a, b in merged]


def _length(intervals) -> float:
    return sum(b - a for a, b in intervals)


def read_log(path: Path, offset: int) -> tuple[list, int]:
    """The server's timing lines written since `offset`, and the new offset."""
    with open(path, "rb") as f:
        f.seek(offset)
        data = f.read()
    end = data.rfind(b"\n") + 1
    return [json.loads(line) for line in data[:end].splitlines() if line.strip()], offset + end


def split(t0: float, settled: float, timeline: dict, server_log: list) -> dict:
    """The parts of one visit, in seconds (see the module docstring); every time in epoch seconds."""
    at = lambda ms: (timeline["origin"] + ms) / 1000  # noqa: E731 (the page's clock -> epoch seconds)
    msgs = timeline["msgs"]
    first = at(msgs[0]["t"]) if msgs else settled
    figs = [m for m in msgs if m["fig"]] or sorted(msgs, key=lambda m: m["bytes"])[-1:]
    fig_t = max(at(m["t"]) for m in figs) if figs else first
    served = [(s, e, n) for kind, _name, s, e, n in server_log if kind == "serialise" and t0 <= s and e <= fig_t]
    server_end = max([e for _s, e, _n in served], default=first)
    compute = _union([(s, e) for kind, _n, s, e, _b in server_log if kind == "compute"], t0, server_end)
    serialise = _union([(s, e) for s, e, _n in served], t0, server_end)
    serialise_only = _length(serialise) - sum(_length(_union(compute, a, b)) for a, b in serialise)
    drawn = [at(t) for t in timeline["plotTimes"] if at(t) <= settled]
    draw_end = max([fig_t, *drawn])
    parts = {"total": settled - t0, "load": first - t0, "compute": _length(compute), "serialise": serialise_only,
             "transfer": fig_t - server_end, "draw": draw_end - fig_t, "tail": settled - draw_end,
             "after": max(0.0, max([at(t) for t in timeline["plotTimes"]], default=settled) - settled)}
    parts["script"] = server_end - first - parts["compute"] - parts["serialise"]
    parts["MB"] = sum(n or 0 for _s, _e, n in served) / 1e6
    parts["sent MB"] = sum(m["bytes"] for m in msgs) / 1e6
    return parts


async def browse(base: str, log: Path, warm_up: str, prompts: list[str], in_proc: list[dict],
                 timeout_s: float) -> list[dict]:
    from playwright.async_api import async_playwright

    rows = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=B.CHROMIUM, args=B.CHROMIUM_ARGS)
        try:
            ctx = await browser.new_context(viewport={"width": 1280, "height": 900})
            await ctx.add_init_script(B.INIT_SCRIPT)
            page = await ctx.new_page()
            t0 = time.time()
            for url in (visit_url(base, VISITS[0], warm_up), visit_url(base, VISITS[2], warm_up)):
                await page.goto(url, wait_until="commit")
                await B.wait_settled(page, 1, (), timeout_s)
            print(f"warm-up (model load, not counted): {time.time() - t0:.1f} s", flush=True)
            _lines, offset = read_log(log, 0)
            for r, (prompt, server_side) in enumerate(zip(prompts, in_proc)):
                for visit in VISITS:
                    t0 = time.time()
                    await page.goto(visit_url(base, visit, prompt), wait_until="commit", timeout=timeout_s * 1000)
                    settled = await B.wait_settled(page, server_side[visit]["figures"], (), timeout_s)
                    await asyncio.sleep(1.5)  # for "after": Plotly's relayouts once the run is over
                    timeline = await page.evaluate(TIMELINE)
                    facts = await B.page_facts(page)
                    server_log, offset = read_log(log, offset)
                    parts = split(t0, settled, timeline, server_log)
                    parts["in-proc"] = server_side[visit]["compute"]
                    rows.append({"repeat": r, "visit": visit, **parts, "errors": facts["errors"]})
                    print(f"  {r} {visit:<44} {parts['total']:6.2f} s"
                          f"{'  ERROR ' + facts['errors'][0][:80] if facts['errors'] else ''}", flush=True)
        finally:
            await browser.close()
    return rows


def report(rows: list[dict]) -> dict:
    cols = (*PARTS, "in-proc", "MB", "sent MB")
    print(f"\np50 over the repeats, seconds (MB: the figures' JSON; sent MB: every websocket message)\n"
          f"{'view':<44}" + "".join(f"{c:>10}" for c in cols) + f"  goal <= {GOAL_S:g} s")
    table = {}
    for visit in VISITS:
        mine = [r for r in rows if r["visit"] == visit]
        table[visit] = {c: B.percentile([r[c] for r in mine], 50) for c in cols}
        ok = "ok" if table[visit]["total"] <= GOAL_S else "MISS"
        print(f"{visit:<44}" + "".join(f"{table[visit][c]:>10.2f}" for c in cols) + f"  {ok}")
    return table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3, help="new prompts, each through every view (default 3)")
    ap.add_argument("--tokens", type=int, default=1024)
    ap.add_argument("--repo", type=Path, default=ROOT, help="the checkout to serve (default: this repository)")
    ap.add_argument("--timeout", type=float, default=600, help="seconds one visit may take")
    ap.add_argument("--out", type=Path, help="JSON file (default benchmarks/out/time_to_figure-<repo>.json)")
    args = ap.parse_args()
    out = args.out or ROOT / "benchmarks" / "out" / f"time_to_figure-{B.slug(args.repo.resolve().name)}.json"
    B.sigterm_as_interrupt()
    from core import load_model

    model = gpt2_small_shaped()
    tok = B.Tokenizer(model)
    prompts = [B.exact_prompt(tok, args.tokens, f"Time to figure, prompt {r + 1}:", 2_000 + 4_001 * r)
               for r in range(args.repeats)]
    warm_up = B.exact_prompt(tok, args.tokens, "Warm-up:", 30_000)  # the first long forward, not counted
    load_before = B.load_average()
    print(f"serving {args.repo.resolve()}; {args.tokens:,} tokens, GPT-2 small's shape (random); "
          f"load average before: {load_before}", flush=True)
    started = time.time()
    lm = load_model(str(model), device="cpu")
    in_proc = []
    for r, prompt in enumerate(prompts):
        in_proc.append(in_process(lm, prompt))
        print(f"in-process compute+serialise, prompt {r + 1}: " + ", ".join(
            f"{v.split(': ')[-1]} {s['compute']:.2f}+{s['serialise']:.2f} s" for v, s in in_proc[-1].items()),
            flush=True)
    del lm
    log = Path(tempfile.mkstemp(prefix="bench-server-timing-", suffix=".jsonl")[1])
    server = B.Server(args.repo, model, timing_log=log)
    try:
        server.wait_ready()
        rows = asyncio.run(browse(server.base, log, warm_up, prompts, in_proc, args.timeout))
    finally:
        server.stop()
        log.unlink(missing_ok=True)
    load_after = B.load_average()
    table = report(rows)
    wall = time.time() - started
    print(f"load average before {load_before}, after {load_after}; wall time {wall:.0f} s")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"repo": str(args.repo.resolve()), "tokens": args.tokens, "repeats": args.repeats,
                               "load_before": load_before, "load_after": load_after, "wall_s": wall,
                               "p50": table, "rows": rows, "in_process": in_proc}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        raise SystemExit("interrupted: the browser pages are closed and the server is stopped") from None
