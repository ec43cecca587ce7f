"""Groups: one run, one step, one row per prompt group: completions, rewards, baselines, advantages."""

import pandas as pd
import streamlit as st

from app import charts, data, state

roots, table, rows = state.context()
st.title("Groups")
run, steps = state.pick_run_with_samples(rows, "grp_run")
train_est = str(run["estimator"])
c1, c2, c3 = st.columns([2, 2, 3])
step = c1.select_slider("Step", steps, value=steps[-1], key=f"grp_step_{run.name}")
s = data.samples(run["path"], [step])
shadows = [n for n in charts.estimator_names(s, train_est) if n != train_est]
shadow = c2.selectbox("Shadow estimator", ["(none)"] + shadows, index=1 if shadows else 0, key=f"grp_shadow_{run.name}")
text = c3.text_input("Search prompts, answers and completions", key="grp_search")
groups = charts.groups_table(s, train_est, None if shadow == "(none)" else shadow)
only_zero = st.checkbox("Only groups with zero reward spread", key="grp_zero")
shown = charts.search_groups(groups, text)
if only_zero:
    shown = shown[shown["zero_spread"]]
st.caption(f"{len(shown)} of {len(groups)} prompt groups at step {step}; {train_est} trained the run. "
           "Click a column header to sort.")
# prompt ids are 64-bit hashes: shown as text, since a browser's numbers keep only 53 bits
st.dataframe(shown.assign(prompt_id=shown["prompt_id"].astype(str)), hide_index=True, width="stretch", key="grp_table",
             column_config={"completions": st.column_config.ListColumn(width="large"),
                            "reward_mean": st.column_config.NumberColumn(format="%.2f")})
data.downloads(shown, f"groups_step{step}", "groups")

if len(shown):
    pid = st.selectbox("Read one group's completions", shown["prompt_id"].tolist(), key=f"grp_pid_{run.name}",
                       format_func=lambda p: f"{p}: {shown.set_index('prompt_id').loc[p, 'prompt']!r}")
    g = s[s["prompt_id"] == pid]
    keep = [c for c in ("rollout", "completion", "reward", "baseline", "advantage", "length", "finish_reason") if c in g]
    if shadow != "(none)":
        keep += [c for c in (f"baseline__{shadow}", f"advantage__{shadow}") if c in g]
    detail = g[keep].sort_values(keep[0]) if keep else pd.DataFrame()
    st.plotly_chart(charts.group_figure(detail, train_est, None if shadow == "(none)" else shadow),
                    width="stretch", key="grp_chart")
    st.dataframe(detail, hide_index=True, width="stretch", key="grp_detail")
    data.downloads(detail, f"group_{pid}_step{step}", "group")
