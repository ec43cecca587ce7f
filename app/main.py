"""The lab dashboard: ``lab app`` (or ``streamlit run app/main.py``).

Entry point only: page config, the run roots, the shared run selection in the sidebar
(mirrored in the URL), and ``st.navigation`` over the thin pages in ``app/views/``.
Loading is in ``app/data.py``, figures in ``lab/figures.py`` and ``app/charts.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

_REPO = Path(__file__).resolve().parent.parent
if str(_REPO) not in sys.path:  # `streamlit run app/main.py` puts only app/ on the path
    sys.path.insert(0, str(_REPO))

import streamlit as st  # noqa: E402

from app import data, state  # noqa: E402

st.set_page_config(page_title="lab: RLVR runs", page_icon=":material/show_chart:", layout="wide")
state.preload_plotly()

roots = data.roots_from_env()
table = data.runs_table(tuple(roots))
messages = state.init_selection(table, roots)

st.sidebar.markdown("### lab dashboard")
st.sidebar.caption("Roots: " + ", ".join(f"`{label}` = {root}" for label, root in data.root_labels(roots).items()))
for m in messages:
    st.sidebar.error(m)
state.sidebar(table)

VIEWS = Path(__file__).resolve().parent / "views"
pages = [
    st.Page(str(VIEWS / "runs.py"), title="Runs", icon=":material/table_rows:", url_path="runs"),
    st.Page(str(VIEWS / "curves.py"), title="Curves", icon=":material/show_chart:", url_path="curves"),
    st.Page(str(VIEWS / "advantages.py"), title="Advantages", icon=":material/bar_chart:", url_path="advantages"),
    st.Page(str(VIEWS / "value_mse.py"), title="Value MSE", icon=":material/target:", url_path="value-mse"),
    st.Page(str(VIEWS / "groups.py"), title="Groups", icon=":material/workspaces:", url_path="groups"),
    st.Page(str(VIEWS / "clipping.py"), title="Clipping", icon=":material/content_cut:", url_path="clipping"),
]


def _home() -> None:
    """``/`` opens the Runs page at ``/runs`` (a default page has no path of its own, so ``/runs``
    would otherwise be "Page not found"), keeping the view in the URL."""
    st.switch_page(pages[0], query_params={k: st.query_params.get_all(k) for k in st.query_params.keys()})


home = st.Page(_home, title="Runs", url_path="home", default=True, visibility="hidden")
st.navigation([home, *pages]).run()
