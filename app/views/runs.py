"""Runs: every run under the roots, filters, the selection, a config diff, broken runs named."""

import streamlit as st

from app import charts, data, state
from lab import figures

roots, table, rows = state.context()
st.title("Runs")
if table.empty:
    st.info(f"No runs under {', '.join(roots)}. Train one with `lab train` or `lab demo`, "
            "or point the dashboard elsewhere: `lab app --runs DIR`.")
    st.stop()

if st.button("Refresh", help="re-read the run folders now (they are re-read every few seconds anyway)"):
    data.runs_table.clear()
    st.rerun()

fields = charts.config_fields(table)
c1, c2, c3, c4 = st.columns([2, 2, 2, 2])
statuses = ["running", "finished", "failed", "interrupted"]
status = state.control(c1.multiselect, "Status", statuses, key="runs_status", default=[], options=statuses)
field_options = ["(none)"] + fields
field = state.control(c2.selectbox, "Filter by config field", field_options, key="runs_field", default="(none)",
                      options=field_options)
values = []
if field != "(none)":
    present = sorted({str(v) for v in table[field].tolist()}, key=figures.natural_key)
    chosen = state.control(c3.multiselect, f"{field} is one of", present, key="runs_values", default=[],
                           options=present)
    values = [v for v in table[field].tolist() if str(v) in set(chosen)]
text = state.control(c4.text_input, "Run contains", key="runs_text", default="",
                     help="matches the run as listed (root/name), e.g. `demo` or `grpo-s1`")
shown = charts.filter_runs(table, None if field == "(none)" else field, values, status, text)

COLUMNS = ["key", "status", "estimator", "loss", "clip_measure", "clip_delta", "rollouts_per_prompt",
           "prompts_per_step", "seed", "step", "steps", "eval_accuracy", "reward_mean", "accuracy", "elapsed_s",
           "problem", "error"]
view = shown[[c for c in COLUMNS if c in shown.columns]].rename(columns={"rollouts_per_prompt": "G"})
st.caption(f"{len(shown)} of {len(table)} runs. eval_accuracy is held-out (`eval/accuracy`); "
           "accuracy is training reward accuracy. Tick rows to add them to the selection.")
event = st.dataframe(view, hide_index=True, width="stretch", on_select="rerun", selection_mode="multi-row",
                     key="runs_table",
                     column_config={"eval_accuracy": st.column_config.NumberColumn(format="%.3f"),
                                    "reward_mean": st.column_config.NumberColumn(format="%.3f"),
                                    "accuracy": st.column_config.NumberColumn(format="%.3f"),
                                    "elapsed_s": st.column_config.NumberColumn(format="%.1f")})
picked = [view["key"].iloc[i] for i in (event.selection.rows if event else [])]
if picked:
    st.button(f"Add the {len(picked)} ticked run(s) to the selection", key="runs_select_ticked",
              on_click=state.add_to_selection, args=(picked,))
data.downloads(shown, "runs", "runs")
if shown["eval_accuracy"].notna().any():
    st.plotly_chart(charts.runs_overview_figure(shown, colors=state.colors(shown["key"])), width="stretch",
                    key="runs_overview")

deep = state.control(st.checkbox, "Check every listed run's files (metrics lines, Parquet files), not only the small ones",
                     key="runs_deep", default=len(table) <= 30,
                     help="the listing reads only config, status and the metrics tail; this reads each run fully once")
found = {r.key: r.problem for r in table.itertuples() if isinstance(r.problem, str)}
if deep:  # the full check covers everything the listing's cheap check does: it replaces it
    for r in table.itertuples():
        if isinstance(r.path, str) and (full := data.problems(r.path)):
            found[r.key] = "; ".join(full)
links = data.refused_links(tuple(roots))
if found or not links.empty:
    with st.container(border=True, key="runs_problems"):
        if found:
            st.markdown(f"**{len(found)} run folder(s) could not be read completely** (everything else loads normally):")
            for k, prob in found.items():
                st.markdown(f"- `{k}`: {prob}")
        if not links.empty:
            st.markdown(f"**{len(links)} link(s) under the roots were not followed** (the app reads only inside its roots):")
            for r in links.itertuples():
                st.markdown(f"- `{r.key}` → `{r.target}`: {r.reason}")

st.subheader("Config diff of the selected runs")
if len(rows) >= 2:
    diff = charts.config_diff(table, rows["key"].tolist())
    if diff.empty:
        st.write("The selected runs have identical configs.")
    else:
        st.dataframe(diff.astype(str), width="stretch")
        data.downloads(diff.reset_index(), "config_diff", "diff")
else:
    st.caption("Select two or more runs (sidebar) to see the fields where their configs differ.")

