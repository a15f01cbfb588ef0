"""Attention explorer: the head atlas, one layer's heads, one head, one head across layers, one token.

Widgets here, views in recipes.attention. A view computes the layer (or head, or row) it
shows from the trace's stored residuals, cached by core, so a new layer or head costs about
one block, never a forward. Views that read every layer show progress and a Stop; only the
atlas's induction column runs the model, once per model. Closed tabs cost nothing.
"""
from functools import partial

import streamlit as st

from i18n import N_, _
from recipes import attention as recipe
from ui import controls
from ui.cached import induction_atlas
from ui.figures import show
from ui.progress import ASK_ABOVE_SECONDS, run_job
from ui.shell import setup_trace_page

lm, t = setup_trace_page(
    N_("Attention"),
    N_("Every token looks back at the tokens before it, through each layer's attention heads. The **head atlas** "
       "scores every head at once (one cell per layer and head: click one to open it); the other views draw "
       "patterns, where row *i* is a token (the query) and the colour in column *j* is how much of what it reads "
       "comes from token *j* (the key). Rows add up to 1, and the upper triangle is empty: a token cannot see the "
       "tokens after it."),
)
ss = st.session_state


def summaries() -> dict | None:
    """Entropy per head and each layer's pooled mean pattern, one layer at a time, with progress and a Stop."""
    return run_job(recipe.summaries_job(lm, t), key="attn_summaries")


# A click on an atlas cell, or a pick, opens that head (callbacks from ui: a page's own function kept by a
# widget would keep this run's model alive after the store unloads it).
OPEN_HEAD = {"attn_view": "One head"}  # i18n: skip (the tab's English key)
on_atlas_click = partial(controls.open_clicked, "attn_atlas_chart", "attn_layer", "attn_head", OPEN_HEAD)
on_atlas_pick = partial(controls.open_picked, "attn_atlas_pick", ("attn_layer", "attn_head"), OPEN_HEAD)


# Pickers shared by the views; a layer, head or position that does not exist goes to the nearest one.
c1, c2, c3, c4 = st.columns([1, 1, 2, 3])
layer = controls.selectbox(c1, _("Layer"), range(lm.n_layer), key="attn_layer")
head = controls.selectbox(c2, _("Head"), range(lm.n_head), key="attn_head")
colour = controls.selectbox(c3, _("Colour scale"), recipe.COLOURS, key="attn_colour", default="stretch",
                            format_func=recipe.colour_label,
                            help=_("Most heads of a trained GPT-2 put most of their weight on the first token (the "
                                   "attention sink): on a 0-to-1 scale everything else looks black. Stretched and log "
                                   "scales show the rest."))
c4.caption(recipe.picker_note(t, colour))
tabs = controls.tabs(recipe.VIEWS, key="attn_view")

with tabs["Head atlas"]:
    if tabs["Head atlas"].open:
        metric = controls.radio(st, _("Score"), recipe.METRICS, key="attn_metric", horizontal=True,
                                format_func=recipe.metric_label)
        scores = None
        if metric == "induction":
            scores = induction_atlas(lm.name, lm)
            if scores is None:  # a context too short to repeat random tokens: the page said so
                st.stop()
        elif metric == "entropy":
            done = summaries()
            if done is None:
                st.stop()
            scores = done["entropy"]
        with st.spinner(_("Scoring every head on {n:,} tokens…").format(n=t.n_tokens)):
            view = recipe.atlas(lm, t, metric, layer, head, scores, on_select=on_atlas_click)
        show(view)
        st.selectbox(_("Open a head (highest score first), or click a cell above"), view.values["cells"], index=None,
                     key="attn_atlas_pick", on_change=on_atlas_pick, placeholder=_("Choose a head"),
                     format_func=view.values["labels"].get)

with tabs["One layer, all heads"]:
    if tabs["One layer, all heads"].open:
        with st.spinner(_("Computing layer {layer}'s attention over {n:,} tokens…").format(layer=layer, n=t.n_tokens)):
            view = recipe.layer_heads(lm, t, layer, colour)
        show(view)

with tabs["One head"]:
    if tabs["One head"].open:
        with_scores = controls.toggle(st, _("Show the pre-softmax scores q·k/√d too"), key="attn_scores",
                                      help=_("The numbers the softmax turns into the pattern, recomputed from the "
                                             "layer's weights; masked (future) positions are left empty."))
        with st.spinner(_("Computing layer {layer}'s attention over {n:,} tokens…").format(layer=layer, n=t.n_tokens)):
            view = recipe.one_head(lm, t, layer, head, colour, with_scores)
        show(view)

with tabs["One head across layers"]:
    if tabs["One head across layers"].open:
        show(recipe.across_layers(lm, t, head, colour, summaries()))

with tabs["Token focus"]:
    if tabs["Token focus"].open:
        f1, f2 = st.columns([2, 1])
        # Opens mid-prompt, where both directions have tokens (at the last token, "attended by" is itself alone);
        # like every position, it goes back there when the prompt changes, unless the link names one.
        pos = controls.position(f1, _("Token"), t, key="attn_focus_pos", default=(t.n_tokens - 1) // 2)
        per_head = controls.radio(f2, _("Heads"), ["mean", "one"], key="attn_focus_heads", horizontal=True,
                                  format_func=lambda m: _("mean over heads") if m == "mean" else
                                  _("head {head} (picker above)").format(head=head))
        show(recipe.focus(lm, t, pos, head if per_head == "one" else None))

# What "One head across layers" and the entropy atlas read, computed while the model has nothing else
# to do (never ahead of anyone's asked work), when it is short: longer work waits for a click.
recipe.prefetch(lm, t, head, ASK_ABOVE_SECONDS)
