"""Step time of the lab's trainer against TRL's ``GRPOTrainer`` on identical work, and the floor.

    .venv/bin/pip install -e '.[peers]'               # TRL (compared against: trl 1.16.0)
    nice -n 5 .venv/bin/python benchmarks/step_time_vs_trl.py            # 3 paired rounds
    .venv/bin/python benchmarks/step_time_vs_trl.py --rounds 1 --steps 20 --no-trl

The work, the same for both trainers: one randomly initialised GPT-2 (4 layers x 128 wide,
4 heads, the lab's character tokenizer; saved once, each trainer loads its own copy of
the same weights), 16 prompts x 8 rollouts per optimizer step from the lab's arithmetic
task in the same order, 8 new tokens per completion with end-of-sequence and stop strings
switched off so that both generate every token (TRL: ``min_new_tokens = 8``; the lab: a
fixed-length variant of its ``hf`` backend and of the task, registered here), temperature
1, top-p 1, no reference model, one update per batch (TRL: ``num_iterations = 1``; the
lab: ``ppo_epochs = minibatches = 1``), the same learning rate, logging every step, no
checkpoints, eval or probes, ``torch.set_num_threads(--threads)`` (2) for everything.
The lab trains with its default loss (PPO clip, token-mean) and GRPO advantages; TRL
with its defaults (``loss_type = "dapo"``, group-scaled rewards). The lab never skips
zero-advantage groups: every completion goes through the forward and backward pass, as
in TRL.

A step's time is the wall time from the start of one optimizer step to the start of the
next (TRL: ``on_step_begin`` to ``on_step_begin``; the lab: one prompt-schedule call to the
next), so the trainers' own logging is inside. Each system runs ``--warmup`` (2) untimed
steps, then ``--steps`` (20) timed ones; the median is reported. ``generate_s`` is the
median time spent sampling per step (TRL: ``model.generate``; the lab: the rollout
backend), ``update_s`` the median of the rest of the step.

Systems, run one after the other inside each round (the order rotates from round to round,
so a slow spell of the shared machine does not always hit the same one):

* ``trl``: ``trl.GRPOTrainer`` on the stock transformers GPT-2;
* ``lab``: ``lab.train`` with shadow estimators off (as TRL has none);
* ``lab train (CLI)``: the same work through ``lab train`` in a fresh process, as a user runs it
  (argument parsing, the CLI's handler, the progress bar, no profiler; :data:`CLI_CODE`), timed
  from its own ``metrics.jsonl``: ``median_step_s`` from consecutive ``time/elapsed_s`` (step
  boundary to step boundary, like the others) and ``reported_step_s`` the median
  ``perf/step_time_s`` it reports (rollout to the end of the update, the step's logging outside).
  The README's Results line quotes this row;
* ``lab+shadows``: the same with every shadow estimator on, as a default run has
  (``shadow_estimators = ("all",)``); per-step logging of metrics and samples is on in both;
* ``floor``: the model's bare cost for the work with the model code the lab runs
  (:mod:`lab.models.fast`): one KV-cached generation of the 128 completions in one batch
  plus one forward and backward pass over the 128 full sequences (a summed log-prob as
  the loss); median of ``--steps`` repeats. The lab's own update runs below this floor's
  update: its loss pass computes each prompt once for its G completions
  (``shared_prefix_logits``), which a pass over the full sequences does not. The lab's
  rollout also samples the 128 rows in one batch (the ``hf`` backend sizes its chunks by
  memory; with the old fixed chunks of 64 rows its rollout took ~1.35x longer, and the lab
  sat at ~1.36x the floor);
* ``floor (transformers)`` (with ``--floor-transformers``): the same with transformers' own
  GPT-2 forward, for reference.

Ratios are per round (same round, same machine state), then the median over rounds:
``ratio_to_trl`` = system / trl and ``ratio_to_floor`` = system / floor. Targets: lab
<= 0.85 x trl and <= 1.15 x floor; lab+shadows <= 1.1 x lab. The last one is a few percent
of a step, below the noise of a shared machine's wall times, so it is measured twice:
``ratio_to_lab`` (wall step times, per round in ``ratio_to_lab_rounds``) and
``ratio_to_lab_from_parts`` = 1 + ``extra_over_lab_s`` / lab's step, where
``extra_over_lab_s`` is the per-step time of the parts shadows add to (estimators and
logging on the training thread) minus lab's own, per round. The run writer writes the
files from a thread of its own (``RunWriter.start_background``), so "logging" is building the
samples frame, queueing the step and waiting for the writer where the trainer must (at
checkpoints and the end).

Also printed: the lab's step profile (rollout, reward, estimators, old log-probs, loss
forward, backward, optimizer, logging, other; medians per step over all rounds), and with
``--probes`` the cost of one probe round and one held-out eval at ``TrainConfig``'s default
settings (every 10 steps each; extra sampling by design, so they are reported outside the
comparison): columns ``probe_round_s``, ``eval_s`` (per call) and ``probes_eval_per_step_s``
(both amortised over their interval: what a default run adds per step).

``cpu_step_s`` is the process CPU time per step (all threads) at the same boundaries, and
``cpu_ratio_to_trl`` / ``cpu_ratio_to_floor`` its per-round ratios: with ``--threads 1`` it
does not count the time the process waits for a core, so on a busy machine it shows the
work each system does better than wall time (with 2 threads it also counts threads
spinning while they wait for each other).

Results go to ``data/results/step_time_vs_trl.csv`` (one row per system: the medians, the
ratios, every setting, ``lab.provenance.collect()`` and the TRL version). The machine is
noisy when shared: judge the ratios over several rounds, run with ``nice``, and read the
per-round ratios in the ``ratio_to_trl_rounds`` column.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

import lab
from lab import provenance

TRL_VERSION = "1.16.0"
OUT = Path(__file__).resolve().parent.parent / "data" / "results" / "step_time_vs_trl.csv"
TASK = "arithmetic-fixed-length"
BACKEND = "hf-fixed-length"
BUCKETS = ("rollout", "reward", "estimators", "old log-probs", "loss forward", "backward", "optimizer",
           "logging", "checkpoint", "probes", "eval")


# --- the work ----------------------------------------------------------------------------------------
def register_fixed_length() -> None:
    """Register the fixed-length task and backend (no stop string, no eos) used by the lab side."""
    from lab import rollout, tasks
    from lab.rollout.hf import HFBackend
    from lab.tasks.arithmetic import Arithmetic

    if TASK not in tasks.available():

        @tasks.register(TASK)
        class ArithmeticFixedLength(Arithmetic):
            """The arithmetic task without its stop string (completions run to max_new_tokens)."""

            name = TASK
            stop = ()

    if BACKEND not in rollout.available():

        @rollout.BACKENDS.register(BACKEND)
        class FixedLengthHF(HFBackend):
            """The ``hf`` backend that never stops on eos: every completion has max_new_tokens tokens."""

            def __init__(self, model, tokenizer, **kw):
                super().__init__(model, tokenizer, eos_token_ids=[], **kw)


def unregister_fixed_length() -> None:
    """Undo :func:`register_fixed_length` (tests do, so the registries stay as they were)."""
    from lab import rollout
    from lab.tasks import TASKS

    TASKS.unregister(TASK)
    rollout.BACKENDS.unregister(BACKEND)


def save_random_model(folder: Path, seed: int) -> Path:
    """The randomly initialised tiny GPT-2 and the char tokenizer, saved as an HF folder."""
    from lab.models.tiny import build_char_tokenizer, build_tiny_model

    build_tiny_model(seed=seed).save_pretrained(folder, safe_serialization=True)
    build_char_tokenizer().save_pretrained(folder)
    return folder


def step_prompts(args, n_steps: int) -> list:
    """The lab's prompt schedule for steps 0..n_steps-1 (16 examples per step), flattened."""
    from lab import tasks
    from lab.train import PromptSchedule

    sched = PromptSchedule(tasks.get("arithmetic"), seed=args.seed, per_step=args.prompts, reuse=1)
    return [ex for s in range(n_steps) for ex in sched.prompts(s)]


# --- timing helpers ------------------------------------------------------------------------------------
class Profile:
    """Per-step wall times and per-bucket time of the outermost timed region (nested calls count once)."""

    def __init__(self):
        self.starts: list[float] = []
        self.cpu_starts: list[float] = []
        self.steps: list[dict[str, float]] = []
        self.depth = 0
        self.calls: dict[str, list[float]] = {}

    def step_start(self):
        self.starts.append(time.perf_counter())
        self.cpu_starts.append(time.process_time())
        self.steps.append({})

    def timed(self, bucket, fn, classify=None):
        prof = self

        def wrapper(*a, **kw):
            if prof.depth or not prof.steps:
                return fn(*a, **kw)
            name = classify() if classify else bucket
            prof.depth += 1
            t0 = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                dt = time.perf_counter() - t0
                prof.depth -= 1
                cur = prof.steps[-1]
                cur[name] = cur.get(name, 0.0) + dt
                prof.calls.setdefault(name, []).append(dt)

        wrapper.__wrapped__ = fn
        return wrapper

    def step_times(self, first: int, last: int) -> list[float]:
        """Start-to-start times of steps first..last-1 (needs a start of step ``last``)."""
        return [self.starts[i + 1] - self.starts[i] for i in range(first, last)]


class _TimedEstimator:
    def __init__(self, est, prof):
        self._est = est
        self._call = prof.timed("estimators", est.__call__)

    def __call__(self, *a, **kw):
        return self._call(*a, **kw)

    def __getattr__(self, name):
        return getattr(self._est, name)


@contextlib.contextmanager
def patched(prof: Profile):
    """Patch the trainer's pieces with timers for the duration of one lab run."""
    from lab import estimators, losses, models, runs, train

    saved = []

    def patch(obj, name, bucket, classify=None):
        fn = getattr(obj, name, None)
        if fn is None:
            return
        saved.append((obj, name, fn))
        setattr(obj, name, prof.timed(bucket, fn, classify))

    orig_prompts = train.PromptSchedule.prompts

    def prompts(self, step):
        prof.step_start()
        return orig_prompts(self, step)

    saved.append((train.PromptSchedule, "prompts", orig_prompts))
    train.PromptSchedule.prompts = prompts
    patch(train.Trainer, "generate", "rollout")
    patch(train.Trainer, "rewards", "reward")
    patch(train.Trainer, "run_probes", "probes")
    patch(train.Trainer, "evaluate", "eval")
    patch(train.Trainer, "_samples_frame", "logging")
    patch(train.Trainer, "save_checkpoint", "checkpoint")
    patch(models, "completion_logprobs", None, lambda: "loss forward" if torch.is_grad_enabled() else "old log-probs")
    patch(losses, "policy_loss", "loss forward")
    patch(losses, "kl_penalty", "loss forward")
    patch(torch.Tensor, "backward", "backward")
    patch(torch.nn.utils, "clip_grad_norm_", "optimizer")
    patch(torch.optim.AdamW, "step", "optimizer")
    # logging on the training thread: building the samples frame, queueing the step for the
    # writer thread, and waiting for it (flush: checkpoints, the callback, the end); the
    # writer thread's own file writing overlaps the next step and is not in any bucket
    for name in ("log_step", "log_metrics", "log_samples", "log_probes", "set_status", "flush"):
        patch(runs.RunWriter, name, "logging")
    orig_get = estimators.get
    saved.append((estimators, "get", orig_get))
    estimators.get = lambda *a, **kw: _TimedEstimator(orig_get(*a, **kw), prof)
    try:
        yield prof
    finally:
        for obj, name, fn in reversed(saved):
            setattr(obj, name, fn)


# --- the systems ---------------------------------------------------------------------------------------
def run_lab(args, model_dir: Path, out_dir: Path, name: str, *, shadows: bool, probes: bool = False) -> dict:
    from lab.config import TrainConfig
    from lab.train import train

    DEFAULTS = TrainConfig()

    n = args.warmup + args.steps
    cfg = TrainConfig(
        model=str(model_dir), task=TASK, rollout_backend=BACKEND, estimator="grpo",
        shadow_estimators=("all",) if shadows else (), rollouts_per_prompt=args.group, prompts_per_step=args.prompts,
        steps=n + 1, lr=args.lr, max_new_tokens=args.new_tokens, temperature=1.0, top_p=1.0,
        ppo_epochs=1, minibatches=1, use_ref_model=False,
        probe_every=DEFAULTS.probe_every if probes else 0, eval_every=DEFAULTS.eval_every if probes else 0, checkpoint_every=0,
        seed=args.seed, device="cpu", dtype="float32", output_dir=str(out_dir), run_name=name, quiet=True,
    )
    prof = Profile()
    with patched(prof):
        train(cfg)
    times = prof.step_times(args.warmup, n)  # the last step (it saves the final checkpoint) is not timed
    parts = [prof.steps[i] for i in range(args.warmup, n)]
    gen = [p.get("rollout", 0.0) for p in parts]
    cpu = [prof.cpu_starts[i + 1] - prof.cpu_starts[i] for i in range(args.warmup, n)]
    return {"times": times, "generate": gen, "update": [t - g for t, g in zip(times, gen)], "parts": parts,
            "calls": prof.calls, "cpu": cpu}


CLI_CODE = ("import sys, torch; from benchmarks import step_time_vs_trl as b; b.register_fixed_length(); "
            "torch.set_num_threads(int(sys.argv[1])); from lab.cli import main; sys.exit(main(sys.argv[2:]))")
"""``lab train`` as a user runs it, in a fresh process: the fixed-length task and backend registered first
(the only difference from the ``lab`` console script), then the CLI's own argument parsing and handler."""


def run_lab_cli(args, model_dir: Path, out_dir: Path, name: str) -> dict:
    """``lab train`` in a subprocess with the ``lab`` system's settings; times from its own metrics file.

    ``times``: differences of ``time/elapsed_s`` between consecutive steps (step boundary to step
    boundary, as the other systems are timed); ``reported``: ``perf/step_time_s``, what ``lab train``
    reports per step (rollout to the end of the update, the step's logging outside)."""
    import json
    import os
    import subprocess

    n = args.warmup + args.steps
    flags = {"model": str(model_dir), "task": TASK, "rollout-backend": BACKEND, "estimator": "grpo",
             "shadow-estimators": "[]", "rollouts-per-prompt": args.group, "prompts-per-step": args.prompts,
             "steps": n + 1, "lr": args.lr, "max-new-tokens": args.new_tokens, "temperature": 1.0, "top-p": 1.0,
             "ppo-epochs": 1, "minibatches": 1, "probe-every": 0, "eval-every": 0,
             "checkpoint-every": 0, "seed": args.seed, "device": "cpu", "dtype": "float32",
             "output-dir": str(out_dir), "run-name": name}  # no --quiet: its progress bar, as a user sees it
    cmd = [sys.executable, "-c", CLI_CODE, str(args.threads), "train"] + [x for k, v in flags.items() for x in (f"--{k}", str(v))]
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"lab train failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    rows = [json.loads(line) for line in (out_dir / name / "metrics.jsonl").read_text().splitlines() if line.strip()]
    el = [float(r["time/elapsed_s"]) for r in rows]
    # time/elapsed_s is stamped as step i is logged: step i took el[i] - el[i - 1]
    times = [el[i] - el[i - 1] for i in range(max(1, args.warmup), n)]
    gen = [float(rows[i]["perf/rollout_time_s"]) for i in range(max(1, args.warmup), n)]
    reported = [float(rows[i]["perf/step_time_s"]) for i in range(max(1, args.warmup), n)]
    return {"times": times, "generate": gen, "update": [t - g for t, g in zip(times, gen)], "reported": reported,
            "cpu": [float("nan")] * len(times)}


def run_trl(args, model_dir: Path, out_dir: Path, examples: list) -> dict:
    import datasets
    import transformers
    from trl import GRPOConfig, GRPOTrainer

    from lab import models, tasks

    transformers.utils.logging.set_verbosity_error()
    datasets.disable_progress_bars()
    task = tasks.get("arithmetic")
    by_prompt = {ex.prompt: ex for ex in examples}

    def reward(prompts, completions, **kw):
        return [float(task.reward(c, by_prompt[p])) for p, c in zip(prompts, completions)]

    n = args.warmup + args.steps
    model, tok = models.load(str(model_dir), device="cpu", dtype="float32")
    data = datasets.Dataset.from_dict({"prompt": [ex.prompt for ex in examples]})
    cfg = GRPOConfig(
        output_dir=str(out_dir), per_device_train_batch_size=args.prompts * args.group, num_generations=args.group,
        gradient_accumulation_steps=1, steps_per_generation=1, num_iterations=1, max_completion_length=args.new_tokens,
        temperature=1.0, top_p=1.0, beta=0.0, learning_rate=args.lr, max_steps=n + 1, logging_steps=1,
        report_to="none", save_strategy="no", use_cpu=True, bf16=False, fp16=False, shuffle_dataset=False,
        seed=args.seed, dataloader_num_workers=0, disable_tqdm=True, generation_kwargs={"min_new_tokens": args.new_tokens},
    )
    starts, gen, cpu_starts = [], [], []

    class Timer(transformers.TrainerCallback):
        def on_step_begin(self, a, state, control, **kw):
            starts.append(time.perf_counter())
            cpu_starts.append(time.process_time())
            gen.append(0.0)

    trainer = GRPOTrainer(model=model, reward_funcs=[reward], args=cfg, train_dataset=data, processing_class=tok,
                          callbacks=[Timer()])
    orig_generate = trainer.model.generate

    def generate(*a, **kw):
        t0 = time.perf_counter()
        try:
            return orig_generate(*a, **kw)
        finally:
            if gen:
                gen[-1] += time.perf_counter() - t0

    trainer.model.generate = generate
    trainer.train()
    times = [starts[i + 1] - starts[i] for i in range(args.warmup, n)]
    g = gen[args.warmup:n]
    cpu = [cpu_starts[i + 1] - cpu_starts[i] for i in range(args.warmup, n)]
    return {"times": times, "generate": g, "update": [t - x for t, x in zip(times, g)], "cpu": cpu}


def run_floor(args, model_dir: Path, examples: list, *, lean: bool) -> dict:
    """One KV-cached generation of the 128 completions + one forward/backward over the full sequences."""
    from transformers import DynamicCache

    from lab import models
    from lab.models import fast
    from lab.models.logprobs import position_ids_from_mask
    from lab.rollout.base import left_pad, tokenize_prompts

    model, tok = models.load(str(model_dir), device="cpu", dtype="float32")
    model.eval()
    if lean:
        fast.accelerate(model)
    T = args.new_tokens
    per = args.prompts
    gen_t, upd_t, cpu_t = [], [], []
    for rep in range(args.warmup + args.steps):
        exs = examples[(rep * per) % len(examples):][:per]
        seqs = [s for s in tokenize_prompts(tok, [e.prompt for e in exs]) for _ in range(args.group)]
        ids, mask = left_pad(seqs, tok.pad_token_id)  # (N, P)
        t0, c0 = time.perf_counter(), time.process_time()
        with torch.no_grad():
            attn = mask.long()
            pos = position_ids_from_mask(attn)
            cache = DynamicCache(config=model.config)
            logits = model(input_ids=ids, attention_mask=attn, position_ids=pos, cache=cache, use_cache=True,
                           logits_to_keep=1).logits[:, -1]
            nxt = pos[:, -1:] + 1
            toks = []
            for t in range(T):
                tk = torch.multinomial(torch.softmax(logits.float(), -1), 1)  # (N, 1)
                toks.append(tk)
                if t == T - 1:
                    break
                attn = torch.cat([attn, torch.ones_like(tk)], 1)
                logits = model(input_ids=tk, attention_mask=attn, position_ids=nxt, cache=cache, use_cache=True,
                               logits_to_keep=1).logits[:, -1]
                nxt = nxt + 1
        comp = torch.cat(toks, 1)  # (N, T)
        t1 = time.perf_counter()
        full = torch.cat([ids, comp], 1)
        fmask = torch.cat([mask.long(), torch.ones_like(comp)], 1)
        out = model(input_ids=full, attention_mask=fmask, position_ids=position_ids_from_mask(fmask),
                    logits_to_keep=T + 1).logits[:, :-1]  # (N, T, V)
        logp = torch.log_softmax(out.float(), -1).gather(-1, comp[..., None]).sum()
        (-logp).backward()
        t2 = time.perf_counter()
        model.zero_grad(set_to_none=True)
        if rep >= args.warmup:
            gen_t.append(t1 - t0)
            upd_t.append(t2 - t1)
            cpu_t.append(time.process_time() - c0)
    return {"times": [g + u for g, u in zip(gen_t, upd_t)], "generate": gen_t, "update": upd_t, "cpu": cpu_t}


# --- the run ---------------------------------------------------------------------------------------------
def med(xs):
    return float(statistics.median(xs)) if xs else float("nan")


def main(argv=None) -> pd.DataFrame:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3, help="paired rounds of every system")
    ap.add_argument("--steps", type=int, default=20, help="timed steps per system per round")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps before them")
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--group", type=int, default=8, help="rollouts per prompt (G)")
    ap.add_argument("--new-tokens", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-trl", action="store_true", help="skip TRL (lab, shadows and floors only)")
    ap.add_argument("--probes", action="store_true", help="also time one probe round and one eval at default settings")
    ap.add_argument("--floor-transformers", action="store_true", help="also the floor with transformers' own GPT-2 code")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    if args.steps < 1 or args.rounds < 1:
        ap.error("--steps and --rounds must be >= 1")

    torch.set_num_threads(args.threads)
    trl_version = None
    if not args.no_trl:
        try:
            import trl
        except ImportError:
            sys.exit("TRL is not installed: .venv/bin/pip install -e '.[peers]' (or run with --no-trl)")
        trl_version = trl.__version__
        if trl_version != TRL_VERSION:
            print(f"note: comparing against trl {trl_version}; this benchmark was written against {TRL_VERSION}")
    register_fixed_length()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    systems = (["trl"] if not args.no_trl else []) + ["lab", "lab train (CLI)", "lab+shadows", "floor"]
    if args.floor_transformers:
        systems.append("floor (transformers)")
    results: dict[str, list[dict]] = {s: [] for s in systems}
    with tempfile.TemporaryDirectory(prefix="step_time_vs_trl_") as tmp:
        tmp = Path(tmp)
        model_dir = save_random_model(tmp / "model", args.seed)
        examples = step_prompts(args, args.warmup + args.steps + 1)
        for r in range(args.rounds):
            order = systems[r % len(systems):] + systems[: r % len(systems)]
            for s in order:
                t0 = time.perf_counter()
                if s == "trl":
                    res = run_trl(args, model_dir, tmp / f"trl{r}", examples)
                elif s == "lab":
                    res = run_lab(args, model_dir, tmp / "runs", f"lab{r}", shadows=False)
                elif s == "lab train (CLI)":
                    res = run_lab_cli(args, model_dir, tmp / "runs", f"cli{r}")
                elif s == "lab+shadows":
                    res = run_lab(args, model_dir, tmp / "runs", f"shadows{r}", shadows=True)
                else:
                    res = run_floor(args, model_dir, examples, lean=(s == "floor"))
                results[s].append(res)
                print(f"round {r + 1}/{args.rounds} {s:22s} median step {med(res['times']):.4f} s "
                      f"(generate {med(res['generate']):.4f}, rest {med(res['update']):.4f})  [{time.perf_counter() - t0:.0f} s]",
                      flush=True)
            table(results, systems, args, trl_version).to_csv(args.out, index=False)  # a finished round is never lost
        probe_cost = run_lab(args, model_dir, tmp / "runs", "probes", shadows=True, probes=True) if args.probes else None
    df = table(results, systems, args, trl_version)
    report(df, results, args, probe_cost)
    return df


def table(results: dict, systems: list[str], args, trl_version) -> pd.DataFrame:
    """One row per system: medians over rounds of the per-round medians, per-round ratios' medians."""
    done = min(len(results[s]) for s in systems)

    def per_round_ratio(s, ref):
        return [med(a["times"]) / med(b["times"]) for a, b in zip(results[s][:done], results[ref][:done])]

    def cpu_ratio(s, ref):
        return [med(a["cpu"]) / med(b["cpu"]) for a, b in zip(results[s][:done], results[ref][:done])]

    def extra_parts(s):
        """Per round: median per-step (estimators + logging) of ``s`` minus lab's, and that over lab's median step."""
        if "parts" not in (results[s][:1] or [{}])[0]:
            return [], []
        d, r = [], []
        for a, b in zip(results[s][:done], results["lab"][:done]):
            own = lambda x: med([p.get("estimators", 0.0) + p.get("logging", 0.0) for p in x["parts"]])  # noqa: E731
            d.append(own(a) - own(b))
            r.append(1.0 + d[-1] / med(b["times"]))
        return d, r

    prov = provenance.collect("cpu")
    rows = []
    for s in systems:
        rs = results[s][:done]
        row = {
            "system": s,
            "median_step_s": med([med(x["times"]) for x in rs]),
            "generate_s": med([med(x["generate"]) for x in rs]),
            "update_s": med([med(x["update"]) for x in rs]),
            "ratio_to_trl": med(per_round_ratio(s, "trl")) if "trl" in results else float("nan"),
            "ratio_to_floor": med(per_round_ratio(s, "floor")),
            "ratio_to_lab": med(per_round_ratio(s, "lab")),
            "ratio_to_trl_rounds": " ".join(f"{x:.3f}" for x in per_round_ratio(s, "trl")) if "trl" in results else "",
            "ratio_to_lab_rounds": " ".join(f"{x:.3f}" for x in per_round_ratio(s, "lab")),
            "extra_over_lab_s": med(extra_parts(s)[0]),
            "ratio_to_lab_from_parts": med(extra_parts(s)[1]),
            "reported_step_s": med([med(x["reported"]) for x in rs]) if "reported" in (rs[:1] or [{}])[0] else float("nan"),
            "cpu_step_s": med([med(x["cpu"]) for x in rs]),
            "cpu_ratio_to_trl": med(cpu_ratio(s, "trl")) if "trl" in results else float("nan"),
            "cpu_ratio_to_floor": med(cpu_ratio(s, "floor")),
            "rounds": done, "timed_steps": args.steps, "warmup_steps": args.warmup,
            "prompts_per_step": args.prompts, "rollouts_per_prompt": args.group, "new_tokens": args.new_tokens,
            "threads": args.threads, "lr": args.lr, "model": "gpt2 4x128 random init, char tokenizer",
            "trl_version": trl_version,
            **{f"prov_{k}": v for k, v in prov.items()},
        }
        rows.append(row)
    return pd.DataFrame(rows)


def report(df: pd.DataFrame, results: dict, args, probe_cost) -> None:
    """Print the table, the lab's step profile and the targets; write the CSV."""
    print(f"\nstep time, median over {args.steps} steps after {args.warmup} warm-up, {args.rounds} round(s), "
          f"{args.threads} threads ({args.prompts} prompts x {args.group} rollouts, {args.new_tokens} new tokens)")
    cols = ["system", "median_step_s", "generate_s", "update_s", "ratio_to_trl", "ratio_to_floor", "ratio_to_lab",
            "reported_step_s", "cpu_step_s", "cpu_ratio_to_trl", "cpu_ratio_to_floor"]
    print(df[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    lab_parts = [p for x in results["lab"] for p in x["parts"]]
    sh_parts = [p for x in results["lab+shadows"] for p in x["parts"]]
    lab_times = [t for x in results["lab"] for t in x["times"]]
    sh_times = [t for x in results["lab+shadows"] for t in x["times"]]
    print("\nlab step profile (median seconds per step over all rounds; 'other' = step - the parts):")
    print(f"{'part':16s} {'lab':>8s} {'lab+shadows':>12s}")
    for b in BUCKETS[:9]:
        a, c = med([p.get(b, 0.0) for p in lab_parts]), med([p.get(b, 0.0) for p in sh_parts])
        print(f"{b:16s} {a:8.4f} {c:12.4f}")
    other = med([t - sum(p.values()) for t, p in zip(lab_times, lab_parts)])
    other_s = med([t - sum(p.values()) for t, p in zip(sh_times, sh_parts)])
    print(f"{'other':16s} {other:8.4f} {other_s:12.4f}")
    print(f"{'step':16s} {med(lab_times):8.4f} {med(sh_times):12.4f}")
    if "trl" in results:
        lab_r, sh_r = df.set_index("system").loc["lab"], df.set_index("system").loc["lab+shadows"]
        print(f"\ntargets: lab/trl = {lab_r.ratio_to_trl:.3f} (<= 0.85), lab/floor = {lab_r.ratio_to_floor:.3f} (<= 1.15), "
              f"lab+shadows/lab = {sh_r.ratio_to_lab:.3f} (<= 1.1)")
    sh_r = df.set_index("system").loc["lab+shadows"]
    print(f"\nshadows + their logging: lab+shadows/lab = {sh_r.ratio_to_lab:.3f} from wall step times "
          f"(per round: {sh_r.ratio_to_lab_rounds}); from the profile, estimators + logging cost "
          f"{sh_r.extra_over_lab_s * 1e3:.1f} ms more per step than lab's, i.e. {sh_r.ratio_to_lab_from_parts:.3f}x lab's step (target <= 1.1)")
    if probe_cost is not None:
        from lab.config import TrainConfig

        d = TrainConfig()
        c = probe_cost["calls"]
        pr, ev = med(c.get("probes", [])), med(c.get("eval", []))
        per_step = pr / d.probe_every + ev / d.eval_every
        print(f"\nprobes and eval (default settings: probes every {d.probe_every} steps, {d.probe_prompts} prompts x "
              f"{d.probe_samples} samples; eval every {d.eval_every}, {d.eval_prompts} prompts x {d.eval_samples}): "
              f"one probe round {pr:.3f} s, one eval {ev:.3f} s; {per_step:.3f} s per step amortised "
              f"({per_step / med([t for x in results['lab'] for t in x['times']]):.2f}x a lab step), outside the comparison")
        df["probe_round_s"] = pr
        df["eval_s"] = ev
        df["probes_eval_per_step_s"] = per_step
    df.to_csv(args.out, index=False)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
