"""The app's languages: English (the source strings) and 简体中文, through gettext catalogs.

Every string a person reads is written in English in the code and wrapped where it is used:

    from i18n import _, N_
    st.caption(_("Layer {layer}, head {head}").format(layer=L, head=h))
    VIEWS = (N_("Logit lens"), N_("Attribution"))   # marked here, translated where shown: _(view)

Babel extracts the wrapped strings into `i18n/messages.pot`; the Chinese catalog is
`i18n/locales/zh_CN/LC_MESSAGES/messages.po`, compiled to `messages.mo` beside it (see
README, "Translations"). Placeholders are named `{…}` fields, filled with `.format` after
translation, never f-strings (Babel cannot extract those).

The language is per browser session: the page sets it at the start of each run
(`set_language`) and everything the run builds (recipes, figures, messages) reads it
through `_`. It is a context variable, so two sessions on two threads never see each
other's language, and a cache whose results hold text must have the language in its key.
"""
from __future__ import annotations

import contextvars
import gettext
from pathlib import Path

LOCALES = Path(__file__).resolve().parent / "locales"
DOMAIN = "messages"
LANGUAGES = {"en": "English", "zh": "简体中文"}  # code in links -> its name, in itself
_CATALOG_LOCALE = {"zh": "zh_CN"}  # code in links -> the catalog's directory under locales/
DEFAULT = "en"

_current: contextvars.ContextVar[str] = contextvars.ContextVar("language", default=DEFAULT)
_translations: dict[str, gettext.NullTranslations] = {}


def translations(lang: str) -> gettext.NullTranslations:
    """The compiled catalog of `lang` (English: the strings as written)."""
    if lang not in _translations:
        if lang in _CATALOG_LOCALE:
            _translations[lang] = gettext.translation(DOMAIN, LOCALES, languages=[_CATALOG_LOCALE[lang]])
        else:
            _translations[lang] = gettext.NullTranslations()
    return _translations[lang]


def set_language(lang: str) -> str:
    """Use `lang` for the rest of this run (this thread/context); unknown codes mean English."""
    lang = lang if lang in LANGUAGES else DEFAULT
    _current.set(lang)
    return lang


def language() -> str:
    return _current.get()


class use_language:
    """`with use_language("zh"): …` builds text in that language, then restores the previous one."""

    def __init__(self, lang: str):
        self.lang = lang

    def __enter__(self):
        self._token = _current.set(self.lang if self.lang in LANGUAGES else DEFAULT)
        return self

    def __exit__(self, *exc):
        _current.reset(self._token)


def _(message: str) -> str:
    """`message` in the current language."""
    return translations(_current.get()).gettext(message) if message else message


def ngettext(singular: str, plural: str, n: int) -> str:
    return translations(_current.get()).ngettext(singular, plural, n)


def N_(message: str) -> str:
    """Marks a string for the catalog where it is defined (a constant, an option); translate it where shown with _."""
    return message


def language_from_locale(locale: str | None) -> str:
    """The app's language for a browser's locale ("zh-CN", "zh-Hans-TW", "en-GB", None)."""
    return "zh" if (locale or "").lower().startswith("zh") else DEFAULT
