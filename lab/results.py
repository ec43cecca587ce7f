"""Moved to :mod:`lab.analysis.results` (this re-export stays for one release: notebooks and the app import it)."""
from lab.analysis.results import *  # noqa: F401,F403
from lab.analysis.results import RESULTS_DIR, path, provenance, read, write_csv  # noqa: F401
