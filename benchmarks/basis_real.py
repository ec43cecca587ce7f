"""BASIS with its reference stage on *real* runs of the shipped tiny model: m swept, REINFORCE++ and GRPO-8 beside it.

    .venv/bin/python benchmarks/basis_real.py             # writes data/results/basis_real.csv (resumes)
    .venv/bin/python benchmarks/basis_real.py --table     # the table from the file, no runs
    .venv/bin/python benchmarks/basis_real.py --seeds 1 --steps 4 --probe-samples 16 --out /tmp/b.csv   # smoke

A thin driver over ``lab.analysis.results.run_paired_seeds``. Each seed runs two arms on the
default testbed with a fixed pool of ``POOL`` = 128 training prompts (``train_pool_size``, the
same pool for both arms, since it is drawn from the seed), 64 rollouts a step:

- ``basis_g1``: G = 1, 64 prompts a step, trained by ``basis`` with a reference stage of
  ``REFERENCE`` = 32 samples of every pool prompt from the initial model. Shadows on the same
  rollouts: ``reinforce_plus_plus`` (the paper's single-rollout baseline), and BASIS with fewer
  reference samples, ``basis_m4``/``basis_m8``/``basis_m16``: each keeps the last m of the
  prompt's 32 samples (``max_samples`` = m; the samples are independent draws, so the last m
  are a sample of m), and ``basis_m0``, BASIS without a reference stage (its prior is the running
  one from the prompt's own rollouts, what ``value_mse_real.csv``'s G = 1 rows measure), each m
  > 0 also with the mean prior alone (β grid {1000}, ``basis_m<m>_mean``; the issue's "β grid
  including the mean prior"). The training estimator keeps all 32 (``basis`` with its default
  ``max_samples`` = 64, the lab's β grid): the ``mse:basis_m32`` column.
- ``grpo_g8``: G = 8, 8 prompts a step, trained by ``grpo``, no reference stage (its group mean
  is the baseline BASIS's second claim compares with; other runs, so unpaired in rollouts).

Value MSE is measured as in ``benchmarks/value_mse_real.py`` (``probe_set="batch"``: the step's
first ``PROBE_PROMPTS`` training prompts, ``PROBE_SAMPLES`` fresh samples each as the truth, MC-
corrected, ``lab.probes.run_value_mse``, averaged over probe steps ≥ ``WARMUP``). Every BASIS
variant uses its registered defaults otherwise (the lab's β grid, ``fallback="prior"``,
``online_prior="missing"``, ``beta_selection="crossfit"``).

**Compute.** Both arms draw 64 rollouts a step; ``basis_g1`` also draws ``reference_rollouts``
= 32 × 128 = 4,096 before step 0 (a variant with m samples would need m × 128: the row keeps
``train_rollouts`` so a comparison can count them). Cost measured on the 2-core machine at one
torch thread beside other work: about 9 s for a ``basis_g1`` run (31 steps, 11 probe steps of
8 × 64 samples, the reference stage) and 5 s for a ``grpo_g8`` one, so the default 16 seeds take
about 4 minutes.

Rows (one per run): ``arm, seed``, the settings, ``train_rollouts``, ``reference_rollouts``,
``elapsed_s``, one ``mse:<estimator>`` (and ``raw:<estimator>``, the uncorrected MSE) column per
estimator the arm reports (empty where it reports none), and ``lab.provenance.FIELDS``.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere: `lab` is the checkout's
    sys.path.insert(0, str(ROOT))

from lab import probes  # noqa: E402
from lab.analysis import results, stats  # noqa: E402

DEFAULT_OUT = ROOT / "data" / "results" / "basis_real.csv"
ARMS = ("basis_g1", "grpo_g8")
POOL, REFERENCE, ROLLOUTS_PER_STEP = 128, 32, 64
M_VALUES = (0, 4, 8, 16, 32)
MEAN_PRIOR = (1000.0,)
"""The β grid of the mean prior alone (μ_β → the samples' mean as β → ∞)."""
VARIANTS = {**{f"basis_m{m}": (m, None) for m in M_VALUES if m != REFERENCE},
            **{f"basis_m{m}_mean": (m, MEAN_PRIOR) for m in M_VALUES if m}}
"""The BASIS shadows: name -> (reference samples kept, β grid; None = the registered default grid). The
training ``basis`` itself keeps all ``REFERENCE`` samples with the default grid: column ``basis_m32``."""
STEPS, PROBE_EVERY, PROBE_PROMPTS, PROBE_SAMPLES, WARMUP, SEEDS = 31, 3, 8, 64, 3, 16
PAPER_M = 8
"""The m the claims count (the bandit's default reading, fixed before these runs); the others are shown."""
ESTIMATES = [*(f"basis_m{m}" for m in M_VALUES), *(f"basis_m{m}_mean" for m in M_VALUES if m), "reinforce_plus_plus", "grpo"]
SETTINGS = ["rollouts_per_prompt", "prompts_per_step", "train_pool_size", "reference_samples", "steps", "probe_every",
            "probe_prompts", "probe_samples", "warmup", "model", "task"]
FIELDS = (["arm", "seed", *SETTINGS, "train_rollouts", "reference_rollouts", "elapsed_s"]
          + [f"mse:{n}" for n in ESTIMATES] + [f"raw:{n}" for n in ESTIMATES])


def variant_name(m: int, grid: tuple | None = None) -> str:
    """The column (and registry name) of BASIS with m reference samples and β grid ``grid``.

    >>> variant_name(4), variant_name(0), variant_name(32, MEAN_PRIOR)
    ('basis_m4', 'basis_m0', 'basis_m32_mean')
    """
    return f"basis_m{m}" + ("_mean" if grid == MEAN_PRIOR else "")


@contextlib.contextmanager
def basis_variants(variants: dict = VARIANTS):
    """Register the BASIS shadows of ``variants`` for the duration of the block (and remove them after,
    so the rest of the process sees the registry unchanged). m > 0: ``max_samples`` = m (the last
    m reference samples); m = 0: ``wants_reference`` False, so the trainer gives it none; a grid
    replaces ``betas``."""
    from lab import estimators
    from lab.estimators.basis import BASIS

    added = []
    try:
        for name, (m, grid) in variants.items():
            if name in estimators.available():
                continue
            fixed = {**({"max_samples": m} if m else {}), **({"betas": grid} if grid else {})}

            def init(self, _fixed=fixed, **kw):
                BASIS.__init__(self, **{**_fixed, **kw})

            doc = (f"BASIS keeping the last {m} reference samples of each prompt" if m else
                   "BASIS without a reference stage: a running prior from each prompt's own rollouts")
            doc += (", mean prior (β = 1000 alone)" if grid == MEAN_PRIOR else "") + " (benchmarks/basis_real.py)"
            estimators.register(name)(type(name, (BASIS,), {"__init__": init, "__doc__": doc, "wants_reference": m > 0}))
            added.append(name)
        yield list(variants)
    finally:
        for name in added:
            estimators.ESTIMATORS.unregister(name)


def config(arm: str, seed: int, settings: dict, output_dir: str):
    """The ``TrainConfig`` of one run (see the module docstring)."""
    from lab.config import TrainConfig

    common = dict(seed=seed, steps=settings["steps"], train_pool_size=POOL, probe_set="batch",
                  probe_every=settings["probe_every"], probe_prompts=settings["probe_prompts"],
                  probe_samples=settings["probe_samples"], eval_every=0, checkpoint_every=0, keep_checkpoints=1,
                  output_dir=output_dir, run_name=f"basis-real-{arm}-s{seed}", quiet=True)
    if arm == "basis_g1":
        return TrainConfig(estimator="basis", rollouts_per_prompt=1, prompts_per_step=ROLLOUTS_PER_STEP,
                           reference_samples=REFERENCE,
                           shadow_estimators=("reinforce_plus_plus", *VARIANTS), **common)
    if arm == "grpo_g8":
        return TrainConfig(estimator="grpo", rollouts_per_prompt=8, prompts_per_step=ROLLOUTS_PER_STEP // 8,
                           shadow_estimators=(), **common)
    raise ValueError(f"arm: unknown {arm!r}; choose from {', '.join(ARMS)}")


def reported(arm: str) -> dict[str, str]:
    """Estimator of the run -> the column it fills (the training ``basis`` keeps all 32 samples).

    >>> reported("grpo_g8")
    {'grpo': 'grpo'}
    """
    if arm == "basis_g1":
        return {"basis": variant_name(REFERENCE), "reinforce_plus_plus": "reinforce_plus_plus", **{v: v for v in VARIANTS}}
    return {"grpo": "grpo"}


def run_one(arm: str, seed: int, settings: dict, work: Path) -> dict:
    """Train one arm of one seed; its row."""
    from lab import provenance, runs
    from lab.train import train

    with basis_variants():
        cfg = config(arm, seed, settings, str(work))
        t0 = time.monotonic()
        run_dir = train(cfg)
        elapsed = round(time.monotonic() - t0, 1)
    names = reported(arm)
    per = probes.run_value_mse(runs.read_metrics(run_dir), list(names), settings["warmup"])
    row = {**provenance.collect("cpu"), "arm": arm, "seed": seed,
           **{k: getattr(cfg, k) for k in SETTINGS if hasattr(cfg, k)}, "warmup": settings["warmup"],
           "train_rollouts": cfg.steps * cfg.prompts_per_step * cfg.rollouts_per_prompt,
           "reference_rollouts": cfg.reference_samples * cfg.train_pool_size, "elapsed_s": elapsed}
    for n in ESTIMATES:
        row[f"mse:{n}"] = row[f"raw:{n}"] = ""
    for est, col in names.items():
        row[f"mse:{col}"], row[f"raw:{col}"] = per[est][0], per[est][1]
    return row


# --- the table (from the file alone) ----------------------------------------------------------------
def per_seed(rows: list[dict], col: str, arm: str) -> dict[int, float]:
    """seed -> the corrected MSE in column ``mse:<col>`` of arm ``arm`` (rows where it is empty are left out).

    >>> per_seed([{"arm": "a", "seed": "0", "mse:x": "0.1"}, {"arm": "a", "seed": "1", "mse:x": ""}], "x", "a")
    {0: 0.1}
    """
    out = {}
    for r in rows:
        v = str(r.get(f"mse:{col}", ""))
        if r["arm"] == arm and v not in ("", "nan"):
            out[int(r["seed"])] = float(v)
    return out


def comparisons(rows: list[dict]) -> list[dict]:
    """Every BASIS m against REINFORCE++ (same runs: per-seed paired ratio) and against GRPO-8 (other runs:
    ratio of geometric means, Welch t on the log), with the compute of each side in rollouts.

    A seed whose corrected MSE is ≤ 0 on either side (MC noise) has no ratio and is left out.
    """
    out = []
    rpp = per_seed(rows, "reinforce_plus_plus", "basis_g1")
    g8 = per_seed(rows, "grpo", "grpo_g8")
    train = {r["arm"]: int(float(r["train_rollouts"])) for r in rows}
    pool = next((int(float(r["train_pool_size"])) for r in rows if r["arm"] == "basis_g1"), POOL)
    for m, grid in [(m, g) for g in (None, MEAN_PRIOR) for m in M_VALUES if m or g is None]:
        b = per_seed(rows, variant_name(m, grid), "basis_g1")
        cost = train.get("basis_g1", 0) + m * pool
        for vs, other, paired in (("reinforce_plus_plus", rpp, True), ("grpo_g8", g8, False)):
            if (e := stats.seed_ratio(b, other, paired=paired)) is not None:
                out.append({"m": m, "grid": "mean" if grid else "lab", "vs": vs, "ratio": e.value, "low": e.low,
                            "high": e.high, "seeds": e.n, "rollouts": cost,
                            "vs_rollouts": train.get("basis_g1" if paired else "grpo_g8", 0), "method": e.method})
    return out


def table(rows: list[dict]) -> str:
    """The comparisons as text: one line per (m, baseline), the rollouts each side drew."""
    lines = [f"{'m':>3} {'β grid':<6}  {'vs':<20} {'ratio [95% CI]':<24} {'seeds':>5}  rollouts (BASIS incl. reference / baseline)"]
    for c in comparisons(rows):
        lines.append(f"{c['m']:>3} {c['grid']:<6}  {c['vs']:<20} {c['ratio']:.2f} [{c['low']:.2f}, {c['high']:.2f}]{'':<8} {c['seeds']:>5}  "
                     f"{c['rollouts']:,} / {c['vs_rollouts']:,}")
    return "\n".join(lines) if len(lines) > 1 else "no comparable seeds yet"


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=SEEDS, help=f"seeds 0..N-1 (default {SEEDS})")
    ap.add_argument("--steps", type=int, default=STEPS, help=f"training steps per run (default {STEPS})")
    ap.add_argument("--probe-every", type=int, default=PROBE_EVERY)
    ap.add_argument("--probe-prompts", type=int, default=PROBE_PROMPTS)
    ap.add_argument("--probe-samples", type=int, default=PROBE_SAMPLES)
    ap.add_argument("--warmup", type=int, default=WARMUP, help="probe steps before this step are left out")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--table", action="store_true", help="only print the table of an existing --out")
    args = ap.parse_args(argv)
    settings = {"steps": args.steps, "probe_every": args.probe_every, "probe_prompts": args.probe_prompts,
                "probe_samples": args.probe_samples, "warmup": args.warmup}
    rows = results.read_rows(args.out)
    if not args.table:
        other = sorted({f"{k}={r.get(k)}" for r in rows for k in settings if str(r.get(k)) != str(settings[k])})
        if other:
            ap.error(f"--out: {args.out} holds runs with other settings ({', '.join(other)}): pass the same ones, "
                     f"or another --out (or delete the file) to start over")
        from lab import provenance

        rows = results.run_paired_seeds(args.out, rows, ARMS, "arm", args.seeds,
                                        lambda arm, seed, work: run_one(arm, seed, settings, work),
                                        FIELDS + list(provenance.FIELDS), prefix="lab-basis-real-")
    print(table(rows))
    return rows


if __name__ == "__main__":
    main()
