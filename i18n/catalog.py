"""Keep the catalogs in step with the code: extract, merge, compile (Babel), and say what is left.

    python -m i18n.catalog            # after changing strings: messages.pot, messages.po updated, .mo compiled
    python -m i18n.catalog --check    # only report untranslated or fuzzy entries (exit 1 if any)

New strings land in messages.po with an empty msgstr; write the translation there (Poedit
or any editor), then run this again to compile. Equivalent pybabel commands:

    pybabel extract -F i18n/babel.cfg -k N_ -o i18n/messages.pot .
    pybabel update -i i18n/messages.pot -d i18n/locales -D messages -l zh_CN
    pybabel compile -d i18n/locales -D messages
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from babel.messages.frontend import CommandLineInterface
from babel.messages.pofile import read_po

ROOT = Path(__file__).resolve().parent.parent
HERE = ROOT / "i18n"
PO = HERE / "locales" / "zh_CN" / "LC_MESSAGES" / "messages.po"


def pybabel(*args: str) -> None:
    CommandLineInterface().run(["pybabel", "-q", *args])


def untranslated() -> list[str]:
    """The msgids with no translation (for a plural, any form left empty) or a fuzzy one."""
    with open(PO, "rb") as f:
        return [e.id if isinstance(e.id, str) else e.id[0] for e in read_po(f)
                if e.id and (e.fuzzy or not all(e.string if isinstance(e.string, (tuple, list)) else [e.string]))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    if not args.check:
        pot = HERE / "messages.pot"
        pybabel("extract", "-F", str(HERE / "babel.cfg"), "-k", "N_", "--no-location", "--sort-output",
                "--project", "Inside GPT-2", "-o", str(pot), str(ROOT))
        if PO.exists():
            pybabel("update", "-i", str(pot), "-d", str(HERE / "locales"), "-D", "messages", "-l", "zh_CN",
                    "--no-fuzzy-matching", "--ignore-obsolete")
        else:
            pybabel("init", "-i", str(pot), "-d", str(HERE / "locales"), "-D", "messages", "-l", "zh_CN")
        pybabel("compile", "-d", str(HERE / "locales"), "-D", "messages", "--statistics")
    left = untranslated()
    for msgid in left[:50]:
        print(f"untranslated: {msgid[:100]!r}")
    print(f"{len(left)} untranslated", file=sys.stderr)
    return 1 if left and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
