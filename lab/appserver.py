"""The dashboard's server process: ``streamlit run`` with the pages' heavy imports done first.

Streamlit imports a page's modules on its first script run, so without this the first visitor
of a fresh ``lab app`` waited for pandas, pyarrow, plotly and the lab's figure code (about
0.5 s on 2 cores) before anything was drawn. ``lab app`` starts ``python -m lab.appserver``
with streamlit's own arguments; the imports happen while the server starts, which the user
waits for anyway. Only third-party and ``lab`` modules are imported here: the app's own
modules create their Streamlit caches on import and must do so inside the runtime.
"""

from __future__ import annotations

import importlib
import sys

PRELOAD = ("pandas", "pyarrow", "pyarrow.parquet", "plotly.graph_objects", "plotly.subplots",
           "streamlit.elements.plotly_chart", "scipy.stats", "lab.figures", "lab.runs", "lab.analysis.stats")
"""Imported before the server starts (each is imported by a page on its first run anyway)."""


def preload(names=PRELOAD) -> list[str]:
    """Import ``names``; returns those that could not be imported (a page reports its own error later).

    >>> preload(("json", "no_such_module_here"))
    ['no_such_module_here']
    """
    missing = []
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    return missing


def main(argv: list[str] | None = None) -> None:
    """``python -m lab.appserver run app/main.py --server.port ...``: preload, then streamlit's CLI."""
    preload()
    from streamlit.web import cli

    sys.argv = ["streamlit", *(sys.argv[1:] if argv is None else argv)]
    cli.main()


if __name__ == "__main__":
    main()
