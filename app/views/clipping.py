"""Clipping: the selected runs' trust regions on one shared axis (ratio and log-ratio), the
built-in measures at matched budgets, clip fractions, ratio statistics, entropy and KL."""

import pandas as pd
import streamlit as st

from app import charts, data, state
from lab import figures
from lab.losses import available_measures

roots, table, rows = state.context()
st.title("Clipping")
if rows.empty:
    st.info("Select runs in the sidebar; a ratio-clip and a KL3-clip run side by side show KL3's asymmetry.")
    st.stop()

configs = {r.key: {k: getattr(r, k, None) for k in ("clip_measure", "clip_delta", "clip_delta_low",
                                                       "clip_delta_high", "loss")} for r in rows.itertuples()}
for c in configs.values():
    for k in ("clip_delta_low", "clip_delta_high"):
        if c[k] is not None and pd.isna(c[k]):
            c[k] = None
bounds = charts.run_bounds_table(configs)
colors = state.colors(rows["key"])
spaces = {"both": "ratio and log-ratio", "ratio": "ratio w", "log": "log-ratio log w"}
space = state.control(st.radio, "Trust regions in", list(spaces), key="clip_space", default="both",
                      options=list(spaces), horizontal=True, format_func=spaces.get)
st.subheader("Trust regions of the selected runs")
st.caption("Each bar is a run's interval [l, u] with its ends written beside it; all runs share one axis. "
           "In log-ratio space a measure symmetric in log w has equal arms on both sides of 0.")
if bounds.empty:
    st.write("None of the selected runs clips (its loss rule ignores the bounds, or no clip config).")
else:
    st.plotly_chart(charts.run_bounds_figure(bounds, colors, space=space), width="stretch", key="clip_bounds")
    data.downloads(bounds, "trust_regions", "bounds")
measures = available_measures()
st.subheader("The built-in measures at matched budgets")
st.caption(f"Every registered clip measure ({', '.join(measures)}) with δ chosen so that u − l equals ratio "
           "clipping's 0.4 at ε = 0.2 (`lab.losses.matched_delta`).")
st.plotly_chart(figures.trust_region_figure(measures, space=space), width="stretch", key="clip_matched")
data.downloads(figures.trust_region_table(measures), "trust_regions_matched", "matched")

metrics = data.stacked(rows, data.metrics)
if metrics.empty or "actor/clip_frac_low" not in metrics:
    st.info("The selected runs have no clipping metrics yet.")
    st.stop()

st.subheader("Clip fraction (dashed: low bound, solid: high bound)")
st.plotly_chart(figures.clip_fraction_figure(metrics, series="run", colors=colors), width="stretch", key="clip_frac")
st.subheader("Ratio π_θ / π_old: min, mean, max")
keys = [k for k in rows["key"] if k in set(metrics["run"])]
st.plotly_chart(charts.ratio_figure(metrics, bounds, colors, panels=2 <= len(keys) <= 4), width="stretch",
                key="clip_ratio")
c1, c2 = st.columns(2)
for col, name, key in ((c1, "actor/entropy", "clip_entropy"), (c2, "actor/approx_kl", "clip_kl")):
    if name in metrics:
        long = metrics[["run", "step", name]].rename(columns={name: "value"}).dropna()
        col.markdown(f"**{name}**")
        col.plotly_chart(figures.curves_figure(long, y_label=name, colors=colors), width="stretch", key=key)
cols = ["run", "step"] + [c for c in metrics.columns if c.startswith("actor/")]
data.downloads(metrics[cols], "clipping_metrics", "clip")
