"""Shared by the browser benchmarks (classroom.py, time_to_figure.py): the app server, its memory,
prompts of an exact token count, and "time to figure" as a person sees it in Chromium.

Time to figure, as both benchmarks measure it: from the moment the benchmark asks the browser to
navigate (page.goto) or commits a widget change (the key press), until the first check, made every
POLL_MS in the page, at which all of these hold:
  - at least the expected number of Plotly figures are on the page, each has drawn its SVG
    (`.main-svg`) and none is greyed out as stale (Streamlit's data-stale on its element);
  - each expected title text is in some figure's title (so an old figure does not count);
  - the script run is over: Streamlit's app element says so (data-test-script-state="notRunning",
    the state behind its running indicator, which itself only shows after 0.5 s) and no spinner shows.
The end is read from the page's own clock (performance.timeOrigin + now(), epoch ms), so the
round trip from the page back to Python is not counted; the start from Python's time.time().
"""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
from common import ROOT

POLL_MS = 50
CHROMIUM = os.environ.get("BROWSER_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync", "--disable-background-timer-throttling",
                 "--disable-renderer-backgrounding", "--disable-backgrounding-occluded-windows"]
KJV = ROOT / "bundled" / "texts" / "kjv_genesis.txt"

# Runs in every page before Streamlit's own scripts: times each websocket message as it reaches the
# page (before Streamlit handles it) and the last change Plotly made to any figure's DOM.
INIT_SCRIPT = """
(() => {
  const T = window.__ttf = {msgs: [], bufs: [], plotTimes: [], settled: null};
  const Native = window.WebSocket;
  class TimedWebSocket extends Native {
    constructor(...args) {
      super(...args);
      this.addEventListener('message', (e) => {
        const t = performance.now();
        const d = e.data;
        const bytes = d instanceof ArrayBuffer ? d.byteLength : (d && d.size) || (d && d.length) || 0;
        T.msgs.push({t, bytes});
        T.bufs.push(d instanceof ArrayBuffer ? d : null);
      });
    }
  }
  window.WebSocket = TimedWebSocket;
  const observer = new MutationObserver((mutations) => {
    const t = performance.now();
    for (const m of mutations) {
      const el = m.target.nodeType === 1 ? m.target : m.target.parentElement;
      if (el && el.closest && el.closest('.js-plotly-plot')) {
        T.plotTimes.push(t);
        return;
      }
    }
  });
  const start = () => observer.observe(document.documentElement, {childList: true, subtree: true, attributes: true});
  if (document.documentElement) start(); else document.addEventListener('DOMContentLoaded', start);
})();
"""

# True (and the page clock's epoch ms noted in __ttf.settled) once the page shows what `want` names.
SETTLED = """
(want) => {
  const plots = [...document.querySelectorAll('.js-plotly-plot')];
  if (plots.length < want.figures) return false;
  for (const p of plots) {
    if (!p.querySelector('.main-svg')) return false;
    const box = p.closest('[data-testid="stElementContainer"]');
    if (box && box.getAttribute('data-stale') === 'true') return false;
  }
  const titles = plots.map((p) => [...p.querySelectorAll('.gtitle')].map((t) => t.textContent).join(' '));
  for (const w of want.titles) if (!titles.some((t) => t.includes(w))) return false;
  const app = document.querySelector('[data-testid="stApp"]');
  if (!app || app.getAttribute('data-test-script-state') !== 'notRunning') return false;
  if (document.querySelector('[data-testid="stSpinner"]')) return false;
  const now = performance.timeOrigin + performance.now();
  if (window.__ttf) window.__ttf.settled = now;
  return now;
}
"""

# What a session can check on its page once settled: error boxes, metrics, captions, figure titles.
PAGE_FACTS = """
() => ({
  errors: [...document.querySelectorAll('[data-testid="stException"], [data-testid="stAlertContentError"]')]
            .map((e) => e.innerText.slice(0, 300)),
  metrics: Object.fromEntries([...document.querySelectorAll('[data-testid="stMetric"]')].map((m) => [
            (m.querySelector('[data-testid="stMetricLabel"]') || {}).innerText || '',
            (m.querySelector('[data-testid="stMetricValue"]') || {}).innerText || ''])),
  captions: [...document.querySelectorAll('[data-testid="stCaptionContainer"]')].map((c) => c.innerText),
  titles: [...document.querySelectorAll('.js-plotly-plot .gtitle')].map((t) => t.textContent),
  visibility: document.visibilityState,
})
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`streamlit run app.py` of the checkout `repo` on `port`, in its own process group (stopped
    with the whole group), with the peak resident memory of its process tree sampled meanwhile."""

    def __init__(self, repo: Path, model: Path, port: int | None = None, sample_s: float = 0.25,
                 timing_log: Path | None = None):
        """`timing_log`: run it through _timed_server.py, which logs the server's compute and serialisation there."""
        self.repo, self.port = Path(repo).resolve(), port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        env.update(GPT2VIZ_MODEL=str(model), GPT2VIZ_DEVICE="cpu", HF_HUB_OFFLINE="1")
        self.log = tempfile.NamedTemporaryFile(prefix="bench-streamlit-", suffix=".log", delete=False)
        launch = [sys.executable, "-m", "streamlit"] if timing_log is None else \
            [sys.executable, str(Path(__file__).with_name("_timed_server.py")), str(self.repo), str(timing_log)]
        self.proc = subprocess.Popen(
            [*launch, "run", "app.py", "--server.headless", "true", "--server.address", "127.0.0.1",
             "--server.port", str(self.port), "--browser.gatherUsageStats", "false"],
            cwd=self.repo, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        self.peak_rss = 0
        self._cpu: dict[int, float] = {}  # pid -> CPU seconds at its last sample
        self._server_pids: set[int] = set()
        self._cpu_lock = threading.Lock()
        self._stop = threading.Event()
        self.sample_s = sample_s
        self._sampler = threading.Thread(target=self._sample, daemon=True)

    def wait_ready(self, timeout_s: float = 120) -> None:
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                if urllib.request.urlopen(f"{self.base}/_stcore/health", timeout=2).read() == b"ok":
                    self._sampler.start()
                    return
            except OSError:
                time.sleep(0.5)
        tail = Path(self.log.name).read_text(errors="replace")[-2000:]
        raise SystemExit(f"streamlit did not start on port {self.port}:\n{tail}")

    def _tree(self) -> list:
        import psutil

        try:
            root = psutil.Process(self.proc.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def rss(self) -> int:
        """Resident bytes of the server and every process under it, now."""
        import psutil

        total = 0
        for p in self._tree():
            try:
                total += p.memory_info().rss
            except psutil.NoSuchProcess:
                pass
        return total

    def reset_peak(self) -> None:
        self.peak_rss = self.rss()

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds (user + system) used so far by the server's process tree and by this process with
        everything it started but the server (Playwright's driver and the Chromium processes): each
        process's last sample, so a process that ended counts up to its last sample (0.25 s)."""
        with self._cpu_lock:
            server = sum(v for pid, v in self._cpu.items() if pid in self._server_pids)
            return {"server": server, "browsers": sum(self._cpu.values()) - server}

    def _sample_cpu(self) -> None:
        import psutil

        me = psutil.Process()
        server = self._tree()
        try:
            clients = [me, *me.children(recursive=True)]
        except psutil.NoSuchProcess:
            clients = [me]
        seen = {}
        for p in {q.pid: q for q in (*server, *clients)}.values():
            try:
                t = p.cpu_times()
                seen[p.pid] = t.user + t.system
            except psutil.NoSuchProcess:
                pass
        with self._cpu_lock:
            self._server_pids.update(q.pid for q in server)
            self._cpu.update(seen)

    def _sample(self) -> None:
        while not self._stop.wait(self.sample_s):
            self.peak_rss = max(self.peak_rss, self.rss())
            self._sample_cpu()

    def wait_quiet(self, cpu_below: float = 0.1, for_s: float = 2.0, at_most_s: float = 120.0) -> float:
        """Wait until the server's tree has used under `cpu_below` of a core for `for_s` seconds (or
        `at_most_s` passed); returns the seconds waited."""
        t0, quiet_since = time.time(), None
        last = self.cpu_seconds()["server"], time.time()
        while time.time() - t0 < at_most_s:
            time.sleep(0.5)
            now = self.cpu_seconds()["server"], time.time()
            busy = (now[0] - last[0]) / max(now[1] - last[1], 1e-6) >= cpu_below
            last = now
            quiet_since = None if busy else (quiet_since or now[1])
            if quiet_since and now[1] - quiet_since >= for_s:
                break
        return time.time() - t0

    def stop(self) -> None:
        self._stop.set()
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=20)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(timeout=10)
        self.log.close()
        Path(self.log.name).unlink(missing_ok=True)


def sigterm_as_interrupt() -> None:
    """A `kill` (SIGTERM) unwinds like Ctrl-C (asyncio cancels the running task), so every finally closes
    the pages and stops the server."""
    signal.signal(signal.SIGTERM, lambda *_: signal.raise_signal(signal.SIGINT))


class Tokenizer:
    """The checkpoint's own tokenizer.json read by `tokenizers` (not the app's code): an independent count."""

    def __init__(self, model_dir: Path):
        from tokenizers import Tokenizer as HFTokenizer

        self._tok = HFTokenizer.from_file(str(Path(model_dir) / "tokenizer.json"))

    def count(self, text: str) -> int:
        return len(self._tok.encode(text, add_special_tokens=False).ids)


def exact_prompt(tok: Tokenizer, n_tokens: int, header: str, offset: int) -> str:
    """`header` then words of Genesis from word `offset` on, exactly `n_tokens` tokens long."""
    words = KJV.read_text(encoding="utf-8").split()
    text, i = header, offset % len(words)
    while True:
        longer = f"{text} {words[i % len(words)]}"
        if tok.count(longer) > n_tokens:
            break
        text, i = longer, i + 1
    while tok.count(text) < n_tokens:
        text += " a"  # one token (' a') at a time
    if tok.count(text) != n_tokens:
        raise RuntimeError(f"could not build a prompt of exactly {n_tokens} tokens")
    return text


def page_url(base: str, path: str, **query) -> str:
    return f"{base}/{path}?" + urllib.parse.urlencode(query)


async def wait_settled(page, figures: int, titles: tuple[str, ...] = (), timeout_s: float = 900) -> float:
    """Epoch seconds (page clock) at which the page first showed what `figures`/`titles` ask (see the docstring)."""
    handle = await page.wait_for_function(SETTLED, arg={"figures": figures, "titles": list(titles)},
                                          polling=POLL_MS, timeout=timeout_s * 1000)
    return float(await handle.json_value()) / 1000


async def page_facts(page) -> dict:
    return await page.evaluate(PAGE_FACTS)


def percentile(values, q: float) -> float:
    """numpy's linear-interpolation percentile; nan for no values."""
    return float(np.percentile(values, q)) if len(values) else float("nan")


def load_average() -> tuple[float, float, float]:
    return tuple(round(x, 2) for x in os.getloadavg())


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()
