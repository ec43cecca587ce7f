"""Plotly figures shared by the dashboard (``app/``) and the notebooks: one chart, one builder.

Every builder is a pure function ``(DataFrame, ...) -> plotly.graph_objects.Figure``: it
never reads files, never mutates its input, and the numbers it draws come from a small
table function next to it (``band_table``, ``value_mse_table``, ...) that tests check
and the dashboard offers for download.

Column conventions are those of the run format (``docs/run-format.md``):

* curves take a *long* frame: one row per (series, x) with a ``value`` column;
* samples carry the training estimator's ``baseline`` / ``advantage`` and every shadow
  estimator's ``baseline__<name>`` / ``advantage__<name>`` on the same rollouts;
* probes carry ``step, prompt_id, estimator, truth, truth_se, sq_err``.

>>> import pandas as pd
>>> df = pd.DataFrame({"run": ["a", "a", "b", "b"], "step": [0, 1, 0, 1], "value": [1.0, 2.0, 3.0, 4.0]})
>>> fig = curves_figure(df, smoothing=0.5)
>>> [t.name for t in fig.data]   # each smoothed line has its raw curve faint behind it
['a (raw)', 'a', 'b (raw)', 'b']
"""

from __future__ import annotations

import math
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

__all__ = [
    "ema", "band_table", "curves_figure",
    "advantage_column", "baseline_column", "advantage_histogram", "advantage_scatter",
    "value_mse_table", "value_mse_figure", "value_mse_vs_g_table", "value_mse_vs_g_figure",
    "trust_region_table", "trust_region_figure", "clip_fraction_figure", "COLORS", "vline", "hline",
]

COLORS = (
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
    "#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#393b79", "#637939",
)
"""The lab's colour cycle (plotly's D3 order, so the notebooks' matplotlib figures match)."""


def _color(i: int) -> str:
    return COLORS[i % len(COLORS)]


def _faint(hex_color: str, alpha: float) -> str:
    h = hex_color.lstrip("#")
    r, g, b = (int(h[i:i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


def _layout(fig: go.Figure, *, title: str | None, x: str, y: str, log_y: bool = False) -> go.Figure:
    fig.update_layout(
        title=title, template="plotly_white", margin=dict(l=60, r=20, t=50 if title else 20, b=50),
        legend=dict(orientation="h", yanchor="bottom", y=1.02, xanchor="left", x=0), hovermode="closest",
    )
    fig.update_xaxes(title_text=x)
    fig.update_yaxes(title_text=y, type="log" if log_y else "linear")
    return fig


# --- smoothing ------------------------------------------------------------------------------
def ema(values: Sequence[float] | np.ndarray, smoothing: float) -> np.ndarray:
    """TensorBoard's debiased exponential moving average of a curve.

    With weight s = ``smoothing`` in [0, 1): ``m_k = s·m_{k−1} + (1 − s)·v_k`` from
    ``m_0 = 0``, reported as ``m_k / (1 − s^n)`` where n counts the finite values so far
    (the division removes the pull towards 0 of the first points). Non-finite values are
    passed through unchanged and do not enter the average. ``smoothing = 0`` returns the
    values as they are.

    Shapes: values (T,) -> (T,) float64.

    >>> ema([1.0, 2.0, 3.0], 0.5).tolist()   # 1, (0.25+1)/0.75, (0.625+1.5)/0.875
    [1.0, 1.6666666666666667, 2.4285714285714284]
    >>> ema([1.0, float("nan"), 3.0], 0.5).tolist()
    [1.0, nan, 2.3333333333333335]
    """
    v = np.asarray(values, dtype=np.float64)  # (T,)
    if not (0.0 <= smoothing < 1.0):
        raise ValueError(f"smoothing must be in [0, 1), got {smoothing!r}")
    if smoothing == 0.0 or v.size == 0:
        return v.copy()
    out = np.empty_like(v)  # (T,)
    last, n = 0.0, 0
    for i, x in enumerate(v):
        if not math.isfinite(x):
            out[i] = x
            continue
        last = smoothing * last + (1.0 - smoothing) * x
        n += 1
        out[i] = last / (1.0 - smoothing**n)
    return out


# --- curves -------------------------------------------------------------------------------
def _t975(n: int) -> float:
    """Two-sided 95% Student-t quantile with n − 1 degrees of freedom (nan for n < 2)."""
    if n < 2:
        return float("nan")
    from scipy.stats import t

    return float(t.ppf(0.975, n - 1))


def band_table(df: pd.DataFrame, x: str = "step", y: str = "value", series: str = "run",
               band_by: str = "estimator", smoothing: float = 0.0) -> pd.DataFrame:
    """Mean ± 95% confidence band across the series (e.g. seeds) of each ``band_by`` group.

    Each series is EMA-smoothed first (``smoothing``), then at every x value the series of a
    group that have a finite value there are averaged: ``mean``, ``lo``/``hi`` = mean ∓
    t₀.₉₇₅(n − 1)·sd/√n (sample sd; no band where n = 1) and ``n``. Series are aligned on
    exact x values, so use ``x="step"`` (or a binned time) for bands.

    Shapes: df (R rows, long) -> one row per (group, x): columns [band_by, x, mean, lo, hi, n].

    >>> df = pd.DataFrame({"run": ["a", "a", "b", "b"], "estimator": ["g", "g", "g", "g"],
    ...                    "step": [0, 1, 0, 1], "value": [1.0, 2.0, 3.0, 2.0]})
    >>> band_table(df).round(3).to_dict("records")[0]
    {'estimator': 'g', 'step': 0, 'mean': 2.0, 'lo': -10.706, 'hi': 14.706, 'n': 2}
    """
    _need(df, [x, y, series, band_by], "band_table")
    parts = []
    for _, g in df.sort_values([series, x]).groupby(series, sort=False):
        g = g[[band_by, x, y]].copy()
        g[y] = ema(g[y].to_numpy(dtype=float), smoothing)
        parts.append(g)
    if not parts:
        return pd.DataFrame(columns=[band_by, x, "mean", "lo", "hi", "n"])
    long = pd.concat(parts, ignore_index=True)
    long = long[np.isfinite(long[y].to_numpy(dtype=float))]
    agg = long.groupby([band_by, x], sort=True)[y].agg(["mean", "std", "count"]).reset_index()
    half = np.array([_t975(int(n)) for n in agg["count"]]) * agg["std"].to_numpy() / np.sqrt(agg["count"].to_numpy())
    agg["lo"] = agg["mean"] - half
    agg["hi"] = agg["mean"] + half
    agg = agg.rename(columns={"count": "n"})
    agg["n"] = agg["n"].astype(int)
    return agg[[band_by, x, "mean", "lo", "hi", "n"]]


def curves_figure(df: pd.DataFrame, x: str = "step", y: str = "value", series: str = "run",
                  smoothing: float = 0.0, log_y: bool = False, band_by: str | None = None,
                  *, title: str | None = None, y_label: str | None = None) -> go.Figure:
    """Overlay of curves from a long frame: one line per ``series`` (or per ``band_by`` group).

    With ``smoothing`` > 0 each line is the TensorBoard EMA (:func:`ema`) with the raw curve
    drawn faint behind it. With ``band_by`` (a column such as ``estimator``) the series of
    each group are combined into their mean with a 95% band (:func:`band_table`).

    >>> df = pd.DataFrame({"run": list("aabb"), "estimator": list("gggg"),
    ...                    "step": [0, 1, 0, 1], "value": [1.0, 2.0, 3.0, 2.0]})
    >>> [t.name for t in curves_figure(df, band_by="estimator").data]
    ['g (n=2)', 'g 95% band']
    """
    _need(df, [x, y, series] + ([band_by] if band_by else []), "curves_figure")
    fig = go.Figure()
    if band_by:
        table = band_table(df, x=x, y=y, series=series, band_by=band_by, smoothing=smoothing)
        for i, (name, g) in enumerate(table.groupby(band_by, sort=True)):
            c = _color(i)
            n = int(g["n"].max()) if len(g) else 0
            fig.add_trace(go.Scatter(x=g[x], y=g["mean"], mode="lines", name=f"{name} (n={n})",
                                     line=dict(color=c, width=2), legendgroup=str(name)))
            band = g[np.isfinite(g["lo"].to_numpy(dtype=float))]
            if len(band):
                fig.add_trace(go.Scatter(
                    x=np.concatenate([band[x].to_numpy(), band[x].to_numpy()[::-1]]),
                    y=np.concatenate([band["hi"].to_numpy(), band["lo"].to_numpy()[::-1]]),
                    fill="toself", fillcolor=_faint(c, 0.18), line=dict(width=0), hoverinfo="skip",
                    name=f"{name} 95% band", legendgroup=str(name), showlegend=False))
    else:
        for i, (name, g) in enumerate(df.sort_values([series, x]).groupby(series, sort=False)):
            c = _color(i)
            raw = g[y].to_numpy(dtype=float)
            if smoothing > 0:
                fig.add_trace(go.Scatter(x=g[x], y=raw, mode="lines", line=dict(color=_faint(c, 0.25), width=1),
                                         name=f"{name} (raw)", legendgroup=str(name), showlegend=False,
                                         hoverinfo="skip"))
            fig.add_trace(go.Scatter(x=g[x], y=ema(raw, smoothing), mode="lines", name=str(name),
                                     line=dict(color=c, width=2), legendgroup=str(name)))
    return _layout(fig, title=title, x=x, y=y_label or y, log_y=log_y)


# --- advantages ---------------------------------------------------------------------------
def _resolve(samples: pd.DataFrame, name: str, kind: str, train_estimator: str | None) -> str:
    shadow = f"{kind}__{name}"
    if shadow in samples.columns:
        return shadow
    if name in (kind, train_estimator) and kind in samples.columns:
        return kind
    have = ([train_estimator] if train_estimator and kind in samples.columns else []) + \
        [c.split("__", 1)[1] for c in samples.columns if c.startswith(f"{kind}__")]
    raise KeyError(f"no {kind} column for estimator {name!r}; this table has: {', '.join(have) or 'none'}")


def advantage_column(samples: pd.DataFrame, name: str, train_estimator: str | None = None) -> str:
    """The samples column holding ``name``'s advantages: ``advantage__<name>``, or ``advantage``
    for the training estimator (``name == train_estimator`` or ``name == "advantage"``).

    >>> s = pd.DataFrame({"advantage": [0.5], "advantage__rloo": [0.1]})
    >>> advantage_column(s, "grpo", "grpo"), advantage_column(s, "rloo")
    ('advantage', 'advantage__rloo')
    """
    return _resolve(samples, name, "advantage", train_estimator)


def baseline_column(samples: pd.DataFrame, name: str, train_estimator: str | None = None) -> str:
    """Like :func:`advantage_column` for baselines (``baseline`` / ``baseline__<name>``)."""
    return _resolve(samples, name, "baseline", train_estimator)


def advantage_histogram(samples: pd.DataFrame, estimators: Iterable[str], step: int | None = None, *,
                        train_estimator: str | None = None, nbins: int = 40,
                        title: str | None = None) -> go.Figure:
    """Overlaid histograms of each estimator's advantages on the same rollouts.

    ``samples`` is a samples table (one row per rollout); ``step`` keeps only that step
    (None: all rows). Every histogram shares one set of bins, so the bars compare directly.

    >>> s = pd.DataFrame({"step": [0, 0, 1, 1], "advantage": [-1.0, 1.0, -0.5, 0.5],
    ...                   "advantage__rloo": [-2.0, 2.0, -1.0, 1.0]})
    >>> fig = advantage_histogram(s, ["grpo", "rloo"], step=0, train_estimator="grpo")
    >>> [(t.name, t.x.tolist()) for t in fig.data]
    [('grpo', [-1.0, 1.0]), ('rloo', [-2.0, 2.0])]
    """
    if step is not None:
        _need(samples, ["step"], "advantage_histogram")
        samples = samples[samples["step"] == step]
    names = list(estimators)
    cols = [advantage_column(samples, n, train_estimator) for n in names]
    vals = [samples[c].to_numpy(dtype=float) for c in cols]
    finite = np.concatenate([v[np.isfinite(v)] for v in vals]) if vals else np.array([])
    fig = go.Figure()
    if finite.size:
        lo, hi = float(finite.min()), float(finite.max())
        size = (hi - lo) / nbins if hi > lo else 1.0
        for i, (n, v) in enumerate(zip(names, vals)):
            fig.add_trace(go.Histogram(x=v, name=n, opacity=0.55, marker_color=_color(i),
                                       xbins=dict(start=lo - 1e-9, end=hi + size, size=size)))
    fig.update_layout(barmode="overlay")
    label = "advantage" + (f" (step {step})" if step is not None else "")
    return _layout(fig, title=title, x=label, y="rollouts")


def advantage_scatter(samples: pd.DataFrame, est_x: str, est_y: str, *, train_estimator: str | None = None,
                      color: str | None = "reward", title: str | None = None) -> go.Figure:
    """Each rollout's advantage under ``est_x`` against ``est_y`` (same rollouts), y = x dashed.

    >>> s = pd.DataFrame({"advantage": [-1.0, 1.0], "advantage__rloo": [-2.0, 2.0], "reward": [0.0, 1.0]})
    >>> fig = advantage_scatter(s, "grpo", "rloo", train_estimator="grpo")
    >>> list(fig.data[0].x), list(fig.data[0].y)
    ([-1.0, 1.0], [-2.0, 2.0])
    """
    cx, cy = advantage_column(samples, est_x, train_estimator), advantage_column(samples, est_y, train_estimator)
    xv, yv = samples[cx].to_numpy(dtype=float), samples[cy].to_numpy(dtype=float)
    marker = dict(size=6, opacity=0.6)
    if color and color in samples.columns:
        marker.update(color=samples[color].to_numpy(dtype=float), colorscale="Viridis", showscale=True,
                      colorbar=dict(title=color))
    hover = None
    if "prompt" in samples.columns:
        hover = samples["prompt"].astype(str).tolist()
    fig = go.Figure(go.Scatter(x=list(xv), y=list(yv), mode="markers", marker=marker, name="rollouts", text=hover))
    both = np.concatenate([xv, yv])
    both = both[np.isfinite(both)]
    if both.size:
        lo, hi = float(both.min()), float(both.max())
        fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="y = x",
                                 line=dict(color="#7f7f7f", dash="dash", width=1)))
    return _layout(fig, title=title, x=f"advantage: {est_x}", y=f"advantage: {est_y}")


# --- value MSE ------------------------------------------------------------------------------
def value_mse_table(probes: pd.DataFrame, by: Sequence[str] = ("step", "estimator")) -> pd.DataFrame:
    """Corrected value MSE with its standard error from a probes table.

    Per group of ``by`` (add ``"run"`` for several runs): ``mse = mean(sq_err) −
    mean(truth_se²)`` (unbiased for E[(b − V)²], as the metric
    ``probe/value_mse_corrected/<est>``), ``se`` = sd of (sq_err − truth_se²) over the
    probe prompts / √n, and ``n`` prompts.

    Shapes: probes (R rows) -> one row per group: [*by, mse, se, n].

    >>> p = pd.DataFrame({"step": [0, 0], "estimator": ["grpo", "grpo"], "sq_err": [0.1, 0.3],
    ...                   "truth_se": [0.1, 0.1]})
    >>> value_mse_table(p).round(4).to_dict("records")
    [{'step': 0, 'estimator': 'grpo', 'mse': 0.19, 'se': 0.1, 'n': 2}]
    """
    by = list(by)
    _need(probes, by + ["sq_err", "truth_se"], "value_mse_table")
    d = probes[by].copy()
    d["e"] = probes["sq_err"].to_numpy(dtype=float) - probes["truth_se"].to_numpy(dtype=float) ** 2
    agg = d.groupby(by, sort=True)["e"].agg(["mean", "std", "count"]).reset_index()
    agg["se"] = agg["std"] / np.sqrt(agg["count"])
    agg = agg.rename(columns={"mean": "mse", "count": "n"})
    agg["n"] = agg["n"].astype(int)
    return agg[by + ["mse", "se", "n"]]


def _metrics_value_mse(metrics: pd.DataFrame, series: str | None) -> pd.DataFrame:
    prefix = "probe/value_mse_corrected/"
    cols = [c for c in metrics.columns if c.startswith(prefix)]
    keep = ["step"] + ([series] if series and series in metrics.columns else [])
    long = metrics[keep + cols].melt(id_vars=keep, var_name="estimator", value_name="mse").dropna(subset=["mse"])
    long["estimator"] = long["estimator"].str.slice(len(prefix))
    long["se"] = np.nan
    return long


def value_mse_figure(metrics_or_probes_df: pd.DataFrame, estimators: Iterable[str] | None = None, *,
                     series: str | None = "run", log_y: bool = False, title: str | None = None) -> go.Figure:
    """Each estimator's corrected probe value MSE over steps, with a ±1 SE band.

    Takes a probes table (columns ``step, estimator, sq_err, truth_se``: the band comes from
    :func:`value_mse_table`) or a metrics table (``probe/value_mse_corrected/<est>``
    columns: lines only, the metrics hold no SE). With a ``series`` column (e.g. ``run``)
    each (run, estimator) is its own line. ``estimators`` keeps only those.

    >>> p = pd.DataFrame({"step": [0, 0, 5, 5], "estimator": ["grpo"] * 4,
    ...                   "sq_err": [0.1, 0.3, 0.1, 0.1], "truth_se": [0.0] * 4})
    >>> fig = value_mse_figure(p)
    >>> [t.name for t in fig.data], fig.data[0].y.tolist()
    (['grpo', 'grpo ± SE'], [0.2, 0.1])
    """
    df = metrics_or_probes_df
    use_series = bool(series) and series in df.columns
    if "sq_err" in df.columns:
        table = value_mse_table(df, by=([series] if use_series else []) + ["step", "estimator"])
    else:
        _need(df, ["step"], "value_mse_figure")
        table = _metrics_value_mse(df, series if use_series else None)
    if estimators is not None:
        table = table[table["estimator"].isin(list(estimators))]
    fig = go.Figure()
    keys = ([series] if use_series else []) + ["estimator"]
    for i, (key, g) in enumerate(table.sort_values(keys + ["step"]).groupby(keys, sort=True)):
        name = " · ".join(str(k) for k in (key if isinstance(key, tuple) else (key,)))
        c = _color(i)
        fig.add_trace(go.Scatter(x=g["step"], y=g["mse"], mode="lines+markers", name=name,
                                 line=dict(color=c, width=2), legendgroup=name))
        band = g[np.isfinite(g["se"].to_numpy(dtype=float))]
        if len(band):
            hi = (band["mse"] + band["se"]).to_numpy()
            lo = (band["mse"] - band["se"]).to_numpy()
            if log_y:
                lo = np.maximum(lo, hi * 1e-3)
            fig.add_trace(go.Scatter(x=np.concatenate([band["step"].to_numpy(), band["step"].to_numpy()[::-1]]),
                                     y=np.concatenate([hi, lo[::-1]]), fill="toself", fillcolor=_faint(c, 0.15),
                                     line=dict(width=0), hoverinfo="skip", name=f"{name} ± SE",
                                     legendgroup=name, showlegend=False))
    return _layout(fig, title=title, x="step", y="value MSE (corrected)", log_y=log_y)


def value_mse_vs_g_table(results: pd.DataFrame, reuse: int | None = None) -> pd.DataFrame:
    """Mean exact value MSE over seeds per (estimator, G), with its SE and the seed count.

    ``results`` is the exact-value results file (``data/results/value_mse.csv``: columns
    ``estimator, group_size, seed, value_mse`` and, since prompt reuse was added, ``reuse``,
    the J of each row). Rows of different J are different experiments, so they are never
    averaged together: pass ``reuse=J`` to pick one, or a frame that holds a single J.

    >>> r = pd.DataFrame({"estimator": ["grpo"] * 2, "group_size": [2, 2], "seed": [0, 1],
    ...                   "value_mse": [0.1, 0.3]})
    >>> value_mse_vs_g_table(r).round(4).to_dict("records")
    [{'estimator': 'grpo', 'group_size': 2, 'mse': 0.2, 'se': 0.1, 'n': 2}]
    """
    _need(results, ["estimator", "group_size", "value_mse"], "value_mse_vs_g_table")
    if "reuse" in results.columns:
        if reuse is not None:
            results = results[results["reuse"] == reuse]
        elif results["reuse"].nunique() > 1:
            raise ValueError(f"value_mse_vs_g_table: the results mix prompt reuse J = {sorted(results['reuse'].unique().tolist())}; "
                             "pass reuse=J to pick one")
    elif reuse is not None and reuse != 1:
        raise ValueError("value_mse_vs_g_table: these results have no 'reuse' column (J = 1 only)")
    agg = results.groupby(["estimator", "group_size"], sort=True)["value_mse"].agg(["mean", "std", "count"]).reset_index()
    agg["se"] = agg["std"] / np.sqrt(agg["count"])
    agg = agg.rename(columns={"mean": "mse", "count": "n"})
    agg["n"] = agg["n"].astype(int)
    return agg[["estimator", "group_size", "mse", "se", "n"]]


def value_mse_vs_g_figure(results_df: pd.DataFrame, estimators: Iterable[str] | None = None, *,
                          reuse: int | None = None, title: str | None = None) -> go.Figure:
    """Exact value MSE against the group size G, one line per estimator, log-log, ±1 SE bars.

    >>> r = pd.DataFrame({"estimator": ["grpo"] * 4, "group_size": [2, 2, 4, 4], "seed": [0, 1, 0, 1],
    ...                   "value_mse": [0.1, 0.3, 0.05, 0.07]})
    >>> fig = value_mse_vs_g_figure(r)
    >>> fig.data[0].name, [round(v, 3) for v in fig.data[0].y], fig.layout.yaxis.type
    ('grpo', [0.2, 0.06], 'log')
    """
    table = value_mse_vs_g_table(results_df, reuse)
    if estimators is not None:
        table = table[table["estimator"].isin(list(estimators))]
    fig = go.Figure()
    for i, (name, g) in enumerate(table.groupby("estimator", sort=True)):
        fig.add_trace(go.Scatter(x=g["group_size"].tolist(), y=g["mse"].tolist(), mode="lines+markers", name=str(name),
                                 line=dict(color=_color(i)),
                                 error_y=dict(type="data", array=g["se"].fillna(0).tolist(), visible=True)))
    fig = _layout(fig, title=title, x="rollouts per prompt G", y="value MSE (exact)", log_y=True)
    fig.update_xaxes(type="log", tickvals=sorted(table["group_size"].unique().tolist()) if len(table) else None)
    return fig


# --- clipping -------------------------------------------------------------------------------
def trust_region_table(measures: Iterable[str], delta: float | Mapping[str, float] | None = None) -> pd.DataFrame:
    """[l, u] in ratio space of each measure at its budget.

    ``delta`` None gives each measure the matched budget (``lab.losses.matched_delta``: the
    same total width u − l as ratio clipping with ε = 0.2); a number gives all the same δ; a
    dict gives each its own.

    >>> trust_region_table(["ratio"]).round(3).to_dict("records")
    [{'measure': 'ratio', 'delta': 0.2, 'low': 0.8, 'high': 1.2, 'room_down': 0.2, 'room_up': 0.2}]
    """
    from lab.losses import clip_bounds, matched_delta

    rows = []
    for m in measures:
        if delta is None:
            d = matched_delta(m)
        elif isinstance(delta, Mapping):
            if m not in delta:
                raise KeyError(f"trust_region_table: no delta given for measure {m!r}; pass one in the dict or delta=None")
            d = float(delta[m])
        else:
            d = float(delta)
        lo, hi = clip_bounds(m, d)
        rows.append({"measure": m, "delta": d, "low": lo, "high": hi, "room_down": 1.0 - lo, "room_up": hi - 1.0})
    return pd.DataFrame(rows, columns=["measure", "delta", "low", "high", "room_down", "room_up"])


def trust_region_figure(measures: Iterable[str], delta: float | Mapping[str, float] | None = None, *,
                        title: str | None = None) -> go.Figure:
    """Each measure's clip interval [l, u] as a bar in ratio space around w = 1.

    Budgets as in :func:`trust_region_table` (matched by default), so KL3's asymmetry
    (more room up than down) shows against ratio clipping's symmetric [0.8, 1.2].

    >>> fig = trust_region_figure(["ratio", "kl3"])
    >>> [t.name for t in fig.data]
    ['ratio', 'kl3']
    """
    table = trust_region_table(measures, delta)
    fig = go.Figure()
    for i, r in enumerate(table.itertuples(index=False)):
        label = f"{r.measure} δ={r.delta:.4g}"
        fig.add_trace(go.Scatter(
            x=[r.low, r.high], y=[label, label], mode="lines+markers", name=r.measure,
            line=dict(color=_color(i), width=14), marker=dict(size=4),
            hovertemplate=f"{r.measure}: [{r.low:.4f}, {r.high:.4f}]<br>down {r.room_down:.4f} / up {r.room_up:.4f}<extra></extra>"))
    fig.update_layout(shapes=[vline(1.0)])
    fig = _layout(fig, title=title, x="ratio w = π_θ / π_old (clipped to the bar)", y="")
    fig.update_layout(showlegend=False, height=120 + 50 * len(table))
    return fig


def clip_fraction_figure(metrics_df: pd.DataFrame, series: str | None = "run", *,
                         title: str | None = None) -> go.Figure:
    """Fraction of tokens clipped at the low and the high bound over steps, per run.

    Reads ``actor/clip_frac_low`` (dashed) and ``actor/clip_frac_high`` (solid) from a
    metrics table; with a ``series`` column each run gets one colour.

    >>> m = pd.DataFrame({"run": ["a", "a"], "step": [0, 1], "actor/clip_frac_low": [0.0, 0.1],
    ...                   "actor/clip_frac_high": [0.0, 0.3]})
    >>> [t.name for t in clip_fraction_figure(m).data]
    ['a low', 'a high']
    """
    _need(metrics_df, ["step", "actor/clip_frac_low", "actor/clip_frac_high"], "clip_fraction_figure")
    fig = go.Figure()
    groups = metrics_df.groupby(series, sort=True) if series and series in metrics_df.columns else [("", metrics_df)]
    for i, (name, g) in enumerate(groups):
        g = g.sort_values("step")
        c = _color(i)
        prefix = f"{name} " if name != "" else ""
        fig.add_trace(go.Scatter(x=g["step"], y=g["actor/clip_frac_low"], mode="lines", name=f"{prefix}low",
                                 line=dict(color=c, dash="dash")))
        fig.add_trace(go.Scatter(x=g["step"], y=g["actor/clip_frac_high"], mode="lines", name=f"{prefix}high",
                                 line=dict(color=c)))
    return _layout(fig, title=title, x="step", y="fraction of tokens clipped")


def vline(x: float, **line) -> dict:
    """A vertical line across the plot as a layout shape (much cheaper than ``Figure.add_vline``).

    >>> vline(1.0)["x0"], vline(1.0)["yref"]
    (1.0, 'paper')
    """
    return dict(type="line", xref="x", yref="paper", x0=x, x1=x, y0=0, y1=1, line={"color": "black", "width": 1, **line})


def hline(y: float, **line) -> dict:
    """A horizontal line across the plot as a layout shape (see :func:`vline`)."""
    return dict(type="line", xref="paper", yref="y", x0=0, x1=1, y0=y, y1=y, line={"color": "black", "width": 1, **line})


def _need(df: pd.DataFrame, cols: Iterable[str], who: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise KeyError(f"{who}: the table has no column(s) {missing}; it has {list(df.columns)}")
