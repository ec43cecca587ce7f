"""Tables that compare runs: what ``make demo`` prints and the dashboard will show.

All functions take :class:`lab.runs.Run` objects (from ``load_run``) and return DataFrames.
"""

from __future__ import annotations

import math

import pandas as pd

from lab.runs import Run


def run_summary(run: Run, *, window: int = 5) -> dict:
    """One row for a run: its config essentials, accuracy at start and end, and its status.

    ``acc_start``/``acc_end``: mean training accuracy over the first/last ``window`` steps;
    ``heldout_acc_start``/``heldout_acc_end``: ``eval/accuracy`` (fixed test prompts) at the
    first and last eval step;
    ``probe_acc_start``/``probe_acc_end``: Monte-Carlo accuracy on the probe prompts at the
    first and last probe step (when probes ran).
    """
    m = run.metrics
    row = {
        "run": run.name,
        "estimator": run.config.get("estimator"),
        "loss": run.config.get("loss"),
        "G": run.config.get("rollouts_per_prompt"),
        "steps": int(m["step"].max()) + 1 if "step" in m else 0,
        "status": run.status.get("status"),
    }
    if "reward/accuracy" in m:
        acc = m.sort_values("step")["reward/accuracy"]
        row["acc_start"] = float(acc.head(window).mean())
        row["acc_end"] = float(acc.tail(window).mean())
    if "eval/accuracy" in m:
        ev = m.dropna(subset=["eval/accuracy"]).sort_values("step")["eval/accuracy"]
        if len(ev):
            row["heldout_acc_start"] = float(ev.iloc[0])
            row["heldout_acc_end"] = float(ev.iloc[-1])
    if "probe/accuracy" in m:
        pa = m.dropna(subset=["probe/accuracy"]).sort_values("step")["probe/accuracy"]
        if len(pa):
            row["probe_acc_start"] = float(pa.iloc[0])
            row["probe_acc_end"] = float(pa.iloc[-1])
    row["minutes"] = float(m["perf/step_time_s"].sum() / 60) if "perf/step_time_s" in m else math.nan
    return row


def runs_table(runs: list[Run]) -> pd.DataFrame:
    """:func:`run_summary` for each run, one row each."""
    return pd.DataFrame([run_summary(r) for r in runs])


def heldout_curves(runs: list[Run]) -> pd.DataFrame:
    """Held-out accuracy (``eval/accuracy``) of each run (rows) at each eval step (columns).

    >>> from types import SimpleNamespace as NS
    >>> m = pd.DataFrame({"step": [0, 1, 2], "eval/accuracy": [0.25, float("nan"), 0.5]})
    >>> heldout_curves([NS(name="grpo", metrics=m)]).to_dict("index")
    {'grpo': {0: 0.25, 2: 0.5}}
    """
    rows = {}
    for r in runs:
        m = r.metrics
        if "eval/accuracy" not in m:
            continue
        ev = m.dropna(subset=["eval/accuracy"]).sort_values("step")
        rows[r.name] = dict(zip(ev["step"].astype(int), ev["eval/accuracy"].astype(float)))
    return pd.DataFrame.from_dict(rows, orient="index")


def value_mse_table(runs: list[Run], *, corrected: bool = True) -> pd.DataFrame:
    """Value MSE of every estimator (rows) in every run (columns), averaged over probe steps.

    Uses the probe records: mean over probe steps and prompts of (b − V̂)², minus the mean
    SE² of the Monte-Carlo truth when ``corrected`` (an unbiased estimate of E[(b − V)²]).
    """
    cols = {}
    for r in runs:
        p = r.probes
        if p.empty:
            continue
        g = p.groupby("estimator")
        mse = g["sq_err"].mean()
        if corrected:
            mse = mse - g["truth_se"].apply(lambda s: float((s**2).mean()))
        cols[r.name] = mse
    return pd.DataFrame(cols)


def sparkline(values, width: int = 24) -> str:
    """A unicode sparkline of a series (for terminal summaries).

    >>> sparkline([0, 1, 2, 3])
    '▁▃▆█'
    """
    vals = [float(v) for v in values if v == v]
    if not vals:
        return ""
    if len(vals) > width:
        k = len(vals) / width
        vals = [sum(vals[int(i * k): max(int((i + 1) * k), int(i * k) + 1)]) / max(int((i + 1) * k) - int(i * k), 1) for i in range(width)]
    lo, hi = min(vals), max(vals)
    bars = "▁▂▃▄▅▆▇█"
    if hi - lo < 1e-12:
        return bars[0] * len(vals)
    return "".join(bars[min(7, int((v - lo) / (hi - lo) * 7 + 0.5))] for v in vals)
