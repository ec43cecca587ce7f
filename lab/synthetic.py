"""Moved to :mod:`lab.analysis.bandit` (this re-export stays for one release: notebooks import it)."""
from lab.analysis.bandit import *  # noqa: F401,F403
from lab.analysis.bandit import DriftingBandit, PosteriorBaseline, ValueRun, posterior_mse_run, value_mse_run  # noqa: F401
