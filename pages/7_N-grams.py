"""Before GPT-2: n-gram models, which only count. Letter and word models (n = 1 … 5) built from a
text, what they write, what they predict after a context, and GPT-2's prediction beside them.

Widgets here, views in recipes.ngrams, counting in core.ngrams. The pasted text is content, not a
control of the view: it stays out of the link (a book would not fit in an address), like a long prompt."""
import streamlit as st

from i18n import N_, _
from recipes import ngrams as recipe
from ui import controls
from ui.figures import show
from ui.shell import get_trace, setup_trace_page
from ui.state import remember

lm, t = setup_trace_page(
    N_("Before GPT-2: n-grams"),
    N_("Before neural nets, language models only counted: how often each letter (or word) follows the n − 1 before "
       "it in a text. Here such models, n = 1 to 5, are built from a text as you watch: see what they write, what "
       "they predict next, and how that compares with GPT-2."),
)
source = controls.radio(st, _("Text to count"), list(recipe.SOURCES), key="ngram_source",
                        format_func=lambda s: _(recipe.SOURCES[s]), horizontal=True)
pasted = ""
if source == "yours":
    remember("ngram_text")  # kept while another page or the bundled text is shown
    pasted = st.text_area(_("Your text"), key="ngram_text", height=160,
                          placeholder=_("Paste a text in English: a story, an article, a book…"),
                          help=_("Not put in the page's link. At most 2,000,000 characters are counted. Press "
                                 "Ctrl+Enter (or click outside) to apply."))
corpus = recipe.corpus(source, pasted)
show(corpus)
text, label = corpus.values["text"], corpus.values["label"]
if text is None:
    st.stop()

tabs = controls.tabs(recipe.VIEWS, key="ngram_view")

with tabs["Samples"]:
    if tabs["Samples"].open:
        seed = controls.number_input(st.columns([1, 4])[0], _("Seed"), 0, 2**31 - 1, key="ngram_seed", default=0,
                                     help=_("Another seed, other samples; the same seed, the same samples."))
        show(recipe.samples(text, seed))

with tabs["Next letter and word"]:
    if tabs["Next letter and word"].open:
        c1, c2, c3 = st.columns([4, 1, 1])
        context = controls.text_input(c1, _("Context (empty: the sidebar prompt)"), key="ngram_context",
                                      placeholder=t.prompt[-120:])
        n = controls.slider(c2, _("n for the tables"), 1, recipe.MAX_N, key="ngram_n", default=2)
        k = controls.slider(c3, _("Rows"), 3, 30, key="ngram_k", default=10)
        context_trace = get_trace(lm, context) if context.strip() else t
        show(recipe.next_units(lm, context_trace, text, label, n, k))

with tabs["Letter statistics"]:
    if tabs["Letter statistics"].open:
        show(recipe.letter_statistics(text, label))
