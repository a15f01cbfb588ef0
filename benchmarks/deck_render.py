"""A 20-slide deck of GPT-2-small-shaped figures: rebuilt from a deck file's links, built as .pptx and
as an offline HTML deck (timed), then the .pptx rendered to one PNG per slide with LibreOffice, to look at.

    python benchmarks/deck_render.py                 # English, 20 slides, pages in benchmarks/out/deck_en/
    python benchmarks/deck_render.py --lang zh --slides 8
    python benchmarks/deck_render.py --pptx talk.pptx   # only render an existing .pptx

Needs LibreOffice Impress and poppler (apt-get install -y libreoffice-impress poppler-utils): the
.pptx is converted to PDF (soffice --headless), then each page to PNG (pdftoppm). Not part of the
test suite; the tests check the .pptx's structure with python-pptx, this shows what it looks like.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

from common import ROOT, gpt2_small_shaped

OUT = ROOT / "benchmarks" / "out"
PROMPT = "The best thing about AI is its ability to"
PROMPT_ZH = "人工智能最好的地方在于它能够"


def deck_links(model: str, lang: str, n: int, prompt: str, style: str = "slides"):
    """n slides over three pages, as "Add to deck" records them: (page, url path, query, figure key)."""
    base = {"prompt": prompt, "model": model, "lang": lang, "style": style}
    views = [("app.py", "", {}, "next_topk_table", "table"), ("app.py", "", {}, "next_topk", "figure"),
             ("app.py", "", {}, "next_rank", "figure"), ("app.py", "", {}, "next_surprisal", "figure"),
             ("pages/3_Weights.py", "Weights", {"weights_param": "W_O", "weights_block": "0", "weights_tab": "Matrix"},
              "weights_matrix", "figure")]
    for layer in range(12):
        views.append(("pages/1_Attention.py", "Attention", {"attn_view": "One layer, all heads",
                                                            "attn_layer": str(layer)}, "attn_layer_heads_chart",
                      "figure"))
        views.append(("pages/1_Attention.py", "Attention", {"attn_view": "One head", "attn_layer": str(layer),
                                                            "attn_head": str(layer % 12)}, "attn_head_chart", "figure"))
    return [(page, f"http://localhost:8501/{path}?{urlencode({**base, **extra})}", key, kind)
            for page, path, extra, key, kind in views[:n]]


def figure_title(fig, key: str) -> str:
    """The slide title "Add to deck" gives a figure: its title without markup or the quoted prompt."""
    title = re.sub(r"<[^>]+>", " ", fig.layout.title.text or "")
    return " ".join(re.sub(r"“[^”]*”", " ", title).split()).strip(" ·") or key


def render(pptx: Path, pages_dir: Path) -> list[Path]:
    """One PNG per slide of `pptx` (LibreOffice -> PDF -> pdftoppm), in pages_dir."""
    soffice, pdftoppm = shutil.which("soffice"), shutil.which("pdftoppm")
    if not soffice or not pdftoppm:
        raise SystemExit("needs LibreOffice and poppler: apt-get install -y libreoffice-impress poppler-utils")
    pages_dir.mkdir(parents=True, exist_ok=True)
    for old in pages_dir.glob("slide-*.png"):
        old.unlink()
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([soffice, f"-env:UserInstallation=file://{tmp}/profile", "--headless", "--convert-to", "pdf",
                        "--outdir", tmp, str(pptx)], check=True, capture_output=True, timeout=600)
        pdf = Path(tmp) / (pptx.stem + ".pdf")
        subprocess.run([pdftoppm, "-png", "-r", "60", str(pdf), str(pages_dir / "slide")], check=True, timeout=600)
    return sorted(pages_dir.glob("slide-*.png"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lang", choices=["en", "zh"], default="en")
    parser.add_argument("--slides", type=int, default=20)
    parser.add_argument("--style", choices=["slides", "dark"], default="slides")
    parser.add_argument("--pptx", type=Path, default=None, help="render this .pptx only")
    args = parser.parse_args()
    if args.pptx:
        pages = render(args.pptx, OUT / f"deck_{args.pptx.stem}")
        print(f"{len(pages)} pages in {pages[0].parent}")
        return
    model_dir = gpt2_small_shaped()
    os.environ["GPT2VIZ_MODEL"] = str(model_dir)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from i18n import use_language
    from recipes.deck import Deck, Slide, build_html, build_pptx, rebuild

    prompt = PROMPT_ZH if args.lang == "zh" else PROMPT
    slides = [Slide(kind, page, link, key, title=key) for page, link, key, kind in
              deck_links(model_dir.name, args.lang, args.slides, prompt, args.style)]
    with use_language(args.lang):
        title = "GPT-2 内部：注意力与预测" if args.lang == "zh" else "Inside GPT-2: attention and prediction"
        deck = Deck(title, slides, style=args.style)
        t0 = time.perf_counter()
        rebuild(slides, args.lang, lambda done, total, what: print(f"  rebuilt {done}/{total}", flush=True))
        t_rebuild = time.perf_counter() - t0
        for s in slides:  # titles as "Add to deck" would give them: the figure's own
            if s.fig is not None:
                s.title = figure_title(s.fig, s.key)
            elif s.table is not None:  # as "Add to deck" names a table: the page, then the table
                s.title = "下一个词元 · 前 10 个" if args.lang == "zh" else "Next token · top 10"
            s.notes = f"{s.key}\n{prompt}"
            if s.error:
                print("  ", s.error)
        t0 = time.perf_counter()
        pptx = build_pptx(deck, f"{model_dir.name} · 2026-12-05", lang=args.lang)
        t_pptx = time.perf_counter() - t0
        t0 = time.perf_counter()
        page = build_html(deck, model_dir.name, args.lang)
        t_html = time.perf_counter() - t0
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"deck_{args.lang}.pptx"
    path.write_bytes(pptx)
    (OUT / f"deck_{args.lang}.html").write_bytes(page)
    n_ok = sum(not s.error for s in slides)
    print(f"{n_ok}/{len(slides)} slides: rebuilt from links in {t_rebuild:.1f} s; .pptx ({len(pptx) / 2**20:.1f} MB, "
          f"PNGs 3,200×1,800) in {t_pptx:.1f} s; HTML ({len(page) / 2**20:.1f} MB) in {t_html:.1f} s; "
          f"total {t_rebuild + t_pptx:.1f} s (goal: ≤ 30 s)")
    pages = render(path, OUT / f"deck_{args.lang}")
    print(f"{len(pages)} rendered pages in {pages[0].parent}")


if __name__ == "__main__":
    main()
