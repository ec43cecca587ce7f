"""Value error of every estimator's baseline against the *exact* value, for G × prompt reuse J.

    .venv/bin/python benchmarks/value_mse.py            # writes data/results/value_mse.csv (resumes)
    .venv/bin/python benchmarks/value_mse.py --seeds 2 --steps 20 --out /tmp/v.csv
    .venv/bin/python benchmarks/value_mse.py --fresh    # start over (do this after changing estimator code)
    .venv/bin/python benchmarks/value_mse.py --calibrated   # the bandit fitted to the real runs' drift
    .venv/bin/python benchmarks/value_mse.py --write-docs   # regenerate its block in docs/estimators.md

Every estimator runs on the same drifting Bernoulli bandit (``lab.synthetic``): 64 prompts,
16 per step, G rollouts each, interleaved; logits trend upward and wander, so history helps
but goes stale. With prompt reuse J a block of 16 prompts is drawn every J steps and trained
on for J consecutive steps (KAE's regime: J = 10 on GSM8K/MATH, 8 on DAPO); J = 1 draws
fresh prompts every step. The true value of every rollout's prompt is known, so the error is
exact: MSE = mean over rollouts of (b − V)², averaged over the steps after ``--warmup``. All
estimators of one seed see the same batches (common random numbers), so comparisons are
paired by seed.

Rows are named by their parameters, ``name(param=value, ...)``, and the label *is* the spec:
the benchmark builds each row from its label, so a changed default can never relabel a row
(the sidecar records every row's fully resolved parameters; a test compares them with
today's code). ``reference=N`` is the harness's own option: N offline reference samples per
prompt at step 0 for estimators with an offline stage (``wants_reference``; default 8).
``posterior`` is the floor (``lab.synthetic.PosteriorBaseline``): the exact posterior mean
of V given everything a baseline may see without its own reward. No baseline can do better
in expectation; every row's ratio to it says how much room is left.

**The world.** ``--trend`` and ``--drift`` set the bandit's logit trend and random-walk step
(``DriftingBandit``'s parameters; defaults 0.03 and 0.05, the committed ``value_mse.csv``).
``--calibrated`` takes both (and the spread) from the fit of the bandit to the real runs' value
drift, the ``bandit_matched`` rows of ``data/results/value_mse_real_drift.csv``
(``benchmarks/value_mse_real.py``), and writes ``data/results/value_mse_calibrated.csv``: the
same rows, grid and seeds as the default file, over the real runs' horizon (31 steps, the first 3
left out, instead of 40 and 10; about 3 minutes on one idle core; ``--group-sizes`` and
``--reuses`` trim it). The floor uses the same world. A
file's world is in its sidecar (``world``, and in ``settings`` when it is not the default), so
resuming a file with another world is refused like any other change of settings.

``--long`` fits the world to the real runs' drift as they measured it: pairs of probes of one
prompt within a run, which are prompts inside a reuse block, being trained on. In those pairs
values climb steadily (mean squared change ∝ lag^1.7) while the population's mean value rises
slowly, which a shared trend and random walk cannot give at once; the fitted world has a gain
per trained step (``DriftingBandit``'s ``learn``) beside trend, per-prompt slope, walk and spread,
and is measured on the same probed prompts (``lab.analysis.bandit.probed_drift`` and
``ProbeDesign``, the real runs' G, J, probes and horizon). The fit, at every lag and moment beside
the random-walk calibration's, goes to ``data/results/value_mse_drift_fit.csv``; docs/claims.md
states it. The floor is told the training schedule, as it is told the trend. The fit takes
minutes, and the long file can only be resumed in the same world, so a rerun reuses the saved
fit while the real-run drift it was fitted to is unchanged (:func:`cached_fit`; ``--refit``
fits again).

Output: ``data/results/value_mse.csv`` (one row per estimator × G × J × seed, written as each
finishes, so an interrupted run resumes where it stopped) and ``value_mse.provenance.json``
beside it (settings, ``lab.provenance.collect()``, resolved parameters per row). The tables
in docs/estimators.md are ``table(read_csv(...))``; a test keeps them in sync.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import inspect
import json
import math
import time
from pathlib import Path

import torch
from tqdm import tqdm

from lab import estimators
from lab.estimators import RewardBatch
from lab.analysis import docblocks, results, specs, stats
from lab.analysis.bandit import (DriftingBandit, PosteriorBaseline, ProbeDesign, fit_drift, posterior_mse_run, probed_drift,
                                 stretch, value_mse_run)

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "data" / "results" / "value_mse.csv"
CALIBRATED_OUT = ROOT / "data" / "results" / "value_mse_calibrated.csv"
CALIBRATED_STEPS, CALIBRATED_WARMUP = 31, 3
"""``--calibrated``'s horizon: the real runs' (``benchmarks/value_mse_real.py``'s STEPS and WARMUP; a test keeps
them equal), so the calibrated bandit is compared over the steps its drift was measured on."""
DRIFT_RESULTS = "value_mse_real_drift"
"""The results file (``lab.results``) whose ``bandit_matched`` rows hold the fitted (trend, drift)."""
LONG_OUT = ROOT / "data" / "results" / "value_mse_long.csv"
DRIFT_FIT_OUT = ROOT / "data" / "results" / "value_mse_drift_fit.csv"
LONG_STEPS, LONG_WARMUP = 300, 30
"""``--long``: the world fitted to the real runs' drift at every lag (with its gain per trained step), stretched
from their 31 steps to 300 (``lab.analysis.bandit.stretch``: the same value path, sampled 10× finer), so that KAE's
h·t window spans tens of steps as in the paper; the first 30 steps are left out."""
BASIS_M = (4, 8, 16, 32)
BASIS_BETAS = {"mean": (1000.0,), "grid": (0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 1000.0), "nomean": (0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)}
"""BASIS's β grids swept on the long bandit: the mean prior alone (β = 1000), the lab's default grid, the grid
without the mean prior."""


def long_cells() -> list[tuple[str, int, int]]:
    """(label, G, J) of the long sweep: KAE at J ∈ {1, 4, 8, 10} against GRPO and RLOO (G = 2, 4), KRPO at
    G ∈ {2, 4, 8, 12}, BASIS over m × β grids at G = 1 against REINFORCE++ and GRPO G = 8, and every floor."""
    cells = []
    for g in (2, 4):
        for j in (1, 4, 8, 10):
            kae = [f"kae(h={h})" for h in KAE_H] if j >= 8 else [KAE_DEFAULT]  # h is picked where it is judged
            cells += [(lab, g, j) for lab in ("grpo", *(["rloo"] if j == 10 else []), *kae, f"{POSTERIOR}(reference=0)")]
    for g in (2, 4, 8, 12):
        cells += [("krpo", g, 1)] + ([("grpo", g, 1), (f"{POSTERIOR}(reference=0)", g, 1)] if g > 4 else [])
    cells += [("reinforce_plus_plus", 1, 1), (BASIS_DEFAULT, 1, 1), (BASIS_ZERO, 1, 1), (BASIS_ALWAYS, 1, 1)]
    for m in BASIS_M:
        cells.append((f"{POSTERIOR}(reference={m})" if m != REFERENCE else POSTERIOR, 1, 1))
        for betas in BASIS_BETAS.values():
            cells.append((specs.format("basis", {"betas": betas, "reference": m}), 1, 1))
    return list(dict.fromkeys(cells))


def drift_target(root: Path | None = None) -> dict:
    """What the real runs measured, in ``lab.analysis.bandit.probed_drift``'s layout: the pooled drift at every lag
    ({lag: (msd, mean change per step)}), the level (mean V(1 − V) after the warmup), the climb of the probed
    values over the run and their variance at step 0 (both from ``value_mse_real_truth.csv``, MC-corrected)."""
    df = results.read(DRIFT_RESULTS, root)
    r = df[(df["source"].astype(str) == "real") & (df["rollouts_per_prompt"].astype(str) == "all")]
    t = results.read("value_mse_real_truth", root)
    by = t.groupby("step")["truth"].mean()
    first = t[t["step"] == t["step"].min()]
    return {"lags": {int(x.lag): (float(x.msd), float(x.mean_change_per_step)) for x in r.itertuples()},
            "level": (real_levels(root) or {}).get("mean_var"),
            "climb": float(by.iloc[-1] - by.iloc[0]) / max(int(by.index[-1] - by.index[0]), 1),
            "start_var": float(first["truth"].var() - (first["truth_se"] ** 2).mean())}


def fitted_world(root: Path | None = None) -> dict[str, float]:
    """The (spread, trend, learn, slope, drift) fitted to the real runs' drift at every lag, level, climb and
    start variance, measured on the bandit the way the real runs measured theirs (``probed_drift``)."""
    return fit_drift(drift_target(root), ProbeDesign())


DRIFT_FIT_FIELDS = ["moment", "lag", "real", "fit", "random_walk", "spread", "trend", "learn", "slope", "drift"]
WORLD_KEYS = ("spread", "trend", "learn", "slope", "drift")


def cached_fit(root: Path | None = None) -> dict[str, float] | None:
    """The world saved in ``value_mse_drift_fit.csv`` when it was fitted to today's target, else None.

    The fit takes minutes (``fit_drift``: Nelder–Mead from 4 starts), and ``--long`` needs the same
    world to resume its file (the world is part of the file's settings), so a rerun reuses the saved
    fit when every ``real`` value in the file equals what :func:`drift_target` gives today (to the
    file's 6 digits): the real runs it was fitted to have not changed. ``fit_drift`` rounds its
    answer to 4 digits, which the file keeps exactly. ``--refit`` fits again regardless.
    """
    rows = results.read_rows(results.path("value_mse_drift_fit", root))
    if not rows or any(k not in rows[0] for k in WORLD_KEYS):
        return None
    target = drift_target(root)
    want = {("msd", str(k)): v[0] for k, v in target["lags"].items()}
    want |= {("mean_change_per_step", str(k)): v[1] for k, v in target["lags"].items()}
    want |= {(m, ""): target[m] for m in ("level", "climb", "start_var") if target.get(m) is not None}
    try:
        have = {(r["moment"], str(r["lag"])): float(r["real"]) for r in rows}
        world = {k: float(rows[0][k]) for k in WORLD_KEYS}
    except (KeyError, ValueError):
        return None
    if set(have) != set(want) or any(abs(have[k] - round(v, 6)) > 1e-9 for k, v in want.items()):
        return None
    if any(float(r[k]) != world[k] for r in rows for k in WORLD_KEYS) or not all(math.isfinite(v) for v in world.values()):
        return None
    return world


def drift_fit_rows(world: dict, root: Path | None = None) -> list[dict]:
    """The fit shown at every lag and moment: the real value, the fitted world's and the random-walk calibration's
    (``bandit_matched``: trend and drift only), all three measured as the real runs are (``probed_drift``)."""
    target, design = drift_target(root), ProbeDesign()  # the real runs' design (a test keeps them equal)
    fit = probed_drift(world, design, seeds=range(SEEDS))
    rw = probed_drift(calibrated_world(root), design, seeds=range(SEEDS))
    rows = []
    for k, (msd, mc) in target["lags"].items():
        rows.append({"moment": "msd", "lag": k, "real": msd, "fit": fit["lags"][k][0], "random_walk": rw["lags"][k][0]})
        rows.append({"moment": "mean_change_per_step", "lag": k, "real": mc, "fit": fit["lags"][k][1],
                     "random_walk": rw["lags"][k][1]})
    for m in ("level", "climb", "start_var"):
        if target.get(m) is not None:
            rows.append({"moment": m, "lag": "", "real": target[m], "fit": fit[m], "random_walk": rw[m]})
    w = {k: world.get(k, 0.0) for k in ("spread", "trend", "learn", "slope", "drift")}
    return [{**r, **{k: round(v, 6) for k, v in r.items() if isinstance(v, float)}, **w} for r in rows]


GROUP_SIZES = (1, 2, 4, 8, 16)
REUSES = (1, 2, 4, 8, 10)
FIELDS = ["estimator", "group_size", "reuse", "seed", "value_mse"]
POSTERIOR = "posterior"
REFERENCE = 8
"""Offline reference samples per prompt for rows that take them, unless a row says ``reference=N``."""

KAE_H = (0.2, 0.5, 1.0, 2.0, 5.0)
ROWS = (
    "grpo", "dr_grpo", "rloo", "reinforce_plus_plus", "reinforce_plus_plus_baseline", "krpo", "krpo_invariant",
    *(f"kae(h={h})" for h in KAE_H),
    "basis(fallback=prior, online_prior=missing, beta_selection=crossfit)",
    "basis(fallback=zero, online_prior=missing, beta_selection=crossfit)",
    "basis(fallback=prior, online_prior=always, beta_selection=crossfit)",
    "basis(fallback=prior, online_prior=missing, beta_selection=batch)",
    "blend(decay=0.95)", "blend(decay=0.95, reference=0)",
    POSTERIOR, f"{POSTERIOR}(reference=0)",
)
"""Every row of the benchmark, by label. BASIS rows name all three reading choices (fallback,
prior source, β selection); KAE's bandwidth h is swept (the paper's value is not known); the
two floors match the two amounts of offline information (with and without reference samples)."""

SEEDS = 8
"""Seeds of the committed results (95% intervals use the t distribution with SEEDS − 1 df)."""

CLAIM_J = 10
"""The reuse at which KAE's claim is checked (the paper's J for GSM8K/MATH)."""


# --- the world ----------------------------------------------------------------------------------
def default_world() -> dict[str, float]:
    """The bandit's own defaults: {"spread", "trend", "drift"} of ``DriftingBandit``.

    >>> default_world()
    {'spread': 1.5, 'trend': 0.03, 'drift': 0.05}
    """
    sig = inspect.signature(DriftingBandit.__init__).parameters
    return {k: float(sig[k].default) for k in ("spread", "trend", "drift")}


def calibrated_world(root: Path | None = None) -> dict[str, float]:
    """The (spread, trend, drift) fitted to the real runs' value drift (``value_mse_real_drift.csv``, source
    ``bandit_matched``); a clear error when that file or those rows are missing."""

    try:
        df = results.read(DRIFT_RESULTS, root)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"--calibrated: {e}; make it with `.venv/bin/python benchmarks/value_mse_real.py` "
                                "(it fits the bandit to the real drift), or pass --trend and --drift yourself") from None
    m = df[df["source"].astype(str) == "bandit_matched"] if "source" in df.columns else df.iloc[0:0]
    if m.empty:
        raise ValueError(f"--calibrated: data/results/{DRIFT_RESULTS}.csv has no source=bandit_matched rows (it was made "
                         "with --no-match); rerun benchmarks/value_mse_real.py without --no-match, or pass --trend/--drift")
    r = m.iloc[0]
    world = {k: float(r[k]) for k in ("trend", "drift")}
    spread = float(r["spread"]) if "spread" in m.columns and str(r["spread"]) not in ("", "nan") else default_world()["spread"]
    return {"spread": spread, **world}


def drift_summary(root: Path | None = None) -> dict:
    """The drift rows the calibration rests on, shortest lag: real (all G pooled), bandit at defaults, bandit matched.

    Kept in the calibrated file's sidecar, so its docs line stays true to the run it describes.
    """

    df = results.read(DRIFT_RESULTS, root)
    out = {}
    for source in ("real", "bandit", "bandit_matched"):
        d = df[df["source"].astype(str) == source]
        if source == "real" and "rollouts_per_prompt" in d.columns:
            d = d[d["rollouts_per_prompt"].astype(str) == "all"]
        if not d.empty:
            r = d.sort_values("lag").iloc[0]
            out[source] = {"lag": int(r["lag"]), "drift_per_step": float(r["drift_per_step"]),
                           "mean_change_per_step": float(r["mean_change_per_step"])}
    return out


def world_levels(world: dict, *, steps: int, warmup: int, seeds=range(SEEDS), n_prompts: int = 64) -> dict:
    """Where the bandit's values sit over the averaged steps (``warmup`` .. ``steps`` − 1, all prompts, ``seeds``):
    mean V, mean V(1 − V) (the reward variance every baseline's error scales with) and the share of values
    outside [0.01, 0.99] (saturated: rewards nearly certain).

    >>> lv = world_levels(default_world(), steps=2, warmup=0, seeds=[0], n_prompts=4)
    >>> sorted(lv), 0 < lv["mean_v"] < 1
    (['mean_v', 'mean_var', 'saturated'], True)
    """
    vs = []
    for seed in seeds:
        b = DriftingBandit(n_prompts, seed=seed, **world)
        vs.append(torch.stack([b.values(t) for t in range(warmup, steps)]))  # (steps − warmup, n_prompts)
    v = torch.stack(vs)  # (seeds, steps − warmup, n_prompts)
    return {"mean_v": float(v.mean()), "mean_var": float((v * (1 - v)).mean()),
            "saturated": float(((v < 0.01) | (v > 0.99)).double().mean())}


def real_levels(root: Path | None = None) -> dict | None:
    """The same levels for the real runs' probe truth (``value_mse_real_truth.csv``, probe steps >= the runs' warmup)."""

    try:
        t = results.read("value_mse_real_truth", root)
        runs = results.read("value_mse_real", root)
    except FileNotFoundError:
        return None
    warmup = int(runs["warmup"].iloc[0]) if "warmup" in runs.columns and len(runs) else 0
    v = t[t["step"] >= warmup]["truth"].astype(float)
    if v.empty:
        return None
    return {"mean_v": float(v.mean()), "mean_var": float((v * (1 - v)).mean()),
            "saturated": float(((v < 0.01) | (v > 0.99)).mean()), "steps": f"{warmup}–{int(t['step'].max())}",
            "probe_values": int(len(v))}


# --- labels --------------------------------------------------------------------------------------
def parse_label(label: str) -> tuple[str, dict, int]:
    """``"basis(fallback=zero, reference=0)"`` -> ("basis", {"fallback": "zero"}, 0): ``lab.analysis.specs.parse``
    with the harness's own ``reference=N`` option split off.

    >>> parse_label("kae(h=0.5)")
    ('kae', {'h': 0.5}, 8)
    >>> parse_label("blend(decay=0.95, reference=0)")
    ('blend', {'decay': 0.95}, 0)
    """
    name, params = specs.parse(label)
    reference = int(params.pop("reference", REFERENCE))
    return name, params, reference


def _make(label: str):
    name, params, _ = parse_label(label)
    return estimators.get(name, **params)


def resolved_params(label: str) -> dict:
    """Every constructor parameter of the row's estimator, defaults filled in (JSON-ready).

    >>> resolved_params("kae(h=0.5)")["h"], resolved_params("kae(h=0.5)")["kernel"]
    (0.5, 'triangular')
    """
    name, params, reference = parse_label(label)
    if name == POSTERIOR:
        return {"reference": reference}
    obj = estimators.ESTIMATORS.get(name)
    is_class = isinstance(obj, type)
    sig = inspect.signature(obj.__init__ if is_class else obj)
    skip = 1 if is_class else 2
    out = {p.name: p.default for p in list(sig.parameters.values())[skip:] if p.default is not inspect.Parameter.empty}
    out.update(params)
    if getattr(obj, "wants_reference", False):
        out["reference"] = reference
    return json.loads(json.dumps(out, default=list))


# --- the measurement -----------------------------------------------------------------------------
def run_one(label: str, group_size: int, reuse: int, seed: int, steps: int, warmup: int,
            world: dict | None = None) -> float:
    """Mean value MSE over steps >= warmup of one row on one seed, on the bandit ``world`` (default: its defaults)."""
    name, params, reference = parse_label(label)
    world = world or {}
    if name == POSTERIOR:
        r = posterior_mse_run(group_size, steps=steps, reuse=reuse, seed=seed, reference_samples=reference, **world)
    else:
        r = value_mse_run(name, group_size, steps=steps, reuse=reuse, seed=seed, reference_samples=reference,
                          make=lambda n: estimators.get(n, **params), **world)
    return float(r.mse[warmup:].mean())


def jobs(labels=ROWS, group_sizes=GROUP_SIZES, reuses=REUSES, seeds=range(SEEDS)) -> list[tuple[str, int, int, int]]:
    """(label, G, J, seed) in the file's canonical order."""
    return [(lab, g, j, s) for j in reuses for g in group_sizes for lab in labels for s in seeds]


def run(seeds: int = SEEDS, steps: int = 40, warmup: int = 10, group_sizes=GROUP_SIZES, reuses=REUSES, labels=ROWS,
        seed_list=None, progress: bool = True, out: Path | None = None, done: dict | None = None,
        world: dict | None = None, cells: list[tuple[str, int, int]] | None = None) -> list[dict]:
    """Long-format rows (``FIELDS``); with ``out`` each row is appended to that CSV as it finishes.

    ``world``: the bandit's {"spread", "trend", "drift"} (default: its defaults). ``done`` maps (label, G, J, seed) to an already measured value (from a resumed file);
    those jobs are not run again.
    """
    if not 0 <= warmup < steps:
        raise ValueError(f"warmup: expected 0 <= warmup < steps ({steps}), got {warmup}")
    done = done or {}
    todo = (jobs(labels, group_sizes, reuses, seed_list if seed_list is not None else range(seeds)) if cells is None
            else [(lab, g, j, s) for lab, g, j in cells for s in (seed_list if seed_list is not None else range(seeds))])
    rows = []
    with one_thread():
        for label, g, j, s in tqdm(todo, desc="value MSE", disable=not progress):
            key = (label, g, j, s)
            if key in done:
                value = done[key]
            else:
                value = run_one(label, g, j, s, steps, warmup, *([world] if world else []))
                if out is not None:
                    results.append_rows(out, [_csv_row({"estimator": label, "group_size": g, "reuse": j, "seed": s,
                                                        "value_mse": value})], FIELDS)
            rows.append({"estimator": label, "group_size": g, "reuse": j, "seed": s, "value_mse": value})
    return rows


@contextlib.contextmanager
def one_thread():
    """Run torch on one intra-op thread inside the block (tiny tensors: threads only contend)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@functools.lru_cache(maxsize=None)  # deterministic; table() asks once per row and is called more than once
def sees_own_reward(label: str, trials: int = 20) -> bool:
    with one_thread():
        return _sees_own_reward(label, trials)


def _sees_own_reward(label: str, trials: int) -> bool:
    """Whether a rollout's own reward can move its own baseline (checked, not declared).

    Flips one rollout's reward in random batches (groups of 4, some history) and looks at that
    rollout's baseline. Such a baseline lowers value MSE partly by copying the reward, and it
    biases the policy gradient; the table marks it.
    """
    name, params, reference = parse_label(label)
    gen = torch.Generator().manual_seed(0)
    for _ in range(trials):
        sim = DriftingBandit(8, seed=int(torch.randint(1000, (1,), generator=gen)))
        outs = []
        for flip in (False, True):
            est = PosteriorBaseline.for_bandit(sim) if name == POSTERIOR else estimators.get(name, **params)
            if hasattr(est, "set_reference") and reference > 0:
                ref, _ = sim.sample(torch.arange(8), reference, 0, generator=torch.Generator().manual_seed(1))
                est.set_reference(ref.prompt_ids, ref.rewards)
            hist, _ = sim.sample(torch.arange(8), 4, 0, generator=torch.Generator().manual_seed(2))
            est(hist)
            batch, _ = sim.sample(torch.arange(8), 4, 1, interleave=True, generator=torch.Generator().manual_seed(3))
            r = batch.rewards.clone()
            if flip:
                r[0] = 1.0 - r[0]
            outs.append(float(est(RewardBatch(r, batch.prompt_ids, step=1)).baselines[0]))
        if abs(outs[0] - outs[1]) > 1e-9:  # leave-one-out by subtraction moves the last bits only
            return True
    return False


# --- statistics ---------------------------------------------------------------------------------
def _by_key(rows: list[dict]) -> dict[tuple[str, int, int], dict[int, float]]:
    by: dict[tuple[str, int, int], dict[int, float]] = {}
    for r in rows:
        by.setdefault((r["estimator"], int(r["group_size"]), int(r["reuse"])), {})[int(r["seed"])] = float(r["value_mse"])
    return by


def ratio_ci(rows: list[dict], a: tuple[str, int, int], b: tuple[str, int, int]) -> tuple[float, float, float, int]:
    """Paired ratio MSE_a / MSE_b over seeds (``lab.analysis.stats.paired_ratio``: geometric mean of the per-seed
    ratios, 95% interval on the log): (ratio, low, high, seeds). ``a`` and ``b`` are (label, G, J).

    >>> rows = [{"estimator": e, "group_size": 1, "reuse": 1, "seed": s, "value_mse": v}
    ...         for e, vs in (("x", [1.0, 2.0, 3.0]), ("y", [2.0, 4.0, 6.0])) for s, v in enumerate(vs)]
    >>> ratio_ci(rows, ("x", 1, 1), ("y", 1, 1))
    (0.5, 0.5, 0.5, 3)
    """
    by = _by_key(rows)
    xa, xb = by.get(a, {}), by.get(b, {})
    seeds = sorted(set(xa) & set(xb))
    if not seeds:
        raise KeyError(f"no common seeds for {a} and {b}")
    e = stats.paired_ratio([xa[s] for s in seeds], [xb[s] for s in seeds])
    return e.value, e.low, e.high, len(seeds)


def summarize(rows: list[dict]) -> dict[tuple[str, int, int], tuple[float, float]]:
    """(label, G, J) -> (mean over seeds, standard error over seeds)."""
    out = {}
    for key, per_seed in _by_key(rows).items():
        m, lo, hi, n = stats.mean_ci(list(per_seed.values()))
        out[key] = (m, stats.se_from_half_width(hi - m, n))
    return out


def floor_of(label: str) -> str:
    """The floor matching a row's offline information: the posterior with the same reference samples."""
    name, _, reference = parse_label(label)
    wants = name == POSTERIOR or getattr(estimators.ESTIMATORS.get(name), "wants_reference", False)
    seen = reference if wants else 0  # reference samples the row actually gets
    return POSTERIOR if seen == REFERENCE else f"{POSTERIOR}(reference={seen})"


def _pct(r: tuple[float, float, float, int]) -> str:
    mean, lo, hi, _ = r
    return f"{100 * (mean - 1):+.0f}% [{100 * (lo - 1):+.0f}, {100 * (hi - 1):+.0f}]"


def _default_mark(label: str) -> str:
    """' (default)' for the row that is its estimator's registered default, among several rows of it."""
    name, params, reference = parse_label(label)
    if name == POSTERIOR or sum(parse_label(x)[0] == name for x in ROWS) < 2:
        return ""
    obj = estimators.ESTIMATORS.get(name)
    sig = inspect.signature(obj.__init__ if isinstance(obj, type) else obj)
    defaults = {p.name: p.default for p in sig.parameters.values()}
    same = all(defaults.get(k) == v for k, v in params.items()) and reference == REFERENCE
    return " (default)" if same else ""


# --- the tables ----------------------------------------------------------------------------------
KAE_DEFAULT = "kae(h=0.2)"
BASIS_DEFAULT = "basis(fallback=prior, online_prior=missing, beta_selection=crossfit)"
BASIS_ZERO = "basis(fallback=zero, online_prior=missing, beta_selection=crossfit)"
BASIS_ALWAYS = "basis(fallback=prior, online_prior=always, beta_selection=crossfit)"


def claims_table(rows: list[dict]) -> str:
    """Each seed method against the baseline its paper compares with, as % change in value MSE (95% CI)."""
    stats = summarize(rows)
    have = lambda k: k in stats  # noqa: E731
    lines = ["| claim (paper's number) | lab's comparison | J | change in value MSE, mean [95% CI] | seeds |",
             "|---|---|---|---|---|"]
    best_h = {}
    for g in (2, 4):
        cand = [lab for lab in ROWS if lab.startswith("kae(") and have((lab, g, CLAIM_J))]
        if cand:
            best_h[g] = min(cand, key=lambda lab: stats[(lab, g, CLAIM_J)][0])
    for g in (2, 4):
        for j in (1, 8, CLAIM_J):
            if have((KAE_DEFAULT, g, j)) and have(("grpo", g, j)):
                r = ratio_ci(rows, (KAE_DEFAULT, g, j), ("grpo", g, j))
                lines.append(f"| KAE: value error 64–71% below GRPO's group mean | `{KAE_DEFAULT}` vs `grpo`, G = {g} | {j} | {_pct(r)} | {r[3]} |")
        if g in best_h and best_h[g] != KAE_DEFAULT:
            r = ratio_ci(rows, (best_h[g], g, CLAIM_J), ("grpo", g, CLAIM_J))
            lines.append(f"| (same, best h of the sweep: picked on these seeds) | `{best_h[g]}` vs `grpo`, G = {g} | {CLAIM_J} | {_pct(r)} | {r[3]} |")
    for lab in (BASIS_DEFAULT, BASIS_ZERO, BASIS_ALWAYS):
        for j in (1, CLAIM_J):
            if have((lab, 1, j)) and have(("reinforce_plus_plus", 1, j)):
                r = ratio_ci(rows, (lab, 1, j), ("reinforce_plus_plus", 1, j))
                lines.append(f"| BASIS: value MSE 69% below REINFORCE++ (G = 1) | `{lab}` vs `reinforce_plus_plus`, G = 1 | {j} | {_pct(r)} | {r[3]} |")
    for lab in (BASIS_DEFAULT, BASIS_ZERO, BASIS_ALWAYS):
        for j in (1, CLAIM_J):
            if have((lab, 1, j)) and have(("grpo", 8, j)):
                r = ratio_ci(rows, (lab, 1, j), ("grpo", 8, j))
                lines.append(f"| BASIS: 1 rollout below the group mean of 8 | `{lab}` at G = 1 vs `grpo` at G = 8 | {j} | {_pct(r)} | {r[3]} |")
    return "\n".join(lines)


def bandwidth_table(rows: list[dict]) -> str:
    """KAE's h swept: % change in value MSE against GRPO's group mean, per G (2, 4) and J."""
    stats = summarize(rows)
    reuses = sorted({k[2] for k in stats})
    lines = ["| KAE bandwidth | G | " + " | ".join(f"J = {j}" for j in reuses) + " |", "|---|---|" + "---|" * len(reuses)]
    for g in (2, 4):
        for lab in (x for x in ROWS if x.startswith("kae(")):
            if not all((lab, g, j) in stats and ("grpo", g, j) in stats for j in reuses):
                continue
            cells = [_pct(ratio_ci(rows, (lab, g, j), ("grpo", g, j))) for j in reuses]
            lines.append(f"| `{lab}`{_default_mark(lab)} | {g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def value_table(rows: list[dict], reuse: int) -> str:
    """One J: value MSE (mean over seeds) and its ratio to the matching floor, one column per G.

    The lowest estimator per column is in bold; † marks a baseline that sees its own reward.
    """
    stats = summarize(rows)
    labels = [x for x in ROWS if any(k[0] == x and k[2] == reuse for k in stats)]
    sizes = sorted({k[1] for k in stats if k[2] == reuse})
    best = {g: min(stats[(n, g, reuse)][0] for n in labels if parse_label(n)[0] != POSTERIOR and (n, g, reuse) in stats)
            for g in sizes}
    lines = ["| estimator | " + " | ".join(f"G = {g}" for g in sizes) + " |", "|---|" + "---|" * len(sizes)]
    for n in labels:
        cells = []
        for g in sizes:
            if (n, g, reuse) not in stats:
                cells.append("—")
                continue
            mean = stats[(n, g, reuse)][0]
            if parse_label(n)[0] == POSTERIOR:
                cells.append(f"{mean:.4f}")
                continue
            fl = floor_of(n)
            ratio = ratio_ci(rows, (n, g, reuse), (fl, g, reuse))[0] if (fl, g, reuse) in stats else math.nan
            cell = f"{mean:.4f} ({ratio:.1f}×)"
            cells.append(f"**{cell}**" if mean == best[g] else cell)
        mark = " †" if sees_own_reward(n) else ""
        lines.append(f"| `{n}`{_default_mark(n)}{mark} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def table(rows: list[dict]) -> str:
    """All the markdown the docs show: claims, KAE's bandwidth sweep, then one value table per J."""
    reuses = sorted({int(r["reuse"]) for r in rows})
    parts = ["**Each seed method against its paper's baseline** (per-seed ratio of value MSE, paired by seed; "
             "95% t-interval over seeds):", "", claims_table(rows), "",
             "**KAE's bandwidth h** (window h·t steps), change in value MSE against `grpo`'s group mean:", "",
             bandwidth_table(rows)]
    for j in reuses:
        parts += ["", f"**Prompt reuse J = {j}**: value MSE (ratio to the floor `posterior` with the same offline "
                      "information):", "", value_table(rows, j)]
    return "\n".join(parts)


DOCS = ROOT / "docs" / "estimators.md"
CALIBRATED_BLOCK = "value-mse-calibrated"
"""The docs/estimators.md block (``lab.analysis.docblocks``) that ``--write-docs`` regenerates."""
CALIBRATED_PLACEHOLDER = ("*Not yet run: `python benchmarks/value_mse.py --calibrated` (after `benchmarks/value_mse_real.py`); "
                          "this block is generated from its CSV and sidecar (`--write-docs`).*")


def headline(rows: list[dict], default_rows: list[dict] | None = None) -> str:
    """The calibrated table's headline ratios, each with the default bandit's in brackets when ``default_rows`` has it."""
    def one(a, b, times=False):
        fmt = (lambda q: f"{q:.1f}×") if times else (lambda q: f"{100 * (q - 1):+.0f}%")  # noqa: E731
        try:
            text = fmt(ratio_ci(rows, a, b)[0])
        except KeyError:
            return ""
        if default_rows:
            with contextlib.suppress(KeyError):
                text += f" (default bandit {fmt(ratio_ci(default_rows, a, b)[0])})"
        return text

    parts = []
    for g in (2, 4):
        t = one((KAE_DEFAULT, g, CLAIM_J), ("grpo", g, CLAIM_J))
        if t:
            parts.append(f"`{KAE_DEFAULT}` against `grpo` at G = {g}, J = {CLAIM_J}: {t}")
    t = one((BASIS_DEFAULT, 1, 1), ("reinforce_plus_plus", 1, 1))
    if t:
        parts.append(f"BASIS's default against `reinforce_plus_plus` at G = 1, J = 1: {t}")
    t = one((BASIS_DEFAULT, 1, 1), (POSTERIOR, 1, 1), times=True)
    if t:
        parts.append(f"that BASIS row's error is {t} its floor `posterior`")
    return ("**Headline ratios** (change in value MSE, mean over seeds): " + "; ".join(parts) + ".") if parts else ""


def calibrated_block(rows: list[dict] | None, meta: dict | None, default_rows: list[dict] | None = None) -> str:
    """The docs block of the calibrated bandit: the drift it was fitted to, its world and levels, the headline
    ratios (against the default bandit's, ``default_rows``) and the claims table.

    >>> calibrated_block(None, None) == CALIBRATED_PLACEHOLDER
    True
    """
    if not rows or not meta:
        return CALIBRATED_PLACEHOLDER
    w, st = meta["world"], meta["settings"]
    drift = meta.get("calibrated_from", {}).get("drift", {})
    real, band, matched = (drift.get(k) for k in ("real", "bandit", "bandit_matched"))
    d = default_world()
    head = []
    if real and band and matched:
        head.append(f"True values on the real runs move {real['drift_per_step']:.4f} per step (RMS change over "
                    f"{real['lag']} steps, all G pooled; mean change {real['mean_change_per_step']:+.4f} per step), "
                    f"against {band['drift_per_step']:.4f} on the bandit at its defaults (trend {d['trend']}, drift "
                    f"{d['drift']}): {real['drift_per_step'] / band['drift_per_step']:.1f}× faster. The fitted bandit "
                    f"(`{meta['calibrated_from']['file']}`, source `bandit_matched`) moves {matched['drift_per_step']:.4f}.")
    lv, rl = meta.get("levels", {}), meta.get("calibrated_from", {}).get("real_levels")
    if lv and rl:
        def desc(x):
            return (f"mean V {x['mean_v']:.2f}, mean V(1 − V) {x['mean_var']:.3f}, {100 * x['saturated']:.0f}% of values "
                    "outside [0.01, 0.99]")

        head.append(f"Levels over the averaged steps: the calibrated bandit has {desc(lv['world'])}; the default "
                    f"bandit {desc(lv['default_world'])}; the real runs' probe truth (steps {rl['steps']}) {desc(rl)}.")
        if lv["world"]["saturated"] > rl["saturated"] + 0.2:
            head.append("So the fit matches the rate, not the level: the bandit's trend is the same for every prompt and "
                        "never stops, so matched to the real per-prompt drift it pushes most values to the edge, where "
                        "rewards are nearly certain and every error is small. Read these ratios with that in mind.")
    head.append(f"**Calibrated world:** trend = {w['trend']:g}, drift = {w['drift']:g}, spread = {w['spread']:g}; "
                f"G ∈ {{{', '.join(map(str, st['group_sizes']))}}} × J ∈ {{{', '.join(map(str, st['reuses']))}}} × "
                f"{st['seeds']} seeds, {st['steps']} steps (first {st['warmup']} left out), the floor in the same world "
                f"(`data/results/{CALIBRATED_OUT.name}`).")
    parts = [" ".join(head), "", headline(rows, default_rows), "",
             "**Each seed method against its paper's baseline**, calibrated bandit (per-seed ratio of value MSE, paired "
             "by seed; 95% t-interval over seeds; the full tables per J are printed by the run):", "", claims_table(rows)]
    return "\n".join(parts)


def write_docs(out: Path = CALIBRATED_OUT, doc: Path = DOCS) -> str:
    """Replace the calibrated block of ``doc`` with :func:`calibrated_block` of ``out`` and its sidecar."""
    rows = read_csv(out) if out.exists() else None
    meta = results.read_sidecar(out) or None
    block = calibrated_block(rows, meta, read_csv(DEFAULT_OUT) if DEFAULT_OUT.exists() else None)
    docblocks.write(doc, CALIBRATED_BLOCK, block)
    return block


# --- files ---------------------------------------------------------------------------------------
def _csv_row(r: dict) -> dict:
    return {**r, "value_mse": f"{r['value_mse']:.10f}"}


def write_csv(rows: list[dict], path: Path) -> None:
    """The whole file at once, atomically (``lab.analysis.results.write_csv``)."""
    results.write_csv(path, [_csv_row(r) for r in rows], FIELDS)


TYPES = {"group_size": int, "reuse": int, "seed": int, "value_mse": float}


def read_csv(path: Path) -> list[dict]:
    """Rows of a results file (``lab.analysis.results.read_rows``); a torn last line is skipped."""
    return [{k: r[k] for k in FIELDS} for r in results.read_rows(path, TYPES)]


def sidecar_path(out: Path) -> Path:
    return results.sidecar_path(out)


def _settings(args, world: dict) -> dict:
    """What a file was made with; the world only when it is not the default (older sidecars never had it)."""
    out = {"seeds": args.seeds, "steps": args.steps, "warmup": args.warmup, "group_sizes": list(args.group_sizes),
           "reuses": list(args.reuses), "n_prompts": 64, "prompts_per_step": 16}
    if world != default_world():
        out["world"] = world
    return out


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=SEEDS, help=f"independent runs per (row, G, J) (default {SEEDS})")
    ap.add_argument("--steps", type=int, default=None,
                    help=f"training steps per run (default 40; with --calibrated {CALIBRATED_STEPS}, the real runs' horizon)")
    ap.add_argument("--warmup", type=int, default=None,
                    help=f"first steps left out of the average (default 10; with --calibrated {CALIBRATED_WARMUP})")
    ap.add_argument("--out", type=Path, default=None, help=f"CSV to write (default {DEFAULT_OUT.relative_to(ROOT)}; "
                                                            f"with --calibrated {CALIBRATED_OUT.relative_to(ROOT)})")
    ap.add_argument("--fresh", action="store_true", help="start over instead of resuming an existing --out")
    ap.add_argument("--group-sizes", type=int, nargs="+", default=list(GROUP_SIZES), help="G values (default 1 2 4 8 16)")
    ap.add_argument("--reuses", type=int, nargs="+", default=list(REUSES), help="prompt reuse J values (default 1 2 4 8 10)")
    d = default_world()
    ap.add_argument("--trend", type=float, default=None, help=f"the bandit's logit gain per step (default {d['trend']})")
    ap.add_argument("--drift", type=float, default=None,
                    help=f"std of each prompt's own logit step, the random walk (default {d['drift']})")
    ap.add_argument("--spread", type=float, default=None, help=f"std of the initial logits (default {d['spread']})")
    ap.add_argument("--write-docs", action="store_true",
                    help="only regenerate the calibrated block of docs/estimators.md from its committed CSV and sidecar")
    ap.add_argument("--long", action="store_true",
                    help=f"the world fitted to the real drift at every lag, stretched to {LONG_STEPS} steps; the KAE J, KRPO "
                         f"G = 12 and BASIS m × β rows (default --out {LONG_OUT.relative_to(ROOT)}; ~8 min on one core)")
    ap.add_argument("--refit", action="store_true",
                    help="--long: fit the world again even when the saved fit matches today's real-run drift")
    ap.add_argument("--table", action="store_true", help="only print the tables of an existing --out (no run)")
    ap.add_argument("--calibrated", action="store_true",
                    help=f"take spread, trend and drift from the fit to the real runs' drift (data/results/{DRIFT_RESULTS}.csv, "
                         f"source=bandit_matched); default --out {CALIBRATED_OUT.relative_to(ROOT)}")
    args = ap.parse_args(argv)
    if args.write_docs:
        print(write_docs(args.out or CALIBRATED_OUT))
        return []
    if args.table:
        out = args.out or (LONG_OUT if args.long else CALIBRATED_OUT if args.calibrated else DEFAULT_OUT)
        print(table(read_csv(out)))
        return read_csv(out)
    cells = None
    if args.long:
        fit = None if args.refit else cached_fit()
        if fit is None:
            fit = fitted_world()
            results.write_derived(DRIFT_FIT_OUT, drift_fit_rows(fit), DRIFT_FIT_FIELDS, [results.path("value_mse_real_drift")])
        else:
            print(f"the drift fit in {DRIFT_FIT_OUT.name} matches today's real-run drift: reusing it ({fit}; --refit fits again)")
            if not results.read_sidecar(DRIFT_FIT_OUT):  # a fit saved before fits recorded their source
                results.mark_derived(DRIFT_FIT_OUT, [results.path("value_mse_real_drift")])
        world = stretch(fit, CALIBRATED_STEPS, LONG_STEPS)
        cells = long_cells()
        args.out = args.out or LONG_OUT
        args.steps = args.steps or LONG_STEPS
        args.warmup = args.warmup if args.warmup is not None else LONG_WARMUP
    elif args.calibrated:
        if any(x is not None for x in (args.trend, args.drift, args.spread)):
            ap.error("--calibrated: takes spread, trend and drift from the fit; drop --trend/--drift/--spread, or drop --calibrated")
        try:
            world = calibrated_world()
        except (FileNotFoundError, ValueError) as e:
            ap.error(str(e))
    else:
        world = {**d, **{k: getattr(args, k) for k in d if getattr(args, k) is not None}}
    world = {"slope": 0.0, "learn": 0.0, **world} if args.long else world
    if world["drift"] < 0 or world["spread"] < 0:
        ap.error(f"--drift and --spread: expected >= 0, got drift={world['drift']}, spread={world['spread']}")
    args.out = args.out or (CALIBRATED_OUT if args.calibrated else DEFAULT_OUT)
    if args.steps is None:
        args.steps = CALIBRATED_STEPS if args.calibrated else 40
    if args.warmup is None:
        args.warmup = CALIBRATED_WARMUP if args.calibrated else 10
    if args.seeds < 2:
        ap.error("--seeds: need at least 2 for a confidence interval")
    if not 0 <= args.warmup < args.steps:
        ap.error(f"--warmup: expected 0 <= warmup < steps ({args.steps}), got {args.warmup}")
    settings = _settings(args, world)
    labels = ROWS if cells is None else list(dict.fromkeys(c[0] for c in cells))
    side = sidecar_path(args.out)
    done, before = {}, {}
    if args.out.exists() and not args.fresh:
        before = results.read_sidecar(args.out)
        if before.get("settings") != settings:
            ap.error(f"--out: {args.out} was written with other settings ({before.get('settings')}); rerun with --fresh to "
                     f"overwrite it, or choose another --out")
        results.drop_torn_tail(args.out)
        # a row whose parameters resolve differently today (a changed default) is measured again
        same = {lab for lab in labels if before.get("rows", {}).get(lab) == resolved_params(lab)}
        done = {(r["estimator"], r["group_size"], r["reuse"], r["seed"]): r["value_mse"] for r in read_csv(args.out)
                if r["estimator"] in same}
    else:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        if args.out.exists():
            args.out.unlink()
    todo = (jobs(ROWS, tuple(args.group_sizes), tuple(args.reuses), range(args.seeds)) if cells is None
            else [(lab, g, j, s) for lab, g, j in cells for s in range(args.seeds)])
    if before.get("complete") and done and all(k in done for k in todo):  # a finished file: its sidecar names who made the rows
        print(f"nothing left to run: {args.out} and {side.name} (made at commit "
              f"{before.get('provenance', {}).get('git_commit')}) are kept as they are")
        rows = run(args.seeds, args.steps, args.warmup, group_sizes=tuple(args.group_sizes), reuses=tuple(args.reuses),
                   done=done, world=world, progress=False, cells=cells)
        print(table(rows))
        return rows
    from lab.provenance import collect

    meta = {"settings": settings, "world": world, "provenance": collect(),
            "rows": {lab: resolved_params(lab) for lab in labels}, "complete": False}
    if args.calibrated:

        meta["calibrated_from"] = {"file": f"data/results/{DRIFT_RESULTS}.csv", "drift": drift_summary(),
                                   "provenance": results.provenance(DRIFT_RESULTS), "real_levels": real_levels()}
    meta["levels"] = {"world": world_levels(world, steps=args.steps, warmup=args.warmup, seeds=range(args.seeds)),
                      "default_world": world_levels(default_world(), steps=args.steps, warmup=args.warmup,
                                                    seeds=range(args.seeds))}
    results.write_sidecar(args.out, meta)
    t0 = time.time()
    rows = run(args.seeds, args.steps, args.warmup, group_sizes=tuple(args.group_sizes), reuses=tuple(args.reuses),
               out=args.out, done=done, world=world, cells=cells)
    write_csv(rows, args.out)  # canonical order, whatever was resumed
    meta.update(complete=True, elapsed_s=round(time.time() - t0, 1), resumed_rows=len(done))
    results.write_sidecar(args.out, meta)
    print(f"\nValue MSE against the exact value (drifting bandit: trend {world['trend']}, drift {world['drift']}, "
          f"spread {world['spread']}; {args.seeds} seeds x {args.steps} steps, first {args.warmup} left out); "
          f"† the baseline sees the rollout's own reward:\n")
    print(table(rows))
    print(f"\nRows: {args.out}\nProvenance: {side}")
    return rows


if __name__ == "__main__":
    main()
