"""core.arch, the one block: its weight views are the checkpoint's own tensors (no copies), each
config option GPT-2 checkpoints use is respected (held to transformers' own forward), an Edit
equals the same change made with a hook on transformers' model, and no other module reaches
into the checkpoint's blocks."""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from core import load_model, trace
from core.arch import Arch, Edit, block, run_blocks
from core.synthetic import build_checkpoint
from tests.conftest import ROOT

PROMPT = "The cat sat on the mat. The dog ate the bone. hello hello bye"


def _storage(t: torch.Tensor) -> int:
    return t.untyped_storage().data_ptr()


def test_every_weight_view_is_the_checkpoints_own_tensor(tiny_lm):
    """Views, not copies: each view lies in a parameter's storage, and reading them all adds no memory."""
    params = {_storage(p): name for name, p in tiny_lm.model.named_parameters()}
    arch = tiny_lm.arch
    H, d, hs, d_mlp = tiny_lm.n_head, tiny_lm.d_model, tiny_lm.d_head, tiny_lm.d_mlp
    shapes = {"W_Q": (H, d, hs), "W_K": (H, d, hs), "W_V": (H, d, hs), "b_Q": (H, hs), "b_K": (H, hs), "b_V": (H, hs),
              "W_O": (H, hs, d), "b_O": (d,), "W_in": (d, d_mlp), "b_in": (d_mlp,), "W_out": (d_mlp, d),
              "b_out": (d,)}
    for w in arch.blocks:
        for name, shape in shapes.items():
            view = getattr(w, name)
            assert view.shape == shape, name
            assert _storage(view) in params, f"block {w.layer}'s {name} is a copy"
        for ln in (w.ln1, w.ln2):
            assert _storage(ln.w) in params and _storage(ln.b) in params
    assert arch.W_U.shape == (d, tiny_lm.d_vocab) and _storage(arch.W_U) == _storage(tiny_lm.model.lm_head.weight)
    assert _storage(arch.W_E) in params and _storage(arch.W_pos) in params and _storage(arch.ln_f.w) in params


def test_per_head_views_are_the_checkpoints_columns_and_rows(tiny_lm, tiny_model_dir):
    """Head h of W_Q is columns h*d_head:(h+1)*d_head of c_attn's first third (Conv1D stores [in, out]);
    head h of W_O is rows h*d_head:(h+1)*d_head of c_proj. Read from the saved file, in numpy."""
    from safetensors.numpy import load_file

    raw = load_file(str(tiny_model_dir / "model.safetensors"))
    d, hs = tiny_lm.d_model, tiny_lm.d_head
    for L, w in enumerate(tiny_lm.arch.blocks):
        c_attn, c_attn_b = raw[f"transformer.h.{L}.attn.c_attn.weight"], raw[f"transformer.h.{L}.attn.c_attn.bias"]
        for part, (W, b) in enumerate([(w.W_Q, w.b_Q), (w.W_K, w.b_K), (w.W_V, w.b_V)]):
            for h in range(tiny_lm.n_head):
                cols = slice(part * d + h * hs, part * d + (h + 1) * hs)
                np.testing.assert_array_equal(W[h].numpy(), c_attn[:, cols])
                np.testing.assert_array_equal(b[h].numpy(), c_attn_b[cols])
        for h in range(tiny_lm.n_head):
            np.testing.assert_array_equal(w.W_O[h].numpy(),
                                          raw[f"transformer.h.{L}.attn.c_proj.weight"][h * hs:(h + 1) * hs])


def test_loaded_model_knows_its_widths(tiny_lm):
    assert tiny_lm.d_head == tiny_lm.d_model // tiny_lm.n_head
    assert tiny_lm.d_mlp == tiny_lm.model.transformer.h[0].mlp.c_fc.weight.shape[1]


# Each option GPT-2-family configs carry, changed from GPT-2's default; transformers' eager forward is the oracle.
OPTIONS = {
    "no score scaling": dict(scale_attn_weights=False),
    "scale by inverse layer": dict(scale_attn_by_inverse_layer_idx=True),
    "reorder and upcast": dict(reorder_and_upcast_attn=True),
    "exact gelu": dict(activation_function="gelu"),
    "relu": dict(activation_function="relu"),
    "gelu_pytorch_tanh": dict(activation_function="gelu_pytorch_tanh"),
    "n_inner": dict(n_inner=96),
}


@pytest.fixture(scope="module", params=list(OPTIONS), ids=list(OPTIONS))
def optioned(request, tmp_path_factory):
    path = build_checkpoint(tmp_path_factory.mktemp("opt"), n_layer=3, seed=1, **OPTIONS[request.param])
    return load_model(str(path), device="cpu")


def test_each_config_option_matches_transformers(optioned):
    lm = optioned
    t = trace(lm, PROMPT)
    ids = torch.tensor([t.token_ids.tolist()])
    with torch.inference_mode():
        out = lm.model(ids, output_hidden_states=True, output_attentions=True)
    acts = []  # transformers' own MLP activations, captured from its activation module
    hooks = [blk.mlp.act.register_forward_hook(lambda m, i, o: acts.append(o[0].clone()))
             for blk in lm.model.transformer.h]
    try:
        with torch.inference_mode():
            lm.model(ids)
    finally:
        for h in hooks:
            h.remove()
    for L in range(lm.n_layer):
        np.testing.assert_allclose(t.layer_act(L, "mlp_post"), acts[L].numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(t.next_logits, out.logits[0, -1].numpy(), rtol=1e-4, atol=1e-4)
    for L in range(lm.n_layer):
        np.testing.assert_allclose(t.resid[L], out.hidden_states[L][0].numpy(), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(t.pattern(L), out.attentions[L][0].numpy(), rtol=1e-5, atol=1e-6)
    assert t.layer_act(0, "mlp_post").shape[1] == lm.d_mlp == (lm.config.n_inner or 4 * lm.d_model)


def test_the_options_change_the_outputs(tmp_path):
    """So the test above can fail: each option, read wrongly (ignored), gives other numbers."""
    plain = load_model(str(build_checkpoint(tmp_path / "plain", n_layer=3, seed=1)), device="cpu")
    base = trace(plain, PROMPT)
    for name, option in OPTIONS.items():
        if name in ("reorder and upcast", "n_inner"):  # float32 gives the same numbers; n_inner changes the shapes
            continue
        lm = load_model(str(build_checkpoint(tmp_path / name.replace(" ", "_"), n_layer=3, seed=1, **option)),
                        device="cpu")
        t = trace(lm, PROMPT)
        changed = max(np.abs(t.layer_act(L, "mlp_post") - base.layer_act(L, "mlp_post")).max() for L in range(3))
        if name == "gelu_pytorch_tanh":  # GPT-2's gelu_new by another name: the same function
            assert changed < 1e-6, name
        else:
            assert changed > 2e-5, name  # well above the 1e-6 the test above allows


def _hooked_logits(lm, ids, L: int, hook_on: str, fn):
    """transformers' own forward with a hook that makes a change at block L."""
    blk = lm.model.transformer.h[L]
    if hook_on == "resid_pre":
        handle = blk.register_forward_pre_hook(lambda m, args: (fn(args[0]),) + tuple(args[1:]))
    elif hook_on == "z":  # c_proj's input is the heads' z side by side
        handle = blk.attn.c_proj.register_forward_pre_hook(lambda m, args: (fn(args[0]),))
    else:  # mlp_post: c_proj of the MLP reads the activations
        handle = blk.mlp.c_proj.register_forward_pre_hook(lambda m, args: (fn(args[0]),))
    try:
        with torch.inference_mode():
            return lm.model(ids).logits[0]
    finally:
        handle.remove()


def test_an_edit_equals_the_same_change_hooked_into_transformers(tiny_lm):
    t = trace(tiny_lm, PROMPT)
    ids = torch.tensor([t.token_ids.tolist()])
    hs = tiny_lm.d_head
    vec = torch.randn(tiny_lm.d_model, generator=torch.Generator().manual_seed(0))
    cases = {
        "resid_pre": (Edit(resid_pre=lambda L, x: x + 3 * vec if L == 1 else x), lambda x: x + 3 * vec),
        "z": (Edit(z=lambda L, z: z.index_fill(-3, torch.tensor([2]), 0.0) if L == 1 else z),
              lambda x: x.index_fill(-1, torch.arange(2 * hs, 3 * hs), 0.0)),
        "mlp_post": (Edit(mlp_post=lambda L, p: p.index_fill(-1, torch.tensor([5, 17]), 0.0) if L == 1 else p),
                     lambda x: x.index_fill(-1, torch.tensor([5, 17]), 0.0)),
    }
    for name, (edit, hook) in cases.items():
        want = _hooked_logits(tiny_lm, ids, 1, name, hook)
        with torch.inference_mode():
            got = tiny_lm.arch.logits(run_blocks(tiny_lm.arch, t.tensor("resid", (0,))[None], 0, edit=edit))[0]
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-5, err_msg=name)
        assert not np.allclose(got.numpy(), t.next_logits[None], atol=1e-3)  # the edit changed something


def test_the_block_is_batch_agnostic(tiny_lm):
    """[pos, d_model] and [batch, pos, d_model] give the same rows: interventions batch copies of a prompt."""
    t = trace(tiny_lm, PROMPT)
    w = tiny_lm.arch.blocks[1]
    x = t.tensor("resid", (1,))
    with torch.inference_mode():
        one = block(w, x)
        many = block(w, torch.stack([x, x * 0.5, x]))
    np.testing.assert_allclose(many.resid_post[0].numpy(), one.resid_post.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(many.resid_post[2].numpy(), one.resid_post.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(many.lse[0].numpy(), one.lse.numpy(), rtol=1e-5, atol=1e-6)
    # the trace's own next residual
    np.testing.assert_allclose(one.resid_post.numpy(), t.resid[2], rtol=1e-5, atol=1e-6)


def test_arch_reads_a_transformers_model_directly(tiny_lm):
    arch = Arch.of(tiny_lm.model)
    assert arch.n_layer == tiny_lm.n_layer and arch.blocks[0].W_Q.shape == tiny_lm.arch.blocks[0].W_Q.shape


def test_only_core_arch_reaches_into_the_checkpoints_blocks():
    """The checkpoint's layout is known in one module: outside core/arch.py no code indexes
    `transformer.h[...]` or reads a block's modules (c_attn, c_proj, c_fc, ln_1, ln_2) by name."""
    import ast

    modules = {"c_attn", "c_proj", "c_fc", "ln_1", "ln_2"}
    offenders = []
    for folder in ("core", "recipes", "ui", "viz", "pages", "benchmarks"):
        for path in (ROOT / folder).rglob("*.py"):
            if path == ROOT / "core" / "arch.py":
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                reach = (isinstance(node, ast.Attribute) and node.attr in modules) or (
                    isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute)
                    and node.value.attr == "h")
                if reach:
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offenders, "reaches into the checkpoint outside core/arch.py: " + ", ".join(offenders)
    text = [p for p in ROOT.rglob("*.py") if "transformer.h[" in p.read_text() and p.parent.name != "tests"
            and p != ROOT / "core" / "arch.py"]
    assert not text, text


def test_arch_module_is_the_only_one_with_a_block():
    """No second copy of the block: nothing else in core calls layer_norm or scaled-dot-product attention."""
    offenders = [p.name for p in (ROOT / "core").glob("*.py") if p.name != "arch.py"
                 and re.search(r"scaled_dot_product|layer_norm\(|_FLASH_CPU", p.read_text())]
    assert not offenders, offenders
