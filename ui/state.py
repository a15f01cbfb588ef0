"""Sidebar widgets whose values survive page switches.

Streamlit forgets a widget's state when the page that drew it is left, and each page here
draws the sidebar anew. So the value lives under a plain session-state key (`prompt`,
`style`, …) and the widget, keyed `sidebar_<key>`, is seeded from it on every run and
copies its changes back:

    st.radio("Figure style", options, **persisted("style", "normal"))
"""
from __future__ import annotations

import streamlit as st


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
