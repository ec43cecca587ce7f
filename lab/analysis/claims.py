"""The seed papers' headline claims against the lab's results files: ``docs/claims.md`` and the README's Results block.

    .venv/bin/python -m lab.analysis.claims           # (re)writes docs/claims.md and the README block
    .venv/bin/python -m lab.analysis.claims --check   # exit 1, with a diff, when either is out of date

Claims are data (:data:`CLAIMS`: the paper's number and the checks that test it); every check is
built by one function (:func:`check`) from an :class:`~lab.analysis.stats.Effect` read from
``data/results/`` through :mod:`lab.analysis.results`, and judged by one rule (:func:`verdict`).
A lesson judges its live numbers by the same rule and prints :func:`conclusion`'s sentence.

**The verdict rule**, in this order, on the lab's 95% interval [lo, hi] of the effect, its point
estimate, the no-effect value (1 for a ratio, 0 for a difference) and the paper's number p (for a
range, its weakest end):

(a) *not testable here*: the exact floor of that world (the posterior-mean baseline) cannot reach p;
(b) the interval lies wholly on the paper's side of no effect: *reproduced* if the point estimate
    reaches p (or the paper gives a direction only), else *partly*;
(c) the interval contains no effect: *inconclusive* if it also contains p (for a direction-only
    claim: if it reaches the paper's side at all), with the minimum detectable effect and the
    seeds that would decide it; else *not*;
(d) the interval lies on the other side: *not*.
*not tested*: no results row, or fewer than two seeds.

>>> verdict(0.30, 0.40, 0.36, value=0.35)        # a claimed 64% cut, reached
'reproduced'
>>> verdict(0.30, 0.40, 0.36, value=0.37)        # the interval touches it, the point does not
'partly'
>>> verdict(0.30, 1.10, 0.36), verdict(0.50, 1.10, 0.36), verdict(1.01, 1.3, 0.36)
('inconclusive', 'not', 'not')
>>> verdict(0.30, 0.40, 0.36, floor=0.45)        # the best possible baseline only reaches −55%
'not testable here'
"""

from __future__ import annotations

import argparse
import difflib
import functools
import math
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

import pandas as pd

from lab.analysis import docblocks, results, specs, stats
from lab.analysis.stats import Effect

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "claims.md"
README = ROOT / "README.md"
BLOCK = "results"
"""The README's generated block (``<!-- results:start -->`` ... ``<!-- results:end -->``)."""
VERDICTS = ("reproduced", "partly", "inconclusive", "not", "not testable here", "not tested")
READINGS = {"paper": "the paper's reading", "extension": "a lab extension", "rejected": "a rejected reading",
            "regime": "not the paper's regime", "confounded": "confounded",
            "sweep": "another value of a setting the paper does not give",
            "pilot": "pooled with the seeds that sized the run"}
"""How a check relates to the paper; only ``paper`` checks are tallied."""

COMMANDS = {
    "value_mse": "make bench",
    "value_mse_calibrated": ".venv/bin/python benchmarks/value_mse.py --calibrated",
    "value_mse_long": ".venv/bin/python benchmarks/value_mse.py --long",
    "value_mse_real": ".venv/bin/python benchmarks/value_mse_real.py",
    "value_mse_real_summary": ".venv/bin/python benchmarks/value_mse_real.py",
    "grad_variance": ".venv/bin/python benchmarks/grad_variance.py",
    "time_to_accuracy_summary": ".venv/bin/python benchmarks/time_to_accuracy.py",
    "learning_curve": ".venv/bin/python benchmarks/learning_curve.py",
    "step_time_vs_trl": "make bench",
    "step_time_vs_trl_1thread": ".venv/bin/python benchmarks/step_time_vs_trl.py --threads 1 --out data/results/step_time_vs_trl_1thread.csv",
    "krpo_partial_credit": ".venv/bin/python benchmarks/krpo_partial_credit.py",
    "kl3_entropy": ".venv/bin/python benchmarks/kl3_entropy.py",
    "basis_real": ".venv/bin/python benchmarks/basis_real.py",
}
"""How each results file is made, for the "not yet run" lines."""

SELECT_SEEDS = 4
"""Parameters picked by looking at results (KAE's h, BASIS's m and β) are picked on seeds
0..SELECT_SEEDS−1 and judged on the others, never on the seeds that picked them."""


# --- the rule ------------------------------------------------------------------------------------
def verdict(low: float | None, high: float | None, claimed: float | None = None, *, null: float = 1.0,
            better: str = "lower", value: float | None = None, floor: float | None = None) -> str:
    """The verdict on a 95% interval [low, high] of the lab's effect (the module docstring's rule).

    ``better="lower"`` for a ratio the paper says falls below ``null`` (1), ``"higher"`` for an
    effect it says rises above ``null``. ``claimed`` is the paper's number on the same scale,
    ``None`` for a direction only. ``value`` is the point estimate (default: the interval's
    middle). ``floor`` is the exact floor's effect in that world (None when no floor is known).

    >>> verdict(0.004, 0.010, 0.0139, null=0.0, better="higher")
    'partly'
    >>> verdict(-0.03, 0.02, 0.0139, null=0.0, better="higher")
    'inconclusive'
    >>> verdict(1.0, 1.0, None), verdict(0.9, 1.0, None)   # exactly no effect; reaching the paper's side
    ('not', 'inconclusive')
    """
    if better not in ("lower", "higher"):
        raise ValueError(f"better: choose 'lower' or 'higher', got {better!r}")
    if low is None or high is None or math.isnan(low) or math.isnan(high):
        return "not tested"
    if value is None or math.isnan(value):
        value = (low + high) / 2
    if better == "higher":  # mirror onto the "lower" case
        low, high, value, null = -high, -low, -value, -null
        claimed = None if claimed is None else -claimed
        floor = None if floor is None else -floor
    tol = 1e-9 * max(1.0, abs(null))
    if floor is not None and not math.isnan(floor):  # (a)
        if (floor > claimed + tol) if claimed is not None else (floor >= null - tol):
            return "not testable here"
    if high < null - tol:  # (b)
        return "reproduced" if claimed is None or value <= claimed + tol else "partly"
    if low <= null + tol:  # (c): contains no effect
        reaches = (low < null - tol) if claimed is None else (low <= claimed + tol)
        return "inconclusive" if reaches else "not"
    return "not"  # (d)


@dataclass(frozen=True)
class Conclusion:
    """A verdict by :func:`verdict` on an effect, and the one sentence that states it (what a lesson prints)."""

    verdict: str
    sentence: str
    effect: Effect
    claimed: float | None
    null: float
    better: str

    def __str__(self) -> str:
        return self.sentence


def conclusion(what: str, e: Effect, claimed: float | None = None, *, null: float = 1.0, better: str = "lower",
               scale: str = "ratio") -> Conclusion:
    """Judge ``e`` by :func:`verdict` against ``claimed`` (None: a direction only) and say it in one sentence.

    ``what`` names the effect ("KAE's value MSE ÷ RLOO's, G = 2"); ``scale`` formats it as in
    :func:`fmt_effect` ("ratio": % change, "difference": signed).

    >>> c = conclusion("KAE's value MSE ÷ RLOO's", stats.Effect(0.5, 0.4, 0.62, 9, "steps"), 0.36)
    >>> c.verdict
    'partly'
    >>> print(c)
    KAE's value MSE ÷ RLOO's: −50% [−60, −38] (9 steps); against the claimed −64%: partly (the interval excludes no effect; the estimate falls short of the claim).
    >>> conclusion("x", stats.Effect(0.01, -0.02, 0.04, 3), None, null=0.0, better="higher", scale="difference").verdict
    'inconclusive'
    """
    v = verdict(e.low, e.high, claimed, null=null, better=better, value=e.value)
    side = "a decrease" if better == "lower" else "an increase"
    target = f"the claimed {fmt_value(claimed, scale)}" if claimed is not None else f"the claimed direction ({side})"
    holds_null = not (math.isnan(e.low) or math.isnan(e.high)) and e.low <= null <= e.high
    why = {
        "reproduced": ("the interval lies wholly on the claimed side of no effect" if claimed is None
                       else "the interval excludes no effect and the estimate reaches the claim"),
        "partly": "the interval excludes no effect; the estimate falls short of the claim",
        "inconclusive": ("the interval holds no effect and reaches the claimed side" if claimed is None
                         else "the interval holds both no effect and the claim"),
        "not": ("the interval holds no effect but not the claim" if holds_null
                else "the interval lies on the other side of no effect"),
        "not tested": "no interval: fewer than two units",
    }[v]
    return Conclusion(v, f"{what}: {fmt_effect(e, scale)}; against {target}: {v} ({why}).", e, claimed, null, better)


# --- checks --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Check:
    """One line of evidence for a claim: where, the reading, the effect, its verdict and what decides it."""

    setting: str  # "bandit", "bandit (calibrated)", "bandit (long)", "real runs", "real-model gradients", ...
    regime: str
    source: str  # "value_mse.csv: estimator=kae(h=0.2), group_size=2, reuse=10 ÷ estimator=grpo, ..."
    effect: Effect | None
    verdict: str
    why: str = ""
    reading: str = "paper"
    identity: str = ""  # checks restating one identity share this key and count once
    floor: float | None = None  # the exact floor's effect (same scale), None where no floor is known
    vs_floor: float | None = None  # (estimator − floor)/(baseline − floor), mean over seeds
    mde: float | None = None  # minimum detectable effect on the effect's scale (inconclusive rows)
    seeds_to_decide: int | None = None
    p: float = math.nan
    p_holm: float = math.nan
    extra: str = ""  # other metrics shown for information

    @property
    def counted(self) -> bool:
        """Whether the tally counts it: the paper's reading, tested, and testable in that world."""
        return self.reading == "paper" and self.verdict not in ("not tested", "not testable here")


@dataclass(frozen=True)
class Claim:
    """A paper's headline claim, its number as quoted, and how the lab tests it (``checks(root)``)."""

    key: str
    paper: str
    claim: str
    paper_number: str
    quoted_from: str
    unknown: str
    scale: str  # "ratio" (% change of an error), "difference" (accuracy), "room" (a ratio of rooms)
    claimed: float | None
    checks: Callable[[Path | None], list[Check]] = field(repr=False)
    better: str = "lower"

    @property
    def null(self) -> float:
        return 0.0 if self.scale == "difference" else 1.0


class _Missing(Exception):
    pass


def _read(name: str, root) -> pd.DataFrame:
    p = results.path(name, root)
    if not p.is_file():
        raise _Missing(f"`data/results/{name}.csv` not made yet (`{COMMANDS.get(name, 'make bench')}`)")
    st = p.stat()
    return _read_cached(str(p), st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=64)
def _read_cached(path: str, mtime_ns: int, size: int) -> pd.DataFrame:
    """One read per version of a file (every check of a claim reads the same few tables); callers never mutate it."""
    return results.read(Path(path).stem, Path(path).parent)


def _need(df: pd.DataFrame, name: str, cols) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ValueError(f"data/results/{name}.csv: missing column(s) {', '.join(missing)}; the benchmark that writes "
                         f"it must follow the agreed schema (docs/claims.md lists the columns used)")


def _is(df: pd.DataFrame, col: str, value) -> pd.Series:
    return df[col].astype(str) == str(value)


def _num(x) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


@dataclass(frozen=True)
class Measured:
    """What an evidence function returns: the effect, and (bandits) the floor's effect and the share above it."""

    effect: Effect
    floor: float | None = None
    vs_floor: float | None = None
    extra: str = ""


def check(claim: Claim, setting: str, regime: str, source: str, measure: Callable[[], Measured | None], *,
          reading: str = "paper", identity: str = "", direction_only: bool = False, why: str = "") -> Check:
    """The one check builder: run ``measure``, judge it by :func:`verdict`, add what decides an inconclusive row.

    A missing file or row becomes *not tested* with the reason. ``direction_only`` judges the
    direction alone (a quantity the paper gives no number for).
    """
    try:
        m = measure()
    except _Missing as e:
        return Check(setting, regime, source, None, "not tested", str(e), reading, identity)
    if m is None:
        return Check(setting, regime, source, None, "not tested", why or "no matching row", reading, identity)
    e, claimed = m.effect, (None if direction_only else claim.claimed)
    v = verdict(e.low, e.high, claimed, null=claim.null, better=claim.better, value=e.value, floor=m.floor)
    note = why or ("no interval (fewer than 2 seeds)" if v == "not tested" else "")
    mde = need = None
    if v == "inconclusive" and e.se > 0:
        d = stats.mde(e.se, e.df)
        mde = (math.exp(-d) if claim.better == "lower" else math.exp(d)) if e.log_scale else d
        target = claimed if claimed is not None else e.value
        gap = (math.log(target) - math.log(claim.null)) if e.log_scale else target - claim.null
        need = stats.seeds_to_detect(gap, e.se, e.n or 0)
    return Check(setting, regime, source, e, v, note, reading, identity, m.floor, m.vs_floor, mde, need,
                 stats.p_value(e, claim.null), extra=m.extra)


# --- evidence: the bandits -------------------------------------------------------------------------
BANDITS = {"bandit": "value_mse", "bandit (calibrated)": "value_mse_calibrated", "bandit (long)": "value_mse_long"}
"""The bandit settings and their results files: the default world; the world fitted to the real runs' drift over
their 31 steps; and the long horizon (hundreds of steps; ``benchmarks/value_mse.py --long``)."""
POSTERIOR = "posterior"
KRPO_BANDIT_G = {"bandit": (2, 4, 8, 16), "bandit (calibrated)": (2, 4, 8, 16), "bandit (long)": (2, 4, 8, 12)}
"""The group sizes of KRPO's value rows in each bandit world: those its sweep runs (``benchmarks/value_mse.py``:
G ∈ {1, 2, 4, 8, 16}; ``--long``: G ∈ {2, 4, 8, 12}, KRPO's reference code's 12)."""


def floor_of(label: str, reference: int = 8) -> str:
    """The floor matching a row's offline information: the posterior with the same reference samples.

    >>> floor_of("kae(h=0.2)"), floor_of("basis(fallback=prior)"), floor_of("basis(reference=32)")
    ('posterior(reference=0)', 'posterior', 'posterior(reference=32)')
    """
    from lab import estimators

    name, params = specs.parse(label)
    seen = int(params.get("reference", reference))
    wants = name == POSTERIOR or getattr(estimators.ESTIMATORS.get(name), "wants_reference", False)
    seen = seen if wants else 0
    return POSTERIOR if seen == reference else f"{POSTERIOR}(reference={seen})"


def _per_seed(df: pd.DataFrame, label: str, g: int, j: int) -> pd.Series:
    x = df[_is(df, "estimator", label) & (df["group_size"] == g) & (df["reuse"] == j)]
    return x.groupby("seed")["value_mse"].mean()


def bandit_effect(df: pd.DataFrame, a: str, ga: int, b: str, gb: int, j: int, seeds=None) -> Measured | None:
    """Per-seed paired ratio MSE(a)/MSE(b) on a bandit table, the floor's ratio to b, and the share above the floor.

    ``seeds`` restricts the seeds judged (held-out seeds). The floor is the posterior with
    ``a``'s offline information, at ``a``'s G.
    """
    xa, xb, xf = _per_seed(df, a, ga, j), _per_seed(df, b, gb, j), _per_seed(df, floor_of(a), ga, j)
    common = sorted(set(xa.index) & set(xb.index) if seeds is None else set(xa.index) & set(xb.index) & set(seeds))
    if not common:
        return None
    e = stats.paired_ratio([xa[s] for s in common], [xb[s] for s in common])
    fs = [s for s in common if s in xf.index]
    floor = vs = None
    if fs:
        floor = stats.paired_ratio([xf[s] for s in fs], [xb[s] for s in fs]).value
        gaps = [(xa[s] - xf[s]) / (xb[s] - xf[s]) for s in fs if xb[s] > xf[s]]
        vs = sum(gaps) / len(gaps) if gaps else None
    return Measured(e, floor, vs)


def pick_heldout(df: pd.DataFrame, candidates: list[str], g: int, j: int, base: str, gb: int | None = None
                 ) -> tuple[str | None, list[int]]:
    """The candidate with the lowest mean ratio to ``base`` on the selection seeds, and the held-out seeds to judge it on."""
    seeds = sorted(int(s) for s in df["seed"].unique())
    pick, judge = [s for s in seeds if s < SELECT_SEEDS], [s for s in seeds if s >= SELECT_SEEDS]
    best, arg = math.inf, None
    for c in candidates:
        m = bandit_effect(df, c, g, base, gb or g, j, seeds=pick)
        if m is not None and m.effect.value < best:
            best, arg = m.effect.value, c
    return arg, judge


def _bandit_src(name, a, ga, b, gb, j, root=None, seeds=None):
    same = "same G, J" if ga == gb else f"group_size={gb}, same J"
    held = f", held-out seeds {seeds[0]}–{seeds[-1]}" if seeds else ""
    return f"{name}.csv{world_note(root, name)}: estimator={a}, group_size={ga}, reuse={j} ÷ estimator={b}, {same}; per-seed ratio{held}"


def world_note(root, name: str = "value_mse_calibrated") -> str:
    """The bandit world a results file was made in, from its sidecar (``""`` when it records none or is the default).

    >>> world_note(None, "no_such_results")
    ''
    """
    if name == "value_mse":
        return ""
    w = results.provenance(name, root).get("world")
    return "" if not w else " (world: " + ", ".join(f"{k} = {w[k]:g}" for k in ("trend", "learn", "slope", "drift", "spread") if k in w) + ")"


def _bandit_checks(root, claim: Claim, a: str, ga: int, b: str, gb: int, j: int, regime: str, *,
                   settings: Sequence[str] | None = None, **kw) -> list[Check]:
    out = []
    for setting, name in BANDITS.items():
        if settings is not None and setting not in settings:
            continue
        def measure(name=name):
            return bandit_effect(_read(name, root), a, ga, b, gb, j)
        out.append(check(claim, setting, regime, _bandit_src(name, a, ga, b, gb, j, root), measure, **kw))
    return out


def _heldout_checks(root, claim, candidates_of: Callable[[pd.DataFrame], list[str]], g: int, base: str, gb: int, j: int,
                    regime: str, **kw) -> list[Check]:
    out = []
    for setting, name in BANDITS.items():
        try:
            df = _read(name, root)
        except _Missing:
            continue
        cands = candidates_of(df)
        best, judge = pick_heldout(df, cands, g, j, base, gb) if cands else (None, [])
        if best is None or not judge:
            continue
        out.append(check(claim, setting, f"{regime}: {best} (picked on seeds 0–{SELECT_SEEDS - 1})",
                         _bandit_src(name, best, g, base, gb, j, root, judge),
                         lambda df=df, best=best, judge=judge: bandit_effect(df, best, g, base, gb, j, seeds=judge), **kw))
    return out


# --- evidence: real runs, gradients, accuracy --------------------------------------------------------
def real_effect(root, a: str, ga: int, b: str, gb: int, j: int) -> Measured | None:
    """``value_mse_real.csv``: per-seed paired ratio when a and b are shadows of one run (same G), else the
    unpaired ratio of geometric means (Welch t on the log)."""
    name = "value_mse_real"
    df = _read(name, root)
    _need(df, name, ("rollouts_per_prompt", "prompt_reuse", "seed", "estimator", "value_mse"))

    def per(est, g):
        x = df[_is(df, "estimator", est) & (df["rollouts_per_prompt"] == g) & (df["prompt_reuse"] == j)]
        return x.groupby("seed")["value_mse"].mean()

    return _seed_ratio(per(a, ga), per(b, gb), paired=ga == gb)


def _seed_ratio(xa: pd.Series, xb: pd.Series, *, paired: bool) -> Measured | None:
    """Per-seed value errors (seed -> MSE) of a against b: :func:`lab.analysis.stats.seed_ratio`."""
    e = stats.seed_ratio(xa.to_dict(), xb.to_dict(), paired=paired)
    return Measured(e) if e is not None else None


def _real_src(a, ga, b, gb, j):
    how = "per-seed paired ratio (shadows of one run)" if ga == gb else "ratio of geometric means over seeds (different runs: Welch t on the log)"
    return f"value_mse_real.csv: estimator={a}, rollouts_per_prompt={ga}, prompt_reuse={j} ÷ estimator={b}, rollouts_per_prompt={gb}; {how}"


def gradient_effect(rows_a: list[dict], rows_b: list[dict]) -> Measured | None:
    """The scale-free gradient comparison of a against b over policy snapshots: the ratio of best-scale relative
    errors (t on the log over snapshots), with the cosine ratio and the raw (scale-dependent) error ratio shown.

    ``rows_*``: dicts with ``snapshot_step``, ``rel_sq_error_best_scale``, ``cosine``, ``rel_sq_error``
    (``grad_variance.csv``'s columns). Multiplying an estimator's advantages by a constant leaves
    the best-scale error and the cosine unchanged, so the verdict does not move (AdamW is nearly
    invariant to such a global scale: it divides each coordinate by its running RMS).
    """
    a = {int(r["snapshot_step"]): r for r in rows_a}
    b = {int(r["snapshot_step"]): r for r in rows_b}
    steps = sorted(s for s in set(a) & set(b) if _num(a[s]["rel_sq_error_best_scale"]) > 0
                   and _num(b[s]["rel_sq_error_best_scale"]) > 0)
    if not steps:
        return None
    e = stats.paired_ratio([_num(a[s]["rel_sq_error_best_scale"]) for s in steps],
                           [_num(b[s]["rel_sq_error_best_scale"]) for s in steps], unit="snapshots")
    cos = [_num(a[s]["cosine"]) / _num(b[s]["cosine"]) for s in steps if _num(b[s]["cosine"]) > 0]
    raw = [_num(a[s]["rel_sq_error"]) / _num(b[s]["rel_sq_error"]) for s in steps if _num(b[s]["rel_sq_error"]) > 0]
    extra = []
    if cos:
        extra.append(f"cosine ratio ×{math.exp(sum(math.log(c) for c in cos if c > 0) / len(cos)):.2f}")
    if raw:
        extra.append(f"raw rel_sq_error ratio ×{math.exp(sum(math.log(c) for c in raw if c > 0) / len(raw)):.2f} "
                     "(scale-dependent; for information)")
    return Measured(e, extra="; ".join(extra))


def _grad_rows(root, est: str, g: int) -> list[dict]:
    name = "grad_variance"
    df = _read(name, root)
    _need(df, name, ("snapshot_step", "estimator", "rollouts_per_prompt", "rel_sq_error_best_scale", "cosine", "rel_sq_error"))
    x = df[_is(df, "estimator", est) & (df["rollouts_per_prompt"] == g)]
    return x.groupby("snapshot_step").first().reset_index().to_dict("records")


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
    return f" (snapshots of {', '.join([run, *bits])})"


def _grad_checks(root, claim, a: str, b: str, sizes, **kw) -> list[Check]:
    src = (f"grad_variance.csv: rel_sq_error_best_scale of estimator={a} ÷ estimator={b}, rollouts_per_prompt=G; "
           "per-snapshot ratio, t on the log over snapshot_step")
    return [check(claim, "real-model gradients", f"G = {g}{_grad_run(root)}", src.replace("=G", f"={g}"),
                  lambda g=g: gradient_effect(_grad_rows(root, a, g), _grad_rows(root, b, g)), direction_only=True, **kw)
            for g in sizes]


def accuracy_effect(root, a_label: str, b_label: str, confirm: bool = False) -> Measured | None:
    """``time_to_accuracy_summary.csv``: final accuracy of label a minus label b (different runs: Welch t, the
    standard errors backed out of ``final_ci95``). ``confirm``: over the labels' confirmatory seeds alone (the
    ``confirm_*`` columns: the seeds added once the first ones had fixed how many to run); None where either label
    has none."""
    name = "time_to_accuracy_summary"
    df = _read(name, root)
    pre = "confirm_" if confirm else ""
    cols = (f"{pre}seeds", f"{pre}final_accuracy", f"{pre}final_ci95")
    if confirm and not set(cols) <= set(df.columns):
        return None
    _need(df, name, ("label", *cols))
    ra, rb = df[_is(df, "label", a_label)], df[_is(df, "label", b_label)]
    if ra.empty or rb.empty:
        return None
    ra, rb = ra.iloc[0], rb.iloc[0]
    if any(not math.isfinite(_num(r[c])) for r in (ra, rb) for c in cols):
        return None
    na, nb = int(_num(ra[cols[0]])), int(_num(rb[cols[0]]))
    se_a, se_b = (stats.se_from_half_width(_num(r[cols[2]]), n) for r, n in ((ra, na), (rb, nb)))
    return Measured(stats.welch_difference(_num(ra[cols[1]]), se_a, na, _num(rb[cols[1]]), se_b, nb))


def _acc_check(root, claim, a_label, b_label, regime, confirm: bool = False, **kw) -> Check:
    col = "confirm_final_accuracy" if confirm else "final_accuracy"
    src = (f"time_to_accuracy_summary.csv: {col} of label={a_label} − that of label={b_label} "
           f"(Welch t from {col.replace('accuracy', 'ci95')})")
    return check(claim, "real runs (accuracy)", regime, src, lambda: accuracy_effect(root, a_label, b_label, confirm), **kw)


def confirm_state(root, *labels: str) -> tuple[str, str]:
    """Where the confirmatory seeds of a powered accuracy pair stand in ``time_to_accuracy_summary.csv``:
    ("none", "") when the labels have none (not powered, or a file from before them), ("partial", what) while some
    planned seeds have not run, ("complete", "") once every label has all its ``planned_seeds``."""
    try:
        df = _read("time_to_accuracy_summary", root)
    except _Missing:
        return "none", ""
    if not {"confirm_seeds", "planned_seeds", "seeds"} <= set(df.columns):
        return "none", ""
    rows = [df[_is(df, "label", lb)] for lb in labels]
    if any(r.empty or not math.isfinite(_num(r.iloc[0]["confirm_seeds"])) for r in rows):
        return "none", ""
    have = [(lb, int(_num(r.iloc[0]["seeds"])), int(_num(r.iloc[0]["planned_seeds"]))) for lb, r in zip(labels, rows)]
    short = [f"{lb} {n} of {want}" for lb, n, want in have if n < want]
    return ("partial", ", ".join(short) + " seeds") if short else ("complete", "")


def _powered_checks(root, claim, a_label: str, b_label: str, regime: str, **kw) -> list[Check]:
    """A counted accuracy check whose labels were run past their first seeds (``POWERED`` in
    ``benchmarks/time_to_accuracy.py``): the added seeds alone decide it once all have run; every seed pooled is
    shown, never counted (it would look at the first seeds twice). Without added seeds: one row over every seed."""
    state, what = confirm_state(root, a_label, b_label)
    if state == "none":
        return [_acc_check(root, claim, a_label, b_label, regime, **kw)]
    pooled_why = ("pooled with the first seeds, whose effect fixed how many more to run (a second look at them): "
                  "the added seeds alone decide")
    if state == "partial":
        return [_acc_check(root, claim, a_label, b_label, f"{regime}; every seed run so far", reading="pilot",
                           why=f"{pooled_why}, once all have run ({what} so far; `make bench` resumes)")]
    return [_acc_check(root, claim, a_label, b_label, f"{regime}; the added seeds alone", confirm=True, **kw),
            _acc_check(root, claim, a_label, b_label, f"{regime}; every seed", reading="pilot", why=pooled_why)]


# --- the claims ----------------------------------------------------------------------------------
KAE_DEFAULT = "kae(h=0.2)"
BASIS_DEFAULT = "basis(fallback=prior, online_prior=missing, beta_selection=crossfit)"
BASIS_READINGS = {BASIS_DEFAULT: ("paper", "the default reading (m = 8, the lab's β grid)"),
                  "basis(fallback=zero, online_prior=missing, beta_selection=crossfit)": ("rejected", "zero fallback"),
                  "basis(fallback=prior, online_prior=always, beta_selection=crossfit)": ("extension", "online prior always")}
"""The BASIS rows of the bandit shown for its claims, with the reading each one is."""
METHODS = "`shared/methods.md`"
VALUE_ERROR = ("What \"value error\" means exactly in the paper (per rollout or per prompt, against which truth, "
               "over which steps) is not known. The lab's: on the bandit, the exact mean of (b − V)² over rollouts after "
               "the warm-up steps; on real runs, the probe value MSE against Monte-Carlo truth with the truth's own noise "
               "subtracted (`probe/value_mse_corrected`).")
GROUP_MEAN_NOTE = ("GRPO's group-mean baseline and RLOO's leave-one-out mean give the same policy gradient up to the "
                   "factor (G − 1)/G (RLOO's advantage is G/(G − 1)·(r − mean)), but the group mean contains the "
                   "rollout's own reward, so its value error p(1 − p)/G is below RLOO's p(1 − p)/(G − 1): value error alone "
                   "favours GRPO against history-based (leave-one-out) estimators. The rows against `rloo` show the "
                   "comparison without that advantage (shown, not counted).")
KRPO_IDENTITY = ("KRPO's filter (x₀ = 0, P₀ = 1, R = 1e-2, Q ≈ 0) makes rollout i's baseline ≈ the mean of the group's "
                 "first i rewards, its own included, so its value error ≈ p(1 − p)·H_G/G = H_G × the group mean's "
                 "(H_G = 1 + 1/2 + … + 1/G: ×1.50 at G = 2, ×2.08 at 4, ×2.72 at 8, ×3.10 at 12) in every world: the "
                 "value rows restate that one identity and count once.")


def _harmonic(g: int) -> float:
    return sum(1 / k for k in range(1, g + 1))


def _kae_value(root) -> list[Check]:
    c = CLAIMS_BY_KEY["kae-value"]
    out = []
    for g in (2, 4):
        for j in (1, 4, 8, 10):
            rd = "paper" if j in (8, 10) else "regime"
            why = "" if rd == "paper" else "the paper reuses prompts (J = 8–10); shown for the trend over J"
            out += _bandit_checks(root, c, KAE_DEFAULT, g, "grpo", g, j, f"G = {g}, J = {j}", reading=rd, why=why)
        out += _bandit_checks(root, c, KAE_DEFAULT, g, "rloo", g, 10, f"G = {g}, J = 10, against RLOO",
                              reading="extension", why="RLOO's leave-one-out baseline: same gradient as GRPO's up to (G−1)/G")
        out += _heldout_checks(root, c, lambda df: sorted(x for x in df["estimator"].astype(str).unique() if x.startswith("kae(")),
                               g, "grpo", g, 10, f"G = {g}, J = 10, best h")
    for g in (2, 4):
        out.append(check(c, "real runs", f"G = {g}, J = 10", _real_src("kae", g, "grpo", g, 10),
                         lambda g=g: real_effect(root, "kae", g, "grpo", g, 10)))
        out.append(check(c, "real runs", f"G = {g}, J = 10, against RLOO", _real_src("kae", g, "rloo", g, 10),
                         lambda g=g: real_effect(root, "kae", g, "rloo", g, 10), reading="extension"))
    out += _grad_checks(root, c, "kae", "grpo", (2, 4))
    return out


def _kae_accuracy(root) -> list[Check]:
    c = CLAIMS_BY_KEY["kae-accuracy"]
    return [
        _acc_check(root, c, "kae_g2", "grpo_g8", "KAE G = 2 (32 prompts/step, J = 1) vs GRPO G = 8 (8 prompts/step), "
                   "equal rollouts", reading="regime",
                   why="no prompt reuse: without history KAE is RLOO, so this is not KAE's regime"),
        _acc_check(root, c, "kae_g2_reuse10", "grpo_g8", "KAE G = 2, J = 10 vs GRPO G = 8, J = 1", reading="confounded",
                   why="reuse and estimator differ at once; needs GRPO at the same G, J and prompt pool "
                       "(`benchmarks/time_to_accuracy.py`, the same-regime labels)"),
        *_powered_checks(root, c, "kae_g4_reuse10", "grpo_g4_reuse10", "G = 4, J = 10 both (same prompt pool)"),
    ]


def _krpo_value(root) -> list[Check]:
    c = CLAIMS_BY_KEY["krpo-value"]
    out = []
    for g in sorted({g for gs in KRPO_BANDIT_G.values() for g in gs}):  # each world at the G its sweep runs
        out += _bandit_checks(root, c, "krpo", g, "grpo", g, 1, f"G = {g}, J = 1 (identity predicts ×{_harmonic(g):.2f})",
                              settings=[w for w, gs in KRPO_BANDIT_G.items() if g in gs], identity="krpo-harmonic")
    out += [check(c, "real runs", f"G = {g}, J = 1 (identity predicts ×{_harmonic(g):.2f})", _real_src("krpo", g, "grpo", g, 1),
                  lambda g=g: real_effect(root, "krpo", g, "grpo", g, 1), identity="krpo-harmonic") for g in (2, 4, 8)]
    out += _grad_checks(root, c, "krpo", "grpo", (2, 4, 8))
    return out


def _krpo_training(root) -> list[Check]:
    c = CLAIMS_BY_KEY["krpo-training"]
    return [check(c, "real runs (training reward)", "G = 12, partial-credit rewards {1, 0.5, 0.01, 0}",
                  "krpo_partial_credit.csv: final training reward of estimator=krpo − estimator=grpo, same seeds",
                  lambda: _krpo_partial(root))]


def _paired_seeds(root, name: str, key: str, a: str, b: str, cols: tuple[str, ...]):
    """Per-seed means of ``cols`` for ``key`` = ``a`` and ``key`` = ``b`` in results file ``name``, on the seeds both
    have: (by_a, by_b, seeds), the frames indexed by seed. A real-run driver's file (``run_paired_seeds``)."""
    df = _read(name, root)
    _need(df, name, (key, "seed", *cols))
    by = [df[_is(df, key, x)].groupby("seed")[list(cols)].mean() for x in (a, b)]
    return by[0], by[1], sorted(set(by[0].index) & set(by[1].index))


def _diff(by_a, by_b, seeds, col: str):
    return stats.paired_difference([by_a.loc[s, col] for s in seeds], [by_b.loc[s, col] for s in seeds])


def _krpo_partial(root) -> Measured | None:
    a, b, seeds = _paired_seeds(root, "krpo_partial_credit", "estimator", "krpo", "grpo", ("final_reward",))
    return Measured(_diff(a, b, seeds, "final_reward")) if seeds else None


BASIS_M = (4, 8, 16, 32)
"""BASIS's reference samples per prompt m swept on the long bandit (``basis(reference=m, betas=...)`` rows)."""


def _basis_candidates(df: pd.DataFrame) -> list[str]:
    return sorted(x for x in df["estimator"].astype(str).unique() if x.startswith("basis(") and "reference=" in x)


def _basis_checks(root, key: str, base: str, base_g: int, setting: str, *, gradients: bool) -> list[Check]:
    """BASIS at G = 1 against ``base`` at G = ``base_g``: every reading on the bandit, the best
    (m, β grid) picked on held-out seeds, the real runs and (``gradients``) the gradient checks."""
    c = CLAIMS_BY_KEY[key]
    out = []
    for lab, (rd, what) in BASIS_READINGS.items():
        out += _bandit_checks(root, c, lab, 1, base, base_g, 1, f"{setting}, {what}", reading=rd)
    out += _heldout_checks(root, c, _basis_candidates, 1, base, base_g, 1, f"{setting}, best (m, β grid)")
    out.append(check(c, "real runs", f"{setting}, no reference stage (the lab's running prior)",
                     _real_src("basis", 1, base, base_g, 1), lambda: real_effect(root, "basis", 1, base, base_g, 1),
                     reading="extension", why="the paper's prior comes from reference samples; this one from the prompt's own rollouts"))
    for m, mean in [(m, False) for m in BASIS_REAL_M] + [(m, True) for m in BASIS_REAL_M if m]:
        col = f"basis_m{m}" + ("_mean" if mean else "")
        rd = "paper" if (m, mean) == (BASIS_REAL_PAPER_M, False) else ("extension" if m == 0 else "sweep")
        grid = ", the mean prior (β = 1000 alone)" if mean else (", the lab's β grid" if m else "")
        out.append(check(c, "real runs, reference stage", f"{setting}, m = {m}{grid}{_basis_real_cost(root, m, base)}",
                         _basis_real_src(col, base), lambda col=col: basis_real_effect(root, col, base), reading=rd))
    if gradients:
        out += _grad_checks(root, c, "basis", base, (1,))
    return out


BASIS_REAL_M = (0, 4, 8, 16, 32)
"""Reference samples m of the BASIS columns of ``basis_real.csv`` (``benchmarks/basis_real.py``)."""
BASIS_REAL_PAPER_M = 8
"""The m the tally counts on real runs: the bandit's default reading, fixed before the runs; the others are shown."""


def _basis_real_frames(root, column: str):
    name = "basis_real"
    df = _read(name, root)
    col = f"mse:{column}"
    _need(df, name, ("arm", "seed", "train_rollouts", "train_pool_size", col, "mse:reinforce_plus_plus", "mse:grpo"))
    return df, col


def basis_real_effect(root, column: str, base: str) -> Measured | None:
    """``basis_real.csv``: the BASIS column ``column`` (``basis_m<m>[_mean]``, its G = 1 run) against REINFORCE++ on the same
    rollouts (per-seed paired ratio) or GRPO at G = 8 (other runs: ratio of geometric means, Welch t on the log)."""
    df, col = _basis_real_frames(root, column)
    g1 = df[_is(df, "arm", "basis_g1")].groupby("seed")
    b = g1[col].mean().dropna()
    if base == "reinforce_plus_plus":
        return _seed_ratio(b, g1["mse:reinforce_plus_plus"].mean().dropna(), paired=True)
    return _seed_ratio(b, df[_is(df, "arm", "grpo_g8")].groupby("seed")["mse:grpo"].mean().dropna(), paired=False)


def _basis_real_cost(root, m: int, base: str) -> str:
    """The rollouts each side drew, from the file (BASIS's reference stage counted), or "" before it exists."""
    try:
        df, _ = _basis_real_frames(root, f"basis_m{m}")
    except (_Missing, ValueError):
        return ""
    g1 = df[_is(df, "arm", "basis_g1")]
    other = df[_is(df, "arm", "basis_g1" if base == "reinforce_plus_plus" else "grpo_g8")]
    if g1.empty or other.empty:
        return ""
    train, pool = int(g1["train_rollouts"].iloc[0]), int(g1["train_pool_size"].iloc[0])
    return (f" ({train + m * pool:,} rollouts with {m * pool:,} reference ones, against {int(other['train_rollouts'].iloc[0]):,}: "
            f"×{(train + m * pool) / int(other['train_rollouts'].iloc[0]):.2f} the compute)")


def _basis_real_src(column: str, base: str) -> str:
    if base == "reinforce_plus_plus":
        return (f"basis_real.csv: arm=basis_g1, mse:{column} ÷ mse:reinforce_plus_plus (shadows of one run; "
                "per-seed paired ratio)")
    return (f"basis_real.csv: arm=basis_g1, mse:{column} ÷ arm=grpo_g8, mse:grpo (different runs: ratio of "
            "geometric means, Welch t on the log)")


def _basis_rpp(root) -> list[Check]:
    return _basis_checks(root, "basis-rpp", "reinforce_plus_plus", 1, "G = 1, J = 1", gradients=True)


def _basis_g8(root) -> list[Check]:
    return _basis_checks(root, "basis-g8", "grpo", 8, "G = 1 vs G = 8, J = 1", gradients=False)


def _reference_stage(root, label: str) -> tuple[int, int, int] | None:
    """(pool size, reference samples per prompt, reference rollouts) of a time-to-accuracy label, from
    ``time_to_accuracy.csv``'s rows (None when the file or the label is not there yet)."""
    try:
        df = _read("time_to_accuracy", root)
    except _Missing:
        return None
    cols = ("train_pool_size", "reference_samples", "reference_rollouts")
    rows = df[_is(df, "label", label)] if "label" in df.columns and all(c in df.columns for c in cols) else df.iloc[:0]
    if rows.empty:
        return None
    return tuple(int(_num(rows.iloc[0][c])) for c in cols)


def _basis_accuracy(root) -> list[Check]:
    c = CLAIMS_BY_KEY["basis-accuracy"]
    size = _reference_stage(root, "basis_g1_pool256_ref8")
    pool, m, n_ref = size or (256, 8, 256 * 8)  # the label's name says pool and m; the file gives what ran
    ref = (f"a pool of {pool:,} prompts, BASIS with its reference stage ({m} samples of each, {n_ref:,} rollouts "
           "before step 0)")
    return [*_powered_checks(root, c, "basis_g1_pool256_ref8", "reinforce_plus_plus_g1_pool256", f"G = 1, J = 1 both, {ref}"),
            _acc_check(root, c, "basis_g1", "reinforce_plus_plus_g1", "G = 1, J = 1 both, 64 prompts/step, no reference stage",
                       reading="extension", why="without a reference stage BASIS's prior is the lab's running one"),
            _acc_check(root, c, "basis_g1_reuse10", "reinforce_plus_plus_g1", "BASIS J = 10 vs REINFORCE++ J = 1",
                       reading="confounded", why="reuse and estimator differ at once"),
            _acc_check(root, c, "basis_g1_pool256_ref8", "grpo_g8_pool256",
                       f"BASIS G = 1 vs GRPO G = 8 (8 prompts/step), {ref}; equal rollouts a step", reading="regime",
                       why="the paper's \"close to 8-rollout GRPO at about half the compute\" is not a direction; here "
                           f"both draw 64 rollouts a step and BASIS {n_ref:,} more before step 0 (time_to_accuracy_summary.csv's "
                           "rollouts to target count them)")]


KL3_DELTAS = (0.01, 0.02, 0.03, 0.05, 0.1)


def log_room(measure: str, delta: float) -> float:
    """log(u) / (−log l): the room above 1 over the room below 1 *in log-ratio*, for ``measure``'s region at ``delta``.

    1 for every region symmetric in log-ratio (KL1, KL2); KL3's is below 1.

    >>> round(log_room("kl2", 0.03), 12), round(log_room("kl3", 0.03), 3)
    (1.0, 0.922)
    """
    from lab.losses.bounds import clip_bounds

    lo, hi = clip_bounds(measure, delta)
    return math.log(hi) / -math.log(lo)


def ratio_room(measure: str, delta: float) -> float:
    """(u − 1) / (1 − l) in ratio space (> 1 for every region symmetric in log-ratio, so it cannot tell them apart).

    >>> ratio_room("kl2", 0.03) > ratio_room("kl3", 0.03) > 1
    True
    """
    from lab.losses.bounds import clip_bounds

    lo, hi = clip_bounds(measure, delta)
    return (hi - 1) / (1 - lo)


def asymmetry_effect(measure: str, against: str = "kl2", deltas=KL3_DELTAS, *, space: str = "log") -> Measured:
    """How much more room upward ``measure`` gives than the log-symmetric ``against``, at the δ where it gives
    the most (max over ``deltas`` of room(measure)/room(against); log space by default). Exact.

    >>> asymmetry_effect("kl1").effect.value                       # a log-symmetric measure: no asymmetry
    1.0
    """
    room = log_room if space == "log" else ratio_room
    v = max(room(measure, d) / room(against, d) for d in deltas)
    return Measured(stats.exact(round(v, 12)))


def _kl3_room(root) -> list[Check]:
    from lab.losses.bounds import clip_bounds

    c = CLAIMS_BY_KEY["kl3-asymmetric"]
    lo, hi = clip_bounds("kl3", 0.03)
    src = ("lab.losses.clip_bounds(measure, δ) for δ ∈ {0.01, 0.02, 0.03, 0.05, 0.1}: max over δ of log(u)/(−log l) of kl3 ÷ "
           f"that of kl2 (= kl1's = 1); exact (δ = 0.03: [{lo:.4f}, {hi:.4f}], log room up {math.log(hi):.3f}, down "
           f"{-math.log(lo):.3f})")
    out = [check(c, "exact", "log-ratio room up ÷ down, KL3 against KL2 (symmetric in log-ratio)", src,
                 lambda: asymmetry_effect("kl3"))]
    out.append(check(c, "exact", "ratio-space room (u − 1)/(1 − l), KL3 against KL2",
                     src.replace("log(u)/(−log l)", "(u − 1)/(1 − l)"), lambda: asymmetry_effect("kl3", space="ratio"),
                     reading="rejected", why="in ratio space every log-symmetric region already has u − 1 > 1 − l, so "
                                             "(u − 1) > (1 − l) holds for KL1 and KL2 too and cannot test the claim"))
    return out


def _kl3_exploration(root) -> list[Check]:
    c = CLAIMS_BY_KEY["kl3-exploration"]
    return [check(c, "real runs", "matched budget (width 0.4), 4 PPO epochs × 2 minibatches so clipping binds",
                  "kl3_entropy.csv: mean actor/entropy of the last 20 steps, measure=kl3 − measure=ratio, same seeds",
                  lambda: _kl3_entropy(root))]


def _kl3_entropy(root) -> Measured | None:
    a, b, seeds = _paired_seeds(root, "kl3_entropy", "measure", "kl3", "ratio", ("entropy", "clip_frac_low", "clip_frac_high"))
    if not seeds:
        return None
    lo, hi = _diff(a, b, seeds, "clip_frac_low"), _diff(a, b, seeds, "clip_frac_high")
    extra = (f"clip fractions, kl3 − ratio: low {lo.value:+.4f} [{lo.low:+.4f}, {lo.high:+.4f}], "
             f"high {hi.value:+.4f} [{hi.low:+.4f}, {hi.high:+.4f}]")
    return Measured(_diff(a, b, seeds, "entropy"), extra=extra)


CLAIMS: tuple[Claim, ...] = (
    Claim("kae-value", "KAE (arXiv 2604.28005)", "value error well below GRPO's group mean when prompts are reused",
          "64–71% lower than GRPO's group mean, across reported steps", f"{METHODS}, KAE, \"Claims\" (from secondary "
          "write-ups of the paper that agree with each other; issue 14 quotes 60–73%)",
          "The paper's bandwidth h is not known (the lab's default is 0.2; the bandit sweeps 0.2–5 and the best h is picked "
          f"on seeds 0–{SELECT_SEEDS - 1} and judged on the others); the normalising constant M is a reconstruction "
          "(Nadaraya–Watson). The paper reuses each prompt for J = 10 steps (GSM8K/MATH) or 8 (DAPO), so J = 8 and 10 "
          "count; J = 1 and 4 are shown. " + GROUP_MEAN_NOTE + " " + VALUE_ERROR,
          "ratio", 1 - 0.64, _kae_value),
    Claim("kae-accuracy", "KAE (arXiv 2604.28005)", "higher accuracy than GRPO",
          "44.54 vs 42.88 (DAPO) and 41.49 vs 40.10 (MATH), Qwen2.5-Math-7B: +1.39 to +1.66 points",
          f"{METHODS}, KAE, \"Claims\" (secondary write-ups)",
          "The paper compares at its own G, reuse and model (7B); only a comparison at the same G, J and prompt pool counts. "
          "The paper's number is read as a difference of accuracy fractions (0.0139); each row gives its minimum "
          "detectable effect and the seeds that would decide it (more eval samples per eval shrink both).",
          "difference", 0.0139, _kae_accuracy, "higher"),
    Claim("krpo-value", "KRPO (arXiv 2505.07527)", "a Kalman-filtered baseline estimates the prompt's value better than "
          "GRPO's group mean (the method's premise)", "none quoted (direction only)",
          f"{METHODS}, KRPO (the method; no number is transcribed there)",
          "Q = 1e-5, R = 1e-2 are the reference code's, which runs G = 12 (the G = 12 rows). " + KRPO_IDENTITY + " Its "
          "advantages are about 10× GRPO's scale, which the scale-free gradient metrics ignore. " + VALUE_ERROR,
          "ratio", None, _krpo_value),
    Claim("krpo-training", "KRPO (arXiv 2505.07527)", "higher reward than GRPO in training (its reference code's regime)",
          "none quoted (direction only)", f"{METHODS}, KRPO",
          "The reference code runs G = 12 with partial-credit rewards {1, 0.5, 0.01, 0} (`lab.tasks.partial_credit`).",
          "difference", None, _krpo_training, "higher"),
    Claim("basis-rpp", "BASIS (arXiv 2605.27293)", "with one rollout per prompt, value MSE far below REINFORCE++'s",
          "69% lower than REINFORCE++ (Qwen2.5-Math-7B value study)", f"{METHODS}, BASIS, \"Claims\"",
          "The paper's β grid and number of reference samples m are not known: the long bandit sweeps m ∈ {4, 8, 16, 32} and "
          f"β grids (the mean prior β = 1000 alone, the lab's grid, the grid without the mean prior), picked on seeds "
          f"0–{SELECT_SEEDS - 1} and judged on the others. What prompts outside the active set fall back to is uncertain: "
          "the zero-fallback reading of one summary is shown as rejected (it makes BASIS worse than REINFORCE++); "
          "`online_prior=always` is a lab extension. On real runs (`benchmarks/basis_real.py`) the trainer's reference "
          "stage draws 32 samples of each of 128 pool prompts from the initial model, and BASIS shadows of the same run keep "
          f"m ∈ {{0, 4, 8, 16, 32}} of them (paired on identical rollouts), each with the lab's β grid and with the mean "
          f"prior alone; m = {BASIS_REAL_PAPER_M} with the lab's grid counts (the bandit's default reading, fixed before "
          "the runs), the others are shown; m = 0 (no reference stage, a running prior) is the lab's fallback. " + VALUE_ERROR, "ratio", 1 - 0.69, _basis_rpp),
    Claim("basis-g8", "BASIS (arXiv 2605.27293)", "one rollout per prompt gives a lower value MSE than the group mean of 8",
          "\"lower\" (direction only)", f"{METHODS}, BASIS, \"Claims\"",
          "As above. G = 1 and G = 8 are different runs: on the bandit they are paired by seed (same prompts' values), on "
          "real runs unpaired. On real runs both draw 64 rollouts a step; BASIS's reference rollouts come on top, and each "
          "row's regime says how many (the compute ratio).", "ratio", None, _basis_g8),
    Claim("basis-accuracy", "BASIS (arXiv 2605.27293)", "far above single-rollout baselines in accuracy",
          "\"far above\" (direction only; Qwen3-4B, DAPO-Math-17K, 150 steps)", f"{METHODS}, BASIS, \"Claims\"",
          "The lab's time-to-accuracy sweep runs both at G = 1 with 8× the prompts on the tiny model, on a fixed pool of "
          "256 prompts so that BASIS has its reference stage (8 samples per prompt; those rollouts are counted in "
          "rollouts to target); the rows without a pool have no reference stage (the lab's running prior, shown). The "
          "paper's \"close to 8-rollout GRPO at about half the compute\" is compared with GRPO-8 on the same pool and "
          "shown, not counted (it is not a direction).",
          "difference", None, _basis_accuracy, "higher"),
    Claim("kl3-asymmetric", "KL3 (Wu et al., arXiv 2602.05494)", "the trust region is asymmetric: more room to raise a "
          "token's probability than to lower it", "direction only (the worked "
          f"example in {METHODS}: δ = 0.03 → about [0.775, 1.265])", f"{METHODS}, \"Clipping and divergence\"",
          "Judged in log-ratio space against KL1/KL2, which are symmetric there: a check that a log-symmetric measure "
          "passes tests nothing. The lab reads the ratio as π_θ/π_old. The ratio-space reading ((u − 1) > (1 − l)) is "
          "shown and rejected: it holds for every log-symmetric region.", "room", None, _kl3_room, "higher"),
    Claim("kl3-exploration", "KL3 (Wu et al., arXiv 2602.05494)", "the asymmetric region gives stronger exploration "
          "(higher entropy than symmetric clipping)", "none quoted (direction only)", f"{METHODS}, \"Clipping and divergence\"",
          "The paper's δ and models (Qwen3-1.7B, 8B) are not the lab's: the lab compares at the matched budget (the same "
          "width u − l as ratio clipping's ε = 0.2) on its tiny model, with enough PPO epochs that clipping binds "
          "(`benchmarks/kl3_entropy.py`).", "difference", None,
          _kl3_exploration, "higher"),
)
CLAIMS_BY_KEY = {c.key: c for c in CLAIMS}


def _with_holm(checks: list[Check]) -> list[Check]:
    """Holm-adjusted p-values over the counted checks of one claim (one per identity)."""
    idx, seen = [], set()
    for i, k in enumerate(checks):
        if k.counted and not math.isnan(k.p) and (not k.identity or k.identity not in seen):
            idx.append(i)
            seen.add(k.identity)
    adj = stats.holm([checks[i].p for i in idx])
    out = list(checks)
    for i, p in zip(idx, adj):
        out[i] = replace(out[i], p_holm=p)
    return out


def evaluate(root: str | Path | None = None) -> list[tuple[Claim, list[Check]]]:
    """Every claim with its checks, read from the results files under ``root`` (default ``data/results/``).

    >>> kae = dict((c.key, checks) for c, checks in evaluate())["kae-value"]
    >>> kae[0].setting, kae[0].verdict in VERDICTS
    ('bandit', True)
    """
    return [(c, _with_holm(c.checks(root))) for c in CLAIMS]


def tally(checks: list[Check]) -> dict[str, int]:
    """Verdict counts over the counted checks, a group of checks restating one identity counted once
    (by its first counted member).

    >>> k = Check("bandit", "", "", None, "not", identity="x")
    >>> tally([k, k, replace(k, identity="", verdict="partly"), replace(k, reading="rejected")])
    {'not': 1, 'partly': 1}
    """
    seen, out = set(), {}
    for k in checks:
        if not k.counted or (k.identity and k.identity in seen):
            continue
        seen.add(k.identity)
        out[k.verdict] = out.get(k.verdict, 0) + 1
    return out


# --- rendering -----------------------------------------------------------------------------------
def _minus(s: str) -> str:
    return s.replace("-", "−")


def fmt_value(x: float | None, scale: str) -> str:
    """One number on the claim's scale: a % change for a ratio, a signed difference, or ×r for a room.

    >>> fmt_value(0.47, "ratio"), fmt_value(0.012, "difference"), fmt_value(0.922, "room")
    ('−53%', '+0.012', '×0.922')
    """
    if x is None or math.isnan(x):
        return "—"
    if scale == "ratio":
        return _minus(f"{100 * (x - 1):+.0f}%")
    if scale == "difference":
        return _minus(f"{x:+.3f}")
    return f"×{x:.3f}"


def checks_frame(key: str, *, setting: str | None = None, root=None) -> pd.DataFrame:
    """One claim's checks as a table (the rows of docs/claims.md), optionally one ``setting`` only: regime,
    reading, the lab's number with its interval, the effect's point value and the verdict. For lessons
    that show committed evidence instead of a run they cannot afford."""
    c = CLAIMS_BY_KEY[key]
    ks = [k for k in c.checks(root) if setting is None or k.setting == setting]
    return pd.DataFrame({"setting": [k.setting for k in ks], "regime": [k.regime for k in ks],
                         "reading": [READINGS[k.reading] for k in ks],
                         "lab's number": [fmt_effect(k.effect, c.scale) for k in ks],
                         "value": [k.effect.value if k.effect is not None else math.nan for k in ks],
                         "verdict": [k.verdict for k in ks]})


def fmt_effect(e: Effect | None, scale: str) -> str:
    """The lab's number as text with its interval and units.

    >>> fmt_effect(stats.Effect(0.47, 0.44, 0.51, 8), "ratio")
    '−53% [−56, −49] (8 seeds)'
    >>> fmt_effect(stats.Effect(0.012, -0.004, 0.028, 3), "difference")
    '+0.012 [−0.004, +0.028] (3 seeds)'
    >>> fmt_effect(None, "ratio")
    '—'
    """
    if e is None:
        return "—"
    n = f" ({e.n} {e.unit})" if e.n is not None else " (exact)"
    if e.exact:
        return fmt_value(e.value, scale) + n
    if scale == "ratio":
        lo, hi = (fmt_value(x, scale).rstrip("%") for x in (e.low, e.high))
        return f"{fmt_value(e.value, scale)} [{lo}, {hi}]{n}"
    return f"{fmt_value(e.value, scale)} [{fmt_value(e.low, scale)}, {fmt_value(e.high, scale)}]{n}"


def _cell(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


def _feasible(k: Check, claim: Claim) -> str:
    if k.floor is None:
        return "no exact floor" if k.effect is not None and k.setting.startswith("real") else "—"
    return fmt_value(k.floor, claim.scale) + (" ✗" if k.verdict == "not testable here" else " ✓")


def _decide(k: Check, claim: Claim) -> str:
    if k.verdict != "inconclusive":
        return ""
    mde = fmt_value(k.mde, claim.scale) if k.mde is not None else "—"
    need = f"; ~{k.seeds_to_decide} {k.effect.unit if k.effect else 'seeds'} to decide" if k.seeds_to_decide else ""
    return f"MDE {mde}{need}"


def _tally_text(t: dict[str, int]) -> str:
    return ", ".join(f"{v} ×{t[v]}" if t[v] > 1 else v for v in VERDICTS if t.get(v)) or "—"


SOURCE_OF = {"time_to_accuracy_summary": "time_to_accuracy"}
"""A derived file listed in Sources -> the results file whose rows it summarises (whose commits made it)."""


def recheck_text(name: str, root=None) -> str:
    """What ``results_current.csv`` (``make results-current``) says about results file ``name``: its rows'
    driver re-run small at each commit that made them and at a later one, the outputs identical or not;
    "" when the file was never checked.

    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> results.write_csv(d / "results_current.csv", [
    ...     {"file": "value_mse.csv", "made_at": "d35386f194", "checked_against": "c05645e259", "outcome": "same"}],
    ...     ["file", "made_at", "checked_against", "outcome"])
    >>> recheck_text("value_mse", d)
    'checked: re-run small at d35386f194 and at c05645e259, identical'
    >>> recheck_text("grad_variance", d)
    ''
    """
    rows = [r for r in results.read_rows(results.path("results_current", root)) if r.get("file") == f"{name}.csv"]
    if not rows:
        return ""
    made = ", ".join(r["made_at"] for r in rows)
    against = ", ".join(sorted({r["checked_against"] for r in rows}))
    bad = [r["made_at"] for r in rows if r.get("outcome") != "same"]
    if not bad:
        return f"checked: re-run small at {made} and at {against}, identical"
    return (f"**checked: {', '.join(bad)} {'differs' if len(bad) == 1 else 'differ'} from {against}** "
            f"(`results_current.csv`): a re-make on today's code would change its rows")


def _sources(root) -> list[str]:
    lines = []
    for name in ("value_mse", "value_mse_calibrated", "value_mse_long", "value_mse_real", "grad_variance",
                 "time_to_accuracy_summary", "krpo_partial_credit", "basis_real", "kl3_entropy"):
        try:
            df = _read(name, root)
        except _Missing as e:
            lines.append(f"- {e}.")
            continue
        prov = results.provenance(name, root).get("provenance", {})
        source = SOURCE_OF.get(name, name)
        commits = results.made_by(results.path(source, root))
        dirty = prov.get("git_dirty", next((bool(df[c].iloc[0]) for c in ("git_dirty",) if c in df), None))
        created = prov.get("created") or next((str(df[c].max()) for c in ("created", "prov_created") if c in df), None)
        by = (f"commit {commits[0][:10]}" if len(commits) == 1 else
              f"{len(commits)} commits of {source}.csv's rows: {', '.join(c[:10] for c in commits)}" if commits else "")
        made = ", ".join(x for x in (by, "dirty tree" if dirty else "", f"made {created}" if created else "",
                                     recheck_text(source, root)) if x)
        lines.append(f"- [`data/results/{name}.csv`](../data/results/{name}.csv){world_note(root, name)}: {len(df)} rows"
                     + (f" ({made})" if made else "") + ".")
    lines.append("- `checked` (`make results-current`, `data/results/results_current.csv`): each commit that made a "
                 "file's rows and a later commit run the file's driver at a smoke size (same seeds, same threads); "
                 "identical outputs mean that commit's code computes what the later one does, so its rows stand "
                 "for the later code without a re-make.")
    return lines


def drift_fit_text(root=None) -> list[str]:
    """How close the long bandit's world is to the real runs' value drift, from ``value_mse_drift_fit.csv``: per lag the
    fitted world's and the random-walk calibration's mean squared change as a ratio of the real runs' (1 = the same),
    all three measured on the same probed prompts (``lab.analysis.bandit.probed_drift``)."""
    name = "value_mse_drift_fit"
    try:
        df = _read(name, root)
    except _Missing as e:
        return [f"The long bandit's fit to the real drift: {e}."]
    _need(df, name, ("moment", "lag", "real", "fit", "random_walk"))
    msd = df[df["moment"].astype(str) == "msd"].sort_values("lag")
    if msd.empty:
        return [f"The long bandit's fit to the real drift: `data/results/{name}.csv` has no msd rows."]
    lags = [str(int(x)) for x in msd["lag"]]

    def ratios(col):
        return "/".join(f"{float(a) / float(b):.2f}×" for a, b in zip(msd[col], msd["real"]))

    learn = float(df["learn"].iloc[0]) if "learn" in df.columns else 0.0
    return [f"**The long bandit's world** is fitted to the real runs' value drift measured on the prompts they probed "
            f"(`data/results/{name}.csv`): its mean squared change at lags {'/'.join(lags)} is {ratios('fit')} the real "
            f"runs' (the random-walk calibration of `--calibrated`: {ratios('random_walk')}). Over the real runs' horizon a "
            f"prompt gains {learn:.3g} logit for each step it is trained on; the long bandit stretches that world to its "
            "own horizon."]


SETTINGS = ("bandit", "bandit (calibrated)", "bandit (long)", "real runs", "real-model gradients", "real runs (accuracy)", "exact")

RULE_TEXT = [
    "**The verdict rule** (`lab.analysis.claims.verdict`), applied in this order to the lab's 95% interval of the effect",
    "(a ratio of errors, where 1 is no change, or a difference of accuracies, where 0 is none), its point estimate and",
    "the paper's number (for a range, its weakest end, the one closest to no effect):",
    "",
    "1. **not testable here**: the exact floor of that world (the posterior-mean baseline, which no baseline can beat in",
    "   expectation) cannot reach the paper's number: the `floor` column (✗). Shown, never counted.",
    "2. The interval lies wholly on the paper's side of no effect: **reproduced** if the point estimate reaches the",
    "   paper's number (for a claim with a direction and no number, on the paper's side is enough), else **partly**.",
    "3. The interval contains no effect: **inconclusive** if it also contains the paper's number (for a direction-only",
    "   claim: if it reaches the paper's side at all), with the minimum detectable effect (MDE: the true effect a",
    "   two-sided 5% test finds with 80% power at these seeds) and the seeds that would decide it; else **not**.",
    "4. The interval lies on the other side of no effect: **not**.",
    "",
    "**not tested**: no results row yet, or fewer than two seeds. A number computed exactly (KL3's clip interval) has an",
    "interval of zero width.",
    "",
    "Intervals: below 8 seeds a t-interval on the mean per-seed log-ratio (3 seeds give a bootstrap only 10 distinct",
    "resamples); from 8 seeds a percentile bootstrap of it with 10,000 resamples. Ratios are geometric means of the",
    "per-seed ratios (on the bandit and between shadows of one real run, every estimator sees the same batches, so the",
    "ratio is paired by seed); runs that are not paired (different G, or two labels of the time-to-accuracy sweep) use",
    "Welch's t (on the log for ratios). Gradients are judged on scale-free metrics only: the best-scale relative error",
    "(the error left when one constant rescales the estimate, min_c E‖c·g − ∇J‖²/‖∇J‖²), with the cosine to ∇J shown",
    "beside it; the raw relative error is shown for information, never as the judge, because AdamW is nearly invariant",
    "to a global scale of the gradient (it divides each coordinate by its running RMS), so an estimator with smaller",
    "advantages would win it for nothing. The papers give no number for the gradient error: judged by its direction.",
    "",
    f"Parameters chosen by looking at results (KAE's bandwidth h, BASIS's m and β grid) are picked on seeds 0–{SELECT_SEEDS - 1}",
    "and judged on the held-out seeds. **Counting**: the tally counts only the paper's reading; rejected readings, lab",
    "extensions, rows outside the paper's regime, confounded rows and other values of a setting the paper does not give",
    "(BASIS's m on real runs: the value fixed before the runs counts) are shown, not counted. Rows that restate one",
    "identity count once (KRPO's value rows: see below). Seeds added to a check after a first look at it (the",
    "accuracy checks of BASIS and KAE: their first 12 seeds fixed how many more to run) decide it alone, once all have",
    "run; pooled with the first ones it is shown, not counted, since counting it would look at the first seeds twice",
    "(while the added seeds are still running, the check has no counted row). Multiplicity: each claim's counted",
    "checks carry a Holm-adjusted p-value against no effect (`p (Holm)`); a verdict from an interval that excludes no",
    "effect is marked † when its Holm-adjusted p is ≥ 0.05.",
    "",
    "`floor`: the floor's own effect in that world (✓ it can reach the paper's number); `vs floor`:",
    "(estimator − floor)/(baseline − floor), the share of the baseline's excess error over the floor that the",
    "estimator keeps (0 = at the floor, 1 = no better than the baseline). A ratio is shown as a % change: −53% means",
    "the lab's value error is 53% below the baseline's.",
]


def claims_markdown(root: str | Path | None = None) -> str:
    """The whole of ``docs/claims.md``, generated from the results files under ``root``."""
    evaluated = evaluate(root)
    out = [
        "# The seed papers' claims, tested",
        "",
        "<!-- generated by `python -m lab.analysis.claims` from data/results/; do not edit by hand (`make claims`) -->",
        "",
        "Each headline claim of the four seed papers (KAE, KRPO, BASIS, KL3), the paper's number as quoted in",
        "`shared/methods.md`, and the lab's number for it: on the drifting bandit with exact values",
        "(`benchmarks/value_mse.py`), on the same bandit fitted to how fast the real runs' true values move",
        "(`--calibrated`) and over a long horizon (`--long`), on real runs of the tiny model",
        "(`benchmarks/value_mse_real.py`, `benchmarks/time_to_accuracy.py`) and on its gradients",
        "(`benchmarks/grad_variance.py`). Every lab number is read from `data/results/` by `lab/analysis/claims.py` and",
        "names the file and the filter it came from; a test fails when this page and the files disagree.",
        "",
        *drift_fit_text(root),
        "",
        *RULE_TEXT,
        "",
        "## Summary",
        "",
        "Counted checks only (the paper's reading, testable in that world); `shown` counts the rest.",
        "",
        "| claim | paper's number | " + " | ".join(SETTINGS) + " | shown, not counted |",
        "|---|---|" + "---|" * (len(SETTINGS) + 1),
    ]
    for c, checks in evaluated:
        cells = [_tally_text(tally([k for k in checks if k.setting == s])) for s in SETTINGS]
        shown = sum(not k.counted for k in checks)
        out.append(f"| {_cell(c.paper.split(' (')[0])}: {_cell(c.claim)} ([below](#{c.key})) | {_cell(c.paper_number)} | "
                   + " | ".join(cells) + f" | {shown} |")
    for c, checks in evaluated:
        out += ["", f"<a id=\"{c.key}\"></a>", f"## {c.paper}: {c.claim}", "",
                f"- **Paper's number:** {c.paper_number}. Quoted from {c.quoted_from}.",
                f"- **Not known / notes:** {c.unknown}", "",
                "| setting | regime | reading | lab's number [95% CI] | floor | vs floor | verdict | to decide | p (Holm) | from (file: filter) |",
                "|---|---|---|---|---|---|---|---|---|---|"]
        for k in checks:
            dagger = " †" if k.counted and k.verdict in ("reproduced", "partly") and not (k.p_holm < 0.05) and not math.isnan(k.p_holm) else ""
            notes = "; ".join(x for x in (k.why, k.extra) if x)
            vs = "—" if k.vs_floor is None else f"{k.vs_floor:.2f}"
            ph = "—" if math.isnan(k.p_holm) else f"{k.p_holm:.3g}"
            reading = READINGS[k.reading] + (" (one identity)" if k.identity else "")
            out.append(f"| {k.setting} | {_cell(k.regime)} | {reading} | {fmt_effect(k.effect, c.scale)} | "
                       f"{_feasible(k, c)} | {vs} | **{k.verdict}**{dagger}{_cell(f' ({notes})' if notes else '')} | "
                       f"{_decide(k, c)} | {ph} | {_cell(k.source)} |")
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
            f"{int(r['reached_seeds'])} of {int(r['seeds'])} seeds reached it; "
            f"{_ratio_clause(r, b, _picked(len(others)))}) {src}.")


def _picked(n: int) -> str:
    return f" (an interval of the best of {n} labels, not corrected for picking it)" if n > 1 else ""


def _ratio_clause(r, base, picked: str = "") -> str:
    """Whether the seeds separate a time-to-accuracy ratio from 1×, said from the file's interval.

    >>> import pandas as pd
    >>> row = lambda lo, hi, n=3: pd.Series({"rollout_ratio_geomean": 0.5, "rollout_ratio_ci_low": lo,
    ...                                      "rollout_ratio_ci_high": hi, "reached_seeds": n})
    >>> _ratio_clause(row(0.2, 1.3), row(1, 1))
    'ratio of geometric means 0.50×, 95% interval [0.20, 1.30]×: it contains 1×, so 3 and 3 seeds cannot separate it from GRPO G = 8'
    >>> _ratio_clause(row(0.3, 0.8), row(1, 1)).split(": ")[1]
    'it lies below 1×'
    """
    g, lo, hi = (_num(r.get(k, math.nan)) for k in ("rollout_ratio_geomean", "rollout_ratio_ci_low", "rollout_ratio_ci_high"))
    if any(math.isnan(v) for v in (g, lo, hi)):
        return "no interval: fewer than 2 seeds reached the target on one side (or the file predates the interval columns)"
    head = f"ratio of geometric means {g:.2f}×, 95% interval [{lo:.2f}, {hi:.2f}]×"
    if lo <= 1.0 <= hi:
        return (f"{head}: it contains 1×, so {int(r['reached_seeds'])} and {int(base['reached_seeds'])} seeds "
                f"cannot separate it from GRPO G = 8")
    return f"{head}: it lies {'below' if hi < 1.0 else 'above'} 1×{picked}"


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
        cli = t.get("lab train (CLI)")
        lab, trl = (cli if cli is not None else t["lab"]), t["trl"]
        threads = f"{int(lab['threads'])} thread{'s' if int(lab['threads']) != 1 else ''}: " if "threads" in df else ""
        floor = f", {_num(lab['ratio_to_floor']):.2f}× the model's bare floor" if "ratio_to_floor" in df and "floor" in t else ""
        who = "`lab train` as a user runs it" if cli is not None else "lab (in-process)"
        also = (f"; the in-process, profiled lab in the same run {_num(t['lab']['ratio_to_trl']):.2f}×"
                if cli is not None else "")
        parts.append(f"{threads}{who} {_num(lab['median_step_s']):.3f} s per step vs TRL {_num(trl['median_step_s']):.3f} s "
                     f"(**{_num(lab['ratio_to_trl']):.2f}×**{floor}{also}; [`{name}.csv`](data/results/{name}.csv))")
    work = ""
    df = _read("step_time_vs_trl", root)
    if {"prompts_per_step", "rollouts_per_prompt", "new_tokens"} <= set(df.columns):
        r = df.iloc[0]
        work = (f" ({int(r['prompts_per_step'])} prompts × {int(r['rollouts_per_prompt'])} rollouts, "
                f"{int(r['new_tokens'])} new tokens, median step)")
    return f"- **{what}**{work}: " + "; ".join(parts) + "."


def claims_line(root=None) -> str:
    """How many counted checks of the claims table reached each verdict, how many are shown only, and the link."""
    checks = [k for _, ks in evaluate(root) for k in ks]
    t = tally(checks)
    counted = sum(t.values())
    counts = ", ".join(f"{t.get(v, 0)} {v}" for v in VERDICTS if v not in ("not testable here", "not tested"))
    infeasible = sum(k.verdict == "not testable here" for k in checks)
    untested = sum(k.verdict == "not tested" for k in checks)
    return (f"- **The seed papers' claims** (KAE, KRPO, BASIS, KL3) against the lab's numbers: [docs/claims.md](docs/claims.md) "
            f"({counted} counted checks of the papers' readings: {counts}; {infeasible} not testable in their world, "
            f"{untested} not tested yet; {len(checks) - counted - infeasible - untested} more shown, not counted: rejected "
            f"readings, lab extensions, other regimes, other values of settings the papers do not give, restatements of one "
            f"identity).")


def current_line(root=None) -> str:
    """Whether the committed results are today's code's numbers, from ``results_current.csv`` ("" when never checked).

    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> results.write_csv(d / "results_current.csv", [
    ...     {"file": "value_mse.csv", "made_at": "a", "checked_against": "c05645e259", "outcome": "same"},
    ...     {"file": "data/sample_runs/", "made_at": "b", "checked_against": "c05645e259", "outcome": "differs"}],
    ...     ["file", "made_at", "checked_against", "outcome"])
    >>> print(current_line(d)[:110])
    - **Are these numbers today's code's?** 1 of 2 checks identical: **differs: data/sample_runs/ (made at b)**; e
    """
    rows = results.read_rows(results.path("results_current", root))
    if not rows:
        return ""
    same = sum(r.get("outcome") == "same" for r in rows)
    against = ", ".join(sorted({r.get("checked_against", "") for r in rows}))
    bad = [f"{r['file']} (made at {r['made_at']})" for r in rows if r.get("outcome") != "same"]
    head = f"{same} of {len(rows)} checks identical" + (f": **differs: {'; '.join(bad)}**" if bad else "")
    return (f"- **Are these numbers today's code's?** {head}; every results file's driver and the sample runs were re-run "
            f"small at each commit that made their rows and at {against}, compared exactly (timings and provenance aside) "
            f"([`results_current.csv`](data/results/results_current.csv), `make results-current`).")


def readme_block(root: str | Path | None = None) -> str:
    """The README's Results block (between its markers)."""
    return "\n".join(["<!-- generated by `python -m lab.analysis.claims` from data/results/ (`make claims`); do not edit by hand -->",
                      time_to_accuracy_line(root), learning_curve_line(root), step_time_line(root), claims_line(root),
                      *filter(None, [current_line(root)])])


# --- files ---------------------------------------------------------------------------------------
def expected(root=None, docs: Path = DOCS, readme: Path = README) -> dict[Path, str]:
    """What ``docs`` and ``readme`` should contain, generated from the results under ``root``."""
    return {docs: claims_markdown(root),
            readme: docblocks.splice(readme.read_text(encoding="utf-8"), BLOCK, readme_block(root), str(readme))}


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
            results.write_text(p, want)
            changed.append(p)
    return changed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lab.analysis.claims", description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="do not write: exit 1 with a diff if either file is out of date")
    ap.add_argument("--results", type=Path, default=None, help="results folder to read (default data/results/)")
    args = ap.parse_args(argv)
    if args.check:
        diffs = stale(args.results)
        if diffs:
            print("\n\n".join(diffs))
            print("\nout of date: run `make claims` to regenerate docs/claims.md and the README block")
            return 1
        print("docs/claims.md and the README Results block match data/results/")
        return 0
    changed = write(args.results)
    print("wrote " + ", ".join(str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else str(p) for p in changed)
          if changed else "docs/claims.md and the README block were already up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
