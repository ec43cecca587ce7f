"""Value MSE: each estimator's baseline against Monte-Carlo truth over steps (small multiples
by estimator or by run, and a ranking with intervals), per prompt, and the exact-value
results (MSE against G) of the claims benchmark."""

import streamlit as st

from app import charts, data, state
from lab import figures

roots, table, rows = state.context()
st.title("Value MSE")
st.caption("How far each estimator's baseline is from the prompt's true value, measured on probe steps "
           "against a Monte-Carlo estimate V̂; the SE² of V̂ is subtracted (unbiased), band ±1 SE over prompts.")

probes = data.stacked(rows, data.probes)
if probes.empty:
    st.info("None of the selected runs has probes (train with `--probe-every N`).")
else:
    ests = sorted(probes["estimator"].unique().tolist(), key=figures.natural_key)
    run_keys = [k for k in rows["key"] if k in set(probes["run"])]
    c1, c2, c3 = st.columns([4, 2, 1])
    chosen = state.control(c1.multiselect, "Estimators", ests, key="vm_est", default=ests[: min(5, len(ests))],
                           options=ests)
    facets = ["estimator", "run"]
    facet = state.control(c2.radio, "One panel per", facets, key="vm_facet", horizontal=True,
                          default="estimator" if len(run_keys) > 1 else "run", options=facets,
                          help="per estimator: one line per run (run colours); per run: one line per estimator")
    log_y = state.control(c3.checkbox, "log y", key="vm_log", default=False)
    sub = probes[probes["estimator"].isin(chosen)]
    colors = state.colors(run_keys) if facet == "estimator" else None
    st.plotly_chart(figures.value_mse_figure(sub, series="run", log_y=log_y, facet=facet, colors=colors),
                    width="stretch", key="vm_chart")
    data.downloads(figures.value_mse_table(sub, by=("run", "step", "estimator")), "value_mse", "vm")

    st.subheader("Ranking at each run's last probe step")
    st.caption("Corrected value MSE per estimator, lowest first, with a 95% t-interval over the probe prompts. "
               "The estimators of one run saw the same rollouts, so compare within a run.")
    rank = figures.value_mse_ranking(sub, by=("run",))
    st.dataframe(rank, hide_index=True, width="stretch", key="vm_rank",
                 column_config={c: st.column_config.NumberColumn(format="%.4g") for c in ("mse", "lo", "hi")})
    data.downloads(rank, "value_mse_ranking", "rank")

    st.subheader("Per prompt at one step")
    c1, c2 = st.columns(2)
    run_key = state.control(c1.selectbox, "Run", run_keys, key="vm_run", default=run_keys[0], options=run_keys)
    pr = probes[probes["run"] == run_key]
    steps = sorted(pr["step"].unique().tolist())
    step = state.control(c2.select_slider, "Probe step", steps, key="vm_step", default=steps[-1], options=steps)
    st.plotly_chart(charts.truth_vs_baseline_figure(pr, step, chosen), width="stretch", key="vm_truth")
    data.downloads(pr[(pr["step"] == step) & pr["estimator"].isin(chosen)], f"probes_step{step}", "truth")

st.subheader("Exact value error against G (drifting bandit, known values)")
res = data.results("value_mse.csv")
if res.empty:
    st.info("No data/results/value_mse.csv (make it with `benchmarks/value_mse.py`).")
else:
    st.caption("From `data/results/value_mse.csv` (benchmarks/value_mse.py): the value MSE every estimator "
               "reaches when the true values are known exactly; mean over seeds ± SE.")
    reuses = sorted(res["reuse"].unique().tolist()) if "reuse" in res.columns else [1]
    reuse = state.control(st.selectbox, "Prompt reuse J (each prompt revisited for J consecutive steps)", reuses,
                          key="vm_exact_reuse", default=reuses[0], options=reuses)
    est_all = sorted(res["estimator"].unique().tolist(), key=figures.natural_key)
    pick = state.control(st.multiselect, "Estimators", est_all, key="vm_exact_est", default=est_all, options=est_all)
    st.plotly_chart(figures.value_mse_vs_g_figure(res, pick, reuse=reuse), width="stretch", key="vm_exact")
    data.downloads(figures.value_mse_vs_g_table(res[res["estimator"].isin(pick)], reuse=reuse), "value_mse_vs_g", "exact")
