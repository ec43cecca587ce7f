"""Advantages: one run's advantages under the training estimator and every shadow estimator,
on the same rollouts: histogram at a step, heatmap over steps, scatter of two, baseline vs reward."""

import streamlit as st

from app import charts, data, state
from lab import figures

roots, table, rows = state.context()
st.title("Advantages")
st.caption("Every estimator below saw the *same* rollouts: the training estimator produced `advantage`, "
           "the shadow estimators `advantage__<name>` (docs/run-format.md).")
run, steps = state.pick_run_with_samples(rows, "adv_run")
train_est = str(run["estimator"])
step = state.control(st.select_slider, "Step", steps, key="adv_step", default=steps[-1], options=steps)
s_step = data.samples(run["path"], [step])
names = charts.estimator_names(s_step, train_est)
chosen = state.control(st.multiselect, "Estimators", names, key="adv_est", default=names[: min(4, len(names))],
                       options=names, help=f"{train_est} trained this run; the others are shadows on the same rollouts")
if chosen:
    st.subheader(f"Distribution at step {step}")
    st.plotly_chart(figures.advantage_histogram(s_step, chosen, train_estimator=train_est), width="stretch",
                    key="adv_hist")
    cols = [figures.advantage_column(s_step, n, train_est) for n in chosen]
    data.downloads(s_step[["step", "prompt_id"] + [c for c in ("rollout", "reward") if c in s_step] + cols],
                   f"advantages_step{step}", "hist")

st.subheader("Over steps")
c1, c2 = st.columns([2, 3])
heat_est = state.control(c1.selectbox, "Estimator", names, key="adv_heat", default=names[0], options=names)
all_samples = data.samples(run["path"])
col = figures.advantage_column(all_samples, heat_est, train_est)
st.plotly_chart(charts.advantage_heatmap(all_samples, col, heat_est), width="stretch", key="adv_heat_chart")
data.downloads(charts.advantage_heatmap_table(all_samples, col).reset_index(), f"advantage_heatmap_{heat_est}", "heat")

st.subheader("Two estimators on the same rollouts")
c1, c2 = st.columns(2)
ex = state.control(c1.selectbox, "x", names, key="adv_x", default=names[0], options=names)
ey = state.control(c2.selectbox, "y", names, key="adv_y", default=names[min(1, len(names) - 1)], options=names)
st.plotly_chart(figures.advantage_scatter(s_step, ex, ey, train_estimator=train_est), width="stretch", key="adv_scatter")

st.subheader("Baseline against reward")
base = charts.baseline_reward_table(s_step, chosen or [train_est], train_est)
st.plotly_chart(charts.baseline_reward_figure(base), width="stretch", key="adv_base")
data.downloads(base, f"baselines_step{step}", "base")

st.subheader("Groups with zero reward spread")
st.caption("Prompts whose rollouts all got the same reward: group-normalised estimators give them zero advantage.")
zs = charts.zero_spread_table(all_samples)
if zs.empty:
    st.write("No prompt has two or more rollouts in this run (G = 1).")
else:
    st.plotly_chart(charts.zero_spread_figure(zs), width="stretch", key="adv_zero")
    data.downloads(zs, "zero_spread", "zero")
