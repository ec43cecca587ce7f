"""Curves: metrics of the selected runs as small multiples (shared x), EMA-smoothed, by step
or wall time, grouped into mean ± 95% bands with the runs counted per step."""

import pandas as pd
import streamlit as st

from app import charts, data, state
from lab import figures

roots, table, rows = state.context()
st.title("Curves")
if rows.empty:
    st.info("Select runs in the sidebar to overlay their curves.")
    st.stop()

for r in rows.itertuples():  # what the readers report about a selected run (a truncated metrics file, ...)
    if isinstance(r.problem, str):
        st.warning(f"`{r.key}` could not be read completely: {r.problem}")
paths = dict(zip(rows["key"], rows["path"]))
available = sorted({c for p in paths.values() for c in data.metrics(p).columns if c != "step"}, key=figures.natural_key)
if not available:
    st.warning("The selected runs have no readable metrics yet.")
    st.stop()
docs = data.metric_docs()
default = [next((m for m in ("eval/accuracy", "reward/mean") if m in available), available[0])]
c1, c2, c3 = st.columns([4, 2, 2])
chosen = state.control(c1.multiselect, "Metrics", available, key="curves_metrics", default=default, options=available,
                       help="One panel per metric, stacked on a shared x axis. Meanings are those of docs/metrics.md.")
smoothing = state.control(c2.slider, "Smoothing (EMA weight)", 0.0, 0.99, step=0.01, key="curves_smoothing",
                          default=0.6, options=(0.0, 0.99),
                          help="TensorBoard's debiased exponential moving average; the raw curve is drawn faint behind.")
has_time = any("time/elapsed_s" in data.metrics(p).columns for p in paths.values())
x_options = ["step"] + (["time/elapsed_s"] if has_time else [])
x = state.control(c3.radio, "x axis", x_options, horizontal=True, key="curves_x", default="step", options=x_options,
                  format_func=lambda v: "step" if v == "step" else "wall time (s)",
                  help="wall time is `time/elapsed_s` as docs/metrics.md defines it: seconds of the training loop "
                       "(one-off set-up excluded: that is `time/warmup_s`), resume-aware, so runs compare fairly")
for m in chosen:
    meaning = data.metric_help(m, docs)
    c1.caption(f"**{m}**: {meaning}" if meaning else f"**{m}**: (not documented in docs/metrics.md)")
c4, c5 = st.columns([2, 3])
log_y = state.control(c4.checkbox, "log y", key="curves_log", default=False)
varying = [f for f in charts.config_fields(table) if rows[f].astype(str).nunique() > 1]
group_options = ["(none)"] + varying
group = state.control(c5.selectbox, "Group by (mean ± 95% band across the runs of each group)", group_options,
                      key="curves_group", default="(none)", options=group_options,
                      help="e.g. estimator: seeds of one estimator become one mean line with a band")
running = bool((rows["status"] == "running").any())
colors = state.colors(rows["key"])


def draw() -> None:
    if not chosen:
        st.info("Pick one or more metrics.")
        return
    long = data.metrics_long(paths, chosen, x=x)
    if long.empty:
        st.warning(f"No selected run has logged {', '.join(chosen)} yet.")
        return
    band_by = None if group == "(none)" else group
    xcol = x if x in long.columns else "step"
    palette = colors
    if band_by:
        by_run = dict(zip(rows["key"], rows[band_by].astype(str)))
        long[band_by] = long["run"].map(by_run)
        if xcol != "step":
            st.caption("Bands align runs on equal steps, so grouped curves use x = step.")
            xcol = "step"
        members = {g: [k for k in rows["key"] if by_run[k] == g] for g in sorted(set(by_run.values()))}
        palette = (figures.estimator_colors if band_by == "estimator" else figures.series_colors)(members)
        diffs = charts.group_differences(table, members)
        if not diffs.empty:
            with st.container(border=True, key="curves_group_note"):
                st.markdown("**The runs of a group differ in more than their seed**, so a band mixes settings:")
                for r in diffs.itertuples():
                    st.markdown(f"- `{r.group}`: `{r.field}` = {r.values} ({r.runs})")
        st.caption("Legend: runs per group. Hover: runs with a value at that step. Dotted: some of the group's "
                   "runs have stopped, so the mean is over fewer of them; no band where one run is left.")
    present = [m for m in chosen if m in set(long["metric"])]
    fig = figures.curves_figure(long, x=xcol, y="value", series="run", smoothing=smoothing, log_y=log_y,
                                band_by=band_by, colors=palette, facet="metric", facet_order=present,
                                facet_ranges={m: charts.metric_range(m) for m in present},
                                y_label=present[0] if len(present) == 1 else None)
    st.plotly_chart(fig, width="stretch", key="curves_chart")
    k = figures.thin_stride(int(long.groupby(["metric", "run"]).size().max()))
    if k > 1:
        st.caption(f"Curves longer than {figures.DRAWN_POINTS:,} points are drawn at every {k}th point, as "
                   "TensorBoard does; smoothing and bands use every point, and so do the downloads.")
    name = "_".join(m.replace("/", "_") for m in present)
    data.downloads(long, name, "curves")
    if band_by:
        bands = [figures.band_table(g, x=xcol, band_by=band_by, smoothing=smoothing,
                                    y_range=charts.metric_range(m)).assign(metric=m)
                 for m, g in long.groupby("metric", sort=False)]
        data.downloads(pd.concat(bands, ignore_index=True), f"{name}_bands", "bands")


if running:
    auto = st.toggle("Auto-refresh every 5 s", value=True, key="curves_auto",
                     help="a selected run is still running; new steps appear as they are written")
    if auto:
        st.fragment(run_every=5)(draw)()
    else:
        draw()
else:
    draw()
