"""What a page shows while its model work waits in the compute lane (core.lane) or runs there.

Every script run registers this session with the lane (`join_lane`): its work takes turns with
other sessions' work, and while the page waits it says so at once, where the figure will appear:
"Waiting for the model: 3 requests ahead…" while queued, then what is being computed
("Computing the attention patterns of layer 5's heads over 1,012 tokens…") when that takes over
half a second. Updating that message is also where Streamlit stops a run that is no longer wanted
(the tab closed, or the person changed a widget): the lane then drops the queued work that nobody
else waits for.
"""
from __future__ import annotations

import time

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

from core.lane import owner_var, waiter_var
from i18n import _, ngettext

SAY_RUNNING_AFTER_S = 0.5  # shorter work shows nothing: a message that flashes is worse than none
RESEND_S = 0.5


def _recording_for_cache() -> bool:
    """Whether this code runs inside an st.cache_data / st.cache_resource function: Streamlit records
    the elements drawn there to replay them on a cache hit, and an element drawn into a placeholder
    made outside the function cannot be replayed; so no message there (the cached call shows its own
    spinner). Reads Streamlit's private replay context; if that is not where this version keeps it,
    stays quiet."""
    try:
        from streamlit.runtime import caching

        return any(bool(ctx._cached_message_stack.get()) for ctx in (
            caching.CACHE_DATA_MESSAGE_REPLAY_CTX, caching.CACHE_RESOURCE_MESSAGE_REPLAY_CTX))
    except (ImportError, AttributeError):
        return True


class Waiting:
    """One wait's message, in a placeholder made where the page is when the wait begins."""

    def __init__(self):
        self.t0 = time.monotonic()
        self.slot = None
        self.shown, self.sent = None, 0.0
        self.quiet = _recording_for_cache()

    def __call__(self, ahead: int, running: bool, label: str) -> None:
        if self.quiet:
            return
        if ahead > 0 or not running:
            text = ngettext("Waiting for the model: {n:,} request from other pages ahead…",
                            "Waiting for the model: {n:,} requests from other pages ahead…", ahead).format(n=ahead)
            if ahead == 0:
                text = _("Waiting for the model: next in line…")
            if label:
                text += " " + _("Then: {label}").format(label=label)
        elif time.monotonic() - self.t0 >= SAY_RUNNING_AFTER_S and label:
            text = label
        else:
            return
        now = time.monotonic()
        if text == self.shown and now - self.sent < RESEND_S:
            return
        if self.slot is None:
            self.slot = st.empty()
        # Sent again now and then even when unchanged: sending is where Streamlit stops a run nobody wants.
        self.slot.info(text, icon=":material/hourglass_top:")
        self.shown, self.sent = text, now

    def close(self) -> None:
        if self.slot is not None:
            self.slot.empty()


def join_lane() -> None:
    """Make this script run's model work queue as this browser session's, and say so while it waits."""
    ctx = get_script_run_ctx()
    owner_var.set(ctx.session_id if ctx is not None else None)
    waiter_var.set(Waiting)
