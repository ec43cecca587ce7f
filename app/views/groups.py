"""Groups: one run, one step, one row per prompt group: completions, rewards, baselines, advantages."""

import pandas as pd
import streamlit as st

from app import charts, data, state

roots, table, rows = state.context()
st.title("Groups")
run, steps = state.pick_run_with_samples(rows, "grp_run")
train_est = str(run["estimator"])
c1, c2, c3 = st.columns([2, 2, 3])
step = state.control(c1.select_slider, "Step", steps, key="grp_step", default=steps[-1], options=steps)
s = data.samples(run["path"], [step])
shadows = [n for n in charts.estimator_names(s, train_est) if n != train_est]
shadow_options = ["(none)"] + shadows
shadow = state.control(c2.selectbox, "Shadow estimator", shadow_options, key="grp_shadow",
                       default=shadow_options[1 if shadows else 0], options=shadow_options)
text = state.control(c3.text_input, "Search prompts, answers and completions", key="grp_search", default="")
groups = charts.groups_table(s, train_est, None if shadow == "(none)" else shadow)
only_zero = state.control(st.checkbox, "Only groups with zero reward spread", key="grp_zero", default=False)
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
    pids = shown["prompt_id"].tolist()
    prompts = dict(zip(shown["prompt_id"], shown["prompt"]))
    pid = state.control(st.selectbox, "Read one group's completions", pids, key="grp_pid", default=pids[0],
                        options=pids, format_func=lambda p: f"{p}: {prompts[p]!r}")
    g = s[s["prompt_id"] == pid]
    keep = [c for c in ("rollout", "completion", "reward", "baseline", "advantage", "length", "finish_reason") if c in g]
    if shadow != "(none)":
        keep += [c for c in (f"baseline__{shadow}", f"advantage__{shadow}") if c in g]
    detail = g[keep].sort_values(keep[0]) if keep else pd.DataFrame()
    st.plotly_chart(charts.group_figure(detail, train_est, None if shadow == "(none)" else shadow),
                    width="stretch", key="grp_chart")
    st.dataframe(detail, hide_index=True, width="stretch", key="grp_detail")
    data.downloads(detail, f"group_{pid}_step{step}", "group")
