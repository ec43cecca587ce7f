"""The view shared by every page: the run selection and every page's choices, in session
state and in the URL.

*Selection.* The selected run keys live under ``st.session_state["selected_runs"]`` (the
sidebar multiselect's key, rendered by ``app/main.py`` on every page, so it survives page
changes) and are mirrored into the URL as ``?run=<key>&run=<key>``. Keys from the URL are
checked with ``lab.runs.resolve_run`` before use; refused ones are reported, never read.
Default (no ``run`` in the URL): the healthy runs of the first root, newest first.

*View.* Every other choice a page offers (metrics, smoothing, x axis, log y, grouping,
step, estimators, facets, ...) is drawn through :func:`control`, which gives it a URL
parameter (``PARAMS``): the URL then holds the whole view, so a copied link opened in a
fresh browser shows the same thing. A value equal to its default is left out of the URL
(so "the last step" stays the last step of a live run). Values are also kept in the
session across page changes, and two pages that share a parameter (``focus``: the run of
Advantages and Groups; ``step``) share the value.
"""

from __future__ import annotations

import math

import pandas as pd
import streamlit as st

from app import data
from lab import figures
from lab.runs import RunPathError

SEL = "selected_runs"
DEFAULT_SELECTED = 6
_URL0 = "_url_at_start"   # the URL's parameters when the session began (read once per parameter)
_VIEW = "_view"           # parameter -> value, kept across page changes
_URLV = "_view_url"       # parameter -> URL strings (None: the default, left out of the URL)

PARAMS = {
    # widget key: (URL parameter, kind)
    "runs_status": ("status", "list"), "runs_field": ("field", "str"), "runs_values": ("values", "list"),
    "runs_text": ("q", "str"), "runs_deep": ("deep", "bool"),
    "curves_metrics": ("metric", "list"), "curves_smoothing": ("smooth", "float"), "curves_x": ("x", "str"),
    "curves_log": ("logy", "bool"), "curves_group": ("group", "str"),
    "adv_run": ("focus", "str"), "adv_step": ("step", "int"), "adv_est": ("est", "list"),
    "adv_heat": ("heat", "str"), "adv_x": ("ex", "str"), "adv_y": ("ey", "str"),
    "vm_est": ("vm_est", "list"), "vm_log": ("vm_logy", "bool"), "vm_facet": ("facet", "str"),
    "vm_run": ("vm_run", "str"), "vm_step": ("vm_step", "int"), "vm_exact_reuse": ("reuse", "int"),
    "vm_exact_est": ("exact_est", "list"),
    "grp_run": ("focus", "str"), "grp_step": ("step", "int"), "grp_shadow": ("shadow", "str"),
    "grp_search": ("search", "str"), "grp_zero": ("zero", "bool"), "grp_pid": ("group_id", "str"),
    "clip_space": ("space", "str"),
}
"""Every view control's URL parameter; one place, so names never clash by accident."""


# --- values <-> URL strings -----------------------------------------------------------------
def dump(kind: str, value) -> list[str]:
    """URL strings of a control's value.

    >>> dump("list", ["a", "b"]), dump("bool", True), dump("float", 0.6), dump("int", 7)
    (['a', 'b'], ['1'], ['0.6'], ['7'])
    """
    if kind == "list":
        return [str(v) for v in value]
    if kind == "bool":
        return ["1" if value else "0"]
    return [repr(float(value)) if kind == "float" else str(value)]


def parse(kind: str, raw: list[str]):
    """A control's value from its URL strings (None when unreadable).

    >>> parse("list", ["a"]), parse("bool", ["0"]), parse("float", ["0.25"]), parse("int", ["x"])
    (['a'], False, 0.25, None)
    """
    try:
        if kind == "list":
            return list(raw)
        if not raw:
            return None
        if kind == "bool":
            return raw[-1] in ("1", "true", "True")
        if kind == "float":
            v = float(raw[-1])
            return v if math.isfinite(v) else None
        if kind == "int":
            return int(raw[-1])
        return raw[-1]
    except (TypeError, ValueError):
        return None


def _valid(kind: str, value, options) -> bool:
    if value is None:
        return False
    if options is None:
        return True
    if kind == "list":
        return all(v in options for v in value)
    if isinstance(options, tuple) and len(options) == 2 and kind == "float":  # (lo, hi) of a slider
        return options[0] <= value <= options[1]
    return value in options


def _coerce(kind: str, value, options):
    """A URL value matched to the widget's options (URL strings of int options, ...)."""
    if options is None or value is None or (isinstance(options, tuple) and kind == "float"):
        return value
    by_text = {str(o): o for o in options}
    if kind == "list":
        return [by_text.get(str(v), v) for v in value]
    return by_text.get(str(value), value)


def _session_start() -> None:
    if _URL0 not in st.session_state:
        st.session_state[_URL0] = {k: st.query_params.get_all(k) for k in st.query_params.keys()}
        st.session_state[_VIEW] = {}
        st.session_state[_URLV] = {}


def control(make, label: str, *args, key: str, default, options=None, **kwargs):
    """Draw widget ``make(label, *args, key=key, **kwargs)`` with its value from, in order:
    the widget's own state (same page), the URL the session began with, the value this
    session last had on any page sharing the parameter, else ``default``. A value not among
    ``options`` (a step another run lacks) falls back to ``default``. The drawn value goes to
    the URL (left out when it equals ``default``) and is returned.
    """
    _session_start()
    param, kind = PARAMS[key]
    view, urlv, url0 = st.session_state[_VIEW], st.session_state[_URLV], st.session_state[_URL0]
    if key not in st.session_state or not _valid(kind, st.session_state[key], options):
        value = None
        if param in url0:
            value = _coerce(kind, parse(kind, url0.pop(param)), options)
        if not _valid(kind, value, options) and param in view:
            value = view[param]
        if not _valid(kind, value, options):
            value = default
        st.session_state[key] = value
    value = make(label, *args, key=key, **kwargs)
    view[param] = value
    urlv[param] = None if _same(value, default) else dump(kind, value)
    sync_url()
    return value


def _same(a, b) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        try:
            return abs(float(a) - float(b)) < 1e-12
        except (TypeError, ValueError):
            return False
    return a == b


# --- the run selection ----------------------------------------------------------------------
def default_selection(table: pd.DataFrame, roots: list[str], n: int = DEFAULT_SELECTED) -> list[str]:
    """The healthy (finished or running, readable) runs of the first root, newest first.

    >>> t = pd.DataFrame({"key": ["d/a", "d/b", "s/c"], "root": ["runs/d", "runs/d", "s"],
    ...                   "problem": [None, None, None], "status": ["finished"] * 3, "updated": [1.0, 2.0, 3.0]})
    >>> default_selection(t, ["runs/d", "s"])
    ['d/b', 'd/a']
    """
    if table.empty:
        return []
    ok = table["problem"].isna() & table["status"].isin(["finished", "running"])
    first = next((r for r in roots if (table["root"] == str(r)).any() and (ok & (table["root"] == str(r))).any()), None)
    if first is None:
        return []
    rows = table[ok & (table["root"] == str(first))]
    rows = rows.assign(_t=pd.to_numeric(rows.get("updated"), errors="coerce").fillna(0.0))
    return rows.sort_values("_t", ascending=False, kind="stable")["key"].head(n).tolist()


def init_selection(table: pd.DataFrame, roots: list[str]) -> list[str]:
    """On a session's first run: the selection from the URL (checked), else the default.

    Returns messages for run keys from the URL that were refused or not found.
    """
    _session_start()
    if SEL in st.session_state:
        return st.session_state.get("_url_messages", [])
    messages, chosen = [], []
    known = set(table["key"])
    asked = st.session_state[_URL0].get("run", [])
    for key in asked:
        try:
            data.resolve_key(key, roots)
        except RunPathError as e:
            messages.append(f"refused run {key!r} from the URL: {e}")
            continue
        if key in known:
            chosen.append(key)
        else:
            messages.append(f"run {key!r} from the URL is not under the roots; ignored")
    if not asked:
        chosen = default_selection(table, roots)
    st.session_state[SEL] = list(dict.fromkeys(chosen))
    st.session_state["_url_messages"] = messages
    return messages


def label(table: pd.DataFrame):
    info = table.set_index("key")

    def fmt(key: str) -> str:
        if key not in info.index:
            return key
        r = info.loc[key]
        return f"{key} · {r['estimator'] or '?'} · {r['status']}"

    return fmt


def sidebar(table: pd.DataFrame) -> list[str]:
    """The selection widget; keeps the URL query in step with it."""
    options = table["key"].tolist()
    st.session_state[SEL] = [k for k in st.session_state.get(SEL, []) if k in options]
    st.sidebar.multiselect("Selected runs", options, key=SEL, format_func=label(table),
                           help="Runs shown on the Curves, Value MSE and Clipping pages; the first one on "
                                "Advantages and Groups. The whole view is kept in the URL, so a link can be shared.")
    sync_url()
    return list(st.session_state[SEL])


def sync_url() -> None:
    """Write the selection and every non-default view value into the URL (only what changed)."""
    _session_start()
    want = {"run": list(st.session_state.get(SEL, []))}
    for param, v in st.session_state[_URLV].items():
        if v is not None:
            want[param] = v
    have = {k: st.query_params.get_all(k) for k in st.query_params.keys()}
    if have == want:
        return
    for k in have:
        if k not in want:
            del st.query_params[k]
    for k, v in want.items():
        if have.get(k) != v:
            st.query_params[k] = v


def selected(table: pd.DataFrame) -> pd.DataFrame:
    """The selected rows of the runs table, in selection order."""
    keys = [k for k in st.session_state.get(SEL, []) if k in set(table["key"])]
    return table.set_index("key").loc[keys].reset_index()


def colors(keys) -> dict[str, str]:
    """Each run's colour (:func:`lab.figures.series_colors` of the selected runs' keys): the
    same on every chart of every page."""
    sel = list(st.session_state.get(SEL, []))
    return figures.series_colors(list(dict.fromkeys(sel + [str(k) for k in keys])))


def pick_run(rows: pd.DataFrame, key: str, label_text: str = "Run") -> pd.Series | None:
    """One of the selected runs (a selectbox), or None with an info box when none is selected."""
    if rows.empty:
        st.info("Select a run in the sidebar (or on the Runs page).")
        return None
    options = rows["key"].tolist()
    k = control(st.selectbox, label_text, options, key=key, default=options[0], options=options)
    return rows.set_index("key").loc[k]


def pick_run_with_samples(rows: pd.DataFrame, key: str) -> tuple[pd.Series, list[int]]:
    """:func:`pick_run`, then that run's sample steps; stops the page (with a message) when
    no run is selected or the chosen one has no readable samples yet."""
    run = pick_run(rows, key)
    if run is None:
        st.stop()
    steps = data.sample_steps(run["path"])
    if not steps:
        st.warning(f"`{run.name}` has no readable samples yet.")
        st.stop()
    return run, steps


def context() -> tuple[list[str], pd.DataFrame, pd.DataFrame]:
    """(roots, runs table, selected rows with a readable path) for a page."""
    roots = data.roots_from_env()
    table = data.runs_table(tuple(roots))
    rows = selected(table)
    if not rows.empty:
        rows = rows[rows["path"].notna()]
    return roots, table, rows


def add_to_selection(keys: list[str]) -> None:
    """Button callback (runs before the script, so the sidebar widget picks it up)."""
    st.session_state[SEL] = list(dict.fromkeys(list(st.session_state.get(SEL, [])) + list(keys)))


PRELOAD_KEY = "plotly_preload"
"""The key of the hidden chart :func:`preload_plotly` places (tests and benchmarks leave it out)."""
PRELOAD_SELECTOR = f".st-key-{PRELOAD_KEY}"
"""The CSS selector of that chart's container in the browser (Streamlit gives a keyed element the class
``st-key-<key>``): how browser tests and the load benchmark find it."""


def preload_plotly() -> None:
    """Place a hidden one-point chart first thing on every page, so the browser starts loading
    plotly.js (a 4.7 MB module, ~1.2 s to load and start on 2 cores) while the page's script is
    still reading its runs; otherwise that load begins only when the page's first real chart
    arrives, after the script has ended, and the user waits for both in turn."""
    import plotly.graph_objects as go

    st.html(f"<style>{PRELOAD_SELECTOR} {{display: none}}</style>")
    with st.sidebar:
        st.plotly_chart(go.Figure(go.Scatter(x=[0], y=[0])), key=PRELOAD_KEY, config={"staticPlot": True})
