"""Value MSE: each estimator's baseline against Monte-Carlo truth over steps, per prompt, and
the exact-value results (MSE against G) of the claims benchmark."""

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
    ests = sorted(probes["estimator"].unique().tolist())
    c1, c2 = st.columns([4, 1])
    chosen = c1.multiselect("Estimators", ests, default=ests[: min(5, len(ests))], key="vm_est")
    log_y = c2.checkbox("log y", key="vm_log")
    sub = probes[probes["estimator"].isin(chosen)]
    st.plotly_chart(figures.value_mse_figure(sub, series="run", log_y=log_y), width="stretch", key="vm_chart")
    data.downloads(figures.value_mse_table(sub, by=("run", "step", "estimator")), "value_mse", "vm")

    st.subheader("Per prompt at one step")
    c1, c2 = st.columns(2)
    run_key = c1.selectbox("Run", sorted(probes["run"].unique()), key="vm_run")
    pr = probes[probes["run"] == run_key]
    steps = sorted(pr["step"].unique().tolist())
    step = c2.select_slider("Probe step", steps, value=steps[-1], key=f"vm_step_{run_key}")
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
    reuse = st.selectbox("Prompt reuse J (each prompt revisited for J consecutive steps)", reuses, key="vm_exact_reuse")
    est_all = sorted(res["estimator"].unique().tolist())
    pick = st.multiselect("Estimators", est_all, default=est_all, key="vm_exact_est")
    st.plotly_chart(figures.value_mse_vs_g_figure(res, pick, reuse=reuse), width="stretch", key="vm_exact")
    data.downloads(figures.value_mse_vs_g_table(res[res["estimator"].isin(pick)], reuse=reuse), "value_mse_vs_g", "exact")
