"""The contribution graph against an independent float64 computation of Ferrando & Voita's
shares, from transformers' own attention weights and hidden states and the checkpoint's
weights: every (head, source) part of the state after attention, the MLP's part of the state
after the block, proximity max(0, |y|_1 - |y - c|_1) normalised per state; and the graph's
edges against a plain traversal of those shares."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from core import ByteBoundedCache, trace, trace_ids
from core.contributions import contribution_graph, state_shares

PROMPT = "The cat sat on the mat. The dog sat on the rug. The cat sat on the"


def _ln(x, g, b, eps=1e-5):
    mu = x.mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + eps) * g + b


def _gelu(x):
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))


def _proximity(y, parts):
    return np.maximum(0.0, np.abs(y).sum() - np.abs(y[None] - parts).sum(-1))


def oracle_shares(lm, model_dir, ids, positions=None):
    """layer -> q -> (skip, b_O, mlp, mlp_skip shares, heads [head, q + 1]), float64, for
    `positions` (default: all)."""
    w = {k: v.astype(np.float64) for k, v in load_file(str(model_dir / "model.safetensors")).items()}
    with torch.inference_mode():
        out = lm.model(torch.tensor([list(ids)]), output_attentions=True, output_hidden_states=True)
    hidden = [h[0].double().numpy() for h in out.hidden_states]
    H, d = lm.n_head, lm.d_model
    hs = d // H
    result = {}
    for L in range(lm.n_layer):
        p = f"transformer.h.{L}."
        A = out.attentions[L][0].double().numpy()  # [head, q, k], transformers' own
        x = hidden[L]
        v = (_ln(x, w[p + "ln_1.weight"], w[p + "ln_1.bias"]) @ w[p + "attn.c_attn.weight"][:, 2 * d:]
             + w[p + "attn.c_attn.bias"][2 * d:]).reshape(len(x), H, hs)
        W_O, b_O = w[p + "attn.c_proj.weight"].reshape(H, hs, d), w[p + "attn.c_proj.bias"]
        vo = np.einsum("jhs,hsd->hjd", v, W_O)  # [head, src, d_model]
        result[L] = {}
        for q in range(len(x)) if positions is None else positions:
            parts = A[:, q, : q + 1, None] * vo[:, : q + 1]  # [head, src, d_model]
            mid = x[q] + parts.sum((0, 1)) + b_O
            h2 = _ln(mid, w[p + "ln_2.weight"], w[p + "ln_2.bias"])
            mlp = _gelu(h2 @ w[p + "mlp.c_fc.weight"] + w[p + "mlp.c_fc.bias"]) @ w[p + "mlp.c_proj.weight"] \
                + w[p + "mlp.c_proj.bias"]
            if L + 1 < lm.n_layer:  # the last hidden state is after ln_f
                np.testing.assert_allclose(mid + mlp, hidden[L + 1][q], atol=1e-4)  # the oracle is the model
            e_fixed = _proximity(mid, np.stack([x[q], b_O]))
            e_heads = _proximity(mid, parts.reshape(-1, d)).reshape(H, q + 1)
            total = e_fixed.sum() + e_heads.sum()
            e_mlp = _proximity(mid + mlp, np.stack([mlp, mid]))
            result[L][q] = (np.concatenate([e_fixed / total, e_mlp / e_mlp.sum()]), e_heads / total)
    return result


@pytest.fixture(scope="module")
def t(tiny_lm):
    return trace(tiny_lm, PROMPT, cache=ByteBoundedCache(2**26))


@pytest.fixture(scope="module")
def oracle(tiny_lm, tiny_model_dir, t):
    return oracle_shares(tiny_lm, tiny_model_dir, t.token_ids)


def test_every_share_matches_the_float64_oracle(tiny_lm, t, oracle):
    for L in range(tiny_lm.n_layer):
        got = state_shares(tiny_lm, t, L, range(t.n_tokens))
        for q in range(t.n_tokens):
            stages, heads = oracle[L][q]
            np.testing.assert_allclose(got[q]["stages"], stages, atol=2e-5, err_msg=f"layer {L}, position {q}")
            np.testing.assert_allclose(got[q]["heads"], heads, atol=2e-5, err_msg=f"layer {L}, position {q}")
            assert got[q]["stages"][:2].sum() + got[q]["heads"].sum() == pytest.approx(1, abs=1e-5)


def _oracle_graph(oracle, n_layer, pos, threshold):
    """A plain traversal of the oracle's shares: {(layer, source, target, kind): weight}."""
    edges, frontier = {}, {pos}
    for L in range(n_layer - 1, -1, -1):
        below = set()
        for q in frontier:
            (skip, _, mlp, mlp_skip), heads = oracle[L][q]
            into = {k: w for k, w in (("mlp", mlp), ("mlp_skip", mlp_skip)) if w >= threshold}
            edges.update({(L, q, q, k): w for k, w in into.items()})
            if not into:
                continue
            if skip >= threshold:
                edges[(L, q, q, "skip")] = skip
                below.add(q)
            for j, w in enumerate(heads.sum(0)):
                if w >= threshold:
                    edges[(L, j, q, "attention")] = w
                    below.add(j)
        frontier = below
    return edges


@pytest.mark.parametrize("threshold", [0.002, 0.005, 0.2])  # the tiny model's sources are weak
def test_the_graph_keeps_exactly_the_routes_above_the_threshold(tiny_lm, t, oracle, threshold):
    pos = t.n_tokens - 1
    want = _oracle_graph(oracle, tiny_lm.n_layer, pos, threshold)
    edges = contribution_graph(tiny_lm, t, -1, threshold)
    near = {k for k, w in want.items() if abs(w - threshold) < 1e-4}  # too close to call in float32
    got = {(e.layer, e.source, e.target, e.kind): e.weight for e in edges}
    assert set(got) - near == set(want) - near
    for k in set(got) & set(want):
        assert got[k] == pytest.approx(want[k], abs=2e-5)
    for e in edges:
        if e.kind == "attention":  # the heads named on an edge are its largest parts
            heads = oracle[e.layer][e.target][1][:, e.source]
            assert [h for h, _ in e.heads] == list(np.argsort(-heads)[: len(e.heads)])
    assert any(e.kind == "attention" for e in edges) or threshold > 0.1
    assert all(e.target == pos for e in edges if e.layer == tiny_lm.n_layer - 1)  # it starts at the chosen position


def test_a_long_prompt_graph_matches_the_oracle_where_it_is_checked(tiny_lm, tiny_model_dir):
    """1,024 tokens: the shares of the chosen position's states (the ones the graph starts
    from) equal the oracle's; the graph stays within its node budget."""
    ids = np.random.default_rng(1).integers(0, tiny_lm.d_vocab, 1024).tolist()
    t = trace_ids(tiny_lm, ids, cache=ByteBoundedCache(2**28))
    oracle = oracle_shares(tiny_lm, tiny_model_dir, ids, [0, 511, 1023])
    for L in range(tiny_lm.n_layer):
        for q, got in state_shares(tiny_lm, t, L, [0, 511, 1023]).items():
            np.testing.assert_allclose(got["stages"], oracle[L][q][0], atol=2e-5)
            np.testing.assert_allclose(got["heads"], oracle[L][q][1], atol=2e-5)
    edges = contribution_graph(tiny_lm, t, -1, 0.001, max_nodes=50)
    states = {(e.layer, e.source) for e in edges if e.kind in ("attention", "skip")}
    assert 0 < len(states) <= 50


def test_moving_the_threshold_computes_only_new_states(tiny_lm, tiny_model_dir):
    t = trace(tiny_lm, PROMPT + " and", cache=ByteBoundedCache(2**26))
    contribution_graph(tiny_lm, t, -1, 0.2)
    misses = t.cache.misses
    contribution_graph(tiny_lm, t, -1, 0.2)
    assert t.cache.misses == misses  # the same graph again: nothing computed
    contribution_graph(tiny_lm, t, -1, 0.01)
    lower = t.cache.misses - misses
    contribution_graph(tiny_lm, t, -1, 0.05)
    assert t.cache.misses == misses + lower  # every state of the higher bar was reached before


@pytest.mark.parametrize("dense", [True, False])
@pytest.mark.parametrize("cutoffs", [(0,), (8,), (32,)])
def test_every_way_of_measuring_a_part_agrees_with_the_oracle(tiny_lm, t, oracle, monkeypatch, cutoffs, dense):
    """Cutoff 0: every part that could pass |y| anywhere is measured in full; 32: most parts
    are the linear term plus corrections on 32 coordinates; value vectors formed for every
    position (dense) or read through products with ln_1(x). All are exact."""
    import core.contributions as C

    monkeypatch.setattr(C, "_CUTOFFS", cutoffs)
    monkeypatch.setattr(C, "DENSE_FROM", 10**9 if dense else 0)
    if not dense:  # keep to the projected values even where forming them would be cheaper
        monkeypatch.setattr(C._Values, "densify", lambda self: None)
    got = {}
    for q in range(0, t.n_tokens, 3 if dense else 4):
        got.update(C._compute_states(tiny_lm, t, 1, list(range(q, min(q + 3, t.n_tokens)))))
    for q in got:
        np.testing.assert_allclose(got[q]["heads"], oracle[1][q][1], atol=2e-5)
        np.testing.assert_allclose(got[q]["stages"], oracle[1][q][0], atol=2e-5)


def test_a_stopped_graph_keeps_its_blocks_and_goes_on_to_the_same_graph(tiny_lm, tiny_model_dir):
    """The page's Stop interrupts at on_layer; the blocks already read stay cached, so the next
    run reads only the rest and draws the graph a run that was never stopped draws."""
    t = trace_ids(tiny_lm, list(range(40, 80)), cache=ByteBoundedCache(1 << 30))
    calls: list[int] = []

    class Stop(Exception):
        pass

    def stop_after_first(i: int) -> None:
        calls.append(i)
        if i == 1:
            raise Stop

    with pytest.raises(Stop):
        contribution_graph(tiny_lm, t, -1, 0.0, on_layer=stop_after_first)
    assert calls == [0, 1]
    assert (t.key, "memo", ("contribution_state", tiny_lm.n_layer - 1, t.n_tokens - 1)) in t.cache
    resumed = contribution_graph(tiny_lm, t, -1, 0.0, on_layer=calls.append)
    assert calls == [0, 1, *range(tiny_lm.n_layer)]
    fresh = trace_ids(tiny_lm, list(range(40, 80)), cache=ByteBoundedCache(1 << 30))
    assert resumed == contribution_graph(tiny_lm, fresh, -1, 0.0)
