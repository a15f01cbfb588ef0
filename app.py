"""Inside GPT-2: entry point and the next-token page.

Run with `streamlit run app.py`. Other views are Streamlit pages in pages/; every page,
this one included, draws the shared sidebar (model, prompt, navigation) through
ui.shell.setup_page. See README for why the pages are laid out this way.
"""
import streamlit as st

from i18n import N_, _
from recipes import next_token as recipe
from ui import controls
from ui.figures import show
from ui.shell import setup_trace_page

lm, t = setup_trace_page(
    N_("Next token"),
    N_("GPT-2 reads your prompt and gives every token in its vocabulary (50,257 of them) a probability of coming "
       "next; the table and bars show the likeliest ones. Below, the same distribution on log-log axes, "
       "and how surprised GPT-2 was by each token of the prompt (dark = expected, bright = surprising)."),
)
show(recipe.summary(lm, t))
k = controls.slider(st, _("How many candidates"), 1, 50, key="next_k", default=10)
for view in (recipe.top_k(lm, t, k), recipe.rank(lm, t), recipe.surprisal(lm, t), recipe.tokenization(lm, t)):
    show(view)
