"""Curves: any metric of the selected runs, EMA-smoothed, by step or wall time, grouped with bands."""

import streamlit as st

from app import charts, data, state
from lab import figures

roots, table, rows = state.context()
st.title("Curves")
if rows.empty:
    st.info("Select runs in the sidebar to overlay their curves.")
    st.stop()

paths = dict(zip(rows["key"], rows["path"]))
available = sorted({c for p in paths.values() for c in data.metrics(p).columns if c != "step"})
if not available:
    st.warning("The selected runs have no readable metrics yet.")
    st.stop()
docs = data.metric_docs()
default = next((m for m in ("eval/accuracy", "reward/mean") if m in available), available[0])
c1, c2, c3 = st.columns([3, 2, 2])
metric = c1.selectbox("Metric", available, index=available.index(default), key="curves_metric",
                      help="Meanings are those of docs/metrics.md.")
meaning = data.metric_help(metric, docs)
c1.caption(f"**{metric}**: {meaning}" if meaning else f"**{metric}**: (not documented in docs/metrics.md)")
smoothing = c2.slider("Smoothing (EMA weight)", 0.0, 0.99, 0.6, 0.01, key="curves_smoothing",
                      help="TensorBoard's debiased exponential moving average; the raw curve is drawn faint behind.")
has_time = any("time/elapsed_s" in data.metrics(p).columns for p in paths.values())
x_options = ["step"] + (["time/elapsed_s"] if has_time else [])
x = c3.radio("x axis", x_options, horizontal=True, key="curves_x",
             format_func=lambda v: "step" if v == "step" else "wall time (s, resume-aware)")
c4, c5 = st.columns([2, 3])
log_y = c4.checkbox("log y", key="curves_log")
varying = [f for f in charts.config_fields(table) if rows[f].astype(str).nunique() > 1]
group = c5.selectbox("Group by (mean ± 95% band across the runs of each group)", ["(none)"] + varying,
                     key="curves_group", help="e.g. estimator: seeds of one estimator become one mean line with a band")
running = bool((rows["status"] == "running").any())


def draw() -> None:
    long = data.metrics_long(paths, metric, x=x)
    if long.empty:
        st.warning(f"No selected run has logged {metric} yet.")
        return
    band_by = None if group == "(none)" else group
    xcol = x if x in long.columns else "step"
    if band_by:
        long[band_by] = long["run"].map(dict(zip(rows["key"], rows[band_by].astype(str))))
        if xcol != "step":
            st.caption("Bands align runs on equal steps, so grouped curves use x = step.")
            xcol = "step"
    fig = figures.curves_figure(long, x=xcol, y="value", series="run", smoothing=smoothing, log_y=log_y,
                                band_by=band_by, y_label=metric)
    st.plotly_chart(fig, width="stretch", key="curves_chart")
    data.downloads(long, metric.replace("/", "_"), "curves")
    if band_by:
        data.downloads(figures.band_table(long, x=xcol, band_by=band_by, smoothing=smoothing),
                       f"{metric.replace('/', '_')}_bands", "bands")


if running:
    auto = st.toggle("Auto-refresh every 5 s", value=True, key="curves_auto",
                     help="a selected run is still running; new steps appear as they are written")
    if auto:
        st.fragment(run_every=5)(draw)()
    else:
        draw()
else:
    draw()
