"""The contribution graph in Meta's LLM Transparency Tool's convention (core.contributions.LLMTT)
against a float64 transcription of LLM-TT's own code, written here from the checkpoint's raw
weights (numpy, nothing from core): TransformerLens' from_pretrained as LLM-TT calls it (value
biases folded into b_O, layer norms kept), the prompt read with <|endoftext|> in front,
routes/contributions.py's get_contributions (|y|_1 - |y - c + 1e-6|_1 floored at 1e-5, every
(key_pos, head) part and the residual one-off, normalised), apply_threshold_and_renormalize,
and routes/graph.py's graph (the residual and the attention from the token itself summed into
one edge) and its paths to the prediction (edges above the bar, reached from the output).

Checked on the tiny random GPT-2 (conftest), on one with random attention biases (where b_O
and b_V matter most) and on the bundled trained model; and the two conventions are compared."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from core import ByteBoundedCache, load_model, trace
from core.contributions import EVERY_PART, LLMTT, contribution_graph, graph_trace, state_shares
from core.model import bundled_model_dir

PROMPT = "The cat sat on the mat. The dog sat on the rug. The cat sat on the"
BUNDLED_PROMPT = "And God said, Let there be light: and there was light. And God saw the light, that it was"


def _ln(x, g, b, eps=1e-5):
    mu = x.mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + eps) * g + b


def _gelu(x):
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))


def _forward64(model_dir, ids, n_layer, n_head):
    """GPT-2 in float64 from model.safetensors, as LLM-TT's TransformerLens model holds it:
    per layer the residual before, A [head, q, k], the decomposed attention [q, k, head, d_model]
    with v = ln_1(x) W_V (b_V folded into b_O), the residual after attention, the MLP's output."""
    w = {k.removeprefix("transformer."): v.astype(np.float64)
         for k, v in load_file(str(model_dir) + "/model.safetensors").items()}
    n = len(ids)
    x = w["wte.weight"][ids] + w["wpe.weight"][:n]
    d = x.shape[1]
    hs = d // n_head
    layers = []
    for L in range(n_layer):
        p = f"h.{L}."
        W, b = w[p + "attn.c_attn.weight"], w[p + "attn.c_attn.bias"]
        W_O, b_O = w[p + "attn.c_proj.weight"].reshape(n_head, hs, d), w[p + "attn.c_proj.bias"]
        b_V = b[2 * d:].reshape(n_head, hs)
        b_O_folded = b_O + np.einsum("hs,hsd->d", b_V, W_O)  # TransformerLens' fold_value_biases
        h1 = _ln(x, w[p + "ln_1.weight"], w[p + "ln_1.bias"])
        q, k = (h1 @ W[:, i * d:(i + 1) * d] + b[i * d:(i + 1) * d] for i in (0, 1))
        q, k = q.reshape(n, n_head, hs), k.reshape(n, n_head, hs)
        v = (h1 @ W[:, 2 * d:]).reshape(n, n_head, hs)  # b_V folded away
        scores = np.einsum("qhs,khs->hqk", q, k) / np.sqrt(hs)
        scores = np.where(np.tril(np.ones((n, n), bool)), scores, -np.inf)
        A = np.exp(scores - scores.max(-1, keepdims=True))
        A /= A.sum(-1, keepdims=True)
        decomposed = np.einsum("hqk,khs,hsd->qkhd", A, v, W_O)
        mid = x + decomposed.sum((1, 2)) + b_O_folded
        h2 = _ln(mid, w[p + "ln_2.weight"], w[p + "ln_2.bias"])
        mlp_out = _gelu(h2 @ w[p + "mlp.c_fc.weight"] + w[p + "mlp.c_fc.bias"]) @ w[p + "mlp.c_proj.weight"] \
            + w[p + "mlp.c_proj.bias"]
        layers.append(dict(pre=x, decomposed=decomposed, mid=mid, mlp=mlp_out, post=mid + mlp_out))
        x = mid + mlp_out
    return layers


def get_contributions(parts, whole):
    """routes/contributions.py: parts [part, d_model], whole [d_model] -> [part], summing to 1
    (torch's pairwise_distance is |x1 - x2 + 1e-6|_p)."""
    distance = np.abs(parts - whole + 1e-6).sum(-1)
    return (c := np.clip(np.abs(whole).sum() - distance, 1e-5, None)) / c.sum()


def llmtt_contributions(layers):
    """layer -> (c_attn [q, key_pos, head], c_resid_attn [q], c_ffn [q], c_resid_ffn [q])."""
    out = []
    for s in layers:
        n, _, H, d = s["decomposed"].shape
        c_attn, c_res, c_ffn, c_res_ffn = np.zeros((n, n, H)), np.zeros(n), np.zeros(n), np.zeros(n)
        for q in range(n):
            c = get_contributions(np.concatenate([s["decomposed"][q].reshape(n * H, d), s["pre"][q][None]]),
                                  s["mid"][q])  # the (key_pos, head) parts, then the residual one-off
            c_attn[q], c_res[q] = c[:-1].reshape(n, H), c[-1]
            c_ffn[q], c_res_ffn[q] = get_contributions(np.stack([s["mlp"][q], s["mid"][q]]), s["post"][q])
        out.append((c_attn, c_res, c_ffn, c_res_ffn))
    return out


def _renorm(threshold, blocks, residual):
    """apply_threshold_and_renormalize for one representation."""
    blocks, residual = blocks * (blocks > threshold), residual * (residual > threshold)
    denom = residual + blocks.sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        return blocks / denom, residual / denom


def llmtt_paths(contribs, pos, threshold, renormalise=True):
    """routes/graph.py's build_full_graph (renormalising at `threshold` when asked) and
    build_paths_to_predictions from I{last}_{pos} (edges above 0, or above `threshold`):
    {(u, v): weight}."""
    n_layer, n = len(contribs), len(contribs[0][1])
    graph: dict = {}

    def add(u, v, w):
        graph[(u, v)] = graph.get((u, v), 0.0) + w

    for L, (c_attn, c_res, c_ffn, c_res_ffn) in enumerate(contribs):
        src = (lambda t: f"I{L - 1}_{t}") if L > 0 else (lambda t: f"X0_{t}")
        for q in range(n):
            a, r = _renorm(threshold, c_attn[q], c_res[q]) if renormalise else (c_attn[q], c_res[q])
            for j in range(n):
                add(src(j), f"A{L}_{q}", a[j].sum())
            add(src(q), f"A{L}_{q}", r)
            f, rf = _renorm(threshold, np.array(c_ffn[q]), c_res_ffn[q]) if renormalise else (c_ffn[q], c_res_ffn[q])
            add(f"A{L}_{q}", f"M{L}_{q}", float(f))
            add(f"M{L}_{q}", f"I{L}_{q}", float(f))
            add(f"A{L}_{q}", f"I{L}_{q}", float(rf))
    bar = 0.0 if renormalise else threshold
    into: dict = {}
    for (u, v), w in graph.items():
        if w > bar:  # NaN (nothing left after the threshold) is not
            into.setdefault(v, []).append(u)
    kept, todo, seen = {}, [f"I{n_layer - 1}_{pos}"], set()
    while todo:
        v = todo.pop()
        if v in seen:
            continue
        seen.add(v)
        for u in into.get(v, []):
            kept[(u, v)] = graph[(u, v)]
            todo.append(u)
    return kept


def as_llmtt_edges(edges):
    """core's edges as LLM-TT's node pairs, the residual and the attention from a token itself summed."""
    out: dict = {}
    for e in edges:
        src = f"I{e.layer - 1}_{e.source}" if e.layer > 0 else f"X0_{e.source}"
        A, M, I_ = f"A{e.layer}_{e.target}", f"M{e.layer}_{e.target}", f"I{e.layer}_{e.target}"
        pairs = {"attention": [(src, A)], "skip": [(src, A)], "mlp": [(A, M), (M, I_)], "mlp_skip": [(A, I_)]}
        for pair in pairs[e.kind]:
            out[pair] = out.get(pair, 0.0) + e.weight
    return out


def _biased_dir(tmp_path_factory):
    """The tiny checkpoint with random attention and MLP biases (GPT2Config's are 0)."""
    from transformers import GPT2LMHeadModel

    from core.synthetic import build_checkpoint

    d = build_checkpoint(tmp_path_factory.mktemp("tiny-biased"), seed=3)
    model = GPT2LMHeadModel.from_pretrained(d)
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("attn.c_attn.bias", "attn.c_proj.bias", "mlp.c_fc.bias", "mlp.c_proj.bias")):
                p.copy_(0.5 * torch.randn(p.shape, generator=gen))
    model.save_pretrained(d)
    return d


@pytest.fixture(scope="module", params=["tiny", "biased", "bundled"])
def case(request, tiny_lm, tiny_model_dir, tmp_path_factory):
    """(lm, model_dir, trace, LLM-TT's contributions on <|endoftext|> + the prompt)."""
    if request.param == "tiny":
        lm, d, prompt = tiny_lm, tiny_model_dir, PROMPT
    elif request.param == "biased":
        d = _biased_dir(tmp_path_factory)
        lm, prompt = load_model(str(d), device="cpu"), PROMPT
    else:
        d = bundled_model_dir()
        assert d is not None, "bundled/mini-gpt2-kjv is missing"
        lm, prompt = load_model(d, device="cpu"), BUNDLED_PROMPT
    t = trace(lm, prompt, cache=ByteBoundedCache(2**27))
    ids = [lm.tokenizer.bos_token_id] + t.token_ids.tolist()
    layers = _forward64(d, ids, lm.n_layer, lm.n_head)
    with torch.inference_mode():  # the oracle is the model: transformers' own residuals (the last is after ln_f)
        hidden = lm.model(torch.tensor([ids]), output_hidden_states=True).hidden_states
    for L in range(lm.n_layer):
        np.testing.assert_allclose(layers[L]["pre"], hidden[L][0].double().numpy(), atol=1e-3, rtol=1e-4)
    return request.param, lm, t, llmtt_contributions(layers)


def test_llmtt_shares_match_the_float64_transcription(case):
    name, lm, t, contribs = case
    g = graph_trace(lm, t, LLMTT)
    assert g.n_tokens == t.n_tokens + 1 and g.token_ids[0] == lm.tokenizer.bos_token_id
    assert g.token_ids[1:].tolist() == t.token_ids.tolist()
    for L in range(lm.n_layer):
        c_attn, c_res, c_ffn, c_res_ffn = contribs[L]
        got = state_shares(lm, g, L, range(g.n_tokens), LLMTT)
        for q in range(g.n_tokens):
            skip, b_O, mlp, mlp_skip = got[q]["stages"]
            msg = f"{name}, layer {L}, position {q}"
            assert b_O == 0, msg  # LLM-TT: b_O in no part, not in the denominator
            np.testing.assert_allclose(got[q]["heads"], c_attn[q, : q + 1].T, atol=2e-5, err_msg=msg)
            np.testing.assert_allclose([skip, mlp, mlp_skip], [c_res[q], c_ffn[q], c_res_ffn[q]], atol=2e-5,
                                       err_msg=msg)


@pytest.mark.parametrize("threshold", [0.01, 0.04, 0.1])
@pytest.mark.parametrize("renormalise", [True, False])
def test_llmtt_graph_is_llmtt_paths_to_the_prediction(case, threshold, renormalise):
    name, lm, t, contribs = case
    for pos in (t.n_tokens - 1, t.n_tokens // 2):
        want = llmtt_paths(contribs, pos + 1, threshold, renormalise)  # +1: <|endoftext|> is position 0
        edges = contribution_graph(lm, t, pos, threshold, max_nodes=10**6, convention=LLMTT, renormalise=renormalise)
        got = as_llmtt_edges(edges)
        assert set(got) == set(want), f"{name}, position {pos}"
        for k in want:
            assert got[k] == pytest.approx(want[k], abs=1e-4), (name, pos, k)


def test_the_default_convention_is_unchanged_and_differs_where_said(case):
    """EVERY_PART reads the prompt as traced (no <|endoftext|>), counts b_O as a part and keeps
    >= the threshold: its graph is not LLM-TT's on the model with biases."""
    name, lm, t, _ = case
    assert graph_trace(lm, t) is t
    every = state_shares(lm, t, 0, [t.n_tokens - 1])[t.n_tokens - 1]
    assert every["stages"][:2].sum() + every["heads"].sum() == pytest.approx(1, abs=1e-5)
    if name == "biased":
        assert every["stages"][1] > 0.01  # b_O's own share
    e1 = contribution_graph(lm, t, -1, 0.04)
    assert all(e.weight >= 0.04 for e in e1)
    assert e1 == contribution_graph(lm, t, -1, 0.04, convention=EVERY_PART)


def test_a_full_context_gets_no_bos_and_the_graph_still_draws(tiny_lm):
    ids = np.random.default_rng(0).integers(0, tiny_lm.d_vocab, tiny_lm.n_ctx).tolist()
    from core import trace_ids

    t = trace_ids(tiny_lm, ids, cache=ByteBoundedCache(2**28))
    assert graph_trace(tiny_lm, t, LLMTT) is t
    edges = contribution_graph(tiny_lm, t, -1, 0.05, max_nodes=20, convention=LLMTT)
    assert edges and all(0 <= e.source <= e.target < t.n_tokens for e in edges)


def test_the_page_draws_either_convention_and_says_which(tiny_env, tiny_lm):
    """The Convention control is in the link; LLM-TT's graph is drawn over <|endoftext|> + the
    prompt (x ticks one further on) with its edges, and each caption names its rule."""
    import re

    from tests import apptest
    from tests.apptest import show_view
    from tests.plotly_json import chart_specs

    page = "pages/5_Prediction.py"
    at = show_view(apptest.open_page(page, PROMPT, {}), page, "Contribution graph")
    assert not at.exception
    assert any("at least the threshold" in c.value for c in at.caption)
    at.session_state["pred_graph_convention"] = LLMTT
    at.run()
    assert not at.exception
    [graph] = chart_specs(at)
    t = trace(tiny_lm, PROMPT)
    edges = contribution_graph(tiny_lm, t, -1, 0.04, convention=LLMTT)
    hovers = [h for d in graph["data"] if d.get("hovertemplate") == "%{text}<extra></extra>" for h in d["text"]]
    assert len(hovers) == len(edges) > 0
    assert max(int(m) for h in hovers for m in re.findall(r"#(\d+)", h)) == t.n_tokens  # <|endoftext|> is #0
    assert any("five places" in c.value and "<|endoftext|>" in c.value for c in at.caption)
    assert "LLM-TT" in graph["layout"]["title"]["text"]
