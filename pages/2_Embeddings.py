"""Token and position embeddings: the prompt's vectors, the position table, word vectors,
maps of meaning, the whole vocabulary on one map, and tokens drifting apart in context.

Widgets here, views in recipes.embeddings, per-model computations cached in ui.cached."""
import streamlit as st

from i18n import N_, _
from recipes import embeddings as recipe
from ui import cached, controls
from ui.figures import show
from ui.shell import HELLO_BYE, current_trace, setup_page

lm = setup_page(
    N_("Embeddings"),
    N_("GPT-2's first step looks each token up in a table of vectors (768 numbers for GPT-2 small) and adds a "
       "vector for its position. Tokens used in similar ways get similar vectors, so on the maps below words "
       "with related meanings land close together."),
)
if lm is None:
    st.stop()
t = current_trace(lm)


tabs = list(controls.tabs(recipe.VIEWS, key="emb_tab").values())

with tabs[0]:
    if tabs[0].open:
        st.button(_("Show the essay's example: hello ×16, bye ×6"), key="emb_hello", on_click=controls.set_state,
                  args=({"prompt": HELLO_BYE},), icon=":material/waving_hand:")
        if t is not None:
            start, cap = 0, recipe.MAX_HEATMAP_TOKENS
            if t.n_tokens > cap:
                start = controls.slider(st, _("First position shown ({n} at a time)").format(n=cap), 0,
                                        t.n_tokens - cap, key="emb_start", default=0)
            show(recipe.prompt_embeddings(lm, t, start))

with tabs[1]:
    if tabs[1].open:
        show(recipe.positions(lm, cached.position_views(lm.name, lm)))

with tabs[2]:
    if tabs[2].open:
        c1, c2 = st.columns([3, 1])
        words = recipe.typed_words(controls.text_input(c1, _("Words, separated by commas"), key="emb_words",
                                                       default=recipe.default_words(lm)))
        leading = controls.toggle(c2, _("In-sentence form (“ word”)"), key="emb_leading", default=True,
                                  help=_("GPT-2 writes a word in mid-sentence with its leading space, as one token: "
                                         "␣cat. Off: the word as typed, as at the very start of a text."))
        wvs = cached.looked_up(lm.name, tuple(words), leading, lm) if words else []
        show(recipe.word_table(lm, words, leading, wvs))
        if words:
            pick = controls.selectbox(st, _("Nearest tokens to"), words, key="emb_nn_word", format_func=str)
            show(recipe.neighbours(lm, pick, leading, cached.neighbours(lm.name, pick, leading, lm)))

with tabs[3]:
    if tabs[3].open:
        text = controls.text_area(st, _("Words by group, one group per line: “group: word, word, …”"),
                                  key="emb_groups", default=recipe.default_groups(lm), height=180)
        c1, c2, c3 = st.columns(3)
        method = controls.radio(c1, _("Projection"), ["umap", "pca"], horizontal=True, key="emb_method",
                                format_func=lambda m: m.upper(), help=_("UMAP keeps neighbours together; PCA "
                                "keeps the directions of largest spread (linear, exact, instant)."))
        dims = controls.radio(c2, _("Dimensions"), [2, 3], horizontal=True, key="emb_dims")
        leading_map = controls.toggle(c3, _("In-sentence form (“ word”)"), key="emb_map_leading", default=True)
        pairs, data = recipe.typed_groups(text), None
        if len(pairs) >= 3:
            with st.spinner(_("Projecting (the first UMAP in a fresh app compiles its code: about 20 s)…")):
                data = cached.word_map(lm.name, pairs, leading_map, method, dims, lm)
        show(recipe.meaning_space(lm, pairs, leading_map, method, dims, data))

with tabs[4]:
    if tabs[4].open:
        table = controls.radio(st, _("Table"), ["tokens", "positions"], horizontal=True, key="emb_vocab_table",
                               format_func=lambda k: recipe.table_label(lm, k))
        emap = cached.vocab_map(lm, table)
        if emap is not None:
            show(recipe.map_note(lm, emap))
            if table == "tokens":
                strings = cached.vocab_strings(lm.name, lm)
                example = recipe.typed_words(recipe.default_words(lm))[0]  # a word the loaded model learned
                query = controls.text_input(st, _("Find a token"), key="emb_vocab_search",
                                            placeholder=_("e.g. {word}").format(word=example))
                show(recipe.token_map(lm, t, emap, query, strings))
            else:
                show(recipe.position_map(lm, emap))

with tabs[5]:
    if tabs[5].open:
        st.button(_("Try “bank” in two sentences"), key="emb_bank", on_click=controls.set_state,
                  args=({"prompt": recipe.BANK},),
                  icon=":material/account_balance:")
        if t is not None:
            layer = controls.slider(st, _("Depth in the residual stream"), 0, lm.n_layer, key="emb_layer",
                                    default=lm.n_layer // 2,
                                    help=_("0 is the embedding itself (token + position); {n_layer} is the final "
                                           "residual before the last LayerNorm.").format(n_layer=lm.n_layer))
            skip_first = controls.toggle(st, _("Leave out the first token"), key="emb_skip_first",
                                         default=t.n_tokens > 3,
                                         help=_("GPT-2's residual at position 0 is far larger than the others and "
                                                "takes a principal component on its own."))
            show(recipe.in_context(lm, t, layer, skip_first))
