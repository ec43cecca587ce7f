"""The run selection shared by every page: session state, a sidebar widget, the URL query.

The selected run keys live under ``st.session_state["selected_runs"]`` (the sidebar
multiselect's key, rendered by ``app/main.py`` on every page, so it survives page
changes) and are mirrored into the URL as ``?run=<key>&run=<key>`` so a view can be
shared. Keys from the URL are checked with ``lab.runs.resolve_run`` before use; refused
ones are reported, never read.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app import data
from lab.runs import RunPathError

SEL = "selected_runs"
DEFAULT_SELECTED = 6


def init_selection(table: pd.DataFrame, roots: list[str]) -> list[str]:
    """On a session's first run: the selection from the URL (checked), else a default one.

    Returns messages for run keys from the URL that were refused or not found.
    """
    if SEL in st.session_state:
        return st.session_state.get("_url_messages", [])
    messages, chosen = [], []
    known = set(table["key"])
    for key in st.query_params.get_all("run"):
        try:
            data.resolve_key(key, roots)
        except RunPathError as e:
            messages.append(f"refused run {key!r} from the URL: {e}")
            continue
        if key in known:
            chosen.append(key)
        else:
            messages.append(f"run {key!r} from the URL is not under the roots; ignored")
    if not chosen and not st.query_params.get_all("run"):
        healthy = table[table["problem"].isna() & table["status"].isin(["finished", "running"])]
        chosen = healthy["key"].head(DEFAULT_SELECTED).tolist()
    st.session_state[SEL] = chosen
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
                                "Advantages and Groups. Kept in the URL (?run=...), so a view can be shared.")
    sync_url()
    return list(st.session_state[SEL])


def sync_url() -> None:
    sel = list(st.session_state.get(SEL, []))
    if st.query_params.get_all("run") != sel:
        st.query_params["run"] = sel


def selected(table: pd.DataFrame) -> pd.DataFrame:
    """The selected rows of the runs table, in selection order."""
    keys = [k for k in st.session_state.get(SEL, []) if k in set(table["key"])]
    return table.set_index("key").loc[keys].reset_index()


def pick_run(rows: pd.DataFrame, key: str, label_text: str = "Run") -> pd.Series | None:
    """One of the selected runs (a selectbox), or None with an info box when none is selected."""
    if rows.empty:
        st.info("Select a run in the sidebar (or on the Runs page).")
        return None
    k = st.selectbox(label_text, rows["key"].tolist(), key=key)
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
