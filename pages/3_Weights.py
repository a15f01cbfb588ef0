"""The model's own parameters, no prompt involved: matrices, smoothed views, distributions, table, spectra."""
import streamlit as st

from core.weights import KINDS, block_distributions, get_matrix, normal_pdf, spectrum, stats_table, view_grid
from ui import controls
from ui.shell import setup_page, show_figure, show_table
from viz.common import esc
from viz.weights import distribution_figure, kurtosis_figure, matrix_figure, spectrum_figure, vector_figure

lm = setup_page(
    "Weights",
    "Every number on this page is one of the model's own parameters, read from the checkpoint; no prompt is "
    "involved. In the matrices red is positive, blue negative and white zero; rows are what a layer reads "
    "(its inputs) and columns what it writes (its outputs).",
)
if lm is None:
    st.stop()


HOW_TO_READ = {
    "conv1d": "Conv1D orientation: the layer computes x @ W + b, so row i holds what input dimension i "
              "contributes to every output.",
    "W_E": "A lookup table: row i is the vector token id i adds to the residual stream; the same matrix, "
           "transposed, turns the last residual into the logits (the weights are tied).",
    "W_pos": "A lookup table: row i is the vector added to the residual stream at position i.",
}


# ---- per-model computations, cached across sessions (the model is read-only) -----------------
@st.cache_data(max_entries=32, show_spinner="Preparing the matrix…")
def grid(name: str, block, kind: str, head, mode: str, window: int, _lm):
    return view_grid(get_matrix(_lm, block, kind, head)[0], mode, window)


@st.cache_data(max_entries=16, show_spinner="Computing the singular values…")
def singular(name: str, block, kind: str, head, _lm):
    return spectrum(get_matrix(_lm, block, kind, head)[0])


@st.cache_data(max_entries=16, show_spinner="Counting values in every block…")
def distributions(name: str, kind: str, _lm):
    return block_distributions(_lm, kind)


@st.cache_data(max_entries=4, show_spinner="Measuring every parameter…")
def table_of(name: str, _lm):
    return stats_table(_lm)


# ---- what to show ----------------------------------------------------------------------------
blocks, heads = list(range(lm.n_layer)), ["all"] + list(range(lm.n_head))
c1, c2, c3 = st.columns([3, 1, 1])  # every control is in the link (ui.controls)
kind_key = controls.selectbox(c1, "Parameter", list(KINDS), key="weights_param", format_func=lambda k: KINDS[k].label)
kind = KINDS[kind_key]
block = controls.selectbox(c2, "Block", blocks, key="weights_block", format_func=lambda b: f"block {b}",
                           disabled=not kind.per_block,
                           help="Model-wide parameters (embeddings, final LayerNorm) have no block.")
head = controls.selectbox(c3, "Head", heads, key="weights_head",
                          format_func=lambda h: "all heads" if h == "all" else f"head {h}",
                          disabled=kind.head_axis is None, help="Query, key, value and output weights split into heads.")
block = block if kind.per_block else None
head = head if kind.head_axis is not None and head != "all" else None

where = (f"block {block}" if block is not None else "") + (f", head {head}" if head is not None else "")
label = kind.label + (f" · {where}" if where else "")
raw, rows, cols = get_matrix(lm, block, kind_key, head)
shape = " × ".join(f"{s:,}" for s in raw.shape)
model_tag = esc(lm.label)
head_size = lm.d_model // lm.n_head if head is None and kind.head_axis in (0, 1) else None

tabs = list(controls.tabs(["Matrix", "Smoothed", "Across blocks", "All parameters", "Spectrum"], key="weights_tab").values())

with tabs[0]:
    if tabs[0].open:
        if kind.is_matrix:
            g = grid(lm.name, block, kind_key, head, "raw", 1, lm)
            note = f" · downsampled {g.downsample}× (mean of {g.downsample}×{g.downsample} tiles)" if g.downsample > 1 else ""
            show_figure(matrix_figure(g.z, rows, cols, f"{label} · {shape}{note} · {model_tag}", offset=g.offset,
                                      step=g.step, head_size=head_size, head_axis=kind.head_axis), key="weights_matrix")
            st.caption(HOW_TO_READ.get(kind_key, HOW_TO_READ["conv1d"]) + " Colours are clipped at the 99.5th "
                       "percentile of |w| (shown on the colour bar); hover a cell for its exact value."
                       + (" Thin lines separate the heads." if head_size else ""))
        else:
            show_figure(vector_figure(raw, cols, f"{label} · {shape} values · {model_tag}",
                                      head_size=lm.d_model // lm.n_head if head is None and kind.head_axis == -1 else None),
                        key="weights_vector")
        st.caption(f"mean {raw.mean():.4g} · std {raw.std():.4g} · min {raw.min():.4g} · max {raw.max():.4g}")

with tabs[1]:
    if tabs[1].open:
        if not kind.is_matrix:
            st.info("Smoothing needs a matrix. Pick a weight matrix (W_Q … W_out, W_E, W_pos) above.")
        else:
            top = min(raw.shape)
            window = controls.slider(st, "Window (cells per side)", 1, top, key="weights_window",
                                     default=min(64, max(1, top // 4)),
                               help="The essay smooths GPT-2's 768×768 matrices over 64×64 squares.")
            left, right = st.columns(2)
            for col, mode, name in ((left, "moving", "Moving average"), (right, "block", "Block average")):
                g = grid(lm.name, block, kind_key, head, mode, window, lm)
                note = f" · downsampled {g.downsample}×" if g.downsample > 1 else ""
                with col:
                    show_figure(matrix_figure(g.z, rows, cols, f"{name} over {window}×{window} · {kind.key}"
                                              f"{' · ' + where if where else ''}{note} · {model_tag}", offset=g.offset,
                                              step=g.step, colorbar="mean", height=520), key=f"weights_smooth_{mode}")
            st.caption("Left: the mean of the window×window square around every position (a sliding window). "
                       "Right: the mean of each non-overlapping window×window tile. Averaging cancels noise, so "
                       "what survives is structure shared by neighbouring rows and columns. Each figure has its "
                       "own colour scale, centred on zero.")

with tabs[2]:
    if tabs[2].open:
        edges, dist = distributions(lm.name, kind_key, lm)
        log_y = controls.toggle(st, "Log scale (shows the tails)", key="weights_log")
        pick = block if kind.per_block else "all"
        row = dist.set_index("block").loc[pick]
        centres = (edges[:-1] + edges[1:]) / 2
        show_figure(distribution_figure(edges, dist, f"{kind.key} values in every block · {model_tag}", highlight=pick,
                                        log_y=log_y, normal=normal_pdf(centres, row["mean"], row["std"])),
                    key="weights_dist")
        st.caption(f"One line per block (dark = early, yellow = late); the thick line is {pick if pick == 'all' else f'block {pick}'} "
                   "(pick another above) and the dashed curve the normal distribution with its mean and standard "
                   "deviation. On the log scale a normal is a parabola; tails above it are heavier than Gaussian.")
        show_figure(kurtosis_figure(dist, f"Excess kurtosis of {kind.key} by block · {model_tag}"), key="weights_kurtosis")
        show_table(dist.drop(columns="density"), "weights_dist_table", name=f"{kind.key}-distribution-by-block",
                   hide_index=True, width="stretch", column_config={
                       c: st.column_config.NumberColumn(format="%.4g") for c in ("mean", "std", "kurtosis", "min", "max")})

with tabs[3]:
    if tabs[3].open:
        table = table_of(lm.name, lm)
        total = int(table["count"].sum())
        c1, c2 = st.columns(2)
        c1.metric("Parameters, summed over the table", f"{total:,}")
        c2.metric("The model's own count", f"{lm.n_params:,}")
        if total == lm.n_params:
            st.caption("They agree: each distinct parameter is listed once. The unembedding (lm_head) is the "
                       "token embedding W_E itself, tied, so it is not counted twice.")
        else:
            st.error(f"The table misses {lm.n_params - total:,} parameters; please report this.")
        show_table(table, "weights_param_table", name="parameters", hide_index=True, width="stretch", height=460,
                   column_config={"count": st.column_config.NumberColumn(format="localized"),
                                  **{c: st.column_config.NumberColumn(format="%.4g")
                                     for c in ("mean", "std", "min", "max", "frobenius")}})

with tabs[4]:
    if tabs[4].open:
        if not kind.is_matrix:
            st.info("A spectrum needs a matrix. Pick a weight matrix (W_Q … W_out, W_E, W_pos) above.")
        else:
            sp = singular(lm.name, block, kind_key, head, lm)
            c1, c2, c3, c4 = st.columns(4)
            c1.metric("Full rank", f"{len(sp.singular_values):,}")
            c2.metric("Effective rank", f"{sp.effective_rank:,.1f}",
                      help="exp of the entropy of σ/Σσ (Roy & Vetterli 2007): the full rank if every direction "
                      "is equally strong, 1 if one direction carries everything.")
            c3.metric("σ above 1% of σ_max", f"{sp.rank_1pct:,}")
            c4.metric("Stable rank", f"{sp.stable_rank:,.1f}", help="‖W‖²_F / σ_max²: how many directions "
                      "as strong as the strongest would hold the same total energy.")
            show_figure(spectrum_figure(sp.singular_values, f"Singular values of {label} · {shape} · {model_tag}",
                                        effective_rank=sp.effective_rank, rank_1pct=sp.rank_1pct), key="weights_spectrum")
            st.caption("A random matrix has a smooth, slowly falling spectrum; a few large singular values "
                       "standing above the rest are directions the training made important.")
