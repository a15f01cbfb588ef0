"""The Steering page as Streamlit runs it (AppTest on app.py, then the page), on the tiny model.

Every view renders in English and Chinese; coefficient 0 writes the plain text twice; the
next-token table's numbers are core.steering.steered_logits' softmax; bad input gets a
message; Stop keeps the tokens and Continue makes the same text as an uncut run; every
control survives a copied link."""
from __future__ import annotations

import numpy as np
import pytest
import streamlit as st
import torch
from streamlit.testing.v1 import AppTest

import recipes.steering
from core.steering import contrast_vector, generate, steered_logits
from tests import apptest
from tests.plotly_json import decode, figure
from ui import steering_jobs
from viz.steering import RAISED

STEERING = "pages/9_Steering.py"
PROMPT = "The cat sat on the mat"
VIEWS = ["Generation", "Next token", "Logit lens", "Coefficient sweep"]
SHORT = {"steer_tokens": 6, "steer_sweep_tokens": 3}


def open_page(query: dict | None = None, state: dict | None = None, prompt: str = PROMPT) -> AppTest:
    return apptest.open_page(STEERING, prompt, {**SHORT, **(state or {})}, query=query)


def view(at: AppTest, name: str) -> AppTest:
    at.session_state["steer_view"] = name
    at.run()
    assert not at.exception, at.exception
    return at


def click(at: AppTest, key: str) -> AppTest:
    at.button(key=key).click().run()
    assert not at.exception, at.exception
    return at


def codes(at: AppTest) -> list[str]:
    return [c.value for c in at.code]


def messages(at: AppTest) -> str:
    return " ".join(e.value for e in list(at.warning) + list(at.error) + list(at.info))


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_every_view_renders(tiny_env, lang):
    at = open_page({"lang": lang})
    assert at.title[0].value == ("Steering" if lang == "en" else at.title[0].value)
    click(view(at, "Generation"), "steer_run")
    assert len(codes(at)) == 2
    view(at, "Next token")
    assert len(at.dataframe) == 1 and len(at.get("plotly_chart")) == 1
    view(at, "Logit lens")
    assert len(at.get("plotly_chart")) == 2
    click(view(at, "Coefficient sweep"), "steer_sweep_run")
    assert len(at.dataframe) == 1 and len(at.dataframe[0].value) == 9 and len(at.get("plotly_chart")) == 1
    assert not at.exception


def test_coefficient_zero_writes_the_plain_text_twice(tiny_env, tiny_lm):
    at = click(view(open_page(state={"steer_coef": 0.0, "steer_temperature": 1.0, "steer_seed": 3}), "Generation"),
               "steer_run")
    plain, steered = codes(at)
    assert plain == steered
    ids = [tiny_lm.tokenizer.bos_token_id] + tiny_lm.encode(PROMPT)
    made = [x.token_id for x in generate(tiny_lm, ids, 6, temperature=1.0, seed=3)]
    assert plain == PROMPT + tiny_lm.tokenizer.decode(made)
    assert any(c.value.startswith("The two texts are the same") for c in at.caption)
    click(at, "steer_run")
    assert codes(at) == [plain, steered]


def test_the_next_token_table_is_the_steered_softmax(tiny_env, tiny_lm):
    at = view(open_page(state={"steer_a": " love", "steer_b": " hate you", "steer_coef": 4.0}), "Next token")
    table = at.dataframe[0].value
    ids = [tiny_lm.tokenizer.bos_token_id] + tiny_lm.encode(PROMPT)
    v = contrast_vector(tiny_lm, " love", " hate you", 1)
    after = torch.softmax(steered_logits(tiny_lm, ids, v, 1, 4.0)[-1], -1).numpy()
    before = torch.softmax(steered_logits(tiny_lm, ids, v, 1, 0.0)[-1], -1).numpy()
    np.testing.assert_allclose(table["p steered"], after[table["id"]], rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(table["p plain"], before[table["id"]], rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(table["shift"], after[table["id"]] - before[table["id"]], atol=1e-6)
    top = set(np.argsort(-after)[:10]) | set(np.argsort(-before)[:10])
    assert set(table["id"]) == top
    bars = figure(at, "How the steer shifts the next token")["data"][0]
    np.testing.assert_allclose(decode(bars["x"]), table["shift"], atol=1e-6)
    colours = bars["marker"]["color"]
    assert [c == RAISED for c in colours] == list(table["shift"] > 0)


@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_the_sweep_reads_the_steered_and_the_unsteered_model(tiny_env, tiny_lm, temperature):
    state = {"steer_word": "e", "steer_temperature": temperature, "steer_coef": 4.0}
    table = click(view(open_page(state=state), "Coefficient sweep"), "steer_sweep_run").dataframe[0].value
    assert list(table["coefficient"]) == [-8.0, -6.0, -4.0, -2.0, 0.0, 2.0, 4.0, 6.0, 8.0]
    ids = [tiny_lm.tokenizer.bos_token_id] + tiny_lm.encode(PROMPT)
    v, word = contrast_vector(tiny_lm, "Love", "Hate", 1), tiny_lm.encode("e")[0]
    want = [torch.softmax(steered_logits(tiny_lm, ids, v, 1, c)[-1], -1)[word].item() for c in table["coefficient"]]
    np.testing.assert_allclose(table["probability"], want, rtol=1e-4)
    made = [x.token_id for x in generate(tiny_lm, ids, 3, vector=v, layer=1, coefficient=8.0, temperature=temperature,
                                         seed=0)]
    assert table["text"].iloc[-1] == tiny_lm.tokenizer.decode(made)
    with torch.inference_mode():  # the unsteered model: transformers' own forward
        logits = tiny_lm.model(torch.tensor([ids + made])).logits[0, len(ids) - 1:-1]
    logp = torch.log_softmax(logits, -1)[torch.arange(3), torch.tensor(made)]
    np.testing.assert_allclose(table["perplexity"].iloc[-1], torch.exp(-logp.mean()).item(), rtol=1e-4)


@pytest.mark.parametrize("state, expected", [
    ({"steer_a": ""}, "A steering prompt is empty"),
    ({"steer_b": "🙂" * 1000}, "the model reads at most 1024"),  # 2,000 characters at most, but many tokens
    ({"steer_kind": "token", "steer_token": "not one token at all"}, "not one"),
    ({"steer_kind": "mean", "steer_list_b": "\n \n"}, "at least one prompt"),
])
def test_bad_inputs_get_a_message(tiny_env, state, expected):
    at = open_page(state=state)
    assert not at.exception
    assert expected.lower() in messages(at).lower()
    assert "Traceback" not in messages(at) and "/tmp" not in messages(at)
    assert len(at.get("plotly_chart")) == 0  # nothing runs on a steer that cannot be made


def test_a_huge_or_nan_coefficient_is_clamped_or_refused_in_the_link(tiny_env):
    at = open_page({"steer_coef": "1e6"})
    assert at.number_input(key="steer_coef").value == 10_000.0 and at.query_params["steer_coef"] == "10000.0"
    assert "largest coefficient" in messages(at)
    view(at, "Next token")
    at = open_page({"steer_coef": "nan"})
    assert not at.exception and at.number_input(key="steer_coef").value == 5.0


def test_a_steered_run_that_is_not_finite_says_so(tiny_env, tiny_lm, monkeypatch):
    steering_jobs._vector.clear()
    monkeypatch.setattr(recipes.steering, "token_direction", lambda lm, token: torch.full((lm.d_model,), 3e38))
    at = open_page(state={"steer_kind": "token", "steer_token": "e"})
    steering_jobs._vector.clear()
    assert not at.exception
    assert "not finite" in messages(at)
    assert len(at.get("plotly_chart")) == 0


def test_stop_keeps_the_tokens_and_continue_makes_the_uncut_text(tiny_env, monkeypatch):
    uncut = codes(click(view(open_page(), "Generation"), "steer_run"))
    real, fired = recipes.steering.paired_tokens, []

    def cut(*args, **kwargs):
        for i, pair in enumerate(real(*args, **kwargs)):
            if i == 3 and not fired:
                fired.append(True)
                st.stop()
            yield pair

    monkeypatch.setattr(recipes.steering, "paired_tokens", cut)
    at = click(view(open_page(), "Generation"), "steer_run")
    assert at.get("progress")[0].proto.text.startswith("Generating with and without the steer: token 3 of 6")
    click(at, "steer_gen_stop")
    assert any(c.value == "3 tokens (stopped)" for c in at.caption)
    click(at, "steer_gen_continue")
    assert codes(at) == uncut


def test_a_prompt_that_fills_the_context_leaves_no_room_but_the_other_views_work(tiny_env, tiny_lm):
    prompt = " the" * (tiny_lm.n_ctx - 1)  # <|endoftext|> in front fills the last position
    at = open_page(prompt=prompt)
    assert any("no room" in i.value for i in at.info)
    view(at, "Coefficient sweep")
    assert any("no room" in i.value for i in at.info)
    assert len(view(at, "Next token").dataframe) == 1
    assert len(view(at, "Logit lens").get("plotly_chart")) == 2


INPUTS = ("selectbox", "radio", "slider", "number_input", "text_input", "text_area")
CASES = [
    ("Generation", {"steer_kind": "pair", "steer_a": " Paris", "steer_b": " Rome"}),
    ("Next token", {"steer_kind": "mean", "steer_list_a": "a cat\na dog", "steer_list_b": "a car"}),
    ("Logit lens", {"steer_kind": "token", "steer_token": "e", "steer_lens_start": 2}),
    ("Coefficient sweep", {"steer_kind": "head", "steer_head_layer": 1, "steer_head": 2, "steer_word": "e",
                           "steer_sweep_tokens": 4}),
]
COMMON = {"steer_layer": 0, "steer_coef": -2.5, "steer_tokens": 7, "steer_temperature": 0.5, "steer_seed": 9}


@pytest.mark.parametrize("tab, values", CASES, ids=[c[0] for c in CASES])
def test_every_control_survives_a_copied_link(tiny_env, tab, values):
    values = {**COMMON, **values}
    prompt = PROMPT + " and the dog sat on the log" * 2
    at = apptest.open_page(STEERING, prompt, {**values, "steer_view": tab})
    shown = {w.key: w.value for kind in INPUTS for w in getattr(at, kind) if w.key and not w.key.startswith("sidebar")}
    assert set(shown) == set(values), sorted(set(shown) ^ set(values))
    link = {k: (v[0] if isinstance(v, list) else v) for k, v in at.query_params.items()}
    fresh = apptest.open_page(STEERING, query=link)
    reopened = {w.key: w.value for kind in INPUTS for w in getattr(fresh, kind) if w.key in values}
    assert reopened == values and fresh.session_state["steer_view"] == tab
    assert {k: (v[0] if isinstance(v, list) else v) for k, v in fresh.query_params.items()} == link


def test_an_example_sets_the_controls_and_the_prompt(tiny_env):
    at = open_page()
    click(at, "steer_example_1_0")
    assert at.session_state["prompt"] == "Then the people went out"
    assert "now the example's: “Then the people went out”" in at.toast[0].value  # the sidebar's prompt was replaced
    assert at.text_input(key="steer_a").value == " Jesus said unto them, Jesus"
    assert at.selectbox(key="steer_layer").value == 1  # block 2 on a 2-block model: its last
    click(at, "steer_example_0_1")  # block 20 of gpt2-xl
    assert at.selectbox(key="steer_layer").value == 1 and at.number_input(key="steer_coef").value == 10.0


# ---- a sparse feature's direction (issue 24) ------------------------------------------------------------
FEATURE = {"steer_kind": "feature", "feat_sae_source": "local", "steer_feature": 7, "steer_coef": 3.0}


def hooked_oracle(model_dir, sae_dir, feature: int, coefficient: float, block: int):
    """transformers' own GPT-2 with a forward pre-hook on `block` adding coefficient × W_dec[feature],
    W_dec read by numpy from the SAE's saved safetensors: nothing of the app's code."""
    from safetensors.numpy import load_file
    from transformers import GPT2LMHeadModel

    direction = torch.from_numpy(load_file(str(sae_dir / "sae_weights.safetensors"))["W_dec"][feature].copy())
    model = GPT2LMHeadModel.from_pretrained(model_dir, dtype=torch.float32).eval()  # as the app reads it
    model.transformer.h[block].register_forward_pre_hook(
        lambda module, args: (args[0] + coefficient * direction,) + tuple(args[1:]))
    return model


def test_a_features_direction_steers_as_transformers_with_a_hook_does(tiny_env, tiny_lm, tiny_sae_dir):
    """The feature kind against an independent oracle: the next-token table and the greedy steered text
    are those of transformers' forward with coefficient × W_dec[7] added before block 1 (the SAE's
    hook, blocks.1.hook_resid_pre) at every position, new tokens included."""
    state = {**FEATURE, "feat_sae_path": str(tiny_sae_dir), "steer_temperature": 0.0}
    at = view(open_page(state=state), "Next token")
    assert any("added before block **1**" in m.value.lower() for m in at.markdown)
    ids = [tiny_lm.tokenizer.bos_token_id] + tiny_lm.encode(PROMPT)
    model = hooked_oracle(tiny_env, tiny_sae_dir, 7, 3.0, 1)
    with torch.no_grad():
        want = torch.softmax(model(torch.tensor([ids])).logits[0, -1].double(), -1).numpy()
    table = at.dataframe[0].value
    np.testing.assert_allclose(table["p steered"], want[table["id"]], rtol=1e-5, atol=1e-8)
    assert set(table["id"]) >= set(np.argsort(-want)[:10])

    codes_ = codes(click(view(at, "Generation"), "steer_run"))
    made = list(ids)
    with torch.no_grad():
        for _step in range(SHORT["steer_tokens"]):
            made.append(int(model(torch.tensor([made])).logits[0, -1].argmax()))
    assert codes_[1] == PROMPT + tiny_lm.tokenizer.decode(made[len(ids):])
    assert codes_[0] != codes_[1]  # the steer changed the text (else the comparison shows little)


def test_the_feature_kind_survives_a_copied_link_and_a_bad_sae_gets_a_message(tiny_env, tiny_sae_dir, tmp_path):
    values = {**FEATURE, "feat_sae_path": str(tiny_sae_dir), "steer_tokens": 7, "steer_temperature": 0.5,
              "steer_seed": 9}
    at = apptest.open_page(STEERING, PROMPT, {**values, "steer_view": "Next token"})
    shown = {w.key: w.value for kind in INPUTS for w in getattr(at, kind) if w.key and not w.key.startswith("sidebar")}
    assert set(shown) == set(values), sorted(set(shown) ^ set(values))  # no Block control: the SAE's hook decides
    link = {k: (v[0] if isinstance(v, list) else v) for k, v in at.query_params.items()}
    fresh = apptest.open_page(STEERING, query=link)
    assert {w.key: w.value for kind in INPUTS for w in getattr(fresh, kind) if w.key in values} == values

    from tests.test_features_page import build_sae

    for hook, words in (("blocks.0.hook_attn_out", "pick an SAE on the residual stream"),
                        ("blocks.1.hook_resid_post", "pick an SAE on the residual stream")):
        sae = build_sae(tmp_path / hook, hook=hook)
        at = open_page(state={**FEATURE, "feat_sae_path": str(sae)})
        assert not at.exception and words in messages(at) and len(at.get("plotly_chart")) == 0
    at = open_page(state={**FEATURE, "feat_sae_path": str(tmp_path / "none")})
    assert not at.exception and "No SAE directory" in at.error[0].value


@pytest.mark.parametrize("hook, block", [("blocks.2.hook_resid_pre", 2), ("blocks.2.hook_resid_post", 3),
                                         ("blocks.4.hook_mlp_out", 5)])
def test_the_feature_kind_on_the_bundled_model_matches_the_hooked_oracle(tmp_path, hook, block):
    """The bundled model (6 blocks of 192) and a random SAE at three hook points: the vector goes before the
    block whose input sums the SAE's activation (resid_post L and mlp_out L: block L + 1), and the steered
    logits equal transformers' with the pre-hook, ≤ 1e-5 relative."""
    from core import load_model
    from core.model import BUNDLED_DIR
    from core.sae import load_sae
    from core.trace import trace_ids
    from recipes.steering import feature_block, feature_vector
    from tests.test_features_page import build_sae

    lm = load_model(str(BUNDLED_DIR), device="cpu")
    path = build_sae(tmp_path / "sae", hook=hook, d_in=lm.d_model, d_sae=256, seed=4)
    sae = load_sae(str(path))
    ids = [lm.tokenizer.bos_token_id] + lm.encode("And God said, Let there be light")
    assert feature_block(lm, sae) == block
    vector = feature_vector(lm, trace_ids(lm, ids), sae, 11)
    got = steered_logits(lm, ids, vector, block, 6.0).double()
    with torch.no_grad():
        want = hooked_oracle(BUNDLED_DIR, path, 11, 6.0, block)(torch.tensor([ids])).logits[0].double()
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-5 * want.abs().max().item())
    assert not torch.allclose(got, steered_logits(lm, ids, vector, block, 0.0).double(), atol=1e-3)  # it steers
