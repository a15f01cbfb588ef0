"""Pure Plotly figure builders: numpy arrays and strings in, go.Figure out. No streamlit, no torch."""
