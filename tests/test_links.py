"""Links and models, as a person meets them in the app (AppTest, tiny checkpoints):

what a `?model=` link may load (and what a public server locks down), switching models
without keeping old ones in memory, values a link gets wrong written back corrected,
controls that survive a page stopping early, and prompts longer than the box holds."""
from __future__ import annotations

import gc
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import core.model
import ui.shell
from core.model import LoadedModel
from core.synthetic import build_checkpoint
from tests import apptest
from ui.shell import LOCAL_DIR_OPTION, model_store
from ui.url import MAX_PROMPT_CHARS

TIMEOUT = 120
ATTENTION = "pages/1_Attention.py"
EXPERIMENTS = apptest.EXPERIMENTS
EMBEDDINGS = "pages/2_Embeddings.py"


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> list[str]:
    """Three more tiny GPT-2s, told apart by their layer count (2, 3, 4)."""
    root = tmp_path_factory.mktemp("more-checkpoints")
    return [str(build_checkpoint(root / f"tiny-{i}", seed=i, n_layer=2 + i)) for i in range(3)]


def app(page: str = "app.py", **query) -> AppTest:
    """The app opened from a link with `query`, as a browser opening /<Page>?… would see it."""
    return apptest.open_page(page, query=query)


def query(at: AppTest, key: str) -> str | None:
    value = at.query_params.get(key)
    return value[0] if isinstance(value, list) else value


def texts(elements) -> str:
    return " ".join(e.value for e in elements)


def layers_shown(at: AppTest) -> str:
    return texts(at.sidebar.caption)


# ---- what a link may load -------------------------------------------------------------------------
@pytest.mark.parametrize("asked", ["/nonexistent", "/etc", "EleutherAI/gpt-j-6b", "../../etc/passwd"])
def test_a_link_cannot_make_the_server_load_another_model(tiny_env, tiny_model_dir, asked, monkeypatch):
    asked_for, real_get = [], ui.shell.ModelStore.get
    monkeypatch.setattr(ui.shell.ModelStore, "get",
                        lambda self, name, progress=None: asked_for.append(name) or real_get(self, name, progress))
    at = app(model=asked)
    assert asked_for == [str(tiny_model_dir)]  # the server's own model, and nothing else
    warning = texts(at.warning)
    assert "does not load from links" in warning and "GPT2VIZ_ALLOWED_MODELS" in warning
    page = texts(at.markdown) + texts(at.error) + texts(at.info) + warning
    assert "No directory" not in page  # nothing tells whether the path exists
    assert query(at, "model") == Path(tiny_model_dir).name  # the address bar names what is shown, not its path
    assert at.get("plotly_chart")  # the page works, on the default model


def test_a_refused_link_model_can_still_be_loaded_by_hand_on_a_local_install(tiny_env, checkpoints):
    at = app(model=checkpoints[2])
    assert "2 layers" in layers_shown(at)  # the default (tiny) model, not the link's
    at.button(key="model_link_load").click().run()
    assert not at.exception and "4 layers" in layers_shown(at)
    assert not at.warning and query(at, "model") == checkpoints[2]


def test_links_load_what_the_operator_allows(tiny_env, checkpoints, monkeypatch):
    monkeypatch.setenv("GPT2VIZ_ALLOWED_MODELS", f"{checkpoints[0]}, {checkpoints[1]}/")
    at = app(model=checkpoints[1])
    assert not at.warning and "3 layers" in layers_shown(at)
    assert at.session_state["model_name"] == checkpoints[1]
    options = at.sidebar.selectbox(key="sidebar_model").options
    assert {"tiny-0", "tiny-1"} <= set(options) and not [o for o in options if "/" in o]  # named, never a path


def test_a_link_names_the_bundled_model_the_same_on_every_server(tiny_env, checkpoints, monkeypatch):
    monkeypatch.setattr(core.model, "BUNDLED_DIR", Path(checkpoints[1]))  # stands in for bundled/mini-gpt2-kjv
    at = app(model="mini-gpt2-kjv")
    assert not at.warning and "3 layers" in layers_shown(at)
    assert query(at, "model") == "mini-gpt2-kjv"  # not this machine's path to it


def test_locked_server_offers_only_allowed_models(tiny_env, tiny_model_dir, checkpoints, monkeypatch):
    monkeypatch.setenv("GPT2VIZ_LOCKED", "1")
    monkeypatch.setenv("GPT2VIZ_ALLOWED_MODELS", checkpoints[0])
    at = app(model=checkpoints[2])
    options = at.sidebar.selectbox(key="sidebar_model").options
    assert LOCAL_DIR_OPTION not in options and "tiny-2" not in options
    assert Path(tiny_model_dir).name in options and "tiny-0" in options and "gpt2" in options
    assert "does not load from links" in texts(at.warning)
    assert not [b for b in at.button if b.key == "model_link_load"]  # nothing to click past the lock
    assert "2 layers" in layers_shown(at)
    at.sidebar.selectbox(key="sidebar_model").set_value(checkpoints[0]).run()
    assert not at.exception and "2 layers" in layers_shown(at) and query(at, "model") == "tiny-0"


def test_an_unlocked_sidebar_takes_any_directory(tiny_env, checkpoints):
    at = app()
    assert LOCAL_DIR_OPTION in at.sidebar.selectbox(key="sidebar_model").options
    at.sidebar.selectbox(key="sidebar_model").set_value(LOCAL_DIR_OPTION).run()
    at.sidebar.text_input(key="sidebar_model_path").input(checkpoints[1]).run()
    assert not at.exception and "3 layers" in layers_shown(at) and query(at, "model") == checkpoints[1]


# ---- switching models keeps at most max_models in memory -----------------------------------------
def live_models(names) -> list[str]:
    gc.collect()
    return [o.name for o in gc.get_objects() if type(o) is LoadedModel and o.name in names]


def test_switching_models_many_times_keeps_at_most_max_models_alive(tiny_env, checkpoints, tmp_path):
    at = app()
    bad = [str(tmp_path / "missing-1"), str(tmp_path / "missing-2")]
    for _ in range(3):
        for name in [checkpoints[0], *bad, checkpoints[1], checkpoints[2]]:
            at.sidebar.selectbox(key="sidebar_model").set_value(LOCAL_DIR_OPTION).run()
            at.sidebar.text_input(key="sidebar_model_path").input(name).run()
            assert not at.exception
            if name in bad:
                assert "No directory" in texts(at.error)
            for page in (ATTENTION, "app.py"):  # traces and per-page caches for each model
                at.switch_page(page).run()
                assert not at.exception
    alive = live_models(set(checkpoints))
    assert len(alive) <= model_store().max_models, alive
    assert set(alive) <= set(model_store().loaded_names())


# ---- values a link gets wrong are corrected, in the address bar too -------------------------------
def test_out_of_range_attention_values_are_corrected_in_the_link(tiny_env, tiny_lm):
    at = app(ATTENTION, attn_layer="999", attn_head="-5", attn_focus_pos="12345", attn_colour="rainbow",
             attn_view="Token focus")
    assert at.selectbox(key="attn_layer").value == tiny_lm.n_layer - 1
    assert at.selectbox(key="attn_head").value == 0
    assert query(at, "attn_layer") == str(tiny_lm.n_layer - 1) and query(at, "attn_head") == "0"
    n_tokens = len(tiny_lm.encode(at.session_state["prompt"]))
    assert query(at, "attn_focus_pos") == str(n_tokens - 1) and query(at, "attn_colour") == "stretch"


def test_a_link_keeps_only_the_controls_of_the_view_on_screen(tiny_env):
    """Controls the page does not draw (another tab's, a misspelt one) leave the address bar on the
    next run, so a copied link holds the view on screen as the page corrected it."""
    at = app(ATTENTION, attn_focus_pos="12345", attn_colour="log", attn_layr="3")
    assert query(at, "attn_colour") == "log"
    at.run()
    assert query(at, "attn_focus_pos") is None and query(at, "attn_layr") is None
    assert query(at, "attn_colour") == "log" and query(at, "attn_view") == "Head atlas"


def test_out_of_range_embedding_layer_is_corrected_in_the_link(tiny_env, tiny_lm):
    at = app(EMBEDDINGS, emb_layer="999", emb_tab="In context")
    assert at.session_state["emb_layer"] == tiny_lm.n_layer and query(at, "emb_layer") == str(tiny_lm.n_layer)
    at = app(EMBEDDINGS, emb_layer="-3", emb_tab="In context")
    assert query(at, "emb_layer") == "0"


def test_a_smaller_model_moves_the_layer_to_its_last(tiny_env, checkpoints, monkeypatch):
    monkeypatch.setenv("GPT2VIZ_ALLOWED_MODELS", checkpoints[2])
    at = app(ATTENTION, model=checkpoints[2], attn_layer="3")
    assert at.selectbox(key="attn_layer").value == 3
    at.sidebar.selectbox(key="sidebar_model").set_value(str(tiny_env)).run()  # 2 layers
    assert not at.exception and at.selectbox(key="attn_layer").value == 1 and query(at, "attn_layer") == "1"


# ---- a page that stops early keeps its controls ---------------------------------------------------
def test_clearing_the_prompt_or_leaving_the_page_keeps_the_attention_controls(tiny_env):
    at = app(ATTENTION)
    at.selectbox(key="attn_layer").set_value(1).run()
    at.selectbox(key="attn_head").set_value(2).run()
    at.session_state["attn_metric"] = "first"
    at.run()
    prompt = at.sidebar.text_area(key="sidebar_prompt")
    prompt.input("").run()
    assert not at.exception and "empty" in texts(at.info)
    at.sidebar.text_area(key="sidebar_prompt").input("one two three four").run()
    at.sidebar.text_area(key="sidebar_prompt").input("five six seven eight").run()
    assert not at.exception
    assert at.selectbox(key="attn_layer").value == 1 and at.selectbox(key="attn_head").value == 2
    assert query(at, "attn_layer") == "1" and query(at, "attn_head") == "2"
    assert at.radio(key="attn_metric").value == "first"
    at.switch_page("app.py").run()  # a whole run without these widgets: Streamlit drops their state
    at.switch_page(ATTENTION).run()
    assert at.selectbox(key="attn_layer").value == 1 and at.selectbox(key="attn_head").value == 2
    assert at.radio(key="attn_metric").value == "first" and query(at, "attn_layer") == "1"


def test_clearing_the_prompt_keeps_the_embedding_depth(tiny_env):
    at = app(EMBEDDINGS)
    at.session_state["emb_tab"] = "In context"
    at.run()
    at.slider(key="emb_layer").set_value(2).run()
    at.sidebar.text_area(key="sidebar_prompt").input(" ").run()
    at.sidebar.text_area(key="sidebar_prompt").input("the bank of the river and the bank").run()
    assert not at.exception and at.slider(key="emb_layer").value == 2


# ---- prompts longer than the box --------------------------------------------------------------------
def long_text(n: int) -> str:
    words = (f"w{i} " for i in range(n))
    return "".join(words)[:n]


def test_a_pasted_text_over_the_limit_keeps_its_start_and_says_so(tiny_env):
    text = long_text(60_000)
    at = app()
    box = at.sidebar.text_area(key="sidebar_prompt")
    assert box.proto.max_chars == 0  # the browser takes the whole paste; the app cuts it, and says so
    box.input(text).run()
    assert not at.exception
    assert at.session_state["prompt"] == text[:MAX_PROMPT_CHARS]
    assert at.sidebar.text_area(key="sidebar_prompt").value == text[:MAX_PROMPT_CHARS]
    notice = texts(at.sidebar.warning)
    assert "60,000 characters" in notice and f"the first {MAX_PROMPT_CHARS:,} were kept" in notice
    at.radio(key="sidebar_keep").set_value("last").run()  # the page's "keep the last tokens" choice
    assert at.session_state["prompt"] == text[-MAX_PROMPT_CHARS:]
    assert f"the last {MAX_PROMPT_CHARS:,} were kept" in texts(at.sidebar.warning)
    at.sidebar.text_area(key="sidebar_prompt").input("short again").run()  # typing works, the notice goes
    assert at.session_state["prompt"] == "short again" and not at.sidebar.warning


def test_a_link_with_an_over_long_prompt_is_cut_and_the_box_still_types(tiny_env):
    text = long_text(70_000)
    at = app(prompt=text)
    assert at.session_state["prompt"] == text[:MAX_PROMPT_CHARS]
    assert "70,000 characters" in texts(at.sidebar.warning)
    at.sidebar.text_area(key="sidebar_prompt").input(text[:MAX_PROMPT_CHARS - 5]).run()
    assert at.session_state["prompt"] == text[:MAX_PROMPT_CHARS - 5] and not at.sidebar.warning


def test_a_deeply_nested_list_in_a_link_falls_back_without_a_traceback(tiny_env):
    """A link value of 10,000 '[' (JSON nested too deep for Python's parser) is malformed like any
    other: the control keeps its default, nothing is raised, and no server file appears."""
    at = app(EXPERIMENTS, exp_heads="[" * 10_000, exp_mlps="[" * 10_000 + "]" * 10_000, exp_view="Knock out parts")
    assert not at.exception
    assert at.multiselect(key="exp_heads").value == [] and at.multiselect(key="exp_mlps").value == []
    shown = " ".join(str(e.value) for e in [*at.markdown, *at.caption, *at.warning, *at.error, *at.info])
    assert ".py" not in shown and "Traceback" not in shown


# ---- one position rule: a new prompt moves every position to where it opens (issue 25, items 2, 11) -------
PREDICTION = apptest.PREDICTION


def n_tokens_of(at: AppTest, lm) -> int:
    return len(lm.encode(at.session_state["prompt"]))


def test_a_new_prompt_moves_the_predictions_position_to_its_last_token(tiny_env, tiny_lm):
    at = app(PREDICTION)
    at.selectbox(key="pred_pos").set_value(2).run()
    assert query(at, "pred_pos") == "2"
    at.sidebar.text_area(key="sidebar_prompt").input("one two three four five six seven eight nine ten").run()
    last = n_tokens_of(at, tiny_lm) - 1
    assert not at.exception and at.selectbox(key="pred_pos").value == last and query(at, "pred_pos") == str(last)
    at.selectbox(key="pred_pos").set_value(3).run()  # a position picked on this prompt stays on it
    at.run()
    assert at.selectbox(key="pred_pos").value == 3


def test_a_link_names_a_position_and_keeps_it_until_the_prompt_changes(tiny_env, tiny_lm):
    at = app(PREDICTION, prompt="one two three four five six", pred_pos="2")
    assert at.selectbox(key="pred_pos").value == 2
    at.sidebar.button(key="sidebar_example_3").click().run()  # the Story example
    assert at.selectbox(key="pred_pos").value == n_tokens_of(at, tiny_lm) - 1


def test_token_focus_opens_mid_prompt_and_follows_a_new_prompt(tiny_env, tiny_lm):
    """At the last token, "attended by" is that token alone; the focus opens where both directions have
    tokens, and goes back there for a new prompt (other tabs' positions follow the same rule)."""
    at = app(ATTENTION, prompt="one two three four five six seven", attn_view="Token focus")
    n = n_tokens_of(at, tiny_lm)
    assert at.selectbox(key="attn_focus_pos").value == (n - 1) // 2
    assert len(at.get("plotly_chart")) == 2
    at.selectbox(key="attn_focus_pos").set_value(1).run()
    at.sidebar.text_area(key="sidebar_prompt").input("a much longer prompt than the first one, " * 3).run()
    n = n_tokens_of(at, tiny_lm)
    assert not at.exception and at.selectbox(key="attn_focus_pos").value == (n - 1) // 2


# ---- a link's first run stops early: its view waits for the prompt (item 26) --------------------------------
def test_a_links_view_survives_a_first_run_without_a_prompt(tiny_env):
    at = apptest.open_page(ATTENTION, query={"prompt": "", "attn_view": "One head", "attn_layer": "1",
                                             "attn_colour": "log"})
    assert "empty" in texts(at.info)
    at.sidebar.text_area(key="sidebar_prompt").input("the cat sat on the mat").run()
    assert not at.exception
    assert at.session_state["attn_view"] == "One head" and at.selectbox(key="attn_layer").value == 1
    assert query(at, "attn_view") == "One head" and query(at, "attn_colour") == "log"


# ---- the model by its name: one spelling, never a server path (items 5, 27, 19, 20) ---------------------------
def test_spellings_of_one_allowed_directory_load_one_model(tiny_env, checkpoints, monkeypatch):
    monkeypatch.setenv("GPT2VIZ_ALLOWED_MODELS", checkpoints[0])
    parent, name = str(Path(checkpoints[0]).parent), Path(checkpoints[0]).name
    for spelling in (checkpoints[0] + "/", parent + "//" + name, parent + "/./" + name,
                     parent + "/../" + Path(parent).name + "/" + name):
        at = app(model=spelling)
        assert not at.warning and at.session_state["model_name"] == checkpoints[0], spelling
        assert query(at, "model") == "tiny-0"  # the link names it, without the server's path
    assert model_store().loaded_names().count(checkpoints[0]) == 1
    at = app(model="tiny-0")  # the name the link wrote opens it again
    assert not at.warning and at.session_state["model_name"] == checkpoints[0]


def test_the_page_names_the_model_never_its_directory(tiny_env, tiny_model_dir, tiny_lm):
    text = " ".join(f"w{i}" for i in range(1500))
    at = apptest.open_page(apptest.NEXT_TOKEN, text)
    shown = texts(at.warning) + texts(at.sidebar.caption) + texts(at.markdown) + texts(at.caption)
    assert "reads at most 1,024" in shown and Path(tiny_model_dir).name in shown
    assert str(tiny_model_dir.parent) not in shown
    options = at.sidebar.selectbox(key="sidebar_model")
    assert options.format_func(options.value) == Path(tiny_model_dir).name


def test_a_model_name_too_long_for_the_file_system_is_a_message(tiny_env):
    at = app()
    for name in ("a" * 300, "/tmp/" + "b" * 300, "x/" * 200):
        at.sidebar.selectbox(key="sidebar_model").set_value(LOCAL_DIR_OPTION).run()
        at.sidebar.text_input(key="sidebar_model_path").input(name).run()
        assert not at.exception and "Could not load the model" in texts(at.error), name
    at = app(model="c" * 300)
    assert not at.exception
    at.button(key="model_link_load").click().run()
    assert not at.exception and "Could not load the model" in texts(at.error)


def live_links(markdown: str) -> list[str]:
    """What Streamlit's Markdown would turn into links: GFM autolinks (www.x.y, http(s)://x.y, a@x.y), read
    after backslash escapes are undone, as its renderer reads them (a word joiner splits a domain)."""
    import re

    text = re.sub(r"\\(.)", r"\1", markdown)
    return re.findall(r"(?:(?<![\w\u2060])www\.[\w-]+\.|https?://[\w-]+\.[\w-]|[\w.+-]+@[\w-]+\.[\w-])", text)


def test_bare_urls_in_a_link_are_shown_as_text(tiny_env):
    at = app(model="www.evil.example", prompt="see https://evil.example/x or mail a@evil.example")
    warning = texts(at.warning)
    assert "www" in warning and not live_links(warning), warning
    shown = " ".join(str(e.value) for e in [*at.markdown, *at.caption, *at.warning, *at.info, *at.error])
    assert not live_links(shown)


# ---- a session left open holds no model the store unloaded (item 23) ----------------------------------------
def test_sessions_left_open_hold_no_unloaded_model(tiny_env, checkpoints, monkeypatch):
    """Each link opens a session; sessions that stay open (tabs nobody closed) must not keep their model
    in memory once the store has unloaded it: widgets keep their callbacks and format functions, so
    those must not hold the page's run (its model, its trace)."""
    monkeypatch.setenv("GPT2VIZ_ALLOWED_MODELS", ",".join(checkpoints))
    sessions = []
    views = [(ATTENTION, "Head atlas"), (ATTENTION, "Token focus"), (PREDICTION, "Attribution"),
             (PREDICTION, "Logit lens"), (EMBEDDINGS, None), (apptest.GENERATION, None), (apptest.NEXT_TOKEN, None)]
    for i, name in enumerate(checkpoints * 2):
        for page, view in views[i % 2::2]:
            at = apptest.open_page(page, query={"model": name})
            if view:
                apptest.show_view(at, page, view)
            sessions.append(at)
    alive = live_models(set(checkpoints))
    assert len(alive) <= model_store().max_models, alive


def test_the_tour_and_the_scan_chart_hold_no_unloaded_model(tiny_env, checkpoints, monkeypatch):
    """The Tour's Previous/Next and the Experiments scan chart's click keep a callback for as long as their
    session lives: once the store has unloaded the model such a session showed, nothing of it is left."""
    monkeypatch.setenv("GPT2VIZ_ALLOWED_MODELS", ",".join(checkpoints))
    tour = apptest.open_page(apptest.TOUR, query={"model": checkpoints[0], "tour_step": "2"})
    scan = apptest.show_view(apptest.open_page(EXPERIMENTS, query={"model": checkpoints[0]}), EXPERIMENTS,
                             "Which parts matter")
    assert not tour.button(key="tour_prev").disabled and not tour.button(key="tour_next").disabled
    assert scan.get("plotly_chart"), "the scan is drawn, with its click callback"
    assert checkpoints[0] in live_models(set(checkpoints))
    for name in checkpoints[1:]:  # two other models in the store (it keeps two): the first one is unloaded
        apptest.open_page(query={"model": name})
    assert checkpoints[0] not in model_store().loaded_names()
    assert checkpoints[0] not in live_models(set(checkpoints)), "a session left open holds the unloaded model"
    tour.button(key="tour_next").click().run()  # the sessions still work, on the model they now load
    assert not tour.exception and tour.session_state["tour_step"] == 3
