"""Long work, layer by layer: a progress bar that says what is being done, and a Stop.

Core computes views that read every layer one layer at a time and caches each layer's
result, so a run that is stopped keeps what it finished and resumes from there.
"""
from __future__ import annotations

from typing import Callable, TypeVar

import streamlit as st

T = TypeVar("T")


ASK_ABOVE_SECONDS = 2.0  # longer work waits for a click


def layer_by_layer(label: str, n_layer: int, run: Callable[[Callable[[int], None]], T], *, key: str,
                   estimate_s: float = 0.0, work_id: object = None) -> T | None:
    """`run(on_layer)`, where core calls on_layer(L) before computing layer L. The bar and the
    Stop button appear with the first layer that needs computing (nothing shows when all
    is cached). Work guessed to take over ASK_ABOVE_SECONDS (`estimate_s`, 0 when cached)
    waits for a Compute click, remembered for `work_id` (say, the prompt's trace). Returns
    None when it is waiting for that click, or once the person pressed Stop (with Continue)."""
    ss = st.session_state
    stopped, asked = f"{key}_stopped", f"{key}_asked"
    if estimate_s > ASK_ABOVE_SECONDS and ss.get(asked) != work_id:
        st.caption(f"{label} takes about {estimate_s:,.0f} s for this model and prompt.")
        st.button("Compute", key=f"{key}_compute", icon=":material/play_arrow:",
                  on_click=ss.update, args=({asked: work_id, stopped: False},))
        return None
    if ss.get(stopped):
        st.info(f"{label}: stopped. The layers already computed are kept; Continue picks up from there.")
        st.button("Continue", key=f"{key}_continue", on_click=ss.__setitem__, args=(stopped, False))
        return None
    bar, stop = st.empty(), st.empty()
    shown = []

    def on_layer(layer: int) -> None:
        if not shown:
            stop.button("Stop", key=f"{key}_stop", on_click=ss.__setitem__, args=(stopped, True))
            shown.append(True)
        bar.progress(layer / n_layer, text=f"{label}: layer {layer + 1} of {n_layer}…")

    try:
        return run(on_layer)
    finally:
        bar.empty()
        stop.empty()
