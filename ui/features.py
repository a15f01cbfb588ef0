"""The Features page's frame: picking and loading an SAE (cached for every session), the corpus and
its top contexts (kept on disk by core, in memory here), Neuronpedia on a click, and long work
started by a click with progress and Stop. What is shown is built by recipes.features."""
from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

from core.feature_cards import contexts_cached, top_contexts
from core.model import models_locked
from core.sae import SAELoadError, check_fits
from core.sae import load_sae as read_sae
from i18n import _
from recipes import LongJob, View
from recipes import features as recipe
from ui import controls
from ui.figures import show
from ui.state import remember

_ERRORS = "_feat_sae_errors"


@st.cache_resource(max_entries=3, show_spinner=False)
def _sae(source: str, sae_id: str | None, stamp):
    return read_sae(source, sae_id)


def _stamp(source: str):
    """A local SAE's files' sizes and times, so an SAE saved again is read again."""
    try:
        path = Path(source).expanduser()
        if len(source.encode()) < 4096 and path.is_dir():
            files = sorted(f for f in path.iterdir() if f.is_file())
            return tuple((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files)
    except OSError:
        pass
    return None


def load_sae(lm, source: str, sae_id: str | None = None):
    """The SAE at `source` (a local directory, or a sae-lens release with its `sae_id`), read once for every
    session (cached, read again when a local SAE's files change) and checked against `lm`; None with the
    reason and a Try again button on the page when it cannot be had or does not fit. A failure is remembered
    for the session, so a rerun does not try a download again until asked."""
    errors = st.session_state.setdefault(_ERRORS, {})
    key = (lm.name, source, sae_id)
    if key not in errors:
        if "sae_lens" in sys.modules:
            text = _("Loading the SAE…")
        else:
            text = _("Loading the SAE (the first one takes ~15 s: sae-lens is being imported)…")
        if sae_id is not None:
            text += " " + _("A public SAE is downloaded once into the Hugging Face cache.")
        try:
            with st.spinner(text):
                sae = _sae(source, sae_id, _stamp(source))
            check_fits(lm, sae)
            return sae
        except SAELoadError as e:
            errors[key] = str(e)
    st.error(errors[key])
    st.button(_("Try again"), key="feat_sae_retry", on_click=errors.pop, args=(key, None))
    return None


def choose_sae(lm):
    """The SAE picker (every choice in the link) and the loaded SAE, or None (the page says why)."""
    locked = models_locked()
    options = recipe.sources(lm, locked)
    if options in ([], ["local"]):
        show(recipe.no_sae(lm, locked))
    if not options:
        return None
    source = controls.radio(st, _("SAE"), options, key="feat_sae_source", horizontal=True,
                            format_func=lambda s: _(recipe.SOURCES[s]))
    c1, c2 = st.columns(2)
    if source == "bundled":
        hooks = recipe.bundled_saes()
        hook = controls.selectbox(c1, _("Where it reads"), hooks, key="feat_sae_hook",
                                  default=recipe.default_hook(hooks, ""), format_func=recipe.hook_label)
        return load_sae(lm, recipe.bundled_sae_path(hook), None)
    if source == "release":
        releases = recipe.releases(lm)
        release = controls.selectbox(c1, _("Release"), releases, key="feat_release", default=recipe.DEFAULT_RELEASE,
                                     format_func=str)
        ids = recipe.release_ids(release)
        sae_id = controls.selectbox(c2, _("Where it reads"), ids, key="feat_sae_id", default=recipe.default_hook(ids),
                                    format_func=recipe.hook_label)
        return load_sae(lm, release, sae_id)
    path = controls.text_input(c1, _("SAE directory"), key="feat_sae_path", max_chars=1000,
                               placeholder="/path/to/sae",
                               help=_("A directory in sae-lens's format (cfg.json, sae_weights.safetensors), as "
                                      "sae-lens's save_model writes it."))
    if not path.strip():
        st.info(_("Type the path of an SAE directory on this machine."))
        return None
    return load_sae(lm, path.strip(), None)


# ---- picking a feature -----------------------------------------------------------------------------
def open_card(feature: int) -> None:
    st.session_state.update(feat_feature=int(feature), feat_view="Feature card")  # i18n: skip (the tab's English key)


def on_heatmap_click() -> None:
    """A click on a heatmap cell picks its token, and its feature (whose card is then a click away)."""
    points = st.session_state["feat_heatmap"].selection.get("points", [])
    if points:
        feature = int(str(points[0]["y"]).lstrip("#"))
        st.session_state.update(feat_pos=int(round(points[0]["x"])), feat_feature=feature, feat_card_pick=feature)


def card_picker(features: list[int]) -> None:
    """A one-off picker (not in the link): open one of these features' card."""
    if st.session_state.get("feat_card_pick") not in features:  # picked among the rows of another prompt or k
        st.session_state.pop("feat_card_pick", None)
    pick = st.selectbox(_("Open a feature's card"), features, index=None, key="feat_card_pick",
                        placeholder=_("Choose one of the features above"), format_func=lambda f: f"#{f}")
    if pick is not None:
        st.button(_("Open feature #{feature}'s card").format(feature=pick), key="feat_open_card", on_click=open_card,
                  args=(pick,))


# ---- the corpus and its top contexts ---------------------------------------------------------------------
def corpus_choice():
    """(choice, pasted text): the corpus radio is in the link; a pasted text is content, not a control."""
    choice = controls.radio(st, _("Contexts from"), list(recipe.CORPORA), key="feat_corpus", horizontal=True,
                            format_func=lambda c: _(recipe.CORPORA[c]))
    pasted = ""
    if choice == "pasted":
        remember("feat_corpus_text")
        pasted = st.text_area(_("Your text"), key="feat_corpus_text", height=140,
                              placeholder=_("Paste a text: a story, an article, a book…"),
                              help=_("Not put in the page's link. Its first 100,000 tokens are read. Press "
                                     "Ctrl+Enter (or click outside) to apply."))
    return choice, pasted


@st.cache_data(max_entries=8, show_spinner=False)
def _windows(name: str, choice: str, pasted: str, _lm):
    return recipe.windows_of(_lm, choice, pasted)


@st.cache_resource(max_entries=3, show_spinner=False)
def _from_disk(name: str, sae_key: tuple, corpus: tuple, _lm, _sae, _windows):
    return top_contexts(_lm, _sae, _windows)


def contexts(lm, sae, feature: int) -> None:
    """The card's corpus part: the top contexts computed on a click (progress, Stop), then shown."""
    choice, pasted = corpus_choice()
    with st.spinner(_("Reading the text…")):
        windows = _windows(lm.name, choice, pasted, lm)
    about = recipe.corpus(lm, choice, windows)
    show(about)
    if not len(windows):
        return
    name, corpus = about.values["name"], (choice, pasted if choice == "pasted" else "", windows.shape)
    found = None
    if contexts_cached(lm, sae, windows):
        found = _from_disk(lm.name, sae.key, corpus, lm, sae, windows)
    else:
        found = run_clicked(recipe.contexts_job(lm, sae, windows, name), key="feat_contexts",
                            button=_("Find every feature's strongest contexts in {corpus}").format(corpus=name),
                            step=_(recipe.CONTEXT_STEP))
    if found is not None:
        show(recipe.contexts(lm, sae, feature, found, name))


def neuronpedia(sae, feature: int) -> None:
    """Neuronpedia's explanation: from the disk if fetched before, else only on a click."""
    if not sae.neuronpedia:
        return
    kept = recipe.neuronpedia_cached(sae, feature)
    if kept is not None:
        show(kept)
    elif st.button(_("Fetch Neuronpedia's explanation"), key="feat_neuronpedia",
                   help=_("Asks neuronpedia.org for this feature; nothing is sent until you click.")):
        with st.spinner(_("Asking Neuronpedia…")):
            show(recipe.fetch_neuronpedia(sae, feature))


# ---- long work on a click ---------------------------------------------------------------------------------
def run_clicked(job: LongJob, *, key: str, button: str, step: str, keep: bool = False):
    """`job.run(on_step)` once `button` was clicked for `job.work_id`, with a progress bar (`step`, with
    {label}, {done}, {total}) and Stop; None until then, or once stopped (with Continue). `keep`: the
    result is kept in the session for the work it did (core keeps nothing of it)."""
    ss = st.session_state
    asked, stopped, result = f"{key}_asked", f"{key}_stopped", f"{key}_result"
    if keep and ss.get(result, (None,))[0] == job.work_id:
        return ss[result][1]
    if ss.get(asked) != job.work_id:
        st.button(button, key=f"{key}_compute", icon=":material/play_arrow:", on_click=ss.update,
                  args=({asked: job.work_id, stopped: False},))
        return None
    if ss.get(stopped):
        st.info(_("{label}: stopped. Continue goes on from there.").format(label=job.label))
        st.button(_("Continue"), key=f"{key}_continue", icon=":material/play_arrow:", on_click=ss.__setitem__,
                  args=(stopped, False))
        return None
    bar, stop = st.empty(), st.empty()
    stop.button(_("Stop"), key=f"{key}_stop", icon=":material/stop:", on_click=ss.__setitem__, args=(stopped, True))

    def on_step(done: int) -> None:
        bar.progress(min(done / max(job.n_layer, 1), 1.0), text=step.format(label=job.label, done=done,
                                                                            total=job.n_layer))
    try:
        out = job.run(on_step)
    finally:
        bar.empty()
        stop.empty()
    if keep:
        ss[result] = (job.work_id, out)
    return out


def removals(lm, t, sae, view: View, target: int, minus) -> None:
    """The exact removal of the top features, on a click, beside their estimates."""
    top = view.values["top"]
    if not top:
        return
    job = recipe.removal_job(lm, t, sae, target, minus, view.values["pos"], top)
    change = run_clicked(job, key="feat_removal", button=_("Remove each of the top {k} features and rerun the "
                                                           "network").format(k=len(top)),
                         step=_(recipe.REMOVAL_STEP), keep=True)
    if change is not None:
        show(recipe.removals(top, view.values["estimate"], change, view.values["unit"]))
