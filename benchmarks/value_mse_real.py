"""Value error of every estimator on *real* training runs of the shipped tiny model, G × prompt reuse.

    .venv/bin/python benchmarks/value_mse_real.py             # the sweep; writes data/results/value_mse_real*.csv (resumes)
    .venv/bin/python benchmarks/value_mse_real.py --quick     # smoke run: 1 seed, 4 steps, small probes, /tmp output
    .venv/bin/python benchmarks/value_mse_real.py --seeds 0 1 --group-sizes 2 4 --reuses 10
    .venv/bin/python benchmarks/value_mse_real.py --fresh     # start over (after changing estimator or trainer code)
    .venv/bin/python benchmarks/value_mse_real.py --write-docs  # docs/estimators.md's block from the committed CSVs

**What one run is.** ``lab.train.train`` in-process (quiet, in a temporary folder unless
``--runs-dir``) on every ``TrainConfig`` default except: ``rollouts_per_prompt`` = G,
``prompts_per_step`` = 64 / G (equal rollouts per step across G), ``prompt_reuse`` = J,
``seed``, ``steps``, probes (``probe_set="batch"``, ``probe_every``, ``probe_prompts``,
``probe_samples``), no held-out eval and no intermediate checkpoints. The main estimator is
``grpo``; every other registered estimator runs in shadow on the same rollouts (the default
``shadow_estimators=("all",)``), each with its own memory, so all estimators of one run are
compared on identical batches and the comparison is paired. Shadows use their registered
defaults (each row's ``estimator_params`` records them). These runs use no reference stage
(``reference_samples`` = 0, the default; the trainer has one, ``--reference-samples``): ``basis``
and ``blend`` get no reference samples here, unlike on the bandit (8 per prompt). BASIS with
its reference samples on real runs is not measured yet.

**What is measured.** ``probe_set="batch"`` probes the step's first ``probe_prompts``
*training* prompts and scores the baselines that training itself computed for their rollouts
(``lab/train.py``, ``Trainer.run_probes``): a stateful estimator (KAE, BLEND, BASIS) is judged
on prompts whose history it has, which is what the papers' claims are about. The truth is the
mean of ``probe_samples`` fresh samples per prompt under the same policy (before the update);
``probe/value_mse_corrected/<name>`` subtracts the truth's squared standard error, so it is an
unbiased estimate of E[(b − V)²] (``lab.probes``). A run's value MSE per estimator is that metric
averaged over its probe steps at or after ``warmup``.

Probe steps are multiples of ``probe_every`` = 3, coprime with J = 4 and 10, so the probed steps
fall evenly on every position inside a reuse block (KAE's history is empty at a block's first
step and fullest at its last; a ``probe_every`` dividing J would always probe the same position).

**Sizing.** The committed sweep (``elapsed_s`` in ``value_mse_real.csv``, one torch thread on the
2-core machine beside other work) took 5–8 s a run: about 8 s at G = 1 (64 prompts a step, every
shadow) down to 5 s at G = 8, so 4 G × 3 J × 3 seeds = 36 runs take about 4 minutes (an earlier
trainer took ~100 s a run). Each run's rows are written when it finishes, so the sweep can be run in parts
(``--group-sizes``, ``--reuses``, ``--seeds``).

**Outputs** (``--out`` names the first; the others sit beside it):

- ``value_mse_real.csv``: one row per (run, estimator): ``rollouts_per_prompt, prompt_reuse,
  seed, estimator, estimator_params, value_mse, value_mse_raw, probe_steps, elapsed_s``, the
  settings and ``lab.provenance.FIELDS``. A run is done when all its estimators' rows are there
  with today's resolved estimator parameters; an interrupted run (no rows or a torn last line) is
  redone from scratch.
- ``value_mse_real_truth.csv``: the probe truth per (run, probe step, prompt): ``truth``,
  ``truth_se`` (what the drift is computed from).
- ``value_mse_real_summary.csv``: one row per (G, J, estimator): mean over seeds with a 95%
  *t*-interval over seeds (``value_mse_ci95`` is the half-width), and the ratio to the baseline
  the estimator's paper compares with on the same runs: the mean over seeds of the per-seed
  ratio, with a 95% *t*-interval (paired by seed, as ``benchmarks/value_mse.py``). Baselines:
  ``grpo`` (group mean) for ``kae``/``krpo`` at G ≥ 2 and for ``basis`` at G = 8;
  ``reinforce_plus_plus`` for ``basis``/``blend`` at G = 1; empty otherwise. ``basis`` at G = 1
  also gets ``ratio_to_grpo_g8`` (BASIS's "one rollout below the group mean of eight"): ratio of
  means across different runs, with a percentile bootstrap interval (seeds resampled
  independently on both sides, 10,000 draws).
- ``value_mse_real_drift.csv``: how fast true values move per step, ``source`` ∈ {real, bandit,
  bandit_matched}: see :func:`drift_table`.
- ``value_mse_real.png``: value MSE against G per estimator, one panel per J.
"""

from __future__ import annotations

import argparse
import csv
import inspect
import json
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path

from lab import probes
from lab.analysis import docblocks, results, stats

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "data" / "results" / "value_mse_real.csv"
GROUP_SIZES = (1, 2, 4, 8)
REUSES = (1, 4, 10)
SEEDS = (0, 1, 2)
ROLLOUTS_PER_STEP = 64
"""Rollouts per training step at every G (prompts_per_step = ROLLOUTS_PER_STEP / G)."""
STEPS, PROBE_EVERY, PROBE_PROMPTS, PROBE_SAMPLES, WARMUP = 31, 3, 8, 64, 3
QUICK = {"steps": 4, "probe_every": 3, "probe_prompts": 2, "probe_samples": 16, "warmup": 0}
"""``--quick``: a smoke run (probes at steps 0 and 3), not a measurement."""
MAIN_ESTIMATOR = "grpo"
MAX_LAG = 9
"""Longest lag (steps) of the drift table: pairs within one reuse block of J = 10."""

RUN_FIELDS = ["rollouts_per_prompt", "prompt_reuse", "seed", "estimator", "estimator_params", "value_mse",
              "value_mse_raw", "probe_steps", "elapsed_s"]
SETTINGS = ["model", "task", "steps", "prompts_per_step", "probe_set", "probe_every", "probe_prompts", "probe_samples",
            "warmup", "lr", "temperature", "max_new_tokens"]
CHECKED = ["model", "task", "steps", "probe_set", "probe_every", "probe_prompts", "probe_samples", "warmup", "lr"]
"""Settings an existing file must share with this invocation to be resumed."""
TRUTH_FIELDS = ["rollouts_per_prompt", "prompt_reuse", "seed", "step", "prompt_id", "truth", "truth_se"]
SUMMARY_FIELDS = ["rollouts_per_prompt", "prompt_reuse", "estimator", "seeds", "value_mse", "value_mse_ci95", "baseline",
                  "ratio_to_baseline", "ratio_ci_low", "ratio_ci_high", "ratio_to_grpo_g8", "ratio_to_grpo_g8_ci_low",
                  "ratio_to_grpo_g8_ci_high"]
DRIFT_FIELDS = ["source", "rollouts_per_prompt", "lag", "pairs", "mean_change_per_step", "msd", "msd_ci95",
                "drift_per_step", "trend", "drift", "spread"]


def paths(out: Path) -> dict[str, Path]:
    """The files of one sweep, named after ``out`` (``x.csv`` -> ``x_truth.csv``, ``x_summary.csv``, ...)."""
    stem = out.with_suffix("")
    return {"runs": out, "truth": Path(f"{stem}_truth.csv"), "summary": Path(f"{stem}_summary.csv"),
            "drift": Path(f"{stem}_drift.csv"), "plot": Path(f"{stem}.png")}


# --- the runs -------------------------------------------------------------------------------------
def run_config(g: int, reuse: int, seed: int, *, steps: int, probe_every: int, probe_prompts: int, probe_samples: int,
               runs_dir: Path):
    """The ``TrainConfig`` of one run (see the module docstring for what differs from the defaults)."""
    from lab.config import TrainConfig

    if ROLLOUTS_PER_STEP % g:
        raise ValueError(f"--group-sizes: {g} does not divide {ROLLOUTS_PER_STEP} rollouts per step; use 1, 2, 4, 8, 16, ...")
    per_step = ROLLOUTS_PER_STEP // g
    if probe_prompts > per_step:
        raise ValueError(f"--probe-prompts: {probe_prompts} batch probes but G = {g} has only {per_step} prompts per step")
    return TrainConfig(estimator=MAIN_ESTIMATOR, rollouts_per_prompt=g, prompts_per_step=per_step, prompt_reuse=reuse,
                       seed=seed, steps=steps, probe_set="batch", probe_every=probe_every, probe_prompts=probe_prompts,
                       probe_samples=probe_samples, eval_every=0, checkpoint_every=0, keep_checkpoints=1,
                       output_dir=str(runs_dir), run_name=f"g{g}-j{reuse}-s{seed}", quiet=True)


def estimator_names() -> list[str]:
    """Every estimator a run reports: the main one and all shadows."""
    from lab import estimators

    return [MAIN_ESTIMATOR, *[n for n in estimators.available() if n != MAIN_ESTIMATOR]]


def resolved_params(name: str) -> str:
    """The estimator's constructor defaults as JSON (shadows run with defaults): names each row by its parameters.

    >>> json.loads(resolved_params("kae"))["kernel"]
    'triangular'
    """
    from lab import estimators

    obj = estimators.ESTIMATORS.get(name)
    is_class = isinstance(obj, type)
    sig = inspect.signature(obj.__init__ if is_class else obj)
    ps = list(sig.parameters.values())[1 if is_class else 2:]
    params = {p.name: p.default for p in ps if p.default is not inspect.Parameter.empty}
    return json.dumps(params, sort_keys=True, default=list)


run_value_mse = probes.run_value_mse
"""Per estimator: (mean corrected, mean raw value MSE, probe steps) over a run's probe steps: ``lab.probes.run_value_mse``."""


def measure_run(g: int, reuse: int, seed: int, settings: dict, runs_dir: Path) -> tuple[list[dict], list[dict]]:
    """Train one run; its (value rows, truth rows). An earlier attempt's folder is deleted first."""
    from lab import provenance, runs
    from lab.train import train

    cfg = run_config(g, reuse, seed, steps=settings["steps"], probe_every=settings["probe_every"],
                     probe_prompts=settings["probe_prompts"], probe_samples=settings["probe_samples"], runs_dir=runs_dir)
    run_dir = runs_dir / cfg.run_name
    if run_dir.exists():
        shutil.rmtree(run_dir)  # an interrupted attempt: redone from scratch
    t0 = time.monotonic()
    train(cfg)
    elapsed = round(time.monotonic() - t0, 1)
    metrics = runs.read_metrics(run_dir)
    names = estimator_names()
    per = run_value_mse(metrics, names, settings["warmup"])
    key = {"rollouts_per_prompt": g, "prompt_reuse": reuse, "seed": seed}
    common = {**{k: settings.get(k, getattr(cfg, k, None)) for k in SETTINGS}, "prompts_per_step": cfg.prompts_per_step,
              **provenance.collect()}
    rows = [{**key, "estimator": n, "estimator_params": resolved_params(n), "value_mse": per[n][0],
             "value_mse_raw": per[n][1], "probe_steps": per[n][2], "elapsed_s": elapsed, **common} for n in names]
    probes = runs.read_probes(run_dir)
    first = probes[probes["estimator"] == MAIN_ESTIMATOR]
    truth = [{**key, "step": int(r.step), "prompt_id": int(r.prompt_id), "truth": round(float(r.truth), 8),
              "truth_se": round(float(r.truth_se), 8)} for r in first.itertuples()]
    return rows, truth


# --- files ------------------------------------------------------------------------------------------
def run_fieldnames() -> list[str]:
    from lab import provenance

    return RUN_FIELDS + [s for s in SETTINGS] + list(provenance.FIELDS)


def read_rows(path: Path) -> list[dict]:
    """Rows of an existing results file (``lab.analysis.results.read_rows``: empty when absent, a torn last line skipped)."""
    return results.read_rows(path)


def append_rows(path: Path, rows: list[dict], fieldnames: list[str]) -> None:
    """Append rows (``lab.analysis.results.append_rows``)."""
    results.append_rows(path, rows, fieldnames)


def write_rows(path: Path, rows: list[dict], fieldnames: list[str]) -> None:
    """The whole file at once, atomically (``lab.analysis.results.write_csv``)."""
    results.write_csv(path, rows, fieldnames)


def done_runs(rows: list[dict], names: list[str], params: dict[str, str]) -> set[tuple[int, int, int]]:
    """(G, J, seed) of runs whose rows cover every estimator in ``names`` with today's ``params``.

    >>> rows = [{"rollouts_per_prompt": "2", "prompt_reuse": "4", "seed": "0", "estimator": n, "estimator_params": "{}"}
    ...         for n in ("a", "b")] + [{"rollouts_per_prompt": "2", "prompt_reuse": "4", "seed": "1",
    ...                                  "estimator": "a", "estimator_params": "{}"}]
    >>> sorted(done_runs(rows, ["a", "b"], {"a": "{}", "b": "{}"}))
    [(2, 4, 0)]
    >>> done_runs(rows, ["a", "b"], {"a": "{}", "b": '{"h": 1}'})
    set()
    """
    seen: dict[tuple[int, int, int], set[str]] = {}
    for r in rows:
        k = (int(r["rollouts_per_prompt"]), int(r["prompt_reuse"]), int(r["seed"]))
        if params.get(r["estimator"]) == r.get("estimator_params"):
            seen.setdefault(k, set()).add(r["estimator"])
    return {k for k, v in seen.items() if set(names) <= v}


def _key(r: dict) -> tuple[int, int, int]:
    return int(r["rollouts_per_prompt"]), int(r["prompt_reuse"]), int(r["seed"])


# --- statistics -------------------------------------------------------------------------------------
mean_ci = stats.mean_ci95
"""(mean, 95% t half-width): ``lab.analysis.stats.mean_ci95``."""


def baseline_of(estimator: str, g: int) -> str | None:
    """The estimator its paper compares with, on the same runs (None: no claim to check).

    >>> baseline_of("kae", 4), baseline_of("kae", 1), baseline_of("basis", 1), baseline_of("basis", 8), baseline_of("rloo", 4)
    ('grpo', None, 'reinforce_plus_plus', 'grpo', None)
    """
    if estimator in ("kae", "krpo") and g >= 2:
        return "grpo"
    if estimator == "basis" and g == 8:
        return "grpo"
    if estimator in ("basis", "blend") and g == 1:
        return "reinforce_plus_plus"
    return None


bootstrap_ratio = stats.bootstrap_ratio
"""mean(a)/mean(b) with a percentile-bootstrap interval (unpaired runs): ``lab.analysis.stats.bootstrap_ratio``."""


def summarize(rows: list[dict]) -> list[dict]:
    """One row per (G, J, estimator) in ``SUMMARY_FIELDS`` (see the module docstring); NaN-free: empty when n/a.

    Ratios are paired by seed: only seeds present for both the estimator and its baseline count,
    and only seeds where the baseline's corrected MSE is > 0 (it can dip below 0 by MC noise,
    which would make a ratio meaningless; ``seeds`` counts the estimator's own seeds).
    """
    by: dict[tuple[int, int, str], dict[int, float]] = {}
    for r in rows:
        g, j, s = _key(r)
        by.setdefault((g, j, r["estimator"]), {})[s] = float(r["value_mse"])
    order = {n: i for i, n in enumerate(dict.fromkeys(r["estimator"] for r in rows))}
    out = []
    for (g, j, est), per in sorted(by.items(), key=lambda kv: (kv[0][0], kv[0][1], order[kv[0][2]])):
        mean, half = mean_ci(list(per.values()))
        row = {"rollouts_per_prompt": g, "prompt_reuse": j, "estimator": est, "seeds": len(per), "value_mse": mean,
               "value_mse_ci95": half, "baseline": "", "ratio_to_baseline": "", "ratio_ci_low": "", "ratio_ci_high": "",
               "ratio_to_grpo_g8": "", "ratio_to_grpo_g8_ci_low": "", "ratio_to_grpo_g8_ci_high": ""}
        base = baseline_of(est, g)
        if base is not None and (g, j, base) in by:
            other = by[(g, j, base)]
            seeds = sorted(s for s in set(per) & set(other) if other[s] > 0)  # a corrected MSE can dip to <= 0 by noise
            if seeds:
                q, qh = mean_ci([per[s] / other[s] for s in seeds])
                row.update(baseline=base, ratio_to_baseline=q, ratio_ci_low=q - qh, ratio_ci_high=q + qh)
        if est == "basis" and g == 1 and (8, j, "grpo") in by:
            r8, lo, hi = bootstrap_ratio(list(per.values()), list(by[(8, j, "grpo")].values()))
            row.update(ratio_to_grpo_g8=r8, ratio_to_grpo_g8_ci_low=lo, ratio_to_grpo_g8_ci_high=hi)
        out.append({k: ("" if isinstance(v, float) and math.isnan(v) else _round(v)) for k, v in row.items()})
    return out


def _round(v):
    return round(v, 8) if isinstance(v, float) else v


# --- drift ------------------------------------------------------------------------------------------
def lag_pairs(truth: pd.DataFrame, max_lag: int = MAX_LAG) -> pd.DataFrame:
    """Every pair of measurements of one prompt in one run, k = 1..max_lag steps apart.

    Shapes: ``truth`` has columns run (any hashable), step, prompt_id, truth, truth_se; the
    result has lag, diff (later − earlier) and noise (the two SE² summed) per pair.

    >>> t = pd.DataFrame({"run": 0, "step": [0, 3, 6], "prompt_id": 7, "truth": [0.1, 0.2, 0.4], "truth_se": 0.0})
    >>> lag_pairs(t)[["lag", "diff"]].round(3).values.tolist()
    [[3.0, 0.1], [6.0, 0.3], [3.0, 0.2]]
    """
    a = truth[["run", "step", "prompt_id", "truth", "truth_se"]]
    m = a.merge(a, on=["run", "prompt_id"], suffixes=("_0", "_1"))
    m = m[(m["step_1"] > m["step_0"]) & (m["step_1"] - m["step_0"] <= max_lag)]
    m = m.sort_values(["run", "prompt_id", "step_0", "step_1"], kind="stable")
    return pd.DataFrame({"lag": (m["step_1"] - m["step_0"]).to_numpy(), "diff": (m["truth_1"] - m["truth_0"]).to_numpy(),
                         "noise": (m["truth_se_0"] ** 2 + m["truth_se_1"] ** 2).to_numpy()})


def drift_by_lag(pairs: pd.DataFrame) -> list[dict]:
    """Per lag k: pairs, mean change per step, the MC-corrected mean squared change and drift per step.

    ``msd`` = mean over pairs of (V̂_{t+k} − V̂_t)² − SE_t² − SE_{t+k}²: the truths of different
    steps come from independent samples, so this is an unbiased estimate of E[(V_{t+k} − V_t)²].
    ``drift_per_step`` = √msd / k, the RMS change of a value per step at that lag (for a pure
    trend it is the same at every k; for a pure random walk it falls as 1/√k).
    ``mean_change_per_step`` = mean(V̂_{t+k} − V̂_t) / k needs no correction. ``msd_ci95``: the
    half-width of a normal 95% interval over pairs (pairs of one prompt are not independent, so
    it is optimistic).

    >>> p = pd.DataFrame({"lag": [2, 2], "diff": [0.2, 0.4], "noise": [0.01, 0.01]})
    >>> r = drift_by_lag(p)[0]
    >>> r["lag"], r["pairs"], round(r["mean_change_per_step"], 4), round(r["msd"], 4), round(r["drift_per_step"], 4)
    (2, 2, 0.15, 0.09, 0.15)
    """
    out = []
    for k, g in pairs.groupby("lag", sort=True):
        x = g["diff"].to_numpy() ** 2 - g["noise"].to_numpy()
        msd = float(x.mean())
        ci = float(1.96 * x.std(ddof=1) / math.sqrt(len(x))) if len(x) > 1 else math.nan
        out.append({"lag": int(k), "pairs": int(len(x)), "mean_change_per_step": float(g["diff"].mean()) / int(k),
                    "msd": msd, "msd_ci95": ci, "drift_per_step": math.sqrt(max(msd, 0.0)) / int(k)})
    return out


def bandit_truth(*, steps: int, probe_every: int, trend: float, drift: float, spread: float = 1.5, seeds=range(8),
                 n_prompts: int = 64) -> pd.DataFrame:
    """The bandit's exact values at the probe steps (SE 0), in ``lag_pairs``'s layout: the same drift measure.

    >>> t = bandit_truth(steps=4, probe_every=3, trend=0.0, drift=0.0, seeds=[0], n_prompts=2)
    >>> t["step"].tolist(), bool((t[t.prompt_id == 0].truth.diff().dropna() == 0).all())
    ([0, 0, 3, 3], True)
    """
    from lab.analysis.bandit import DriftingBandit

    rows = []
    probe_steps = [s for s in range(steps) if s % probe_every == 0 or s == steps - 1]
    for seed in seeds:
        b = DriftingBandit(n_prompts, spread=spread, trend=trend, drift=drift, seed=seed)
        for s in probe_steps:
            v = b.values(s).numpy()
            rows += [{"run": seed, "step": s, "prompt_id": p, "truth": float(v[p]), "truth_se": 0.0} for p in range(n_prompts)]
    return pd.DataFrame(rows)


def bernoulli_level(truth: pd.DataFrame) -> float:
    """Mean V(1 − V) over the rows of a truth table (``truth`` column): 0.25 when every value is
    1/2, 0 when all sit at 0 or 1.

    >>> bernoulli_level(pd.DataFrame({"truth": [0.5, 1.0]}))
    0.125
    """
    v = truth["truth"].astype(float).clip(0, 1)
    return float((v * (1 - v)).mean())


def match_bandit(target: list[dict], *, steps: int, probe_every: int, spread: float = 1.5,
                 trends=tuple(np.round(np.linspace(-0.1, 0.5, 31), 4)),
                 drifts=tuple(np.round(np.linspace(0.0, 1.2, 25), 4)),
                 level: float | None = None) -> tuple[float, float]:
    """The bandit's (trend, drift) whose value drift best matches ``target`` (drift_by_lag rows), by grid search.

    Loss over the target's lags: squared relative error of ``msd`` plus the squared error of
    the mean change over the lag in units of √msd (the two moments the drift rows report).
    ``level``, when given, is the real runs' mean V(1 − V) over probe steps (how far values sit
    from 0 and 1, which sets how much any baseline can be wrong): its squared relative error is
    added, so a world whose trend drives every value to 1 (fast drift, but nothing left to
    estimate) does not win on drift alone. A best point on the grid's edge is printed as a
    warning (widen ``trends``/``drifts``).
    """
    lags = {r["lag"]: r for r in target if r["pairs"] > 0 and r["msd"] > 0}
    if not lags:
        return math.nan, math.nan
    best, arg = math.inf, (math.nan, math.nan)
    for tr in trends:
        for dr in drifts:
            truth = bandit_truth(steps=steps, probe_every=probe_every, trend=float(tr), drift=float(dr),
                                 spread=spread, seeds=range(2))
            rows = drift_by_lag(lag_pairs(truth))
            have = {r["lag"]: r for r in rows}
            loss = 0.0
            if level:
                loss += ((bernoulli_level(truth) - level) / level) ** 2
            for k, t in lags.items():
                if k not in have:
                    loss = math.inf
                    break
                b = have[k]
                loss += ((b["msd"] - t["msd"]) / t["msd"]) ** 2
                loss += (k * (b["mean_change_per_step"] - t["mean_change_per_step"])) ** 2 / t["msd"]
            if loss < best:
                best, arg = loss, (float(tr), float(dr))
    if arg[0] in (trends[0], trends[-1]) or (arg[1] == drifts[-1] and len(drifts) > 1):
        print(f"match_bandit: best (trend, drift) = {arg} is on the edge of the grid; widen it", file=sys.stderr)
    return arg


def drift_table(truth_rows: list[dict], *, steps: int, probe_every: int, match: bool = True) -> list[dict]:
    """Drift of true values per lag: real runs (pooled, and per G) beside the bandit at its defaults
    (``lab.synthetic.DriftingBandit``'s trend and drift), measured the same way at the same probe
    steps, and (``match``) the bandit with the (trend, drift) that fits the pooled real drift."""
    from lab.analysis.bandit import DriftingBandit

    out = []
    if truth_rows:
        t = pd.DataFrame(truth_rows)
        for c in ("rollouts_per_prompt", "prompt_reuse", "seed", "step", "prompt_id"):
            t[c] = t[c].astype(int)
        for c in ("truth", "truth_se"):
            t[c] = t[c].astype(float)
        t["run"] = list(zip(t["rollouts_per_prompt"], t["prompt_reuse"], t["seed"]))
        groups = [("all", t)] + [(int(g), t[t["rollouts_per_prompt"] == g]) for g in sorted(t["rollouts_per_prompt"].unique())]
        pooled = []
        for label, sub in groups:
            rows = drift_by_lag(lag_pairs(sub))
            if label == "all":
                pooled = rows
            out += [{"source": "real", "rollouts_per_prompt": label, **r, "trend": "", "drift": "", "spread": ""} for r in rows]
    defaults = inspect.signature(DriftingBandit.__init__).parameters
    d_trend, d_drift, d_spread = (defaults[k].default for k in ("trend", "drift", "spread"))
    sources = [("bandit", d_trend, d_drift)]
    if match and truth_rows and pooled:
        tr, dr = match_bandit(pooled, steps=steps, probe_every=probe_every, spread=d_spread, level=bernoulli_level(t))
        if not math.isnan(tr):
            sources.append(("bandit_matched", tr, dr))
    for name, tr, dr in sources:
        rows = drift_by_lag(lag_pairs(bandit_truth(steps=steps, probe_every=probe_every, trend=tr, drift=dr, spread=d_spread)))
        out += [{"source": name, "rollouts_per_prompt": "", **r, "trend": tr, "drift": dr, "spread": d_spread} for r in rows]
    return [{k: ("" if isinstance(v, float) and math.isnan(v) else _round(v)) for k, v in r.items()} for r in out]


# --- plot and docs ----------------------------------------------------------------------------------
def plot(summary: list[dict], path: Path) -> None:
    """Value MSE against G per estimator (95% CI bars), one panel per prompt reuse J (matplotlib, PNG).

    Log y axis (errors span two decades across G); a mean corrected MSE <= 0 is left out.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lab.figures import COLORS

    df = pd.DataFrame(summary)
    reuses = sorted(df["prompt_reuse"].unique())
    fig, axes = plt.subplots(1, len(reuses), figsize=(4.2 * len(reuses) + 1.8, 3.8), sharey=True, squeeze=False)
    names = list(dict.fromkeys(df["estimator"]))
    for ax, j in zip(axes[0], reuses):
        for i, n in enumerate(names):
            d = df[(df["prompt_reuse"] == j) & (df["estimator"] == n)].sort_values("rollouts_per_prompt")
            d = d[d["value_mse"].astype(float) > 0]  # a log axis: a corrected MSE <= 0 (MC noise) is not drawn
            y = d["value_mse"].astype(float).to_numpy()
            err = pd.to_numeric(d["value_mse_ci95"], errors="coerce").fillna(0).to_numpy()
            lower = np.minimum(err, y * 0.999)  # keep the bar above 0 on the log axis
            ax.errorbar(d["rollouts_per_prompt"] * (1 + 0.02 * (i - len(names) / 2)), y, yerr=[lower, err],
                        marker="o", ms=3, lw=1, capsize=2, label=n, color=COLORS[i % len(COLORS)])
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(sorted(df["rollouts_per_prompt"].unique()), [str(g) for g in sorted(df["rollouts_per_prompt"].unique())])
        ax.set_title(f"prompt reuse J = {j}")
        ax.set_xlabel("rollouts per prompt G (64 rollouts per step)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("value MSE (MC-corrected), mean over seeds, 95% CI")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=7, loc="center right")
    fig.suptitle("Baseline error on real runs of the tiny model (probe_set=batch)", fontsize=10)
    fig.tight_layout(rect=(0, 0, 0.84, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


DOC_BLOCK = "value-mse-real"
"""The docs/estimators.md block (``lab.analysis.docblocks``) this benchmark regenerates."""
PLACEHOLDER = "*Not yet run in full: run `python benchmarks/value_mse_real.py`; this block is generated from its CSVs.*"


def _pct(row: dict, keys=("ratio_to_baseline", "ratio_ci_low", "ratio_ci_high")) -> str:
    """A ratio as % change with its interval (no interval from one seed).

    >>> _pct({"ratio_to_baseline": 0.4, "ratio_ci_low": 0.3, "ratio_ci_high": 0.55}), _pct({"ratio_to_baseline": 1.1, "ratio_ci_low": "", "ratio_ci_high": ""})
    ('-60% [-70, -45]', '+10% [no CI]')
    """
    q, lo, hi = (row[k] for k in keys)
    if lo in ("", None) or hi in ("", None):
        return f"{100 * (float(q) - 1):+.0f}% [no CI]"
    return f"{100 * (float(q) - 1):+.0f}% [{100 * (float(lo) - 1):+.0f}, {100 * (float(hi) - 1):+.0f}]"


def docs_block(summary: list[dict] | None, drift: list[dict] | None = None) -> str:
    """The generated markdown between the docs markers: the paper comparisons and the drift line.

    >>> docs_block(None) == PLACEHOLDER
    True
    """
    if not summary:
        return PLACEHOLDER
    lines = ["| estimator vs its paper's baseline | G | J | change in value MSE, mean [95% CI] | seeds |", "|---|---|---|---|---|"]
    for r in summary:
        if r.get("baseline") not in ("", None) and r.get("ratio_to_baseline") not in ("", None):
            lines.append(f"| `{r['estimator']}` vs `{r['baseline']}` | {r['rollouts_per_prompt']} | {r['prompt_reuse']} | "
                         f"{_pct(r)} | {r['seeds']} |")
    for r in summary:
        if r.get("ratio_to_grpo_g8") not in ("", None):
            pct = _pct(r, ("ratio_to_grpo_g8", "ratio_to_grpo_g8_ci_low", "ratio_to_grpo_g8_ci_high"))
            lines.append(f"| `basis` at G = 1 vs `grpo` at G = 8 (other runs; bootstrap) | 1 | {r['prompt_reuse']} | "
                         f"{pct} | {r['seeds']} |")
    if drift:
        real = [d for d in drift if d["source"] == "real" and str(d["rollouts_per_prompt"]) == "all"]
        band = [d for d in drift if d["source"] == "bandit"]
        matched = [d for d in drift if d["source"] == "bandit_matched"]
        if real and band:
            k = min(int(d["lag"]) for d in real)
            r0 = next(d for d in real if int(d["lag"]) == k)
            b0 = next((d for d in band if int(d["lag"]) == k), None)
            if b0 is not None:
                lines += ["", f"Drift of true values at lag {k} (RMS change per step, MC-corrected): real runs "
                              f"{float(r0['drift_per_step']):.4f}, bandit at its defaults {float(b0['drift_per_step']):.4f}"
                              + (f"; the bandit matches the real drift with trend = {matched[0]['trend']}, "
                                 f"drift = {matched[0]['drift']}." if matched else ".")]
    return "\n".join(lines)


DOCS = ROOT / "docs" / "estimators.md"


def write_docs(out: Path = DEFAULT_OUT, doc: Path = DOCS) -> str:
    """Replace the block between the markers of ``doc`` with :func:`docs_block` of ``out``'s summary and drift CSVs."""
    files = paths(out)
    summary = read_rows(files["summary"]) or None
    drift = read_rows(files["drift"]) or None
    block = docs_block(summary, drift)
    docblocks.write(doc, DOC_BLOCK, block)
    return block


def _print_summary(summary: list[dict]) -> None:
    print(f"{'G':>2} {'J':>3} {'estimator':<30} {'seeds':>5} {'value_mse':>10} {'±95%':>8}  vs paper's baseline")
    for r in summary:
        ci = f"{float(r['value_mse_ci95']):.4f}" if r["value_mse_ci95"] != "" else "—"
        vs = f"{r['baseline']}: {_pct(r)}" if r["ratio_to_baseline"] != "" else ""
        print(f"{r['rollouts_per_prompt']:>2} {r['prompt_reuse']:>3} {r['estimator']:<30} {r['seeds']:>5} "
              f"{float(r['value_mse']):10.4f} {ci:>8}  {vs}")


# --- main -------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> dict[str, list[dict]]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS), help="seeds (default 0 1 2)")
    ap.add_argument("--group-sizes", type=int, nargs="+", default=list(GROUP_SIZES), help="G values (default 1 2 4 8)")
    ap.add_argument("--reuses", type=int, nargs="+", default=list(REUSES), help="prompt reuse J values (default 1 4 10)")
    ap.add_argument("--steps", type=int, default=STEPS, help=f"training steps per run (default {STEPS})")
    ap.add_argument("--probe-every", type=int, default=PROBE_EVERY, help=f"default {PROBE_EVERY} (keep it coprime with J)")
    ap.add_argument("--probe-prompts", type=int, default=PROBE_PROMPTS, help=f"probed training prompts per probe step (default {PROBE_PROMPTS})")
    ap.add_argument("--probe-samples", type=int, default=PROBE_SAMPLES, help=f"MC samples per probed prompt (default {PROBE_SAMPLES})")
    ap.add_argument("--warmup", type=int, default=WARMUP, help=f"probe steps before this step are left out (default {WARMUP})")
    ap.add_argument("--quick", action="store_true", help="smoke run: seed 0, G 1 4, J 1 4, 4 steps, small probes; --out /tmp")
    ap.add_argument("--out", type=Path, default=None, help=f"per-run CSV (default {DEFAULT_OUT.relative_to(ROOT)}; --quick: /tmp)")
    ap.add_argument("--runs-dir", type=Path, default=None, help="keep the run directories here (default: a temporary folder)")
    ap.add_argument("--fresh", action="store_true", help="delete the results files first instead of resuming")
    ap.add_argument("--no-match", action="store_true", help="skip fitting the bandit's (trend, drift) to the real drift")
    ap.add_argument("--write-docs", action="store_true",
                    help="only regenerate the docs/estimators.md block from the committed summary and drift CSVs")
    args = ap.parse_args(argv)
    if args.write_docs:
        print(write_docs(args.out or DEFAULT_OUT))
        return {}
    settings = {"steps": args.steps, "probe_every": args.probe_every, "probe_prompts": args.probe_prompts,
                "probe_samples": args.probe_samples, "warmup": args.warmup}
    if args.quick:
        settings.update(QUICK)
        args.seeds, args.group_sizes, args.reuses = [0], [1, 4], [1, 4]
    out = args.out or (Path(tempfile.gettempdir()) / "value_mse_real_quick.csv" if args.quick else DEFAULT_OUT)
    files = paths(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.fresh:
        for p in files.values():
            p.unlink(missing_ok=True)
    from lab.config import TrainConfig

    base = TrainConfig()
    full = {"model": base.model, "task": base.task, "probe_set": "batch", "lr": base.lr, "temperature": base.temperature,
            "max_new_tokens": base.max_new_tokens, **settings}
    names = estimator_names()
    params = {n: resolved_params(n) for n in names}
    rows = read_rows(files["runs"])
    for r in rows[:1]:
        diff = [k for k in CHECKED if str(r.get(k)) != str(full[k])]
        if diff:
            ap.error(f"--out: {out} was written with other settings ({', '.join(f'{k}={r.get(k)}' for k in diff)}); "
                     f"rerun with --fresh to overwrite it, or choose another --out")
    done = done_runs(rows, names, params)
    kept = [r for r in rows if _key(r) in done and params.get(r["estimator"]) == r["estimator_params"]]
    truth = [r for r in read_rows(files["truth"]) if _key(r) in done]
    if len(kept) != len(rows) or files["truth"].is_file():  # drop the rows of interrupted or outdated runs
        if rows:
            write_rows(files["runs"], kept, run_fieldnames())
        write_rows(files["truth"], truth, TRUTH_FIELDS)
    todo = [(g, j, s) for j in args.reuses for g in args.group_sizes for s in args.seeds if (g, j, s) not in done]
    wanted = {(g, j, s) for j in args.reuses for g in args.group_sizes for s in args.seeds}
    if done & wanted:
        print(f"resuming: {len(done & wanted)} of {len(wanted)} runs already in {out}", flush=True)
    for g in args.group_sizes:  # fail before training on a G the sweep cannot run
        run_config(g, 1, 0, steps=settings["steps"], probe_every=settings["probe_every"],
                   probe_prompts=settings["probe_prompts"], probe_samples=settings["probe_samples"], runs_dir=Path("."))
    with tempfile.TemporaryDirectory(prefix="lab-value-mse-real-") as tmp:
        runs_dir = args.runs_dir or Path(tmp)
        for i, (g, j, s) in enumerate(todo):
            vrows, trows = measure_run(g, j, s, full, runs_dir)
            append_rows(files["truth"], trows, TRUTH_FIELDS)  # truth first: a run counts as done only with its value rows
            append_rows(files["runs"], vrows, run_fieldnames())
            print(f"[{i + 1}/{len(todo)}] G={g} J={j} seed={s}: {float(vrows[0]['elapsed_s']):.0f} s  "
                  + "  ".join(f"{r['estimator']}={float(r['value_mse']):.4f}" for r in vrows[:4]) + " ...", flush=True)
    rows = [r for r in read_rows(files["runs"]) if _key(r) in wanted]
    truth = [r for r in read_rows(files["truth"]) if _key(r) in wanted]
    summary = summarize(rows)
    results.write_derived(files["summary"], summary, SUMMARY_FIELDS, [files["runs"]])
    drift = drift_table(truth, steps=settings["steps"], probe_every=settings["probe_every"], match=not args.no_match)
    results.write_derived(files["drift"], drift, DRIFT_FIELDS, [files["truth"]])
    results.mark_derived(files["truth"], [files["runs"]])  # appended beside the runs file, from the same runs
    if summary:
        plot(summary, files["plot"])
    print()
    _print_summary(summary)
    print("\n" + docs_block(summary, drift))
    print("\n" + "\n".join(f"{k}: {p}" for k, p in files.items()))
    return {"rows": rows, "summary": summary, "drift": drift}


if __name__ == "__main__":
    main()
    sys.exit(0)
