"""Supervised warm-start of the shipped tiny model: ``run_pretrain(PretrainConfig()) -> Path``.

Why a warm start: RL with verifiable rewards only learns from prompts where the
policy *sometimes* succeeds (a group of all-0 or all-1 rewards carries no
signal). A random model never answers ``12+7=`` correctly, a fully trained one
always does; the lab needs one in between. So pretraining is deliberately
stopped early: by default as soon as the mean sampled accuracy (temperature 1)
on a validation sample from the *train* split reaches ``stop_at_accuracy``,
which leaves easy prompts (small operands) mostly right and hard ones mostly
wrong: a starting point RL visibly improves in a couple of CPU minutes.

Each training sequence is ``prompt + answer + <|endoftext|>``; the loss is the
mean cross-entropy over the answer and end tokens only (the prompt is given).

The output directory holds: ``model.safetensors`` + ``config.json`` +
``generation_config.json`` (loadable with ``AutoModelForCausalLM``), the
tokenizer files (``AutoTokenizer``), ``pretrain_config.json``, ``eval.json``
(the held-out numbers) and ``README.md`` (the model card).

Deterministic for a seed on CPU with a fixed thread count: seeded torch RNG,
``torch.use_deterministic_algorithms(True)``, the task's seeded example stream,
and seeded evaluation sampling. ``python -m lab.models.pretrain --help``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from lab.models.tiny import build_char_tokenizer, build_tiny_model, tiny_config


@dataclass(frozen=True)
class PretrainConfig:
    """Everything that defines a pretraining run of the tiny model."""

    output_dir: str = "data/models/tiny-arith"
    """Where to write the checkpoint (created; existing files are overwritten)."""
    seed: int = 0
    """Seed for initialisation, data order and evaluation sampling."""
    steps: int = 4000
    """Maximum optimizer steps (training usually stops earlier at stop_at_accuracy)."""
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
    stop_at_accuracy: float = 0.5
    """Stop when validation sampled accuracy (temperature 1) reaches this; 0 = train all steps."""
    eval_every: int = 100
    """Steps between validation checks for stop_at_accuracy."""
    n_val: int = 128
    """Validation prompts (train split, separate seed) for the stopping rule."""
    n_eval: int = 500
    """Held-out prompts (test split) for the model card's numbers."""
    eval_samples: int = 8
    """Samples per held-out prompt for the sampled accuracy at temperature 1."""
    max_new_tokens: int = 8
    """Generation budget when evaluating."""
    device: str = "cpu"
    """Device: cpu (deterministic), cuda, mps or auto."""


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

    t_start = time.perf_counter()
    device = pick_device(cfg.device)
    deterministic_before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
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
        val = take_examples(task, "train", cfg.seed + 10_000, cfg.n_val) if cfg.stop_at_accuracy > 0 else []
        history = []
        step = 0
        for step in range(1, cfg.steps + 1):
            batch = list(itertools.islice(train_stream, cfg.batch_size))
            if len(batch) < cfg.batch_size:  # a finite stream: start it again
                train_stream = task.examples("train", cfg.seed + step)
                batch += list(itertools.islice(train_stream, cfg.batch_size - len(batch)))
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
        test = take_examples(task, "test", cfg.seed, cfg.n_eval)
        ev = evaluate(model, tok, task, test, samples=cfg.eval_samples, max_new_tokens=cfg.max_new_tokens, seed=cfg.seed)
        total_time = time.perf_counter() - t_start
    finally:
        torch.use_deterministic_algorithms(deterministic_before)

    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.to("cpu").save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    cfg_dict = dataclasses.asdict(cfg)
    (out / "pretrain_config.json").write_text(json.dumps(cfg_dict, indent=2) + "\n")
    summary = {
        "seed": cfg.seed,
        "steps_run": step,
        "stopped_early": step < cfg.steps,
        "train_time_s": round(train_time, 1),
        "total_time_s": round(total_time, 1),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        "n_params": n_params,
        "weights_sha256": weights_sha256(model),
        "eval": {
            "split": "test",
            "n_prompts": ev["n"],
            "eval_seed": cfg.seed,
            "greedy_accuracy": round(ev["greedy_accuracy"], 4),
            "sampled_accuracy": round(ev["sampled_accuracy"], 4),
            "samples_per_prompt": cfg.eval_samples,
            "temperature": 1.0,
            "max_new_tokens": cfg.max_new_tokens,
            "success_histogram": success_histogram(ev["per_prompt"]),
            "by_op_and_difficulty": accuracy_by_group(test, ev["per_prompt"]),
        },
        "history": history,
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
    cfg_json = json.dumps(dataclasses.asdict(cfg), indent=2)
    return f"""---
library_name: transformers
pipeline_tag: text-generation
tags: [lab, rlvr, tiny, arithmetic]
---

# tiny-arith

A {s['n_params'] / 1e6:.2f} M-parameter character-level GPT-2 ({cfg.n_layer} layers, d_model {cfg.n_embd},
{cfg.n_head} heads, {cfg.n_positions} positions) warm-started on the lab's `{cfg.task}` task, and
**deliberately stopped early** so that reinforcement learning with verifiable rewards has
something to improve: easy prompts are usually right, hard ones usually wrong.

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
| mean sampled accuracy, temperature 1 ({e['samples_per_prompt']} samples per prompt) | {e['sampled_accuracy']:.3f} |

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
        kind = json.loads if isinstance(default, dict) else type(default)
        ap.add_argument("--" + f.name.replace("_", "-"), type=kind, default=default, dest=f.name)
    args = ap.parse_args(argv)
    run_pretrain(PretrainConfig(**vars(args)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
