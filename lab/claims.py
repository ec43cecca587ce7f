"""The seed papers' headline claims against the lab's results files: ``docs/claims.md`` and the README's Results block.

    .venv/bin/python -m lab.claims           # (re)writes docs/claims.md and the README block
    .venv/bin/python -m lab.claims --check   # exit 1, with a diff, when either is out of date

Every lab number is read from ``data/results/`` through :func:`lab.results.read`, never
copied by hand, and is printed with the file and the filter it came from. The papers'
numbers are quoted from ``shared/methods.md`` (see :data:`CLAIMS`). A comparison is a
:class:`Evidence`: the lab's effect (a ratio of value errors, or a difference of
accuracies), its 95% interval and how many seeds or snapshots it rests on.

**The verdict rule** (:func:`verdict`), on the lab's 95% interval [lo, hi] of the effect,
the "no effect" value (1 for a ratio, 0 for a difference) and the paper's number p (for a
claimed range, its weakest end, the one closest to no effect):

- *not tested*: no results row for the comparison (file not made yet, or no row matching the
  filter), or no interval (fewer than two seeds);
- *not*: the interval includes no effect or lies on the other side of it;
- *reproduced*: the interval is wholly on the paper's side of no effect and reaches the
  paper's number or beats it (lo ≤ p for a ratio claimed to fall; hi ≥ p for a rise), or the
  paper states a direction and no number;
- *partly*: wholly on the paper's side, but short of the paper's number all along.

>>> verdict(0.30, 0.40, 0.36)       # a claimed 64% cut: the interval reaches 0.36
'reproduced'
>>> verdict(0.44, 0.51, 0.36)       # significantly lower, never as low as claimed
'partly'
>>> verdict(0.90, 1.10, 0.36), verdict(None, None, 0.36)
('not', 'not tested')
"""

from __future__ import annotations

import argparse
import difflib
import math
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import pandas as pd

from lab import results

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "claims.md"
README = ROOT / "README.md"
BEGIN = "<!-- results:begin -->"
END = "<!-- results:end -->"
VERDICTS = ("reproduced", "partly", "not", "not tested")

COMMANDS = {
    "value_mse": "make bench",
    "value_mse_calibrated": ".venv/bin/python benchmarks/value_mse.py --calibrated",
    "value_mse_real_summary": ".venv/bin/python benchmarks/value_mse_real.py",
    "grad_variance": ".venv/bin/python benchmarks/grad_variance.py",
    "time_to_accuracy_summary": ".venv/bin/python benchmarks/time_to_accuracy.py",
    "learning_curve": ".venv/bin/python benchmarks/learning_curve.py",
    "step_time_vs_trl": "make bench",
    "step_time_vs_trl_1thread": ".venv/bin/python benchmarks/step_time_vs_trl.py --threads 1 --out data/results/step_time_vs_trl_1thread.csv",
}
"""How each results file is made, for the "not yet run" lines."""


# --- the rule ------------------------------------------------------------------------------------
def verdict(low: float | None, high: float | None, claimed: float | None = None, *, null: float = 1.0,
            better: str = "lower") -> str:
    """The verdict on a 95% interval [low, high] of the lab's effect (the module docstring's rule).

    ``better="lower"`` for a ratio the paper says falls below ``null`` (1), ``"higher"`` for a
    difference it says rises above ``null`` (pass ``null=0``). ``claimed`` is the paper's number
    on the same scale (its weakest end for a range), ``None`` when the paper gives a direction only.

    >>> verdict(0.2, 0.8), verdict(1.01, 1.3)
    ('reproduced', 'not')
    >>> verdict(0.004, 0.010, 0.0139, null=0.0, better="higher")
    'partly'
    >>> verdict(0.004, 0.020, 0.0139, null=0.0, better="higher")
    'reproduced'
    """
    if better not in ("lower", "higher"):
        raise ValueError(f"better: choose 'lower' or 'higher', got {better!r}")
    if low is None or high is None or math.isnan(low) or math.isnan(high):
        return "not tested"
    if better == "higher":  # mirror onto the "lower" case
        low, high, claimed, null = -high, -low, (None if claimed is None else -claimed), -null
    if not high < null:
        return "not"
    return "reproduced" if claimed is None or low <= claimed else "partly"


# --- statistics ----------------------------------------------------------------------------------
def mean_ci(values: list[float]) -> tuple[float, float, float, int]:
    """(mean, 95% t-interval low, high, n) of independent values; the interval is NaN when n < 2.

    >>> mean_ci([0.5, 0.5, 0.5])
    (0.5, 0.5, 0.5, 3)
    >>> [round(x, 4) for x in mean_ci([1.0, 2.0, 3.0])[:3]]   # 2 ± t(0.975, 2)·1/√3
    [2.0, -0.4841, 4.4841]
    """
    from scipy.stats import t

    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, math.nan, math.nan, n
    sd = math.sqrt(sum((x - mean) ** 2 for x in values) / (n - 1))
    half = float(t.ppf(0.975, n - 1)) * sd / math.sqrt(n)
    return mean, mean - half, mean + half, n


def log_ratio_ci(a: float, a_ci: float, b: float, b_ci: float) -> tuple[float, float, float]:
    """a / b with a 95% interval from two independent means ± their 95% half-widths (delta method on the log).

    >>> [round(x, 3) for x in log_ratio_ci(1.0, 0.0, 2.0, 0.0)]
    [0.5, 0.5, 0.5]
    """
    if a <= 0 or b <= 0:
        return a / b if b else math.nan, math.nan, math.nan
    se = math.hypot(a_ci / 1.96 / a, b_ci / 1.96 / b)
    r = a / b
    return r, r * math.exp(-1.96 * se), r * math.exp(1.96 * se)


def _num(x) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return math.nan
    return v


# --- evidence ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Evidence:
    """The lab's effect for one comparison: ``value`` in [``low``, ``high``] (95%), over ``n`` seeds/snapshots."""

    value: float
    low: float
    high: float
    n: int | None
    unit: str = "seeds"


@dataclass(frozen=True)
class Check:
    """One line of evidence for a claim: where it was measured, the filter, the number, the verdict."""

    setting: str  # "bandit", "real runs", "real-model gradients", "real runs (accuracy)", "exact"
    regime: str
    source: str  # "value_mse.csv: estimator=kae(h=0.2), group_size=2, reuse=10 ÷ estimator=grpo, ..."
    evidence: Evidence | None
    verdict: str
    why: str = ""  # why it is not tested, or a caveat


@dataclass(frozen=True)
class Claim:
    """A paper's headline claim, its number as quoted, and how the lab tests it (``checks(root)``)."""

    key: str
    paper: str
    claim: str
    paper_number: str
    quoted_from: str
    unknown: str
    scale: str  # "ratio" (% change of a value error) or "difference" (accuracy points) or "room" (u−1)/(1−l)
    claimed: float | None
    checks: Callable[[Path | None], list[Check]] = field(repr=False)


class _Missing(Exception):
    pass


def _read(name: str, root) -> pd.DataFrame:
    try:
        return results.read(name, root)
    except FileNotFoundError as e:
        raise _Missing(f"`data/results/{name}.csv` not made yet (`{COMMANDS.get(name, 'make bench')}`)") from e


def _need(df: pd.DataFrame, name: str, cols) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ValueError(f"data/results/{name}.csv: missing column(s) {', '.join(missing)}; the benchmark that writes "
                         f"it must follow the agreed schema (docs/claims.md lists the columns used)")


def _is(df: pd.DataFrame, col: str, value) -> pd.Series:
    return df[col].astype(str) == str(value)


def _check(setting, regime, source, fn, claim: Claim, *, direction_only: bool = False) -> Check:
    """Run one evidence function; a missing file or row becomes *not tested* with the reason.

    ``direction_only``: judge the direction alone (for a quantity the paper gives no number for,
    such as the gradient error behind a value-error claim).
    """
    try:
        ev = fn()
    except _Missing as e:
        return Check(setting, regime, source, None, "not tested", str(e))
    if ev is None:
        return Check(setting, regime, source, None, "not tested", "no matching row")
    null, better = (0.0, "higher") if claim.scale == "difference" else (1.0, "higher" if claim.scale == "room" else "lower")
    v = verdict(ev.low, ev.high, None if direction_only else claim.claimed, null=null, better=better)
    why = "no interval (fewer than 2 seeds)" if v == "not tested" else ""
    return Check(setting, regime, source, ev, v, why)


BANDITS = {"bandit": "value_mse", "bandit (calibrated)": "value_mse_calibrated"}
"""The bandit settings and their results files: the default world, and the world fitted to the real runs' drift
(``benchmarks/value_mse.py --calibrated``; same rows and format, its world in the sidecar)."""


def _bandit(root, a: str, ga: int, b: str, gb: int, j: int, name: str = "value_mse") -> Evidence | None:
    """Per-seed ratio of value MSE on a bandit (``name``: ``value_mse`` or ``value_mse_calibrated``), paired by seed."""
    df = _read(name, root)
    _need(df, name, ("estimator", "group_size", "reuse", "seed", "value_mse"))

    def sel(label, g):
        x = df[_is(df, "estimator", label) & (df["group_size"] == g) & (df["reuse"] == j)]
        return x.groupby("seed")["value_mse"].mean()

    xa, xb = sel(a, ga), sel(b, gb)
    seeds = sorted(set(xa.index) & set(xb.index))
    if not seeds:
        return None
    return Evidence(*mean_ci([float(xa[s] / xb[s]) for s in seeds]))


def _best_h(root, g: int, j: int, name: str = "value_mse") -> str | None:
    """The KAE row with the lowest mean value MSE at (G, J) on a bandit (picked on the same seeds)."""
    try:
        df = _read(name, root)
    except _Missing:
        return None
    x = df[df["estimator"].astype(str).str.startswith("kae(") & (df["group_size"] == g) & (df["reuse"] == j)]
    return None if x.empty else str(x.groupby("estimator")["value_mse"].mean().idxmin())


def _rows_for(df: pd.DataFrame, estimator: str) -> pd.DataFrame:
    """Rows of ``estimator`` by registry name: exactly that name, else labels ``name(param=...)``."""
    exact = df[_is(df, "estimator", estimator)]
    return exact if not exact.empty else df[df["estimator"].astype(str).str.startswith(estimator + "(")]


def _real(root, estimator: str, g: int, j: int, baseline: str) -> Evidence | None:
    """``value_mse_real_summary.csv``: the row's own paired ratio to its paper's baseline and its interval."""
    name = "value_mse_real_summary"
    df = _read(name, root)
    _need(df, name, ("rollouts_per_prompt", "prompt_reuse", "estimator", "seeds", "baseline", "ratio_to_baseline",
                     "ratio_ci_low", "ratio_ci_high"))
    x = _rows_for(df, estimator)
    x = x[(x["rollouts_per_prompt"] == g) & (x["prompt_reuse"] == j) & _is(x, "baseline", baseline)]
    x = x[x["ratio_to_baseline"].map(_num).notna()]
    if x.empty:
        return None
    r = x.iloc[0]
    return Evidence(_num(r["ratio_to_baseline"]), _num(r["ratio_ci_low"]), _num(r["ratio_ci_high"]), int(r["seeds"]))


def _real_unpaired(root, a: str, ga: int, b: str, gb: int, j: int) -> Evidence | None:
    """``value_mse_real_summary.csv``: value MSE of ``a`` at G = ``ga`` over ``b``'s at ``gb`` (different runs: unpaired)."""
    name = "value_mse_real_summary"
    df = _read(name, root)
    _need(df, name, ("rollouts_per_prompt", "prompt_reuse", "estimator", "seeds", "value_mse", "value_mse_ci95"))

    def one(est, g):
        x = _rows_for(df, est)
        x = x[(x["rollouts_per_prompt"] == g) & (x["prompt_reuse"] == j)]
        return None if x.empty else x.iloc[0]

    ra, rb = one(a, ga), one(b, gb)
    if ra is None or rb is None:
        return None
    if gb == 8 and b == "grpo" and "ratio_to_grpo_g8" in df.columns and not math.isnan(_num(ra["ratio_to_grpo_g8"])):
        # the benchmark's own ratio of means with its bootstrap interval over seeds (better than the delta method)
        return Evidence(_num(ra["ratio_to_grpo_g8"]), _num(ra["ratio_to_grpo_g8_ci_low"]),
                        _num(ra["ratio_to_grpo_g8_ci_high"]), min(int(ra["seeds"]), int(rb["seeds"])))
    r, lo, hi = log_ratio_ci(_num(ra["value_mse"]), _num(ra["value_mse_ci95"]), _num(rb["value_mse"]), _num(rb["value_mse_ci95"]))
    return Evidence(r, lo, hi, min(int(ra["seeds"]), int(rb["seeds"])))


def _gradients(root, a: str, b: str, g: int) -> Evidence | None:
    """``grad_variance.csv``: geometric mean over snapshot steps of rel_sq_error(a) / rel_sq_error(b) at G = ``g``.

    Each snapshot's ratio gets a delta-method variance from the two 95% half-widths (treated as
    independent); the mean of the log-ratios over snapshots gets their pooled variance.
    """
    name = "grad_variance"
    df = _read(name, root)
    _need(df, name, ("snapshot_step", "estimator", "rollouts_per_prompt", "rel_sq_error", "rel_sq_error_ci95"))
    xa, xb = (_rows_for(df, e) for e in (a, b))
    xa, xb = (x[x["rollouts_per_prompt"] == g].groupby("snapshot_step").first() for x in (xa, xb))
    steps = sorted(set(xa.index) & set(xb.index))
    logs, var = [], 0.0
    for s in steps:
        va, ca, vb, cb = (_num(x.loc[s, c]) for x in (xa, xb) for c in ("rel_sq_error", "rel_sq_error_ci95"))
        if not (va > 0 and vb > 0):
            continue
        logs.append(math.log(va / vb))
        var += (ca / 1.96 / va) ** 2 + (cb / 1.96 / vb) ** 2
    if not logs:
        return None
    m, se = sum(logs) / len(logs), math.sqrt(var) / len(logs)
    return Evidence(math.exp(m), math.exp(m - 1.96 * se), math.exp(m + 1.96 * se), len(logs), "snapshots")


def _accuracy(root, a: str, base_filter: dict, g: int | None = None) -> list[tuple[str, Evidence]]:
    """``time_to_accuracy_summary.csv``: final accuracy of each ``a`` row (by estimator) minus the first row matching
    ``base_filter`` ({column: value}); the two are different runs, so unpaired."""
    name = "time_to_accuracy_summary"
    df = _read(name, root)
    _need(df, name, ("label", "estimator", "rollouts_per_prompt", "prompt_reuse", "seeds", "final_accuracy", "final_ci95"))
    base = df
    for col, value in base_filter.items():
        base = base[_is(base, col, value)]
    rows = _rows_for(df, a)
    if g is not None:
        rows = rows[rows["rollouts_per_prompt"] == g]
    if base.empty or rows.empty:
        return []
    fb, cb = _num(base.iloc[0]["final_accuracy"]), _num(base.iloc[0]["final_ci95"])
    out = []
    for _, r in rows.iterrows():
        d, half = _num(r["final_accuracy"]) - fb, math.hypot(_num(r["final_ci95"]), cb)
        out.append((str(r["label"]), Evidence(d, d - half, d + half, min(int(r["seeds"]), int(base.iloc[0]["seeds"])))))
    return out


def _accuracy_checks(root, claim: Claim, a: str, base_filter: dict, g: int | None) -> list[Check]:
    base = ", ".join(f"{k}={v}" for k, v in base_filter.items())
    src = f"time_to_accuracy_summary.csv: final_accuracy of estimator={a}" + (f", rollouts_per_prompt={g}" if g else "") + \
        f" − that of {base} (unpaired; ± from final_ci95)"
    try:
        found = _accuracy(root, a, base_filter, g)
    except _Missing as e:
        return [Check("real runs (accuracy)", "equal rollouts per step", src, None, "not tested", str(e))]
    if not found:
        return [Check("real runs (accuracy)", "equal rollouts per step", src, None, "not tested", "no matching row")]
    return [_check("real runs (accuracy)", f"label {lab}", src.replace(f"estimator={a}", f"label={lab}"), lambda ev=ev: ev, claim)
            for lab, ev in found]


# --- the claims ----------------------------------------------------------------------------------
KAE_DEFAULT = "kae(h=0.2)"
BASIS_DEFAULT = "basis(fallback=prior, online_prior=missing, beta_selection=crossfit)"
BASIS_READINGS = {BASIS_DEFAULT: "the default reading",
                  "basis(fallback=zero, online_prior=missing, beta_selection=crossfit)": "zero fallback",
                  "basis(fallback=prior, online_prior=always, beta_selection=crossfit)": "online prior always"}
"""The BASIS rows of the bandit shown for its claims, with the reading each one is."""
METHODS = "`shared/methods.md`"
VALUE_ERROR = ("What \"value error\" means exactly in the paper (per rollout or per prompt, against which truth, "
               "over which steps) is not known. The lab's: on the bandit, the exact mean of (b − V)² over rollouts of "
               "steps 10–39; on real runs, the probe value MSE against Monte-Carlo truth with the truth's own noise "
               "subtracted (`probe/value_mse_corrected`).")


def world_note(root, name: str = "value_mse_calibrated") -> str:
    """The bandit world a results file was made in, from its sidecar (``""`` when it records none).

    >>> world_note(None, "no_such_results")
    ''
    """
    w = results.provenance(name, root).get("world")
    return "" if not w else " (world: " + ", ".join(f"{k} = {w[k]:g}" for k in ("trend", "drift", "spread") if k in w) + ")"


def _bandit_src(a, ga, b, gb, j, name="value_mse", root=None):
    same = "same G, J" if ga == gb else f"group_size={gb}, same J"
    world = world_note(root, name) if name != "value_mse" else ""
    return f"{name}.csv{world}: estimator={a}, group_size={ga}, reuse={j} ÷ estimator={b}, {same}; per-seed ratio"


def _real_src(est, g, j, base):
    return (f"value_mse_real_summary.csv: estimator={est}, rollouts_per_prompt={g}, prompt_reuse={j}, baseline={base}; "
            "ratio_to_baseline [ratio_ci_low, ratio_ci_high]")


def _grad_run(root) -> str:
    """Which run the gradient snapshots come from, as the file records it ("" when it does not say)."""
    try:
        df = _read("grad_variance", root)
    except _Missing:
        return ""
    def values(col):
        return "/".join(str(v) for v in sorted(df[col].dropna().unique()))

    run = f"a `{values('train_estimator')}` run" if "train_estimator" in df.columns else "a run"
    bits = [f"{lab} = {values(col)}" for col, lab in (("train_rollouts_per_prompt", "G"), ("prompt_reuse", "J"))
            if col in df.columns]
    return f" (snapshots of {', '.join([run, *bits])})" if len(bits) or run != "a run" else ""


def _grad_src(a, b, g):
    return (f"grad_variance.csv: rel_sq_error of estimator={a} ÷ estimator={b}, rollouts_per_prompt={g}; geometric mean "
            "over snapshot_step (± from rel_sq_error_ci95)")


def _kae_value(root) -> list[Check]:
    c = CLAIMS_BY_KEY["kae-value"]
    out = []
    for setting, name in BANDITS.items():
        for g in (2, 4):
            for j in (8, 10):
                out.append(_check(setting, f"G = {g}, J = {j}", _bandit_src(KAE_DEFAULT, g, "grpo", g, j, name, root),
                                  lambda g=g, j=j, name=name: _bandit(root, KAE_DEFAULT, g, "grpo", g, j, name), c))
            best = _best_h(root, g, 10, name)
            if best and best != KAE_DEFAULT:
                ch = _check(setting, f"G = {g}, J = 10, best h", _bandit_src(best, g, "grpo", g, 10, name, root),
                            lambda g=g, best=best, name=name: _bandit(root, best, g, "grpo", g, 10, name), c)
                out.append(replace(ch, why=ch.why or "h picked as the lowest on these same seeds: optimistic"))
    for g in (2, 4):
        out.append(_check("real runs", f"G = {g}, J = 10", _real_src("kae", g, 10, "grpo"),
                          lambda g=g: _real(root, "kae", g, 10, "grpo"), c))
    for g in (2, 4):
        out.append(_check("real-model gradients", f"G = {g}{_grad_run(root)}", _grad_src("kae", "grpo", g),
                          lambda g=g: _gradients(root, "kae", "grpo", g), c, direction_only=True))
    return out


def _kae_accuracy(root) -> list[Check]:
    return _accuracy_checks(root, CLAIMS_BY_KEY["kae-accuracy"], "kae", {"label": "grpo_g8"}, None)


def _krpo_value(root) -> list[Check]:
    c = CLAIMS_BY_KEY["krpo-value"]
    out = [_check(setting, f"G = {g}, J = 1", _bandit_src("krpo", g, "grpo", g, 1, name, root),
                  lambda g=g, name=name: _bandit(root, "krpo", g, "grpo", g, 1, name), c)
           for setting, name in BANDITS.items() for g in (2, 4, 8)]
    out += [_check("real runs", f"G = {g}, J = 1", _real_src("krpo", g, 1, "grpo"),
                   lambda g=g: _real(root, "krpo", g, 1, "grpo"), c) for g in (2, 4, 8)]
    out += [_check("real-model gradients", f"G = {g}{_grad_run(root)}", _grad_src("krpo", "grpo", g),
                   lambda g=g: _gradients(root, "krpo", "grpo", g), c, direction_only=True) for g in (2, 4, 8)]
    return out


def _basis_rpp(root) -> list[Check]:
    c = CLAIMS_BY_KEY["basis-rpp"]
    out = [_check(setting, f"G = 1, J = 1, {reading}", _bandit_src(lab, 1, "reinforce_plus_plus", 1, 1, name, root),
                  lambda lab=lab, name=name: _bandit(root, lab, 1, "reinforce_plus_plus", 1, 1, name), c)
           for setting, name in BANDITS.items() for lab, reading in BASIS_READINGS.items()]
    out.append(_check("real runs", "G = 1, J = 1", _real_src("basis", 1, 1, "reinforce_plus_plus"),
                      lambda: _real(root, "basis", 1, 1, "reinforce_plus_plus"), c))
    out.append(_check("real-model gradients", f"G = 1{_grad_run(root)}", _grad_src("basis", "reinforce_plus_plus", 1),
                      lambda: _gradients(root, "basis", "reinforce_plus_plus", 1), c,
                      direction_only=True))
    return out


def _basis_g8(root) -> list[Check]:
    c = CLAIMS_BY_KEY["basis-g8"]
    out = [_check(setting, f"G = 1 vs G = 8, J = 1, {reading}", _bandit_src(lab, 1, "grpo", 8, 1, name, root),
                  lambda lab=lab, name=name: _bandit(root, lab, 1, "grpo", 8, 1, name), c)
           for setting, name in BANDITS.items() for lab, reading in BASIS_READINGS.items()]
    src = ("value_mse_real_summary.csv: estimator=basis, rollouts_per_prompt=1, prompt_reuse=1: ratio_to_grpo_g8 "
           "[ratio_to_grpo_g8_ci_low, _ci_high] (different runs: a ratio of means with the benchmark's bootstrap interval; "
           "without those columns, value_mse ÷ that of estimator=grpo, rollouts_per_prompt=8, ± from value_mse_ci95)")
    out.append(_check("real runs", "G = 1 vs G = 8, J = 1", src, lambda: _real_unpaired(root, "basis", 1, "grpo", 8, 1), c))
    return out


def _basis_accuracy(root) -> list[Check]:
    return _accuracy_checks(root, CLAIMS_BY_KEY["basis-accuracy"], "basis",
                            {"estimator": "reinforce_plus_plus", "rollouts_per_prompt": 1, "prompt_reuse": 1}, 1)


KL3_DELTAS = (0.01, 0.02, 0.03, 0.05, 0.1)


def _kl3_room(root) -> list[Check]:
    from lab.losses.bounds import clip_bounds, matched_delta

    c = CLAIMS_BY_KEY["kl3-asymmetric"]
    deltas = (*KL3_DELTAS, matched_delta("kl3"))
    rooms = [(hi - 1) / (1 - lo) for lo, hi in (clip_bounds("kl3", d) for d in deltas)]
    lo3, hi3 = clip_bounds("kl3", 0.03)
    v = min(rooms)
    src = ("lab.losses.clip_bounds(\"kl3\", δ) for δ ∈ {0.01, 0.02, 0.03, 0.05, 0.1} and matched_delta(\"kl3\"): "
           f"smallest (u − 1)/(1 − l); computed exactly, no results file (δ = 0.03 gives [{lo3:.4f}, {hi3:.4f}])")
    return [_check("exact", "room above 1 ÷ room below 1, smallest over δ", src, lambda: Evidence(v, v, v, None), c)]


def _kl3_exploration(root) -> list[Check]:
    return [Check("real runs", "KL3 vs ratio clipping at matched budget", "no results file measures it", None, "not tested",
                  "no benchmark compares entropy or clip fractions of `--clip-measure kl3` against ratio clipping yet")]


CLAIMS: tuple[Claim, ...] = (
    Claim("kae-value", "KAE (arXiv 2604.28005)", "value error well below GRPO's group mean when prompts are reused",
          "64–71% lower than GRPO's group mean, across reported steps", f"{METHODS}, KAE, \"Claims\" (from secondary "
          "write-ups of the paper that agree with each other; issue 14 quotes 60–73%)",
          "The paper's bandwidth h is not known (the lab's default is 0.2; the bandit sweeps 0.2–5 and the best-h rows are "
          "picked on the same seeds); the normalising constant M is a reconstruction (Nadaraya–Watson). The paper reuses "
          "each prompt for J = 10 steps (GSM8K/MATH) or 8 (DAPO), so the lab checks J = 8 and 10. " + VALUE_ERROR,
          "ratio", 1 - 0.64, _kae_value),
    Claim("kae-accuracy", "KAE (arXiv 2604.28005)", "higher accuracy than GRPO",
          "44.54 vs 42.88 (DAPO) and 41.49 vs 40.10 (MATH), Qwen2.5-Math-7B: +1.39 to +1.66 points",
          f"{METHODS}, KAE, \"Claims\" (secondary write-ups)",
          "The paper's comparison is at its own G, reuse and model (7B); the lab's time-to-accuracy sweep compares equal "
          "rollouts per step on the tiny model (KAE at G = 2 with 4× the prompts against GRPO at G = 8). The paper's number "
          "is read as a difference of accuracy fractions (0.0139).",
          "difference", 0.0139, _kae_accuracy),
    Claim("krpo-value", "KRPO (arXiv 2505.07527)", "a Kalman-filtered baseline estimates the prompt's value better than "
          "GRPO's group mean (the method's premise)", "none quoted (direction only)",
          f"{METHODS}, KRPO (the method; no number is transcribed there)",
          "The paper's group size is not known to the lab; Q = 1e-5, R = 1e-2 are the reference code's. KRPO's baseline "
          "absorbs the rollout's own reward, so a lower value error would partly be copying the reward; its advantages are "
          "about 10× GRPO's scale, which the gradient error (relative to the reference gradient) includes. " + VALUE_ERROR,
          "ratio", None, _krpo_value),
    Claim("basis-rpp", "BASIS (arXiv 2605.27293)", "with one rollout per prompt, value MSE far below REINFORCE++'s",
          "69% lower than REINFORCE++ (Qwen2.5-Math-7B value study)", f"{METHODS}, BASIS, \"Claims\"",
          "The paper's β grid is not known (the lab's: 0.05–1000); what prompts outside the active set fall back to is "
          "uncertain, so the bandit shows the default `fallback=prior` and the zero-fallback reading of one summary; the "
          "prior is offline (8 reference samples per prompt on the bandit), `online_prior=always` is a lab extension. " +
          VALUE_ERROR, "ratio", 1 - 0.69, _basis_rpp),
    Claim("basis-g8", "BASIS (arXiv 2605.27293)", "one rollout per prompt gives a lower value MSE than the group mean of 8",
          "\"lower\" (direction only)", f"{METHODS}, BASIS, \"Claims\"",
          "As above. G = 1 and G = 8 are different runs: on the bandit they are paired by seed (same prompts' values), on "
          "real runs unpaired.", "ratio", None, _basis_g8),
    Claim("basis-accuracy", "BASIS (arXiv 2605.27293)", "far above single-rollout baselines in accuracy",
          "\"far above\" (direction only; Qwen3-4B, DAPO-Math-17K, 150 steps)", f"{METHODS}, BASIS, \"Claims\"",
          "The lab's time-to-accuracy sweep runs both at G = 1 with 8× the prompts on the tiny model; the paper's \"close to "
          "8-rollout GRPO at about half the compute\" has no number to test against and is left out.",
          "difference", None, _basis_accuracy),
    Claim("kl3-asymmetric", "KL3 (Wu et al., arXiv 2602.05494)", "the trust region is asymmetric: more room to raise a "
          "token's probability than to lower it (u − 1 > 1 − l)", "direction only (the worked "
          f"example in {METHODS}: δ = 0.03 → about [0.775, 1.265])", f"{METHODS}, \"Clipping and divergence\"",
          "The δ values of the paper's experiments were not found; the lab's matched budget δ ≈ 0.02 gives the same total "
          "width as ratio clipping with ε = 0.2 (`lab.losses.bounds.matched_delta`). The lab reads the ratio as π_θ/π_old.",
          "room", None, _kl3_room),
    Claim("kl3-exploration", "KL3 (Wu et al., arXiv 2602.05494)", "the asymmetric region gives stronger exploration "
          "(higher entropy than symmetric clipping)", "none quoted (direction only)", f"{METHODS}, \"Clipping and divergence\"",
          "The paper's δ and models (Qwen3-1.7B, 8B) are not the lab's; see above.", "difference", None, _kl3_exploration),
)
CLAIMS_BY_KEY = {c.key: c for c in CLAIMS}


def evaluate(root: str | Path | None = None) -> list[tuple[Claim, list[Check]]]:
    """Every claim with its checks, read from the results files under ``root`` (default ``data/results/``).

    >>> kae = dict((c.key, checks) for c, checks in evaluate())["kae-value"]
    >>> kae[0].setting, kae[0].regime, kae[0].verdict in VERDICTS
    ('bandit', 'G = 2, J = 8', True)
    """
    return [(c, c.checks(root)) for c in CLAIMS]


# --- rendering -----------------------------------------------------------------------------------
def fmt_effect(ev: Evidence | None, scale: str) -> str:
    """The lab's number as text: a % change of a ratio, a signed difference, or a plain ratio for "room".

    >>> fmt_effect(Evidence(0.47, 0.44, 0.51, 8), "ratio")
    '−53% [−56, −49] (8 seeds)'
    >>> fmt_effect(Evidence(0.012, -0.004, 0.028, 3), "difference")
    '+0.012 [−0.004, +0.028] (3 seeds)'
    >>> fmt_effect(None, "ratio")
    '—'
    """
    if ev is None:
        return "—"
    n = f" ({ev.n} {ev.unit})" if ev.n is not None else ""

    def pct(x):
        return "nan" if math.isnan(x) else f"{100 * (x - 1):+.0f}".replace("-", "−")

    def dif(x):
        return "nan" if math.isnan(x) else f"{x:+.3f}".replace("-", "−")

    if scale == "ratio":
        return f"{pct(ev.value)}% [{pct(ev.low)}, {pct(ev.high)}]{n}"
    if scale == "difference":
        return f"{dif(ev.value)} [{dif(ev.low)}, {dif(ev.high)}]{n}"
    return f"{ev.value:.3f}" + ("" if ev.low == ev.high else f" [{ev.low:.3f}, {ev.high:.3f}]") + n


def _cell(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


def _tally(checks: list[Check]) -> str:
    counts = {v: sum(c.verdict == v for c in checks) for v in VERDICTS}
    return ", ".join(f"{v} ×{n}" if n > 1 else v for v, n in counts.items() if n) or "—"


SETTINGS = ("bandit", "bandit (calibrated)", "real runs", "real-model gradients", "real runs (accuracy)", "exact")


def _sources(root) -> list[str]:
    lines = []
    for name in ("value_mse", "value_mse_calibrated", "value_mse_real_summary", "grad_variance", "time_to_accuracy_summary"):
        try:
            df = _read(name, root)
        except _Missing as e:
            lines.append(f"- {e}.")
            continue
        prov = results.provenance(name, root).get("provenance", {})
        commit = prov.get("git_commit") or next((str(df[c].iloc[0]) for c in ("git_commit", "prov_git_commit") if c in df), None)
        created = prov.get("created") or next((str(df[c].max()) for c in ("created", "prov_created") if c in df), None)
        made = ", ".join(x for x in (f"commit {commit[:10]}" if commit else "", f"made {created}" if created else "") if x)
        world = (world_note(root, name) + ", fitted to the real runs' drift; see [docs/estimators.md](estimators.md"
                 "#the-bandit-calibrated-to-the-real-drift) for how it differs from them"
                 if name == "value_mse_calibrated" else "")
        lines.append(f"- [`data/results/{name}.csv`](../data/results/{name}.csv){world}: {len(df)} rows"
                     + (f" ({made})" if made else "") + ".")
    return lines


def claims_markdown(root: str | Path | None = None) -> str:
    """The whole of ``docs/claims.md``, generated from the results files under ``root``."""
    evaluated = evaluate(root)
    out = [
        "# The seed papers' claims, tested",
        "",
        "<!-- generated by `python -m lab.claims` from data/results/; do not edit by hand (`make claims`) -->",
        "",
        "Each headline claim of the four seed papers (KAE, KRPO, BASIS, KL3), the paper's number as quoted in",
        "`shared/methods.md`, and the lab's number for it: on the drifting bandit with exact values",
        "(`benchmarks/value_mse.py`), on the same bandit with its trend and drift fitted to how fast the real runs'",
        "true values move (`bandit (calibrated)`: `benchmarks/value_mse.py --calibrated`, same rows and grid), on",
        "real runs of the tiny model (`benchmarks/value_mse_real.py`,",
        "`benchmarks/time_to_accuracy.py`) and on its gradients (`benchmarks/grad_variance.py`). Every lab number is",
        "read from `data/results/` by `lab/claims.py` and names the file and the filter it came from; a test fails",
        "when this page and the files disagree.",
        "",
        "**The verdict rule**, on the lab's 95% interval of the effect (a ratio of value errors, where 1 is no",
        "change; or a difference of accuracies, where 0 is none) and the paper's number (for a range, its weakest",
        "end, the one closest to no effect):",
        "",
        "- **reproduced**: the interval lies wholly on the paper's side of no effect and reaches the paper's number",
        "  or beats it; for a claim with a direction and no number, on the paper's side is enough;",
        "- **partly**: wholly on the paper's side, but short of the paper's number over the whole interval;",
        "- **not**: the interval includes no effect, or lies on the other side;",
        "- **not tested**: no results row for it yet (the file or the row is missing), or fewer than two seeds.",
        "",
        "A number computed exactly from the lab's code (KL3's clip interval) counts as an interval of zero width.",
        "",
        "Intervals: on the bandit, a t-interval over seeds of the per-seed ratio (all estimators of a seed see the",
        "same batches); on real runs, the interval `value_mse_real_summary.csv` gives for its paired ratio, or, for",
        "runs that are not paired (different G, or two labels of the time-to-accuracy sweep), one from the two",
        "files' own 95% half-widths treated as independent (the delta method on the log for ratios); for gradients,",
        "the geometric mean over policy snapshots of the ratio of relative squared errors, with the same rule; the",
        "papers give no number for the gradient error, so it is judged by its direction alone.",
        "A ratio is shown as a % change: −53% means the lab's value error is 53% below the baseline's.",
        "",
        "## Summary",
        "",
        "| claim | paper's number | " + " | ".join(s for s in SETTINGS) + " |",
        "|---|---|" + "---|" * len(SETTINGS),
    ]
    for c, checks in evaluated:
        cells = [_tally([k for k in checks if k.setting == s]) for s in SETTINGS]
        out.append(f"| {_cell(c.paper.split(' (')[0])}: {_cell(c.claim)} ([below](#{c.key})) | {_cell(c.paper_number)} | "
                   + " | ".join(cells) + " |")
    for c, checks in evaluated:
        out += ["", f"<a id=\"{c.key}\"></a>", f"## {c.paper}: {c.claim}", "",
                f"- **Paper's number:** {c.paper_number}. Quoted from {c.quoted_from}.",
                f"- **Not known / notes:** {c.unknown}", "",
                "| setting | regime | lab's number [95% CI] | verdict | from (file: filter) |", "|---|---|---|---|---|"]
        for k in checks:
            why = f" ({k.why})" if k.why else ""
            out.append(f"| {k.setting} | {_cell(k.regime)} | {fmt_effect(k.evidence, c.scale)} | **{k.verdict}**{_cell(why)} | "
                       f"{_cell(k.source)} |")
    out += ["", "## Sources", "", *_sources(root), ""]
    return "\n".join(out)


# --- the README block ----------------------------------------------------------------------------
def _not_yet(name: str, what: str) -> str:
    return f"- **{what}:** not yet run (`{COMMANDS[name]}`)."


def time_to_accuracy_line(root=None) -> str:
    """The time-to-accuracy headline: the best lab estimator's rollouts to target as a ratio of GRPO G = 8's."""
    name, what = "time_to_accuracy_summary", "Time to accuracy"
    try:
        df = _read(name, root)
    except _Missing:
        return _not_yet(name, what)
    _need(df, name, ("label", "estimator", "rollouts_per_prompt", "prompts_per_step", "prompt_reuse", "seeds",
                     "start_accuracy", "target_accuracy", "rollouts_to_target", "reached_seeds", "rollout_ratio_to_grpo"))
    base = df[_is(df, "label", "grpo_g8")]
    others = df[~_is(df, "label", "grpo_g8")].assign(_r=lambda d: d["rollout_ratio_to_grpo"].map(_num))
    others = others[others["_r"].notna()]
    src = "([`time_to_accuracy_summary.csv`](data/results/time_to_accuracy_summary.csv); goal ≤ 0.5×)"
    if base.empty or math.isnan(_num(base.iloc[0]["rollouts_to_target"])):
        return f"- **{what}:** GRPO G = 8 (label `grpo_g8`) has no rollouts-to-target yet, so no ratio {src}."
    b = base.iloc[0]
    head = (f"target accuracy {_num(b['target_accuracy']):.3f} (start {_num(b['start_accuracy']):.3f} + 0.8 × GRPO G = 8's "
            f"mean gain); GRPO G = 8 reaches it in {_num(b['rollouts_to_target']):,.0f} rollouts")
    if others.empty:
        return f"- **{what}:** {head}; no other estimator reached it {src}."
    r = others.sort_values(["_r", "label"]).iloc[0]
    return (f"- **{what}:** {head}; the best lab estimator, `{r['estimator']}` (label `{r['label']}`: G = "
            f"{int(r['rollouts_per_prompt'])}, {int(r['prompts_per_step'])} prompts per step, reuse {int(r['prompt_reuse'])}), "
            f"in **{r['_r']:.2f}×** GRPO G = 8's rollouts ({_num(r['rollouts_to_target']):,.0f}; "
            f"{int(r['reached_seeds'])} of {int(r['seeds'])} seeds reached it) {src}.")


def learning_curve_line(root=None) -> str:
    """The learning curve's rise: mean held-out accuracy at step 0 and at the end over finished seeds."""
    name, what = "learning_curve", "Learning curve"
    try:
        df = _read(name, root)
    except _Missing:
        return _not_yet(name, what)
    _need(df, name, ("estimator", "seed", "step", "eval_accuracy", "elapsed_s", "final"))
    parts = []
    for est, d in df.groupby("estimator", sort=True):
        done = d[d["final"].astype(int) == 1]
        seeds = sorted(done["seed"].unique())
        if not seeds:
            continue
        d = d[d["seed"].isin(seeds)]
        start = d.sort_values("step").groupby("seed")["eval_accuracy"].first()
        end = done.groupby("seed")["eval_accuracy"].last()
        rise = end - start
        steps = int(done["step"].max()) + 1
        secs = done.groupby("seed")["elapsed_s"].last()
        parts.append(f"`{est}` held-out accuracy {start.mean():.2f} → {end.mean():.2f} (rise {rise.mean():+.2f}; per seed "
                     f"{rise.min():+.2f} to {rise.max():+.2f}) in {steps} steps, {secs.min():.0f}–{secs.max():.0f} s of training "
                     f"({len(seeds)} seeds)")
    if not parts:
        return f"- **{what}:** no seed has finished yet (`{COMMANDS[name]}`)."
    return f"- **{what}** (default testbed): " + "; ".join(parts) + " ([`learning_curve.csv`](data/results/learning_curve.csv))."


def step_time_line(root=None) -> str:
    """Step time against TRL: the lab's median step, TRL's, the ratio, and the model's bare floor, per results file."""
    what = "Step time against TRL"
    parts = []
    for name in ("step_time_vs_trl", "step_time_vs_trl_1thread"):
        try:
            df = _read(name, root)
        except _Missing:
            if name == "step_time_vs_trl":
                return _not_yet(name, what)
            continue
        _need(df, name, ("system", "median_step_s", "ratio_to_trl"))
        t = {str(s): r for s, r in df.set_index("system").iterrows()}
        if "lab" not in t or "trl" not in t:
            parts.append(f"[`{name}.csv`](data/results/{name}.csv) has no `lab` and `trl` rows")
            continue
        lab, trl = t["lab"], t["trl"]
        threads = f"{int(lab['threads'])} thread{'s' if int(lab['threads']) != 1 else ''}: " if "threads" in df else ""
        floor = f", {_num(lab['ratio_to_floor']):.2f}× the model's bare floor" if "ratio_to_floor" in df and "floor" in t else ""
        parts.append(f"{threads}lab {_num(lab['median_step_s']):.3f} s per step vs TRL {_num(trl['median_step_s']):.3f} s "
                     f"(**{_num(lab['ratio_to_trl']):.2f}×**{floor}; [`{name}.csv`](data/results/{name}.csv))")
    work = ""
    df = _read("step_time_vs_trl", root)
    if {"prompts_per_step", "rollouts_per_prompt", "new_tokens"} <= set(df.columns):
        r = df.iloc[0]
        work = (f" ({int(r['prompts_per_step'])} prompts × {int(r['rollouts_per_prompt'])} rollouts, "
                f"{int(r['new_tokens'])} new tokens, median step)")
    return f"- **{what}**{work}: " + "; ".join(parts) + "."


def claims_line(root=None) -> str:
    """How many checks of the claims table reached each verdict, and the link."""
    checks = [k for _, ks in evaluate(root) for k in ks]
    counts = ", ".join(f"{sum(k.verdict == v for k in checks)} {v}" for v in VERDICTS)
    return (f"- **The seed papers' claims** (KAE, KRPO, BASIS, KL3) against the lab's numbers: [docs/claims.md](docs/claims.md) "
            f"({len(checks)} checks: {counts}).")


def readme_block(root: str | Path | None = None) -> str:
    """The README's Results block, markers included."""
    lines = [BEGIN, "<!-- generated by `python -m lab.claims` from data/results/ (`make claims`); do not edit by hand -->",
             time_to_accuracy_line(root), learning_curve_line(root), step_time_line(root), claims_line(root), END]
    return "\n".join(lines)


def splice(text: str, block: str) -> str:
    """``text`` with everything from ``BEGIN`` to ``END`` replaced by ``block``.

    >>> splice("a\\n<!-- results:begin -->\\nold\\n<!-- results:end -->\\nb", BEGIN + "\\nnew\\n" + END)
    'a\\n<!-- results:begin -->\\nnew\\n<!-- results:end -->\\nb'
    """
    i, j = text.find(BEGIN), text.find(END)
    if i < 0 or j < i:
        raise ValueError(f"README.md: no {BEGIN} ... {END} markers; put both lines where the Results block should go")
    return text[:i] + block + text[j + len(END):]


# --- files ---------------------------------------------------------------------------------------
def expected(root=None, docs: Path = DOCS, readme: Path = README) -> dict[Path, str]:
    """What ``docs`` and ``readme`` should contain, generated from the results under ``root``."""
    return {docs: claims_markdown(root), readme: splice(readme.read_text(encoding="utf-8"), readme_block(root))}


def stale(root=None, docs: Path = DOCS, readme: Path = README) -> list[str]:
    """A unified diff (one string per out-of-date file) of what is on disk against what the generator makes."""
    out = []
    for p, want in expected(root, docs, readme).items():
        have = p.read_text(encoding="utf-8") if p.is_file() else ""
        if have != want:
            diff = difflib.unified_diff(have.splitlines(), want.splitlines(), f"{p} (on disk)", f"{p} (generated)", lineterm="")
            out.append("\n".join(list(diff)[:60]))
    return out


def write(root=None, docs: Path = DOCS, readme: Path = README) -> list[Path]:
    """Write both files (each atomically); returns the paths that changed."""
    changed = []
    for p, want in expected(root, docs, readme).items():
        if not p.is_file() or p.read_text(encoding="utf-8") != want:
            tmp = p.with_name(p.name + ".tmp")
            tmp.write_text(want, encoding="utf-8")
            tmp.replace(p)
            changed.append(p)
    return changed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lab.claims", description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="do not write: exit 1 with a diff if either file is out of date")
    ap.add_argument("--results", type=Path, default=None, help="results folder to read (default data/results/)")
    args = ap.parse_args(argv)
    if args.check:
        diffs = stale(args.results)
        if diffs:
            print("\n\n".join(diffs))
            print("\nout of date: run `python -m lab.claims` (or `make claims`) to regenerate docs/claims.md and the README block")
            return 1
        print("docs/claims.md and the README Results block match data/results/")
        return 0
    changed = write(args.results)
    print("wrote " + ", ".join(str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else str(p) for p in changed)
          if changed else "docs/claims.md and the README block were already up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
