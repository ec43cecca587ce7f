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
    """Rows whose ``field`` is one of ``values`` (all when empty), ``status`` in ``status``, and
    whose key as shown (``<root label>/<name>``, e.g. ``demo/grpo``) contains ``text``.

    >>> t = pd.DataFrame({"key": ["demo/a", "x/b"], "name": ["a", "b"], "status": ["finished", "failed"], "seed": [0, 1]})
    >>> filter_runs(t, "seed", [1])["name"].tolist(), filter_runs(t, None, [], ["finished"])["name"].tolist()
    (['b'], ['a'])
    >>> filter_runs(t, None, [], text="demo")["key"].tolist()
    ['demo/a']
    """
    keep = pd.Series(True, index=table.index)
    values = list(values)
    if field and values:
        wanted = {_hashable(v) for v in values}
        keep &= table[field].map(lambda v: _hashable(v) in wanted)
    if status:
        keep &= table["status"].isin(list(status))
    if text:
        shown = table["key"] if "key" in table.columns else table["name"]
        keep &= shown.astype(str).str.contains(text, case=False, regex=False)
    return table[keep]


def runs_overview_figure(table: pd.DataFrame, value: str = "eval_accuracy",
                         colors: dict[str, str] | None = None) -> go.Figure:
    """One bar per run: its last held-out accuracy (or ``value``), in the run's own colour
    (``colors``: run key -> colour, else :func:`lab.figures.series_colors`); hover names its estimator.

    >>> t = pd.DataFrame({"key": ["a", "b"], "estimator": ["grpo", "kae"], "eval_accuracy": [0.5, None]})
    >>> [(tr.name, list(tr.x)) for tr in runs_overview_figure(t).data]
    [('eval_accuracy', ['a'])]
    """
    d = table[table[value].notna()] if value in table else table.iloc[0:0]
    keys = d["key"].astype(str).tolist()
    palette = colors if colors is not None and all(k in colors for k in keys) else figures.series_colors(keys, colors)
    fig = go.Figure(go.Bar(x=keys, y=d[value].astype(float).tolist(), name=value,
                           marker_color=[palette[k] for k in keys], customdata=d["estimator"].astype(str).tolist(),
                           hovertemplate="%{x} (%{customdata}): %{y:.3f}<extra></extra>"))
    fig.update_layout(template="plotly_white", margin=dict(l=60, r=20, t=30, b=80), height=320, showlegend=False)
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
    palette = figures.estimator_colors(table["estimator"].astype(str).unique())
    for n, g in table.groupby("estimator", sort=False):
        jitter = rng.uniform(-0.04, 0.04, len(g))
        fig.add_trace(go.Scatter(x=g["reward"] + jitter, y=g["baseline"], mode="markers", name=str(n),
                                 marker=dict(color=palette[str(n)], size=5, opacity=0.5)))
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="baseline = reward",
                             line=dict(color=figures.GREY, dash="dash", width=1)))
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
    palette = figures.estimator_colors(p["estimator"].astype(str).unique())
    for n, g in p.groupby("estimator", sort=True):
        fig.add_trace(go.Scatter(x=g["truth"], y=g["baseline_mean"], mode="markers", name=str(n),
                                 error_x=dict(type="data", array=g["truth_se"].tolist(), visible=True, thickness=1),
                                 marker=dict(color=palette[str(n)], size=7, opacity=0.7)))
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="baseline = truth",
                             line=dict(color=figures.GREY, dash="dash", width=1)))
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
    palette = figures.estimator_colors([train_estimator] + ([shadow] if shadow else []))
    fig.add_trace(go.Bar(x=x, y=group["reward"].astype(float).tolist(), name="reward", marker_color=figures.GREY))
    fig.add_trace(go.Bar(x=x, y=group["advantage"].astype(float).tolist(), name=f"advantage ({train_estimator})",
                         marker_color=palette[train_estimator]))
    if shadow and shadow != train_estimator:
        col = figures.advantage_column(group, shadow)
        fig.add_trace(go.Bar(x=x, y=group[col].astype(float).tolist(), name=f"advantage ({shadow})",
                             marker_color=palette[shadow]))
    fig.update_layout(template="plotly_white", barmode="group", height=320, margin=dict(l=60, r=20, t=30, b=40),
                      legend=dict(orientation="h", yanchor="bottom", y=1.02, x=0))
    return fig


# --- clipping -------------------------------------------------------------------------------
def run_bounds_table(configs: dict[str, dict]) -> pd.DataFrame:
    """Each run's clip interval [l, u] from its config (measure, δ, clip-higher sides); runs
    whose loss rule ignores the bounds (the rule registry's ``uses_bounds``, e.g. ``vanilla``)
    or whose config names no known measure or rule are left out.

    >>> run_bounds_table({"r": {"clip_measure": "ratio", "clip_delta": 0.2, "loss": "ppo"},
    ...                   "v": {"clip_measure": "ratio", "clip_delta": 0.2, "loss": "vanilla"}}).round(3).to_dict("records")
    [{'run': 'r', 'measure': 'ratio', 'delta': 0.2, 'low': 0.8, 'high': 1.2}]
    """
    from lab.losses import RULES, clip_bounds

    rows = []
    for run, c in configs.items():
        m, d, loss = c.get("clip_measure"), c.get("clip_delta"), c.get("loss")
        if not m or d is None:
            continue
        try:
            if loss is not None and not RULES.get(loss).uses_bounds:
                continue
            lo, hi = clip_bounds(m, d, delta_low=c.get("clip_delta_low"), delta_high=c.get("clip_delta_high"))
        except (ValueError, KeyError, LookupError):
            continue
        rows.append({"run": run, "measure": m, "delta": float(d), "low": lo, "high": hi})
    return pd.DataFrame(rows, columns=["run", "measure", "delta", "low", "high"])


def run_bounds_figure(table: pd.DataFrame, colors: dict[str, str] | None = None, space: str = "both") -> go.Figure:
    """The runs' trust regions on one shared axis, in ratio and in log-ratio space
    (:func:`lab.figures.trust_region_bars`): KL3's arm above 1 is longer than below."""
    t = table.assign(label=[f"{r.run}: {r.measure} δ={r.delta:.4g}" for r in table.itertuples()], name=table["run"])
    return figures.trust_region_bars(t, "label", space=space, colors=colors)


def ratio_figure(metrics: pd.DataFrame, bounds: pd.DataFrame | None = None, colors: dict[str, str] | None = None,
                 panels: bool = False) -> go.Figure:
    """Ratio min / mean / max over steps per run, with the run's clip bounds dashed.

    ``panels``: one panel per run side by side on one shared y axis (so the bounds of a
    ratio-clip and a KL3-clip run compare by height); else all runs overlaid.

    >>> m = pd.DataFrame({"run": ["a", "b"], "step": [0, 0], "actor/ratio_mean": [1.0, 1.1]})
    >>> fig = ratio_figure(m, panels=True)
    >>> [t.name for t in fig.data], fig.layout.yaxis2.matches
    (['a mean', 'b mean'], 'y')
    """
    runs = sorted(metrics["run"].astype(str).unique(), key=figures.natural_key)
    palette = colors if colors is not None and all(r in colors for r in runs) else figures.series_colors(runs, colors)
    if panels and len(runs) > 1:
        from plotly.subplots import make_subplots

        fig = make_subplots(rows=1, cols=len(runs), shared_yaxes=True, subplot_titles=runs, horizontal_spacing=0.03)
        fig.update_yaxes(matches="y")
    else:
        fig = go.Figure()
    shapes = []
    for k, run in enumerate(runs):
        g = metrics[metrics["run"].astype(str) == run].sort_values("step")
        c = palette[run]
        cell = dict(row=1, col=k + 1) if panels and len(runs) > 1 else {}
        yref = "y" if not cell or k == 0 else f"y{k + 1}"
        for col, dash, w in (("actor/ratio_max", "dot", 1), ("actor/ratio_mean", "solid", 2), ("actor/ratio_min", "dot", 1)):
            if col in g:
                fig.add_trace(go.Scatter(x=g["step"], y=g[col], mode="lines", name=f"{run} {col.split('_')[-1]}",
                                         line=dict(color=c, dash=dash, width=w), legendgroup=run), **cell)
        if bounds is not None and len(b := bounds[bounds["run"] == run]):
            for v in (float(b["low"].iloc[0]), float(b["high"].iloc[0])):
                shapes.append(figures.hline(v, yref=yref, color=c, dash="dash"))
    fig.update_layout(template="plotly_white", margin=dict(l=60, r=20, t=40, b=50), shapes=shapes,
                      hovermode="x unified", legend=dict(orientation="h", yanchor="bottom", y=1.08, x=0))
    fig.update_xaxes(title_text="step")
    fig.update_yaxes(title_text="ratio π_θ / π_old (dashed: clip bounds)", row=1, col=1) if panels and len(runs) > 1 \
        else fig.update_yaxes(title_text="ratio π_θ / π_old (dashed: clip bounds)")
    return fig


# --- curves ---------------------------------------------------------------------------------
METRIC_RANGES = (
    ("*accuracy", (0.0, 1.0)),
    ("*_frac", (0.0, 1.0)),
    ("*_frac_*", (0.0, 1.0)),
)
"""(name pattern, possible range) of bounded metrics (docs/metrics.md): bands are clipped to it. Kept here, not
beside the names in ``lab/train/records.py``: that module imports torch (seconds), which no page but Clipping
loads (it asks the policy rules which ones use clip bounds; a test holds the other pages to that)."""


def metric_range(metric: str) -> tuple[float, float] | None:
    """The possible range of ``metric`` (``METRIC_RANGES``), None when unbounded.

    >>> metric_range("eval/accuracy"), metric_range("actor/clip_frac_low"), metric_range("reward/mean")
    ((0.0, 1.0), (0.0, 1.0), None)
    """
    from fnmatch import fnmatchcase

    return next((r for pat, r in METRIC_RANGES if fnmatchcase(metric, pat)), None)


REPLICATE_FIELDS = ("seed", "run_name", "output_dir")
"""Config fields expected to differ between the runs of one group (replicates of one setting)."""


def group_differences(table: pd.DataFrame, groups: dict[str, Sequence[str]]) -> pd.DataFrame:
    """Config fields other than ``REPLICATE_FIELDS`` that differ between the runs of each
    group: one row per (group, field) with the values (one per run, comma-separated).

    >>> t = pd.DataFrame({"key": ["a", "b", "c"], "name": ["a", "b", "c"], "estimator": ["g", "g", "k"],
    ...                   "seed": [0, 1, 0], "prompts_per_step": [32, 8, 8]})
    >>> group_differences(t, {"g": ["a", "b"], "k": ["c"]}).to_dict("records")
    [{'group': 'g', 'field': 'prompts_per_step', 'values': '32, 8', 'runs': 'a, b'}]
    """
    rows = []
    for group, keys in groups.items():
        keys = list(keys)
        if len(keys) < 2:
            continue
        diff = config_diff(table, keys)
        for field in diff.index:
            if field in REPLICATE_FIELDS:
                continue
            rows.append({"group": str(group), "field": field, "values": ", ".join(str(v) for v in diff.loc[field]),
                         "runs": ", ".join(keys)})
    return pd.DataFrame(rows, columns=["group", "field", "values", "runs"])
