"""The model's own parameters, no prompt involved: matrices, smoothed views, distributions, table, spectra.

Widgets here, views in recipes.weights, per-model computations cached in ui.cached."""
import streamlit as st

from i18n import N_, _
from recipes import weights as recipe
from ui import cached, controls
from ui.figures import show
from ui.shell import setup_page

lm = setup_page(
    N_("Weights"),
    N_("Every number on this page is one of the model's own parameters, read from the checkpoint; no prompt is "
       "involved. In the matrices red is positive, blue negative and white zero; rows are what a layer reads "
       "(its inputs) and columns what it writes (its outputs)."),
)
if lm is None:
    st.stop()

c1, c2, c3 = st.columns([3, 1, 1])
kind_key = controls.selectbox(c1, _("Parameter"), list(recipe.KINDS), key="weights_param",
                              format_func=recipe.kind_label)
kind = recipe.KINDS[kind_key]
block = controls.selectbox(c2, _("Block"), range(lm.n_layer), key="weights_block",
                           format_func=lambda b: _("block {block}").format(block=b), disabled=not kind.per_block,
                           help=_("Model-wide parameters (embeddings, final LayerNorm) have no block."))
head = controls.selectbox(c3, _("Head"), ["all"] + list(range(lm.n_head)), key="weights_head",
                          format_func=recipe.head_label, disabled=kind.head_axis is None,
                          help=_("Query, key, value and output weights split into heads."))
sel = recipe.select(lm, kind_key, block, head)
tabs = list(controls.tabs(recipe.VIEWS, key="weights_tab").values())


def grid(mode: str, window: int = 1):
    return cached.weights_grid(lm.name, sel.block, kind_key, sel.head, mode, window, lm)


with tabs[0]:
    if tabs[0].open:
        show(recipe.matrix(lm, sel, grid("raw") if kind.is_matrix else None))

with tabs[1]:
    if tabs[1].open:
        if not kind.is_matrix:
            show(recipe.needs_matrix(N_("Smoothing")))
        else:
            top, default = recipe.window_range(sel)
            window = controls.slider(st, _("Window (cells per side)"), 1, top, key="weights_window", default=default,
                                     help=_("The essay smooths GPT-2's 768×768 matrices over 64×64 squares."))
            show(recipe.smoothed(sel, window, {mode: grid(mode, window) for mode in recipe.SMOOTHING}))

with tabs[2]:
    if tabs[2].open:
        dist = cached.distributions(lm.name, kind_key, lm)
        log_y = controls.toggle(st, _("Log scale (shows the tails)"), key="weights_log")
        show(recipe.across_blocks(lm, sel, log_y, dist))

with tabs[3]:
    if tabs[3].open:
        show(recipe.all_parameters(lm, cached.parameter_table(lm.name, lm)))

with tabs[4]:
    if tabs[4].open:
        if not kind.is_matrix:
            show(recipe.needs_matrix(N_("A spectrum")))
        else:
            show(recipe.spectrum_view(sel, cached.singular(lm.name, sel.block, kind_key, sel.head, lm)))
