"""Widget values that outlive the runs that do not draw their widget.

Streamlit forgets a widget's state at the end of any run that does not draw it: when the
page that drew it is left, and when a page stops early (an empty prompt, a model that
failed to load). Two helpers keep such values under plain session-state keys.

Sidebar widgets, drawn on every page: the value lives under a plain key (`prompt`,
`style`, …) and the widget, keyed `sidebar_<key>`, is seeded from it on every run and
copies its changes back:

    st.radio("Figure style", options, **persisted("style", "normal"))

Page widgets keep their own key (`attn_layer`); `remember(...)`, called before they are
drawn, keeps a copy of each value and puts it back when Streamlit has dropped it.
`ui.url.url_state` does this for every control it mirrors in the link.
"""
from __future__ import annotations

from typing import Any

import streamlit as st

_KEPT = "_kept_"  # prefix of the plain copies


def _copy_back(widget_key: str, state_key: str) -> None:
    st.session_state[state_key] = st.session_state[widget_key]


def persisted(state_key: str, default=None) -> dict:
    """Keyword arguments (key, on_change, args) for a widget bound to st.session_state[state_key]."""
    ss = st.session_state
    if default is not None:
        ss.setdefault(state_key, default)
    widget_key = f"sidebar_{state_key}"
    ss[widget_key] = ss[state_key]
    return dict(key=widget_key, on_change=_copy_back, args=(widget_key, state_key))


def kept_value(key: str, default: Any = None) -> Any:
    """The last value `remember` saw for `key` (default if none)."""
    return st.session_state.get(_KEPT + key, default)


def remember(*keys: str) -> None:
    """Before drawing these widgets: restore any value Streamlit dropped, and keep a copy of the rest."""
    ss = st.session_state
    for key in keys:
        if key not in ss and _KEPT + key in ss:
            ss[key] = ss[_KEPT + key]
        if key in ss:
            ss[_KEPT + key] = ss[key]


def drop_stale_widget_metadata() -> None:
    """Forget what Streamlit keeps about widgets that no longer have a value.

    Streamlit keeps each widget's metadata (its callback, its format function) for as long as
    the session lives, even after the widget's value was dropped. Those functions belong to
    the page run that drew the widget, so they keep that run's globals alive: its model and
    its trace. A session that went from gpt2-xl to gpt2 would hold gpt2-xl forever. Called
    at the start of every run (after Streamlit ran this run's callbacks), this drops the
    metadata of widgets that have no value left. It reaches into Streamlit's session state;
    if a Streamlit version lays that out differently it does nothing (tests/test_links.py
    then fails on the live-model count).
    """
    try:
        from streamlit.runtime.state.session_state_proxy import get_session_state

        safe = get_session_state()
        with safe._lock:
            state = safe._state
            widgets = state._new_widget_state
            alive = set(widgets.states) | set(state._old_state)
            for widget_id in [w for w in widgets.widget_metadata if w not in alive]:
                del widgets.widget_metadata[widget_id]
    except (AttributeError, ImportError, TypeError):
        return
