"""Every page, every Attention view, at 1,024 tokens, on random models of the larger GPT-2 shapes.

    python benchmarks/pages_at_scale.py [--shapes gpt2-medium gpt2-large gpt2-xl] [--root /tmp/shaped]

Builds each shape once (core.synthetic.build_shaped; gpt2-xl is ~6 GB on disk) and opens
the app as Streamlit's AppTest does, with a 1,024-token prompt: the first page (model
load and the one forward), then every page and every tab of the Attention page, then a
change of layer and of head. For each it prints the seconds of that rerun and whether it
raised, and counts the prompt forwards the whole session ran (goal: exactly one; every
widget change after it <= 3 s on gpt2-large's shape on a 2-core CPU).
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from common import ROOT

import ui.shell  # noqa: E402  (common puts the repo on sys.path)
from core.synthetic import build_shaped  # noqa: E402

PAGES = ["pages/1_Attention.py", "pages/2_Embeddings.py", "pages/3_Weights.py", "pages/4_Generation.py"]
VIEWS = ["Head atlas", "One layer, all heads", "One head", "One head across layers", "Token focus"]
LONG_PROMPT = "The cat sat on the mat and looked at the dog, who was asleep by the fire. " * 120


def _run(at, what: str, rows: list) -> None:
    t0 = time.perf_counter()
    at.run()
    seconds = time.perf_counter() - t0
    error = at.exception[0].message.splitlines()[0] if at.exception else ""
    rows.append((what, seconds, error))
    print(f"  {what:<44} {seconds:>7.2f} s  {'ERROR ' + error if error else 'ok'}", flush=True)


def one_shape(path: Path) -> None:
    from streamlit.testing.v1 import AppTest

    os.environ["GPT2VIZ_MODEL"] = str(path)
    os.environ["GPT2VIZ_DEVICE"] = "cpu"
    forwards = [0]
    real = ui.shell.trace_ids

    def counting(*a, **kw):
        forwards[0] += 1
        return real(*a, **kw)

    ui.shell.trace_ids = counting
    rows: list = []
    try:
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=900)
        at.session_state["prompt"] = LONG_PROMPT
        _run(at, "Next token (model load + the forward)", rows)
        for page in PAGES:
            at.switch_page(page)
            _run(at, page, rows)
            if page.endswith("Attention.py"):
                for view in VIEWS[1:]:
                    at.session_state["attn_view"] = view
                    _run(at, f"  tab: {view}", rows)
                at.session_state["attn_view"] = "One head"
                _run(at, "  back to One head", rows)
                at.session_state["attn_layer"] = 3
                _run(at, "  One head: layer 3", rows)
                at.session_state["attn_head"] = 5
                _run(at, "  One head: head 5", rows)
                at.session_state["attn_view"] = "One layer, all heads"
                _run(at, "  One layer, all heads: layer 3", rows)
    finally:
        ui.shell.trace_ids = real
    after_first = [s for what, s, _ in rows[1:]]
    print(f"  prompt forwards run: {forwards[0]} (goal 1); slowest rerun after the first page: "
          f"{max(after_first):.2f} s; errors: {sum(1 for *_, e in rows if e)}\n", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", nargs="+", default=["gpt2-medium", "gpt2-large", "gpt2-xl"])
    ap.add_argument("--root", default="/tmp/shaped", help="where the shaped checkpoints are (or are built)")
    args = ap.parse_args()
    for shape in args.shapes:
        path = Path(args.root) / shape
        if not (path / "model.safetensors").exists() and not (path / "model.safetensors.index.json").exists():
            print(f"building a random {shape}-shaped checkpoint in {path} …", flush=True)
            build_shaped(path, shape)
        print(f"{shape} ({path}):", flush=True)
        one_shape(path)
        ui.shell.trace_cache().clear()


if __name__ == "__main__":
    main()
