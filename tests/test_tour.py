"""The Tour page (tiny model): every step draws; each step's figure is the one its page draws for the
same prompt and controls, reached through the step's "Open this in …" button, which also carries
what Generate made; continuations run only when Generate is pressed, and stay; Previous/Next move
the step and the link; the features step works with and without an SAE; the steering step is the
Steering page's steer."""
from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

import recipes.tour
from recipes.tour import AI, ESSAY_TOP5, STEPS
from tests import apptest
from tests.conftest import ROOT
from tests.plotly_json import chart_specs, decode
from ui.shell import HELLO_BYE

TOUR = "pages/0_Tour.py"
NUMBERS = list(range(1, len(STEPS) + 1))
SHIPPED_HOOK = "blocks.1.hook_resid_pre"


@pytest.fixture
def shipped(tiny_env, tiny_sae_dir, tmp_path, monkeypatch):
    """The tiny model as the bundled one, with a random SAE shipped beside it (as bundled/mini-gpt2-kjv-saes/)."""
    from recipes import features

    shutil.copytree(tiny_sae_dir, tmp_path / "shipped" / SHIPPED_HOOK)
    monkeypatch.setattr(features, "BUNDLED_DIR", tiny_env)
    monkeypatch.setattr(features, "BUNDLED_SAES", tmp_path / "shipped")
    return tmp_path / "shipped" / SHIPPED_HOOK


def open_tour(number: int = 1) -> AppTest:
    return apptest.open_page(TOUR, query={"tour_step": str(number)})


def click(at: AppTest, key: str) -> AppTest:
    at.button(key=key).click().run()
    assert not at.exception, at.exception
    return at


def figures(at: AppTest) -> dict[str, list]:
    """title -> the figure's traces, of every chart on the page."""
    return {spec["layout"]["title"]["text"]: spec["data"] for spec in chart_specs(at)}


def test_the_steps_use_the_essays_prompts():
    assert recipes.tour.HELLO_BYE == HELLO_BYE
    assert [s.prompt for s in STEPS] == [AI] * 6 + [HELLO_BYE] * 3 + [AI] * 5
    assert len(STEPS) == 14 and len({s.title for s in STEPS}) == 14
    assert [s.kind for s in STEPS][8:10] == ["across_layers", "features"] and STEPS[-1].kind == "steer"
    assert all(s.title.startswith(f"{n} · ") for n, s in enumerate(STEPS, 1))


@pytest.mark.parametrize("number", NUMBERS, ids=[s.kind for s in STEPS])
def test_each_step_draws_what_its_page_draws(tiny_env, request, number):
    """Every step draws, and its figures are the page's, trace for trace, once the step's button
    opened the page; what Generate made goes with it, so the page shows it without running again
    (the features step with an SAE shipped for the model)."""
    step = STEPS[number - 1]
    if step.kind == "features":
        request.getfixturevalue("shipped")
    at = open_tour(number)
    assert at.session_state["tour_step"] == number
    assert any(h.value == step.title for h in at.subheader)
    if step.generates:
        click(at, "tour_generate")
    assert chart_specs(at), f"step {number} drew no figure"
    assert any("not from the essay's GPT-2" in c.value for c in at.caption)  # the tiny model is not GPT-2
    tour_figures, tour_texts = figures(at), [c.value for c in at.code]
    assert tour_figures
    prompt = at.session_state["prompt"]
    click(at, "tour_open")
    assert at.session_state["prompt"] == (step.prompt if step.uses_trace else prompt)
    for key, value in step.controls.items():
        assert at.session_state[key] == value, key
    page_figures = figures(at)  # no Generate pressed on the page
    for title, data in tour_figures.items():
        assert title in page_figures, f"{title!r} is not on the {step.page_label} page: {list(page_figures)}"
        assert data == page_figures[title], title
    if step.kind == "steer":  # the two texts are on the page's Generation tab
        at.session_state["steer_view"] = "Generation"
        at.run()
    assert [c.value for c in at.code] == tour_texts  # the texts (greedy, steering); side by side is a figure


def test_the_features_step_without_an_sae_says_why_and_shows_neurons(tiny_env):
    at = open_tour(10)
    assert "No SAE ships for" in at.info[0].value and "Features page" in at.info[0].value
    (strip,) = chart_specs(at)
    assert strip["layout"]["title"]["text"].startswith("Layer 1's most active neurons")
    click(at, "tour_open")
    assert at.session_state["feat_view"] == "Features per token"
    assert any("no public SAEs" in i.value for i in at.info)  # the Features page says how to load one


def test_the_features_step_opens_on_the_shipped_sae(shipped):
    at = open_tour(10)
    assert not at.info
    heat = figures(at)
    assert any(title.startswith("The 20 strongest features (residual stream before block 1)") for title in heat)
    assert any("ships with the app" in c.value for c in at.caption)  # the model note for the bundled model
    assert not any("Pick gpt2" in c.value for c in at.caption)
    click(at, "tour_open")
    assert at.session_state["feat_sae_source"] == "bundled" and at.session_state["feat_sae_hook"] == SHIPPED_HOOK


def test_the_steering_step_is_the_steering_pages_love_minus_hate(tiny_env, tiny_lm):
    import numpy as np
    import torch

    from core.steering import contrast_vector, steered_logits

    at = open_tour(len(STEPS))
    table = at.dataframe[0].value
    ids = [tiny_lm.tokenizer.bos_token_id] + tiny_lm.encode(AI)
    v = contrast_vector(tiny_lm, "Love", "Hate", 1)  # an early block on a small model: 1 of 2
    after = torch.softmax(steered_logits(tiny_lm, ids, v, 1, 5.0)[-1], -1).numpy()
    np.testing.assert_allclose(table["p steered"], after[table["id"]], rtol=1e-4, atol=1e-7)
    assert any("Generate" in i.value for i in at.info) and not at.code
    click(at, "tour_generate")
    assert len(at.code) == 2 and all(c.value.startswith(AI) for c in at.code)


def test_opening_a_step_says_it_replaces_the_sidebars_prompt(tiny_env):
    at = apptest.open_page(TOUR, "my own prompt", query={"tour_step": "8"})
    assert any("in place of yours" in c.value for c in at.caption)
    click(at, "tour_open")
    assert at.session_state["prompt"] == HELLO_BYE
    same = apptest.open_page(TOUR, AI, query={"tour_step": "1"})
    assert not any("in place of yours" in c.value for c in same.caption)
    weights = apptest.open_page(TOUR, "my own prompt", query={"tour_step": "11"})  # no prompt in the figure
    assert not any("in place of yours" in c.value for c in weights.caption)
    click(weights, "tour_open")
    assert weights.session_state["prompt"] == "my own prompt"


def test_continuations_wait_for_generate_and_stay(tiny_env, monkeypatch):
    calls = []
    real = recipes.tour.continuations
    monkeypatch.setattr(recipes.tour, "continuations", lambda *a: calls.append(a[0].kind) or real(*a))
    at = open_tour(2)
    assert not calls and not chart_specs(at) and not at.code
    assert any("Generate" in i.value for i in at.info)
    click(at, "tour_generate")
    assert calls == ["greedy"] and chart_specs(at) and at.code
    text = at.code[0].value
    assert text.startswith(AI)
    click(at, "tour_next")  # step 3 waits for its own Generate
    assert calls == ["greedy"] and not chart_specs(at)
    click(at, "tour_prev")  # back on step 2: the text is still there, not made again
    assert calls == ["greedy"] and at.code[0].value == text


def test_previous_and_next_move_the_step_and_the_link(tiny_env):
    at = open_tour(1)
    assert at.button(key="tour_prev").disabled
    click(at, "tour_next")
    assert at.session_state["tour_step"] == 2 and at.query_params["tour_step"] in ("2", ["2"])
    assert any(h.value == STEPS[1].title for h in at.subheader)
    click(at, "tour_prev")
    assert at.session_state["tour_step"] == 1 and at.query_params["tour_step"] in ("1", ["1"])
    last = open_tour(len(STEPS))
    assert last.button(key="tour_next").disabled


def test_step_1_shows_the_essays_numbers_beside_the_live_ones(tiny_env):
    at = open_tour(1)
    assert any("Wolfram's essay (GPT-2)" in m.value for m in at.markdown)
    essay = next(df.value for df in at.dataframe if "learn" in set(df.value.iloc[:, 0]))
    assert list(essay["word"]) == [w for w, _ in ESSAY_TOP5]
    assert list(essay["probability"]) == [p for _, p in ESSAY_TOP5]
    assert any(len(df.value) == 5 and "probability" in df.value.columns and "learn" not in set(df.value.iloc[:, 0])
               for df in at.dataframe)  # the live top 5


# ---- the bundled model: the steps' words hold for the figure below them (issue 25, item 13) --------
BUNDLED = ROOT / "bundled" / "mini-gpt2-kjv"


def learned_tokens() -> set[int]:
    """The checkpoint's list of learned tokens, read from its file (the oracle)."""
    return set(json.loads((BUNDLED / "trained_tokens.json").read_text())["token_ids"])


def bundled_tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(BUNDLED))


def word_embedding(words: list[str]) -> np.ndarray:
    """[word, d_model]: each word's in-sentence token row of the checkpoint's wte, read from the file."""
    from safetensors import safe_open

    tok = bundled_tokenizer()
    with safe_open(str(BUNDLED / "model.safetensors"), "np") as f:
        wte = f.get_tensor("transformer.wte.weight")
    ids = [tok.encode(" " + w) for w in words]
    assert all(len(i) == 1 for i in ids), ids
    return wte[[i[0] for i in ids]].astype(np.float64)


def paragraph(at: AppTest, step) -> str:
    """The step's paragraph as it reads on the page (Markdown escapes gone), with any note under it."""
    head = step.text[:40]
    (text,) = [m.value for m in at.markdown if m.value.startswith(head)]
    return text.replace("\\", "")


def sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+", text.replace("\n", " ")) if s]


def test_the_sampling_step_says_sampling_need_not_read_better_on_the_bundled_model(bundled_env):
    """'reads far better' was said of the loaded model; on the bundled one the greedy text reads best."""
    at = open_tour(3)
    text = paragraph(at, STEPS[2])
    for s in sentences(text):
        if "better" in s:  # every claim about reading better says whose samples it is about
            assert "GPT-2" in s or "need not read better" in s, s
    assert "On mini-gpt2-kjv, a small model trained on one book, sampling need not read better" in text


def test_the_words_step_shows_words_the_bundled_model_learned_and_says_how_near_they_are(bundled_env):
    at = open_tour(5)
    learned = learned_tokens()
    table = at.dataframe[0].value
    words = list(table["word"])
    assert words != ["cat", "dog", "chair"] and len(words) == 3
    assert {int(i) for i in table["ids"]} <= learned  # one learned token each
    text = paragraph(at, STEPS[4])
    assert f"so this step shows {', '.join(words)}, words it did learn" in text
    m = re.search(r"On mini-gpt2-kjv, (\w+) and (\w+) are nearer each other \(cosine (-?[\d.]+)\) than either is to "
                  r"(\w+) \((-?[\d.]+) and (-?[\d.]+)\)", text)
    assert m, text
    a, b, ab, c, ac, bc = m.groups()
    assert [a, b, c] == words
    x = word_embedding(words)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    cos = x @ x.T  # the oracle: cosines of the file's rows
    assert cos[0, 1] > max(cos[0, 2], cos[1, 2])
    np.testing.assert_allclose([float(ab), float(ac), float(bc)], [cos[0, 1], cos[0, 2], cos[1, 2]], atol=0.006)
    click(at, "tour_open")
    assert [w.strip() for w in at.text_input(key="emb_words").value.split(",")] == words


def test_the_meaning_step_maps_words_the_bundled_model_learned_and_counts_who_sits_together(bundled_env):
    at = open_tour(6)
    learned, tok = learned_tokens(), bundled_tokenizer()
    (spec,) = chart_specs(at)
    points = [(tr["name"], w, x, y) for tr in spec["data"] if tr.get("customdata")  # the hover names each word
              for w, x, y in zip(tr["customdata"], decode(tr["x"]), decode(tr["y"]))]
    words = [w for _g, w, _x, _y in points]
    assert len(words) >= 30 and "cat" not in words
    assert all(len(tok.encode(" " + w)) == 1 and tok.encode(" " + w)[0] in learned for w in words)
    text = paragraph(at, STEPS[5])
    m = re.search(r"On mini-gpt2-kjv, (\d+) of these (\d+) words have a word of their own group as nearest neighbour "
                  r"on this map; by chance about (\d+) would", text)
    assert m, text
    xy = np.array([(x, y) for _g, _w, x, y in points])
    d = np.linalg.norm(xy[:, None] - xy[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    groups = [g for g, _w, _x, _y in points]
    same = sum(groups[i] == groups[j] for i, j in enumerate(d.argmin(axis=1)))  # read off the drawn map
    assert (int(m.group(1)), int(m.group(2))) == (same, len(words))
    click(at, "tour_open")
    typed = [w.strip() for line in at.text_area(key="emb_groups").value.splitlines()
             for w in line.partition(":")[2].split(",")]
    assert typed == words


def test_the_rank_and_heads_steps_say_what_the_bundled_model_never_learned(bundled_env):
    import torch
    from transformers import GPT2LMHeadModel

    learned = learned_tokens()
    at = open_tour(4)
    said = paragraph(at, STEPS[3])
    m = re.search(r"mini-gpt2-kjv learned only ([\d,]+) of its ([\d,]+) tokens \((\d+)% of its", said)
    assert m and int(m.group(1).replace(",", "")) == len(learned)
    model, tok = GPT2LMHeadModel.from_pretrained(str(BUNDLED)).eval(), bundled_tokenizer()
    with torch.no_grad():
        logits = model(torch.tensor([tok.encode(AI)])).logits[0, -1]
    top = torch.argsort(logits, descending=True)[:len(learned)].tolist()
    assert int(m.group(3)) == round(100 * np.mean([i in learned for i in top]))
    heads = open_tour(8)
    assert not set(tok.encode(HELLO_BYE)) <= learned
    assert "mini-gpt2-kjv never learned “hello” or “bye”" in paragraph(heads, STEPS[7])


def test_on_gpt2_the_steps_read_as_the_essay_does(tiny_lm, monkeypatch):
    from recipes import tour_notes

    monkeypatch.setattr(tour_notes, "is_gpt2", lambda lm: True)
    assert all(tour_notes.step_text(s, tiny_lm) == s.text for s in STEPS)
