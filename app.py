"""Inside GPT-2: entry point and the next-token page.

Run with `streamlit run app.py`. Other views are Streamlit pages in pages/; every page,
this one included, draws the shared sidebar (model, prompt, navigation) through
ui.shell.setup_page. See README for why the pages are laid out this way.
"""
import numpy as np
import streamlit as st

from core.next_token import prompt_perplexity, rank_curve, tokenization_table, top_k_table
from ui import controls
from ui.shell import md_escape, setup_trace_page, show_figure, show_table
from viz.common import figure_label, format_prob
from viz.next_token import rank_plot, surprisal_strip, top_k_bars

lm, t = setup_trace_page(
    "Next token",
    "GPT-2 reads your prompt and gives every token in its vocabulary (50,257 of them) a probability of coming next; "
    "the table and bars show the likeliest ones. Below, the same distribution on log-log axes, "
    "and how surprised GPT-2 was by each token of the prompt (dark = expected, bright = surprising).",
)

label = figure_label(lm.label, t.prompt)
top1 = top_k_table(lm, t, 1).iloc[0]
c1, c2, c3, c4, c5 = st.columns(5)
c1.metric("Tokens in the prompt", f"{t.n_tokens:,}")
c2.metric("Likeliest next token", md_escape(top1["token"]))  # metric values are Markdown
c3.metric("Its probability", format_prob(top1["probability"]))
c4.metric("Entropy of the next token", f"{t.entropy[-1]:.2f} bits",
          help="How spread out the prediction is: 0 bits = certain; log2(50,257) ≈ 15.6 bits = every token equally likely.")
ppl = prompt_perplexity(t)
c5.metric("Prompt perplexity", "—" if np.isnan(ppl) else f"{ppl:,.1f}",
          help="2 to the power of the mean surprisal: on average GPT-2 was as unsure as a choice among this many tokens.")

k = controls.slider(st, "How many candidates", 1, 50, key="next_k", default=10)
table = top_k_table(lm, t, k)
left, right = st.columns([2, 3])
with left:
    show_table(table, "next_topk_table", name="next-token-table", hide_index=True, width="stretch",
               formats={"probability": format_prob, "logit": "{:.3f}"})
with right:
    show_figure(top_k_bars(table["token"].tolist(), table["probability"].to_numpy(),
                           f"Top {k} next tokens · {label}"), key="next_topk")

ranks, probs = rank_curve(t.next_probs)
show_figure(rank_plot(ranks, probs, f"All {len(t.next_probs):,} next-token probabilities by rank · {label}"), key="next_rank")
st.caption("A straight line on these axes is a power law. Wolfram's essay shows GPT-2's next-word "
           "probabilities falling off roughly like 1/rank for the first few thousand ranks.")

st.subheader("How surprising was each token?")
st.caption("Surprisal = −log₂ p(token | the tokens before it). One bit is a coin flip's worth of surprise. "
           "Hover a cell for the exact value.")
show_figure(surprisal_strip(list(t.tokens), t.surprisal_bits, f"Surprisal per token · {label}"), key="next_surprisal")

st.subheader("How GPT-2 split the prompt into tokens")
st.caption("GPT-2 reads bytes, not letters: each row is one token, with its id in the vocabulary and the bytes it stands "
           "for. A Chinese character or an emoji often takes two or three tokens; the last column names the tokens "
           "that make such a character together.")
show_table(tokenization_table(lm, t), "next_tokens_table", name="tokenization", hide_index=True, width="stretch",
           height=min(420, 38 + 35 * t.n_tokens))
