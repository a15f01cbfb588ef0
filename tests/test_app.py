"""The app as Streamlit runs it (AppTest on app.py, the file `streamlit run` starts), tiny model."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

from tests import apptest
from tests.conftest import ROOT
from tests.plotly_json import decode, figure, figures_by_title
from ui.shell import HELLO_BYE, LOCAL_DIR_OPTION, PAGES, trace_cache

TIMEOUT = 120


def run_app(prompt: str | None = None) -> AppTest:
    return apptest.open_page(typed=prompt, check=False)


def test_next_token_page_shows_gpt2s_own_probabilities(tiny_env, tiny_lm):
    at = run_app("The best thing about AI is its ability to")
    assert not at.exception
    assert at.title[0].value == "Next token"
    table = at.dataframe[0].value
    assert len(table) == 10 and list(table.columns) == ["rank", "token", "id", "probability", "logit"]
    # Independent: transformers' own forward on the same ids.
    ids = tiny_lm.encode("The best thing about AI is its ability to")
    with torch.inference_mode():
        probs = torch.softmax(tiny_lm.model(torch.tensor([ids])).logits[0, -1], -1).numpy()
    top = np.argsort(-probs)[:10]
    np.testing.assert_array_equal(table["id"].to_numpy(), top)
    np.testing.assert_allclose(table["probability"].to_numpy(), probs[top], atol=1e-6)
    bars = figure(at, "Top 10 next tokens")["data"][0]
    np.testing.assert_allclose(decode(bars["x"]), probs[top], atol=1e-6)
    rank = figure(at, "All ")["data"]
    # The tiny model is not GPT-2: the legend names it (issue 25 item 13), never "GPT-2's probabilities".
    assert rank[0]["name"].startswith("tiny") and "GPT-2" not in rank[0]["name"]
    assert figure(at, "All ")["layout"]["xaxis"]["type"] == "log"
    np.testing.assert_allclose(decode(rank[0]["y"])[:10], np.sort(probs)[::-1][:10], rtol=1e-5)
    strip = figure(at, "Surprisal per token")["data"][0]
    z = decode(strip["z"]).astype(float).ravel()
    assert np.isnan(z[0]) and np.isfinite(z[1 : len(ids)]).all()


def test_moving_widgets_reruns_no_model(tiny_env):
    at = run_app(HELLO_BYE)
    misses = trace_cache().misses
    at.slider(key="next_k").set_value(25).run()
    assert not at.exception
    assert len(at.dataframe[0].value) == 25
    assert trace_cache().misses == misses


@pytest.mark.parametrize("prompt", [
    "人工智能最好的地方在于它能够",
    "Emoji 😀👍🏽❤️ split into byte pieces",
    "<img src=x onerror=alert(1)> <script>alert(1)</script>",
    "**bold** # heading [link](javascript:alert(1)) $x^2$",
    "NUL\x00byte",
    "עברית مرحبا right-to-left \u202e override",
])
def test_hard_prompts_render_a_page(tiny_env, prompt):
    at = run_app(prompt)
    assert not at.exception
    assert len(at.get("plotly_chart")) == 3
    for fig in figures_by_title(at).values():
        text = json.dumps(fig)
        assert "<img" not in text and "<script" not in text  # escaped for Plotly: &lt;img
    # The prompt is echoed nowhere as Markdown.
    assert all(prompt not in md.value for md in at.markdown)


@pytest.mark.parametrize("prompt", ["", "   \n\t "])
def test_empty_prompt_gets_a_friendly_message(tiny_env, prompt):
    at = run_app(prompt)
    assert not at.exception
    assert any("empty" in i.value for i in at.info)
    assert len(at.get("plotly_chart")) == 0


def test_over_long_prompt_warns_and_offers_first_or_last(tiny_env, tiny_lm):
    text = " ".join(f"w{i}" for i in range(1500))
    n = len(tiny_lm.encode(text))
    at = run_app(text)
    assert not at.exception
    warning = at.warning[0].value
    assert f"{n:,} tokens" in warning and f"{n - 1024:,} tokens were dropped from the end" in warning
    assert at.metric[0].value == "1,024"
    at.radio(key="sidebar_keep").set_value("last").run()
    assert not at.exception
    assert "dropped from the start" in at.warning[0].value
    assert at.session_state["keep"] == "last"


def test_example_buttons_set_the_prompt(tiny_env):
    at = run_app()
    at.sidebar.button(key="sidebar_example_1").click().run()
    assert at.session_state["prompt"] == HELLO_BYE
    assert not at.exception and at.metric[0].value == "22"


def test_model_that_cannot_be_loaded_explains_the_fix(monkeypatch, tmp_path):
    monkeypatch.setenv("GPT2VIZ_MODEL", str(tmp_path / "not-a-model"))
    at = run_app()
    assert not at.exception
    assert "Could not load the model" in at.error[0].value
    assert str(tmp_path) not in at.error[0].value and "No directory at not" in at.error[0].value  # named, not its path
    assert "GPT2VIZ_MODEL" in at.info[0].value
    assert len(at.get("plotly_chart")) == 0


def test_a_broken_directory_typed_in_the_sidebar_is_named_never_shown(tiny_env, tiny_model_dir, tmp_path):
    """Typed under Local directory…, a checkpoint whose config.json was cut short: the page says what is wrong
    with it by its directory's name; neither the path typed nor the file's path (in transformers' words) shows."""
    import shutil

    broken = tmp_path / "models" / "half-saved"
    shutil.copytree(tiny_model_dir, broken)
    (broken / "config.json").write_text('{"n_layer": ')
    at = run_app()
    for typed in (str(broken), str(broken) + "/", str(tmp_path / "models" / "." / "half-saved")):
        at.sidebar.selectbox(key="sidebar_model").set_value(LOCAL_DIR_OPTION).run()
        at.sidebar.text_input(key="sidebar_model_path").input(typed).run()
        assert not at.exception
        shown = as_read(" ".join(e.value for e in [*at.error, *at.info, *at.warning, *at.sidebar.caption]))
        assert "Could not load the model **half-saved**" in as_read(at.error[0].value), shown
        assert "'half-saved/config.json' is not a valid JSON file" in as_read(at.error[0].value), shown
        assert str(tmp_path) not in shown and "/models/" not in shown, shown


def as_read(markdown: str) -> str:
    """Markdown as a person reads it: backslash escapes undone, word joiners (which stop autolinks) gone."""
    import re

    return re.sub(r"\\(.)", r"\1", markdown).replace("\u2060", "")


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_the_sidebar_lists_every_page_in_order(tiny_env, lang):
    """Every page file of the app (the Deck included) is in the sidebar's navigation, in the files' order,
    under its label in the page's language."""
    import re

    from i18n import _, use_language

    files = sorted((ROOT / "pages").glob("*.py"), key=lambda f: int(f.name.split("_")[0]))
    at = apptest.open_page(query={"lang": lang})
    links = at.sidebar.get("page_link")[:len(files) + 1]
    assert [link.proto.page for link in links] == [""] + [re.sub(r"^\d+_", "", f.stem) for f in files]
    with use_language(lang):
        assert [link.proto.label for link in links] == [_(label) for _file, label, _icon in PAGES]
        assert links[-1].proto.label == _("Slide deck") == {"en": "Slide deck", "zh": "幻灯片"}[lang]


def test_sidebar_shows_device_and_model_size(tiny_env):
    at = run_app()
    caption = " ".join(c.value for c in at.sidebar.caption)
    assert "CPU" in caption and "M parameters" in caption and "context 1,024 tokens" in caption


OTHER_PAGES = [file for file, _, _ in PAGES if file != "app.py" and (ROOT / file).exists()]


@pytest.mark.parametrize("page", OTHER_PAGES)
def test_prompt_survives_page_switches(tiny_env, page):
    at = run_app("hello 你好 world")
    at.switch_page(page).run()
    assert not at.exception
    assert at.sidebar.text_area(key="sidebar_prompt").value == "hello 你好 world"
    at.switch_page("app.py").run()
    assert at.sidebar.text_area(key="sidebar_prompt").value == "hello 你好 world"
    assert not at.exception


# ---- issue 25: what a new user (or a hostile one) met ---------------------------------------------------
def test_a_lone_surrogate_in_the_prompt_is_shown_not_raised(tiny_env):
    """A prompt set from code (a notebook, a test) may hold a lone surrogate, which no page can send to the
    browser: it becomes U+FFFD, and the page works."""
    at = apptest.open_page(prompt="hello \ud800 world \udfff", check=False)
    assert not at.exception, at.exception
    assert at.sidebar.text_area(key="sidebar_prompt").value == "hello \ufffd world \ufffd"
    assert at.get("plotly_chart")


def test_one_dropped_token_is_one_token(tiny_env, tmp_path, monkeypatch):
    from core.synthetic import build_checkpoint

    monkeypatch.setenv("GPT2VIZ_MODEL", str(build_checkpoint(tmp_path / "eight", n_positions=8)))
    from core import load_model
    lm = load_model(str(tmp_path / "eight"), device="cpu")
    text = "one two three four five six seven eight nine ten eleven twelve " * 3
    prompt = next(text[:k] for k in range(1, len(text)) if len(lm.encode(text[:k])) == 9)
    at = apptest.open_page(prompt=prompt)
    warning = at.warning[0].value
    assert "1 token was dropped from the end" in warning and "1 tokens" not in warning
    assert "eight reads at most 8" in warning  # the model's name, not its directory


def test_the_model_box_names_the_bundled_model_when_it_stands_in_for_gpt2(monkeypatch, tmp_path):
    """No GPT2VIZ_MODEL and gpt2 out of reach: the page shows the bundled model, and so does the box."""
    import core.model
    from core.synthetic import build_checkpoint

    monkeypatch.setattr(core.model, "BUNDLED_DIR", build_checkpoint(tmp_path / "mini-gpt2-kjv"))
    monkeypatch.delenv("GPT2VIZ_MODEL", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("GPT2VIZ_DEVICE", "cpu")
    at = apptest.open_page()
    box = at.sidebar.selectbox(key="sidebar_model")
    assert "could not be loaded" in " ".join(i.value for i in at.info)
    assert box.value == str(tmp_path / "mini-gpt2-kjv") and "bundled" in box.format_func(box.value)
    assert at.query_params["model"] in ("mini-gpt2-kjv", ["mini-gpt2-kjv"])
    at.run()  # and on the next run, still with its note
    assert "could not be loaded" in " ".join(i.value for i in at.info)
    at = apptest.open_page(query={"model": "/etc"})  # a refused link says what is shown instead
    assert "so this shows **mini\\-gpt2\\-kjv" in at.warning[0].value
