"""The Features page as a person reaches it, tiny model and random SAEs saved in sae-lens's format
(built in fixtures with sae-lens's own classes): every view draws in English and Chinese, the
heatmap's numbers equal numpy from the SAE's saved weights on transformers' own residual, bad SAEs
get a message, long work starts on a click, and every control survives a copied link."""
from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file
from streamlit.testing.v1 import AppTest

from tests import apptest
from tests.plotly_json import chart_specs, decode, figure

PAGE = "pages/8_Features.py"
PROMPT = "The cat sat on the mat. The cat sat on the"
VIEWS = ["Features per token", "Feature card", "Fidelity", "Which features make the prediction"]
CJK = re.compile(r"[\u3400-\u9fff]")


def build_sae(out: Path, kind: str = "standard", hook: str = "blocks.1.hook_resid_pre", d_in: int = 64,
              d_sae: int = 96, seed: int = 0) -> Path:
    """A random SAE saved by sae-lens itself (its on-disk format: cfg.json, sae_weights.safetensors)."""
    from sae_lens import StandardSAE, StandardSAEConfig, TopKSAE, TopKSAEConfig

    if kind == "topk":
        sae = TopKSAE(_config(TopKSAEConfig(d_in=d_in, d_sae=d_sae, k=8), hook))
    else:
        sae = StandardSAE(_config(StandardSAEConfig(d_in=d_in, d_sae=d_sae), hook))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sae.named_parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * (0.05 if name == "b_dec" else 0.3))
    sae.save_model(out)
    return out


def _config(cfg, hook: str):
    cfg.metadata.hook_name = hook
    return cfg


@pytest.fixture(scope="module")
def saes(tmp_path_factory):
    root = tmp_path_factory.mktemp("saes")
    return {"standard": build_sae(root / "standard"), "topk": build_sae(root / "topk", "topk", seed=1),
            "wide": build_sae(root / "wide", d_in=32), "broken": _broken(root / "broken")}


def _broken(path: Path) -> Path:
    path.mkdir()
    (path / "cfg.json").write_text('{"d_in": 64, "d_sae": ')  # half-written
    (path / "sae_weights.safetensors").write_bytes(b"\0" * 10)
    return path


@pytest.fixture(autouse=True)
def disk_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GPT2VIZ_CACHE_DIR", str(tmp_path / "cache"))


def open_page(sae: Path, query: dict | None = None, **state) -> AppTest:
    state = {"feat_sae_source": "local", "feat_sae_path": str(sae), **state} if query is None else state
    return apptest.open_page(PAGE, PROMPT if query is None else None, state, query=query)


def show(at: AppTest, view: str) -> AppTest:
    at.session_state["feat_view"] = view
    at.run()
    assert not at.exception, at.exception
    return at


def numpy_features(sae: Path, x: np.ndarray) -> np.ndarray:
    """ReLU((x - b_dec) W_enc + b_enc) in float64, from the saved file and config alone."""
    cfg = json.loads((sae / "cfg.json").read_text())
    w = {k: v.astype(np.float64) for k, v in load_file(str(sae / "sae_weights.safetensors")).items()}
    assert cfg["architecture"] == "standard" and cfg["normalize_activations"] == "none"
    x = x.astype(np.float64) - (w["b_dec"] if cfg["apply_b_dec_to_input"] else 0)
    return np.maximum(x @ w["W_enc"] + w["b_enc"], 0)


@pytest.fixture(scope="module")
def resid_pre_1(tiny_model_dir) -> np.ndarray:
    """[pos, d_model]: the residual stream before block 1, by transformers' own forward."""
    from transformers import AutoTokenizer, GPT2LMHeadModel

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = GPT2LMHeadModel.from_pretrained(tiny_model_dir).eval()
    with torch.no_grad():
        out = model(torch.tensor([tok(PROMPT)["input_ids"]]), output_hidden_states=True)
    return out.hidden_states[1][0].numpy()


def test_the_heatmap_and_the_bars_are_numpy_from_the_saved_weights(tiny_env, saes, resid_pre_1):
    at = open_page(saes["standard"], feat_pos=4)
    heat, bars = figure(at, "The 20 strongest features ("), figure(at, "Features active on")
    want = numpy_features(saes["standard"], resid_pre_1)  # [pos, d_sae]
    rows = [int(y.lstrip("#")) for y in heat["data"][0]["y"]]
    z = decode(heat["data"][0]["z"])
    np.testing.assert_allclose(z, want[:, rows].T, rtol=1e-4, atol=1e-5 * want.max())
    np.testing.assert_array_equal(sorted(rows), sorted(np.argsort(-want[1:].max(0))[:20]))  # strongest past token 0
    assert heat["data"][0]["zmax"] < z.max() or (z == z.max()).sum() > 1  # no single cell sets the colours
    active = np.flatnonzero(want[4] > 0)
    top = active[np.argsort(-want[4, active])][:20]
    assert [int(y.lstrip("#")) for y in bars["data"][0]["y"]] == top.tolist()
    np.testing.assert_allclose(decode(bars["data"][0]["x"]), want[4, top], rtol=1e-4)
    assert "L0" not in bars["layout"]["title"]["text"] and "position 4" in bars["layout"]["title"]["text"]


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_every_view_draws_in_both_languages(tiny_env, saes, lang):
    from i18n import _, use_language
    from recipes import features as recipe

    at = open_page(saes["topk"], lang=lang)
    for view in VIEWS:
        show(at, view)
        assert chart_specs(at), view
        assert not at.error, [e.value for e in at.error]
        exported = at.session_state["_page_exports"]  # the page's ZIP holds what is on screen
        assert (len(exported["figures"]), len(exported["tables"])) == (len(chart_specs(at)), len(at.dataframe)), view
        with use_language(lang):  # the page's words are the catalog's, in the page's language
            assert at.title[0].value == _("Features")
            assert any(c.value.startswith(_(recipe.INTROS[view])) for c in at.caption), view
    assert any("k = 8" in c.value for c in at.caption)  # the TopK SAE is described as one
    if lang == "zh":
        assert CJK.search(" ".join(c.value for c in [*at.sidebar.caption, *at.caption]))


def test_long_work_starts_on_a_click_and_adds_up(tiny_env, saes, tiny_lm):
    from core import trace
    from core.features import feature_attribution, removal_effects
    from core.sae import load_sae

    at = show(open_page(saes["standard"]), "Which features make the prediction")
    logit, linearised, parts, _error = (float(m.value) for m in at.metric)
    assert parts == pytest.approx(linearised, abs=2e-3)
    t = trace(tiny_lm, PROMPT)
    sae = load_sae(str(saes["standard"]))
    a = feature_attribution(tiny_lm, t, sae, int(t.top_ids[-1, 0]))
    assert logit == pytest.approx(a.logit, abs=1e-3)
    bars = figure(at, "Which features push")["data"][0]
    assert [int(y.lstrip("#")) for y in bars["y"]] == a.features[:20].tolist()
    np.testing.assert_allclose(decode(bars["x"]), a.effect[:20], rtol=1e-4, atol=1e-6)
    assert not [f for f in chart_specs(at) if f["layout"]["title"]["text"].startswith("Each feature's effect")]
    at.button(key="feat_removal_compute").click().run()
    assert not at.exception
    exported = at.session_state["_page_exports"]
    assert (len(exported["figures"]), len(exported["tables"])) == (len(chart_specs(at)), len(at.dataframe)) == (2, 1)
    exact = decode(figure(at, "Each feature's effect")["data"][1]["x"])
    change = removal_effects(tiny_lm, t, sae, int(t.top_ids[-1, 0]), a.features[:10], -1)
    np.testing.assert_allclose(exact, -change, rtol=1e-4, atol=1e-5)

    at = show(at, "Feature card")
    assert not [f for f in chart_specs(at) if "strongest contexts" in f["layout"]["title"]["text"]]
    at.button(key="feat_contexts_compute").click().run()
    assert not at.exception
    contexts = figure(at, f"Feature #{at.session_state['feat_feature']}'s strongest contexts")
    values = decode(contexts["data"][0]["x"])
    assert len(values) and np.all(np.diff(values) <= 0)
    assert all("<" not in a["text"].replace("<b>", "").replace("</b>", "").replace("<span", "").replace("</span>", "")
               for a in contexts["layout"]["annotations"])
    hist = figure(at, f"Feature #{at.session_state['feat_feature']}'s activations")
    assert decode(hist["data"][0]["y"]).sum() > 0


def test_bad_saes_get_a_message_and_nothing_breaks(tiny_env, saes):
    for which, words in (("broken", "could not be read"), ("wide", "Load an SAE trained on this model")):
        at = open_page(saes[which])
        assert not at.exception
        assert words in at.error[0].value, at.error[0].value
        assert str(saes[which].parent) not in at.error[0].value  # no server path
        assert not chart_specs(at)
    at = open_page(saes["standard"], feat_sae_path="/no/such/sae")
    assert not at.exception and "No SAE directory" in at.error[0].value


def test_a_locked_server_takes_no_typed_directory(tiny_env, saes, monkeypatch):
    monkeypatch.setenv("GPT2VIZ_LOCKED", "1")
    monkeypatch.setenv("GPT2VIZ_ALLOWED_MODELS", str(tiny_env))
    at = open_page(saes["standard"])
    assert not at.exception and not chart_specs(at)
    assert not [w for w in at.text_input if w.key == "feat_sae_path"]
    assert "loads no SAE from a directory" in at.info[0].value


CASES = {
    "Features per token": {"feat_pos": 3, "feat_top_k": 12, "feat_skip_first": False},
    "Feature card": {"feat_feature": 7, "feat_corpus": "pasted"},
    "Fidelity": {},
    "Which features make the prediction": {"feat_attr_pos": 4, "feat_token": " the", "feat_minus": "e"},
}


@pytest.mark.parametrize("view", [v for v in VIEWS if CASES[v]])
def test_every_control_survives_a_copied_link(tiny_env, saes, view):
    values = {"feat_sae_source": "local", "feat_sae_path": str(saes["topk"]), **CASES[view]}
    at = open_page(saes["topk"], feat_view=view, **values)
    shown = {w.key: w.value for kind in ("selectbox", "radio", "slider", "number_input", "checkbox", "text_input")
             for w in getattr(at, kind) if w.key and w.key.startswith("feat_") and w.key != "feat_card_pick"}
    assert set(shown) == set(values), sorted(set(shown) ^ set(values))
    link = {k: (v[0] if isinstance(v, list) else v) for k, v in at.query_params.items()}
    fresh = open_page(saes["topk"], query=link)
    for key, value in values.items():
        assert fresh.session_state[key] == value, key
    assert fresh.session_state["feat_view"] == view


@pytest.mark.parametrize("view, key", [("Features per token", "feat_pos"),
                                       ("Which features make the prediction", "feat_attr_pos")])
def test_a_new_prompt_moves_the_position_to_its_last_token(tiny_env, tiny_lm, saes, view, key):
    """The app's one position rule (issue 25, item 2): a position the link or a click chose stays while the
    prompt does; once the person types another prompt, it moves to the new last token, in the link too."""
    at = open_page(saes["standard"], feat_view=view, **{key: 2})
    assert at.selectbox(key=key).value == 2
    at.run()  # another run on the same prompt keeps it
    assert at.selectbox(key=key).value == 2
    new = "One more sentence, a good deal longer than the first one was"
    last = len(tiny_lm.encode(new)) - 1
    assert last > 2 and last != len(tiny_lm.encode(PROMPT)) - 1
    at.sidebar.text_area(key="sidebar_prompt").input(new).run()
    assert not at.exception, at.exception
    assert at.selectbox(key=key).value == last and at.query_params[key] in (str(last), [str(last)])
    shown = " ".join([spec["layout"]["title"]["text"] for spec in chart_specs(at)]
                     + [m.value for m in [*at.markdown, *at.caption]])
    assert {"feat_pos": f"(position {last})", "feat_attr_pos": f"positions up to {last}."}[key] in shown


def test_clicking_a_cell_picks_its_token_and_feature(tiny_env, saes):
    at = open_page(saes["standard"])
    features = [int(y.lstrip("#")) for y in figure(at, "The 20")["data"][0]["y"]]
    at.selectbox(key="feat_card_pick").set_value(features[2]).run()
    at.button(key="feat_open_card").click().run()
    assert not at.exception and at.session_state["feat_view"] == "Feature card"
    assert figure(at, f"Feature #{features[2]} across the prompt")


def test_neuronpedia_is_asked_only_on_a_click_and_kept(monkeypatch, tmp_path):
    import urllib.error
    import urllib.request

    from recipes import features as recipe

    sae = SimpleNamespace(neuronpedia="gpt2-small/6-res-jb")
    assert recipe.neuronpedia_url(sae, 12) == "https://www.neuronpedia.org/gpt2-small/6-res-jb/12"
    assert recipe.neuronpedia_cached(sae, 12) is None

    def offline(*a, **k):
        raise urllib.error.URLError("no network")
    monkeypatch.setattr(urllib.request, "urlopen", offline)
    assert "Could not reach Neuronpedia" in recipe.fetch_neuronpedia(sae, 12).items[0].text
    assert recipe.neuronpedia_cached(sae, 12) is None  # a failure is not kept

    class Reply:
        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False

        def read(self, n):
            return json.dumps({"explanations": [{"description": "verses about *water* <b>"}]}).encode()
    asked = []
    monkeypatch.setattr(urllib.request, "urlopen", lambda req, timeout: asked.append(req.full_url) or Reply())
    text = recipe.fetch_neuronpedia(sae, 12).items[0].text
    assert asked == ["https://www.neuronpedia.org/api/feature/gpt2-small/6-res-jb/12"]
    assert "\\*water\\*" in text and "\\<b\\>" in text  # shown as written, never as Markdown or HTML
    assert recipe.neuronpedia_cached(sae, 12).items[0].text == text


def test_public_saes_are_offered_for_gpt2_small_and_no_network_is_a_message(tiny_env, saes, monkeypatch):
    from recipes import features as recipe

    small, tiny = SimpleNamespace(n_layer=12, d_model=768), SimpleNamespace(n_layer=6, d_model=768)
    assert "gpt2-small-res-jb" in recipe.releases(small) and not recipe.releases(tiny)  # distilgpt2's shape: none
    assert "gpt2-small-hook-z-kk" not in recipe.releases(small)  # attention z's: not read by the app
    assert recipe.release_ids("gpt2-small-res-jb")[6] == "blocks.6.hook_resid_pre"
    monkeypatch.setattr(recipe, "releases", lambda lm: ["gpt2-small-res-jb"])  # as for GPT-2 small
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    at = apptest.open_page(PAGE, PROMPT)
    assert at.session_state["feat_sae_source"] == "release" and at.session_state["feat_sae_id"] == recipe.DEFAULT_SAE_ID
    assert not at.exception and "Downloading the SAE" in at.error[0].value
    assert "/" not in at.error[0].value.split("failed")[1].split(")")[0]  # the error's kind, no path
    at.button(key="feat_sae_retry").click().run()
    assert not at.exception and "Downloading the SAE" in at.error[0].value


def test_the_bundled_model_opens_on_its_shipped_saes(tiny_env, saes, monkeypatch, tmp_path):
    """The bundled model's SAEs (bundled/mini-gpt2-kjv-saes/<hook>/) are its default, with a note that the
    features are the bundled model's (here the tiny model stands in for it)."""
    import shutil

    from i18n import _
    from recipes import features as recipe

    for hook, sae in (("blocks.1.hook_resid_pre", "standard"), ("blocks.0.hook_resid_pre", "topk")):
        shutil.copytree(saes[sae], tmp_path / "shipped" / hook)
    monkeypatch.setattr(recipe, "BUNDLED_DIR", tiny_env)
    monkeypatch.setattr(recipe, "BUNDLED_SAES", tmp_path / "shipped")
    assert recipe.bundled_saes() == ["blocks.0.hook_resid_pre", "blocks.1.hook_resid_pre"]
    at = apptest.open_page(PAGE, PROMPT)
    assert at.session_state["feat_sae_source"] == "bundled"
    assert at.session_state["feat_sae_hook"] == "blocks.1.hook_resid_pre"
    assert [o for o in at.radio(key="feat_sae_source").options] == [_(recipe.SOURCES[s]) for s in ("bundled", "local")]
    assert any(_(recipe.BUNDLED_NOTE) in c.value for c in at.caption)
    assert figure(at, "The 20 strongest features (residual stream before block 1)")
