"""A copied link reopens the same view: every control of every page and tab, round-tripped.

For each view, every control is set to a value other than its default (as a person would
click them); the address bar is then opened in a fresh session, which must show the same
tab with the same value in every control. The test also holds the list of controls to the
page: a control drawn on a view but not listed here fails it, so a new control cannot be
added without going into the link (ui.controls) and into this test.
"""
from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from tests import apptest

INPUTS = ("selectbox", "radio", "slider", "number_input", "checkbox", "toggle", "text_input", "text_area",
          "multiselect", "select_slider")
# Widgets that are not controls of the view, and why they stay out of the link.
NOT_IN_LINK = {
    "attn_atlas_pick": "a one-off picker: choosing a head opens it (sets layer, head and tab, which are in the link)",
    "pred_neuron_pick": "a one-off picker: its button opens the neuron (sets layer and neuron, which are in the link)",
    "sidebar_png_width": "export size, not what is drawn", "sidebar_png_height": "export size",
    "sidebar_png_scale": "export size",
    "sidebar_model": "in the link as model=", "sidebar_model_path": "in the link as model=",
    "ngram_text": "the person's own text, up to 2 MB: content, not a control; like a long prompt, not put in links",
    "sidebar_prompt": "in the link as prompt=", "sidebar_keep": "in the link as keep=",
    "sidebar_style": "in the link as style=", "sidebar_lang": "in the link as lang=",
    "feat_card_pick": "a one-off picker: its button opens the feature's card (sets feature and tab, in the link)",
    "feat_corpus_text": "the person's own text, up to 100,000 tokens: content, not a control (as ngram_text)",
}
# Controls a case keeps at their default because the view needs it (sampling's controls show for
# "sample", the default); another case sets them otherwise.
NEEDED_AT_DEFAULT = {"gen_method", "ngram_source",  # a link cannot carry a pasted text: these cases count Genesis
                     "feat_sae_source",  # the tiny model's only SAE source is a directory (SAE, below)
                     "steer_kind",  # the contrast pair is the default kind; the other cases set the others
                     "exp_sae"}  # SAE features on Experiments need an SAE: tests/test_experiment_features.py
PROMPT = "The cat sat on the mat"

A, P, E, W, G, X = ("pages/1_Attention.py", "pages/5_Prediction.py", "pages/2_Embeddings.py", "pages/3_Weights.py",
                    "pages/4_Generation.py", "pages/6_Experiments.py")
N, F, S = "pages/7_N-grams.py", "pages/8_Features.py", "pages/9_Steering.py"
SAE = "<the tiny model's random SAE>"  # replaced by the tiny_sae_dir fixture's path when a case runs
FEAT = {"feat_sae_source": "local", "feat_sae_path": SAE}
STEER = {"steer_coef": -2.5, "steer_tokens": 7, "steer_temperature": 0.5, "steer_seed": 9}
ATTN = {"attn_layer": 1, "attn_head": 2, "attn_colour": "log"}
GEN_SAMPLE = {"gen_method": "sample", "gen_tokens": 7, "gen_temperature": 1.3, "gen_top_k": 5, "gen_top_p": 0.9,
              "gen_seed": 3, "gen_stop_eos": False}
WEIGHTS = {"weights_param": "W_V", "weights_block": 1, "weights_head": 1}
PRED = {"pred_pos": 3, "pred_token": "e"}
# (page, prompt, tab key and tab, {control: a value other than its default})
CASES = [
    ("app.py", PROMPT, None, None, {"next_k": 7}),
    (A, PROMPT, "attn_view", "Head atlas", {**ATTN, "attn_metric": "first"}),
    (A, PROMPT, "attn_view", "One layer, all heads", ATTN),
    (A, PROMPT, "attn_view", "One head", {**ATTN, "attn_scores": True}),
    (A, PROMPT, "attn_view", "One head across layers", ATTN),
    (A, PROMPT, "attn_view", "Token focus", {**ATTN, "attn_focus_pos": 1, "attn_focus_heads": "one"}),
    (E, "hello " * 140, "emb_tab", "The prompt's embeddings", {"emb_start": 5}),
    (E, PROMPT, "emb_tab", "Positions", {}),
    (E, PROMPT, "emb_tab", "Word vectors", {"emb_words": "dog, cat, chair", "emb_leading": False,
                                            "emb_nn_word": "chair"}),
    (E, PROMPT, "emb_tab", "Meaning space", {"emb_groups": "a: cat, dog\nb: red, blue", "emb_method": "pca",
                                             "emb_dims": 3, "emb_map_leading": False}),
    (E, PROMPT, "emb_tab", "Whole vocabulary", {"emb_vocab_table": "positions"}),
    (E, PROMPT, "emb_tab", "In context", {"emb_layer": 0, "emb_skip_first": False}),
    (W, PROMPT, "weights_tab", "Matrix", WEIGHTS),
    (W, PROMPT, "weights_tab", "Smoothed", {**WEIGHTS, "weights_window": 3}),
    (W, PROMPT, "weights_tab", "Across blocks", {**WEIGHTS, "weights_log": True}),
    (W, PROMPT, "weights_tab", "All parameters", WEIGHTS),
    (W, PROMPT, "weights_tab", "Spectrum", WEIGHTS),
    (G, PROMPT, "gen_tab", "Step by step", GEN_SAMPLE),
    (G, PROMPT, "gen_tab", "Step by step", {"gen_method": "beam", "gen_tokens": 9, "gen_beams": 3,
                                            "gen_length_penalty": 0.5, "gen_early_stopping": "never"}),
    (G, PROMPT, "gen_tab", "Side by side", {**GEN_SAMPLE, "gen_sbs_runs": 2, "gen_sbs_temperature": 1.1,
                                            "gen_sbs_tokens": 5, "gen_sbs_seed": 4}),
    (G, PROMPT, "gen_tab", "Temperature", {**GEN_SAMPLE, "gen_sweep_temps": [0.5, 1.5], "gen_sweep_k": 5}),
    (P, PROMPT, "pred_view", "Logit lens", {**PRED, "pred_lens_colour": "next"}),
    (P, "hello " * 40, "pred_view", "Logit lens", {**PRED, "pred_lens_colour": "typed", "pred_lens_start": 7}),
    (P, PROMPT, "pred_view", "Attribution", {**PRED, "pred_minus": " a"}),
    (P, PROMPT, "pred_view", "Neurons", {**PRED, "pred_layer": 0, "pred_neuron_where": "anywhere", "pred_neuron": 5}),
    (P, PROMPT, "pred_view", "What a head writes", {**PRED, "pred_layer": 0, "pred_head": 1}),
    (P, PROMPT, "pred_view", "Contribution graph", {**PRED, "pred_graph_threshold": 0.1,
                                                     "pred_graph_convention": "llm_tt"}),
    (X, PROMPT, "exp_view", "Knock out parts", {"exp_mode": "mean", "exp_heads": [(0, 1), (1, 3)], "exp_mlps": [1],
                                                "exp_neurons": "0:3", "exp_sae": False}),
    (X, PROMPT, "exp_view", "Which parts matter", {"exp_mode": "mean", "exp_target": "e"}),
    (X, PROMPT, "exp_view", "Two prompts", {"exp_mode": "mean", "exp_other": "The dog sat on the mat", "exp_layer": 1,
                                            "exp_head": 2}),
    (X, PROMPT, "exp_view", "Patching", {"exp_mode": "mean", "exp_other": "The dog sat on the mat",
                                         "exp_patch_what": "head"}),
    (X, PROMPT, "exp_view", "Patching", {"exp_mode": "mean", "exp_other": "A big dog sat on the old mat",
                                         "exp_pad": True, "exp_patch_what": "head"}),
    (N, PROMPT, "ngram_view", "Samples", {"ngram_source": "genesis", "ngram_seed": 3}),
    (N, PROMPT, "ngram_view", "Next letter and word", {"ngram_source": "genesis", "ngram_context": "unto the",
                                                       "ngram_n": 4, "ngram_k": 5}),
    (N, PROMPT, "ngram_view", "Letter statistics", {"ngram_source": "genesis"}),
    (F, PROMPT, "feat_view", "Features per token", {**FEAT, "feat_pos": 3, "feat_top_k": 12, "feat_skip_first": False}),
    (F, PROMPT, "feat_view", "Feature card", {**FEAT, "feat_feature": 7, "feat_corpus": "pasted"}),
    (F, PROMPT, "feat_view", "Fidelity", FEAT),
    (F, PROMPT, "feat_view", "Which features make the prediction", {**FEAT, "feat_attr_pos": 4, "feat_token": " the",
                                                                      "feat_minus": "e"}),
    (S, PROMPT, "steer_view", "Generation", {**STEER, "steer_layer": 0, "steer_kind": "pair", "steer_a": " Paris",
                                             "steer_b": " Rome"}),
    (S, PROMPT, "steer_view", "Next token", {**STEER, "steer_layer": 0, "steer_kind": "mean",
                                             "steer_list_a": "a cat\na dog", "steer_list_b": "a car"}),
    (S, PROMPT + " and the dog sat on the log" * 2, "steer_view", "Logit lens",
     {**STEER, "steer_layer": 0, "steer_kind": "token", "steer_token": "e", "steer_lens_start": 2}),
    (S, PROMPT, "steer_view", "Coefficient sweep", {**STEER, "steer_layer": 0, "steer_kind": "head",
                                                    "steer_head_layer": 1, "steer_head": 2, "steer_word": "e",
                                                    "steer_sweep_tokens": 4}),
    (S, PROMPT, "steer_view", "Next token", {**STEER, **FEAT, "steer_kind": "feature", "steer_feature": 7}),
    ("pages/0_Tour.py", PROMPT, None, None, {"tour_step": 8}),
]


def with_sae(values: dict, request) -> dict:
    """The case's values, SAE replaced by the path of a random SAE for the tiny model."""
    if SAE not in values.values():
        return values
    path = str(request.getfixturevalue("tiny_sae_dir"))
    return {k: path if v == SAE else v for k, v in values.items()}


def open_view(page: str, prompt: str | None = None, state: dict | None = None, query: dict | None = None) -> AppTest:
    return apptest.open_page(page, prompt, state, query=query)


def controls_on_screen(at: AppTest) -> dict:
    found = {}
    for kind in INPUTS:
        for widget in getattr(at, kind):
            if widget.key and widget.key not in NOT_IN_LINK:
                found[widget.key] = widget.value
    return found


def link_of(at: AppTest) -> dict:
    return {k: (v[0] if isinstance(v, list) else v) for k, v in at.query_params.items()}


def same(a, b) -> bool:
    if a is None or b is None:
        return a is b
    if isinstance(a, float) or isinstance(b, float):
        return abs(float(a) - float(b)) < 1e-9
    if isinstance(a, list):
        return ([tuple(x) if isinstance(x, list) else x for x in a]
                == [tuple(x) if isinstance(x, list) else x for x in b])
    return a == b


@pytest.mark.parametrize("page, prompt, tab_key, tab, values", CASES,
                         ids=[f"{c[0].split('/')[-1][:-3]}-{c[3] or 'page'}-{i}" for i, c in enumerate(CASES)])
def test_every_control_of_every_view_survives_a_copied_link(tiny_env, request, page, prompt, tab_key, tab, values):
    values = with_sae(values, request)
    state = {**values, **({tab_key: tab} if tab_key else {})}
    at = open_view(page, prompt, state)
    shown = controls_on_screen(at)
    assert set(shown) == set(values), "controls on screen that this test (and maybe the link) does not know: " \
        f"{sorted(set(shown) - set(values))}; listed but not drawn: {sorted(set(values) - set(shown))}"
    for key, value in values.items():
        assert same(shown[key], value), f"{key}: the page shows {shown[key]!r}, the test set {value!r}"
    link = link_of(at)
    assert set(values) <= set(link), f"not in the link: {sorted(set(values) - set(link))}"
    others = [k for k in link if k not in values and k not in (tab_key, "prompt", "model", "lang")]
    assert not others, f"in the link but not controls of this view: {others}"
    if tab_key:
        assert link[tab_key] == tab

    fresh = open_view(page, query=link)  # the link pasted into a new browser session
    reopened = controls_on_screen(fresh)
    for key, value in values.items():
        assert same(reopened.get(key), value), f"{key}: the link reopened as {reopened.get(key)!r}, not {value!r}"
    if tab_key:
        assert fresh.session_state[tab_key] == tab
    assert link_of(fresh) == link  # nothing lost or rewritten on the way

    default = controls_on_screen(open_view(page, prompt, {tab_key: tab} if tab_key else {}))
    unchanged = [k for k in values if same(default.get(k), values[k]) and k not in NEEDED_AT_DEFAULT]
    assert not unchanged, f"these controls were left at their default, so the test shows nothing for them: {unchanged}"


def test_the_figure_style_and_the_kept_end_are_in_the_link(tiny_env):
    at = open_view("pages/1_Attention.py", PROMPT, {"style": "dark", "keep": "last"})
    link = link_of(at)
    assert link["style"] == "dark" and link["keep"] == "last"
    fresh = open_view("pages/1_Attention.py", query=link)
    assert fresh.sidebar.radio(key="sidebar_style").value == "dark"
    assert fresh.session_state["keep"] == "last"
    assert "style" not in link_of(open_view("pages/1_Attention.py", PROMPT))  # the default stays out of links


# ---- a smaller model under the same controls ----------------------------------------------------
HIGH = {"attn_layer": 3, "attn_head": 7, "pred_layer": 3, "pred_head": 7, "weights_block": 3, "weights_head": 7,
        "exp_layer": 3, "exp_head": 7, "exp_heads": [(3, 7), (0, 1)], "exp_mlps": [3, 1], "emb_layer": 4,
        "steer_layer": 3, "steer_head_layer": 3, "steer_head": 7}
VIEWS = sorted({(c[0], c[2], c[3]) for c in CASES if c[0] != "app.py"}, key=str)


@pytest.fixture(scope="module")
def bigger(tmp_path_factory):
    from core.synthetic import build_checkpoint

    return str(build_checkpoint(tmp_path_factory.mktemp("bigger"), n_layer=4, n_head=8, seed=3))


@pytest.mark.parametrize("page, tab_key, tab", VIEWS, ids=[f"{v[0].split('/')[-1][:-3]}-{v[2]}" for v in VIEWS])
def test_every_view_survives_a_switch_to_a_smaller_model(tiny_env, request, bigger, page, tab_key, tab):
    """Controls set on a 4-layer, 8-head model, then the sidebar switches to the 2-layer, 4-head
    one: the page draws, and every layer, head or part that no longer exists goes to the nearest
    that does, on screen and in the link."""
    from ui.shell import LOCAL_DIR_OPTION

    values = with_sae(next(c[4] for c in CASES if (c[0], c[2], c[3]) == (page, tab_key, tab)), request)
    high = {k: v for k, v in HIGH.items() if k.split("_")[0] == next(iter(values), tab_key).split("_")[0]}
    at = open_view(page, PROMPT, {**values, **high, **({tab_key: tab} if tab_key else {}), "model_name": bigger})
    assert at.session_state["model_name"] == bigger
    at.sidebar.selectbox(key="sidebar_model").set_value(LOCAL_DIR_OPTION).run()
    at.sidebar.text_input(key="sidebar_model_path").input(str(tiny_env)).run()
    assert not at.exception, at.exception
    assert at.session_state["model_name"] == str(tiny_env)
    shown, link = controls_on_screen(at), link_of(at)
    for key in set(high) & set(shown):
        value = shown[key]
        if key.endswith("heads"):
            assert all(L < 2 and h < 4 for L, h in value), (key, value)
        elif key.endswith("mlps"):
            assert value == [1], (key, value)
        else:
            limit = {"head": 3, "layer": 2 if key == "emb_layer" else 1, "block": 1}[key.split("_")[-1]]
            assert value == limit, (key, value)
        assert key in link and same(shown[key], json_or_text(link[key])), (key, link.get(key))


def json_or_text(raw: str):
    import json

    try:
        return json.loads(raw)
    except ValueError:
        return raw
