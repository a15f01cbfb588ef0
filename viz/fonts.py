"""Fonts for Chinese text in exported figures.

PNG export draws text with the fonts of the machine that runs the app (kaleido's Chromium
asks fontconfig); without a CJK font every Chinese character comes out as a box. SVG and
HTML name the font families (`viz.common.FONT_FAMILY`) and leave the drawing to the viewer.
"""
from __future__ import annotations

import functools
import shutil
import subprocess

CJK_FONT_FIX = ("apt-get install fonts-noto-cjk (Debian/Ubuntu), "  # i18n: skip
                "dnf install google-noto-sans-cjk-fonts (Fedora)")


@functools.lru_cache(maxsize=1)
def cjk_font() -> str | None:
    """The family name of a font on this machine that covers Chinese, or None (also when
    fontconfig is missing: then it cannot be known, and Chromium's own fallback decides)."""
    if shutil.which("fc-list") is None:
        return None
    try:
        out = subprocess.run(["fc-list", ":lang=zh", "family"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    families = sorted({line.split(",")[0].strip() for line in out.splitlines() if line.strip()})
    best = sorted(families, key=lambda f: ("SC" not in f, "Sans" not in f, f))  # Simplified Chinese, sans-serif first
    return best[0] if best else None


def cjk_font_missing() -> bool:
    """True when this machine can be asked (fontconfig) and has no font that covers Chinese."""
    return shutil.which("fc-list") is not None and cjk_font() is None


def has_cjk(text: str) -> bool:
    """Whether `text` holds Chinese, Japanese or Korean characters (which need a CJK font)."""
    return any("\u2e80" <= c <= "\u9fff" or "\uac00" <= c <= "\ud7af" or "\uf900" <= c <= "\ufaff"
               or "\uff00" <= c <= "\uffef" for c in text)
