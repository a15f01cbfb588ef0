"""Shareable links: the prompt, the model and each page's main controls live in the URL query.

A page lists its main widget keys with a parser and a default:

    url_state({"attn_layer": (int, 0), "attn_head": (int, 0)})

before drawing those widgets (without `value=`/`index=`, since the state is seeded here).
On a session's first visit to the page the values come from the URL when present and
valid; on every run the current values are written back, so the address bar always
holds a link that reopens the same view.
"""
from __future__ import annotations

from typing import Any, Callable

import streamlit as st

MAX_PROMPT_IN_URL = 2000  # characters; longer prompts are not put in links
SHARED = {"prompt": "prompt", "model": "model_name", "keep": "keep"}  # URL name -> session key


def _parse(parser: Callable[[str], Any], raw: str):
    try:
        return parser(raw)
    except (TypeError, ValueError):
        return None


def seed_shared_state() -> None:
    """Once per browser session: prompt, model and kept end from the URL, if given."""
    ss = st.session_state
    if ss.get("_url_seeded"):
        return
    ss["_url_seeded"] = True
    q = st.query_params
    if "prompt" in q:
        ss["prompt"] = q["prompt"]
    if q.get("model", "").strip():
        ss["model_name"] = q["model"].strip()
    if q.get("keep") in ("first", "last"):
        ss["keep"] = q["keep"]


def write_shared_state() -> None:
    ss = st.session_state
    q = st.query_params
    prompt = ss.get("prompt", "")
    if len(prompt) <= MAX_PROMPT_IN_URL:
        q["prompt"] = prompt
    elif "prompt" in q:
        del q["prompt"]
    q["model"] = ss.get("model_name", "")
    if ss.get("keep", "first") != "first":
        q["keep"] = ss["keep"]
    elif "keep" in q:
        del q["keep"]


def url_state(spec: dict[str, tuple[Callable[[str], Any], Any]]) -> None:
    """Seed page widgets' state from the URL (first visit) or defaults, then mirror it back."""
    ss = st.session_state
    page_key = "_url_seeded_" + "|".join(sorted(spec))
    first_visit = not ss.get(page_key)
    ss[page_key] = True
    q = st.query_params
    for key, (parser, default) in spec.items():
        value = _parse(parser, q[key]) if first_visit and key in q else None
        if value is not None:
            ss[key] = value
        elif key not in ss:
            ss[key] = default
        q[key] = str(ss[key])


def prompt_too_long_for_links() -> bool:
    return len(st.session_state.get("prompt", "")) > MAX_PROMPT_IN_URL
