"""Supervised warm-start of the shipped tiny model: ``run_pretrain(PretrainConfig()) -> Path``.

Why a warm start: RL with verifiable rewards only learns from prompts where the
policy *sometimes* succeeds (a group of all-0 or all-1 rewards carries no
signal). A random model never answers ``12+7=`` correctly, a fully trained one
always does; the lab needs one in between whose *sampling* distribution holds
the right answer with moderate probability, so pass@k is high and pass@1 low and
RL visibly sharpens it in a few CPU minutes. Two knobs make it so:

- a fixed, short training budget (``steps``) on clean labels, which leaves easy
  prompts (small operands) mostly known and hard ones mostly not;
- ``label_noise`` from ``noise_from_step`` on: in a short last phase that share of
  training answers is replaced by a near miss (the answer +-1 or +-10,
  :func:`near_miss`), so the model learns to put moderate probability on the
  right answer and the rest on plausible wrong ones. Learned last and on top of
  what the model knows, the habit is generic, and RL strips it quickly. (Noise
  from step 0 instead slows the learning of the arithmetic itself: 3,000 steps at
  0.6 gave greedy 0.17, pass@1 0.10, and GRPO barely moved it.)

``output_temperature`` (folded into the last layer norm, :func:`fold_temperature`)
can flatten the saved model further without changing its greedy answers. The
early-stopping rule ``stop_at_accuracy`` (a threshold on a *sampled* validation
accuracy) is off by default: it turned last-bit float differences between CPUs
into hundreds of extra steps.

Each training sequence is ``prompt + answer + <|endoftext|>``; the loss is the
mean cross-entropy over the answer and end tokens only (the prompt is given).

The output directory holds: ``model.safetensors`` + ``config.json`` +
``generation_config.json`` (loadable with ``AutoModelForCausalLM``), the
tokenizer files (``AutoTokenizer``), ``pretrain_config.json`` (the recipe: every
field but ``output_dir`` and ``overwrite``), ``eval.json`` (held-out numbers,
pass@k, provenance) and ``README.md`` (the model card). A folder that already
holds files is refused unless ``overwrite``.

Deterministic for a seed on CPU: seeded torch RNG, ``torch.use_deterministic_algorithms(True)``,
the task's seeded example stream, a seeded noise stream, seeded evaluation sampling,
and ``threads`` (1) torch threads set for the run, so the bytes do not depend on the
machine's core count. They do depend on the CPU's vector kernels (see docs/models.md).
``python -m lab.models.pretrain --help``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from lab.errors import UsageError
from lab.models.tiny import build_char_tokenizer, build_tiny_model, tiny_config
from lab.tasks.base import Example


@dataclass(frozen=True)
class PretrainConfig:
    """Everything that defines a pretraining run of the tiny model."""

    output_dir: str = "data/models/tiny-arith"
    """Where to write the checkpoint (created); a folder that already holds files is refused unless overwrite."""
    overwrite: bool = False
    """Allow replacing the files of a non-empty output_dir (never saved in pretrain_config.json)."""
    seed: int = 0
    """Seed for initialisation, data order and evaluation sampling."""
    steps: int = 6300
    """Optimizer steps (fewer only if stop_at_accuracy > 0 stops the run early)."""
    batch_size: int = 64
    """Sequences per optimizer step."""
    lr: float = 1e-3
    """Peak AdamW learning rate (linear warm-up, then constant)."""
    warmup_steps: int = 50
    """Linear learning-rate warm-up steps."""
    weight_decay: float = 0.01
    """AdamW weight decay."""
    n_layer: int = 4
    """Transformer blocks."""
    n_embd: int = 128
    """Model width (d_model)."""
    n_head: int = 4
    """Attention heads."""
    n_positions: int = 128
    """Context length (learned positions): prompt + completion must fit."""
    task: str = "arithmetic"
    """Task to warm-start on (see lab.tasks.available())."""
    task_params: dict = field(default_factory=dict)
    """Task parameters as JSON, e.g. '{"max_digits": 2}' (the task's defaults when empty)."""
    stop_at_accuracy: float = 0.0
    """Stop when validation sampled accuracy (temperature 1) reaches this; 0 = train all steps (the default:
    a threshold on a sampled accuracy turns last-bit float differences into hundreds of steps)."""
    eval_every: int = 100
    """Steps between validation checks for stop_at_accuracy."""
    n_val: int = 128
    """Validation prompts (train split, separate seed) for the stopping rule."""
    n_eval: int = 500
    """Held-out prompts (test split) for the model card's numbers."""
    eval_samples: int = 16
    """Samples per held-out prompt for the sampled accuracy at temperature 1."""
    max_new_tokens: int = 8
    """Generation budget when evaluating."""
    device: str = "cpu"
    """Device: cpu (deterministic), cuda, mps or auto."""
    label_noise: float = 0.7
    """Share of training answers replaced by a near miss (the answer +-1 or +-10, see near_miss): the model
    learns to say the right answer with moderate probability and plausible wrong ones otherwise."""
    noise_from_step: int = 6001
    """First step whose batches get label_noise (0 = all steps): a clean phase teaches the arithmetic, a short
    noisy phase after it adds a thin, generic layer of near misses that RL strips quickly."""
    threads: int = 1
    """Torch CPU threads while pretraining: float sums, hence the weights' bytes, depend on it (0 = leave as is)."""
    output_temperature: float = 1.0
    """Divide the final logits by this, folded into the last layer norm: sampling the saved model at T = 1
    is sampling the trained one at this temperature (greedy answers unchanged); 1 = unchanged."""

    def __post_init__(self):
        for name in ("steps", "batch_size", "n_layer", "n_embd", "n_head", "n_positions", "eval_every", "n_val",
                     "n_eval", "eval_samples", "max_new_tokens"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        if not isinstance(self.threads, int) or isinstance(self.threads, bool) or self.threads < 0:
            raise ValueError(f"threads must be an integer >= 0 (0 = leave torch's setting), got {self.threads!r}")
        if not (isinstance(self.output_temperature, (int, float)) and self.output_temperature > 0):
            raise ValueError(f"output_temperature must be a number > 0 (1 = unchanged), got {self.output_temperature!r}")
        if not isinstance(self.noise_from_step, int) or isinstance(self.noise_from_step, bool) or self.noise_from_step < 0:
            raise ValueError(f"noise_from_step must be an integer >= 0 (0 = noise from the start), got {self.noise_from_step!r}")
        if not (isinstance(self.label_noise, (int, float)) and 0 <= self.label_noise < 1):
            raise ValueError(f"label_noise must be a share in [0, 1), got {self.label_noise!r}")
        if not isinstance(self.output_dir, str) or not self.output_dir:
            raise ValueError("output_dir must be a folder path")


SAVED_FIELDS_EXCLUDED = ("output_dir", "overwrite")
"""Config fields left out of ``pretrain_config.json``: where and how one invocation writes, not the recipe
(so a re-run from a saved config writes to the default folder, which is refused when it holds a model)."""


def recipe(cfg: PretrainConfig) -> dict:
    """The config as saved in ``pretrain_config.json`` (every field but :data:`SAVED_FIELDS_EXCLUDED`).

    >>> sorted(set(dataclasses.asdict(PretrainConfig())) - set(recipe(PretrainConfig())))
    ['output_dir', 'overwrite']
    """
    return {k: v for k, v in dataclasses.asdict(cfg).items() if k not in SAVED_FIELDS_EXCLUDED}


def check_output_dir(cfg: PretrainConfig) -> Path:
    """``cfg.output_dir`` as a Path; raises ``UsageError`` (a ``ValueError``) if it holds files and not ``cfg.overwrite``.

    The saved ``pretrain_config.json`` of the shipped model names the shipped folder, so a
    re-run from it without ``--output-dir`` would otherwise replace the shipped checkpoint.
    """
    out = Path(cfg.output_dir)
    if out.exists() and not out.is_dir():
        raise UsageError(f"output_dir {str(out)!r} is a file; give a folder path with --output-dir")
    held = sorted((p.name for p in out.iterdir()), key=lambda n: (n != "model.safetensors", n)) if out.is_dir() else []
    if held and not cfg.overwrite:
        shown = ", ".join(held[:3]) + (f" and {len(held) - 3} more" if len(held) > 3 else "")
        raise UsageError(
            f"output_dir {str(out)!r} is not empty (holds {shown}); choose a new folder with --output-dir, "
            "or pass --overwrite to replace its files"
        )
    return out


def fold_temperature(model, temperature: float) -> None:
    """Divide the model's logits by ``temperature`` by scaling its final layer norm (in place).

    For GPT-2, ``logits = ln_f(h) @ W_e^T``: scaling ``ln_f``'s weight and bias by 1/T scales
    every logit by 1/T exactly, so the model's T = 1 distribution becomes the old one at
    temperature T, and the argmax (greedy decoding) is unchanged.

    >>> import torch
    >>> from lab.models.tiny import build_tiny_model, tiny_config
    >>> m = build_tiny_model(tiny_config(n_layer=1, n_embd=16, n_head=2), seed=0).eval()
    >>> x = torch.tensor([[5, 6, 7]])
    >>> before = m(x).logits
    >>> fold_temperature(m, 2.0)
    >>> torch.allclose(m(x).logits, before / 2, atol=1e-6)
    True
    """
    if temperature == 1.0:
        return
    ln_f = model.transformer.ln_f
    with torch.no_grad():
        ln_f.weight.div_(temperature)
        ln_f.bias.div_(temperature)


# --------------------------------------------------------------------------- data


def make_task(name: str, params: dict):
    """``lab.tasks.get(name, **params)``: a task instance."""
    from lab import tasks

    return tasks.get(name, **params)


def take_examples(task, split: str, seed: int, n: int) -> list:
    """``n`` examples of ``split``: distinct ones via ``task.dataset`` when the task has it,
    else the first ``n`` of ``task.examples(split, seed)``."""
    if hasattr(task, "dataset"):
        exs = list(task.dataset(split, n, seed))
    else:
        exs = list(itertools.islice(task.examples(split, seed), n))
    if not exs:
        raise ValueError(f"task {getattr(task, 'name', task)!r} yields no {split!r} examples")
    return exs


NEAR_MISSES = (-10, -1, 1, 10)
"""Offsets of a near-miss answer: one off in the last digit or the tens digit."""


def near_miss(answer: str, rng: random.Random) -> str:
    """A plausible wrong answer: ``answer`` plus an offset drawn uniformly from :data:`NEAR_MISSES`.

    A non-integer answer is returned unchanged (the noise applies to numeric tasks only).

    >>> rng = random.Random(0)
    >>> [near_miss("42", rng) for _ in range(4)]
    ['52', '52', '32', '43']
    >>> near_miss("x", rng)
    'x'
    """
    try:
        value = int(answer)
    except ValueError:
        return answer
    return str(value + rng.choice(NEAR_MISSES))


def with_label_noise(examples: list, share: float, rng: random.Random) -> list:
    """``examples`` with each answer replaced by a :func:`near_miss` with probability ``share``.

    >>> exs = [Example(0, "1+1=", "2"), Example(1, "2+2=", "4")]
    >>> [e.answer for e in with_label_noise(exs, 0.0, random.Random(0))]
    ['2', '4']
    >>> [e.answer for e in with_label_noise(exs, 0.99, random.Random(0))]
    ['12', '14']
    """
    if share <= 0:
        return examples
    return [dataclasses.replace(ex, answer=near_miss(ex.answer, rng)) if rng.random() < share else ex for ex in examples]


def encode_batch(tokenizer, examples: list) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded ``prompt + answer + eos`` ids, attention mask and loss mask (answer + eos).

    Shapes: -> ids (B, L) long, attn (B, L) long, loss_mask (B, L) bool; ``loss_mask[b, t]`` marks
    tokens that are predicted (targets), i.e. the answer and the end token.

    >>> from types import SimpleNamespace as NS
    >>> tok = build_char_tokenizer()
    >>> ids, attn, lm = encode_batch(tok, [NS(prompt="1+2=", answer="3"), NS(prompt="10+2=", answer="12")])
    >>> tok.decode(ids[0]), lm[0].int().tolist()
    ('1+2=3<|endoftext|><|pad|><|pad|>', [0, 0, 0, 0, 1, 1, 0, 0])
    >>> lm[1].int().tolist()
    [0, 0, 0, 0, 0, 1, 1, 1]
    """
    eos = tokenizer.eos_token_id
    seqs, masks = [], []
    for ex in examples:
        p = tokenizer(ex.prompt, add_special_tokens=False)["input_ids"]
        a = tokenizer(ex.answer, add_special_tokens=False)["input_ids"] + [eos]
        seqs.append(p + a)
        masks.append([False] * len(p) + [True] * len(a))
    L = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), L), tokenizer.pad_token_id, dtype=torch.long)
    attn = torch.zeros((len(seqs), L), dtype=torch.long)
    loss_mask = torch.zeros((len(seqs), L), dtype=torch.bool)
    for i, (s, m) in enumerate(zip(seqs, masks)):
        ids[i, : len(s)] = torch.tensor(s)
        attn[i, : len(s)] = 1
        loss_mask[i, : len(s)] = torch.tensor(m)
    return ids, attn, loss_mask


def answer_loss(model, ids: torch.Tensor, attn: torch.Tensor, loss_mask: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over the ``loss_mask`` targets. Shapes: (B, L) -> scalar."""
    logits = model(input_ids=ids, attention_mask=attn).logits[:, :-1]  # (B, L-1, V) predicts ids[:, 1:]
    targets = ids[:, 1:]  # (B, L-1)
    m = loss_mask[:, 1:]  # (B, L-1)
    nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="none")
    return (nll * m.reshape(-1).float()).sum() / m.sum().clamp(min=1)


# --------------------------------------------------------------------------- evaluation


def evaluate(model, tokenizer, task, examples: list, *, samples: int, max_new_tokens: int, seed: int) -> dict:
    """Greedy accuracy and mean sampled accuracy (temperature 1) with per-prompt success rates.

    Returns a dict: ``greedy_accuracy``, ``sampled_accuracy`` (mean over prompts of the fraction
    of ``samples`` correct), ``per_prompt`` (that fraction per prompt, list), ``n``.
    """
    from lab.rollout import HFBackend, SamplingParams

    backend = HFBackend(model, tokenizer, max_batch_size=512)
    stop = tuple(getattr(task, "stop", ()) or ())
    prompts = [ex.prompt for ex in examples]
    greedy = backend.generate(prompts, SamplingParams(temperature=0.0, max_new_tokens=max_new_tokens, stop=stop))
    g = [task.reward(t, ex) for t, ex in zip(greedy.texts, examples)]
    sampled = backend.generate(
        prompts, SamplingParams(n=samples, temperature=1.0, max_new_tokens=max_new_tokens, stop=stop, seed=seed)
    )
    r = torch.tensor([task.reward(t, examples[i]) for t, i in zip(sampled.texts, sampled.prompt_index.tolist())])
    per_prompt = r.view(len(examples), samples).mean(1)  # (n,)
    return {
        "greedy_accuracy": float(sum(g) / len(g)),
        "sampled_accuracy": float(per_prompt.mean()),
        "per_prompt": [round(float(x), 4) for x in per_prompt],
        "n": len(examples),
    }


def success_histogram(per_prompt: list[float]) -> dict[str, float]:
    """Fraction of prompts by success probability: exactly 0, (0, .25], (.25, .5], (.5, .75], (.75, 1), exactly 1.

    >>> success_histogram([0.0, 0.125, 0.5, 1.0])
    {'0': 0.25, '(0,0.25]': 0.25, '(0.25,0.5]': 0.25, '(0.5,0.75]': 0.0, '(0.75,1)': 0.0, '1': 0.25}
    """
    bins = {"0": 0, "(0,0.25]": 0, "(0.25,0.5]": 0, "(0.5,0.75]": 0, "(0.75,1)": 0, "1": 0}
    for p in per_prompt:
        key = "0" if p <= 0 else "1" if p >= 1 else "(0,0.25]" if p <= 0.25 else "(0.25,0.5]" if p <= 0.5 else "(0.5,0.75]" if p <= 0.75 else "(0.75,1)"
        bins[key] += 1
    return {k: round(v / max(len(per_prompt), 1), 4) for k, v in bins.items()}


def accuracy_by_group(examples: list, per_prompt: list[float]) -> dict[str, dict]:
    """Mean per-prompt success grouped by ``meta["op"]`` and ``meta["difficulty"]`` (when present).

    >>> from types import SimpleNamespace as NS
    >>> exs = [NS(meta={"op": "+", "difficulty": 1}), NS(meta={"op": "+", "difficulty": 1}), NS(meta={"op": "*", "difficulty": 2})]
    >>> accuracy_by_group(exs, [1.0, 0.5, 0.0])
    {'* d2': {'n': 1, 'sampled_accuracy': 0.0}, '+ d1': {'n': 2, 'sampled_accuracy': 0.75}}
    """
    groups: dict[str, list[float]] = {}
    for ex, p in zip(examples, per_prompt):
        meta = getattr(ex, "meta", None) or {}
        if "op" not in meta and "difficulty" not in meta:
            continue
        key = f"{meta.get('op', '')} d{meta.get('difficulty', '?')}".strip()
        groups.setdefault(key, []).append(p)
    return {k: {"n": len(v), "sampled_accuracy": round(sum(v) / len(v), 4)} for k, v in sorted(groups.items())}


def pass_at_k(correct: list[int], n: int, k: int) -> float:
    """Mean over prompts of the unbiased pass@k from ``n`` samples with ``c`` correct: 1 - C(n-c, k) / C(n, k).

    pass@1 is the mean sampled accuracy; pass@k is the chance that at least one of k fresh
    samples is right, i.e. how often RL has a correct rollout to reinforce.

    >>> pass_at_k([0, 2, 8], n=8, k=1)
    0.4166666666666667
    >>> round(pass_at_k([0, 2, 8], n=8, k=4), 4)    # 1 - C(6,4)/C(8,4) = 1 - 15/70 for the middle prompt
    0.5952
    """
    from math import comb

    if not 1 <= k <= n:
        raise ValueError(f"k must be in [1, n={n}], got {k}")
    return sum(1.0 - comb(n - c, k) / comb(n, k) for c in correct) / max(len(correct), 1)


def weights_sha256(model) -> str:
    """SHA-256 over the model's state dict (names and raw bytes, in order): equal iff weights are equal."""
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


# --------------------------------------------------------------------------- the run


def run_pretrain(cfg: PretrainConfig, *, verbose: bool = True) -> Path:
    """Train the tiny model on ``cfg.task`` and write the checkpoint to ``cfg.output_dir``; returns that path."""
    from lab.models.loading import pick_device

    out = check_output_dir(cfg)  # before any work: refuse a folder that holds files unless overwrite
    t_start = time.perf_counter()
    device = pick_device(cfg.device)
    deterministic_before = torch.are_deterministic_algorithms_enabled()
    threads_before = torch.get_num_threads()
    torch.use_deterministic_algorithms(True, warn_only=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        torch.manual_seed(cfg.seed)
        task = make_task(cfg.task, dict(cfg.task_params))
        tok = build_char_tokenizer(model_max_length=cfg.n_positions)
        model_cfg = tiny_config(
            len(tok), n_layer=cfg.n_layer, n_embd=cfg.n_embd, n_head=cfg.n_head, n_positions=cfg.n_positions,
            pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
        )
        model = build_tiny_model(model_cfg, seed=cfg.seed).to(device)
        n_params = sum(p.numel() for p in model.parameters())
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.98))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(cfg.warmup_steps, 1)))

        train_stream = task.examples("train", cfg.seed)
        noise_rng = random.Random(f"label-noise:{cfg.seed}")
        val = take_examples(task, "train", cfg.seed + 10_000, cfg.n_val) if cfg.stop_at_accuracy > 0 else []
        history = []
        step = 0
        for step in range(1, cfg.steps + 1):
            batch = list(itertools.islice(train_stream, cfg.batch_size))
            if len(batch) < cfg.batch_size:  # a finite stream: start it again
                train_stream = task.examples("train", cfg.seed + step)
                batch += list(itertools.islice(train_stream, cfg.batch_size - len(batch)))
            if step >= cfg.noise_from_step:
                batch = with_label_noise(batch, cfg.label_noise, noise_rng)
            ids, attn, lm = (t.to(device) for t in encode_batch(tok, batch))
            model.train()
            loss = answer_loss(model, ids, attn, lm)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            if cfg.stop_at_accuracy > 0 and step % cfg.eval_every == 0:
                v = evaluate(model, tok, task, val, samples=4, max_new_tokens=cfg.max_new_tokens, seed=cfg.seed)
                history.append({"step": step, "loss": round(loss.item(), 4), "val_sampled_accuracy": v["sampled_accuracy"]})
                if verbose:
                    print(f"step {step:5d}  loss {loss.item():.3f}  val sampled acc {v['sampled_accuracy']:.3f}", flush=True)
                if v["sampled_accuracy"] >= cfg.stop_at_accuracy:
                    break
            elif verbose and step % cfg.eval_every == 0:
                print(f"step {step:5d}  loss {loss.item():.3f}", flush=True)
        train_time = time.perf_counter() - t_start

        model.eval()
        fold_temperature(model, cfg.output_temperature)
        test = take_examples(task, "test", cfg.seed, cfg.n_eval)
        ev = evaluate(model, tok, task, test, samples=cfg.eval_samples, max_new_tokens=cfg.max_new_tokens, seed=cfg.seed)
        total_time = time.perf_counter() - t_start
        threads_used = torch.get_num_threads()
    finally:
        torch.use_deterministic_algorithms(deterministic_before)
        torch.set_num_threads(threads_before)

    from lab import provenance

    out.mkdir(parents=True, exist_ok=True)
    model.to("cpu").save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    (out / "pretrain_config.json").write_text(json.dumps(recipe(cfg), indent=2) + "\n")
    correct = [round(p * cfg.eval_samples) for p in ev["per_prompt"]]  # correct samples per prompt
    ks = [k for k in (1, 2, 4, 8, 16, 32) if k <= cfg.eval_samples]
    summary = {
        "seed": cfg.seed,
        "steps_run": step,
        "stopped_early": step < cfg.steps,
        "train_time_s": round(train_time, 1),
        "total_time_s": round(total_time, 1),
        "torch_threads": threads_used,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "device": str(device),
        "n_params": n_params,
        "weights_sha256": weights_sha256(model),
        "eval": {
            "split": "test",
            "n_prompts": ev["n"],
            "eval_seed": cfg.seed,
            "greedy_accuracy": round(ev["greedy_accuracy"], 4),
            "sampled_accuracy": round(ev["sampled_accuracy"], 4),
            "pass_at_k": {str(k): round(pass_at_k(correct, cfg.eval_samples, k), 4) for k in ks},
            "samples_per_prompt": cfg.eval_samples,
            "temperature": 1.0,
            "max_new_tokens": cfg.max_new_tokens,
            "success_histogram": success_histogram(ev["per_prompt"]),
            "by_op_and_difficulty": accuracy_by_group(test, ev["per_prompt"]),
        },
        "history": history,
        "provenance": provenance.collect(str(device)),
    }
    (out / "eval.json").write_text(json.dumps(summary, indent=2) + "\n")
    size_mb = (out / "model.safetensors").stat().st_size / 2**20
    (out / "README.md").write_text(model_card(cfg, summary, size_mb))
    if verbose:
        e = summary["eval"]
        print(f"wrote {out}: greedy {e['greedy_accuracy']:.3f}, sampled {e['sampled_accuracy']:.3f} "
              f"({step} steps, {train_time:.0f}s)")
    return out


def model_card(cfg: PretrainConfig, s: dict, size_mb: float) -> str:
    """The README.md of the checkpoint: what it is, how it was made, how good it is."""
    e = s["eval"]
    hist = "\n".join(f"| {k} | {v:.3f} |" for k, v in e["success_histogram"].items())
    groups = "\n".join(f"| `{k}` | {g['n']} | {g['sampled_accuracy']:.3f} |" for k, g in e.get("by_op_and_difficulty", {}).items())
    by_group = (
        "\nMean sampled accuracy by operator and difficulty (`d` = digits of the longer operand):\n\n"
        f"| group | prompts | sampled accuracy |\n|---|---|---|\n{groups}\n"
        if groups else ""
    )
    cfg_json = json.dumps(recipe(cfg), indent=2)
    noise = (f", the answers of steps {max(cfg.noise_from_step, 1)}-{cfg.steps} replaced by near misses "
             f"(the answer +-1 or +-10) with probability {cfg.label_noise}," if cfg.label_noise > 0 and cfg.noise_from_step <= cfg.steps else "")
    pk = e.get("pass_at_k", {})
    pass_rows = "".join(f"| pass@{k} (unbiased, from {e['samples_per_prompt']} samples) | {v:.3f} |\n" for k, v in pk.items() if k != "1")
    return f"""---
library_name: transformers
pipeline_tag: text-generation
tags: [lab, rlvr, tiny, arithmetic]
---

# tiny-arith

A {s['n_params'] / 1e6:.2f} M-parameter character-level GPT-2 ({cfg.n_layer} layers, d_model {cfg.n_embd},
{cfg.n_head} heads, {cfg.n_positions} positions) warm-started on the lab's `{cfg.task}` task for a
**deliberately short** {cfg.steps} steps{noise} so that reinforcement learning with verifiable
rewards has something to improve: the right answer is often among its samples, but not most of them.

Made by `python -m lab.models.pretrain` (`lab pretrain`); see `docs/models.md`.

```python
from transformers import AutoModelForCausalLM, AutoTokenizer
model = AutoModelForCausalLM.from_pretrained("data/models/tiny-arith")
tok = AutoTokenizer.from_pretrained("data/models/tiny-arith")
```

Format: the prompt (e.g. `12+7=`) followed by the answer and `<|endoftext|>`; no chat template.

## Held-out accuracy ({e['split']} split, {e['n_prompts']} prompts, eval seed {e['eval_seed']})

| metric | value |
|---|---|
| greedy accuracy | {e['greedy_accuracy']:.3f} |
| mean sampled accuracy = pass@1, temperature 1 ({e['samples_per_prompt']} samples per prompt) | {e['sampled_accuracy']:.3f} |
{pass_rows}
Per-prompt success probability (fraction of {e['samples_per_prompt']} samples correct), share of prompts:

| success | share |
|---|---|
{hist}
{by_group}
## Training

| | |
|---|---|
| seed | {s['seed']} |
| steps run | {s['steps_run']} of {cfg.steps} (stopped early: {s['stopped_early']}) |
| training time | {s['train_time_s']} s ({s['total_time_s']} s with evaluation) on {s['device']}, {s['torch_threads']} threads |
| parameters | {s['n_params']:,} |
| weights file | {size_mb:.2f} MiB (model.safetensors, float32) |
| weights sha256 (state dict, `weights_sha256`) | `{s['weights_sha256']}` |

Config (`pretrain_config.json`):

```json
{cfg_json}
```

Numbers in machine-readable form: `eval.json`.
"""


def main(argv: list[str] | None = None) -> int:
    """Minimal CLI: ``python -m lab.models.pretrain [--field value ...]`` (one flag per config field)."""
    import argparse

    ap = argparse.ArgumentParser(description="Pretrain the lab's tiny model (see lab.models.pretrain).")
    for f in dataclasses.fields(PretrainConfig):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        if isinstance(default, bool):
            ap.add_argument("--" + f.name.replace("_", "-"), action=argparse.BooleanOptionalAction, default=default, dest=f.name)
            continue
        kind = json.loads if isinstance(default, dict) else type(default)
        ap.add_argument("--" + f.name.replace("_", "-"), type=kind, default=default, dest=f.name)
    args = ap.parse_args(argv)
    run_pretrain(PretrainConfig(**vars(args)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
