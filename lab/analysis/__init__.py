"""The evidence engine: statistics, results files, generated doc blocks, the bandit, gradient errors, claims.

Ordinary library code that ``benchmarks/`` (thin drivers), ``docs/claims.md``, the dashboard
and the notebooks all use; every verdict the lab prints follows :func:`lab.analysis.claims.verdict`.

- :mod:`~lab.analysis.stats`: intervals, paired ratios, equivalence, power (MDE), Holm / BH.
- :mod:`~lab.analysis.results`: the one reader and atomic writer of ``data/results/`` and provenance.
- :mod:`~lab.analysis.docblocks`: the one splicer of ``<!-- name:start -->`` blocks.
- :mod:`~lab.analysis.specs`: ``"kae(h=0.2)"`` <-> ("kae", {"h": 0.2}).
- :mod:`~lab.analysis.bandit`: the drifting Bernoulli bandit with exact values and its posterior floor.
- :mod:`~lab.analysis.gradvar`: one batch's policy-gradient error against a reference gradient.
- :mod:`~lab.analysis.claims`: the seed papers' claims as data, one check builder, the verdict rule.

Submodules load on first use (``lab.analysis.gradvar`` pulls in the models).

>>> from lab import analysis
>>> analysis.stats.holm([0.01, 0.02])
[0.02, 0.02]
"""

from __future__ import annotations

import importlib

__all__ = ["stats", "results", "docblocks", "specs", "bandit", "gradvar", "claims"]


def __getattr__(name: str):
    if name in __all__:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
