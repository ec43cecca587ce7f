"""Gradient error of one batch, per estimator × G, against a reference ∇J on the real tiny model.

    .venv/bin/python benchmarks/grad_variance.py            # writes data/results/grad_variance.csv + .png (resumes)
    .venv/bin/python benchmarks/grad_variance.py --quick    # smoke run (~30 s) into runs/grad_variance_quick/
    .venv/bin/python benchmarks/grad_variance.py --fresh    # start over (results, run and reference caches)

What it does (issue 14, item 4):

1. **One real run**: ``lab train`` of the shipped model with every ``TrainConfig`` default
   (GRPO, G = 4, 16 prompts per step, all estimators in shadow) except prompt reuse J = 4
   (so stateful estimators have a history of the prompts they are asked about), no probes or
   eval (not needed here), trained in pieces that end just before each snapshot step t
   (checkpoint of step t − 1 kept). Snapshot t = the policy and the memories of the main and
   shadow estimators that step t of that run would use (``lab.gradvar.load_snapshot``).
2. **Fixed prompts**: the 64 training prompts of the last four prompt blocks up to step t
   (blocks of 16, newest first; at t = 0 the first four blocks), seen by the run within the
   last 4·J steps: BLEND and BASIS remember all of them, KAE those inside its window of h·t
   steps (48 of 64 at t = 50).
3. **Reference** ∇J over those prompts: 128 rollouts per prompt (8,192 in all), REINFORCE
   with a leave-one-out baseline within each half of a prompt's rollouts (unbiased, value
   error 1/63 of the reward variance), streamed in chunks of 512 rollouts into a float32
   vector (``lab.gradvar.reference_gradient``). Its own squared error is estimated from the
   two halves (split-half) and subtracted from every error below; ``reference_rel_sq_error``
   discloses it (``rel_sq_error_raw`` / ``cosine_raw`` are the uncorrected numbers).
4. **Batches**: for G ∈ {1, 2, 4, 8}, ``--batches`` independent batches of 64 rollouts each
   (64/G prompts drawn without replacement from the 64, G rollouts each: equal rollouts for
   every G); every registered estimator gets the *same* batch (paired comparison), as a fresh
   instance holding a copy of the snapshot's memory (``estimator_at``), so no batch sees
   another. Its estimate is g = (1/64) Σ_i A_i ∇ log π(y_i | x_i), the sequence-level score
   function (the unbiased direction of ∇J for A = r − b; the trainer's token-mean would
   weight rollouts by length). Per batch: ‖g − ∇J‖²/‖∇J‖² and cos(g, ∇J); mean and 95% t
   interval over batches. ``rel_sq_error_best_scale`` is the error left after the best single
   rescaling of g (what a retuned learning rate could absorb: GRPO's std division, KRPO's
   ~10× advantages, REINFORCE++'s whitening change the scale, not only the noise).
   ``rel_sq_error_minus_group_mean`` is the paired difference to ``dr_grpo`` (the group-mean
   baseline without GRPO's std division) over the same batches, with its 95% interval.

Output: ``data/results/grad_variance.csv``, one row per (snapshot_step, estimator, G), written
when that (snapshot, G) is done (so a stopped run resumes at the next one; the run and the
references are cached under ``--work-dir``), each row with the settings and
``lab.provenance.collect()``; and ``grad_variance.png`` (relative error, best-scale error and
cosine vs G, one column of panels per snapshot).

Cost, measured on this machine's 2 shared cores with 1 torch thread (other jobs running):
training ≈ 0.3 s a step, so 150 steps ≈ 45 s; a reference of 8,192 rollouts ≈ 30 s; one
batch (64 rollouts, one forward, one backward per registered estimator: 10) ≈ 1.0 s at G = 8
and ≈ 1.6 s at G = 1 (measured; more distinct prompts, no shared prefix), so ≈ 1.3 s on
average over the four G. Default: 45 s + 3 snapshots × (30 s + 4 G × 64 batches × 1.3 s)
≈ 45 s + 3 × 363 s ≈ 19 min (≤ 30 min when the machine is busier).
``--quick`` (the smoke sizes) takes about 30 s.
"""

from __future__ import annotations

import argparse
import csv
import math
import shutil
import sys
import time
from pathlib import Path

from lab.analysis import docblocks, results

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "data" / "results" / "grad_variance.csv"
DEFAULT_WORK = ROOT / "runs" / "grad_variance"
QUICK_WORK = ROOT / "runs" / "grad_variance_quick"
SNAPSHOTS = (0, 50, 150)
GROUP_SIZES = (1, 2, 4, 8)
BATCHES = 64
BATCH_ROLLOUTS = 64
PROMPTS = 64
REFERENCE_PER_PROMPT = 128
REUSE = 4
GROUP_MEAN = "dr_grpo"
"""The group-mean baseline (A = r − group mean, no std division) every row is also compared with,
batch by batch (``rel_sq_error_minus_group_mean``): GRPO's baseline without GRPO's rescaling."""
FIELDS = ["snapshot_step", "estimator", "rollouts_per_prompt", "batches", "rel_sq_error", "rel_sq_error_ci95",
          "cosine", "cosine_ci95", "reference_rollouts"]
EXTRA = ["rel_sq_error_raw", "rel_sq_error_raw_ci95", "cosine_raw", "cosine_raw_ci95", "rel_sq_error_best_scale",
         "norm_ratio", "rel_sq_error_minus_group_mean", "rel_sq_error_minus_group_mean_ci95", "reference_rel_sq_error", "reference_reward_mean", "batch_reward_mean", "history", "seconds"]
SETTINGS = ["model", "task", "train_estimator", "train_rollouts_per_prompt", "prompts_per_step", "prompt_reuse", "lr",
            "temperature", "max_new_tokens", "seed", "prompts", "batch_rollouts", "reference_per_prompt"]


def fieldnames() -> list[str]:
    from lab import provenance

    return FIELDS + EXTRA + SETTINGS + list(provenance.FIELDS)


def read_rows(path: Path) -> list[dict]:
    """Rows of an existing results file (``lab.analysis.results.read_rows``: empty when absent, a torn last line skipped)."""
    return results.read_rows(path)


def done_units(rows: list[dict], names: list[str]) -> set[tuple[int, int]]:
    """(snapshot_step, G) pairs that have a row for every estimator in ``names``.

    >>> rows = [{"snapshot_step": "0", "rollouts_per_prompt": "1", "estimator": n} for n in ("a", "b")]
    >>> sorted(done_units(rows, ["a", "b"])), sorted(done_units(rows, ["a", "b", "c"]))
    ([(0, 1)], [])
    """
    have: dict[tuple[int, int], set[str]] = {}
    for r in rows:
        have.setdefault((int(r["snapshot_step"]), int(r["rollouts_per_prompt"])), set()).add(r["estimator"])
    return {k for k, v in have.items() if set(names) <= v}


def train_config(args, work: Path):
    from lab.config import TrainConfig

    extra = dict(prompts_per_step=4, rollouts_per_prompt=2) if args.quick else {}
    return TrainConfig(seed=args.seed, prompt_reuse=args.reuse, probe_every=0, eval_every=0, checkpoint_every=0,
                       keep_checkpoints=0, quiet=True, output_dir=str(work), run_name="run", steps=max(1, max(args.snapshots)),
                       **extra)


def ensure_run(cfg, snapshots: list[int]) -> Path:
    """Train the run in pieces so a checkpoint of step t − 1 exists for every snapshot t > 0."""
    from lab import runs
    from lab.config import TrainConfig
    from lab.train import train

    run_dir = Path(cfg.output_dir) / cfg.run_name
    if (run_dir / "config.json").is_file():
        saved = TrainConfig.from_dict(runs.read_config(run_dir)[0]).to_dict()
        want = cfg.to_dict()
        diff = [k for k in want if k != "steps" and saved.get(k) != want[k]]
        if diff:
            raise SystemExit(f"{run_dir} was trained with other settings ({', '.join(diff)}); use --fresh or another --work-dir")
    for t in sorted(s for s in snapshots if s > 0):
        have = dict(runs.checkpoint_candidates(run_dir)[0]) if run_dir.exists() else {}
        if t - 1 in have:
            continue
        if any(s > t - 1 for s in have):
            raise SystemExit(f"{run_dir} has checkpoints {sorted(have)} but not step {t - 1}; use --fresh")
        print(f"training to step {t} (checkpoint of step {t - 1}) ...", flush=True)
        if (run_dir / "config.json").is_file():
            train(resume=run_dir, steps=t)
        else:
            if run_dir.exists():
                shutil.rmtree(run_dir)
            train(cfg.replace(steps=t))
    return run_dir


def fixed_prompts(cfg, step: int, n: int) -> list:
    """``n`` distinct training prompts of the run: those of the prompt block of ``step``, then of
    the blocks before it (newest first), then, when those run out (early steps), of the blocks
    after it. At the default settings: the 64 prompts of the four blocks up to ``step``."""
    from lab import tasks
    from lab.train import PromptSchedule

    task = tasks.get(cfg.task, **cfg.task_params)
    sched = PromptSchedule(task, seed=cfg.seed, per_step=cfg.prompts_per_step, reuse=cfg.prompt_reuse)
    here = step // cfg.prompt_reuse
    blocks: dict[int, list] = {}
    k = 0
    while k <= here + math.ceil(n / cfg.prompts_per_step) + 100:
        blocks[k] = list(sched.prompts(k * cfg.prompt_reuse))
        k += 1
    order = list(range(here, -1, -1)) + list(range(here + 1, k))
    out, seen = [], set()
    for b in order:
        for ex in blocks[b]:
            if ex.prompt_id not in seen and len(out) < n:
                seen.add(ex.prompt_id)
                out.append(ex)
    if len(out) < n:
        raise SystemExit(f"--prompts {n}: the task has only {len(out)} distinct training prompts near step {step}")
    return out


def load_reference(path: Path, key: dict, compute):
    """The cached reference at ``path`` when its settings match ``key``, else ``compute()`` (cached)."""
    import torch

    from lab.analysis.gradvar import Reference

    if path.is_file():
        d = torch.load(path, weights_only=True)
        if d.get("key") == key:
            return Reference(d["half_a"], d["half_b"], int(d["rollouts"]), float(d["reward_mean"]))
    ref = compute()
    tmp = path.with_suffix(".tmp")
    torch.save({"key": key, "half_a": ref.half_a, "half_b": ref.half_b, "rollouts": ref.rollouts,
                "reward_mean": ref.reward_mean}, tmp)
    tmp.replace(path)
    return ref


def plot(rows: list[dict], path: Path) -> Path:
    """Relative squared error (log scale), the same after the best rescaling, and the cosine vs G,
    one column per snapshot, a line per estimator with its 95% interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    snaps = sorted({int(r["snapshot_step"]) for r in rows})
    names = list(dict.fromkeys(r["estimator"] for r in rows))
    panels = (("rel_sq_error", "‖g − ∇J‖² / ‖∇J‖²"), ("rel_sq_error_best_scale", "… after the best rescaling of g"),
              ("cosine", "cos(g, ∇J)"))
    fig, axes = plt.subplots(len(panels), len(snaps), figsize=(4.2 * len(snaps), 10), squeeze=False, sharex=True)
    cmap = plt.get_cmap("tab20")
    for j, s in enumerate(snaps):
        for k, name in enumerate(names):
            rs = sorted((r for r in rows if int(r["snapshot_step"]) == s and r["estimator"] == name),
                        key=lambda r: int(r["rollouts_per_prompt"]))
            if not rs:
                continue
            x = [int(r["rollouts_per_prompt"]) for r in rs]
            for i, (col, ylab) in enumerate(panels):
                pts = [(xi, float(r[col]), float(r.get(f"{col}_ci95") or "nan")) for xi, r in zip(x, rs)]
                pts = [p for p in pts if math.isfinite(p[1]) and (col == "cosine" or p[1] > 0)]  # NaN: reference below its noise
                if pts:
                    axes[i][j].errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=[p[2] for p in pts], marker="o",
                                        ms=3, lw=1.2, capsize=2, color=cmap(k % 20))
                axes[i][j].set_ylabel(ylab if j == 0 else "")
        ref = next((float(r["reference_rel_sq_error"]) for r in rows if int(r["snapshot_step"]) == s), math.nan)
        if axes[0][j].has_data():
            axes[0][j].set_yscale("log")
        axes[0][j].set_title(f"snapshot step {s} (reference's own error {ref:.3g}, subtracted)", fontsize=8)
        for i in range(len(panels)):
            axes[i][j].set_xscale("log", base=2)
            axes[i][j].set_xticks(GROUP_SIZES, [str(g) for g in GROUP_SIZES])
            axes[i][j].grid(alpha=0.3)
        axes[-1][j].set_xlabel("G (rollouts per prompt; 64 rollouts per batch)")
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=cmap(k % 20), marker="o", ms=3, label=n) for k, n in enumerate(names)]
    fig.legend(handles=handles, loc="lower center", ncol=6, fontsize=8, frameon=False)
    fig.suptitle("One batch's policy-gradient error against the reference ∇J (tiny model, mean ± 95% CI over batches)",
                 fontsize=10)
    fig.tight_layout(rect=(0, 0.08, 1, 0.97))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run_unit(snap, sample, examples, ref, G: int, args, seed: int) -> list[dict]:
    """All estimators at one (snapshot, G): ``args.batches`` batches, one summary row each."""
    import torch

    from lab import estimators
    from lab.analysis import gradvar

    names = estimators.available()
    torch.manual_seed(seed)  # the sampler's global RNG: a rerun of this unit draws the same rollouts
    gen = torch.Generator().manual_seed(seed)
    per: dict[str, list[dict]] = {n: [] for n in names}
    rewards = []
    for _ in range(args.batches):
        ests = {n: gradvar.estimator_at(n, snap) for n in names}  # fresh copies: no batch sees another
        grads, r = gradvar.batch_gradients(snap.model, sample, examples, G, args.batch_rollouts, ests, snap.step, gen)
        rewards.append(float(r.mean()))
        for n, row in zip(names, gradvar.compare(grads, ref)):
            per[n].append(row)
    out = []
    base = per.get(GROUP_MEAN)
    for n in names:
        s = gradvar.summarise(per[n], ref)
        if base is not None:  # paired over the same batches: much tighter than the two intervals apart
            diff = [a["rel_sq_error"] - b["rel_sq_error"] for a, b in zip(per[n], base)]
            s["rel_sq_error_minus_group_mean"], s["rel_sq_error_minus_group_mean_ci95"] = gradvar.mean_ci95(diff)
        out.append({"estimator": n, **s, "batch_reward_mean": round(sum(rewards) / len(rewards), 4),
                    "history": "run" if n in snap.states else "none"})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--snapshots", type=int, nargs="+", default=None, help="snapshot steps (default 0 50 150)")
    ap.add_argument("--group-sizes", type=int, nargs="+", default=None, help="G values (default 1 2 4 8)")
    ap.add_argument("--batches", type=int, default=None, help=f"independent batches per (snapshot, G) (default {BATCHES})")
    ap.add_argument("--batch-rollouts", type=int, default=None, help=f"rollouts per batch, every G (default {BATCH_ROLLOUTS})")
    ap.add_argument("--prompts", type=int, default=None, help=f"fixed prompts per snapshot (default {PROMPTS})")
    ap.add_argument("--reference-per-prompt", type=int, default=None,
                    help=f"reference rollouts per prompt (even; default {REFERENCE_PER_PROMPT})")
    ap.add_argument("--reuse", type=int, default=REUSE, help=f"prompt reuse J of the training run (default {REUSE})")
    ap.add_argument("--seed", type=int, default=0, help="seed of the run and of the batches")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1: the machine is shared)")
    ap.add_argument("--out", type=Path, default=None, help="results CSV (default data/results/grad_variance.csv; --quick: under the work dir)")
    ap.add_argument("--work-dir", type=Path, default=None, help="the training run and cached references (default runs/grad_variance[_quick])")
    ap.add_argument("--fresh", action="store_true", help="delete results, run and references first")
    ap.add_argument("--write-docs", action="store_true", help="only regenerate the block in docs/estimators.md from the CSV")
    ap.add_argument("--quick", action="store_true", help="smoke sizes (flags given explicitly still win): snapshots 0 2, "
                    "G 1 2, 3 batches of 8 rollouts, 8 prompts, 8 reference rollouts per prompt, a 4-prompt × G=2 run")
    args = ap.parse_args(argv)
    sizes = (dict(snapshots=[0, 2], group_sizes=[1, 2], batches=3, batch_rollouts=8, prompts=8, reference_per_prompt=8)
             if args.quick else dict(snapshots=list(SNAPSHOTS), group_sizes=list(GROUP_SIZES), batches=BATCHES,
                                     batch_rollouts=BATCH_ROLLOUTS, prompts=PROMPTS, reference_per_prompt=REFERENCE_PER_PROMPT))
    for k, v in sizes.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    work: Path = args.work_dir or (QUICK_WORK if args.quick else DEFAULT_WORK)
    out: Path = args.out or (work / "grad_variance.csv" if args.quick else DEFAULT_OUT)
    if args.write_docs:
        write_docs(read_rows(out))
        print(f"docs/estimators.md: grad-variance block regenerated from {out}")
        return 0
    if args.fresh:
        shutil.rmtree(work, ignore_errors=True)
        for p in (out, out.with_suffix(".png")):
            p.unlink(missing_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    out.parent.mkdir(parents=True, exist_ok=True)

    import torch

    from lab import estimators, provenance, tasks
    from lab.analysis import gradvar

    torch.set_num_threads(args.threads)
    names = estimators.available()
    cfg = train_config(args, work)
    settings = {"model": cfg.model, "task": cfg.task, "train_estimator": cfg.estimator,
                "train_rollouts_per_prompt": cfg.rollouts_per_prompt, "prompts_per_step": cfg.prompts_per_step,
                "prompt_reuse": cfg.prompt_reuse, "lr": cfg.lr, "temperature": cfg.temperature,
                "max_new_tokens": cfg.max_new_tokens, "seed": cfg.seed, "prompts": args.prompts,
                "batch_rollouts": args.batch_rollouts, "reference_per_prompt": args.reference_per_prompt}
    rows = read_rows(out)
    for r in rows:
        if any(str(r.get(k)) != str(v) for k, v in settings.items()):
            raise SystemExit(f"{out} holds rows made with other settings (e.g. {next(k for k, v in settings.items() if str(r.get(k)) != str(v))}); "
                             "use --fresh or another --out")
    done = done_units(rows, names)
    keep = [r for r in rows if (int(r["snapshot_step"]), int(r["rollouts_per_prompt"])) in done]
    if len(keep) != len(rows):  # a (snapshot, G) without a row for every registered estimator runs again, whole
        with out.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fieldnames(), extrasaction="ignore")
            w.writeheader()
            w.writerows(keep)
    todo = [(t, G) for t in args.snapshots for G in args.group_sizes if (t, G) not in done]
    if done:
        print(f"resuming: {len(done)} (snapshot, G) pairs already in {out}")
    run_dir = ensure_run(cfg, args.snapshots) if todo else None
    prov = provenance.collect()
    task = tasks.get(cfg.task, **cfg.task_params)
    for t in sorted({t for t, _ in todo}):
        snap = gradvar.load_snapshot(run_dir, t, config=cfg if t == 0 else None)
        examples = fixed_prompts(snap.config, t, args.prompts)
        sample = gradvar.make_sampler(snap.model, snap.tokenizer, task, snap.config)
        key = {"step": t, "prompts": [e.prompt_id for e in examples], "per_prompt": args.reference_per_prompt,
               "seed": args.seed, "checkpoint": str(snap.checkpoint)}
        t0 = time.perf_counter()

        def compute():
            torch.manual_seed(10_000 + t + 1_000_003 * args.seed)
            return gradvar.reference_gradient(snap.model, sample, examples, args.reference_per_prompt)

        ref = load_reference(work / f"reference_step{t:06d}.pt", key, compute)
        print(f"snapshot {t}: reference of {ref.rollouts} rollouts (reward {ref.reward_mean:.3f}, "
              f"own relative error {ref.rel_noise:.4f}) in {time.perf_counter() - t0:.0f} s", flush=True)
        for G in [g for tt, g in todo if tt == t]:
            t1 = time.perf_counter()
            unit = run_unit(snap, sample, examples, ref, G, args, seed=1_000 * t + G + 1_000_003 * args.seed)
            secs = round(time.perf_counter() - t1, 1)
            new = not out.is_file() or out.stat().st_size == 0
            with out.open("a", newline="") as f:
                w = csv.DictWriter(f, fieldnames=fieldnames(), extrasaction="ignore")
                if new:
                    w.writeheader()
                for u in unit:
                    w.writerow({"snapshot_step": t, "rollouts_per_prompt": G, "reference_rollouts": ref.rollouts,
                                "reference_rel_sq_error": ref.rel_noise, "reference_reward_mean": round(ref.reward_mean, 4),
                                "seconds": secs, **u, **settings, **prov})
            print(f"snapshot {t}  G {G}: {args.batches} batches in {secs:.0f} s", flush=True)
    rows = read_rows(out)
    if rows:
        plot(rows, out.with_suffix(".png"))
        print(table(rows))
    return 0


DOCS = ROOT / "docs" / "estimators.md"
DOCS_BLOCK = "grad-variance"
NOT_RUN = "*Not yet run in full: run `python benchmarks/grad_variance.py`; this block is generated from its CSV.*"


def table(rows: list[dict]) -> str:
    """Markdown tables, one per snapshot: per estimator (rows) × G (columns), the relative squared
    error with its 95% CI, then the best-scale error and the cosine (all three noise-corrected).

    >>> r = {"snapshot_step": "0", "estimator": "rloo", "rollouts_per_prompt": "2", "rel_sq_error": "2.5",
    ...      "rel_sq_error_ci95": "0.31", "rel_sq_error_best_scale": "0.71", "cosine": "0.5", "reference_rollouts": "8192",
    ...      "reference_rel_sq_error": "0.0187", "batches": "64", "batch_rollouts": "64"}
    >>> print(table([r]))
    <BLANKLINE>
    **Snapshot step 0** (reference: 8192 rollouts, its own relative error 0.0187, subtracted; 64 batches of 64 rollouts). Cell: ‖g − ∇J‖²/‖∇J‖² ± 95% CI · after the best rescaling · cosine.
    <BLANKLINE>
    | estimator | G = 2 |
    |---|---|
    | rloo | 2.5 ± 0.31 · 0.71 · 0.500 |
    """
    lines = []
    for s in sorted({int(r["snapshot_step"]) for r in rows}):
        rs = [r for r in rows if int(r["snapshot_step"]) == s]
        gs = sorted({int(r["rollouts_per_prompt"]) for r in rs})
        ref = float(rs[0]["reference_rel_sq_error"])
        lines += ["", f"**Snapshot step {s}** (reference: {rs[0]['reference_rollouts']} rollouts, its own relative error "
                      f"{ref:.3g}, subtracted; {rs[0]['batches']} batches of {rs[0]['batch_rollouts']} rollouts). "
                      "Cell: ‖g − ∇J‖²/‖∇J‖² ± 95% CI · after the best rescaling · cosine.",
                  "", "| estimator | " + " | ".join(f"G = {g}" for g in gs) + " |", "|---|" + "---|" * len(gs)]
        for n in dict.fromkeys(r["estimator"] for r in rs):
            cells = []
            for g in gs:
                r = next((r for r in rs if r["estimator"] == n and int(r["rollouts_per_prompt"]) == g), None)
                cells.append(f"{float(r['rel_sq_error']):.3g} ± {float(r['rel_sq_error_ci95']):.2g} · "
                             f"{float(r['rel_sq_error_best_scale']):.2g} · {float(r['cosine']):.3f}" if r else "")
            lines.append(f"| {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def docs_block(rows: list[dict]) -> str:
    """What docs/estimators.md shows between the grad-variance markers: :func:`table` of the
    committed CSV, or a note that it has not been run."""
    return table(rows).lstrip("\n") if rows else NOT_RUN


def write_docs(rows: list[dict], path: Path = DOCS) -> None:
    """Regenerate the grad-variance block of ``path`` (``lab.analysis.docblocks``)."""
    docblocks.write(path, DOCS_BLOCK, docs_block(rows))


if __name__ == "__main__":
    sys.exit(main())
