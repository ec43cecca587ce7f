"""Clipping: clip fractions, ratio statistics, entropy and approximate KL, with each run's trust region."""

import pandas as pd
import streamlit as st

from app import charts, data, state
from lab import figures

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
st.subheader("Trust regions in ratio space")
if bounds.empty:
    st.write("None of the selected runs clips (loss `vanilla`, or no clip config).")
else:
    st.plotly_chart(charts.run_bounds_figure(bounds), width="stretch", key="clip_bounds")
    data.downloads(bounds, "trust_regions", "bounds")
with st.expander("The built-in measures at matched budgets (same width u − l as ratio ε = 0.2)"):
    st.plotly_chart(figures.trust_region_figure(["ratio", "kl1", "kl2", "kl3"]), width="stretch", key="clip_matched")

metrics = data.stacked(rows, data.metrics)
if metrics.empty or "actor/clip_frac_low" not in metrics:
    st.info("The selected runs have no clipping metrics yet.")
    st.stop()

st.subheader("Clip fraction (dashed: low bound, solid: high bound)")
st.plotly_chart(figures.clip_fraction_figure(metrics, series="run"), width="stretch", key="clip_frac")
st.subheader("Ratio π_θ / π_old: min, mean, max")
keys = [k for k in rows["key"] if k in set(metrics["run"])]
if 2 <= len(keys) <= 3:  # side by side, each with its own bounds: KL3's sit higher above 1 than below
    for col, k in zip(st.columns(len(keys)), keys):
        col.markdown(f"**{k}**")
        col.plotly_chart(charts.ratio_figure(metrics[metrics["run"] == k], bounds), width="stretch",
                         key=f"clip_ratio_{k}")
else:
    st.plotly_chart(charts.ratio_figure(metrics, bounds), width="stretch", key="clip_ratio")
c1, c2 = st.columns(2)
for col, name, key in ((c1, "actor/entropy", "clip_entropy"), (c2, "actor/approx_kl", "clip_kl")):
    if name in metrics:
        long = metrics[["run", "step", name]].rename(columns={name: "value"}).dropna()
        col.markdown(f"**{name}**")
        col.plotly_chart(figures.curves_figure(long, y_label=name), width="stretch", key=key)
cols = ["run", "step"] + [c for c in metrics.columns if c.startswith("actor/")]
data.downloads(metrics[cols], "clipping_metrics", "clip")
