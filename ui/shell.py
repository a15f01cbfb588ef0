"""The frame every page shares: page config, the sidebar (navigation, model, prompt), caches.

Pages are Streamlit's auto-discovered `pages/` scripts; each starts with

    lm, t = setup_trace_page(N_("Attention"), N_("One or two plain sentences on how to read the figure."))

(or `setup_page` alone, for a page such as Weights that needs no prompt). The title and intro
are English, marked with N_: the page shows them translated, and the English title names the
page in its link's state and its export files.

The prompt and the model choice live under plain session-state keys ("prompt",
"model_name"), not under widget keys, because Streamlit drops a widget's state when
the page that drew it is left; the sidebar widgets are re-seeded from them each run.
"""
from __future__ import annotations

import gc
import os
import threading
from collections import OrderedDict
from pathlib import Path

import streamlit as st
from streamlit.runtime.scriptrunner import add_script_run_ctx, get_script_run_ctx

from core import GPT2_FAMILY, ByteBoundedCache, ModelLoadError, ModelStore, PromptError, Trace, default_model_name
from core.cache import release_freed_memory, shared_cache
from core.model import (
    BUNDLED_DESCRIPTION,
    DEFAULT_MODEL,
    ENV_ALLOWED,
    ENV_MODEL,
    LoadedModel,
    allowed_models,
    bundled_model_dir,
    canonical_name,
    display_name,
    is_allowed_model,
    models_locked,
)
from core.trace import cache_budget_for, estimate_trace_bytes, prompt_ids, trace_ids
from i18n import LANGUAGES, N_, _, language_from_locale, ngettext, set_language
from recipes import md as md_escape  # one Markdown escape for the whole app
from ui.controls import in_page_language
from ui.figures import export_all_button, export_settings, start_page
from ui.state import drop_stale_widget_metadata, persisted
from ui.url import (
    MAX_PROMPT_CHARS,
    begin_page_run,
    clean_text,
    prompt_cut_notice,
    prompt_too_long_for_links,
    seed_shared_state,
    set_prompt,
    stopped_early,
    write_shared_state,
)
from ui.waiting import join_lane

ROOT = Path(__file__).resolve().parent.parent
LOCAL_DIR_OPTION = N_("Local directory…")  # the option's value (session state); shown translated

HELLO_BYE = " ".join(["hello"] * 16 + ["bye"] * 6)
# Button label (N_: shown translated) -> the example prompt, the same in every language.
EXAMPLES = {
    N_("AI's ability to…"): "The best thing about AI is its ability to",  # i18n: skip
    "hello … bye": HELLO_BYE,
    "中文": "人工智能最好的地方在于它能够",
    N_("Story"): "Once upon a time, in a small village by the sea, there lived an old fisherman who",  # i18n: skip
}
DEFAULT_PROMPT = EXAMPLES["AI's ability to…"]

# (file, label, icon). A page is listed only once its file exists. Labels are shown translated.
PAGES = [
    ("app.py", N_("Next token"), ":material/format_list_numbered:"),
    ("pages/0_Tour.py", N_("Tour: the essay's figures"), ":material/tour:"),
    ("pages/1_Attention.py", N_("Attention"), ":material/grid_on:"),
    ("pages/2_Embeddings.py", N_("Embeddings"), ":material/scatter_plot:"),
    ("pages/3_Weights.py", N_("Weights"), ":material/view_module:"),
    ("pages/4_Generation.py", N_("Generation"), ":material/edit_note:"),
    ("pages/5_Prediction.py", N_("Inside the prediction"), ":material/psychology:"),
    ("pages/6_Experiments.py", N_("Experiments"), ":material/science:"),
    ("pages/7_N-grams.py", N_("Before GPT-2: n-grams"), ":material/abc:"),
    ("pages/8_Features.py", N_("Features"), ":material/hub:"),
    ("pages/9_Steering.py", N_("Steering"), ":material/tune:"),
    ("pages/10_Deck.py", N_("Slide deck"), ":material/slideshow:"),
]


# ---- process-wide resources, shared by every browser session ------------------------------
@st.cache_resource
def model_store() -> ModelStore:
    return ModelStore(max_models=2, on_evict=_forget_model)


def _forget_model(name: str) -> None:
    """An unloaded model's traces and per-layer arrays go with it (they hold the model)."""
    trace_cache().drop(lambda key: _model_of(key) == name)
    _tokenize.drop_model(name)
    gc.collect()  # page runs that used it are reference cycles: free its gigabytes now, not at some later collection
    release_freed_memory()


def _model_of(key: tuple) -> str:
    """The model name in a cache key: (name, device, ids) for a trace, ((name, device, ids), …) for its layers."""
    return key[0] if isinstance(key[0], str) else key[0][0]


def trace_cache() -> ByteBoundedCache:
    """Traces and their per-layer arrays, one byte budget for the process (core's shared cache)."""
    return shared_cache()


class _TokenCache:
    """Token ids per (model name, prompt, kept end), LRU-bounded. Keyed by the model's *name*, never
    by the LoadedModel: a cache holding the model would keep it alive after ModelStore let it go."""

    def __init__(self, maxsize: int = 64):
        self.maxsize, self._items, self._lock = maxsize, OrderedDict(), threading.Lock()

    def __call__(self, lm: LoadedModel, prompt: str, keep: str) -> tuple[tuple[int, ...], int]:
        key = (lm.name, prompt, keep)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        ids, n_dropped = prompt_ids(lm, prompt, keep)
        value = (tuple(ids), n_dropped)
        with self._lock:
            self._items[key] = value
            while len(self._items) > self.maxsize:
                self._items.popitem(last=False)
        return value

    def drop_model(self, name: str) -> None:
        with self._lock:
            for key in [k for k in self._items if k[0] == name]:
                del self._items[key]


_tokenize = _TokenCache()


def get_trace(lm: LoadedModel, prompt: str, keep: str = "first") -> Trace:
    """The cached trace of `prompt` (one forward per model, prompt and kept end)."""
    ids, n_dropped = _tokenize(lm, prompt, keep)
    cache = trace_cache()
    cache.ensure_budget(cache_budget_for(lm))
    return cache.get_or_compute(
        (lm.name, str(lm.device), ids),
        lambda: trace_ids(lm, list(ids), prompt=prompt, n_dropped=n_dropped, kept=keep, cache=cache),
        expected_bytes=estimate_trace_bytes(lm, len(ids)),
        label=ngettext("Running {model} on {n:,} token…", "Running {model} on {n:,} tokens…", len(ids)).format(
            model=md_escape(lm.label), n=len(ids)),
    )


# ---- session state ------------------------------------------------------------------------
def _init_state() -> None:
    ss = st.session_state
    seed_shared_state()  # a shared link's prompt and model, on the session's first run
    ss.setdefault("prompt", DEFAULT_PROMPT)
    ss.setdefault("model_name", default_model_name())
    ss.setdefault("keep", "first")
    ss["prompt"] = clean_text(ss["prompt"])  # a lone surrogate (set from code) cannot reach the page
    ss["model_name"] = canonical_name(ss["model_name"]) or default_model_name()
    if ss.get("lang") not in LANGUAGES:  # no ?lang= in the link: the browser's language
        ss["lang"] = language_from_locale(getattr(st.context, "locale", None))
    if models_locked() and not is_allowed_model(ss["model_name"]):
        ss["model_name"] = default_model_name()


# ---- sidebar ----------------------------------------------------------------------------------
def _language_switch() -> None:
    """English / 简体中文, in both languages (a person who cannot read one finds the other)."""
    st.radio("Language · 语言", list(LANGUAGES), format_func=LANGUAGES.get, horizontal=True,  # i18n: skip
             **persisted("lang"))


def _navigation() -> None:
    for file, label, icon in PAGES:
        if (ROOT / file).exists():
            st.page_link(file, label=_(label), icon=icon)


def _model_options() -> list[str]:
    """The GPT-2 family and the bundled model, what the operator names (GPT2VIZ_MODEL,
    GPT2VIZ_ALLOWED_MODELS) first, the current choice; and *Local directory…* unless locked."""
    options = list(GPT2_FAMILY) + ([bundled_model_dir()] if bundled_model_dir() else [])
    extra = [name for name in allowed_models() if name not in options]  # allowed_models: one spelling each
    current = st.session_state["model_name"]
    if current not in options + extra:
        extra.insert(0, current)
    return extra + options + ([] if models_locked() else [LOCAL_DIR_OPTION])


def _model_label(name: str) -> str:
    """A model as the sidebar names it: core.model.display_name (never a server path), the bundled one
    marked as such."""
    if name == LOCAL_DIR_OPTION:
        return _(LOCAL_DIR_OPTION)
    return _("mini-gpt2-kjv (bundled, offline)") if name == bundled_model_dir() else display_name(name)


def _choose_model(name: str) -> None:
    st.session_state["model_name"] = canonical_name(clean_text(name))
    st.session_state.pop("_link_model_refused", None)
    st.session_state.pop("_model_fallback", None)


def _on_model_choice() -> None:
    choice = st.session_state["sidebar_model"]
    if choice != LOCAL_DIR_OPTION:
        _choose_model(choice)


def _on_model_path() -> None:
    path = st.session_state["sidebar_model_path"].strip()
    if path and not models_locked():
        _choose_model(path)


def _model_picker() -> None:
    ss = st.session_state
    options = _model_options()
    if ss.get("sidebar_model") != LOCAL_DIR_OPTION or LOCAL_DIR_OPTION not in options:
        ss["sidebar_model"] = ss["model_name"]
    locked = models_locked()
    if locked:
        help_ = _("A GPT-2 from the Hugging Face Hub (downloaded once, then cached), the mini GPT-2 that ships "
                  "with the app (no network needed). This server offers these models only.")
    else:
        help_ = _("A GPT-2 from the Hugging Face Hub (downloaded once, then cached), the mini GPT-2 that ships "
                  "with the app (no network needed), or a local checkpoint directory. GPT2VIZ_MODEL sets the default.")
    st.selectbox(_("Model"), options, key="sidebar_model", on_change=_on_model_choice,
                 format_func=in_page_language(_model_label), help=help_)
    if ss["sidebar_model"] == LOCAL_DIR_OPTION:
        st.text_input(_("Checkpoint directory or Hub id"), key="sidebar_model_path", on_change=_on_model_path,
                      placeholder="/path/to/gpt2-checkpoint")


def _on_prompt_edit() -> None:
    set_prompt(st.session_state["sidebar_prompt"])


def _prompt_box() -> None:
    ss = st.session_state
    notice = prompt_cut_notice()  # before the box: it may re-cut the prompt at the other end
    ss["sidebar_prompt"] = ss["prompt"]
    st.text_area(_("Prompt"), height=140, key="sidebar_prompt", on_change=_on_prompt_edit,
                 help=_("Shared by every page. Press Ctrl+Enter (or click outside) to apply. At most "
                        "{n:,} characters: of a longer text, the first ones are kept (the last ones "
                        "once the page's *Keep* choice for long prompts says the last tokens).").format(
                n=MAX_PROMPT_CHARS))
    if notice:
        st.warning(notice)
    st.caption(_("Examples"))
    cols = st.columns(2)
    for i, (label, text) in enumerate(EXAMPLES.items()):
        cols[i % 2].button(_(label), key=f"sidebar_example_{i}", on_click=set_prompt, args=(text,), width="stretch")


def _refused_link_model() -> None:
    """A link asked for a model the operator does not allow: say so, load nothing, and (on a
    server that is not locked) offer to load it, as typing it in the sidebar would."""
    name = st.session_state.get("_link_model_refused")
    if not name:
        return
    shown = md_escape(name if len(name) <= 80 else name[:77] + "…")
    current = md_escape(_model_label(st.session_state["model_name"]))
    st.warning(_("This link asks for the model **{shown}**, which this server does not load from links, so "
                 "this shows **{current}**. Links may load the GPT-2 family, the bundled mini GPT-2 and the models "
                 "the server's operator names in {env_model} or {env_allowed}.").format(
        shown=shown, current=current, env_model=ENV_MODEL, env_allowed=ENV_ALLOWED))
    if models_locked():
        return
    row = st.container(horizontal=True)
    row.button(_("Load it anyway"), key="model_link_load", on_click=_choose_model, args=(name,),
               help=_("As if you had typed it in the sidebar under Local directory…: a Hub id is downloaded, a "
                      "directory is read from this machine."))
    row.button(_("Dismiss"), key="model_link_dismiss", on_click=st.session_state.pop,
               args=("_link_model_refused", None))


def _load_model_with_progress(name: str) -> LoadedModel | None:
    store = model_store()
    bar = st.empty()
    ctx = get_script_run_ctx()

    def progress(fraction: float, text: str) -> None:
        # The hub downloads files in worker threads; give them this run's context so the
        # bar updates reach the page instead of being dropped.
        if get_script_run_ctx() is None and ctx is not None:
            add_script_run_ctx(threading.current_thread(), ctx)
        bar.progress(fraction, text=text)

    try:
        lm = store.get(name, progress=progress)
    except ModelLoadError as e:
        bar.empty()
        fallback = _fallback_model(name)
        if fallback is not None:  # the sidebar's box and the link name what is shown, with this note
            st.session_state["model_name"] = fallback.name
            st.session_state["_model_fallback"] = (name, e.detached())
            _fallback_note(fallback)
            return fallback
        st.error(_("Could not load the model **{name}**: {error}").format(name=md_escape(display_name(name)),
                                                                          error=md_escape(str(e))))
        st.info(_("How to fix it: {hint}").format(hint=e.hint))
        if st.button(_("Try again"), key="model_retry"):
            store.forget(name)
            st.rerun()
        return None
    bar.empty()
    if st.session_state.get("_model_fallback"):
        _fallback_note(lm)
    return lm


def _fallback_note(lm: LoadedModel) -> None:
    """While the bundled model stands in for the app's default, say so (the box names the bundled one)."""
    wanted, error = st.session_state.get("_model_fallback") or (None, None)
    if wanted is None or lm.name != bundled_model_dir():
        return
    st.info(_("**{name}** could not be loaded ({error}), so this shows {bundled}: its numbers are its own, "
              "not GPT-2's. To get the real one: {hint}").format(
        name=md_escape(display_name(wanted)), error=md_escape(str(error)),
        bundled=_(BUNDLED_DESCRIPTION), hint=error.hint))


def _fallback_model(name: str) -> LoadedModel | None:
    """The bundled model, when the app's own default (gpt2, no GPT2VIZ_MODEL) cannot be had: the
    app then opens on learned structure rather than an error. A model someone chose (typed, linked,
    or set by the operator) that fails is reported, never silently replaced."""
    bundled = bundled_model_dir()
    if bundled is None or name != DEFAULT_MODEL or os.environ.get(ENV_MODEL, "").strip():
        return None
    try:
        return model_store().get(bundled)
    except ModelLoadError:
        return None


def setup_page(title: str, intro: str) -> LoadedModel | None:
    """Page config, the shared sidebar, the title and intro. Returns the model, or None if
    it could not be loaded (the reason and the fix are already on the page).

    `title` and `intro` are English, marked with N_ by the page, and shown translated; the
    English title names the page for its link's state (begin_page_run) and its exports."""
    drop_stale_widget_metadata()  # else widgets of pages left behind keep their run's model alive
    _init_state()
    set_language(st.session_state["lang"])  # before any text of this run is made
    join_lane()  # this run's model work takes turns with other sessions', and says so while it waits
    st.set_page_config(page_title=_("{title} · Inside GPT-2").format(title=_(title)), page_icon=":material/neurology:",
                       layout="wide")
    start_page(title)
    begin_page_run(title)
    with st.sidebar:
        _language_switch()
        st.markdown("### " + _("Inside GPT-2"))
        _navigation()
        st.divider()
        picker = st.container()  # drawn after the load: it names the model the page shows
        _prompt_box()
    st.title(_(title))
    st.markdown(_(intro))
    refused = st.container()  # filled after the load: it names the model shown (the bundled stand-in, if so)
    lm = _load_model_with_progress(st.session_state["model_name"])
    with refused:
        _refused_link_model()
    write_shared_state()
    with st.sidebar:
        with picker:
            _model_picker()
        if lm is not None:
            st.caption(_("{n_layer} layers · {n_head} heads · d_model {d_model} · context {n_ctx:,} tokens · "
                         "{params:,.1f} M parameters ({mb:,.0f} MB) on **{device}**").format(
                n_layer=lm.n_layer, n_head=lm.n_head, d_model=lm.d_model, n_ctx=lm.n_ctx, params=lm.n_params / 1e6,
                mb=lm.n_bytes / 2**20, device=lm.device.type.upper()))
            st.session_state["_model_label"] = lm.label
        st.divider()
        export_settings()
        export_all_button()
        if prompt_too_long_for_links():
            st.caption(_("The prompt is too long to put in the page's address; a copied link will "
                         "open the view with the default prompt."))
        else:
            st.caption(_("The address bar always holds a link to this exact view (prompt, model, controls)."))
    return lm


def current_trace(lm: LoadedModel) -> Trace | None:
    """The trace of the sidebar prompt, or None with a friendly message (empty prompt)."""
    ss = st.session_state
    prompt = ss["prompt"]
    try:
        ids, n_dropped = _tokenize(lm, prompt, ss["keep"])
    except PromptError as e:
        st.info(_("{error} Or pick one of the examples in the sidebar.").format(error=str(e)))
        return None
    if n_dropped:
        total = len(ids) + n_dropped
        if ss["keep"] == "first":
            dropped = ngettext("The prompt is {total:,} tokens long; {model} reads at most {n_ctx:,}. "
                               "{n_dropped:,} token was dropped from the end.",
                               "The prompt is {total:,} tokens long; {model} reads at most {n_ctx:,}. "
                               "{n_dropped:,} tokens were dropped from the end.", n_dropped)
        else:
            dropped = ngettext("The prompt is {total:,} tokens long; {model} reads at most {n_ctx:,}. "
                               "{n_dropped:,} token was dropped from the start.",
                               "The prompt is {total:,} tokens long; {model} reads at most {n_ctx:,}. "
                               "{n_dropped:,} tokens were dropped from the start.", n_dropped)
        st.warning(dropped.format(total=total, model=md_escape(lm.label), n_ctx=lm.n_ctx, n_dropped=n_dropped))
        kept = {"first": ngettext("the first {n:,} token", "the first {n:,} tokens", lm.n_ctx),
                "last": ngettext("the last {n:,} token", "the last {n:,} tokens", lm.n_ctx)}
        st.radio(_("Keep"), ["first", "last"], horizontal=True, format_func=in_page_language(
            lambda k, kept=kept, n=lm.n_ctx: kept[k].format(n=n)), **persisted("keep"))
    return get_trace(lm, prompt, ss["keep"])  # while it runs (or waits its turn), the page says so: ui.waiting


def setup_trace_page(title: str, intro: str) -> tuple[LoadedModel, Trace]:
    """setup_page, then the prompt's trace, for pages that need both. When either is missing
    the page has already said why (and how to fix it), and the run stops here."""
    lm = setup_page(title, intro)
    if lm is None:
        stopped_early()
        st.stop()
    t = current_trace(lm)
    if t is None:
        stopped_early()
        st.stop()
    return lm, t
