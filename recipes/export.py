"""The batch exporter: the standard figure set for a prompt (`recipes.figure_set`) written as files,
without a browser, for decks built from scripts.

    python -m recipes.export --model gpt2 --prompt "The best thing about AI is its ability to" --out slides/

or a slide deck saved on the Deck page (links and notes), its figures recomputed from the links:

    python -m recipes.export --deck talk.json --out talk.pptx      (or talk.html: the offline HTML deck)

Every argument is checked before the model is loaded; a problem is one line on stderr and a
non-zero exit (2: the command line, 1: the model or the disk). Files are written by viz.export.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from i18n import LANGUAGES, use_language
from viz.export import SLIDE, presentation_style, safe_filename, static_export, to_csv, to_html, to_png, to_svg

FORMATS = ("png", "svg", "html", "csv")
PROG = "python -m recipes.export"


class _Refused(Exception):
    """A problem with the command line (exit 2) or with the model or the disk (exit 1), in one line."""

    def __init__(self, message: str, code: int = 2):
        super().__init__(message)
        self.code = code


def _formats(text: str) -> list[str]:
    asked = list(dict.fromkeys(f.strip().lower().lstrip(".") for f in text.split(",") if f.strip()))
    unknown = [f for f in asked if f not in FORMATS]
    if unknown or not asked:
        problem = "unknown " + ", ".join(unknown) if unknown else "no format given"  # i18n: skip
        raise _Refused(f"--formats {text!r}: {problem}; choose from {','.join(FORMATS)}.")  # i18n: skip
    if {"png", "svg"} & set(asked) and not static_export().available:
        kept = [f for f in asked if f not in ("png", "svg")]
        if not kept:
            raise _Refused(static_export().message)
        print(f"note: {static_export().message} Writing {','.join(kept)} only.", file=sys.stderr)  # i18n: skip
        return kept
    return asked


def _make_out(text: str) -> tuple[Path, list[Path]]:
    """The output directory, made before any work (so a bad --out costs nothing), and the
    directories this made, to remove again if the export then fails."""
    if not text.strip():
        raise _Refused("--out is empty; give a directory, e.g. --out slides/ (--out . for this one).")  # i18n: skip
    out = Path(text).expanduser()
    try:  # a name over 255 bytes raises OSError from exists() already
        if out.exists() and not out.is_dir():
            raise _Refused(f"--out {text[:80]!r} is a file; give a directory (it is created if missing).")  # i18n: skip
        made = [p for p in (out, *out.parents) if not p.exists()]
        out.mkdir(parents=True, exist_ok=True)
    except (OSError, ValueError) as e:
        why = getattr(e, "strerror", None) or e
        raise _Refused(f"--out {text[:80]!r} cannot be created: {why}.") from None  # i18n: skip
    if not os.access(out, os.W_OK | os.X_OK):
        raise _Refused(f"--out {out} is not writable; choose another directory.")  # i18n: skip
    return out, made


def main(argv: list[str] | None = None) -> int:
    """The CLI; returns 0, or exits non-zero with one line on stderr saying what to fix."""
    import argparse

    about = "Write the standard figure set for a prompt (PNG, SVG, HTML, CSV)."  # i18n: skip
    parser = argparse.ArgumentParser(prog=PROG, description=about)
    parser.add_argument("--model", default=None,
                        help="hub id or local directory (default: GPT2VIZ_MODEL or gpt2)")  # i18n: skip
    parser.add_argument("--prompt", default=None, help="the text to trace (not with --deck)")  # i18n: skip
    parser.add_argument("--deck", default=None,
                        help="a deck file (.json) from the Deck page; --out is then a .pptx or .html")  # i18n: skip
    parser.add_argument("--out", required=True,
                        help="output directory (created), or with --deck the .pptx or .html file")  # i18n: skip
    parser.add_argument("--style", choices=["normal", "slides", "dark"], default=None,
                        help="default: slides (with --deck: the deck file's)")  # i18n: skip
    parser.add_argument("--formats", default=",".join(FORMATS),
                        help=f"comma-separated, from {','.join(FORMATS)}")  # i18n: skip
    parser.add_argument("--keep", choices=["first", "last"], default="first",
                        help="which end of a prompt longer than the model's context to keep")  # i18n: skip
    parser.add_argument("--lang", choices=list(LANGUAGES), default="en",
                        help="language of the figures' titles and axes (zh: 简体中文)")  # i18n: skip
    args = parser.parse_args(argv)
    try:
        with use_language(args.lang):
            return _export_deck(args) if args.deck is not None else _export(args)
    except _Refused as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)  # i18n: skip
        raise SystemExit(e.code) from None
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)  # i18n: skip
        raise SystemExit(130) from None


def _export_deck(args) -> int:
    """--deck talk.json --out talk.pptx: every slide rebuilt from its link; a slide that cannot be is named on
    stderr and left out, the rest of the deck is written (exit 1 only when no slide could be built)."""
    from datetime import date

    from .deck import DeckFileError, build_html, build_pptx, from_json, rebuild

    out = Path(args.out).expanduser()
    try:
        if out.suffix.lower() not in (".pptx", ".html") or out.is_dir():
            raise _Refused(f"--out {args.out[:80]!r}: with --deck, give a .pptx or .html file to write.")  # i18n: skip
        if not out.parent.is_dir():
            raise _Refused(f"--out {args.out[:80]!r}: its directory does not exist.")  # i18n: skip
    except (OSError, ValueError) as e:
        raise _Refused(f"--out {args.out[:80]!r}: {getattr(e, 'strerror', None) or e}.") from None  # i18n: skip
    try:
        deck, problems = from_json(Path(args.deck).expanduser().read_bytes())
    except OSError as e:
        raise _Refused(f"--deck {args.deck!r} cannot be read: {e.strerror or e}.") from None  # i18n: skip
    except DeckFileError as e:
        raise _Refused(f"--deck {args.deck!r}: {e}") from None  # i18n: skip
    if args.style:
        deck.style = args.style

    def progress(done: int, total: int, title: str) -> None:
        print(f"[{done}/{total}] {title}", file=sys.stderr)  # i18n: skip
    rebuild(deck.slides, args.lang, progress)
    problems += [s.error for s in deck.slides if s.error]
    for problem in problems:
        print(f"note: {problem}", file=sys.stderr)  # i18n: skip
    built = [s for s in deck.slides if not s.error]
    if not built:
        raise _Refused("no slide of the deck could be rebuilt; see the notes above.", code=1)  # i18n: skip
    models = dict.fromkeys(s.query().get("model", "") for s in built)
    subtitle = " · ".join([", ".join(m for m in models if m), date.today().isoformat()]).strip(" ·")
    data = (build_pptx(deck, subtitle, lang=args.lang) if out.suffix.lower() == ".pptx"
            else build_html(deck, subtitle, args.lang))
    try:
        out.write_bytes(data)
    except OSError as e:
        raise _Refused(f"writing {out} failed: {e.strerror or e}.", code=1) from None  # i18n: skip
    print(f"wrote {out} ({len(built)} of {len(deck.slides)} slides)")  # i18n: skip
    return 0


def _export(args) -> int:
    if args.prompt is None:
        raise _Refused("--prompt is required (or give --deck talk.json).")  # i18n: skip
    try:
        raw = args.prompt.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate that is not an escaped byte
        raw = args.prompt.encode("utf-8", "surrogatepass")
    fixed = raw.decode("utf-8", "replace")
    if fixed != args.prompt:  # bytes that are not UTF-8 (the shell passes them as surrogates)
        print("note: --prompt has bytes that are not UTF-8; they read as U+FFFD.", file=sys.stderr)  # i18n: skip
        args.prompt = fixed
    if not args.prompt.strip():
        empty = '--prompt is empty; give the text to trace, e.g. --prompt "The best thing about AI is".'  # i18n: skip
        raise _Refused(empty)
    formats = _formats(args.formats)  # all checked before a model is loaded
    out, made = _make_out(args.out)
    try:
        written = _write(args, formats, out)
    except BaseException:
        for path in made:  # leave no empty directories behind
            if path.is_dir() and not any(path.iterdir()):
                path.rmdir()
        raise
    print(f"wrote {len(written)} files to {out}")  # i18n: skip
    return 0


def _write(args, formats: list[str], out: Path) -> list[str]:
    # core (and torch) is imported here, after the arguments were checked: a bad command line fails at once
    from core import ModelLoadError, PromptError, load_model, prompt_ids, trace_ids

    from .figure_set import standard_figures

    try:
        lm = load_model(args.model)
        ids, n_dropped = prompt_ids(lm, args.prompt, args.keep)
    except ModelLoadError as e:
        raise _Refused(f"{e} {e.hint}", code=1) from None
    except PromptError as e:
        raise _Refused(str(e), code=1) from None
    if n_dropped:
        dropped, other, end = ("last", "last", "end") if args.keep == "first" else ("first", "first", "start")
        n_read = f"the prompt is {len(ids) + n_dropped:,} tokens; {lm.label} reads at most {lm.n_ctx:,}"  # i18n: skip
        kept = f"--keep {other} keeps the {end} instead"  # i18n: skip
        note = f"note: {n_read}, so the {dropped} {n_dropped:,} were dropped ({kept})."  # i18n: skip
        print(note, file=sys.stderr)
    t = trace_ids(lm, ids, prompt=args.prompt, n_dropped=n_dropped, kept=args.keep)
    writers = {"png": to_png, "svg": to_svg, "html": to_html, "csv": to_csv}
    written: list[str] = []
    try:
        for name, fig in standard_figures(lm, t).items():
            if args.style != "normal":
                fig = presentation_style(fig, dark=args.style == "dark", prompt=args.prompt, width=SLIDE["width"])
            base = safe_filename(name, lm.label, prompt=args.prompt)
            for fmt in formats:
                path = out / f"{base}.{fmt}"
                path.write_bytes(writers[fmt](fig))
                written.append(path.name)
        (out / "index.txt").write_text(f"{lm.name}\n{args.prompt}\n\n" + "\n".join(written) + "\n", encoding="utf-8")
    except OSError as e:
        failed = f"writing to {out} failed after {len(written)} files: {e.strerror or e}."  # i18n: skip
        raise _Refused(failed, code=1) from None
    return written


if __name__ == "__main__":
    sys.exit(main())
