"""Moved to :mod:`lab.analysis.gradvar` (this re-export stays for one release)."""
from lab.analysis.gradvar import *  # noqa: F401,F403
from lab.analysis.gradvar import Reference, Snapshot  # noqa: F401
from lab.analysis.stats import mean_ci95  # noqa: F401
