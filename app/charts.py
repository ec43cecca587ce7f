"""The dashboard's page-only charts and tables: pure functions of DataFrames, no Streamlit.

Figures the notebooks also show live in ``lab/figures.py``; these are the ones only a
dashboard page draws. Each ``*_table`` function computes the numbers its figure plots
(tested in tests/test_app_charts.py and offered for download on the page).
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from lab import figures

_NOT_CONFIG = {"key", "root", "path", "name", "status", "step", "problem", "error", "eval_accuracy",
               "reward_mean", "accuracy", "elapsed_s", "updated"}


def _hashable(v):
    if isinstance(v, float) and math.isnan(v):
        return None
    if isinstance(v, (list, tuple)):
        return tuple(_hashable(x) for x in v)
    if isinstance(v, dict):
        return tuple(sorted((k, _hashable(x)) for k, x in v.items()))
    return v


def config_fields(table: pd.DataFrame) -> list[str]:
    """The TrainConfig columns of a runs table (``lab.runs.list_runs``)."""
    return [c for c in table.columns if c not in _NOT_CONFIG]


def config_diff(table: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """The config fields that differ among the runs ``keys``: one row per field, one column per run.

    >>> t = pd.DataFrame({"key": ["a", "b"], "name": ["a", "b"], "estimator": ["grpo", "kae"], "seed": [0, 0]})
    >>> config_diff(t, ["a", "b"]).to_dict("index")
    {'estimator': {'a': 'grpo', 'b': 'kae'}}
    """
    rows = table.set_index("key").loc[list(keys)]
    out = {}
    for f in config_fields(table):
        vals = [_hashable(v) for v in rows[f].tolist()]
        if len(set(vals)) > 1:
            out[f] = {k: ("" if v is None else str(v) if isinstance(v, tuple) else v) for k, v in zip(keys, vals)}
    df = pd.DataFrame.from_dict(out, orient="index", columns=list(keys))
    df.index.name = "field"
    return df


def filter_runs(table: pd.DataFrame, field: str | None, values: Iterable, status: Iterable[str] | None = None,
                text: str = "") -> pd.DataFrame:
    """Rows whose ``field`` is one of ``values`` (all when empty), ``status`` in ``status``, name containing ``text``.

    >>> t = pd.DataFrame({"name": ["a", "b"], "status": ["finished", "failed"], "seed": [0, 1]})
    >>> filter_runs(t, "seed", [1])["name"].tolist(), filter_runs(t, None, [], ["finished"])["name"].tolist()
    (['b'], ['a'])
    """
    keep = pd.Series(True, index=table.index)
    values = list(values)
    if field and values:
        wanted = {_hashable(v) for v in values}
        keep &= table[field].map(lambda v: _hashable(v) in wanted)
    if status:
        keep &= table["status"].isin(list(status))
    if text:
        keep &= table["name"].astype(str).str.contains(text, case=False, regex=False)
    return table[keep]


def runs_overview_figure(table: pd.DataFrame, value: str = "eval_accuracy") -> go.Figure:
    """One bar per run: its last held-out accuracy (or ``value``), coloured by estimator.

    >>> t = pd.DataFrame({"key": ["a", "b"], "estimator": ["grpo", "kae"], "eval_accuracy": [0.5, None]})
    >>> [(tr.name, list(tr.x)) for tr in runs_overview_figure(t).data]
    [('grpo', ['a'])]
    """
    d = table[table[value].notna()] if value in table else table.iloc[0:0]
    fig = go.Figure()
    for i, (est, g) in enumerate(d.groupby(d["estimator"].astype(str), sort=True)):
        fig.add_trace(go.Bar(x=g["key"].tolist(), y=g[value].astype(float).tolist(), name=est,
                             marker_color=figures.COLORS[i % len(figures.COLORS)]))
    fig.update_layout(template="plotly_white", margin=dict(l=60, r=20, t=30, b=80), height=320,
                      legend=dict(orientation="h", yanchor="bottom", y=1.02, x=0))
    fig.update_yaxes(title_text=value.replace("_", " ") + " (last logged)")
    return fig


# --- advantages ---------------------------------------------------------------------------
def estimator_names(samples: pd.DataFrame, train_estimator: str) -> list[str]:
    """The training estimator then every shadow estimator with an ``advantage__<name>`` column.

    >>> estimator_names(pd.DataFrame(columns=["advantage", "advantage__rloo", "baseline__rloo"]), "grpo")
    ['grpo', 'rloo']
    """
    shadows = [c.split("__", 1)[1] for c in samples.columns if c.startswith("advantage__")]
    return [train_estimator] + [s for s in shadows if s != train_estimator]


def advantage_heatmap_table(samples: pd.DataFrame, column: str, nbins: int = 30) -> pd.DataFrame:
    """Fraction of each step's rollouts in each advantage bin (rows: steps; columns: bin centres).

    >>> s = pd.DataFrame({"step": [0, 0, 1, 1], "a": [-1.0, 1.0, 1.0, 1.0]})
    >>> advantage_heatmap_table(s, "a", nbins=2).values.tolist()
    [[0.5, 0.5], [0.0, 1.0]]
    """
    v = samples[column].to_numpy(dtype=float)
    finite = v[np.isfinite(v)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    edges = np.linspace(lo, hi, nbins + 1)
    centres = (edges[:-1] + edges[1:]) / 2
    rows = {}
    for step, g in samples.groupby("step", sort=True):
        x = g[column].to_numpy(dtype=float)
        x = x[np.isfinite(x)]
        counts, _ = np.histogram(x, bins=edges)
        rows[int(step)] = counts / max(1, x.size)
    out = pd.DataFrame.from_dict(rows, orient="index", columns=np.round(centres, 6))
    out.index.name = "step"
    return out


def advantage_heatmap(samples: pd.DataFrame, column: str, label: str, nbins: int = 30) -> go.Figure:
    """Heatmap over steps of one estimator's advantage distribution (colour: fraction of rollouts)."""
    t = advantage_heatmap_table(samples, column, nbins)
    fig = go.Figure(go.Heatmap(z=t.values.T, x=t.index.tolist(), y=list(t.columns), colorscale="Viridis",
                               colorbar=dict(title="fraction")))
    fig.update_layout(template="plotly_white", margin=dict(l=60, r=20, t=40, b=50), title=f"{label}: advantages over steps")
    fig.update_xaxes(title_text="step")
    fig.update_yaxes(title_text="advantage")
    return fig


def baseline_reward_table(samples: pd.DataFrame, estimators: Sequence[str], train_estimator: str) -> pd.DataFrame:
    """Long (estimator, reward, baseline) rows: each estimator's baseline of each rollout."""
    frames = []
    for n in estimators:
        col = figures.baseline_column(samples, n, train_estimator)
        frames.append(pd.DataFrame({"estimator": n, "reward": samples["reward"].to_numpy(dtype=float),
                                    "baseline": samples[col].to_numpy(dtype=float)}))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["estimator", "reward", "baseline"])


def baseline_reward_figure(table: pd.DataFrame) -> go.Figure:
    """Baseline against reward per estimator (rewards jittered a little sideways, y = x dashed)."""
    fig = go.Figure()
    rng = np.random.default_rng(0)  # fixed jitter: the same picture on every rerun
    for i, (n, g) in enumerate(table.groupby("estimator", sort=False)):
        jitter = rng.uniform(-0.04, 0.04, len(g))
        fig.add_trace(go.Scatter(x=g["reward"] + jitter, y=g["baseline"], mode="markers", name=str(n),
                                 marker=dict(color=figures.COLORS[i % len(figures.COLORS)], size=5, opacity=0.5)))
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="baseline = reward",
                             line=dict(color="#7f7f7f", dash="dash", width=1)))
    fig.update_layout(template="plotly_white", margin=dict(l=60, r=20, t=30, b=50))
    fig.update_xaxes(title_text="reward (jittered)")
    fig.update_yaxes(title_text="baseline")
    return fig


def zero_spread_table(samples: pd.DataFrame) -> pd.DataFrame:
    """Per step: prompt groups with ≥ 2 rollouts, and the fraction whose rewards are all equal.

    >>> s = pd.DataFrame({"step": [0, 0, 0, 0], "prompt_id": [1, 1, 2, 2], "reward": [1.0, 1.0, 0.0, 1.0]})
    >>> zero_spread_table(s).to_dict("records")
    [{'step': 0, 'groups': 2, 'zero_spread_frac': 0.5}]
    """
    g = samples.groupby(["step", "prompt_id"])["reward"].agg(["min", "max", "count"]).reset_index()
    g = g[g["count"] >= 2]
    g["zero"] = (g["max"] - g["min"]).abs() < 1e-12
    out = g.groupby("step").agg(groups=("zero", "size"), zero_spread_frac=("zero", "mean")).reset_index()
    out["groups"] = out["groups"].astype(int)
    return out


def zero_spread_figure(table: pd.DataFrame) -> go.Figure:
    fig = go.Figure(go.Scatter(x=table["step"], y=table["zero_spread_frac"], mode="lines+markers", name="zero spread"))
    fig.update_layout(template="plotly_white", margin=dict(l=60, r=20, t=30, b=50))
    fig.update_xaxes(title_text="step")
    fig.update_yaxes(title_text="fraction of groups with equal rewards", range=[0, 1])
    return fig


# --- value MSE ------------------------------------------------------------------------------
def truth_vs_baseline_figure(probes: pd.DataFrame, step: int, estimators: Iterable[str] | None = None) -> go.Figure:
    """Per probe prompt: Monte-Carlo truth V̂ (± SE) against each estimator's mean baseline."""
    p = probes[probes["step"] == step]
    if estimators is not None:
        p = p[p["estimator"].isin(list(estimators))]
    fig = go.Figure()
    for i, (n, g) in enumerate(p.groupby("estimator", sort=True)):
        fig.add_trace(go.Scatter(x=g["truth"], y=g["baseline_mean"], mode="markers", name=str(n),
                                 error_x=dict(type="data", array=g["truth_se"].tolist(), visible=True, thickness=1),
                                 marker=dict(color=figures.COLORS[i % len(figures.COLORS)], size=7, opacity=0.7)))
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="baseline = truth",
                             line=dict(color="#7f7f7f", dash="dash", width=1)))
    fig.update_layout(template="plotly_white", margin=dict(l=60, r=20, t=30, b=50))
    fig.update_xaxes(title_text=f"true value V̂ (Monte Carlo, step {step})")
    fig.update_yaxes(title_text="estimator's baseline (mean over the prompt's rollouts)")
    return fig


# --- groups ---------------------------------------------------------------------------------
def groups_table(samples: pd.DataFrame, train_estimator: str, shadow: str | None = None) -> pd.DataFrame:
    """One row per prompt group of a step's samples: prompt, answer, completions, rewards,
    baselines and advantages (training estimator, and ``shadow`` when given), zero-spread flag.

    >>> s = pd.DataFrame({"prompt_id": [3, 3], "rollout": [0, 1], "prompt": ["1+1="] * 2, "answer": ["2"] * 2,
    ...                   "completion": ["2", "3"], "reward": [1.0, 0.0], "baseline": [0.5, 0.5],
    ...                   "advantage": [0.5, -0.5]})
    >>> r = groups_table(s, "grpo").iloc[0]
    >>> r["completions"], r["rewards"], bool(r["zero_spread"]), float(r["reward_mean"])
    (['2', '3'], [1.0, 0.0], False, 0.5)
    """
    rows = []
    sort = ["prompt_id", "rollout"] if "rollout" in samples.columns else ["prompt_id"]
    for pid, g in samples.sort_values(sort).groupby("prompt_id", sort=True):
        r = g["reward"].to_numpy(dtype=float)
        row = {
            "prompt_id": pid,
            "prompt": str(g["prompt"].iloc[0]) if "prompt" in g else "",
            "answer": str(g["answer"].iloc[0]) if "answer" in g else "",
            "G": len(g),
            "reward_mean": float(r.mean()),
            "zero_spread": bool(len(g) >= 2 and np.ptp(r) < 1e-12),
            "completions": [str(c) for c in g["completion"]] if "completion" in g else [],
            "rewards": [float(x) for x in r],
            f"baseline ({train_estimator})": [round(float(x), 4) for x in g["baseline"]],
            f"advantage ({train_estimator})": [round(float(x), 4) for x in g["advantage"]],
        }
        if shadow and shadow != train_estimator:
            row[f"baseline ({shadow})"] = [round(float(x), 4) for x in g[figures.baseline_column(g, shadow)]]
            row[f"advantage ({shadow})"] = [round(float(x), 4) for x in g[figures.advantage_column(g, shadow)]]
        rows.append(row)
    return pd.DataFrame(rows)


def search_groups(table: pd.DataFrame, text: str) -> pd.DataFrame:
    """Groups whose prompt, answer or any completion contains ``text`` (case-insensitive)."""
    if not text:
        return table
    t = text.lower()
    hit = table.apply(lambda r: t in r["prompt"].lower() or t in r["answer"].lower()
                      or any(t in c.lower() for c in r["completions"]), axis=1)
    return table[hit]


def group_figure(group: pd.DataFrame, train_estimator: str, shadow: str | None = None) -> go.Figure:
    """One prompt group, rollout by rollout: reward, and the advantage each estimator gave it.

    >>> g = pd.DataFrame({"rollout": [0, 1], "reward": [1.0, 0.0], "advantage": [0.5, -0.5],
    ...                   "advantage__rloo": [1.0, -1.0]})
    >>> [(t.name, list(t.y)) for t in group_figure(g, "grpo", "rloo").data]
    [('reward', [1.0, 0.0]), ('advantage (grpo)', [0.5, -0.5]), ('advantage (rloo)', [1.0, -1.0])]
    """
    x = [f"rollout {int(r)}" for r in (group["rollout"] if "rollout" in group else range(len(group)))]
    fig = go.Figure()
    fig.add_trace(go.Bar(x=x, y=group["reward"].astype(float).tolist(), name="reward", marker_color="#7f7f7f"))
    fig.add_trace(go.Bar(x=x, y=group["advantage"].astype(float).tolist(), name=f"advantage ({train_estimator})",
                         marker_color=figures.COLORS[0]))
    if shadow and shadow != train_estimator:
        col = figures.advantage_column(group, shadow)
        fig.add_trace(go.Bar(x=x, y=group[col].astype(float).tolist(), name=f"advantage ({shadow})",
                             marker_color=figures.COLORS[1]))
    fig.update_layout(template="plotly_white", barmode="group", height=320, margin=dict(l=60, r=20, t=30, b=40),
                      legend=dict(orientation="h", yanchor="bottom", y=1.02, x=0))
    return fig


# --- clipping -------------------------------------------------------------------------------
def run_bounds_table(configs: dict[str, dict]) -> pd.DataFrame:
    """Each run's clip interval [l, u] from its config (measure, δ, clip-higher sides).

    >>> run_bounds_table({"r": {"clip_measure": "ratio", "clip_delta": 0.2, "loss": "ppo"}}).round(3).to_dict("records")
    [{'run': 'r', 'measure': 'ratio', 'delta': 0.2, 'low': 0.8, 'high': 1.2}]
    """
    from lab.losses import clip_bounds

    rows = []
    for run, c in configs.items():
        m, d = c.get("clip_measure"), c.get("clip_delta")
        if not m or d is None or c.get("loss") == "vanilla":
            continue
        try:
            lo, hi = clip_bounds(m, d, delta_low=c.get("clip_delta_low"), delta_high=c.get("clip_delta_high"))
        except (ValueError, KeyError):
            continue
        rows.append({"run": run, "measure": m, "delta": float(d), "low": lo, "high": hi})
    return pd.DataFrame(rows, columns=["run", "measure", "delta", "low", "high"])


def run_bounds_figure(table: pd.DataFrame) -> go.Figure:
    """The runs' trust regions as bars in ratio space (KL3's is longer above 1 than below)."""
    fig = go.Figure()
    for i, r in enumerate(table.itertuples(index=False)):
        label = f"{r.run}: {r.measure} δ={r.delta:.4g}"
        fig.add_trace(go.Scatter(x=[r.low, r.high], y=[label, label], mode="lines", name=str(r.run),
                                 line=dict(color=figures.COLORS[i % len(figures.COLORS)], width=14),
                                 hovertemplate=f"[{r.low:.4f}, {r.high:.4f}]: down {1 - r.low:.4f} / up {r.high - 1:.4f}<extra></extra>"))
    fig.update_layout(shapes=[figures.vline(1.0)])
    fig.update_layout(template="plotly_white", showlegend=False, height=120 + 45 * len(table),
                      margin=dict(l=60, r=20, t=30, b=50))
    fig.update_xaxes(title_text="ratio w = π_θ / π_old")
    return fig


def ratio_figure(metrics: pd.DataFrame, bounds: pd.DataFrame | None = None) -> go.Figure:
    """Ratio min / mean / max over steps per run, with the run's clip bounds dotted."""
    fig = go.Figure()
    shapes = []
    for i, (run, g) in enumerate(metrics.groupby("run", sort=True)):
        c = figures.COLORS[i % len(figures.COLORS)]
        g = g.sort_values("step")
        for col, dash, w in (("actor/ratio_max", "dot", 1), ("actor/ratio_mean", "solid", 2), ("actor/ratio_min", "dot", 1)):
            if col in g:
                fig.add_trace(go.Scatter(x=g["step"], y=g[col], mode="lines", name=f"{run} {col.split('_')[-1]}",
                                         line=dict(color=c, dash=dash, width=w), legendgroup=str(run)))
        if bounds is not None and len(b := bounds[bounds["run"] == run]):
            for v in (float(b["low"].iloc[0]), float(b["high"].iloc[0])):
                shapes.append(figures.hline(v, color=c, dash="dash"))
    fig.update_layout(template="plotly_white", margin=dict(l=60, r=20, t=30, b=50), shapes=shapes)
    fig.update_xaxes(title_text="step")
    fig.update_yaxes(title_text="ratio π_θ / π_old (dashed: clip bounds)")
    return fig
