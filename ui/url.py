"""Shareable links: the prompt, the model and each page's main controls live in the URL query.

A page lists its main widget keys with a parser, a default and, where the page has bounds,
the values it accepts:

    url_state({"attn_layer": (int, 0, range(lm.n_layer)), "attn_colour": (str, "stretch", COLOUR_SCALES)})

before drawing those widgets (without `value=`/`index=`, since the state is seeded here).
On a session's first visit to the page the values come from the URL when present and
valid; a value outside the accepted ones is corrected (an int to the nearest end of its
range, anything else to the default) on every run, and the corrected value is what the
address bar shows, so a copied link never carries `attn_layer=999`. A value Streamlit
dropped because a run stopped before drawing its widget (an empty prompt) comes back.

A link may name only a model the operator allows (`core.model.is_allowed_model`): any other
is not loaded, and the page says so (see `ui.shell`).
"""
from __future__ import annotations

from collections.abc import Callable, Container
from typing import Any

import streamlit as st

from core.model import is_allowed_model, link_name, model_from_link
from i18n import LANGUAGES, _
from ui.state import remember

MAX_PROMPT_IN_URL = 2000  # characters; longer prompts are not put in links
MAX_PROMPT_CHARS = 50_000  # a pasted book stops here; 1,024 GPT-2 tokens are ~4,000 English characters
FIGURE_STYLES = ("normal", "slides", "dark")  # the sidebar's figure style (ui.figures.STYLES), shared by every page


def clean_text(text: Any) -> str:
    """`text` as a browser could have sent it: a lone surrogate (from a notebook, a test, a hand-made
    session) becomes U+FFFD, since Streamlit cannot send it to the page; a pair is joined."""
    text = text if isinstance(text, str) else str(text)
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _parse(parser: Callable[[str], Any], raw: str):
    """The link's value read by the control's parser, or None (the control's default) for anything
    malformed: a wrong type, bad JSON, JSON nested too deep to read (RecursionError), a huge number."""
    try:
        return parser(clean_text(raw))
    except (TypeError, ValueError, RecursionError, OverflowError, MemoryError):
        return None


# ---- the prompt: at most MAX_PROMPT_CHARS, cut on the side the token limit keeps ---------------
def fit_prompt(text: str, keep: str = "first") -> tuple[str, int]:
    """`text` cut to MAX_PROMPT_CHARS characters (its first or last ones), and how many were cut."""
    cut = max(0, len(text) - MAX_PROMPT_CHARS)
    if not cut:
        return text, 0
    return (text[:MAX_PROMPT_CHARS] if keep == "first" else text[-MAX_PROMPT_CHARS:]), cut


def set_prompt(text: str) -> None:
    """The shared prompt, cut to MAX_PROMPT_CHARS; a cut is remembered so the sidebar can say so."""
    ss = st.session_state
    text = clean_text(text)
    fitted, cut = fit_prompt(text, ss.get("keep", "first"))
    ss["prompt"] = fitted
    ss["_prompt_cut"] = {"full": text} if cut else None


def prompt_cut_notice() -> str | None:
    """What happened to an over-long prompt, while it is the prompt; re-cut if the kept end changed."""
    ss = st.session_state
    cut = ss.get("_prompt_cut")
    if not cut:
        return None
    full, keep = cut["full"], ss.get("keep", "first")
    cuts = {k: fit_prompt(full, k)[0] for k in ("first", "last")}
    if ss.get("prompt") not in cuts.values():  # the prompt was edited since
        ss["_prompt_cut"] = None
        return None
    ss["prompt"] = cuts[keep]
    if keep == "first":
        notice = _("The prompt was {n:,} characters; the box holds {max:,}, so the first {max:,} were kept and the "
                   "other {cut:,} dropped.")
    else:
        notice = _("The prompt was {n:,} characters; the box holds {max:,}, so the last {max:,} were kept and the "
                   "other {cut:,} dropped.")
    return notice.format(n=len(full), max=MAX_PROMPT_CHARS, cut=len(full) - MAX_PROMPT_CHARS)


# ---- prompt, model and kept end -----------------------------------------------------------------
def seed_shared_state() -> None:
    """Once per browser session: prompt, model, kept end and figure style from the URL, if given. A model the
    operator does not allow is not taken: its name waits under `_link_model_refused`."""
    ss = st.session_state
    if ss.get("_url_seeded"):
        return
    ss["_url_seeded"] = True
    q = st.query_params
    if q.get("keep") in ("first", "last"):
        ss["keep"] = q["keep"]
    if q.get("style") in FIGURE_STYLES:
        ss["style"] = q["style"]
    if q.get("lang") in LANGUAGES:
        ss["lang"] = q["lang"]
    if "prompt" in q:
        set_prompt(q["prompt"])
    asked = clean_text(q.get("model", "")).strip()
    name = model_from_link(asked) if asked else ""
    if name and is_allowed_model(name):
        ss["model_name"] = name
    elif name:
        ss["_link_model_refused"] = asked


def write_shared_state() -> None:
    ss = st.session_state
    q = st.query_params
    prompt = ss.get("prompt", "")
    if len(prompt) <= MAX_PROMPT_IN_URL:
        q["prompt"] = prompt
    elif "prompt" in q:
        del q["prompt"]
    name = ss.get("model_name", "")
    q["model"] = link_name(name) if name else name
    if ss.get("lang") in LANGUAGES:  # always: a shared link opens in the language it was copied in
        q["lang"] = ss["lang"]
    for key, default in (("keep", "first"), ("style", "normal")):  # written only when not the default
        if ss.get(key, default) != default:
            q[key] = ss[key]
        elif key in q:
            del q[key]


# ---- page controls ------------------------------------------------------------------------------
Accepted = Container | Callable[[Any], Any]  # the values a control accepts, or a function that corrects one
Spec = dict[str, tuple]  # key -> (parser, default) or (parser, default, accepted)


def corrected(value: Any, accepted: Accepted | None, default: Any) -> Any:
    """`value` if accepted; an int outside a range goes to the range's nearest end; else `default`.
    `accepted` may also be a function returning the corrected value."""
    if accepted is None:
        return value
    if callable(accepted) and not isinstance(accepted, range):
        return accepted(value)
    if isinstance(accepted, range) and isinstance(value, int) and len(accepted):
        return value if value in accepted else (accepted[0] if value < accepted[0] else accepted[-1])
    return value if value in accepted else default


def to_link(value: Any) -> str:
    """A control's value as the link writes it: lists (and tuples in them) as JSON, the rest as str()."""
    if isinstance(value, (list, tuple)):
        import json

        return json.dumps(value, ensure_ascii=False)
    return str(value)


LINK_KEYS = ("prompt", "model", "keep", "style", "lang")  # in every page's link; the rest are the page's controls
_DRAWN = "_url_drawn"


def begin_page_run(page: str) -> None:
    """At the start of a page's run: drop from the address bar the controls the page's previous
    run did not draw (another tab's, or a hand-edited link's unknown or misspelt ones), so a
    copied link holds just the view on screen, each value as the page corrected it; after a
    switch from another page, that page's controls. The session's first run keeps the link's
    values, for the controls the page draws later (an open tab's)."""
    ss = st.session_state
    last = ss.get(_DRAWN)
    if last is not None and last.get("stopped") and last["page"] == page:
        last = None  # it stopped before its controls (an empty prompt): the link's values wait for them
    if last is not None:
        q = st.query_params
        if last["page"] == page:
            stale = [k for k in q if k not in LINK_KEYS and k not in last["keys"]]
        else:  # the person came from another page: its controls are not this page's
            stale = [k for k in q if k in last["keys"]]
        for key in stale:
            del q[key]
    ss[_DRAWN] = {"page": page, "keys": set()}


def stopped_early() -> None:
    """The page's run stops here, before its controls (no prompt, no model): the next run of the same
    page keeps the controls the address bar holds, so a link's view is there once the prompt is."""
    drawn = st.session_state.get(_DRAWN)
    if drawn is not None:
        drawn["stopped"] = True


def url_state(spec: Spec) -> None:
    """Seed page widgets' state from the URL (first visit), from what a stopped run dropped, or
    from defaults; correct values outside what is accepted; mirror the result back to the URL."""
    ss = st.session_state
    page_key = "_url_seeded_" + "|".join(sorted(spec))
    first_visit = not ss.get(page_key)
    ss[page_key] = True
    q = st.query_params
    drawn = ss.get(_DRAWN)
    if drawn is not None:
        drawn["keys"].update(spec)
    remember(*spec)  # values Streamlit dropped while a run stopped before these widgets come back
    for key, (parser, default, *accepted) in spec.items():
        value = _parse(parser, q[key]) if first_visit and key in q else None
        if value is not None:
            ss[key] = value
        elif key not in ss:
            ss[key] = default
        ss[key] = corrected(ss[key], accepted[0] if accepted else None, default)
        remember(key)
        q[key] = to_link(ss[key])


def prompt_too_long_for_links() -> bool:
    return len(st.session_state.get("prompt", "")) > MAX_PROMPT_IN_URL
