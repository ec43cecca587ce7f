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
import re
import zlib
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from lab.analysis import stats

__all__ = [
    "ema", "band_table", "curves_figure", "band_trace", "thin_stride", "DRAWN_POINTS",
    "advantage_column", "baseline_column", "advantage_histogram", "advantage_scatter",
    "value_mse_table", "value_mse_figure", "value_mse_ranking", "value_mse_vs_g_table", "value_mse_vs_g_figure",
    "trust_region_table", "trust_region_figure", "trust_region_bars", "clip_fraction_figure",
    "clip_objective_table", "clip_objective_figure", "log_ratio_table", "log_ratio_histogram",
    "COLORS", "GREY", "series_colors", "estimator_colors", "natural_key", "vline", "hline",
]

COLORS = (
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
    "#393b79", "#637939", "#8c6d31", "#252525", "#7b4173", "#00a087", "#e7ba52", "#b09c85", "#003c30", "#ff9896",
)
"""The lab's palette: D3's ten colours (plotly's order, so the notebooks' matplotlib figures
match), then ten darker or distinct ones, no two closer than 15 in CIELAB ΔE (two runs should never look alike). :func:`series_colors` gives each run (or estimator) its own."""


def natural_key(text) -> tuple:
    """Sort key that orders digit runs by their number and the rest case-insensitively.

    >>> sorted(["run-s10", "run-s2", "Run-s1"], key=natural_key)
    ['Run-s1', 'run-s2', 'run-s10']
    """
    return tuple((0, int(t), "") if t.isdigit() else (1, 0, t.lower()) for t in re.split(r"(\d+)", str(text)) if t)


def series_colors(names: Iterable, given: Mapping[str, str] | None = None) -> dict[str, str]:
    """One colour per name, derived from the name itself, so a run (or an estimator) keeps its
    colour on every chart and page.

    Each name wants palette slot ``crc32(name) mod len(COLORS)``; names are placed in natural
    order, and one whose slot is already taken by another name of the set gets the next free
    slot (the palette repeats only past 20 names). Names in ``given`` keep the colour given.

    >>> c = series_colors(["grpo-s0", "kae-s0"])
    >>> c == series_colors(["kae-s0", "grpo-s0"]), c["grpo-s0"] != c["kae-s0"]
    (True, True)
    >>> series_colors(["a"], {"a": "#000000"})
    {'a': '#000000'}
    """
    given = dict(given or {})
    todo = sorted({str(n) for n in names}, key=natural_key)
    out = {n: given[n] for n in todo if n in given}
    used = set(out.values())
    for n in todo:
        if n in out:
            continue
        slot = zlib.crc32(n.encode("utf-8")) % len(COLORS)
        pick = next((COLORS[(slot + k) % len(COLORS)] for k in range(len(COLORS))
                     if COLORS[(slot + k) % len(COLORS)] not in used), COLORS[slot])
        out[n] = pick
        used.add(pick)
    return out


GREY = "#7f7f7f"
"""Rewards and reference lines (y = x, bounds): no estimator is drawn in it."""
BUILTIN_ESTIMATORS = ("basis", "blend", "dr_grpo", "grpo", "kae", "krpo", "krpo_invariant", "reinforce_plus_plus",
                      "reinforce_plus_plus_baseline", "rloo")
"""``lab.estimators.available()`` without importing torch (the dashboard's pages stay light); a
test keeps the two equal."""


def estimator_colors(names: Iterable) -> dict[str, str]:
    """One colour per estimator, the same on every chart whatever else it is drawn with: the
    built-in estimators have fixed colours (:func:`series_colors` over all of them, with
    :data:`GREY` kept out), other names (shadows such as ``kae(h=0.2)``, a user's own) take
    free slots.

    >>> estimator_colors(["grpo", "basis"])["grpo"] == estimator_colors(["grpo", "kae", "rloo"])["grpo"]
    True
    >>> GREY in estimator_colors(BUILTIN_ESTIMATORS).values()
    False
    """
    names = [str(n) for n in names]
    fixed = series_colors(("\0grey",) + BUILTIN_ESTIMATORS, {"\0grey": GREY})
    every = series_colors(list(fixed) + [n for n in names if n not in fixed], fixed)
    return {n: every[n] for n in names}


def _colors_for(names: Iterable, colors: Mapping[str, str] | None) -> dict[str, str]:
    names = [str(n) for n in names]
    if colors is not None and all(n in colors for n in names):
        return {n: colors[n] for n in names}
    return series_colors(names, colors)


def _faint(hex_color: str, alpha: float) -> str:
    h = hex_color.lstrip("#")
    r, g, b = (int(h[i:i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


def _layout(fig: go.Figure, *, title: str | None, x: str, y: str, log_y: bool = False,
            hovermode: str = "closest") -> go.Figure:
    # the title at the top of the figure and the legend (a row above the plot) below it: with the
    # title in plotly's default place the two overlapped in every titled figure with a legend
    legend = _legend_place(fig)
    above, below = legend["orientation"] == "h", legend["y"] < 0
    lines = len(_legend_names(fig)) if below else 0
    fig.update_layout(
        title=dict(text=title, yref="container", y=1, yanchor="top", pad=dict(t=12), x=0.01, xanchor="left") if title else None,
        template="plotly_white", margin=dict(l=60, r=20, t=(80 if above else 50) if title else 20, b=50 + LEGEND_LINE_PX * lines),
        legend=legend, hovermode=hovermode,
    )
    if below and fig.layout.height is None:  # the plot keeps its height; the legend's lines are added below it
        fig.update_layout(height=450 + LEGEND_LINE_PX * lines)
    fig.update_xaxes(title_text=x)
    fig.update_yaxes(title_text=y)
    if log_y:  # the axis type is set only when asked: a category axis (labels on y) stays one
        fig.update_yaxes(type="log")
    return fig


LEGEND_RIGHT = dict(orientation="v", yanchor="top", y=1, xanchor="left", x=1.01)
"""One entry a line, to the right of the plot (many or long entries, or small multiples whose panel titles sit
where a row legend would)."""
LEGEND_ROW_CHARS = 90
"""A legend whose entries hold more characters than this (or more than 6 entries) goes to the right of the plot,
one entry a line: above the plot it would wrap into rows that cover the title."""


LEGEND_SIDE_CHARS = 40
"""A legend with an entry longer than this goes below the plot, one entry a line: to the right it would take the
plot's width (a BASIS reading's name is ~70 characters)."""
LEGEND_LINE_PX = 22
"""Height one legend line below the plot adds to the figure."""


def _legend_names(fig: go.Figure) -> list[str]:
    return [str(t.name) for t in fig.data if t.name and t.showlegend is not False]


def _legend_place(fig: go.Figure) -> dict:
    names = _legend_names(fig)
    if any(len(n) > LEGEND_SIDE_CHARS for n in names):
        return dict(orientation="v", yanchor="top", y=-0.2, xanchor="left", x=0)
    if len(names) > 6 or sum(len(n) + 4 for n in names) > LEGEND_ROW_CHARS:
        return dict(LEGEND_RIGHT)
    return dict(orientation="h", yanchor="bottom", y=1.02, xanchor="left", x=0)


def band_trace(x: Sequence, lo: Sequence, hi: Sequence, color: str, name: str, *, group: str | None = None,
               alpha: float = 0.18, **trace) -> go.Scatter:
    """A filled band between ``lo`` and ``hi``: one closed outline per stretch of finite values
    (the band stops where it is undefined instead of bridging the gap), drawn as lines only
    (its corners are not data: no markers), left out of hover and legend.

    Shapes: x, lo, hi (T,) -> one trace.

    >>> t = band_trace([0, 1, 2, 3, 4], [0, 0, None, 0, 0], [1, 1, None, 1, 1], "#1f77b4", "b")
    >>> t.mode, t.fill, list(t.x)
    ('lines', 'toself', [0, 1, 1, 0, None, 3, 4, 4, 3])
    """
    x = np.asarray(x)
    lo, hi = np.asarray(lo, dtype=float), np.asarray(hi, dtype=float)
    ok = np.isfinite(lo) & np.isfinite(hi)
    xs, ys = [], []
    i = 0
    while i < len(x):
        if not ok[i]:
            i += 1
            continue
        j = i
        while j + 1 < len(x) and ok[j + 1]:
            j += 1
        if xs:
            xs.append(None)
            ys.append(None)
        xs += list(x[i:j + 1]) + list(x[i:j + 1][::-1])
        ys += list(hi[i:j + 1]) + list(lo[i:j + 1][::-1])
        i = j + 1
    xs = [v.item() if hasattr(v, "item") else v for v in xs]
    return go.Scatter(x=xs, y=ys, mode="lines", fill="toself", fillcolor=_faint(color, alpha), line=dict(width=0),
                      hoverinfo="skip", name=name, legendgroup=group or name, showlegend=False, **trace)


def _subplots(n: int, *, cols: int = 1, titles: Sequence[str] = (), shared_x: bool = True, row_height: int = 260):
    from plotly.subplots import make_subplots

    cols = max(1, min(cols, n))
    rows = max(1, math.ceil(n / cols))
    fig = make_subplots(rows=rows, cols=cols, shared_xaxes=shared_x, subplot_titles=list(titles) or None,
                        vertical_spacing=min(0.12, 0.3 / rows), horizontal_spacing=0.06)
    fig.update_layout(height=max(320, 60 + row_height * rows))
    for a in fig.layout.annotations:  # subplot titles: small and left-aligned, like TensorBoard cards
        a.update(font=dict(size=12), x=a.x, xanchor="center")
    return fig, rows, cols


def _cell(k: int, cols: int) -> dict:
    return dict(row=k // cols + 1, col=k % cols + 1)


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
def band_table(df: pd.DataFrame, x: str = "step", y: str = "value", series: str = "run",
               band_by: str = "estimator", smoothing: float = 0.0, *,
               y_range: tuple[float, float] | None = None) -> pd.DataFrame:
    """Mean ± 95% confidence band across the series (e.g. seeds) of each ``band_by`` group.

    Each series is EMA-smoothed first (``smoothing``), then at every x value the series of a
    group that have a finite value there are averaged: ``mean``, ``lo``/``hi`` = mean ∓
    t₀.₉₇₅(n − 1)·sd/√n (sample sd; no band where n = 1), ``n`` (series with a value at that
    x) and ``runs`` (series in the group: where n < runs, some runs have stopped and the mean
    is over fewer of them). ``y_range`` (the metric's possible range, e.g. (0, 1) for an
    accuracy) clips the band to it. Series are aligned on exact x values, so use
    ``x="step"`` (or a binned time) for bands.

    Shapes: df (R rows, long) -> one row per (group, x): columns [band_by, x, mean, lo, hi, n, runs].

    >>> df = pd.DataFrame({"run": ["a", "a", "b", "b"], "estimator": ["g", "g", "g", "g"],
    ...                    "step": [0, 1, 0, 1], "value": [1.0, 2.0, 3.0, 2.0]})
    >>> band_table(df).round(3).to_dict("records")[0]
    {'estimator': 'g', 'step': 0, 'mean': 2.0, 'lo': -10.706, 'hi': 14.706, 'n': 2, 'runs': 2}
    >>> band_table(df, y_range=(0, 4)).round(3).to_dict("records")[0]["lo"]
    0.0
    """
    _need(df, [x, y, series, band_by], "band_table")
    cols = [band_by, x, "mean", "lo", "hi", "n", "runs"]
    parts = []
    for _, g in df.sort_values([series, x]).groupby(series, sort=False):
        g = g[[band_by, series, x, y]].copy()
        g[y] = ema(g[y].to_numpy(dtype=float), smoothing)
        parts.append(g)
    if not parts:
        return pd.DataFrame(columns=cols)
    long = pd.concat(parts, ignore_index=True)
    runs = long.groupby(band_by)[series].nunique()
    long = long[np.isfinite(long[y].to_numpy(dtype=float))]
    agg = long.groupby([band_by, x], sort=True)[y].agg(["mean", "std", "count"]).reset_index()
    t = np.array([stats.t_quantile(0.975, int(n) - 1) if n >= 2 else np.nan for n in agg["count"]])
    half = t * agg["std"].to_numpy() / np.sqrt(agg["count"].to_numpy())
    agg["lo"] = agg["mean"] - half
    agg["hi"] = agg["mean"] + half
    if y_range is not None:
        lo_b, hi_b = float(y_range[0]), float(y_range[1])
        for c in ("mean", "lo", "hi"):
            agg[c] = agg[c].clip(lo_b, hi_b)
    agg = agg.rename(columns={"count": "n"})
    agg["n"] = agg["n"].astype(int)
    agg["runs"] = agg[band_by].map(runs).astype(int)
    return agg[cols]


def _dilate(mask: np.ndarray) -> np.ndarray:
    out = mask.copy()
    out[1:] |= mask[:-1]
    out[:-1] |= mask[1:]
    return out


DRAWN_POINTS = 1000
"""Most points a curve is drawn with (TensorBoard keeps 1,000 per scalar series by default)."""


def thin_stride(n: int, max_points: int | None = DRAWN_POINTS) -> int:
    """Every how many points a curve of ``n`` points is drawn so that at most ``max_points`` are
    (1 = all; None = no limit). Smoothing and bands are computed on every point first.

    >>> thin_stride(2000), thin_stride(1000), thin_stride(2001), thin_stride(5, None)
    (2, 1, 3, 1)
    """
    if not max_points or n <= max_points:
        return 1
    return -(-n // max_points)


def _thin(k: int, *arrays):
    """Every k-th element of each array and always the last (so a curve still ends where it ends)."""
    out = []
    for a in arrays:
        a = np.asarray(a)
        if k <= 1 or len(a) == 0:
            out.append(a)
            continue
        idx = np.arange(0, len(a), k)
        if idx[-1] != len(a) - 1:
            idx = np.append(idx, len(a) - 1)
        out.append(a[idx])
    return out


def _add_curves(fig: go.Figure, df: pd.DataFrame, *, x: str, y: str, series: str, smoothing: float,
                band_by: str | None, colors: Mapping[str, str], y_range, cell: dict, shown: set,
                max_points: int | None = DRAWN_POINTS) -> None:
    """The traces of one panel of :func:`curves_figure` (``cell``: its subplot, {} for none)."""
    if band_by:
        table = band_table(df, x=x, y=y, series=series, band_by=band_by, smoothing=smoothing, y_range=y_range)
        k = thin_stride(int(table.groupby(band_by).size().max()) if len(table) else 0, max_points)
        for name, g in table.groupby(band_by, sort=False):
            name = str(name)
            c = colors[name]
            if k > 1:
                g = g.iloc[_thin(k, np.arange(len(g)))[0]]
            runs = int(g["runs"].iloc[0])
            label = f"{name} (n={runs})"
            xs, mean, n = g[x].to_numpy(), g["mean"].to_numpy(dtype=float), g["n"].to_numpy()
            part = n < runs
            custom = np.stack([n, np.full(len(n), runs)], axis=1)
            hover = "%{y:.4g} (n=%{customdata[0]} of %{customdata[1]})"
            fig.add_trace(go.Scatter(x=xs, y=np.where(part, np.nan, mean), mode="lines", name=label,
                                     line=dict(color=c, width=2), legendgroup=name, showlegend=label not in shown,
                                     customdata=custom, hovertemplate=hover), **cell)
            shown.add(label)
            if part.any():  # where some runs have stopped: the mean of fewer runs, dotted and named so
                fig.add_trace(go.Scatter(x=xs, y=np.where(_dilate(part), mean, np.nan), mode="lines",
                                         name=f"{name}: fewer runs", line=dict(color=c, width=1.5, dash="dot"),
                                         legendgroup=name, showlegend=False, customdata=custom,
                                         hovertemplate=hover), **cell)
            if np.isfinite(g["lo"].to_numpy(dtype=float)).any():
                fig.add_trace(band_trace(xs, g["lo"], g["hi"], c, f"{name} 95% band", group=name), **cell)
        return
    groups = df.sort_values([series, x]).groupby(series, sort=False)
    k = thin_stride(int(groups.size().max()) if len(df) else 0, max_points)
    for name, g in groups:
        name = str(name)
        c = colors[name]
        raw = g[y].to_numpy(dtype=float)
        xs, raw_drawn, smooth = _thin(k, g[x].to_numpy(), raw, ema(raw, smoothing))
        if smoothing > 0:
            fig.add_trace(go.Scatter(x=xs, y=raw_drawn, mode="lines", line=dict(color=_faint(c, 0.25), width=1),
                                     name=f"{name} (raw)", legendgroup=name, showlegend=False,
                                     hoverinfo="skip"), **cell)
        fig.add_trace(go.Scatter(x=xs, y=smooth, mode="lines", name=name,
                                 line=dict(color=c, width=2), legendgroup=name, showlegend=name not in shown,
                                 hovertemplate="%{y:.4g}"), **cell)
        shown.add(name)


def curves_figure(df: pd.DataFrame, x: str = "step", y: str = "value", series: str = "run",
                  smoothing: float = 0.0, log_y: bool = False, band_by: str | None = None,
                  *, title: str | None = None, y_label: str | None = None, colors: Mapping[str, str] | None = None,
                  y_range: tuple[float, float] | None = None, facet: str | None = None,
                  facet_order: Sequence[str] | None = None, facet_ranges: Mapping[str, tuple] | None = None,
                  max_points: int | None = DRAWN_POINTS) -> go.Figure:
    """Overlay of curves from a long frame: one line per ``series`` (or per ``band_by`` group).

    With ``smoothing`` > 0 each line is the TensorBoard EMA (:func:`ema`) with the raw curve
    drawn faint behind it. With ``band_by`` (a column such as ``estimator``) the series of
    each group are combined into their mean with a 95% band (:func:`band_table`); the legend
    gives each group's number of runs, hover the number at that x, and where some runs have
    stopped the mean goes on dotted (it is over fewer runs there). ``facet`` (a column such
    as ``metric``) draws one panel per value, stacked with a shared x axis (small multiples;
    ``facet_ranges`` gives each panel's ``y_range``). Colours come from
    :func:`series_colors` (or ``colors``: name -> colour); hover lists every line at the
    hovered x. A curve longer than ``max_points`` (default :data:`DRAWN_POINTS`, TensorBoard's
    1,000) is drawn at every k-th point of the panel's longest curve (:func:`thin_stride`),
    after smoothing and bands were computed on every point; None draws all.

    >>> df = pd.DataFrame({"run": list("aabb"), "estimator": list("gggg"),
    ...                    "step": [0, 1, 0, 1], "value": [1.0, 2.0, 3.0, 2.0]})
    >>> [t.name for t in curves_figure(df, band_by="estimator").data]
    ['g (n=2)', 'g 95% band']
    """
    _need(df, [x, y, series] + ([band_by] if band_by else []) + ([facet] if facet else []), "curves_figure")
    key = band_by or series
    palette = _colors_for(df[key].astype(str).unique(), colors)
    shown: set = set()
    kw = dict(x=x, y=y, series=series, smoothing=smoothing, band_by=band_by, colors=palette, shown=shown,
              max_points=max_points)
    panels = (list(facet_order) if facet_order is not None else
              sorted(df[facet].astype(str).unique(), key=natural_key)) if facet else []
    if len(panels) <= 1:  # one panel: a plain figure, the metric named on its y axis
        rng = (facet_ranges or {}).get(panels[0], y_range) if panels else y_range
        fig = go.Figure()
        _add_curves(fig, df, y_range=rng, cell={}, **kw)
        fig = _layout(fig, title=title, x=x, y=y_label or (panels[0] if panels else y), log_y=log_y,
                      hovermode="x unified")
    else:
        fig, rows, cols = _subplots(len(panels), titles=panels)
        for k, p in enumerate(panels):
            rng = (facet_ranges or {}).get(p, y_range)
            _add_curves(fig, df[df[facet].astype(str) == p], y_range=rng, cell=_cell(k, cols), **kw)
        fig = _layout(fig, title=title, x="", y="", log_y=log_y, hovermode="x unified")
        fig.update_xaxes(title_text=x, row=rows, col=1)
        # the run list beside the panels (the panel titles sit where a top legend would)
        fig.update_layout(legend=LEGEND_RIGHT)
    fig.update_xaxes(showspikes=True, spikemode="across", spikethickness=1, spikedash="dot", spikecolor="#999")
    return fig


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
        palette = estimator_colors(names)
        for n, v in zip(names, vals):
            fig.add_trace(go.Histogram(x=v, name=n, opacity=0.55, marker_color=palette[str(n)],
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
                                 line=dict(color=GREY, dash="dash", width=1)))
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
                     series: str | None = "run", log_y: bool = False, title: str | None = None,
                     facet: str | None = None, colors: Mapping[str, str] | None = None) -> go.Figure:
    """Each estimator's corrected probe value MSE over steps, with a ±1 SE band.

    Takes a probes table (columns ``step, estimator, sq_err, truth_se``: the band comes from
    :func:`value_mse_table`) or a metrics table (``probe/value_mse_corrected/<est>``
    columns: lines only, the metrics hold no SE). With a ``series`` column (e.g. ``run``)
    each (run, estimator) is its own line. ``estimators`` keeps only those.

    Many runs × many estimators: ``facet="estimator"`` draws one panel per estimator (one
    line per run, coloured by run), ``facet=series`` one panel per run (one line per
    estimator, coloured by estimator); panels share both axes, so heights compare.

    >>> p = pd.DataFrame({"step": [0, 0, 5, 5], "estimator": ["grpo"] * 4,
    ...                   "sq_err": [0.1, 0.3, 0.1, 0.1], "truth_se": [0.0] * 4})
    >>> fig = value_mse_figure(p)
    >>> [t.name for t in fig.data], fig.data[0].y.tolist()
    (['grpo', 'grpo ± SE'], [0.2, 0.1])
    >>> p2 = pd.concat([p.assign(run="a"), p.assign(run="b")])
    >>> [t.name for t in value_mse_figure(p2, facet="estimator").data if "SE" not in t.name]
    ['a', 'b']
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
    keys = ([series] if use_series else []) + ["estimator"]
    if facet is not None and facet not in keys:
        raise KeyError(f"value_mse_figure: facet must be one of {keys}, got {facet!r}")
    panels = sorted(table[facet].astype(str).unique(), key=natural_key) if facet else [None]
    if facet:
        fig, rows, cols = _subplots(len(panels), cols=3, titles=panels, row_height=230)
    else:
        fig, rows, cols = go.Figure(), 1, 1
    line_keys = [k for k in keys if k != facet]
    name_of = (lambda r: " · ".join(str(r[k]) for k in line_keys))
    table = table.assign(_line=table.apply(name_of, axis=1) if len(table) else pd.Series(dtype=str))
    if colors is None and line_keys == ["estimator"]:
        colors = estimator_colors(table["_line"].unique())
    palette = _colors_for(table["_line"].unique(), colors)
    shown: set = set()
    for k, panel in enumerate(panels):
        sub = table if panel is None else table[table[facet].astype(str) == panel]
        cell = _cell(k, cols) if facet else {}
        for name, g in sorted(sub.sort_values("step").groupby("_line", sort=False), key=lambda t: natural_key(t[0])):
            c = palette[name]
            fig.add_trace(go.Scatter(x=g["step"], y=g["mse"], mode="lines+markers", name=name, marker=dict(size=5),
                                     line=dict(color=c, width=2), legendgroup=name, showlegend=name not in shown), **cell)
            shown.add(name)
            se = g["se"].to_numpy(dtype=float)
            if np.isfinite(se).any():
                hi = g["mse"].to_numpy(dtype=float) + se
                lo = g["mse"].to_numpy(dtype=float) - se
                if log_y:
                    lo = np.maximum(lo, hi * 1e-3)
                fig.add_trace(band_trace(g["step"].to_numpy(), lo, hi, c, f"{name} ± SE", group=name, alpha=0.15), **cell)
    fig = _layout(fig, title=title, x="step" if not facet else "", y="value MSE (corrected)" if not facet else "",
                  log_y=log_y)
    if facet:
        fig.update_layout(legend=LEGEND_RIGHT)
        fig.update_yaxes(matches="y")
        fig.update_xaxes(matches="x")
        fig.update_yaxes(title_text="value MSE (corrected)", row=1, col=1)
    return fig


def value_mse_ranking(probes: pd.DataFrame, by: Sequence[str] = ("run",), step: int | None = None) -> pd.DataFrame:
    """Estimators ranked by corrected value MSE at one probe step of each ``by`` group (its
    last one unless ``step`` is given), with a 95% t-interval over the probe prompts
    (:func:`lab.analysis.stats.mean_ci` of the finite ``sq_err − truth_se²``).

    Shapes: probes (R rows) -> one row per (group, estimator): [*by, step, rank, estimator, mse, lo, hi, n].

    >>> p = pd.DataFrame({"run": ["r"] * 4, "step": [3] * 4, "estimator": ["a", "a", "b", "b"],
    ...                   "sq_err": [0.2, 0.4, 0.1, 0.1], "truth_se": [0.0] * 4})
    >>> value_mse_ranking(p)[["estimator", "rank", "mse", "n"]].to_dict("records")
    [{'estimator': 'b', 'rank': 1, 'mse': 0.1, 'n': 2}, {'estimator': 'a', 'rank': 2, 'mse': 0.30000000000000004, 'n': 2}]
    """
    by = [b for b in by if b in probes.columns]
    _need(probes, ["step", "estimator", "sq_err", "truth_se"], "value_mse_ranking")
    cols = by + ["step", "rank", "estimator", "mse", "lo", "hi", "n"]
    rows = []
    groups = probes.groupby(by, sort=False) if by else [((), probes)]
    for key, g in groups:
        key = key if isinstance(key, tuple) else (key,)
        s = int(g["step"].max()) if step is None else int(step)
        at = g[g["step"] == s]
        part = []
        for est, e in at.groupby("estimator", sort=False):
            err = e["sq_err"].to_numpy(dtype=float) - e["truth_se"].to_numpy(dtype=float) ** 2
            m, lo, hi, n = stats.mean_ci(err[np.isfinite(err)])
            part.append({**dict(zip(by, key)), "step": s, "estimator": str(est), "mse": m, "lo": lo, "hi": hi, "n": n})
        part.sort(key=lambda r: (r["mse"], natural_key(r["estimator"])))
        rows += [{**r, "rank": i + 1} for i, r in enumerate(part)]
    return pd.DataFrame(rows, columns=cols)


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
    palette = estimator_colors(table["estimator"].astype(str).unique())
    for name, g in table.groupby("estimator", sort=True):
        fig.add_trace(go.Scatter(x=g["group_size"].tolist(), y=g["mse"].tolist(), mode="lines+markers", name=str(name),
                                 line=dict(color=palette[str(name)]),
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


def trust_region_bars(table: pd.DataFrame, label: str = "measure", *, space: str = "ratio",
                      colors: Mapping[str, str] | None = None, title: str | None = None) -> go.Figure:
    """Clip intervals [l, u] as horizontal bars on one shared axis, one row per ``label``.

    ``space="ratio"``: in ratio space around w = 1; ``"log"``: in log-ratio space around 0
    (log l, log u: a measure symmetric in log w has equal arms there); ``"both"``: the two
    side by side. Each bar's ends are written beside it, so close bounds (0.800 vs 0.813) can
    be told apart. ``table`` has columns ``label``, ``low``, ``high`` (and optionally ``name``,
    the trace name; else the label): :func:`trust_region_table`, or the dashboard's runs.

    >>> t = pd.DataFrame({"measure": ["ratio"], "low": [0.8], "high": [1.25]})
    >>> fig = trust_region_bars(t, space="both")
    >>> [round(v, 4) for v in fig.data[0].x], [round(v, 4) for v in fig.data[1].x]
    ([0.8, 1.25], [-0.2231, 0.2231])
    """
    _need(table, [label, "low", "high"], "trust_region_bars")
    spaces = {"ratio": ["ratio"], "log": ["log"], "both": ["ratio", "log"]}
    if space not in spaces:
        raise ValueError(f"trust_region_bars: space must be one of {sorted(spaces)}, got {space!r}")
    kinds = spaces[space]
    labels = [str(v) for v in table[label]]
    names = [str(v) for v in (table["name"] if "name" in table.columns else table[label])]
    palette = _colors_for(names, colors)
    if len(kinds) == 2:
        from plotly.subplots import make_subplots

        fig = make_subplots(rows=1, cols=2, shared_yaxes=True, horizontal_spacing=0.04,
                            subplot_titles=["ratio w = π_θ / π_old", "log-ratio log w"])
    else:
        fig = go.Figure()
    n = len(table)
    ypos = list(range(n))[::-1]  # the first row on top
    shapes = []
    for col, kind in enumerate(kinds, start=1):
        cell = dict(row=1, col=col) if len(kinds) == 2 else {}
        f = (lambda v: float(v)) if kind == "ratio" else (lambda v: math.log(float(v)))
        centre = 1.0 if kind == "ratio" else 0.0
        ends = []
        for y, lab, name, lo, hi in zip(ypos, labels, names, table["low"], table["high"]):
            a, b = f(lo), f(hi)
            ends += [a, b]
            fmt = (lambda v: f"{v:.4f}") if kind == "ratio" else (lambda v: f"{v:+.4f}")
            fig.add_trace(go.Scatter(
                x=[a, b], y=[y, y], mode="lines+markers+text", name=name if kind == "ratio" else f"{name} · log",
                text=[fmt(a), fmt(b)], textposition=["middle left", "middle right"], textfont=dict(size=11),
                line=dict(color=palette[name], width=12), marker=dict(size=12, color=palette[name], symbol="line-ns-open"),
                hovertemplate=(f"{lab}: [{fmt(a)}, {fmt(b)}]<br>down {centre - a:.4f} / up {b - centre:.4f}<extra></extra>"),
                cliponaxis=False), **cell)
        arm = max([abs(e - centre) for e in ends] or [0.25])
        axis = "x" if col == 1 else "x2"
        shapes.append(vline(centre, xref=axis, dash="dot", color="#555"))
        fig.update_xaxes(range=[centre - 1.45 * arm, centre + 1.45 * arm], zeroline=False, **cell)
    fig.update_yaxes(tickvals=ypos, ticktext=labels, range=[-0.7, n - 0.3], showgrid=False, zeroline=False)
    fig = _layout(fig, title=title, x="ratio w = π_θ / π_old" if kinds == ["ratio"] else
                  ("log w" if kinds == ["log"] else ""), y="")
    fig.update_layout(shapes=shapes, showlegend=False, height=120 + 46 * max(1, n))
    return fig


def trust_region_figure(measures: Iterable[str], delta: float | Mapping[str, float] | None = None, *,
                        title: str | None = None, space: str = "ratio") -> go.Figure:
    """Each measure's clip interval [l, u] as a bar in ratio space around w = 1.

    Budgets as in :func:`trust_region_table` (matched by default), so KL3's asymmetry
    (more room up than down) shows against ratio clipping's symmetric [0.8, 1.2];
    ``space="log"`` or ``"both"`` adds log-ratio space (:func:`trust_region_bars`).

    >>> fig = trust_region_figure(["ratio", "kl3"])
    >>> [t.name for t in fig.data]
    ['ratio', 'kl3']
    """
    table = trust_region_table(measures, delta)
    table["label"] = [f"{m} δ={d:.4g}" for m, d in zip(table["measure"], table["delta"])]
    table["name"] = table["measure"]
    return trust_region_bars(table, "label", space=space, title=title)


def clip_objective_table(measures: Iterable[str], delta: float | Mapping[str, float] | None = None, *,
                         w: Sequence[float] | None = None, advantages: Sequence[float] = (1.0, -1.0)) -> pd.DataFrame:
    """The per-token clipped surrogate min(w·A, clip(w, l, u)·A) against the ratio w, for each
    measure's interval (budgets as :func:`trust_region_table`) and each advantage A, computed
    by the lab's own ``ppo`` rule (``lab.losses.policy.RULES``): ``objective`` is minus the
    rule's per-token loss and ``gradient_zero`` its clip mask (A > 0 above u, A < 0 below l).

    Shapes: M measures, K advantages, W ratios -> M·K·W rows:
    [measure, low, high, advantage, w, objective, gradient_zero].

    >>> t = clip_objective_table(["ratio"], w=[0.5, 1.0, 1.5])
    >>> t[["advantage", "w", "objective", "gradient_zero"]].values.tolist()
    [[1.0, 0.5, 0.5, False], [1.0, 1.0, 1.0, False], [1.0, 1.5, 1.2, True], [-1.0, 0.5, -0.8, True], [-1.0, 1.0, -1.0, False], [-1.0, 1.5, -1.5, False]]
    """
    import torch

    from lab.losses.policy import RULES

    grid = np.linspace(0.5, 1.6, 221) if w is None else np.asarray(w, dtype=float)
    ratio = torch.tensor(grid, dtype=torch.float64)[None, :]
    rule = RULES.get("ppo")
    rows = []
    for r in trust_region_table(measures, delta).itertuples(index=False):
        for a in advantages:
            out = rule(ratio, torch.full_like(ratio, float(a)), float(r.low), float(r.high))
            cut = (out.clipped_low | out.clipped_high)[0].tolist()
            rows += [{"measure": r.measure, "low": r.low, "high": r.high, "advantage": float(a), "w": float(x),
                      "objective": float(-v), "gradient_zero": bool(c)}
                     for x, v, c in zip(grid.tolist(), out.loss[0].tolist(), cut)]
    return pd.DataFrame(rows, columns=["measure", "low", "high", "advantage", "w", "objective", "gradient_zero"])


def clip_objective_figure(measures: Iterable[str], delta: float | Mapping[str, float] | None = None, *,
                          title: str | None = None, colors: Mapping[str, str] | None = None) -> go.Figure:
    """The clipped surrogate against w, one panel for A = +1 and one for A = −1, a line per
    measure (:func:`clip_objective_table`): where a line turns flat the token's gradient is zero.

    >>> fig = clip_objective_figure(["ratio", "kl3"])
    >>> [t.name for t in fig.data]
    ['ratio', 'kl3', 'ratio', 'kl3']
    """
    table = clip_objective_table(measures, delta)
    names = list(dict.fromkeys(table["measure"]))
    palette = _colors_for(names, colors)
    advs = list(dict.fromkeys(table["advantage"]))
    fig, _, cols = _subplots(len(advs), cols=len(advs), titles=[f"A = {a:+g}" for a in advs], shared_x=False, row_height=340)
    for k, a in enumerate(advs):
        for name in names:
            g = table[(table["measure"] == name) & (table["advantage"] == a)]
            lo, hi = float(g["low"].iloc[0]), float(g["high"].iloc[0])
            fig.add_trace(go.Scatter(x=g["w"], y=g["objective"], mode="lines", name=name, legendgroup=name,
                                     showlegend=k == 0, line=dict(color=palette[name], width=2),
                                     hovertemplate=f"{name} [{lo:.4f}, {hi:.4f}]<br>w %{{x:.3f}}: %{{y:.4f}}<extra></extra>"),
                          **_cell(k, cols))
    fig = _layout(fig, title=title, x="ratio w = π_θ / π_old", y="clipped surrogate")
    fig.update_layout(shapes=[vline(1.0, xref="x" if k == 0 else f"x{k + 1}", dash="dot", color="#555") for k in range(len(advs))])
    return fig


def log_ratio_table(log_ratio, advantages, mask, measures: Iterable[str],
                    delta: float | Mapping[str, float] | None = None) -> pd.DataFrame:
    """Where the tokens of one update landed against each measure's interval: the share of
    valid tokens with w below l and above u, and the shares whose gradient the ``ppo`` rule
    cuts (A < 0 below l, A > 0 above u), all on the same tokens.

    Shapes: log_ratio (B, T) log(π_θ/π_old) per token; advantages (B, T) or (B,); mask (B, T)
    bool -> one row per measure: [measure, low, high, tokens, below, above, clipped_low, clipped_high].

    >>> import torch
    >>> lr = torch.log(torch.tensor([[0.7, 0.9, 1.1, 1.3]])); a = torch.tensor([[-1.0, -1.0, 1.0, 1.0]])
    >>> log_ratio_table(lr, a, torch.ones(1, 4, dtype=torch.bool), ["ratio"])[["below", "above", "clipped_low", "clipped_high"]].values.tolist()
    [[0.25, 0.25, 0.25, 0.25]]
    """
    import torch

    from lab.losses.policy import RULES

    lr = torch.as_tensor(log_ratio, dtype=torch.float64)
    adv = torch.as_tensor(advantages, dtype=torch.float64)
    adv = adv[:, None].expand_as(lr) if adv.dim() == 1 else adv
    m = torch.as_tensor(mask, dtype=torch.bool)
    n = int(m.sum())
    w = lr.exp()
    rows = []
    for r in trust_region_table(measures, delta).itertuples(index=False):
        out = RULES.get("ppo")(w, adv, float(r.low), float(r.high))
        share = lambda x: float((x & m).sum()) / n if n else float("nan")
        rows.append({"measure": r.measure, "low": r.low, "high": r.high, "tokens": n, "below": share(w < r.low),
                     "above": share(w > r.high), "clipped_low": share(out.clipped_low), "clipped_high": share(out.clipped_high)})
    return pd.DataFrame(rows, columns=["measure", "low", "high", "tokens", "below", "above", "clipped_low", "clipped_high"])


def log_ratio_histogram(log_ratio, mask, measures: Iterable[str], delta: float | Mapping[str, float] | None = None, *,
                        bins: int = 80, title: str | None = None, colors: Mapping[str, str] | None = None) -> go.Figure:
    """Histogram of the valid tokens' log-ratios log w, with each measure's interval [log l, log u]
    drawn as two vertical lines in its colour (budgets as :func:`trust_region_table`). The axis
    spans the bounds with room either side (toward the central 90% of tokens, at most 6 times
    the widest bound out); the x title counts the tokens beyond it.

    Shapes: log_ratio (B, T), mask (B, T) bool -> one histogram trace and one legend entry per measure.

    >>> import torch
    >>> fig = log_ratio_histogram(torch.zeros(2, 3), torch.ones(2, 3, dtype=torch.bool), ["ratio", "kl3"])
    >>> [t.name for t in fig.data]
    ['tokens', 'ratio', 'kl3']
    """
    import torch

    lr = torch.as_tensor(log_ratio, dtype=torch.float64)[torch.as_tensor(mask, dtype=torch.bool)].numpy()
    table = trust_region_table(measures, delta)
    palette = _colors_for(list(table["measure"]), colors)
    # the axis: the bounds with room either side, widened toward the central 90% of tokens but at most 6 arms out
    # (a long tail of falling tokens would squeeze the bins around the intervals, which are the point)
    arm = max([abs(math.log(v)) for v in (*table["low"], *table["high"])] or [0.2])
    lo_x, hi_x = -2.5 * arm, 2.5 * arm
    if lr.size:
        lo_x = max(min(lo_x, float(np.quantile(lr, 0.05))), -6 * arm)
        hi_x = min(max(hi_x, float(np.quantile(lr, 0.95))), 6 * arm)
    size = (hi_x - lo_x) / bins
    off = int(((lr < lo_x) | (lr > hi_x)).sum())
    fig = go.Figure(go.Histogram(x=lr, xbins=dict(start=lo_x, end=hi_x + 1e-12, size=size), name="tokens",
                                 marker=dict(color="#9aa5b1"), showlegend=False,
                                 hovertemplate="log w %{x}: %{y} tokens<extra></extra>"))
    shapes = []
    for r in table.itertuples(index=False):
        lo, hi = math.log(r.low), math.log(r.high)
        shapes += [vline(lo, color=palette[r.measure], dash="dash"), vline(hi, color=palette[r.measure], dash="dash")]
        fig.add_trace(go.Scatter(x=[lo, hi], y=[0, 0], mode="markers", name=f"{r.measure}",
                                 marker=dict(color=palette[r.measure], size=9, symbol="line-ns-open", line=dict(width=2)),
                                 hovertemplate=f"{r.measure}: [log l, log u] = [{lo:+.4f}, {hi:+.4f}]<extra></extra>"))
    x_title = "log w = log π_θ − log π_old (per token)" + (f"; {off} of {lr.size} tokens beyond the axis" if off else "")
    fig = _layout(fig, title=title, x=x_title, y="tokens")
    fig.update_layout(shapes=shapes, bargap=0.02)
    fig.update_xaxes(range=[lo_x, hi_x])
    return fig


def clip_fraction_figure(metrics_df: pd.DataFrame, series: str | None = "run", *,
                         title: str | None = None, colors: Mapping[str, str] | None = None) -> go.Figure:
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
    groups = sorted(groups, key=lambda t: natural_key(t[0]))
    palette = _colors_for([str(n) for n, _ in groups], colors)
    for name, g in groups:
        g = g.sort_values("step")
        c = palette[str(name)]
        prefix = f"{name} " if name != "" else ""
        fig.add_trace(go.Scatter(x=g["step"], y=g["actor/clip_frac_low"], mode="lines", name=f"{prefix}low",
                                 line=dict(color=c, dash="dash"), legendgroup=str(name)))
        fig.add_trace(go.Scatter(x=g["step"], y=g["actor/clip_frac_high"], mode="lines", name=f"{prefix}high",
                                 line=dict(color=c), legendgroup=str(name)))
    return _layout(fig, title=title, x="step", y="fraction of tokens clipped", hovermode="x unified")


def vline(x: float, xref: str = "x", **line) -> dict:
    """A vertical line across the plot as a layout shape (much cheaper than ``Figure.add_vline``).

    >>> vline(1.0)["x0"], vline(1.0)["yref"]
    (1.0, 'paper')
    """
    return dict(type="line", xref=xref, yref="paper", x0=x, x1=x, y0=0, y1=1, line={"color": "black", "width": 1, **line})


def hline(y: float, yref: str = "y", **line) -> dict:
    """A horizontal line across the plot as a layout shape (see :func:`vline`)."""
    return dict(type="line", xref=f"{yref.replace('y', 'x')} domain", yref=yref, x0=0, x1=1, y0=y, y1=y,
                line={"color": "black", "width": 1, **line})


def _need(df: pd.DataFrame, cols: Iterable[str], who: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise KeyError(f"{who}: the table has no column(s) {missing}; it has {list(df.columns)}")
